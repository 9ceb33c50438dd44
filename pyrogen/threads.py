"""The thread policy of pyrogen's processes: torch's OpenMP threads sleep instead of spinning.

Torch runs each CPU operation on a team of OpenMP threads (one per core by
default) that wait for each other at the end of every operation. GNU OpenMP,
torch's runtime on Linux, makes a waiting thread spin for a while before it
sleeps; on a machine that other jobs share, the spinning threads take the
cores the working ones need, and every operation waits for the slowest. With
``OMP_WAIT_POLICY=PASSIVE`` a waiting thread sleeps at once. On a 2-core CPU
three 1-epoch trainings started together took 3.4x the solo time each with
the default policy and 1.54x with ``PASSIVE`` (a fair share is 1.5x), with
the solo time unchanged.

The OpenMP runtime reads the variable once, when it is loaded with torch, so
it must be in the environment before ``import torch``. The ``pyrogen``
command sets it first thing (:mod:`pyrogen._entry`); in your own script call
:func:`set_wait_policy` before importing torch, or start Python with the
variable set. A value the user set is never changed. This module imports
nothing heavy, so that it can run before torch.
"""

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"
"""The OpenMP environment variable for how idle threads wait (``ACTIVE`` spins, ``PASSIVE`` sleeps)."""


def set_wait_policy(policy="PASSIVE"):
    """Set ``OMP_WAIT_POLICY`` to ``policy`` unless the environment has it already; return the value in force.

    Call it before ``import torch``: once torch (and with it the OpenMP runtime)
    is loaded the variable no longer acts, and ``RuntimeWarning`` says so
    (the environment is still set, for the subprocesses this one starts).

    :param str policy: ``"PASSIVE"`` (waiting threads sleep) or ``"ACTIVE"`` (they spin).
    :returns: the value of ``OMP_WAIT_POLICY`` now, the user's own if there was one.
    """
    if policy not in ("PASSIVE", "ACTIVE"):
        raise ValueError(f"policy must be 'PASSIVE' or 'ACTIVE', got {policy!r}")
    if WAIT_POLICY in os.environ:
        return os.environ[WAIT_POLICY]
    os.environ[WAIT_POLICY] = policy
    if "torch" in sys.modules:
        import warnings

        warnings.warn(
            f"{WAIT_POLICY}={policy} was set after torch was imported, so torch's threads in this "
            "process keep their policy; call set_wait_policy() before 'import torch'",
            RuntimeWarning,
            stacklevel=2,
        )
    return policy
