"""Helpers for the wsgate end-to-end suite.

Everything here talks to real processes and real sockets on 127.0.0.1:

- `Child` runs a binary, reads its "listening on" line from stdout with a
  deadline, keeps stderr in a log file and is killed at teardown.
- `gateway_config` / `write_yaml` build the config file of doc/CONTRACT.md.
- `ScriptedUpstream` is an in-process WebSocket service built with
  `websockets.asyncio.server`: it records what it saw (path, headers, close
  frame received) and misbehaves on request (HTTP 401/403/500, a subprotocol
  nobody offered, a close with a custom code).
- `SilentServer` accepts TCP connections and never answers; `closed_port`
  gives a port nobody listens on.
- `RawWs` / `raw_http` speak HTTP/1.1 and RFC 6455 by hand, for the inputs a
  well-behaved client library refuses to send.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("WSGATE_BIN_DIR", REPO / "target" / "release"))
HOST = "127.0.0.1"

GATEWAY_LINE = re.compile(r"^wsgate listening on 127\.0\.0\.1:(\d+)$")
DEMO_LINE = re.compile(r"^wsgate-demo-service listening on 127\.0\.0\.1:(\d+)$")
# Printed right after GATEWAY_LINE when the embedded registry runs.
REGISTRY_LINE = re.compile(r"^registry listening on 127\.0\.0\.1:(\d+)$")

# Environment variables that would override the config of a child through
# Spring relaxed binding; cleared so the developer's shell cannot leak in.
CLEARED_ENV_PREFIXES = ("SERVER_", "EUREKA_", "DISCOVERY_", "SERVICES_")

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ----------------------------------------------------------------- waiting


def wait_until(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Polls `probe` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


# ---------------------------------------------------------------- children


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AssertionError(
            f"binary {path} not found; build it with `cargo build --release` "
            f"or point WSGATE_BIN_DIR at the directory holding it"
        )
    return path


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(CLEARED_ENV_PREFIXES)
    }
    env.update(extra or {})
    return env


class Child:
    """A child process whose stdout is read line by line in a thread."""

    _all: list["Child"] = []

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.args = [str(a) for a in args]
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.stdout_seen: list[str] = []
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_env(env),
            cwd=log_dir,
        )
        Child._all.append(self)
        threading.Thread(target=self._pump, name=f"stdout-{name}", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stdout_seen.append(line)
            self.lines.put(line)
        self.lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self, tail: int = 4000) -> str:
        try:
            self._stderr.flush()
            data = self.stderr_path.read_bytes()
        except OSError:
            return ""
        return data[-tail:].decode("utf-8", "replace")

    def describe(self) -> str:
        return (
            f"{self.name} ({' '.join(self.args)}), exit code {self.proc.poll()}\n"
            f"stdout so far: {self.stdout_seen!r}\n"
            f"stderr tail:\n{self.stderr_text()}"
        )

    def wait_line(self, pattern: re.Pattern[str], timeout: float = 20.0) -> re.Match[str]:
        """Waits for a stdout line matching `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern.pattern!r} within {timeout}s from {self.describe()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                raise AssertionError(f"stdout closed before a line matching {pattern.pattern!r} from {self.describe()}")
            m = pattern.match(line)
            if m:
                return m

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 5 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._stderr.close()

    @classmethod
    def stop_all(cls) -> None:
        for c in cls._all:
            try:
                c.stop()
            except Exception:  # noqa: BLE001 - teardown must reach every child
                pass
        cls._all.clear()


@dataclass
class DemoService:
    child: Child
    port: int
    instance_id: str


def start_demo(log_dir: Path, instance_id: str, *extra: str | Path) -> DemoService:
    """The demo service on a free port; `extra` arguments such as `--eureka-url URL` are added."""
    child = Child(
        f"demo-{instance_id}",
        [
            binary("wsgate-demo-service"),
            "--address", HOST,
            "--port", "0",
            "--base-path", "/discoverableclient",
            "--instance-id", instance_id,
            *extra,
        ],
        log_dir,
    )
    port = int(child.wait_line(DEMO_LINE).group(1))
    return DemoService(child, port, instance_id)


@dataclass
class Gateway:
    child: Child
    port: int
    config_path: Path
    config: dict
    registry_port: int | None = None  # the embedded registry's, when it runs

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def wss(self) -> str:
        """The base URL of a gateway whose port speaks TLS."""
        return f"wss://{HOST}:{self.port}"

    @property
    def eureka(self) -> str:
        """The embedded registry's Eureka base URL."""
        assert self.registry_port is not None, "this gateway runs no embedded registry"
        return f"http://{HOST}:{self.registry_port}/eureka"


def serve_until_exit(tmp_path: Path, config: dict | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `wsgate serve` with `config` (written into `tmp_path`) for a configuration that must make
    it exit at start; returns the finished process."""
    path = tmp_path / "wsgate.yaml"
    path.write_text(config if isinstance(config, str) else to_yaml(config))
    return subprocess.run(
        [str(binary("wsgate")), "serve", "--config", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=20,
        env=child_env(env),
        cwd=tmp_path,
    )


def start_gateway(log_dir: Path, name: str, config: dict, env: dict[str, str] | None = None, args: list[str] | None = None) -> Gateway:
    """`wsgate serve` with `config` written as LOG_DIR/NAME.yaml, `args` after the config flag."""
    path = log_dir / f"{name}.yaml"
    path.write_text(to_yaml(config))
    child = Child(f"gateway-{name}", [binary("wsgate"), "serve", "--config", path, *(args or [])], log_dir, env)
    port = int(child.wait_line(GATEWAY_LINE).group(1))
    registry_port = None
    if config.get("discovery", {}).get("embedded", {}).get("enabled", True):
        registry_port = int(child.wait_line(REGISTRY_LINE).group(1))
    return Gateway(child, port, path, config, registry_port)


# ------------------------------------------------------------------ config


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    return json.dumps(str(v))  # a JSON string is a YAML double-quoted string


def _yaml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_.\-]+", k) else json.dumps(k)


def to_yaml(obj: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (enough for the configs here)."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{_yaml_key(k)}:\n{to_yaml(v, indent + 1)}")
            elif isinstance(v, (dict, list)):
                out.append(f"{pad}{_yaml_key(k)}: {'{}' if isinstance(v, dict) else '[]'}\n")
            else:
                out.append(f"{pad}{_yaml_key(k)}: {_yaml_scalar(v)}\n")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1)
                out.append(f"{pad}- {body.lstrip()}")
            else:
                out.append(f"{pad}- {_yaml_scalar(item) if not isinstance(item, (dict, list)) else '{}'}\n")
    else:
        out.append(f"{pad}{_yaml_scalar(obj)}\n")
    return "".join(out)


def service(service_id: str, instances: list[tuple[str, int]], routes: dict[str, tuple[str, str]]) -> dict:
    """A static service; `routes` maps route name -> (gatewayUrl, serviceUrl)."""
    metadata = {}
    for name, (gateway_url, service_url) in routes.items():
        metadata[f"apiml.routes.{name}.gatewayUrl"] = gateway_url
        metadata[f"apiml.routes.{name}.serviceUrl"] = service_url
    return {
        "serviceId": service_id,
        "instances": [{"host": h, "port": p} for h, p in instances],
        "metadata": metadata,
    }


def demo_routes() -> dict[str, tuple[str, str]]:
    return {
        "ws_v1": ("ws/v1", "/discoverableclient/ws"),
        "api_v1": ("api/v1", "/discoverableclient/api/v1"),
    }


def gateway_config(services: list[dict], error_mode: str = "close-code", **websocket: Any) -> dict:
    ws = {
        "supportedProtocols": "v12.stomp,v11.stomp",
        "errorMode": error_mode,
        "connectTimeout": "2s",
        "maxFrameSize": "16MiB",
    }
    ws.update(websocket)
    return {
        "server": {
            "address": HOST,
            "port": 0,
            "ssl": {"enabled": False},
            "webSocket": ws,
        },
        "discovery": {"embedded": {"enabled": False}},
        "services": services,
    }


# ----------------------------------------------------- scripted upstream


@dataclass
class Record:
    """What the scripted upstream saw of one handshake (and session)."""

    path: str
    headers: list[tuple[str, str]]
    subprotocols_offered: list[str] = field(default_factory=list)
    accepted: bool = False
    close_rcvd: tuple[int | None, str] | None = None  # (code, reason); code None = close without code
    close_sent: tuple[int | None, str] | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def wait_ended(self, timeout: float = 10.0) -> "Record":
        if not self.ended.wait(timeout):
            raise AssertionError(f"scripted upstream session {self.path} did not end within {timeout}s")
        return self


class ScriptedUpstream:
    """A real WebSocket peer (python `websockets`) whose behaviour is chosen by the path.

    Path segments that select a behaviour (anywhere in the path):
      `status401` (401 with `WWW-Authenticate: Basic realm="x"`), `status403`, `status500`,
      `badproto` (chooses subprotocol `bogus.proto`), `close4001` (closes with
      4001 "custom reason" right after the handshake).
    Otherwise it accepts (choosing the first offered subprotocol), echoes every
    message, and obeys text commands: `close CODE REASON...`, `closenocode`,
    `send N` (answers N bytes of binary data).
    Every handshake is recorded; `find(token)` returns records whose path contains token.
    """

    CLOSE4001_REASON = "custom reason"

    def __init__(self, port: int = 0) -> None:
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="scripted-upstream", daemon=True)
        self.port = port  # 0: any free port, read back by start()

    def start(self) -> "ScriptedUpstream":
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    async def _serve(self) -> int:
        from websockets.asyncio.server import serve

        self.server = await serve(
            self._handler,
            HOST,
            self.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            max_size=None,
            ping_interval=None,
        )
        return self.server.sockets[0].getsockname()[1]

    @staticmethod
    def _segments(path: str) -> list[str]:
        return path.split("?", 1)[0].split("/")

    def _process_request(self, connection, request):
        rec = Record(path=request.path, headers=list(request.headers.raw_items()))
        rec.subprotocols_offered = [
            p.strip()
            for v in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in v.split(",")
            if p.strip()
        ]
        connection.wsgate_record = rec
        with self._lock:
            self.records.append(rec)
        segs = self._segments(request.path)
        if "status401" in segs:
            rec.ended.set()
            response = connection.respond(401, "Unauthorized\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="x"'
            return response
        if "status403" in segs:
            rec.ended.set()
            return connection.respond(403, "Forbidden\n")
        if "status500" in segs:
            rec.ended.set()
            return connection.respond(500, "Internal Server Error\n")
        return None

    def _select_subprotocol(self, connection, subprotocols):
        if "badproto" in self._segments(connection.request.path):
            return "bogus.proto"
        return subprotocols[0] if subprotocols else None

    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        rec: Record = ws.wsgate_record
        rec.accepted = True
        try:
            if "close4001" in self._segments(rec.path):
                await ws.close(4001, self.CLOSE4001_REASON)
            else:
                async for message in ws:
                    if isinstance(message, str) and message.startswith("close "):
                        _, code, *reason = message.split(" ", 2)
                        await ws.close(int(code), reason[0] if reason else "")
                        break
                    if message == "closenocode":
                        async with ws.send_context():
                            ws.protocol.send_close()
                        break
                    if isinstance(message, str) and message.startswith("send "):
                        await ws.send(os.urandom(int(message.split()[1])))
                        continue
                    await ws.send(message)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            rcvd = ws.protocol.close_rcvd
            sent = ws.protocol.close_sent
            rec.close_rcvd = None if rcvd is None else (None if rcvd.code == 1005 else rcvd.code, rcvd.reason)
            rec.close_sent = None if sent is None else (None if sent.code == 1005 else sent.code, sent.reason)
            rec.ended.set()

    def find(self, token: str) -> list[Record]:
        with self._lock:
            return [r for r in self.records if token in r.path]

    def wait_record(self, token: str, timeout: float = 10.0) -> Record:
        found = wait_until(lambda: self.find(token), timeout, f"scripted upstream to see a request containing {token!r}")
        assert len(found) == 1, f"expected one request containing {token!r}, got {[r.path for r in found]}"
        return found[0]


class SilentServer:
    """Accepts TCP connections and never sends a byte (for connectTimeout)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, name="silent-server", daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def stop(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.accepted:
            c.close()


class RawService:
    """A loopback server over raw sockets that serves each connection with `_serve` in a thread of its
    own; `stop` closes the listener and every connection."""

    def __init__(self, name: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, name=name, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.sock.close()
        for c in self._conns:
            c.close()


class RawUpstream(RawService):
    """A WebSocket service written by hand over raw sockets, to break the protocol on purpose.

    It answers every handshake with 101, then sends one *masked* text frame
    (servers must not mask) and records the close frame it gets back, keyed by
    request path. Path segments `garbage` (an SSH banner instead of HTTP) and
    `hugehead` (a 101 whose head never ends within 100 KiB) break the handshake itself.
    """

    def __init__(self) -> None:
        self.closes: dict[str, tuple[int | None, str] | str] = {}
        super().__init__("raw-upstream")

    def _serve(self, conn: socket.socket) -> None:
        path = "?"
        try:
            conn.settimeout(15)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            segments = path.split("?", 1)[0].split("/")
            if "garbage" in segments:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
                return
            if "hugehead" in segments:
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Filler: " + b"a" * 100 * 1024)
                return
            key = next(l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("sec-websocket-key:"))
            conn.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n"
                ).encode()
            )
            conn.sendall(encode_frame(0x1, b"masked by the service", mask=True))
            reader = _FrameReader(conn, rest)
            while True:
                frame = reader.read_frame(15)
                if frame is None:
                    self.closes[path] = "eof"
                    return
                if frame[1] == 0x8:
                    payload = frame[2]
                    self.closes[path] = (
                        (struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace"))
                        if payload else (None, "")
                    )
                    return
        except (OSError, AssertionError, StopIteration) as exc:
            self.closes[path] = f"error: {exc!r}"
        finally:
            conn.close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------- raw sockets


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    rest: bytes  # bytes read after the header block

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


def read_http_head(sock: socket.socket, timeout: float = 10.0) -> HttpResponse:
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full HTTP response head; got {buf!r}")
        buf += chunk
        if len(buf) > 1 << 20:
            raise AssertionError("HTTP response head larger than 1 MiB")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return HttpResponse(int(m.group(1)), m.group(2) or "", headers, rest)


def basic(user: str, password: str) -> str:
    """The `Authorization` value of a Basic credential."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_htpasswd(path: Path, users: dict[str, str], cost: int = 4) -> Path:
    """An htpasswd file at `path` with a bcrypt entry (of `cost`) per user and password."""
    import bcrypt

    path.write_text("".join(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()}\n" for user, password in users.items()))
    return path


def presented_certificate(port: int, context, server_hostname: str = HOST) -> bytes:
    """The DER certificate a new TLS handshake with HOST:`port` presents, verified with the ssl `context`."""
    with socket.create_connection((HOST, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.getpeercert(binary_form=True)


def exchange(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             context=None, source: str | None = None, timeout: float = 20.0) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request to HOST:`port` on a connection of its own (https verified with the ssl `context` when
    given, from the loopback address `source` when given); returns (status, headers, body)."""
    import http.client

    source_address = (source, 0) if source else None
    if context is None:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=source_address)
    else:
        conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, source_address=source_address, context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of header `name` (case-insensitive) in `headers`."""
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def raw_http(port: int, request: bytes, timeout: float = 10.0) -> HttpResponse:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(request)
        return read_http_head(s, timeout)


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def upgrade_request(port: int, path: str, headers: dict[str, str] | None = None, key: str | None = "auto",
                    version: str = "13") -> bytes:
    h = {
        "Host": f"{HOST}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": version,
    }
    if key == "auto":
        key = ws_key()
    if key is not None:
        h["Sec-WebSocket-Key"] = key
    h.update(headers or {})
    return (f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


def encode_frame(opcode: int, payload: bytes, mask: bool = True, fin: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask_fast(payload, key)
    return head + key + masked


def _mask_fast(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = int.from_bytes((key * ((n + 3) // 4))[:n], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


class _FrameReader:
    """Reads RFC 6455 frames from a socket, with deadlines."""

    def __init__(self, sock: socket.socket, buf: bytes = b"", timeout: float = 10.0):
        self.sock = sock
        self.buf = buf
        self.timeout = timeout

    def send_in_background(self, data: bytes) -> threading.Thread:
        """Sends without blocking the reader (the peer may close before reading it all)."""

        def run() -> None:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def _need(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out reading a frame; buffered {self.buf[:64]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self.buf += chunk
        return True

    def read_frame(self, timeout: float | None = None) -> tuple[bool, int, bytes, bool] | None:
        """(fin, opcode, payload, masked), or None at end of stream."""
        deadline = time.monotonic() + (timeout or self.timeout)
        if not self._need(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if not self._need(4, deadline):
                return None
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            if not self._need(10, deadline):
                return None
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        if masked:
            pos += 4
        if not self._need(pos + n, deadline):
            return None
        payload = self.buf[pos:pos + n]
        if masked:
            payload = _mask_fast(payload, self.buf[pos - 4:pos]) if n else payload
        self.buf = self.buf[pos + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload, masked


class RawWs(_FrameReader):
    """A WebSocket client written by hand, able to break the protocol on purpose."""

    def __init__(self, port: int, path: str, timeout: float = 10.0):
        sock = socket.create_connection((HOST, port), timeout=timeout)
        key = ws_key()
        sock.sendall(upgrade_request(port, path, key=key))
        self.response = read_http_head(sock, timeout)
        super().__init__(sock, self.response.rest, timeout)
        assert self.response.status == 101, f"expected 101, got {self.response.status} {self.response.headers}"
        assert self.response.header("Sec-WebSocket-Accept") == ws_accept(key)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_close(self, timeout: float | None = None) -> tuple[int | None, str]:
        """Reads frames until a close frame; returns (code, reason)."""
        while True:
            frame = self.read_frame(timeout)
            if frame is None:
                raise AssertionError("connection ended without a close frame")
            _, opcode, payload, _ = frame
            if opcode == 0x8:
                if not payload:
                    return None, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8")

    def close(self) -> None:
        self.sock.close()


def expected_reason(text: str) -> str:
    """A close reason as the gateway sends it: cut to 123 bytes on a UTF-8 boundary."""
    data = text.encode("utf-8")[:123]
    return data.decode("utf-8", "ignore")


# --------------------------------------------------------- websockets client


def run(coro):
    """Runs a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def connect(gateway_or_url, path: str = "", **kwargs):
    """`websockets.asyncio.client.connect` with the suite's defaults.

    Keepalive pings are off so that message and byte counters are exact;
    messages of any size are accepted.
    """
    from websockets.asyncio.client import connect as ws_connect

    url = gateway_or_url if isinstance(gateway_or_url, str) else gateway_or_url.ws
    kwargs.setdefault("open_timeout", 15)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("max_size", None)
    return ws_connect(url + path, **kwargs)


async def recv(ws, timeout: float = 10.0):
    return await asyncio.wait_for(ws.recv(), timeout)


async def reply(gateway_or_url, path: str, message: str, **kwargs) -> str | bytes:
    """Opens a session at `path` (`kwargs` for `connect`), sends `message` and returns the first message
    answered."""
    async with connect(gateway_or_url, path, **kwargs) as ws:
        await ws.send(message)
        return await recv(ws)


def first_reply(gateway_or_url, path: str, message: str, **kwargs) -> str | bytes:
    """[`reply`], run to its end."""
    return run(reply(gateway_or_url, path, message, **kwargs))


async def close_of(gateway_or_url, path: str = "", **kwargs) -> tuple[int | None, str]:
    """The close the gateway sends to a session opened at `path` (`kwargs` for `connect`): a refusal
    in close-code mode, after the handshake."""
    async with connect(gateway_or_url, path, **kwargs) as ws:
        return await expect_close(ws)


async def expect_close(ws, timeout: float = 15.0) -> tuple[int | None, str]:
    """Waits for the peer's close frame; returns (code, reason). Fails on a data message."""
    from websockets.exceptions import ConnectionClosed

    try:
        message = await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"connection ended without a close frame: {exc!r}"
        return (None if exc.rcvd.code == 1005 else exc.rcvd.code), exc.rcvd.reason
    raise AssertionError(f"expected a close frame, got a message {message!r:.200}")


UPPER = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ascii_upper(data: bytes) -> bytes:
    return data.translate(UPPER)


# ------------------------------------------------------------------ eureka


EUREKA_DIR = REPO / "tests" / "integration" / "eureka"
JSON_LINE = re.compile(r"^\{.*\}$")


def registry_gateway_config(services: list[dict] | None = None, **embedded: Any) -> dict:
    """`gateway_config` with the embedded registry on a free port, evicting expired leases every 200 ms."""
    config = gateway_config(services or [])
    config["discovery"] = {
        "embedded": {"enabled": True, "port": 0, "evictionInterval": "200ms", "selfPreservation": False, **embedded}
    }
    return config


def http_request(url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None, context=None) -> tuple[int, bytes]:
    """One HTTP request with urllib (an https URL verified with the ssl `context`); returns (status, body)
    for error statuses too."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def route_table(gw: Gateway) -> dict:
    """`GET /application/routes` of `gw`."""
    status, body = http_request(f"http://{HOST}:{gw.port}/application/routes")
    assert status == 200, (status, body)
    return json.loads(body)


def route_instances(gw: Gateway, service_id: str) -> list[dict] | None:
    """The instances `/application/routes` lists for `service_id`; None when the service is unknown."""
    for svc in route_table(gw)["services"]:
        if svc["serviceId"].lower() == service_id.lower():
            return svc["instances"]
    return None


def up_instances(gw: Gateway, service_id: str) -> list[dict]:
    return [i for i in route_instances(gw, service_id) or [] if i["status"] == "UP" and i["routable"]]


def eureka_instance(gw: Gateway, app: str, instance_id: str) -> dict | None:
    """The registry's JSON record of one instance, or None."""
    import urllib.parse

    status, body = http_request(f"{gw.eureka}/apps/{app}/{urllib.parse.quote(instance_id, safe='')}",
                                headers={"Accept": "application/json"})
    return json.loads(body)["instance"] if status == 200 else None


def route_metadata(routes: dict[str, tuple[str, str]]) -> dict[str, str]:
    """apiml.routes.* metadata; `routes` maps route name -> (gatewayUrl, serviceUrl)."""
    metadata = {}
    for name, (gateway_url, service_url) in routes.items():
        metadata[f"apiml.routes.{name}.gatewayUrl"] = gateway_url
        metadata[f"apiml.routes.{name}.serviceUrl"] = service_url
    return metadata


def registration(app: str, instance_id: str, port: int, metadata: dict[str, str], duration: int = 60) -> bytes:
    """A Eureka registration document (JSON) for an instance on 127.0.0.1:`port`."""
    return json.dumps({"instance": {
        "instanceId": instance_id,
        "hostName": HOST,
        "app": app.upper(),
        "ipAddr": HOST,
        "status": "UP",
        "port": {"$": port, "@enabled": "true"},
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": duration},
        "metadata": metadata,
        "vipAddress": app.lower(),
    }}).encode()


def register(gw: Gateway, app: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    return http_request(f"{gw.eureka}/apps/{app.upper()}", "POST", body, {"Content-Type": content_type})


class ClientProcess:
    """A Eureka client child whose stdout is JSON events (see tests/integration/eureka/)."""

    def __init__(self, child: Child):
        self.child = child
        self.events: list[dict] = []

    def next_event(self, name: str, timeout: float = 20.0, where: Callable[[dict], bool] = lambda e: True) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name!r} event within {timeout}s; saw {self.events!r}\n{self.child.describe()}")
            event = json.loads(self.child.wait_line(JSON_LINE, timeout=remaining).group(0))
            self.events.append(event)
            if event.get("event") == name and where(event):
                return event


def start_js(log_dir: Path, registry_port: int, app: str, port: int, discover: str, name: str = "",
             options: dict | None = None) -> ClientProcess:
    """eureka-js-client (unmodified) in a node child; `options` may carry `metadata`."""
    import shutil

    node = shutil.which("node")
    assert node, "node not found"
    assert (EUREKA_DIR / "node_modules" / "eureka-js-client").is_dir(), "run tests/integration/setup.sh (npm ci in tests/integration/eureka)"
    args = [node, EUREKA_DIR / "js_client.js", registry_port, app, port, discover, json.dumps(options or {})]
    return ClientProcess(Child(name or f"eureka-js-{app}", args, log_dir))


def start_py(log_dir: Path, registry_port: int, app: str, port: int, discover: str, name: str = "",
             options: dict | None = None, url: str | None = None) -> ClientProcess:
    """py-eureka-client (unmodified) in a python child; `options` may carry `metadata`, `renewal`, `duration`;
    `url` replaces the registry's plain URL (to carry a credential, say)."""
    import sys

    url = url or f"http://{HOST}:{registry_port}/eureka/"
    args = [sys.executable, EUREKA_DIR / "py_client.py", url, app, port, discover, json.dumps(options or {})]
    return ClientProcess(Child(name or f"eureka-py-{app}", args, log_dir))


# ------------------------------------------------------------------ certificates (openssl CLI)

LOCAL_NAMES = "IP:127.0.0.1, DNS:localhost"  # a subjectAltName for certificates of servers on this machine

OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = wsgate test
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""


@dataclass
class Pki:
    """The folder of the test certificates; `pem(name)` and `key(name)` name their files."""

    path: Path

    @classmethod
    def create(cls, path: Path, *cas: str) -> "Pki":
        """A PKI in the folder `path`: the openssl configuration and CA database, and the CAs named `cas`."""
        (path / "openssl.cnf").write_text(OPENSSL_CNF)
        (path / "index.txt").write_text("")
        (path / "serial").write_text("01\n")
        pki = cls(path)
        for name in cas:
            pki.make_ca(name)
        return pki

    def pem(self, name: str) -> Path:
        return self.path / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.path / f"{name}.key"

    def openssl(self, *args: str) -> None:
        result = subprocess.run(["openssl", *args], cwd=self.path, capture_output=True, timeout=30)
        assert result.returncode == 0, (args, result.stderr.decode("utf-8", "replace"))

    def make_ca(self, name: str) -> None:
        self.openssl("req", "-x509", "-config", "openssl.cnf", "-extensions", "root", "-newkey", "ec",
                     "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
                     "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}")

    def issue(self, name: str, ca: str, names: str, usage: str = "serverAuth", dates: tuple[str, ...] = ("-days", "1")) -> None:
        """A certificate for `names` (a subjectAltName value) signed by `ca`."""
        (self.path / f"{name}.ext").write_text(
            "[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
            f"extendedKeyUsage = {usage}\nsubjectAltName = {names}\n"
        )
        self.openssl("req", "-new", "-config", "openssl.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        self.openssl("ca", "-batch", "-config", "openssl.cnf", "-cert", f"{ca}.pem", "-keyfile", f"{ca}.key",
                     "-in", f"{name}.csr", "-out", f"{name}.pem", "-notext", "-extfile", f"{name}.ext",
                     "-extensions", "leaf", *dates)
