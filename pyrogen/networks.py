"""Neural networks for encoders, decoders, generators and discriminators.

Every network maps a tensor with any number of leading batch dimensions, so the
same decoder serves a plain minibatch ``(B, D)`` and a vectorized importance
sampler's ``(K, B, D)``.

* Encoders map images ``(..., C, H, W)`` to activated features
  ``(..., out_features)``; a :class:`~pyrogen.distributions.ParameterHead`
  turns those into the parameters of q(z|x).
* Decoders map latents ``(..., latent_dim)`` to per-pixel outputs
  ``(..., out_channels, H, W)``; a likelihood turns those into p(x|z).

The MLP takes examples of any shape: images ``(C, H, W)`` or flat vectors of ``D``
features (a table's rows, a count matrix's cells), whose decoder output is
``(..., out_channels)`` with ``out_channels = num_params * D``.

The MLP follows Kingma and Welling (2014) and Pyro's VAE example (softplus
hidden units); the convolutional pair follows the DCGAN layout of Radford et
al. (2016) scaled to 28x28 images. The convolutions halve each side twice, so
they take sides divisible by 4; other sizes are padded with zeros (centred) to
the next multiple of 4 on the way in, and the decoder's output is cropped back.
"""

import math

from torch import nn
from torch.nn import functional as F

from pyrogen.errors import DataError


def _flatten_batch(x, event_dims):
    batch_shape = x.shape[: x.dim() - event_dims]
    return x.reshape((-1,) + x.shape[x.dim() - event_dims :]), batch_shape


class MLP(nn.Sequential):
    """Fully connected layers ``in_features -> hidden... -> out_features``.

    :param int in_features: input width.
    :param hidden: widths of the hidden layers (a tuple; may be empty).
    :param int out_features: output width.
    :param activation: module class used after each hidden layer (default :class:`~torch.nn.Softplus`).
    :param bool activate_output: apply the activation to the output too.
    """

    def __init__(self, in_features, hidden, out_features, activation=nn.Softplus, activate_output=False):
        layers, width = [], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), activation()]
            width = h
        layers.append(nn.Linear(width, out_features))
        if activate_output:
            layers.append(activation())
        super().__init__(*layers)


class MLPEncoder(nn.Module):
    """Flattens images ``(..., C, H, W)`` and maps them to ``(..., hidden[-1])`` features."""

    def __init__(self, image_shape, hidden=(400,), activation=nn.Softplus):
        super().__init__()
        if not hidden:
            raise ValueError("MLPEncoder needs at least one hidden layer width")
        self.image_shape = tuple(image_shape)
        self.out_features = hidden[-1]
        self.net = MLP(math.prod(image_shape), hidden[:-1], hidden[-1], activation, activate_output=True)

    def forward(self, x):
        return self.net(x.flatten(-len(self.image_shape)))


class MLPDecoder(nn.Module):
    """Maps latents ``(..., latent_dim)`` through ``hidden`` widths to ``(..., out_channels, H, W)``
    (for flat examples ``(D,)``: ``(..., out_channels)``)."""

    def __init__(self, latent_dim, image_shape, out_channels=None, hidden=(400,), activation=nn.Softplus):
        super().__init__()
        self.out_shape = (out_channels or image_shape[0],) + tuple(image_shape[1:])
        self.net = MLP(latent_dim, hidden, math.prod(self.out_shape), activation)

    def forward(self, z):
        return self.net(z).unflatten(-1, self.out_shape)


MAX_LINEAR_WEIGHTS = 50_000_000
"""The largest linear layer (in weights) that the convolutional networks build between their last
feature map and the hidden units; larger images are refused (resize them) rather than built."""


