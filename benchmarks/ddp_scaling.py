"""Data-parallel scaling of ``pyrogen train vae`` (or ``gan``) from 1 to N processes under torchrun.

Each configuration runs the real command line,

    torchrun --nproc-per-node N -m pyrogen train vae --out RUN --epochs E --eval-samples 0 ...

(``--kind gan``: ``pyrogen train gan --architecture mlp``) with the machine's
cores split evenly between the processes (``OMP_NUM_THREADS``), the same global
minibatch and the same data, and reads the training time
of each epoch from the run's ``metrics.csv`` (rank 0 writes it; the test-set
evaluation at the end of an epoch is not in it). The first epoch is left out
when there are several (it pays for start-up). Prints a Markdown table of
seconds per epoch, training examples per second and speed-up over one process.

    python -m benchmarks.ddp_scaling --processes 1 2 --epochs 3
    python -m benchmarks.ddp_scaling --kind gan --batch-size 64 --epochs 3

On the CPU the gloo backend averages gradients; with N processes sharing the
same cores, the speed-up measures how well the per-process Python overhead
(Pyro's tracing) overlaps, not more arithmetic throughput.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile


def run(processes, args, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        command = [
            os.path.join(os.path.dirname(sys.executable), "torchrun"),
            "--standalone",
            "--nproc-per-node",
            str(processes),
            "-m",
            "pyrogen",
            "train",
            args.kind,
            "--out",
            out,
            "--epochs",
            str(args.epochs),
            "--no-progress",
            "--device",
            "cpu",
            "--batch-size",
            str(args.batch_size),
        ]
        command += ["--eval-samples", "0"] if args.kind == "vae" else ["--architecture", "mlp"]
        if args.train_size:
            command += ["--train-size", str(args.train_size)]
        if args.compile:
            if args.kind != "vae":
                raise SystemExit("--compile applies to the VAE")
            command.append("--compile")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "metrics.csv")) as f:
            rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows]
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=["vae", "gan"], default="vae")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100, help="global minibatch M")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--compile", action="store_true", help="train with --compile")
    args = parser.parse_args()
    examples = args.train_size or 60000
    results = {}
    for n in args.processes:
        threads = max(1, args.cores // n)
        results[n] = (threads, run(n, args, threads))
        print(f"{n} process(es) x {threads} thread(s): {results[n][1]:.2f} s per epoch", flush=True)
    base = results[args.processes[0]][1]
    print(
        f"\n{args.kind}, Fashion-MNIST, {examples} training images, M = {args.batch_size}, {args.cores} cores, "
        f"{'compiled' if args.compile else 'eager'} step"
    )
    print("| processes | threads each | s / epoch | examples / s | speed-up |")
    print("|---|---|---|---|---|")
    for n, (threads, seconds) in results.items():
        print(f"| {n} | {threads} | {seconds:.2f} | {examples / seconds:.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
