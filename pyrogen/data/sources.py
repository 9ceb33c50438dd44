"""Your own data as a source: a folder of images, an array file or a table, recorded and re-opened exactly.

:func:`open_source` opens one of

* a folder of images (PNG, JPEG and the other formats torchvision's ``ImageFolder`` reads), of any
  size; class subfolders give the labels as ``ImageFolder`` does (the sorted folder names, indexed
  from 0), a folder of images alone gives none. ``image_size`` resizes every image (bilinear,
  PIL) and ``channels`` converts to grey (1) or RGB (3); without ``image_size`` the images must
  share one size. Values are the 8-bit levels divided by 255. Examples are read in the order of
  their file names across the class folders (ties by class), so a folder exported from an
  array in its order (``00000.png``, ``00001.png``, ... in class folders) reads back in that order;
* a ``.npy``, ``.npz`` or ``.pt`` array of shape ``(N, C, H, W)``, ``(N, H, W)`` (one channel) or
  ``(N, D)`` (vectors), with optional integer ``labels`` (an ``.npz`` key, or a ``.pt`` dict
  ``{"images": ..., "labels": ...}``) and ``class_names``. ``uint8`` arrays are divided by 255,
  other dtypes are taken as they are;
* a ``.csv`` or ``.parquet`` table of numeric columns, one example per row, shape ``(N, D)``;
  ``label_column`` names a column of labels (integers, or strings whose sorted values are the
  classes). Reading a table needs pandas (``pip install 'pyrogen[tables]'``).

A :class:`Source` splits into training and test sets (:meth:`Source.splits`): the examples of
``test_data`` (another source of the same kind and shape) or a random ``test_fraction`` of the
examples, drawn with ``split_seed``. :meth:`Source.record` is a JSON-able description a run
keeps in its configuration (kind, absolute path, a fingerprint of the content, shapes, channels,
the value transform, labels and class names, the split); :func:`reopen` opens exactly that
source again, and refuses in one line when the data are missing or have changed.

Fingerprints: a folder's file names and sizes always, plus either the SHA-256 of every file's
bytes (recorded when the folder was read in full; a copy with other modification times still
matches) or their modification times; a file's size, the SHA-256 of its first MiB, and the
SHA-256 of all of it when it is at most :data:`FULL_HASH_BYTES` (else its modification time).
"""

import contextlib
import hashlib
import json
import os

import numpy as np
import torch

from pyrogen.data.datasets import ImageDataset
from pyrogen.errors import DataError, DatasetNotFoundError

SOURCE_FORMAT = 1
"""Version of the dict that :meth:`Source.record` writes."""

FULL_HASH_BYTES = 256 * 2**20
"""Files up to this size are fingerprinted by the SHA-256 of all their bytes; larger ones by size,
modification time and the SHA-256 of their first MiB."""

_HEAD_BYTES = 2**20
ARRAY_SUFFIXES = (".npy", ".npz", ".pt")
TABLE_SUFFIXES = (".csv", ".parquet")


def _image_extensions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(e.lower() for e in IMG_EXTENSIONS)


def parse_image_size(image_size):
    """``(H, W)`` from ``None``, an int (square), a pair, or a string ``"H"`` or ``"HxW"``."""
    if image_size is None:
        return None
    value = image_size
    if isinstance(value, str):
        parts = value.lower().split("x")
        try:
            value = tuple(int(p) for p in parts)
        except ValueError:
            value = None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = (value[0], value[0])
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise DataError(f"image_size must be H or HxW in pixels (positive integers), got {image_size!r}")
    return tuple(value)


