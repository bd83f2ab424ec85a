"""The gateway as a client of an external Eureka cluster: gateway B follows the embedded registry of
gateway A over the Eureka REST API (`eureka.client.serviceUrl.defaultZone`), and routes sessions to
the services registered there.

B also registers itself at A as app GATEWAY, heartbeats, and cancels when it stops.

A's registry is the "cluster"; B runs no embedded registry. B's defaultZone lists a dead URL first,
so every fetch B makes proves its failover. The WebSocket service is the suite's scripted upstream
(a real `websockets` server that echoes), registered at A by plain HTTP POST.
"""

from __future__ import annotations

import json
import time

import pytest

import support
from support import (
    connect,
    expect_close,
    gateway_config,
    http_request,
    recv,
    register,
    registration,
    registry_gateway_config,
    route_instances,
    route_metadata,
    run,
    serve_until_exit,
    start_gateway,
    up_instances,
    wait_until,
)

NO_INSTANCE = "Requested service {} does not have available instance"
FETCH_INTERVAL = 1


@pytest.fixture(scope="module")
def cluster(log_dir):
    """Gateway A, whose embedded registry plays the external Eureka cluster."""
    gateway = start_gateway(log_dir, "eureka-cluster", registry_gateway_config())
    yield gateway
    gateway.child.stop()


@pytest.fixture(scope="module")
def follower(log_dir, cluster):
    """Gateway B: no embedded registry, following A through a dead URL and then A's."""
    config = gateway_config([])
    dead = f"http://{support.HOST}:{support.closed_port()}/eureka"
    config["eureka"] = {"client": {
        "serviceUrl": {"defaultZone": f"{dead},{cluster.eureka}"},
        "registryFetchIntervalSeconds": FETCH_INTERVAL,
    }}
    gateway = start_gateway(log_dir, "eureka-follower", config)
    assert gateway.registry_port is None
    yield gateway
    gateway.child.stop()


def test_a_service_registered_at_the_cluster_is_routed_by_the_follower_and_leaves_on_cancel(cluster, follower, scripted):
    app, instance_id = "remote-ws", f"127.0.0.1:remote-ws:{scripted.port}"
    body = registration(app, instance_id, scripted.port, route_metadata({"ws_v1": ("ws/v1", "/remote-ws/ws")}))
    assert register(cluster, app, body)[0] == 204

    # Within a few fetch intervals B lists it, as coming from the external cluster.
    listed = wait_until(lambda: up_instances(follower, app), 5 * FETCH_INTERVAL + 5, f"{app} routable at B")
    assert [(i["instanceId"], i["port"], i["source"], i["status"]) for i in listed] == [(instance_id, scripted.port, "eureka", "UP")]

    async def session():
        async with connect(follower, "/remote-ws/ws/v1/via-b?x=1") as ws:
            await ws.send("through the external cluster")
            return await recv(ws)

    assert run(session()) == "through the external cluster"
    assert scripted.wait_record("via-b").path == "/remote-ws/ws/via-b?x=1"

    # Cancelled at A: B's route answers "no available instance" within a few fetch intervals.
    assert http_request(f"{cluster.eureka}/apps/{app.upper()}/{instance_id}", "DELETE")[0] == 200
    wait_until(lambda: route_instances(follower, app) == [], 5 * FETCH_INTERVAL, f"{app} to leave B after its cancel")

    async def refused():
        async with connect(follower, "/remote-ws/ws/v1/after-cancel") as ws:
            return await expect_close(ws)

    assert run(refused()) == (1012, NO_INSTANCE.format(app))


def gateway_instances(cluster) -> list[dict]:
    """The GATEWAY instances A's registry lists (JSON), [] when it has none."""
    status, body = http_request(f"{cluster.eureka}/apps/GATEWAY", headers={"Accept": "application/json"})
    if status == 404:
        return []
    assert status == 200, (status, body)
    instances = json.loads(body)["application"]["instance"]
    return instances if isinstance(instances, list) else [instances]


def test_the_gateway_registers_itself_heartbeats_and_cancels_on_sigterm(log_dir, cluster):
    renewal, duration = 1, 3
    config = gateway_config([])
    dead = f"http://{support.HOST}:{support.closed_port()}/eureka"
    config["eureka"] = {
        "client": {"serviceUrl": {"defaultZone": f"{dead},{cluster.eureka}"}, "registryFetchIntervalSeconds": FETCH_INTERVAL},
        "instance": {"leaseRenewalIntervalInSeconds": renewal},
    }
    gateway = start_gateway(log_dir, "eureka-registering", config)
    instance_id = f"{support.HOST}:gateway:{gateway.port}"

    def mine():
        return [i for i in gateway_instances(cluster) if i["instanceId"] == instance_id]

    # Registered (through the dead URL first) as Zowe's gateway is.
    [instance] = wait_until(mine, 10, "B registered at A as GATEWAY")
    assert (instance["app"], instance["hostName"], instance["ipAddr"], instance["status"], instance["vipAddress"]) == ("GATEWAY", support.HOST, support.HOST, "UP", "gateway")
    assert instance["port"]["$"] == gateway.port
    assert instance["leaseInfo"]["renewalIntervalInSecs"] == renewal
    assert instance["leaseInfo"]["durationInSecs"] == duration
    assert instance["metadata"]["apiml.service.title"] == "wsgate"

    # Heartbeats keep it past several lease durations (A evicts every 200 ms).
    deadline = time.monotonic() + 2 * duration + 1
    while time.monotonic() < deadline:
        assert mine(), "B's lease expired although it heartbeats"
        time.sleep(0.25)

    # SIGTERM: B cancels before it exits, so A drops it at once, not after the lease.
    gateway.child.stop()
    assert gateway.child.proc.returncode == 0, gateway.child.proc.returncode
    assert mine() == []


def test_a_bad_service_url_stops_the_gateway_with_exit_64_naming_the_key(tmp_path):
    config = gateway_config([])
    config["eureka"] = {"client": {"serviceUrl": {"defaultZone": "http://127.0.0.1:1/eureka,ftp://eureka.example/eureka"}}}
    done = serve_until_exit(tmp_path, support.to_yaml(config))
    assert done.returncode == 64, done
    assert "eureka.client.serviceUrl.defaultZone" in done.stderr.decode(), done.stderr
