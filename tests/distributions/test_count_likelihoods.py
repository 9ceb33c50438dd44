"""Likelihoods for tables and counts: closed forms against scipy.stats and scvi-tools' formulas,
support errors, ``likelihood="auto"``, and VAEs on flat (N, D) data."""

import math

import pyro
import pytest
import torch
from pyro import distributions as dist
from scipy import stats
from torch.nn import functional as F

from pyrogen.distributions import (
    LIKELIHOODS,
    NegativeBinomialLikelihood,
    NormalLikelihood,
    PoissonLikelihood,
    StudentTLikelihood,
    ZeroInflatedNegativeBinomialLikelihood,
    auto_message,
    choose_likelihood,
    get_likelihood,
)
from pyrogen.errors import DataError
from pyrogen.models import VAE

X = torch.tensor([[0.0, 1.0, 3.0, 12.0], [5.0, 0.0, 0.0, 40.0]], dtype=torch.float64)
LOG_MU = torch.tensor([[0.3, -1.2, 1.0, 2.5], [1.7, 0.0, -0.5, 3.1]], dtype=torch.float64)
THETA = torch.tensor([0.7, 2.0, 15.0, 0.3], dtype=torch.float64)


def _bound(likelihood, d=4):
    likelihood = likelihood.bind((d,)).double()
    return likelihood


def _set_theta(likelihood, theta):
    with torch.no_grad():
        likelihood.raw_theta.copy_(theta.log())


