"""ALI / BiGAN: the pairs the joint discriminator sees, the losses, the encoder inverting the generator."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.references.ali import PREVIOUS, check_same_networks, check_same_step
from pyrogen.errors import DataError
from pyrogen.infer import AdversarialInference, EncoderSiteError
from pyrogen.infer.adversarial_inference import encoder_generator_loss
from pyrogen.infer.gan_losses import GAN_LOSSES, get_gan_loss
from pyrogen.models import VAE
from pyrogen.models.gan import JointDiscriminator

A = torch.tensor([[2.0, 0.5], [0.0, 1.0]])
B = torch.tensor([1.0, -1.0])


def linear_pair(gen, enc, drawn=None):
    """A linear generator x = gen(z) (point mass) and a deterministic linear encoder z = enc(x)."""

    def model(batch_size=1):
        with pyro.plate("data", batch_size):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            if drawn is not None:
                drawn.append(z.detach().clone())
            pyro.sample("x", dist.Delta(gen(z), event_dim=1))

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(enc(x), event_dim=1))

    return model, guide


class Recorder(nn.Module):
    """D(x, z) = a.x + b.z + c, recording every pair it scores."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.calls = []

    def forward(self, x, z):
        self.calls.append((x.detach().clone(), z.detach().clone()))
        return self.lin(torch.cat([x, z], -1)).squeeze(-1)


def _optims(gen, enc, disc, lr=1e-2):
    return (
        torch.optim.Adam([*gen.parameters(), *enc.parameters()], lr=lr, betas=(0.5, 0.999)),
        torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999)),
    )


def test_discriminator_sees_data_pairs_and_model_pairs_exactly():
    gen, enc, disc, drawn = nn.Linear(2, 2), nn.Linear(2, 2), Recorder(), []
    model, guide = linear_pair(gen, enc, drawn)
    ali = AdversarialInference(model, guide, disc, *_optims(gen, enc, disc))
    x = torch.randn(16, 2)
    out = ali.evaluate_loss(x)
    (x_real, z_real), (x_fake, z_fake) = disc.calls
    with torch.no_grad():
        assert torch.equal(x_real, x) and torch.equal(z_real, enc(x))  # (x, E(x))
        assert torch.equal(z_fake, drawn[0]) and torch.equal(x_fake, gen(drawn[0]))  # (G(z), z), z ~ p(z)
        expected = get_gan_loss("nonsaturating").discriminator_loss(
            disc.lin(torch.cat([x_real, z_real], 1)), disc.lin(torch.cat([x_fake, z_fake], 1))
        )
    assert torch.allclose(out["loss_d"], expected.reshape(()), atol=1e-6)

    # a step: the discriminator update and the players' update score the same pairs
    disc.calls.clear()
    ali.step(x)
    assert len(disc.calls) == 4
    for before, after in zip(disc.calls[:2], disc.calls[2:]):
        assert all(torch.equal(u, v) for u, v in zip(before, after))


def test_model_x_mean_takes_the_likelihood_mean_and_sample_the_draw():
    dec = nn.Linear(2, 2)
    enc = nn.Linear(2, 2)

    def model(batch_size=1):
        with pyro.plate("data", batch_size):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(dec(z), 0.5).to_event(1))

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(enc(x), 0.1).to_event(1))

    disc = Recorder()
    ali_mean = AdversarialInference(model, guide, disc, *_optims(dec, enc, disc), model_x="mean")
    ali_mean.evaluate_loss(torch.randn(8, 2))
    x_fake, z_fake = disc.calls[1]
    with torch.no_grad():
        assert torch.allclose(x_fake, dec(z_fake), atol=1e-6)  # the decoder mean, exactly
    disc.calls.clear()
    ali_sample = AdversarialInference(model, guide, disc, *_optims(dec, enc, disc), model_x="sample")
    ali_sample.evaluate_loss(torch.randn(8, 2))
    x_fake, z_fake = disc.calls[1]
    with torch.no_grad():
        residual = (x_fake - dec(z_fake)) / 0.5  # a reparameterized draw: N(0, 1) noise around the mean
    assert residual.abs().max() > 0.05 and residual.abs().max() < 5


