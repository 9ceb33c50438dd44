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

Conditional and adversarial-inference players:

* :class:`ConditionalGenerator` (sites ``"y"``, ``"z"``, ``"x"``) and
  :class:`ProjectionDiscriminator` (Miyato and Koyama 2018) for class-conditional
  GANs, trained by :class:`pyrogen.infer.Adversarial` with ``label="y"``;
* :class:`JointDiscriminator` D(x, z) for ALI / BiGAN
  (:class:`pyrogen.infer.AdversarialInference`) and :class:`LatentDiscriminator`
  D(z) for the adversarial autoencoder (:class:`pyrogen.infer.AdversarialAutoencoder`).

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

from pyrogen.checks import is_integer
from pyrogen.errors import DataError
from pyrogen.models.conditional import check_labels
from pyrogen.networks import _flatten_batch, check_slope, dcgan_init_

ARCHITECTURES = ("dcgan", "mlp")
NORMS = ("batch", "spectral", "none")


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


PROJECTION_NORMS = ("channel", "feature")


class DCGANGenerator(nn.Module):
    """DCGAN generator for ``(C, 28, 28)``-like images (sides divisible by 4).

    ``(..., latent_dim)`` -> linear -> ``(2c, H/4, W/4)`` -> transposed conv ``(c, H/2, W/2)``
    -> transposed conv ``(C, H, W)``, batch norm and ReLU between, output in [0, 1].

    The first layer is DCGAN's projection: a linear map of z to ``2c`` feature maps of
    ``H/4 x W/4``, the same map as pytorch/examples' ``ConvTranspose2d(nz, 2c, H/4)`` on a
    ``1 x 1`` input. Its batch norm (``projection_norm``) is

    * ``"feature"`` (default): ``BatchNorm1d`` over the ``2c H/4 W/4`` flattened features, one
      mean, variance, scale and shift per feature map *and position*;
    * ``"channel"`` (DCGAN's ``BatchNorm2d``): one of each per feature map, over the batch and
      all ``H/4 x W/4`` positions, as after every later layer.

    ``benchmarks/gan_quality.py`` measured both against a hand-written pytorch/examples DCGAN
    (3 seeds, 3 epochs of 10,000 Fashion-MNIST images): mean Fréchet distances 226.1 (feature),
    232.1 (channel) and 238.2 (the reference), a difference within the seeds' spread (docs/gan.rst).

    :param int channels: ``c``, the feature maps of the last hidden layer.
    :param str projection_norm: ``"feature"`` or ``"channel"`` (see above).
    """

    def __init__(self, latent_dim, image_shape=(1, 28, 28), channels=64, projection_norm="feature"):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise DataError(f"DCGANGenerator needs image sides divisible by 4, got {tuple(image_shape)}")
        if projection_norm not in PROJECTION_NORMS:
            raise DataError(f"projection_norm must be one of {PROJECTION_NORMS}, got {projection_norm!r}")
        maps = (2 * channels, h // 4, w // 4)
        if projection_norm == "channel":
            projection = [
                nn.Linear(latent_dim, math.prod(maps), bias=False),
                nn.Unflatten(1, maps),
                nn.BatchNorm2d(2 * channels),
                nn.ReLU(True),
            ]
        else:
            projection = [
                nn.Linear(latent_dim, math.prod(maps), bias=False),
                nn.BatchNorm1d(math.prod(maps)),
                nn.ReLU(True),
                nn.Unflatten(1, maps),
            ]
        self.net = nn.Sequential(
            *projection,
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True),
            nn.ConvTranspose2d(channels, c, 4, 2, 1),
        )  # fmt: skip
        self.projection_norm = projection_norm
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


