"""Latent families: samples fit their distribution, gradients are right, KLs agree, shapes hold in the plate."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from scipy import integrate, stats
from torch.distributions import biject_to, constraints, kl_divergence

from pyrogen.distributions import (
    FAMILIES,
    LatentFamily,
    LatentFamilyError,
    ParameterHead,
    ProjectedNormal,
    Rayleigh,
    check_guide_family,
    check_latent_pair,
    has_analytic_kl,
    kl_method,
)
from pyrogen.evaluation import log_importance_weights
from pyrogen.models import VAE
from pyrogen.training import VAETrainer, default_config

ORIGINAL = {
    "normal",
    "laplace",
    "student-t",
    "logistic",
    "cauchy",
    "gumbel",
    "weibull",
    "rayleigh",
    "exponential",
    "log-normal",
    "gamma",
    "beta",
    "dirichlet",
    "projected-normal",
}
ALL = sorted(ORIGINAL)  # the rest of Kingma and Welling's list is tested in test_new_families.py
P = {"loc": 0.3, "scale": 1.7}


def _marginal(name, d=3):
    """Parameters of a ``d``-dim member and the scipy distribution of its coordinate 0."""
    t = lambda *v: {k: torch.full((d,), float(x)) for k, x in zip(*v)}  # noqa: E731
    loc, scale = P["loc"], P["scale"]
    table = {
        "normal": (t("loc scale".split(), (loc, scale)), stats.norm(loc, scale)),
        "laplace": (t("loc scale".split(), (loc, scale)), stats.laplace(loc, scale)),
        "student-t": (t("df loc scale".split(), (3.5, loc, scale)), stats.t(3.5, loc, scale)),
        "logistic": (t("loc scale".split(), (loc, scale)), stats.logistic(loc, scale)),
        "cauchy": (t("loc scale".split(), (loc, scale)), stats.cauchy(loc, scale)),
        "gumbel": (t("loc scale".split(), (loc, scale)), stats.gumbel_r(loc, scale)),
        "weibull": (t("scale concentration".split(), (scale, 1.5)), stats.weibull_min(1.5, scale=scale)),
        "rayleigh": (t(["scale"], (scale,)), stats.rayleigh(scale=scale)),
        "exponential": (t(["rate"], (scale,)), stats.expon(scale=1 / scale)),
        "log-normal": (t("loc scale".split(), (loc, 0.6)), stats.lognorm(0.6, scale=math.exp(loc))),
        "gamma": (t("concentration rate".split(), (0.7, scale)), stats.gamma(0.7, scale=1 / scale)),
        "beta": (t("concentration1 concentration0".split(), (0.6, 2.5)), stats.beta(0.6, 2.5)),
        # a Dirichlet's coordinate is Beta(alpha_0, sum(alpha) - alpha_0)
        "dirichlet": ({"concentration": torch.tensor([0.8, 1.5, 2.2])}, stats.beta(0.8, 3.7)),
    }
    return table[name]


@pytest.mark.parametrize("name", sorted(set(ALL) - {"projected-normal"}))
def test_samples_fit_the_distribution(name):
    """Kolmogorov-Smirnov on coordinate 0 of 4000 draws (fixed seed) against scipy: p > 0.01."""
    params, reference = _marginal(name)
    torch.manual_seed(1)
    z = FAMILIES[name](**params).rsample((4000,))
    assert z.shape == (4000, 3)
    assert FAMILIES[name].support.check(z).all()
    assert stats.kstest(z[:, 0].double().numpy(), reference.cdf).pvalue > 0.01
    # and the density is scipy's (the KS test alone would not see a wrong log_prob)
    x = torch.as_tensor(reference.ppf(np.array([0.1, 0.5, 0.9])), dtype=torch.float32)
    if name == "dirichlet":
        return
    lp = FAMILIES[name].make(**{k: v[:1] for k, v in params.items()}).log_prob(x[:, None])
    assert torch.allclose(lp.double(), torch.as_tensor(reference.logpdf(x.double().numpy())), atol=1e-4)


def test_projected_normal_samples_fit_its_density():
    """d = 3: t = mu_hat . x has density 2 pi p(x(t)) (Archimedes); KS of 4000 draws against its CDF."""
    mu = torch.tensor([1.0, -2.0, 0.5])
    torch.manual_seed(1)
    q = FAMILIES["projected-normal"](concentration=mu)
    t = q.rsample((4000,)) @ (mu / mu.norm())
    grid = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    u = mu / mu.norm()
    orth = torch.tensor([2.0, 1.0, 0.0]) / math.sqrt(5)  # orthogonal to mu
    points = grid[:, None] * u.double() + torch.sqrt(1 - grid**2)[:, None] * orth.double()
    density = 2 * math.pi * q.log_prob(points.float()).double().exp()
    cdf = torch.cumulative_trapezoid(density, grid, dim=0)
    assert abs(cdf[-1].item() - 1) < 1e-4  # the density integrates to one over the sphere
    cdf = np.concatenate([[0.0], cdf.numpy()])
    assert stats.kstest(t.double().numpy(), lambda v: np.interp(v, grid.numpy(), cdf)).pvalue > 0.01


@pytest.mark.parametrize("d", [2, 3, 4])
def test_projected_normal_density_matches_pyro_closed_forms(d):
    torch.manual_seed(0)
    mu = torch.randn(20, d) * 2
    x = torch.nn.functional.normalize(torch.randn(20, d), dim=-1)
    expected = dist.ProjectedNormal(mu).log_prob(x)
    actual = ProjectedNormal(mu).log_prob(x)
    near = expected > -20  # Pyro's d = 4 formula loses digits far in the tail
    assert near.sum() >= 18
    assert torch.allclose(actual[near], expected[near], atol=1e-3, rtol=1e-4)
    # everywhere, against adaptive quadrature in float64
    for m, v, a in zip(mu.double(), x.double(), actual):
        t, n = (m * v).sum().item(), d - 1
        radial = integrate.quad(
            lambda r: r**n * np.exp(-r * r / 2 + r * t), 0, np.inf, epsabs=0, epsrel=1e-12, limit=500
        )[0]
        reference = math.log(radial) - d / 2 * math.log(2 * math.pi) - (m * m).sum().item() / 2
        assert abs(a.item() - reference) < 1e-3 * max(1, abs(reference))


def test_projected_normal_with_zero_concentration_is_uniform_on_the_sphere():
    d = 10
    x = torch.nn.functional.normalize(torch.randn(5, d), dim=-1)
    log_area = math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)
    assert torch.allclose(ProjectedNormal(torch.zeros(d)).log_prob(x), torch.full((5,), -log_area), atol=1e-4)


def _test_function(z):
    w = torch.linspace(0.5, 1.5, z.shape[-1])
    return (w * torch.sin(2 * z)).sum(-1)


@pytest.mark.parametrize("name", ALL)
def test_pathwise_gradient_agrees_with_score_function(name):
    """grad E[f(z)] by rsample vs E[(f(z) - b) grad log q(z)]: within 5 combined standard errors.

    Each estimator is averaged over 25 chunks of 8000 draws (2000 for the projected
    normal) at a fixed seed; f is
    bounded (a weighted sum of sin 2z), so both have finite variance.
    """
    family = FAMILIES[name]
    params = family.random_params(2, generator=torch.Generator().manual_seed(3))
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    torch.manual_seed(0)
    chunks, n = 25, 2000 if name == "projected-normal" else 8000  # its density is a 301-point quadrature

    def estimates(pathwise):
        out = []
        for _ in range(chunks):
            q = family(**params)
            if pathwise:
                loss = _test_function(q.rsample((n,))).mean()
            else:
                z = q.sample((n,))
                f = _test_function(z)
                loss = ((f - f.mean()) * q.log_prob(z)).mean() * n / (n - 1)
            grads = torch.autograd.grad(loss, list(params.values()))
            out.append(torch.cat([g.flatten() for g in grads]))
        return torch.stack(out)

    pw, sf = estimates(True), estimates(False)
    se = ((pw.var(0) + sf.var(0)) / chunks).sqrt()
    assert torch.isfinite(pw).all()
    assert ((pw.mean(0) - sf.mean(0)).abs() <= 5 * se + 1e-3).all(), (pw.mean(0), sf.mean(0), se)


@pytest.mark.parametrize("name", [n for n in ALL if has_analytic_kl(n, n)])
def test_analytic_kl_agrees_with_monte_carlo(name):
    """KL(q || p) registered with torch vs the mean of log q - log p over 200,000 draws (5 SE)."""
    family = FAMILIES[name]
    q = family(**family.random_params(3, generator=torch.Generator().manual_seed(5)))
    p = family(**family.prior_params(3))
    torch.manual_seed(0)
    z = q.sample((200000,))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).double()
    exact = kl_divergence(q, p).item()
    assert abs(log_ratio.mean().item() - exact) < 5 * log_ratio.std().item() / math.sqrt(z.shape[0]) + 1e-4


def test_which_families_have_analytic_kl():
    analytic = {n for n in ALL if has_analytic_kl(n, n)}
    assert analytic == {
        "normal",
        "laplace",
        "cauchy",
        "gumbel",
        "rayleigh",
        "exponential",
        "log-normal",
        "gamma",
        "beta",
        "dirichlet",
    }
    assert kl_method("normal", "normal", analytic=True) == "analytic"
    assert kl_method("normal", "normal", analytic=False) == "monte-carlo"
    assert kl_method("student-t", "student-t", analytic=True) == "monte-carlo"
    # torch registers Weibull/Weibull only through equal transforms, i.e. equal parameters
    assert kl_method("weibull", "weibull", analytic=True) == "monte-carlo"


def test_rayleigh_kl_closed_form():
    p, q = Rayleigh(torch.tensor(1.3)), Rayleigh(torch.tensor(0.6))
    assert torch.allclose(kl_divergence(p, q), torch.tensor(2 * math.log(0.6 / 1.3) + (1.3 / 0.6) ** 2 - 1))


@pytest.mark.parametrize("name", ALL)
def test_shapes_inside_the_data_plate(name):
    """Site "z": batch (B,), event (latent_dim,), in the family's support; K particles to the left."""
    vae = VAE(latent_dim=3, hidden=(8,), prior=name, posterior=name)
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    for trace in (guide, model):
        site = trace.nodes["z"]
        assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (3,)
        assert site["value"].shape == (5, 3)
        assert site["fn"].log_prob(site["value"]).shape == (5,)
        assert FAMILIES[name].support.check(site["value"]).all()
    assert [f.name for f in guide.nodes["z"]["cond_indep_stack"]] == ["data"]
    log_w = log_importance_weights(vae.model, vae.guide, x, 4)
    assert log_w.shape == (4, 5) and torch.isfinite(log_w).all()


