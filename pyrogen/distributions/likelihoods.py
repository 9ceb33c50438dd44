"""Observation likelihoods p(x|z): from a decoder's output to a distribution over images.

A likelihood is an :class:`~torch.nn.Module` (it may own parameters, such as a
learned noise scale) that takes the decoder output of shape
``(..., num_params * C, H, W)`` and returns a distribution with event shape
``(C, H, W)``; for flat vectors of ``D`` features (a table, a count matrix) the
output is ``(..., num_params * D)`` and the event shape ``(D,)``. A model tells
its likelihood the event shape with :meth:`Likelihood.bind` (unbound
likelihoods take images, ``(C, H, W)``). :meth:`Likelihood.check` tests that data
lie in the support and raises a :class:`~pyrogen.errors.DataError` that says what
was expected.

The decoder's ``P * C`` output channels (``P * D`` outputs) are read as ``P``
blocks of ``C`` channels (``D`` features): block ``i`` holds parameter ``i`` of
every image channel (for a per-pixel Normal, the locations and then the
unconstrained scales).

Which data each likelihood scores (:attr:`Likelihood.data_kind`):

* ``"binary"``: 0/1 pixels (Bernoulli); the data are binarized (``binarize``
  ``"dynamic"`` or ``"static"``).
* ``"unit-interval"``: grey levels in [0, 1] (Continuous Bernoulli, Beta, the
  relaxed Bernoulli); ``"real"``: any real value (Normal, Laplace); ``"8-bit"``:
  the 256 levels :math:`k / 255` as 8-bit images load (Categorical-256,
  discretized logistic mixture). These need ``binarize="none"``.
* ``"counts"``: non-negative integers (Poisson, negative binomial, zero-inflated
  negative binomial), e.g. a cells x genes matrix of read counts.

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

DATA_KINDS = ("binary", "unit-interval", "real", "8-bit", "counts")
"""What a likelihood scores; see :attr:`Likelihood.data_kind`."""


class Likelihood(nn.Module):
    """Base class. Subclasses set :attr:`num_params` and implement :meth:`forward`."""

    num_params = 1
    """Decoder output channels per image channel (outputs per feature)."""

    event_shape = None
    """The shape of one example, ``(C, H, W)`` or ``(D,)``, once :meth:`bind` set it (None: images)."""

    event_dim = 3
    """``len(event_shape)``: the dimensions :meth:`forward` declares as the event (3 until bound)."""

    uses_library = False
    """Whether :meth:`forward` takes each example's library size (total count); see :class:`CountLikelihood`."""

    def bind(self, event_shape):
        """Declare the shape of one example, ``(C, H, W)`` or ``(D,)``, and build any parameters kept
        per feature (their shape is ``event_shape``). Models call it once at construction; returns self."""
        event_shape = tuple(int(s) for s in event_shape)
        if self.event_shape is not None and self.event_shape != event_shape:
            raise ValueError(
                f"this {type(self).__name__} is bound to examples of shape {self.event_shape}, "
                f"not {event_shape}; use a fresh likelihood per model"
            )
        self.event_shape, self.event_dim = event_shape, len(event_shape)
        self._build(event_shape)
        return self

    def _build(self, event_shape):
        """Create per-feature parameters for examples of ``event_shape`` (none by default)."""

    def _feature_parameter(self, name):
        value = getattr(self, name, None)
        if value is None:
            raise ValueError(
                f"the {type(self).__name__} learns {name} per feature: bind it to the examples' "
                "shape first (likelihood.bind(event_shape); the VAE does)"
            )
        return value

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
        """``(..., P * C, H, W)`` -> ``(..., P, C, H, W)`` (flat: ``(..., P * D)`` -> ``(..., P, D)``)."""
        d = -self.event_dim
        if out.shape[d] % self.num_params:
            raise ValueError(
                f"decoder output must have num_params * C = {self.num_params} * C channels, got {out.shape[d]}"
            )
        return out.unflatten(d, (self.num_params, out.shape[d] // self.num_params))

    def _split(self, out):
        """The ``P`` parameter blocks of ``out``, each with the event's shape."""
        return self._unflatten(out).unbind(-self.event_dim - 1)

    def forward(self, out):
        raise NotImplementedError

    def adapt(self, x):
        """Record constants that generation needs from the training data ``x`` (none by default;
        a library size's typical total for :class:`CountLikelihood`). Returns self."""
        return self

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
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(self.event_dim)

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
        return dist.ContinuousBernoulli(logits=logits, validate_args=False).to_event(self.event_dim)

    def check(self, x, name="x"):
        super().check(x, name)
        _check_interval(x, name, 0.0, 1.0, "a Continuous Bernoulli likelihood")


def _check_interval(x, name, lo, hi, what, open_interval=False):
    xmin, xmax = x.min().item(), x.max().item()
    bad = (xmin <= lo or xmax >= hi) if open_interval else (xmin < lo or xmax > hi)
    if bad:
        interval = f"({lo:g}, {hi:g})" if open_interval else f"[{lo:g}, {hi:g}]"
        raise DataError(f"{name} must lie in {interval} under {what}, got values in [{xmin:.4g}, {xmax:.4g}]")


SCALES = ("fixed", "shared", "pixel", "feature")
"""How a location-scale likelihood gets its scale; see :class:`LocationScaleLikelihood`."""


class LocationScaleLikelihood(Likelihood):
    """Pixels :math:`x = \\mu_\\theta(z) + \\sigma \\epsilon` with the decoder giving :math:`\\mu`.

    :param str scale: ``"fixed"`` (:math:`\\sigma` = ``fixed_scale``, a constant),
        ``"shared"`` (one learned :math:`\\sigma` for every pixel and image) or
        ``"pixel"`` (a second decoder output per pixel, :math:`\\sigma_\\theta(z)`) or
        ``"feature"`` (one learned :math:`\\sigma_j` per feature or pixel j, the same for every
        example: the usual noise model of a table's columns; needs :meth:`~Likelihood.bind`).
    :param float fixed_scale: :math:`\\sigma` when ``scale="fixed"``, in pixel units; the
        starting value of the learned scales (``"shared"`` and ``"feature"``).
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
            self.raw_scale = nn.Parameter(self.scale_transform.inv(torch.tensor(self.fixed_scale)))

    def _build(self, event_shape):
        if self.scale == "feature":
            start = self.scale_transform.inv(torch.tensor(self.fixed_scale))
            self.raw_scale = nn.Parameter(start.expand(event_shape).clone())

    def params(self, out):
        """``(loc, scale)`` of every pixel for decoder output ``out``."""
        if self.scale == "pixel":
            loc, raw = self._split(out)
            return loc, self.scale_transform(raw)
        if self.scale in ("shared", "feature"):
            return out, self.scale_transform(self._feature_parameter("raw_scale")).expand(out.shape)
        return out, out.new_full((), self.fixed_scale).expand(out.shape)

    def forward(self, out):
        loc, scale = self.params(out)
        return self.base(loc, scale, validate_args=False).to_event(self.event_dim)

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


class StudentTLikelihood(LocationScaleLikelihood):
    """Student-t features :math:`t_\\nu(x \\mid \\mu_\\theta(z), \\sigma)`: a Normal whose tails
    are heavier (robust to outlying values in a table). The scale follows
    :class:`LocationScaleLikelihood` (default ``"feature"``: one learned σ per column);
    the degrees of freedom ν are one learned number, kept above ``min_df`` (default 1, so
    that the mean exists) by ``biject_to(constraints.greater_than(min_df))``, starting at
    ``df``. As ν grows the density tends to the Normal's.

    :param float df: starting ν (or, with ``learn_df=False``, the fixed ν).
    """

    base = dist.StudentT

    def __init__(self, scale="feature", fixed_scale=1.0, min_scale=1e-3, df=5.0, min_df=1.0, learn_df=True):
        super().__init__(scale, fixed_scale, min_scale)
        if not df > min_df:
            raise ValueError(f"df must exceed min_df = {min_df:g}, got {df!r}")
        self.df_transform = biject_to(constraints.greater_than(float(min_df)))
        start = self.df_transform.inv(torch.tensor(float(df)))
        if learn_df:
            self.raw_df = nn.Parameter(start)
        else:
            self.register_buffer("raw_df", start)

    @property
    def df(self):
        """ν, a 0-dimensional tensor."""
        return self.df_transform(self.raw_df)

    def forward(self, out):
        loc, scale = self.params(out)
        return dist.StudentT(self.df, loc, scale, validate_args=False).to_event(self.event_dim)


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
        c1, c0 = self.positive(self._unflatten(out)).unbind(-self.event_dim - 1)
        beta = dist.Beta(c1, c0, validate_args=False)
        if self.squeeze:
            eps = self.squeeze
            transform = dist.transforms.AffineTransform(-eps / (1 - 2 * eps), 1 / (1 - 2 * eps))
            beta = dist.TransformedDistribution(beta, [transform], validate_args=False)
        return beta.to_event(self.event_dim)

    def check(self, x, name="x"):
        super().check(x, name)
        if self.squeeze:
            _check_interval(x, name, 0.0, 1.0, f"a Beta likelihood with squeeze={self.squeeze:g}")
        else:
            _check_interval(
                x,
                name,
                0.0,
                1.0,
                "a Beta likelihood with squeeze=0 (use squeeze > 0 for data with exact 0s and 1s)",
                open_interval=True,
            )

    def mean(self, out):
        c1, c0 = self.positive(self._unflatten(out)).unbind(-self.event_dim - 1)
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
        logits = self._unflatten(out).movedim(-self.event_dim - 1, -1)
        return QuantizedCategorical(logits, validate_args=False).to_event(self.event_dim)

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
        p = self._unflatten(out).movedim(-self.event_dim - 1, -1)
        logits, loc, raw = p.split(self.num_components, dim=-1)
        return logits, loc + 0.5, self.scale_transform(raw)

    def forward(self, out):
        mixture = DiscretizedLogisticMixture(*self.params(out), num_levels=256, validate_args=False)
        return mixture.to_event(self.event_dim)

    def check(self, x, name="x"):
        super().check(x, name)
        _check_levels(x, name, 256, "a discretized logistic mixture likelihood")


def _check_counts(x, name, what):
    xmin, xmax = x.min().item(), x.max().item()
    if xmin < 0:
        raise DataError(
            f"{name} must hold non-negative integer counts under {what}, got values in [{xmin:.4g}, {xmax:.4g}]"
        )
    fractional = x != x.round()
    if fractional.any():
        raise DataError(
            f"{name} must hold non-negative integer counts under {what}, got non-integer values "
            f"such as {x[fractional][0].item():.4g} (normalised or log-transformed data? pass raw counts)"
        )


class CountLikelihood(Likelihood):
    """Base class of the count likelihoods: non-negative integers with a mean μ from the decoder.

    Without a library size, the decoder's output is :math:`\\log \\mu` of every feature.
    With ``library=True`` (scvi-tools' observed library size; Lopez et al. 2018, "Deep
    generative modeling for single-cell transcriptomics"), the decoder's output goes through
    a softmax over the features, the expression shares :math:`\\rho(z)`, and
    :math:`\\mu = \\ell \\rho(z)` where :math:`\\ell = \\sum_j x_j` is the example's observed total
    count (floored at 1). Then p(x|z) is a model of x *given* its total, and its log-likelihoods
    are conditional on the library sizes. To generate (no x), ℓ is the geometric mean of the
    training totals that :meth:`adapt` recorded.

    :param bool library: use each example's library size as above.
    """

    data_kind = "counts"

    def __init__(self, library=False):
        super().__init__()
        self.library = bool(library)
        self.uses_library = self.library
        if self.library:
            self.register_buffer("log_library", torch.tensor(math.nan))

    def adapt(self, x):
        """Record what generation needs from the training data ``x`` (with a library size: the mean
        log total count). Returns self."""
        if self.library:
            self.log_library.copy_(self.library_size(x).log().mean())
        return self

    def library_size(self, x):
        """Each example's total count ℓ, floored at 1, shape ``(B,)``."""
        return x.flatten(-self.event_dim).sum(-1).clamp(min=1.0)

    def log_mean(self, out, library=None):
        """:math:`\\log \\mu` of every feature for decoder output ``out`` (one parameter block)."""
        if not self.library:
            return out
        log_share = out.flatten(-self.event_dim).log_softmax(-1).unflatten(-1, out.shape[out.dim() - self.event_dim :])
        if library is None:
            if torch.isnan(self.log_library):
                raise DataError(
                    "the library size of generated examples is unknown: call likelihood.adapt(x) "
                    "with the training counts first (the trainers do)"
                )
            log_library = self.log_library
        else:
            log_library = torch.as_tensor(library, dtype=out.dtype, device=out.device).log()
            log_library = log_library.reshape(log_library.shape + (1,) * self.event_dim)
        return log_share + log_library

    def check(self, x, name="x"):
        super().check(x, name)
        _check_counts(x, name, f"a {self.label} likelihood")


class PoissonLikelihood(CountLikelihood):
    """Poisson counts :math:`x_j \\sim \\mathrm{Poisson}(\\mu_j(z))`; see :class:`CountLikelihood`
    for the mean and the library size."""

    label = "Poisson"

    def forward(self, out, library=None):
        return dist.Poisson(self.log_mean(out, library).exp(), validate_args=False).to_event(self.event_dim)

    def mean(self, out, library=None):
        return self.log_mean(out, library).exp()


class NegativeBinomialLikelihood(CountLikelihood):
    """Negative binomial counts with mean μ and inverse dispersion θ, as scvi-tools' ``NegativeBinomial``:

    .. math:: p(x \\mid \\mu, \\theta) = \\frac{\\Gamma(x + \\theta)}{\\Gamma(\\theta)\\, x!}
       \\Big(\\frac{\\theta}{\\theta + \\mu}\\Big)^{\\theta} \\Big(\\frac{\\mu}{\\theta + \\mu}\\Big)^{x},
       \\qquad \\operatorname{Var} x = \\mu + \\mu^2 / \\theta,

    a Gamma-Poisson mixture (:class:`pyro.distributions.GammaPoisson` with concentration θ and
    rate θ/μ). μ comes from the decoder (:class:`CountLikelihood`); θ is learned per feature
    (scvi-tools' ``dispersion="gene"``), :math:`\\theta = \\exp(r)` starting at ``theta``. It is
    computed as :class:`pyro.distributions.NegativeBinomial` with ``total_count=θ`` and
    ``logits = log μ - log θ``, which never forms μ itself.
    """

    label = "negative binomial"

    def __init__(self, library=False, theta=1.0):
        super().__init__(library)
        self.theta_start = float(theta)
        self.positive = biject_to(constraints.positive)

    def _build(self, event_shape):
        self.raw_theta = nn.Parameter(torch.full(event_shape, math.log(self.theta_start)))

    @property
    def theta(self):
        """The inverse dispersion θ of every feature (event shape)."""
        return self.positive(self._feature_parameter("raw_theta"))

    def _nb(self, log_mu):
        raw = self._feature_parameter("raw_theta")
        theta = self.positive(raw).expand(log_mu.shape)
        return dist.NegativeBinomial(total_count=theta, logits=log_mu - raw, validate_args=False)

    def forward(self, out, library=None):
        return self._nb(self.log_mean(out, library)).to_event(self.event_dim)

    def mean(self, out, library=None):
        return self.log_mean(out, library).exp()


class ZeroInflatedNegativeBinomialLikelihood(NegativeBinomialLikelihood):
    """scvi-tools' zero-inflated negative binomial: with probability :math:`\\pi = \\sigma(\\ell_\\pi)`
    an extra zero (a dropout), else a draw of :class:`NegativeBinomialLikelihood`:

    .. math:: p(0) = \\pi + (1 - \\pi)\\, \\mathrm{NB}(0 \\mid \\mu, \\theta), \\qquad
       p(x) = (1 - \\pi)\\, \\mathrm{NB}(x \\mid \\mu, \\theta) \\quad (x > 0).

    The decoder gives two blocks per feature: the log-mean (or, with a library size, the
    softmax logits) and the dropout logit :math:`\\ell_\\pi`
    (:class:`pyro.distributions.ZeroInflatedNegativeBinomial` with ``gate_logits``). Its mean
    is :math:`(1 - \\pi)\\mu`.
    """

    num_params = 2
    label = "zero-inflated negative binomial"

    def forward(self, out, library=None):
        mean_out, gate_logits = self._split(out)
        log_mu = self.log_mean(mean_out, library)
        raw = self._feature_parameter("raw_theta")
        theta = self.positive(raw).expand(log_mu.shape)
        return dist.ZeroInflatedNegativeBinomial(
            theta, logits=log_mu - raw, gate_logits=gate_logits, validate_args=False
        ).to_event(self.event_dim)

    def mean(self, out, library=None):
        mean_out, gate_logits = self._split(out)
        return torch.sigmoid(-gate_logits) * self.log_mean(mean_out, library).exp()


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
    "normal-feature": lambda: NormalLikelihood(scale="feature", fixed_scale=1.0),
    "student-t": StudentTLikelihood,
    "poisson": PoissonLikelihood,
    "poisson-library": lambda: PoissonLikelihood(library=True),
    "negative-binomial": NegativeBinomialLikelihood,
    "negative-binomial-library": lambda: NegativeBinomialLikelihood(library=True),
    "zinb": ZeroInflatedNegativeBinomialLikelihood,
    "zinb-library": lambda: ZeroInflatedNegativeBinomialLikelihood(library=True),
}
"""Registered likelihoods by name: each value builds a fresh :class:`Likelihood`.
``normal-fixed`` has :math:`\\sigma = 0.1`; ``laplace`` and ``normal-shared`` learn
one scale; ``beta`` squeezes by ε = 1e-3; ``discretized-logistic`` has 5 components.
For tables: ``normal-feature`` learns one σ per column (starting at 1) and ``student-t`` one σ per
column and one ν. For counts: ``poisson``, ``negative-binomial`` and ``zinb`` (zero-inflated), each
also with ``-library``: the decoder gives expression shares scaled by each example's total count
(:class:`CountLikelihood`)."""


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


def _zero_inflated_share(x, max_rows=1000, max_features=50):
    """The share of features (columns of ``x``, the first ``max_features`` with a positive mean, over the
    first ``max_rows`` rows) whose maximum likelihood zero-inflated NB beats the negative binomial by more
    than 3 nats; both fitted on grids (θ over 30 values from 0.01 to 1000, the dropout share π over
    0, 0.05, ..., 0.9) with the mean of the NB part at the column's mean / (1 - π)."""
    x = x[:max_rows]
    x = x[:, x.mean(0) > 0][:, :max_features]
    if x.shape[1] == 0:
        return 0.0
    mean = x.mean(0)
    theta = torch.logspace(-2, 3, 30, dtype=x.dtype)[:, None, None]
    gammas = torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)  # (T, N, F)
    zeros = x == 0
    best = []
    for k in range(19):
        gate = k / 20
        mu = mean / (1 - gate)
        log_nb = gammas + theta * torch.log(theta / (theta + mu)) + x * torch.log(mu / (theta + mu))
        if gate:
            log_nb = math.log1p(-gate) + log_nb
            log_nb = torch.where(zeros, torch.logaddexp(log_nb, torch.tensor(math.log(gate), dtype=x.dtype)), log_nb)
        best.append(log_nb.sum(1).max(0).values)  # (F,): the best θ for this π
    nb, zinb = best[0], torch.stack(best[1:]).max(0).values
    return ((zinb - nb) > 3.0).double().mean().item()


def choose_likelihood(x, images=None, max_rows=10_000):
    """``likelihood="auto"``: the registered likelihood that fits data ``x``, and why.

    In order: every value 0 or 1 -> ``"bernoulli"``; values in [0, 1] -> ``"bernoulli"`` for
    images (grey levels, binarized dynamically as the Fashion-MNIST runs are) and
    ``"continuous-bernoulli"`` for flat vectors; non-negative integers -> ``"poisson"`` when the
    pooled variance is within 20% of the mean, else ``"zinb"`` when for more than half of the
    features (up to 50, on up to 1,000 examples) a zero-inflated negative binomial fitted by maximum
    likelihood beats the negative binomial by more than 3 nats, else ``"negative-binomial"``; any other
    real values -> ``"student-t"`` when the median excess kurtosis of the features exceeds 1 (heavy
    tails), else ``"normal-feature"``.

    :param torch.Tensor x: the training data, ``(N, C, H, W)`` or ``(N, D)``.
    :param bool images: whether the examples are images (default: ``x`` has 4 dimensions).
    :param int max_rows: the statistics read the first ``max_rows`` examples (in float64 on the CPU).
    :returns: ``(name, reason)``; the reason is a short clause with the figures that decided.
    :raises DataError: for empty data or NaN / infinite values.

    Example::

        >>> import torch
        >>> name, reason = choose_likelihood(torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]))
        >>> auto_message(name, reason)
        'likelihood auto: bernoulli (every value is 0 or 1)'
    """
    if not torch.is_tensor(x) or x.dim() < 2 or x.shape[0] == 0:
        raise DataError(
            f"likelihood 'auto' needs a tensor of examples (N, ...), got "
            f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
        )
    images = x.dim() == 4 if images is None else images
    x = x[:max_rows].detach().to("cpu", torch.float64).flatten(1)
    if not torch.isfinite(x).all():
        raise DataError("the data hold NaN or infinite values; likelihood 'auto' needs finite values")
    lo, hi = x.min().item(), x.max().item()
    if ((x == 0) | (x == 1)).all():
        return "bernoulli", "every value is 0 or 1"
    if lo >= 0 and hi <= 1:
        if images:
            return "bernoulli", (
                f"images with values in [0, 1] ({torch.unique(x).numel()} distinct levels): "
                "grey levels, binarized dynamically as for Fashion-MNIST (continuous-bernoulli "
                "or beta model the levels themselves)"
            )
        return "continuous-bernoulli", "values in [0, 1] that are not all 0 or 1: a density on [0, 1]"
    if lo >= 0 and (x == x.round()).all():
        mean, var = x.mean(0), x.var(0)
        ratio = (var.sum() / mean.sum().clamp(min=1e-12)).item()
        totals = x.sum(1)
        spread = (
            f"; totals range {totals.min().item():.0f}-{totals.max().item():.0f} (the -library variant "
            "conditions on them, as scvi-tools does)"
        )
        if ratio < 1.2:
            return "poisson", f"non-negative integers up to {hi:.0f} with variance {ratio:.2f}x the mean" + spread
        observed = (x == 0).double().mean().item()
        share = _zero_inflated_share(x)
        if share > 0.5:
            return "zinb", (
                f"non-negative integers up to {hi:.0f}, over-dispersed (variance {ratio:.1f}x the mean), "
                f"{100 * observed:.0f}% zeros: a zero-inflated negative binomial fits "
                f"{100 * share:.0f}% of the features better by more than 3 nats" + spread
            )
        return "negative-binomial", (
            f"non-negative integers up to {hi:.0f}, over-dispersed (variance {ratio:.1f}x "
            f"the mean), {100 * observed:.0f}% zeros, as many as a negative binomial "
            f"has for {100 * (1 - share):.0f}% of the features" + spread
        )
    z = (x - x.mean(0)) / x.std(0).clamp(min=1e-12)
    kurtosis = ((z**4).mean(0) - 3)[x.std(0) > 0]
    excess = kurtosis.median().item() if kurtosis.numel() else 0.0
    if excess > 1:
        return "student-t", (
            f"real values in [{lo:.4g}, {hi:.4g}] with heavy tails (median excess kurtosis {excess:.1f})"
        )
    return "normal-feature", (
        f"real values in [{lo:.4g}, {hi:.4g}] (median excess kurtosis {excess:.1f}): "
        "a Normal with a learned scale per feature"
    )


def auto_message(name, reason):
    """The line the command line prints for ``--likelihood auto``."""
    return f"likelihood auto: {name} ({reason})"


def resolve_likelihood(likelihood, x, images=None):
    """``likelihood`` as a registered name or :class:`Likelihood`, with ``"auto"`` chosen from the training
    data ``x`` by :func:`choose_likelihood`.

    :returns: ``(likelihood, message)``: the message is :func:`auto_message`'s line for ``"auto"``, else None.
    """
    if isinstance(likelihood, str) and likelihood == "auto":
        name, reason = choose_likelihood(x, images)
        return name, auto_message(name, reason)
    return likelihood, None
