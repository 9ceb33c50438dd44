"""CompiledLoss: the recorded-and-compiled ELBO computes what the eager ELBO computes.

Each test compiles a small graph with torch.compile (a few seconds on the CPU).
"""

import os
import re
import shutil
import subprocess
import sys

import pyro
import pytest
import torch

from pyrogen.config import AUTO_COMPILE_MIN_STEPS, default_config
from pyrogen.infer import (
    CompiledLoss,
    ELBOModule,
    RecordedLoss,
    ReparamTrace_ELBO,
    ReparamTraceMeanField_ELBO,
    TorchSVI,
)
from pyrogen.models import VAE
from pyrogen.training import VAETrainer
from pyrogen.training.vae import auto_compile
from tests.conftest import requires_fashion_mnist
from tests.training.test_vae import make_trainer, small_config


def _train(compile, x, steps=4, elbo=ReparamTrace_ELBO):
    pyro.set_rng_seed(0)
    vae = VAE(latent_dim=4, hidden=(24,)).to(x.device)
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-2), elbo(), compile=compile)
    with pyro.validation_enabled(False):
        losses = [svi.step(x) for _ in range(steps)]
        # λ as a 0-d tensor is an input of the graph: two values, one compiled graph.
        losses += [svi.step(x, kl_weight=torch.tensor(w, device=x.device)) for w in (0.2, 0.7)]
    return torch.stack(losses), [p.detach().clone() for p in vae.parameters()], torch.rand(3, device=x.device)


@pytest.mark.parametrize("elbo", [ReparamTrace_ELBO, ReparamTraceMeanField_ELBO])
@pytest.mark.parametrize(
    "device, tolerance",
    [
        ("cpu", {"rtol": 1e-4, "atol": 1e-5}),
        pytest.param("cuda", {"rtol": 1e-3, "atol": 1e-4}, marks=pytest.mark.cuda),
    ],
)
def test_compiled_steps_match_eager_steps_and_draw_the_same_noise(device, tolerance, elbo):
    # both estimators of --elbo auto record: the closed-form KL reads no value on the host
    x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.3, device=device))
    eager_losses, eager_params, eager_next = _train("off", x, elbo=elbo)
    compiled_losses, compiled_params, compiled_next = _train("on", x, elbo=elbo)
    # Same random draws (fallback_random), so only fused-kernel rounding differs.
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=tolerance["rtol"] / 10, atol=1e-2)
    for a, b in zip(compiled_params, eager_params):
        torch.testing.assert_close(a, b, **tolerance)
    # Recording ran under a forked random state: the global generator is where eager left it.
    assert torch.equal(compiled_next, eager_next)


def test_loss_changes_with_the_tensor_kl_weight_without_recompiling():
    vae = VAE(latent_dim=4, hidden=(24,))
    loss = CompiledLoss(ELBOModule(vae.model, vae.guide, ReparamTrace_ELBO()))
    x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.3))
    values = []
    for w in (0.1, 1.0):
        pyro.set_rng_seed(5)
        values.append(loss(x, kl_weight=torch.tensor(w)).item())
    assert len(loss._graphs) == 1
    pyro.set_rng_seed(5)
    with pyro.validation_enabled(False):
        eager = ELBOModule(vae.model, vae.guide, ReparamTrace_ELBO())(x, kl_weight=0.1).item()
    assert values[0] == pytest.approx(eager, rel=1e-5)
    assert values[0] != pytest.approx(values[1], rel=1e-3)


