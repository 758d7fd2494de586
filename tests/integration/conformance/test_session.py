"""Sessions: Clean Session 0 (3.1.1) / Clean Start 0 + Session Expiry (5.0)
keep subscriptions and queue QoS 1/2 messages while the client is away;
Session Present; Clean Session/Start 1 discards; and resumption across a
server restart (SIGTERM for every broker; SIGKILL for vigil only) —
MQTT 3.1.1 §3.1.2.4, §3.2.2.2, §4.1 and MQTT 5.0 §3.1.2.4, §3.1.2.11.2,
§3.2.2.1.1, §4.1."""

import pytest

import mqttraw as m
from conformance.util import V311, connect_session, payloads, quiet, recv_n


def test_session_present_flag(broker, version):
    """3.1.1 §3.2.2.2 [MQTT-3.2.2-1], [MQTT-3.2.2-2], [MQTT-3.2.2-3]; 5.0
    §3.2.2.1.1 [MQTT-3.2.2-2], [MQTT-3.2.2-3], [MQTT-3.1.2-6]: Session Present
    is 0 for a new session, 1 when a stored session is resumed, and 0 with
    Clean Session/Start 1 (which also discards the stored session)."""
    c, ack = connect_session(broker, version, "sp-client")
    assert ack.session_present == 0, ack
    c.disconnect()
    c, ack = connect_session(broker, version, "sp-client")
    assert ack.session_present == 1, ack
    c.disconnect()
    c, ack = connect_session(broker, version, "sp-client", clean=True)
    assert ack.session_present == 0, ack
    c.disconnect()
    # Clean Session 1 in 3.1.1 ends the session with the connection; in 5.0
    # Clean Start 1 discarded the old one (connect_session set a new expiry).
    c, ack = connect_session(broker, version, "sp-client")
    assert ack.session_present == (0 if version == V311 else 1), ack
    c.disconnect()


def test_subscriptions_and_qos12_messages_kept_while_offline(broker, version):
    """3.1.1 §3.1.2.4 [MQTT-3.1.2-4], [MQTT-3.1.2-5], §4.1 [MQTT-4.1.0-1];
    5.0 [MQTT-3.1.2-5], [MQTT-3.1.2-23], [MQTT-4.5.0-1]: while a client with a
    persistent session is disconnected, QoS 1 and QoS 2 messages matching its
    subscriptions are stored and delivered (at their QoS, in order) when it
    resumes the session; the subscriptions themselves keep working. QoS 0
    messages may or may not be kept (3.1.1 §4.1: "optionally")."""
    c, _ = connect_session(broker, version, "offline")
    assert c.subscribe([("off/q1", 1), ("off/q2", 2)]).reasons == [1, 2]
    c.disconnect()
    pub = broker.connect(version, "offline-pub")
    for i in range(3):
        pub.publish("off/q1", b"one-%d" % i, qos=1)
    pub.publish("off/q0", b"zero", qos=0)
    pub.publish("off/q2", b"two", qos=2)
    c, ack = connect_session(broker, version, "offline")
    assert ack.session_present == 1, ack
    got = [p for p in recv_n(c, 4) + quiet(c)]
    # Order is only guaranteed per topic and QoS (§4.6).
    assert [(p.payload, p.qos) for p in got if p.topic == "off/q1"] == \
        [(b"one-0", 1), (b"one-1", 1), (b"one-2", 1)], got
    assert [(p.payload, p.qos) for p in got if p.topic == "off/q2"] == [(b"two", 2)], got
    assert all(p.payload == b"zero" for p in got if p.topic == "off/q0"), got
    pub.publish("off/q1", b"live", qos=1)
    assert payloads(recv_n(c, 1)) == [b"live"], "the stored subscription stopped working"


def test_clean_start_discards_stored_session(broker, version):
    """3.1.1 §3.1.2.4 [MQTT-3.1.2-6]; 5.0 §3.1.2.4 [MQTT-3.1.2-4]: with Clean
    Session/Start 1 the Server discards the existing session: no queued
    messages are delivered and the old subscriptions are gone."""
    c, _ = connect_session(broker, version, "discard")
    c.subscribe([("disc/t", 1)])
    c.disconnect()
    pub = broker.connect(version, "discard-pub")
    pub.publish("disc/t", b"queued", qos=1)
    c, ack = connect_session(broker, version, "discard", clean=True)
    assert ack.session_present == 0
    assert quiet(c) == [], "messages of a discarded session were delivered"
    pub.publish("disc/t", b"after", qos=1)
    assert quiet(c) == [], "a subscription of a discarded session survived"


