"""
A label-conditioned VAE in your own Pyro model, with pyrogen's networks
=======================================================================

A conditional VAE (Sohn, Lee and Yan, NeurIPS 2015) models
:math:`p_\\theta(x \\mid y) = \\int p(z)\\, p_\\theta(x \\mid z, y)\\, dz` with the
guide :math:`q_\\phi(z \\mid x, y)`. Here the model and the guide are the user's
own ``PyroModule``; pyrogen supplies the pieces: the image encoder
(:class:`~pyrogen.networks.MLPEncoder`), the head that turns features into the
parameters of :math:`q` (:class:`~pyrogen.distributions.families.ParameterHead`),
the decoder (:class:`~pyrogen.networks.MLPDecoder`) and the Bernoulli
likelihood. Before training, :func:`pyrogen.testing.check_model_guide` checks
the pair; training is plain :class:`pyro.infer.SVI`. The figure has one row per
class: the same eight prior draws of z decoded with each label.

Ideally each column keeps its "style" (z) while the label sets the garment.
After the default 5 epochs (ELBO -244.83 nats per image in the last epoch) the
label sets trousers and dresses, but sandals, sneakers and bags come out as
tops in several columns: the encoder sees x, so z carries much of the class
too, and nothing but the KL term (at most :math:`\\log 10` nats per image for
the class) pushes that information out of z and onto y. A rough measure --
decode 500 prior draws with each label and assign each image to the nearest
class-mean training image -- gives 20% agreement with the label for d = 10
and 29% for d = 2 (chance: 10%; 2 epochs on 20,000 images). A decoder that
ignores its label is the mirror image of :doc:`posterior collapse
</tutorials/posterior_collapse>` (where it ignores z); longer training, a
smaller code or a penalty on :math:`I(z; y)` are the usual remedies.

The figure below was made by this script with its
defaults (the documentation build does not run it):

.. image:: /_static/gallery/conditional_vae_samples.png
   :alt: conditional vae samples
"""

# sphinx_gallery_thumbnail_path = '_static/gallery/conditional_vae_samples.png'

import argparse

parser = argparse.ArgumentParser(
    description=__doc__.strip().partition("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
)
parser.add_argument("--epochs", type=int, default=5, help="passes over the training images")
parser.add_argument("--num-train", type=int, default=60000, help="training images to use")
parser.add_argument("--latent-dim", type=int, default=10, help="dimension of the code z")
parser.add_argument("--hidden", type=int, default=400, help="units of the hidden layer of each network")
parser.add_argument("--out", default="runs/examples/conditional_vae", help="folder for the figure")
parser.add_argument(
    "--threads", type=int, default=0, help="CPU threads for torch; 0 keeps torch's default of one per core"
)
args = parser.parse_args()

# Imported after parsing, so that --help answers at once: importing torch takes seconds. First, torch's
# threads are told to spin only briefly while they wait (GOMP_SPINCOUNT unless set), which acts only before
# torch loads: on a machine shared with other jobs, spinning threads stall each other (docs: performance).
from pyrogen.threads import set_wait_policy

set_wait_policy()

import os

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.nn import PyroModule, pyro_method

from pyrogen.data import FASHION_MNIST_CLASSES, DeviceLoader, load_fashion_mnist
from pyrogen.distributions import BernoulliLikelihood, ParameterHead, get_family
from pyrogen.networks import MLPDecoder, MLPEncoder
from pyrogen.testing import check_model_guide

if args.threads:
    torch.set_num_threads(args.threads)

NUM_CLASSES, IMAGE_SHAPE = 10, (1, 28, 28)


class ConditionalVAE(PyroModule):
    def __init__(self, latent_dim, hidden):
        super().__init__()
        self.latent_dim = latent_dim
        self.family = get_family("normal")  # diagonal Normal q(z|x,y), reparameterized
        self.image_features = MLPEncoder(IMAGE_SHAPE, hidden=(hidden,))
        self.head = ParameterHead(hidden + NUM_CLASSES, self.family, latent_dim)
        self.decoder = MLPDecoder(latent_dim + NUM_CLASSES, IMAGE_SHAPE, hidden=(hidden,))
        self.likelihood = BernoulliLikelihood()

    @pyro_method
    def model(self, x, y):
        """p(z) p(x | z, y); ``x`` may be None to generate one image per label in ``y``."""
        one_hot = F.one_hot(y, NUM_CLASSES).to(torch.get_default_dtype())
        with pyro.plate("data", y.shape[0]):
            prior = dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            logits = self.decoder(torch.cat([z, one_hot.expand(z.shape[:-1] + (NUM_CLASSES,))], -1))
            return pyro.sample("x", self.likelihood(logits), obs=x)

    @pyro_method
    def guide(self, x, y):
        """q(z | x, y) from the image features and the label."""
        one_hot = F.one_hot(y, NUM_CLASSES).to(torch.get_default_dtype())
        with pyro.plate("data", y.shape[0]):
            params = self.head(torch.cat([self.image_features(x), one_hot], -1))
            pyro.sample("z", self.family(**params))

    @torch.no_grad()
    def decode(self, z, y):
        """Mean images ``(B, 1, 28, 28)`` for codes z and labels y."""
        one_hot = F.one_hot(y, NUM_CLASSES).to(z.dtype)
        return self.likelihood.mean(self.decoder(torch.cat([z, one_hot], -1)))


pyro.set_rng_seed(0)
train = load_fashion_mnist("train").subset(args.num_train)
cvae = ConditionalVAE(args.latent_dim, args.hidden)

# The pair passes pyrogen's checks (sites, shapes, gradients, a few SVI steps) before training.
x0 = torch.bernoulli(train.images[:16])
check_model_guide(cvae.model, cvae.guide, x0, train.labels[:16])

svi = SVI(cvae.model, cvae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
loader = DeviceLoader(train.images, batch_size=100, binarize="dynamic", labels=train.labels)
for epoch in range(1, args.epochs + 1):
    total = sum(svi.step(x, y) for x, y in loader)
    print(f"epoch {epoch}: ELBO {-total / len(train):.2f} nats per image (log p(x|y) bound)")

# Eight codes z, each decoded with every label: rows are classes, columns share a z.
z = torch.randn(8, args.latent_dim).repeat(NUM_CLASSES, 1)
y = torch.arange(NUM_CLASSES).repeat_interleave(8)
images = cvae.decode(z, y)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

os.makedirs(args.out, exist_ok=True)
fig, ax = plt.subplots(figsize=(4.2, 5.4))
ax.imshow(make_grid(images, nrow=8, padding=1, pad_value=1.0)[0].numpy(), cmap="gray_r")
ax.set_yticks([15 + 29 * i for i in range(NUM_CLASSES)], FASHION_MNIST_CLASSES, fontsize=7)
ax.set_xticks([])
ax.set_title("p(x | z, y): columns share z, rows share y", fontsize=8)
fig.savefig(os.path.join(args.out, "conditional_vae_samples.png"), dpi=80, bbox_inches="tight")
print(f"figure in {args.out}")
