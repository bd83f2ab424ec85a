"""TLS towards services: wss and https to secure instances, verified against server.ssl.trustStore.

Certificates are made at test time with the openssl CLI: a CA the gateway trusts, an unrelated CA,
service certificates that are good, signed by the other CA, expired, or made out to another host,
and a client certificate for mutual TLS. The services are Python `websockets` servers with an
`ssl.SSLContext` (the threaded server: its TLS handshake runs on a blocking socket, so a refused
client certificate is answered with a TLS alert, as most servers do) and `http.server` over TLS for
REST. The main gateway speaks TLS to its clients too, so those sessions are wss on both legs.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from support import (
    close_of,
    first_reply,
    exchange,
    HOST,
    LOCAL_NAMES,
    Pki,
    connect,
    expected_reason,
    gateway_config,
    register,
    registration,
    registry_gateway_config,
    route_instances,
    route_metadata,
    run,
    recv,
    serve_until_exit,
    service,
    start_gateway,
    wait_until,
)

ROUTES = {"ws_v1": ("ws/v1", "/ws"), "api_v1": ("api/v1", "/api")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    pki = Pki.create(tmp_path_factory.mktemp("tls-services"), "ca", "other-ca")
    pki.issue("good", "ca", LOCAL_NAMES)
    pki.issue("wrong-ca", "other-ca", LOCAL_NAMES)
    pki.issue("expired", "ca", LOCAL_NAMES, dates=("-startdate", "20240101000000Z", "-enddate", "20240102000000Z"))
    pki.issue("wrong-host", "ca", "DNS:other.example")
    pki.issue("gateway-client", "ca", "DNS:wsgate-gateway", usage="clientAuth")
    pki.issue("ipv6", "ca", "IP:::1")
    return pki


def server_context(pki: Pki, name: str, client_ca: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.pem(name), pki.key(name))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.pem(client_ca))
    return context


# ------------------------------------------------------------------------ services


@dataclass
class TlsWsService:
    """A wss echo service (websockets' threaded server). It records the paths it served and the SNI
    names clients sent; the message `whoami` is answered with the client certificate's CN, or `none`."""

    context: ssl.SSLContext
    host: str = HOST
    paths: list[str] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)

    def start(self) -> "TlsWsService":
        from websockets.sync.server import serve

        self.context.sni_callback = lambda _socket, name, _context: self.sni.append(name)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.server = serve(self._handler, self.host, 0, ssl=self.context, max_size=None, family=family)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"tls-ws-{self.port}", daemon=True)
        self.thread.start()
        return self

    def _handler(self, ws) -> None:
        self.paths.append(ws.request.path)
        for message in ws:
            if message == "whoami":
                subject = dict(pair[0] for pair in (ws.socket.getpeercert() or {}).get("subject", ()))
                ws.send(subject.get("commonName", "none"))
            else:
                ws.send(message)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


