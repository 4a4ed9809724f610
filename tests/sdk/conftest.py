"""Fixtures for the published-SDK compatibility suite.

The server under test is given by STACYVM_URL (e.g. http://127.0.0.1:7500).
Without it the suite skips locally and fails loudly when CI is set.
"""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
import stacyvm

PROVIDER = os.environ.get("STACYVM_SDK_PROVIDER", "mock")


def _server_url() -> str:
    url = os.environ.get("STACYVM_URL", "").rstrip("/")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("STACYVM_URL is not set: the SDK suite needs a running server", pytrace=False)
        pytest.skip("STACYVM_URL is not set (run scripts/ci/sdk.sh to start a server)")
    return url


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture()
def client(server_url):
    with stacyvm.Client(server_url) as c:
        yield c


@pytest.fixture()
def raw(server_url):
    """Plain HTTP client, only to verify what the SDK cannot show."""
    with httpx.Client(base_url=server_url + "/api/v1", timeout=30.0) as h:
        yield h


@pytest.fixture()
def spawned(client):
    """Spawn sandboxes through the SDK; destroy leftovers after the test."""
    made: list[stacyvm.Sandbox] = []

    def spawn(**kw) -> stacyvm.Sandbox:
        kw.setdefault("provider", PROVIDER)
        kw.setdefault("ttl", "10m")
        sb = client.spawn(**kw)
        made.append(sb)
        return sb

    yield spawn
    for sb in made:
        try:
            sb.destroy()
        except stacyvm.SandboxNotFound:
            pass


@pytest.fixture()
def sandbox(spawned) -> stacyvm.Sandbox:
    return spawned(metadata={"suite": "sdk"})


@pytest.fixture()
def unique() -> str:
    return "sdk-" + uuid.uuid4().hex[:10]