def _sha256_file(path, limit=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if limit is not None:
            h.update(f.read(limit))
        else:
            for block in iter(lambda: f.read(2**22), b""):
                h.update(block)
    return h.hexdigest()


def _file_fingerprint(path):
    st = os.stat(path)
    fp = {"size": st.st_size, "head_sha256": _sha256_file(path, _HEAD_BYTES)}
    if st.st_size <= FULL_HASH_BYTES:
        fp["sha256"] = _sha256_file(path)
    else:
        fp["mtime_ns"] = st.st_mtime_ns
    return fp


def _digest(items):
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


def _check_finite(x, path):
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero()[0].item()
        raise DataError(f"{path!r} holds NaN or infinite values (example {bad} is the first); expected finite numbers")


def _labels_from(values, path, n, class_names=None):
    """Integer labels ``(N,)`` and class names from an array of integers or strings."""
    values = np.asarray(values)
    if values.ndim != 1 or values.shape[0] != n:
        raise DataError(f"{path!r}: the labels have shape {values.shape}; expected one label per example, ({n},)")
    if values.dtype.kind in "iub":
        labels = torch.from_numpy(values.astype(np.int64))
        if n and labels.min() < 0:
            raise DataError(f"{path!r}: labels must be non-negative integers, got {labels.min().item()}")
        if class_names is None:
            class_names = tuple(str(i) for i in range(int(labels.max()) + 1 if n else 0))
        elif n and labels.max() >= len(class_names):
            raise DataError(
                f"{path!r}: label {labels.max().item()} has no class name (there are {len(class_names)} class names)"
            )
        return labels, tuple(str(c) for c in class_names)
    if values.dtype.kind in "fc":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DataError(f"{path!r}: labels must be integers or class names, got non-integer numbers")
        return _labels_from(values.astype(np.int64), path, n, class_names)
    names = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(names)}
    return torch.tensor([index[str(v)] for v in values], dtype=torch.int64), tuple(names)


