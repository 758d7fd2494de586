"""Will Messages: published when the connection ends abnormally (socket
closed without DISCONNECT, keep alive timeout, protocol error), never after a
normal DISCONNECT; Will QoS and Will Retain; 5.0 DISCONNECT 0x04, Will Delay
Interval and Will Properties — MQTT 3.1.1 §3.1.2.5-3.1.2.7, §3.14 and
MQTT 5.0 §3.1.2.5-3.1.2.7, §3.1.3.2, §3.14."""

import time

import pytest

import mqttraw as m
from conformance.util import V5, payloads, quiet, recv_n, wait_for


def will(topic="will/t", payload=b"gone", qos=1, retain=False, props=None):
    return {"topic": topic, "payload": payload, "qos": qos, "retain": retain, "props": props}


def watcher(broker, version, filt="will/#", qos=2, cid="will-watch"):
    w = broker.connect(version, cid)
    w.subscribe([(filt, qos)])
    return w


def test_will_published_when_socket_closed(broker, version):
    """3.1.1 §3.1.2.5 [MQTT-3.1.2-8]; 5.0 §3.1.2.5 [MQTT-3.1.2-8]: a Will is
    published when the Network Connection closes without a DISCONNECT."""
    w = watcher(broker, version)
    c = broker.client(version)
    c.connect("willer", will=will())
    c.ping()
    c.close()
    got = recv_n(w, 1, timeout=5)
    assert (got[0].topic, got[0].payload) == ("will/t", b"gone"), got
    assert quiet(w) == [], "Will published more than once"


def test_will_published_on_reset(broker, version):
    """3.1.1 §3.1.2.5 (an I/O error or network failure) [MQTT-3.1.2-8]; 5.0
    [MQTT-3.1.2-8]: an aborted connection (TCP RST) publishes the Will."""
    w = watcher(broker, version)
    c = broker.client(version)
    c.connect("willrst", will=will(payload=b"rst"))
    c.ping()
    c.abort()
    assert payloads(recv_n(w, 1, timeout=5)) == [b"rst"]


@pytest.mark.deadline(20)
def test_will_published_on_keepalive_timeout(broker, version):
    """3.1.1 §3.1.2.5 (the Client fails to communicate within the Keep Alive
    time), [MQTT-3.1.2-24]; 5.0 [MQTT-3.1.2-8], [MQTT-3.1.2-22]: a Client that
    goes silent past 1.5 x Keep Alive is disconnected and its Will published.
    (Waits up to 8 s because mosquitto's keep alive check is coarse; the
    tight timing is checked in test_connect.)"""
    w = watcher(broker, version)
    c = broker.client(version)
    c.connect("willka", keepalive=1, will=will(payload=b"timeout"))
    assert payloads(recv_n(w, 1, timeout=8)) == [b"timeout"]
    assert c.wait_closed(2)


def test_will_published_on_protocol_error(broker, version):
    """3.1.1 §3.1.2.5 (the Server closes the connection because of a protocol
    error), [MQTT-3.1.2-8]; 5.0 §3.1.2.5 [MQTT-3.1.2-8]: a connection the Server
    closes for a malformed packet publishes its Will."""
    w = watcher(broker, version)
    c = broker.client(version)
    c.connect("willerr", will=will(payload=b"broken"))
    c.send(m.publish("bad/qos3", b"x", flags=0x06, pid=1, version=version))  # QoS 3
    assert c.wait_closed(3)
    assert payloads(recv_n(w, 1, timeout=5)) == [b"broken"]


def test_no_will_after_disconnect(broker, version):
    """3.1.1 §3.1.2.5 [MQTT-3.1.2-10], §3.14.4 [MQTT-3.14.4-3]; 5.0
    [MQTT-3.1.2-10], [MQTT-3.14.4-3]: on DISCONNECT (5.0: Reason Code 0x00)
    the Server discards the Will without publishing it."""
    w = watcher(broker, version)
    c = broker.client(version)
    c.connect("willdisc", will=will(payload=b"must-not"))
    c.ping()
    c.disconnect(reason=0x00 if version == V5 else None)
    # A second client closing abruptly is the marker: its Will arrives, the
    # first one must not have come before it.
    d = broker.client(version)
    d.connect("willmark", will=will(payload=b"marker"))
    d.ping()
    d.close()
    got = recv_n(w, 1, timeout=5) + quiet(w)
    assert payloads(got) == [b"marker"], "Will published after a normal DISCONNECT: %r" % got


