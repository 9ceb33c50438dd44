"""Count likelihoods on a simulated count matrix: held-out log p(x) and cluster recovery.

The data come from a known negative-binomial latent model (as single-cell RNA counts are modelled
by scvi-tools; Lopez et al. 2018): ``--clusters`` cluster centres ~ N(0, I) in a
``--true-latent``-dimensional space, each cell's code z_i its cluster's centre plus N(0, 0.6^2 I) noise,
expression shares rho_i = softmax(W z_i + b) over ``--genes`` genes (W_gj ~ N(0, 1 / true-latent),
b_g ~ N(0, 1)), a library size l_i ~ LogNormal(log 2000, 0.5),
and counts x_ig ~ NB(mean l_i rho_ig, inverse dispersion theta_g), theta_g ~ LogNormal(log 3, 0.7).

Every model is the same MLP VAE (genes -> 128 -> latent 10, mirrored decoder, normal prior and
guide, TraceMeanField_ELBO, Adam 1e-3, batches of 128, ``--epochs`` epochs), its encoder fed
log1p(counts) (``input_transform="log1p"``, scvi-tools' ``log_variational``), its decoder's last bias
started at each gene's average (:func:`init_output_bias`), trained on 90% of the cells; the other 10%
are held out. Likelihoods:

* ``negative-binomial`` and ``zinb``: pyrogen's count likelihoods, log-means from the decoder;
* ``normal-log1p``: a Normal with a learned scale per gene on y = log1p(x) (the usual alternative);
* ``normal-log1p-discretised``: the same Normal, trained on the discretised pmf below;
* ``negative-binomial-library`` and ``zinb-library``: shares times each cell's observed total count.

Held-out log p(x) is importance-sampled with the trained guide as proposal (``--particles`` draws),
in nats per cell, **on the count scale**: a probability of the observed integer counts. For the
Normal on log1p the density of y is turned into a pmf of the counts by discretisation,
P(x = k) = P(log1p(k - 1/2) < y <= log1p(k + 1/2)) (the lower end -inf for k = 0), a proper
distribution over the non-negative integers. The table also gives the Normal's continuous density
moved to the count scale with the Jacobian, log N(log1p x) - log(1 + x): a density of a continuous
variable, not a probability, so it is not comparable with the pmfs (it is shown because papers
quote it). The ``-library`` models condition on each cell's total count (p(x | l)), which the
others must model themselves: their figures are not comparable with the rest either.

Cluster recovery: k-means (scipy's ``kmeans2``, k-means++ starts, the best of 10 by inertia) on
the guide's means of the held-out and training cells, scored by the adjusted Rand index (Hubert
and Arabie 1985) against the simulated clusters; references: k-means on the true codes z and on the
first 10 principal components of log1p(counts per 10,000).

    OMP_NUM_THREADS=1 python -m benchmarks.count_data                  # the docs' table (JSON to results/)
    OMP_NUM_THREADS=1 python -m benchmarks.count_data --cells 600 --genes 100 --epochs 2 --particles 10 \\
        --out /tmp/count_smoke.json                                      # a smoke run, seconds
"""

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np
import pyro
import torch
from pyro import distributions as dist
from pyro.distributions import constraints
from scipy.cluster.vq import kmeans2

