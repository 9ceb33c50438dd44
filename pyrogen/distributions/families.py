"""Latent families: the distributions a VAE may use as prior p(z) and guide q(z|x).

A :class:`LatentFamily` names a distribution over ``z`` of event shape
``(latent_dim,)``, the constraint of each parameter, the standard prior's
parameter values, the support of ``z``, and the route by which its draws are
reparameterized, :math:`z = g_\\phi(\\epsilon)` with noise :math:`\\epsilon`
from a fixed distribution (Kingma and Welling 2014, section 2.4):

``"inverse-cdf"``
    :math:`z = F_\\phi^{-1}(u)`, :math:`u \\sim \\mathcal{U}(0, 1)`
    (Exponential, Cauchy, Gumbel, Weibull, Rayleigh).
``"location-scale"``
    :math:`z = \\mu + \\sigma \\epsilon` with :math:`\\epsilon` from the standard
    member (Normal, Laplace, Student's t, Logistic).
``"composition"``
    :math:`z` a differentiable function of other reparameterized draws
    (Log-Normal :math:`e^{\\mu + \\sigma\\epsilon}`, the projected normal
    :math:`y / \\lVert y \\rVert`).
``"implicit"``
    implicit reparameterization gradients (Figurnov, Mohamed and Mnih 2018),
    :math:`\\nabla_\\phi z = -\\nabla_\\phi F_\\phi(z) / q_\\phi(z)`, which torch
    uses for Gamma, Beta and Dirichlet, whose draws are made by rejection.

An encoder head (:class:`ParameterHead`) maps features to valid parameters
through :func:`torch.distributions.biject_to`, never through hand-written
clamps. :func:`kl_method` says whether an estimator gets KL(q || p) in closed
form (registered with :func:`torch.distributions.kl_divergence`, which
:class:`pyro.infer.TraceMeanField_ELBO` uses) or by Monte Carlo, and
:func:`check_guide_family` refuses, before training, a guide that an
estimator cannot differentiate along the sampling path.
"""

from dataclasses import dataclass, field

import torch
from pyro import distributions as dist
from torch import nn
from torch.distributions import biject_to, constraints, kl_divergence

from pyrogen.distributions.projected_normal import ProjectedNormal
from pyrogen.distributions.rayleigh import Rayleigh
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
    :param dict prior: parameter name -> the standard prior's value (a float, broadcast).
    :param str route: how samples are reparameterized, one of :data:`ROUTES`.
    :param support: the :class:`~torch.distributions.constraints.Constraint`
        of one draw ``z`` (event-level, e.g. ``constraints.real_vector``).

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

    def prior_params(self, latent_dim, device=None, dtype=torch.float32):
        """The standard prior's parameters as tensors of shape ``(latent_dim,)``."""
        return {k: torch.full((latent_dim,), float(v), device=device, dtype=dtype)
                for k, v in self.prior.items()}

    def random_params(self, latent_dim, batch_shape=(), generator=None):
        """Valid parameters of shape ``batch_shape + (latent_dim,)``: standard normal
        noise in the unconstrained space pushed through ``biject_to`` (for tests and checks)."""
        params = {}
        for name, constraint in self.constraints.items():
            transform = biject_to(constraint)
            shape = torch.Size(batch_shape) + transform.inverse_shape((latent_dim,))
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


_real, _positive = constraints.real, constraints.positive
_LOC_SCALE = {"loc": _real, "scale": _positive}
_STANDARD = {"loc": 0.0, "scale": 1.0}
_POSITIVE_VECTOR = constraints.independent(constraints.positive, 1)

