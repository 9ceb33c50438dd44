"""benchmarks/count_data.py's yardsticks: the discretised log1p-Normal is a pmf of the counts, and the
adjusted Rand index has its known values."""

import math

import pytest
import torch
from scipy import stats

from benchmarks.count_data import Log1pNormal, adjusted_rand_index, simulate


@pytest.mark.parametrize("loc, scale", [(0.0, 0.3), (1.5, 0.05), (3.0, 1.0), (-2.0, 0.5), (6.0, 0.01)])
def test_the_discretised_log1p_normal_sums_to_one_over_the_counts(loc, scale):
    k = torch.arange(0, 20000, dtype=torch.float64)
    d = Log1pNormal(torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64), True)
    log_p = d.log_prob(k)
    assert torch.isfinite(log_p[:50]).all()
    assert abs(log_p.logsumexp(0).item()) < 1e-6


def test_the_discretised_log1p_normal_is_the_normal_mass_of_each_bin():
    loc, scale = 1.2, 0.4
    d = Log1pNormal(torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64), True)
    for k in [0, 1, 2, 5, 9]:
        lo = -math.inf if k == 0 else math.log1p(k - 0.5)
        mass = stats.norm(loc, scale).cdf(math.log1p(k + 0.5)) - stats.norm(loc, scale).cdf(lo)
        assert d.log_prob(torch.tensor(float(k), dtype=torch.float64)).item() == pytest.approx(math.log(mass), rel=1e-9)
    # the continuous version is the density of y = log1p(x) times the Jacobian 1 / (1 + x)
    c = Log1pNormal(torch.tensor(loc), torch.tensor(scale), False)
    assert c.log_prob(torch.tensor(3.0)).item() == pytest.approx(
        stats.norm(loc, scale).logpdf(math.log(4.0)) - math.log(4.0), rel=1e-5
    )


def test_adjusted_rand_index():
    assert adjusted_rand_index([0, 0, 1, 1, 2, 2], [5, 5, 3, 3, 9, 9]) == pytest.approx(1.0)
    # a worked example of Hubert and Arabie's index by hand
    a, b = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]
    # pairs together in both 2, in a 6, in b 3, of 15: (2 - 6 * 3 / 15) / ((6 + 3) / 2 - 6 * 3 / 15)
    assert adjusted_rand_index(a, b) == pytest.approx(0.8 / 3.3)
    g = torch.Generator().manual_seed(0)
    chance = [
        adjusted_rand_index(
            torch.randint(4, (2000,), generator=g).numpy(), torch.randint(4, (2000,), generator=g).numpy()
        )
        for _ in range(5)
    ]
    assert max(abs(c) for c in chance) < 0.01


def test_the_simulated_counts_follow_their_negative_binomial():
    x, labels, z, library, theta = simulate(4000, 3, 2, 2, seed=0)
    assert x.shape == (4000, 3) and (x == x.round()).all() and (x >= 0).all()
    assert set(labels.tolist()) == {0, 1}
    assert torch.allclose(x.sum(1).mean(), library.mean(), rtol=0.05)  # E[sum_g x_g] = l
