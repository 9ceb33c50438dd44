"""Export a model's posterior and predictive draws to ArviZ ``InferenceData``.

For B chosen inputs x, S draws :math:`z_s \\sim q(z \\mid x)` are taken by
:class:`pyro.infer.Predictive` on the guide, and the same draws give

* ``posterior``: ``z`` with dims ``(chain, draw, example, z_dim)``;
* ``posterior_predictive``: ``x`` drawn from :math:`p(x \\mid z_s)`, dims
  ``(chain, draw, example, channel, row, col)``;
* ``log_likelihood``: :math:`\\log p(x \\mid z_s)` of each input, dims
  ``(chain, draw, example)``, nats (the group ``az.loo``/``az.waic`` read);
* ``sample_stats``: ``log_weight``, the importance weight
  :math:`\\log p(x, z_s) - \\log q(z_s \\mid x)` of each draw, dims
  ``(chain, draw, example)``: its log-mean-exp over draws is the
  importance-sampled :math:`\\log \\hat p(x)` with S samples, and
  :func:`pyrogen.evaluation.psis.pareto_khat` of it the Pareto :math:`\\hat k`;
* ``prior`` and ``prior_predictive``: ``z ~ p(z)`` and ``x ~ p(x | z)`` from
  the model run without data, S draws for each of the B example slots, with
  the same dims as their posterior counterparts (so ``az.plot_dist_comparison``
  and ``az.plot_ppc`` line them up);
* ``observed_data``: the inputs ``x``; ``constant_data``: ``label`` where given.

There is one chain: the draws are independent. The posterior here is the
variational one, q(z|x); the log weights say how far it is from p(z|x).

The groups are built with :func:`arviz.from_dict` (``az.from_pyro`` takes
its posterior only from ``pyro.infer.MCMC``). Every ArviZ call of pyrogen's
export is in :func:`_inference_data`; moving to ArviZ 1.x, whose
``from_dict`` builds an ``xarray.DataTree`` with the same groups, changes
only that function.
"""

import numpy as np
import torch
from pyro.infer import Predictive

from pyrogen.errors import DataError
from pyrogen.evaluation._arviz import import_arviz
from pyrogen.infer.torch_svi import module_local

IMAGE_DIMS = ("channel", "row", "col")


def _numpy(t, draws):
    """``(S, ...)`` tensor to a ``(1 chain, S draws, ...)`` float array."""
    return t.detach().cpu().numpy().reshape((1, draws) + tuple(t.shape[1:]))


def _site_log_prob(trace, name):
    site = trace.nodes[name]
    return site["fn"].log_prob(site["value"])


def _obs_dims(x, name):
    """Dims of one observation: ``channel, row, col`` for images, else ``<name>_dim_<i>``."""
    extra = x.dim() - 1
    return list(IMAGE_DIMS) if extra == 3 else [f"{name}_dim_{i}" for i in range(extra)]


