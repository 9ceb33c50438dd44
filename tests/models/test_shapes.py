"""Examples of any shape: images of any (C, H, W) through the MLP and the convolutional networks
(sides that are not multiples of 4 padded, too large maps refused), and flat vectors (D,)."""

import math

import pyro
import pytest
import torch

from pyrogen.errors import DataError
from pyrogen.models import VAE
from pyrogen.networks import (
    ConvDecoder,
    ConvEncoder,
    DCGANDecoder,
    DCGANEncoder,
    conv_sides,
)

ARCHITECTURES = ["mlp", "conv", "dcgan"]


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 30, 26), (2, 5, 9)])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_vae_of_any_image_shape_trains(architecture, shape):
    """The model scores images of exactly ``shape`` (event shape), and a few Adam steps raise the ELBO."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = torch.bernoulli(torch.rand((1,) + shape[1:]).expand((40,) + shape))
    vae = VAE(latent_dim=3, image_shape=shape, architecture=architecture, hidden=(32,))
    trace = pyro.poutine.trace(vae.model).get_trace(x)
    assert trace.nodes["x"]["fn"].event_shape == shape
    assert vae.reconstruct(x[:2]).shape == (2,) + shape and vae.sample(2).shape == (2,) + shape
    elbo = pyro.infer.Trace_ELBO(num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    vae.eval()
    before = -elbo.loss(vae.model, vae.guide, x)
    vae.train()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 3e-3}), pyro.infer.Trace_ELBO())
    for _ in range(30):
        svi.step(x)
    vae.eval()
    after = -elbo.loss(vae.model, vae.guide, x)
    assert math.isfinite(after) and after > before


def test_odd_sides_are_padded_to_multiples_of_4_and_cropped_back():
    assert conv_sides("ConvEncoder", (1, 30, 26), 32, 256) == (32, 28)
    assert conv_sides("ConvEncoder", (3, 32, 32), 32, 256) == (32, 32)
    enc = ConvEncoder((1, 30, 26), hidden=16)
    assert enc.pads == (1, 1, 1, 1)  # (left, right, top, bottom): 26 -> 28 and 30 -> 32, centred
    x = torch.rand(4, 1, 30, 26)
    # the padding is zeros: the encoder of the image equals the encoder of the image padded by hand
    unpadded = ConvEncoder((1, 32, 28), hidden=16)
    unpadded.load_state_dict(enc.state_dict())
    assert torch.equal(enc(x), unpadded(torch.nn.functional.pad(x, (1, 1, 1, 1))))
    dec = ConvDecoder(3, (1, 30, 26), out_channels=2, hidden=16)
    z = torch.randn(5, 4, 3)  # any batch dimensions
    full = ConvDecoder(3, (1, 32, 28), out_channels=2, hidden=16)
    full.load_state_dict(dec.state_dict())
    assert dec(z).shape == (5, 4, 2, 30, 26)
    assert torch.equal(dec(z), full(z)[..., 1:31, 1:27])
    assert DCGANEncoder((1, 30, 26), hidden=16).eval()(x).shape == (4, 16)
    assert DCGANDecoder(3, (1, 30, 26), hidden=16, layout="ali").eval()(z).shape == (5, 4, 1, 30, 26)


def test_maps_too_large_for_the_linear_layer_are_refused_in_one_line():
    with pytest.raises(
        DataError,
        match=r"^ConvEncoder on 3x3400x3400 images would need a linear layer of "
        r"11,837,440,000 weights \(a 850x850 map of 64 channels to 256 units; at "
        r"most 50,000,000\): resize the images$",
    ):
        VAE(image_shape=(3, 3400, 3400), architecture="conv", hidden=(256,))


@pytest.mark.parametrize("architecture", ["conv", "dcgan"])
def test_convolutions_refuse_flat_vectors(architecture):
    name = {"conv": "ConvEncoder", "dcgan": "DCGANEncoder"}[architecture]
    with pytest.raises(
        DataError,
        match=rf"^{name} needs images \(C, H, W\), got examples of shape \(12,\); "
        r"use the mlp architecture for flat vectors$",
    ):
        VAE(image_shape=(12,), architecture=architecture)


def test_flat_batches_must_have_the_feature_count():
    vae = VAE(latent_dim=2, image_shape=(7,), hidden=(8,), likelihood="normal-feature")
    with pytest.raises(DataError, match=r"^x must have shape \(B, 7\), got \(3, 8\)$"):
        vae.model(torch.zeros(3, 8))


def test_other_vaes_bind_their_likelihood_and_refuse_library_sizes():
    from pyrogen.models import ConditionalVAE, TwoLayerVAE

    cvae = ConditionalVAE(num_classes=3, latent_dim=2, image_shape=(1, 4, 4), hidden=(8,), likelihood="normal-feature")
    assert cvae.likelihood.raw_scale.shape == (1, 4, 4)
    with pytest.raises(
        DataError,
        match=r"^the two-layer VAE does not give its likelihood each example's library "
        r"size; use the likelihood without '-library' or the VAE$",
    ):
        TwoLayerVAE(image_shape=(1, 4, 4), likelihood="negative-binomial-library")
