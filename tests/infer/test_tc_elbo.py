"""TCELBO: the β-TC-VAE objective and its minibatch-weighted decomposition of the KL term.

The three terms telescope to the one-draw KL estimate exactly; with α = β = γ = 1
the objective is the ELBO draw for draw; β scales exactly the TC term; for
equal posteriors the MWS estimates have the closed forms log N and (D-1) log N.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrogen.infer import TCELBO
from pyrogen.models import VAE
from pyrogen.testing import check_model_guide


@pytest.fixture
def vae_batch():
    vae = VAE(latent_dim=4, hidden=(16,))
    x = torch.bernoulli(torch.full((12, 1, 28, 28), 0.3))
    return vae, x


def test_decomposition_sums_to_the_kl_estimate(vae_batch):
    vae, x = vae_batch
    d = TCELBO(beta=6.0, dataset_size=1000).decomposition(vae.model, vae.guide, x)
    assert d["mi"] + d["tc"] + d["dimwise_kl"] == pytest.approx(d["kl"], abs=1e-4)
    # the KL estimate is log q(z|x) - log p(z) at the same draw: Trace_ELBO's latent terms
    pyro.set_rng_seed(3)
    d = TCELBO(dataset_size=1000).decomposition(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    guide_trace = pyro.poutine.trace(vae.guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    kl = guide_trace.nodes["z"]["fn"].log_prob(z) - model_trace.nodes["z"]["fn"].log_prob(z)
    assert d["kl"] == pytest.approx(kl.mean().item(), rel=1e-6)


def test_unit_weights_give_the_elbo_and_beta_scales_only_the_tc_term(vae_batch):
    vae, x = vae_batch
    pyro.set_rng_seed(1)
    tc1 = TCELBO(beta=1.0, dataset_size=500).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    elbo = Trace_ELBO().loss(vae.model, vae.guide, x)
    assert tc1 == pytest.approx(elbo, rel=1e-6)
    pyro.set_rng_seed(1)
    tc6 = TCELBO(beta=6.0, dataset_size=500).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    tc = TCELBO(dataset_size=500).decomposition(vae.model, vae.guide, x)["tc"]
    assert tc6 - tc1 == pytest.approx(5.0 * tc * x.shape[0], rel=1e-4)


def test_mws_estimates_for_equal_posteriors_have_their_closed_form():
    # q(z|x_j) = N(0, I_D) for every example: the true MI and TC are 0; MWS with N = M gives
    # log q(z) - log N, so MI = log N and TC = (D - 1) log N exactly, and DW = -log N for p = q.
    M, D = 8, 3

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], D), 1.0).to_event(1))

    d = TCELBO().decomposition(model, guide, torch.zeros(M))
    assert d["mi"] == pytest.approx(math.log(M), abs=1e-5)
    assert d["tc"] == pytest.approx((D - 1) * math.log(M), abs=1e-5)
    assert d["dimwise_kl"] == pytest.approx(-D * math.log(M), abs=1e-5)
    assert d["kl"] == pytest.approx(0.0, abs=1e-6)
    assert TCELBO(dataset_size=100).decomposition(model, guide, torch.zeros(M))["mi"] == pytest.approx(
        math.log(100), abs=1e-5
    )


def test_tc_vae_passes_check_model_guide(vae_batch, one_thread):
    vae, x = vae_batch
    before, after = check_model_guide(vae.model, vae.guide, x, loss=TCELBO(beta=6.0, dataset_size=1000))
    assert after < before


def test_a_guide_without_independent_coordinates_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(torch.zeros(2), torch.eye(2)))

    with pytest.raises(ValueError, match="Independent"):
        TCELBO(dataset_size=10).loss(model, model, torch.zeros(4))
