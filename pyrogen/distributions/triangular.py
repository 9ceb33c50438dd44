"""The symmetric triangular distribution, a location-scale family.

Its standard member has density :math:`1 - |t|` on :math:`[-1, 1]` and the
inverse CDF

.. math:: t = F^{-1}(u) = \\begin{cases} \\sqrt{2u} - 1, & u < 1/2 \\\\
   1 - \\sqrt{2(1 - u)}, & u \\ge 1/2, \\end{cases}

and a member is :math:`z = \\mu + \\sigma t` (Kingma and Welling 2014,
section 2.4, list the triangular among the location-scale families); gradients
reach :math:`\\mu` and :math:`\\sigma` along the draw. scipy's
``triang(c=0.5, loc=mu - sigma, scale=2 sigma)`` is the same distribution.
"""

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all


class Triangular(TorchDistribution):
    """Symmetric triangular distribution on :math:`[\\mu - \\sigma, \\mu + \\sigma]` with mode :math:`\\mu`:
    :math:`p(z) = (1 - |z - \\mu| / \\sigma) / \\sigma`.

    :param torch.Tensor loc: :math:`\\mu`, the mode and mean.
    :param torch.Tensor scale: :math:`\\sigma > 0`, the half-width.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.loc - self.scale, self.loc + self.scale)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Triangular, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc, new.scale = self.loc.expand(batch_shape), self.scale.expand(batch_shape)
        super(Triangular, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @staticmethod
    def _standard_icdf(u):
        return torch.where(u < 0.5, torch.sqrt(2 * u) - 1, 1 - torch.sqrt(2 * (1 - u)))

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.scale * self._standard_icdf(u)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        t = (value - self.loc) / self.scale
        return torch.log((1 - t.abs()).clamp(min=0)) - self.scale.log()

    def cdf(self, value):
        t = ((value - self.loc) / self.scale).clamp(-1, 1)
        return torch.where(t < 0, (1 + t) ** 2 / 2, 1 - (1 - t) ** 2 / 2)

    def icdf(self, value):
        return self.loc + self.scale * self._standard_icdf(value)

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return self.scale**2 / 6

    def entropy(self):
        return 0.5 + self.scale.log()
