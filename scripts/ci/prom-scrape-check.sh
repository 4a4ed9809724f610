#!/usr/bin/env bash
# Checks a Prometheus endpoint the way production will use it:
#   1. `promtool check metrics` on its output (format + lint), and
#   2. a real Prometheus on 127.0.0.1:<free port> scraping it every second,
#      then a PromQL histogram quantile over the scraped data.
#
# usage: prom-scrape-check.sh [--strict] URL
#   URL       e.g. http://127.0.0.1:7423/api/v1/metrics/prometheus
#   --strict  fail on every promtool lint finding; by default the findings
#             on the API v1 millisecond names (kept for old dashboards) are
#             tolerated, and nothing else is
# env:
#   STACYVM_API_KEY   sent as `X-API-Key` by curl and as
#                     `Authorization: Bearer` by Prometheus (Prometheus 2.42,
#                     Debian 12, cannot send custom headers), so the scrape
#                     only works if the server accepts the bearer form; test
#                     servers run with auth off
#   PROM_METRIC       histogram to query (default
#                     stacyvm_operation_duration_seconds)
#   PROM_WAIT_SECS    how long to wait for scrapes (default 30)
#   PROM_DASHBOARD    a Grafana dashboard JSON: every PromQL expression in
#                     it must run, and every metric it names must be in the
#                     endpoint's output
#   PROM_REQUIRE_RATE=1  also require the rate()-based quantile to be a
#                     number (needs operations recorded while scraping)
# Needs promtool, prometheus (scripts/ci/prometheus.sh), curl, python3.
set -euo pipefail

strict=0
if [ "${1:-}" = "--strict" ]; then strict=1; shift; fi
url="${1:?usage: prom-scrape-check.sh [--strict] URL}"
metric="${PROM_METRIC:-stacyvm_operation_duration_seconds}"
wait_secs="${PROM_WAIT_SECS:-30}"
legacy_names='^(stacyvm_operation_latency_milliseconds_(sum|count|max)|stacyvm_provider_health_latency_milliseconds) use base unit "seconds" instead of "milliseconds"$'

for tool in promtool prometheus curl python3; do
    command -v "$tool" >/dev/null || { echo "prom-scrape-check: $tool not found (run scripts/ci/prometheus.sh)" >&2; exit 2; }
done

work="$(mktemp -d)"
prom_pid=""
cleanup() {
    if [ -n "$prom_pid" ]; then
        kill "$prom_pid" 2>/dev/null || true
        wait "$prom_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

curl_args=(-fsS --max-time 10)
if [ -n "${STACYVM_API_KEY:-}" ]; then curl_args+=(-H "X-API-Key: $STACYVM_API_KEY"); fi

# --- 1. promtool -----------------------------------------------------------
curl "${curl_args[@]}" -D "$work/headers" -o "$work/metrics.txt" "$url"
content_type="$(tr -d '\r' <"$work/headers" | awk -F': ' 'tolower($1)=="content-type"{print $2}' | tail -1)"
echo "prom-scrape-check: content-type: ${content_type:-<none>}"
case "$content_type" in
    text/plain*) ;;
    *) echo "prom-scrape-check: expected text/plain content type" >&2; exit 1 ;;
esac
set +e
promtool check metrics <"$work/metrics.txt" >"$work/promtool.out" 2>&1
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    unexpected="$(grep -v -E "$legacy_names" "$work/promtool.out" | grep -v '^[[:space:]]*$' || true)"
    if [ "$rc" -ne 3 ] || [ "$strict" = 1 ] || [ -n "$unexpected" ]; then
        echo "prom-scrape-check: promtool check metrics failed (exit $rc):" >&2
        cat "$work/promtool.out" >&2
        exit 1
    fi
    echo "prom-scrape-check: promtool: only the API v1 millisecond-name findings (tolerated):"
    sed 's/^/  /' "$work/promtool.out"
else
    echo "prom-scrape-check: promtool check metrics: clean"
fi

# --- 2. a real Prometheus scraping the target ------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 - "$url" "$work/prometheus.yml" "${STACYVM_API_KEY:-}" <<'PY'
import json, sys, urllib.parse
url, out, key = sys.argv[1:4]
u = urllib.parse.urlsplit(url)
job = {
    "job_name": "stacyvm",
    "scrape_interval": "1s",
    "scrape_timeout": "1s",
    "scheme": u.scheme or "http",
    "metrics_path": u.path or "/",
    "static_configs": [{"targets": [u.netloc]}],
}
params = urllib.parse.parse_qs(u.query)
if params:
    job["params"] = params
