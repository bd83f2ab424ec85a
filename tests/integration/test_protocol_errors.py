"""Bad input after the upgrade, sent by a hand-written client over a raw socket."""

from __future__ import annotations

import os
import uuid

from support import RawWs, ascii_upper, connect, encode_frame, expect_close, recv, run, wait_until

UPPERCASE = "/discoverableclient/ws/v1/uppercase"


def assert_gateway_still_works(gateway):
    async def scenario():
        async with connect(gateway, UPPERCASE) as ws:
            await ws.send("still works")
            assert await recv(ws) == "STILL WORKS"

    run(scenario())


def open_raw(gateway, path=UPPERCASE) -> RawWs:
    raw = RawWs(gateway.port, path)
    # Prove the session relays before breaking it.
    raw.send(encode_frame(0x1, b"warm up"))
    frame = raw.read_frame()
    expected = b"WARM UP" if path.endswith("/uppercase") else b"warm up"
    assert frame is not None and frame[1:3] == (0x1, expected), frame
    return raw


def test_garbage_bytes_give_1002(gateway):
    raw = open_raw(gateway)
    raw.send(b"GARBAGE\r\n\r\n")
    code, _ = raw.read_close()
    raw.close()
    assert code == 1002
    assert_gateway_still_works(gateway)


def test_unmasked_client_frame_gives_1002(gateway):
    raw = open_raw(gateway)
    raw.send(encode_frame(0x1, b"not masked", mask=False))
    code, reason = raw.read_close()
    raw.close()
    assert (code, reason) == (1002, "Client frames must be masked")
    assert_gateway_still_works(gateway)


def test_unmasked_client_frame_service_gets_1001(gateway, scripted):
    token = uuid.uuid4().hex
    raw = open_raw(gateway, f"/scripted/ws/v1/echo/{token}")
    raw.send(encode_frame(0x1, b"not masked", mask=False))
    code, _ = raw.read_close()
    raw.close()
    assert code == 1002
    rec = scripted.wait_record(token).wait_ended()
    assert rec.close_rcvd is not None and rec.close_rcvd[0] == 1001


def test_frame_over_max_frame_size_gives_1009(gateway_small_frames):
    raw = open_raw(gateway_small_frames)
    sender = raw.send_in_background(encode_frame(0x2, os.urandom(100 * 1024)))
    code, reason = raw.read_close()
    raw.close()
    sender.join(10)
    assert (code, reason) == (1009, "Frame too large")
    assert_gateway_still_works(gateway_small_frames)


def test_frame_at_max_frame_size_passes(gateway_small_frames):
    payload = os.urandom(64 * 1024)

    async def scenario():
        async with connect(gateway_small_frames, UPPERCASE) as ws:
            await ws.send(payload)
            assert await recv(ws) == ascii_upper(payload)

    run(scenario())


def test_service_frame_over_max_frame_size(gateway_small_frames, scripted):
    # The service is the sender: it gets 1009, the client gets 1001.
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(gateway_small_frames, f"/scripted/ws/v1/echo/{token}") as ws:
            await ws.send("send 102400")
            code, _ = await expect_close(ws)
            assert code == 1001

    run(scenario())
    rec = scripted.wait_record(token).wait_ended()
    assert rec.close_rcvd == (1009, "Frame too large")


def test_masked_service_frame_gives_client_1011_and_service_1002(gateway, raw_upstream):
    token = uuid.uuid4().hex

    async def scenario():
        async with connect(gateway, f"/rawsvc/ws/v1/{token}") as ws:
            return await expect_close(ws)

    assert run(scenario()) == (1011, "WebSocket service protocol error")
    closes = wait_until(lambda: [v for k, v in raw_upstream.closes.items() if token in k], 10,
                        "the raw service to see the end of its session")
    assert closes[0] != "eof", "the service got no close frame"
    assert closes[0][0] == 1002, closes


def test_client_frame_over_max_frame_size_service_gets_1001(gateway_small_frames, scripted):
    token = uuid.uuid4().hex
    raw = open_raw(gateway_small_frames, f"/scripted/ws/v1/echo/{token}")
    sender = raw.send_in_background(encode_frame(0x2, os.urandom(100 * 1024)))
    code, reason = raw.read_close()
    raw.close()
    sender.join(10)
    assert (code, reason) == (1009, "Frame too large")
    rec = scripted.wait_record(token).wait_ended()
    assert rec.close_rcvd is not None and rec.close_rcvd[0] == 1001


def test_no_second_close_after_the_service_closed(gateway):
    """After the service's close has reached the client, a client violation must not add a second close."""
    raw = open_raw(gateway)
    raw.send(encode_frame(0x1, b"bye"))
    assert raw.read_frame()[1:3] == (0x1, b"BYE")
    assert raw.read_close() == (1000, "")
    raw.send(encode_frame(0x1, b"late and not masked", mask=False))
    frames = []
    while (frame := raw.read_frame()) is not None:
        frames.append(frame)
    raw.close()
    assert frames == [], f"frames after the close: {frames}"
    assert_gateway_still_works(gateway)
