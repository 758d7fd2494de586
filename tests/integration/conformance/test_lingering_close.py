"""Lingering close: a client that is still writing when the server ends its
connection must still read the server's last word.

MQTT 5.0 §4.13 and §3.2.2.2 have the Server send a DISCONNECT with a Reason
Code (or a CONNACK with a refusing one) before it closes; the reason is only
useful if the client can read it. If the server closed its socket at once, a
client still sending (pipelined PUBLISHes past the Receive Maximum, packets
pipelined behind a CONNECT) has its next segments answered with a TCP reset
and its next write fails with EPIPE/ECONNRESET: clients (and the external
conformance suite this was found with) give up on the connection there and
never read the DISCONNECT/CONNACK waiting in their receive buffer. vigil
sends the packet, shuts down its sending side and reads and discards input
for a while (--linger-ms, default 2 s) before closing.

These clients model that: they write through mqttraw.Client.send, which
marks the connection closed on a failed write (as a client library would),
and only then read. Against a server that closes at once (vigil with
--linger-ms 0, the behaviour before lingering) the writes fail within the
first few packets and the tests fail; mosquitto 2.0.11 behaves the same way
on these paths, hence vigil_only."""

import socket
import time

import pytest

import mqttraw as m
from conformance.util import V311, V5, wait_for

TELEMETRY = "iot/wearable/data"
KEEP_WRITING_S = 0.5


def keep_writing(c, version, seconds=KEEP_WRITING_S, first_pid=100):
    """Sends QoS 1 PUBLISHes (never reading) for `seconds`; returns how many
    went out. A failed write (reset, broken pipe) fails the test."""
    sent = 0
    pid = first_pid
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            c.send(m.publish("linger/still-writing", b"p" * 100, qos=1, pid=pid, version=version))
        except m.Closed as e:
            pytest.fail("write %d after the server's final packet failed (%s): the server closed instead of "
                        "lingering" % (sent + 1, e))
        sent += 1
        pid = pid % 60000 + 1
        time.sleep(0.001)
    return sent


def stats(broker):
    return broker.proc.stats()


@pytest.mark.vigil_only("mosquitto 2.0.11 closes at once: the still-writing client gets a reset")
def test_receive_maximum_exceeded_while_client_keeps_writing(broker_factory):
    """5.0 §3.3.4 [MQTT-3.3.4-7], §4.13: a client that exceeds the Server's
    Receive Maximum (2) with QoS 1 PUBLISHes whose PUBACKs wait for the
    durable write (--fsync always) gets DISCONNECT 0x93. It goes on writing
    for half a second without reading — every write must succeed — and then
    reads: the DISCONNECT 0x93 is there, then the end of the stream. While
    the closed connection lingers its client id is free again: a new
    connection with it is accepted at once."""
    b = broker_factory(max_inflight=2, extra_args=("--fsync", "always"))
    c = b.client(V5)
    c.connect("linger-rmax")
    assert c.connack.props.get("receive_maximum") == 2
    # One write, so that the server reads all three before any PUBACK can
    # be released by the stream's commit: the third exceeds the maximum.
    c.send(b"".join(m.publish(TELEMETRY, b'{"deviceId":"linger"}', qos=1, pid=p, version=V5) for p in (1, 2, 3)))
    sent = keep_writing(c, V5)
    assert sent > 10, sent

    st = stats(b)
    assert st["connections.lingering"] >= 1, st
    assert st["disconnect.receive_maximum"] >= 1, st
    again = b.client(V5)
    ack = again.connect("linger-rmax", timeout=3)
    assert ack.reason == 0 and ack.session_present == 0, ack

    d = c.expect(m.DISCONNECT, timeout=5)
    assert d.reason == m.RC_RECEIVE_MAX_EXCEEDED, d
    assert c.wait_closed(3), "no end of stream after the DISCONNECT"
    c.close()
    again.ping()
    again.disconnect()
    # The lingering socket ends once its client has closed.
    assert wait_for(lambda: stats(b)["connections.lingering"] == 0, 5), stats(b)
    assert stats(b)["linger.closes"] >= 1


@pytest.mark.vigil_only("mosquitto 2.0.11 closes at once: the still-writing client gets a reset")
@pytest.mark.parametrize("case", ["bad-protocol-level", "empty-id-persistent-v311", "auth-method-v5"])
def test_refused_connect_with_pipelined_packets(broker, case):
    """3.1.1 §3.2.2.3 [MQTT-3.2.2-5], 5.0 §3.2.2.2 [MQTT-3.2.2-7]: a refused
    CONNECT gets a CONNACK with the refusal, then the close. The client
    pipelined SUBSCRIBE, PUBLISH and PINGREQ behind its CONNECT and keeps
    writing for half a second; every write must succeed, and then it reads
    exactly that CONNACK and the end of the stream (the pipelined packets
    are not processed: no SUBACK, no PINGRESP [MQTT-3.1.4-5])."""
    if case == "bad-protocol-level":
        version, connect, code = V311, m.connect("linger-level", V311, level=6), m.CONNACK_BAD_PROTOCOL_LEVEL
    elif case == "empty-id-persistent-v311":
        version, connect, code = V311, m.connect("", V311, clean=False), m.CONNACK_ID_REJECTED
    else:
        version, code = V5, m.RC_BAD_AUTH_METHOD
        connect = m.connect("linger-auth", V5, props={"authentication_method": "SCRAM-SHA-1"})
    c = broker.client(version)
    c.send(connect + m.subscribe(1, [("linger/#", 1)], version) +
           m.publish("linger/piped", b"x", qos=1, pid=2, version=version) + m.pingreq())
    keep_writing(c, version)
    got = []
    try:
        while True:
            got.append(c.read_packet(5))
    except m.Closed:
        pass
    except socket.timeout:
        pytest.fail("no end of stream after the refusal; got %r" % got)
    assert len(got) == 1 and got[0].type == m.CONNACK, got
    assert got[0].reason == code and got[0].session_present == 0, got[0]
