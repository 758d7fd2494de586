"""SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK and topic matching: return and
reason codes, replacement of an identical filter, overlapping subscriptions,
invalid filters, unsubscribe semantics, wildcard rules and $-topics —
MQTT 3.1.1 §3.8-3.11, §4.7 and MQTT 5.0 §3.8-3.11, §4.7."""

import pytest

import mqttraw as m
from conformance.util import V311, V5, assert_closed_for_error, payloads, quiet, recv_n


def test_suback_codes_in_order(broker, version):
    """3.1.1 §3.8.4 [MQTT-3.8.4-1], [MQTT-3.8.4-2], [MQTT-3.8.4-4],
    [MQTT-3.8.4-5], §3.9.3 [MQTT-3.9.3-1], [MQTT-3.9.3-2]; 5.0 [MQTT-3.8.4-1],
    [MQTT-3.8.4-2], [MQTT-3.8.4-5], [MQTT-3.8.4-6], [MQTT-3.8.4-7],
    [MQTT-3.9.3-1]: one SUBACK with the SUBSCRIBE's Packet Identifier and one
    code per filter, in order, each the granted QoS. (A server that supports
    QoS 2 — no Maximum QoS in its 5.0 CONNACK — grants what was asked.)"""
    c = broker.connect(version, "suback")
    filters = [("s/a", 2), ("s/b", 0), ("s/+/c", 1), ("s/#", 2), ("s/d", 1)]
    c.send(m.subscribe(0x1234, filters, version))
    ack = c.expect(m.SUBACK)
    assert ack.pid == 0x1234 and ack.flags == 0, ack
    maxq = c.connack.props.get("maximum_qos", 2) if version == V5 else 2
    assert ack.reasons == [min(q, maxq) for _, q in filters], ack


def test_subscribe_then_deliver_each_filter(broker, version):
    """3.1.1 §3.8.4 [MQTT-3.8.4-4]; 5.0 [MQTT-3.8.4-5]: a multi-filter
    SUBSCRIBE acts as a sequence of SUBSCRIBEs: each filter is in force."""
    c = broker.connect(version, "multi")
    c.subscribe([("mf/a", 1), ("mf/b", 1), ("mf/c/+", 1)])
    pub = broker.connect(version, "multi-pub")
    for t in ("mf/a", "mf/b", "mf/c/x", "mf/d"):
        pub.publish(t, t.encode(), qos=1)
    got = recv_n(c, 3) + quiet(c)
    assert sorted(payloads(got)) == [b"mf/a", b"mf/b", b"mf/c/x"], got


def test_identical_filter_replaces_subscription(broker, version):
    """3.1.1 §3.8.4 [MQTT-3.8.4-3]; 5.0 [MQTT-3.8.4-3]: a SUBSCRIBE with a
    filter identical to an existing one replaces it (new QoS) — the client
    gets one copy per message, at the new QoS."""
    c = broker.connect(version, "replace")
    assert c.subscribe([("rep/t", 0)]).reasons == [0]
    assert c.subscribe([("rep/t", 2)]).reasons == [2]
    broker.connect(version, "replace-pub").publish("rep/t", b"x", qos=2)
    got = recv_n(c, 1) + quiet(c)
    assert [(p.payload, p.qos) for p in got] == [(b"x", 2)], got


def test_overlapping_subscriptions(broker, version):
    """3.1.1 §3.3.5 [MQTT-3.3.5-1]; 5.0 §3.3.4 [MQTT-3.3.4-2]: when several
    subscriptions of one client match, the Server MUST deliver the message
    respecting the maximum QoS of the matching subscriptions; it MAY deliver
    further copies, one per additional matching subscription, each at that
    subscription's QoS. Asserted: one copy at QoS 2 and at most one more, at
    QoS 0 — nothing else is normative."""
    c = broker.connect(version, "overlap")
    c.subscribe([("ov/#", 0), ("ov/+", 2)])
    broker.connect(version, "overlap-pub").publish("ov/x", b"m", qos=2)
    got = recv_n(c, 1) + quiet(c)
    assert 1 <= len(got) <= 2 and all(p.payload == b"m" for p in got), got
    assert sorted(p.qos for p in got)[-1] == 2, "no copy at the maximum QoS: %r" % got
    if len(got) == 2:
        assert sorted(p.qos for p in got) == [0, 2], got


