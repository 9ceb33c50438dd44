"""Cases of Pyro's own ELBO test suites, run against ReparamTrace_ELBO and compared with Trace_ELBO.

Each case follows a test of pyro-ppl/pyro ``tests/infer/`` (named in its
comment), written with reparameterized sites where Pyro's uses discrete ones.
Every case either gives exactly Trace_ELBO's loss and gradients on the same
random draws (``assert_same``), or raises the same error as Trace_ELBO
(``assert_same_error``), or is refused by ReparamTrace_ELBO with its documented
error (``assert_refused``: a guide site that is not reparameterized).
"""

import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.distributions.testing.rejection_gamma import ShapeAugmentedGamma
from pyro.infer import Trace_ELBO
from torch.distributions import constraints

from pyrogen.infer import ReparamTrace_ELBO, ReparamTraceMeanField_ELBO

pytestmark = pytest.mark.filterwarnings("ignore:.*Guessed max_plate_nesting")


def _loss_and_grads(Elbo, model, guide, args, seed, elbo_kwargs):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    loss = Elbo(**elbo_kwargs).differentiable_loss(model, guide, *args)
    params = dict(pyro.get_param_store().named_parameters())
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        return float(loss), {}
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return loss.item(), {k: g for k, g in zip(params, grads) if g is not None}


