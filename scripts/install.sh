#!/usr/bin/env bash
# Installs everything pyrogen needs on a fresh Debian machine, idempotently:
# the Debian package dataset-fashion-mnist (the data, in /usr/share/datasets/fashion-mnist),
# a virtual environment in .venv, and pyrogen with its test and docs extras.
# torch==2.14.1 and torchvision==0.29.1 are pinned in pyproject.toml: pip takes them from
# this machine kind's local disk.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
# (sed drops pip's notes about this machine's unused local package folders; pipefail keeps pip's status.)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,docs]" 2>&1 \
  | sed '/^WARNING: Location/d'
.venv/bin/python -c "import pyrogen, torch, torchvision, pyro, arviz"
