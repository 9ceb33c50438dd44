"""A loss module captured once as a graph of torch operations, then replayed or compiled.

A Pyro model pays for its flexibility in Python at every step: each
``pyro.sample`` statement walks the effect-handler stack, builds distribution
objects and expands them to the plates. When the model's structure does not
depend on the values of its inputs (the same sample sites, plates and control
flow at every step, as in a VAE), that Python work computes the same graph of
tensor operations each time. :class:`RecordedLoss` records the graph once per
input signature with :func:`torch.fx.experimental.proxy_tensor.make_fx`, with
the parameters as inputs, and replays it at every later call: the same ATen
operations in the same order, so the same values and gradients bit for bit as
the eager module, without the Python around them and without a compiler.
:class:`CompiledLoss` hands the recorded graph to :func:`torch.compile`, which
fuses its element-wise operations and compiles the backward pass with it. Pyro's
effect handlers themselves cannot be traced by ``torch.compile`` (their
messages are ``TypedDict``\\ s, a graph break at every site), so the recording
happens below them, at the level of ATen operations.

Random draws (``rsample``) are recorded as random operations and drawn anew at
every call, from torch's global generator as in eager mode (inductor's
``fallback_random``), so a seeded compiled run draws the same noise as the
eager run and resumes from a checkpoint exactly.
"""

import functools
import warnings

import pyro
import torch
from torch import nn
from torch.func import functional_call
from torch.fx.experimental.proxy_tensor import make_fx

from pyrogen.errors import CompilationError, RecordingError, RecordingMismatchError


def _signature(args, kwargs):
    """A hashable key of the call: shape, dtype and device of tensors, the value of the rest."""

    def key(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), value.dtype, str(value.device))
        return ("value", value)

    return tuple(key(a) for a in args), tuple((k, key(kwargs[k])) for k in sorted(kwargs))


def _tensor_inputs(args, kwargs):
    return [a for a in args if isinstance(a, torch.Tensor)] + [
        kwargs[k] for k in sorted(kwargs) if isinstance(kwargs[k], torch.Tensor)
    ]


def _rebuild(args, kwargs, tensors):
    """``args`` and ``kwargs`` with their tensors replaced, in order, by ``tensors``."""
    tensors = iter(tensors)
    new_args = tuple(next(tensors) if isinstance(a, torch.Tensor) else a for a in args)
    new_kwargs = {k: kwargs[k] for k in kwargs}
    for k in sorted(kwargs):
        if isinstance(kwargs[k], torch.Tensor):
            new_kwargs[k] = next(tensors)
    return new_args, new_kwargs


CHECKED_STEPS = (2, 3, 10, 100)
"""Calls of a recorded loss checked against its module, besides every 1,000th (:func:`checked_step`)."""


def checked_step(step):
    """Whether call ``step`` (counted from 1) of a :class:`RecordedLoss` is checked against the eager module."""
    return step in CHECKED_STEPS or step % 1000 == 0


def _same(a, b):
    """``torch.equal``, with a NaN equal to a NaN (a model whose loss is NaN records and replays NaN)."""
    return torch.equal(a, b) or (a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all()))


def _cuda_devices(tensors):
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


def _check_leaves(loss, parameters):
    """Raise if ``loss`` has a gradient path to a tensor other than ``parameters``.

    Recording replaces the parameters by graph inputs; any other tensor that
    needs a gradient would become a constant of the graph and silently stop training.
    """
    known = {id(p) for p in parameters}
    seen, stack = set(), [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) not in known:
            raise RecordingError(
                f"the loss uses a tensor that needs a gradient but is not a parameter or buffer of the "
                f"loss module (shape {tuple(variable.shape)}), e.g. a pyro.param; compiling would freeze "
                "it. Make it an nn.Parameter of the model, or train without compile"
            )
        stack.extend(next_node for next_node, _ in node.next_functions)


