"""The adversarial game that pyrogen's GAN, ALI / BiGAN and adversarial autoencoder play.

Every adversarial estimator here trains two players with two optimizers: a
discriminator :math:`D`, which tells what it sees of the data ("real") from
what it sees of the model ("fake"), and a *generator side* (a GAN's generator,
ALI's generator and encoder, an adversarial autoencoder's encoder and decoder),
which minimises an objective that includes fooling :math:`D`. The game's round
(Goodfellow et al. 2014, algorithm 1) is the same for all of them, and
:class:`AdversarialGame` owns it:

1. ``d_steps`` discriminator updates: each minimises the loss's
   ``discriminator_loss(D(real), D(fake))`` plus its penalty (WGAN-GP's
   gradient penalty, Gulrajani et al. 2017) on detached inputs;
2. one update of the generator side, during which the discriminator's
   parameters do not require gradients (they are frozen, so the backward pass
   of the generator's objective leaves them untouched and costs less);
3. the statistics of the round (``loss_d``, ``loss_g``, ``d_real``, ``d_fake``,
   ``d_accuracy`` and, with ``track_grad_norms``, both players' gradient norms).

:meth:`AdversarialGame.distribute` averages both players' gradients over a
``torch.distributed`` process group after every backward pass, and
:meth:`AdversarialGame.evaluate_loss` scores a batch without updating anything.

A subclass says only what the discriminator sees and what the generator side
minimises, through four methods:

* :meth:`~AdversarialGame.begin` checks a step's input and returns what its
  rounds share (the batches, the codes of an autoencoder, ...);
* :meth:`~AdversarialGame.views` returns round ``i``'s ``(real, fake, kept)``:
  the discriminator's inputs, each a tuple of tensors that ``D(*view)`` scores,
  and what the generator update needs (with its graph) after the last round;
* :meth:`~AdversarialGame.generator_objective` returns ``(objective, loss_g)``
  for the generator update: the tensor it descends and the generator loss reported;
* :meth:`~AdversarialGame.evaluation_views` and
  :meth:`~AdversarialGame.evaluation_generator_loss` do the same for
  :meth:`~AdversarialGame.evaluate_loss`.

Example: the simplest GAN on vectors, as a subclass::

    >>> import torch
    >>> from pyrogen.infer.adversarial_game import AdversarialGame
    >>> class VectorGAN(AdversarialGame):
    ...     def __init__(self, generator, discriminator):
    ...         super().__init__(discriminator, torch.optim.Adam(generator.parameters()),
    ...                          torch.optim.Adam(discriminator.parameters()))
    ...         self.generator = generator
    ...     def begin(self, x, kwargs):
    ...         return x
    ...     def views(self, x, i):
    ...         fake = self.generator(torch.randn(x.shape[0], 2))
    ...         return (x,), (fake.detach(),), fake
    ...     def generator_objective(self, x, fake):
    ...         loss_g = self.loss.generator_loss(self.discriminator(fake))
    ...         return loss_g, loss_g
    ...     def evaluation_views(self, x, kwargs):
    ...         return x, (x,), (self.generator(torch.randn(x.shape[0], 2)),)
    ...     def evaluation_generator_loss(self, x, fake, real_scores, fake_scores):
    ...         return self.loss.generator_loss(fake_scores)
    >>> game = VectorGAN(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    >>> sorted(game.step(torch.randn(16, 3)))
    ['d_accuracy', 'd_fake', 'd_real', 'loss_d', 'loss_g']
"""

import contextlib

import torch
from torch import nn

from pyrogen.errors import DataError, PyrogenError
from pyrogen.infer.gan_losses import get_gan_loss

DEFAULT_LR = 2e-4
DEFAULT_BETAS = (0.5, 0.999)
"""Adam's settings for both players by default (Radford et al. 2016, DCGAN)."""


def default_optimizer(parameters, lr=DEFAULT_LR, betas=DEFAULT_BETAS):
    """Adam with the DCGAN settings (lr 2e-4, betas (0.5, 0.999))."""
    return torch.optim.Adam(parameters, lr=lr, betas=betas)


def check_players(discriminator, d_steps):
    """Refuse a discriminator that is not a :class:`torch.nn.Module` (:class:`TypeError`) and a ``d_steps``
    that is not a positive integer (:class:`~pyrogen.errors.DataError`)."""
    if not isinstance(discriminator, nn.Module):
        raise TypeError(f"discriminator must be a torch.nn.Module, got {type(discriminator).__name__}")
    if isinstance(d_steps, bool) or not isinstance(d_steps, int) or d_steps < 1:
        raise DataError(f"d_steps must be a positive integer, got {d_steps!r}")


