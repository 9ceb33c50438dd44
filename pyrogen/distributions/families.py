"""Latent families: the distributions a VAE may use as prior p(z) and guide q(z|x).

A :class:`LatentFamily` names a distribution over ``z`` of event shape
``(latent_dim,)``, the constraint of each parameter, the standard prior's
parameter values, the support of ``z``, and the route by which its draws are
reparameterized, :math:`z = g_\\phi(\\epsilon)` with noise :math:`\\epsilon`
from a fixed distribution (Kingma and Welling 2014, section 2.4):

``"inverse-cdf"``
    :math:`z = F_\\phi^{-1}(u)`, :math:`u \\sim \\mathcal{U}(0, 1)`
    (Exponential, Cauchy, Gumbel, Weibull, Rayleigh, Pareto, Gompertz, Reciprocal).
``"location-scale"``
    :math:`z = \\mu + \\sigma \\epsilon` with :math:`\\epsilon` from the standard
    member (Normal, Laplace, Student's t, Logistic, Uniform, Triangular, and the
    elliptical multivariate Student's t, :math:`z = \\mu + L \\epsilon`).
``"composition"``
    :math:`z` a differentiable function of other reparameterized draws
    (Log-Normal :math:`e^{\\mu + \\sigma\\epsilon}`, the projected normal
    :math:`y / \\lVert y \\rVert`, Erlang as a sum of :math:`k` exponentials,
    F as a ratio of chi-squared draws).
``"implicit"``
    implicit reparameterization gradients (Figurnov, Mohamed and Mnih 2018),
    :math:`\\nabla_\\phi z = -\\nabla_\\phi F_\\phi(z) / q_\\phi(z)`, which torch
    uses for Gamma, Beta, Dirichlet and Chi-squared, whose draws are made by rejection.

An encoder head (:class:`ParameterHead`) maps features to valid parameters
through :func:`torch.distributions.biject_to`, never through hand-written
clamps. :func:`kl_method` says whether an estimator gets KL(q || p) in closed
form (registered with :func:`torch.distributions.kl_divergence`, which
:class:`pyro.infer.TraceMeanField_ELBO` uses) or by Monte Carlo, and
:func:`check_guide_family` refuses, before training, a guide that an
estimator cannot differentiate along the sampling path.
"""

import math
import re
from dataclasses import dataclass, field

import torch
from pyro import distributions as dist
from torch import nn
from torch.distributions import biject_to, constraints, kl_divergence
from torch.distributions.transforms import AffineTransform, ComposeTransform, ExpTransform

from pyrogen.checks import is_integer
from pyrogen.distributions.erlang import Erlang
from pyrogen.distributions.gompertz import Gompertz
from pyrogen.distributions.projected_normal import ProjectedNormal
from pyrogen.distributions.rayleigh import Rayleigh
from pyrogen.distributions.reciprocal import Reciprocal
from pyrogen.distributions.triangular import Triangular
from pyrogen.errors import PyrogenError

ROUTES = ("inverse-cdf", "location-scale", "composition", "implicit")
"""The reparameterization routes a :class:`LatentFamily` may declare."""


class LatentFamilyError(PyrogenError, ValueError):
    """A latent family that cannot be used as asked (unknown, not reparameterized, wrong support)."""


