"""Posterior-collapse diagnostics: KL(q||p), mutual information I_q(x; z), active units.

Posterior collapse is :math:`q_\\phi(z \\mid x) = p(z)` for every x: the KL
term is 0, the code carries no information about x, and the decoder ignores
z. Following He, Spokoyny, Neubig and Berg-Kirkpatrick (ICLR 2019, "Lagging
inference networks and posterior collapse in variational autoencoders",
section 6) three figures make it measurable, all computed from the guide's
distribution at a latent site (default ``"z"``), so they apply to any
model/guide pair:

* **KL** :math:`\\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z))`, nats per example,
  in closed form where registered, else a one-draw Monte Carlo estimate;
* **mutual information** under the joint :math:`q(x, z) = p_d(x) q(z \\mid x)`,

  .. math:: I_q(x; z) = \\mathbb{E}_{p_d(x)} \\mathbb{E}_{q(z|x)}[\\log q(z \\mid x)]
     - \\mathbb{E}_{q(z)}[\\log q(z)],

  with the aggregate posterior :math:`q(z) = \\frac{1}{B}\\sum_j q(z \\mid x_j)`
  estimated over the minibatch and one draw :math:`z_i \\sim q(z \\mid x_i)` per
  example (He et al.'s estimator; it is at most :math:`\\log B` and may come out
  slightly negative), nats;
* **active units** :math:`A_u = \\#\\{d : \\operatorname{Var}_x(\\mathbb{E}_{q(z|x)}[z_d]) \\ge 0.01\\}`
  (Burda et al. 2016), the latent dimensions whose posterior mean moves with x.
"""

import math

import torch
from pyro import poutine
from torch.distributions import kl_divergence

from pyrogen.errors import DataError
from pyrogen.infer.torch_svi import module_local


def _site(trace, name, what):
    if name not in trace.nodes or trace.nodes[name]["type"] != "sample":
        raise DataError(f"the {what} has no sample site {name!r}")
    return trace.nodes[name]


@torch.no_grad()
def posterior(guide, x, site="z", **kwargs):
    """The guide's distribution q(z|x) at ``site`` for a batch ``x`` (batch shape ``(B,)``)."""
    trace = poutine.trace(module_local(guide)).get_trace(x, **kwargs)
    return _site(trace, site, "guide")["fn"]


@torch.no_grad()
def kl_to_prior(model, guide, x, site="z", **kwargs):
    """KL(q(z|x) || p(z)) per example, shape ``(B,)``, nats.

    The prior is the model's distribution at ``site`` (replayed on the guide's
    draw, so a conditional prior works too). Closed form where
    ``torch.distributions.kl_divergence`` knows the pair, else
    :math:`\\log q(z|x) - \\log p(z)` at the guide's draw.
    """
    guide_trace = poutine.trace(module_local(guide)).get_trace(x, **kwargs)
    model_trace = poutine.trace(poutine.replay(module_local(model), trace=guide_trace)).get_trace(x, **kwargs)
    q, p = _site(guide_trace, site, "guide"), _site(model_trace, site, "model")
    try:
        return kl_divergence(q["fn"], p["fn"])
    except NotImplementedError:
        return q["fn"].log_prob(q["value"]) - p["fn"].log_prob(q["value"])


@torch.no_grad()
def mutual_information(q):
    """He et al.'s estimate of :math:`I_q(x; z)` over one batch, nats (a float).

    :param q: q(z|x_i) for a batch, a distribution with batch shape ``(B,)`` and
        event shape ``(D,)`` (e.g. from :func:`posterior`).
    """
    if len(q.batch_shape) != 1:
        raise DataError(f"q must have batch shape (B,), got {tuple(q.batch_shape)}")
    batch = q.batch_shape[0]
    z = q.sample()  # (B, D): one draw per example
    log_q_own = q.log_prob(z)  # (B,)
    # log q(z_i | x_j) for every pair: (B_i, B_j)
    log_q_pairs = q.log_prob(z.unsqueeze(1))
    log_q_aggregate = torch.logsumexp(log_q_pairs, dim=1) - math.log(batch)
    return (log_q_own - log_q_aggregate).mean().item()


@torch.no_grad()
def active_units(means, threshold=0.01):
    """Active units from posterior means ``(N, D)``: ``(count, per-dimension variance (D,))``.

    A dimension is active when :math:`\\operatorname{Var}_x(\\mathbb{E}_q[z_d]) \\ge` ``threshold``
    (the population variance over the N examples).
    """
    if means.dim() != 2 or means.shape[0] < 2:
        raise DataError(f"means must have shape (N, D) with N >= 2, got {tuple(means.shape)}")
    variance = means.var(dim=0, unbiased=False)
    return int((variance >= threshold).sum().item()), variance


def _posterior_mean(q):
    try:
        return q.mean
    except NotImplementedError:  # pragma: no cover - families without a closed-form mean
        return q.sample((100,)).mean(0)


@torch.no_grad()
def collapse_diagnostics(model, guide, data, batch_size=500, site="z", threshold=0.01, **kwargs):
    """KL, mutual information and active units of a model/guide pair on a data set.

    :param torch.Tensor data: held-out examples on the model's device.
    :param int batch_size: examples per batch; the MI's aggregate posterior is
        estimated within each batch (He et al. use the evaluation batch), and the
        per-batch values are averaged weighted by batch size.
    :returns: dict ``{"kl": nats per example, "mi": nats, "active_units": int}``; ``mi`` is NaN
        for a guide whose density can be evaluated only at its own draws (planar and radial flows).
    """
    n = data.shape[0]
    kl_total, mi_total, means = 0.0, 0.0, []
    for i in range(0, n, batch_size):
        x = data[i : i + batch_size]
        q = posterior(guide, x, site, **kwargs)
        kl_total += kl_to_prior(model, guide, x, site, **kwargs).sum().item()
        try:
            mi_total += mutual_information(q) * x.shape[0]
        except NotImplementedError:  # q's density is known only at its own draws (planar, radial flows)
            mi_total = math.nan
        means.append(_posterior_mean(q).reshape(x.shape[0], -1))
    count, _ = active_units(torch.cat(means), threshold)
    return {"kl": kl_total / n, "mi": mi_total / n, "active_units": count}
