"""The ``pyrogen`` command line: train, evaluate and sample.

::

    pyrogen train vae --out runs/vae --epochs 10
    pyrogen train vae --out runs/vae --epochs 20 --resume
    pyrogen evaluate runs/vae --eval-samples 1000
    pyrogen sample runs/vae -n 64
    pyrogen plot runs/vae
    pyrogen report runs/vae

The command line parses and calls the functions of :mod:`pyrogen.runs`; the run kinds
(:mod:`pyrogen.kinds`) declare their own options. Errors caused by input (a missing data
set, an occupied output directory, a corrupt checkpoint, ...) print one line,
``pyrogen: error: ...``, and exit with status 2.
"""

import argparse
import os
import signal
import sys
import warnings

from pyrogen import kinds, runs
from pyrogen.errors import PyrogenError
from pyrogen.files import release_run_locks
from pyrogen.kinds import options as O
from pyrogen.kinds.vae import optim_settings as _optim_settings  # noqa: F401  (the options' settings)
from pyrogen.runs import binarized_note as _binarized_note  # noqa: F401  (the reconstruction grids' note)
from pyrogen.threads import govern_threads, stop_governing


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line: ``pyrogen: error: argument --seed: expected ...`` (no usage block)."""

    def error(self, message):
        self.exit(2, f"pyrogen: error: {message}\n")

    def _get_value(self, action, arg_string):
        """The option's value; a value type's :class:`~pyrogen.kinds.options.OptionValueError` becomes its line."""
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as e:
            if isinstance(e.__context__, O.OptionValueError):
                raise argparse.ArgumentError(action, str(e.__context__)) from None
            raise


def _add_train_commands(commands):
    train = commands.add_parser("train", help="train a model", description="Train a model.")
    parsers = train.add_subparsers(dest="kind", required=True, metavar="MODEL")
    for kind in kinds.commands():
        kind.add_options(parsers.add_parser(kind.command, help=kind.help, description=kind.description))


def _add_moved_data(p):
    p.add_argument(
        "--data",
        default=None,
        metavar="NEW_PATH",
        help="where the run's recorded data are now, when they were moved or copied (default: the recorded path)",
    )


def _add_evaluate(commands):
    ev = commands.add_parser(
        "evaluate",
        help="test ELBO and importance-sampled log p(x) of a run",
        description="Evaluate a run's checkpoint on its test data: ELBO and log p(x), nats per example.",
    )
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument(
        "--eval-samples",
        type=O.positive_int,
        default=None,
        help="importance samples K per example (default: 1000; not for an autoencoder run, "
        "whose test objective is evaluated)",
    )
    ev.add_argument(
        "--num-samples", type=O.positive_int, default=None, dest="deprecated_num_samples", help=argparse.SUPPRESS
    )  # the old name of --eval-samples, kept working
    ev.add_argument("--test-size", type=O.positive_int, default=None, help="evaluate the first N test images")
    _add_moved_data(ev)
    O.add_seed(
        ev,
        help="random seed of the importance samples; results go to "
        "RUN_DIR/evaluations/log-px-K<K>-seed<SEED>-epoch<E>-test<N>.json (default: 0)",
    )
    O.add_device(ev)


def _add_sample(commands):
    sm = commands.add_parser(
        "sample",
        help="draw samples from a run's model as a PNG grid",
        description="Decode draws z ~ p(z) and save the mean images as a PNG grid.",
    )
    sm.add_argument("run_dir", metavar="RUN_DIR")
    sm.add_argument("-n", "--num-samples", type=O.bounded_int(O.MAX_SAMPLES), default=64, help="images (default: 64)")
    sm.add_argument(
        "--out",
        default=None,
        type=O.out_file,
        help="PNG path (default: RUN_DIR/samples-epoch<E>-n<N>-seed<SEED>.png, with -gmm<K> after "
        "'samples' for --sampler gmm:K and -label<C> for --label C; titled; a number is appended "
        "rather than overwrite an earlier picture)",
    )
    sm.add_argument(
        "--sampler",
        type=O.sampler,
        default="prior",
        metavar="prior|gmm:K",
        help="where codes come from: the model's prior p(z), or gmm:K, a K-component Gaussian mixture "
        "fitted to the codes of the training images (Ghosh et al. 2020; the way to sample an "
        "autoencoder, e.g. gmm:10) (default: prior)",
    )
    O.add_seed(sm, help="random seed (default: 0)")
    sm.add_argument(
        "--label",
        type=int,
        default=None,
        metavar="CLASS",
        help="class-conditional runs: draw every sample of this class (default: a grid with one row per class)",
    )
    O.add_device(sm)


def _add_sample_quality(commands):
    sq = commands.add_parser(
        "sample-quality",
        help="Fréchet distance, precision and recall of a run's samples",
        description="Score samples of a run's model (VAE, autoencoder or GAN) against the test images in the "
        "features of pyrogen's Fashion-MNIST classifier (train it once with 'pyrogen train features').",
    )
    sq.add_argument("run_dir", metavar="RUN_DIR")
    sq.add_argument(
        "-n",
        "--num-samples",
        type=O.positive_int,
        default=10000,
        help="samples, scored against as many test images (default: 10000)",
    )
    _add_moved_data(sq)
    O.add_seed(sq, help="random seed (default: 0)")
    O.add_device(sq)


def _add_plot(commands):
    pl = commands.add_parser(
        "plot",
        help="write a run's pictures as PNG",
        description="Reconstructions, prior samples, latent traversals, interpolations, the 2-D "
        "manifold (latent dimension 2 only), latent codes by class and training curves.",
    )
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument(
        "--out", default=None, metavar="DIR", type=O.out_file, help="folder for the PNGs (default: RUN_DIR/plots)"
    )
    pl.add_argument(
        "--num-points",
        type=O.positive_int,
        default=5000,
        help="test images in the latent-code scatter plot (default: 5000)",
    )
    _add_moved_data(pl)
    O.add_seed(pl, help="random seed (default: 0)")
    O.add_device(pl)


def _add_report(commands):
    rp = commands.add_parser(
        "report",
        help="write a run's HTML report",
        description="One self-contained HTML page (readable offline): settings, evaluation with the "
        "Pareto k-hat diagnostic, metrics, training curves and the run's pictures.",
    )
    rp.add_argument("run_dir", metavar="RUN_DIR")
    rp.add_argument("--out", default=None, type=O.out_file, help="HTML path (default: RUN_DIR/report.html)")
    _add_moved_data(rp)
    O.add_threads(rp)


def build_parser():
    parser = _Parser(prog="pyrogen", description="Deep generative models as Pyro model/guide pairs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train_commands, _add_evaluate, _add_sample, _add_sample_quality, _add_plot, _add_report):
        add(commands)
    return parser


def _train(args):
    """``pyrogen train KIND``: a new run of the options' configuration, or the run in --out resumed."""
    progress = not getattr(args, "no_progress", False)
    kind = kinds.for_command(args.kind, args)
    if not kind.configured:  # the feature network: no run directory, its own training
        kind.standalone(args, progress)
        return 0
    logger = getattr(args, "logger", "none")
    if args.resume:
        runs.resume(
            args.out,
            epochs=args.epochs,
            command=args.kind,
            device=args.device,
            progress=progress,
            logger=logger,
            data=getattr(args, "data", None),
        )
        return 0
    config = O.engine_settings(args, kind.make_config(args))
    runs.train(config, args.out, device=args.device, progress=progress, logger=logger)
    return 0


