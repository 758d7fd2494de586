"""MQTT 5.0 features: reason codes on acknowledgements, session and message
expiry, Receive Maximum and Maximum Packet Size in both directions, Topic
Aliases in both directions, properties carried to subscribers (User
Property order, Response Topic, Correlation Data, Payload Format Indicator,
Content Type), Subscription Identifiers, subscription options (No Local),
Shared Subscriptions, Server Keep Alive, Assigned Client Identifier,
Request Problem/Response Information, server DISCONNECT reasons, and
enhanced authentication with an unknown method — MQTT 5.0 §2-4."""

import time

import pytest

import mqttraw as m
from conformance.util import (V5, assert_closed_for_error, assert_refused_connect, connect_session, payloads,
                              quiet, recv_n)


def v5(broker, cid, **kw):
    return broker.connect(V5, cid, **kw)


# ---------------------------------------------------------------------------
# reason codes on acknowledgements


def test_puback_pubrec_no_matching_subscribers(broker):
    """5.0 §3.4.2.1, §3.5.2.1 [MQTT-3.4.2-1], [MQTT-3.5.2-1]: PUBACK and PUBREC
    carry a Reason Code from their tables; with nobody subscribed it is 0x00
    or 0x10 (No matching subscribers) — never a failure."""
    c = v5(broker, "rc-pub")
    a = c.publish("nobody/here", b"x", qos=1)
    assert a.reason in (0x00, m.RC_NO_MATCHING_SUBSCRIBERS), a
    comp = c.publish("nobody/here", b"x", qos=2)
    assert c.last_pubrec.reason in (0x00, m.RC_NO_MATCHING_SUBSCRIBERS), c.last_pubrec
    assert comp.reason == 0x00, comp


def test_client_puback_failure_code_counts_as_acknowledged(broker):
    """5.0 §4.4 [MQTT-4.4.0-2]: a PUBACK with a Reason Code >= 0x80 still
    acknowledges the PUBLISH: the Server MUST NOT re-send it, not even when
    the session is resumed."""
    sub, _ = connect_session(broker, V5, "nack-sub")
    sub.subscribe([("nack/t", 1)])
    v5(broker, "nack-pub").publish("nack/t", b"refused", qos=1)
    p = sub.recv_publish(ack=False)
    sub.send(m.puback(p.pid, reason=m.RC_UNSPECIFIED, props={"reason_string": "no thanks"}, version=V5))
    sub.ping()
    sub.close()
    sub, ack = connect_session(broker, V5, "nack-sub")
    assert ack.session_present == 1
    assert quiet(sub) == [], "a PUBLISH acknowledged with 0x80 was re-sent"


def test_client_pubrec_failure_code_ends_the_flow(broker):
    """5.0 §4.3.3 [MQTT-4.3.3-4], §3.3.4 [MQTT-3.3.4-9]: a PUBREC with a Reason
    Code >= 0x80 ends the QoS 2 flow: no PUBREL follows, and the message no
    longer counts against the client's Receive Maximum (1 here): the next
    message is sent."""
    sub = v5(broker, "recnack-sub", props={"receive_maximum": 1})
    sub.subscribe([("recnack/t", 2)])
    pub = v5(broker, "recnack-pub")
    pub.publish("recnack/t", b"first", qos=2)
    pub.publish("recnack/t", b"second", qos=2)
    p = sub.recv_publish(ack=False)
    assert p.payload == b"first"
    sub.send(m.pubrec(p.pid, reason=m.RC_IMPL_SPECIFIC, version=V5))
    nxt = sub.recv_publish(ack=False)
    assert nxt.payload == b"second", nxt
    assert not sub.drain(m.PUBREL), "PUBREL sent after a failed PUBREC"
    sub.ack(nxt)


# ---------------------------------------------------------------------------
# session expiry


@pytest.mark.deadline(20)
def test_session_expires_after_interval(broker):
    """5.0 §3.1.2.11.2 [MQTT-3.1.2-23], §4.1 [MQTT-4.1.0-2]: the session is
    kept for Session Expiry Interval seconds after the connection closes and
    discarded after: 1 s interval, reconnect after 3 s -> Session Present 0,
    no subscription, no queued message."""
    c, _ = connect_session(broker, V5, "expiring", expiry=1)
    c.subscribe([("exp/t", 1)])
    c.disconnect()
    v5(broker, "expiring-pub").publish("exp/t", b"for-a-dead-session", qos=1)
    time.sleep(3.0)
    c, ack = connect_session(broker, V5, "expiring")
    assert ack.session_present == 0, "session outlived its 1 s expiry: %r" % ack
    assert quiet(c) == []


def test_disconnect_can_shorten_session_expiry(broker):
    """5.0 §3.14.2.2.2: the Session Expiry Interval sent on DISCONNECT replaces
    the one from CONNECT; 0 ends the session with the connection."""
    c, _ = connect_session(broker, V5, "shorten", expiry=300)
    c.subscribe([("short/t", 1)])
    c.disconnect(reason=0, props={"session_expiry_interval": 0})
    c, ack = connect_session(broker, V5, "shorten")
    assert ack.session_present == 0, ack


