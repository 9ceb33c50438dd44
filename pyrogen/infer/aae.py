"""The adversarial autoencoder (Makhzani et al., "Adversarial Autoencoders", ICLR 2016 workshop) for a
Pyro model/guide pair, shaped like :class:`pyro.infer.SVI`.

An AAE keeps a VAE's reconstruction term but replaces its per-example KL term
by a game on the *aggregate posterior* :math:`q(z) = \\int p_\\text{data}(x)\\, q(z \\mid x)\\, dx`:
a discriminator :math:`D(z)` tells prior draws :math:`z \\sim p(z)` ("real")
from codes :math:`z \\sim q(z \\mid x)` ("fake"), and the encoder learns to fool it.
The autoencoder (encoder and decoder) minimises

.. math:: \\mathcal{L}_\\text{AE} = \\mathbb{E}_{p_\\text{data}(x)}\\, \\mathbb{E}_{q(z|x)}[-\\log p(x \\mid z)]
   + \\lambda\\, \\mathcal{L}_G\\big(D(z)\\big), \\qquad z \\sim q(z \\mid x),

with :math:`\\mathcal{L}_G` the generator loss of the chosen GAN loss, while the
discriminator minimises the loss's ``discriminator_loss(D(z_p), D(z_q))``. When
the game is won, :math:`q(z) = p(z)`, so decoding prior draws gives data-like
examples, while each :math:`q(z \\mid x)` may stay as sharp as the
reconstruction wants (a point mass included: the deterministic AAE).

**From the Pyro programs.** Each step traces ``guide(x)`` for the codes (its
site ``"z"`` must be reparameterized or a point mass, see
:func:`~pyrogen.infer.adversarial_inference.guide_code`), replays ``model(x)``
on them and reads :math:`\\log p(x \\mid z)` from the model's observed site
``"x"`` (summed over its event, averaged over the batch: nats per example).
The prior draws come from the distribution at the model's site ``"z"`` in the
same trace, so whatever prior the model declares is the target.

**Schedule.** Makhzani et al. alternate a reconstruction phase (encoder and
decoder) and a regularisation phase (the discriminator, then the encoder). Here
one :meth:`AdversarialAutoencoder.step` makes ``d_steps`` discriminator updates on the codes
of the batch and then *one* autoencoder update on the sum above, whose encoder
gradient is the sum of both phases' gradients (the same update as the two
phases taken at the same parameters).

Example::

    >>> import torch
    >>> x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))   # a batch of binary images
    >>> from pyrogen.infer import AdversarialAutoencoder
    >>> from pyrogen.models import VAE
    >>> from pyrogen.models.gan import LatentDiscriminator
    >>> vae = VAE(latent_dim=4, hidden=(32,))
    >>> aae = AdversarialAutoencoder(vae.model, vae.guide, LatentDiscriminator(4, (32,)))
    >>> out = aae.step(x)
    >>> sorted(out)
    ['d_accuracy', 'd_fake', 'd_real', 'loss', 'loss_d', 'loss_g', 'loss_recon']
"""

import torch
from pyro import poutine

from pyrogen.errors import DataError
from pyrogen.infer.adversarial_inference import PairGame, checked_code_site, code_mean


