"""Fashion-MNIST exported as PNG files, trained with ``--data``, against the built-in loader.

The 70,000 Fashion-MNIST images are written as 8-bit grey PNGs in class folders, the training set
under ``ROOT/train/<class>/<index>.png`` and the test set under ``ROOT/test/<class>/<index>.png``
(``<index>`` zero-padded, the image's position in its IDX file). A folder source reads its files in
the order of their names across the class folders, so ``--data ROOT/train --test-data ROOT/test``
gives the built-in loader's tensors exactly: the same images in the same order, the same labels, the
same train/test split. Two runs of ``pyrogen train vae`` with the same seed, one on the built-in data
and one with ``--data``, then train alike, and their test ELBO and importance-sampled log p(x)
(K = 1000) agree exactly (the figure measured is the difference, expected 0).

    OMP_NUM_THREADS=1 python -m benchmarks.own_data --root /tmp/fashion_png --epochs 1

Results (with date and machine) go to ``benchmarks/results/own_data_png.json`` (``--out``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from benchmarks.streaming import machine
from pyrogen.data import load_fashion_mnist


def export(root):
    """Fashion-MNIST as PNGs in class folders under ``root/train`` and ``root/test`` (skipped when present)."""
    from PIL import Image

    for split in ("train", "test"):
        folder = os.path.join(root, split)
        if os.path.isdir(folder):
            continue
        data = load_fashion_mnist(split)
        levels = (data.images * 255).round().to(torch.uint8).numpy()[:, 0]
        tmp = folder + ".tmp"
        for i, (a, y) in enumerate(zip(levels, data.labels.tolist())):
            os.makedirs(os.path.join(tmp, str(y)), exist_ok=True)
            Image.fromarray(a).save(os.path.join(tmp, str(y), f"{i:05d}.png"))
        os.replace(tmp, folder)


def pyrogen(*args):
    done = subprocess.run([sys.executable, "-m", "pyrogen", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"pyrogen {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def result(run):
    """Test ELBO (last epoch) and log p(x) of a run: nats per image."""
    import csv

    with open(os.path.join(run, "metrics.csv")) as f:
        last = list(csv.DictReader(f))[-1]
    evaluations = os.path.join(run, "evaluations")
    log_px = None
    for name in sorted(os.listdir(evaluations)) if os.path.isdir(evaluations) else []:
        with open(os.path.join(evaluations, name)) as f:
            e = json.load(f)
        log_px = e.get("log_px", log_px)
    return {"test_elbo": float(last["test_elbo"]), "log_px": log_px}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/fashion_png", help="where the PNG folders are written")
    p.add_argument("--runs", default="/tmp/own_data_runs", help="where the two runs go (replaced)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", default="", help="more options for both 'pyrogen train vae' runs")
    p.add_argument("--out", default="benchmarks/results/own_data_png.json")
    args = p.parse_args(argv)
    start = time.perf_counter()
    export(args.root)
    exported = time.perf_counter() - start
    import shutil

    shutil.rmtree(args.runs, ignore_errors=True)
    common = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--threads", "1", *args.extra.split()]
    runs = {"built-in": os.path.join(args.runs, "builtin"), "png": os.path.join(args.runs, "png")}
    pyrogen("train", "vae", "--out", runs["built-in"], *common)
    pyrogen(
        "train",
        "vae",
        "--out",
        runs["png"],
        "--data",
        os.path.join(args.root, "train"),
        "--test-data",
        os.path.join(args.root, "test"),
        *common,
    )
    rows = {name: result(run) for name, run in runs.items()}
    out = {
        "machine": machine(),
        "command": "python -m benchmarks.own_data " + " ".join(sys.argv[1:] if argv is None else argv),
        "epochs": args.epochs,
        "seed": args.seed,
        "export_seconds": exported,
        "runs": rows,
        "difference": {
            k: (None if rows["png"][k] is None else rows["png"][k] - rows["built-in"][k])
            for k in ("test_elbo", "log_px")
        },
        "png_files": sum(len(files) for _, _, files in os.walk(args.root)),
    }
    print(json.dumps({k: out[k] for k in ("runs", "difference")}, indent=1))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    return 0 if all(v == 0 for v in out["difference"].values() if v is not None) else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
