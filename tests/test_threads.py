"""The thread policy: ``OMP_WAIT_POLICY=PASSIVE`` is in the environment before torch loads, unless the user set it.

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

from pyrogen.threads import WAIT_POLICY, set_wait_policy

ROOT = Path(__file__).resolve().parents[1]

SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "<unset>"))
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


def _torch_saw(run, policy=None):
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    if policy is not None:
        env[WAIT_POLICY] = policy
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", SPY.format(run=run)], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return out.strip().splitlines()[-1]


def _console(argv):
    module, function = _script_entry()
    return f"import sys; sys.argv = ['pyrogen'] + {argv!r}; from {module} import {function}; sys.exit({function}())"


def test_console_script_sets_passive_before_torch_loads():
    assert _torch_saw(_console(["train", "vae", "--help"])) == "torch saw OMP_WAIT_POLICY=PASSIVE"


def test_python_dash_m_sets_passive_before_torch_loads():
    run = "import runpy, sys; sys.argv = ['pyrogen', '--help']; runpy.run_module('pyrogen', run_name='__main__')"
    assert _torch_saw(run) == "torch saw OMP_WAIT_POLICY=PASSIVE"


@pytest.mark.parametrize("policy", ["ACTIVE", "passive"])
def test_the_users_own_setting_is_kept(policy):
    assert _torch_saw(_console(["--help"]), policy=policy) == f"torch saw OMP_WAIT_POLICY={policy}"


def test_cli_main_called_from_python_leaves_the_environment_alone():
    """Only the command's entry sets the policy; importing or calling pyrogen.cli does not."""
    run = "import pyrogen.cli, os; print('after import:', os.environ.get('OMP_WAIT_POLICY', '<unset>'))"
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", run], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip() == "after import: <unset>"


def test_set_wait_policy_after_torch_says_it_is_too_late(monkeypatch):
    import torch  # noqa: F401  (loaded here: the policy cannot act any more)

    monkeypatch.delenv(WAIT_POLICY, raising=False)
    with pytest.warns(RuntimeWarning, match=r"OMP_WAIT_POLICY=PASSIVE was set after torch was imported"):
        assert set_wait_policy() == "PASSIVE"
    assert os.environ[WAIT_POLICY] == "PASSIVE"  # still set, for the subprocesses this one starts


def test_set_wait_policy_keeps_the_users_value(monkeypatch):
    monkeypatch.setenv(WAIT_POLICY, "ACTIVE")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set_wait_policy() == "ACTIVE"
    assert os.environ[WAIT_POLICY] == "ACTIVE"


def test_set_wait_policy_refuses_other_values():
    with pytest.raises(ValueError, match=r"^policy must be 'PASSIVE' or 'ACTIVE', got 'SPIN'$"):
        set_wait_policy("SPIN")
