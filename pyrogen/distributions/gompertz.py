"""The Gompertz distribution, reparameterized by its inverse CDF.

Torch and Pyro have no Gompertz distribution. With shape :math:`\\eta > 0` and
rate :math:`b > 0` its CDF on :math:`x \\ge 0` is
:math:`F(x) = 1 - \\exp(-\\eta (e^{bx} - 1))`, which inverts in closed form
(Kingma and Welling 2014, section 2.4, list it among the tractable inverse CDFs):

.. math:: x = F^{-1}(u) = \\frac{1}{b} \\log\\Bigl(1 + \\frac{E}{\\eta}\\Bigr),
   \\qquad E = -\\log(1 - u) \\sim \\mathrm{Exponential}(1),

so gradients reach :math:`\\eta` and :math:`b` along the draw. scipy's
``gompertz(c=eta, scale=1/b)`` is the same distribution.
"""

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all


class Gompertz(TorchDistribution):
    """Gompertz distribution with density
    :math:`p(x) = b \\eta \\exp(\\eta + bx - \\eta e^{bx})` on :math:`x \\ge 0`.

    :param torch.Tensor concentration: the shape :math:`\\eta > 0`.
    :param torch.Tensor rate: :math:`b > 0` (1/scale).
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, concentration, rate, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        super().__init__(self.concentration.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Gompertz, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        super(Gompertz, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        e = torch.empty(shape, dtype=self.rate.dtype, device=self.rate.device).exponential_()
        return torch.log1p(e / self.concentration) / self.rate

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        eta, b = self.concentration, self.rate
        return b.log() + eta.log() + eta + b * value - eta * torch.exp(b * value)

    def cdf(self, value):
        return -torch.expm1(-self.concentration * torch.expm1(self.rate * value))

    def icdf(self, value):
        return torch.log1p(-torch.log1p(-value) / self.concentration) / self.rate
