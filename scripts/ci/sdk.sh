#!/usr/bin/env bash
# Runs the published Python SDK (stacyvm==0.1.1, unmodified) against a real
# `stacyvm serve` using the mock provider: tests/sdk/test_sdk_compat.py.
# Usage: scripts/ci/sdk.sh PATH/TO/stacyvm [pytest args...]
# Idempotent; on a fresh Debian 12 as root it installs python3-venv.
# Env: STACYVM_SDK_VENV (default ~/.cache/stacyvm/sdk-venv),
#      STACYVM_SDK_JUNIT (optional JUnit XML output path).
# Exit status: pytest's (its "no tests collected", 5, counts as a failure).
set -euo pipefail

bin=${1:?usage: scripts/ci/sdk.sh PATH/TO/stacyvm [pytest args...]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -x "$bin" ] || { echo "sdk.sh: server binary $bin is not executable" >&2; exit 1; }

# shellcheck source=lib/server.sh
. "$root/scripts/ci/lib/server.sh"
venv=${STACYVM_SDK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stacyvm/sdk-venv}
ci_venv sdk.sh "$venv" "$root/tests/sdk/requirements.txt"

ci_work

port=$(ci_free_port "$venv")
mkdir -p "$work/home" "$work/run"
# Run from an empty directory with a private HOME so no stray ./stacyvm.yaml
# or ~/.stacyvm/config.yaml changes what is tested.
(
  cd "$work/run"
  exec env HOME="$work/home" \
    STACYVM_SERVER_PORT="$port" \
    STACYVM_DATABASE_PATH="$work/stacyvm.db" \
    STACYVM_PROVIDERS_MOCK_ENABLED=true \
    STACYVM_PROVIDERS_DEFAULT=mock \
    "$bin" serve
) >"$work/server.log" 2>&1 &
server_pid=$!

url="http://127.0.0.1:$port"
ci_wait_live sdk.sh "$venv" "$server_pid" "$url" "$work/server.log" || exit 1

junit=()
if [ -n "${STACYVM_SDK_JUNIT:-}" ]; then junit=(--junitxml "$STACYVM_SDK_JUNIT"); fi
set +e
(cd "$root/tests/sdk" && STACYVM_URL="$url" "$venv/bin/python" -m pytest -p no:cacheprovider -v -rfE \
  "${junit[@]}" "$@" .)
rc=$?
set -e

stop_server
if [ "$rc" = 5 ]; then
  echo "sdk.sh: pytest collected no tests" >&2
  rc=1
fi
if [ "$rc" != 0 ]; then
  echo "sdk.sh: SDK tests failed (pytest exit $rc); server log (last 200 lines):" >&2
  tail -n 200 "$work/server.log" >&2
fi
exit "$rc"
