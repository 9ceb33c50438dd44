"""Class-conditional models: the conditional VAE, and the label checks shared with conditional GANs.

The conditional VAE (Sohn, Lee and Yan, "Learning Structured Output
Representation using Deep Conditional Generative Models", NeurIPS 2015; Kingma
et al. 2014, model M2 with the label observed) models images given their class
label :math:`y \\in \\{0, \\dots, K-1\\}`:

.. math:: p_\\theta(x, z \\mid y) = p(z)\\, p_\\theta(x \\mid z, y), \\qquad p(z) = \\mathcal{N}(0, I),
   \\qquad q_\\phi(z \\mid x, y) = \\mathcal{N}(\\mu_\\phi(x, y), \\operatorname{diag} \\sigma^2_\\phi(x, y)),

trained by the conditional ELBO

.. math:: \\mathcal{L}(x, y) = \\mathbb{E}_{q_\\phi(z|x,y)}[\\log p_\\theta(x \\mid z, y)]
   - \\mathrm{KL}(q_\\phi(z|x,y) \\,\\|\\, p(z)) \\le \\log p_\\theta(x \\mid y).

The label is an observed *input* of both programs, as in Pyro's ``cvae``
example: ``model(x, y)`` and ``guide(x, y)``, with no sample site for ``y``.
Both networks see it one-hot encoded and concatenated with their other input
(the flattened image for the encoder, z for the decoder). Because the prior
does not depend on y, the class information has to come from the decoder: at
sampling time ``sample(n, y)`` draws z from p(z) and decodes it with the
requested label.
"""

import math

import pyro
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyrogen.checks import is_integer
from pyrogen.distributions import ParameterHead, get_family, get_likelihood
from pyrogen.errors import DataError
from pyrogen.networks import MLP


def check_labels(y, num_classes, name="y"):
    """Class labels as an int64 tensor ``(B,)``; a one-line :class:`~pyrogen.errors.DataError` otherwise.

    :param y: integer labels ``(B,)`` in ``0 .. num_classes - 1`` (a tensor, or a Python int for one label).
    :param int num_classes: K.
    """
    if isinstance(y, bool):
        raise DataError(f"{name} must hold integer class labels, got {y!r}")
    if isinstance(y, int):
        y = torch.tensor([y])
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(
            f"{name} must be an integer tensor of class labels, got "
            f"{type(y).__name__ if not isinstance(y, torch.Tensor) else y.dtype}"
        )
    if y.dim() != 1:
        raise DataError(f"{name} must hold one label per example, shape (B,), got {tuple(y.shape)}")
    if y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise DataError(f"label {bad} is outside the classes 0..{num_classes - 1}")
    return y.long()


