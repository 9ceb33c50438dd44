"""Loaders of training batches: the whole data set on the device, or streamed from disk.

:class:`DeviceLoader` keeps the whole data set on the training device and
slices shuffled minibatches there, so a training step never copies a batch
from the host. Binarization is ``"none"`` (grey levels in [0, 1]),
``"static"`` (one Bernoulli draw per pixel with a fixed seed, made once) or
``"dynamic"`` (a fresh Bernoulli draw every time an example is served, as in
Burda et al. 2015).
"""

import functools
import os
import select
import threading
import time
import weakref

import numpy as np
import torch

from pyrogen.checks import is_integer
from pyrogen.errors import DataError
from pyrogen.threads import available_cores

BINARIZATIONS = ("none", "static", "dynamic")


def check_images(x, name="x"):
    """Check a batch of images: floating point, finite, values in [0, 1].

    :raises DataError: naming ``name`` and what is wrong.
    """
    check_finite(x, name, example="image", values=" in [0, 1]")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise DataError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


LOADER_VALUES = ("unit-interval", "any")
"""What :class:`DeviceLoader` accepts: images in [0, 1], or any finite values."""


def check_finite(x, name="x", example="example", values=""):
    """Check a batch of examples of any values: a non-empty, finite, floating-point tensor.

    ``example`` and ``values`` word the messages (:func:`check_images` says "image" and " in [0, 1]").

    :raises DataError: naming ``name`` and what is wrong.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DataError(f"{name} must be a floating-point tensor{values}, got dtype {x.dtype}")
    if x.dim() == 0 or x.shape[0] == 0 or x.numel() == 0:
        raise DataError(f"{name} must hold at least one {example}, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{name} holds NaN or infinite values")


def static_binarize(x, seed=0):
    """One fixed Bernoulli draw per pixel: ``x_bin ~ Bernoulli(x)`` with a seeded generator.

    :param torch.Tensor x: floating-point probabilities in [0, 1].
    :raises DataError: when ``x`` is not such a tensor.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DataError(
            f"static_binarize needs a floating-point tensor of probabilities in [0, 1], got "
            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        low, high = x.min().item(), x.max().item()
        raise DataError(
            f"static_binarize needs probabilities in [0, 1], got values from {low:g} to {high:g} "
            "(scale the images to [0, 1] first)"
        )
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
    :param str values: ``"unit-interval"`` (the default): the data must be images in [0, 1];
        ``"any"``: any finite values (a table, counts), whose support the likelihood checks;
        binarization needs ``"unit-interval"``.
    """

    def __init__(
        self,
        data,
        batch_size,
        binarize="none",
        shuffle=True,
        drop_last=False,
        seed=0,
        device=None,
        labels=None,
        rank=0,
        world_size=1,
        values="unit-interval",
    ):
        if values not in LOADER_VALUES:
            raise DataError(f"values must be one of {LOADER_VALUES}, got {values!r}")
        if values == "any" and binarize == "none":
            check_finite(data, "data")
        else:
            check_images(data, "data")
        n = data.shape[0]
        if not is_integer(batch_size) or not 1 <= batch_size <= n:
            raise DataError(f"batch_size must be an integer between 1 and the data set size {n}, got {batch_size!r}")
        if binarize not in BINARIZATIONS:
            raise DataError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
        device = torch.device(device) if device is not None else data.device
        data = data.to(device)
        if binarize == "static":
            data = static_binarize(data, seed)
        self.data = data
        self.labels = None if labels is None else labels.to(device)
        self.batch_size = int(batch_size)
        self.binarize = binarize
        if not is_integer(world_size) or world_size < 1:
            raise DataError(f"world_size must be a positive integer, got {world_size!r}")
        if not is_integer(rank) or not 0 <= rank < world_size:
            raise DataError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if batch_size < world_size:
            raise DataError(f"batch_size {batch_size} is smaller than the number of processes {world_size}")
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = int(rank), int(world_size)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    @property
    def device(self):
        return self.data.device

    @property
    def num_examples(self):
        return self.data.shape[0]

    @property
    def example_shape(self):
        return tuple(self.data.shape[1:])

    def examples(self, idx):
        """The examples at ``idx`` (a tensor of positions on the device)."""
        return self.data[idx]

    def sample(self, n):
        """The first ``n`` examples (for checks of their values)."""
        return self.data[:n]

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


def check_example_shape(shape, expected, name="training data"):
    """Refuse examples whose shape is not the model's, e.g. ``(28, 28)`` or ``(3, 28, 28)`` for ``(1, 28, 28)``.

    :param shape: one example's shape (the data's shape without its first dimension).
    :param expected: the model's ``image_shape``.
    :raises DataError: naming ``name``, both shapes and what to pass.
    """
    shape, expected = tuple(shape), tuple(expected)
    if shape != expected:
        n = "N"
        raise DataError(
            f"{name} holds examples of shape {shape} (as ({n}, {', '.join(map(str, shape))})); "
            f"the model takes {expected}: give data of shape ({n}, {', '.join(map(str, expected))}) "
            "or build the model for this shape"
        )


STREAM_MEMORY_FRACTION = 0.5
"""Data whose float32 tensor is larger than this fraction of the available memory (the host's, and
a CUDA device's free memory when training there) are streamed from disk unless told otherwise."""


def available_memory(device=None):
    """Bytes of memory available for the data set: the host's ``MemAvailable`` (``/proc/meminfo``; the
    physical memory elsewhere), and on a CUDA device the smaller of that and the device's free memory."""
    host = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except OSError:
        pass
    if host is None:
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device is not None and torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return min(host, free)
    return host


def choose_stream(nbytes, device=None, stream=None):
    """Whether to stream data of ``nbytes`` (float32) bytes: ``stream`` when True or False, else whether
    they exceed :data:`STREAM_MEMORY_FRACTION` of :func:`available_memory`."""
    if stream is not None:
        return bool(stream)
    return nbytes > STREAM_MEMORY_FRACTION * available_memory(device)


class ArrayReader:
    """The examples of a ``.npy`` file, memory-mapped in each process that reads them (a loader's workers).

    ``reader[positions]`` returns the float32 examples at ``positions`` (a sequence of ints into this
    reader, i.e. into ``indices`` when given) as ``(B, *shape)``; ``uint8`` values are divided by 255.
    """

    def __init__(self, path, shape, labels=None, indices=None):
        self.path, self.shape = path, tuple(shape)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._n = None
        self._array = None
        if self.indices is None:
            self._n = np.load(path, mmap_mode="r").shape[0]
        self.file_labels = labels  # of every example in the file
        self.labels = None if labels is None else (labels if indices is None else labels[torch.as_tensor(indices)])

    def __len__(self):
        return len(self.indices) if self.indices is not None else self._n

    def __getstate__(self):
        return {**self.__dict__, "_array": None}  # each worker maps the file itself

    def subset(self, n):
        """The first ``n`` examples."""
        indices = np.arange(len(self)) if self.indices is None else self.indices
        return ArrayReader(self.path, self.shape, self.file_labels, indices[:n])

    def __getitem__(self, positions):
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        rows = np.asarray(positions, dtype=np.int64)
        if self.indices is not None:
            rows = self.indices[rows]
        order = np.argsort(rows, kind="stable")  # read the file forwards
        values = np.empty((len(rows),) + self._array.shape[1:], dtype=self._array.dtype)
        values[order] = self._array[rows[order]]
        x = torch.from_numpy(values)
        x = x.float().div_(255.0) if values.dtype == np.uint8 else x.float()
        x = x.reshape((len(rows),) + self.shape)
        if not torch.isfinite(x).all():
            raise DataError(f"{self.path!r} holds NaN or infinite values (among examples {rows[:5].tolist()}...)")
        return x


class FolderReader:
    """The images of a :class:`~pyrogen.data.sources.FolderSource`, decoded where they are read (a loader's
    workers); ``reader[positions]`` is ``(B, C, H, W)`` float32 in [0, 1]."""

    def __init__(self, source, indices=None):
        self.source = source
        self.shape = tuple(source.shape)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.labels = (
            None
            if source.labels is None
            else (source.labels if indices is None else source.labels[torch.as_tensor(indices)])
        )

    def __len__(self):
        return len(self.indices) if self.indices is not None else self.source.num_examples

    def subset(self, n):
        """The first ``n`` examples."""
        return FolderReader(self.source, (np.arange(len(self)) if self.indices is None else self.indices)[:n])

    def __getitem__(self, positions):
        rows = np.asarray(positions, dtype=np.int64)
        if self.indices is not None:
            rows = self.indices[rows]
        return torch.stack([self.source.read_image(int(i)) for i in rows]).float().div_(255.0)


def is_reader(data):
    """Whether ``data`` is a streaming reader (:class:`ArrayReader`, :class:`FolderReader`) rather than a tensor."""
    return isinstance(data, (ArrayReader, FolderReader))


class _Batches(torch.utils.data.Sampler):
    """The index lists of the loader's current epoch, from its position on (read in the main process).

    It holds the loader by a weak reference: a loader in no reference cycle is freed as soon as it is
    dropped, and with it its DataLoader's persistent workers, told to stop through their index queues. Freed
    instead by the cycle collector, which first closes those queues' feeder threads (multiprocessing's own
    finalizers), the workers never hear the stop and DataLoader waits 5 s for each before killing it.
    """

    def __init__(self, loader):
        self._loader = weakref.ref(loader)

    @property
    def loader(self):
        return self._loader()

    def __len__(self):
        loader = self.loader
        return len(loader) - loader.position

    def __iter__(self):
        loader = self.loader
        order, b, start, stop = loader._order, loader.batch_size, loader.position, len(loader)
        del loader
        for i in range(start, stop):
            yield order[i * b : (i + 1) * b].tolist()


def _worker_context():
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "numpy", "pyrogen.data.loaders"])  # imported once, in the server
    return context


