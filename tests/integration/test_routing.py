"""Routing and handshake forwarding: headers, query strings, encoding, route choice."""

from __future__ import annotations

import base64
import json
import uuid

from support import connect, recv, run

HEADER = "/discoverableclient/ws/v1/header"


async def header_echo(gateway, path=HEADER, **kwargs) -> dict:
    async with connect(gateway, path, **kwargs) as ws:
        await ws.send("headers please")
        return json.loads(await recv(ws))


def test_end_to_end_headers_are_forwarded(gateway, demo):
    auth = "Basic " + base64.b64encode(b"user:pa ss").decode()
    large = {f"X-Large-{i}": (chr(ord("a") + i) * 3000) for i in range(1, 4)}
    sent = {
        "Authorization": auth,
        "Cookie": "apimlAuthenticationToken=abc.def.ghi; other=1",
        "X-Test": "test value",
        **large,
        # hop-by-hop: must not reach the service
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic " + base64.b64encode(b"proxy:secret").decode(),
    }
    answer = run(header_echo(gateway, additional_headers=sent, origin="http://origin.example:8080"))
    headers = answer["headers"]

    assert answer["uri"] == "/discoverableclient/ws/header"
    assert headers.get("authorization") == auth
    assert headers.get("cookie") == sent["Cookie"]
    assert headers.get("origin") == "http://origin.example:8080"
    assert headers.get("x-test") == "test value"
    for name, value in large.items():
        assert headers.get(name.lower()) == value, f"{name} not forwarded intact"

    for hop in ("keep-alive", "te", "proxy-authorization"):
        assert hop not in headers, f"hop-by-hop header {hop} was forwarded: {headers.get(hop)!r}"

    assert headers.get("host") == f"127.0.0.1:{demo.port}", "Host must be rewritten to the instance"
    assert "127.0.0.1" in headers.get("x-forwarded-for", ""), headers.get("x-forwarded-for")
    assert headers.get("x-forwarded-proto") == "http"
    assert headers.get("x-forwarded-host") in (f"127.0.0.1:{gateway.port}", "127.0.0.1"), headers.get("x-forwarded-host")
    assert headers.get("x-forwarded-port") == str(gateway.port)
    # A valid upgrade reached the service.
    assert headers.get("upgrade", "").lower() == "websocket"
    assert headers.get("sec-websocket-version") == "13"


def test_query_string_and_percent_encoding_are_kept(gateway):
    answer = run(header_echo(gateway, HEADER + "?a=1&b=x%20y"))
    assert answer["uri"] == "/discoverableclient/ws/header?a=1&b=x%20y"


async def echo_once(gateway, path):
    """One echoed message through `path`, so the scripted service records the session."""
    async with connect(gateway, path) as ws:
        await ws.send("x")
        assert await recv(ws) == "x"


def test_encoded_path_segments_are_kept(gateway, scripted):
    token = uuid.uuid4().hex
    run(echo_once(gateway, f"/scripted/ws/v1/rec/{token}/a%2Fb/c%20d?q=%41%2f&e="))
    rec = scripted.wait_record(token)
    assert rec.path == f"/scripted/ws/rec/{token}/a%2Fb/c%20d?q=%41%2f&e="


def test_longest_gateway_url_wins(gateway, scripted):
    plain, special = uuid.uuid4().hex, uuid.uuid4().hex

    run(echo_once(gateway, f"/scripted/ws/v1/rec/{plain}"))
    run(echo_once(gateway, f"/scripted/ws/v1/special/rec/{special}"))
    assert scripted.wait_record(plain).path == f"/scripted/ws/rec/{plain}"
    assert scripted.wait_record(special).path == f"/scripted/special/rec/{special}"


def test_service_id_case_insensitive_reaches_same_route(gateway, scripted):
    token = uuid.uuid4().hex
    run(echo_once(gateway, f"/ScRiPtEd/ws/v1/rec/{token}"))
    assert scripted.wait_record(token).path == f"/scripted/ws/rec/{token}"
