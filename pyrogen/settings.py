"""Typed, versioned run configurations and the one migration from every earlier ``config.json`` layout.

A run's configuration is stored as JSON (``config.json``, and embedded in every
checkpoint) in the layout of the defaults of :mod:`pyrogen.config`. Code reads
it through :func:`migrate`, which turns any configuration written by any
earlier pyrogen into a :class:`RunConfig`: small frozen dataclasses, one per
section (``model``, ``data``, ``train``, ``eval``, ``discriminator``), complete
(every setting present) and validated when built.

:func:`migrate` is the only place that knows old layouts. Settings added over
time are absent from the configurations of runs made before them; each takes
the value such runs used (:data:`LEGACY_VALUES` and :func:`_legacy_model`),
which is not always today's default: a VAE run made before ``train.compile``
existed ran its step eagerly (``"off"``), before ``vectorize_particles`` drew
its particles one by one, an ALI run made before ``update`` existed updated
the players alternately. So an earlier run directory rebuilds the very run it
was, and resumes bit for bit.

Layouts by ``version``:

* 1 (no ``version`` key): every configuration written before the key existed,
  whichever of the settings above it lacks;
* 2: ``version`` and ``data.source`` (None: the built-in data set) present;
* 3: ``data.source`` is the record of the data the run trained on (:mod:`pyrogen.data.sources`), the
  built-in data set's too when trained through :func:`pyrogen.runs.train`; None marks a run built in
  Python that recorded no source, whose data no command can know (layouts 1 and 2: Fashion-MNIST).
  ``data.stream`` (None: decided by size) where set.
"""

import dataclasses
import math
import types

from pyrogen.errors import DataError
from pyrogen.precision import PRECISIONS

CONFIG_VERSION = 3
"""The layout :mod:`pyrogen.config` writes; :func:`migrate` reads it and every earlier one."""

ELBO_NAMES = ("auto", "trace", "meanfield", "iwae", "tc")
"""What ``train.elbo`` may name (:data:`pyrogen.training.vae.ELBOS` and ``"auto"``)."""

COMPILE_MODES = ("auto", "on", "record", "off")
"""The one vocabulary of ``--compile`` and ``train.compile``, down to :class:`~pyrogen.infer.TorchSVI`'s
``compile``, which takes the same words once the trainer has decided ``"auto"``
(:data:`pyrogen.infer.torch_svi.COMPILE_CHOICES`)."""

AUTO_COMPILE_MIN_STEPS = 20000
"""``--compile auto`` compiles runs of at least this many steps (where a compiler works); shorter runs record.

Recording the step's graph takes 0.1-0.2 s and replays it at about 1.05x the hand-written
step (the eager step: 1.1x). Compiling the recording with inductor brings the step to about
0.98x, 0.58 ms of the 784-400-50 VAE's 4.2 ms at batch 100 on the 2-core CPU (2 threads),
but takes 9.6 s the first time (2.2 s once inductor's on-disk cache holds the graph; several
times longer on a loaded machine): it pays after about 16,600 steps, so runs of 20,000 steps
(33 epochs of Fashion-MNIST at batch 100) and more compile."""

