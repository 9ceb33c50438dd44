"""Bad option values are refused in one line naming the option, before any work (issue 27)."""

import pytest

from pyrogen.cli import main
from pyrogen.evaluation import features as F


def _one_line(capsys):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("pyrogen: error: "), err
    return err.strip()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["train", "vae", "--elbo", "tc", "--tc-beta", "nan"],
            "argument --tc-beta: expected a finite number, got 'nan'",
        ),
        (
            ["train", "aae", "--adversarial-weight", "inf"],
            "argument --adversarial-weight: expected a finite number, got 'inf'",
        ),
        (["train", "ali", "--disc-dropout", "nan"], "argument --disc-dropout: expected a finite number, got 'nan'"),
        (["train", "vae", "--clip-norm", "inf"], "argument --clip-norm: expected a finite number >= 0, got 'inf'"),
        (
            ["train", "vae", "--prior", "vamp:100000"],
            "argument --prior: expected vamp:K with K <= 10000 pseudo-inputs, got 'vamp:100000'",
        ),
        (
            ["train", "vae", "--batch-size", "1000000000000"],
            "argument --batch-size: expected a positive integer <= 342392 (larger batches do not fit in memory), "
            "got 1000000000000",
        ),
        (
            ["train", "gan", "--batch-size", "1000000000000"],
            "argument --batch-size: expected a positive integer <= 342392",
        ),
        (
            ["train", "vae", "--threads", "100000"],
            "argument --threads: expected a positive integer <= 1024, got 100000",
        ),
        (
            ["train", "vae", "--epochs", "99999999999999999999", "--resume"],
            "argument --epochs: expected a positive integer <= 1000000 (a run that would not end), "
            "got 99999999999999999999",
        ),
        (["report", "x", "--threads", "100000"], "argument --threads: expected a positive integer <= 1024, got 100000"),
        (
            ["train", "vae", "--seed", "99999999999999999999999"],
            "argument --seed: expected an integer from 0 to 4294967295, got 99999999999999999999999",
        ),
        (["sample", "x", "--seed", "99999999999999999999999"], "argument --seed: expected an integer from 0 to"),
        (["sample", "x", "--out", ""], "argument --out: expected a file path, got an empty path ''"),
        (["report", "x", "--out", ""], "argument --out: expected a file path, got an empty path ''"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_option(argv, expected, capsys):
    argv = argv if argv[0] != "train" else argv[:2] + ["--out", "unused-run"] + argv[2:]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert _one_line(capsys).startswith(f"pyrogen: error: {expected}")


@pytest.mark.parametrize(
    "out, expected",
    [
        ("", "argument --out: expected a directory for the run, got an empty path ''"),
        ("/", "argument --out: expected a directory of its own for the run, got the root '/'"),
    ],
)
def test_an_output_directory_that_cannot_hold_a_run_is_refused_before_training(out, expected, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "vae", "--out", out, "--epochs", "1"])
    assert e.value.code == 2 and _one_line(capsys) == f"pyrogen: error: {expected}"


@pytest.fixture
def feature_cache(tmp_path):
    F.save_network(F.FashionMNISTClassifier(), *F.default_paths(tmp_path), info={"test_accuracy": 0.5})
    return str(tmp_path)


@pytest.mark.parametrize("command", ["sample", "sample-quality", "evaluate"])
def test_commands_on_the_feature_network_cache_say_what_it_is(command, feature_cache, capsys):
    assert main([command, feature_cache, "--device", "cpu"]) == 2
    what = {"sample": "pyrogen sample", "sample-quality": "pyrogen sample-quality", "evaluate": "evaluate"}[command]
    assert _one_line(capsys) == (
        f"pyrogen: error: {feature_cache!r} holds the sample-quality feature network's cache (a classifier), not "
        f"a generative model; {what} a run made by 'pyrogen train vae|ae|gan|ali|aae'"
    )


def test_resuming_the_feature_network_cache_names_a_command_that_exists(feature_cache, capsys):
    assert main(["train", "vae", "--out", feature_cache, "--resume"]) == 2
    assert _one_line(capsys) == (
        f"pyrogen: error: {feature_cache!r} holds the sample-quality feature network's cache, which is not resumed: "
        f"'pyrogen train features --cache-dir {feature_cache} --force' trains it again"
    )
    assert main(["train", "features", "--cache-dir", feature_cache, "--resume"]) == 2
    assert _one_line(capsys) == (
        "pyrogen: error: pyrogen train features does not resume: the feature network "
        "trains in one go by its fixed recipe; --force trains it again"
    )
