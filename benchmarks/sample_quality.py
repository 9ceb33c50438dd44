"""Sample quality of AE, VAE and GAN samples on Fashion-MNIST, on the same footing.

Every row is scored by :func:`pyrogen.evaluation.evaluate_samples` against the
same real images (the first ``--num-samples`` Fashion-MNIST test images) in the
features of pyrogen's own Fashion-MNIST classifier (trained, or loaded from the
cache after its SHA-256 check, first; its test accuracy is printed): Fréchet
distance (lower is better), precision and recall (Kynkäänniemi et al. 2019,
k = 3; higher is better). The first row is the floor: as many real *training*
images scored as if they were samples.

Models are either trained here, each for the same training wall-clock budget
(``--seconds``, whole epochs, the per-epoch evaluations not counted), or read
from run directories made by ``pyrogen train vae|ae|gan`` (``--run NAME=DIR``).
Samples: the AE and VAE decode draws z ~ N(0, I) to their mean images E[x|z]
(the AE's code distribution need not match that prior); the GAN gives G(z).
All models use MLPs so that the CPU budget buys several epochs::

    python -m benchmarks.sample_quality --seconds 60 --num-samples 10000
    python -m benchmarks.sample_quality --models --run myvae=runs/vae --run mygan=runs/gan

Writes the table as Markdown to stdout and, with ``--out``, as JSON.
"""

import argparse
import json
import os
import sys
import time

import pyro
import torch

from pyrogen.data import load_fashion_mnist
from pyrogen.evaluation import evaluate_samples
from pyrogen.evaluation.features import TRAIN_COMMAND, cache_dir, load_classifier
from pyrogen.runs import atomic_write

DEFAULT_MODELS = ["ae", "vae", "gan-nonsaturating", "gan-wgan-gp", "gan-hinge", "gan-least-squares", "gan-minimax"]


def train_vae_family(kind, args):
    from pyrogen.training import build_trainer, default_config

    # grey levels under the Bernoulli likelihood, as in Pyro's VAE example: the real images scored are grey
    config = default_config(kind=kind, latent_dim=args.latent_dim, hidden=(400,), likelihood="bernoulli-relaxed")
    config["data"].update(test_size=1000)
    config["train"].update(seed=args.seed)
    trainer = build_trainer(config, device="cpu", progress=False)
    epochs = _fit_for(trainer, args.seconds)
    model = trainer.vae.eval()
    pyro.set_rng_seed(args.seed + 1)
    with torch.no_grad():
        samples = torch.cat([model.sample(1000) for _ in range(_chunks(args.num_samples))])[: args.num_samples]
    return samples, epochs, _train_seconds(trainer)


def train_gan(loss, args):
    try:
        from pyrogen.training import build_gan_trainer, default_gan_config
    except ImportError as e:
        raise MissingModel(f"pyrogen.training is not available ({e})") from e
    config = default_gan_config(architecture="mlp", latent_dim=args.latent_dim, hidden=(256, 256), loss=loss)
    config["data"].update(test_size=1000)
    config["train"].update(seed=args.seed)
    trainer = build_gan_trainer(config, device="cpu", progress=False)
    epochs = _fit_for(trainer, args.seconds)
    pyro.set_rng_seed(args.seed + 1)
    z = torch.randn(args.num_samples, args.latent_dim)
    samples = torch.cat([trainer.samples(z[i : i + 1000]) for i in range(0, args.num_samples, 1000)])
    return samples, epochs, _train_seconds(trainer)


def samples_from_run(path, n, seed):
    """Samples of a run directory's model: decoder means (VAE, AE) or G(z) (GAN)."""
    from pyrogen.runs import open_run

    run = open_run(path, device="cpu")
    pyro.set_rng_seed(seed)
    model = run.model()
    with torch.no_grad():
        samples = torch.cat([model.sample(1000) for _ in range(_chunks(n))])[:n]
    rows = run.dir.read_metrics()
    seconds = sum(r.get("seconds", 0) for r in rows if isinstance(r.get("seconds"), (int, float)))
    return samples, len(rows), seconds