def test_will_qos_and_no_retain(broker, version):
    """3.1.1 §3.1.2.6-3.1.2.7 [MQTT-3.1.2-14], [MQTT-3.1.2-16]; 5.0
    [MQTT-3.1.2-12], [MQTT-3.1.2-14]: the Will goes out at its Will QoS
    (capped by the subscription) and, with Will Retain 0, as a non-retained
    message: a later subscriber gets nothing."""
    w = watcher(broker, version, qos=2)
    c = broker.client(version)
    c.connect("willq2", will=will(topic="will/q2", payload=b"q2", qos=2))
    c.ping()
    c.close()
    got = recv_n(w, 1, timeout=5)
    assert (got[0].qos, got[0].retain) == (2, False), got
    late = broker.connect(version, "late")
    late.subscribe([("will/#", 2)])
    assert quiet(late) == [], "a Will Retain 0 Will was retained"


def test_will_retain(broker, version):
    """3.1.1 §3.1.2.7 [MQTT-3.1.2-17]; 5.0 §3.1.2.7 [MQTT-3.1.2-15]: with Will
    Retain 1 the Will is published as a retained message: a subscriber that
    comes later gets it with RETAIN 1."""
    c = broker.client(version)
    c.connect("willret", will=will(topic="will/ret", payload=b"last", qos=1, retain=True))
    c.ping()
    c.close()
    late = broker.client(version)
    late.connect("late")

    # The Will is published once the server sees the connection end, which
    # may be after a first SUBSCRIBE of ours: that subscription then also gets
    # it live (RETAIN 0, [MQTT-3.3.1-9]). What must arrive is the retained copy
    # on a SUBSCRIBE made after it was published: look for that one.
    def poll():
        late.subscribe([("will/ret", 1)])
        return [p for p in late.publishes_until_ping() if p.retain]
    got = wait_for(poll, timeout=5, interval=0.1)
    assert got and got[0].payload == b"last" and got[0].retain, got


def test_will_topic_with_wildcard_refused(broker, version):
    """3.1.1 §3.1.3.2 / §4.7.1 [MQTT-4.7.1-1]; 5.0 §3.1.3.3, [MQTT-3.3.2-2]:
    the Will Topic is the Topic Name of the message to be published, so it
    MUST NOT contain wildcards: the CONNECT is refused (3.1.1: close without a
    CONNACK is accepted as well as a non-zero return code; 5.0: close, with a
    CONNACK >= 0x80 if any)."""
    c = broker.client(version)
    c.send(m.connect("willwild", version, will=will(topic="will/+/x")))
    assert c.wait_closed(3), "CONNECT with a wildcard Will Topic was not refused"
    got = c.drain()
    assert all(p.type == m.CONNACK and p.reason != 0 for p in got), got


def test_v5_disconnect_with_will_message(broker):
    """5.0 §3.14.2.1 (Reason Code 0x04 Disconnect with Will Message),
    [MQTT-3.1.2-8], [MQTT-3.1.2-10]: a DISCONNECT with reason 0x04 does not
    discard the Will: the Server publishes it."""
    w = watcher(broker, V5)
    c = broker.client(V5)
    c.connect("will04", will=will(payload=b"asked-for"))
    c.ping()
    c.disconnect(reason=m.RC_DISCONNECT_WITH_WILL)
    assert payloads(recv_n(w, 1, timeout=5)) == [b"asked-for"]