def _scvi_log_nb(x, mu, theta, eps=1e-8):
    """scvi-tools' ``log_nb_positive`` (scvi/distributions/_negative_binomial.py), written out."""
    log_theta_mu_eps = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu_eps)
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def _scvi_log_zinb(x, mu, theta, pi, eps=1e-8):
    """scvi-tools' ``log_zinb_positive``, written out (``pi``: the dropout logit)."""
    softplus_pi = F.softplus(-pi)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi + theta * (log_theta_eps - log_theta_mu_eps)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    case_non_zero = (
        -softplus_pi
        + pi_theta_log
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return torch.where(x < eps, case_zero, case_non_zero)


def test_registry_names_the_table_and_count_likelihoods():
    for name, kind in [
        ("normal-feature", "real"),
        ("student-t", "real"),
        ("poisson", "counts"),
        ("poisson-library", "counts"),
        ("negative-binomial", "counts"),
        ("negative-binomial-library", "counts"),
        ("zinb", "counts"),
        ("zinb-library", "counts"),
    ]:
        assert get_likelihood(name).data_kind == kind
    assert get_likelihood("zinb-library").uses_library and not get_likelihood("zinb").uses_library


def test_poisson_matches_scipy():
    lik = _bound(PoissonLikelihood())
    expected = stats.poisson(LOG_MU.exp().numpy()).logpmf(X.numpy()).sum(-1)
    assert torch.allclose(lik(LOG_MU).log_prob(X), torch.from_numpy(expected), atol=1e-10)


def test_negative_binomial_matches_scipy_scvi_and_gamma_poisson():
    lik = _bound(NegativeBinomialLikelihood())
    _set_theta(lik, THETA)
    mu = LOG_MU.exp()
    got = lik(LOG_MU).base_dist.log_prob(X)
    # scipy's nbinom(n, p) counts failures before the n-th success: n = θ, p = θ / (θ + μ)
    scipy_lp = stats.nbinom(THETA.numpy(), (THETA / (THETA + mu)).numpy()).logpmf(X.numpy())
    assert torch.allclose(got, torch.from_numpy(scipy_lp), atol=1e-10)
    assert torch.allclose(got, _scvi_log_nb(X, mu, THETA), atol=1e-6)  # scvi's eps = 1e-8 moves it slightly
    gamma_poisson = dist.GammaPoisson(THETA.expand_as(mu), THETA / mu).log_prob(X)
    assert torch.allclose(got, gamma_poisson, atol=1e-10)
    assert torch.allclose(lik.mean(LOG_MU), mu)
    assert torch.allclose(lik.theta, THETA)


def test_zero_inflated_negative_binomial_is_the_mixture():
    lik = _bound(ZeroInflatedNegativeBinomialLikelihood())
    _set_theta(lik, THETA)
    gate_logits = torch.tensor([[-2.0, 0.5, 1.5, -0.3], [0.0, 3.0, -4.0, 1.0]], dtype=torch.float64)
    out = torch.cat([LOG_MU, gate_logits], -1)  # two blocks of D = 4 outputs: log-means, dropout logits
    got = lik(out).base_dist.log_prob(X)
    mu, pi = LOG_MU.exp(), torch.sigmoid(gate_logits)
    nb = torch.from_numpy(stats.nbinom(THETA.numpy(), (THETA / (THETA + mu)).numpy()).pmf(X.numpy()))
    mixture = torch.where(X == 0, pi + (1 - pi) * nb, (1 - pi) * nb).log()
    assert torch.allclose(got, mixture, atol=1e-10)
    assert torch.allclose(got, _scvi_log_zinb(X, mu, THETA, gate_logits), atol=1e-6)
    assert torch.allclose(lik.mean(out), (1 - pi) * mu)


@pytest.mark.parametrize("name", ["poisson", "negative-binomial", "zinb"])
def test_count_likelihoods_sum_to_one_over_the_counts(name):
    lik = _bound(get_likelihood(name), d=1)
    out = torch.tensor([1.2, -0.4][: lik.num_params], dtype=torch.float64)
    counts = torch.arange(0, 400, dtype=torch.float64)[:, None]
    assert abs(lik(out).log_prob(counts).logsumexp(0).item()) < 1e-8


def test_library_size_scales_a_softmax_by_each_examples_total():
    lik = _bound(NegativeBinomialLikelihood(library=True))
    library = lik.library_size(X)
    assert library.tolist() == [16.0, 45.0]
    mu = lik.mean(LOG_MU, library)
    assert torch.allclose(mu.sum(-1), library)
    assert torch.allclose(mu, library[:, None] * torch.softmax(LOG_MU, -1))
    _set_theta(lik, THETA)
    expected = stats.nbinom(THETA.numpy(), (THETA / (THETA + mu)).numpy()).logpmf(X.numpy()).sum(-1)
    assert torch.allclose(lik(LOG_MU, library).log_prob(X), torch.from_numpy(expected), atol=1e-10)
    with pytest.raises(
        DataError,
        match=r"^the library size of generated examples is unknown: call "
        r"likelihood.adapt\(x\) with the training counts first \(the trainers do\)$",
    ):
        lik.mean(LOG_MU)
    lik.adapt(X)  # generation then uses the geometric mean of the training totals
    assert math.isclose(lik.mean(LOG_MU).sum(-1)[0].item(), math.sqrt(16 * 45), rel_tol=1e-12)
    assert lik.library_size(torch.zeros(1, 4)).item() == 1.0  # an empty example: floored at 1


def test_normal_feature_and_student_t_learn_one_scale_per_feature():
    x = torch.tensor([[0.3, -2.0, 7.5], [1.0, 0.0, -3.0]], dtype=torch.float64)
    loc = torch.tensor([[0.0, -1.0, 5.0], [0.5, 0.5, -1.0]], dtype=torch.float64)
    scale = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    normal = _bound(NormalLikelihood(scale="feature", fixed_scale=1.0), 3)
    assert normal.raw_scale.shape == (3,)
    with torch.no_grad():
        normal.raw_scale.copy_(normal.scale_transform.inv(scale))
    expected = stats.norm(loc.numpy(), scale.numpy()).logpdf(x.numpy()).sum(-1)
    assert torch.allclose(normal(loc).log_prob(x), torch.from_numpy(expected), atol=1e-10)
    student = _bound(StudentTLikelihood(df=4.0), 3)
    with torch.no_grad():
        student.raw_scale.copy_(student.scale_transform.inv(scale))
    df = student.df.item()
    assert math.isclose(df, 4.0, rel_tol=1e-6)  # the starting ν, through float32's inverse transform
    expected = stats.t(df, loc.numpy(), scale.numpy()).logpdf(x.numpy()).sum(-1)
    assert torch.allclose(student(loc).log_prob(x), torch.from_numpy(expected), atol=1e-10)
    assert torch.allclose(student.mean(loc), loc)
    assert sum(p.numel() for p in student.parameters()) == 3 + 1  # σ per feature and one ν


def test_a_per_feature_scale_needs_the_event_shape():
    with pytest.raises(
        ValueError,
        match=r"^the NormalLikelihood learns raw_scale per feature: bind it to the "
        r"examples' shape first \(likelihood.bind\(event_shape\); the VAE does\)$",
    ):
        get_likelihood("normal-feature")(torch.zeros(2, 3))
    lik = get_likelihood("negative-binomial").bind((3,))
    with pytest.raises(
        ValueError,
        match=r"^this NegativeBinomialLikelihood is bound to examples of shape \(3,\), "
        r"not \(4,\); use a fresh likelihood per model$",
    ):
        lik.bind((4,))


@pytest.mark.parametrize(
    "name, what",
    [
        ("poisson", "a Poisson likelihood"),
        ("negative-binomial-library", "a negative binomial likelihood"),
        ("zinb", "a zero-inflated negative binomial likelihood"),
    ],
)
def test_counts_outside_the_support_are_refused_in_one_line(name, what):
    lik = get_likelihood(name).bind((3,))
    with pytest.raises(
        DataError,
        match=rf"^training data must hold non-negative integer counts under {what}, "
        r"got values in \[-1, 4\]$",
    ):
        lik.check(torch.tensor([[0.0, -1.0, 4.0]]), "training data")
    with pytest.raises(
        DataError,
        match=rf"^x must hold non-negative integer counts under {what}, got non-integer "
        r"values such as 0\.5 \(normalised or log-transformed data\? pass raw "
        r"counts\)$",
    ):
        lik.check(torch.tensor([[0.0, 0.5, 4.0]]))
    with pytest.raises(DataError, match=r"^x holds NaN or infinite values$"):
        lik.check(torch.tensor([[0.0, math.nan, 4.0]]))
    lik.check(torch.tensor([[0.0, 2.0, 4000.0]]))


def test_count_likelihoods_need_unbinarized_data():
    with pytest.raises(
        DataError,
        match=r"^the NegativeBinomialLikelihood scores counts data, but "
        r"binarize='dynamic' turns the grey levels into 0/1 pixels",
    ):
        get_likelihood("negative-binomial").check_binarize("dynamic")


def _nb_matrix(n=2000, d=20, theta=0.5, seed=0, dropout=0.0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.exp(torch.randn(d, generator=g) + 1.0).expand(n, d)
    rate = torch._standard_gamma(torch.full((n, d), float(theta)), generator=g) * mu / theta
    x = torch.poisson(rate, generator=g)
    if dropout:
        x = torch.where(torch.rand(n, d, generator=g) < dropout, torch.zeros_like(x), x)
    return x


def test_auto_picks_from_the_data_and_says_why():
    g = torch.Generator().manual_seed(0)
    assert choose_likelihood(torch.bernoulli(torch.full((50, 6), 0.4), generator=g)) == (
        "bernoulli",
        "every value is 0 or 1",
    )
    name, reason = choose_likelihood(torch.rand(50, 1, 4, 4, generator=g))
    assert name == "bernoulli" and reason.startswith("images with values in [0, 1] (800 distinct levels)")
    assert choose_likelihood(torch.rand(50, 6, generator=g))[0] == "continuous-bernoulli"
    name, reason = choose_likelihood(torch.poisson(torch.full((4000, 10), 3.0), generator=g))
    assert name == "poisson" and "with variance 1.0" in reason
    name, reason = choose_likelihood(_nb_matrix())
    assert name == "negative-binomial" and "over-dispersed" in reason
    assert choose_likelihood(_nb_matrix(dropout=0.3))[0] == "zinb"
    name, reason = choose_likelihood(torch.randn(4000, 5, generator=g) * 3 + 1)
    assert name == "normal-feature"
    t = torch.distributions.StudentT(2.5).sample((4000, 5))
    assert choose_likelihood(t)[0] == "student-t"
    assert auto_message("zinb", "because") == "likelihood auto: zinb (because)"
    with pytest.raises(
        DataError,
        match=r"^the data hold NaN or infinite values; likelihood 'auto' needs finite "
        r"values$",
    ):
        choose_likelihood(torch.tensor([[0.0, math.inf]]))


@pytest.mark.parametrize("name", ["normal-feature", "student-t", "negative-binomial", "zinb-library", "poisson"])
def test_a_vae_on_flat_vectors_trains(name):
    """A (N, 7) table: the model's event shape is (7,), and 150 Adam steps raise the ELBO of the data
    well above its value at initialisation (averaged over 10 particles, fixed seeds)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    counts = get_likelihood(name).data_kind == "counts"
    x = _nb_matrix(n=200, d=7, theta=2.0) if counts else torch.randn(200, 7) @ torch.randn(7, 7)
    vae = VAE(latent_dim=2, image_shape=(7,), hidden=(32,), likelihood=name)
    vae.likelihood.adapt(x)
    trace = pyro.poutine.trace(vae.model).get_trace(x)
    assert trace.nodes["x"]["fn"].event_shape == (7,)
    elbo = pyro.infer.Trace_ELBO(num_particles=10, vectorize_particles=True, max_plate_nesting=1)
    before = -elbo.loss(vae.model, vae.guide, x) / x.shape[0]
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    for _ in range(150):
        svi.step(x)
    after = -elbo.loss(vae.model, vae.guide, x) / x.shape[0]
    assert math.isfinite(after) and after > before + 1.0, (before, after)
    assert vae.reconstruct(x[:5]).shape == (5, 7) and vae.sample(3).shape == (3, 7)


def test_conv_architectures_refuse_flat_vectors_in_one_line():
    with pytest.raises(
        DataError,
        match=r"^ConvEncoder needs images \(C, H, W\), got examples of shape \(7,\); "
        r"use the mlp architecture for flat vectors$",
    ):
        VAE(latent_dim=2, image_shape=(7,), architecture="conv", likelihood="normal-feature")


def test_all_registered_likelihoods_build():
    for name in LIKELIHOODS:
        assert get_likelihood(name).bind((5,)).event_dim == 1


def test_the_encoder_can_see_log1p_counts():
    torch.manual_seed(0)
    plain = VAE(latent_dim=2, image_shape=(7,), hidden=(8,), likelihood="negative-binomial")
    logged = VAE(latent_dim=2, image_shape=(7,), hidden=(8,), likelihood="negative-binomial", input_transform="log1p")
    assert logged.config["input_transform"] == "log1p" and "input_transform" not in plain.config
    logged.encoder[0].net.load_state_dict(plain.encoder[0].state_dict())
    logged.encoder[1].load_state_dict(plain.encoder[1].state_dict())
    x = torch.poisson(torch.full((4, 7), 30.0))
    assert torch.equal(logged.encode(x)["loc"], plain.encode(torch.log1p(x))["loc"])
    with pytest.raises(DataError, match=r"^input_transform must be one of \['none', 'log1p'\], got 'log'$"):
        VAE(image_shape=(7,), input_transform="log")


@pytest.mark.parametrize("name", ["normal-feature", "negative-binomial-library"])
def test_the_trainer_fits_tables_and_counts(name):
    """VAETrainer takes values outside [0, 1] under a likelihood of real values or counts, and its ELBO rises."""
    from pyrogen.training import VAETrainer, default_config

    counts = get_likelihood(name).data_kind == "counts"
    x = _nb_matrix(n=240, d=7, theta=2.0) if counts else torch.randn(240, 7, generator=torch.Generator().manual_seed(0))
    config = default_config(latent_dim=2, hidden=(16,), likelihood=name, image_shape=(7,))
    assert config["data"]["binarize"] == "none"
    config["train"].update(batch_size=40, lr=3e-3, epochs=4)
    vae = VAE(**config["model"])
    trainer = VAETrainer(vae, x[:200], x[200:], config, progress=False)
    before = trainer.evaluate()["elbo"]
    trainer.fit()
    after = trainer.evaluate()["elbo"]
    assert math.isfinite(after) and after > before
    if counts:
        typical = vae.likelihood.library_size(x[:200]).log().mean().item()
        assert vae.likelihood.log_library.item() == pytest.approx(typical)  # adapt() saw the training totals


def test_the_device_loader_takes_any_finite_values_when_told():
    from pyrogen.data import DeviceLoader

    loader = DeviceLoader(torch.tensor([[-3.0, 250.0], [1.0, 2.0]]), 1, values="any")
    assert sorted(b.sum().item() for b in loader) == [3.0, 247.0]
    with pytest.raises(DataError, match=r"^data holds NaN or infinite values$"):
        DeviceLoader(torch.tensor([[0.5, math.nan]]), 1, values="any")
    with pytest.raises(DataError, match=r"^data must lie in \[0, 1\], got values in \[0.5, 3\]$"):
        DeviceLoader(torch.tensor([[0.5, 3.0]]), 1, binarize="dynamic", values="any")  # binarizing needs [0, 1]
    with pytest.raises(DataError, match=r"^values must be one of \('unit-interval', 'any'\), got 'real'$"):
        DeviceLoader(torch.tensor([[0.5, 3.0]]), 1, values="real")


def test_resolve_likelihood_chooses_only_for_auto():
    from pyrogen.distributions import resolve_likelihood

    x = torch.poisson(torch.full((500, 4), 3.0), generator=torch.Generator().manual_seed(0))
    assert resolve_likelihood("zinb", x) == ("zinb", None)
    name, message = resolve_likelihood("auto", x)
    assert name == "poisson" and message.startswith("likelihood auto: poisson (non-negative integers up to ")
