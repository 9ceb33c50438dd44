"""The VampPrior: its density is the mixture written out by hand, its draws have the mixture's
moments, and a VAE with it passes the model/guide checks and trains."""

import math

import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrogen.distributions import LatentFamilyError, check_guide_family, check_latent_pair, kl_method
from pyrogen.errors import DataError
from pyrogen.evaluation import log_importance_weights, log_likelihood
from pyrogen.models import VAE
from pyrogen.models.priors import UniformMixture, VampPrior
from pyrogen.testing import check_model_guide
from pyrogen.training import VAETrainer, default_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread beats two on shared cores

K, D = 7, 3


def _vae(**kw):
    torch.manual_seed(0)
    vae = VAE(latent_dim=D, hidden=(16,), prior=f"vamp:{K}", **kw)
    with torch.no_grad():
        vae.vamp.pseudo_weight.uniform_(-0.5, 1.5)  # pseudo-images that differ, so the components do
    return vae


def test_log_density_is_the_mixture_written_out_by_hand():
    """log p(z) = log (1/K) sum_k prod_i N(z_i; mu_ki, sigma_ki) at z with particle and batch dims."""
    vae = _vae()
    params = vae.encoder(vae.vamp.pseudo_inputs())
    mu, sigma = params["loc"], params["scale"]
    assert mu.shape == (K, D)
    z = torch.randn(2, 5, D) * 2
    by_hand = torch.zeros(2, 5)
    for a in range(2):
        for b in range(5):
            terms = []
            for k in range(K):
                log_normal = (
                    -0.5 * ((z[a, b] - mu[k]) / sigma[k]) ** 2 - sigma[k].log() - 0.5 * math.log(2 * math.pi)
                ).sum()
                terms.append(log_normal.exp())
            by_hand[a, b] = torch.log(sum(terms) / K)
    p = vae.prior()
    assert isinstance(p, dist.MixtureSameFamily) and p.event_shape == (D,) and p.batch_shape == ()
    assert torch.allclose(p.log_prob(z), by_hand, atol=1e-4)


def test_draws_have_the_mixtures_moments():
    """Mean (1/K) sum mu_k and variance (1/K) sum (sigma_k^2 + mu_k^2) - mean^2, 40,000 draws, 5 SE."""
    vae = _vae()
    with torch.no_grad():
        params = vae.encoder(vae.vamp.pseudo_inputs())
        mean = params["loc"].mean(0)
        var = (params["scale"] ** 2 + params["loc"] ** 2).mean(0) - mean**2
        torch.manual_seed(3)
        z = vae.prior().sample((40000,))
    assert z.shape == (40000, D)
    assert ((z.mean(0) - mean).abs() < 5 * (var / 40000).sqrt()).all()
    fourth = ((z - mean) ** 4).mean(0)  # SE of the sample variance ~ sqrt((m4 - var^2) / n)
    assert ((z.var(0) - var).abs() < 5 * ((fourth - var**2) / 40000).sqrt()).all()


def test_a_vae_with_a_vamp_prior_passes_the_model_guide_checks_and_trains(one_thread):
    vae = _vae()
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    before, after = check_model_guide(vae.model, vae.guide, x, num_steps=20, lr=1e-2)  # pseudo-inputs get gradients
    assert after < before
    log_w = log_importance_weights(vae.model, vae.guide, x, 4)
    assert log_w.shape == (4, 8) and torch.isfinite(log_w).all()
    assert vae.config["prior"] == f"vamp:{K}" and vae.sample(3).shape == (3, 1, 28, 28)
    rebuilt = VAE(**vae.config)
    rebuilt.load_state_dict(vae.state_dict())
    assert torch.equal(rebuilt.vamp.pseudo_inputs(), vae.vamp.pseudo_inputs())


