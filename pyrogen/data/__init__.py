"""Data: Fashion-MNIST and the loaders that serve training batches.

* :mod:`pyrogen.data.fashion_mnist`: Fashion-MNIST (the default data set) from its IDX files;
* :mod:`pyrogen.data.datasets`: :class:`~pyrogen.data.datasets.ImageDataset`, what a data set is in memory;
* :mod:`pyrogen.data.loaders`: :class:`~pyrogen.data.loaders.DeviceLoader` (the data set on the training device).
"""

from pyrogen.data.datasets import ImageDataset
from pyrogen.data.fashion_mnist import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    load_dataset,
    load_fashion_mnist,
    load_splits,
    read_idx,
)
from pyrogen.data.loaders import (
    BINARIZATIONS,
    DeviceLoader,
    check_images,
    static_binarize,
)

__all__ = [
    "BINARIZATIONS", "DATASETS", "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "DeviceLoader", "ImageDataset",
    "check_images", "load_dataset", "load_fashion_mnist", "load_splits", "read_idx", "static_binarize",
]  # fmt: skip
