"""Routes follow the embedded registry: what Eureka clients register is routed at once, and leaves
the route table when its lease expires or is cancelled.

The WebSocket service is the suite's scripted upstream (a real `websockets` server that echoes);
py-eureka-client and eureka-js-client register it, unmodified, with `apiml.routes.*` metadata. Every
gateway runs `wsgate serve` with `discovery.embedded.port: 0` and evicts expired leases every 200 ms.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

import support
from support import (
    close_of,
    first_reply,
    connect,
    expect_close,
    http_request,
    recv,
    register,
    registration,
    registry_gateway_config,
    route_instances,
    route_metadata,
    route_table,
    run,
    service,
    start_gateway,
    start_js,
    start_py,
    up_instances,
    wait_until,
)

NO_INSTANCE = "Requested service {} does not have available instance"


@pytest.fixture(scope="module")
def gw(log_dir, upstreams):
    """A gateway with the embedded registry and one static service beside it."""
    static = service("discoverableclient", [(support.HOST, upstreams.demo.port)], support.demo_routes())
    gateway = start_gateway(log_dir, "discovery", registry_gateway_config([static]))
    yield gateway
    gateway.child.stop()


def test_py_eureka_client_registers_a_websocket_service_that_heartbeats_keep_and_silence_expires(gw, log_dir, scripted):
    app = "py-ws"
    options = {"metadata": route_metadata({"ws_v1": ("ws/v1", "/py-ws/ws")}), "renewal": 1, "duration": 2}
    py = start_py(log_dir, gw.registry_port, app, scripted.port, app, options=options)
    try:
        py.next_event("registered")
        listed = wait_until(lambda: up_instances(gw, app), 10, f"{app} routable")
        assert listed == [{"instanceId": f"127.0.0.1:{app}:{scripted.port}", "host": "127.0.0.1", "port": scripted.port,
                           "secure": False, "status": "UP", "source": "embedded", "routable": True}]
        assert first_reply(gw, "/py-ws/ws/v1/py-echo?x=1", "through the registry") == "through the registry"
        assert scripted.wait_record("py-echo").path == "/py-ws/ws/py-echo?x=1"

        # Heartbeats keep it: still routable after three lease durations (2 s each).
        first = support.eureka_instance(gw, app.upper(), f"127.0.0.1:{app}:{scripted.port}")
        registered_at = first["leaseInfo"]["registrationTimestamp"]

        def renewed_long_after_its_lease() -> bool:
            assert up_instances(gw, app), "a heartbeating instance left the route table"
            record = support.eureka_instance(gw, app.upper(), f"127.0.0.1:{app}:{scripted.port}")
            return record["leaseInfo"]["lastRenewalTimestamp"] - registered_at > 3 * 2000

        wait_until(renewed_long_after_its_lease, 20, "heartbeats to outlast three leases", interval=0.2)
        assert first_reply(gw, "/py-ws/ws/v1/again", "still here") == "still here"

        # Silence (the client killed, no cancel) expires the lease: the service stays known, with no instance.
        py.child.kill(signal.SIGKILL)
        wait_until(lambda: route_instances(gw, app) == [], 10, f"{app}'s lease to expire")
        assert run(close_of(gw, "/py-ws/ws/v1/late")) == (1012, NO_INSTANCE.format(app))
        status, _ = http_request(f"http://{support.HOST}:{gw.port}/py-ws/ws/v1/late")
        assert status == 503
    finally:
        py.child.stop()


def test_eureka_js_client_registers_a_websocket_service_and_cancel_removes_it_at_once(gw, log_dir, scripted):
    app = "js-ws"
    options = {"metadata": route_metadata({"ws_v1": ("ws/v1", "/js-ws/ws")})}
    js = start_js(log_dir, gw.registry_port, app, scripted.port, app, options=options)
    try:
        js.next_event("registered")
        # eureka-js-client sends no instanceId: the registry names it by its hostName.
        listed = wait_until(lambda: up_instances(gw, app), 10, f"{app} routable")
        assert [(i["instanceId"], i["host"], i["port"]) for i in listed] == [("localhost", "127.0.0.1", scripted.port)]
        assert first_reply(gw, "/JS-WS/ws/v1/js-echo", "from js") == "from js"
        assert scripted.wait_record("js-echo").path == "/js-ws/ws/js-echo"

        js.child.proc.terminate()
        js.next_event("deregistered", timeout=10)
        # Cancelled means gone from the route table at once (no cache, no eviction delay).
        wait_until(lambda: route_instances(gw, app) == [], 1, f"{app} to leave on cancel")
        assert run(close_of(gw, "/js-ws/ws/v1/after-cancel")) == (1012, NO_INSTANCE.format(app))
    finally:
        js.child.stop()


def test_out_of_service_stops_new_sessions_while_an_open_session_goes_on(gw, scripted):
    app, instance_id = "override", f"127.0.0.1:override:{scripted.port}"
    body = registration(app, instance_id, scripted.port, route_metadata({"ws_v1": ("ws/v1", "/override/ws")}))
    assert register(gw, app, body)[0] == 204
    wait_until(lambda: up_instances(gw, app), 5, f"{app} routable")
    status_url = f"{gw.eureka}/apps/OVERRIDE/{instance_id}/status"

    async def scenario():
        async with connect(gw, "/override/ws/v1/long-lived") as open_session:
            await open_session.send("before")
            assert await recv(open_session) == "before"
            status, _ = await asyncio.to_thread(http_request, f"{status_url}?value=OUT_OF_SERVICE", "PUT")
            assert status == 200
            listed = await asyncio.to_thread(route_instances, gw, app)
            assert [i["status"] for i in listed] == ["OUT_OF_SERVICE"]
            async with connect(gw, "/override/ws/v1/refused") as refused:
                assert await expect_close(refused) == (1012, NO_INSTANCE.format(app))
            # The session opened before the override still relays both ways.
            await open_session.send("after")
            assert await recv(open_session) == "after"

    run(scenario())
    # Removing the override brings it back.
    assert http_request(f"{status_url}?value=UP", "DELETE")[0] == 200
    wait_until(lambda: up_instances(gw, app), 5, f"{app} routable again")
    assert first_reply(gw, "/override/ws/v1/back", "back") == "back"
    assert http_request(f"{gw.eureka}/apps/OVERRIDE/{instance_id}", "DELETE")[0] == 200
    # Routes follow the registry a moment later: the next test compares whole route tables.
    wait_until(lambda: not route_instances(gw, app), 5, f"{app} gone from the routes")


def test_malformed_registrations_are_refused_and_change_no_route(log_dir, upstreams, scripted):
    # A gateway of its own: the shared one's routes change as other tests' clients come and go.
    static = service("discoverableclient", [(support.HOST, upstreams.demo.port)], support.demo_routes())
    gw = start_gateway(log_dir, "discovery-malformed", registry_gateway_config([static]))
    try:
        before = route_table(gw)
        for body, content_type in [
            (b'{"instance": {"app": "BROKEN", "hostName": ', "application/json"),
            (b"<instance><app>BROKEN</app><hostName>127.0.0.1", "application/xml"),
            (json.dumps({"instance": {"app": "BROKEN", "ipAddr": "127.0.0.1"}}).encode(), "application/json"),
            (registration("other-name", "x", scripted.port, {}), "application/json"),
        ]:
            status, answer = register(gw, "broken", body, content_type)
            assert status == 400, (body, status, answer)
        assert route_table(gw) == before
        assert route_instances(gw, "broken") is None
    finally:
        gw.child.stop()


def test_static_services_route_beside_registered_ones(gw):
    listed = route_instances(gw, "discoverableclient")
    assert [(i["source"], i["status"]) for i in listed] == [("static", "UP")]
    assert first_reply(gw, "/discoverableclient/ws/v1/uppercase", "static") == "STATIC"


def test_a_registration_from_a_disallowed_address_is_refused(log_dir, scripted):
    # 127.0.0.1 is outside the allow list: reads work, changes get 403 and change nothing.
    gw = start_gateway(log_dir, "registry-allow", registry_gateway_config(allow=["10.0.0.0/8"]))
    try:
        body = registration("denied", "127.0.0.1:denied:1", scripted.port, route_metadata({"ws_v1": ("ws/v1", "/d/ws")}))
        status, _ = register(gw, "denied", body)
        assert status == 403
        status, apps = http_request(f"{gw.eureka}/apps", headers={"Accept": "application/json"})
        assert status == 200 and json.loads(apps)["applications"]["application"] == []
        assert route_table(gw) == {"services": []}
    finally:
        gw.child.stop()


def test_the_state_file_makes_registered_instances_routable_right_after_a_restart(log_dir, tmp_path, scripted):
    state = tmp_path / "registry.json"
    config = registry_gateway_config(stateFile=str(state))
    gw = start_gateway(log_dir, "registry-state", config)
    instance_id = f"127.0.0.1:stateful:{scripted.port}"
    try:
        body = registration("stateful", instance_id, scripted.port, route_metadata({"ws_v1": ("ws/v1", "/stateful/ws")}), duration=120)
        assert register(gw, "stateful", body)[0] == 204
        wait_until(lambda: state.exists() and "STATEFUL" in state.read_text(errors="replace"), 10, "the state file to be written")
    finally:
        gw.child.stop()
    assert gw.child.proc.returncode == 0, gw.child.describe()

    restarted = start_gateway(log_dir, "registry-state-restarted", config)
    try:
        # Routable as soon as the gateway listens: no re-registration, no waiting.
        assert [i["instanceId"] for i in up_instances(restarted, "stateful")] == [instance_id]
        assert first_reply(restarted, "/stateful/ws/v1/after-restart", "resumed") == "resumed"
    finally:
        restarted.child.stop()


def test_a_relative_state_file_is_next_to_the_config_file(log_dir, tmp_path):
    config = registry_gateway_config(stateFile="registry-relative.json")
    gw = start_gateway(log_dir, "registry-relative", config)
    try:
        body = registration("relative", "127.0.0.1:relative:1", 1, {})
        assert register(gw, "relative", body)[0] == 204
        state = gw.config_path.parent / "registry-relative.json"
        wait_until(lambda: state.exists() and "RELATIVE" in state.read_text(errors="replace"), 10, f"{state} to be written")
    finally:
        gw.child.stop()


def test_a_registry_port_in_use_stops_the_gateway_with_exit_64_naming_the_key(tmp_path, gw):
    config = registry_gateway_config()
    config["discovery"]["embedded"]["port"] = gw.registry_port
    result = support.serve_until_exit(tmp_path, config)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "discovery.embedded.port" in stderr and str(gw.registry_port) in stderr, stderr


def test_the_demo_service_registers_itself_heartbeats_re_registers_and_cancels(gw, log_dir):
    app = "demo-standalone"
    child = support.Child(
        "demo-standalone",
        [support.binary("wsgate-demo-service"), "--port", "0", "--base-path", f"/{app}", "--app", app,
         "--instance-id", "standalone", "--eureka-url", gw.eureka, "--heartbeat-interval", "1"],
        log_dir,
    )
    try:
        port = int(child.wait_line(support.DEMO_LINE).group(1))
        instance_id = f"127.0.0.1:{app}:{port}"
        wait_until(lambda: [i["instanceId"] for i in up_instances(gw, app)] == [instance_id], 10, f"{app} registered")
        assert first_reply(gw, f"/{app}/ws/v1/uppercase", "self-registered") == "SELF-REGISTERED"
        status, body = http_request(f"http://{support.HOST}:{gw.port}/{app}/api/v1/greeting?name=x")
        assert status == 200 and json.loads(body)["instanceId"] == "standalone", body

        # Its lease dropped behind its back: the next heartbeat gets 404 and it registers again.
        record = support.eureka_instance(gw, app.upper(), instance_id)
        assert record["leaseInfo"]["renewalIntervalInSecs"] == 1 and record["leaseInfo"]["durationInSecs"] == 3
        registered = record["leaseInfo"]["registrationTimestamp"]
        assert http_request(f"{gw.eureka}/apps/{app.upper()}/{instance_id}", "DELETE")[0] == 200

        def registered_again() -> bool:
            # The next heartbeat (1 s) may come at once: a new registration time tells it apart from
            # the old lease, whether or not the route was seen empty in between.
            again = support.eureka_instance(gw, app.upper(), instance_id)
            return again is not None and again["leaseInfo"]["registrationTimestamp"] > registered and bool(up_instances(gw, app))

        wait_until(registered_again, 10, f"{app} to register again after a heartbeat 404")

        # SIGTERM: the registration is cancelled before the service stops.
        child.proc.terminate()
        assert child.proc.wait(timeout=10) == 0
        assert route_instances(gw, app) == []
    finally:
        child.stop()


def test_a_corrupt_state_file_stops_the_gateway_with_exit_64_naming_the_key(tmp_path):
    state = tmp_path / "corrupt.json"
    state.write_text("{not a registry")
    result = support.serve_until_exit(tmp_path, registry_gateway_config(stateFile=str(state)))
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 64, (result.returncode, stderr)
    assert "discovery.embedded.stateFile" in stderr and "corrupt.json" in stderr, stderr
    assert b"listening" not in result.stdout