@torch.no_grad()
def to_inference_data(model, guide, x, num_samples=100, labels=None, latent="z", observed="x", coords=None):
    """Posterior, prior and predictive draws of a model/guide pair for inputs ``x``, as ``InferenceData``.

    The model follows :class:`~pyrogen.models.VAE`'s signature: ``model(x)``
    scores the inputs, ``model(None, batch_size=B)`` generates, and the B
    examples are in the rightmost plate; ``guide(x)`` draws the latent site.

    :param model: Pyro model.
    :param guide: Pyro guide.
    :param torch.Tensor x: B inputs, e.g. images ``(B, C, H, W)``.
    :param int num_samples: S draws from the guide, and from the prior.
    :param labels: optional ``(B,)`` classes, stored as ``constant_data.label``.
    :param str latent: name of the latent sample site.
    :param str observed: name of the observed sample site.
    :param dict coords: extra coordinates, e.g. ``{"example": ids}``.
    :returns: :class:`arviz.InferenceData` with the groups ``posterior``,
        ``posterior_predictive``, ``log_likelihood``, ``sample_stats``,
        ``prior``, ``prior_predictive``, ``observed_data`` (and
        ``constant_data`` with labels); see the module's description.
    """
    if not torch.is_tensor(x) or x.dim() < 2:
        raise DataError(
            f"x must be a batch of inputs (B, ...), got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
        )
    if num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    model, guide = module_local(model), module_local(guide)
    S, B = num_samples, x.shape[0]

    # S draws from q(z|x), with their log-densities (one vectorized pass of the guide).
    guide_trace = Predictive(guide, num_samples=S, parallel=True).get_vectorized_trace(x)
    z = guide_trace.nodes[latent]["value"]  # (S, B, latent_dim)
    log_q = _site_log_prob(guide_trace, latent)  # (S, B)
    # The model on the same draws, scoring the inputs: log p(z) and log p(x|z).
    scored = Predictive(model, posterior_samples={latent: z}, parallel=True).get_vectorized_trace(x)
    log_lik = _site_log_prob(scored, observed)  # (S, B)
    log_weight = _site_log_prob(scored, latent) + log_lik - log_q
    # Posterior predictive: the model without data, on the same draws.
    ppc = Predictive(model, posterior_samples={latent: z}, parallel=True, return_sites=(observed,))(None, batch_size=B)
    prior = Predictive(model, num_samples=S, parallel=True, return_sites=(latent, observed))(None, batch_size=B)

    shape = (S, B)
    for name, t in (("log q", log_q), ("log p(x|z)", log_lik), ("posterior predictive", ppc[observed])):
        if tuple(t.shape[:2]) != shape:
            raise DataError(
                f"{name} has shape {tuple(t.shape)}; expected draws and examples first, "
                f"{shape}: is the model's data plate the rightmost batch dimension?"
            )
    obs = x.reshape((B,) + tuple(ppc[observed].shape[2:]))
    groups = {
        "posterior": {latent: _numpy(z, S)},
        "posterior_predictive": {observed: _numpy(ppc[observed], S)},
        "log_likelihood": {observed: _numpy(log_lik, S)},
        "sample_stats": {"log_weight": _numpy(log_weight, S)},
        "prior": {latent: _numpy(prior[latent].reshape(z.shape), S)},
        "prior_predictive": {observed: _numpy(prior[observed].reshape(ppc[observed].shape), S)},
        "observed_data": {observed: obs.detach().cpu().numpy()},
    }
    dims = {
        latent: ["example", f"{latent}_dim"],
        observed: ["example"] + _obs_dims(obs, observed),
        "log_weight": ["example"],
        "label": ["example"],
    }
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.shape[0] != B:
            raise DataError(f"labels must have one entry per input ({B}), got {labels.shape[0]}")
        groups["constant_data"] = {"label": labels.cpu().numpy()}
    all_coords = {"example": np.arange(B), f"{latent}_dim": np.arange(z.shape[-1])}
    all_coords.update(coords or {})
    return _inference_data(groups, all_coords, dims, S)


def _inference_data(groups, coords, dims, num_samples):
    """The one place that builds ArviZ objects (ArviZ 0.23: ``az.from_dict`` -> ``InferenceData``)."""
    az = import_arviz()

    # The log-likelihood variable shares its name with the observed one but not its dims.
    loglik_dims = {k: ["example"] for k in groups["log_likelihood"]}
    data = az.from_dict(**{k: v for k, v in groups.items() if k != "log_likelihood"}, coords=coords, dims=dims)
    data.add_groups(
        log_likelihood=az.from_dict(
            log_likelihood=groups["log_likelihood"], coords=coords, dims=loglik_dims
        ).log_likelihood
    )
    data.posterior.attrs["pyrogen_note"] = (
        f"{num_samples} independent draws from the guide q(z|x), not from p(z|x); "
        "sample_stats.log_weight holds their log importance weights"
    )
    return data
