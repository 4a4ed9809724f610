"""The published Python SDK (stacyvm==0.1.1, unmodified) against a live server.

Scenario: spawn -> exec (shell, argv) -> exec_stream -> files -> templates ->
destroy, plus the error cases the SDK exposes. Every call goes through the SDK;
the plain `raw` HTTP client is used only to look at things the SDK cannot show
(owner id, template update, raw-bytes files) and says so.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import datetime

import httpx
import pytest
import stacyvm
from stacyvm import SandboxNotFound, StacyVMError, Template

from conftest import PROVIDER

SANDBOX_ID = re.compile(r"^sb-[0-9a-f]{8,}$")


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def by_id(client: stacyvm.Client, sandbox_id: str):
    return next((s for s in client.list() if s.id == sandbox_id), None)


# --- system -----------------------------------------------------------------


def test_health_providers_pool(client):
    health = client.health()
    assert health["status"] == "ok"
    assert health["version"]

    providers = client.providers()
    names = {p["name"]: p for p in providers}
    assert PROVIDER in names, providers
    assert names[PROVIDER]["healthy"] is True

    assert client.pool_status()["enabled"] is False

    # Not exported at top level but public in the package: POST /providers/test
    # is a bodyless POST.
    from stacyvm.providers import ProviderManager

    assert ProviderManager(client._http).test()[PROVIDER] is True


def test_quota_summary_parses(client):
    summary = client.quota_summary()  # QuotaSummary(**json): no extra keys allowed
    assert isinstance(summary.total, int) and summary.total >= 0
    assert summary.with_max_sandboxes <= summary.total


def test_admission_decision_parses(client):
    decision = client.admission(image="alpine:latest", ttl="10m", provider=PROVIDER)
    assert decision.allowed is True
    assert isinstance(decision.queueable, bool)
    assert isinstance(decision.max_ttl, str)
    assert decision.max_sandboxes >= 0


# --- sandbox lifecycle ------------------------------------------------------


def test_spawn_get_list_extend_destroy(client, spawned):
    sb = spawned(image="alpine:latest", ttl="5m", memory_mb=256, vcpus=1, metadata={"task": "lifecycle"})
    assert SANDBOX_ID.match(sb.id), sb.id
    assert sb.state == "running"
    assert sb.provider == PROVIDER
    assert sb.image == "alpine:latest"

    again = client.get(sb.id)
    assert again.id == sb.id
    assert again.state == "running"

    info = by_id(client, sb.id)
    assert info is not None, "spawned sandbox missing from list()"
    assert info.state == "running"
    assert info.provider == PROVIDER
    assert info.memory_mb == 256
    assert info.metadata == {"task": "lifecycle"}
    created, expires = parse_ts(info.created_at), parse_ts(info.expires_at)
    assert 240 <= (expires - created).total_seconds() <= 360

    sb.extend_ttl("2h")
    extended = parse_ts(by_id(client, sb.id).expires_at)
    assert (extended - expires).total_seconds() > 3000
    assert sb.state == "running"  # extend_ttl refreshes the cached info

    sb.destroy()
    with pytest.raises(SandboxNotFound):
        client.get(sb.id)
    assert by_id(client, sb.id) is None
    with pytest.raises(SandboxNotFound):
        sb.destroy()  # already destroyed: 404


def test_context_manager_destroys(client):
    with client.spawn(provider=PROVIDER, ttl="5m") as sb:
        assert sb.exec("echo in").stdout == "in\n"
        sandbox_id = sb.id
    with pytest.raises(SandboxNotFound):
        client.get(sandbox_id)


def test_user_id_header_sets_owner(server_url, raw):
    with stacyvm.Client(server_url, user_id="sdk-alice") as alice:
        sb = alice.spawn(provider=PROVIDER, ttl="5m", owner_id="bob")
        try:
            body = raw.get(f"/sandboxes/{sb.id}").json()
            assert body["owner_id"] == "sdk-alice"  # X-User-ID overrides owner_id
        finally:
            sb.destroy()


def test_prune_returns_count(client):
    assert isinstance(client.prune(), int)


# --- exec -------------------------------------------------------------------


def test_exec_shell_result(sandbox):
    r = sandbox.exec("echo hello; echo oops >&2; exit 3")
    assert r.exit_code == 3  # non-zero exit is a result, not an error
    assert r.stdout == "hello\n"
    assert r.stderr == "oops\n"
    assert re.match(r"^[0-9.]+(ns|µs|us|ms|s|m)", r.duration), r.duration


def test_exec_shell_args_are_quoted(sandbox):
    r = sandbox.exec("printf '%s|'", args=["a b", "$HOME", "it's"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "a b|$HOME|it's|"


def test_exec_argv_never_uses_a_shell(sandbox):
    r = sandbox.exec("printf", args=["%s|", "a b", "$HOME", ";echo x"], mode="argv")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "a b|$HOME|;echo x|"


def test_exec_env_and_workdir(sandbox):
    sandbox.write_file("/work/here.txt", "found\n")
    r = sandbox.exec('cat here.txt; echo "$GREETING"', env={"GREETING": "hi there"}, workdir="/work")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "found\nhi there\n"


def test_exec_timeout_is_408(sandbox):
    started = time.monotonic()
    with pytest.raises(StacyVMError) as err:
        sandbox.exec("sleep 20", timeout="500ms")
    assert not isinstance(err.value, (SandboxNotFound, stacyvm.ProviderError))
    assert err.value.code == "timeout"
    assert time.monotonic() - started < 10
    assert sandbox.exec("echo alive").stdout == "alive\n"


def test_exec_bad_mode_is_400(sandbox):
    with pytest.raises(StacyVMError) as err:
        sandbox.exec("echo", mode="zsh")
    assert err.value.code == "bad_request"


# --- exec_stream ------------------------------------------------------------


def test_exec_stream_order_and_exit_record(sandbox):
    chunks = list(sandbox.exec_stream("echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three"))
    assert chunks, "no NDJSON records"
    assert chunks[-1].stream == "exit"  # the SDK yields the exit record as a chunk
    assert chunks[-1].data == ""
    assert all(c.stream in ("stdout", "stderr") for c in chunks[:-1]), chunks
    out = "".join(c.data for c in chunks if c.stream == "stdout")
    err = "".join(c.data for c in chunks if c.stream == "stderr")
    assert out == "one\nthree\n"
    assert err == "two\n"
    seq = [c.data for c in chunks if c.data]
    text = "".join(seq)
    assert text.index("one") < text.index("two") < text.index("three")


def test_exec_stream_is_live(sandbox):
    started = time.monotonic()
    first_at = None
    data = []
    for chunk in sandbox.exec_stream("echo first; sleep 2; echo last"):
        if chunk.stream == "stdout" and first_at is None:
            first_at = time.monotonic() - started
        data.append(chunk.data)
    total = time.monotonic() - started
    assert "".join(data) == "first\nlast\n"
    assert first_at is not None and first_at < 1.5, f"first chunk after {first_at}s (not streamed live)"
    assert total >= 2


def test_exec_stream_argv_env_workdir(sandbox):
    sandbox.write_file("/w/f.txt", "x")
    chunks = list(
        sandbox.exec_stream("sh", args=["-c", 'ls; printf "%s" "$V"'], mode="argv", env={"V": "v1"}, workdir="/w")
    )
    out = "".join(c.data for c in chunks if c.stream == "stdout")
    assert out == "f.txt\nv1"
    assert chunks[-1].stream == "exit"


# --- files ------------------------------------------------------------------


def test_files_full_cycle(sandbox):
    sandbox.write_file("/app/src/main.py", "print('hi')\n")  # parents created
    sandbox.write_file("/app/src/deep/util.py", "x = 1\n")
    sandbox.write_file("/app/notes.txt", "n\n")
    sandbox.write_file("/app/run.sh", "#!/bin/sh\necho ran\n", mode="755")

    assert sandbox.read_file("/app/src/main.py") == "print('hi')\n"

    entries = {e["name"]: e for e in sandbox.list_files("/app/src")}
    assert set(entries) == {"main.py", "deep"}
    main = entries["main.py"]
    assert main["path"] == "/app/src/main.py"
    assert main["size"] == 12
    assert main["is_dir"] is False
    assert isinstance(main["mode"], str) and main["mode"].endswith("644"), main
    parse_ts(main["mod_time"])
    assert entries["deep"]["is_dir"] is True

    st = sandbox.stat_file("/app/run.sh")
    assert st["name"] == "run.sh" and st["path"] == "/app/run.sh"
    assert st["mode"].endswith("755"), st
    assert sandbox.exec("./run.sh", workdir="/app").stdout == "ran\n"

    sandbox.chmod_file("/app/run.sh", "600")
    assert sandbox.stat_file("/app/run.sh")["mode"].endswith("600")
    assert sandbox.exec("./run.sh", workdir="/app").exit_code != 0

    found = sandbox.glob_files("/app/**/*.py")
    assert "/app/src/main.py" in found and "/app/src/deep/util.py" in found, found
    assert "/app/notes.txt" not in found and "/app/run.sh" not in found
    assert all(isinstance(p, str) for p in found)

    sandbox.move_file("/app/src/main.py", "/app/entry.py")
    assert sandbox.read_file("/app/entry.py") == "print('hi')\n"
    with pytest.raises(SandboxNotFound):
        sandbox.read_file("/app/src/main.py")

    sandbox.delete_file("/app/notes.txt")
    with pytest.raises(SandboxNotFound):
        sandbox.stat_file("/app/notes.txt")

    with pytest.raises(StacyVMError):
        sandbox.delete_file("/app/src")  # non-empty directory without recursive
    assert sandbox.stat_file("/app/src")["is_dir"] is True

    sandbox.delete_file("/app/src", recursive=True)
    with pytest.raises(SandboxNotFound):
        sandbox.stat_file("/app/src/deep/util.py")
    names = {e["name"] for e in sandbox.list_files("/app")}
    assert names == {"entry.py", "run.sh"}


def test_files_overwrite_and_empty(sandbox):
    sandbox.write_file("/f.txt", "first version, long\n")
    sandbox.write_file("/f.txt", "v2\n")
    assert sandbox.read_file("/f.txt") == "v2\n"
    sandbox.write_file("/empty", "")
    assert sandbox.read_file("/empty") == ""
    assert sandbox.stat_file("/empty")["size"] == 0


def test_files_binary_ish_content_via_sdk(sandbox):
    # The SDK sends JSON strings: NUL bytes, control characters and non-ASCII
    # must arrive byte-exact (UTF-8) and come back unchanged.
    content = "a\x00b\x01\x1f\x7f\ttab\r\ncrlf é ü 中文 😀\n" + "\x00" * 3
    sandbox.write_file("/bin/blob.dat", content)
    assert sandbox.read_file("/bin/blob.dat") == content
    assert sandbox.stat_file("/bin/blob.dat")["size"] == len(content.encode("utf-8"))
    r = sandbox.exec("wc -c < blob.dat", workdir="/bin")
    assert int(r.stdout.strip()) == len(content.encode("utf-8"))


def test_files_large_text(sandbox):
    content = ("0123456789abcdef" * 64 + "\n") * 1024  # ~1 MB
    sandbox.write_file("/big/one.txt", content)
    assert sandbox.read_file("/big/one.txt") == content
    assert sandbox.stat_file("/big/one.txt")["size"] == len(content)


def test_raw_bytes_put_get_contract(sandbox, raw):
    # Not reachable through the SDK (its README says: "for binary, hit the REST
    # API directly"), so this is the documented route users take.
    blob = bytes(range(256)) * 64
    put = raw.put(f"/sandboxes/{sandbox.id}/files", params={"path": "/raw/all.bin", "mode": "600"}, content=blob)
    assert put.status_code == 200, put.text
    assert put.json() == {"status": "written"}
    got = raw.get(f"/sandboxes/{sandbox.id}/files", params={"path": "/raw/all.bin"})
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/octet-stream")
    assert got.content == blob
    st = sandbox.stat_file("/raw/all.bin")
    assert st["size"] == len(blob) and st["mode"].endswith("600")


def test_files_path_traversal_never_reaches_host(sandbox):
    # The server must answer 400 or 404, never with a host file. (A server that
    # clamps ".." at the sandbox root reads the sandbox's own /etc/passwd, which
    # the mock sandbox does not have: 404 as well.)
    sandbox.exec("ln -s /etc/passwd escape-link && ln -s /etc escape-dir", workdir="/")
    for path in ("/../../../../etc/passwd", "/app/../../../etc/passwd", "/escape-link", "/escape-dir/passwd"):
        try:
            content = sandbox.read_file(path)
        except StacyVMError as e:
            assert isinstance(e, SandboxNotFound) or e.code == "bad_request", (path, e.code, str(e))
        else:
            pytest.fail(f"read_file({path!r}) answered 200 with {content[:40]!r}")

    host_target = f"/tmp/stacyvm-sdk-escape-{sandbox.id}.txt"
    try:
        sandbox.write_file("/../../../.." + host_target, "escaped")
    except StacyVMError as e:
        assert isinstance(e, SandboxNotFound) or e.code == "bad_request", e.code
    assert not os.path.exists(host_target), "a write escaped the sandbox onto the host"

    try:
        matches = sandbox.glob_files("/../../../etc/pass*")
    except StacyVMError as e:
        assert isinstance(e, SandboxNotFound) or e.code == "bad_request", e.code
    else:
        assert not any("passwd" in m for m in matches), matches


# --- templates --------------------------------------------------------------


def test_templates_cycle(client, raw, spawned, unique):
    created = client.templates.save(
        Template(name=unique, image="alpine:latest", memory_mb=256, vcpus=1, ttl="10m", metadata={"lang": "sh"})
    )
    assert created.name == unique
    assert created.image == "alpine:latest"
    assert created.memory_mb == 256
    assert created.metadata == {"lang": "sh"}
    assert created.ttl in ("10m", "10m0s"), created.ttl
    # provider was sent as "" (the SDK default): the server default applies
    assert isinstance(created.provider, str)

    assert unique in {t.name for t in client.templates.list()}
    got = client.templates.get(unique)
    assert (got.name, got.image, got.memory_mb, got.vcpus) == (unique, "alpine:latest", 256, 1)

    with pytest.raises(StacyVMError) as err:
        client.templates.save(Template(name=unique, image="alpine:latest"))
    assert err.value.code == "conflict"  # 409: POST never overwrites

    # Update: the SDK has no call for PUT /templates/{name}; use the API.
    put = raw.put(
        f"/templates/{unique}",
        json={"name": unique, "image": "alpine:latest", "memory_mb": 384, "vcpus": 1, "ttl": "20m", "metadata": {"lang": "py"}},
    )
    assert put.status_code == 200, put.text
    got = client.templates.get(unique)
    assert got.memory_mb == 384
    assert got.metadata == {"lang": "py"}

    sb = client.spawn_template(unique)  # bodyless POST
    spawned_ids = [sb.id]
    try:
        assert SANDBOX_ID.match(sb.id)
        assert sb.state == "running"
        info = by_id(client, sb.id)
        assert info.memory_mb == 384
        created_at, expires_at = parse_ts(info.created_at), parse_ts(info.expires_at)
        assert 1100 <= (expires_at - created_at).total_seconds() <= 1300  # template ttl 20m
        assert sb.exec("echo from-template").stdout == "from-template\n"

        sb2 = spawned(template=unique, ttl=None)
        spawned_ids.append(sb2.id)
        assert by_id(client, sb2.id).memory_mb == 384
    finally:
        for sid in spawned_ids:
            try:
                client.get(sid).destroy()
            except SandboxNotFound:
                pass

    client.templates.delete(unique)
    with pytest.raises(SandboxNotFound):
        client.templates.get(unique)
    assert unique not in {t.name for t in client.templates.list()}
    with pytest.raises(SandboxNotFound):
        client.spawn_template(unique)


# --- error cases ------------------------------------------------------------


def test_unknown_sandbox_raises_not_found(client):
    ghost_id = "sb-0000dead"
    with pytest.raises(SandboxNotFound) as err:
        client.get(ghost_id)
    assert err.value.code == "NOT_FOUND"
    ghost = stacyvm.Sandbox(client._http, ghost_id)
    for call in (
        lambda: ghost.exec("echo"),
        lambda: ghost.write_file("/x", "y"),
        lambda: ghost.read_file("/x"),
        lambda: ghost.list_files("/"),
        lambda: ghost.extend_ttl("1h"),
        ghost.destroy,
    ):
        with pytest.raises(SandboxNotFound):
            call()
    # SDK 0.1.1 bug: exec_stream calls handle_response on an unread streaming
    # response, so a 404 surfaces as httpx.ResponseNotRead, not SandboxNotFound.
    with pytest.raises((SandboxNotFound, httpx.ResponseNotRead)):
        list(ghost.exec_stream("echo"))


def test_destroyed_sandbox_is_not_found(spawned):
    sb = spawned()
    sb.write_file("/keep.txt", "k")
    sb.destroy()
    with pytest.raises(SandboxNotFound):
        sb.exec("echo")
    with pytest.raises(SandboxNotFound):
        sb.read_file("/keep.txt")


def test_bad_spawn_requests(client):
    with pytest.raises(StacyVMError) as err:
        client.spawn(provider=PROVIDER, ttl="forever")
    assert err.value.code == "bad_request"
    with pytest.raises(StacyVMError) as err:
        client.spawn(provider="no-such-provider")
    # 404 (provider does not exist) or 400, never a created sandbox
    assert isinstance(err.value, SandboxNotFound) or err.value.code == "bad_request"
    with pytest.raises(SandboxNotFound):
        client.spawn(provider=PROVIDER, template="no-such-template-sdk")


# --- async client -----------------------------------------------------------


def test_async_client_round_trip(server_url):
    async def scenario():
        async with stacyvm.AsyncClient(server_url) as ac:
            sb = await ac.spawn(provider=PROVIDER, ttl="5m")
            try:
                assert (await sb.exec("echo async")).stdout == "async\n"
                chunks = [c async for c in sb.exec_stream("echo a; echo b >&2")]
                assert chunks[-1].stream == "exit"
                assert "".join(c.data for c in chunks if c.stream == "stdout") == "a\n"
                assert "".join(c.data for c in chunks if c.stream == "stderr") == "b\n"
                await sb.write_file("/a.txt", "A")
                assert await sb.read_file("/a.txt") == "A"
                assert sb.id in {s.id for s in await ac.list()}
            finally:
                await sb.destroy()
            try:
                await ac.get(sb.id)
            except SandboxNotFound:
                return True
            return False

    assert asyncio.run(scenario()) is True