def test_disconnect_setting_expiry_after_zero_is_protocol_error(broker):
    """5.0 §3.14.2.2.2: if the CONNECT had Session Expiry 0, a non-zero Session
    Expiry on the client's DISCONNECT is a Protocol Error: the Server does not
    treat it as a valid DISCONNECT (DISCONNECT 0x82, close) and the session
    still ends with the connection."""
    c = v5(broker, "zero-then-more")
    c.subscribe([("zt/t", 1)])
    c.send(m.disconnect(0, {"session_expiry_interval": 300}, V5))
    assert_closed_for_error(c, V5, v5_codes={m.RC_PROTOCOL_ERROR})
    c, ack = connect_session(broker, V5, "zero-then-more")
    assert ack.session_present == 0, ack


# ---------------------------------------------------------------------------
# message expiry


@pytest.mark.deadline(20)
def test_message_expiry(broker):
    """5.0 §3.3.2.3.3 [MQTT-3.3.2-5], [MQTT-3.3.2-6]: a message whose Message
    Expiry Interval passes before onward delivery starts is deleted for that
    subscriber (queued for an offline session, or retained); one still valid
    is delivered with the interval reduced by its time in the Server."""
    sub, _ = connect_session(broker, V5, "mexp-sub")
    sub.subscribe([("mexp/q", 1)])
    sub.disconnect()
    pub = v5(broker, "mexp-pub")
    pub.publish("mexp/q", b"expires", qos=1, props={"message_expiry_interval": 1})
    pub.publish("mexp/q", b"forever", qos=1)
    pub.publish("mexp/q", b"long", qos=1, props={"message_expiry_interval": 100})
    pub.publish("mexp/r", b"retained-expires", qos=1, retain=True, props={"message_expiry_interval": 1})
    pub.publish("mexp/r2", b"retained-long", qos=1, retain=True, props={"message_expiry_interval": 100})
    time.sleep(2.2)
    sub, ack = connect_session(broker, V5, "mexp-sub")
    assert ack.session_present == 1
    got = recv_n(sub, 2) + quiet(sub)
    assert payloads(got) == [b"forever", b"long"], got
    assert "message_expiry_interval" not in got[0].props, got[0]
    assert 95 <= got[1].props.get("message_expiry_interval", 0) <= 98, got[1]
    r = v5(broker, "mexp-late")
    r.subscribe([("mexp/#", 1)])
    got = recv_n(r, 1) + quiet(r)
    assert [p.topic for p in got] == ["mexp/r2"], "expired retained message delivered: %r" % got
    assert 95 <= got[0].props.get("message_expiry_interval", 0) <= 98, got[0]


def test_message_expiry_on_live_delivery(broker):
    """5.0 §3.3.2.3.3 [MQTT-3.3.2-6]: a live delivery carries the Message
    Expiry Interval minus the (short) wait: 99-100 of 100 s."""
    sub = v5(broker, "mlive-sub")
    sub.subscribe([("mlive/t", 0)])
    v5(broker, "mlive-pub").publish("mlive/t", b"x", qos=1, props={"message_expiry_interval": 100})
    p = sub.recv_publish()
    assert 99 <= p.props.get("message_expiry_interval", 0) <= 100, p


# ---------------------------------------------------------------------------
# Receive Maximum


def test_server_respects_client_receive_maximum(broker):
    """5.0 §3.3.4 [MQTT-3.3.4-9], §4.9 [MQTT-4.9.0-1], [MQTT-4.9.0-2],
    [MQTT-4.9.0-3], [MQTT-3.3.4-10]: with the client's Receive Maximum 2 the
    Server never has more than 2 unacknowledged QoS 1/2 PUBLISHes out; each
    acknowledgement lets one more through (in order per QoS, §4.6); other
    packets (PINGRESP) are not held back while the quota is zero."""
    sub = v5(broker, "rmax-sub", props={"receive_maximum": 2})
    sub.subscribe([("rmax/t", 2)])
    pub = v5(broker, "rmax-pub")
    for i in range(6):
        pub.publish("rmax/t", b"%d" % i, qos=1 if i % 2 else 2)
    first = recv_n(sub, 2, ack=False)
    assert sub.publishes_until_ping(ack=False) == [], "more than Receive Maximum in flight"
    assert sub.messages_for(0.3, ack=False) == [], "more than Receive Maximum in flight"
    seen = list(first)
    inflight = list(first)
    while len(seen) < 6:
        p = inflight.pop(0)
        sub.ack(p)
        nxt = recv_n(sub, 1, ack=False)
        inflight += nxt
        seen += nxt
        assert len(inflight) <= 2
    assert sorted(payloads(seen)) == [b"%d" % i for i in range(6)], seen
    for q in (1, 2):
        assert [p.payload for p in seen if p.qos == q] == [b"%d" % i for i in range(6) if (1 if i % 2 else 2) == q]
    for p in inflight:
        sub.ack(p)
    assert quiet(sub) == []


