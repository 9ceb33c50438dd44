"""The GAN trainer: :class:`~pyrogen.infer.Adversarial` steps run by :class:`~pyrogen.training.loop.FitLoop`.

The counterpart of :class:`pyrogen.training.VAETrainer` for the adversarial
game, on the same loop: a progress bar with both players' losses, one ``metrics.csv`` row per
epoch, a PNG grid of samples from fixed noise after every epoch, an atomic
checkpoint per epoch that :func:`resume_gan_trainer` continues bit for bit, and
a clear stop, keeping the last good checkpoint, when a loss becomes NaN or
infinite or its magnitude passes ``divergence_threshold``.

Each generator step takes ``d_steps`` fresh training batches, one per
discriminator update, so an epoch holds ``len(loader) // d_steps`` generator steps.

Metrics per epoch (means over the epoch's logged steps): ``loss_d`` and
``loss_g`` (per example), ``d_real`` and ``d_fake`` (mean D(x) and D(G(z)), in
the loss's units), ``d_accuracy``, ``grad_norm_d`` and ``grad_norm_g`` (L2 norms
of the gradients), ``diversity`` (mean pairwise L2 distance of the fixed-noise
samples over that of as many real test images: near 1 for a healthy generator,
near 0 for a collapsed one) and ``flags``, the training-health warnings:

* ``mode-collapse``: ``diversity`` below ``collapse_threshold`` (0.5);
* ``d-overpowering``: the discriminator classifies at least ``overpower_accuracy``
  (98%) of real and fake examples correctly over the epoch, the usual prelude to the
  generator's loss climbing while its gradients vanish (not flagged for WGAN-GP,
  whose critic values have no fixed decision threshold);
* ``class-collapse``: fewer than ``min_classes_covered`` (8) of the ten classes
  hold more than 2% of the fixed-noise samples.

When the sample-quality feature network is cached (``pyrogen train features``;
a Fashion-MNIST run never trains it implicitly, it says once that it skips the
figures), each row also holds the class coverage of the fixed-noise samples
under its predicted classes (:func:`~pyrogen.evaluation.sample_quality.class_coverage`):
``class_entropy`` (nats; log 10 = 2.30 for an even spread) and ``classes_covered``.

A class-conditional run (``pyrogen train gan --conditional``: a
:class:`~pyrogen.models.gan.ConditionalGenerator` against a
:class:`~pyrogen.models.gan.ProjectionDiscriminator`, ``Adversarial(label="y")``)
trains on labelled batches; its fixed noise comes with fixed labels, the same
number per class, so the sample grid has one row per class, and with the cached
classifier its rows add ``conditional_accuracy``, the share of those samples
assigned to the class they were generated for.

Under ``torchrun`` the loop trains data-parallel, like the VAE's::

    torchrun --nproc-per-node 2 -m pyrogen train gan --out runs/gan-ddp

``batch_size`` is the global minibatch, which the number of processes must
divide; each rank takes its equal share and draws its own noise, both players'
gradients are averaged after every update (:meth:`Adversarial.distribute
<pyrogen.infer.Adversarial.distribute>`, not DDP, which cannot take the
discriminator's several forward passes per backward or WGAN-GP's double
backward), the metrics are averaged over the ranks, and rank 0 alone draws the
sample grids and writes the run directory. A run resumes with any number of
processes. Batch norm becomes :class:`~torch.nn.SyncBatchNorm` on GPUs; on the
CPU its statistics are those of each rank's shard, so a DCGAN discriminator with
batch norm does not compute exactly what one process would.
"""

import dataclasses

import pyro
import torch