def test_v5_will_properties_passed_through(broker):
    """5.0 §3.1.3.2 [MQTT-3.1.3-10], §3.3.2.3 [MQTT-3.3.2-4], [MQTT-3.3.2-15],
    [MQTT-3.3.2-16], [MQTT-3.3.2-17], [MQTT-3.3.2-18], [MQTT-3.3.2-20]: the
    Will Properties (Payload Format Indicator, Content Type, Response Topic,
    Correlation Data, User Properties in order) are sent with the Will."""
    props = {"payload_format_indicator": 1, "content_type": "application/json", "response_topic": "will/reply",
             "correlation_data": b"\xffcorr", "user_property": [("k", "1"), ("z", "2"), ("k", "3")]}
    w = watcher(broker, V5)
    c = broker.client(V5)
    c.connect("willprops", will=will(payload=b'{"gone":1}', props=props))
    c.ping()
    c.close()
    got = recv_n(w, 1, timeout=5)[0]
    for k, v in props.items():
        assert got.props.get(k) == v, "Will property %s: sent %r, got %r" % (k, v, got.props.get(k))


def test_v5_will_message_expiry_sent(broker):
    """5.0 §3.1.3.2.4, §3.3.2.3.3 [MQTT-3.3.2-6]: a Will with a Message Expiry
    Interval is forwarded with the interval minus its time in the Server
    (here, at most the original 100 s and more than 90)."""
    w = watcher(broker, V5)
    c = broker.client(V5)
    c.connect("willexp", will=will(payload=b"exp", props={"message_expiry_interval": 100}))
    c.ping()
    c.close()
    got = recv_n(w, 1, timeout=5)[0]
    assert 90 < got.props.get("message_expiry_interval", 0) <= 100, got


@pytest.mark.deadline(20)
def test_v5_will_delay_interval(broker):
    """5.0 §3.1.3.2.2 [MQTT-3.1.2-8]: with a Will Delay Interval of 2 s (and a
    longer Session Expiry) the Will is published only once the delay has
    passed after the connection closed."""
    w = watcher(broker, V5)
    c = broker.client(V5)
    c.connect("willdelay", clean=True, props={"session_expiry_interval": 30},
              will=will(payload=b"late", props={"will_delay_interval": 2}))
    c.ping()
    c.close()
    t0 = time.monotonic()
    early = w.messages_for(1.2)
    assert early == [], "Will published before its delay: %r" % early
    got = recv_n(w, 1, timeout=6)
    elapsed = time.monotonic() - t0
    assert payloads(got) == [b"late"]
    assert elapsed >= 1.5, "Will after %.2f s, delay is 2 s" % elapsed


@pytest.mark.deadline(20)
def test_v5_will_not_sent_if_reconnected_within_delay(broker):
    """5.0 §3.1.3.2.2 [MQTT-3.1.3-9]: if a new Network Connection to the
    session is made before the Will Delay Interval passes, the Server MUST NOT
    send the Will."""
    w = watcher(broker, V5)
    c = broker.client(V5)
    c.connect("willback", clean=True, props={"session_expiry_interval": 30},
              will=will(payload=b"must-not", props={"will_delay_interval": 2}))
    c.ping()
    c.close()
    back = broker.client(V5)
    ack = back.connect("willback", clean=False, props={"session_expiry_interval": 30})
    assert ack.session_present == 1
    got = w.messages_for(3.0)
    assert got == [], "Will published although the client came back within the delay: %r" % got
    back.disconnect()


@pytest.mark.deadline(20)
@pytest.mark.mosquitto_bug("with Session Expiry 0 it still waits out the Will Delay Interval (3 s delay: Will "
                           "after ~4 s) instead of publishing when the session ends with the connection")
def test_v5_will_sent_when_session_ends_before_delay(broker):
    """5.0 §3.1.2.5 [MQTT-3.1.2-8], §3.1.3.2.2: the Will is published when the
    Will Delay Interval passes OR the Session ends, whichever is first: with
    Session Expiry 0 the session ends with the connection, so a Will with a
    60 s delay is published at once."""
    w = watcher(broker, V5)
    c = broker.client(V5)
    c.connect("willsess", clean=True, props={"session_expiry_interval": 0},
              will=will(payload=b"session-ended", props={"will_delay_interval": 60}))
    c.ping()
    c.close()
    assert payloads(recv_n(w, 1, timeout=3)) == [b"session-ended"]
