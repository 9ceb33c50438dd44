"""``--likelihood auto`` and ``--input-transform`` of ``pyrogen train vae``."""

import json

from pyrogen.cli import main
from tests.conftest import requires_fashion_mnist

TINY = [
    "--train-size",
    "200",
    "--test-size",
    "50",
    "--epochs",
    "1",
    "--latent-dim",
    "2",
    "--hidden",
    "16",
    "--no-progress",
    "--eval-samples",
    "0",
]


@requires_fashion_mnist
def test_auto_likelihood_says_which_and_why_and_the_run_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--likelihood", "auto"] + TINY) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(
        "likelihood auto: bernoulli (images with values in [0, 1] (256 distinct levels): grey "
        "levels, binarized dynamically as for Fashion-MNIST"
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["likelihood"] == "bernoulli" and config["data"]["binarize"] == "dynamic"


@requires_fashion_mnist
def test_input_transform_reaches_the_model(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            ["train", "vae", "--out", str(out), "--input-transform", "log1p", "--likelihood", "continuous-bernoulli"]
            + TINY
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["input_transform"] == "log1p"
    assert main(["evaluate", str(out), "--eval-samples", "2", "--no-progress"]) == 0


def test_a_table_trains_plots_and_reports_from_the_command_line(tmp_path, capsys):
    import pandas as pd
    import torch

    g = torch.Generator().manual_seed(0)
    t = torch.randn(240, 5, generator=g) @ torch.randn(5, 5, generator=g)
    table = pd.DataFrame(t.numpy(), columns=list("abcde"))
    table["kind"] = (t[:, 0] > 0).long().numpy()
    table.to_csv(tmp_path / "table.csv", index=False)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                str(tmp_path / "table.csv"),
                "--label-column",
                "kind",
                "--likelihood",
                "auto",
                "--out",
                str(out),
                "--epochs",
                "2",
                "--latent-dim",
                "2",
                "--hidden",
                "16",
                "--eval-samples",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("likelihood auto: normal-feature (real values in [")
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["image_shape"] == [5] and config["model"]["likelihood"] == "normal-feature"
    assert (out / "latent_codes.png").stat().st_size > 0 and (out / "feature_reconstruction.png").stat().st_size > 0
    assert not (out / "samples.png").exists()  # vectors are not drawn as images
    assert main(["plot", str(out)]) == 0
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "feature_reconstruction.png",
        "latent_codes.png",
        "training_curves.png",
    ]
    assert main(["report", str(out)]) == 0
    report = (out / "report.html").read_text()
    assert (
        "Pictures that do not apply to this run: <code>reconstructions.png</code>: the examples are vectors of "
        "5 features" in report
    )