class Source:
    """A data set on disk: what :func:`open_source` returns.

    :ivar str kind: ``"folder"``, ``"array"``, ``"table"`` or ``"fashion-mnist"``.
    :ivar str path: the absolute path.
    :ivar tuple shape: one example's shape, ``(C, H, W)`` or ``(D,)``.
    :ivar int num_examples: examples in the source (before any split).
    :ivar tuple class_names: the classes that the labels index, or None (no labels).
    """

    kind = None
    value_transform = "none"

    def __init__(self, path, *, test_data=None, test_fraction=0.1, split_seed=0):
        self.path = os.path.abspath(os.fspath(path))
        if test_data is None and (
            isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1
        ):
            raise DataError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise DataError(f"split_seed must be an integer, got {split_seed!r}")
        self.test_source = test_data
        self.test_fraction = None if test_data is not None else float(test_fraction)
        self.split_seed = split_seed
        self._data = None

    # ------------------------------------------------------------------ to override
    def options(self):
        """The keyword arguments that open this source again (besides the split)."""
        return {}

    def fingerprint(self):
        """What identifies the content (see the module docs)."""
        raise NotImplementedError

    def load(self):
        """All examples as an :class:`ImageDataset` in memory (float32)."""
        raise NotImplementedError

    def streaming_dataset(self, indices=None):
        """A :class:`torch.utils.data.Dataset`-like reader of the examples at ``indices`` (all when None)
        that reads them from disk in the worker processes of a
        :class:`~pyrogen.data.loaders.StreamingLoader`."""
        raise DataError(f"{self.kind} sources are read into memory; streaming reads .npy arrays and image folders")

    def stat_signature(self):
        """Sizes and modification times of the source's files (and its test source's): what a change
        would alter, read without reading the data."""
        files = getattr(self, "files", None)  # a folder's images, else the file itself
        paths = [self.path] if files is None else [os.path.join(self.path, f) for f in files]
        try:
            own = _digest([[p, st.st_size, st.st_mtime_ns] for p, st in ((p, os.stat(p)) for p in paths)])
        except OSError:
            return None
        return [own, None if self.test_source is None else self.test_source.stat_signature()]

    can_stream = False
    """Whether :meth:`streaming_dataset` reads it from disk (a folder of images, a ``.npy``)."""

    @property
    def nbytes(self):
        """The float32 bytes of all examples in memory."""
        return 4 * self.num_examples * int(np.prod(self.shape))

    # ------------------------------------------------------------------ shared
    def data(self):
        if self._data is None:
            self._data = self.load()
        return self._data

    def split_indices(self):
        """``(train, test)`` index tensors into this source (test None with a separate ``test_data``).

        With ``test_fraction`` the test examples are the first ``round(N * fraction)`` of a permutation
        drawn from ``torch.Generator().manual_seed(split_seed)``; each split keeps the source's order."""
        n = self.num_examples
        if self.test_source is not None:
            return torch.arange(n), None
        n_test = round(n * self.test_fraction)
        if not 1 <= n_test < n:
            raise DataError(
                f"{self.path!r}: a test fraction of {self.test_fraction} of {n} examples leaves "
                f"{n_test} test and {n - n_test} training examples; both need at least one"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        return perm[n_test:].sort().values, perm[:n_test].sort().values

    def splits(self, stream=False):
        """``(train, test)``: :class:`ImageDataset` pairs in memory, or with ``stream`` the training set
        as a streaming dataset (read in the loader's workers) and the test set in memory."""
        train_idx, test_idx = self.split_indices()
        if self.test_source is not None:
            test = self.test_source.data()
            if tuple(test.images.shape[1:]) != tuple(self.shape):
                raise DataError(
                    f"the test data {self.test_source.path!r} hold examples of shape "
                    f"{tuple(test.images.shape[1:])}; the training data {self.path!r} hold "
                    f"{tuple(self.shape)}"
                )
            if (test.class_names is None) != (self.class_names is None):
                raise DataError(
                    f"{'only' if test.class_names is None else 'not'} the training data "
                    f"{self.path!r} have labels; the test data {self.test_source.path!r} "
                    f"{'have none' if test.class_names is None else 'do'}"
                )
            if test.class_names is not None and tuple(test.class_names) != tuple(self.class_names):
                raise DataError(
                    f"the test data {self.test_source.path!r} have the classes "
                    f"{', '.join(test.class_names)}; the training data {self.path!r} have "
                    f"{', '.join(self.class_names)}"
                )
        if stream:
            train = self.streaming_dataset(train_idx)
        else:
            train = _take(self.data(), train_idx)
        if self.test_source is None:
            test = self.subset(test_idx) if stream else _take(self.data(), test_idx)
        return train, test

    def subset(self, indices):
        """The examples at ``indices`` as an :class:`ImageDataset` (the streamed run's test split); sources
        that can read a few examples without the rest override it."""
        return _take(self.data(), indices)

    def record(self):
        """A JSON-able description of this source: enough to open it again and to tell it has changed."""
        rec = {
            "format": SOURCE_FORMAT,
            "kind": self.kind,
            "path": self.path,
            "fingerprint": self.fingerprint(),
            "shape": list(self.shape),
            "num_examples": self.num_examples,
            "channels": self.shape[0] if len(self.shape) == 3 else None,
            "value_transform": self.value_transform,
            "options": self.options(),
            "labels": self.class_names is not None,
            "class_names": None if self.class_names is None else list(self.class_names),
            "split": {
                "seed": self.split_seed,
                "fraction": self.test_fraction,
                "test_data": None if self.test_source is None else self.test_source.record(),
            },
        }
        _RECORDED[_key(rec)] = (self, self.stat_signature())  # reopen() here takes it while its files are unchanged
        return rec

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r}, shape={tuple(self.shape)}, n={self.num_examples})"


_RECORDED = {}
"""Sources whose record was taken in this process, by record: reopening one of them reads nothing again."""


def _key(record):
    return json.dumps(record, sort_keys=True)


def _take(dataset, idx):
    labels = None if dataset.labels is None else dataset.labels[idx]
    return ImageDataset(dataset.images[idx], labels, dataset.class_names)


