"""Data-parallel training with two gloo processes on the CPU equals one process on the same global batch."""

import copy
import os
import socket

import pyro
import pyro.distributions as pdist
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pyrogen.errors import DataError
from pyrogen.infer import Adversarial
from pyrogen.infer.gan_losses import WassersteinGPLoss
from pyrogen.models import VAE
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.runs import RunDir
from pyrogen.training import VAETrainer, default_config
from pyrogen.training.gan import build_gan_trainer, default_gan_config, resume_gan_trainer


def _config():
    config = default_config(latent_dim=4, hidden=(32,))
    config["train"].update(batch_size=50, seed=7)
    return config


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(400, 1, 28, 28, generator=g), torch.rand(100, 1, 28, 28, generator=g).round()


def _train(model_cls, epochs, run_dir=None):
    config = _config()
    pyro.set_rng_seed(config["train"]["seed"])
    model = model_cls(**config["model"])
    train, test = _data()
    trainer = VAETrainer(model, train, test, config, run=run_dir and RunDir.create(run_dir, config), progress=False)
    losses = [trainer.train_epoch() for _ in range(epochs)]
    return trainer, losses


class _MLPGenerator(nn.Module):
    """x = G(z) for noise z passed in: ``model(batch_size, z=...)`` with a point mass at ``"x"``.

    ``unused`` never gets a gradient: it must keep ``grad`` None on every rank, as in one process."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 6))
        self.unused = nn.Parameter(torch.ones(3))

    def model(self, batch_size, z=None):
        with pyro.plate("data", batch_size):
            pyro.sample("x", pdist.Delta(self.net(z), event_dim=1))


class _DataEpsilonGP(WassersteinGPLoss):
    """WGAN-GP whose interpolation weights are the real examples' first coordinates, so that a
    shard interpolates exactly as its part of the global batch does."""

    def penalty(self, discriminator, real, fake, epsilon=None):
        return super().penalty(discriminator, real, fake, epsilon=real[:, 0])


ADVERSARIAL_STEPS, ADVERSARIAL_BATCH = 3, 8


def _adversarial_batches():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(ADVERSARIAL_STEPS, ADVERSARIAL_BATCH, 6, generator=g)
    z = torch.randn(ADVERSARIAL_STEPS, ADVERSARIAL_BATCH, 4, generator=g)
    return real, z


def _adversarial(loss, real, z, rank=None):
    """A few steps on fixed batches (this rank's shards, or the whole batches); parameters and stats."""
    torch.manual_seed(0)
    gen = _MLPGenerator()
    disc = nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    gan = Adversarial(
        gen.model,
        disc,
        torch.optim.SGD(gen.parameters(), lr=0.1, weight_decay=0.01),
        torch.optim.SGD(disc.parameters(), lr=0.1),
        loss=_DataEpsilonGP() if loss == "wgan-gp" else loss,
        track_grad_norms=True,
    )
    if rank is not None:
        if rank == 1:  # distribute() must hand every rank rank 0's parameters
            with torch.no_grad():
                for p in (*gen.parameters(), *disc.parameters()):
                    p.add_(1.0)
        gan.distribute()
        real, z = real.chunk(2, dim=1)[rank], z.chunk(2, dim=1)[rank]
    stats = [gan.step(real[i], z=z[i]) for i in range(real.shape[0])]
    assert gen.unused.grad is None  # weight decay would otherwise have moved it
    return {
        "generator": gen.state_dict(),
        "discriminator": disc.state_dict(),
        "stats": {k: torch.stack([s[k] for s in stats]) for k in stats[0]},
    }


def _gan_config():
    config = default_gan_config("mlp", latent_dim=8, hidden=(32,))
    config["train"].update(batch_size=50, epochs=1, seed=3)
    return config


def _gan_data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(200, 1, 28, 28, generator=g), torch.rand(64, 1, 28, 28, generator=g)


def _worker(rank, world, port, out, kind):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from pyrogen import distributed

    assert distributed.init_from_env("cpu")
    try:
        if kind == "adversarial":
            real, z = _adversarial_batches()
            torch.save(
                {loss: _adversarial(loss, real, z, rank) for loss in ("nonsaturating", "wgan-gp")}, f"{out}.rank{rank}"
            )
        elif kind == "gan":
            config = _gan_config()
            bad = copy.deepcopy(config)
            bad["train"]["batch_size"] = 51
            with pytest.raises(DataError, match="batch_size 51 must be a multiple of the number of processes 2"):
                build_gan_trainer(bad, device="cpu", progress=False, data=_gan_data())
            run = RunDir.create(out, config) if rank == 0 else None
            build_gan_trainer(config, run=run, device="cpu", progress=False, data=_gan_data()).fit(1)
        elif kind == "ae":
            trainer, losses = _train(Autoencoder, 2)
            if rank == 0:
                torch.save({"params": trainer.vae.state_dict(), "losses": losses}, out)
        else:  # a VAE run through fit(), with checkpoints written by rank 0 only
            config = _config()
            pyro.set_rng_seed(config["train"]["seed"])
            train, test = _data()
            run = RunDir.create(out, config) if rank == 0 else None
            VAETrainer(VAE(**config["model"]), train, test, config, run=run, progress=False).fit(1)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(kind, out, world=2):
    mp.start_processes(_worker, args=(world, _free_port(), str(out), kind), nprocs=world, start_method="spawn")


def test_two_gloo_processes_give_the_single_process_parameters(tmp_path):
    # The autoencoder's objective has no Monte Carlo noise, so the two runs see exactly the same
    # losses; only the order of the floating-point gradient reduction differs.
    torch.set_num_threads(1)
    single, single_losses = _train(Autoencoder, 2)
    _spawn("ae", tmp_path / "ddp.pt")
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for name, value in single.vae.state_dict().items():
        torch.testing.assert_close(ddp["params"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert ddp["losses"] == pytest.approx(single_losses, rel=1e-6)


def test_distributed_vae_run_writes_on_rank_zero_and_resumes_in_one_process(tmp_path):
    _spawn("vae", tmp_path / "run")
    run = RunDir.open(tmp_path / "run")
    assert [row["epoch"] for row in run.read_metrics()] == [1]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv"]

    # Resume the two-process run in a single process for one more epoch.
    state = run.load_checkpoint()
    train, test = _data()
    trainer = VAETrainer(VAE(**state["config"]["model"]), train, test, state["config"], run=run, progress=False)
    trainer.load_state_dict(state)
    trainer.fit(2)
    rows = run.read_metrics()
    assert [row["epoch"] for row in rows] == [1, 2] and rows[1]["test_elbo"] > rows[0]["test_elbo"] - 5


@pytest.fixture(scope="module")
def adversarial_ranks(tmp_path_factory):
    """Both ranks' results of a two-process run of both losses (one spawn serves both)."""
    out = tmp_path_factory.mktemp("adversarial") / "adv"
    _spawn("adversarial", out)
    return [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan-gp"])
def test_two_gloo_processes_play_the_single_process_game(adversarial_ranks, loss):
    # Each rank gets its half of every global batch of real examples and of noise; averaged
    # gradients of per-example means make every update the single process's update.
    ranks = [r[loss] for r in adversarial_ranks]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _adversarial(loss, *_adversarial_batches())
    finally:
        torch.set_num_threads(threads)
    for player in ("generator", "discriminator"):
        for name, value in single[player].items():
            torch.testing.assert_close(ranks[0][player][name], ranks[1][player][name], rtol=0, atol=0)
            torch.testing.assert_close(ranks[0][player][name], value, rtol=1e-5, atol=1e-6, msg=f"{player}.{name}")
    for name, value in single["stats"].items():
        if name.startswith("grad_norm"):  # the norms of the averaged gradients, the same on every rank
            for r in ranks:
                torch.testing.assert_close(r["stats"][name], value, rtol=1e-5, atol=1e-6, msg=name)
        else:  # each rank's own statistics, whose mean over equal shards is the global batch's
            mean = (ranks[0]["stats"][name] + ranks[1]["stats"][name]) / 2
            torch.testing.assert_close(mean, value, rtol=1e-5, atol=1e-6, msg=name)


def test_distributed_gan_run_writes_on_rank_zero_and_resumes_in_one_process(tmp_path):
    _spawn("gan", tmp_path / "run")
    config = _gan_config()
    build_gan_trainer(
        config, run=RunDir.create(tmp_path / "single", config), device="cpu", progress=False, data=_gan_data()
    ).fit(1)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "single").iterdir())
    assert "checkpoint.pt" in files and "samples_epoch001.png" in files
    rows = RunDir.open(tmp_path / "run").read_metrics()
    assert [(row["epoch"], row["step"]) for row in rows] == [(1, 4)]

    # Resume the two-process run in a single process for a second epoch.
    trainer = resume_gan_trainer(tmp_path / "run", device="cpu", progress=False, data=_gan_data())
    assert trainer.world_size == 1 and trainer.epoch == 1
    trainer.fit(2)
    rows = RunDir.open(tmp_path / "run").read_metrics()
    assert [(row["epoch"], row["step"]) for row in rows] == [(1, 4), (2, 8)]
    assert all(abs(row["loss_d"]) < 10 and abs(row["loss_g"]) < 10 for row in rows)