@dataclass(frozen=True)
class LatentFamily:
    """A family of latent distributions with event shape ``(latent_dim,)``.

    :param str name: the name used on the command line.
    :param callable make: ``make(**params)`` returns a distribution whose
        event shape is ``(latent_dim,)``; each parameter has shape ``(..., latent_dim)``.
    :param dict constraints: parameter name -> :class:`~torch.distributions.constraints.Constraint`.
    :param dict prior: parameter name -> the standard prior's value: a float,
        broadcast to the parameter's shape, or a function ``latent_dim -> tensor``.
    :param str route: how samples are reparameterized, one of :data:`ROUTES`.
    :param support: the :class:`~torch.distributions.constraints.Constraint`
        of one draw ``z`` (event-level, e.g. ``constraints.real_vector``): the
        union over all parameters.
    :param dict shapes: parameter name -> function ``latent_dim -> event shape``
        of that parameter; parameters not named have shape ``(latent_dim,)``
        (e.g. a scalar ``df`` has ``lambda d: ()``, a Cholesky factor ``lambda d: (d, d)``).
    :param bool support_depends_on_params: whether one member's support is a
        parameter-dependent part of ``support`` (Uniform, Triangular,
        Reciprocal); :func:`check_latent_pair` then checks guide draws at
        random parameters too.
    :param bool monte_carlo_kl: whether KL(q || p) involving this family is
        estimated by Monte Carlo whatever torch registers (normalizing-flow
        guides, the VampPrior); :func:`kl_method` then says ``"monte-carlo"``
        and :func:`check_guide_family` refuses :class:`pyro.infer.TraceMeanField_ELBO`.

    A user's own family is one instance; pass it to the VAE, or put it in
    :data:`FAMILIES` (``FAMILIES["half-cauchy"] = half_cauchy``) to use it by name::

        >>> import pyro.distributions as dist
        >>> from torch.distributions import constraints
        >>> from pyrogen.distributions import LatentFamily
        >>> from pyrogen.models import VAE
        >>> half_cauchy = LatentFamily(
        ...     "half-cauchy", lambda scale: dist.HalfCauchy(scale).to_event(1),
        ...     {"scale": constraints.positive}, {"scale": 1.0}, "inverse-cdf",
        ...     constraints.independent(constraints.positive, 1))
        >>> vae = VAE(latent_dim=2, hidden=(8,), prior=half_cauchy, posterior=half_cauchy)
        >>> vae.config["posterior"]
        'half-cauchy'
    """

    name: str
    make: callable
    constraints: dict
    prior: dict
    route: str
    support: constraints.Constraint = field(default=constraints.real_vector)
    shapes: dict = field(default_factory=dict)
    support_depends_on_params: bool = False
    monte_carlo_kl: bool = False

    def __post_init__(self):
        if self.route not in ROUTES:
            raise LatentFamilyError(
                f"route of latent family {self.name!r} must be one of {', '.join(ROUTES)}, got {self.route!r}"
            )
        if set(self.prior) != set(self.constraints):
            raise LatentFamilyError(
                f"latent family {self.name!r}: prior values {sorted(self.prior)} must name the same "
                f"parameters as the constraints {sorted(self.constraints)}"
            )

    def __call__(self, **params):
        return self.make(**params)

    def param_shape(self, name, latent_dim):
        """Event shape of parameter ``name`` for a ``latent_dim``-dimensional z."""
        shape = self.shapes.get(name)
        return torch.Size(shape(latent_dim) if shape is not None else (latent_dim,))

    def prior_params(self, latent_dim, device=None, dtype=None):
        """The standard prior's parameters as tensors (shape ``(latent_dim,)`` unless :attr:`shapes` says) of
        ``dtype`` (None: torch's default dtype, as torch.zeros has it)."""
        params = {}
        for k, v in self.prior.items():
            if callable(v):
                params[k] = torch.as_tensor(v(latent_dim), device=device, dtype=dtype)
            else:
                params[k] = torch.full(self.param_shape(k, latent_dim), float(v), device=device, dtype=dtype)
        return params

    def random_params(self, latent_dim, batch_shape=(), generator=None):
        """Valid parameters of shape ``batch_shape + param_shape``: standard normal
        noise in the unconstrained space pushed through ``biject_to`` (for tests and checks)."""
        params = {}
        for name, constraint in self.constraints.items():
            transform = biject_to(constraint)
            shape = torch.Size(batch_shape) + transform.inverse_shape(self.param_shape(name, latent_dim))
            params[name] = transform(torch.randn(shape, generator=generator))
        return params

    @property
    def has_rsample(self):
        """Whether draws are reparameterized (``rsample``), so pathwise gradients exist."""
        return self.make(**self.prior_params(2)).has_rsample


def _independent(cls):
    """``make`` of a family with independent coordinates: ``cls(**params)`` as one event of dimension 1."""

    def make(**params):
        return cls(**params, validate_args=False).to_event(1)

    make.__name__ = make.__qualname__ = f"independent_{cls.__name__}"
    return make


def _dirichlet(concentration):
    return dist.Dirichlet(concentration, validate_args=False)


def _projected_normal(concentration):
    return ProjectedNormal(concentration, validate_args=False)


