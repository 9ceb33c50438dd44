"""Latent families: the distributions a VAE may use as prior p(z) and guide q(z|x).

A :class:`LatentFamily` names a distribution over ``z`` of event shape
``(latent_dim,)``, the constraint of each parameter, the standard prior's
parameter values, and the route by which it is reparameterized (Kingma and
Welling 2014, section 2.4): ``"inverse-cdf"``, ``"location-scale"`` or
``"composition"``. An encoder head (:class:`ParameterHead`) maps features to
valid parameters through :func:`torch.distributions.biject_to`, never through
hand-written clamps.
"""

from dataclasses import dataclass, field

import torch
from pyro import distributions as dist
from torch import nn
from torch.distributions import biject_to, constraints

ROUTES = ("inverse-cdf", "location-scale", "composition")


@dataclass(frozen=True)
class LatentFamily:
    """A family of latent distributions with event shape ``(latent_dim,)``.

    :param str name: the name used on the command line.
    :param callable make: ``make(**params)`` returns a distribution whose
        event shape is ``(latent_dim,)``; each parameter has shape ``(..., latent_dim)``.
    :param dict constraints: parameter name -> :class:`~torch.distributions.constraints.Constraint`.
    :param dict prior: parameter name -> the standard prior's value (a float, broadcast).
    :param str route: how samples are reparameterized, one of :data:`ROUTES`.
    """

    name: str
    make: callable
    constraints: dict
    prior: dict
    route: str
    support: constraints.Constraint = field(default=constraints.real_vector)

    def __call__(self, **params):
        return self.make(**params)

    def prior_params(self, latent_dim, device=None, dtype=torch.float32):
        """The standard prior's parameters as tensors of shape ``(latent_dim,)``."""
        return {k: torch.full((latent_dim,), float(v), device=device, dtype=dtype)
                for k, v in self.prior.items()}

    @property
    def has_rsample(self):
        return self.make(**self.prior_params(1)).has_rsample


def _normal(loc, scale):
    return dist.Normal(loc, scale, validate_args=False).to_event(1)


FAMILIES = {
    "normal": LatentFamily(
        "normal", _normal, {"loc": constraints.real, "scale": constraints.positive},
        {"loc": 0.0, "scale": 1.0}, "location-scale",
    ),
}
"""Registered latent families by name."""


def get_family(family):
    """A :class:`LatentFamily` from itself or its registered name."""
    if isinstance(family, LatentFamily):
        return family
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(
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
