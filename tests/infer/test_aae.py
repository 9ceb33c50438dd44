"""The adversarial autoencoder: its reconstruction term, and the aggregate posterior it pushes to p(z)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyrogen.infer import AdversarialAutoencoder, EncoderSiteError
from pyrogen.models import VAE
from pyrogen.models.gan import LatentDiscriminator

A = torch.tensor([[1.5, 0.0], [0.5, 0.5]])
M = torch.tensor([1.5, -0.5])
SIGMA = 0.5


def linear_autoencoder():
    """Deterministic linear encoder z = enc(x), linear decoder, p(x|z) = N(dec(z), 0.5^2 I); both start
    at the identity, so the codes start as the data: mean (1.5, -0.5), far from N(0, I)."""
    enc, dec = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        for m in (enc, dec):
            m.weight.copy_(torch.eye(2))
            m.bias.zero_()

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(dec(z), SIGMA).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(enc(x), event_dim=1))

    return enc, dec, model, guide


def _train(weight, steps):
    enc, dec, model, guide = linear_autoencoder()
    disc = LatentDiscriminator(2, (32, 32))
    aae = AdversarialAutoencoder(
        model,
        guide,
        disc,
        torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-2, betas=(0.5, 0.999)),
        torch.optim.Adam(disc.parameters(), lr=3e-2, betas=(0.5, 0.999)),
        adversarial_weight=weight,
    )
    for _ in range(steps):
        aae.step(torch.randn(64, 2) @ A.T + M)
    codes = aae.encode(torch.randn(5000, 2) @ A.T + M)
    return codes.mean(0), torch.cov(codes.T)


def test_aggregate_posterior_approaches_the_prior(one_thread):
    """Tolerance: after 300 steps the codes' mean is within 0.1 of 0 and their covariance within
    0.15 of I, entry by entry (they start at mean (1.5, -0.5), covariance A A^T)."""
    mean, cov = _train(1.0, 300)
    assert mean.abs().max() < 0.1
    assert (cov - torch.eye(2)).abs().max() < 0.15


def test_without_the_adversary_the_codes_stay_where_they_start(one_thread):
    """The control: reconstruction alone does not move the codes towards N(0, I)."""
    mean, cov = _train(0.0, 100)
    assert (mean - M).abs().max() < 0.1
    assert (cov - A @ A.T).abs().max() < 0.15


def test_reconstruction_term_is_the_models_negative_log_likelihood():
    enc, dec, model, guide = linear_autoencoder()
    aae = AdversarialAutoencoder(model, guide, LatentDiscriminator(2, (8,)), torch.optim.Adam(enc.parameters()))
    x = torch.randn(10, 2)
    with torch.no_grad():
        nll = -dist.Normal(dec(enc(x)), SIGMA).log_prob(x).sum() / 10
    out = aae.evaluate_loss(x)
    assert torch.allclose(out["loss_recon"], nll, atol=1e-5)
    assert torch.allclose(out["loss"], out["loss_recon"] + out["loss_g"])
    assert sorted(out) == ["d_accuracy", "d_fake", "d_real", "loss", "loss_d", "loss_g", "loss_recon"]


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wgan-gp", "hinge", "least-squares"])
def test_step_with_a_vae_updates_encoder_decoder_and_discriminator(loss):
    vae = VAE(latent_dim=3, image_shape=(1, 4, 4), hidden=(8,), likelihood="continuous-bernoulli")
    disc = LatentDiscriminator(3, (8,))
    aae = AdversarialAutoencoder(vae.model, vae.guide, disc, loss=loss)
    before = [p.detach().clone() for p in [*vae.encoder.parameters(), *vae.decoder.parameters(), *disc.parameters()]]
    out = aae.step(torch.rand(6, 1, 4, 4))
    assert all(torch.isfinite(v) for v in out.values())
    after = [*vae.encoder.parameters(), *vae.decoder.parameters(), *disc.parameters()]
    n_enc, n_dec = len(list(vae.encoder.parameters())), len(list(vae.decoder.parameters()))
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    assert any(changed[:n_enc]) and any(changed[n_enc : n_enc + n_dec]) and any(changed[n_enc + n_dec :])


def test_guide_without_a_differentiable_code_is_a_one_line_error():
    enc, dec, model, _ = linear_autoencoder()

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Poisson(torch.ones(x.shape[0], 2)).to_event(1))

    aae = AdversarialAutoencoder(model, guide, LatentDiscriminator(2, (8,)), torch.optim.Adam(enc.parameters()))
    with pytest.raises(EncoderSiteError) as e:
        aae.step(torch.randn(4, 2))
    assert str(e.value) == (
        "site 'z' of the guide is drawn from Poisson, which is neither reparameterized "
        "(rsample) nor a Delta, so no gradient reaches the encoder"
    )
