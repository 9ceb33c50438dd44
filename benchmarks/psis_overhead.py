"""What the Pareto k-hat diagnostic adds to an importance-sampled log p(x).

Times, interleaved over repeats, (a) computing the (K, B) log weights and
log p(x) of B test examples with K draws (the 784-400-50 MLP VAE of Kingma
and Welling; weights untrained, which does not change the cost) and (b) the
PSIS fit (ArviZ's ``psislw``) on those weights, and prints the medians and
their ratio b / a.

    .venv/bin/python -m benchmarks.psis_overhead --examples 200 --samples 1000 --repeats 5
"""

import argparse
import statistics
import time

import pyro
import torch

from pyrogen.evaluation import log_likelihood
from pyrogen.evaluation.psis import pareto_khat
from pyrogen.models import VAE


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pyro.set_rng_seed(0)
    vae = VAE(latent_dim=50, hidden=(400,)).eval()
    x = torch.bernoulli(torch.full((args.examples, 1, 28, 28), 0.3))
    times = {"log p(x)": [], "PSIS fit": []}
    with pyro.validation_enabled(False):
        for _ in range(args.repeats):
            start = time.perf_counter()
            _, log_w = log_likelihood(vae.model, vae.guide, x, args.samples, return_log_weights=True)
            times["log p(x)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            pareto_khat(log_w)
            times["PSIS fit"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(
            f"{k}: median {v:.3f} s for {args.examples} examples, K = {args.samples} "
            f"({args.repeats} interleaved repeats)"
        )
    print(f"PSIS fit / log p(x) = {med['PSIS fit'] / med['log p(x)']:.3f}")


if __name__ == "__main__":
    main()
