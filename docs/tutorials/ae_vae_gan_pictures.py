"""The picture of the AE/VAE/GAN tutorial (``docs/tutorials/ae_vae_gan.rst``) at full size.

Not run by the docs build or the tests (minutes on a CPU); the committed PNG was
made by this script, with the command in the tutorial. Two rows of 32 images:

* samples: the tutorial's autoencoder and VAE (latent 2, 400 hidden units,
  5 epochs on 20,000 binarized images: the tutorial's own code and sizes,
  trained here), decoding the same prior draws; the DCGAN generator of a
  ``pyrogen train gan`` run (``--gan-run``, e.g. the run that
  ``benchmarks/gan_quality.py --keep-run`` keeps); the decoder of a
  ``pyrogen train ali`` run (``--ali-run``) on prior draws;
* reconstructions of the same 32 test images (grey levels, shown first): the
  autoencoder's decoded code, the VAE's decoded posterior mean and ALI's
  G(E(x)), the decoder's mean at the encoder's mean code.

``--ali-only`` draws ALI's panels alone (test images, G(E(x)), samples; no
``--gan-run``, nothing trained), for redrawing ALI without the other columns.

::

    python -m benchmarks.gan_quality --keep-run runs/gan-quality ...
    pyrogen train ali --out runs/ali
    python docs/tutorials/ae_vae_gan_pictures.py --gan-run runs/gan-quality --ali-run runs/ali \\
        --out docs/_static/tutorials/ae_vae_gan.png
"""

import argparse
import io

import pyro
import torch

from pyrogen.data import DeviceLoader, load_fashion_mnist
from pyrogen.files import atomic_write
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.runs import open_run

NUM_TRAIN, EPOCHS, HIDDEN, LATENT = 20000, 5, 400, 2  # the tutorial's sizes


def train_by_svi(net, train):
    """The tutorial's loop: Adam 1e-3, batch 100, dynamically binarized images."""
    svi = TorchSVI(net.model, net.guide, torch.optim.Adam(net.parameters(), lr=1e-3), ReparamTrace_ELBO())
    loader = DeviceLoader(train, batch_size=100, binarize="dynamic")
    for _ in range(EPOCHS):
        for x in loader:
            svi.step(x)
    return net.eval()


def grid(images, nrow=8):
    from torchvision.utils import make_grid

    return make_grid(images.clamp(0, 1), nrow=nrow, pad_value=1.0)[0].numpy()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gan-run", help="a `pyrogen train gan` run directory (DCGAN players)")
    p.add_argument(
        "--ali-only", action="store_true", help="draw only ALI's panels: 32 test images, their G(E(x)) and 32 samples"
    )
    p.add_argument("--ali-run", required=True, help="a `pyrogen train ali` run directory")
    p.add_argument("--out", default="ae_vae_gan.png")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.ali_only:
        return draw_ali_only(args)
    if args.gan_run is None:
        raise SystemExit("--gan-run is needed unless --ali-only")
    gan_run, ali_run = open_run(args.gan_run, "cpu"), open_run(args.ali_run, "cpu")  # refuse bad paths first
    for run, kind in ((gan_run, "gan"), (ali_run, "ali")):
        if run.kind != kind:
            raise SystemExit(f"{run.path}: a {run.kind!r} run; expected a `pyrogen train {kind}` run")
    generator, ali = gan_run.model(), ali_run.model()

    pyro.set_rng_seed(0)
    train = load_fashion_mnist("train").subset(NUM_TRAIN).images
    ae = train_by_svi(Autoencoder(latent_dim=LATENT, hidden=(HIDDEN,)), train)
    vae = train_by_svi(VAE(latent_dim=LATENT, hidden=(HIDDEN,)), train)

    x = load_fashion_mnist("test").images[:32]
    g = torch.Generator().manual_seed(1)
    z2 = torch.randn(32, LATENT, generator=g)
    with torch.no_grad():
        samples = {
            f"autoencoder (z: {LATENT})": ae.decode(z2),
            f"VAE (z: {LATENT})": vae.decode(z2),
            f"GAN, DCGAN (z: {generator.latent_dim}, {gan_run.dir.read_metrics()[-1]['epoch']} epochs)":
                generator.generate(torch.randn(32, generator.latent_dim, generator=g)),
            f"ALI (z: {ali.latent_dim}, {ali_run.dir.read_metrics()[-1]['epoch']} epochs)":
                ali.decode(torch.randn(32, ali.latent_dim, generator=g)),
        }  # fmt: skip
        recons = {
            "reconstructions of these test images": x,
            "autoencoder": ae.decode(ae.code(x)),
            "VAE": vae.decode(vae.encode(x)["loc"]),
            "ALI: G(E(x))": ali.decode(ali.encode(x)["loc"]).reshape(x.shape),
        }

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.3))
    axes = fig.subplots(2, 4)
    for row, (label, panels) in enumerate((("samples", samples), ("reconstructions", recons))):
        for ax, (name, images) in zip(axes[row], panels.items()):
            ax.imshow(grid(images.reshape(-1, 1, 28, 28)), cmap="gray", vmin=0, vmax=1)
            ax.set_title(name if row else f"{label}: {name}", fontsize=9)
            ax.set_axis_off()
    save_grey(fig, args.out)


def draw_ali_only(args):
    """ALI's panels of the picture, alone: test images, G(E(x)) and samples from prior draws."""
    ali_run = open_run(args.ali_run, "cpu")
    if ali_run.kind != "ali":
        raise SystemExit(f"{ali_run.path}: a {ali_run.kind!r} run; expected a `pyrogen train ali` run")
    ali = ali_run.model()  # eval mode: batch norm's running statistics
    x = load_fashion_mnist("test").images[:32]
    epochs = ali_run.dir.read_metrics()[-1]["epoch"]
    with torch.no_grad():
        panels = {
            "test images": x,
            f"ALI: G(E(x)) (z: {ali.latent_dim}, {epochs} epochs)": ali.decode(ali.encode(x)["loc"]).reshape(x.shape),
            "ALI: samples G(z), z ~ N(0, I)": ali.decode(
                torch.randn(32, ali.latent_dim, generator=torch.Generator().manual_seed(1))
            ),
        }

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.4))
    for ax, (name, images) in zip(fig.subplots(1, 3), panels.items()):
        ax.imshow(grid(images.reshape(-1, 1, 28, 28)), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    save_grey(fig, args.out)


def save_grey(fig, path):
    """Write ``fig`` as an 8-bit grey PNG, atomically."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    from PIL import Image

    grey = io.BytesIO()  # the figure is grey throughout: one 8-bit channel keeps the PNG small
    Image.open(io.BytesIO(buf.getvalue())).convert("L").save(grey, format="png", optimize=True)
    atomic_write(path, lambda f: f.write(grey.getvalue()))
    print(f"wrote {path} ({len(grey.getvalue()) // 1024} KB)")


if __name__ == "__main__":
    main()