# ---------------------------------------------------------------------- folders of images
class FolderSource(Source):
    """A folder of images, with class subfolders or without (see the module docs)."""

    kind = "folder"
    can_stream = True
    value_transform = "levels/255"

    def __init__(self, path, *, image_size=None, channels=None, **split):
        super().__init__(path, **split)
        from PIL import Image

        self.image_size = parse_image_size(image_size)
        if channels not in (None, 1, 3):
            raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        extensions = _image_extensions()
        entries = sorted(os.scandir(self.path), key=lambda e: e.name)
        subdirs = [e.name for e in entries if e.is_dir()]
        top = [e.name for e in entries if e.is_file() and e.name.lower().endswith(extensions)]
        files = []  # (name, class index, relative path)
        if subdirs:
            if top:
                raise DataError(
                    f"{self.path!r} holds both images ({top[0]!r}) and class folders ({subdirs[0]!r}); "
                    "expected images in class folders only, or images only"
                )
            for k, d in enumerate(subdirs):
                for root, _, names in sorted(os.walk(os.path.join(self.path, d), followlinks=True)):
                    for name in sorted(names):
                        if name.lower().endswith(extensions):
                            rel = os.path.relpath(os.path.join(root, name), self.path)
                            files.append((name, k, rel))
            self.class_names = tuple(subdirs)
        else:
            files = [(name, 0, name) for name in top]
            self.class_names = None
        if not files:
            raise DataError(
                f"{self.path!r} holds no images (looked for {', '.join(extensions)} files, "
                "in class folders or at the top)"
            )
        files.sort(key=lambda f: (f[0], f[1]))
        self.files = [f[2] for f in files]
        self.labels = torch.tensor([f[1] for f in files], dtype=torch.int64) if subdirs else None
        self.num_examples = len(self.files)
        first = os.path.join(self.path, self.files[0])
        try:
            with Image.open(first) as im:
                size, mode = (im.height, im.width), im.mode
        except OSError as e:
            raise DataError(f"cannot read the image {first!r}: {e}") from None
        self.channels = channels if channels is not None else (1 if mode in ("1", "L", "I;16", "I", "F") else 3)
        self.shape = (self.channels,) + (self.image_size or size)
        self._content_sha256 = None

    def options(self):
        return {"image_size": None if self.image_size is None else list(self.image_size), "channels": self.channels}

    def fingerprint(self):
        stats = [os.stat(os.path.join(self.path, f)) for f in self.files]
        fp = {
            "files": len(self.files),
            "bytes": sum(s.st_size for s in stats),
            "names_sizes_sha256": _digest([[f, s.st_size] for f, s in zip(self.files, stats)]),
        }
        if self._content_sha256 is not None:
            fp["content_sha256"] = self._content_sha256
        else:
            fp["mtimes_sha256"] = _digest([s.st_mtime_ns for s in stats])
        return fp

    def read_image(self, i, content=None):
        """Example ``i`` as a float32 tensor of :attr:`shape` in [0, 1] (bytes added to ``content``, a hash)."""
        from PIL import Image

        path = os.path.join(self.path, self.files[i])
        try:
            with open(path, "rb") as f:
                raw = f.read()
            if content is not None:
                content.update(raw)
            import io

            with Image.open(io.BytesIO(raw)) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                if self.image_size is not None and (im.height, im.width) != self.image_size:
                    im = im.resize(self.image_size[::-1], Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise DataError(f"cannot read the image {path!r}: {e}") from None
        if a.shape[:2] != self.shape[1:]:
            raise DataError(
                f"{path!r} is {a.shape[0]}x{a.shape[1]} pixels but {self.files[0]!r} is "
                f"{self.shape[1]}x{self.shape[2]}; images of different sizes need "
                "image_size (--image-size H[xW]) to resize them to one"
            )
        x = torch.from_numpy(a.copy())
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        return x

    def load(self):
        content = hashlib.sha256()
        out = torch.empty((self.num_examples,) + self.shape, dtype=torch.uint8)
        for i in range(self.num_examples):
            out[i] = self.read_image(i, content)
        self._content_sha256 = content.hexdigest()
        return ImageDataset(out.float().div_(255.0), self.labels, self.class_names)

    def streaming_dataset(self, indices=None):
        from pyrogen.data.loaders import FolderReader

        return FolderReader(self, indices)


# ---------------------------------------------------------------------- arrays
def _read_array(path):
    """``(values, labels or None, class_names or None)`` of an array file; ``.npy`` memory-mapped."""
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None, None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                names = [k for k in keys if k not in ("labels", "class_names")]
                key = next((k for k in ("images", "x", "data") if k in keys), names[0] if len(names) == 1 else None)
                if key is None:
                    raise DataError(
                        f"{path!r} holds arrays {keys}; expected one named 'images' "
                        "(optionally with 'labels' and 'class_names')"
                    )
                return (
                    z[key],
                    z["labels"] if "labels" in keys else None,
                    (tuple(z["class_names"].tolist()) if "class_names" in keys else None),
                )
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  (numpy, zipfile and pickle errors alike)
        raise DataError(f"cannot read the array file {path!r}: {' '.join(str(e).split())[:200]}") from None
    if isinstance(obj, torch.Tensor):
        return obj.numpy(), None, None
    if isinstance(obj, dict):
        key = next((k for k in ("images", "x", "data") if k in obj), None)
        if key is not None and isinstance(obj[key], torch.Tensor):
            labels = obj.get("labels")
            return (
                obj[key].numpy(),
                None if labels is None else np.asarray(labels),
                None if obj.get("class_names") is None else tuple(obj["class_names"]),
            )
    raise DataError(
        f"{path!r} holds a {type(obj).__name__}; expected a tensor, or a dict with a tensor "
        "'images' (and optionally 'labels' and 'class_names')"
    )


def _example_shape(shape, path):
    if len(shape) == 4:
        return tuple(shape[1:])
    if len(shape) == 3:
        return (1,) + tuple(shape[1:])
    if len(shape) == 2:
        return (shape[1],)
    raise DataError(f"{path!r} holds an array of shape {tuple(shape)}; expected (N, C, H, W), (N, H, W) or (N, D)")


def _to_float(a, path):
    """A float32 tensor of an array chunk, uint8 divided by 255."""
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path!r} holds {a.dtype} values; expected numbers")
    x = torch.from_numpy(np.array(a, copy=True) if not a.flags.writeable else np.ascontiguousarray(a))
    return x.float().div_(255.0) if a.dtype == np.uint8 else x.float()