def test_qos0_not_limited_by_receive_maximum(broker):
    """5.0 §4.9: flow control applies to QoS 1 and 2 only: QoS 0 messages
    keep flowing while the client's QoS > 0 quota (Receive Maximum 1) is used up."""
    sub = v5(broker, "rmax0-sub", props={"receive_maximum": 1})
    sub.subscribe([("rmax0/t", 1)])
    pub = v5(broker, "rmax0-pub")
    pub.publish("rmax0/t", b"q1", qos=1)
    held = sub.recv_publish(ack=False)
    pub.publish("rmax0/t", b"z1", qos=0)
    pub.publish("rmax0/t", b"z2", qos=0)
    got = recv_n(sub, 2, ack=False)
    assert [(p.payload, p.qos) for p in got] == [(b"z1", 0), (b"z2", 0)], got
    sub.ack(held)


def test_connack_announces_configured_receive_maximum(broker_factory):
    """5.0 §3.2.2.3.3: the Server announces its Receive Maximum (here the
    configured 2) in CONNACK; absent means 65535, 0 is never sent."""
    b = broker_factory(max_inflight=2)
    c = v5(b, "rm-announce")
    assert c.connack.props.get("receive_maximum") == 2, c.connack


@pytest.mark.vigil_only("mosquitto 2.0.11 answers the excess QoS 2 PUBLISH with PUBREC 0x97 (Quota exceeded) "
                        "instead of disconnecting with 0x93")
def test_client_exceeding_server_receive_maximum_disconnected(broker_factory):
    """5.0 §3.3.4 [MQTT-3.3.4-7], §4.9: a Client MUST NOT send more than the
    Server's Receive Maximum unacknowledged QoS > 0 PUBLISHes; the Server
    treats one more as a Protocol Error and disconnects with 0x93 (Receive
    Maximum exceeded). QoS 2 PUBLISHes stay unacknowledged until PUBCOMP, so
    three without PUBREL exceed a maximum of 2."""
    b = broker_factory(max_inflight=2)
    c = v5(b, "rm-exceed")
    assert c.connack.props.get("receive_maximum") == 2
    for pid in (1, 2, 3):
        c.send(m.publish("rmx/t", b"x", qos=2, pid=pid, version=V5))
    d = assert_closed_for_error(c, V5, v5_codes={m.RC_RECEIVE_MAX_EXCEEDED}, allow_other=True)
    assert d is not None and d.reason == m.RC_RECEIVE_MAX_EXCEEDED, "expected DISCONNECT 0x93"


# ---------------------------------------------------------------------------
# Maximum Packet Size


def test_server_does_not_exceed_client_maximum_packet_size(broker):
    """5.0 §3.1.2.11.4 [MQTT-3.1.2-24], [MQTT-3.1.2-25]: the Server MUST NOT
    send a packet larger than the client's Maximum Packet Size (128 here);
    such a message is discarded for that client only, later messages still
    arrive, and a client without the limit gets everything."""
    sub = v5(broker, "mps-sub", props={"maximum_packet_size": 128})
    sub.subscribe([("mps/t", 1)])
    other = v5(broker, "mps-other")
    other.subscribe([("mps/t", 1)])
    pub = v5(broker, "mps-pub")
    pub.publish("mps/t", b"B" * 500, qos=1)
    pub.publish("mps/t", b"small", qos=1)
    got = recv_n(sub, 1) + quiet(sub)
    assert payloads(got) == [b"small"], "expected only the small message: %r" % got
    assert payloads(recv_n(other, 2)) == [b"B" * 500, b"small"], "the big message was lost for everyone"


@pytest.mark.mosquitto_bug("a QoS 1 message dropped for exceeding the client's Maximum Packet Size keeps its "
                           "Receive Maximum slot: with Receive Maximum 1 nothing is delivered afterwards")
def test_dropped_oversize_message_frees_its_quota(broker):
    """5.0 §3.1.2.11.4 [MQTT-3.1.2-25]: "the Server MUST discard it without
    sending it and then behave as if it had completed sending that
    Application Message" — so it does not hold one of the client's Receive
    Maximum slots (1 here): the next message is delivered."""
    sub = v5(broker, "mpsq-sub", props={"maximum_packet_size": 128, "receive_maximum": 1})
    sub.subscribe([("mpsq/t", 1)])
    pub = v5(broker, "mpsq-pub")
    pub.publish("mpsq/t", b"B" * 500, qos=1)
    pub.publish("mpsq/t", b"small", qos=1)
    got = recv_n(sub, 1) + quiet(sub)
    assert payloads(got) == [b"small"], got


def test_client_exceeding_server_maximum_packet_size(broker_factory):
    """5.0 §3.2.2.3.6 [MQTT-3.2.2-15], §4.13: the Server announces its Maximum
    Packet Size (the configured 1024); a bigger packet from the client is a
    Protocol Error: DISCONNECT 0x95 (Packet too large), then close."""
    b = broker_factory(max_packet_size=1024)
    c = v5(b, "mps-big")
    assert c.connack.props.get("maximum_packet_size") == 1024, c.connack
    c.send(m.publish("mps/big", b"x" * 2000, qos=1, pid=1, version=V5))
    assert_closed_for_error(c, V5, v5_codes={m.RC_PACKET_TOO_LARGE})
    ok = v5(b, "mps-ok")
    assert ok.publish("mps/big", b"x" * 900, qos=1).reason in (0, m.RC_NO_MATCHING_SUBSCRIBERS)


# ---------------------------------------------------------------------------
# Topic Alias


