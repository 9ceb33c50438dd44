"""RecordedLoss: the step's graph, recorded once and replayed, is the eager step bit for bit."""

import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import biject_to, constraints

from pyrogen.distributions import FAMILIES, ParameterHead
from pyrogen.distributions.families import lean_transform
from pyrogen.errors import DataError, RecordingError, RecordingMismatchError
from pyrogen.infer import (
    CompiledLoss,
    ELBOModule,
    RecordedLoss,
    ReparamTrace_ELBO,
    ReparamTraceMeanField_ELBO,
    TorchSVI,
)
from pyrogen.infer.compiled_loss import checked_step
from pyrogen.models import VAE
from pyrogen.training import VAETrainer
from tests.training.test_vae import small_config


def _train(compile, x, elbo, steps=4):
    pyro.set_rng_seed(0)
    vae = VAE(latent_dim=4, hidden=(24,))
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-2), elbo(), compile=compile)
    with pyro.validation_enabled(False):
        losses = [svi.step(x) for _ in range(steps)]
        # λ as a 0-d tensor is an input of the graph: two values, one recorded graph.
        losses += [svi.step(x, kl_weight=torch.tensor(w)) for w in (0.2, 0.7)]
    graphs = len(svi.loss_module._graphs) if compile != "off" else None
    return torch.stack(losses), [p.detach().clone() for p in vae.parameters()], torch.rand(3), graphs


@pytest.mark.parametrize("elbo", [ReparamTrace_ELBO, ReparamTraceMeanField_ELBO])
def test_recorded_steps_are_the_eager_steps_bit_for_bit(elbo):
    x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.3))
    eager_losses, eager_params, eager_next, _ = _train("off", x, elbo)
    losses, params, after, graphs = _train("record", x, elbo)
    assert graphs == 2  # λ = 1 (no scale at all) and tensor λ
    assert torch.equal(losses, eager_losses)
    assert all(torch.equal(a, b) for a, b in zip(params, eager_params))
    # The same noise, drawn from the global generator; recording itself draws nothing.
    assert torch.equal(after, eager_next)


@pytest.mark.parametrize("recorder", [RecordedLoss, CompiledLoss])
def test_a_param_store_parameter_is_refused_not_frozen(recorder):
    loc = torch.nn.Linear(1, 1)

    def model(x):
        z = pyro.sample("z", dist.Normal(pyro.param("m", torch.zeros(1)), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(loc(z), 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))

    loss = recorder(ELBOModule(model, guide, ReparamTrace_ELBO(), modules=[loc]))
    with pytest.raises(
        RecordingError,
        match=r"^the loss uses a tensor that needs a gradient but is not a "
        r"parameter or buffer of the loss module \(shape \(1,\)\)",
    ):
        loss(torch.zeros(1))
    assert issubclass(RecordingError, ValueError)  # what CompiledLoss raised before RecordingError existed


def test_a_loss_whose_python_changes_between_calls_is_refused():
    class Counting(torch.nn.Module):
        """Its loss depends on how often it was called: the recording cannot reproduce it."""

        def __init__(self):
            super().__init__()
            self.lin, self.calls = torch.nn.Linear(3, 1), 0

        def forward(self, x):
            self.calls += 1
            return self.lin(x).sum() * self.calls

    with pytest.raises(
        RecordingError,
        match=r"^the recorded graph returned .* where the module returned .* on "
        r"the same draws; the loss's Python code depends on more than its "
        r"inputs' shapes\. Train without recording \(compile off\)$",
    ):
        RecordedLoss(Counting())(torch.ones(2, 3))


def test_a_loss_that_cannot_be_recorded_says_why_in_one_line():
    class HostRead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)

        def forward(self, x):
            y = self.lin(x).sum()
            return y * 2 if y.item() > 0 else y  # a branch on a value

    with pytest.raises(
        RecordingError,
        match=r"^could not record the loss as a graph \(RuntimeError: It appears "
        r"that you're trying to get value out of a tracing tensor with "
        r"aten\.item\.default - erroring out!.*\); train without recording "
        r"\(compile off\)$",
    ):
        RecordedLoss(HostRead())(torch.ones(2, 3))


def test_torch_svi_refuses_an_unknown_compile_value():
    vae = VAE(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"^compile must be 'off', 'record' or 'on', got 'fast'$"):
        TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters()), ReparamTrace_ELBO(), compile="fast")
    with pytest.raises(
        ValueError, match=r"^compile must be 'off', 'record' or 'on', got 'auto' \('auto' is the trainer's choice"
    ):
        TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters()), ReparamTrace_ELBO(), compile="auto")
    with pytest.raises(ValueError, match=r"^compile must be 'off', 'record' or 'on', got 1$"):
        TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters()), ReparamTrace_ELBO(), compile=1)


