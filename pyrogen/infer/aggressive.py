"""Aggressive inference-network training (He, Spokoyny, Neubig and Berg-Kirkpatrick, ICLR 2019).

VAE training is not EM: the inference network :math:`q_\\phi(z \\mid x)` lags
behind the model's true posterior, and early in training the decoder learns
to ignore z before q has caught up (posterior collapse). He et al.
("Lagging inference networks and posterior collapse in variational
autoencoders", algorithm 1) move closer to EM: before every generator step
they optimise the inference network alone until its loss stops improving.

For each training minibatch, while aggressive mode is on:

1. take inference-network-only steps -- the first on the current minibatch,
   each later one on a freshly drawn random minibatch, as ``text.py`` and
   ``image.py`` do -- and keep the sum of their losses; every ``window`` steps
   (15 for text, 10 for images in their code) compare the window's mean loss
   with the previous window's and stop when it did not decrease, or after
   ``max_steps`` steps (their loop ``while sub_iter < 100`` takes at most 99)
   -- :class:`WindowedStopping`;
2. take one step on the original minibatch in which only the generator moves.

After every backward pass, the inner ones included, the global gradient norm
over *all* parameters (encoder and decoder, as ``clip_grad_norm_(vae.parameters(), 5)``
in their code) is clipped at ``clip_norm`` when one is given.

At each epoch's end the held-out mutual information :math:`I_q(x; z)` decides
whether to stay aggressive: for text He et al. stop as soon as it drops
(``patience`` = 1), for images after it failed 5 times to beat its best value
(``patience`` = 5) -- :class:`AggressiveSwitch`. After that, training is
ordinary joint SVI.

:class:`AggressiveSVI` works for any model/guide pair whose parameters split
into an inference-network group and a generator group: it takes one
``torch.optim`` optimizer for each.
"""

import math

import torch
from pyro.infer.util import is_validation_enabled

from pyrogen.infer.reparam_elbo import nan_check
from pyrogen.infer.torch_svi import module_local
from pyrogen.optim import PerExampleLoss, clip_grad_norm


class WindowedStopping:
    """The stopping rule of the inner (inference-network) loop.

    Feed the loss of every inner step to :meth:`update`; it returns True while
    the loop should go on. After every ``window`` steps the mean loss of the
    window is compared with the previous window's mean (+∞ at first): the loop
    stops when it is not lower. It also stops after ``max_steps`` steps.

    :param int window: steps per window (10 for images, 15 for text).
    :param int max_steps: hard cap on the inner steps (100).
    """

    def __init__(self, window=10, max_steps=100):
        if window < 1 or max_steps < 1:
            raise ValueError(f"window and max_steps must be >= 1, got {window!r} and {max_steps!r}")
        self.window, self.max_steps = int(window), int(max_steps)
        self.reset()

    def reset(self):
        """Start a new inner loop."""
        self.steps = 0
        self.previous = math.inf
        self._sum, self._count = 0.0, 0

    def update(self, loss):
        """Record one inner step's loss (a float, per example); return whether to continue."""
        self.steps += 1
        self._sum += float(loss)
        self._count += 1
        if self._count == self.window:
            mean = self._sum / self._count
            if not mean < self.previous:
                return False
            self.previous = mean
            self._sum, self._count = 0.0, 0
        return self.steps < self.max_steps


class AggressiveSwitch:
    """When to leave aggressive mode, from held-out mutual information measured each epoch.

    :meth:`update` takes the epoch's MI and returns whether to stay
    aggressive. A value that does not beat the best so far counts as a
    failure; after ``patience`` failures aggressive mode is off for good.
    ``patience`` = 1 is He et al.'s text rule (stop as soon as MI drops),
    ``patience`` = 5 their image rule. With ``patience`` = 1 the best so far is
    the previous value, so this is ``text.py``'s ``if cur_mi - pre_mi < 0``
    except at a tie (here a failure) and at the first epoch (``text.py``
    compares with ``pre_mi = 0`` and stops at once on a negative estimate; use
    ``initial=0.0`` for that). MI should come from a validation split carved
    from the training data (:func:`pyrogen.optim.split_validation`), never from the test set.
    """

    def __init__(self, patience=1, initial=-math.inf):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.best = float(initial)
        self.failures = 0
        self.aggressive = True

    def update(self, mi):
        if not self.aggressive:
            return False
        if mi > self.best:
            self.best = mi
        else:
            self.failures += 1
            if self.failures >= self.patience:
                self.aggressive = False
        return self.aggressive

    def state_dict(self):
        return {"best": self.best, "failures": self.failures, "aggressive": self.aggressive}

    def load_state_dict(self, state):
        self.best, self.failures, self.aggressive = state["best"], state["failures"], state["aggressive"]


