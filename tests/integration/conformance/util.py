"""Assertions shared by the conformance tests (what "the server refused",
"the server closed", "nothing more arrives" mean in each protocol version)."""

import socket
import time

import mqttraw as m

V311, V5 = m.V311, m.V5


def vname(version):
    return "3.1.1" if version == V311 else "5.0"


def assert_refused_connect(c, version, v311_code=None, v5_codes=None, timeout=3.0):
    """After a bad CONNECT: the server must close the connection.

    3.1.1: with v311_code, a CONNACK carrying exactly that return code must come
    first [MQTT-3.2.2-5]; without, no CONNACK at all may be sent [MQTT-3.1.4-1].
    5.0: a CONNACK is optional (the spec says MAY for each refusal); if one is
    sent its Reason Code must be >= 0x80 [MQTT-3.2.2-7] and, when v5_codes is
    given, one of them; Session Present must be 0 [MQTT-3.2.2-6]. Nothing
    other than that CONNACK may arrive (no DISCONNECT before a successful
    CONNACK [MQTT-3.14.0-1]). Returns the CONNACK or None."""
    assert c.wait_closed(timeout), "server did not close the connection within %.1fs (got %r)" % (
        timeout, c.pending)
    got = c.drain()
    if version == V311:
        if v311_code is None:
            assert got == [], "expected the connection closed without a CONNACK, got %r" % got
            return None
        assert len(got) == 1 and got[0].type == m.CONNACK, "expected one CONNACK then close, got %r" % got
        assert got[0].reason == v311_code, "expected CONNACK return code 0x%02x, got %r" % (v311_code, got[0])
        assert got[0].session_present == 0, "Session Present must be 0 on a refusal [MQTT-3.2.2-4]"
        assert len(got[0].body) == 2, "3.1.1 CONNACK must be 2 bytes: %r" % got[0].body
        return got[0]
    if not got:
        return None
    assert len(got) == 1 and got[0].type == m.CONNACK, "expected at most a CONNACK before close, got %r" % got
    ack = got[0]
    assert ack.reason >= 0x80, "a refusing CONNACK must carry a reason >= 0x80, got %r" % ack
    if v5_codes is not None:
        assert ack.reason in v5_codes, "CONNACK reason 0x%02x not in %s" % (
            ack.reason, ["0x%02x" % x for x in v5_codes])
    assert ack.session_present == 0, "Session Present must be 0 with a non-zero reason [MQTT-3.2.2-6]"
    return ack


def assert_closed_for_error(c, version, v5_codes=None, timeout=3.0, allow_other=False):
    """After a protocol violation on an established connection: the server
    must close it. In 5.0 it may first send DISCONNECT; if it does, the
    Reason Code must be >= 0x80 and, with v5_codes, one of them
    [MQTT-4.13.1-1], [MQTT-3.14.2-1]. In 3.1.1 there is no DISCONNECT from
    a server. Returns the DISCONNECT or None."""
    assert c.wait_closed(timeout), "server did not close the connection within %.1fs (got %r)" % (
        timeout, c.pending)
    got = c.drain()
    discs = [p for p in got if p.type == m.DISCONNECT]
    if version == V311:
        assert not discs, "a 3.1.1 server never sends DISCONNECT: %r" % got
        return None
    if not allow_other:
        others = [p for p in got if p.type not in (m.DISCONNECT,)]
        assert not others, "unexpected packets before close: %r" % others
    if not discs:
        return None
    assert len(discs) == 1 and got[-1].type == m.DISCONNECT, "DISCONNECT must be the last packet: %r" % got
    d = discs[0]
    assert d.reason >= 0x80, "server DISCONNECT for an error must have reason >= 0x80: %r" % d
    if v5_codes is not None:
        assert d.reason in v5_codes, "DISCONNECT reason 0x%02x not in %s" % (d.reason, ["0x%02x" % x for x in v5_codes])
    assert "session_expiry_interval" not in d.props, "server DISCONNECT must not carry Session Expiry [MQTT-3.14.2-2]"
    return d


def assert_still_open(c, what="connection"):
    assert c.is_open(), "%s was closed, expected it to stay open (got %r)" % (what, c.pending)


def quiet(c, grace=0.2):
    """Everything (acknowledged PUBLISHes) that reaches c up to a PINGREQ
    barrier plus a short grace period: for assertions that something is
    NOT delivered. The grace covers brokers that route on another thread."""
    out = c.publishes_until_ping()
    out += c.messages_for(grace)
    return out


def payloads(pkts):
    return [p.payload for p in pkts]


def wait_for(pred, timeout=3.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def recv_n(c, n, timeout=5.0, ack=True):
    """Exactly n PUBLISHes (fails on timeout)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        try:
            out.append(c.recv_publish(max(0.001, deadline - time.monotonic()), ack))
        except socket.timeout:
            raise AssertionError("received %d of %d PUBLISHes: %r" % (len(out), n, out))
    return out


def session_props(version, expiry=300, extra=None):
    """CONNECT properties that make a 5.0 session outlive its connection
    (Session Expiry Interval); None for 3.1.1, where Clean Session 0 does it."""
    if version == V311:
        return None
    props = {"session_expiry_interval": expiry}
    if extra:
        props.update(extra)
    return props


def connect_session(broker, version, client_id, clean=False, expiry=300, props=None, **kw):
    """A connection whose session persists (3.1.1 Clean Session 0; 5.0 Clean
    Start 0 + Session Expiry Interval). Returns (client, CONNACK)."""
    c = broker.client(version)
    p = session_props(version, expiry, props)
    if version == V311 and props:
        raise ValueError("properties on a 3.1.1 connection")
    ack = c.connect(client_id, clean=clean, props=p, **kw)
    return c, ack
