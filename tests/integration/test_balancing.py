"""Instance selection (issue 4 part 4): round robin, least-sessions, connect retries on other
instances, passive health (ejectFor), and sticky routing by X-InstanceId.

Three scripted upstreams (real `websockets` servers) play three instances of one service; each
session's path carries a token, so the upstream that recorded the token is the instance that served
it. Every test runs a gateway of its own, so balancing state starts fresh.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time

import pytest

from support import (
    HOST,
    ScriptedUpstream,
    closed_port,
    connect,
    demo_routes,
    expect_close,
    expected_reason,
    gateway_config,
    recv,
    run,
    service,
    start_gateway,
    wait_until,
)
from websockets.exceptions import InvalidStatus

ERR = "Error opening session to WebSocket service at "


@pytest.fixture(scope="module")
def trio():
    upstreams = [ScriptedUpstream().start() for _ in range(3)]
    yield upstreams
    for upstream in upstreams:
        upstream.stop()


def ws_service(service_id: str, ports: list[int], **metadata: str) -> dict:
    svc = service(service_id, [(HOST, p) for p in ports], {"ws_v1": ("ws/v1", f"/{service_id}/ws")})
    svc["metadata"].update(metadata)
    return svc


def lb_gateway(log_dir, name: str, services: list[dict], error_mode: str = "close-code", **load_balancing):
    config = gateway_config(services, error_mode)
    config["server"]["loadBalancing"] = load_balancing
    return start_gateway(log_dir, name, config)


def served_by(upstreams: list[ScriptedUpstream], token: str) -> list[int]:
    """How many handshakes containing `token` each upstream saw."""
    return [len(u.find(token)) for u in upstreams]


def owner(upstreams: list[ScriptedUpstream], token: str) -> int:
    """The index of the one upstream that saw `token`."""
    counts = served_by(upstreams, token)
    assert sorted(counts) == [0, 0, 1], f"{token}: {counts}"
    return counts.index(1)


async def echo_once(gateway, path: str, **kwargs) -> None:
    async with connect(gateway, path, **kwargs) as ws:
        await ws.send("ping")
        assert await recv(ws) == "ping"


def log_count(gateway, pattern: str) -> int:
    return len(re.findall(pattern, gateway.child.stderr_text(tail=1 << 30)))


def open_sessions(port: int) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/application/websockets")
        return len(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def test_round_robin_spreads_300_sessions_100_100_100(log_dir, trio):
    gateway = lb_gateway(log_dir, "lb-round-robin", [ws_service("rr", [u.port for u in trio])])

    async def scenario():
        for i in range(300):
            await echo_once(gateway, f"/rr/ws/v1/rr300/{i}")

    run(scenario())
    assert served_by(trio, "/rr300/") == [100, 100, 100]


def test_least_sessions_sends_new_sessions_to_the_least_loaded_instances(log_dir, trio):
    gateway = lb_gateway(log_dir, "lb-least", [ws_service("ls", [u.port for u in trio])], strategy="least-sessions")

    async def scenario():
        # Six held sessions: ties take turns, two on each instance.
        held = {}
        for i in range(6):
            ws = await connect(gateway, f"/ls/ws/v1/hold/{i}/")
            held[i] = ws
        owners = {i: owner(trio, f"/hold/{i}/") for i in held}
        assert sorted(owners.values()) == [0, 0, 1, 1, 2, 2], owners
        # The sessions on the two other instances end; the loaded one keeps its two.
        loaded = owners[0]
        for i, ws in list(held.items()):
            if owners[i] != loaded:
                await ws.close()
                del held[i]
        await asyncio.to_thread(wait_until, lambda: open_sessions(gateway.port) == 2, 10, "two sessions left open")
        # Four new sessions all go to the two empty instances, two each.
        fresh = []
        for i in range(4):
            fresh.append(await connect(gateway, f"/ls/ws/v1/fresh/{i}/"))
        new_owners = sorted(owner(trio, f"/fresh/{i}/") for i in range(4))
        for ws in [*held.values(), *fresh]:
            await ws.close()
        return loaded, new_owners

    loaded, new_owners = run(scenario())
    others = sorted({0, 1, 2} - {loaded})
    assert new_owners == [others[0], others[0], others[1], others[1]]


def test_a_dead_instance_costs_clients_nothing_and_is_tried_again_after_eject_for(log_dir, trio):
    dead_port = closed_port()
    a, b, _ = trio
    gateway = lb_gateway(log_dir, "lb-dead", [ws_service("dead", [a.port, b.port, dead_port])], ejectFor="1s")

    async def sessions(tag: str, count: int):
        for i in range(count):
            await echo_once(gateway, f"/dead/ws/v1/{tag}/{i}")

    # No session fails although a third of the picks would go to the dead instance.
    started = time.monotonic()
    run(sessions("alive", 30))
    assert sum(served_by([a, b], "/alive/")) == 30
    assert log_count(gateway, r"connect failed; trying another instance") >= 1
    ejections = log_count(gateway, r"instance ejected after a failed connect")
    assert ejections >= 1
    if time.monotonic() - started < 1.0:
        # Within ejectFor the dead instance was tried once, then left alone.
        assert ejections == 1

    # The instance comes back on its port; once ejectFor has passed, it gets sessions again.
    revived = ScriptedUpstream(port=dead_port).start()
    try:
        def reached() -> bool:
            run(sessions("revived", 3))
            return len(revived.find("/revived/")) > 0

        wait_until(reached, 10, "a session to reach the revived instance", interval=0.1)
        assert log_count(gateway, r"instance back in rotation after ejectFor") >= 1
    finally:
        revived.stop()


@pytest.mark.parametrize("error_mode", ["close-code", "http-status"])
def test_when_every_instance_is_dead_the_client_gets_the_last_error_after_the_retries(log_dir, error_mode):
    ports = [closed_port() for _ in range(3)]
    gateway = lb_gateway(log_dir, f"lb-all-dead-{error_mode}", [ws_service("alldead", ports)], error_mode)

    async def scenario():
        async with connect(gateway, "/alldead/ws/v1/x") as ws:
            return await expect_close(ws)

    async def refused_status():
        with pytest.raises(InvalidStatus) as info:
            async with connect(gateway, "/alldead/ws/v1/x"):
                pass
        return info.value.response.status_code

    for attempt in range(2):  # the second time every instance is ejected, and all are tried anyway
        started = time.monotonic()
        if error_mode == "close-code":
            code, reason = run(scenario())
            assert code == 1011
            assert reason in [expected_reason(f"{ERR}ws://127.0.0.1:{p}/alldead/ws/x: connection refused") for p in ports]
        else:
            assert run(refused_status()) == 502
        # Three tries with 50 ms and 100 ms between them.
        assert time.monotonic() - started >= 0.15
        tried = wait_until(lambda: log_count(gateway, r"connect failed; trying another instance") == 2 * (attempt + 1),
                           10, "two retries logged per session")
        assert tried


def test_sticky_routing_by_x_instance_id(log_dir, trio):
    ports = [u.port for u in trio]
    gateway = lb_gateway(
        log_dir,
        "lb-sticky",
        [ws_service("sticky", ports, **{"apiml.lb.type": "headerRequest"}), ws_service("plain", ports)],
    )
    pinned = f"{HOST}:{trio[1].port}"

    async def scenario():
        for i in range(6):
            await echo_once(gateway, f"/sticky/ws/v1/pinned/{i}", additional_headers={"X-InstanceId": pinned})
        for i in range(3):
            await echo_once(gateway, f"/sticky/ws/v1/free/{i}")
            await echo_once(gateway, f"/plain/ws/v1/ignored/{i}", additional_headers={"X-InstanceId": pinned})
        async with connect(gateway, "/sticky/ws/v1/nowhere", additional_headers={"X-InstanceId": "127.0.0.1:1"}) as ws:
            return await expect_close(ws)

    close = run(scenario())
    assert served_by(trio, "/pinned/") == [0, 6, 0]
    # The header reaches the service as sent.
    assert all(r.header("X-InstanceId") == pinned for r in trio[1].find("/pinned/"))
    # Without the header, or without the metadata, sessions are balanced as usual.
    assert served_by(trio, "/free/") == [1, 1, 1]
    assert served_by(trio, "/ignored/") == [1, 1, 1]
    # A sticky request for an instance that is not UP is refused rather than sent elsewhere.
    assert close == (1012, "Requested service sticky does not have available instance")


def http_request(port: int, method: str, path: str, body: bytes | None = None):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_http_requests_without_a_body_are_retried_on_another_instance(log_dir, demo):
    # ejectFor 0 keeps the dead instance in rotation, so that every other pick goes to it.
    dead = closed_port()
    svc = service("httpdead", [(HOST, dead), (HOST, demo.port)], demo_routes())
    gateway = lb_gateway(log_dir, "lb-http", [svc], ejectFor="0s")
    for _ in range(6):
        status, body = http_request(gateway.port, "GET", "/httpdead/api/v1/greeting?name=Ann")
        assert status == 200, body
        assert json.loads(body)["instanceId"] == demo.instance_id
    # A request with a body is not sent again: half of them meet the dead instance.
    statuses = [http_request(gateway.port, "POST", "/httpdead/api/v1/request", b"payload")[0] for _ in range(4)]
    assert sorted(statuses) == [200, 200, 502, 502]
