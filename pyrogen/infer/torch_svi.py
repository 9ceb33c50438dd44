"""Stochastic variational inference driven by a native torch optimizer."""

import functools

import torch
from pyro.nn import PyroModule


def module_local(fn):
    """The undecorated body of a ``@pyro_method`` whose parameters are plain ``nn.Parameter``\\ s.

    A ``@pyro_method`` of a :class:`~pyro.nn.PyroModule` emits one
    ``pyro.param`` statement per parameter of every plain ``nn.Module`` it
    touches, so that :class:`pyro.infer.SVI` can find them in the param store.
    A torch optimizer holds the parameters itself, so those statements are pure
    overhead (about 0.6 ms per step for a two-layer VAE on the CPU). When the
    module owns no :class:`~pyro.nn.PyroParam` or :class:`~pyro.nn.PyroSample`
    (which do need the module's context), the undecorated function computes
    exactly the same thing; otherwise ``fn`` is returned unchanged.
    """
    owner, body = getattr(fn, "__self__", None), getattr(fn, "__wrapped__", None)
    if not isinstance(owner, PyroModule) or body is None:
        return fn
    for m in owner.modules():
        if isinstance(m, PyroModule) and (m._pyro_params or m._pyro_samples):
            return fn
    return functools.partial(body, owner)


class TorchSVI:
    """SVI with the ELBO as a differentiable torch loss and a ``torch.optim`` optimizer.

    Each :meth:`step` computes ``loss.differentiable_loss(model, guide, *args)``,
    back-propagates it and steps the optimizer: the same objective and gradients
    as ``pyro.infer.SVI(model, guide, pyro.optim.Adam(...), loss).step(*args)``,
    without Pyro's per-step optimizer and param-store bookkeeping, and without a
    host synchronisation: the returned loss stays on the device, so callers
    accumulate it there and read it once per logging interval.

    :param model: a Pyro model (callable).
    :param guide: a Pyro guide (callable).
    :param torch.optim.Optimizer optim: holds every parameter that model and guide use.
    :param loss: an ELBO with ``differentiable_loss``, e.g.
        :class:`~pyrogen.infer.ReparamTrace_ELBO` or :class:`pyro.infer.TraceMeanField_ELBO`.
    """

    def __init__(self, model, guide, optim, loss):
        if not isinstance(optim, torch.optim.Optimizer):
            raise TypeError(f"optim must be a torch.optim.Optimizer, got {type(optim).__name__}")
        self.model = module_local(model)
        self.guide = module_local(guide)
        self.optim = optim
        self.loss = loss

    def step(self, *args, **kwargs):
        """One gradient step; returns the loss (negative ELBO, nats) as a detached tensor."""
        self.optim.zero_grad(set_to_none=True)
        loss = self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)
        loss.backward()
        self.optim.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate_loss(self, *args, **kwargs):
        """The loss without a gradient step, as a detached tensor."""
        return self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)
