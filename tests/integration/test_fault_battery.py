"""A fault battery through the command line, table-driven: hand-edited configurations of every kind of
wrong, a checkpoint that disagrees with ``config.json``, run files of the wrong type, outputs aimed into
another run, resume edge cases and odd paths.

Every case either succeeds or prints ONE line, ``pyrogen: error: ...``, and exits with status 2; a
refused case leaves the run byte for byte as it was (nothing is trained before a fault is found).
"""

import json
import os
import shutil

import pytest
import torch

from pyrogen.cli import main
from tests.conftest import requires_fashion_mnist
from tests.integration.cli_faults import one_error_line, snapshot

TINY = [
    "--train-size",
    "200",
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


def cli(argv):
    """``pyrogen ARGV``'s exit status (argparse's refusals exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch VAE run with one evaluation (each test works on a copy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("battery") / "vae")
    assert cli(["train", "vae", "--out", out, "--epochs", "1", "--eval-samples", "2"] + TINY) == 0
    torch.set_num_threads(threads)
    return out


@pytest.fixture
def run(finished, tmp_path, one_thread):
    return str(shutil.copytree(finished, tmp_path / "run"))


COMMANDS = {
    "report": lambda out: ["report", out],
    "plot": lambda out: ["plot", out, "--num-points", "20", "--device", "cpu"],
    "evaluate": lambda out: ["evaluate", out, "--eval-samples", "2", "--no-progress", "--device", "cpu"],
    "sample": lambda out: ["sample", out, "-n", "2", "--device", "cpu"],
    "sample-quality": lambda out: ["sample-quality", out, "-n", "20", "--device", "cpu"],
    "resume": lambda out: ["train", "vae", "--out", out, "--resume", "--epochs", "2", "--no-progress"],
}


def config(change):
    """An edit of ``config.json``: ``change(config)`` returns the new JSON value."""

    def edit(out):
        path = os.path.join(out, "config.json")
        with open(path) as f:
            value = change(json.load(f))
        with open(path, "w") as f:
            json.dump(value, f)

    return edit


def setting(section, key, value):
    def change(c):
        (c[section] if section else c)[key] = value
        return c

    return config(change)


def without(key):
    return config(lambda c: {k: v for k, v in c.items() if k != key})


def replace_by(name, kind):
    """``name`` in the run made a directory (``kind="dir"``) or an empty file."""

    def edit(out):
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        os.mkdir(path) if kind == "dir" else open(path, "w").close()

    return edit


def emptied(out):
    for name in os.listdir(out):
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


ALL = ["report", "plot", "evaluate", "sample", "sample-quality", "resume"]
WITH_CHECKPOINT = ["plot", "evaluate", "sample", "sample-quality", "resume"]
REFUSED = [
    # config.json: wrong types and values, named with the file and the setting, before any comparison
    (
        "epochs-string",
        setting("train", "epochs", "3"),
        WITH_CHECKPOINT,
        "config.json': train.epochs must be an integer >= 1, got '3'",
    ),
    (
        "epochs-negative",
        setting("train", "epochs", -1),
        WITH_CHECKPOINT,
        "config.json': train.epochs must be an integer >= 1, got -1",
    ),
    (
        "batch-size-float",
        setting("train", "batch_size", 1.5),
        ["sample", "resume"],
        "train.batch_size must be an integer >= 1, got 1.5",
    ),
    ("lr-string", setting("train", "lr", "fast"), ["evaluate", "resume"], "train.lr must be a finite number"),
    (
        "train-size-string",
        setting("data", "train_size", "200"),
        ["plot", "resume"],
        "data.train_size must be an integer >= 1, got '200'",
    ),
    (
        "eval-samples-negative",
        setting("eval", "num_samples", -1),
        ["evaluate", "resume"],
        "eval.num_samples must be an integer >= 0, got -1",
    ),
    (
        "binarize-unknown",
        setting("data", "binarize", "yes"),
        ["sample", "resume"],
        "data.binarize must be 'dynamic', 'static' or 'none', got 'yes'",
    ),
    ("version-future", setting(None, "version", 99), WITH_CHECKPOINT, "it was written by a newer pyrogen"),
    ("version-string", setting(None, "version", "2"), ["sample", "resume"], "got '2': it was written by a newer"),
    ("kind-unknown", setting(None, "kind", "diffusion"), ALL, "unknown run kind 'diffusion'; expected one of"),
    ("kind-number", setting(None, "kind", 3), ALL, "config.json' holds 'kind': 3; expected the name of a kind"),
    ("section-string", setting(None, "eval", "x"), ALL, "config.json' holds 'eval': \"x\"; expected a JSON object"),
    ("section-null", setting(None, "model", None), ALL, "config.json' holds 'model': null; expected a JSON object"),
    ("model-missing", without("model"), ["resume"], "config.json' lacks 'model'; expected the configuration"),
    ("null", config(lambda c: None), ALL, "config.json' holds null; expected a run configuration"),
    ("list", config(lambda c: [c]), ALL, "expected a run configuration (a JSON object"),
    ("empty-object", config(lambda c: {}), ["resume"], "lacks 'model', 'data', 'train'"),
    # a checkpoint whose embedded configuration disagrees with config.json
    (
        "checkpoint-disagrees",
        setting("model", "latent_dim", 8),
        WITH_CHECKPOINT,
        "checkpoint.pt' was written with another configuration than",
    ),
    (
        "checkpoint-disagrees-on-type",
        setting("model", "latent_dim", "4"),
        WITH_CHECKPOINT,
        "the two files belong to different runs",
    ),
    (
        "checkpoint-of-another-kind",
        setting(None, "kind", "gan"),
        ["sample", "sample-quality"],
        "the two files belong to different runs",
    ),
    # run files of the wrong type: refused before an epoch is trained or an evaluation computed
    (
        "metrics-a-directory",
        replace_by("metrics.csv", "dir"),
        ["report", "plot", "resume"],
        "metrics.csv' is not a regular file",
    ),
    (
        "evaluations-a-file",
        replace_by("evaluations", "file"),
        ["resume", "evaluate"],
        "evaluations' is not a directory; expected the run's own, which the command adds to",
    ),
    ("checkpoint-a-directory", replace_by("checkpoint.pt", "dir"), WITH_CHECKPOINT, "no checkpoint at"),
    ("config-a-directory", replace_by("config.json", "dir"), ALL, "holds no pyrogen run (no config.json)"),
    ("empty-run-directory", emptied, ALL, "holds no pyrogen run (no config.json)"),
]
CASES = [(name, edit, command, message) for name, edit, commands, message in REFUSED for command in commands]


@requires_fashion_mnist
@pytest.mark.parametrize("name, edit, command, message", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_a_faulty_run_is_refused_in_one_line_and_left_as_it_was(run, name, edit, command, message, capsys):
    edit(run)
    before = snapshot(run)
    assert cli(COMMANDS[command](run)) == 2
    line = one_error_line(capsys)
    assert message in line and len(line) < 400, line
    assert snapshot(run) == before


def header_only(out):
    path = os.path.join(out, "metrics.csv")
    with open(path) as f:
        header = f.readline()
    with open(path, "w") as f:
        f.write(header)


def extra_column(out):
    path = os.path.join(out, "metrics.csv")
    with open(path) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join([lines[0] + ",extra"] + [line + ",7" for line in lines[1:]]) + "\n")


ACCEPTED = [
    ("unknown-train-key", setting("train", "note", "mine"), ["sample", "resume"]),
    (
        "evaluation-named-json-is-a-directory",
        lambda out: os.mkdir(os.path.join(out, "evaluations", "x.json")),
        ["report"],
    ),
    ("metrics-header-only", header_only, ["report", "plot"]),
    ("metrics-extra-column", extra_column, ["report"]),
]


@requires_fashion_mnist
@pytest.mark.parametrize(
    "name, edit, command",
    [(n, e, c) for n, e, cs in ACCEPTED for c in cs],
    ids=[f"{n}-{c}" for n, _, cs in ACCEPTED for c in cs],
)
def test_harmless_oddities_are_read(run, name, edit, command, capsys):
    edit(run)
    assert cli(COMMANDS[command](run)) == 0, capsys.readouterr().err
    if name == "unknown-train-key" and command == "resume":  # the user's own key is kept, the total recorded
        with open(os.path.join(run, "config.json")) as f:
            train = json.load(f)["train"]
        assert (train["note"], train["epochs"]) == ("mine", 2)


# ---------------------------------------------------------------- outputs aimed into another run
@requires_fashion_mnist
@pytest.mark.parametrize(
    "argv",
    [
        ["report", "RUN", "--out", "OTHER/evaluations/new.html"],
        ["report", "RUN", "--out", "OTHER/metrics.csv"],
        ["sample", "RUN", "-n", "2", "--device", "cpu", "--out", "OTHER/checkpoint.pt"],
        ["plot", "RUN", "--device", "cpu", "--out", "OTHER/evaluations"],
        ["plot", "RUN", "--device", "cpu", "--out", "OTHER/evaluations/pictures"],
    ],
    ids=["report-evaluations", "report-metrics", "sample-checkpoint", "plot-evaluations", "plot-inside-evaluations"],
)
def test_no_output_goes_into_another_runs_own_files(run, tmp_path, argv, capsys):
    other = str(shutil.copytree(run, tmp_path / "other"))
    before = snapshot(other)
    argv = [a.replace("OTHER", other).replace("RUN", run) for a in argv]
    assert cli(argv) == 2
    line = one_error_line(capsys)
    assert "its run's own files" in line and "nothing was written" in line, line
    assert snapshot(other) == before


# ---------------------------------------------------------------- epochs and resume
@requires_fashion_mnist
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
        (["--resume", "--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
        (["--resume", "--epochs", "1"], "expected more than the 1 epochs the run in"),
        (["--resume"], "has done all its 1 epochs; give --epochs N with N > 1"),
        (["--epochs", "2"], "already holds a run; pass --resume to continue it"),
    ],
    ids=["epochs-0", "resume-epochs-0", "resume-epochs-done", "resume-finished", "new-over-a-run"],
)
def test_epochs_that_train_nothing_are_refused(run, argv, message, capsys):
    before = snapshot(run)
    assert cli(["train", "vae", "--out", run, "--no-progress", "--device", "cpu"] + argv) == 2
    assert message in one_error_line(capsys)
    assert snapshot(run) == before


@requires_fashion_mnist
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(run, capsys):
    for name in os.listdir(run):  # what a trainer killed in its first epoch leaves: config.json alone
        if name != "config.json":
            path = os.path.join(run, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    assert cli(["train", "vae", "--out", run, "--resume", "--no-progress"]) == 0
    assert torch.load(os.path.join(run, "checkpoint.pt"), weights_only=True)["epoch"] == 1


# ---------------------------------------------------------------- odd paths and a run directory that is a file
@requires_fashion_mnist
@pytest.mark.parametrize("name", ["ünï ☃", "new\nline", "-dash"])
def test_odd_run_paths_work_and_errors_stay_one_line(run, tmp_path, name, capsys):
    odd = str(shutil.move(run, tmp_path / name))
    assert cli(["sample", odd, "-n", "2", "--device", "cpu"]) == 0
    os.unlink(os.path.join(odd, "config.json"))
    assert cli(["report", odd]) == 2
    assert one_error_line(capsys) == f"pyrogen: error: {odd!r} holds no pyrogen run (no config.json)"


@pytest.mark.parametrize("command", ALL)
def test_a_run_directory_that_is_a_file_is_one_line(tmp_path, command, capsys):
    path = tmp_path / "file"
    path.write_text("not a run")
    assert cli(COMMANDS[command](str(path))) == 2
    assert one_error_line(capsys) == f"pyrogen: error: {str(path)!r} holds no pyrogen run (no config.json)"
    assert path.read_text() == "not a run"


# ---------------------------------------------------------------- values past their range
def metrics_row(field, value):
    def edit(out):
        path = os.path.join(out, "metrics.csv")
        with open(path) as f:
            header = f.readline().strip().split(",")
        row = ["1" if name == "epoch" else "1.0" for name in header]
        row[header.index(field)] = value
        with open(path, "w") as f:
            f.write(",".join(header) + "\n" + ",".join(row) + "\n")

    return edit


@requires_fashion_mnist
@pytest.mark.parametrize("command", ["report", "plot"])
def test_an_epoch_past_any_run_in_metrics_is_one_line(run, command, capsys):
    metrics_row("epoch", "99999999999999999999")(run)
    assert cli(COMMANDS[command](run)) == 2
    assert "metrics.csv' row 1 has epoch 99999999999999999999; expected a whole number" in one_error_line(capsys)


@requires_fashion_mnist
def test_a_huge_whole_figure_in_metrics_is_read_as_a_number(run, capsys):
    metrics_row("train_elbo", "-99999999999999999999")(run)
    assert cli(COMMANDS["report"](run)) == 0, capsys.readouterr().err


@requires_fashion_mnist
def test_a_mixture_of_more_components_than_codes_is_one_line(run, capsys):
    assert cli(["sample", run, "--sampler", "gmm:100000", "-n", "2", "--device", "cpu"]) == 2
    assert "N >= n_components = 100000, got (200, 4): a gmm:K sampler needs at least K" in one_error_line(capsys)