class ArraySource(Source):
    """A ``.npy``, ``.npz`` or ``.pt`` array (see the module docs)."""

    kind = "array"

    def __init__(self, path, **split):
        super().__init__(path, **split)
        values, labels, class_names = _read_array(self.path)
        if values.dtype.kind not in "biuf":
            raise DataError(f"{self.path!r} holds {values.dtype} values; expected numbers")
        self.array_shape = tuple(values.shape)
        self.shape = _example_shape(values.shape, self.path)
        self.num_examples = values.shape[0]
        if self.num_examples == 0:
            raise DataError(f"{self.path!r} holds no examples (shape {self.array_shape})")
        self.dtype = str(values.dtype)
        self.value_transform = "uint8/255" if values.dtype == np.uint8 else "none"
        self._values = values
        self.labels, self.class_names = (
            (None, None) if labels is None else _labels_from(labels, self.path, self.num_examples, class_names)
        )

    @property
    def can_stream(self):
        return self.path.lower().endswith(".npy")

    def fingerprint(self):
        return _file_fingerprint(self.path)

    def load(self):
        x = _to_float(np.asarray(self._values), self.path).reshape((self.num_examples,) + self.shape)
        _check_finite(x, self.path)
        return ImageDataset(x, self.labels, self.class_names)

    def subset(self, indices):
        """The examples at ``indices`` read from the (memory-mapped) array alone: a streamed run's test
        split never brings the whole array into memory. The values are :meth:`load`'s, bit for bit."""
        idx = indices.numpy()
        x = _to_float(np.asarray(self._values[idx]), self.path).reshape((len(idx),) + self.shape)
        _check_finite(x, self.path)
        labels = None if self.labels is None else self.labels[indices]
        return ImageDataset(x, labels, self.class_names)

    def streaming_dataset(self, indices=None):
        if os.path.splitext(self.path)[1].lower() != ".npy":
            raise DataError(
                f"streaming reads a memory-mapped .npy file; {self.path!r} is read into memory "
                "(save its array with numpy.save to stream it)"
            )
        from pyrogen.data.loaders import ArrayReader

        return ArrayReader(self.path, self.shape, self.labels, indices)


