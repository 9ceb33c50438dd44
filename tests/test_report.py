"""`pyrogen evaluate` with k-hat, `pyrogen plot` and `pyrogen report` on a tiny run; the page is self-contained."""

import base64
import json
import re

import pytest
from PIL import Image

from pyrogen.cli import main
from pyrogen.errors import RunDirError
from pyrogen.report import SECTIONS, build_report, write_report
from pyrogen.runs import RunDir
from tests.conftest import requires_fashion_mnist

TINY = [
    "--train-size",
    "300",
    "--test-size",
    "60",
    "--epochs",
    "2",
    "--latent-dim",
    "2",
    "--hidden",
    "32",
    "--eval-samples",
    "0",
    "--no-progress",
]
PLOTS = (
    "reconstructions",
    "prior_samples",
    "latent_traversals",
    "interpolations",
    "manifold",
    "latent_codes",
    "training_curves",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["train", "vae", "--out", str(out)] + TINY) == 0
    return out


@requires_fashion_mnist
def test_evaluate_reports_khat(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--eval-samples", "50", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"Pareto k-hat: \d+\.\d% of 60 examples above 0.7", printed), printed
    psis = json.loads((run_dir / "evaluations/log-px-K50-seed0-epoch2-test60.json").read_text())["psis"]
    assert psis["num_examples"] == 60 and psis["threshold"] == 0.7
    assert 0 <= psis["share_above_threshold"] <= 1 and psis["khat_max"] >= psis["khat_median"]
    assert (psis["advice"] is not None) == (psis["share_above_threshold"] > 0)
    # Too few draws for a Pareto fit: log p(x) without k-hat.
    assert main(["evaluate", str(run_dir), "--eval-samples", "5", "--no-progress"]) == 0
    assert "Pareto" not in capsys.readouterr().out


@requires_fashion_mnist
def test_plot_writes_every_picture(run_dir, capsys):
    assert main(["plot", str(run_dir), "--num-points", "60"]) == 0
    printed = capsys.readouterr().out
    for name in PLOTS:
        path = run_dir / "plots" / f"{name}.png"
        assert f"wrote {path}" in printed
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) > 100


@requires_fashion_mnist
def test_report_page_has_every_section_and_embeds_every_picture(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--eval-samples", "30", "--no-progress"]) == 0
    assert main(["plot", str(run_dir), "--num-points", "60"]) == 0
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run_dir / 'report.html'}"
    page = (run_dir / "report.html").read_text()
    for title in SECTIONS:
        assert f"<h2 id='{title.lower().replace(' ', '-')}'>{title}</h2>" in page
    # Results first, settings last (issue 27): the order of SECTIONS, and SECTIONS' order is that one.
    assert SECTIONS == ("Evaluation", "Training curves", "Pictures", "Metrics", "Settings")
    heads = [page.index(f"<h2 id='{t.lower().replace(' ', '-')}'>") for t in SECTIONS]
    assert heads == sorted(heads)
    assert "model.latent_dim" in page and "train.epochs" in page  # settings
    assert "Pareto k&#770;" in page and "importance-sampled log p(x)" in page  # evaluation
    # Every evaluation on disk, each headed by the K it used (not the config's eval.num_samples).
    assert sorted(
        re.findall(r"<h3>K = (\d+)(?: \(test ELBO only\))?, seed 0, 60 test images, checkpoint of epoch 2</h3>", page),
        key=int,
    ) == sorted({m.split("-")[2][1:] for m in (p.name for p in (run_dir / "evaluations").iterdir())}, key=int)
    # Settings the run did not use are left out; K of the final evaluation is labelled as such.
    assert "kl_cycles" not in page and "kl_warmup_epochs" not in page and "data.root" not in page
    assert "eval.num_samples (K of the evaluation at the end of training)" in page
    assert page.count("<tr>") >= 1 + 2  # the metrics table: header and two epochs
    # Offline: every picture is inline, nothing is fetched.
    sources = re.findall(r"src='([^']*)'", page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(href|src)=['\"]?(https?:|//)", page)
    # The curves and the six model pictures of `pyrogen plot`, whose reconstructions and prior samples
    # supersede training's two grids: each kind of grid appears once.
    assert len(sources) == 1 + 6
    # The module's second 'pyrogen plot' went to plots-2 (nothing replaced): the report shows the latest.
    assert "plots-2/prior_samples.png" in page and "<code>samples.png</code>" not in page
    assert "<code>plots-2/</code>; earlier ones are in <code>plots/</code>" in page
    for s in sources:
        assert base64.b64decode(s.split(",", 1)[1]).startswith(b"\x89PNG")


@requires_fashion_mnist
def test_report_of_a_bare_run_says_what_is_missing(run_dir, tmp_path):
    bare = RunDir.create(tmp_path / "bare", RunDir(run_dir).config)
    path = write_report(bare.path, tmp_path / "bare.html")
    page = open(path).read()
    for title in SECTIONS:
        assert f">{title}</h2>" in page
    assert "No evaluation yet" in page and "No metrics.csv" in page and "pyrogen plot" in page


def test_report_of_no_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"pyrogen: error: {str(tmp_path)!r} holds no pyrogen run (no config.json)\n"
    with pytest.raises(RunDirError, match="holds no pyrogen run"):
        build_report(tmp_path)


def test_runs_of_other_kinds_get_their_curves_plotted_and_reported(tmp_path, capsys):
    run = RunDir.create(tmp_path / "gan", {"kind": "gan", "train": {"epochs": 3}})
    run.write_metrics([{"epoch": e, "loss_d": 1.0 / e, "loss_g": 0.7 * e} for e in (1, 2, 3)])
    assert main(["plot", run.path]) == 0
    assert capsys.readouterr().out == f"wrote {run.file('plots/training_curves.png')}\n"
    page = build_report(run.path)
    assert page.count("data:image/png;base64,") == 1 and "loss_d" in page and "train.epochs" in page


def test_settings_of_unexpected_types_are_listed_not_a_traceback():
    """A hand-edited config.json (issue 27's battery): a schedule that is a list is shown as it is."""
    from pyrogen.report import changed_settings, used_settings

    config = {"kind": "vae", "train": {"kl_schedule": [1], "kl_cycles": 4, "epochs": "ten"}}
    assert ("train.kl_schedule", [1]) in used_settings(config) and ("train.kl_cycles", 4) in used_settings(config)
    assert ("train.epochs", "ten", 10) in changed_settings(config)


def test_a_gans_samples_are_not_called_mean_images():
    from pyrogen.report import _picture_caption

    assert _picture_caption("samples.png", "gan").startswith("Samples G(z) of the generator")
    assert _picture_caption("samples-epoch3-n64-seed0.png", "gan").startswith("64 samples G(z) of the generator")
    assert _picture_caption("samples-epoch3-n64-seed0.png", "vae").startswith("Mean images of 64 draws")


@pytest.mark.parametrize("shape", [None, -1, 1e308, ["a"]])
def test_a_hand_edited_image_shape_is_no_traceback(shape):
    from pyrogen.report import _inapplicable

    assert _inapplicable({"image_shape": shape, "latent_dim": 2}) == ""
