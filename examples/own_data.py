"""
Train a VAE on your own RGB images, recorded so that the command line can evaluate it
=====================================================================================

Your own data come in as a *source* (:doc:`/own_data`): here an ``.npz`` file of 32x32 RGB images
with labels, written by the script itself (coloured discs, squares and bars on a dark background,
three classes). :func:`~pyrogen.data.sources.open_source` opens it and holds out a seeded tenth as the
test set; a convolutional VAE for ``(3, 32, 32)`` images trains on the rest with
:class:`~pyrogen.training.VAETrainer`, levels in [0, 1] under the relaxed Bernoulli likelihood (no
binarization; ``bernoulli-relaxed``), as Pyro's VAE tutorial scores grey levels.

The run directory's configuration records the source (``config["data"]["source"] =
source.record()``), so the command line's ``pyrogen evaluate``, ``plot`` and ``report`` read the same
images again (and refuse if the file was changed or moved; ``--data NEW_PATH`` points at a moved
copy)::

   pyrogen evaluate runs/examples/own_data/run
   pyrogen plot runs/examples/own_data/run

The script prints the test ELBO of each epoch and draws reconstructions of test images (rows of
inputs alternate with their reconstructions) and samples from the prior. With the defaults (10
epochs of 4,500 images, one thread) it ended with a test ELBO of -987.16 nats per image, and made
the figures below (the documentation build does not run it): the reconstructions keep each shape's
kind, place and size, but only a trace of its colour.

.. image:: /_static/gallery/own_data_reconstructions.png
   :alt: own data reconstructions

.. image:: /_static/gallery/own_data_samples.png
   :alt: own data samples
"""

# sphinx_gallery_thumbnail_path = '_static/gallery/own_data_samples.png'

import argparse

parser = argparse.ArgumentParser(
    description=__doc__.strip().partition("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
)
parser.add_argument("--epochs", type=int, default=10, help="passes over the training images")
parser.add_argument("--num-train", type=int, default=4500, help="training images written to the .npz")
parser.add_argument("--num-test", type=int, default=500, help="test images written to the .npz (held out by seed)")
parser.add_argument("--latent-dim", type=int, default=16, help="dimension of the code z")
parser.add_argument(
    "--threads", type=int, default=0, help="CPU threads for torch; 0 keeps torch's default of one per core"
)
parser.add_argument("--out", default="runs/examples/own_data", help="folder for the data, the run and the figures")
args = parser.parse_args()

# Imported after parsing, so that --help answers at once: importing torch takes seconds.
import os

import numpy as np
import pyro
import torch

from pyrogen.data.sources import open_source
from pyrogen.files import RunDir
from pyrogen.models import VAE
from pyrogen.plotting import plot_prior_samples, plot_reconstructions
from pyrogen.training import VAETrainer, default_config

if args.threads:
    torch.set_num_threads(args.threads)


def shapes(n, size=32, seed=0):
    """``n`` RGB images ``(n, 3, size, size)`` of uint8: a disc, a square or a bar (the label), in a random
    colour, place and size, on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, 3, n)
    for i, k in enumerate(labels):
        cy, cx = rng.uniform(8, size - 8, 2)
        r = rng.uniform(4, 8)
        if k == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        elif k == 1:
            mask = (abs(yy - cy) <= r * 0.8) & (abs(xx - cx) <= r * 0.8)
        else:
            mask = (abs(yy - cy) <= 2) & (abs(xx - cx) <= r * 1.4)
        colour = rng.integers(80, 256, 3)
        images[i] = 20
        images[i][:, mask] = colour[:, None]
    return images, labels


os.makedirs(args.out, exist_ok=True)
path = os.path.join(args.out, "shapes.npz")
images, labels = shapes(args.num_train + args.num_test)
np.savez(path, images=images, labels=labels, class_names=np.array(["disc", "square", "bar"]))

# The source: uint8 levels / 255, (N, 3, 32, 32), labels; the test images held out with split seed 0.
source = open_source(path, test_fraction=args.num_test / (args.num_train + args.num_test), split_seed=0)
train, test = source.splits()
print(f"{source.kind} {source.path}: {len(train)} training and {len(test)} test images of shape {source.shape}")

# A convolutional VAE for (3, 32, 32) images; the configuration records the source.
config = default_config(
    latent_dim=args.latent_dim, image_shape=list(source.shape), architecture="conv", likelihood="bernoulli-relaxed"
)
config["data"].update(binarize="none", source=source.record())
config["train"].update(epochs=args.epochs, batch_size=100)
config["eval"]["num_samples"] = 0  # the command line's 'pyrogen evaluate' gives log p(x)
pyro.set_rng_seed(0)
vae = VAE(**config["model"])
run_path = os.path.join(args.out, "run")
if os.path.isdir(run_path):  # a run from an earlier call of this script: start afresh
    import shutil

    shutil.rmtree(run_path)
run = RunDir.create(run_path, config, defer_config=True)  # config.json comes with the first checkpoint
trainer = VAETrainer(vae, train.images, test.images, config, run=run, progress=False)
for row in trainer.fit():
    print(f"epoch {row['epoch']}: train ELBO {row['train_elbo']:.2f}, test ELBO {row['test_elbo']:.2f} nats per image")

vae.eval()
plot_reconstructions(vae, test.images[:16], os.path.join(args.out, "own_data_reconstructions.png"))
plot_prior_samples(vae, os.path.join(args.out, "own_data_samples.png"), num=32)
print(f"figures in {args.out}; the run in {os.path.join(args.out, 'run')}")
