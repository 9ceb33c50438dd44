"""Observation likelihoods: they normalise, they refuse data outside their support, and they train."""

import math

import pyro
import pytest
import torch
from scipy import integrate

from pyrogen.distributions import (
    LIKELIHOODS,
    BernoulliLikelihood,
    BetaLikelihood,
    DiscretizedLogisticMixture,
    DiscretizedLogisticMixtureLikelihood,
    NormalLikelihood,
    QuantizedCategorical,
    default_binarize,
    get_likelihood,
)
from pyrogen.errors import DataError
from pyrogen.models import VAE
from pyrogen.training import VAETrainer, default_config

ALL = sorted(LIKELIHOODS)
CONTINUOUS = [
    "continuous-bernoulli",
    "normal-fixed",
    "normal-shared",
    "normal-pixel",
    "laplace",
    "laplace-pixel",
    "beta",
]


def _decoder_out(likelihood, shape=(1, 1, 1), seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    return scale * torch.randn(likelihood.num_params * c, h, w, generator=g)


def test_registry_covers_the_issue():
    assert set(ALL) == {
        "bernoulli",
        "bernoulli-relaxed",
        "continuous-bernoulli",
        "normal-fixed",
        "normal-shared",
        "normal-pixel",
        "laplace",
        "laplace-pixel",
        "beta",
        "categorical-256",
        "discretized-logistic",
        "normal-feature",
        "student-t",
        "poisson",
        "poisson-library",
        "negative-binomial",
        "negative-binomial-library",
        "zinb",
        "zinb-library",
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_bernoulli_sums_to_one_over_binary_images(seed):
    lik = get_likelihood("bernoulli")
    out = _decoder_out(lik, (1, 1, 3), seed, 2.0)
    images = torch.tensor([[(k >> i) & 1 for i in range(3)] for k in range(8)], dtype=torch.float32)
    log_p = lik(out).log_prob(images.reshape(8, 1, 1, 3))
    assert abs(log_p.logsumexp(0).item()) < 1e-5


@pytest.mark.parametrize("name", ["categorical-256", "discretized-logistic"])
@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 5.0), (2, 0.1)])
def test_8bit_likelihoods_sum_to_one_over_the_256_levels(name, seed, scale):
    lik = get_likelihood(name)
    out = _decoder_out(lik, (1, 1, 2), seed, scale)  # two pixels, independent: each sums to one
    grid = torch.linspace(0, 1, 256)
    x = grid[:, None].expand(256, 2).reshape(256, 1, 1, 2)
    base = lik(out).base_dist
    assert torch.allclose(base.log_prob(x).logsumexp(0), torch.zeros(1, 1, 2), atol=1e-5)


@pytest.mark.parametrize("loc, scale", [(0.5, 0.1), (-3.0, 1e-3), (4.0, 1e-3), (0.5, 1e-3), (0.2, 30.0)])
def test_discretized_logistic_is_normalised_and_finite_in_the_tails(loc, scale):
    d = DiscretizedLogisticMixture(torch.zeros(1), torch.tensor([loc]), torch.tensor([scale]))
    grid = d.enumerate_support(expand=False).squeeze(-1)
    log_p = d.log_prob(grid)
    assert torch.isfinite(log_p).all()
    assert abs(log_p.logsumexp(0).item()) < 1e-4


def test_discretized_logistic_matches_the_difference_of_sigmoids():
    """Interior, edge and mixture cases against the PixelCNN++ formula evaluated in float64."""
    torch.manual_seed(0)
    logits, loc, scale = torch.randn(4, 3), torch.rand(4, 3), torch.rand(4, 3) * 0.2 + 0.02
    x = torch.tensor([0.0, 37 / 255, 128 / 255, 1.0])
    h = 0.5 / 255
    lo = torch.where(x == 0, -math.inf, x - h).double()[:, None]
    hi = torch.where(x == 1, math.inf, x + h).double()[:, None]
    mass = torch.sigmoid((hi - loc.double()) / scale.double()) - torch.sigmoid((lo - loc.double()) / scale.double())
    expected = (torch.softmax(logits.double(), -1) * mass).sum(-1).log()
    actual = DiscretizedLogisticMixture(logits, loc, scale).log_prob(x)
    assert torch.allclose(actual.double(), expected, atol=1e-5)


def test_discretized_logistic_gradients_are_finite_at_extremes():
    loc = torch.tensor([[-50.0, 0.5, 50.0]], requires_grad=True)
    scale = torch.tensor([[1e-3, 1e-3, 1e-3]], requires_grad=True)
    d = DiscretizedLogisticMixture(torch.zeros(1, 3), loc, scale)
    d.log_prob(torch.tensor([0.0])).sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()


