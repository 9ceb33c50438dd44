"""The rest of Kingma and Welling's (2014, section 2.4) reparameterizable families.

Pareto, Gompertz, Reciprocal (inverse CDF); Uniform, Triangular, the elliptical
multivariate Student's t (location-scale); Erlang, Chi-squared, F (composition,
Chi-squared by torch's implicit gradient). The same checks as the original 14
in test_families.py: draws fit scipy's distribution (KS, fixed seed, p > 0.01)
and the density is scipy's; pathwise gradients agree with score-function ones
(plus the boundary terms where the support moves with the parameters);
registered KLs agree with Monte Carlo; shapes hold in the data plate; and a
prior that does not cover the guide's support is refused before training.
"""

import math

import numpy as np
import pytest
import torch
from pyro import poutine
from scipy import stats
from torch.distributions import biject_to, kl_divergence

from pyrogen.distributions import (
    FAMILIES,
    LatentFamilyError,
    ParameterHead,
    check_guide_family,
    check_latent_pair,
    get_family,
    has_analytic_kl,
)
from pyrogen.distributions.erlang import Erlang
from pyrogen.evaluation import log_importance_weights
from pyrogen.models import VAE
from tests.distributions.test_families import ORIGINAL, _test_function

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread beats two on shared cores

NEW = sorted(set(FAMILIES) - ORIGINAL)
# a prior each new guide family may train under (its own family where the supports allow)
PRIOR_FOR = {"uniform": "normal", "triangular": "normal", "reciprocal": "log-normal"}
CORR = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, math.sqrt(1 - 0.09 - 0.16)]])


def test_the_new_families_are_kingma_and_wellings():
    assert NEW == sorted(
        ["pareto", "gompertz", "reciprocal", "uniform", "triangular", "multivariate-t", "erlang", "chi-squared", "f"]
    )
    assert {n: FAMILIES[n].route for n in NEW} == {
        "pareto": "inverse-cdf",
        "gompertz": "inverse-cdf",
        "reciprocal": "inverse-cdf",
        "uniform": "location-scale",
        "triangular": "location-scale",
        "multivariate-t": "location-scale",
        "erlang": "composition",
        "chi-squared": "implicit",
        "f": "composition",
    }


def _marginal(name, d=3):
    """Parameters of a ``d``-dim member and the scipy distribution of its coordinate 0."""
    t = lambda *v: {k: torch.full((d,), float(x)) for k, x in zip(*v)}  # noqa: E731
    loc, scale = 0.3, 1.7
    table = {
        "pareto": (t(["alpha"], (1.7,)), stats.pareto(1.7)),
        "gompertz": (t(["concentration", "rate"], (0.7, scale)), stats.gompertz(0.7, scale=1 / scale)),
        "reciprocal": (t(["loc", "scale"], (loc, 0.8)), stats.loguniform(math.exp(loc - 0.8), math.exp(loc + 0.8))),
        "uniform": (t(["loc", "scale"], (loc, scale)), stats.uniform(loc - scale, 2 * scale)),
        "triangular": (t(["loc", "scale"], (loc, scale)), stats.triang(0.5, loc=loc - scale, scale=2 * scale)),
        # coordinate 0 of a multivariate t is a t with the same df and scale sqrt(Sigma_00) = sigma_0 C_00
        "multivariate-t": (
            {"df": torch.tensor(3.5), **t(["loc", "scale"], (loc, scale)), "corr_cholesky": CORR},
            stats.t(3.5, loc, scale),
        ),
        "erlang": (t(["rate"], (scale,)), stats.erlang(2, scale=1 / scale)),
        "chi-squared": (t(["df"], (3.5,)), stats.chi2(3.5)),
        "f": (t(["df1", "df2"], (4.0, 7.0)), stats.f(4.0, 7.0)),
    }
    return table[name]


@pytest.mark.parametrize("name", NEW)
def test_samples_fit_the_distribution(name):
    """Kolmogorov-Smirnov on coordinate 0 of 4000 draws (fixed seed) against scipy: p > 0.01;
    log densities at the 10/50/90% quantiles equal scipy's within 1e-4."""
    params, reference = _marginal(name)
    torch.manual_seed(1)
    z = FAMILIES[name](**params).rsample((4000,))
    assert z.shape == (4000, 3)
    assert FAMILIES[name].support.check(z).all()
    assert stats.kstest(z[:, 0].double().numpy(), reference.cdf).pvalue > 0.01
    x = torch.as_tensor(reference.ppf(np.array([0.1, 0.5, 0.9])), dtype=torch.float32)
    if name == "multivariate-t":  # the joint density against scipy's multivariate_t
        v = torch.tensor([[0.1, -0.4, 2.0], [1.5, 0.2, -0.7], [3.0, 3.0, 3.0]])
        cov = (params["scale"][:, None] * CORR) @ (params["scale"][:, None] * CORR).T
        expected = stats.multivariate_t(params["loc"].numpy(), cov.double().numpy(), df=3.5).logpdf(v.numpy())
        actual = FAMILIES[name](**params).log_prob(v)
        assert torch.allclose(actual.double(), torch.as_tensor(expected), atol=1e-4)
        return
    lp = FAMILIES[name].make(**{k: v[:1] for k, v in params.items()}).log_prob(x[:, None])
    assert torch.allclose(lp.double(), torch.as_tensor(reference.logpdf(x.double().numpy())), atol=1e-4)


