"""The training loop for VAE-family models: the AEVB minibatch algorithm over SVI.

Auto-Encoding Variational Bayes (Kingma and Welling 2014, algorithm 1): draw a
random minibatch of M examples (M = 100), draw L noise samples per example
(L = 1), take a gradient step on the minibatch ELBO, repeat. The loop runs
:class:`~pyrogen.infer.TorchSVI` over a device-resident data set, shows the
running ELBO in a progress bar, evaluates the test ELBO after every epoch,
appends a row to ``metrics.csv`` and writes an atomic checkpoint that
``resume`` continues bit for bit.

Every figure is in nats per example; "ELBO" is the bound itself (higher is
better), the loss its negation.
"""

import math
import os
import time

import pyro
import torch
from pyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from pyrogen import distributed
from pyrogen.data import DeviceLoader, check_images, load_splits, static_binarize
from pyrogen.distributions import LatentFamilyError, check_guide_family, check_latent_pair, default_binarize, kl_method
from pyrogen.errors import DataError, TrainingDivergedError
from pyrogen.evaluation import evaluate_dataset
from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI, AggressiveSwitch
from pyrogen.infer.kl_schedule import KL_SCHEDULES, FreeBitsELBO, build_kl_schedule
from pyrogen.models import VAE
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.runs import RunDir, rng_state, set_rng_state

ELBOS = {"trace": ReparamTrace_ELBO, "meanfield": TraceMeanField_ELBO}
"""``"trace"``: Monte Carlo KL (Trace_ELBO's values); ``"meanfield"``: analytic KL where registered."""

DEFAULT_TRAIN = {
    "epochs": 10, "batch_size": 100, "lr": 1e-3, "elbo": "trace", "num_particles": 1,
    "seed": 0, "log_every": 20,
    # KL weight λ on "z" (constant, linear warm-up or cyclical), free bits (nats per dimension),
    # aggressive inference-network training (He et al. 2019); see pyrogen.infer.kl_schedule/aggressive
    "kl_schedule": "constant", "kl_weight": 1.0, "kl_warmup_epochs": 10.0, "kl_start": 0.1,
    "kl_cycles": 4, "free_bits": 0.0, "aggressive": False, "aggressive_patience": 5,
    # record the ELBO as one graph and compile it (pyrogen.infer.CompiledLoss)
    "compile": False,
}  # fmt: skip
MODELS = {"vae": VAE, "ae": Autoencoder}
"""Run kinds: the variational autoencoder and the deterministic autoencoder baseline."""
DEFAULT_DATA = {"dataset": "fashion-mnist", "root": None, "binarize": "dynamic",
                "train_size": None, "test_size": None}
DEFAULT_EVAL = {"num_samples": 1000, "batch_size": 100}


def default_config(kind="vae", **model):
    """A complete run configuration: ``{"kind", "model", "data", "train", "eval"}``."""
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    return {
        "kind": kind,
        "model": MODELS[kind](**model).config,
        "data": {**DEFAULT_DATA, "binarize": default_binarize(model.get("likelihood", "bernoulli"))},
        "train": dict(DEFAULT_TRAIN),
        "eval": dict(DEFAULT_EVAL),
    }


