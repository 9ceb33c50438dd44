"""Command-line options declared once: the value types and the groups every command shares.

The functions here receive the parser (or a group of it) and add options; the
value types turn an option's text into its value or raise :class:`OptionValueError`
with one line (``expected ..., got ...``), which the command line's parser
(:mod:`pyrogen.cli`, the one module that imports argparse) prints as
``pyrogen: error: argument --NAME: ...`` with exit status 2. Every float option is
finite; every size has an upper bound beyond which the networks, batches or images
would not fit in memory.
"""

import math
import os
import re

from pyrogen.data import BINARIZATIONS, DATASETS
from pyrogen.errors import PyrogenError

SUPPRESS = "==SUPPRESS=="
"""argparse's mark of an option left out of ``--help`` (``argparse.SUPPRESS``)."""


class OptionValueError(ValueError):
    """An option's value that its type refuses; the message is the line after ``argument --NAME:``."""


MAX_WIDTH = 65536
"""The largest ``--latent-dim``, ``--hidden`` or ``--channels`` accepted (larger ones do not fit in memory)."""
MAX_SAMPLES = 100000
"""The most images ``pyrogen sample`` draws into one grid."""
MAX_STEP_ELEMENTS = 2**28
"""The most pixels one training step may hold (particles x batch x pixels): 1 GiB of float32 per tensor."""
PIXELS = 28 * 28
"""Pixels of an image of every data set of :data:`~pyrogen.data.DATASETS`."""
MAX_BATCH = MAX_STEP_ELEMENTS // PIXELS
"""The largest ``--batch-size``: one batch of images within :data:`MAX_STEP_ELEMENTS`."""
MAX_PSEUDO_INPUTS = 10000
"""The most pseudo-inputs K of ``--prior vamp:K`` (each a learned image; the prior's density sums over all K)."""
MAX_SEED = 2**32 - 1
"""The largest ``--seed``: NumPy's generator, which Pyro seeds alongside torch's, takes 32-bit seeds."""
MAX_THREADS = 1024
"""The most ``--threads``: beyond this torch's thread pool exhausts the memory of ordinary machines."""
BYTES_PER_PARAMETER = 16
"""float32 weight, gradient and Adam's two moments: what one trained parameter holds in memory."""


MAX_EPOCHS = 1_000_000
"""The most epochs ``--epochs`` takes: far past any real run, so a typo is refused instead of training forever."""


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise OptionValueError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise OptionValueError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise OptionValueError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise OptionValueError(f"expected an integer >= 0, got {text!r}")
    return value


def bounded_int(limit, why=""):
    """A positive integer at most ``limit`` (beyond it the networks or images would not fit in memory)."""

    def parse(text):
        value = positive_int(text)
        if value > limit:
            raise OptionValueError(f"expected a positive integer <= {limit}{why}, got {value}")
        return value

    return parse


def seed(text):
    """A seed: an integer from 0 to :data:`MAX_SEED`."""
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise OptionValueError(f"expected an integer from 0 to {MAX_SEED}, got {text}")
    return value


def _float(text, expected, ok):
    try:
        value = float(text)
    except ValueError:
        raise OptionValueError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise OptionValueError(f"expected {expected}, got {text!r}")
    return value


def finite_float(text):
    return _float(text, "a finite number", lambda v: True)


def positive_float(text):
    return _float(text, "a positive finite number", lambda v: v > 0)


def non_negative_float(text):
    return _float(text, "a finite number >= 0", lambda v: v >= 0)


def unit_interval(text):
    return _float(text, "a number in [0, 1)", lambda v: 0 <= v < 1)


def device(text):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, refused up front where that device does not exist."""
    import torch

    if text == "auto":
        return text
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise OptionValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise OptionValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise OptionValueError(f"expected a device that exists, got {text!r}: no CUDA GPU is available")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise OptionValueError(
            f"expected a device that exists, got {text!r}: there are {torch.cuda.device_count()} CUDA devices"
        )
    return text


def run_dir(text):
    """An output run directory: a non-empty path that is not the file system's root."""
    if not text.strip():
        raise OptionValueError("expected a directory for the run, got an empty path ''")
    if os.path.abspath(text) == os.path.abspath(os.sep):
        raise OptionValueError(f"expected a directory of its own for the run, got the root {text!r}")
    return text


def out_file(text):
    """An output file: a non-empty path."""
    if not text.strip():
        raise OptionValueError("expected a file path, got an empty path ''")
    return text


def latent_family(vamp):
    """An argparse type: a registered latent family's name, ``erlang:k``, or (for the prior) ``vamp:K``."""

    def parse(text):
        from pyrogen.distributions import LatentFamilyError, get_family

        if vamp and re.fullmatch(r"vamp:[1-9][0-9]*", text):
            if int(text.split(":")[1]) > MAX_PSEUDO_INPUTS:
                raise OptionValueError(f"expected vamp:K with K <= {MAX_PSEUDO_INPUTS} pseudo-inputs, got {text!r}")
            return text
        try:
            get_family(text)
        except LatentFamilyError as e:
            raise OptionValueError(str(e) + ("" if not vamp else "; or vamp:K for the VampPrior")) from None
        return text

    return parse


