"""Adversarially learned inference (ALI / BiGAN) for a Pyro model/guide pair, shaped like :class:`pyro.infer.SVI`.

ALI (Dumoulin et al., "Adversarially Learned Inference", ICLR 2017) and BiGAN
(Donahue, Krähenbühl and Darrell, "Adversarial Feature Learning", ICLR 2017)
train a generator :math:`p(x \\mid z)\\, p(z)` *and* an encoder :math:`q(z \\mid x)`
by one game against a discriminator :math:`D(x, z)` on pairs. It tells the
data joint :math:`q(x, z) = p_\\text{data}(x)\\, q(z \\mid x)` from the model joint
:math:`p(x, z) = p(z)\\, p(x \\mid z)`:

.. math:: \\min_{G, E} \\max_D V(D, G, E) =
   \\mathbb{E}_{x \\sim p_\\text{data},\\, z \\sim q(z|x)}[\\log D(x, z)]
   + \\mathbb{E}_{z \\sim p(z),\\, x \\sim p(x|z)}[\\log(1 - D(x, z))].

For the optimal D the game minimises the Jensen-Shannon divergence between the
two joints, so at its optimum :math:`q(x, z) = p(x, z)`: the marginal of x is the
data's and, for deterministic players, the encoder inverts the generator,
:math:`E = G^{-1}` (Donahue et al., theorem 2).

**The pairs come from the Pyro programs themselves.** For a batch ``x`` the
*data pairs* are ``(x, z)`` with ``z`` the value of the guide's site ``"z"``
in ``poutine.trace(guide).get_trace(x)``; the *model pairs* are the values of
the model's sites ``"x"`` and ``"z"`` in
``poutine.trace(model).get_trace(batch_size=B)`` (run without observations).
Gradients reach the encoder through z and the generator through x, so

* the guide's ``"z"`` must be reparameterized (``rsample``, e.g. a Normal
  :math:`z = \\mu(x) + \\sigma(x) \\epsilon`, the stochastic encoder of ALI) or a
  point mass ``dist.Delta(E(x), event_dim=1)`` (BiGAN's deterministic encoder);
  anything else is a :class:`EncoderSiteError`;
* the model's x is, by ``model_x``, either ``"sample"``: the value of site
  ``"x"``, which must be a point mass (a GAN :class:`~pyrogen.models.gan.Generator`)
  or a reparameterized likelihood, or ``"mean"``: the mean of the site's
  distribution, the decoder mean :math:`\\mathbb{E}[x \\mid z]`, i.e. the VAE's
  decoder used as the deterministic generator of BiGAN (any likelihood
  with a mean, the discrete Bernoulli included). The default ``"sample"`` is
  exact for implicit generators; with a VAE decoder, ``"mean"`` compares data
  against mean images, which is what ALI papers' deterministic generators do.

**The generator-and-encoder loss per GAN loss.** The discriminator minimises
the loss's ``discriminator_loss(D(data pairs), D(model pairs))`` (plus the
gradient penalty of WGAN-GP, taken on interpolates of whole pairs, one
gradient norm per example over x and z together). The generator and the
encoder minimise, with :math:`s_q` and :math:`s_p` the scores of data and model pairs:

* ``"minimax"``: :math:`V` itself,
  :math:`-\\mathbb{E}\\operatorname{softplus}(-s_q) - \\mathbb{E}\\operatorname{softplus}(s_p)`;
* ``"nonsaturating"``: the discriminator's loss with the labels swapped,
  :math:`\\mathbb{E}\\operatorname{softplus}(s_q) + \\mathbb{E}\\operatorname{softplus}(-s_p)`
  (Goodfellow et al.'s non-saturating trick, applied to both players);
* ``"least-squares"``: likewise with swapped targets,
  :math:`\\tfrac12\\mathbb{E}(s_p - 1)^2 + \\tfrac12\\mathbb{E}s_q^2`;
* ``"wgan-gp"`` and ``"hinge"``: :math:`\\mathbb{E}s_q - \\mathbb{E}s_p` (as BigBiGAN, Donahue and
  Simonyan 2019, does for the hinge loss).

Example::

    >>> import torch
    >>> from pyrogen.infer import AdversarialInference
    >>> from pyrogen.models import VAE
    >>> from pyrogen.models.gan import JointDiscriminator
    >>> vae = VAE(latent_dim=4, hidden=(32,))
    >>> ali = AdversarialInference(vae.model, vae.guide, JointDiscriminator((1, 28, 28), 4, (32,), (32,), (32,)),
    ...                            model_x="mean")
    >>> out = ali.step(torch.bernoulli(torch.full((8, 1, 28, 28), 0.3)))
    >>> sorted(out)
    ['d_accuracy', 'd_fake', 'd_real', 'loss_d', 'loss_g']
"""

