#!/usr/bin/env bash
# Installs everything pyrogen needs on a fresh Debian machine, idempotently:
# the Debian package dataset-fashion-mnist (the data, in /usr/share/datasets/fashion-mnist),
# a virtual environment in .venv, and pyrogen with its test and docs extras.
# With --browser, or on CI (CI set, as .ci/run is run), also Debian's chromium, for
# tests/integration/test_browser.py (which skips, saying so, where it is absent).
# torch==2.14.1 and torchvision==0.29.1 are pinned in pyproject.toml: pip takes them from
# this machine kind's local disk.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  apt_packages+=(dataset-fashion-mnist)
fi
if { [ "${1:-}" = "--browser" ] || [ -n "${CI:-}" ]; } && ! command -v chromium >/dev/null; then
  apt_packages+=(chromium)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
# (sed drops pip's notes about this machine's unused local package folders; pipefail keeps pip's status.)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,docs]" 2>&1 \
  | sed '/^WARNING: Location/d'
.venv/bin/python -c "import pyrogen, torch, torchvision, pyro, arviz"
