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

import pyro
import torch
from pyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from pyrogen import distributed
from pyrogen.config import (  # noqa: F401
    AUTO_COMPILE_MIN_STEPS,
    DEFAULT_DATA,
    DEFAULT_EVAL,
    DEFAULT_TRAIN,
    compile_mode,
    default_config,
)
from pyrogen.data import DeviceLoader, check_images
from pyrogen.distributions import LatentFamilyError, check_guide_family, check_latent_pair, kl_method
from pyrogen.errors import CompilationError, DataError, PyrogenError, TrainingDivergedError
from pyrogen.evaluation import evaluate_dataset, log_importance_weights
from pyrogen.evaluation.diagnostics import active_units, collapse_diagnostics
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI, AggressiveSwitch
from pyrogen.infer.kl_schedule import FreeBitsELBO, build_kl_schedule
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.registry import MODELS, build_model  # noqa: F401
from pyrogen.runs import load_data, load_model, open_run, resolve_device  # noqa: F401
from pyrogen.training.loop import FitLoop

ELBOS = {"trace": ReparamTrace_ELBO, "meanfield": TraceMeanField_ELBO}
"""``"trace"``: Monte Carlo KL (Trace_ELBO's values); ``"meanfield"``: analytic KL where registered."""


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
    """``--compile auto``'s choice for a run of ``steps`` more steps: compile where a compiler works
    and ``steps`` >= :data:`AUTO_COMPILE_MIN_STEPS`; ``blocked`` (a setting that cannot compile) means no."""
    return not blocked and steps >= AUTO_COMPILE_MIN_STEPS and compiler_works(device)


EPOCH_LINE_NAMES = {"elbo": "test ELBO", "objective": "test objective", "log_px": "test log p(x)",
                    "kl": "KL", "mi": "MI", "active_units": "active units"}
"""How the per-epoch line names the metrics-row columns (one case throughout)."""


def epoch_line(epoch, train_elbo, test, diagnostics, seconds):
    """The line printed after an epoch: ELBOs and KL in nats per example, MI in nats, counts as integers."""
    parts = [f"train ELBO {train_elbo:.2f}"]
    for key, value in {**test, **diagnostics}.items():
        name = EPOCH_LINE_NAMES.get(key, key.replace("_", " "))
        if isinstance(value, int) or key == "active_units":
            parts.append(f"{name} {int(value)}")
        else:
            parts.append(f"{name} {value:.2f}")
    return f"epoch {epoch}: " + ", ".join(parts) + f" ({seconds:.1f} s)"