import torch
from pyro import poutine

from pyrogen.errors import DataError, PyrogenError
from pyrogen.infer.adversarial_game import (
    AdversarialGame,
    check_players,
    default_optimizer,
    describe,
    game_optimizers,
    grad_norm,
    owners,
    owners_parameters,
)
from pyrogen.infer.gan_losses import (
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    WassersteinGPLoss,
)
from pyrogen.infer.torch_svi import module_local

MODEL_X = ("sample", "mean")
UPDATES = ("alternating", "simultaneous")
"""How :meth:`AdversarialInference.step` updates the two sides (see the class docs)."""


class EncoderSiteError(PyrogenError, ValueError):
    """The guide has no code site that gradients can flow through."""


def guide_code(guide, x, site="z", **kwargs):
    """Run ``guide(x, **kwargs)`` and return its sample message at ``site`` (checked).

    :raises EncoderSiteError: if the site is missing, observed, or neither reparameterized nor a point mass.
    """
    return checked_code_site(poutine.trace(guide).get_trace(x, **kwargs), site)


def code_mean(guide, x, site="z", **kwargs):
    """Codes E(x): the mean of the guide's ``site`` distribution for ``x`` (its value for a point mass
    or a family without a mean)."""
    msg = guide_code(guide, x, site, **kwargs)
    try:
        return msg["fn"].mean
    except NotImplementedError:
        return msg["value"]


def checked_code_site(trace, site="z"):
    """The message of a guide trace's code site, checked as :func:`guide_code` does."""
    if site not in trace.nodes or trace.nodes[site]["type"] != "sample":
        raise EncoderSiteError(f"the guide has no sample site {site!r}")
    msg = trace.nodes[site]
    if msg["is_observed"]:
        raise EncoderSiteError(f"site {site!r} of the guide is observed; the guide must sample the code")
    if not getattr(msg["fn"], "has_rsample", False):
        raise EncoderSiteError(
            f"site {site!r} of the guide is drawn from {describe(msg['fn'])}, which is neither "
            "reparameterized (rsample) nor a Delta, so no gradient reaches the encoder"
        )
    return msg


def pair_optimizers(model, guide, discriminator, optim, discriminator_optim, name, default):
    """The two optimizers of a model/guide pair trained against ``discriminator``: given ones are checked,
    missing ones are ``default(params)`` over the pair's module parameters and
    :func:`~pyrogen.infer.adversarial_game.default_optimizer` over the discriminator's."""
    return game_optimizers(
        owners_parameters(model, guide) or None,
        discriminator,
        optim,
        discriminator_optim,
        name,
        f"{name} is needed when neither model nor guide is a method of an nn.Module with parameters",
        default,
    )