def test_vamp_kl_is_monte_carlo_and_meanfield_is_refused():
    vae = _vae()
    assert kl_method(vae.posterior_family, vae.prior_family, analytic=True) == "monte-carlo"
    check_latent_pair(vae.prior_family, vae.posterior_family)
    with pytest.raises(LatentFamilyError, match=f"the prior 'vamp:{K}' has no closed-form KL"):
        check_guide_family(vae.posterior_family, TraceMeanField_ELBO(), prior=vae.prior_family)
    check_guide_family(vae.posterior_family, Trace_ELBO(), prior=vae.prior_family)
    config = default_config(latent_dim=2, hidden=(8,), image_shape=(1, 4, 4), prior="vamp:3")
    config["train"]["batch_size"] = 10
    x = torch.bernoulli(torch.full((20, 1, 4, 4), 0.3))
    assert VAETrainer(VAE(**config["model"]), x, x, config, progress=False).kl_method == "monte-carlo"


@pytest.mark.parametrize("kind", ["hardtanh", "sigmoid"])
def test_pseudo_inputs_are_images_and_can_start_from_data(kind):
    prior = VampPrior(4, (1, 3, 3), pseudo_inputs=kind)
    u = prior.pseudo_inputs()
    assert u.shape == (4, 1, 3, 3) and ((u >= 0) & (u <= 1)).all()
    images = torch.rand(10, 1, 3, 3).clamp(0.01, 0.99)
    prior.init_from(images)
    assert torch.allclose(prior.pseudo_inputs(), images[:4], atol=1e-5)


def test_hardtanh_pseudo_inputs_are_pythaes_clipped_linear_layer_and_start_near_zero():
    """u = hardtanh_[0,1](W e_k + b): pythae's VAMP.pseudo_inputs (nn.Linear(K, CHW) on the one-hot rows,
    then Hardtanh(0, 1)) with the same weights gives the same images; at the start w, b ~ U(-1/sqrt K, 1/sqrt K)
    as nn.Linear draws them, so u lies in [0, 2/sqrt K], and P(w + b <= 0) = 1/2: of the 500 x 784 pixels
    the share clipped to 0 is within 5 standard errors of 1/2 (the pixels of one bias are not independent:
    SE from the 784 per-pixel shares, sd <= 1/2 / sqrt(784))."""
    torch.manual_seed(0)
    num, shape = 500, (1, 28, 28)
    prior = VampPrior(num, shape)
    bound = 1 / math.sqrt(num)
    assert prior.pseudo_weight.abs().max() <= bound and prior.pseudo_bias.abs().max() <= bound
    assert prior.pseudo_weight.shape == (num,) + shape and prior.pseudo_bias.shape == shape
    u = prior.pseudo_inputs()
    assert u.min() == 0 and u.max() <= 2 * bound
    assert abs((u == 0).float().mean() - 0.5) < 5 * 0.5 / math.sqrt(784)
    linear = torch.nn.Linear(num, 784)
    with torch.no_grad():
        linear.weight.copy_(prior.pseudo_weight.reshape(num, 784).T)
        linear.bias.copy_(prior.pseudo_bias.reshape(784))
    pythae_u = torch.nn.Hardtanh(0.0, 1.0)(linear(torch.eye(num))).reshape((num,) + shape)
    assert torch.allclose(u, pythae_u, atol=1e-6)
    # the bias is shared: its gradient is the sum of the unclipped components' gradients
    u.sum().backward()
    inside = ((prior.pseudo_weight + prior.pseudo_bias) > 0) & ((prior.pseudo_weight + prior.pseudo_bias) < 1)
    assert torch.equal(prior.pseudo_weight.grad, inside.float())
    assert torch.equal(prior.pseudo_bias.grad, inside.float().sum(0))


