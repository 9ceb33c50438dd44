"""Run directories opened: the one place that turns a run directory back into a model, its data, a trainer.

:func:`open_run` opens a directory made by ``pyrogen train`` and returns a
:class:`Run`: its ``kind`` (and :attr:`Run.record`, the kind's
:class:`~pyrogen.kinds.base.RunKind`), its ``config`` (``config.json``) and
:attr:`Run.settings` (the same, typed and complete, :func:`~pyrogen.settings.migrate`),
its last ``checkpoint`` (loaded once, on first use, and checked against
``config.json``) and :meth:`Run.model`, the trained model rebuilt from both.
:func:`build_trainer` and :func:`resume_trainer` are the one generic build and
resume of every kind; :func:`read_splits` is the one place a run's data is read;
:func:`start_run` is the one way a new run directory is created.

The commands on top (train, resume, evaluate, sample, ...) are :mod:`pyrogen.runs`, which
re-exports everything here; trainers, evaluation and plotting, below it, import from here.
The files themselves (atomic writes, checkpoints loaded with ``weights_only=True``,
:class:`~pyrogen.files.RunDir`) live in the lower :mod:`pyrogen.files`.
"""

import json
import os

import torch

from pyrogen import distributed
from pyrogen.data import load_splits, static_binarize
from pyrogen.data.loaders import is_reader
from pyrogen.data.sources import fashion_mnist_record, reopen, source_splits
from pyrogen.errors import CheckpointError, DataError, PyrogenError, RunDirError
from pyrogen.files import (  # noqa: F401  (re-exported: pyrogen.runs is where users find run files)
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    METRICS_FILE,
    RunDir,
    atomic_write,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pyrogen.kinds import get_kind
from pyrogen.models.features import FashionMNISTClassifier, default_paths, load_network, read_manifest
from pyrogen.random_streams import stream_seed
from pyrogen.settings import kind_of, migrate, migrate_data, written_section

RESUMABLE_KEYS = (("train", "epochs"),)
"""Settings that ``--resume`` may change after ``config.json`` was written (the new total of epochs),
so a checkpoint that differs from ``config.json`` only there still belongs to the run."""

FEATURES = "features"
"""The kind of the feature network's cache directory (no ``config.json``, a manifest)."""


def resolve_device(device):
    """``"auto"`` is CUDA where there is a GPU, else the CPU; anything else a torch device that exists here.

    :raises DataError: (one line) for a name torch does not know, or a CUDA device this machine lacks.
    """
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DataError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (a torch device), got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device {str(device)!r} needs a CUDA GPU, and torch finds none here; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DataError(
            f"device {str(device)!r} does not exist: torch finds {torch.cuda.device_count()} CUDA "
            "device(s), numbered from 0"
        )
    if device.type == "cuda" and device.index is None and distributed.world_size() > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


# ------------------------------------------------------------------------------------------------- data


BUILT_IN_KINDS = ("fashion-mnist", "built-in")
"""Source records of the built-in data sets, read from ``data.dataset`` and ``data.root`` as ever."""


def read_splits(data_config, device=None, stream_ok=False):
    """The training and test :class:`~pyrogen.data.ImageDataset` of a run's ``data`` section (any layout): the
    one place a run's data is read, for every kind.

    ``data.source`` None or the built-in data set's record: the data set ``dataset`` (Fashion-MNIST) from
    ``root``; else the recorded source, re-opened exactly (:func:`pyrogen.data.sources.reopen`: refused
    in one line where missing or changed). With ``stream_ok`` (the VAE family's loaders) the training
    set may be a streaming reader, as ``data.stream`` says or, where None, by its size on ``device``.
    """
    data = migrate_data(data_config) if isinstance(data_config, dict) else data_config
    if data.source is None or data.source.get("kind") in BUILT_IN_KINDS:
        if data.stream:
            raise DataError("Fashion-MNIST fits in memory; --stream applies to --data sources (.npy, folders)")
        return load_splits(data.dataset, data.root, data.train_size, data.test_size)
    if data.stream and not stream_ok:
        raise DataError("a streamed data set trains 'pyrogen train vae' and 'ae'; drop --stream for this kind")
    return source_splits(
        data.source_record,
        stream=data.stream if stream_ok else False,
        device=device,
        train_size=data.train_size,
        test_size=data.test_size,
    )


def _on(dataset, device):
    """The examples of a split on ``device`` (a streaming reader as it is) and its labels (or None)."""
    x = dataset if is_reader(dataset) else dataset.images.to(device)
    return x, None if dataset.labels is None else dataset.labels.to(device)


def _binarized_test(images, data_config):
    """The test images binarized once, with the fixed seed of the test stream, when the run binarizes."""
    data = migrate_data(data_config) if isinstance(data_config, dict) else data_config
    if data.binarize in ("dynamic", "static"):
        return static_binarize(images, seed=stream_seed("test_binarization"))
    return images


def load_data(data_config, device):
    """Train and test images and test labels of a VAE-family run on ``device``, binarized as configured.

    Dynamic binarization happens in the loader; the test set is binarized once with a fixed seed
    (the ``"test_binarization"`` stream), so every evaluation scores the same binary images.
    """
    train, test = read_splits(data_config, device, stream_ok=True)
    (train_x, _), (test_x, test_y) = _on(train, device), _on(test, device)
    return train_x, _binarized_test(test_x, data_config), test_y


def load_gan_data(data_config, device):
    """Training and test images in [0, 1] (grey levels, no binarization) on ``device``."""
    train, test = read_splits(data_config, device)
    return train.images.to(device), test.images.to(device)


def load_labelled_data(data_config, device):
    """``(train, train_labels, test, test_labels)`` of a run on ``device``; the test images are
    binarized once with a fixed seed when the configuration binarizes (as :func:`load_data`)."""
    train, test = read_splits(data_config, device)
    labels = [None if s.labels is None else s.labels.to(device) for s in (train, test)]
    return train.images.to(device), labels[0], _binarized_test(test.images.to(device), data_config), labels[1]


DATA_LOADERS = {"binarized": load_data, "grey": load_gan_data}
"""What :attr:`RunKind.data <pyrogen.kinds.base.RunKind.data>` names: the loader of the kind's data."""


def load_run_data(kind, data_config, device):
    """The data of a run of ``kind`` (a :class:`~pyrogen.kinds.base.RunKind`) on ``device``."""
    return DATA_LOADERS[kind.data](data_config, device)


# -------------------------------------------------------------------------------------------- open a run


def with_source(config):
    """``config`` with its data source recorded: where ``data.source`` is None, the built-in data set's
    record (Fashion-MNIST's, or ``{"kind": "built-in", "dataset": ...}`` for a torchvision one), which is
    what :func:`read_splits` reads for it."""
    data = migrate(config).data
    if data.source is not None:
        return config
    record = (
        fashion_mnist_record(data.root)
        if data.dataset == "fashion-mnist"
        else {"format": 1, "kind": "built-in", "dataset": data.dataset, "path": data.root}
    )
    return {**config, "data": {**written_section(config, "data"), "source": record}}


def _comparable(config):
    config = migrate(json.loads(json.dumps(config))).to_dict()  # any layout, tuples and lists alike
    source = config["data"]["source"]  # to_dict's data section holds every setting
    if source is not None and source["kind"] in BUILT_IN_KINDS:  # recorded or not, the built-in data set
        config["data"]["source"] = None
    for section, key in RESUMABLE_KEYS:
        config[section].pop(key, None)
    return config


class Run:
    """An opened run directory (see :func:`open_run`).

    :ivar RunDir dir: its files.
    :ivar str kind: ``"vae"``, ``"ae"``, ``"cvae"``, ``"gan"``, ``"ali"``, ``"aae"`` (a VAE pair trained
        adversarially: :meth:`model` is the VAE), or ``"features"`` for the cache
        directory of the sample-quality feature network (``pyrogen train features``).
    :ivar dict config: ``config.json``; for the feature network, its manifest
        (recipe, test accuracy, SHA-256), read after checking the weights' hash.
    :ivar torch.device device: where :meth:`model` and :meth:`data` put tensors.
    """

    def __init__(self, path, device="auto"):
        self.device = resolve_device(device)
        self._checkpoint = None
        self._feature_files = default_paths(path)
        if not os.path.isfile(RunDir(path).file(CONFIG_FILE)) and os.path.isfile(self._feature_files[1]):
            self.dir, self.kind = RunDir(path), FEATURES
            self.config = read_manifest(self._feature_files[1], self._feature_files[0])
            return
        self.dir = RunDir.open(path)
        self.config = self.dir.config
        self.kind = kind_of(self.config)  # the rest is validated where it is used (settings)

    @property
    def path(self):
        return self.dir.path

    @property
    def record(self):
        """The run's kind: its :class:`~pyrogen.kinds.base.RunKind` (capabilities, model, data, ...)."""
        return get_kind(self.kind)

    @property
    def settings(self):
        """``config.json`` as a complete, typed :class:`~pyrogen.settings.RunConfig`.

        :raises DataError: for a configuration :func:`~pyrogen.settings.migrate` refuses (the message
            names ``config.json`` and the setting).
        """
        try:
            return migrate(self.config)
        except DataError as e:
            where = self.dir.file(CONFIG_FILE)
            raise DataError(str(e) if repr(where) in str(e) else f"{where!r}: {e}") from None

    @property
    def checkpoint(self):
        """The last checkpoint (loaded on first use onto :attr:`device`).

        :raises CheckpointError: if it is missing or corrupt, or its embedded
            configuration differs from ``config.json`` (the message names both files).
        """
        if self._checkpoint is None and not self.record.configured:
            self._checkpoint = {"config": self.config, "model": self._feature_network().state_dict()}
        if self._checkpoint is None:
            state = self.dir.load_checkpoint(map_location=self.device)
            own = _comparable(self.settings.to_dict())  # config.json's own fault named before any comparison
            try:
                same = _comparable(state.get("config")) == own
            except DataError:
                same = False
            if not same:
                raise CheckpointError(
                    f"the checkpoint {self.dir.checkpoint_path!r} was written with another configuration than "
                    f"{self.dir.file(CONFIG_FILE)!r}: the two files belong to different runs"
                )
            self._checkpoint = state
        return self._checkpoint

    def model(self, use_ema=True):
        """The trained model in eval mode on :attr:`device`: the VAE or autoencoder, or a GAN's generator
        (with its moving-average weights when the run kept them and ``use_ema``), or the feature network."""
        if not self.record.configured:
            return self._feature_network().to(self.device).eval()
        state = self.checkpoint
        weights_key = self.record.weights(state, use_ema)
        if weights_key not in state:  # e.g. a GAN's checkpoint in a VAE's run
            raise CheckpointError(
                f"the checkpoint {self.dir.checkpoint_path!r} holds no {weights_key!r} weights, "
                f"which a {self.kind} run's checkpoint has"
            )
        try:
            model = self.record.model(state["config"]).to(self.device)
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # a configuration edited by hand
            if isinstance(e, PyrogenError):
                raise
            what = (str(e).splitlines() or [""])[0][:600] or type(e).__name__
            raise CheckpointError(
                f"the configuration in {self.dir.checkpoint_path!r} cannot build the run's model "
                f"({what}); expected the configuration that 'pyrogen train' wrote"
            ) from None
        try:
            model.load_state_dict(state[weights_key])
        except RuntimeError as e:  # missing keys or tensors of other sizes than the configuration makes
            raise CheckpointError(
                f"the checkpoint {self.dir.checkpoint_path!r} does not fit its configuration: "
                f"{' '.join(str(e).split())[:300]}"
            ) from None
        return model.eval()

    def _feature_network(self):
        network = FashionMNISTClassifier()
        load_network(network, *self._feature_files)  # the weights' hash checked against the manifest
        return network

    def data(self):
        """The run's data on :attr:`device`: ``(train, test, test_labels)`` for the VAE family,
        binarized as configured; ``(train, test)`` grey levels for a GAN and the feature network.

        :raises DataError: for a run built in Python that recorded no data source, and where the recorded
            source is missing or changed (:func:`pyrogen.data.sources.reopen`)."""
        if not self.record.configured:
            return load_run_data(self.record, migrate_data({}), self.device)
        self.require_source()
        return load_run_data(self.record, self.settings.data, self.device)

    @property
    def source(self):
        """The record of the data the run trained on (:mod:`pyrogen.data.sources`); None for the built-in
        data set of a run made before sources were recorded, and for a run built in Python without one."""
        return self.settings.data.source_record if self.record.configured else None

    def require_source(self):
        """Refuse, in one line, a run that records no data source although its layout records one: a run
        whose trainer was given data in Python (not read by :func:`build_trainer` from its configuration)
        without ``config["data"]["source"]``, whose data no command can know."""
        if not self.record.configured or self.settings.version < 3 or self.settings.data.source is not None:
            return
        if self.dir.never_finished_an_epoch():  # no checkpoint: resuming builds it from its configuration
            return
        if migrate(self.checkpoint["config"]).data.source is None:  # build_trainer records the data it reads
            raise DataError(
                f"the run in {self.path!r} records no data source (built in Python without "
                "config['data']['source']), so no command can know its data; record them with "
                "config['data']['source'] = pyrogen.data.sources.open_source(PATH).record() "
                "(or fashion_mnist_record() for the built-in data set)"
            )

    def check_source(self):
        """:meth:`require_source`, then re-open the recorded source (refused in one line where missing or
        changed; ``--data NEW_PATH``, :func:`pyrogen.data.sources.relocated`, points at a moved copy)."""
        self.require_source()
        source = self.source
        if source is not None and source.get("kind") not in BUILT_IN_KINDS:
            reopen(source)

    def require(self, capability, what):
        """Refuse, in one line, a command the run's kind cannot serve (``capability``: a
        :class:`~pyrogen.kinds.base.RunKind` flag such as ``"can_sample"``); ``what`` the command."""
        if not self.record.configured:
            from pyrogen.kinds.features import NOT_A_MODEL

            raise RunDirError(NOT_A_MODEL.format(run=self.path, what=what))
        if not getattr(self.record, capability):
            raise RunDirError(
                f"{what} needs a run whose model {capability.replace('_', ' ')}, "
                f"and {self.path!r} holds a {self.kind} run"
            )


def open_run(path, device="auto"):
    """Open the run in directory ``path`` (see :class:`Run`): a training run, or the feature network's cache.

    :raises RunDirError: if ``path`` holds no run (no ``config.json``, and no feature network manifest).
    :raises FeatureNetworkError: if a feature network's weights do not match their manifest.
    """
    return Run(path, device)


def start_run(out, config, build):
    """A new run in directory ``out``: the trainer that ``build()`` returns, with its run directory.

    An occupied ``out`` is refused on every rank before any work; the trainer is
    built (and so everything validated) before the directory is created, which
    rank 0 alone does, so a bad option leaves nothing on disk. ``config.json``, the mark
    of a run, is written with the first checkpoint: a run that fails in its first epoch
    (interrupted, diverged, not compiled) leaves no run, and ``out`` can be used again.
    """
    if RunDir(out).holds_run():
        RunDir.create(out, config)  # raises: the directory holds a run
    trainer = build()
    if distributed.is_main_process():
        trainer.run = RunDir.create(out, config, defer_config=True)  # config.json comes with the first checkpoint
    return trainer


def load_model(run_dir, device="auto"):
    """The model of a VAE-family run, with the weights of its last checkpoint, in eval mode."""
    return open_run(run_dir, device).model()


def load_generator(run_dir, device="auto", use_ema=True):
    """The generator of a GAN run with its last checkpoint's weights (the EMA ones if kept), in eval mode."""
    return open_run(run_dir, device).model(use_ema=use_ema)


# ------------------------------------------------------------------------------------ build and resume


def build_trainer(config, run=None, device="auto", progress=True):
    """The trainer of a new run of ``config`` (any kind, any layout), freshly seeded: the one generic build."""
    # the trainer's configuration (and so its checkpoints) records the data it reads (with_source)
    return get_kind(migrate(config).kind).build(with_source(config), run=run, device=device, progress=progress)


def resume_trainer(run_dir, device="auto", progress=True, epochs=None, build=None, **options):
    """A run's trainer rebuilt from its last checkpoint, exactly as it stopped: the one generic resume.

    The trainer is built by ``build(config, run=..., device=..., progress=..., **options)`` from the
    checkpointed configuration, then the checkpoint's state is loaded: it continues the run bit for bit.

    :param epochs: the run's total of epochs the trainer is built for (default: the checkpoint's).
    :param build: the trainer builder (default: the run kind's, :attr:`~pyrogen.kinds.base.RunKind.build`),
        such as :func:`~pyrogen.training.gan.build_gan_trainer`.
    :param options: passed to ``build``, e.g. ``data=`` for the builders that take their data in memory.
    """
    run = open_run(run_dir, device)
    config = run.checkpoint["config"]
    if epochs is not None:
        config = {**config, "train": {**config["train"], "epochs": epochs}}
    build = run.record.build if build is None else build
    trainer = build(config, run=run.dir, device=device, progress=progress, **options)
    trainer.load_state_dict(run.checkpoint)
    return trainer


def load_trainer(run_dir, device="auto", progress=True, epochs=None):
    """:func:`resume_trainer`, with a checkpoint whose contents do not fit its run as one line."""
    try:
        return resume_trainer(run_dir, device=device, progress=progress, epochs=epochs)
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
        if isinstance(e, PyrogenError):
            raise
        what = " ".join(str(e).split())[:300] or repr(e)
        raise CheckpointError(
            f"the checkpoint {RunDir(run_dir).checkpoint_path!r} does not fit the run it is in "
            f"({type(e).__name__}: {what})"
        ) from None