def test_clean_session_state_not_reused(broker, version):
    """3.1.1 §3.1.2.4 [MQTT-3.1.2-6]: a Clean Session 1 session lasts as long
    as the connection and its state MUST NOT be reused. 5.0 §3.1.2.11.2: with
    Session Expiry absent (0) the session ends when the connection closes."""
    c = broker.client(version)
    c.connect("ephemeral", clean=True)
    c.subscribe([("eph/t", 1)])
    c.disconnect()
    pub = broker.connect(version, "eph-pub")
    pub.publish("eph/t", b"nobody", qos=1)
    c, ack = connect_session(broker, version, "ephemeral")
    assert ack.session_present == 0, ack
    assert quiet(c) == []


def test_takeover_keeps_persistent_session(broker, version):
    """3.1.1 §3.1.4 [MQTT-3.1.4-2], [MQTT-3.1.2-4]; 5.0 [MQTT-3.1.4-3],
    [MQTT-3.1.2-5]: when a client connects with a ClientID already connected
    and Clean Session/Start 0, the old connection is closed and the new one
    resumes the session (Session Present 1, subscriptions intact)."""
    a, _ = connect_session(broker, version, "takeover-sess")
    a.subscribe([("tk/t", 1)])
    b, ack = connect_session(broker, version, "takeover-sess")
    assert ack.session_present == 1, ack
    assert a.wait_closed(3)
    broker.connect(version, "tk-pub").publish("tk/t", b"to-b", qos=1)
    assert payloads(recv_n(b, 1)) == [b"to-b"]


def test_queued_messages_delivered_in_order(broker, version):
    """3.1.1 §4.6 [MQTT-4.6.0-6]; 5.0 [MQTT-4.6.0-5]: messages queued for an
    offline session come out in the order they were published (30 QoS 1)."""
    c, _ = connect_session(broker, version, "qorder")
    c.subscribe([("qo/t", 1)])
    c.disconnect()
    pub = broker.connect(version, "qorder-pub")
    for i in range(30):
        pub.publish("qo/t", b"%02d" % i, qos=1)
    c, _ = connect_session(broker, version, "qorder")
    got = recv_n(c, 30)
    assert payloads(got) == [b"%02d" % i for i in range(30)], payloads(got)


# ---------------------------------------------------------------------------
# resumption across a server restart


def _offline_state(broker, version, cid):
    """A persistent session with two subscriptions, one delivered but
    unacknowledged QoS 1 message, and three more queued while offline."""
    c, _ = connect_session(broker, version, cid)
    c.subscribe([("rs/q1", 1), ("rs/q2", 2)])
    pub = broker.connect(version, cid + "-pub")
    pub.publish("rs/q1", b"inflight", qos=1)
    inflight = c.recv_publish(ack=False)
    c.close()
    pub.publish("rs/q1", b"queued-1", qos=1)
    pub.publish("rs/q2", b"queued-2", qos=2)
    pub.publish("rs/q1", b"queued-3", qos=1)
    pub.disconnect()
    return inflight


def _check_resumed(broker, version, cid, inflight):
    c, ack = connect_session(broker, version, cid)
    assert ack.session_present == 1, "session not resumed after the restart: %r" % ack
    got = recv_n(c, 4) + quiet(c)
    # Per topic and QoS the order is that of the original sends (§4.6): the
    # unacknowledged message (same id, DUP 1) comes before the queued ones.
    q1 = [p for p in got if p.topic == "rs/q1"]
    assert [(p.payload, p.qos) for p in q1] == [(b"inflight", 1), (b"queued-1", 1), (b"queued-3", 1)], got
    assert (q1[0].pid, q1[0].dup) == (inflight.pid, True), \
        "the unacknowledged message must be re-sent with its id and DUP 1: %r" % got
    assert [(p.payload, p.qos) for p in got if p.topic == "rs/q2"] == [(b"queued-2", 2)], got
    pub = broker.connect(version, cid + "-pub2")
    pub.publish("rs/q2", b"live", qos=2)
    assert payloads(recv_n(c, 1)) == [b"live"], "subscription lost across the restart"


@pytest.mark.deadline(30)
def test_session_survives_graceful_restart(broker, version):
    """3.1.1 §4.1 [MQTT-4.1.0-1], [MQTT-3.1.2-4], [MQTT-3.1.2-5], [MQTT-4.4.0-1];
    5.0 §4.1 [MQTT-3.1.2-23], [MQTT-4.1.0-1], [MQTT-4.4.0-1]: session state —
    subscriptions, queued QoS 1/2 messages and unacknowledged deliveries — is
    kept for the whole session, across a server restart (SIGTERM; mosquitto
    runs with persistence on and saves on shutdown)."""
    inflight = _offline_state(broker, version, "restart-g")
    broker.restart()
    _check_resumed(broker, version, "restart-g", inflight)


