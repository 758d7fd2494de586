"""PUBLISH and the QoS 0/1/2 flows in both directions: acknowledgements and
packet identifiers, exactly-once for QoS 2, retransmission with DUP after a
reconnect, PUBREL for an unknown identifier, and per-topic ordering —
MQTT 3.1.1 §2.3, §3.3-3.7, §4.3-4.6 and MQTT 5.0 §2.2.1, §3.3-3.7, §4.3-4.6."""

import pytest

import mqttraw as m
from conformance.util import V311, V5, connect_session, payloads, quiet, recv_n


def test_qos0_delivery(broker, version):
    """3.1.1 §4.3.1 [MQTT-4.3.1-1], [MQTT-3.3.1-2], [MQTT-2.3.1-5]; 5.0 §4.3.1
    [MQTT-4.3.1-1], [MQTT-3.3.1-2], [MQTT-2.2.1-2]: a QoS 0 message is
    delivered as a QoS 0 PUBLISH with DUP 0 and no Packet Identifier, even to
    a QoS 2 subscription; nothing acknowledges it."""
    sub = broker.connect(version, "q0-sub")
    sub.subscribe([("q0/t", 2)])
    pub = broker.connect(version, "q0-pub")
    pub.publish("q0/t", b"zero", qos=0)
    p = sub.recv_publish()
    assert (p.topic, p.payload, p.qos, p.dup, p.pid) == ("q0/t", b"zero", 0, False, None), p
    assert pub.publishes_until_ping() == [] and pub.drain() == [], "a QoS 0 PUBLISH was acknowledged"


def test_qos1_flow(broker, version):
    """3.1.1 §4.3.2 [MQTT-4.3.2-1], [MQTT-4.3.2-2], [MQTT-2.3.1-6]; 5.0 §4.3.2
    [MQTT-4.3.2-1]..[MQTT-4.3.2-4], [MQTT-2.2.1-4], [MQTT-2.2.1-5]: the Server
    answers a QoS 1 PUBLISH with a PUBACK carrying its Packet Identifier
    (5.0: reason 0x00, or 0x10 when nobody subscribes), and delivers QoS 1 to
    a QoS 1 subscriber with a non-zero Packet Identifier and DUP 0."""
    sub = broker.connect(version, "q1-sub")
    sub.subscribe([("q1/t", 1)])
    pub = broker.connect(version, "q1-pub")
    ack = pub.publish("q1/t", b"one", qos=1, pid=4321)
    assert ack.type == m.PUBACK and ack.pid == 4321 and ack.flags == 0, ack
    if version == V5:
        assert ack.reason == 0x00, ack
    p = sub.recv_publish(ack=False)
    assert (p.topic, p.payload, p.qos, p.dup) == ("q1/t", b"one", 1, False), p
    assert p.pid and 1 <= p.pid <= 65535, p
    sub.send(m.puback(p.pid, version=version))
    sub.ping()
    ack = pub.publish("q1/nobody", b"x", qos=1, pid=77)
    assert ack.pid == 77
    if version == V5:
        assert ack.reason in (0x00, m.RC_NO_MATCHING_SUBSCRIBERS), ack


def test_qos2_flow_inbound(broker, version):
    """3.1.1 §4.3.3 [MQTT-4.3.3-2], §3.6.1 [MQTT-3.6.1-1]; 5.0 §4.3.3
    [MQTT-4.3.3-8], [MQTT-4.3.3-11], [MQTT-2.2.1-5]: PUBLISH QoS 2 -> PUBREC
    (same id), PUBREL -> PUBCOMP (same id); the subscriber gets it once."""
    sub = broker.connect(version, "q2in-sub")
    sub.subscribe([("q2/in", 2)])
    pub = broker.connect(version, "q2in-pub")
    pub.send(m.publish("q2/in", b"two", qos=2, pid=999, version=version))
    rec = pub.expect(m.PUBREC)
    assert rec.pid == 999 and rec.flags == 0, rec
    if version == V5:
        assert rec.reason in (0x00, m.RC_NO_MATCHING_SUBSCRIBERS), rec
    pub.send(m.pubrel(999, version=version))
    comp = pub.expect(m.PUBCOMP)
    assert comp.pid == 999 and comp.flags == 0 and comp.reason == 0, comp
    p = sub.recv_publish()
    assert (p.topic, p.payload, p.qos) == ("q2/in", b"two", 2), p
    assert quiet(sub) == []


