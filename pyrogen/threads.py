"""The thread policy of pyrogen's processes: torch's threads neither spin against other jobs nor idle.

Torch runs each CPU operation on a team of OpenMP threads (one per core by
default) that wait for each other at the end of every operation. Two things go
wrong on a machine that other jobs share, and this module mends both:

* **Spinning.** GNU OpenMP, torch's runtime on Linux, makes a waiting thread spin
  for about 300,000 rounds before it sleeps. With other jobs on the cores the
  spinning threads take the cores the working ones need, and every operation
  waits for the slowest. Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) removes
  that, but on a quiet machine every operation then pays for waking its team.
  :func:`set_wait_policy` sets ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT` rounds
  instead: long enough to bridge the gap between one operation and the next (the
  solo step as fast as with torch's own policy), short enough that a waiting
  thread soon gives its core away.
* **More threads than free cores.** A team of 2 on 2 cores that another job
  shares runs at the pace of whichever thread the scheduler has just parked.
  :class:`ThreadGovernor` measures, about once a second, how much of the CPU the
  *other* processes used (``/proc/stat`` less this process's own CPU time, jobs
  of positive niceness left out, since they yield) and sets
  ``torch.set_num_threads`` to the cores left free, at least one and at most the
  count it started with. On a quiet machine that is every core; beside other
  busy jobs it is one thread, which does the most work per core-second. It counts
  only the CPUs the process may run on (its affinity: ``taskset``, a SLURM job's or
  a container's cpuset), and never more threads than its control group's CPU quota
  allows (a container's ``--cpus``, a Kubernetes CPU limit), which torch's own count
  does not heed.

The measurements are in the performance page of the docs ("Threads on a shared CPU").

The OpenMP runtime reads its variables once, when it is loaded with torch, so
:func:`set_wait_policy` must run before ``import torch``. The ``pyrogen`` command
does both first thing (:mod:`pyrogen._entry`; ``--threads N`` fixes the count
and turns the governor off); in your own script call :func:`set_wait_policy`
before importing torch and :func:`govern_threads` after. Settings the user made
(``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``OMP_NUM_THREADS``) are never changed.
This module imports nothing heavy, so that it can run before torch.
"""

import math
import os
import sys
import time

WAIT_POLICY = "OMP_WAIT_POLICY"
"""The OpenMP environment variable for how idle threads wait (``ACTIVE`` spins, ``PASSIVE`` sleeps)."""

SPIN_VARIABLE = "GOMP_SPINCOUNT"
"""GNU OpenMP's count of spin rounds before a waiting thread sleeps (read when no wait policy is set)."""

SPIN_COUNT = 10000
"""pyrogen's ``GOMP_SPINCOUNT``: tens of microseconds of spinning, against GNU OpenMP's default of 300,000."""

POLICIES = ("SPIN-BRIEFLY", "PASSIVE", "ACTIVE")
"""What :func:`set_wait_policy` can set: a short spin (``GOMP_SPINCOUNT``), sleep at once, spin for ever."""


def set_wait_policy(policy="SPIN-BRIEFLY"):
    """Set how torch's idle threads wait, unless the user set it; return what is in force.

    ``"SPIN-BRIEFLY"`` (the default) sets ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT`;
    ``"PASSIVE"`` and ``"ACTIVE"`` set ``OMP_WAIT_POLICY``. Nothing is set when the
    environment has ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already. Call it before
    ``import torch``: once torch (and with it the OpenMP runtime) is loaded the
    variables no longer act, and ``RuntimeWarning`` says so (the environment is still
    set, for the subprocesses this one starts).

    :param str policy: one of :data:`POLICIES`.
    :returns: the setting now in force, as ``"NAME=value"`` (the user's own if there was one).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(map(repr, POLICIES))}, got {policy!r}")
    for name in (WAIT_POLICY, SPIN_VARIABLE):
        if name in os.environ:
            return f"{name}={os.environ[name]}"
    name, value = (SPIN_VARIABLE, str(SPIN_COUNT)) if policy == "SPIN-BRIEFLY" else (WAIT_POLICY, policy)
    os.environ[name] = value
    if "torch" in sys.modules:
        import warnings

        warnings.warn(
            f"{name}={value} was set after torch was imported, so torch's threads in this "
            "process keep their policy; call set_wait_policy() before 'import torch'",
            RuntimeWarning,
            stacklevel=2,
        )
    return f"{name}={value}"


def _busy_seconds(stat="/proc/stat", cpus=None):
    """CPU seconds all processes spent working since boot, niced ones left out, on the CPUs ``cpus``
    (indices; None: all of them); None off Linux."""
    names = {"cpu"} if cpus is None else {f"cpu{i}" for i in cpus}
    busy, found = 0, False
    try:
        with open(stat) as f:
            for line in f:
                fields = line.split()
                if not fields or not fields[0].startswith("cpu"):
                    break  # the cpu lines come first
                if fields[0] in names and len(fields) >= 8:
                    user, _nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
                    busy, found = busy + user + system + irq + softirq, True
    except (OSError, ValueError):
        return None
    return busy / os.sysconf("SC_CLK_TCK") if found else None


def usable_cpus():
    """The CPUs this process may run on (its affinity), as a sorted tuple of indices; None where unknown."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return None


