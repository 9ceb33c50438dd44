"""The deterministic autoencoder: a VAE's networks with a point-mass guide.

The model is the VAE's, :math:`p(z)\\, p_\\theta(x \\mid z)`; the guide puts all
its mass on the encoder's output, :math:`q(z \\mid x) = \\delta(z - \\mu_\\phi(x))`
(``pyro.distributions.Delta``). The ELBO estimator then optimises

.. math:: \\log p_\\theta(x \\mid z = \\mu_\\phi(x)) + \\log p(\\mu_\\phi(x)),

because :math:`\\log q` of a point mass at its own value is 0: a reconstruction
log-likelihood plus, for the standard normal prior, the penalty
:math:`-\\tfrac12 \\|\\mu_\\phi(x)\\|^2` (up to a constant) on the code. This is
MAP inference of z for each x by an amortised encoder -- a regularised
deterministic autoencoder, not a bound on :math:`\\log p(x)`: the entropy of
q, :math:`-\\infty` for a point mass, is dropped. Consequently the
importance-sampling estimator of :math:`\\log p(x)` refuses this guide
(:func:`pyrogen.evaluation.log_importance_weights` raises ``ValueError``): a
point mass has no density over z, so the weights :math:`p(x, z)/q(z|x)` do not
exist, and one draw from it would estimate :math:`\\log p(x)` by
:math:`\\log p(x, \\mu_\\phi(x))`, which is not a bound.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method

from pyrogen.models.vae import VAE


class Autoencoder(VAE):
    """The deterministic autoencoder baseline: :class:`~pyrogen.models.VAE`'s networks, a ``Delta`` guide.

    Takes exactly :class:`~pyrogen.models.VAE`'s arguments; the encoder's
    location head gives the code and its scale head is unused. ``model``,
    ``decode`` and ``sample`` are the VAE's (``sample`` decodes draws from the
    prior, which the code distribution of an autoencoder need not match).
    """

    def code(self, x):
        """The code :math:`\\mu_\\phi(x)`, shape ``(B, latent_dim)``."""
        return self.encode(x)["loc"]

    @pyro_method
    def guide(self, x, batch_size=None, kl_weight=1.0):
        """q(z|x) = δ(z − μ_φ(x)) at site ``"z"`` inside the data plate."""
        x = self._observations(x)
        with pyro.plate("data", x.shape[0]):
            loc = self.encoder(x)["loc"]
            return pyro.sample("z", dist.Delta(loc, event_dim=1))

    @torch.no_grad()
    def reconstruct(self, x):
        """Decode the code: E[x | z = μ_φ(x)], shape ``(B, C, H, W)``."""
        return self.decode(self.code(x))
