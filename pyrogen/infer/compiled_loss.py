"""A loss module captured once as a graph of torch operations, then compiled.

A Pyro model pays for its flexibility in Python at every step: each
``pyro.sample`` statement walks the effect-handler stack, builds distribution
objects and expands them to the plates. When the model's structure does not
depend on the values of its inputs (the same sample sites, plates and control
flow at every step, as in a VAE), that Python work computes the same graph of
tensor operations each time. :class:`CompiledLoss` records the graph once per
input signature with :func:`torch.fx.experimental.proxy_tensor.make_fx`, with
the parameters as inputs, and hands it to :func:`torch.compile`, which fuses
its element-wise operations and compiles the backward pass with it. Pyro's
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

from pyrogen.errors import CompilationError


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
            raise ValueError(
                f"the loss uses a tensor that needs a gradient but is not a parameter or buffer of the "
                f"loss module (shape {tuple(variable.shape)}), e.g. a pyro.param; compiling would freeze "
                "it. Make it an nn.Parameter of the model, or train without compile"
            )
        stack.extend(next_node for next_node, _ in node.next_functions)


class CompiledLoss(nn.Module):
    """``loss_module``'s forward pass, recorded once per input signature and compiled.

    Calling it with the same argument shapes (and the same non-tensor
    arguments) as before reuses the compiled graph; a new signature records and
    compiles a new one (about 15 s for a small VAE on a 2-core CPU), up to
    ``max_graphs``, after which new signatures run ``loss_module`` eagerly with
    a warning. Pass a value that changes every step, such as a KL weight, as a
    0-dimensional tensor so that it is an input of the graph, not a constant.

    The recording runs the module once on real inputs, under a forked random
    state (the global generator does not move) and with Pyro's validation off,
    and keeps what the Python code did on that call: the model must not branch
    on the values of its inputs, and validate the data before training.
    Every tensor that needs a gradient must be a parameter of ``loss_module``
    (a ``pyro.param`` of the param store, say, would be frozen into the graph),
    which is checked when recording.

    :param torch.nn.Module loss_module: returns a scalar loss, e.g. a
        :class:`~pyrogen.infer.ELBOModule`.
    :param int max_graphs: how many signatures to compile.
    :param compile_options: passed to :func:`torch.compile` as ``options``
        (inductor settings); ``fallback_random`` defaults to True.
    :raises pyrogen.errors.CompilationError: at the first call of a signature,
        when ``torch.compile`` fails (on the CPU: no working C++ compiler).
    """

    def __init__(self, loss_module, max_graphs=8, **compile_options):
        super().__init__()
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}")
        self.loss_module = loss_module
        self.max_graphs = max_graphs
        self.compile_options = {"fallback_random": True, **compile_options}
        self._graphs = {}
        self._warned = False

    def _capture(self, args, kwargs):
        """Record and compile the loss for this signature; returns ``run(tensor_inputs) -> loss``.

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
            _check_leaves(self.loss_module(*args, **kwargs), [*values, *inputs])
            graph = make_fx(loss, pre_dispatch=True)([t.detach() for t in values], [t.detach() for t in inputs])
        compiled = torch.compile(graph, dynamic=False, options=self.compile_options)
        return functools.partial(compiled, values)

    def forward(self, *args, **kwargs):
        key = _signature(args, kwargs)
        run = self._graphs.get(key)
        if run is None:
            if len(self._graphs) >= self.max_graphs:
                if not self._warned:
                    warnings.warn(f"CompiledLoss: more than {self.max_graphs} argument signatures; "
                                  "new ones run eagerly", RuntimeWarning, stacklevel=2)
                    self._warned = True
                return self.loss_module(*args, **kwargs)
            run = self._capture(args, kwargs)
            try:  # torch.compile compiles lazily, at the first call
                loss = run(_tensor_inputs(args, kwargs))
            except torch._dynamo.exc.BackendCompilerFailed as e:
                reason = str(e).strip().splitlines()[0]
                raise CompilationError(
                    f"torch.compile could not compile the recorded loss ({reason}); on the CPU it needs a "
                    "working C++ compiler (e.g. apt-get install g++). Train without compile instead"
                ) from None
            self._graphs[key] = run
            return loss
        return run(_tensor_inputs(args, kwargs))
