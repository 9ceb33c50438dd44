"""Observation likelihoods p(x|z): from a decoder's output to a distribution over images.

A likelihood is an :class:`~torch.nn.Module` (it may own parameters, such as a
learned noise scale) that takes the decoder output of shape
``(..., num_params * C, H, W)`` and returns a distribution with event shape
``(C, H, W)``. :meth:`Likelihood.check` tests that data lie in the support and
raises a :class:`~pyrogen.errors.DataError` that says what was expected.

The decoder's ``P * C`` output channels are read as ``P`` blocks of ``C``
channels: block ``i`` holds parameter ``i`` of every image channel (for a
per-pixel Normal, the locations and then the unconstrained scales).

Which data each likelihood scores (:attr:`Likelihood.data_kind`):

* ``"binary"``: 0/1 pixels (Bernoulli); the data are binarized (``binarize``
  ``"dynamic"`` or ``"static"``).
* ``"unit-interval"``: grey levels in [0, 1] (Continuous Bernoulli, Beta, the
  relaxed Bernoulli); ``"real"``: any real value (Normal, Laplace); ``"8-bit"``:
  the 256 levels :math:`k / 255` as 8-bit images load (Categorical-256,
  discretized logistic mixture). These need ``binarize="none"``.

Log-likelihoods of different kinds are not comparable: binary and 8-bit
likelihoods are probabilities of discrete data (at most 0 nats), densities of
continuous data are not bounded above and change with the units of x.
"""

import math

import torch
from pyro import distributions as dist
from torch import nn
from torch.distributions import biject_to, constraints

from pyrogen.distributions.discretized import DiscretizedLogisticMixture, QuantizedCategorical, levels
from pyrogen.errors import DataError

DATA_KINDS = ("binary", "unit-interval", "real", "8-bit")
"""What a likelihood scores; see :attr:`Likelihood.data_kind`."""