from pyrogen import distributed
from pyrogen.config import DEFAULT_GAN_DATA, DEFAULT_GAN_TRAIN, default_gan_config  # noqa: F401
from pyrogen.data import DeviceLoader, check_images
from pyrogen.data.loaders import check_example_shape
from pyrogen.errors import DataError
from pyrogen.infer.adversarial import Adversarial
from pyrogen.infer.adversarial_game import check_players
from pyrogen.models.registry import build_gan_networks
from pyrogen.random_streams import stream_seed
from pyrogen.rundirs import (  # noqa: F401
    load_gan_data,
    load_generator,
    load_labelled_data,
    open_run,
    resolve_device,
    resume_trainer,
)
from pyrogen.settings import migrate
from pyrogen.training.game import (  # noqa: F401 - game_health_flags, mean_pairwise_distance: imported from here before
    GameTrainer,
    game_health_flags,
    load_class_classifier,
    mean_pairwise_distance,
)


class GeneratorEMA:
    """An exponential moving average of a generator's weights (Karras et al. 2018; Yazıcı et al. 2019).

    After each generator update, :math:`\\bar\\theta \\leftarrow \\beta \\bar\\theta + (1 - \\beta) \\theta`
    for every floating-point parameter and buffer (batch-norm statistics are copied).
    :meth:`swapped` puts the averaged weights into the module for sampling.

    :param torch.nn.Module module: the generator.
    :param float decay: :math:`\\beta` in (0, 1).
    """

    def __init__(self, module, decay=0.999):
        if not 0 < decay < 1:
            raise DataError(f"ema_decay must lie in (0, 1), got {decay!r}")
        self.module, self.decay = module, decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self._params = dict(module.named_parameters())

    @torch.no_grad()
    def update(self):
        for name, value in self.module.state_dict().items():
            if name in self._params and value.is_floating_point():
                self.shadow[name].lerp_(value, 1 - self.decay)
            else:
                self.shadow[name].copy_(value)

    def swapped(self):
        """Context manager: the module holds the averaged weights inside, its own outside."""
        ema = self

        class _Swap:
            def __enter__(self):
                self.saved = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
                ema.module.load_state_dict(ema.shadow)

            def __exit__(self, *exc):
                ema.module.load_state_dict(self.saved)

        return _Swap()

    def state_dict(self):
        return dict(self.shadow)

    def load_state_dict(self, state):
        for k, v in state.items():
            self.shadow[k].copy_(v)


