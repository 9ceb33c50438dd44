"""How pyrogen's SVI step grows with the batch size and the latent size, and its memory per example.

For each (batch size M, latent size) the default trainer's step (``TorchSVI`` with
``ReparamTrace_ELBO`` and fused Adam on a 784-400-d MLP VAE, Bernoulli likelihood)
and the hand-written step of ``benchmarks/vae_step.py`` take turns in blocks; the
table gives pyrogen's median ms per step, its examples per second and its ratio to
the hand-written step.

Memory is counted, not sampled: the bytes of every tensor autograd saves for the
backward pass of one step (``torch.autograd.graph.saved_tensors_hooks``, each
storage once), divided by M, is the activation memory per example; parameters,
gradients and Adam's two moments are the fixed part. The largest batch that fits in
``--budget-gb`` (2 GB) is (budget - fixed) / per-example, rounded down.

    python -m benchmarks.scaling --threads 1
    python -m benchmarks.scaling --batch-sizes 100 1024 --latent-sizes 50 --blocks 4
"""

import argparse
import statistics
import time

import pyro
import torch

from benchmarks.references.plain_vae import PlainVAE  # the hand-written reference of the step benchmark
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE


def saved_bytes(loss_fn, x):
    """Bytes of the distinct storages autograd saves for backward in ``loss_fn(x)``."""
    seen = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(x)
    loss.backward()
    return sum(seen.values())


def fixed_bytes(module):
    """Parameters, their gradients and Adam's two moments: 4 copies of every parameter."""
    return 4 * sum(p.numel() * p.element_size() for p in module.parameters())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 100, 256, 1024])
    p.add_argument("--latent-sizes", type=int, nargs="+", default=[2, 50, 200])
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=6, help="timed blocks of each loop")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--budget-gb", type=float, default=2.0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.enable_validation(False)

    print(
        f"MLP 784-400-d VAE, Bernoulli, L = 1, torch threads {torch.get_num_threads()}, "
        f"{args.blocks} interleaved blocks x {args.steps} steps"
    )
    print(
        "| latent | M | pyrogen ms / step | examples / s | ratio to hand-written | "
        f"activations per example | largest M in {args.budget_gb:g} GB |"
    )
    print("|---|---|---|---|---|---|---|")
    for latent in args.latent_sizes:
        for batch in args.batch_sizes:
            x = torch.bernoulli(torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
            pyro.set_rng_seed(0)
            vae = VAE(latent_dim=latent, hidden=(400,))
            svi = TorchSVI(
                vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True), ReparamTrace_ELBO()
            )
            plain = PlainVAE("mlp", latent_dim=latent)
            plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)

            def plain_step():
                plain_opt.zero_grad(set_to_none=True)
                plain.mc_kl_loss(x).backward()
                plain_opt.step()

            loops = {"pyrogen": lambda: svi.step(x), "plain": plain_step}
            times = {k: [] for k in loops}
            for fn in loops.values():
                fn()  # warm-up
            for r in range(args.blocks):
                for name in ("pyrogen", "plain") if r % 2 == 0 else ("plain", "pyrogen"):
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        loops[name]()
                    times[name].append((time.perf_counter() - start) / args.steps)
            ms = statistics.median(times["pyrogen"]) * 1e3
            ratio = statistics.median(a / b for a, b in zip(times["pyrogen"], times["plain"]))
            elbo = ReparamTrace_ELBO()
            per_example = saved_bytes(lambda x: elbo.differentiable_loss(vae.model, vae.guide, x), x) / batch
            largest = int((args.budget_gb * 2**30 - fixed_bytes(vae)) // per_example)
            print(
                f"| {latent} | {batch} | {ms:.2f} | {batch * 1e3 / ms:.0f} | {ratio:.2f}x "
                f"| {per_example / 1024:.1f} KiB | {largest:,} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
