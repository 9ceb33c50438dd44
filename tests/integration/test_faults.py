"""Faults and bad input (issue #15): no dead run directories, no lost results, one line for every input error.

Every bad input is one line on stderr, ``pyrogen: error: ...``, naming the input and what was
expected, exit status 2, and leaves an existing run byte for byte as it was. A run that fails
before its first epoch ends leaves no run behind; a kill, SIGTERM, a full disk or NaN never
destroys earlier results.
"""

import errno
import glob
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from pyrogen import files
from pyrogen.cli import main
from pyrogen.files import RunDir
from pyrogen.runs import open_run
from tests.conftest import requires_fashion_mnist
from tests.integration.cli_faults import ROOT, TINY, one_error_line, snapshot, train_gan_run


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """One finished one-epoch VAE run (kept read-only by the tests: they copy it to change it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("faults") / "vae")
    assert main(["train", "vae", "--out", out, "--epochs", "1"] + TINY) == 0
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    return train_gan_run(tmp_path_factory, "faults")


def copy_run(run, tmp_path, name="run"):
    return shutil.copytree(run, tmp_path / name)


# ---------------------------------------------------------------- items 6, 8: options refused in one line
BAD_OPTIONS = [
    (["train", "vae", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["train", "vae", "--seed", "x"], "argument --seed: expected an integer >= 0, got 'x'"),
    (["train", "vae", "--kl-weight", "0"], "argument --kl-weight: expected a positive finite number, got '0'"),
    (["train", "vae", "--kl-weight", "inf"], "argument --kl-weight: expected a positive finite number, got 'inf'"),
    (["train", "vae", "--lr", "nan"], "argument --lr: expected a positive finite number, got 'nan'"),
    (["train", "vae", "--free-bits", "-1"], "argument --free-bits: expected a finite number >= 0, got '-1'"),
    (["train", "vae", "--free-bits", "nan"], "argument --free-bits: expected a finite number >= 0, got 'nan'"),
    (
        ["train", "vae", "--device", "bogus"],
        "argument --device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'bogus'",
    ),
    (["train", "vae", "--device", "cuda:99"], "argument --device: expected a device that exists, got 'cuda:99'"),
    (["train", "vae", "--hidden", "1000000"], "argument --hidden: expected a positive integer <= 65536, got 1000000"),
    (
        ["train", "vae", "--latent-dim", "1000000000"],
        "argument --latent-dim: expected a positive integer <= 65536, got 1000000000",
    ),
    (
        ["train", "vae", "--hidden", "65536", "65536", "--latent-dim", "65536"],
        "argument --hidden: expected networks whose weights, gradients and Adam state fit in half this machine's "
        "memory (",
    ),
    (["train", "vae", "--eval-samples", "-3"], "argument --eval-samples: expected an integer >= 0, got '-3'"),
    (
        ["train", "vae", "--num-particles", "1000000"],
        "argument --num-particles: expected at most 3423 particles for --batch-size 100 (a step's 1000000 x 100 "
        "images would not fit in memory), got 1000000",
    ),
    (["train", "gan", "--beta1", "2"], "argument --beta1: expected a number in [0, 1), got '2'"),
    (["train", "gan", "--beta2", "nan"], "argument --beta2: expected a number in [0, 1), got 'nan'"),
    (["train", "gan", "--ema-decay", "1"], "argument --ema-decay: expected a number in [0, 1), got '1'"),
    (["train", "gan", "--gp-weight", "-1"], "argument --gp-weight: expected a finite number >= 0, got '-1'"),
    (["train", "gan", "--channels", "999999"], "argument --channels: expected a positive integer <= 65536, got 999999"),
    (
        ["sample", "RUN", "-n", "1000000000"],
        "argument -n/--num-samples: expected a positive integer <= 100000, got 1000000000",
    ),
    (["sample", "RUN", "--seed", "-5"], "argument --seed: expected an integer >= 0, got '-5'"),
    (["plot", "RUN", "--seed", "-5"], "argument --seed: expected an integer >= 0, got '-5'"),
    (["evaluate", "RUN", "--eval-samples", "0"], "argument --eval-samples: expected a positive integer, got 0"),
    (["train", "vae", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
]
if not torch.cuda.is_available():
    BAD_OPTIONS.append(
        (
            ["train", "vae", "--device", "cuda"],
            "argument --device: expected a device that exists, got 'cuda': no CUDA GPU is available",
        )
    )


@requires_fashion_mnist
@pytest.mark.parametrize("args, message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line_and_leaves_the_run_untouched(vae_run, args, message, capsys, monkeypatch):
    before = snapshot(vae_run)
    args = [vae_run if a == "RUN" else a for a in args]
    if args[0] == "train":
        args = args + ["--out", vae_run, "--no-progress"]
    try:
        status = main(args)
    except SystemExit as e:
        status = e.code
    assert status == 2
    line = one_error_line(capsys)
    assert line.startswith("pyrogen: error: " + message), line
    assert "usage:" not in line and "_int" not in line and "_float" not in line
    assert snapshot(vae_run) == before


# ---------------------------------------------------------------- item 1: no dead run directories
@requires_fashion_mnist
@pytest.mark.parametrize(
    "fault, status, message",
    [
        ("nan", 2, "No epoch had finished, so no checkpoint was written and"),
        ("interrupt", 130, "interrupted before the first epoch finished; no checkpoint was written"),
        ("compile", 2, "cannot compile"),
    ],
)
def test_a_failure_in_the_first_epoch_leaves_no_run_and_the_directory_can_be_used_again(
    tmp_path, fault, status, message, capsys, monkeypatch, one_thread
):
    from pyrogen.errors import CompilationError
    from pyrogen.training.vae import VAETrainer

    def broken_step(self, x):
        if fault == "nan":
            return float("nan")
        if fault == "interrupt":
            raise KeyboardInterrupt
        raise CompilationError("cannot compile the loss: no working C++ compiler; train without --compile")

    out = str(tmp_path / "run")
    with monkeypatch.context() as m:
        m.setattr(VAETrainer, "train_step", broken_step)
        assert main(["train", "vae", "--out", out, "--epochs", "1"] + TINY) == status
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err, err
    assert not RunDir(out).holds_run() and os.listdir(out) == []
    # the advice can be followed: the same --out starts a new run
    assert main(["train", "vae", "--out", out, "--epochs", "1"] + TINY) == 0
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1]


@requires_fashion_mnist
def test_a_run_that_never_finished_an_epoch_is_restarted_by_resume(vae_run, tmp_path, capsys, one_thread):
    """A directory with only config.json (left by an older pyrogen, or a kill between config and checkpoint)."""
    out = copy_run(vae_run, tmp_path)
    for name in os.listdir(out):
        if name != "config.json":
            shutil.rmtree(out / name) if os.path.isdir(out / name) else os.remove(out / name)
    assert main(["train", "vae", "--out", str(out), "--epochs", "1"] + TINY) == 2
    assert "already holds a run; pass --resume to continue it (it never finished an epoch" in one_error_line(capsys)
    assert main(["train", "vae", "--out", str(out), "--resume", "--epochs", "1", "--no-progress"]) == 0
    again, straight = RunDir(out).load_checkpoint(), RunDir(vae_run).load_checkpoint()
    assert again["epoch"] == 1 and all(torch.equal(again["model"][k], straight["model"][k]) for k in straight["model"])


@requires_fashion_mnist
def test_images_of_the_wrong_size_are_refused_before_a_run_directory_exists(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()

    def idx(name, shape, dims):
        header = bytes([0, 0, 8, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)
        with gzip.open(data / name, "wb") as f:
            f.write(header + bytes(int(torch.tensor(shape).prod())))

    for split, n in (("train", 20), ("t10k", 10)):
        idx(f"{split}-images-idx3-ubyte.gz", (n, 32, 32), 3)
        idx(f"{split}-labels-idx1-ubyte.gz", (n,), 1)
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--data-dir", str(data), "--no-progress"]) == 2
    assert "train-images-idx3-ubyte.gz' are 32x32 pixels; expected Fashion-MNIST's 28x28" in one_error_line(capsys)
    assert not out.exists()


def test_a_corrupt_deflate_stream_is_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            blob = bytearray(gzip.compress(bytes(range(256)) * 40))
            blob[30:60] = b"\xff" * 30  # break the deflate stream, not the gzip header
            (data / f"{split}-{kind}-ubyte.gz").write_bytes(bytes(blob))
    assert main(["train", "vae", "--out", str(tmp_path / "run"), "--data-dir", str(data), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("pyrogen: error: cannot read IDX file") and "train-images-idx3-ubyte.gz" in line
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- item 2: evaluate prints first
@requires_fashion_mnist
def test_evaluate_prints_its_result_before_a_failed_write(vae_run, tmp_path, capsys, monkeypatch, one_thread):
    out = copy_run(vae_run, tmp_path)
    before = snapshot(out)
    real = files.atomic_write

    def full_disk(path, write, binary=True):
        if os.path.basename(os.path.dirname(path)) == "evaluations":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, write, binary)

    monkeypatch.setattr(files, "atomic_write", full_disk)
    assert main(["evaluate", str(out), "--eval-samples", "5", "--no-progress", "--device", "cpu"]) == 2
    printed = capsys.readouterr()
    assert "test ELBO" in printed.out and "(K = 5)" in printed.out
    written = out / "evaluations" / f"log-px-K5-seed0-epoch1-test{open_run(out).config['data']['test_size']}.json"
    assert printed.err == (
        f"pyrogen: error: cannot write {str(written)!r}: No space left on device; the evaluation above was not saved\n"
    )
    assert snapshot(out) == before


# ---------------------------------------------------------------- items 3, 4: foreign or inconsistent files
def _gan_checkpoint_in_vae_run(vae, gan):
    shutil.copy(os.path.join(gan, "checkpoint.pt"), os.path.join(vae, "checkpoint.pt"))


def _config(text):
    def change(vae, gan):
        with open(os.path.join(vae, "config.json"), "w") as f:
            f.write(text)

    return change


def _checkpoint_and_config(edit):
    """Change the checkpoint's tensors and its embedded configuration together (config.json to match)."""

    def change(vae, gan):
        path = os.path.join(vae, "checkpoint.pt")
        state = torch.load(path, weights_only=True)
        edit(state)
        files.save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
        RunDir(vae).write_json("config.json", state["config"])

    return change


