"""Client-facing TLS: wss and https on the gateway's port, with certificates made at test time.

The client side is Python's own TLS stack (ssl + websockets, http.client) trusting a throwaway CA
made by trustme; the certificate names 127.0.0.1 and localhost, and hostname checks stay on. PKCS#12
keystores are made from it by the `openssl` command (OpenSSL 3's defaults and `-legacy`) and by Java's
keytool, as Zowe's are; SIGHUP reloads are watched through the certificate a new handshake presents.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess

import pytest
import trustme

from support import HOST, binary, connect, demo_routes, gateway_config, presented_certificate, recv, run, service, start_gateway, to_yaml, wait_until
from support import serve_until_exit as serve


def tls_config(services, certificate, key) -> dict:
    config = gateway_config(services)
    config["server"]["ssl"] = {"enabled": True, "certificate": str(certificate), "certificateKey": str(key)}
    return config


@pytest.fixture(scope="module")
def tls_gateway(log_dir, demo, tls_dir):
    services = [service("discoverableclient", [(HOST, demo.port)], demo_routes())]
    return start_gateway(log_dir, "tls", tls_config(services, tls_dir / "chain.pem", tls_dir / "key.pem"))


def assert_wss_uppercase(gateway, context):
    """A small and a 1 MiB message through a wss session to the demo's uppercase endpoint."""
    async def session():
        async with connect(gateway.wss + "/discoverableclient/ws/v1/uppercase", ssl=context) as ws:
            await ws.send("over tls")
            assert await recv(ws) == "OVER TLS"
            big = "x" * (1 << 20)
            await ws.send(big)
            assert await recv(ws) == big.upper()

    run(session())


def assert_https_greeting(gateway, context, demo) -> None:
    """A REST call through https on the same port."""
    conn = http.client.HTTPSConnection(HOST, gateway.port, context=context, timeout=10)
    try:
        conn.request("GET", "/discoverableclient/api/v1/greeting?name=Tls")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, body
    assert json.loads(body) == {"greeting": "Hello, Tls!", "instanceId": demo.instance_id}


def test_wss_session_reaches_a_ws_service(tls_gateway, client_context):
    assert_wss_uppercase(tls_gateway, client_context)


def test_wss_service_sees_https_as_forwarded_proto(tls_gateway, client_context):
    async def session():
        async with connect(tls_gateway.wss + "/discoverableclient/ws/v1/header", ssl=client_context) as ws:
            await ws.send("which headers?")
            return json.loads(await recv(ws))

    headers = run(session())["headers"]
    assert headers.get("x-forwarded-proto") == "https", headers


def test_https_request_is_proxied_on_the_same_port(tls_gateway, client_context, demo):
    assert_https_greeting(tls_gateway, client_context, demo)


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
        async with connect(tls_gateway.wss + "/discoverableclient/ws/v1/uppercase", ssl=untrusting):
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


def test_enabled_without_a_certificate_exits_64_naming_the_keys(tmp_path):
    config = gateway_config([])
    config["server"]["ssl"] = {"enabled": True}
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert all(key in stderr for key in ("server.ssl.enabled", "server.ssl.certificate", "server.ssl.keyStore")), stderr


# ------------------------------------------------------------------ PKCS#12 keystores

PASSWORD = "p12-s3cret"


def tool(*argv) -> None:
    """Runs a certificate tool (openssl, keytool); fails the test with its output when it fails."""
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{argv[0]} failed ({result.returncode}): {result.stdout}{result.stderr}"


def algorithms(path) -> str:
    """What `openssl pkcs12 -info` says of the file's encryption and MAC (to prove which kind a test used)."""
    result = subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-legacy", "-in", str(path), "-passin", f"pass:{PASSWORD}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stderr + result.stdout


@pytest.fixture(scope="module")
def keystores(tls_dir):
    """PKCS#12 files of the trustme chain and key: OpenSSL 3's default kind, `-legacy`, and one without a key."""
    chain, key = tls_dir / "chain.pem", tls_dir / "key.pem"
    made = {"modern": tls_dir / "modern.p12", "legacy": tls_dir / "legacy.p12", "nokey": tls_dir / "nokey.p12"}
    tool("openssl", "pkcs12", "-export", "-in", chain, "-inkey", key, "-name", "gateway", "-out", made["modern"], "-passout", f"pass:{PASSWORD}")
    tool("openssl", "pkcs12", "-export", "-legacy", "-in", chain, "-inkey", key, "-name", "gateway", "-out", made["legacy"], "-passout", f"pass:{PASSWORD}")
    tool("openssl", "pkcs12", "-export", "-nokeys", "-in", chain, "-out", made["nokey"], "-passout", f"pass:{PASSWORD}")
    return made


