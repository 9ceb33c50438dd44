"""Stochastic variational inference driven by a native torch optimizer."""

import functools
import warnings

import torch
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule
from pyro.util import warn_if_nan
from torch import nn

from pyrogen.infer.compiled_loss import CompiledLoss, RecordedLoss
from pyrogen.infer.reparam_elbo import nan_check, nan_checked
from pyrogen.precision import Precision

COMPILE_CHOICES = ("off", "record", "on")
"""What :class:`TorchSVI`'s ``compile`` takes: the words of ``--compile`` and ``train.compile`` but ``"auto"``,
which the trainer decides from a run's length (:func:`pyrogen.training.vae.auto_compile`)."""


def compile_choice(compile):
    """``compile`` as one of :data:`COMPILE_CHOICES`; the booleans of earlier code mean ``"on"`` and ``"off"``
    (with a :class:`DeprecationWarning` naming the word to give)."""
    if compile is True or compile is False:
        word = "on" if compile else "off"
        warnings.warn(
            f"TorchSVI(compile={compile}) is deprecated; give compile={word!r}", DeprecationWarning, stacklevel=3
        )
        return word
    if not isinstance(compile, str) or compile not in COMPILE_CHOICES:
        auto = isinstance(compile, str) and compile == "auto"
        hint = " ('auto' is the trainer's choice from a run's length)" if auto else ""
        raise ValueError(f"compile must be 'off', 'record' or 'on', got {compile!r}{hint}")
    return compile


def compiled(loss_module, compile):
    """``loss_module`` as ``compile`` (one of :data:`COMPILE_CHOICES`) runs it: itself (``"off"``), a
    :class:`~pyrogen.infer.RecordedLoss` (``"record"``) or a :class:`~pyrogen.infer.CompiledLoss` (``"on"``)."""
    compile = compile_choice(compile)
    if compile == "record":
        return RecordedLoss(loss_module)
    return CompiledLoss(loss_module) if compile == "on" else loss_module


def _device_of(optim):
    """The device of an optimizer's first parameter (the CPU for one without parameters)."""
    for group in optim.param_groups:
        for p in group["params"]:
            return p.device
    return torch.device("cpu")


def _warn_if_nan(loss):
    """Pyro's "Encountered NaN: loss" warning, as Trace_ELBO gives it at every step, where reading the loss costs
    nothing: on the CPU, or under Pyro's validation. A loss on an accelerator is not read on the host at every
    step (the caller reads it every few steps). Inside :func:`~pyrogen.infer.reparam_elbo.nan_check` ``(False)``
    there is no warning: :class:`~pyrogen.training.FitLoop` reads the loss itself and stops on a NaN in one line."""
    if isinstance(loss, torch.Tensor) and nan_checked() and (loss.device.type == "cpu" or is_validation_enabled()):
        warn_if_nan(loss, "loss")
    return loss


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


