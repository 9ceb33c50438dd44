"""Where pyrogen's estimators and checks differed from Pyro without saying so: each case failed before its fix."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrogen.infer import IWAE_ELBO, ReparamTrace_ELBO, ReparamTraceMeanField_ELBO, TorchSVI

ELBOS = [Trace_ELBO, ReparamTrace_ELBO, ReparamTraceMeanField_ELBO]


def _pair(obs_loc=0.0):
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z + obs_loc, 1.0, validate_args=False), obs=torch.tensor(0.5))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.2))
        pyro.sample("z", dist.Normal(loc, 1.0))

    return model, guide


# --- Trace_ELBO's keywords ------------------------------------------------------------------------


@pytest.mark.parametrize("Elbo", ELBOS)
def test_trace_elbo_keywords_are_accepted(Elbo):
    # before: TypeError for each keyword
    elbo = Elbo(
        num_particles=2,
        max_plate_nesting=1,
        vectorize_particles=False,
        retain_graph=True,
        strict_enumeration_warning=False,
        jit_options={"check_trace": False},
        ignore_jit_warnings=True,
    )
    assert elbo.retain_graph is True and elbo.num_particles == 2


@pytest.mark.parametrize("Elbo", ELBOS)
@pytest.mark.parametrize("retain_graph", [None, True])
def test_retain_graph_is_honoured(Elbo, retain_graph):
    # A tensor computed once from a parameter and shared by two loss_and_grads calls: the second backward
    # goes through the first call's graph, which only retain_graph=True keeps (as in Trace_ELBO).
    raw = torch.tensor(0.3, requires_grad=True)
    scale = raw.exp()  # exp saves its result for the backward pass

    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.0)), scale))

    elbo = Elbo(retain_graph=retain_graph)
    elbo.loss_and_grads(model, guide)
    if retain_graph:
        elbo.loss_and_grads(model, guide)
        assert raw.grad is not None and torch.isfinite(raw.grad)
    else:
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            elbo.loss_and_grads(model, guide)


# --- NaN warnings and loss() ----------------------------------------------------------------------


@pytest.mark.parametrize("Elbo", ELBOS)
@pytest.mark.parametrize("method", ["differentiable_loss", "loss", "loss_and_grads"])
def test_nan_loss_warns_without_validation(Elbo, method):
    # Trace_ELBO warns of a NaN loss whatever the validation; ReparamTrace_ELBO did only under validation
    model, guide = _pair(obs_loc=float("nan"))
    with pyro.validation_enabled(False), pytest.warns(UserWarning, match="^Encountered NaN: loss$"):
        getattr(Elbo(), method)(model, guide)


@pytest.mark.parametrize("compile", ["off", "record"])
def test_torch_svi_step_warns_of_a_nan_loss_as_svi_does(compile):
    # pyro.infer.SVI(..., Trace_ELBO()).step warns "Encountered NaN: loss" whatever the validation; so does
    # TorchSVI's step on the CPU, once per step, recorded or not (on a GPU only under validation)
    model, guide = _pair(obs_loc=float("nan"))

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.tensor(0.2))

        def model(self):
            model()

        def guide(self):
            pyro.sample("z", dist.Normal(self.loc, 1.0))

    pair = Pair()
    svi = TorchSVI(
        pair.model,
        pair.guide,
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
        ReparamTrace_ELBO(),
        compile=compile,
    )
    for validation in (False, True, False):
        with pyro.validation_enabled(validation), warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert torch.isnan(svi.step())
        assert [str(w.message) for w in record].count("Encountered NaN: loss") == 1, validation


@pytest.mark.parametrize(
    "Elbo, Reference",
    [(Trace_ELBO, Trace_ELBO), (ReparamTrace_ELBO, Trace_ELBO), (ReparamTraceMeanField_ELBO, TraceMeanField_ELBO)],
)
def test_loss_lets_the_model_call_autograd(Elbo, Reference):
    # A model whose likelihood uses a gradient it computes itself (a score, an energy's force): Trace_ELBO's
    # loss() runs it; ReparamTrace_ELBO.loss ran under torch.no_grad and failed in torch.autograd.grad
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        y = torch.tensor(0.7, requires_grad=True)
        (force,) = torch.autograd.grad((y * z) ** 2, y, create_graph=True)
        pyro.sample("x", dist.Normal(force, 1.0), obs=torch.tensor(0.5))

    def guide():
        pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.2)), 1.0))

    pyro.set_rng_seed(3)
    value = Elbo().loss(model, guide)
    pyro.set_rng_seed(3)
    expected = Reference().loss(model, guide)
    assert isinstance(value, float) and value == pytest.approx(expected, rel=1e-6)


# --- IWAE_ELBO with a plate of another name ----------------------------------------------------------


def test_iwae_with_a_plate_not_named_data_names_the_option():
    # Before: "a latent shared by all examples", which this latent is not, and no word of data_plate=
    def model(x):
        with pyro.plate("batch", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("batch", x.shape[0]):
            pyro.sample("z", dist.Normal(pyro.param("loc", torch.zeros(x.shape[0])), 1.0))

    x = torch.tensor([0.1, -0.4, 1.2])
    with pytest.raises(ValueError) as info:
        IWAE_ELBO(num_particles=3, max_plate_nesting=1).loss(model, guide, x)
    assert str(info.value) == (
        "IWAE_ELBO bounds each element of pyro.plate('data') separately, but site 'z' is not inside that plate "
        "(its plates: ['batch']); name the plate over the examples with IWAE_ELBO(data_plate=...), or, for a "
        "latent shared by all examples (no per-example bound), use pyro.infer.RenyiELBO(alpha=0)"
    )
    # named, it is the per-example bound: here RenyiELBO(alpha=0)'s, as every site is in the plate
    pyro.set_rng_seed(2)
    ours = IWAE_ELBO(num_particles=3, max_plate_nesting=1, data_plate="batch").loss(model, guide, x)
    pyro.set_rng_seed(2)
    renyi = pyro.infer.RenyiELBO(alpha=0, num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    assert ours == pytest.approx(renyi.loss(model, guide, x), rel=1e-6)