def _bigger_latent(state):
    state["config"]["model"]["latent_dim"] = 10


def _missing_key(state):
    state["model"].pop(sorted(state["model"])[0])


FOREIGN = [
    ("gan-checkpoint", _gan_checkpoint_in_vae_run, "was written with another configuration than"),
    ("empty-config", _config(""), "config.json' is not valid JSON"),
    ("invalid-config", _config("{not json"), "config.json' is not valid JSON"),
    ("list-config", _config("[1, 2]"), "config.json' holds [1, 2]; expected a run configuration"),
    ("null-config", _config("null"), "config.json' holds null; expected a run configuration"),
    ("size-mismatch", _checkpoint_and_config(_bigger_latent), "checkpoint.pt' does not fit"),
    ("missing-key", _checkpoint_and_config(_missing_key), "checkpoint.pt' does not fit"),
]


@requires_fashion_mnist
@pytest.mark.parametrize("command", ["evaluate", "sample", "resume"])
@pytest.mark.parametrize("name, change, message", FOREIGN, ids=[f[0] for f in FOREIGN])
def test_foreign_or_inconsistent_run_files_are_one_line(
    vae_run, gan_run, tmp_path, name, change, message, command, capsys, one_thread
):
    out = copy_run(vae_run, tmp_path)
    change(str(out), gan_run)
    before = snapshot(out)
    args = {
        "evaluate": ["evaluate", str(out), "--eval-samples", "2", "--no-progress", "--device", "cpu"],
        "sample": ["sample", str(out), "-n", "2", "--device", "cpu"],
        "resume": ["train", "vae", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"],
    }[command]
    assert main(args) == 2
    assert message in one_error_line(capsys)
    assert snapshot(out) == before


@requires_fashion_mnist
def test_resuming_a_gan_run_as_a_vae_names_the_right_command(gan_run, capsys):
    before = snapshot(gan_run)
    assert main(["train", "vae", "--out", gan_run, "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert one_error_line(capsys) == (
        f"pyrogen: error: --out {gan_run!r} holds a gan run, not a vae run; resume "
        f"it with 'pyrogen train gan --out {gan_run} --resume'"
    )
    assert snapshot(gan_run) == before


@requires_fashion_mnist
def test_a_checkpoint_from_another_run_is_refused_naming_both_files(vae_run, tmp_path, capsys, one_thread):
    other = str(tmp_path / "latent5")
    assert main(["train", "vae", "--out", other, "--epochs", "1"] + TINY[:4] + ["--latent-dim", "5"] + TINY[6:]) == 0
    out = copy_run(vae_run, tmp_path)
    shutil.copy(os.path.join(other, "checkpoint.pt"), out / "checkpoint.pt")
    before = snapshot(out)
    assert main(["train", "vae", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert str(out / "checkpoint.pt") in line and str(out / "config.json") in line and "different runs" in line
    assert snapshot(out) == before  # metrics.csv keeps this run's history


@requires_fashion_mnist
@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "evaluation.json' is not valid JSON"),
        ("[]", "evaluation.json' holds no evaluation"),
        ('{"elbo": -1, "psis": 3}', "evaluation.json' holds no evaluation"),
    ],
)
def test_a_tampered_evaluation_is_one_line_in_report(vae_run, tmp_path, text, message, capsys):
    out = copy_run(vae_run, tmp_path)
    (out / "evaluation.json").write_text(text)
    before = snapshot(out)
    assert main(["report", str(out)]) == 2
    assert message in one_error_line(capsys)
    assert snapshot(out) == before


# ---------------------------------------------------------------- items 5, 7: I/O errors, a run's own files
@requires_fashion_mnist
def test_a_full_disk_in_training_keeps_the_last_good_checkpoint(vae_run, tmp_path, capsys, monkeypatch, one_thread):
    out = copy_run(vae_run, tmp_path)
    good = RunDir(out).load_checkpoint()
    real = files.atomic_write

    def full_disk(path, write, binary=True):
        if os.path.basename(path) == "checkpoint.pt":

            def half(f):
                f.write(b"PK\x03\x04 half a checkpoint")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            return real(path, half, binary)
        return real(path, write, binary)

    monkeypatch.setattr(files, "atomic_write", full_disk)
    assert main(["train", "vae", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert one_error_line(capsys) == (
        f"pyrogen: error: cannot read or write {str(out / 'checkpoint.pt')!r}: No space left on device"
    )
    kept = RunDir(out).load_checkpoint()
    assert kept["epoch"] == 1 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1]
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


@requires_fashion_mnist
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["report", "RUN", "--out", "RUN/checkpoint.pt"],
            "--out 'RUN/checkpoint.pt' is one of its run's own files; expected another file name",
        ),
        (
            ["report", "RUN", "--out", "RUN/config.json"],
            "--out 'RUN/config.json' is one of its run's own files; expected another file name",
        ),
        (
            ["sample", "RUN", "--out", "RUN/metrics.csv"],
            "--out 'RUN/metrics.csv' is one of its run's own files; expected another file name",
        ),
        (["report", "RUN", "--out", "RUN"], "--out 'RUN' is a directory; expected a file path"),
        (
            ["sample", "RUN", "--out", "RUN/missing/s.png"],
            "--out 'RUN/missing/s.png': the folder 'RUN/missing' does not exist",
        ),
        (
            ["report", "RUN", "--out", "RUN/config.json/r.html"],
            "--out 'RUN/config.json/r.html': the folder 'RUN/config.json' does not exist (or is not a directory)",
        ),
    ],
)
def test_outputs_never_replace_a_runs_files_or_fail_with_a_traceback(vae_run, tmp_path, args, message, capsys):
    out = str(copy_run(vae_run, tmp_path))
    before = snapshot(out)
    assert main([a.replace("RUN", out) for a in args]) == 2
    assert one_error_line(capsys).startswith("pyrogen: error: " + message.replace("RUN", out))
    assert snapshot(out) == before


