"""Sample quality of ``pyrogen train gan`` against a hand-written DCGAN, epoch by epoch.

Two loops train on the same Fashion-MNIST images for the same epochs and seeds:

* **pyrogen**: ``pyrogen train gan`` with its defaults, through the Python trainer
  (:func:`pyrogen.training.gan.build_gan_trainer` on :func:`default_gan_config`:
  DCGAN players, non-saturating loss, Adam 2e-4 / (0.5, 0.999), batch 64);
* **reference**: a DCGAN written by hand in the style of pytorch/examples'
  ``dcgan/main.py``, scaled from 64x64 to 28x28 (two stride-2 stages instead of
  four): G is ``ConvTranspose2d(100, 128, 7)`` -> BN -> ReLU -> ``ConvTranspose2d(128, 64, 4, 2, 1)``
  -> BN -> ReLU -> ``ConvTranspose2d(64, 1, 4, 2, 1)`` -> Tanh; D is ``Conv2d(1, 64, 4, 2, 1)``
  -> LeakyReLU(0.2) -> ``Conv2d(64, 128, 4, 2, 1)`` -> BN -> LeakyReLU(0.2) -> ``Conv2d(128, 1, 7)``,
  no biases; weights N(0, 0.02), batch-norm scales N(1, 0.02); data in [-1, 1];
  ``BCEWithLogitsLoss`` with labels 1 (real) and 0 (fake), the generator's loss
  non-saturating (label 1 on fakes); D's real and fake batches in separate
  forward and backward passes, then G's update through the same fake batch;
  Adam 2e-4, betas (0.5, 0.999), batch 64.

The generators differ in one place, the batch norm after G's projection of z
(pyrogen's default ``BatchNorm1d`` per feature, DCGAN's ``BatchNorm2d`` per
map); the ablation loops ``pyrogen-bn2d`` and ``reference-bn1d`` swap it.

After every epoch each generator draws ``--num-samples`` images from the same
noise in eval mode (batch-norm running statistics, as ``pyrogen sample`` draws
them; ``--modes eval train`` adds train mode, batch statistics over chunks of 64,
as pytorch/examples draws its grids), and they are scored against the first
``--num-samples`` test images in the features of pyrogen's cached Fashion-MNIST
classifier (``pyrogen train features``): Fréchet distance (lower is better),
precision and recall (Kynkäänniemi et al. 2019, k = 3). The table gives each
loop's mean over the seeds after every epoch, and the last epoch's ratio of the
mean Fréchet distances, pyrogen over reference (target <= 1.10).

::

    python -m benchmarks.gan_quality --quick                 # 1 seed, 1 epoch, 5,000 images: minutes
    # the committed figures (docs/gan.rst): one process per seed, then one table and picture
    python -m benchmarks.gan_quality --epochs 3 --seeds 0 --train-size 10000 --num-samples 5000 \\
        --loops pyrogen-bn2d reference pyrogen --out benchmarks/results/gan_quality_seed0.json
    python -m benchmarks.gan_quality --merge benchmarks/results/gan_quality_seed{0,1,2}.json \\
        --out benchmarks/results/gan_quality.json --plot docs/_static/gan/gan_quality.png

One thread per process by default (``--threads``). The JSON holds every
(loop, seed, epoch) row with its training seconds; ``--keep-run RUN_DIR`` also
keeps the first seed's pyrogen run as an ordinary run directory (metrics,
checkpoint, sample grids) for ``pyrogen sample`` and ``pyrogen sample-quality``.
"""

import argparse
import copy
import io
import json
import os
import sys
import time

import pyro
import torch
from torch import nn

from pyrogen.data import load_fashion_mnist
from pyrogen.evaluation.features import TRAIN_COMMAND, load_classifier, load_feature_network
from pyrogen.evaluation.sample_quality import extract_features, frechet_distance, precision_recall
from pyrogen.files import atomic_write

LATENT_DIM = 100
BATCH_SIZE = 64
LR, BETAS = 2e-4, (0.5, 0.999)


# ----------------------------------------------------------------------------- the reference loop


