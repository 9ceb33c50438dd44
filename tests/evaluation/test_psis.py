"""PSIS k-hat of importance weights: exact, overdispersed and badly mismatched guides of a linear-Gaussian model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.evaluation import log_likelihood
from pyrogen.evaluation.psis import (
    KHAT_THRESHOLD,
    MIN_SAMPLES,
    format_khat_summary,
    khat_summary,
    log_likelihood_with_khat,
    pareto_khat,
    pareto_smooth,
)

D, Z, SIGMA, B, K = 6, 2, 0.5, 40, 1000


class LinearGaussian:
    """z ~ N(0, I), x | z ~ N(W z + b, SIGMA^2 I): the posterior p(z|x) is Gaussian in closed form.

    p(z|x) = N(S W^T (x - b) / SIGMA^2, S) with S = (I + W^T W / SIGMA^2)^{-1}. The guide
    is that posterior with its covariance scaled by ``var_scale`` and its mean moved by ``shift``.
    """

    def __init__(self, var_scale=1.0, shift=0.0):
        g = torch.Generator().manual_seed(1)
        self.W = torch.randn(D, Z, generator=g, dtype=torch.float64)
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.cov = torch.linalg.inv(torch.eye(Z, dtype=torch.float64) + self.W.T @ self.W / SIGMA**2)
        self.var_scale, self.shift = var_scale, shift

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, SIGMA).to_event(1), obs=x)

    def guide(self, x):
        mean = (x - self.b) @ self.W @ self.cov / SIGMA**2 + self.shift
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean, self.var_scale * self.cov))

    def data(self, n):
        g = torch.Generator().manual_seed(2)
        z = torch.randn(n, Z, generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + SIGMA * torch.randn(n, D, generator=g, dtype=torch.float64)

    def log_px(self, x):
        cov = self.W @ self.W.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)


def _khat(lg):
    x = lg.data(B)
    _, lw = log_likelihood(lg.model, lg.guide, x, K, return_log_weights=True)
    return pareto_khat(lw)


def test_exact_posterior_guide_has_constant_weights_and_low_khat():
    lg = LinearGaussian()
    x = lg.data(B)
    estimate, lw = log_likelihood(lg.model, lg.guide, x, K, return_log_weights=True)
    # q = p(z|x): every weight equals p(x), so one draw gives log p(x) exactly.
    torch.testing.assert_close(estimate, lg.log_px(x), rtol=0, atol=1e-9)
    khat = pareto_khat(lw)
    assert khat.shape == (B,)
    assert (khat < 0.5).all()


def test_overdispersed_guide_has_bounded_weights_and_khat_below_half():
    # q wider than p(z|x) (covariance x 2): w = p/q is bounded, the Pareto shape is <= 0.
    khat = _khat(LinearGaussian(var_scale=2.0))
    assert torch.isfinite(khat).all()
    assert (khat < 0.5).all(), khat.max()


def test_badly_mismatched_guide_has_khat_above_threshold():
    # q 5x narrower (covariance / 25) and shifted: w has tail index 1 - 1/25 = 0.96 per dimension.
    khat = _khat(LinearGaussian(var_scale=0.04, shift=0.5))
    assert khat.median() > KHAT_THRESHOLD, khat
    summary = khat_summary(khat)
    assert summary["share_above_threshold"] > 0.9
    assert "not to be trusted" in summary["advice"]


def test_smoothing_only_touches_the_tail_and_keeps_shape():
    lw = torch.randn(200, 3) * 2.0
    smoothed, khat = pareto_smooth(lw)
    assert smoothed.shape == lw.shape and smoothed.dtype == lw.dtype and khat.shape == (3,)
    # PSIS replaces only the largest M = ceil(min(K/5, 3 sqrt(K))) = 40 weights of each column.
    changed = (smoothed - lw).abs() > 1e-9
    assert changed.sum(0).le(40).all()
    assert (smoothed <= lw.max(0).values + 1e-9).all()  # truncated at the largest raw weight


def test_errors_name_the_input():
    with pytest.raises(ValueError, match=r"log_weights must have shape \(K, B\).*got \(5,\)"):
        pareto_khat(torch.zeros(5))
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} importance samples.*got K = 20"):
        pareto_khat(torch.randn(20, 2))
    with pytest.raises(ValueError, match="NaN"):
        pareto_khat(torch.full((30, 2), math.nan))


def test_summary_and_data_set_evaluation():
    lg = LinearGaussian(var_scale=0.04, shift=0.5)
    x = lg.data(30)
    out = log_likelihood_with_khat(lg.model, lg.guide, x, num_samples=100, batch_size=7)
    assert out["khat"].shape == (30,) and out["log_px_per_example"].shape == (30,)
    assert out["log_px"] == pytest.approx(out["log_px_per_example"].mean().item())
    assert out["log_px"] < lg.log_px(x).mean().item()  # a poor guide's estimate falls short
    summary = khat_summary(torch.tensor([0.1, 0.6, 0.8, 1.2]))
    assert summary["share_above_threshold"] == 0.5 and summary["share_good"] == 0.25
    assert summary["khat_max"] == pytest.approx(1.2) and summary["num_examples"] == 4
    text = format_khat_summary(summary)
    assert text.startswith("Pareto k-hat: 50.0% of 4 examples above 0.7 (median")
    # The share is stated once, followed by the advice's explanation: one line.
    assert text.count("50.0%") == 1 and "\n" not in text and "not to be trusted" in text
    calm = khat_summary(torch.tensor([-math.inf, -math.inf]))
    assert calm["advice"] is None and calm["khat_max"] is None and calm["share_good"] == 1.0
    with pytest.raises(ValueError, match="num_samples must be at least 21"):
        log_likelihood_with_khat(lg.model, lg.guide, x, num_samples=10)


def test_data_set_evaluation_shows_a_bar_with_the_time_left(capsys):
    lg = LinearGaussian()
    log_likelihood_with_khat(lg.model, lg.guide, lg.data(30), num_samples=50, batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert "log p(x), K = 50" in err and "/30 [" in err and "<" in err  # tqdm's done/total [elapsed<left]
    log_likelihood_with_khat(lg.model, lg.guide, lg.data(30), num_samples=50, batch_size=10)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "above, grade, lower_estimate",
    [
        (1, "few", False),
        (4, "few", False),
        (5, "some", True),
        (49, "some", True),
        (50, "most", True),
        (81, "most", True),
        (100, "most", True),
    ],
)
def test_the_advice_is_graded_by_the_share_above_the_threshold(above, grade, lower_estimate):
    """Issue 27: the sentence at 1% of the examples is not the one at 81% (few < 5% <= some < 50% <= most)."""
    summary = khat_summary(torch.tensor([0.9] * above + [0.2] * (100 - above)))
    advice = summary["advice"]
    assert advice.startswith(f"Pareto k-hat > 0.7 for {grade} of the examples ({above:.1f}%): "), advice
    assert ("a lower estimate, not a converged one" in advice) == lower_estimate
    assert ("a better guide" in advice) == lower_estimate and "not to be trusted" in advice
    line = format_khat_summary(summary)
    assert line.count(f"{above:.1f}%") == 1 and "\n" not in line