def _pareto(alpha):
    """Pareto with minimum :math:`x_m = 1` fixed (so the support :math:`[1, \\infty)` is
    the same for every member) and learned tail index :math:`\\alpha`:
    :math:`z = (1 - u)^{-1/\\alpha}`."""
    return dist.Pareto(torch.ones_like(alpha), alpha, validate_args=False).to_event(1)


def _uniform(loc, scale):
    """Uniform on :math:`[\\mu - \\sigma, \\mu + \\sigma]`: :math:`z = \\mu + \\sigma (2u - 1)`."""
    return dist.Uniform(loc - scale, loc + scale, validate_args=False).to_event(1)


def _reciprocal(loc, scale):
    """Reciprocal on :math:`[e^{\\mu - \\sigma}, e^{\\mu + \\sigma}]`: :math:`\\log z` uniform on
    :math:`[\\mu - \\sigma, \\mu + \\sigma]`."""
    return Reciprocal(torch.exp(loc - scale), torch.exp(loc + scale), validate_args=False).to_event(1)


def _multivariate_t(df, loc, scale, corr_cholesky):
    """Multivariate Student's t with scale matrix :math:`\\Sigma = L L^\\top`,
    :math:`L = \\operatorname{diag}(\\sigma)\\, C` for a correlation Cholesky factor :math:`C`."""
    return dist.MultivariateStudentT(df, loc, scale.unsqueeze(-1) * corr_cholesky, validate_args=False)


def _chi_squared(df):
    return dist.Chi2(df, validate_args=False).to_event(1)


def _fisher_snedecor(df1, df2):
    return dist.FisherSnedecor(df1, df2, validate_args=False).to_event(1)


def erlang_family(k):
    """The Erlang family with integer shape ``k`` (not learned) and learned rate, named ``"erlang:k"``
    (``"erlang"`` is ``k = 2``); :func:`get_family` builds it from its name."""
    if not is_integer(k) or k < 1:
        raise LatentFamilyError(f"the Erlang shape must be an integer >= 1, got {k!r}")
    k = int(k)

    def make(rate):
        return Erlang(k, rate, validate_args=False).to_event(1)

    make.__name__ = make.__qualname__ = f"erlang_{k}"
    return LatentFamily(
        "erlang" if k == 2 else f"erlang:{k}",
        make,
        {"rate": constraints.positive},
        {"rate": 1.0},
        "composition",
        _POSITIVE_VECTOR,
    )


_real, _positive = constraints.real, constraints.positive
_LOC_SCALE = {"loc": _real, "scale": _positive}
_STANDARD = {"loc": 0.0, "scale": 1.0}
_POSITIVE_VECTOR = constraints.independent(constraints.positive, 1)

