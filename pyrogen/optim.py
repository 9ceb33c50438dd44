"""Optimisation set-up of VAE training: optimiser, loss reduction, clipping, initialisation, plateau decay.

Whether a remedy for posterior collapse works can depend less on the remedy
than on the optimisation around it. He, Spokoyny, Neubig and
Berg-Kirkpatrick (ICLR 2019, "Lagging inference networks and posterior
collapse in variational autoencoders"; code: ``jxhe/vae-lagging-encoder``,
``text.py``) train their text VAEs with

* every weight drawn from U(−0.01, 0.01) and the embeddings from U(−0.1, 0.1)
  (:func:`uniform_init_`);
* plain SGD (no momentum) at learning rate 1.0, one optimiser for the encoder
  and one for the decoder;
* the loss averaged over the sentences of the batch (``loss.mean()``), so the
  step is that of a *per-example* loss (:class:`PerExampleLoss`); pyrogen's
  ELBOs are summed over the batch, and lr 1.0 on a summed loss is a step B
  times larger;
* the global gradient norm over all parameters clipped at 5 after every
  backward pass, the aggressive inner loop's included (:func:`clip_grad_norm`);
* learning-rate decay on plateau: from epoch 15 (0-based), after 2 epochs in
  which the validation loss did not improve, halve the rate, reload the
  best-validation checkpoint and restart the optimisers, at most 5 times;
  the best-validation checkpoint is the one evaluated (:class:`PlateauDecay`).

Their image experiments (``image.py``, Omniglot) are optimised differently:
Adam at 1e-3 (encoder and decoder each), the per-example mean loss, clipping
at 5 (inner loop too), the networks' own initialisation (He-normal
convolutions, a Xavier-uniform ``nn.Linear(512, 2 * nz)`` *with* a zero bias
mapping to (μ, log σ²)), and the rate halved after 20 epochs in which the
validation loss was above its best, from the first epoch, at most 5 times,
reloading the best checkpoint: ``OptimConfig.from_recipe("he2019-image")``.

:class:`OptimConfig` collects these choices; ``OptimConfig.from_recipe("he2019")``
is the authors' text set-up, ``"he2019-image"`` their image set-up and ``OptimConfig()`` pyrogen's default
(PyTorch initialisation, Adam 1e-3 on the batch-summed loss, no clipping, no decay).
Every object here is a plain Python object with ``state_dict`` /
``load_state_dict`` where it holds state, so a training loop can checkpoint
it and resume bit for bit. Their command-line options (``--recipe``,
``--optimizer``, ...) are defined in :mod:`pyrogen.cli`.
"""

import copy
import dataclasses
import math
from collections import defaultdict

import torch
from torch import nn

OPTIMIZERS = ("adam", "sgd")
REDUCTIONS = ("sum", "mean")
INITS = ("default", "uniform")
RECIPES = ("default", "he2019", "he2019-image")
DECAY_REFERENCES = ("last", "best")