def assert_same(model, guide, *args, seed=0, **elbo_kwargs):
    """ReparamTrace_ELBO's loss and gradients equal Trace_ELBO's on the same draws (1e-6 relative)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # like Pyro's assert_ok: no warning either
        expected, expected_grads = _loss_and_grads(Trace_ELBO, model, guide, args, seed, elbo_kwargs)
        actual, actual_grads = _loss_and_grads(ReparamTrace_ELBO, model, guide, args, seed, elbo_kwargs)
    assert actual == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert actual_grads.keys() == expected_grads.keys()
    for name in expected_grads:
        torch.testing.assert_close(actual_grads[name], expected_grads[name], rtol=1e-6, atol=1e-6)
    with pyro.validation_enabled(False):  # the training loop's setting: sites recorded by SiteRecorder
        assert_bitwise_same(
            _loss_and_grads(ReparamTrace_ELBO, model, guide, args, seed, elbo_kwargs), (actual, actual_grads)
        )
        assert_meanfield_same(model, guide, args, seed, elbo_kwargs)
    return actual


def assert_bitwise_same(first, second):
    """The same loss and the same gradients (names and every element) to the bit."""
    (loss1, grads1), (loss2, grads2) = first, second
    assert loss1 == loss2 and grads1.keys() == grads2.keys()
    for name in grads1:
        assert torch.equal(grads1[name], grads2[name]), name


def assert_meanfield_same(model, guide, args, seed, elbo_kwargs):
    """ReparamTraceMeanField_ELBO without validation (sites recorded by SiteRecorder) gives its loss and
    gradients under validation to the bit on the same case, or raises the same error."""
    try:
        with pyro.validation_enabled(True), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the mean-field order warning, say: not what is compared here
            expected = _loss_and_grads(ReparamTraceMeanField_ELBO, model, guide, args, seed, elbo_kwargs)
    except Exception as error:  # noqa: BLE001 - whatever it raises validated, it raises unvalidated too
        with pytest.raises(type(error)):
            _loss_and_grads(ReparamTraceMeanField_ELBO, model, guide, args, seed, elbo_kwargs)
        return
    assert_bitwise_same(_loss_and_grads(ReparamTraceMeanField_ELBO, model, guide, args, seed, elbo_kwargs), expected)


def assert_same_error(model, guide, match, *args, **elbo_kwargs):
    for Elbo in (Trace_ELBO, ReparamTrace_ELBO):
        pyro.clear_param_store()
        with pytest.raises((ValueError, RuntimeError, NotImplementedError), match=match):
            Elbo(**elbo_kwargs).differentiable_loss(model, guide, *args)


def assert_same_warning(model, guide, match, *args, **elbo_kwargs):
    for Elbo in (Trace_ELBO, ReparamTrace_ELBO):
        pyro.clear_param_store()
        with pytest.warns(UserWarning, match=match):
            Elbo(**elbo_kwargs).differentiable_loss(model, guide, *args)


def assert_refused(model, guide, site, *args, **elbo_kwargs):
    pyro.clear_param_store()
    with pytest.raises(ValueError, match=f"guide site '{site}' draws from .*not reparameterized"):
        ReparamTrace_ELBO(**elbo_kwargs).differentiable_loss(model, guide, *args)


def normal_guide(*names, shape=()):
    def guide():
        for name in names:
            loc = pyro.param(f"{name}_loc", torch.full(shape, 0.3))
            scale = pyro.param(f"{name}_scale", torch.full(shape, 0.8), constraint=constraints.positive)
            pyro.sample(name, dist.Normal(loc, scale).to_event(len(shape)))

    return guide


# --- tests/infer/test_valid_models.py -------------------------------------------------------------


def test_nonempty_model_empty_guide_ok():  # test_valid_models.py::test_nonempty_model_empty_guide_ok
    def model():
        loc = torch.tensor([0.0, 0.0])
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=torch.tensor([0.5, -1.0]))

    assert assert_same(model, lambda: None) == pytest.approx(
        -dist.Normal(0.0, 1.0).log_prob(torch.tensor([0.5, -1.0])).sum().item()
    )


def test_empty_model_empty_guide_ok():  # test_valid_models.py::test_empty_model_empty_guide_ok
    assert assert_same(lambda: None, lambda: None) == 0.0


def test_variable_clash_in_model_error():  # test_valid_models.py::test_variable_clash_in_model_error
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0))

    assert_same_error(model, normal_guide("x"), "Multiple sample sites named")


def test_variable_clash_in_guide_error():  # test_valid_models.py::test_variable_clash_in_guide_error
    def guide():
        pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0))

    assert_same_error(lambda: pyro.sample("x", dist.Normal(0.0, 1.0)), guide, "Multiple sample sites named")


def test_model_guide_dim_mismatch_error():  # test_valid_models.py::test_model_guide_dim_mismatch_error
    def model():
        pyro.sample("x", dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1))

    def guide():
        loc = pyro.param("loc", torch.zeros(2, 1))
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(2))

    assert_same_error(model, guide, "invalid log_prob shape|Model and guide event_dims disagree")


def test_model_guide_shape_mismatch_error():  # test_valid_models.py::test_model_guide_shape_mismatch_error
    def model():
        pyro.sample("x", dist.Normal(torch.zeros(1, 2), torch.ones(1, 2)).to_event(2))

    def guide():
        loc = pyro.param("loc", torch.zeros(2, 1))
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(2))

    assert_same_error(model, guide, "Model and guide shapes disagree")


def test_batched_site_without_plate_is_pyros_shape_error():
    # test_valid_models.py::test_nested_plate_plate_dim_error_1 (a batched site with no plate and no
    # .to_event): before the fix ReparamTrace_ELBO summed it and returned a number.
    def model():
        pyro.sample("x", dist.Normal(torch.zeros(3), 1.0))

    assert_same_error(model, model, 'at site "x", invalid log_prob shape\n  Expected \\[\\], actual \\[3\\]')


@pytest.mark.parametrize("has_rsample", [True, False])
def test_set_has_rsample(has_rsample):  # test_valid_models.py::test_set_has_rsample_ok
    def model():
        z = pyro.sample("z", dist.Normal(0, 1))
        pyro.sample("x", dist.Normal((z * 100).clamp(min=0, max=1), 1), obs=torch.tensor(0.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.sample("z", dist.Normal(loc, 1).has_rsample_(has_rsample))

    if has_rsample:
        assert_same(model, guide)
    else:
        assert_refused(model, guide, "z")


def test_not_has_rsample_refused():  # test_valid_models.py::test_not_has_rsample_ok
    def model():
        z = pyro.sample("z", dist.Normal(0, 1))
        pyro.sample("x", dist.Bernoulli(z.round().clamp(min=0.2, max=0.8)), obs=torch.tensor(0.0))

    def guide():
        pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.0)), 1).has_rsample_(False))

    assert_refused(model, guide, "z")


@pytest.mark.parametrize("subsample_size", [None, 2], ids=["full", "subsample"])
def test_iplate_ok(subsample_size):  # test_valid_models.py::test_iplate_ok
    def model():
        for i in pyro.plate("plate", 4, subsample_size):
            pyro.sample(f"x_{i}", dist.Normal(0.0, 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.5))
        for i in pyro.plate("plate", 4, subsample_size):
            pyro.sample(f"x_{i}", dist.Normal(loc, 1.0))

    assert_same(model, guide)


def test_iplate_variable_clash_error():  # test_valid_models.py::test_iplate_variable_clash_error
    def model():
        for _ in pyro.plate("plate", 2):
            pyro.sample("x", dist.Normal(0.0, 1.0))

    assert_same_error(model, model, "Multiple sample sites named")


@pytest.mark.parametrize("subsample_size", [None, 5], ids=["full", "subsample"])
def test_plate_ok(subsample_size):  # test_valid_models.py::test_plate_ok
    def model():
        with pyro.plate("plate", 10, subsample_size) as ind:
            pyro.sample("x", dist.Normal(0.0, 1.0).expand_by([len(ind)]))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.5))
        with pyro.plate("plate", 10, subsample_size) as ind:
            pyro.sample("x", dist.Normal(loc, 1.0).expand_by([len(ind)]))

    assert_same(model, guide)


@pytest.mark.parametrize("subsample_size", [None, 5], ids=["full", "subsample"])
def test_plate_subsample_param_ok(subsample_size):  # test_valid_models.py::test_plate_subsample_param_ok
    def model():
        with pyro.plate("plate", 10, subsample_size):
            pyro.sample("x", dist.Normal(0.0, 1.0))

    def guide():
        with pyro.plate("plate", 10, subsample_size) as ind:
            loc = pyro.param("loc", torch.linspace(-1, 1, 10), event_dim=0)
            assert len(loc) == len(ind)
            pyro.sample("x", dist.Normal(loc, 1.0))

    assert_same(model, guide)


def test_plate_no_size_ok():  # test_valid_models.py::test_plate_no_size_ok
    def model():
        with pyro.plate("plate"):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand_by([10]))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.5))
        with pyro.plate("plate"):
            pyro.sample("x", dist.Normal(loc, 1.0).expand_by([10]))

    assert_same(model, guide)


@pytest.mark.parametrize("max_plate_nesting", [0, float("inf")])
def test_iplate_iplate_swap_ok(max_plate_nesting):  # test_valid_models.py::test_iplate_iplate_swap_ok
    def model():
        outer, inner = pyro.plate("plate_0", 3, 2), pyro.plate("plate_1", 3, 2)
        for i in outer:
            for j in inner:
                pyro.sample(f"x_{i}_{j}", dist.Normal(0.0, 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.5))
        outer, inner = pyro.plate("plate_0", 3, 2), pyro.plate("plate_1", 3, 2)
        for j in inner:
            for i in outer:
                pyro.sample(f"x_{i}_{j}", dist.Normal(loc, 1.0))

    assert_same(model, guide, max_plate_nesting=max_plate_nesting)


def test_iplate_in_guide_not_model_warning():  # test_valid_models.py::test_iplate_in_guide_not_model_error
    def guide():
        for _ in pyro.plate("plate", 10):
            pass
        pyro.sample("x", dist.Normal(0.0, 1.0))

    assert_same_warning(
        lambda: pyro.sample("x", dist.Normal(0.0, 1.0)), guide, "Found plate statements in guide but not model"
    )


def test_plate_broadcast_error():  # test_valid_models.py::test_plate_broadcast_error
    def model():
        with pyro.plate("plate", 10, 5):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand_by([2]))

    assert_same_error(model, model, "Shape mismatch inside plate")


def test_nested_plate_plate_ok():  # test_valid_models.py::test_nested_plate_plate_ok
    def model():
        loc = pyro.param("loc", torch.tensor(0.2))
        with pyro.plate("plate_outer", 10, 5) as ind_outer:
            pyro.sample("x", dist.Normal(loc, 1.0).expand_by([len(ind_outer)]))
            with pyro.plate("plate_inner", 11, 6) as ind_inner:
                pyro.sample("y", dist.Normal(loc, 1.0).expand_by([len(ind_inner), len(ind_outer)]))

    assert_same(model, model)


def test_plate_reuse_ok():  # test_valid_models.py::test_plate_reuse_ok
    def model():
        loc = pyro.param("loc", torch.tensor(0.2))
        plate_outer = pyro.plate("plate_outer", 10, 5, dim=-1)
        plate_inner = pyro.plate("plate_inner", 11, 6, dim=-2)
        with plate_outer as ind_outer:
            pyro.sample("x", dist.Normal(loc, 1.0).expand_by([len(ind_outer)]))
        with plate_inner as ind_inner:
            pyro.sample("y", dist.Normal(loc, 1.0).expand_by([len(ind_inner), 1]))
        with plate_outer as ind_outer, plate_inner as ind_inner:
            pyro.sample("z", dist.Normal(loc, 1.0).expand_by([len(ind_inner), len(ind_outer)]))

    assert_same(model, model)


@pytest.mark.parametrize("case", [1, 2])
def test_nested_plate_plate_dim_error(case):  # test_valid_models.py::test_nested_plate_plate_dim_error_1, _2
    def model():
        with pyro.plate("plate_outer", 10, 5) as ind_outer:
            shape = [len(ind_outer)] if case == 1 else [len(ind_outer), 1]
            pyro.sample("x", dist.Normal(torch.zeros(1), 1.0).expand_by(shape))
            with pyro.plate("plate_inner", 11, 6) as ind_inner:
                pyro.sample("y", dist.Normal(torch.zeros(1), 1.0).expand_by([len(ind_inner)]))

    assert_same_error(model, model, "invalid log_prob shape")


def test_nonnested_plate_plate_ok():  # test_valid_models.py::test_nonnested_plate_plate_ok
    def model():
        loc = pyro.param("loc", torch.tensor(0.2))
        with pyro.plate("plate_0", 10, 5) as ind1:
            pyro.sample("x0", dist.Normal(loc, 1.0).expand_by([len(ind1)]))
        with pyro.plate("plate_1", 11, 6) as ind2:
            pyro.sample("x1", dist.Normal(loc, 1.0).expand_by([len(ind2)]))

    assert_same(model, model)


def test_enum_misuse_warning():  # test_valid_models.py::test_enum_discrete_misuse_warning
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("z", dist.Normal(0.0, 1.0), infer={"enumerate": "parallel"})

    assert_same_warning(model, guide, "If you want to enumerate sites, you need to use TraceEnum_ELBO")


@pytest.mark.parametrize("num_particles", [1, 10])
def test_vectorized_num_particles(num_particles):  # test_valid_models.py::test_vectorized_num_particles
    data = torch.ones(20, 2)

    def model():
        with pyro.plate("components", 2):
            p = pyro.sample("p", dist.Beta(torch.tensor(1.1), torch.tensor(1.1)))
            assert p.shape == ((num_particles, 1, 2) if num_particles > 1 else (2,))
            with pyro.plate("data", data.shape[0]):
                pyro.sample("obs", dist.Bernoulli(p), obs=data)

    def guide():
        a = pyro.param("a", torch.tensor(1.5), constraint=constraints.positive)
        with pyro.plate("components", 2):
            pyro.sample("p", dist.Beta(a, torch.tensor(1.1)))

    assert_same(model, guide, num_particles=num_particles, vectorize_particles=True, max_plate_nesting=2)


def test_factor_in_model_ok():  # test_valid_models.py::test_factor_in_model_ok
    assert assert_same(lambda: pyro.factor("f", torch.tensor(0.5)), lambda: None) == -0.5


def test_factor_in_guide_error():  # test_valid_models.py::test_factor_in_guide_error
    assert_same_error(lambda: None, lambda: pyro.factor("f", torch.tensor(0.0)), "missing specification of has_rsample")


@pytest.mark.parametrize("has_rsample", [True, False])
def test_factor_in_guide_ok(has_rsample):  # test_valid_models.py::test_factor_in_guide_ok
    # A factor is an observed site: with has_rsample=False it carries a score-function term, kept
    # as in Trace_ELBO.
    def guide():
        loc = pyro.param("loc", torch.tensor(0.5))
        pyro.factor("f", loc**2, has_rsample=has_rsample)

    assert assert_same(lambda: None, guide) == pytest.approx(0.25)


@pytest.mark.parametrize("num_particles", [1, 3])
@pytest.mark.parametrize("mask", [torch.tensor(True), torch.tensor(False), torch.tensor([False, True, False])])
def test_obs_mask_ok(mask, num_particles):  # test_valid_models.py::test_obs_mask_ok
    data = torch.tensor([7.0, 7.0, 7.0])

    def model():
        x = pyro.sample("x", dist.Normal(0.0, 1.0))
        with pyro.plate("plate", len(data)):
            pyro.sample("y", dist.Normal(x, 1.0), obs=data, obs_mask=mask)

    def guide():
        loc = pyro.param("loc", torch.zeros(()))
        scale = pyro.param("scale", torch.ones(()), constraint=constraints.positive)
        x = pyro.sample("x", dist.Normal(loc, scale))
        with pyro.plate("plate", len(data)), poutine.mask(mask=~mask):
            pyro.sample("y_unobserved", dist.Normal(x, 1.0))

    assert_same(model, guide, num_particles=num_particles, vectorize_particles=True)


@pytest.mark.parametrize("mask", [torch.tensor(True), torch.tensor([False, True])])
def test_reparam_mask_plate_ok(mask):  # test_valid_models.py::test_reparam_mask_plate_ok
    def model():
        with pyro.plate("plate", 2), poutine.mask(mask=mask):
            pyro.sample("x", dist.Normal(0.0, 1.0))

    def guide():
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("plate", 2), poutine.mask(mask=mask):
            pyro.sample("x", dist.Normal(loc, 1.0))

    assert_same(model, guide)


@pytest.mark.parametrize("scale", [1, 0.1, torch.tensor([0.5, 2.0])])
def test_reparam_scale_plate_ok(scale):  # test_valid_models.py::test_reparam_scale_ok, test_reparam_scale_plate_ok
    def model():
        with pyro.plate("plate", 2), poutine.scale(scale=scale):
            pyro.sample("x", dist.Normal(0.0, 1.0))

    assert_same(model, _plate_guide(scale))


def _plate_guide(scale):
    def guide():
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("plate", 2), poutine.scale(scale=scale):
            pyro.sample("x", dist.Normal(loc, 1.0))

    return guide


def test_nan_loss_warns_naming_the_site():  # Trace's validation (Pyro's compute_log_prob), no Pyro test
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(torch.tensor(float("nan")), 1.0, validate_args=False), obs=torch.tensor(0.0))

    for Elbo in (Trace_ELBO, ReparamTrace_ELBO):
        with pytest.warns(UserWarning, match="Encountered NaN") as record:
            Elbo().differentiable_loss(model, normal_guide("z"))
        messages = [str(w.message) for w in record]
        assert any(m.startswith("Encountered NaN: log_prob") and "at site 'x'" in m for m in messages), messages
        assert "Encountered NaN: loss" in messages


# --- tests/infer/test_gradient.py -----------------------------------------------------------------


def _gradient_model_guide(subsample=None):
    data = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.5])

    def model():
        loc = pyro.param("loc", torch.tensor(0.1))
        with pyro.plate("data", len(data), subsample=subsample) as ind:
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide():
        q_loc = pyro.param("q_loc", torch.zeros(len(data)))
        q_scale = pyro.param("q_scale", torch.ones(len(data)) * 0.7, constraint=constraints.positive)
        with pyro.plate("data", len(data), subsample=subsample) as ind:
            pyro.sample("z", dist.Normal(q_loc[ind], q_scale[ind]))

    return model, guide


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("num_particles", [1, 4])
def test_particle_gradient(num_particles, vectorize):  # test_gradient.py::test_particle_gradient
    model, guide = _gradient_model_guide()
    assert_same(model, guide, num_particles=num_particles, vectorize_particles=vectorize)


@pytest.mark.parametrize("vectorize", [False, True])
def test_subsample_gradient(vectorize):  # test_gradient.py::test_subsample_gradient, _sequential
    model, guide = _gradient_model_guide(subsample=torch.tensor([0, 3]))
    assert_same(model, guide, num_particles=3, vectorize_particles=vectorize)


def test_plate_elbo_vectorized_particles():  # test_gradient.py::test_plate_elbo_vectorized_particles
    data = torch.tensor([-0.5, 2.0])

    def model():
        with pyro.plate("data", len(data)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data)

    def guide():
        loc = pyro.param("loc", torch.zeros(len(data)))
        scale = pyro.param("scale", torch.ones(len(data)), constraint=constraints.positive)
        with pyro.plate("data", len(data)):
            pyro.sample("z", dist.Normal(loc, scale))

    assert_same(model, guide, num_particles=7, vectorize_particles=True, max_plate_nesting=1)


# --- tests/infer/test_inference.py ----------------------------------------------------------------


def test_shape_augmented_gamma_gradient_has_score_term():  # test_inference.py::test_exponential_gamma
    # ShapeAugmentedGamma is reparameterized (has_rsample=True) but its rejection step needs a
    # score-function term; before the fix it was dropped and the gradient differed from Trace_ELBO's.
    def model():
        rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Exponential(rate), obs=torch.tensor([0.5, 1.0, 2.0]))

    def guide():
        alpha = pyro.param("alpha", torch.tensor(1.3), constraint=constraints.positive)
        beta = pyro.param("beta", torch.tensor(0.9), constraint=constraints.positive)
        pyro.sample("rate", ShapeAugmentedGamma(alpha, beta))

    for seed in range(3):
        assert_same(model, guide, seed=seed, num_particles=2)


def test_sequential_plating_sum():  # test_inference.py::test_sequential_plating_sum
    def model():
        for i in pyro.plate("outer", 2):
            pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
            with pyro.plate(f"inner_{i}", 3):
                pyro.sample(f"x_{i}", dist.Normal(0.0, 1.0), obs=torch.ones(3))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.3))
        for i in pyro.plate("outer", 2):
            pyro.sample(f"z_{i}", dist.Normal(loc, 1.0))

    assert_same(model, guide)


def test_non_nested_plating_sum():  # test_inference.py::test_non_nested_plating_sum
    def model():
        loc = pyro.param("loc", torch.tensor(0.3))
        with pyro.plate("a", 2):
            pyro.sample("x", dist.Normal(loc, 1.0))
        with pyro.plate("b", 3):
            pyro.sample("y", dist.Normal(loc, 1.0))

    assert_same(model, model)


# --- tests/infer/test_elbo_mapdata.py -------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [5, 20])
def test_elbo_mapdata(batch_size):  # test_elbo_mapdata.py::test_elbo_mapdata
    g = torch.Generator().manual_seed(0)
    data = 1.5 + 0.7 * torch.randn(20, 2, generator=g)
    idx = torch.randperm(20, generator=g)[:batch_size]

    def model():
        loc = pyro.sample("loc", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", len(data), subsample=idx) as ind:
            pyro.sample("obs", dist.Normal(loc, 0.7).to_event(1), obs=data[ind])

    assert_same(model, normal_guide("loc", shape=(2,)), num_particles=2, vectorize_particles=True)


# --- vectorized particles in pyrogen's own loss modules ---------------------------------------


def test_vae_vectorized_particles_eager_and_compiled_equal_trace_elbo():
    # Follows test_valid_models.py::test_vectorized_num_particles with pyrogen's VAE; before the fix
    # ReparamTrace_ELBO(vectorize_particles=True) was a TypeError, in CompiledLoss too.
    from pyrogen.infer import CompiledLoss, ELBOModule
    from pyrogen.models import VAE

    vae = VAE(latent_dim=4, hidden=(24,))
    x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.3))
    kwargs = dict(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    compiled = CompiledLoss(ELBOModule(vae.model, vae.guide, ReparamTrace_ELBO(**kwargs)))
    values = {}
    for name, loss in [
        ("trace", ELBOModule(vae.model, vae.guide, Trace_ELBO(**kwargs))),
        ("eager", ELBOModule(vae.model, vae.guide, ReparamTrace_ELBO(**kwargs))),
        ("compiled", compiled),
    ]:
        pyro.set_rng_seed(3)
        with pyro.validation_enabled(False):
            values[name] = loss(x).item()
    assert values["eager"] == pytest.approx(values["trace"], rel=1e-6)
    assert values["compiled"] == pytest.approx(values["trace"], rel=1e-5)  # fused-kernel rounding
