#!/usr/bin/env python3
"""Compare wsgate with a direct connection, nginx and HAProxy on loopback, in interleaved rounds, over ws and wss.

    scripts/bench-compare.py                    # full run (about 40 minutes), writes BENCHMARKS.md and doc/bench.svg
    scripts/bench-compare.py --quick --rounds 1 --idle-sessions 200   # smoke (about a minute), report under target/bench/

What it does, in order:
  1. installs nginx, HAProxy and the openssl command from Debian's packages when missing (apt-get update once,
     then apt-get install -y nginx-light haproxy openssl, or nginx when nginx-light is not offered), with the
     distribution's services kept from starting (policy-rc.d);
  2. cargo build --release -p wsgate -p wsgate-bench (skipped with --no-build);
  3. makes a test CA and a certificate for localhost / 127.0.0.1 (ECDSA P-256, openssl) under
     target/bench/run/tls/, then starts, on 127.0.0.1 and free ports chosen now: the echo backend
     (wsgate-bench echo-server --threads 2), "pipe" (wsgate-bench pipe --threads 2: a TCP relay to the echo
     backend that only copies bytes, the floor of any proxy, measured as a reference and never counted as a
     proxy), wsgate (a static service `echo` routed at /echo/ws/v1/), a second
     wsgate with TLS towards clients ("wsgate-tls"), nginx (2 worker processes; a second server block with
     proxy_buffer_size 64k, "nginx-64k", and a third with the same tuning and `listen ... ssl`, "nginx-tls") and
     HAProxy (mode http, nbthread 2; a second frontend with `bind ... ssl`, "haproxy-tls"), each in the foreground
     with its config, pid and log files under target/bench/run/; all of them are stopped at exit, on Ctrl-C too.
     The TLS targets terminate TLS and proxy plain ws to the same echo backend;
  4. runs every workload against every target in interleaved rounds (A B C D A B C D ...), one run at a time,
     with one progress line per run on stderr, and keeps every raw JSON line in target/bench/results.jsonl;
  5. prints the medians and ratios, and writes the report (machine, versions, commands, tables, goals,
     an SVG plot, and an "Analysis" section kept across runs once filled in by hand).

Python 3.11 standard library only. Loopback only; every run is bounded in time; nothing is asserted on timings:
the exit code is 0 when every run finished without errors, 1 otherwise.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import html
import math
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])

# Environment variables that wsgate reads as configuration overrides (Spring relaxed binding): they must not
# leak from the caller's shell into the gateway under test.
WSGATE_ENV_PREFIXES = ("SERVER_", "DISCOVERY_", "SERVICES", "EUREKA_")

# "pipe" is a reference, not a proxy: wsgate-bench pipe, a TCP relay that copies bytes to the echo backend and parses
# nothing (a second TCP connection per session, two more socket reads and writes per round trip). What it costs is the
# floor any proxy pays on this machine; it never counts as "best proxy", and it is not run for idle memory (its
# 512 KiB of buffers per session make a floor meaningless) nor over wss.
FLOOR = "pipe"
PLAIN_TARGETS = ["direct", FLOOR, "wsgate", "nginx", "nginx-64k", "haproxy"]
# TLS on the client leg, plain ws to the echo backend. There is no direct TLS baseline (the echo backend does not
# speak TLS), so these are compared with nginx-tls.
TLS_TARGETS = ["wsgate-tls", "nginx-tls", "haproxy-tls"]
TARGET_ORDER = PLAIN_TARGETS + TLS_TARGETS
# The process serving each target that is not a process of its own: one nginx serves nginx, nginx-64k and
# nginx-tls; one HAProxy haproxy and haproxy-tls. wsgate-tls is a wsgate process of its own, pipe a wsgate-bench one.
OWNER = {"nginx-64k": "nginx", "nginx-tls": "nginx", "haproxy-tls": "haproxy"}


def owner(target: str) -> str:
    return OWNER.get(target, target)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def die(message: str) -> None:
    log(f"bench-compare: {message}")
    sys.exit(2)


# --------------------------------------------------------------------------------------------------------------
# Processes: every process started here is tracked, stopped at exit (also on Ctrl-C or SIGTERM), and recorded in
# target/bench/pids.json so that a run killed with SIGKILL can have its leftovers stopped by the next run.
# --------------------------------------------------------------------------------------------------------------

_live: list[subprocess.Popen] = []
_pid_file: Path | None = None


def _record_pids() -> None:
    if _pid_file is None:
        return
    entries = []
    for proc in _live:
        if proc.poll() is None:
            try:
                entries.append({"pid": proc.pid, "cmdline": Path(f"/proc/{proc.pid}/cmdline").read_text()})
            except OSError:
                pass
    _pid_file.write_text(json.dumps(entries))


def stop_leftovers(pid_file: Path) -> None:
    """Stops processes recorded by an earlier run of this script that did not get to clean up."""
    try:
        entries = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return
    for entry in entries:
        pid = entry.get("pid")
        try:
            if Path(f"/proc/{pid}/cmdline").read_text() != entry.get("cmdline"):
                continue  # the pid is gone or now belongs to something else
        except OSError:
            continue
        log(f"bench-compare: stopping process {pid} left over from an earlier run")
        try:
            os.killpg(pid, signal.SIGKILL)  # each was started as the leader of its own process group
        except OSError:
            pass
    pid_file.unlink(missing_ok=True)


def spawn(argv: list[str], *, log_path: Path, env: dict | None = None, stdout_pipe: bool = False) -> subprocess.Popen:
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout_pipe else log_file,
        stderr=log_file,
        env=env,
        start_new_session=True,  # Ctrl-C reaches this script only; it stops the children itself
    )
    log_file.close()
    _live.append(proc)
    _record_pids()
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        except OSError:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    else:
        # nginx workers or other children left behind in the group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    if proc in _live:
        _live.remove(proc)
    _record_pids()


def stop_all() -> None:
    for proc in reversed(list(_live)):
        stop(proc, grace=5.0)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def read_listening_line(proc: subprocess.Popen, pattern: str, log_path: Path, timeout: float) -> int:
    """Reads the child's stdout until `pattern` (with a (\\d+) port group) matches, then keeps draining stdout
    into its log in a thread. Returns the port."""
    found: list[int] = []
    ready = threading.Event()

    def pump():
        with open(log_path, "ab") as sink:
            for raw in proc.stdout:
                sink.write(raw)
                sink.flush()
                if not found:
                    match = re.search(pattern, raw.decode(errors="replace"))
                    if match:
                        found.append(int(match.group(1)))
                        ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(timeout)
    if not found:
        stop(proc)
        tail = log_path.read_text(errors="replace")[-2000:]
        die(f"{proc.args[0]} did not print its listening line within {timeout:.0f} s; log {log_path}:\n{tail}")
    return found[0]


def wait_for_port(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    die(f"{proc.args[0]} is not listening on 127.0.0.1:{port} (exit {proc.poll()}); log {log_path}:\n{tail}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------------------------
# /proc readings
# --------------------------------------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
        except (OSError, IndexError, ValueError):
            pass
    return total


class RssSampler:
    """Samples the summed RSS of some processes every 100 ms and keeps the peak."""

    def __init__(self, pids_fn):
        self.pids_fn = pids_fn
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pids_fn()))
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------------------------
# Installing nginx, HAProxy and openssl (the command that makes the test certificates)
# --------------------------------------------------------------------------------------------------------------

TOOLS = ("nginx", "haproxy", "openssl")


def which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def ensure_proxies(no_install: bool) -> None:
    missing = [name for name in TOOLS if which(name) is None]
    if not missing:
        return
    if no_install:
        die(f"{' and '.join(missing)} not installed (and --no-install given)")
    if os.geteuid() != 0:
        die(f"{' and '.join(missing)} not installed; run as root (apt-get) or install them first")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep the distribution's nginx and haproxy services from starting on install (they would bind port 80 and
    # 8080-style defaults); Docker-style images already ship this file.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# written by wsgate scripts/bench-compare.py for the duration of an install\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    try:
        log("==> apt-get update")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        packages = [("nginx-light" if name == "nginx" else name) for name in missing]
        log(f"==> apt-get install -y {' '.join(packages)}")
        result = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env)
        if result.returncode != 0 and "nginx-light" in packages:
            packages = ["nginx" if p == "nginx-light" else p for p in packages]  # Debian 13 has one nginx package
            log(f"==> apt-get install -y {' '.join(packages)}")
            subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
        elif result.returncode != 0:
            die("apt-get install failed")
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)
    still = [name for name in TOOLS if which(name) is None]
    if still:
        die(f"{' and '.join(still)} still missing after apt-get install")


# --------------------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Certificates:
    """The test PKI of a run: a CA, and a certificate for localhost / 127.0.0.1 signed by it."""
    ca: Path  # the CA certificate (PEM): wsgate-bench --ca
    cert: Path  # the server certificate (PEM)
    key: Path  # its private key (PEM, PKCS#8)
    combined: Path  # certificate then key in one file (HAProxy's `crt`)


def make_certificates(d: Path) -> Certificates:
    """Makes a fresh CA and a server certificate with SAN DNS:localhost and IP:127.0.0.1 under `d`, with the
    openssl command. ECDSA P-256 keys: what a current deployment would pick, and the same for every target."""
    d.mkdir(parents=True, exist_ok=True)
    certs = Certificates(ca=d / "ca.pem", cert=d / "cert.pem", key=d / "key.pem", combined=d / "combined.pem")
    ca_key, csr, ext = d / "ca.key", d / "cert.csr", d / "cert.ext"
    ext.write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                   "basicConstraints = critical, CA:FALSE\n"
                   "keyUsage = critical, digitalSignature\n"
                   "extendedKeyUsage = serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(certs.ca), "-days", "30",
         "-subj", "/CN=wsgate bench test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", str(d / "key.raw.pem"), "-out", str(csr), "-subj", "/CN=localhost"],
        # wsgate reads a PKCS#8 key ("BEGIN PRIVATE KEY"); openssl 3 writes one already, this makes sure.
        ["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", str(d / "key.raw.pem"), "-out", str(certs.key)],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(certs.ca), "-CAkey", str(ca_key), "-set_serial", "2",
         "-days", "30", "-extfile", str(ext), "-out", str(certs.cert)],
    ]
    for argv in steps:
        result = subprocess.run([which("openssl") or "openssl", *argv[1:]], capture_output=True, text=True)
        if result.returncode != 0:
            die(f"making the test certificates failed: {shlex.join(argv)}\n{result.stdout}{result.stderr}")
    certs.combined.write_text(certs.cert.read_text() + certs.key.read_text())
    return certs


class Lab:
    """The echo backend, the pipe relay and the proxies (wsgate twice: ws and wss), with their config files under
    run_dir."""

    def __init__(self, run_dir: Path, bench: str, wsgate: str):
        self.dir = run_dir
        self.bench = bench
        self.wsgate = wsgate
        self.nginx = which("nginx")
        self.haproxy = which("haproxy")
        self.echo_port = 0
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.configs: dict[str, str] = {}
        self.child_env = {k: v for k, v in os.environ.items() if not k.upper().startswith(WSGATE_ENV_PREFIXES)}
        self.certs = make_certificates(run_dir / "tls")

    # -- starting ------------------------------------------------------------------------------------------------

    def start_echo(self) -> None:
        path = self.dir / "echo-server.log"
        argv = [self.bench, "echo-server", "--address", "127.0.0.1", "--port", str(self.echo_port), "--threads", "2"]
        proc = spawn(argv, log_path=path, env=self.child_env, stdout_pipe=True)
        self.echo_port = read_listening_line(proc, r"echo-server listening on [^\s:]+:(\d+)", path, 30)
        self.procs["direct"] = proc

    def pipe_argv(self, port: int = 0) -> list[str]:
        """The pipe relay: wsgate-bench pipe, 2 worker threads like the proxies, to the echo backend."""
        return [self.bench, "pipe", "--address", "127.0.0.1", "--port", str(port),
                "--upstream", f"127.0.0.1:{self.echo_port}", "--threads", "2"]

    def start_pipe(self) -> None:
        """Starts the pipe relay (after the echo backend, whose port it needs) on a free port."""
        path = self.dir / "pipe.log"
        proc = spawn(self.pipe_argv(), log_path=path, env=self.child_env, stdout_pipe=True)
        self.ports[FLOOR] = read_listening_line(proc, r"pipe listening on [^\s:]+:(\d+)", path, 30)
        self.procs[FLOOR] = proc

    def start_wsgate(self, name: str = "wsgate") -> None:
        """Starts wsgate ("wsgate": plain ws; "wsgate-tls": TLS towards clients, plain ws to the backend)."""
        cfg = self.dir / f"{name}.yml"
        if name == "wsgate-tls":
            ssl = f"""\
  ssl:
    enabled: true
    certificate: {self.certs.cert}
    certificateKey: {self.certs.key}"""
        else:
            ssl = """\
  ssl:
    enabled: false"""
        self.configs[name] = f"""\
