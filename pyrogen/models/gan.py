"""The generator of a GAN as a Pyro model, and the networks of both players.

The generator is the implicit model

.. math:: z \\sim \\mathcal{N}(0, I), \\qquad x = G(z), \\quad\\text{i.e.}\\quad
   p(x \\mid z) = \\delta(x - G(z)),

written as Pyro code: site ``"z"`` from the prior and site ``"x"`` a point mass
``dist.Delta(G(z), event_dim=3)``, both inside ``pyro.plate("data", B)``, the
same sites, plate and call signature as :meth:`pyrogen.models.VAE.model`. It can
be sampled but has no density, so it is trained by
:class:`pyrogen.infer.Adversarial` rather than by SVI.

**Pixel range.** pyrogen's images lie in [0, 1]. DCGAN's recipe (Radford et
al. 2016) has data in [-1, 1] and a Tanh output. Both hold here at once: the
generator's network ends in :math:`x = (\\tanh(h) + 1) / 2 = \\sigma(2h)`, so its
``"x"`` site lies in [0, 1] like the data and like a VAE's mean images, and every
discriminator first maps its input to :math:`2x - 1`. The game the two networks
play is then exactly DCGAN's in [-1, 1]; generated images are compared with
VAE samples and real images on the same [0, 1] scale.

Networks:

* :class:`DCGANGenerator` / :class:`DCGANDiscriminator`: DCGAN's layout scaled to
  28x28 (7 -> 14 -> 28 with stride-2 transposed convolutions; batch norm and ReLU
  in G; LeakyReLU(0.2) in D, no batch norm on D's input layer), weights from
  N(0, 0.02) and batch-norm scales from N(1, 0.02).
* :class:`MLPGenerator` / :class:`MLPDiscriminator`: fully connected players.

Discriminators take ``norm="batch"`` (DCGAN), ``"spectral"`` (spectral
normalisation of every weight, Miyato et al. 2018, and no batch norm) or
``"none"`` (needed by the per-example gradient penalty of WGAN-GP, which batch
norm would couple across examples).
"""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from pyrogen.errors import DataError
from pyrogen.networks import _flatten_batch

ARCHITECTURES = ("dcgan", "mlp")
NORMS = ("batch", "spectral", "none")


def dcgan_init_(module):
    """DCGAN's initialisation, in place: conv and linear weights ~ N(0, 0.02), batch-norm scales
    ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def _check_norm(norm):
    if norm not in NORMS:
        raise DataError(f"norm must be one of {NORMS}, got {norm!r}")


def _spectral(module):
    """Spectral normalisation of every convolution and linear layer of ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(module, name, spectral_norm(child))
        else:
            _spectral(child)
    return module


def _to_unit_interval(h):
    """:math:`(\\tanh(h) + 1) / 2`: DCGAN's Tanh output moved from [-1, 1] to pyrogen's [0, 1]."""
    return torch.sigmoid(2 * h)


