# Helpers of the scripts/ci suites that run a Python tool against a real
# `stacyvm serve` (sdk.sh, schemathesis.sh). Sourced; the caller sets
# `set -euo pipefail`.

# ci_venv WHO VENV REQUIREMENTS: makes VENV a virtualenv holding the pinned
# REQUIREMENTS (a no-op without network when already satisfied). As root on
# Debian it installs python3-venv first if it is missing.
ci_venv() {
  local who=$1 venv=$2 requirements=$3 python=${PYTHON:-python3}
  if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "$who: python3 with the venv module is missing (apt-get install python3-venv)" >&2
      return 1
    fi
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends python3 python3-venv >/dev/null
    python=python3
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
}

# ci_free_port VENV: prints a free loopback TCP port.
ci_free_port() {
  "$1/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ci_live VENV URL: whether URL/api/v1/live answers.
ci_live() {
  "$1/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$2/api/v1/live" >/dev/null 2>&1
}

# ci_wait_live WHO VENV PID URL LOG: waits up to 60 s for the server PID to
# answer URL/api/v1/live; on failure prints why and its LOG.
ci_wait_live() {
  local who=$1 venv=$2 pid=$3 url=$4 log=$5
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    if ci_live "$venv" "$url"; then return 0; fi
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$who: server did not answer $url/api/v1/live within 60s; its log:" >&2
  else
    echo "$who: server exited before answering $url/api/v1/live; its log:" >&2
  fi
  cat "$log" >&2
  return 1
}

# ci_stop PID: SIGTERM, up to 30 s of grace (sandboxes are destroyed on
# shutdown), then SIGKILL; reaps it.
ci_stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# ci_work: sets $work to a fresh temporary directory and $server_pid to
# none; on exit the server (if any) is stopped and $work removed.
ci_work() {
  work=$(mktemp -d)
  server_pid=
  trap ci_cleanup EXIT
}

stop_server() {
  ci_stop "$server_pid"
  server_pid=
}

ci_cleanup() {
  stop_server
  rm -rf "$work"
}