from pyrogen.distributions import NormalLikelihood, get_likelihood
from pyrogen.evaluation import log_likelihood
from pyrogen.files import atomic_write
from pyrogen.models import VAE

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def simulate(cells, genes, true_latent, clusters, seed):
    """Counts ``(cells, genes)`` (float32), cluster labels, true codes, library sizes and θ."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, true_latent, generator=g)
    labels = torch.randint(clusters, (cells,), generator=g)
    z = centres[labels] + 0.6 * torch.randn(cells, true_latent, generator=g)
    w = torch.randn(genes, true_latent, generator=g) / math.sqrt(true_latent)
    b = torch.randn(genes, generator=g)
    rho = torch.softmax(z @ w.T + b, -1)
    library = torch.exp(math.log(2000.0) + 0.5 * torch.randn(cells, 1, generator=g))
    theta = torch.exp(math.log(3.0) + 0.7 * torch.randn(genes, generator=g))
    mu = library * rho
    rate = torch._standard_gamma(theta.expand(cells, genes).contiguous(), generator=g) * mu / theta
    x = torch.poisson(rate, generator=g)
    return x, labels, z, library.squeeze(1), theta


class Log1pNormal(dist.TorchDistribution):
    """Counts scored through y = log1p(x) under N(loc, scale): ``discretised=False`` gives the density
    of the continuous x = expm1(y), log N(y) - y (the Jacobian), ``True`` the pmf of the bins
    (log1p(k - 1/2), log1p(k + 1/2)] (-inf for k = 0)."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.nonnegative

    def __init__(self, loc, scale, discretised, validate_args=None):
        self.loc, self.scale, self.discretised = torch.broadcast_tensors(loc, scale) + (discretised,)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def mean(self):
        return torch.expm1(self.loc)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            y = torch.normal(
                self.loc.expand(self._extended_shape(sample_shape)),
                self.scale.expand(self._extended_shape(sample_shape)),
            )
            return torch.expm1(y).clamp(min=0).round()

    def log_prob(self, x):
        y = torch.log1p(x)
        if not self.discretised:
            return dist.Normal(self.loc, self.scale).log_prob(y) - y
        hi = (torch.log1p(x + 0.5) - self.loc) / self.scale
        lo = torch.where(
            x > 0, (torch.log1p((x - 0.5).clamp(min=0)) - self.loc) / self.scale, torch.full_like(hi, -math.inf)
        )
        # log(Phi(hi) - Phi(lo)), in the tail where it is accurate: Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)
        upper = lo > 0
        a, b = torch.where(upper, -hi, lo), torch.where(upper, -lo, hi)
        log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
        return log_b + torch.log1p(-torch.exp(log_a - log_b).clamp(max=1 - 1e-12))


class Log1pNormalLikelihood(NormalLikelihood):
    """A Normal with a learned scale per gene on log1p(counts), scoring the counts (:class:`Log1pNormal`)."""

    data_kind = "counts"

    def __init__(self, discretised=False):
        super().__init__(scale="feature", fixed_scale=1.0, min_scale=1e-3)
        self.discretised = discretised

    def forward(self, out):
        loc, scale = self.params(out)
        return Log1pNormal(loc, scale, self.discretised).to_event(self.event_dim)


MODELS = (
    "negative-binomial",
    "zinb",
    "normal-log1p",
    "normal-log1p-discretised",
    "negative-binomial-library",
    "zinb-library",
)


def build(name, genes, latent, hidden):
    if name.startswith("normal-log1p"):
        likelihood = Log1pNormalLikelihood(discretised=name.endswith("discretised"))
    else:
        likelihood = get_likelihood(name)
    return VAE(
        latent_dim=latent, image_shape=(genes,), hidden=(hidden,), likelihood=likelihood, input_transform="log1p"
    )


@torch.no_grad()
def init_output_bias(name, vae, x):
    """The decoder's last bias at each gene's average, on the scale of the output block that holds the
    mean (log mean count; log mean share with a library size; mean log1p count for the Normal), so no
    model spends its first epochs finding the genes' levels. The same rule for every model."""
    genes = x.shape[1]
    if name.startswith("normal-log1p"):
        level = torch.log1p(x).mean(0)
    elif name.endswith("-library"):
        level = torch.log((x / x.sum(1, keepdim=True)).mean(0) + 1e-8)
    else:
        level = torch.log(x.mean(0) + 1e-8)
    vae.decoder.net[-1].bias[:genes] = level


def train(vae, x, epochs, batch_size, lr, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae.likelihood.adapt(x)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": lr}), pyro.infer.TraceMeanField_ELBO())
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(x.shape[0], generator=g).split(batch_size):
            total += svi.step(x[idx])
        losses.append(total / x.shape[0])
    return losses


def adjusted_rand_index(a, b):
    """Hubert and Arabie's adjusted Rand index of two labellings (1 = the same partition, about 0 = chance)."""
    a, b = np.unique(np.asarray(a), return_inverse=True)[1], np.unique(np.asarray(b), return_inverse=True)[1]
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(v):
        return (v * (v - 1) / 2).sum()

    index, rows, cols, n = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), pairs(np.array([len(a)]))
    expected = rows * cols / n
    return float((index - expected) / ((rows + cols) / 2 - expected))


