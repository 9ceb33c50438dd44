"""Adversarially trained model/guide pairs on :class:`~pyrogen.training.game.GameTrainer`: ALI / BiGAN.

``pyrogen train ali`` trains the VAE pair of a run configuration (the decoder as
generator, the encoder as inference network) against a
:class:`~pyrogen.models.gan.JointDiscriminator` by
:class:`~pyrogen.infer.AdversarialInference`, with the game trainer's run
directory, progress bar, ``metrics.csv``, per-epoch checkpoints, exact resume,
divergence stop and health flags (``mode-collapse``, ``d-overpowering``; see
:mod:`pyrogen.training.game`). After each epoch it also reports

* ``recon_error``: mean squared error per pixel of G(E(x)) on the test images;
* ``probe_accuracy`` (when the data set has labels and ``probe_size`` > 0): the test
  accuracy of a linear classifier fitted to the codes E(x) of the first
  ``probe_size`` training images, scored on the codes of up to ``probe_size`` test images
  (:func:`~pyrogen.evaluation.sample_quality.linear_probe_accuracy`);
* ``diversity`` of the decoded fixed noise, as for a GAN;

and writes ``samples.png`` (decoded fixed noise, also as ``samples_epochNNN.png``)
and ``reconstructions.png`` (test inputs above, G(E(x)) below).

:class:`AdversarialPairTrainer` holds what ALI and the adversarial autoencoder
(:mod:`pyrogen.training.aae`) share.
"""

import contextlib
import math

import pyro
import torch

from pyrogen.data import DeviceLoader, check_images, static_binarize
from pyrogen.data.loaders import check_example_shape
from pyrogen.errors import DataError
from pyrogen.evaluation import evaluate_dataset
from pyrogen.evaluation.sample_quality import linear_probe_accuracy
from pyrogen.infer.adversarial_inference import AdversarialInference
from pyrogen.models.registry import build_model, build_pair_discriminator
from pyrogen.random_streams import stream_seed
from pyrogen.rundirs import load_labelled_data, open_run, resolve_device, resume_trainer  # noqa: F401
from pyrogen.settings import migrate
from pyrogen.training.game import GameTrainer


