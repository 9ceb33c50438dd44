"""Adversarial training: losses against their formulas, the optimal discriminator, mode coverage
on eight Gaussians, the Generator's Pyro sites, exact resume, divergence stops and bad inputs."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from scipy import integrate, stats
from torch import nn

from pyrogen.errors import DataError, RunDirError, TrainingDivergedError
from pyrogen.infer import Adversarial
from pyrogen.infer.adversarial import GeneratorSiteError
from pyrogen.infer.gan_losses import (
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    WassersteinGPLoss,
    get_gan_loss,
)
from pyrogen.models import VAE, Generator
from pyrogen.models.gan import DCGANDiscriminator, DCGANGenerator, build_discriminator
from pyrogen.runs import RunDir
from pyrogen.training.gan import GANTrainer, build_gan_trainer, default_gan_config, resume_gan_trainer

REAL = torch.tensor([2.0, -0.5, 0.3, 1.2])
FAKE = torch.tensor([-1.0, 0.7, -2.5])


# ---------------------------------------------------------------- losses = formulas
def test_minimax_is_the_value_function():
    d_real, d_fake = torch.sigmoid(REAL), torch.sigmoid(FAKE)
    value = torch.log(d_real).mean() + torch.log(1 - d_fake).mean()
    loss = MinimaxLoss()
    torch.testing.assert_close(loss.value(REAL, FAKE), value)
    torch.testing.assert_close(loss.discriminator_loss(REAL, FAKE), -value)
    torch.testing.assert_close(loss.generator_loss(FAKE), torch.log(1 - d_fake).mean())
    torch.testing.assert_close(loss.score_mean(REAL), d_real.mean())


def test_nonsaturating_generator_loss():
    loss = NonSaturatingLoss()
    torch.testing.assert_close(loss.generator_loss(FAKE), -torch.log(torch.sigmoid(FAKE)).mean())
    torch.testing.assert_close(loss.discriminator_loss(REAL, FAKE), MinimaxLoss().discriminator_loss(REAL, FAKE))


def test_logistic_losses_stay_finite_where_the_sigmoid_saturates():
    big = torch.tensor([200.0, -200.0])
    for loss in (MinimaxLoss(), NonSaturatingLoss()):
        assert torch.isfinite(loss.discriminator_loss(big, big)) and torch.isfinite(loss.generator_loss(big))
    assert NonSaturatingLoss().generator_loss(torch.tensor([-200.0])).item() == pytest.approx(200.0)


def test_hinge_and_least_squares_losses():
    hinge = HingeLoss()
    expected = torch.clamp(1 - REAL, min=0).mean() + torch.clamp(1 + FAKE, min=0).mean()
    torch.testing.assert_close(hinge.discriminator_loss(REAL, FAKE), expected)
    torch.testing.assert_close(hinge.generator_loss(FAKE), -FAKE.mean())
    ls = LeastSquaresLoss()
    torch.testing.assert_close(
        ls.discriminator_loss(REAL, FAKE), 0.5 * ((REAL - 1) ** 2).mean() + 0.5 * (FAKE**2).mean()
    )
    torch.testing.assert_close(ls.generator_loss(FAKE), 0.5 * ((FAKE - 1) ** 2).mean())


def test_wasserstein_loss_and_per_example_gradient_penalty():
    loss = WassersteinGPLoss(gp_weight=10.0)
    torch.testing.assert_close(loss.discriminator_loss(REAL, FAKE), FAKE.mean() - REAL.mean())
    torch.testing.assert_close(loss.generator_loss(FAKE), -FAKE.mean())
    # critic D(x) = 0.5 |x|^2 has gradient x, so each interpolate's norm is |x_hat|
    critic = lambda x: 0.5 * x.flatten(1).square().sum(1)  # noqa: E731
    real = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    fake = torch.tensor([[0.0, 0.0], [0.0, -0.5]])
    eps = torch.tensor([1.0, 0.5])
    x_hat = eps[:, None] * real + (1 - eps[:, None]) * fake  # [[3, 4], [0, 0]]
    expected = 10.0 * ((x_hat.norm(dim=1) - 1) ** 2).mean()  # 10 * ((5-1)^2 + (0-1)^2) / 2 = 85
    penalty = loss.penalty(critic, real, fake, epsilon=eps)
    torch.testing.assert_close(penalty, expected)
    assert penalty.item() == pytest.approx(85.0)
    batch_norm = 10.0 * (x_hat.norm() - 1) ** 2  # torchgan's single norm over the batch: 160
    assert penalty.item() != pytest.approx(batch_norm.item())


def test_gradient_penalty_is_differentiable_in_the_critic():
    critic = nn.Linear(3, 1)
    penalty = WassersteinGPLoss().penalty(critic, torch.randn(5, 3), torch.randn(5, 3))
    penalty.backward()
    w = critic.weight.detach()
    torch.testing.assert_close(penalty.detach(), 10.0 * (w.norm() - 1) ** 2)  # a linear critic's gradient is w
    torch.testing.assert_close(critic.weight.grad, 10.0 * 2 * (w.norm() - 1) * w / w.norm())


def test_loss_inputs_are_checked():
    with pytest.raises(
        DataError,
        match=r"real_scores must hold one score per example, shape \(B,\) or \(B, 1\), "
        r"got \(4, 2\)",
    ):
        MinimaxLoss().discriminator_loss(torch.zeros(4, 2), FAKE)
    with pytest.raises(
        DataError,
        match="unknown GAN loss 'vanilla'; expected one of hinge, least-squares, minimax, nonsaturating, wgan-gp",
    ):
        get_gan_loss("vanilla")
    with pytest.raises(DataError, match="gp_weight must be >= 0, got -1"):
        WassersteinGPLoss(gp_weight=-1)


# ---------------------------------------------------------------- the optimal discriminator
def test_discriminator_approaches_the_optimal_discriminator(one_thread):
    """p_data = N(0, 1) against a fixed generator p_g = N(1, 1): D*(x) = sigma(1/2 - x),
    and V(D*, G) = -log 4 + 2 JSD(p_data || p_g)."""
    shift = nn.Parameter(torch.tensor(1.0))

    def model(batch_size=1):
        with pyro.plate("data", batch_size):
            return pyro.sample("x", dist.Normal(shift, 1.0).expand([1]).to_event(1))

    disc = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    gan = Adversarial(
        model, disc, torch.optim.SGD([shift], lr=0.0), torch.optim.Adam(disc.parameters(), lr=3e-3), loss="minimax"
    )
    g = torch.Generator().manual_seed(1)
    with pyro.validation_enabled(False):
        for _ in range(800):
            gan.step(torch.randn(256, 1, generator=g))
    grid = torch.linspace(-1.5, 2.5, 41)[:, None]
    with torch.no_grad():
        d = torch.sigmoid(disc(grid)).squeeze(1)
    d_star = torch.sigmoid(0.5 - grid.squeeze(1))
    assert (d - d_star).abs().max().item() < 0.05
    p, q = stats.norm(0, 1).pdf, stats.norm(1, 1).pdf
    m = lambda x: (p(x) + q(x)) / 2  # noqa: E731
    jsd = 0.5 * integrate.quad(lambda x: p(x) * math.log(p(x) / m(x)) + q(x) * math.log(q(x) / m(x)), -12, 13)[0]
    x = torch.randn(20000, 1, generator=g)
    with torch.no_grad():
        value = MinimaxLoss().value(disc(x), disc(x + 1.0))
    assert value.item() == pytest.approx(-math.log(4) + 2 * jsd, abs=0.01)


# ---------------------------------------------------------------- eight Gaussians
def _ring(n, g, std):
    angle = torch.randint(8, (n,), generator=g) * (2 * math.pi / 8)
    return torch.stack([2 * angle.cos(), 2 * angle.sin()], 1) + std * torch.randn(n, 2, generator=g)


def test_small_gan_covers_all_eight_modes(one_thread):
    """Eight Gaussians (std 0.1) on a circle of radius 2: after 1000 non-saturating steps every mode
    receives at least 4% of 4000 samples (12.5% each would be perfect) and at least 60% of the samples
    lie within 3 standard deviations of a mode."""
    std, width = 0.1, 64
    net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))
    gen = Generator(latent_dim=2, image_shape=(2,), network=net)
    disc = nn.Sequential(
        nn.Linear(2, width), nn.LeakyReLU(0.2), nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1)
    )
    gan = Adversarial(
        gen.model,
        disc,
        torch.optim.Adam(gen.parameters(), 2e-3, betas=(0.5, 0.999)),
        torch.optim.Adam(disc.parameters(), 2e-3, betas=(0.5, 0.999)),
        loss="nonsaturating",
    )
    g = torch.Generator().manual_seed(1)
    with pyro.validation_enabled(False):
        for _ in range(1000):
            gan.step(_ring(256, g, std))
    x = gen.sample(4000)
    angle = torch.arange(8) * (2 * math.pi / 8)
    centres = torch.stack([2 * angle.cos(), 2 * angle.sin()], 1)
    distance, mode = torch.cdist(x, centres).min(1)
    near = distance < 3 * std
    counts = torch.bincount(mode[near], minlength=8)
    assert near.float().mean().item() >= 0.6
    assert counts.min().item() >= 0.04 * 4000, counts.tolist()


# ---------------------------------------------------------------- the Generator model and networks
def test_generator_sites_plate_and_point_mass():
    gen = Generator(latent_dim=8, architecture="mlp", hidden=(32,))
    tr = poutine.trace(gen.model).get_trace(batch_size=5)
    assert tr.nodes["z"]["value"].shape == (5, 8) and tr.nodes["z"]["fn"].event_shape == (8,)
    x = tr.nodes["x"]
    assert isinstance(x["fn"], dist.Delta) and x["fn"].event_dim == 3 and x["value"].shape == (5, 1, 28, 28)
    assert [f.name for f in x["cond_indep_stack"]] == ["data"]
    assert 0 <= x["value"].min() and x["value"].max() <= 1
    torch.testing.assert_close(x["value"], gen.generate(tr.nodes["z"]["value"]))
    with pytest.raises(DataError, match="implicit model: it has no density p"):
        gen.model(torch.rand(5, 1, 28, 28))


def test_dcgan_networks_shapes_range_and_init():
    g, d = DCGANGenerator(16, channels=16), DCGANDiscriminator(channels=16)
    z = torch.randn(3, 4, 16)
    x = g(z)
    assert x.shape == (3, 4, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert d(x).shape == (3, 4)
    conv = [m for m in d.modules() if isinstance(m, nn.Conv2d)][0]
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.15)
    sn = build_discriminator("dcgan", channels=16, norm="spectral")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in sn.modules())
    sn.train()
    for _ in range(30):  # power iterations converge
        sn(torch.rand(2, 1, 28, 28))
    w = sn.net[2].weight.flatten(1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.02)


def _projection(g, z):
    """The DCGAN generator's projection block up to its batch norm's output (before the ReLU)."""
    h = z
    for m in g.net:
        h = m(h)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return h.reshape(z.shape[0], -1, 7, 7)
    raise AssertionError("no batch norm")


def test_dcgan_generator_projection_norm_per_feature_or_per_map():
    # issue 18: pyrogen's default BatchNorm1d has statistics per map and position; DCGAN's
    # BatchNorm2d ("channel") shares each map's statistics over its 7x7 positions
    torch.manual_seed(0)
    assert DCGANGenerator(16).projection_norm == "feature" and Generator(16).config["projection_norm"] == "feature"
    g = DCGANGenerator(16, channels=8, projection_norm="channel").train()
    assert [type(m) for m in g.net if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))] == [nn.BatchNorm2d] * 2
    z = torch.randn(32, 16)
    h = _projection(g, z).detach().double()
    # train mode, shift 0 at initialisation: each map has mean 0 and (biased) variance
    # gamma^2 v / (v + eps) over batch and positions together, v the map's variance before the norm,
    # while single positions keep their own means
    v = g.net[1](g.net[0](z)).detach().double().var((0, 2, 3), unbiased=False)
    gamma, eps = g.net[2].weight.detach().double(), g.net[2].eps
    torch.testing.assert_close(h.mean((0, 2, 3)), torch.zeros(16, dtype=torch.double), atol=1e-6, rtol=0)
    torch.testing.assert_close(h.var((0, 2, 3), unbiased=False), gamma.square() * v / (v + eps), atol=0, rtol=1e-5)
    assert h.mean(0).abs().max() > 0.1
    default = _projection(DCGANGenerator(16, channels=8).train(), torch.randn(32, 16))
    torch.testing.assert_close(default.mean(0), torch.zeros(16, 7, 7), atol=1e-5, rtol=0)  # every position's own


def test_dcgan_projection_is_pytorch_examples_transposed_convolution():
    # ConvTranspose2d(nz, 2c, 7) on a 1x1 input (pytorch/examples' first layer) is the linear projection
    torch.manual_seed(0)
    g = DCGANGenerator(16, channels=8, projection_norm="channel")
    conv = nn.ConvTranspose2d(16, 16, 7, 1, 0, bias=False)
    with torch.no_grad():
        g.net[0].weight.copy_(conv.weight.reshape(16, -1).T)
    z = torch.randn(5, 16)
    torch.testing.assert_close(g.net[1](g.net[0](z)), conv(z[:, :, None, None]))


def test_runs_without_projection_norm_in_their_config_load_with_per_feature_batch_norm():
    config = default_gan_config(latent_dim=16, channels=8)
    assert config["model"]["projection_norm"] == "feature"
    from pyrogen.models.registry import build_gan_networks

    config["model"]["projection_norm"] = "channel"
    assert isinstance(build_gan_networks(config)[0].network.net[2], nn.BatchNorm2d)
    legacy = Generator(16, channels=8)
    del config["model"]["projection_norm"]  # a config.json written before the key existed
    gen, _ = build_gan_networks(config)
    assert gen.network.projection_norm == "feature"
    gen.load_state_dict(legacy.state_dict())  # an old checkpoint's weights fit
    with pytest.raises(DataError, match=r"^projection_norm must be one of \('channel', 'feature'\), got 'layer'$"):
        DCGANGenerator(16, projection_norm="layer")


def test_discriminator_sees_data_rescaled_to_minus_one_one():
    d = build_discriminator("mlp", image_shape=(1, 2, 2), hidden=(4,))
    seen = []
    d.net[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    d(torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]]))
    torch.testing.assert_close(seen[0], torch.tensor([[-1.0, 1.0, 0.0, -0.5]]))


# ---------------------------------------------------------------- Adversarial: steps, VAE generators, errors
def test_step_updates_both_players_and_evaluate_updates_nothing():
    gen = Generator(latent_dim=4, architecture="mlp", hidden=(16,))
    disc = build_discriminator("mlp", hidden=(16,))
    gan = Adversarial(gen.model, disc, track_grad_norms=True)
    x = torch.rand(8, 1, 28, 28)
    before = [p.detach().clone() for p in (*gen.parameters(), *disc.parameters())]
    out = gan.evaluate_loss(x)
    assert all(torch.equal(a, b) for a, b in zip(before, (*gen.parameters(), *disc.parameters())))
    assert set(out) == {"loss_d", "loss_g", "d_real", "d_fake", "d_accuracy"}
    out = gan.step(x)
    assert set(out) == {"loss_d", "loss_g", "d_real", "d_fake", "d_accuracy", "grad_norm_d", "grad_norm_g"}
    assert all(not v.requires_grad and v.dim() == 0 for v in out.values())
    after = list(gen.parameters()) + list(disc.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.requires_grad for p in disc.parameters())
    assert gan.generator_optim.defaults["lr"] == 2e-4 and gan.generator_optim.defaults["betas"] == (0.5, 0.999)


def test_d_steps_take_one_batch_per_discriminator_update():
    gen = Generator(latent_dim=4, architecture="mlp", hidden=(16,))
    disc = build_discriminator("mlp", hidden=(16,))
    gan = Adversarial(gen.model, disc, loss="wgan-gp", d_steps=3)
    calls = []
    disc.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    gan.step([torch.rand(6, 1, 28, 28) for _ in range(3)])
    # three updates x (real, fake, interpolates) + the generator update
    assert calls == [6] * 10
    with pytest.raises(DataError, match="step got 2 real batches; pass one batch, or a list of d_steps = 3"):
        gan.step([torch.rand(6, 1, 28, 28)] * 2)


@pytest.mark.parametrize("likelihood", ["continuous-bernoulli", "normal-fixed"])
def test_vae_decoder_works_as_a_generator_unchanged(likelihood):
    vae = VAE(latent_dim=4, hidden=(16,), likelihood=likelihood)
    gan = Adversarial(vae.model, build_discriminator("mlp", hidden=(16,)))
    decoder = [p.detach().clone() for p in vae.decoder.parameters()]
    out = gan.step(torch.rand(8, 1, 28, 28).clamp(0.01, 0.99))
    assert math.isfinite(out["loss_g"].item())
    assert all(not torch.equal(a, b) for a, b in zip(decoder, vae.decoder.parameters()))


def test_non_reparameterized_site_is_a_clear_error():
    vae = VAE(latent_dim=4, hidden=(16,), likelihood="bernoulli")
    gan = Adversarial(vae.model, build_discriminator("mlp", hidden=(16,)))
    with pytest.raises(
        GeneratorSiteError,
        match="site 'x' of the generator is drawn from Bernoulli, which is "
        r"not reparameterizable \(no rsample\)",
    ):
        gan.step(torch.rand(8, 1, 28, 28).round())


def test_bad_inputs_get_clear_errors():
    gen = Generator(latent_dim=4, architecture="mlp", hidden=(16,))
    disc = build_discriminator("mlp", hidden=(16,))
    gan = Adversarial(gen.model, disc)
    with pytest.raises(
        DataError,
        match=r"x must have the shape of the generator's samples \(8, 1, 28, 28\), "
        r"got \(8, 784\)",
    ):
        gan.step(torch.rand(8, 784))
    with pytest.raises(DataError, match="x must be a floating-point tensor batch of real examples, got torch.uint8"):
        gan.step(torch.zeros(8, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match="d_steps must be a positive integer, got 0"):
        Adversarial(gen.model, disc, d_steps=0)
    with pytest.raises(TypeError, match="discriminator must be a torch.nn.Module, got function"):
        Adversarial(gen.model, lambda x: x)
    with pytest.raises(GeneratorSiteError, match="the generator model has no sample site 'image'"):
        Adversarial(gen.model, disc, site="image").step(torch.rand(8, 1, 28, 28))
    wide = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with pytest.raises(
        DataError,
        match=r"real_scores must hold one score per example, shape \(B,\) or \(B, 1\), "
        r"got \(8, 2\)",
    ):
        Adversarial(gen.model, wide).step(torch.rand(8, 1, 28, 28))
    with pytest.raises(DataError, match="WGAN-GP's gradient penalty is per example, which batch norm"):
        default_gan_config("dcgan", loss="wgan-gp", norm="batch")


# ---------------------------------------------------------------- the training loop
def _tiny_config(**train):
    config = default_gan_config("mlp", latent_dim=8, hidden=(32,), loss=train.pop("loss", "nonsaturating"))
    config["train"].update(epochs=3, batch_size=25, log_every=3, num_fixed=16, **train)
    return config


@pytest.fixture
def tiny_data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(150, 1, 28, 28, generator=g), torch.rand(40, 1, 28, 28, generator=g)


@pytest.mark.parametrize("train", [{}, {"loss": "wgan-gp", "d_steps": 2, "ema_decay": 0.9}])
def test_resume_is_exact(tmp_path, tiny_data, train, one_thread):
    config = _tiny_config(**train)
    straight = build_gan_trainer(config, device="cpu", progress=False, data=tiny_data)
    straight.fit(3)
    run = RunDir.create(tmp_path / "run", config)
    first = build_gan_trainer(config, run=run, device="cpu", progress=False, data=tiny_data)
    first.fit(1)
    resumed = resume_gan_trainer(tmp_path / "run", device="cpu", progress=False, data=tiny_data)
    assert resumed.epoch == 1
    resumed.fit(3)
    for a, b in zip(straight.state_dict()["generator"].values(), resumed.state_dict()["generator"].values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.discriminator.parameters(), resumed.discriminator.parameters()):
        assert torch.equal(a, b)
    if train.get("ema_decay"):
        assert all(torch.equal(a, b) for a, b in zip(straight.ema.shadow.values(), resumed.ema.shadow.values()))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(straight.metrics) == drop(resumed.metrics)
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {
        "loss_d",
        "loss_g",
        "d_real",
        "d_fake",
        "d_accuracy",
        "grad_norm_d",
        "grad_norm_g",
        "diversity",
        "flags",
    } <= set(rows[0])
    assert (tmp_path / "run" / "samples_epoch003.png").exists()


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data):
    config = _tiny_config()
    run = RunDir.create(tmp_path / "run", config)
    trainer = build_gan_trainer(config, run=run, device="cpu", progress=False, data=tiny_data)
    trainer.fit(1)
    saved = run.load_checkpoint()
    with torch.no_grad():
        next(trainer.generator.parameters()).fill_(float("nan"))
    with pytest.raises(
        TrainingDivergedError,
        match=r"GAN training diverged at epoch 2, step \d+: loss_\w is nan; "
        r"stopping. The last good checkpoint \(epoch 1\) is kept",
    ):
        trainer.fit(2)
    assert run.load_checkpoint()["epoch"] == 1
    assert torch.equal(
        run.load_checkpoint()["generator"]["network.net.0.weight"], saved["generator"]["network.net.0.weight"]
    )
    trainer = build_gan_trainer(
        dict(config, train=dict(config["train"], divergence_threshold=1e-3)),
        device="cpu",
        progress=False,
        data=tiny_data,
    )
    with pytest.raises(TrainingDivergedError, match=r"exceeds divergence_threshold 0.001"):
        trainer.fit(1)


def test_health_flags_mode_collapse_and_discriminator_overpowering(tiny_data):
    trainer = build_gan_trainer(_tiny_config(), device="cpu", progress=False, data=tiny_data)
    row = {"diversity": 0.05, "d_accuracy": 0.995}
    assert trainer.health_flags(row) == ["mode-collapse", "d-overpowering"]
    assert trainer.health_flags({"diversity": 0.9, "d_accuracy": 0.7}) == []
    with torch.no_grad():  # a generator that ignores z: every sample is the same image
        trainer.generator.network.net[-1].weight.zero_()
    trainer.fit(1)
    assert trainer.metrics[-1]["diversity"] < 0.05  # real images: 1 by definition
    assert "mode-collapse" in trainer.metrics[-1]["flags"]


def test_trainer_refuses_bad_settings(tiny_data):
    with pytest.raises(DataError, match="d_steps must be a positive integer, got 0"):
        build_gan_trainer(_tiny_config(d_steps=0), device="cpu", progress=False, data=tiny_data)
    with pytest.raises(DataError, match="training data must lie in"):
        GANTrainer(
            Generator(8, architecture="mlp", hidden=(8,)),
            build_discriminator("mlp", hidden=(8,)),
            tiny_data[0] * 2,
            tiny_data[1],
            _tiny_config(),
            progress=False,
        )


def test_cli_trains_resumes_and_samples_a_gan(tmp_path, monkeypatch, tiny_data, capsys):
    from pyrogen import cli
    from pyrogen.training import gan as gan_training

    monkeypatch.setattr(gan_training, "load_gan_data", lambda data, device: tiny_data)
    out = str(tmp_path / "gan")
    args = [
        "train",
        "gan",
        "--out",
        out,
        "--architecture",
        "mlp",
        "--hidden",
        "16",
        "--latent-dim",
        "4",
        "--batch-size",
        "50",
        "--epochs",
        "1",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert cli.main(args) == 0
    assert (
        cli.main(["train", "gan", "--out", out, "--epochs", "2", "--resume", "--no-progress", "--device", "cpu"]) == 0
    )
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2]
    assert cli.main(["sample", out, "-n", "4", "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "s.png").exists()
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    with pytest.raises(RunDirError):
        RunDir.create(out, {})
    assert cli.main(["evaluate", out, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "a GAN's generator is an implicit model with no density" in err
    assert f"score its samples with 'pyrogen sample-quality {out}'" in err
