"""Your own data from the command line: --data on train, the source recorded in the run and re-opened by every
command that reads data, refused in one line when missing or changed, and a streamed run killed and resumed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pyrogen.cli import main
from pyrogen.files import RunDir

SMALL = [
    "--latent-dim",
    "4",
    "--hidden",
    "16",
    "--no-progress",
    "--eval-samples",
    "0",
    "--device",
    "cpu",
    "--batch-size",
    "20",
]


def _rgb(path, n=120, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        images=rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
        labels=rng.integers(0, 3, n),
        class_names=np.array(["p", "q", "r"]),
    )
    return str(path)


def _last_line(capsys):
    captured = capsys.readouterr()
    return captured.err.strip().splitlines()[-1]


@pytest.fixture
def rgb_run(tmp_path, one_thread):
    data = _rgb(tmp_path / "rgb.npz")
    out = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                out,
                "--data",
                data,
                "--test-fraction",
                "0.25",
                "--epochs",
                "1",
                "--architecture",
                "conv",
                "--likelihood",
                "bernoulli-relaxed",
                "--binarize",
                "none",
            ]
            + SMALL
        )
        == 0
    )
    return out, data


def test_an_rgb_array_trains_evaluates_plots_and_reports_from_the_cli(rgb_run, capsys):
    out, data = rgb_run
    source = json.load(open(os.path.join(out, "config.json")))["data"]["source"]
    assert source["kind"] == "array" and source["path"] == data and source["shape"] == [3, 32, 32]
    assert source["class_names"] == ["p", "q", "r"] and source["split"] == {
        "seed": 0,
        "fraction": 0.25,
        "test_data": None,
    }
    capsys.readouterr()
    assert main(["evaluate", out, "--eval-samples", "5", "--device", "cpu"]) == 0
    assert "test ELBO" in capsys.readouterr().out
    assert main(["plot", out, "--device", "cpu"]) == 0
    assert main(["report", out]) == 0


def test_a_moved_or_changed_source_is_refused_by_every_command_and_found_with_data(rgb_run, tmp_path, capsys):
    out, data = rgb_run
    moved = str(tmp_path / "elsewhere.npz")
    os.replace(data, moved)
    commands = [
        ["evaluate", out, "--eval-samples", "5", "--device", "cpu"],
        ["plot", out, "--device", "cpu"],
        ["report", out],
        ["train", "vae", "--out", out, "--resume", "--epochs", "2", "--no-progress", "--device", "cpu"],
    ]
    for command in commands:
        capsys.readouterr()
        assert main(command) == 2, command
        assert _last_line(capsys) == (
            f"pyrogen: error: the run's data {data!r} are missing; pass --data NEW_PATH to "
            "point at a moved or copied original"
        ), command
    quality = ["sample-quality", out, "-n", "10", "--device", "cpu"]
    assert main(quality) == 2
    assert _last_line(capsys) == (
        f"pyrogen: error: the run's data {data!r} are missing; pass --data NEW_PATH to "
        "point at a moved or copied original"
    )
    assert main(quality + ["--data", moved]) == 2  # found, but these are no images for the feature network
    assert _last_line(capsys) == (
        "pyrogen: error: sample quality is measured in the features of pyrogen's Fashion-MNIST classifier, which "
        f"takes 1x28x28 images; the run in {out!r} trained on examples of shape (3, 32, 32)"
    )
    for command in commands:
        assert main(command + ["--data", moved]) == 0, command
    _rgb(moved, seed=1)  # the same shape and size, other content
    for command in commands[:3]:
        capsys.readouterr()
        assert main(command + ["--data", moved]) == 2, command
        assert _last_line(capsys).startswith(
            f"pyrogen: error: the run's data {moved!r} have changed since the run recorded them ("
        )


def _api_run(tmp_path, record):
    import pyro

    from pyrogen.data.sources import open_source
    from pyrogen.models import VAE
    from pyrogen.training import VAETrainer, default_config

    source = open_source(_rgb(tmp_path / "api.npz", n=60), test_fraction=0.25)
    train, test = source.splits()
    config = default_config(latent_dim=4, hidden=(16,), image_shape=[3, 32, 32], likelihood="bernoulli-relaxed")
    config["data"]["binarize"] = "none"
    if record:
        config["data"]["source"] = source.record()
    config["train"].update(epochs=1, batch_size=15, compile="off")
    config["eval"]["num_samples"] = 0
    pyro.set_rng_seed(0)
    out = str(tmp_path / "api-run")
    trainer = VAETrainer(
        VAE(**config["model"]), train.images, test.images, config, run=RunDir.create(out, config), progress=False
    )
    trainer.fit()
    return out, trainer


def test_a_run_built_in_python_with_its_source_is_evaluated_on_its_own_data(tmp_path, capsys, one_thread):
    from pyrogen.runs import evaluate_trainer

    out, trainer = _api_run(tmp_path, record=True)
    own = evaluate_trainer(trainer, 5, seed=0)  # the trained model on the source's test split, in this process
    capsys.readouterr()
    assert main(["evaluate", out, "--eval-samples", "5", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"test ELBO {own['elbo']:.2f} nats, log p(x) {own['log_px']:.2f} nats (K = 5)" in printed, printed


def test_a_run_built_in_python_without_a_source_is_refused(tmp_path, capsys, one_thread):
    out, _ = _api_run(tmp_path, record=False)
    for command in (
        ["evaluate", out, "--eval-samples", "5", "--device", "cpu"],
        ["plot", out, "--device", "cpu"],
        ["report", out],
    ):
        capsys.readouterr()
        assert main(command) == 2, command
        line = _last_line(capsys)
        assert line.startswith(f"pyrogen: error: the run in {out!r} records no data source (built in Python"), line


def test_fashion_mnist_runs_record_it_and_older_runs_mean_it():
    from pyrogen.data.sources import reopen

    assert reopen(None).kind == "fashion-mnist"


STREAM = SMALL + ["--stream", "--epochs", "3", "--test-fraction", "0.2"]


def _processes_with(marker):
    """The pids of this user's processes whose environment holds ``marker`` (Linux's /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:  # gone, or not ours
            pass
    return found