def keystore_config(services, path, password: str | None = PASSWORD) -> dict:
    config = gateway_config(services)
    config["server"]["ssl"] = {"keyStore": str(path)}  # `enabled` left to its default: true
    if password is not None:
        config["server"]["ssl"]["keyStorePassword"] = password
    return config


@pytest.mark.parametrize("kind, expected", [
    ("modern", ("PBES2", "AES-256-CBC", "sha256")),
    ("legacy", ("pbeWithSHA1And40BitRC2-CBC", "pbeWithSHA1And3-KeyTripleDES-CBC", "sha1")),
])
def test_openssl_keystore_serves_wss_and_https(kind, expected, keystores, log_dir, demo, client_context):
    info = algorithms(keystores[kind])
    assert all(word in info for word in expected), info
    services = [service("discoverableclient", [(HOST, demo.port)], demo_routes())]
    gw = start_gateway(log_dir, f"p12-{kind}", keystore_config(services, keystores[kind]))
    try:
        assert_wss_uppercase(gw, client_context)
        assert_https_greeting(gw, client_context, demo)
    finally:
        gw.child.stop()


@pytest.mark.parametrize("legacy", [False, True], ids=["jdk-defaults", "jdk-legacy"])
@pytest.mark.parametrize("algorithm", ["RSA", "EC"])
def test_keytool_keystore_serves_wss(algorithm, legacy, tmp_path, log_dir, demo):
    """A keystore as Zowe makes its own: `keytool -genkeypair` (JDK defaults, or the legacy algorithms of
    older JDKs), a self-signed certificate that the client trusts as exported by keytool. keytool writes
    EC keys without their public key, which the gateway takes from the certificate."""
    store, exported = tmp_path / "zowe.p12", tmp_path / "zowe.pem"
    java_options = ["-J-Dkeystore.pkcs12.legacy"] if legacy else []
    key_options = ["-keyalg", "RSA", "-keysize", "2048"] if algorithm == "RSA" else ["-keyalg", "EC", "-groupname", "secp256r1"]
    tool("keytool", *java_options, "-genkeypair", "-alias", "localhost", *key_options,
         "-dname", "CN=localhost, OU=API Mediation Layer, O=Zowe Sample", "-ext", "SAN=dns:localhost,ip:127.0.0.1",
         "-validity", "2", "-storetype", "PKCS12", "-keystore", store, "-storepass", PASSWORD, "-keypass", PASSWORD)
    tool("keytool", "-exportcert", "-rfc", "-alias", "localhost", "-keystore", store, "-storepass", PASSWORD, "-file", exported)
    info = algorithms(store)
    assert ("sha1" in info and "PBES2" not in info) if legacy else ("PBES2" in info and "sha256" in info), info
    context = ssl.create_default_context(cafile=str(exported))
    services = [service("discoverableclient", [(HOST, demo.port)], demo_routes())]
    gw = start_gateway(log_dir, f"p12-keytool-{algorithm}-{legacy}", keystore_config(services, store))
    try:
        assert_wss_uppercase(gw, context)
    finally:
        gw.child.stop()


def test_keystore_password_from_the_environment_stays_text(tmp_path, tls_dir, log_dir, demo, client_context):
    # A password that YAML would read as a number: through SERVER_SSL_KEYSTOREPASSWORD it stays text.
    password = "0123456789"
    store = tmp_path / "digits.p12"
    tool("openssl", "pkcs12", "-export", "-in", tls_dir / "chain.pem", "-inkey", tls_dir / "key.pem", "-out", store, "-passout", f"pass:{password}")
    services = [service("discoverableclient", [(HOST, demo.port)], demo_routes())]
    gw = start_gateway(log_dir, "p12-env-password", keystore_config(services, store, password=None),
                       env={"SERVER_SSL_KEYSTOREPASSWORD": password})
    try:
        assert_wss_uppercase(gw, client_context)
    finally:
        gw.child.stop()
    assert password not in gw.child.stderr_path.read_text(errors="replace")


@pytest.mark.parametrize("kind", ["modern", "legacy"])
def test_wrong_keystore_password_exits_64_naming_the_file_and_the_key(kind, tmp_path, keystores):
    result = serve(tmp_path, keystore_config([], keystores[kind], password="not-the-password"))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.keyStorePassword" in stderr and str(keystores[kind]) in stderr and "wrong password" in stderr, stderr
    assert "not-the-password" not in stderr


def test_keystore_without_a_private_key_exits_64_saying_so(tmp_path, keystores):
    result = serve(tmp_path, keystore_config([], keystores["nokey"]))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.keyStore" in stderr and str(keystores["nokey"]) in stderr and "no private key" in stderr, stderr