# {name}: one static service `echo` routed at /echo/ws/v1/ to the echo backend
server:
  address: 127.0.0.1
  port: 0
{ssl}
  webSocket:
    supportedProtocols: "*"
    maxFrameSize: 64MiB
  limits:
    # The idle workload holds 9,000 sessions: the default (open-file limit less a tenth, halved) would
    # leave no room above that; 2 x 9,900 descriptors still fit the 20,000 here.
    maxSessions: 9900
discovery:
  embedded:
    enabled: false
services:
  - serviceId: echo
    instances:
      - host: 127.0.0.1
        port: {self.echo_port}
    metadata:
      apiml.routes.ws_v1.gatewayUrl: ws/v1
      apiml.routes.ws_v1.serviceUrl: /
"""
        cfg.write_text(self.configs[name])
        path = self.dir / f"{name}.log"
        # RUST_LOG=warn: no log line per session (nginx runs with access_log off, HAProxy without logging).
        env = dict(self.child_env, RUST_LOG="warn")
        proc = spawn([self.wsgate, "serve", "--config", str(cfg)], log_path=path, env=env, stdout_pipe=True)
        self.ports[name] = read_listening_line(proc, r"wsgate listening on [^\s]*:(\d+)", path, 30)
        self.procs[name] = proc

    def start_wsgate_tls(self) -> None:
        self.start_wsgate("wsgate-tls")

    def start_nginx(self) -> None:
        if "nginx" not in self.ports:
            self.ports["nginx"], self.ports["nginx-64k"], self.ports["nginx-tls"] = free_port(), free_port(), free_port()
        d = self.dir / "nginx"
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        location = """\
            proxy_pass http://127.0.0.1:{echo};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;""".format(echo=self.echo_port)
        tuned = """\
            proxy_buffer_size 64k;
            # nginx refuses proxy_buffer_size 64k next to the default proxy_buffers (8 4k); these two only
            # matter for plain HTTP responses, an upgraded connection uses proxy_buffer_size alone.
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 128k;"""
        self.configs["nginx"] = f"""\
# nginx: 2 worker processes, WebSocket proxy to the echo backend. Port {self.ports['nginx']}: defaults
# ("nginx"); port {self.ports['nginx-64k']}: proxy_buffer_size 64k ("nginx-64k"); port {self.ports['nginx-tls']}:
# the same tuning behind TLS ("nginx-tls": wss from clients, plain ws to the backend).
user root;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{
    worker_connections 20000;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{self.ports['nginx']};
        location / {{
{location}
        }}
    }}
    server {{
        listen 127.0.0.1:{self.ports['nginx-64k']};
        location / {{
{location}
{tuned}
        }}
    }}
    server {{
        listen 127.0.0.1:{self.ports['nginx-tls']} ssl;
        ssl_certificate {self.certs.cert};
        ssl_certificate_key {self.certs.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
{location}
{tuned}
        }}
    }}
}}
"""
        cfg = d / "nginx.conf"
        cfg.write_text(self.configs["nginx"])
        path = self.dir / "nginx.log"
        proc = spawn([self.nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(cfg)], log_path=path, env=self.child_env)
        wait_for_port(self.ports["nginx"], proc, d / "error.log")
        wait_for_port(self.ports["nginx-64k"], proc, d / "error.log")
        wait_for_port(self.ports["nginx-tls"], proc, d / "error.log")
        self.procs["nginx"] = proc
        deadline = time.monotonic() + 10
        while len(children_of(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_haproxy(self) -> None:
        if "haproxy" not in self.ports:
            self.ports["haproxy"], self.ports["haproxy-tls"] = free_port(), free_port()
        d = self.dir / "haproxy"
        d.mkdir(parents=True, exist_ok=True)
        self.configs["haproxy"] = f"""\
# HAProxy: one process with 2 threads, HTTP mode, the WebSocket upgrade tunnelled to the echo backend; frontend
# ws-tls ("haproxy-tls") terminates TLS (wss from clients, plain ws to the backend).
global
    nbthread 2
    pidfile {d}/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend ws
    bind 127.0.0.1:{self.ports['haproxy']}
    default_backend echo
frontend ws-tls
    bind 127.0.0.1:{self.ports['haproxy-tls']} ssl crt {self.certs.combined} alpn http/1.1
    default_backend echo
backend echo
    server echo1 127.0.0.1:{self.echo_port}
"""
        cfg = d / "haproxy.cfg"
        cfg.write_text(self.configs["haproxy"])
        path = self.dir / "haproxy.log"
        check = subprocess.run([self.haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, env=self.child_env)
        if check.returncode != 0:
            die(f"haproxy -c rejected {cfg}:\n{check.stdout}{check.stderr}")
        proc = spawn([self.haproxy, "-db", "-f", str(cfg)], log_path=path, env=self.child_env)
        wait_for_port(self.ports["haproxy"], proc, path)
        wait_for_port(self.ports["haproxy-tls"], proc, path)
        self.procs["haproxy"] = proc

    def start_all(self) -> None:
        self.start_echo()
        self.start_pipe()
        self.start_wsgate()
        self.start_wsgate_tls()
        self.start_nginx()
        self.start_haproxy()

    def restart(self, target: str) -> None:
        """A fresh process for `target` (the echo backend for direct), on the same port (wsgate, pipe: a new one)."""
        proc = self.procs.get(owner(target))
        if proc is not None:
            stop(proc)
        {"direct": self.start_echo, FLOOR: self.start_pipe, "wsgate": self.start_wsgate,
         "wsgate-tls": self.start_wsgate_tls, "nginx": self.start_nginx, "haproxy": self.start_haproxy}[owner(target)]()

    def alive(self, target: str) -> bool:
        return self.procs[owner(target)].poll() is None

    # -- addressing and /proc ------------------------------------------------------------------------------------

    def url(self, target: str) -> str:
        if target == "direct":
            return f"ws://127.0.0.1:{self.echo_port}/"
        if target == "wsgate":
            return f"ws://127.0.0.1:{self.ports['wsgate']}/echo/ws/v1/"
        # wss to 127.0.0.1, not localhost: the name could resolve to ::1 first, where nothing listens; the
        # certificate carries the address as an IP SAN, and wsgate-bench checks it.
        if target == "wsgate-tls":
            return f"wss://127.0.0.1:{self.ports['wsgate-tls']}/echo/ws/v1/"
        if target in TLS_TARGETS:
            return f"wss://127.0.0.1:{self.ports[target]}/"
        return f"ws://127.0.0.1:{self.ports[target]}/"

    def ca_for(self, target: str) -> str | None:
        """wsgate-bench's --ca for `target`: the test CA for the wss targets."""
        return str(self.certs.ca) if target in TLS_TARGETS else None

    def cpu_pids(self, target: str) -> list[int]:
        """The processes whose CPU a run through `target` costs (direct: none but the backend's, kept apart; pipe:
        the relay's one process, read like wsgate's)."""
        if target == "direct":
            return []
        if owner(target) == "nginx":
            master = self.procs["nginx"].pid
            return [master, *children_of(master)]
        return [self.procs[owner(target)].pid]

    def rss_pids(self, target: str) -> list[int]:
        """The processes whose memory holds `target`'s sessions: nginx's workers, HAProxy's one process,
        wsgate, and for direct the echo backend."""
        if owner(target) == "nginx":
            return children_of(self.procs["nginx"].pid)
        return [self.procs[owner(target)].pid]

    def backend_pids(self) -> list[int]:
        return [self.procs["direct"].pid]


# --------------------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Workload:
    key: str
    title: str
    kind: str  # echo | connect | idle
    metric: str  # the JSON field compared
    unit: str
    higher_is_better: bool
    targets: list[str]
    size: int = 0
    sessions: int = 0
    concurrency: int = 0
    rate: float | None = None
    measure_cpu: bool = False
    goal: str = ""
    timeout: float = 60.0


@dataclass
class Settings:
    duration: str
    warmup: str
    hold: str
    duration_s: float
    warmup_s: float
    hold_s: float


def make_workloads(quick: bool, idle_sessions: int) -> list[Workload]:
    # pipe, the floor, right after direct in the plain workloads; not for idle memory, not over wss.
    base = ["direct", FLOOR, "wsgate", "nginx", "haproxy"]
    large = ["direct", FLOOR, "wsgate", "nginx", "nginx-64k", "haproxy"]
    idle = [t for t in base if t != FLOOR]
    tls = TLS_TARGETS
    s64, s16k, s1m, conc = (20, 20, 4, 10) if quick else (100, 100, 10, 50)
    echo = [
        Workload("echo-64", f"echo 64 B ×{s64}", "echo", "msgs_per_s", "msgs/s", True, base,
                 size=64, sessions=s64, measure_cpu=True),
        Workload("echo-16k", f"echo 16 KiB ×{s16k}", "echo", "mib_per_s", "MiB/s", True, large,
                 size=16384, sessions=s16k),
        Workload("echo-1m", f"echo 1 MiB ×{s1m}", "echo", "mib_per_s", "MiB/s", True, large,
                 size=1 << 20, sessions=s1m),
    ]
    # The same echo workloads over wss: TLS on the client leg, plain ws from the proxy to the echo backend.
    over_tls = [replace(w, key=f"{w.key}-tls", title=f"wss {w.title}", targets=tls) for w in echo]
    return echo + over_tls + [
        Workload("connect", f"handshakes, concurrency {conc}", "connect", "sessions_per_s", "sessions/s", True, base,
                 concurrency=conc),
        Workload("p99-rate", f"p99, 64 B ×{s64} at a fixed rate", "echo", "p99_us", "µs p99",
                 False, base, size=64, sessions=s64),
        Workload("idle", f"RSS per session, {idle_sessions} idle", "idle", "bytes_per_session", "B/session", False, idle,
                 sessions=idle_sessions),
    ]


def command_for(w: Workload, s: Settings, url: str, pid: int | None = None, ca: str | None = None) -> list[str]:
    tls = ["--ca", ca] if ca is not None else []
    if w.kind == "echo":
        argv = ["echo", "--url", url, *tls, "--sessions", str(w.sessions), "--size", str(w.size),
                "--duration", s.duration, "--warmup", s.warmup]
        if w.rate is not None:
            argv += ["--rate", str(int(round(w.rate)))]
    elif w.kind == "connect":
        argv = ["connect", "--url", url, *tls, "--concurrency", str(w.concurrency), "--duration", s.duration]
    else:
        argv = ["idle", "--url", url, *tls, "--sessions", str(w.sessions), "--hold", s.hold]
        if pid is not None:
            argv += ["--pid", str(pid)]
    return argv + ["--json"]


def run_timeout(w: Workload, s: Settings) -> float:
    if w.kind == "idle":
        return s.hold_s + w.sessions / 200 + 120
    return s.duration_s + s.warmup_s + 90


def parse_json_line(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def one_run(lab: Lab, bench: str, w: Workload, s: Settings, target: str, rnd: int, log_dir: Path) -> dict:
    """Runs one workload against one target; returns the raw JSON line plus what this script measured."""
    if not lab.alive(target):
        log(f"bench-compare: {target} had stopped; starting it again")
        lab.restart(target)
    if w.kind == "idle":
        lab.restart(target)  # a fresh process, so freed memory from earlier runs cannot hide the cost of a session
        time.sleep(0.5)
    url = lab.url(target)
    single_pid = None
    if w.kind == "idle" and owner(target) != "nginx":
        single_pid = lab.rss_pids(target)[0]
    argv = [bench, *command_for(w, s, url, single_pid, lab.ca_for(target))]
    cpu_pids = lab.cpu_pids(target)
    cpu_before = cpu_ticks(cpu_pids)
    backend_before = cpu_ticks(lab.backend_pids())
    rss_before = rss_kib(lab.rss_pids(target))
    err_path = log_dir / f"{w.key}.{target}.r{rnd}.stderr"
    started = time.monotonic()
    sampler = RssSampler(lambda: lab.rss_pids(target)) if w.kind == "idle" else None
    proc = None
    timed_out = False
    try:
        if sampler:
            sampler.__enter__()
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=lab.child_env, start_new_session=True)
            _live.append(proc)
            try:
                out, _ = proc.communicate(timeout=run_timeout(w, s))
            except subprocess.TimeoutExpired:
                timed_out = True
                stop(proc, grace=2)
                out = b""
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
        if proc is not None and proc in _live:
            _live.remove(proc)
    elapsed = time.monotonic() - started
    cpu_after = cpu_ticks(cpu_pids)
    backend_after = cpu_ticks(lab.backend_pids())
    data = parse_json_line(out.decode(errors="replace")) or {}
    record = {
        "workload": w.key,
        "round": rnd,
        "target": target,
        "command": shlex.join(argv),
        "exit": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "elapsed_s": round(elapsed, 3),
        "result": data,
    }
    ok = (not timed_out) and proc.returncode == 0 and data and data.get("errors", 1) == 0
    if w.measure_cpu and data:
        messages = estimate_all_messages(data, s)
        if messages:
            if cpu_pids:
                record["proxy_cpu_s"] = (cpu_after - cpu_before) / CLK_TCK
                record["proxy_cpu_us_per_msg"] = record["proxy_cpu_s"] * 1e6 / messages
            record["backend_cpu_s"] = (backend_after - backend_before) / CLK_TCK
            record["backend_cpu_us_per_msg"] = record["backend_cpu_s"] * 1e6 / messages
            record["messages_incl_warmup"] = messages
    if w.kind == "idle" and sampler:
        sessions = data.get("sessions") or w.sessions
        record["rss_before_kib"] = rss_before
        record["rss_peak_kib"] = sampler.peak
        record["rss_processes"] = len(lab.rss_pids(target))
        record["bytes_per_session"] = max(0, sampler.peak - rss_before) * 1024 / max(1, sessions)
    record["ok"] = bool(ok)
    if not ok:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
        record["stderr_tail"] = tail
    return record


def estimate_all_messages(data: dict, s: Settings) -> float:
    """Round trips made while the CPU counters ran: the measured ones plus those of the warm-up. The tool reports
    the measured window; when it does not say how many warm-up messages it sent, they are estimated at the
    measured rate."""
    measured = data.get("messages") or 0
    for key in ("total_messages", "messages_total"):
        if data.get(key):
            return float(data[key])
    if "warmup_messages" in data:
        return float(measured + data["warmup_messages"])
    rate = data.get("msgs_per_s") or 0
    warmup = data.get("warmup_s", s.warmup_s)
    return float(measured + rate * warmup)


def metric_of(record: dict, metric: str) -> float | None:
    if metric in ("bytes_per_session", "proxy_cpu_us_per_msg", "backend_cpu_us_per_msg"):
        value = record.get(metric)
    else:
        value = record.get("result", {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def progress_text(w: Workload, record: dict) -> str:
    r = record.get("result", {})
    if not record["ok"]:
        why = "timed out" if record["timed_out"] else f"exit {record['exit']}, errors {r.get('errors', '?')}"
        return f"FAILED ({why}) {' | '.join(record.get('stderr_tail', []))}"
    if w.kind == "idle":
        return (f"{r.get('sessions', w.sessions)} sessions, RSS {record['rss_before_kib']} -> {record['rss_peak_kib']} KiB, "
                f"{record['bytes_per_session']:.0f} B/session"
                + (f" (tool, one process: {r['bytes_per_session']:.0f})" if r.get("bytes_per_session") is not None else ""))
    if w.kind == "connect":
        return f"{r.get('sessions_per_s', 0):,.0f} sessions/s, p99 {r.get('p99_us', 0) / 1000:.2f} ms"
    text = f"{r.get('msgs_per_s', 0):,.0f} msgs/s, {r.get('mib_per_s', 0):,.1f} MiB/s, p99 {r.get('p99_us', 0) / 1000:.2f} ms"
    if "proxy_cpu_us_per_msg" in record:
        text += f", proxy CPU {record['proxy_cpu_us_per_msg']:.2f} µs/msg"
    if "backend_cpu_us_per_msg" in record:
        text += f", echo CPU {record['backend_cpu_us_per_msg']:.2f} µs/msg"
    return text


# --------------------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    tls: bool = False  # a wss row: measured on TLS_TARGETS, compared with nginx-tls
    medians: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # target -> (ok runs, runs)
    values: dict[str, list[float]] = field(default_factory=dict)  # target -> every ok run's value

    def ratio(self, target: str, reference: str) -> float | None:
        a, b = self.medians.get(target), self.medians.get(reference)
        if a is None or b is None or b == 0:
            return None
        return a / b


def summarise(records: list[dict], workloads: list[Workload]) -> list[Row]:
    rows = []
    for w in workloads:
        tls = w.key.endswith("-tls")
        rows.append(_row(records, w.key, w.title, w.metric, w.unit, w.higher_is_better, w.targets, tls=tls))
        if w.measure_cpu:
            key, title = ("cpu-64-tls", "CPU per 64 B round trip over wss") if tls else ("cpu-64", "CPU per 64 B round trip")
            rows.append(_row(records, key, title, "proxy_cpu_us_per_msg", "µs", False, w.targets, source=w.key, tls=tls))
    return rows


def _row(records, key, title, metric, unit, higher, targets, source=None, tls=False) -> Row:
    row = Row(key, title, unit, higher, tls)
    for target in targets:
        runs = [r for r in records if r["workload"] == (source or key) and r["target"] == target]
        good = [r for r in runs if r["ok"]]
        m = metric
        if metric == "proxy_cpu_us_per_msg" and target == "direct":
            m = "backend_cpu_us_per_msg"
        values = [v for v in (metric_of(r, m) for r in good) if v is not None]
        row.medians[target] = statistics.median(values) if values else None
        row.values[target] = values
        row.counts[target] = (len(values), len(runs))
    return row


TLS_GOAL = 1.2  # × nginx-tls, for each wss echo workload
TLS_GOAL_ROWS = [("echo-64-tls", "64 B"), ("echo-16k-tls", "16 KiB"), ("echo-1m-tls", "1 MiB")]


@dataclass
class Goal:
    row: str
    text: str
    check: object  # callable(rows) -> (bool | None, str)
    # callable(rows) -> str | None: what pipe, the floor of any proxy, reaches on the goal's own measure. Extra
    # information beside the verdict; it never changes the verdict.
    floor: object = None


def floor_text(value: str, reachable: bool, beaten_by: tuple[str, str] | None = None) -> str:
    """The floor beside a goal's verdict: pipe's figure, and whether the goal lies within it. `beaten_by` (a proxy and
    its figure) when a proxy did better than pipe on the row: pipe is then no floor there, and the text says so
    rather than call the goal out of reach."""
    if reachable:
        return f"pipe {value}: reachable"
    if beaten_by is not None:
        return f"pipe {value}, short of the goal, but {beaten_by[0]} did better ({beaten_by[1]}): no floor in this run"
    return f"pipe {value} — the goal is beyond the floor: out of reach of any proxy here"


def goals() -> list[Goal]:
    def by(rows, key):
        return next((r for r in rows if r.key == key), None)

    def ratio_goal(key, minimum):
        def check(rows):
            row = by(rows, key)
            ratio = row.ratio("wsgate", "direct") if row else None
            if ratio is None:
                return None, "not measured"
            return ratio >= minimum, f"{ratio:.2f} × direct"
        return check

    def floor_of(key, limit, higher=True, unit="× direct"):
        """pipe's figure on the goal's row (median ÷ direct's, or with unit "µs" the median itself: CPU per round
        trip, read from /proc for the relay exactly as for the proxies) against the goal's limit."""
        def floor(rows):
            row = by(rows, key)
            if row is None:
                return None

            def value_of(target):
                return row.medians.get(target) if unit == "µs" else row.ratio(target, "direct")

            def better(a, b):
                return a > b if higher else a < b

            def fmt(value):
                return f"{value:.2f} {unit}"

            pipe = value_of(FLOOR)
            if pipe is None:
                return None
            beaten = [(t, v) for t in ["wsgate", *PLAIN.proxies] if (v := value_of(t)) is not None and better(v, pipe)]
            best = (max if higher else min)(beaten, key=lambda c: c[1]) if beaten else None
            return floor_text(fmt(pipe), not better(limit, pipe), best and (best[0], fmt(best[1])))
        return floor

    def cpu(rows):
        row = by(rows, "cpu-64")
        value = row.medians.get("wsgate") if row else None
        if value is None:
            return None, "not measured"
        return value <= 6.0, f"{value:.2f} µs"

    def p99(rows):
        row = by(rows, "p99-rate")
        ratio = row.ratio("wsgate", "direct") if row else None
        if ratio is None:
            return None, "not measured"
        return ratio <= 1.4, f"{ratio:.2f} × direct's p99"

    def idle(rows):
        row = by(rows, "idle")
        value = row.medians.get("wsgate") if row else None
        if value is None:
            return None, "not measured"
        haproxy = row.medians.get("haproxy")
        met = value <= 4096 and (haproxy is None or value < haproxy)
        extra = f" (HAProxy {haproxy / 1024:.1f} KiB)" if haproxy is not None else ""
        return met, f"{value / 1024:.2f} KiB{extra}"

    def tls(rows):
        # Each wss echo workload on its own: wsgate-tls's median over nginx-tls's (nginx with TLS and the
        # proxy_buffer_size 64k tuning, the strong nginx). There is no direct TLS baseline.
        parts, verdicts = [], []
        for key, label in TLS_GOAL_ROWS:
            row = by(rows, key)
            ratio = row.ratio("wsgate-tls", "nginx-tls") if row else None
            verdicts.append(None if ratio is None else ratio >= TLS_GOAL)
            parts.append(f"{label} {fmt_ratio(ratio)}")
        if all(v is None for v in verdicts):
            return None, "not measured"
        met = False if False in verdicts else (None if None in verdicts else True)
        return met, ", ".join(parts) + " × nginx-tls"

    return [
        Goal("echo-64", "echo 64 B, closed loop, msgs/s ≥ 0.60 × direct (1.2 × nginx)", ratio_goal("echo-64", 0.60),
             floor_of("echo-64", 0.60)),
        Goal("cpu-64", "proxy CPU per 64 B round trip ≤ 6 µs (nginx 9.6)", cpu, floor_of("cpu-64", 6.0, False, "µs")),
        Goal("echo-16k", "echo 16 KiB, MiB/s ≥ 0.60 × direct (tuned nginx 0.51)", ratio_goal("echo-16k", 0.60),
             floor_of("echo-16k", 0.60)),
        Goal("echo-1m", "echo 1 MiB, MiB/s ≥ 0.70 × direct (tuned nginx 0.57)", ratio_goal("echo-1m", 0.70),
             floor_of("echo-1m", 0.70)),
        Goal("p99-rate", "p99 at half nginx's 64 B peak ≤ 1.4 × direct's (nginx, HAProxy ≈ 2.0)", p99,
             floor_of("p99-rate", 1.4, False, "× direct's p99")),
        Goal("connect", "new sessions/s ≥ 0.60 × direct (HAProxy 0.57)", ratio_goal("connect", 0.60),
             floor_of("connect", 0.60)),
        Goal("idle", "RSS per idle session ≤ 4 KiB and below HAProxy's", idle),
        Goal("tls", f"the echo workloads over wss (64 B, 16 KiB, 1 MiB; TLS on the client leg) ≥ {TLS_GOAL} × nginx "
                    "with TLS (nginx-tls), each", tls),
    ]


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "B/session":
        return f"{value / 1024:.2f} KiB"
    if unit.startswith("µs p99"):
        return f"{value / 1000:.2f} ms"
    if unit == "µs":
        return f"{value:.2f} µs"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


@dataclass
class Group:
    """The plain rows or the wss rows of the tables: their targets, the one compared, and its references."""
    tls: bool
    targets: list[str]
    subject: str  # wsgate's target
    references: list[str]  # a "subject/reference" ratio column each
    proxies: list[str]  # the candidates of "best proxy"
    baseline: str  # what the ratio table divides by


# pipe is a column and a reference (wsgate/pipe: what wsgate costs beyond the floor), never a "best proxy" candidate.
PLAIN = Group(False, PLAIN_TARGETS, "wsgate", ["direct", FLOOR, "nginx", "nginx-64k"], ["nginx", "nginx-64k", "haproxy"],
              "direct")
# No direct TLS baseline (the echo backend does not speak TLS): the wss rows are compared with nginx-tls.
TLS = Group(True, TLS_TARGETS, "wsgate-tls", ["nginx-tls", "haproxy-tls"], ["nginx-tls", "haproxy-tls"], "nginx-tls")


def best_proxy(row: Row, proxies: list[str] = PLAIN.proxies) -> str | None:
    candidates = [(t, row.medians.get(t)) for t in proxies if row.medians.get(t) is not None]
    if not candidates:
        return None
    pick = max if row.higher_is_better else min
    return pick(candidates, key=lambda c: c[1])[0]


def table_lines(rows: list[Row], markdown: bool, group: Group = PLAIN) -> list[str]:
    """The medians of the group's rows, with wsgate's ratios to each reference and to the best other proxy."""
    targets, subject = group.targets, group.subject
    header = ["workload", "unit", *targets, *[f"{subject}/{r}" for r in group.references], f"{subject}/best proxy"]
    body = []
    for row in (r for r in rows if r.tls == group.tls):
        cells = [row.title, row.unit.replace(" p99", "")]
        for t in targets:
            value = row.medians.get(t)
            text = fmt_value(value, row.unit) if t in row.medians else ""
            ok, runs = row.counts.get(t, (0, 0))
            if t in row.medians and ok < runs:
                text += f" ({ok}/{runs} ok)"
            cells.append(text)
        best = best_proxy(row, group.proxies)
        cells += [fmt_ratio(row.ratio(subject, r)) if r in row.medians else "" for r in group.references]
        cells.append(f"{fmt_ratio(row.ratio(subject, best))} ({best})" if best else "–")
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "| --- | --- | " + " | ".join("---:" for _ in header[2:]) + " |"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return lines
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    out = []
    for n, cells in enumerate([header, *body]):
        out.append("  ".join(str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i]) for i, c in enumerate(cells)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def ratio_table_lines(rows: list[Row], markdown: bool, group: Group = PLAIN) -> list[str]:
    """Every target's median relative to the group's baseline (lower-is-better rows too: × its value): direct for
    the plain rows, as in the issue; nginx-tls for the wss rows, which have no direct baseline."""
    targets = [t for t in group.targets if t != group.baseline]
    header = [f"workload (× {group.baseline})", *targets]
    body = []
    for row in (r for r in rows if r.tls == group.tls):
        if row.key == "idle":
            continue  # per-session memory has no meaningful ratio to the echo server's
        body.append([row.title, *[fmt_ratio(row.ratio(t, group.baseline)) if t in row.medians else "" for t in targets]])
    if markdown:
        return ["| " + " | ".join(header) + " |", "| --- | " + " | ".join("---:" for _ in targets) + " |",
                *["| " + " | ".join(b) + " |" for b in body]]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in [header, *body]]


def spread_table_lines(rows: list[Row], group: Group = PLAIN) -> list[str]:
    targets = group.targets
    lines = ["| workload | " + " | ".join(targets) + " |", "| --- | " + " | ".join("---:" for _ in targets) + " |"]
    for row in (r for r in rows if r.tls == group.tls):
        cells = []
        for t in targets:
            values = row.values.get(t) or []
            cells.append(f"{fmt_value(min(values), row.unit)} – {fmt_value(max(values), row.unit)}" if values else "")
        lines.append(f"| {row.title} | " + " | ".join(cells) + " |")
    return lines


# --------------------------------------------------------------------------------------------------------------
# The SVG plot (hand-written: no plotting library)
# --------------------------------------------------------------------------------------------------------------

COLOURS = {"direct": "#7f7f7f", FLOOR: "#e0e0e0", "wsgate": "#d62728", "nginx": "#1f77b4", "nginx-64k": "#6baed6",
           "haproxy": "#2ca02c", "wsgate-tls": "#a50f15", "nginx-tls": "#08519c", "haproxy-tls": "#006d2c"}
THROUGHPUT_GOALS = {"echo-64": 0.60, "echo-16k": 0.60, "echo-1m": 0.70, "connect": 0.60}
P99_GOAL = 1.4  # × direct's p99
LABELS = {FLOOR: "pipe (floor)"}  # legend text where it is not the target's name


def paint(target: str) -> str:
    """A bar's fill: the target's colour; pipe, a reference rather than a proxy, light grey with a dashed outline."""
    if target == FLOOR:
        return f'fill="{COLOURS[target]}" stroke="#666" stroke-width="1" stroke-dasharray="3,2"'
    return f'fill="{COLOURS[target]}"'


def nice_axis(maximum: float, ticks: int = 5) -> tuple[float, float]:
    """A round step and the axis top (a multiple of it) covering `maximum` in about `ticks` steps."""
    raw = max(maximum, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    top = step * math.ceil(maximum / step - 1e-9)
    return step, max(top, step)


def _axis(out: list[str], x: float, y: float, w: float, h: float, step: float, top: float, fmt: str) -> None:
    v = 0.0
    while v <= top + step / 2:
        yy = y + h - h * v / top
        out.append(f'<line x1="{x}" y1="{yy:.1f}" x2="{x + w}" y2="{yy:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#555">{v:{fmt}}</text>')
        v += step
    out.append(f'<line x1="{x}" y1="{y + h}" x2="{x + w}" y2="{y + h}" stroke="#333"/>')
    out.append(f'<line x1="{x}" y1="{y}" x2="{x}" y2="{y + h}" stroke="#333"/>')


def svg_plot(rows: list[Row], subtitle: str) -> str:
    width, height = 1440, 470
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">'
           'wsgate vs direct, nginx and HAProxy, over ws and wss, with pipe (a bare TCP relay) as the floor (medians)'
           '</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">{html.escape(subtitle)}</text>']
    by_key = {r.key: r for r in rows}

    # Left panel: throughput relative to direct, grouped by workload, with wsgate's goal marked.
    px, py, pw, ph = 60, 80, 620, 300
    groups = [("echo-64", "echo 64 B"), ("echo-16k", "echo 16 KiB"), ("echo-1m", "echo 1 MiB"), ("connect", "handshakes")]
    bars = [FLOOR, "wsgate", "nginx", "nginx-64k", "haproxy"]
    ratios = [by_key[k].ratio(t, "direct") for k, _ in groups if k in by_key for t in bars]
    step, top = nice_axis(max([1.0, *[r for r in ratios if r is not None]]) * 1.1)
    out.append(f'<text x="{px + pw / 2}" y="{py - 14}" text-anchor="middle" font-weight="bold">'
               'throughput, × direct (higher is better)</text>')
    _axis(out, px, py, pw, ph, step, top, ".2f")
    y1 = py + ph - ph * 1.0 / top
    out.append(f'<line x1="{px}" y1="{y1:.1f}" x2="{px + pw}" y2="{y1:.1f}" stroke="#444" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{px + pw - 4}" y="{y1 - 4:.1f}" text-anchor="end" fill="#444">direct = 1</text>')
    _ratio_bars(out, (px, py, pw, ph), groups, bars, by_key, "direct", top, 12, "",
                lambda key, target: THROUGHPUT_GOALS.get(key) if target == "wsgate" else None)

    # Right panel: p99 at the fixed rate, per target, with wsgate's goal (1.4 × direct's p99) marked.
    qx, qy, qw, qh = 770, 80, 270, 300
    row = by_key.get("p99-rate")
    targets = ["direct", FLOOR, "wsgate", "nginx", "haproxy"]
    values = [(t, row.medians.get(t) / 1000 if row and row.medians.get(t) is not None else None) for t in targets]
    direct_p99 = values[0][1]
    step, top = nice_axis(max([v for _, v in values if v is not None] + [(direct_p99 or 0) * P99_GOAL, 0.001]) * 1.1)
    out.append(f'<text x="{qx + qw / 2 - 20}" y="{qy - 14}" text-anchor="middle" font-weight="bold">'
               'p99 at a fixed rate, ms (lower is better)</text>')
    _axis(out, qx, qy, qw, qh, step, top, ".2f" if step < 1 else ".0f")
    bw = qw / len(targets)
    for i, (target, value) in enumerate(values):
        x = qx + i * bw + 6
        out.append(f'<text x="{x + (bw - 12) / 2:.1f}" y="{qy + qh + 18}" text-anchor="middle">{target}</text>')
        if value is None:
            continue
        h = qh * value / top
        out.append(f'<rect x="{x:.1f}" y="{qy + qh - h:.1f}" width="{bw - 12:.1f}" height="{h:.1f}" {paint(target)}>'
                   f'<title>{target}: p99 {value:.3f} ms</title></rect>')
        out.append(f'<text x="{x + (bw - 12) / 2:.1f}" y="{qy + qh - h - 4:.1f}" text-anchor="middle" font-size="10">{value:.2f}</text>')
        if target == "wsgate" and direct_p99:
            gy = qy + qh - qh * direct_p99 * P99_GOAL / top
            out.append(f'<line x1="{x - 3:.1f}" y1="{gy:.1f}" x2="{x + bw - 9:.1f}" y2="{gy:.1f}" stroke="black" stroke-width="2">'
                       f'<title>wsgate goal: {P99_GOAL} × direct\'s p99</title></line>')

    # Third panel: the wss echo workloads relative to nginx-tls (no direct TLS baseline), wsgate-tls's goal marked.
    tx, ty, tw, th = 1120, 80, 250, 300
    tls_groups = [(key, label) for key, label in TLS_GOAL_ROWS]
    tls_bars = ["wsgate-tls", "haproxy-tls"]
    ratios = [by_key[k].ratio(t, "nginx-tls") for k, _ in tls_groups if k in by_key for t in tls_bars]
    step, top = nice_axis(max([TLS_GOAL, 1.0, *[r for r in ratios if r is not None]]) * 1.1)
    out.append(f'<text x="{tx + tw / 2}" y="{ty - 14}" text-anchor="middle" font-weight="bold">'
               'wss echo, × nginx-tls (dashed), higher is better</text>')
    _axis(out, tx, ty, tw, th, step, top, ".2f")
    y1 = ty + th - th * 1.0 / top
    # The label of this line is in the title: inside the panel the bars would cover it.
    out.append(f'<line x1="{tx}" y1="{y1:.1f}" x2="{tx + tw}" y2="{y1:.1f}" stroke="{COLOURS["nginx-tls"]}" stroke-dasharray="5,4">'
               '<title>nginx-tls = 1</title></line>')
    _ratio_bars(out, (tx, ty, tw, th), tls_groups, tls_bars, by_key, "nginx-tls", top, 8, "wss echo ",
                lambda _key, target: TLS_GOAL if target == "wsgate-tls" else None)

    # Legend.
    lx, ly = 60, height - 30
    for target in ["direct", *bars, *TLS_TARGETS]:
        label = LABELS.get(target, target)
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" {paint(target)}/>')
        out.append(f'<text x="{lx + 17}" y="{ly}">{html.escape(label)}</text>')
        lx += 30 + 8 * len(label)
    out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 16}" y2="{ly - 4}" stroke="black" stroke-width="2"/>')
    out.append(f'<text x="{lx + 21}" y="{ly}">wsgate\'s goal (issue 3)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _ratio_bars(out, box, groups, bars, by_key, reference, top, margin, prefix, goal) -> None:
    """Bars of each target's median ÷ `reference`'s, a group per workload, in the panel `box`; `goal(key,
    target)` is the ratio to mark over a bar, if any."""
    x0, y0, w, h = box
    gw = w / len(groups)
    bw = (gw - 2 * margin) / len(bars)
    for gi, (key, label) in enumerate(groups):
        gx = x0 + gi * gw + margin
        row = by_key.get(key)
        for bi, target in enumerate(bars):
            ratio = row.ratio(target, reference) if row else None
            x = gx + bi * bw
            if ratio is None:
                continue
            bh = h * ratio / top
            out.append(f'<rect x="{x:.1f}" y="{y0 + h - bh:.1f}" width="{bw - 3:.1f}" height="{bh:.1f}" {paint(target)}>'
                       f'<title>{prefix}{html.escape(label)}, {target}: {ratio:.2f} × {reference}</title></rect>')
            out.append(f'<text x="{x + (bw - 3) / 2:.1f}" y="{y0 + h - bh - 4:.1f}" text-anchor="middle" font-size="10">{ratio:.2f}</text>')
            target_goal = goal(key, target)
            if target_goal is not None:
                gy = y0 + h - h * target_goal / top
                out.append(f'<line x1="{x - 3:.1f}" y1="{gy:.1f}" x2="{x + bw:.1f}" y2="{gy:.1f}" stroke="black" stroke-width="2">'
                           f'<title>{target} goal: {target_goal:.2f} × {reference}</title></line>')
        out.append(f'<text x="{gx + (gw - 2 * margin) / 2:.1f}" y="{y0 + h + 18}" text-anchor="middle">{html.escape(label)}</text>')


# --------------------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------------------

ANALYSIS_START = "<!-- analysis: written by hand; bench-compare.py keeps this section when it rewrites the file -->"
ANALYSIS_END = "<!-- end of analysis -->"
ANALYSIS_PLACEHOLDER = "_To be written by hand: where wsgate spends its time, and why each goal is met or not._"


def machine_info(lab: Lab, bench: str) -> dict[str, str]:
    def first_line(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            text = (p.stdout + p.stderr).strip()
            return text.splitlines()[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1048576:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    osname = "?"
    try:
        osname = re.search(r'PRETTY_NAME="([^"]*)"', Path("/etc/os-release").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "os": osname,
        "open files": f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]} (soft, raised to the hard limit for every process)",
        "rustc": first_line(["rustc", "--version"]),
        "wsgate": first_line([lab.wsgate, "--version"]) + " (built from "
                  + first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"]) + ")",
        "wsgate-bench": first_line([bench, "--version"]),
        "nginx": first_line([lab.nginx, "-v"]),
        "haproxy": first_line([lab.haproxy, "-v"]).split(" - ")[0],
        "openssl": first_line([which("openssl") or "openssl", "version"]) + " (the command; nginx and HAProxy use the "
                   "system libssl, wsgate and wsgate-bench rustls with ring)",
        "python": platform.python_version(),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]) + " (1, 5, 15 min)",
    }


def kept_analysis(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError:
        return ANALYSIS_PLACEHOLDER
    if ANALYSIS_START in text and ANALYSIS_END in text:
        body = text.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0].strip()
        return body or ANALYSIS_PLACEHOLDER
    return ANALYSIS_PLACEHOLDER


def write_report(path: Path, svg_path: Path, *, rows, goal_results, info, settings: Settings, workloads, lab: Lab,
                 invocation: str, rounds: int, quick: bool, started: str, minutes: float, rate_note: str,
                 failures: int, results_path: Path) -> None:
    svg_rel = os.path.relpath(svg_path, path.parent)
    targets = TARGET_ORDER
    lines = ["# Benchmarks", ""]
    if quick:
        lines += ["> **Quick smoke run** (`--quick`): seconds-long runs and few sessions. It checks that the tooling works; "
                  "its figures are not representative.", ""]
    lines += [
        f"wsgate against a direct connection, nginx and HAProxy, over ws and over wss (TLS on the client leg), with a "
        f"bare TCP relay (pipe) as the floor of any proxy, all on loopback on one machine, measured by "
        f"`scripts/bench-compare.py` on {started} ({rounds} interleaved round{'s' if rounds != 1 else ''}, "
        f"{minutes:.1f} minutes). Each figure is the median over the rounds; the ratios are medians divided by medians."
        + (f" **{failures} run(s) failed** and are left out of the medians (see `{os.path.relpath(results_path, REPO)}`)."
           if failures else ""),
        "",
        f"![throughput relative to direct, p99 at a fixed rate, and wss echo relative to nginx-tls]({svg_rel})",
        "",
        "## Goals (issue 3)",
        "",
        "| goal | wsgate | verdict | floor (pipe) |",
        "| --- | ---: | --- | --- |",
    ]
    for goal, (met, text), floor in goal_results:
        verdict = "not measured" if met is None else ("**MET**" if met else "**NOT MET**")
        lines.append(f"| {goal.text} | {text} | {verdict} | {floor or '–'} |")
    lines += ["", "The floor is the goal's own measure taken through pipe, a relay that only copies bytes (see the "
              "targets below): the kernel's price of a second TCP connection and of two more socket reads and writes "
              "per round trip, which every proxy pays. A goal beyond it is out of reach of any proxy on this machine "
              "(for large messages: of any that copies through user space, as pipe does; pipe does not splice). When "
              "a proxy did better than pipe on the row, the relay was no floor in this run, and the column says so "
              "instead. The floor is information beside the verdict; it never changes it."]
    lines += ["", "## Medians", ""]
    if any(not r.tls for r in rows):
        lines += table_lines(rows, markdown=True)
        lines += ["", "Every target relative to direct (for latency, CPU: × direct's value; as in the issue's table):", ""]
        lines += ratio_table_lines(rows, markdown=True)
        if rounds > 1:
            lines += ["", "Spread over the rounds (lowest – highest run):", ""]
            lines += spread_table_lines(rows)
    if any(r.tls for r in rows):
        lines += ["", "### Over wss (TLS on the client leg)", "",
                  "The same echo workloads through the TLS targets. There is no direct TLS baseline (the echo backend "
                  "speaks plain ws only), so these rows are compared with nginx-tls, not with direct; they are not "
                  "comparable column by column with the ws rows above.", ""]
        lines += table_lines(rows, markdown=True, group=TLS)
        lines += ["", "Relative to nginx-tls (for CPU: × nginx-tls's value):", ""]
        lines += ratio_table_lines(rows, markdown=True, group=TLS)
        if rounds > 1:
            lines += ["", "Spread over the rounds (lowest – highest run):", ""]
            lines += spread_table_lines(rows, group=TLS)
    lines += [
        "",
        "- **direct**: the client talks to the echo backend itself. **nginx**: defaults (`proxy_buffer_size` 4k/8k); "
        "**nginx-64k**: `proxy_buffer_size 64k`, run for the large-message workloads only. "
        "\"best proxy\" is the stronger of nginx, nginx-64k and HAProxy on that row (on a wss row: of nginx-tls and "
        "haproxy-tls); pipe never counts as one.",
        "- **pipe** is the floor of a proxy, not a proxy: `wsgate-bench pipe`, a TCP relay that opens a connection to "
        "the echo backend per client connection and copies bytes both ways (tokio `copy_bidirectional`, 256 KiB per "
        "direction, 2 threads each with its own runtime and `SO_REUSEPORT` socket), parsing neither HTTP nor "
        "WebSocket frames, so the handshake and every frame pass through untouched. What it costs over direct is "
        "what any proxy pays the kernel here (a second TCP connection per session, two more socket reads and writes "
        "per round trip); what wsgate costs beyond it (the wsgate/pipe column) is wsgate's own work. It runs in the "
        "ws workloads only: not over wss, and not for idle memory, where its 512 KiB of buffers per session would "
        "make a floor meaningless.",
        "- **wsgate-tls**, **nginx-tls** and **haproxy-tls** terminate TLS and proxy plain ws to the same echo backend: "
        "a second wsgate process with `server.ssl` enabled; nginx's third server block, `listen ... ssl` with the "
        "nginx-64k tuning (the strong nginx); HAProxy's second frontend, `bind ... ssl crt ... alpn http/1.1`. They "
        "share one ECDSA P-256 certificate for localhost / 127.0.0.1, signed by a test CA made with openssl at the "
        "start of the run. wsgate-bench connects with `--ca` (rustls with ring: TLS 1.3 or 1.2, ALPN http/1.1, chain "
        "and host name checked) and makes a full handshake per session (no resumption). There is no direct TLS "
        "baseline; the TLS goal compares wsgate-tls with nginx-tls.",
        f"- The fixed-rate row runs at {rate_note}.",
        "- CPU per round trip: utime + stime of the proxy's processes (nginx: master and workers) from `/proc/PID/stat`, "
        "before and after the 64 B closed-loop run (ws and wss alike), divided by the round trips it made (warm-up included, since the "
        "counters run through it); in the direct column, the echo backend's own CPU per round trip; in the pipe "
        "column, the relay's process, read the same way as the proxies'.",
        "- RSS per idle session: each idle run starts the measured process afresh, reads its RSS (nginx: the sum of "
        "its workers; HAProxy and wsgate: the one process; direct: the echo backend) before the sessions open, samples "
        "it every 100 ms while they are held, and divides the peak's growth by the number of sessions.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {k} | {html.escape(v)} |" for k, v in info.items()],
        "",
        "The load generator, the proxy under test and the echo backend share these cores. Every proxy gets the same "
        "worker count, 2: nginx `worker_processes 2`, HAProxy `nbthread 2`, wsgate's runtime (one worker thread per "
        "core), the echo backend `--threads 2`, and the pipe relay `--threads 2`. All listen on 127.0.0.1 on ports "
        "chosen at run time. Per-process "
        "open files: the soft limit is raised to the hard limit; one session through a proxy takes 2 descriptors, so "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,} caps one proxy process at about "
        f"{(resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100) // 2:,} sessions "
        "(more would need several client processes and a higher hard limit).",
        "",
        "## Commands",
        "",
        "```sh",
        invocation,
        "```",
        "",
        "Per run (`URL` is the target's, `PID` the measured process; every run is bounded in time):",
        "",
        "```sh",
    ]
    seen = set()
    for w in workloads:
        ca = "target/bench/run/tls/ca.pem" if all(t in TLS_TARGETS for t in w.targets) else None
        shape = shlex.join(["wsgate-bench", *command_for(w, settings, "URL", 0 if w.kind == "idle" else None, ca)]
                           ).replace(" --pid 0", " [--pid PID]")
        if shape not in seen:
            seen.add(shape)
            lines.append(shape)
    lines += [
        "```",
        "",
        "Targets and their URLs: direct `ws://127.0.0.1:ECHO/`; pipe `ws://127.0.0.1:PORT/` (the same path as "
        "direct: it relays bytes, there is no route); wsgate `ws://127.0.0.1:PORT/echo/ws/v1/`; nginx, "
        "nginx-64k and HAProxy `ws://127.0.0.1:PORT/`; wsgate-tls `wss://127.0.0.1:PORT/echo/ws/v1/`; nginx-tls and "
        "haproxy-tls `wss://127.0.0.1:PORT/` (the certificate names 127.0.0.1 as an IP SAN). Rounds are interleaved: "
        "within a round each workload runs against every target of its row in turn (" + " → ".join(targets)
        + "), so drift hits all alike. The raw JSON line of every run is kept in `target/bench/results.jsonl`.",
        "",
        "<details><summary>Configurations used</summary>",
        "",
    ]
    placeholders = {lab.echo_port: "ECHO_PORT", lab.ports.get("nginx"): "NGINX_PORT",
                    lab.ports.get("nginx-64k"): "NGINX_64K_PORT", lab.ports.get("nginx-tls"): "NGINX_TLS_PORT",
                    lab.ports.get("haproxy"): "HAPROXY_PORT", lab.ports.get("haproxy-tls"): "HAPROXY_TLS_PORT"}
    lines += ["**echo backend and pipe** (command lines)", "", "```",
              shlex.join(["wsgate-bench", "echo-server", "--address", "127.0.0.1", "--port", "0", "--threads", "2"]),
              shlex.join(["wsgate-bench", *lab.pipe_argv()[1:]]).replace(f":{lab.echo_port}", ":ECHO_PORT"),
              "```", ""]
    for name in ("wsgate", "wsgate-tls", "nginx", "haproxy"):
        text = lab.configs.get(name, "").replace(str(lab.dir), "target/bench/run").rstrip()
        for port, placeholder in placeholders.items():
            if port:
                text = re.sub(rf"(?<![0-9]){port}(?![0-9])", placeholder, text)
        lines += [f"**{name}**", "", "```", text, "```", ""]
    lines += [
        "wsgate runs with `RUST_LOG=warn` (no log line per session; nginx has `access_log off`, HAProxy no logging). "
        "The test PKI is made with: `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256` (the CA, "
        "`basicConstraints=critical,CA:TRUE`), `openssl req -new` and `openssl x509 -req` with `subjectAltName = "
        "DNS:localhost, IP:127.0.0.1` (the server certificate), `openssl pkcs8 -topk8 -nocrypt` (its key, PKCS#8); "
        "HAProxy's `crt` is the certificate followed by the key.",
        "",
        "</details>",
        "",
        "## Analysis",
        "",
        ANALYSIS_START,
        "",
        kept_analysis(path),
        "",
        ANALYSIS_END,
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    svg_path.write_text(svg_plot(rows, f"{info['cpu']}, {info['cores']} cores; {rounds} round(s); {started}"
                                 + (" — quick smoke, not representative" if quick else "")))


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark wsgate against a direct connection, nginx and HAProxy on loopback, in interleaved rounds, "
                    "with a bare TCP relay (pipe) as the floor of any proxy; the echo workloads also over wss "
                    "(wsgate-tls, nginx-tls, haproxy-tls: TLS on the client leg).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Full run: writes BENCHMARKS.md and doc/bench.svg at the repository root. --quick: writes "
               "target/bench/BENCHMARKS.md and target/bench/bench.svg instead (unless --report is given).")
    ap.add_argument("--quick", action="store_true", help="a smoke: 1 s runs, fewer sessions (not representative)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--idle-sessions", type=int, default=None, help="sessions held by the idle workload (default 9000; --quick 200)")
    ap.add_argument("--duration", default=None, help="duration of each echo/connect run (default 10s; --quick 1s)")
    ap.add_argument("--warmup", default=None, help="warm-up of each echo run (default 1s; --quick 500ms)")
    ap.add_argument("--hold", default=None, help="how long idle sessions are held (default 5s; --quick 1s)")
    ap.add_argument("--workloads", default=None,
                    help="comma-separated subset of echo-64,echo-16k,echo-1m,echo-64-tls,echo-16k-tls,echo-1m-tls,"
                         "connect,p99-rate,idle (p99-rate needs echo-64)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release -p wsgate -p wsgate-bench")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install nginx, haproxy or openssl")
    ap.add_argument("--report", type=Path, default=None, help="where to write the Markdown report")
    ap.add_argument("--svg", type=Path, default=None, help="where to write the SVG plot")
    ap.add_argument("--bench-bin", default=os.environ.get("WSGATE_BENCH"), help=argparse.SUPPRESS)  # development
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args