def build_generator_network(
    architecture, latent_dim, image_shape, hidden=(256, 256), channels=64, projection_norm="feature"
):
    """A generator network by name: ``"dcgan"`` (``channels``, ``projection_norm``) or ``"mlp"``
    (``hidden`` widths)."""
    if architecture == "dcgan":
        return DCGANGenerator(latent_dim, image_shape, channels, projection_norm)
    if architecture == "mlp":
        return MLPGenerator(latent_dim, image_shape, tuple(hidden))
    raise DataError(f"unknown GAN architecture {architecture!r}; expected one of {ARCHITECTURES}")


def build_discriminator(architecture="dcgan", image_shape=(1, 28, 28), hidden=(256, 256), channels=64, norm=None):
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
    :param str projection_norm: batch norm after the DCGAN generator's first layer, ``"feature"``
        (default) or ``"channel"`` (DCGAN's; see :class:`DCGANGenerator`).
    :param network: optional module mapping ``(..., latent_dim)`` to ``(..., *image_shape)``;
        replaces the named architecture.

    Example::

        >>> from pyro import poutine
        >>> gen = Generator(latent_dim=8, architecture="mlp", hidden=(32,))
        >>> tr = poutine.trace(gen.model).get_trace(batch_size=5)
        >>> tr.nodes["x"]["value"].shape
        torch.Size([5, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dim=100,
        image_shape=(1, 28, 28),
        architecture="dcgan",
        hidden=(256, 256),
        channels=64,
        network=None,
        projection_norm="feature",
    ):
        super().__init__()
        if not is_integer(latent_dim) or latent_dim < 1:
            raise DataError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        latent_dim = int(latent_dim)
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        self.network = (
            network
            if network is not None
            else build_generator_network(architecture, latent_dim, self.image_shape, hidden, channels, projection_norm)
        )
        self.config = {
            "latent_dim": latent_dim,
            "image_shape": list(self.image_shape),
            "architecture": architecture if network is None else "custom",
            "hidden": list(hidden),
            "channels": channels,
            "projection_norm": projection_norm,
        }
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
            raise DataError(
                "the GAN generator is an implicit model: it has no density p(x), so x cannot be "
                "observed; call model(batch_size=B) and train it with pyrogen.infer.Adversarial"
            )
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


# ---------------------------------------------------------------------- conditional GANs


class ConditionalGenerator(PyroModule):
    """A class-conditional generator as a Pyro model: ``"y"`` a label, ``"z"`` ~ N(0, I), ``"x"`` ~ Delta(G(z, y)).

    The network sees ``[z, onehot(y)]`` (Mirza and Osindero 2014), so any
    architecture of :func:`build_generator_network` works with input width
    ``latent_dim + num_classes``. Site ``"y"`` is uniform over the classes and
    observed when labels are given, so ``model(batch_size=B)`` draws labels too
    and ``model(y=labels)`` generates the requested classes. Train it with
    :class:`pyrogen.infer.Adversarial` and ``label="y"`` against a
    :class:`ProjectionDiscriminator`: ``gan.step(x, y=labels)`` generates fakes
    for the real batch's labels and scores both batches with those labels.

    :param int num_classes: K.
    :param int latent_dim: dimension of z.
    :param tuple image_shape: shape of one example.
    :param str architecture: ``"dcgan"`` or ``"mlp"``.

    Example::

        >>> import torch
        >>> from pyro import poutine
        >>> gen = ConditionalGenerator(num_classes=10, latent_dim=8, architecture="mlp", hidden=(32,))
        >>> tr = poutine.trace(gen.model).get_trace(y=torch.tensor([3, 3, 7]))
        >>> tr.nodes["x"]["value"].shape, tr.nodes["y"]["is_observed"]
        (torch.Size([3, 1, 28, 28]), True)
    """

    def __init__(
        self,
        num_classes=10,
        latent_dim=100,
        image_shape=(1, 28, 28),
        architecture="dcgan",
        hidden=(256, 256),
        channels=64,
        network=None,
        projection_norm="feature",
    ):
        super().__init__()
        if not is_integer(num_classes) or num_classes < 2:
            raise DataError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not is_integer(latent_dim) or latent_dim < 1:
            raise DataError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        num_classes, latent_dim = int(num_classes), int(latent_dim)
        self.num_classes, self.latent_dim, self.image_shape = num_classes, latent_dim, tuple(image_shape)
        self.network = (
            network
            if network is not None
            else build_generator_network(
                architecture, latent_dim + num_classes, self.image_shape, hidden, channels, projection_norm
            )
        )
        self.config = {
            "num_classes": num_classes,
            "latent_dim": latent_dim,
            "image_shape": list(self.image_shape),
            "architecture": architecture if network is None else "custom",
            "hidden": list(hidden),
            "channels": channels,
            "projection_norm": projection_norm,
        }
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))
        self.register_buffer("class_logits", torch.zeros(num_classes))

    def prior(self):
        """p(z) = N(0, I) with event shape ``(latent_dim,)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def generate(self, z, y):
        """G(z, y) for latents ``(B, latent_dim)`` and labels ``(B,)``: examples ``(B, *image_shape)``."""
        y = check_labels(y, self.num_classes)
        one_hot = torch.nn.functional.one_hot(y.to(z.device), self.num_classes).to(z.dtype)
        return self.network(torch.cat([z, one_hot], -1))

    @pyro_method
    def model(self, x=None, y=None, batch_size=1):
        """Labels, latents and x = G(z, y) in ``plate("data")``.

        :param x: must be None (an implicit model has no density).
        :param y: labels ``(B,)`` to generate, or None to draw them uniformly.
        :param int batch_size: how many examples when ``y`` is None.
        :returns: the generated batch ``(B, *image_shape)``.
        """
        if x is not None:
            raise DataError(
                "the GAN generator is an implicit model: it has no density p(x), so x cannot be "
                "observed; call model(y=labels) and train it with pyrogen.infer.Adversarial"
            )
        if y is not None:
            y = check_labels(y, self.num_classes).to(self.prior_loc.device)
            batch_size = y.shape[0]
        with pyro.plate("data", batch_size):
            y = pyro.sample("y", dist.Categorical(logits=self.class_logits), obs=y)
            z = pyro.sample("z", self.prior())
            out = self.generate(z, y)
            pyro.sample("x", dist.Delta(out, event_dim=len(self.image_shape)))
        return out

    @torch.no_grad()
    def sample(self, num_samples, y=None):
        """``num_samples`` examples of class ``y`` (an int or labels ``(n,)``; None: uniform labels)."""
        if y is None:
            y = torch.randint(self.num_classes, (num_samples,), device=self.prior_loc.device)
        elif isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((num_samples,), y, dtype=torch.long, device=self.prior_loc.device)
        return self.generate(self.prior().sample((num_samples,)), y)


class ProjectionDiscriminator(nn.Module):
    """Projection discriminator (Miyato and Koyama, "cGANs with Projection Discriminator", ICLR 2018):

    .. math:: D(x, y) = \\psi(\\phi(x)) + \\operatorname{embed}(y)^\\top \\phi(x),

    with :math:`\\phi` a feature network ``(B, ...) -> (B, F)``, :math:`\\psi` a linear
    layer ``F -> 1`` and embed a ``K x F`` embedding of the labels. The inner product
    is the log density ratio term of a class-conditional discriminator whose class
    posterior is log-linear in :math:`\\phi(x)`.

    :param int num_classes: K.
    :param tuple image_shape: shape of one example.
    :param tuple hidden: widths of the default MLP feature network (``2x - 1``, then
        LeakyReLU(0.2) layers; :math:`F` = ``hidden[-1]``).
    :param str norm: ``"spectral"`` (the paper's) or ``"none"`` for every linear layer,
        the embedding included when spectral.
    :param features: optional network ``(B, ...) -> (B, F)`` replacing the MLP; it must have
        an ``out_features`` attribute (F).

    ``forward(x, y)`` returns scores ``(B,)``.
    """

    def __init__(self, num_classes=10, image_shape=(1, 28, 28), hidden=(256, 256), norm="none", features=None):
        super().__init__()
        if norm not in ("spectral", "none"):
            raise DataError(f"norm must be 'spectral' or 'none' for a projection discriminator, got {norm!r}")
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        if features is None:
            if not hidden:
                raise DataError("hidden must name at least one layer width")
            layers, width = [], math.prod(image_shape)
            for h in hidden:
                layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
                width = h
            features = _UnitToSymmetric(nn.Sequential(nn.Flatten(), *layers), width)
        self.features = features
        dim = features.out_features
        self.psi = nn.Linear(dim, 1)
        self.embed = nn.Embedding(num_classes, dim)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if norm == "spectral":
            _spectral(self)
            self.embed = spectral_norm(self.embed)

    def forward(self, x, y):
        y = check_labels(y, self.num_classes).to(x.device)
        h = self.features(x)
        return self.psi(h).squeeze(-1) + (self.embed(y) * h).sum(-1)


class _UnitToSymmetric(nn.Module):
    """Maps inputs in [0, 1] to 2x - 1 before ``net``; exposes ``out_features``."""

    def __init__(self, net, out_features):
        super().__init__()
        self.net, self.out_features = net, out_features

    def forward(self, x):
        return self.net(2 * x - 1)


# ---------------------------------------------------------------------- adversarial inference


class JointDiscriminator(nn.Module):
    """A discriminator D(x, z) on pairs of an example and a code, for ALI / BiGAN (Dumoulin et al. 2017;
    Donahue et al. 2017):

    .. math:: D(x, z) = f\\big([\\phi_x(x), \\phi_z(z)]\\big),

    with :math:`\\phi_x` a network on the example (mapped to ``2x - 1`` when
    ``unit_interval``), :math:`\\phi_z` an MLP on z and :math:`f` an MLP on their
    concatenation to one score, LeakyReLU(0.2) throughout, as ALI's joint
    discriminator (their ``x_discriminator``, ``z_discriminator`` and ``joint_discriminator``).
    :math:`\\phi_x` is

    * ``architecture="mlp"``: linear layers of widths ``x_hidden`` on the flattened example;
    * ``architecture="dcgan"`` (images ``(C, H, W)``, sides divisible by 4): two stride-2
      convolutions of ``channels`` and ``2 * channels`` maps (H -> H/2 -> H/4), then linear
      layers of widths ``x_hidden``; weights from N(0, 0.02).

    ``dropout`` > 0 puts a ``Dropout(dropout)`` before every convolution and linear layer of all
    three parts, the input layers included, as ALI's experiments do (0.2 in every discriminator
    branch; ``experiments/ali_svhn.py``): it is active in training mode only, so the scores of
    ``eval()`` are deterministic. No batch norm, so WGAN-GP's per-example penalty is valid.

    :param tuple x_shape: shape of one example.
    :param int latent_dim: dimension of z.
    :param tuple x_hidden: widths of :math:`\\phi_x`'s linear layers (may be empty: the raw example,
        or the convolutions' flattened maps).
    :param tuple z_hidden: widths of :math:`\\phi_z` (may be empty: the raw code).
    :param tuple joint_hidden: widths of :math:`f` before its output layer.
    :param bool unit_interval: examples lie in [0, 1] (images); False for real-valued data.
    :param str norm: ``"none"`` or ``"spectral"``.
    :param str architecture: ``"mlp"`` or ``"dcgan"`` (:math:`\\phi_x`, see above).
    :param int channels: feature maps of the first convolution of ``"dcgan"``.
    :param float dropout: dropout probability in [0, 1) before every layer (0: none).
    :param float slope: the leaky ReLU's negative slope (0.2, DCGAN's; ALI's Blocks ``LeakyRectifier``: 0.01).
    :param float init_std: weights from N(0, ``init_std``), biases 0; None (the default): N(0, 0.02)
        for ``"dcgan"``, torch's own initialisation for ``"mlp"``.

    ``forward(x, z)`` maps ``(B, *x_shape)`` and ``(B, latent_dim)`` to scores ``(B,)``.
    """

    def __init__(
        self,
        x_shape,
        latent_dim,
        x_hidden=(256,),
        z_hidden=(256,),
        joint_hidden=(256,),
        unit_interval=True,
        norm="none",
        architecture="mlp",
        channels=32,
        dropout=0.0,
        slope=0.2,
        init_std=None,
    ):
        super().__init__()
        if norm not in ("spectral", "none"):
            raise DataError(f"norm must be 'spectral' or 'none' for a joint discriminator, got {norm!r}")
        if architecture not in ARCHITECTURES:
            raise DataError(
                f"architecture must be one of {ARCHITECTURES} for a joint discriminator, got {architecture!r}"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise DataError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        check_slope(slope)
        if init_std is not None and (
            isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or not init_std > 0
        ):
            raise DataError(f"init_std must be a positive number or None, got {init_std!r}")
        self.x_shape, self.latent_dim, self.unit_interval = tuple(x_shape), latent_dim, unit_interval
        self.architecture, self.dropout = architecture, float(dropout)

        def drop():
            return [nn.Dropout(dropout)] if dropout > 0 else []

        def mlp(width, hidden):
            layers = []
            for h in hidden:
                layers += [*drop(), nn.Linear(width, h), nn.LeakyReLU(slope)]
                width = h
            return layers, width

        if architecture == "dcgan":
            if len(self.x_shape) != 3 or self.x_shape[1] % 4 or self.x_shape[2] % 4:
                raise DataError(
                    f"the dcgan joint discriminator needs images (C, H, W) with sides divisible by 4, "
                    f"got {self.x_shape}"
                )
            c, h, w = self.x_shape
            convs = [
                *drop(),
                nn.Conv2d(c, channels, 4, 2, 1),
                nn.LeakyReLU(slope),
                *drop(),
                nn.Conv2d(channels, 2 * channels, 4, 2, 1),
                nn.LeakyReLU(slope),
                nn.Flatten(),
            ]
            layers, wx = mlp(2 * channels * (h // 4) * (w // 4), x_hidden)
            self.phi_x = nn.Sequential(*convs, *layers)
        else:
            layers, wx = mlp(math.prod(self.x_shape), x_hidden)
            self.phi_x = nn.Sequential(*layers)
        layers, wz = mlp(latent_dim, z_hidden)
        self.phi_z = nn.Sequential(*layers)
        joint, width = mlp(wx + wz, joint_hidden)
        self.joint = nn.Sequential(*joint, *drop(), nn.Linear(width, 1))
        if architecture == "dcgan" or init_std is not None:
            dcgan_init_(self, 0.02 if init_std is None else init_std)
        if norm == "spectral":
            _spectral(self)

    def forward(self, x, z):
        if self.architecture == "dcgan":
            x = x.reshape((x.shape[0],) + self.x_shape)
        else:
            x = x.reshape(x.shape[0], -1)
        if self.unit_interval:
            x = 2 * x - 1
        return self.joint(torch.cat([self.phi_x(x), self.phi_z(z)], -1)).squeeze(-1)


class LatentDiscriminator(nn.Module):
    """A discriminator on codes z, for the adversarial autoencoder (Makhzani et al. 2016): an MLP
    ``(B, latent_dim) -> (B,)`` with LeakyReLU(0.2) hidden layers (the paper uses two layers of 1000 ReLUs).

    :param int latent_dim: dimension of z.
    :param tuple hidden: hidden widths.
    """

    def __init__(self, latent_dim, hidden=(256, 256)):
        super().__init__()
        layers, width = [], latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z).squeeze(-1)
