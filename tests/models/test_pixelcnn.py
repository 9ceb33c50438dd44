"""The PixelCNN decoder's raster-order causality and the PixelCNN VAE as a model/guide pair."""

import pyro
import pytest
import torch

from pyrogen.evaluation import log_importance_weights
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models.pixelcnn import MaskedConv2d, PixelCNNDecoder, PixelCNNVAE


def test_output_at_each_pixel_depends_only_on_earlier_pixels():
    torch.manual_seed(0)
    dec = PixelCNNDecoder(latent_dim=3, channels=8, num_layers=3)
    h, w = 8, 8
    z = torch.randn(1, 3)
    for i, j in [(0, 0), (3, 4), (7, 7), (5, 0)]:
        x = torch.rand(1, 1, h, w, requires_grad=True)
        dec(z, x)[0, 0, i, j].backward()
        grad = x.grad[0, 0].abs()
        later = torch.zeros(h, w, dtype=torch.bool)
        later.view(-1)[i * w + j :] = True  # pixel (i, j) itself and everything after it in raster order
        assert grad[later].max() == 0, (i, j)
        if i * w + j > 0:
            assert grad[~later].max() > 0  # and it does see (some of) the earlier pixels


def test_mask_types():
    a, b = MaskedConv2d("A", 1, 1, 3).mask[0, 0], MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="mask_type must be 'A' or 'B'"):
        MaskedConv2d("C", 1, 1, 3)


def test_pixelcnn_vae_trains_and_has_vectorized_importance_weights():
    vae = PixelCNNVAE(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,), channels=8, num_layers=2)
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.3))
    assert log_importance_weights(vae.model, vae.guide, x, 7).shape == (7, 5)
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-2), ReparamTrace_ELBO())
    first = svi.step(x)
    for _ in range(30):
        last = svi.step(x)
    assert last < first
    pyro.set_rng_seed(0)
    samples = vae.sample(2)
    assert samples.shape == (2, 1, 8, 8) and set(samples.unique().tolist()) <= {0.0, 1.0}