class DCGANGenerator(nn.Module):
    """DCGAN generator for ``(C, 28, 28)``-like images (sides divisible by 4).

    ``(..., latent_dim)`` -> linear -> ``(2c, H/4, W/4)`` -> transposed conv ``(c, H/2, W/2)``
    -> transposed conv ``(C, H, W)``, batch norm and ReLU between, output in [0, 1].

    :param int channels: ``c``, the feature maps of the last hidden layer.
    """

    def __init__(self, latent_dim, image_shape=(1, 28, 28), channels=64):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise DataError(f"DCGANGenerator needs image sides divisible by 4, got {tuple(image_shape)}")
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * channels * (h // 4) * (w // 4), bias=False),
            nn.BatchNorm1d(2 * channels * (h // 4) * (w // 4)), nn.ReLU(True),
            nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True),
            nn.ConvTranspose2d(channels, c, 4, 2, 1),
        )  # fmt: skip
        dcgan_init_(self)

    def forward(self, z):
        z, batch_shape = _flatten_batch(z, 1)
        return _to_unit_interval(self.net(z)).unflatten(0, batch_shape)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: ``(..., C, H, W)`` in [0, 1] -> ``2x - 1`` -> two stride-2 convolutions
    with LeakyReLU(0.2) -> one score ``(...,)``.

    :param int channels: feature maps of the first convolution (the second has twice as many).
    :param str norm: ``"batch"``, ``"spectral"`` or ``"none"`` (see the module docs).
    """

    def __init__(self, image_shape=(1, 28, 28), channels=64, norm="batch"):
        super().__init__()
        _check_norm(norm)
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise DataError(f"DCGANDiscriminator needs image sides divisible by 4, got {tuple(image_shape)}")
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=norm != "batch"),
            nn.BatchNorm2d(2 * channels) if norm == "batch" else nn.Identity(), nn.LeakyReLU(0.2, True),
            nn.Flatten(), nn.Linear(2 * channels * (h // 4) * (w // 4), 1),
        )  # fmt: skip
        dcgan_init_(self)
        if norm == "spectral":
            _spectral(self)
        self.image_shape = tuple(image_shape)

    def forward(self, x):
        x, batch_shape = _flatten_batch(x, 3)
        return self.net(2 * x - 1).reshape(batch_shape)


class MLPGenerator(nn.Module):
    """Fully connected generator: ``(..., latent_dim)`` -> ReLU hidden layers -> ``(..., *image_shape)``
    in [0, 1]."""

    def __init__(self, latent_dim, image_shape=(1, 28, 28), hidden=(256, 256)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers, width = [], latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(True)]
            width = h
        layers.append(nn.Linear(width, math.prod(image_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return _to_unit_interval(self.net(z)).unflatten(-1, self.image_shape)


class MLPDiscriminator(nn.Module):
    """Fully connected discriminator: ``(..., *image_shape)`` in [0, 1] -> ``2x - 1`` -> LeakyReLU(0.2)
    hidden layers -> one score ``(...,)``."""

    def __init__(self, image_shape=(1, 28, 28), hidden=(256, 256), norm="none"):
        super().__init__()
        _check_norm(norm)
        self.image_shape = tuple(image_shape)
        layers, width = [], math.prod(image_shape)
        for h in hidden:
            layers += [nn.Linear(width, h)]
            if norm == "batch":
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.LeakyReLU(0.2, True))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        if norm == "spectral":
            _spectral(self)

    def forward(self, x):
        x, batch_shape = _flatten_batch(x, len(self.image_shape))
        return self.net(2 * x.flatten(1) - 1).reshape(batch_shape)


def build_generator_network(architecture, latent_dim, image_shape, hidden=(256, 256), channels=64):
    """A generator network by name: ``"dcgan"`` (``channels``) or ``"mlp"`` (``hidden`` widths)."""
    if architecture == "dcgan":
        return DCGANGenerator(latent_dim, image_shape, channels)
    if architecture == "mlp":
        return MLPGenerator(latent_dim, image_shape, tuple(hidden))
    raise DataError(f"unknown GAN architecture {architecture!r}; expected one of {ARCHITECTURES}")


def build_discriminator(architecture="dcgan", image_shape=(1, 28, 28), hidden=(256, 256), channels=64,
                        norm=None):
    """A discriminator by name, mirroring :func:`build_generator_network`.

    :param str norm: ``"batch"``, ``"spectral"`` or ``"none"``; None for the architecture's
        default (batch norm for DCGAN, none for the MLP).
    """
    if architecture == "dcgan":
        return DCGANDiscriminator(image_shape, channels, norm or "batch")
    if architecture == "mlp":
        return MLPDiscriminator(image_shape, tuple(hidden), norm or "none")
    raise DataError(f"unknown GAN architecture {architecture!r}; expected one of {ARCHITECTURES}")


class Generator(PyroModule):
    """The generator of a GAN as a Pyro model: ``"z"`` ~ N(0, I), ``"x"`` ~ Delta(G(z)).

    :param int latent_dim: dimension of z.
    :param tuple image_shape: shape of one example (``(C, H, W)``; any shape for a custom network).
    :param str architecture: ``"dcgan"`` or ``"mlp"``.
    :param tuple hidden: hidden widths of the MLP generator.
    :param int channels: feature maps of the DCGAN generator's last hidden layer.
    :param network: optional module mapping ``(..., latent_dim)`` to ``(..., *image_shape)``;
        replaces the named architecture.

    Example::

        >>> from pyro import poutine
        >>> gen = Generator(latent_dim=8, architecture="mlp", hidden=(32,))
        >>> tr = poutine.trace(gen.model).get_trace(batch_size=5)
        >>> tr.nodes["x"]["value"].shape
        torch.Size([5, 1, 28, 28])
    """

    def __init__(self, latent_dim=100, image_shape=(1, 28, 28), architecture="dcgan", hidden=(256, 256),
                 channels=64, network=None):
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise DataError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        self.network = network if network is not None else build_generator_network(
            architecture, latent_dim, self.image_shape, hidden, channels)
        self.config = {"latent_dim": latent_dim, "image_shape": list(self.image_shape),
                       "architecture": architecture if network is None else "custom",
                       "hidden": list(hidden), "channels": channels}
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))

    def prior(self):
        """p(z) = N(0, I) with event shape ``(latent_dim,)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    @pyro_method
    def model(self, x=None, batch_size=1):
        """p(z) and x = G(z): ``"z"`` from the prior, ``"x"`` a point mass at G(z), in ``plate("data")``.

        :param x: must be None: an implicit model has no density to score data with.
        :param int batch_size: how many examples to generate.
        :returns: the generated batch ``(batch_size, *image_shape)``.
        """
        if x is not None:
            raise DataError("the GAN generator is an implicit model: it has no density p(x), so x cannot be "
                            "observed; call model(batch_size=B) and train it with pyrogen.infer.Adversarial")
        with pyro.plate("data", batch_size):
            z = pyro.sample("z", self.prior())
            out = self.network(z)
            pyro.sample("x", dist.Delta(out, event_dim=len(self.image_shape)))
        return out

    def generate(self, z):
        """G(z) for latents ``(..., latent_dim)``: examples ``(..., *image_shape)``."""
        return self.network(z)

    @torch.no_grad()
    def sample(self, num_samples):
        """``num_samples`` generated examples ``(n, *image_shape)`` (no gradient)."""
        return self.generate(self.prior().sample((num_samples,)))
