"""Fashion-MNIST (and torchvision's MNIST-style sets) as tensors of images and labels.

Fashion-MNIST is read from the four standard IDX files that Debian's
``dataset-fashion-mnist`` package installs in
``/usr/share/datasets/fashion-mnist`` (or from a directory the user names).
Other torchvision data sets (MNIST, KMNIST) are loaded through
:mod:`torchvision.datasets` for users with internet access; no test needs them.

Images are returned as ``float32`` tensors of shape ``(N, 1, 28, 28)`` with
values in [0, 1]; labels as ``int64`` tensors of shape ``(N,)``.
"""

import gzip
import os
import zlib

import numpy as np
import torch

from pyrogen.data.datasets import ImageDataset
from pyrogen.errors import DataError, DatasetNotFoundError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_DATASETS = ("mnist", "kmnist")
DATASETS = ("fashion-mnist",) + _TORCHVISION_DATASETS

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def read_idx(path):
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    The IDX format (LeCun et al.) is a big-endian header of two zero bytes, a
    type code, the number of dimensions and each dimension's size, followed by
    the data. Only unsigned bytes (type 0x08), which MNIST-style data use, are
    supported.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path!r}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path!r} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path!r} is truncated or corrupt: header promises {expected} bytes of data "
            f"for shape {shape}, file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    return None


def load_fashion_mnist(split="train", root=None):
    """Fashion-MNIST (Xiao, Rasul and Vollgraf 2017) from local IDX files.

    :param str split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
    :param str root: directory holding the four IDX files, compressed or not;
        defaults to :data:`FASHION_MNIST_DIR`.
    :returns: :class:`ImageDataset` with images of shape ``(N, 1, 28, 28)`` in [0, 1].
    :raises DatasetNotFoundError: naming the directory searched and how to install the data.
    """
    if split not in _IDX_FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    root = FASHION_MNIST_DIR if root is None else os.fspath(root)
    paths = [_find(root, stem) for stem in _IDX_FILES[split]]
    if None in paths:
        missing = [s for s, p in zip(_IDX_FILES[split], paths) if p is None]
        raise DatasetNotFoundError(
            f"Fashion-MNIST {split} files not found in {root!r} (looked for "
            f"{', '.join(m + '[.gz]' for m in missing)}). Install them with "
            "'sudo apt-get install dataset-fashion-mnist', which puts them in "
            f"{FASHION_MNIST_DIR}, or pass the directory that holds them."
        )
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"IDX files in {root!r} do not hold N images and N labels (images {images.shape}, labels {labels.shape})"
        )
    if images.shape[1:] != (28, 28):  # checked before any run directory exists, not in the first step
        raise DataError(
            f"IDX images in {paths[0]!r} are {images.shape[1]}x{images.shape[2]} pixels; expected Fashion-MNIST's 28x28"
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    return ImageDataset(x, torch.from_numpy(labels.astype(np.int64)))


def load_dataset(name="fashion-mnist", split="train", root=None, download=False):
    """Load a data set by name: ``"fashion-mnist"`` locally, or a torchvision one.

    ``"mnist"`` and ``"kmnist"`` go through :mod:`torchvision.datasets`; they
    need ``download=True`` and internet access the first time.
    """
    if name == "fashion-mnist":
        return load_fashion_mnist(split, root)
    if name not in _TORCHVISION_DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "kmnist": tvd.KMNIST}[name]
    root = root or os.path.join(os.path.expanduser("~"), ".cache", "pyrogen", "data")
    try:
        ds = cls(root, train=(split == "train"), download=download)
    except RuntimeError as e:
        raise DatasetNotFoundError(
            f"{name} not found under {root!r}; pass download=True (--download) on a machine with internet access ({e})"
        ) from e
    x = ds.data.unsqueeze(1).float().div_(255.0)
    return ImageDataset(x, ds.targets.long())


def load_splits(name="fashion-mnist", root=None, train_size=None, test_size=None):
    """Training and test sets of a data set, each optionally cut to its first examples.

    :returns: ``(train, test)`` :class:`ImageDataset` pair.
    :raises DataError: if a size is not between 1 and the split's size.
    """
    train = load_dataset(name, "train", root)
    test = load_dataset(name, "test", root)
    for key, n, ds in (("train_size", train_size, train), ("test_size", test_size, test)):
        if n is not None and not 1 <= n <= len(ds):
            raise DataError(f"{key} must be between 1 and {len(ds)}, got {n}")
    return (train.subset(train_size) if train_size else train, test.subset(test_size) if test_size else test)
