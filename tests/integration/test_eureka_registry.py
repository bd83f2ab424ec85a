"""The embedded Eureka registry with real, unmodified third-party clients.

The registry runs alone (the `registry` example of crates/registry, built by `cargo test`) until
`wsgate serve` hosts it. py-eureka-client (reads XML) and eureka-js-client (reads JSON, sends no
instanceId and a lower-case app) each run in a child process (tests/integration/eureka/), register,
heartbeat, and report what they discover of the other on stdout: each sees the other's instance,
so both formats are right, and each sees it leave after a cancel.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import urllib.error
import urllib.request

import pytest

import support
from support import HOST, Child, wait_until

EUREKA_DIR = support.REPO / "tests" / "integration" / "eureka"
REGISTRY_LINE = re.compile(r"^wsgate-registry listening on 127\.0\.0\.1:(\d+)$")
JSON_LINE = re.compile(r"^\{.*\}$")


class ClientProcess:
    """A Eureka client child whose stdout is JSON events (see tests/integration/eureka/)."""

    def __init__(self, child: Child):
        self.child = child
        self.events: list[dict] = []

    def next_event(self, name: str, timeout: float = 20.0, where=lambda e: True) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name!r} event within {timeout}s; saw {self.events!r}\n{self.child.describe()}")
            event = json.loads(self.child.wait_line(JSON_LINE, timeout=remaining).group(0))
            self.events.append(event)
            if event.get("event") == name and where(event):
                return event


@pytest.fixture
def registry(log_dir):
    child = Child(
        "eureka-registry",
        [support.binary("examples/registry"), "--port", "0", "--eviction-interval-ms", "200"],
        log_dir,
    )
    port = int(child.wait_line(REGISTRY_LINE).group(1))
    yield port
    child.stop()


def fetch(port: int, path: str, accept: str = "application/json") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{HOST}:{port}/eureka{path}", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def instance(port: int, app: str, instance_id: str) -> dict | None:
    status, body = fetch(port, f"/apps/{app}/{urllib.request.quote(instance_id, safe='')}")
    return json.loads(body)["instance"] if status == 200 else None


def start_js(log_dir, registry_port: int, app: str, port: int, discover: str, name: str = "") -> ClientProcess:
    node = shutil.which("node")
    assert node, "node not found"
    script = EUREKA_DIR / "js_client.js"
    assert (EUREKA_DIR / "node_modules" / "eureka-js-client").is_dir(), "run tests/integration/setup.sh (npm ci in tests/integration/eureka)"
    return ClientProcess(Child(name or f"eureka-js-{app}", [node, script, registry_port, app, port, discover], log_dir))


def start_py(log_dir, registry_port: int, app: str, port: int, discover: str) -> ClientProcess:
    url = f"http://{HOST}:{registry_port}/eureka/"
    return ClientProcess(Child(f"eureka-py-{app}", [sys.executable, EUREKA_DIR / "py_client.py", url, app, port, discover], log_dir))


def test_py_and_js_clients_register_heartbeat_and_discover_each_other(registry, log_dir):
    py = start_py(log_dir, registry, "py-svc", 9090, "jqservice")
    js = start_js(log_dir, registry, "jqservice", 8080, "PY-SVC")
    try:
        py.next_event("registered")
        js.next_event("registered")

        # As the registry stores them: js has no instanceId (the id is its hostName), apps upper-cased.
        js_instance = wait_until(lambda: instance(registry, "JQSERVICE", "localhost"), 10, "JQSERVICE/localhost registered")
        assert (js_instance["app"], js_instance["port"]["$"], js_instance["status"]) == ("JQSERVICE", 8080, "UP")
        py_instance = wait_until(lambda: instance(registry, "PY-SVC", "127.0.0.1:py-svc:9090"), 10, "PY-SVC registered")
        assert py_instance["metadata"]["apiml.routes.ws_v1.gatewayUrl"] == "ws/v1"

        # Each client's discovery sees the other: py through XML, js through JSON.
        py.next_event("discovered", where=lambda e: [i["port"] for i in e["instances"]] == [8080])
        js.next_event("discovered", where=lambda e: [(i["instanceId"], i["port"]) for i in e["instances"]] == [("127.0.0.1:py-svc:9090", 9090)])

        # Heartbeats reach live leases (a 404 would make the clients register again instead).
        js.next_event("heartbeat")
        for app, instance_id, first in (("JQSERVICE", "localhost", js_instance), ("PY-SVC", "127.0.0.1:py-svc:9090", py_instance)):
            wait_until(
                lambda: (instance(registry, app, instance_id) or {}).get("leaseInfo", {}).get("lastRenewalTimestamp", 0)
                > first["leaseInfo"]["lastRenewalTimestamp"],
                10,
                f"a heartbeat of {app} to renew its lease",
            )

        # A cancelled js client leaves the registry at once, and py's delta (XML) shows it gone.
        js.child.proc.terminate()
        js.next_event("deregistered", timeout=10)
        wait_until(lambda: instance(registry, "JQSERVICE", "localhost") is None, 5, "JQSERVICE to be cancelled")
        py.next_event("discovered", where=lambda e: e["instances"] == [])
    finally:
        js.child.stop()
        py.child.stop()
    wait_until(lambda: fetch(registry, "/apps/PY-SVC")[0] == 404, 5, "PY-SVC to be cancelled on stop")


def test_a_heartbeat_404_makes_the_js_client_register_again(registry, log_dir):
    js = start_js(log_dir, registry, "jqservice", 8081, "JQSERVICE", name="eureka-js-reregister")
    try:
        js.next_event("registered")
        wait_until(lambda: instance(registry, "JQSERVICE", "localhost"), 10, "JQSERVICE registered")
        # Drop the lease behind the client's back, as an eviction would.
        request = urllib.request.Request(f"http://{HOST}:{registry}/eureka/apps/JQSERVICE/localhost", method="DELETE")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        # Its next heartbeat gets 404, and it registers again.
        js.next_event("registered")
        wait_until(lambda: instance(registry, "JQSERVICE", "localhost"), 10, "JQSERVICE registered again")
    finally:
        js.child.stop()


def test_reads_negotiate_xml_unless_json_is_asked_for(registry, log_dir):
    status, body = fetch(registry, "/apps", accept="")
    assert status == 200 and body.startswith(b"<applications>"), body[:200]
    status, body = fetch(registry, "/apps", accept="application/json")
    assert status == 200 and json.loads(body)["applications"]["application"] == []
