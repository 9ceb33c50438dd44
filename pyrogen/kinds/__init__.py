"""Run kinds: one record per kind of run, one file per kind, one registry line each.

A :class:`~pyrogen.kinds.base.RunKind` says everything pyrogen knows about a kind: its
default configuration, how it builds its models and trainer, its data, its command-line
options, its steps after training, and what it can do (has a density, can sample, is
conditional, is adversarial, ...). :mod:`pyrogen.runs` (open, build, resume, evaluate,
sample, plot, report) and :mod:`pyrogen.cli` look kinds up here and compare no kind names.

Adding a kind is one new file here, declaring ``KIND = RunKind(...)``, and its line in
:data:`KINDS` (``docs/architecture.rst`` walks through an example).
"""

from pyrogen.errors import RunDirError
from pyrogen.kinds import aae, ae, ali, cvae, features, gan, vae
from pyrogen.kinds.base import RunKind, lazy  # noqa: F401

KINDS = {
    "vae": vae.KIND,
    "ae": ae.KIND,
    "cvae": cvae.KIND,
    "gan": gan.KIND,
    "ali": ali.KIND,
    "aae": aae.KIND,
    "features": features.KIND,
}
"""Every run kind by the name ``config.json`` gives it."""


def get_kind(name):
    """The :class:`RunKind` named ``name``.

    :raises RunDirError: for a name no kind has (a run directory of another program or a newer pyrogen).
    """
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise RunDirError(f"unknown run kind {name!r}; expected one of {sorted(KINDS)}") from None


def commands():
    """The kinds that have a ``pyrogen train`` sub-command of their own, in the order of ``--help``."""
    return [k for k in KINDS.values() if k.add_options is not None]


def for_command(command, args):
    """The kind a ``pyrogen train COMMAND`` with parsed ``args`` makes (``vae --conditional`` makes a cvae)."""
    kind = next(k for k in commands() if k.command == command)
    return get_kind(kind.variant(args)) if kind.variant is not None else kind