def test_topic_alias_client_to_server(broker_factory):
    """5.0 §3.3.2.3.4 [MQTT-3.3.2-12], [MQTT-3.2.2-17]: the Server announces a
    Topic Alias Maximum (the configured 5) and MUST accept aliases 1..max: an
    alias is set by a PUBLISH with topic and alias, used with an empty topic,
    and can be remapped. Subscribers get the real topic names."""
    b = broker_factory(topic_alias_max=5)
    sub = v5(b, "ta-sub")
    sub.subscribe([("ta/#", 1)])
    c = v5(b, "ta-pub")
    assert c.connack.props.get("topic_alias_maximum") == 5, c.connack
    c.publish("ta/x", b"1", qos=1, props={"topic_alias": 1})
    c.publish("", b"2", qos=1, props={"topic_alias": 1})
    c.publish("ta/y", b"3", qos=1, props={"topic_alias": 5})
    c.publish("", b"4", qos=1, props={"topic_alias": 5})
    c.publish("ta/z", b"5", qos=1, props={"topic_alias": 1})
    c.publish("", b"6", qos=1, props={"topic_alias": 1})
    got = recv_n(sub, 6)
    assert [(p.topic, p.payload) for p in got] == [
        ("ta/x", b"1"), ("ta/x", b"2"), ("ta/y", b"3"), ("ta/y", b"4"), ("ta/z", b"5"), ("ta/z", b"6")], got
    assert all("topic_alias" not in p.props for p in got), "alias leaked to a subscriber that allowed none"


@pytest.mark.parametrize("alias", [6, 0])
def test_topic_alias_out_of_range(broker_factory, alias):
    """5.0 §3.3.2.3.4 [MQTT-3.2.2-17], [MQTT-3.3.2-8]: a Topic Alias of 0 or
    above the Server's Topic Alias Maximum (5) is a Protocol Error: DISCONNECT
    0x94 (Topic Alias invalid; 0x81/0x82 also accepted for 0), then close."""
    b = broker_factory(topic_alias_max=5)
    c = v5(b, "ta-bad")
    c.send(m.publish("ta/bad", b"x", qos=1, pid=1, version=V5, props={"topic_alias": alias}))
    codes = {m.RC_TOPIC_ALIAS_INVALID} if alias else {m.RC_TOPIC_ALIAS_INVALID, m.RC_MALFORMED, m.RC_PROTOCOL_ERROR}
    assert_closed_for_error(c, V5, v5_codes=codes)


def test_topic_alias_unknown_or_from_previous_connection(broker_factory):
    """5.0 §3.3.2.3.4 [MQTT-3.3.2-7], §3.3.4: an empty Topic Name with an
    alias that has no mapping on this connection is a Protocol Error
    (DISCONNECT 0x82); mappings do not carry over to a new connection."""
    b = broker_factory(topic_alias_max=5)
    c = v5(b, "ta-carry")
    c.publish("ta/old", b"1", qos=1, props={"topic_alias": 2})
    c.disconnect()
    c = v5(b, "ta-carry")
    c.send(m.publish("", b"2", qos=1, pid=1, version=V5, props={"topic_alias": 2}))
    assert_closed_for_error(c, V5, v5_codes={m.RC_PROTOCOL_ERROR, m.RC_TOPIC_ALIAS_INVALID})


def test_topic_alias_server_to_client(broker):
    """5.0 §3.1.2.11.5 [MQTT-3.1.2-26], [MQTT-3.1.2-27], §3.3.2.3.4
    [MQTT-3.3.2-11]: the Server MAY use topic aliases towards a client that
    announced Topic Alias Maximum 2, never above 2 or 0, always resolvable;
    towards a client that announced none it MUST NOT use any."""
    withalias = v5(broker, "tas-sub", props={"topic_alias_maximum": 2})
    withalias.subscribe([("tas/#", 0)])
    noalias = v5(broker, "tas-none")
    noalias.subscribe([("tas/#", 0)])
    pub = v5(broker, "tas-pub")
    topics = ["tas/a", "tas/b", "tas/c", "tas/a", "tas/b", "tas/a"]
    for i, t in enumerate(topics):
        pub.publish(t, b"%d" % i, qos=1)
    aliases = {}
    resolved = []
    for p in recv_n(withalias, len(topics)):
        a = p.props.get("topic_alias")
        if a is not None:
            assert 1 <= a <= 2, "alias %d beyond the client's maximum 2" % a
            if p.topic:
                aliases[a] = p.topic
            else:
                assert a in aliases, "empty topic with an alias never set: %r" % p
            resolved.append(aliases[a] if not p.topic else p.topic)
        else:
            assert p.topic, p
            resolved.append(p.topic)
    assert resolved == topics, resolved
    got = recv_n(noalias, len(topics))
    assert [p.topic for p in got] == topics and all("topic_alias" not in p.props for p in got), got


# ---------------------------------------------------------------------------
# properties forwarded to subscribers


def test_user_properties_forwarded_in_order(broker):
    """5.0 §3.3.2.3.7 [MQTT-3.3.2-17], [MQTT-3.3.2-18]: the Server MUST send all
    User Properties unaltered and in order (duplicate names included) at every
    QoS."""
    ups = [("b", "2"), ("a", "1"), ("b", "3"), ("ключ", "значение"), ("empty", "")]
    sub = v5(broker, "up-sub")
    sub.subscribe([("up/t", 2)])
    pub = v5(broker, "up-pub")
    for q in (0, 1, 2):
        pub.publish("up/t", b"q%d" % q, qos=q, props={"user_property": ups})
    for p in recv_n(sub, 3):
        assert p.props.get("user_property") == ups, p