@pytest.mark.parametrize("flag, word", [(False, "off"), (True, "on")])
def test_torch_svi_reads_the_booleans_of_earlier_code_with_a_deprecation_warning(flag, word):
    vae = VAE(latent_dim=2, hidden=(8,))
    optim = torch.optim.Adam(vae.parameters())
    with pytest.warns(DeprecationWarning, match=rf"^TorchSVI\(compile={flag}\) is deprecated; give compile='{word}'$"):
        old = TorchSVI(vae.model, vae.guide, optim, ReparamTrace_ELBO(), compile=flag)
    new = TorchSVI(vae.model, vae.guide, optim, ReparamTrace_ELBO(), compile=word)
    assert type(old.loss_module) is type(new.loss_module)


def _trainer(compile, x):
    config = small_config(compile=compile)
    config["train"].update(batch_size=10, epochs=2)
    pyro.set_rng_seed(0)
    return VAETrainer(VAE(**config["model"]), x, x, config, progress=False)


def test_auto_records_short_runs_and_trains_exactly_as_the_eager_trainer():
    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    eager = _trainer("off", x)  # each trainer seeds the global generator when built
    eager.fit(2)
    auto = _trainer("auto", x)
    auto.fit(2)
    assert auto.compile == "record" and type(auto.svi.loss_module) is RecordedLoss
    assert [row["train_elbo"] for row in auto.metrics] == [row["train_elbo"] for row in eager.metrics]
    assert all(torch.equal(a, b) for a, b in zip(auto.vae.parameters(), eager.vae.parameters()))


def test_auto_falls_back_to_eager_in_one_line_when_recording_fails(monkeypatch, capsys):
    from pyrogen.infer import compiled_loss

    def refuse(*args, **kwargs):
        raise RuntimeError("data-dependent control flow\nmore detail")

    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    eager = _trainer("off", x)  # each trainer seeds the global generator when built
    eager.fit(1)
    monkeypatch.setattr(compiled_loss, "make_fx", refuse)
    auto = _trainer("auto", x)
    auto.progress = True
    capsys.readouterr()
    auto.fit(1)
    notes = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "pyrogen:" in line]
    assert notes == [
        "pyrogen: --compile auto: could not record the loss as a graph (RuntimeError: "
        "data-dependent control flow); training eagerly"
    ]
    assert auto.compile == "off"
    assert auto.metrics[0]["train_elbo"] == eager.metrics[0]["train_elbo"]
    assert all(torch.equal(a, b) for a, b in zip(auto.vae.parameters(), eager.vae.parameters()))


def test_record_with_aggressive_training_is_refused():
    config = small_config(compile="record", aggressive=True, validation_size=10)
    config["train"]["batch_size"] = 10
    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    with pytest.raises(
        DataError, match=re.escape("--compile record applies to the standard SVI step; drop --compile or --aggressive")
    ):
        VAETrainer(VAE(**config["model"]), x, x, config, validation_data=x[:10], progress=False)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parameter_heads_lean_transforms_equal_torchs_bit_for_bit(family):
    torch.manual_seed(0)
    head = ParameterHead(16, family, 3)
    h = 4 * torch.randn(50, 16)
    lean = head(h)
    for name, layer in head.layers.items():
        full = head.transforms[name](layer(h).reshape(h.shape[:-1] + head.shapes[name]))
        assert torch.equal(lean[name], full), name


def test_lean_transform_leaves_out_only_no_op_steps():
    assert lean_transform(biject_to(constraints.positive)) is torch.exp  # exp, then + 0 and * 1: just exp
    x = torch.linspace(-30, 30, 601)
    for constraint in (
        constraints.real,
        constraints.positive,
        constraints.greater_than(2.0),
        constraints.interval(-1.0, 3.0),
        constraints.unit_interval,
    ):
        transform = biject_to(constraint)
        assert torch.equal(lean_transform(transform)(x), transform(x)), constraint


# --- the guard: chosen calls of a recorded loss repeated eagerly on the same draws ---------------------


def test_the_guard_checks_calls_2_3_10_100_and_every_1000th():
    assert [step for step in range(1, 5001) if checked_step(step)] == [2, 3, 10, 100, 1000, 2000, 3000, 4000, 5000]


@pytest.mark.parametrize("elbo", [ReparamTrace_ELBO, ReparamTraceMeanField_ELBO])
def test_guarded_steps_draw_nothing_and_stay_the_eager_steps(elbo):
    # 12 recorded calls, four of them (2, 3, 10 and the recording's own check) repeated eagerly: the losses,
    # the parameters and the generator's next numbers are the eager run's to the bit
    x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.3))
    eager_losses, eager_params, eager_next, _ = _train("off", x, elbo, steps=10)
    losses, params, after, _ = _train("record", x, elbo, steps=10)
    assert torch.equal(losses, eager_losses)
    assert all(torch.equal(a, b) for a, b in zip(params, eager_params))
    assert torch.equal(after, eager_next)