def owners(*fns):
    """The :class:`torch.nn.Module` objects that own the methods ``fns``, each once."""
    modules = []
    for fn in fns:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not m for m in modules):
            modules.append(owner)
    return modules


def owners_parameters(*fns):
    """The parameters of the :class:`torch.nn.Module` objects that own the methods ``fns``, each once."""
    params, seen = [], set()
    for owner in owners(*fns):
        for p in owner.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def game_optimizers(params, discriminator, optim, discriminator_optim, name, missing, default=default_optimizer):
    """The two optimizers of a generator side against ``discriminator``, given ones checked.

    A missing ``optim`` is ``default(params)``, or a :class:`TypeError` saying ``missing`` when
    ``params`` is None (no module to take the generator side's parameters from); a missing
    ``discriminator_optim`` is :func:`default_optimizer` over the discriminator's parameters.
    ``name`` is ``optim``'s argument name, for messages.
    """
    if optim is None:
        if params is None:
            raise TypeError(missing)
        optim = default(params)
    if discriminator_optim is None:
        discriminator_optim = default_optimizer(discriminator.parameters())
    for label, value in ((name, optim), ("discriminator_optim", discriminator_optim)):
        if not isinstance(value, torch.optim.Optimizer):
            raise TypeError(f"{label} must be a torch.optim.Optimizer, got {type(value).__name__}")
    return optim, discriminator_optim


def describe(fn):
    """The name of a distribution, looking through ``Independent`` and masking wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).__name__


def grad_norm(params):
    """The global L2 norm of the gradients of ``params`` (a detached 0-d tensor; 0 without any)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads).detach()


