"""Opening a run: the one place that turns a run directory back into a model, its data and a device.

:func:`open_run` opens a directory made by ``pyrogen train vae|ae|gan|features`` and
returns a :class:`Run`: its ``kind``, its ``config`` (``config.json``), its last
``checkpoint`` (loaded once, on first use, and checked against ``config.json``)
and :meth:`Run.model`, the trained model rebuilt from both. Evaluation,
plotting, the report and the ``sample``/``sample-quality`` commands open runs
through it; the trainers in :mod:`pyrogen.training` rebuild theirs from the
same :func:`resolve_device`, :func:`load_data` and :func:`load_gan_data`.
:func:`start_run` is the one way a new run directory is created.

The files themselves (atomic writes, checkpoints loaded with
``weights_only=True``, :class:`~pyrogen.files.RunDir`) live in the lower
:mod:`pyrogen.files`; their names are re-exported here.
"""

import json
import os

import torch

from pyrogen import distributed
from pyrogen.data import load_splits, static_binarize
from pyrogen.errors import CheckpointError
from pyrogen.files import (  # noqa: F401  (re-exported: pyrogen.runs is where users find run files)
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    METRICS_FILE,
    RunDir,
    atomic_write,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pyrogen.models.features import FashionMNISTClassifier, default_paths, load_network, read_manifest
from pyrogen.models.registry import build_gan_networks, build_model

RESUMABLE_KEYS = (("train", "epochs"),)
"""Settings that ``--resume`` may change after ``config.json`` was written (the new total of epochs),
so a checkpoint that differs from ``config.json`` only there still belongs to the run."""


def resolve_device(device):
    """``"auto"`` is CUDA where there is a GPU, else the CPU."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and distributed.world_size() > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def load_data(data_config, device):
    """Train and test images and test labels of a VAE-family run on ``device``, binarized as configured.

    Dynamic binarization happens in the loader; the test set is binarized once
    with a fixed seed (static), so every evaluation scores the same binary images.
    """
    train, test = load_splits(data_config["dataset"], data_config["root"],
                              data_config.get("train_size"), data_config.get("test_size"))
    test_x = test.images.to(device)
    if data_config["binarize"] != "none":
        test_x = static_binarize(test_x, seed=12345)
    return train.images.to(device), test_x, test.labels.to(device)


def load_gan_data(data_config, device):
    """Training and test images in [0, 1] (grey levels, no binarization) on ``device``."""
    train, test = load_splits(data_config["dataset"], data_config["root"],
                              data_config.get("train_size"), data_config.get("test_size"))
    return train.images.to(device), test.images.to(device)


def load_labelled_data(data_config, device):
    """``(train, train_labels, test, test_labels)`` of a run on ``device``; the test images are
    binarized once with a fixed seed when the configuration binarizes (as :func:`pyrogen.runs.load_data`)."""
    train, test = load_splits(data_config["dataset"], data_config["root"],
                              data_config.get("train_size"), data_config.get("test_size"))
    test_x = test.images.to(device)
    if data_config.get("binarize", "none") != "none":
        test_x = static_binarize(test_x, seed=12345)
    labels = [None if s.labels is None else s.labels.to(device) for s in (train, test)]
    return train.images.to(device), labels[0], test_x, labels[1]


def _comparable(config):
    config = json.loads(json.dumps(config))  # tuples and lists alike, as config.json holds them
    for section, key in RESUMABLE_KEYS:
        config.get(section, {}).pop(key, None)
    return config


class Run:
    """An opened run directory (see :func:`open_run`).

    :ivar RunDir dir: its files.
    :ivar str kind: ``"vae"``, ``"ae"``, ``"gan"``, ``"ali"``, ``"aae"`` (a VAE pair trained
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
            self.dir, self.kind = RunDir(path), "features"
            self.config = read_manifest(self._feature_files[1], self._feature_files[0])
            return
        self.dir = RunDir.open(path)
        self.config = self.dir.config
        self.kind = self.config.get("kind", "vae")

    @property
    def path(self):
        return self.dir.path

    @property
    def checkpoint(self):
        """The last checkpoint (loaded on first use onto :attr:`device`).

        :raises CheckpointError: if it is missing or corrupt, or its embedded
            configuration differs from ``config.json`` (the message names both files).
        """
        if self._checkpoint is None and self.kind == "features":
            self._checkpoint = {"config": self.config, "model": self._feature_network().state_dict()}
        if self._checkpoint is None:
            state = self.dir.load_checkpoint(map_location=self.device)
            if _comparable(state.get("config", {})) != _comparable(self.config):
                raise CheckpointError(
                    f"the checkpoint {self.dir.checkpoint_path!r} was written with another configuration than "
                    f"{self.dir.file(CONFIG_FILE)!r}: the two files belong to different runs")
            self._checkpoint = state
        return self._checkpoint

    def model(self, use_ema=True):
        """The trained model in eval mode on :attr:`device`: the VAE or autoencoder, or a GAN's generator
        (with its moving-average weights when the run kept them and ``use_ema``), or the feature network."""
        if self.kind == "features":
            return self._feature_network().to(self.device).eval()
        state = self.checkpoint
        weights_key = ("ema" if use_ema and "ema" in state else "generator") if self.kind == "gan" else "model"
        if weights_key not in state:  # e.g. a GAN's checkpoint in a VAE's run
            raise CheckpointError(f"the checkpoint {self.dir.checkpoint_path!r} holds no {weights_key!r} weights, "
                                  f"which a {self.kind} run's checkpoint has")
        if self.kind == "gan":
            model, _ = build_gan_networks(state["config"])
            weights = state[weights_key]
        else:
            model, weights = build_model(state["config"]), state["model"]
        model = model.to(self.device)
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:  # missing keys or tensors of other sizes than the configuration makes
            raise CheckpointError(f"the checkpoint {self.dir.checkpoint_path!r} does not fit its configuration: "
                                  f"{' '.join(str(e).split())[:300]}") from None
        return model.eval()

    def _feature_network(self):
        network = FashionMNISTClassifier()
        load_network(network, *self._feature_files)  # the weights' hash checked against the manifest
        return network

    def data(self):
        """The run's data on :attr:`device`: ``(train, test, test_labels)`` for the VAE family,
        binarized as configured; ``(train, test)`` grey levels for a GAN and the feature network."""
        if self.kind == "features":
            return load_gan_data({"dataset": "fashion-mnist", "root": None}, self.device)
        if self.kind == "gan":
            return load_gan_data(self.config["data"], self.device)
        return load_data(self.config["data"], self.device)


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
