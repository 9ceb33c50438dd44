"""Faults, round two (issue 27), through the command line: a lock on the run, no reading through links,
malformed files as one line, and what the user is told.

Every refused case is one line on stderr, ``pyrogen: error: ...``, exit status 2, and leaves the run
byte for byte as it was. The file-layer mechanisms are tested in ``tests/test_files.py``.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch

from pyrogen import files
from pyrogen.cli import main
from pyrogen.files import RunDir
from tests.conftest import requires_fashion_mnist
from tests.integration.cli_faults import ROOT, TINY, one_error_line, snapshot, train_gan_run


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A finished two-epoch VAE run with one evaluation file (the tests copy it to change it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("faults2") / "vae")
    assert main(["train", "vae", "--out", out, "--epochs", "2"] + TINY) == 0
    assert main(["evaluate", out, "--eval-samples", "2", "--no-progress", "--device", "cpu"]) == 0
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    return train_gan_run(tmp_path_factory, "faults2")


@pytest.fixture
def feature_cache(tmp_path, monkeypatch):
    """A valid (untrained) cached feature network, so sample-quality gets as far as the run's files."""
    from pyrogen.evaluation.features import FEATURE_RECIPE
    from pyrogen.models import features as F

    monkeypatch.setenv("PYROGEN_CACHE", str(tmp_path / "cache"))
    F.save_network(F.FashionMNISTClassifier(), *F.default_paths(), info={"recipe": FEATURE_RECIPE})


def read(path):
    with open(path) as f:
        return f.read()


def copy_run(run, tmp_path, name="run"):
    return str(shutil.copytree(run, tmp_path / name))


def evaluation_name(run):
    return min(os.listdir(os.path.join(run, "evaluations")))


COMMANDS = {
    "report": lambda out: ["report", out],
    "plot": lambda out: ["plot", out, "--num-points", "20", "--device", "cpu"],
    "evaluate": lambda out: ["evaluate", out, "--eval-samples", "2", "--no-progress", "--device", "cpu"],
    "sample": lambda out: ["sample", out, "-n", "2", "--device", "cpu"],
    "sample-quality": lambda out: ["sample-quality", out, "-n", "20", "--device", "cpu"],
    "resume": lambda out: ["train", "vae", "--out", out, "--resume", "--epochs", "3", "--no-progress"],
}


# ---------------------------------------------------------------- item 2: no reading through links
LINKS = [
    ("report", "metrics.csv"),
    ("report", "config.json"),
    ("report", "EVALUATION"),
    ("plot", "metrics.csv"),
    ("plot", "config.json"),
    ("plot", "checkpoint.pt"),
    ("evaluate", "config.json"),
    ("evaluate", "checkpoint.pt"),
    ("sample", "checkpoint.pt"),
    ("resume", "checkpoint.pt"),
    ("resume", "config.json"),
]


@requires_fashion_mnist
@pytest.mark.parametrize("command, name", LINKS, ids=[f"{c}-{n}" for c, n in LINKS])
@pytest.mark.parametrize("target", ["copy", "system"])
def test_no_command_reads_a_run_file_through_a_link_that_leaves_the_run(
    vae_run, tmp_path, command, name, target, capsys, one_thread
):
    """``ln -s /etc/os-release R/metrics.csv; pyrogen report R``: one line, and nothing of the file shown."""
    out = copy_run(vae_run, tmp_path)
    name = name.replace("EVALUATION", "evaluations/" + evaluation_name(out))
    if target == "copy":  # the run's own valid file, moved out: only the link is wrong
        secret = str(tmp_path / "outside")
        shutil.move(os.path.join(out, name), secret)
    else:
        secret = "/etc/passwd"
        os.unlink(os.path.join(out, name))
    os.symlink(secret, os.path.join(out, name))
    before = snapshot(out)
    assert main(COMMANDS[command](out)) == 2
    line = one_error_line(capsys)
    assert f"{os.path.join(out, name)!r} is a link to {os.path.realpath(secret)!r}, outside the run directory" in line
    assert snapshot(out) == before and not os.path.exists(os.path.join(out, "report.html"))


# ---------------------------------------------------------------- item 3: no output over a run's results
@requires_fashion_mnist
@pytest.mark.parametrize("target", ["EVALUATION", "evaluations/new.json", "metrics.csv"])
def test_report_out_is_never_one_of_the_runs_result_files(vae_run, tmp_path, target, capsys):
    out = copy_run(vae_run, tmp_path)
    path = os.path.join(out, target.replace("EVALUATION", "evaluations/" + evaluation_name(out)))
    before = snapshot(out)
    assert main(["report", out, "--out", path]) == 2
    assert one_error_line(capsys) == (
        f"pyrogen: error: --out {path!r} is one of its run's own files; expected "
        "another file name (nothing was written)"
    )
    assert snapshot(out) == before
    assert main(["report", out]) == 0  # and every later report still works


