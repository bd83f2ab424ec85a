"""Subprotocol negotiation through the gateway (filtered by supportedProtocols)."""

from __future__ import annotations

import json

import socket

from support import HOST, connect, read_http_head, recv, run, upgrade_request, ws_key

HEADER = "/discoverableclient/ws/v1/header"


async def negotiate(gateway, offered):
    async with connect(gateway, HEADER, subprotocols=offered) as ws:
        await ws.send("?")
        seen = json.loads(await recv(ws))["headers"]
        return ws.subprotocol, seen.get("sec-websocket-protocol")


def test_supported_subprotocol_is_chosen(gateway):
    chosen, forwarded = run(negotiate(gateway, ["v12.stomp"]))
    assert forwarded == "v12.stomp"
    assert chosen == "v12.stomp"


def test_unsupported_subprotocol_is_not_forwarded(gateway):
    chosen, forwarded = run(negotiate(gateway, ["foo"]))
    assert forwarded is None
    assert chosen is None


def test_offered_list_is_filtered(gateway):
    chosen, forwarded = run(negotiate(gateway, ["foo", "v11.stomp", "bar", "v12.stomp"]))
    assert [p.strip() for p in forwarded.split(",")] == ["v11.stomp", "v12.stomp"]
    assert chosen == "v11.stomp"  # the demo picks the first it was offered


def test_environment_overrides_supported_protocols(gateway_wamp):
    chosen, forwarded = run(negotiate(gateway_wamp, ["wamp"]))
    assert (chosen, forwarded) == ("wamp", "wamp")
    # v11.stomp is in the file but not in SERVER_WEBSOCKET_SUPPORTEDPROTOCOLS.
    chosen, forwarded = run(negotiate(gateway_wamp, ["v11.stomp", "v12.stomp"]))
    assert (chosen, forwarded) == ("v12.stomp", "v12.stomp")


def test_star_passes_any_subprotocol(gateway_any_protocol):
    chosen, forwarded = run(negotiate(gateway_any_protocol, ["foo", "bar"]))
    assert [p.strip() for p in forwarded.split(",")] == ["foo", "bar"]
    assert chosen == "foo"


def test_supported_protocols_as_yaml_list(gateway_protocol_list):
    assert run(negotiate(gateway_protocol_list, ["wamp"])) == ("wamp", "wamp")
    assert run(negotiate(gateway_protocol_list, ["v11.stomp"])) == (None, None)


def test_close_code_refusal_names_an_offered_subprotocol(gateway):
    """Browsers and node `ws` fail a 101 that names none of the offered subprotocols, and would never see
    the close reason; the refusal's 101 therefore echoes the first one offered."""
    raw_key = ws_key()
    sock = socket.create_connection((HOST, gateway.port), timeout=10)
    try:
        sock.sendall(upgrade_request(gateway.port, "/nosuchservice/ws/v1/x", key=raw_key,
                                     headers={"Sec-WebSocket-Protocol": "v12.stomp, v11.stomp"}))
        response = read_http_head(sock)
        assert response.status == 101
        assert response.header("Sec-WebSocket-Protocol") == "v12.stomp"
    finally:
        sock.close()