def test_keystore_with_two_private_keys_exits_64_saying_so(tmp_path):
    store = tmp_path / "two.p12"
    for alias in ("first", "second"):
        tool("keytool", "-genkeypair", "-alias", alias, "-keyalg", "EC", "-groupname", "secp256r1", "-dname", f"CN={alias}",
             "-validity", "2", "-storetype", "PKCS12", "-keystore", store, "-storepass", PASSWORD, "-keypass", PASSWORD)
    result = serve(tmp_path, keystore_config([], store))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.keyStore" in stderr and str(store) in stderr and "2 private keys" in stderr, stderr


def test_a_file_that_is_no_keystore_exits_64_naming_it(tmp_path, tls_dir):
    result = serve(tmp_path, keystore_config([], tls_dir / "chain.pem"))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.keyStore" in stderr and "chain.pem" in stderr and "not a PKCS#12 keystore" in stderr, stderr


# ------------------------------------------------------------------ SIGHUP reload


def der(pem_path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("form", ["pem", "keystore"])
def test_sighup_reloads_the_certificate_without_dropping_sessions(form, tmp_path, log_dir, demo):
    """Certificate A (from CA 1) in use and a session open; the files now hold B (CA 2): after SIGHUP a new
    handshake sees B and the open session still echoes. Broken files and SIGHUP: an error in the log, and
    B stays."""
    cas = [trustme.CA(), trustme.CA()]
    issued = [ca.issue_cert("127.0.0.1", "localhost") for ca in cas]
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    for ca in cas:
        ca.configure_trust(context)
    chain, key, store = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "gateway.p12"

    def install(cert) -> bytes:
        """Writes `cert` as the gateway's files; returns its DER."""
        cert.private_key_pem.write_to_path(str(key))
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        if form == "keystore":
            tool("openssl", "pkcs12", "-export", "-in", chain, "-inkey", key, "-out", store, "-passout", f"pass:{PASSWORD}")
        return der(chain)

    a = install(issued[0])
    services = [service("discoverableclient", [(HOST, demo.port)], demo_routes())]
    config = tls_config(services, chain, key) if form == "pem" else keystore_config(services, store)
    gw = start_gateway(log_dir, f"sighup-{form}", config)

    def log_count(text: str) -> int:
        return gw.child.stderr_text(1_000_000).count(text)

    def hangup_and_wait(text: str) -> None:
        before = log_count(text)
        os.kill(gw.child.pid, signal.SIGHUP)
        wait_until(lambda: log_count(text) > before, 10, f"{text!r} in the gateway's log")

    async def scenario():
        async with connect(gw.wss + "/discoverableclient/ws/v1/uppercase", ssl=context) as old:
            await old.send("before")
            assert await recv(old) == "BEFORE"
            assert await asyncio.to_thread(presented_certificate, gw.port, context, "localhost") == a

            b = install(issued[1])
            assert b != a
            await asyncio.to_thread(hangup_and_wait, "TLS certificate reloaded")
            assert await asyncio.to_thread(presented_certificate, gw.port, context, "localhost") == b
            await old.send("still here")
            assert await recv(old) == "STILL HERE"

            (store if form == "keystore" else chain).write_text("broken\n")
            await asyncio.to_thread(hangup_and_wait, "TLS certificate reload failed")
            assert await asyncio.to_thread(presented_certificate, gw.port, context, "localhost") == b
            await old.send("and now")
            assert await recv(old) == "AND NOW"
            # A client trusting only CA 2 connects: B is what new sessions get.
            only_b = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            cas[1].configure_trust(only_b)
            async with connect(gw.wss + "/discoverableclient/ws/v1/uppercase", ssl=only_b) as new:
                await new.send("new")
                assert await recv(new) == "NEW"

    try:
        run(scenario())
        assert gw.child.proc.poll() is None, gw.child.describe()
        failed = [line for line in gw.child.stderr_text(1_000_000).splitlines() if "TLS certificate reload failed" in line]
        assert len(failed) == 1 and "ERROR" in failed[0], failed
        assert str(store if form == "keystore" else chain) in failed[0], failed
    finally:
        gw.child.stop()


def test_sighup_without_tls_is_logged_and_serving_goes_on(log_dir, demo):
    # SIGHUP's default action would end the process: a plain gateway must ignore it.
    services = [service("discoverableclient", [(HOST, demo.port)], demo_routes())]
    gw = start_gateway(log_dir, "sighup-plain", gateway_config(services))
    try:
        os.kill(gw.child.pid, signal.SIGHUP)
        wait_until(lambda: "TLS is off, nothing to reload" in gw.child.stderr_text(), 10, "the SIGHUP log line")

        async def session():
            async with connect(gw, "/discoverableclient/ws/v1/uppercase") as ws:
                await ws.send("plain")
                assert await recv(ws) == "PLAIN"

        run(session())
        assert gw.child.proc.poll() is None, gw.child.describe()
    finally:
        gw.child.stop()
