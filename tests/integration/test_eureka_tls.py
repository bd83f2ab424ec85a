"""Eureka over TLS, client side: gateway B follows gateway A's embedded registry through an https
service URL, and the demo service registers at A over https.

A serves its registry with its own certificate (`discovery.embedded.ssl.enabled`) and demands a
client certificate of the test CA (`clientAuth: need`). B reaches it with its TLS towards services:
`server.ssl.trustStore` for A's certificate, `server.ssl.clientCertificate` / `clientCertificateKey`
as its client certificate. Certificates are made by trustme and name 127.0.0.1, so the IP literal of
the service URLs is checked against the certificate's IP addresses. The test itself talks to A's
registry with Python's ssl and the same client certificate. A second cluster, A', asks for no client
certificate but for alice's Basic credential, which B gives in its https service URL.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.parse

import pytest
import trustme

import support
from support import (
    HOST,
    binary,
    first_reply,
    gateway_config,
    http_request,
    registration,
    registry_gateway_config,
    route_metadata,
    route_table,
    start_demo,
    start_gateway,
    up_instances,
    wait_until,
)

FETCH_INTERVAL = 1
# What B's log shows when A refuses it for want of a client certificate (rustls's alert, TLS 1.3).
NO_CLIENT_CERTIFICATE = "TLS failed: received fatal alert: CertificateRequired"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """PEM files: the test CA, A's certificate (127.0.0.1, localhost) and key, a client certificate of
    the same CA and its key, and an unrelated CA."""
    path = tmp_path_factory.mktemp("eureka-tls")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    other.cert_pem.write_to_path(str(path / "other-ca.pem"))
    for name, issued in [("a", ca.issue_cert("127.0.0.1", "localhost")), ("client", ca.issue_cert("wsgate-gateway"))]:
        (path / f"{name}.pem").write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(path / f"{name}-key.pem"))
    return path


@pytest.fixture(scope="module")
def own_context(pki) -> ssl.SSLContext:
    """The test's own client context towards A's registry: trusts the CA, presents the client certificate."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / "client.pem"), str(pki / "client-key.pem"))
    return context


@pytest.fixture(scope="module")
def cluster(log_dir, pki):
    """Gateway A: its registry on https, a client certificate of the test CA needed."""
    config = registry_gateway_config()
    config["server"]["ssl"] = {"enabled": True, "certificate": str(pki / "a.pem"), "certificateKey": str(pki / "a-key.pem")}
    config["discovery"]["embedded"]["ssl"] = {"enabled": True, "clientAuth": "need", "trustStore": str(pki / "ca.pem")}
    gateway = start_gateway(log_dir, "eureka-tls-cluster", config)
    yield gateway
    gateway.child.stop()


@pytest.fixture(scope="module")
def basic_cluster(log_dir, pki):
    """Gateway A': its registry on https, no client certificate asked for, every request needing the
    Basic credential of alice."""
    users = support.write_htpasswd(pki / "registry-users.htpasswd", {"alice": "wonderland"})
    config = registry_gateway_config(users=["alice"])
    config["server"]["ssl"] = {"enabled": True, "certificate": str(pki / "a.pem"), "certificateKey": str(pki / "a-key.pem")}
    config["server"]["auth"] = {"htpasswd": str(users)}
    config["discovery"]["embedded"]["ssl"] = {"enabled": True}
    gateway = start_gateway(log_dir, "eureka-tls-basic-cluster", config)
    yield gateway
    gateway.child.stop()


def https_eureka(cluster, userinfo: str = "") -> str:
    return f"https://{userinfo}{HOST}:{cluster.registry_port}/eureka"


def follower_config(cluster, zone: str | None = None, **ssl_keys) -> dict:
    """A gateway without a registry of its own, plain towards its clients, following A through `zone`
    (default: A's https URL) with `ssl_keys` as its `server.ssl.*`."""
    config = gateway_config([])
    config["server"]["ssl"] = {"enabled": False, **{key: str(value) for key, value in ssl_keys.items()}}
    config["eureka"] = {
        "client": {"serviceUrl": {"defaultZone": zone or https_eureka(cluster)}, "registryFetchIntervalSeconds": FETCH_INTERVAL},
        "instance": {"leaseRenewalIntervalInSeconds": 1},
    }
    return config


@pytest.fixture(scope="module")
def follower(log_dir, cluster, pki):
    """Gateway B with the CA as trust store and the client certificate; its defaultZone lists a dead
    plain URL first, so every fetch also fails over from http to https."""
    dead = f"http://{HOST}:{support.closed_port()}/eureka"
    config = follower_config(cluster, f"{dead},{https_eureka(cluster)}", trustStore=pki / "ca.pem",
                             clientCertificate=pki / "client.pem", clientCertificateKey=pki / "client-key.pem")
    gateway = start_gateway(log_dir, "eureka-tls-follower", config)
    yield gateway
    gateway.child.stop()