INVALID_FILTERS = ["a/#/b", "a#", "a/b#", "#/", "+a", "a+/b", "a/+b", ""]


@pytest.mark.parametrize("filt", INVALID_FILTERS, ids=[repr(f) for f in INVALID_FILTERS])
def test_invalid_topic_filter(broker, version, filt):
    """3.1.1 §4.7.1 [MQTT-4.7.1-2], [MQTT-4.7.1-3], §4.7.3 [MQTT-4.7.3-1];
    5.0 [MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.3-1]: # must be last and
    alone in its level, + must occupy a whole level, filters are at least
    one character. Accepted reactions: close the connection (5.0: optionally
    after DISCONNECT 0x81/0x82/0x8F), or a SUBACK failure code for that filter
    (3.1.1: 0x80; 5.0: 0x8F or 0x80) — and then nothing is ever delivered
    through it."""
    c = broker.connect(version, "badfilter")
    c.send(m.subscribe(3, [(filt, 1)], version))
    try:
        ack = c.expect(m.SUBACK, timeout=2)
    except (m.Closed, OSError):
        ack = None
    if ack is None:
        assert_closed_for_error(c, version, v5_codes={m.RC_MALFORMED, m.RC_PROTOCOL_ERROR,
                                                      m.RC_TOPIC_FILTER_INVALID})
        return
    assert ack.pid == 3 and len(ack.reasons) == 1, ack
    allowed = {0x80} if version == V311 else {0x80, m.RC_TOPIC_FILTER_INVALID}
    assert ack.reasons[0] in allowed, "invalid filter %r was granted: %r" % (filt, ack)
    broker.connect(version, "badfilter-pub").publish("a/b", b"x", qos=1)
    assert quiet(c) == []


def test_unsubscribe_stops_delivery(broker, version):
    """3.1.1 §3.10.4 [MQTT-3.10.4-1], [MQTT-3.10.4-2], [MQTT-3.10.4-4]; 5.0
    [MQTT-3.10.4-1], [MQTT-3.10.4-2], [MQTT-3.10.4-4], [MQTT-3.10.4-5],
    §3.11.3 [MQTT-3.11.3-1]: UNSUBSCRIBE deletes the subscription: UNSUBACK
    with the same id (5.0: reason 0x00) and no more deliveries."""
    c = broker.connect(version, "unsub")
    c.subscribe([("us/t", 1)])
    pub = broker.connect(version, "unsub-pub")
    pub.publish("us/t", b"before", qos=1)
    assert payloads(recv_n(c, 1)) == [b"before"]
    c.send(m.unsubscribe(0x4321, ["us/t"], version))
    ack = c.expect(m.UNSUBACK)
    assert ack.pid == 0x4321 and ack.flags == 0, ack
    if version == V5:
        assert ack.reasons == [0x00], ack
    else:
        assert ack.body == b"\x43\x21", "3.1.1 UNSUBACK has only the Packet Identifier: %r" % ack.body
    pub.publish("us/t", b"after", qos=1)
    assert quiet(c) == []


def test_unsubscribe_without_subscription_still_acked(broker, version):
    """3.1.1 §3.10.4 [MQTT-3.10.4-5]; 5.0 [MQTT-3.10.4-5], §3.11.3
    [MQTT-3.11.3-2]: even when no subscription is deleted the Server MUST
    answer with UNSUBACK (5.0: reason 0x11 No subscription existed)."""
    c = broker.connect(version, "unsub-none")
    ack = c.unsubscribe(["never/subscribed"])
    if version == V5:
        assert ack.reasons == [m.RC_NO_SUBSCRIPTION_EXISTED], ack
    c.ping()


