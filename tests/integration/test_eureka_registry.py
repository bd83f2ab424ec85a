"""The embedded Eureka registry of `wsgate serve` with real, unmodified third-party clients.

The gateway runs with `discovery.embedded.port: 0`. py-eureka-client (reads XML) and eureka-js-client
(reads JSON, sends no instanceId and a lower-case app) each run in a child process
(tests/integration/eureka/), register, heartbeat, and report what they discover of the other on
stdout: each sees the other's instance, so both formats are right, and each sees it leave after a
cancel. test_discovery.py checks that the gateway routes to what they register.
"""

from __future__ import annotations

import json

import pytest

from support import (
    eureka_instance,
    http_request,
    registry_gateway_config,
    start_gateway,
    start_js,
    start_py,
    wait_until,
)


@pytest.fixture
def gw(log_dir, request):
    gateway = start_gateway(log_dir, f"registry-{request.node.name}", registry_gateway_config())
    yield gateway
    gateway.child.stop()


def fetch(gw, path: str, accept: str = "application/json") -> tuple[int, bytes]:
    return http_request(f"{gw.eureka}{path}", headers={"Accept": accept} if accept else {})


def test_py_and_js_clients_register_heartbeat_and_discover_each_other(gw, log_dir):
    py = start_py(log_dir, gw.registry_port, "py-svc", 9090, "jqservice")
    js = start_js(log_dir, gw.registry_port, "jqservice", 8080, "PY-SVC")
    try:
        py.next_event("registered")
        js.next_event("registered")

        # As the registry stores them: js has no instanceId (the id is its hostName), apps upper-cased.
        js_instance = wait_until(lambda: eureka_instance(gw, "JQSERVICE", "localhost"), 10, "JQSERVICE/localhost registered")
        assert (js_instance["app"], js_instance["port"]["$"], js_instance["status"]) == ("JQSERVICE", 8080, "UP")
        py_instance = wait_until(lambda: eureka_instance(gw, "PY-SVC", "127.0.0.1:py-svc:9090"), 10, "PY-SVC registered")
        assert py_instance["metadata"]["apiml.routes.ws_v1.gatewayUrl"] == "ws/v1"

        # Each client's discovery sees the other: py through XML, js through JSON.
        py.next_event("discovered", where=lambda e: [i["port"] for i in e["instances"]] == [8080])
        js.next_event("discovered", where=lambda e: [(i["instanceId"], i["port"]) for i in e["instances"]] == [("127.0.0.1:py-svc:9090", 9090)])

        # Heartbeats reach live leases (a 404 would make the clients register again instead).
        js.next_event("heartbeat")
        for app, instance_id, first in (("JQSERVICE", "localhost", js_instance), ("PY-SVC", "127.0.0.1:py-svc:9090", py_instance)):
            wait_until(
                lambda: (eureka_instance(gw, app, instance_id) or {}).get("leaseInfo", {}).get("lastRenewalTimestamp", 0)
                > first["leaseInfo"]["lastRenewalTimestamp"],
                10,
                f"a heartbeat of {app} to renew its lease",
            )

        # A cancelled js client leaves the registry at once, and py's delta (XML) shows it gone.
        js.child.proc.terminate()
        js.next_event("deregistered", timeout=10)
        wait_until(lambda: eureka_instance(gw, "JQSERVICE", "localhost") is None, 5, "JQSERVICE to be cancelled")
        py.next_event("discovered", where=lambda e: e["instances"] == [])
    finally:
        js.child.stop()
        py.child.stop()
    wait_until(lambda: fetch(gw, "/apps/PY-SVC")[0] == 404, 5, "PY-SVC to be cancelled on stop")


def test_a_heartbeat_404_makes_the_js_client_register_again(gw, log_dir):
    js = start_js(log_dir, gw.registry_port, "jqservice", 8081, "JQSERVICE", name="eureka-js-reregister")
    try:
        js.next_event("registered")
        wait_until(lambda: eureka_instance(gw, "JQSERVICE", "localhost"), 10, "JQSERVICE registered")
        # Drop the lease behind the client's back, as an eviction would.
        assert http_request(f"{gw.eureka}/apps/JQSERVICE/localhost", "DELETE")[0] == 200
        # Its next heartbeat gets 404, and it registers again.
        js.next_event("registered")
        wait_until(lambda: eureka_instance(gw, "JQSERVICE", "localhost"), 10, "JQSERVICE registered again")
    finally:
        js.child.stop()


def test_reads_negotiate_xml_unless_json_is_asked_for(gw):
    status, body = fetch(gw, "/apps", accept="")
    assert status == 200 and body.startswith(b"<applications>"), body[:200]
    status, body = fetch(gw, "/apps", accept="application/json")
    assert status == 200 and json.loads(body)["applications"]["application"] == []
