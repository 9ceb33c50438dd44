"""Exceptions pyrogen raises for bad input.

Every error a user can cause (a missing data set, a malformed batch, a foreign
checkpoint, a run directory that already holds a run) derives from
:class:`PyrogenError`, so the command line can print its message without a
traceback. Each also derives from the built-in exception a Python user would
expect (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError``
keeps working.
"""

import re

_PYRO_SHAPES = re.compile(r"\n\s*Trace Shapes:")


class PyrogenError(Exception):
    """Base class of the errors that a user's input causes.

    Its message is one line: when Pyro re-raises one from inside a model or guide, with the trace's
    "Trace Shapes:" table appended (``exc_type(f"{exc}\\n{shapes}")``, a ValueError's way out of
    :class:`pyro.poutine.trace_messenger.TraceHandler`), the table is dropped from the message;
    the original exception stays the ``__cause__``.
    """

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str):
            args = (_PYRO_SHAPES.split(args[0], 1)[0],)
        super().__init__(*args)
        self.args = args


class DataError(PyrogenError, ValueError):
    """Data of the wrong shape, type, range or support."""


class DatasetNotFoundError(PyrogenError, FileNotFoundError):
    """A data set is not where pyrogen looked for it."""


class CheckpointError(PyrogenError, RuntimeError):
    """A checkpoint is missing, truncated, corrupt or not pyrogen's."""


class RunDirError(PyrogenError, FileExistsError):
    """A run directory already holds a run, or holds none where one is needed."""


class RunFileError(RunDirError, ValueError):
    """A file of a run cannot be read as pyrogen wrote it: a link that leaves the run directory,
    not a regular file, not UTF-8, invalid or too deeply nested JSON, or values of the wrong type."""


class TrainingDivergedError(PyrogenError, FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class CompilationError(PyrogenError, RuntimeError):
    """``torch.compile`` could not compile a recorded loss (on the CPU: no working C++ compiler)."""


class RecordingError(CompilationError, ValueError):
    """A loss cannot be recorded as a graph of tensor operations (:class:`~pyrogen.infer.RecordedLoss`):
    it uses a gradient-carrying tensor that is not a module's parameter, its Python branches on values,
    or the recorded graph does not reproduce it."""


class RecordingMismatchError(RecordingError):
    """A recorded loss returned another value than its module's Python code on the same draws at a checked
    step (:class:`~pyrogen.infer.RecordedLoss`): the code reads a Python value that changed since the
    recording, which the graph replays as a constant."""