class VAETrainer(FitLoop):
    """Fits a VAE-family model/guide pair by SVI, with a run directory.

    :param VAE vae: the model (its ``model`` and ``guide`` are trained).
    :param torch.Tensor train_data: training images in [0, 1] on the device.
    :param torch.Tensor test_data: test images, already binarized if the likelihood needs it.
    :param dict config: the run configuration (see :func:`default_config`).
    :param RunDir run: where metrics, checkpoints and pictures go (None: nowhere).
    :param bool progress: show a progress bar.

    Inside a ``torch.distributed`` process group (see :mod:`pyrogen.distributed`)
    each rank trains on its share of every global minibatch of
    ``batch_size`` examples, gradients are averaged by DDP, and only rank 0
    shows progress, evaluates and writes to the run directory.
    """

    def __init__(self, vae, train_data, test_data, config, run=None, progress=True):
        super().__init__(config=config, run=run, progress=progress)
        self.vae = vae
        train_cfg, data_cfg = config["train"], config["data"]
        check_images(train_data, "training data")
        check_images(test_data, "test data")
        self.loader = DeviceLoader(
            train_data, train_cfg["batch_size"], binarize=data_cfg["binarize"],
            seed=train_cfg["seed"] + 1, device=train_data.device,
            rank=self.rank, world_size=self.world_size,
        )  # fmt: skip
        self.test_data = test_data
        vae.likelihood.check_binarize(data_cfg["binarize"])
        self._check_support()
        if train_cfg["elbo"] not in ELBOS:
            raise ValueError(f"elbo must be one of {sorted(ELBOS)}, got {train_cfg['elbo']!r}")
        self.elbo = ELBOS[train_cfg["elbo"]](num_particles=train_cfg["num_particles"])
        if train_cfg.get("free_bits", 0.0) > 0:
            self.elbo = FreeBitsELBO(train_cfg["free_bits"], num_particles=train_cfg["num_particles"])
        self.kl_method = None  # how the ELBO gets KL(q||p): "analytic" or "monte-carlo"
        if not isinstance(vae, Autoencoder):
            check_guide_family(vae.posterior_family, type(self.elbo).__name__)
            check_latent_pair(vae.prior_family, vae.posterior_family)
            self.kl_method = kl_method(vae.posterior_family, vae.prior_family,
                                       analytic=isinstance(self.elbo, (TraceMeanField_ELBO, FreeBitsELBO)))
            if isinstance(self.elbo, FreeBitsELBO) and self.kl_method != "analytic":
                raise LatentFamilyError(f"free bits need KL(q||p) in closed form, which is not registered "
                                        f"for guide {vae.posterior_family.name!r} and prior {vae.prior_family.name!r}")
        self.kl_schedule = build_kl_schedule(
            train_cfg.get("kl_schedule", "constant"), train_cfg["epochs"], weight=train_cfg.get("kl_weight", 1.0),
            warmup_epochs=train_cfg.get("kl_warmup_epochs", 10.0), start=train_cfg.get("kl_start", 0.1),
            num_cycles=train_cfg.get("kl_cycles", 4))
        fused = {"fused": True} if train_data.device.type in ("cpu", "cuda") else {}
        self.optim = torch.optim.Adam(vae.parameters(), lr=train_cfg["lr"], **fused)
        self.compile_mode = compile_mode(train_cfg.get("compile", "off"))
        if self.compile_mode == "on" and train_cfg.get("aggressive"):
            raise DataError("--compile applies to the standard SVI step; drop --compile or --aggressive")
        self.compile = self.compile_mode == "on"  # "auto" decides in fit(), when the run's length is known
        self._build_svi()
        if self.world_size > 1:
            distributed.seed_rank_noise(train_cfg["seed"], 0)
        self.switch = None
        if train_cfg.get("aggressive"):
            self._make_aggressive(train_cfg)

    def _build_svi(self):
        self.svi = TorchSVI(self.vae.model, self.vae.guide, self.optim, self.elbo, compile=self.compile)
        if self.world_size > 1:
            # The same parameters take part in every step (an autoencoder leaves its scale head
            # unused throughout), which static_graph lets DDP learn once instead of every step.
            self.svi.distribute(static_graph=True)

    def compile_blocked(self):
        """Settings under which ``--compile auto`` means off: aggressive training (its own inner
        loop), several processes, an ELBO that refuses recording (DReG)."""
        return bool(self.config["train"].get("aggressive") or self.world_size > 1
                    or getattr(self.elbo, "dreg", False))

    def fit(self, epochs=None):
        """Train until ``epochs`` epochs in total; ``--compile auto`` first decides from the run's length.

        The length counts every step of the run, those already taken included, so that a
        resumed run makes the choice its uninterrupted self made and continues it exactly.
        """
        target = self.config["train"]["epochs"] if epochs is None else epochs
        if self.compile_mode == "auto":
            steps = target * self.steps_per_epoch()
            compile = auto_compile(steps, self.loader.device, blocked=self.compile_blocked())
            if compile != self.compile:
                self.compile = compile
                self._build_svi()
                if compile and self.progress:
                    tqdm.write(f"Compiling the ELBO for this run's {steps} steps (--compile auto: on when a C++ "
                               f"compiler works and the run has at least {AUTO_COMPILE_MIN_STEPS} steps); "
                               "the first step takes a few seconds longer.")
        return super().fit(epochs)

    def _make_aggressive(self, train_cfg):
        """He et al.'s aggressive training: encoder and generator get their own Adam."""
        if self.world_size > 1:
            raise DataError("aggressive training runs in a single process; drop --aggressive or run without torchrun")
        encoder = set(self.vae.encoder.parameters())
        decoder = [p for p in self.vae.parameters() if p not in encoder]
        self.optim = torch.optim.Adam(self.vae.encoder.parameters(), lr=train_cfg["lr"])
        self.decoder_optim = torch.optim.Adam(decoder, lr=train_cfg["lr"])
        self.inner_generator = torch.Generator(device=self.loader.device).manual_seed(train_cfg["seed"] + 2)
        self.svi = AggressiveSVI(self.vae.model, self.vae.guide, self.optim, self.decoder_optim, self.elbo,
                                 self._random_batch, window=10, max_steps=100)
        self.switch = AggressiveSwitch(train_cfg.get("aggressive_patience", 5))

    def _random_batch(self):
        """A fresh random training minibatch (the inner loop's data), binarized like the loader's."""
        data, g = self.loader.data, self.inner_generator
        x = data[torch.randint(data.shape[0], (self.loader.batch_size,), device=data.device, generator=g)]
        return torch.bernoulli(x, generator=g) if self.loader.binarize == "dynamic" else x

    def _check_support(self):
        """Check the data against the likelihood once, before the (unvalidated) hot loop.

        Dynamically binarized batches are 0/1 by construction; rounding the
        grey levels gives data of the same support without drawing random numbers.
        """
        data = self.loader.data if self.loader.binarize != "dynamic" else self.loader.data.round()
        self.vae.likelihood.check(data, "training data")
        self.vae.likelihood.check(self.test_data, "test data")

    def state_dict(self):
        state = {**super().state_dict(), "model": self.vae.state_dict(), "optim": self.optim.state_dict()}
        if self.switch is not None:
            state["aggressive"] = {"switch": self.switch.state_dict(), "decoder_optim": self.decoder_optim.state_dict(),
                                   "generator": self.inner_generator.get_state(), "on": self.svi.aggressive}
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

    def evaluate(self, num_samples=0):
        """Test ELBO and, if ``num_samples`` > 0, importance-sampled log p(x): nats per example.

        Always with λ = 1, whatever KL weight training used. For an
        :class:`~pyrogen.models.autoencoder.Autoencoder` the result is its
        training objective ``{"objective": ...}`` (there is no ELBO), and
        ``num_samples`` > 0 is an error: a point-mass guide has no importance weights.
        """
        if isinstance(self.vae, Autoencoder):
            return self._evaluate_autoencoder(num_samples)
        self.vae.eval()
        with pyro.validation_enabled(False):
            result = evaluate_dataset(self.vae.model, self.vae.guide, self.test_data,
                                      batch_size=self.config["eval"]["batch_size"],
                                      num_samples=num_samples)
        self.vae.train()
        return result

    def _evaluate_autoencoder(self, num_samples):
        x = self.test_data[: self.config["eval"]["batch_size"]]
        if num_samples:
            try:
                log_importance_weights(self.vae.model, self.vae.guide, x, 1)
            except ValueError as e:
                raise PyrogenError(f"cannot estimate log p(x) of an autoencoder run: {e}") from None
        self.vae.eval()
        total, objective = 0.0, ReparamTrace_ELBO()
        with pyro.validation_enabled(False), torch.no_grad():
            for i in range(0, self.test_data.shape[0], self.config["eval"]["batch_size"]):
                x = self.test_data[i : i + self.config["eval"]["batch_size"]]
                total -= objective.differentiable_loss(self.vae.model, self.vae.guide, x).item()
        self.vae.train()
        return {"objective": total / self.test_data.shape[0]}

    def diagnostics(self):
        """Held-out collapse diagnostics (λ = 1): KL (nats per example), MI (nats), active units.

        See :func:`pyrogen.evaluation.diagnostics.collapse_diagnostics`; an
        autoencoder gets only its active units (its q has no density).
        """
        self.vae.eval()
        with pyro.validation_enabled(False), torch.no_grad():
            if isinstance(self.vae, Autoencoder):
                bs = self.config["eval"]["batch_size"]
                codes = torch.cat([self.vae.code(self.test_data[i : i + bs])
                                   for i in range(0, self.test_data.shape[0], bs)])
                result = {"active_units": active_units(codes)[0]}
            else:
                result = collapse_diagnostics(self.vae.model, self.vae.guide, self.test_data,
                                              batch_size=self.config["eval"]["batch_size"])
        self.vae.train()
        return result

    def diverged(self, where, what):
        return TrainingDivergedError(f"training loss became NaN or infinite at {where}; stopping. "
                                     f"{self.kept_checkpoint()}. {self.divergence_advice}")

    def train_step(self, x):
        """One SVI step on minibatch ``x`` at the KL weight of this point of training; returns the loss.

        Under ``--compile auto`` a compilation that fails (no working compiler after all) is
        said in one line and the step, and the rest of the run, go eagerly: nothing was drawn
        or updated by the failed attempt, so the run is the eager run.
        """
        if self.compile and self.compile_mode == "auto":
            try:
                return self._svi_step(x)
            except CompilationError as e:
                reason = str(e).split(";")[0]
                tqdm.write(f"pyrogen: --compile auto: {reason}; training eagerly", file=sys.stderr)
                self.compile = False
                self._build_svi()
        return self._svi_step(x)

    def _svi_step(self, x):
        kl_weight = self.kl_schedule(self.epoch + self.batch_in_epoch / len(self.loader))
        if kl_weight == 1.0:
            return self.svi.step(x)
        if self.compile:  # a tensor λ is an input of the compiled graph, not a constant in it
            return self.svi.step(x, kl_weight=torch.tensor(kl_weight, device=x.device))
        return self.svi.step(x, kl_weight=kl_weight)

    def train_epoch(self, bar=None):
        """One pass over the training data; returns the mean training ELBO (nats per example)."""
        return -self.epoch_stats(bar)["loss"]

    def postfix(self, means):
        return {"elbo": f"{-means['loss']:.2f}"}

    def parameters(self):
        return self.vae.parameters()

    def kl_sentence(self):
        """One plain sentence on how the training ELBO gets KL(q||p) (None for an autoencoder)."""
        if self.kl_method is None:
            return None
        if self.kl_method == "analytic":
            return f"KL(q||p) is computed in closed form ({type(self.elbo).__name__})."
        if isinstance(self.elbo, ReparamTrace_ELBO):
            return ("KL(q||p) is estimated by Monte Carlo at the sampled z (Trace_ELBO's estimator); "
                    "--elbo meanfield uses the closed form.")
        return (f"KL(q||p) is estimated by Monte Carlo at the sampled z: no closed form is registered for "
                f"guide {self.vae.posterior_family.name!r} and prior {self.vae.prior_family.name!r}.")

    def on_fit_start(self):
        if self.progress and self.kl_method:
            tqdm.write(self.kl_sentence())

    def epoch_report(self, stats, seconds):
        """Test ELBO and collapse diagnostics (rank 0), the aggressive switch, a summary line."""
        train_elbo = -stats["loss"]
        test = self.evaluate() if self.rank == 0 else {"elbo": float("nan")}
        diagnostics = self.diagnostics() if self.rank == 0 else {}
        if self.switch is not None and self.svi.aggressive:
            self.svi.aggressive = self.switch.update(diagnostics["mi"])
        row = {"epoch": self.epoch, "step": self.step, "train_elbo": train_elbo,
               **{"test_" + k: v for k, v in test.items()}, **diagnostics, "seconds": seconds}
        if self.switch is not None:
            row["aggressive"] = int(self.svi.aggressive)
        if self.progress:
            tqdm.write(epoch_line(self.epoch, train_elbo, test, diagnostics, seconds))
        return row

    def write_pictures(self, num=64):
        """Prior samples and reconstructions (inputs above, reconstructions below) as PNG grids."""
        if self.run is None:
            return []
        self.vae.eval()
        with torch.no_grad():
            samples = self.vae.sample(num)
            x = self.test_data[:num // 2]
            recon = self.vae.reconstruct(x)
        self.vae.train()
        return [self.run.save_image("samples.png", samples),
                self.run.save_image("reconstructions.png", torch.cat([x, recon]))]


def build_trainer(config, run=None, device="auto", progress=True):
    """A :class:`VAETrainer` for a configuration: model, data and optimizer, freshly seeded."""
    device = resolve_device(device)
    pyro.set_rng_seed(config["train"]["seed"])
    vae = build_model(config).to(device)
    train, test, _ = load_data(config["data"], device)
    return VAETrainer(vae, train, test, config, run=run, progress=progress)


def resume_trainer(run_dir, device="auto", progress=True):
    """Rebuild a run's trainer from its directory and load its last checkpoint."""
    run = open_run(run_dir, device)
    trainer = build_trainer(run.checkpoint["config"], run=run.dir, device=device, progress=progress)
    trainer.load_state_dict(run.checkpoint)
    return trainer
