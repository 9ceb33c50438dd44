"""The ArviZ export: groups, dimensions and values agree with direct computation from the model."""

import arviz as az
import numpy as np
import pytest
import torch

from pyrogen.errors import DataError
from pyrogen.evaluation.arviz_export import to_inference_data
from pyrogen.evaluation.psis import pareto_khat
from pyrogen.models import VAE

B, S, L = 4, 300, 3


@pytest.fixture
def exported():
    vae = VAE(latent_dim=L, hidden=(16,)).eval()
    x = torch.bernoulli(
        torch.full((B, 1, 28, 28), 0.3, dtype=torch.float32), generator=torch.Generator().manual_seed(3)
    )
    return vae, x, to_inference_data(vae.model, vae.guide, x, num_samples=S, labels=[7, 1, 0, 9])


def test_groups_and_dimensions(exported):
    _, _, idata = exported
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "sample_stats",
        "prior",
        "prior_predictive",
        "observed_data",
        "constant_data",
    }
    image = ("channel", "row", "col")
    expected = {
        ("posterior", "z"): (("chain", "draw", "example", "z_dim"), (1, S, B, L)),
        ("prior", "z"): (("chain", "draw", "example", "z_dim"), (1, S, B, L)),
        ("posterior_predictive", "x"): (("chain", "draw", "example") + image, (1, S, B, 1, 28, 28)),
        ("prior_predictive", "x"): (("chain", "draw", "example") + image, (1, S, B, 1, 28, 28)),
        ("log_likelihood", "x"): (("chain", "draw", "example"), (1, S, B)),
        ("sample_stats", "log_weight"): (("chain", "draw", "example"), (1, S, B)),
        ("observed_data", "x"): (("example",) + image, (B, 1, 28, 28)),
        ("constant_data", "label"): (("example",), (B,)),
    }
    for (group, var), (dims, shape) in expected.items():
        da = idata[group][var]
        assert (da.dims, da.shape) == (dims, shape), (group, var)
    np.testing.assert_array_equal(idata.posterior.example.values, np.arange(B))
    np.testing.assert_array_equal(idata.constant_data.label.values, [7, 1, 0, 9])


def test_values_agree_with_the_model(exported):
    vae, x, idata = exported
    z = torch.as_tensor(idata.posterior.z.values[0])  # (S, B, L)
    with torch.no_grad():
        log_lik = vae.likelihood(vae.decoder(z)).log_prob(x)  # (S, B)
        q = vae.posterior_family(**vae.encode(x))
        log_w = vae.prior().log_prob(z) + log_lik - q.log_prob(z)
    np.testing.assert_allclose(idata.log_likelihood.x.values[0], log_lik.numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(idata.sample_stats.log_weight.values[0], log_w.numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(idata.observed_data.x.values, x.numpy())
    # The draws follow q(z|x): their mean is q's mean to within 4 standard errors.
    se = q.stddev.numpy() / np.sqrt(S)
    assert (np.abs(z.mean(0).numpy() - q.mean.numpy()) < 4 * se).all()
    # Prior draws are N(0, I): mean within 4 standard errors, variance within 15%.
    prior_z = idata.prior.z.values.reshape(-1, L)
    assert np.abs(prior_z.mean(0)).max() < 4 / np.sqrt(prior_z.shape[0])
    np.testing.assert_allclose(prior_z.var(0), 1.0, rtol=0.15)
    # Predictive draws are binary images.
    for group in ("posterior_predictive", "prior_predictive"):
        assert set(np.unique(idata[group].x.values)) <= {0.0, 1.0}


def test_arviz_functions_work_on_it(exported):
    _, _, idata = exported
    summary = az.summary(idata, var_names=["z"], kind="stats")
    assert summary.shape == (B * L, 4)
    # PSIS on the exported log weights: k-hat per example.
    log_w = torch.as_tensor(idata.sample_stats.log_weight.values[0])
    assert pareto_khat(log_w).shape == (B,)


def test_bad_input_is_named():
    vae = VAE(latent_dim=2, hidden=(8,))
    x = torch.zeros(3, 1, 28, 28)
    with pytest.raises(DataError, match=r"labels must have one entry per input \(3\), got 2"):
        to_inference_data(vae.model, vae.guide, x, num_samples=5, labels=[1, 2])
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 0"):
        to_inference_data(vae.model, vae.guide, x, num_samples=0)
    with pytest.raises(DataError, match=r"x must be a batch of inputs \(B, \.\.\.\), got \(784,\)"):
        to_inference_data(vae.model, vae.guide, torch.zeros(784), num_samples=5)