def test_request_response_properties_forwarded(broker):
    """5.0 §3.3.2.3.5-3.3.2.3.6, §4.10 [MQTT-3.3.2-15], [MQTT-3.3.2-16]: Response
    Topic and Correlation Data go to every subscriber unaltered."""
    subs = [v5(broker, "rr-sub%d" % i) for i in range(2)]
    for s in subs:
        s.subscribe([("rr/req", 1)])
    corr = bytes(range(256))
    v5(broker, "rr-pub").publish("rr/req", b"q", qos=1, props={"response_topic": "rr/resp/42",
                                                                "correlation_data": corr})
    for s in subs:
        p = s.recv_publish()
        assert p.props.get("response_topic") == "rr/resp/42" and p.props.get("correlation_data") == corr, p


@pytest.mark.parametrize("pfi", [0, 1])
def test_payload_format_indicator_and_content_type_forwarded(broker, pfi):
    """5.0 §3.3.2.3.2 [MQTT-3.3.2-4], §3.3.2.3.9 [MQTT-3.3.2-19],
    [MQTT-3.3.2-20]: the Payload Format Indicator and the Content Type are
    sent unaltered to all subscribers."""
    sub = v5(broker, "pfi-sub")
    sub.subscribe([("pfi/t", 1)])
    v5(broker, "pfi-pub").publish("pfi/t", "héllo".encode(), qos=1,
                                  props={"payload_format_indicator": pfi, "content_type": "text/plain; charset=utf-8"})
    p = sub.recv_publish()
    assert p.props.get("payload_format_indicator", 0) == pfi, p
    assert p.props.get("content_type") == "text/plain; charset=utf-8", p
    if pfi:
        assert p.props.get("payload_format_indicator") == 1, p


def test_payload_format_invalid_utf8(broker):
    """5.0 §3.3.2.3.2: with Payload Format Indicator 1 the receiver MAY check
    the payload is UTF-8 and, if not, answer PUBACK/PUBREC 0x99 or DISCONNECT
    0x99 (Payload format invalid). Accepted: either that (and no delivery),
    or normal acceptance with the payload and indicator forwarded unaltered."""
    sub = v5(broker, "pfx-sub")
    sub.subscribe([("pfx/t", 1)])
    pub = v5(broker, "pfx-pub")
    bad = b"\xff\xfe\xc0\xaf"
    pub.send(m.publish("pfx/t", bad, qos=1, pid=1, version=V5, props={"payload_format_indicator": 1}))
    try:
        ack = pub.expect(m.PUBACK, timeout=3)
    except m.Closed:
        ack = None
    if ack is None:
        d = pub.disconnect_packet
        assert d is not None and d.reason == m.RC_PAYLOAD_FORMAT_INVALID, d
        assert quiet(sub) == []
        return
    if ack.reason == m.RC_PAYLOAD_FORMAT_INVALID:
        assert quiet(sub) == []
        return
    assert ack.reason == 0, ack
    p = sub.recv_publish()
    assert p.payload == bad and p.props.get("payload_format_indicator") == 1, p


# ---------------------------------------------------------------------------
# Subscription Identifiers and options


def test_subscription_identifier_delivered(broker):
    """5.0 §3.8.2.1.2, §3.3.4 [MQTT-3.3.4-3]: a message delivered through a
    subscription with a Subscription Identifier carries it; without one, no
    identifier; a re-SUBSCRIBE replaces it; retained messages sent at
    subscribe time carry it too; the largest value (268435455) works."""
    broker_pub = v5(broker, "sid-pub")
    broker_pub.publish("sid/ret", b"r", qos=1, retain=True)
    c = v5(broker, "sid-sub")
    assert c.connack.props.get("subscription_identifier_available", 1) == 1
    c.subscribe([("sid/a", 1)], props={"subscription_identifier": 5})
    c.subscribe([("sid/b", 1)])
    c.subscribe([("sid/ret", 1)], props={"subscription_identifier": 268435455})
    r = c.recv_publish()
    assert r.payload == b"r" and r.props.get("subscription_identifier") == [268435455], r
    broker_pub.publish("sid/a", b"a", qos=1)
    broker_pub.publish("sid/b", b"b", qos=1)
    a, b = recv_n(c, 2)
    assert a.props.get("subscription_identifier") == [5], a
    assert "subscription_identifier" not in b.props, b
    c.subscribe([("sid/a", 1)], props={"subscription_identifier": 6})
    broker_pub.publish("sid/a", b"a2", qos=1)
    p = recv_n(c, 1)[0]
    assert p.props.get("subscription_identifier") == [6], p


