"""The training loop for GANs: :class:`~pyrogen.infer.Adversarial` over a run directory.

The counterpart of :class:`pyrogen.training.VAETrainer` for the adversarial
game: a progress bar with both players' losses, one ``metrics.csv`` row per
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
  whose critic values have no fixed decision threshold).

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

import math
import time

import pyro
import torch
from tqdm.auto import tqdm

from pyrogen import distributed
from pyrogen.data import DeviceLoader, check_images, load_splits
from pyrogen.errors import DataError, TrainingDivergedError
from pyrogen.infer.adversarial import Adversarial
from pyrogen.infer.gan_losses import GAN_LOSSES, WassersteinGPLoss, get_gan_loss
from pyrogen.models.gan import ARCHITECTURES, NORMS, Generator, build_discriminator
from pyrogen.runs import RunDir, rng_state, set_rng_state
from pyrogen.training import resolve_device

DEFAULT_GAN_TRAIN = {
    "epochs": 10, "batch_size": 64, "loss": "nonsaturating", "gp_weight": 10.0, "d_steps": 1,
    "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "ema_decay": 0.0, "seed": 0, "log_every": 20,
    "num_fixed": 64, "divergence_threshold": 1e4, "collapse_threshold": 0.5, "overpower_accuracy": 0.98,
}  # fmt: skip
"""Training settings; ``ema_decay`` 0 turns the generator's moving average off (0.999 is usual)."""
DEFAULT_GAN_DATA = {"dataset": "fashion-mnist", "root": None, "train_size": None, "test_size": None}


def default_gan_config(architecture="dcgan", latent_dim=100, hidden=(256, 256), channels=64, norm=None,
                       loss="nonsaturating"):
    """A complete GAN run configuration: ``{"kind": "gan", "model", "discriminator", "data", "train"}``.

    ``norm`` None picks the discriminator's normalisation: none for WGAN-GP (its per-example
    gradient penalty forbids batch norm), else the architecture's default.
    """
    if loss not in GAN_LOSSES:
        raise DataError(f"loss must be one of {sorted(GAN_LOSSES)}, got {loss!r}")
    if architecture not in ARCHITECTURES:
        raise DataError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if norm is None:
        norm = "none" if loss == "wgan-gp" or architecture == "mlp" else "batch"
    if norm not in NORMS:
        raise DataError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss == "wgan-gp" and norm == "batch":
        raise DataError("WGAN-GP's gradient penalty is per example, which batch norm in the discriminator "
                        "breaks; use norm 'none' or 'spectral'")
    model = Generator(latent_dim, architecture=architecture, hidden=tuple(hidden), channels=channels).config
    return {
        "kind": "gan", "model": model,
        "discriminator": {"architecture": architecture, "hidden": list(hidden), "channels": channels, "norm": norm},
        "data": dict(DEFAULT_GAN_DATA), "train": dict(DEFAULT_GAN_TRAIN, loss=loss),
    }  # fmt: skip


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


def mean_pairwise_distance(x):
    """Mean L2 distance between distinct examples of a batch ``(N, ...)``, N >= 2."""
    flat = x.flatten(1).double()
    d = torch.cdist(flat, flat)
    n = flat.shape[0]
    return (d.sum() / (n * (n - 1))).item()


