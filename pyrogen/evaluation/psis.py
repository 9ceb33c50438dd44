"""Can the importance-sampled log p(x) be trusted? Pareto-smoothed importance sampling (PSIS).

The estimate :math:`\\log \\hat p(x) = \\log \\frac{1}{K}\\sum_k w_k`, with
:math:`w_k = p(x, z_k) / q(z_k \\mid x)` and :math:`z_k \\sim q(z \\mid x)`, is
only as good as the tail of the weights. Fitting a generalized Pareto
distribution to the largest weights gives its shape :math:`\\hat k`; the
weights have :math:`1/\\hat k` finite moments, so (Yao, Vehtari, Simpson and
Gelman 2018, "Yes, but did it work?: evaluating variational inference";
Vehtari, Simpson, Gelman, Yao and Gabry 2024, "Pareto smoothed importance
sampling", JMLR 25(72)):

* :math:`\\hat k < 0.5`: the weights have finite variance; the estimate converges fast;
* :math:`0.5 \\le \\hat k \\le 0.7`: finite mean, infinite variance; usable, slowly converging;
* :math:`\\hat k > 0.7`: the estimate is not to be trusted at any practical K;
  q(z|x) is much narrower than (or misplaced against) the true posterior.

The fit is ArviZ's (:func:`arviz.psislw`); every ArviZ call of this module
is in :func:`pareto_smooth`, the only function to change for ArviZ 1.x
(``arviz_stats.psislw``).
"""

import math

import numpy as np
import torch

from pyrogen.evaluation._arviz import import_arviz
from pyrogen.evaluation.likelihood import log_likelihood

KHAT_THRESHOLD = 0.7
"""Above this :math:`\\hat k` an importance-sampling estimate is unreliable (Yao et al. 2018)."""

KHAT_GOOD = 0.5
"""Below this :math:`\\hat k` the importance weights have finite variance."""

MIN_SAMPLES = 21
"""The fewest draws per example for which ArviZ has enough tail draws (five) to fit the Pareto shape."""


def _check_log_weights(log_weights):
    if not torch.is_tensor(log_weights):
        log_weights = torch.as_tensor(log_weights)
    if log_weights.dim() != 2:
        raise ValueError(f"log_weights must have shape (K, B) (draws, examples), got {tuple(log_weights.shape)}")
    if log_weights.shape[0] < MIN_SAMPLES:
        raise ValueError(
            f"PSIS needs at least {MIN_SAMPLES} importance samples per example to fit the Pareto "
            f"tail, got K = {log_weights.shape[0]}"
        )
    if torch.isnan(log_weights).any():
        raise ValueError("log_weights contain NaN")
    return log_weights


def pareto_smooth(log_weights):
    """Pareto-smoothed log weights and the Pareto shape :math:`\\hat k` of every example.

    Examples whose weights are all equal (to within float rounding: a guide
    equal to the exact posterior) have no tail to fit; their :math:`\\hat k` is
    :math:`-\\infty` and their weights are left as they are. Examples with a
    weight of :math:`+\\infty`, or whose weights are all zero (log weight
    :math:`-\\infty`), have no defined estimate: their :math:`\\hat k` is
    :math:`+\\infty`, above every threshold.

    :param torch.Tensor log_weights: shape ``(K, B)``, K draws for each of B
        examples, as returned by :func:`~pyrogen.evaluation.log_importance_weights`
        or ``log_likelihood(..., return_log_weights=True)``; nats.
    :returns: ``(smoothed, khat)``: the smoothed, unnormalized log weights ``(K, B)``
        (same dtype and device as the input) and :math:`\\hat k` of shape ``(B,)``.
    :raises ValueError: if the shape is not ``(K, B)``, K is below :data:`MIN_SAMPLES`,
        or a weight is NaN.
    """
    az = import_arviz()

    log_weights = _check_log_weights(log_weights)
    lw = log_weights.detach().to("cpu", torch.float64).numpy().T.copy()  # (B, K): ArviZ's layout
    top = lw.max(axis=1, keepdims=True)
    # Float32 rounding of a constant log weight of magnitude m spreads it by about 1e-7 m.
    with np.errstate(invalid="ignore"):  # inf - inf: not constant
        constant = (top - lw.min(axis=1, keepdims=True))[:, 0] <= 1e-6 * np.maximum(1.0, np.abs(top[:, 0]))
    smoothed, khat = lw.copy(), np.full(lw.shape[0], -np.inf)
    # An infinite weight, or no finite weight at all: the estimate is undefined, never good.
    undefined = ~np.isfinite(top[:, 0])
    khat[undefined] = np.inf
    fit = ~constant & ~undefined
    if fit.any():
        smoothed_fit, khat_fit = az.psislw(lw[fit].copy(), reff=1.0, normalize=False)
        smoothed[fit], khat[fit] = smoothed_fit, khat_fit
    smoothed = torch.as_tensor(smoothed.T.copy()).to(log_weights.device, log_weights.dtype)
    return smoothed, torch.as_tensor(khat, dtype=torch.float64)


