import copy
import os
import pickle

import pyro
import pytest
import torch

from pyrogen.data import static_binarize
from pyrogen.errors import CheckpointError, DataError, RunDirError, TrainingDivergedError
from pyrogen.models import VAE
from pyrogen.runs import RunDir, load_checkpoint, save_checkpoint
from pyrogen.training import VAETrainer, default_config, resume_trainer
from tests.conftest import requires_fashion_mnist


def small_config(**train):
    config = default_config(latent_dim=8, hidden=(64,))
    config["data"].update(train_size=2000, test_size=500)
    config["train"].update(epochs=2, batch_size=100, **train)
    config["eval"]["num_samples"] = 0
    return config


def make_trainer(config, data, run=None):
    train, test = data
    pyro.set_rng_seed(config["train"]["seed"])
    vae = VAE(**config["model"])
    return VAETrainer(vae, train.images, static_binarize(test.images, 12345), config, run=run, progress=False)


@requires_fashion_mnist
def test_short_training_raises_test_elbo(fashion_mnist_small):
    trainer = make_trainer(small_config(), fashion_mnist_small)
    before = trainer.evaluate()["elbo"]
    trainer.fit(2)
    after = trainer.metrics[-1]["test_elbo"]
    # An untrained decoder scores about 784 log 2 = 543 nats; two epochs gain well over 100.
    assert before < -500 and after > before + 100, (before, after)


@requires_fashion_mnist
def test_resumed_run_ends_bit_for_bit_like_uninterrupted(fashion_mnist_small, tmp_path):
    config = small_config()
    straight = make_trainer(config, fashion_mnist_small, RunDir.create(tmp_path / "a", config))
    straight.fit(2)

    first = make_trainer(config, fashion_mnist_small, RunDir.create(tmp_path / "b", config))
    first.fit(1)
    del first
    pyro.set_rng_seed(999)  # resuming must not depend on the ambient random state
    state = RunDir.open(tmp_path / "b").load_checkpoint()
    resumed = make_trainer(state["config"], fashion_mnist_small, RunDir.open(tmp_path / "b"))
    resumed.load_state_dict(state)
    resumed.fit(2)

    for (name, a), b in zip(straight.vae.state_dict().items(), resumed.vae.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.metrics == [dict(r, seconds=s["seconds"]) for r, s in zip(resumed.metrics, straight.metrics)]


@requires_fashion_mnist
def test_aggressive_run_resumes_bit_for_bit(fashion_mnist_small, tmp_path):
    # Aggressive mode adds state of its own: the generator's optimizer, the inner loop's
    # random minibatches and the MI switch. Patience 1 lets the switch act within the run.
    config = small_config(aggressive=True, aggressive_patience=1)
    config["train"]["epochs"] = 3
    config["data"].update(train_size=300, test_size=200)
    train, test = fashion_mnist_small
    data = (train.subset(300), test.subset(200))
    straight = make_trainer(config, data, RunDir.create(tmp_path / "a", config))
    straight.fit(3)

    first = make_trainer(config, data, RunDir.create(tmp_path / "b", config))
    first.fit(1)
    del first
    for stop in (2, 3):  # resume twice: after epoch 1 and after epoch 2
        pyro.set_rng_seed(999)
        state = RunDir.open(tmp_path / "b").load_checkpoint()
        resumed = make_trainer(state["config"], data, RunDir.open(tmp_path / "b"))
        resumed.load_state_dict(state)
        resumed.fit(stop)

    assert straight.svi.inner_steps > 0  # the inner loop really ran
    for (name, a), b in zip(straight.vae.state_dict().items(), resumed.vae.state_dict().values()):
        assert torch.equal(a, b), name
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.metrics]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.metrics]
    assert [r["aggressive"] for r in straight.metrics] == [r["aggressive"] for r in resumed.metrics]


