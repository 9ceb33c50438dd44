"""Opening runs (pyrogen.runs.open_run) and the shared fit loop (pyrogen.training.FitLoop)."""

import json

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.data import DeviceLoader
from pyrogen.errors import CheckpointError, RunDirError, TrainingDivergedError
from pyrogen.models import VAE
from pyrogen.runs import RunDir, open_run
from pyrogen.training import FitLoop, VAETrainer, default_config, resume_trainer


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.7).float()


@pytest.fixture
def vae_run(tmp_path, one_thread):
    config = default_config(latent_dim=3, hidden=(16,))
    config["data"]["binarize"] = "static"
    # the data a resumed run reloads from its configuration (the first Fashion-MNIST images), as many as trained on
    config["data"].update(train_size=60, test_size=20)
    config["train"].update(epochs=1, batch_size=20)
    pyro.set_rng_seed(0)
    trainer = VAETrainer(
        VAE(**config["model"]),
        _images(60, 1),
        _images(20, 2),
        config,
        run=RunDir.create(tmp_path / "run", config),
        progress=False,
    )
    trainer.fit()
    return trainer


def test_open_run_rebuilds_the_trained_model(vae_run):
    run = open_run(vae_run.run.path, device="cpu")
    assert run.kind == "vae" and run.config == json.loads(json.dumps(vae_run.config))
    assert run.checkpoint["epoch"] == 1
    model = run.model()
    assert not model.training
    for (name, a), b in zip(vae_run.vae.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_another_configuration_is_refused_naming_both_files(vae_run):
    run = RunDir.open(vae_run.run.path)
    config = run.config
    config["model"]["latent_dim"] = 4
    run.write_json("config.json", config)
    with pytest.raises(CheckpointError) as e:
        open_run(run.path, device="cpu").model()
    assert run.checkpoint_path in str(e.value) and run.file("config.json") in str(e.value)


def test_a_resumed_run_with_more_epochs_still_opens(vae_run):
    trainer = resume_trainer(vae_run.run.path, device="cpu", progress=False)
    trainer.fit(2)  # what `--resume --epochs 2` does: the new total given to fit, the trainer's settings unchanged
    run = open_run(vae_run.run.path, device="cpu")
    assert run.checkpoint["epoch"] == 2 and run.config["train"]["epochs"] == 1
    run.model()


def test_open_run_refuses_a_directory_without_a_run(tmp_path):
    with pytest.raises(RunDirError, match="holds no pyrogen run"):
        open_run(tmp_path)


def _svi_loop(tmp_path, name, epochs=2):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(latent_dim=2, hidden=(8,))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    config = {"train": {"epochs": epochs, "log_every": 2}}
    run = RunDir.create(tmp_path / name, config)
    loader = DeviceLoader(_images(40, 3), 10, binarize="none", seed=1)
    return FitLoop(loader, config, run=run, progress=False, estimator=svi), vae


def test_fit_loop_trains_a_users_svi_and_writes_the_run(tmp_path, one_thread):
    loop, vae = _svi_loop(tmp_path, "svi")
    metrics = loop.fit()
    assert [r["epoch"] for r in metrics] == [1, 2] and [r["step"] for r in metrics] == [4, 8]
    assert metrics[1]["loss"] < metrics[0]["loss"]  # nats per example of Trace_ELBO's loss
    assert RunDir.open(loop.run.path).read_metrics()[1]["step"] == 8
    assert RunDir.open(loop.run.path).load_checkpoint()["epoch"] == 2


def test_fit_loop_stops_on_a_nan_loss_keeping_the_checkpoint(tmp_path, one_thread):
    loop, _ = _svi_loop(tmp_path, "nan", epochs=3)
    loop.fit(1)
    loop.train_step = lambda batch: float("nan")
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 6: loss is nan.*epoch 1\) is kept"):
        loop.fit()


def test_open_run_opens_the_feature_network_cache_checked_by_hash(tmp_path):
    from pyrogen.models.features import FashionMNISTClassifier, FeatureNetworkError, default_paths, save_network

    torch.manual_seed(0)
    network = FashionMNISTClassifier()
    save_network(network, *default_paths(tmp_path), info={"test_accuracy": 0.5})
    run = open_run(tmp_path, device="cpu")
    assert run.kind == "features" and run.config["test_accuracy"] == 0.5
    for (name, a), b in zip(network.state_dict().items(), run.model().state_dict().values()):
        assert torch.equal(a, b), name
    with open(default_paths(tmp_path)[0], "ab") as f:
        f.write(b"tampered")
    with pytest.raises(FeatureNetworkError, match="do not match their manifest"):
        open_run(tmp_path, device="cpu")
