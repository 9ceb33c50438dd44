"""The thread policy: a short OpenMP spin (``GOMP_SPINCOUNT``) is in the environment before torch loads, unless
the user set it or ``OMP_WAIT_POLICY``; the thread governor follows the cores other processes leave free.

Each check starts a fresh Python whose import system records the variable at the
moment ``torch`` is first imported, then runs the command the way it is installed
(pyproject's ``[project.scripts]`` line) or as ``python -m pyrogen``.
"""

import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

from pyrogen import threads
from pyrogen.threads import SPIN_VARIABLE, WAIT_POLICY, ThreadGovernor, set_wait_policy

ROOT = Path(__file__).resolve().parents[1]

SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "<unset>") + " GOMP_SPINCOUNT="
                        + os.environ.get("GOMP_SPINCOUNT", "<unset>"))
        return None
sys.meta_path.insert(0, Spy())
try:
    {run}
except SystemExit:
    pass
sys.stdout.flush()
print("torch saw OMP_WAIT_POLICY=" + (seen[0] if seen else "<torch not imported>"))
"""


def _script_entry():
    """``(module, function)`` of the ``pyrogen`` console script that pyproject.toml installs."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        module, function = tomllib.load(f)["project"]["scripts"]["pyrogen"].split(":")
    return module, function


def _torch_saw(run, policy=None, spin=None):
    env = {k: v for k, v in os.environ.items() if k not in (WAIT_POLICY, SPIN_VARIABLE)}
    if policy is not None:
        env[WAIT_POLICY] = policy
    if spin is not None:
        env[SPIN_VARIABLE] = spin
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", SPY.format(run=run)], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return out.strip().splitlines()[-1]


def _console(argv):
    module, function = _script_entry()
    return f"import sys; sys.argv = ['pyrogen'] + {argv!r}; from {module} import {function}; sys.exit({function}())"


def test_console_script_sets_a_short_spin_before_torch_loads():
    assert _torch_saw(_console(["train", "vae", "--help"])) == "torch saw OMP_WAIT_POLICY=<unset> GOMP_SPINCOUNT=10000"


def test_python_dash_m_sets_a_short_spin_before_torch_loads():
    run = "import runpy, sys; sys.argv = ['pyrogen', '--help']; runpy.run_module('pyrogen', run_name='__main__')"
    assert _torch_saw(run) == "torch saw OMP_WAIT_POLICY=<unset> GOMP_SPINCOUNT=10000"


@pytest.mark.parametrize("policy", ["ACTIVE", "passive"])
def test_the_users_own_wait_policy_is_kept(policy):
    assert (
        _torch_saw(_console(["--help"]), policy=policy) == f"torch saw OMP_WAIT_POLICY={policy} GOMP_SPINCOUNT=<unset>"
    )


def test_the_users_own_spin_count_is_kept():
    assert _torch_saw(_console(["--help"]), spin="500") == "torch saw OMP_WAIT_POLICY=<unset> GOMP_SPINCOUNT=500"


def test_cli_main_called_from_python_leaves_the_environment_alone():
    """Only the command's entry sets the policy; importing or calling pyrogen.cli does not."""
    run = "import pyrogen.cli, os; print('after import:', os.environ.get('GOMP_SPINCOUNT', '<unset>'))"
    env = {k: v for k, v in os.environ.items() if k not in (WAIT_POLICY, SPIN_VARIABLE)}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", run], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip() == "after import: <unset>"


def test_set_wait_policy_after_torch_says_it_is_too_late(monkeypatch):
    import torch  # noqa: F401  (loaded here: the policy cannot act any more)

    monkeypatch.delenv(WAIT_POLICY, raising=False)
    monkeypatch.delenv(SPIN_VARIABLE, raising=False)
    with pytest.warns(RuntimeWarning, match=r"GOMP_SPINCOUNT=10000 was set after torch was imported"):
        assert set_wait_policy() == "GOMP_SPINCOUNT=10000"
    assert os.environ[SPIN_VARIABLE] == "10000"  # still set, for the subprocesses this one starts
    del os.environ[SPIN_VARIABLE]  # monkeypatch puts back what was there before the test: nothing
    with pytest.warns(RuntimeWarning, match=r"OMP_WAIT_POLICY=PASSIVE was set after torch was imported"):
        assert set_wait_policy("PASSIVE") == "OMP_WAIT_POLICY=PASSIVE"
    assert SPIN_VARIABLE not in os.environ