class AdversarialAutoencoder(PairGame):
    """Reconstruction of x plus a discriminator on z that pushes the aggregate posterior towards p(z).

    :param model: a Pyro model ``model(x, **kwargs)`` with a latent site ``z_site`` and an observed
        site ``x_site`` (e.g. :meth:`pyrogen.models.VAE.model`).
    :param guide: its guide ``guide(x, **kwargs)`` with a reparameterized or point-mass ``z_site``.
    :param torch.nn.Module discriminator: maps codes ``(B, latent_dim)`` to scores ``(B,)`` or ``(B, 1)``,
        e.g. :class:`~pyrogen.models.gan.LatentDiscriminator`.
    :param torch.optim.Optimizer autoencoder_optim: holds encoder and decoder parameters; None for
        Adam (lr 1e-3) over the modules that own ``model`` and ``guide``.
    :param torch.optim.Optimizer discriminator_optim: None for Adam (lr 2e-4, betas (0.5, 0.999)).
    :param loss: a GAN loss name or :class:`~pyrogen.infer.gan_losses.GANLoss`.
    :param float adversarial_weight: :math:`\\lambda` (0 gives a plain autoencoder, a useful control).
    :param int d_steps: discriminator updates per autoencoder update.

    :meth:`step` returns detached scalars: ``loss`` (:math:`\\mathcal{L}_\\text{AE}`), ``loss_recon``
    (:math:`-\\log p(x|z)`, nats per example), ``loss_g`` (:math:`\\mathcal{L}_G`), ``loss_d``,
    ``d_real`` and ``d_fake`` (mean scores of prior draws and codes) and ``d_accuracy``.
    """

    def __init__(
        self,
        model,
        guide,
        discriminator,
        autoencoder_optim=None,
        discriminator_optim=None,
        loss="nonsaturating",
        adversarial_weight=1.0,
        d_steps=1,
        x_site="x",
        z_site="z",
        track_grad_norms=False,
    ):
        if not adversarial_weight >= 0:
            raise DataError(f"adversarial_weight must be >= 0, got {adversarial_weight!r}")
        super().__init__(
            model, guide, discriminator, autoencoder_optim, discriminator_optim, loss, d_steps, track_grad_norms,
            x_site, z_site, "autoencoder_optim", lambda params: torch.optim.Adam(params, lr=1e-3),
        )  # fmt: skip
        self.adversarial_weight = float(adversarial_weight)

    @property
    def autoencoder_optim(self):
        """The optimizer of the encoder and the decoder: the game's generator side."""
        return self.generator_optim

    def _autoencode(self, x, **kwargs):
        """Codes z ~ q(z|x) (with graph), -log p(x|z) per example, and the model's prior at ``z``."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise DataError("x must be a floating-point tensor batch of examples")
        guide_trace = poutine.trace(self.guide).get_trace(x, **kwargs)
        z_msg = checked_code_site(guide_trace, self.z_site)
        trace = poutine.trace(poutine.replay(self.model, trace=guide_trace)).get_trace(x, **kwargs)
        for site in (self.x_site, self.z_site):
            if site not in trace.nodes or trace.nodes[site]["type"] != "sample":
                raise DataError(f"the model has no sample site {site!r}")
        obs = trace.nodes[self.x_site]
        if not obs["is_observed"]:
            raise DataError(
                f"site {self.x_site!r} of the model is not observed when the model is called as "
                "model(x); the adversarial autoencoder scores x there"
            )
        log_px = obs["fn"].log_prob(obs["value"])
        recon = -log_px.sum() / x.shape[0]
        return z_msg["value"], recon, trace.nodes[self.z_site]["fn"]

    # ------------------------------------------------------------------ the game
    def begin(self, x, kwargs):
        """The batch's codes (with their graph), its reconstruction term, the prior, and the codes detached."""
        z, recon, prior = self._autoencode(x, **kwargs)
        return z, recon, prior, z.detach()

    def views(self, state, i):
        """Fresh prior draws ("real") against the batch's codes ("fake")."""
        return (state[2].sample().detach(),), (state[3],), None

    def generator_objective(self, state, kept):
        loss_g = self.loss.generator_loss(self.discriminator(state[0]))
        return state[1] + self.adversarial_weight * loss_g, loss_g

    def evaluation_views(self, x, kwargs):
        z, recon, prior = self._autoencode(x, **kwargs)
        return (z, recon, prior, z), (prior.sample(),), (z,)

    def evaluation_generator_loss(self, state, fake, real_scores, fake_scores):
        return self.loss.generator_loss(fake_scores)

    def statistics(self, state, loss_d, loss_g, real_scores, fake_scores):
        """The game's statistics after ``loss`` (:math:`\\mathcal{L}_\\text{AE}`) and ``loss_recon``."""
        recon, game = state[1], super().statistics(state, loss_d, loss_g, real_scores, fake_scores)
        return {
            "loss": (recon + self.adversarial_weight * loss_g).detach(),
            "loss_recon": recon.detach(),
            "loss_g": game.pop("loss_g"),
            **game,
        }

    def step(self, x, **kwargs):
        """``d_steps`` discriminator updates (fresh prior draws each, the batch's codes), then one
        autoencoder update on reconstruction plus ``adversarial_weight`` times the generator loss.

        :param torch.Tensor x: a batch ``(B, ...)``.
        :param kwargs: passed to the guide and the model after x.
        :returns: dict of detached scalar tensors (see the class docs).
        """
        return super().step(x, **kwargs)

    @torch.no_grad()
    def encode(self, x, **kwargs):
        """Codes ``(B, latent_dim)``: the mean of q(z|x) (its value for a point mass)."""
        return code_mean(self.guide, x, self.z_site, **kwargs)