FAMILIES = {
    family.name: family
    for family in [
        LatentFamily("normal", _independent(dist.Normal), _LOC_SCALE, _STANDARD, "location-scale"),
        LatentFamily("laplace", _independent(dist.Laplace), _LOC_SCALE, _STANDARD, "location-scale"),
        LatentFamily(
            "student-t",
            _independent(dist.StudentT),
            {"df": constraints.greater_than(2.0), **_LOC_SCALE},
            {"df": 3.0, **_STANDARD},
            "location-scale",
        ),
        LatentFamily("logistic", _independent(dist.Logistic), _LOC_SCALE, _STANDARD, "location-scale"),
        LatentFamily("cauchy", _independent(dist.Cauchy), _LOC_SCALE, _STANDARD, "inverse-cdf"),
        LatentFamily("gumbel", _independent(dist.Gumbel), _LOC_SCALE, _STANDARD, "inverse-cdf"),
        LatentFamily(
            "weibull",
            _independent(dist.Weibull),
            {"scale": _positive, "concentration": _positive},
            {"scale": 1.0, "concentration": 2.0},
            "inverse-cdf",
            _POSITIVE_VECTOR,
        ),
        LatentFamily(
            "rayleigh", _independent(Rayleigh), {"scale": _positive}, {"scale": 1.0}, "inverse-cdf", _POSITIVE_VECTOR
        ),
        LatentFamily(
            "exponential",
            _independent(dist.Exponential),
            {"rate": _positive},
            {"rate": 1.0},
            "inverse-cdf",
            _POSITIVE_VECTOR,
        ),
        LatentFamily(
            "log-normal", _independent(dist.LogNormal), _LOC_SCALE, _STANDARD, "composition", _POSITIVE_VECTOR
        ),
        LatentFamily(
            "gamma",
            _independent(dist.Gamma),
            {"concentration": _positive, "rate": _positive},
            {"concentration": 1.0, "rate": 1.0},
            "implicit",
            _POSITIVE_VECTOR,
        ),
        LatentFamily(
            "beta",
            _independent(dist.Beta),
            {"concentration1": _positive, "concentration0": _positive},
            {"concentration1": 1.0, "concentration0": 1.0},
            "implicit",
            constraints.independent(constraints.unit_interval, 1),
        ),
        LatentFamily(
            "dirichlet",
            _dirichlet,
            {"concentration": _positive},
            {"concentration": 1.0},
            "implicit",
            constraints.simplex,
        ),
        LatentFamily(
            "projected-normal",
            _projected_normal,
            {"concentration": constraints.real_vector},
            {"concentration": 0.0},
            "composition",
            dist.constraints.sphere,
        ),
        # the rest of Kingma and Welling's (2014, section 2.4) list
        LatentFamily(
            "pareto",
            _pareto,
            {"alpha": _positive},
            {"alpha": 2.0},
            "inverse-cdf",
            constraints.independent(constraints.greater_than_eq(1.0), 1),
        ),
        LatentFamily(
            "gompertz",
            _independent(Gompertz),
            {"concentration": _positive, "rate": _positive},
            {"concentration": 1.0, "rate": 1.0},
            "inverse-cdf",
            constraints.independent(constraints.nonnegative, 1),
        ),
        LatentFamily(
            "reciprocal",
            _reciprocal,
            _LOC_SCALE,
            _STANDARD,
            "inverse-cdf",
            _POSITIVE_VECTOR,
            support_depends_on_params=True,
        ),
        LatentFamily("uniform", _uniform, _LOC_SCALE, _STANDARD, "location-scale", support_depends_on_params=True),
        LatentFamily(
            "triangular",
            _independent(Triangular),
            _LOC_SCALE,
            _STANDARD,
            "location-scale",
            support_depends_on_params=True,
        ),
        LatentFamily(
            "multivariate-t",
            _multivariate_t,
            {"df": constraints.greater_than(2.0), **_LOC_SCALE, "corr_cholesky": constraints.corr_cholesky},
            {"df": 3.0, **_STANDARD, "corr_cholesky": lambda d: torch.eye(d)},
            "location-scale",
            shapes={"df": lambda d: (), "corr_cholesky": lambda d: (d, d)},
        ),
        erlang_family(2),
        LatentFamily(
            "chi-squared",
            _chi_squared,
            {"df": _positive},
            {"df": 2.0},
            "implicit",
            constraints.independent(constraints.nonnegative, 1),
        ),
        LatentFamily(
            "f",
            _fisher_snedecor,
            {"df1": _positive, "df2": _positive},
            {"df1": 5.0, "df2": 5.0},
            "composition",
            _POSITIVE_VECTOR,
        ),
    ]
}
"""Registered latent families by name. The standard priors: Normal, Laplace, Logistic,
Cauchy, Gumbel and Log-Normal at location 0 and scale 1; Student's t with 3 degrees of
freedom (guides keep :math:`\\nu > 2`, a finite variance: with :math:`\\nu \\to 0` the chi-square draw
underflows to 0 and z to infinity); Weibull(1, 2), the Rayleigh(1), Exponential(1) and Gamma(1, 1); the uniform
Beta(1, 1) on each coordinate, the uniform Dirichlet(1) on the simplex and the uniform
distribution on the sphere (the projected normal with zero concentration); Pareto with
minimum 1 and tail index 2, Gompertz(1, 1), Erlang(2, 1), Chi-squared(2) and F(5, 5);
Uniform and Triangular on [-1, 1] and the Reciprocal on [1/e, e] (location 0, scale 1;
their supports depend on their parameters, so as guides they need a prior that covers
the whole line or half-line: :func:`check_latent_pair`); the elliptical multivariate
Student's t with 3 degrees of freedom, location 0 and scale matrix I."""


