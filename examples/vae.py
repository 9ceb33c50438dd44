"""
Train a VAE on Fashion-MNIST with plain Pyro SVI
================================================

The shortest complete use of pyrogen: :class:`~pyrogen.models.vae.VAE` is a
``PyroModule`` whose ``model`` and ``guide`` go straight into
:class:`pyro.infer.SVI` with :class:`pyro.infer.Trace_ELBO`. The script trains
on dynamically binarized images, reports the test ELBO and the
importance-sampled :math:`\\log p(x)` (nats per image), and draws
reconstructions of test images (rows of inputs alternate with their
reconstructions) and samples from the prior. The tutorial
:doc:`/tutorials/vae_from_first_principles` explains each step.

With the defaults (5 epochs on all 60,000 training images, one thread of a
loaded CPU, about 7 minutes with the evaluation) it printed a train ELBO of
-246.84 nats per image in the last epoch, and on the first 1,000 test images
a test ELBO of -247.08 nats and an importance-sampled :math:`\\log p(x)` of
-243.83 nats (K = 1000).

The figures below were made by this script with its
defaults (the documentation build does not run it):

.. image:: /_static/gallery/vae_reconstructions.png
   :alt: vae reconstructions

.. image:: /_static/gallery/vae_samples.png
   :alt: vae samples
"""

# sphinx_gallery_thumbnail_path = '_static/gallery/vae_samples.png'

import argparse

parser = argparse.ArgumentParser(
    description=__doc__.strip().partition("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
)
parser.add_argument("--epochs", type=int, default=5, help="passes over the training images")
parser.add_argument("--num-train", type=int, default=60000, help="training images to use")
parser.add_argument("--num-test", type=int, default=1000, help="test images to evaluate")
parser.add_argument("--latent-dim", type=int, default=20, help="dimension of the code z")
parser.add_argument("--hidden", type=int, default=400, help="units of the hidden layer, each way")
parser.add_argument("--num-samples", type=int, default=1000, help="importance samples K for log p(x)")
parser.add_argument(
    "--threads", type=int, default=0, help="CPU threads for torch; 0 keeps torch's default of one per core"
)
parser.add_argument("--out", default="runs/examples/vae", help="folder for the figures")
args = parser.parse_args()

# Imported after parsing, so that --help answers at once: importing torch takes seconds. First, torch's
# threads are told to spin only briefly while they wait (GOMP_SPINCOUNT unless set), which acts only before
# torch loads: on a machine shared with other jobs, spinning threads stall each other (docs: performance).
from pyrogen.threads import set_wait_policy

set_wait_policy()

import os

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.data import DeviceLoader, load_fashion_mnist
from pyrogen.evaluation import evaluate_dataset
from pyrogen.models import VAE
from pyrogen.plotting import plot_prior_samples, plot_reconstructions

if args.threads:
    torch.set_num_threads(args.threads)

pyro.set_rng_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
train = load_fashion_mnist("train").subset(args.num_train)
test = load_fashion_mnist("test").subset(args.num_test)

# The model p(z) p(x|z) and the guide q(z|x): a 784-400-20 MLP each way, Bernoulli pixels.
vae = VAE(latent_dim=args.latent_dim, hidden=(args.hidden,)).to(device)
svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())

# AEVB: minibatches of M = 100 images, binarized afresh each epoch, one ELBO draw each.
loader = DeviceLoader(train.images, batch_size=100, binarize="dynamic", device=device)
for epoch in range(1, args.epochs + 1):
    total = 0.0
    for x in loader:
        total += svi.step(x)  # negative ELBO of the batch, in nats
    print(f"epoch {epoch}: train ELBO {-total / len(train):.2f} nats per image")

# The test ELBO and the K-sample importance-weighted log p(x) (Burda et al. 2016).
x_test = torch.bernoulli(test.images, generator=torch.Generator().manual_seed(0)).to(device)
result = evaluate_dataset(vae.model, vae.guide, x_test, num_samples=args.num_samples)
print(
    f"test ELBO {result['elbo']:.2f} nats, log p(x) {result['log_px']:.2f} nats "
    f"(K = {args.num_samples}), per image, on {len(x_test)} test images"
)

os.makedirs(args.out, exist_ok=True)
plot_reconstructions(vae, x_test[:16], os.path.join(args.out, "vae_reconstructions.png"))
plot_prior_samples(vae, os.path.join(args.out, "vae_samples.png"), num=32)
print(f"figures in {args.out}")