DEFAULT_TRAIN = {
    "epochs": 10, "batch_size": 100, "lr": 1e-3, "elbo": "auto", "num_particles": 1,
    "seed": 0, "log_every": 20,
    # the objective: "auto" (meanfield where every latent pair has a closed-form KL, else trace), "trace",
    # "meanfield", "iwae" (num_particles K, DReG guide gradients with dreg) or "tc" (β-TC-VAE, tc_beta)
    "dreg": False, "tc_beta": 6.0,
    # trace's num_particles > 1 drawn in one vectorized run (False in runs made before this key existed)
    "vectorize_particles": True,
    # optimisation (pyrogen.optim; "he2019" is He et al. 2019's text recipe): "adam" or "sgd", the loss summed
    # ("sum", nats per batch) or averaged ("mean") over the batch, the global gradient norm clipped at clip_norm
    # (None: off), "default" or "uniform" init, and the lr halved after lr_decay_epochs epochs (0: off) without
    # a better validation ELBO, at most max_decay times from decay_start_epoch, reloading the best weights;
    # decay_reference: "last" counts epochs above the last loss that did not rise (text.py), "best" epochs above
    # the best (image.py, "he2019-image"); validation_size training examples are held out for the decay and
    # for the aggressive switch
    "recipe": "default", "optimizer": "adam", "momentum": 0.0, "loss_reduction": "sum", "clip_norm": None,
    "init": "default", "lr_decay_epochs": 0, "max_decay": 5, "decay_start_epoch": 15, "decay_reference": "last",
    "validation_size": 0,
    # KL weight λ on "z" (constant, linear warm-up or cyclical), free bits (nats per dimension),
    # aggressive inference-network training (He et al. 2019); see pyrogen.infer.kl_schedule/aggressive
    "kl_schedule": "constant", "kl_weight": 1.0, "kl_warmup_epochs": 10.0, "kl_start": 0.1,
    "kl_cycles": 4, "free_bits": 0.0, "aggressive": False, "aggressive_patience": 5,
    # run the ELBO's Python every step ("off"), record its graph once and replay it ("record",
    # pyrogen.infer.RecordedLoss), or record and compile it ("on", CompiledLoss); "auto" chooses
    "compile": "auto",
    # the steps' numbers: "32" (float32), "bf16" or "fp16" (autocast; fp16 with a gradient scaler), pyrogen.precision
    "precision": "32",
}  # fmt: skip
DEFAULT_DATA = {
    "dataset": "fashion-mnist",
    "root": None,
    "binarize": "dynamic",
    "train_size": None,
    "test_size": None,
    "source": None,
}
"""``source``: the JSON record of the data (:meth:`pyrogen.data.sources.Source.record`); :func:`pyrogen.runs.train`
fills in the built-in data set's (``dataset``) where it is None. (:class:`DataConfig` also reads ``num_workers``,
the streaming loader's worker processes, and ``stream``, True or False where set, None: decided by size.)"""
DEFAULT_EVAL = {"num_samples": 1000, "batch_size": 100}

DEFAULT_GAN_TRAIN = {
    "epochs": 10, "batch_size": 64, "loss": "nonsaturating", "gp_weight": 10.0, "d_steps": 1,
    "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "ema_decay": 0.0, "seed": 0, "log_every": 20,
    "num_fixed": 64, "divergence_threshold": 1e4, "collapse_threshold": 0.5, "overpower_accuracy": 0.98,
    "min_classes_covered": 8, "precision": "32",
}  # fmt: skip
"""Training settings; ``ema_decay`` 0 turns the generator's moving average off (0.999 is usual);
``min_classes_covered``: the ``class-collapse`` flag's threshold."""
DEFAULT_GAN_DATA = {"dataset": "fashion-mnist", "root": None, "train_size": None, "test_size": None, "source": None}

DEFAULT_ALI_TRAIN = {
    "epochs": 10, "batch_size": 100, "loss": "nonsaturating", "gp_weight": 10.0, "d_steps": 1,
    "lr_g": 1e-4, "lr_d": 1e-4, "betas": [0.5, 0.999], "model_x": "mean", "seed": 0, "log_every": 20,
    "num_fixed": 64, "probe_size": 2000, "divergence_threshold": 1e4, "collapse_threshold": 0.5,
    "overpower_accuracy": 0.98, "min_classes_covered": 8, "precision": "32",
}  # fmt: skip
"""Training settings of ALI / BiGAN runs (``pyrogen train ali``); ``probe_size`` training and test
images feed the linear probe of the codes after every epoch (0 turns it off). Adam at 1e-4 with
betas (0.5, 0.999) for both players and batch 100 are ALI's (Dumoulin et al. 2017; their Blocks
``Adam(learning_rate=1e-4, beta1=0.5)``, whose default ``beta2=0.001`` is Blocks' 1 - 0.999); runs made
before this default was measured (``benchmarks/ali_quality.py``) stored their 2e-4 and keep it.
``min_classes_covered`` is the ``class-collapse`` flag's threshold, as the GAN's (8 in runs made before the key).
:func:`~pyrogen.config.default_ali_config` adds ``"update"`` (``"simultaneous"``, ALI's algorithm, or
``"alternating"``, which runs made before the key existed keep), passed to
:class:`~pyrogen.infer.AdversarialInference`."""