def test_signatures_beyond_max_graphs_run_eagerly_with_a_warning():
    lin = torch.nn.Linear(3, 1)

    class Square(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(x).pow(2).sum()

    loss = CompiledLoss(Square(), max_graphs=1)
    x = torch.ones(2, 3)
    torch.testing.assert_close(loss(x), Square()(x))
    with pytest.warns(RuntimeWarning, match="CompiledLoss: more than 1 argument signatures; new ones run eagerly"):
        y = loss(torch.ones(5, 3))
    torch.testing.assert_close(y, Square()(torch.ones(5, 3)))
    assert len(loss._graphs) == 1
    with pytest.raises(ValueError, match="max_graphs must be at least 1, got 0"):
        CompiledLoss(Square(), max_graphs=0)


@requires_fashion_mnist
def test_trainer_with_compile_and_kl_warmup_follows_the_eager_trainer(fashion_mnist_small):
    train, test = fashion_mnist_small
    data = (train.subset(300), test.subset(100))
    results = []
    for compile in ("off", "on"):
        # the same estimator both ways: --elbo auto is meanfield eagerly but trace under compile
        config = small_config(compile=compile, kl_schedule="linear", kl_warmup_epochs=2.0, elbo="trace")
        config["train"]["epochs"] = 1
        trainer = make_trainer(config, data)
        trainer.fit(1)
        results.append((trainer.metrics[0], [p.detach().clone() for p in trainer.vae.parameters()]))
    (eager_row, eager_params), (compiled_row, compiled_params) = results
    assert compiled_row["train_elbo"] == pytest.approx(eager_row["train_elbo"], rel=1e-5)
    for a, b in zip(compiled_params, eager_params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@requires_fashion_mnist
def test_missing_cxx_compiler_is_a_one_line_cli_error(tmp_path):
    # A fresh process, so that no compiler check or compiled graph is cached yet.
    env = dict(
        os.environ,
        CXX="/nonexistent/g++",
        TORCHINDUCTOR_FX_GRAPH_CACHE="0",
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyrogen",
            "train",
            "vae",
            "--out",
            str(tmp_path / "run"),
            "--compile",
            "--epochs",
            "1",
            "--train-size",
            "200",
            "--test-size",
            "100",
            "--latent-dim",
            "2",
            "--hidden",
            "16",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("pyrogen: error:")]
    assert errors == [
        "pyrogen: error: torch.compile could not compile the recorded loss (InvalidCxxCompiler: No working "
        "C++ compiler found in torch._inductor.config.cpp.cxx: (None, '/nonexistent/g++')); on the CPU it "
        "needs a working C++ compiler (e.g. apt-get install g++). Train without compile instead"
    ], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_compile_setting_accepts_modes_and_the_booleans_of_older_runs():
    from pyrogen.config import compile_mode
    from pyrogen.errors import DataError

    assert [compile_mode(v) for v in ("auto", "on", "record", "off", True, False)] == [
        "auto",
        "on",
        "record",
        "off",
        "on",
        "off",
    ]
    assert default_config()["train"]["compile"] == "auto"
    with pytest.raises(DataError, match=r"train.compile must be one of \('auto', 'on', 'record', 'off'\)"):
        compile_mode("fast")


def test_auto_compiles_long_runs_where_a_compiler_works(monkeypatch):
    from pyrogen.training import vae as vae_training

    works = vae_training.compiler_works("cpu")
    assert works == (shutil.which("g++") is not None or shutil.which("c++") is not None)
    n = AUTO_COMPILE_MIN_STEPS
    assert auto_compile(n - 1, "cpu") == "record"  # shorter runs replay the recorded graph
    assert auto_compile(n, "cpu") == ("on" if works else "record")
    assert auto_compile(10 * n, "cpu", blocked=True) == "off"
    monkeypatch.setattr(vae_training, "compiler_works", lambda device: False)
    assert auto_compile(10 * n, "cpu") == "record"


def test_auto_counts_the_runs_steps_and_leaves_blocked_settings_eager(monkeypatch):
    from pyrogen.training import vae as vae_training

    monkeypatch.setattr(vae_training, "compiler_works", lambda device: True)
    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    config = small_config()  # compile "auto"
    config["train"].update(batch_size=10, epochs=2)  # 4 steps per epoch
    trainer = VAETrainer(VAE(**config["model"]), x, x, config, progress=False)
    monkeypatch.setattr(vae_training, "AUTO_COMPILE_MIN_STEPS", 9)
    trainer.fit(2)  # 8 steps: recorded, not compiled
    assert trainer.compile == "record" and type(trainer.svi.loss_module) is RecordedLoss
    monkeypatch.setattr(vae_training, "AUTO_COMPILE_MIN_STEPS", 12)
    monkeypatch.setattr(vae_training.TorchSVI, "step", lambda self, *a, **k: torch.tensor(0.0))
    trainer.fit(3)  # a run of 12 steps: compiled (steps stubbed: only the choice is under test)
    assert trainer.compile == "on" and isinstance(trainer.svi.loss_module, CompiledLoss)
    config["train"].update(aggressive=True)
    aggressive = VAETrainer(VAE(**config["model"]), x, x, config, progress=False)
    assert aggressive.compile_blocked()


@requires_fashion_mnist
def test_auto_falls_back_to_the_eager_run_in_one_line_when_compilation_fails(fashion_mnist_small, monkeypatch, capsys):
    from pyrogen.training import vae as vae_training

    def broken_compile(graph, **options):
        def run(*args):
            raise torch._dynamo.exc.BackendCompilerFailed(
                graph, RuntimeError("InvalidCxxCompiler: No working C++ compiler found"), None
            )

        return run

    train, test = fashion_mnist_small
    data = (train.subset(300), test.subset(100))
    results = []
    for mode in ("off", "auto"):
        config = small_config(compile=mode)
        trainer = make_trainer(config, data)
        trainer.progress = True
        capsys.readouterr()
        with monkeypatch.context() as m:
            m.setattr(vae_training, "AUTO_COMPILE_MIN_STEPS", 1)
            m.setattr(vae_training, "compiler_works", lambda device: True)
            m.setattr(torch, "compile", broken_compile)
            trainer.fit(1)
        results.append((trainer, capsys.readouterr().err))
    (eager, _), (fallback, err) = results
    notes = [line for line in err.replace("\r", "\n").splitlines() if "pyrogen:" in line]
    assert len(notes) == 1 and re.search(
        r"pyrogen: --compile auto: torch.compile could not compile the "
        r"recorded loss \(.*\); training eagerly$",
        notes[0],
    ), err
    assert fallback.compile == "off"
    # Nothing was drawn or updated by the failed attempt: the run is the eager run, bit for bit.
    assert fallback.metrics[0]["train_elbo"] == eager.metrics[0]["train_elbo"]
    for a, b in zip(fallback.vae.parameters(), eager.vae.parameters()):
        assert torch.equal(a, b)
