"""Lingering close over WebSocket (see conformance/test_lingering_close.py
for TCP): after a refusing CONNACK the server sends it in a binary frame,
then a Close frame, shuts down its side and discards what the client still
sends, so a client that goes on writing reads both instead of a reset."""

import struct
import time

import pytest

from test_interop import RawWs
from vigiltest import connect_packet, publish_packet


def test_websocket_refused_connect_while_client_keeps_writing(vigil_factory):
    """A refused CONNECT (protocol level 6) over WebSocket, the client
    writing PUBLISH frames for half a second after it: every write succeeds,
    then the client reads the CONNACK 0x01, the Close frame and the end."""
    v = vigil_factory()
    w = RawWs(v)
    w.send(w.frame(0x2, connect_packet("ws-linger")[:8] + b"\x06" + connect_packet("ws-linger")[9:]))  # level 6
    end = time.monotonic() + 0.5
    sent = 0
    while time.monotonic() < end:
        try:
            w.send(w.frame(0x2, publish_packet("ws/linger", b"p" * 100, 0)))
        except OSError as e:
            pytest.fail("write %d after the refusal failed (%s): the server closed instead of lingering" % (sent + 1, e))
        sent += 1
        time.sleep(0.001)
    assert w.mqtt_bytes(4) == b"\x20\x02\x00\x01", "CONNACK 0x01 (unacceptable protocol level)"
    assert w.closed(3), "no end of stream after the refusal"
    assert w.close_frames, "RFC 6455 §5.5.1: the server's Close frame is missing"
    code = struct.unpack(">H", w.close_frames[0][:2])[0] if len(w.close_frames[0]) >= 2 else None
    assert code in (None, 1000), w.close_frames
    w.close()
