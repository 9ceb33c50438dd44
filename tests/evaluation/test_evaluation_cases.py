"""log p(x) per example whatever the plates, and PSIS k-hat that never calls an undefined estimate good."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.evaluation import elbo, log_likelihood
from pyrogen.evaluation.psis import khat_summary, pareto_khat, pareto_smooth

D = 3


def _exact_log_px(x):
    """z ~ N(0, 1), x_d | z ~ N(z, 1) for d < D: x ~ N(0, I + 11^T)."""
    cov = torch.eye(D, dtype=x.dtype) + torch.ones(D, D, dtype=x.dtype)
    return dist.MultivariateNormal(torch.zeros(D, dtype=x.dtype), cov).log_prob(x)


def _posterior(x):
    """Exact q(z|x) = N(sum(x) / (D + 1), 1 / (D + 1)): every importance weight equals p(x)."""
    return x.sum(-1) / (D + 1), torch.full(x.shape[:1], (D + 1) ** -0.5, dtype=x.dtype)


def _data(n=8):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5


def test_subsampled_data_plate_gives_log_px_per_example():
    # Before the fix the data plate's N/B training scale stayed in: -4035.9 instead of about -28.
    x = _data()
    idx = torch.arange(8)

    def model(x):
        with pyro.plate("data", 60000, subsample=idx):
            z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
            pyro.sample("x", dist.Normal(z.unsqueeze(-1), 1.0).to_event(1), obs=x)

    def guide(x):
        loc, scale = _posterior(x)
        with pyro.plate("data", 60000, subsample=idx):
            pyro.sample("z", dist.Normal(loc, scale))

    torch.testing.assert_close(log_likelihood(model, guide, x, num_samples=5), _exact_log_px(x), rtol=0, atol=1e-9)
    torch.testing.assert_close(elbo(model, guide, x), _exact_log_px(x), rtol=0, atol=1e-9)


def test_feature_plate_inside_data_plate_is_summed_per_example():
    # Before the fix: a reshape RuntimeError (the sample plate collided with the feature plate).
    x = _data()

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
            with pyro.plate("features", D, dim=-2):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x.T)

    def guide(x):
        loc, scale = _posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale))

    torch.testing.assert_close(log_likelihood(model, guide, x, num_samples=5), _exact_log_px(x), rtol=0, atol=1e-9)


def test_no_plate_over_the_examples_is_refused_in_one_line():
    x = _data()

    def model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
        loc = z[..., None, None]
        pyro.sample("x", dist.Normal(loc, 1.0).expand(loc.shape[:-2] + x.shape).to_event(2), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))

    with pytest.raises(
        ValueError,
        match=r"^log p\(x\) per example needs a plate over the 8 examples of x: one "
        r"named 'data', the outermost plate of every observed site, or the one "
        r"named by data_plate=; the pair's plates: none$",
    ):
        log_likelihood(model, guide, x, num_samples=2)


def _weights_with(column):
    lw = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lw[:, 1] = column
    return lw


@pytest.mark.parametrize("case", ["one +inf", "all -inf"])
def test_nonfinite_weights_are_flagged_never_good(case):
    # Before the fix k-hat was -inf ("constant weights") and khat_summary counted it as good.
    column = torch.zeros(40, dtype=torch.float64)
    if case == "one +inf":
        column[3] = math.inf
    else:
        column[:] = -math.inf
    lw = _weights_with(column)
    smoothed, khat = pareto_smooth(lw)
    assert khat[1] == math.inf and torch.isfinite(khat[[0, 2]]).all()
    assert torch.equal(smoothed[:, 1], lw[:, 1])
    summary = khat_summary(khat)
    assert summary["num_nonfinite"] == 1
    assert summary["share_good"] <= 2 / 3 and summary["share_above_threshold"] >= 1 / 3
    assert math.isfinite(summary["khat_max"])
    assert "1 example(s) had an infinite importance weight or none finite" in summary["advice"]


def test_nan_khat_counts_above_the_threshold():
    summary = khat_summary(torch.tensor([0.1, math.nan]))
    assert summary["share_above_threshold"] == 0.5 and summary["share_good"] == 0.5
    assert summary["num_nonfinite"] == 1 and summary["khat_max"] == pytest.approx(0.1)


def test_some_minus_inf_weights_still_fit():
    column = torch.randn(40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    column[:5] = -math.inf  # zero weights: a finite estimate, a tail to fit
    assert torch.isfinite(pareto_khat(_weights_with(column))).all()