def test_encoder_generator_loss_formulas():
    s_q, s_p = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([-0.4, 0.9, 0.1])
    ns = encoder_generator_loss(get_gan_loss("nonsaturating"), s_q, s_p)
    assert torch.allclose(ns, F.softplus(s_q).mean() + F.softplus(-s_p).mean())
    mm = encoder_generator_loss(get_gan_loss("minimax"), s_q, s_p)
    assert torch.allclose(mm, -F.softplus(-s_q).mean() - F.softplus(s_p).mean())  # V itself
    ls = encoder_generator_loss(get_gan_loss("least-squares"), s_q, s_p)
    assert torch.allclose(ls, 0.5 * (s_p - 1).square().mean() + 0.5 * s_q.square().mean())
    for name in ("hinge", "wgan-gp"):
        assert torch.allclose(encoder_generator_loss(get_gan_loss(name), s_q, s_p), s_q.mean() - s_p.mean())


def test_gradient_penalty_takes_one_norm_per_pair_over_x_and_z():
    gen, enc, disc = nn.Linear(2, 2), nn.Linear(2, 2), Recorder()
    model, guide = linear_pair(gen, enc)
    ali = AdversarialInference(model, guide, disc, *_optims(gen, enc, disc), loss="wgan-gp")
    out = ali.evaluate_loss(torch.randn(8, 2))
    # D is linear, so its gradient at every interpolate is (a, b): the penalty is 10 (|(a, b)| - 1)^2
    norm = disc.lin.weight.detach().norm()
    critic = disc.lin(torch.cat(disc.calls[1], 1)).mean() - disc.lin(torch.cat(disc.calls[0], 1)).mean()
    assert torch.allclose(out["loss_d"], critic.detach() + 10 * (norm - 1) ** 2, atol=1e-5)


@pytest.mark.parametrize("loss", sorted(GAN_LOSSES))
def test_every_loss_updates_all_three_networks_and_evaluate_none(loss, one_thread):
    gen, enc = nn.Linear(2, 2), nn.Linear(2, 2)
    disc = JointDiscriminator((2,), 2, (8,), (8,), (8,), unit_interval=False)
    model, guide = linear_pair(gen, enc)
    ali = AdversarialInference(model, guide, disc, *_optims(gen, enc, disc), loss=loss, d_steps=2)
    x = torch.randn(16, 2) @ A.T + B
    snapshot = [p.detach().clone() for m in (gen, enc, disc) for p in m.parameters()]
    ali.evaluate_loss(x)
    assert all(torch.equal(a, b) for a, b in zip(snapshot, (p for m in (gen, enc, disc) for p in m.parameters())))
    out = ali.step(x)
    assert sorted(out) == ["d_accuracy", "d_fake", "d_real", "loss_d", "loss_g"]
    assert all(torch.isfinite(v) for v in out.values())
    changed = [not torch.equal(a, b) for a, b in zip(snapshot, (p for m in (gen, enc, disc) for p in m.parameters()))]
    assert all(changed[:4])  # generator and encoder weights and biases
    assert any(changed[4:])  # the discriminator


