"""The fit loop that every trainer runs: epochs of steps, a run directory, exact resume.

:class:`FitLoop` owns what all training shares: epochs and steps, a tqdm
progress bar, the running statistics read every ``log_every`` steps (summed
over ranks under ``torchrun``), a stop with :class:`~pyrogen.errors.TrainingDivergedError`
when a statistic or a parameter becomes NaN or infinite (the last good
checkpoint is kept), one ``metrics.csv`` row per epoch, and an atomic
checkpoint per epoch holding the loader's and the random-number generators'
state, which :meth:`FitLoop.load_state_dict` restores so that a resumed run
continues bit for bit. Only rank 0 shows progress and writes the run directory.

A trainer says what one step is and what an epoch reports:

* :meth:`FitLoop.train_step` takes one batch and returns its loss (or a dict
  of named statistics), as :meth:`pyro.infer.SVI.step` does; the default calls
  ``self.estimator.step(batch)``, so any object with an SVI-shaped ``step``
  trains under the loop;
* :meth:`FitLoop.epoch_report` turns the epoch's mean statistics into its
  metrics row (evaluating held-out data, printing a summary);
* :meth:`FitLoop.state_dict` / :meth:`FitLoop.load_state_dict` add the
  trainer's own state (models, optimizers) to the loop's.

A user's own estimator, for example Pyro's SVI, trains like this::

    import pyro
    from pyro.infer import SVI, Trace_ELBO
    from pyrogen.data import DeviceLoader, load_fashion_mnist
    from pyrogen.models import VAE
    from pyrogen.training import FitLoop

    vae = VAE(latent_dim=20)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    loader = DeviceLoader(load_fashion_mnist("train").images, 100, binarize="dynamic")
    loop = FitLoop(loader, {"train": {"epochs": 2, "log_every": 20}}, estimator=svi)
    loop.fit()          # loop.metrics: [{"epoch": 1, "step": 600, "loss": ..., "seconds": ...}, ...]

Statistics are per unit of :meth:`FitLoop.step_weight` (per example by default:
a loss summed over the batch, as Pyro's ELBOs return it, becomes nats per example).
"""

import contextlib
import math
import numbers
import time

import pyro
import torch
from tqdm.auto import tqdm

from pyrogen import distributed, threads
from pyrogen.checks import is_count
from pyrogen.errors import DataError, TrainingDivergedError
from pyrogen.files import rng_state, set_rng_state
from pyrogen.infer.reparam_elbo import nan_check
from pyrogen.optim import attach_gradient_clipping, build_optimizer
from pyrogen.precision import Precision
from pyrogen.settings import RunConfig, loop_settings


