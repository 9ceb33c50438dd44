"""Aggressive inference-network training (He, Spokoyny, Neubig and Berg-Kirkpatrick, ICLR 2019).

VAE training is not EM: the inference network :math:`q_\\phi(z \\mid x)` lags
behind the model's true posterior, and early in training the decoder learns
to ignore z before q has caught up (posterior collapse). He et al.
("Lagging inference networks and posterior collapse in variational
autoencoders", algorithm 1) move closer to EM: before every generator step
they optimise the inference network alone until its loss stops improving.

For each training minibatch, while aggressive mode is on:

1. take inference-network-only steps, each on a freshly drawn random
   minibatch, and keep the sum of their losses; every ``window`` steps (15 for
   text, 10 for images in their code) compare the window's mean loss with the
   previous window's and stop when it did not decrease, or after ``max_steps``
   steps (100) -- :class:`WindowedStopping`;
2. take one step on the original minibatch in which only the generator moves.

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

from pyrogen.infer.torch_svi import module_local


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
    ``patience`` = 5 their image rule.
    """

    def __init__(self, patience=1):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.best = -math.inf
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
    :param int max_steps: :class:`WindowedStopping` cap.

    Attributes: ``aggressive`` (bool, set by the caller, e.g. from an
    :class:`AggressiveSwitch`), ``inner_steps`` (inner steps taken so far, in total).
    """

    def __init__(self, model, guide, encoder_optim, decoder_optim, loss, sample_batch, window=10, max_steps=100):
        for name, opt in (("encoder_optim", encoder_optim), ("decoder_optim", decoder_optim)):
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(opt).__name__}")
        enc = {id(p) for g in encoder_optim.param_groups for p in g["params"]}
        if any(id(p) in enc for g in decoder_optim.param_groups for p in g["params"]):
            raise ValueError("encoder_optim and decoder_optim share parameters; "
                             "aggressive training needs the inference network and the generator apart")
        self.model, self.guide = module_local(model), module_local(guide)
        self.encoder_optim, self.decoder_optim = encoder_optim, decoder_optim
        self.loss, self.sample_batch = loss, sample_batch
        self.stopping = WindowedStopping(window, max_steps)
        self.aggressive = True
        self.inner_steps = 0

    def _zero(self):
        self.encoder_optim.zero_grad(set_to_none=True)
        self.decoder_optim.zero_grad(set_to_none=True)

    def inner_loop(self, **kwargs):
        """Inference-network-only steps on fresh minibatches until :class:`WindowedStopping` says stop."""
        self.stopping.reset()
        while True:
            x = self.sample_batch()
            self._zero()
            loss = self.loss.differentiable_loss(self.model, self.guide, x, **kwargs)
            loss.backward()
            self.encoder_optim.step()
            self.inner_steps += 1
            if not self.stopping.update(loss.item() / x.shape[0]):
                return self.stopping.steps

    def step(self, x, **kwargs):
        """One training step on ``x``; returns its loss (negative ELBO, nats) as a detached tensor.

        In aggressive mode: the inner loop, then a generator-only step on ``x``.
        Otherwise: an ordinary joint step of both networks.
        """
        if self.aggressive:
            self.inner_loop(**kwargs)
        self._zero()
        loss = self.loss.differentiable_loss(self.model, self.guide, x, **kwargs)
        loss.backward()
        self.decoder_optim.step()
        if not self.aggressive:
            self.encoder_optim.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate_loss(self, *args, **kwargs):
        return self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)
