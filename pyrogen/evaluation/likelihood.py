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
from pyro.distributions import Delta

from pyrogen.errors import DataError
from pyrogen.infer.reparam_elbo import scored_sites, site_log_prob, trace_pair
from pyrogen.infer.torch_svi import module_local


def _vectorized(fn, num_samples, dim):
    def wrapped(*args, **kwargs):
        with pyro.plate("_importance_samples", num_samples, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


@torch.no_grad()
def log_importance_weights(model, guide, x, num_samples, max_plate_nesting=1, **kwargs):
    """Log importance weights :math:`\\log p(x, z_k) - \\log q(z_k \\mid x)`, per example.

    The guide and the model are run once, vectorized over ``num_samples`` draws
    by an extra plate at dimension ``-(max_plate_nesting + 1)``; sites inside
    the data plate keep their per-example log-densities.

    :param model: Pyro model taking ``x`` (and ``kwargs``), with its examples in the rightmost plate.
    :param guide: Pyro guide of the same signature.
    :param torch.Tensor x: a batch of B examples.
    :param int num_samples: K draws per example.
    :returns: tensor of shape ``(K, B)``, nats.
    :raises ValueError: if a guide site is a point mass, whose density is not a
        density over z (a deterministic autoencoder has no importance weights).
    """
    _check_count(num_samples, "num_samples")
    _check_batch(x, "x")
    dim = -(max_plate_nesting + 1)
    model, guide = module_local(model), module_local(guide)
    model_trace, guide_trace = trace_pair(_vectorized(model, num_samples, dim),
                                          _vectorized(guide, num_samples, dim), (x,), kwargs)
    log_w = 0.0
    for _, site in scored_sites(model_trace):
        log_w = log_w + site_log_prob(site)
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
        log_w = log_w - site_log_prob(site)
    return log_w.reshape(num_samples, x.shape[0])


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}")


def _check_batch(x, name):
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0:
        raise DataError(f"{name} must be a tensor of at least one example, got "
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def _chunks(total, size):
    for start in range(0, total, size):
        yield min(size, total - start)


@torch.no_grad()
def log_likelihood(model, guide, x, num_samples=1000, chunk_size=100, max_plate_nesting=1,
                   return_log_weights=False, **kwargs):
    """Importance-sampled :math:`\\log p(x)` per example, in nats.

    The K draws are taken ``chunk_size`` at a time and combined by a running
    log-sum-exp, so K = 1000 needs only the memory of ``chunk_size`` draws.

    :returns: tensor ``(B,)``; with ``return_log_weights`` also the ``(K, B)`` log weights.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    chunks = [
        log_importance_weights(model, guide, x, k, max_plate_nesting, **kwargs)
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
def evaluate_dataset(model, guide, data, batch_size=500, num_samples=0, **kwargs):
    """Mean test ELBO and (when ``num_samples`` > 0) importance-sampled log p(x) over a data set.

    :param torch.Tensor data: examples, already on the model's device.
    :returns: dict with ``"elbo"`` and, if computed, ``"log_px"``, in nats per example.
    """
    _check_batch(data, "data")
    _check_count(batch_size, "batch_size")
    if num_samples:
        _check_count(num_samples, "num_samples")
    totals = {"elbo": 0.0, "log_px": 0.0}
    for i in range(0, data.shape[0], batch_size):
        x = data[i : i + batch_size]
        totals["elbo"] += elbo(model, guide, x, **kwargs).sum().item()
        if num_samples:
            totals["log_px"] += log_likelihood(model, guide, x, num_samples, **kwargs).sum().item()
    n = data.shape[0]
    out = {"elbo": totals["elbo"] / n}
    if num_samples:
        out["log_px"] = totals["log_px"] / n
    return out
