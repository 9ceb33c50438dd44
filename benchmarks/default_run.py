"""The README's main job, timed whole: pyrogen's default trainer against a hand-written loop.

``pyrogen train vae --epochs 10`` trains with the defaults (``--elbo auto``: the
analytic KL; ``--compile auto``: the step recorded once and replayed, since the run has
6,000 steps, fewer than ``AUTO_COMPILE_MIN_STEPS``). This
script builds the same trainer through the Python API and, after each of its
epochs, trains one epoch of the hand-written PyTorch VAE of
``benchmarks/vae_step.py`` (same 784-400-50 networks, analytic KL, fused Adam
1e-3, the same dynamically binarized batches of M = 100), so machine load hits
both alike. Training time counts the steps only (pyrogen's per-epoch
evaluation is reported apart); pyrogen's first epoch includes its recording (or compilation).

    python -m benchmarks.default_run --threads 1                 # the README's job: 10 epochs, 60,000 images
    python -m benchmarks.default_run --epochs 1 --train-size 2000 --threads 1   # a smoke run
    python -m benchmarks.default_run --threads 1 --compile on    # the same job compiled

It prints one line per epoch and the whole-run ratio pyrogen / plain, with and
without the first epoch (recording or compilation).
"""

import argparse
import time

import pyro
import torch

from benchmarks.references.plain_vae import PlainVAE  # the hand-written reference of benchmarks.vae_step
from pyrogen.config import default_config
from pyrogen.data import DeviceLoader
from pyrogen.training.vae import build_trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: all 60,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--compile",
        choices=["auto", "on", "record", "off"],
        default="auto",
        help="pyrogen's --compile (default: auto, the default of 'pyrogen train vae')",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = default_config()
    config["data"]["train_size"] = args.train_size
    config["train"].update(epochs=args.epochs, seed=args.seed, compile=args.compile)
    config["eval"]["num_samples"] = 0
    trainer = build_trainer(config, device="cpu", progress=False)
    compiled = {}

    pyro.set_rng_seed(args.seed)
    plain = PlainVAE("mlp")
    optim = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)
    loader = DeviceLoader(
        trainer.loader.data,
        config["train"]["batch_size"],
        binarize="dynamic",
        seed=args.seed + 1,
        device=torch.device("cpu"),
    )
    times = {"pyrogen": [], "plain": [], "evaluation": []}

    report = trainer.epoch_report

    def epoch_report(stats, seconds):
        compiled.setdefault("on", trainer.compile)
        start = time.perf_counter()
        row = report(stats, seconds)
        times["evaluation"].append(time.perf_counter() - start)
        times["pyrogen"].append(seconds)
        start = time.perf_counter()
        for x in loader:
            optim.zero_grad(set_to_none=True)
            plain.loss(x).backward()
            optim.step()
        times["plain"].append(time.perf_counter() - start)
        print(
            f"epoch {trainer.epoch}: pyrogen {seconds:.1f} s (test ELBO {row['test_elbo']:.2f}), "
            f"plain {times['plain'][-1]:.1f} s, pyrogen's evaluation {times['evaluation'][-1]:.1f} s",
            flush=True,
        )
        return row

    trainer.epoch_report = epoch_report
    with pyro.validation_enabled(False):
        trainer.fit()

    steps = trainer.steps_per_epoch()
    total_p, total_r = sum(times["pyrogen"]), sum(times["plain"])
    print(
        f"\n{args.epochs} epochs of {steps} steps (M = 100), torch threads {torch.get_num_threads()}, "
        f"pyrogen --elbo auto ({type(trainer.elbo).__name__}), --compile {args.compile} "
        f"({ {'on': 'compiled', 'record': 'recorded and replayed'}.get(compiled.get('on'), 'eager') })"
    )
    print("| | pyrogen s | plain s | ratio |")
    print("|---|---|---|---|")
    print(
        f"| whole run (recording or compilation included) | {total_p:.1f} | {total_r:.1f} | {total_p / total_r:.2f}x |"
    )
    if args.epochs > 1:
        rest_p, rest_r = sum(times["pyrogen"][1:]), sum(times["plain"][1:])
        print(f"| epochs 2-{args.epochs} | {rest_p:.1f} | {rest_r:.1f} | {rest_p / rest_r:.2f}x |")
    print(
        f"| ms per step, whole run | {total_p / (steps * args.epochs) * 1e3:.2f} "
        f"| {total_r / (steps * args.epochs) * 1e3:.2f} | |"
    )
    print(
        f"pyrogen's per-epoch evaluation (test ELBO and collapse diagnostics, not counted above): "
        f"{sum(times['evaluation']):.1f} s in all"
    )


if __name__ == "__main__":
    main()
