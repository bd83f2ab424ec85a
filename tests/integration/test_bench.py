"""Smoke of every wsgate-bench workload: the tool's correctness, never its timings.

The echo server runs as a child; each workload runs for about a second against it directly and
through a wsgate gateway with a static route to it, and must exit 0 with one JSON line whose
fields are sane (messages counted, no errors, percentiles ordered).

The wss:// client is checked against a TLS echo server of this file (Python `websockets` with a
certificate from a CA made here with trustme), without wsgate.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import trustme
from websockets.sync.server import serve

from support import HOST, Child, binary, child_env, gateway_config, service, start_gateway

ECHO_SERVER_LINE = re.compile(r"^echo-server listening on 127\.0\.0\.1:(\d+)$")
PIPE_LINE = re.compile(r"^pipe listening on 127\.0\.0\.1:(\d+)$")
PERCENTILES = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]


@pytest.fixture(scope="module")
def echo_url(log_dir) -> str:
    child = Child("bench-echo-server", [binary("wsgate-bench"), "echo-server", "--port", "0", "--threads", "2"], log_dir)
    port = int(child.wait_line(ECHO_SERVER_LINE).group(1))
    yield f"ws://{HOST}:{port}/bench"
    child.stop()


@pytest.fixture(scope="module")
def bench_gateway(log_dir, echo_url):
    port = int(echo_url.rsplit(":", 1)[1].split("/", 1)[0])
    config = gateway_config([service("echo", [(HOST, port)], {"ws_v1": ("ws/v1", "/")})])
    gateway = start_gateway(log_dir, "bench", config)
    yield gateway
    gateway.child.stop()


def bench(*args: str, timeout: float = 40) -> dict:
    """Runs wsgate-bench with --json; asserts exit 0 and exactly one JSON line on stdout."""
    cmd = [str(binary("wsgate-bench")), *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env())
    detail = f"{' '.join(cmd)}\nexit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == 0, detail
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, detail
    report = json.loads(lines[0])
    assert report["tool"] == "wsgate-bench", detail
    assert report["errors"] == 0, detail
    return report


def assert_percentiles(report: dict) -> None:
    values = [report[k] for k in PERCENTILES]
    assert all(isinstance(v, int) and v > 0 for v in values), report
    assert values == sorted(values), report


def assert_echo(report: dict, sessions: int, size: int) -> None:
    assert report["workload"] == "echo"
    assert report["sessions"] == sessions and report["size"] == size
    assert report["messages"] > 0 and report["msgs_per_s"] > 0, report
    assert report["duration_s"] == pytest.approx(1.0)
    expected_mib = report["messages"] * size / report["duration_s"] / (1 << 20)
    assert report["mib_per_s"] == pytest.approx(expected_mib, rel=0.01, abs=0.002), report
    assert_percentiles(report)


@pytest.mark.parametrize("size", [64, 64 * 1024])
def test_echo_direct(echo_url, size):
    report = bench("echo", "--url", echo_url, "--sessions", "2", "--size", str(size), "--duration", "1s", "--warmup", "200ms")
    assert_echo(report, 2, size)


@pytest.mark.parametrize("size,kind", [(64, "--binary"), (64 * 1024, None)])
def test_echo_through_gateway(bench_gateway, size, kind):
    url = f"{bench_gateway.ws}/echo/ws/v1/bench"
    args = ["echo", "--url", url, "--sessions", "2", "--size", str(size), "--duration", "1s", "--warmup", "200ms"]
    report = bench(*args, *([kind] if kind else []))
    assert_echo(report, 2, size)
    assert report["binary"] is (kind == "--binary")


def test_echo_at_a_fixed_rate(bench_gateway):
    url = f"{bench_gateway.ws}/echo/ws/v1/bench"
    report = bench("echo", "--url", url, "--sessions", "4", "--size", "64", "--duration", "1s", "--warmup", "200ms", "--rate", "400")
    assert_echo(report, 4, 64)
    assert report["rate"] == 400
    # A fixed schedule sends rate × duration messages in the window, whatever the latency.
    assert 300 <= report["messages"] <= 404, report


def test_echo_count(echo_url):
    report = bench("echo", "--url", echo_url, "--sessions", "3", "--size", "100", "--count", "1000", "--warmup", "0s")
    assert report["messages"] == 1000, report
    assert_percentiles(report)


@pytest.mark.parametrize("via", ["direct", "gateway"])
def test_connect(echo_url, bench_gateway, via):
    url = echo_url if via == "direct" else f"{bench_gateway.ws}/echo/ws/v1/bench"
    report = bench("connect", "--url", url, "--concurrency", "4", "--duration", "1s")
    assert report["workload"] == "connect" and report["concurrency"] == 4
    assert report["sessions"] > 0 and report["sessions_per_s"] > 0, report
    assert_percentiles(report)


def test_idle_through_gateway(bench_gateway):
    url = f"{bench_gateway.ws}/echo/ws/v1/bench"
    pid = bench_gateway.child.pid
    report = bench("idle", "--url", url, "--sessions", "200", "--pid", str(pid), "--hold", "1s")
    assert report["workload"] == "idle"
    assert report["sessions"] == 200 and report["opened"] == 200 and report["pid"] == pid, report
    assert report["rss_before_kib"] > 0 and report["rss_after_kib"] > 0, report
    assert isinstance(report["bytes_per_session"], int), report


def test_pipe_relays_sessions_end_to_end_and_stops_on_sigterm(log_dir, echo_url):
    # The floor of scripts/bench-compare.py: bytes copied both ways, nothing parsed, so the handshake and
    # every frame reach the echo server untouched and the URL keeps the echo server's path.
    echo_port = int(echo_url.rsplit(":", 1)[1].split("/", 1)[0])
    pipe = Child("bench-pipe", [binary("wsgate-bench"), "pipe", "--address", HOST, "--port", "0",
                                "--upstream", f"{HOST}:{echo_port}", "--threads", "2"], log_dir)
    try:
        port = int(pipe.wait_line(PIPE_LINE).group(1))
        url = f"ws://{HOST}:{port}/bench"
        report = bench("echo", "--url", url, "--sessions", "2", "--size", "64", "--count", "20", "--warmup", "0s")
        assert report["sessions"] == 2 and report["messages"] == 20, report
        assert_percentiles(report)
        report = bench("connect", "--url", url, "--concurrency", "2", "--count", "10")
        assert report["sessions"] == 10, report
        pipe.proc.terminate()
        assert pipe.proc.wait(timeout=10) == 0, pipe.describe()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, port), timeout=2).close()
    finally:
        pipe.stop()


def test_an_unknown_service_is_an_error_per_session(bench_gateway):
    # In close-code mode the gateway completes the handshake, then closes with 1003.
    url = f"{bench_gateway.ws}/nosuchservice/ws/v1/bench"
    proc = subprocess.run(
        [str(binary("wsgate-bench")), "echo", "--url", url, "--sessions", "2", "--size", "8", "--count", "10", "--json"],
        capture_output=True, text=True, timeout=30, env=child_env(),
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["errors"] == 2 and report["messages"] == 0, report
    assert "session 0:" in proc.stderr and "1003" in proc.stderr, proc.stderr


def test_bad_usage_exits_2():
    proc = subprocess.run(
        [str(binary("wsgate-bench")), "echo", "--url", "ws://127.0.0.1:1/", "--sessions", "2", "--size", "8"],
        capture_output=True, text=True, timeout=30, env=child_env(),
    )
    assert proc.returncode == 2, proc.stderr
    proc = subprocess.run(
        [str(binary("wsgate-bench")), "idle", "--url", "ws://127.0.0.1:1/", "--sessions", "1000000"],
        capture_output=True, text=True, timeout=30, env=child_env(),
    )
    assert proc.returncode == 2, proc.stderr
    assert "does not fit" in proc.stderr, proc.stderr


# ----------------------------------------------------------------- wss://


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate it signed (SAN IP:127.0.0.1, DNS:localhost), and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(d / "test-ca.pem"))
    other_ca.cert_pem.write_to_path(str(d / "other-ca.pem"))
    server.private_key_pem.write_to_path(str(d / "server.key"))
    (d / "server.pem").write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    return {"ca": d / "test-ca.pem", "other_ca": d / "other-ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


@pytest.fixture(scope="module")
def wss_url(pki) -> str:
    """A TLS WebSocket echo server (websockets' threaded server), its URL by IP: the certificate has it as a SAN."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    context.set_alpn_protocols(["http/1.1"])

    def echo(ws):
        for message in ws:
            ws.send(message)

    server = serve(echo, HOST, 0, ssl=context, max_size=None, compression=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"wss://{HOST}:{server.socket.getsockname()[1]}/bench"
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.parametrize("size", [64, 64 * 1024])
def test_echo_over_wss(pki, wss_url, size):
    report = bench("echo", "--url", wss_url, "--ca", str(pki["ca"]), "--sessions", "2", "--size", str(size),
                   "--duration", "1s", "--warmup", "200ms")
    assert_echo(report, 2, size)
    assert report["url"] == wss_url


def test_connect_over_wss(pki, wss_url):
    report = bench("connect", "--url", wss_url, "--ca", str(pki["ca"]), "--concurrency", "2", "--duration", "1s")
    assert report["workload"] == "connect" and report["sessions"] > 0, report
    assert_percentiles(report)


def test_wss_checks_the_certificate(pki, wss_url):
    # Trusting another CA: every session fails its TLS handshake, and the run says why.
    proc = subprocess.run(
        [str(binary("wsgate-bench")), "connect", "--url", wss_url, "--ca", str(pki["other_ca"]),
         "--concurrency", "1", "--count", "2", "--json"],
        capture_output=True, text=True, timeout=30, env=child_env(),
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["errors"] == 2, proc.stdout
    assert "TLS handshake failed" in proc.stderr and "UnknownIssuer" in proc.stderr, proc.stderr


@pytest.mark.parametrize("workload", [
    ["echo", "--sessions", "1", "--size", "8", "--count", "1"],
    ["connect", "--concurrency", "1", "--count", "1"],
    ["idle", "--sessions", "1"],
])
def test_wss_without_ca_is_a_usage_error(workload):
    # Checked before anything connects: no server needed.
    proc = subprocess.run(
        [str(binary("wsgate-bench")), workload[0], "--url", "wss://127.0.0.1:1/", *workload[1:]],
        capture_output=True, text=True, timeout=30, env=child_env(),
    )
    assert proc.returncode == 2, proc.stderr
    assert "wss:// URL needs --ca FILE" in proc.stderr, proc.stderr
    assert proc.stdout == "", proc.stdout
