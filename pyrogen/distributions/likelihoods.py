"""Observation likelihoods p(x|z): from a decoder's output to a distribution over images.

A likelihood is an :class:`~torch.nn.Module` (it may own parameters, such as a
learned noise scale) that takes the decoder output of shape
``(..., num_params * C, H, W)`` and returns a distribution with event shape
``(C, H, W)``. :meth:`Likelihood.check` tests that data lie in the support and
raises a :class:`~pyrogen.errors.DataError` that says what was expected.
"""

import torch
from pyro import distributions as dist
from torch import nn

from pyrogen.errors import DataError


class Likelihood(nn.Module):
    """Base class. Subclasses set :attr:`num_params` and implement :meth:`forward`."""

    num_params = 1
    """Decoder output channels per image channel."""

    def forward(self, out):
        raise NotImplementedError

    def check(self, x, name="x"):
        """Raise :class:`DataError` unless ``x`` lies in the support."""
        if not torch.isfinite(x).all():
            raise DataError(f"{name} holds NaN or infinite values")

    def mean(self, out):
        """The mean image E[x|z] for a decoder output, used for pictures."""
        return self.forward(out).mean


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with logits from the decoder.

    The data must be binary. ``relaxed=True`` declares that grey levels in
    [0, 1] are scored by the same cross-entropy formula (as in Pyro's VAE
    tutorial); that is not a normalised density over [0, 1] (see
    Loaiza-Ganem and Cunningham 2019, and the Continuous Bernoulli).
    """

    def __init__(self, relaxed=False):
        super().__init__()
        self.relaxed = relaxed

    def forward(self, logits):
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(3)

    def check(self, x, name="x"):
        super().check(x, name)
        lo, hi = x.min().item(), x.max().item()
        if lo < 0 or hi > 1:
            raise DataError(
                f"{name} must lie in [0, 1] under a Bernoulli likelihood, got values in [{lo:.4g}, {hi:.4g}]"
            )
        if not self.relaxed and not ((x == 0) | (x == 1)).all():
            raise DataError(
                f"{name} is not binary, but the Bernoulli likelihood scores only 0/1 pixels: "
                "binarize the data (binarize='dynamic' or 'static'), declare the relaxation "
                "(BernoulliLikelihood(relaxed=True), --likelihood bernoulli-relaxed), or pick a "
                "likelihood for continuous data"
            )

    def mean(self, logits):
        return torch.sigmoid(logits)


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "bernoulli-relaxed": lambda: BernoulliLikelihood(relaxed=True),
}
"""Registered likelihoods by name: each value builds a fresh :class:`Likelihood`."""


def get_likelihood(likelihood):
    """A :class:`Likelihood` from itself or its registered name."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    try:
        return LIKELIHOODS[likelihood]()
    except KeyError:
        raise ValueError(
            f"unknown likelihood {likelihood!r}; expected one of {', '.join(sorted(LIKELIHOODS))} "
            "or a pyrogen.distributions.Likelihood"
        ) from None
