#!/usr/bin/env bash
# End-to-end tests of the web dashboard in headless Chromium.
#
#   scripts/ci/e2e.sh URL      run the suite against a running server
#                              (e.g. http://127.0.0.1:7599)
#   scripts/ci/e2e.sh BINARY   start that `stacyvm` binary on 127.0.0.1:7599
#                              with the mock provider and a throw-away
#                              database, run the suite, stop the server
#                              (this is how scripts/test calls it)
#   scripts/ci/e2e.sh          the same after `cargo build -p stacyvm`
#
# Idempotent; works on a fresh Debian 12 as root. Installs Debian's chromium
# and chromium-driver (Playwright downloads no browser: playwright-core only)
# and the pinned npm dependencies of tests/e2e with `npm ci`.
# Env: STACYVM_API_KEY (server has auth on), E2E_SCREENSHOT_DIR (default
# target/e2e-screenshots), CARGO_TARGET_DIR (where the binary is built).
# Screenshots of every page land in target/e2e-screenshots/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
arg="${1:-}"
url=""
server_bin=""
case "$arg" in
  http://* | https://*) url="${arg%/}" ;;
  "") ;;
  *)
    if [[ ! -x "$arg" ]]; then echo "[e2e] $arg is neither a URL nor an executable" >&2; exit 2; fi
    server_bin="$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")"
    ;;
esac

log() { printf '[e2e] %s\n' "$*" >&2; }

# ---- browser ------------------------------------------------------------
if [[ ! -x /usr/bin/chromium ]]; then
  log "installing chromium and chromium-driver from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver >/dev/null
fi
/usr/bin/chromium --version >&2 2>/dev/null || true

# ---- node and the test project -----------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "node and npm are required (Node.js >= 20)"
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  log "Node.js >= 20 is required by playwright-core, found $(node --version)"
  exit 1
fi
(cd "$repo/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)

# ---- server -------------------------------------------------------------
server_pid=""
workdir=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [[ -n "$workdir" ]]; then rm -rf "$workdir"; fi
}
trap cleanup EXIT

if [[ -z "$url" ]]; then
  port="${E2E_PORT:-7599}"
  if [[ -z "$server_bin" ]]; then
    target="${CARGO_TARGET_DIR:-$repo/target}"
    case "$target" in /*) ;; *) target="$repo/$target" ;; esac
    log "building stacyvm"
    (cd "$repo" && cargo build -p stacyvm)
    server_bin="$target/debug/stacyvm"
  fi
  workdir="$(mktemp -d /tmp/stacyvm-e2e.XXXXXX)"
  log "starting stacyvm serve on 127.0.0.1:$port (mock provider${STACYVM_API_KEY:+, auth on})"
  if [[ -n "${STACYVM_API_KEY:-}" ]]; then
    export STACYVM_AUTH_ENABLED=true STACYVM_AUTH_API_KEY="$STACYVM_API_KEY"
  fi
  STACYVM_SERVER_PORT="$port" \
  STACYVM_DATABASE_PATH="$workdir/stacyvm.db" \
  STACYVM_PROVIDERS_MOCK_ENABLED=true \
  STACYVM_PROVIDERS_DEFAULT=mock \
    "$server_bin" serve >"$workdir/server.log" 2>&1 &
  server_pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if curl -fsS "$url/api/v1/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      log "server exited early:"; cat "$workdir/server.log" >&2; exit 1
    fi
    sleep 0.2
  done
  curl -fsS "$url/api/v1/health" >/dev/null || { log "server not healthy:"; cat "$workdir/server.log" >&2; exit 1; }
fi

# ---- run ----------------------------------------------------------------
log "running the dashboard suite against $url"
export STACYVM_URL="$url"
export E2E_SCREENSHOT_DIR="${E2E_SCREENSHOT_DIR:-$repo/target/e2e-screenshots}"
status=0
(cd "$repo/tests/e2e" && npm test) || status=$?
if [[ -n "$workdir" && $status -ne 0 ]]; then
  log "server log (tail):"; tail -n 50 "$workdir/server.log" >&2 || true
fi
log "screenshots in $E2E_SCREENSHOT_DIR"
exit "$status"
