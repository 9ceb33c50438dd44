"""The ELBO of reparameterized guides, with Trace_ELBO's values, gradients and checks."""

import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero, is_validation_enabled, scale_and_mask
from pyro.infer import ELBO
from pyro.infer.util import MultiFrameTensor, get_plate_stacks
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape, warn_if_nan


def trace_pair(model, guide, args, kwargs, max_plate_nesting=float("inf")):
    """Run the guide, then the model replayed against it: ``(model_trace, guide_trace)``.

    Under Pyro's validation the pair is checked as :class:`pyro.infer.Trace_ELBO`
    checks it (``pyro.util.check_model_guide_match``).
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    if is_validation_enabled():
        check_model_guide_match(model_trace, guide_trace, max_plate_nesting)
    return model_trace, guide_trace


def scored_sites(trace, observed=True):
    """``(name, site)`` of the trace's sample sites that carry a log-density.

    Subsample sites of plates are left out, and so are observed sites unless ``observed``.
    """
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site) and (observed or not site["is_observed"]):
            yield name, site


def site_log_prob(site):
    """A site's log-density with its scale and mask applied, in the shape of its plates."""
    log_prob = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_prob, site["scale"], site["mask"])


def check_reparameterized(name, site):
    """Refuse a latent guide site without pathwise gradients, naming it (a ``ValueError``)."""
    if not site["fn"].has_rsample:
        raise ValueError(
            f"guide site {name!r} draws from {type(site['fn']).__name__}, which is not "
            "reparameterized; ReparamTrace_ELBO needs pathwise gradients. Use "
            "pyro.infer.Trace_ELBO (score-function gradients) or a reparameterized family."
        )


