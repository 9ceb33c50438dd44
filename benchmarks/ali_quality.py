"""ALI / BiGAN quality of ``pyrogen train ali`` against a hand-written ALI, epoch by epoch.

Two loops train on the same Fashion-MNIST images for the same epochs and seeds:

* **pyrogen**: ``pyrogen train ali`` with its defaults, through the Python trainer
  (:func:`pyrogen.training.ali.build_ali_trainer` on :func:`pyrogen.config.default_ali_config`), which
  build the reference's networks exactly (:func:`benchmarks.references.ali.check_same_networks`: with
  the reference's weights copied in, every output agrees to float rounding) and take ALI's simultaneous
  update exactly (:func:`benchmarks.references.ali.check_same_step`: from the same weights, batches and
  noise, the same gradients and steps); ``pyrogen-dcgan`` is the same trainer with the defaults before
  that (:data:`benchmarks.references.ali.PREVIOUS`: DCGAN's layout of the pair, a joint discriminator
  of width 256, the alternating update); ``pyrogen-mlp`` the
  defaults before this benchmark (MLP pair of width 400, continuous-Bernoulli mean as generator
  output, MLP discriminator of width 256 without dropout, Adam 2e-4), ``pyrogen-mlp-sigmoid`` those
  with the sigmoid output (``bernoulli-relaxed``);
* **reference**: ALI written by hand after the authors' convolutional recipe (Dumoulin et al.,
  "Adversarially Learned Inference", ICLR 2017, appendix A; ``experiments/ali_svhn.py`` of
  github.com/IshmaelBelghazi/ALI), scaled from 32x32 to 28x28:

  - encoder: convolutions with batch norm and leaky ReLU down to a 1x1 map, then a 1x1
    convolution to the mean and log-scale of q(z|x); z = mu + sigma * eps (stochastic encoder);
  - generator: the mirror image with transposed convolutions, batch norm and leaky ReLU, a
    sigmoid output whose bias starts at the log-odds of the training images' mean pixel;
  - discriminator: D_x (convolutions), D_z (two 1x1 layers), D_xz on their concatenation (two
    layers, then one score), leaky ReLU, no batch norm, dropout 0.2 before every layer of all
    three, the input layers included;
  - data and model pairs scored by one forward pass of D over both batches; D minimises
    softplus(-s_q) + softplus(s_p), G and E minimise softplus(s_q) + softplus(-s_p), both
    gradients from those same scores and both players stepped at once (ALI's ``ali_algorithm``);
  - weights N(0, 0.01), biases 0; Adam 1e-4, betas (0.5, 0.999) (Blocks' ``beta2=0.001`` is
    1 - 0.999); batch 100; latent 64 (pyrogen's default; ALI's SVHN run has 256).

After every epoch, in eval mode (batch-norm running statistics, dropout off), on the first
``--test-size`` test images:

* **class agreement**: the share of test images whose reconstruction G(E(x)) (E(x) the mean of
  q(z|x)) pyrogen's cached feature classifier (``pyrogen train features``) puts in the input's
  true class (the classifier's own test accuracy is the ceiling);
* **recon MSE**: mean squared error per pixel of G(E(x)), images in [0, 1];
* **probe**: test accuracy of a logistic regression on the codes E(x) of the first
  ``--test-size`` training images, scored on the test images' codes
  (:func:`pyrogen.evaluation.sample_quality.linear_probe_accuracy`);
* **FD**: Fréchet distance between as many samples G(z), z ~ N(0, I) (fixed noise), and the test
  images in the classifier's features (lower is better).

The table gives each loop's mean over the seeds after every epoch; pyrogen's target is class
agreement and probe accuracy at least the reference's, within the tolerance stated with the
committed figures (docs/adversarial_inference.rst).

::

    python -m benchmarks.ali_quality --quick     # 1 seed, 1 epoch, 2,000 images: about a minute
    # the committed figures (docs/adversarial_inference.rst)
    python -m benchmarks.ali_quality --epochs 4 --seeds 0 1 --train-size 10000 \\
        --loops pyrogen reference pyrogen-mlp --out benchmarks/results/ali_quality.json

``--set SECTION.KEY=JSON`` changes the pyrogen loop's configuration (the options that tell it from
the reference, docs/adversarial_inference.rst), ``--score-from`` skips the scoring of the early epochs::

    python -m benchmarks.ali_quality --epochs 20 --seeds 0 --train-size 10000 --loops pyrogen \\
        --score-from 16 --set 'train.update="simultaneous"' --out benchmarks/results/ali_quality_simultaneous.json

One thread per process by default (``--threads``). ``--keep-run RUN_DIR`` keeps the first seed's
pyrogen run as an ordinary run directory (metrics, checkpoint, pictures).
"""

