"""Run configurations: the defaults of every kind of run, as the JSON that ``config.json`` holds.

A configuration is what ``config.json`` holds and what a checkpoint embeds:
``{"version", "kind", "model", "data", "train", "eval"}`` for the VAE family
(:func:`default_config`) and ``{"version", "kind": "gan", "model", "discriminator",
"data", "train"}`` for GANs (:func:`default_gan_config`). Code reads a configuration
through :func:`~pyrogen.settings.migrate`, which turns any layout, today's or an
earlier run's, into frozen typed sections (:mod:`pyrogen.settings`, re-exported here);
:mod:`pyrogen.kinds` says which default belongs to which run kind.
"""

from pyrogen.distributions import default_binarize
from pyrogen.errors import DataError
from pyrogen.infer.gan_losses import GAN_LOSSES
from pyrogen.models.gan import ARCHITECTURES, NORMS, ConditionalGenerator, Generator
from pyrogen.models.registry import MODELS, make_model
from pyrogen.settings import (  # noqa: F401  (re-exported: the settings' defaults and vocabulary)
    AUTO_COMPILE_MIN_STEPS,
    COMPILE_MODES,
    CONFIG_VERSION,
    DEFAULT_AAE_TRAIN,
    DEFAULT_ALI_TRAIN,
    DEFAULT_DATA,
    DEFAULT_EVAL,
    DEFAULT_GAN_DATA,
    DEFAULT_GAN_TRAIN,
    DEFAULT_TRAIN,
    RunConfig,
    compile_mode,
    migrate,
)


def default_config(kind="vae", likelihood="bernoulli", **model):
    """A complete run configuration: ``{"kind", "model", "data", "train", "eval"}``.

    ``likelihood`` and ``model`` are the model's constructor arguments (``likelihood`` also decides the
    data's binarization, :func:`~pyrogen.distributions.default_binarize`); ``model="two-layer"`` among them
    builds :class:`~pyrogen.models.two_layer.TwoLayerVAE` (see :func:`~pyrogen.models.registry.make_model`).
    """
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    return {
        "version": CONFIG_VERSION,
        "kind": kind,
        "model": make_model(kind, likelihood=likelihood, **model).config,
        "data": {**DEFAULT_DATA, "binarize": default_binarize(likelihood)},
        "train": dict(DEFAULT_TRAIN),
        "eval": dict(DEFAULT_EVAL),
    }


def default_gan_config(
    architecture="dcgan", latent_dim=100, hidden=(256, 256), channels=64, norm=None, loss="nonsaturating"
):
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
        raise DataError(
            "WGAN-GP's gradient penalty is per example, which batch norm in the discriminator "
            "breaks; use norm 'none' or 'spectral'"
        )
    model = Generator(latent_dim, architecture=architecture, hidden=tuple(hidden), channels=channels).config
    return {
        "version": CONFIG_VERSION, "kind": "gan", "model": model,
        "discriminator": {"architecture": architecture, "hidden": list(hidden), "channels": channels, "norm": norm},
        "data": dict(DEFAULT_GAN_DATA), "train": dict(DEFAULT_GAN_TRAIN, loss=loss),
    }  # fmt: skip


def conditional_gan_config(config, num_classes=10):
    """The class-conditional version of a GAN configuration: a :class:`~pyrogen.models.gan.ConditionalGenerator`
    (``"model"`` gains ``num_classes``) and a :class:`~pyrogen.models.gan.ProjectionDiscriminator` on an MLP
    of the discriminator's ``hidden`` widths (norm ``"spectral"`` or ``"none"``; batch norm becomes none)."""
    m, d = config["model"], config["discriminator"]
    model = ConditionalGenerator(
        num_classes,
        m["latent_dim"],
        tuple(m["image_shape"]),
        m["architecture"],
        tuple(m["hidden"]),
        m["channels"],
        projection_norm=migrate(config).model.args["projection_norm"],
    ).config
    norm = "none" if d["norm"] == "batch" else d["norm"]
    return {**config, "model": model, "discriminator": {**d, "architecture": "projection", "norm": norm}}