def test_encoder_approaches_the_generators_inverse_on_a_gaussian_toy(one_thread):
    """Data x = A z + b, z ~ N(0, I); the generator is that linear map (held fixed: its
    optimizer holds only the encoder), the encoder a linear map from a random start.

    ALI's optimum is then unique, E = G^{-1}. Tolerance: after 300 steps the encoder's
    matrix times A is within 0.25 of I (Frobenius), and E(G(z)) is within 0.1 of z in
    mean squared norm (it starts above 1).
    """
    gen, enc = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        gen.weight.copy_(A)
        gen.bias.copy_(B)
    disc = JointDiscriminator((2,), 2, (32,), (32,), (32,), unit_interval=False)
    model, guide = linear_pair(gen, enc)
    ali = AdversarialInference(
        model,
        guide,
        disc,
        torch.optim.Adam(enc.parameters(), lr=2e-2, betas=(0.5, 0.999)),
        torch.optim.Adam(disc.parameters(), lr=2e-2, betas=(0.5, 0.999)),
    )
    z_test = torch.randn(4000, 2)
    x_test = torch.randn(4000, 2) @ A.T + B

    def inverse_error():
        with torch.no_grad():
            return (enc(gen(z_test)) - z_test).square().sum(1).mean()

    assert inverse_error() > 1.0
    for _ in range(300):
        ali.step(torch.randn(128, 2) @ A.T + B)
    assert torch.linalg.norm(enc.weight.detach() @ A - torch.eye(2)) < 0.25
    assert inverse_error() < 0.1
    recon = ali.reconstruct(x_test)
    assert torch.allclose(ali.reconstruction_error(x_test), (recon - x_test).square().mean())
    assert (recon - x_test).square().sum(1).mean() < 0.05 * x_test.var(0).sum()


def test_reconstruct_and_encode_with_a_vae():
    vae = VAE(latent_dim=3, image_shape=(1, 4, 4), hidden=(8,), likelihood="continuous-bernoulli")
    disc = JointDiscriminator((1, 4, 4), 3, (8,), (8,), (8,))
    ali = AdversarialInference(vae.model, vae.guide, disc, model_x="mean")
    x = torch.rand(5, 1, 4, 4)
    assert torch.allclose(ali.encode(x), vae.encode(x)["loc"])
    assert torch.allclose(ali.reconstruct(x), vae.reconstruct(x), atol=1e-6)
    out = ali.step(x)
    assert torch.isfinite(out["loss_g"])


def test_bad_inputs_are_one_line_errors():
    gen, enc, disc = nn.Linear(2, 2), nn.Linear(2, 2), Recorder()
    model, _ = linear_pair(gen, enc)

    def discrete_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(torch.sigmoid(enc(x))).to_event(1))

    def no_code(x):
        pass

    ali = AdversarialInference(model, discrete_guide, disc, *_optims(gen, enc, disc))
    with pytest.raises(EncoderSiteError) as e:
        ali.step(torch.randn(4, 2))
    assert str(e.value) == (
        "site 'z' of the guide is drawn from Bernoulli, which is neither reparameterized "
        "(rsample) nor a Delta, so no gradient reaches the encoder"
    )
    with pytest.raises(EncoderSiteError, match=r"^the guide has no sample site 'z'$"):
        AdversarialInference(model, no_code, disc, *_optims(gen, enc, disc)).step(torch.randn(4, 2))
    with pytest.raises(DataError, match=r"^model_x must be one of \('sample', 'mean'\), got 'mode'$"):
        AdversarialInference(model, discrete_guide, disc, *_optims(gen, enc, disc), model_x="mode")
    _, guide = linear_pair(gen, enc)
    with pytest.raises(DataError, match=r"^x must be a floating-point tensor batch of real examples$"):
        AdversarialInference(model, guide, disc, *_optims(gen, enc, disc)).step(torch.ones(4, 2, dtype=torch.long))


# ---------------------------------------------------------------------- ALI's recipe: the defaults since ali_quality.py


