"""He et al.'s optimisation recipe wired into the VAE trainer and ``pyrogen train vae`` (pyrogen.optim)."""

import pyro
import pytest
import torch

from pyrogen.cli import main
from pyrogen.config import default_config
from pyrogen.models.registry import build_model
from pyrogen.runs import open_run
from pyrogen.training import VAETrainer
from tests.conftest import requires_fashion_mnist

TINY = [
    "--train-size",
    "150",
    "--test-size",
    "20",
    "--latent-dim",
    "4",
    "--hidden",
    "16",
    "--no-progress",
    "--eval-samples",
    "0",
]


def _trainer(**train):
    config = default_config(latent_dim=2, hidden=(8,), image_shape=(1, 4, 4))
    config["train"].update({"batch_size": 10, "optimizer": "sgd", "lr": 1.0, **train})
    x = torch.bernoulli(torch.full((20, 1, 4, 4), 0.3), generator=torch.Generator().manual_seed(1))
    pyro.set_rng_seed(0)
    return VAETrainer(build_model(config), x, x, config, progress=False), x[:10]


def _step(trainer, x):
    """One trainer step; returns the gradients it stepped on (after any clipping) and its loss."""
    pyro.set_rng_seed(5)
    loss = trainer.train_step(x)
    return [p.grad.detach().clone() for p in trainer.vae.parameters()], float(loss)


def _norm(grads):
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()


def test_sum_and_mean_reductions_differ_by_exactly_the_batch_size_and_report_the_same_loss():
    summed, x = _trainer(loss_reduction="sum")
    mean, _ = _trainer(loss_reduction="mean")
    mean.vae.load_state_dict(summed.vae.state_dict())
    g_sum, loss_sum = _step(summed, x)
    g_mean, loss_mean = _step(mean, x)
    assert loss_mean == pytest.approx(loss_sum, rel=1e-6)  # nats per batch either way
    for a, b in zip(g_sum, g_mean):
        torch.testing.assert_close(a, x.shape[0] * b, rtol=1e-5, atol=1e-6)
    assert _norm(g_mean) > 0


def test_clip_norm_bounds_the_global_gradient_norm_of_every_step():
    clipped, x = _trainer(clip_norm=0.01)
    free, _ = _trainer()
    free.vae.load_state_dict(clipped.vae.state_dict())
    assert _norm(_step(free, x)[0]) > 0.1
    assert _norm(_step(clipped, x)[0]) == pytest.approx(0.01, rel=1e-4)


def test_uniform_init_and_decay_need_a_validation_split():
    trainer, _ = _trainer(init="uniform")
    assert max(p.abs().max().item() for p in trainer.vae.parameters()) <= 0.01
    with pytest.raises(Exception, match="give --validation-size"):
        _trainer(lr_decay_epochs=1)


def test_recipe_he2019_sets_every_option_and_refuses_to_decay_on_the_test_set(tmp_path, capsys):
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--recipe", "he2019"] + TINY) == 2
    assert "give --validation-size N" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@requires_fashion_mnist
def test_plateau_decay_resumes_bit_for_bit_through_the_cli(tmp_path):
    args = TINY + [
        "--recipe",
        "he2019",
        "--lr",
        "1.0",
        "--lr-decay-epochs",
        "1",
        "--decay-start-epoch",
        "0",
        "--max-decay",
        "3",
        "--validation-size",
        "50",
        "--batch-size",
        "25",
    ]
    assert main(["train", "vae", "--out", str(tmp_path / "a"), "--epochs", "4"] + args) == 0
    assert main(["train", "vae", "--out", str(tmp_path / "b"), "--epochs", "2"] + args) == 0
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                str(tmp_path / "b"),
                "--epochs",
                "4",
                "--resume",
                "--no-progress",
                "--eval-samples",
                "0",
            ]
        )
        == 0
    )
    a, b = open_run(tmp_path / "a").checkpoint, open_run(tmp_path / "b").checkpoint
    config = a["config"]["train"]
    assert (config["optimizer"], config["lr"], config["loss_reduction"], config["clip_norm"], config["init"]) == (
        "sgd",
        1.0,
        "mean",
        5.0,
        "uniform",
    )
    assert a["decay"]["decays"] >= 1, a["decay"]  # the run did decay, so the state that resumed mattered
    assert a["epoch"] == b["epoch"]
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert {k: v for k, v in a["decay"].items() if k != "best_state"} == {
        k: v for k, v in b["decay"].items() if k != "best_state"
    }
    for name, value in a["decay"]["best_state"].items():
        assert torch.equal(value, b["decay"]["best_state"][name]), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a["metrics"]) == strip(b["metrics"])


@requires_fashion_mnist
@pytest.mark.parametrize("recipe", ["he2019", "he2019-image"])
def test_image_vae_under_he_recipes_keeps_their_image_encoders_head(tmp_path, recipe):
    """He et al.'s image encoder (ResNetEncoderV2) ends in ``nn.Linear(512, 2 * nz)`` *with* a bias, read as
    (μ, log σ²); only their text encoder's map is bias-free. Neither recipe swaps the image VAE's head."""
    from pyrogen.distributions import ParameterHead

    out = tmp_path / recipe
    assert (
        main(["train", "vae", "--out", str(out), "--epochs", "1", "--recipe", recipe, "--validation-size", "50"] + TINY)
        == 0
    )
    run = open_run(out, "cpu")
    assert run.checkpoint["config"]["train"]["recipe"] == recipe
    head = run.model().encoder[-1]
    assert type(head) is ParameterHead and set(head.layers) == {"loc", "scale"}
    assert all(layer.bias is not None for layer in head.layers.values())
    h = torch.randn(3, head.layers["loc"].in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        params = head(h)
        assert torch.equal(params["loc"], head.layers["loc"](h))
        torch.testing.assert_close(params["scale"], torch.exp(0.5 * head.layers["scale"](h)), rtol=1e-6, atol=0)