@pytest.mark.parametrize("name", ALL)
def test_parameter_head_gives_valid_parameters_for_any_features(name):
    head = ParameterHead(7, name, latent_dim=3)
    h = torch.randn(11, 7) * torch.logspace(-2, 1, 11)[:, None]
    params = head(h)
    for key, constraint in FAMILIES[name].constraints.items():
        assert params[key].shape == (11, 3)
        assert constraint.check(params[key]).all()
    FAMILIES[name](**params)  # accepted by the distribution


def _von_mises(loc, concentration):
    return dist.VonMises(loc, concentration).to_event(1)


VON_MISES = LatentFamily(
    "von-mises",
    _von_mises,
    {"loc": constraints.real, "concentration": constraints.positive},
    {"loc": 0.0, "concentration": 1.0},
    "inverse-cdf",
)


def test_a_guide_without_rsample_is_an_error_before_training():
    assert not VON_MISES.has_rsample
    with pytest.raises(
        LatentFamilyError,
        match="guide family 'von-mises' is not reparameterized .* but ReparamTrace_ELBO needs pathwise gradients",
    ):
        check_guide_family(VON_MISES, "ReparamTrace_ELBO")
    config = default_config(latent_dim=2, hidden=(8,))
    config["train"]["batch_size"] = 10
    vae = VAE(latent_dim=2, hidden=(8,), prior=VON_MISES, posterior=VON_MISES)
    x = torch.bernoulli(torch.full((20, 1, 28, 28), 0.3))
    for elbo in ("trace", "meanfield"):
        config["train"]["elbo"] = elbo
        with pytest.raises(LatentFamilyError, match="is not reparameterized"):
            VAETrainer(vae, x, x, config, progress=False)