class GANTrainer(GameTrainer):
    """Fits a :class:`~pyrogen.models.gan.Generator` (or any generator model) against a discriminator.

    :param generator: a module with ``model(batch_size=B)`` (site ``"x"``) and ``generate(z)``,
        e.g. :class:`~pyrogen.models.gan.Generator`.
    :param torch.nn.Module discriminator: maps images to scores.
    :param torch.Tensor train_data: training images in [0, 1] on the device.
    :param torch.Tensor test_data: real test images in [0, 1] (the diversity reference).
    :param dict config: the run configuration (see :func:`default_gan_config`) of any layout, or its
        :class:`~pyrogen.settings.RunConfig`; read through :func:`~pyrogen.settings.migrate` (:attr:`settings`).
    :param RunDir run: where metrics, checkpoints and pictures go (None: nowhere).
    :param bool progress: show a progress bar.
    :param torch.Tensor train_labels: the training labels ``(N,)`` of a class-conditional generator.

    Inside a ``torch.distributed`` process group (see :mod:`pyrogen.distributed`)
    each rank trains on its equal share of every global minibatch of ``batch_size``
    examples (which the number of processes must divide), draws its own noise,
    and both players' gradients are averaged (:meth:`Adversarial.distribute
    <pyrogen.infer.Adversarial.distribute>`); only rank 0 shows progress, draws
    the sample grids and writes to the run directory. On GPUs batch norm is
    converted to :class:`~torch.nn.SyncBatchNorm`, whose statistics cover the
    global batch; on the CPU (gloo) its statistics are those of each rank's shard.
    """

    def __init__(
        self, generator, discriminator, train_data, test_data, config, run=None, progress=True, train_labels=None
    ):
        super().__init__(config=config, run=run, progress=progress)
        self.num_classes = getattr(generator, "num_classes", None)  # a class-conditional generator's K
        train_labels = _check_conditional_labels(self.num_classes, train_labels, train_data)
        if self.world_size > 1 and train_data.device.type == "cuda":
            generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        self.generator, self.discriminator = generator, discriminator
        cfg = self.settings.train
        check_images(train_data, "training data")
        check_images(test_data, "test data")
        check_players(discriminator, cfg.d_steps)
        self.loader = DeviceLoader(
            train_data,
            cfg.batch_size,
            seed=stream_seed("data_order", cfg.seed),
            drop_last=True,
            device=train_data.device,
            rank=self.rank,
            world_size=self.world_size,
            labels=train_labels,
        )
        if getattr(generator, "image_shape", None) is not None:
            check_example_shape(train_data.shape[1:], generator.image_shape, "training data")
            check_example_shape(test_data.shape[1:], generator.image_shape, "test data")
        if cfg.batch_size % self.world_size:
            raise DataError(
                f"batch_size {cfg.batch_size} must be a multiple of the number of processes "
                f"{self.world_size}: the GAN losses are means over each process's share, which "
                "must be equal for their average to be the global batch's mean"
            )
        if len(self.loader) < cfg.d_steps:
            raise DataError(f"an epoch of {len(self.loader)} batches is shorter than d_steps = {cfg.d_steps}")
        self.test_data = test_data
        self.loss = self.game_loss()
        self.optim_g = self.make_optimizer(generator.parameters(), cfg.lr_g, betas=cfg.betas)
        self.optim_d = self.make_optimizer(discriminator.parameters(), cfg.lr_d, betas=cfg.betas)
        self.gan = Adversarial(
            generator.model,
            discriminator,
            self.optim_g,
            self.optim_d,
            self.loss,
            d_steps=cfg.d_steps,
            track_grad_norms=True,
            label="y" if self.num_classes else None,
        )
        if self.world_size > 1:
            self.gan.distribute()
            distributed.seed_rank_noise(cfg.seed, 0)
        self.ema = GeneratorEMA(generator, cfg.ema_decay) if cfg.ema_decay else None  # 0: no moving average
        num_fixed = cfg.num_fixed
        if self.num_classes:  # the same number of samples per class: one grid row each
            self.per_class = max(1, num_fixed // self.num_classes)
            num_fixed = self.per_class * self.num_classes
            self.fixed_labels = torch.arange(self.num_classes).repeat_interleave(self.per_class).to(train_data.device)
        with self.fixed_stream(train_data.device):  # drawn on the CPU: the same noise on every device
            self.fixed_noise = torch.randn(num_fixed, generator.latent_dim).to(train_data.device)
        self.real_diversity = self.reference_diversity(test_data)

    # --------------------------------------------------------------- state
    def checkpointed(self):
        return {
            "generator": self.generator,
            "discriminator": self.discriminator,
            "optim_g": self.optim_g,
            "optim_d": self.optim_d,
        }

    def state_dict(self):
        state = super().state_dict()
        if self.fixed_labels is not None:
            state["fixed_labels"] = self.fixed_labels
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state):
        if self.fixed_labels is not None:
            self.fixed_labels = state["fixed_labels"].to(self.fixed_labels.device)
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        super().load_state_dict(state)

    # --------------------------------------------------------------- samples
    @torch.no_grad()
    def samples(self, z=None, use_ema=True):
        """Images G(z) in [0, 1] for latents ``z`` (default: the fixed noise), in eval mode,
        with the moving-average weights when ``use_ema`` and there are any."""
        z = self.fixed_noise if z is None else z
        was_training = self.generator.training
        self.generator.eval()
        try:
            y = () if self.fixed_labels is None else (self.fixed_labels[: z.shape[0]],)
            if self.ema is not None and use_ema:
                with self.ema.swapped():
                    return self.generator.generate(z, *y)
            return self.generator.generate(z, *y)
        finally:
            self.generator.train(was_training)

    # --------------------------------------------------------------- training
    divergence_advice = (
        "Try lower learning rates (--lr-g, --lr-d), spectral normalisation (--norm spectral) or another loss."
    )

    divergence_subject = "GAN training"

    def batches(self):
        """Groups of ``d_steps`` consecutive batches, one group per generator step."""
        group, d_steps = [], self.settings.train.d_steps
        for x in self.loader:
            group.append(x)
            if len(group) == d_steps:
                yield group if d_steps > 1 else group[0]
                group = []

    def steps_per_epoch(self):
        return len(self.loader) // self.settings.train.d_steps

    def train_step(self, x):
        """One round of the game (``d_steps`` discriminator updates, one generator update); its statistics."""
        if self.num_classes:  # (x, y) batches: the labels go to the generator and the discriminator
            if isinstance(x, list):
                out = self.gan.step([b[0] for b in x], y=[b[1] for b in x])
            else:
                out = self.gan.step(x[0], y=x[1])
        else:
            out = self.gan.step(x)
        if self.ema is not None:
            self.ema.update()
        return out

    def reduce_window(self, window, count):
        if self.world_size > 1:  # every rank's shard is equally large: average the ranks' means
            window = distributed.all_reduce_sum(window) / self.world_size
        return [v * count for v in (window / count).tolist()], count

    def on_fit_start(self):
        super().on_fit_start()
        if self.classifier is None and self.rank == 0:
            self.classifier = load_class_classifier(self.settings.data, self.fixed_noise.device)

    def epoch_figures(self):
        """The fixed-noise samples (rank 0); a GAN's row has no held-out figures before the diversity."""
        self.images = self.samples() if self.rank == 0 else None
        return {}

    def epoch_line(self, row, stats):
        return (
            f"epoch {self.epoch}: loss_d {stats['loss_d']:.3f}, loss_g {stats['loss_g']:.3f}, "
            f"D(x) {stats['d_real']:.2f}, D(G(z)) {stats['d_fake']:.2f}, "
            f"D accuracy {stats['d_accuracy']:.2f}, diversity {row['diversity']:.2f} ({row['seconds']:.1f} s)"
        )

    def grid_columns(self):
        return self.per_class if self.num_classes else 8  # conditional: one row per class


