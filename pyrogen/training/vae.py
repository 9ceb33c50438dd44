"""The VAE-family trainer: the AEVB minibatch algorithm over SVI, run by :class:`~pyrogen.training.loop.FitLoop`.

Auto-Encoding Variational Bayes (Kingma and Welling 2014, algorithm 1): draw a
random minibatch of M examples (M = 100), draw L noise samples per example
(L = 1), take a gradient step on the minibatch ELBO, repeat. The trainer's step
is :class:`~pyrogen.infer.TorchSVI`'s over a device-resident data set; after
every epoch it evaluates the test ELBO and the collapse diagnostics. The
shared loop shows the running ELBO in a progress bar, appends a row to
``metrics.csv`` and writes an atomic checkpoint that ``resume`` continues bit for bit.

Every figure is in nats per example; "ELBO" is the bound itself (higher is
better), the loss its negation.
"""

import sys
import time

import pyro
import torch
from pyro.distributions import Independent
from pyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from pyrogen import distributed, rundirs
from pyrogen.config import (  # noqa: F401
    AUTO_COMPILE_MIN_STEPS,
    DEFAULT_DATA,
    DEFAULT_EVAL,
    DEFAULT_TRAIN,
    compile_mode,
    default_config,
    migrate,
)
from pyrogen.data import check_images, static_binarize
from pyrogen.data.loaders import check_example_shape, is_reader, make_loader
from pyrogen.distributions import (
    LatentFamilyError,
    check_guide_family,
    check_latent_pair,
    get_family,
    has_analytic_kl,
    kl_method,
)
from pyrogen.errors import (
    CompilationError,
    DataError,
    PyrogenError,
    RecordingMismatchError,
    TrainingDivergedError,
)
from pyrogen.evaluation import evaluate_dataset, log_importance_weights
from pyrogen.evaluation.diagnostics import active_units, collapse_diagnostics
from pyrogen.infer import IWAE_ELBO, TCELBO, ReparamTrace_ELBO, ReparamTraceMeanField_ELBO, TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI, AggressiveSwitch
from pyrogen.infer.kl_schedule import FreeBitsELBO, build_kl_schedule
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.registry import MODELS, build_model  # noqa: F401
from pyrogen.models.two_layer import TwoLayerVAE
from pyrogen.optim import (
    OptimConfig,
    PlateauDecay,
    initialize_,
    loss_per_batch,
    reduce_loss,
    split_validation,
)
from pyrogen.random_streams import stream_seed
from pyrogen.rundirs import load_data, load_model, open_run, resolve_device  # noqa: F401
from pyrogen.settings import ELBO_NAMES
from pyrogen.training.loop import FitLoop

ELBOS = {"trace": ReparamTrace_ELBO, "meanfield": ReparamTraceMeanField_ELBO, "iwae": IWAE_ELBO, "tc": TCELBO}
"""The objectives by name. ``"trace"``: Monte Carlo KL (Trace_ELBO's values); ``"meanfield"``: analytic
KL where registered; ``"iwae"``: the importance-weighted bound of ``num_particles`` draws per example
(``dreg``: doubly reparameterized guide gradients); ``"tc"``: β-TC-VAE's objective (``tc_beta``) with the
KL split into index-code MI, total correlation and dimension-wise KL. ``"auto"`` (the default) is
resolved by :func:`resolve_elbo`."""

TC_TERMS = {"mi": "index_code_mi", "tc": "total_correlation", "dimwise_kl": "dimwise_kl"}
"""The metrics columns of :meth:`TCELBO.decomposition`'s terms under ``--elbo tc`` (nats per example,
training batches; "mi" is renamed so as not to clash with the held-out MI of the collapse diagnostics)."""

ELBO_CHOICES = ELBO_NAMES

STREAM_CHECK_EXAMPLES = 10_000
"""Streamed training data are checked against the likelihood's support on their first this many examples
(the whole set is read only batch by batch, in training)."""
"""What ``config["train"]["elbo"]`` may name."""


def _posterior_family(vae):
    return getattr(vae, "posterior_family", None) or get_family("normal")


def _prior_family(vae):
    return getattr(vae, "prior_family", None) or get_family("normal")


