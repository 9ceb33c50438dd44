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

  with the aggregate posterior :math:`q(z) = \\frac{1}{N}\\sum_j q(z \\mid x_j)`
  over all N held-out examples (:func:`aggregate_mutual_information`,
  computed in chunks) and one draw :math:`z_i \\sim q(z \\mid x_i)` per
  example. The estimate is at most :math:`\\log N` (its *cap*, reported as
  ``mi_cap``) and may come out slightly negative. He et al.'s estimator
  (:func:`mutual_information`) takes the aggregate from one minibatch, so it
  saturates at :math:`\\log B` (4.6 nats for B = 100, 2.8 for their B = 16);
  nats;
* **active units** :math:`A_u = \\#\\{d : \\operatorname{Var}_x(\\mathbb{E}_{q(z|x)}[z_d]) \\ge 0.01\\}`
  (Burda et al. 2016), the latent dimensions whose posterior mean moves with x.
"""

import math

import torch
from pyro import poutine
from torch.distributions import Independent, Normal, kl_divergence

from pyrogen.errors import DataError
from pyrogen.evaluation.progress import EvaluationProgress
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
def aggregate_mutual_information(posteriors, on_block=None):
    """:math:`I_q(x; z)` with the aggregate posterior over *all* examples: ``(mi, cap)``, nats.

    .. math:: \\hat I = \\frac{1}{N} \\sum_i \\Big[\\log q(z_i \\mid x_i)
       - \\log \\frac{1}{N} \\sum_j q(z_i \\mid x_j)\\Big], \\quad z_i \\sim q(z \\mid x_i),

    the N x N pairs evaluated one block of posteriors at a time (memory
    ``O(B_i N)``); for diagonal Normal posteriors (``Normal(loc, scale).to_event(1)``,
    pyrogen's default guide) as two matrix products in float64, for any other family
    from its ``log_prob`` of every pair. Each term is at most :math:`\\log N` (the j = i term alone
    gives :math:`q(z_i|x_i)/N`), so ``cap`` = log N bounds the estimate; read a
    value near the cap as "at least this much".

    :param posteriors: a list of distributions q(z|x) for consecutive blocks of
        examples, each with batch shape ``(B_k,)`` (e.g. :func:`posterior` of each
        chunk of the data), or a single one.
    :param on_block: called with each block's size once its terms are summed (progress), or None.
    """
    if not isinstance(posteriors, (list, tuple)):
        posteriors = [posteriors]
    for q in posteriors:
        if len(q.batch_shape) != 1:
            raise DataError(f"each q must have batch shape (B,), got {tuple(q.batch_shape)}")
    n = sum(q.batch_shape[0] for q in posteriors)
    normal = [_diagonal_normal(q) for q in posteriors]
    quadratic = _NormalPairs(normal) if all(p is not None for p in normal) else None
    total, start = 0.0, 0
    for q_i in posteriors:
        z = q_i.sample()  # (B_i, D): one draw per example
        if quadratic is not None:
            cross = quadratic.log_prob(z)  # (B_i, N), float64
            own = cross[:, start : start + z.shape[0]].diagonal()
        else:
            own = q_i.log_prob(z)
            cross = torch.cat([q_j.log_prob(z.unsqueeze(1)) for q_j in posteriors], dim=1)  # (B_i, N)
        total += (own - (torch.logsumexp(cross, dim=1) - math.log(n))).sum().item()
        start += z.shape[0]
        if on_block is not None:
            on_block(q_i.batch_shape[0])
    return total / n, math.log(n)


@torch.no_grad()
def _diagonal_normal(q):
    """``(loc, scale)``, each ``(B, D)``, of a q(z|x) that is a diagonal Normal over one event dimension
    (``Normal(loc, scale).to_event(1)``); None for any other family."""
    if not isinstance(q, Independent) or q.reinterpreted_batch_ndims != 1:
        return None
    base = q.base_dist
    if type(base).log_prob is not Normal.log_prob or len(q.batch_shape) != 1 or len(q.event_shape) != 1:
        return None
    shape = q.batch_shape + q.event_shape
    return base.loc.expand(shape), base.scale.expand(shape)


class _NormalPairs:
    """log q(z_i | x_j) of draws z_i against N diagonal Normal posteriors, as matrix products.

    With :math:`a_j = \\sigma_j^{-2}` and :math:`b_j = \\mu_j \\sigma_j^{-2}`,

    .. math:: \\log q(z_i \\mid x_j) = -\\tfrac12 \\big[(z_i^2)^\\top a_j - 2 z_i^\\top b_j
       + \\textstyle\\sum_d \\mu_{jd}^2 a_{jd}\\big] - \\sum_d \\log \\sigma_{jd} - \\tfrac D2 \\log 2\\pi:

    two (B_i x D) by (D x N) products in float64 (the expanded square cancels terms as large as
    :math:`\\mu^2/\\sigma^2`, which float64 holds to far below a nat) instead of a (B_i, N, D) tensor
    of differences, about 100 times faster on a CPU for N = 10,000.
    """

    def __init__(self, pairs):
        loc = torch.cat([loc for loc, _ in pairs]).double()
        scale = torch.cat([scale for _, scale in pairs]).double()
        self.a = scale.pow(-2)  # (N, D)
        self.b = loc * self.a
        dim = loc.shape[1]
        self.c = (loc * self.b).sum(1) + 2 * scale.log().sum(1) + dim * math.log(2 * math.pi)  # (N,)

    def log_prob(self, z):
        """``(B_i, N)``: log q(z_i | x_j) in nats, float64."""
        z = z.double()
        return -0.5 * (z.square() @ self.a.T - 2 * z @ self.b.T + self.c)


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
def collapse_diagnostics(
    model, guide, data, batch_size=500, site="z", threshold=0.01, mi="full", progress=False, **kwargs
):
    """KL, mutual information and active units of a model/guide pair on a data set.

    :param torch.Tensor data: held-out examples on the model's device.
    :param int batch_size: examples per chunk of computation.
    :param str mi: ``"full"`` -- the aggregate posterior over the whole data set
        (:func:`aggregate_mutual_information`, capped at log N); ``"batch"`` --
        He et al.'s per-batch estimate (:func:`mutual_information` of each chunk,
        averaged weighted by size, capped at log ``batch_size``).
    :param bool progress: show a progress bar (each example counted once for its posterior and once for
        its aggregate-posterior terms), and a line with the estimated time when it is long.
    :returns: dict ``{"kl": nats per example, "mi": nats, "mi_cap": nats (the
        estimator's ceiling), "active_units": int}``; ``mi`` is NaN for a guide whose
        density can be evaluated only at its own draws (planar and radial flows).

    A site whose guide distribution depends on an earlier draw (``"z2"`` of
    :class:`~pyrogen.models.TwoLayerVAE`, drawn from :math:`q(z_2 \\mid z_1)`) is
    diagnosed at **one** draw :math:`z_1 \\sim q(z_1 \\mid x)` per example, not through
    the marginal :math:`q(z_2 \\mid x) = \\int q(z_2 \\mid z_1)\\, q(z_1 \\mid x)\\, dz_1`,
    which has no closed form: the KL is then a one-draw estimate of
    :math:`\\mathbb{E}_{q(z_1|x)} \\mathrm{KL}(q(z_2 \\mid z_1) \\,\\|\\, p(z_2))`, an upper
    bound on :math:`\\mathrm{KL}(q(z_2 \\mid x) \\,\\|\\, p(z_2))` (convexity of the KL); the
    MI, with q(z2|z1) at the drawn z1 in place of q(z2|x), estimates
    :math:`I_q(z_1; z_2) \\ge I_q(x; z_2)` (z2 depends on x only through z1);
    and the posterior means :math:`\\mathbb{E}[z_2 \\mid z_1]` vary with the z1 draw as well
    as with x, so active units of z2 may be over-counted. The training loop reports the
    lower site ``"z1"`` only, whose q(z1|x) depends on x alone.
    """
    if mi not in ("full", "batch"):
        raise ValueError(f"mi must be 'full' or 'batch', got {mi!r}")
    n, passes = data.shape[0], 2 if mi == "full" else 1
    what = "KL, MI and active units" + (" (two passes)" if passes == 2 else "")
    with EvaluationProgress(n * passes, what, enabled=progress) as bar:
        kl_total, mi_total, means, qs = _diagnose_chunks(model, guide, data, batch_size, site, mi, bar, **kwargs)
        count, _ = active_units(torch.cat(means), threshold)
        if mi == "batch":
            value, cap = mi_total / n, math.log(min(batch_size, n))
        else:
            try:
                value, cap = aggregate_mutual_information(qs, on_block=bar.update)
            except NotImplementedError:  # planar and radial flows: no density away from q's own draws
                value, cap = math.nan, math.log(n)
    return {"kl": kl_total / n, "mi": value, "mi_cap": cap, "active_units": count}


def _diagnose_chunks(model, guide, data, batch_size, site, mi, bar, **kwargs):
    """The per-chunk pass of :func:`collapse_diagnostics`: ``(KL sum, MI sum, posterior means, posteriors)``."""
    n = data.shape[0]
    kl_total, mi_total, means, qs = 0.0, 0.0, [], []
    for i in range(0, n, batch_size):
        x = data[i : i + batch_size]
        q = posterior(guide, x, site, **kwargs)
        kl_total += kl_to_prior(model, guide, x, site, **kwargs).sum().item()
        if mi == "batch":
            try:
                mi_total += mutual_information(q) * x.shape[0]
            except NotImplementedError:  # q's density is known only at its own draws (planar, radial flows)
                mi_total = math.nan
        else:
            qs.append(q)
        means.append(_posterior_mean(q).reshape(x.shape[0], -1))
        bar.update(x.shape[0])
    return kl_total, mi_total, means, qs