def test_qos2_flow_outbound(broker, version):
    """3.1.1 §4.3.3 [MQTT-4.3.3-1], §3.6.1 [MQTT-3.6.1-1]; 5.0 §4.3.3
    [MQTT-4.3.3-2], [MQTT-4.3.3-4], [MQTT-2.2.1-5]: the Server sends QoS 2 with
    a non-zero id and DUP 0, answers PUBREC with a PUBREL (fixed-header flags
    0010, same id), and the flow ends with our PUBCOMP."""
    sub = broker.connect(version, "q2out-sub")
    sub.subscribe([("q2/out", 2)])
    pub = broker.connect(version, "q2out-pub")
    pub.publish("q2/out", b"two", qos=2)
    p = sub.recv_publish(ack=False)
    assert p.qos == 2 and p.pid and not p.dup, p
    sub.send(m.pubrec(p.pid, version=version))
    rel = sub.expect(m.PUBREL)
    assert rel.pid == p.pid and rel.flags == 0x2, rel
    if version == V5:
        assert rel.reason == 0, rel
    sub.send(m.pubcomp(p.pid, version=version))
    assert quiet(sub) == [], "nothing more after PUBCOMP"


def test_delivered_qos_is_minimum_of_published_and_granted(broker, version):
    """3.1.1 §3.8.4 [MQTT-3.8.4-6]; 5.0 §3.8.4 [MQTT-3.8.4-8]: the QoS of a
    delivered message is min(QoS published, QoS granted) — for all 9 pairs.
    (Messages of different QoS need not keep their relative order, §4.6.)"""
    subs = {}
    for q in (0, 1, 2):
        subs[q] = broker.connect(version, "minq-sub%d" % q)
        ack = subs[q].subscribe([("minq/t", q)])
        assert ack.reasons == [q], ack
    pub = broker.connect(version, "minq-pub")
    for pq in (0, 1, 2):
        pub.publish("minq/t", b"p%d" % pq, qos=pq)
    for sq, s in subs.items():
        got = recv_n(s, 3)
        assert sorted((p.payload, p.qos) for p in got) == [(b"p%d" % pq, min(pq, sq)) for pq in (0, 1, 2)], got


def test_incoming_dup_flag_not_propagated(broker, version):
    """3.1.1 §3.3.1.1 [MQTT-3.3.1-3]; 5.0 [MQTT-3.3.1-3]: the DUP flag of an
    outgoing PUBLISH depends only on whether it is a retransmission: a first
    delivery of a message that arrived with DUP 1 has DUP 0."""
    sub = broker.connect(version, "dupprop-sub")
    sub.subscribe([("dup/prop", 1)])
    pub = broker.connect(version, "dupprop-pub")
    pub.publish("dup/prop", b"d", qos=1, dup=True)
    p = sub.recv_publish()
    assert p.payload == b"d" and p.dup is False, p


def test_qos2_duplicate_publish_before_pubrel_delivered_once(broker, version):
    """3.1.1 §4.3.3 [MQTT-4.3.3-2]; 5.0 §4.3.3 [MQTT-4.3.3-10]:
    until it receives the PUBREL, the receiver MUST acknowledge a PUBLISH with
    the same Packet Identifier with another PUBREC and MUST NOT deliver it
    again. After PUBCOMP [MQTT-4.3.3-12] the identifier is free: a new PUBLISH
    with it is a new message."""
    sub = broker.connect(version, "q2dup-sub")
    sub.subscribe([("q2/dup", 2)])
    pub = broker.connect(version, "q2dup-pub")
    pub.send(m.publish("q2/dup", b"first", qos=2, pid=7, version=version))
    assert pub.expect(m.PUBREC).pid == 7
    pub.send(m.publish("q2/dup", b"first", qos=2, pid=7, dup=True, version=version))
    assert pub.expect(m.PUBREC).pid == 7, "a repeated QoS 2 PUBLISH must be acknowledged with PUBREC again"
    pub.send(m.pubrel(7, version=version))
    assert pub.expect(m.PUBCOMP).pid == 7
    got = recv_n(sub, 1)
    got += quiet(sub)
    assert payloads(got) == [b"first"], "QoS 2 duplicate delivered more than once: %r" % got
    # The identifier is free again: same id, new message.
    pub.send(m.publish("q2/dup", b"second", qos=2, pid=7, version=version))
    assert pub.expect(m.PUBREC).pid == 7
    pub.send(m.pubrel(7, version=version))
    assert pub.expect(m.PUBCOMP).pid == 7
    got = recv_n(sub, 1)
    assert payloads(got) == [b"second"], got


