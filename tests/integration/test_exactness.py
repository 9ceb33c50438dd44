"""Closed forms: probabilistic PCA, where log p(x), the posterior and the ELBO are known exactly."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyrogen.evaluation import elbo, log_importance_weights, log_likelihood
from pyrogen.infer import ReparamTrace_ELBO
from pyrogen.models import VAE

D, Z, SIGMA = 5, 2, 0.5


class PPCA:
    """z ~ N(0, I_Z), x | z ~ N(W z + b, SIGMA^2 I_D) (Tipping and Bishop 1999)."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, Z, generator=g, dtype=torch.float64)
        self.b = torch.randn(D, generator=g, dtype=torch.float64)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, SIGMA).to_event(1), obs=x)

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + SIGMA**2 * torch.eye(D, dtype=x.dtype)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        """Exact q(z|x) = N(M^-1 W^T (x - b) / s^2, M^-1), M = I + W^T W / s^2."""
        precision = torch.eye(Z, dtype=x.dtype) + self.W.T @ self.W / SIGMA**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov.T / SIGMA**2
        return mean, cov

    def exact_guide(self, x):
        mean, cov = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean, cov))

    def diagonal_guide(self, loc, scale):
        def guide(x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

        return guide

    def closed_form_elbo(self, x, loc, scale):
        """E_q[log p(x|z)] - KL(q || p) for q = N(loc, diag scale^2), exactly."""
        mean_x = loc @ self.W.T + self.b
        expected_loglik = dist.Normal(mean_x, SIGMA).log_prob(x).sum(-1) - ((self.W**2) @ (scale**2).T).T.sum(-1) / (
            2 * SIGMA**2
        )
        kl = 0.5 * (loc**2 + scale**2 - 1 - torch.log(scale**2)).sum(-1)
        return expected_loglik - kl


@pytest.fixture
def ppca():
    m = PPCA()
    x = m.b + torch.randn(4, Z, dtype=torch.float64) @ m.W.T + SIGMA * torch.randn(4, D, dtype=torch.float64)
    return m, x


def test_elbo_equals_log_px_when_guide_is_exact_posterior(ppca):
    m, x = ppca
    log_w = log_importance_weights(m.model, m.exact_guide, x, num_samples=50)
    # With q(z|x) = p(z|x) every weight is p(x): no Monte Carlo error at all.
    torch.testing.assert_close(log_w, m.exact_log_px(x).expand(50, -1), rtol=0, atol=1e-9)
    torch.testing.assert_close(elbo(m.model, m.exact_guide, x), m.exact_log_px(x), rtol=0, atol=1e-9)


def test_importance_sampled_log_px_converges_to_exact(ppca):
    m, x = ppca
    mean, cov = m.posterior(x)
    # A mismatched guide: right centre, twice the posterior's standard deviations.
    guide = m.diagonal_guide(mean, 2 * cov.diagonal().sqrt())
    exact = m.exact_log_px(x)
    errors = [(log_likelihood(m.model, guide, x, num_samples=k) - exact).abs().max().item() for k in (10, 10_000)]
    assert errors[1] < 0.01  # nats
    assert errors[1] < errors[0]


def test_estimate_is_above_elbo_and_rises_with_k(ppca):
    m, x = ppca
    mean, cov = m.posterior(x)
    x = x.repeat(50, 1)  # average over many independent estimates of the same examples
    guide = m.diagonal_guide((mean + 0.5).repeat(50, 1), cov.diagonal().sqrt())
    estimates = [log_likelihood(m.model, guide, x, num_samples=k).mean().item() for k in (1, 10, 100, 1000)]
    assert all(a < b for a, b in zip(estimates, estimates[1:])), estimates
    assert estimates[-1] <= m.exact_log_px(x).mean().item() + 1e-3


def test_analytic_gaussian_kl_is_the_closed_form():
    g = torch.Generator().manual_seed(1)
    mu, sigma = torch.randn(7, generator=g), torch.rand(7, generator=g) + 0.1
    closed_form = 0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2)).sum()
    kl = kl_divergence(dist.Normal(mu, sigma).to_event(1), dist.Normal(torch.zeros(7), 1.0).to_event(1))
    torch.testing.assert_close(kl, closed_form)


@pytest.mark.parametrize("estimator", [ReparamTrace_ELBO, Trace_ELBO, TraceMeanField_ELBO])
def test_elbo_estimators_agree_with_closed_form_in_expectation(ppca, estimator):
    m, x = ppca
    loc = torch.zeros(4, Z, dtype=torch.float64) + 0.3
    scale = torch.full((4, Z), 0.7, dtype=torch.float64)
    exact = m.closed_form_elbo(x, loc, scale).sum().item()
    n = 4000
    loss = estimator(num_particles=n).loss(m.model, m.diagonal_guide(loc, scale), x)
    # Monte Carlo standard error of the mean over n particles, estimated from 200 draws.
    per_draw = [-estimator().loss(m.model, m.diagonal_guide(loc, scale), x) for _ in range(200)]
    se = torch.tensor(per_draw).std().item() / math.sqrt(n)
    assert abs(-loss - exact) < 4 * se + 1e-6


def test_reparam_trace_elbo_matches_pyro_trace_elbo_exactly():
    vae = VAE(latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.4))
    results = []
    for estimator in (Trace_ELBO(num_particles=2), ReparamTrace_ELBO(num_particles=2)):
        vae.zero_grad()
        pyro.set_rng_seed(3)
        loss = estimator.differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in vae.parameters()]))
    (l1, g1), (l2, g2) = results
    assert torch.equal(l1, l2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_reparam_trace_elbo_refuses_non_reparameterized_guide():
    def model():
        pyro.sample("z", dist.Poisson(3.0))

    def guide():
        pyro.sample("z", dist.Poisson(pyro.param("rate", torch.tensor(2.0))))

    with pytest.raises(ValueError, match="guide site 'z' draws from Poisson, which is not reparameterized"):
        ReparamTrace_ELBO().differentiable_loss(model, guide)
