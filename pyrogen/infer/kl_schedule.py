"""KL weighting: schedules for the weight λ of the latent sites, and free bits.

A VAE trained with KL weight λ maximises

.. math:: \\mathcal{L}_\\lambda(x) = \\mathbb{E}_{q(z|x)}[\\log p(x \\mid z)]
   - \\lambda\\, \\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z)),

applied in Pyro by wrapping the latent sites of model *and* guide in
``poutine.scale(scale=λ)`` (as ``examples/dmm.py`` does), which scales
:math:`\\log p(z) - \\log q(z|x)` and nothing else. For λ < 1 this is not a
lower bound of :math:`\\log p(x)`; evaluation therefore always reports the
true ELBO (λ = 1) and the importance-sampled :math:`\\log p(x)`.

Schedules map training progress ``t`` (in epochs, fractional within an epoch)
to λ:

* :class:`ConstantKL` -- λ fixed (λ = 1 is standard training);
* :class:`LinearWarmup` -- λ rises linearly from ``start`` to 1 over
  ``warmup_epochs`` (Bowman et al. 2016; He et al. 2019 use ``start`` = 0.1
  over 10 epochs);
* :class:`CyclicalKL` -- Fu et al. (NAACL 2019, "Cyclical annealing schedule"):
  the training time is split into ``num_cycles`` cycles, in each λ rises
  linearly from 0 to 1 over the first ``ratio`` of the cycle and stays at 1.

:class:`FreeBitsELBO` is the free-bits objective of Kingma et al. (NeurIPS
2016, "Improved variational inference with inverse autoregressive flow"):
the KL of each latent dimension, averaged over the minibatch, is replaced by
:math:`\\max(\\epsilon, \\mathrm{KL}_d)`, so the optimiser gains nothing by
pushing a dimension's KL below ε nats.
"""

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

MIN_KL_WEIGHT = 1e-4
"""The smallest λ a schedule returns: ``poutine.scale`` needs a positive scale, so λ = 0 becomes 1e-4."""


class KLSchedule:
    """Base class: ``schedule(t)`` is the KL weight λ at training progress ``t`` epochs.

    Values are floored at :data:`MIN_KL_WEIGHT`.
    """

    def __call__(self, t):
        raise NotImplementedError


class ConstantKL(KLSchedule):
    """λ = ``weight`` throughout (1 is the ELBO itself)."""

    def __init__(self, weight=1.0):
        if not weight > 0:
            raise ValueError(f"kl weight must be > 0 (poutine.scale needs a positive scale), got {weight!r}")
        self.weight = float(weight)

    def __call__(self, t):
        return self.weight

    def __repr__(self):
        return f"ConstantKL({self.weight})"


class LinearWarmup(KLSchedule):
    """λ(t) = start + (1 - start) · min(1, t / warmup_epochs).

    :param float warmup_epochs: epochs until λ reaches 1 (> 0).
    :param float start: λ at t = 0, in [0, 1].
    """

    def __init__(self, warmup_epochs=10.0, start=0.1):
        if not warmup_epochs > 0:
            raise ValueError(f"warmup_epochs must be > 0, got {warmup_epochs!r}")
        if not 0 <= start <= 1:
            raise ValueError(f"start must be in [0, 1], got {start!r}")
        self.warmup_epochs, self.start = float(warmup_epochs), float(start)

    def __call__(self, t):
        return max(MIN_KL_WEIGHT, self.start + (1.0 - self.start) * min(1.0, t / self.warmup_epochs))

    def __repr__(self):
        return f"LinearWarmup(warmup_epochs={self.warmup_epochs}, start={self.start})"