def test_joint_discriminator_dropout_acts_in_training_only_before_every_layer():
    torch.manual_seed(0)
    disc = JointDiscriminator((1, 28, 28), 16, (32,), (32, 32), (64,), architecture="dcgan", channels=8, dropout=0.2)
    layers = [m for part in (disc.phi_x, disc.phi_z, disc.joint) for m in part]
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(weighted) == 2 + 1 + 2 + 2  # two convolutions and a linear on x, two on z, joint layer and output
    assert all(isinstance(layers[i - 1], nn.Dropout) and layers[i - 1].p == 0.2 for i in weighted)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in disc.modules())
    x, z = torch.rand(64, 1, 28, 28), torch.randn(64, 16)
    disc.eval()
    assert torch.equal(disc(x, z), disc(x, z))  # dropout off: deterministic scores
    disc.train()
    a, b = disc(x, z), disc(x, z)
    assert a.shape == (64,) and not torch.equal(a, b)
    # without dropout a training-mode score is the eval-mode one
    plain = JointDiscriminator((1, 28, 28), 16, (32,), (32,), (32,), architecture="dcgan", channels=8)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    assert torch.equal(plain.train()(x, z), plain.eval()(x, z))


def test_joint_discriminator_mlp_without_dropout_keeps_its_old_parameter_names():
    disc = JointDiscriminator((1, 4, 4), 3, (8,), (8,), (8,))
    assert list(disc.state_dict()) == [
        "phi_x.0.weight",
        "phi_x.0.bias",
        "phi_z.0.weight",
        "phi_z.0.bias",
        "joint.0.weight",
        "joint.0.bias",
        "joint.2.weight",
        "joint.2.bias",
    ]


@pytest.mark.parametrize("kwargs, message", [
    ({"dropout": 1.0}, "dropout must be a probability in [0, 1), got 1.0"),
    ({"architecture": "resnet"}, "architecture must be one of ('dcgan', 'mlp') for a joint discriminator, "
                                 "got 'resnet'"),
])  # fmt: skip
def test_joint_discriminator_bad_options_are_one_line_errors(kwargs, message):
    with pytest.raises(DataError) as e:
        JointDiscriminator((1, 28, 28), 4, **kwargs)
    assert str(e.value) == message


def test_ali_defaults_are_alis_recipe_and_old_configs_keep_their_discriminator():
    from pyrogen.config import default_ali_config
    from pyrogen.models.registry import build_model, build_pair_discriminator
    from pyrogen.networks import DCGANDecoder, DCGANEncoder

    config = default_ali_config()
    assert config["model"]["architecture"] == "dcgan" and list(config["model"]["hidden"]) == [256]
    assert config["model"]["likelihood"] == "bernoulli-relaxed" and config["data"]["binarize"] == "none"
    assert config["model"]["network"] == {
        "layout": "ali",
        "slope": 0.01,
        "init_std": 0.01,
        "decoder_activation": "leaky",
        "centre_input": False,
    }
    assert config["model"]["scale_head"] == "log-scale" and config["train"]["update"] == "simultaneous"
    assert config["discriminator"] == {
        "x_hidden": [256],
        "z_hidden": [256, 256],
        "joint_hidden": [512, 512],
        "norm": "none",
        "architecture": "dcgan",
        "channels": 32,
        "dropout": 0.2,
        "slope": 0.01,
        "init_std": 0.01,
    }
    assert (config["train"]["lr_g"], config["train"]["lr_d"], config["train"]["betas"]) == (1e-4, 1e-4, [0.5, 0.999])
    assert config["train"]["batch_size"] == 100
    vae = build_model(config)
    assert isinstance(vae.encoder[0], DCGANEncoder) and isinstance(vae.decoder, DCGANDecoder)
    disc = build_pair_discriminator(config)
    assert disc.architecture == "dcgan" and disc.dropout == 0.2
    assert [m.out_features for m in disc.modules() if isinstance(m, nn.Linear)] == [256, 256, 256, 512, 512, 1]
    mlp = default_ali_config(architecture="mlp", hidden=(400,))  # not ALI's convolutional recipe
    assert "network" not in mlp["model"] and mlp["model"]["scale_head"] == "log-variance"
    assert mlp["discriminator"]["joint_hidden"] == [256, 256] and "slope" not in mlp["discriminator"]
    assert default_ali_config(disc_hidden=(64,))["discriminator"]["joint_hidden"] == [64]
    with pytest.raises(DataError, match=r"^update must be 'simultaneous' or 'alternating', got 'both'$"):
        default_ali_config(update="both")
    # a configuration written before the keys existed: the MLP discriminator without dropout it meant
    old = default_ali_config(architecture="mlp", hidden=(400,), disc_hidden=(256,))
    for key in ("architecture", "channels", "dropout"):
        del old["discriminator"][key]
    disc = build_pair_discriminator(old)
    assert disc.architecture == "mlp" and not any(isinstance(m, nn.Dropout) for m in disc.modules())
    assert [m.out_features for m in disc.modules() if isinstance(m, nn.Linear)] == [256, 256, 256, 1]
    with pytest.raises(DataError, match=r"^disc_dropout must be a probability in \[0, 1\), got -0\.1$"):
        default_ali_config(disc_dropout=-0.1)


