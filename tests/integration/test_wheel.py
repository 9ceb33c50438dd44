"""The package as users install it: the wheel builds, installs into a fresh virtual environment and trains
from outside the repository.

The wheel is built from a copy of the sources in a temporary directory (nothing is written into the
repository) and installed with ``--no-deps`` into a new virtual environment. To spare a second install
of torch, that environment reaches this one's installed packages through a ``.pth`` line naming their
directory; a directory named that way is not a site directory, so its own ``.pth`` files (the editable
install of the repository among them) are not run and the repository's sources stay out of sight. The
commands run from a temporary directory without ``PYTHONPATH``.
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import requires_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [
    "train",
    "vae",
    "--epochs",
    "1",
    "--train-size",
    "200",
    "--test-size",
    "40",
    "--latent-dim",
    "4",
    "--hidden",
    "16",
    "--batch-size",
    "50",
    "--eval-samples",
    "0",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def _run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}"
    return result


def _setuptools_builds_it():
    """Whether this environment's setuptools reads pyproject.toml's SPDX licence (setuptools 77 and later)."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 77
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel of the repository's sources, built from a copy of them."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pyrogen", source / "pyrogen", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    isolation = ["--no-build-isolation"] if _setuptools_builds_it() else []  # else pip fetches setuptools
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "--disable-pip-version-check",
            *isolation,
            "-w",
            str(out),
            str(source),
        ],
        cwd=source,
        env=dict(os.environ),
    )
    (path,) = out.glob("pyrogen-*.whl")
    return path


def test_the_wheel_holds_the_package_its_licence_and_its_ranges(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names} == {"pyrogen", "pyrogen-0.1.0.dist-info"}  # no tests, no benchmarks
    assert "pyrogen/cli.py" in names and "pyrogen-0.1.0.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in metadata
    for requirement in ("torch>=2.4", "pyro-ppl<2,>=1.9"):
        assert f"Requires-Dist: {requirement}" in metadata
    pins = [line for line in metadata.splitlines() if line.startswith("Requires-Dist") and "==" in line.split(";")[0]]
    assert not pins  # exact versions belong in constraints.txt


@requires_fashion_mnist
def test_the_wheel_installs_into_a_fresh_environment_and_trains_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=dict(os.environ))
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).stdout.strip()
    )
    (site / "reach_installed_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            "--disable-pip-version-check",
            str(wheel),
        ],
        tmp_path,
        env,
    )

    where = _run([python, "-c", "import pyrogen; print(pyrogen.__file__)"], tmp_path, env).stdout.strip()
    assert Path(where).is_relative_to(site) and not Path(where).is_relative_to(ROOT)
    usage = _run([venv / "bin" / "pyrogen", "--help"], tmp_path, env).stdout
    assert usage.startswith("usage: pyrogen") and "train" in usage
    _run([venv / "bin" / "pyrogen", *TRAIN, "--out", "run"], tmp_path, env)
    assert {"config.json", "checkpoint.pt", "metrics.csv"} <= set(os.listdir(tmp_path / "run"))
