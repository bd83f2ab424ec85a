"""Limits against abuse (README "Limits"): open sessions in all, per client address and per service,
the size of a request head, and the handshake time-out against slowloris clients.

Session limits are checked before the gateway connects anywhere: every session here goes to the
scripted upstream with a token of its own in the path, so a refused session is shown to have cost no
upstream connect. Clients from other addresses bind 127.0.0.2 and 127.0.0.3 (loopback).
"""

from __future__ import annotations

import asyncio
import os
import resource
import select
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import (
    HOST,
    RawWs,
    connect,
    demo_routes,
    expect_close,
    gateway_config,
    recv,
    run,
    service,
    start_gateway,
    upgrade_request,
    wait_until,
)
from support import serve_until_exit as serve

PER_CLIENT_REASON = "Too many sessions from this client address (server.limits.maxSessionsPerClient: 3)"
TOTAL_REASON = "Too many sessions on the gateway (server.limits.maxSessions: 2)"
PER_SERVICE_REASON = "Too many sessions to service scripted (server.limits.maxSessionsPerService: 2)"


def scripted_services(scripted, refused_port: int | None = None) -> list[dict]:
    """Two services on the scripted upstream, so a per-service limit can be seen to be per service,
    and one nobody listens for when `refused_port` is given."""
    services = [
        service("scripted", [(HOST, scripted.port)], {"ws_v1": ("ws/v1", "/scripted/ws")}),
        service("other", [(HOST, scripted.port)], {"ws_v1": ("ws/v1", "/scripted/ws")}),
    ]
    if refused_port is not None:
        services.append(service("refused", [(HOST, refused_port)], {"ws_v1": ("ws/v1", "/refused/ws")}))
    return services


def limits_gateway(log_dir, scripted, name: str, mode: str = "close-code", refused_port: int | None = None, **limits):
    config = gateway_config(scripted_services(scripted, refused_port), mode)
    config["server"]["limits"] = limits
    return start_gateway(log_dir, name, config)


@pytest.fixture(scope="module")
def per_client(log_dir, scripted, refused_port):
    gw = limits_gateway(log_dir, scripted, "limit-per-client", refused_port=refused_port, maxSessionsPerClient=3)
    yield gw
    gw.child.stop()


@pytest.fixture(scope="module")
def per_client_http(log_dir, scripted):
    gw = limits_gateway(log_dir, scripted, "limit-per-client-http", "http-status", maxSessionsPerClient=3)
    yield gw
    gw.child.stop()


@pytest.fixture(scope="module")
def total(log_dir, scripted):
    gw = limits_gateway(log_dir, scripted, "limit-total", maxSessions=2)
    yield gw
    gw.child.stop()


@pytest.fixture(scope="module")
def per_service(log_dir, scripted):
    gw = limits_gateway(log_dir, scripted, "limit-per-service", "http-status", maxSessionsPerService=2)
    yield gw
    gw.child.stop()


def session_path(service_id: str = "scripted") -> tuple[str, str]:
    token = uuid.uuid4().hex
    return f"/{service_id}/ws/v1/{token}", token


async def echoes(ws, text: str) -> bool:
    """Whether `ws` is a relayed session (the scripted upstream echoes) rather than a refused one."""
    try:
        await ws.send(text)
        return await recv(ws) == text
    except ConnectionClosed:
        return False


async def assert_echo(sessions) -> None:
    for i, ws in enumerate(sessions):
        assert await echoes(ws, f"still open {i}"), f"session {i} no longer relays"


async def open_when_admitted(gw, path: str, timeout: float = 10.0, **kwargs):
    """Opens a session once the gateway admits it: a session that just closed is given back when its
    relay has ended, a moment after the client saw the close."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws = await connect(gw, path, **kwargs)
        except InvalidStatus:
            ws = None
        if ws is not None:
            if await echoes(ws, "admitted"):
                return ws
            await ws.close()
        assert time.monotonic() < deadline, f"no session admitted on {path} within {timeout}s"
        await asyncio.sleep(0.05)


async def close_all(sessions) -> None:
    for ws in sessions:
        await ws.close()


async def refused_status(gw, path: str, **kwargs) -> tuple[int, str]:
    """The status and body of an http-status refusal."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(gw, path, **kwargs):
            pass
    return info.value.response.status_code, bytes(info.value.response.body).decode()


# ------------------------------------------------------------- per client