@pytest.mark.deadline(30)
def test_inbound_qos2_survives_graceful_restart(broker, version):
    """3.1.1 §4.1 (QoS 2 messages received but not completely acknowledged are
    session state), [MQTT-4.3.3-2]; 5.0 [MQTT-4.3.3-10], [MQTT-4.3.3-11]: a
    PUBREC'd inbound QoS 2 message is neither lost nor duplicated across a
    restart: the re-sent PUBREL completes it, the subscriber gets it once."""
    sub, _ = connect_session(broker, version, "q2r-sub")
    sub.subscribe([("q2r/t", 2)])
    sub.disconnect()
    pub, _ = connect_session(broker, version, "q2r-pub")
    pub.send(m.publish("q2r/t", b"exactly-once", qos=2, pid=21, version=version))
    assert pub.expect(m.PUBREC).pid == 21
    pub.close()
    broker.restart()
    pub, ack = connect_session(broker, version, "q2r-pub")
    assert ack.session_present == 1
    pub.send(m.pubrel(21, version=version))
    comp = pub.expect(m.PUBCOMP)
    assert comp.pid == 21, comp
    sub, _ = connect_session(broker, version, "q2r-sub")
    got = recv_n(sub, 1) + quiet(sub)
    assert payloads(got) == [b"exactly-once"], got


@pytest.mark.vigil_only("vigil keeps acknowledged session state across kill -9; mosquitto saves only on "
                        "shutdown/autosave")
@pytest.mark.deadline(30)
def test_session_survives_kill9(broker, version):
    """3.1.1 §4.1 [MQTT-4.1.0-1], [MQTT-3.1.2-5]; 5.0 [MQTT-3.1.2-23],
    [MQTT-4.1.0-1]: vigil's guarantee beyond the specification: everything it
    acknowledged (SUBACK, PUBACK/PUBREC) is session state that survives a
    SIGKILL: subscriptions, queued and unacknowledged messages."""
    inflight = _offline_state(broker, version, "restart-k")
    broker.restart(kill9=True)
    _check_resumed(broker, version, "restart-k", inflight)


@pytest.mark.vigil_only("vigil keeps acknowledged session state across kill -9")
@pytest.mark.deadline(30)
def test_connected_session_survives_kill9(broker, version):
    """3.1.1 [MQTT-3.1.2-4], [MQTT-4.1.0-1]; 5.0 [MQTT-3.1.2-23]: a session whose
    client was still connected when the server was killed resumes after the
    restart (Session Present 1) with its subscription."""
    c, _ = connect_session(broker, version, "live-k")
    c.subscribe([("lk/t", 1)])
    broker.restart(kill9=True)
    assert c.wait_closed(3)
    c, ack = connect_session(broker, version, "live-k")
    assert ack.session_present == 1
    broker.connect(version, "lk-pub").publish("lk/t", b"after-crash", qos=1)
    assert payloads(recv_n(c, 1)) == [b"after-crash"]


@pytest.mark.vigil_only("vigil keeps acknowledged session state across kill -9")
@pytest.mark.deadline(30)
def test_inbound_qos2_survives_kill9(broker, version):
    """3.1.1 [MQTT-4.3.3-2]; 5.0 [MQTT-4.3.3-10]: a QoS 2 message vigil
    acknowledged with PUBREC before being killed is delivered exactly once
    after the restart, when the client re-sends PUBREL."""
    sub, _ = connect_session(broker, version, "q2k-sub")
    sub.subscribe([("q2k/t", 2)])
    sub.disconnect()
    pub, _ = connect_session(broker, version, "q2k-pub")
    pub.send(m.publish("q2k/t", b"exactly-once", qos=2, pid=31, version=version))
    assert pub.expect(m.PUBREC).pid == 31
    broker.restart(kill9=True)
    pub, ack = connect_session(broker, version, "q2k-pub")
    assert ack.session_present == 1
    pub.send(m.publish("q2k/t", b"exactly-once", qos=2, pid=31, dup=True, version=version))
    assert pub.expect(m.PUBREC).pid == 31
    pub.send(m.pubrel(31, version=version))
    assert pub.expect(m.PUBCOMP).pid == 31
    sub, _ = connect_session(broker, version, "q2k-sub")
    got = recv_n(sub, 1) + quiet(sub)
    assert payloads(got) == [b"exactly-once"], got
