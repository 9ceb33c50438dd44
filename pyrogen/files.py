"""Run-directory files: configuration, metrics, checkpoints and pictures, written atomically.

The low-level file layer (it imports only :mod:`pyrogen.errors` and :mod:`pyrogen.distributed`):
data, evaluation and plotting code write through it; :mod:`pyrogen.runs` opens whole runs on top of it.

A run directory holds ``config.json`` (how the run was made), ``metrics.csv``
(one row per epoch), ``checkpoint.pt`` (model, optimizer, random-number and
loader state at the end of the last finished epoch) and PNG pictures. Every
file is written to a temporary file in the same directory and renamed over
the old one, so a crash mid-write never leaves a half-written file, and the
last good checkpoint survives a run that diverges.

Checkpoints are loaded with ``torch.load(..., weights_only=True)``: they hold
only tensors and plain Python containers, and never unpickle arbitrary objects.

A process that writes a run holds the run directory's lock (:func:`lock_run_dir`,
``fcntl.flock`` on the directory itself, so nothing is written to take it) for the
rest of its life; the kernel releases it when the process ends, killed or not, and a
second writer is refused in one line. Every file of a run is read through
:meth:`RunDir.open_file`, which refuses a symbolic link that leaves the run directory
and anything but a regular file, and turns malformed contents (invalid or too deeply
nested JSON, bytes that are not UTF-8, values of the wrong type) into one-line
:class:`~pyrogen.errors.RunFileError` errors.
"""

import csv
import errno
import io
import json
import os
import pickle
import stat
import tempfile
import time
import zipfile

import torch

from pyrogen import distributed
from pyrogen.errors import CheckpointError, RunDirError, RunFileError

try:
    import fcntl
except ImportError:  # not POSIX: no locks (pyrogen's runs are made on Linux)
    fcntl = None

CHECKPOINT_FORMAT = "pyrogen-checkpoint/1"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
EVALUATION_FILE = "evaluation.json"
EVALUATIONS_DIR = "evaluations"
"""Folder of a run directory with one JSON file per evaluation, named by its settings, so none replaces another."""
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, EVALUATION_FILE)
"""The files that hold a run's results: no command writes its output over them (nor into ``evaluations/``)."""
TEMPORARY_MARK = ".pyrogen-"
"""Temporary files of :func:`atomic_write` are named ``.NAME.pyrogen-XXXXXXXX.tmp``: no user's file looks so."""
MAX_JSON_BYTES = 64 << 20
"""The largest JSON file of a run that pyrogen reads (its own are a few kilobytes)."""