class GANTrainer(distributed.RankZeroRun):
    """Fits a :class:`~pyrogen.models.gan.Generator` (or any generator model) against a discriminator.

    :param generator: a module with ``model(batch_size=B)`` (site ``"x"``) and ``generate(z)``,
        e.g. :class:`~pyrogen.models.gan.Generator`.
    :param torch.nn.Module discriminator: maps images to scores.
    :param torch.Tensor train_data: training images in [0, 1] on the device.
    :param torch.Tensor test_data: real test images in [0, 1] (the diversity reference).
    :param dict config: the run configuration (see :func:`default_gan_config`).
    :param RunDir run: where metrics, checkpoints and pictures go (None: nowhere).
    :param bool progress: show a progress bar.

    Inside a ``torch.distributed`` process group (see :mod:`pyrogen.distributed`)
    each rank trains on its equal share of every global minibatch of ``batch_size``
    examples (which the number of processes must divide), draws its own noise,
    and both players' gradients are averaged (:meth:`Adversarial.distribute
    <pyrogen.infer.Adversarial.distribute>`); only rank 0 shows progress, draws
    the sample grids and writes to the run directory. On GPUs batch norm is
    converted to :class:`~torch.nn.SyncBatchNorm`, whose statistics cover the
    global batch; on the CPU (gloo) its statistics are those of each rank's shard.
    """

    def __init__(self, generator, discriminator, train_data, test_data, config, run=None, progress=True):
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        if self.world_size > 1 and train_data.device.type == "cuda":
            generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        self.generator, self.discriminator = generator, discriminator
        self.config, self.run, self.progress = config, run, progress and self.rank == 0
        cfg = config["train"]
        check_images(train_data, "training data")
        check_images(test_data, "test data")
        if isinstance(cfg["d_steps"], bool) or not isinstance(cfg["d_steps"], int) or cfg["d_steps"] < 1:
            raise DataError(f"d_steps must be a positive integer, got {cfg['d_steps']!r}")
        self.loader = DeviceLoader(train_data, cfg["batch_size"], seed=cfg["seed"] + 1, drop_last=True,
                                   device=train_data.device, rank=self.rank, world_size=self.world_size)
        if cfg["batch_size"] % self.world_size:
            raise DataError(f"batch_size {cfg['batch_size']} must be a multiple of the number of processes "
                            f"{self.world_size}: the GAN losses are means over each process's share, which "
                            "must be equal for their average to be the global batch's mean")
        if len(self.loader) < cfg["d_steps"]:
            raise DataError(f"an epoch of {len(self.loader)} batches is shorter than d_steps = {cfg['d_steps']}")
        self.test_data = test_data
        options = {"gp_weight": cfg["gp_weight"]} if cfg["loss"] == "wgan-gp" else {}
        self.loss = get_gan_loss(cfg["loss"], **options)
        betas = tuple(cfg["betas"])
        self.optim_g = torch.optim.Adam(generator.parameters(), lr=cfg["lr_g"], betas=betas)
        self.optim_d = torch.optim.Adam(discriminator.parameters(), lr=cfg["lr_d"], betas=betas)
        self.gan = Adversarial(generator.model, discriminator, self.optim_g, self.optim_d, self.loss,
                               d_steps=cfg["d_steps"], track_grad_norms=True)
        if self.world_size > 1:
            self.gan.distribute()
            distributed.seed_rank_noise(cfg["seed"], 0)
        self.ema = GeneratorEMA(generator, cfg["ema_decay"]) if cfg.get("ema_decay") else None
        g = torch.Generator(device="cpu").manual_seed(cfg["seed"] + 3)
        self.fixed_noise = torch.randn(cfg["num_fixed"], generator.latent_dim, generator=g).to(train_data.device)
        n_ref = min(cfg["num_fixed"], test_data.shape[0])
        self.real_diversity = mean_pairwise_distance(test_data[:n_ref]) if n_ref >= 2 else float("nan")
        self.epoch, self.step, self.metrics = 0, 0, []

    # --------------------------------------------------------------- state
    def state_dict(self):
        state = {
            "config": self.config, "epoch": self.epoch, "step": self.step,
            "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
            "optim_g": self.optim_g.state_dict(), "optim_d": self.optim_d.state_dict(),
            "loader": self.loader.state_dict(), "rng": rng_state(), "metrics": self.metrics,
            "fixed_noise": self.fixed_noise,
        }  # fmt: skip
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state):
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.optim_g.load_state_dict(state["optim_g"])
        self.optim_d.load_state_dict(state["optim_d"])
        self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.fixed_noise = state["fixed_noise"].to(self.fixed_noise.device)
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step, self.metrics = state["epoch"], state["step"], list(state["metrics"])
        distributed.seed_rank_noise(self.config["train"]["seed"], self.epoch)

    # --------------------------------------------------------------- samples
    @torch.no_grad()
    def samples(self, z=None, use_ema=True):
        """Images G(z) in [0, 1] for latents ``z`` (default: the fixed noise), in eval mode,
        with the moving-average weights when ``use_ema`` and there are any."""
        z = self.fixed_noise if z is None else z
        was_training = self.generator.training
        self.generator.eval()
        try:
            if self.ema is not None and use_ema:
                with self.ema.swapped():
                    return self.generator.generate(z)
            return self.generator.generate(z)
        finally:
            self.generator.train(was_training)

    # --------------------------------------------------------------- training
    def _diverged(self, where, what):
        kept = (f"The last good checkpoint (epoch {self.epoch}) is kept in {self.run.checkpoint_path!r}"
                if self.run and self.epoch else "No checkpoint had been written yet")
        return TrainingDivergedError(
            f"GAN training diverged at {where}: {what}; stopping. {kept}. "
            "Try lower learning rates (--lr-g, --lr-d), spectral normalisation (--norm spectral) or another loss.")

    def _check(self, values, where):
        limit = self.config["train"]["divergence_threshold"]
        for name in ("loss_d", "loss_g"):
            v = values[name]
            if not math.isfinite(v):
                raise self._diverged(where, f"{name} is {v}")
            if abs(v) > limit:
                raise self._diverged(where, f"|{name}| = {abs(v):.3g} exceeds divergence_threshold {limit:g}")

    def _steps(self):
        """Groups of ``d_steps`` consecutive batches, one group per generator step."""
        group, d_steps = [], self.config["train"]["d_steps"]
        for x in self.loader:
            group.append(x)
            if len(group) == d_steps:
                yield group if d_steps > 1 else group[0]
                group = []

    def train_epoch(self, bar=None):
        """One pass over the training data; returns the epoch's mean statistics (floats)."""
        log_every = self.config["train"]["log_every"]
        sums, count, window, window_n = {}, 0, None, 0
        steps = len(self.loader) // self.config["train"]["d_steps"]
        with pyro.validation_enabled(False):
            for i, x in enumerate(self._steps(), 1):
                out = self.gan.step(x)
                if self.ema is not None:
                    self.ema.update()
                self.step += 1
                stacked = torch.stack(list(out.values()))
                window = stacked if window is None else window + stacked
                window_n += 1
                if i % log_every == 0 or i == steps:
                    if self.world_size > 1:  # every rank's shard is equally large: average the ranks' means
                        window = distributed.all_reduce_sum(window) / self.world_size
                    mean = dict(zip(out, (window / window_n).tolist()))
                    self._check(mean, f"epoch {self.epoch + 1}, step {self.step}")
                    for k, v in mean.items():
                        sums[k] = sums.get(k, 0.0) + v * window_n
                    count += window_n
                    window, window_n = None, 0
                    if bar is not None:
                        bar.set_postfix(loss_d=f"{mean['loss_d']:.3f}", loss_g=f"{mean['loss_g']:.3f}",
                                        d_real=f"{mean['d_real']:.2f}", d_fake=f"{mean['d_fake']:.2f}")
                        bar.update(i - bar.n)
        return {k: v / count for k, v in sums.items()}

    def health_flags(self, row):
        """The training-health warnings for an epoch's metrics row (a list of names)."""
        cfg, flags = self.config["train"], []
        if math.isfinite(row.get("diversity", float("nan"))) and row["diversity"] < cfg["collapse_threshold"]:
            flags.append("mode-collapse")
        if not isinstance(self.loss, WassersteinGPLoss) and row["d_accuracy"] >= cfg["overpower_accuracy"]:
            flags.append("d-overpowering")
        return flags

    def fit(self, epochs=None):
        """Train until ``epochs`` epochs in total are done (``config["train"]["epochs"]`` by default)."""
        epochs = self.config["train"]["epochs"] if epochs is None else epochs
        steps = len(self.loader) // self.config["train"]["d_steps"]
        while self.epoch < epochs:
            start = time.perf_counter()
            bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}/{epochs}", disable=not self.progress, leave=False)
            with bar:
                stats = self.train_epoch(bar)
            seconds = time.perf_counter() - start
            if not all(math.isfinite(p.detach().sum().item())
                       for p in (*self.generator.parameters(), *self.discriminator.parameters())):
                raise self._diverged(f"the end of epoch {self.epoch + 1}", "a parameter is NaN or infinite")
            images = self.samples() if self.rank == 0 else None
            diversity = (mean_pairwise_distance(images) / self.real_diversity
                         if images is not None and images.shape[0] >= 2 else float("nan"))
            self.epoch += 1
            row = {"epoch": self.epoch, "step": self.step, **stats, "diversity": diversity, "seconds": seconds}
            flags = self.health_flags(row)
            row["flags"] = ";".join(flags)
            self.metrics.append(row)
            if self.progress:
                tqdm.write(f"epoch {self.epoch}: loss_d {stats['loss_d']:.3f}, loss_g {stats['loss_g']:.3f}, "
                           f"D(x) {stats['d_real']:.2f}, D(G(z)) {stats['d_fake']:.2f}, "
                           f"D accuracy {stats['d_accuracy']:.2f}, diversity {diversity:.2f} ({seconds:.1f} s)")
            for flag in flags if self.rank == 0 else ():
                tqdm.write(f"warning: epoch {self.epoch}: {_FLAG_TEXT[flag]}")
            if self.run is not None:
                self.run.save_image(f"samples_epoch{self.epoch:03d}.png", images)
                self.run.save_image("samples.png", images)
                self.run.save_checkpoint(self.state_dict())
                self.run.write_metrics(self.metrics)
            distributed.barrier()
        return self.metrics


