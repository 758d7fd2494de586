"""Retained messages: store, replace, delete with an empty payload, delivery
on subscribe (also through + and #), the RETAIN flag on delivery, QoS
downgrade, and the 5.0 subscription options Retain As Published and Retain
Handling — MQTT 3.1.1 §3.3.1.3, §3.8.4 and MQTT 5.0 §3.3.1.3, §3.8.3.1, §3.8.4."""

import pytest

import mqttraw as m
from conformance.util import V311, V5, assert_closed_for_error, payloads, quiet, recv_n


def retained_on_subscribe(broker, version, filt, qos=2, cid="rprobe", options=None):
    """What a fresh subscriber gets right after subscribing to filt (up to a
    PINGREQ barrier and a short grace)."""
    c = broker.connect(version, cid)
    ack = c.subscribe([(filt, options if options is not None else qos)])
    assert ack.reasons[0] < 0x80, ack
    got = quiet(c)
    c.disconnect()
    return got


def test_retained_delivered_on_subscribe(broker, version):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-8]; 5.0
    §3.3.1.3 [MQTT-3.3.1-5], [MQTT-3.3.1-9]: a retained message is stored and
    sent to a later subscriber, with RETAIN 1 (5.0: "These messages are sent
    with the RETAIN flag set to 1"); it outlives the publisher's session
    (3.1.1 [MQTT-3.1.2.7])."""
    pub = broker.connect(version, "rpub")
    pub.publish("ret/a", b"kept", qos=1, retain=True)
    pub.disconnect()
    got = retained_on_subscribe(broker, version, "ret/a")
    assert len(got) == 1, got
    assert (got[0].topic, got[0].payload, got[0].retain) == ("ret/a", b"kept", True), got


def test_retained_replaced(broker, version):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-5], [MQTT-3.3.1-7]; 5.0 [MQTT-3.3.1-5]: a new
    retained message replaces the one stored for the topic."""
    pub = broker.connect(version, "rpub")
    pub.publish("ret/r", b"one", qos=1, retain=True)
    pub.publish("ret/r", b"two", qos=1, retain=True)
    got = retained_on_subscribe(broker, version, "ret/r")
    assert payloads(got) == [b"two"], got


def test_retained_qos0_discards_previous(broker, version):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-7]: a retained QoS 0 message MUST discard the
    message previously retained for the topic (it SHOULD be stored itself,
    but MAY be dropped at any time). 5.0 [MQTT-3.3.1-5]: it replaces the
    previous one and is stored."""
    pub = broker.connect(version, "rpub")
    pub.publish("ret/q0", b"old", qos=1, retain=True)
    pub.publish("ret/q0", b"new", qos=0, retain=True)
    pub.ping()
    got = retained_on_subscribe(broker, version, "ret/q0")
    if version == V311:
        assert payloads(got) in ([b"new"], []), got
    else:
        assert payloads(got) == [b"new"], got


def test_retained_deleted_by_empty_payload(broker, version):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-10], [MQTT-3.3.1-11]; 5.0 [MQTT-3.3.1-6],
    [MQTT-3.3.1-7]: a retained PUBLISH with an empty payload removes the
    retained message, is not itself stored, and is delivered as normal to
    current subscribers."""
    live = broker.connect(version, "rlive")
    live.subscribe([("ret/del", 1)])
    pub = broker.connect(version, "rpub")
    pub.publish("ret/del", b"here", qos=1, retain=True)
    pub.publish("ret/del", b"", qos=1, retain=True)
    got = recv_n(live, 2)
    assert payloads(got) == [b"here", b""], got
    assert retained_on_subscribe(broker, version, "ret/del") == []


