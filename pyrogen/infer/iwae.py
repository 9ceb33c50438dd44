"""The importance-weighted bound of each example, vectorized over particles, with optional DReG gradients.

Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders" (ICLR
2016); Tucker, Lawson, Gu and Maddison, "Doubly Reparameterized Gradient
Estimators for Monte Carlo Objectives" (ICLR 2019).

For one example x and K draws :math:`z_k \\sim q_\\phi(z \\mid x)` with
weights :math:`w_k = p_\\theta(x, z_k) / q_\\phi(z_k \\mid x)`,

.. math:: \\mathcal{L}_K(x) = \\mathbb{E}\\Big[\\log \\frac{1}{K} \\sum_{k=1}^K w_k\\Big]
   \\le \\mathcal{L}_{K+1}(x) \\le \\log p_\\theta(x),

with :math:`\\mathcal{L}_1` the ELBO. A minibatch of B examples out of N
(``pyro.plate("data", N, subsample_size=B)``) estimates
:math:`\\sum_{n=1}^N \\mathcal{L}_K(x_n)` by :math:`\\frac{N}{B}\\sum_b \\hat{\\mathcal{L}}_K(x_b)`:
the log-mean-exp is taken per example, and the subsample scale multiplies
the per-example bound afterwards, as :class:`pyro.infer.Trace_ELBO` multiplies
the per-example ELBO.

:class:`pyro.infer.RenyiELBO` with ``alpha=0`` sums the log-weights only over
the plates that not every site shares (``pyro.infer.util.get_dependent_plate_dims``,
Pyro 1.4 and later) and takes the log-mean-exp per element of the plates that
every site shares. So when every sample site is inside the data plate and the
plate does not subsample, its bound is this one, draw for draw. It differs in
two cases: a latent outside the data plate (a global latent) makes the data
plate a dependent plate, and RenyiELBO then bounds the whole minibatch as one
latent variable, :math:`\\mathbb{E}\\log\\frac{1}{K}\\sum_k \\prod_b w_{k,b}`,
looser by a margin that grows with B (pyro-ppl/pyro issue 3104), where
:class:`IWAE_ELBO` refuses; and a subsampled data plate, whose N/B scale
RenyiELBO applies to the log-weights inside the log-mean-exp (estimating
:math:`\\mathbb{E}\\log\\frac{1}{K}\\sum_k w_k^{N/B}`), where :class:`IWAE_ELBO`
multiplies the per-example bound by it.
"""

import math
import warnings

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import is_validation_enabled, scale_and_mask
from pyro.infer import ELBO
from pyro.poutine.messenger import Messenger
from pyro.util import check_model_guide_match, warn_if_nan
from torch import nn
from torch.fx.experimental.proxy_tensor import get_proxy_mode

from pyrogen.checks import check_count
from pyrogen.infer.reparam_elbo import ReparamTrace_ELBO, nan_check, scored_sites, warn_if_nan_loss
from pyrogen.infer.torch_svi import module_local

PARTICLE_PLATE = "num_particles_vectorized"
"""Name of the outer plate over the K particles (the name Pyro's ``vectorize_particles`` uses)."""


class _DetachParams(Messenger):
    """Detaches the value of every ``pyro.param`` statement: :math:`\\mathrm{stop}(\\phi)` for param-store
    parameters."""

    def _pyro_post_param(self, msg):
        if isinstance(msg["value"], torch.Tensor):
            msg["value"] = msg["value"].detach()


class _Call(nn.Module):
    def __init__(self, owner, fn):
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _owner(fn):
    """The :class:`torch.nn.Module` whose method ``fn`` is (a bound method or ``module_local``'s partial)."""
    owner = getattr(fn, "__self__", None)
    if owner is None and getattr(fn, "args", None):
        owner = fn.args[0]
    return owner if isinstance(owner, nn.Module) else None


def stop_parameters(fn):
    """``fn`` run with all its parameters detached: the module's that owns it and those of ``pyro.param``.

    Values are unchanged; no gradient reaches a parameter through the result,
    while gradients still flow through the tensors passed in (or replayed).
    """
    owner = _owner(fn)
    fn = module_local(fn)  # no pyro.param statements for a module's plain parameters

    def stopped(*args, **kwargs):
        with _DetachParams(), warnings.catch_warnings():
            # a PyroModule with PyroParams still registers its plain submodules, now detached
            warnings.filterwarnings("ignore", message=".*not registered in the param store")
            if owner is None:
                return fn(*args, **kwargs)
            params = {"owner." + name: p.detach() for name, p in owner.named_parameters()}
            return torch.func.functional_call(_Call(owner, fn), params, args, kwargs)

    return stopped