def get_family(family):
    """A :class:`LatentFamily` from itself or its registered name (``"erlang:k"`` for any integer k)."""
    if isinstance(family, LatentFamily):
        return family
    try:
        return FAMILIES[family]
    except (KeyError, TypeError):
        match = re.fullmatch(r"erlang:(\d+)", family) if isinstance(family, str) else None
        if match and int(match.group(1)) >= 1:
            return erlang_family(int(match.group(1)))
        raise LatentFamilyError(
            f"unknown latent family {family!r}; expected one of {', '.join(sorted(FAMILIES))}, "
            "'erlang:k' for an integer k >= 1, or a pyrogen.distributions.LatentFamily"
        ) from None


class ParameterHead(nn.Module):
    """Maps features ``(..., in_features)`` to a family's parameters.

    Each parameter gets a linear layer to the unconstrained space, followed by
    ``biject_to(constraint)``, so every output is valid by construction.

    :returns: dict parameter name -> tensor ``(..., latent_dim)``.
    """

    def __init__(self, in_features, family, latent_dim):
        super().__init__()
        self.family = get_family(family)
        self.latent_dim = latent_dim
        self.layers = nn.ModuleDict()
        self.transforms = {}
        self.shapes = {}
        self._lean = {}
        for name, constraint in self.family.constraints.items():
            transform = biject_to(constraint)
            shape = transform.inverse_shape(self.family.param_shape(name, latent_dim))
            self.layers[name] = nn.Linear(in_features, max(1, math.prod(shape)))
            self.transforms[name] = transform
            self.shapes[name] = tuple(shape)

    def forward(self, h):
        out = {}
        for name, layer in self.layers.items():
            transform = self.transforms[name]
            lean = self._lean.get(name)
            if lean is None or lean[0] is not transform:  # the transforms may be replaced after __init__
                lean = self._lean[name] = (transform, lean_transform(transform))
            out[name] = lean[1](layer(h).reshape(h.shape[:-1] + self.shapes[name]))
        return out


def lean_transform(transform):
    """``transform``'s forward map as a function with its no-op steps left out, equal to it bit for bit.

    :func:`~torch.distributions.biject_to` maps onto ``constraints.positive`` by
    ``ComposeTransform([ExpTransform(), AffineTransform(0.0, 1.0)])``, whose affine
    part adds 0 and multiplies by 1: two tensor operations (and two autograd nodes)
    that change no value, at every encoder call. Here an affine step with a plain
    ``loc`` of 0 (resp. ``scale`` of 1) skips the addition (resp. the multiplication),
    composites are unrolled, ``ExpTransform`` is ``torch.exp``; any other transform
    is called as it is. (x + 0.0 differs from x only for x = -0.0, whose exp is the
    same 1; no transform here reads the sign of a zero.)
    """
    if type(transform) is ComposeTransform:
        steps = [lean_transform(part) for part in transform.parts]
        steps = [step for step in steps if step is not _identity]

        def composed(x):
            for step in steps:
                x = step(x)
            return x

        return steps[0] if len(steps) == 1 else (_identity if not steps else composed)
    if type(transform) is ExpTransform:
        return torch.exp
    if type(transform) is AffineTransform and transform.event_dim == 0:
        loc, scale = transform.loc, transform.scale
        if isinstance(loc, (int, float)) and isinstance(scale, (int, float)):
            if loc == 0 and scale == 1:
                return _identity
            if loc == 0:
                return lambda x: x * scale
            if scale == 1:
                return lambda x: x + loc
    return transform


def _identity(x):
    return x


def has_analytic_kl(posterior, prior, latent_dim=3):
    """Whether KL(q || p) between the two families is registered in closed form.

    Tried on a guide with random parameters against the standard prior, as the
    sites meet in a data plate, so registrations that hold only for equal
    parameters (torch's ``TransformedDistribution`` pair) do not count.
    """
    posterior, prior = get_family(posterior), get_family(prior)
    if posterior.monte_carlo_kl or prior.monte_carlo_kl:
        return False
    generator = torch.Generator().manual_seed(0)
    q = posterior(**posterior.random_params(latent_dim, (2,), generator=generator))
    p = prior(**prior.prior_params(latent_dim)).expand((2,))
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