def pareto_khat(log_weights):
    """The Pareto shape :math:`\\hat k` of each example's importance weights, shape ``(B,)``.

    :param torch.Tensor log_weights: shape ``(K, B)``, nats (see :func:`pareto_smooth`).
    """
    return pareto_smooth(log_weights)[1]


def khat_summary(khat, threshold=KHAT_THRESHOLD):
    """Summarize :math:`\\hat k` over a data set, as written to ``evaluation.json``.

    :param khat: :math:`\\hat k` per example, shape ``(N,)``.
    :param float threshold: the level above which an example's estimate is not trusted.
    :returns: dict with ``num_examples``; ``share_above_threshold`` (the share
        of examples with :math:`\\hat k` > ``threshold`` or not finite), ``share_good``
        (:math:`\\hat k` < 0.5), ``threshold``; ``num_nonfinite`` (examples whose
        :math:`\\hat k` is +inf or NaN: undefined estimates, counted above the
        threshold and never good); ``khat_median`` and ``khat_max`` over the finite
        values (None where there are none); and ``advice``, a
        sentence when any example is above the threshold, else None.
    """
    khat = torch.as_tensor(khat, dtype=torch.float64).reshape(-1)
    if khat.numel() == 0:
        raise ValueError("khat is empty: no examples were evaluated")
    fitted = khat[torch.isfinite(khat)]  # -inf: constant weights, nothing to fit
    nonfinite = torch.isnan(khat) | (khat == math.inf)  # undefined estimates: flagged, never good
    high = ((khat > threshold) | nonfinite).double().mean().item()
    summary = {
        "num_examples": khat.numel(),
        "threshold": threshold,
        "share_above_threshold": high,
        "share_good": ((khat < KHAT_GOOD) & ~nonfinite).double().mean().item(),
        "num_nonfinite": int(nonfinite.sum().item()),
        "khat_median": fitted.median().item() if fitted.numel() else None,
        "khat_max": fitted.max().item() if fitted.numel() else None,
        "advice": None,
    }
    if high > 0:
        summary["advice"] = khat_advice(high, threshold)
        if summary["num_nonfinite"]:
            summary["advice"] += (
                f" {summary['num_nonfinite']} example(s) had an infinite importance weight or none "
                "finite: log p(x, z) or log q(z|x) is infinite there (a draw outside the prior's support?)."
            )
    return summary


KHAT_GRADES = ((0.05, "few"), (0.5, "some"), (1.0, "most"))
"""``(upper share, word)``: the share of examples above the threshold, graded for :func:`khat_advice`
(below 5%: few; below 50%: some; else most)."""


def khat_grade(share):
    """``"few"``, ``"some"`` or ``"most"`` for a share in (0, 1] of examples above the threshold."""
    return next(word for bound, word in KHAT_GRADES if share < bound or bound == 1.0)