@requires_fashion_mnist
def test_train_out_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "1"] + TINY) == 2
    line = one_error_line(capsys)
    assert str(out) in line or str(tmp_path / "file") in line, line


@requires_fashion_mnist
@pytest.mark.parametrize("command", ["resume", "evaluate", "sample", "plot", "report"])
def test_a_read_only_run_directory_is_one_line(vae_run, tmp_path, command, capsys, monkeypatch, one_thread):
    """Simulated (tests may run as root, who writes anywhere): writes into the run fail with EACCES."""
    out = str(copy_run(vae_run, tmp_path))
    before = snapshot(out)
    real_mkstemp, real_access = files.tempfile.mkstemp, os.access

    def mkstemp(*a, dir=None, **k):
        if os.path.abspath(dir).startswith(out):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real_access(p, mode, **k))
    args = {
        "resume": ["train", "vae", "--out", out, "--resume", "--epochs", "2", "--no-progress"],
        "evaluate": ["evaluate", out, "--eval-samples", "2", "--no-progress", "--device", "cpu"],
        "sample": ["sample", out, "-n", "2", "--device", "cpu"],
        "plot": ["plot", out, "--num-points", "20", "--device", "cpu"],
        "report": ["report", out],
    }[command]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert out in line and ("not writable" in line or "Permission denied" in line), line
    assert snapshot(out) == before