def resolve_elbo(vae, elbo="auto"):
    """``(name, reason)``: the objective of :data:`ELBOS` that ``elbo`` names for ``vae``, and why.

    ``"auto"`` is ``"meanfield"`` (KL(q||p) in closed form) when every latent
    site of the model pairs a guide family with a prior family whose KL is
    registered (:func:`~pyrogen.distributions.has_analytic_kl`) and the guide is
    mean-field, and ``"trace"`` (Monte Carlo KL) otherwise: for families
    without a closed form, for the two-layer model (its guide draws z2 given
    z1, so no site's KL can be taken alone) and for an autoencoder (a point
    mass has no KL). Both are one differentiable tensor, so ``--compile`` can
    record either. Any other name is returned as is, with ``reason`` None.
    """
    if elbo not in ELBO_CHOICES:
        raise DataError(f"elbo must be one of {list(ELBO_CHOICES)}, got {elbo!r}")
    if elbo != "auto":
        return elbo, None
    if isinstance(vae, Autoencoder):
        return "trace", "an autoencoder's point-mass guide has no KL to take in closed form"
    if isinstance(vae, TwoLayerVAE):
        return "trace", "the two-layer guide draws z2 given z1, which is not mean-field"
    q, p = _posterior_family(vae), _prior_family(vae)
    if has_analytic_kl(q, p):
        return "meanfield", f"KL between the {q.name} guide and the {p.name} prior has a closed form"
    return "trace", f"KL between the {q.name} guide and the {p.name} prior has no registered closed form"


def compiler_works(device):
    """Whether ``torch.compile`` can build kernels on ``device``: a C++ compiler that runs (CPU), Triton (CUDA)."""
    device = torch.device(device)
    try:
        if device.type == "cpu":
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()  # runs "$CXX --version"; raises if no compiler of torch's search works
            return True
        if device.type == "cuda":
            from torch.utils._triton import has_triton

            return has_triton()
    except Exception:  # noqa: BLE001 - any failure of the probe means: do not compile
        return False
    return False


def auto_compile(steps, device, blocked=False):
    """``--compile auto``'s choice for a run of ``steps`` steps, as :class:`~pyrogen.infer.TorchSVI`'s
    ``compile``: ``"on"`` (compile) where a compiler works and ``steps`` >= :data:`AUTO_COMPILE_MIN_STEPS`,
    ``"record"`` (replay the recorded graph) otherwise, ``"off"`` (eager) when ``blocked`` (a setting
    that cannot be recorded)."""
    if blocked:
        return "off"
    return "on" if steps >= AUTO_COMPILE_MIN_STEPS and compiler_works(device) else "record"


EPOCH_LINE_NAMES = {
    "elbo": "test ELBO",
    "objective": "test objective",
    "log_px": "test log p(x)",
    "kl": "KL",
    "mi": "MI",
    "active_units": "active units",
}
"""How the per-epoch line names the metrics-row columns (one case throughout)."""


def epoch_line(epoch, train_elbo, test, diagnostics, seconds, evaluation=None):
    """The line printed after an epoch: ELBOs and KL in nats per example, MI in nats, counts as integers;
    ``seconds`` of training and, when given, ``evaluation`` seconds of the epoch's evaluation after it."""
    parts = [f"train ELBO {train_elbo:.2f}"]
    for key, value in {**test, **diagnostics}.items():
        name = EPOCH_LINE_NAMES.get(key, key.replace("_", " "))
        if isinstance(value, int) or key == "active_units":
            parts.append(f"{name} {int(value)}")
        else:
            parts.append(f"{name} {value:.2f}")
    if evaluation is None:
        return f"epoch {epoch}: " + ", ".join(parts) + f" ({seconds:.1f} s)"
    return f"epoch {epoch}: " + ", ".join(parts) + f" ({seconds:.1f} s training, {evaluation:.1f} s evaluation)"


def _any_values(vae):
    """Whether the model's likelihood scores values outside [0, 1] (real values, counts)."""
    likelihood = getattr(vae, "likelihood", None)
    return likelihood is not None and likelihood.data_kind in ("real", "counts")


