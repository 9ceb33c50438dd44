"""pyrogen.testing: pyrogen's models pass every check, and each check catches its bug by name."""

import textwrap

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyrogen.infer import ReparamTrace_ELBO
from pyrogen.models import VAE
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.pixelcnn import PixelCNNVAE
from pyrogen.models.sequence import SequenceVAE
from pyrogen.testing import (
    assert_elbo_finite,
    assert_gradients_reach_parameters,
    assert_guide_matches_model,
    assert_reparameterized,
    assert_shapes_agree,
    assert_svi_lowers_loss,
    check_model_guide,
)

B, D = 8, 2


class Toy(PyroModule):
    """A linear-Gaussian latent model, correct unless a test breaks one piece of it."""

    def __init__(self):
        super().__init__()
        self.decoder = nn.Linear(D, 3)
        self.encoder = nn.Linear(3, 2 * D)

    @pyro_method
    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 1.0).to_event(1), obs=x)

    @pyro_method
    def guide(self, x):
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


# Tiny models train far faster on one thread than on a busy machine's shared cores.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def x():
    return torch.randn(B, 3)


def test_pyrogen_vae_passes_every_check(tiny_images):
    vae = VAE(latent_dim=2, hidden=(16,))
    before, after = check_model_guide(vae.model, vae.guide, tiny_images, num_steps=10)
    assert after < before
    before_r, after_r = check_model_guide(vae.model, vae.guide, tiny_images, loss=ReparamTrace_ELBO(), num_steps=10)
    assert before_r == pytest.approx(before, rel=1e-5)  # same draws, same parameters, same value


def test_pyrogen_conv_vae_with_kl_weight_passes(tiny_images):
    vae = VAE(latent_dim=2, architecture="conv", hidden=(4, 8))
    check_model_guide(vae.model, vae.guide, tiny_images, kl_weight=0.5, num_steps=3)


def test_autoencoder_unused_scale_head_is_reported_unless_declared(tiny_images):
    ae = Autoencoder(latent_dim=2, hidden=(16,))
    with pytest.raises(AssertionError, match=r"parameter 'encoder\.1\.layers\.scale\.weight' gets no gradient"):
        check_model_guide(ae.model, ae.guide, tiny_images, num_steps=0)
    check_model_guide(ae.model, ae.guide, tiny_images, unused=("encoder.1.layers.scale.",), num_steps=5)


def test_sequence_vae_passes():
    seq = SequenceVAE(vocab_size=5, seq_len=6, latent_dim=2, embed_dim=4, hidden=8)
    tokens = torch.randint(0, 5, (B, 6))
    check_model_guide(seq.model, seq.guide, tokens, num_steps=5, lr=3e-2)


def test_pixelcnn_vae_passes(tiny_images):
    vae = PixelCNNVAE(latent_dim=2, hidden=(16,), channels=4, num_layers=2)
    check_model_guide(vae.model, vae.guide, tiny_images, num_steps=3)


def test_check_leaves_parameters_unchanged(x):
    toy = Toy()
    before = {n: p.detach().clone() for n, p in toy.named_parameters()}
    before_loss, after_loss = assert_svi_lowers_loss(toy.model, toy.guide, x)
    assert after_loss < before_loss
    for n, p in toy.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.grad is None