class PairGame(AdversarialGame):
    """An adversarial game whose generator side is a Pyro model and its guide (ALI/BiGAN, the adversarial
    autoencoder): the checks, optimizers, sites and modules both share.

    Subclasses check their own options, then call this constructor, which refuses a model or guide
    that is not callable (:class:`TypeError`), checks the discriminator and ``d_steps``
    (:func:`~pyrogen.infer.adversarial_game.check_players`) and builds the optimizers
    (:func:`pair_optimizers`: ``optim_name`` is ``optim``'s argument name, ``default`` its builder
    when it is None).
    """

    def __init__(
        self,
        model,
        guide,
        discriminator,
        optim,
        discriminator_optim,
        loss,
        d_steps,
        track_grad_norms,
        x_site,
        z_site,
        optim_name="generator_optim",
        default=default_optimizer,
    ):
        if not callable(model) or not callable(guide):
            raise TypeError("model and guide must be callable Pyro programs")
        check_players(discriminator, d_steps)
        optim, discriminator_optim = pair_optimizers(
            model, guide, discriminator, optim, discriminator_optim, optim_name, default
        )
        super().__init__(discriminator, optim, discriminator_optim, loss, d_steps, track_grad_norms)
        self.model, self.guide = module_local(model), module_local(guide)
        self.x_site, self.z_site = x_site, z_site
        self._modules = [*owners(model, guide), discriminator]

    def modules(self):
        return self._modules


def _mean(fn):
    try:
        return fn.mean
    except NotImplementedError:
        raise DataError(f"the model's x site ({describe(fn)}) has no mean; use model_x='sample'") from None


class _PackedPairs:
    """A joint discriminator as a function of one flat tensor ``[x.flatten(1), z.flatten(1)]``,
    so that WGAN-GP's per-example penalty interpolates whole pairs."""

    def __init__(self, discriminator, x_shape, z_shape):
        self.discriminator, self.x_shape, self.z_shape = discriminator, x_shape, z_shape
        self.split = torch.Size(x_shape).numel()

    def pack(self, x, z):
        return torch.cat([x.reshape(x.shape[0], -1), z.reshape(z.shape[0], -1)], 1)

    def __call__(self, packed):
        b = packed.shape[0]
        x, z = packed[:, : self.split], packed[:, self.split :]
        return self.discriminator(x.reshape((b,) + self.x_shape), z.reshape((b,) + self.z_shape))


def encoder_generator_loss(loss, real_scores, fake_scores):
    """What the generator and the encoder minimise, from the scores of data pairs (``real_scores``)
    and model pairs (``fake_scores``), for each of pyrogen's GAN losses (see the module docs)."""
    real_scores, fake_scores = loss.check(real_scores, fake_scores)
    if isinstance(loss, (NonSaturatingLoss, LeastSquaresLoss)):
        return loss.discriminator_loss(fake_scores, real_scores)
    if isinstance(loss, MinimaxLoss):
        return -loss.discriminator_loss(real_scores, fake_scores)
    if isinstance(loss, (WassersteinGPLoss, HingeLoss)):
        return real_scores.mean() - fake_scores.mean()
    raise DataError(
        f"adversarial inference has no encoder-and-generator loss for {loss!r}; use one of "
        "minimax, nonsaturating, least-squares, wgan-gp, hinge"
    )


