"""The idle time-out and the gateway's keep-alive pings (server.webSocket.idleTimeout, pingInterval).

Clients are python `websockets` (its own keepalive off, so every ping seen is the gateway's) or a
raw-socket client; services are the scripted `websockets` upstream or `FrameService` below, a raw
WebSocket service that records every frame it receives, so the test sees the gateway's pings as
they are on the wire.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time

import pytest

from conftest import all_services
from support import (
    HOST,
    RawService,
    RawWs,
    _FrameReader,
    connect,
    encode_frame,
    expect_close,
    gateway_config,
    http_request,
    recv,
    run,
    serve_until_exit,
    service,
    start_gateway,
    wait_until,
    ws_accept,
)

IDLE_CLOSE = (1001, "Session idle for more than 1s")
PING, PONG, CLOSE = 0x9, 0xA, 0x8
STALLED_FRAME = bytes(range(256)) * 4  # 1024 bytes, sent in two halves with a pause between


class FrameService(RawService):
    """A WebSocket service over raw sockets: it records (opcode, payload, masked) for every frame it
    receives, per request path; answers pings with pongs, echoes data frames, answers a close. The
    text message `stall` makes it send a 1024-byte binary frame in two halves 600 ms apart."""

    def __init__(self) -> None:
        self.frames: dict[str, list[tuple[int, bytes, bool]]] = {}
        self.ended: dict[str, threading.Event] = {}
        super().__init__("frame-service")

    def _serve(self, conn: socket.socket) -> None:
        ended = threading.Event()
        try:
            path, key, rest = read_request_head(conn)
            frames = self.frames.setdefault(path, [])
            self.ended[path] = ended
            conn.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n"
                ).encode()
            )
            reader = _FrameReader(conn, rest, timeout=30)
            while True:
                frame = reader.read_frame(30)
                if frame is None:
                    return
                _, opcode, payload, masked = frame
                frames.append((opcode, payload, masked))
                if opcode == PING:
                    conn.sendall(encode_frame(PONG, payload, mask=False))
                elif opcode == CLOSE:
                    conn.sendall(encode_frame(CLOSE, payload[:2], mask=False))
                    return
                elif payload == b"stall":
                    conn.sendall(struct.pack("!BBH", 0x82, 126, len(STALLED_FRAME)) + STALLED_FRAME[:512])
                    time.sleep(0.6)
                    conn.sendall(STALLED_FRAME[512:])
                elif opcode in (0x1, 0x2):
                    conn.sendall(encode_frame(opcode, payload, mask=False))
        except (OSError, AssertionError, StopIteration):
            return
        finally:
            conn.close()
            ended.set()

    def received(self, path_token: str) -> list[tuple[int, bytes, bool]]:
        found = [frames for path, frames in self.frames.items() if path_token in path]
        assert len(found) == 1, f"expected one session whose path holds {path_token!r}: {list(self.frames)}"
        return list(found[0])

    def wait_ended(self, path_token: str, timeout: float = 10.0) -> None:
        events = wait_until(lambda: [e for p, e in self.ended.items() if path_token in p], timeout, f"a session {path_token}")
        assert events[0].wait(timeout), f"the service session {path_token} did not end within {timeout}s"


def read_request_head(conn: socket.socket) -> tuple[str, str, bytes]:
    """Reads a handshake request; returns (path, Sec-WebSocket-Key, bytes after the head)."""
    conn.settimeout(15)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("connection closed before a full request head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    key = next(line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("sec-websocket-key:"))
    return lines[0].split(" ")[1], key, rest


@pytest.fixture(scope="module")
def frame_service():
    server = FrameService()
    yield server
    server.stop()


def services_with_frame_service(upstreams, frame_service) -> list[dict]:
    return all_services(upstreams) + [service("framesvc", [(HOST, frame_service.port)], {"ws_v1": ("ws/v1", "/framesvc/ws")})]


@pytest.fixture(scope="module")
def gateway_idle(log_dir, upstreams, frame_service):
    """idleTimeout 1s, no pings."""
    gw = start_gateway(log_dir, "idle", gateway_config(services_with_frame_service(upstreams, frame_service), idleTimeout="1s"))
    yield gw
    gw.child.stop()


@pytest.fixture(scope="module")
def gateway_pings(log_dir, upstreams, frame_service):
    """idleTimeout 1s and pingInterval 300ms; the relay's debug log shows the pings it holds back."""
    config = gateway_config(services_with_frame_service(upstreams, frame_service), idleTimeout="1s", pingInterval="300ms")
    gw = start_gateway(log_dir, "pings", config, env={"RUST_LOG": "info,wsgate_gateway::relay::pump=debug"})
    yield gw
    gw.child.stop()


def listed_paths(gw) -> list[str]:
    status, body = http_request(f"http://{HOST}:{gw.port}/application/websockets")
    assert status == 200, (status, body)
    return [s["gatewayPath"] for s in json.loads(body)]


def test_a_silent_session_is_closed_on_both_sides(gateway_idle, scripted):
    path = "/scripted/ws/v1/idle-silent"

    async def scenario():
        async with connect(gateway_idle, path) as ws:
            opened = time.monotonic()
            assert path in await asyncio.to_thread(listed_paths, gateway_idle)
            code, reason = await expect_close(ws, timeout=10)
            return code, reason, time.monotonic() - opened

    code, reason, after = run(scenario())
    assert (code, reason) == IDLE_CLOSE
    # 1 s without a frame, checked every 250 ms; the upper bound leaves room for a loaded machine.
    assert 0.9 <= after <= 3.0, f"closed after {after:.2f}s"
    record = scripted.wait_record("idle-silent").wait_ended()
    assert record.close_rcvd == IDLE_CLOSE, "the service gets the same close"
    wait_until(lambda: path not in listed_paths(gateway_idle), 5, "the idle session to leave /application/websockets")
    wait_until(lambda: "closing the idle session" in gateway_idle.child.stderr_text(100_000), 5, "the idle close in the log")


