#!/usr/bin/env bash
# Installs everything pyrogen needs on a fresh Debian machine, idempotently:
# the Debian package dataset-fashion-mnist (the data, in /usr/share/datasets/fashion-mnist),
# a virtual environment in .venv, and pyrogen with its test, docs, tables, tensorboard and lightning extras at the exact
# versions of constraints.txt (pyproject.toml states the supported ranges).
# With --browser, or on CI (CI set, as .ci/run is run), also Debian's chromium, for
# tests/integration/test_browser.py (which skips, saying so, where it is absent).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install.sh: $*"; }

# Runs "$@" with its output kept aside: shown only if the command fails.
quietly() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

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
  say "installing Debian packages: ${apt_packages[*]} (apt-get update first; a minute or so)"
  # env passes DEBIAN_FRONTEND through sudo: no debconf questions or notes about missing frontends.
  quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
fi

python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv with $("$python_bin" --version 2>&1)"
  "$python_bin" -m venv .venv
fi
say "installing pyrogen and its extras into .venv at the versions of constraints.txt" \
    "(torch among them: a few minutes the first time, seconds after)"
quietly .venv/bin/python -m pip install --disable-pip-version-check -c constraints.txt -e ".[test,docs,tables,tensorboard,lightning]"
say "checking that pyrogen, torch, torchvision, pyro and arviz import"
.venv/bin/python -c "import pyrogen, torch, torchvision, pyro; from pyrogen.evaluation._arviz import import_arviz; import_arviz()"
say "done: .venv/bin/pytest -q runs the tests"
