"""Own data sources (pyrogen.data.sources): every kind and shape, the split, the record, re-opening, bad data."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pyrogen.data import load_fashion_mnist
from pyrogen.data.sources import open_source, parse_image_size, reopen
from pyrogen.errors import DataError, DatasetNotFoundError
from tests.conftest import requires_fashion_mnist


def _levels(n, shape, seed=0):
    return (np.random.RandomState(seed).rand(n, *shape) * 255).astype(np.uint8)


def _write_folder(root, images, labels=None, names=("a", "b")):
    """PNGs named by their index; in class folders when ``labels`` are given."""
    for i, a in enumerate(images):
        folder = os.path.join(root, names[labels[i]]) if labels is not None else root
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(os.path.join(folder, f"{i:05d}.png"))


@pytest.mark.parametrize("shape, example", [((20, 3, 8, 6), (3, 8, 6)), ((20, 8, 6), (1, 8, 6)), ((20, 7), (7,))])
def test_arrays_of_every_shape_read_exactly(tmp_path, shape, example):
    x = np.random.RandomState(1).rand(*shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    source = open_source(tmp_path / "x.npy", test_fraction=0.25, split_seed=3)
    train, test = source.splits()
    assert source.shape == example and source.kind == "array" and source.class_names is None
    assert train.images.shape == (15,) + example and test.images.shape == (5,) + example
    # the split is the recorded seed's permutation: its first 5 are the test set, each split in file order
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    flat = torch.from_numpy(x).reshape((20,) + example)
    assert torch.equal(test.images, flat[perm[:5].sort().values])
    assert torch.equal(train.images, flat[perm[5:].sort().values])


def test_uint8_arrays_are_levels_over_255_and_npz_pt_carry_labels(tmp_path):
    x = _levels(12, (1, 5, 5))
    y = np.arange(12) % 3
    np.savez(tmp_path / "x.npz", images=x, labels=y, class_names=np.array(["p", "q", "r"]))
    torch.save({"images": torch.from_numpy(x), "labels": torch.from_numpy(y)}, tmp_path / "x.pt")
    for name, classes in (("x.npz", ("p", "q", "r")), ("x.pt", ("0", "1", "2"))):
        source = open_source(tmp_path / name, test_fraction=0.25)
        data = source.data()
        assert torch.equal(data.images, torch.from_numpy(x).float() / 255)
        assert data.labels.tolist() == y.tolist() and source.class_names == classes
        assert source.record()["value_transform"] == "uint8/255"


def test_folder_with_class_folders_labels_as_image_folder_and_reads_back_the_levels(tmp_path):
    x = _levels(10, (1, 6, 4))
    labels = [0, 1, 1, 0, 0, 1, 0, 1, 1, 1]
    _write_folder(tmp_path / "f", x, labels, names=("coat", "bag"))
    source = open_source(tmp_path / "f", test_fraction=0.2)
    data = source.data()
    # ImageFolder's classes: the sorted folder names; examples in the order of their file names
    assert source.class_names == ("bag", "coat") and source.shape == (1, 6, 4)
    assert data.labels.tolist() == [1 - k for k in labels]
    assert torch.equal(data.images, torch.from_numpy(x).float() / 255)


def test_folder_resizes_and_converts_channels(tmp_path):
    _write_folder(tmp_path / "f", _levels(2, (3, 10, 10)))
    Image.fromarray(_levels(1, (12, 8))[0]).save(tmp_path / "f" / "00002.png")
    with pytest.raises(
        DataError,
        match=r"00002.png' is 12x8 pixels but '00000.png' is 10x10; images of different "
        r"sizes need image_size \(--image-size H\[xW\]\)",
    ):
        open_source(tmp_path / "f").data()
    source = open_source(tmp_path / "f", image_size="6x5", channels=1)
    assert source.data().images.shape == (3, 1, 6, 5) and source.record()["channels"] == 1
    grey = open_source(tmp_path / "f", image_size=6, channels=3).data().images
    assert grey.shape == (3, 3, 6, 6)
    assert torch.equal(grey[2, 0], grey[2, 1])  # a grey image as RGB: three equal planes


def test_parse_image_size():
    assert parse_image_size("32") == (32, 32) and parse_image_size("32x48") == (32, 48)
    assert parse_image_size(7) == (7, 7)
    with pytest.raises(DataError, match="image_size must be H or HxW in pixels"):
        parse_image_size("32x")


def test_tables_with_a_label_column(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0, 1, 0, 1], "kind": ["x", "y", "x", "z"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    source = open_source(tmp_path / "t.csv", label_column="kind", test_fraction=0.25)
    data = source.data()
    assert source.shape == (2,) and source.class_names == ("x", "y", "z")
    assert data.images.tolist() == [[1, 0], [2, 1], [3, 0], [4, 1]] and data.labels.tolist() == [0, 1, 0, 2]
    assert source.record()["columns"] == ["a", "b"]
    frame.drop(columns="kind").to_parquet(tmp_path / "t.parquet")
    assert open_source(tmp_path / "t.parquet").data().images.shape == (4, 2)


def test_bad_data_gets_one_line_naming_the_file(tmp_path):
    pd = pytest.importorskip("pandas")
    cases = []
    pd.DataFrame({"a": [1.0, 2.0], "s": ["u", "v"]}).to_csv(tmp_path / "text.csv", index=False)
    cases.append(("text.csv", {}, r"text.csv': column 's' is not numeric; expected numeric columns only"))
    pd.DataFrame({"a": [1.0, float("nan")]}).to_csv(tmp_path / "nan.csv", index=False)
    cases.append(("nan.csv", {}, r"nan.csv' holds NaN or infinite values \(column 'a', row 1\)"))
    np.save(tmp_path / "inf.npy", np.array([[0.0, np.inf]]))
    cases.append(("inf.npy", {}, r"inf.npy' holds NaN or infinite values \(example 0 is the first\)"))
    np.save(tmp_path / "five.npy", np.zeros((2, 1, 1, 1, 1)))
    cases.append(("five.npy", {}, r"holds an array of shape \(2, 1, 1, 1, 1\); expected \(N, C, H, W\), \(N, H, W\)"))
    np.savez(tmp_path / "short.npz", images=np.zeros((4, 3)), labels=np.arange(3))
    cases.append(("short.npz", {}, r"short.npz': the labels have shape \(3,\); expected one label per example, \(4,\)"))
    os.makedirs(tmp_path / "empty")
    cases.append(("empty", {}, r"empty' holds no images"))
    (tmp_path / "x.txt").write_text("1 2 3")
    cases.append(("x.txt", {}, r"x.txt' is not a data source pyrogen reads"))
    cases.append(("inf.npy", {"image_size": 8}, r"image_size \(--image-size\) applies to a folder of images"))
    for name, options, message in cases:
        with pytest.raises(DataError, match=message) as e:
            open_source(tmp_path / name, **options).data()
        assert "\n" not in str(e.value) and str(tmp_path / name) in str(e.value)
    with pytest.raises(DatasetNotFoundError, match="no data at"):
        open_source(tmp_path / "nowhere.npy")


def test_record_is_json_and_reopens_a_moved_copy_but_refuses_a_changed_or_missing_source(tmp_path):
    x = _levels(10, (1, 4, 4))
    _write_folder(tmp_path / "f", x, [0, 1] * 5)
    source = open_source(tmp_path / "f", test_fraction=0.3, split_seed=5)
    train, test = source.splits()
    record = json.loads(json.dumps(source.record()))
    assert record["kind"] == "folder" and record["path"] == str(tmp_path / "f")
    assert record["split"] == {"seed": 5, "fraction": 0.3, "test_data": None} and record["fingerprint"]["files"] == 10
    again = reopen(record).splits()
    assert torch.equal(again[0].images, train.images) and torch.equal(again[1].labels, test.labels)
    shutil.copytree(tmp_path / "f", tmp_path / "g")  # a copy: new modification times, same content
    assert torch.equal(reopen(record, tmp_path / "g").splits()[1].images, test.images)
    shutil.rmtree(tmp_path / "f")
    with pytest.raises(DataError, match=r"the run's data '.*/f' are missing; pass --data NEW_PATH"):
        reopen(record)
    Image.fromarray(x[0, 0] ^ 1).save(tmp_path / "g" / "b" / "00001.png")
    with pytest.raises(DataError, match=r"'.*/g' have changed since the run recorded them \(.*\); pass --data NEW"):
        reopen(record, tmp_path / "g")
    np.save(tmp_path / "a.npy", x)
    record = open_source(tmp_path / "a.npy").record()
    np.save(tmp_path / "a.npy", x[:9])
    with pytest.raises(DataError, match=r"have changed .*\(9 examples of shape \(1, 4, 4\), recorded 10"):
        reopen(record)


def test_test_data_from_a_separate_source(tmp_path):
    np.savez(tmp_path / "train.npz", images=_levels(8, (2, 3, 3)), labels=np.arange(8) % 2)
    np.savez(tmp_path / "test.npz", images=_levels(4, (2, 3, 3), seed=1), labels=np.arange(4) % 2)
    source = open_source(tmp_path / "train.npz", test_data=tmp_path / "test.npz")
    train, test = source.splits()
    assert len(train) == 8 and len(test) == 4
    record = source.record()
    assert record["split"]["fraction"] is None and record["split"]["test_data"]["path"] == str(tmp_path / "test.npz")
    os.makedirs(tmp_path / "moved")
    for name in ("train.npz", "test.npz"):
        os.rename(tmp_path / name, tmp_path / "moved" / name)
    assert torch.equal(reopen(record, tmp_path / "moved" / "train.npz").splits()[1].images, test.images)
    np.savez(tmp_path / "other.npz", images=_levels(4, (1, 3, 3)))
    with pytest.raises(
        DataError,
        match=r"the test data '.*other.npz' hold examples of shape \(1, 3, 3\); the "
        r"training data '.*moved/train.npz' hold \(2, 3, 3\)",
    ):
        open_source(tmp_path / "moved" / "train.npz", test_data=tmp_path / "other.npz").splits()


def test_no_record_means_fashion_mnist():
    assert reopen(None).kind == "fashion-mnist"


@requires_fashion_mnist
def test_fashion_mnist_exported_as_png_folders_reads_back_the_built_in_tensors(tmp_path):
    n = 300
    built_in = load_fashion_mnist("test").subset(n)
    levels = (built_in.images * 255).round().to(torch.uint8).numpy()
    _write_folder(tmp_path / "test", levels, built_in.labels.tolist(), names=[f"{k}" for k in range(10)])
    data = open_source(tmp_path / "test").data()
    assert torch.equal(data.images, built_in.images) and torch.equal(data.labels, built_in.labels)
