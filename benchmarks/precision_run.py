"""The default VAE trained at each precision, same seed: training seconds per epoch and test ELBO.

For each ``--precisions`` value (``32``, ``bf16``, ``fp16``) builds the default trainer
(784-400-50 VAE, batch 100, ``--compile off`` so that every precision runs the same eager
step; mixed precision never records) with ``config["train"]["precision"]`` set, trains
``--epochs`` epochs from the same seed and prints the mean training time of the epochs after the
first, its ratio to float32's, and the test ELBO after the last epoch with its difference from
float32's (nats per image). A precision the trainer refuses is a row saying why.

    python -m benchmarks.precision_run --device cuda --epochs 3            # on a GPU (gpu_check.sh)
    python -m benchmarks.precision_run --epochs 1 --train-size 1000 --test-size 500   # CPU smoke run
"""

import argparse
import platform

import torch

from pyrogen.config import default_config
from pyrogen.errors import PyrogenError
from pyrogen.training.vae import build_trainer


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--precisions", nargs="+", default=["32", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for precision in args.precisions:
        config = default_config()
        config["data"].update(train_size=args.train_size, test_size=args.test_size)
        config["train"].update(epochs=args.epochs, compile="off", precision=precision)
        config["eval"]["num_samples"] = 0
        try:
            trainer = build_trainer(config, device=args.device, progress=False)
            rows = trainer.fit()
        except PyrogenError as e:
            results[precision] = str(e)
            continue
        later = [r["seconds"] for r in rows[1:]] or [rows[0]["seconds"]]
        results[precision] = (sum(later) / len(later), rows[-1]["test_elbo"])
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.machine()
    print(f"precision run: {args.epochs} epochs, 784-400-50 VAE, batch 100, eager step, {device}")
    print("| precision | s per epoch | vs 32 | test ELBO | minus 32's |")
    print("|---|---|---|---|---|")
    base = results.get("32") if isinstance(results.get("32"), tuple) else None
    for precision, result in results.items():
        if not isinstance(result, tuple):
            print(f"| {precision} | refused: {result} | | | |")
            continue
        seconds, elbo = result
        ratio = f"{seconds / base[0]:.2f}x" if base else ""
        diff = f"{elbo - base[1]:+.2f}" if base else ""
        print(f"| {precision} | {seconds:.2f} | {ratio} | {elbo:.2f} | {diff} |")


if __name__ == "__main__":
    main()