def at_cluster(cluster, context, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return http_request(f"{https_eureka(cluster)}{path}", method, body, headers, context=context)


def instances_at(cluster, context, app: str) -> list[dict]:
    """The instances of `app` in A's registry, [] when it has none."""
    status, body = at_cluster(cluster, context, f"/apps/{app.upper()}")
    if status == 404:
        return []
    assert status == 200, (status, body)
    instances = json.loads(body)["application"]["instance"]
    return instances if isinstance(instances, list) else [instances]


def register_scripted(cluster, context, scripted, app: str) -> str:
    instance_id = f"{HOST}:{app}:{scripted.port}"
    body = registration(app, instance_id, scripted.port, route_metadata({"ws_v1": ("ws/v1", f"/{app}/ws")}))
    assert at_cluster(cluster, context, f"/apps/{app.upper()}", "POST", body)[0] == 204
    return instance_id


def logged(gateway, text: str) -> bool:
    return text in gateway.child.stderr_text(200_000)


def test_the_registry_refuses_clients_without_a_certificate(cluster, pki, own_context):
    # The premise of the tests below: A's registry really is https with a client certificate needed.
    with pytest.raises(OSError):
        at_cluster(cluster, ssl.create_default_context(cafile=str(pki / "ca.pem")), "/apps")
    assert at_cluster(cluster, own_context, "/apps")[0] == 200


def test_the_follower_routes_a_service_registered_at_the_cluster_over_mutual_tls(cluster, follower, own_context, scripted):
    app = "tls-remote"
    instance_id = register_scripted(cluster, own_context, scripted, app)
    listed = wait_until(lambda: up_instances(follower, app), 5 * FETCH_INTERVAL + 5, f"{app} routable at B")
    assert [(i["instanceId"], i["source"]) for i in listed] == [(instance_id, "eureka")]
    assert first_reply(follower, f"/{app}/ws/v1/over-https", "followed over https") == "followed over https"
    assert scripted.wait_record("over-https").path == f"/{app}/ws/over-https"

    # B registered itself at A over the same mutual TLS.
    mine = lambda: [i for i in instances_at(cluster, own_context, "GATEWAY") if i["instanceId"] == f"{HOST}:gateway:{follower.port}"]
    wait_until(mine, 10, "B registered at A as GATEWAY")
    assert at_cluster(cluster, own_context, f"/apps/{app.upper()}/{urllib.parse.quote(instance_id, safe='')}", "DELETE")[0] == 200


def test_without_a_client_certificate_the_follower_is_refused_naming_the_tls_cause(log_dir, cluster, pki, own_context, scripted):
    app = "tls-needs-cert"
    register_scripted(cluster, own_context, scripted, app)
    gateway = start_gateway(log_dir, "eureka-tls-no-client-cert", follower_config(cluster, trustStore=pki / "ca.pem"))
    try:
        wait_until(lambda: logged(gateway, "Eureka fetch failed") and logged(gateway, NO_CLIENT_CERTIFICATE), 10, "B's fetch to fail with the TLS cause")
        wait_until(lambda: logged(gateway, "registration failed"), 10, "B's registration to fail")
        assert route_table(gateway)["services"] == []
        assert not [i for i in instances_at(cluster, own_context, "GATEWAY") if i["instanceId"] == f"{HOST}:gateway:{gateway.port}"]
    finally:
        gateway.child.stop()


def test_a_trust_store_without_the_clusters_ca_fails_the_fetch_naming_the_tls_cause(log_dir, cluster, pki, own_context, scripted):
    app = "tls-wrong-ca"
    register_scripted(cluster, own_context, scripted, app)
    config = follower_config(cluster, trustStore=pki / "other-ca.pem", clientCertificate=pki / "client.pem", clientCertificateKey=pki / "client-key.pem")
    gateway = start_gateway(log_dir, "eureka-tls-wrong-ca", config)
    try:
        wait_until(lambda: logged(gateway, "Eureka fetch failed") and logged(gateway, "TLS failed: invalid peer certificate: UnknownIssuer"), 10,
                   "B's fetch to fail with the TLS cause")
        assert route_table(gateway)["services"] == []
    finally:
        gateway.child.stop()


def test_verify_services_false_also_accepts_the_clusters_certificate(log_dir, cluster, pki, own_context, scripted):
    app = "tls-unverified"
    register_scripted(cluster, own_context, scripted, app)
    # No trust store: only verifyServices: false lets B accept A's certificate.
    config = follower_config(cluster, clientCertificate=pki / "client.pem", clientCertificateKey=pki / "client-key.pem")
    config["server"]["ssl"]["verifyServices"] = False
    gateway = start_gateway(log_dir, "eureka-tls-unverified", config)
    try:
        wait_until(lambda: up_instances(gateway, app), 5 * FETCH_INTERVAL + 5, f"{app} routable at B")
        assert logged(gateway, "server.ssl.verifyServices is false")
    finally:
        gateway.child.stop()


def test_a_credential_in_the_https_url_is_sent_to_a_registry_with_users(log_dir, basic_cluster, pki, scripted):
    trusting = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    app = "tls-basic"
    body = registration(app, f"{HOST}:{app}:{scripted.port}", scripted.port, route_metadata({"ws_v1": ("ws/v1", f"/{app}/ws")}))
    alice = {"Authorization": support.basic("alice", "wonderland"), "Content-Type": "application/json"}
    assert http_request(f"{https_eureka(basic_cluster)}/apps/{app.upper()}", "POST", body, alice, context=trusting)[0] == 204
    good = start_gateway(log_dir, "eureka-tls-basic-good", follower_config(basic_cluster, https_eureka(basic_cluster, "alice:wonderland@"), trustStore=pki / "ca.pem"))
    wrong = start_gateway(log_dir, "eureka-tls-basic-wrong", follower_config(basic_cluster, https_eureka(basic_cluster, "alice:guess@"), trustStore=pki / "ca.pem"))
    try:
        wait_until(lambda: up_instances(good, app), 5 * FETCH_INTERVAL + 5, f"{app} routable at B")
        # B's own registration carries the credential too.
        def registered():
            status, answer = http_request(f"{https_eureka(basic_cluster)}/apps/GATEWAY", headers={**alice, "Accept": "application/json"}, context=trusting)
            return status == 200 and f"{HOST}:gateway:{good.port}" in answer.decode()
        wait_until(registered, 10, "B registered at A' as GATEWAY")
        wait_until(lambda: logged(wrong, "Eureka fetch failed") and logged(wrong, "answered 401 Unauthorized"), 10, "the wrong password refused")
        assert route_table(wrong)["services"] == []
        for gateway in (good, wrong):
            assert not logged(gateway, "wonderland") and not logged(gateway, "guess"), "a password in the log"
    finally:
        good.child.stop()
        wrong.child.stop()


def test_the_demo_service_registers_over_https_with_its_registry_flags(log_dir, cluster, follower, pki, own_context):
    demo = start_demo(log_dir, "demo-tls", "--eureka-url", https_eureka(cluster), "--app", "tlsdemo", "--heartbeat-interval", "1",
                      "--registry-ca", pki / "ca.pem", "--registry-cert", pki / "client.pem", "--registry-key", pki / "client-key.pem")
    try:
        [instance] = wait_until(lambda: instances_at(cluster, own_context, "tlsdemo"), 10, "the demo registered at A")
        assert (instance["instanceId"], instance["port"]["$"]) == (f"{HOST}:tlsdemo:{demo.port}", demo.port)
        # Through B, which follows A over https: the demo's own WebSocket endpoint.
        wait_until(lambda: up_instances(follower, "tlsdemo"), 5 * FETCH_INTERVAL + 5, "the demo routable at B")
        assert first_reply(follower, "/tlsdemo/ws/v1/uppercase", "registered over https") == "REGISTERED OVER HTTPS"
    finally:
        demo.child.stop()
    # SIGTERM cancels the registration over https too.
    assert instances_at(cluster, own_context, "tlsdemo") == []


def test_the_demo_service_without_a_client_certificate_logs_the_tls_cause(log_dir, cluster, pki, own_context):
    demo = start_demo(log_dir, "demo-tls-anonymous", "--eureka-url", https_eureka(cluster), "--app", "tlsanonymous",
                      "--registry-ca", pki / "ca.pem")
    try:
        wait_until(lambda: "registration failed" in demo.child.stderr_text(200_000) and NO_CLIENT_CERTIFICATE in demo.child.stderr_text(200_000),
                   10, "the demo's registration to fail with the TLS cause")
        assert instances_at(cluster, own_context, "tlsanonymous") == []
    finally:
        demo.child.stop()


@pytest.mark.parametrize("flags, named", [
    (["--registry-ca", "missing-ca.pem"], "--registry-ca"),
    (["--registry-ca", "{pki}/client-key.pem"], "--registry-ca"),
    (["--registry-cert", "missing-cert.pem", "--registry-key", "missing-key.pem"], "--registry-cert"),
    (["--registry-cert", "{pki}/client.pem", "--registry-key", "missing-key.pem"], "--registry-key"),
])
def test_an_unusable_registry_file_stops_the_demo_with_exit_64_naming_the_flag_and_the_file(tmp_path, pki, flags, named):
    flags = [flag.format(pki=pki) for flag in flags]
    done = subprocess.run([str(binary("wsgate-demo-service")), "--address", HOST, "--port", "0", "--eureka-url", "https://127.0.0.1:1/eureka", *flags],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=20, cwd=tmp_path, env=support.child_env())
    stderr = done.stderr.decode()
    assert done.returncode == 64, (done.returncode, stderr)
    assert f"{named} {flags[flags.index(named) + 1]}: " in stderr, stderr


def test_registry_flags_with_a_plain_http_registry_stop_the_demo_with_exit_64(tmp_path, pki):
    done = subprocess.run([str(binary("wsgate-demo-service")), "--address", HOST, "--port", "0", "--eureka-url", "http://127.0.0.1:1/eureka",
                           "--registry-ca", str(pki / "ca.pem")],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=20, cwd=tmp_path, env=support.child_env())
    stderr = done.stderr.decode()
    assert done.returncode == 64, (done.returncode, stderr)
    assert "are for an https:// --eureka-url" in stderr, stderr
