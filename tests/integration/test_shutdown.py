"""The graceful stop: on SIGTERM the gateway closes every WebSocket session with 1001 on both sides,
lets HTTP requests in flight finish, and exits 0 once they are done, or at `server.shutdownTimeout`.

Clients are python `websockets` and a raw-socket client (one that never answers the close); the
WebSocket service is the suite's scripted `websockets` upstream; the REST service is Python's
`http.server`, answering after a pause so that a request is in flight when the stop comes.
"""

from __future__ import annotations

import http.server
import signal
import socket
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

from support import (
    HOST,
    RawWs,
    connect,
    gateway_config,
    http_request,
    recv,
    run,
    service,
    start_gateway,
    wait_until,
)

STOPPING = (1001, "Gateway stopping")
SLOW_ANSWER = 1.0  # seconds the slow REST service takes to answer


class SlowHandler(http.server.BaseHTTPRequestHandler):
    arrived = threading.Event()  # set when a request reaches the service

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        SlowHandler.arrived.set()
        time.sleep(SLOW_ANSWER)
        body = b"finished\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def slow_rest():
    server = http.server.ThreadingHTTPServer((HOST, 0), SlowHandler)
    threading.Thread(target=server.serve_forever, name="slow-rest", daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def stop_config(scripted, slow_rest, **server) -> dict:
    config = gateway_config([
        service("scripted", [(HOST, scripted.port)], {"ws_v1": ("ws/v1", "/scripted/ws")}),
        service("slow", [(HOST, slow_rest.server_address[1])], {"api_v1": ("api/v1", "/slow/api")}),
    ])
    config["server"].update(server)
    return config


def refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def exit_code_within(gateway, seconds: float) -> int:
    try:
        return gateway.child.proc.wait(timeout=seconds)
    except Exception as error:  # noqa: BLE001 - reported with the gateway's log
        raise AssertionError(f"the gateway did not exit within {seconds}s: {gateway.child.describe()}") from error


def test_sigterm_closes_every_session_with_1001_on_both_sides_and_exits_0(log_dir, scripted, slow_rest):
    gateway = start_gateway(log_dir, "stop-sessions", stop_config(scripted, slow_rest))
    marks = [f"stop{n}-{time.monotonic_ns()}" for n in range(3)]

    async def sessions() -> list[tuple[int, str]]:
        clients = [await connect(gateway, f"/scripted/ws/v1/{mark}").__aenter__() for mark in marks]
        for ws in clients:
            await ws.send("before the stop")
            assert await recv(ws) == "before the stop"
        gateway.child.proc.terminate()
        closes = []
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                await recv(ws, timeout=10)
            closes.append((ws.close_code, ws.close_reason))
        return closes

    try:
        assert run(sessions()) == [STOPPING] * 3
        assert exit_code_within(gateway, 10) == 0
        for mark in marks:
            (record,) = scripted.find(mark)
            record.wait_ended()
            assert record.close_rcvd == STOPPING, record
        log = gateway.child.stderr_text(20000)
        assert "stopping: closing sessions and connections" in log and "sessions=3" in log, log
        assert "stopped: every session and connection closed" in log, log
    finally:
        gateway.child.stop()


def test_a_request_in_flight_is_answered_before_the_gateway_exits(log_dir, scripted, slow_rest):
    gateway = start_gateway(log_dir, "stop-requests", stop_config(scripted, slow_rest))
    answers = []

    def slow_request() -> None:
        answers.append(http_request(f"http://{HOST}:{gateway.port}/slow/api/v1/items"))

    SlowHandler.arrived.clear()
    try:
        requester = threading.Thread(target=slow_request)
        requester.start()
        # The request reaches the service, which pauses before it answers: then the stop comes.
        assert SlowHandler.arrived.wait(10), "the request never reached the service"
        gateway.child.proc.terminate()
        requester.join(15)
        status, body = answers[0]
        assert (status, body) == (200, b"finished\n")
        assert exit_code_within(gateway, 10) == 0
    finally:
        gateway.child.stop()


def stopped_with_a_mute_client(log_dir, scripted, slow_rest, name: str, shutdown_timeout: str):
    """A gateway with one session whose client (raw sockets) will not answer its close, stopped by
    SIGTERM once the session is open; returns the gateway, the client once the close has come, and
    when the SIGTERM was sent."""
    gateway = start_gateway(log_dir, name, stop_config(scripted, slow_rest, shutdownTimeout=shutdown_timeout))
    mark = f"{name}-{time.monotonic_ns()}"
    client = RawWs(gateway.port, f"/scripted/ws/v1/{mark}")
    scripted.wait_record(mark)
    stopped_at = time.monotonic()
    gateway.child.proc.terminate()
    assert client.read_close(timeout=5) == STOPPING
    return gateway, client, stopped_at


def test_a_peer_that_never_answers_the_close_is_dropped_at_the_shutdown_timeout(log_dir, scripted, slow_rest):
    gateway, client, stopped_at = stopped_with_a_mute_client(log_dir, scripted, slow_rest, "stop-timeout", "2s")
    try:
        # Meanwhile the port takes no new connection.
        wait_until(lambda: refused(gateway.port), 1, "the port to refuse new connections during the drain")
        assert gateway.child.proc.poll() is None, "still draining"
        assert exit_code_within(gateway, 8) == 0
        # Not the 5s the relay would wait for the client's answer.
        took = time.monotonic() - stopped_at
        assert 1.9 <= took < 4.5, took
        log = gateway.child.stderr_text(20000)
        assert "server.shutdownTimeout passed" in log, log
    finally:
        client.close()
        gateway.child.stop()


def test_a_client_still_in_its_tls_handshake_does_not_hold_up_the_stop(log_dir, scripted, slow_rest, tls_dir):
    config = stop_config(scripted, slow_rest)
    config["server"]["ssl"] = {"enabled": True, "certificate": str(tls_dir / "chain.pem"), "certificateKey": str(tls_dir / "key.pem")}
    gateway = start_gateway(log_dir, "stop-tls-handshake", config)
    # One connection that sends nothing, one that stops in the middle of its ClientHello.
    silent = socket.create_connection((HOST, gateway.port))
    partial = socket.create_connection((HOST, gateway.port))
    partial.sendall(b"\x16\x03\x01")
    try:
        started = time.monotonic()
        gateway.child.proc.terminate()
        assert exit_code_within(gateway, 8) == 0
        took = time.monotonic() - started
        assert took < 3, f"the stop waited {took:.1f}s for clients that never finished their handshake"
    finally:
        silent.close()
        partial.close()
        gateway.child.stop()


def test_a_second_signal_ends_the_drain_at_once(log_dir, scripted, slow_rest):
    # The client does not answer its close: the drain would wait for it for up to 60s.
    gateway, client, _ = stopped_with_a_mute_client(log_dir, scripted, slow_rest, "stop-twice", "60s")
    try:
        gateway.child.proc.send_signal(signal.SIGINT)
        assert exit_code_within(gateway, 5) == 1
        assert "second stop signal: exiting without waiting for the sessions" in gateway.child.stderr_text(20000)
    finally:
        client.close()
        gateway.child.stop()
