"""Kind ``"features"``: the cache of the Fashion-MNIST feature network behind the sample-quality
measures (``pyrogen train features``). Not a run of a generative model: a fixed recipe, no
``config.json`` (a manifest with the weights' SHA-256 instead), nothing to sample, evaluate or resume."""

from pyrogen.errors import PyrogenError
from pyrogen.kinds import options as O
from pyrogen.kinds.base import RunKind, lazy

NOT_A_MODEL = (
    "{run!r} holds the sample-quality feature network's cache (a classifier), not a generative "
    "model; {what} a run made by 'pyrogen train vae|ae|gan|ali|aae'"
)
"""The line for a command that needs a generative model, given the cache directory."""


def add_options(p):
    """Options of ``pyrogen train features``."""
    p.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="default: $PYROGEN_CACHE, else $XDG_CACHE_HOME/pyrogen, else ~/.cache/pyrogen",
    )
    p.add_argument("--force", action="store_true", help="retrain even if a valid cached network exists")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    O.add_threads(p)
    p.add_argument("--resume", action="store_true", help=O.SUPPRESS)  # refused in one line


def standalone(args, progress):
    """``pyrogen train features`` (:func:`pyrogen.runs.train_features`); it does not resume (one go, a
    fixed recipe)."""
    if args.resume:
        raise PyrogenError(
            "pyrogen train features does not resume: the feature network trains in one go by "
            "its fixed recipe; --force trains it again"
        )
    lazy("pyrogen.runs:train_features")(args.cache_dir, args.force, progress)


KIND = RunKind(
    name="features",
    command="features",
    help="the Fashion-MNIST feature network of the sample-quality measures",
    description="Train pyrogen's Fashion-MNIST classifier by its fixed recipe (a few minutes on a CPU) "
    "and cache it, SHA-256 checked, for the Fréchet distance and precision/recall of samples; "
    "keeps a valid cached one unless --force.",
    data="grey",
    add_options=add_options,
    has_density=False,
    can_sample=False,
    vae_pair=False,
    evaluate=None,
    evaluate_refusal=NOT_A_MODEL.replace("{what}", "evaluate"),
    resume_advice="{run!r} holds the sample-quality feature network's cache, which is not resumed: "
    "'pyrogen train features --cache-dir {run} --force' trains it again",
    standalone=standalone,
    configured=False,
)
