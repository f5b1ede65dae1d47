#!/usr/bin/env bash
# nextest setup script (see .config/nextest.toml): builds the swarmd that the
# end-to-end tests in tests/ spawn (and swarmctl, whose MCP server they spawn
# too), with the cargo profile of the test run, and hands their absolute paths
# to those tests as SWARMD_BIN and SWARMCTL_BIN. The tests themselves
# never run cargo; a failed build here stops the run before any test starts.
#
# A SWARMD_BIN already set by the user names the binary to test: it is left
# alone and nothing is built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${NEXTEST_ENV:-}" ]]; then
  echo "build-swarmd.sh: run by cargo nextest as a setup script, not by hand" >&2
  exit 2
fi

if [[ -n "${SWARMD_BIN:-}" ]]; then
  echo "build-swarmd.sh: SWARMD_BIN=$SWARMD_BIN is set; testing that binary, building nothing" >&2
  exit 0
fi

# nextest passes no cargo profile to setup scripts, but it puts the run's cargo
# artifact directory (target/<profile dir>) on the dynamic library path,
# followed by its deps/ directory (nextest docs, "Dynamic library paths"). The
# name of that directory gives the profile; without one, the default.
profile=dev
IFS=: read -ra lib_dirs <<<"${LD_LIBRARY_PATH:-${NEXTEST_DYLD_FALLBACK_LIBRARY_PATH:-}}"
for ((i = 0; i + 1 < ${#lib_dirs[@]}; i++)); do
  if [[ "${lib_dirs[i + 1]}" == "${lib_dirs[i]}/deps" ]]; then
    dir_name=$(basename "${lib_dirs[i]}")
    if [[ "$dir_name" != debug ]]; then profile=$dir_name; fi
    break
  fi
done

# Diagnostics go to stderr as usual; stdout carries cargo's JSON messages, whose
# compiler-artifact for swarmd names the executable, wherever the target
# directory is.
messages=$("${CARGO:-cargo}" build --profile "$profile" -p swarm-node --bin swarmd \
  -p swarm-cli --bin swarmctl --message-format=json-render-diagnostics)
swarmd=$(grep -o '"executable":"[^"]*/swarmd"' <<<"$messages" | tail -n 1 | cut -d'"' -f4)
if [[ -z "$swarmd" || ! -x "$swarmd" ]]; then
  echo "build-swarmd.sh: cargo built swarm-node but reported no swarmd executable" >&2
  exit 1
fi
echo "SWARMD_BIN=$swarmd" >>"$NEXTEST_ENV"
# swarmctl too: the MCP server's tests (tests/tests/mcp.rs) spawn it.
swarmctl=$(grep -o '"executable":"[^"]*/swarmctl"' <<<"$messages" | tail -n 1 | cut -d'"' -f4)
if [[ -z "$swarmctl" || ! -x "$swarmctl" ]]; then
  echo "build-swarmd.sh: cargo built swarm-cli but reported no swarmctl executable" >&2
  exit 1
fi
echo "SWARMCTL_BIN=$swarmctl" >>"$NEXTEST_ENV"