def test_guide_missing_a_latent_site(x):
    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(w, 1.0))
            pyro.sample("x", dist.Normal(z.unsqueeze(-1), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(AssertionError, match=r"^model latent site 'w' has no site in the guide"):
        assert_guide_matches_model(model, guide, x)


def test_guide_site_absent_from_model(x):
    toy = Toy()

    def guide(x):
        toy.guide(x)
        pyro.sample("extra", dist.Normal(0.0, 1.0))

    with pytest.raises(
        AssertionError,
        match=r"^guide site 'extra' does not appear in the model; the "
        r"model's latent sites are \['z'\]",
    ):
        assert_guide_matches_model(toy.model, guide, x)


def test_guide_sampling_an_observed_site(x):
    toy = Toy()

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(torch.zeros(3), 1.0).to_event(1))

    with pytest.raises(AssertionError, match=r"^guide samples site 'x', which the model observes"):
        assert_guide_matches_model(toy.model, guide, x)


def test_non_reparameterized_guide_site_named_and_enumerated_exempt():
    def guide():
        pyro.sample("c", dist.Categorical(logits=torch.zeros(3)))
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(
        AssertionError,
        match=r"^guide site 'c' draws from Categorical, which is not "
        r"reparameterized",
    ):
        assert_reparameterized(guide)
    assert_reparameterized(guide, sites=["z"])

    def enumerated_guide():
        pyro.sample("c", dist.Categorical(logits=torch.zeros(3)), infer={"enumerate": "parallel"})

    assert_reparameterized(enumerated_guide)


def test_missing_to_event_outside_a_plate(x):
    def model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], D), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(2), obs=x)

    def guide(x):  # forgot .to_event(1): one scalar Normal per coordinate, no plate
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], D), 1.0))

    with pytest.raises(
        AssertionError,
        match=r"^guide site 'z': log_prob has shape \(8, 2\) but its "
        r"plates \[none\] need \(\)",
    ):
        assert_shapes_agree(model, guide, x)


def test_latent_in_different_plates_in_model_and_guide(x):
    def model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], D), 1.0).to_event(2))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(2), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))

    with pytest.raises(
        AssertionError,
        match=r"^site 'z' is in plates \{\} in the model but "
        r"\{'data': \(-1, 8\)\} in the guide",
    ):
        assert_shapes_agree(model, guide, x)


def test_infinite_elbo_names_the_site(x):
    toy = Toy()

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            pyro.sample("x", dist.Uniform(10.0, 11.0).expand([3]).to_event(1), obs=x + 0 * z[..., :1])

    with (
        pyro.validation_enabled(False),
        pytest.raises(AssertionError, match=r"^the ELBO is (inf|nan): log_prob is not finite at model site 'x'$"),
    ):
        assert_elbo_finite(model, toy.guide, x)


def test_unused_parameter_gets_no_gradient(x):
    toy = Toy()
    toy.forgotten = nn.Linear(2, 2)
    with pytest.raises(AssertionError, match=r"^parameter 'forgotten\.weight' gets no gradient from the ELBO"):
        assert_gradients_reach_parameters(toy.model, toy.guide, x)


def test_module_hidden_from_pyro_is_reported(x):
    class Plain(nn.Module):  # not a PyroModule, never registered with pyro.module
        def __init__(self):
            super().__init__()
            self.decoder = nn.Linear(D, 3)

        def model(self, x):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
                pyro.sample("x", dist.Normal(self.decoder(z), 1.0).to_event(1), obs=x)

        def guide(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))

    plain = Plain()
    with pytest.raises(
        AssertionError,
        match=r"^parameter 'decoder\.weight' of Plain is not registered "
        r"with Pyro",
    ):
        assert_gradients_reach_parameters(plain.model, plain.guide, x)


def test_svi_that_cannot_learn_is_reported(x):
    toy = Toy()
    with pytest.raises(AssertionError, match=r"^5 SVI steps \(Adam, lr=0\.0\) did not lower the loss"):
        assert_svi_lowers_loss(toy.model, toy.guide, x, num_steps=5, lr=0.0)


def test_plugin_fixtures_in_a_users_test_suite(tmp_path):
    """The entry point loads the plugin in any pytest run; its fixtures check a user's model."""
    (tmp_path / "test_user_model.py").write_text(
        textwrap.dedent("""
        import torch
        from pyrogen.models import VAE

        def test_vae(fresh_pyro, tiny_images, check_model_guide):
            assert tiny_images.shape == (8, 1, 28, 28)
            assert set(tiny_images.unique().tolist()) == {0.0, 1.0}
            vae = VAE(latent_dim=2, hidden=(8,))
            check_model_guide(vae.model, vae.guide, tiny_images, num_steps=3)
    """)
    )
    # In process (as pytester does): the nested session loads plugins from their entry points.
    status = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)])
    assert status == pytest.ExitCode.OK
    # Without the plugin the fixtures do not exist: they came from pyrogen's entry point.
    status = pytest.main(
        ["-q", "-p", "no:cacheprovider", "-p", "no:pyrogen", "--rootdir", str(tmp_path), str(tmp_path)]
    )
    assert status == pytest.ExitCode.TESTS_FAILED
