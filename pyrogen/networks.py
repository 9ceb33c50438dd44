"""Neural networks for encoders, decoders, generators and discriminators.

Every network maps a tensor with any number of leading batch dimensions, so the
same decoder serves a plain minibatch ``(B, D)`` and a vectorized importance
sampler's ``(K, B, D)``.

* Encoders map images ``(..., C, H, W)`` to activated features
  ``(..., out_features)``; a :class:`~pyrogen.distributions.ParameterHead`
  turns those into the parameters of q(z|x).
* Decoders map latents ``(..., latent_dim)`` to per-pixel outputs
  ``(..., out_channels, H, W)``; a likelihood turns those into p(x|z).

The MLP follows Kingma and Welling (2014) and Pyro's VAE example (softplus
hidden units); the convolutional pair follows the DCGAN layout of Radford et
al. (2016) scaled to 28x28 images.
"""

import math

from torch import nn


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

    def __init__(self, in_features, hidden, out_features, activation=nn.Softplus,
                 activate_output=False):
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
        self.net = MLP(math.prod(image_shape), hidden[:-1], hidden[-1], activation,
                       activate_output=True)

    def forward(self, x):
        return self.net(x.flatten(-len(self.image_shape)))


class MLPDecoder(nn.Module):
    """Maps latents ``(..., latent_dim)`` through ``hidden`` widths to ``(..., out_channels, H, W)``."""

    def __init__(self, latent_dim, image_shape, out_channels=None, hidden=(400,),
                 activation=nn.Softplus):
        super().__init__()
        _, h, w = image_shape
        self.out_shape = (out_channels or image_shape[0], h, w)
        self.net = MLP(latent_dim, hidden, math.prod(self.out_shape), activation)

    def forward(self, z):
        return self.net(z).unflatten(-1, self.out_shape)


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (28 -> 14 -> 7) and a linear layer to ``hidden`` features.

    :param int channels: feature maps of the first convolution (the second has twice as many).
    """

    def __init__(self, image_shape, hidden=256, channels=32, activation=nn.SiLU):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvEncoder needs image sides divisible by 4, got {tuple(image_shape)}")
        self.out_features = hidden
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), activation(),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), activation(),
            nn.Flatten(),
            nn.Linear(2 * channels * (h // 4) * (w // 4), hidden), activation(),
        )  # fmt: skip

    def forward(self, x):
        x, batch_shape = _flatten_batch(x, 3)
        return self.net(x).unflatten(0, batch_shape)


class ConvDecoder(nn.Module):
    """A linear layer to a 7x7 map, then two stride-2 transposed convolutions (7 -> 14 -> 28)."""

    def __init__(self, latent_dim, image_shape, out_channels=None, hidden=256, channels=32,
                 activation=nn.SiLU):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvDecoder needs image sides divisible by 4, got {tuple(image_shape)}")
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), activation(),
            nn.Linear(hidden, 2 * channels * (h // 4) * (w // 4)), activation(),
            nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), activation(),
            nn.ConvTranspose2d(channels, out_channels or c, 4, 2, 1),
        )  # fmt: skip

    def forward(self, z):
        z, batch_shape = _flatten_batch(z, 1)
        return self.net(z).unflatten(0, batch_shape)


class DCGANEncoder(nn.Module):
    """ALI's and DCGAN's convolutional encoder scaled to 28x28: two stride-2 convolutions (28 -> 14 -> 7)
    and a linear layer to ``hidden`` features, batch norm and LeakyReLU(0.2) after each but the first
    convolution (DCGAN: no batch norm on the input layer; Radford et al. 2016), weights from N(0, 0.02).

    The encoder of ALI's convolutional experiments (Dumoulin et al. 2017, appendix A; their
    ``experiments/ali_svhn.py``) has the same layout at 32x32 with more layers: convolutions, batch
    norm and leaky ReLU down to a 1x1 map, then the code's mean and log-scale.

    :param int channels: feature maps of the first convolution (the second has twice as many).
    """

    def __init__(self, image_shape, hidden=256, channels=32):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"DCGANEncoder needs image sides divisible by 4, got {tuple(image_shape)}")
        self.out_features = hidden
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * channels), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * channels * (h // 4) * (w // 4), hidden, bias=False), nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.2),
        )  # fmt: skip
        _normal_init_(self)

    def forward(self, x):
        x, batch_shape = _flatten_batch(x, 3)
        return self.net(2 * x - 1).unflatten(0, batch_shape)  # images in [0, 1] -> [-1, 1], as DCGAN's


class DCGANDecoder(nn.Module):
    """DCGAN's generator as a decoder: a linear layer to ``hidden`` units and another to a 7x7 map,
    then two stride-2 transposed convolutions (7 -> 14 -> 28), batch norm and ReLU after every layer
    but the last, whose ``out_channels`` maps are the likelihood's parameters; weights from N(0, 0.02)."""

    def __init__(self, latent_dim, image_shape, out_channels=None, hidden=256, channels=32):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"DCGANDecoder needs image sides divisible by 4, got {tuple(image_shape)}")
        maps = 2 * channels * (h // 4) * (w // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, maps, bias=False), nn.BatchNorm1d(maps), nn.ReLU(),
            nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, out_channels or c, 4, 2, 1),
        )  # fmt: skip
        _normal_init_(self)

    def forward(self, z):
        z, batch_shape = _flatten_batch(z, 1)
        return self.net(z).unflatten(0, batch_shape)


def _normal_init_(module, std=0.02):
    """DCGAN's initialisation: weights ~ N(0, std), batch-norm scales ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


ARCHITECTURES = ("mlp", "conv", "dcgan")


def build_encoder(architecture, image_shape, hidden):
    """An encoder by name: ``"mlp"`` (``hidden``: tuple of widths), ``"conv"`` or ``"dcgan"``
    (``hidden[-1]`` features; ``"dcgan"`` has batch norm, for ALI / BiGAN)."""
    if architecture == "mlp":
        return MLPEncoder(image_shape, tuple(hidden))
    if architecture == "conv":
        return ConvEncoder(image_shape, hidden=hidden[-1])
    if architecture == "dcgan":
        return DCGANEncoder(image_shape, hidden=hidden[-1])
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")


def build_decoder(architecture, latent_dim, image_shape, out_channels, hidden):
    """A decoder by name, mirroring :func:`build_encoder`."""
    if architecture == "mlp":
        return MLPDecoder(latent_dim, image_shape, out_channels, tuple(reversed(hidden)))
    if architecture == "conv":
        return ConvDecoder(latent_dim, image_shape, out_channels, hidden=hidden[-1])
    if architecture == "dcgan":
        return DCGANDecoder(latent_dim, image_shape, out_channels, hidden=hidden[-1])
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
