"""The command line's engines: --precision and --logger tensorboard for every kind of training run."""

import csv
import math
import sys

import numpy as np
import pytest
import torch

from pyrogen.cli import main
from tests.conftest import requires_fashion_mnist

TINY = [
    "--train-size",
    "300",
    "--test-size",
    "50",
    "--latent-dim",
    "4",
    "--hidden",
    "32",
    "--no-progress",
    "--eval-samples",
    "0",
]


def _metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) if k != "flags" else v for k, v in row.items()} for row in csv.DictReader(f)]


@requires_fashion_mnist
def test_logger_tensorboard_writes_metrics_csvs_values_and_image_grids(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "2", "--logger", "tensorboard"] + TINY) == 0
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = _metrics(out)
    for name in ("train_elbo", "test_elbo", "kl", "mi", "active_units"):
        assert {e.step: e.value for e in events.Scalars(name)} == {
            int(r["epoch"]): float(np.float32(r[name])) for r in rows
        }, name
    assert {"samples", "reconstructions"} <= set(events.Tags()["images"])
    # resumed with the logger: the third epoch joins the same directory
    assert (
        main(
            ["train", "vae", "--out", str(out), "--resume", "--epochs", "3", "--logger", "tensorboard", "--no-progress"]
        )
        == 0
    )
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("test_elbo")] == [1, 2, 3]


@requires_fashion_mnist
def test_a_tracked_run_is_the_untracked_run(tmp_path, one_thread):
    """The trackers' pictures are drawn under a forked random state: the figures do not change."""
    for name, extra in (("plain", []), ("tracked", ["--logger", "tensorboard"])):
        assert main(["train", "vae", "--out", str(tmp_path / name), "--epochs", "2"] + TINY + extra) == 0
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in _metrics(tmp_path / "plain")]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in _metrics(tmp_path / "tracked")]


def test_logger_tensorboard_without_tensorboard_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert (
        main(["train", "vae", "--out", str(tmp_path / "run"), "--epochs", "1", "--logger", "tensorboard"] + TINY) == 2
    )
    assert capsys.readouterr().err.strip() == (
        "pyrogen: error: --logger tensorboard needs the tensorboard package, "
        "which is not installed: pip install 'pyrogen[tensorboard]'"
    )
    assert not (tmp_path / "run" / "config.json").exists()


@requires_fashion_mnist
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_is_recorded_and_resumes_exactly(tmp_path, precision, one_thread):
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    args = TINY + ["--precision", precision, "--compile", "off"]
    assert main(["train", "vae", "--out", str(straight), "--epochs", "2"] + args) == 0
    assert main(["train", "vae", "--out", str(parted), "--epochs", "1"] + args) == 0
    assert main(["train", "vae", "--out", str(parted), "--resume", "--epochs", "2", "--no-progress"]) == 0
    import json

    assert json.loads((parted / "config.json").read_text())["train"]["precision"] == precision
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(parted / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert (a.get("precision") or {}).get("precision") == precision
    rows = _metrics(straight)
    assert all(math.isfinite(r["test_elbo"]) for r in rows)


@requires_fashion_mnist
def test_precision_32_is_the_default_run_bit_for_bit(tmp_path, one_thread):
    assert main(["train", "vae", "--out", str(tmp_path / "a"), "--epochs", "1"] + TINY) == 0
    assert main(["train", "vae", "--out", str(tmp_path / "b"), "--epochs", "1", "--precision", "32"] + TINY) == 0
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mixed_precision_and_a_recorded_step_are_refused_together(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "1",
                "--precision",
                "bf16",
                "--compile",
                "record",
            ]
            + TINY
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        "pyrogen: error: --compile record records the float32 step, and "
        "--precision bf16 runs the step eagerly; drop one of them"
    )


@requires_fashion_mnist
def test_gan_takes_bf16_and_refuses_fp16(tmp_path, capsys, one_thread):
    gan = ["--train-size", "128", "--test-size", "64", "--epochs", "1", "--no-progress"]
    assert main(["train", "gan", "--out", str(tmp_path / "bf16"), "--precision", "bf16"] + gan) == 0
    assert main(["train", "gan", "--out", str(tmp_path / "fp16"), "--precision", "fp16"] + gan) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "pyrogen: error: precision 'fp16' needs a gradient scaler in the training step, which "
        "GANTrainer does not have; use 'bf16' (float32's range, no scaler needed)"
    )
