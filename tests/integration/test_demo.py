"""`wsgate demo`, the README's first command: gateway, embedded registry and two demo instances in one
process; the instances register themselves with the registry over the Eureka REST API."""

from __future__ import annotations

import http.client
import json
import re

from support import GATEWAY_LINE, HOST, REGISTRY_LINE, Child, binary, connect, expect_close, http_request, recv, run

DEMO_INSTANCES = re.compile(r"^demo service discoverableclient: demo-1 at 127\.0\.0\.1:(\d+), demo-2 at 127\.0\.0\.1:(\d+)$")


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
    child = Child("wsgate-demo", [binary("wsgate"), "demo", "--port", "0", "--registry-port", "0"], tmp_path)
    try:
        port = int(child.wait_line(GATEWAY_LINE).group(1))
        registry_port = int(child.wait_line(REGISTRY_LINE).group(1))
        instances = child.wait_line(DEMO_INSTANCES)
        demo_ports = sorted(int(p) for p in instances.groups())

        # The instances came through the registry, not through static config: the route table says
        # so, and the registry holds them under Spring's host:app:port ids.
        status, body = http_request(f"http://{HOST}:{port}/application/routes")
        assert status == 200, body
        (listed,) = json.loads(body)["services"]
        assert listed["serviceId"].lower() == "discoverableclient"
        assert sorted((i["port"], i["source"], i["status"]) for i in listed["instances"]) == [(p, "embedded", "UP") for p in demo_ports]
        assert {r["gatewayUrl"] for r in listed["routes"]} == {"ws/v1", "api/v1", "ui/v1"}
        status, body = http_request(f"http://{HOST}:{registry_port}/eureka/apps/DISCOVERABLECLIENT", headers={"Accept": "application/json"})
        assert status == 200, body
        ids = sorted(i["instanceId"] for i in json.loads(body)["application"]["instance"])
        assert ids == sorted(f"127.0.0.1:discoverableclient:{p}" for p in demo_ports)

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
    # On Ctrl-C or SIGTERM the instances cancel their registrations before they stop.
    assert child.proc.returncode == 0, child.describe()
    assert child.stderr_path.read_text(errors="replace").count("registration cancelled") == 2, child.stderr_path.read_text()
