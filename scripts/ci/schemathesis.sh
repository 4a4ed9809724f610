#!/usr/bin/env bash
# Fuzzes a running `stacyvm serve` from the committed OpenAPI document
# (docs/openapi.json) with schemathesis: first the mock provider on every
# route, then the native provider on the sandbox, exec and file routes.
#
# Pass means: no 5xx, no response that violates the document (status,
# content type, schema, headers), no request that hangs (each one has a
# timeout), and the server still answering /live afterwards. Each run is
# bounded by --max-time (about 3 minutes for both) and a hard wall clock.
# tests/schemathesis/hooks.py points most `/sandboxes/{id}/...` requests
# at a live sandbox and every spawn at the local test image.
#
# Usage: scripts/ci/schemathesis.sh PATH/TO/stacyvm [mock|native ...]
# Idempotent; installs python3-venv and iproute2 (root, Debian) and the
# pinned schemathesis (tests/schemathesis/requirements.txt) into a venv.
# The mock provider runs (fuzzed) commands as host processes, so as root its
# server and schemathesis run in their own network namespace (loopback
# only: no egress) and PID namespace (nothing outlives the run, nothing
# outside can be signalled), the server as `nobody`. The native run needs
# root, crun, the agent and the local registry (scripts/ci/native.sh,
# registry.sh); without them it fails under CI=true and is skipped
# otherwise. Its sandboxes have no network (`network: none`).
# Env: STACYVM_ST_VENV (default ~/.cache/stacyvm/schemathesis-venv),
#      STACYVM_ST_MOCK_SECONDS (70), STACYVM_ST_NATIVE_SECONDS (50),
#      STACYVM_ST_REPORT_DIR (JUnit reports; default: none),
#      STACYVM_ST_IMAGE (native image; default the local registry's busybox).
set -euo pipefail

bin=${1:?usage: scripts/ci/schemathesis.sh PATH/TO/stacyvm [mock|native ...]}
shift
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(mock native)
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -x "$bin" ] || { echo "schemathesis.sh: server binary $bin is not executable" >&2; exit 1; }
doc=$root/docs/openapi.json
# shellcheck source=lib/server.sh
. "$root/scripts/ci/lib/server.sh"

# Set when this script re-runs itself inside the mock run's namespaces.
inside_ns=${STACYVM_ST_IN_NS:-}
venv=${STACYVM_ST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stacyvm/schemathesis-venv}
if [ -z "$inside_ns" ]; then
  ci_venv schemathesis.sh "$venv" "$root/tests/schemathesis/requirements.txt"
  if [ "$(id -u)" = 0 ] && ! command -v ip >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends iproute2 >/dev/null
  fi
fi

ci_work
chmod 755 "$work"

# write_config NAME PROVIDER MAX_SANDBOXES IMAGE [provider lines...]: the run's
# stacyvm.yaml, with bounds that keep a fuzzer from holding the host
# (short exec timeouts, few and small sandboxes, short TTLs; sandboxes go
# with the server). Sets $url.
write_config() {
  local name=$1 provider=$2 max=$3 image=$4
  shift 4
  local dir=$work/$name p
  mkdir -p "$dir/run" "$dir/home" "$dir/data"
  url=http://127.0.0.1:$(ci_free_port "$venv")
  {
    echo "server: {port: ${url##*:}, destroy_on_shutdown: true}"
    echo "database: {path: $dir/data/stacyvm.db}"
    echo "providers:"
    echo "  default: $provider"
    for p in mock docker native; do
      [ "$p" = "$provider" ] || echo "  $p: {enabled: false}"
    done
    echo "  $provider:"
    echo "    enabled: true"
    printf '    %s\n' "$@"
    echo "images: {insecure_registries: [\"127.0.0.1:5000\"]}"
    echo "defaults:"
    [ -z "$image" ] || echo "  image: $image"
    echo "  max_exec_timeout: 10s"
    echo "  default_exec_timeout: 5s"
    echo "  max_sandboxes: $max"
    echo "  max_ttl: 5m"
    echo "  ttl: 2m"
    echo "  max_memory_mb: 512"
    echo "  max_vcpus: 2"
  } >"$dir/stacyvm.yaml"
}

# start_server NAME [wrapper...]: runs the server from an empty directory
# with a private HOME and waits for /live.
start_server() {
  local name=$1
  shift
  local dir=$work/$name
  (
    cd "$dir/run"
    exec "$@" env HOME="$dir/home" "$bin" serve --config "$dir/stacyvm.yaml"
  ) >"$dir/server.log" 2>&1 &
  server_pid=$!
  ci_wait_live "schemathesis.sh ($name)" "$venv" "$server_pid" "$url" "$dir/server.log"
}

