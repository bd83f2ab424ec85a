"""Configuration errors: exit code 64 and a message naming the problem."""

from __future__ import annotations

from support import gateway_config
from support import serve_until_exit as serve


def test_unknown_key_exits_64_naming_the_key(tmp_path):
    config = gateway_config([])
    config["server"]["bogusKey"] = True
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "boguskey" in stderr.lower(), stderr
    assert b"listening" not in result.stdout


def test_wrong_type_exits_64_naming_the_key(tmp_path):
    config = gateway_config([])
    config["server"]["port"] = "not-a-port"
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "port" in stderr.lower(), stderr


def test_tls_is_on_by_default_and_without_a_certificate_exits_64_naming_the_keys(tmp_path):
    config = gateway_config([])
    del config["server"]["ssl"]
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.enabled: is true (the default)" in stderr, stderr
    for key in ("server.ssl.certificate", "server.ssl.certificateKey", "server.ssl.keyStore", "server.ssl.enabled: false"):
        assert key in stderr, stderr


def test_plain_ws_from_the_environment_when_the_file_says_nothing(log_dir, upstreams):
    # SERVER_SSL_ENABLED=false turns the default off as `enabled: false` in the file would.
    from conftest import all_services
    from support import connect, recv, run, start_gateway

    config = gateway_config(all_services(upstreams))
    del config["server"]["ssl"]
    gw = start_gateway(log_dir, "env-plain", config, env={"SERVER_SSL_ENABLED": "false"})
    try:
        async def scenario():
            async with connect(gw, "/discoverableclient/ws/v1/uppercase") as ws:
                await ws.send("plain")
                return await recv(ws)

        assert run(scenario()) == "PLAIN"
    finally:
        gw.child.stop()


def test_pem_files_and_a_keystore_together_exit_64_naming_the_keys(tmp_path):
    config = gateway_config([])
    config["server"]["ssl"] = {"certificate": "chain.pem", "certificateKey": "key.pem", "keyStore": "gateway.p12", "keyStorePassword": "password"}
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.keyStore:" in stderr and "server.ssl.certificate" in stderr and "not both" in stderr, stderr


def test_a_keystore_without_its_password_exits_64_naming_the_key(tmp_path):
    config = gateway_config([])
    config["server"]["ssl"] = {"enabled": True, "keyStore": "gateway.p12"}
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64 and b"listening" not in result.stdout, (result.returncode, stderr)
    assert "server.ssl.keyStorePassword: is required" in stderr, stderr


def test_environment_overrides_error_mode(log_dir, upstreams):
    # The file says close-code; SERVER_WEBSOCKET_ERRORMODE (relaxed binding) wins.
    import pytest
    from websockets.exceptions import InvalidStatus

    from conftest import all_services
    from support import connect, run, start_gateway

    gw = start_gateway(
        log_dir, "env-error-mode", gateway_config(all_services(upstreams), "close-code"),
        env={"SERVER_WEBSOCKET_ERRORMODE": "http-status"},
    )
    try:
        async def scenario():
            with pytest.raises(InvalidStatus) as info:
                async with connect(gw, "/nosuchservice/ws/v1/x"):
                    pass
            return info.value.response.status_code

        assert run(scenario()) == 404
    finally:
        gw.child.stop()


def test_a_second_gateway_on_the_same_port_is_refused(tmp_path, gateway):
    # The workers share their port through SO_REUSEPORT; another process must not join them silently.
    config = gateway_config([])
    config["server"]["port"] = gateway.port
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode != 0 and b"listening" not in result.stdout, stderr
    assert "cannot listen" in stderr and str(gateway.port) in stderr, stderr