# ---------------------------------------------------------------------- tables
class TableSource(Source):
    """A ``.csv`` or ``.parquet`` table of numeric columns (see the module docs)."""

    kind = "table"

    def __init__(self, path, *, label_column=None, **split):
        super().__init__(path, **split)
        try:
            import pandas as pd
        except ImportError:
            raise DataError(f"reading the table {self.path!r} needs pandas: pip install 'pyrogen[tables]'") from None
        try:
            frame = pd.read_parquet(self.path) if self.path.lower().endswith(".parquet") else pd.read_csv(self.path)
        except Exception as e:  # noqa: BLE001  (pandas and pyarrow raise many kinds)
            raise DataError(f"cannot read the table {self.path!r}: {' '.join(str(e).split())[:200]}") from None
        self.label_column = label_column
        labels = None
        if label_column is not None:
            if label_column not in frame.columns:
                more = ", ..." if len(frame.columns) > 10 else ""
                raise DataError(
                    f"{self.path!r} has no column {label_column!r} (label_column); its columns are "
                    f"{', '.join(map(str, frame.columns[:10]))}{more}"
                )
            labels = frame.pop(label_column).to_numpy()
        bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise DataError(
                f"{self.path!r}: column{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad[:5]))} "
                f"{'are' if len(bad) > 1 else 'is'} not numeric; expected numeric columns only "
                "(name a label column with label_column / --label-column)"
            )
        if frame.shape[1] == 0 or frame.shape[0] == 0:
            raise DataError(
                f"{self.path!r} holds {frame.shape[0]} rows and {frame.shape[1]} numeric columns; "
                "expected at least one of each"
            )
        values = frame.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise DataError(
                f"{self.path!r} holds NaN or infinite values (column {str(frame.columns[col])!r}, "
                f"row {row}); expected finite numbers"
            )
        self.columns = tuple(str(c) for c in frame.columns)
        self.shape = (values.shape[1],)
        self.num_examples = values.shape[0]
        self._values = torch.from_numpy(values).float()
        self.labels, self.class_names = (
            (None, None) if labels is None else _labels_from(labels, self.path, self.num_examples)
        )

    def options(self):
        return {"label_column": self.label_column}

    def fingerprint(self):
        return _file_fingerprint(self.path)

    def record(self):
        return {**super().record(), "columns": list(self.columns)}

    def load(self):
        return ImageDataset(self._values, self.labels, self.class_names)


# ---------------------------------------------------------------------- Fashion-MNIST
class FashionMNISTSource(Source):
    """The built-in Fashion-MNIST, its own train/test split (what a run with no recorded source used)."""

    kind = "fashion-mnist"
    value_transform = "levels/255"

    def __init__(self, path=None):
        from pyrogen.data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR

        super().__init__(FASHION_MNIST_DIR if path is None else path)
        self.shape, self.num_examples, self.class_names = (1, 28, 28), 60000, FASHION_MNIST_CLASSES
        self.test_fraction = None

    def fingerprint(self):
        return {}

    def stat_signature(self):
        return None

    def splits(self, stream=False):
        from pyrogen.data.fashion_mnist import load_fashion_mnist

        if stream:
            raise DataError("Fashion-MNIST fits in memory; streaming reads .npy arrays and image folders")
        train, test = (load_fashion_mnist(s, self.path) for s in ("train", "test"))
        return (
            ImageDataset(train.images, train.labels, self.class_names),
            ImageDataset(test.images, test.labels, self.class_names),
        )


