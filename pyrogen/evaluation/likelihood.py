"""The marginal likelihood log p(x) by importance sampling, and the per-example ELBO.

With K draws :math:`z_k \\sim q(z \\mid x)` the importance weights are
:math:`w_k = p(x, z_k) / q(z_k \\mid x)` and

.. math:: \\log \\hat p(x) = \\log \\frac{1}{K} \\sum_{k=1}^{K} w_k,

a stochastically lower-bounded, consistent estimate of :math:`\\log p(x)`
whose expectation rises with K towards it (Burda, Grosse and Salakhutdinov
2016, theorem 1); K = 1 gives the ELBO. Every value is in nats per example.
"""

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions import Delta

from pyrogen.checks import check_count
from pyrogen.errors import DataError
from pyrogen.evaluation.progress import EvaluationProgress
from pyrogen.infer.reparam_elbo import scored_sites, site_log_prob, trace_pair
from pyrogen.infer.torch_svi import module_local

_SAMPLES = "_importance_samples"


def _vectorized(fn, num_samples, dim):
    def wrapped(*args, **kwargs):
        with pyro.plate(_SAMPLES, num_samples, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


def _plate_frames(*traces):
    """``{name: frame}`` of the vectorized plates of the traces' scored sites, the sample plate left out."""
    return {
        f.name: f
        for trace in traces
        for _, site in scored_sites(trace)
        for f in site["cond_indep_stack"]
        if f.vectorized and f.name != _SAMPLES
    }


def guess_max_plate_nesting(model, guide, x, **kwargs):
    """How many plate dimensions the pair uses, from one run of the guide and the model against it.

    The run draws from a forked random state: the caller's random stream is left where it was, so a
    seeded estimate is the same whether ``max_plate_nesting`` is given or guessed.
    """
    devices = [x.device.index or 0] if isinstance(x, torch.Tensor) and x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), poutine.block():
        model_trace, guide_trace = trace_pair(model, guide, (x,), kwargs)
    return max((-f.dim for f in _plate_frames(model_trace, guide_trace).values()), default=1)


def _outermost_plates(trace):
    """Names of the outermost vectorized plate of each observed site of ``trace`` (the sample plate left out)."""
    names = set()
    for _, site in scored_sites(trace):
        if site["is_observed"]:
            frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.name != _SAMPLES]
            names.add(frames[0].name if frames else None)
    return names


def _data_plate(frames, model_trace, batch_size, data_plate=None):
    """The frame of the plate over the examples: the plate named ``data_plate``; when None, the plate
    named ``"data"``, else the outermost plate of the model's observed sites (one plate for them all).

    Its (subsample) size must be ``batch_size``. A plate is never chosen by its size: a feature plate
    may have as many entries as the batch has examples.
    """
    found = ", ".join(f"{f.name!r} (size {f.size})" for f in frames.values()) or "none"
    if data_plate is not None:
        if data_plate not in frames:
            raise ValueError(
                f"log p(x) per example: the pair has no plate named {data_plate!r} (data_plate=); its plates: {found}"
            )
        frame = frames[data_plate]
    elif "data" in frames:
        frame = frames["data"]
    else:
        outermost = _outermost_plates(model_trace)
        if len(outermost) != 1 or None in outermost:
            raise ValueError(
                f"log p(x) per example needs a plate over the {batch_size} examples of x: one named 'data', "
                "the outermost plate of every observed site, or the one named by data_plate=; the pair's "
                f"plates: {found}"
            )
        frame = frames[outermost.pop()]
    if frame.size != batch_size:
        raise ValueError(
            f"log p(x) per example: the plate over the examples, {frame.name!r}, has size "
            f"{frame.size} but x holds {batch_size} examples (x.shape[0]); name the plate over the "
            "examples with data_plate="
        )
    return frame


def _per_example(site, data, nesting, num_samples, batch_size):
    """A site's log-density (mask applied, the data plate's subsample scale divided out) as ``(K, B)``.

    Dimensions of other plates (e.g. a per-feature plate inside the data plate) are summed;
    a site outside the data plate counts for every example.
    """
    log_prob = site_log_prob(site)
    if data.full_size is not None and data.full_size != data.size and data in site["cond_indep_stack"]:
        log_prob = log_prob * (data.size / data.full_size)
    log_prob = log_prob.reshape((1,) * (nesting + 1 - log_prob.dim()) + log_prob.shape)
    keep = (0, nesting + 1 + data.dim)
    summed = [i for i in range(log_prob.dim()) if i not in keep]
    if summed:
        log_prob = log_prob.sum(summed, keepdim=True)
    log_prob = log_prob.reshape(log_prob.shape[0], log_prob.shape[keep[1]])
    return log_prob.expand(num_samples, batch_size)