def default_cvae_config(num_classes=10, latent_dim=20, hidden=(400,), likelihood="bernoulli"):
    """A conditional VAE run (kind ``"cvae"``, :class:`~pyrogen.models.ConditionalVAE`): the VAE's
    data, training and evaluation settings (constant KL weight, no importance-sampled log p(x))."""
    from pyrogen.models.conditional import ConditionalVAE

    config = default_config("vae", likelihood=likelihood)
    config["kind"] = "cvae"
    config["model"] = ConditionalVAE(num_classes, latent_dim, hidden=tuple(hidden), likelihood=likelihood).config
    config["eval"]["num_samples"] = 0
    return config


def _adversarial_pair_config(kind, train, loss, model):
    if loss not in GAN_LOSSES:
        raise DataError(f"loss must be one of {sorted(GAN_LOSSES)}, got {loss!r}")
    config = default_config("vae", **model)
    config["kind"] = kind
    config["train"] = dict(train, loss=loss)
    return config


ALI_NETWORK = {"layout": "ali", "slope": 0.01, "init_std": 0.01, "decoder_activation": "leaky", "centre_input": False}
"""The ``"dcgan"`` pair's options (:data:`pyrogen.networks.DCGAN_OPTIONS`) that make it the encoder and
generator of ALI's convolutional experiments (Dumoulin et al. 2017, appendix A; their
``experiments/ali_svhn.py``) at 28x28: convolutions with batch norm down to a 1x1 map and back, leaky
ReLU(0.01) (Blocks' ``LeakyRectifier``), weights N(0, 0.01), batch-norm scales 1, images fed as they are."""

ALI_DISCRIMINATOR = {
    "x_hidden": [256],
    "z_hidden": [256, 256],
    "joint_hidden": [512, 512],
    "slope": 0.01,
    "init_std": 0.01,
}
"""ALI's joint discriminator at 28x28 with the :data:`ALI_NETWORK` pair: D_x two stride-2 convolutions
and a (7x7) layer of 256 units, D_z two layers of 256, D_xz two layers of 512 and the score; leaky
ReLU(0.01) and weights N(0, 0.01), as the encoder's."""