class AdversarialInference(PairGame):
    """ALI / BiGAN: a model and its guide trained together against a joint discriminator D(x, z).

    :param model: the generator, a Pyro model called as ``model(batch_size=B, **kwargs)`` with
        sample sites ``z_site`` (from the prior) and ``x_site``.
    :param guide: the encoder, a Pyro guide called as ``guide(x, **kwargs)`` with a
        reparameterized or point-mass site ``z_site``.
    :param torch.nn.Module discriminator: maps ``(x, z)``, shapes ``(B, ...)`` and ``(B, latent_dim)``,
        to scores ``(B,)`` or ``(B, 1)``, e.g. :class:`~pyrogen.models.gan.JointDiscriminator`.
    :param torch.optim.Optimizer generator_optim: holds the parameters of the generator *and*
        the encoder (one player); None for Adam (lr 2e-4, betas (0.5, 0.999)) over the
        parameters of the modules that own ``model`` and ``guide`` (each once).
    :param torch.optim.Optimizer discriminator_optim: None for the same Adam over the discriminator's.
    :param loss: a loss name or :class:`~pyrogen.infer.gan_losses.GANLoss` (see the module docs).
    :param int d_steps: discriminator updates per generator-and-encoder update.
    :param str model_x: ``"sample"`` or ``"mean"``: which x of the model pairs (module docs).
    :param str x_site: the model's site of examples.
    :param str z_site: the code site of model and guide.
    :param str update: ``"alternating"`` (the default): the discriminator is updated, then the
        generator and the encoder descend their loss against the *updated* discriminator (a second
        forward pass of D), as DCGAN's loop and :class:`~pyrogen.infer.Adversarial` do;
        ``"simultaneous"``: ALI's algorithm (Dumoulin et al. 2017, algorithm 1; ``ali_algorithm`` of
        their code): one forward pass of D scores the pairs, the gradients of both losses
        :math:`\\nabla_{\\theta_D} \\ell_D` and :math:`\\nabla_{\\theta_{G,E}} \\ell_{G,E}` are taken
        from those same scores and both optimizers step at once. With ``d_steps`` > 1 the first
        ``d_steps - 1`` discriminator updates come before, alone, in both modes.

    :meth:`step` returns the dict of :class:`~pyrogen.infer.Adversarial`: ``loss_d``,
    ``loss_g`` (the generator-and-encoder loss), ``d_real`` and ``d_fake`` (mean scores
    of data and model pairs, probabilities for the logistic losses) and ``d_accuracy``.
    """

    def __init__(
        self,
        model,
        guide,
        discriminator,
        generator_optim=None,
        discriminator_optim=None,
        loss="nonsaturating",
        d_steps=1,
        model_x="sample",
        x_site="x",
        z_site="z",
        update="alternating",
        track_grad_norms=False,
    ):
        if model_x not in MODEL_X:
            raise DataError(f"model_x must be one of {MODEL_X}, got {model_x!r}")
        if update not in UPDATES:
            raise DataError(f"update must be one of {UPDATES}, got {update!r}")
        super().__init__(
            model, guide, discriminator, generator_optim, discriminator_optim, loss, d_steps, track_grad_norms,
            x_site, z_site,
        )  # fmt: skip
        encoder_generator_loss(self.loss, torch.zeros(1), torch.zeros(1))  # refuse an unknown loss now
        self.model_x, self.update = model_x, update
        self._g_params = [p for group in self.generator_optim.param_groups for p in group["params"] if p.requires_grad]

    # ------------------------------------------------------------------ pairs
    def data_pairs(self, x, **kwargs):
        """``(x, z)`` with z from the guide's site, differentiable in the encoder."""
        return x, guide_code(self.guide, x, self.z_site, **kwargs)["value"]

    def model_pairs(self, batch_size, **kwargs):
        """``(x, z)`` from the model run without observations, differentiable in the generator."""
        trace = poutine.trace(self.model).get_trace(batch_size=batch_size, **kwargs)
        for site in (self.x_site, self.z_site):
            if site not in trace.nodes or trace.nodes[site]["type"] != "sample":
                raise DataError(f"the model has no sample site {site!r}")
        msg = trace.nodes[self.x_site]
        if msg["is_observed"]:
            raise DataError(f"site {self.x_site!r} of the model is observed; it is run as model(batch_size=B)")
        if self.model_x == "mean":
            x = _mean(msg["fn"])
        else:
            if not getattr(msg["fn"], "has_rsample", False):
                raise DataError(
                    f"site {self.x_site!r} of the model is drawn from {describe(msg['fn'])}, which "
                    "is not reparameterized; use model_x='mean' (the decoder mean) or a point mass"
                )
            x = msg["value"]
        return x, trace.nodes[self.z_site]["value"]

    def _pairs(self, x, **kwargs):
        real = self.data_pairs(x, **kwargs)
        fake = self.model_pairs(x.shape[0], **kwargs)
        if fake[0].shape != x.shape:
            raise DataError(
                f"x must have the shape of the model's examples {tuple(fake[0].shape)}, got {tuple(x.shape)}"
            )
        if fake[1].shape != real[1].shape:
            raise DataError(
                f"the guide's codes {tuple(real[1].shape)} and the model's {tuple(fake[1].shape)} differ in shape"
            )
        return real, fake

    # ------------------------------------------------------------------ the game
    def penalty_inputs(self, real, fake):
        """WGAN-GP's penalty interpolates whole pairs, detached: it acts on the discriminator only."""
        real, fake = self._detach(real), self._detach(fake)
        packed = _PackedPairs(self.discriminator, tuple(real[0].shape[1:]), tuple(real[1].shape[1:]))
        return packed, packed.pack(*real), packed.pack(*fake)

    @staticmethod
    def _detach(pair):
        return tuple(t.detach() for t in pair)

    def begin(self, x, kwargs):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise DataError("x must be a floating-point tensor batch of real examples")
        return x, kwargs

    def views(self, state, i):
        """Fresh data and model pairs; kept with their graphs for the players' update."""
        real, fake = self._pairs(state[0], **state[1])
        return self._detach(real), self._detach(fake), (real, fake)

    def generator_objective(self, state, pairs):
        real, fake = pairs
        loss_g = encoder_generator_loss(self.loss, self.discriminator(*real), self.discriminator(*fake))
        return loss_g, loss_g

    def evaluation_views(self, x, kwargs):
        real, fake = self._pairs(self.begin(x, kwargs)[0], **kwargs)
        return None, real, fake

    def evaluation_generator_loss(self, state, fake, real_scores, fake_scores):
        return encoder_generator_loss(self.loss, real_scores, fake_scores)

    def step(self, x, **kwargs):
        """``d_steps`` discriminator updates, then one update of the generator and the encoder.

        :param torch.Tensor x: real examples ``(B, ...)`` (the shape of the model's x site).
        :param kwargs: passed to the guide (after x) and to the model (after ``batch_size=B``).
        :returns: dict of detached scalar tensors (see the class docs).
        """
        return super().step(x, **kwargs)

    def last_round(self, state):
        """Alternating: the game's last round; simultaneous: ALI's update, both players' gradients from
        one scoring of the pairs and both optimizers stepped."""
        if self.update == "alternating":
            return super().last_round(state)
        real, fake = self._pairs(state[0], **state[1])
        real_scores, fake_scores = self.loss.check(self.discriminator(*real), self.discriminator(*fake))
        loss_d = self.scored_discriminator_loss(real_scores, fake_scores, real, fake)
        loss_g = encoder_generator_loss(self.loss, real_scores, fake_scores)
        grads_d = torch.autograd.grad(loss_d, self._d_params, retain_graph=True, allow_unused=True)
        grads_g = torch.autograd.grad(loss_g, self._g_params, allow_unused=True)
        self.discriminator_optim.zero_grad(set_to_none=True)
        self.generator_optim.zero_grad(set_to_none=True)
        for p, g in zip([*self._d_params, *self._g_params], [*grads_d, *grads_g]):
            p.grad = g
        self._average_gradients(self.discriminator_optim)
        self._average_gradients(self.generator_optim)
        norms = (
            {"grad_norm_d": grad_norm(self._d_params), "grad_norm_g": grad_norm(self._g_params)}
            if self.track_grad_norms
            else {}
        )
        self.discriminator_optim.step()
        self.generator_optim.step()
        return {**self.statistics(state, loss_d, loss_g, real_scores.detach(), fake_scores.detach()), **norms}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def encode(self, x, **kwargs):
        """Codes E(x) ``(B, latent_dim)``: the mean of the guide's ``z`` distribution (its value for a
        point mass or a family without a mean)."""
        return code_mean(self.guide, x, self.z_site, **kwargs)

    @torch.no_grad()
    def reconstruct(self, x, **kwargs):
        """Reconstructions G(E(x)): the model's x site (its mean) with z fixed at :meth:`encode`."""
        z = self.encode(x, **kwargs)
        conditioned = poutine.condition(self.model, data={self.z_site: z})
        trace = poutine.trace(conditioned).get_trace(batch_size=x.shape[0], **kwargs)
        return _mean(trace.nodes[self.x_site]["fn"]).reshape(x.shape)

    @torch.no_grad()
    def reconstruction_error(self, x, **kwargs):
        """Mean squared error per element between ``x`` and :meth:`reconstruct` ``(x)`` (a 0-d tensor)."""
        return (self.reconstruct(x, **kwargs) - x).square().mean()