import argparse
import json
import os
import sys
import time

import pyro
import torch

from benchmarks.references.ali import BATCH_SIZE, LATENT_DIM, PREVIOUS, ReferenceLoop, apply_settings
from pyrogen.data import load_fashion_mnist
from pyrogen.evaluation.features import TRAIN_COMMAND, load_classifier
from pyrogen.evaluation.sample_quality import extract_features, frechet_distance, linear_probe_accuracy
from pyrogen.files import atomic_write


class PyrogenLoop:
    """``pyrogen train ali`` (defaults, or the old MLP ones), one :meth:`ALITrainer.fit` epoch per
    :meth:`train_epoch`."""

    def __init__(
        self, train_images, train_labels, test_images, test_labels, seed, old=None, run_dir=None, settings=None
    ):
        from pyrogen.config import default_ali_config
        from pyrogen.runs import start_run
        from pyrogen.training.ali import build_ali_trainer

        if old:  # the defaults before this benchmark, with the likelihood ``old`` names
            config = default_ali_config(
                architecture="mlp",
                hidden=(400,),
                disc_hidden=(256,),
                disc_dropout=0.0,
                likelihood=old,
                update="alternating",
            )
            config["train"].update(lr_g=2e-4, lr_d=2e-4)
        else:
            config = default_ali_config()
        apply_settings(config, settings)
        n = train_images.shape[0]
        config["data"].update(train_size=n if n < 60000 else None)
        config["train"].update(seed=seed, probe_size=0)  # the benchmark probes itself, as for the reference
        data = (train_images, train_labels, test_images, test_labels)

        def build():
            return build_ali_trainer(config, device="cpu", progress=False, data=data)

        self.trainer = build() if run_dir is None else start_run(run_dir, config, build)
        self.flags = ""

    def train_epoch(self):
        self.trainer.fit(epochs=self.trainer.epoch + 1)
        self.flags = self.trainer.metrics[-1]["flags"]  # the trainer's health flags of the epoch

    @torch.no_grad()
    def codes(self, x):
        return self.trainer.codes(x)

    @torch.no_grad()
    def decode(self, z):
        vae = self.trainer.vae.eval()
        try:
            return torch.cat([vae.decode(z[i : i + 500]) for i in range(0, len(z), 500)])
        finally:
            vae.train()


class RunLoop:
    """A finished ``pyrogen train ali`` run directory, scored like the loops (``--score-run``)."""

    def __init__(self, run_dir):
        from pyrogen.runs import open_run

        run = open_run(run_dir, "cpu")
        if run.kind != "ali":
            raise SystemExit(f"--score-run: {run_dir!r} holds a {run.kind!r} run, not an ali run")
        self.vae, self.epochs, self.flags = run.model(), run.dir.read_metrics()[-1]["epoch"], ""

    @torch.no_grad()
    def codes(self, x):
        return torch.cat([self.vae.encode(x[i : i + 500])["loc"] for i in range(0, len(x), 500)])

    @torch.no_grad()
    def decode(self, z):
        return torch.cat([self.vae.decode(z[i : i + 500]) for i in range(0, len(z), 500)])


LOOPS = {
    "pyrogen": lambda tr, ytr, te, yte, seed, run_dir=None, settings=None: PyrogenLoop(
        tr, ytr, te, yte, seed, run_dir=run_dir, settings=settings
    ),
    "pyrogen-dcgan": lambda tr, ytr, te, yte, seed, run_dir=None, settings=None: PyrogenLoop(
        tr, ytr, te, yte, seed, run_dir=run_dir, settings=[*PREVIOUS, *(settings or ())]
    ),
    "pyrogen-mlp": lambda tr, ytr, te, yte, seed, run_dir=None: PyrogenLoop(
        tr, ytr, te, yte, seed, old="continuous-bernoulli"
    ),
    "pyrogen-mlp-sigmoid": lambda tr, ytr, te, yte, seed, run_dir=None: PyrogenLoop(
        tr, ytr, te, yte, seed, old="bernoulli-relaxed"
    ),
    "reference": lambda tr, ytr, te, yte, seed, run_dir=None: ReferenceLoop(tr, seed),
}


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def score(loop, ctx):
    """The four figures of the module docs for one loop now."""
    test, y_test = ctx["test"], ctx["test_labels"]
    codes_test = loop.codes(test)
    recon = loop.decode(codes_test).reshape(test.shape)
    pred = torch.cat([ctx["classifier"](recon[i : i + 1000]).argmax(-1) for i in range(0, len(recon), 1000)])
    probe = linear_probe_accuracy(loop.codes(ctx["probe_train"]), ctx["probe_labels"], codes_test, y_test)
    samples = loop.decode(ctx["z"])
    fake = extract_features(ctx["classifier"].features, samples, 1000, "samples")
    return {
        "agreement": (pred == y_test).float().mean().item(),
        "mse": (recon - test).square().mean().item(),
        "probe": probe,
        "fd": frechet_distance(ctx["real_features"], fake),
    }