def test_non_retained_publish_leaves_retained_alone(broker, version):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-12]; 5.0 [MQTT-3.3.1-8]: with RETAIN 0 the
    Server MUST NOT store the message and MUST NOT remove or replace the
    retained one — not even with an empty payload."""
    pub = broker.connect(version, "rpub")
    pub.publish("ret/keep", b"keep", qos=1, retain=True)
    pub.publish("ret/keep", b"live", qos=1, retain=False)
    pub.publish("ret/keep", b"", qos=1, retain=False)
    pub.publish("ret/none", b"not-retained", qos=1, retain=False)
    assert payloads(retained_on_subscribe(broker, version, "ret/keep")) == [b"keep"]
    assert retained_on_subscribe(broker, version, "ret/none") == []


def test_live_delivery_has_retain_0(broker, version):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-9]: a message sent because it matches an
    established subscription has RETAIN 0 whatever the publisher set. 5.0
    [MQTT-3.3.1-12]: with Retain As Published 0 (the default) likewise."""
    live = broker.connect(version, "rlive")
    live.subscribe([("ret/live", 1)])
    pub = broker.connect(version, "rpub")
    pub.publish("ret/live", b"r", qos=1, retain=True)
    pub.publish("ret/live", b"n", qos=1, retain=False)
    got = recv_n(live, 2)
    assert [(p.payload, p.retain) for p in got] == [(b"r", False), (b"n", False)], got


def test_retained_through_wildcards(broker, version):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-6], §4.7; 5.0 §3.3.1.3 [MQTT-3.3.1-9], §4.7:
    a new subscription gets the last retained message of EACH matching topic,
    through + and # alike, and nothing that does not match."""
    pub = broker.connect(version, "rpub")
    for t in ("w/a/c", "w/b/c", "w/a", "w/a/c/d", "x/a/c"):
        pub.publish(t, t.encode(), qos=1, retain=True)
    cases = {
        "w/+/c": {"w/a/c", "w/b/c"},
        "w/#": {"w/a/c", "w/b/c", "w/a", "w/a/c/d"},
        "+/a/#": {"w/a/c", "w/a", "w/a/c/d", "x/a/c"},
        "#": {"w/a/c", "w/b/c", "w/a", "w/a/c/d", "x/a/c"},
        "w/a/c": {"w/a/c"},
        "w/+": {"w/a"},
    }
    for i, (filt, want) in enumerate(sorted(cases.items())):
        got = retained_on_subscribe(broker, version, filt, cid="rw%d" % i)
        assert {p.topic for p in got} == want, "%s got %r" % (filt, got)
        assert len(got) == len(want), "a retained message arrived twice for %s: %r" % (filt, got)
        assert all(p.retain and p.payload == p.topic.encode() for p in got), got


@pytest.mark.parametrize("pub_qos,sub_qos", [(2, 0), (2, 1), (1, 0), (1, 2), (0, 2)])
def test_retained_qos_is_minimum(broker, version, pub_qos, sub_qos):
    """3.1.1 §3.3.1.3 [MQTT-3.3.1-5] (the message is stored with its QoS),
    §3.8.4 [MQTT-3.8.4-6]; 5.0 [MQTT-3.8.4-8]: a retained message is delivered
    at min(its QoS, the granted QoS) — downgraded, never upgraded."""
    pub = broker.connect(version, "rpub")
    pub.publish("ret/qos", b"q", qos=pub_qos, retain=True)
    pub.ping()
    got = retained_on_subscribe(broker, version, "ret/qos", qos=sub_qos)
    if version == V311 and pub_qos == 0 and not got:
        pytest.skip("3.1.1 server chose not to keep a QoS 0 retained message ([MQTT-3.3.1-7] allows it)")
    assert len(got) == 1 and got[0].qos == min(pub_qos, sub_qos), got


def test_resubscribe_resends_retained(broker, version):
    """3.1.1 §3.8.4 [MQTT-3.8.4-3]: a SUBSCRIBE with a filter identical to an
    existing one replaces it and "any existing retained messages matching the
    Topic Filter MUST be re-sent". 5.0 [MQTT-3.8.4-4], [MQTT-3.3.1-9]: likewise
    with Retain Handling 0."""
    pub = broker.connect(version, "rpub")
    pub.publish("ret/again", b"r", qos=1, retain=True)
    c = broker.connect(version, "rresub")
    c.subscribe([("ret/again", 1)])
    assert payloads(recv_n(c, 1)) == [b"r"]
    c.subscribe([("ret/again", 1)])
    got = recv_n(c, 1)
    assert payloads(got) == [b"r"] and got[0].retain, got
    assert quiet(c) == []


