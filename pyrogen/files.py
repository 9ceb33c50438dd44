"""Run-directory files: configuration, metrics, checkpoints and pictures, written atomically.

The low-level file layer (it imports only :mod:`pyrogen.errors`): data, evaluation
and plotting code write through it; :mod:`pyrogen.runs` opens whole runs on top of it.

A run directory holds ``config.json`` (how the run was made), ``metrics.csv``
(one row per epoch), ``checkpoint.pt`` (model, optimizer, random-number and
loader state at the end of the last finished epoch) and PNG pictures. Every
file is written to a temporary file in the same directory and renamed over
the old one, so a crash mid-write never leaves a half-written file, and the
last good checkpoint survives a run that diverges.

Checkpoints are loaded with ``torch.load(..., weights_only=True)``: they hold
only tensors and plain Python containers, and never unpickle arbitrary objects.
"""

import csv
import io
import json
import os
import pickle
import tempfile
import time
import zipfile

import torch

from pyrogen.errors import CheckpointError, RunDirError

CHECKPOINT_FORMAT = "pyrogen-checkpoint/1"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
EVALUATION_FILE = "evaluation.json"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, EVALUATION_FILE)
"""The files that hold a run's results: no command writes its output over them."""


def check_not_run_file(path, what="--out"):
    """Refuse an output path that is one of a run directory's own files (or a directory).

    :raises RunDirError: naming ``what`` and the path.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise RunDirError(f"{what} {path!r} is a directory; expected a file path")
    if not os.path.isdir(os.path.dirname(path)):
        raise RunDirError(f"{what} {path!r}: the folder {os.path.dirname(path)!r} does not exist "
                          "(or is not a directory); expected a path in an existing folder")
    if os.path.basename(path) in RUN_FILES and RunDir(os.path.dirname(path)).holds_run():
        raise RunDirError(f"{what} {path!r} is one of its run's own files; expected another file name "
                          "(nothing was written)")


def remove_stale_temporaries(directory):
    """Delete the temporary files that a killed :func:`atomic_write` left in ``directory``; their names."""
    removed = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def atomic_write(path, write, binary=True):
    """Write a file atomically: ``write(f)`` fills a temporary file that then replaces ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make run files private to their owner
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if os.environ.get("PYROGEN_TEST_WRITE_DELAY"):  # tests kill a process mid-write
                time.sleep(float(os.environ["PYROGEN_TEST_WRITE_DELAY"]))
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename != path:  # name the file meant
            raise type(e)(e.errno, e.strerror or str(e), path) from e
        raise


