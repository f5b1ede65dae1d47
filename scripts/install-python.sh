#!/usr/bin/env bash
# nextest setup script (see .config/nextest.toml) for the Python client's
# tests (tests/tests/python.rs): makes a venv under target/python-venv with
# the package in clients/python and pytest installed, and hands its python
# to the test as PYTHON_BIN. The venv is reused while the package's files
# and the python that made it are unchanged; otherwise the package is
# installed again (or the venv made anew), which needs PyPI the first time.
#
# When it cannot be done (no python3, no venv module, no PyPI) it says why
# on stderr, hands the reason to the test as PYTHON_SKIP_REASON and exits 0:
# the test then skips with that reason instead of the whole run failing (it
# fails instead when CI is set). Run by hand, it only prepares the venv.
#
# Environment: PYTHON (default python3), PYTHON_BIN (already set by the
# user: that python is used as is, and must have the package and pytest).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/target/python-venv"
package="clients/python"

hand_over() {
  if [[ -n "${NEXTEST_ENV:-}" ]]; then
    echo "$1" >>"$NEXTEST_ENV"
  fi
}

skip() {
  echo "install-python.sh: $*; the Python client tests will skip" >&2
  hand_over "PYTHON_SKIP_REASON=$*"
  exit 0
}

if [[ -n "${PYTHON_BIN:-}" ]]; then
  echo "install-python.sh: PYTHON_BIN=$PYTHON_BIN is set; testing with it, installing nothing" >&2
  exit 0
fi

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  skip "$python not found (install Python 3.9 or newer, or set PYTHON)"
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  skip "$("$python" --version 2>&1) is older than the client's Python 3.9"
fi

# What the installed copy was made from: the python, and every file of the
# package that pip installs (its tests and build leftovers excluded).
stamp_of_sources() {
  {
    "$python" -c 'import sys; print(sys.version)'
    command -v "$python"
    find "$package" \( -name __pycache__ -o -name '*.egg-info' -o -path "$package/build" \
      -o -path "$package/tests" -o -name .pytest_cache \) -prune -o -type f -print |
      LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -d' ' -f1
}
stamp=$(stamp_of_sources)
stamp_file="$venv/.swarm-client-stamp"

if [[ -x "$venv/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
  hand_over "PYTHON_BIN=$venv/bin/python"
  exit 0
fi

pip_quiet=(--quiet --disable-pip-version-check --no-input)
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import pytest, grpc' 2>/dev/null; then
  echo "install-python.sh: making the venv $venv (pip install $package pytest)" >&2
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    # Debian ships the venv module apart: install it when this runs as root
    # with apt-get (CI does), then try again.
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "install-python.sh: installing python3-venv (apt-get)" >&2
      apt-get install -y python3-venv >&2 ||
        { apt-get update >&2 && apt-get install -y python3-venv >&2; } || true
    fi
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      skip "$python -m venv failed (on Debian: apt-get install python3-venv)"
    fi
  fi
  # setuptools in the venv builds the package without build isolation, so
  # reinstalling after a change needs no network.
  if ! "$venv/bin/pip" install "${pip_quiet[@]}" pytest "setuptools>=64" wheel >&2; then
    rm -rf "$venv"
    skip "pip could not install pytest and setuptools from PyPI"
  fi
else
  echo "install-python.sh: $package changed; installing it again into $venv" >&2
fi
rm -f "$stamp_file"
# pip installs a project directory again even when its version is unchanged.
if ! "$venv/bin/pip" install "${pip_quiet[@]}" --no-build-isolation "./$package" >&2; then
  skip "pip could not install $package and its dependencies (grpcio, protobuf) into $venv"
fi
# pip builds in the source tree; its leftovers are not sources.
rm -rf "$package/build" "$package"/src/*.egg-info
echo "$stamp" >"$stamp_file"
hand_over "PYTHON_BIN=$venv/bin/python"
