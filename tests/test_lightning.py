"""pyrogen.lightning: the SVIModule under Lightning's DDP takes TorchSVI's steps; its metrics are pyrogen's."""

import json
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


def reference_losses():
    """TorchSVI in one process on the same data, model, seed and global batches as the DDP run."""
    ae = ddp.autoencoder()
    svi = TorchSVI(ae.model, ae.guide, torch.optim.Adam(ae.parameters(), lr=ddp.LR), ReparamTrace_ELBO())
    data, losses = ddp.data(), []
    for _ in range(ddp.EPOCHS):
        for i in range(0, data.shape[0], ddp.GLOBAL_BATCH):
            losses.append(svi.step(data[i : i + ddp.GLOBAL_BATCH]).item())
    return losses, [p.detach().sum().item() for p in ae.parameters()]


def test_ddp_on_two_cpu_processes_takes_torchsvis_steps(tmp_path, one_thread):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(ROOT / "tests" / "lightning_ddp_run.py"), str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(out.read_text())
    expected, params = reference_losses()
    assert run["world_size"] == 2
    assert len(run["losses"]) == len(expected) == 8
    assert run["losses"] == pytest.approx(expected, rel=LOSS_RTOL)
    assert expected[-1] < expected[0]  # it trained
    assert run["params"] == pytest.approx(params, rel=1e-4, abs=1e-5)
    # the logged ELBO: the last epoch's per-example mean over both processes, nats
    last_epoch = expected[len(expected) // 2:]
    assert run["train_elbo"] == pytest.approx(-sum(last_epoch) / 80, rel=LOSS_RTOL)
