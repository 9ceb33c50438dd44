"""A VAE with two stochastic layers, the architecture of the IWAE paper.

Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders" (ICLR
2016), section 5: the generative model

.. math:: p_\\theta(x, z_1, z_2) = p(z_2)\\, p_\\theta(z_1 \\mid z_2)\\, p_\\theta(x \\mid z_1),
   \\qquad p(z_2) = \\mathcal{N}(0, I),

with :math:`p_\\theta(z_1 \\mid z_2)` a diagonal Gaussian from a network of
:math:`z_2`, and the guide factorizes the other way,

.. math:: q_\\phi(z_1, z_2 \\mid x) = q_\\phi(z_1 \\mid x)\\, q_\\phi(z_2 \\mid z_1),

both diagonal Gaussians. The paper's networks for binarized MNIST are
784-100-100 (tanh) to :math:`z_1` of dimension 100, then 100-50-50 (tanh) to
:math:`z_2` of dimension 50, and the decoder mirrors them; these are the defaults.
"""

import math

import pyro
import torch
from pyro import distributions as dist
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyrogen.checks import check_count, sizes
from pyrogen.distributions import ParameterHead, get_likelihood
from pyrogen.errors import DataError
from pyrogen.models.vae import _kl_scale, check_observations
from pyrogen.networks import MLP, MLPDecoder


class Features(nn.Module):
    """Flattens the last ``event_dims`` dimensions and maps them through ``hidden`` widths (activated).

    With ``hidden=()`` it is the identity on the flattened input (a linear-Gaussian
    layer once a :class:`~pyrogen.distributions.ParameterHead` follows).
    """

    def __init__(self, in_features, hidden, activation=nn.Tanh, event_dims=1):
        super().__init__()
        self.event_dims = event_dims
        self.out_features = hidden[-1] if hidden else in_features
        self.net = (
            MLP(in_features, hidden[:-1], hidden[-1], activation, activate_output=True) if hidden else nn.Identity()
        )

    def forward(self, x):
        return self.net(x.flatten(-self.event_dims) if self.event_dims > 1 else x)


def _normal(params):
    return dist.Normal(params["loc"], params["scale"], validate_args=False).to_event(1)


