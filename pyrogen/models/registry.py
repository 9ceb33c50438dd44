"""Models rebuilt from a run configuration: the one table of run kinds and their networks.

A run's ``config.json`` names its ``kind`` and holds the model's own
``config`` (what the model's constructor takes); :func:`build_model` and
:func:`build_gan_networks` turn those back into modules. A new kind of model
registers its class in :data:`MODELS`.
"""

from torch import nn

from pyrogen.models.autoencoder import Autoencoder
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
from pyrogen.settings import RunConfig, migrate

MODELS = {"vae": VAE, "ae": Autoencoder}
"""Run kinds trained by SVI: the variational autoencoder and the deterministic autoencoder baseline."""

VAE_MODELS = {"vae": {"two-layer": TwoLayerVAE}}
"""Other models of a kind (only ``"vae"`` has any), named by the ``"model"`` key of their configuration
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
    if name not in VAE_MODELS.get(kind, {}):
        raise ValueError(f"model must be one of {sorted(VAE_MODELS['vae'])} for kind 'vae', got {name!r} for {kind!r}")
    if isinstance(model.get("activation"), str):
        model["activation"] = getattr(nn, model["activation"])
    return VAE_MODELS[kind][name](**model)


ADVERSARIAL_PAIRS = {"ali": VAE, "aae": VAE}
"""Run kinds whose model/guide pair is trained adversarially: ALI / BiGAN (``pyrogen train ali``,
a joint discriminator on (x, z)) and the adversarial autoencoder (``pyrogen train aae``, a
discriminator on codes). Their checkpoints hold the pair under ``"model"``, as the VAE's do."""


CONDITIONAL_MODELS = {"cvae": ConditionalVAE}
"""Run kinds of class-conditional model/guide pairs (``pyrogen train vae --conditional``)."""


def build_model(config):
    """The (untrained) model/guide pair of a VAE-family, adversarial-pair or conditional run configuration
    (of any layout: :func:`~pyrogen.settings.migrate` gives an earlier run's model its own settings)."""
    settings = migrate(config)
    kind, model = settings.kind, settings.model.to_dict()
    if kind in MODELS:
        return make_model(kind, **model)
    table = ADVERSARIAL_PAIRS if kind in ADVERSARIAL_PAIRS else CONDITIONAL_MODELS
    model = {k: (tuple(v) if isinstance(v, list) and k == "hidden" else v) for k, v in model.items()}
    return table[kind](**model)


def build_pair_discriminator(config):
    """The (untrained) discriminator of an ``"ali"`` (on pairs (x, z)) or ``"aae"`` (on codes z) run."""
    settings = migrate(config)
    d, model = settings.discriminator.to_dict(), settings.model.to_dict()
    if settings.kind not in PAIR_DISCRIMINATORS:
        raise ValueError(f"kind must be one of {sorted(PAIR_DISCRIMINATORS)}, got {settings.kind!r}")
    return PAIR_DISCRIMINATORS[settings.kind](model, d)


def _joint_discriminator(model, d):
    return JointDiscriminator(
        tuple(model["image_shape"]),
        model["latent_dim"],
        tuple(d["x_hidden"]),
        tuple(d["z_hidden"]),
        tuple(d["joint_hidden"]),
        norm=d["norm"],
        architecture=d["architecture"],
        channels=d["channels"],
        dropout=d["dropout"],
        slope=d["slope"],
        init_std=d["init_std"],
    )


def _latent_discriminator(model, d):
    return LatentDiscriminator(model["latent_dim"], tuple(d["hidden"]))


PAIR_DISCRIMINATORS = {"ali": _joint_discriminator, "aae": _latent_discriminator}
"""The discriminator of each adversarially trained pair's kind: ALI's on (x, z), the AAE's on codes."""


def build_gan_networks(config):
    """``(generator, discriminator)`` of a GAN run configuration, untrained; a model configuration with
    ``num_classes`` is a class-conditional pair (:class:`ConditionalGenerator`, :class:`ProjectionDiscriminator`)."""
    settings = migrate(config if isinstance(config, RunConfig) else {"kind": "gan", **config})
    model = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.model.to_dict().items()}
    d = settings.discriminator.to_dict()
    if "num_classes" in model:
        return (
            ConditionalGenerator(**model),
            ProjectionDiscriminator(model["num_classes"], model["image_shape"], tuple(d["hidden"]), d["norm"]),
        )
    gen = Generator(**model)
    disc = build_discriminator(
        d["architecture"], tuple(model["image_shape"]), tuple(d["hidden"]), d["channels"], d["norm"]
    )
    return gen, disc
