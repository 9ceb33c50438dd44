"""Why MI decays after aggressive mode ends: one aggressive run, branched at its switch-off.

Trains ``SequenceVAE`` aggressively under He et al.'s recipe (He, Spokoyny,
Neubig and Berg-Kirkpatrick, ICLR 2019) on ``benchmarks/collapse.py``'s data
until the text rule switches aggressive mode off (validation MI drops), then
continues the *same* weights and data order with ordinary joint SGD under
several learning rates (``--variants lr1 lr0.25 ...``), printing validation
MI, KL and ELBO (nats per sequence) per epoch. If MI survives at a smaller
rate but not at lr 1.0, the decay is a matter of step size, not of a lagging
inference network. Takes every option of ``collapse.py`` (``--heads``,
``--elbo``, ``--train-size``, ``--seeds`` ...):

    python -m benchmarks.collapse_switchoff --heads pyrogen --elbo trace --train-size 3000 --seeds 0 \\
        --post-epochs 10 --variants lr1 lr0.25 lr0.0625
"""

import copy
import time

import pyro
import torch

from benchmarks.collapse import build, build_parser, make_data, parse_args
from pyrogen.evaluation import evaluate_dataset
from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.infer import TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI, AggressiveSwitch
from pyrogen.optim import OptimConfig, attach_gradient_clipping, build_optimizer


def main(argv=None):
    parser = build_parser()
    parser.add_argument("--post-epochs", type=int, default=10, help="joint epochs after the switch-off, per variant")
    parser.add_argument("--variants", nargs="+", default=["lr1", "lr0.25"], help="lrX: joint SGD at learning rate X")
    parser.add_argument("--max-aggressive-epochs", type=int, default=6)
    args = parse_args(argv, parser)
    torch.set_num_threads(args.threads)
    train_x, val_x, _, _, _ = make_data(args)
    seed = args.seeds[0]
    vae, config, loss, _ = build("aggressive", "he2019", args, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    n, bs = train_x.shape[0], args.batch_size
    enc, dec = build_optimizer(vae.encoder.parameters(), config), build_optimizer(vae.decoder.parameters(), config)
    svi = AggressiveSVI(
        vae.model,
        vae.guide,
        enc,
        dec,
        loss,
        lambda: train_x[torch.randint(n, (bs,), generator=gen)],
        window=15,
        max_steps=99,
        clip_norm=config.clip_norm,
        first_on_batch=True,
    )
    switch = AggressiveSwitch(patience=args.aggressive_patience)
    start = time.perf_counter()

    def epoch(step, g):
        vae.train()
        perm = torch.randperm(n, generator=g)
        with pyro.validation_enabled(False):
            for i in range(n // bs):
                step(train_x[perm[i * bs : (i + 1) * bs]])
        vae.eval()
        with pyro.validation_enabled(False):
            elbo = evaluate_dataset(vae.model, vae.guide, val_x, batch_size=500)["elbo"]
            d = collapse_diagnostics(vae.model, vae.guide, val_x, batch_size=500)
        return elbo, d

    for e in range(args.max_aggressive_epochs):
        elbo, d = epoch(svi.step, gen)
        print(
            f"aggressive epoch {e + 1}: elbo={elbo:.3f} kl={d['kl']:.3f} mi={d['mi']:.3f} "
            f"au={d['active_units']} t={time.perf_counter() - start:.0f}s",
            flush=True,
        )
        if not switch.update(d["mi"]):
            break
    weights, order = copy.deepcopy(vae.state_dict()), gen.get_state()
    for variant in args.variants:
        if not variant.startswith("lr"):
            raise SystemExit(f"collapse_switchoff.py: error: variant {variant!r}: expected lrX, e.g. lr0.25")
        vae.load_state_dict(weights)
        g = torch.Generator()
        g.set_state(order)
        cfg = OptimConfig.from_recipe("he2019", lr=float(variant[2:]))
        opt = build_optimizer(vae.parameters(), cfg)
        attach_gradient_clipping(opt, vae.parameters(), cfg.clip_norm)
        joint = TorchSVI(vae.model, vae.guide, opt, loss)
        cells = []
        for e in range(args.post_epochs):
            elbo, d = epoch(joint.step, g)
            cells.append(f"{d['mi']:.2f}")
            print(
                f"  {variant} epoch {e + 1} after the switch-off: elbo={elbo:.3f} kl={d['kl']:.3f} "
                f"mi={d['mi']:.3f} au={d['active_units']}",
                flush=True,
            )
        print(f"variant={variant} mi_per_epoch=" + ",".join(cells), flush=True)


if __name__ == "__main__":
    main()