def _check_data(vae, x, name):
    """Images in [0, 1] (:func:`~pyrogen.data.check_images`), except under a likelihood of real values
    or counts, whose own check (``_check_support``) says what its support is."""
    if not _any_values(vae):
        return check_images(x, name)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] == 0:
        raise DataError(
            f"{name} must be a non-empty floating-point tensor of examples (N, ...), got "
            + (f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__)
        )


def elbo_postfix(means):
    """The progress bar's figure of an SVI trainer: the ELBO (nats per example) of a window's mean loss."""
    return {"elbo": f"{-means['loss']:.2f}"}


class VAETrainer(FitLoop):
    """Fits a VAE-family model/guide pair by SVI, with a run directory.

    :param VAE vae: the model (its ``model`` and ``guide`` are trained).
    :param train_data: training images in [0, 1] on the device, or a streaming reader
        (:class:`~pyrogen.data.loaders.ArrayReader`, :class:`~pyrogen.data.loaders.FolderReader`)
        whose batches :class:`~pyrogen.data.loaders.StreamingLoader` serves on the test data's device.
    :param torch.Tensor test_data: test images, already binarized if the likelihood needs it.
    :param dict config: the run configuration (see :func:`default_config`), of any layout, or its
        :class:`~pyrogen.settings.RunConfig`; the trainer reads it through :func:`~pyrogen.settings.migrate`
        (:attr:`settings`, complete and frozen) and never changes it.
    :param RunDir run: where metrics, checkpoints and pictures go (None: nowhere).
    :param bool progress: show a progress bar.

    Inside a ``torch.distributed`` process group (see :mod:`pyrogen.distributed`)
    each rank trains on its share of every global minibatch of
    ``batch_size`` examples, gradients are averaged by DDP, and only rank 0
    shows progress, evaluates and writes to the run directory.
    """

    read_settings = staticmethod(migrate)  # the run's complete, frozen configuration (settings)

    def __init__(self, vae, train_data, test_data, config, run=None, progress=True, validation_data=None):
        super().__init__(config=config, run=run, progress=progress)
        self.vae = vae
        train_cfg, data_cfg = self.settings.train, self.settings.data
        if not is_reader(train_data):
            _check_data(vae, train_data, "training data")
        _check_data(vae, test_data, "test data")
        self.loader = make_loader(
            train_data, train_cfg.batch_size, binarize=data_cfg.binarize,
            seed=stream_seed("data_order", train_cfg.seed),
            device=test_data.device if is_reader(train_data) else train_data.device,
            rank=self.rank, world_size=self.world_size, num_workers=data_cfg.num_workers,
            **({} if is_reader(train_data) or not _any_values(vae) else {"values": "any"}),
        )  # fmt: skip
        check_example_shape(self.loader.example_shape, vae.image_shape, "training data")
        check_example_shape(test_data.shape[1:], vae.image_shape, "test data")
        self.test_data = test_data
        self.validation_data = validation_data  # held out of the training data, binarized like the test data
        vae.likelihood.check_binarize(data_cfg.binarize)
        self._check_support()
        self.elbo_name, self.elbo_reason = resolve_elbo(vae, train_cfg.elbo)
        self.elbo = self._make_elbo(train_cfg)
        self.kl_method = None  # how the ELBO gets KL(q||p): "analytic" or "monte-carlo"
        if not isinstance(vae, Autoencoder):
            check_guide_family(_posterior_family(vae), type(self.elbo).__name__, prior=_prior_family(vae))
            check_latent_pair(_prior_family(vae), _posterior_family(vae))
            self.kl_method = kl_method(
                _posterior_family(vae),
                _prior_family(vae),
                analytic=isinstance(self.elbo, (TraceMeanField_ELBO, FreeBitsELBO)),
            )
            if isinstance(self.elbo, FreeBitsELBO) and self.kl_method != "analytic":
                raise LatentFamilyError(
                    f"free bits need KL(q||p) in closed form, which is not registered "
                    f"for guide {vae.posterior_family.name!r} and prior {vae.prior_family.name!r}"
                )
        self.kl_schedule = build_kl_schedule(
            train_cfg.kl_schedule,
            train_cfg.epochs,
            weight=train_cfg.kl_weight,
            warmup_epochs=train_cfg.kl_warmup_epochs,
            start=train_cfg.kl_start,
            num_cycles=train_cfg.kl_cycles,
        )
        self.optim_config = optim_config(train_cfg)
        initialize_(vae, self.optim_config)
        self.optim = self._optimizer(vae.parameters(), fused=self.loader.device.type in ("cpu", "cuda"))
        # what the steps differentiate: the ELBO summed over the batch, or its mean (He et al.)
        self.loss = reduce_loss(self.elbo, self.optim_config.loss_reduction)
        self.compile_mode = compile_mode(train_cfg.compile)
        if self.compile_mode in ("on", "record") and self.precision.enabled:
            raise DataError(
                f"--compile {self.compile_mode} records the float32 step, and --precision "
                f"{self.precision.precision} runs the step eagerly; drop one of them"
            )
        if self.compile_mode in ("on", "record") and train_cfg.aggressive:
            raise DataError(
                f"--compile {self.compile_mode} applies to the standard SVI step; drop --compile or --aggressive"
            )
        # TorchSVI's compile, the same word; "auto" starts eager and decides in fit(), when the run's length is known
        self.compile = "off" if self.compile_mode == "auto" else self.compile_mode
        self._build_svi()
        if self.world_size > 1:
            distributed.seed_rank_noise(train_cfg.seed, 0)
        self.switch = None
        if train_cfg.aggressive:
            self._make_aggressive(train_cfg)
        else:
            self.clip_gradients(self.optim, list(vae.parameters()), self.optim_config.clip_norm)
        self.decay = None
        if self.optim_config.decay:
            if validation_data is None:
                raise DataError(
                    "learning-rate decay on plateau watches a validation split of the training data, "
                    "never the test set; give --validation-size N"
                )
            optimizers = [self.optim] + ([self.decoder_optim] if self.switch is not None else [])
            self.decay = PlateauDecay.from_config(vae, optimizers, self.optim_config)

    def _optimizer(self, params, fused=False):
        """The configured ``torch.optim`` optimizer over ``params`` (Adam fused where the device allows)."""
        c = self.optim_config
        return self.make_optimizer(params, c.lr, optimizer=c.optimizer, momentum=c.momentum, fused=fused)

    def _make_elbo(self, train_cfg):
        """The estimator of the objective named by :attr:`elbo_name` (free bits replace it when set)."""
        name, particles, two_layer = self.elbo_name, train_cfg.num_particles, isinstance(self.vae, TwoLayerVAE)
        if isinstance(self.vae, Autoencoder) and name in ("iwae", "tc"):
            raise DataError(f"--elbo {name} needs a guide with a density; an autoencoder's is a point mass")
        if train_cfg.free_bits > 0:
            if name in ("iwae", "tc") or two_layer:
                raise DataError(
                    f"free bits replace the objective by the analytic ELBO with a floored KL of "
                    f"site 'z'; drop --free-bits or use --elbo auto|meanfield with a one-layer VAE, "
                    f"not {'--layers 2' if two_layer else '--elbo ' + name}"
                )
            return FreeBitsELBO(train_cfg.free_bits, num_particles=particles)
        if name == "iwae":
            return IWAE_ELBO(num_particles=particles, max_plate_nesting=1, dreg=bool(train_cfg.dreg))
        if name == "tc":
            if two_layer:
                raise DataError("--elbo tc decomposes the KL of the one latent site 'z'; the two-layer model has two")
            family = _posterior_family(self.vae)
            q = family(**family.random_params(2, (2,)))
            if getattr(self.vae, "flow", None) is not None or not (
                isinstance(q, Independent) and q.reinterpreted_batch_ndims == 1
            ):
                raise DataError(
                    f"--elbo tc needs a guide with independent coordinates (its q(z_d) per dimension), "
                    f"which the guide {family.name!r} does not have"
                )
            return TCELBO(beta=train_cfg.tc_beta, dataset_size=self.loader.num_examples, num_particles=particles)
        if name == "meanfield" and two_layer:
            raise DataError(
                "--elbo meanfield needs a mean-field guide, but the two-layer guide draws z2 from "
                "q(z2|z1), after z1; use --elbo auto or trace"
            )
        if name == "trace" and particles > 1 and train_cfg.vectorize_particles:
            return ReparamTrace_ELBO(num_particles=particles, max_plate_nesting=1, vectorize_particles=True)
        return ELBOS[name](num_particles=particles)

    @property
    def handles_precision(self):
        """The standard step is :class:`~pyrogen.infer.TorchSVI`'s, which applies the precision itself
        (autocast forward, gradient scaler under fp16); the aggressive step runs under the loop's autocast."""
        return isinstance(getattr(self, "svi", None), TorchSVI)

    def _build_svi(self):
        self.svi = TorchSVI(
            self.vae.model,
            self.vae.guide,
            self.optim,
            self.loss,
            compile=self.compile,
            precision=self.precision if self.precision.enabled else None,
        )
        if self.world_size > 1:
            # The same parameters take part in every step (an autoencoder leaves its scale head
            # unused throughout), which static_graph lets DDP learn once instead of every step.
            self.svi.distribute(static_graph=True)

    def compile_blocked(self):
        """Settings under which ``--compile auto`` means off: aggressive training (its own inner
        loop), several processes, an ELBO that refuses recording (DReG), mixed precision (an eager step)."""
        return bool(
            self.settings.train.aggressive
            or self.world_size > 1
            or getattr(self.elbo, "dreg", False)
            or self.precision.enabled
        )

    def fit(self, epochs=None):
        """Train until ``epochs`` epochs in total; ``--compile auto`` first decides from the run's length.

        The length counts every step of the run, those already taken included, so that a
        resumed run makes the choice its uninterrupted self made and continues it exactly.
        """
        target = self.settings.train.epochs if epochs is None else epochs
        if self.compile_mode == "auto":
            steps = target * self.steps_per_epoch()
            compile = auto_compile(steps, self.loader.device, blocked=self.compile_blocked())
            if compile != self.compile:
                self.compile = compile
                self._build_svi()
                if compile == "on" and self.progress:
                    tqdm.write(
                        f"Compiling the ELBO for this run's {steps} steps (--compile auto: on when a C++ "
                        f"compiler works and the run has at least {AUTO_COMPILE_MIN_STEPS} steps); "
                        "the first step takes some seconds longer."
                    )
        return super().fit(epochs)

    def _make_aggressive(self, train_cfg):
        """He et al.'s aggressive training: encoder and generator get their own Adam."""
        if self.world_size > 1:
            raise DataError("aggressive training runs in a single process; drop --aggressive or run without torchrun")
        # the guide's networks: "encoder" (VAE, autoencoder) or "encoder1" and "encoder2" (two layers)
        encoder = [p for name, p in self.vae.named_parameters() if name.startswith("encoder")]
        decoder = [p for p in self.vae.parameters() if all(p is not e for e in encoder)]
        self.optim = self._optimizer(encoder)
        self.decoder_optim = self._optimizer(decoder)
        self.inner_generator = torch.Generator(device=self.loader.device).manual_seed(
            stream_seed("aggressive", train_cfg.seed)
        )
        self.svi = AggressiveSVI(
            self.vae.model,
            self.vae.guide,
            self.optim,
            self.decoder_optim,
            self.loss,
            self._random_batch,
            window=10,
            max_steps=100,
            clip_norm=self.optim_config.clip_norm,
        )
        self.switch = AggressiveSwitch(train_cfg.aggressive_patience)

    def _random_batch(self):
        """A fresh random training minibatch (the inner loop's data), binarized like the loader's."""
        g = self.inner_generator
        x = self.loader.examples(
            torch.randint(self.loader.num_examples, (self.loader.batch_size,), device=self.loader.device, generator=g)
        )
        return torch.bernoulli(x, generator=g) if self.loader.binarize == "dynamic" else x

    def _check_support(self):
        """Check the data against the likelihood once, before the (unvalidated) hot loop.

        Dynamically binarized batches are 0/1 by construction; rounding the
        grey levels gives data of the same support without drawing random numbers.
        Streamed training data are checked on their first :data:`STREAM_CHECK_EXAMPLES` examples.
        """
        data = (
            self.loader.sample(STREAM_CHECK_EXAMPLES)
            if is_reader(getattr(self.loader, "reader", None))
            else self.loader.data
        )
        data = data if self.loader.binarize != "dynamic" else data.round()
        self.vae.likelihood.check(data, "training data")
        self.vae.likelihood.check(self.test_data, "test data")
        self.vae.likelihood.adapt(data)  # e.g. the typical library size that generated counts take

    def state_dict(self):
        state = {**super().state_dict(), "model": self.vae.state_dict(), "optim": self.optim.state_dict()}
        if self.switch is not None:
            state["aggressive"] = {
                "switch": self.switch.state_dict(),
                "decoder_optim": self.decoder_optim.state_dict(),
                "generator": self.inner_generator.get_state(),
                "on": self.svi.aggressive,
            }
        return state

    def load_state_dict(self, state):
        self.vae.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        if self.switch is not None and "aggressive" in state:
            self.switch.load_state_dict(state["aggressive"]["switch"])
            self.decoder_optim.load_state_dict(state["aggressive"]["decoder_optim"])
            self.inner_generator.set_state(state["aggressive"]["generator"])
            self.svi.aggressive = state["aggressive"]["on"]
        super().load_state_dict(state)

    def evaluate(self, num_samples=0, data=None):
        """Test ELBO and, if ``num_samples`` > 0, importance-sampled log p(x): nats per example.

        Always with λ = 1, whatever KL weight training used. For an
        :class:`~pyrogen.models.autoencoder.Autoencoder` the result is its
        training objective ``{"objective": ...}`` (there is no ELBO), and
        ``num_samples`` > 0 is an error: a point-mass guide has no importance weights.
        """
        if isinstance(self.vae, Autoencoder):
            return self._evaluate_autoencoder(num_samples, data)
        self.vae.eval()
        with pyro.validation_enabled(False):
            result = evaluate_dataset(
                self.vae.model,
                self.vae.guide,
                self.test_data if data is None else data,
                batch_size=self.settings.eval.batch_size,
                num_samples=num_samples,
                progress=self.progress,
            )
        self.vae.train()
        return result

    def _evaluate_autoencoder(self, num_samples, data=None):
        data = self.test_data if data is None else data
        bs = self.settings.eval.batch_size
        x = data[:bs]
        if num_samples:
            try:
                log_importance_weights(self.vae.model, self.vae.guide, x, 1)
            except ValueError as e:
                raise PyrogenError(f"cannot estimate log p(x) of an autoencoder run: {e}") from None
        self.vae.eval()
        total, objective = 0.0, ReparamTrace_ELBO()
        with pyro.validation_enabled(False), torch.no_grad():
            for i in range(0, data.shape[0], bs):
                x = data[i : i + bs]
                total -= objective.differentiable_loss(self.vae.model, self.vae.guide, x).item()
        self.vae.train()
        return {"objective": total / data.shape[0]}

    def diagnostics(self, data=None):
        """Held-out collapse diagnostics (λ = 1): KL (nats per example), MI (nats), active units.

        See :func:`pyrogen.evaluation.diagnostics.collapse_diagnostics`; an
        autoencoder gets only its active units (its q has no density), and the
        two-layer model those of its lower layer z1 (KL to p(z1|z2) at the guide's z2).
        """
        data = self.test_data if data is None else data
        self.vae.eval()
        with pyro.validation_enabled(False), torch.no_grad():
            if isinstance(self.vae, Autoencoder):
                bs = self.settings.eval.batch_size
                codes = torch.cat([self.vae.code(data[i : i + bs]) for i in range(0, data.shape[0], bs)])
                result = {"active_units": active_units(codes)[0]}
            else:
                result = collapse_diagnostics(
                    self.vae.model,
                    self.vae.guide,
                    data,
                    batch_size=self.settings.eval.batch_size,
                    site="z1" if isinstance(self.vae, TwoLayerVAE) else "z",
                    progress=self.progress,
                )
        self.vae.train()
        return result

    def diverged(self, where, what):
        return svi_diverged(self, where, what)

    def train_step(self, x):
        """One SVI step on minibatch ``x`` at the KL weight of this point of training; returns the loss.

        Under ``--compile auto`` a compilation that fails (no working compiler after all) is
        said in one line and the step, and the rest of the run, go eagerly: nothing was drawn
        or updated by the failed attempt, so the run is the eager run. Under every compile
        setting, a recording that the guard finds stale (:class:`~pyrogen.errors.RecordingMismatchError`:
        the model read a Python value that changed since it was recorded) is said in one line
        and the run continues eagerly from that step, which the guard left untaken.
        """
        if self.compile != "off":
            try:
                return self._svi_step(x)
            except CompilationError as e:
                if self.compile_mode != "auto" and not isinstance(e, RecordingMismatchError):
                    raise
                reason = str(e).split(";")[0]
                tqdm.write(f"pyrogen: --compile {self.compile_mode}: {reason}; training eagerly", file=sys.stderr)
                self.compile = "off"
                self._build_svi()
        return self._svi_step(x)

    def _svi_step(self, x):
        kl_weight = self.kl_schedule(self.epoch + self.batch_in_epoch / len(self.loader))
        if kl_weight == 1.0:
            loss = self.svi.step(x)
        elif self.compile != "off":  # a tensor λ is an input of the compiled graph, not a constant in it
            loss = self.svi.step(x, kl_weight=torch.tensor(kl_weight, device=x.device))
        else:
            loss = self.svi.step(x, kl_weight=kl_weight)
        loss = loss_per_batch(loss, x.shape[0], self.optim_config.loss_reduction)  # the loop reports per example
        if not isinstance(self.elbo, TCELBO):
            return loss
        # β-TC-VAE: log the KL's decomposition of a fresh draw on the same batch (λ = 1), summed over
        # the batch like the loss, so the loop's per-example means are the terms in nats per example
        terms = self.elbo.decomposition(self.vae.model, self.vae.guide, x)
        return {"loss": loss, **{TC_TERMS[k]: v * x.shape[0] for k, v in terms.items() if k in TC_TERMS}}

    def train_epoch(self, bar=None):
        """One pass over the training data; returns the mean training ELBO (nats per example)."""
        return -self.epoch_stats(bar)["loss"]

    postfix = staticmethod(elbo_postfix)

    def parameters(self):
        return self.vae.parameters()

    def kl_sentence(self):
        """One plain sentence on how the training ELBO gets KL(q||p) (None for an autoencoder)."""
        if self.kl_method is None:
            return None
        name = type(self.elbo).__name__
        why = f", picked by --elbo auto because {self.elbo_reason}" if self.elbo_reason else ""
        if self.kl_method == "analytic":
            return f"KL(q||p) is computed in closed form ({name}){why}."
        if why:
            return f"KL(q||p) is estimated by Monte Carlo at the sampled z ({name}){why}."
        if isinstance(self.elbo, ReparamTrace_ELBO) and self.elbo_name == "trace":
            return (
                "KL(q||p) is estimated by Monte Carlo at the sampled z (Trace_ELBO's estimator); "
                "--elbo meanfield uses the closed form."
            )
        return (
            f"KL(q||p) is estimated by Monte Carlo at the sampled z: no closed form is registered for "
            f"guide {_posterior_family(self.vae).name!r} and prior {_prior_family(self.vae).name!r}."
        )

    def on_fit_start(self):
        if self.progress and self.kl_method:
            tqdm.write(self.kl_sentence())

    def epoch_report(self, stats, seconds):
        """Test ELBO and collapse diagnostics (rank 0), the aggressive switch, a summary line."""
        train_elbo = -stats["loss"]
        test = self.evaluate() if self.rank == 0 else {"elbo": float("nan")}
        diagnostics = self.diagnostics() if self.rank == 0 else {}
        validation = {}
        if self.validation_data is not None and self.rank == 0:
            validation["validation_elbo"] = self.evaluate(data=self.validation_data)["elbo"]
            if self.switch is not None:
                validation["validation_mi"] = self.diagnostics(self.validation_data)["mi"]
        if self.switch is not None and self.svi.aggressive:
            # the held-out MI of the validation split; the test set's only in runs made without one
            self.svi.aggressive = self.switch.update(validation.get("validation_mi", diagnostics.get("mi")))
        if self.decay is not None:
            self.decay.step(self.epoch - 1, -validation["validation_elbo"])
            validation.update(lr=self.optim.param_groups[0]["lr"], decays=self.decay.decays)
        row = {
            "epoch": self.epoch,
            "step": self.step,
            "train_elbo": train_elbo,
            **{"test_" + k: v for k, v in test.items()},
            **diagnostics,
            **validation,
            **{k: v for k, v in stats.items() if k != "loss"},
            "seconds": seconds,
        }
        if self.switch is not None:
            row["aggressive"] = int(self.svi.aggressive)
        if self.progress:
            evaluation = None if self.epoch_started is None else time.perf_counter() - self.epoch_started - seconds
            tqdm.write(epoch_line(self.epoch, train_elbo, test, diagnostics, seconds, evaluation))
        return row

    def epoch_images(self):
        """For the trackers: ``"samples"``, the decoder's means at 64 draws from the prior (the same draws
        every epoch), and ``"reconstructions"``, 32 test images above their reconstructions. Drawn under a
        forked random state, so a tracked run's numbers are the untracked run's."""
        vae, devices = self.vae, [self.test_data.device] if self.test_data.device.type == "cuda" else []
        if self.test_data.dim() != 4 or not all(hasattr(vae, name) for name in ("sample", "reconstruct")):
            return {}  # images only: a table's rows make no picture
        was_training = vae.training
        vae.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad(), pyro.validation_enabled(False):
                torch.manual_seed(0)
                samples = vae.sample(64)
                x = self.test_data[:32]
                images = {"samples": samples, "reconstructions": torch.cat([x, vae.reconstruct(x)])}
        finally:
            vae.train(was_training)
        return {k: v.reshape(v.shape[0], *x.shape[1:]).float().clamp(0, 1) for k, v in images.items()}