def test_continuous_bernoulli_mean_cannot_draw_a_black_background():
    """Why the ALI default's generator output is the sigmoid (bernoulli-relaxed), not the continuous
    Bernoulli's mean: at logit -1000 the latter is still 0.0627 (torch clamps λ at float32's eps), while
    about half of Fashion-MNIST's pixels are exactly 0."""
    from pyrogen.distributions import get_likelihood

    logits = torch.full((1, 1, 2, 2), -1000.0)
    assert get_likelihood("continuous-bernoulli").mean(logits).min() > 0.06
    assert get_likelihood("bernoulli-relaxed").mean(logits).max() == 0.0


def test_dcgan_pair_maps_extra_batch_dimensions_and_reconstructs_in_eval_mode():
    torch.manual_seed(0)
    vae = VAE(latent_dim=5, architecture="dcgan", hidden=(32,), likelihood="continuous-bernoulli")
    x = torch.rand(6, 1, 28, 28)
    assert vae.encoder[0](x.expand(2, 6, 1, 28, 28)).shape == (2, 6, 32)
    assert vae.decoder(torch.randn(3, 4, 5)).shape == (3, 4, 1, 28, 28)
    disc = JointDiscriminator((1, 28, 28), 5, (16,), (16,), (16,), architecture="dcgan", channels=4, dropout=0.2)
    ali = AdversarialInference(vae.model, vae.guide, disc, model_x="mean")
    assert torch.isfinite(ali.step(x)["loss_g"])
    vae.eval()  # batch norm's running statistics: one image's reconstruction does not depend on the others
    assert torch.allclose(ali.reconstruct(x)[:1], ali.reconstruct(x[:1]), atol=1e-6)


def test_init_output_bias_starts_the_generator_at_the_data_mean_pixel():
    import math

    from pyrogen.config import default_ali_config
    from pyrogen.training.ali import init_output_bias_

    torch.manual_seed(0)
    vae = VAE(latent_dim=4, architecture="dcgan", hidden=(16,), likelihood="bernoulli-relaxed")
    data = torch.full((10, 1, 28, 28), 0.2)
    init_output_bias_(vae, data)
    assert torch.allclose(vae.decoder.net[-1].bias, torch.tensor([math.log(0.2 / 0.8)]))
    with torch.no_grad():
        vae.decoder.net[-1].weight.zero_()  # the bias alone: every pixel's mean is the data's
        assert torch.allclose(vae.eval().decode(torch.randn(3, 4)), torch.full((3, 1, 28, 28), 0.2), atol=1e-6)
    assert default_ali_config()["train"]["init_output_bias"] is True
    assert "init_output_bias" not in default_ali_config(likelihood="continuous-bernoulli")["train"]
    with pytest.raises(
        DataError,
        match=r"^init_output_bias needs a decoder output that is a logit \(likelihood one "
        r"of \('bernoulli', 'bernoulli-relaxed'\)\), got likelihood 'laplace'$",
    ):
        init_output_bias_(VAE(latent_dim=4, hidden=(8,), likelihood="laplace"), data)


