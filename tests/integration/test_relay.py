"""Relaying sessions: echo, sizes, fragments, ping, close codes, service death."""

from __future__ import annotations

import asyncio
import os
import random
import string
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from support import ascii_upper, connect, expect_close, gateway_config, recv, run, service, start_demo, start_gateway
import support

UPPERCASE = "/discoverableclient/ws/v1/uppercase"


def test_uppercase_echo_and_bye(gateway):
    async def scenario():
        async with connect(gateway, UPPERCASE) as ws:
            await ws.send("hello world")
            assert await recv(ws) == "HELLO WORLD"
            await ws.send("Mixed Case 123")
            assert await recv(ws) == "MIXED CASE 123"
            await ws.send("bye")
            assert await recv(ws) == "BYE"
            code, reason = await expect_close(ws)
            assert code == 1000
            await ws.wait_closed()

    run(scenario())


def test_service_id_is_case_insensitive(gateway):
    async def scenario():
        async with connect(gateway, "/DISCOVERABLECLIENT/ws/v1/uppercase") as ws:
            await ws.send("case")
            assert await recv(ws) == "CASE"

    run(scenario())


def lower_text(n: int) -> str:
    rnd = random.Random(n)
    return "".join(rnd.choices(string.ascii_lowercase + " 0123456789", k=n))


SIZES = [0, 125, 126, 64 * 1024, 16 * 1024 * 1024]
SIZE_IDS = ["0B", "125B", "126B", "64KiB", "16MiB"]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_text_message_sizes(gateway, size):
    payload = lower_text(size)

    async def scenario():
        async with connect(gateway, UPPERCASE) as ws:
            await ws.send(payload)
            answer = await recv(ws, 30)
            assert isinstance(answer, str)
            assert len(answer) == size
            assert answer == payload.upper()

    run(scenario())


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_binary_message_sizes(gateway, size):
    payload = os.urandom(size)

    async def scenario():
        async with connect(gateway, UPPERCASE) as ws:
            await ws.send(payload)
            answer = await recv(ws, 30)
            assert isinstance(answer, bytes)
            assert len(answer) == size
            assert answer == ascii_upper(payload)

    run(scenario())


async def as_fragments(fragments):
    """What `websockets` sends as one fragmented message: one frame per item."""
    for fragment in fragments:
        yield fragment


def test_fragmented_text_message_arrives_whole(gateway):
    fragments = ["fragmented ", "messages ", "are ", "", "relayed ", lower_text(70_000)]

    async def scenario():
        async with connect(gateway, UPPERCASE) as ws:
            await ws.send(as_fragments(fragments))
            assert await recv(ws, 20) == "".join(fragments).upper()
            # The session goes on normally after it.
            await ws.send("next")
            assert await recv(ws) == "NEXT"

    run(scenario())


def test_fragmented_binary_message_arrives_whole(gateway):
    fragments = [os.urandom(n) for n in (1, 125, 126, 65_536, 3)]

    async def scenario():
        async with connect(gateway, UPPERCASE) as ws:
            await ws.send(as_fragments(fragments))
            assert await recv(ws, 20) == ascii_upper(b"".join(fragments))

    run(scenario())


def test_ping_gets_pong(gateway):
    async def scenario():
        async with connect(gateway, UPPERCASE) as ws:
            for data in (b"", b"ping-data", os.urandom(125)):
                pong = await ws.ping(data)
                latency = await asyncio.wait_for(pong, 10)
                assert latency >= 0
            await ws.send("still there")
            assert await recv(ws) == "STILL THERE"

    run(scenario())


def test_service_close_4001_reaches_client_unchanged(gateway, scripted):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(gateway, f"/scripted/ws/v1/close4001/{token}") as ws:
            code, reason = await expect_close(ws)
            assert (code, reason) == (4001, "custom reason")

    run(scenario())
    rec = scripted.wait_record(token).wait_ended()
    assert rec.close_sent == (4001, "custom reason")


@pytest.mark.parametrize(
    "code,reason",
    [(4001, "custom reason"), (4999, "ünïcödé ✓"), (1000, ""), (1001, "going"), (3000, "registered")],
)
def test_service_close_codes_reach_client_unchanged(gateway, scripted, code, reason):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(gateway, f"/scripted/ws/v1/echo/{token}") as ws:
            await ws.send("ping me back")
            assert await recv(ws) == "ping me back"
            await ws.send(f"close {code} {reason}")
            assert await expect_close(ws) == (code, reason)

    run(scenario())


def test_service_close_without_code_stays_without_code(gateway, scripted):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(gateway, f"/scripted/ws/v1/echo/{token}") as ws:
            await ws.send("closenocode")
            assert await expect_close(ws) == (None, "")

    run(scenario())


@pytest.mark.parametrize("code,reason", [(4001, "custom reason"), (4999, "ünïcödé ✓"), (1000, "done")])
def test_client_close_reaches_service_unchanged(gateway, scripted, code, reason):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(gateway, f"/scripted/ws/v1/echo/{token}") as ws:
            await ws.send("hello")
            assert await recv(ws) == "hello"
            await ws.close(code, reason)
            # The close handshake completes: the service's answer comes back.
            assert ws.protocol.close_rcvd is not None, "no close frame came back to the client"
            assert ws.protocol.close_rcvd.code == code

    run(scenario())
    rec = scripted.wait_record(token).wait_ended()
    assert rec.close_rcvd == (code, reason)


def test_client_close_without_code_reaches_service_without_code(gateway, scripted):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(gateway, f"/scripted/ws/v1/echo/{token}") as ws:
            await ws.send("hello")
            assert await recv(ws) == "hello"
            async with ws.send_context():
                ws.protocol.send_close()
            await asyncio.wait_for(ws.wait_closed(), 10)

    run(scenario())
    rec = scripted.wait_record(token).wait_ended()
    assert rec.close_rcvd == (None, "")


def test_client_vanishing_gives_service_1001(gateway, scripted):
    token = uuid.uuid4().hex
    raw = support.RawWs(gateway.port, f"/scripted/ws/v1/echo/{token}")
    raw.send(support.encode_frame(0x1, b"hello"))
    frame = raw.read_frame()
    assert frame is not None and frame[1:3] == (0x1, b"hello")
    raw.close()  # TCP close without a close frame
    rec = scripted.wait_record(token).wait_ended()
    assert rec.close_rcvd == (1001, "Client went away")


def test_killed_service_gives_client_1011(log_dir):
    demo = start_demo(log_dir, "doomed")
    gw = start_gateway(
        log_dir,
        "kill",
        gateway_config([service("discoverableclient", [(support.HOST, demo.port)], support.demo_routes())]),
    )

    async def scenario():
        async with connect(gw, UPPERCASE) as ws:
            await ws.send("before")
            assert await recv(ws) == "BEFORE"
            demo.child.kill()  # SIGKILL: the service vanishes without a close frame
            code, reason = await expect_close(ws, 20)
            assert code == 1011
            assert reason == "WebSocket service connection lost"

    try:
        run(scenario())
    finally:
        gw.child.stop()


def test_concurrent_sessions_do_not_mix(gateway):
    async def one(i: int):
        async with connect(gateway, UPPERCASE) as ws:
            for j in range(20):
                msg = f"session {i} message {j} " + "x" * (i * 37)
                await ws.send(msg)
                assert await recv(ws) == msg.upper()

    async def scenario():
        await asyncio.gather(*(one(i) for i in range(25)))

    run(scenario())