class CyclicalKL(KLSchedule):
    """Cyclical annealing of Fu et al. 2019: ``num_cycles`` ramps from 0 to 1 over ``total_epochs``.

    With period :math:`P = T / M` and :math:`\\tau = (t \\bmod P) / P`,
    λ(t) = min(1, τ / R); after ``total_epochs`` λ stays 1.

    :param float total_epochs: T, the length of training the cycles cover.
    :param int num_cycles: M (Fu et al. use 4).
    :param float ratio: R, the fraction of each cycle spent increasing λ (0.5 in the paper).
    """

    def __init__(self, total_epochs, num_cycles=4, ratio=0.5):
        if not total_epochs > 0:
            raise ValueError(f"total_epochs must be > 0, got {total_epochs!r}")
        if int(num_cycles) != num_cycles or num_cycles < 1:
            raise ValueError(f"num_cycles must be a positive integer, got {num_cycles!r}")
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
        self.total_epochs, self.num_cycles, self.ratio = float(total_epochs), int(num_cycles), float(ratio)

    def __call__(self, t):
        if t >= self.total_epochs:
            return 1.0
        period = self.total_epochs / self.num_cycles
        tau = (t % period) / period
        return max(MIN_KL_WEIGHT, min(1.0, tau / self.ratio))

    def __repr__(self):
        return f"CyclicalKL(total_epochs={self.total_epochs}, num_cycles={self.num_cycles}, ratio={self.ratio})"


KL_SCHEDULES = ("constant", "linear", "cyclical")


def build_kl_schedule(name, epochs, weight=1.0, warmup_epochs=10.0, start=0.1, num_cycles=4, ratio=0.5):
    """The schedule called ``name`` (one of :data:`KL_SCHEDULES`) for a run of ``epochs`` epochs."""
    if name == "constant":
        return ConstantKL(weight)
    if name == "linear":
        return LinearWarmup(warmup_epochs, start)
    if name == "cyclical":
        return CyclicalKL(epochs, num_cycles, ratio)
    raise ValueError(f"kl schedule must be one of {list(KL_SCHEDULES)}, got {name!r}")


def _per_dimension_kl(q, p):
    """Analytic KL(q || p) per latent dimension, shape ``batch_shape + event_shape``."""
    while isinstance(q, torch.distributions.Independent):
        q = q.base_dist
    while isinstance(p, torch.distributions.Independent):
        p = p.base_dist
    return kl_divergence(q, p)


class FreeBitsELBO(ELBO):
    """Negative ELBO with free bits (Kingma et al. 2016): KL per dimension floored at ε nats.

    For each latent site the analytic KL of every latent dimension d is
    averaged over the examples of the minibatch (all batch dimensions) and
    replaced by :math:`\\max(\\epsilon, \\overline{\\mathrm{KL}}_d)`; the
    loss is

    .. math:: -\\sum_{\\text{obs}} \\log p(x \\mid z)
       + \\lambda\\, B \\sum_d \\max(\\epsilon, \\overline{\\mathrm{KL}}_d),

    with one reparameterized draw per particle for the reconstruction term,
    B the number of examples and λ the site's ``poutine.scale`` (so KL schedules
    compose with free bits). With ε = 0 this is the ELBO with analytic KL
    (:class:`pyro.infer.TraceMeanField_ELBO`'s value). The latent sites must
    have an analytic KL registered with ``torch.distributions.kl_divergence``
    (diagonal Normal guide and prior do).

    :param float free_bits: ε in nats per latent dimension (>= 0).
    """

    def __init__(self, free_bits=0.0, num_particles=1):
        if not free_bits >= 0:
            raise ValueError(f"free_bits must be >= 0 nats, got {free_bits!r}")
        super().__init__(num_particles=num_particles)
        self.free_bits = float(free_bits)

    def _get_trace(self, model, guide, args, kwargs):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        return model_trace, guide_trace

    def _particle_loss(self, model, guide, args, kwargs):
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        loss = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["is_observed"]:
                log_p = site["fn"].log_prob(site["value"])
                loss = loss - scale_and_mask(log_p, site["scale"], site["mask"]).sum()
            else:
                kl = _per_dimension_kl(guide_trace.nodes[name]["fn"], site["fn"])
                kl = kl.reshape(-1, kl.shape[-1]) if kl.dim() > 1 else kl.reshape(-1, 1)
                floored = kl.mean(0).clamp(min=self.free_bits).sum() * kl.shape[0]
                loss = loss + site["scale"] * floored
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The free-bits loss (nats, summed over the minibatch) as a differentiable tensor."""
        loss = 0.0
        for _ in range(self.num_particles):
            loss = loss + self._particle_loss(model, guide, args, kwargs)
        return loss / self.num_particles

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()
