"""The in-memory data set every source returns: examples, optional labels and the names of the classes."""

from dataclasses import dataclass

import torch


@dataclass
class ImageDataset:
    """Examples of shape ``(N, C, H, W)`` (images; in [0, 1] for Fashion-MNIST) or ``(N, D)`` (vectors),
    integer labels of shape ``(N,)`` or None, and the class names that the labels index (or None)."""

    images: torch.Tensor
    labels: torch.Tensor = None
    class_names: tuple = None

    def __len__(self):
        return self.images.shape[0]

    def subset(self, n):
        """The first ``n`` examples."""
        return ImageDataset(self.images[:n], None if self.labels is None else self.labels[:n], self.class_names)
