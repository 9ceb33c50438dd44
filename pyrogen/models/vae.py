"""The variational autoencoder as a Pyro model/guide pair.

Kingma and Welling, "Auto-Encoding Variational Bayes" (ICLR 2014); Rezende,
Mohamed and Wierstra, "Stochastic Backpropagation and Approximate Inference in
Deep Generative Models" (ICML 2014).

The generative model is

.. math:: p_\\theta(x, z) = p(z)\\, p_\\theta(x \\mid z),
   \\qquad p(z) = \\mathcal{N}(0, I),

with a neural decoder giving the parameters of :math:`p_\\theta(x \\mid z)`, and
the inference network (the guide) is
:math:`q_\\phi(z \\mid x) = \\mathcal{N}(\\mu_\\phi(x), \\operatorname{diag} \\sigma^2_\\phi(x))`.
Training maximises the evidence lower bound

.. math:: \\mathcal{L}(\\theta, \\phi; x) = \\mathbb{E}_{q_\\phi(z|x)}[\\log p_\\theta(x|z)]
   - \\mathrm{KL}(q_\\phi(z|x) \\,\\|\\, p(z)) \\le \\log p_\\theta(x),

which :class:`pyro.infer.Trace_ELBO` estimates by Monte Carlo and
:class:`pyro.infer.TraceMeanField_ELBO` with the KL term in closed form.
"""

import contextlib
import dataclasses
import re

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import is_validation_enabled
from pyro.nn import PyroModule, pyro_method
from torch.distributions.transforms import AffineTransform, ComposeTransform

from pyrogen.checks import check_count, is_count, is_integer, sizes
from pyrogen.distributions import LatentFamilyError, ParameterHead, get_family, get_likelihood
from pyrogen.errors import DataError
from pyrogen.models.flows import AmortizedFlow
from pyrogen.models.priors import PSEUDO_INPUTS, VampPrior
from pyrogen.networks import INPUT_TRANSFORMS, InputTransform, build_decoder, build_encoder, dcgan_init_


def _check_sizes(latent_dim, image_shape, hidden, architecture, encoder, decoder):
    """Refuse sizes that would only fail deep inside torch (or build a network with no units)."""
    if not is_count(latent_dim):
        raise DataError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    shape = sizes(image_shape)
    if shape is None or len(shape) not in (1, 3):
        raise DataError(
            f"image_shape must be (channels, height, width) or (features,) of positive integers, got {image_shape!r}"
        )
    widths = (hidden,) if is_integer(hidden) else hidden
    if encoder is None or decoder is None:
        if not isinstance(widths, (tuple, list)) or not widths or not all(is_count(h) for h in widths):
            raise DataError(f"hidden must be a non-empty sequence of positive integer widths, got {hidden!r}")


def _widths(hidden):
    """``hidden`` as a tuple of Python ints where it holds integers (NumPy's included); as given otherwise."""
    if is_integer(hidden):
        return (int(hidden),)
    if isinstance(hidden, (tuple, list)) and all(is_integer(h) for h in hidden):
        return tuple(int(h) for h in hidden)
    return hidden


def _kl_scale(kl_weight):
    """``poutine.scale`` for the latent sites; no handler at all when λ is the number 1.

    λ may be a 0-dimensional tensor, which :class:`~pyrogen.infer.CompiledLoss`
    keeps as an input of its graph rather than a constant.
    """
    if isinstance(kl_weight, torch.Tensor):
        return poutine.scale(scale=kl_weight)
    return contextlib.nullcontext() if kl_weight == 1.0 else poutine.scale(scale=kl_weight)


SCALE_HEADS = ("log-variance", "log-scale")
"""How a normal guide's scale comes out of the encoder's linear output a: ``"log-variance"``, σ = exp(a / 2)
(a = log σ², Kingma and Welling 2014, appendix C.2; pythae's ``log_covariance``), the default; or
``"log-scale"``, σ = exp(a), which halves the step a gradient takes in log σ's place and trained runs
made before the option existed use (their configurations lack the key). With Adam at lr 1e-3 the
log-variance head ends 0.6 nats higher in log p(x) on Fashion-MNIST (benchmarks/catalogue.py, 3 seeds)."""