def test_unsubscribe_multiple_one_unsuback(broker, version):
    """3.1.1 §3.10.4 [MQTT-3.10.4-6]; 5.0 [MQTT-3.10.4-6], §3.11.3
    [MQTT-3.11.3-1], [MQTT-3.11.3-2]: several filters in one UNSUBSCRIBE are
    processed as a sequence and answered with a single UNSUBACK whose 5.0
    reason codes follow the filter order (0x00 deleted, 0x11 none existed)."""
    c = broker.connect(version, "unsub-multi")
    c.subscribe([("um/a", 1), ("um/c", 1)])
    ack = c.unsubscribe(["um/a", "um/b", "um/c"])
    if version == V5:
        assert ack.reasons == [0x00, m.RC_NO_SUBSCRIPTION_EXISTED, 0x00], ack
    assert c.publishes_until_ping() == [] and not c.drain(m.UNSUBACK), "more than one UNSUBACK"
    pub = broker.connect(version, "unsub-multi-pub")
    pub.publish("um/a", b"a", qos=1)
    pub.publish("um/c", b"c", qos=1)
    assert quiet(c) == []


def test_unsubscribe_compares_filters_literally(broker, version):
    """3.1.1 §3.10.4 [MQTT-3.10.4-1]; 5.0 [MQTT-3.10.4-1]: UNSUBSCRIBE filters
    are compared character by character with the subscribed ones; a filter
    that merely matches (a/+ vs a/b) deletes nothing."""
    c = broker.connect(version, "unsub-lit")
    c.subscribe([("ul/b", 1), ("ul/+", 0)])
    ack = c.unsubscribe(["ul/#"])
    if version == V5:
        assert ack.reasons == [m.RC_NO_SUBSCRIPTION_EXISTED], ack
    c.unsubscribe(["ul/+"])
    broker.connect(version, "unsub-lit-pub").publish("ul/b", b"still", qos=1)
    got = recv_n(c, 1) + quiet(c)
    assert [(p.payload, p.qos) for p in got] == [(b"still", 1)], got


def test_unsubscribe_completes_inflight_qos2(broker, version):
    """3.1.1 §3.10.4 [MQTT-3.10.4-3]; 5.0 [MQTT-3.10.4-3]: after unsubscribing,
    the Server MUST complete the delivery of QoS 1/2 messages it has started
    to send: our PUBREC for a PUBLISH received before the UNSUBSCRIBE is
    still answered with PUBREL."""
    c = broker.connect(version, "unsub-q2")
    c.subscribe([("uq/t", 2)])
    broker.connect(version, "unsub-q2-pub").publish("uq/t", b"started", qos=2)
    p = c.recv_publish(ack=False)
    c.unsubscribe(["uq/t"])
    c.send(m.pubrec(p.pid, version=version))
    rel = c.expect(m.PUBREL)
    assert rel.pid == p.pid
    c.send(m.pubcomp(p.pid, version=version))
    c.ping()


def subscriber(broker, version, filt, i):
    c = broker.connect(version, "match%d" % i)
    ack = c.subscribe([(filt, 1)])
    assert ack.reasons == [1], (filt, ack)
    return c


MATCHING = [
    # filter, topic names that must match, topic names that must not
    ("sport/tennis/player1/#", ["sport/tennis/player1", "sport/tennis/player1/ranking",
                                "sport/tennis/player1/score/wimbledon"], ["sport/tennis/player2"]),
    ("sport/#", ["sport", "sport/tennis"], ["sports", "sportx/tennis"]),
    ("sport/tennis/+", ["sport/tennis/player1", "sport/tennis/"], ["sport/tennis/player1/ranking", "sport/tennis"]),
    ("sport/+", ["sport/"], ["sport"]),
    ("+/+", ["/finance", "a/b"], ["finance", "a/b/c"]),
    ("/+", ["/finance"], ["finance", "a/finance"]),
    ("+", ["finance"], ["/finance", "a/b"]),
    ("+/tennis/#", ["sport/tennis", "sport/tennis/x"], ["sport/golf"]),
    ("#", ["a", "/", "a/b/c"], []),
    ("ACCOUNTS", ["ACCOUNTS"], ["Accounts", "accounts"]),
    ("a b/c d", ["a b/c d"], ["ab/cd"]),
    ("a//b", ["a//b"], ["a/b"]),
    ("x/\ufeffy", ["x/\ufeffy"], ["x/y"]),
]


