"""Data sets and a device-resident loader.

Fashion-MNIST is read from the four standard IDX files that Debian's
``dataset-fashion-mnist`` package installs in
``/usr/share/datasets/fashion-mnist`` (or from a directory the user names).
Other torchvision data sets (MNIST, KMNIST) are loaded through
:mod:`torchvision.datasets` for users with internet access; no test needs them.

Images are returned as ``float32`` tensors of shape ``(N, 1, 28, 28)`` with
values in [0, 1]; labels as ``int64`` tensors of shape ``(N,)``.

:class:`DeviceLoader` keeps the whole data set on the training device and
slices shuffled minibatches there, so a training step never copies a batch
from the host. Binarization is ``"none"`` (grey levels in [0, 1]),
``"static"`` (one Bernoulli draw per pixel with a fixed seed, made once) or
``"dynamic"`` (a fresh Bernoulli draw every time an example is served, as in
Burda et al. 2015).
"""

import gzip
import os
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from pyrogen.errors import DataError, DatasetNotFoundError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_DATASETS = ("mnist", "kmnist")
DATASETS = ("fashion-mnist",) + _TORCHVISION_DATASETS
BINARIZATIONS = ("none", "static", "dynamic")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclass
class ImageDataset:
    """Images in [0, 1] of shape ``(N, C, H, W)`` and integer labels of shape ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self):
        return self.images.shape[0]

    def subset(self, n):
        """The first ``n`` examples."""
        return ImageDataset(self.images[:n], self.labels[:n])


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
            f"IDX files in {root!r} do not hold N images and N labels "
            f"(images {images.shape}, labels {labels.shape})"
        )
    if images.shape[1:] != (28, 28):  # checked before any run directory exists, not in the first step
        raise DataError(f"IDX images in {paths[0]!r} are {images.shape[1]}x{images.shape[2]} pixels; "
                        "expected Fashion-MNIST's 28x28")
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
            f"{name} not found under {root!r}; pass download=True (--download) on a "
            f"machine with internet access ({e})"
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
    return (train.subset(train_size) if train_size else train,
            test.subset(test_size) if test_size else test)


def check_images(x, name="x"):
    """Check a batch of images: floating point, finite, values in [0, 1].

    :raises DataError: naming ``name`` and what is wrong.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DataError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() == 0 or x.shape[0] == 0 or x.numel() == 0:
        raise DataError(f"{name} must hold at least one image, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{name} holds NaN or infinite values")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise DataError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


def static_binarize(x, seed=0):
    """One fixed Bernoulli draw per pixel: ``x_bin ~ Bernoulli(x)`` with a seeded generator.

    :param torch.Tensor x: floating-point probabilities in [0, 1].
    :raises DataError: when ``x`` is not such a tensor.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DataError(f"static_binarize needs a floating-point tensor of probabilities in [0, 1], got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        low, high = x.min().item(), x.max().item()
        raise DataError(f"static_binarize needs probabilities in [0, 1], got values from {low:g} to {high:g} "
                        "(scale the images to [0, 1] first)")
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=g)


class DeviceLoader:
    """Shuffled minibatches sliced from a tensor that lives on the training device.

    Unlike :class:`torch.utils.data.DataLoader` there is no per-batch collation
    or host-to-device copy: the whole data set is moved once, and each epoch
    draws one permutation on the device.

    :param torch.Tensor data: images in [0, 1], shape ``(N, ...)``.
    :param int batch_size: examples per batch, 1 <= batch_size <= N.
    :param str binarize: ``"none"``, ``"static"`` or ``"dynamic"`` (see module docs).
    :param bool shuffle: draw a new permutation every epoch.
    :param bool drop_last: drop the last, smaller batch.
    :param int seed: seed of the loader's own generator (shuffling and binarization).
    :param device: where the data and batches live.
    :param labels: optional labels, returned beside each batch when given.
    :param int rank: this process's rank in data-parallel training.
    :param int world_size: number of processes. Every rank draws the same
        permutation and binarization (same ``seed``) and keeps its contiguous
        share of each global batch of ``batch_size`` examples, so the ranks
        together see exactly the batches a single process would.
    """

    def __init__(self, data, batch_size, binarize="none", shuffle=True, drop_last=False,
                 seed=0, device=None, labels=None, rank=0, world_size=1):
        check_images(data, "data")
        n = data.shape[0]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
            raise DataError(
                f"batch_size must be an integer between 1 and the data set size {n}, got {batch_size!r}"
            )
        if binarize not in BINARIZATIONS:
            raise DataError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
        device = torch.device(device) if device is not None else data.device
        data = data.to(device)
        if binarize == "static":
            data = static_binarize(data, seed)
        self.data = data
        self.labels = None if labels is None else labels.to(device)
        self.batch_size = batch_size
        self.binarize = binarize
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise DataError(f"world_size must be a positive integer, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise DataError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if batch_size < world_size:
            raise DataError(f"batch_size {batch_size} is smaller than the number of processes {world_size}")
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator(device=device).manual_seed(seed)

    @property
    def device(self):
        return self.data.device

    def __len__(self):
        n = self.data.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = self.data.shape[0]
        if self.shuffle:
            order = torch.randperm(n, device=self.device, generator=self.generator)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.data[idx]
            if self.binarize == "dynamic":
                x = torch.bernoulli(x, generator=self.generator)
            if self.world_size > 1:
                share = torch.arange(len(idx), device=self.device).tensor_split(self.world_size)[self.rank]
                idx, x = idx[share], x[share]
            yield x if self.labels is None else (x, self.labels[idx])

    def state_dict(self):
        """The generator state, so a resumed run draws the same batches."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
