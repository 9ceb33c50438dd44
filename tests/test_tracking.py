"""TensorBoard tracking: the event files read back with TensorBoard's own reader hold metrics.csv's values."""

import math
import sys

import numpy as np
import pytest
import torch

from pyrogen.errors import DataError
from pyrogen.files import RunDir
from pyrogen.tracking import TensorBoardTracker
from pyrogen.training.gan import build_gan_trainer, default_gan_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _read(log_dir):
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _check_scalars_equal_metrics(events, rows, names):
    assert set(names) <= set(events.Tags()["scalars"])
    for name in names:
        written = {e.step: e.value for e in events.Scalars(name)}
        expected = {row["epoch"]: float(np.float32(row[name])) for row in rows if math.isfinite(row[name])}
        assert written == expected, name  # TensorBoard keeps float32: equal after that rounding, exactly


def test_gan_run_writes_metrics_csvs_scalars_and_the_sample_grid(tmp_path, one_thread):
    config = default_gan_config("mlp", latent_dim=8, hidden=(32,))
    config["train"].update(epochs=2, batch_size=25, log_every=2, num_fixed=16)
    g = torch.Generator().manual_seed(0)
    data = torch.rand(100, 1, 28, 28, generator=g), torch.rand(40, 1, 28, 28, generator=g)
    run = RunDir.create(tmp_path / "run", config)
    trainer = build_gan_trainer(config, run=run, device="cpu", progress=False, data=data)
    tracker = TensorBoardTracker(tmp_path / "run" / "tensorboard")
    trainer.trackers.append(tracker)
    trainer.fit()
    tracker.close()
    rows = run.read_metrics()
    assert len(rows) == 2
    events = _read(tmp_path / "run" / "tensorboard")
    names = ["loss_d", "loss_g", "d_real", "d_fake", "d_accuracy", "diversity", "seconds", "step"]
    _check_scalars_equal_metrics(events, rows, names)
    assert "flags" not in events.Tags()["scalars"]  # text columns are not scalars
    samples = events.Images("samples")
    assert [e.step for e in samples] == [1, 2]
    # an 8-column grid of the 16 fixed samples: 2 rows of 28 + 2-pixel padding
    assert (samples[-1].width, samples[-1].height) == (8 * 30 + 2, 2 * 30 + 2)


def test_vae_run_writes_elbo_kl_mi_and_active_units(tmp_path, fashion_mnist_small, one_thread):
    from pyrogen.config import default_config
    from pyrogen.training.vae import VAETrainer, build_model

    config = default_config()
    config["model"].update(latent_dim=4, hidden=[32])
    config["train"].update(epochs=2, log_every=5, compile="off")
    train, test = fashion_mnist_small
    run = RunDir.create(tmp_path / "run", config)
    torch.manual_seed(0)
    trainer = VAETrainer(
        build_model(config), train.images[:500], test.images[:200].round(), config, run=run, progress=False
    )
    tracker = TensorBoardTracker(tmp_path / "run" / "tensorboard")
    trainer.trackers.append(tracker)
    trainer.fit()
    tracker.close()
    _check_scalars_equal_metrics(
        _read(tmp_path / "run" / "tensorboard"),
        run.read_metrics(),
        ["train_elbo", "test_elbo", "kl", "mi", "active_units"],
    )


def test_without_tensorboard_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(
        DataError,
        match=r"^--logger tensorboard needs the tensorboard package, which is not "
        r"installed: pip install 'pyrogen\[tensorboard\]'$",
    ):
        TensorBoardTracker(tmp_path)


def test_nothing_is_written_before_the_first_epoch_ends(tmp_path):
    tracker = TensorBoardTracker(tmp_path / "tensorboard")
    tracker.close()
    assert not (tmp_path / "tensorboard").exists()
