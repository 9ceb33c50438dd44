"""Faults, round two (issue 27), at the file layer: the run lock, no reading through links, malformed files
as one line, pyrogen-only temporaries, and disk errors that name the real file.

No data set and no training: each case builds the files it needs. The command-line cases are in
``tests/integration/test_faults_round2.py``.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pyrogen import files
from pyrogen.errors import CheckpointError, RunDirError, RunFileError
from pyrogen.files import RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = {
    "config": {"kind": "vae", "model": {}, "data": {}, "train": {"epochs": 1}},
    "epoch": 1,
    "step": 2,
    "metrics": [{"epoch": 1}],
    "model": {"w": torch.ones(2)},
}


def _holder(directory):
    """A process that takes ``directory``'s run lock and says so on stdout, then sleeps."""
    code = (
        "import sys, time; from pyrogen import files; files.lock_run_dir(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(600)"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = subprocess.Popen([sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "locked"
    return process


# ---------------------------------------------------------------- item 1: the run lock
def test_a_second_writer_is_refused_while_the_first_lives_and_admitted_once_it_is_killed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = _holder(out)
    try:
        with pytest.raises(RunDirError) as e:
            RunDir.create(out, {"kind": "vae"}, defer_config=True)
        assert str(e.value) == (
            f"output directory {str(out)!r} is in use: another pyrogen process is writing there; "
            "wait until it ends, or choose another directory (nothing was written)"
        )
        with pytest.raises(RunDirError, match="is in use"):
            files.remove_stale_temporaries(out)  # a resume's first step: refused, and nothing deleted
        assert os.listdir(out) == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run = RunDir.create(out, {"kind": "vae"}, defer_config=True)  # the kernel released the killed one's lock
    assert os.listdir(out) == []  # the lock writes nothing
    run.save_checkpoint(STATE)
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "config.json"]


def test_the_occupied_check_runs_under_the_lock(tmp_path, monkeypatch):
    """A run that appears between the first check and the lock (another process's) is still refused."""
    out = tmp_path / "run"
    real_lock = files.lock_run_dir

    def lock_after_another_run_appeared(directory, *a, **k):
        RunDir(directory).write_json("config.json", {"kind": "vae"})
        return real_lock(directory, *a, **k)

    monkeypatch.setattr(files, "lock_run_dir", lock_after_another_run_appeared)
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.create(out, {"kind": "vae"}, defer_config=True)


def test_the_lock_is_taken_again_by_its_holder_without_blocking(tmp_path):
    files.lock_run_dir(tmp_path)
    files.lock_run_dir(tmp_path)
    RunDir(tmp_path).save_checkpoint(STATE)
    assert RunDir(tmp_path).load_checkpoint()["epoch"] == 1


def test_a_checkpoint_is_not_written_into_a_run_that_another_process_writes(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(RunDirError, match="is in use"):
            RunDir(tmp_path).save_checkpoint(STATE)
        with pytest.raises(RunDirError, match="is in use"):
            RunDir(tmp_path).write_metrics([{"epoch": 1}])
        assert os.listdir(tmp_path) == []
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- item 2: no reading through links
def _run_with_files(path):
    run = RunDir(path)
    run.write_json("config.json", STATE["config"])
    run.write_metrics([{"epoch": 1, "loss": 1.5}])
    run.write_json("evaluations/log-px.json", {"epoch": 1})
    files.save_checkpoint(run.checkpoint_path, STATE)
    return run


LINKED = [
    ("config.json", lambda run: run.config),
    ("metrics.csv", lambda run: run.read_metrics()),
    ("evaluations/log-px.json", lambda run: run.read_json("evaluations/log-px.json")),
    ("checkpoint.pt", lambda run: run.load_checkpoint()),
]


@pytest.mark.parametrize("name, read", LINKED, ids=[n for n, _ in LINKED])
def test_no_run_file_is_read_through_a_link_that_leaves_the_run(tmp_path, name, read):
    run = _run_with_files(tmp_path / "run")
    secret = tmp_path / "secret"
    os.replace(run.file(name), secret)  # a valid file of its kind, outside the run
    os.symlink(secret, run.file(name))
    with pytest.raises((RunFileError, CheckpointError)) as e:
        read(run)
    assert str(e.value) == (
        f"{run.file(name)!r} is a link to {str(secret)!r}, outside the run directory "
        f"{run.path!r}; refusing to read it (expected the run's own file)"
    )


def test_a_link_to_a_folder_outside_is_refused_and_a_link_inside_the_run_is_read(tmp_path):
    run = _run_with_files(tmp_path / "run")
    os.rename(run.file("evaluations"), tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", run.file("evaluations"))
    with pytest.raises(RunFileError, match="outside the run directory"):
        run.read_json("evaluations/log-px.json")
    os.rename(run.file("config.json"), run.file("config-copy.json"))
    os.symlink("config-copy.json", run.file("config.json"))  # stays inside: harmless
    assert run.config == STATE["config"]


def test_a_fifo_in_place_of_a_run_file_is_refused_without_blocking(tmp_path):
    run = _run_with_files(tmp_path / "run")
    os.unlink(run.file("metrics.csv"))
    os.mkfifo(run.file("metrics.csv"))
    with pytest.raises(RunFileError, match="metrics.csv' is not a regular file"):
        run.read_metrics()


# ---------------------------------------------------------------- tracebacks: malformed files are one line
BAD_JSON = [
    ("nested", b"[" * 200_000, "is nested too deeply to read; expected the JSON that pyrogen wrote"),
    ("nested-object", b'{"a":' * 200_000, "is nested too deeply to read"),
    ("not-utf8", b'{"kind": "\xff\xfe"}', "is not UTF-8 text (byte 10); expected the JSON that pyrogen wrote"),
    ("random-bytes", bytes(range(256)) * 4, "is not UTF-8 text (byte 128)"),
    ("invalid", b"{", "is not valid JSON: Expecting property name enclosed in double quotes"),
    ("empty", b"", "is not valid JSON: Expecting value"),
]


@pytest.mark.parametrize("name", ["config.json", "evaluations/log-px.json"])
@pytest.mark.parametrize("case, data, message", BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_malformed_json_is_one_line_naming_the_file(tmp_path, name, case, data, message):
    run = _run_with_files(tmp_path / "run")
    with open(run.file(name), "wb") as f:
        f.write(data)
    with pytest.raises(RunFileError) as e:
        run.config if name == "config.json" else run.read_json(name)
    assert str(e.value).startswith(f"{run.file(name)!r} {message}") and "\n" not in str(e.value), str(e.value)


BAD_CONFIGS = [
    ("[1, 2]", "config.json' holds [1, 2]; expected a run configuration"),
    ('{"kind": "vae", "train": null}', "config.json' holds 'train': null; expected a JSON object"),
    ('{"kind": "vae", "model": [1]}', "config.json' holds 'model': [1]; expected a JSON object"),
    ('{"kind": 3}', "config.json' holds 'kind': 3; expected the name of a kind of run"),
]


@pytest.mark.parametrize("text, message", BAD_CONFIGS, ids=[t for t, _ in BAD_CONFIGS])
def test_a_configuration_of_the_wrong_types_is_one_line(tmp_path, text, message):
    run = _run_with_files(tmp_path / "run")
    with open(run.file("config.json"), "w") as f:
        f.write(text)
    with pytest.raises(RunFileError) as e:
        _ = run.config
    assert message in str(e.value)


BAD_METRICS = [
    ("random-bytes", bytes(range(256)) * 8, "metrics.csv' is not UTF-8 text (byte 128)"),
    ("epoch-string", b"epoch,loss\none,1.5\n", "metrics.csv' row 1 has epoch 'one'; expected a whole number"),
    ("epoch-float", b"epoch,loss\n1.5,1.5\n", "metrics.csv' row 1 has epoch 1.5; expected a whole number"),
    ("ragged", b"epoch,loss\n1,1.5,7\n", "metrics.csv' row 1 has another number of fields than its header"),
    ("nul", b"epoch,loss\n1,\x00\x00\n", None),  # the csv module reads NULs: a row, or one line
]


@pytest.mark.parametrize("case, data, message", BAD_METRICS, ids=[c[0] for c in BAD_METRICS])
def test_malformed_metrics_are_one_line(tmp_path, case, data, message):
    run = _run_with_files(tmp_path / "run")
    with open(run.file("metrics.csv"), "wb") as f:
        f.write(data)
    if message is None:
        try:
            assert run.read_metrics()[0]["epoch"] == 1
        except RunFileError as e:
            assert "\n" not in str(e)
        return
    with pytest.raises(RunFileError) as e:
        run.read_metrics()
    assert message in str(e.value) and "\n" not in str(e.value)


BAD_STATES = [
    ("config-null", {"config": None}, "holds config = None; expected a run configuration (a JSON object)"),
    ("epoch-string", {"epoch": "2"}, "holds epoch = '2'; expected a whole number"),
    ("epoch-negative", {"epoch": -1}, "holds epoch = -1; expected a whole number"),
    ("epoch-bool", {"epoch": True}, "holds epoch = True; expected a whole number"),
    ("step-float", {"step": 2.0}, "holds step = 2.0; expected a whole number"),
    ("metrics-string", {"metrics": "abc"}, "holds metrics = 'abc'; expected a list of per-epoch rows"),
    ("metrics-rows", {"metrics": [1, 2]}, "holds metrics that are not per-epoch rows"),
]


@pytest.mark.parametrize("case, change, message", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_a_checkpoint_with_bookkeeping_of_the_wrong_types_is_one_line(tmp_path, case, change, message):
    run = _run_with_files(tmp_path / "run")
    files.save_checkpoint(run.checkpoint_path, dict(STATE, **change))
    with pytest.raises(CheckpointError) as e:
        run.load_checkpoint()
    assert str(e.value) == (
        f"the checkpoint {run.checkpoint_path!r} {message}: it was not written by pyrogen's "
        "trainer, or was changed since"
    ) or (message in str(e.value) and "\n" not in str(e.value))


# ---------------------------------------------------------------- item 4: only pyrogen's temporaries go
def test_only_pyrogens_own_temporaries_are_removed(tmp_path):
    ours = ".checkpoint.pt.pyrogen-a1b2c3d4.tmp"
    theirs = [
        ".my.notes.tmp",
        ".a.b.tmp",
        ".checkpoint.pt.abc123.tmp",
        "notes.pyrogen-abcdef.tmp",
        ".pyrogen-abcdef.tmp",
        ".x.pyrogen-ab.tmp",
    ]
    for name in [ours] + theirs:
        (tmp_path / name).write_text("x")
    os.mkdir(tmp_path / ".dir.pyrogen-abcdef12.tmp")  # named like ours, but a folder: left alone
    os.symlink(tmp_path / ".my.notes.tmp", tmp_path / ".link.pyrogen-abcdef12.tmp")
    assert files.remove_stale_temporaries(tmp_path) == [ours]
    assert sorted(os.listdir(tmp_path)) == sorted(theirs + [".dir.pyrogen-abcdef12.tmp", ".link.pyrogen-abcdef12.tmp"])


def test_atomic_write_names_its_temporaries_as_pyrogens_own(tmp_path, monkeypatch):
    seen = []

    def write(f):
        seen.extend(os.listdir(tmp_path))
        f.write(b"x")

    files.atomic_write(tmp_path / "a.json", write)
    assert len(seen) == 1 and files._ours(seen[0]) and seen[0].startswith(".a.json.pyrogen-"), seen


# ---------------------------------------------------------------- item 6: a full disk, a read-only folder
def _enospc_after(n):
    """A ``write`` that fails with ENOSPC after ``n`` calls, as a full disk does."""
    calls = [0]
    real = files._Recorder.write

    def write(self, data):
        calls[0] += 1
        if calls[0] > n:
            self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise self.error
        return real(self, data)

    return write


def test_a_full_disk_in_a_checkpoint_write_names_the_checkpoint_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    files.save_checkpoint(path, STATE)
    before = path.read_bytes()
    monkeypatch.setattr(files._Recorder, "write", _enospc_after(2))
    bigger = dict(STATE, epoch=2, model={"w": torch.ones(100_000)})
    with pytest.raises(OSError) as e:
        files.save_checkpoint(path, bigger)  # torch.save turns the OSError into a RuntimeError: undone here
    assert type(e.value) is OSError and e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert str(e.value) == f"[Errno 28] No space left on device: {str(path)!r}"
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_a_read_only_folder_names_the_file_not_its_temporary(tmp_path, monkeypatch):
    real = files.tempfile.mkstemp

    def read_only(*a, dir=None, prefix="", suffix="", **k):
        name = os.path.join(dir, prefix + "abcdefgh" + suffix)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError) as e:
        files.atomic_write(tmp_path / "metrics.csv", lambda f: f.write(b"x"))
    assert e.value.filename == str(tmp_path / "metrics.csv") and e.value.errno == errno.EACCES
    monkeypatch.setattr(files.tempfile, "mkstemp", real)


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 256 KiB tmpfs at ``tmp_path/fs`` (skipped where mounting is not allowed)."""
    where = tmp_path / "fs"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], check=False, capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_real_full_disk_and_a_real_read_only_folder(small_filesystem):
    path = small_filesystem / "checkpoint.pt"
    files.save_checkpoint(path, STATE)
    before = path.read_bytes()
    with pytest.raises(OSError) as e:
        files.save_checkpoint(path, dict(STATE, model={"w": torch.ones(200_000)}))  # 800 kB on 256 KiB
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path), repr(e.value)
    assert path.read_bytes() == before and os.listdir(small_filesystem) == ["checkpoint.pt"]
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=False).returncode == 0
    with pytest.raises(OSError) as e:
        files.save_checkpoint(path, STATE)
    assert e.value.errno == errno.EROFS and e.value.filename == str(path), repr(e.value)
    assert path.read_bytes() == before


# ---------------------------------------------------------------- item 3 and "nothing replaces an earlier result"
def test_atomic_write_without_replace_refuses_an_existing_file(tmp_path):
    (tmp_path / "report.html").write_text("earlier")
    with pytest.raises(FileExistsError) as e:
        files.atomic_write(tmp_path / "report.html", lambda f: f.write(b"later"), replace=False)
    assert e.value.filename == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text() == "earlier" and os.listdir(tmp_path) == ["report.html"]
    files.atomic_write(tmp_path / "other.html", lambda f: f.write(b"new"), replace=False)
    assert (tmp_path / "other.html").read_text() == "new"


@pytest.mark.parametrize(
    "target",
    [
        "evaluations/log-px.json",
        "evaluations/new.json",
        "config.json",
        "checkpoint.pt",
        "metrics.csv",
        "link-to-evaluation.json",
    ],
)
def test_no_output_goes_to_a_runs_own_result_files(tmp_path, target):
    run = _run_with_files(tmp_path / "run")
    os.symlink(run.file("evaluations/log-px.json"), run.file("link-to-evaluation.json"))
    with pytest.raises(RunDirError) as e:
        files.check_not_run_file(run.file(target))
    assert str(e.value) == (
        f"--out {run.file(target)!r} is one of its run's own files; expected another file name (nothing was written)"
    )
    files.check_not_run_file(run.file("report-2.html"))  # a new file beside them is fine


def test_an_empty_output_path_is_one_line():
    with pytest.raises(RunDirError, match="^--out '' names no file; expected a file path$"):
        files.check_not_run_file("")
    with pytest.raises(RunDirError, match="^output directory '' names no directory; expected a path$"):
        RunDir.create("", {})


def test_a_killed_writer_releases_its_lock_within_a_second(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    end = time.monotonic() + 1
    while True:  # the kernel drops a dead process's locks when it closes its files: at once
        try:
            files.lock_run_dir(tmp_path)
            break
        except RunDirError:
            assert time.monotonic() < end
            time.sleep(0.01)
    assert json.dumps(sorted(os.listdir(tmp_path))) == "[]"


WRITES = [
    ("config.json", lambda run: run.write_json("config.json", {"kind": "vae"})),
    ("evaluations/new.json", lambda run: run.write_json("evaluations/new.json", {})),
    ("metrics.csv", lambda run: run.write_metrics([{"epoch": 1}])),
    ("checkpoint.pt", lambda run: run.save_checkpoint(STATE)),
    ("samples.png", lambda run: run.save_image("samples.png", torch.zeros(1, 1, 4, 4))),
]


@pytest.mark.parametrize("name, write", WRITES, ids=[n for n, _ in WRITES])
def test_nothing_is_written_through_a_link_that_leaves_the_run(tmp_path, name, write):
    run = _run_with_files(tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    if name.startswith("evaluations/"):  # the folder is the link
        os.rename(run.file("evaluations"), tmp_path / "moved")
        os.symlink(outside, run.file("evaluations"))
    else:
        if os.path.lexists(run.file(name)):
            os.unlink(run.file(name))
        os.symlink(outside / name, run.file(name))
    with pytest.raises(RunFileError, match="outside the run directory .*; refusing to write it"):
        write(run)
    assert os.listdir(outside) == []


def test_the_command_line_releases_its_locks_when_it_returns(tmp_path, capsys):
    """main() called from Python (a notebook, a test) leaves no run locked behind it."""
    from pyrogen.cli import main

    files.lock_run_dir(tmp_path)  # as a training in this process would have
    assert main(["report", str(tmp_path / "none")]) == 2
    holder = _holder(tmp_path)  # another process now gets the lock
    holder.kill()
    holder.wait()