class MissingModel(Exception):
    """A model kind whose code is not in this checkout."""


def _chunks(n):
    return (n + 999) // 1000


def _fit_for(trainer, seconds):
    """Whole epochs until the training time (sum of the epochs' ``seconds``) reaches ``seconds``."""
    while _train_seconds(trainer) < seconds:
        trainer.fit(epochs=trainer.epoch + 1)
    return trainer.epoch


def _train_seconds(trainer):
    return sum(row["seconds"] for row in trainer.metrics)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        nargs="*",
        default=DEFAULT_MODELS,
        help=f"models to train here (default: {' '.join(DEFAULT_MODELS)}; none with a bare --models)",
    )
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also score the model of a run directory (pyrogen train vae|ae|gan)",
    )
    p.add_argument("--seconds", type=float, default=60.0, help="training wall-clock budget per model")
    p.add_argument("--num-samples", type=int, default=10000, help="generated and real images per row")
    p.add_argument("--latent-dim", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the table as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    _, manifest = load_classifier(train_if_missing=True)
    print(
        f"feature network: {os.path.join(cache_dir(), 'fashion_mnist_features.pt')}, sha256 "
        f"{manifest['sha256'][:12]}, test accuracy {manifest['test_accuracy']:.4f} "
        f"(recipe v{manifest['recipe']['version']}, {TRAIN_COMMAND})",
        flush=True,
    )
    from pyrogen.evaluation import load_feature_network

    net = load_feature_network()
    real = load_fashion_mnist("test").images[: args.num_samples]
    train_images = load_fashion_mnist("train").images[: args.num_samples]

    rows, missing = [], []

    def score(name, samples, epochs, seconds):
        t = time.perf_counter()
        result = evaluate_samples(samples, real, feature_net=net)
        rows.append(
            {
                "model": name,
                "epochs": epochs,
                "train_seconds": round(seconds, 1),
                **result,
                "eval_seconds": round(time.perf_counter() - t, 1),
            }
        )
        print(
            f"{name}: FD {result['frechet_distance']:.3f}, precision {result['precision']:.3f}, "
            f"recall {result['recall']:.3f} ({epochs} epochs, {seconds:.0f} s training)",
            flush=True,
        )

    score("real (train images)", train_images, 0, 0.0)
    for name in args.models:
        try:
            if name in ("ae", "vae"):
                out = train_vae_family(name, args)
            elif name.startswith("gan-"):
                out = train_gan(name[len("gan-") :], args)
            else:
                raise SystemExit(f"unknown model {name!r}; expected ae, vae or gan-<loss>")
        except MissingModel as e:
            missing.append(f"{name}: {e}")
            print(f"{name}: skipped, {e}", flush=True)
            continue
        score(name, *out)
    for spec in args.run:
        name, _, path = spec.partition("=")
        score(name, *samples_from_run(path or name, args.num_samples, args.seed + 1))

    print()
    print(
        f"Fashion-MNIST, {args.num_samples} generated vs {args.num_samples} test images, features of the "
        f"pyrogen classifier {manifest['sha256'][:12]} (test accuracy {manifest['test_accuracy']:.4f}), "
        f"k = 3; budget {args.seconds:.0f} s training per model, {torch.get_num_threads()} thread(s)"
    )
    print()
    print("| model | epochs | training s | FD (lower better) | precision | recall |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['epochs']} | {r['train_seconds']:.0f} | {r['frechet_distance']:.3f} "
            f"| {r['precision']:.3f} | {r['recall']:.3f} |"
        )
    for m in missing:
        print(f"missing: {m}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.out:
        report = {
            "feature_net": {k: manifest[k] for k in ("sha256", "test_accuracy", "recipe")},
            "args": vars(args),
            "rows": rows,
            "missing": missing,
        }
        atomic_write(args.out, lambda f: json.dump(report, f, indent=2), binary=False)


if __name__ == "__main__":
    main()
