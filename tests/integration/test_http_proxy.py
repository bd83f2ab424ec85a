"""The HTTP side of the same route table."""

from __future__ import annotations

import json

from support import HOST, exchange, header


def test_get_greeting(gateway, demo):
    status, _, body = exchange(gateway.port, "GET", "/discoverableclient/api/v1/greeting?name=Ann")
    assert status == 200, body
    assert json.loads(body) == {"greeting": "Hello, Ann!", "instanceId": demo.instance_id}


def test_get_greeting_service_id_case_insensitive(gateway, demo):
    status, _, body = exchange(gateway.port, "GET", "/DiscoverableClient/api/v1/greeting?name=Bob")
    assert status == 200, body
    assert json.loads(body)["greeting"] == "Hello, Bob!"


def test_post_is_echoed(gateway):
    payload = b'{"hello": "world", "n": 42}'
    status, _, body = exchange(
        gateway.port, "POST", "/discoverableclient/api/v1/request?x=1&y=a%20b", body=payload,
        headers={"Content-Type": "application/json", "X-Test": "posted"},
    )
    assert status == 200, body
    echo = json.loads(body)
    assert echo["method"] == "POST"
    assert echo["uri"] == "/discoverableclient/api/v1/request?x=1&y=a%20b"
    assert echo["body"] == payload.decode()
    assert echo["headers"].get("x-test") == "posted"
    assert echo["headers"].get("content-type") == "application/json"


def test_unknown_service_is_404(gateway):
    status, _, _ = exchange(gateway.port, "GET", "/nosuchservice/api/v1/greeting")
    assert status == 404


def test_an_unreachable_service_is_502_naming_the_request_not_a_session(gateway, upstreams):
    status, _, body = exchange(gateway.port, "GET", "/refused/api/v1/items")
    # The route table has only ws/v1 for this service: an api path is not one of its routes.
    assert status == 404, body
    status, headers, body = exchange(gateway.port, "GET", "/refused/ws/v1/items")
    assert status == 502, body
    url = f"http://{HOST}:{upstreams.refused_port}/refused/ws/items"
    assert body.decode().strip() == f"Error forwarding request to service at {url}: connection refused"
    assert header(headers, "content-type") == "text/plain; charset=utf-8"
