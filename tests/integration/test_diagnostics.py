"""GET /application/websockets and /application/health."""

from __future__ import annotations

import asyncio
import http.client
import json
from datetime import datetime, timedelta, timezone

from support import HOST, connect, recv, run, wait_until

UPPERCASE = "/discoverableclient/ws/v1/uppercase"
FIELDS = {
    "sessionId", "clientAddress", "gatewayPath", "serviceUrl", "serviceSessionId", "serviceId",
    "instanceId", "subprotocol", "startedAt", "messagesFromClient", "messagesToClient",
    "bytesFromClient", "bytesToClient",
}


def get_json(port: int, path: str):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, f"GET {path}: {response.status} {body[:500]!r}"
        return json.loads(body)
    finally:
        conn.close()


def sessions(port: int) -> list[dict]:
    data = get_json(port, "/application/websockets")
    assert isinstance(data, list), data
    return data


def client_frame_size(n: int) -> int:  # masked
    return (2 if n < 126 else 4 if n < 65536 else 10) + 4 + n


def service_frame_size(n: int) -> int:  # unmasked
    return (2 if n < 126 else 4 if n < 65536 else 10) + n


def test_health_is_up(gateway):
    assert get_json(gateway.port, "/application/health") == {"status": "UP"}


def test_websockets_lists_open_sessions(gateway_diag, demo):
    port = gateway_diag.port
    wait_until(lambda: sessions(port) == [], 10, "an empty session list at start")

    async def scenario():
        before = datetime.now(timezone.utc)
        async with connect(gateway_diag, UPPERCASE, subprotocols=["v12.stomp"], compression=None) as ws, \
                connect(gateway_diag, UPPERCASE, compression=None) as other:
            assert ws.subprotocol == "v12.stomp"
            sent = ["hello", "abc"]
            for m in sent:
                await ws.send(m)
                assert await recv(ws) == m.upper()
            local = ws.local_address
            listed = await asyncio.to_thread(sessions, port)
            assert len(listed) == 2, listed
            assert all(FIELDS <= set(s) for s in listed), listed
            assert len({s["sessionId"] for s in listed}) == 2
            mine = [s for s in listed if s["subprotocol"] == "v12.stomp"]
            assert len(mine) == 1, listed
            s = mine[0]
            theirs = [x for x in listed if x is not s][0]
            assert theirs["subprotocol"] is None

            assert isinstance(s["sessionId"], str) and s["sessionId"]
            assert s["serviceSessionId"] not in (None, "")
            assert local[0] in s["clientAddress"], (local, s["clientAddress"])
            assert s["gatewayPath"] == UPPERCASE
            assert s["serviceUrl"] == f"ws://127.0.0.1:{demo.port}/discoverableclient/ws/uppercase"
            assert s["serviceId"].lower() == "discoverableclient"
            assert isinstance(s["instanceId"], str) and s["instanceId"]
            started = datetime.fromisoformat(s["startedAt"])
            assert started.utcoffset() == timedelta(0), s["startedAt"]
            assert before - timedelta(seconds=5) <= started <= datetime.now(timezone.utc) + timedelta(seconds=5)

            assert s["messagesFromClient"] == 2
            assert s["messagesToClient"] == 2
            assert s["bytesFromClient"] == sum(client_frame_size(len(m)) for m in sent)
            assert s["bytesToClient"] == sum(service_frame_size(len(m)) for m in sent)

            big = "x" * 200
            await ws.send(big)
            assert await recv(ws) == big.upper()
            sent.append(big)
            want = {
                "messagesFromClient": 3,
                "messagesToClient": 3,
                "bytesFromClient": sum(client_frame_size(len(m)) for m in sent),
                "bytesToClient": sum(service_frame_size(len(m)) for m in sent),
            }

            seen = []

            def grown():
                now = [x for x in sessions(port) if x["sessionId"] == s["sessionId"]]
                seen.append(now)
                return bool(now) and {k: now[0][k] for k in want} == want

            try:
                await asyncio.to_thread(wait_until, grown, 10, f"counters to reach {want}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last listing: {seen[-1]}") from None
            assert theirs["messagesFromClient"] == 0 and theirs["bytesToClient"] == 0

    run(scenario())
    wait_until(lambda: sessions(port) == [], 10, "the session list to be empty after the sessions closed")


def test_fragmented_message_counts_once(gateway_diag):
    port = gateway_diag.port
    wait_until(lambda: sessions(port) == [], 10, "an empty session list at start")
    fragments = ["one ", "two ", "three"]

    async def gen():
        for f in fragments:
            yield f

    async def scenario():
        async with connect(gateway_diag, UPPERCASE, compression=None) as ws:
            await ws.send(gen())
            assert await recv(ws) == "ONE TWO THREE"
            want = {
                "messagesFromClient": 1,
                "messagesToClient": 1,
                # websockets ends a fragmented message with an empty final continuation frame.
                "bytesFromClient": sum(client_frame_size(len(f)) for f in fragments) + client_frame_size(0),
                "bytesToClient": service_frame_size(len("ONE TWO THREE")),
            }

            seen = []

            def counted():
                now = sessions(port)
                seen.append(now)
                return len(now) == 1 and {k: now[0][k] for k in want} == want

            try:
                await asyncio.to_thread(wait_until, counted, 10, f"counters {want}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last listing: {seen[-1]}") from None

    run(scenario())
