"""Subprotocol negotiation through the gateway (filtered by supportedProtocols)."""

from __future__ import annotations

import json

from support import connect, recv, run

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