class AggressiveSVI:
    """SVI with He et al.'s aggressive inference-network updates; shaped like :class:`~pyrogen.infer.TorchSVI`.

    :param model: Pyro model.
    :param guide: Pyro guide.
    :param torch.optim.Optimizer encoder_optim: holds the inference network's parameters (φ).
    :param torch.optim.Optimizer decoder_optim: holds the generator's parameters (θ); the two
        must not share a parameter.
    :param loss: an ELBO with ``differentiable_loss`` (e.g. :class:`~pyrogen.infer.ReparamTrace_ELBO`).
    :param callable sample_batch: returns a fresh random minibatch (the inner loop's data).
    :param int window: :class:`WindowedStopping` window.
    :param int max_steps: :class:`WindowedStopping` cap (He et al.: 99).
    :param clip_norm: clip the global gradient norm of all parameters of both
        optimizers at this value after every backward pass, inner steps
        included (He et al.: 5); None: no clipping.
    :param bool first_on_batch: the first inner step of each aggressive step
        uses the step's own minibatch, later ones ``sample_batch()`` (He et
        al.'s order); False draws every inner minibatch fresh.

    Attributes: ``aggressive`` (bool, set by the caller, e.g. from an
    :class:`AggressiveSwitch`), ``inner_steps`` (inner steps taken so far, in
    total), ``last_grad_norm`` (the global norm before clipping of the last
    backward pass, when clipping).
    """

    def __init__(
        self,
        model,
        guide,
        encoder_optim,
        decoder_optim,
        loss,
        sample_batch,
        window=10,
        max_steps=100,
        clip_norm=None,
        first_on_batch=True,
    ):
        for name, opt in (("encoder_optim", encoder_optim), ("decoder_optim", decoder_optim)):
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(opt).__name__}")
        enc = {id(p) for g in encoder_optim.param_groups for p in g["params"]}
        if any(id(p) in enc for g in decoder_optim.param_groups for p in g["params"]):
            raise ValueError(
                "encoder_optim and decoder_optim share parameters; "
                "aggressive training needs the inference network and the generator apart"
            )
        self.model, self.guide = module_local(model), module_local(guide)
        self.encoder_optim, self.decoder_optim = encoder_optim, decoder_optim
        self.loss, self.sample_batch = loss, sample_batch
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm!r}")
        self.stopping = WindowedStopping(window, max_steps)
        self.clip_norm, self.first_on_batch = clip_norm, bool(first_on_batch)
        self.parameters = [p for opt in (encoder_optim, decoder_optim) for g in opt.param_groups for p in g["params"]]
        self.aggressive = True
        self.inner_steps = 0
        self.last_grad_norm = None

    def _zero(self):
        self.encoder_optim.zero_grad(set_to_none=True)
        self.decoder_optim.zero_grad(set_to_none=True)

    def _backward(self, x, **kwargs):
        self._zero()
        with nan_check(is_validation_enabled() or x.device.type == "cpu"):  # as TorchSVI: no host read on a GPU
            loss = self.loss.differentiable_loss(self.model, self.guide, x, **kwargs)
        loss.backward()
        if self.clip_norm is not None:
            self.last_grad_norm = clip_grad_norm(self.parameters, self.clip_norm)
        return loss

    def inner_loop(self, x=None, **kwargs):
        """Inference-network-only steps until :class:`WindowedStopping` says stop; returns their number.

        The first step is on ``x`` when given (and ``first_on_batch``), every
        other on a fresh ``sample_batch()``.
        """
        self.stopping.reset()
        per_example = isinstance(self.loss, PerExampleLoss)
        batch = x if (x is not None and self.first_on_batch) else None
        while True:
            batch = self.sample_batch() if batch is None else batch
            loss = self._backward(batch, **kwargs)
            self.encoder_optim.step()
            self.inner_steps += 1
            value = loss.item() if per_example else loss.item() / batch.shape[0]
            batch = None
            if not self.stopping.update(value):
                return self.stopping.steps

    def step(self, x, **kwargs):
        """One training step on ``x``; returns its loss (negative ELBO, nats) as a detached tensor.

        In aggressive mode: the inner loop, then a generator-only step on ``x``.
        Otherwise: an ordinary joint step of both networks.
        """
        if self.aggressive:
            self.inner_loop(x, **kwargs)
        loss = self._backward(x, **kwargs)
        self.decoder_optim.step()
        if not self.aggressive:
            self.encoder_optim.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate_loss(self, *args, **kwargs):
        return self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)
