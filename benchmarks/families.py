"""Latent families × observation likelihoods on Fashion-MNIST: test log p(x) of each combination.

Every combination trains the same MLP VAE (prior and guide from the same
family, the prior at its standard parameters) with
:class:`pyrogen.training.VAETrainer` and ``TraceMeanField_ELBO`` (analytic KL
where ``torch.distributions.kl_divergence`` has the pair, Monte Carlo
otherwise; the table says which), then estimates the test log p(x) by
importance sampling with the trained guide as proposal.

Data: the first ``--train-size`` training images and the first
``--test-size`` test images. The Bernoulli rows train on dynamically
binarized images and score a statically binarized test set; the Continuous
Bernoulli rows score the grey levels in [0, 1] as densities; the discretized
logistic rows score the 256 levels k/255 as probabilities. **The three
kinds of log p(x) are not comparable with each other**: only compare latent
families within one likelihood.

    python -m benchmarks.families                         # the table in docs/families.rst
    python -m benchmarks.families --epochs 1 --train-size 1000 --test-size 200   # a quick look
"""

import argparse
import math
import time

import pyro
import torch

from pyrogen.data import load_fashion_mnist, static_binarize
from pyrogen.errors import TrainingDivergedError
from pyrogen.evaluation import evaluate_dataset
from pyrogen.models import VAE
from pyrogen.training import VAETrainer, default_config

LATENTS = ("normal", "laplace", "student-t", "dirichlet")
LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "discretized-logistic")
DATA = {"bernoulli": "binarized", "continuous-bernoulli": "[0, 1] density", "discretized-logistic": "8-bit levels"}


def run(latent, likelihood, train, test, args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    model = {
        "latent_dim": args.latent_dim,
        "hidden": (args.hidden,),
        "likelihood": likelihood,
        "prior": latent,
        "posterior": latent,
    }
    config = default_config(**model)
    config["train"].update(epochs=args.epochs, batch_size=100, lr=args.lr, elbo="meanfield", seed=args.seed)
    config["eval"].update(num_samples=args.num_samples, batch_size=100)
    binarized = config["data"]["binarize"] != "none"
    test_x = static_binarize(test, seed=12345) if binarized else test
    vae = VAE(**model)
    trainer = VAETrainer(vae, train, test_x, config, progress=False)
    start = time.perf_counter()
    try:
        trainer.fit()
    except TrainingDivergedError:
        return {
            "latent": latent,
            "likelihood": likelihood,
            "kl": trainer.kl_method,
            "elbo": math.nan,
            "log_px": math.nan,
            "seconds": time.perf_counter() - start,
        }
    seconds = time.perf_counter() - start
    vae.eval()
    with pyro.validation_enabled(False), torch.no_grad():
        result = evaluate_dataset(vae.model, vae.guide, test_x, batch_size=100, num_samples=args.num_samples)
    return {
        "latent": latent,
        "likelihood": likelihood,
        "kl": trainer.kl_method,
        "elbo": result["elbo"],
        "log_px": result["log_px"],
        "seconds": seconds,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-samples", type=int, default=100, help="importance samples K per test image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--latents", nargs="+", default=list(LATENTS))
    p.add_argument("--likelihoods", nargs="+", default=list(LIKELIHOODS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    train = load_fashion_mnist("train").images[: args.train_size]
    test = load_fashion_mnist("test").images[: args.test_size]
    print(
        f"Fashion-MNIST, {len(train)} training / {len(test)} test images; MLP {args.hidden} hidden, "
        f"latent dim {args.latent_dim}, {args.epochs} epochs, Adam lr {args.lr}, batch 100, "
        f"TraceMeanField_ELBO, seed {args.seed}; log p(x) by importance sampling, K = {args.num_samples}; "
        f"{torch.get_num_threads()} CPU threads"
    )
    rows = []
    for likelihood in args.likelihoods:
        for latent in args.latents:
            row = run(latent, likelihood, train, test, args)
            rows.append(row)
            print(
                f"  {likelihood:22s} {latent:10s} log p(x) {row['log_px']:9.2f}  ({row['seconds']:.0f} s)", flush=True
            )

    header = (
        "likelihood (data)",
        "latent p(z) = q family",
        "KL",
        "test ELBO (nats)",
        "test log p(x) (nats)",
        "bits/dim",
    )
    lines = []
    for r in rows:
        bpd = f"{-r['log_px'] / (784 * math.log(2)):.3f}" if r["likelihood"] == "discretized-logistic" else "--"
        lines.append(
            (
                f"{r['likelihood']} ({DATA.get(r['likelihood'], '')})",
                r["latent"],
                r["kl"],
                f"{r['elbo']:.2f}",
                f"{r['log_px']:.2f}",
                bpd,
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    rule = "  ".join("=" * w for w in widths)
    print()
    print(rule)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print(rule)
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    print(rule)
    print(
        "log p(x) of different likelihoods are NOT comparable: binary probabilities, densities on [0, 1] "
        "and 8-bit probabilities measure different things; compare latent families within a likelihood."
    )


if __name__ == "__main__":
    main()