@pytest.mark.mosquitto_bug("closes the connection (protocol error) on the second DUP re-send of a QoS 2 PUBLISH "
                           "that is still awaiting PUBREL")
def test_qos2_repeated_duplicates_before_pubrel(broker, version):
    """3.1.1 §4.3.3 [MQTT-4.3.3-2]; 5.0 [MQTT-4.3.3-10]: "any subsequent
    PUBLISH packet with the same Packet Identifier" before PUBREL gets a
    PUBREC — however many there are — and none is delivered again."""
    sub = broker.connect(version, "q2dups-sub")
    sub.subscribe([("q2/dups", 2)])
    pub = broker.connect(version, "q2dups-pub")
    pub.send(m.publish("q2/dups", b"only", qos=2, pid=9, version=version))
    assert pub.expect(m.PUBREC).pid == 9
    for _ in range(3):
        pub.send(m.publish("q2/dups", b"only", qos=2, pid=9, dup=True, version=version))
        assert pub.expect(m.PUBREC).pid == 9
    pub.send(m.pubrel(9, version=version))
    assert pub.expect(m.PUBCOMP).pid == 9
    got = recv_n(sub, 1) + quiet(sub)
    assert payloads(got) == [b"only"], got


def test_qos1_same_packet_id_after_puback_is_new_message(broker, version):
    """3.1.1 §4.3.2 [MQTT-4.3.2-2]; 5.0 §4.3.2 [MQTT-4.3.2-5]: after sending a
    PUBACK the receiver treats a PUBLISH with the same Packet Identifier as a
    new message, irrespective of DUP: both are delivered."""
    sub = broker.connect(version, "q1re-sub")
    sub.subscribe([("q1/re", 1)])
    pub = broker.connect(version, "q1re-pub")
    assert pub.publish("q1/re", b"a", qos=1, pid=5).pid == 5
    assert pub.publish("q1/re", b"b", qos=1, pid=5, dup=True).pid == 5
    got = recv_n(sub, 2)
    assert payloads(got) == [b"a", b"b"], got


@pytest.mark.parametrize("version", [V311, pytest.param(V5, marks=pytest.mark.mosquitto_bug(
    "answers a PUBREL for an unknown Packet Identifier with PUBCOMP 0x00 instead of 0x92"))], ids=["v311", "v5"])
def test_pubrel_for_unknown_packet_id(broker, version):
    """3.1.1 §4.3.3 [MQTT-4.3.3-2]: the receiver MUST respond to a PUBREL with
    a PUBCOMP containing the same Packet Identifier. 5.0 §3.7.2.1
    [MQTT-4.3.3-11], [MQTT-3.7.2-1]: when the identifier is not known the
    PUBCOMP Reason Code is 0x92 (Packet Identifier not found). The connection
    stays open."""
    c = broker.connect(version, "unk-rel")
    c.send(m.pubrel(4242, version=version))
    comp = c.expect(m.PUBCOMP)
    assert comp.pid == 4242, comp
    if version == V5:
        assert comp.reason == m.RC_PACKET_ID_NOT_FOUND, comp
    c.ping()


