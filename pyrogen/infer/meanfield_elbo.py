"""TraceMeanField_ELBO's loss computing only what it reads: the default objective's hot path."""

import torch
from pyro.distributions.util import is_validation_enabled, scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyrogen.infer.reparam_elbo import record_pair, scored_sites, site_log_prob


def _entropy_term(site):
    """The scaled and masked entropy term of a guide site's score parts (Pyro's ``compute_score_parts``)."""
    parts = site["fn"].score_parts(site["value"], *site["args"], **site["kwargs"])
    return parts.scale_and_mask(site["scale"], site["mask"]).entropy_term


def _particle_loss(model_trace, guide_trace):
    """Minus the ELBO of one particle: ``TraceMeanField_ELBO._differentiable_loss_particle``'s surrogate.

    The same terms in the same order, with the same operations: the observed
    sites' scaled log-densities, minus each latent site's analytic
    KL(q || p) (scaled and masked by the guide site's ``poutine.scale`` and mask),
    or, where no KL is registered, the Monte Carlo term
    :math:`\\log p(z) - \\log q(z)` at the drawn z; minus the entropy term of
    auxiliary guide sites. What Pyro computes and this loss never reads is
    skipped: the log-density of each latent site under the prior and under the
    guide (both unused when the KL is analytic), the subsample-free copies of
    both traces, and the host read of the value.

    Pyro sums the ELBO from 0 and negates it at the end; here the loss itself
    is summed, each term added where Pyro subtracts it and the other way round.
    With rounding to nearest, :math:`\\mathrm{fl}(-a - t) = -\\mathrm{fl}(a + t)`,
    so every partial sum is minus Pyro's to the bit (the sign of a zero aside),
    and so are the gradients (each term's is ±1 times the same incoming
    gradient); it saves the ``0 - t`` and the final negation, two nodes of
    the autograd graph.
    """
    loss = None

    def add(term):
        return term if loss is None else loss + term

    def subtract(term):
        return -term if loss is None else loss - term

    for name, model_site in scored_sites(model_trace):
        if model_site["is_observed"]:
            loss = subtract(site_log_prob(model_site).sum())
            continue
        guide_site = guide_trace.nodes[name]
        try:
            kl_qp = kl_divergence(guide_site["fn"], model_site["fn"])
            kl_qp = scale_and_mask(kl_qp, scale=guide_site["scale"], mask=guide_site["mask"])
            if torch.is_tensor(kl_qp):
                kl_qp_sum = kl_qp.sum()
            else:
                kl_qp_sum = kl_qp * torch.Size(guide_site["fn"].batch_shape).numel()
            loss = add(kl_qp_sum)
        except NotImplementedError:
            loss = subtract(site_log_prob(model_site).sum())
            loss = add(_entropy_term(guide_site).sum())
    for name, guide_site in scored_sites(guide_trace):
        if name not in model_trace.nodes:
            assert guide_site["infer"].get("is_auxiliary")
            loss = add(_entropy_term(guide_site).sum())
    return 0 if loss is None else loss


def meanfield_differentiable_loss(elbo, model, guide, *args, **kwargs):
    """``elbo.differentiable_loss(model, guide, *args, **kwargs)`` of a :class:`pyro.infer.TraceMeanField_ELBO`.

    Under Pyro's validation, or with ``vectorize_particles``, it is Pyro's own
    method (every check and warning included). Otherwise the guide runs, then
    the model replayed against it, as in Pyro, both recorded by
    :class:`~pyrogen.infer.reparam_elbo.SiteRecorder` (the sample sites, no more),
    and only what the loss reads is computed (:func:`_particle_loss`). The value
    and the gradients are those of Pyro's method on the same draws, to the bit:
    Pyro returns ``loss + (surrogate - surrogate.item())`` with ``loss`` the
    float of ``surrogate``, which for one particle is ``surrogate``'s value (an
    infinite loss excepted, which Pyro's arithmetic turns into NaN); for
    ``num_particles`` > 1 Pyro's value is the float64 mean of the particles'
    floats rounded to the tensor's dtype, which is reproduced on the device.
    Without validation the host reads of ``surrogate.item()`` and of the
    "Encountered NaN" check are left out, so the step never waits for the device.

    :returns: the negative ELBO (nats), a tensor with gradients.
    """
    if is_validation_enabled() or elbo.vectorize_particles:
        return TraceMeanField_ELBO.differentiable_loss(elbo, model, guide, *args, **kwargs)
    n = elbo.num_particles
    if n == 1:  # Pyro's 0.0 + particle / 1 is the particle, to the bit (and so is its gradient)
        surrogate = _particle_loss(*record_pair(model, guide, args, kwargs))
    else:
        surrogate, value = 0.0, 0.0
        for _ in range(n):
            particle = _particle_loss(*record_pair(model, guide, args, kwargs))
            surrogate = surrogate + particle / n
            value = value + particle.detach().double() / n
    if not torch.is_tensor(surrogate):  # no site contributed: Pyro returns a 0-d tensor of its float
        return torch.tensor(float(surrogate))
    if n == 1:
        return surrogate
    return value.to(surrogate.dtype) + (surrogate - surrogate.detach())


class MeanField_ELBO(TraceMeanField_ELBO):
    """:class:`pyro.infer.TraceMeanField_ELBO` whose ``differentiable_loss`` computes only what it reads.

    The ELBO with each latent site's KL(q || p) in closed form where one is
    registered (Kingma and Welling 2014, appendix B, for diagonal Gaussians):

    .. math:: \\mathcal{L} = \\sum_{\\text{obs}} \\log p_\\theta(x \\mid z)
       - \\sum_{\\text{latent}} \\mathrm{KL}(q_\\phi(z \\mid x) \\,\\|\\, p(z)),
       \\quad z \\sim q_\\phi(z \\mid x),

    in nats, the loss being :math:`-\\mathcal{L}` averaged over the particles.
    Values and gradients equal Pyro's on the same draws (see
    :func:`meanfield_differentiable_loss`); under Pyro's validation every
    check of Pyro's method runs. :class:`~pyrogen.infer.TorchSVI` uses this
    path for a plain ``TraceMeanField_ELBO`` too, so the trainer's default
    objective (``--elbo auto``, analytic KL) takes it.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The negative ELBO (nats) as a tensor that gradients flow through."""
        return meanfield_differentiable_loss(self, model, guide, *args, **kwargs)
