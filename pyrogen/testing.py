"""Checks for your own model/guide pairs, to call from your pytest suite.

Each ``assert_*`` function runs the model and guide once (or a few SVI steps)
under :mod:`pyro.poutine` on a small batch you give it, and raises an
:class:`AssertionError` that names the site or parameter and says what is
wrong. :func:`check_model_guide` runs them all in order. They check what
:class:`pyro.infer.SVI` silently relies on:

* :func:`assert_guide_matches_model` -- the guide samples exactly the model's
  latent sites, no more and no fewer, and none of the model's observed sites;
* :func:`assert_reparameterized` -- each guide site has pathwise gradients
  (``has_rsample``), which :class:`pyrogen.infer.ReparamTrace_ELBO` needs and
  which keeps :class:`pyro.infer.Trace_ELBO`'s gradients low-variance (Kingma and
  Welling 2014, section 2.4);
* :func:`assert_shapes_agree` -- inside its plates each site's ``log_prob``
  has exactly the plates' shape (a missing ``.to_event(1)`` shows up here), and
  a latent site has the same plates, event shape and value shape in the model
  as in the guide;
* :func:`assert_elbo_finite` and :func:`assert_gradients_reach_parameters` --
  the ELBO estimate is finite and its gradient reaches every parameter of the
  model and guide (also the parameters of an ``nn.Module`` that Pyro never
  sees, which SVI would silently leave untrained);
* :func:`assert_vectorizes` -- the pair runs with an extra leading dimension of
  draws, as vectorized particles and :func:`pyrogen.evaluation.log_likelihood`
  run it (a decoder that reshapes with ``z.shape[0]`` fails here);
* :func:`assert_svi_lowers_loss` -- a few steps of SVI on the batch move the
  parameters and do not raise the loss, by a statistical test on independent
  ELBO draws before and after.

Example, in your ``tests/test_my_model.py``::

    from pyrogen.testing import check_model_guide

    def test_my_vae_trains(tiny_images):          # fixture of pyrogen's pytest plugin
        vae = MyVAE(latent_dim=2)
        check_model_guide(vae.model, vae.guide, tiny_images)

The checks change no parameter: :func:`assert_svi_lowers_loss` restores every
parameter it trained. They do consume random numbers; seed first for a
reproducible test (the ``fresh_pyro`` fixture does).

>>> import torch
>>> from pyrogen.models import VAE
>>> from pyrogen.testing import check_model_guide
>>> vae = VAE(latent_dim=2, hidden=(16,))
>>> x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
>>> before, after = check_model_guide(vae.model, vae.guide, x)  # raises AssertionError on a bug
>>> after < before  # nats per batch, before and after 10 steps of SVI
True
"""

import contextlib
import re

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.util import site_is_subsample
from scipy.stats import mannwhitneyu
from torch import nn

__all__ = [
    "assert_guide_matches_model",
    "assert_reparameterized",
    "assert_shapes_agree",
    "assert_elbo_finite",
    "assert_gradients_reach_parameters",
    "assert_vectorizes",
    "assert_svi_lowers_loss",
    "check_model_guide",
]


def _traces(model, guide, args, kwargs):
    """The guide's trace and the model's trace replayed against it.

    When the model fails on the guide's values (torch's ValueError, naming no
    site), a guide value outside its model site's support is reported by name.
    """
    with _plate_shape_messages("guide"):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    replayed = poutine.trace(poutine.replay(model, trace=guide_trace))
    try:
        with _plate_shape_messages("model"):
            model_trace = replayed.get_trace(*args, **kwargs)
    except ValueError:
        with pyro.validation_enabled(False), _no_arg_validation():
            try:
                model_trace = replayed.get_trace(*args, **kwargs)
            except Exception:
                model_trace = None
        if model_trace is not None:
            _assert_guide_in_support(model_trace, guide_trace)
        raise
    return model_trace, guide_trace


_PLATE_MISMATCH = re.compile(r"Shape mismatch inside plate\('(.*)'\) at site (.*) dim (-?\d+), (\d+) vs (\d+)")