@dataclasses.dataclass
class OptimConfig:
    """How a VAE is optimised. Field names are the config keys (``config["train"][...]``).

    :param str optimizer: ``"adam"`` or ``"sgd"`` (``momentum`` applies to SGD).
    :param float lr: learning rate.
    :param str loss_reduction: ``"sum"`` (the loss is nats per batch, pyrogen's
        default) or ``"mean"`` (nats per example, He et al.'s). Reported metrics
        are nats per example either way.
    :param clip_norm: clip the global gradient norm over all parameters at this
        value after every backward pass (None: no clipping).
    :param str init: ``"default"`` (PyTorch's initialisation) or ``"uniform"``
        (:func:`uniform_init_` with ``init_scale`` and ``embedding_init_scale``).
    :param bool decay: learning-rate decay on plateau (:class:`PlateauDecay`)
        with ``decay_factor``, ``decay_epochs``, ``max_decay``, ``decay_start_epoch``
        and ``decay_reference`` (``"last"``: ``text.py``'s rule, ``"best"``: ``image.py``'s).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    loss_reduction: str = "sum"
    clip_norm: float | None = None
    init: str = "default"
    init_scale: float = 0.01
    embedding_init_scale: float = 0.1
    decay: bool = False
    decay_factor: float = 0.5
    decay_epochs: int = 2
    max_decay: int = 5
    decay_start_epoch: int = 15
    decay_reference: str = "last"

    def __post_init__(self):
        for name, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("loss_reduction", self.loss_reduction, REDUCTIONS),
            ("init", self.init, INITS),
            ("decay_reference", self.decay_reference, DECAY_REFERENCES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm!r}")
        if not 0 < self.decay_factor < 1:
            raise ValueError(f"decay_factor must lie in (0, 1), got {self.decay_factor!r}")
        if self.decay_epochs < 1 or self.max_decay < 1:
            raise ValueError(f"decay_epochs and max_decay must be >= 1, got {self.decay_epochs!r}, {self.max_decay!r}")

    @classmethod
    def from_recipe(cls, recipe="default", **overrides):
        """The settings of ``recipe`` (one of :data:`RECIPES`), with ``overrides`` on top.

        ``"he2019"``: SGD lr 1.0, per-example mean loss, clip 5, uniform init
        (0.01; embeddings 0.1), plateau decay (×0.5 after 2 epochs, ≤ 5 times, from epoch 15):
        their ``text.py``.

        ``"he2019-image"``: Adam lr 1e-3, per-example mean loss, clip 5, the
        networks' own initialisation, plateau decay ×0.5 after 20 epochs above
        the best validation loss (``decay_reference="best"``), ≤ 5 times, from
        epoch 0: their ``image.py``.
        """
        if recipe == "default":
            base = {}
        elif recipe == "he2019":
            base = dict(
                optimizer="sgd",
                lr=1.0,
                momentum=0.0,
                loss_reduction="mean",
                clip_norm=5.0,
                init="uniform",
                init_scale=0.01,
                embedding_init_scale=0.1,
                decay=True,
                decay_factor=0.5,
                decay_epochs=2,
                max_decay=5,
                decay_start_epoch=15,
            )
        elif recipe == "he2019-image":
            base = dict(
                optimizer="adam",
                lr=1e-3,
                momentum=0.0,
                loss_reduction="mean",
                clip_norm=5.0,
                init="default",
                decay=True,
                decay_factor=0.5,
                decay_epochs=20,
                max_decay=5,
                decay_start_epoch=0,
                decay_reference="best",
            )
        else:
            raise ValueError(f"recipe must be one of {list(RECIPES)}, got {recipe!r}")
        merged = {**base, **{k: v for k, v in overrides.items() if v is not None}}
        if merged.get("clip_norm") == 0:  # --clip-norm 0 turns a recipe's clipping off
            merged["clip_norm"] = None
        return cls(**merged)

    def as_dict(self):
        return dataclasses.asdict(self)


# --- initialisation ------------------------------------------------------------------------------


@torch.no_grad()
def uniform_init_(module, scale=0.01, embedding_scale=0.1):
    """Every parameter of ``module`` from U(−scale, scale), then every ``nn.Embedding`` weight from U(−e, e).

    He et al.'s ``uniform_initializer(0.01)`` / ``(0.1)``: biases and LSTM
    weights included. Draws from torch's global generator (seed it first).
    Returns ``module``.
    """
    if not scale > 0 or not embedding_scale > 0:
        raise ValueError(f"scales must be > 0, got {scale!r} and {embedding_scale!r}")
    for p in module.parameters():
        p.uniform_(-scale, scale)
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            m.weight.uniform_(-embedding_scale, embedding_scale)
    return module


def initialize_(module, config):
    """Apply ``config.init`` to ``module`` (``"default"`` leaves PyTorch's initialisation); returns it."""
    if config.init == "uniform":
        uniform_init_(module, config.init_scale, config.embedding_init_scale)
    return module


# --- optimiser, loss reduction, clipping ---------------------------------------------------------


def build_optimizer(params, config=None, *, lr=None, optimizer="adam", momentum=0.0, betas=None, fused=False):
    """A ``torch.optim`` optimiser over ``params``: momentum-``SGD`` or ``Adam``.

    Either as an :class:`OptimConfig` ``config`` says (its ``optimizer``, ``lr``, ``momentum``), or
    by keywords: ``lr``, ``optimizer`` (``"adam"`` or ``"sgd"``), ``momentum`` (SGD's), ``betas``
    (Adam's; None: PyTorch's default) and ``fused`` (Adam's fused kernels, on the CPU and CUDA).
    """
    if config is not None:
        lr, optimizer, momentum = config.lr, config.optimizer, config.momentum
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    options = {} if betas is None else {"betas": tuple(betas)}
    return torch.optim.Adam(params, lr=lr, **options, **({"fused": True} if fused else {}))


class PerExampleLoss:
    """An ELBO whose loss is divided by the number of examples: nats per example instead of per batch.

    Wraps any loss with ``differentiable_loss(model, guide, x, ...)`` summed
    over the batch (pyrogen's ELBOs, :class:`pyro.infer.Trace_ELBO`, ...);
    the batch size is ``x.shape[0]`` of the first argument. The gradient is
    the summed loss's divided by B exactly (up to one rounding), which is what
    ``loss.mean()`` gives He et al.; usable wherever the wrapped loss is
    (``TorchSVI``, ``AggressiveSVI``, ``ELBOModule``). Multiply a step's
    returned loss by B to log nats per batch as before.
    """

    def __init__(self, loss):
        self.loss = loss

    def differentiable_loss(self, model, guide, x, *args, **kwargs):
        return self.loss.differentiable_loss(model, guide, x, *args, **kwargs) / x.shape[0]

    def loss_value(self, model, guide, x, *args, **kwargs):  # pragma: no cover - convenience
        with torch.no_grad():
            return self.differentiable_loss(model, guide, x, *args, **kwargs).item()

    def __getattr__(self, name):  # num_particles etc. of the wrapped ELBO
        if name == "loss":
            raise AttributeError(name)
        return getattr(self.loss, name)

    def __repr__(self):
        return f"PerExampleLoss({self.loss!r})"


def reduce_loss(loss, reduction):
    """``loss`` as is for ``"sum"``, wrapped in :class:`PerExampleLoss` for ``"mean"``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    return PerExampleLoss(loss) if reduction == "mean" else loss


def loss_per_batch(value, batch_size, reduction):
    """A step's returned loss converted to nats per batch (for logging nats per example as before)."""
    return value * batch_size if reduction == "mean" else value


def clip_grad_norm(params, max_norm):
    """Scale the gradients of ``params`` so that their global L2 norm is at most ``max_norm``.

    :func:`torch.nn.utils.clip_grad_norm_` (the call He et al. make after
    every backward); ``max_norm`` None does nothing. Returns the norm before
    clipping (a tensor), or None.
    """
    if max_norm is None:
        return None
    params = [p for p in params if p.grad is not None]
    if not params:
        return None
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def attach_gradient_clipping(optimizers, params, max_norm):
    """Clip the global gradient norm of ``params`` just before every ``step()`` of each optimiser.

    For loops that do ``backward(); optimizer.step()`` inside code that one
    does not want to change (``TorchSVI.step``): a ``register_step_pre_hook``
    on each optimiser. ``params`` should be *all* the model's parameters, as
    in He et al.'s ``clip_grad_norm_(vae.parameters(), 5)``; with two
    optimisers stepping after one backward the second clip finds the norm
    already at most ``max_norm`` and leaves it. Returns the hook handles
    (``handle.remove()`` detaches), or ``[]`` when ``max_norm`` is None.
    """
    if max_norm is None:
        return []
    params = list(params)
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = [optimizers]

    def hook(optimizer, args, kwargs):
        clip_grad_norm(params, max_norm)
        return None

    return [opt.register_step_pre_hook(hook) for opt in optimizers]


def split_validation(data, size, seed=0):
    """``(train, validation)``: ``size`` examples drawn at random (seeded) from ``data`` as validation.

    Decisions taken during training -- leaving aggressive mode, decaying the
    learning rate, choosing the checkpoint to evaluate -- look at this split
    and never at the test set. ``size`` 0 returns ``(data, None)``.
    """
    n = data.shape[0]
    if not 0 <= size < n:
        raise ValueError(f"validation size must lie in [0, {n}), got {size!r}")
    if size == 0:
        return data, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(data.device)
    return data[perm[size:]], data[perm[:size]]


# --- learning-rate decay on plateau --------------------------------------------------------------


class PlateauDecay:
    """He et al.'s learning-rate decay on a validation plateau, with best-checkpoint reload.

    Call :meth:`step` once per epoch, after validation, with the epoch's
    (0-based) index and the validation loss (negative ELBO, nats per
    example; lower is better). It keeps an in-memory copy of the module's
    best-validation state and follows ``text.py`` exactly:

    * a loss below the best so far makes the current state the best checkpoint;
    * a loss above the *reference* counts one epoch without improvement;
      otherwise the count resets and the loss becomes the reference. With
      ``reference="last"`` (``text.py``) the reference is the last loss that
      did not rise, or the loss at the last decay; with ``reference="best"``
      (``image.py``) it is the best loss so far, so the count is the epochs
      since the best one (reset at a decay);
    * after ``patience`` such epochs, once ``epoch >= start_epoch``: multiply
      every optimiser's learning rate by ``factor``, load the best checkpoint
      into the module, clear the optimisers' state (He et al. build new
      optimisers) and count one decay;
    * after ``max_decay`` decays :attr:`finished` is True: stop training.

    :meth:`restore_best` loads the best checkpoint for the final evaluation.

    :param torch.nn.Module module: the model (its ``state_dict`` is the checkpoint).
    :param optimizers: one optimiser or a list (encoder and decoder).
    :param bool decay: False keeps only the best-checkpoint bookkeeping (never
        decays), for recipes that evaluate the best epoch without decaying.
    :param str reference: ``"last"`` or ``"best"`` (:data:`DECAY_REFERENCES`), as above.
    :returns: from :meth:`step`, ``"improved"``, ``"plateau"``, ``"decayed"`` or ``"finished"``.
    """

    def __init__(
        self, module, optimizers, factor=0.5, patience=2, max_decay=5, start_epoch=15, decay=True, reference="last"
    ):
        if reference not in DECAY_REFERENCES:
            raise ValueError(f"reference must be one of {list(DECAY_REFERENCES)}, got {reference!r}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
        if patience < 1 or max_decay < 1:
            raise ValueError(f"patience and max_decay must be >= 1, got {patience!r} and {max_decay!r}")
        self.module = module
        self.optimizers = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)
        self.factor, self.patience, self.max_decay = float(factor), int(patience), int(max_decay)
        self.start_epoch, self.decay, self.reference_rule = int(start_epoch), bool(decay), reference
        self.best_loss = math.inf
        self.best_epoch = None
        self.best_state = None
        self.reference = math.inf
        self.not_improved = 0
        self.decays = 0

    @classmethod
    def from_config(cls, module, optimizers, config):
        return cls(
            module,
            optimizers,
            config.decay_factor,
            config.decay_epochs,
            config.max_decay,
            config.decay_start_epoch,
            decay=config.decay,
            reference=config.decay_reference,
        )

    @property
    def finished(self):
        return self.decays >= self.max_decay

    @property
    def lr_scale(self):
        """The factor applied to the initial learning rates so far."""
        return self.factor**self.decays

    def _snapshot(self):
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def step(self, epoch, loss):
        loss = float(loss)
        result = "plateau"
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.best_state = loss, int(epoch), self._snapshot()
            result = "improved"
        if not self.decay:
            return result
        if self.reference_rule == "best":  # image.py: compared with the best loss, updated just above
            self.reference = self.best_loss
        if loss > self.reference:
            self.not_improved += 1
            if self.not_improved >= self.patience and epoch >= self.start_epoch:
                self.reference, self.not_improved = loss, 0
                self._decay()
                result = "finished" if self.finished else "decayed"
        else:
            self.not_improved, self.reference = 0, loss
        return result

    def _decay(self):
        self.decays += 1
        self.restore_best()
        for opt in self.optimizers:
            opt.state = defaultdict(dict)
            for group in opt.param_groups:
                group["lr"] = group["lr"] * self.factor

    def restore_best(self):
        """Load the best-validation checkpoint into the module (no-op before the first :meth:`step`)."""
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)

    def state_dict(self):
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "reference": self.reference,
            "not_improved": self.not_improved,
            "decays": self.decays,
            "best_state": None if self.best_state is None else copy.deepcopy(self.best_state),
        }

    def load_state_dict(self, state):
        self.best_loss, self.best_epoch, self.reference = state["best_loss"], state["best_epoch"], state["reference"]
        self.not_improved, self.decays = state["not_improved"], state["decays"]
        self.best_state = None if state["best_state"] is None else copy.deepcopy(state["best_state"])
