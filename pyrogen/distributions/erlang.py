"""The Erlang distribution: a Gamma with integer shape, reparameterized as a sum of exponentials.

With integer shape :math:`k \\ge 1` and rate :math:`\\lambda > 0` an Erlang
draw is the sum of :math:`k` independent Exponential(:math:`\\lambda`) draws,
each the inverse CDF of a uniform (Kingma and Welling 2014, section 2.4):

.. math:: z = -\\frac{1}{\\lambda} \\sum_{i=1}^{k} \\log u_i = \\frac{1}{\\lambda} \\sum_{i=1}^{k} E_i,
   \\qquad E_i \\sim \\mathrm{Exponential}(1),

so the gradient in :math:`\\lambda` is pathwise without the implicit
reparameterization torch uses for a Gamma of real shape. The density is the
Gamma's, :math:`p(z) = \\lambda^k z^{k-1} e^{-\\lambda z} / (k-1)!`, and as a
:class:`pyro.distributions.Gamma` subclass it inherits the Gamma/Gamma KL
registered with :func:`torch.distributions.kl_divergence`.
"""

import torch
from pyro.distributions import Gamma
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from pyrogen.checks import is_integer


class Erlang(Gamma):
    """Erlang distribution, Gamma(k, λ) for integer k, drawn as a sum of k exponentials.

    :param int shape: :math:`k \\ge 1` (a Python integer, not learned).
    :param torch.Tensor rate: :math:`\\lambda > 0`.
    """

    arg_constraints = {"rate": constraints.positive}
    has_rsample = True

    def __init__(self, shape, rate, validate_args=None):
        if not is_integer(shape) or shape < 1:
            raise ValueError(f"Erlang shape must be an integer >= 1, got {shape!r}")
        self.k = int(shape)
        (rate,) = broadcast_all(rate)
        super().__init__(torch.full_like(rate, float(shape)), rate, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Erlang, _instance)
        Erlang.__init__(new, self.k, self.rate.expand(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size(), generator=None):
        shape = self._extended_shape(sample_shape) + (self.k,)
        e = torch.empty(shape, dtype=self.rate.dtype, device=self.rate.device).exponential_(generator=generator)
        return e.sum(-1) / self.rate
