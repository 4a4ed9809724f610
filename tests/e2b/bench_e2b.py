"""Times, through the official `e2b` Python SDK, `Sandbox.create()` to the
first `commands.run("true")` returning, and an envd command round trip
against the same command through API v1's sync exec. Prints medians.

Usage (a server with e2b.enabled; scripts/ci/e2b.sh sets these up):
  E2B_API_URL=... E2B_SANDBOX_URL=... E2B_API_KEY=... python bench_e2b.py [N]
"""

import json
import os
import statistics
import sys
import time
import urllib.request

from e2b import Sandbox

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
TEMPLATE = os.environ.get("E2B_TEST_TEMPLATE", "busybox")
URL = os.environ["E2B_API_URL"]
KEY = os.environ["E2B_API_KEY"]


def ms(xs):
    xs = sorted(xs)
    return f"p50 {statistics.median(xs) * 1000:.1f} ms, p90 {xs[int(len(xs) * 0.9) - 1] * 1000:.1f} ms (n={len(xs)})"


Sandbox.create(template=TEMPLATE).kill()  # warm-up
first = []
for _ in range(N):
    t0 = time.perf_counter()
    s = Sandbox.create(template=TEMPLATE)
    s.commands.run("true")
    first.append(time.perf_counter() - t0)
    s.kill()
print("create -> first commands.run('true'):", ms(first))

s = Sandbox.create(template=TEMPLATE)
try:
    envd = []
    for _ in range(N * 5):
        t0 = time.perf_counter()
        s.commands.run("true")
        envd.append(time.perf_counter() - t0)
    v1 = []
    body = json.dumps({"command": "/bin/sh", "args": ["-c", "true"], "mode": "argv"}).encode()
    for _ in range(N * 5):
        req = urllib.request.Request(
            f"{URL}/api/v1/sandboxes/{s.sandbox_id}/exec",
            data=body,
            headers={"Content-Type": "application/json", "X-API-Key": KEY},
            method="POST",
        )
        t0 = time.perf_counter()
        urllib.request.urlopen(req, timeout=30).read()
        v1.append(time.perf_counter() - t0)
    print("envd commands.run('true'):", ms(envd))
    print("API v1 exec of the same:", ms(v1))
    print(f"envd overhead at the median: {(statistics.median(envd) - statistics.median(v1)) * 1000:.2f} ms")
finally:
    s.kill()