# ---------------------------------------------------------------------- opening
def open_source(
    path, *, image_size=None, channels=None, label_column=None, test_data=None, test_fraction=0.1, split_seed=0
):
    """Open a data source: a folder of images, an array file or a table (see the module docs).

    :param path: the folder or file.
    :param image_size: folders: resize every image to ``H``, ``(H, W)`` or ``"HxW"`` pixels.
    :param int channels: folders: 1 (grey) or 3 (RGB); default the first image's.
    :param str label_column: tables: the column of labels.
    :param test_data: a path (opened with the same options) or :class:`Source` holding the test set;
        otherwise ``test_fraction`` of the examples, drawn with ``split_seed``, are held out.
    :returns: a :class:`Source`.
    :raises DataError: naming the file and what was expected, for data of the wrong kind or shape.
    :raises DatasetNotFoundError: when ``path`` does not exist.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise DatasetNotFoundError(
            f"no data at {path!r}; expected a folder of images, a .npy/.npz/.pt array or a .csv/.parquet table"
        )
    if test_data is not None and not isinstance(test_data, Source):
        test_data = open_source(
            test_data, image_size=image_size, channels=channels, label_column=label_column, test_fraction=0.5
        )
    split = {"test_data": test_data, "test_fraction": test_fraction, "split_seed": split_seed}
    suffix = os.path.splitext(path)[1].lower()
    folder_only = {"image_size": image_size, "channels": channels}
    if os.path.isdir(path):
        if label_column is not None:
            raise DataError(
                f"label_column (--label-column) names a column of a table; {path!r} is a folder of "
                "images, whose class folders give the labels"
            )
        return FolderSource(path, image_size=image_size, channels=channels, **split)
    for name, value in folder_only.items():
        if value is not None:
            raise DataError(
                f"{name} (--{name.replace('_', '-')}) applies to a folder of images; {path!r} is a "
                f"file, whose arrays are taken at their own size"
            )
    if suffix in ARRAY_SUFFIXES:
        if label_column is not None:
            raise DataError(
                f"label_column (--label-column) names a column of a table; {path!r} is an array "
                "file (put its labels in an .npz under 'labels')"
            )
        return ArraySource(path, **split)
    if suffix in TABLE_SUFFIXES:
        return TableSource(path, label_column=label_column, **split)
    raise DataError(
        f"{path!r} is not a data source pyrogen reads; expected a folder of images, a "
        f"{'/'.join(ARRAY_SUFFIXES)} array or a {'/'.join(TABLE_SUFFIXES)} table"
    )


def _changes(recorded, now):
    """A phrase saying how fingerprint ``now`` differs from ``recorded`` (None: the same content)."""
    for key in ("files", "size", "bytes", "names_sizes_sha256"):
        if key in recorded and recorded.get(key) != now.get(key):
            what = {
                "files": "number of files",
                "size": "size",
                "bytes": "total size",
                "names_sizes_sha256": "file names or sizes",
            }[key]
            if key in ("files", "size", "bytes"):
                return f"{what} {now.get(key)}, recorded {recorded[key]}"
            return f"its {what} differ from those recorded"
    for key in ("sha256", "content_sha256", "head_sha256"):
        if key in recorded and key in now and recorded[key] != now[key]:
            return "its content differs from the recorded hash"
    if not any(k in recorded and k in now for k in ("sha256", "content_sha256")):
        for key in ("mtime_ns", "mtimes_sha256"):
            if key in recorded and recorded.get(key) != now.get(key):
                return "its modification times differ from those recorded"
    return None


_RELOCATED = {}
"""Recorded path -> where the data are now, while :func:`relocated` is in force."""


@contextlib.contextmanager
def relocated(record, path):
    """Within the block, :func:`reopen` looks for the data that ``record`` describes at ``path`` (when
    not None): how ``--data NEW_PATH`` reaches every place that reads a run's data."""
    if path is None or record is None:
        yield
        return
    key = record["path"]
    before = _RELOCATED.get(key)
    _RELOCATED[key] = os.path.abspath(os.fspath(path))
    try:
        yield
    finally:
        if before is None:
            _RELOCATED.pop(key, None)
        else:
            _RELOCATED[key] = before


def fashion_mnist_record(root=None):
    """The record of the built-in Fashion-MNIST (its own train/test split), for a run built in Python."""
    return FashionMNISTSource(root).record()


