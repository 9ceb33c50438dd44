"""The record of a run kind (:class:`RunKind`): everything pyrogen knows about one kind, in one place."""

import dataclasses
import importlib
from collections.abc import Callable


def lazy(target):
    """``"module:name"`` imported on first call, so that a kind's record does not import its trainer
    (and the training stack) until a run of that kind is built."""
    module, name = target.split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = name
    call.target = target
    return call


@dataclasses.dataclass(frozen=True)
class RunKind:
    """One kind of run (``pyrogen train COMMAND``), declared as data.

    :ivar str name: the kind as ``config.json`` names it.
    :ivar str command: the ``pyrogen train`` sub-command that makes it (the conditional VAE,
        kind ``"cvae"``, is ``train vae --conditional``).
    :ivar str help: the sub-command's one-line help; ``description`` its longer text.
    :ivar default_config: ``(**settings) -> dict``, the kind's default configuration.
    :ivar trainer: the trainer class, as ``"module:Class"``.
    :ivar build: ``(config, run=None, device="auto", progress=True) -> trainer``, freshly seeded.
    :ivar model: ``(config) -> nn.Module``, the untrained model :meth:`pyrogen.runs.Run.model` loads.
    :ivar weights: ``(checkpoint, use_ema) -> key`` of the model's weights in a checkpoint.
    :ivar str data: what :func:`pyrogen.runs.load_run_data` gives the kind: ``"binarized"``
        (train, test binarized as configured, test labels) or ``"grey"`` (train, test in [0, 1]).
    :ivar add_options: ``(parser)``, the sub-command's options (None: the kind has no sub-command).
    :ivar make_config: ``(args) -> dict``, a new run's configuration from the parsed options.
    :ivar variant: ``(args) -> name`` of the kind the options make (``--conditional`` makes a cvae).
    :ivar finish: ``(trainer, echo)``, the kind's steps after training (pictures, evaluation, lines).
    :ivar bool has_density: its model has a likelihood p(x) (an ELBO, a log p(x) or an objective).
    :ivar bool can_sample: its model draws samples (``pyrogen sample``, ``sample-quality``).
    :ivar bool conditional: its model takes class labels.
    :ivar bool adversarial: trained against a discriminator.
    :ivar bool vae_pair: its model is an unconditional VAE pair (encoder and decoder, a guide with a
        density): ``pyrogen plot`` draws its reconstructions, traversals, interpolations and codes.
    :ivar evaluate: what ``pyrogen evaluate`` reports: ``"log_px"`` (test ELBO, log p(x), PSIS),
        ``"objective"`` (an autoencoder's test objective), or None (it refuses, saying ``evaluate_refusal``).
    :ivar fits_codes: see below; ``note_on_extending`` too.
    :ivar str resume_advice: the line for ``--resume`` of a run that cannot be resumed (None: it can).
    """

    name: str
    command: str
    help: str = ""
    description: str = ""
    default_config: Callable | None = None
    trainer: str | None = None
    build: Callable | None = None
    model: Callable | None = None
    weights: Callable = lambda checkpoint, use_ema: "model"
    data: str = "binarized"
    add_options: Callable | None = None
    make_config: Callable | None = None
    variant: Callable | None = None
    finish: Callable | None = None
    has_density: bool = True
    can_sample: bool = True
    conditional: bool = False
    adversarial: bool = False
    vae_pair: bool = True
    evaluate: str | None = "log_px"
    evaluate_refusal: str = ""
    resume_advice: str | None = None
    fits_codes: bool = False
    """``sample --sampler gmm:K`` fits a mixture to its codes (a VAE's or an autoencoder's)."""
    note_on_extending: Callable | None = None
    """``(settings, epochs) -> line or None``: what resuming beyond the run's ``epochs`` does differently."""
    usage: str = ""
    """How ``pyrogen train`` names the kind (default: :attr:`command`; ``"vae --conditional"`` for the cvae)."""
    defaults_like: Callable | None = None
    """``(config) -> dict``: what ``pyrogen train`` without options writes for a run like ``config``
    (default: :attr:`default_config` with no arguments)."""
    standalone: Callable | None = None
    """``(args, progress)``: ``pyrogen train`` of a kind that makes no run directory (the feature network)."""
    configured: bool = True
    """False for the feature network's cache: no ``config.json``, a manifest instead."""

    def __post_init__(self):
        if not self.usage:
            object.__setattr__(self, "usage", self.command)
        if self.defaults_like is None and self.default_config is not None:
            object.__setattr__(self, "defaults_like", lambda config: self.default_config())

    def trainer_class(self):
        """The trainer class (imported now)."""
        module, name = self.trainer.split(":")
        return getattr(importlib.import_module(module), name)
