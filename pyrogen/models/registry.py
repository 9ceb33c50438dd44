"""Models rebuilt from a run configuration: the one table of run kinds and their networks.

A run's ``config.json`` names its ``kind`` and holds the model's own
``config`` (what the model's constructor takes); :func:`build_model` and
:func:`build_gan_networks` turn those back into modules. A new kind of model
registers its class in :data:`MODELS`.
"""

from pyrogen.models.autoencoder import Autoencoder
from torch import nn

from pyrogen.models.conditional import ConditionalVAE
from pyrogen.models.gan import (
    ConditionalGenerator,
    Generator,
    JointDiscriminator,
    LatentDiscriminator,
    ProjectionDiscriminator,
    build_discriminator,
)
from pyrogen.models.two_layer import TwoLayerVAE
from pyrogen.models.vae import VAE

MODELS = {"vae": VAE, "ae": Autoencoder}
"""Run kinds trained by SVI: the variational autoencoder and the deterministic autoencoder baseline."""

VAE_MODELS = {"two-layer": TwoLayerVAE}
"""Other models of kind ``"vae"``, named by the ``"model"`` key of their configuration
(:class:`~pyrogen.models.two_layer.TwoLayerVAE` writes ``"model": "two-layer"``); without
that key the kind's class of :data:`MODELS` is built."""


def make_model(kind="vae", **model):
    """A new model of run kind ``kind`` from its constructor's arguments, or from its saved ``config``.

    ``model="two-layer"`` (see :data:`VAE_MODELS`) picks a model other than the
    kind's own; an activation saved by name (``"Tanh"``) is turned back into its class.
    """
    name = model.pop("model", None)
    if name is None:
        return MODELS[kind](**model)
    if kind != "vae" or name not in VAE_MODELS:
        raise ValueError(f"model must be one of {sorted(VAE_MODELS)} for kind 'vae', got {name!r} for {kind!r}")
    if isinstance(model.get("activation"), str):
        model["activation"] = getattr(nn, model["activation"])
    return VAE_MODELS[name](**model)


ADVERSARIAL_PAIRS = {"ali": VAE, "aae": VAE}
"""Run kinds whose model/guide pair is trained adversarially: ALI / BiGAN (``pyrogen train ali``,
a joint discriminator on (x, z)) and the adversarial autoencoder (``pyrogen train aae``, a
discriminator on codes). Their checkpoints hold the pair under ``"model"``, as the VAE's do."""


CONDITIONAL_MODELS = {"cvae": ConditionalVAE}
"""Run kinds of class-conditional model/guide pairs (``pyrogen train vae --conditional``)."""


def build_model(config):
    """The (untrained) model/guide pair of a VAE-family, adversarial-pair or conditional run configuration."""
    kind = config.get("kind", "vae")
    model = dict(config["model"])
    if kind in MODELS or kind in ADVERSARIAL_PAIRS:
        if "model" not in model and model.get("posterior", "normal") == "normal":
            model.setdefault("scale_head", "log-scale")  # runs made before the key existed: σ = exp(a)
        if "model" not in model and str(model.get("prior", "")).startswith("vamp:"):
            model.setdefault("pseudo_inputs", "sigmoid")  # VampPriors made before the key existed
        if "model" not in model and str(model.get("flow", "")).startswith("iaf:"):
            model.setdefault("iaf_context", True)  # IAFs made before the keys existed: h(x) and the gated step
            model.setdefault("iaf_step", "gated")
    if kind in MODELS:
        return make_model(kind, **model)
    table = MODELS if kind in MODELS else ADVERSARIAL_PAIRS if kind in ADVERSARIAL_PAIRS else CONDITIONAL_MODELS
    model = {k: (tuple(v) if isinstance(v, list) and k == "hidden" else v) for k, v in model.items()}
    return table[kind](**model)


def build_pair_discriminator(config):
    """The (untrained) discriminator of an ``"ali"`` (on pairs (x, z)) or ``"aae"`` (on codes z) run."""
    d, model = config["discriminator"], config["model"]
    if config["kind"] == "ali":  # runs made before "architecture" and "dropout" existed: an MLP without dropout
        return JointDiscriminator(tuple(model["image_shape"]), model["latent_dim"], tuple(d["x_hidden"]),
                                  tuple(d["z_hidden"]), tuple(d["joint_hidden"]), norm=d["norm"],
                                  architecture=d.get("architecture", "mlp"), channels=d.get("channels", 32),
                                  dropout=d.get("dropout", 0.0), slope=d.get("slope", 0.2),
                                  init_std=d.get("init_std"))
    return LatentDiscriminator(model["latent_dim"], tuple(d["hidden"]))


def build_gan_networks(config):
    """``(generator, discriminator)`` of a GAN run configuration, untrained; a model configuration
    with ``num_classes`` is a class-conditional pair (:class:`ConditionalGenerator`, :class:`ProjectionDiscriminator`)."""
    model = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config["model"].items()}
    model.setdefault("projection_norm", "feature")  # runs made before the key existed
    d = config["discriminator"]
    if "num_classes" in model:
        return (ConditionalGenerator(**model),
                ProjectionDiscriminator(model["num_classes"], model["image_shape"], tuple(d["hidden"]), d["norm"]))
    gen = Generator(**model)
    disc = build_discriminator(d["architecture"], tuple(config["model"]["image_shape"]), tuple(d["hidden"]),
                               d["channels"], d["norm"])
    return gen, disc
