"""The Rayleigh distribution, reparameterized by its inverse CDF.

Torch and Pyro have no Rayleigh distribution. Its CDF
:math:`F(x) = 1 - e^{-x^2 / 2\\sigma^2}` inverts in closed form,

.. math:: x = F^{-1}(u) = \\sigma \\sqrt{-2 \\log(1 - u)} = \\sigma \\sqrt{2 E},
   \\qquad E = -\\log(1 - u) \\sim \\mathrm{Exponential}(1),

so a draw is a unit exponential (itself the inverse CDF of a uniform) pushed
through :math:`e \\mapsto \\sigma \\sqrt{2e}`; gradients reach :math:`\\sigma`
along that path. The KL divergence between two Rayleighs is registered with
:func:`torch.distributions.kl_divergence`, so ``TraceMeanField_ELBO`` uses it.
"""

import math

import torch
from pyro.distributions import Exponential, TransformedDistribution
from torch.distributions import constraints
from torch.distributions.kl import register_kl
from torch.distributions.transforms import AffineTransform, PowerTransform
from torch.distributions.utils import broadcast_all


class Rayleigh(TransformedDistribution):
    """Rayleigh distribution with density
    :math:`p(x) = \\frac{x}{\\sigma^2} e^{-x^2 / 2\\sigma^2}` on :math:`x > 0`.

    :param torch.Tensor scale: :math:`\\sigma > 0`.
    """

    arg_constraints = {"scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, scale, validate_args=None):
        (self.scale,) = broadcast_all(scale)
        base = Exponential(torch.ones_like(self.scale), validate_args=False)
        transforms = [PowerTransform(self.scale.new_tensor(0.5)), AffineTransform(0.0, self.scale * math.sqrt(2.0))]
        super().__init__(base, transforms, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Rayleigh, _instance)
        Rayleigh.__init__(new, self.scale.expand(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.scale * math.sqrt(math.pi / 2)

    @property
    def mode(self):
        return self.scale

    @property
    def variance(self):
        return (2 - math.pi / 2) * self.scale**2

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return value.log() - 2 * self.scale.log() - value**2 / (2 * self.scale**2)

    def cdf(self, value):
        return -torch.expm1(-(value**2) / (2 * self.scale**2))

    def entropy(self):
        return 1 + self.scale.log() - math.log(2) / 2 + 0.5772156649015329 / 2


@register_kl(Rayleigh, Rayleigh)
def _kl_rayleigh_rayleigh(p, q):
    """:math:`\\mathrm{KL} = 2 \\log(\\sigma_q / \\sigma_p) + \\sigma_p^2 / \\sigma_q^2 - 1`."""
    ratio = (p.scale / q.scale) ** 2
    return ratio - 1 - ratio.log()
