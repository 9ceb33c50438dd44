"""The reciprocal (log-uniform) distribution, reparameterized by its inverse CDF.

On :math:`[a, b]` with :math:`0 < a < b` the density is
:math:`p(z) = 1 / (z \\log(b / a))` and the CDF
:math:`F(z) = \\log(z / a) / \\log(b / a)` inverts in closed form
(Kingma and Welling 2014, section 2.4):

.. math:: z = F^{-1}(u) = a\\, (b / a)^u = \\exp(\\log a + u (\\log b - \\log a)),
   \\qquad u \\sim \\mathcal{U}(0, 1),

i.e. the exponential of a uniform draw on :math:`[\\log a, \\log b]`; gradients
reach :math:`a` and :math:`b` along the draw. scipy's ``loguniform(a, b)``
(alias ``reciprocal``) is the same distribution.
"""

import torch
from pyro.distributions import TransformedDistribution, Uniform
from torch.distributions import constraints
from torch.distributions.transforms import ExpTransform
from torch.distributions.utils import broadcast_all


class Reciprocal(TransformedDistribution):
    """Reciprocal distribution on :math:`[a, b]`, density :math:`1 / (z \\log(b / a))`.

    :param torch.Tensor low: :math:`a > 0`.
    :param torch.Tensor high: :math:`b > a`.
    """

    arg_constraints = {"low": constraints.positive, "high": constraints.dependent(is_discrete=False, event_dim=0)}
    has_rsample = True

    def __init__(self, low, high, validate_args=None):
        self.low, self.high = broadcast_all(low, high)
        base = Uniform(self.low.log(), self.high.log(), validate_args=False)
        super().__init__(base, [ExpTransform()], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Reciprocal, _instance)
        Reciprocal.__init__(new, self.low.expand(batch_shape), self.high.expand(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        inside = (value >= self.low) & (value <= self.high)
        log_density = -value.log() - torch.log(self.high.log() - self.low.log())
        return torch.where(inside, log_density, torch.full_like(log_density, -float("inf")))

    def cdf(self, value):
        return ((value.log() - self.low.log()) / (self.high.log() - self.low.log())).clamp(0, 1)

    def icdf(self, value):
        return torch.exp(self.low.log() + value * (self.high.log() - self.low.log()))

    @property
    def mean(self):
        return (self.high - self.low) / (self.high.log() - self.low.log())
