"""A PixelCNN-style autoregressive decoder and the VAE that uses it (a collapse-prone pair).

van den Oord et al. (2016, "Pixel recurrent neural networks") model an image
pixel by pixel in raster order, :math:`p(x \\mid z) = \\prod_i p(x_i \\mid x_{<i}, z)`,
with convolutions whose kernels are masked so that output i sees only inputs
before i (mask "A" in the first layer, which also hides pixel i itself; mask
"B" afterwards). Such a decoder can model images well without z, which is why
VAEs with PixelCNN decoders are prone to posterior collapse (Chen et al.
2017, "Variational lossy autoencoder"; He et al. 2019 use one on OMNIGLOT).
Here z enters every layer as a learned per-channel bias. Single-channel
(binary) images only.
"""

import pyro
import torch
from pyro.nn import pyro_method
from torch import nn

from pyrogen.models.vae import VAE, _kl_scale


class MaskedConv2d(nn.Conv2d):
    """A 2-d convolution whose kernel sees only pixels before the centre in raster order.

    :param str mask_type: ``"A"`` (the centre is hidden too; first layer) or ``"B"`` (centre visible).
    """

    def __init__(self, mask_type, in_channels, out_channels, kernel_size):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones_like(self.weight)
        c = kernel_size // 2
        mask[:, :, c, c + (mask_type == "B") :] = 0
        mask[:, :, c + 1 :, :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNNDecoder(nn.Module):
    """Logits of :math:`p(x_i \\mid x_{<i}, z)` for every pixel, by one masked forward pass.

    :param int latent_dim: dimension of z.
    :param int channels: feature maps per layer.
    :param int num_layers: masked layers after the first (mask "A", 7x7) one; each is 3x3 mask "B".
    """

    def __init__(self, latent_dim, channels=32, num_layers=4):
        super().__init__()
        self.first = MaskedConv2d("A", 1, channels, 7)
        self.layers = nn.ModuleList(MaskedConv2d("B", channels, channels, 3) for _ in range(num_layers))
        self.z_bias = nn.Linear(latent_dim, channels * (num_layers + 1))
        self.out = nn.Conv2d(channels, 1, 1)
        self.channels = channels

    def forward(self, z, x):
        """``z`` ``(N, D)``, ``x`` ``(N, 1, H, W)`` -> logits ``(N, 1, H, W)``."""
        biases = self.z_bias(z).unsqueeze(-1).unsqueeze(-1).split(self.channels, dim=1)
        h = torch.relu(self.first(x) + biases[0])
        for layer, b in zip(self.layers, biases[1:]):
            h = h + torch.relu(layer(h) + b)  # residual; mask "B" keeps the raster order
        return self.out(h)


class PixelCNNVAE(VAE):
    """:class:`~pyrogen.models.VAE` with a :class:`PixelCNNDecoder` and a Bernoulli likelihood.

    Takes :class:`~pyrogen.models.VAE`'s encoder arguments; ``image_shape``
    must have one channel. The model needs ``x`` (teacher forcing); :meth:`sample`
    draws pixel by pixel.
    """

    def __init__(
        self, latent_dim=32, image_shape=(1, 28, 28), architecture="mlp", hidden=(400,), channels=32, num_layers=4
    ):
        if image_shape[0] != 1:
            raise ValueError(f"PixelCNNVAE models one-channel images, got image_shape {tuple(image_shape)}")
        super().__init__(
            latent_dim,
            image_shape,
            architecture,
            hidden,
            likelihood="bernoulli",
            decoder=PixelCNNDecoder(latent_dim, channels, num_layers),
        )
        self.config.update(architecture=architecture, channels=channels, num_layers=num_layers)
        self.config.pop("likelihood"), self.config.pop("prior"), self.config.pop("posterior")

    def logits(self, z, x):
        """Logits ``z.shape[:-1] + (1, H, W)`` for latents ``(..., B, D)`` and images ``(B, 1, H, W)``."""
        batch = z.shape[:-1]
        xb = x.expand(batch + x.shape[-3:]).reshape((-1,) + self.image_shape)
        return self.decoder(z.reshape(-1, self.latent_dim), xb).reshape(batch + self.image_shape)

    @pyro_method
    def model(self, x, batch_size=None, kl_weight=1.0):
        """p(z) ∏_i p(x_i | x_<i, z), scoring binary images ``x``."""
        x = self._observations(x)
        with pyro.plate("data", x.shape[0]):
            with _kl_scale(kl_weight):
                z = pyro.sample("z", self.prior())
            out = self.logits(z, x)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    @torch.no_grad()
    def sample(self, num_samples):
        """Binary images ``(n, 1, H, W)`` drawn pixel by pixel from z ~ p(z) (H·W decoder passes)."""
        z = self.prior().sample((num_samples,))
        x = torch.zeros((num_samples,) + self.image_shape, device=z.device)
        _, height, width = self.image_shape
        for i in range(height):
            for j in range(width):
                p = torch.sigmoid(self.decoder(z, x)[:, 0, i, j])
                x[:, 0, i, j] = torch.bernoulli(p)
        return x

    def decode(self, z):
        raise NotImplementedError("a PixelCNN decoder has no closed-form mean image; use sample()")

    def reconstruct(self, x):
        raise NotImplementedError("a PixelCNN decoder has no closed-form mean image; use sample()")
