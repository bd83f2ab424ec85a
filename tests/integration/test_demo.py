"""`wsgate demo`, the README's first command: gateway and two demo instances in one process."""

from __future__ import annotations

import http.client
import json
import re

from support import GATEWAY_LINE, HOST, Child, binary, connect, expect_close, recv, run

DEMO_INSTANCES = re.compile(r"^demo service discoverableclient: demo-1 at 127\.0\.0\.1:\d+, demo-2 at 127\.0\.0\.1:\d+$")


def greeting(port: int) -> str:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/discoverableclient/api/v1/greeting?name=demo")
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())["instanceId"]
    finally:
        conn.close()


def test_demo_answers_through_the_gateway_and_balances(tmp_path):
    child = Child("wsgate-demo", [binary("wsgate"), "demo", "--port", "0"], tmp_path)
    try:
        port = int(child.wait_line(GATEWAY_LINE).group(1))
        child.wait_line(DEMO_INSTANCES)

        async def session():
            async with connect(f"ws://{HOST}:{port}", "/discoverableclient/ws/v1/uppercase", subprotocols=["v12.stomp"]) as ws:
                assert ws.subprotocol == "v12.stomp"
                await ws.send("hello from the readme")
                assert await recv(ws) == "HELLO FROM THE README"
                await ws.send("bye")
                assert await recv(ws) == "BYE"
                assert await expect_close(ws) == (1000, "")

        run(session())
        # Round robin over the two instances, on the HTTP side of the same route table.
        assert sorted(greeting(port) for _ in range(4)) == ["demo-1", "demo-1", "demo-2", "demo-2"]
    finally:
        child.stop()
