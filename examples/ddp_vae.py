"""
Data-parallel VAE training with torchrun, in your own training loop
===================================================================

Launch with ``torchrun --nproc-per-node 2 examples/ddp_vae.py`` (one process
per GPU, or several on a CPU with the gloo backend); without ``torchrun`` it
runs as a single process. Every process draws the same permutation of the
data and keeps its contiguous share of each global minibatch of ``--batch-size``
images (:class:`~pyrogen.data.DeviceLoader` with ``rank`` and ``world_size``).
The ELBO of the global batch is the sum of the shards' ELBOs, so its
gradient is the sum of the shards' gradients:
:meth:`TorchSVI.distribute <pyrogen.infer.torch_svi.TorchSVI.distribute>`
wraps the loss in ``DistributedDataParallel``, which averages gradients over
the processes, and scales each shard's loss by the number of processes to
turn that average into the sum. One step on N processes is then one step of
a single process on the whole global batch, up to floating-point summation
order. Only rank 0 prints, evaluates and draws the figure: samples from the
prior.

With the defaults as a single process on one CPU thread (``--threads 1``;
5 epochs on all 60,000 training images) it printed a train ELBO of -246.84
nats per image in the last epoch and a test ELBO of -247.26 nats on the first
1,000 test images. The figure below was made by that run (the
documentation build does not run the script):

.. image:: /_static/gallery/ddp_vae_samples.png
   :alt: ddp vae samples
"""

# sphinx_gallery_thumbnail_path = '_static/gallery/ddp_vae_samples.png'

import argparse

parser = argparse.ArgumentParser(
    description=__doc__.strip().partition("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
)
parser.add_argument("--epochs", type=int, default=5, help="passes over the training images")
parser.add_argument("--num-train", type=int, default=60000, help="training images to use")
parser.add_argument("--num-test", type=int, default=1000, help="test images to evaluate (rank 0)")
parser.add_argument("--batch-size", type=int, default=100, help="global minibatch M, over all processes")
parser.add_argument(
    "--out", default="runs/examples/ddp_vae", help="folder for the figure of prior samples (rank 0 writes it)"
)
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
import torch
import torch.distributed as dist

from pyrogen import distributed
from pyrogen.data import DeviceLoader, load_fashion_mnist
from pyrogen.evaluation import evaluate_dataset
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE
from pyrogen.plotting import plot_prior_samples

if args.threads:
    torch.set_num_threads(args.threads)

# torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; join its group.
distributed.init_from_env()
rank, world_size = distributed.rank(), distributed.world_size()
if torch.cuda.is_available():
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
else:
    device = torch.device("cpu")
pyro.set_rng_seed(0)  # the same initial parameters on every rank (DDP also broadcasts rank 0's)

train = load_fashion_mnist("train").subset(args.num_train)
vae = VAE(latent_dim=20, hidden=(400,)).to(device)
svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-3), ReparamTrace_ELBO())
if world_size > 1:
    svi.distribute()
if rank > 0:  # each rank its own noise for z = mu + sigma * eps; rank 0 keeps a single process's
    torch.manual_seed(rank)
loader = DeviceLoader(
    train.images,
    batch_size=args.batch_size,
    binarize="dynamic",
    seed=0,
    device=device,
    rank=rank,
    world_size=world_size,
)

for epoch in range(1, args.epochs + 1):
    total = torch.zeros((), device=device)
    for x in loader:
        total += svi.step(x)  # this rank's shard: its negative ELBO, nats
    total = distributed.all_reduce_sum(total)  # the whole data set's
    if rank == 0:
        print(
            f"epoch {epoch}: train ELBO {-total.item() / len(train):.2f} nats per image "
            f"({world_size} process{'es' if world_size > 1 else ''})"
        )

if rank == 0:
    test = load_fashion_mnist("test").subset(args.num_test)
    x_test = torch.bernoulli(test.images, generator=torch.Generator().manual_seed(0)).to(device)
    result = evaluate_dataset(vae.model, vae.guide, x_test)
    print(f"test ELBO {result['elbo']:.2f} nats per image, on {len(x_test)} test images")
    os.makedirs(args.out, exist_ok=True)
    plot_prior_samples(vae, os.path.join(args.out, "ddp_vae_samples.png"), num=32)
    print(f"figure in {args.out}")
if world_size > 1:
    dist.destroy_process_group()