def save_checkpoint(path, state):
    """Save a dict of tensors and plain containers atomically, marked as pyrogen's."""
    state = dict(state, format=CHECKPOINT_FORMAT)
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu"):
    """Load a pyrogen checkpoint with ``weights_only=True``.

    :raises CheckpointError: if the file is missing, truncated or corrupt, holds
        objects other than tensors and plain containers, or is not pyrogen's.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index sits at the end
        raise CheckpointError(
            f"checkpoint {path!r} is truncated or corrupt and cannot be read: not a complete torch.save archive"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message suggests weight_only=False, which would run the file's code: never for this file
        raise CheckpointError(
            f"checkpoint {path!r} holds objects other than tensors and plain containers; "
            f"refusing to unpickle it (weights_only=True): only load checkpoints that pyrogen wrote"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path!r} is truncated or corrupt and cannot be read: {str(e).splitlines()[0]}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path!r} is not a pyrogen checkpoint (expected format {CHECKPOINT_FORMAT!r})"
        )
    return state


def rng_state():
    """torch's global random state (CPU, and every CUDA device), for a checkpoint."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore what :func:`rng_state` saved (CUDA states only where there is a GPU)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunDir:
    """A directory that holds one training run.

    :param str path: the directory.
    """

    pending_config = None  # the configuration of a new run, written with its first checkpoint

    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name):
        """Path of a file inside the run directory."""
        return os.path.join(self.path, name)

    @property
    def checkpoint_path(self):
        return self.file(CHECKPOINT_FILE)

    def holds_run(self):
        return any(os.path.exists(self.file(n)) for n in (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE))

    def never_finished_an_epoch(self):
        """True for a run that has its ``config.json`` but neither a checkpoint nor metrics (it stopped
        before its first epoch ended): ``--resume`` starts it again from its configuration."""
        return (os.path.isfile(self.file(CONFIG_FILE)) and not os.path.exists(self.checkpoint_path)
                and not os.path.exists(self.file(METRICS_FILE)))

    @classmethod
    def create(cls, path, config, defer_config=False):
        """Start a new run in ``path``; refuses a directory that already holds one.

        With ``defer_config``, ``config.json`` is written with the first checkpoint, so a run that
        fails before its first epoch ends leaves no run behind and ``path`` can be used again.

        :raises RunDirError: if ``path`` holds a run, or is a file.
        """
        run = cls(path)
        if os.path.exists(run.path) and not os.path.isdir(run.path):
            raise RunDirError(f"output directory {run.path!r} is a file, not a directory")
        if run.never_finished_an_epoch():
            raise RunDirError(
                f"output directory {run.path!r} already holds a run; pass --resume to continue it (it never "
                "finished an epoch, so it starts again with its own settings), or choose another directory "
                "(nothing was overwritten)"
            )
        if run.holds_run():
            raise RunDirError(
                f"output directory {run.path!r} already holds a run; pass --resume to continue it, "
                "or choose another directory (nothing was overwritten)"
            )
        os.makedirs(run.path, exist_ok=True)
        if defer_config:
            run.pending_config = config
        else:
            run.write_json(CONFIG_FILE, config)
        return run

    @classmethod
    def open(cls, path):
        """Open an existing run.

        :raises RunDirError: if ``path`` holds no run.
        """
        run = cls(path)
        if not os.path.isfile(run.file(CONFIG_FILE)):
            raise RunDirError(f"{run.path!r} holds no pyrogen run (no {CONFIG_FILE})")
        return run

    def read_json(self, name):
        with open(self.file(name)) as f:
            return json.load(f)

    def write_json(self, name, obj):
        os.makedirs(os.path.dirname(self.file(name)), exist_ok=True)  # names may lie in a folder of the run
        atomic_write(self.file(name), lambda f: json.dump(obj, f, indent=2, sort_keys=True), binary=False)

    @property
    def config(self):
        """``config.json``, checked to be a JSON object.

        :raises RunDirError: if it cannot be read or parsed, or holds no object.
        """
        path = self.file(CONFIG_FILE)
        try:
            config = self.read_json(CONFIG_FILE)
        except (ValueError, UnicodeDecodeError) as e:
            raise RunDirError(f"{path!r} is not valid JSON: {str(e).splitlines()[0]}") from None
        if not isinstance(config, dict):
            raise RunDirError(f"{path!r} holds {json.dumps(config)[:40]}; expected a run configuration "
                              "(a JSON object with 'kind', 'model', 'data' and 'train')")
        return config

    def write_metrics(self, rows):
        """Write all metric rows (a list of dicts, one per epoch) as CSV."""
        fields = list(dict.fromkeys(k for row in rows for k in row))

        def write(f):
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

        atomic_write(self.file(METRICS_FILE), write, binary=False)

    def read_metrics(self):
        """The metric rows, numbers parsed."""
        if not os.path.exists(self.file(METRICS_FILE)):
            return []
        with open(self.file(METRICS_FILE), newline="") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def save_checkpoint(self, state):
        if self.pending_config is not None:  # the first checkpoint of a new run: now it is one
            self.write_json(CONFIG_FILE, self.pending_config)
            self.pending_config = None
        save_checkpoint(self.checkpoint_path, state)

    def load_checkpoint(self, map_location="cpu"):
        return load_checkpoint(self.checkpoint_path, map_location)

    def save_image(self, name, images, nrow=8):
        """Save images ``(N, C, H, W)`` in [0, 1] as one PNG grid (torchvision's grid helper)."""
        from torchvision.utils import save_image

        buf = io.BytesIO()
        save_image(images.detach().float().cpu(), buf, nrow=nrow, format="png")
        atomic_write(self.file(name), lambda f: f.write(buf.getvalue()))
        return self.file(name)


def _number(text):
    for cast in (int, float):
        try:
            return cast(text)
        except (TypeError, ValueError):
            pass
    return text


EVALUATIONS_DIR = "evaluations"
"""Folder of a run directory with one JSON file per evaluation, named by its settings, so none replaces another."""


def log_px_evaluation_name(num_samples, seed, epoch, num_examples):
    """``evaluations/log-px-K1000-seed0-epoch10-test10000.json``: where an evaluation of these settings goes."""
    return f"{EVALUATIONS_DIR}/log-px-K{num_samples}-seed{seed}-epoch{epoch}-test{num_examples}.json"


def sample_quality_name(num_samples, seed, epoch):
    """``evaluations/sample-quality-n10000-seed0-epoch10.json``: where a sample-quality result goes."""
    return f"{EVALUATIONS_DIR}/sample-quality-n{num_samples}-seed{seed}-epoch{epoch}.json"


def unused_path(path):
    """``path`` if nothing is there, else the first free ``stem-2.ext``, ``stem-3.ext``, ...: nothing is overwritten."""
    stem, ext = os.path.splitext(os.fspath(path))
    candidate, n = os.fspath(path), 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{stem}-{n}{ext}"
    return candidate