def _enclosing_run(path):
    """``(run directory, path relative to it)`` of the nearest folder above ``path`` that holds a run, or None."""
    directory = os.path.dirname(path)
    while True:
        if RunDir(directory).holds_run():
            return directory, os.path.relpath(path, directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def check_not_run_file(path, what="--out"):
    """Refuse an output path that is one of a run directory's own result files (or a directory).

    A run's own files are ``config.json``, ``metrics.csv``, ``checkpoint.pt``, ``evaluation.json``
    and everything in its ``evaluations/`` folder, reached directly or through symbolic links.

    :raises RunDirError: naming ``what`` and the path.
    """
    given = os.fspath(path)
    path = os.path.abspath(given)
    if not given or given.isspace():
        raise RunDirError(f"{what} {given!r} names no file; expected a file path")
    if os.path.isdir(path):
        raise RunDirError(f"{what} {path!r} is a directory; expected a file path")
    if not os.path.isdir(os.path.dirname(path)):
        raise RunDirError(
            f"{what} {path!r}: the folder {os.path.dirname(path)!r} does not exist "
            "(or is not a directory); expected a path in an existing folder"
        )
    for candidate in dict.fromkeys((path, os.path.realpath(path))):
        found = _enclosing_run(candidate)
        if found is None:
            continue
        rel = found[1]
        if rel in RUN_FILES or rel.split(os.sep)[0] == EVALUATIONS_DIR:
            raise RunDirError(
                f"{what} {path!r} is one of its run's own files; expected another file name (nothing was written)"
            )


def _ours(name):
    """True for the name of a temporary file that :func:`atomic_write` makes (never a user's file)."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    stem = name[1 : -len(".tmp")]
    head, mark, tail = stem.rpartition(TEMPORARY_MARK)
    return bool(mark and head and len(tail) >= 6 and all(c.isalnum() or c == "_" for c in tail))


def remove_stale_temporaries(directory):
    """Delete the temporary files that a killed :func:`atomic_write` left in ``directory``; their names.

    Only pyrogen's own temporaries (``.NAME.pyrogen-XXXXXXXX.tmp``, regular files) are touched, and only
    under the directory's lock (:func:`lock_run_dir`, taken here and kept), so a file that another process
    is writing at this moment is never deleted.

    :raises RunDirError: if another process holds the directory's lock.
    """
    removed = []
    if not os.path.isdir(directory) or not _writes_runs():  # rank 0 of a distributed run writes, and cleans
        return removed
    lock_run_dir(directory)
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if _ours(name) and stat.S_ISREG(os.lstat(path).st_mode):
            try:
                os.unlink(path)
                removed.append(name)
            except OSError:
                pass
    return removed


def _writes_runs():
    """False in the processes of a distributed run other than rank 0 (which alone writes run files)."""
    return distributed.rank() == 0 and os.environ.get("RANK", "0") == "0"


_LOCKS = {}  # (st_dev, st_ino) of a locked directory -> the descriptor that holds its lock


def lock_run_dir(directory, what="output directory"):
    """Lock ``directory`` (a run, or the folder a run is made in) for the rest of this process's life.

    ``fcntl.flock`` on the directory itself: nothing is written to take the lock, and the
    kernel releases it when the process ends, however it ends (SIGKILL included). Locking a
    directory that this process holds already does nothing. Processes other than rank 0 of a
    distributed run take no lock (rank 0 writes the run). The command line releases its locks when
    it returns; a Python session that trained a run through the API holds the run's lock until it
    ends or calls :func:`release_run_locks`.

    :returns: True if this call took the lock, False if this process held it already (or takes none).
    :raises RunDirError: if another process holds the lock: it is writing there.
    """
    if fcntl is None or not _writes_runs():
        return False
    directory = os.fspath(directory)
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    info = os.fstat(fd)
    key = (info.st_dev, info.st_ino)
    if key in _LOCKS:
        os.close(fd)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise RunDirError(
            f"{what} {directory!r} is in use: another pyrogen process is writing there; "
            "wait until it ends, or choose another directory (nothing was written)"
        ) from None
    _LOCKS[key] = fd
    return True


def release_run_lock(directory):
    """Release the lock that :func:`lock_run_dir` took on ``directory`` in this process, if any."""
    try:
        info = os.stat(directory)
    except OSError:
        return
    fd = _LOCKS.pop((info.st_dev, info.st_ino), None)
    if fd is not None:
        os.close(fd)


def release_run_locks():
    """Release every lock that :func:`lock_run_dir` took in this process (the command line does at its end)."""
    while _LOCKS:
        os.close(_LOCKS.popitem()[1])


def _os_error_in(exc):
    """The ``OSError`` behind ``exc``: itself, or one that torch wrapped in a ``RuntimeError``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class _Recorder:
    """A file object that remembers the ``OSError`` of a failed write (torch.save turns it into a RuntimeError)."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_write(path, write, binary=True, replace=True):
    """Write a file atomically: ``write(f)`` fills a temporary file that then replaces ``path``.

    The temporary file, ``.NAME.pyrogen-XXXXXXXX.tmp`` in the same folder, is removed on any failure.
    An ``OSError`` (a full disk, a read-only folder), also one that torch wrapped in a
    ``RuntimeError``, is raised as an ``OSError`` that names ``path``, not the temporary file.

    :param bool replace: False to refuse (``FileExistsError``) rather than replace an existing ``path``;
        the check and the rename are one step (a hard link), so two writers cannot both succeed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = recorder = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + TEMPORARY_MARK, suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make run files private to their owner
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            recorder = _Recorder(f)
            write(recorder)
            f.flush()
            os.fsync(f.fileno())
            if os.environ.get("PYROGEN_TEST_WRITE_DELAY"):  # tests kill a process mid-write
                time.sleep(float(os.environ["PYROGEN_TEST_WRITE_DELAY"]))
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError if anything is there: never replaced
            os.unlink(tmp)
        tmp = None
    except BaseException as e:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        cause = _os_error_in(e) or (recorder.error if recorder is not None else None)
        if cause is not None and not isinstance(e, (KeyboardInterrupt, SystemExit)):
            if isinstance(cause, FileExistsError) and not replace:
                raise FileExistsError(cause.errno, cause.strerror, path) from e
            if cause.filename != path or cause is not e:  # name the file meant, as the OSError it is
                raise OSError(cause.errno, cause.strerror or str(cause), path) from e
        raise


def save_checkpoint(path, state):
    """Save a dict of tensors and plain containers atomically, marked as pyrogen's."""
    state = dict(state, format=CHECKPOINT_FORMAT)
    atomic_write(path, lambda f: torch.save(state, f))


def _check_state(path, state):
    """Refuse a checkpoint whose bookkeeping is not what pyrogen's trainers write (one line, naming it)."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} is not a pyrogen checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    expected = {
        "config": (dict, "a run configuration (a JSON object)"),
        "epoch": (int, "a whole number"),
        "step": (int, "a whole number"),
        "metrics": (list, "a list of per-epoch rows"),
    }
    for key, (kind, what) in expected.items():
        value = state.get(key, kind())
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise CheckpointError(
                f"the checkpoint {path!r} holds {key} = {_short(value)}; expected {what}: "
                "it was not written by pyrogen's trainer, or was changed since"
            )
    if not all(isinstance(row, dict) for row in state.get("metrics", [])):
        raise CheckpointError(
            f"the checkpoint {path!r} holds metrics that are not per-epoch rows; "
            "it was not written by pyrogen's trainer, or was changed since"
        )


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_checkpoint(path, map_location="cpu"):
    """Load a pyrogen checkpoint with ``weights_only=True``.

    :raises CheckpointError: if the file is missing, not a regular file, truncated or corrupt, holds
        objects other than tensors and plain containers, is not pyrogen's, or its ``config``,
        ``epoch``, ``step`` or ``metrics`` are not of the types pyrogen's trainers write.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}")
    try:
        f = _open_regular(path)
    except RunFileError as e:
        raise CheckpointError(str(e)) from None
    with f:
        if not zipfile.is_zipfile(f):  # torch.save writes a zip archive; its index sits at the end
            raise CheckpointError(
                f"checkpoint {path!r} is truncated or corrupt and cannot be read: not a complete torch.save archive"
            )
        f.seek(0)
        try:
            state = torch.load(f, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            # torch's own message suggests weight_only=False, which would run the file's code: never for this file
            raise CheckpointError(
                f"checkpoint {path!r} holds objects other than tensors and plain containers; "
                f"refusing to unpickle it (weights_only=True): only load checkpoints that pyrogen wrote"
            ) from e
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, RecursionError) as e:
            raise CheckpointError(
                f"checkpoint {path!r} is truncated or corrupt and cannot be read: "
                f"{(str(e).splitlines() or [type(e).__name__])[0]}"
            ) from e
    _check_state(path, state)
    return state


def _open_regular(path, shown=None):
    """``path`` opened for binary reading, refusing anything but a regular file (a FIFO would block).

    :raises RunFileError: naming ``shown`` (default ``path``).
    """
    shown = path if shown is None else shown
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunFileError(f"{shown!r} is a symbolic link; expected the run's own file") from None
        raise OSError(e.errno, e.strerror, shown) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunFileError(f"{shown!r} is not a regular file; expected the run's own file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def parse_json(data, path):
    """JSON text (bytes) of the file ``path`` as Python values; any malformation is one line.

    :raises RunFileError: for bytes that are not UTF-8, invalid JSON, or JSON nested too deeply to read.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RunFileError(
            f"{path!r} is not UTF-8 text (byte {e.start}); expected the JSON that pyrogen wrote"
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise RunFileError(f"{path!r} is nested too deeply to read; expected the JSON that pyrogen wrote") from None
    except ValueError as e:
        raise RunFileError(f"{path!r} is not valid JSON: {(str(e).splitlines() or ['empty'])[0]}") from None


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

    def resolve(self, name, doing="read"):
        """The real path of the run's file ``name``, checked to lie inside the run directory.

        :param str doing: ``"read"`` or ``"write"``, for the message.
        :raises RunFileError: if ``name`` is, or passes through, a symbolic link that leaves the directory.
        """
        path = self.file(name)
        real, root = os.path.realpath(path), os.path.realpath(self.path)
        if os.path.commonpath([real, root]) != root:
            raise RunFileError(
                f"{path!r} is a link to {real!r}, outside the run directory {self.path!r}; "
                f"refusing to {doing} it (expected the run's own file)"
            )
        return real

    def open_file(self, name):
        """The run's file ``name`` opened for binary reading: a regular file inside the run directory.

        :raises RunFileError: for a link that leaves the run directory, or a file that is not a regular one.
        """
        return _open_regular(self.resolve(name), shown=self.file(name))

    def lock(self):
        """Take the run directory's lock for this process's life (see :func:`lock_run_dir`)."""
        lock_run_dir(self.path)

    @property
    def checkpoint_path(self):
        return self.file(CHECKPOINT_FILE)

    def holds_run(self):
        return any(os.path.exists(self.file(n)) for n in (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE))

    def never_finished_an_epoch(self):
        """True for a run that has its ``config.json`` but neither a checkpoint nor metrics (it stopped
        before its first epoch ended): ``--resume`` starts it again from its configuration."""
        return (
            os.path.isfile(self.file(CONFIG_FILE))
            and not os.path.exists(self.checkpoint_path)
            and not os.path.exists(self.file(METRICS_FILE))
        )

    @classmethod
    def create(cls, path, config, defer_config=False):
        """Start a new run in ``path``; refuses a directory that already holds one.

        The directory is made and locked (:meth:`lock`) first, and checked under the lock, so of two
        processes that start a run in the same directory at once, the second is refused.
        With ``defer_config``, ``config.json`` is written with the first checkpoint, so a run that
        fails before its first epoch ends leaves no run behind and ``path`` can be used again.

        :raises RunDirError: if ``path`` holds a run, is a file, or another process writes a run there.
        """
        run = cls(path)
        if not run.path or run.path.isspace():
            raise RunDirError(f"output directory {run.path!r} names no directory; expected a path")
        if os.path.exists(run.path) and not os.path.isdir(run.path):
            raise RunDirError(f"output directory {run.path!r} is a file, not a directory")
        run._refuse_occupied()  # before the folder is made: an occupied directory gets nothing new
        os.makedirs(run.path, exist_ok=True)
        run.lock()
        run._refuse_occupied()  # again under the lock: another process may have made its run meanwhile
        if defer_config:
            run.pending_config = config
        else:
            run.write_json(CONFIG_FILE, config)
        return run

    def _refuse_occupied(self):
        if self.never_finished_an_epoch():
            raise RunDirError(
                f"output directory {self.path!r} already holds a run; pass --resume to continue it (it never "
                "finished an epoch, so it starts again with its own settings), or choose another directory "
                "(nothing was overwritten)"
            )
        if self.holds_run():
            raise RunDirError(
                f"output directory {self.path!r} already holds a run; pass --resume to continue it, "
                "or choose another directory (nothing was overwritten)"
            )

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
        """The run's JSON file ``name`` (read through :meth:`open_file`).

        :raises RunFileError: for a link leaving the run, a file that is not regular, too large, not
            UTF-8, not valid JSON, or nested too deeply.
        """
        with self.open_file(name) as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise RunFileError(
                f"{self.file(name)!r} is larger than {MAX_JSON_BYTES >> 20} MiB; expected the JSON that pyrogen wrote"
            )
        return parse_json(data, self.file(name))

    def write_json(self, name, obj):
        """Write ``obj`` as the run's JSON file ``name`` (atomically; never through a link leaving the run)."""
        self.resolve(name, "write")
        os.makedirs(os.path.dirname(self.file(name)), exist_ok=True)  # names may lie in a folder of the run
        atomic_write(self.file(name), lambda f: json.dump(obj, f, indent=2, sort_keys=True), binary=False)

    @property
    def config(self):
        """``config.json``, checked to be a JSON object whose sections are objects.

        :raises RunDirError: if it cannot be read or parsed, or holds no such object.
        """
        path = self.file(CONFIG_FILE)
        config = self.read_json(CONFIG_FILE)
        if not isinstance(config, dict):
            raise RunFileError(
                f"{path!r} holds {_short_json(config)}; expected a run configuration "
                "(a JSON object with 'kind', 'model', 'data' and 'train')"
            )
        for key, value in config.items():
            if key in ("model", "data", "train", "eval") and not isinstance(value, dict):
                raise RunFileError(
                    f"{path!r} holds {key!r}: {_short_json(value)}; expected a JSON object "
                    "(the configuration that 'pyrogen train' wrote)"
                )
        if "kind" in config and not isinstance(config["kind"], str):
            raise RunFileError(
                f"{path!r} holds 'kind': {_short_json(config['kind'])}; expected the name of a kind of run"
            )
        return config

    def write_metrics(self, rows):
        """Write all metric rows (a list of dicts, one per epoch) as CSV."""
        fields = list(dict.fromkeys(k for row in rows for k in row))

        def write(f):
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

        self.lock()
        self.resolve(METRICS_FILE, "write")
        atomic_write(self.file(METRICS_FILE), write, binary=False)

    def read_metrics(self):
        """The metric rows, numbers parsed; ``epoch`` checked to count 1, 2, ... (whole numbers).

        :raises RunFileError: for a ``metrics.csv`` that is a link leaving the run, not UTF-8 text,
            not the CSV that training writes, or whose epochs are not whole numbers.
        """
        path = self.file(METRICS_FILE)
        if not os.path.lexists(path):
            return []
        with self.open_file(METRICS_FILE) as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RunFileError(
                f"{path!r} is not UTF-8 text (byte {e.start}); expected the CSV that pyrogen wrote, one row per epoch"
            ) from None
        try:
            rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text, newline=""))]
        except csv.Error as e:
            raise RunFileError(
                f"{path!r} is not valid CSV ({e}); expected the CSV that pyrogen wrote, one row per epoch"
            ) from None
        for i, row in enumerate(rows, 1):
            if None in row or any(k is None or v is None for k, v in row.items()):
                raise RunFileError(
                    f"{path!r} row {i} has another number of fields than its header; "
                    "expected the CSV that pyrogen wrote, one row per epoch"
                )
            epoch = row.get("epoch")
            if "epoch" in row and (not isinstance(epoch, int) or not 0 <= epoch < 10**9):
                raise RunFileError(f"{path!r} row {i} has epoch {_short(epoch)}; expected a whole number")
            for k, v in row.items():  # a whole number past float's range of integers is a figure, not a count
                if k != "epoch" and isinstance(v, int) and abs(v) > 2**53:
                    row[k] = float(v)
        return rows

    def save_checkpoint(self, state):
        """Write the checkpoint (and a new run's ``config.json``) under the run's lock."""
        self.lock()
        if self.pending_config is not None:  # the first checkpoint of a new run: now it is one
            self.write_json(CONFIG_FILE, self.pending_config)
            self.pending_config = None
        self.resolve(CHECKPOINT_FILE, "write")
        save_checkpoint(self.checkpoint_path, state)

    def load_checkpoint(self, map_location="cpu"):
        """The run's checkpoint (see :func:`load_checkpoint`); a link that leaves the run is refused.

        :raises CheckpointError: as :func:`load_checkpoint`, or for a link that leaves the run directory.
        """
        try:
            self.resolve(CHECKPOINT_FILE)
        except RunFileError as e:
            raise CheckpointError(str(e)) from None
        return load_checkpoint(self.checkpoint_path, map_location)

    def save_image(self, name, images, nrow=8):
        """Save images ``(N, C, H, W)`` in [0, 1] as one PNG grid (torchvision's grid helper)."""
        from torchvision.utils import save_image

        buf = io.BytesIO()
        save_image(images.detach().float().cpu(), buf, nrow=nrow, format="png")
        self.resolve(name, "write")
        atomic_write(self.file(name), lambda f: f.write(buf.getvalue()))
        return self.file(name)


def _short_json(value):
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(text):
    for cast in (int, float):
        try:
            return cast(text)
        except (TypeError, ValueError):
            pass
    return text


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