def test_densities_outside_a_bounded_support_are_minus_infinity():
    for name in ("uniform", "triangular", "reciprocal"):
        q = FAMILIES[name](loc=torch.zeros(1), scale=torch.ones(1))
        assert q.log_prob(torch.tensor([[3.0]])).item() == -math.inf, name
    assert FAMILIES["pareto"](alpha=torch.ones(1)).support.check(torch.tensor([[0.5]])).item() is False


def _boundary(name, params):
    """The moving endpoints a, b of each coordinate and the density there, for the Leibniz terms."""
    loc, scale = params["loc"], params["scale"]
    if name == "uniform":
        a, b = loc - scale, loc + scale
        return a, b, 1 / (2 * scale), 1 / (2 * scale)
    a, b = torch.exp(loc - scale), torch.exp(loc + scale)  # reciprocal: q(z) = 1 / (z log(b / a))
    return a, b, 1 / (a * 2 * scale), 1 / (b * 2 * scale)


@pytest.mark.parametrize("name", NEW)
def test_pathwise_gradient_agrees_with_score_function(name):
    """grad E[f(z)] by rsample vs E[(f(z) - b) grad log q(z)] (+ boundary terms): within 5 standard errors.

    Gradients are taken in the unconstrained parameters an encoder outputs, averaged over 25
    chunks of 8000 draws at a fixed seed; f is bounded (a weighted sum of sin 2z). Where the
    support moves with the parameters (Uniform, Reciprocal, whose density is not 0 at the
    ends) the score function misses Leibniz's terms f(b) q(b) grad b - f(a) q(a) grad a,
    added here in closed form, and is taken coordinate by coordinate without a baseline
    (the score's mean is not 0 there).
    The Triangular's density is 0 at its ends, so it needs neither.
    """
    family = FAMILIES[name]
    generator = torch.Generator().manual_seed(3)
    transforms = {k: biject_to(c) for k, c in family.constraints.items()}
    raw = {
        k: (0.5 * torch.randn(t.inverse_shape(family.param_shape(k, 2)), generator=generator)).requires_grad_()
        for k, t in transforms.items()
    }
    leaves = list(raw.values())
    torch.manual_seed(0)
    chunks, n = 25, 8000

    def estimates(pathwise):
        out = []
        for _ in range(chunks):
            params = {k: transforms[k](v) for k, v in raw.items()}
            q = family(**params)
            if pathwise:
                loss = _test_function(q.rsample((n,))).mean()
            else:
                z = q.sample((n,))
                f = _test_function(z)
                loss = ((f - f.mean()) * q.log_prob(z)).mean() * n / (n - 1)
                if name in ("uniform", "reciprocal"):
                    # coordinate by coordinate and without a baseline: here E[grad log q_i] is not 0
                    # (-grad log(b - a), -grad log log(b / a)), so cross terms f_j grad log q_i would not vanish
                    w = torch.linspace(0.5, 1.5, 2)
                    loss = (w * torch.sin(2 * z) * q.base_dist.log_prob(z)).sum(-1).mean()
                    a, b, qa, qb = _boundary(name, params)
                    fa, fb = w * torch.sin(2 * a), w * torch.sin(2 * b)
                    loss = loss + ((fb * qb).detach() * b - (fa * qa).detach() * a).sum()
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            out.append(torch.cat([(torch.zeros_like(v) if g is None else g).flatten() for g, v in zip(grads, leaves)]))
        return torch.stack(out)

    pw, sf = estimates(True), estimates(False)
    se = ((pw.var(0) + sf.var(0)) / chunks).sqrt()
    assert torch.isfinite(pw).all()
    assert ((pw.mean(0) - sf.mean(0)).abs() <= 5 * se + 1e-3).all(), (pw.mean(0), sf.mean(0), se)


