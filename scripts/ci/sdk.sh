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

python=${PYTHON:-python3}
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends python3 python3-venv >/dev/null
    python=python3
  else
    echo "sdk.sh: python3 with the venv module is missing (apt-get install python3-venv)" >&2
    exit 1
  fi
fi

venv=${STACYVM_SDK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stacyvm/sdk-venv}
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Pinned set: a no-op without network when already satisfied.
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/tests/sdk/requirements.txt"

work=$(mktemp -d)
server_pid=
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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
ready=
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  if "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "$url/api/v1/live" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "sdk.sh: server did not answer $url/api/v1/live within 60s; its log:" >&2
  else
    echo "sdk.sh: server exited before answering $url/api/v1/live; its log:" >&2
  fi
  cat "$work/server.log" >&2
  exit 1
fi

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
