"""The ex-post Gaussian mixture sampler (Ghosh et al. 2020): EM climbs, it recovers a known
mixture, its draws follow its mixture, and it turns an autoencoder or a VAE into a sampler."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pyrogen.evaluation.gmm_sampler import GaussianMixture, encode_codes, fit_code_gmm, fit_gmm
from pyrogen.models import VAE
from pyrogen.models.autoencoder import Autoencoder

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread beats two on shared cores

MEANS = torch.tensor([[3.0, 0.0], [-3.0, 1.0], [0.0, -3.0]])
CHOLS = torch.tensor([[[0.3, 0.0], [0.0, 0.3]], [[1.0, 0.0], [0.5, 0.4]], [[0.2, 0.0], [-0.1, 0.5]]])
WEIGHTS = torch.tensor([0.3, 0.5, 0.2])


def _data(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return MEANS[k] + (CHOLS[k] @ torch.randn(n, 2, 1, generator=g)).squeeze(-1)


def _matched(gmm):
    """The fitted components in the order of MEANS (nearest mean)."""
    order = torch.cdist(MEANS.double(), gmm.means).argmin(-1)
    assert sorted(order.tolist()) == [0, 1, 2]
    return order


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_never_lowers_the_log_likelihood(covariance):
    """From bare k-means++ seeds (no k-means iterations) with a 4th component to place,
    EM takes many steps; each one keeps or raises the mean log-likelihood."""
    gmm = fit_gmm(_data(600), 4, covariance=covariance, kmeans_iter=0, n_init=1, tol=1e-7, max_iter=40)
    ll = np.array(gmm.log_likelihoods)
    assert len(ll) >= 10 and (np.diff(ll) >= -1e-9).all() and ll[-1] > ll[0] + 0.01
    if covariance == "diag":
        off = gmm.covariances - torch.diag_embed(torch.diagonal(gmm.covariances, dim1=-2, dim2=-1))
        assert (off == 0).all()


def test_em_recovers_a_known_mixture():
    """2000 draws: weights within 0.03, means within 0.1, covariances within 0.1 (entrywise)."""
    gmm = fit_gmm(_data(), 3)
    order = _matched(gmm)
    assert torch.allclose(gmm.weights[order].float(), WEIGHTS, atol=0.03)
    assert torch.allclose(gmm.means[order].float(), MEANS, atol=0.1)
    assert torch.allclose(gmm.covariances[order].float(), CHOLS @ CHOLS.transpose(-1, -2), atol=0.1)
    # the final log-likelihood is within 0.02 nats per point of the true mixture's
    truth = GaussianMixture(WEIGHTS.double(), MEANS.double(), (CHOLS @ CHOLS.transpose(-1, -2)).double())
    assert abs(gmm.log_likelihoods[-1] - truth.log_prob(_data().double()).mean().item()) < 0.02


def test_equal_seeds_give_equal_fits():
    a, b = fit_gmm(_data(), 3, seed=4, n_init=1), fit_gmm(_data(), 3, seed=4, n_init=1)
    assert torch.equal(a.means, b.means) and a.log_likelihoods == b.log_likelihoods


def test_draws_follow_the_mixture_component_by_component():
    """Counts per component within 5 binomial SE; within each component the whitened draws
    L_k^{-1}(z - mu_k) are standard normal coordinate by coordinate (KS, p > 0.01, fixed seed)."""
    truth = GaussianMixture(WEIGHTS.double(), MEANS.double(), (CHOLS @ CHOLS.transpose(-1, -2)).double())
    n = 20000
    z, k = truth.sample(n, generator=torch.Generator().manual_seed(1), return_components=True)
    counts = torch.bincount(k, minlength=3).double()
    p = WEIGHTS.double()
    assert ((counts / n - p).abs() < 5 * (p * (1 - p) / n).sqrt()).all()
    for j in range(3):
        white = torch.linalg.solve_triangular(CHOLS[j].double(), (z[k == j].double() - MEANS[j]).T, upper=False).T
        for c in range(2):
            assert stats.kstest(white[:, c].numpy(), "norm").pvalue > 0.01
    # and the mixture's density is the weighted sum written out by hand
    v = torch.tensor([[0.5, 0.5], [2.0, -0.1]], dtype=torch.float64)
    by_hand = sum(
        WEIGHTS[j].item() * stats.multivariate_normal(MEANS[j].numpy(), (CHOLS[j] @ CHOLS[j].T).numpy()).pdf(v)
        for j in range(3)
    )
    assert np.allclose(truth.log_prob(v).numpy(), np.log(by_hand), atol=1e-6)
    assert torch.allclose(truth.distribution().log_prob(v.float()).double(), truth.log_prob(v), atol=1e-4)


@pytest.mark.parametrize("cls", [Autoencoder, VAE])
def test_fit_code_gmm_turns_a_model_into_a_sampler(cls):
    torch.manual_seed(0)
    model = cls(latent_dim=2, hidden=(16,))
    images = torch.rand(120, 1, 28, 28)
    sampler = fit_code_gmm(model, images, n_components=3)
    codes = encode_codes(model, images)
    expected = model.code(images) if cls is Autoencoder else model.encode(images)["loc"]
    assert torch.allclose(codes, expected.detach(), atol=1e-6)
    assert sampler.gmm.means.shape == (3, 2) and abs(sampler.gmm.weights.sum().item() - 1) < 1e-9
    z = sampler.sample(7, generator=torch.Generator().manual_seed(0))
    assert z.shape == (7, 2) and z.dtype == torch.float32
    x = sampler.decode(z)
    assert x.shape == (7, 1, 28, 28) and ((x >= 0) & (x <= 1)).all()
    assert sampler.sample_images(4).shape == (4, 1, 28, 28)


def test_codes_of_a_flow_vae_are_draws():
    model = VAE(latent_dim=2, hidden=(8,), flow="planar:1")
    images = torch.rand(30, 1, 28, 28)
    assert torch.equal(encode_codes(model, images, seed=3), encode_codes(model, images, seed=3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="N >= n_components"):
        fit_gmm(torch.randn(5, 2), 10)
    with pytest.raises(ValueError, match="covariance must be one of full, diag"):
        fit_gmm(torch.randn(50, 2), 2, covariance="tied")
    assert math.isfinite(fit_gmm(torch.zeros(50, 2), 2).log_likelihoods[-1])  # degenerate codes: reg keeps it finite
