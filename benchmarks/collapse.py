"""Posterior collapse and its remedies under two optimisation recipes, after He et al. (ICLR 2019).

Data: sequences of length 10 over 20 tokens from
:class:`pyrogen.models.sequence.RandomLSTMLanguageModel` (a random LSTM
conditioned on a 2-d latent code), in the spirit of He et al.'s synthetic
experiment. Model: :class:`pyrogen.models.sequence.SequenceVAE` (LSTM encoder,
autoregressive LSTM decoder with z in the initial state and every input).

Two network configurations (``--config``):

* ``synthetic`` -- He et al.'s ``config/config_synthetic.py``: latent 2,
  embeddings 50, 50-unit LSTMs, decoder dropout 0.5 on inputs and outputs,
  batch 16, 50 epochs;
* ``pyrogen`` -- this benchmark's earlier set-up: latent 8, embeddings 32,
  64-unit LSTMs, no dropout, batch 50, 10 epochs.

Two optimisation recipes (``--recipes``, see :mod:`pyrogen.optim`):

* ``he2019`` -- their ``text.py``: every weight U(−0.01, 0.01), embeddings
  U(−0.1, 0.1), plain SGD lr 1.0 on the per-example mean loss, global gradient
  norm clipped at 5 (inner loop too), lr halved after 2 epochs without
  validation improvement from epoch 15, reloading the best checkpoint, ≤ 5 times;
* ``adam`` -- PyTorch's initialisation, Adam 1e-3 on the batch-summed loss.

Methods (``--methods``), all with the same networks, data order and recipe:
``standard`` (λ = 1), ``annealing`` (λ from 0.1 to 1 over 10 epochs, He et
al.'s baseline), ``cyclical`` (Fu et al. 2019, 4 cycles, R = 0.5),
``free-bits`` (Kingma et al. 2016, ε nats per dimension), ``aggressive``
(He et al.: inner encoder loop, window 15, ≤ 99 steps, the first on the current
batch; leave as soon as validation MI drops) and ``aggressive-annealing``.

Networks as in their code (``--heads he2019``, the default): the encoder's
last state maps without bias to (μ, log σ²), the decoder's ``z -> c0`` and
output maps have no bias; the KL is analytic (``--elbo meanfield``, the
default). ``--heads pyrogen`` takes :class:`~pyrogen.distributions.ParameterHead`
(μ and log σ, with biases) instead: under SGD at lr 1.0 its log σ moves about
4 times as far per step, and MI then decays once aggressive mode ends.

A validation split (``--val-size``) is carved from the training sequences; it
alone drives the aggressive switch, the learning-rate decay and the choice of
the checkpoint evaluated (the best validation ELBO, as He et al.). The test
set is touched once, at the end: log p(x) (importance sampling, K = 500 in
chunks of 100), ELBO, KL, MI (aggregate posterior over the whole test set;
its cap ln N beside it), active units, training time.

    python -m benchmarks.collapse --quick       # < 5 min of one core: standard, aggressive, he2019, seed 0
    python -m benchmarks.collapse --seeds 0 1 2                  # the full table (hours on 2 cores)
    python -m benchmarks.collapse --methods standard aggressive --recipes he2019 --seeds 0 1 2
    python -m benchmarks.collapse --picture docs/_static/collapse/posterior_mean.png   # Figure 1/3
"""

import argparse
import json
import math
import statistics
import time

import pyro
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.evaluation import evaluate_dataset
from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI, AggressiveSwitch
from pyrogen.infer.kl_schedule import ConstantKL, CyclicalKL, FreeBitsELBO, LinearWarmup
from pyrogen.models.sequence import RandomLSTMLanguageModel, SequenceVAE
from pyrogen.optim import (
    OptimConfig,
    PlateauDecay,
    attach_gradient_clipping,
    build_optimizer,
    initialize_,
    reduce_loss,
    split_validation,
)

METHODS = ("standard", "annealing", "cyclical", "free-bits", "aggressive", "aggressive-annealing")
RECIPE_NAMES = ("he2019", "adam")
CONFIGS = {
    "synthetic": dict(latent_dim=2, embed_dim=50, hidden=50, dropout=0.5, batch_size=16, epochs=50),
    "pyrogen": dict(latent_dim=8, embed_dim=32, hidden=64, dropout=0.0, batch_size=50, epochs=10),
}


def recipe(name):
    """The :class:`~pyrogen.optim.OptimConfig` of a recipe name of this benchmark."""
    return OptimConfig.from_recipe("he2019") if name == "he2019" else OptimConfig()