def test_a_vamp_run_made_before_the_option_keeps_its_sigmoid_pseudo_inputs():
    """A configuration without "pseudo_inputs" (saved before the hard tanh became the default) rebuilds
    the sigmoid pseudo-inputs, so its checkpoint (pseudo_logits) loads and means what it meant."""
    from pyrogen.models.registry import build_model

    torch.manual_seed(0)
    old = VAE(latent_dim=D, hidden=(16,), prior=f"vamp:{K}", pseudo_inputs="sigmoid")
    config = {key: value for key, value in old.config.items() if key != "pseudo_inputs"}
    rebuilt = build_model({"kind": "vae", "model": config})
    assert rebuilt.vamp.kind == "sigmoid" and rebuilt.config["pseudo_inputs"] == "sigmoid"
    rebuilt.load_state_dict(old.state_dict())
    assert torch.equal(rebuilt.vamp.pseudo_inputs(), old.vamp.pseudo_inputs())
    new = VAE(latent_dim=D, hidden=(16,), prior=f"vamp:{K}")
    assert new.config["pseudo_inputs"] == "hardtanh"
    assert build_model({"kind": "vae", "model": new.config}).vamp.kind == "hardtanh"
    assert "pseudo_inputs" not in VAE(latent_dim=D, hidden=(16,)).config


def test_bad_vamp_priors_are_refused():
    with pytest.raises(DataError, match=r"^pseudo_inputs must be one of \['hardtanh', 'sigmoid'\], got 'tanh'$"):
        VAE(latent_dim=2, hidden=(8,), prior="vamp:3", pseudo_inputs="tanh")
    for spec in ("vamp:0", "vamp:x", "vamp"):
        with pytest.raises(LatentFamilyError, match="'vamp:K' with K >= 1"):
            VAE(latent_dim=2, hidden=(8,), prior=spec)
    with pytest.raises(LatentFamilyError, match="use the VampPrior with a flow-free guide"):
        VAE(latent_dim=2, hidden=(8,), prior="vamp:3", flow="iaf:1")
    with pytest.raises(LatentFamilyError, match="guide family 'uniform' draws z outside the support of prior"):
        check_latent_pair(VAE(latent_dim=2, hidden=(8,), prior="vamp:3", posterior="uniform").prior_family, "uniform")


@pytest.mark.parametrize("posterior", ["normal", "laplace"])
def test_blocked_log_density_equals_the_one_pass_mixture_to_rounding(posterior):
    """UniformMixture's block-by-block logsumexp (values and components split; a diagonal Normal
    by matrix products) equals MixtureSameFamily's one pass to float32 rounding (1e-5 nats),
    gradients included, and no block of the general route holds more than max_elements floats."""
    vae = _vae(posterior=posterior)
    params = vae.encoder(vae.vamp.pseudo_inputs())
    one_pass = dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(K)), vae.base_family(**params))
    blocks = []

    def family(**p):
        q = vae.base_family(**p)
        blocks.append(p["loc"].shape[0])
        return q

    z = (torch.randn(4, 6, D) * 2).requires_grad_()
    expected = one_pass.log_prob(z)
    (expected_grad,) = torch.autograd.grad(expected.sum(), z)
    for max_elements in (1, 2 * D, 5 * D, 3 * K * D, 10**6):
        blocks.clear()
        blocked = UniformMixture(family, params, max_elements=max_elements)
        value = blocked.log_prob(z)
        assert value.shape == (4, 6) and value.dtype == z.dtype
        assert torch.allclose(value, expected, atol=1e-5, rtol=0)
        (grad,) = torch.autograd.grad(value.sum(), z)
        assert torch.allclose(grad, expected_grad, atol=1e-5)
        if posterior == "laplace":
            rows = max(1, min(24, max_elements // D))
            assert all(rows * k * D <= max(max_elements, D) for k in blocks[1:])  # blocks[0]: built once
    assert blocks == [K]  # 10**6 floats: one block, MixtureSameFamily's own pass (no further family call)


@pytest.mark.parametrize("posterior", ["normal", "laplace"])
def test_vamp_log_px_does_not_depend_on_the_block_size(posterior):
    """log p(x) with K = 500 draws, 50 at a time: the same (1e-4 nats) with blocks of 64 floats
    (every component apart) as with one block; same seed, so the same draws."""
    vae = _vae(posterior=posterior)
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))
    values = []
    for max_elements in (64, 10**8):
        vae.vamp.max_elements = max_elements
        torch.manual_seed(5)
        values.append(log_likelihood(vae.model, vae.guide, x, num_samples=500, chunk_size=50))
    assert values[0].shape == (3,) and torch.allclose(values[0], values[1], atol=1e-4, rtol=0)
