"""One IWAE training step, pyrogen against pythae, same networks, same process: ms per step and their ratio.

pyrogen: :class:`pyrogen.models.VAE` (784-400-50, Softplus) trained by
:class:`pyrogen.infer.TorchSVI` with :class:`pyrogen.infer.IWAE_ELBO` (K particles,
vectorized; optionally DReG). pythae: its ``IWAE`` (``number_samples`` = K) with the
same 784-400-50 encoder and decoder (benchmarks/catalogue.py's wrapper), one step of
its own loss, ``loss.backward()`` and Adam. Both take the same batch of B dynamically
binarized Fashion-MNIST training images, Adam lr 1e-3.

Timing: ``--blocks`` interleaved blocks of ``--steps`` steps each (pyrogen, pythae,
[pyrogen DReG], then again), after two warm-up steps each, on ``--threads`` CPU
threads; the ratio is taken within each block (so load that changes between blocks
cancels), and the median over blocks is printed. Needs pythae (an optional peer, in a
side environment: ``pip install pythae``)::

    PYTHONPATH=. /work/pythae-venv/bin/python -m benchmarks.iwae_step
    PYTHONPATH=. /work/pythae-venv/bin/python -m benchmarks.iwae_step --particles 5 --blocks 10 --dreg
"""

import argparse
import os
import statistics

import torch

from benchmarks import catalogue  # the pythae wrapper with pyrogen's networks
from pyrogen.data import load_fashion_mnist
from pyrogen.infer import IWAE_ELBO, TorchSVI
from pyrogen.models import VAE


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--particles", type=int, default=50, help="K, importance samples per example")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--steps", type=int, default=5, help="steps per block and contender")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dreg", action="store_true", help="also time pyrogen's IWAE with the DReG guide gradient")
    args = p.parse_args(argv)
    if catalogue.pythae is None:
        p.error("pythae is not importable; run with the side environment's python (pip install pythae)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = load_fashion_mnist("train").images[: args.batch_size]
    x = torch.bernoulli(images)

    contenders = {}
    for name, dreg in [("pyrogen", False)] + ([("pyrogen DReG", True)] if args.dreg else []):
        vae = VAE(latent_dim=catalogue.LATENT, hidden=(catalogue.HIDDEN,))
        svi = TorchSVI(
            vae.model,
            vae.guide,
            torch.optim.Adam(vae.parameters(), lr=1e-3),
            IWAE_ELBO(num_particles=args.particles, dreg=dreg),
        )
        contenders[name] = lambda svi=svi: svi.step(x)
    config_args = argparse.Namespace()
    wrapped = catalogue._pythae("iwae")(config_args)
    wrapped.inner.n_samples = args.particles
    wrapped.inner.model_config.number_samples = args.particles
    optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-3)
    contenders["pythae"] = lambda: catalogue._pythae_step(wrapped, optimizer, x)

    times = catalogue.interleaved_times(contenders, args.blocks, args.steps)
    print(
        f"IWAE step, K = {args.particles}, batch {args.batch_size}, 784-400-50, {args.threads} CPU thread(s), "
        f"{args.blocks} interleaved blocks of {args.steps} steps; load average {os.getloadavg()[0]:.2f}"
    )
    for name, ms in times.items():
        ratio = statistics.median(a / b for a, b in zip(ms, times["pythae"]))
        print(
            f"  {name:13s} {statistics.median(ms):8.1f} ms/step (median; blocks {', '.join(f'{m:.0f}' for m in ms)})"
            f"  ratio to pythae {ratio:.2f} (median of per-block ratios)"
        )
    return times


if __name__ == "__main__":
    main()
