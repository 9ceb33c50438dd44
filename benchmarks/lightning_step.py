"""The Lightning path's training step against TorchSVI's, on the CPU, in one process: ms per step and the ratio.

Lightning: :class:`pyrogen.lightning.SVIModule` around a 784-400-50 :class:`pyrogen.models.VAE`
(``ReparamTrace_ELBO``, Adam lr 1e-3) driven by ``lightning.pytorch.Trainer`` (one CPU device, no
logger, no checkpoints, no progress bar: Lightning's loop, hooks and optimizer closure are what is
timed). TorchSVI: :class:`pyrogen.infer.TorchSVI` with the same ELBO and Adam on an identical
copy of the model. ``--compile`` sets both: ``off`` (eager, each class's default) or ``record`` (the
recorded step, the trainer's choice for a long run).
Both read the same dynamically binarized Fashion-MNIST batches of 100 from
:class:`pyrogen.data.DeviceLoader`, so the data path is the same.

Interleaving: Lightning trains ``--block`` steps, then (from a callback, Lightning's clock stopped)
TorchSVI takes ``--block`` steps, and so on for ``--blocks`` blocks after one warm-up block each; the
ratio is taken within each block, so load that changes between blocks cancels, and the median over
blocks is printed. Target: at most 1.10x.

    python -m benchmarks.lightning_step --threads 2                       # the timed run (about 40 s)
    python -m benchmarks.lightning_step --threads 2 --compile record      # both recorded
    python -m benchmarks.lightning_step --threads 2 --compile record --torchsvi-compile off
    python -m benchmarks.lightning_step --blocks 2 --block 3 --train-size 1000   # smoke run (seconds)
    python -m benchmarks.lightning_step --device cuda --precision bf16    # on a GPU (gpu_check.sh)
    python -m benchmarks.lightning_step --loop-only --blocks 300          # Lightning's own cost per step
"""

import argparse
import platform
import statistics
import time

import pyro
import torch