def test_guide_outside_the_prior_support_is_an_error():
    with pytest.raises(
        LatentFamilyError, match="guide family 'normal' draws z outside the support of prior family 'gamma'"
    ):
        check_latent_pair("gamma", "normal")
    check_latent_pair("gamma", "log-normal")  # both positive


def test_bad_route_and_unknown_family():
    with pytest.raises(LatentFamilyError, match="route of latent family 'x' must be one of"):
        LatentFamily("x", None, {}, {}, "magic")
    with pytest.raises(ValueError, match="unknown latent family 'nope'"):
        VAE(posterior="nope")


def test_a_user_family_plugs_in_by_registering_it(monkeypatch):
    family = LatentFamily(
        "half-cauchy",
        lambda scale: dist.HalfCauchy(scale).to_event(1),
        {"scale": constraints.positive},
        {"scale": 1.0},
        "inverse-cdf",
        constraints.independent(constraints.positive, 1),
    )
    monkeypatch.setitem(FAMILIES, "half-cauchy", family)
    vae = VAE(latent_dim=2, hidden=(8,), prior="half-cauchy", posterior="half-cauchy")
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert torch.isfinite(loss) and vae.config["posterior"] == "half-cauchy"


@pytest.mark.parametrize(
    "elbo, posterior, expected, sentence",
    [
        ("meanfield", "normal", "analytic", "KL(q||p) is computed in closed form (ReparamTraceMeanField_ELBO).\n"),
        (
            "trace",
            "normal",
            "monte-carlo",
            "KL(q||p) is estimated by Monte Carlo at the sampled z (Trace_ELBO's "
            "estimator); --elbo meanfield uses the closed form.\n",
        ),
        (
            "meanfield",
            "student-t",
            "monte-carlo",
            "KL(q||p) is estimated by Monte Carlo at the sampled z: no closed "
            "form is registered for guide 'student-t' and prior 'student-t'.\n",
        ),
    ],
)
def test_the_fit_loop_explains_its_kl_method_in_one_sentence(elbo, posterior, expected, sentence, capsys):
    config = default_config(latent_dim=2, hidden=(8,), prior=posterior, posterior=posterior, image_shape=(1, 4, 4))
    config["train"].update(elbo=elbo, batch_size=10)
    x = torch.bernoulli(torch.full((20, 1, 4, 4), 0.3))
    trainer = VAETrainer(VAE(**config["model"]), x, x, config, progress=True)
    assert trainer.kl_method == expected
    trainer.fit(0)
    assert capsys.readouterr().out == sentence


