"""A Fashion-MNIST feature network trained by pyrogen, cached and checked by hash.

The Fréchet Inception distance (Heusel et al. 2017) and improved precision and
recall (Kynkäänniemi et al. 2019) compare real and generated images in the
feature space of a pretrained classifier. No Inception weights can be
downloaded here, and Inception features of 28x28 grey images are a poor fit
anyway, so pyrogen trains its own small convolutional classifier on the
Fashion-MNIST training set with a fixed, seeded recipe (:data:`FEATURE_RECIPE`)
and uses its penultimate layer (128 ReLU units) as the feature space.

The weights are cached in the user's cache directory (:func:`cache_dir`) as
``fashion_mnist_features.pt`` beside a manifest ``fashion_mnist_features.json``
holding the file's SHA-256 hash, the recipe and the test accuracy. Loading
recomputes the hash and compares it with the manifest, loads the state dict
with ``torch.load(..., weights_only=True)``, and refuses (or, when asked,
retrains) a missing, tampered, truncated or stale file. Both files are
written atomically, the manifest last, so a crash never leaves a manifest
that vouches for half-written weights.

Train or refresh the cached network from the command line with::

    pyrogen train features            # --force to retrain, --cache-dir DIR

Scores computed in different feature spaces are not comparable: the manifest's
hash identifies the network, and :func:`pyrogen.evaluation.evaluate_samples`
reports its first 12 hex digits with every score.
"""

import math
import os
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from pyrogen.models.features import (  # noqa: F401  (re-exported: the network and its file format)
    FEATURE_DIM,
    FEATURE_NET_NAME,
    FashionMNISTClassifier,
    FeatureNetworkError,
    cache_dir,
    default_paths,
    load_network,
    read_manifest,
    save_network,
    sha256_file,
)

TRAIN_COMMAND = "pyrogen train features"
"""The command that trains and caches the default feature network."""

FEATURE_RECIPE = {
    "version": 2,
    "architecture": "conv5x5s2(16)-bn-conv3x3s2(32)-bn-fc(128)-dropout(0.2)-fc(10)",
    "data": "fashion-mnist train (60000), grey levels in [0, 1]",
    "optimizer": "Adam",
    "lr": 3e-3,
    "lr_schedule": "cosine to 0",
    "batch_size": 128,
    "epochs": 4,
    "seed": 0,
}
"""How the default feature network is trained; a cached network made by another recipe is stale."""


@torch.no_grad()
def classifier_accuracy(classifier, images, labels, batch_size=1000):
    """Fraction of ``images`` whose arg-max logit is the label."""
    classifier.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += (classifier(images[i : i + batch_size]).argmax(-1) == labels[i : i + batch_size]).sum().item()
    return correct / len(images)


def train_classifier(train_images, train_labels, test_images=None, test_labels=None, recipe=None, progress=True):
    """Train :class:`FashionMNISTClassifier` by ``recipe`` (default :data:`FEATURE_RECIPE`).

    Seeded: the same recipe, data, PyTorch build and thread count give the same
    weights. Adam with a cosine learning-rate decay to 0, cross-entropy loss.

    :returns: ``(classifier, info)`` with ``info`` = the recipe plus
        ``test_accuracy`` (when test data are given) and ``train_seconds``.
    """
    recipe = dict(FEATURE_RECIPE if recipe is None else recipe)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, shuffling and dropout; the caller's RNG untouched
        torch.manual_seed(recipe["seed"])
        return _train_classifier(train_images, train_labels, test_images, test_labels, recipe, progress)


