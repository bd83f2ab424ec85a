"""Handshake validation (RFC 6455 §4.2.1) and the split between relay and HTTP proxy."""

from __future__ import annotations

import http.client

import pytest

from support import HOST, raw_http, upgrade_request

UPPERCASE = "/discoverableclient/ws/v1/uppercase"


def test_plain_get_on_websocket_route_goes_to_http_proxy(gateway):
    conn = http.client.HTTPConnection(HOST, gateway.port, timeout=10)
    try:
        conn.request("GET", UPPERCASE)
        response = conn.getresponse()
        response.read()
        # The demo service itself answers a plain GET on a WebSocket endpoint with 426.
        assert response.status == 426
    finally:
        conn.close()


@pytest.mark.parametrize("gw", ["gateway", "gateway_http"])
def test_missing_key_is_400(request, gw):
    g = request.getfixturevalue(gw)
    response = raw_http(g.port, upgrade_request(g.port, UPPERCASE, key=None))
    assert response.status == 400


@pytest.mark.parametrize("gw", ["gateway", "gateway_http"])
def test_invalid_key_is_400(request, gw):
    g = request.getfixturevalue(gw)
    response = raw_http(g.port, upgrade_request(g.port, UPPERCASE, key="c2hvcnQ="))  # 5 bytes, not 16
    assert response.status == 400


@pytest.mark.parametrize("gw", ["gateway", "gateway_http"])
def test_version_8_is_426_with_version_13(request, gw):
    g = request.getfixturevalue(gw)
    response = raw_http(g.port, upgrade_request(g.port, UPPERCASE, version="8"))
    assert response.status == 426
    assert response.header("Sec-WebSocket-Version") == "13"


def test_missing_connection_upgrade_is_400(gateway):
    request = upgrade_request(gateway.port, UPPERCASE, headers={"Connection": "keep-alive"})
    assert raw_http(gateway.port, request).status == 400


def test_non_get_upgrade_is_400(gateway):
    request = upgrade_request(gateway.port, UPPERCASE).replace(b"GET ", b"POST ", 1)
    request = request.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")
    assert raw_http(gateway.port, request).status == 400
