"""Mixed precision for the training steps: autocast, and a gradient scaler for float16.

``"32"`` (the default) changes nothing: every context is a no-op and the step is
the float32 step bit for bit. ``"bf16"`` runs the forward pass (model and guide,
the ELBO) under :func:`torch.autocast` with ``torch.bfloat16``: matrix products and
convolutions in bfloat16, reductions, log-densities and the loss in float32
(autocast's own lists), parameters and optimizer state in float32. bfloat16 has
float32's range, so no loss scaling is needed. ``"fp16"`` autocasts to
``torch.float16``, whose range is narrow: the loss is multiplied by a scale before
the backward pass and the gradients divided by it before the optimizer steps
(:class:`torch.amp.GradScaler`), a step whose gradients overflowed is skipped and
the scale halved (Micikevicius et al. 2018, "Mixed precision training").

Pyro's maintainers recommend exactly this for Pyro models (pyro-ppl/pyro issue
3316): the ELBO as a differentiable loss in a plain torch loop, with autocast and
a gradient scaler around it. On the CPU bfloat16 is the useful mode (float16
matrix products are slow there); on a GPU both are.
"""

import contextlib

import torch

from pyrogen.errors import DataError

PRECISIONS = ("32", "bf16", "fp16")
"""What ``config["train"]["precision"]`` and ``--precision`` may name."""

INIT_SCALE = 1.0
"""The float16 loss scale at the first step. pyrogen's losses are summed over the batch (nats per
example times B), so their gradients are large: :class:`torch.amp.GradScaler`'s default of 2**16, made
for mean-reduced losses, overflows float16 in the backward pass of the first 16 or so steps, each of which
is skipped (a 784-200-10 VAE was 9 nats behind float32 after 60 steps). From 1 the scaler doubles the
scale after every 2,000 steps without an overflow."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision):
    """``precision`` as one of :data:`PRECISIONS` (an int 32 is taken as ``"32"``); else a DataError."""
    if isinstance(precision, int) and not isinstance(precision, bool):
        precision = str(precision)
    if precision not in PRECISIONS:
        raise DataError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


class Precision:
    """A training step's numeric precision: an autocast context, and loss scaling for float16.

    A step written as::

        with precision.autocast():
            loss = elbo_module(x)
        precision.backward(loss)
        precision.step(optimizer)   # the optimizer's step, unscaled and skipped on overflow (fp16)
        precision.update()          # once per step, after every optimizer stepped (fp16)

    is the plain ``loss.backward(); optimizer.step()`` step at ``"32"``.

    :param str precision: one of :data:`PRECISIONS`.
    :param device: where the step runs (``torch.device`` or its name); autocast is per device type.
    """

    def __init__(self, precision="32", device="cpu"):
        self.precision = check_precision(precision)
        self.device_type = torch.device(device).type
        self.dtype = _DTYPES.get(self.precision)
        fp16 = self.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.device_type, init_scale=INIT_SCALE) if fp16 else None

    @property
    def enabled(self):
        """Whether this is a mixed-precision setting (anything but ``"32"``)."""
        return self.dtype is not None

    def autocast(self):
        """The context to run a forward pass in: :func:`torch.autocast` at the dtype, a no-op at ``"32"``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss):
        """``loss.backward()``, the loss multiplied by the current scale first under ``"fp16"``."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer):
        """``optimizer.step()``; under ``"fp16"`` the gradients are unscaled first and a step whose
        gradients are not finite is skipped."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)

    def unscale_(self, optimizer):
        """Divide ``optimizer``'s gradients by the scale now (``"fp16"``; before clipping them), else nothing."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def update(self):
        """Adjust the scale after a step (``"fp16"``: halve it after an overflow, double it after
        2,000 steps without one); nothing otherwise."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self):
        """The gradient scaler's state (empty unless ``"fp16"``), for exact resume."""
        return {"precision": self.precision, "scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def load_state_dict(self, state):
        if state["precision"] != self.precision:
            raise DataError(f"the checkpoint was trained with precision {state['precision']!r}, not {self.precision!r}")
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])

    def __repr__(self):
        return f"Precision({self.precision!r}, device_type={self.device_type!r})"
