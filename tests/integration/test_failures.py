"""The routing/upstream failure table of doc/CONTRACT.md, in both error modes.

close-code mode: the client's handshake succeeds (101), then the gateway closes
with the exact code and reason. http-status mode: the handshake is answered
with the HTTP status (`websockets` raises InvalidStatus).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
from websockets.exceptions import InvalidStatus

from support import connect, expect_close, expected_reason, run


@dataclass
class Row:
    name: str
    path: str
    code: int
    reason: Callable[[object], str]  # upstreams -> reason
    status: int
    subprotocols: list[str] | None = None


def upstream_url(port_of: Callable[[object], int], path: str) -> Callable[[object], str]:
    return lambda u: f"ws://127.0.0.1:{port_of(u)}{path}"


def scripted_url(path):
    return upstream_url(lambda u: u.scripted.port, path)


ERR = "Error opening session to WebSocket service at "

ROWS = [
    Row("root path", "/", 1003, lambda u: "Invalid URL format", 404),
    Row("one segment", "/x", 1003, lambda u: "Invalid URL format", 404),
    Row("dot-dot escaping the prefix", "/discoverableclient/ws/v1/../uppercase", 1003,
        lambda u: "Invalid URL format", 404),
    Row("unknown serviceId", "/UnknownSvc/ws/v1/uppercase", 1003,
        lambda u: "Requested service UnknownSvc is not known by the gateway", 404),
    Row("no route for gatewayUrl", "/discoverableclient/nope/v9/uppercase", 1003,
        lambda u: "Requested nope/v9 url is not known by the gateway", 404),
    Row("no instance UP", "/noinstance/ws/v1/anything", 1012,
        lambda u: "Requested service noinstance does not have available instance", 503),
    Row("service answers 401", "/scripted/ws/v1/status401", 1003, lambda u: "Invalid login credentials", 401),
    Row("service answers 403", "/scripted/ws/v1/status403", 1003,
        lambda u: f"{ERR}{scripted_url('/scripted/ws/status403')(u)}: 403 Forbidden", 403),
    Row("service answers 500", "/scripted/ws/v1/status500", 1011,
        lambda u: f"{ERR}{scripted_url('/scripted/ws/status500')(u)}: 500 Internal Server Error", 502),
    Row("service unreachable", "/refused/ws/v1/some/path", 1011,
        lambda u: f"{ERR}ws://127.0.0.1:{u.refused_port}/refused/ws/some/path: connection refused", 502),
    Row("service times out", "/silent/ws/v1/some/path", 1011,
        lambda u: f"{ERR}ws://127.0.0.1:{u.silent.port}/silent/ws/some/path: timed out", 504),
    Row("service speaks no HTTP", "/rawsvc/ws/v1/garbage", 1011,
        lambda u: f"{ERR}ws://127.0.0.1:{u.raw.port}/rawsvc/ws/garbage: malformed response: invalid HTTP version", 502),
    Row("service response head too large", "/rawsvc/ws/v1/hugehead", 1011,
        lambda u: f"{ERR}ws://127.0.0.1:{u.raw.port}/rawsvc/ws/hugehead: response head larger than 65536 bytes", 502),
    Row("unexpected subprotocol", "/scripted/ws/v1/badproto", 1011,
        lambda u: f"{ERR}{scripted_url('/scripted/ws/badproto')(u)}: unexpected subprotocol", 502,
        subprotocols=["v12.stomp"]),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_close_code_mode(gateway, upstreams, row):
    async def scenario():
        kwargs = {"subprotocols": row.subprotocols} if row.subprotocols else {}
        async with connect(gateway, row.path, **kwargs) as ws:
            return await expect_close(ws)

    code, reason = run(scenario())
    want = expected_reason(row.reason(upstreams))
    assert (code, reason) == (row.code, want)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_http_status_mode(gateway_http, upstreams, row):
    async def scenario():
        kwargs = {"subprotocols": row.subprotocols} if row.subprotocols else {}
        with pytest.raises(InvalidStatus) as info:
            async with connect(gateway_http, row.path, **kwargs):
                pass
        return info.value.response

    response = run(scenario())
    assert response.status_code == row.status
    if row.status == 401:
        assert response.headers.get("WWW-Authenticate") == 'Basic realm="x"'


def test_long_reason_is_cut_to_123_bytes(gateway, scripted):
    # A long upstream path makes the 403 reason longer than a close frame allows.
    long_tail = "x" * 200
    path = f"/scripted/ws/v1/status403/{long_tail}"

    async def scenario():
        async with connect(gateway, path) as ws:
            return await expect_close(ws)

    code, reason = run(scenario())
    full = f"{ERR}ws://127.0.0.1:{scripted.port}/scripted/ws/status403/{long_tail}: 403 Forbidden"
    assert code == 1003
    assert len(reason.encode()) == 123
    assert reason == full[:123]