def run_one(name, seed, args, ctx, log):
    keep = args.keep_run if name == "pyrogen" and seed == args.seeds[0] else None
    loop = LOOPS[name](
        ctx["train"],
        ctx["train_labels"],
        ctx["test"],
        ctx["test_labels"],
        seed,
        keep,
        **({"settings": args.set} if name in ("pyrogen", "pyrogen-dcgan") and args.set else {}),
    )
    rows, seconds = [], 0.0
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        loop.train_epoch()
        seconds += time.perf_counter() - t
        if epoch < args.score_from:
            log(f"{name} seed {seed} epoch {epoch}: {seconds:.0f} s training (scored from epoch {args.score_from})")
            continue
        row = {
            "loop": name,
            "seed": seed,
            "epoch": epoch,
            "train_seconds": round(seconds, 1),
            **score(loop, ctx),
            "flags": getattr(loop, "flags", ""),
        }
        rows.append(row)
        log(
            f"{name} seed {seed} epoch {epoch}: class agreement {row['agreement']:.3f}, recon MSE {row['mse']:.4f}, "
            f"probe {row['probe']:.3f}, FD {row['fd']:.1f}, flags [{row['flags']}], {seconds:.0f} s training"
        )
    return rows


def report(rows, args, manifest, start):
    loops = [name for name in LOOPS if any(r["loop"] == name for r in rows)]
    seeds = sorted({r["seed"] for r in rows})
    print()
    print(
        f"Fashion-MNIST, {args.train_size} training images, batch {BATCH_SIZE}, seeds {seeds}; "
        f"{args.test_size} test images (reconstructions, probe, FD against {args.test_size} samples) in the "
        f"features of {manifest['sha256'][:12]} (test accuracy {manifest['test_accuracy']:.4f}); means over the "
        "seeds (min-max)"
    )
    print()
    print("| loop | epoch | class agreement | recon MSE | probe accuracy | FD | flagged seeds | training s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for name in loops:
        for e in range(1, args.epochs + 1):
            sel = [r for r in rows if r["loop"] == name and r["epoch"] == e]
            if not sel:
                continue
            m = {k: sum(r[k] for r in sel) / len(sel) for k in ("agreement", "mse", "probe", "fd", "train_seconds")}
            lo = {k: min(r[k] for r in sel) for k in m}
            hi = {k: max(r[k] for r in sel) for k in m}
            m["flagged"] = sum(1 for r in sel if r["flags"])
            summary.append({"loop": name, "epoch": e, "n": len(sel), **m})
            print(
                f"| {name} | {e} | {m['agreement']:.3f} ({lo['agreement']:.3f}-{hi['agreement']:.3f}) | "
                f"{m['mse']:.4f} | {m['probe']:.3f} ({lo['probe']:.3f}-{hi['probe']:.3f}) | {m['fd']:.1f} | "
                f"{m['flagged']}/{len(sel)} | {m['train_seconds']:.0f} |"
            )
    if args.window:  # one figure per loop over the late epochs: one epoch of a GAN swings too much to compare
        first, last = args.window
        print()
        print(f"Means over epochs {first}-{last} and the seeds (each seed's class agreement in brackets):")
        print()
        print("| loop | class agreement | probe accuracy | recon MSE | FD | rows |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in loops:
            sel = [r for r in rows if r["loop"] == name and first <= r["epoch"] <= last]
            if not sel:
                continue
            m = {k: sum(r[k] for r in sel) / len(sel) for k in ("agreement", "mse", "probe", "fd")}
            per_seed = ", ".join(
                f"{sum(r['agreement'] for r in sel if r['seed'] == s) / sum(1 for r in sel if r['seed'] == s):.3f}"
                for s in seeds
                if any(r["seed"] == s for r in sel)
            )
            print(
                f"| {name} | {m['agreement']:.3f} ({per_seed}) | {m['probe']:.3f} | {m['mse']:.4f} | {m['fd']:.1f} | "
                f"{len(sel)} |"
            )
            summary.append({"loop": name, "epochs": [first, last], "n": len(sel), **m})
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.out:
        out = {
            "feature_net": {k: manifest[k] for k in ("sha256", "test_accuracy", "recipe")},
            "args": vars(args),
            "rows": rows,
            "summary": summary,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write(args.out, lambda f: json.dump(out, f, indent=2), binary=False)


def merge(args):
    """``--merge``: the rows of several ``--out`` files in one table (same feature network and sizes)."""
    rows, parts = {}, []
    for path in args.merge:
        try:
            with open(path) as f:
                parts.append(json.load(f))
        except (OSError, ValueError) as e:
            raise SystemExit(f"--merge: cannot read {path!r} as an ali_quality.py --out file ({e})") from None
        for r in parts[-1]["rows"]:
            rows[(r["loop"], r["seed"], r["epoch"])] = r
    for key in ("train_size", "test_size", "epochs"):
        values = {part["args"][key] for part in parts}
        if len(values) != 1:
            raise SystemExit(f"--merge: the files differ in {key}: {sorted(values)}")
        setattr(args, key, values.pop())
    if len({part["feature_net"]["sha256"] for part in parts}) != 1:
        raise SystemExit("--merge: the files were scored by different feature networks")
    report(list(rows.values()), args, parts[0]["feature_net"], time.perf_counter())


def _setting(text):
    """``SECTION.KEY=JSON`` (``--set``) as ``("SECTION.KEY", value)``."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key or key.split(".", 1)[0] not in ("train", "model", "discriminator", "data"):
        raise argparse.ArgumentTypeError(
            f"expected SECTION.KEY=JSON with SECTION one of train, model, discriminator, data; got {text!r}"
        )
    try:
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key}: the value {value!r} is not JSON (quote strings)") from None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--train-size", type=int, default=10000, help="first N training images (default: 10,000)")
    p.add_argument(
        "--test-size",
        type=int,
        default=2000,
        help="test images scored, training images of the probe, samples of the FD (default: 2,000)",
    )
    p.add_argument("--loops", nargs="+", choices=list(LOOPS), default=["pyrogen", "reference"])
    p.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 2,000 training images: about a minute")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write every row and the summary as JSON here")
    p.add_argument("--keep-run", default=None, metavar="RUN_DIR", help="keep the first seed's pyrogen run here")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="train nothing: tabulate (and --out) the rows of these --out files together; a later "
        "file's row replaces an earlier one's of the same loop, seed and epoch",
    )
    p.add_argument(
        "--score-run",
        default=None,
        metavar="RUN_DIR",
        help="train nothing: print the four figures of a `pyrogen train ali` run (e.g. a --keep-run "
        "trained on with `pyrogen train ali --resume`)",
    )
    p.add_argument(
        "--set",
        nargs="+",
        type=_setting,
        default=[],
        metavar="SECTION.KEY=JSON",
        help="change the pyrogen loop's configuration, e.g. train.update='\"simultaneous\"' model.hidden=[256]",
    )
    p.add_argument(
        "--window",
        type=int,
        nargs=2,
        default=None,
        metavar=("FIRST", "LAST"),
        help="also print each loop's means over epochs FIRST-LAST and the seeds",
    )
    p.add_argument(
        "--score-from",
        type=int,
        default=1,
        metavar="EPOCH",
        help="score only after this epoch and the later ones (default: 1, every epoch)",
    )
    args = p.parse_args(argv)
    if args.merge:
        return merge(args)
    if args.quick:
        args.seeds, args.epochs, args.train_size, args.test_size = args.seeds[:1], 1, 2000, 1000
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)

    def log(line):
        print(f"[{time.perf_counter() - start:6.0f} s] {line}", flush=True)

    classifier, manifest = load_classifier()  # raises, naming `pyrogen train features`, when not cached
    train_set, test_set = load_fashion_mnist("train"), load_fashion_mnist("test")
    n, m = args.train_size, args.test_size
    ctx = {
        "classifier": classifier.eval(),
        "train": train_set.images[:n],
        "train_labels": train_set.labels[:n],
        "test": test_set.images[:m],
        "test_labels": test_set.labels[:m],
        "probe_train": train_set.images[:m],
        "probe_labels": train_set.labels[:m],
        "z": torch.randn(m, LATENT_DIM, generator=torch.Generator().manual_seed(12345)),
    }
    ctx["real_features"] = extract_features(classifier.features, ctx["test"], 1000, "real images")
    log(
        f"feature network sha256 {manifest['sha256'][:12]} (test accuracy {manifest['test_accuracy']:.4f}, "
        f"{TRAIN_COMMAND}); {n} training images, {m} test images, {args.epochs} epoch(s), seeds {args.seeds}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    if args.score_run:
        loop = RunLoop(args.score_run)
        row = score(loop, ctx)
        print(
            f"{args.score_run} after {loop.epochs} epochs: class agreement {row['agreement']:.3f}, recon MSE "
            f"{row['mse']:.4f}, probe {row['probe']:.3f}, FD {row['fd']:.1f}"
        )
        return
    rows = []
    for seed in args.seeds:  # the loops alternate within each seed: load drifts hit both alike
        for name in args.loops:
            rows += run_one(name, seed, args, ctx, log)
    report(rows, args, manifest, start)


if __name__ == "__main__":
    main()
