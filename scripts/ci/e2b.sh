#!/usr/bin/env bash
# Runs the official `e2b` Python SDK, unmodified, at several releases (each
# in its own virtualenv) against a real `stacyvm serve` with e2b.enabled on
# the native provider: tests/e2b/test_e2b_sdk.py once per release. Then the
# official `e2b` npm SDK (each release in its own directory, on the Node
# that scripts/ci/node.sh provides) runs tests/e2b/js/e2b_sdk.test.mjs, the
# same scenario.
# Usage: scripts/ci/e2b.sh PATH/TO/stacyvm [pytest args...]
# Needs root and the native set-up (scripts/ci/native.sh: crun, the agent)
# and the busybox rootfs (scripts/ci/busybox-rootfs.sh). Idempotent.
# Env: STACYVM_E2B_RELEASES (space-separated; default below),
#      STACYVM_E2B_VENVS (default ~/.cache/stacyvm/e2b-venvs; the npm
#      releases go to its npm-<release> subdirectories),
#      STACYVM_E2B_NPM_RELEASES (space-separated; default below),
#      STACYVM_BUSYBOX_ROOTFS (default /var/tmp/stacyvm-busybox-rootfs.tar).
# Exit status: non-zero if any release failed (pytest's "no tests
# collected", 5, counts as a failure).
set -euo pipefail

bin=${1:?usage: scripts/ci/e2b.sh PATH/TO/stacyvm [pytest args...]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -x "$bin" ] || { echo "e2b.sh: server binary $bin is not executable" >&2; exit 1; }

# Before 2.25 (token-only routing after connect, POST /sandboxes with
# autoPause), 2.29-2.50 (POST /sandboxes without it), 2.51 (POST
# /v2/sandboxes) and the newest (connectrpc over pyqwest, HTTP/2).
releases=${STACYVM_E2B_RELEASES:-2.24.0 2.40.0 2.51.0 2.63.0}
# npm: the newest (2.51.0 sends the create body chunked).
npm_releases=${STACYVM_E2B_NPM_RELEASES:-2.51.0}
venvs=${STACYVM_E2B_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/stacyvm/e2b-venvs}
rootfs=${STACYVM_BUSYBOX_ROOTFS:-/var/tmp/stacyvm-busybox-rootfs.tar}

# shellcheck source=lib/server.sh
. "$root/scripts/ci/lib/server.sh"

if [ "$(id -u)" != 0 ]; then
  echo "e2b.sh: the native provider needs root" >&2
  exit 1
fi
[ -f "$rootfs" ] || bash "$root/scripts/ci/busybox-rootfs.sh" "$rootfs"

mkdir -p "$venvs"
for v in $releases; do
  printf 'e2b==%s\npytest==9.2.0\n' "$v" >"$venvs/requirements-$v.txt"
  ci_venv e2b.sh "$venvs/$v" "$venvs/requirements-$v.txt"
done
if [ -n "$npm_releases" ]; then
  nodebin=$(bash "$root/scripts/ci/node.sh") || {
    echo "e2b.sh: no Node.js for the npm SDK (scripts/ci/node.sh failed)" >&2
    exit 1
  }
  for v in $npm_releases; do
    d="$venvs/npm-$v"
    if ! grep -qs "\"version\": \"$v\"" "$d/node_modules/e2b/package.json"; then
      mkdir -p "$d"
      [ -f "$d/package.json" ] || echo '{"private": true}' >"$d/package.json"
      PATH="$nodebin:$PATH" npm install --prefix "$d" --no-audit --no-fund --loglevel=error \
        --save-exact "e2b@$v"
    fi
  done
fi
first=$(echo "$releases" | awk '{print $1}')
py="$venvs/$first/bin/python"

ci_work
port=$(ci_free_port "$venvs/$first")
key="e2b_$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')"
mkdir -p "$work/home" "$work/run"
server_env=(
  HOME="$work/home"
  STACYVM_SERVER_PORT="$port"
  STACYVM_DATABASE_PATH="$work/stacyvm.db"
  STACYVM_PROVIDERS_NATIVE_ENABLED=true
  STACYVM_PROVIDERS_NATIVE_DATA_DIR="$work/native"
  STACYVM_PROVIDERS_DOCKER_ENABLED=false
  STACYVM_PROVIDERS_DEFAULT=native
  STACYVM_AUTH_ENABLED=true
  STACYVM_AUTH_API_KEY="$key"
  STACYVM_E2B_ENABLED=true
  STACYVM_DEFAULTS_IMAGE=busybox:e2b
)
(cd "$work/run" && env "${server_env[@]}" "$bin" image import --rootfs "$rootfs" --name busybox:e2b) >"$work/import.log" 2>&1 || {
  echo "e2b.sh: image import failed:" >&2
  cat "$work/import.log" >&2
  exit 1
}
(
  cd "$work/run"
  exec env "${server_env[@]}" "$bin" serve
) >"$work/server.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:$port"
ci_wait_live e2b.sh "$venvs/$first" "$server_pid" "$url" "$work/server.log" || exit 1

# A StacyVM template the scenario creates from (templateID -> template).
"$py" - "$url" "$key" <<'EOF'
import json, sys, urllib.request
url, key = sys.argv[1], sys.argv[2]
req = urllib.request.Request(
    url + "/api/v1/templates",
    data=json.dumps({"name": "busybox", "image": "busybox:e2b", "provider": "native"}).encode(),
    headers={"Content-Type": "application/json", "X-API-Key": key},
    method="POST",
)
urllib.request.urlopen(req, timeout=30)
EOF

failed=()
for v in $releases; do
  echo "--- e2b $v"
  set +e
  (cd "$root/tests/e2b" && env E2B_API_URL="$url" E2B_SANDBOX_URL="$url" E2B_API_KEY="$key" \
    E2B_TEST_TEMPLATE=busybox E2B_TEST_IMAGE=busybox:e2b \
    "$venvs/$v/bin/python" -m pytest -p no:cacheprovider -v -rfE "$@" .)
  rc=$?
  set -e
  if [ "$rc" = 5 ]; then
    echo "e2b.sh: e2b $v: pytest collected no tests" >&2
    rc=1
  fi
  [ "$rc" = 0 ] || failed+=("$v")
done

for v in $npm_releases; do
  echo "--- e2b (npm) $v"
  d="$venvs/npm-$v"
  # Next to its node_modules, so that `import 'e2b'` finds this release.
  cp "$root/tests/e2b/js/e2b_sdk.test.mjs" "$d/"
  set +e
  (cd "$d" && env PATH="$nodebin:$PATH" E2B_API_URL="$url" E2B_SANDBOX_URL="$url" E2B_API_KEY="$key" \
    E2B_TEST_TEMPLATE=busybox E2B_TEST_IMAGE=busybox:e2b \
    node --test --test-reporter=spec e2b_sdk.test.mjs)
  rc=$?
  set -e
  [ "$rc" = 0 ] || failed+=("npm-$v")
done

stop_server
if [ ${#failed[@]} -gt 0 ]; then
  echo "e2b.sh: failed on e2b ${failed[*]}; server log (last 200 lines):" >&2
  tail -n 200 "$work/server.log" >&2
  exit 1
fi
echo "e2b.sh: every release passed: $releases (PyPI), $npm_releases (npm)"