# ---------------------------------------------------------------- item 10: no symlinked files in a report
@requires_fashion_mnist
def test_report_embeds_only_regular_files_inside_the_run(vae_run, tmp_path):
    from pyrogen.report import build_report

    out = copy_run(vae_run, tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret system file")
    os.symlink(secret, out / "leak.png")
    page = build_report(str(out))
    assert "leak.png" not in page
    import base64

    assert base64.b64encode(b"\x89PNG secret system file").decode() not in page


# ---------------------------------------------------------------- item 11: resume edge cases
@requires_fashion_mnist
@pytest.mark.parametrize("epochs", ["1", "0"])
def test_resume_to_no_more_epochs_says_so(vae_run, epochs, capsys):
    before = snapshot(vae_run)
    try:
        status = main(["train", "vae", "--out", vae_run, "--resume", "--epochs", epochs, "--no-progress"])
    except SystemExit as e:
        status = e.code
    assert status == 2
    line = one_error_line(capsys)
    assert line.startswith("pyrogen: error: argument --epochs: expected")
    if epochs == "1":
        assert line.endswith(
            f"expected more than the 1 epochs the run in {vae_run!r} has done (--epochs is the new total), got 1"
        )
    assert snapshot(vae_run) == before


@requires_fashion_mnist
def test_extending_a_cyclical_schedule_says_what_happens(tmp_path, capsys, one_thread):
    out = str(tmp_path / "run")
    assert (
        main(["train", "vae", "--out", out, "--epochs", "1", "--kl-schedule", "cyclical", "--kl-cycles", "1"] + TINY)
        == 0
    )
    capsys.readouterr()
    assert main(["train", "vae", "--out", out, "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert (
        "pyrogen: note: the cyclical KL schedule keeps its 1-epoch cycles; after epoch 1 the KL weight stays 1"
        in capsys.readouterr().err
    )


# ---------------------------------------------------------------- item 12: evaluate an autoencoder
@requires_fashion_mnist
def test_evaluate_an_autoencoder_reports_its_objective_and_refuses_only_log_px(tmp_path, capsys, one_thread):
    out = str(tmp_path / "ae")
    assert main(["train", "ae", "--out", out, "--epochs", "1"] + TINY) == 0
    capsys.readouterr()
    assert main(["evaluate", out, "--no-progress", "--device", "cpu"]) == 0
    assert "test objective log p(x|z) + log p(z) at the code" in capsys.readouterr().out
    [written] = glob.glob(os.path.join(out, "evaluations", "log-px-K0-*.json"))
    assert "objective" in json.loads(open(written).read())
    before = snapshot(out)
    assert main(["evaluate", out, "--eval-samples", "10", "--no-progress", "--device", "cpu"]) == 2
    assert one_error_line(capsys).startswith(
        "pyrogen: error: argument --eval-samples: an autoencoder run has no log p(x)"
    )
    assert snapshot(out) == before


# ---------------------------------------------------------------- items 8, 9: messages, signals, kills
def test_a_refused_pickle_never_suggests_weights_only_false(tmp_path):
    import pickle

    from pyrogen.errors import CheckpointError

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": files.CHECKPOINT_FORMAT, "x": Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError) as e:
        files.load_checkpoint(path)
    assert "weights_only=False" not in str(e.value) and "likely succeed" not in str(e.value)
    assert "refusing to unpickle it" in str(e.value) and "\n" not in str(e.value)


def test_stale_temporary_files_are_removed(tmp_path):
    """Only atomic_write's own names go (issue 27 item 4: a user's '.my.notes.tmp' stays)."""
    (tmp_path / ".checkpoint.pt.pyrogen-abc123.tmp").write_bytes(b"x" * 100)
    (tmp_path / "keep.tmp").write_text("not ours")
    (tmp_path / ".my.notes.tmp").write_text("not ours either")
    assert files.remove_stale_temporaries(tmp_path) == [".checkpoint.pt.pyrogen-abc123.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".my.notes.tmp", "keep.tmp"]


def _train_process(out, epochs, delay=None):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYROGEN_TEST_WRITE_DELAY", None)
    if delay:
        env["PYROGEN_TEST_WRITE_DELAY"] = str(delay)
    code = "import torch, sys; torch.set_num_threads(1); from pyrogen.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", "vae", "--out", out, "--epochs", str(epochs), "--batch-size", "20"]
        + TINY,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def _slow_train_process(out, epochs, marker):
    """A training process whose every step appends a dot to ``marker`` and then sleeps 50 ms."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYROGEN_TEST_WRITE_DELAY", None)
    code = (
        "import sys, time, torch\n"
        "torch.set_num_threads(1)\n"
        "from pyrogen.training.vae import VAETrainer\n"
        "step = VAETrainer.train_step\n"
        "def slow(self, *a, **k):\n"
        "    result = step(self, *a, **k)\n"
        f"    open({marker!r}, 'a').write('.')\n"
        "    time.sleep(0.05)\n"
        "    return result\n"
        "VAETrainer.train_step = slow\n"
        "from pyrogen.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", "vae", "--out", out, "--epochs", str(epochs), "--batch-size", "20"]
        + TINY,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, process, timeout=120):
    end = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _temporaries(out):
    return [n for n in os.listdir(out) if n.endswith(".tmp")] if os.path.isdir(out) else []


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Two epochs, uninterrupted, on one thread: what every killed and resumed run must equal bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("faults") / "straight")
    assert main(["train", "vae", "--out", out, "--epochs", "2", "--batch-size", "20"] + TINY) == 0
    torch.set_num_threads(threads)
    return out


@requires_fashion_mnist
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_kill_in_the_middle_of_a_checkpoint_write_resumes_bit_for_bit(
    straight_run, tmp_path, sig, capsys, one_thread
):
    """The process is killed while it writes epoch 2's checkpoint (a hook sleeps between write and rename)."""
    out = str(tmp_path / "killed")
    process = _train_process(out, 2, delay=0.6)
    _wait_for(lambda: os.path.exists(os.path.join(out, "checkpoint.pt")), process)
    _wait_for(lambda: any(n.startswith(".checkpoint.pt.") for n in _temporaries(out)), process)
    process.send_signal(sig)
    status = process.wait(60)
    err = process.stderr.read()
    if sig == signal.SIGTERM:  # handled like Ctrl-C: one line, its temporary file removed
        assert status == 143 and _temporaries(out) == []
        assert err.strip().splitlines()[-1] == (
            f"pyrogen: terminated (SIGTERM); the checkpoint of the last finished epoch is kept in "
            f"{os.path.join(out, 'checkpoint.pt')!r}: continue with 'pyrogen train vae --out {out} --resume'"
        )
    else:
        assert status == -signal.SIGKILL and _temporaries(out)  # left behind, removed by the next start
    assert RunDir(out).load_checkpoint()["epoch"] == 1
    capsys.readouterr()
    assert main(["train", "vae", "--out", out, "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert _temporaries(out) == []
    a, b = RunDir(straight_run).load_checkpoint(), RunDir(out).load_checkpoint()
    assert b["epoch"] == 2 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(
        torch.equal(a["optim"]["state"][i]["exp_avg"], b["optim"]["state"][i]["exp_avg"]) for i in a["optim"]["state"]
    )
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2]


@requires_fashion_mnist
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_kill_in_the_middle_of_an_epoch_resumes_bit_for_bit(straight_run, tmp_path, sig, capsys, one_thread):
    """Killed after step 15 of 20 (10 steps an epoch): epoch 2 is half done and is redone from epoch 1's checkpoint."""
    out, marker = str(tmp_path / "killed"), str(tmp_path / "steps")
    process = _slow_train_process(out, 2, marker)
    _wait_for(lambda: os.path.exists(marker) and len(open(marker).read()) >= 15, process)
    process.send_signal(sig)
    status = process.wait(60)
    assert status == (143 if sig == signal.SIGTERM else -signal.SIGKILL), process.stderr.read()
    assert RunDir(out).load_checkpoint()["epoch"] == 1 and [r["epoch"] for r in RunDir(out).read_metrics()] == [1]
    capsys.readouterr()
    assert main(["train", "vae", "--out", out, "--resume", "--epochs", "2", "--no-progress"]) == 0
    a, b = RunDir(straight_run).load_checkpoint(), RunDir(out).load_checkpoint()
    assert b["epoch"] == 2 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2]
    assert RunDir(out).read_metrics()[1]["train_elbo"] == RunDir(straight_run).read_metrics()[1]["train_elbo"]


# ---------------------------------------------------------------- item 13: the Python API
def _api_cases():
    from pyrogen.data import DeviceLoader, check_images
    from pyrogen.evaluation import evaluate_dataset, log_importance_weights
    from pyrogen.evaluation.likelihood import elbo
    from pyrogen.models import VAE

    vae = VAE(latent_dim=2, hidden=(8,))
    x = torch.rand(3, 1, 28, 28).round()
    empty = torch.empty(0, 1, 28, 28)
    f32 = "x must be a torch.float32 tensor of values in [0, 1] like the model's parameters, got "
    return [
        (
            "check_images-empty",
            lambda: check_images(empty, "data"),
            "data must hold at least one image, got shape (0, 1, 28, 28)",
        ),
        ("loader-empty", lambda: DeviceLoader(empty, 1), "data must hold at least one image"),
        (
            "loader-world_size-0",
            lambda: DeviceLoader(x, 1, world_size=0),
            "world_size must be a positive integer, got 0",
        ),
        ("model-empty", lambda: vae.model(empty), "x must hold at least one image, got shape (0, 1, 28, 28)"),
        (
            "model-uint8",
            lambda: vae.model((x * 255).to(torch.uint8)),
            f32 + "torch.uint8 (scale grey levels with x.float() / 255)",
        ),
        ("model-int64", lambda: vae.model(x.long()), f32 + "torch.int64 (convert with x.to(torch.float32))"),
        ("model-bool", lambda: vae.model(x.bool()), f32 + "torch.bool (convert with x.to(torch.float32))"),
        ("guide-float64", lambda: vae.guide(x.double()), f32 + "torch.float64 (convert with x.to(torch.float32))"),
        (
            "log_importance_weights-0",
            lambda: log_importance_weights(vae.model, vae.guide, x, 0),
            "num_samples must be a positive integer, got 0",
        ),
        ("elbo-0", lambda: elbo(vae.model, vae.guide, x, 0), "num_particles must be a positive integer, got 0"),
        (
            "evaluate_dataset-empty",
            lambda: evaluate_dataset(vae.model, vae.guide, x[:0]),
            "data must be a tensor of at least one example, got (0, 1, 28, 28)",
        ),
        (
            "evaluate_dataset-batch-0",
            lambda: evaluate_dataset(vae.model, vae.guide, x, batch_size=0),
            "batch_size must be a positive integer, got 0",
        ),
        ("latent_dim-0", lambda: VAE(latent_dim=0), "latent_dim must be a positive integer, got 0"),
        ("latent_dim--3", lambda: VAE(latent_dim=-3), "latent_dim must be a positive integer, got -3"),
        ("latent_dim-2.5", lambda: VAE(latent_dim=2.5), "latent_dim must be a positive integer, got 2.5"),
        ("latent_dim-str", lambda: VAE(latent_dim="10"), "latent_dim must be a positive integer, got '10'"),
        ("latent_dim-True", lambda: VAE(latent_dim=True), "latent_dim must be a positive integer, got True"),
        (
            "hidden-0",
            lambda: VAE(hidden=(0,)),
            "hidden must be a non-empty sequence of positive integer widths, got (0,)",
        ),
        (
            "hidden-empty",
            lambda: VAE(hidden=()),
            "hidden must be a non-empty sequence of positive integer widths, got ()",
        ),
        (
            "image_shape-2d",
            lambda: VAE(image_shape=(28, 28)),
            "image_shape must be (channels, height, width) or (features,) of positive integers, got (28, 28)",
        ),
    ]


@pytest.mark.parametrize("index", range(20))
def test_bad_input_to_the_python_api_is_a_data_error_naming_it(index):
    from pyrogen.errors import DataError

    name, call, message = _api_cases()[index]
    with pytest.raises(DataError) as e:
        call()
    assert str(e.value) == message or str(e.value).startswith(message), (name, str(e.value))
