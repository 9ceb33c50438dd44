"""Adversarial training of a Pyro generative model, shaped like :class:`pyro.infer.SVI`.

A generative adversarial network (Goodfellow et al. 2014) trains the same kind
of model as a VAE's, :math:`z \\sim p(z)`, :math:`x = G(z)`, by a game against a
discriminator :math:`D` instead of by maximum likelihood:

.. math:: \\min_G \\max_D V(D, G) = \\mathbb{E}_{x \\sim p_\\text{data}}[\\log D(x)]
   + \\mathbb{E}_{z \\sim p(z)}[\\log(1 - D(G(z)))].

Here the generator is an ordinary Pyro model. :class:`Adversarial` runs it
*without observations* and takes the value of its ``"x"`` site as the fake
batch. That site may be

* a point mass ``dist.Delta(G(z), event_dim=3)``, the implicit model of a GAN
  (see :class:`pyrogen.models.gan.Generator`), or
* any reparameterized likelihood, e.g. the :class:`~pyrogen.models.VAE`'s
  ``model`` with a Continuous Bernoulli or Normal likelihood: the fake batch is
  then a reparameterized draw :math:`x = g(\\epsilon; G(z))` and gradients flow
  through the sampler.

A site without ``rsample`` (a discrete Bernoulli likelihood, say) has no
pathwise gradient and is refused with :class:`GeneratorSiteError`.

Example::

    >>> import torch
    >>> from pyrogen.infer import Adversarial
    >>> from pyrogen.models.gan import Generator, build_discriminator
    >>> gen, disc = Generator(latent_dim=16, architecture="mlp", hidden=(64,)), build_discriminator("mlp", hidden=(64,))
    >>> gan = Adversarial(gen.model, disc, loss="nonsaturating")
    >>> out = gan.step(torch.rand(32, 1, 28, 28))   # one discriminator and one generator update
    >>> sorted(out)
    ['d_accuracy', 'd_fake', 'd_real', 'loss_d', 'loss_g']
"""

import torch
from pyro.poutine.messenger import Messenger
from torch import nn

from pyrogen.errors import DataError, PyrogenError
from pyrogen.infer.adversarial_game import (  # noqa: F401 - DEFAULT_* and default_optimizer: imported from here before
    DEFAULT_BETAS,
    DEFAULT_LR,
    AdversarialGame,
    check_players,
    default_optimizer,
    describe,
    game_optimizers,
)
from pyrogen.infer.torch_svi import module_local


class GeneratorSiteError(PyrogenError, ValueError):
    """The generator model has no usable sample site to draw fake examples from."""


class _TakeSite(Messenger):
    """Records one sample site's message while a model runs (much lighter than a full trace)."""

    def __init__(self, name):
        super().__init__()
        self.name, self.msg = name, None

    def _postprocess_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == self.name:
            self.msg = msg