def svi_diverged(trainer, where, what):
    """The error of an SVI trainer that diverged at ``where`` because ``what`` (``"loss is nan"``, a named
    parameter that became NaN, ...): it names what diverged, the training loss, another statistic or a parameter."""
    if what.startswith("loss is "):
        text = f"training loss became NaN or infinite at {where}"
    else:
        text = f"training diverged at {where}: {what}"
    return TrainingDivergedError(f"{text}; stopping. {trainer.kept_checkpoint()}. {trainer.divergence_advice}")


def optim_config(train_cfg):
    """The :class:`~pyrogen.optim.OptimConfig` of a run's training settings (a dict of any layout, or the
    typed section of :func:`~pyrogen.settings.migrate`)."""
    if isinstance(train_cfg, dict):
        train_cfg = migrate({"train": train_cfg}).train
    decay_epochs = train_cfg.lr_decay_epochs
    return OptimConfig(
        optimizer=train_cfg.optimizer,
        lr=train_cfg.lr,
        momentum=train_cfg.momentum,
        loss_reduction=train_cfg.loss_reduction,
        clip_norm=train_cfg.clip_norm,
        init=train_cfg.init,
        decay=decay_epochs > 0,
        decay_epochs=max(1, decay_epochs),
        max_decay=train_cfg.max_decay,
        decay_start_epoch=train_cfg.decay_start_epoch,
        decay_reference=train_cfg.decay_reference,
    )


def build_trainer(config, run=None, device="auto", progress=True):
    """A :class:`VAETrainer` for a configuration: model, data and optimizer, freshly seeded."""
    device = resolve_device(device)
    settings = migrate(config)
    pyro.set_rng_seed(stream_seed("init", settings.train.seed))
    vae = build_model(config).to(device)
    train, test, _ = load_data(settings.data, device)
    validation = None
    size = settings.train.validation_size
    if size and is_reader(train):
        raise DataError(
            "--validation-size holds out part of the training data in memory; a streamed data set "
            "trains without it (drop --validation-size, or --no-stream)"
        )
    if size:
        if not size < train.shape[0]:
            raise DataError(f"--validation-size {size} leaves no training data out of {train.shape[0]} examples")
        train, validation = split_validation(train, size, seed=stream_seed("validation_split", settings.train.seed))
        if settings.data.binarize != "none":
            validation = static_binarize(validation, seed=stream_seed("validation_binarization"))
    return VAETrainer(vae, train, test, config, run=run, progress=progress, validation_data=validation)


def resume_trainer(run_dir, device="auto", progress=True):
    """Rebuild a run's trainer from its directory and load its last checkpoint."""
    return rundirs.resume_trainer(run_dir, device, progress, build=build_trainer)
