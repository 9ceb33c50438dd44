"""Time per adversarial step: pyrogen.infer.Adversarial against a hand-written PyTorch GAN loop.

Both loops train the same networks (pyrogen's DCGAN or MLP players, 28x28 images)
with the same algorithm: one discriminator update on a real batch and a fresh
fake batch (non-saturating loss, logits, Adam 2e-4 / (0.5, 0.999)), then one
generator update that reuses the fake batch with the discriminator frozen, and
the mean D(x) and D(G(z)) kept on the device. The plain loop calls the networks
directly; pyrogen's draws the fake batch by running the Generator's Pyro model
(sites "z" and "x" = Delta(G(z))) and goes through its loss objects.

Blocks of ``--steps`` steps of each loop alternate (order swapped every round),
each after its own warm-up; the figure is the median over ``--rounds`` blocks of
the time per step, and the ratio is pyrogen's median over the plain median (and,
more robust to a machine whose load drifts, the median of the ratios of adjacent blocks).

    python -m benchmarks.gan_step                       # DCGAN, batch 64
    python -m benchmarks.gan_step --architecture mlp --batch-size 64
"""

import argparse
import statistics
import time

import pyro
import torch
import torch.nn.functional as F

from pyrogen.infer import Adversarial
from pyrogen.models.gan import Generator, build_discriminator


def plain_step(g_net, d_net, opt_g, opt_d, real, latent_dim):
    z = torch.randn(real.shape[0], latent_dim, device=real.device)
    fake = g_net(z)
    opt_d.zero_grad(set_to_none=True)
    real_scores, fake_scores = d_net(real), d_net(fake.detach())
    loss_d = F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()
    loss_d.backward()
    opt_d.step()
    for p in d_net.parameters():
        p.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    loss_g = F.softplus(-d_net(fake)).mean()
    loss_g.backward()
    for p in d_net.parameters():
        p.requires_grad_(True)
    opt_g.step()
    return loss_d.detach(), loss_g.detach(), torch.sigmoid(real_scores).mean(), torch.sigmoid(fake_scores).mean()


def build(args, seed, device):
    torch.manual_seed(seed)
    gen = Generator(
        args.latent_dim, architecture=args.architecture, hidden=tuple(args.hidden), channels=args.channels
    ).to(device)
    disc = build_discriminator(args.architecture, hidden=tuple(args.hidden), channels=args.channels).to(device)
    adam = lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    return gen, disc, adam(gen.parameters()), adam(disc.parameters())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--architecture", choices=["dcgan", "mlp"], default="dcgan")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--rounds", type=int, default=15, help="timed blocks of each loop")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)
    device = torch.device(args.device)
    real = torch.rand(args.batch_size, 1, 28, 28, device=device)

    gen_a, disc_a, opt_ga, opt_da = build(args, 0, device)
    gan = Adversarial(gen_a.model, disc_a, opt_ga, opt_da, loss="nonsaturating")
    g_net, d_net, opt_gb, opt_db = build(args, 0, device)
    g_net = g_net.network  # the same network, called directly
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run_pyrogen():
        for _ in range(args.steps):
            gan.step(real)

    def run_plain():
        for _ in range(args.steps):
            plain_step(g_net, d_net, opt_gb, opt_db, real, args.latent_dim)

    loops = {"pyrogen": run_pyrogen, "plain": run_plain}
    times = {k: [] for k in loops}
    for fn in loops.values():
        fn()  # warm-up
    for r in range(args.rounds):
        for name in ("pyrogen", "plain") if r % 2 == 0 else ("plain", "pyrogen"):
            sync()
            start = time.perf_counter()
            loops[name]()
            sync()
            times[name].append((time.perf_counter() - start) / args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.architecture} on {device.type}, batch {args.batch_size}, {args.threads} thread(s), "
        f"{args.rounds} blocks x {args.steps} steps each, interleaved"
    )
    for k in loops:
        print(
            f"  {k:8s} median {1e3 * med[k]:.2f} ms/step (min {1e3 * min(times[k]):.2f}, max {1e3 * max(times[k]):.2f})"
        )
    paired = statistics.median(a / b for a, b in zip(times["pyrogen"], times["plain"]))
    print(
        f"  ratio pyrogen/plain: {med['pyrogen'] / med['plain']:.3f} of the medians, {paired:.3f} median of "
        f"the paired (adjacent-block) ratios (target <= 1.10)"
    )


if __name__ == "__main__":
    main()