def _detached_trace(trace):
    """A copy of ``trace`` whose sample values are detached from the autograd graph."""
    out = trace.copy()
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and isinstance(site["value"], torch.Tensor):
            out.nodes[name] = dict(site, value=site["value"].detach())
    return out


class _Weights:
    """Holds the normalized weights :math:`\\tilde w` ``(K, B)`` once the forward pass has them."""

    weights = None


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by the holder's weights, reshaped to
    ``shape`` (``-1`` marks the particle dimension, ``-2`` the examples', 1 elsewhere)."""

    @staticmethod
    def forward(ctx, value, holder, shape):
        ctx.holder, ctx.shape = holder, shape
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        w = ctx.holder.weights
        shape = [w.shape[0] if d == -1 else w.shape[1] if d == -2 else 1 for d in ctx.shape]
        # the particle dimension comes before the examples' in every site, so w's order is kept
        return grad * w.reshape(shape).to(grad.dtype), None, None


class IWAE_ELBO(ELBO):
    """Importance-weighted bound :math:`\\mathcal{L}_K` per example of ``pyro.plate("data")``.

    The model and the guide run once, vectorized over the K particles by an
    outer plate (``"num_particles_vectorized"`` at dimension
    ``-(max_plate_nesting + 1)``), so their sites must broadcast over an extra
    leftmost batch dimension, as for Pyro's ``vectorize_particles``. The
    log-weight of each particle and example sums the log-densities of every
    site of the model minus every latent site of the guide (with their
    scales, other than the data plate's subsample scale, and masks); it has shape
    ``(K, B)``. The bound of each example is ``logsumexp`` over K minus
    :math:`\\log K`; the loss is minus their sum (times N/B when subsampled),
    in nats per batch. Every sample site must be inside the plate named
    ``data_plate`` (``"data"`` by default: pass the name of your plate over the
    examples); a latent shared by all examples has no per-example bound
    (use :class:`pyro.infer.RenyiELBO` with ``alpha=0`` for a global latent).

    Gradients. The default is the IWAE gradient of the bound,
    :math:`\\sum_k \\tilde w_k \\nabla \\log w_k`, with normalized weights
    :math:`\\tilde w_k = w_k / \\sum_j w_j` and pathwise gradients through the
    guide's draws. With ``dreg=True`` the guide's parameters get the doubly
    reparameterized gradient of Tucker et al. (equation 7),

    .. math:: \\nabla_\\phi = \\sum_k \\tilde w_k^2 \\,
       \\frac{\\partial \\log w_k}{\\partial z_k} \\frac{\\partial z_k}{\\partial \\phi},
       \\qquad \\log w_k = \\log p_\\theta(x, z_k) - \\log q_{\\mathrm{stop}(\\phi)}(z_k \\mid x),

    unbiased for the same expectation, whose signal-to-noise ratio does not
    fall like :math:`1/\\sqrt{K}` (Rainforth et al. 2018); the model's
    parameters keep the IWAE gradient exactly. It is computed from the
    surrogate :math:`\\sum_k \\mathrm{stop}(\\tilde w_k^2)\\log w_k +
    \\mathrm{stop}(\\tilde w_k - \\tilde w_k^2)\\log p_\\theta(x, \\mathrm{stop}(z_k))`,
    whose value is replaced by the bound's. In eager mode the model runs once
    (:meth:`_dreg_one_pass`: the second term's gradients come from scaling each particle's
    gradient through the draws in the backward pass); a ``make_fx`` recording runs it a
    second time on the detached draws. The guide runs once more (with its parameters
    stopped, replayed on the draws, so a hierarchical guide :math:`q(z_1|x)q(z_2|z_1)`
    keeps every pathwise dependence). The parameters stopped are those of the
    :class:`torch.nn.Module` that owns the guide (when the guide is its method) and every
    ``pyro.param``. With K = 1 it is the "sticking the landing" gradient of the
    ELBO (Roeder, Wu and Duvenaud 2017). Guides must be reparameterized.

    :param int num_particles: K, draws per example.
    :param int max_plate_nesting: plates of the model (guessed by running the
        pair once when omitted); the particle plate goes to their left.
    :param bool dreg: the doubly reparameterized guide gradient.
    :param str data_plate: name of the plate whose elements each get their own bound.
    """

    one_pass = True
    """DReG: one pass of the model with a per-particle gradient scale (eager), instead of two
    (the second on the detached draws); the same gradients. False forces the two passes."""

    def __init__(self, num_particles=5, max_plate_nesting=float("inf"), dreg=False, data_plate="data"):
        num_particles = check_count(num_particles, "num_particles")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=False)
        self.dreg = dreg
        self.data_plate = data_plate

    def _particles(self, fn):
        return pyro.plate(PARTICLE_PLATE, self.num_particles, dim=-(self.max_plate_nesting + 1))(fn)

    def _get_trace(self, model, guide, args, kwargs):
        """The guide's trace and the model's replayed against it, vectorized over the particles."""
        guide_trace = poutine.trace(self._particles(guide)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(self._particles(model), trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting + 1)
        return model_trace, guide_trace

    def _per_example(self, trace, observed):
        """Sum of the trace's site log-densities per particle and example, ``(K|1, B|1)``, and the plate scale."""
        depth = self.max_plate_nesting + 1
        total, plate_scale = 0.0, None
        for name, site in scored_sites(trace, observed=observed):
            frames = [f for f in site["cond_indep_stack"] if f.name == self.data_plate]
            if not frames or frames[0].dim is None:
                plates = [f.name for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE]
                raise ValueError(
                    f"IWAE_ELBO bounds each element of pyro.plate({self.data_plate!r}) separately, but site "
                    f"{name!r} is not inside that plate (its plates: {plates}); name the plate over the examples "
                    f"with IWAE_ELBO(data_plate=...), or, for a latent shared by all examples (no per-example "
                    "bound), use pyro.infer.RenyiELBO(alpha=0)"
                )
            frame = frames[0]
            scale = frame.full_size / frame.size if frame.full_size is not None else 1.0
            plate_scale = scale
            log_prob = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
            log_prob = scale_and_mask(log_prob, site["scale"] / scale, site["mask"])
            if not isinstance(log_prob, torch.Tensor):
                log_prob = torch.as_tensor(log_prob)
            if log_prob.dim() > depth:
                raise ValueError(
                    f"site {name!r}: log_prob has shape {tuple(log_prob.shape)}, more batch "
                    f"dimensions than max_plate_nesting + 1 = {depth}"
                )
            log_prob = log_prob.reshape((1,) * (depth - log_prob.dim()) + log_prob.shape)
            data_dim = depth + frame.dim
            keep = log_prob.shape[0], log_prob.shape[data_dim]
            others = [d for d in range(1, depth) if d != data_dim]
            if others:
                log_prob = log_prob.sum(others)
            total = total + log_prob.reshape(keep)
        return total, plate_scale

    def _check_reparameterized(self, guide_trace):
        for name, site in scored_sites(guide_trace, observed=False):
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"guide site {name!r} draws from {type(site['fn']).__name__}, which is not "
                    "reparameterized; IWAE_ELBO's gradients are pathwise. Use "
                    "pyro.infer.RenyiELBO(alpha=0) (score-function terms) or a reparameterized family."
                )

    def _prepare(self, model, guide, args, kwargs):
        if self.max_plate_nesting == float("inf"):
            # the guess runs the pair once; the caller's random stream is left where it was
            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=devices):
                self._guess_max_plate_nesting(model, guide, args, kwargs)

    def log_weights(self, model, guide, *args, **kwargs):
        """Log-weights :math:`\\log w_{k,b}` of one vectorized run, shape ``(K, B)``, nats, and the data
        plate's scale N/B.

        Gradients flow through them as in the plain IWAE estimator.
        """
        self._prepare(model, guide, args, kwargs)
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        if torch.is_grad_enabled():
            self._check_reparameterized(guide_trace)
        log_p, scale = self._per_example(model_trace, observed=True)
        log_q, _ = self._per_example(guide_trace, observed=False)
        return log_p - log_q, scale

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Minus the sum over the batch of the per-example bounds (nats), a scalar that gradients flow through."""
        if not self.dreg or not torch.is_grad_enabled():
            log_w, scale = self.log_weights(model, guide, *args, **kwargs)
            bound = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
            return warn_if_nan_loss(-(bound * scale).sum())
        mode = get_proxy_mode()
        if mode is not None and not getattr(mode, "pre_dispatch", False):
            raise NotImplementedError(
                "IWAE_ELBO(dreg=True) is being recorded by make_fx without pre_dispatch (as CompiledLoss "
                "does), which records .detach() as an alias: every stop-gradient of DReG would vanish and the "
                "guide would silently get the plain IWAE gradient. Train DReG without compile"
            )
        self._prepare(model, guide, args, kwargs)
        particles_model, particles_guide = self._particles(model), self._particles(guide)
        guide_trace = poutine.trace(particles_guide).get_trace(*args, **kwargs)
        self._check_reparameterized(guide_trace)
        # log q_{stop(phi)}(z_k | x): the guide replayed on the draws with its parameters detached
        stopped_trace = poutine.trace(
            poutine.replay(self._particles(stop_parameters(guide)), trace=guide_trace)
        ).get_trace(*args, **kwargs)
        if mode is None and self.one_pass:
            loss = self._dreg_one_pass(particles_model, guide_trace, stopped_trace, args, kwargs)
            if loss is not None:
                return warn_if_nan_loss(loss)
        model_trace = poutine.trace(poutine.replay(particles_model, trace=guide_trace)).get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting + 1)
        # log p_theta(x, stop(z_k)): the model's gradient without a path to the guide
        detached_model_trace = poutine.trace(
            poutine.replay(particles_model, trace=_detached_trace(guide_trace))
        ).get_trace(*args, **kwargs)
        log_p, scale = self._per_example(model_trace, observed=True)
        log_q, _ = self._per_example(stopped_trace, observed=False)
        log_p_detached_z, _ = self._per_example(detached_model_trace, observed=True)
        log_w = log_p - log_q
        weights = torch.softmax(log_w.detach(), 0)
        surrogate = (weights**2 * log_w + (weights - weights**2) * log_p_detached_z).sum(0) * scale
        bound = (torch.logsumexp(log_w.detach(), 0) - math.log(log_w.shape[0])) * scale
        total = surrogate.sum()
        return warn_if_nan_loss(-(bound.sum() + total - total.detach()))

    def _dreg_one_pass(self, particles_model, guide_trace, stopped_trace, args, kwargs):
        """DReG with one pass of the model: the surrogate
        :math:`\\sum_k \\mathrm{stop}(\\tilde w_k) \\log p_\\theta(x, h(z_k))
        - \\mathrm{stop}(\\tilde w_k^2) \\log q_{\\mathrm{stop}(\\phi)}(z_k \\mid x)`,
        where :math:`h` is the identity whose backward multiplies the gradient of particle k by
        :math:`\\tilde w_k` (known once the weights are). The model's parameters get
        :math:`\\sum_k \\tilde w_k \\nabla_\\theta \\log p_\\theta(x, z_k)`, the draws
        :math:`\\tilde w_k^2\\, \\partial \\log w_k / \\partial z_k`: the gradients of the two-pass
        surrogate, whose second model pass (on the detached draws) it saves. Eager only: a
        recording (``make_fx``) keeps the two passes, whose stop-gradients it can see, and so
        does a guide site without its own particle and example dimensions (returns None then).
        """
        holder = _Weights()
        depth = self.max_plate_nesting + 1
        hooked = guide_trace.copy()
        for name, site in scored_sites(guide_trace, observed=False):
            frames = [f for f in site["cond_indep_stack"] if f.name == self.data_plate and f.dim is not None]
            value = site["value"]
            batch_dims = value.dim() - len(site["fn"].event_shape)
            if not frames or batch_dims < depth:
                return None  # a site without its own particle and example dimensions: the two passes
            shape = [1] * value.dim()
            shape[batch_dims - depth] = -1  # the particles
            shape[batch_dims + frames[0].dim] = -2  # the examples
            hooked.nodes[name] = dict(site, value=_ScaleGradient.apply(value, holder, tuple(shape)))
        model_trace = poutine.trace(poutine.replay(particles_model, trace=hooked)).get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, depth)
        log_p, scale = self._per_example(model_trace, observed=True)
        log_q, _ = self._per_example(stopped_trace, observed=False)
        log_w = log_p - log_q
        weights = torch.softmax(log_w.detach(), 0)
        holder.weights = weights
        surrogate = (weights * log_p - weights**2 * log_q).sum(0) * scale
        bound = (torch.logsumexp(log_w.detach(), 0) - math.log(log_w.shape[0])) * scale
        total = surrogate.sum()
        return -(bound.sum() + total - total.detach())

    def loss(self, model, guide, *args, **kwargs):
        """Minus the bound (nats) as a float, warning when it is NaN; computed without gradients, so a guide
        that is not reparameterized can be evaluated (only training needs pathwise gradients)."""
        with torch.no_grad(), nan_check(False):
            loss = self.differentiable_loss(model, guide, *args, **kwargs)
        return warn_if_nan(loss.item(), "loss")

    # the loss with its (IWAE or DReG) gradients, from differentiable_loss
    loss_and_grads = ReparamTrace_ELBO.loss_and_grads


__all__ = ["IWAE_ELBO", "PARTICLE_PLATE", "stop_parameters"]