def test_erlang_draws_are_sums_of_exponentials():
    """z = (E_1 + ... + E_k) / rate, so dz/d rate = -z / rate exactly, draw by draw."""
    rate = torch.tensor([0.5, 2.0], requires_grad=True)
    z = Erlang(4, rate).rsample((1000,))
    (grad,) = torch.autograd.grad(z.sum(), rate)
    assert torch.allclose(grad, (-z / rate).sum(0).detach(), rtol=1e-5)
    assert get_family("erlang:4").name == "erlang:4" and get_family("erlang") is FAMILIES["erlang"]
    with pytest.raises(LatentFamilyError, match="unknown latent family 'erlang:0'"):
        get_family("erlang:0")
    with pytest.raises(ValueError, match="integer >= 1"):
        Erlang(1.5, rate)


def test_which_new_families_have_analytic_kl():
    assert {n for n in NEW if has_analytic_kl(n, n)} == {"pareto", "reciprocal", "uniform", "erlang", "chi-squared"}


@pytest.mark.parametrize("name", ["pareto", "reciprocal", "uniform", "erlang", "chi-squared"])
def test_analytic_kl_agrees_with_monte_carlo(name):
    """Registered KL(q || p) vs the mean of log q - log p over 200,000 draws (5 SE); for the
    Uniform and Reciprocal q's interval lies inside the standard prior's, where KL is finite."""
    family = FAMILIES[name]
    if name in ("uniform", "reciprocal"):
        params = {"loc": torch.tensor([0.2, -0.3, 0.0]), "scale": torch.tensor([0.5, 0.6, 0.9])}
    else:
        params = family.random_params(3, generator=torch.Generator().manual_seed(5))
    q, p = family(**params), family(**family.prior_params(3))
    torch.manual_seed(0)
    z = q.sample((200000,))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).double()
    exact = kl_divergence(q, p).item()
    assert math.isfinite(exact)
    assert abs(log_ratio.mean().item() - exact) < 5 * log_ratio.std().item() / math.sqrt(z.shape[0]) + 1e-4


def test_uniform_kl_is_infinite_when_q_leaves_the_prior_interval():
    q = FAMILIES["uniform"](loc=torch.tensor([0.9]), scale=torch.tensor([0.5]))
    assert kl_divergence(q, FAMILIES["uniform"](**FAMILIES["uniform"].prior_params(1))).item() == math.inf


@pytest.mark.parametrize("name", NEW)
def test_shapes_inside_the_data_plate(name):
    """Site "z": batch (B,), event (latent_dim,), in the family's support; K particles to the left."""
    prior = PRIOR_FOR.get(name, name)
    vae = VAE(latent_dim=3, hidden=(8,), prior=prior, posterior=name)
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    for trace, family in ((guide, name), (model, prior)):
        site = trace.nodes["z"]
        assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (3,)
        assert site["value"].shape == (5, 3)
        assert site["fn"].log_prob(site["value"]).shape == (5,)
        assert FAMILIES[family].support.check(site["value"]).all()
    log_w = log_importance_weights(vae.model, vae.guide, x, 4)
    assert log_w.shape == (4, 5) and torch.isfinite(log_w).all()
    check_guide_family(name)
    check_latent_pair(prior, name)


@pytest.mark.parametrize("name", NEW)
def test_parameter_head_gives_valid_parameters_for_any_features(name):
    head = ParameterHead(7, name, latent_dim=3)
    h = torch.randn(11, 7) * torch.logspace(-2, 1, 11)[:, None]
    params = head(h)
    for key, constraint in FAMILIES[name].constraints.items():
        assert params[key].shape == (11,) + tuple(FAMILIES[name].param_shape(key, 3))
        assert constraint.check(params[key]).all()
    FAMILIES[name](**params)  # accepted by the distribution


@pytest.mark.parametrize(
    "prior, posterior",
    [
        ("uniform", "uniform"),
        ("triangular", "triangular"),
        ("reciprocal", "reciprocal"),
        ("pareto", "normal"),
        ("uniform", "normal"),
        ("pareto", "erlang"),
        ("f", "uniform"),
    ],
)
def test_a_prior_that_does_not_cover_the_guide_is_refused(prior, posterior):
    """Their KL(q || p) is infinite (for the bounded pairs: as soon as q's interval leaves p's)."""
    with pytest.raises(LatentFamilyError, match=f"guide family '{posterior}' draws z outside the support"):
        check_latent_pair(prior, posterior)


@pytest.mark.parametrize(
    "prior, posterior",
    [
        ("pareto", "pareto"),
        ("normal", "uniform"),
        ("log-normal", "reciprocal"),
        ("uniform", "beta"),
        ("f", "chi-squared"),
        ("multivariate-t", "normal"),
        ("erlang", "gompertz"),
    ],
)
def test_a_prior_that_covers_the_guide_is_accepted(prior, posterior):
    check_latent_pair(prior, posterior)
