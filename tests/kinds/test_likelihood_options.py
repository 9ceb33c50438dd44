"""``--likelihood auto`` and ``--input-transform`` of ``pyrogen train vae``."""

import json

from pyrogen.cli import main
from tests.conftest import requires_fashion_mnist

TINY = ["--train-size", "200", "--test-size", "50", "--epochs", "1", "--latent-dim", "2", "--hidden", "16",
        "--no-progress", "--eval-samples", "0"]


@requires_fashion_mnist
def test_auto_likelihood_says_which_and_why_and_the_run_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--likelihood", "auto"] + TINY) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("likelihood auto: bernoulli (images with values in [0, 1] (256 distinct levels): grey "
                              "levels, binarized dynamically as for Fashion-MNIST")
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["likelihood"] == "bernoulli" and config["data"]["binarize"] == "dynamic"


@requires_fashion_mnist
def test_input_transform_reaches_the_model(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--input-transform", "log1p",
                 "--likelihood", "continuous-bernoulli"] + TINY) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["input_transform"] == "log1p"
    assert main(["evaluate", str(out), "--eval-samples", "2", "--no-progress"]) == 0
