"""What every adversarial trainer shares: :class:`GameTrainer`, on :class:`~pyrogen.training.loop.FitLoop`.

The GAN (:mod:`pyrogen.training.gan`), ALI / BiGAN (:mod:`pyrogen.training.ali`)
and the adversarial autoencoder (:mod:`pyrogen.training.aae`) train an
:class:`~pyrogen.infer.adversarial_game.AdversarialGame` and report alike. After
every epoch a game trainer

* decodes its *fixed noise* (drawn once from the run's seed, checkpointed, so a
  resumed run draws the same pictures) into ``samples.png`` and
  ``samples_epochNNN.png``;
* measures the ``diversity`` of those samples: their mean pairwise L2 distance
  over that of as many real test images (near 1 for a healthy generator, near
  0 for a collapsed one);
* with the cached sample-quality classifier (``pyrogen train features``; the GAN
  loads it), the class coverage of the samples (``class_entropy`` in nats,
  ``classes_covered``) and, for a class-conditional generator,
  ``conditional_accuracy``;
* raises the training-health flags (``mode-collapse``, ``d-overpowering``,
  ``class-collapse``; see :data:`FLAG_TEXT`) into the row's ``flags`` and a
  warning line each.

The game's losses are bounded: a window whose mean ``|loss_d|`` or ``|loss_g|``
passes ``divergence_threshold`` stops the run as a NaN does.
"""

import contextlib
import math
import types

import torch
from tqdm.auto import tqdm

from pyrogen.evaluation.features import TRAIN_COMMAND, FeatureNetworkError, load_classifier
from pyrogen.evaluation.sample_quality import class_coverage, conditional_accuracy
from pyrogen.infer.gan_losses import WassersteinGPLoss, get_gan_loss
from pyrogen.random_streams import stream_seed
from pyrogen.settings import migrate, migrate_data
from pyrogen.training.loop import FitLoop

FLAG_TEXT = {
    "class-collapse": "class collapse: the fixed-noise samples fall into fewer than 8 of the 10 classes "
    "of the feature classifier",
    "mode-collapse": "possible mode collapse: the fixed-noise samples are much less diverse than real images",
    "d-overpowering": "the discriminator is overpowering the generator (it classifies nearly every example "
    "correctly); the generator's gradients may vanish",
}
"""The warning each training-health flag prints."""


def game_health_flags(row, train_cfg, loss):
    """The adversarial game's warnings for a metrics row: ``mode-collapse`` (sample diversity below
    ``collapse_threshold``) and ``d-overpowering`` (discriminator accuracy at or above
    ``overpower_accuracy``; not for the Wasserstein critic, whose accuracy means nothing).

    :param train_cfg: the run's training settings (:func:`~pyrogen.settings.migrate`'s ``train``, or a dict).
    """
    if isinstance(train_cfg, dict):  # the dict of a complete configuration, as this function took before
        train_cfg = types.SimpleNamespace(**train_cfg)
    flags = []
    if math.isfinite(row.get("diversity", float("nan"))) and row["diversity"] < train_cfg.collapse_threshold:
        flags.append("mode-collapse")
    if not isinstance(loss, WassersteinGPLoss) and row["d_accuracy"] >= train_cfg.overpower_accuracy:
        flags.append("d-overpowering")
    return flags


def mean_pairwise_distance(x):
    """Mean L2 distance between distinct examples of a batch ``(N, ...)``, N >= 2."""
    flat = x.flatten(1).double()
    d = torch.cdist(flat, flat)
    n = flat.shape[0]
    return (d.sum() / (n * (n - 1))).item()


def load_class_classifier(data_config, device, what="class coverage"):
    """The cached Fashion-MNIST classifier in eval mode on ``device``, or None (with one line saying
    why) when it is not cached or the data are not Fashion-MNIST. Never trains it.

    :param data_config: the run's data settings (a :class:`~pyrogen.settings.DataConfig`, or a ``data`` dict
        of any layout).
    """
    if migrate_data(data_config).dataset != "fashion-mnist":
        return None
    try:
        with torch.random.fork_rng(devices=[]):  # building the network draws initial weights: not from the run's stream
            classifier, _ = load_classifier()
    except FeatureNetworkError:
        tqdm.write(f"{what} skipped: no valid cached feature network ({TRAIN_COMMAND} makes it)")
        return None
    return classifier.to(device).eval()