class AdversarialPairTrainer(GameTrainer):
    """What the ALI and adversarial-autoencoder trainers share: a VAE pair, a discriminator, a
    loader of (binarized) training images, fixed noise from the prior, held-out codes (reconstruction
    error, the linear probe) and the pictures.

    Subclasses set :attr:`estimator` (with ``step``, ``encode`` and ``discriminator_optim``)
    and :attr:`optim` in :meth:`make_estimator`, and say what their epoch adds in :meth:`extra_metrics`.
    Single process: under ``torchrun`` it refuses to start.
    """

    postfix_formats = tuple((k, ".3f") for k in ("loss_d", "loss_g", "d_real", "d_fake"))

    def __init__(
        self,
        vae,
        discriminator,
        train_data,
        test_data,
        config,
        run=None,
        progress=True,
        train_labels=None,
        test_labels=None,
    ):
        super().__init__(config=config, run=run, progress=progress)
        if self.world_size > 1:
            raise DataError(f"pyrogen train {self.settings.kind} runs in a single process; run it without torchrun")
        cfg, binarize = self.settings.train, self.settings.data.binarize
        check_images(train_data, "training data")
        check_images(test_data, "test data")
        for key in ("d_steps", "num_fixed", "batch_size"):
            value = getattr(cfg, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{key} must be a positive integer, got {value!r}")
        self.vae, self.discriminator = vae, discriminator
        self.loader = DeviceLoader(
            train_data,
            cfg.batch_size,
            binarize=binarize,
            seed=stream_seed("data_order", cfg.seed),
            drop_last=True,
            device=train_data.device,
        )
        check_example_shape(train_data.shape[1:], vae.image_shape, "training data")
        check_example_shape(test_data.shape[1:], vae.image_shape, "test data")
        if len(self.loader) == 0:
            raise DataError(f"batch_size {cfg.batch_size} exceeds the {train_data.shape[0]} training images")
        vae.likelihood.check_binarize(binarize)
        self.test_data = test_data
        self.loss = self.game_loss()
        n = min(cfg.probe_size, train_data.shape[0], test_data.shape[0])  # 0 in old runs
        self.probe = None
        if n >= 2 and train_labels is not None and test_labels is not None:
            self.probe = (train_data[:n], train_labels[:n], test_data[:n], test_labels[:n])
            if self.loader.binarize != "none":  # the encoder sees binary images in training
                self.probe = (static_binarize(train_data[:n], seed=stream_seed("probe_binarization")), *self.probe[1:])
        with self.fixed_stream(train_data.device):
            self.fixed_noise = vae.prior().sample((cfg.num_fixed,))
        self.real_diversity = self.reference_diversity(test_data)
        self.make_estimator(train_data, test_data)

    def make_estimator(self, train_data, test_data):
        """Set :attr:`optim` and :attr:`estimator` (the game) for this pair, by :meth:`start_game`; the last
        step of ``__init__``."""
        raise NotImplementedError

    def start_game(self, game, optim, **options):
        """Set :attr:`optim` and :attr:`estimator`: ``game`` (an estimator class such as
        :class:`~pyrogen.infer.AdversarialInference`) of the VAE pair, whose side ``optim`` updates,
        against the discriminator with its own optimizer (``lr_d``, ``betas``), under the configured
        loss and ``d_steps``; ``options`` are the game's own arguments."""
        cfg = self.settings.train
        self.optim = optim
        optim_d = self.make_optimizer(self.discriminator.parameters(), cfg.lr_d, betas=cfg.betas)
        players = self.vae.model, self.vae.guide, self.discriminator
        self.estimator = game(*players, optim, optim_d, self.loss, d_steps=cfg.d_steps, **options)

    # --------------------------------------------------------------- state
    def checkpointed(self):
        return {
            "model": self.vae,
            "discriminator": self.discriminator,
            "optim": self.optim,
            "optim_d": self.estimator.discriminator_optim,
        }

    # --------------------------------------------------------------- training
    divergence_advice = "Try lower learning rates, spectral normalisation or another loss."

    @property
    def divergence_subject(self):
        return f"{self.settings.kind.upper()} training"

    # --------------------------------------------------------------- evaluation
    @contextlib.contextmanager
    def _eval_mode(self):
        """The pair in eval mode (batch norm's running statistics), restored afterwards."""
        was = self.vae.training
        self.vae.eval()
        try:
            yield
        finally:
            self.vae.train(was)

    @torch.no_grad()
    def codes(self, x):
        """Codes E(x) (the mean of q(z|x)) of images ``x``, in batches, in eval mode."""
        bs = self.settings.eval.batch_size
        with pyro.validation_enabled(False), self._eval_mode():
            return torch.cat([self.estimator.encode(x[i : i + bs]) for i in range(0, x.shape[0], bs)])

    @torch.no_grad()
    def reconstruct(self, x):
        """G(E(x)): the decoder's mean at the codes, in eval mode."""
        codes = self.codes(x)
        with self._eval_mode():
            return self.vae.decode(codes).reshape(x.shape)

    def evaluate(self, num_samples=0):
        """Test ELBO of the pair and, if ``num_samples`` > 0, importance-sampled log p(x): nats per
        example (what ``pyrogen evaluate`` reports; the guide is a density, so the bound holds)."""
        self.vae.eval()
        try:
            with pyro.validation_enabled(False):
                return evaluate_dataset(
                    self.vae.model,
                    self.vae.guide,
                    self.test_data,
                    batch_size=self.settings.eval.batch_size,
                    num_samples=num_samples,
                )
        finally:
            self.vae.train()

    def probe_accuracy(self):
        """The linear probe's test accuracy on the codes (NaN without labels)."""
        if self.probe is None:
            return float("nan")
        x_train, y_train, x_test, y_test = self.probe
        return linear_probe_accuracy(self.codes(x_train), y_train, self.codes(x_test), y_test)

    @torch.no_grad()
    def samples(self):
        """Decoded fixed noise: mean images E[x|z], in eval mode."""
        with self._eval_mode():
            return self.vae.decode(self.fixed_noise)

    def extra_metrics(self):
        """Held-out figures a subclass adds to the row (before the shared ones)."""
        return {}

    def epoch_figures(self):
        """:meth:`extra_metrics`, the test reconstruction error, the probe's accuracy (the pair in eval mode);
        the decoded fixed noise and the reconstructions for the pictures."""
        self.vae.eval()
        try:
            self._extra = self.extra_metrics()
            recon = self.reconstruct(self.test_data)
            recon_error = (recon - self.test_data).square().mean().item()
            probe = self.probe_accuracy()
            self.images = self.samples()
            self._recon = torch.cat([self.test_data[:32], recon[:32]])
        finally:
            self.vae.train()
        return {**self._extra, "recon_error": recon_error, "probe_accuracy": probe}

    def epoch_line(self, row, stats):
        return (
            f"epoch {self.epoch}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in {**stats, **self._extra}.items())
            + f", recon error {row['recon_error']:.4f}, probe accuracy {row['probe_accuracy']:.3f}, "
            f"diversity {row['diversity']:.2f} ({row['seconds']:.1f} s)"
        )

    def epoch_images(self):
        """The epoch's samples and test reconstructions (originals above), for the trackers."""
        return {"samples": self.images, "reconstructions": self._recon} if self.images is not None else {}

    def write_epoch_files(self, row):
        super().write_epoch_files(row)
        self.run.save_image("reconstructions.png", self._recon)


class ALITrainer(AdversarialPairTrainer):
    """ALI / BiGAN (see the module docs): the VAE pair against a joint discriminator D(x, z).

    :param VAE vae: generator ``model(batch_size=B)`` and encoder ``guide(x)``.
    :param torch.nn.Module discriminator: D(x, z), e.g. :class:`~pyrogen.models.gan.JointDiscriminator`.
    :param torch.Tensor train_data: training images in [0, 1] on the device (binarized by the
        loader when ``config["data"]["binarize"]`` says so).
    :param torch.Tensor test_data: test images (binarized already if the configuration binarizes).
    :param dict config: see :func:`pyrogen.config.default_ali_config` (any layout, or its
        :class:`~pyrogen.settings.RunConfig`; read through :func:`~pyrogen.settings.migrate` into :attr:`settings`).
    :param torch.Tensor train_labels: optional labels of the training images, for the linear probe.
    :param torch.Tensor test_labels: optional labels of the test images.
    """

    def make_estimator(self, train_data, test_data):
        vae, cfg = self.vae, self.settings.train
        optim = self.make_optimizer(vae.parameters(), cfg.lr_g, betas=cfg.betas)
        # update: "alternating" in old runs
        self.start_game(AdversarialInference, optim, model_x=cfg.model_x, update=cfg.update)
        self._check_model_x()
        if cfg.init_output_bias:  # False in runs made before the key: the layer's own init
            init_output_bias_(vae, train_data)

    def _check_model_x(self):
        """Refuse a model x that cannot be drawn differentiably now, not at the first step."""
        devices = [self.fixed_noise.device] if self.fixed_noise.device.type == "cuda" else []
        # eval mode: batch norm's running statistics, untouched, and a batch of 1 is allowed
        with torch.random.fork_rng(devices=devices), torch.no_grad(), pyro.validation_enabled(False), self._eval_mode():
            try:
                self.estimator.model_pairs(1)
            except DataError as e:
                raise DataError(
                    f"model_x {self.settings.train.model_x!r} does not work with the "
                    f"{self.settings.model.args['likelihood']} likelihood: {e}"
                ) from None


OUTPUT_BIAS_LIKELIHOODS = ("bernoulli", "bernoulli-relaxed")
"""Likelihoods whose decoder output is a logit with mean :math:`\\sigma(\\text{logit})`."""


@torch.no_grad()
def init_output_bias_(vae, train_data):
    """ALI's data-dependent initialisation (Dumoulin et al. 2017, ``experiments/ali_svhn.py``): the bias of the
    decoder's last layer starts at the log-odds :math:`\\log(m / (1 - m))` of the training images' mean
    pixel :math:`m`, so that the generator's first images have the data's mean grey level (0.286 on
    Fashion-MNIST) instead of :math:`\\sigma(0) = 0.5`, which the discriminator tells from data at once.

    :raises DataError: for a likelihood whose decoder output is not a logit (:data:`OUTPUT_BIAS_LIKELIHOODS`)
        or a decoder whose last weighted layer has no bias.
    """
    name = vae.config["likelihood"]
    if name not in OUTPUT_BIAS_LIKELIHOODS:
        raise DataError(
            f"init_output_bias needs a decoder output that is a logit (likelihood one of "
            f"{OUTPUT_BIAS_LIKELIHOODS}), got likelihood {name!r}"
        )
    layers = [
        m for m in vae.decoder.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    if not layers or layers[-1].bias is None:
        raise DataError("init_output_bias needs a decoder whose last layer has a bias")
    m = train_data.float().mean().clamp(1e-3, 1 - 1e-3).item()
    layers[-1].bias.fill_(math.log(m / (1 - m)))


def build_pair_trainer(trainer_class, config, run=None, device="auto", progress=True, data=None):
    """A ``trainer_class`` (:class:`ALITrainer`, :class:`~pyrogen.training.aae.AAETrainer`) for a
    configuration, freshly seeded: the VAE pair, its discriminator and the (labelled) data.

    :param data: optional ``(train, train_labels, test, test_labels)`` instead of loading ``config["data"]``
        (the test images as the configuration wants them, binarized or not; labels may be None).
    """
    device, settings = resolve_device(device), migrate(config)
    pyro.set_rng_seed(stream_seed("init", settings.train.seed))
    vae = build_model(config).to(device)
    disc = build_pair_discriminator(config).to(device)
    if data is None:
        train, train_y, test, test_y = load_labelled_data(settings.data, device)
    else:
        train, train_y, test, test_y = (None if d is None else d.to(device) for d in data)
    return trainer_class(
        vae, disc, train, test, config, run=run, progress=progress, train_labels=train_y, test_labels=test_y
    )


def build_ali_trainer(config, run=None, device="auto", progress=True, data=None):
    """An :class:`ALITrainer` for a configuration, freshly seeded (``data`` as in :func:`build_pair_trainer`)."""
    return build_pair_trainer(ALITrainer, config, run, device, progress, data)


def resume_ali_trainer(run_dir, device="auto", progress=True, data=None):
    """Rebuild an ALI run's trainer from its directory and load its last checkpoint."""
    return resume_trainer(run_dir, device, progress, build=build_ali_trainer, data=data)