def test_outgoing_packet_ids_unique_while_in_flight(broker, version):
    """3.1.1 §2.3.1 [MQTT-2.3.1-1], [MQTT-2.3.1-4]; 5.0 §2.2.1 [MQTT-2.2.1-4]:
    each new QoS > 0 PUBLISH from the Server uses a non-zero identifier not
    in use: 10 unacknowledged QoS 1 and QoS 2 deliveries have 10 distinct ids
    (a QoS 2 id stays in use until PUBCOMP; here PUBREC is sent, PUBCOMP not)."""
    sub = broker.connect(version, "ids-sub")
    sub.subscribe([("ids/1", 1), ("ids/2", 2)])
    pub = broker.connect(version, "ids-pub")
    for i in range(5):
        pub.publish("ids/1", b"%d" % i, qos=1)
        pub.publish("ids/2", b"%d" % i, qos=2)
    got = recv_n(sub, 10, ack=False)
    ids = [p.pid for p in got]
    assert all(ids) and len(set(ids)) == 10, "identifiers reused while in flight: %r" % got
    for p in got:
        if p.qos == 2:
            sub.send(m.pubrec(p.pid, version=version))
    rels = [sub.expect(m.PUBREL) for _ in range(5)]
    assert sorted(r.pid for r in rels) == sorted(p.pid for p in got if p.qos == 2)
    pub.publish("ids/1", b"more", qos=1)
    extra = sub.recv_publish(ack=False)
    assert extra.pid not in ids, "id %d reused while still in flight" % extra.pid


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_order_preserved_per_topic_and_qos(broker, version, qos):
    """3.1.1 §4.6 [MQTT-4.6.0-5], [MQTT-4.6.0-6]; 5.0 §4.6 [MQTT-4.6.0-5],
    [MQTT-4.6.0-6]: topics are Ordered Topics by default: PUBLISHes from one
    Client on one topic at one QoS reach a subscriber in the order sent
    (50 messages, pipelined up to 10 unacknowledged — within any Receive
    Maximum a 5.0 server may announce [MQTT-3.3.4-7])."""
    sub = broker.connect(version, "ord-sub")
    sub.subscribe([("ord/t", 2)])
    pub = broker.connect(version, "ord-pub")
    window = min(10, pub.connack.props.get("receive_maximum", 65535))
    n = 50
    if qos == 0:
        pub.send(b"".join(m.publish("ord/t", b"%03d" % i, version=version) for i in range(n)))
    else:
        outstanding = []
        for i in range(n):
            if len(outstanding) >= window:
                done = pub.expect(m.PUBACK if qos == 1 else m.PUBREC)
                if qos == 2:
                    pub.send(m.pubrel(done.pid, version=version))
                    pub.expect(m.PUBCOMP, pid=done.pid)
                outstanding.remove(done.pid)
            pub.send(m.publish("ord/t", b"%03d" % i, qos=qos, pid=i + 1, version=version))
            outstanding.append(i + 1)
        while outstanding:
            done = pub.expect(m.PUBACK if qos == 1 else m.PUBREC)
            if qos == 2:
                pub.send(m.pubrel(done.pid, version=version))
                pub.expect(m.PUBCOMP, pid=done.pid)
            outstanding.remove(done.pid)
    got = recv_n(sub, n, timeout=10)
    assert payloads(got) == [b"%03d" % i for i in range(n)], "out of order: %r" % payloads(got)


def test_qos1_redelivered_with_dup_after_reconnect(broker, version):
    """3.1.1 §4.4 [MQTT-4.4.0-1], §3.3.1.1 [MQTT-3.3.1-1]; 5.0 §4.4
    [MQTT-4.4.0-1], [MQTT-3.3.1-1]: a QoS 1 PUBLISH the client never
    acknowledged is re-sent, when it reconnects with a session (Clean
    Session 0 / Clean Start 0), with its original Packet Identifier and DUP 1."""
    sub, _ = connect_session(broker, version, "redeliv1")
    sub.subscribe([("redo/1", 1)])
    pub = broker.connect(version, "redeliv1-pub")
    pub.publish("redo/1", b"unacked", qos=1)
    first = sub.recv_publish(ack=False)
    assert not first.dup
    sub.close()  # no PUBACK, no DISCONNECT
    sub2, ack = connect_session(broker, version, "redeliv1")
    assert ack.session_present == 1, ack
    again = sub2.recv_publish(ack=False)
    assert (again.pid, again.payload, again.qos, again.dup) == (first.pid, b"unacked", 1, True), again
    sub2.send(m.puback(again.pid, version=version))
    assert quiet(sub2) == []


def test_qos2_redelivered_with_dup_after_reconnect(broker, version):
    """3.1.1 §4.4 [MQTT-4.4.0-1], [MQTT-3.3.1-1]; 5.0 [MQTT-4.4.0-1]: an
    unacknowledged outgoing QoS 2 PUBLISH is re-sent on reconnection with its
    original Packet Identifier and DUP 1; the flow then completes."""
    sub, _ = connect_session(broker, version, "redeliv2")
    sub.subscribe([("redo/2", 2)])
    pub = broker.connect(version, "redeliv2-pub")
    pub.publish("redo/2", b"unrec", qos=2)
    first = sub.recv_publish(ack=False)
    sub.close()
    sub2, ack = connect_session(broker, version, "redeliv2")
    assert ack.session_present == 1
    again = sub2.recv_publish(ack=False)
    assert (again.pid, again.payload, again.qos, again.dup) == (first.pid, b"unrec", 2, True), again
    sub2.send(m.pubrec(again.pid, version=version))
    assert sub2.expect(m.PUBREL).pid == again.pid
    sub2.send(m.pubcomp(again.pid, version=version))
    assert quiet(sub2) == []


