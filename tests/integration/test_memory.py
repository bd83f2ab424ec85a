"""Memory per session does not grow with message size: the relay forwards frames through fixed buffers."""

from __future__ import annotations

import os

from support import connect, demo_routes, gateway_config, recv, run, service, start_gateway, HOST

MESSAGE = 64 << 20  # 64 MiB in one frame


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_a_64_mib_message_passes_without_the_gateway_holding_it(log_dir, demo):
    config = gateway_config([service("discoverableclient", [(HOST, demo.port)], demo_routes())], maxFrameSize="64MiB")
    gateway = start_gateway(log_dir, "memory", config)
    payload = os.urandom(MESSAGE)

    async def round_trip(data: bytes) -> bytes:
        async with connect(gateway, "/discoverableclient/ws/v1/uppercase") as ws:
            await ws.send(data)
            return await recv(ws, timeout=120)

    # A small session first, so the baseline includes the runtime's and hyper's own allocations.
    assert run(round_trip(b"warm up")) == b"WARM UP"
    before = peak_rss_kib(gateway.child.pid)
    echoed = run(round_trip(payload))
    after = peak_rss_kib(gateway.child.pid)

    print(f"gateway peak RSS {before} KiB -> {after} KiB")
    assert len(echoed) == MESSAGE
    assert echoed == payload.upper()
    # A relay that buffered the message would need 64 MiB or more; two 16 KiB buffers need nothing like 8 MiB.
    assert after - before < 8 * 1024, f"gateway peak RSS grew by {after - before} KiB for a 64 MiB message"
    gateway.child.stop()