def seconds(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m)?\s*", text)
    if not match:
        raise SystemExit(f"bench-compare: cannot read duration {text!r} (write 500ms, 10s, 1m)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def main(argv=None) -> int:
    args = parse_args(argv)
    invocation = shlex.join(["scripts/bench-compare.py", *(sys.argv[1:] if argv is None else argv)])
    quick = args.quick
    settings = Settings(
        duration=args.duration or ("1s" if quick else "10s"),
        warmup=args.warmup or ("500ms" if quick else "1s"),
        hold=args.hold or ("1s" if quick else "5s"),
        duration_s=0, warmup_s=0, hold_s=0)
    settings.duration_s, settings.warmup_s, settings.hold_s = (seconds(settings.duration), seconds(settings.warmup),
                                                               seconds(settings.hold))
    idle_sessions = args.idle_sessions if args.idle_sessions is not None else (200 if quick else 9000)
    workloads = make_workloads(quick, idle_sessions)
    if args.workloads:
        wanted = {w.strip() for w in args.workloads.split(",") if w.strip()}
        unknown = wanted - {w.key for w in workloads}
        if unknown:
            die(f"unknown workload(s): {', '.join(sorted(unknown))}")
        if "p99-rate" in wanted:
            wanted.add("echo-64")
        workloads = [w for w in workloads if w.key in wanted]

    bench_dir = REPO / "target" / "bench"
    run_dir = bench_dir / "run"
    log_dir = bench_dir / "logs"
    bench_dir.mkdir(parents=True, exist_ok=True)
    global _pid_file
    stop_leftovers(bench_dir / "pids.json")
    _pid_file = bench_dir / "pids.json"
    for d in (run_dir, log_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # Every process started from here inherits a soft open-file limit raised to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    ensure_proxies(args.no_install)
    if not args.no_build:
        log("==> cargo build --release -p wsgate -p wsgate-bench")
        subprocess.run(["cargo", "build", "--release", "-p", "wsgate", "-p", "wsgate-bench"], cwd=REPO, check=True)
    bench = args.bench_bin or str(REPO / "target" / "release" / "wsgate-bench")
    wsgate = str(REPO / "target" / "release" / "wsgate")
    for binary in (bench, wsgate):
        if not os.access(binary, os.X_OK):
            die(f"{binary} not found: build it (cargo build --release -p wsgate -p wsgate-bench) or drop --no-build")

    lab = Lab(run_dir, bench, wsgate)
    log("==> starting the echo backend, pipe (the floor), wsgate (ws and wss), nginx and HAProxy on 127.0.0.1")
    lab.start_all()
    log("    echo backend " + lab.url("direct") + ", " + ", ".join(f"{t} {lab.url(t)}" for t in TARGET_ORDER[1:]))
    log(f"    test CA {lab.certs.ca}")
    info = machine_info(lab, bench)
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    if load1 > 0.5:
        log(f"bench-compare: warning: load average {load1:.2f} before the first run; something else is using the "
            "CPU and will disturb the figures")
    for k, v in info.items():
        log(f"    {k}: {v}")

    results_path = bench_dir / "results.jsonl"
    if results_path.exists():
        results_path.replace(bench_dir / "results.previous.jsonl")
    started_at = dt.datetime.now(dt.timezone.utc)
    started = started_at.strftime("%Y-%m-%d %H:%M UTC")
    records: list[dict] = []
    total_runs = sum(len(w.targets) for w in workloads) * args.rounds
    per_run = {"echo": settings.duration_s + settings.warmup_s + 0.5, "connect": settings.duration_s + 0.3,
               "idle": settings.hold_s + idle_sessions / 2000 + 1.5}
    estimate = sum(per_run[w.kind] * len(w.targets) for w in workloads) * args.rounds
    log(f"==> {total_runs} runs, {args.rounds} interleaved round(s), about {estimate / 60:.1f} minutes")
    rate_note = "no fixed rate (not run)"
    done = 0
    with open(results_path, "w") as results:
        results.write(json.dumps({"meta": {"started": started, "invocation": invocation, "machine": info,
                                           "urls": {t: lab.url(t) for t in TARGET_ORDER}}}) + "\n")
        for w in workloads:
            if w.key == "p99-rate":
                peak_from = "nginx"
                peaks = [metric_of(r, "msgs_per_s") for r in records
                         if r["workload"] == "echo-64" and r["target"] == "nginx" and r["ok"]]
                peaks = [p for p in peaks if p]
                if not peaks:
                    peak_from = "the slowest target"
                    peaks = [min(metric_of(r, "msgs_per_s") or 0 for r in records if r["workload"] == "echo-64" and r["ok"])] \
                        if any(r["workload"] == "echo-64" and r["ok"] for r in records) else []
                if not peaks or not peaks[0]:
                    log("bench-compare: no 64 B peak measured; skipping the fixed-rate workload")
                    continue
                w.rate = statistics.median(peaks) / 2
                rate_note = (f"{w.rate:,.0f} msgs/s in total over {w.sessions} sessions, half the median 64 B closed-loop "
                             f"rate of {peak_from} in this run")
                w.title = f"p99, 64 B ×{w.sessions} at {w.rate / 1000:.1f}k msgs/s"
            for rnd in range(1, args.rounds + 1):
                for target in w.targets:
                    done += 1
                    record = one_run(lab, bench, w, settings, target, rnd, log_dir)
                    records.append(record)
                    results.write(json.dumps(record) + "\n")
                    results.flush()
                    log(f"[{done:3}/{total_runs}] {w.key:12} r{rnd} {target:11} {progress_text(w, record)} ({record['elapsed_s']:.1f} s)")
    minutes = (dt.datetime.now(dt.timezone.utc) - started_at).total_seconds() / 60
    stop_all()

    rows = summarise(records, workloads)
    goal_results = [(g, g.check(rows), g.floor(rows) if g.floor else None) for g in goals()]
    print()
    print(f"Medians over {args.rounds} round(s) ({'quick smoke, not representative' if quick else 'full run'}):")
    for group, title in ((PLAIN, "Relative to direct:"),
                         (TLS, "Relative to nginx-tls (over wss; there is no direct TLS baseline):")):
        if not any(r.tls == group.tls for r in rows):
            continue
        print()
        for line in table_lines(rows, markdown=False, group=group):
            print(line)
        print()
        print(title)
        for line in ratio_table_lines(rows, markdown=False, group=group):
            print(line)
    print()
    print("Goals:")
    for goal, (met, text), floor in goal_results:
        verdict = "not measured" if met is None else ("MET" if met else "NOT MET")
        print(f"  {verdict:12} {goal.text}: {text}" + (f" (floor: {floor})" if floor else ""))

    failures = sum(1 for r in records if not r["ok"])
    report = args.report or (bench_dir / "BENCHMARKS.md" if quick else REPO / "BENCHMARKS.md")
    svg = args.svg or (bench_dir / "bench.svg" if quick else REPO / "doc" / "bench.svg")
    write_report(report, svg, rows=rows, goal_results=goal_results, info=info, settings=settings, workloads=workloads,
                 lab=lab, invocation=invocation, rounds=args.rounds, quick=quick, started=started, minutes=minutes,
                 rate_note=rate_note, failures=failures, results_path=results_path)
    print()
    print(f"Report: {os.path.relpath(report, Path.cwd())}, plot: {os.path.relpath(svg, Path.cwd())}, "
          f"raw results: {os.path.relpath(results_path, Path.cwd())}")
    if failures:
        print(f"{failures} of {len(records)} runs failed (see target/bench/logs/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupted:
        log(f"bench-compare: interrupted ({interrupted}); stopping every process started")
        stop_all()
        sys.exit(130)