def test_quantized_categorical_mean_and_samples():
    logits = torch.full((256,), -30.0)
    logits[51] = 0.0
    d = QuantizedCategorical(logits)
    assert abs(d.mean.item() - 0.2) < 1e-6
    assert torch.all(d.sample((10,)) == 0.2)


@pytest.mark.parametrize("name", CONTINUOUS)
@pytest.mark.parametrize("seed", [0, 1])
def test_continuous_likelihoods_integrate_to_one(name, seed):
    """One pixel, float64; adaptive quadrature of exp(log p) over the support (tolerance 1e-4)."""
    lik = get_likelihood(name).double()
    with torch.no_grad():
        out = _decoder_out(lik, (1, 1, 1), seed, 1.5).double()
        d, mean = lik(out), lik.mean(out).item()

        def density(v):
            return d.log_prob(torch.tensor([[[v]]], dtype=torch.float64)).exp().item()

        if name in ("continuous-bernoulli",):
            lo, hi = 0.0, 1.0
        elif name == "beta":
            eps = lik.squeeze / (1 - 2 * lik.squeeze)
            lo, hi = -eps, 1 + eps
        else:
            lo, hi = -math.inf, math.inf
        points = [mean] if math.isinf(lo) else None
        if math.isinf(lo):
            total = (
                integrate.quad(density, -math.inf, mean, limit=200)[0]
                + integrate.quad(density, mean, math.inf, limit=200)[0]
            )
        else:
            total = integrate.quad(density, lo, hi, limit=200, points=points)[0]
    assert abs(total - 1) < 1e-4


def test_relaxed_bernoulli_is_not_a_normalised_density():
    """Why the Continuous Bernoulli exists: the cross-entropy on [0, 1] integrates to less than one."""
    d = get_likelihood("bernoulli-relaxed")(torch.tensor([[[2.0]]]))
    total = integrate.quad(lambda v: d.log_prob(torch.tensor([[[v]]])).exp().item(), 0, 1)[0]
    assert total < 0.6


@pytest.mark.parametrize(
    "name, x, message",
    [
        ("bernoulli", 0.5, "x is not binary, but the Bernoulli likelihood scores only 0/1 pixels"),
        ("bernoulli", 1.5, r"x must lie in \[0, 1\] under a Bernoulli likelihood, got values in \[0, 1.5\]"),
        ("bernoulli-relaxed", -0.5, r"x must lie in \[0, 1\] under a Bernoulli likelihood"),
        (
            "continuous-bernoulli",
            1.2,
            r"x must lie in \[0, 1\] under a Continuous Bernoulli likelihood, got values "
            r"in \[0, 1.2\]",
        ),
        ("beta", -0.1, r"x must lie in \[0, 1\] under a Beta likelihood with squeeze=0.001"),
        (
            "categorical-256",
            0.5,
            "x must hold the 256 grey levels k/255 of 8-bit images under a 256-level categorical likelihood",
        ),
        (
            "discretized-logistic",
            0.5,
            "x must hold the 256 grey levels k/255 of 8-bit images under a discretized logistic mixture likelihood",
        ),
        ("discretized-logistic", 2.0, r"x must lie in \[0, 1\] under a discretized logistic mixture likelihood"),
        ("normal-fixed", math.nan, "x holds NaN or infinite values"),
        ("normal-pixel", math.inf, "x holds NaN or infinite values"),
        ("laplace", math.nan, "x holds NaN or infinite values"),
    ],
)
def test_support_violations_raise(name, x, message):
    lik = get_likelihood(name)
    data = torch.tensor([0.0, 1.0, x]).reshape(1, 1, 1, 3)
    with pytest.raises(DataError, match=message):
        lik.check(data)


@pytest.mark.parametrize("name", ALL)
def test_every_likelihood_accepts_its_own_kind_of_data(name):
    lik = get_likelihood(name).bind((1, 1, 3))
    x = torch.tensor([0.0, 3 / 255, 1.0]).reshape(1, 1, 1, 3)
    if lik.data_kind == "binary":
        x = x.round()
    if lik.data_kind == "counts":
        x = torch.tensor([0.0, 3.0, 17.0]).reshape(1, 1, 1, 3)
    lik.check(x)
    out = _decoder_out(lik, (1, 1, 3))
    d = lik(out, lik.library_size(x)) if lik.uses_library else lik(out)
    assert torch.isfinite(d.log_prob(x)).all()


def test_beta_without_squeeze_needs_the_open_interval():
    with pytest.raises(DataError, match=r"x must lie in \(0, 1\) under a Beta likelihood with squeeze=0"):
        BetaLikelihood(squeeze=0).check(torch.tensor([0.0, 0.5]))
    BetaLikelihood(squeeze=0).check(torch.tensor([0.01, 0.5]))