def test_set_wait_policy_keeps_the_users_value(monkeypatch):
    monkeypatch.setenv(WAIT_POLICY, "ACTIVE")
    monkeypatch.delenv(SPIN_VARIABLE, raising=False)  # an earlier test may have run the command in this process
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set_wait_policy() == "OMP_WAIT_POLICY=ACTIVE"
    assert os.environ[WAIT_POLICY] == "ACTIVE" and SPIN_VARIABLE not in os.environ


def test_set_wait_policy_refuses_other_values():
    with pytest.raises(ValueError, match=r"^policy must be one of 'SPIN-BRIEFLY', 'PASSIVE', 'ACTIVE', got 'SPIN'$"):
        set_wait_policy("SPIN")


class _Clock:
    """Stands in for the ``time`` module inside :mod:`pyrogen.threads`: wall and own CPU seconds set by hand."""

    def __init__(self):
        self.wall, self.cpu = 100.0, 5.0

    def monotonic(self):
        return self.wall

    def process_time(self):
        return self.cpu


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fake ``/proc/stat`` (100 ticks a second) and clock, the process's CPUs and quota unknown; torch's
    thread count put back afterwards."""
    import torch

    clock, stat = _Clock(), tmp_path / "stat"
    monkeypatch.setattr(threads, "time", clock)
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    # the whole machine's line and no quota, whatever cpuset or quota the machine running the tests has
    monkeypatch.setattr(threads, "usable_cpus", lambda: None)
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    before = torch.get_num_threads()
    ticks = {"user": 1000, "nice": 0, "system": 0}

    def advance(seconds, own=0.0, others=0.0, niced=0.0):
        clock.wall += seconds
        clock.cpu += own * seconds
        ticks["user"] += round(100 * seconds * (own + others))
        ticks["nice"] += round(100 * seconds * niced)
        stat.write_text(f"cpu  {ticks['user']} {ticks['nice']} {ticks['system']} 5000 0 0 0 0 0 0\ncpu0 1 2 3\n")

    advance(0)
    yield clock, stat, advance
    torch.set_num_threads(before)


def test_the_governor_gives_the_cores_other_processes_leave_free(machine):
    import torch

    clock, stat, advance = machine
    torch.set_num_threads(2)
    governor = ThreadGovernor(max_threads=2, interval=1.0, cores=2, stat=str(stat))
    advance(0.5, own=2.0, others=2.0)  # within the interval: nothing measured, nothing changed
    assert governor.tick() == 2 and torch.get_num_threads() == 2
    advance(0.6, own=1.0, others=2.0)  # two other busy cores over the last 1.1 s: one thread
    assert governor.tick() == 1 and torch.get_num_threads() == 1
    assert governor.others == pytest.approx((0.5 * 2 + 0.6 * 2) / 1.1, abs=0.02)
    advance(1.0, own=1.0, others=0.4)  # another job uses 0.4 of a core: round(1.6) = 2 threads
    assert governor.tick() == 2 and torch.get_num_threads() == 2
    advance(1.0, own=2.0, others=0.0, niced=2.0)  # niced jobs yield: they leave the cores free
    assert governor.tick() == 2 and torch.get_num_threads() == 2
    advance(1.0, own=1.0, others=1.0)  # one busy core of two: one thread
    assert governor.tick() == 1 and torch.get_num_threads() == 1


def test_the_governor_never_goes_above_its_start_nor_below_one(machine):
    import torch

    clock, stat, advance = machine
    torch.set_num_threads(1)
    governor = ThreadGovernor(max_threads=None, interval=1.0, cores=4, stat=str(stat))
    assert governor.max_threads == 1
    advance(2.0)  # a quiet machine of 4 cores: still the 1 thread it started with
    assert governor.tick() == 1
    torch.set_num_threads(3)
    governor = ThreadGovernor(max_threads=3, interval=1.0, cores=4, stat=str(stat))
    advance(2.0, own=1.0, others=6.0)  # more busy than there are cores: one thread, not zero
    assert governor.tick() == 1 and torch.get_num_threads() == 1


def test_the_governor_does_nothing_without_proc_stat(machine, tmp_path):
    import torch

    clock, stat, advance = machine
    torch.set_num_threads(2)
    governor = ThreadGovernor(max_threads=2, interval=1.0, cores=2, stat=str(tmp_path / "absent"))
    advance(5.0, own=1.0, others=2.0)
    assert governor.tick() == 2 and torch.get_num_threads() == 2


def test_threads_tick_acts_only_while_governing(machine, monkeypatch):
    import torch

    clock, stat, advance = machine
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the suite fixes the count (conftest); a user may not
    torch.set_num_threads(2)
    threads.stop_governing()
    advance(2.0, own=1.0, others=2.0)
    threads.tick()
    assert torch.get_num_threads() == 2
    governor = threads.govern_threads(max_threads=2)
    governor.stat, governor.cores = str(stat), 2
    governor._last = governor._sample()
    advance(2.0, own=1.0, others=2.0)
    try:
        threads.tick()
        assert torch.get_num_threads() == 1
    finally:
        threads.stop_governing()


def test_no_governor_when_the_user_set_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.govern_threads() is None
    assert threads._governor is None


def test_the_governor_says_its_first_change_once(machine):
    import torch

    clock, stat, advance = machine
    torch.set_num_threads(2)
    said = []
    governor = ThreadGovernor(max_threads=2, interval=1.0, cores=2, stat=str(stat), on_change=said.append)
    advance(1.0, own=1.0, others=1.9)
    governor.tick()
    advance(1.0, own=2.0, others=0.0)
    governor.tick()  # back to 2 threads, silently
    assert torch.get_num_threads() == 2
    assert said == [
        "other jobs keep 1.9 of the 2 cores busy: torch now computes on 1 thread, up to 2 as cores free up "
        "(--threads N fixes the count, which runs that repeat bit for bit need)"
    ]


def test_the_command_governs_threads_only_without_omp_num_threads(tmp_path):
    """In a fresh process: ``pyrogen train`` starts the governor, unless OMP_NUM_THREADS or --threads is given."""
    probe = (
        "import sys; from pyrogen import threads, cli; seen = []; "
        "real = threads.ThreadGovernor.tick; "
        "threads.ThreadGovernor.tick = lambda self: seen.append(self.max_threads) or real(self); "
        "sys.argv = ['pyrogen', 'train', 'vae', '--out', sys.argv[1], '--epochs', '1', '--train-size', '200', "
        "'--test-size', '100', '--eval-samples', '0', '--no-progress', '--latent-dim', '2', '--hidden', '8'] "
        "+ sys.argv[2:]; code = cli.main(sys.argv[1:]); "
        "print('governed' if seen else 'fixed', code)"
    )

    def start(out, *extra, omp=None):
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env["PYTHONPATH"] = str(ROOT)
        if omp:
            env["OMP_NUM_THREADS"] = omp
        return subprocess.Popen(
            [sys.executable, "-c", probe, str(tmp_path / out), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # the three processes run side by side (each is mostly imports): the last lines, in the order started
    started = [start("a"), start("b", "--threads", "1"), start("c", omp="1")]
    done = [p.communicate(timeout=300) for p in started]
    assert [out.strip().splitlines()[-1] for out, _ in done] == ["governed 0", "fixed 0", "fixed 0"], done


def test_set_wait_policy_keeps_the_users_spin_count(monkeypatch):
    monkeypatch.delenv(WAIT_POLICY, raising=False)
    monkeypatch.setenv(SPIN_VARIABLE, "500")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set_wait_policy() == "GOMP_SPINCOUNT=500"
    assert os.environ[SPIN_VARIABLE] == "500" and WAIT_POLICY not in os.environ


def _cgroup_file(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_cpu_quota_is_the_smallest_on_the_control_groups_path(tmp_path):
    """cgroup v2 (cpu.max on every folder from the root) and v1 (cfs quota over period), as the kernel
    writes them; no quota, absent or malformed files: None."""
    v2 = tmp_path / "v2"
    _cgroup_file(tmp_path / "v2.cgroup", "0::/kubepods/pod1/box\n")
    _cgroup_file(v2 / "cpu.max", "max 100000\n")
    _cgroup_file(v2 / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")  # the pod's limit: 1.5 cores
    _cgroup_file(v2 / "kubepods" / "pod1" / "box" / "cpu.max", "400000 100000\n")
    assert threads.cpu_quota(tmp_path / "v2.cgroup", v2) == 1.5
    (v2 / "kubepods" / "pod1" / "cpu.max").write_text("max 100000\n")
    assert threads.cpu_quota(tmp_path / "v2.cgroup", v2) == 4.0
    (v2 / "kubepods" / "pod1" / "box" / "cpu.max").write_text("lots\n")
    assert threads.cpu_quota(tmp_path / "v2.cgroup", v2) is None

    v1 = tmp_path / "v1"
    _cgroup_file(tmp_path / "v1.cgroup", "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    _cgroup_file(v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "200000\n")
    _cgroup_file(v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    _cgroup_file(v1 / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _cgroup_file(v1 / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert threads.cpu_quota(tmp_path / "v1.cgroup", v1) == 2.0
    (v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cpu_quota(tmp_path / "v1.cgroup", v1) is None
    assert threads.cpu_quota(tmp_path / "absent", v1) is None


def _per_cpu_stat(path, busy):
    """A /proc/stat whose CPU i has spent busy[i] seconds working (100 ticks a second)."""
    lines = [f"cpu  {round(100 * sum(busy))} 0 0 5000 0 0 0 0 0 0"]
    lines += [f"cpu{i} {round(100 * b)} 0 0 1000 0 0 0 0 0 0" for i, b in enumerate(busy)]
    path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 4"]) + "\n")


def test_the_governor_counts_only_the_cpus_the_process_may_run_on(machine, monkeypatch):
    """In a cpuset of CPUs 2 and 3 of a 4-CPU machine (a SLURM job, taskset), jobs on CPUs 0 and 1 take
    nothing from it; a job on CPU 2 does."""
    import torch

    clock, stat, advance = machine
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    busy = [10.0, 10.0, 10.0, 10.0]
    _per_cpu_stat(stat, busy)
    torch.set_num_threads(2)
    governor = ThreadGovernor(max_threads=2, interval=1.0, stat=str(stat), cpus=[3, 2], quota=None)
    assert governor.cpus == (2, 3) and governor.cores == 2
    clock.wall += 1.0
    clock.cpu += 2.0  # this process: both of its CPUs
    busy = [b + 1.0 for b in busy]  # every CPU busy: 0 and 1 with other jobs
    _per_cpu_stat(stat, busy)
    assert governor.tick() == 2 and governor.others == pytest.approx(0.0)
    clock.wall += 1.0
    clock.cpu += 1.0  # one CPU of its two; another job keeps CPU 2 busy
    busy = [busy[0] + 1.0, busy[1] + 1.0, busy[2] + 1.0, busy[3] + 1.0]
    _per_cpu_stat(stat, busy)
    assert governor.tick() == 1 and torch.get_num_threads() == 1
    assert governor.others == pytest.approx(1.0)
    assert threads._busy_seconds(str(stat), (1, 3)) == pytest.approx(busy[1] + busy[3])
    assert threads._busy_seconds(str(stat)) == pytest.approx(sum(busy))


def test_a_cpu_quota_caps_the_threads_at_once_and_says_so(machine):
    """torch counts one thread per CPU of the affinity; a control group allowed 2.5 cores gets 2 threads
    from the start, and the governor never goes above them."""
    import torch

    clock, stat, advance = machine
    torch.set_num_threads(4)
    said = []
    governor = ThreadGovernor(interval=1.0, cores=4, stat=str(stat), quota=2.5, on_change=said.append)
    assert governor.max_threads == 2 and torch.get_num_threads() == 2
    assert said == ["this process's control group may use 2.5 cores: torch computes on at most 2 threads, not 4"]
    advance(2.0, own=2.0)  # a quiet machine of 4 cores: still 2
    assert governor.tick() == 2 and torch.get_num_threads() == 2
    advance(2.0, own=1.0, others=3.0)  # the contention sentence comes too, the first time
    assert governor.tick() == 1 and len(said) == 2
    torch.set_num_threads(1)
    assert ThreadGovernor(interval=1.0, cores=4, stat=str(stat), quota=0.5).max_threads == 1


def test_available_cores_are_the_affinitys_at_most_the_quota(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: (0, 1, 2, 3, 4, 5))
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    assert threads.available_cores() == 6
    monkeypatch.setattr(threads, "cpu_quota", lambda: 2.5)
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads, "cpu_quota", lambda: 0.25)
    assert threads.available_cores() == 1
    monkeypatch.setattr(threads, "usable_cpus", lambda: None)
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 3)
    assert threads.available_cores() == 3
