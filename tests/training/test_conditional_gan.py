"""Class-conditional GAN training from the command line and the trainer (#18 item 4)."""

import pytest
import torch
from torch import nn

from pyrogen.cli import main
from pyrogen.config import conditional_gan_config
from pyrogen.errors import DataError
from pyrogen.models.gan import ConditionalGenerator, ProjectionDiscriminator
from pyrogen.runs import RunDir, open_run
from pyrogen.training.gan import build_gan_trainer, default_gan_config, resume_gan_trainer
from tests.conftest import requires_fashion_mnist


def _config(**train):
    config = conditional_gan_config(default_gan_config("mlp", latent_dim=8, hidden=(32,)))
    config["train"].update({"epochs": 2, "batch_size": 25, "log_every": 3, "num_fixed": 64, **train})
    return config


@pytest.fixture
def labelled():
    g = torch.Generator().manual_seed(0)
    return (
        torch.rand(150, 1, 28, 28, generator=g),
        torch.rand(40, 1, 28, 28, generator=g),
        torch.randint(10, (150,), generator=g),
    )


class Echo(nn.Module):
    """A 'classifier' that reads the class from the image: the index of its brightest of 10 pixel bands."""

    def forward(self, x):
        return x.flatten(1)[:, :780].reshape(x.shape[0], 10, 78).mean(-1)


def test_conditional_run_builds_the_conditional_pair_and_resumes_exactly(tmp_path, labelled, one_thread):
    config = _config()
    straight = build_gan_trainer(config, device="cpu", progress=False, data=labelled)
    assert isinstance(straight.generator, ConditionalGenerator)
    assert isinstance(straight.discriminator, ProjectionDiscriminator)
    # fixed labels: six per class (64 // 10), in class order, so the grid has one row per class
    assert straight.fixed_labels.tolist() == [k for k in range(10) for _ in range(6)]
    straight.fit(2)
    run = RunDir.create(tmp_path / "run", config)
    build_gan_trainer(config, run=run, device="cpu", progress=False, data=labelled).fit(1)
    resumed = resume_gan_trainer(tmp_path / "run", device="cpu", progress=False, data=labelled)
    resumed.fit(2)
    for a, b in zip(straight.state_dict()["generator"].values(), resumed.state_dict()["generator"].values()):
        assert torch.equal(a, b)
    assert [dict(r, seconds=0) for r in straight.metrics] == [dict(r, seconds=0) for r in resumed.metrics]
    assert open_run(tmp_path / "run", "cpu").model().num_classes == 10


def test_conditional_accuracy_is_the_share_assigned_to_the_requested_class(labelled, one_thread):
    trainer = build_gan_trainer(_config(epochs=1), device="cpu", progress=False, data=labelled)
    trainer.classifier = Echo()
    row = trainer.fit()[0]
    pred = Echo()(trainer.samples()).argmax(-1)
    assert row["conditional_accuracy"] == (pred == trainer.fixed_labels).double().mean().item()
    assert {"class_entropy", "classes_covered"} <= set(row)


def test_conditional_gan_needs_labels(labelled):
    with pytest.raises(DataError, match="a class-conditional GAN needs labelled training data"):
        build_gan_trainer(_config(), device="cpu", progress=False, data=labelled[:2])
    bad = (labelled[0], labelled[1], labelled[2] + 5)
    with pytest.raises(DataError, match=r"the training labels must lie in 0 \.\. 9"):
        build_gan_trainer(_config(), device="cpu", progress=False, data=bad)


@requires_fashion_mnist
def test_cli_conditional_gan_and_sample_by_label(tmp_path, capsys, one_thread):
    out = tmp_path / "cgan"
    assert (
        main(
            [
                "train",
                "gan",
                "--conditional",
                "--architecture",
                "mlp",
                "--hidden",
                "32",
                "--latent-dim",
                "8",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--train-size",
                "300",
                "--test-size",
                "50",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["sample", str(out), "-n", "20", "--out", str(tmp_path / "grid.png")]) == 0
    assert main(["sample", str(out), "-n", "4", "--label", "3", "--out", str(tmp_path / "three.png")]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--label", "10"]) == 2
    assert capsys.readouterr().err == "pyrogen: error: --label 10 is outside the run's classes 0 .. 9\n"
    from PIL import Image

    # 20 samples, 2 per class: ten rows of two (save_image pads 2 pixels around 28x28 tiles)
    assert Image.open(tmp_path / "grid.png").size == (2 + 2 * 30, 2 + 10 * 30)


# ---------------------------------------------------------------- the conditional VAE
def _cvae_config():
    from pyrogen.config import default_cvae_config

    config = default_cvae_config(latent_dim=4, hidden=(32,))
    config["train"].update(epochs=2, batch_size=50)
    return config


def _cvae_data(labelled):
    from pyrogen.data import static_binarize

    train, test, y = labelled
    return train, y, static_binarize(test, 12345), torch.arange(40) % 10


def test_cvae_resumes_exactly_and_reports_conditional_accuracy(tmp_path, labelled, one_thread):
    from pyrogen.training.cvae import PER_CLASS, build_cvae_trainer, resume_cvae_trainer

    config, data = _cvae_config(), _cvae_data(labelled)
    straight = build_cvae_trainer(config, device="cpu", progress=False, data=data)
    straight.classifier = Echo()
    straight.fit(2)
    first = build_cvae_trainer(
        config, run=RunDir.create(tmp_path / "run", config), device="cpu", progress=False, data=data
    )
    first.classifier = Echo()
    first.fit(1)
    resumed = resume_cvae_trainer(tmp_path / "run", device="cpu", progress=False, data=data)
    resumed.classifier = Echo()
    resumed.fit(2)
    for (name, a), b in zip(straight.cvae.state_dict().items(), resumed.cvae.state_dict().values()):
        assert torch.equal(a, b), name
    assert [dict(r, seconds=0) for r in straight.metrics] == [dict(r, seconds=0) for r in resumed.metrics]
    row = straight.metrics[-1]
    pred = Echo()(straight.samples()).argmax(-1)
    assert row["conditional_accuracy"] == (pred == straight.sample_labels).double().mean().item()
    assert straight.sample_labels.tolist() == [k for k in range(10) for _ in range(PER_CLASS)]
    assert row["test_elbo"] > straight.metrics[0]["test_elbo"] - 50 and row["test_elbo"] < 0
    assert open_run(tmp_path / "run", "cpu").kind == "cvae"


@requires_fashion_mnist
def test_cli_conditional_vae(tmp_path, capsys, one_thread):
    out = tmp_path / "cvae"
    base = [
        "train",
        "vae",
        "--conditional",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--train-size",
        "300",
        "--test-size",
        "50",
        "--no-progress",
    ]
    assert main(base + ["--out", str(out), "--epochs", "1"]) == 0
    assert main(["train", "vae", "--out", str(out), "--epochs", "2", "--resume", "--no-progress"]) == 0
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2]
    assert main(["sample", str(out), "-n", "4", "--label", "9", "--out", str(tmp_path / "nine.png")]) == 0
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "bad"), "--prior", "laplace"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrogen: error: --conditional trains the conditional VAE") and err.count("\n") == 1
    assert main(["sample", str(out), "--label", "-1"]) == 2
    assert "outside the run's classes 0 .. 9" in capsys.readouterr().err
