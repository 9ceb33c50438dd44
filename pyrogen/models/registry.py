"""Models rebuilt from a run configuration: the one table of run kinds and their networks.

A run's ``config.json`` names its ``kind`` and holds the model's own
``config`` (what the model's constructor takes); :func:`build_model` and
:func:`build_gan_networks` turn those back into modules. A new kind of model
registers its class in :data:`MODELS`.
"""

from pyrogen.models.autoencoder import Autoencoder
from torch import nn

from pyrogen.models.gan import Generator, build_discriminator
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


def build_model(config):
    """The (untrained) model/guide pair of a VAE-family run configuration."""
    return make_model(config.get("kind", "vae"), **config["model"])


def build_gan_networks(config):
    """``(generator, discriminator)`` of a GAN run configuration, untrained."""
    gen = Generator(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config["model"].items()})
    d = config["discriminator"]
    disc = build_discriminator(d["architecture"], tuple(config["model"]["image_shape"]), tuple(d["hidden"]),
                               d["channels"], d["norm"])
    return gen, disc
