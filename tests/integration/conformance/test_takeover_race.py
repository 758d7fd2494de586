"""Takeover races: a client that ends its session and reconnects at once.

5.0 §3.14.2.2.2: a Session Expiry Interval of 0 on DISCONNECT ends the
session with the connection, so the next CONNECT with Clean Start 0 must get
Session Present 0 [MQTT-3.2.2-2]. With several I/O workers the new CONNECT
may be read (by another worker, or by the same one later in its round)
before the old connection's DISCONNECT, although that DISCONNECT was sent
first and is already in the server's socket buffer; a server that decides
on the session right then resumes it (Session Present 1). vigil makes the
new CONNECT wait until the old connection's received input is handled.

To make the window wide on any machine, the "burst" variant pipelines QoS 0
PUBLISHes in front of the DISCONNECT, so the old connection's worker is
busy with them while the reconnect is read. Measured before the fix, of 200
rounds: "plain" 1 to 33 had Session Present 1, "burst" 17 to 39 (and 60-70%
with bursts larger than the socket buffers)."""

import pytest

import mqttraw as m
from conformance.util import V5, connect_session

ROUNDS = 200
# ~86 KB: small enough to be all in the server's socket buffer by the time
# the reconnect is read (what is still in the client's send queue then was
# not received yet, and no server can wait for it), large enough that the
# old connection's worker needs a while to reach the DISCONNECT.
BURST = b"".join(m.publish("race/burst", b"b" * 200, qos=0, version=V5) for _ in range(400))


@pytest.mark.vigil_only("needs --workers")
@pytest.mark.deadline(120)
@pytest.mark.parametrize("burst", [False, True], ids=["plain", "burst"])
def test_disconnect_expiry_zero_then_immediate_reconnect(broker_factory, burst):
    """DISCONNECT (Session Expiry 0) + immediate reconnect, ROUNDS times, on
    a server with 2 workers: Session Present is 0 every time."""
    b = broker_factory(extra_args=("--workers", "2"))
    c, _ = connect_session(b, V5, "race", expiry=300)
    c.subscribe([("race/t", 1)])
    wrong = []
    for i in range(ROUNDS):
        data = (BURST if burst else b"") + m.disconnect(0, {"session_expiry_interval": 0}, V5)
        try:
            c.send(data)
        except m.Closed:
            pass
        c.close()
        c, ack = connect_session(b, V5, "race", expiry=300)
        if ack.session_present != 0:
            wrong.append(i)
        c.subscribe([("race/t", 1)])
    assert not wrong, "Session Present 1 after DISCONNECT with Session Expiry 0 in rounds %s of %d" % (wrong, ROUNDS)
    c.disconnect(0, {"session_expiry_interval": 0})


@pytest.mark.vigil_only("needs --workers")
@pytest.mark.deadline(120)
def test_takeover_without_disconnect_resumes(broker_factory):
    """5.0 §3.1.4 [MQTT-3.1.4-3], §3.2.2.1.1: a CONNECT for a client id that is
    still connected closes the old connection (DISCONNECT 0x8E) and, with
    Clean Start 0, resumes its session (Session Present 1), whichever worker
    each connection is on; a QoS 1 message queued for the session while the
    new connection waited for the old one is delivered on the new one."""
    b = broker_factory(extra_args=("--workers", "2"))
    c, _ = connect_session(b, V5, "race-take", expiry=300)
    c.subscribe([("race/take", 1)])
    pub = b.connect(V5, "race-take-pub")
    for i in range(50):
        pub.publish("race/take", b"m%d" % i, qos=1)
        n, ack = connect_session(b, V5, "race-take", expiry=300)
        assert ack.session_present == 1, (i, ack)
        d = c.expect_closed(3)
        assert d is not None and d.reason == m.RC_SESSION_TAKEN_OVER, (i, d)
        got = n.recv_publish(3)
        assert got.payload == b"m%d" % i, (i, got)
        c = n
    c.disconnect(0, {"session_expiry_interval": 0})