def true_model_row(lm, test_x, test_z, num_samples=2000):
    """The data's own generative process as a reference: its log p(x) and the information its z carries.

    ``log p(x)`` uses ``num_samples`` prior draws of the 2-d z per sequence;
    ``mi`` is E[log p(x|z)] - E[log p(x)] over the test set.
    """
    with torch.no_grad():

        def log_lik(z, x):
            logits = lm.net(z, x) / lm.temperature
            return torch.distributions.Categorical(logits=logits).log_prob(x).sum(-1)

        g = torch.Generator().manual_seed(0)
        draws = torch.stack(
            [log_lik(torch.randn(test_x.shape[0], lm.latent_dim, generator=g), test_x) for _ in range(num_samples)]
        )
        log_px = (torch.logsumexp(draws, 0) - math.log(num_samples)).mean().item()
        conditional = log_lik(test_z, test_x).mean().item()
    return {
        "method": "generator",
        "recipe": "-",
        "seed": "-",
        "log_px": log_px,
        "elbo": math.nan,
        "kl": math.nan,
        "mi": conditional - log_px,
        "mi_cap": math.nan,
        "active_units": lm.latent_dim,
        "seconds": math.nan,
    }


def make_data(args):
    """``(train, validation, test, generator, test codes)``; validation carved from the training draw.

    ``--data fashion-mnist``: statically binarized images (no generator: the last two are None).
    """
    if args.data == "fashion-mnist":
        from pyrogen.data import load_fashion_mnist, static_binarize

        train = static_binarize(load_fashion_mnist("train").subset(args.train_size).images, seed=1)
        test = static_binarize(load_fashion_mnist("test").subset(args.test_size).images, seed=2)
        train, val = split_validation(train, args.val_size, seed=3)
        return train, val, test, None, None
    lm = RandomLSTMLanguageModel(vocab_size=args.vocab, seq_len=args.seq_len, latent_dim=2, seed=args.data_seed)
    train, _ = lm.generate(args.train_size, seed=1)
    test, test_z = lm.generate(args.test_size, seed=2)
    train, val = split_validation(train, args.val_size, seed=3)
    return train, val, test, lm, test_z


def build(method, recipe_name, args, seed):
    """Model, SVI object, schedule and plateau tracker of one run."""
    pyro.set_rng_seed(seed)
    config = recipe(recipe_name)
    if args.data == "fashion-mnist":
        from pyrogen.models.pixelcnn import PixelCNNVAE

        vae = PixelCNNVAE(args.latent_dim, hidden=(args.hidden,), channels=args.channels, num_layers=args.layers)
    else:
        vae = SequenceVAE(
            args.vocab, args.seq_len, args.latent_dim, args.embed_dim, args.hidden, args.dropout, heads=args.heads
        )
    initialize_(vae, config)
    if method == "free-bits":
        loss = FreeBitsELBO(args.free_bits)  # analytic KL per dimension
    elif args.elbo == "meanfield":
        loss = TraceMeanField_ELBO()  # analytic KL(q || p), as He et al.'s code
    else:
        loss = ReparamTrace_ELBO()  # one-draw Monte Carlo KL
    loss = reduce_loss(loss, config.loss_reduction)
    if method in ("annealing", "aggressive-annealing"):
        schedule = LinearWarmup(args.warmup_epochs, start=0.1)
    elif method == "cyclical":
        schedule = CyclicalKL(args.epochs, num_cycles=args.cycles)
    else:
        schedule = ConstantKL(1.0)
    return vae, config, loss, schedule


