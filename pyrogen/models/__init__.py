"""Generative models as Pyro model/guide pairs."""

from pyrogen.models.gan import Generator
from pyrogen.models.two_layer import TwoLayerVAE
from pyrogen.models.vae import VAE

__all__ = ["VAE", "Generator", "TwoLayerVAE"]