DEFAULT_AAE_TRAIN = {
    "epochs": 10, "batch_size": 100, "lr": 1e-3, "lr_d": 2e-4, "betas": [0.5, 0.999], "loss": "nonsaturating",
    "gp_weight": 10.0, "adversarial_weight": 1.0, "d_steps": 1, "seed": 0, "log_every": 20, "num_fixed": 64,
    "probe_size": 2000, "divergence_threshold": 1e4, "collapse_threshold": 0.5, "overpower_accuracy": 0.98,
    "min_classes_covered": 8, "precision": "32",
}  # fmt: skip
"""Training settings of adversarial-autoencoder runs (``pyrogen train aae``): ``lr`` is the
autoencoder's Adam, ``lr_d`` and ``betas`` the code discriminator's; ``min_classes_covered`` as ALI's."""

LEGACY_VALUES = {
    "vae": {"compile": "off", "vectorize_particles": False},
    "ali": {"update": "alternating", "init_output_bias": False, "probe_size": 0},
    "aae": {"probe_size": 0},
    "gan": {},
}
"""Per training section: the values of settings that runs made before the setting existed used, where
they differ from today's defaults (the rest take the default, which such runs used too)."""

ALI_LEGACY_DISCRIMINATOR = {"architecture": "mlp", "channels": 32, "dropout": 0.0, "slope": 0.2, "init_std": None}
"""The joint discriminator of ALI runs made before these keys existed: an MLP without dropout, slope 0.2."""


