"""The ELBO of reparameterized guides, with Trace_ELBO's values, gradients and checks."""

import contextlib
import contextvars

import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero, is_validation_enabled, scale_and_mask
from pyro.infer import ELBO
from pyro.infer.util import MultiFrameTensor, get_plate_stacks
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape, warn_if_nan
from torch.fx.experimental.proxy_tensor import get_proxy_mode

_CHECK_NAN = contextvars.ContextVar("pyrogen_check_nan", default=True)


@contextlib.contextmanager
def nan_check(enabled):
    """Within the block, whether ``differentiable_loss`` of pyrogen's ELBOs warns of a NaN loss.

    They warn always, as :class:`pyro.infer.Trace_ELBO` does. A caller that checks
    the loss itself turns it off: :meth:`loss` (on the float it returns) and
    :class:`~pyrogen.infer.TorchSVI`'s step (once per step, whatever computed the
    loss; on an accelerator only under validation, since the check reads the loss
    on the host).
    """
    token = _CHECK_NAN.set(bool(enabled))
    try:
        yield
    finally:
        _CHECK_NAN.reset(token)


def nan_checked():
    """Whether a NaN loss warns here (outside :func:`nan_check` ``(False)``)."""
    return _CHECK_NAN.get()


def warn_if_nan_loss(loss):
    """Pyro's "Encountered NaN: loss" warning (and its backward hook), as Trace_ELBO's ``differentiable_loss``
    gives it; skipped inside :func:`nan_check` ``(False)`` and while ``make_fx`` records the loss (a recorded
    graph has no host read)."""
    if _CHECK_NAN.get() and get_proxy_mode() is None and not torch.compiler.is_compiling():
        warn_if_nan(loss, "loss")
    return loss


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


class SiteRecorder(Messenger):
    """``poutine.trace`` reduced to what an ELBO reads, with ``poutine.replay`` inside it when given sites.

    Entered around a model or guide, it records every sample site's message
    (a shallow copy, taken where :class:`~pyro.poutine.trace_messenger.TraceMessenger`
    takes it) in :attr:`nodes`, a dict by site name in execution order, and
    raises Pyro's ``Multiple sample sites named`` error. With ``replay`` (the
    guide's :attr:`nodes`) each unobserved site found there takes the guide's
    value and ``infer`` dict, as ``poutine.replay`` does (and a guide site that
    was observed is Pyro's ``must be sampled in trace`` error). It leaves out
    what no ELBO here reads: param sites, the ``_INPUT``/``_RETURN`` nodes, the
    graph structure and one handler object per call. So ``recorder.nodes`` can
    stand in for ``trace.nodes`` of ``poutine.trace``.
    """

    def __init__(self, replay=None):
        super().__init__()
        self.replay = replay
        self.nodes = {}

    def __enter__(self):
        self.nodes = {}
        return super().__enter__()

    def _pyro_sample(self, msg):
        if self.replay is None or msg["is_observed"]:
            return
        guide_msg = self.replay.get(msg["name"])
        if guide_msg is not None:
            if guide_msg["is_observed"]:
                raise RuntimeError(f"site {msg['name']} must be sampled in trace")
            msg["done"] = True
            msg["value"] = guide_msg["value"]
            msg["infer"] = guide_msg["infer"]

    def _pyro_post_sample(self, msg):
        if msg["infer"].get("_do_not_trace"):
            assert msg["infer"].get("is_auxiliary")
            assert not msg["is_observed"]
            return
        if msg["name"] in self.nodes:
            raise RuntimeError(f"Multiple sample sites named '{msg['name']}'")
        self.nodes[msg["name"]] = msg.copy()


