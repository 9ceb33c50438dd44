"""Learned priors: the VampPrior.

Tomczak and Welling, "VAE with a VampPrior" (AISTATS 2018): the prior that
maximises the ELBO averaged over the data is the aggregate posterior
:math:`\\frac1N \\sum_n q_\\phi(z \\mid x_n)`; the VampPrior replaces the N
training images by K learned pseudo-inputs :math:`u_k`,

.. math:: p_\\lambda(z) = \\frac{1}{K} \\sum_{k=1}^{K} q_\\phi(z \\mid u_k),

a mixture of the guide's own distribution (same encoder, same family) at the
pseudo-inputs (K = 500 in the paper). It is a :class:`pyro.distributions.MixtureSameFamily`
with uniform weights, whose :meth:`log_prob` is
:math:`\\operatorname{logsumexp}_k \\log q_\\phi(z \\mid u_k) - \\log K`. KL(q || p)
has no closed form, so the ELBO estimates it by Monte Carlo.

Memory. Evaluating the mixture at S values of z (S = importance samples x
examples when log p(x) is estimated) needs S x K component densities of D
coordinates each; at K = 500, D = 50, 1000 importance samples and 100 test
images that is 2.5e9 floats (10 GB). :class:`UniformMixture` therefore
accumulates :math:`\\operatorname{logsumexp}_k` over blocks of components (and
of values) with a running ``logaddexp``, so that one block holds at most
``max_elements`` floats, whatever S and K. For a diagonal Normal guide (the
default) it takes the Mahalanobis terms as two matrix products in float64,
S x K numbers in blocks of rows instead of S x K x D, which is also some 50
times faster on a CPU.
"""

import math

import torch
from pyro import distributions as dist
from pyro.distributions.torch_distribution import ExpandedDistribution
from torch import nn
from torch.distributions import Independent, Normal