from pyrogen.data import DeviceLoader, load_fashion_mnist
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=200)
    p.add_argument("--block", type=int, default=10, help="steps per block and contender")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--train-size", type=int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--compile",
        choices=["off", "record"],
        default="off",
        help="both paths: TorchSVI's and SVIModule's compile (off: eager; record: the recorded step)",
    )
    p.add_argument(
        "--torchsvi-compile",
        choices=["off", "record"],
        default=None,
        help="TorchSVI's compile, where it differs from --compile (e.g. Lightning recorded against TorchSVI eager)",
    )
    p.add_argument(
        "--precision",
        choices=["32", "bf16"],
        default="32",
        help="both paths: Lightning's precision (bf16-mixed) and TorchSVI's (bf16)",
    )
    p.add_argument(
        "--loop-only",
        action="store_true",
        help="Lightning's own cost: its loop around a trivial one-parameter step against a plain loop",
    )
    args = p.parse_args(argv)

    import lightning.pytorch as pl

    from pyrogen.lightning import SVIModule

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = load_fashion_mnist("train").images
    if args.train_size:
        images = images[: args.train_size]
    images = images.to(device)
    if args.loop_only:
        return loop_only(args, images, device)
    torch.manual_seed(0)
    vae = VAE(latent_dim=50, hidden=(400,)).to(device)
    twin = VAE(latent_dim=50, hidden=(400,)).to(device)
    twin.load_state_dict(vae.state_dict())
    svi = TorchSVI(
        twin.model,
        twin.guide,
        torch.optim.Adam(twin.parameters(), lr=1e-3),
        ReparamTrace_ELBO(),
        compile=args.torchsvi_compile or args.compile,
        precision=args.precision,
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    svi_batches = DeviceLoader(images, args.batch_size, binarize="dynamic", seed=2, device=device)
    svi_iter = iter(svi_batches)

    def svi_block():
        nonlocal svi_iter
        sync()
        start = time.perf_counter()
        for _ in range(args.block):
            try:
                x = next(svi_iter)
            except StopIteration:
                svi_iter = iter(svi_batches)
                x = next(svi_iter)
            svi.step(x)
        sync()
        return time.perf_counter() - start

    times = {"lightning": [], "torchsvi": []}

    class Interleave(pl.Callback):
        def __init__(self):
            self.count, self.start = 0, None

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if self.start is None:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.count += 1
            if self.count % args.block:
                return
            sync()
            lightning = time.perf_counter() - self.start
            with pyro.validation_enabled(False):
                torchsvi = svi_block()
            if self.count > args.block:  # the first block of each is the warm-up
                times["lightning"].append(1000 * lightning / args.block)
                times["torchsvi"].append(1000 * torchsvi / args.block)
            self.start = time.perf_counter()

    module = SVIModule(vae.model, vae.guide, lr=1e-3, compile=args.compile)
    loader = DeviceLoader(images, args.batch_size, binarize="dynamic", seed=1, device=device)
    trainer = pl.Trainer(
        accelerator=args.device,
        devices=1,
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        max_steps=(args.blocks + 1) * args.block,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[Interleave()],
    )
    with pyro.validation_enabled(False):
        trainer.fit(module, loader)

    ratios = [a / b for a, b in zip(times["lightning"], times["torchsvi"])]
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else f"{args.threads} threads, {platform.machine()}"
    print(
        f"Lightning {pl.__version__} vs TorchSVI, 784-400-50 VAE, batch {args.batch_size}, compile "
        f"{args.compile} (TorchSVI {args.torchsvi_compile or args.compile}), precision {args.precision}, "
        f"{where}, {len(ratios)} blocks of {args.block} steps"
    )
    print("| path | ms per step (median) |")
    print("|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    print(
        f"Lightning / TorchSVI, median over blocks: {statistics.median(ratios):.3f}x "
        f"(blocks: {min(ratios):.3f}x to {max(ratios):.3f}x; target at most 1.10x)"
    )
    print(f"Lightning / TorchSVI, total time: {sum(times['lightning']) / sum(times['torchsvi']):.3f}x")


def loop_only(args, images, device, rounds=3):
    """Lightning's loop, hooks and optimizer closure around a step that does almost nothing (one parameter,
    no data work), against a plain loop of the same step over the same batches: ms per step, ``rounds``
    pairs of ``--blocks x --block`` steps each. The difference is what Lightning adds to every step."""
    import lightning.pytorch as pl

    class Trivial(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device=device))

        def __setattr__(self, name, value):  # as SVIModule stores Lightning's per-hook values
            if type(value) in (str, int, float, bool, type(None)) and name in self.__dict__:
                object.__setattr__(self, name, value)
            else:
                super().__setattr__(name, value)

        def training_step(self, batch, batch_idx):
            return (self.w * 1.0).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    steps = args.blocks * args.block
    print(f"Lightning {pl.__version__}'s own cost per step, a one-parameter step, {steps} steps, {rounds} rounds")
    print("| round | lightning ms | plain ms | difference ms |")
    print("|---|---|---|---|")
    for r in range(rounds):
        loader = DeviceLoader(images, args.batch_size, binarize="dynamic", seed=1, device=device)
        trainer = pl.Trainer(
            accelerator=args.device,
            devices=1,
            max_steps=steps,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
        )
        start = time.perf_counter()
        trainer.fit(Trivial(), loader)
        lightning = (time.perf_counter() - start) / steps * 1000
        w = torch.nn.Parameter(torch.zeros(1, device=device))
        optim, n = torch.optim.SGD([w], lr=0.0), 0
        start = time.perf_counter()
        while n < steps:
            for _ in loader:
                optim.zero_grad()
                (w * 1.0).sum().backward()
                optim.step()
                n += 1
                if n == steps:
                    break
        plain = (time.perf_counter() - start) / steps * 1000
        print(f"| {r + 1} | {lightning:.3f} | {plain:.3f} | {lightning - plain:.3f} |", flush=True)


if __name__ == "__main__":
    main()