def test_subscription_identifiers_on_overlapping_subscriptions(broker):
    """5.0 §3.3.4 [MQTT-3.3.4-3], [MQTT-3.3.4-4], [MQTT-3.3.4-5]: with
    overlapping subscriptions (ids 1 and 2) a single copy carries both ids (in
    any order); if the Server sends one copy per subscription, each carries
    the id of its subscription."""
    c = v5(broker, "sido-sub")
    c.subscribe([("sido/#", 1)], props={"subscription_identifier": 1})
    c.subscribe([("sido/+", 1)], props={"subscription_identifier": 2})
    v5(broker, "sido-pub").publish("sido/x", b"m", qos=1)
    got = recv_n(c, 1) + quiet(c)
    if len(got) == 1:
        assert sorted(got[0].props.get("subscription_identifier", [])) == [1, 2], got
    else:
        assert len(got) == 2, got
        assert sorted(tuple(p.props.get("subscription_identifier", [])) for p in got) == [(1,), (2,)], got


def test_no_local(broker):
    """5.0 §3.8.3.1 [MQTT-3.8.3-3]: with No Local 1, messages published by the
    same ClientID are not forwarded to it; others' are. With No Local 0 the
    client gets its own messages."""
    nl = v5(broker, "nl-client")
    nl.subscribe([("nl/t", {"qos": 1, "nl": 1})])
    own = v5(broker, "own-client")
    own.subscribe([("nl/t", {"qos": 1, "nl": 0})])
    nl.publish("nl/t", b"from-nl", qos=1)
    own.publish("nl/t", b"from-own", qos=1)
    assert payloads(recv_n(nl, 1) + quiet(nl)) == [b"from-own"]
    assert sorted(payloads(recv_n(own, 2))) == [b"from-nl", b"from-own"]


# ---------------------------------------------------------------------------
# Shared Subscriptions


def test_shared_subscription_each_message_to_one_member(broker):
    """5.0 §4.8.2: a message matching a Shared Subscription goes to exactly one
    member of each share group (at the granted QoS [MQTT-4.8.2-3]); other
    groups and non-shared subscriptions each get every message."""
    c = v5(broker, "sh-probe")
    assert c.connack.props.get("shared_subscription_available", 1) == 1
    a, b, g2, plain = (v5(broker, n) for n in ("sh-a", "sh-b", "sh-g2", "sh-plain"))
    for cl in (a, b):
        assert cl.subscribe([("$share/g1/sh/t", 1)]).reasons == [1]
    assert g2.subscribe([("$share/g2/sh/+", 0)]).reasons == [0]
    plain.subscribe([("sh/t", 1)])
    pub = v5(broker, "sh-pub")
    n = 10
    for i in range(n):
        pub.publish("sh/t", b"%d" % i, qos=1)
    want = sorted(b"%d" % i for i in range(n))
    got_plain = recv_n(plain, n)
    got_g2 = recv_n(g2, n)
    assert sorted(payloads(got_plain)) == want and sorted(payloads(got_g2)) == want
    assert all(p.qos == 0 for p in got_g2), "shared delivery above the granted QoS"
    got_a = quiet(a)
    got_b = quiet(b)
    members = payloads(got_a) + payloads(got_b)
    assert sorted(members) == want, "each message exactly once across the group: a=%r b=%r" % (
        payloads(got_a), payloads(got_b))
    assert all(p.topic == "sh/t" for p in got_a + got_b)


def test_shared_subscription_unsubscribe(broker):
    """5.0 §4.8.2, §3.10.4 [MQTT-3.10.4-1]: a shared subscription is removed
    by UNSUBSCRIBE with the same $share filter."""
    a = v5(broker, "shu-a")
    a.subscribe([("$share/g/shu/t", 1)])
    assert a.unsubscribe(["$share/g/shu/t"]).reasons == [0]
    v5(broker, "shu-pub").publish("shu/t", b"x", qos=1)
    assert quiet(a) == []


SHARE_BUG = "accepts this invalid shared-subscription filter (grants QoS)"
INVALID_SHARES = [
    pytest.param("$share//t", marks=pytest.mark.mosquitto_bug(SHARE_BUG), id="empty-share-name"),
    pytest.param("$share/g", marks=pytest.mark.mosquitto_bug(SHARE_BUG), id="no-filter"),
    pytest.param("$share/g/", marks=pytest.mark.mosquitto_bug(SHARE_BUG), id="empty-filter"),
    pytest.param("$share/g+/t", id="plus-in-share-name"),
    pytest.param("$share/g#/t", id="hash-in-share-name"),
]


@pytest.mark.parametrize("filt", INVALID_SHARES)
def test_invalid_shared_subscription(broker, filt):
    """5.0 §4.8.2 [MQTT-4.8.2-1], [MQTT-4.8.2-2]: a Shared Subscription filter
    is $share/ShareName/filter with a non-empty ShareName free of / + # and a
    non-empty filter. Otherwise: SUBACK 0x8F (Topic Filter invalid) or 0x80,
    or the connection closed (optionally DISCONNECT 0x81/0x82/0x8F)."""
    c = v5(broker, "shbad")
    c.send(m.subscribe(1, [(filt, 1)], V5))
    try:
        ack = c.expect(m.SUBACK, timeout=2)
    except (m.Closed, OSError):
        assert_closed_for_error(c, V5, v5_codes={m.RC_MALFORMED, m.RC_PROTOCOL_ERROR, m.RC_TOPIC_FILTER_INVALID})
        return
    assert ack.reasons in ([m.RC_TOPIC_FILTER_INVALID], [0x80]), "invalid share %r granted: %r" % (filt, ack)