class TwoLayerVAE(PyroModule):
    """Two stochastic layers ``"z2"`` → ``"z1"`` → ``"x"``, as a Pyro model/guide pair.

    The model samples ``"z2"`` (event shape ``(latent_dims[1],)``) from
    :math:`\\mathcal{N}(0, I)`, then ``"z1"`` (``(latent_dims[0],)``) from
    :math:`p_\\theta(z_1 \\mid z_2)`, and scores ``"x"`` (event shape
    ``image_shape``) under the likelihood of the decoder's output; the guide
    samples ``"z1"`` from :math:`q_\\phi(z_1 \\mid x)`, then ``"z2"`` from
    :math:`q_\\phi(z_2 \\mid z_1)`. All sites are inside ``pyro.plate("data", B)``
    and broadcast over extra sample dimensions on the left, so the pair works
    with :class:`pyro.infer.SVI`, :class:`~pyrogen.infer.IWAE_ELBO` and
    :func:`pyrogen.evaluation.log_likelihood` unchanged. The ELBO and every
    estimate are in nats per batch (per example for the evaluation functions).

    :param tuple latent_dims: ``(dim z1, dim z2)``.
    :param tuple image_shape: ``(C, H, W)`` of one example.
    :param tuple hidden: ``(widths x→z1, widths z1→z2)``; the decoder uses them
        reversed (z2→z1, then z1→x). Empty widths make that layer linear.
    :param likelihood: name or :class:`~pyrogen.distributions.Likelihood` of p(x|z1).
    :param activation: hidden-unit module class (the paper's tanh by default).

    Example::

        >>> import pyro, torch
        >>> from pyrogen.infer import IWAE_ELBO
        >>> from pyrogen.models import TwoLayerVAE
        >>> vae = TwoLayerVAE(latent_dims=(8, 4), hidden=((32,), (16,)))
        >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
        ...                      IWAE_ELBO(num_particles=5))
        >>> x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
        >>> loss = svi.step(x)  # minus the importance-weighted bound of the batch, nats
        >>> vae.sample(3).shape
        torch.Size([3, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dims=(100, 50),
        image_shape=(1, 28, 28),
        hidden=((100, 100), (50, 50)),
        likelihood="bernoulli",
        activation=nn.Tanh,
    ):
        super().__init__()
        if sizes(latent_dims, 2) is None:
            raise DataError(f"latent_dims must be two positive integers (dim z1, dim z2), got {latent_dims!r}")
        if not isinstance(hidden, (tuple, list)) or len(hidden) != 2 or any(sizes(h) is None for h in hidden):
            raise DataError(f"hidden must be two sequences of positive integer widths (one per layer), got {hidden!r}")
        self.latent_dims = sizes(latent_dims, 2)
        if sizes(image_shape, 3) is None:
            raise DataError(f"image_shape must be (channels, height, width) of positive integers, got {image_shape!r}")
        self.image_shape = sizes(image_shape, 3)
        self.likelihood = get_likelihood(likelihood).bind(self.image_shape)
        if self.likelihood.uses_library:
            raise DataError(
                "the two-layer VAE does not give its likelihood each example's library size; use "
                "the likelihood without '-library' or the VAE"
            )
        hidden = tuple(sizes(h) for h in hidden)
        d1, d2 = self.latent_dims
        self.config = {
            "model": "two-layer", "latent_dims": list(self.latent_dims), "image_shape": list(self.image_shape),
            "hidden": [list(h) for h in hidden], "activation": activation.__name__,
            "likelihood": likelihood if isinstance(likelihood, str) else type(likelihood).__name__,
        }  # fmt: skip
        pixels = math.prod(self.image_shape)
        body = Features(pixels, hidden[0], activation, event_dims=len(self.image_shape))
        self.encoder1 = nn.Sequential(body, ParameterHead(body.out_features, "normal", d1))
        body = Features(d1, hidden[1], activation)
        self.encoder2 = nn.Sequential(body, ParameterHead(body.out_features, "normal", d2))
        body = Features(d2, hidden[1][::-1], activation)
        self.decoder2 = nn.Sequential(body, ParameterHead(body.out_features, "normal", d1))
        out_channels = self.likelihood.num_params * self.image_shape[0]
        self.decoder1 = MLPDecoder(d1, self.image_shape, out_channels, hidden[0][::-1], activation)
        self.register_buffer("prior_loc", torch.zeros(d2))
        self.register_buffer("prior_scale", torch.ones(d2))

    def prior(self):
        """p(z2) = N(0, I) with event shape ``(latent_dims[1],)``."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def _observations(self, x):
        return check_observations(x, self.image_shape, self.likelihood, next(self.parameters(), torch.empty(0)).dtype)

    @pyro_method
    def model(self, x=None, batch_size=1, kl_weight=1.0):
        """p(z2) p(z1|z2) p(x|z1); returns the decoder output ``(..., B, P*C, H, W)``.

        :param torch.Tensor x: images ``(B, C, H, W)`` or ``(B, C*H*W)``, or None to generate.
        :param int batch_size: how many images to generate when ``x`` is None.
        :param float kl_weight: λ, scaling both latent sites (KL annealing).
        """
        if x is not None:
            x = self._observations(x)
            batch_size = x.shape[0]
        with pyro.plate("data", batch_size):
            with _kl_scale(kl_weight):
                z2 = pyro.sample("z2", self.prior())
                z1 = pyro.sample("z1", _normal(self.decoder2(z2)))
            out = self.decoder1(z1)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    @pyro_method
    def guide(self, x, batch_size=None, kl_weight=1.0):
        """q(z1|x) q(z2|z1), inside the same plate; returns ``(z1, z2)``."""
        x = self._observations(x)
        with pyro.plate("data", x.shape[0]):
            with _kl_scale(kl_weight):
                z1 = pyro.sample("z1", _normal(self.encoder1(x)))
                z2 = pyro.sample("z2", _normal(self.encoder2(z1)))
        return z1, z2

    def encode(self, x):
        """Parameters of q(z1|x) for images ``x``: a dict of ``(B, latent_dims[0])`` tensors."""
        return self.encoder1(x.reshape((x.shape[0],) + self.image_shape))

    def decode(self, z1):
        """Mean image E[x|z1] of shape ``(..., C, H, W)`` for ``z1`` of shape ``(..., latent_dims[0])``."""
        return self.likelihood.mean(self.decoder1(z1))

    @torch.no_grad()
    def reconstruct(self, x):
        """Decode the mean of q(z1|x): images ``(B, C, H, W)``."""
        return self.decode(self.encode(x)["loc"])

    @torch.no_grad()
    def sample(self, num_samples):
        """Mean images E[x|z1] for ``z2 ~ p(z2)``, ``z1 ~ p(z1|z2)``: shape ``(n, C, H, W)``."""
        num_samples = check_count(num_samples, "num_samples")
        z2 = self.prior().sample((num_samples,))
        return self.decode(_normal(self.decoder2(z2)).sample())


__all__ = ["TwoLayerVAE", "Features"]
