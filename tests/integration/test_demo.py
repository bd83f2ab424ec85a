"""`wsgate demo`, the README's first command: gateway, embedded registry and two demo instances in one
process; the instances register themselves with the registry over the Eureka REST API. The gateway serves
wss and https with a development CA and certificate it makes on its first start and keeps in its state
directory; a client trusting the printed CA connects, hostname checks on."""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path

from support import GATEWAY_LINE, HOST, REGISTRY_LINE, Child, binary, connect, expect_close, http_request, recv, run

DEMO_INSTANCES = re.compile(r"^demo service discoverableclient: demo-1 at 127\.0\.0\.1:(\d+), demo-2 at 127\.0\.0\.1:(\d+)$")
CA_LINE = re.compile(r"^development CA: (/\S+) \((created now|kept from an earlier start(?:, with a new certificate)?)\b.*\)$")
CERTIFICATE_LINE = re.compile(r"^certificate for localhost, 127\.0\.0\.1 and ::1: (/\S+) \(key (/\S+)\)$")
TRY_LINE = re.compile(r"^try: (wss://localhost:(\d+)/discoverableclient/ws/v1/uppercase) ")


class Demo:
    """A running `wsgate demo` and what it printed."""

    def __init__(self, log_dir: Path, name: str, state_dir: Path):
        self.child = Child(name, [binary("wsgate"), "demo", "--port", "0", "--registry-port", "0", "--state-dir", state_dir], log_dir)
        self.port = int(self.child.wait_line(GATEWAY_LINE).group(1))
        self.registry_port = int(self.child.wait_line(REGISTRY_LINE).group(1))
        self.demo_ports = sorted(int(p) for p in self.child.wait_line(DEMO_INSTANCES).groups())
        ca = self.child.wait_line(CA_LINE)
        self.ca, self.ca_state = Path(ca.group(1)), ca.group(2)
        certificate = self.child.wait_line(CERTIFICATE_LINE)
        self.certificate, self.key = Path(certificate.group(1)), Path(certificate.group(2))
        url = self.child.wait_line(TRY_LINE)
        assert int(url.group(2)) == self.port, url.group(0)
        self.url = url.group(1)
        # What the README tells users to do: trust the printed CA, nothing else.
        self.context = ssl.create_default_context(cafile=str(self.ca))

    def https(self, path: str) -> tuple[int, bytes]:
        return http_request(f"https://localhost:{self.port}{path}", context=self.context)

    def greeting(self) -> str:
        status, body = self.https("/discoverableclient/api/v1/greeting?name=demo")
        assert status == 200, body
        return json.loads(body)["instanceId"]

    def uppercase_session(self) -> None:
        async def session():
            async with connect(self.url, subprotocols=["v12.stomp"], ssl=self.context) as ws:
                assert ws.subprotocol == "v12.stomp"
                await ws.send("hello from the readme")
                assert await recv(ws) == "HELLO FROM THE README"
                await ws.send("bye")
                assert await recv(ws) == "BYE"
                assert await expect_close(ws) == (1000, "")

        run(session())


def test_demo_answers_through_the_gateway_over_tls_and_balances(tmp_path):
    state = tmp_path / "state"
    demo = Demo(tmp_path, "wsgate-demo", state)
    try:
        assert demo.ca_state == "created now"
        assert demo.ca.parent == state and demo.certificate.parent == state and demo.key.parent == state
        assert (demo.key.stat().st_mode & 0o777) == 0o600 and (state.stat().st_mode & 0o777) == 0o700

        # The instances came through the registry, not through static config: the route table says
        # so, and the registry holds them under Spring's host:app:port ids.
        status, body = demo.https("/application/routes")
        assert status == 200, body
        (listed,) = json.loads(body)["services"]
        assert listed["serviceId"].lower() == "discoverableclient"
        assert sorted((i["port"], i["source"], i["status"]) for i in listed["instances"]) == [(p, "embedded", "UP") for p in demo.demo_ports]
        assert {r["gatewayUrl"] for r in listed["routes"]} == {"ws/v1", "api/v1", "ui/v1"}
        status, body = http_request(f"http://{HOST}:{demo.registry_port}/eureka/apps/DISCOVERABLECLIENT", headers={"Accept": "application/json"})
        assert status == 200, body
        ids = sorted(i["instanceId"] for i in json.loads(body)["application"]["instance"])
        assert ids == sorted(f"127.0.0.1:discoverableclient:{p}" for p in demo.demo_ports)

        demo.uppercase_session()
        # Round robin over the two instances, on the HTTP side of the same route table.
        assert sorted(demo.greeting() for _ in range(4)) == ["demo-1", "demo-1", "demo-2", "demo-2"]
    finally:
        demo.child.stop()
    # On Ctrl-C or SIGTERM the instances cancel their registrations before they stop.
    assert demo.child.proc.returncode == 0, demo.child.describe()
    assert demo.child.stderr_path.read_text(errors="replace").count("registration cancelled") == 2, demo.child.stderr_path.read_text()


def test_demo_keeps_its_ca_and_certificate_across_starts_and_renews_a_lost_certificate_with_the_same_ca(tmp_path):
    state = tmp_path / "state"
    first = Demo(tmp_path, "wsgate-demo-first", state)
    first.child.stop()
    files = {path: path.read_bytes() for path in (first.ca, first.certificate, first.key)}

    second = Demo(tmp_path, "wsgate-demo-second", state)
    try:
        assert second.ca_state == "kept from an earlier start"
        assert {path: path.read_bytes() for path in files} == files
        # A client that trusted the CA of the first start connects to the second without a change.
        second.context = first.context
        second.uppercase_session()
    finally:
        second.child.stop()

    # A lost certificate key: a new certificate from the same CA, still trusted by that client.
    first.key.unlink()
    third = Demo(tmp_path, "wsgate-demo-third", state)
    try:
        assert third.ca_state == "kept from an earlier start, with a new certificate"
        assert first.ca.read_bytes() == files[first.ca] and first.certificate.read_bytes() != files[first.certificate]
        third.context = first.context
        third.uppercase_session()
    finally:
        third.child.stop()


def test_demo_with_tls_turned_off_from_the_environment_serves_plain_ws(tmp_path):
    state = tmp_path / "state"
    child = Child("wsgate-demo-plain", [binary("wsgate"), "demo", "--port", "0", "--registry-port", "0", "--state-dir", state],
                  tmp_path, env={"SERVER_SSL_ENABLED": "false"})
    try:
        port = int(child.wait_line(GATEWAY_LINE).group(1))
        child.wait_line(re.compile(rf"^try: ws://127\.0\.0\.1:{port}/discoverableclient/ws/v1/uppercase "))
        assert not state.exists(), "no certificate is made for a demo without TLS"
        status, body = http_request(f"http://{HOST}:{port}/discoverableclient/api/v1/greeting?name=plain")
        assert status == 200, body
    finally:
        child.stop()
    assert not any(line.startswith("development CA") for line in child.stdout_seen), child.stdout_seen