_FLAG_TEXT = {
    "mode-collapse": "possible mode collapse: the fixed-noise samples are much less diverse than real images",
    "d-overpowering": "the discriminator is overpowering the generator (it classifies nearly every example "
                      "correctly); the generator's gradients may vanish",
}


def _build_networks(config, device):
    gen = Generator(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config["model"].items()})
    d = config["discriminator"]
    disc = build_discriminator(d["architecture"], tuple(config["model"]["image_shape"]), tuple(d["hidden"]),
                               d["channels"], d["norm"])
    return gen.to(device), disc.to(device)


def load_gan_data(data_config, device):
    """Training and test images in [0, 1] (grey levels, no binarization) on ``device``."""
    train, test = load_splits(data_config["dataset"], data_config["root"],
                              data_config.get("train_size"), data_config.get("test_size"))
    return train.images.to(device), test.images.to(device)


def build_gan_trainer(config, run=None, device="auto", progress=True, data=None):
    """A :class:`GANTrainer` for a configuration: networks, data and optimizers, freshly seeded.

    :param data: optional ``(train_images, test_images)`` to use instead of loading ``config["data"]``.
    """
    device = resolve_device(device)
    pyro.set_rng_seed(config["train"]["seed"])
    gen, disc = _build_networks(config, device)
    train, test = load_gan_data(config["data"], device) if data is None else (d.to(device) for d in data)
    return GANTrainer(gen, disc, train, test, config, run=run, progress=progress)