# ---------------------------------------------------------------------- the options that tell pyrogen's loop from ALI's


def test_simultaneous_update_takes_both_gradients_from_one_scoring():
    """update="simultaneous" is ALI's algorithm 1: one step of plain SGD equals, to float precision, the
    step computed by hand from one scoring of the pairs (both losses' gradients at the old parameters)."""
    import copy

    torch.manual_seed(0)
    vae = VAE(latent_dim=4, hidden=(16,), likelihood="bernoulli-relaxed")
    disc = JointDiscriminator((1, 28, 28), 4, (16,), (16,), (16,))
    vae2, disc2 = copy.deepcopy(vae), copy.deepcopy(disc)
    vae3, disc3 = copy.deepcopy(vae), copy.deepcopy(disc)
    x = torch.rand(8, 1, 28, 28)

    def sgd(params):
        return torch.optim.SGD(params, lr=0.5)

    ali = AdversarialInference(
        vae.model, vae.guide, disc, sgd(vae.parameters()), sgd(disc.parameters()), model_x="mean", update="simultaneous"
    )
    torch.manual_seed(1)
    out = ali.step(x)
    by_hand = AdversarialInference(
        vae2.model, vae2.guide, disc2, sgd(vae2.parameters()), sgd(disc2.parameters()), model_x="mean"
    )
    torch.manual_seed(1)
    (xq, zq), (xp, zp) = by_hand._pairs(x)
    s_q, s_p = disc2(xq, zq), disc2(xp, zp)
    loss_d = (F.softplus(-s_q) + F.softplus(s_p)).mean()
    loss_g = (F.softplus(s_q) + F.softplus(-s_p)).mean()
    grads_d = torch.autograd.grad(loss_d, list(disc2.parameters()), retain_graph=True)
    grads_g = torch.autograd.grad(loss_g, list(vae2.parameters()), allow_unused=True)
    with torch.no_grad():
        for p, g in zip([*disc2.parameters(), *vae2.parameters()], [*grads_d, *grads_g]):
            if g is not None:
                p -= 0.5 * g
    assert torch.allclose(out["loss_d"], loss_d) and torch.allclose(out["loss_g"], loss_g)
    for a, b in zip([*disc.parameters(), *vae.parameters()], [*disc2.parameters(), *vae2.parameters()]):
        assert torch.allclose(a, b, atol=1e-6)
    # the alternating update (the default) moves D alike but the players against the updated discriminator
    alt = AdversarialInference(
        vae3.model, vae3.guide, disc3, sgd(vae3.parameters()), sgd(disc3.parameters()), model_x="mean"
    )
    assert alt.update == "alternating"
    torch.manual_seed(1)
    alt.step(x)
    for a, b in zip(disc.parameters(), disc3.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert max((a - b).abs().max().item() for a, b in zip(vae.parameters(), vae3.parameters())) > 1e-4
    with pytest.raises(DataError, match=r"^update must be one of \('alternating', 'simultaneous'\), got 'both'$"):
        AdversarialInference(vae.model, vae.guide, disc, model_x="mean", update="both")


def test_ali_trainer_update_option_and_old_configs_alternate():
    from pyrogen.config import default_ali_config
    from pyrogen.training.ali import build_ali_trainer

    torch.manual_seed(0)
    data = (torch.rand(20, 1, 28, 28), None, torch.rand(10, 1, 28, 28), None)
    config = default_ali_config(hidden=(16,))
    config["train"].update(batch_size=10, num_fixed=4)
    config["train"].pop("update", None)  # a run made before the key existed
    assert build_ali_trainer(config, device="cpu", progress=False, data=data).estimator.update == "alternating"
    config["train"]["update"] = "simultaneous"
    assert build_ali_trainer(config, device="cpu", progress=False, data=data).estimator.update == "simultaneous"


def test_ali_layout_last_encoder_convolution_is_the_dcgan_linear_layer():
    """The encoder's convolution to a 1x1 map (ALI's layout) computes what the "dcgan" layout's linear
    layer on the flattened 7x7 maps computes, with the kernel as its weight matrix."""
    from pyrogen.networks import DCGANEncoder

    torch.manual_seed(0)
    ali = DCGANEncoder((1, 28, 28), hidden=16, channels=4, layout="ali")
    conv = ali.net[6]
    assert conv.kernel_size == (7, 7) and conv.out_channels == 16
    linear = nn.Linear(8 * 7 * 7, 16, bias=False)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(16, -1))
    maps = torch.randn(5, 8, 7, 7)
    assert torch.allclose(conv(maps).flatten(1), linear(maps.flatten(1)), atol=1e-5)


