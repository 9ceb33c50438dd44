"""TwoLayerVAE: the IWAE paper's two stochastic layers, checked against a linear-Gaussian closed form.

With one-dimensional z1 and z2, linear networks and a fixed-scale Gaussian
likelihood, the model is linear-Gaussian: log p(x) and both posterior factors
p(z1|x), p(z2|z1) are Gaussians whose parameters are linear in their inputs,
so the guide can be set to the exact posterior and every importance weight
equals p(x).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.distributions.likelihoods import NormalLikelihood
from pyrogen.evaluation import elbo, evaluate_dataset, log_importance_weights, log_likelihood, log_likelihood_with_khat
from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.infer import IWAE_ELBO
from pyrogen.models import TwoLayerVAE
from pyrogen.testing import check_model_guide

D, SIGMA = 4, 0.3
A_, C_, S1 = 1.5, 0.4, 0.6  # z1 | z2 ~ N(A_ z2 + C_, S1^2)


def _set_linear(head, weight, bias, log_scale):
    """A ParameterHead (loc, scale = exp(...)) with loc = weight @ input + bias and a constant scale."""
    with torch.no_grad():
        head.layers["loc"].weight.copy_(weight)
        head.layers["loc"].bias.copy_(bias)
        head.layers["scale"].weight.zero_()
        head.layers["scale"].bias.fill_(log_scale)


@pytest.fixture
def linear_two_layer():
    torch.set_default_dtype(torch.float64)
    try:
        vae = TwoLayerVAE(
            latent_dims=(1, 1),
            image_shape=(1, 1, D),
            hidden=((), ()),
            likelihood=NormalLikelihood(scale="fixed", fixed_scale=SIGMA),
        )
    finally:
        torch.set_default_dtype(torch.float32)
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, 1, generator=g, dtype=torch.float64)  # x | z1 ~ N(W z1 + b, SIGMA^2 I)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    with torch.no_grad():
        vae.decoder1.net[0].weight.copy_(W)
        vae.decoder1.net[0].bias.copy_(b)
    _set_linear(
        vae.decoder2[1],
        torch.tensor([[A_]], dtype=torch.float64),
        torch.tensor([C_], dtype=torch.float64),
        math.log(S1),
    )
    # p(z1 | x): prior N(C_, v1), v1 = A_^2 + S1^2; likelihood through W
    v1 = A_**2 + S1**2
    post_var = 1 / (1 / v1 + (W.T @ W).item() / SIGMA**2)
    _set_linear(
        vae.encoder1[1],
        post_var * W.T / SIGMA**2,
        post_var * (C_ / v1 - (W.T @ b) / SIGMA**2),
        0.5 * math.log(post_var),
    )
    # p(z2 | z1) = p(z2 | z1, x): prior N(0, 1), z1 = A_ z2 + C_ + S1 eps
    var2 = 1 / (1 + A_**2 / S1**2)
    _set_linear(
        vae.encoder2[1],
        torch.tensor([[var2 * A_ / S1**2]], dtype=torch.float64),
        torch.tensor([-var2 * A_ * C_ / S1**2], dtype=torch.float64),
        0.5 * math.log(var2),
    )
    marginal = dist.MultivariateNormal(W[:, 0] * C_ + b, v1 * W @ W.T + SIGMA**2 * torch.eye(D, dtype=torch.float64))
    x = marginal.sample((6,)).reshape(6, 1, 1, D)
    return vae, x, marginal.log_prob(x.reshape(6, D))


def test_importance_weights_are_exactly_log_px_at_the_exact_two_layer_posterior(linear_two_layer):
    vae, x, exact = linear_two_layer
    log_w = log_importance_weights(vae.model, vae.guide, x, num_samples=20)
    # q(z1|x) q(z2|z1) = p(z1, z2 | x): every weight is p(x), whatever z1 and z2 were drawn
    torch.testing.assert_close(log_w, exact.expand(20, -1), rtol=0, atol=1e-9)
    torch.testing.assert_close(log_likelihood(vae.model, vae.guide, x, num_samples=7), exact, rtol=0, atol=1e-9)
    assert IWAE_ELBO(num_particles=3).loss(vae.model, vae.guide, x) == pytest.approx(-exact.sum().item(), abs=1e-8)
    result = evaluate_dataset(vae.model, vae.guide, x, batch_size=4, num_samples=5)
    assert result["elbo"] == pytest.approx(exact.mean().item(), abs=1e-9)
    assert result["log_px"] == pytest.approx(exact.mean().item(), abs=1e-9)


def test_log_px_of_a_mismatched_two_layer_guide_converges_and_psis_reads_both_sites(linear_two_layer):
    vae, x, exact = linear_two_layer
    shift = 0.1  # move q(z2|z1) off the posterior: the weights now vary with z2
    with torch.no_grad():
        vae.encoder2[1].layers["loc"].bias.add_(shift)
    var2 = 1 / (1 + A_**2 / S1**2)
    # the ELBO falls short of log p(x) by E KL(q(z2|z1) || p(z2|z1)) = shift^2 / (2 var2) = 0.092 nats;
    # log w - log p(x) has variance shift^2 / var2 = 0.18, so 2000 draws x 6 examples give a SE of 0.004
    gap = (exact - elbo(vae.model, vae.guide, x, num_particles=2000)).mean().item()
    assert abs(gap - shift**2 / (2 * var2)) < 0.015
    # weights w / p(x) are log-normal with sigma^2 = 0.18: K = 20000 has a SD of 0.003 nats
    estimate = log_likelihood(vae.model, vae.guide, x, num_samples=20000, chunk_size=5000)
    assert (estimate - exact).abs().max().item() < 0.015
    khat = log_likelihood_with_khat(vae.model, vae.guide, x, num_samples=200)["khat"]
    assert torch.isfinite(khat).all() and (khat < 0.7).all()  # light-tailed weights, fitted per example


def test_collapse_diagnostics_on_each_site():
    vae = TwoLayerVAE(latent_dims=(6, 3), hidden=((16,), (8,)))
    x = torch.bernoulli(torch.full((20, 1, 28, 28), 0.3))
    for site, dim in (("z1", 6), ("z2", 3)):
        result = collapse_diagnostics(vae.model, vae.guide, x, batch_size=10, site=site)
        assert result["kl"] > 0 and math.isfinite(result["mi"])
        assert 0 <= result["active_units"] <= dim


@pytest.mark.parametrize("loss", [None, IWAE_ELBO(num_particles=5, dreg=True)], ids=["trace_elbo", "iwae_dreg"])
def test_two_layer_vae_passes_check_model_guide(loss, one_thread):
    vae = TwoLayerVAE(latent_dims=(6, 3), hidden=((32,), (16,)))
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    before, after = check_model_guide(vae.model, vae.guide, x, loss=loss)
    assert after < before


def test_paper_architecture_shapes():
    vae = TwoLayerVAE()
    widths = [m.out_features for m in vae.encoder1[0].net if isinstance(m, torch.nn.Linear)]
    assert widths == [100, 100] and vae.encoder1[1].layers["loc"].out_features == 100
    widths = [m.out_features for m in vae.encoder2[0].net if isinstance(m, torch.nn.Linear)]
    assert widths == [50, 50] and vae.encoder2[1].layers["loc"].out_features == 50
    assert vae.sample(2).shape == (2, 1, 28, 28)
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    assert vae.reconstruct(x).shape == (3, 1, 28, 28)
    trace = pyro.poutine.trace(vae.guide).get_trace(x)
    assert trace.nodes["z1"]["value"].shape == (3, 100) and trace.nodes["z2"]["value"].shape == (3, 50)
    assert vae.config["latent_dims"] == [100, 50]