@pytest.mark.parametrize("name", ALL)
def test_binarization_must_fit_the_likelihood(name):
    lik = get_likelihood(name)
    assert default_binarize(name) == ("dynamic" if name == "bernoulli" else "none")
    lik.check_binarize(default_binarize(name))
    if lik.data_kind == "binary" or name == "bernoulli-relaxed":
        lik.check_binarize("static")
    else:
        with pytest.raises(
            DataError,
            match=f"the {type(lik).__name__} scores .* data, but binarize='dynamic' "
            "turns the grey levels into 0/1 pixels; use binarize='none'",
        ):
            lik.check_binarize("dynamic")


def test_scale_options_of_the_normal():
    out = torch.zeros(2, 1, 1)
    assert NormalLikelihood("fixed", fixed_scale=0.3)(out).base_dist.scale.eq(0.3).all()
    shared = NormalLikelihood("shared")
    assert len(list(shared.parameters())) == 1 and torch.allclose(shared(out).base_dist.scale, torch.tensor(0.1))
    pixel = NormalLikelihood("pixel", min_scale=0.01)
    assert pixel.num_params == 2
    d = pixel(torch.tensor([[[0.2]], [[-100.0]]]))  # loc, then unconstrained scale
    assert d.base_dist.loc.item() == pytest.approx(0.2) and d.base_dist.scale.item() == pytest.approx(0.01)
    with pytest.raises(ValueError, match="scale must be one of fixed, shared, pixel, feature"):
        NormalLikelihood("learned")


def test_multichannel_parameter_layout():
    """P blocks of C channels: block i holds parameter i of every channel."""
    lik = DiscretizedLogisticMixtureLikelihood(num_components=2)
    out = torch.arange(6 * 3, dtype=torch.float32).reshape(18, 1, 1)  # P = 6, C = 3
    logits, loc, scale = lik.params(out)
    assert logits.shape == (3, 1, 1, 2)
    assert logits[1, 0, 0].tolist() == [1.0, 4.0] and loc[1, 0, 0].tolist() == [7.5, 10.5]
    d = lik(torch.randn(2, 18, 4, 4))
    assert d.batch_shape == (2,) and d.event_shape == (3, 4, 4)


@pytest.mark.parametrize("name", [n for n in ALL if get_likelihood(n).data_kind != "counts"])
def test_every_likelihood_trains_in_a_vae(name):
    # counts are not grey levels: tests/test_count_likelihoods.py trains the count likelihoods
    """Default config picks the binarization; a few SVI steps on 8-bit-like images improve the ELBO."""
    config = default_config(latent_dim=2, hidden=(16,), likelihood=name, image_shape=(1, 8, 8))
    assert config["data"]["binarize"] == default_binarize(name)
    config["train"].update(batch_size=20, lr=3e-3, log_every=1)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 1, 8, 8, generator=g) * torch.linspace(0, 1, 8)).mul(255).round().div(255)
    test = x.round() if config["data"]["binarize"] != "none" else x
    vae = VAE(**config["model"])
    trainer = VAETrainer(vae, x, test, config, progress=False)
    before = trainer.evaluate()["elbo"]
    trainer.fit(3)
    after = trainer.evaluate()["elbo"]
    assert math.isfinite(after) and after > before
    assert vae.decode(torch.zeros(3, 2)).shape == (3, 1, 8, 8)


def test_wrong_binarization_is_an_error_before_training():
    config = default_config(latent_dim=2, hidden=(8,), likelihood="continuous-bernoulli")
    config["data"]["binarize"] = "dynamic"
    config["train"]["batch_size"] = 10
    x = torch.rand(20, 1, 28, 28)
    with pytest.raises(DataError, match="binarize='dynamic' turns the grey levels into 0/1 pixels"):
        VAETrainer(VAE(**config["model"]), x, x, config, progress=False)


def test_continuous_bernoulli_mean_is_not_lambda():
    lik = get_likelihood("continuous-bernoulli")
    logits = torch.tensor([[[2.0]]])
    assert lik.mean(logits).item() != pytest.approx(torch.sigmoid(logits).item(), abs=1e-2)
    total = integrate.quad(lambda v: v * lik(logits).log_prob(torch.tensor([[[v]]])).exp().item(), 0, 1)[0]
    assert lik.mean(logits).item() == pytest.approx(total, abs=1e-4)


def test_pyro_validation_catches_grey_levels_under_bernoulli():
    vae = VAE(latent_dim=2, hidden=(8,), likelihood=BernoulliLikelihood())
    with pytest.raises(DataError, match="not binary"):
        pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, torch.rand(3, 1, 28, 28))