def reopen(record, path=None):
    """Open exactly the source that ``record`` (from :meth:`Source.record`) describes.

    :param dict record: the recorded source, or None for Fashion-MNIST (a run that recorded no source).
    :param str path: where the data are now, when they were moved or copied (``--data NEW_PATH``).
    :raises DataError: in one line, naming the path and ``--data``, when the data are missing or changed.
    """
    if record is None or record.get("kind") == "fashion-mnist":
        return FashionMNISTSource(None if record is None else record.get("path"))
    if record.get("format") != SOURCE_FORMAT:
        raise DataError(
            f"the recorded data source has format {record.get('format')!r}; this pyrogen reads format {SOURCE_FORMAT}"
        )
    if path is None:
        path = _RELOCATED.get(record["path"])
    where = os.path.abspath(os.fspath(path)) if path is not None else record["path"]
    if where == record["path"] and _key(record) in _RECORDED:
        source, signature = _RECORDED[_key(record)]
        if signature is not None and source.stat_signature() == signature:
            return source
    hint = "pass --data NEW_PATH to point at a moved or copied original"
    if not os.path.exists(where):
        raise DataError(f"the run's data {where!r} are missing; {hint}")
    split = record["split"]
    test = None
    if split.get("test_data") is not None:
        test_rec = split["test_data"]
        test = reopen(test_rec, None if path is None else _moved_test_path(record, test_rec, where))
    try:
        source = open_source(
            where,
            **record.get("options", {}),
            test_data=test,
            test_fraction=split.get("fraction") or 0.1,
            split_seed=split.get("seed", 0),
        )
    except DataError as e:
        raise DataError(f"the run's data {where!r} cannot be opened as recorded ({e}); {hint}") from None
    change = None
    if source.kind != record["kind"]:
        change = f"it is a {source.kind}, recorded a {record['kind']}"
    elif list(source.shape) != list(record["shape"]) or source.num_examples != record["num_examples"]:
        change = (
            f"{source.num_examples} examples of shape {tuple(source.shape)}, recorded "
            f"{record['num_examples']} of {tuple(record['shape'])}"
        )
    else:
        recorded_fp = record["fingerprint"]
        if "content_sha256" in recorded_fp:  # a folder read in full: compare contents (a copy matches)
            source.data()
        change = _changes(recorded_fp, source.fingerprint())
    if change is not None:
        raise DataError(f"the run's data {where!r} have changed since the run recorded them ({change}); {hint}")
    return source


def _moved_test_path(record, test_rec, where):
    """Where the test data are when the training data moved: the same place relative to them."""
    rel = os.path.relpath(test_rec["path"], os.path.dirname(record["path"]))
    return os.path.normpath(os.path.join(os.path.dirname(where), rel))


def source_splits(record, path=None, stream=None, device=None, train_size=None, test_size=None):
    """``(train, test)`` of the recorded source (see :func:`reopen` for ``record`` and ``path``).

    The test set is an :class:`ImageDataset` in memory; the training set too, or a streaming reader
    (:class:`~pyrogen.data.loaders.ArrayReader`, :class:`~pyrogen.data.loaders.FolderReader`) when
    ``stream`` is True, or when ``stream`` is None and the source can stream (a ``.npy`` or a folder)
    and its float32 tensor exceeds :data:`~pyrogen.data.loaders.STREAM_MEMORY_FRACTION` of the memory
    available on ``device`` (:func:`~pyrogen.data.loaders.choose_stream`).

    :param int train_size: keep only the first N training examples (None: all); likewise ``test_size``.
    """
    from pyrogen.data.loaders import choose_stream

    source = reopen(record, path)
    if stream is None:
        stream = source.can_stream and choose_stream(source.nbytes, device)
    train, test = source.splits(stream=bool(stream))
    for key, n, ds in (("train_size", train_size, train), ("test_size", test_size, test)):
        if n is not None and not 1 <= n <= len(ds):
            raise DataError(
                f"{key} must be between 1 and {len(ds)} (the {key[:-5]} examples of {source.path!r}), got {n}"
            )
    if train_size is not None:
        train = train.subset(train_size)
    if test_size is not None:
        test = test.subset(test_size)
    return train, test
