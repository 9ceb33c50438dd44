"""Cases of Pyro's distribution tests (pyro-ppl/pyro ``tests/distributions/``) for pyrogen's distributions.

Each test names the Pyro test it follows. The distributions are taken at a
few parameter shapes (a scalar batch, a batch, a broadcast batch).
"""

import math

import mpmath
import pytest
import torch
from pyro.distributions import ProjectedNormal as PyroProjectedNormal, TorchDistribution
from pyro.distributions.util import broadcast_shape
from scipy import stats

from pyrogen.distributions.discretized import DiscretizedLogisticMixture, QuantizedCategorical
from pyrogen.distributions.projected_normal import ProjectedNormal
from pyrogen.distributions.rayleigh import Rayleigh


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _cases():
    g = _g()
    return {
        "QuantizedCategorical": [
            dict(logits=torch.randn(8, generator=g)),
            dict(logits=torch.randn(3, 8, generator=g)),
        ],
        "DiscretizedLogisticMixture": [
            dict(
                logits=torch.randn(4, generator=g),
                loc=torch.rand(4, generator=g),
                scale=0.05 + 0.1 * torch.rand(4, generator=g),
                num_levels=16,
            ),
            dict(
                logits=torch.randn(2, 3, generator=g),
                loc=torch.rand(1, 3, generator=g),
                scale=0.05 + 0.1 * torch.rand(3, generator=g),
                num_levels=16,
            ),
        ],
        "ProjectedNormal": [
            dict(concentration=torch.randn(3, generator=g)),
            dict(concentration=torch.randn(4, 2, generator=g)),
            dict(concentration=torch.randn(2, 5, generator=g)),
        ],
        "Rayleigh": [
            dict(scale=torch.tensor(1.5)),
            dict(scale=0.5 + torch.rand(2, 3, generator=g)),
        ],
    }


CLASSES = {
    "QuantizedCategorical": QuantizedCategorical,
    "DiscretizedLogisticMixture": DiscretizedLogisticMixture,
    "ProjectedNormal": ProjectedNormal,
    "Rayleigh": Rayleigh,
}
DISCRETE = {"QuantizedCategorical", "DiscretizedLogisticMixture"}


def instances(name):
    return [CLASSES[name](**params) for params in _cases()[name]]


names = pytest.mark.parametrize("name", sorted(CLASSES))


def _log_prob_shape(d, x_size=torch.Size()):
    shape = broadcast_shape(d.shape(), x_size, strict=True)
    return shape[: len(shape) - len(d.event_shape)]


@names
def test_support_shape(name):  # test_distributions.py::test_support_shape
    for d in instances(name):
        assert d.support.event_dim == d.event_dim
        x = d.sample((2,))
        ok = d.support.check(x)
        assert ok.shape == broadcast_shape(d.batch_shape, x.shape[: x.dim() - d.event_dim])
        assert ok.all()


@names
def test_infer_shapes(name):  # test_distributions.py::test_infer_shapes
    # Before the fix: AttributeError for the two grey-level distributions, whose support was a
    # plain property (torch uses constraints.dependent_property).
    for params in _cases()[name]:
        shapes = {k: v.shape for k, v in params.items() if isinstance(v, torch.Tensor)}
        d = CLASSES[name](**params)
        assert CLASSES[name].infer_shapes(**shapes) == (d.batch_shape, d.event_shape)


@names
def test_batch_log_prob_shape(name):  # test_distributions.py::test_batch_log_prob_shape
    for d in instances(name):
        x = d.sample((3,) + (1,) * len(d.batch_shape))
        assert d.log_prob(x).shape == _log_prob_shape(d, x.shape)


@names
def test_batch_entropy_shape(name):  # test_distributions.py::test_batch_entropy_shape
    for d in instances(name):
        if name == "ProjectedNormal":  # no closed form: NotImplementedError, as Pyro's ProjectedNormal
            with pytest.raises(NotImplementedError):
                d.entropy()
            continue
        assert d.entropy().shape == _log_prob_shape(d)


@pytest.mark.parametrize("name", sorted(DISCRETE) + ["Rayleigh"])
def test_entropy_equals_expected_negative_log_prob(name):
    # Exact for the grey-level distributions (a sum over the L levels); Rayleigh's closed form
    # against a Monte Carlo mean of 20000 draws (tolerance 4 standard errors).
    for d in instances(name):
        if name in DISCRETE:
            support = d.enumerate_support()
            log_p = d.log_prob(support)
            torch.testing.assert_close(d.entropy(), -(log_p.exp() * log_p).sum(0))
            if name == "QuantizedCategorical":
                torch.testing.assert_close(d.entropy(), torch.distributions.Categorical(logits=d.logits).entropy())
        else:
            torch.manual_seed(0)
            nlp = -d.log_prob(d.sample((20000,)))
            assert ((nlp.mean(0) - d.entropy()).abs() < 4 * nlp.std(0) / math.sqrt(20000)).all()


@names
def test_score_errors_non_broadcastable_data_shape(name):
    # test_distributions.py::test_score_errors_non_broadcastable_data_shape
    for d in instances(name):
        shape = d.shape()
        if not shape:
            continue
        with pytest.raises((ValueError, RuntimeError)):
            d.log_prob(torch.ones((shape[0] + 1,) + shape[1:]))


@names
def test_support_is_discrete(name):  # test_distributions.py::test_support_is_discrete, _is_not_discrete
    for d in instances(name):
        assert d.support.is_discrete == (name in DISCRETE)