class Adversarial(AdversarialGame):
    """Adversarial training of a Pyro model against a discriminator: the GAN counterpart of SVI.

    :param model: the generator, a Pyro model called as ``model(batch_size=B, **kwargs)``
        whose site ``site`` (``"x"``) holds a batch ``(B, ...)`` of generated examples
        drawn by a reparameterized distribution (``rsample``), a point mass included.
    :param torch.nn.Module discriminator: maps examples ``(B, ...)`` to scores ``(B,)`` or
        ``(B, 1)`` (logits for the logistic losses, critic values otherwise).
    :param torch.optim.Optimizer generator_optim: holds the generator's parameters; None for
        Adam (lr 2e-4, betas (0.5, 0.999)) over the parameters of the module that owns ``model``.
    :param torch.optim.Optimizer discriminator_optim: holds the discriminator's parameters;
        None for the same Adam over ``discriminator.parameters()``.
    :param loss: a :class:`~pyrogen.infer.gan_losses.GANLoss` or its name (``"minimax"``,
        ``"nonsaturating"``, ``"wgan-gp"``, ``"hinge"``, ``"least-squares"``).
    :param int d_steps: discriminator updates per generator update.
    :param str site: the model's sample site of generated examples.
    :param bool track_grad_norms: also return the L2 norms of both players' gradients
        (``grad_norm_d`` of the last discriminator update, ``grad_norm_g``).
    :param str label: for a class-conditional GAN, the name of the keyword argument that
        carries the labels ``(B,)`` (e.g. ``"y"``); None (default) for an unconditional one.
        Then ``step(x, y=labels)`` passes the labels to the model (the fakes are generated
        for the real batch's classes) and calls the discriminator as
        ``discriminator(examples, labels)`` on both batches (see
        :class:`~pyrogen.models.gan.ProjectionDiscriminator`). With a list of ``d_steps``
        real batches, pass a list of as many label tensors, one per batch.

    Each :meth:`step` makes ``d_steps`` discriminator updates and one generator update,
    and returns a dict of detached scalar tensors (no host synchronisation):
    ``loss_d`` and ``loss_g`` (per example; ``loss_d`` includes any gradient penalty),
    ``d_real`` and ``d_fake`` (mean D(x) and mean D(G(z)) seen by the last discriminator
    update, in the loss's units: probabilities for the logistic losses) and ``d_accuracy``
    (the fraction of that update's real and fake examples the discriminator classified correctly).

    The last discriminator update's fake batch is reused, with its graph, for the
    generator update (one generator forward pass per step, as in PyTorch's DCGAN
    example); during the generator update the discriminator's parameters do not
    require gradients.

    :meth:`distribute` trains data-parallel over a ``torch.distributed`` process
    group, each rank on its shard of every batch.
    """

    def __init__(
        self,
        model,
        discriminator,
        generator_optim=None,
        discriminator_optim=None,
        loss="nonsaturating",
        d_steps=1,
        site="x",
        track_grad_norms=False,
        label=None,
    ):
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
        check_players(discriminator, d_steps)
        owner = getattr(model, "__self__", None)
        generator_optim, discriminator_optim = game_optimizers(
            owner.parameters() if isinstance(owner, nn.Module) else None,
            discriminator,
            generator_optim,
            discriminator_optim,
            "generator_optim",
            "generator_optim is needed when model is not a method of an "
            "nn.Module (there is no module to take the generator's parameters from)",
        )
        super().__init__(discriminator, generator_optim, discriminator_optim, loss, d_steps, track_grad_norms)
        self.model = module_local(model)
        self.generator = owner if isinstance(owner, nn.Module) else None
        self.site, self.label = site, label

    def modules(self):
        return [m for m in (self.generator, self.discriminator) if m is not None]

    # ------------------------------------------------------------------ samples
    def sample(self, batch_size, **kwargs):
        """Run the model without observations and return its ``site`` value ``(batch_size, ...)``.

        Differentiable with respect to the generator's parameters.

        :raises GeneratorSiteError: if the site is missing, observed or not reparameterized.
        """
        take = _TakeSite(self.site)
        with take:
            self.model(batch_size=batch_size, **kwargs)
        msg = take.msg
        if msg is None:
            raise GeneratorSiteError(
                f"the generator model has no sample site {self.site!r}; a generator must draw its "
                f"examples at pyro.sample({self.site!r}, ...) when called as model(batch_size=B)"
            )
        if msg["is_observed"]:
            raise GeneratorSiteError(
                f"site {self.site!r} of the generator is observed; Adversarial calls the model "
                "without observations, model(batch_size=B), and the model must then sample it"
            )
        fn = msg["fn"]
        if not getattr(fn, "has_rsample", False):
            raise GeneratorSiteError(
                f"site {self.site!r} of the generator is drawn from {describe(fn)}, which is not "
                "reparameterizable (no rsample), so no gradient reaches the generator; use a point mass "
                "dist.Delta(G(z), event_dim=...) or a reparameterized likelihood (e.g. "
                "'continuous-bernoulli' or 'normal-fixed' instead of 'bernoulli' for a VAE decoder)"
            )
        x = msg["value"]
        if x.dim() < 1 or x.shape[0] != batch_size:
            raise GeneratorSiteError(
                f"site {self.site!r} must hold a batch of shape ({batch_size}, ...) when the model is called "
                f"with batch_size={batch_size}, got shape {tuple(x.shape)}"
            )
        return x

    def _check_real(self, x, fake):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise DataError(
                f"x must be a floating-point tensor batch of real examples, got "
                f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}"
            )
        if x.shape != fake.shape:
            raise DataError(
                f"x must have the shape of the generator's samples {tuple(fake.shape)}, got {tuple(x.shape)}"
            )

    def _labels(self, kwargs):
        """The labels of a conditional GAN's batch (None for an unconditional one)."""
        if self.label is None:
            return None
        if kwargs.get(self.label) is None:
            raise DataError(
                f"this Adversarial is conditional (label={self.label!r}): pass the real batch's "
                f"labels, step(x, {self.label}=labels)"
            )
        return kwargs[self.label]

    def _batches(self, x):
        if isinstance(x, (list, tuple)):
            if len(x) != self.d_steps:
                raise DataError(
                    f"step got {len(x)} real batches; pass one batch, or a list of d_steps = "
                    f"{self.d_steps} batches (one per discriminator update)"
                )
            return list(x)
        if not isinstance(x, torch.Tensor):
            raise DataError(f"x must be a tensor batch (or a list of d_steps batches), got {type(x).__name__}")
        return [x] * self.d_steps

    # ------------------------------------------------------------------ the game
    def begin(self, x, kwargs):
        """The real batches of the step's rounds, their labels (a conditional GAN's) and the model's kwargs."""
        batches = self._batches(x)
        labels = self._labels(kwargs)
        if labels is None:
            return batches, None, kwargs
        if isinstance(x, (list, tuple)) != isinstance(labels, (list, tuple)) or (
            isinstance(labels, (list, tuple)) and len(labels) != len(batches)
        ):
            n = len(batches) if isinstance(x, (list, tuple)) else 1
            raise DataError(
                f"pass one label tensor per real batch: {n} batch(es), {self.label}={type(labels).__name__}"
            )
        return batches, list(labels) if isinstance(labels, (list, tuple)) else [labels] * len(batches), kwargs

    def views(self, state, i):
        """Round ``i``: real batch i and a fresh fake batch (with the round's labels); the fake batch
        with its graph is kept for the generator update (one generator forward pass per step)."""
        batches, per_batch, kwargs = state
        real, rest = batches[i], ()
        if per_batch is not None:
            rest = (per_batch[i],)
            kwargs[self.label] = per_batch[i]
        fake = self.sample(real.shape[0], **kwargs)
        if i == 0:
            self._check_real(real, fake)
        return (real, *rest), (fake.detach(), *rest), (fake, *rest)

    def generator_objective(self, state, fake):
        loss_g = self.loss.generator_loss(self.score(fake))
        return loss_g, loss_g

    def evaluation_views(self, x, kwargs):
        if not isinstance(x, torch.Tensor):
            raise DataError(f"x must be a tensor batch of real examples, got {type(x).__name__}")
        labels = self._labels(kwargs)
        fake = self.sample(x.shape[0], **kwargs)
        self._check_real(x, fake)
        rest = () if labels is None else (labels,)
        return None, (x, *rest), (fake, *rest)

    def evaluation_generator_loss(self, state, fake, real_scores, fake_scores):
        return self.loss.generator_loss(self.score(fake))