def _frozen(value):
    """Lists as tuples and dicts as read-only mappings, recursively (a frozen section holds no mutable value)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return types.MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _plain(value):
    """The JSON-like value of a frozen one: tuples as lists, mappings as dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dict, types.MappingProxyType)):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Section:
    """A frozen section of a run configuration; :meth:`to_dict` gives its JSON layout."""

    name = "section"

    def to_dict(self):
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _frozen(getattr(self, f.name)))
        self.check()

    def check(self):
        """Validate the values (subclasses); raise :class:`~pyrogen.errors.DataError` naming the setting."""

    def _fail(self, key, expected, value):
        raise DataError(f"{self.name}.{key} must be {expected}, got {value!r}")

    def _int(self, key, low):
        value = getattr(self, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self._fail(key, f"an integer >= {low}", value)

    def _number(self, key, ok=lambda v: True, expected="a finite number", optional=False):
        value = getattr(self, key)
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
            self._fail(key, expected, value)


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """What a run trains and is evaluated on (nothing of it changes during the run)."""

    name = "data"
    dataset: str = "fashion-mnist"
    root: object = None
    binarize: object = "none"
    train_size: object = None
    test_size: object = None
    source: object = None
    num_workers: object = None
    stream: object = None

    def to_dict(self):
        out = Section.to_dict(self)
        if self.binarize is None:  # a GAN's data: grey levels, no binarize key
            del out["binarize"]
        for key in ("num_workers", "stream"):  # written only where set
            if out[key] is None:
                del out[key]
        return out

    @property
    def source_record(self):
        """:attr:`source` as the plain JSON dict :mod:`pyrogen.data.sources` reads (None where none)."""
        return _plain(self.source)

    def check(self):
        if not isinstance(self.dataset, str):
            self._fail("dataset", "the name of a data set", self.dataset)
        if self.root is not None and not isinstance(self.root, str):
            self._fail("root", "a folder path or null", self.root)
        if self.binarize not in ("dynamic", "static", "none", None):
            self._fail("binarize", "'dynamic', 'static' or 'none'", self.binarize)
        for key in ("train_size", "test_size"):
            if getattr(self, key) is not None:
                self._int(key, 1)
        if self.stream not in (None, True, False):
            self._fail("stream", "true, false or null (decided by size)", self.stream)
        if self.source is not None and not (
            isinstance(self.source, (dict, types.MappingProxyType)) and "kind" in self.source
        ):
            self._fail("source", "null or the record of a data source (a JSON object with a 'kind')", self.source)


@dataclasses.dataclass(frozen=True)
class EvalConfig(Section):
    """The evaluation at the end of training: ``num_samples`` importance samples K (0: none), in batches."""

    name = "eval"
    num_samples: int = 1000
    batch_size: int = 100

    def check(self):
        self._int("num_samples", 0)
        self._int("batch_size", 1)


@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
    """The model's own constructor arguments (what ``model.config`` returned when the run was made)."""

    name = "model"
    args: object = dataclasses.field(default_factory=dict)

    def to_dict(self):
        return _plain(self.args)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig(ModelConfig):
    """The discriminator's settings of an adversarial run (widths, architecture, normalisation, ...)."""

    name = "discriminator"


class TrainSection(Section):
    """Training settings common to every kind: positive epochs and batch size, a seed, finite rates."""

    name = "train"

    def check(self):
        self._int("epochs", 1)
        self._int("batch_size", 1)
        self._int("seed", 0)
        for key in (
            "lr",
            "lr_g",
            "lr_d",
            "gp_weight",
            "tc_beta",
            "kl_weight",
            "free_bits",
            "adversarial_weight",
            "ema_decay",
            "momentum",
            "clip_norm",
        ):
            if hasattr(self, key):
                self._number(key, optional=key in ("clip_norm", "lr"))
        if hasattr(self, "precision") and self.precision not in PRECISIONS:
            self._fail("precision", f"one of {list(PRECISIONS)}", self.precision)


def _train_section(name, defaults, legacy, extra=()):
    """A frozen dataclass of a kind's training settings: one field per key of ``defaults`` (and ``extra``)."""
    values = {**defaults, **dict(extra)}
    fields = [
        (k, type(v) if v is not None else object, dataclasses.field(default=_frozen(v))) for k, v in values.items()
    ]
    cls = dataclasses.make_dataclass(name, fields, bases=(TrainSection,), frozen=True)
    cls.__doc__ = f"Training settings ({', '.join(values)}); settings a run lacks take {legacy or 'the defaults'}."
    cls.__module__ = __name__
    return cls


VAETrainConfig = _train_section("VAETrainConfig", DEFAULT_TRAIN, LEGACY_VALUES["vae"])
GANTrainConfig = _train_section("GANTrainConfig", DEFAULT_GAN_TRAIN, None)
ALITrainConfig = _train_section(
    "ALITrainConfig",
    DEFAULT_ALI_TRAIN,
    LEGACY_VALUES["ali"],
    extra={"update": "simultaneous", "init_output_bias": False},
)
AAETrainConfig = _train_section("AAETrainConfig", DEFAULT_AAE_TRAIN, LEGACY_VALUES["aae"])

TRAIN_LAYOUT = {"vae": "vae", "ae": "vae", "cvae": "vae", "gan": "gan", "ali": "ali", "aae": "aae"}
"""Each configured kind's training layout (the autoencoder and the conditional VAE share the VAE's)."""

TRAIN_SECTIONS = {
    "vae": VAETrainConfig,
    "ae": VAETrainConfig,
    "cvae": VAETrainConfig,
    "gan": GANTrainConfig,
    "ali": ALITrainConfig,
    "aae": AAETrainConfig,
}
"""Each configured kind's training section (the feature network has none: its recipe is fixed)."""


def _vae_train_check(self):
    TrainSection.check(self)
    self._int("num_particles", 1)
    if self.compile not in COMPILE_MODES and not isinstance(self.compile, bool):
        self._fail("compile", f"one of {COMPILE_MODES} (or a boolean)", self.compile)


VAETrainConfig.check = _vae_train_check


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A complete, validated run configuration (see :func:`migrate`).

    :ivar str kind: the run kind (:mod:`pyrogen.kinds`).
    :ivar int version: the layout it was read from (:data:`CONFIG_VERSION` once written again).
    """

    kind: str
    model: ModelConfig
    data: DataConfig
    train: Section
    eval: object = None
    discriminator: object = None
    version: int = CONFIG_VERSION

    def to_dict(self):
        """The configuration in today's layout: what ``config.json`` of a new run with these settings holds."""
        out = {"version": CONFIG_VERSION, "kind": self.kind, "model": self.model.to_dict()}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator.to_dict()
        out["data"] = self.data.to_dict()
        out["train"] = self.train.to_dict()
        if self.eval is not None:
            out["eval"] = self.eval.to_dict()
        return out


@dataclasses.dataclass(frozen=True)
class LoopTrainConfig(Section):
    """What :class:`~pyrogen.training.loop.FitLoop` reads of the ``train`` section of a configuration of a
    loop alone (a user's own estimator, ``{"train": {"epochs": 2, "log_every": 20}}``), not a run's.

    ``epochs`` and ``log_every`` are None where absent (the loop says so when it needs them: ``epochs``
    may be given to :meth:`~pyrogen.training.loop.FitLoop.fit` instead); ``seed`` (the ranks' noise under
    ``torchrun``) is 0 and ``precision`` ``"32"`` where absent. Not validated here: the loop checks them.
    """

    name = "train"
    epochs: object = None
    log_every: object = None
    seed: object = 0
    precision: object = "32"

    def check(self):
        """Nothing: the loop refuses a missing or bad ``epochs`` or ``log_every`` when it reads them."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The settings of a configuration of a loop alone (:func:`loop_settings`): its :attr:`train` section."""

    train: LoopTrainConfig = LoopTrainConfig()


def loop_settings(config):
    """The :class:`LoopConfig` of ``config``, a fit loop's configuration that is no run's (any object; only a
    dict's ``train`` dict is read), frozen; a :class:`RunConfig` is returned as it is."""
    if isinstance(config, RunConfig):
        return config
    train = config.get("train") if isinstance(config, dict) else None
    return LoopConfig(LoopTrainConfig(**_known(LoopTrainConfig, train if isinstance(train, dict) else {})))


def written_section(config, key):
    """Section ``key`` of a configuration dict of any layout as it is written, unvalidated: an empty dict where
    it is absent or no JSON object. For views of a ``config.json`` as it stands, hand-edited or not (the
    report); running code reads :func:`migrate`'s complete sections."""
    value = config.get(key) if isinstance(config, dict) else None
    return value if isinstance(value, dict) else {}


def lacking_sections(config, keys=("model", "data", "train")):
    """Those of the sections ``keys`` that a configuration dict lacks or holds as no JSON object, in order."""
    return [k for k in keys if not isinstance(config.get(k), dict)]


def _legacy_vae_pair(model):
    """A VAE pair's model section with the settings runs made before them used: a normal guide's
    log-scale head, the VampPrior's sigmoid pseudo-inputs, the IAF's context and gated step."""
    model = dict(model)
    if "model" in model:  # another model of the kind (the two-layer VAE): its own keys
        return model
    if model.get("posterior", "normal") == "normal" and "scale_head" not in model:
        model["scale_head"] = "log-scale"  # σ = exp(a)
    if str(model.get("prior", "")).startswith("vamp:") and "pseudo_inputs" not in model:
        model["pseudo_inputs"] = "sigmoid"
    if str(model.get("flow", "")).startswith("iaf:"):
        model = {"iaf_context": True, "iaf_step": "gated", **model}
    return model


def _legacy_generator(model):
    """A GAN generator's model section: the conditional generator's feature-normalised projection."""
    return {**model, "projection_norm": model.get("projection_norm", "feature")}


LEGACY_MODEL = {
    "vae": _legacy_vae_pair,
    "ae": _legacy_vae_pair,
    "ali": _legacy_vae_pair,
    "aae": _legacy_vae_pair,
    "gan": _legacy_generator,
    "cvae": dict,
}
"""Per kind: the model section of an earlier layout with the settings its runs used filled in."""

LEGACY_DISCRIMINATOR = {"ali": ALI_LEGACY_DISCRIMINATOR}
"""Per kind: the discriminator settings of runs made before the keys existed."""

UNBINARIZED_KINDS = {"gan": "GANs train on grey levels and their data section has no binarize"}
"""Kinds whose data section has no ``binarize`` (:attr:`DataConfig.binarize` None)."""


def _section_dict(config, key, what):
    value = config.get(key, {})
    if not isinstance(value, dict):
        raise DataError(f"the configuration's {key!r} must be a JSON object ({what}), got {value!r}"[:300])
    return value


def migrate_data(data, binarize="none"):
    """The :class:`DataConfig` of a ``data`` section of any layout (``binarize`` where it has none: a GAN's);
    a :class:`DataConfig` is returned as it is."""
    if isinstance(data, DataConfig):
        return data
    data = dict(data)
    return DataConfig(**{**{**DEFAULT_DATA, "binarize": binarize}, **_known(DataConfig, data)})


def _known(cls, values):
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def kind_of(config):
    """The run kind of a configuration dict of any layout (``"vae"`` in runs made before the key), without
    validating the rest (:func:`migrate` does)."""
    return config.get("kind", "vae") if isinstance(config, dict) else None


def migrate(config):
    """The current typed configuration (:class:`RunConfig`) of a configuration dict of any layout.

    The one place that knows earlier layouts (see the module's docstring): absent settings take the
    values runs made before them used; the result is complete and validated. ``config`` is not changed;
    a :class:`RunConfig` (migrated already) is returned as it is.

    :raises DataError: for a configuration that is no JSON object, of a layout newer than
        :data:`CONFIG_VERSION`, or with a setting out of its range (the message names it).
    """
    if isinstance(config, RunConfig):  # migrated already
        return config
    if not isinstance(config, dict):
        raise DataError(f"a run configuration must be a JSON object, got {type(config).__name__}")
    version = config.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
        raise DataError(
            f"the configuration's version must be an integer from 1 to {CONFIG_VERSION} (this "
            f"pyrogen's), got {version!r}: it was written by a newer pyrogen"
        )
    kind = kind_of(config)
    if kind not in TRAIN_SECTIONS:
        raise DataError(f"the configuration's kind must be one of {sorted(TRAIN_SECTIONS)}, got {kind!r}")
    model = _section_dict(config, "model", "the model's settings")
    train = _section_dict(config, "train", "the training settings")
    data = _section_dict(config, "data", "the data settings")
    cls = TRAIN_SECTIONS[kind]
    legacy = LEGACY_VALUES[TRAIN_LAYOUT[kind]]
    defaults = {f.name: _plain(f.default) for f in dataclasses.fields(cls)}
    train = cls(**{**defaults, **legacy, **_known(cls, train)})
    evaluation = None
    if "eval" in config or TRAIN_SECTIONS[kind] is VAETrainConfig:  # the VAE family always has one
        given = _section_dict(config, "eval", "the evaluation settings")
        evaluation = EvalConfig(**{**DEFAULT_EVAL, **_known(EvalConfig, given)})
    discriminator = None
    if "discriminator" in config:
        d = _section_dict(config, "discriminator", "the discriminator's settings")
        discriminator = DiscriminatorConfig({**LEGACY_DISCRIMINATOR.get(kind, {}), **d})
    binarize = None if kind in UNBINARIZED_KINDS else data.get("binarize", "none")
    return RunConfig(
        kind=kind,
        model=ModelConfig(LEGACY_MODEL[kind](model)),
        data=migrate_data(data, binarize),
        train=train,
        eval=evaluation,
        discriminator=discriminator,
        version=version,
    )


def compile_mode(value):
    """``train.compile`` as one of :data:`COMPILE_MODES`; the booleans of older runs' configs mean on and off."""
    if value is True or value is False or value is None:
        return "on" if value else "off"
    if value not in COMPILE_MODES:
        raise DataError(f"train.compile must be one of {COMPILE_MODES} (or a boolean), got {value!r}")
    return value
