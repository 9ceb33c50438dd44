"""The posterior mean space (He et al. 2019, Figures 1 and 3) on a linear-Gaussian model with a closed form."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.evaluation.posterior_mean import (
    default_grid,
    grid_posterior_mean,
    importance_posterior_mean,
    lag,
    log_joint,
    posterior_mean_space,
)
from pyrogen.plotting import plot_posterior_mean_space

SIGMA = 0.7


class LinearGaussian:
    """z ~ N(0, I_D), x | z ~ N(W z, σ² I_M); guide q(z|x) = N(A x + b, s² I) with chosen A, b, s.

    The true posterior is Gaussian with precision P = I + Wᵀ W / σ² and mean
    P⁻¹ Wᵀ x / σ².
    """

    def __init__(self, latent_dim, obs_dim=3, seed=0, offset=0.3, guide_scale=1.0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(obs_dim, latent_dim, generator=g, dtype=torch.float64)
        self.D = latent_dim
        self.precision = torch.eye(latent_dim, dtype=torch.float64) + self.W.T @ self.W / SIGMA**2
        self.A = torch.linalg.solve(self.precision, self.W.T) / SIGMA**2  # the exact posterior-mean map
        self.offset, self.guide_scale = offset, guide_scale

    def posterior_mean(self, x):
        return x @ self.A.T

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.D, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T, SIGMA).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.posterior_mean(x) + self.offset, self.guide_scale).to_event(1))


def _data(lg, n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, lg.D, generator=g, dtype=torch.float64)
    return z @ lg.W.T + SIGMA * torch.randn(n, lg.W.shape[0], generator=g, dtype=torch.float64)


def test_log_joint_is_the_model_density():
    lg = LinearGaussian(2)
    x = _data(lg, n=5)
    z = torch.randn(4, 5, 2, dtype=torch.float64)
    expected = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) + dist.Normal(z @ lg.W.T, SIGMA).log_prob(x).sum(-1)
    torch.testing.assert_close(log_joint(lg.model, x, z), expected)


def test_grid_posterior_mean_equals_the_closed_form_for_a_1d_latent():
    lg = LinearGaussian(1)
    x = _data(lg)
    exact = lg.posterior_mean(x)[:, 0]
    assert exact.abs().max() > 1.0  # the posterior means spread, so the check is not trivial
    # He et al.'s grid, [-20, 20] in steps of 0.1: the posterior sd here is about 0.3, and the
    # Riemann sum of a smooth Gaussian on a uniform grid is exact far below 1e-6
    torch.testing.assert_close(grid_posterior_mean(lg.model, x, default_grid().double()), exact, rtol=0, atol=1e-6)
    points = posterior_mean_space(lg.model, lg.guide, x, batch_size=16)
    assert points["method"] == "grid"
    torch.testing.assert_close(points["p_mean"], exact, rtol=0, atol=1e-6)
    torch.testing.assert_close(points["q_mean"], exact + 0.3, rtol=0, atol=1e-12)  # the guide's mean, offset


def test_importance_posterior_mean_approaches_the_closed_form_for_a_2d_latent():
    lg = LinearGaussian(2, obs_dim=4, offset=0.3, guide_scale=0.8)
    x = _data(lg, n=30)
    exact = lg.posterior_mean(x)
    pyro.set_rng_seed(0)
    estimate = importance_posterior_mean(lg.model, lg.guide, x, num_samples=4000)
    # self-normalised IS with a proposal offset by 0.3 from a posterior of sd ~0.4: with K = 4000 the
    # error is a few thousandths; 0.03 is 10x that, and well below the 0.3 offset of the guide
    assert (estimate - exact).abs().max() < 0.03
    points = posterior_mean_space(lg.model, lg.guide, x, num_samples=4000)
    assert points["method"] == "importance"
    assert (points["p_mean"] - exact[:, 0]).abs().max() < 0.03
    assert (points["q_mean"] - exact[:, 0]).abs().min() > 0.29
    with pytest.raises(Exception, match="1-d latent"):
        posterior_mean_space(lg.model, lg.guide, x, method="grid")


def test_lag_summary_and_the_picture(tmp_path):
    lg = LinearGaussian(1)
    x = _data(lg, n=60)
    points = posterior_mean_space(lg.model, lg.guide, x)
    summary = lag(points)
    assert summary["slope"] == pytest.approx(1.0, abs=1e-5)  # q's mean = the model's + 0.3: on a parallel line
    collapsed = {"q_mean": torch.zeros(60), "p_mean": points["p_mean"]}
    assert lag(collapsed)["slope"] == 0.0 and lag(collapsed)["q_spread"] == 0.0
    path = plot_posterior_mean_space(
        {"standard": {"iter 1": collapsed, "iter 2": points}, "aggressive": {"iter 1": points}},
        tmp_path / "pm.png",
        cell=2.0,
        dpi=50,
    )
    from PIL import Image

    with Image.open(path) as im:
        assert im.size == (round((2 * 2.0 + 0.6) * 50), round((2 * 2.0 + 0.4) * 50))  # 2 columns, 2 rows
