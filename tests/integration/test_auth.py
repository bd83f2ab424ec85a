"""Authentication, the Origin allow-list and the protected diagnostics (README "Security").

Real `websockets` clients and `http.client` requests against gateways whose htpasswd file is made here
with Python `bcrypt`; the scripted upstream records every request that reaches it, so a refusal can be
shown to have contacted no service.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import urllib.parse
import uuid

import bcrypt
import pytest
from websockets.exceptions import InvalidStatus

import support
from support import (
    close_of,
    reply,
    exchange,
    header,
    HOST,
    connect,
    gateway_config,
    http_request,
    registry_gateway_config,
    run,
    serve_until_exit,
    service,
    start_gateway,
    start_py,
    wait_until,
)

CHALLENGE = 'Basic realm="wsgate"'


def secret(user: str) -> str:
    """A password nobody could find in a log by chance."""
    return f"{user}-{uuid.uuid4().hex}"


# user -> (password, cost, prefix): costs 4 and 12 show that each entry's own cost is used; bob's entry
# is written as Apache's htpasswd writes it ($2y$), the others as Python's bcrypt does ($2b$).
USERS = {
    "alice": (secret("alice"), 4, "$2b$"),
    "bob": (secret("bob"), 12, "$2y$"),
    "carol": (secret("carol"), 10, "$2b$"),  # for the cache test only
    "root": (secret("root"), 4, "$2b$"),
}
ORIGINS = ["https://app.example.com", "http://localhost:8080"]


def basic(user: str, password: str | None = None) -> str:
    return support.basic(user, USERS[user][0] if password is None else password)


def htpasswd_line(user: str, password: str, cost: int, prefix: str = "$2b$") -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return f"{user}:{prefix}{hashed[4:]}"


@pytest.fixture(scope="module")
def users_file(log_dir):
    path = log_dir / "auth-users.htpasswd"
    lines = [htpasswd_line(user, password, cost, prefix) for user, (password, cost, prefix) in USERS.items()]
    path.write_text("# made by test_auth.py\n" + "\n".join(lines) + "\n")
    return path


def auth_services(port: int) -> list[dict]:
    """`scripted` is checked; `open` is the same upstream with `apiml.authentication.scheme: bypass`."""
    checked = service("scripted", [(HOST, port)], {"ws_v1": ("ws/v1", "/scripted/ws"), "api_v1": ("api/v1", "/scripted/api")})
    bypass = service("open", [(HOST, port)], {"ws_v1": ("ws/v1", "/open/ws"), "api_v1": ("api/v1", "/open/api")})
    bypass["metadata"]["apiml.authentication.scheme"] = "bypass"
    return [checked, bypass]


def checking_config(scripted, users_file, error_mode: str) -> dict:
    config = gateway_config(auth_services(scripted.port), error_mode, allowedOrigins=ORIGINS)
    config["server"]["auth"] = {"htpasswd": str(users_file), "adminUsers": ["root"]}
    return config


# Debug level, so that the test of the logs also covers what is only logged there.
DEBUG = {"RUST_LOG": "debug"}


@pytest.fixture(scope="module")
def gw(log_dir, scripted, users_file):
    """htpasswd, admin user root, an Origin allow-list; close-code mode."""
    return start_gateway(log_dir, "auth-close-code", checking_config(scripted, users_file, "close-code"), DEBUG)


@pytest.fixture(scope="module")
def gw_http(log_dir, scripted, users_file):
    """The same in http-status mode."""
    return start_gateway(log_dir, "auth-http-status", checking_config(scripted, users_file, "http-status"), DEBUG)


@pytest.fixture(scope="module")
def gw_open(log_dir, scripted):
    """No htpasswd (credentials pass through), diagnostics for 127.0.0.1 only."""
    config = gateway_config(auth_services(scripted.port), "close-code")
    config["server"]["auth"] = {"adminAllow": "127.0.0.1/32"}
    return start_gateway(log_dir, "auth-passthrough", config, DEBUG)


# ------------------------------------------------------------------ helpers


def token() -> str:
    return uuid.uuid4().hex


async def echo(gateway, path: str, **kwargs) -> str:
    return await reply(gateway, path, "hello", **kwargs)


async def refused_status(gateway, path: str, **kwargs):
    with pytest.raises(InvalidStatus) as info:
        async with connect(gateway, path, **kwargs):
            pass
    return info.value.response


def http_get(gateway, path: str, headers: dict[str, str] | None = None, source: str | None = None):
    """(status, headers, body) of one GET, from `source` (an address on the loopback) when given."""
    return exchange(gateway.port, "GET", path, headers=headers, source=source)


def assert_never_contacted(scripted, marker: str, control_gateway, control_path: str, **control) -> None:
    """No request containing `marker` reached the service, although a request sent afterwards did:
    the refused one was not merely late."""
    assert run(echo(control_gateway, control_path, **control)) == "hello"
    scripted.wait_record(control_path.rsplit("/", 1)[1])
    assert scripted.find(marker) == [], f"the service was contacted: {[r.path for r in scripted.find(marker)]}"


def log_of(gateway) -> str:
    return gateway.child.stderr_path.read_text("utf-8", "replace")


# ------------------------------------------------------- gateway-side check


@pytest.mark.parametrize("user", ["alice", "bob"], ids=["cost-4", "cost-12"])
def test_good_credentials_open_sessions_and_reach_the_service_untouched(gw, scripted, users_file, user):
    mark = token()
    assert run(echo(gw, f"/scripted/ws/v1/{mark}", additional_headers={"Authorization": basic(user)})) == "hello"
    assert scripted.wait_record(mark).header("authorization") == basic(user)


BAD_CREDENTIALS = {
    "missing": None,
    "wrong password": basic("alice", "not-her-password"),
    "unknown user": basic("mallory", "whatever"),
    "another scheme": "Bearer abc.def.ghi",
    "not base64": "Basic !!!",
}


@pytest.mark.parametrize("authorization", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_bad_credentials_close_1003_before_any_service_is_contacted(gw, scripted, authorization):
    mark = token()
    headers = {"Authorization": authorization} if authorization else {}
    assert run(close_of(gw, f"/scripted/ws/v1/{mark}", additional_headers=headers)) == (1003, "Invalid login credentials")
    assert_never_contacted(scripted, mark, gw, f"/scripted/ws/v1/{token()}", additional_headers={"Authorization": basic("alice")})


@pytest.mark.parametrize("authorization", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_bad_credentials_get_401_in_http_status_mode(gw_http, scripted, authorization):
    mark = token()
    headers = {"Authorization": authorization} if authorization else {}
    response = run(refused_status(gw_http, f"/scripted/ws/v1/{mark}", additional_headers=headers))
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate") == CHALLENGE
    assert_never_contacted(scripted, mark, gw_http, f"/scripted/ws/v1/{token()}", additional_headers={"Authorization": basic("alice")})


def test_two_authorization_headers_are_refused(gw, scripted):
    # The service gets every header: it must not read a credential the gateway did not check.
    mark = token()
    conn = http.client.HTTPConnection(HOST, gw.port, timeout=20)
    try:
        conn.putrequest("GET", f"/scripted/api/v1/{mark}")
        conn.putheader("Authorization", basic("alice"))
        conn.putheader("Authorization", basic("mallory", "unchecked"))
        conn.endheaders()
        response = conn.getresponse()
        assert (response.status, response.getheader("WWW-Authenticate")) == (401, CHALLENGE)
        response.read()
    finally:
        conn.close()
    assert scripted.find(mark) == []


def test_http_routes_need_credentials_too(gw, scripted):
    for authorization in (None, basic("alice", "wrong"), basic("nobody", "x")):
        mark = token()
        status, headers, body = http_get(gw, f"/scripted/api/v1/{mark}", {"Authorization": authorization} if authorization else {})
        assert (status, header(headers, "WWW-Authenticate"), body) == (401, CHALLENGE, b"Invalid login credentials\n")
        assert scripted.find(mark) == []
    mark = token()
    status, _, _ = http_get(gw, f"/scripted/api/v1/{mark}", {"Authorization": basic("alice")})
    # The scripted upstream is a WebSocket server: it answers a plain GET with 426, after recording it.
    assert status == 426
    assert scripted.wait_record(mark).header("authorization") == basic("alice")


def test_a_bypass_service_is_not_checked_and_gets_credentials_untouched(gw, gw_http, scripted):
    for gateway in (gw, gw_http):
        assert run(echo(gateway, f"/open/ws/v1/{token()}")) == "hello"
        mark = token()
        sent = basic("alice", "not-checked-by-the-gateway")
        assert run(echo(gateway, f"/open/ws/v1/{mark}", additional_headers={"Authorization": sent})) == "hello"
        assert scripted.wait_record(mark).header("authorization") == sent
        mark = token()
        status, _, _ = http_get(gateway, f"/open/api/v1/{mark}")
        assert status == 426
        assert scripted.wait_record(mark).header("authorization") is None


def test_a_verified_credential_is_cached(gw, scripted):
    pattern = re.compile(r'credentials verified user="carol" cached=(true|false)')
    for _ in range(3):
        assert run(echo(gw, f"/scripted/ws/v1/{token()}", additional_headers={"Authorization": basic("carol")})) == "hello"
    seen = wait_until(lambda: [m.group(1) for m in pattern.finditer(log_of(gw))] if len(pattern.findall(log_of(gw))) >= 3 else None,
                      10, "three verifications of carol in the log")
    assert seen == ["false", "true", "true"], seen
    # A wrong password is never answered from the cache.
    assert run(close_of(gw, f"/scripted/ws/v1/{token()}", additional_headers={"Authorization": basic("carol", "nope")})) == (1003, "Invalid login credentials")


def test_logs_never_show_passwords_or_authorization_values(gw, gw_http, gw_open, scripted):
    wrong = secret("wrong")
    for gateway in (gw, gw_http):
        assert run(echo(gateway, f"/scripted/ws/v1/{token()}", additional_headers={"Authorization": basic("alice")})) == "hello"
        http_get(gateway, f"/scripted/api/v1/{token()}", {"Authorization": basic("alice", wrong)})
        http_get(gateway, "/application/routes", {"Authorization": basic("root", wrong)})
    run(close_of(gw, f"/scripted/ws/v1/{token()}", additional_headers={"Authorization": basic("bob", wrong)}))
    run(close_of(gw_open, f"/scripted/ws/v1/status401/{token()}", additional_headers={"Authorization": basic("alice", wrong)}))
    secrets = [password for password, _, _ in USERS.values()] + [wrong]
    encoded = [basic(user).split()[1] for user in USERS] + [basic(user, wrong).split()[1] for user in ("alice", "bob", "root")]
    for gateway in (gw, gw_http, gw_open):
        log = wait_until(lambda: (text := log_of(gateway)) and " refused" in text and text, 10, "the refusals in the log")
        for value in secrets + encoded:
            assert value not in log, f"{gateway.child.name} logged a credential"
    # The refusals were logged, with the user name only.
    assert 'invalid credentials for user "bob"' in log_of(gw)
    assert "credentials verified" in log_of(gw)


# ------------------------------------------------------- Basic pass-through


def test_pass_through_a_service_401_closes_1003_and_the_credential_reaches_it(gw_open, scripted):
    mark = token()
    sent = basic("someone", "checked-by-the-service")
    assert run(close_of(gw_open, f"/scripted/ws/v1/status401/{mark}", additional_headers={"Authorization": sent})) == (1003, "Invalid login credentials")
    assert scripted.wait_record(mark).header("authorization") == sent
    assert "checked-by-the-service" not in log_of(gw_open) and sent.split()[1] not in log_of(gw_open)


def test_pass_through_a_service_401_is_a_401_with_its_challenge_in_http_status_mode(gw_http, scripted):
    mark = token()
    sent = basic("someone", "checked-by-the-service")
    response = run(refused_status(gw_http, f"/open/ws/v1/status401/{mark}", additional_headers={"Authorization": sent}))
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate") == 'Basic realm="x"'
    assert scripted.wait_record(mark).header("authorization") == sent


# ------------------------------------------------------------------ Origins


@pytest.mark.parametrize("origin", ["https://app.example.com", "HTTPS://App.Example.com:443", "http://localhost:8080", None],
                         ids=["listed", "listed-unnormalized", "listed-with-port", "absent"])
def test_allowed_or_absent_origins_pass(gw, gw_http, origin):
    for gateway in (gw, gw_http):
        kwargs = {"origin": origin} if origin else {}
        assert run(echo(gateway, f"/open/ws/v1/{token()}", **kwargs)) == "hello"


@pytest.mark.parametrize("origin", ["https://evil.example", "http://app.example.com", "http://localhost:8081", "null"])
def test_other_origins_are_refused_before_any_service_is_contacted(gw, gw_http, scripted, origin):
    mark = token()
    assert run(close_of(gw, f"/open/ws/v1/{mark}", origin=origin)) == (1008, "Origin not allowed")
    # Checked before the credential: a valid one does not help.
    headers = {"Authorization": basic("alice")}
    assert run(close_of(gw, f"/scripted/ws/v1/{mark}", origin=origin, additional_headers=headers)) == (1008, "Origin not allowed")
    response = run(refused_status(gw_http, f"/open/ws/v1/{mark}", origin=origin))
    assert response.status_code == 403
    assert_never_contacted(scripted, mark, gw, f"/open/ws/v1/{token()}", origin=ORIGINS[0])


# ---------------------------------------------------------- admin endpoints


def test_health_is_public(gw, gw_open):
    for gateway, source in ((gw, None), (gw_open, "127.0.0.2")):
        status, _, body = http_get(gateway, "/application/health", source=source)
        assert (status, json.loads(body)) == (200, {"status": "UP"})


@pytest.mark.parametrize("endpoint", ["/application/websockets", "/application/routes", "/application/unknown"])
def test_admin_endpoints_need_an_admin_credential(gw, endpoint):
    for authorization in (None, basic("root", "wrong"), basic("alice", "wrong")):
        status, headers, body = http_get(gw, endpoint, {"Authorization": authorization} if authorization else {})
        assert (status, header(headers, "WWW-Authenticate"), body) == (401, CHALLENGE, b"Invalid login credentials\n")
    status, headers, body = http_get(gw, endpoint, {"Authorization": basic("alice")})
    assert (status, header(headers, "WWW-Authenticate"), body) == (403, None, b"Access denied\n")
    status, _, body = http_get(gw, endpoint, {"Authorization": basic("root")})
    if endpoint.endswith("unknown"):
        assert status == 404
    else:
        assert status == 200 and isinstance(json.loads(body), (list, dict)), body


def test_without_admin_users_only_allowed_addresses_get_diagnostics(gw_open):
    status, _, body = http_get(gw_open, "/application/routes", source="127.0.0.1")
    assert status == 200 and "services" in json.loads(body)
    for endpoint in ("/application/routes", "/application/websockets"):
        status, _, body = http_get(gw_open, endpoint, source="127.0.0.2")
        assert (status, body) == (403, b"Access denied\n")


# -------------------------------------------------------------- start-up


def start_fails(tmp_path, config: dict) -> subprocess.CompletedProcess:
    finished = serve_until_exit(tmp_path, config)
    assert finished.returncode == 64, finished
    return finished


@pytest.mark.parametrize("content, line, problem", [
    ("alice:{hash}\nnot an entry\n", 2, "not a `user:hash` entry"),
    ("# comment\nalice:$apr1$Qn7bmQ7w$Vx9kk9hiqPaH7lwfBs/9f.\n", 2, "MD5"),
    ("alice:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\n", 1, "SHA-1"),
    ("alice:plain\n", 1, "plain text"),
    ("alice:{hash}\nalice:{hash}\n", 2, "listed twice"),
], ids=["malformed", "md5", "sha1", "plain", "duplicate"])
def test_a_bad_htpasswd_file_stops_the_gateway_naming_file_and_line(tmp_path, content, line, problem):
    users = tmp_path / "users.htpasswd"
    users.write_text(content.format(hash=bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()))
    config = gateway_config([])
    config["server"]["auth"] = {"htpasswd": "users.htpasswd"}
    stderr = start_fails(tmp_path, config).stderr.decode()
    assert f"server.auth.htpasswd: {users} line {line}: " in stderr and problem in stderr, stderr


def test_a_missing_htpasswd_file_stops_the_gateway(tmp_path):
    config = gateway_config([])
    config["server"]["auth"] = {"htpasswd": "nowhere.htpasswd"}
    stderr = start_fails(tmp_path, config).stderr.decode()
    assert f"server.auth.htpasswd: cannot read {tmp_path / 'nowhere.htpasswd'}" in stderr, stderr


@pytest.mark.parametrize("section, values, key", [
    ("auth", {"adminUsers": "root"}, "server.auth.adminUsers"),
    ("auth", {"adminAllow": "localhost"}, "server.auth.adminAllow"),
    ("webSocket", {"allowedOrigins": "https://app.example.com/path"}, "server.webSocket.allowedOrigins"),
], ids=["admin-users-without-htpasswd", "bad-admin-allow", "origin-with-path"])
def test_bad_security_keys_stop_the_gateway(tmp_path, section, values, key):
    config = gateway_config([])
    config["server"].setdefault(section, {}).update(values)
    stderr = start_fails(tmp_path, config).stderr.decode()
    assert key in stderr, stderr


# ------------------------------------------------------------- the registry


def test_the_registry_lets_in_only_its_users_and_a_client_sends_the_credential_of_its_url(users_file, log_dir):
    config = registry_gateway_config(users=["alice"])
    config["server"]["auth"] = {"htpasswd": str(users_file)}
    gw = start_gateway(log_dir, "auth-registry", config)
    try:
        apps = f"{gw.eureka}/apps"
        accept = {"Accept": "application/json"}
        wrong = secret("wrong")
        for refused in ({}, {"Authorization": basic("alice", wrong)}, {"Authorization": basic("root")}):
            status, _ = http_request(apps, headers={**accept, **refused})
            assert status == 401, f"{refused}: the registry answered {status}"
        assert http_request(apps, headers={**accept, "Authorization": basic("alice")})[0] == 200
        # An unchecked registration changes nothing.
        assert http_request(f"{gw.eureka}/apps/SNEAKY", "POST", b"{}", {"Content-Type": "application/json"})[0] == 401

        alice = USERS["alice"][0]
        py = start_py(log_dir, gw.registry_port, "py-auth", 9191, "nothing", url=f"http://alice:{alice}@{HOST}:{gw.registry_port}/eureka/")
        try:
            py.next_event("registered")
            instance = f"{gw.eureka}/apps/PY-AUTH/" + urllib.parse.quote(f"{HOST}:py-auth:9191", safe="")
            wait_until(lambda: http_request(instance, headers={**accept, "Authorization": basic("alice")})[0] == 200, 10,
                       "py-eureka-client to register with the credential of its URL")
        finally:
            py.child.stop()
    finally:
        gw.child.stop()
    log = log_of(gw)
    for value in (alice, wrong, basic("alice").split()[1], USERS["root"][0]):
        assert value not in log, "the gateway logged a credential"
    assert "registry request refused" in log
