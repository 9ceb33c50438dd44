"""Generative models as Pyro model/guide pairs."""

from pyrogen.models.vae import VAE

__all__ = ["VAE"]