def _text(path):
    """The text of a small kernel file, or "" where it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _quota_at(where, version):
    """The CPU quota set in one control group's folder, in cores, or None."""
    if version == 2:  # cpu.max: "200000 100000" (2 cores) or "max 100000" (none)
        words = _text(os.path.join(where, "cpu.max")).split()
    else:  # cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us
        words = [_text(os.path.join(where, f"cpu.cfs_{n}_us")).strip() for n in ("quota", "period")]
    quota, period = (words + [None, None])[:2]
    try:
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except (TypeError, ValueError):  # "max", an absent file, or one not as the kernel writes it
        return None


def cpu_quota(cgroups="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """The cores this process's control group may keep busy at once, or None where it has no CPU quota.

    The smallest quota on the group's path from the root: ``cpu.max`` of cgroup v2 (``"200000 100000"``
    is 2 cores) or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of v1. A container started with
    ``--cpus 2`` or a Kubernetes pod with a CPU limit of 2 has such a quota; neither the machine's
    cores nor the process's affinity show it. None off Linux.
    """
    quotas = []
    for line in _text(cgroups).splitlines():  # "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
        controllers, _, path = line.partition(":")[2].partition(":")
        if controllers == "":
            version, mounts = 2, [root]
        elif "cpu" in controllers.split(","):
            version, mounts = 1, [os.path.join(root, controllers), os.path.join(root, "cpu")]
        else:
            continue
        mount = next((m for m in mounts if os.path.isdir(m)), None)
        parts = [p for p in path.strip().split("/") if p]
        for depth in range(len(parts) + 1) if mount else ():
            quotas.append(_quota_at(os.path.join(mount, *parts[:depth]), version))
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def _whole_cores(quota):
    """The threads a CPU quota of ``quota`` cores allows without throttling: its whole cores, at least 1."""
    return max(1, math.floor(quota))


def available_cores():
    """The cores this process can keep busy: the CPUs of its affinity, at most its control group's CPU
    quota in whole cores (at least 1); ``os.cpu_count()`` where neither is known."""
    cpus = usable_cpus()
    cores = len(cpus) if cpus else os.cpu_count() or 1
    quota = cpu_quota()
    return min(cores, _whole_cores(quota)) if quota is not None else cores


class ThreadGovernor:
    """Torch's thread count from the cores that other processes leave free, measured as it runs.

    :meth:`tick` is cheap and meant to be called often (each training step, each
    evaluation batch); about every ``interval`` seconds it compares the CPU time the
    process's CPUs spent working (``/proc/stat``, niced jobs left out) with this
    process's own (``time.process_time``) and sets ``torch.set_num_threads`` to
    ``round(cores - others)``, clipped to ``[1, max_threads]``, where ``others`` is
    the number of cores the other processes kept busy. Off Linux it does nothing.

    The CPUs are those the process may run on (:func:`usable_cpus`): under ``taskset``
    or in a SLURM job's or a container's cpuset, other jobs on other CPUs are not
    counted. A CPU quota of the process's control group (:func:`cpu_quota`) caps
    ``max_threads`` at the whole cores it allows, at once, where torch's own count
    (one thread per CPU of the affinity) would oversubscribe it.

    A changed count changes the order of floating-point sums inside torch's operations,
    so a run whose count changed repeats its numbers to about 1e-6, not bit for bit; a
    fixed count (``--threads N``, ``OMP_NUM_THREADS``) keeps runs and resumes bit for bit.

    :param int max_threads: the most threads (default: torch's count when it starts).
    :param float interval: seconds between measurements.
    :param int cores: the cores to share (default: the CPUs of ``cpus``).
    :param on_change: called with a sentence the first time the count changes, and when a quota caps
        the count at the start (or None).
    :param cpus: the CPU indices to measure (default: the process's affinity, :func:`usable_cpus`).
    :param quota: the control group's CPU quota in cores (default ``"auto"``: read by :func:`cpu_quota`;
        None: no quota).
    """

    def __init__(
        self, max_threads=None, interval=1.0, cores=None, stat="/proc/stat", on_change=None, cpus=None, quota="auto"
    ):
        import torch

        cpus = usable_cpus() if cpus is None else tuple(sorted(cpus))
        machine = os.cpu_count() or 1
        # /proc/stat's line for the whole machine where the process may use all of it, else its CPUs' lines
        self.cpus = cpus if cpus is not None and len(cpus) < machine else None
        self.cores = cores or (len(cpus) if cpus else machine)
        self.quota = cpu_quota() if quota == "auto" else quota
        started = torch.get_num_threads()
        self.max_threads = max_threads or started
        if self.quota is not None and self.max_threads > _whole_cores(self.quota):
            self.max_threads = _whole_cores(self.quota)
            if started > self.max_threads:
                torch.set_num_threads(self.max_threads)
                if on_change is not None:
                    on_change(
                        f"this process's control group may use {self.quota:g} core{'' if self.quota == 1 else 's'}: "
                        "torch computes on at most "
                        f"{self.max_threads} thread{'s' if self.max_threads > 1 else ''}, not {started}"
                    )
        self.interval, self.stat = interval, stat
        self.on_change = on_change
        self.threads = torch.get_num_threads()
        self.others = 0.0  # cores busy with other processes over the last interval
        self._last = self._sample()

    def _sample(self):
        return time.monotonic(), _busy_seconds(self.stat, self.cpus), time.process_time()

    def tick(self):
        """Measure and set the thread count if ``interval`` has passed; returns the count in force."""
        if time.monotonic() - self._last[0] < self.interval:
            return self.threads
        wall, busy, own = self._sample()
        if busy is None or self._last[1] is None:
            return self.threads
        elapsed = wall - self._last[0]
        self.others = max(0.0, (busy - self._last[1]) - (own - self._last[2])) / elapsed
        self._last = (wall, busy, own)
        threads = max(1, min(self.max_threads, round(self.cores - self.others)))
        if threads != self.threads:
            import torch

            torch.set_num_threads(threads)
            if self.on_change is not None:
                self.on_change(
                    f"other jobs keep {self.others:.1f} of the {self.cores} cores busy: torch now computes on "
                    f"{threads} thread{'s' if threads > 1 else ''}, up to {self.max_threads} as cores free up "
                    "(--threads N fixes the count, which runs that repeat bit for bit need)"
                )
                self.on_change = None  # said once: the count may move again, silently
            self.threads = threads
        return threads


_governor = None


def govern_threads(max_threads=None, interval=1.0, on_change=None):
    """Start the process's :class:`ThreadGovernor` (replacing one started before); returns it.

    Returns None, and starts none, when the environment has ``OMP_NUM_THREADS``: the user chose the count.
    """
    global _governor
    _governor = None if "OMP_NUM_THREADS" in os.environ else ThreadGovernor(max_threads, interval, on_change=on_change)
    return _governor


def stop_governing():
    """Stop the process's governor, if one runs; torch keeps the count it has."""
    global _governor
    _governor = None


def tick():
    """Let the process's governor measure and set the thread count, if one was started (cheap otherwise)."""
    if _governor is not None:
        _governor.tick()
