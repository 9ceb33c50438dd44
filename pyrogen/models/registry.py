"""Models rebuilt from a run configuration: the one table of run kinds and their networks.

A run's ``config.json`` names its ``kind`` and holds the model's own
``config`` (what the model's constructor takes); :func:`build_model` and
:func:`build_gan_networks` turn those back into modules. A new kind of model
registers its class in :data:`MODELS`.
"""

from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.gan import Generator, build_discriminator
from pyrogen.models.vae import VAE

MODELS = {"vae": VAE, "ae": Autoencoder}
"""Run kinds trained by SVI: the variational autoencoder and the deterministic autoencoder baseline."""


def build_model(config):
    """The (untrained) model/guide pair of a VAE-family run configuration."""
    return MODELS[config.get("kind", "vae")](**config["model"])


def build_gan_networks(config):
    """``(generator, discriminator)`` of a GAN run configuration, untrained."""
    gen = Generator(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config["model"].items()})
    d = config["discriminator"]
    disc = build_discriminator(d["architecture"], tuple(config["model"]["image_shape"]), tuple(d["hidden"]),
                               d["channels"], d["norm"])
    return gen, disc