@contextlib.contextmanager
def _plate_shape_messages(where):
    """Pyro's "Shape mismatch inside plate" (and its Trace Shapes block) as one line that names the fix."""
    try:
        yield
    except ValueError as e:
        match = _PLATE_MISMATCH.match(str(e))
        if match is None:
            raise
        plate, site, dim, size, actual = match.groups()
        raise AssertionError(
            f"{where} site {site!r}: dimension {dim} of its batch shape has size {actual} but plate {plate!r} "
            f"(dim {dim}) has size {size}, so a dimension of one draw is read as a batch dimension. Declare the "
            "dimensions of one draw as event dimensions (.to_event(n), e.g. dist.Normal(loc, scale).to_event(1)) "
            "or put each batch dimension inside a pyro.plate"
        ) from None


@contextlib.contextmanager
def _no_arg_validation():
    old = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(old)


def _assert_guide_in_support(model_trace, guide_trace):
    """Each guide value of a latent site lies in the support of the model's distribution there."""
    for name, site in _sample_sites(model_trace, observed=False).items():
        g = guide_trace.nodes.get(name)
        if g is None or g["type"] != "sample":
            continue
        if not bool(site["fn"].support.check(g["value"]).all()):
            raise AssertionError(
                f"guide site {name!r} draws from {_describe(g['fn'])} (support {g['fn'].support}), "
                f"values outside the support {site['fn'].support} of the model's "
                f"{_describe(site['fn'])}: the model's log_prob is invalid there. Use a guide "
                "distribution with the model's support (e.g. LogNormal or Gamma for a positive site)"
            )


def _sample_sites(trace, observed=None):
    """Sample sites of a trace by name (no subsample sites), optionally only (un)observed."""
    return {
        name: site for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
        and (observed is None or site["is_observed"] == observed)
    }  # fmt: skip


def _plates(site):
    """``{plate name: (dim, size)}`` of the plates a site sits in."""
    return {f.name: (f.dim, f.size) for f in site["cond_indep_stack"] if f.vectorized}


def _full_sizes(site):
    """``{plate name: full size}`` of the plates a site sits in (the size before subsampling)."""
    return {f.name: f.size if f.full_size is None else f.full_size for f in site["cond_indep_stack"] if f.vectorized}


def _is_auxiliary(site):
    return bool(site["infer"].get("is_auxiliary"))


def _is_enumerated(site):
    """A discrete model site marked for enumeration (``TraceEnum_ELBO`` sums it out; no guide site)."""
    return bool(site["infer"].get("enumerate")) and site["fn"].has_enumerate_support


def _has_enumerated_sites(model, guide, args, kwargs):
    model_trace, _ = _traces(model, guide, args, kwargs)
    return any(_is_enumerated(site) for site in _sample_sites(model_trace, observed=False).values())


def _describe(fn):
    name = type(fn).__name__
    while hasattr(fn, "base_dist") and type(fn).__name__ in ("Independent", "MaskedDistribution"):
        fn = fn.base_dist
        name += f"({type(fn).__name__})"
    return name


def assert_guide_matches_model(model, guide, *args, **kwargs):
    """Assert the guide samples exactly the model's latent (unobserved) sample sites.

    Fails when a latent site of the model has no site in the guide (Pyro would
    then draw it from the prior inside the model, and the ELBO would not
    contain its :math:`\\log q`), when the guide has a site the model does not
    (its :math:`\\log q` would enter the ELBO with no :math:`\\log p`), or when the
    guide samples a site the model observes. As in ``pyro.util.check_model_guide_match``,
    guide sites marked ``infer={"is_auxiliary": True}`` (those of Pyro's
    autoguides, e.g. ``w_unconstrained`` of ``AutoNormal``) need no model site, and
    discrete model sites marked ``infer={"enumerate": ...}`` (summed out by
    :class:`~pyro.infer.TraceEnum_ELBO`) need no guide site.

    :param callable model: the model, called as ``model(*args, **kwargs)``.
    :param callable guide: the guide, called with the same arguments.
    :raises AssertionError: naming the offending site.
    """
    model_trace, guide_trace = _traces(model, guide, args, kwargs)
    model_latent = _sample_sites(model_trace, observed=False)
    model_observed = _sample_sites(model_trace, observed=True)
    guide_latent = _sample_sites(guide_trace, observed=False)
    for name, site in guide_latent.items():
        if _is_auxiliary(site) and name not in model_latent:
            continue
        if name in model_observed:
            raise AssertionError(
                f"guide samples site {name!r}, which the model observes; a guide may only "
                "sample the model's latent sites"
            )
        if name not in model_latent:
            raise AssertionError(
                f"guide site {name!r} does not appear in the model; the model's latent sites are {sorted(model_latent)}"
            )
    # Under replay, a model site the guide lacks is drawn from the model's own distribution.
    for name, site in model_latent.items():
        if name not in guide_latent and not _is_enumerated(site):
            raise AssertionError(
                f"model latent site {name!r} has no site in the guide: it would be drawn from "
                f"the model's prior and the ELBO would miss its log q term. If {name!r} is data, "
                f"the model's pyro.sample({name!r}, ...) lacks obs=: pass the data as obs; if it "
                f"is a latent variable, add pyro.sample({name!r}, ...) to the guide (or mark a "
                "discrete site infer={'enumerate': 'parallel'} for TraceEnum_ELBO)"
            )


