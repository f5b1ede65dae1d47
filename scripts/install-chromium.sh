#!/usr/bin/env bash
# nextest setup script (see .config/nextest.toml) for the dashboard's browser
# tests (tests/tests/dashboard.rs): makes sure Debian's `chromium` and
# `chromium-driver` are installed, installing them with apt-get when either is
# missing, and hands their paths to the tests as CHROMIUM_BIN and
# CHROMEDRIVER_BIN. Idempotent, and silent when both are already there.
#
# When they cannot be installed (no root, no apt-get, no network) it says so
# and exits 0: the browser tests then skip with that reason rather than the
# whole run failing. CI runs as root with the Debian mirror reachable, so
# there they install and run.
#
# CHROMIUM_BIN / CHROMEDRIVER_BIN already set by the user name the binaries to
# use; they are left alone.
set -euo pipefail

find_bins() {
  chromium=${CHROMIUM_BIN:-$(command -v chromium || command -v chromium-browser || true)}
  chromedriver=${CHROMEDRIVER_BIN:-$(command -v chromedriver || true)}
}

export_bins() {
  if [[ -n "${NEXTEST_ENV:-}" ]]; then
    {
      echo "CHROMIUM_BIN=$chromium"
      echo "CHROMEDRIVER_BIN=$chromedriver"
    } >>"$NEXTEST_ENV"
  fi
}

find_bins
if [[ -x "$chromium" && -x "$chromedriver" ]]; then
  export_bins
  exit 0
fi

warn() { echo "install-chromium.sh: $*; the browser tests will skip" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
  warn "chromium or chromedriver is missing and there is no apt-get to install them"
  exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    warn "chromium or chromedriver is missing and installing them needs root (run: sudo apt-get install chromium chromium-driver)"
    exit 0
  fi
fi

echo "install-chromium.sh: installing chromium and chromium-driver with apt-get" >&2
apt_install() {
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
}
# A fresh image has no package lists: update once, only when the first try fails.
if ! apt_install 2>/dev/null; then
  if ! "${sudo[@]}" apt-get update -qq >/dev/null || ! apt_install; then
    warn "apt-get could not install chromium and chromium-driver"
    exit 0
  fi
fi

find_bins
if [[ -x "$chromium" && -x "$chromedriver" ]]; then
  export_bins
else
  warn "apt-get installed chromium and chromium-driver but they are not on PATH"
fi