def resolve_device(device):
    """``"auto"`` is CUDA where there is a GPU, else the CPU."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and distributed.world_size() > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def load_data(data_config, device):
    """Train and test images on ``device``, binarized as configured.

    Dynamic binarization happens in the loader; the test set is binarized once
    with a fixed seed (static), so every evaluation scores the same binary images.
    """
    train, test = load_splits(data_config["dataset"], data_config["root"],
                              data_config.get("train_size"), data_config.get("test_size"))
    test_x = test.images.to(device)
    if data_config["binarize"] != "none":
        test_x = static_binarize(test_x, seed=12345)
    return train.images.to(device), test_x, test.labels.to(device)


class VAETrainer(distributed.RankZeroRun):
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
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.vae, self.config, self.progress = vae, config, progress and self.rank == 0
        self.run = run
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
        self.compile = bool(train_cfg.get("compile", False))
        if self.compile and train_cfg.get("aggressive"):
            raise DataError("--compile applies to the standard SVI step; drop --compile or --aggressive")
        self.svi = TorchSVI(vae.model, vae.guide, self.optim, self.elbo, compile=self.compile)
        if self.world_size > 1:
            # The same parameters take part in every step (an autoencoder leaves its scale head
            # unused throughout), which static_graph lets DDP learn once instead of every step.
            self.svi.distribute(static_graph=True)
            distributed.seed_rank_noise(train_cfg["seed"], 0)
        self.switch = None
        if train_cfg.get("aggressive"):
            self._make_aggressive(train_cfg)
        self.epoch = 0
        self.step = 0
        self.metrics = []

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
        state = {
            "config": self.config, "epoch": self.epoch, "step": self.step,
            "model": self.vae.state_dict(), "optim": self.optim.state_dict(),
            "loader": self.loader.state_dict(), "rng": rng_state(), "metrics": self.metrics,
        }  # fmt: skip
        if self.switch is not None:
            state["aggressive"] = {"switch": self.switch.state_dict(), "decoder_optim": self.decoder_optim.state_dict(),
                                   "generator": self.inner_generator.get_state(), "on": self.svi.aggressive}
        return state

    def load_state_dict(self, state):
        self.vae.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.epoch, self.step, self.metrics = state["epoch"], state["step"], list(state["metrics"])
        if self.switch is not None and "aggressive" in state:
            self.switch.load_state_dict(state["aggressive"]["switch"])
            self.decoder_optim.load_state_dict(state["aggressive"]["decoder_optim"])
            self.inner_generator.set_state(state["aggressive"]["generator"])
            self.svi.aggressive = state["aggressive"]["on"]
        distributed.seed_rank_noise(self.config["train"]["seed"], self.epoch)

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
        from pyrogen.errors import PyrogenError
        from pyrogen.evaluation import log_importance_weights

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
                from pyrogen.evaluation.diagnostics import active_units

                bs = self.config["eval"]["batch_size"]
                codes = torch.cat([self.vae.code(self.test_data[i : i + bs])
                                   for i in range(0, self.test_data.shape[0], bs)])
                result = {"active_units": active_units(codes)[0]}
            else:
                result = collapse_diagnostics(self.vae.model, self.vae.guide, self.test_data,
                                              batch_size=self.config["eval"]["batch_size"])
        self.vae.train()
        return result

    def _diverged(self, where):
        kept = (f"The last good checkpoint (epoch {self.epoch}) is kept in {self.run.checkpoint_path!r}"
                if self.run and self.epoch else "No checkpoint had been written yet")
        return TrainingDivergedError(
            f"training loss became NaN or infinite at {where}; stopping. {kept}. "
            "Try a lower learning rate (--lr)."
        )

    def train_epoch(self, bar=None):
        """One pass over the training data; returns the mean training ELBO (nats per example)."""
        log_every = self.config["train"]["log_every"]
        total, seen = 0.0, 0
        window, window_seen = None, 0  # loss summed on the device since the last read
        with pyro.validation_enabled(False):
            for i, x in enumerate(self.loader, 1):
                kl_weight = self.kl_schedule(self.epoch + (i - 1) / len(self.loader))
                if kl_weight == 1.0:
                    loss = self.svi.step(x)
                elif self.compile:  # a tensor λ is an input of the compiled graph, not a constant in it
                    loss = self.svi.step(x, kl_weight=torch.tensor(kl_weight, device=x.device))
                else:
                    loss = self.svi.step(x, kl_weight=kl_weight)
                window = loss if window is None else window + loss
                window_seen += x.shape[0]
                self.step += 1
                if i % log_every == 0 or i == len(self.loader):
                    if self.world_size > 1:
                        window = distributed.all_reduce_sum(torch.stack([window, window.new_tensor(window_seen)]))
                        window, window_seen = window[0], int(window[1].item())
                    value = window.item()
                    if not math.isfinite(value):
                        raise self._diverged(f"epoch {self.epoch + 1}, step {self.step}")
                    total, seen = total + value, seen + window_seen
                    if bar is not None:
                        bar.set_postfix(elbo=f"{-value / window_seen:.2f}")
                        bar.update(i - bar.n)
                    window, window_seen = None, 0
        return -total / seen

    def fit(self, epochs=None):
        """Train until ``epochs`` epochs in total are done (``config["train"]["epochs"]`` by default)."""
        epochs = self.config["train"]["epochs"] if epochs is None else epochs
        if self.progress and self.kl_method:
            tqdm.write(f"KL(q||p): {self.kl_method} ({type(self.elbo).__name__})")
        while self.epoch < epochs:
            start = time.perf_counter()
            bar = tqdm(total=len(self.loader), desc=f"epoch {self.epoch + 1}/{epochs}",
                       disable=not self.progress, leave=False)
            with bar:
                train_elbo = self.train_epoch(bar)
            seconds = time.perf_counter() - start
            test = self.evaluate() if self.rank == 0 else {"elbo": float("nan")}
            diagnostics = self.diagnostics() if self.rank == 0 else {}
            if self.switch is not None and self.svi.aggressive:
                self.svi.aggressive = self.switch.update(diagnostics["mi"])
            if not all(math.isfinite(p.detach().sum().item()) for p in self.vae.parameters()):
                raise self._diverged(f"the end of epoch {self.epoch + 1}")
            self.epoch += 1
            row = {"epoch": self.epoch, "step": self.step, "train_elbo": train_elbo,
                   **{"test_" + k: v for k, v in test.items()}, **diagnostics, "seconds": seconds}
            if self.switch is not None:
                row["aggressive"] = int(self.svi.aggressive)
            self.metrics.append(row)
            if self.progress:
                tqdm.write(f"epoch {self.epoch}: train ELBO {train_elbo:.2f}, "
                           + ", ".join(f"test {k} {v:.2f}" for k, v in test.items())
                           + "".join(f", {k} {v:.2f}" for k, v in diagnostics.items())
                           + f" ({seconds:.1f} s)")
            if self.run is not None:
                self.run.save_checkpoint(self.state_dict())
                self.run.write_metrics(self.metrics)
            distributed.barrier()
        return self.metrics

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
    vae = MODELS[config.get("kind", "vae")](**config["model"]).to(device)
    train, test, _ = load_data(config["data"], device)
    return VAETrainer(vae, train, test, config, run=run, progress=progress)


def load_model(run_dir, device="auto"):
    """The model of a run, with the weights of its last checkpoint, in eval mode."""
    run = RunDir.open(run_dir)
    state = run.load_checkpoint(map_location=resolve_device(device))
    vae = MODELS[state["config"].get("kind", "vae")](**state["config"]["model"]).to(resolve_device(device))
    vae.load_state_dict(state["model"])
    return vae.eval()


def resume_trainer(run_dir, device="auto", progress=True):
    """Rebuild a run's trainer from its directory and load its last checkpoint."""
    run = RunDir.open(run_dir)
    state = run.load_checkpoint(map_location=resolve_device(device))
    trainer = build_trainer(state["config"], run=run, device=device, progress=progress)
    trainer.load_state_dict(state)
    return trainer
