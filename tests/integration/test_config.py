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


def test_pkcs12_keystore_exits_64_saying_it_is_not_built(tmp_path):
    config = gateway_config([])
    config["server"]["ssl"] = {"enabled": True, "keyStore": "keystore.p12", "keyStorePassword": "password"}
    result = serve(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    lower = stderr.lower()
    assert "server.ssl.keystore" in lower, stderr
    assert "not" in lower and any(w in lower for w in ("built", "implemented", "supported", "yet", "available")), stderr
    assert b"listening" not in result.stdout


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
