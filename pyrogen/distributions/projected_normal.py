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
decays like a Gaussian on the right of its mode and exponentially on its left:
161 nodes over 15 widths to the right and up to 40 to the left
(error of :math:`\\log p` below 1e-6 against adaptive quadrature in float64 for
:math:`d \\ge 2` and :math:`|\\mu^\\top x| \\le 30`; it agrees with Pyro's closed
forms in d = 2, 3, 4 where those are accurate).
"""

import math

import torch
from pyro.distributions import ProjectedNormal as _PyroProjectedNormal

_NODES = torch.linspace(0.0, 1.0, 161, dtype=torch.float64)
"""Quadrature nodes, as fractions of the interval of integration in log r."""


def _log_radial_integral(t, n):
    """:math:`\\log \\int_0^\\infty r^n e^{-r^2/2 + r t} dr` for ``t`` of any shape, ``n`` >= 1.

    The integrand in :math:`s = \\log r` falls like a Gaussian of width ``w`` to the right of
    its mode but only like :math:`e^{(n+1)s}` to the left, so the interval reaches 15 widths to
    the right and :math:`\\max(15 w, \\min(40 w, 24 / (n + 1)))` to the left (a truncated
    tail below :math:`e^{-24}` of the peak either way), with the step at most 0.35 w.
    """
    # Mode and width of the integrand in s = log r: maximise (n + 1) s - r^2 / 2 + r t.
    with torch.no_grad():
        mode = (t + torch.sqrt(t**2 + 4 * (n + 1))) / 2
        width = torch.rsqrt(mode * (2 * mode - t))
        lower = mode.log() - torch.clamp(torch.clamp(40 * width, max=24.0 / (n + 1)), min=15 * width)
        upper = mode.log() + 15 * width
        nodes = _NODES.to(t)
        s = lower.unsqueeze(-1) + (upper - lower).unsqueeze(-1) * nodes
        step = (upper - lower) * (nodes[1] - nodes[0])
    r = s.exp()
    log_f = (n + 1) * s - r**2 / 2 + r * t.unsqueeze(-1)
    return torch.logsumexp(log_f, dim=-1) + step.log()


class ProjectedNormal(_PyroProjectedNormal):
    """Pyro's :class:`~pyro.distributions.ProjectedNormal` with :meth:`log_prob` in any dimension >= 2.

    :param torch.Tensor concentration: :math:`\\mu`, shape ``(..., d)``; its
        direction is the location on the sphere, its norm the concentration
        (0 is the uniform distribution on the sphere).

    :meth:`entropy` has no closed form and raises ``NotImplementedError``, as Pyro's does.
    Where :math:`\\mu^\\top x` is strongly negative Pyro's closed forms lose all accuracy
    (at :math:`\\mu^\\top x = -30` in d = 3 Pyro gives -37.88 against the exact -462.27);
    this quadrature stays within 1e-6 there.
    """

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ProjectedNormal, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        d = self.concentration.shape[-1]
        t = (self.concentration * value).sum(-1)
        return _log_radial_integral(t, d - 1) - d / 2 * math.log(2 * math.pi) - self.concentration.pow(2).sum(-1) / 2