FAMILIES = {
    family.name: family
    for family in [
        LatentFamily("normal", _independent(dist.Normal), _LOC_SCALE, _STANDARD, "location-scale"),
        LatentFamily("laplace", _independent(dist.Laplace), _LOC_SCALE, _STANDARD, "location-scale"),
        LatentFamily("student-t", _independent(dist.StudentT), {"df": constraints.greater_than(2.0), **_LOC_SCALE},
                     {"df": 3.0, **_STANDARD}, "location-scale"),
        LatentFamily("logistic", _independent(dist.Logistic), _LOC_SCALE, _STANDARD, "location-scale"),
        LatentFamily("cauchy", _independent(dist.Cauchy), _LOC_SCALE, _STANDARD, "inverse-cdf"),
        LatentFamily("gumbel", _independent(dist.Gumbel), _LOC_SCALE, _STANDARD, "inverse-cdf"),
        LatentFamily("weibull", _independent(dist.Weibull), {"scale": _positive, "concentration": _positive},
                     {"scale": 1.0, "concentration": 2.0}, "inverse-cdf", _POSITIVE_VECTOR),
        LatentFamily("rayleigh", _independent(Rayleigh), {"scale": _positive}, {"scale": 1.0}, "inverse-cdf",
                     _POSITIVE_VECTOR),
        LatentFamily("exponential", _independent(dist.Exponential), {"rate": _positive}, {"rate": 1.0}, "inverse-cdf",
                     _POSITIVE_VECTOR),
        LatentFamily("log-normal", _independent(dist.LogNormal), _LOC_SCALE, _STANDARD, "composition",
                     _POSITIVE_VECTOR),
        LatentFamily("gamma", _independent(dist.Gamma), {"concentration": _positive, "rate": _positive},
                     {"concentration": 1.0, "rate": 1.0}, "implicit", _POSITIVE_VECTOR),
        LatentFamily("beta", _independent(dist.Beta), {"concentration1": _positive, "concentration0": _positive},
                     {"concentration1": 1.0, "concentration0": 1.0}, "implicit",
                     constraints.independent(constraints.unit_interval, 1)),
        LatentFamily("dirichlet", _dirichlet, {"concentration": _positive}, {"concentration": 1.0},
                     "implicit", constraints.simplex),
        LatentFamily("projected-normal", _projected_normal, {"concentration": constraints.real_vector},
                     {"concentration": 0.0}, "composition", dist.constraints.sphere),
    ]
}
"""Registered latent families by name. The standard priors: Normal, Laplace, Logistic,
Cauchy, Gumbel and Log-Normal at location 0 and scale 1; Student's t with 3 degrees of
freedom (guides keep :math:`\\nu > 2`, a finite variance: with :math:`\\nu \\to 0` the chi-square draw
underflows to 0 and z to infinity); Weibull(1, 2), the Rayleigh(1), Exponential(1) and Gamma(1, 1); the uniform
Beta(1, 1) on each coordinate, the uniform Dirichlet(1) on the simplex and the uniform
distribution on the sphere (the projected normal with zero concentration)."""


def get_family(family):
    """A :class:`LatentFamily` from itself or its registered name."""
    if isinstance(family, LatentFamily):
        return family
    try:
        return FAMILIES[family]
    except KeyError:
        raise LatentFamilyError(
            f"unknown latent family {family!r}; expected one of {', '.join(sorted(FAMILIES))} "
            "or a pyrogen.distributions.LatentFamily"
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
        for name, constraint in self.family.constraints.items():
            transform = biject_to(constraint)
            (width,) = transform.inverse_shape((latent_dim,))
            self.layers[name] = nn.Linear(in_features, width)
            self.transforms[name] = transform

    def forward(self, h):
        return {name: self.transforms[name](layer(h)) for name, layer in self.layers.items()}


def has_analytic_kl(posterior, prior, latent_dim=3):
    """Whether KL(q || p) between the two families is registered in closed form.

    Tried on a guide with random parameters against the standard prior, as the
    sites meet in a data plate, so registrations that hold only for equal
    parameters (torch's ``TransformedDistribution`` pair) do not count.
    """
    posterior, prior = get_family(posterior), get_family(prior)
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


def check_guide_family(posterior, estimator="the ELBO estimator"):
    """Raise :class:`LatentFamilyError` unless the guide family draws with ``rsample``.

    Call it before training with an estimator that needs pathwise gradients
    (every estimator of :mod:`pyrogen.training` does); a score-function
    fallback would train, but with a gradient of far higher variance.
    """
    posterior = get_family(posterior)
    if not posterior.has_rsample:
        raise LatentFamilyError(
            f"the guide family {posterior.name!r} is not reparameterized (its distribution has no "
            f"rsample), but {estimator} needs pathwise gradients; pick a reparameterized family "
            f"({', '.join(name for name, f in FAMILIES.items() if f.has_rsample)}) or give the "
            "distribution an rsample by one of the routes inverse-cdf, location-scale or composition"
        )


def check_latent_pair(prior, posterior, latent_dim=3):
    """Raise :class:`LatentFamilyError` unless draws of the guide lie in the prior's support.

    Checked on 256 draws of the guide family's standard member (the global RNG is left untouched).

    Otherwise :math:`\\log p(z) = -\\infty` (or NaN) and every ELBO is meaningless,
    e.g. a Normal guide under a Gamma prior.
    """
    prior, posterior = get_family(prior), get_family(posterior)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        z = posterior(**posterior.prior_params(latent_dim)).sample((256,))
        p = prior(**prior.prior_params(latent_dim))
        ok = p.support.check(z).all() and torch.isfinite(p.log_prob(z)).all()
    if not ok:
        raise LatentFamilyError(
            f"guide family {posterior.name!r} draws z outside the support of prior family "
            f"{prior.name!r} ({posterior.support} vs {prior.support}); pick families on the same support"
        )
