"""Client-facing TLS: wss and https on the gateway's port, with a certificate made at test time.

The client side is Python's own TLS stack (ssl + websockets, http.client) trusting a throwaway CA
made by trustme; the certificate names 127.0.0.1 and localhost, and hostname checks stay on.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest
import trustme

from support import HOST, binary, connect, demo_routes, gateway_config, recv, run, service, start_gateway, to_yaml
from support import serve_until_exit as serve


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory, ca):
    """The gateway's certificate chain and key as PEM files, and a second, unrelated key."""
    path = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(path / "key.pem"))
    (path / "chain.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(path / "other-key.pem"))
    return path


@pytest.fixture(scope="module")
def client_context(ca):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


def tls_config(services, certificate, key) -> dict:
    config = gateway_config(services)
    config["server"]["ssl"] = {"enabled": True, "certificate": str(certificate), "certificateKey": str(key)}
    return config


@pytest.fixture(scope="module")
def tls_gateway(log_dir, demo, tls_dir):
    services = [service("discoverableclient", [(HOST, demo.port)], demo_routes())]
    return start_gateway(log_dir, "tls", tls_config(services, tls_dir / "chain.pem", tls_dir / "key.pem"))


def wss(gateway, path):
    return f"wss://{HOST}:{gateway.port}{path}"


def assert_wss_uppercase(gateway, context):
    """A small and a 1 MiB message through a wss session to the demo's uppercase endpoint."""
    async def session():
        async with connect(wss(gateway, "/discoverableclient/ws/v1/uppercase"), ssl=context) as ws:
            await ws.send("over tls")
            assert await recv(ws) == "OVER TLS"
            big = "x" * (1 << 20)
            await ws.send(big)
            assert await recv(ws) == big.upper()

    run(session())


def test_wss_session_reaches_a_ws_service(tls_gateway, client_context):
    assert_wss_uppercase(tls_gateway, client_context)


def test_wss_service_sees_https_as_forwarded_proto(tls_gateway, client_context):
    async def session():
        async with connect(wss(tls_gateway, "/discoverableclient/ws/v1/header"), ssl=client_context) as ws:
            await ws.send("which headers?")
            return json.loads(await recv(ws))

    headers = run(session())["headers"]
    assert headers.get("x-forwarded-proto") == "https", headers


def test_https_request_is_proxied_on_the_same_port(tls_gateway, client_context, demo):
    conn = http.client.HTTPSConnection(HOST, tls_gateway.port, context=client_context, timeout=10)
    try:
        conn.request("GET", "/discoverableclient/api/v1/greeting?name=Tls")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, body
    assert json.loads(body) == {"greeting": "Hello, Tls!", "instanceId": demo.instance_id}


def test_alpn_selects_http_1_1(tls_gateway, ca):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((HOST, tls_gateway.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_plain_http_and_garbage_on_the_tls_port_are_dropped_and_serving_goes_on(tls_gateway, client_context):
    for junk in (b"GET /discoverableclient/api/v1/greeting HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello" + bytes(range(256))):
        with socket.create_connection((HOST, tls_gateway.port), timeout=10) as sock:
            sock.sendall(junk)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
            # Nothing readable as HTTP comes back: at most a TLS alert record (content type 21).
            assert not received.startswith(b"HTTP/"), received[:80]
            assert received == b"" or received[0] == 21, received[:80]
    assert_wss_uppercase(tls_gateway, client_context)


def test_client_not_trusting_the_ca_fails_its_handshake(tls_gateway):
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    trustme.CA().configure_trust(untrusting)

    async def session():
        async with connect(wss(tls_gateway, "/discoverableclient/ws/v1/uppercase"), ssl=untrusting):
            pass

    with pytest.raises(ssl.SSLCertVerificationError):
        run(session())


def test_missing_certificate_file_is_a_start_up_error_naming_it(tmp_path, tls_dir):
    missing = tmp_path / "nowhere" / "chain.pem"
    result = serve(tmp_path, tls_config([], missing, tls_dir / "key.pem"))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.certificate:" in stderr and str(missing) in stderr, stderr


def test_key_not_matching_the_certificate_is_a_start_up_error_naming_both(tmp_path, tls_dir):
    result = serve(tmp_path, tls_config([], tls_dir / "chain.pem", tls_dir / "other-key.pem"))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "chain.pem" in stderr and "other-key.pem" in stderr, stderr


def test_a_key_file_given_as_certificate_is_a_start_up_error_naming_it(tmp_path, tls_dir):
    result = serve(tmp_path, tls_config([], tls_dir / "key.pem", tls_dir / "key.pem"))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.certificate:" in stderr and "key.pem" in stderr and "no valid PEM certificate" in stderr, stderr


def test_relative_files_are_found_next_to_the_config_file(tmp_path, tls_dir, log_dir, client_context):
    folder = tmp_path / "conf"
    (folder / "tls").mkdir(parents=True)
    for name in ("chain.pem", "key.pem"):
        (folder / "tls" / name).write_bytes((tls_dir / name).read_bytes())
    config = tls_config([], "tls/chain.pem", "tls/key.pem")
    path = folder / "wsgate.yaml"
    path.write_text(to_yaml(config))
    # Started from another folder: only the config file's folder can make the relative names work.
    from support import GATEWAY_LINE, Child

    child = Child("gateway-tls-relative", [binary("wsgate"), "serve", "--config", path], log_dir)
    try:
        port = int(child.wait_line(GATEWAY_LINE).group(1))
        conn = http.client.HTTPSConnection(HOST, port, context=client_context, timeout=10)
        conn.request("GET", "/application/health")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        child.stop()


def test_enabled_without_a_certificate_exits_64_naming_the_key(tmp_path):
    config = gateway_config([])
    config["server"]["ssl"] = {"enabled": True}
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "server.ssl.certificate" in stderr, stderr
