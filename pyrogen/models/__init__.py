"""Generative models as Pyro model/guide pairs."""

from pyrogen.models.conditional import ConditionalVAE
from pyrogen.models.gan import ConditionalGenerator, Generator
from pyrogen.models.two_layer import TwoLayerVAE
from pyrogen.models.vae import VAE

__all__ = ["VAE", "Generator", "TwoLayerVAE", "ConditionalVAE", "ConditionalGenerator"]