@torch.no_grad()
def log_importance_weights(model, guide, x, num_samples, max_plate_nesting=None, data_plate=None, **kwargs):
    """Log importance weights :math:`\\log p(x, z_k) - \\log q(z_k \\mid x)`, per example.

    The guide and the model are run once, vectorized over ``num_samples`` draws
    by an extra plate at dimension ``-(max_plate_nesting + 1)``. The examples
    are the plate named ``data_plate``, by default the plate named ``"data"``
    or else the outermost plate of the observed sites, whose size must be
    ``x.shape[0]``; each site's log-density is
    summed over its other plates (a per-feature plate inside the data plate)
    and a site outside the data plate counts for every example. A data plate
    that subsamples (``pyro.plate("data", N, subsample=idx)``) scales its
    sites by N/B for training; that scale is divided out here, so the weights
    are per example whatever N.

    :param model: Pyro model taking ``x`` (and ``kwargs``), with its examples in one plate.
    :param guide: Pyro guide of the same signature.
    :param torch.Tensor x: a batch of B examples.
    :param int num_samples: K draws per example.
    :param int max_plate_nesting: plate dimensions the pair uses; guessed from one run when None
        (a run that leaves the caller's random stream where it was).
    :param str data_plate: name of the plate over the examples (None: ``"data"``, else the outermost
        plate of the observed sites).
    :returns: tensor of shape ``(K, B)``, nats.
    :raises ValueError: if a guide site is a point mass, whose density is not a
        density over z (a deterministic autoencoder has no importance weights),
        or if no plate of size B is found over the examples.
    """
    _check_count(num_samples, "num_samples")
    _check_batch(x, "x")
    model, guide = module_local(model), module_local(guide)
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(model, guide, x, **kwargs)
    dim = -(max_plate_nesting + 1)
    model_trace, guide_trace = trace_pair(
        _vectorized(model, num_samples, dim), _vectorized(guide, num_samples, dim), (x,), kwargs
    )
    batch_size = x.shape[0]
    data = _data_plate(_plate_frames(model_trace, guide_trace), model_trace, batch_size, data_plate)
    log_w = 0.0
    for _, site in scored_sites(model_trace):
        log_w = log_w + _per_example(site, data, max_plate_nesting, num_samples, batch_size)
    for name, site in scored_sites(guide_trace, observed=False):
        fn = site["fn"]
        while hasattr(fn, "base_dist"):
            fn = fn.base_dist
        if isinstance(fn, Delta):
            raise ValueError(
                f"guide site {name!r} is a point mass (Delta): importance sampling needs a "
                "guide with a density over z, and a deterministic autoencoder has none, so "
                "log p(x) cannot be estimated from it"
            )
        log_w = log_w - _per_example(site, data, max_plate_nesting, num_samples, batch_size)
    return log_w


def _check_count(value, name):
    return check_count(value, name)


def _check_batch(x, name):
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0:
        raise DataError(
            f"{name} must be a tensor of at least one example, got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )


def _chunks(total, size):
    for start in range(0, total, size):
        yield min(size, total - start)


@torch.no_grad()
def log_likelihood(
    model,
    guide,
    x,
    num_samples=1000,
    chunk_size=100,
    max_plate_nesting=None,
    return_log_weights=False,
    data_plate=None,
    **kwargs,
):
    """Importance-sampled :math:`\\log p(x)` per example, in nats.

    The K draws are taken ``chunk_size`` at a time and combined by a running
    log-sum-exp, so K = 1000 needs only the memory of ``chunk_size`` draws.
    ``max_plate_nesting`` and ``data_plate`` are as in :func:`log_importance_weights`.

    :returns: tensor ``(B,)``; with ``return_log_weights`` also the ``(K, B)`` log weights.
    """
    _check_count(num_samples, "num_samples")
    _check_count(chunk_size, "chunk_size")
    _check_batch(x, "x")
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(module_local(model), module_local(guide), x, **kwargs)
    chunks = [
        log_importance_weights(model, guide, x, k, max_plate_nesting, data_plate, **kwargs)
        for k in _chunks(num_samples, chunk_size)
    ]
    if return_log_weights:
        log_w = torch.cat(chunks)
        return torch.logsumexp(log_w, 0) - math.log(num_samples), log_w
    total = torch.stack([torch.logsumexp(c, 0) for c in chunks]).logsumexp(0)
    return total - math.log(num_samples)


@torch.no_grad()
def elbo(model, guide, x, num_particles=1, **kwargs):
    """Monte Carlo ELBO per example (nats), averaged over ``num_particles`` draws: shape ``(B,)``."""
    _check_count(num_particles, "num_particles")
    return log_importance_weights(model, guide, x, num_particles, **kwargs).mean(0)


@torch.no_grad()
def evaluate_dataset(model, guide, data, batch_size=500, num_samples=0, progress=False, **kwargs):
    """Mean test ELBO and (when ``num_samples`` > 0) importance-sampled log p(x) over a data set.

    :param torch.Tensor data: examples, already on the model's device.
    :param bool progress: show a progress bar over the examples, and after the first batch a line
        with the estimated time when it is long (:class:`~pyrogen.evaluation.progress.EvaluationProgress`).
    :returns: dict with ``"elbo"`` and, if computed, ``"log_px"``, in nats per example.
    """
    _check_batch(data, "data")
    _check_count(batch_size, "batch_size")
    if num_samples:
        _check_count(num_samples, "num_samples")
    if kwargs.get("max_plate_nesting") is None:  # the pair's plates, from one run, not one run per batch
        model_kwargs = {k: v for k, v in kwargs.items() if k not in ("max_plate_nesting", "data_plate")}
        kwargs["max_plate_nesting"] = guess_max_plate_nesting(
            module_local(model), module_local(guide), data[:batch_size], **model_kwargs
        )
    totals = {"elbo": 0.0, "log_px": 0.0}
    what = f"ELBO and log p(x), K = {num_samples}" if num_samples else "ELBO"
    with EvaluationProgress(data.shape[0], what, enabled=progress) as bar:
        for i in range(0, data.shape[0], batch_size):
            x = data[i : i + batch_size]
            totals["elbo"] += elbo(model, guide, x, **kwargs).sum().item()
            if num_samples:
                totals["log_px"] += log_likelihood(model, guide, x, num_samples, **kwargs).sum().item()
            bar.update(x.shape[0])
    n = data.shape[0]
    out = {"elbo": totals["elbo"] / n}
    if num_samples:
        out["log_px"] = totals["log_px"] / n
    return out
