"""The browser login (README "Browser login (JWT)").

A TLS gateway (certificate from a trustme CA) with an htpasswd file made with Python `bcrypt`: curl logs in
and keeps the cookie in its jar, then a Python `websockets` wss session sends that cookie; http.client
calls the query and logout endpoints. Refused tokens are made here with the standard library's `hmac`
(and `cryptography` for RS256) from the gateway's key file; a token made the same way with the right
algorithm and key is accepted, so the refusals are the gateway's doing and not a badly made token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import time
import uuid
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import support
from support import HOST, close_of, exchange, gateway_config, header, reply, run, serve_until_exit, service, start_gateway, write_htpasswd

LOGIN = "/gateway/api/v1/auth/login"
QUERY = "/gateway/api/v1/auth/query"
LOGOUT = "/gateway/api/v1/auth/logout"
COOKIE = "apimlAuthenticationToken"
LIFETIME = 3600
PASSWORDS = {"alice": f"alice-{uuid.uuid4().hex}", "root": f"root-{uuid.uuid4().hex}"}
ISSUED: list[str] = []  # every token the gateway gave, for the log test


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    return write_htpasswd(tmp_path_factory.mktemp("jwt-users") / "users.htpasswd", PASSWORDS)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    """Left readable by everyone (0644), which the gateway warns about."""
    path = tmp_path_factory.mktemp("jwt-key") / "jwt.key"
    path.write_bytes(os.urandom(48))
    path.chmod(0o644)
    return path


def jwt_config(scripted, tls_dir, users_file, jwt: dict | None = None) -> dict:
    """`scripted` (the default scheme, bypass of credentials) and `zowe`, the same upstream with
    `apiml.authentication.scheme: zoweJwt`."""
    zowe = service("zowe", [(HOST, scripted.port)], {"ws_v1": ("ws/v1", "/zowe/ws")})
    zowe["metadata"]["apiml.authentication.scheme"] = "zoweJwt"
    config = gateway_config([service("scripted", [(HOST, scripted.port)], {"ws_v1": ("ws/v1", "/scripted/ws")}), zowe])
    config["server"]["ssl"] = {"enabled": True, "certificate": str(tls_dir / "chain.pem"), "certificateKey": str(tls_dir / "key.pem")}
    config["server"]["auth"] = {"htpasswd": str(users_file), "adminUsers": ["root"]}
    if jwt is not None:
        config["server"]["auth"]["jwt"] = jwt
    return config


@pytest.fixture(scope="module")
def gw(log_dir, scripted, demo, tls_dir, users_file, key_file):
    """TLS, htpasswd, admin user root, the test's key file, 1 h tokens; debug logs for the log test.
    Also the demo service's request echo (`/echo/api/v1/request`), and the same as a zoweJwt service
    (`/zoweecho/api/v1/request`), for HTTP requests."""
    config = jwt_config(scripted, tls_dir, users_file, {"keyFile": str(key_file), "expiration": "1h"})
    echo_routes = {"api_v1": ("api/v1", "/discoverableclient/api/v1")}
    zowe_echo = service("zoweecho", [(HOST, demo.port)], echo_routes)
    zowe_echo["metadata"]["apiml.authentication.scheme"] = "zoweJwt"
    config["services"] += [service("echo", [(HOST, demo.port)], echo_routes), zowe_echo]
    return start_gateway(log_dir, "jwt", config, {"RUST_LOG": "debug"})


# ------------------------------------------------------------------ helpers


def https(gateway, client_context, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    """(status, headers, body) of one request."""
    return exchange(gateway.port, method, path, body, headers, context=client_context)


def basic(user: str, password: str | None = None) -> str:
    return support.basic(user, PASSWORDS[user] if password is None else password)


def token_of_cookie(set_cookie: str) -> str:
    name, _, rest = set_cookie.partition("=")
    assert name == COOKIE, set_cookie
    return rest.split(";", 1)[0]


def login(gateway, client_context, user: str = "alice") -> str:
    status, headers, _ = https(gateway, client_context, "POST", LOGIN, {"Authorization": basic(user)})
    assert status == 204
    token = token_of_cookie(header(headers, "Set-Cookie"))
    ISSUED.append(token)
    return token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(user: str = "alice", **changes) -> dict:
    now = int(time.time())
    values = {"sub": user, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex, "iss": "wsgate"}
    values.update(changes)
    return values


def craft(payload: dict, key: bytes, alg: str = "HS256") -> str:
    head = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    if alg == "none":
        return head + "."
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return f"{head}.{b64(private.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256()))}"
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    return f"{head}.{b64(hmac.new(key, head.encode(), digest).digest())}"


async def echo(gateway, client_context, path: str, headers: dict[str, str]) -> str:
    return await reply(gateway.wss, path, "hello", ssl=client_context, additional_headers=headers)


async def closed(gateway, client_context, path: str, headers: dict[str, str]) -> tuple[int | None, str]:
    return await close_of(gateway.wss, path, ssl=client_context, additional_headers=headers)


def mark() -> str:
    return uuid.uuid4().hex


def assert_accepted(gateway, client_context, scripted, headers: dict[str, str]) -> None:
    path = f"/scripted/ws/v1/{mark()}"
    assert run(echo(gateway, client_context, path, headers)) == "hello"
    scripted.wait_record(path.rsplit("/", 1)[1])


def assert_refused(gateway, client_context, scripted, headers: dict[str, str]) -> None:
    """Closed 1003 before the service is contacted, 401 on query, 401 on the admin endpoint."""
    token = mark()
    assert run(closed(gateway, client_context, f"/scripted/ws/v1/{token}", headers)) == (1003, "Invalid login credentials")
    assert scripted.find(token) == []
    status, response_headers, _ = https(gateway, client_context, "GET", QUERY, headers)
    assert status == 401
    assert header(response_headers, "Set-Cookie") is None
    status, _, _ = https(gateway, client_context, "GET", "/application/websockets", headers)
    assert status == 401


# ------------------------------------------------------------------ login


def test_curl_logs_in_and_a_wss_session_opens_with_the_cookie_of_its_jar(gw, client_context, scripted, tls_dir, tmp_path):
    jar = tmp_path / "cookies.txt"
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(tls_dir / "ca.pem"), "-u", f"alice:{PASSWORDS['alice']}", "-X", "POST",
         "-c", str(jar), "-D", "-", "-o", "/dev/null", f"https://{HOST}:{gw.port}{LOGIN}"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    head = result.stdout.splitlines()
    assert head[0].startswith("HTTP/1.1 204"), result.stdout
    set_cookie = next(line.split(":", 1)[1].strip() for line in head if line.lower().startswith("set-cookie:"))
    attributes = [part.strip() for part in set_cookie.split(";")]
    assert attributes[1:] == ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", f"Max-Age={LIFETIME}"], set_cookie
    # curl's jar: HttpOnly cookies are written with a #HttpOnly_ prefix; the fields are tab-separated.
    rows = [line.split("\t") for line in jar.read_text().splitlines() if line.startswith("#HttpOnly_")]
    assert [(row[0], row[3], row[5]) for row in rows] == [(f"#HttpOnly_{HOST}", "TRUE", COOKIE)], jar.read_text()
    token = rows[0][6]
    ISSUED.append(token)
    assert token == token_of_cookie(set_cookie)
    path = f"/scripted/ws/v1/{mark()}"
    assert run(echo(gw, client_context, path, {"Cookie": f"{COOKIE}={token}"})) == "hello"
    record = scripted.wait_record(path.rsplit("/", 1)[1])
    assert record.header("cookie") == f"{COOKIE}={token}", "bypass, the default, passes the client's credential untouched"


def test_json_login_and_bearer_sessions(gw, client_context, scripted):
    body = json.dumps({"username": "alice", "password": PASSWORDS["alice"]}).encode()
    status, headers, payload = https(gw, client_context, "POST", LOGIN, {"Content-Type": "application/json"}, body)
    assert (status, payload, header(headers, "Cache-Control")) == (204, b"", "no-store")
    token = token_of_cookie(header(headers, "Set-Cookie"))
    ISSUED.append(token)
    assert_accepted(gw, client_context, scripted, {"Authorization": f"Bearer {token}"})


BAD_LOGINS = {
    "wrong password": ({"Authorization": basic("alice", "not-her-password")}, None),
    "unknown user": ({"Authorization": basic("mallory", "x")}, None),
    "missing": ({}, None),
    "wrong JSON password": ({"Content-Type": "application/json"}, json.dumps({"username": "alice", "password": "nope"}).encode()),
    "malformed JSON": ({"Content-Type": "application/json"}, b'{"username": "alice"'),
}


@pytest.mark.parametrize("headers,body", BAD_LOGINS.values(), ids=BAD_LOGINS.keys())
def test_bad_logins_get_401_and_no_cookie(gw, client_context, headers, body):
    status, response_headers, _ = https(gw, client_context, "POST", LOGIN, headers, body)
    assert status == 401
    assert header(response_headers, "Set-Cookie") is None


def test_each_endpoint_takes_its_method_and_others_are_unknown(gw, client_context):
    for method, path, status in [("GET", LOGIN, 405), ("POST", QUERY, 405), ("GET", LOGOUT, 405), ("POST", "/gateway/api/v1/auth/nosuch", 404)]:
        assert https(gw, client_context, method, path, {"Authorization": basic("alice")})[0] == status, (method, path)


def test_without_htpasswd_there_is_no_login(log_dir, scripted):
    gateway = start_gateway(log_dir, "jwt-no-htpasswd", gateway_config([service("scripted", [(HOST, scripted.port)], {})]))
    try:
        conn = http.client.HTTPConnection(HOST, gateway.port, timeout=20)
        conn.request("POST", LOGIN, headers={"Authorization": basic("alice")})
        response = conn.getresponse()
        assert response.status == 404
        assert b"server.auth.htpasswd" in response.read()
        conn.close()
    finally:
        gateway.child.stop()


# ------------------------------------------------------------------ tokens


def test_a_token_made_with_the_key_file_is_accepted(gw, client_context, scripted, key_file):
    """The control of the refusals below: the same making, right key and algorithm."""
    assert_accepted(gw, client_context, scripted, {"Authorization": f"Bearer {craft(claims(), key_file.read_bytes())}"})


def bad_tokens(key: bytes) -> dict[str, str]:
    good = craft(claims(), key)
    head, payload, signature = good.split(".")
    tampered_payload = b64(json.dumps(claims("root")).encode())
    return {
        "expired": craft(claims(iat=int(time.time()) - 600, exp=int(time.time()) - 5), key),
        "tampered": f"{head}.{tampered_payload}.{signature}",
        "alg none": craft(claims(), key, "none"),
        "HS512": craft(claims(), key, "HS512"),
        "RS256": craft(claims(), key, "RS256"),
        "other key": craft(claims(), os.urandom(48)),
        "other issuer": craft(claims(iss="zowe"), key),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("kind", ["expired", "tampered", "alg none", "HS512", "RS256", "other key", "other issuer", "garbage"])
@pytest.mark.parametrize("carrier", ["cookie", "bearer"])
def test_bad_tokens_are_refused_everywhere(gw, client_context, scripted, key_file, kind, carrier):
    token = bad_tokens(key_file.read_bytes())[kind]
    headers = {"Cookie": f"{COOKIE}={token}"} if carrier == "cookie" else {"Authorization": f"Bearer {token}"}
    assert_refused(gw, client_context, scripted, headers)


def test_query_describes_the_token(gw, client_context):
    token = login(gw, client_context)
    status, headers, body = https(gw, client_context, "GET", QUERY, {"Cookie": f"{COOKIE}={token}"})
    assert (status, header(headers, "Content-Type"), header(headers, "Cache-Control")) == (200, "application/json", "no-store")
    answer = json.loads(body)
    assert answer["userId"] == "alice"
    creation = datetime.fromisoformat(answer["creation"].replace("Z", "+00:00"))
    expiration = datetime.fromisoformat(answer["expiration"].replace("Z", "+00:00"))
    assert (expiration - creation).total_seconds() == LIFETIME
    assert abs(creation.timestamp() - time.time()) < 60


def test_admin_endpoints_take_the_token_of_an_admin_only(gw, client_context):
    status, _, _ = https(gw, client_context, "GET", "/application/websockets", {"Authorization": f"Bearer {login(gw, client_context, 'root')}"})
    assert status == 200
    status, _, _ = https(gw, client_context, "GET", "/application/websockets", {"Cookie": f"{COOKIE}={login(gw, client_context, 'alice')}"})
    assert status == 403


def test_logout_clears_the_cookie_and_the_token_is_refused_afterwards(gw, client_context, scripted):
    token = login(gw, client_context)
    other = login(gw, client_context)
    assert_accepted(gw, client_context, scripted, {"Cookie": f"{COOKIE}={token}"})
    status, headers, _ = https(gw, client_context, "POST", LOGOUT, {"Cookie": f"{COOKIE}={token}"})
    assert status == 204
    assert header(headers, "Set-Cookie") == f"{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"
    assert_refused(gw, client_context, scripted, {"Cookie": f"{COOKIE}={token}"})
    assert_refused(gw, client_context, scripted, {"Authorization": f"Bearer {token}"})
    assert_accepted(gw, client_context, scripted, {"Cookie": f"{COOKIE}={other}"})


def test_tokens_expire_with_the_configured_lifetime(log_dir, scripted, tls_dir, users_file, key_file, client_context):
    config = jwt_config(scripted, tls_dir, users_file, {"keyFile": str(key_file), "expiration": "2s"})
    gateway = start_gateway(log_dir, "jwt-short", config)
    try:
        token = login(gateway, client_context)
        assert_accepted(gateway, client_context, scripted, {"Cookie": f"{COOKIE}={token}"})
        time.sleep(3.1)
        assert_refused(gateway, client_context, scripted, {"Cookie": f"{COOKIE}={token}"})
    finally:
        gateway.child.stop()


def test_the_generated_key_is_kept_next_to_the_config_and_tokens_survive_a_restart(tmp_path, scripted, tls_dir, users_file, client_context):
    config = jwt_config(scripted, tls_dir, users_file)
    gateway = start_gateway(tmp_path, "jwt-generated", config)
    try:
        token = login(gateway, client_context)
    finally:
        gateway.child.stop()
    key = tmp_path / "wsgate-jwt.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_bytes()) >= 32
    gateway = start_gateway(tmp_path, "jwt-generated", config)
    try:
        assert_accepted(gateway, client_context, scripted, {"Authorization": f"Bearer {token}"})
    finally:
        gateway.child.stop()


def test_the_state_dir_keeps_the_generated_key_whether_set_in_the_config_or_by_the_flag(tmp_path, scripted, tls_dir, users_file, client_context):
    config = jwt_config(scripted, tls_dir, users_file)
    config["server"]["stateDir"] = "state/gw"
    gateway = start_gateway(tmp_path, "jwt-state", config)
    try:
        token = login(gateway, client_context)
    finally:
        gateway.child.stop()
    state = tmp_path / "state" / "gw"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "wsgate-jwt.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "wsgate-jwt.key").exists()
    # A state dir given by the flag, without the key yet: a new key is made there, and the old token is refused.
    del config["server"]["stateDir"]
    other = tmp_path / "other"
    gateway = start_gateway(tmp_path, "jwt-state", config, args=["--state-dir", str(other)])
    try:
        assert_refused(gateway, client_context, scripted, {"Authorization": f"Bearer {token}"})
    finally:
        gateway.child.stop()
    assert (other / "wsgate-jwt.key").read_bytes() != (state / "wsgate-jwt.key").read_bytes()
    # The flag wins over the key.
    config["server"]["stateDir"] = str(other)
    gateway = start_gateway(tmp_path, "jwt-state", config, args=["--state-dir", str(state)])
    try:
        assert_accepted(gateway, client_context, scripted, {"Authorization": f"Bearer {token}"})
    finally:
        gateway.child.stop()


def verified_claims(token: str, key: bytes) -> dict:
    """The claims of an HS256 `token`, after checking its signature with `key`."""
    head, payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"typ": "JWT", "alg": "HS256"}
    assert hmac.compare_digest(b64(hmac.new(key, f"{head}.{payload}".encode(), hashlib.sha256).digest()), signature)
    return json.loads(base64.urlsafe_b64decode(payload + "=="))


def test_a_zowe_jwt_service_gets_a_fresh_token_for_a_basic_credential_and_no_authorization(gw, client_context, scripted, key_file):
    path = f"/zowe/ws/v1/{mark()}"
    assert run(echo(gw, client_context, path, {"Authorization": basic("alice"), "Cookie": "theme=dark"})) == "hello"
    record = scripted.wait_record(path.rsplit("/", 1)[1])
    assert record.header("authorization") is None
    theme, _, cookie = record.header("cookie").partition("; ")
    assert theme == "theme=dark"
    name, _, token = cookie.partition("=")
    assert name == COOKIE
    ISSUED.append(token)
    issued = verified_claims(token, key_file.read_bytes())
    assert (issued["sub"], issued["iss"], issued["exp"] - issued["iat"]) == ("alice", "wsgate", LIFETIME)


def test_a_zowe_jwt_service_gets_the_client_token(gw, client_context, scripted):
    token = login(gw, client_context)
    path = f"/zowe/ws/v1/{mark()}"
    assert run(echo(gw, client_context, path, {"Authorization": f"Bearer {token}"})) == "hello"
    record = scripted.wait_record(path.rsplit("/", 1)[1])
    assert (record.header("authorization"), record.header("cookie")) == (None, f"{COOKIE}={token}")


def test_a_zowe_jwt_service_is_not_reached_with_a_bad_credential(gw, client_context, scripted):
    token = mark()
    headers = {"Authorization": basic("alice", "not-her-password")}
    assert run(closed(gw, client_context, f"/zowe/ws/v1/{token}", headers)) == (1003, "Invalid login credentials")
    assert scripted.find(token) == []


def echoed_headers(gateway, client_context, path: str, headers: dict[str, str]) -> dict:
    status, _, body = https(gateway, client_context, "GET", path, headers)
    assert status == 200, body
    return {name.lower(): value for name, value in json.loads(body)["headers"].items()}


def test_http_routes_take_the_token_and_refuse_bad_ones(gw, client_context, key_file):
    token = login(gw, client_context)
    seen = echoed_headers(gw, client_context, "/echo/api/v1/request", {"Authorization": f"Bearer {token}"})
    assert seen["authorization"] == f"Bearer {token}", "bypass: the client's credential untouched"
    for carrier in [{"Authorization": f"Bearer {bad_tokens(key_file.read_bytes())['tampered']}"}, {"Cookie": f"{COOKIE}=x.y.z"}]:
        status, headers, body = https(gw, client_context, "GET", "/echo/api/v1/request", carrier)
        assert (status, header(headers, "WWW-Authenticate"), body) == (401, 'Basic realm="wsgate"', b"Invalid login credentials\n")


def test_a_zowe_jwt_http_service_gets_the_token_cookie_and_no_authorization(gw, client_context, key_file):
    seen = echoed_headers(gw, client_context, "/zoweecho/api/v1/request", {"Authorization": basic("alice")})
    assert "authorization" not in seen
    name, _, token = seen["cookie"].partition("=")
    assert name == COOKIE
    ISSUED.append(token)
    assert verified_claims(token, key_file.read_bytes())["sub"] == "alice"


@pytest.mark.parametrize("key,detail", [(b"31 bytes are not enough, no....", "at least 32"), (None, "No such file")], ids=["short", "missing"])
def test_an_unusable_key_file_stops_the_gateway_naming_the_key(tmp_path, scripted, tls_dir, users_file, key, detail):
    path = tmp_path / "jwt.key"
    if key is not None:
        path.write_bytes(key)
    finished = serve_until_exit(tmp_path, jwt_config(scripted, tls_dir, users_file, {"keyFile": str(path)}))
    assert finished.returncode == 64, finished
    stderr = finished.stderr.decode()
    assert "server.auth.jwt.keyFile" in stderr and detail in stderr, stderr


def test_the_log_shows_no_token_and_no_password(gw):
    """Last in the file: every test above has logged what it makes the gateway log."""
    log = gw.child.stderr_path.read_text("utf-8", "replace")
    assert "logged in" in log and "logged out" in log and "refused" in log
    assert "server.auth.jwt.keyFile can be read by other users" in log
    assert ISSUED
    for secret in [*PASSWORDS.values(), *ISSUED]:
        assert secret not in log
