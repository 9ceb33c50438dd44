"""``pyrogen train ali`` and ``pyrogen train aae``: trainers on FitLoop, exact resume, metrics, CLI."""

import pyro
import pytest
import torch

from pyrogen.cli import main
from pyrogen.config import default_aae_config, default_ali_config
from pyrogen.data import static_binarize
from pyrogen.runs import RunDir, open_run
from pyrogen.training.aae import build_aae_trainer
from pyrogen.training.ali import build_ali_trainer
from tests.conftest import requires_fashion_mnist

BUILD = {"ali": build_ali_trainer, "aae": build_aae_trainer}


def small_config(kind, **train):
    if kind == "ali":
        config = default_ali_config(latent_dim=8, hidden=(64,), disc_hidden=(64,))
    else:
        config = default_aae_config(latent_dim=4, hidden=(64,), disc_hidden=(32, 32))
    config["train"].update({"epochs": 2, "probe_size": 300, "num_fixed": 16, **train})
    return config


def data_of(config, fashion_mnist_small, n_train=1000):
    train, test = fashion_mnist_small
    test_x = test.images[:300]
    if config["data"]["binarize"] != "none":
        test_x = static_binarize(test_x, seed=12345)
    return train.images[:n_train], train.labels[:n_train], test_x, test.labels[:300]


@requires_fashion_mnist
@pytest.mark.parametrize(
    "kind, dcgan", [("ali", False), ("aae", False), ("ali", True)], ids=["ali", "aae", "ali-dcgan-alternating"]
)
def test_resumed_run_matches_uninterrupted_bit_for_bit(kind, dcgan, fashion_mnist_small, tmp_path, one_thread):
    config = small_config(kind)
    if dcgan:  # the earlier defaults: DCGAN's layout of the pair, the alternating update
        config["train"]["update"] = "alternating"
        del config["model"]["network"]
    data = data_of(config, fashion_mnist_small, n_train=300)  # 3 steps an epoch: the resumed epoch has 3 to match
    straight = BUILD[kind](config, RunDir.create(tmp_path / "a", config), "cpu", False, data)
    straight.fit(2)

    first = BUILD[kind](config, RunDir.create(tmp_path / "b", config), "cpu", False, data)
    first.fit(1)
    del first
    pyro.set_rng_seed(999)  # resuming must not depend on the ambient random state
    run = open_run(tmp_path / "b", "cpu")
    assert run.kind == kind
    resumed = BUILD[kind](run.checkpoint["config"], run.dir, "cpu", False, data)
    resumed.load_state_dict(run.checkpoint)
    resumed.fit(2)

    for module in ("vae", "discriminator"):
        a, b = getattr(straight, module).state_dict(), getattr(resumed, module).state_dict()
        for name in a:
            assert torch.equal(a[name], b[name]), (module, name)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.metrics]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.metrics]
    # the reopened run's model is the trained VAE pair
    model = open_run(tmp_path / "b", "cpu").model()
    assert all(torch.equal(v, resumed.vae.state_dict()[k]) for k, v in model.state_dict().items())


@requires_fashion_mnist
@pytest.mark.parametrize("kind", ["ali", "aae"])
def test_metrics_report_reconstruction_probe_and_flags(kind, fashion_mnist_small, one_thread):
    config = small_config(kind)
    trainer = BUILD[kind](config, None, "cpu", False, data_of(config, fashion_mnist_small))
    rows = trainer.fit(2)
    for row in rows:
        assert {
            "loss_d",
            "loss_g",
            "d_real",
            "d_fake",
            "d_accuracy",
            "recon_error",
            "probe_accuracy",
            "diversity",
            "flags",
        } <= set(row)
        assert 0 < row["recon_error"] < 0.5
        # ten classes: chance is 0.1; codes of a briefly trained encoder already separate them far better
        assert row["probe_accuracy"] > 0.3, row
    # the reconstruction error is the MSE of G(E(x)) against x on the test images
    x = trainer.test_data
    assert rows[-1]["recon_error"] == pytest.approx((trainer.reconstruct(x) - x).square().mean().item())
    if kind == "aae":
        assert rows[-1]["test_elbo"] > rows[0]["test_elbo"]  # the pair is still a VAE: its bound improves
        assert rows[-1]["test_elbo"] < 0


def test_probe_is_skipped_without_labels(fashion_mnist_small, one_thread):
    config = small_config("ali", epochs=1)
    train, _, test, _ = data_of(config, fashion_mnist_small)
    trainer = build_ali_trainer(config, None, "cpu", False, (train[:200], None, test[:50], None))
    row = trainer.fit(1)[0]
    assert row["probe_accuracy"] != row["probe_accuracy"]  # NaN: no labels, no probe


@requires_fashion_mnist
def test_cli_trains_reopens_and_refuses_bernoulli_draws(tmp_path, capsys, one_thread):
    out = tmp_path / "ali"
    args = [
        "train",
        "ali",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--train-size",
        "500",
        "--test-size",
        "200",
        "--hidden",
        "32",
        "--disc-hidden",
        "32",
        "--latent-dim",
        "4",
        "--probe-size",
        "200",
        "--no-progress",
    ]
    assert main(args) == 0
    assert open_run(out).kind == "ali" and (out / "samples.png").is_file() and (out / "reconstructions.png").is_file()
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["report", str(out)]) == 0
    capsys.readouterr()
    bad = [
        "train",
        "ali",
        "--out",
        str(tmp_path / "bad"),
        "--likelihood",
        "bernoulli",
        "--model-x",
        "sample",
        "--train-size",
        "200",
        "--test-size",
        "100",
        "--no-progress",
    ]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrogen: error: model_x 'sample'") and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_cli_ali_defaults_are_alis_recipe_and_bad_dropout_is_one_line(tmp_path, capsys):
    from pyrogen.cli import build_parser

    args = build_parser().parse_args(["train", "ali", "--out", "x"])
    assert (args.architecture, args.hidden, args.likelihood) == ("dcgan", [256], "bernoulli-relaxed")
    assert (args.disc_architecture, args.disc_dropout, args.disc_hidden, args.update) == (
        None,
        0.2,
        None,
        "simultaneous",
    )
    assert (args.lr_g, args.lr_d, args.batch_size) == (1e-4, 1e-4, 100)
    aae = build_parser().parse_args(["train", "aae", "--out", "x"])
    assert (aae.architecture, aae.lr_d) == ("mlp", 2e-4)  # the adversarial autoencoder keeps its defaults
    assert main(["train", "ali", "--out", str(tmp_path / "bad"), "--disc-dropout", "1", "--no-progress"]) == 2
    assert capsys.readouterr().err == "pyrogen: error: --disc-dropout must be a probability in [0, 1), got 1.0\n"
    assert not (tmp_path / "bad").exists()
