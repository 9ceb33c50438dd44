"""Trainings that share the CPU: each one's time as a ratio to the same training alone.

``jobs`` starts 1, 2 and 3 copies of the same one-epoch training together (``pyrogen
train vae``, 12,000 images by default) and reports, for each count, the mean time of a
copy over the solo time, in four settings, one after another:

* ``default``: the command as installed (``python -m pyrogen``: a short OpenMP spin,
  ``GOMP_SPINCOUNT=10000``, and the thread governor, :mod:`pyrogen.threads`);
* ``threads1``: the same with ``--threads 1``;
* ``passive``: the previous default, ``OMP_WAIT_POLICY=PASSIVE`` and torch's thread count
  (``--threads`` = the cores, which also turns the governor off);
* ``spin``: torch's own policy and thread count, the command before pyrogen set one
  (``pyrogen.cli.main`` called directly, ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` removed from the
  environment, ``--threads`` = the cores).

On 2 cores a fair share for 3 copies is 1.5x the one-thread solo; with ``threads1`` among the
settings the bound this sets on each copy, as a ratio to the first setting's solo, is printed last.
Two times are read per copy: the epoch's training time (``seconds`` in its ``metrics.csv``) and the
whole command's wall time (imports, data, evaluation included).

The ``first solo`` columns compare each setting with the first one's solo (the default's, unless
``--settings`` says otherwise).

``quickstart`` times the README's quickstart command (``pyrogen train vae --epochs 10``)
alone and then beside ``--competitors`` other trainings that run for as long as it does, once for
each ``--competitor-setting`` (default: other pyrogen trainings with the default policy, then
trainings with torch's own spinning policy, as another user's job may run), and prints the ratio
of its wall time. A run alone with ``--threads 1`` gives the bound that fair sharing sets: beside
c busy jobs on n cores a job gets n / (c + 1) of a core, so it takes at least
(its one-thread time) x (c + 1) / n.

    python -m benchmarks.contention jobs                                  # the timed run (about 10 min)
    python -m benchmarks.contention jobs --train-size 300 --test-size 300 --counts 1 2   # smoke run
    python -m benchmarks.contention quickstart --competitors 2            # about 20 min on 2 cores
    python -m benchmarks.contention quickstart --epochs 1 --train-size 300 --test-size 300  # smoke run

The trainings run on the CPU (``--device cpu``) even where a GPU is present: the cores are what they share.
On a machine with more cores than 2 (the GPU machine's 16, say), ``jobs --settings default threads1
--counts 1 3`` shows the ratio where the cores are not all taken (``gpu_check.sh`` runs it).

Never run two of these at once, nor beside other work: the figures are ratios of times.
"""

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORES = str(os.cpu_count())

SETTINGS = {
    "default": ([sys.executable, "-m", "pyrogen"], [], None),
    "threads1": ([sys.executable, "-m", "pyrogen"], ["--threads", "1"], None),
    "passive": ([sys.executable, "-m", "pyrogen"], ["--threads", CORES], "PASSIVE"),
    "spin": (
        [sys.executable, "-c", "import sys; from pyrogen.cli import main; sys.exit(main())"],
        ["--threads", CORES],
        "unset",
    ),
}
"""name: (the command's start, extra options, OMP_WAIT_POLICY: None keeps the environment, 'unset' removes it
and GOMP_SPINCOUNT, another value sets it and removes GOMP_SPINCOUNT)."""


def _env(policy):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("OMP_NUM_THREADS", None)  # torch's default thread count is what is measured
    if policy is not None:
        env.pop("OMP_WAIT_POLICY", None)
        env.pop("GOMP_SPINCOUNT", None)
        if policy != "unset":
            env["OMP_WAIT_POLICY"] = policy
    return env


def _train_args(args, out, epochs):
    sizes = ["--train-size", str(args.train_size)] + (["--test-size", str(args.test_size)] if args.test_size else [])
    return [
        "train",
        "vae",
        "--out",
        out,
        "--epochs",
        str(epochs),
        "--eval-samples",
        str(args.eval_samples),
        "--no-progress",
        "--device",
        args.device,
        *sizes,
    ]


def _start(setting, args, out, epochs):
    command, extra, policy = SETTINGS[setting]
    return subprocess.Popen(
        command + _train_args(args, out, epochs) + extra,
        env=_env(policy),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(proc, started):
    _, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"contention.py: a training failed (exit {proc.returncode}):\n{err}")
    return wall


def _epoch_seconds(out):
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        return float(list(csv.DictReader(f))[0]["seconds"])


def together(setting, count, args, tmp):
    """Start ``count`` copies at once; returns ``(epoch seconds, wall seconds)`` of each."""
    outs = [os.path.join(tmp, f"{setting}-{count}-{i}-{time.monotonic_ns()}") for i in range(count)]
    started = time.perf_counter()
    procs = [_start(setting, args, out, 1) for out in outs]
    walls = [_wait(p, started) for p in procs]
    return [_epoch_seconds(out) for out in outs], walls