def test_a_session_with_a_message_every_300ms_stays_open(gateway_idle, scripted):
    async def scenario():
        async with connect(gateway_idle, "/scripted/ws/v1/idle-busy") as ws:
            start = time.monotonic()
            sent = 0
            while time.monotonic() - start < 3.5:
                await ws.send(f"message {sent}")
                assert await recv(ws, 2) == f"message {sent}"
                sent += 1
                await asyncio.sleep(0.3)
            await ws.close(1000, "done")
            return sent

    assert run(scenario()) >= 9
    record = scripted.wait_record("idle-busy").wait_ended()
    assert record.close_rcvd == (1000, "done"), "the client's own close, not the gateway's"


def test_pings_keep_a_silent_client_open_and_reach_the_service(gateway_pings, frame_service):
    async def scenario():
        # The client library answers pings by itself, and sends none of its own (ping_interval=None).
        async with connect(gateway_pings, "/framesvc/ws/v1/pinged") as ws:
            await asyncio.sleep(3.5)
            await ws.send("still here")
            assert await recv(ws, 2) == "still here"
            await ws.close(1000, "done")

    run(scenario())
    frame_service.wait_ended("pinged")
    frames = frame_service.received("pinged")
    pings = [f for f in frames if f[0] == PING]
    assert len(pings) >= 4, f"pings seen by the service: {frames}"
    assert all(payload == b"wsgate" and masked for _, payload, masked in pings), pings
    # The client's answers to the gateway's pings are relayed too, as unsolicited pongs.
    assert any(opcode == PONG and payload == b"wsgate" for opcode, payload, _ in frames), frames
    assert (0x1, b"still here", True) in frames
    assert frames[-1][0] == CLOSE and frames[-1][1][:2] == struct.pack("!H", 1000)


def test_the_client_gets_unmasked_pings_only_between_frames(gateway_pings, frame_service):
    ws = RawWs(gateway_pings.port, "/framesvc/ws/v1/raw-client")
    try:
        seen: list[tuple[int, bytes, bool]] = []

        def next_data_frame(timeout: float) -> tuple[int, bytes]:
            """Answers pings until a data frame comes; returns it."""
            deadline = time.monotonic() + timeout
            while True:
                frame = ws.read_frame(deadline - time.monotonic())
                assert frame is not None, f"the connection ended; frames so far: {seen}"
                _, opcode, payload, masked = frame
                seen.append((opcode, payload, masked))
                if opcode == PING:
                    ws.send(encode_frame(PONG, payload, mask=True))
                elif opcode != PONG:
                    return opcode, payload

        # Silent for 2.5 s (more than twice idleTimeout), answering the gateway's pings.
        ws.send(encode_frame(0x1, b"hello"))
        assert next_data_frame(5) == (0x1, b"hello")
        quiet_until = time.monotonic() + 2.5
        while time.monotonic() < quiet_until:
            frame = ws.read_frame(5)
            assert frame is not None, f"the connection ended; frames so far: {seen}"
            _, opcode, payload, masked = frame
            seen.append((opcode, payload, masked))
            assert opcode in (PING, PONG), f"unexpected frame {frame}"
            if opcode == PING:
                ws.send(encode_frame(PONG, payload, mask=True))
        pings = [f for f in seen if f[0] == PING]
        assert len(pings) >= 4, seen
        assert all(f == (PING, b"wsgate", False) for f in pings), pings

        # The service stalls 600 ms inside a frame, twice pingInterval: a ping to the client falls due
        # there, and is held back (the log says so) instead of landing inside the frame.
        held_back = "no ping: the output is inside a frame"
        before = gateway_pings.child.stderr_text(1_000_000).count(held_back)
        ws.send(encode_frame(0x1, b"stall"))
        assert next_data_frame(5) == (0x2, STALLED_FRAME)
        assert gateway_pings.child.stderr_text(1_000_000).count(held_back) > before, "no ping fell due inside the frame"
        ws.send(encode_frame(0x1, b"after"))
        assert next_data_frame(5) == (0x1, b"after")
        ws.send(encode_frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
        assert ws.read_close(5) == (1000, "")
    finally:
        ws.close()


@pytest.mark.parametrize(
    "key,value",
    [("idleTimeout", "0s"), ("idleTimeout", "soon"), ("pingInterval", "0ms"), ("pingInterval", "often")],
)
def test_a_zero_or_garbage_duration_exits_64_naming_the_key(tmp_path, key, value):
    result = serve_until_exit(tmp_path, gateway_config([], **{key: value}))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert f"server.webSocket.{key}" in stderr and value in stderr, stderr
    assert b"listening" not in result.stdout


def test_a_ping_interval_not_shorter_than_the_idle_timeout_starts_with_a_warning(log_dir):
    gw = start_gateway(log_dir, "rare-pings", gateway_config([], idleTimeout="1s", pingInterval="2s"))
    try:
        wait_until(
            lambda: "pings will not keep silent sessions open" in gw.child.stderr_text(100_000),
            5,
            "the warning at start",
        )
    finally:
        gw.child.stop()