def flow(text):
    from pyrogen.distributions import LatentFamilyError
    from pyrogen.models.flows import parse_flow

    try:
        parse_flow(text)
    except LatentFamilyError as e:
        raise OptionValueError(str(e)) from None
    return text


def sampler(text):
    match = re.fullmatch(r"gmm:([1-9][0-9]*)", text)
    if text != "prior" and match is None:
        raise OptionValueError(f"expected 'prior' or 'gmm:K' with K >= 1 components, got {text!r}")
    return text


# ------------------------------------------------------------------------------------ shared groups


def add_threads(p):
    p.add_argument(
        "--threads",
        type=bounded_int(MAX_THREADS),
        default=None,
        metavar="N",
        help="CPU threads of torch (torch.set_num_threads); torch's default, one per core, "
        "stalls when anything else runs on the machine, so give fewer on a shared one "
        f"(at most {MAX_THREADS}; default: torch's)",
    )


def add_device(p):
    """``--device``, ``--no-progress`` and ``--threads``: where and how a command computes."""
    p.add_argument(
        "--device",
        default="auto",
        type=device,
        help="'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N' (default: auto)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_threads(p)


def add_seed(p, help="random seed; seeded runs are reproducible"):
    p.add_argument("--seed", type=seed, default=0, help=help)


def add_run(p, pictures="pictures", resumed=""):
    """``--out RUN_DIR`` and ``--resume``, the options every ``pyrogen train`` kind shares."""
    p.add_argument(
        "--out",
        required=True,
        metavar="RUN_DIR",
        type=run_dir,
        help=f"run directory for config.json, metrics.csv, checkpoint.pt and {pictures}; "
        "must not already hold a run unless --resume is given",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run in RUN_DIR from its last checkpoint, exactly;{resumed} "
        "--epochs, if given, is the new total (default: the run's own)",
    )
    add_engines(p)


PRECISION_CHOICES = ("32", "bf16", "fp16")
"""``--precision``'s values (:data:`pyrogen.precision.PRECISIONS`)."""
LOGGERS = ("none", "tensorboard")
"""``--logger``'s values: where each epoch's metrics go besides ``metrics.csv``."""


def add_engines(p):
    """``--precision`` and ``--logger``, which every ``pyrogen train`` kind takes (:func:`add_run` adds them)."""
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=None,
        help="numbers of the training steps: 32 (float32), bf16 or fp16 (torch.autocast: products in "
        "16 bits, losses and parameters in float32; fp16 with a gradient scaler, which the VAE "
        "family's step has and the adversarial kinds' do not: they take bf16); a resumed run "
        "keeps its own (default: 32)",
    )
    p.add_argument(
        "--logger",
        choices=LOGGERS,
        default="none",
        help="tensorboard: also write each epoch's metrics and image grids to RUN_DIR/tensorboard "
        "(needs pip install 'pyrogen[tensorboard]'; view with tensorboard --logdir RUN_DIR) "
        "(default: none)",
    )


def engine_settings(args, config):
    """``config["train"]["precision"]`` from ``--precision`` (a new run; unchanged where not given)."""
    if getattr(args, "precision", None) is not None:
        config["train"]["precision"] = args.precision
    return config