# ---------------------------------------------------------------- tracebacks where one line is promised
def _checkpoint(**change):
    def edit(out):
        path = os.path.join(out, "checkpoint.pt")
        state = torch.load(path, weights_only=True)
        state.update(change)
        files.save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})

    return edit


def _write(name, data):
    def edit(out):
        path = os.path.join(out, name.replace("EVALUATION", "evaluations/" + evaluation_name(out)))
        with open(path, "wb") as f:
            f.write(data)

    return edit


def _evaluation(**change):
    def edit(out):
        path = os.path.join(out, "evaluations", evaluation_name(out))
        with open(path) as f:
            result = json.load(f)
        result.update(change)
        with open(path, "w") as f:
            json.dump(result, f)

    return edit


def _both_configs(section, key, value):
    """The configuration edited alike in config.json and in the checkpoint (so that the two still agree)."""

    def edit(out):
        path = os.path.join(out, "checkpoint.pt")
        state = torch.load(path, weights_only=True)
        state["config"][section][key] = value
        files.save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
        RunDir(out).write_json("config.json", state["config"])

    return edit


RANDOM = bytes(range(256)) * 16
MALFORMED = [
    (
        "checkpoint-config-null",
        _checkpoint(config=None),
        ["sample", "plot", "sample-quality", "evaluate", "resume"],
        "checkpoint.pt' holds config = None; expected a run configuration",
    ),
    (
        "checkpoint-epoch-string",
        _checkpoint(epoch="2"),
        ["resume", "sample", "sample-quality"],
        "checkpoint.pt' holds epoch = '2'; expected a whole number",
    ),
    (
        "metrics-epoch-string",
        _write("metrics.csv", b"epoch,loss\nsecond,1.5\n"),
        ["report", "plot"],
        "metrics.csv' row 1 has epoch 'second'; expected a whole number",
    ),
    (
        "metrics-random-bytes",
        _write("metrics.csv", RANDOM),
        ["report", "plot"],
        "metrics.csv' is not UTF-8 text (byte 128)",
    ),
    (
        "config-nested",
        _write("config.json", b"[" * 200_000),
        ["sample", "report", "resume", "plot", "evaluate"],
        "config.json' is nested too deeply to read",
    ),
    ("evaluation-nested", _write("EVALUATION", b"[" * 200_000), ["report"], "is nested too deeply to read"),
    ("evaluation-epoch-string", _evaluation(epoch="2"), ["report"], 'holds epoch = "2"; expected a whole number'),
    ("evaluation-figure-string", _evaluation(elbo="high"), ["report"], 'holds elbo = "high"; expected a number'),
    (
        "likelihood-unknown",
        _both_configs("model", "likelihood", "x"),
        ["sample", "plot", "sample-quality"],
        "checkpoint.pt' cannot build the run's model (unknown likelihood 'x'",
    ),
    (
        "likelihood-list",
        _both_configs("model", "likelihood", [1]),
        ["sample", "plot"],
        "checkpoint.pt' cannot build the run's model",
    ),
    (
        "data-root-number",
        _both_configs("data", "root", 7),
        ["plot", "evaluate", "sample"],
        "config.json': data.root must be a folder path or null, got 7",
    ),
    (
        "config-train-null",
        _write("config.json", b'{"kind": "vae", "train": null}'),
        ["sample", "report", "resume"],
        "config.json' holds 'train': null; expected a JSON object",
    ),
]
CASES = [(name, edit, command, message) for name, edit, commands, message in MALFORMED for command in commands]


