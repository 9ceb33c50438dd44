"""Latent families (prior and guide) and observation likelihoods."""

from pyrogen.distributions.families import FAMILIES, LatentFamily, ParameterHead, get_family
from pyrogen.distributions.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    Likelihood,
    get_likelihood,
)

__all__ = [
    "FAMILIES", "LatentFamily", "ParameterHead", "get_family",
    "LIKELIHOODS", "Likelihood", "BernoulliLikelihood", "get_likelihood",
]  # fmt: skip