def assert_reparameterized(guide, *args, sites=None, **kwargs):
    """Assert the guide's sample sites are reparameterized (``fn.has_rsample``).

    Sites the guide marks for enumeration (``infer={"enumerate": ...}``, for
    :class:`pyro.infer.TraceEnum_ELBO`) are exempt.

    :param callable guide: the guide, called as ``guide(*args, **kwargs)``.
    :param sites: names of the sites to check; default all latent sites.
    :raises AssertionError: naming the first site drawn from a distribution
        without ``rsample``.
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    latent = _sample_sites(guide_trace, observed=False)
    if sites is not None:
        missing = sorted(set(sites) - set(latent))
        if missing:
            raise AssertionError(f"guide has no latent site named {missing[0]!r}; it has {sorted(latent)}")
        latent = {name: latent[name] for name in sites}
    for name, site in latent.items():
        if site["infer"].get("enumerate"):
            continue
        if not site["fn"].has_rsample:
            raise AssertionError(
                f"guide site {name!r} draws from {_describe(site['fn'])}, which is not "
                "reparameterized (has_rsample is False): pathwise gradients cannot flow through "
                "it. Use a reparameterized distribution, enumerate it with TraceEnum_ELBO, or "
                "accept Trace_ELBO's score-function gradients (check_model_guide(..., "
                "reparameterized=False))"
            )


def _check_log_prob_shape(site, where):
    """The site's log_prob must have exactly its plates' shape (leading 1s allowed)."""
    try:
        log_prob = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    except ValueError as e:
        raise AssertionError(
            f"{where} site {site['name']!r}: log_prob of {_describe(site['fn'])} fails on the "
            f"site's value: {str(e).splitlines()[0]}"
        ) from e
    actual = tuple(log_prob.shape)
    plates = _plates(site)
    sizes = {dim: size for dim, size in plates.values()}
    depth = max([0] + [-dim for dim in sizes])
    expected = tuple(sizes.get(dim, 1) for dim in range(-depth, 0))
    padded = (1,) * max(0, depth - len(actual)) + actual
    if padded[len(padded) - depth :] == expected and all(n == 1 for n in padded[: len(padded) - depth]):
        return
    plate_text = ", ".join(f"{n!r} (dim {d}, size {s})" for n, (d, s) in plates.items()) or "none"
    raise AssertionError(
        f"{where} site {site['name']!r}: log_prob has shape {actual} but its plates [{plate_text}] "
        f"need {expected} (batch_shape {tuple(site['fn'].batch_shape)}, event_shape "
        f"{tuple(site['fn'].event_shape)}). Declare the dimensions of one draw as event "
        "dimensions (.to_event(n)) or put each batch dimension inside a pyro.plate"
    )


def assert_shapes_agree(model, guide, *args, **kwargs):
    """Assert every site's shapes agree with its plates, and the guide's with the model's.

    For each sample site of the model (latent and observed) and of the guide,
    ``log_prob`` must have exactly the shape of the enclosing plates: the size of
    each plate at its ``dim``, 1 at any other dimension to the right of the
    outermost plate. For each latent site, the model and the guide must use the
    same plates (names, dims, sizes and full sizes before subsampling: a model
    plate ``pyro.plate("data", 60000, subsample=idx)`` scales the site's
    log-density by 60000 / B, a guide plate of size B does not), the same
    ``event_shape``, produce values of the same shape, and the guide's values
    must lie in the support of the model's distribution (a Normal guide under a
    Gamma prior fails here, naming the site).

    :raises AssertionError: naming the site, the shapes found and the shapes expected.
    """
    model_trace, guide_trace = _traces(model, guide, args, kwargs)
    _assert_guide_in_support(model_trace, guide_trace)
    guide_sites = _sample_sites(guide_trace, observed=False)
    for site in guide_sites.values():
        _check_log_prob_shape(site, "guide")
    for name, site in _sample_sites(model_trace).items():
        g = guide_sites.get(name)
        if g is None:
            _check_log_prob_shape(site, "model")
            continue
        if _plates(site) != _plates(g):
            raise AssertionError(
                f"site {name!r} is in plates {_plates(site)} in the model but {_plates(g)} in the "
                "guide ({name: (dim, size)}); put it in the same plates in both"
            )
        if _full_sizes(site) != _full_sizes(g):
            raise AssertionError(
                f"site {name!r} is in plates of full sizes {_full_sizes(site)} in the model but "
                f"{_full_sizes(g)} in the guide: a subsampled plate scales log p and log q by full "
                "size / batch size, so the ELBO would weigh the model's and the guide's terms "
                "differently. Give both plates the same size and subsample"
            )
        if site["fn"].event_shape != g["fn"].event_shape:
            model_dims, guide_dims = len(site["fn"].event_shape), len(g["fn"].event_shape)
            hint = (
                f": declare the guide's dimensions of one draw with .to_event({model_dims - guide_dims})"
                if model_dims > guide_dims
                else f": declare the model's dimensions of one draw with .to_event({guide_dims - model_dims})"
                if guide_dims > model_dims
                else ""
            )
            raise AssertionError(
                f"site {name!r} has event_shape {tuple(site['fn'].event_shape)} in the model but "
                f"{tuple(g['fn'].event_shape)} in the guide{hint}"
            )
        _check_log_prob_shape(site, "model")
        model_value_shape = site["fn"].shape()
        if torch.broadcast_shapes(model_value_shape, g["value"].shape) != g["value"].shape:
            raise AssertionError(
                f"site {name!r}: the guide's value has shape {tuple(g['value'].shape)} but the "
                f"model's distribution has shape {tuple(model_value_shape)} (batch_shape + event_shape)"
            )


_SAMPLES = "_check_samples"


def _sample_plate(fn, size, dim):
    def vectorized(*args, **kwargs):
        with pyro.plate(_SAMPLES, size, dim=dim):
            return fn(*args, **kwargs)

    return vectorized


def assert_vectorizes(model, guide, *args, num_samples=2, **kwargs):
    """Assert the pair runs with an extra leading dimension of draws, and every site's shapes keep it.

    The guide and the model are run again inside one more plate of ``num_samples``
    draws, to the left of the pair's own plates, as vectorized particles
    (``vectorize_particles=True``, :class:`~pyrogen.infer.IWAE_ELBO`) and
    :func:`pyrogen.evaluation.log_likelihood` run them. A network that reads the
    batch size from the left, such as a decoder that reshapes its output with
    ``z.shape[0]``, trains with one particle but fails here; so does a site whose
    ``log_prob`` loses the dimension of the draws.

    :param int num_samples: size of the extra dimension.
    :raises AssertionError: naming what failed and the usual fix.
    """
    model_trace, guide_trace = _traces(model, guide, args, kwargs)
    nesting = max(
        [0]
        + [
            -f.dim
            for trace in (model_trace, guide_trace)
            for site in _sample_sites(trace).values()
            for f in site["cond_indep_stack"]
            if f.vectorized
        ]
    )
    dim = -(nesting + 1)
    try:
        model_trace, guide_trace = _traces(
            _sample_plate(model, num_samples, dim), _sample_plate(guide, num_samples, dim), args, kwargs
        )
        for where, trace, observed in (("guide", guide_trace, False), ("model", model_trace, None)):
            for site in _sample_sites(trace, observed).values():
                _check_log_prob_shape(site, where)
    except (AssertionError, ValueError, RuntimeError, IndexError, TypeError) as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        raise AssertionError(
            f"the pair fails with an extra leading dimension of {num_samples} draws (a plate at dim {dim}, as "
            f"vectorized particles and pyrogen.evaluation.log_likelihood add): {type(e).__name__}: {reason}. "
            "Read batch dimensions from the right (z.shape[:-1], x.shape[:-3]), not from the left (z.shape[0])"
        ) from None


def _default_loss(loss):
    return Trace_ELBO() if loss is None else loss


def assert_elbo_finite(model, guide, *args, loss=None, **kwargs):
    """Assert the ELBO estimate of one call is a finite scalar; returns the loss (nats).

    :param loss: an ELBO estimator with ``differentiable_loss`` (default
        :class:`pyro.infer.Trace_ELBO`).
    :returns: the loss, a scalar tensor that gradients flow through.
    :raises AssertionError: naming the sites whose log-probabilities are not finite.
    """
    loss_value = _default_loss(loss).differentiable_loss(model, guide, *args, **kwargs)
    if loss_value.dim() != 0:
        raise AssertionError(f"the loss has shape {tuple(loss_value.shape)}, expected a scalar")
    if not torch.isfinite(loss_value):
        model_trace, guide_trace = _traces(model, guide, args, kwargs)
        bad = []
        for where, trace, observed in (("model", model_trace, None), ("guide", guide_trace, False)):
            for name, site in _sample_sites(trace, observed).items():
                lp = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
                if not torch.isfinite(lp).all():
                    bad.append(f"{where} site {name!r}")
        where = ", ".join(bad) if bad else "no single site (the sum overflows)"
        raise AssertionError(f"the ELBO is {loss_value.item()}: log_prob is not finite at {where}")
    return loss_value


def _parameters(model, guide, args, kwargs, loss):
    """Every parameter the loss touches, plus those of the modules owning model and guide.

    Returns the loss, ``{readable name: tensor}`` with each tensor once, and the
    ids of the tensors that went through ``pyro.param`` (those SVI optimizes).
    """
    with poutine.trace(param_only=True) as capture:
        loss_value = _default_loss(loss).differentiable_loss(model, guide, *args, **kwargs)
    params, owners = {}, {}
    for fn in (model, guide):
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module):
            for name, p in owner.named_parameters():
                if p.requires_grad:
                    params.setdefault(id(p), (name, p))
                    owners.setdefault(id(p), type(owner).__name__)
    seen_by_pyro = set()
    for name, site in capture.trace.nodes.items():
        p = site["value"].unconstrained()
        seen_by_pyro.add(id(p))
        if p.requires_grad:
            params.setdefault(id(p), (name.replace("$$$", "."), p))
    return loss_value, params, owners, seen_by_pyro


def assert_gradients_reach_parameters(model, guide, *args, loss=None, unused=(), torch_svi=False, **kwargs):
    """Assert the ELBO's gradient is finite and reaches every parameter, and Pyro sees them.

    The parameters are those the ELBO reads through ``pyro.param`` (the param
    store, including every parameter of a :class:`~pyro.nn.PyroModule`), and, when
    ``model`` or ``guide`` is a method of an :class:`torch.nn.Module`, all of that
    module's parameters: a parameter that never receives a gradient (a
    sub-network the code forgot to call) would stay untrained, and so would a
    parameter of a plain ``nn.Module`` that was never registered with Pyro
    (``pyro.module``), since :class:`pyro.infer.SVI` only optimizes what passes
    through the param store. Existing ``.grad`` values are restored.

    :param unused: name prefixes of parameters that are unused on purpose.
    :param bool torch_svi: the pair is trained by :class:`pyrogen.infer.TorchSVI`,
        whose torch optimizer holds the module's parameters: they need not pass
        through Pyro's param store, so that check is skipped.
    :raises AssertionError: naming a parameter whose gradient is missing, all
        zero or not finite, or which Pyro never sees (unless ``torch_svi``).
    """
    loss_value, params, owners, seen_by_pyro = _parameters(model, guide, args, kwargs, loss)
    _assert_finite(loss_value)
    params = {
        key: (name, p) for key, (name, p) in params.items() if not any(name.startswith(prefix) for prefix in unused)
    }
    saved = {key: p.grad for key, (_, p) in params.items()}
    try:
        for _, p in params.values():
            p.grad = None
        if loss_value.requires_grad:
            loss_value.backward()
        for name, p in params.values():
            if p.grad is None:
                raise AssertionError(
                    f"parameter {name!r} gets no gradient from the ELBO: it is not used by the "
                    "model or the guide (or used only under torch.no_grad / .detach())"
                )
            if not torch.isfinite(p.grad).all():
                raise AssertionError(f"parameter {name!r} has a non-finite gradient")
            if not p.grad.any():
                raise AssertionError(f"parameter {name!r} has an all-zero gradient: the ELBO does not depend on it")
        for key, (name, _) in params.items():
            if key not in seen_by_pyro and not torch_svi:
                raise AssertionError(
                    f"parameter {name!r} of {owners[key]} is not registered with Pyro (make the "
                    "module a pyro.nn.PyroModule or call pyro.module(name, module) in the model or "
                    "guide), so pyro.infer.SVI would not train it; if a torch optimizer trains it "
                    "(pyrogen.infer.TorchSVI), pass torch_svi=True"
                )
    finally:
        for key, (_, p) in params.items():
            p.grad = saved[key]


def _assert_finite(loss_value):
    if loss_value.dim() != 0 or not torch.isfinite(loss_value):
        raise AssertionError(f"the ELBO is not a finite scalar: {loss_value}")


@contextlib.contextmanager
def _restoring(params):
    saved = {name: p.detach().clone() for name, p in params.items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])
                p.grad = None


def assert_svi_lowers_loss(
    model, guide, *args, num_steps=10, lr=1e-3, loss=None, num_eval_particles=16, seed=0, max_p=1e-3, **kwargs
):
    """Assert that ``num_steps`` of SVI (Adam, ``lr``) on the batch move the parameters and do not raise the loss.

    The loss is estimated before and after training from ``num_eval_particles``
    independent ELBO draws each (from seeds ``seed`` and ``seed + 1``; the
    caller's random stream is left where it was). The draws are independent, not
    the same draws before and after: a Gamma or Dirichlet sampler draws by
    rejection a count of random numbers that depends on its parameters, so after
    training one seed no longer gives the same draws, and a fixed-seed comparison
    fails at random for a correct pair. The check fails when no parameter
    changed, or when the draws after tend to exceed the draws before beyond
    chance: a one-sided Mann-Whitney U test (a rank test: ELBO draws are
    heavy-tailed when a guide can draw a tiny scale, and one huge draw would
    swamp a test of means) with p-value below ``max_p``. A few small steps often
    lower the loss by less than its Monte Carlo noise, so a loss that is not seen
    to fall passes as long as it is not seen to rise.

    :param int num_steps: SVI steps on the same batch.
    :param float lr: Adam's learning rate.
    :param loss: the ELBO estimator to train with (default :class:`pyro.infer.Trace_ELBO`).
    :param int num_eval_particles: ELBO draws before and after (at least 2).
    :param int seed: seed of the draws before (``seed + 1``: after).
    :param float max_p: the smallest p-value of a rise that passes.
    :returns: ``(loss before, loss after)``, each the mean of its draws, in nats per batch.
    :raises AssertionError: when no parameter changed, the loss rose beyond chance, or a step's loss is
        not finite.
    """
    if num_eval_particles < 2:
        raise ValueError(f"num_eval_particles must be at least 2 (for a standard error), got {num_eval_particles!r}")
    loss = _default_loss(loss)
    loss_value, params, _, _ = _parameters(model, guide, args, kwargs, loss)
    params = {name: p for name, p in params.values()}
    _assert_finite(loss_value)

    def evaluate(draw_seed):
        with torch.random.fork_rng():
            torch.manual_seed(draw_seed)
            return torch.tensor(
                [float(loss.loss(model, guide, *args, **kwargs)) for _ in range(num_eval_particles)],
                dtype=torch.float64,
            )

    with _restoring(params):
        start = {name: p.detach().clone() for name, p in params.items()}
        before = evaluate(seed)
        optimizer = torch.optim.Adam(list(params.values()), lr=lr)
        for step in range(num_steps):
            optimizer.zero_grad()
            step_loss = loss.differentiable_loss(model, guide, *args, **kwargs)
            if not torch.isfinite(step_loss):
                raise AssertionError(f"SVI step {step}: the loss is {step_loss.item()}")
            step_loss.backward()
            optimizer.step()
        moved = any(not torch.equal(p, start[name]) for name, p in params.items())
        after = evaluate(seed + 1)
    steps = f"{num_steps} SVI steps (Adam, lr={lr})"
    if not moved:
        raise AssertionError(f"{steps} did not lower the loss: no parameter changed")
    for name, draws in (("before", before), ("after", after)):
        if not torch.isfinite(draws).all():
            raise AssertionError(f"{steps}: an ELBO draw {name} training is not finite ({draws.tolist()})")
    p_value = mannwhitneyu(after.numpy(), before.numpy(), alternative="greater").pvalue
    if p_value < max_p:
        raise AssertionError(
            f"{steps} did not lower the loss: it rose from {before.median().item():.4g} nats to "
            f"{after.median().item():.4g} (medians of {num_eval_particles} independent draws each; one-sided "
            f"Mann-Whitney p = {p_value:.2g}), more than chance explains"
        )
    mean_before, mean_after = before.mean().item(), after.mean().item()
    return mean_before, mean_after


def check_model_guide(
    model,
    guide,
    *args,
    loss=None,
    reparameterized=True,
    unused=(),
    num_steps=10,
    lr=1e-3,
    torch_svi=False,
    vectorized=None,
    seed=0,
    **kwargs,
):
    """Run every check of this module on a model/guide pair and a small batch.

    In order: :func:`assert_guide_matches_model`, :func:`assert_reparameterized`
    (only when ``reparameterized`` is true or ``loss`` is
    :class:`~pyrogen.infer.ReparamTrace_ELBO`, which needs it),
    :func:`assert_shapes_agree`, :func:`assert_vectorizes` (by default for a
    reparameterized pair whose model leaves no discrete site to enumeration, the
    pairs that vectorized particles, :class:`~pyrogen.infer.IWAE_ELBO` and
    ``log_likelihood`` run with an extra dimension of draws; a mixture model that
    indexes ``locs[assignment]`` Pyro-tutorial style is not vectorizable and need not be),
    :func:`assert_elbo_finite`, :func:`assert_gradients_reach_parameters` and
    :func:`assert_svi_lowers_loss` (skipped when ``num_steps`` is 0). ``args`` and
    ``kwargs`` go to both the model and the guide, as in ``SVI.step``.

    :param loss: the ELBO estimator (default :class:`pyro.infer.Trace_ELBO`).
    :param bool reparameterized: require every guide site to be reparameterized.
    :param unused: name prefixes of parameters that are unused on purpose.
    :param int num_steps: SVI steps for the last check.
    :param float lr: Adam's learning rate for the last check.
    :param bool torch_svi: the pair is trained by :class:`pyrogen.infer.TorchSVI`
        (plain ``nn.Module`` parameters need no registration with Pyro).
    :param bool vectorized: check that the pair runs with an extra leading dimension of draws
        (None: for a reparameterized pair without enumerated sites).
    :param int seed: seed of the SVI check's ELBO draws.
    :returns: ``(loss before, loss after)`` of the SVI check, or None when skipped.
    """
    from pyrogen.infer import ReparamTrace_ELBO

    assert_guide_matches_model(model, guide, *args, **kwargs)
    reparameterized = reparameterized or isinstance(loss, ReparamTrace_ELBO)
    if reparameterized:
        assert_reparameterized(guide, *args, **kwargs)
    assert_shapes_agree(model, guide, *args, **kwargs)
    if vectorized is None:
        vectorized = reparameterized and not _has_enumerated_sites(model, guide, args, kwargs)
    if vectorized:
        assert_vectorizes(model, guide, *args, **kwargs)
    assert_elbo_finite(model, guide, *args, loss=loss, **kwargs)
    assert_gradients_reach_parameters(model, guide, *args, loss=loss, unused=unused, torch_svi=torch_svi, **kwargs)
    if num_steps:
        return assert_svi_lowers_loss(model, guide, *args, num_steps=num_steps, lr=lr, loss=loss, seed=seed, **kwargs)
    return None
