"""The graceful stop: on SIGTERM the gateway closes every WebSocket session with 1001 on both sides,
lets HTTP requests in flight finish, and exits 0 once they are done, or at `server.shutdownTimeout`.

Clients are python `websockets` and a raw-socket client (one that never answers the close); the
WebSocket service is the suite's scripted `websockets` upstream; the REST service is Python's
`http.server`, answering after a pause so that a request is in flight when the stop comes.
"""

from __future__ import annotations

import http.server
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
)

STOPPING = (1001, "Gateway stopping")
SLOW_ANSWER = 1.0  # seconds the slow REST service takes to answer


class SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
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

    try:
        requester = threading.Thread(target=slow_request)
        requester.start()
        # The request reaches the service, which pauses before it answers: then the stop comes.
        time.sleep(SLOW_ANSWER / 3)
        started = time.monotonic()
        gateway.child.proc.terminate()
        requester.join(15)
        status, body = answers[0]
        assert (status, body) == (200, b"finished\n")
        assert exit_code_within(gateway, 10) == 0
        # New connections are refused once the stop has come.
        with pytest.raises(OSError):
            http_request(f"http://{HOST}:{gateway.port}/slow/api/v1/items")
        assert time.monotonic() - started < 5
    finally:
        gateway.child.stop()


def test_a_peer_that_never_answers_the_close_is_dropped_at_the_shutdown_timeout(log_dir, scripted, slow_rest):
    gateway = start_gateway(log_dir, "stop-timeout", stop_config(scripted, slow_rest, shutdownTimeout="1s"))
    mark = f"mute-{time.monotonic_ns()}"
    client = RawWs(gateway.port, f"/scripted/ws/v1/{mark}")
    try:
        scripted.wait_record(mark)
        started = time.monotonic()
        gateway.child.proc.terminate()
        # The client gets its close but does not answer it; the gateway gives up after 1s.
        assert client.read_close(timeout=5) == STOPPING
        assert exit_code_within(gateway, 8) == 0
        took = time.monotonic() - started
        assert 0.9 <= took < 4, took
        log = gateway.child.stderr_text(20000)
        assert "server.shutdownTimeout passed" in log, log
    finally:
        client.close()
        gateway.child.stop()
