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
  busy jobs it is one thread, which does the most work per core-second.

The measurements are in the performance page of the docs ("Threads on a shared CPU").

The OpenMP runtime reads its variables once, when it is loaded with torch, so
:func:`set_wait_policy` must run before ``import torch``. The ``pyrogen`` command
does both first thing (:mod:`pyrogen._entry`; ``--threads N`` fixes the count
and turns the governor off); in your own script call :func:`set_wait_policy`
before importing torch and :func:`govern_threads` after. Settings the user made
(``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``OMP_NUM_THREADS``) are never changed.
This module imports nothing heavy, so that it can run before torch.
"""

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


def _busy_seconds(stat="/proc/stat"):
    """CPU seconds all processes spent working since boot, niced ones left out; None off Linux."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, _nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class ThreadGovernor:
    """Torch's thread count from the cores that other processes leave free, measured as it runs.

    :meth:`tick` is cheap and meant to be called often (each training step, each
    evaluation batch); about every ``interval`` seconds it compares the CPU time the
    whole machine spent working (``/proc/stat``, niced jobs left out) with this
    process's own (``time.process_time``) and sets ``torch.set_num_threads`` to
    ``round(cores - others)``, clipped to ``[1, max_threads]``, where ``others`` is
    the number of cores the other processes kept busy. Off Linux it does nothing.

    A changed count changes the order of floating-point sums inside torch's operations,
    so a run whose count changed repeats its numbers to about 1e-6, not bit for bit; a
    fixed count (``--threads N``, ``OMP_NUM_THREADS``) keeps runs and resumes bit for bit.

    :param int max_threads: the most threads (default: torch's count when it starts).
    :param float interval: seconds between measurements.
    :param int cores: the machine's cores (default ``os.cpu_count()``).
    :param on_change: called once, with a sentence saying so, the first time the count changes (or None).
    """

    def __init__(self, max_threads=None, interval=1.0, cores=None, stat="/proc/stat", on_change=None):
        import torch

        self.max_threads = max_threads or torch.get_num_threads()
        self.interval, self.cores, self.stat = interval, cores or os.cpu_count() or 1, stat
        self.on_change = on_change
        self.threads = torch.get_num_threads()
        self.others = 0.0  # cores busy with other processes over the last interval
        self._last = self._sample()

    def _sample(self):
        return time.monotonic(), _busy_seconds(self.stat), time.process_time()

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