def test_dcgan_network_options_and_defaults():
    from pyrogen.networks import DCGANDecoder, DCGANEncoder

    torch.manual_seed(0)
    default = VAE(latent_dim=4, architecture="dcgan", hidden=(16,), likelihood="bernoulli-relaxed")
    assert "network" not in default.config  # configs without the key build the networks they always did
    assert [type(m).__name__ for m in default.decoder.net] == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Unflatten",
        "ConvTranspose2d",
        "BatchNorm2d",
        "ReLU",
        "ConvTranspose2d",
    ]
    assert {m.negative_slope for m in default.encoder.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    options = {"layout": "ali", "slope": 0.01, "init_std": 0.01, "decoder_activation": "leaky"}
    vae = VAE(latent_dim=4, architecture="dcgan", hidden=(16,), likelihood="bernoulli-relaxed", network=options)
    assert vae.config["network"] == options
    assert {m.negative_slope for m in vae.modules() if isinstance(m, nn.LeakyReLU)} == {0.01}
    assert not any(isinstance(m, nn.ReLU) for m in vae.decoder.modules())
    assert [type(m).__name__ for m in vae.encoder[0].net].count("BatchNorm2d") == 3  # the input layer's too
    weights = torch.cat([m.weight.flatten() for m in vae.decoder.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(weights.std().item() - 0.01) < 0.0005  # 36,000+ draws of N(0, 0.01)
    x = torch.rand(3, 1, 28, 28)
    assert vae.decoder(vae.encoder[0](x)[..., :4]).shape == (3, 1, 28, 28)
    assert DCGANDecoder(4, (1, 28, 28), hidden=16, layout="ali")(torch.randn(2, 3, 4)).shape == (2, 3, 1, 28, 28)
    assert DCGANEncoder((1, 28, 28), hidden=16, layout="ali")(x).shape == (3, 16)
    for network, message in [
        (
            {"layot": "ali"},
            "unknown network option(s) ['layot']; expected some of ('layout', 'slope', 'init_std', "
            "'decoder_activation', 'centre_input')",
        ),
        ({"centre_input": 1}, "centre_input must be True or False, got 1"),
        ({"layout": "resnet"}, "layout must be one of ('dcgan', 'ali'), got 'resnet'"),
        ({"decoder_activation": "tanh"}, "decoder_activation must be one of ('relu', 'leaky'), got 'tanh'"),
        ({"init_std": 0}, "init_std must be a positive number, got 0"),
    ]:
        with pytest.raises(DataError) as e:
            VAE(latent_dim=4, architecture="dcgan", hidden=(16,), network=network)
        assert str(e.value) == message
    with pytest.raises(
        DataError,
        match=r"^network options are for the 'dcgan' architecture only, got "
        r"architecture 'mlp' with \['slope'\]$",
    ):
        VAE(latent_dim=4, hidden=(16,), network={"slope": 0.1})


def test_ali_layout_starts_as_alis_networks():
    """ALI's Blocks networks: batch-norm scales start at exactly 1, the encoder's last layer (pyrogen's
    parameter head) at N(0, init_std) with zero biases; ``centre_input=False`` feeds the images as they are."""
    torch.manual_seed(0)
    options = {"layout": "ali", "slope": 0.01, "init_std": 0.01, "decoder_activation": "leaky", "centre_input": False}
    vae = VAE(latent_dim=64, architecture="dcgan", hidden=(256,), likelihood="bernoulli-relaxed", network=options)
    norms = [m for m in vae.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(norms) == 6 and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    head = torch.cat([layer.weight.flatten() for layer in vae.encoder[1].layers.values()])
    assert abs(head.std().item() - 0.01) < 0.0005  # 32,768 draws of N(0, 0.01)
    assert all(not layer.bias.any() for layer in vae.encoder[1].layers.values())
    x = torch.rand(5, 1, 28, 28)
    centred = VAE(
        latent_dim=64,
        architecture="dcgan",
        hidden=(256,),
        likelihood="bernoulli-relaxed",
        network=dict(options, centre_input=True),
    )
    centred.load_state_dict(vae.state_dict())
    body, centred_body = vae.encoder[0].eval(), centred.encoder[0].eval()
    torch.testing.assert_close(body(2 * x - 1), centred_body(x), rtol=0, atol=0)
    assert not torch.allclose(body(x), centred_body(x))
    dcgan = VAE(latent_dim=64, architecture="dcgan", hidden=(256,), likelihood="bernoulli-relaxed")
    scales = torch.cat([m.weight for m in dcgan.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))])
    assert 0.005 < scales.std().item() < 0.05  # DCGAN's layout keeps N(1, 0.02)


def test_ali_defaults_step_as_the_reference():
    """From the same weights, batches and noise (float64, dropout off), the trainer of ``pyrogen train
    ali``'s defaults and the benchmark's hand-written ALI take the same gradients and, after three
    steps of 20 images, compute the same functions (to float64 rounding); with the alternating update they do not."""
    torch.manual_seed(1)
    images = torch.rand(60, 1, 28, 28)
    grad_difference, output_difference = check_same_step(images, batch_size=20)
    assert grad_difference < 1e-12 and output_difference < 1e-10
    assert torch.get_default_dtype() == torch.float32  # restored
    alternating = check_same_step(images, steps=1, batch_size=20, settings=[("train.update", "alternating")])
    assert alternating[1] > 1e-4


def test_ali_defaults_build_the_reference_networks():
    """``pyrogen train ali``'s defaults build ``benchmarks.references.ali``'s hand-written reference
    networks: with the reference's weights copied in, every output agrees to float rounding; with the
    log-variance head (σ = exp(a / 2)) instead of the log-scale one it does not, and the earlier
    defaults (``PREVIOUS``) do not have the reference's layers."""
    torch.manual_seed(0)
    images = torch.rand(8, 1, 28, 28)
    assert check_same_networks(images) < 1e-5
    assert check_same_networks(images, [("model.scale_head", "log-variance")]) > 1e-2
    with pytest.raises(AssertionError, match="^the pyrogen networks do not have the reference's layers$"):
        check_same_networks(images, PREVIOUS)


def test_joint_discriminator_slope_and_init_options():
    torch.manual_seed(0)
    disc = JointDiscriminator((1, 28, 28), 4, (64,), (64,), (64,), architecture="dcgan", slope=0.01, init_std=0.01)
    assert {m.negative_slope for m in disc.modules() if isinstance(m, nn.LeakyReLU)} == {0.01}
    weights = torch.cat([m.weight.flatten() for m in disc.modules() if isinstance(m, (nn.Linear, nn.Conv2d))])
    assert abs(weights.std().item() - 0.01) < 0.0005
    default = JointDiscriminator((1, 28, 28), 4, (64,), (64,), (64,), architecture="dcgan")
    assert {m.negative_slope for m in default.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    with pytest.raises(DataError, match=r"^slope must be a number in \[0, 1\), got 1$"):
        JointDiscriminator((1, 28, 28), 4, slope=1)
