"""The adversarial game shared by the GAN, ALI / BiGAN and the adversarial autoencoder (pyrogen.infer.adversarial_game).

ALI and the adversarial autoencoder distribute like the GAN: two gloo processes, each on its half of every
batch, take the single process's steps (players with no noise of their own, so both runs see the same pairs).
"""

import os
import socket

import pyro
import pyro.distributions as pdist
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pyrogen.errors import PyrogenError
from pyrogen.infer import Adversarial, AdversarialAutoencoder, AdversarialInference
from pyrogen.infer.gan_losses import GANLoss, HingeLoss, WassersteinGPLoss, get_gan_loss
from pyrogen.models.gan import Generator, build_discriminator


class _Pair(nn.Module):
    """A deterministic encoder and generator on vectors: every draw is a point mass at a given value.

    ALI's model draws z from ``Delta(z)`` for the noise ``z`` passed in; the adversarial autoencoder's
    model declares the prior ``Delta(z)``, so its "prior draws" are ``z``; the guide is ``Delta(E(x))``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        self.decoder = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 6))

    def generator(self, batch_size, z=None):
        with pyro.plate("data", batch_size):
            z = pyro.sample("z", pdist.Delta(z, event_dim=1))
            pyro.sample("x", pdist.Delta(self.decoder(z), event_dim=1))

    def autoencoder(self, x, z=None):
        with pyro.plate("data", x.shape[0]):
            code = pyro.sample("z", pdist.Delta(z, event_dim=1))
            pyro.sample("x", pdist.Normal(self.decoder(code), 1.0).to_event(1), obs=x)

    def guide(self, x, z=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pdist.Delta(self.encoder(x), event_dim=1))


class _JointDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(9, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, x, z):
        return self.net(torch.cat([x, z], 1))


STEPS, BATCH = 3, 8
GAMES = ("ali-alternating", "ali-simultaneous", "aae")


def _batches():
    g = torch.Generator().manual_seed(1)
    return torch.rand(STEPS, BATCH, 6, generator=g), torch.randn(STEPS, BATCH, 3, generator=g)


def _play(game, real, z, rank=None):
    """A few steps of ``game`` on fixed batches (this rank's halves, or the whole batches): parameters, stats."""
    torch.manual_seed(0)
    pair = _Pair()
    sgd = torch.optim.SGD(pair.parameters(), lr=0.1)
    if game == "aae":
        disc = nn.Sequential(nn.Linear(3, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
        estimator = AdversarialAutoencoder(
            pair.autoencoder, pair.guide, disc, sgd, torch.optim.SGD(disc.parameters(), lr=0.1), track_grad_norms=True
        )
    else:
        disc = _JointDiscriminator()
        estimator = AdversarialInference(
            pair.generator,
            pair.guide,
            disc,
            sgd,
            torch.optim.SGD(disc.parameters(), lr=0.1),
            update=game.split("-")[1],
            track_grad_norms=True,
        )
    if rank is not None:
        if rank == 1:  # distribute() must hand every rank rank 0's parameters
            with torch.no_grad():
                for p in (*pair.parameters(), *disc.parameters()):
                    p.add_(1.0)
        assert estimator.distribute() is estimator
        real, z = real.chunk(2, dim=1)[rank], z.chunk(2, dim=1)[rank]
    stats = [estimator.step(real[i], z=z[i]) for i in range(real.shape[0])]
    return {
        "pair": pair.state_dict(),
        "discriminator": disc.state_dict(),
        "stats": {k: torch.stack([s[k] for s in stats]) for k in stats[0]},
    }


def _worker(rank, world, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from pyrogen import distributed

    assert distributed.init_from_env("cpu")
    try:
        torch.save({game: _play(game, *_batches(), rank) for game in GAMES}, f"{out}.rank{rank}")
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Both ranks' results of every game in a two-process run (one spawn serves all)."""
    out = tmp_path_factory.mktemp("games") / "game"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(2, port, str(out)), nprocs=2, start_method="spawn")
    return [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("game", GAMES)
def test_ali_and_the_adversarial_autoencoder_distribute_as_one_process_on_the_whole_batch(ranks, game, one_thread):
    single = _play(game, *_batches())
    assert single["stats"]["loss_g"].abs().min() > 0
    ranks = [r[game] for r in ranks]
    for player in ("pair", "discriminator"):
        for name, value in single[player].items():
            torch.testing.assert_close(ranks[0][player][name], ranks[1][player][name], rtol=0, atol=0)
            torch.testing.assert_close(ranks[0][player][name], value, rtol=1e-5, atol=1e-6, msg=f"{player}.{name}")
    for name, value in single["stats"].items():
        if name.startswith("grad_norm"):  # the norms of the averaged gradients, the same on every rank
            for r in ranks:
                torch.testing.assert_close(r["stats"][name], value, rtol=1e-5, atol=1e-6, msg=name)
        else:  # each rank's own statistics, whose mean over equal halves is the whole batch's
            torch.testing.assert_close(
                (ranks[0]["stats"][name] + ranks[1]["stats"][name]) / 2, value, rtol=1e-5, atol=1e-6, msg=name
            )


def test_every_game_refuses_to_distribute_without_a_process_group():
    pair = _Pair()
    games = [
        Adversarial(
            Generator(latent_dim=4, architecture="mlp", hidden=(8,)).model, build_discriminator("mlp", hidden=(8,))
        ),
        AdversarialInference(pair.generator, pair.guide, _JointDiscriminator()),
        AdversarialAutoencoder(pair.autoencoder, pair.guide, nn.Linear(3, 1)),
    ]
    for game in games:
        name = type(game).__name__
        with pytest.raises(
            PyrogenError,
            match=rf"^{name}\.distribute\(\) needs an initialized torch\.distributed "
            "process group; launch with torchrun",
        ):
            game.distribute()


def test_has_penalty_is_the_one_test_of_a_penalty():
    assert get_gan_loss("wgan-gp").has_penalty and not WassersteinGPLoss(gp_weight=0).has_penalty
    assert not any(get_gan_loss(name).has_penalty for name in ("minimax", "nonsaturating", "hinge", "least-squares"))

    class R1(HingeLoss):  # a user's loss with a penalty of its own
        def penalty(self, discriminator, real, fake):
            return torch.zeros(())

    assert R1().has_penalty and not GANLoss().has_penalty


def test_evaluate_loss_enables_gradients_for_a_users_penalty():
    """A penalty that differentiates D needs gradients even in evaluate_loss, for every game."""

    class GradientPenalty(HingeLoss):
        def penalty(self, discriminator, real, fake):
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
            return grad.square().sum() / x.shape[0]

    pair = _Pair()
    real, z = _batches()
    aae = AdversarialAutoencoder(pair.autoencoder, pair.guide, nn.Linear(3, 1), loss=GradientPenalty())
    out = aae.evaluate_loss(real[0], z=z[0])
    hinge = AdversarialAutoencoder(pair.autoencoder, pair.guide, aae.discriminator, loss="hinge")
    hinge = hinge.evaluate_loss(real[0], z=z[0])
    # D is linear: the penalty is the squared norm of its weight, added to the hinge loss
    penalty = aae.discriminator.weight.square().sum().item()
    assert out["loss_d"].item() == pytest.approx(hinge["loss_d"].item() + penalty, rel=1e-6) and penalty > 0