def kl_method(posterior, prior, analytic):
    """How an ELBO estimator gets KL(q || p): ``"analytic"`` or ``"monte-carlo"``.

    :param posterior: guide family (name or :class:`LatentFamily`).
    :param prior: prior family.
    :param bool analytic: whether the estimator uses closed forms where they are
        registered (:class:`pyro.infer.TraceMeanField_ELBO` does, :class:`pyro.infer.Trace_ELBO`
        does not); it falls back to the single-draw estimate
        :math:`\\log q(z \\mid x) - \\log p(z)` otherwise.
    """
    return "analytic" if analytic and has_analytic_kl(posterior, prior) else "monte-carlo"


def _is_mean_field(estimator):
    from pyro.infer import TraceMeanField_ELBO

    if isinstance(estimator, str):
        return estimator in ("TraceMeanField_ELBO", "ReparamTraceMeanField_ELBO")
    return isinstance(estimator, TraceMeanField_ELBO)


def check_guide_family(posterior, estimator="the ELBO estimator", prior=None):
    """Raise :class:`LatentFamilyError` unless the guide family draws with ``rsample``,
    or when the estimator promises a closed-form KL that the pair cannot have.

    Call it before training with an estimator that needs pathwise gradients
    (every estimator of :mod:`pyrogen.training` does); a score-function
    fallback would train, but with a gradient of far higher variance.

    :param posterior: the guide family.
    :param estimator: the estimator or its class name, for the message; a
        :class:`pyro.infer.TraceMeanField_ELBO` (or that name) is refused when
        the guide or ``prior`` has :attr:`LatentFamily.monte_carlo_kl` (a flow
        guide, a VampPrior): its KL(q || p) has no closed form.
    :param prior: the prior family, checked for :attr:`LatentFamily.monte_carlo_kl` too.
    """
    posterior = get_family(posterior)
    name = estimator if isinstance(estimator, str) else type(estimator).__name__
    for role, family in (("guide", posterior), ("prior", None if prior is None else get_family(prior))):
        if family is not None and family.monte_carlo_kl and _is_mean_field(estimator):
            raise LatentFamilyError(
                f"the {role} {family.name!r} has no closed-form KL(q || p) (a normalizing-flow guide or a "
                f"VampPrior), but {name} computes the KL analytically; use a Monte Carlo estimator "
                "(pyro.infer.Trace_ELBO, pyrogen.infer.ReparamTrace_ELBO: --elbo trace)"
            )
    if not posterior.has_rsample:
        raise LatentFamilyError(
            f"the guide family {posterior.name!r} is not reparameterized (its distribution has no "
            f"rsample), but {estimator} needs pathwise gradients; pick a reparameterized family "
            f"({', '.join(name for name, f in FAMILIES.items() if f.has_rsample)}) or give the "
            "distribution an rsample by one of the routes inverse-cdf, location-scale or composition"
        )


def check_latent_pair(prior, posterior, latent_dim=3):
    """Raise :class:`LatentFamilyError` unless draws of the guide lie in the prior's support.

    Checked on 256 draws of the guide family's standard member and, for a guide
    whose support depends on its parameters
    (:attr:`LatentFamily.support_depends_on_params`: Uniform, Triangular,
    Reciprocal), on 64 draws at each of 16 random parameter settings (the global
    RNG is left untouched): a Uniform guide can move its interval anywhere on
    the line, so only a prior that covers the whole line (or half-line) keeps
    KL(q || p) finite.

    Otherwise :math:`\\log p(z) = -\\infty` (or NaN) and every ELBO is meaningless,
    e.g. a Normal guide under a Gamma prior, or a Uniform guide under a Uniform prior.
    """
    prior, posterior = get_family(prior), get_family(posterior)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        z = posterior(**posterior.prior_params(latent_dim)).sample((256,))
        if posterior.support_depends_on_params:
            params = posterior.random_params(latent_dim, (16,), generator=torch.Generator().manual_seed(0))
            z = torch.cat([z, posterior(**params).sample((64,)).reshape(-1, z.shape[-1])])
        p = prior(**prior.prior_params(latent_dim))
        ok = p.support.check(z).all() and torch.isfinite(p.log_prob(z)).all()
    if not ok:
        raise LatentFamilyError(
            f"guide family {posterior.name!r} draws z outside the support of prior family "
            f"{prior.name!r} ({posterior.support} vs {prior.support}); pick families on the same support"
        )