def jobs(args):
    print(
        f"contention: {args.train_size} training images, 1 epoch, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(
        "| setting | copies | epoch s (mean) | epoch / solo | epoch / first solo | wall s (mean) | wall / solo | "
        "wall / first solo |"
    )
    print("|---|---|---|---|---|---|---|---|")
    first = None  # the solo times of the first setting (the default), to compare the settings' own solos
    solos = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            solo = None
            if 1 not in args.counts:
                epochs, walls = together(setting, 1, args, tmp)
                solo = (epochs[0], walls[0])
            for count in sorted(args.counts):
                epochs, walls = together(setting, count, args, tmp)
                epoch, wall = sum(epochs) / count, sum(walls) / count
                solo = solo or (epoch, wall)
                first = first or solo
                solos[setting] = solo
                print(
                    f"| {setting} | {count} | {epoch:.2f} | {epoch / solo[0]:.2f}x | {epoch / first[0]:.2f}x | "
                    f"{wall:.2f} | {wall / solo[1]:.2f}x | {wall / first[1]:.2f}x |",
                    flush=True,
                )
    if "threads1" in solos and args.settings[0] != "threads1":
        cores, one = os.cpu_count(), solos["threads1"]
        for count in (c for c in sorted(args.counts) if c > cores):
            print(
                f"Fair-share bound for {count} copies on {cores} cores: each takes at least {count / cores:g} x the "
                f"one-thread solo, {count / cores * one[0] / first[0]:.2f}x (epoch) and "
                f"{count / cores * one[1] / first[1]:.2f}x (wall) the {args.settings[0]} solo"
            )


def quickstart(args):
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        _wait(_start("default", args, os.path.join(tmp, "quiet"), args.epochs), started)
        quiet = time.perf_counter() - started
        print(f"quickstart alone: {quiet:.1f} s", flush=True)
        if args.bound:
            started = time.perf_counter()
            _wait(_start("threads1", args, os.path.join(tmp, "quiet-1"), args.epochs), started)
            one = time.perf_counter() - started
            print(
                f"quickstart alone with --threads 1: {one:.1f} s; beside {args.competitors} busy jobs a fair share "
                f"of the {os.cpu_count()} cores is {os.cpu_count() / (args.competitors + 1):.2f} of a core, so the "
                f"least it can take is about {one * (args.competitors + 1) / os.cpu_count() / quiet:.2f}x alone",
                flush=True,
            )
        for setting in args.competitor_setting:
            loaded = _beside(setting, args, tmp)
            print(
                f"quickstart beside {args.competitors} trainings ({setting}): {loaded:.1f} s, "
                f"{loaded / quiet:.2f}x alone",
                flush=True,
            )


def _beside(setting, args, tmp):
    """The quickstart's wall time beside ``args.competitors`` trainings of ``setting`` that run all along."""
    competitors, n = [], 0

    def competitor():
        nonlocal n
        n += 1
        return _start(setting, args, os.path.join(tmp, f"competitor-{setting}-{n}"), 1000)

    competitors = [competitor() for _ in range(args.competitors)]
    time.sleep(args.head_start)  # the competitors are computing when the measured run starts
    started = time.perf_counter()
    measured = _start("default", args, os.path.join(tmp, f"loaded-{setting}"), args.epochs)
    while measured.poll() is None:
        time.sleep(0.5)
        competitors = [c if c.poll() is None else competitor() for c in competitors]
    loaded = _wait(measured, started)
    for c in competitors:
        c.terminate()
        c.wait()
    return loaded


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("jobs", "quickstart"):
        p = sub.add_parser(name)
        p.add_argument("--train-size", type=int, default=12000 if name == "jobs" else None)
        p.add_argument("--test-size", type=int, default=None)
        p.add_argument("--eval-samples", type=int, default=0 if name == "jobs" else 1000)
        p.add_argument("--device", default="cpu", help="the trainings' --device (default cpu: the cores are shared)")
    sub.choices["jobs"].add_argument("--counts", type=int, nargs="+", default=[1, 2, 3])
    sub.choices["jobs"].add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    q = sub.choices["quickstart"]
    q.add_argument("--epochs", type=int, default=10)
    q.add_argument("--competitors", type=int, default=2)
    q.add_argument(
        "--competitor-setting",
        nargs="+",
        choices=list(SETTINGS),
        default=["default", "spin"],
        help="how the competing trainings run, one loaded run for each (default: default spin)",
    )
    q.add_argument(
        "--no-bound",
        dest="bound",
        action="store_false",
        help="skip the run with --threads 1 that gives the fair-share bound",
    )
    q.add_argument("--head-start", type=float, default=10.0, help="seconds the competitors run first")
    args = parser.parse_args()
    if args.what == "quickstart" and args.train_size is None:
        args.train_size = 60000
    jobs(args) if args.what == "jobs" else quickstart(args)


if __name__ == "__main__":
    main()