if key:
    job["authorization"] = {"type": "Bearer", "credentials": key}
# JSON is valid YAML.
json.dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
           "scrape_configs": [job]}, open(out, "w"), indent=1)
PY
promtool check config "$work/prometheus.yml" >/dev/null

prometheus \
    --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$port" \
    --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
api="http://127.0.0.1:$port/api/v1"

query() { curl -fsS --max-time 5 --get --data-urlencode "query=$1" "$api/query"; }
# Prints the first result value of a query response on stdin, or nothing.
first_value() {
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}

deadline=$((SECONDS + wait_secs))
until curl -fsS --max-time 2 "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; do
    if ! kill -0 "$prom_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "prom-scrape-check: prometheus did not start:" >&2
        cat "$work/prometheus.log" >&2
        exit 1
    fi
    sleep 0.2
done

# Wait for at least 3 successful scrapes, so rate() over them has data.
scrapes=""
until [ "${scrapes:-0}" -ge 3 ] 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "prom-scrape-check: no successful scrapes within ${wait_secs}s" >&2
        curl -fsS "$api/targets" >&2 || true
        exit 1
    fi
    sleep 1
    scrapes="$(query 'sum_over_time(up{job="stacyvm"}[1m])' | first_value)"
    scrapes="${scrapes%%.*}"
done
echo "prom-scrape-check: prometheus on 127.0.0.1:$port scraped the target $scrapes times"

q_total="histogram_quantile(0.99, sum by (le) (${metric}_bucket))"
q_rate="histogram_quantile(0.99, sum by (le) (rate(${metric}_bucket[1m])))"
total="$(query "$q_total" | first_value)"
rate="$(query "$q_rate" | first_value)"
echo "prom-scrape-check: $q_total = ${total:-<empty>}"
echo "prom-scrape-check: $q_rate = ${rate:-<empty>}"

is_number() { python3 -c 'import math,sys; v=float(sys.argv[1]); sys.exit(0 if math.isfinite(v) else 1)' "$1" 2>/dev/null; }
if ! is_number "${total:-x}"; then
    echo "prom-scrape-check: expected a numeric quantile of $metric" >&2
    exit 1
fi
if [ "${PROM_REQUIRE_RATE:-0}" = 1 ] && ! is_number "${rate:-x}"; then
    echo "prom-scrape-check: expected a numeric rate-based quantile (were operations recorded while scraping?)" >&2
    exit 1
fi
if [ -n "${PROM_DASHBOARD:-}" ]; then
    python3 - "$PROM_DASHBOARD" "$api" "$work/metrics.txt" <<'PY'
import json, re, sys, urllib.parse, urllib.request
dash_path, api, metrics_path = sys.argv[1:4]
exposed = set()
for line in open(metrics_path):
    if line.startswith("# TYPE "):
        # A declared family counts as exposed even with no series yet
        # (per-sandbox gauges on a server without sandboxes).
        name, kind = line.split()[2:4]
        exposed.add(name)
        if kind == "histogram":
            exposed.update(name + s for s in ("_bucket", "_sum", "_count"))
        continue
    if line.startswith("#") or not line.strip():
        continue
    exposed.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
def exprs(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        if isinstance(node.get("definition"), str) and "label_values" in node["definition"]:
            m = re.search(r"label_values\((.*),\s*\w+\)$", node["definition"])
            if m:
                yield m.group(1)
        for v in node.values():
            yield from exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from exprs(v)
failed = []
names = set()
count = 0
for expr in exprs(json.load(open(dash_path))):
    count += 1
    q = (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
             .replace("$job", ".*").replace("$instance", ".*").replace("$provider", ".*"))
    names.update(re.findall(r"\b((?:stacyvm|process)_[a-z0-9_]+)", q))
    url = api + "/query?" + urllib.parse.urlencode({"query": q})
    try:
        body = json.load(urllib.request.urlopen(url, timeout=5))
        if body.get("status") != "success":
            failed.append((expr, body))
    except Exception as e:  # HTTP 400 = PromQL parse error
        failed.append((expr, getattr(e, "read", lambda: str(e))()))
missing = sorted(n for n in names if n not in exposed)
for expr, err in failed:
    print(f"prom-scrape-check: dashboard query failed: {expr}: {err}", file=sys.stderr)
for n in missing:
    print(f"prom-scrape-check: dashboard uses {n}, which the endpoint does not expose", file=sys.stderr)
if failed or missing:
    sys.exit(1)
print(f"prom-scrape-check: dashboard: {count} queries run, {len(names)} metric names all exposed")
PY
fi
echo "prom-scrape-check: ok"