# ---------------------------------------------------------------------------
# CONNACK-level features


def test_server_keep_alive_announced(broker_factory):
    """5.0 §3.2.2.3.14 [MQTT-3.2.2-21]: a Server with a maximum keep alive
    (configured 10 s) announces Server Keep Alive <= 10 to a client asking for
    60; the client must then use it."""
    b = broker_factory(max_keepalive=10)
    c = v5(b, "ska", keepalive=60)
    assert 0 < c.connack.props.get("server_keep_alive", 0) <= 10, c.connack


@pytest.mark.mosquitto_bug("2.0.11 refuses to start with max_keepalive below 10 (and checks keep alive only every "
                           "few seconds), so a 1 s Server Keep Alive cannot be exercised")
@pytest.mark.deadline(15)
def test_server_keep_alive_enforced(broker_factory):
    """5.0 §3.2.2.3.14 [MQTT-3.2.2-21], §3.1.2.10 [MQTT-3.1.2-22]: the Server
    enforces the Server Keep Alive it announced (1 s): a silent client is
    closed after ~1.5 s although it asked for 60 s."""
    b = broker_factory(max_keepalive=1)
    c = v5(b, "ska1", keepalive=60)
    assert c.connack.props.get("server_keep_alive") == 1, c.connack
    t0 = time.monotonic()
    assert c.wait_closed(5)
    assert 1.0 <= time.monotonic() - t0 <= 3.0
    assert_closed_for_error(c, V5, v5_codes={m.RC_KEEPALIVE_TIMEOUT})


def test_assigned_client_identifier_resumes_session(broker):
    """5.0 §3.2.2.3.7 [MQTT-3.2.2-16], [MQTT-3.1.3-7]: the Assigned Client
    Identifier is a real ClientID: connecting with it later resumes the
    session created under it."""
    c = broker.client(V5)
    ack = c.connect("", clean=True, props={"session_expiry_interval": 60})
    cid = ack.props.get("assigned_client_identifier")
    assert cid, ack
    c.subscribe([("acid/t", 1)])
    c.disconnect()
    v5(broker, "acid-pub").publish("acid/t", b"kept", qos=1)
    c, ack = connect_session(broker, V5, cid, expiry=60)
    assert ack.session_present == 1, ack
    assert payloads(recv_n(c, 1)) == [b"kept"]


def test_request_problem_information_zero(broker):
    """5.0 §3.1.2.11.7 [MQTT-3.1.2-29]: with Request Problem Information 0 the
    Server MUST NOT send a Reason String or User Properties on any packet
    other than PUBLISH, CONNACK or DISCONNECT — checked on PUBACK/PUBREC 0x10,
    PUBCOMP for an unknown id, SUBACK and UNSUBACK 0x11."""
    c = v5(broker, "rpi0", props={"request_problem_information": 0})
    acks = [c.publish("rpi/none", b"x", qos=1)]
    acks.append(c.publish("rpi/none", b"x", qos=2))
    acks.append(c.last_pubrec)
    c.send(m.pubrel(999, version=V5))
    acks.append(c.expect(m.PUBCOMP))
    acks.append(c.subscribe([("rpi/ok", 1)]))
    acks.append(c.unsubscribe(["rpi/never"]))
    for a in acks:
        assert "reason_string" not in a.props and "user_property" not in a.props, a


def test_reason_strings_respect_client_maximum_packet_size(broker):
    """5.0 §3.4.2.2.2, §3.9.2.1.1, §3.11.2.1.2, §3.7.2.2.2 [MQTT-3.4.2-2],
    [MQTT-3.4.2-3], [MQTT-3.11.2-1], [MQTT-3.11.2-2], [MQTT-3.7.2-2] (and
    [MQTT-3.2.2-19], [MQTT-3.2.2-20] for CONNACK): a Reason String or User
    Property is optional and MUST NOT be sent if it would make the packet
    exceed the client's Maximum Packet Size (24 bytes here): the
    acknowledgements still come, each within 24 bytes, any Reason String a
    well-formed UTF-8 string. (The CONNACK is only checked for a Reason
    String or User Property: its other properties are not optional.)"""
    c = broker.client(V5)
    c.connect("rs-small", props={"maximum_packet_size": 24})
    got = [c.connack]
    got.append(c.publish("rs/nobody", b"x", qos=1))
    got.append(c.publish("rs/nobody", b"x", qos=2))
    got.append(c.last_pubrec)
    c.send(m.pubrel(4000, version=V5))
    got.append(c.expect(m.PUBCOMP))
    got.append(c.subscribe([("rs/t", 1)]))
    got.append(c.unsubscribe(["rs/never"]))
    for p in got:
        if p.type == m.CONNACK and p.size > 24:
            assert "reason_string" not in p.props and "user_property" not in p.props, p
            continue
        assert p.size <= 24, "%d-byte %s exceeds the client's Maximum Packet Size 24: %r" % (p.size, p.name, p)
        assert isinstance(p.props.get("reason_string", ""), str)


