"""Posterior collapse and its remedies: synthetic LSTM language-model data (default) or PixelCNN on Fashion-MNIST.

Data: sequences from :class:`pyrogen.models.sequence.RandomLSTMLanguageModel`
(a random LSTM conditioned on a 2-d latent code), in the spirit of He et al.'s
(ICLR 2019) synthetic experiment. Model: :class:`pyrogen.models.sequence.SequenceVAE`
(LSTM encoder, autoregressive LSTM decoder). Methods, all with the same
networks, optimiser, data order and number of generator steps:

* ``standard``  -- ELBO, λ = 1;
* ``annealing`` -- linear KL warm-up from 0.1 to 1 (He et al.'s baseline);
* ``cyclical``  -- Fu et al. 2019, 4 cycles, R = 0.5;
* ``free-bits`` -- Kingma et al. 2016, ε nats per dimension;
* ``aggressive``-- He et al. 2019, text rule (window 15, ≤ 100 inner steps,
  leave when held-out MI drops).

For each: held-out log p(x) (importance sampling, K = 500 in chunks of 100),
ELBO (λ = 1), KL, MI, active units, and training wall time relative to
``standard`` (same process, methods run one after the other; the machine may be
loaded, so read times as rough). For the LSTM data the table ends with the data's
own generator as a reference: its log p(x) (2,000 prior draws of its 2-d z per
sequence) and the information its z carries, E[log p(x|z)] - log p(x), which is
what a model that does not collapse could gain.

    python benchmarks/collapse.py                 # the table in docs/collapse.rst
    python benchmarks/collapse.py --epochs 5 --train-size 2000   # quicker
"""

import argparse
import math
import time

import pyro
import torch

from pyrogen.evaluation import evaluate_dataset
from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI, AggressiveSwitch
from pyrogen.infer.kl_schedule import ConstantKL, CyclicalKL, FreeBitsELBO, LinearWarmup
from pyrogen.models.sequence import RandomLSTMLanguageModel, SequenceVAE

METHODS = ("standard", "annealing", "cyclical", "free-bits", "aggressive")


def true_model_row(lm, test_x, test_z, num_samples=2000):
    """The data's own generative process as a reference: its exact-z log-likelihood and log p(x).

    ``log p(x)`` is estimated with ``num_samples`` prior draws of z per example
    (the latent is 2-d, so prior sampling is accurate); ``mi`` is
    E[log p(x|z)] - E[log p(x)] over the test set, the information z carries.
    """
    with torch.no_grad():
        def log_lik(z, x):
            logits = lm.net(z, x) / lm.temperature
            return torch.distributions.Categorical(logits=logits).log_prob(x).sum(-1)

        g = torch.Generator().manual_seed(0)
        draws = torch.stack([log_lik(torch.randn(test_x.shape[0], lm.latent_dim, generator=g), test_x)
                             for _ in range(num_samples)])
        log_px = (torch.logsumexp(draws, 0) - math.log(num_samples)).mean().item()
        conditional = log_lik(test_z, test_x).mean().item()
    return {"method": "true model (data's generator)", "log_px": log_px, "elbo": float("nan"),
            "kl": float("nan"), "mi": conditional - log_px, "active_units": lm.latent_dim, "seconds": float("nan")}


def make_data(args):
    if args.data == "fashion-mnist":
        from pyrogen.data import load_fashion_mnist, static_binarize

        train = static_binarize(load_fashion_mnist("train").subset(args.train_size).images, seed=1)
        test = static_binarize(load_fashion_mnist("test").subset(args.test_size).images, seed=2)
        return train, test
    lm = RandomLSTMLanguageModel(vocab_size=args.vocab, seq_len=args.seq_len, latent_dim=2, seed=args.seed)
    train, _ = lm.generate(args.train_size, seed=1)
    test, test_z = lm.generate(args.test_size, seed=2)
    args.reference = true_model_row(lm, test, test_z)
    return train, test


