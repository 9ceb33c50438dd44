"""Distributions over the L grey levels of 8-bit images: a categorical and a discretized logistic mixture.

Both score values on the grid :math:`\\{0, \\frac{1}{L-1}, \\ldots, 1\\}` (the
way 8-bit images load as floats in [0, 1], :math:`L = 256`) and assign them
probabilities that sum to one over the grid, so :math:`\\log p(x)` of an image
is a discrete log-probability in nats, comparable across models of 8-bit data
(and convertible to bits per dimension), unlike densities of continuous data.
"""

import torch
import torch.nn.functional as F
from pyro.distributions import Categorical, TorchDistribution
from torch.distributions import constraints


class _Levels(constraints.Constraint):
    """The grid :math:`\\{k / (L - 1) : k = 0, \\ldots, L - 1\\}` (float tolerance 1e-3 of a level)."""

    is_discrete = True

    def __init__(self, levels):
        self.levels = levels
        super().__init__()

    def check(self, value):
        k = value * (self.levels - 1)
        return (value >= 0) & (value <= 1) & ((k - k.round()).abs() < 1e-3)

    def __repr__(self):
        return f"{type(self).__name__[1:]}(levels={self.levels})"


def levels(num_levels):
    """Constraint of values on the grid of ``num_levels`` equally spaced points in [0, 1]."""
    return _Levels(num_levels)


def _grid_index(value, num_levels):
    return (value * (num_levels - 1)).round().long()


class _OnLevels(TorchDistribution):
    """Shared parts of distributions over the grey-level grid (last dimension of the parameters: components)."""

    has_enumerate_support = True

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return levels(self.num_levels)

    def entropy(self):
        """Exact entropy in nats, :math:`-\\sum_k P(x_k) \\log P(x_k)` over the L levels: shape ``batch_shape``."""
        log_p = self.log_prob(self.enumerate_support(expand=False))
        return -(log_p.exp() * log_p).sum(0)

    def enumerate_support(self, expand=True):
        grid = torch.linspace(0, 1, self.num_levels, device=self._param.device, dtype=self._param.dtype)
        grid = grid.reshape((-1,) + (1,) * len(self.batch_shape))
        return grid.expand((-1,) + self.batch_shape) if expand else grid


class QuantizedCategorical(_OnLevels):
    """A categorical distribution over the grey levels :math:`k / (L - 1)`, one free probability per level.

    Used for 8-bit pixels by PixelRNN/PixelCNN (van den Oord, Kalchbrenner and
    Kavukcuoglu 2016, a 256-way softmax).

    :param torch.Tensor logits: shape ``batch_shape + (L,)``.
    """

    arg_constraints = {"logits": constraints.real_vector}

    def __init__(self, logits, validate_args=None):
        self.logits = logits - logits.logsumexp(-1, keepdim=True)
        self.num_levels = logits.shape[-1]
        super().__init__(logits.shape[:-1], validate_args=validate_args)

    @property
    def _param(self):
        return self.logits

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(QuantizedCategorical, _instance)
        QuantizedCategorical.__init__(
            new, self.logits.expand(tuple(batch_shape) + (self.num_levels,)), validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        index = _grid_index(value, self.num_levels)
        logits, index = torch.broadcast_tensors(self.logits, index.unsqueeze(-1))
        return logits.gather(-1, index[..., :1]).squeeze(-1)

    def sample(self, sample_shape=torch.Size()):
        k = Categorical(logits=self.logits).sample(sample_shape)
        return k.to(self.logits.dtype) / (self.num_levels - 1)

    @property
    def probs(self):
        return self.logits.exp()

    @property
    def mean(self):
        grid = torch.linspace(0, 1, self.num_levels, device=self.logits.device, dtype=self.logits.dtype)
        return (self.probs * grid).sum(-1)


class DiscretizedLogisticMixture(_OnLevels):
    """A mixture of K logistics discretized to the grey levels (Salimans, Karpathy, Chen and Kingma 2017, PixelCNN++).

    Each level :math:`x_k = k / (L - 1)` receives the mass of the bin
    :math:`[x_k - h, x_k + h]`, :math:`h = \\frac{1}{2(L-1)}`, with the edge bins
    extended to :math:`\\mp\\infty`:

    .. math:: P(x_k) = \\sum_j \\pi_j \\left[\\sigma\\!\\left(\\frac{x_k + h - \\mu_j}{s_j}\\right)
       - \\sigma\\!\\left(\\frac{x_k - h - \\mu_j}{s_j}\\right)\\right].

    The difference of sigmoids is evaluated as
    :math:`\\log\\sigma(a) + \\log\\sigma(-b) + \\log(1 - e^{-(a - b)})`, which is
    exact and stable in both tails (PixelCNN++ switches to the density at the
    bin centre instead). Channels are modelled independently given their
    parameters (PixelCNN++ couples R, G and B linearly within a pixel).

    :param torch.Tensor logits: mixture logits, shape ``batch_shape + (K,)``.
    :param torch.Tensor loc: component locations :math:`\\mu_j` in grey-level units ([0, 1] scale).
    :param torch.Tensor scale: component scales :math:`s_j > 0`.
    :param int num_levels: L (256 for 8-bit data).
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "loc": constraints.real_vector,
        "scale": constraints.independent(constraints.positive, 1),
    }

    def __init__(self, logits, loc, scale, num_levels=256, validate_args=None):
        logits, self.loc, self.scale = torch.broadcast_tensors(logits, loc, scale)
        self.logits = logits - logits.logsumexp(-1, keepdim=True)
        self.num_levels = num_levels
        super().__init__(self.loc.shape[:-1], validate_args=validate_args)

    @property
    def _param(self):
        return self.loc

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogisticMixture, _instance)
        shape = tuple(batch_shape) + self.loc.shape[-1:]
        DiscretizedLogisticMixture.__init__(
            new,
            self.logits.expand(shape),
            self.loc.expand(shape),
            self.scale.expand(shape),
            self.num_levels,
            validate_args=False,
        )
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        k = _grid_index(value, self.num_levels).unsqueeze(-1)
        x = k.to(self.loc.dtype) / (self.num_levels - 1)
        half = 0.5 / (self.num_levels - 1)
        upper = (x + half - self.loc) / self.scale
        lower = (x - half - self.loc) / self.scale
        zero = upper.new_zeros(())
        log_mass = (
            torch.where(k < self.num_levels - 1, F.logsigmoid(upper), zero)
            + torch.where(k > 0, F.logsigmoid(-lower), zero)
            + torch.where((k > 0) & (k < self.num_levels - 1), torch.log(-torch.expm1(-2 * half / self.scale)), zero)
        )
        return torch.logsumexp(self.logits + log_mass, dim=-1)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        j = Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
        loc = self.loc.expand(shape + self.loc.shape[-1:]).gather(-1, j).squeeze(-1)
        scale = self.scale.expand(shape + self.scale.shape[-1:]).gather(-1, j).squeeze(-1)
        u = torch.rand(shape, device=loc.device, dtype=loc.dtype).clamp(1e-6, 1 - 1e-6)
        x = loc + scale * (u.log() - (-u).log1p())
        return ((x * (self.num_levels - 1)).round().clamp(0, self.num_levels - 1)) / (self.num_levels - 1)

    @property
    def mean(self):
        """Approximate mean :math:`\\sum_j \\pi_j \\operatorname{clip}(\\mu_j, 0, 1)` (for pictures)."""
        return (self.logits.exp() * self.loc.clamp(0, 1)).sum(-1)