def resume_gan_trainer(run_dir, device="auto", progress=True, data=None):
    """Rebuild a GAN run's trainer from its directory and load its last checkpoint."""
    run = RunDir.open(run_dir)
    state = run.load_checkpoint(map_location=resolve_device(device))
    trainer = build_gan_trainer(state["config"], run=run, device=device, progress=progress, data=data)
    trainer.load_state_dict(state)
    return trainer


def load_generator(run_dir, device="auto", use_ema=True):
    """The generator of a GAN run with its last checkpoint's weights (the EMA ones if kept), in eval mode."""
    run = RunDir.open(run_dir)
    state = run.load_checkpoint(map_location=resolve_device(device))
    gen, _ = _build_networks(state["config"], resolve_device(device))
    gen.load_state_dict(state["ema"] if use_ema and "ema" in state else state["generator"])
    return gen.eval()


# ------------------------------------------------------------------ command line
def add_gan_arguments(p):
    """Options of ``pyrogen train gan`` (added to the ``train`` subcommand's parser by :mod:`pyrogen.cli`)."""
    from pyrogen.cli import _add_device, _positive_float, _positive_int
    from pyrogen.data import DATASETS

    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory for config.json, metrics.csv, checkpoint.pt and sample grids; "
                        "must not already hold a run unless --resume is given")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR from its last checkpoint, exactly; --epochs is the new total")
    g = p.add_argument_group("networks")
    g.add_argument("--architecture", choices=ARCHITECTURES, default="dcgan",
                   help="generator and discriminator (default: dcgan)")
    g.add_argument("--latent-dim", type=_positive_int, default=100, help="dimension of z (default: 100)")
    g.add_argument("--hidden", type=_positive_int, nargs="+", default=[256, 256], metavar="WIDTH",
                   help="hidden widths of the MLP players (default: 256 256)")
    g.add_argument("--channels", type=_positive_int, default=64,
                   help="feature maps of the DCGAN players (default: 64)")
    g.add_argument("--norm", choices=NORMS, default=None,
                   help="discriminator normalisation: batch, spectral or none (default: none for wgan-gp and "
                        "the MLP, batch for DCGAN)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="data set (default: fashion-mnist)")
    g.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    g.add_argument("--train-size", type=_positive_int, default=None, help="use only the first N training images")
    g.add_argument("--test-size", type=_positive_int, default=None, help="use only the first N test images")
    g = p.add_argument_group("training (the adversarial game)")
    g.add_argument("--loss", choices=sorted(GAN_LOSSES), default="nonsaturating",
                   help="the game (default: nonsaturating)")
    g.add_argument("--gp-weight", type=float, default=10.0, help="λ of WGAN-GP's gradient penalty (default: 10)")
    g.add_argument("--d-steps", type=_positive_int, default=1,
                   help="discriminator updates per generator update, each on a fresh batch (default: 1)")
    g.add_argument("--epochs", type=_positive_int, default=10, help="epochs in total (default: 10)")
    g.add_argument("--batch-size", type=_positive_int, default=64, help="minibatch size (default: 64)")
    g.add_argument("--lr-g", type=_positive_float, default=2e-4, help="generator's Adam learning rate (default: 2e-4)")
    g.add_argument("--lr-d", type=_positive_float, default=2e-4,
                   help="discriminator's Adam learning rate (default: 2e-4)")
    g.add_argument("--beta1", type=float, default=0.5, help="Adam's beta1 for both players (default: 0.5)")
    g.add_argument("--beta2", type=float, default=0.999, help="Adam's beta2 for both players (default: 0.999)")
    g.add_argument("--ema-decay", type=float, default=0.0,
                   help="moving average of the generator's weights for samples (e.g. 0.999); 0 is off (default: 0)")
    g.add_argument("--seed", type=int, default=0, help="random seed; seeded runs are reproducible")
    _add_device(p)


def train_gan_from_args(args):
    """``pyrogen train gan``: build or resume the run, train it, print where its samples are.

    Under ``torchrun`` every process joins the group and trains its share; rank 0
    alone creates and writes the run directory.
    """
    from pyrogen.cli import start_run

    progress = not args.no_progress
    distributed.init_from_env(args.device)
    if args.resume:
        trainer = resume_gan_trainer(args.out, device=args.device, progress=progress)
        trainer.config["train"]["epochs"] = args.epochs
    else:
        config = default_gan_config(args.architecture, args.latent_dim, tuple(args.hidden), args.channels,
                                    args.norm, args.loss)
        config["data"].update(dataset=args.dataset, root=args.data_dir, train_size=args.train_size,
                              test_size=args.test_size)
        if not 0 <= args.ema_decay < 1:
            raise DataError(f"--ema-decay must lie in [0, 1), got {args.ema_decay}")
        config["train"].update(epochs=args.epochs, batch_size=args.batch_size, loss=args.loss,
                               gp_weight=args.gp_weight, d_steps=args.d_steps, lr_g=args.lr_g, lr_d=args.lr_d,
                               betas=[args.beta1, args.beta2], ema_decay=args.ema_decay, seed=args.seed)
        trainer = start_run(args.out, config,
                            lambda: build_gan_trainer(config, device=args.device, progress=progress))
    trainer.fit()
    if distributed.is_main_process():
        print(f"wrote {trainer.run.file('samples.png')}")
    return 0