def _train_classifier(train_images, train_labels, test_images, test_labels, recipe, progress):
    classifier = FashionMNISTClassifier()
    gen = torch.Generator().manual_seed(recipe["seed"])
    opt = torch.optim.Adam(classifier.parameters(), lr=recipe["lr"])
    n, bs = len(train_images), recipe["batch_size"]
    steps_per_epoch = math.ceil(n / bs)
    total = recipe["epochs"] * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    start = time.perf_counter()
    for epoch in range(recipe["epochs"]):
        classifier.train()
        perm = torch.randperm(n, generator=gen)
        running = 0.0
        bar = tqdm(
            total=steps_per_epoch, desc=f"epoch {epoch + 1}/{recipe['epochs']}", disable=not progress, leave=False
        )
        with bar:
            for step in range(steps_per_epoch):
                idx = perm[step * bs : (step + 1) * bs]
                loss = nn.functional.cross_entropy(classifier(train_images[idx]), train_labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.item()
                if (step + 1) % 20 == 0 or step + 1 == steps_per_epoch:
                    bar.set_postfix(loss=f"{running / (step + 1):.4f}")
                    bar.update(step + 1 - bar.n)
                    if step + 1 == steps_per_epoch:
                        bar.refresh()  # the whole epoch shown, whatever tqdm's refresh interval skipped
        line = f"epoch {epoch + 1}/{recipe['epochs']}: train loss {running / steps_per_epoch:.4f}"
        if test_images is not None:
            line += f", test accuracy {classifier_accuracy(classifier, test_images, test_labels):.4f}"
        if progress:
            tqdm.write(line)
    classifier.eval()
    info = {"recipe": recipe, "train_seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__}
    if test_images is not None:
        info["test_accuracy"] = classifier_accuracy(classifier, test_images, test_labels)
    return classifier, info


def train_feature_network(directory=None, progress=True):
    """Train the default classifier on Fashion-MNIST by :data:`FEATURE_RECIPE` and cache it.

    :param str directory: where to cache it (default :func:`cache_dir`).
    :returns: ``(classifier, manifest)``; ``manifest["test_accuracy"]`` is the
        accuracy on the 10,000 test images.
    """
    from pyrogen.data import load_fashion_mnist

    train = load_fashion_mnist("train")
    test = load_fashion_mnist("test")
    classifier, info = train_classifier(train.images, train.labels, test.images, test.labels, progress=progress)
    manifest = save_network(classifier, *default_paths(directory), info=info)
    return classifier, manifest


def load_classifier(directory=None, train_if_missing=False, progress=True):
    """The cached default classifier and its manifest, verified by hash and recipe.

    :param str directory: the cache directory (default :func:`cache_dir`).
    :param bool train_if_missing: retrain (a few minutes on a CPU) when the
        cache is missing, tampered with or made by another recipe, instead of raising.
    :raises FeatureNetworkError: when the cache is unusable and
        ``train_if_missing`` is false; the message names the command that trains it.
    """
    path, manifest_path = default_paths(directory)
    classifier = FashionMNISTClassifier()
    try:
        # the recipe first: a network of another recipe may have another architecture, whose
        # weights would not fit (hash-checked here and again by load_network)
        manifest = read_manifest(manifest_path, path)
        if manifest.get("recipe") != FEATURE_RECIPE:
            raise FeatureNetworkError(
                f"the cached feature network {path!r} was trained by another recipe "
                f"(version {manifest.get('recipe', {}).get('version')!r}, current {FEATURE_RECIPE['version']})"
            )
        manifest = load_network(classifier, path, manifest_path)
    except FeatureNetworkError as e:
        if not train_if_missing:
            where = "" if directory is None else f" (with PYROGEN_CACHE={os.fspath(directory)!r})"
            raise FeatureNetworkError(f"{e}; train it with `{TRAIN_COMMAND}`{where}") from e
        if progress:
            print(f"{e}; retraining the feature network ({TRAIN_COMMAND})", flush=True)
        classifier, manifest = train_feature_network(directory, progress=progress)
    return classifier.eval(), manifest


def load_feature_network(directory=None, train_if_missing=False, progress=True):
    """The default feature network: images ``(N, 1, 28, 28)`` in [0, 1] -> features ``(N, 128)``.

    The penultimate layer of the cached :class:`FashionMNISTClassifier`, in
    eval mode, with ``.sha256`` (the weights' hash) and ``.test_accuracy``
    attributes. Arguments as in :func:`load_classifier`.
    """
    classifier, manifest = load_classifier(directory, train_if_missing, progress)
    net = classifier.features
    net.sha256 = manifest["sha256"]
    net.test_accuracy = manifest.get("test_accuracy")
    return net