def train(method, train_x, test_x, args, log=print):
    """Train one method; returns the row of the table (without relative time)."""
    pyro.set_rng_seed(args.seed)
    if args.data == "fashion-mnist":
        from pyrogen.models.pixelcnn import PixelCNNVAE

        vae = PixelCNNVAE(args.latent_dim, hidden=(args.hidden,), channels=args.channels, num_layers=args.layers)
    else:
        vae = SequenceVAE(args.vocab, args.seq_len, args.latent_dim, args.embed_dim, args.hidden, args.dropout)
    loss = FreeBitsELBO(args.free_bits) if method == "free-bits" else ReparamTrace_ELBO()
    schedule = {
        "annealing": LinearWarmup(args.warmup_epochs, start=0.1),
        "cyclical": CyclicalKL(args.epochs, num_cycles=args.cycles),
    }.get(method, ConstantKL(1.0))
    gen = torch.Generator().manual_seed(args.seed + 1)
    n, bs = train_x.shape[0], args.batch_size
    optim = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[args.optimizer]
    if args.optimizer == "sgd":  # He et al.'s text set-up: SGD, gradients clipped at norm 5
        for p in vae.parameters():
            p.register_hook(lambda g: g * torch.clamp(5.0 / (g.norm() + 1e-12), max=1.0))
    if method == "aggressive":
        enc = optim(vae.encoder.parameters(), lr=args.lr)
        dec = optim(vae.decoder.parameters(), lr=args.lr)

        def fresh():
            return train_x[torch.randint(n, (bs,), generator=gen)]

        window = 10 if args.data == "fashion-mnist" else 15  # He et al.: 10 for images, 15 for text
        svi = AggressiveSVI(vae.model, vae.guide, enc, dec, loss, fresh, window=window, max_steps=100)
        switch = AggressiveSwitch(patience=args.aggressive_patience)
    else:
        svi = TorchSVI(vae.model, vae.guide, optim(vae.parameters(), lr=args.lr), loss)
    start = time.perf_counter()
    steps_per_epoch = n // bs
    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            x = train_x[perm[i * bs:(i + 1) * bs]]
            svi.step(x, kl_weight=schedule(epoch + i / steps_per_epoch))
        if method == "aggressive" and svi.aggressive:
            with pyro.validation_enabled(False):
                mi = collapse_diagnostics(vae.model, vae.guide, test_x, batch_size=500)["mi"]
            svi.aggressive = switch.update(mi)
            log(f"  {method} epoch {epoch + 1}: held-out MI {mi:.3f}, aggressive={svi.aggressive}, "
                f"inner steps so far {svi.inner_steps}")
    seconds = time.perf_counter() - start
    vae.eval()
    with pyro.validation_enabled(False):
        diag = collapse_diagnostics(vae.model, vae.guide, test_x, batch_size=500)
        ev = evaluate_dataset(vae.model, vae.guide, test_x, batch_size=100, num_samples=args.eval_samples)
        ev.setdefault("log_px", float("nan"))
    row = {"method": method, "log_px": ev["log_px"], "elbo": ev["elbo"], **diag, "seconds": seconds}
    log(f"  {method}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return row


def table(rows):
    base = next(r["seconds"] for r in rows if r["method"] == "standard")
    lines = ["| method | log p(x) | ELBO | KL | MI | active units | time vs standard |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        time_ratio = "–" if r["seconds"] != r["seconds"] else f"{r['seconds'] / base:.2f}x"
        lines.append(f"| {r['method']} | {r['log_px']:.2f} | {r['elbo']:.2f} | {r['kl']:.2f} | "
                     f"{r['mi']:.2f} | {r['active_units']} | {time_ratio} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--data", choices=["lstm", "fashion-mnist"], default="lstm",
                   help="lstm: synthetic sequences and an LSTM decoder; fashion-mnist: statically "
                        "binarized images and a PixelCNN decoder (--hidden is the MLP encoder width)")
    p.add_argument("--channels", type=int, default=32, help="PixelCNN feature maps")
    p.add_argument("--layers", type=int, default=4, help="PixelCNN mask-B layers")
    p.add_argument("--vocab", type=int, default=20)
    p.add_argument("--seq-len", type=int, default=10)
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="decoder input and output dropout of the LSTM VAE (He et al.: 0.5)")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                   help="sgd clips each parameter's gradient at norm 5 (He et al. clip the global norm)")
    p.add_argument("--warmup-epochs", type=float, default=5.0)
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--free-bits", type=float, default=0.1)
    p.add_argument("--aggressive-patience", type=int, default=1,
                   help="epochs of no MI gain before leaving aggressive mode (He et al.: 1 for text, 5 for images)")
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"settings: {vars(args)}")
    train_x, test_x = make_data(args)
    rows = [train(m, train_x, test_x, args) for m in args.methods]
    if getattr(args, "reference", None):
        print("  reference: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in args.reference.items()))
    if any(r["method"] == "standard" for r in rows):
        print(table(rows + ([args.reference] if getattr(args, "reference", None) else [])))
    return rows


if __name__ == "__main__":
    main()
