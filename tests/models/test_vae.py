import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO

from pyrogen.models import VAE


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_sites_and_shapes_inside_the_data_plate(architecture, x):
    vae = VAE(latent_dim=3, hidden=(32,), architecture=architecture)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z, obs = model_trace.nodes["z"], model_trace.nodes["x"]
    assert z["value"].shape == (5, 3) and z["fn"].event_shape == (3,) and z["fn"].batch_shape == (5,)
    assert obs["is_observed"] and obs["fn"].event_shape == (1, 28, 28) and obs["fn"].batch_shape == (5,)
    assert [f.name for f in z["cond_indep_stack"]] == ["data"]
    assert guide_trace.nodes["z"]["fn"].has_rsample
    # Flattened input is the same data.
    trace_flat = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x.reshape(5, 784))
    torch.testing.assert_close(trace_flat.log_prob_sum(), model_trace.log_prob_sum())


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_plain_pyro_svi_trains_it_untouched(architecture, x):
    vae = VAE(latent_dim=2, hidden=(16,), architecture=architecture)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(60)]
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
    # Every network parameter is in Pyro's param store, under the module's names.
    assert len(pyro.get_param_store()) == len(list(vae.parameters()))


def test_mean_field_elbo_uses_the_analytic_kl(x):
    vae = VAE(latent_dim=2, hidden=(16,))
    assert TraceMeanField_ELBO().loss(vae.model, vae.guide, x) > 0


def test_predictive_draws_prior_and_posterior_samples(x):
    vae = VAE(latent_dim=2, hidden=(16,))
    prior = Predictive(vae.model, num_samples=4, return_sites=["z", "x"])(batch_size=3)
    assert prior["z"].shape == (4, 3, 2) and prior["x"].shape == (4, 3, 1, 28, 28)
    assert set(prior["x"].unique().tolist()) <= {0.0, 1.0}
    posterior = Predictive(vae.model, guide=vae.guide, num_samples=6, return_sites=["z"])(x)
    assert posterior["z"].shape == (6, 5, 2)


def test_kl_weight_scales_only_the_latent_sites(x):
    vae = VAE(latent_dim=2, hidden=(16,))
    guide_trace = poutine.trace(vae.guide).get_trace(x, kl_weight=0.25)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, kl_weight=0.25)
    assert model_trace.nodes["z"]["scale"] == 0.25 and guide_trace.nodes["z"]["scale"] == 0.25
    assert model_trace.nodes["x"]["scale"] == 1.0


def test_reconstruct_and_sample_shapes_and_range(x):
    vae = VAE(latent_dim=2, hidden=(16,))
    for images in (vae.reconstruct(x), vae.sample(7)):
        assert images.shape[1:] == (1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert vae.sample(7).shape[0] == 7


def test_config_rebuilds_the_same_architecture():
    vae = VAE(latent_dim=3, hidden=(20, 10), architecture="conv")
    clone = VAE(**vae.config)
    assert {k: v.shape for k, v in vae.state_dict().items()} == {k: v.shape for k, v in clone.state_dict().items()}


@pytest.mark.cuda
def test_same_code_on_cuda(x):
    vae = VAE(latent_dim=2, hidden=(16,)).to("cuda")
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    assert svi.step(x.cuda()) > 0


def test_the_default_scale_head_is_the_log_variance_and_old_runs_keep_the_log_scale():
    from pyrogen.config import default_config
    from pyrogen.errors import DataError
    from pyrogen.models.registry import build_model

    torch.manual_seed(0)
    vae = VAE(latent_dim=3, hidden=(8,))
    h = torch.randn(5, 8)
    a = vae.encoder[1].layers["scale"](h)
    torch.testing.assert_close(vae.encoder[1](h)["scale"], torch.exp(a / 2))  # a = log σ²
    config = default_config(latent_dim=3, hidden=(8,))
    assert config["model"]["scale_head"] == "log-variance"
    del config["model"]["scale_head"]  # a configuration written before the option existed
    old = build_model(config)
    old.load_state_dict(vae.state_dict())
    torch.testing.assert_close(old.encoder[1](h)["scale"], torch.exp(a))  # σ = exp(a), as it was trained
    assert "scale_head" not in VAE(latent_dim=3, hidden=(8,), posterior="laplace").config  # normal guides only
    with pytest.raises(DataError, match=r"scale_head must be one of \['log-variance', 'log-scale'\], got 'log'"):
        VAE(scale_head="log")