class RecordedLoss(nn.Module):
    """``loss_module``'s forward pass, recorded once per input signature as a graph of ATen operations and replayed.

    Calling it with the same argument shapes (and the same non-tensor arguments)
    as before runs the recorded graph: the tensor operations the module's Python
    code issued when recorded, in the same order, on the current parameters and
    inputs, drawing fresh noise from torch's global generator as the module does.
    Values, gradients and the random stream are the eager module's, bit for bit;
    what is left out is the Python that computed the graph (for a Pyro model: the
    effect handlers, the distribution objects, the plates). A new signature is
    recorded anew (well under a second for a small VAE), up to ``max_graphs``,
    after which new signatures run ``loss_module`` eagerly with a warning. Pass a
    value that changes every step, such as a KL weight, as a 0-dimensional
    tensor so that it is an input of the graph, not a constant.

    What a recorded loss may do: compute from its tensor arguments, its
    module's parameters and buffers and fresh random draws, with the same sample
    sites, plates and control flow at every call of a signature. What it may
    not do: read a Python value that changes between calls (a KL weight taken
    from a list or a global, a step counter, an attribute set by the training
    loop), branch on a tensor's value, or use a ``pyro.param``; the first is
    replayed as the constant it was when recorded. So a guard repeats chosen
    calls eagerly (calls 2, 3, 10 and 100 of the module, then every 1,000th:
    :func:`checked_step`) from the same random state and compares: a mismatch is
    a :class:`~pyrogen.errors.RecordingMismatchError` (a ``RecordingError``) and
    the step is not taken (the random state and buffers are put back, so the
    caller can take it eagerly). The eager repetition runs under a forked random
    state and with the buffers restored afterwards, so a guarded run draws and
    computes exactly what an unguarded one does.

    The recording runs the module on real inputs, under a forked random state
    (the global generator does not move) and with Pyro's validation off, and
    keeps what the Python code did on that call: the model must not branch on
    the values of its inputs, and validate the data before training. Every
    tensor that needs a gradient must be a parameter or buffer of
    ``loss_module`` (a ``pyro.param`` of the param store, say, would be frozen
    into the graph), which is checked when recording; and the graph, run from
    the same random state as the module, must return the module's loss to the
    bit, or the recording is refused.

    :param torch.nn.Module loss_module: returns a scalar loss, e.g. a
        :class:`~pyrogen.infer.ELBOModule`.
    :param int max_graphs: how many signatures to record.
    :raises pyrogen.errors.RecordingError: at the first call of a signature, when the
        loss cannot be recorded or the recorded graph does not reproduce it;
        :class:`~pyrogen.errors.RecordingMismatchError` at a checked call whose
        replay differs from the module's eager loss.
    """

    verify = True  # whether a recording must reproduce the eager loss to the bit
    guard = True  # whether checked calls (checked_step) are repeated eagerly and compared

    def __init__(self, loss_module, max_graphs=8):
        super().__init__()
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}")
        self.loss_module = loss_module
        self.max_graphs = max_graphs
        self._graphs = {}
        self._warned = False
        self.calls = 0  # calls of forward, counted for the guard

    def _prepare(self, graph):
        """What runs the recorded graph: the graph itself (here), or its compilation."""
        return graph

    def _capture(self, args, kwargs):
        """Record the loss for this signature; returns ``run(tensor_inputs) -> loss``.

        The module's parameters and buffers are looked up once, here: optimizer
        steps and ``load_state_dict`` update them in place, so the same tensors
        serve every later call of this signature.
        """
        state = {**dict(self.loss_module.named_parameters()), **dict(self.loss_module.named_buffers())}
        names, values = list(state), list(state.values())

        def loss(state, tensors):
            call_args, call_kwargs = _rebuild(args, kwargs, tensors)
            return functional_call(self.loss_module, dict(zip(names, state)), call_args, call_kwargs)

        inputs = _tensor_inputs(args, kwargs)
        devices = sorted({t.device.index or 0 for t in values if t.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices), pyro.validation_enabled(False):
            rng = torch.random.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]
            eager = self.loss_module(*args, **kwargs)
            _check_leaves(eager, [*values, *inputs])
            try:
                graph = make_fx(loss, pre_dispatch=True)([t.detach() for t in values], [t.detach() for t in inputs])
            except Exception as e:  # noqa: BLE001 - whatever stops the recording, the eager module still runs
                reason = (str(e).strip().splitlines() or [""])[0]
                raise RecordingError(
                    f"could not record the loss as a graph ({type(e).__name__}: {reason}); "
                    "train without recording (compile off)"
                ) from e
            # Operations whose results nothing reads (a plate's index range, a dtype probe) go; in-place
            # ones, the random draws among them, are impure to FX and stay.
            graph.graph.eliminate_dead_code()
            graph.recompile()
            if self.verify:
                torch.random.set_rng_state(rng[0])
                for d, state_d in zip(devices, rng[1]):
                    torch.cuda.set_rng_state(state_d, d)
                with torch.no_grad():
                    replayed = graph(values, inputs)
                if not _same(replayed, eager.detach()):
                    raise RecordingError(
                        f"the recorded graph returned {replayed.item()!r} where the module returned "
                        f"{eager.item()!r} on the same draws; the loss's Python code depends on more than "
                        "its inputs' shapes. Train without recording (compile off)"
                    )
        return functools.partial(self._prepare(graph), values)

    def _first_call(self, run, inputs):
        return run(inputs)

    def _agrees(self, replayed, eager):
        """Whether a replayed loss is the eager one: to the bit for a recording."""
        return _same(replayed, eager)

    def _guarded(self, run, inputs, args, kwargs):
        """``run(inputs)``, checked against the eager module on the same draws; raises on a mismatch."""
        state = list(self.loss_module.parameters()) + list(self.loss_module.buffers())
        devices = _cuda_devices([*state, *inputs])
        rng = torch.random.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]
        buffers = [b.detach().clone() for b in self.loss_module.buffers()]

        def put_back():
            with torch.no_grad():
                for b, saved in zip(self.loss_module.buffers(), buffers):
                    b.copy_(saved)

        with torch.random.fork_rng(devices=devices), pyro.validation_enabled(False):
            eager = self.loss_module(*args, **kwargs).detach()
        put_back()
        loss = run(inputs)
        if not self._agrees(loss.detach(), eager):
            torch.random.set_rng_state(rng[0])
            for d, state_d in zip(devices, rng[1]):
                torch.cuda.set_rng_state(state_d, d)
            put_back()
            raise RecordingMismatchError(
                f"at call {self.calls} the recorded loss returned {loss.item()!r} where the model's Python code "
                f"returned {eager.item()!r} on the same draws (it reads a Python value that changed since it was "
                "recorded, such as a weight from a list or a global, which the recording replays as a constant); "
                "pass such values as tensor arguments (kl_weight=torch.tensor(w)), or train without recording "
                "(compile off)"
            )
        return loss

    def forward(self, *args, **kwargs):
        self.calls += 1
        key = _signature(args, kwargs)
        run = self._graphs.get(key)
        if run is None:
            if len(self._graphs) >= self.max_graphs:
                if not self._warned:
                    warnings.warn(
                        f"{type(self).__name__}: more than {self.max_graphs} argument signatures; new ones run eagerly",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    self._warned = True
                return self.loss_module(*args, **kwargs)
            run = self._capture(args, kwargs)
            loss = self._first_call(run, _tensor_inputs(args, kwargs))
            self._graphs[key] = run
            return loss
        if self.guard and checked_step(self.calls):
            return self._guarded(run, _tensor_inputs(args, kwargs), args, kwargs)
        return run(_tensor_inputs(args, kwargs))


class CompiledLoss(RecordedLoss):
    """``loss_module``'s forward pass, recorded once per input signature (:class:`RecordedLoss`) and compiled.

    The recorded graph goes to :func:`torch.compile` (inductor), which fuses its
    element-wise operations and compiles its backward pass: about 10 s for a
    small VAE on a quiet 2-core CPU the first time (several times that on a loaded
    one), about 2 s when inductor's on-disk cache already holds the kernels. Values agree with the eager
    module's to rounding (fused kernels reorder floating-point operations), and
    the random stream is the same (``fallback_random``), so a seeded compiled
    run draws the same noise as the eager run and resumes from a checkpoint exactly.

    :param torch.nn.Module loss_module: returns a scalar loss, e.g. a
        :class:`~pyrogen.infer.ELBOModule`.
    :param int max_graphs: how many signatures to compile.
    :param compile_options: passed to :func:`torch.compile` as ``options``
        (inductor settings); ``fallback_random`` defaults to True.
    :raises pyrogen.errors.CompilationError: at the first call of a signature,
        when ``torch.compile`` fails (on the CPU: no working C++ compiler).
    """

    verify = False  # fused kernels round differently

    def _agrees(self, replayed, eager):
        """Fused kernels reorder floating-point sums: agreement to 1e-3 relative (a replayed stale
        constant, such as a KL weight, is off by far more)."""
        return bool(torch.allclose(replayed, eager.to(replayed.dtype), rtol=1e-3, atol=1e-6, equal_nan=True))

    def __init__(self, loss_module, max_graphs=8, **compile_options):
        super().__init__(loss_module, max_graphs=max_graphs)
        self.compile_options = {"fallback_random": True, **compile_options}

    def _prepare(self, graph):
        return torch.compile(graph, dynamic=False, options=self.compile_options)

    def _first_call(self, run, inputs):
        try:  # torch.compile compiles lazily, at the first call
            return run(inputs)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            reason = str(e).strip().splitlines()[0]
            raise CompilationError(
                f"torch.compile could not compile the recorded loss ({reason}); on the CPU it needs a "
                "working C++ compiler (e.g. apt-get install g++). Train without compile instead"
            ) from None
