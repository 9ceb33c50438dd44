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

import math

import pyro
import torch
from tqdm.auto import tqdm

from pyrogen import distributed
from pyrogen.config import DEFAULT_GAN_DATA, DEFAULT_GAN_TRAIN, default_gan_config  # noqa: F401
from pyrogen.data import DeviceLoader, check_images
from pyrogen.data.loaders import check_example_shape
from pyrogen.errors import DataError
from pyrogen.evaluation.features import TRAIN_COMMAND, FeatureNetworkError, load_classifier
from pyrogen.evaluation.sample_quality import class_coverage, conditional_accuracy
from pyrogen.infer.adversarial import Adversarial
from pyrogen.infer.gan_losses import WassersteinGPLoss, get_gan_loss
from pyrogen.models.registry import build_gan_networks
from pyrogen.random_streams import stream_seed
from pyrogen.runs import load_gan_data, load_generator, load_labelled_data, open_run, resolve_device  # noqa: F401
from pyrogen.training.loop import FitLoop


def game_health_flags(row, train_cfg, loss):
    """The adversarial game's warnings for a metrics row: ``mode-collapse`` (sample diversity below
    ``collapse_threshold``) and ``d-overpowering`` (discriminator accuracy at or above
    ``overpower_accuracy``; not for the Wasserstein critic, whose accuracy means nothing)."""
    flags = []
    if math.isfinite(row.get("diversity", float("nan"))) and row["diversity"] < train_cfg["collapse_threshold"]:
        flags.append("mode-collapse")
    if not isinstance(loss, WassersteinGPLoss) and row["d_accuracy"] >= train_cfg["overpower_accuracy"]:
        flags.append("d-overpowering")
    return flags


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


