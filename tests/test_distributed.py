"""Data-parallel training with two gloo processes on the CPU equals one process on the same global batch."""

import os
import socket

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models import VAE
from pyrogen.runs import RunDir
from pyrogen.training import VAETrainer, default_config


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
    trainer = VAETrainer(model, train, test, config, run=run_dir and RunDir.create(run_dir, config),
                         progress=False)
    losses = [trainer.train_epoch() for _ in range(epochs)]
    return trainer, losses


def _worker(rank, world, port, out, kind):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from pyrogen import distributed

    assert distributed.init_from_env("cpu")
    try:
        if kind == "ae":
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
    mp.start_processes(_worker, args=(world, _free_port(), str(out), kind), nprocs=world,
                       start_method="spawn")


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