@pytest.mark.parametrize("name", sorted(DISCRETE))
def test_enumerate_support_shape(name):  # test_distributions.py::test_enumerate_support_shape
    for d in instances(name):
        support = d.enumerate_support()
        n = support.shape[0]
        assert n == d.num_levels
        assert support.shape == (n,) + d.batch_shape + d.event_shape
        unexpanded = d.enumerate_support(expand=False)
        assert unexpanded.shape == (n,) + (1,) * len(d.batch_shape) + d.event_shape
        assert (support == unexpanded).all()
        # The levels carry all the mass.
        torch.testing.assert_close(d.log_prob(support).logsumexp(0), torch.zeros(d.batch_shape))


def check_sample_shapes(small, large):  # test_distributions.py::check_sample_shapes
    x = small.sample()
    torch.testing.assert_close(small.log_prob(x).expand(large.batch_shape), large.log_prob(x))
    x = large.sample()
    torch.testing.assert_close(small.log_prob(x), large.log_prob(x))


@names
@pytest.mark.parametrize("sample_shape", [(), (2,), (2, 3)])
@pytest.mark.parametrize("default", [False, True])
def test_expand_new_dim(name, sample_shape, default):
    # test_distributions.py::test_expand_by, test_expand_new_dim
    for small in instances(name):
        shape = torch.Size(sample_shape) + small.batch_shape
        large = TorchDistribution.expand(small, shape) if default else small.expand(shape)
        assert large.batch_shape == shape
        assert type(large) is type(small) or default
        check_sample_shapes(small, large)
        assert small.expand_by(sample_shape).batch_shape == shape


@names
def test_expand_error(name):  # test_distributions.py::test_expand_error
    for small in instances(name):
        large = small.expand(torch.Size((2, 4)) + small.batch_shape)
        with pytest.raises((RuntimeError, ValueError)):
            large.expand(torch.Size((2, 2, 1)) + small.batch_shape)


# --- tests/distributions/test_projected_normal.py, against exact values -----------------------


def _exact_log_prob(concentration, value):
    """log p(x) of the projected normal by mpmath quadrature at 30 digits."""
    mpmath.mp.dps = 30
    d = len(concentration)
    t = mpmath.mpf(sum(float(a) * float(b) for a, b in zip(concentration, value)))
    norm2 = sum(mpmath.mpf(float(a)) ** 2 for a in concentration)
    integral = mpmath.quad(lambda r: r ** (d - 1) * mpmath.exp(-r * r / 2 + r * t), [0, 1, 10, mpmath.inf])
    return float(mpmath.log(integral) - d / 2 * mpmath.log(2 * mpmath.pi) - norm2 / 2)


@pytest.mark.parametrize("dim", [2, 3, 4, 7])
@pytest.mark.parametrize("strength", [0.0, 1.0, 4.0, 30.0])
def test_projected_normal_log_prob_exact(dim, strength):  # test_projected_normal.py::test_log_prob
    # The docs promise 1e-6 in every dimension; before the fix d = 2 was off by about 5e-6.
    g = _g(dim)
    direction = torch.randn(dim, generator=g, dtype=torch.float64)
    concentration = strength * direction / direction.norm()
    values = torch.randn(6, dim, generator=g, dtype=torch.float64)
    values = torch.cat([values, direction.expand(1, -1), -direction.expand(1, -1)])  # incl. t = +-strength
    values = values / values.norm(dim=-1, keepdim=True)
    actual = ProjectedNormal(concentration).log_prob(values)
    expected = torch.tensor([_exact_log_prob(concentration, v) for v in values], dtype=torch.float64)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)
    if dim in (2, 3, 4) and strength <= 4:  # agrees with Pyro's closed forms where those are accurate
        torch.testing.assert_close(actual, PyroProjectedNormal(concentration).log_prob(values), rtol=0, atol=1e-6)


def test_projected_normal_strongly_opposed_point():
    # mu . x = -30 in d = 3: the exact value is -462.27; Pyro's closed form gives -37.88 there.
    concentration = torch.tensor([30.0, 0.0, 0.0], dtype=torch.float64)
    x = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64)
    exact = _exact_log_prob(concentration, x)
    assert exact == pytest.approx(-462.27, abs=0.005)
    assert ProjectedNormal(concentration).log_prob(x).item() == pytest.approx(exact, abs=1e-6)
    assert PyroProjectedNormal(concentration).log_prob(x).item() == pytest.approx(-37.88, abs=0.01)
    # float32 as well: the quadrature stays finite and accurate to float32's precision.
    assert ProjectedNormal(concentration.float()).log_prob(x.float()).item() == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_projected_normal_log_prob_gradient_finite(dim):  # test_projected_normal.py::test_log_prob
    concentration = torch.full((dim,), 10.0, requires_grad=True)
    value = PyroProjectedNormal(torch.zeros(dim)).sample((200,))
    log_p = ProjectedNormal(concentration).log_prob(value)
    assert (log_p < 1 + dim * 10.0).all()
    log_p.sum().backward()
    assert torch.isfinite(concentration.grad).all()


def test_rayleigh_log_prob_matches_scipy():  # test_distributions.py::test_batch_log_prob (scipy reference)
    d = Rayleigh(torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64))
    x = torch.tensor([0.2, 1.7, 4.0], dtype=torch.float64)
    expected = stats.rayleigh.logpdf(x.numpy(), scale=d.scale.numpy())
    torch.testing.assert_close(d.log_prob(x), torch.from_numpy(expected))