class GANTrainer(FitLoop):
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

    def __init__(self, generator, discriminator, train_data, test_data, config, run=None, progress=True,
                 train_labels=None):
        super().__init__(config=config, run=run, progress=progress)
        self.num_classes = getattr(generator, "num_classes", None)  # a class-conditional generator's K
        train_labels = _check_conditional_labels(self.num_classes, train_labels, train_data)
        if self.world_size > 1 and train_data.device.type == "cuda":
            generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        self.generator, self.discriminator = generator, discriminator
        cfg = config["train"]
        check_images(train_data, "training data")
        check_images(test_data, "test data")
        if isinstance(cfg["d_steps"], bool) or not isinstance(cfg["d_steps"], int) or cfg["d_steps"] < 1:
            raise DataError(f"d_steps must be a positive integer, got {cfg['d_steps']!r}")
        self.loader = DeviceLoader(train_data, cfg["batch_size"], seed=stream_seed("data_order", cfg["seed"]),
                                   drop_last=True,
                                   device=train_data.device, rank=self.rank, world_size=self.world_size,
                                   labels=train_labels)
        if getattr(generator, "image_shape", None) is not None:
            check_example_shape(train_data.shape[1:], generator.image_shape, "training data")
            check_example_shape(test_data.shape[1:], generator.image_shape, "test data")
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
                               d_steps=cfg["d_steps"], track_grad_norms=True,
                               label="y" if self.num_classes else None)
        if self.world_size > 1:
            self.gan.distribute()
            distributed.seed_rank_noise(cfg["seed"], 0)
        self.ema = GeneratorEMA(generator, cfg["ema_decay"]) if cfg.get("ema_decay") else None
        g = torch.Generator(device="cpu").manual_seed(stream_seed("fixed_noise", cfg["seed"]))
        self.fixed_labels, num_fixed = None, cfg["num_fixed"]
        if self.num_classes:  # the same number of samples per class: one grid row each
            self.per_class = max(1, num_fixed // self.num_classes)
            num_fixed = self.per_class * self.num_classes
            self.fixed_labels = torch.arange(self.num_classes).repeat_interleave(self.per_class).to(train_data.device)
        self.fixed_noise = torch.randn(num_fixed, generator.latent_dim, generator=g).to(train_data.device)
        n_ref = min(cfg["num_fixed"], test_data.shape[0])
        self.real_diversity = mean_pairwise_distance(test_data[:n_ref]) if n_ref >= 2 else float("nan")
        self._images = None  # the epoch's fixed-noise samples, for the run directory
        self.classifier = None  # the cached feature network's classifier, for class coverage (on_fit_start)

    # --------------------------------------------------------------- state
    def state_dict(self):
        state = {
            **super().state_dict(),
            "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
            "optim_g": self.optim_g.state_dict(), "optim_d": self.optim_d.state_dict(),
            "fixed_noise": self.fixed_noise,
        }  # fmt: skip
        if self.fixed_labels is not None:
            state["fixed_labels"] = self.fixed_labels
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state):
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.optim_g.load_state_dict(state["optim_g"])
        self.optim_d.load_state_dict(state["optim_d"])
        self.fixed_noise = state["fixed_noise"].to(self.fixed_noise.device)
        if self.fixed_labels is not None:
            self.fixed_labels = state["fixed_labels"].to(self.fixed_noise.device)
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
    divergence_advice = ("Try lower learning rates (--lr-g, --lr-d), spectral normalisation (--norm spectral) "
                         "or another loss.")

    divergence_subject = "GAN training"
    bounded_statistics = ("loss_d", "loss_g")

    def batches(self):
        """Groups of ``d_steps`` consecutive batches, one group per generator step."""
        group, d_steps = [], self.config["train"]["d_steps"]
        for x in self.loader:
            group.append(x)
            if len(group) == d_steps:
                yield group if d_steps > 1 else group[0]
                group = []

    def steps_per_epoch(self):
        return len(self.loader) // self.config["train"]["d_steps"]

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

    def step_weight(self, batch):
        return 1  # the statistics are means over each step's batch already

    def reduce_window(self, window, count):
        if self.world_size > 1:  # every rank's shard is equally large: average the ranks' means
            window = distributed.all_reduce_sum(window) / self.world_size
        return [v * count for v in (window / count).tolist()], count

    def postfix(self, means):
        return {"loss_d": f"{means['loss_d']:.3f}", "loss_g": f"{means['loss_g']:.3f}",
                "d_real": f"{means['d_real']:.2f}", "d_fake": f"{means['d_fake']:.2f}"}

    def parameters(self):
        return (*self.generator.parameters(), *self.discriminator.parameters())

    def on_fit_start(self):
        super().on_fit_start()
        if self.classifier is None and self.rank == 0:
            self.classifier = load_class_classifier(self.config["data"], self.fixed_noise.device)

    @torch.no_grad()
    def class_figures(self, images):
        """``{"class_entropy", "classes_covered"}`` of ``images`` under :attr:`classifier` (empty without one)."""
        if self.classifier is None or images is None:
            return {}
        pred = torch.cat([self.classifier(images[i : i + 1000]).argmax(-1) for i in range(0, images.shape[0], 1000)])
        coverage = class_coverage(pred, 10)
        out = {"class_entropy": coverage["class_entropy"], "classes_covered": coverage["classes_covered"]}
        if self.fixed_labels is not None:
            out["conditional_accuracy"] = conditional_accuracy(pred, self.fixed_labels[: pred.shape[0]])
        return out

    def health_flags(self, row):
        """The training-health warnings for an epoch's metrics row (a list of names)."""
        cfg, flags = self.config["train"], []
        if "classes_covered" in row and row["classes_covered"] < cfg.get("min_classes_covered", 8):
            flags.append("class-collapse")
        return flags + game_health_flags(row, cfg, self.loss)

    def epoch_report(self, stats, seconds):
        """Fixed-noise samples and their diversity (rank 0), the health flags, a summary line."""
        images = self._images = self.samples() if self.rank == 0 else None
        diversity = (mean_pairwise_distance(images) / self.real_diversity
                     if images is not None and images.shape[0] >= 2 else float("nan"))
        row = {"epoch": self.epoch, "step": self.step, **stats, "diversity": diversity,
               **self.class_figures(images), "seconds": seconds}
        flags = self.health_flags(row)
        row["flags"] = ";".join(flags)
        if self.progress:
            tqdm.write(f"epoch {self.epoch}: loss_d {stats['loss_d']:.3f}, loss_g {stats['loss_g']:.3f}, "
                       f"D(x) {stats['d_real']:.2f}, D(G(z)) {stats['d_fake']:.2f}, "
                       f"D accuracy {stats['d_accuracy']:.2f}, diversity {diversity:.2f} ({seconds:.1f} s)")
        for flag in flags if self.rank == 0 else ():
            tqdm.write(f"warning: epoch {self.epoch}: {_FLAG_TEXT[flag]}")
        return row

    def epoch_images(self):
        """The epoch's fixed-noise samples, for the trackers (:mod:`pyrogen.tracking`)."""
        return {"samples": self._images} if self._images is not None else {}

    def write_epoch_files(self, row):
        nrow = self.per_class if self.num_classes else 8  # conditional: one row per class
        self.run.save_image(f"samples_epoch{self.epoch:03d}.png", self._images, nrow=nrow)
        self.run.save_image("samples.png", self._images, nrow=nrow)


