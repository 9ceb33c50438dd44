"""A VAE written out by hand in PyTorch: the reference of the step benchmarks (``benchmarks.vae_step``,
``benchmarks.default_run``, ``benchmarks.scaling``)."""

import torch
import torch.nn.functional as F
from torch import nn

from pyrogen.models import VAE
from pyrogen.networks import build_decoder, build_encoder


class PlainVAE(nn.Module):
    """The network of ``VAE(latent_dim=50, hidden=(400,), architecture=...)`` with a hand-written loss.

    ``"mlp"``: the layers written out (784-400-50, softplus); ``"conv"``: pyrogen's own
    convolutional encoder body and decoder (:mod:`pyrogen.networks`) with two linear heads.
    """

    def __init__(self, architecture="mlp", latent_dim=50):
        super().__init__()
        self.architecture, d = architecture, latent_dim
        if architecture == "mlp":
            self.enc, self.loc, self.scale = nn.Linear(784, 400), nn.Linear(400, d), nn.Linear(400, d)
            self.dec1, self.dec2 = nn.Linear(d, 400), nn.Linear(400, 784)
        else:
            self.body = build_encoder("conv", (1, 28, 28), (400,))
            self.loc, self.scale = nn.Linear(self.body.out_features, d), nn.Linear(self.body.out_features, d)
            self.decoder = build_decoder("conv", d, (1, 28, 28), 1, (400,))

    def _encode(self, x):
        """``(mu, log_sigma)`` of q(z|x), each ``(B, 50)``: the scale head's output is log σ², halved here
        (pytorch/examples' ``std = exp(0.5 * logvar)``, pyrogen's default ``scale_head="log-variance"``)."""
        if self.architecture == "mlp":
            h = F.softplus(self.enc(x.flatten(1)))
        else:
            h = self.body(x.reshape(-1, 1, 28, 28))
        return self.loc(h), 0.5 * self.scale(h)

    def _logits(self, z):
        """Bernoulli logits ``(B, 784)``."""
        if self.architecture == "mlp":
            return self.dec2(F.softplus(self.dec1(z)))
        return self.decoder(z).flatten(1)

    def loss(self, x):
        """Negative ELBO (nats, summed over the batch) with the analytic Gaussian KL."""
        mu, log_sigma = self._encode(x)
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        nll = F.binary_cross_entropy_with_logits(self._logits(z), x.flatten(1), reduction="sum")
        kl = 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum()
        return nll + kl

    def mc_kl_loss(self, x):
        """The same negative ELBO with KL(q||p) estimated at the drawn z, as Trace_ELBO does."""
        mu, log_sigma = self._encode(x)
        eps = torch.randn_like(mu)
        z = mu + log_sigma.exp() * eps
        nll = F.binary_cross_entropy_with_logits(self._logits(z), x.flatten(1), reduction="sum")
        log_q_minus_log_p = (0.5 * (z.pow(2) - eps.pow(2)) - log_sigma).sum()
        return nll + log_q_minus_log_p

    def as_pyrogen(self):
        """A pyrogen VAE of the same architecture holding these weights, for evaluation on the same footing."""
        vae = VAE(latent_dim=self.loc.out_features, hidden=(400,), architecture=self.architecture)
        heads = {"encoder.1.layers.loc": self.loc, "encoder.1.layers.scale": self.scale}
        if self.architecture == "mlp":
            layers = {"encoder.0.net.0": self.enc, "decoder.net.0": self.dec1, "decoder.net.2": self.dec2, **heads}
            state = {f"{k}.{p}": getattr(m, p) for k, m in layers.items() for p in ("weight", "bias")}
        else:  # pyrogen's own conv body and decoder, under the names the VAE gives them
            state = {f"encoder.0.{k}": v for k, v in self.body.state_dict().items()}
            state.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
            state.update({f"{k}.{p}": getattr(m, p) for k, m in heads.items() for p in ("weight", "bias")})
        state = {k: v.detach().clone() for k, v in state.items()}
        missing = set(vae.state_dict()) - set(state) - {"prior_loc", "prior_scale"}
        assert not missing, f"PlainVAE.as_pyrogen: no weights for {sorted(missing)}"
        vae.load_state_dict(dict(vae.state_dict(), **state))
        return vae
