"""Loaders of training batches: the whole data set on the device, or streamed from disk.

:class:`DeviceLoader` keeps the whole data set on the training device and
slices shuffled minibatches there, so a training step never copies a batch
from the host. Binarization is ``"none"`` (grey levels in [0, 1]),
``"static"`` (one Bernoulli draw per pixel with a fixed seed, made once) or
``"dynamic"`` (a fresh Bernoulli draw every time an example is served, as in
Burda et al. 2015).
"""

import torch

from pyrogen.errors import DataError

BINARIZATIONS = ("none", "static", "dynamic")


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