def _check_conditional_labels(num_classes, labels, data):
    """The training labels of a conditional run, checked (None for an unconditional one)."""
    if not num_classes:
        return None
    if labels is None:
        raise DataError("a class-conditional GAN needs labelled training data, and these data have no labels")
    if labels.shape != (data.shape[0],) or labels.is_floating_point():
        raise DataError(f"the training labels must be integers of shape ({data.shape[0]},), got "
                        f"{labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise DataError(f"the training labels must lie in 0 .. {num_classes - 1}, got values in "
                        f"{int(labels.min())} .. {int(labels.max())}")
    return labels


def load_class_classifier(data_config, device, what="class coverage"):
    """The cached Fashion-MNIST classifier in eval mode on ``device``, or None (with one line saying
    why) when it is not cached or the data are not Fashion-MNIST. Never trains it."""
    if data_config.get("dataset") != "fashion-mnist":
        return None
    try:
        with torch.random.fork_rng(devices=[]):  # building the network draws initial weights: not from the run's stream
            classifier, _ = load_classifier()
    except FeatureNetworkError:
        tqdm.write(f"{what} skipped: no valid cached feature network ({TRAIN_COMMAND} makes it)")
        return None
    return classifier.to(device).eval()


_FLAG_TEXT = {
    "class-collapse": "class collapse: the fixed-noise samples fall into fewer than 8 of the 10 classes "
                      "of the feature classifier",
    "mode-collapse": "possible mode collapse: the fixed-noise samples are much less diverse than real images",
    "d-overpowering": "the discriminator is overpowering the generator (it classifies nearly every example "
                      "correctly); the generator's gradients may vanish",
}


def build_gan_trainer(config, run=None, device="auto", progress=True, data=None):
    """A :class:`GANTrainer` for a configuration: networks, data and optimizers, freshly seeded.

    :param data: optional ``(train_images, test_images)`` to use instead of loading ``config["data"]``,
        or ``(train_images, test_images, train_labels)`` for a class-conditional run.
    """
    device = resolve_device(device)
    pyro.set_rng_seed(stream_seed("init", config["train"]["seed"]))
    gen, disc = (m.to(device) for m in build_gan_networks(config))
    labels = None
    if data is None and "num_classes" in config["model"]:
        train, labels, test, _ = load_labelled_data(dict(config["data"], binarize="none"), device)
    elif data is None:
        train, test = load_gan_data(config["data"], device)
    else:
        train, test, *rest = (d.to(device) if d is not None else None for d in data)
        labels = rest[0] if rest else None
    return GANTrainer(gen, disc, train, test, config, run=run, progress=progress, train_labels=labels)


def resume_gan_trainer(run_dir, device="auto", progress=True, data=None):
    """Rebuild a GAN run's trainer from its directory and load its last checkpoint."""
    run = open_run(run_dir, device)
    trainer = build_gan_trainer(run.checkpoint["config"], run=run.dir, device=device, progress=progress, data=data)
    trainer.load_state_dict(run.checkpoint)
    return trainer
