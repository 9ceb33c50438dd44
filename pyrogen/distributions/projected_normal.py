"""The projected normal on the unit sphere, with a density in every dimension.

:class:`pyro.distributions.ProjectedNormal` draws :math:`y \\sim \\mathcal{N}(\\mu, I)`
and returns :math:`x = y / \\lVert y \\rVert` (reparameterized by composition),
but implements :meth:`log_prob` only in dimensions 2, 3 and 4. A VAE's ELBO
needs :math:`\\log q(z \\mid x)` and :math:`\\log p(z)` for any latent
dimension d, so this subclass evaluates the density (with respect to the
surface measure of :math:`S^{d-1}`, as Pyro's) in any dimension by writing
:math:`y = r x` in polar coordinates (Hernandez-Stumpfhauser, Breidt and van
der Woerd 2017):

.. math:: p(x) = (2\\pi)^{-d/2} e^{-\\lVert\\mu\\rVert^2 / 2}
   \\int_0^\\infty r^{d-1} e^{-r^2/2 + r t}\\, dr, \\qquad t = \\mu^\\top x,

and computing the one-dimensional integral by the trapezoidal rule in
:math:`s = \\log r` around the integrand's mode, where it is smooth and
decays like a Gaussian: 101 nodes over 15 widths either side of the mode (relative error
below 1e-6 against adaptive quadrature in float64; it agrees with Pyro's
closed forms in d = 2, 3, 4).
"""

import math

import torch
from pyro.distributions import ProjectedNormal as _PyroProjectedNormal

_NODES = torch.linspace(-15.0, 15.0, 101, dtype=torch.float64)
"""Quadrature nodes in units of the integrand's width in log r."""


def _log_radial_integral(t, n):
    """:math:`\\log \\int_0^\\infty r^n e^{-r^2/2 + r t} dr` for ``t`` of any shape, ``n`` >= 1."""
    # Mode and width of the integrand in s = log r: maximise (n + 1) s - r^2 / 2 + r t.
    with torch.no_grad():
        mode = (t + torch.sqrt(t**2 + 4 * (n + 1))) / 2
        width = torch.rsqrt(mode * (2 * mode - t))
        nodes = _NODES.to(t)
        s = mode.log().unsqueeze(-1) + width.unsqueeze(-1) * nodes
        step = width * (nodes[1] - nodes[0])
    r = s.exp()
    log_f = (n + 1) * s - r**2 / 2 + r * t.unsqueeze(-1)
    return torch.logsumexp(log_f, dim=-1) + step.log()


class ProjectedNormal(_PyroProjectedNormal):
    """Pyro's :class:`~pyro.distributions.ProjectedNormal` with :meth:`log_prob` in any dimension >= 2.

    :param torch.Tensor concentration: :math:`\\mu`, shape ``(..., d)``; its
        direction is the location on the sphere, its norm the concentration
        (0 is the uniform distribution on the sphere).
    """

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ProjectedNormal, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        d = self.concentration.shape[-1]
        t = (self.concentration * value).sum(-1)
        return (_log_radial_integral(t, d - 1) - d / 2 * math.log(2 * math.pi)
                - self.concentration.pow(2).sum(-1) / 2)