def reference_init_(m):
    """pytorch/examples' ``weights_init``: conv weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), shifts 0."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def reference_networks(latent_dim=LATENT_DIM, ngf=64, ndf=64, projection_norm="channel"):
    """pytorch/examples' DCGAN players scaled to 28x28: G ``(B, nz, 1, 1)`` -> ``(B, 1, 28, 28)`` in
    [-1, 1]; D ``(B, 1, 28, 28)`` -> logits ``(B,)``.

    :param str projection_norm: ``"channel"`` (DCGAN: ``BatchNorm2d`` after G's first layer, statistics
        per channel over batch and positions) or ``"feature"`` (the ablation: ``BatchNorm1d`` over the
        flattened ``(2 ngf) x 7 x 7`` features, statistics per channel and position, as pyrogen's
        generator by default).
    """
    if projection_norm == "channel":
        norm = nn.BatchNorm2d(ngf * 2)
    else:
        norm = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(ngf * 2 * 49), nn.Unflatten(1, (ngf * 2, 7, 7)))
    g = nn.Sequential(
        nn.ConvTranspose2d(latent_dim, ngf * 2, 7, 1, 0, bias=False), norm, nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False), nn.Flatten(0),
    )  # fmt: skip
    g.apply(reference_init_)
    d.apply(reference_init_)
    return g, d


class ReferenceDCGAN:
    """The hand-written loop: one epoch of pytorch/examples' DCGAN algorithm per :meth:`train_epoch`."""

    name = "reference"

    def __init__(self, train_images, seed, projection_norm="channel"):
        torch.manual_seed(seed)
        self.g, self.d = reference_networks(projection_norm=projection_norm)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=LR, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=LR, betas=BETAS)
        self.data = train_images * 2 - 1  # [0, 1] -> [-1, 1]
        self.shuffle = torch.Generator().manual_seed(seed + 1)
        self.criterion = nn.BCEWithLogitsLoss()

    def train_epoch(self):
        self.g.train()
        self.d.train()
        n = self.data.shape[0]
        perm = torch.randperm(n, generator=self.shuffle)
        for i in range(n // BATCH_SIZE):  # drop_last, as pyrogen's loader
            real = self.data[perm[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]]
            ones, zeros = torch.ones(BATCH_SIZE), torch.zeros(BATCH_SIZE)
            self.d.zero_grad(set_to_none=True)
            self.criterion(self.d(real), ones).backward()
            fake = self.g(torch.randn(BATCH_SIZE, LATENT_DIM, 1, 1))
            self.criterion(self.d(fake.detach()), zeros).backward()
            self.opt_d.step()
            self.g.zero_grad(set_to_none=True)
            self.criterion(self.d(fake), ones).backward()  # non-saturating: fakes labelled real
            self.opt_g.step()

    def generator(self):
        """``(module, to_images)``: ``to_images(module, z)`` maps z ``(B, nz)`` to images in [0, 1]."""
        return self.g, lambda g, z: (g(z[:, :, None, None]) + 1) / 2


class PyrogenDCGAN:
    """``pyrogen train gan`` with its defaults, one :meth:`GANTrainer.fit` epoch per :meth:`train_epoch`."""

    name = "pyrogen"

    def __init__(self, train_images, test_images, seed, run_dir=None, projection_norm=None):
        from pyrogen.runs import start_run
        from pyrogen.training.gan import build_gan_trainer, default_gan_config

        config = default_gan_config()
        if projection_norm:  # the ablation: another batch norm after G's projection than the default's
            config["model"]["projection_norm"] = projection_norm
        n = train_images.shape[0]
        config["data"].update(train_size=n if n < 60000 else None)
        config["train"].update(seed=seed)

        def build():
            return build_gan_trainer(config, device="cpu", progress=False, data=(train_images, test_images))

        self.trainer = build() if run_dir is None else start_run(run_dir, config, build)

    def train_epoch(self):
        self.trainer.fit(epochs=self.trainer.epoch + 1)

    def generator(self):
        """``(module, to_images)`` as :meth:`ReferenceDCGAN.generator` (the network's output is in [0, 1])."""
        return self.trainer.generator.network, lambda g, z: g(z)


LOOPS = {
    "pyrogen": lambda train, test, seed, run_dir=None: PyrogenDCGAN(train, test, seed, run_dir),
    "reference": lambda train, test, seed, run_dir=None: ReferenceDCGAN(train, seed),
    # ablations of the one difference between the two generators, the batch norm after G's projection:
    # pyrogen with DCGAN's per-map BatchNorm2d, the reference with pyrogen's per-feature BatchNorm1d
    "pyrogen-bn2d": lambda train, test, seed, run_dir=None: PyrogenDCGAN(train, test, seed, projection_norm="channel"),
    "reference-bn1d": lambda train, test, seed, run_dir=None: ReferenceDCGAN(train, seed, projection_norm="feature"),
}


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def draw(gen, z, mode):
    """Images in [0, 1] from latents ``z``: ``mode`` "eval" (running statistics) or "train" (batch
    statistics over chunks of 64, on a copy so that the running statistics stay untouched)."""
    module, to_images = gen
    if mode == "eval":
        was = module.training
        module.eval()
        try:
            return torch.cat([to_images(module, z[i : i + 1000]) for i in range(0, z.shape[0], 1000)])
        finally:
            module.train(was)
    module = copy.deepcopy(module).train()
    return torch.cat([to_images(module, z[i : i + BATCH_SIZE]) for i in range(0, z.shape[0], BATCH_SIZE)])


def score(net, real_features, images):
    fake = extract_features(net, images, 1000, "samples")
    precision, recall = precision_recall(real_features, fake, k=3)
    return {"fd": frechet_distance(real_features, fake), "precision": precision, "recall": recall}


def run_one(loop, seed, args, train, test, net, real_features, z, log):
    t = time.perf_counter()
    keep = args.keep_run if loop == "pyrogen" and seed == args.seeds[0] else None
    model = LOOPS[loop](train, test, seed, keep)
    build = time.perf_counter() - t
    rows, seconds = [], 0.0
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        model.train_epoch()
        seconds += time.perf_counter() - t
        gen = model.generator()
        row = {"loop": loop, "seed": seed, "epoch": epoch, "train_seconds": round(seconds, 1)}
        for mode in args.modes:
            for k, v in score(net, real_features, draw(gen, z, mode)).items():
                row[k if mode == "eval" else f"{k}_{mode}"] = v
        rows.append(row)
        log(
            f"{loop} seed {seed} epoch {epoch}: FD {row.get('fd', float('nan')):.2f} precision "
            f"{row.get('precision', float('nan')):.3f} recall {row.get('recall', float('nan')):.3f}"
            + (f" (train-mode FD {row['fd_train']:.2f})" if "fd_train" in row else "")
            + f", {seconds:.0f} s training (+{build:.1f} s setup)"
        )
    return rows


def summarise(rows, epochs, loops):
    """Per loop and epoch, the mean (and each seed's value) of every score; the FD ratio per epoch."""
    table = {}
    for loop in loops:
        for e in range(1, epochs + 1):
            sel = [r for r in rows if r["loop"] == loop and r["epoch"] == e]
            if sel:
                table[(loop, e)] = {
                    k: sum(r[k] for r in sel) / len(sel)
                    for k in sel[0]
                    if isinstance(sel[0][k], float) or k == "train_seconds"
                }
                table[(loop, e)]["n"] = len(sel)
    return table


def plot(rows, loops, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2))
    axes = fig.subplots(1, 3)
    colours = {
        "pyrogen": "tab:blue",
        "reference": "tab:orange",
        "pyrogen-bn2d": "tab:purple",
        "reference-bn1d": "tab:green",
    }
    for ax, key, title in zip(
        axes, ("fd", "precision", "recall"), ("Fréchet distance (lower is better)", "precision", "recall")
    ):
        for loop in loops:
            seeds = sorted({r["seed"] for r in rows if r["loop"] == loop})
            for s in seeds:
                sel = sorted((r for r in rows if r["loop"] == loop and r["seed"] == s), key=lambda r: r["epoch"])
                ax.plot([r["epoch"] for r in sel], [r[key] for r in sel], color=colours.get(loop), alpha=0.35, lw=1)
            epochs = sorted({r["epoch"] for r in rows if r["loop"] == loop})
            means = [
                sum(r[key] for r in rows if r["loop"] == loop and r["epoch"] == e)
                / sum(1 for r in rows if r["loop"] == loop and r["epoch"] == e)
                for e in epochs
            ]
            ax.plot(epochs, means, color=colours.get(loop), lw=2, marker="o", label=f"{loop} (mean of {len(seeds)})")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def report(rows, args, manifest, start):
    """The table (stdout), the FD ratio, and the JSON and PNG when asked."""
    loops = [loop for loop in LOOPS if any(r["loop"] == loop for r in rows)]
    epochs = max(r["epoch"] for r in rows)
    seeds = sorted({r["seed"] for r in rows})
    table = summarise(rows, epochs, loops)
    print()
    print(
        f"Fashion-MNIST, {args.train_size or 60000} training images, batch {BATCH_SIZE}, seeds {seeds}; "
        f"{args.num_samples} samples (eval mode) vs as many test images in the features of "
        f"{manifest['sha256'][:12]}, k = 3; means over the seeds"
    )
    print()
    print("| loop | epoch | FD | precision | recall | training s |")
    print("|---|---:|---:|---:|---:|---:|")
    for (loop, e), m in table.items():
        print(f"| {loop} | {e} | {m['fd']:.1f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['train_seconds']:.0f} |")
    ratios = {}
    for loop in loops:
        if loop != "reference" and (loop, epochs) in table and ("reference", epochs) in table:
            ratios[loop] = table[(loop, epochs)]["fd"] / table[("reference", epochs)]["fd"]
            print(
                f"epoch {epochs}: mean FD {loop} / reference = {ratios[loop]:.3f}"
                + (" (target <= 1.10)" if loop == "pyrogen" else "")
            )
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.out:
        out = {
            "feature_net": {k: manifest[k] for k in ("sha256", "test_accuracy", "recipe")},
            "args": {k: v for k, v in vars(args).items() if k != "merge"},
            "rows": rows,
            "fd_ratio_last_epoch": ratios,
            "summary": [{"loop": k[0], "epoch": k[1], **v} for k, v in table.items()],
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write(args.out, lambda f: json.dump(out, f, indent=2), binary=False)
    if args.plot:
        plot(rows, loops, args.plot)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-size", type=int, default=None, help="first N training images (default: all 60,000)")
    p.add_argument("--num-samples", type=int, default=10000, help="generated and real (test) images per score")
    p.add_argument(
        "--loops",
        nargs="+",
        choices=list(LOOPS),
        default=["pyrogen", "reference"],
        help="pyrogen, reference, and the ablations pyrogen-bn2d and reference-bn1d",
    )
    p.add_argument(
        "--modes",
        nargs="+",
        choices=["eval", "train"],
        default=["eval"],
        help="how generators are sampled for scoring (see the module docs)",
    )
    p.add_argument(
        "--quick", action="store_true", help="1 seed, 1 epoch, 5,000 training images, 2,000 samples: a few minutes"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write every row and the summary as JSON here")
    p.add_argument("--plot", default=None, help="write the curves (FD, precision, recall by epoch) as PNG here")
    p.add_argument(
        "--keep-run",
        default=None,
        metavar="RUN_DIR",
        help="write the first seed's pyrogen run here as a run directory (pyrogen sample RUN_DIR, "
        "pyrogen sample-quality RUN_DIR)",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="train nothing: tabulate (and --out, --plot) the rows of these --out files together, "
        "e.g. one process per seed",
    )
    args = p.parse_args(argv)
    start = time.perf_counter()
    if args.merge:
        parts = []
        for path in args.merge:
            try:
                with open(path) as f:
                    parts.append(json.load(f))
            except (OSError, ValueError) as e:
                raise SystemExit(f"--merge: cannot read {path!r} as a gan_quality.py --out file ({e})") from None
        shas = {part["feature_net"]["sha256"] for part in parts}
        if len(shas) != 1:
            raise SystemExit(f"--merge: the files were scored by different feature networks {sorted(shas)}")
        for key in ("train_size", "num_samples", "epochs"):
            values = {part["args"][key] for part in parts}
            if len(values) != 1:
                raise SystemExit(f"--merge: the files differ in {key}: {sorted(values, key=str)}")
            setattr(args, key, values.pop())
        report([r for part in parts for r in part["rows"]], args, parts[0]["feature_net"], start)
        return
    if args.quick:
        args.seeds, args.epochs = args.seeds[:1], 1
        args.train_size, args.num_samples = args.train_size or 5000, min(args.num_samples, 2000)
    if "eval" not in args.modes:
        args.modes = ["eval", *args.modes]
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)

    def log(line):
        print(f"[{time.perf_counter() - start:6.0f} s] {line}", flush=True)

    _, manifest = load_classifier()  # raises, naming `pyrogen train features`, when not cached
    net = load_feature_network()
    train = load_fashion_mnist("train").images
    train = train[: args.train_size] if args.train_size else train
    test = load_fashion_mnist("test").images
    real = test[: args.num_samples]
    real_features = extract_features(net, real, 1000, "real images")
    z = torch.randn(args.num_samples, LATENT_DIM, generator=torch.Generator().manual_seed(12345))
    log(
        f"feature network sha256 {manifest['sha256'][:12]} (test accuracy {manifest['test_accuracy']:.4f}, "
        f"{TRAIN_COMMAND}); {train.shape[0]} training images, {args.epochs} epoch(s), seeds {args.seeds}, "
        f"{args.num_samples} samples vs {real.shape[0]} test images, {torch.get_num_threads()} thread(s)"
    )

    rows = []
    for seed in args.seeds:  # the loops alternate within each seed: load drifts hit both alike
        for loop in args.loops:
            rows += run_one(loop, seed, args, train, test, net, real_features, z, log)
    report(rows, args, manifest, start)


if __name__ == "__main__":
    main()