def _statistic(name, value):
    """One statistic of a step as a 0-dimensional tensor; a one-line ``TypeError`` for anything but a number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return value if value.dim() == 0 else value.reshape(())
    if isinstance(value, numbers.Real):
        return torch.tensor(value, dtype=torch.float64)
    what = (
        f"a tensor of shape {tuple(value.shape)}"
        if isinstance(value, torch.Tensor)
        else f"{value!r} ({type(value).__name__})"
    )
    raise TypeError(
        f"the training step returned {what} as {name!r}; a step (estimator.step or train_step) must "
        "return its loss as a number or a one-element tensor, or a dict of them"
    )


class FitLoop(distributed.RankZeroRun):
    """Epochs of ``train_step`` over ``loader``, with progress, metrics, checkpoints and exact resume.

    :param loader: the training batches: iterable, with ``len`` and
        ``state_dict``/``load_state_dict`` (e.g. :class:`~pyrogen.data.DeviceLoader`).
    :param dict config: the configuration; the loop reads ``config["train"]``: ``epochs`` and ``log_every``
        (and ``seed`` under ``torchrun``, ``precision``), through :meth:`read_settings` into :attr:`settings`,
        frozen, once. It is kept as given (:attr:`config`, which checkpoints embed); a
        :class:`~pyrogen.settings.RunConfig` is kept as its dict (:meth:`~pyrogen.settings.RunConfig.to_dict`).
    :param RunDir run: where metrics and checkpoints go (None: nowhere; always None off rank 0).
    :param bool progress: show a progress bar and a line per epoch (rank 0 only).
    :param estimator: an object whose ``step(batch)`` takes one training step and
        returns its loss (:class:`pyro.infer.SVI`, :class:`~pyrogen.infer.TorchSVI`, ...);
        used by the default :meth:`train_step`.
    """

    divergence_advice = "Try a lower learning rate (--lr)."
    divergence_subject = "training"
    """What diverged, as the error's first words ("GAN training", ...)."""
    bounded_statistics = ()
    """Statistics whose window mean must stay within ``settings.train.divergence_threshold`` in magnitude
    (the losses of an adversarial game, which can run away while staying finite)."""
    decay = None
    """A learning-rate decay with ``finished`` and ``state_dict``/``load_state_dict`` (e.g.
    :class:`~pyrogen.optim.PlateauDecay`): checkpointed with the loop's state, and :meth:`fit` stops
    once it has finished."""
    handles_precision = False
    """Whether :meth:`train_step` applies :attr:`precision` itself (autocast around its forward passes and,
    under ``"fp16"``, the gradient scaler), as :class:`~pyrogen.infer.TorchSVI` does when given it. If not,
    the loop runs each step under the precision's autocast, which serves ``"bf16"``; ``"fp16"`` then is refused."""

    def __init__(self, loader=None, config=None, run=None, progress=True, estimator=None):
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.settings = self.read_settings(config)
        self.config = config.to_dict() if isinstance(config, RunConfig) else config
        self.loader, self.estimator = loader, estimator
        self.run, self.progress = run, progress and self.rank == 0
        self.epoch, self.step, self.metrics = 0, 0, []
        self.batch_in_epoch = 0  # index of the batch train_step is given, within its epoch
        self.trackers = []  # experiment trackers (pyrogen.tracking), told each epoch's row on rank 0
        self.epoch_started = None  # perf_counter() at the start of the epoch being trained or reported
        self._precision = None

    @staticmethod
    def read_settings(config):
        """The frozen settings the loop reads of ``config`` (their ``train`` section): those of a loop alone
        (:func:`~pyrogen.settings.loop_settings`); trainers of runs read the run's complete configuration
        (:func:`~pyrogen.settings.migrate`)."""
        return loop_settings(config)

    @property
    def precision(self):
        """The :class:`~pyrogen.precision.Precision` of ``settings.train.precision`` on the loader's device;
        built on first use."""
        if self._precision is None:
            device = getattr(self.loader, "device", None) or "cpu"
            self._precision = Precision(self.settings.train.precision, device)
        return self._precision

    # ------------------------------------------------------------------ hooks
    def batches(self):
        """The inputs of one epoch's :meth:`train_step` calls."""
        return iter(self.loader)

    def steps_per_epoch(self):
        return len(self.loader)

    def train_step(self, batch):
        """One optimisation step on ``batch``; returns its loss, or a dict of named statistics (like SVI.step)."""
        return self.estimator.step(batch)

    def step_context(self):
        """The context each :meth:`train_step` runs in: the precision's autocast, unless the trainer
        :attr:`handles_precision` itself (a no-op at ``"32"`` either way)."""
        return contextlib.nullcontext() if self.handles_precision else self.precision.autocast()

    def epoch_images(self):
        """``{name: images (N, C, H, W) in [0, 1]}`` of the epoch just finished, for the trackers' image grids."""
        return {}

    def step_weight(self, batch):
        """What a step's statistics are summed over: the batch's examples (1 for a non-tensor batch)."""
        return batch.shape[0] if isinstance(batch, torch.Tensor) else 1

    def reduce_window(self, window, count):
        """``(sums, count)`` of the steps since the last read, over all ranks.

        ``window`` stacks the statistics summed over those steps, ``count`` their
        :meth:`step_weight`; the result's sums are Python floats.
        """
        if self.world_size > 1:
            both = distributed.all_reduce_sum(torch.cat([window, window.new_tensor([count])]))
            window, count = both[:-1], int(both[-1].item())
        return window.tolist(), count

    def check_window(self, means, where):
        """Stop on a NaN or infinite statistic (``means``: the window's per-unit means), or on one of
        :attr:`bounded_statistics` beyond the divergence threshold."""
        for name, value in means.items():
            if not math.isfinite(value):
                raise self.diverged(where, f"{name} is {value}")
        if self.bounded_statistics:
            limit = self.settings.train.divergence_threshold
            for name in self.bounded_statistics:
                if abs(means[name]) > limit:
                    raise self.diverged(
                        where, f"|{name}| = {abs(means[name]):.3g} exceeds divergence_threshold {limit:g}"
                    )

    def postfix(self, means):
        """The progress bar's figures for a window's means."""
        return {name: f"{value:.3g}" for name, value in means.items()}

    def parameters(self):
        """The parameters checked for NaN at the end of every epoch."""
        return self.estimator.parameters() if hasattr(self.estimator, "parameters") else ()

    def named_parameters(self):
        """``(name, parameter)`` pairs of :meth:`parameters`, so that a divergence names the parameter
        (the name is None where a trainer gives only :meth:`parameters`)."""
        return ((None, p) for p in self.parameters())

    # ------------------------------------------------------------------ optimisation
    @staticmethod
    def make_optimizer(params, lr, optimizer="adam", momentum=0.0, betas=None, fused=False):
        """The ``torch.optim`` optimizer of a trainer (:func:`pyrogen.optim.build_optimizer`): ``"adam"``
        (with ``betas``, fused kernels where ``fused``) or ``"sgd"`` (with ``momentum``)."""
        return build_optimizer(params, lr=lr, optimizer=optimizer, momentum=momentum, betas=betas, fused=fused)

    @staticmethod
    def clip_gradients(optimizers, params, max_norm):
        """Clip the global gradient norm of ``params`` at ``max_norm`` before every step of ``optimizers``
        (:func:`pyrogen.optim.attach_gradient_clipping`; None: no clipping). Returns the hook handles."""
        return attach_gradient_clipping(optimizers, params, max_norm)

    def on_fit_start(self):
        """Called once by :meth:`fit`, before the first epoch it trains."""

    def should_stop(self):
        """Whether :meth:`fit` stops before its next epoch: by default once :attr:`decay` has finished."""
        return self.decay is not None and self.decay.finished

    def epoch_report(self, stats, seconds):
        """The metrics row of the epoch just finished (``self.epoch`` already counts it).

        :param dict stats: the epoch's mean statistics (per unit of :meth:`step_weight`).
        """
        return {"epoch": self.epoch, "step": self.step, **stats, "seconds": seconds}

    def write_epoch_files(self, row):
        """Write the epoch's own files to ``self.run`` (rank 0, before the checkpoint)."""

    def diverged(self, where, what):
        """The error that stops a run that diverged at ``where`` because ``what``."""
        return TrainingDivergedError(
            f"{self.divergence_subject} diverged at {where}: {what}; stopping. "
            f"{self.kept_checkpoint()}. {self.divergence_advice}"
        )

    def kept_checkpoint(self):
        if self.run and self.epoch:  # --resume continues with the run's settings: new ones need a new run
            return (
                f"The last good checkpoint (epoch {self.epoch}) is kept in {self.run.checkpoint_path!r}; "
                "--resume would continue with the run's own settings, so change them in a new run "
                "(another --out)"
            )
        if self.run:
            return (
                f"No epoch had finished, so no checkpoint was written and {self.run.path!r} can be used again "
                "with other settings"
            )
        return "No checkpoint had been written yet"

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """The loop's state (configuration, counters, loader, random state, metrics); trainers add theirs."""
        state = {
            "config": self.config,
            "epoch": self.epoch,
            "step": self.step,
            "loader": self.loader.state_dict(),
            "rng": rng_state(),
            "metrics": self.metrics,
        }
        if self.decay is not None:
            state["decay"] = self.decay.state_dict()
        if self.precision.enabled:  # a float32 run's checkpoint stays as it was
            state["precision"] = self.precision.state_dict()
        return state

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` saved; trainers load their own state first, then call this."""
        self.loader.load_state_dict(state["loader"])
        if self.decay is not None and "decay" in state:
            self.decay.load_state_dict(state["decay"])
        set_rng_state(state["rng"])
        self.epoch, self.step, self.metrics = state["epoch"], state["step"], list(state["metrics"])
        if "precision" in state:
            self.precision.load_state_dict(state["precision"])
        distributed.seed_rank_noise(self.settings.train.seed, self.epoch)

    def log_every(self):
        """``settings.train.log_every``, the steps between reads of the statistics, checked."""
        value = self.settings.train.log_every
        if not is_count(value):
            raise DataError(
                f"FitLoop needs config['train']['log_every'], a positive integer (steps between "
                f"reads of the statistics), got {value!r}"
            )
        return int(value)

    # ------------------------------------------------------------------ the loop
    def train_epoch(self, bar=None):
        """One pass over the training data; returns the epoch's mean statistics (trainers may say otherwise)."""
        return self.epoch_stats(bar)

    def epoch_stats(self, bar=None):
        """One pass over :meth:`batches`; returns the epoch's mean statistics (floats), what :meth:`fit` reports."""
        log_every, steps = self.log_every(), self.steps_per_epoch()
        names, sums, seen = None, None, 0
        window, count = None, 0  # statistics summed on the device since the last read
        with pyro.validation_enabled(False), nan_check(False):  # a NaN stops the run in one line, below
            for i, batch in enumerate(self.batches(), 1):
                self.batch_in_epoch = i - 1
                with self.step_context():
                    out = self.train_step(batch)
                if not isinstance(out, dict):
                    out = {"loss": out}
                names = list(out)
                values = torch.stack([_statistic(name, v) for name, v in out.items()])
                window = values if window is None else window + values
                count += self.step_weight(batch)
                self.step += 1
                threads.tick()  # the thread count follows the cores other jobs leave free
                if i % log_every == 0 or i == steps:
                    window_sums, count = self.reduce_window(window, count)
                    means = {k: v / count for k, v in zip(names, window_sums)}
                    self.check_window(means, f"epoch {self.epoch + 1}, step {self.step}")
                    sums = window_sums if sums is None else [s + v for s, v in zip(sums, window_sums)]
                    seen += count
                    if bar is not None:
                        bar.set_postfix(**self.postfix(means))
                        bar.update(i - bar.n)
                    window, count = None, 0
        return {k: s / seen for k, s in zip(names, sums)}

    def fit(self, epochs=None):
        """Train until ``epochs`` epochs in total are done (``settings.train.epochs`` by default)."""
        if epochs is None:
            epochs = self.settings.train.epochs
            where = "config['train']['epochs']"
        else:
            where = "epochs"
        if not is_count(epochs, minimum=0):
            raise DataError(
                f"FitLoop.fit needs {where}, the epochs to train in total (a non-negative integer), got {epochs!r}"
            )
        epochs = int(epochs)
        if self.precision.scaler is not None and not self.handles_precision:
            raise DataError(
                f"precision 'fp16' needs a gradient scaler in the training step, which "
                f"{type(self).__name__} does not have; use 'bf16' (float32's range, no scaler needed)"
            )
        self.on_fit_start()
        while self.epoch < epochs and not self.should_stop():
            start = self.epoch_started = time.perf_counter()
            bar = tqdm(
                total=self.steps_per_epoch(),
                desc=f"epoch {self.epoch + 1}/{epochs}",
                disable=not self.progress,
                leave=False,
            )
            with bar:
                stats = self.epoch_stats(bar)
            seconds = time.perf_counter() - start
            for name, p in self.named_parameters():
                if not math.isfinite(p.detach().sum().item()):
                    what = "a parameter" if name is None else f"parameter {name!r}"
                    raise self.diverged(f"the end of epoch {self.epoch + 1}", f"{what} is NaN or infinite")
            self.epoch += 1
            row = self.epoch_report(stats, seconds)
            self.metrics.append(row)
            if self.run is not None:
                self.write_epoch_files(row)
                self.run.save_checkpoint(self.state_dict())
                self.run.write_metrics(self.metrics)
            if self.trackers and self.rank == 0:
                images = self.epoch_images()
                for tracker in self.trackers:
                    tracker.log_epoch(self.epoch, row, images)
            distributed.barrier()
        return self.metrics