def test_per_client_limit_refuses_the_next_session_with_1008(per_client, scripted):
    paths = [session_path() for _ in range(4)]

    async def scenario():
        held = [await connect(per_client, path) for path, _ in paths[:3]]
        await assert_echo(held)
        refused = await connect(per_client, paths[3][0])
        assert await expect_close(refused) == (1008, PER_CLIENT_REASON)
        # The first three keep working after the refusal.
        await assert_echo(held)
        # Another address is another client.
        other = await connect(per_client, session_path()[0], local_addr=("127.0.0.2", 0))
        await assert_echo([other])
        await close_all([other, held[0]])
        # Once one of its sessions has ended, the client may open a new one.
        replacement = await open_when_admitted(per_client, session_path()[0])
        await assert_echo(held[1:] + [replacement])
        await close_all(held[1:] + [replacement])

    run(scenario())
    assert [r.path for r in scripted.find(paths[3][1])] == [], "the refused session reached the service"
    assert all(len(scripted.find(token)) == 1 for _, token in paths[:3])


def test_every_way_a_session_ends_gives_its_count_back(per_client, scripted):
    # Each way is taken more often than the limit of 3 allows, so one leaked count per session would
    # leave the client unable to open a session at the end.
    async def failed_connects():
        for _ in range(4):
            ws = await connect(per_client, session_path("refused")[0])
            code, _ = await expect_close(ws)
            assert code == 1011

    async def service_closes():
        for _ in range(4):
            ws = await open_when_admitted(per_client, session_path()[0])
            await ws.send("close 4000 done")
            assert await expect_close(ws) == (4000, "done")

    run(failed_connects())
    run(service_closes())
    # Clients that vanish without a close, before and after their session opened.
    for _ in range(4):
        vanishing = socket.create_connection((HOST, per_client.port))
        vanishing.sendall(upgrade_request(per_client.port, session_path()[0]))
        vanishing.close()
    for _ in range(4):
        raw = RawWs(per_client.port, session_path()[0])
        raw.close()

    async def full_share():
        held = [await open_when_admitted(per_client, session_path()[0]) for _ in range(3)]
        await assert_echo(held)
        await close_all(held)

    run(full_share())


def test_per_client_limit_in_http_status_mode_is_429(per_client_http, scripted):
    path, token = session_path()

    async def scenario():
        held = [await connect(per_client_http, session_path()[0]) for _ in range(3)]
        status, body = await refused_status(per_client_http, path)
        await assert_echo(held)
        await close_all(held)
        return status, body

    assert run(scenario()) == (429, PER_CLIENT_REASON + "\n")
    assert scripted.find(token) == []


# ------------------------------------------------------------------ total


def test_total_limit_refuses_any_client_with_1013(total, scripted):
    refused_path, refused_token = session_path("other")

    async def scenario():
        held = [
            await connect(total, session_path()[0]),
            await connect(total, session_path("other")[0], local_addr=("127.0.0.2", 0)),
        ]
        # A third client address, and a service nobody else uses: only the total is reached.
        refused = await connect(total, refused_path, local_addr=("127.0.0.3", 0))
        assert await expect_close(refused) == (1013, TOTAL_REASON)
        await assert_echo(held)
        await held[1].close()
        replacement = await open_when_admitted(total, session_path()[0], local_addr=("127.0.0.3", 0))
        await assert_echo([held[0], replacement])
        await close_all([held[0], replacement])

    run(scenario())
    assert scripted.find(refused_token) == []


# ------------------------------------------------------------ per service


def test_per_service_limit_refuses_with_503_and_spares_other_services(per_service, scripted):
    refused_path, refused_token = session_path()

    async def scenario():
        held = [await connect(per_service, session_path()[0]) for _ in range(2)]
        status, body = await refused_status(per_service, refused_path)
        # Another service is counted on its own.
        other = await connect(per_service, session_path("other")[0])
        await assert_echo(held + [other])
        await held[0].close()
        replacement = await open_when_admitted(per_service, session_path()[0])
        await assert_echo([held[1], replacement])
        await close_all([held[1], replacement, other])
        return status, body

    assert run(scenario()) == (503, PER_SERVICE_REASON + "\n")
    assert scripted.find(refused_token) == []


# ------------------------------------------------------ limits at start


