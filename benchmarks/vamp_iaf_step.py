"""One training step of pyrogen's VampPrior and IAF against pythae's VAMP and VAE_IAF, same process: ms and ratios.

pyrogen: :class:`pyrogen.models.VAE` (784-400-50, Softplus) with ``prior="vamp:500"``
or ``flow="iaf:2"`` (the defaults: hard-tanh pseudo-inputs; IAF steps z exp(s) + m
without context), trained by :class:`pyrogen.infer.TorchSVI` with
:class:`pyro.infer.Trace_ELBO` (rows ``pyrogen vamp``, ``pyrogen iaf``: the eager step), and
the step ``pyrogen train vae`` takes for them (rows ``... recorded``: ``--elbo auto``'s
:class:`pyrogen.infer.ReparamTrace_ELBO`, fused Adam, and ``--compile auto``'s recorded
graph, :class:`pyrogen.infer.RecordedLoss`).
pythae: its ``VAMP`` (500 components) and ``VAE_IAF`` (2 MADE blocks of one 500-unit
layer) with the same encoder and decoder (benchmarks/catalogue.py's wrapper), one step
of its own loss, ``loss.backward()`` and Adam. Same batch of B binarized Fashion-MNIST
training images, Adam lr 1e-3.

Timing as in ``benchmarks/iwae_step.py``: ``--blocks`` interleaved blocks of ``--steps``
steps per contender, after two warm-up steps each; the ratio pyrogen / pythae is taken
within each block and the median over blocks printed, so load that changes between
blocks cancels. Needs pythae (side environment)::

    PYTHONPATH=. /work/pythae-venv/bin/python -m benchmarks.vamp_iaf_step
"""

import argparse
import os
import statistics

import torch
from pyro.infer import Trace_ELBO

from benchmarks import catalogue  # the pythae wrappers with pyrogen's networks
from pyrogen.data import load_fashion_mnist
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--blocks", type=int, default=16)
    p.add_argument("--steps", type=int, default=10, help="steps per block and contender")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if catalogue.pythae is None:
        p.error("pythae is not importable; run with the side environment's python (pip install pythae)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.bernoulli(load_fashion_mnist("train").images[: args.batch_size])

    contenders = {}  # each pyrogen model next to pythae's same model
    for kind, options in [("vamp", {"prior": "vamp:500"}), ("iaf", {"flow": "iaf:2"})]:
        vae = VAE(latent_dim=catalogue.LATENT, hidden=(catalogue.HIDDEN,), **options)
        svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-3), Trace_ELBO())
        contenders[f"pyrogen {kind}"] = lambda svi=svi: svi.step(x)
        vae = VAE(latent_dim=catalogue.LATENT, hidden=(catalogue.HIDDEN,), **options)
        svi = TorchSVI(
            vae.model,
            vae.guide,
            torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True),
            ReparamTrace_ELBO(),
            compile="record",
        )
        contenders[f"pyrogen {kind} recorded"] = lambda svi=svi: svi.step(x)
        wrapped = catalogue._pythae(kind)(argparse.Namespace())
        optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-3)
        contenders[f"pythae {kind}"] = lambda w=wrapped, o=optimizer: catalogue._pythae_step(w, o, x)

    times = catalogue.interleaved_times(contenders, args.blocks, args.steps)
    print(
        f"training step, batch {args.batch_size}, 784-400-50, {args.threads} CPU thread(s), {args.blocks} "
        f"interleaved blocks of {args.steps} steps; load average {os.getloadavg()[0]:.2f}"
    )
    for name, ms in times.items():
        reference = times["pythae " + name.split()[1]]
        ratio = statistics.median(a / b for a, b in zip(ms, reference))
        print(
            f"  {name:22s} {statistics.median(ms):8.1f} ms/step (median; blocks {', '.join(f'{m:.1f}' for m in ms)})"
            f"  ratio to pythae's same model {ratio:.2f} (median of per-block ratios)"
        )
    return times


if __name__ == "__main__":
    main()
