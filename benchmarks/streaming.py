"""Streaming a memory-mapped .npy against the device-resident loader: step speed and peak memory.

A generated ``.npy`` of ``--images`` 28x28 uint8 images (Fashion-MNIST's training images tiled, each
copy shifted by a pixel, so the data are real images; 1,000,000 take 784 MB of disk) is opened as a
source. Two :class:`~pyrogen.training.VAETrainer` of the same configuration (the default 784-400-50
MLP VAE, batch 100, dynamic binarization, ``--compile off``) train on it: one from the float32 tensor
in memory (:class:`~pyrogen.data.loaders.DeviceLoader`), one streamed by
:class:`~pyrogen.data.loaders.StreamingLoader` with ``--workers`` worker processes. They take turns
every ``--steps`` steps for ``--blocks`` blocks (``benchmarks.catalogue.interleaved_times``), so
drifting load hits both alike; each block's time counts reading the batch and the SVI step. The
figure is the ratio of the medians, in-memory ms per step over streaming ms per step (1.0: as fast).

Peak resident memory of the streaming path alone is measured in a separate process that streams
``--steps`` x ``--blocks`` steps without ever building the in-memory tensor: its own ``VmHWM`` and
its workers' (``/proc/PID/status``), read before they exit. A worker is a fork of the main process, so
its figure counts pages it shares with it (torch's libraries): the total over-states the memory used.

    OMP_NUM_THREADS=1 python -m benchmarks.streaming --images 1000000 --path /tmp/pyrogen_stream/images.npy
    python -m benchmarks.streaming --images 20000 --blocks 2 --steps 5     # a smoke run, seconds

Results (with date and machine) go to ``benchmarks/results/streaming.json`` (``--out``). Exact resume
of a streamed run after SIGKILL is a test: ``tests/data/test_streaming.py``.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import pyro
import torch

from benchmarks.catalogue import interleaved_times
from pyrogen.data import load_fashion_mnist, static_binarize
from pyrogen.data.sources import open_source
from pyrogen.models import VAE
from pyrogen.training import VAETrainer, default_config


def machine():
    """Date and machine of a measurement, for its results file."""
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**20, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }


def generate(path, n):
    """Fashion-MNIST's training images tiled to ``n`` images (each copy rolled by one more pixel), uint8."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    base = (load_fashion_mnist("train").images * 255).round().to(torch.uint8).numpy()
    out = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.uint8, shape=(n, 1, 28, 28))
    for start in range(0, n, len(base)):
        k = min(len(base), n - start)
        out[start : start + k] = np.roll(base[:k], start // len(base), axis=-1)
    out.flush()
    del out
    os.replace(path + ".tmp", path)


def trainer(data, test, workers):
    config = default_config()
    config["train"].update(compile="off", epochs=1)
    config["data"]["num_workers"] = workers
    config["eval"]["num_samples"] = 0
    pyro.set_rng_seed(0)
    return VAETrainer(VAE(**config["model"]), data, test, config, progress=False)


def stepper(t):
    """One training step of trainer ``t`` per call, over its loader's epochs."""

    def batches():
        while True:
            yield from t.loader

    it = batches()
    return lambda: t.train_step(next(it))


def peak_rss_kib(pids):
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                out[pid] = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        except (OSError, StopIteration):
            pass
    return out


def probe(args):
    """The streaming path alone: steps, then peak resident memory of this process and its workers."""
    source = open_source(args.path, test_fraction=args.test_fraction)
    reader, test = source.splits(stream=True)
    t = trainer(reader, static_binarize(test.images, 12345), args.workers)
    step = stepper(t)
    with pyro.validation_enabled(False):
        for _ in range(args.blocks * args.steps):
            step()
    workers = (
        [w.pid for w in getattr(t.loader._loader._iterator, "_workers", [])]
        if getattr(t.loader._loader, "_iterator", None) is not None
        else []
    )
    rss = peak_rss_kib([os.getpid()] + workers)
    print(json.dumps({"main_kib": rss.get(os.getpid()), "workers_kib": [rss[p] for p in workers if p in rss]}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--path", default="/tmp/pyrogen_stream/images.npy")
    p.add_argument("--blocks", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--test-fraction", type=float, default=0.01)
    p.add_argument("--out", default="benchmarks/results/streaming.json")
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        return probe(args)
    if not os.path.exists(args.path) or np.load(args.path, mmap_mode="r").shape[0] != args.images:
        start = time.perf_counter()
        generate(args.path, args.images)
        print(f"wrote {args.images} images to {args.path} in {time.perf_counter() - start:.1f} s")
    rss = subprocess.run(
        [sys.executable, "-m", "benchmarks.streaming", "--probe", *sys.argv[1:]]
        if argv is None
        else [sys.executable, "-m", "benchmarks.streaming", "--probe", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    rss = json.loads(rss.stdout.strip().splitlines()[-1])
    source = open_source(args.path, test_fraction=args.test_fraction)
    (train, test), (reader, _) = source.splits(), source.splits(stream=True)
    test_x = static_binarize(test.images, 12345)
    contenders = {
        "in-memory": stepper(trainer(train.images, test_x, args.workers)),
        "streaming": stepper(trainer(reader, test_x, args.workers)),
    }
    times = interleaved_times(contenders, args.blocks, args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": machine(),
        "command": "python -m benchmarks.streaming " + " ".join(sys.argv[1:] if argv is None else argv),
        "images": args.images,
        "train_images": len(reader),
        "workers": args.workers,
        "blocks": args.blocks,
        "steps_per_block": args.steps,
        "ms_per_step_median": med,
        "ms_per_step_blocks": times,
        "speed_ratio_streaming_over_in_memory": med["in-memory"] / med["streaming"],
        "peak_rss_streaming_only_mib": {
            "main": rss["main_kib"] / 1024,
            "workers": [w / 1024 for w in rss["workers_kib"]],
            "total": (rss["main_kib"] + sum(rss["workers_kib"])) / 1024,
        },
        "peak_rss_this_process_mib": __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss
        / 1024,
        "array_mib": os.path.getsize(args.path) / 2**20,
    }
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("ms_per_step_median", "speed_ratio_streaming_over_in_memory", "peak_rss_streaming_only_mib")
            },
            indent=1,
        )
    )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    sys.exit(main())