@pytest.mark.parametrize("filt,yes,no", MATCHING, ids=[f for f, _, _ in MATCHING])
def test_topic_matching(broker, version, filt, yes, no):
    """3.1.1 §4.7.1-4.7.3 [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-4],
    [MQTT-1.5.3-3], [MQTT-3.3.2-3]; 5.0 §4.7 [MQTT-4.7.1-1], [MQTT-4.7.1-2],
    [MQTT-4.7.3-4], [MQTT-1.5.4-3], [MQTT-3.3.2-3]: the wildcard semantics of
    the specification's examples (# also matches the parent level, + matches
    an empty level), case sensitivity, no normalisation (empty levels and a
    U+FEFF stay significant), and delivered topic names match the filter."""
    c = subscriber(broker, version, filt, 0)
    pub = broker.connect(version, "match-pub")
    for t in no + yes:
        pub.publish(t, t.encode("utf-8"), qos=1)
    got = recv_n(c, len(yes)) + quiet(c)
    assert sorted(p.topic for p in got) == sorted(yes), "filter %r: got %r" % (filt, [p.topic for p in got])
    assert all(p.payload == p.topic.encode("utf-8") for p in got)


def test_dollar_topics_not_matched_by_leading_wildcards(broker, version):
    """3.1.1 §4.7.2 [MQTT-4.7.2-1]; 5.0 §4.7.2 [MQTT-4.7.2-1]: filters starting
    with # or + do not match topic names starting with $; filters that start
    with the $ level do."""
    subs = {f: subscriber(broker, version, f, i)
            for i, f in enumerate(["#", "+/x", "+/#", "$conf/#", "$conf/+", "$conf/x"])}
    pub = broker.connect(version, "dollar-pub")
    pub.publish("$conf/x", b"dollar", qos=1)
    pub.publish("plain/x", b"plain", qos=1)
    for f in ("$conf/#", "$conf/+", "$conf/x"):
        got = recv_n(subs[f], 1) + quiet(subs[f], 0.1)
        assert payloads(got) == [b"dollar"], (f, got)
    for f in ("#", "+/x", "+/#"):
        got = recv_n(subs[f], 1) + quiet(subs[f], 0.1)
        assert payloads(got) == [b"plain"], "%s must not match $conf/x: %r" % (f, got)


@pytest.mark.deadline(40)
def test_many_filters_subscribe_unsubscribe_resubscribe(broker, version):
    """3.1.1 §3.8.4 / 5.0 §3.8.4 [MQTT-3.8.4-3], §3.10.4 [MQTT-3.10.4-1]: with
    hundreds of filters on one session, a repeated filter replaces its
    subscription (one delivery, the new QoS), an unsubscribed filter stops
    delivering, every other filter keeps delivering. (vigil indexes a
    session's filters once it has a few dozen; this walks that index through
    growth, deletions in the middle of probe runs and re-insertion.)"""
    c = broker.connect(version, "many-filters")
    n = 300
    for start in range(0, n, 50):
        ack = c.subscribe([("mf/%d/+" % i, 1) for i in range(start, start + 50)])
        assert list(ack.reasons) == [1] * 50, ack
    gone = set(range(0, n, 3))
    for start in range(0, n, 60):
        c.unsubscribe(["mf/%d/+" % i for i in range(start, start + 60) if i in gone])
    # Re-subscribe some remaining filters at QoS 0: replaces, never duplicates.
    requalified = set(range(1, n, 7)) - gone
    c.subscribe([("mf/%d/+" % i, 0) for i in sorted(requalified)])
    pub = broker.connect(version, "many-filters-pub")
    for i in range(n):
        pub.publish("mf/%d/x" % i, b"%d" % i, qos=1)
    expected = sorted(i for i in range(n) if i not in gone)
    got = recv_n(c, len(expected), timeout=15)
    assert sorted(int(p.payload) for p in got) == expected
    for p in got:
        i = int(p.payload)
        assert p.qos == (0 if i in requalified else 1), (i, p.qos)
    assert quiet(c) == []