def conv_sides(network, image_shape, channels, hidden):
    """The sides ``(H', W')`` the convolutions of ``network`` (a class name, for messages) work at for
    examples of ``image_shape``: ``(H, W)`` rounded up to multiples of 4. Raises ``ValueError`` in one
    line for examples that are not images ``(C, H, W)`` or whose map would need a linear layer of more
    than :data:`MAX_LINEAR_WEIGHTS` weights."""
    shape = tuple(image_shape)
    if len(shape) != 3:
        raise ValueError(
            f"{network} needs images (C, H, W), got examples of shape {shape}; "
            "use the mlp architecture for flat vectors"
        )
    c, h, w = shape
    h4, w4 = 4 * math.ceil(h / 4), 4 * math.ceil(w / 4)
    weights = 2 * channels * (h4 // 4) * (w4 // 4) * hidden
    if weights > MAX_LINEAR_WEIGHTS:
        raise ValueError(
            f"{network} on {c}x{h}x{w} images would need a linear layer of {weights:,} weights "
            f"(a {h4 // 4}x{w4 // 4} map of {2 * channels} channels to {hidden} units; at most "
            f"{MAX_LINEAR_WEIGHTS:,}): resize the images"
        )
    return h4, w4


def _pads(image_shape, sides):
    """``(left, right, top, bottom)`` zero padding that centres an ``(H, W)`` image in ``sides``."""
    (h, w), (h4, w4) = image_shape[-2:], sides
    return ((w4 - w) // 2, w4 - w - (w4 - w) // 2, (h4 - h) // 2, h4 - h - (h4 - h) // 2)


class _Padded(nn.Module):
    """Shared by the convolutional networks: pad inputs / crop outputs between ``(H, W)`` and the
    sides the convolutions take."""

    def _setup_sides(self, network, image_shape, channels, hidden):
        self.image_shape = tuple(image_shape)
        self.sides = conv_sides(network, image_shape, channels, hidden)
        self.pads = _pads(self.image_shape, self.sides)
        return self.sides

    def _pad(self, x):
        return F.pad(x, self.pads) if any(self.pads) else x

    def _crop(self, out):
        if not any(self.pads):
            return out
        left, _, top, _ = self.pads
        h, w = self.image_shape[1:]
        return out[..., top : top + h, left : left + w]


class ConvEncoder(_Padded):
    """Two stride-2 convolutions (28 -> 14 -> 7) and a linear layer to ``hidden`` features.

    Images whose sides are not multiples of 4 are padded (:func:`conv_sides`).

    :param int channels: feature maps of the first convolution (the second has twice as many).
    """

    def __init__(self, image_shape, hidden=256, channels=32, activation=nn.SiLU):
        super().__init__()
        c = image_shape[0]
        h, w = self._setup_sides("ConvEncoder", image_shape, channels, hidden)
        self.out_features = hidden
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), activation(),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), activation(),
            nn.Flatten(),
            nn.Linear(2 * channels * (h // 4) * (w // 4), hidden), activation(),
        )  # fmt: skip

    def forward(self, x):
        x, batch_shape = _flatten_batch(x, 3)
        return self.net(self._pad(x)).unflatten(0, batch_shape)


class ConvDecoder(_Padded):
    """A linear layer to a 7x7 map, then two stride-2 transposed convolutions (7 -> 14 -> 28); for
    sides that are not multiples of 4 the output is cropped (:func:`conv_sides`)."""

    def __init__(self, latent_dim, image_shape, out_channels=None, hidden=256, channels=32, activation=nn.SiLU):
        super().__init__()
        c = image_shape[0]
        h, w = self._setup_sides("ConvDecoder", image_shape, channels, hidden)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), activation(),
            nn.Linear(hidden, 2 * channels * (h // 4) * (w // 4)), activation(),
            nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), activation(),
            nn.ConvTranspose2d(channels, out_channels or c, 4, 2, 1),
        )  # fmt: skip

    def forward(self, z):
        z, batch_shape = _flatten_batch(z, 1)
        return self._crop(self.net(z)).unflatten(0, batch_shape)


DCGAN_LAYOUTS = ("dcgan", "ali")
"""Layouts of :class:`DCGANEncoder` and :class:`DCGANDecoder` (see their docs)."""

DECODER_ACTIVATIONS = ("relu", "leaky")


def check_slope(slope):
    """Refuse a leaky ReLU slope outside [0, 1) in one line (:class:`~pyrogen.errors.DataError`)."""
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0 <= slope < 1:
        raise DataError(f"slope must be a number in [0, 1), got {slope!r}")


def _check_dcgan_options(layout, slope, init_std, activation=None):
    if layout not in DCGAN_LAYOUTS:
        raise ValueError(f"layout must be one of {DCGAN_LAYOUTS}, got {layout!r}")
    check_slope(slope)
    if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or not init_std > 0:
        raise ValueError(f"init_std must be a positive number, got {init_std!r}")
    if activation is not None and activation not in DECODER_ACTIVATIONS:
        raise ValueError(f"decoder_activation must be one of {DECODER_ACTIVATIONS}, got {activation!r}")


