"""The posterior mean space of He et al. (ICLR 2019, Figures 1 and 3): is the inference network lagging?

He, Spokoyny, Neubig and Berg-Kirkpatrick ("Lagging inference networks and
posterior collapse in variational autoencoders") plot, for held-out
examples x, the approximate posterior mean :math:`\\mathbb{E}_{q_\\phi(z|x)}[z]`
(x-axis) against the model's true posterior mean

.. math:: \\mathbb{E}_{p_\\theta(z|x)}[z] = \\frac{\\int z\\, p(z)\\, p_\\theta(x \\mid z)\\, dz}
   {\\int p(z)\\, p_\\theta(x \\mid z)\\, dz}

(y-axis). Points on the diagonal: the inference network has caught up with
the model. Points spread along the y-axis but squeezed at x = 0: the
inference network lags (the model uses z, q does not follow). Everything at
the origin: collapse (the model ignores z and q is the prior).

The true posterior mean is computed

* for a 1-d latent, by numerical integration on a grid (He et al. use
  [−20, 20] in steps of 0.1): the normalised weights
  :math:`\\mathrm{softmax}_g \\log p_\\theta(x, z_g)` times :math:`z_g`;
* otherwise by self-normalised importance sampling with the guide as
  proposal, :math:`\\sum_k \\tilde w_k z_k` with :math:`z_k \\sim q(z|x)`,
  :math:`\\tilde w_k \\propto p_\\theta(x, z_k) / q(z_k|x)` (consistent in K,
  biased for small K where q is poor), and one coordinate (the first) is shown.

Everything here works on any Pyro model/guide pair with the latent site
``"z"`` (event ``(D,)``) in a ``"data"`` plate whose model accepts extra
sample dimensions left of the plate (pyrogen's VAEs do).
"""

import math

import pyro
import torch
from pyro import poutine

from pyrogen.errors import DataError
from pyrogen.evaluation.diagnostics import posterior
from pyrogen.infer.reparam_elbo import scored_sites, site_log_prob
from pyrogen.infer.torch_svi import module_local


def _vectorized(fn, num, dim):
    def wrapped(*args, **kwargs):
        with pyro.plate("_posterior_points", num, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


@torch.no_grad()
def log_joint(model, x, z, site="z", max_plate_nesting=1, **kwargs):
    """:math:`\\log p_\\theta(x, z)` for latents ``z`` of shape ``(K, B, D)`` and a batch ``x`` of B:
    ``(K, B)``, nats."""
    if z.dim() != 3 or z.shape[1] != x.shape[0]:
        raise DataError(f"z must have shape (K, B, D) with B = {x.shape[0]}, got {tuple(z.shape)}")
    num = z.shape[0]
    conditioned = poutine.condition(_vectorized(module_local(model), num, -(max_plate_nesting + 1)), data={site: z})
    trace = poutine.trace(conditioned).get_trace(x, **kwargs)
    total = 0.0
    for _, s in scored_sites(trace):
        total = total + site_log_prob(s)
    return total.reshape(num, x.shape[0])


@torch.no_grad()
def grid_posterior_mean(model, x, grid, site="z", chunk_size=50, **kwargs):
    """:math:`\\mathbb{E}_p[z|x]` of a 1-d latent by numerical integration on ``grid`` (a 1-d tensor of
    points): ``(B,)``.

    The grid must cover the posterior's mass; its spacing cancels in the
    normalisation (uniform grids).
    """
    grid = grid.reshape(-1).to(x.device)
    logs = []
    for i in range(0, grid.shape[0], chunk_size):
        g = grid[i : i + chunk_size]
        z = g.reshape(-1, 1, 1).expand(g.shape[0], x.shape[0], 1)
        logs.append(log_joint(model, x, z, site, **kwargs))
    log_w = torch.cat(logs)  # (G, B)
    w = torch.softmax(log_w, dim=0)
    return (w * grid[:, None]).sum(0)


@torch.no_grad()
def importance_posterior_mean(model, guide, x, num_samples=500, site="z", chunk_size=100, **kwargs):
    """:math:`\\mathbb{E}_p[z|x]` by self-normalised importance sampling from the guide: ``(B, D)``.

    ``num_samples`` draws :math:`z_k \\sim q(z|x)`, ``chunk_size`` at a time.
    """
    q = posterior(guide, x, site, **kwargs)
    zs, logs = [], []
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        z = q.sample((k,))  # (k, B, D)
        logs.append(log_joint(model, x, z, site, **kwargs) - q.log_prob(z))
        zs.append(z)
    w = torch.softmax(torch.cat(logs), dim=0)  # (K, B)
    return (w.unsqueeze(-1) * torch.cat(zs)).sum(0)


def default_grid(low=-20.0, high=20.0, step=0.1):
    """He et al.'s grid for the 1-d posterior: ``[low, high]`` in steps of ``step``."""
    return torch.linspace(low, high, int(round((high - low) / step)) + 1)


@torch.no_grad()
def posterior_mean_space(
    model, guide, data, site="z", dim=0, method="auto", grid=None, num_samples=500, batch_size=100, **kwargs
):
    """The points of the posterior mean space for ``data``: ``{"q_mean", "p_mean", "method"}``.

    :param torch.Tensor data: held-out examples (He et al. use about 500).
    :param int dim: which coordinate of z to return (the first by default).
    :param str method: ``"grid"`` (1-d latents only), ``"importance"``, or
        ``"auto"`` (grid for a 1-d latent, importance sampling otherwise).
    :param grid: the grid of ``"grid"`` (default :func:`default_grid`).
    :param int num_samples: K of ``"importance"``.
    :returns: ``q_mean`` :math:`\\mathbb{E}_q[z_{dim}|x]` and ``p_mean``
        :math:`\\mathbb{E}_p[z_{dim}|x]`, CPU tensors ``(N,)``; ``method`` the one used.
    """
    q_means, p_means = [], []
    latent_dim = None
    for i in range(0, data.shape[0], batch_size):
        x = data[i : i + batch_size]
        q = posterior(guide, x, site, **kwargs)
        loc = q.mean.reshape(x.shape[0], -1)
        latent_dim = loc.shape[-1]
        if method == "auto":
            method = "grid" if latent_dim == 1 else "importance"
        if method == "grid":
            if latent_dim != 1:
                raise DataError(f"grid integration is for a 1-d latent, this one has {latent_dim} dimensions")
            points = (default_grid() if grid is None else grid).to(loc)  # q's dtype and device
            p = grid_posterior_mean(model, x, points, site, **kwargs)
        elif method == "importance":
            p = importance_posterior_mean(model, guide, x, num_samples, site, **kwargs)[:, dim]
        else:
            raise ValueError(f"method must be 'auto', 'grid' or 'importance', got {method!r}")
        q_means.append(loc[:, dim].cpu())
        p_means.append(p.reshape(-1).cpu())
    return {"q_mean": torch.cat(q_means), "p_mean": torch.cat(p_means), "method": method}


def lag(points):
    """Summary of a posterior-mean picture: ``{"q_spread", "p_spread", "slope"}``.

    Standard deviations of the two coordinates over the examples, and the
    least-squares slope of E_q on E_p (1 when the inference network follows
    the model, 0 when it ignores x; nan when the model's posterior mean does not move).
    """
    q, p = points["q_mean"].double(), points["p_mean"].double()
    pv = p.var(unbiased=False).item()
    slope = ((q - q.mean()) * (p - p.mean())).mean().item() / pv if pv > 0 else math.nan
    return {"q_spread": q.std(unbiased=False).item(), "p_spread": math.sqrt(pv), "slope": slope}