def _check_conditional_labels(num_classes, labels, data):
    """The training labels of a conditional run, checked (None for an unconditional one)."""
    if not num_classes:
        return None
    if labels is None:
        raise DataError("a class-conditional GAN needs labelled training data, and these data have no labels")
    if labels.shape != (data.shape[0],) or labels.is_floating_point():
        raise DataError(
            f"the training labels must be integers of shape ({data.shape[0]},), got "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise DataError(
            f"the training labels must lie in 0 .. {num_classes - 1}, got values in "
            f"{int(labels.min())} .. {int(labels.max())}"
        )
    return labels


def build_gan_trainer(config, run=None, device="auto", progress=True, data=None):
    """A :class:`GANTrainer` for a configuration: networks, data and optimizers, freshly seeded.

    :param data: optional ``(train_images, test_images)`` to use instead of loading ``config["data"]``,
        or ``(train_images, test_images, train_labels)`` for a class-conditional run.
    """
    device, settings = resolve_device(device), migrate(config)
    pyro.set_rng_seed(stream_seed("init", settings.train.seed))
    gen, disc = (m.to(device) for m in build_gan_networks(config))
    labels = None
    if data is None and "num_classes" in settings.model.args:  # a class-conditional generator
        train, labels, test, _ = load_labelled_data(dataclasses.replace(settings.data, binarize="none"), device)
    elif data is None:
        train, test = load_gan_data(settings.data, device)
    else:
        train, test, *rest = (d.to(device) if d is not None else None for d in data)
        labels = rest[0] if rest else None
    return GANTrainer(gen, disc, train, test, config, run=run, progress=progress, train_labels=labels)


def resume_gan_trainer(run_dir, device="auto", progress=True, data=None):
    """Rebuild a GAN run's trainer from its directory and load its last checkpoint."""
    return resume_trainer(run_dir, device, progress, build=build_gan_trainer, data=data)