def test_default_max_sessions_comes_from_the_open_file_limit(gateway):
    # The gateway inherits this process's limit; each session holds two descriptors, a tenth (at
    # least 100) is kept for everything else.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = 2**64 - 1 if soft == resource.RLIM_INFINITY else soft
    expected = max(1, (soft - max(soft // 10, 100)) // 2)
    log = wait_until(lambda: [l for l in gateway.child.stderr_text(1 << 24).splitlines() if "session limits" in l], 10,
                     "the session limits in the gateway's log")
    assert "derived from the open-file limit" in log[0] and f"max_sessions={expected} " in log[0], log[0]
    assert f"open_file_limit={soft}" in log[0] and "max_sessions_per_client=1000" in log[0], log[0]


def test_configured_limits_are_logged(total):
    log = wait_until(lambda: [l for l in total.child.stderr_text(1 << 24).splitlines() if "session limits" in l], 10,
                     "the session limits in the gateway's log")
    assert "(maxSessions configured)" in log[0] and "max_sessions=2 " in log[0], log[0]


@pytest.mark.parametrize(
    "key, value",
    [
        ("server.limits.maxSessions", 0),
        ("server.limits.maxSessions", -1),
        ("server.limits.maxSessions", "lots"),
        ("server.limits.maxSessionsPerClient", 0),
        ("server.limits.maxSessionsPerClient", "1.5"),
        ("server.limits.maxSessionsPerService", -2),
        ("server.maxHttpHeaderSize", "huge"),
        ("server.maxHttpHeaderSize", "8KiB"),
        ("server.maxHttpHeaderSize", 0),
        ("server.maxHttpHeaderSize", -16384),
        ("server.handshakeTimeout", "0s"),
        ("server.handshakeTimeout", "-1s"),
        ("server.handshakeTimeout", "soon"),
    ],
)
def test_invalid_limits_stop_the_gateway_naming_the_key(tmp_path, key, value):
    config = gateway_config([])
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert f"wsgate: {key}: `{value}`" in stderr, stderr
    assert b"listening" not in result.stdout


def test_invalid_limit_from_the_environment_names_the_key(tmp_path):
    result = serve(tmp_path, gateway_config([]), env={"SERVER_LIMITS_MAXSESSIONSPERCLIENT": "0"})
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "server.limits.maxSessionsPerClient: `0` is not a number of sessions of at least 1" in stderr, stderr


# ------------------------------------------------------------ header size


@pytest.fixture(scope="module")
def small_heads(log_dir, demo):
    """maxHttpHeaderSize at its floor, 16KiB."""
    config = gateway_config([service("discoverableclient", [(HOST, demo.port)], demo_routes())])
    config["server"]["maxHttpHeaderSize"] = "16KiB"
    gw = start_gateway(log_dir, "small-heads", config)
    yield gw
    gw.child.stop()


def header_echo(gw, headers: dict[str, str]) -> dict:
    """The handshake headers the demo service received, as it echoes them."""
    import json

    async def scenario():
        async with connect(gw, "/discoverableclient/ws/v1/header", additional_headers=headers) as ws:
            await ws.send("headers please")
            return json.loads(await recv(ws))["headers"]

    return run(scenario())


def test_large_headers_within_the_limit_reach_the_service(gateway, small_heads):
    # The Zowe case: three 3,000-byte headers, even at the smallest limit.
    zowe = {f"X-Large-{i}": chr(ord("a") + i) * 3000 for i in range(1, 4)}
    for gw in (gateway, small_heads):
        received = header_echo(gw, zowe)
        for name, value in zowe.items():
            assert received.get(name.lower()) == value, f"{name} did not reach the service intact through {gw.config_path.name}"
    # Under the default 32KiB, one 30,000-byte header.
    big = {"X-Big": "z" * 30_000}
    assert header_echo(gateway, big).get("x-big") == big["X-Big"]


def test_request_head_over_max_http_header_size_gets_431(gateway, small_heads, demo):
    for gw, size in ((gateway, 40_000), (small_heads, 17_000)):
        async def scenario():
            with pytest.raises(InvalidStatus) as info:
                async with connect(gw, "/discoverableclient/ws/v1/header", additional_headers={"X-Big": "b" * size}):
                    pass
            return info.value.response.status_code

        assert run(scenario()) == 431, f"{size}-byte header through {gw.config_path.name}"
    # A plain HTTP request too, from curl.
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
         "-H", "X-Big: " + "c" * 40_000, f"http://{HOST}:{gateway.port}/discoverableclient/api/v1/greeting"],
        capture_output=True, timeout=20,
    )
    assert result.stdout == b"431", (result.stdout, result.stderr)
    # The gateway goes on serving.
    assert header_echo(gateway, {"X-After": "431"}).get("x-after") == "431"


# ------------------------------------------------------- handshake time-out


@pytest.fixture(scope="module")
def quick_handshakes(log_dir, scripted):
    config = gateway_config(scripted_services(scripted))
    config["server"]["handshakeTimeout"] = "1s"
    gw = start_gateway(log_dir, "handshake-1s", config)
    yield gw
    gw.child.stop()


@pytest.fixture(scope="module")
def quick_tls_handshakes(log_dir, scripted, tls_dir):
    config = gateway_config(scripted_services(scripted))
    config["server"]["handshakeTimeout"] = "1s"
    config["server"]["ssl"] = {"enabled": True, "certificate": str(tls_dir / "chain.pem"), "certificateKey": str(tls_dir / "key.pem")}
    gw = start_gateway(log_dir, "handshake-1s-tls", config)
    yield gw
    gw.child.stop()


def open_sockets(gw) -> int:
    """How many sockets the gateway process holds."""
    count = 0
    fd_dir = f"/proc/{gw.child.pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            count += os.readlink(f"{fd_dir}/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass
    return count


class Trickler(threading.Thread):
    """Sends `data` a byte every 200 ms (a slowloris client) until the gateway ends the connection,
    or for 8 s at most; records what the gateway sent and when the connection ended."""

    def __init__(self, sock: socket.socket, data: bytes, started: float):
        super().__init__(daemon=True)
        self.sock, self.data, self.started = sock, data, started
        self.received: bytes | None = None
        self.ended_after: float | None = None

    def run(self) -> None:
        for byte in self.data:
            if time.monotonic() - self.started > 8:
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                self.end(b"")
                return
            readable, _, _ = select.select([self.sock], [], [], 0.2)
            if readable:
                try:
                    self.end(self.sock.recv(4096))
                except (ConnectionResetError, ssl.SSLError):
                    self.end(b"")
                return

    def end(self, received: bytes) -> None:
        self.received, self.ended_after = received, time.monotonic() - self.started


def assert_cut(trickler: Trickler, what: str) -> None:
    trickler.join(12)
    assert trickler.ended_after is not None, f"{what} still open 8 s after it connected"
    assert trickler.received == b"", f"{what} got an answer: {trickler.received!r}"
    # Cut by the 1 s time-out: not before it, and not long after (its head needed about 35 s).
    assert 0.9 <= trickler.ended_after <= 4.0, f"{what} cut after {trickler.ended_after:.2f}s"


async def served(url_or_gw, **kwargs) -> None:
    """A normal client's echo session."""
    async with connect(url_or_gw, session_path()[0], **kwargs) as ws:
        await ws.send("not slow")
        assert await recv(ws) == "not slow"


def settled_sockets(gw, target=None, **kwargs) -> int:
    """The gateway's socket count once it has served a session (at `target`, default the gateway) and
    holds still: its signal handlers open theirs just after the listening line, so a count taken at once
    can be short."""
    run(served(target or gw, **kwargs))

    def steady():
        first = open_sockets(gw)
        time.sleep(0.3)
        return first if open_sockets(gw) == first else None

    return wait_until(steady, 10, "the gateway's socket count to hold still")


def test_slowloris_is_cut_after_the_handshake_timeout_while_others_are_served(quick_handshakes):
    before = settled_sockets(quick_handshakes)
    started = time.monotonic()
    sock = socket.create_connection((HOST, quick_handshakes.port))
    slow = Trickler(sock, upgrade_request(quick_handshakes.port, "/scripted/ws/v1/slow"), started)
    slow.start()
    try:
        run(served(quick_handshakes))
        assert slow.ended_after is None, "the normal client was not served while the slow one was open"
        assert_cut(slow, "the slowloris connection")
    finally:
        sock.close()
    wait_until(lambda: open_sockets(quick_handshakes) <= before, 5, "the gateway to hold no socket of either client")


def test_tls_handshake_and_request_head_share_the_timeout(quick_tls_handshakes, client_context):
    context = client_context
    before = settled_sockets(quick_tls_handshakes, quick_tls_handshakes.wss, ssl=context)
    # One client never starts its TLS handshake; another completes it, then trickles its request head.
    started = time.monotonic()
    silent = socket.create_connection((HOST, quick_tls_handshakes.port))
    raw = socket.create_connection((HOST, quick_tls_handshakes.port))
    slow_tls = context.wrap_socket(raw, server_hostname=HOST)
    slow = Trickler(slow_tls, upgrade_request(quick_tls_handshakes.port, "/scripted/ws/v1/slow"), started)
    slow.start()
    try:
        run(served(quick_tls_handshakes.wss, ssl=context))
        silent.settimeout(5)
        try:
            assert silent.recv(1) == b"", "a client that never sent a TLS handshake got an answer"
        except ConnectionResetError:
            pass
        silent_after = time.monotonic() - started
        assert 0.9 <= silent_after <= 4.0, f"the silent connection was cut after {silent_after:.2f}s"
        assert_cut(slow, "the slow TLS connection")
    finally:
        silent.close()
        slow_tls.close()
    wait_until(lambda: open_sockets(quick_tls_handshakes) <= before, 5, "the gateway to hold no socket of these clients")