def test_v5_retain_as_published(broker):
    """5.0 §3.8.3.1, §3.3.1.3 [MQTT-3.3.1-12], [MQTT-3.3.1-13]: with Retain As
    Published 1 the Server forwards the RETAIN flag as the publisher set it;
    with 0 it is cleared on live delivery."""
    rap = broker.connect(V5, "rap1")
    rap.subscribe([("ret/rap", {"qos": 1, "rap": 1})])
    norap = broker.connect(V5, "rap0")
    norap.subscribe([("ret/rap", {"qos": 1, "rap": 0})])
    pub = broker.connect(V5, "rpub")
    pub.publish("ret/rap", b"R", qos=1, retain=True)
    pub.publish("ret/rap", b"N", qos=1, retain=False)
    assert [(p.payload, p.retain) for p in recv_n(rap, 2)] == [(b"R", True), (b"N", False)]
    assert [(p.payload, p.retain) for p in recv_n(norap, 2)] == [(b"R", False), (b"N", False)]


def test_v5_retain_handling_0_always_sends(broker):
    """5.0 §3.8.3.1 [MQTT-3.3.1-9]: Retain Handling 0 sends the matching
    retained messages at every subscribe, also when the subscription exists."""
    broker.connect(V5, "rpub").publish("rh/zero", b"r", qos=1, retain=True)
    c = broker.connect(V5, "rh0")
    c.subscribe([("rh/zero", {"qos": 1, "rh": 0})])
    assert payloads(recv_n(c, 1)) == [b"r"]
    c.subscribe([("rh/zero", {"qos": 1, "rh": 0})])
    assert payloads(recv_n(c, 1)) == [b"r"]


def test_v5_retain_handling_1_only_new_subscription(broker):
    """5.0 §3.8.3.1 [MQTT-3.3.1-10]: with Retain Handling 1 retained messages
    are sent only if the subscription did not already exist."""
    broker.connect(V5, "rpub").publish("rh/one", b"r", qos=1, retain=True)
    c = broker.connect(V5, "rh1")
    c.subscribe([("rh/one", {"qos": 1, "rh": 1})])
    assert payloads(recv_n(c, 1)) == [b"r"]
    c.subscribe([("rh/one", {"qos": 1, "rh": 1})])
    assert quiet(c) == [], "Retain Handling 1 re-sent retained messages for an existing subscription"
    c.unsubscribe(["rh/one"])
    c.subscribe([("rh/one", {"qos": 1, "rh": 1})])
    assert payloads(recv_n(c, 1)) == [b"r"], "a subscription made anew must get the retained message"


def test_v5_retain_handling_2_never_sends(broker):
    """5.0 §3.8.3.1 [MQTT-3.3.1-11]: with Retain Handling 2 the Server MUST NOT
    send retained messages at subscribe time; live messages still flow."""
    pub = broker.connect(V5, "rpub")
    pub.publish("rh/two", b"r", qos=1, retain=True)
    c = broker.connect(V5, "rh2")
    c.subscribe([("rh/two", {"qos": 1, "rh": 2})])
    assert quiet(c) == []
    pub.publish("rh/two", b"live", qos=1)
    assert payloads(recv_n(c, 1)) == [b"live"]


def test_v5_retain_handling_3_is_malformed(broker):
    """5.0 §3.8.3.1: "It is a Protocol Error to send a Retain Handling value
    of 3" — the Server closes the connection (optionally DISCONNECT 0x82/0x81)."""
    c = broker.connect(V5, "rh3")
    c.send(m.subscribe(1, [("rh/three", {"qos": 1, "rh": 3})], V5))
    assert_closed_for_error(c, V5, v5_codes={m.RC_PROTOCOL_ERROR, m.RC_MALFORMED})


def test_v5_retained_message_keeps_properties(broker):
    """5.0 §3.3.2.3 [MQTT-3.3.2-4], [MQTT-3.3.2-15], [MQTT-3.3.2-16],
    [MQTT-3.3.2-17], [MQTT-3.3.2-18], [MQTT-3.3.2-20]: the properties of a
    stored retained message (payload format, content type, response topic,
    correlation data, user properties in order) go out unaltered with it."""
    props = {"payload_format_indicator": 1, "content_type": "text/plain", "response_topic": "resp/x",
             "correlation_data": b"\x00\x01corr", "user_property": [("a", "1"), ("b", "2"), ("a", "3")]}
    broker.connect(V5, "rpub").publish("ret/props", b"hello", qos=1, retain=True, props=props)
    got = retained_on_subscribe(broker, V5, "ret/props")
    assert len(got) == 1, got
    p = got[0].props
    for k, v in props.items():
        assert p.get(k) == v, "property %s: sent %r, got %r" % (k, v, p.get(k))