class TlsRestService:
    """An https REST service: every GET is answered with JSON naming its path."""

    def __init__(self, context: ssl.SSLContext, host: str = HOST):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                body = json.dumps({"path": self.path, "tls": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server_class = http.server.ThreadingHTTPServer
        if ":" in host:
            server_class = type("ThreadingHTTPServerV6", (server_class,), {"address_family": socket.AF_INET6})
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"tls-rest-{self.port}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@dataclass
class Services:
    good: TlsWsService
    wrong_ca: TlsWsService
    expired: TlsWsService
    wrong_host: TlsWsService
    mtls: TlsWsService
    rest: TlsRestService
    rest_wrong_ca: TlsRestService
    rest_mtls: TlsRestService
    ipv6: TlsWsService
    rest_ipv6: TlsRestService


@pytest.fixture(scope="module")
def services(pki):
    started = Services(
        good=TlsWsService(server_context(pki, "good")).start(),
        wrong_ca=TlsWsService(server_context(pki, "wrong-ca")).start(),
        expired=TlsWsService(server_context(pki, "expired")).start(),
        wrong_host=TlsWsService(server_context(pki, "wrong-host")).start(),
        mtls=TlsWsService(server_context(pki, "good", client_ca="ca")).start(),
        rest=TlsRestService(server_context(pki, "good")),
        rest_wrong_ca=TlsRestService(server_context(pki, "wrong-ca")),
        rest_mtls=TlsRestService(server_context(pki, "good", client_ca="ca")),
        ipv6=TlsWsService(server_context(pki, "ipv6"), host="::1").start(),
        rest_ipv6=TlsRestService(server_context(pki, "ipv6"), host="::1"),
    )
    yield started
    for service in vars(started).values():
        service.stop()


def secure_service(service_id: str, *ports: int, host: str = HOST) -> dict:
    """A static service whose instances on `host` (one per port) speak TLS."""
    described = service(service_id, [(host, port) for port in ports], ROUTES)
    for instance in described["instances"]:
        instance["secure"] = True
    return described


def all_services(s: Services) -> list[dict]:
    return [
        secure_service("good", s.good.port),
        secure_service("byname", s.good.port, host="localhost"),
        secure_service("wrongca", s.wrong_ca.port),
        secure_service("expired", s.expired.port),
        secure_service("wronghost", s.wrong_host.port),
        secure_service("mtls", s.mtls.port),
        secure_service("rest", s.rest.port),
        secure_service("restwrongca", s.rest_wrong_ca.port),
        secure_service("restmtls", s.rest_mtls.port),
        secure_service("mixed", s.wrong_ca.port, s.good.port),
        secure_service("ipv6", s.ipv6.port, host="::1"),
        secure_service("restipv6", s.rest_ipv6.port, host="::1"),
    ]


# ------------------------------------------------------------------------ gateways


def with_ssl(config: dict, **ssl_keys) -> dict:
    config["server"]["ssl"] = {"enabled": False, **{k: str(v) if isinstance(v, Path) else v for k, v in ssl_keys.items()}}
    return config


@pytest.fixture(scope="module")
def gw(log_dir, pki, services):
    """TLS on both legs: wss and https for clients, trustStore for services, no client certificate."""
    config = with_ssl(gateway_config(all_services(services)), trustStore=pki.pem("ca"))
    config["server"]["ssl"].update(enabled=True, certificate=str(pki.pem("good")), certificateKey=str(pki.key("good")))
    return start_gateway(log_dir, "tls-services", config)


@pytest.fixture(scope="module")
def gw_http(log_dir, pki, services):
    """Plain ws towards clients, failures as HTTP statuses."""
    config = with_ssl(gateway_config(all_services(services), "http-status"), trustStore=pki.pem("ca"))
    return start_gateway(log_dir, "tls-services-http", config)


@pytest.fixture(scope="module")
def gw_mtls(log_dir, pki, services):
    """With the client certificate for services that demand one."""
    config = with_ssl(gateway_config(all_services(services)), trustStore=pki.pem("ca"),
                      clientCertificate=pki.pem("gateway-client"), clientCertificateKey=pki.key("gateway-client"))
    return start_gateway(log_dir, "tls-services-mtls", config)


@pytest.fixture(scope="module")
def gw_unverified(log_dir, services):
    """verifyServices: false."""
    config = with_ssl(gateway_config(all_services(services)), verifyServices=False)
    return start_gateway(log_dir, "tls-services-unverified", config)


@pytest.fixture(scope="module")
def client_context(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.pem("ca")))


def https_get(gateway, context, path: str) -> tuple[int, bytes]:
    status, _, body = exchange(gateway.port, "GET", path, context=context, timeout=10)
    return status, body


def http_get(gateway, path: str) -> tuple[int, bytes]:
    status, _, body = exchange(gateway.port, "GET", path, timeout=10)
    return status, body


def refusal(port: int) -> str:
    """The start of every close reason and status body for a service at `port` reached on /ws."""
    return f"Error opening session to WebSocket service at wss://{HOST}:{port}/ws: TLS: "


def refused_status(url: str) -> tuple[int, str]:
    """The status and body of a handshake answered with an HTTP error."""

    async def session():
        async with connect(url):
            pass

    with pytest.raises(InvalidStatus) as refused:
        run(session())
    response = refused.value.response
    return response.status_code, response.body.decode("utf-8", "replace")


def gateway_log(gateway, text: str) -> str:
    return wait_until(lambda: text in gateway.child.stderr_text(200_000) and gateway.child.stderr_text(200_000),
                      10, f"{text!r} in the gateway's log")


# --------------------------------------------------------------------------- tests


def test_wss_session_through_the_gateway_to_a_wss_service(gw, client_context, services):
    async def session():
        async with connect(gw.wss + "/good/ws/v1", ssl=client_context) as ws:
            await ws.send("hello over tls")
            assert await recv(ws) == "hello over tls"
            big = "x" * (1 << 20)
            await ws.send(big)
            assert await recv(ws) == big
            status, body = https_get(gw, client_context, "/application/websockets")
            assert status == 200, body
            return json.loads(body)

    listed = run(session())
    assert isinstance(listed, list), listed
    assert f"wss://{HOST}:{services.good.port}/ws" in [s["serviceUrl"] for s in listed], listed
    assert "/ws" in services.good.paths
    # An IP literal is checked against the certificate's IP addresses, and never sent as SNI.
    assert all(name is None for name in services.good.sni), services.good.sni


def test_a_host_name_is_sent_as_sni_and_checked_against_the_dns_names(gw, client_context, services):
    assert first_reply(gw.wss + "/byname/ws/v1", "", "by name", ssl=client_context) == "by name"
    assert "localhost" in services.good.sni, services.good.sni


def test_an_ipv6_instance_is_checked_against_the_certificate_s_ip_addresses(gw, client_context, services):
    assert first_reply(gw.wss + "/ipv6/ws/v1", "", "over ::1", ssl=client_context) == "over ::1"
    assert services.ipv6.paths == ["/ws"] and all(name is None for name in services.ipv6.sni), services.ipv6.sni
    status, body = https_get(gw, client_context, "/restipv6/api/v1/v6")
    assert status == 200 and json.loads(body)["path"] == "/api/v6", body


def test_https_request_to_a_tls_rest_service(gw, client_context):
    status, body = https_get(gw, client_context, "/rest/api/v1/items?id=7")
    assert status == 200, body
    assert json.loads(body) == {"path": "/api/items?id=7", "tls": True}


def test_a_service_signed_by_an_unknown_ca_gets_1011_with_the_tls_reason(gw, client_context, services):
    code, reason = run(close_of(gw.wss + "/wrongca/ws/v1", ssl=client_context))
    assert (code, reason) == (1011, expected_reason(refusal(services.wrong_ca.port) + "invalid peer certificate: UnknownIssuer"))
    assert services.wrong_ca.paths == [], "no upgrade request reached a service the gateway does not trust"


def test_an_unknown_ca_is_502_in_http_status_mode_and_for_rest(gw_http, gw, client_context, services):
    status, body = refused_status(f"{gw_http.ws}/wrongca/ws/v1")
    assert status == 502, body
    assert body.strip() == refusal(services.wrong_ca.port) + "invalid peer certificate: UnknownIssuer"
    status, body = https_get(gw, client_context, "/restwrongca/api/v1/items")
    assert status == 502, body
    url = f"https://{HOST}:{services.rest_wrong_ca.port}/api/items"
    assert body.decode().strip() == f"Error forwarding request to service at {url}: TLS: invalid peer certificate: UnknownIssuer"


def test_an_expired_service_certificate_is_refused(gw, gw_http, client_context, services):
    code, reason = run(close_of(gw.wss + "/expired/ws/v1", ssl=client_context))
    assert code == 1011 and reason.startswith(refusal(services.expired.port) + "invalid peer certificate: certificate expired"), reason
    status, body = refused_status(f"{gw_http.ws}/expired/ws/v1")
    assert status == 502 and body.startswith(refusal(services.expired.port) + "invalid peer certificate: certificate expired"), body
    assert services.expired.paths == []


def test_a_certificate_for_another_host_is_refused(gw, gw_http, client_context, services):
    code, reason = run(close_of(gw.wss + "/wronghost/ws/v1", ssl=client_context))
    # The close reason is cut to 123 bytes; the status body below has it whole.
    assert code == 1011 and reason.startswith(refusal(services.wrong_host.port) + "invalid peer certificate: certificate not"), reason
    status, body = refused_status(f"{gw_http.ws}/wronghost/ws/v1")
    assert status == 502, body
    assert f'certificate not valid for name "{HOST}"; certificate is only valid for DnsName("other.example")' in body, body
    assert services.wrong_host.paths == []


def test_mutual_tls_works_with_the_client_certificate_and_fails_without(gw_mtls, gw, client_context, services):
    async def session():
        async with connect(f"{gw_mtls.ws}/mtls/ws/v1") as ws:
            await ws.send("whoami")
            return await recv(ws)

    assert run(session()) == "gateway-client", "the service saw the gateway's client certificate"
    code, reason = run(close_of(gw.wss + "/mtls/ws/v1", ssl=client_context))
    assert (code, reason) == (1011, expected_reason(refusal(services.mtls.port) + "received fatal alert: CertificateRequired"))


def test_a_pkcs12_client_keystore_is_the_gateway_s_client_certificate(log_dir, tmp_path, pki, services):
    store = tmp_path / "gateway-client.p12"
    pki.openssl("pkcs12", "-export", "-in", str(pki.pem("gateway-client")), "-inkey", str(pki.key("gateway-client")),
                "-out", str(store), "-passout", "pass:client-secret")
    config = with_ssl(gateway_config(all_services(services)), trustStore=pki.pem("ca"), clientKeyStore=str(store),
                      clientKeyStorePassword="client-secret")
    gateway = start_gateway(log_dir, "tls-services-mtls-p12", config)
    try:
        assert first_reply(f"{gateway.ws}/mtls/ws/v1", "", "whoami") == "gateway-client", "the service saw the keystore's certificate"
    finally:
        gateway.child.stop()
    wrong = serve_until_exit(tmp_path, with_ssl(gateway_config([]), clientKeyStore=str(store), clientKeyStorePassword="nope"))
    stderr = wrong.stderr.decode("utf-8", "replace")
    assert wrong.returncode == 64 and f"server.ssl.clientKeyStorePassword: {store}: wrong password" in stderr, stderr


def test_mutual_tls_for_rest_requests(gw_mtls, gw, client_context, services):
    status, body = http_get(gw_mtls, "/restmtls/api/v1/mine")
    assert status == 200 and json.loads(body)["path"] == "/api/mine", body
    status, body = https_get(gw, client_context, "/restmtls/api/v1/mine")
    url = f"https://{HOST}:{services.rest_mtls.port}/api/mine"
    assert (status, body.decode().strip()) == (502, f"Error forwarding request to service at {url}: TLS: received fatal alert: CertificateRequired")


def test_a_tls_failure_is_retried_on_another_instance(gw_http, services):
    async def session(text):
        async with connect(f"{gw_http.ws}/mixed/ws/v1") as ws:
            await ws.send(text)
            return await recv(ws)

    # Round robin sends one of two sessions to the untrusted instance first; both end on the good one.
    assert [run(session(f"try {n}")) for n in range(2)] == ["try 0", "try 1"]
    url = f"wss://{HOST}:{services.wrong_ca.port}/ws"
    retried = f"cannot open session to {url}: TLS: invalid peer certificate: UnknownIssuer"
    line = next(line for line in gateway_log(gw_http, retried).splitlines() if retried in line)
    assert "trying another instance" in line, line


def test_verify_services_false_reaches_an_untrusted_service_and_warns(gw_unverified, services):
    log = gateway_log(gw_unverified, "server.ssl.verifyServices is false")
    assert " WARN " in log.split("server.ssl.verifyServices is false")[0].splitlines()[-1], log

    async def session():
        async with connect(f"{gw_unverified.ws}/wrongca/ws/v1") as ws:
            await ws.send("unverified")
            return await recv(ws)

    assert run(session()) == "unverified"
    url = f"wss://{HOST}:{services.wrong_ca.port}/ws"
    line = next(line for line in gateway_log(gw_unverified, url).splitlines() if url in line and "not verified" in line)
    assert " WARN " in line, line
    status, body = http_get(gw_unverified, "/restwrongca/api/v1/unverified")
    assert status == 200 and json.loads(body)["path"] == "/api/unverified", body
    rest_url = f"https://{HOST}:{services.rest_wrong_ca.port}/api/unverified"
    line = next(line for line in gateway_log(gw_unverified, rest_url).splitlines() if rest_url in line)
    assert " WARN " in line and "not verified" in line, line


def test_a_registered_instance_with_its_secure_port_enabled_is_reached_over_wss(log_dir, pki, services):
    config = with_ssl(registry_gateway_config(), trustStore=pki.pem("ca"))
    gateway = start_gateway(log_dir, "tls-services-registry", config)
    try:
        document = json.loads(registration("securesvc", "securesvc-1", 1, route_metadata(ROUTES)))
        document["instance"]["port"] = {"$": 1, "@enabled": "false"}
        document["instance"]["securePort"] = {"$": services.good.port, "@enabled": "true"}
        assert register(gateway, "securesvc", json.dumps(document).encode())[0] == 204
        instances = wait_until(lambda: route_instances(gateway, "securesvc"), 10, "the registered instance")
        assert [(i["port"], i["secure"], i["routable"]) for i in instances] == [(services.good.port, True, True)], instances

        async def session():
            async with connect(f"{gateway.ws}/securesvc/ws/v1") as ws:
                await ws.send("registered and secure")
                return await recv(ws)

        assert run(session()) == "registered and secure"
    finally:
        gateway.child.stop()


def test_a_trust_store_that_is_neither_pem_nor_pkcs12_stops_the_gateway_naming_the_key_and_the_file(tmp_path):
    store = tmp_path / "truststore.p12"
    store.write_bytes(bytes([0x30, 0x82, 0x04, 0x00]) + bytes(range(256)))
    result = serve_until_exit(tmp_path, with_ssl(gateway_config([]), trustStore=store))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert f"server.ssl.trustStore: {store}: not a PKCS#12 keystore" in stderr, stderr


def test_a_pkcs12_trust_store_with_its_password_verifies_services(log_dir, tmp_path, pki, services):
    store = tmp_path / "truststore.p12"
    pki.openssl("pkcs12", "-export", "-nokeys", "-in", str(pki.pem("ca")), "-out", str(store), "-passout", "pass:trust-me")
    config = with_ssl(gateway_config(all_services(services)), trustStore=str(store), trustStorePassword="trust-me")
    gateway = start_gateway(log_dir, "tls-services-p12-trust", config)
    try:
        text = "trusted through a PKCS#12 trust store"
        assert first_reply(f"ws://{HOST}:{gateway.port}/good/ws/v1", "", text) == text
        assert run(close_of(f"ws://{HOST}:{gateway.port}/wrongca/ws/v1"))[0] == 1011
    finally:
        gateway.child.stop()
    wrong = serve_until_exit(tmp_path, with_ssl(gateway_config([]), trustStore=str(store), trustStorePassword="nope"))
    stderr = wrong.stderr.decode("utf-8", "replace")
    assert wrong.returncode == 64, (wrong.returncode, stderr)
    assert f"server.ssl.trustStorePassword: {store}: wrong password" in stderr, stderr
    assert "nope" not in stderr


def test_a_client_certificate_without_its_key_or_with_a_foreign_key_stops_the_gateway(tmp_path, pki):
    result = serve_until_exit(tmp_path, with_ssl(gateway_config([]), clientCertificate=pki.pem("gateway-client")))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and "server.ssl.clientCertificateKey" in stderr, (result.returncode, stderr)
    config = with_ssl(gateway_config([]), clientCertificate=pki.pem("gateway-client"), clientCertificateKey=pki.key("good"))
    result = serve_until_exit(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "gateway-client.pem" in stderr and "good.key" in stderr and "server.ssl.clientCertificate " in stderr, stderr