def test_free_bits_need_an_analytic_kl():
    config = default_config(latent_dim=2, hidden=(8,), prior="student-t", posterior="student-t")
    config["train"].update(free_bits=0.5, batch_size=10)
    x = torch.bernoulli(torch.full((20, 1, 28, 28), 0.3))
    with pytest.raises(LatentFamilyError, match="free bits need KL"):
        VAETrainer(VAE(**config["model"]), x, x, config, progress=False)


def test_constraints_are_bijected_not_clamped():
    """A head's output for a positive parameter has a nonzero gradient everywhere (no clamp)."""
    head = ParameterHead(4, "gamma", latent_dim=2)
    h = torch.full((1, 4), -50.0, requires_grad=True)
    head(h)["concentration"].sum().backward()
    assert (h.grad != 0).all()
    assert isinstance(head.transforms["concentration"], type(biject_to(constraints.positive)))


def test_prior_takes_torchs_default_dtype():
    """A VAE built under float64 as torch's default dtype has a float64 prior (as torch.zeros would),
    so its model runs in float64; float32 stays the default."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        vae = VAE(latent_dim=3, hidden=(8,))
        assert vae.prior().sample().dtype == torch.float64
        assert vae.decode(vae.prior().sample((2,))).dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert VAE(latent_dim=3, hidden=(8,)).prior().sample().dtype == torch.float32
