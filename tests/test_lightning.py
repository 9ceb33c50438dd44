"""pyrogen.lightning: the SVIModule under Lightning's DDP takes TorchSVI's steps; its metrics are pyrogen's."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

from pyrogen.infer import ReparamTrace_ELBO, TorchSVI  # noqa: E402
from tests import lightning_ddp_run as ddp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

LOSS_RTOL = 1e-5
"""Relative tolerance of a step's loss, DDP against one process: float32 sums over 20 x 784 pixels taken
in another order and gradients averaged over 2 processes (observed: at most 9e-8 relative over the 8 steps)."""


@pytest.fixture(autouse=True)
def _restore_module_local_params():
    """SVIModule sets Pyro's global module_local_params (as Pyro's svi_lightning does); other tests expect
    Pyro's default, so it is put back."""
    import pyro

    before = pyro.settings.get("module_local_params")
    yield
    pyro.settings.set(module_local_params=before)


def reference_losses():
    """TorchSVI in one process on the same data, model, seed and global batches as the DDP run."""
    ae = ddp.autoencoder()
    svi = TorchSVI(ae.model, ae.guide, torch.optim.Adam(ae.parameters(), lr=ddp.LR), ReparamTrace_ELBO())
    data, losses = ddp.data(), []
    for _ in range(ddp.EPOCHS):
        for i in range(0, data.shape[0], ddp.GLOBAL_BATCH):
            losses.append(svi.step(data[i : i + ddp.GLOBAL_BATCH]).item())
    return losses, [p.detach().sum().item() for p in ae.parameters()]


@pytest.mark.parametrize("compile", ["off", "record"])
def test_ddp_on_two_cpu_processes_takes_torchsvis_steps(tmp_path, one_thread, compile):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(ROOT / "tests" / "lightning_ddp_run.py"),
            str(out),
            compile,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(out.read_text())
    expected, params = reference_losses()
    assert run["world_size"] == 2
    assert len(run["losses"]) == len(expected) == 8
    assert run["losses"] == pytest.approx(expected, rel=LOSS_RTOL)
    assert expected[-1] < expected[0]  # it trained
    assert run["params"] == pytest.approx(params, rel=1e-4, abs=1e-5)
    # the logged ELBO: the last epoch's per-example mean over both processes, nats
    last_epoch = expected[len(expected) // 2 :]
    assert run["train_elbo"] == pytest.approx(-sum(last_epoch) / 80, rel=LOSS_RTOL)


def _trainer(max_epochs=1, **options):
    """A one-CPU Lightning Trainer without logger, checkpoints, progress bar or model summary."""
    import lightning.pytorch as pl

    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, **quiet, **options)


def test_validation_logs_pyrogens_elbo_kl_mi_and_active_units(one_thread):
    """One process: the logged figures are those of pyrogen.evaluation on the same validation data."""
    import pyro
    from torch.utils.data import DataLoader, TensorDataset

    from pyrogen.evaluation import evaluate_dataset
    from pyrogen.evaluation.diagnostics import collapse_diagnostics
    from pyrogen.lightning import SVIModule
    from pyrogen.models import VAE

    torch.manual_seed(0)
    data = ddp.data()
    vae = VAE(latent_dim=3, hidden=(16,))
    module = SVIModule(vae.model, vae.guide, lr=1e-2)
    trainer = _trainer(max_epochs=2)
    trainer.fit(
        module, DataLoader(TensorDataset(data), batch_size=20), DataLoader(TensorDataset(data[:60]), batch_size=25)
    )
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert {"train_elbo", "val_elbo", "val_kl", "val_mi", "val_active_units"} <= set(logged)
    with pyro.validation_enabled(False):
        diagnostics = collapse_diagnostics(vae.model, vae.guide, data[:60])
        elbo = evaluate_dataset(vae.model, vae.guide, data[:60])["elbo"]
    assert logged["val_kl"] == pytest.approx(diagnostics["kl"], rel=1e-5)  # closed form: the same number
    assert logged["val_active_units"] == diagnostics["active_units"]
    assert 0 <= logged["val_mi"] <= math.log(60) + 1e-6  # one draw per example: a fresh estimate, capped at log N
    assert logged["val_elbo"] == pytest.approx(elbo, abs=3.0)  # Monte Carlo: 60 images, one draw each


