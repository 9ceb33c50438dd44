"""The Fashion-MNIST feature network as a model, and its file format: weights beside a hash manifest.

:class:`FashionMNISTClassifier` is the network whose penultimate layer is the
feature space of pyrogen's sample-quality measures; :func:`save_network` and
:func:`load_network` write and read it atomically, checked by SHA-256, with
``torch.load(..., weights_only=True)``. How it is trained and cached, and the
measures that use it, are :mod:`pyrogen.evaluation.features` and
:mod:`pyrogen.evaluation.sample_quality`; :func:`pyrogen.runs.open_run` opens
its cache directory like any other run.
"""

import hashlib
import io
import json
import os
import pickle
import re
import zipfile

import torch
from torch import nn

from pyrogen.errors import CheckpointError, RunFileError
from pyrogen.files import (
    TEMPORARY_MARK,
    atomic_write,
    lock_run_dir,
    parse_json,
    release_run_lock,
)

FEATURE_NET_NAME = "fashion_mnist_features"
FEATURE_DIM = 128
"""Width of the default feature space (the classifier's penultimate layer)."""


class FeatureNetworkError(CheckpointError):
    """The cached feature network is missing, tampered with, corrupt or made by another recipe."""


def cache_dir():
    """pyrogen's cache directory: ``$PYROGEN_CACHE``, else ``$XDG_CACHE_HOME/pyrogen``, else ``~/.cache/pyrogen``."""
    if os.environ.get("PYROGEN_CACHE"):
        return os.environ["PYROGEN_CACHE"]
    if os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "pyrogen")
    return os.path.join(os.path.expanduser("~"), ".cache", "pyrogen")


def default_paths(directory=None):
    """``(weights, manifest)`` paths of the default feature network in ``directory`` (default :func:`cache_dir`)."""
    directory = cache_dir() if directory is None else os.fspath(directory)
    return (os.path.join(directory, FEATURE_NET_NAME + ".pt"), os.path.join(directory, FEATURE_NET_NAME + ".json"))


class FashionMNISTClassifier(nn.Module):
    """A small convolutional classifier of 28x28 grey images; ``features`` is its penultimate layer.

    ``features``: 5x5 convolution, 16 channels, stride 2 (28 -> 14), batch
    norm, ReLU; 3x3 convolution, 32 channels, stride 2 (14 -> 7), batch norm,
    ReLU; linear 1568 -> 128, ReLU. ``head``: dropout 0.2, linear 128 -> 10
    (class logits). About 206,000 parameters; an epoch of Fashion-MNIST takes about
    20 s on one CPU core (the version-1 network, with twice the channels, about 56 s).

    ``forward(x)`` maps images ``(N, 1, 28, 28)`` in [0, 1] to logits ``(N, 10)``;
    ``features(x)`` to features ``(N, 128)``.
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, 10))

    def forward(self, x):
        return self.head(self.features(x))


def sha256_file(path):
    """The SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_network(module, path, manifest_path, info=None):
    """Save ``module``'s state dict and a manifest with its SHA-256 hash, so that a crash leaves a valid pair.

    The weights go first to a file named by their hash (``NAME-<sha256[:16]>.pt`` beside ``path``),
    then the manifest, which names that file, replaces the old manifest in one atomic rename: a
    process killed before it leaves the earlier manifest and the earlier weights as they were. Then
    ``path`` itself becomes a hard link to (or, where links fail, a copy of) the new weights, and
    weights files that no manifest names any more are removed. The folder's lock
    (:func:`pyrogen.files.lock_run_dir`) is held meanwhile, so two processes do not write at once.

    :param nn.Module module: the network.
    :param str path: the weights file (``torch.save`` of the state dict).
    :param str manifest_path: the JSON manifest, written after the weights.
    :param dict info: JSON-serialisable facts stored in the manifest (recipe, accuracy).
    :returns: the manifest dict.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    took = lock_run_dir(directory, what="feature network cache")
    try:
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        stem, ext = os.path.splitext(os.path.basename(path))
        versioned = os.path.join(directory, f"{stem}-{digest[:16]}{ext}")
        atomic_write(versioned, lambda f: f.write(data))
        manifest = {**(info or {}), "sha256": digest, "file": os.path.basename(versioned)}
        atomic_write(manifest_path, lambda f: json.dump(manifest, f, indent=2, sort_keys=True), binary=False)
        _link_or_copy(versioned, path, data)
        for name in os.listdir(directory):  # earlier versions no manifest names any more
            if name != os.path.basename(versioned) and _VERSIONED.fullmatch(name) and name.startswith(stem + "-"):
                os.unlink(os.path.join(directory, name))
    finally:
        if took:
            release_run_lock(directory)
    return manifest


_VERSIONED = re.compile(r".+-[0-9a-f]{16}\.pt")


def _link_or_copy(source, path, data):
    """Make ``path`` the same file as ``source`` in one rename (a hard link; a copy where links fail)."""
    if os.path.abspath(source) == os.path.abspath(path):
        return
    tmp = f"{path}{TEMPORARY_MARK}link.tmp"
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        atomic_write(path, lambda f: f.write(data))


def weights_file(manifest, manifest_path, path):
    """The weights file that ``manifest`` names: its ``file`` beside the manifest (a plain name, no
    folders), else ``path`` (manifests of older versions)."""
    name = manifest.get("file")
    if isinstance(name, str) and name and os.path.basename(name) == name and name not in (".", ".."):
        return os.path.join(os.path.dirname(os.path.abspath(manifest_path)), name)
    return path


def read_manifest(manifest_path, path):
    """The manifest of a cached network, after checking the hash of the weights file it names.

    :raises FeatureNetworkError: if either file is missing or unreadable, or the hash differs.
    """
    if not os.path.isfile(manifest_path):
        if not os.path.isfile(path):
            raise FeatureNetworkError(f"no feature network weights at {path!r}")
        raise FeatureNetworkError(f"no manifest {manifest_path!r} for the feature network weights {path!r}")
    try:
        with open(manifest_path, "rb") as f:
            manifest = parse_json(f.read(1 << 20), manifest_path)
    except (OSError, RunFileError) as e:
        raise FeatureNetworkError(f"cannot read the feature network manifest {manifest_path!r}: {e}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise FeatureNetworkError(f"{manifest_path!r} is not a feature network manifest (no 'sha256')")
    path = weights_file(manifest, manifest_path, path)
    if not os.path.isfile(path):
        raise FeatureNetworkError(f"no feature network weights at {path!r}")
    digest = sha256_file(path)
    if digest != manifest["sha256"]:
        raise FeatureNetworkError(
            f"the feature network weights {path!r} do not match their manifest: SHA-256 {digest[:12]}..., "
            f"expected {manifest['sha256'][:12]}... (the file was modified, truncated or replaced)"
        )
    return manifest


def load_network(module, path, manifest_path):
    """Load verified weights into ``module`` (hash checked, ``weights_only=True``); returns the manifest.

    :raises FeatureNetworkError: if the files are missing, the hash differs, or
        the state dict does not fit ``module``.
    """
    manifest = read_manifest(manifest_path, path)
    path = weights_file(manifest, manifest_path, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise FeatureNetworkError(f"cannot load the feature network weights {path!r}: {str(e).splitlines()[0]}") from e
    return manifest