@requires_fashion_mnist
def test_nan_loss_stops_and_keeps_last_good_checkpoint(fashion_mnist_small, tmp_path):
    config = small_config()
    run = RunDir.create(tmp_path / "run", config)
    trainer = make_trainer(config, fashion_mnist_small, run)
    trainer.fit(1)
    good = copy.deepcopy(trainer.vae.state_dict())
    before = open(run.checkpoint_path, "rb").read()
    with torch.no_grad():
        next(trainer.vae.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(
        TrainingDivergedError,
        match=r"training loss became NaN or infinite at epoch 2, step 40; "
        r"stopping\. The last good checkpoint \(epoch 1\) is kept in",
    ):
        trainer.fit(2)
    assert open(run.checkpoint_path, "rb").read() == before
    kept = run.load_checkpoint()["model"]
    assert all(torch.equal(good[k], kept[k]) for k in good)
    assert len(run.read_metrics()) == 1


def test_run_directory_that_holds_a_run_is_refused_and_untouched(tmp_path):
    run = RunDir.create(tmp_path, {"kind": "vae"})
    before = open(run.file("config.json")).read()
    with pytest.raises(RunDirError, match="already holds a run; pass --resume to continue it"):
        RunDir.create(tmp_path, {"kind": "other"})
    assert open(run.file("config.json")).read() == before


def test_open_refuses_a_directory_without_a_run(tmp_path):
    with pytest.raises(RunDirError, match="holds no pyrogen run"):
        RunDir.open(tmp_path)


def test_checkpoint_round_trip_and_bad_checkpoints(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.arange(3.0), "epoch": 4})
    state = load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(3.0)) and state["epoch"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # permissions as for any new file

    raw = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="is truncated or corrupt and cannot be read"):
        load_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="is truncated or corrupt and cannot be read"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"w": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is not a pyrogen checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with open(tmp_path / "pickle.pt", "wb") as f:
        torch.save({"format": "pyrogen-checkpoint/1", "obj": pickle.Unpickler}, f)
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain containers; refusing"):
        load_checkpoint(tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_crash_during_write_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "bad": Boom()})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.mark.parametrize("shape", [(4, 783), (4, 2, 28, 28), (784,)])
def test_wrong_shapes_are_named(shape):
    vae = VAE(latent_dim=2, hidden=(8,))
    with pytest.raises(DataError, match=r"x must have shape \(B, 1, 28, 28\) or \(B, 784\), got"):
        vae.model(torch.zeros(shape))


def test_non_binary_data_under_bernoulli_is_refused():
    vae = VAE(latent_dim=2, hidden=(8,))
    with pytest.raises(DataError, match="x is not binary, but the Bernoulli likelihood scores only 0/1 pixels"):
        vae.model(torch.full((2, 784), 0.5))
    with pytest.raises(DataError, match=r"must lie in \[0, 1\] under a Bernoulli likelihood"):
        vae.model(torch.full((2, 784), 2.0))
    relaxed = VAE(latent_dim=2, hidden=(8,), likelihood="bernoulli-relaxed")
    relaxed.model(torch.full((2, 784), 0.5))  # declared relaxation: accepted


def test_trainer_refuses_grey_levels_under_bernoulli_without_binarization():
    config = small_config()
    config["data"]["binarize"] = "none"
    x = torch.rand(200, 1, 28, 28)
    with pytest.raises(DataError, match="training data is not binary"):
        VAETrainer(VAE(**config["model"]), x, x.round(), config, progress=False)


@pytest.mark.cuda
def test_training_on_cuda_with_the_same_code():
    config = small_config()
    vae = VAE(**config["model"]).to("cuda")
    x = torch.rand(200, 1, 28, 28, device="cuda")
    trainer = VAETrainer(vae, x, x.round(), config, progress=False)
    trainer.fit(1)
    assert trainer.metrics[0]["test_elbo"] < 0


def test_resume_trainer_needs_a_checkpoint(tmp_path):
    RunDir.create(tmp_path, small_config())
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        resume_trainer(tmp_path)


def test_the_epoch_line_names_metrics_in_one_case_and_counts_as_integers():
    from pyrogen.training.vae import epoch_line

    line = epoch_line(3, -293.156, {"elbo": -270.671}, {"kl": 25.1, "mi": 3.214, "active_units": 50}, 2.71)
    assert line == "epoch 3: train ELBO -293.16, test ELBO -270.67, KL 25.10, MI 3.21, active units 50 (2.7 s)"