@requires_fashion_mnist
@pytest.mark.parametrize("name, edit, command, message", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_a_malformed_run_file_is_one_line(
    vae_run, tmp_path, name, edit, command, message, feature_cache, capsys, one_thread
):
    out = copy_run(vae_run, tmp_path)
    edit(out)
    before = snapshot(out)
    assert main(COMMANDS[command](out)) == 2
    line = one_error_line(capsys)
    assert message in line and len(line) < 800, line
    assert snapshot(out) == before


# ---------------------------------------------------------------- item 1: one writer per run directory
def _train(out, *extra, slow=0.0, hold=None):
    """``pyrogen train vae --out OUT`` in its own process; each step sleeps ``slow`` seconds.

    ``hold=(path, steps)``: after its first ``steps`` steps, while the file ``path`` exists, the process
    writes ``path + ".held"`` and waits (polling every 10 ms) before its next step returns.
    """
    code = (
        "import os, sys, time, torch\n"
        "torch.set_num_threads(1)\n"
        "from pyrogen.training.vae import VAETrainer\n"
        "step = VAETrainer.train_step\n"
        "calls = [0]\n"
        "def slow(self, *a, **k):\n"
        "    result = step(self, *a, **k)\n"
        f"    time.sleep({slow})\n"
        "    calls[0] += 1\n"
    )
    if hold is not None:
        path, steps = hold
        code += (
            f"    if calls[0] > {steps} and os.path.exists({path!r}):\n"
            f"        open({path!r} + '.held', 'w').close()\n"
            f"        while os.path.exists({path!r}):\n"
            "            time.sleep(0.01)\n"
        )
    code += "    return result\nVAETrainer.train_step = slow\nfrom pyrogen.cli import main\n"
    code += "sys.exit(main(sys.argv[1:]))\n"
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", "vae", "--out", out, "--batch-size", "20"] + TINY + list(extra),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@requires_fashion_mnist
def test_two_trainings_started_together_in_one_directory_one_is_refused(tmp_path):
    out = str(tmp_path / "D")
    first, second = _train(out, "--epochs", "2", slow=0.05), _train(out, "--epochs", "2", slow=0.05)
    results = [p.communicate(timeout=300) + (p.returncode,) for p in (first, second)]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    _, err, _ = next(r for r in results if r[2] == 2)
    lines = err.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("pyrogen: error: output directory ")
        and ("is in use: another pyrogen process is writing there" in lines[0] or "already holds a run" in lines[0])
    ), err
    # D holds the one run that finished: its two epochs, its configuration, no evaluation of another
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2]
    assert RunDir(out).load_checkpoint()["epoch"] == 2


@requires_fashion_mnist
@pytest.mark.parametrize("second", ["new", "resume"])
def test_a_second_writer_while_the_first_trains_is_refused_before_it_writes(tmp_path, second):
    out = str(tmp_path / "D")
    # a new run has no config.json until its first epoch ends: the first is held after its first step; a
    # resumed one needs the first's checkpoint: held after its first epoch (10 steps of 20 of 200 examples)
    epochs = 1 if second == "new" else 3
    gate = str(tmp_path / "gate")
    open(gate, "w").close()
    first = _train(out, "--epochs", str(epochs), hold=(gate, 1 if second == "new" else 10))
    try:
        end = time.monotonic() + 120
        while not os.path.exists(gate + ".held"):
            assert first.poll() is None and time.monotonic() < end, first.stderr.read()
            time.sleep(0.02)
        assert os.path.exists(os.path.join(out, "checkpoint.pt")) == (second == "resume")
        args = ["--epochs", "5", "--resume"] if second == "resume" else ["--epochs", "2", "--latent-dim", "3"]
        other = _train(out, *args)
        _, err = other.communicate(timeout=120)
        assert other.returncode == 2, err
        assert err == (
            f"pyrogen: error: output directory {out!r} is in use: another pyrogen process is writing "
            "there; wait until it ends, or choose another directory (nothing was written)\n"
        )
        assert first.poll() is None, "the first training ended before the second was refused"
    finally:
        os.remove(gate)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == list(range(1, epochs + 1))  # the first run's only
    config = RunDir(out).config
    assert config["train"]["epochs"] == epochs and config["model"]["latent_dim"] == 4
    assert os.listdir(os.path.join(out, "evaluations")) == [f"log-px-K0-seed0-epoch{epochs}-test40.json"]


# ---------------------------------------------------------------- item 4: a user's files are not temporaries
@requires_fashion_mnist
@pytest.mark.parametrize("how", ["start", "resume"])
def test_start_and_resume_delete_only_pyrogens_own_temporaries(vae_run, tmp_path, how, capsys, one_thread):
    out = copy_run(vae_run, tmp_path) if how == "resume" else str(tmp_path / "new")
    os.makedirs(out, exist_ok=True)
    mine = [".my.notes.tmp", ".a.b.tmp", ".checkpoint.pt.abc123.tmp"]
    for name in mine + [".checkpoint.pt.pyrogen-abc12345.tmp"]:
        with open(os.path.join(out, name), "w") as f:
            f.write("keep" if name in mine else "stale")
    args = (
        ["--out", out, "--resume", "--epochs", "3", "--no-progress"]
        if how == "resume"
        else (["--out", out, "--epochs", "1"] + TINY)
    )
    assert main(["train", "vae"] + args) == 0
    left = sorted(n for n in os.listdir(out) if n.endswith(".tmp"))
    assert left == sorted(mine)