def default_ali_config(
    latent_dim=64,
    architecture="dcgan",
    hidden=(256,),
    likelihood="bernoulli-relaxed",
    prior="normal",
    posterior="normal",
    loss="nonsaturating",
    model_x="mean",
    disc_hidden=None,
    disc_architecture=None,
    disc_dropout=0.2,
    update="simultaneous",
):
    """An ALI / BiGAN run: the VAE pair of :func:`default_config` as generator and encoder, and a
    :class:`~pyrogen.models.gan.JointDiscriminator` (``"discriminator"``: widths of the linear layers on x,
    on z and joint, the architecture on x, its first convolution's channels, the dropout).

    The generator is the decoder's mean (``model_x="mean"``), so the likelihood only names its output
    function: ``"bernoulli-relaxed"``, grey levels in [0, 1] and mean :math:`\\sigma(\\text{logits})`, is
    ALI's sigmoid output. The continuous Bernoulli's mean (an earlier default) cannot go below 0.063
    (:math:`\\lambda / (2\\lambda - 1) + 1 / (2 \\operatorname{artanh}(1 - 2\\lambda))`, about
    :math:`1 / |\\text{logit}|` for dark pixels, with torch's :math:`\\lambda` clamped at float32's eps), so its
    images never reach Fashion-MNIST's black background, which alone tells them from data.

    The defaults are ALI's convolutional recipe (Dumoulin et al. 2017, appendix A) at 28x28, the
    networks and update of ``benchmarks/ali_quality.py``'s hand-written reference, which
    ``check_same_networks`` there shows pyrogen builds exactly: with ``architecture="dcgan"`` the pair
    takes :data:`ALI_NETWORK` and the normal encoder outputs its log-scale (``scale_head="log-scale"``,
    :math:`\\sigma = \\exp(a)`); the discriminator has a convolutional x branch (``disc_architecture``:
    None for the pair's, ``"dcgan"`` for the ``"dcgan"`` and ``"conv"`` pairs, else ``"mlp"``), the widths
    and initialisation of :data:`ALI_DISCRIMINATOR`, dropout 0.2 before every layer of every branch and
    no batch norm; ``update="simultaneous"`` is ALI's algorithm (both players' gradients from one scoring
    of the pairs). With a logit output (``bernoulli-relaxed``, ``bernoulli``)
    ``train["init_output_bias"]`` starts the decoder's output bias at the log-odds of the training
    images' mean pixel, as ALI does (:func:`pyrogen.training.ali.init_output_bias_`).

    ``disc_hidden`` (a tuple of widths) sets all three branches' widths alike; None (the default) is
    :data:`ALI_DISCRIMINATOR`'s for the dcgan pair, else 256 256. Runs made before a default was changed
    stored their settings and keep them (docs/adversarial_inference.rst has the history and figures).

    ``model_x`` is ``"mean"`` (the decoder's mean, BiGAN's deterministic generator; any likelihood)
    or ``"sample"`` (a reparameterized draw of the likelihood). ``update`` is ``"simultaneous"`` or
    ``"alternating"`` (:class:`~pyrogen.infer.AdversarialInference`).
    """
    if model_x not in ("sample", "mean"):
        raise DataError(f"model_x must be 'sample' or 'mean', got {model_x!r}")
    if update not in ("simultaneous", "alternating"):
        raise DataError(f"update must be 'simultaneous' or 'alternating', got {update!r}")
    train = dict(DEFAULT_ALI_TRAIN, model_x=model_x, update=update)
    if likelihood in ("bernoulli", "bernoulli-relaxed"):  # logit outputs: ALI's data-dependent output bias
        train["init_output_bias"] = True
    recipe = architecture == "dcgan"
    model = dict(
        latent_dim=latent_dim,
        architecture=architecture,
        hidden=tuple(hidden),
        likelihood=likelihood,
        prior=prior,
        posterior=posterior,
    )
    if recipe:
        model["network"] = dict(ALI_NETWORK)
        if posterior == "normal":
            model["scale_head"] = "log-scale"  # ALI's encoder outputs mu and log sigma
    config = _adversarial_pair_config("ali", train, loss, model)
    if disc_architecture is None:
        disc_architecture = "dcgan" if architecture in ("dcgan", "conv") else "mlp"
    if disc_architecture not in ARCHITECTURES:
        raise DataError(f"disc_architecture must be one of {ARCHITECTURES}, got {disc_architecture!r}")
    if isinstance(disc_dropout, bool) or not isinstance(disc_dropout, (int, float)) or not 0 <= disc_dropout < 1:
        raise DataError(f"disc_dropout must be a probability in [0, 1), got {disc_dropout!r}")
    d = {"norm": "none", "architecture": disc_architecture, "channels": 32, "dropout": float(disc_dropout)}
    if disc_hidden is None and recipe and disc_architecture == "dcgan":
        widths = {k: ALI_DISCRIMINATOR[k] for k in ("x_hidden", "z_hidden", "joint_hidden")}
    else:
        width = (256, 256) if disc_hidden is None else disc_hidden
        widths = dict.fromkeys(("x_hidden", "z_hidden", "joint_hidden"), width)
    d.update({k: list(v) for k, v in widths.items()})  # a list of its own for each branch
    if recipe:  # ALI's slope and initialisation, whatever the widths
        d.update(slope=ALI_DISCRIMINATOR["slope"], init_std=ALI_DISCRIMINATOR["init_std"])
    config["discriminator"] = d
    config["eval"]["num_samples"] = 0  # a decoder mean has no density: no importance-sampled log p(x)
    return config


def default_aae_config(
    latent_dim=8,
    architecture="mlp",
    hidden=(400,),
    likelihood="bernoulli",
    prior="normal",
    posterior="normal",
    loss="nonsaturating",
    adversarial_weight=1.0,
    disc_hidden=(256, 256),
):
    """An adversarial-autoencoder run: the VAE pair of :func:`default_config` and a
    :class:`~pyrogen.models.gan.LatentDiscriminator` on codes (``"discriminator": {"hidden"}``)."""
    if not adversarial_weight >= 0:
        raise DataError(f"adversarial_weight must be >= 0, got {adversarial_weight!r}")
    config = _adversarial_pair_config(
        "aae",
        dict(DEFAULT_AAE_TRAIN, adversarial_weight=float(adversarial_weight)),
        loss,
        dict(
            latent_dim=latent_dim,
            architecture=architecture,
            hidden=tuple(hidden),
            likelihood=likelihood,
            prior=prior,
            posterior=posterior,
        ),
    )
    config["discriminator"] = {"hidden": list(disc_hidden)}
    return config