def test_setting_an_attribute_registers_what_nn_module_registers():
    """SVIModule's short way for plain values (Lightning's ``_current_fx_name``) leaves nn.Module's
    registration of parameters, modules and buffers, and its other attributes, as they were."""
    from pyrogen.lightning import SVIModule
    from pyrogen.models import VAE

    vae = VAE(latent_dim=2, hidden=(4,))
    module = SVIModule(vae.model, vae.guide)
    module._current_fx_name = "training_step"  # a plain value under a plain attribute: the short way
    assert module._current_fx_name == "training_step" and "_current_fx_name" in module.__dict__
    module._current_fx_name = None
    assert module._current_fx_name is None
    module.lr = 0.5
    assert module.lr == 0.5
    module.extra = torch.nn.Parameter(torch.ones(2))  # new names go through nn.Module: registered
    module.head = torch.nn.Linear(2, 2)
    module.register_buffer("scale", torch.ones(1))
    module.scale = torch.zeros(1)  # a buffer stays a buffer
    names = dict(module.named_parameters())
    assert "extra" in names and "head.weight" in names
    assert "extra" not in module.__dict__ and "head" not in module.__dict__
    assert dict(module.named_buffers())["scale"].item() == 0.0 and "scale" not in module.__dict__
    module.lr = torch.nn.Parameter(torch.ones(1))  # a plain attribute given a Parameter becomes a parameter
    assert "lr" in dict(module.named_parameters()) and "lr" not in module.__dict__


def _fit_steps(module, data, **trainer_options):
    from torch.utils.data import DataLoader

    trainer = _trainer(**trainer_options)
    trainer.fit(module, DataLoader(data, batch_size=20))
    return trainer


def test_a_recorded_step_under_lightning_is_the_eager_step_bit_for_bit(one_thread):
    """compile='record' replays the step's tensor operations: after 4 steps (recorded at the first, checked
    eagerly by the guard at the 2nd and 3rd, replayed unchecked at the 4th) the parameters are the eager
    module's to the bit."""
    import pyro

    from pyrogen.infer import RecordedLoss
    from pyrogen.lightning import SVIModule
    from pyrogen.models import VAE

    data, trained = ddp.data(), {}  # 80 images: 4 steps of 20
    for compile in ("off", "record"):
        torch.manual_seed(0)
        vae = VAE(latent_dim=3, hidden=(16,))
        module = SVIModule(vae.model, vae.guide, lr=1e-2, compile=compile, site=None)
        pyro.set_rng_seed(1)
        _fit_steps(module, data)
        trained[compile] = [p.detach().clone() for p in module.parameters()]
        assert isinstance(module._training_loss, RecordedLoss) == (compile == "record")
        assert not any("_training_loss" in k for k in module.state_dict())  # the checkpoint is the model's
    assert all(torch.equal(a, b) for a, b in zip(trained["off"], trained["record"]))
    assert module._training_loss.calls == 4 and len(module._training_loss._graphs) == 1


def test_a_recorded_step_refuses_mixed_precision_in_one_line(one_thread):
    from pyrogen.lightning import SVIModule
    from pyrogen.models import VAE

    vae = VAE(latent_dim=2, hidden=(4,))
    module = SVIModule(vae.model, vae.guide, compile="record")
    with pytest.raises(ValueError) as raised:
        _fit_steps(module, ddp.data()[:40], precision="bf16-mixed")
    assert str(raised.value) == (
        "SVIModule(compile='record') records the full-precision step; the Trainer's precision='bf16-mixed' "
        "runs it eagerly: give compile='off'"
    )
    with pytest.raises(ValueError, match="compile must be 'off', 'record' or 'on', got 'yes'"):
        SVIModule(vae.model, vae.guide, compile="yes")