def _worker_init(reader_pid, _worker_id):
    """A worker's start: one torch thread, and a watch that ends the worker when the process reading its
    batches (``reader_pid``) ends. A worker started by the forkserver is the server's child, and torch's
    own check of a worker (is its parent alive?) watches the server: after a killed run the workers, and
    the server they keep open, would wait on for good."""
    torch.set_num_threads(1)
    threading.Thread(target=_exit_after, args=(reader_pid,), name="pyrogen-reader-watch", daemon=True).start()


def _exit_after(pid):
    """Wait until process ``pid`` ends (a pidfd where Linux has one, else a look once a second), then exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # it has ended already
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
            time.sleep(1.0)
    select.select([fd], [], [])  # readable once the process has ended
    os._exit(0)


class StreamingLoader:
    """Shuffled minibatches read from disk by :class:`torch.utils.data.DataLoader` worker processes.

    For data that do not fit in memory: a memory-mapped ``.npy`` (:class:`ArrayReader`) or a folder of
    images decoded in the workers (:class:`FolderReader`). It serves exactly the batches that
    :class:`DeviceLoader` would serve from the same data and seed on the same device: one permutation per
    epoch and the dynamic binarization are drawn from the loader's generator on the device, in the
    same order. Its state (the generator, the epoch's permutation seed and the position in the epoch)
    resumes a run bit for bit.

    :param reader: an :class:`ArrayReader` or :class:`FolderReader`.
    :param int batch_size: examples per batch.
    :param str binarize: ``"none"`` or ``"dynamic"`` (``"static"``, one draw over the whole data set
        in memory, is refused).
    :param int num_workers: worker processes (0: read in this process). Default: one less than the
        cores the process can use (:func:`pyrogen.threads.available_cores`: its CPUs, at most its CPU
        quota), between 1 and 4.
    :param int prefetch_factor: batches each worker reads ahead.
    """

    def __init__(
        self,
        reader,
        batch_size,
        binarize="none",
        shuffle=True,
        drop_last=False,
        seed=0,
        device=None,
        labels=None,
        rank=0,
        world_size=1,
        num_workers=None,
        prefetch_factor=4,
    ):
        n = len(reader)
        if not is_integer(batch_size) or not 1 <= batch_size <= n:
            raise DataError(f"batch_size must be an integer between 1 and the data set size {n}, got {batch_size!r}")
        if binarize not in BINARIZATIONS:
            raise DataError(f"binarize must be one of {BINARIZATIONS}, got {binarize!r}")
        if binarize == "static":
            raise DataError(
                "static binarization draws once over the whole data set in memory; "
                "a streamed data set takes binarize 'dynamic' or 'none'"
            )
        if world_size != 1 or rank != 0:
            raise DataError("a streamed data set trains in a single process; run it without torchrun")
        if num_workers is None:
            num_workers = max(1, min(4, available_cores() - 1))
        self.reader, self.batch_size, self.binarize = reader, int(batch_size), binarize
        self.shuffle, self.drop_last = shuffle, drop_last
        self.labels = labels  # served beside each batch when given (the reader's own: reader.labels)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self.generator = torch.Generator(device=self._device).manual_seed(seed)
        self.position, self._order, self._epoch_state = 0, None, None
        self.num_workers = num_workers
        self._loader = torch.utils.data.DataLoader(
            reader,
            batch_size=None,
            sampler=_Batches(self),
            num_workers=num_workers,
            pin_memory=self._device.type == "cuda",
            persistent_workers=num_workers > 0,
            # workers started afresh, not forked: a fork would inherit the run directory's lock (and every
            # other open file), holding it after a killed run until the workers noticed
            multiprocessing_context=_worker_context() if num_workers > 0 else None,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            worker_init_fn=functools.partial(_worker_init, os.getpid()) if num_workers > 0 else None,
            generator=torch.Generator().manual_seed(seed),
        )  # its workers' seeds drawn from it, not the global stream

    @property
    def device(self):
        return self._device

    @property
    def num_examples(self):
        return len(self.reader)

    @property
    def example_shape(self):
        return tuple(self.reader.shape)

    def __len__(self):
        n = len(self.reader)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _draw_order(self):
        n = len(self.reader)
        self._epoch_state = self.generator.get_state()
        if self.shuffle:
            order = torch.randperm(n, device=self._device, generator=self.generator)
        else:
            order = torch.arange(n, device=self._device)
        self._order = order.cpu()

    def __iter__(self):
        if self.position == 0:
            self._draw_order()
        b = self.batch_size
        for x in self._loader:
            i = self.position
            x = x.to(self._device, non_blocking=True)
            if self.binarize == "dynamic":
                x = torch.bernoulli(x, generator=self.generator)
            self.position += 1
            if self.position == len(self):
                self.position, self._epoch_state = 0, None
            if self.labels is None:
                yield x
            else:
                yield x, self.labels[self._order[i * b : (i + 1) * b]].to(self._device)

    def examples(self, idx):
        """The examples at ``idx`` (positions in the data set), read in this process, on the device."""
        return self.reader[idx.cpu().tolist()].to(self._device)

    def sample(self, n):
        """The first ``n`` examples (for checks of their values), in memory."""
        return self.reader[list(range(min(n, len(self.reader))))]

    def state_dict(self):
        """The generator, and mid-epoch the epoch's permutation seed and the position, so a resumed run
        serves the same batches."""
        state = {"generator": self.generator.get_state(), "position": self.position}
        if self.position:
            state["epoch_generator"] = self._epoch_state
        return state

    def load_state_dict(self, state):
        self.position = state.get("position", 0)
        if self.position:
            self.generator.set_state(state["epoch_generator"])
            self._draw_order()
        self.generator.set_state(state["generator"])


def make_loader(data, batch_size, **options):
    """A :class:`DeviceLoader` for a tensor, a :class:`StreamingLoader` for a reader (see :func:`is_reader`)."""
    if is_reader(data):
        return StreamingLoader(data, batch_size, **options)
    options.pop("num_workers", None)
    return DeviceLoader(data, batch_size, **options)