class GameTrainer(FitLoop):
    """The fit loop of an adversarial game: fixed noise, sample diversity, class coverage, health flags,
    sample grids and the checkpoint of both players.

    A subclass sets :attr:`fixed_noise` (and :attr:`real_diversity` with :meth:`reference_diversity`),
    names its checkpointed modules and optimizers in :meth:`checkpointed`, and says what its epoch
    adds in :meth:`epoch_figures` (which sets :attr:`images`, the epoch's fixed-noise samples) and
    :meth:`epoch_line`. Its statistics are the game's per-example means (:meth:`step_weight` is 1).

    :param dict config: the run configuration of any layout (or its :class:`~pyrogen.settings.RunConfig`),
        read through :func:`~pyrogen.settings.migrate` into :attr:`settings`, complete and frozen (its
        ``train`` holds ``loss``, ``gp_weight``, ``num_fixed``, ``divergence_threshold``,
        ``collapse_threshold``, ``overpower_accuracy`` and ``min_classes_covered``).
    :param RunDir run: where metrics, checkpoints and pictures go (None: nowhere).
    :param bool progress: show a progress bar and a line per epoch.
    """

    bounded_statistics = ("loss_d", "loss_g")
    postfix_formats = (("loss_d", ".3f"), ("loss_g", ".3f"), ("d_real", ".2f"), ("d_fake", ".2f"))
    """The progress bar's statistics and their formats, ``(name, format)`` pairs."""
    read_settings = staticmethod(migrate)

    def __init__(self, config, run=None, progress=True):
        super().__init__(config=config, run=run, progress=progress)
        self.fixed_noise, self.fixed_labels = None, None  # labels: a class-conditional generator's
        self.real_diversity = float("nan")
        self.classifier = None  # the cached feature network's classifier, for class coverage
        self.images = None  # the epoch's fixed-noise samples, for the run directory

    @contextlib.contextmanager
    def fixed_stream(self, device):
        """Inside, torch's random numbers come from the fixed noise's own stream (the run's seed + 3) and
        draw nothing from the run's stream, which is restored afterwards."""
        with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
            torch.manual_seed(stream_seed("fixed_noise", self.settings.train.seed))
            yield

    def game_loss(self):
        """The configured GAN loss (``gp_weight`` for WGAN-GP)."""
        cfg = self.settings.train
        return get_gan_loss(cfg.loss, **({"gp_weight": cfg.gp_weight} if cfg.loss == "wgan-gp" else {}))

    def reference_diversity(self, test_data):
        """The mean pairwise distance of ``num_fixed`` real test images (the diversity's unit; NaN below 2)."""
        n_ref = min(self.settings.train.num_fixed, test_data.shape[0])
        return mean_pairwise_distance(test_data[:n_ref]) if n_ref >= 2 else float("nan")

    # --------------------------------------------------------------- state
    def checkpointed(self):
        """``{checkpoint key: object with state_dict}``: the players and their optimizers."""
        raise NotImplementedError

    def named_parameters(self):
        """The players' parameters, named by their checkpoint key (``"discriminator.net.0.weight"``, ...)."""
        return [
            (f"{key}.{name}", p)
            for key, module in self.checkpointed().items()
            if isinstance(module, torch.nn.Module)
            for name, p in module.named_parameters()
        ]

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def state_dict(self):
        return {
            **super().state_dict(),
            **{k: v.state_dict() for k, v in self.checkpointed().items()},
            "fixed_noise": self.fixed_noise,
        }

    def load_state_dict(self, state):
        for key, value in self.checkpointed().items():
            value.load_state_dict(state[key])
        self.fixed_noise = state["fixed_noise"].to(self.fixed_noise.device)
        super().load_state_dict(state)

    # --------------------------------------------------------------- training
    def step_weight(self, batch):
        return 1  # the game's statistics are means over each step's batch already

    def postfix(self, means):
        return {k: format(means[k], f) for k, f in self.postfix_formats}

    # --------------------------------------------------------------- the epoch's report
    def epoch_figures(self):
        """Held-out figures of the epoch, in the row before ``diversity``; sets :attr:`images`."""
        raise NotImplementedError

    def epoch_line(self, row, stats):
        """The line printed after an epoch."""
        raise NotImplementedError

    @torch.no_grad()
    def class_figures(self, images):
        """``{"class_entropy", "classes_covered"}`` of ``images`` under :attr:`classifier` (empty without one),
        and ``conditional_accuracy`` for a class-conditional generator's samples."""
        if self.classifier is None or images is None:
            return {}
        pred = torch.cat([self.classifier(images[i : i + 1000]).argmax(-1) for i in range(0, images.shape[0], 1000)])
        coverage = class_coverage(pred, 10)
        out = {"class_entropy": coverage["class_entropy"], "classes_covered": coverage["classes_covered"]}
        if self.fixed_labels is not None:
            out["conditional_accuracy"] = conditional_accuracy(pred, self.fixed_labels[: pred.shape[0]])
        return out

    def health_flags(self, row):
        """The training-health warnings for an epoch's metrics row (a list of names of :data:`FLAG_TEXT`)."""
        cfg, flags = self.settings.train, []
        if "classes_covered" in row and row["classes_covered"] < cfg.min_classes_covered:
            flags.append("class-collapse")
        return flags + game_health_flags(row, cfg, self.loss)

    def epoch_report(self, stats, seconds):
        """The epoch's figures, the fixed-noise samples' diversity and class coverage, the health flags
        (each also a warning line, rank 0) and a summary line."""
        figures = self.epoch_figures()
        images = self.images
        diversity = (
            mean_pairwise_distance(images) / self.real_diversity
            if images is not None and images.shape[0] >= 2
            else float("nan")
        )
        row = {
            "epoch": self.epoch,
            "step": self.step,
            **stats,
            **figures,
            "diversity": diversity,
            **self.class_figures(images),
            "seconds": seconds,
        }
        flags = self.health_flags(row)
        row["flags"] = ";".join(flags)
        if self.progress:
            tqdm.write(self.epoch_line(row, stats))
        for flag in flags if self.rank == 0 else ():
            tqdm.write(f"warning: epoch {self.epoch}: {FLAG_TEXT[flag]}")
        return row

    def epoch_images(self):
        """The epoch's fixed-noise samples, for the trackers (:mod:`pyrogen.tracking`)."""
        return {"samples": self.images} if self.images is not None else {}

    def grid_columns(self):
        """Columns of the sample grids."""
        return 8

    def write_epoch_files(self, row):
        self.run.save_image(f"samples_epoch{self.epoch:03d}.png", self.images, nrow=self.grid_columns())
        self.run.save_image("samples.png", self.images, nrow=self.grid_columns())