class UniformMixture(dist.MixtureSameFamily):
    """:math:`p(z) = \\frac1K \\sum_{k=1}^K p_k(z)`, a mixture of one family with equal weights, evaluated in blocks.

    The value of :meth:`log_prob` is that of :class:`pyro.distributions.MixtureSameFamily`
    (to float rounding: the log-sum-exp over the K components is taken block by block and
    combined with :func:`torch.logaddexp`), but its memory is bounded: each block of values
    and components holds at most ``max_elements`` floats (``rows x components x D``), so
    memory does not grow with (number of values) x K. Gradients flow through every block.
    Components that are a diagonal Normal (``Independent(Normal(loc, scale), 1)``) take
    the matrix-product route of :func:`_normal_mixture_log_prob` instead, blocks of
    ``max_elements // K`` values.

    :param family: ``family(**params)`` returns a distribution of batch shape ``(K,)``
        (e.g. a :class:`~pyrogen.distributions.LatentFamily`).
    :param dict params: the components' parameters, each with leading dimension K.
    :param int max_elements: most floats in one block of component log-densities
        (default :math:`2^{22}`, 16 MB in float32).

    Its batch shape is ``()``; :meth:`expand` (as ``pyro.plate`` calls it) wraps it in
    :class:`~pyro.distributions.torch_distribution.ExpandedDistribution`, which evaluates
    the unexpanded mixture at every value.
    """

    def __init__(self, family, params, max_elements=2**22, validate_args=None):
        components = family(**params)
        if len(components.batch_shape) != 1:
            raise ValueError(
                f"UniformMixture needs components of batch shape (K,), got {tuple(components.batch_shape)}"
            )
        if int(max_elements) < 1:
            raise ValueError(f"max_elements must be a positive integer, got {max_elements!r}")
        num = components.batch_shape[0]
        weights = dist.Categorical(logits=next(iter(params.values())).new_zeros(num))
        super().__init__(weights, components, validate_args=validate_args)
        self.family, self.params, self.max_elements = family, dict(params), int(max_elements)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return self if batch_shape == self.batch_shape else ExpandedDistribution(self, batch_shape)

    def log_prob(self, value):
        """:math:`\\log \\frac1K \\sum_k p_k(z)` for ``value`` of shape ``(..., *event_shape)``: shape
        ``(...)``, nats."""
        if self._validate_args:
            self._validate_sample(value)
        event_dim = len(self.event_shape)
        batch = value.shape[: value.dim() - event_dim]
        flat = value.reshape((-1,) + value.shape[value.dim() - event_dim :])
        normal = _diagonal_normal(self.component_distribution)
        if normal is not None:
            return _normal_mixture_log_prob(flat, *normal, self.max_elements).to(value.dtype).reshape(batch)
        per_row = max(1, self.event_shape.numel())
        num = self._num_component
        rows = max(1, min(flat.shape[0], self.max_elements // per_row))
        step = max(1, min(num, self.max_elements // (rows * per_row)))
        if rows == flat.shape[0] and step == num:
            return super().log_prob(value)  # one block: MixtureSameFamily's own computation
        out = []
        for r in range(0, flat.shape[0], rows):
            z = flat[r : r + rows].unsqueeze(-1 - event_dim)  # (rows, 1, *event)
            acc = None
            for k in range(0, num, step):
                block = self.family(**{n: p[k : k + step] for n, p in self.params.items()})
                lse = torch.logsumexp(block.log_prob(z), -1)  # (rows,)
                acc = lse if acc is None else torch.logaddexp(acc, lse)
            out.append(acc)
        return (torch.cat(out) - math.log(num)).reshape(batch)


def _diagonal_normal(components):
    """``(loc, scale)``, each ``(K, D)``, when ``components`` is a diagonal Normal with event shape ``(D,)``;
    else None."""
    if (
        isinstance(components, Independent)
        and components.reinterpreted_batch_ndims == 1
        and isinstance(components.base_dist, Normal)
        and len(components.base_dist.batch_shape) == 2
    ):
        return components.base_dist.loc, components.base_dist.scale
    return None


def _normal_mixture_log_prob(z, loc, scale, max_elements):
    """:math:`\\log \\frac1K \\sum_k \\mathcal{N}(z; \\mu_k, \\operatorname{diag}\\sigma_k^2)` for ``z``
    ``(N, D)``: ``(N,)``.

    The Mahalanobis terms as two matrix products,
    :math:`\\sum_d (z_d - \\mu_{kd})^2/\\sigma_{kd}^2 = (z^2)\\,(\\sigma_k^{-2})^\\top
    - 2 z\\,(\\mu_k \\sigma_k^{-2})^\\top + \\sum_d \\mu_{kd}^2 \\sigma_{kd}^{-2}`,
    in float64 (the expansion cancels large terms; float64 keeps the result within float32
    rounding of the direct sum), ``max_elements // K`` rows of z at a time, so a block holds
    ``rows x K`` numbers instead of the direct route's ``rows x K x D``.
    """
    loc, scale = torch.broadcast_tensors(loc, scale)
    num, dim = loc.shape
    loc, scale, z = loc.double(), scale.double(), z.double()
    precision = scale.pow(-2)  # (K, D)
    weighted = loc * precision
    const = -0.5 * (loc * weighted).sum(-1) - scale.log().sum(-1) - 0.5 * dim * math.log(2 * math.pi) - math.log(num)
    rows = max(1, max_elements // num)
    out = []
    for r in range(0, z.shape[0], rows):
        block = z[r : r + rows]
        mahalanobis_part = -0.5 * (block * block) @ precision.T + block @ weighted.T  # (rows, K)
        out.append(torch.logsumexp(mahalanobis_part + const, -1))
    return torch.cat(out) if out else z.new_zeros(0)


PSEUDO_INPUTS = ("hardtanh", "sigmoid")
"""How a :class:`VampPrior` keeps its pseudo-inputs in [0, 1]: ``"hardtanh"``, the default,
:math:`u_k = \\operatorname{hardtanh}_{[0,1]}(w_k + b)` (pythae's ``VAMP``, after the paper's hard tanh: a linear
layer K -> C*H*W applied to the one-hot rows e_k, so b is shared by all components), starting near 0
like a dark image; or ``"sigmoid"``, :math:`u_k = \\sigma(\\ell_k)` starting near 0.5, which runs made
before the option existed keep (their configurations lack the key)."""


class VampPrior(nn.Module):
    """K pseudo-inputs and the mixture of the guide's distribution at them.

    With ``pseudo_inputs="hardtanh"`` (the default) the k-th pseudo-image is

    .. math:: u_k = \\operatorname{hardtanh}_{[0,1]}(W e_k + b) = \\min(1, \\max(0, w_k + b)),

    the parameterization of pythae's ``VAMP`` (Tomczak and Welling clip with the same hard tanh; a
    :class:`torch.nn.Linear` of K inputs applied to the one-hot rows :math:`e_k`, then
    ``Hardtanh(0, 1)``): ``pseudo_weight`` :math:`w` ``(K, C, H, W)`` and ``pseudo_bias``
    :math:`b` ``(C, H, W)``, shared by the K components, both drawn from
    :math:`U(-1/\\sqrt K, 1/\\sqrt K)` as :class:`torch.nn.Linear` draws them, so the
    pseudo-inputs start in :math:`[0, 2/\\sqrt K]` (about half of the pixels clipped to 0).
    A pixel moves by up to Adam's step in w plus its step in b per update (about 2 lr),
    where the sigmoid's pixel moves by at most lr/4: on Fashion-MNIST (10 epochs, K = 500,
    seed 0) log p(x) rises from −247.82 nats (sigmoid) to −247.00 (pythae's VAMP: −247.05),
    and over three seeds it is level with pythae's (``benchmarks/catalogue.py``, docs/bounds.rst).

    With ``pseudo_inputs="sigmoid"`` (runs made before the option) :math:`u_k = \\sigma(\\ell_k)`,
    ``pseudo_logits`` :math:`\\ell \\sim \\mathcal N(0, 0.01^2)`, so the pseudo-inputs start near 0.5.

    :param int num_components: K.
    :param tuple image_shape: ``(C, H, W)`` of one pseudo-input.
    :param str pseudo_inputs: one of :data:`PSEUDO_INPUTS`.
    """

    max_elements = 2**22
    """Most floats in one block of the mixture's component log-densities (:class:`UniformMixture`)."""

    def __init__(self, num_components, image_shape, pseudo_inputs="hardtanh"):
        super().__init__()
        if num_components < 1:
            raise ValueError(f"a VampPrior needs K >= 1 pseudo-inputs, got {num_components}")
        if pseudo_inputs not in PSEUDO_INPUTS:
            raise ValueError(f"pseudo_inputs must be one of {list(PSEUDO_INPUTS)}, got {pseudo_inputs!r}")
        self.num_components = num_components
        self.kind = pseudo_inputs
        shape = (num_components,) + tuple(image_shape)
        if pseudo_inputs == "sigmoid":
            self.pseudo_logits = nn.Parameter(0.01 * torch.randn(shape))
        else:
            bound = 1 / math.sqrt(num_components)  # torch.nn.Linear(K, C*H*W)'s initial range
            self.pseudo_weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
            self.pseudo_bias = nn.Parameter(torch.empty(shape[1:]).uniform_(-bound, bound))

    def pseudo_inputs(self):
        """The K pseudo-images :math:`u_k`, shape ``(K, C, H, W)``, in [0, 1] (``"sigmoid"``: in (0, 1))."""
        if self.kind == "sigmoid":
            return torch.sigmoid(self.pseudo_logits)
        return torch.nn.functional.hardtanh(self.pseudo_weight + self.pseudo_bias, 0.0, 1.0)

    @torch.no_grad()
    def init_from(self, images, eps=1e-3):
        """Set the pseudo-inputs to the first K ``images`` (values in [0, 1]; for ``"sigmoid"``
        clipped to ``[eps, 1 - eps]``; for ``"hardtanh"`` the shared bias is set to 0)."""
        if self.kind == "sigmoid":
            u = images[: self.num_components].reshape(self.pseudo_logits.shape).clamp(eps, 1 - eps)
            self.pseudo_logits.copy_(torch.logit(u))
        else:
            self.pseudo_weight.copy_(images[: self.num_components].reshape(self.pseudo_weight.shape).clamp(0, 1))
            self.pseudo_bias.zero_()

    def distribution(self, encoder, family):
        """:math:`p(z) = \\frac1K \\sum_k q(z \\mid u_k)`, event shape ``(latent_dim,)``, batch shape ``()``:
        a :class:`UniformMixture`, whose log-density is evaluated in blocks of at most
        :attr:`max_elements` floats.

        :param encoder: maps images ``(K, C, H, W)`` to the family's parameters ``(K, ...)``.
        :param family: the guide's :class:`~pyrogen.distributions.LatentFamily`.
        """
        return UniformMixture(family, encoder(self.pseudo_inputs()), max_elements=self.max_elements)
