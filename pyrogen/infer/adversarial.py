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
from pyrogen.infer.gan_losses import GANLoss, get_gan_loss
from pyrogen.infer.torch_svi import module_local

DEFAULT_LR = 2e-4
DEFAULT_BETAS = (0.5, 0.999)
"""Adam's settings for both players by default (Radford et al. 2016, DCGAN)."""


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


def default_optimizer(parameters, lr=DEFAULT_LR, betas=DEFAULT_BETAS):
    """Adam with the DCGAN settings (lr 2e-4, betas (0.5, 0.999))."""
    return torch.optim.Adam(parameters, lr=lr, betas=betas)


class Adversarial:
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

    def __init__(self, model, discriminator, generator_optim=None, discriminator_optim=None,
                 loss="nonsaturating", d_steps=1, site="x", track_grad_norms=False, label=None):
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
        if not isinstance(discriminator, nn.Module):
            raise TypeError(f"discriminator must be a torch.nn.Module, got {type(discriminator).__name__}")
        if isinstance(d_steps, bool) or not isinstance(d_steps, int) or d_steps < 1:
            raise DataError(f"d_steps must be a positive integer, got {d_steps!r}")
        owner = getattr(model, "__self__", None)
        if generator_optim is None:
            if not isinstance(owner, nn.Module):
                raise TypeError("generator_optim is needed when model is not a method of an nn.Module "
                                "(there is no module to take the generator's parameters from)")
            generator_optim = default_optimizer(owner.parameters())
        if discriminator_optim is None:
            discriminator_optim = default_optimizer(discriminator.parameters())
        for name, optim in (("generator_optim", generator_optim), ("discriminator_optim", discriminator_optim)):
            if not isinstance(optim, torch.optim.Optimizer):
                raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(optim).__name__}")
        self.model = module_local(model)
        self.generator = owner if isinstance(owner, nn.Module) else None
        self.discriminator = discriminator
        self.generator_optim, self.discriminator_optim = generator_optim, discriminator_optim
        self.loss = get_gan_loss(loss)
        self.d_steps, self.site, self.track_grad_norms = d_steps, site, track_grad_norms
        self._d_params = [p for p in discriminator.parameters() if p.requires_grad]
        self._group, self._world_size = None, 1
        self.label = label

    # ------------------------------------------------------------------ data parallelism
    def distribute(self, group=None):
        """Average both players' gradients over a ``torch.distributed`` process group.

        Each rank calls :meth:`step` on its own, equally large shard of every global
        batch (and draws its own noise). After every backward pass, before the
        optimizer steps, the gradients of the parameters of that player's optimizer
        are averaged over the ranks with one all-reduce of one flat buffer per
        update (``d_steps`` for the discriminator, one for the generator). The
        losses are per-example means, so the average of the shards' gradients is
        the gradient of the global batch's mean: a step on N ranks equals a single
        process's step on the whole batch, up to the order of floating-point sums
        (given the same noise). The parameters and buffers of rank 0 are broadcast
        now, so every rank starts, and stays, identical. A parameter without a
        gradient on some ranks counts as a zero gradient there; one without a
        gradient on every rank keeps ``grad`` None, and its optimizer skips it.

        The players are not wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`:
        the discriminator runs on the real and on the fake batch (and, for WGAN-GP,
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
            raise PyrogenError("Adversarial.distribute() needs an initialized torch.distributed process group; "
                               "launch with torchrun and call pyrogen.distributed.init_from_env() first")
        self._group, self._world_size = group, dist.get_world_size(group)
        src = 0 if group is None else dist.get_global_rank(group, 0)
        with torch.no_grad():
            for t in self._shared_tensors():
                dist.broadcast(t, src, group=group)
        return self

    def _shared_tensors(self):
        """Both players' parameters (those of the optimizers included) and buffers, each once."""
        tensors = {}
        modules = [m for m in (self.generator, self.discriminator) if m is not None]
        for t in (*(p for m in modules for p in m.parameters()),
                  *(p for o in (self.generator_optim, self.discriminator_optim)
                    for g in o.param_groups for p in g["params"]),
                  *(b for m in modules for b in m.buffers())):
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
                raise PyrogenError("Adversarial.distribute() averages dense gradients; a parameter of shape "
                                   f"{tuple(p.shape)} has a sparse gradient")
            else:
                chunks.append(p.grad.reshape(-1).to(dtype=dtype, device=device))
        # one more element per parameter counts the ranks that have its gradient
        chunks.append(torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device))
        flat = torch.cat(chunks)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self._group)
        counts = flat[-len(params):].tolist() if missing else None  # a host sync only when needed
        flat = flat[: -len(params)].div_(self._world_size)
        offset = 0
        for i, p in enumerate(params):
            average = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if p.grad is not None:
                p.grad.copy_(average)
            elif counts[i] > 0:
                p.grad = average.to(dtype=p.dtype, device=p.device).clone()

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
                f"examples at pyro.sample({self.site!r}, ...) when called as model(batch_size=B)")
        if msg["is_observed"]:
            raise GeneratorSiteError(
                f"site {self.site!r} of the generator is observed; Adversarial calls the model "
                "without observations, model(batch_size=B), and the model must then sample it")
        fn = msg["fn"]
        if not getattr(fn, "has_rsample", False):
            raise GeneratorSiteError(
                f"site {self.site!r} of the generator is drawn from {_describe(fn)}, which is not "
                "reparameterizable (no rsample), so no gradient reaches the generator; use a point mass "
                "dist.Delta(G(z), event_dim=...) or a reparameterized likelihood (e.g. "
                "'continuous-bernoulli' or 'normal-fixed' instead of 'bernoulli' for a VAE decoder)")
        x = msg["value"]
        if x.dim() < 1 or x.shape[0] != batch_size:
            raise GeneratorSiteError(
                f"site {self.site!r} must hold a batch of shape ({batch_size}, ...) when the model is called "
                f"with batch_size={batch_size}, got shape {tuple(x.shape)}")
        return x

    def _check_real(self, x, fake):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise DataError(f"x must be a floating-point tensor batch of real examples, got "
                            f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
        if x.shape != fake.shape:
            raise DataError(f"x must have the shape of the generator's samples {tuple(fake.shape)}, "
                            f"got {tuple(x.shape)}")

    def _labels(self, kwargs):
        """The labels of a conditional GAN's batch (None for an unconditional one)."""
        if self.label is None:
            return None
        if kwargs.get(self.label) is None:
            raise DataError(f"this Adversarial is conditional (label={self.label!r}): pass the real batch's "
                            f"labels, step(x, {self.label}=labels)")
        return kwargs[self.label]

    def _score(self, x, labels):
        return self.discriminator(x) if labels is None else self.discriminator(x, labels)

    def _batches(self, x):
        if isinstance(x, (list, tuple)):
            if len(x) != self.d_steps:
                raise DataError(f"step got {len(x)} real batches; pass one batch, or a list of d_steps = "
                                f"{self.d_steps} batches (one per discriminator update)")
            return list(x)
        if not isinstance(x, torch.Tensor):
            raise DataError(f"x must be a tensor batch (or a list of d_steps batches), got {type(x).__name__}")
        return [x] * self.d_steps

    # ------------------------------------------------------------------ losses
    def _discriminator_loss(self, real, fake, labels=None):
        real_scores, fake_scores = self._score(real, labels), self._score(fake, labels)
        real_scores, fake_scores = self.loss.check(real_scores, fake_scores)
        loss = self.loss.discriminator_loss(real_scores, fake_scores)
        critic = self.discriminator if labels is None else (lambda t: self.discriminator(t, labels))
        penalty = self.loss.penalty(critic, real, fake)
        total = loss if penalty is None else loss + penalty
        return total, real_scores.detach(), fake_scores.detach()

    def _stats(self, loss_d, loss_g, real_scores, fake_scores):
        th = self.loss.threshold
        accuracy = ((real_scores > th).float().mean() + (fake_scores <= th).float().mean()) / 2
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": self.loss.score_mean(real_scores), "d_fake": self.loss.score_mean(fake_scores),
                "d_accuracy": accuracy}

    def step(self, x, **kwargs):
        """``d_steps`` discriminator updates and one generator update on a batch of real examples.

        :param x: real examples ``(B, ...)`` (the same batch for every discriminator update),
            or a list of ``d_steps`` such batches (one per update).
        :param kwargs: passed to the model, after ``batch_size=B``.
        :returns: dict of detached scalar tensors (see the class docs).
        """
        batches = self._batches(x)
        labels = per_batch = self._labels(kwargs)
        if labels is not None:
            if isinstance(x, (list, tuple)) != isinstance(labels, (list, tuple)) or (
                    isinstance(labels, (list, tuple)) and len(labels) != len(batches)):
                n = len(batches) if isinstance(x, (list, tuple)) else 1
                raise DataError(f"pass one label tensor per real batch: {n} batch(es), "
                                f"{self.label}={type(labels).__name__}")
            per_batch = list(labels) if isinstance(labels, (list, tuple)) else [labels] * len(batches)
        for i, real in enumerate(batches):
            last = i == len(batches) - 1
            if labels is not None:
                labels = per_batch[i]
                kwargs[self.label] = labels
            if last:
                fake = self.sample(real.shape[0], **kwargs)  # kept with its graph for the generator update
            else:
                with torch.no_grad():
                    fake = self.sample(real.shape[0], **kwargs)
            if i == 0:
                self._check_real(real, fake)
            self.discriminator_optim.zero_grad(set_to_none=True)
            loss_d, real_scores, fake_scores = self._discriminator_loss(real, fake.detach(), labels)
            loss_d.backward()
            self._average_gradients(self.discriminator_optim)
            self.discriminator_optim.step()
        if self.track_grad_norms:
            grad_norm_d = _grad_norm(self._d_params)
        for p in self._d_params:
            p.requires_grad_(False)
        try:
            self.generator_optim.zero_grad(set_to_none=True)
            loss_g = self.loss.generator_loss(self._score(fake, labels))
            loss_g.backward()
        finally:
            for p in self._d_params:
                p.requires_grad_(True)
        self._average_gradients(self.generator_optim)
        if self.track_grad_norms:
            grad_norm_g = _grad_norm([p for g in self.generator_optim.param_groups for p in g["params"]])
        self.generator_optim.step()
        out = self._stats(loss_d, loss_g, real_scores, fake_scores)
        if self.track_grad_norms:
            out.update(grad_norm_d=grad_norm_d, grad_norm_g=grad_norm_g)
        return out

    def evaluate_loss(self, x, **kwargs):
        """Both losses and the discriminator's statistics on a batch, without updating anything.

        Returns the same dict as :meth:`step` (a gradient penalty is evaluated
        with gradients enabled, as it needs them, then detached).
        """
        if not isinstance(x, torch.Tensor):
            raise DataError(f"x must be a tensor batch of real examples, got {type(x).__name__}")
        labels = self._labels(kwargs)
        with torch.no_grad():
            fake = self.sample(x.shape[0], **kwargs)
        self._check_real(x, fake)
        has_penalty = type(self.loss).penalty is not GANLoss.penalty
        with torch.enable_grad() if has_penalty else torch.no_grad():
            loss_d, real_scores, fake_scores = self._discriminator_loss(x, fake, labels)
        with torch.no_grad():
            loss_g = self.loss.generator_loss(self._score(fake, labels))
        return self._stats(loss_d, loss_g, real_scores, fake_scores)


def _describe(fn):
    """The name of a distribution, looking through ``Independent`` and masking wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).__name__


def _grad_norm(params):
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads).detach()
