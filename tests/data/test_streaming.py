"""The streaming loader: the batches of the device-resident loader, read by worker processes, resumed exactly."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pyrogen.data import DeviceLoader
from pyrogen.data.loaders import StreamingLoader, check_example_shape, choose_stream, make_loader
from pyrogen.data.sources import open_source
from pyrogen.errors import DataError


@pytest.fixture
def memmap(tmp_path):
    x = (np.random.RandomState(0).rand(300, 1, 4, 4) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    return open_source(tmp_path / "x.npy", test_fraction=0.2)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_are_the_device_loaders(memmap, workers):
    train, _ = memmap.splits()
    reader, _ = memmap.splits(stream=True)
    device = DeviceLoader(train.images, 32, binarize="dynamic", seed=3)
    stream = make_loader(reader, 32, binarize="dynamic", seed=3, num_workers=workers)
    assert isinstance(stream, StreamingLoader) and len(stream) == len(device) == 8
    for _ in range(2):  # two epochs: the second permutation too
        a, b = list(device), list(stream)
        assert len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


def test_streamed_folder_of_images(tmp_path):
    from PIL import Image

    x = (np.random.RandomState(1).rand(40, 5, 5) * 255).astype(np.uint8)
    for i, a in enumerate(x):
        (tmp_path / f"{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(a).save(tmp_path / f"{i % 2}" / f"{i:03d}.png")
    source = open_source(tmp_path, test_fraction=0.25)
    (train, _), (reader, _) = source.splits(), source.splits(stream=True)
    device = DeviceLoader(train.images, 8, seed=1, labels=train.labels)
    assert all(isinstance(x, torch.Tensor) for x in StreamingLoader(reader, 8, seed=1, num_workers=0))  # no labels
    stream = StreamingLoader(reader, 8, seed=1, num_workers=1, labels=reader.labels)
    for (u, y), (v, z) in zip(device, stream):
        assert torch.equal(u, v) and torch.equal(y, z)


def test_state_mid_epoch_resumes_the_same_batches(memmap):
    reader, _ = memmap.splits(stream=True)
    loader = StreamingLoader(reader, 32, binarize="dynamic", seed=7, num_workers=1)
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state["position"] == 3
    rest, following = list(it), list(loader)
    again = StreamingLoader(reader, 32, binarize="dynamic", seed=7, num_workers=0)
    again.load_state_dict(state)
    assert all(torch.equal(u, v) for u, v in zip(rest, list(again)))
    assert all(torch.equal(u, v) for u, v in zip(following, list(again)))


def test_refusals(memmap, tmp_path):
    reader, _ = memmap.splits(stream=True)
    with pytest.raises(DataError, match="static binarization draws once over the whole data set in memory"):
        StreamingLoader(reader, 10, binarize="static")
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"streaming reads a memory-mapped .npy file; '.*x.npz' is read into memory"):
        open_source(tmp_path / "x.npz", test_fraction=0.5).splits(stream=True)
    with pytest.raises(
        DataError,
        match=r"training data holds examples of shape \(28, 28\) \(as \(N, 28, 28\)\); "
        r"the model takes \(1, 28, 28\): give data of shape \(N, 1, 28, 28\)",
    ):
        check_example_shape((28, 28), (1, 28, 28))


def test_choose_stream():
    assert choose_stream(10, stream=True) and not choose_stream(2**60, stream=False)
    assert choose_stream(2**60) and not choose_stream(1)


def _vae_trainer(train, test, run=None, stream_config=None):
    import pyro

    from pyrogen.models import VAE
    from pyrogen.training import VAETrainer, default_config

    config = default_config(latent_dim=4, hidden=(32,))
    config["train"].update(epochs=2, batch_size=50, compile="off")
    config["eval"]["num_samples"] = 0
    pyro.set_rng_seed(0)
    return VAETrainer(VAE(**config["model"]), train, test, config, run=run, progress=False)


def test_a_vae_trains_bit_for_bit_alike_streamed_or_in_memory_and_resumes_exactly(tmp_path):
    from pyrogen.data import static_binarize
    from pyrogen.runs import RunDir

    np.save(tmp_path / "x.npy", (np.random.RandomState(2).rand(250, 1, 28, 28) * 255).astype(np.uint8))
    source = open_source(tmp_path / "x.npy", test_fraction=0.2)
    (train, test), (reader, _) = source.splits(), source.splits(stream=True)
    test_x = static_binarize(test.images, 12345)
    in_memory = _vae_trainer(train.images, test_x).fit()
    streamed = _vae_trainer(reader, test_x)
    assert isinstance(streamed.loader, StreamingLoader)
    rows = streamed.fit()
    key = ("train_elbo", "test_elbo", "kl")
    assert [[r[k] for k in key] for r in rows] == [[r[k] for k in key] for r in in_memory]
    first = _vae_trainer(reader, test_x, RunDir.create(tmp_path / "run", {"kind": "vae"}))
    first.fit(1)
    state = RunDir.open(tmp_path / "run").load_checkpoint()
    resumed = _vae_trainer(reader, test_x)
    resumed.load_state_dict(state)
    assert [[r[k] for k in key] for r in resumed.fit()] == [[r[k] for k in key] for r in rows]


def test_a_trainer_refuses_images_of_another_shape_than_the_models():
    images = torch.rand(100, 28, 28)
    with pytest.raises(
        DataError,
        match=r"training data holds examples of shape \(28, 28\) .* the model takes "
        r"\(1, 28, 28\)",
    ):
        _vae_trainer(images, torch.rand(10, 1, 28, 28))
    with pytest.raises(DataError, match=r"test data holds examples of shape \(3, 28, 28\)"):
        _vae_trainer(torch.rand(100, 1, 28, 28), torch.rand(10, 3, 28, 28))


def test_source_splits_cuts_sizes_and_streams_by_request(tmp_path):
    from pyrogen.data.loaders import ArrayReader
    from pyrogen.data.sources import source_splits

    x = (np.random.RandomState(0).rand(50, 1, 3, 3) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x)
    record = open_source(tmp_path / "x.npy", test_fraction=0.2).record()
    train, test = source_splits(record, train_size=7, test_size=3)
    assert train.images.shape == (7, 1, 3, 3) and test.images.shape == (3, 1, 3, 3)
    reader, _ = source_splits(record, stream=True, train_size=7)
    assert isinstance(reader, ArrayReader) and len(reader) == 7
    assert torch.equal(reader[list(range(7))], train.images)
    with pytest.raises(DataError, match=r"train_size must be between 1 and 40 \(the train examples of"):
        source_splits(record, train_size=41)
    moved = source_splits(record, path=tmp_path / "y.npy")[1]  # the same content elsewhere
    assert torch.equal(moved.images[:3], test.images)


def test_a_streamed_arrays_test_split_is_read_alone_and_equals_the_in_memory_one(tmp_path, monkeypatch):
    """Streaming is for arrays larger than memory: the test split comes from the memory-mapped rows it
    names, never from the whole array read into memory, and is the in-memory split's tensor exactly."""
    from pyrogen.data.sources import ArraySource

    x = (np.random.RandomState(1).rand(200, 1, 5, 5) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    _, in_memory = open_source(tmp_path / "x.npy", test_fraction=0.25, split_seed=4).splits()

    def whole_array(self):
        raise AssertionError("the streamed run read the whole array into memory")

    monkeypatch.setattr(ArraySource, "load", whole_array)
    _, streamed = open_source(tmp_path / "x.npy", test_fraction=0.25, split_seed=4).splits(stream=True)
    assert streamed.images.dtype == torch.float32 and torch.equal(streamed.images, in_memory.images)
    assert streamed.labels is None


def test_a_dropped_loader_stops_its_workers_cleanly(memmap):
    """Dropping a loader shuts its persistent workers down through their queues (exit code 0) at once; left
    to the cycle collector, the queues closed first, each worker waited 5 s and was then killed (-SIGTERM)."""
    import gc

    reader, _ = memmap.splits(stream=True)
    loader = StreamingLoader(reader, 32, seed=7, num_workers=1)
    assert len(list(loader)) == 8
    workers = list(loader._loader._iterator._workers)
    del loader
    gc.collect()
    assert [w.exitcode for w in workers] == [0]


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_a_reading_workers_watch_ends_it_when_the_reader_ends(pidfd):
    """The watch a streaming worker starts (pyrogen.data.loaders._exit_after) ends its process once the
    reading process has ended: by a pidfd where Linux gives one, else by a look once a second."""
    reader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    code = (
        "import os, sys\n" + ("" if pidfd else "del os.pidfd_open\n") + "from pyrogen.data.loaders import _exit_after\n"
        "print('watching', flush=True)\n"
        "_exit_after(int(sys.argv[1]))\n"
        "sys.exit(3)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    watcher = subprocess.Popen(
        [sys.executable, "-c", code, str(reader.pid)],
        env={**os.environ, "PYTHONPATH": root},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout.readline() == "watching\n"
        time.sleep(0.5)
        assert watcher.poll() is None  # the reader lives: the watch waits
        reader.kill()
        reader.wait(10)
        assert watcher.wait(10) == 0  # os._exit(0) from the watch, not the script's own exit
    finally:
        for p in (reader, watcher):
            if p.poll() is None:
                p.kill()