def record_pair(model, guide, args, kwargs):
    """:func:`trace_pair` without validation, recorded by :class:`SiteRecorder`: ``(model_sites, guide_sites)``.

    Each has ``.nodes`` like a :class:`~pyro.poutine.Trace` of sample sites, holding
    what ``trace_pair``'s traces hold at those sites, on the same random draws.
    """
    with SiteRecorder() as guide_sites:
        guide(*args, **kwargs)
    with SiteRecorder(replay=guide_sites.nodes) as model_sites:
        model(*args, **kwargs)
    return model_sites, guide_sites


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
    "Encountered NaN" warnings naming the site. A NaN loss warns always, as
    with Trace_ELBO (:class:`~pyrogen.infer.TorchSVI`'s step warns once per step
    instead, and for a loss on an accelerator only under validation, since the
    check reads the loss on the host; the training loop reads it every
    ``log_every`` steps and stops on a NaN). A reparameterized site whose
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
    :param bool strict_enumeration_warning: accepted for Trace_ELBO's signature,
        which also ignores it (only :class:`pyro.infer.TraceEnum_ELBO` reads it).
    :param bool ignore_jit_warnings: accepted for Trace_ELBO's signature; this
        estimator is not JIT-compiled (see :class:`~pyrogen.infer.TorchSVI`'s ``compile``).
    :param dict jit_options: likewise accepted and unused.
    :param bool retain_graph: passed to ``backward`` by :meth:`loss_and_grads`, as
        Trace_ELBO passes it.
    :param float tail_adaptive_beta: accepted for :class:`pyro.infer.ELBO`'s signature, unused.

    Every keyword of :class:`pyro.infer.Trace_ELBO` is accepted, so the class
    swaps into code written for it.
    """

    def __init__(
        self,
        num_particles=1,
        max_plate_nesting=float("inf"),
        max_iarange_nesting=None,
        vectorize_particles=False,
        strict_enumeration_warning=True,
        ignore_jit_warnings=False,
        jit_options=None,
        retain_graph=None,
        tail_adaptive_beta=-1.0,
    ):
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            max_iarange_nesting=max_iarange_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
            ignore_jit_warnings=ignore_jit_warnings,
            jit_options=jit_options,
            retain_graph=retain_graph,
            tail_adaptive_beta=tail_adaptive_beta,
        )

    def _get_trace(self, model, guide, args, kwargs):
        """One particle: the guide's trace and the model's trace replayed against it.

        Without validation the sites are recorded by :class:`SiteRecorder`, which
        keeps only what the loss reads."""
        if not is_validation_enabled():
            return record_pair(model, guide, args, kwargs)
        model_trace, guide_trace = trace_pair(model, guide, args, kwargs, self.max_plate_nesting)
        check_if_enumerated(guide_trace)
        return model_trace, guide_trace

    def _particle_elbo(self, model_trace, guide_trace, elbo=None, skip=frozenset()):
        """The ELBO of one (possibly vectorized) particle, with Trace_ELBO's surrogate terms if needed.

        ``elbo`` is a term already computed (a closed-form KL; None: none) and ``skip`` the latent
        sites it covers, whose log-densities are then left out of the model's and the guide's sums.
        """
        validate = is_validation_enabled()
        # The sums start from the first term, not from 0.0: 0.0 + t is t to the bit (the sign of a
        # zero aside), and so is its gradient, without an operation and an autograd node per sum.
        surrogate = 0.0
        for name, site in scored_sites(model_trace):
            if name in skip:
                if validate:  # for the site-shape check only
                    site["log_prob"] = site_log_prob(site)
                continue
            site["log_prob"] = site_log_prob(site)
            if validate:
                warn_if_nan(site["log_prob"], f"log_prob at site '{name}'")
            log_p = site["log_prob"].sum()
            elbo = log_p if elbo is None else elbo + log_p
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
            elbo = 0.0 - log_q if elbo is None else elbo - log_q
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
        if elbo is None:
            elbo = 0.0
        return elbo + surrogate if torch.is_tensor(surrogate) else elbo

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The negative ELBO (nats) as a tensor that gradients flow through."""
        elbo = None
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle = self._particle_elbo(model_trace, guide_trace)
            elbo = particle if elbo is None else elbo + particle  # 0.0 + t is t: no operation for it
        loss = -elbo if self.num_particles == 1 else -elbo / self.num_particles  # t / 1 is t
        if not isinstance(loss, torch.Tensor):
            loss = torch.tensor(loss)
        return warn_if_nan_loss(loss)

    def loss(self, model, guide, *args, **kwargs):
        """The negative ELBO (nats) as a float, warning when it is NaN.

        As :meth:`pyro.infer.Trace_ELBO.loss`, it runs the model and guide with
        autograd as the caller has it (not under ``torch.no_grad``), so a model
        that calls :func:`torch.autograd.grad` works; the graph is freed on return.
        """
        with nan_check(False):
            loss = self.differentiable_loss(model, guide, *args, **kwargs)
        return warn_if_nan(loss.item(), "loss")

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The negative ELBO (nats) as a float, warning when it is NaN; gradients accumulate in the
        parameters (``backward(retain_graph=self.retain_graph)``)."""
        with nan_check(False):
            loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return warn_if_nan(loss.item(), "loss")


def _log_r(model_trace, guide_trace):
    """Detached log p - log q of every model site, by plate stack (Trace_ELBO's ``_compute_log_r``)."""
    log_r = MultiFrameTensor()
    stacks = get_plate_stacks(model_trace)  # subsample sites left out, as Trace_ELBO's pruned traces do
    for name, site in scored_sites(model_trace):
        if "log_prob" not in site:  # a site of a closed-form KL has none
            continue
        term = site["log_prob"]
        if not site["is_observed"]:
            term = term - guide_trace.nodes[name]["log_prob"]
        log_r.add((stacks[name], term.detach()))
    return log_r