# fuzz NAME SECONDS [schemathesis filters...]
fuzz() {
  local name=$1 seconds=$2
  shift 2
  local report=()
  if [ -n "${STACYVM_ST_REPORT_DIR:-}" ]; then
    mkdir -p "$STACYVM_ST_REPORT_DIR"
    report=(--report junit --report-junit-path "$STACYVM_ST_REPORT_DIR/schemathesis-$name.xml")
  fi
  local rc=0
  # From the work directory: schemathesis keeps its cache in the cwd. The
  # hard wall clock leaves room for the last requests and the summary.
  # Hibernate is left out: on every provider today it answers the
  # documented 501 `not_implemented` (CRIU does not work on the CI kernel),
  # which the not_a_server_error check counts as a failure; api_pause.rs
  # tests that route.
  (cd "$work" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$root/tests/schemathesis" \
    STACYVM_ST_URL=$url timeout --kill-after=10 $((seconds + 60)) \
    "$venv/bin/st" run "$doc" --url "$url/api/v1" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
      --exclude-path '/sandboxes/{id}/hibernate' \
      --max-time "$seconds" --request-timeout 20 --workers 2 --seed 7423 \
      --suppress-health-check all --no-color \
      "${report[@]}" "$@") || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "schemathesis.sh: the $name run did not end in time (hang?)" >&2
  fi
  if ! ci_live "$venv" "$url"; then
    echo "schemathesis.sh: the $name server no longer answers /live after the run" >&2
    rc=1
  fi
  if [ "$rc" != 0 ]; then
    echo "schemathesis.sh: $name run failed (exit $rc); server log (last 100 lines):" >&2
    tail -n 100 "$work/$name/server.log" >&2
  fi
  return "$rc"
}

run_mock() {
  write_config mock mock 300 "" "base_dir: $work/mock/data/mock"
  local wrap=()
  if [ "$(id -u)" = 0 ]; then
    # The mock runs generated commands as host processes: not as root.
    chown -R 65534:65534 "$work/mock"
    wrap=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  fi
  start_server mock "${wrap[@]}" || return 1
  local rc=0
  fuzz mock "${STACYVM_ST_MOCK_SECONDS:-70}" || rc=$?
  stop_server
  return "$rc"
}

# mock_isolated: run_mock in fresh network and PID namespaces (as root).
mock_isolated() {
  if [ "$(id -u)" != 0 ] || [ -n "$inside_ns" ]; then
    [ -z "$inside_ns" ] || ip link set lo up
    run_mock
    return
  fi
  STACYVM_ST_IN_NS=1 unshare --net --pid --fork --kill-child --mount-proc \
    bash "$0" "$bin" mock
}

run_native() {
  local image=${STACYVM_ST_IMAGE:-127.0.0.1:5000/stacyvm-test/busybox:latest}
  local missing=
  [ "$(id -u)" = 0 ] || missing="root"
  command -v crun >/dev/null || missing="$missing crun"
  [ -x /usr/local/lib/stacyvm/stacyvm-agent ] || [ -n "${STACYVM_AGENT:-}" ] || missing="$missing agent"
  "$venv/bin/python" -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:5000/v2/", timeout=2)' \
    >/dev/null 2>&1 || missing="$missing registry"
  if [ -n "$missing" ]; then
    if [ -n "${CI:-}" ]; then
      echo "schemathesis.sh: the native run needs:$missing (scripts/ci/native.sh, registry.sh)" >&2
      return 1
    fi
    echo "schemathesis.sh: skipping the native run, missing:$missing" >&2
    return 0
  fi
  write_config native native 40 "$image" "data_dir: $work/native/data/native" "network: none"
  start_server native || return 1
  local rc=0
  STACYVM_ST_IMAGE=$image fuzz native "${STACYVM_ST_NATIVE_SECONDS:-50}" \
    --include-tag sandboxes --include-tag exec --include-tag files || rc=$?
  stop_server
  return "$rc"
}

status=0
for r in "${runs[@]}"; do
  case "$r" in
    mock) mock_isolated || status=1 ;;
    native) run_native || status=1 ;;
    *) echo "schemathesis.sh: unknown run $r (mock, native)" >&2; exit 2 ;;
  esac
done
exit "$status"