def khat_advice(share, threshold=KHAT_THRESHOLD):
    """The sentence about a share in (0, 1] of examples whose :math:`\\hat k` exceeds ``threshold``.

    Graded by :func:`khat_grade`: for few examples (under 5%) it names their estimates as the ones in
    doubt; for some (under 50%) and most it says that the test set's log p(x) is a lower estimate, not a
    converged one, and how to improve the guide. The first clause, up to ``": "``, states the share (the
    command line drops it).
    """
    grade = khat_grade(share)
    head = f"Pareto k-hat > {threshold} for {grade} of the examples ({100 * share:.1f}%): "
    if grade == "few":
        return head + (
            "their importance-sampled log p(x) is not to be trusted (Yao et al. 2018); the other "
            "examples' estimates are."
        )
    if grade == "some":
        return head + (
            "their importance-sampled log p(x) is not to be trusted (Yao et al. 2018), so the test "
            "set's figure is a lower estimate, not a converged one. " + _GUIDE_ADVICE
        )
    return head + (
        "the importance-sampled log p(x) is not to be trusted for most of the test set (Yao et al. "
        "2018): its figure is a lower estimate, not a converged one. " + _GUIDE_ADVICE
    )


_GUIDE_ADVICE = (
    "The guide q(z|x) is narrower than the posterior or misplaced; more importance samples "
    "(--eval-samples) help only slowly, a better guide (more training, IWAE training, a richer "
    "posterior family) helps."
)


def format_khat_summary(summary):
    """One line for the command line: the share of high :math:`\\hat k`, then the advice once, if any."""
    line = (
        f"Pareto k-hat: {100 * summary['share_above_threshold']:.1f}% of "
        f"{summary['num_examples']} examples above {summary['threshold']}"
    )
    if summary["khat_max"] is not None:
        line += f" (median {summary['khat_median']:.2f}, max {summary['khat_max']:.2f})"
    if summary["advice"]:  # the advice's own first clause repeats the share: only its explanation follows
        return f"{line}: {summary['advice'].split(': ', 1)[1]}"
    return line + "."


@torch.no_grad()
def log_likelihood_with_khat(
    model, guide, data, num_samples=1000, batch_size=100, chunk_size=100, progress=False, **kwargs
):
    """Importance-sampled log p(x) and :math:`\\hat k` of every example of a data set.

    The same draws serve both: each batch's ``(K, B)`` log weights from
    :func:`~pyrogen.evaluation.log_likelihood` give the estimate and are then
    Pareto-fitted, so the diagnostic is about the very numbers reported.

    :param torch.Tensor data: N examples, on the model's device.
    :param int num_samples: K draws per example, at least :data:`MIN_SAMPLES`.
    :param bool progress: show a progress bar over the examples, with the time left, and after the
        first batch a line saying how long the whole will take (K = 1000 takes minutes for 10,000
        images on a CPU).
    :returns: dict with ``"log_px"`` (mean over the data set, nats per example),
        ``"log_px_per_example"`` ``(N,)`` and ``"khat"`` ``(N,)``.
    """
    from pyrogen.evaluation.progress import EvaluationProgress

    if num_samples < MIN_SAMPLES:
        raise ValueError(f"num_samples must be at least {MIN_SAMPLES} for PSIS, got {num_samples}")
    log_px, khat = [], []
    with EvaluationProgress(data.shape[0], f"log p(x), K = {num_samples}", enabled=progress) as bar:
        for i in range(0, data.shape[0], batch_size):
            lp, lw = log_likelihood(
                model, guide, data[i : i + batch_size], num_samples, chunk_size, return_log_weights=True, **kwargs
            )
            log_px.append(lp.cpu())
            khat.append(pareto_khat(lw))
            bar.update(lp.shape[0])
    log_px = torch.cat(log_px)
    return {"log_px": log_px.double().mean().item(), "log_px_per_example": log_px, "khat": torch.cat(khat)}


__all__ = [
    "KHAT_GOOD", "KHAT_THRESHOLD", "MIN_SAMPLES", "format_khat_summary", "khat_summary",
    "log_likelihood_with_khat", "pareto_khat", "pareto_smooth",
]  # fmt: skip
