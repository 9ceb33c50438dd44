"""ArviZ's notice about its coming refactor (a FutureWarning at import) does not reach pyrogen's users."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PSIS = "import torch; from pyrogen.evaluation import pareto_khat; pareto_khat(torch.randn(100, 3))"


def _python(code, cache):
    """Run ``code`` in a fresh interpreter whose FutureWarnings are errors, with an empty user cache
    (ArviZ shows its notice once a day, remembered there); returns the exit status and stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(cache), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    return result.returncode, result.stderr


def test_pyrogen_imports_arviz_without_its_refactor_notice(tmp_path):
    status, stderr = _python(PSIS, tmp_path / "pyrogen")
    assert status == 0, stderr
    status, stderr = _python("import arviz", tmp_path / "plain")  # the notice that pyrogen hides
    assert status != 0 and "ArviZ is undergoing a major refactor" in stderr