def _train_process(out, data, marker=""):
    code = (
        "import sys, time\n"
        "from pyrogen.training.vae import VAETrainer\n"
        "step = VAETrainer.train_step\n"
        "def slow(self, batch):\n"
        "    time.sleep(0.01)\n"
        "    return step(self, batch)\n"
        "VAETrainer.train_step = slow\n"
        "from pyrogen.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYROGEN_TEST_PROCESS": marker}
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", "vae", "--out", out, "--data", data, "--threads", "1"] + STREAM,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_streamed_run_killed_mid_epoch_resumes_bit_for_bit(tmp_path, one_thread):
    data = str(tmp_path / "x.npy")
    np.save(data, (np.random.default_rng(3).random((400, 1, 28, 28)) * 255).astype(np.uint8))
    straight = str(tmp_path / "straight")
    assert main(["train", "vae", "--out", straight, "--data", data, "--threads", "1"] + STREAM) == 0
    killed = str(tmp_path / "killed")
    marker = f"PYROGEN_TEST_PROCESS=streamed-{os.getpid()}-{time.monotonic_ns()}"
    process = _train_process(killed, data, marker.partition("=")[2])
    end = time.monotonic() + 300
    while not os.path.exists(os.path.join(killed, "checkpoint.pt")):  # the first epoch written: kill in the second
        assert process.poll() is None and time.monotonic() < end, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.1)
    assert len(_processes_with(marker)) >= 3  # the run, the forkserver and the reading workers
    process.send_signal(signal.SIGKILL)
    process.wait(60)
    # nothing of the killed run lives on: its reading workers end with it, and then their forkserver
    end = time.monotonic() + 20
    while _processes_with(marker) and time.monotonic() < end:
        time.sleep(0.1)
    assert _processes_with(marker) == []
    assert (
        main(["train", "vae", "--out", killed, "--resume", "--no-progress", "--device", "cpu", "--threads", "1"]) == 0
    )
    a, b = (torch.load(os.path.join(r, "checkpoint.pt"), weights_only=True) for r in (straight, killed))
    assert a["epoch"] == b["epoch"] == 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    shutil.rmtree(killed)


def test_an_unlabelled_grey_array_trains_and_plots_without_the_codes_by_class(tmp_path, capsys, one_thread):
    data = str(tmp_path / "grey.npy")
    np.save(data, (np.random.default_rng(4).random((100, 28, 28)) * 255).astype(np.uint8))
    out = str(tmp_path / "run")
    assert main(["train", "vae", "--out", out, "--data", data, "--epochs", "1"] + SMALL) == 0
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model"]["image_shape"] == [1, 28, 28] and config["data"]["source"]["labels"] is False
    assert main(["plot", out, "--device", "cpu", "--out", str(tmp_path / "plots")]) == 0
    written = sorted(os.listdir(tmp_path / "plots"))
    assert "reconstructions.png" in written and "latent_codes.png" not in written


def test_a_gan_trains_on_an_rgb_array(tmp_path, one_thread):
    data = _rgb(tmp_path / "rgb.npz", n=64)
    out = str(tmp_path / "gan")
    assert (
        main(
            [
                "train",
                "gan",
                "--out",
                out,
                "--data",
                data,
                "--epochs",
                "1",
                "--latent-dim",
                "8",
                "--channels",
                "8",
                "--batch-size",
                "16",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model"]["image_shape"] == [3, 32, 32] and config["data"]["source"]["kind"] == "array"


def test_data_options_without_data_and_streaming_a_file_that_cannot_stream(tmp_path, capsys):
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--image-size", "32"]) == 2
    assert _last_line(capsys) == "pyrogen: error: argument --image-size: applies to your own data; give --data PATH"
    data = _rgb(tmp_path / "rgb.npz")
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--data", data, "--stream"]) == 2
    assert _last_line(capsys) == (
        f"pyrogen: error: argument --stream: streaming reads a .npy array or a folder "
        f"of images, and {data!r} is read into memory"
    )
    assert not os.path.exists(tmp_path / "r" / "config.json")


def test_a_labelled_folder_streams_through_the_cli_and_is_evaluated(tmp_path, capsys, one_thread):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(120):
        os.makedirs(tmp_path / "imgs" / f"{i % 2}", exist_ok=True)
        image = Image.fromarray((rng.random((20, 24)) * 255).astype(np.uint8))
        image.save(tmp_path / "imgs" / f"{i % 2}" / f"{i:04d}.png")
    out = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                out,
                "--data",
                str(tmp_path / "imgs"),
                "--stream",
                "--num-workers",
                "1",
                "--epochs",
                "1",
            ]
            + SMALL
        )
        == 0
    )
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["data"]["stream"] is True and config["model"]["image_shape"] == [1, 20, 24]
    assert "mtimes_sha256" in config["data"]["source"]["fingerprint"]  # streamed: never read in full
    assert main(["evaluate", out, "--eval-samples", "5", "--device", "cpu"]) == 0
