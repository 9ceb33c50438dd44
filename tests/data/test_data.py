import gzip
import os

import pytest
import torch

from pyrogen.data import DeviceLoader, load_dataset, load_fashion_mnist, read_idx
from pyrogen.errors import DataError, DatasetNotFoundError
from tests.conftest import requires_fashion_mnist


@requires_fashion_mnist
def test_fashion_mnist_shapes_and_range():
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.min() == 0 and train.images.max() == 1
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    # Fashion-MNIST is balanced: 6,000 training images per class.
    assert torch.bincount(train.labels).tolist() == [6000] * 10


def test_missing_dataset_says_where_it_looked_and_how_to_install(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_fashion_mnist("train", root=tmp_path)
    message = str(e.value)
    assert str(tmp_path) in message and "apt-get install dataset-fashion-mnist" in message


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown data set 'cifar'; expected one of fashion-mnist, mnist, kmnist"):
        load_dataset("cifar")


def _write_idx(path, data, truncate=0):
    header = bytes([0, 0, 8, data.dim()]) + b"".join(n.to_bytes(4, "big") for n in data.shape)
    raw = header + data.numpy().tobytes()
    with gzip.open(path, "wb") as f:
        f.write(raw[: len(raw) - truncate])


def test_truncated_and_foreign_idx_files(tmp_path):
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    _write_idx(tmp_path / "a.gz", images)
    assert (read_idx(str(tmp_path / "a.gz")) == images.numpy()).all()
    _write_idx(tmp_path / "b.gz", images, truncate=10)
    with pytest.raises(DataError, match="is truncated or corrupt: header promises 2352 bytes"):
        read_idx(str(tmp_path / "b.gz"))
    (tmp_path / "c").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DataError, match="is not an IDX file of unsigned bytes"):
        read_idx(str(tmp_path / "c"))


def test_loader_serves_a_permutation_each_epoch():
    data = torch.arange(10.0).div(10).reshape(10, 1, 1, 1)
    loader = DeviceLoader(data, batch_size=3, seed=1)
    assert len(loader) == 4
    epochs = [torch.cat(list(loader)).flatten() for _ in range(2)]
    for served in epochs:
        assert sorted(served.tolist()) == sorted(data.flatten().tolist())
    assert not torch.equal(epochs[0], epochs[1])


def test_dynamic_binarization_resamples_and_static_does_not():
    data = torch.full((200, 1, 2, 2), 0.5)
    dynamic = DeviceLoader(data, 200, binarize="dynamic", shuffle=False)
    a, b = next(iter(dynamic)), next(iter(dynamic))
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b)
    static = DeviceLoader(data, 200, binarize="static", shuffle=False)
    c, d = next(iter(static)), next(iter(static))
    assert set(c.unique().tolist()) == {0.0, 1.0} and torch.equal(c, d)
    # A Bernoulli(0.5) draw of 800 pixels: the mean is within 4 standard errors of 0.5.
    assert abs(a.mean().item() - 0.5) < 4 * 0.5 / 800**0.5


def test_loader_state_dict_replays_the_same_batches():
    data = torch.rand(50, 1, 2, 2)
    loader = DeviceLoader(data, 7, binarize="dynamic", seed=3)
    state = loader.state_dict()
    first = list(loader)
    loader.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(first, loader))


@pytest.mark.parametrize("batch_size", [0, 11, -1, 2.5])
def test_bad_batch_size(batch_size):
    with pytest.raises(
        DataError, match=f"batch_size must be an integer between 1 and the data set size 10, got {batch_size}"
    ):
        DeviceLoader(torch.rand(10, 1, 2, 2), batch_size)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([[0.5, float("nan")]]), "data holds NaN or infinite values"),
        (torch.tensor([[0.5, float("inf")]]), "data holds NaN or infinite values"),
        (torch.tensor([[0.5, 1.5]]), r"data must lie in \[0, 1\], got values in \[0.5, 1.5\]"),
        (torch.tensor([[0, 255]], dtype=torch.uint8), "data must be a floating-point tensor in"),
    ],
)
def test_bad_data_values(bad, message):
    with pytest.raises(DataError, match=message):
        DeviceLoader(bad, 1)


@pytest.mark.cuda
def test_loader_keeps_data_on_the_gpu():
    loader = DeviceLoader(torch.rand(20, 1, 2, 2), 5, binarize="dynamic", device="cuda")
    assert all(x.is_cuda for x in loader)


def test_idx_reader_accepts_uncompressed(tmp_path):
    images = torch.randint(0, 256, (2, 4), dtype=torch.uint8)
    _write_idx(tmp_path / "x.gz", images)
    with gzip.open(tmp_path / "x.gz") as f, open(tmp_path / "x", "wb") as g:
        g.write(f.read())
    assert (read_idx(os.fspath(tmp_path / "x")) == images.numpy()).all()
