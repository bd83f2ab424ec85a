"""Fixtures of the wsgate end-to-end suite.

One demo service, one scripted upstream and one gateway per config variant are
started per session; every child is killed at teardown (and at interpreter
exit, whatever happened). All sockets are on 127.0.0.1, all ports are chosen by
the kernel and read back from the processes.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import pytest

import support
from support import (
    Child,
    DemoService,
    Gateway,
    RawUpstream,
    ScriptedUpstream,
    SilentServer,
    closed_port,
    demo_routes,
    gateway_config,
    service,
    start_demo,
    start_gateway,
)

DEFAULT_TIMEOUT = 60

atexit.register(Child.stop_all)


def pytest_collection_modifyitems(items):
    # Every test has a time limit, also when run without tests/integration/pytest.ini.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    keep = os.environ.get("WSGATE_TEST_LOG_DIR")
    if keep:
        path = support.Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("wsgate-e2e")


@pytest.fixture(scope="session", autouse=True)
def children_guard():
    """Kills every child process the session started."""
    yield
    Child.stop_all()


@pytest.fixture(scope="session")
def demo(log_dir) -> DemoService:
    return start_demo(log_dir, "demo-1")


@pytest.fixture(scope="session")
def scripted():
    upstream = ScriptedUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def silent():
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def raw_upstream():
    server = RawUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def refused_port() -> int:
    return closed_port()


@dataclass
class Upstreams:
    demo: DemoService
    scripted: ScriptedUpstream
    silent: SilentServer
    refused_port: int
    raw: RawUpstream


@pytest.fixture(scope="session")
def upstreams(demo, scripted, silent, refused_port, raw_upstream) -> Upstreams:
    return Upstreams(demo, scripted, silent, refused_port, raw_upstream)


def all_services(u: Upstreams) -> list[dict]:
    """The static services every standard gateway of the suite knows."""
    return [
        service("discoverableclient", [(support.HOST, u.demo.port)], demo_routes()),
        service(
            "scripted",
            [(support.HOST, u.scripted.port)],
            {
                "ws_v1": ("ws/v1", "/scripted/ws"),
                "ws_special": ("/ws/v1/special/", "/scripted/special"),
            },
        ),
        service("noinstance", [], {"ws_v1": ("ws/v1", "/noinstance/ws")}),
        service("refused", [(support.HOST, u.refused_port)], {"ws_v1": ("ws/v1", "/refused/ws")}),
        service("silent", [(support.HOST, u.silent.port)], {"ws_v1": ("ws/v1", "/silent/ws")}),
        service("rawsvc", [(support.HOST, u.raw.port)], {"ws_v1": ("ws/v1", "/rawsvc/ws")}),
    ]


@pytest.fixture(scope="session")
def gateway(log_dir, upstreams) -> Gateway:
    """The main gateway: default close-code mode."""
    return start_gateway(log_dir, "close-code", gateway_config(all_services(upstreams), "close-code"))


@pytest.fixture(scope="session")
def gateway_http(log_dir, upstreams) -> Gateway:
    """Same services, errors reported as HTTP statuses."""
    return start_gateway(log_dir, "http-status", gateway_config(all_services(upstreams), "http-status"))


@pytest.fixture(scope="session")
def gateway_small_frames(log_dir, upstreams) -> Gateway:
    """maxFrameSize: 64KiB."""
    return start_gateway(
        log_dir, "small-frames", gateway_config(all_services(upstreams), "close-code", maxFrameSize="64KiB")
    )


@pytest.fixture(scope="session")
def gateway_wamp(log_dir, upstreams) -> Gateway:
    """The file says v12.stomp,v11.stomp; the environment overrides it with v12.stomp,wamp."""
    return start_gateway(
        log_dir,
        "wamp",
        gateway_config(all_services(upstreams), "close-code"),
        env={"SERVER_WEBSOCKET_SUPPORTEDPROTOCOLS": "v12.stomp,wamp"},
    )


@pytest.fixture(scope="module")
def gateway_diag(log_dir, upstreams) -> Gateway:
    """A gateway of its own, so its session list holds only the diagnostics tests' sessions."""
    return start_gateway(log_dir, "diagnostics", gateway_config(all_services(upstreams), "close-code"))


@pytest.fixture(scope="session")
def gateway_any_protocol(log_dir, upstreams) -> Gateway:
    """supportedProtocols "*": any offered subprotocol passes."""
    return start_gateway(
        log_dir, "any-protocol", gateway_config(all_services(upstreams), "close-code", supportedProtocols="*")
    )


@pytest.fixture(scope="session")
def gateway_protocol_list(log_dir, upstreams) -> Gateway:
    """supportedProtocols written as a YAML list."""
    return start_gateway(
        log_dir,
        "protocol-list",
        gateway_config(all_services(upstreams), "close-code", supportedProtocols=["v12.stomp", "wamp"]),
    )


# ------------------------------------------------------------- TLS (trustme)


@pytest.fixture(scope="module")
def ca():
    """A test CA of the module's own (trustme)."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory, ca):
    """The gateway's certificate (for 127.0.0.1 and localhost, signed by `ca`) as PEM files: chain.pem and
    key.pem; ca.pem; and other-key.pem, the key of an unrelated certificate."""
    import trustme

    path = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(path / "key.pem"))
    (path / "chain.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(path / "other-key.pem"))
    return path


@pytest.fixture(scope="module")
def client_context(ca):
    """A client's ssl context trusting `ca`, host names checked."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context