class ConditionalVAE(PyroModule):
    """A conditional VAE whose :meth:`model` and :meth:`guide` take the class label as an observed input.

    Sites ``"z"`` (event shape ``(latent_dim,)``) and ``"x"`` (event shape
    ``image_shape``) inside ``pyro.plate("data", B)``, as in :class:`~pyrogen.models.VAE`;
    trains with ``pyro.infer.SVI(cvae.model, cvae.guide, ...)`` and ``svi.step(x, y)``.

    :param int num_classes: K; labels are integers ``0 .. K - 1``.
    :param int latent_dim: dimension of z.
    :param tuple image_shape: ``(C, H, W)`` of one example.
    :param tuple hidden: hidden widths of the MLP encoder (the decoder mirrors them); softplus units.
    :param likelihood: name or :class:`~pyrogen.distributions.Likelihood` of p(x|z, y).

    Example::

        >>> import torch
        >>> from pyro import poutine
        >>> from pyrogen.models import ConditionalVAE
        >>> cvae = ConditionalVAE(num_classes=10, latent_dim=4, hidden=(32,))
        >>> x, y = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3)), torch.arange(5)
        >>> tr = poutine.trace(cvae.guide).get_trace(x, y)
        >>> tr.nodes["z"]["value"].shape
        torch.Size([5, 4])
        >>> cvae.sample(3, y=7).shape
        torch.Size([3, 1, 28, 28])
    """

    def __init__(self, num_classes=10, latent_dim=20, image_shape=(1, 28, 28), hidden=(400,), likelihood="bernoulli"):
        super().__init__()
        if not is_integer(num_classes) or num_classes < 2:
            raise DataError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not is_integer(latent_dim) or latent_dim < 1:
            raise DataError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if not hidden:
            raise DataError("hidden must name at least one hidden layer width")
        num_classes, latent_dim = int(num_classes), int(latent_dim)
        self.num_classes, self.latent_dim, self.image_shape = num_classes, latent_dim, tuple(image_shape)
        self.likelihood = get_likelihood(likelihood).bind(self.image_shape)
        if self.likelihood.uses_library:
            raise DataError(
                "the conditional VAE does not give its likelihood each example's library size; use "
                "the likelihood without '-library' or the VAE"
            )
        self.posterior_family = get_family("normal")
        self.config = {
            "num_classes": num_classes,
            "latent_dim": latent_dim,
            "image_shape": list(self.image_shape),
            "hidden": list(hidden),
            "likelihood": likelihood if isinstance(likelihood, str) else type(likelihood).__name__,
        }
        pixels = math.prod(self.image_shape)
        self.encoder = nn.Sequential(
            MLP(pixels + num_classes, tuple(hidden[:-1]), hidden[-1], nn.Softplus, activate_output=True),
            ParameterHead(hidden[-1], self.posterior_family, latent_dim),
        )
        self.out_shape = (self.likelihood.num_params * self.image_shape[0],) + self.image_shape[1:]
        self.decoder = MLP(latent_dim + num_classes, tuple(reversed(hidden)), math.prod(self.out_shape), nn.Softplus)
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))

    def prior(self):
        """p(z) = N(0, I) with event shape ``(latent_dim,)``."""
        return pyro.distributions.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def _one_hot(self, y, batch_shape):
        return F.one_hot(y, self.num_classes).to(self.prior_loc.dtype).expand(batch_shape + (self.num_classes,))

    def _observations(self, x):
        if x.dim() < 1 or x[0].numel() != math.prod(self.image_shape):
            raise DataError(
                f"x must have shape (B, {', '.join(map(str, self.image_shape))}) or "
                f"(B, {math.prod(self.image_shape)}), got {tuple(x.shape)}"
            )
        return x.reshape((x.shape[0],) + self.image_shape)

    def _labels(self, y, batch_size):
        y = check_labels(y, self.num_classes)
        if y.shape[0] != batch_size:
            raise DataError(f"y must hold one label per example: {batch_size} examples, got {y.shape[0]} labels")
        return y.to(self.prior_loc.device)

    def decoder_output(self, z, y):
        """The decoder's output ``(..., P*C, H, W)`` for latents ``(..., latent_dim)`` and labels ``(B,)``."""
        h = torch.cat([z, self._one_hot(y, z.shape[:-1])], -1)
        return self.decoder(h).unflatten(-1, self.out_shape)

    @pyro_method
    def model(self, x=None, y=None, batch_size=None):
        """p(z) p(x|z, y): ``"z"`` from the prior, ``"x"`` scored (or sampled when ``x`` is None).

        :param x: images ``(B, C, H, W)`` or ``(B, C*H*W)``, or None to generate.
        :param y: labels ``(B,)`` (always given: the model is conditional).
        :param int batch_size: ignored (the labels give B); accepted so that trainers
            calling ``model(x, y, batch_size=B)`` work.
        """
        if y is None:
            raise DataError("the conditional VAE needs the labels y: call model(x, y) or model(None, y)")
        if x is not None:
            x = self._observations(x)
        y = self._labels(y, x.shape[0] if x is not None else (y.shape[0] if isinstance(y, torch.Tensor) else 1))
        with pyro.plate("data", y.shape[0]):
            z = pyro.sample("z", self.prior())
            out = self.decoder_output(z, y)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    @pyro_method
    def guide(self, x, y, batch_size=None):
        """q(z|x, y): ``"z"`` from a diagonal Normal whose parameters the encoder computes from (x, one-hot y)."""
        x = self._observations(x)
        y = self._labels(y, x.shape[0])
        with pyro.plate("data", x.shape[0]):
            params = self.encoder(torch.cat([x.flatten(1), self._one_hot(y, (x.shape[0],))], -1))
            return pyro.sample("z", self.posterior_family(**params))

    def decode(self, z, y):
        """Mean image E[x|z, y] ``(..., C, H, W)``."""
        return self.likelihood.mean(self.decoder_output(z, y))

    @torch.no_grad()
    def sample(self, num_samples, y):
        """Mean images E[x|z, y] for ``num_samples`` draws z ~ p(z), all of class ``y``.

        :param y: one label (an int) for every sample, or labels ``(num_samples,)``.
        :returns: images ``(num_samples, C, H, W)``.
        """
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((num_samples,), y, dtype=torch.long)
        y = self._labels(y, num_samples)
        return self.decode(self.prior().sample((num_samples,)), y)