def add_data(p, binarize=None, channels_flag="--channels"):
    """The data group: data set, its directory, the first N images, your own data (:func:`add_source`);
    ``binarize`` is ``--binarize``'s help (None: the kind trains on grey levels and has no such option);
    ``channels_flag`` the name of the option that reads a folder as grey or RGB (a GAN's ``--channels``
    are its networks' widths)."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        default="fashion-mnist",
        help="data set (default: fashion-mnist, read from /usr/share/datasets/fashion-mnist)",
    )
    g.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    if binarize is not None:
        g.add_argument("--binarize", choices=BINARIZATIONS, default=None, help=binarize)
    g.add_argument("--train-size", type=positive_int, default=None, help="use only the first N training images")
    g.add_argument("--test-size", type=positive_int, default=None, help="use only the first N test images")
    add_source(g, channels_flag)
    return g


def image_size(text):
    """``--image-size H`` or ``HxW``: a pair of positive pixel counts."""
    from pyrogen.data.sources import parse_image_size

    try:
        return parse_image_size(text)
    except PyrogenError as e:
        raise OptionValueError(f"expected H or HxW in pixels, got {text!r}") from e


def fraction(text):
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise OptionValueError(f"expected a number strictly between 0 and 1, got {text!r}")
    return value


def add_source(g, channels_flag="--channels"):
    """Your own data (:mod:`pyrogen.data.sources`) instead of the built-in data set: ``--data PATH`` and
    how to read and split it, and ``--stream``."""
    g.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="your own data instead of the data set: a folder of images (class subfolders give "
        "labels), a .npy/.npz/.pt array of shape (N, C, H, W), (N, H, W) or (N, D), or a "
        ".csv/.parquet table of numeric columns; recorded in the run (default: none)",
    )
    g.add_argument(
        "--image-size",
        type=image_size,
        default=None,
        metavar="H[xW]",
        help="with a folder of images: resize every image to H x W pixels (default: their own size, which must be one)",
    )
    g.add_argument(
        channels_flag,
        type=int,
        choices=(1, 3),
        default=None,
        dest="source_channels",
        help="with a folder of images: read them as grey (1) or RGB (3) (default: the first image's)",
    )
    g.add_argument(
        "--label-column", default=None, metavar="NAME", help="with a table: the column of labels (default: none)"
    )
    g.add_argument(
        "--test-data",
        default=None,
        metavar="PATH",
        help="with --data: the test set, a source of the same kind and shape (default: hold out "
        "--test-fraction of --data)",
    )
    g.add_argument(
        "--test-fraction",
        type=fraction,
        default=None,
        help="with --data: the fraction held out as the test set, drawn with --split-seed (default: 0.1)",
    )
    g.add_argument(
        "--split-seed",
        type=non_negative_int,
        default=0,
        help="with --data: the seed of the test split's draw, recorded in the run (default: 0)",
    )
    g.add_argument(
        "--stream",
        action="store_const",
        const=True,
        default=None,
        help="with --data: read training batches from disk in worker processes (a .npy or a folder) "
        "instead of holding the data in memory (default: stream when the data exceed half the "
        "available memory)",
    )
    g.add_argument(
        "--no-stream",
        action="store_const",
        const=False,
        dest="stream",
        help="with --data: hold the data in memory however large (default: as --stream says)",
    )
    g.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=None,
        help="with --stream: worker processes reading batches (default: one less than the CPU cores, 1 to 4)",
    )


def add_epochs_and_batch(g, batch_size, what="minibatch size"):
    g.add_argument(
        "--epochs",
        type=bounded_int(MAX_EPOCHS, " (a run that would not end)"),
        default=None,
        help="epochs in total (default: 10; with --resume, the run's own)",
    )
    g.add_argument(
        "--batch-size",
        type=bounded_int(MAX_BATCH, " (larger batches do not fit in memory)"),
        default=batch_size,
        help=f"{what} (default: {batch_size})",
    )


def data_settings(args, config):
    """``config["data"]`` updated from the data group's options (and the model's ``image_shape`` from
    ``--data``'s examples)."""
    binarize = getattr(args, "binarize", None)
    config["data"].update(
        dataset=args.dataset, root=args.data_dir, train_size=args.train_size, test_size=args.test_size
    )
    if binarize is not None:
        config["data"]["binarize"] = binarize
    source_settings(args, config)
    return config


def source_settings(args, config):
    """``--data PATH`` opened (:func:`pyrogen.data.sources.open_source`) and recorded in ``config``; its
    examples' shape becomes the model's ``image_shape``. Data that will not stream are read now, so the
    record holds a hash of their content."""
    from pyrogen.data.loaders import choose_stream
    from pyrogen.data.sources import open_source

    path = getattr(args, "data", None)
    if path is None:
        given = [
            f"--{k.replace('_', '-')}"
            for k in (
                "image_size",
                "source_channels",
                "label_column",
                "test_data",
                "test_fraction",
                "stream",
                "num_workers",
            )
            if getattr(args, k, None) is not None
        ]
        given = [g.replace("--source-channels", "--channels") for g in given]
        if given:
            raise PyrogenError(f"argument {given[0]}: applies to your own data; give --data PATH")
        return
    if args.data_dir is not None or args.dataset != "fashion-mnist":
        raise PyrogenError(
            "argument --data: your own data replace the built-in data set; drop "
            f"{'--data-dir' if args.data_dir is not None else '--dataset'}"
        )
    if args.test_data is not None and args.test_fraction is not None:
        raise PyrogenError("argument --test-fraction: the test set is --test-data; give one of the two")
    source = open_source(
        path,
        image_size=args.image_size,
        channels=args.source_channels,
        label_column=args.label_column,
        test_data=args.test_data,
        split_seed=args.split_seed,
        test_fraction=0.1 if args.test_fraction is None else args.test_fraction,
    )
    if args.stream and not source.can_stream:
        raise PyrogenError(
            f"argument --stream: streaming reads a .npy array or a folder of images, and "
            f"{source.path!r} is read into memory"
        )
    device = getattr(args, "device", "auto")
    if device in (None, "auto"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    streams = args.stream if args.stream is not None else source.can_stream and choose_stream(source.nbytes, device)
    if not streams:
        source.data()  # read (and checked) now: the record then holds a hash of the content
    config["data"]["source"] = source.record()
    if args.stream is not None:
        config["data"]["stream"] = args.stream
    if args.num_workers is not None:
        config["data"]["num_workers"] = args.num_workers
    if "image_shape" in config["model"]:  # a model that takes the examples' shape
        config["model"]["image_shape"] = list(source.shape)


def epochs(args, default=10):
    """``--epochs`` of a new run (its default where not given)."""
    return default if args.epochs is None else args.epochs
