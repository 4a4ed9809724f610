"""Schemathesis hooks of scripts/ci/schemathesis.sh.

- Spawns name the local test image (STACYVM_ST_IMAGE) instead of a
  generated one: on the native provider any other name would be a pull from
  a registry this host cannot (and must not) reach, which tests the network,
  not the API.
- Most requests to `/sandboxes/{id}/...` go to a sandbox that exists, so the
  fuzzer reaches exec and the file operations instead of answering 404 for
  a random id. The sandbox is spawned on first use (and again after a
  fuzzed request destroyed it or let it expire). One request in four keeps
  its generated id, and DELETE /sandboxes/{id} keeps it seven times in
  eight.

Everything else stays as schemathesis generates it.
"""

import atexit
import json
import os
import sys
import random
import threading
import urllib.error
import urllib.request

import schemathesis

SPAWNS = {("POST", "/sandboxes"), ("POST", "/sandboxes/admission")}
IMAGE = os.environ.get("STACYVM_ST_IMAGE", "")
URL = os.environ.get("STACYVM_ST_URL", "")

_lock = threading.Lock()
_sandbox = None
_rng = random.Random(7423)
_stats = {"aimed": 0, "spawned": 0}


@atexit.register
def _report():
    if URL:
        print(
            f"hooks: {_stats['aimed']} requests aimed at a live sandbox, "
            f"{_stats['spawned']} sandboxes spawned for them",
            file=sys.stderr,
        )


def _spawn():
    body = {}
    if IMAGE:
        body["image"] = IMAGE
    req = urllib.request.Request(
        URL + "/api/v1/sandboxes",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["id"]
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        # At capacity or the like: this case keeps its generated id.
        return None


def _live_sandbox():
    global _sandbox
    with _lock:
        if _sandbox is None:
            _sandbox = _spawn()
            _stats["spawned"] += _sandbox is not None
        return _sandbox


@schemathesis.hook
def map_case(context, case):
    op = context.operation
    if op is None:
        return case
    key = (op.method.upper(), op.path)
    if IMAGE and key in SPAWNS and isinstance(case.body, dict) and "image" in case.body:
        case.body["image"] = IMAGE
    if URL and op.path.startswith("/sandboxes/{id}") and isinstance(case.path_parameters, dict):
        keep = 7 / 8 if key == ("DELETE", "/sandboxes/{id}") else 1 / 4
        with _lock:
            roll = _rng.random()
        if roll >= keep:
            sandbox = _live_sandbox()
            if sandbox is not None:
                case.path_parameters["id"] = sandbox
                with _lock:
                    _stats["aimed"] += 1
    return case


def _gone(sandbox):
    try:
        with urllib.request.urlopen(f"{URL}/api/v1/sandboxes/{sandbox}", timeout=10) as resp:
            return json.load(resp).get("state") in ("destroyed", "error")
    except urllib.error.HTTPError as e:
        return e.code == 404
    except (urllib.error.URLError, OSError, ValueError):
        return False


@schemathesis.hook
def after_call(context, case, response):
    """A 404 for the live sandbox may mean a fuzzed request destroyed it
    (or shortened its TTL); then the next case spawns another."""
    global _sandbox
    params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    sandbox = params.get("id")
    if response is None or response.status_code != 404 or sandbox is None or sandbox != _sandbox:
        return
    if _gone(sandbox):
        with _lock:
            if _sandbox == sandbox:
                _sandbox = None