class ListAnnealed(torch.nn.Module):
    """A user's KL annealing that reads the weight from a Python list: a recording keeps the first value."""

    def __init__(self, weights):
        super().__init__()
        self.vae, self.weights = VAE(latent_dim=4, hidden=(24,)), weights

    def model(self, x):
        return self.vae.model(x, kl_weight=self.weights[0])

    def guide(self, x):
        return self.vae.guide(x, kl_weight=self.weights[0])


def _annealed_run(compile, x):
    """Three steps at KL weights 0.5, 0.01, 0.01 read from a list; after a RecordingMismatchError the step is
    retaken eagerly (what the trainer does). Returns the losses, the parameters and the error (if any)."""
    pyro.set_rng_seed(0)
    weights = [0.5]
    annealed = ListAnnealed(weights)
    optim = torch.optim.Adam(annealed.parameters(), lr=1e-2)
    svi = TorchSVI(annealed.model, annealed.guide, optim, ReparamTrace_ELBO(), compile=compile)
    losses, error = [], None
    with pyro.validation_enabled(False):
        for w in (0.5, 0.01, 0.01):
            weights[0] = w
            try:
                losses.append(svi.step(x))
            except RecordingMismatchError as e:
                error = e
                svi = TorchSVI(annealed.model, annealed.guide, optim, ReparamTrace_ELBO())
                losses.append(svi.step(x))
    return torch.stack(losses), [p.detach().clone() for p in annealed.parameters()], torch.rand(3), error


@pytest.mark.filterwarnings("ignore:.*not registered in the param store")
def test_a_weight_read_from_a_python_list_is_caught_at_the_next_checked_call():
    # Before: the recorded run replayed λ = 0.5 at every step and returned another loss than the eager run,
    # silently. Now call 2 is repeated eagerly, disagrees, raises, and leaves the step untaken.
    x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.3))
    eager_losses, eager_params, eager_next, no_error = _annealed_run("off", x)
    losses, params, after, error = _annealed_run("record", x)
    assert no_error is None
    assert re.fullmatch(
        r"at call 2 the recorded loss returned \S+ where the model's Python code returned \S+ on the same draws "
        r"\(it reads a Python value that changed since it was recorded, such as a weight from a list or a "
        r"global, which the recording replays as a constant\); pass such values as tensor arguments "
        r"\(kl_weight=torch.tensor\(w\)\), or train without recording \(compile off\)",
        str(error),
    )
    assert isinstance(error, RecordingError)
    # the step retaken eagerly continues the eager run exactly: nothing was drawn or updated by the check
    assert torch.equal(losses, eager_losses)
    assert all(torch.equal(a, b) for a, b in zip(params, eager_params))
    assert torch.equal(after, eager_next)


def test_compiled_loss_agreement_allows_rounding_not_a_stale_constant():
    assert CompiledLoss._agrees(None, torch.tensor(1844.5), torch.tensor(1844.5 * (1 + 1e-6)))
    assert not CompiledLoss._agrees(None, torch.tensor(55.15), torch.tensor(1844.5))
    assert not RecordedLoss._agrees(None, torch.tensor(1844.5), torch.tensor(1844.5 * (1 + 1e-6)))
    nan = torch.tensor(float("nan"))
    assert RecordedLoss._agrees(None, nan, nan) and CompiledLoss._agrees(None, nan, nan)  # a NaN loss replays NaN
    assert not RecordedLoss._agrees(None, nan, torch.tensor(1.0))


@pytest.mark.parametrize("mode", ["record", "auto"])
def test_the_trainer_continues_eagerly_in_one_line_after_a_mismatch(monkeypatch, capsys, mode):
    x = torch.bernoulli(torch.full((40, 1, 28, 28), 0.3))
    eager = _trainer("off", x)  # each trainer seeds the global generator when built
    eager.fit(1)
    # a stale recording, as a list-read weight would give: every checked call disagrees
    monkeypatch.setattr(RecordedLoss, "_agrees", lambda self, replayed, eager: False)
    recorded = _trainer(mode, x)
    recorded.progress = True
    capsys.readouterr()
    recorded.fit(1)
    notes = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "pyrogen:" in line]
    assert len(notes) == 1 and re.fullmatch(
        rf"pyrogen: --compile {mode}: at call 2 the recorded loss returned "
        r"\S+ where the model's Python code returned \S+ on the same draws "
        r"\(.*\); training eagerly",
        notes[0],
    ), notes
    assert recorded.compile == "off"
    assert recorded.metrics[0]["train_elbo"] == eager.metrics[0]["train_elbo"]
    assert all(torch.equal(a, b) for a, b in zip(recorded.vae.parameters(), eager.vae.parameters()))