def train(method, recipe_name, seed, data, args, log=print, snapshots=None):
    """Train one (method, recipe, seed); returns its row and its per-epoch history.

    ``snapshots``: optional ``{iteration: callback(vae, iteration)}`` called
    after those generator steps (the posterior-mean picture).
    """
    train_x, val_x, test_x = data
    vae, config, loss, schedule = build(method, recipe_name, args, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    n, bs = train_x.shape[0], args.batch_size
    aggressive = method.startswith("aggressive")
    if aggressive:
        enc = build_optimizer(vae.encoder.parameters(), config)
        dec = build_optimizer(vae.decoder.parameters(), config)
        optimizers = [enc, dec]

        def fresh():
            return train_x[torch.randint(n, (bs,), generator=gen)]

        window = 10 if args.data == "fashion-mnist" else 15  # He et al.: 10 for images, 15 for text
        svi = AggressiveSVI(
            vae.model,
            vae.guide,
            enc,
            dec,
            loss,
            fresh,
            window=window,
            max_steps=99,
            clip_norm=config.clip_norm,
            first_on_batch=True,
        )
        switch = AggressiveSwitch(patience=args.aggressive_patience)
    else:
        opt = build_optimizer(vae.parameters(), config)
        optimizers = [opt]
        attach_gradient_clipping(opt, vae.parameters(), config.clip_norm)
        svi = TorchSVI(vae.model, vae.guide, opt, loss)
    plateau = PlateauDecay.from_config(vae, optimizers, config)
    history = []
    start = time.perf_counter()
    steps_per_epoch = n // bs
    iteration = 0
    for epoch in range(args.epochs):
        vae.train()
        perm = torch.randperm(n, generator=gen)
        with pyro.validation_enabled(False):
            for i in range(steps_per_epoch):
                x = train_x[perm[i * bs : (i + 1) * bs]]
                svi.step(x, kl_weight=schedule(epoch + i / steps_per_epoch))
                iteration += 1
                if snapshots and iteration in snapshots:
                    snapshots[iteration](vae, iteration)
        vae.eval()
        with pyro.validation_enabled(False):
            val = evaluate_dataset(vae.model, vae.guide, val_x, batch_size=500)
            diag = collapse_diagnostics(vae.model, vae.guide, val_x, batch_size=500)
        record = {
            "epoch": epoch + 1,
            "val_elbo": val["elbo"],
            "val_kl": diag["kl"],
            "val_mi": diag["mi"],
            "val_au": diag["active_units"],
            "lr": optimizers[0].param_groups[0]["lr"],
        }
        if aggressive:
            record["aggressive"] = int(svi.aggressive)
            record["inner_steps"] = svi.inner_steps
            if svi.aggressive:
                svi.aggressive = switch.update(diag["mi"])
        outcome = plateau.step(epoch, -val["elbo"])
        record["plateau"] = outcome
        history.append(record)
        log(
            f"  [{recipe_name} {method} seed {seed}] "
            + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
            flush=True,
        )
        if outcome == "finished":
            break
    seconds = time.perf_counter() - start
    plateau.restore_best()
    vae.eval()
    with pyro.validation_enabled(False):
        diag = collapse_diagnostics(vae.model, vae.guide, test_x, batch_size=500)
        ev = evaluate_dataset(vae.model, vae.guide, test_x, batch_size=100, num_samples=args.eval_samples)
    row = {
        "method": method,
        "recipe": recipe_name,
        "seed": seed,
        "log_px": ev.get("log_px", math.nan),
        "elbo": ev["elbo"],
        **diag,
        "best_epoch": plateau.best_epoch + 1,
        "epochs_run": len(history),
        "seconds": seconds,
    }
    if snapshots is not None:
        row["vae"] = vae
    return row, history


def summary_line(row):
    return (
        f"method={row['method']} recipe={row['recipe']} seed={row['seed']} log_px={row['log_px']:.2f} "
        f"elbo={row['elbo']:.2f} kl={row['kl']:.2f} mi={row['mi']:.2f} mi_cap={row['mi_cap']:.2f} "
        f"au={row['active_units']} best_epoch={row['best_epoch']} seconds={row['seconds']:.0f}"
    )


def table(rows, reference=None):
    """Markdown table: one line per (recipe, method), mean ± sd over seeds, au as the per-seed list."""
    groups = {}
    for r in rows:
        groups.setdefault((r["recipe"], r["method"]), []).append(r)

    def fmt(values):
        values = [v for v in values if v == v]
        if not values:
            return "–"
        if len(values) == 1:
            return f"{values[0]:.2f}"
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

    lines = [
        "| recipe | method | seeds | log p(x) | ELBO | KL | MI (cap) | active units | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (rec, method), rs in groups.items():
        cap = rs[0]["mi_cap"]
        lines.append(
            f"| {rec} | {method} | {len(rs)} | {fmt([r['log_px'] for r in rs])} | "
            f"{fmt([r['elbo'] for r in rs])} | {fmt([r['kl'] for r in rs])} | "
            f"{fmt([r['mi'] for r in rs])} ({cap:.1f}) | {', '.join(str(r['active_units']) for r in rs)} | "
            f"{fmt([r['seconds'] / 60 for r in rs])} |"
        )
    if reference:
        lines.append(
            f"| – | generator | – | {reference['log_px']:.2f} | – | – | {reference['mi']:.2f} | "
            f"{reference['active_units']} | – |"
        )
    return "\n".join(lines)


def picture(args, data, path):
    """He et al.'s Figures 1/3: E_q[z|x] against E_p[z|x] for 500 held-out sequences, standard beside aggressive."""
    from pyrogen.evaluation.posterior_mean import lag, posterior_mean_space
    from pyrogen.plotting import plot_posterior_mean_space

    points = sorted(args.picture_iterations)
    panels = {}
    held_out = data[1][:500]
    for method in ("standard", "aggressive"):
        panels[method] = {}

        def snap(vae, iteration, method=method):
            was_training = vae.training
            vae.eval()
            with pyro.validation_enabled(False):
                pts = posterior_mean_space(vae.model, vae.guide, held_out, num_samples=args.picture_samples)
            vae.train(was_training)
            panels[method][f"iter {iteration}"] = pts
            summary = lag(pts)
            print(
                f"  picture {method} iter {iteration}: method={pts['method']} "
                + " ".join(f"{k}={v:.3f}" for k, v in summary.items()),
                flush=True,
            )

        row, _ = train(method, "he2019", args.seeds[0], data, args, snapshots={i: snap for i in points})
        print(summary_line(row), flush=True)
    print("wrote", plot_posterior_mean_space(panels, path, dpi=110))


def build_parser():
    """The command line of this benchmark (also read by ``collapse_switchoff.py``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        choices=["lstm", "fashion-mnist"],
        default="lstm",
        help="fashion-mnist: statically binarized images and a PixelCNN decoder (--hidden is the MLP "
        "encoder width); needs a GPU to finish in reasonable time, not measured here",
    )
    p.add_argument("--channels", type=int, default=32, help="PixelCNN feature maps")
    p.add_argument("--layers", type=int, default=4, help="PixelCNN mask-B layers")
    p.add_argument(
        "--config",
        choices=sorted(CONFIGS),
        default="synthetic",
        help="synthetic: He et al.'s config_synthetic.py; pyrogen: the earlier set-up",
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--recipes", nargs="+", choices=RECIPE_NAMES, default=list(RECIPE_NAMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--quick",
        action="store_true",
        help="standard and aggressive under he2019, seed 0, a smaller run (1,500 training sequences, 5 epochs, "
        "K = 100 on 500 test sequences; under 5 minutes of one core)",
    )
    p.add_argument("--vocab", type=int, default=20)
    p.add_argument("--seq-len", type=int, default=10)
    p.add_argument("--latent-dim", type=int, default=None)
    p.add_argument("--embed-dim", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument(
        "--heads",
        choices=["pyrogen", "he2019"],
        default="he2019",
        help="he2019 (default): bias-free (loc, log σ²) encoder head and bias-free decoder maps, as "
        "their code; pyrogen: ParameterHead (loc, log σ with biases), which under SGD lr 1.0 "
        "lets MI decay once aggressive mode ends",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--train-size", type=int, default=5000, help="sequences drawn for training (validation included)")
    p.add_argument("--val-size", type=int, default=500, help="carved from the training sequences")
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--warmup-epochs", type=float, default=10.0)
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--free-bits", type=float, default=0.1)
    p.add_argument(
        "--aggressive-patience",
        type=int,
        default=1,
        help="epochs of no validation-MI gain before leaving aggressive mode (He et al.: 1 text, 5 images)",
    )
    p.add_argument(
        "--elbo",
        choices=["trace", "meanfield"],
        default="meanfield",
        help="meanfield (default): analytic KL, as He et al.'s code; trace: one-draw KL (pyrogen's default elsewhere)",
    )
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write rows and per-epoch histories to this file")
    p.add_argument(
        "--picture",
        default=None,
        metavar="PNG",
        help="instead of the table: He et al.'s posterior-mean picture, standard beside aggressive",
    )
    p.add_argument("--picture-iterations", nargs="+", type=int, default=[1, 100, 300, 1000, 2000])
    p.add_argument("--picture-samples", type=int, default=500, help="importance samples per sequence (latent > 1)")
    return p


def parse_args(argv=None, parser=None):
    """Parsed options with the ``--config`` defaults filled in."""
    args = (parser or build_parser()).parse_args(argv)
    for k, v in CONFIGS[args.config].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.methods, args.recipes, args.seeds = ["standard", "aggressive"], ["he2019"], args.seeds[:1]
        args.train_size, args.val_size, args.test_size, args.epochs, args.eval_samples = 1800, 300, 500, 5, 100
    torch.set_num_threads(args.threads)
    print(f"settings: {vars(args)}", flush=True)
    train_x, val_x, test_x, lm, test_z = make_data(args)
    data = (train_x, val_x, test_x)
    if args.picture:
        picture(args, data, args.picture)
        return []
    reference = true_model_row(lm, test_x, test_z) if lm is not None else None
    rows, histories = [], {}
    for rec in args.recipes:
        for method in args.methods:
            for seed in args.seeds:
                row, history = train(method, rec, seed, data, args)
                print(summary_line(row), flush=True)
                rows.append(row)
                histories[f"{rec}/{method}/{seed}"] = history
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump(
                            {
                                "settings": {k: v for k, v in vars(args).items()},
                                "rows": rows,
                                "histories": histories,
                                "reference": reference,
                            },
                            f,
                            indent=1,
                        )
    if reference:
        print(
            "reference: "
            + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in reference.items())
        )
    for row in rows:
        print(
            f"method={row['method']} log_px={row['log_px']:.2f} kl={row['kl']:.2f} mi={row['mi']:.2f} "
            f"au={row['active_units']}"
        )
    print(table(rows, reference))
    return rows


if __name__ == "__main__":
    main()