def check_observations(x, image_shape, likelihood, dtype=torch.float32):
    """``x`` as images ``(B, *image_shape)``, checked: a non-empty tensor of ``dtype`` (the model's parameters'),
    one image of ``image_shape`` per row (flattened rows are reshaped), and, under Pyro's validation, in
    ``likelihood``'s support; anything else is a :class:`~pyrogen.errors.DataError` naming ``x``."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"x must be a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise DataError(f"x must hold at least one image, got shape {tuple(x.shape)}")
    if x.dtype != dtype:
        raise DataError(
            f"x must be a {dtype} tensor of values in [0, 1] like the model's parameters, got "
            f"{x.dtype}"
            + (
                " (scale grey levels with x.float() / 255)"
                if x.dtype == torch.uint8
                else f" (convert with x.to({dtype}))"
            )
        )
    if x.shape[1:].numel() != torch.Size(image_shape).numel():  # sizes only: no tensor operation per call
        raise DataError(
            f"x must have shape (B, {', '.join(map(str, image_shape))})"
            + (f" or (B, {torch.Size(image_shape).numel()})" if len(image_shape) > 1 else "")
            + f", got {tuple(x.shape)}"
        )
    x = x.reshape((x.shape[0],) + image_shape)
    if is_validation_enabled():
        likelihood.check(x)
    return x


class VAE(PyroModule):
    """A variational autoencoder whose :meth:`model` and :meth:`guide` are plain Pyro code.

    Both put their sample site ``"z"`` (event shape ``(latent_dim,)``) inside
    ``pyro.plate("data", B)``; the model scores images at site ``"x"`` (event
    shape ``image_shape``). They work untouched with ``pyro.infer.SVI``,
    ``Predictive`` and ``poutine.trace``, and with any number of extra
    vectorized sample dimensions to the left of the data plate.

    :param int latent_dim: dimension of z.
    :param tuple image_shape: ``(C, H, W)`` of one example; batches may come as
        ``(B, C, H, W)`` or flattened ``(B, C*H*W)``. Flat vectors of ``D`` features (a
        table, a count matrix) are ``(D,)``, with the ``"mlp"`` architecture: the model's
        event shape is then ``(D,)``. The convolutional architectures take any ``(C, H, W)``
        (sides that are not multiples of 4 are padded; :func:`pyrogen.networks.conv_sides`).
    :param str architecture: ``"mlp"`` or ``"conv"`` encoder and decoder.
    :param tuple hidden: hidden widths of the encoder (the decoder mirrors them).
    :param likelihood: name (see :data:`pyrogen.distributions.LIKELIHOODS`) or a
        :class:`~pyrogen.distributions.Likelihood`.
    :param prior: latent family of p(z), by name or :class:`~pyrogen.distributions.LatentFamily`,
        or ``"vamp:K"``: the VampPrior (Tomczak and Welling 2018), the mixture of
        the guide's distribution at K learned pseudo-inputs
        (:class:`~pyrogen.models.priors.VampPrior`).
    :param posterior: latent family of q(z|x) (with ``flow``: of the flow's base distribution).
    :param str flow: ``None`` or ``"iaf:K"``, ``"planar:K"``, ``"radial:K"``: push
        the encoder's distribution through K amortized transforms conditioned on
        the encoder's last hidden features (:class:`~pyrogen.models.flows.AmortizedFlow`);
        needs a posterior family on the whole of :math:`\\mathbb{R}^d`.
    :param encoder: optional network mapping images to features with an
        ``out_features`` attribute; replaces the named architecture's encoder.
    :param decoder: optional network mapping ``(..., latent_dim)`` to
        ``(..., likelihood.num_params * C, H, W)``.
    :param str scale_head: for a normal guide, how the scale comes out of the
        encoder's linear output a (:data:`SCALE_HEADS`): ``"log-variance"``,
        σ = exp(a / 2), the default (Kingma and Welling 2014; pythae), or
        ``"log-scale"``, σ = exp(a), which runs made before the option keep.
    :param str pseudo_inputs: with ``prior="vamp:K"``, how the pseudo-inputs are kept in [0, 1]
        (:data:`~pyrogen.models.priors.PSEUDO_INPUTS`): ``"hardtanh"``, pythae's clipped linear
        layer starting near 0, the default, or ``"sigmoid"``, starting near 0.5, which runs made
        before the option keep. Ignored without a VampPrior.
    :param bool iaf_context: with ``flow="iaf:K"``, whether the flow's networks also see the
        encoder's features h(x) (Kingma et al. 2016) or, the default, z only (pythae's ``VAE_IAF``).
    :param str iaf_step: with ``flow="iaf:K"``, ``"affine"`` (the default), z exp(s) + m, or
        ``"gated"``, sigmoid(s + 2) z + (1 - sigmoid(s + 2)) m (:data:`~pyrogen.models.flows.IAF_STEPS`).
        Runs made before the two options keep the context and the gated step; without both the
        IAF gains 1.3–1.5 nats of log p(x) on Fashion-MNIST (:mod:`pyrogen.models.flows`).
    :param dict network: options of the ``"dcgan"`` architecture's encoder and decoder
        (:data:`pyrogen.networks.DCGAN_OPTIONS`: ``layout``, ``slope``, ``init_std``,
        ``decoder_activation``); None (the default) for the networks' own defaults. ``init_std``
        also starts the encoder's parameter head (the code's mean and scale layers) at N(0, ``init_std``)
        with zero biases, as ALI's last encoder layer (their 1x1 convolution to the mean and log-scale).
    :param str input_transform: ``"none"`` (the default) or ``"log1p"``: the encoder sees log(1 + x), as
        count data want (:class:`pyrogen.networks.InputTransform`); the likelihood still scores x.

    With a flow or a VampPrior, KL(q || p) has no closed form and is estimated by
    Monte Carlo: :attr:`posterior_family` (resp. :attr:`prior_family`) is then
    the base family renamed (``"normal+iaf:2"``, ``"vamp:500"``) with
    :attr:`~pyrogen.distributions.LatentFamily.monte_carlo_kl` set, so
    :func:`~pyrogen.distributions.kl_method` says ``"monte-carlo"`` and
    :func:`~pyrogen.distributions.check_guide_family` refuses
    :class:`pyro.infer.TraceMeanField_ELBO`. Use :meth:`posterior` for q(z|x).

    Example::

        >>> import pyro, torch
        >>> from pyrogen.models import VAE
        >>> vae = VAE(latent_dim=2, hidden=(32,))
        >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
        ...                      pyro.infer.Trace_ELBO())
        >>> x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
        >>> loss = svi.step(x)  # negative ELBO of the batch, in nats
    """

    def __init__(
        self,
        latent_dim=50,
        image_shape=(1, 28, 28),
        architecture="mlp",
        hidden=(400,),
        likelihood="bernoulli",
        prior="normal",
        posterior="normal",
        encoder=None,
        decoder=None,
        flow=None,
        scale_head="log-variance",
        pseudo_inputs="hardtanh",
        iaf_context=False,
        iaf_step="affine",
        network=None,
        input_transform="none",
    ):
        super().__init__()
        _check_sizes(latent_dim, image_shape, hidden, architecture, encoder, decoder)
        latent_dim, image_shape, hidden = int(latent_dim), sizes(image_shape), _widths(hidden)
        if scale_head not in SCALE_HEADS:
            raise DataError(f"scale_head must be one of {list(SCALE_HEADS)}, got {scale_head!r}")
        if pseudo_inputs not in PSEUDO_INPUTS:
            raise DataError(f"pseudo_inputs must be one of {list(PSEUDO_INPUTS)}, got {pseudo_inputs!r}")
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.base_family = get_family(posterior)
        vamp = re.fullmatch(r"vamp:(\d+)", prior) if isinstance(prior, str) else None
        if isinstance(prior, str) and prior.startswith("vamp") and (vamp is None or int(vamp.group(1)) < 1):
            raise LatentFamilyError(f"the VampPrior is 'vamp:K' with K >= 1 pseudo-inputs, got {prior!r}")
        self.prior_family = (
            dataclasses.replace(self.base_family, name=prior, monte_carlo_kl=True) if vamp else get_family(prior)
        )
        self.posterior_family = self.base_family
        self.likelihood = get_likelihood(likelihood).bind(self.image_shape)
        self.config = {
            "latent_dim": latent_dim, "image_shape": list(self.image_shape),
            "architecture": architecture if encoder is None and decoder is None else "custom",
            "hidden": list(hidden),
            "likelihood": likelihood if isinstance(likelihood, str) else type(likelihood).__name__,
            "prior": self.prior_family.name, "posterior": self.base_family.name,
        }  # fmt: skip
        if network:  # options of the named architecture's networks; absent from older configs
            self.config["network"] = dict(network)
        try:
            body = encoder if encoder is not None else build_encoder(architecture, image_shape, hidden, network)
        except ValueError as e:
            raise DataError(str(e)) from None
        if input_transform not in INPUT_TRANSFORMS:
            raise DataError(f"input_transform must be one of {list(INPUT_TRANSFORMS)}, got {input_transform!r}")
        if input_transform != "none":  # absent from older configs
            body = InputTransform(body, input_transform)
            self.config["input_transform"] = input_transform
        head = ParameterHead(body.out_features, self.base_family, latent_dim)
        if network and "init_std" in network and encoder is None:  # the whole encoder, its last layer included
            dcgan_init_(head, network["init_std"])
        if self.base_family.name == "normal":
            self.config["scale_head"] = scale_head
            if scale_head == "log-variance":  # a = log σ², σ = exp(a / 2) (Kingma and Welling 2014, appendix C.2)
                head.transforms["scale"] = ComposeTransform([AffineTransform(0.0, 0.5), head.transforms["scale"]])
        self.encoder = torch.nn.Sequential(body, head)
        out_channels = self.likelihood.num_params * self.image_shape[0]
        try:
            self.decoder = (
                decoder
                if decoder is not None
                else build_decoder(architecture, latent_dim, image_shape, out_channels, hidden, network)
            )
        except ValueError as e:
            raise DataError(str(e)) from None
        self.flow = None
        if flow is not None:
            if self.base_family.support is not torch.distributions.constraints.real_vector:
                raise LatentFamilyError(
                    f"a flow maps R^d to R^d, but the guide family {self.base_family.name!r} has support "
                    f"{self.base_family.support}; use a family on the real line (normal, laplace, student-t, ...)"
                )
            if type(self).guide is not VAE.guide:
                raise LatentFamilyError(
                    f"the flow transforms the VAE's guide, but {type(self).__name__} has a guide of its own"
                )
            if vamp:
                raise LatentFamilyError(
                    "a VampPrior is a mixture of the guide's distribution at the pseudo-inputs, whose density at "
                    "new points needs the flow's inverse (planar and radial flows have none in closed form); "
                    "use the VampPrior with a flow-free guide"
                )
            self.flow = AmortizedFlow(flow, latent_dim, body.out_features, iaf_context=iaf_context, iaf_step=iaf_step)
            self.posterior_family = dataclasses.replace(
                self.base_family, name=f"{self.base_family.name}+{self.flow.spec}", monte_carlo_kl=True
            )
            self.config["flow"] = self.flow.spec
            if self.flow.kind == "iaf":
                self.config.update(iaf_context=iaf_context, iaf_step=iaf_step)
        self.vamp = VampPrior(int(vamp.group(1)), self.image_shape, pseudo_inputs) if vamp else None
        if vamp:
            self.config["pseudo_inputs"] = pseudo_inputs
        if self.vamp is None:
            for name, value in self.prior_family.prior_params(latent_dim).items():
                self.register_buffer("prior_" + name, value)

    def prior(self):
        """The prior p(z) as a distribution with event shape ``(latent_dim,)``: the family's
        standard member, or the VampPrior's mixture over its pseudo-inputs."""
        if self.vamp is not None:
            return self.vamp.distribution(self.encoder, self.base_family)
        return self.prior_family(**{name: getattr(self, "prior_" + name) for name in self.prior_family.prior})

    def posterior(self, x):
        """q(z|x) for observations ``x`` ``(B, C, H, W)``: the encoder's distribution, pushed
        through the flow if there is one; batch shape ``(B,)``, event shape ``(latent_dim,)``."""
        h = self.encoder[0](x.reshape((x.shape[0],) + self.image_shape))
        q = self.base_family(**self.encoder[1](h))
        return q if self.flow is None else self.flow(q, h)

    def _observations(self, x):
        parameter = next(self.decoder.parameters(), None)
        return check_observations(
            x, self.image_shape, self.likelihood, torch.float32 if parameter is None else parameter.dtype
        )

    @pyro_method
    def model(self, x=None, batch_size=1, kl_weight=1.0):
        """p(z) p(x|z): ``"z"`` from the prior, ``"x"`` scored (or sampled when ``x`` is None).

        :param torch.Tensor x: images ``(B, C, H, W)`` or ``(B, C*H*W)``, or None to generate.
        :param int batch_size: how many images to generate when ``x`` is None.
        :param float kl_weight: λ; scales the latent site by ``poutine.scale`` (KL annealing).
        :returns: the decoder output ``(..., B, P*C, H, W)``.
        """
        if x is not None:
            x = self._observations(x)
            batch_size = x.shape[0]
        with pyro.plate("data", batch_size):
            with _kl_scale(kl_weight):
                z = pyro.sample("z", self.prior())
            out = self.decoder(z)
            pyro.sample("x", self.observation_distribution(out, x), obs=x)
        return out

    def observation_distribution(self, out, x=None):
        """p(x|z) for decoder output ``out``; a likelihood with a library size
        (:class:`~pyrogen.distributions.CountLikelihood`) gets each example's total count
        from ``x`` (from the training data's when ``x`` is None)."""
        if self.likelihood.uses_library:
            return self.likelihood(out, None if x is None else self.likelihood.library_size(x))
        return self.likelihood(out)

    @pyro_method
    def guide(self, x, batch_size=None, kl_weight=1.0):
        """q(z|x): ``"z"`` from the encoder's distribution, inside the same plate."""
        x = self._observations(x)
        with pyro.plate("data", x.shape[0]):
            q = self.posterior(x)
            with _kl_scale(kl_weight):
                return pyro.sample("z", q)

    def encode(self, x):
        """Parameters of q(z|x) (with a flow: of its base distribution) for images ``x``:
        a dict of ``(B, latent_dim)`` tensors."""
        return self.encoder(x.reshape((x.shape[0],) + self.image_shape))

    def decode(self, z, library=None):
        """Mean image E[x|z] of shape ``(..., C, H, W)`` for latents ``(..., latent_dim)``.
        ``library``: with a library-size likelihood, each example's total count ``(B,)`` (default:
        the training data's geometric mean, recorded by the likelihood's ``adapt``)."""
        out = self.decoder(z)
        if self.likelihood.uses_library:
            return self.likelihood.mean(out, library)
        return self.likelihood.mean(out)

    @torch.no_grad()
    def reconstruct(self, x):
        """Decode the posterior mean (or a draw where the family or flow has no mean) of q(z|x);
        a library-size likelihood scales by each example's own total count."""
        q = self.posterior(x)
        try:
            z = q.mean
        except NotImplementedError:
            z = q.sample()
        if self.likelihood.uses_library:
            return self.decode(z, self.likelihood.library_size(x.reshape((x.shape[0],) + self.image_shape)))
        return self.decode(z)

    @torch.no_grad()
    def sample(self, num_samples):
        """Mean images E[x|z] for ``num_samples`` draws z ~ p(z), shape ``(n, C, H, W)``."""
        num_samples = check_count(num_samples, "num_samples")
        return self.decode(self.prior().sample((num_samples,)))