def _check_shapes(model_trace, guide_trace, max_plate_nesting):
    """Pyro's site-shape checks (``pyro.util.check_site_shape``), as ``get_importance_trace`` runs them."""
    for trace in (model_trace, guide_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                check_site_shape(site, max_plate_nesting)


class ReparamTrace_ELBO(ELBO):
    """Monte Carlo ELBO for guides whose every sample site is reparameterized.

    For each of ``num_particles`` draws :math:`z \\sim q_\\phi(z \\mid x)`
    (reparameterized, :math:`z = g_\\phi(\\epsilon, x)`), the estimate is

    .. math:: \\hat{\\mathcal{L}} = \\log p_\\theta(x, z) - \\log q_\\phi(z \\mid x),

    summed over the sites of the model and the guide with their scales and
    masks, and averaged over the particles; the loss is :math:`-\\hat{\\mathcal{L}}`
    in nats (Kingma and Welling 2014, the SGVB estimator of equation 6).

    Its value and gradient are exactly those of :class:`pyro.infer.Trace_ELBO`
    on the same random draws, for sequential and vectorized particles
    (``vectorize_particles=True`` adds the outer plate
    ``"num_particles_vectorized"`` at dimension ``-max_plate_nesting``, as
    Pyro's :class:`~pyro.infer.ELBO` does, guessing ``max_plate_nesting`` from
    one run when it is not given). Under Pyro's validation it runs
    Trace_ELBO's checks: ``check_model_guide_match``, the site-shape check
    (a batched site outside a plate without ``.to_event`` is Pyro's
    ``ValueError``), the warning for guide sites marked for enumeration, and
    "Encountered NaN" warnings naming the site (Trace_ELBO warns of a NaN loss
    also with validation off; this estimator only under validation, since the
    check reads the loss on the host, which :class:`~pyrogen.infer.TorchSVI`'s
    hot loop avoids). A reparameterized site whose
    distribution still has a score-function part (Pyro's
    :class:`~pyro.distributions.Rejector`, e.g. ``ShapeAugmentedGamma``) gets
    Trace_ELBO's surrogate term, so its gradient is unbiased and equal to
    Trace_ELBO's. It differs from Trace_ELBO in one way, by refusing:

    - a guide site that is not reparameterized (``has_rsample=False``) is a
      ``ValueError`` naming the site, not a silently high-variance gradient:
      use :class:`pyro.infer.Trace_ELBO` there.

    It returns the loss as one tensor (no separate float bookkeeping) and
    backpropagates once over all particles.

    :param int num_particles: Monte Carlo draws L per step.
    :param int max_plate_nesting: bound on the number of nested plates (only
        needed with ``vectorize_particles``; guessed when infinite).
    :param bool vectorize_particles: draw the particles in one vectorized run.
    """

    def __init__(self, num_particles=1, max_plate_nesting=float("inf"), vectorize_particles=False):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles)

    def _get_trace(self, model, guide, args, kwargs):
        """One particle: the guide's trace and the model's trace replayed against it."""
        model_trace, guide_trace = trace_pair(model, guide, args, kwargs, self.max_plate_nesting)
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        return model_trace, guide_trace

    def _particle_elbo(self, model_trace, guide_trace, elbo=0.0, skip=frozenset()):
        """The ELBO of one (possibly vectorized) particle, with Trace_ELBO's surrogate terms if needed.

        ``elbo`` is a term already computed (a closed-form KL) and ``skip`` the latent sites it covers,
        whose log-densities are then left out of the model's and the guide's sums.
        """
        validate = is_validation_enabled()
        surrogate = 0.0
        for name, site in scored_sites(model_trace):
            if name in skip:
                if validate:  # for the site-shape check only
                    site["log_prob"] = site_log_prob(site)
                continue
            site["log_prob"] = site_log_prob(site)
            if validate:
                warn_if_nan(site["log_prob"], f"log_prob at site '{name}'")
            elbo = elbo + site["log_prob"].sum()
        scored = []
        for name, site in scored_sites(guide_trace):
            if name in skip:
                if validate:  # for the site-shape check only
                    site["log_prob"] = site_log_prob(site)
                continue
            fn = site["fn"]
            if not site["is_observed"]:
                check_reparameterized(name, site)
            parts = fn.score_parts(site["value"], *site["args"], **site["kwargs"])
            parts = parts.scale_and_mask(site["scale"], site["mask"])
            site["log_prob"] = parts.log_prob
            if validate:
                warn_if_nan(site["log_prob"], f"log_prob at site '{name}'")
            log_q = parts.log_prob.sum()
            if parts.entropy_term is not parts.log_prob:  # only observed guide sites, e.g. a factor
                # Trace_ELBO's value is log q, its gradient that of the entropy term (zero when
                # has_rsample=False).
                entropy = 0.0 if is_identically_zero(parts.entropy_term) else parts.entropy_term.sum()
                log_q = log_q.detach() + (entropy - entropy.detach() if torch.is_tensor(entropy) else 0.0)
            elbo = elbo - log_q
            if not is_identically_zero(parts.score_function):
                scored.append((site, parts))
        if validate:
            _check_shapes(model_trace, guide_trace, self.max_plate_nesting)
        if scored:
            # Trace_ELBO's surrogate (pyro.infer.trace_elbo): the score-function term weighted by the
            # downstream log p - log q, Rao-Blackwellized over plates; it adds zero to the value.
            log_r = _log_r(model_trace, guide_trace)
            for site, parts in scored:
                term = (log_r.sum_to(site["cond_indep_stack"]) * parts.score_function).sum()
                surrogate = surrogate + term - term.detach()
        return elbo + surrogate

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The negative ELBO (nats) as a tensor that gradients flow through."""
        elbo = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            elbo = elbo + self._particle_elbo(model_trace, guide_trace)
        loss = -elbo / self.num_particles
        if not isinstance(loss, torch.Tensor):
            loss = torch.tensor(loss)
        if is_validation_enabled():  # a host synchronisation: not in TorchSVI's unvalidated hot loop
            warn_if_nan(loss, "loss")
        return loss

    def loss(self, model, guide, *args, **kwargs):
        """The negative ELBO (nats) as a float, without gradients."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The negative ELBO (nats) as a float; gradients accumulate in the parameters."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


def _log_r(model_trace, guide_trace):
    """Detached log p - log q of every model site, by plate stack (Trace_ELBO's ``_compute_log_r``)."""
    log_r = MultiFrameTensor()
    model_trace, guide_trace = prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)
    stacks = get_plate_stacks(model_trace)
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and "log_prob" in site:  # a site of a closed-form KL has none
            term = site["log_prob"]
            if not site["is_observed"]:
                term = term - guide_trace.nodes[name]["log_prob"]
            log_r.add((stacks[name], term.detach()))
    return log_r