class DCGANEncoder(_Padded):
    """ALI's and DCGAN's convolutional encoder scaled to 28x28: two stride-2 convolutions (28 -> 14 -> 7)
    and a linear layer to ``hidden`` features, batch norm and LeakyReLU(0.2) after each but the first
    convolution (DCGAN: no batch norm on the input layer; Radford et al. 2016), weights from N(0, 0.02).

    The encoder of ALI's convolutional experiments (Dumoulin et al. 2017, appendix A; their
    ``experiments/ali_svhn.py``) has the same layout at 32x32 with more layers: convolutions, batch
    norm and leaky ReLU down to a 1x1 map, then the code's mean and log-scale. ``layout="ali"`` is
    that layout at 28x28 (``benchmarks/ali_quality.py``'s reference): batch norm after the first
    convolution too, and the last layer a (H/4 x W/4) convolution to a 1x1 map of ``hidden`` channels,
    which computes the same function class as the linear layer of ``"dcgan"`` (a convolution whose
    kernel covers the whole map is a linear layer on the flattened map); batch-norm scales start at 1.

    :param int channels: feature maps of the first convolution (the second has twice as many).
    :param str layout: ``"dcgan"`` (default) or ``"ali"`` (see above).
    :param float slope: the leaky ReLU's negative slope (DCGAN's 0.2; ALI's Blocks ``LeakyRectifier`` 0.01).
    :param float init_std: standard deviation of the initial weights (DCGAN's 0.02; ALI's 0.01).
    :param bool centre_input: map images from [0, 1] to [-1, 1] (``2x - 1``) before the first
        convolution, as DCGAN's data are (the default), or take them as they are, as ALI's encoder does.
    """

    def __init__(
        self, image_shape, hidden=256, channels=32, layout="dcgan", slope=0.2, init_std=0.02, centre_input=True
    ):
        super().__init__()
        c = image_shape[0]
        h, w = self._setup_sides("DCGANEncoder", image_shape, channels, hidden)
        _check_dcgan_options(layout, slope, init_std)
        if not isinstance(centre_input, bool):
            raise ValueError(f"centre_input must be True or False, got {centre_input!r}")
        self.out_features, self.centre_input = hidden, centre_input
        if layout == "ali":
            self.net = nn.Sequential(
                nn.Conv2d(c, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.LeakyReLU(slope),
                nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * channels),
                nn.LeakyReLU(slope),
                nn.Conv2d(2 * channels, hidden, (h // 4, w // 4), bias=False), nn.BatchNorm2d(hidden),
                nn.LeakyReLU(slope), nn.Flatten(),
            )  # fmt: skip
        else:
            self.net = nn.Sequential(
                nn.Conv2d(c, channels, 4, 2, 1), nn.LeakyReLU(slope),
                nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * channels),
                nn.LeakyReLU(slope),
                nn.Flatten(),
                nn.Linear(2 * channels * (h // 4) * (w // 4), hidden, bias=False), nn.BatchNorm1d(hidden),
                nn.LeakyReLU(slope),
            )  # fmt: skip
        dcgan_init_(self, init_std, norm_std=0.0 if layout == "ali" else None)  # ALI's batch norm: scales 1

    def forward(self, x):
        x, batch_shape = _flatten_batch(x, 3)
        x = self._pad(x)  # zeros (black) around images whose sides are not multiples of 4
        if self.centre_input:
            x = 2 * x - 1  # images in [0, 1] -> [-1, 1], as DCGAN's
        return self.net(x).unflatten(0, batch_shape)


class DCGANDecoder(_Padded):
    """DCGAN's generator as a decoder: a linear layer to ``hidden`` units and another to a 7x7 map,
    then two stride-2 transposed convolutions (7 -> 14 -> 28), batch norm and ReLU after every layer
    but the last, whose ``out_channels`` maps are the likelihood's parameters; weights from N(0, 0.02).

    ``layout="ali"`` is the generator of ALI's convolutional experiments (Dumoulin et al. 2017,
    appendix A) at 28x28, ``benchmarks/ali_quality.py``'s reference: a transposed convolution from z
    to a 7x7 map of ``hidden`` channels, stride-2 transposed convolutions to ``2 * channels`` maps at
    14x14 and ``channels`` maps at 28x28, each with batch norm and the activation, then a 1x1
    convolution to the ``out_channels`` maps; batch-norm scales start at 1.

    :param str layout: ``"dcgan"`` (default) or ``"ali"`` (see above).
    :param str activation: ``"relu"`` (DCGAN's generator) or ``"leaky"`` (ALI's, LeakyReLU(``slope``)).
    :param float slope: the leaky ReLU's negative slope when ``activation="leaky"``.
    :param float init_std: standard deviation of the initial weights (DCGAN's 0.02; ALI's 0.01).
    """

    def __init__(
        self,
        latent_dim,
        image_shape,
        out_channels=None,
        hidden=256,
        channels=32,
        layout="dcgan",
        activation="relu",
        slope=0.2,
        init_std=0.02,
    ):
        super().__init__()
        c = image_shape[0]
        h, w = self._setup_sides("DCGANDecoder", image_shape, channels, hidden)
        _check_dcgan_options(layout, slope, init_std, activation)

        def act():
            return nn.ReLU() if activation == "relu" else nn.LeakyReLU(slope)

        if layout == "ali":
            self.net = nn.Sequential(
                nn.Unflatten(1, (latent_dim, 1, 1)),
                nn.ConvTranspose2d(latent_dim, hidden, (h // 4, w // 4), bias=False), nn.BatchNorm2d(hidden), act(),
                nn.ConvTranspose2d(hidden, 2 * channels, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * channels), act(),
                nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), act(),
                nn.Conv2d(channels, out_channels or c, 1),
            )  # fmt: skip
        else:
            maps = 2 * channels * (h // 4) * (w // 4)
            self.net = nn.Sequential(
                nn.Linear(latent_dim, hidden, bias=False), nn.BatchNorm1d(hidden), act(),
                nn.Linear(hidden, maps, bias=False), nn.BatchNorm1d(maps), act(),
                nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
                nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), act(),
                nn.ConvTranspose2d(channels, out_channels or c, 4, 2, 1),
            )  # fmt: skip
        dcgan_init_(self, init_std, norm_std=0.0 if layout == "ali" else None)  # ALI's batch norm: scales 1

    def forward(self, z):
        z, batch_shape = _flatten_batch(z, 1)
        return self._crop(self.net(z)).unflatten(0, batch_shape)


def dcgan_init_(module, std=0.02, norm_std=None):
    """DCGAN's initialisation, in place: conv and linear weights ~ N(0, ``std``) (DCGAN's 0.02),
    batch-norm scales ~ N(1, ``norm_std``) (None: ``std``, as DCGAN's code; 0: exactly 1, as ALI's
    Blocks ``BatchNormalization``), biases 0. Returns ``module``."""
    norm_std = std if norm_std is None else norm_std
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if norm_std > 0:
                nn.init.normal_(m.weight, 1.0, norm_std)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


INPUT_TRANSFORMS = ("none", "log1p")
"""What an encoder does to its input first (:class:`InputTransform`)."""


class InputTransform(nn.Module):
    """An encoder that sees ``log1p(x)`` rather than ``x``: for counts, whose few large values would
    otherwise dominate the first layer (scvi-tools' ``log_variational``; Lopez et al. 2018). Keeps the
    wrapped encoder's ``out_features``.

    :param nn.Module net: the encoder.
    :param str transform: one of :data:`INPUT_TRANSFORMS` other than ``"none"``.
    """

    def __init__(self, net, transform="log1p"):
        super().__init__()
        if transform not in INPUT_TRANSFORMS[1:]:
            raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {transform!r}")
        self.net, self.transform, self.out_features = net, transform, net.out_features

    def forward(self, x):
        return self.net(x.log1p())


ARCHITECTURES = ("mlp", "conv", "dcgan")


DCGAN_OPTIONS = ("layout", "slope", "init_std", "decoder_activation", "centre_input")
"""Keys of the ``network`` options of the ``"dcgan"`` architecture (:func:`build_encoder`)."""


def _dcgan_options(architecture, network):
    network = dict(network or {})
    if network and architecture != "dcgan":
        raise ValueError(
            f"network options are for the 'dcgan' architecture only, got architecture "
            f"{architecture!r} with {sorted(network)}"
        )
    unknown = sorted(set(network) - set(DCGAN_OPTIONS))
    if unknown:
        raise ValueError(f"unknown network option(s) {unknown}; expected some of {DCGAN_OPTIONS}")
    return network


def build_encoder(architecture, image_shape, hidden, network=None):
    """An encoder by name: ``"mlp"`` (``hidden``: tuple of widths), ``"conv"`` or ``"dcgan"``
    (``hidden[-1]`` features; ``"dcgan"`` has batch norm, for ALI / BiGAN). ``network``: options of
    ``"dcgan"`` (:data:`DCGAN_OPTIONS`; ``layout``, ``slope``, ``init_std`` and ``centre_input`` reach the
    encoder)."""
    network = _dcgan_options(architecture, network)
    network.pop("decoder_activation", None)
    if architecture == "mlp":
        return MLPEncoder(image_shape, tuple(hidden))
    if architecture == "conv":
        return ConvEncoder(image_shape, hidden=hidden[-1])
    if architecture == "dcgan":
        return DCGANEncoder(image_shape, hidden=hidden[-1], **network)
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")


def build_decoder(architecture, latent_dim, image_shape, out_channels, hidden, network=None):
    """A decoder by name, mirroring :func:`build_encoder` (``network["decoder_activation"]`` is the
    decoder's ``activation``)."""
    network = _dcgan_options(architecture, network)
    network.pop("centre_input", None)
    if "decoder_activation" in network:
        network["activation"] = network.pop("decoder_activation")
    if architecture == "mlp":
        return MLPDecoder(latent_dim, image_shape, out_channels, tuple(reversed(hidden)))
    if architecture == "conv":
        return ConvDecoder(latent_dim, image_shape, out_channels, hidden=hidden[-1])
    if architecture == "dcgan":
        return DCGANDecoder(latent_dim, image_shape, out_channels, hidden=hidden[-1], **network)
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
