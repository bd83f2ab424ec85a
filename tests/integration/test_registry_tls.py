"""The embedded registry's port over https (discovery.embedded.ssl.*), with client certificates.

Certificates are made at test time with the openssl CLI (support.Pki): a CA, the gateway's certificate
(served on both of its ports), a second one for the SIGHUP reload, a client certificate from the CA and
one from an unrelated CA. The peers are curl (`--cacert`, `--cert`/`--key`, `--interface` to come from
127.0.0.2) and the unmodified py-eureka-client, given TLS through its set_http_client hook; sessions
through the routes it registers are wss from Python `websockets`.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
from dataclasses import dataclass

import pytest
from websockets.exceptions import ConnectionClosed

from support import (
    presented_certificate,
    write_htpasswd,
    HOST,
    LOCAL_NAMES,
    Pki,
    connect,
    recv,
    registration,
    registry_gateway_config,
    route_metadata,
    run,
    serve_until_exit,
    start_gateway,
    start_py,
    wait_until,
)

CHALLENGE = 'Basic realm="wsgate registry"'
HANDSHAKE_FAILED = "registry TLS handshake failed"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    pki = Pki.create(tmp_path_factory.mktemp("registry-tls"), "ca", "other-ca")
    pki.issue("gateway", "ca", LOCAL_NAMES)
    pki.issue("gateway-2", "ca", LOCAL_NAMES)
    pki.issue("client", "ca", "DNS:registry-client", usage="clientAuth")
    pki.issue("stranger", "other-ca", "DNS:registry-client", usage="clientAuth")
    return pki


@pytest.fixture(scope="module")
def users_file(pki):
    return write_htpasswd(pki.path / "registry-users.htpasswd", {"alice": "wonderland"})


def tls_registry_config(pki: Pki, ssl_keys: dict, certificate: str = "gateway", **embedded) -> dict:
    """A TLS gateway with the embedded registry, whose `discovery.embedded.ssl` is `ssl_keys`."""
    config = registry_gateway_config(**embedded)
    config["server"]["ssl"] = {"enabled": True, "certificate": str(pki.pem(certificate)), "certificateKey": str(pki.key(certificate))}
    config["discovery"]["embedded"]["ssl"] = ssl_keys
    return config


@pytest.fixture(scope="module")
def gw_none(log_dir, pki):
    """https on the registry, no client certificate asked for."""
    gateway = start_gateway(log_dir, "registry-tls-none", tls_registry_config(pki, {"enabled": True}))
    yield gateway
    gateway.child.stop()


@pytest.fixture(scope="module")
def gw_need(log_dir, pki):
    """clientAuth need, its own trust store."""
    ssl_keys = {"enabled": True, "clientAuth": "need", "trustStore": str(pki.pem("ca"))}
    gateway = start_gateway(log_dir, "registry-tls-need", tls_registry_config(pki, ssl_keys))
    yield gateway
    gateway.child.stop()


@pytest.fixture(scope="module")
def gw_want(log_dir, pki, users_file):
    """clientAuth want with the default trust store (server.ssl.trustStore), user alice, changes from 127.0.0.1 only."""
    config = tls_registry_config(pki, {"enabled": True, "clientAuth": "want"}, allow=["127.0.0.1/32"], users=["alice"])
    config["server"]["ssl"]["trustStore"] = str(pki.pem("ca"))
    config["server"]["auth"] = {"htpasswd": str(users_file)}
    gateway = start_gateway(log_dir, "registry-tls-want", config)
    yield gateway
    gateway.child.stop()


# ------------------------------------------------------------------ peers


@dataclass
class Answer:
    """What curl got: its exit code, the status (0 without an answer), the head, the body and its error text."""

    code: int
    status: int
    head: str
    body: str
    error: str


def curl(url: str, *args: str, data: bytes | None = None) -> Answer:
    command = ["curl", "-sS", "-i", "--max-time", "10", *args]
    if data is not None:
        command += ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-"]
    result = subprocess.run([*command, url], input=data or b"", capture_output=True, timeout=20)
    head, _, body = result.stdout.decode("utf-8", "replace").partition("\r\n\r\n")
    status = int(head.split()[1]) if head.startswith("HTTP/") else 0
    return Answer(result.returncode, status, head, body, result.stderr.decode("utf-8", "replace"))


def trusting(pki: Pki) -> tuple[str, ...]:
    return ("--cacert", str(pki.pem("ca")))


def client_cert(pki: Pki, name: str = "client") -> tuple[str, ...]:
    return (*trusting(pki), "--cert", str(pki.pem(name)), "--key", str(pki.key(name)))


def apps_url(gw) -> str:
    return f"https://{HOST}:{gw.registry_port}/eureka/apps"


def header(answer: Answer, name: str) -> str | None:
    for line in answer.head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def register_with(gw, app: str, *args: str) -> Answer:
    body = registration(app, f"127.0.0.1:{app}:9", 9, route_metadata({"ws_v1": ("ws/v1", f"/{app}/ws")}))
    return curl(f"{apps_url(gw)}/{app.upper()}", *args, data=body)


def client_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.pem("ca")))


def uppercase_through(gw, pki: Pki, app: str, text: str) -> str | None:
    """`text` upper-cased by the demo service through a wss session to `app`'s route; None when the
    gateway closes the session instead (the route is not there yet)."""

    async def session():
        async with connect(gw.wss + f"/{app}/ws/v1/uppercase", ssl=client_context(pki)) as ws:
            await ws.send(text)
            try:
                return await recv(ws)
            except ConnectionClosed:
                return None

    return run(session())


def py_client(log_dir, gw, pki: Pki, app: str, demo, cert: str | None = None):
    """py-eureka-client registering `app` (the demo service's uppercase endpoint) over https."""
    tls = {"ca": str(pki.pem("ca"))}
    if cert is not None:
        tls.update(cert=str(pki.pem(cert)), key=str(pki.key(cert)))
    options = {"metadata": route_metadata({"ws_v1": ("ws/v1", "/discoverableclient/ws")}), "tls": tls}
    url = f"https://{HOST}:{gw.registry_port}/eureka/"
    return start_py(log_dir, gw.registry_port, app, demo.port, app, name=f"eureka-py-{app}", options=options, url=url)


def assert_registers_and_routes(log_dir, gw, pki, app, demo, cert=None) -> None:
    py = py_client(log_dir, gw, pki, app, demo, cert)
    try:
        py.next_event("registered")
        py.next_event("discovered", where=lambda event: len(event["instances"]) == 1)
        assert wait_until(lambda: uppercase_through(gw, pki, app, "over tls"), 10, f"{app}'s route") == "OVER TLS"
    finally:
        py.child.stop()


def log_mark(gw) -> int:
    """Where the gateway's log ends now, for `log_has` to look only at what comes after."""
    return gw.child.stderr_path.stat().st_size


def log_has(gw, text: str, since: int = 0) -> bool:
    """Whether the gateway logged `text` after the mark `since` (a module's gateway logs for every test)."""
    with open(gw.child.stderr_path, "rb") as log:
        log.seek(since)
        return text in log.read().decode(errors="replace")


# ------------------------------------------------------------------ clientAuth none


def test_py_eureka_client_registers_over_https_and_its_route_serves_a_session(gw_none, log_dir, pki, demo):
    assert_registers_and_routes(log_dir, gw_none, pki, "tlsnone", demo)
    answer = curl(apps_url(gw_none), *trusting(pki), "-H", "Accept: application/json")
    assert answer.status == 200, answer
    # The client's cancel (DELETE at its stop) went over https too.
    assert json.loads(answer.body)["applications"]["application"] == []


def test_plain_http_to_the_https_port_fails_and_the_registry_keeps_serving(gw_none, pki):
    mark = log_mark(gw_none)
    plain = curl(f"http://{HOST}:{gw_none.registry_port}/eureka/apps")
    assert plain.code != 0 and plain.status == 0, plain
    assert wait_until(lambda: log_has(gw_none, f"{HANDSHAKE_FAILED} peer=127.0.0.1:", mark), 5, "the failed handshake in the log")
    assert curl(apps_url(gw_none), *trusting(pki)).status == 200
    # The certificate is the gateway's: a client that does not trust its CA refuses it.
    untrusted = curl(apps_url(gw_none), "--cacert", str(pki.pem("other-ca")))
    assert untrusted.code == 60 and untrusted.status == 0, untrusted


def test_a_client_stalling_its_handshake_does_not_hold_up_the_others(gw_none, pki):
    with socket.create_connection((HOST, gw_none.registry_port), timeout=5) as stalled:
        stalled.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, never finished
        assert curl(apps_url(gw_none), *trusting(pki)).status == 200


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_with_alpn_http_1_1(gw_none, pki, version):
    context = client_context(pki)
    context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((HOST, gw_none.registry_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            assert (tls.version(), tls.selected_alpn_protocol()) == (version.name.replace("_", "."), "http/1.1")


# ------------------------------------------------------------------ clientAuth need


def test_need_refuses_a_client_without_a_certificate_at_the_handshake(gw_need, pki):
    mark = log_mark(gw_need)
    answer = curl(apps_url(gw_need), *trusting(pki))
    assert answer.code != 0 and answer.status == 0, answer
    assert wait_until(lambda: log_has(gw_need, "peer sent no certificates", mark), 5, "the refused handshake in the log")


def test_need_refuses_a_certificate_of_another_ca(gw_need, pki):
    mark = log_mark(gw_need)
    answer = register_with(gw_need, "stranger", *client_cert(pki, "stranger"))
    assert answer.code != 0 and answer.status == 0, answer
    assert wait_until(lambda: log_has(gw_need, "invalid peer certificate: UnknownIssuer", mark), 5, "the refused certificate in the log")
    listed = curl(f"{apps_url(gw_need)}/STRANGER", *client_cert(pki))
    assert listed.status == 404, listed


def test_need_lets_a_client_certificate_of_the_trust_store_register(gw_need, log_dir, pki, demo):
    assert curl(apps_url(gw_need), *client_cert(pki)).status == 200
    assert_registers_and_routes(log_dir, gw_need, pki, "tlsneed", demo, cert="client")


def test_need_with_a_pkcs12_trust_store_and_its_password(log_dir, pki, tmp_path):
    store = tmp_path / "clients.p12"
    pki.openssl("pkcs12", "-export", "-nokeys", "-in", str(pki.pem("ca")), "-out", str(store), "-passout", "pass:trust-me")
    ssl_keys = {"enabled": True, "clientAuth": "need", "trustStore": str(store), "trustStorePassword": "trust-me"}
    gw = start_gateway(log_dir, "registry-tls-need-p12", tls_registry_config(pki, ssl_keys))
    try:
        assert curl(apps_url(gw), *client_cert(pki)).status == 200
        stranger = curl(apps_url(gw), *client_cert(pki, "stranger"))
        assert stranger.code != 0 and stranger.status == 0, stranger
    finally:
        gw.child.stop()
    ssl_keys["trustStorePassword"] = "guess"
    result = serve_until_exit(tmp_path, tls_registry_config(pki, ssl_keys))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "wsgate: discovery.embedded.ssl.trustStorePassword: " in stderr and "clients.p12" in stderr, stderr


# ------------------------------------------------------------------ clientAuth want, with users


def test_want_without_certificate_or_credential_gets_401_for_reads_and_changes(gw_want, pki):
    for answer in (curl(apps_url(gw_want), *trusting(pki)), register_with(gw_want, "nobody", *trusting(pki))):
        assert (answer.status, header(answer, "WWW-Authenticate")) == (401, CHALLENGE), answer
    wrong = register_with(gw_want, "nobody", *trusting(pki), "-u", "alice:guess")
    assert wrong.status == 401, wrong
    assert curl(f"{apps_url(gw_want)}/NOBODY", *client_cert(pki)).status == 404


def test_want_accepts_a_certificate_or_a_credential(gw_want, pki):
    assert curl(apps_url(gw_want), *client_cert(pki)).status == 200
    assert register_with(gw_want, "bycert", *client_cert(pki)).status == 204
    assert register_with(gw_want, "bybasic", *trusting(pki), "-u", "alice:wonderland").status == 204
    for app in ("BYCERT", "BYBASIC"):
        assert curl(f"{apps_url(gw_want)}/{app}", *trusting(pki), "-u", "alice:wonderland").status == 200


def test_want_still_refuses_a_certificate_of_another_ca(gw_want, pki):
    answer = curl(apps_url(gw_want), *client_cert(pki, "stranger"))
    assert answer.code != 0 and answer.status == 0, answer


def test_the_allow_list_applies_to_certificate_holders(gw_want, pki):
    answer = register_with(gw_want, "elsewhere", *client_cert(pki), "--interface", "127.0.0.2")
    assert answer.status == 403, answer
    # Reads stay open to them.
    assert curl(apps_url(gw_want), *client_cert(pki), "--interface", "127.0.0.2").status == 200


# ------------------------------------------------------------------ clientAuth want, no users; SIGHUP


def test_want_without_users_needs_a_certificate_and_sighup_renews_the_registrys_certificate(log_dir, pki, tmp_path):
    for suffix in ("pem", "key"):
        shutil.copy(pki.path / f"gateway.{suffix}", tmp_path / f"live.{suffix}")
    live = Pki(tmp_path)
    config = tls_registry_config(live, {"enabled": True, "clientAuth": "want", "trustStore": str(pki.pem("ca"))}, certificate="live")
    gw = start_gateway(log_dir, "registry-tls-reload", config)
    try:
        anonymous = curl(apps_url(gw), *trusting(pki))
        assert (anonymous.status, header(anonymous, "WWW-Authenticate")) == (401, CHALLENGE), anonymous
        assert curl(apps_url(gw), *client_cert(pki)).status == 200

        first = ssl.PEM_cert_to_DER_cert(pki.pem("gateway").read_text())
        second = ssl.PEM_cert_to_DER_cert(pki.pem("gateway-2").read_text())
        assert presented_certificate(gw.registry_port, client_context(pki)) == first
        for suffix in ("pem", "key"):
            shutil.copy(pki.path / f"gateway-2.{suffix}", tmp_path / f"live.{suffix}")
        gw.child.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: presented_certificate(gw.registry_port, client_context(pki)) == second, 10, "the registry to present the new certificate")
        assert curl(apps_url(gw), *client_cert(pki)).status == 200
    finally:
        gw.child.stop()


# ------------------------------------------------------------------ plain registry warning, config errors


def test_a_plain_registry_open_to_the_network_is_warned_about(log_dir):
    gw = start_gateway(log_dir, "registry-plain-open", registry_gateway_config(allow=["127.0.0.1", "10.0.0.0/8"]))
    try:
        assert wait_until(lambda: log_has(gw, "cross the network in clear"), 5, "the warning")
        assert "10.0.0.0/8" in gw.child.stderr_text()
    finally:
        gw.child.stop()
    quiet = start_gateway(log_dir, "registry-plain-loopback", registry_gateway_config())
    quiet.child.stop()
    assert not log_has(quiet, "cross the network in clear")


@pytest.mark.parametrize(
    ("ssl_keys", "server_ssl", "key", "detail"),
    [
        ({"enabled": True}, {"enabled": False}, "discovery.embedded.ssl.enabled", "server.ssl.certificate"),
        ({"clientAuth": "need", "trustStore": "ca.pem"}, None, "discovery.embedded.ssl.clientAuth", "set discovery.embedded.ssl.enabled: true"),
        ({"enabled": True, "clientAuth": "want"}, None, "discovery.embedded.ssl.trustStore", "server.ssl.trustStore, the default, is not set"),
        ({"enabled": True, "clientAuth": "sometimes", "trustStore": "ca.pem"}, None, "discovery.embedded.ssl.clientAuth", "`sometimes`"),
        ({"enabled": True, "clientAuth": "need", "trustStore": "missing-ca.pem"}, None, "discovery.embedded.ssl.trustStore", "missing-ca.pem"),
    ],
)
def test_bad_registry_tls_config_exits_64_naming_the_key(tmp_path, pki, ssl_keys, server_ssl, key, detail):
    config = tls_registry_config(pki, ssl_keys)
    if server_ssl is not None:
        config["server"]["ssl"] = server_ssl
    result = serve_until_exit(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert f"wsgate: {key}: " in stderr and detail in stderr, stderr


def test_an_unusable_trust_store_names_the_default_key_it_came_from(tmp_path, pki):
    config = tls_registry_config(pki, {"enabled": True, "clientAuth": "want"})
    not_a_ca = tmp_path / "not-a-ca.pem"
    not_a_ca.write_text("no certificate here\n")
    config["server"]["ssl"].update(trustStore=str(not_a_ca), verifyServices=False)
    result = serve_until_exit(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "server.ssl.trustStore" in stderr and "not-a-ca.pem" in stderr, stderr
