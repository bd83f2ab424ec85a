"""The suite's upstreams, talked to directly (no gateway).

These pin down what the peers do by themselves, so that a failure elsewhere
in the suite points at the gateway and not at the demo service or the fixtures.
"""

from __future__ import annotations

import http.client
import json
import uuid

import pytest
from websockets.exceptions import InvalidStatus

from support import HOST, connect, expect_close, recv, run


def direct(port: int) -> str:
    return f"ws://{HOST}:{port}"


def test_demo_uppercase_and_bye(demo):
    async def scenario():
        async with connect(direct(demo.port), "/discoverableclient/ws/uppercase") as ws:
            await ws.send("abc")
            assert await recv(ws) == "ABC"
            await ws.send(b"\x00ab\xff")
            assert await recv(ws) == b"\x00AB\xff"
            await ws.send("Bye")
            assert await recv(ws) == "BYE"
            assert (await expect_close(ws))[0] == 1000

    run(scenario())


def test_demo_header_endpoint(demo):
    async def scenario():
        async with connect(direct(demo.port), "/discoverableclient/ws/header?a=1&b=x%20y",
                           additional_headers={"X-Test": "t"}, subprotocols=["v12.stomp", "x"]) as ws:
            assert ws.subprotocol == "v12.stomp"
            await ws.send("?")
            return json.loads(await recv(ws))

    answer = run(scenario())
    assert answer["uri"] == "/discoverableclient/ws/header?a=1&b=x%20y"
    assert answer["headers"]["x-test"] == "t"
    assert answer["headers"]["host"] == f"{HOST}:{demo.port}"


def test_demo_http(demo):
    conn = http.client.HTTPConnection(HOST, demo.port, timeout=10)
    conn.request("GET", "/discoverableclient/api/v1/greeting?name=Ann")
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read()) == {"greeting": "Hello, Ann!", "instanceId": demo.instance_id}
    conn.request("GET", "/discoverableclient/ws/uppercase")
    response = conn.getresponse()
    response.read()
    assert response.status == 426
    conn.close()


@pytest.mark.parametrize("status", [401, 403, 500])
def test_scripted_refuses_with_status(scripted, status):
    async def scenario():
        with pytest.raises(InvalidStatus) as info:
            async with connect(direct(scripted.port), f"/scripted/ws/status{status}"):
                pass
        return info.value.response

    response = run(scenario())
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="x"'


def test_scripted_close_4001_and_records(scripted):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(direct(scripted.port), f"/scripted/ws/close4001/{token}?q=1",
                           additional_headers={"X-Rec": "yes"}) as ws:
            assert await expect_close(ws) == (4001, "custom reason")

    run(scenario())
    rec = scripted.wait_record(token).wait_ended()
    assert rec.path == f"/scripted/ws/close4001/{token}?q=1"
    assert rec.header("x-rec") == "yes"


def test_scripted_records_client_close(scripted):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(direct(scripted.port), f"/scripted/ws/echo/{token}") as ws:
            await ws.send("x")
            assert await recv(ws) == "x"
            await ws.close(4001, "client reason")

    run(scenario())
    assert scripted.wait_record(token).wait_ended().close_rcvd == (4001, "client reason")