# ---------------------------------------------------------------- item 6: a full disk in a checkpoint write
@requires_fashion_mnist
def test_a_full_disk_inside_torch_save_is_one_line_naming_the_checkpoint(
    vae_run, tmp_path, capsys, monkeypatch, one_thread
):
    """torch.save turns the OSError of its file's write into a RuntimeError; the line still names the file."""
    out = copy_run(vae_run, tmp_path)
    good = RunDir(out).load_checkpoint()
    real = files._Recorder.write

    def full_disk(self, data):
        if getattr(self, "zip", False) or bytes(data[:2]) == b"PK":  # torch.save's archive: the checkpoint
            self.zip = True
            self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise self.error
        return real(self, data)

    monkeypatch.setattr(files._Recorder, "write", full_disk)
    assert main(COMMANDS["resume"](out)) == 2
    assert one_error_line(capsys) == (
        f"pyrogen: error: cannot read or write {os.path.join(out, 'checkpoint.pt')!r}: No space left on device"
    )
    kept = RunDir(out).load_checkpoint()
    assert kept["epoch"] == 2 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


# ---------------------------------------------------------------- what the user is told
@requires_fashion_mnist
def test_the_gan_report_advises_only_commands_that_take_a_gan(gan_run, tmp_path, capsys):
    out = copy_run(gan_run, tmp_path)
    assert main(["report", out]) == 0
    page = read(os.path.join(out, "report.html"))
    assert "pyrogen evaluate" not in page and "pyrogen plot" not in page
    assert f"run <code>pyrogen sample-quality {out}</code>" in page
    assert main(["plot", out]) == 0
    assert main(["report", out]) == 0
    assert "pyrogen plot" not in read(os.path.join(out, "report-2.html"))


@requires_fashion_mnist
def test_the_report_shows_results_first_and_only_changed_settings_and_counts_epochs(tmp_path, capsys, one_thread):
    out = str(tmp_path / "one")
    assert main(["train", "vae", "--out", out, "--epochs", "1"] + TINY) == 0
    assert main(["report", out]) == 0
    page = read(os.path.join(out, "report.html"))
    assert "1 epoch recorded" in page and "1 epochs" not in page
    heads = [page.index(f"<h2 id='{s}'>") for s in ("evaluation", "training-curves", "pictures", "metrics", "settings")]
    assert heads == sorted(heads)
    settings = page[heads[-1] :]
    changed = settings[: settings.index("<details>")]
    rows = re.findall(
        r"<tr><td class='key'>([^<]*)</td><td class='key'>([^<]*)</td><td class='key'>([^<]*)</td>", changed
    )
    assert {k.split(" ")[0] for k, _, _ in rows} == {
        "train.epochs",
        "data.train_size",
        "data.test_size",
        "model.latent_dim",
        "model.hidden",
        "eval.num_samples",
    }
    assert ("train.epochs", "1", "10") in rows
    assert "<summary>All " in settings and "train.lr" in settings[settings.index("<details>") :]


@requires_fashion_mnist
def test_plot_and_report_never_replace_earlier_outputs(vae_run, tmp_path, capsys, one_thread):
    out = copy_run(vae_run, tmp_path)
    assert main(COMMANDS["plot"](out)) == 0
    first = snapshot(os.path.join(out, "plots"))
    assert main(COMMANDS["plot"](out)) == 0
    assert snapshot(os.path.join(out, "plots")) == first and sorted(first) == sorted(
        os.listdir(os.path.join(out, "plots-2"))
    )
    assert main(["report", out]) == 0
    report = read(os.path.join(out, "report.html"))
    assert main(["report", out]) == 0
    assert read(os.path.join(out, "report.html")) == report
    assert capsys.readouterr().out.strip().endswith(f"wrote {os.path.join(out, 'report-2.html')}")
    assert main(["report", out, "--out", os.path.join(out, "report.html")]) == 2
    assert one_error_line(capsys) == (
        f"pyrogen: error: --out {os.path.join(out, 'report.html')!r} exists already; "
        "expected a new file name (an earlier report is never replaced)"
    )
    mine = tmp_path / "pictures"
    mine.mkdir()
    (mine / "manifold.png").write_bytes(b"mine")
    (mine / "training_curves.png").write_bytes(b"mine too")
    assert main(COMMANDS["plot"](out) + ["--out", str(mine)]) == 0
    assert (mine / "training_curves.png").read_bytes() == b"mine too" and (mine / "training_curves-2.png").exists()