def test_pubrel_resent_not_publish_after_reconnect(broker, version):
    """3.1.1 §4.3.3 [MQTT-4.3.3-1] (MUST NOT re-send the PUBLISH once PUBREL
    was sent), §4.4 [MQTT-4.4.0-1]; 5.0 [MQTT-4.3.3-6], [MQTT-4.4.0-1]: the
    client sent PUBREC but not PUBCOMP; on reconnection the Server re-sends the
    PUBREL with the original identifier, and not the PUBLISH."""
    sub, _ = connect_session(broker, version, "redorel")
    sub.subscribe([("redo/rel", 2)])
    pub = broker.connect(version, "redorel-pub")
    pub.publish("redo/rel", b"half", qos=2)
    p = sub.recv_publish(ack=False)
    sub.send(m.pubrec(p.pid, version=version))
    assert sub.expect(m.PUBREL).pid == p.pid
    sub.close()
    sub2, ack = connect_session(broker, version, "redorel")
    assert ack.session_present == 1
    rel = sub2.expect(m.PUBREL, timeout=3)
    assert rel.pid == p.pid and rel.flags == 2, rel
    assert sub2.drain(m.PUBLISH) == [], "the PUBLISH was re-sent after its PUBREL"
    sub2.send(m.pubcomp(rel.pid, version=version))
    assert quiet(sub2) == [], "the PUBLISH was re-sent after its PUBREL"


def test_inbound_qos2_state_survives_reconnect(broker, version):
    """3.1.1 §4.1 (Session State holds QoS 2 messages received but not
    completely acknowledged), [MQTT-4.3.3-2], [MQTT-4.4.0-1]; 5.0 §4.1,
    [MQTT-4.3.3-10], [MQTT-4.4.0-1]: a client that got PUBREC, lost the
    connection and re-sends the PUBLISH (DUP 1, same id) in its resumed
    session gets PUBREC again; after PUBREL/PUBCOMP the subscriber has exactly
    one copy."""
    sub = broker.connect(version, "q2sess-sub")
    sub.subscribe([("q2/sess", 2)])
    pub, _ = connect_session(broker, version, "q2sess-pub")
    pub.send(m.publish("q2/sess", b"once", qos=2, pid=11, version=version))
    assert pub.expect(m.PUBREC).pid == 11
    pub.close()
    pub2, ack = connect_session(broker, version, "q2sess-pub")
    assert ack.session_present == 1
    pub2.send(m.publish("q2/sess", b"once", qos=2, pid=11, dup=True, version=version))
    assert pub2.expect(m.PUBREC).pid == 11
    pub2.send(m.pubrel(11, version=version))
    comp = pub2.expect(m.PUBCOMP)
    assert comp.pid == 11 and comp.reason == 0, comp
    got = recv_n(sub, 1) + quiet(sub)
    assert payloads(got) == [b"once"], "exactly-once broken across a reconnect: %r" % got


def test_pubrel_after_reconnect_completes_inbound_qos2(broker, version):
    """3.1.1 [MQTT-4.4.0-1], [MQTT-4.3.3-2]; 5.0 [MQTT-4.4.0-1],
    [MQTT-4.3.3-11]: the client re-sends its unacknowledged PUBREL after
    reconnecting with a session; the Server answers PUBCOMP (5.0: 0x00, the
    identifier is known) and the message is delivered exactly once."""
    sub = broker.connect(version, "relsess-sub")
    sub.subscribe([("rel/sess", 2)])
    pub, _ = connect_session(broker, version, "relsess-pub")
    pub.send(m.publish("rel/sess", b"x", qos=2, pid=12, version=version))
    assert pub.expect(m.PUBREC).pid == 12
    pub.close()
    pub2, _ = connect_session(broker, version, "relsess-pub")
    pub2.send(m.pubrel(12, version=version))
    comp = pub2.expect(m.PUBCOMP)
    assert comp.pid == 12 and comp.reason == 0, comp
    got = recv_n(sub, 1) + quiet(sub)
    assert payloads(got) == [b"x"], got


def test_v5_no_retransmission_while_connected(broker):
    """5.0 §4.4 [MQTT-4.4.0-1]: resending is required only on reconnection
    with a session, and Clients and Servers MUST NOT resend at any other
    time: an unacknowledged QoS 1 PUBLISH is not re-sent on a live connection."""
    sub = broker.connect(V5, "noretry-sub")
    sub.subscribe([("noretry/t", 1)])
    pub = broker.connect(V5, "noretry-pub")
    pub.publish("noretry/t", b"once", qos=1)
    first = sub.recv_publish(ack=False)
    again = sub.messages_for(2.0, ack=False)
    assert again == [], "PUBLISH re-sent on the same connection: %r" % again
    sub.send(m.puback(first.pid, version=V5))
    sub.ping()
