"""The resume policy and the advice after an interrupt (issue 27, items 7 and 8)."""

import json
import os

from pyrogen import runs
from pyrogen.cli import main
from pyrogen.config import default_config
from pyrogen.files import RunDir
from tests.conftest import requires_fashion_mnist


def _config(epochs):
    config = default_config(latent_dim=4, hidden=(16,))
    config["data"].update(train_size=100, test_size=40)
    config["train"].update(epochs=epochs, batch_size=50)
    config["eval"]["num_samples"] = 0
    return config


def _stopped_run(out, epochs, done):
    """A run of ``epochs`` epochs stopped after ``done`` (as Ctrl-C in epoch ``done + 1`` leaves it)."""
    config = _config(epochs)
    trainer = runs.start_run(out, config, lambda: runs.build_trainer(config, device="cpu", progress=False))
    trainer.fit(done)
    return out


def _epochs_in_config(out):
    return json.load(open(os.path.join(out, "config.json")))["train"]["epochs"]


@requires_fashion_mnist
def test_resume_continues_to_the_runs_own_epochs_and_records_more(tmp_path, capsys, one_thread):
    out = _stopped_run(str(tmp_path / "r"), epochs=3, done=1)
    capsys.readouterr()
    assert main(["train", "vae", "--out", out, "--resume", "--no-progress"]) == 0  # not --epochs' old default 10
    assert "resumed at epoch 1 of 3" in capsys.readouterr().out.splitlines()
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2, 3] and _epochs_in_config(out) == 3
    assert main(["train", "vae", "--out", out, "--resume", "--epochs", "4", "--no-progress"]) == 0
    assert "resumed at epoch 3 of 4" in capsys.readouterr().out.splitlines()
    assert len(RunDir(out).read_metrics()) == 4 and _epochs_in_config(out) == 4  # recorded in the run
    runs.open_run(out, device="cpu").model()  # the checkpoint still belongs to config.json
    assert main(["train", "vae", "--out", out, "--resume", "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"pyrogen: error: the run in {out!r} has done all its 4 epochs; give "
        "--epochs N with N > 4 to train it further\n"
    )


@requires_fashion_mnist
def test_an_interrupt_during_the_final_evaluation_advises_evaluate(tmp_path, capsys, monkeypatch, one_thread):
    out = str(tmp_path / "r")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "evaluate_trainer", interrupted)
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                out,
                "--epochs",
                "1",
                "--train-size",
                "100",
                "--test-size",
                "40",
                "--latent-dim",
                "4",
                "--hidden",
                "16",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 130
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"pyrogen: interrupted after training finished; the trained run in {out!r} is complete: "
        f"evaluate it with 'pyrogen evaluate {out}'"
    )
    assert RunDir(out).load_checkpoint()["epoch"] == 1
