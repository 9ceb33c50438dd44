"""The ``pyrogen`` command line: train, evaluate and sample.

::

    pyrogen train vae --out runs/vae --epochs 10
    pyrogen train vae --out runs/vae --epochs 20 --resume
    pyrogen evaluate runs/vae --num-samples 1000
    pyrogen sample runs/vae -n 64

Errors caused by input (a missing data set, an occupied output directory, a
corrupt checkpoint, ...) print one line, ``pyrogen: error: ...``, and exit
with status 2.
"""

import argparse
import sys

from pyrogen.data import BINARIZATIONS, DATASETS
from pyrogen.errors import PyrogenError


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_device(p):
    p.add_argument("--device", default="auto",
                   help="'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_vae_options(p):
    from pyrogen.distributions import FAMILIES, LIKELIHOODS
    from pyrogen.networks import ARCHITECTURES

    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory for config.json, metrics.csv, checkpoint.pt and pictures; "
                        "must not already hold a run unless --resume is given")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR from its last checkpoint, exactly; model, data "
                        "and optimizer options are then read from the run, and --epochs is the new total")
    g = p.add_argument_group("model")
    g.add_argument("--latent-dim", type=_positive_int, default=50, help="dimension of z (default: 50)")
    g.add_argument("--architecture", choices=ARCHITECTURES, default="mlp",
                   help="encoder/decoder networks (default: mlp)")
    g.add_argument("--hidden", type=_positive_int, nargs="+", default=[400], metavar="WIDTH",
                   help="hidden widths of the encoder, mirrored by the decoder; for conv, the last "
                        "is the width of the dense layer (default: 400)")
    g.add_argument("--likelihood", choices=sorted(LIKELIHOODS), default="bernoulli",
                   help="observation likelihood p(x|z) (default: bernoulli)")
    g.add_argument("--prior", choices=sorted(FAMILIES), default="normal", help="latent family of p(z)")
    g.add_argument("--posterior", choices=sorted(FAMILIES), default="normal",
                   help="latent family of q(z|x)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                   help="data set (default: fashion-mnist, read from /usr/share/datasets/fashion-mnist)")
    g.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    g.add_argument("--binarize", choices=BINARIZATIONS, default="dynamic",
                   help="binarization of the grey levels: resampled every epoch (dynamic), drawn "
                        "once (static), or none (default: dynamic)")
    g.add_argument("--train-size", type=_positive_int, default=None,
                   help="use only the first N training images")
    g.add_argument("--test-size", type=_positive_int, default=None, help="use only the first N test images")
    g = p.add_argument_group("training (AEVB: minibatch M, L particles, Adam)")
    g.add_argument("--epochs", type=_positive_int, default=10, help="epochs in total (default: 10)")
    g.add_argument("--batch-size", type=_positive_int, default=100, help="minibatch size M (default: 100)")
    g.add_argument("--num-particles", type=_positive_int, default=1,
                   help="Monte Carlo draws L per example and step (default: 1)")
    g.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    g.add_argument("--elbo", choices=["trace", "meanfield"], default="trace",
                   help="trace: Monte Carlo KL (Trace_ELBO); meanfield: analytic KL (TraceMeanField_ELBO)")
    g.add_argument("--seed", type=int, default=0, help="random seed; seeded runs are reproducible")
    g.add_argument("--eval-samples", type=_non_negative_int, default=1000,
                   help="importance samples K for the final log p(x) on the test set; 0 skips it "
                        "(default: 1000)")
    _add_device(p)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pyrogen", description="Deep generative models as Pyro model/guide pairs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model", description="Train a model.")
    kinds = train.add_subparsers(dest="kind", required=True, metavar="MODEL")
    _add_vae_options(kinds.add_parser(
        "vae", help="variational autoencoder trained by SVI",
        description="Train a VAE by SVI (AEVB), print test ELBO and importance-sampled log p(x), "
                    "and write metrics, a checkpoint and PNG grids of samples and reconstructions."))

    ev = commands.add_parser(
        "evaluate", help="test ELBO and importance-sampled log p(x) of a run",
        description="Evaluate a run's checkpoint on its test data: ELBO and log p(x), nats per example.")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--num-samples", type=_positive_int, default=1000,
                    help="importance samples K per example (default: 1000)")
    ev.add_argument("--test-size", type=_positive_int, default=None, help="evaluate the first N test images")
    _add_device(ev)

    sm = commands.add_parser("sample", help="draw samples from a run's model as a PNG grid",
                             description="Decode draws z ~ p(z) and save the mean images as a PNG grid.")
    sm.add_argument("run_dir", metavar="RUN_DIR")
    sm.add_argument("-n", "--num-samples", type=_positive_int, default=64, help="images (default: 64)")
    sm.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples.png)")
    sm.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_device(sm)
    return parser


def _report(result):
    line = f"test ELBO {result['elbo']:.2f} nats"
    if "log_px" in result:
        line += f", log p(x) {result['log_px']:.2f} nats (K = {result['num_samples']})"
    print(line)


def _evaluate(trainer, num_samples):
    result = trainer.evaluate(num_samples)
    result["num_samples"] = num_samples
    result["epoch"] = trainer.epoch
    if trainer.run is not None:
        trainer.run.write_json("evaluation.json", result)
    return result


def _train_vae(args):
    from pyrogen.runs import RunDir
    from pyrogen.training import build_trainer, default_config, resume_trainer

    progress = not args.no_progress
    if args.resume:
        trainer = resume_trainer(args.out, device=args.device, progress=progress)
        trainer.config["train"]["epochs"] = args.epochs
    else:
        config = default_config(latent_dim=args.latent_dim, architecture=args.architecture,
                                hidden=tuple(args.hidden), likelihood=args.likelihood,
                                prior=args.prior, posterior=args.posterior)
        config["data"].update(dataset=args.dataset, root=args.data_dir, binarize=args.binarize,
                              train_size=args.train_size, test_size=args.test_size)
        config["train"].update(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               elbo=args.elbo, num_particles=args.num_particles, seed=args.seed)
        config["eval"]["num_samples"] = args.eval_samples
        # Build (and so validate) everything before the run directory is created.
        trainer = build_trainer(config, device=args.device, progress=progress)
        trainer.run = RunDir.create(args.out, config)
    trainer.fit()
    for path in trainer.write_pictures():
        print(f"wrote {path}")
    _report(_evaluate(trainer, trainer.config["eval"]["num_samples"]))
    return 0


def _evaluate_run(args):
    from pyrogen.training import resume_trainer

    trainer = resume_trainer(args.run_dir, device=args.device, progress=not args.no_progress)
    if args.test_size:
        trainer.test_data = trainer.test_data[: args.test_size]
    _report(_evaluate(trainer, args.num_samples))
    return 0


def _sample_run(args):
    import os

    import pyro

    from pyrogen.runs import RunDir
    from pyrogen.training import load_model

    vae = load_model(args.run_dir, device=args.device)
    pyro.set_rng_seed(args.seed)
    images = vae.sample(args.num_samples)
    out = os.path.abspath(args.out or os.path.join(args.run_dir, "samples.png"))
    path = RunDir(os.path.dirname(out)).save_image(os.path.basename(out), images)
    print(f"wrote {path}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    handlers = {"train": _train_vae, "evaluate": _evaluate_run, "sample": _sample_run}
    try:
        return handlers[args.command](args)
    except PyrogenError as e:
        print(f"pyrogen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrogen: interrupted; the last finished epoch's checkpoint is kept", file=sys.stderr)
        return 130