class Likelihood(nn.Module):
    """Base class. Subclasses set :attr:`num_params` and implement :meth:`forward`."""

    num_params = 1
    """Decoder output channels per image channel."""

    data_kind = None
    """One of :data:`DATA_KINDS`: the data this likelihood scores (None: not declared,
    any binarization is accepted)."""

    def check_binarize(self, binarize):
        """Raise :class:`DataError` unless ``binarize`` (``"none"``, ``"static"``,
        ``"dynamic"``) gives the data this likelihood scores."""
        if self.data_kind in (None, "binary"):
            return  # grey levels under a binary likelihood are caught, with advice, by check()
        if binarize != "none":
            raise DataError(
                f"the {type(self).__name__} scores {self.data_kind} data, but binarize={binarize!r} "
                "turns the grey levels into 0/1 pixels; use binarize='none' (--binarize none)"
            )

    def _unflatten(self, out):
        """``(..., P * C, H, W)`` -> ``(..., P, C, H, W)``."""
        if out.shape[-3] % self.num_params:
            raise ValueError(
                f"decoder output must have num_params * C = {self.num_params} * C channels, "
                f"got {out.shape[-3]}"
            )
        return out.unflatten(-3, (self.num_params, out.shape[-3] // self.num_params))

    def forward(self, out):
        raise NotImplementedError

    def check(self, x, name="x"):
        """Raise :class:`DataError` unless ``x`` lies in the support."""
        if not torch.isfinite(x).all():
            raise DataError(f"{name} holds NaN or infinite values")

    def mean(self, out):
        """The mean image E[x|z] for a decoder output, used for pictures."""
        return self.forward(out).mean


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with logits from the decoder.

    The data must be binary. ``relaxed=True`` declares that grey levels in
    [0, 1] are scored by the same cross-entropy formula (as in Pyro's VAE
    tutorial); that is not a normalised density over [0, 1] (see
    Loaiza-Ganem and Cunningham 2019, and the Continuous Bernoulli).
    """

    data_kind = "binary"

    def __init__(self, relaxed=False):
        super().__init__()
        self.relaxed = relaxed
        if relaxed:
            self.data_kind = "unit-interval"

    def check_binarize(self, binarize):
        if not self.relaxed:
            super().check_binarize(binarize)

    def forward(self, logits):
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(3)

    def check(self, x, name="x"):
        super().check(x, name)
        lo, hi = x.min().item(), x.max().item()
        if lo < 0 or hi > 1:
            raise DataError(
                f"{name} must lie in [0, 1] under a Bernoulli likelihood, got values in [{lo:.4g}, {hi:.4g}]"
            )
        if not self.relaxed and not ((x == 0) | (x == 1)).all():
            raise DataError(
                f"{name} is not binary, but the Bernoulli likelihood scores only 0/1 pixels: "
                "binarize the data (binarize='dynamic' or 'static'), declare the relaxation "
                "(BernoulliLikelihood(relaxed=True), --likelihood bernoulli-relaxed), or pick a "
                "likelihood for continuous data"
            )

    def mean(self, logits):
        return torch.sigmoid(logits)


class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli pixels (Loaiza-Ganem and Cunningham 2019) with logits from the decoder.

    The normalised density on [0, 1] whose unnormalised form is the Bernoulli
    cross-entropy: :math:`p(x \\mid \\lambda) = C(\\lambda)\\, \\lambda^x (1 - \\lambda)^{1 - x}`.
    Its mean is not :math:`\\lambda`; :meth:`mean` returns the true mean.
    """

    data_kind = "unit-interval"

    def forward(self, logits):
        return dist.ContinuousBernoulli(logits=logits, validate_args=False).to_event(3)

    def check(self, x, name="x"):
        super().check(x, name)
        _check_interval(x, name, 0.0, 1.0, "a Continuous Bernoulli likelihood")


def _check_interval(x, name, lo, hi, what, open_interval=False):
    xmin, xmax = x.min().item(), x.max().item()
    bad = (xmin <= lo or xmax >= hi) if open_interval else (xmin < lo or xmax > hi)
    if bad:
        interval = f"({lo:g}, {hi:g})" if open_interval else f"[{lo:g}, {hi:g}]"
        raise DataError(f"{name} must lie in {interval} under {what}, got values in [{xmin:.4g}, {xmax:.4g}]")


SCALES = ("fixed", "shared", "pixel")
"""How a location-scale likelihood gets its scale; see :class:`LocationScaleLikelihood`."""


class LocationScaleLikelihood(Likelihood):
    """Pixels :math:`x = \\mu_\\theta(z) + \\sigma \\epsilon` with the decoder giving :math:`\\mu`.

    :param str scale: ``"fixed"`` (:math:`\\sigma` = ``fixed_scale``, a constant),
        ``"shared"`` (one learned :math:`\\sigma` for every pixel and image) or
        ``"pixel"`` (a second decoder output per pixel, :math:`\\sigma_\\theta(z)`).
    :param float fixed_scale: :math:`\\sigma` when ``scale="fixed"``, in pixel units.
    :param float min_scale: learned scales are ``min_scale + exp(u)`` (``biject_to``
        of ``constraints.greater_than(min_scale)``). Without a floor the density of a
        pixel that is always 0 (Fashion-MNIST's border) grows without bound as
        :math:`\\sigma \\to 0`.
    """

    base = None
    """The :class:`~pyro.distributions.TorchDistribution` class with ``(loc, scale)``."""
    data_kind = "real"

    def __init__(self, scale="shared", fixed_scale=0.1, min_scale=1e-3):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        self.scale, self.fixed_scale, self.min_scale = scale, float(fixed_scale), float(min_scale)
        self.num_params = 2 if scale == "pixel" else 1
        self.scale_transform = biject_to(constraints.greater_than(self.min_scale))
        if scale == "shared":
            self.raw_scale = nn.Parameter(self.scale_transform.inv(torch.tensor(0.1)))

    def params(self, out):
        """``(loc, scale)`` of every pixel for decoder output ``out``."""
        if self.scale == "pixel":
            loc, raw = self._unflatten(out).unbind(-4)
            return loc, self.scale_transform(raw)
        if self.scale == "shared":
            return out, self.scale_transform(self.raw_scale).expand(out.shape)
        return out, out.new_full((), self.fixed_scale).expand(out.shape)

    def forward(self, out):
        loc, scale = self.params(out)
        return self.base(loc, scale, validate_args=False).to_event(3)

    def mean(self, out):
        return self.params(out)[0]


class NormalLikelihood(LocationScaleLikelihood):
    """Gaussian pixels :math:`\\mathcal{N}(x \\mid \\mu_\\theta(z), \\sigma^2)`; see
    :class:`LocationScaleLikelihood` for the scale options. With a fixed scale the
    ELBO is a squared error plus a constant."""

    base = dist.Normal


class LaplaceLikelihood(LocationScaleLikelihood):
    """Laplace pixels :math:`\\frac{1}{2\\sigma} e^{-|x - \\mu_\\theta(z)| / \\sigma}`
    (an absolute error); see :class:`LocationScaleLikelihood`."""

    base = dist.Laplace


class BetaLikelihood(Likelihood):
    """Beta pixels with both concentrations from the decoder (through ``biject_to(positive)``).

    The Beta density lives on the open interval (0, 1), and image data hold
    exact 0s and 1s. ``squeeze=ε > 0`` models :math:`x \\in [0, 1]` as
    :math:`x = (y - \\varepsilon) / (1 - 2\\varepsilon)` with :math:`y` Beta
    distributed, a normalised density on the slightly wider interval
    :math:`(-\\frac{\\varepsilon}{1-2\\varepsilon}, 1 + \\frac{\\varepsilon}{1-2\\varepsilon})`:

    .. math:: \\log p(x) = \\log \\mathrm{Beta}(\\varepsilon + (1 - 2\\varepsilon) x) + \\log(1 - 2\\varepsilon).

    With ``squeeze=0`` the data must lie strictly inside (0, 1).

    :param float squeeze: ε in [0, 0.5).
    """

    num_params = 2
    data_kind = "unit-interval"

    def __init__(self, squeeze=1e-3):
        super().__init__()
        if not 0 <= squeeze < 0.5:
            raise ValueError(f"squeeze must be in [0, 0.5), got {squeeze!r}")
        self.squeeze = float(squeeze)
        self.positive = biject_to(constraints.positive)

    def forward(self, out):
        c1, c0 = self.positive(self._unflatten(out)).unbind(-4)
        beta = dist.Beta(c1, c0, validate_args=False)
        if self.squeeze:
            eps = self.squeeze
            transform = dist.transforms.AffineTransform(-eps / (1 - 2 * eps), 1 / (1 - 2 * eps))
            beta = dist.TransformedDistribution(beta, [transform], validate_args=False)
        return beta.to_event(3)

    def check(self, x, name="x"):
        super().check(x, name)
        if self.squeeze:
            _check_interval(x, name, 0.0, 1.0, f"a Beta likelihood with squeeze={self.squeeze:g}")
        else:
            _check_interval(x, name, 0.0, 1.0, "a Beta likelihood with squeeze=0 (use squeeze > 0 for "
                            "data with exact 0s and 1s)", open_interval=True)

    def mean(self, out):
        c1, c0 = self.positive(self._unflatten(out)).unbind(-4)
        m = c1 / (c1 + c0)
        return (m - self.squeeze) / (1 - 2 * self.squeeze)


def _check_levels(x, name, num_levels, what):
    _check_interval(x, name, 0.0, 1.0, what)
    if not levels(num_levels).check(x).all():
        raise DataError(
            f"{name} must hold the {num_levels} grey levels k/{num_levels - 1} of 8-bit images under {what}; "
            "these data hold other values (binarized or rescaled data?): pass the images as loaded "
            "(binarize='none')"
        )


class Categorical256Likelihood(Likelihood):
    """A 256-way softmax per pixel over the levels :math:`k / 255` (PixelRNN, van den Oord et al. 2016).

    The decoder gives 256 logits per pixel and channel; see
    :class:`~pyrogen.distributions.discretized.QuantizedCategorical`.
    """

    num_params = 256
    data_kind = "8-bit"

    def forward(self, out):
        logits = self._unflatten(out).movedim(-4, -1)
        return QuantizedCategorical(logits, validate_args=False).to_event(3)

    def check(self, x, name="x"):
        super().check(x, name)
        _check_levels(x, name, 256, "a 256-level categorical likelihood")


class DiscretizedLogisticMixtureLikelihood(Likelihood):
    """A discretized mixture of ``num_components`` logistics per pixel (PixelCNN++, Salimans et al. 2017).

    The decoder gives, per pixel and channel, ``num_components`` mixture
    logits, locations and unconstrained scales (``3 * num_components``
    parameters). Locations are the decoder output plus 0.5 (so an untrained
    decoder starts in the middle of [0, 1]); scales are ``min_scale + exp(u)`` through ``biject_to``
    (PixelCNN++ floors the log-scale at -7, i.e. :math:`e^{-7} \\approx 9 \\cdot 10^{-4}`).
    See :class:`~pyrogen.distributions.discretized.DiscretizedLogisticMixture`.

    :param int num_components: K (PixelCNN++ uses 10; 5 is ample for grey levels).
    """

    data_kind = "8-bit"

    def __init__(self, num_components=5, min_scale=math.exp(-7.0)):
        super().__init__()
        self.num_components = int(num_components)
        self.num_params = 3 * self.num_components
        self.scale_transform = biject_to(constraints.greater_than(float(min_scale)))

    def params(self, out):
        """``(logits, loc, scale)``, each ``(..., C, H, W, K)``."""
        p = self._unflatten(out).movedim(-4, -1)
        logits, loc, raw = p.split(self.num_components, dim=-1)
        return logits, loc + 0.5, self.scale_transform(raw)

    def forward(self, out):
        return DiscretizedLogisticMixture(*self.params(out), num_levels=256, validate_args=False).to_event(3)

    def check(self, x, name="x"):
        super().check(x, name)
        _check_levels(x, name, 256, "a discretized logistic mixture likelihood")


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "bernoulli-relaxed": lambda: BernoulliLikelihood(relaxed=True),
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
    "normal-fixed": lambda: NormalLikelihood(scale="fixed"),
    "normal-shared": lambda: NormalLikelihood(scale="shared"),
    "normal-pixel": lambda: NormalLikelihood(scale="pixel"),
    "laplace": lambda: LaplaceLikelihood(scale="shared"),
    "laplace-pixel": lambda: LaplaceLikelihood(scale="pixel"),
    "beta": BetaLikelihood,
    "categorical-256": Categorical256Likelihood,
    "discretized-logistic": DiscretizedLogisticMixtureLikelihood,
}
"""Registered likelihoods by name: each value builds a fresh :class:`Likelihood`.
``normal-fixed`` has :math:`\\sigma = 0.1`; ``laplace`` and ``normal-shared`` learn
one scale; ``beta`` squeezes by ε = 1e-3; ``discretized-logistic`` has 5 components."""


def default_binarize(likelihood):
    """The data preprocessing a likelihood needs: ``"dynamic"`` binarization for
    binary likelihoods (and those that do not declare their :attr:`~Likelihood.data_kind`),
    ``"none"`` otherwise."""
    return "dynamic" if get_likelihood(likelihood).data_kind in (None, "binary") else "none"

def get_likelihood(likelihood):
    """A :class:`Likelihood` from itself or its registered name."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    try:
        return LIKELIHOODS[likelihood]()
    except KeyError:
        raise ValueError(
            f"unknown likelihood {likelihood!r}; expected one of {', '.join(sorted(LIKELIHOODS))} "
            "or a pyrogen.distributions.Likelihood"
        ) from None