class AdversarialGame:
    """The round of an adversarial game: ``d_steps`` discriminator updates, one generator-side update.

    :param torch.nn.Module discriminator: scores what it sees, ``D(*view)``, as ``(B,)`` or ``(B, 1)``.
    :param torch.optim.Optimizer generator_optim: holds the generator side's parameters.
    :param torch.optim.Optimizer discriminator_optim: holds the discriminator's parameters.
    :param loss: a :class:`~pyrogen.infer.gan_losses.GANLoss` or its name.
    :param int d_steps: discriminator updates per generator-side update.
    :param bool track_grad_norms: also return ``grad_norm_d`` (the last discriminator update's)
        and ``grad_norm_g``, the L2 norms of the players' (averaged) gradients.

    See the module docs for what a subclass defines. Subclasses check their own
    programs before calling this constructor, which checks the discriminator,
    ``d_steps`` and the optimizers.
    """

    def __init__(
        self,
        discriminator,
        generator_optim,
        discriminator_optim,
        loss="nonsaturating",
        d_steps=1,
        track_grad_norms=False,
    ):
        check_players(discriminator, d_steps)
        for name, optim in (("generator_optim", generator_optim), ("discriminator_optim", discriminator_optim)):
            if not isinstance(optim, torch.optim.Optimizer):
                raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(optim).__name__}")
        self.discriminator, self.d_steps = discriminator, d_steps
        self.generator_optim, self.discriminator_optim = generator_optim, discriminator_optim
        self.loss = get_gan_loss(loss)
        self.track_grad_norms = track_grad_norms
        self._d_params = [p for p in discriminator.parameters() if p.requires_grad]
        self._group, self._world_size = None, 1

    # ------------------------------------------------------------------ what a subclass says
    def begin(self, x, kwargs):
        """Check a step's input; return what the step's rounds share (passed to :meth:`views`)."""
        raise NotImplementedError

    def views(self, state, i):
        """Round ``i``'s ``(real, fake, kept)``: the discriminator's inputs (tuples of tensors, detached)
        and what :meth:`generator_objective` needs after the last round (its graph kept).
        Called under :func:`torch.no_grad` except in the last round."""
        raise NotImplementedError

    def generator_objective(self, state, kept):
        """``(objective, loss_g)``: what the generator side descends, and its generator loss."""
        raise NotImplementedError

    def evaluation_views(self, x, kwargs):
        """``(state, real, fake)`` for :meth:`evaluate_loss`, computed under :func:`torch.no_grad`."""
        raise NotImplementedError

    def evaluation_generator_loss(self, state, fake, real_scores, fake_scores):
        """The generator loss of :meth:`evaluate_loss` (under :func:`torch.no_grad`)."""
        raise NotImplementedError

    def statistics(self, state, loss_d, loss_g, real_scores, fake_scores):
        """The dict a step returns: ``loss_d``, ``loss_g`` (per example), ``d_real`` and ``d_fake`` (mean
        scores of the real and fake views, probabilities for the logistic losses) and ``d_accuracy``
        (the fraction of both the discriminator classified correctly); detached scalars."""
        th = self.loss.threshold
        accuracy = ((real_scores > th).float().mean() + (fake_scores <= th).float().mean()) / 2
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_real": self.loss.score_mean(real_scores),
            "d_fake": self.loss.score_mean(fake_scores),
            "d_accuracy": accuracy,
        }

    # ------------------------------------------------------------------ the discriminator
    def score(self, view):
        """The discriminator's scores of a view, ``D(*view)``."""
        return self.discriminator(*view)

    def penalty_inputs(self, real, fake):
        """``(critic, real, fake)`` for the loss's penalty: by default ``D`` as a function of the views'
        first tensor, the others held fixed (a conditional GAN's labels)."""
        rest = real[1:]
        critic = self.discriminator if not rest else (lambda t: self.discriminator(t, *rest))
        return critic, real[0], fake[0]

    def scored_discriminator_loss(self, real_scores, fake_scores, real, fake):
        """The discriminator's loss from its scores of the views ``real`` and ``fake``, plus the loss's
        penalty when it has one (:attr:`~pyrogen.infer.gan_losses.GANLoss.has_penalty`)."""
        loss = self.loss.discriminator_loss(real_scores, fake_scores)
        if not self.loss.has_penalty:
            return loss
        penalty = self.loss.penalty(*self.penalty_inputs(real, fake))
        return loss if penalty is None else loss + penalty

    def discriminator_loss(self, real, fake):
        """``(loss, real_scores, fake_scores)`` of the views (scores checked to ``(B,)`` and detached)."""
        real_scores, fake_scores = self.loss.check(self.score(real), self.score(fake))
        total = self.scored_discriminator_loss(real_scores, fake_scores, real, fake)
        return total, real_scores.detach(), fake_scores.detach()

    def discriminator_update(self, real, fake):
        """One discriminator update on the views; returns :meth:`discriminator_loss`'s triple."""
        self.discriminator_optim.zero_grad(set_to_none=True)
        loss_d, real_scores, fake_scores = self.discriminator_loss(real, fake)
        loss_d.backward()
        self._average_gradients(self.discriminator_optim)
        self.discriminator_optim.step()
        return loss_d, real_scores, fake_scores

    @contextlib.contextmanager
    def frozen_discriminator(self):
        """The discriminator's parameters do not require gradients inside (the generator side's update)."""
        for p in self._d_params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in self._d_params:
                p.requires_grad_(True)

    # ------------------------------------------------------------------ the round
    def step(self, x, **kwargs):
        """``d_steps`` discriminator updates, then one update of the generator side.

        :param x: a batch of real examples (what a subclass's :meth:`begin` accepts).
        :param kwargs: passed to the subclass's programs.
        :returns: dict of detached scalar tensors (:meth:`statistics`).
        """
        state = self.begin(x, kwargs)
        for i in range(self.d_steps - 1):
            with torch.no_grad():
                real, fake, _ = self.views(state, i)
            self.discriminator_update(real, fake)
        return self.last_round(state)

    def last_round(self, state):
        """The last discriminator update, whose views keep their graphs, and the generator-side update."""
        real, fake, kept = self.views(state, self.d_steps - 1)
        loss_d, real_scores, fake_scores = self.discriminator_update(real, fake)
        norms = {"grad_norm_d": grad_norm(self._d_params)} if self.track_grad_norms else {}
        with self.frozen_discriminator():
            self.generator_optim.zero_grad(set_to_none=True)
            objective, loss_g = self.generator_objective(state, kept)
            objective.backward()
        self._average_gradients(self.generator_optim)
        if self.track_grad_norms:
            norms["grad_norm_g"] = grad_norm([p for g in self.generator_optim.param_groups for p in g["params"]])
        self.generator_optim.step()
        return {**self.statistics(state, loss_d, loss_g, real_scores, fake_scores), **norms}

    def evaluate_loss(self, x, **kwargs):
        """Both losses and the discriminator's statistics on a batch, without updating anything.

        Returns the dict of :meth:`statistics` (a penalty is evaluated with gradients enabled, as it
        needs them, then detached).
        """
        with torch.no_grad():
            state, real, fake = self.evaluation_views(x, kwargs)
        with torch.enable_grad() if self.loss.has_penalty else torch.no_grad():
            loss_d, real_scores, fake_scores = self.discriminator_loss(real, fake)
        with torch.no_grad():
            loss_g = self.evaluation_generator_loss(state, fake, real_scores, fake_scores)
        return self.statistics(state, loss_d, loss_g, real_scores, fake_scores)

    # ------------------------------------------------------------------ data parallelism
    def modules(self):
        """The players' modules whose parameters and buffers :meth:`distribute` keeps identical over ranks."""
        return [self.discriminator]

    def distribute(self, group=None):
        """Average both players' gradients over a ``torch.distributed`` process group.

        Each rank calls :meth:`step` on its own, equally large shard of every global
        batch (and draws its own noise). After every backward pass, before the
        optimizer steps, the gradients of the parameters of that player's optimizer
        are averaged over the ranks with one all-reduce of one flat buffer per
        update (``d_steps`` for the discriminator, one for the generator side). The
        losses are per-example means, so the average of the shards' gradients is
        the gradient of the global batch's mean: a step on N ranks equals a single
        process's step on the whole batch, up to the order of floating-point sums
        (given the same noise). The parameters and buffers of rank 0 are broadcast
        now, so every rank starts, and stays, identical. A parameter without a
        gradient on some ranks counts as a zero gradient there; one without a
        gradient on every rank keeps ``grad`` None, and its optimizer skips it.

        The players are not wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`:
        the discriminator runs on the real and on the fake views (and, for WGAN-GP,
        on their interpolates) before one backward pass, runs again in the generator
        update with its parameters frozen, and WGAN-GP's gradient penalty needs a
        double backward; DDP's hooks support none of these (one forward per backward,
        no ``create_graph``). Batch-norm statistics stay those of each rank's shard
        (convert the players with :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`
        on GPUs to share them).

        The statistics :meth:`step` returns stay this rank's, except the gradient
        norms (``track_grad_norms``), which are those of the averaged gradients.

        :param group: the process group (default: the global one, which must be initialized).
        :returns: self.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise PyrogenError(
                f"{type(self).__name__}.distribute() needs an initialized torch.distributed process "
                "group; launch with torchrun and call pyrogen.distributed.init_from_env() first"
            )
        self._group, self._world_size = group, dist.get_world_size(group)
        src = 0 if group is None else dist.get_global_rank(group, 0)
        with torch.no_grad():
            for t in self._shared_tensors():
                dist.broadcast(t, src, group=group)
        return self

    def _shared_tensors(self):
        """Both players' parameters (those of the optimizers included) and buffers, each once."""
        tensors = {}
        modules = self.modules()
        for t in (
            *(p for m in modules for p in m.parameters()),
            *(p for o in (self.generator_optim, self.discriminator_optim) for g in o.param_groups for p in g["params"]),
            *(b for m in modules for b in m.buffers()),
        ):
            tensors.setdefault(id(t), t)
        return list(tensors.values())

    def _average_gradients(self, optim):
        """Average the gradients of ``optim``'s parameters over the group: one all-reduce."""
        if self._world_size == 1:
            return
        import torch.distributed as dist

        params = [p for g in optim.param_groups for p in g["params"]]
        if not params:
            return
        dtype, device = params[0].dtype, params[0].device
        for p in params[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        chunks, missing = [], False
        for p in params:
            if p.grad is None:
                missing = True
                chunks.append(torch.zeros(p.numel(), dtype=dtype, device=device))
            elif p.grad.is_sparse:
                raise PyrogenError(
                    f"{type(self).__name__}.distribute() averages dense gradients; a parameter of "
                    f"shape {tuple(p.shape)} has a sparse gradient"
                )
            else:
                chunks.append(p.grad.reshape(-1).to(dtype=dtype, device=device))
        # one more element per parameter counts the ranks that have its gradient
        chunks.append(torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device))
        flat = torch.cat(chunks)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self._group)
        counts = flat[-len(params) :].tolist() if missing else None  # a host sync only when needed
        flat = flat[: -len(params)].div_(self._world_size)
        offset = 0
        for i, p in enumerate(params):
            average = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if p.grad is not None:
                p.grad.copy_(average)
            elif counts[i] > 0:
                p.grad = average.to(dtype=p.dtype, device=p.device).clone()