class ELBOModule(nn.Module):
    """An ELBO of a model/guide pair as a torch loss module: ``forward(*args)`` is the loss.

    It holds the modules that own ``model`` and ``guide`` (or the ``modules``
    given), so that :class:`~torch.nn.parallel.DistributedDataParallel` can
    wrap it and synchronise their gradients, as in Pyro's ``svi_lightning`` example.
    """

    def __init__(self, model, guide, elbo, modules=None):
        super().__init__()
        if modules is None:
            owners = (getattr(model, "__self__", None), getattr(guide, "__self__", None))
            modules = list({id(m): m for m in owners if isinstance(m, nn.Module)}.values())
        self.owners = nn.ModuleList(modules)
        self.model, self.guide, self.elbo = module_local(model), module_local(guide), elbo

    def forward(self, *args, **kwargs):
        return self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)


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
    :param str compile: ``"off"`` (the default) runs the model and guide's Python at
        every step. ``"record"`` records the loss as one graph of tensor operations
        per batch shape and replays it (:class:`~pyrogen.infer.RecordedLoss`): the
        eager step's values, gradients and random draws bit for bit, without Pyro's
        per-step Python, no compiler needed. ``"on"`` records the graph and compiles
        it (:class:`~pyrogen.infer.CompiledLoss`); the first step of each shape pays
        the compilation. Both are for models whose sample sites and control flow do
        not depend on the data's values and that read no Python value that changes
        between steps (pass a changing KL weight as a tensor argument): a guard
        repeats steps 2, 3, 10, 100 and every 1,000th eagerly on the same draws and
        raises :class:`~pyrogen.errors.RecordingMismatchError`, the step untaken,
        when they disagree (see :ref:`recorded-models`). The words are those of ``--compile``
        (:data:`COMPILE_CHOICES`); the booleans of earlier versions still mean ``"on"`` and ``"off"``,
        with a :class:`DeprecationWarning`.
    :param precision: a :class:`~pyrogen.precision.Precision` (or its name, ``"32"``, ``"bf16"``,
        ``"fp16"``) for mixed-precision steps: the loss computed under autocast, the backward pass
        and the optimizer step through its gradient scaler under ``"fp16"``. None or ``"32"``: the
        float32 step, unchanged. Mixed precision runs the step eagerly (``compile="off"``).
    """

    def __init__(self, model, guide, optim, loss, compile="off", precision=None):
        if not isinstance(optim, torch.optim.Optimizer):
            raise TypeError(f"optim must be a torch.optim.Optimizer, got {type(optim).__name__}")
        compile = compile_choice(compile)
        if isinstance(precision, (str, int)):
            precision = Precision(precision, _device_of(optim))
        if precision is not None and not precision.enabled:
            precision = None
        if precision is not None and compile != "off":
            raise ValueError(
                f"compile={compile!r} records the float32 step; mixed precision "
                f"({precision.precision}) runs eagerly: give compile='off'"
            )
        self.optim = optim
        self.loss = loss
        self.precision = precision
        elbo_module = ELBOModule(model, guide, loss)
        self.model, self.guide = elbo_module.model, elbo_module.guide
        self.loss_module = compiled(elbo_module, compile)
        self._gradient_scale = 1.0

    def distribute(self, **ddp_options):
        """Average gradients over the ``torch.distributed`` process group with DDP.

        Each rank's loss is scaled by the world size before the backward pass,
        so the averaged gradient is the gradient of the global batch's summed
        loss: a step over N ranks' shards equals a single process's step on the
        whole batch, up to the order of floating-point reductions.
        """
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        self.loss_module = DistributedDataParallel(self.loss_module, **ddp_options)
        self._gradient_scale = float(dist.get_world_size())
        return self

    def step(self, *args, **kwargs):
        """One gradient step; returns this process's loss (negative ELBO, nats) as a detached tensor."""
        self.optim.zero_grad(set_to_none=True)
        if self.precision is not None:
            return self._mixed_step(*args, **kwargs)
        checked = nan_checked()
        with nan_check(False):  # checked once below, whatever computed the loss (a recording, say)
            loss = self.loss_module(*args, **kwargs)
        if checked:
            _warn_if_nan(loss)
        (loss * self._gradient_scale if self._gradient_scale != 1.0 else loss).backward()
        self.optim.step()
        return loss.detach()

    def _mixed_step(self, *args, **kwargs):
        """:meth:`step` under :attr:`precision`: the forward pass autocast, the backward pass outside it."""
        checked = nan_checked()
        with self.precision.autocast(), nan_check(False):
            loss = self.loss_module(*args, **kwargs)
        loss = _warn_if_nan(loss.float()) if checked else loss.float()
        self.precision.backward(loss * self._gradient_scale if self._gradient_scale != 1.0 else loss)
        self.precision.step(self.optim)
        self.precision.update()
        return loss.detach()

    @torch.no_grad()
    def evaluate_loss(self, *args, **kwargs):
        """The loss without a gradient step, as a detached tensor."""
        checked = nan_checked()
        with nan_check(False):
            loss = self.loss.differentiable_loss(self.model, self.guide, *args, **kwargs)
        return _warn_if_nan(loss) if checked else loss