def test_request_response_information_zero(broker):
    """5.0 §3.1.2.11.6 [MQTT-3.1.2-28]: with Request Response Information 0
    (also the default) the Server MUST NOT return Response Information."""
    c = v5(broker, "rri0", props={"request_response_information": 0})
    assert "response_information" not in c.connack.props, c.connack
    d = v5(broker, "rri-default")
    assert "response_information" not in d.connack.props, d.connack


def test_connack_properties_well_formed(broker):
    """5.0 §3.2.2.3: CONNACK properties appear at most once (except User
    Property), Receive Maximum and Maximum Packet Size are never 0, Maximum
    QoS is 0 or 1 if present, the availability flags are 0 or 1, and no
    Authentication Method is sent to a client that sent none [MQTT-4.12.0-6]."""
    c = v5(broker, "connack-props")
    p = c.connack.props
    assert not c.connack.duplicate_props, c.connack
    assert p.get("receive_maximum", 1) != 0 and p.get("maximum_packet_size", 1) != 0, p
    assert p.get("maximum_qos", 0) in (0, 1), p
    for k in ("retain_available", "wildcard_subscription_available", "subscription_identifier_available",
              "shared_subscription_available"):
        assert p.get(k, 1) in (0, 1), p
    assert "authentication_method" not in p, p


# ---------------------------------------------------------------------------
# server DISCONNECT, AUTH


@pytest.mark.mosquitto_bug("2.0.11 closes the taken-over connection without sending DISCONNECT 0x8E")
def test_session_takeover_disconnect_reason(broker):
    """5.0 §3.1.4 [MQTT-3.1.4-3], §3.14.2.1: the Server sends the existing
    connection DISCONNECT with Reason Code 0x8E (Session taken over), then
    closes it."""
    first = v5(broker, "takeover5")
    v5(broker, "takeover5")
    d = assert_closed_for_error(first, V5, v5_codes={m.RC_SESSION_TAKEN_OVER})
    assert d is not None, "no DISCONNECT 0x8E before the close"


def test_auth_unknown_method_refused(broker):
    """5.0 §4.12 [MQTT-4.12.0-1]: if the Server does not support the
    Authentication Method in the CONNECT it MAY send CONNACK 0x8C (Bad
    authentication method) or 0x87 (Not authorized) and MUST close the
    connection."""
    c = broker.client(V5)
    c.send(m.connect("authx", V5, props={"authentication_method": "X-UNKNOWN-METHOD",
                                         "authentication_data": b"\x01\x02"}))
    assert_refused_connect(c, V5, v5_codes={m.RC_BAD_AUTH_METHOD, m.RC_NOT_AUTHORIZED})


def test_auth_packet_without_auth_method_is_protocol_error(broker):
    """5.0 §4.12 [MQTT-4.12.0-7]: a Client that sent no Authentication Method
    in CONNECT MUST NOT send AUTH; the Server treats it as a Protocol Error
    and closes (optionally DISCONNECT 0x82)."""
    c = v5(broker, "auth-none")
    c.send(m.auth(m.RC_REAUTHENTICATE, {"authentication_method": "X"}))
    assert_closed_for_error(c, V5, v5_codes={m.RC_PROTOCOL_ERROR, m.RC_BAD_AUTH_METHOD})


def test_client_disconnect_with_properties_accepted(broker):
    """5.0 §3.14.2: a client DISCONNECT may carry a Reason String and User
    Properties; it is a normal disconnection (no Will, [MQTT-3.14.4-3])."""
    w = v5(broker, "dprops-watch")
    w.subscribe([("dprops/will", 1)])
    c = broker.client(V5)
    c.connect("dprops", will={"topic": "dprops/will", "payload": b"no", "qos": 1})
    c.disconnect(reason=0, props={"reason_string": "bye", "user_property": [("why", "test")]})
    assert quiet(w, 0.5) == []


@pytest.mark.vigil_only("Response Information is optional (MAY); vigil gives a per-client prefix")
def test_request_response_information(broker):
    """5.0 §3.1.2.11.6, §3.2.2.3.15, §4.10: a client that sets Request
    Response Information 1 may be given Response Information in the CONNACK;
    vigil answers with a topic prefix of the client's own, usable as the base
    of a Response Topic (a request/response round trip through it works),
    and sends none to a client that did not ask."""
    c = broker.client(V5)
    ack = c.connect("rri-1", clean=True, props={"request_response_information": 1})
    info = ack.props.get("response_information")
    assert info == "vigil/response/rri-1", ack
    other = broker.client(V5)
    ack2 = other.connect("rri-2", clean=True)
    assert "response_information" not in ack2.props, ack2
    # Request/response through the given prefix: the responder answers on
    # the request's Response Topic with its Correlation Data.
    c.subscribe([(info + "/#", 1)])
    other.subscribe([("rri/requests", 1)])
    c.publish("rri/requests", b"ping", qos=1,
              props={"response_topic": info + "/r1", "correlation_data": b"\x01\x02"})
    req = recv_n(other, 1)[0]
    assert req.props.get("response_topic") == info + "/r1"
    other.publish(req.props["response_topic"], b"pong", qos=1,
                  props={"correlation_data": req.props["correlation_data"]})
    resp = recv_n(c, 1)[0]
    assert resp.payload == b"pong" and resp.props.get("correlation_data") == b"\x01\x02"