def _evaluate_run(args):
    eval_samples = args.eval_samples
    if args.deprecated_num_samples is not None:
        print(
            "pyrogen: warning: 'evaluate --num-samples' is deprecated; use --eval-samples, the name "
            "'train' uses for the same K",
            file=sys.stderr,
        )
        eval_samples = args.deprecated_num_samples
    runs.evaluate(
        args.run_dir,
        eval_samples=eval_samples,
        test_size=args.test_size,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        data=args.data,
    )
    return 0


def _sample_run(args):
    runs.sample(
        args.run_dir,
        num_samples=args.num_samples,
        out=args.out,
        sampler=args.sampler,
        seed=args.seed,
        label=args.label,
        device=args.device,
    )
    return 0


def _sample_quality_run(args):
    runs.sample_quality(args.run_dir, num_samples=args.num_samples, seed=args.seed, device=args.device, data=args.data)
    return 0


def _plot_run(args):
    runs.plot(
        args.run_dir, out=args.out, device=args.device, seed=args.seed, num_points=args.num_points, data=args.data
    )
    return 0


def _report_run(args):
    runs.report(args.run_dir, args.out, data=args.data)
    return 0


def _terminate(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def _interrupted(args, e):
    """The line for an interrupted command: what was kept, and how to continue."""
    why = "terminated (SIGTERM)" if str(e) == "SIGTERM" else "interrupted"
    if args.command != "train" or not kinds.for_command(args.kind, args).configured:
        return f"pyrogen: {why}; nothing more was written"
    if getattr(e, "after_training", None):
        run = runs.open_run(args.out, "cpu")
        then = (
            f"evaluate it with 'pyrogen evaluate {args.out}'"
            if run.record.evaluate
            else f"draw its pictures with 'pyrogen plot {args.out}'"
        )
        return f"pyrogen: {why} after training finished; the trained run in {args.out!r} is complete: {then}"
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    if os.path.isfile(checkpoint):
        return (
            f"pyrogen: {why}; the checkpoint of the last finished epoch is kept in {checkpoint!r}: "
            f"continue with 'pyrogen train {args.kind} --out {args.out} --resume'"
        )
    return f"pyrogen: {why} before the first epoch finished; no checkpoint was written, {args.out!r} can be used again"


def _handler(command):
    """The function of ``command``, looked up when called (so a test may replace it)."""
    return globals()[
        {
            "train": "_train",
            "evaluate": "_evaluate_run",
            "sample": "_sample_run",
            "plot": "_plot_run",
            "report": "_report_run",
            "sample-quality": "_sample_quality_run",
        }[command]
    ]


def _say(text):
    """A line for the user between progress bars (the thread governor's note)."""
    from tqdm.auto import tqdm

    tqdm.write(f"pyrogen: {text}", file=sys.stderr)


def main(argv=None):
    import torch

    args = build_parser().parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:  # SIGTERM stops like Ctrl-C: temporary files removed, one line said
        signal.signal(signal.SIGTERM, _terminate)
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # ArviZ announces its refactor in five lines at import; nothing a user of pyrogen can act on
            warnings.filterwarnings(
                "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
            )
            if getattr(args, "threads", None):
                torch.set_num_threads(args.threads)
            else:  # torch's count at most, fewer while other jobs keep cores busy
                govern_threads(on_change=_say)
            return _handler(args.command)(args)
    except PyrogenError as e:
        print(f"pyrogen: error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # torch's allocators raise RuntimeError (OutOfMemoryError on CUDA)
        if not isinstance(e, MemoryError) and "allocate" not in str(e) and "out of memory" not in str(e):
            raise
        print(
            "pyrogen: error: out of memory; expected smaller networks (--hidden, --latent-dim), batches or "
            "sample counts",
            file=sys.stderr,
        )
        return 2
    except OSError as e:  # a full disk, a read-only directory, a path whose parent is missing or a file
        where = f" {e.filename!r}" if e.filename else ""
        print(f"pyrogen: error: cannot read or write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(_interrupted(args, e), file=sys.stderr)
        return 143 if str(e) == "SIGTERM" else 130
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)
        stop_governing()
        torch.set_num_threads(threads)  # main() called from Python leaves torch as it found it
        release_run_locks()  # main() called from Python holds no run's lock once it returns