def kmeans_ari(codes, labels, k, seed, starts=10):
    """ARI of the best of ``starts`` k-means++ runs (by inertia) on ``codes`` against ``labels``."""
    codes = np.asarray(codes, dtype=np.float64)
    best = None
    for s in range(starts):
        centres, assign = kmeans2(codes, k, minit="++", seed=seed + s)
        inertia = ((codes - centres[assign]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, assign)
    return adjusted_rand_index(best[1], labels)


@torch.no_grad()
def evaluate(name, vae, test, train_x, labels_test, labels_train, k, particles, seed):
    vae.eval()
    pyro.set_rng_seed(seed)
    row = {"model": name}
    with pyro.validation_enabled(False):
        log_px = log_likelihood(vae.model, vae.guide, test, num_samples=particles, chunk_size=50)
        elbo = log_likelihood(vae.model, vae.guide, test, num_samples=1, chunk_size=1)  # one draw: the ELBO's
        row["test_log_px"] = log_px.mean().item()
        row["test_elbo_1_draw"] = elbo.mean().item()
        if name == "normal-log1p":  # the same trained model, scored by the discretised pmf
            vae.likelihood.discretised = True
            pyro.set_rng_seed(seed)
            row["test_log_px_discretised"] = (
                log_likelihood(vae.model, vae.guide, test, num_samples=particles, chunk_size=50).mean().item()
            )
            vae.likelihood.discretised = False
    codes_test = vae.posterior(test).mean
    codes_train = vae.posterior(train_x).mean
    row["ari_test"] = kmeans_ari(codes_test, labels_test, k, seed)
    row["ari_train"] = kmeans_ari(codes_train, labels_train, k, seed)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=int, default=5000)
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--true-latent", type=int, default=10)
    p.add_argument("--clusters", type=int, default=5)
    p.add_argument("--latent", type=int, default=10)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--particles", type=int, default=200, help="importance samples per held-out cell")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--out", default=os.path.join(RESULTS, "count_data.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    x, labels, z, library, theta = simulate(args.cells, args.genes, args.true_latent, args.clusters, args.seed)
    n_test = int(round(args.test_fraction * args.cells))
    perm = torch.randperm(args.cells, generator=torch.Generator().manual_seed(args.seed + 1))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    train_x, test_x = x[train_idx], x[test_idx]
    labels_train, labels_test = labels[train_idx].numpy(), labels[test_idx].numpy()
    normalised = torch.log1p(x / x.sum(1, keepdim=True) * 1e4)
    centred = normalised - normalised.mean(0)
    pcs = centred @ torch.linalg.svd(centred, full_matrices=False)[2][:10].T
    summary = {
        "zeros": (x == 0).double().mean().item(),
        "mean_count": x.mean().item(),
        "library_median": library.median().item(),
        "theta_median": theta.median().item(),
        "ari_true_codes_test": kmeans_ari(z[test_idx], labels_test, args.clusters, args.seed),
        "ari_pca10_log1p_cp10k_test": kmeans_ari(pcs[test_idx], labels_test, args.clusters, args.seed),
    }
    print(json.dumps(summary), flush=True)
    rows = []
    for name in args.models:
        torch.manual_seed(args.seed)
        vae = build(name, args.genes, args.latent, args.hidden)
        init_output_bias(name, vae, train_x)
        start = time.process_time()
        losses = train(vae, train_x, args.epochs, args.batch_size, args.lr, args.seed)
        row = evaluate(
            name, vae, test_x, train_x, labels_test, labels_train, args.clusters, args.particles, args.seed + 7
        )
        row["train_loss_last_epoch"] = losses[-1]
        row["train_loss_by_epoch"] = [round(v, 2) for v in losses]  # negative ELBO per cell, nats
        row["cpu_seconds"] = round(time.process_time() - start, 1)  # train + evaluate; not a speed figure
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {
        "benchmark": "benchmarks/count_data.py",
        "command": "OMP_NUM_THREADS=1 python -m benchmarks.count_data "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "python": platform.python_version(),
        },
        "settings": vars(args),
        "data": summary,
        "results": rows,
    }
    text = json.dumps(record, indent=1) + "\n"
    atomic_write(args.out, lambda f: f.write(text), binary=False)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
