"""Autoencoder versus VAE with a 2-d latent space on Fashion-MNIST: prior samples and latent maps.

Trains both with the same networks (MLP 784-400-2, Bernoulli likelihood,
dynamic binarization, Adam 1e-3, batch 100) through :func:`pyrogen.training.build_trainer`
and writes, under ``--out`` (default ``docs/_static/collapse``):

* ``prior_samples.png`` -- E[x|z] for the same 64 draws z ~ N(0, I), AE left, VAE right;
* ``latent_2d.png`` -- the codes (AE) and posterior means (VAE) of test images, coloured by class.

    python -m benchmarks.ae_vs_vae --epochs 5 --train-size 20000
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import torch
from torchvision.utils import make_grid

from pyrogen.runs import atomic_write
from pyrogen.training import build_trainer, default_config, load_data

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]


def train(kind, args):
    config = default_config(kind=kind, latent_dim=2, hidden=(400,))
    config["data"].update(train_size=args.train_size, test_size=args.test_size)
    config["train"].update(epochs=args.epochs, seed=args.seed)
    trainer = build_trainer(config, device="cpu", progress=False)
    trainer.fit()
    print(kind, trainer.metrics[-1])
    return trainer


def save_figure(fig, path):
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/_static/collapse")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    models = {kind: train(kind, args).vae.eval() for kind in ("ae", "vae")}
    _, test_x, labels = load_data(default_config()["data"] | {"test_size": args.test_size}, "cpu")
    pyro.set_rng_seed(args.seed)
    z = torch.randn(64, 2)
    with torch.no_grad():
        grids = [make_grid(models[k].decode(z), nrow=8, pad_value=1.0).permute(1, 2, 0) for k in ("ae", "vae")]
        points = {"ae": models["ae"].code(test_x), "vae": models["vae"].encode(test_x)["loc"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, grid, title in zip(axes, grids, ("autoencoder: decode(z), z ~ N(0, I)", "VAE: decode(z), z ~ N(0, I)")):
        ax.imshow(grid.numpy(), cmap="gray")
        ax.set_title(title)
        ax.axis("off")
    save_figure(fig, os.path.join(args.out, "prior_samples.png"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, kind, title in zip(axes, ("ae", "vae"), ("autoencoder codes", "VAE posterior means")):
        pts = points[kind].numpy()
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=labels.numpy(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{title}\nstd per dimension {pts.std(0)[0]:.2f}, {pts.std(0)[1]:.2f}")
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
    cbar = fig.colorbar(sc, ax=axes, ticks=range(10))
    cbar.ax.set_yticklabels(CLASSES)
    save_figure(fig, os.path.join(args.out, "latent_2d.png"))


if __name__ == "__main__":
    main()
