"""Malformed packets and protocol violations that the specifications say
MUST close the Network Connection — one parametrized case per statement
(and variant), for each protocol version the statement exists in.

3.1.1: §2.2.2 [MQTT-2.2.2-2], §4.8 [MQTT-4.8.0-1]: the Server closes the
connection (3.1.1 servers never send DISCONNECT).
5.0: §4.13 [MQTT-4.13.1-1]: the Server closes the connection, and MAY first
send DISCONNECT with 0x81 (Malformed Packet), 0x82 (Protocol Error) or a more
specific code; when it does, the code must be one listed for the case.

Packets in the "connect" phase are sent instead of a valid CONNECT (the
Server may answer with a CONNACK >= 0x80 in 5.0 only); the others are sent
on an established connection. A watcher subscribed to "#" checks that no
malformed PUBLISH is ever delivered."""

import pytest

import mqttraw as m
from conformance.util import V311, V5, assert_closed_for_error, assert_refused_connect, quiet

MAL, PROT = m.RC_MALFORMED, m.RC_PROTOCOL_ERROR
BOTH = (V311, V5)
ONLY5 = (V5,)


def pub(topic="mal/t", payload=b"x", **kw):
    return lambda v: m.publish(topic, payload, version=v, **kw)


def raw(data):
    return lambda v: data


def _props_publish(props, topic="mal/t"):
    """A PUBLISH QoS 1 whose property block is exactly `props` (bytes)."""
    return lambda v: m.fixed(m.PUBLISH, 0x02, m.enc_str(topic) + m.u16(1) + m.enc_props(props) + b"x")


FLAG_BUG = "ignores reserved fixed-header flag bits of PUBACK/PUBREC/PUBCOMP/PINGREQ"
SERVER_PACKET_BUG = "silently ignores SUBACK/UNSUBACK/PINGRESP sent by a client"


class Case:
    def __init__(self, ident, stmt, versions, build, phase="connected", codes=(MAL, PROT), bug=None,
                 vigil_only=None):
        self.ident, self.stmt, self.versions, self.build = ident, stmt, versions, build
        self.phase, self.codes, self.bug, self.vigil_only = phase, set(codes), bug, vigil_only


CASES = [
    # -- fixed header flags (3.1.1 Table 2.2 / 5.0 Table 2-2) ------------------------------------
    Case("pubrel-flags-0", "[MQTT-3.6.1-1], [MQTT-2.2.2-2] / 5.0 [MQTT-3.6.1-1], [MQTT-2.1.3-1]", BOTH,
         lambda v: m.pubrel(1, version=v, flags=0)),
    Case("subscribe-flags-0", "[MQTT-3.8.1-1]", BOTH, lambda v: m.subscribe(1, [("a", 0)], v, flags=0)),
    Case("subscribe-flags-3", "[MQTT-3.8.1-1]", BOTH, lambda v: m.subscribe(1, [("a", 0)], v, flags=3)),
    Case("unsubscribe-flags-0", "[MQTT-3.10.1-1]", BOTH, lambda v: m.unsubscribe(1, ["a"], v, flags=0)),
    Case("puback-flags-1", "[MQTT-2.2.2-1], [MQTT-2.2.2-2] / 5.0 [MQTT-2.1.3-1]", BOTH,
         lambda v: m.puback(1, version=v, flags=1), bug=FLAG_BUG),
    Case("pubrec-flags-2", "[MQTT-2.2.2-2] / 5.0 [MQTT-2.1.3-1]", BOTH,
         lambda v: m.pubrec(1, version=v, flags=2), bug=FLAG_BUG),
    Case("pubcomp-flags-8", "[MQTT-2.2.2-2] / 5.0 [MQTT-2.1.3-1]", BOTH,
         lambda v: m.pubcomp(1, version=v, flags=8), bug=FLAG_BUG),
    Case("pingreq-flags-1", "[MQTT-2.2.2-2] / 5.0 [MQTT-2.1.3-1]", BOTH, lambda v: m.pingreq(flags=1), bug=FLAG_BUG),
    Case("disconnect-flags-1", "[MQTT-3.14.1-1], [MQTT-2.2.2-2] / 5.0 [MQTT-3.14.1-1]", BOTH,
         lambda v: m.fixed(m.DISCONNECT, 1, b"")),
    Case("connect-flags-1", "[MQTT-2.2.2-2] / 5.0 [MQTT-2.1.3-1]", BOTH,
         lambda v: bytes([0x11]) + m.connect("hdr", v)[1:], phase="connect"),
    Case("auth-flags-1", "5.0 [MQTT-3.15.1-1]", ONLY5, lambda v: m.auth(0x18, flags=1)),
    # -- PUBLISH fixed header -----------------------------------------------------------------------
    Case("publish-qos3", "[MQTT-3.3.1-4]", BOTH, pub(flags=0x06, pid=1)),
    Case("publish-qos3-dup-retain", "[MQTT-3.3.1-4]", BOTH, pub(flags=0x0F, pid=1)),
    Case("publish-dup-on-qos0", "[MQTT-3.3.1-2], [MQTT-2.2.2-2] / 5.0 [MQTT-3.3.1-2], [MQTT-2.1.3-1]", BOTH,
         pub(flags=0x08), bug="accepts (and delivers) a QoS 0 PUBLISH with DUP 1"),
    # -- packet identifiers -------------------------------------------------------------------------
    Case("publish-qos1-pid-0", "[MQTT-2.3.1-1] / 5.0 [MQTT-2.2.1-3]", BOTH, pub(qos=1, pid=0)),
    Case("publish-qos2-pid-0", "[MQTT-2.3.1-1] / 5.0 [MQTT-2.2.1-3]", BOTH, pub(qos=2, pid=0)),
    Case("subscribe-pid-0", "[MQTT-2.3.1-1] / 5.0 [MQTT-2.2.1-3]", BOTH, lambda v: m.subscribe(0, [("a", 0)], v)),
    Case("unsubscribe-pid-0", "[MQTT-2.3.1-1] / 5.0 [MQTT-2.2.1-3]", BOTH, lambda v: m.unsubscribe(0, ["a"], v)),
    # -- topic names --------------------------------------------------------------------------------
    Case("topic-plus", "[MQTT-3.3.2-2], [MQTT-4.7.1-1] / 5.0 [MQTT-3.3.2-2], [MQTT-4.7.0-1]", BOTH,
         pub("mal/+/t"), codes=(MAL, PROT, m.RC_TOPIC_NAME_INVALID)),
    Case("topic-hash", "[MQTT-3.3.2-2], [MQTT-4.7.1-1] / 5.0 [MQTT-3.3.2-2], [MQTT-4.7.0-1]", BOTH,
         pub("mal/#"), codes=(MAL, PROT, m.RC_TOPIC_NAME_INVALID)),
    Case("topic-bare-hash-qos1", "[MQTT-3.3.2-2] / 5.0 [MQTT-3.3.2-2]", BOTH, pub("#", qos=1, pid=1),
         codes=(MAL, PROT, m.RC_TOPIC_NAME_INVALID)),
    Case("topic-nul", "[MQTT-1.5.3-2], [MQTT-4.7.3-2] / 5.0 [MQTT-1.5.4-2], [MQTT-4.7.3-2]", BOTH,
         pub(b"mal/\x00t"), codes=(MAL, PROT, m.RC_TOPIC_NAME_INVALID)),
    Case("topic-surrogate", "[MQTT-1.5.3-1], [MQTT-3.3.2-1] / 5.0 [MQTT-1.5.4-1], [MQTT-3.3.2-1]", BOTH,
         pub(b"mal/\xed\xbf\xbf"), codes=(MAL, PROT, m.RC_TOPIC_NAME_INVALID)),
    Case("topic-overlong", "[MQTT-1.5.3-1] / 5.0 [MQTT-1.5.4-1]", BOTH, pub(b"mal/\xc0\xaf"),
         codes=(MAL, PROT, m.RC_TOPIC_NAME_INVALID)),
    Case("topic-empty-v311", "[MQTT-4.7.3-1], [MQTT-3.3.2-1]", (V311,), pub("")),
    Case("topic-empty-no-alias", "5.0 §3.3.2.3.4 (zero-length Topic Name without Topic Alias), [MQTT-4.7.3-1]",
         ONLY5, pub(""), codes=(MAL, PROT, m.RC_TOPIC_NAME_INVALID)),
    Case("topic-length-beyond-packet", "[MQTT-3.3.2-1], §2.2.3 / 5.0 §4.13 Malformed Packet", BOTH,
         raw(bytes([0x30, 0x04, 0x00, 0x10, ord("a"), ord("b")]))),
    # -- SUBSCRIBE / UNSUBSCRIBE payload -------------------------------------------------------------
    Case("subscribe-empty", "[MQTT-3.8.3-3] / 5.0 [MQTT-3.8.3-2]", BOTH,
         lambda v: m.fixed(m.SUBSCRIBE, 2, m.u16(1) + (m.enc_props(None) if v == V5 else b""))),
    Case("unsubscribe-empty", "[MQTT-3.10.3-2] / 5.0 [MQTT-3.10.3-2]", BOTH,
         lambda v: m.fixed(m.UNSUBSCRIBE, 2, m.u16(1) + (m.enc_props(None) if v == V5 else b""))),
    Case("subscribe-qos3", "[MQTT-3-8.3-4] / 5.0 §3.8.3.1 (Maximum QoS 3 is a Protocol Error)", BOTH,
         lambda v: m.subscribe(1, [("a", 3)], v)),
    Case("subscribe-reserved-bits", "[MQTT-3-8.3-4] / 5.0 [MQTT-3.8.3-5]", BOTH,
         lambda v: m.subscribe(1, [("a", 0x40 | 1)], v)),
    Case("subscribe-reserved-bits-v311-upper", "[MQTT-3-8.3-4]", (V311,), lambda v: m.subscribe(1, [("a", 0x04)], v)),
    Case("subscribe-filter-nul", "[MQTT-4.7.3-2], [MQTT-1.5.3-2] / 5.0 [MQTT-4.7.3-2], [MQTT-1.5.4-2]", BOTH,
         lambda v: m.subscribe(1, [(b"a/\x00", 0)], v), codes=(MAL, PROT, m.RC_TOPIC_FILTER_INVALID)),
    Case("subscribe-filter-bad-utf8", "[MQTT-3.8.3-1], [MQTT-1.5.3-1] / 5.0 [MQTT-3.8.3-1], [MQTT-1.5.4-1]", BOTH,
         lambda v: m.subscribe(1, [(b"a/\xed\xa0\x80", 0)], v), codes=(MAL, PROT, m.RC_TOPIC_FILTER_INVALID)),
    Case("subscribe-missing-options-byte", "[MQTT-3.8.3-1] / 5.0 §3.8.3, §4.13 Malformed Packet", BOTH,
         lambda v: m.fixed(m.SUBSCRIBE, 2, m.u16(1) + (m.enc_props(None) if v == V5 else b"") + m.enc_str("a"))),
    Case("unsubscribe-filter-bad-utf8", "[MQTT-3.10.3-1] / 5.0 [MQTT-3.10.3-1]", BOTH,
         lambda v: m.unsubscribe(1, [b"a\xff"], v), codes=(MAL, PROT, m.RC_TOPIC_FILTER_INVALID)),
    # -- lengths and packet types ----------------------------------------------------------------------
    Case("remaining-length-5-bytes", "§2.2.3 (at most 4 bytes) / 5.0 §1.5.5, §2.1.4", BOTH,
         raw(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))),
    Case("remaining-length-not-minimal", "5.0 [MQTT-1.5.5-1]", ONLY5, raw(bytes([0xC0, 0x80, 0x00])),
         bug="accepts a non-minimal Variable Byte Integer remaining length"),
    Case("packet-type-0", "§2.2.1 (reserved type) [MQTT-4.8.0-1] / 5.0 §2.1.2, §4.13", BOTH,
         raw(bytes([0x00, 0x00]))),
    Case("packet-type-15-v311", "§2.2.1 (reserved type 15) [MQTT-4.8.0-1]", (V311,), raw(bytes([0xF0, 0x00]))),
    Case("client-sends-connack", "[MQTT-4.8.0-1] / 5.0 §4.13 Protocol Error", BOTH,
         lambda v: m.fixed(m.CONNACK, 0, b"\x00\x00" + (b"\x00" if v == V5 else b""))),
    Case("client-sends-suback", "[MQTT-4.8.0-1] / 5.0 §4.13 Protocol Error", BOTH,
         lambda v: m.fixed(m.SUBACK, 0, m.u16(1) + (b"\x00" if v == V5 else b"") + b"\x00"),
         bug=SERVER_PACKET_BUG),
    Case("client-sends-unsuback", "[MQTT-4.8.0-1] / 5.0 §4.13 Protocol Error", BOTH,
         lambda v: m.fixed(m.UNSUBACK, 0, m.u16(1) + (b"\x00\x00" if v == V5 else b"")),
         bug=SERVER_PACKET_BUG),
    Case("client-sends-pingresp", "[MQTT-4.8.0-1] / 5.0 §4.13 Protocol Error", BOTH, raw(bytes([0xD0, 0x00])),
         bug=SERVER_PACKET_BUG),
    # -- CONNECT-phase -------------------------------------------------------------------------------
    Case("connect-receive-maximum-0", "5.0 §3.1.2.11.3 (Receive Maximum 0 is a Protocol Error)", ONLY5,
         lambda v: m.connect("rm0", V5, props={"receive_maximum": 0}), phase="connect"),
    Case("connect-maximum-packet-size-0", "5.0 §3.1.2.11.4 (Maximum Packet Size 0 is a Protocol Error)", ONLY5,
         lambda v: m.connect("mps0", V5, props={"maximum_packet_size": 0}), phase="connect"),
    Case("connect-request-problem-info-2", "5.0 §3.1.2.11.7 (value other than 0/1 is a Protocol Error)", ONLY5,
         lambda v: m.connect("rpi2", V5, props={"request_problem_information": 2}), phase="connect"),
    Case("connect-request-response-info-2", "5.0 §3.1.2.11.6 (value other than 0/1 is a Protocol Error)", ONLY5,
         lambda v: m.connect("rri2", V5, props={"request_response_information": 2}), phase="connect"),
    Case("connect-duplicate-property", "5.0 §3.1.2.11.2 (Session Expiry more than once is a Protocol Error)",
         ONLY5, lambda v: m.connect("dup", V5, props=[("session_expiry_interval", 1), ("session_expiry_interval", 2)]),
         phase="connect"),
    Case("connect-property-not-allowed", "5.0 §2.2.2.2 (an identifier not valid for the packet: Malformed)", ONLY5,
         lambda v: m.connect("bad", V5, props={"topic_alias": 1}), phase="connect"),
    Case("connect-will-duplicate-property", "5.0 §3.1.3.2 (Will Delay Interval more than once)", ONLY5,
         lambda v: m.connect("wdup", V5, will={"topic": "w", "payload": b"p",
                                              "props": [("will_delay_interval", 1), ("will_delay_interval", 1)]}),
         phase="connect"),
    Case("connect-unknown-property", "5.0 §2.2.2.2 (unknown identifier: Malformed Packet)", ONLY5,
         lambda v: m.connect("unk", V5, props=bytes([0x7F, 0x00])), phase="connect"),
    Case("connect-property-length-overrun", "5.0 §2.2.2.1, §4.13 Malformed Packet", ONLY5,
         lambda v: m.connect("over", V5, props=bytes([0x11, 0x00, 0x00])), phase="connect"),
    # -- v5 properties on an established connection ----------------------------------------------------
    Case("publish-duplicate-property", "5.0 §3.3.2.3.3 (Message Expiry more than once is a Protocol Error)", ONLY5,
         _props_publish(bytes([0x02, 0, 0, 0, 9, 0x02, 0, 0, 0, 9]))),
    Case("publish-property-not-allowed", "5.0 §2.2.2.2 (Session Expiry in PUBLISH: Malformed)", ONLY5,
         _props_publish(bytes([0x11, 0, 0, 0, 9]))),
    Case("publish-unknown-property", "5.0 §2.2.2.2 Malformed Packet", ONLY5, _props_publish(bytes([0x7E, 0x00]))),
    Case("publish-property-bad-varint", "5.0 [MQTT-1.5.5-1], §1.5.5 (5-byte Variable Byte Integer)", ONLY5,
         lambda v: m.fixed(m.PUBLISH, 0x02, m.enc_str("mal/t") + m.u16(1) + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x01]))),
    Case("publish-property-length-beyond-packet", "5.0 §2.2.2.1, §4.13 Malformed Packet", ONLY5,
         lambda v: m.fixed(m.PUBLISH, 0x02, m.enc_str("mal/t") + m.u16(1) + bytes([0x20, 0x01]))),
    Case("publish-subscription-identifier", "5.0 [MQTT-3.3.4-6]", ONLY5,
         pub(qos=1, pid=1, props={"subscription_identifier": 3}),
         bug="accepts a Subscription Identifier in a client's PUBLISH"),
    Case("publish-user-property-bad-utf8", "5.0 [MQTT-1.5.7-1], [MQTT-1.5.4-1]", ONLY5,
         pub(qos=1, pid=1, props={"user_property": [(b"k\xff", "v")]})),
    Case("publish-content-type-bad-utf8", "5.0 [MQTT-3.3.2-19], [MQTT-1.5.4-1]", ONLY5,
         pub(qos=1, pid=1, props={"content_type": b"text/\xc0\x80"})),
    Case("publish-response-topic-wildcard", "5.0 [MQTT-3.3.2-14]", ONLY5,
         pub(qos=1, pid=1, props={"response_topic": "reply/+"}),
         bug="accepts a Response Topic containing wildcards"),
    Case("subscribe-subscription-identifier-0", "5.0 §3.8.2.1.2 (value 0 is a Protocol Error)", ONLY5,
         lambda v: m.subscribe(1, [("a", 0)], V5, props={"subscription_identifier": 0})),
    Case("subscribe-property-not-allowed", "5.0 §2.2.2.2 (Topic Alias in SUBSCRIBE: Malformed)", ONLY5,
         lambda v: m.subscribe(1, [("a", 0)], V5, props={"topic_alias": 1})),
    Case("subscribe-no-local-on-shared", "5.0 [MQTT-3.8.3-4]", ONLY5,
         lambda v: m.subscribe(1, [("$share/g/a", {"qos": 1, "nl": 1})], V5),
         bug="grants a Shared Subscription with No Local 1"),
    Case("disconnect-bad-property", "5.0 §3.14.2.2 (Topic Alias in DISCONNECT: Malformed)", ONLY5,
         lambda v: m.disconnect(0, {"topic_alias": 1}, V5)),
]


def _params():
    out = []
    for c in CASES:
        for v in c.versions:
            marks = []
            if c.bug:
                marks.append(pytest.mark.mosquitto_bug(c.bug))
            if c.vigil_only:
                marks.append(pytest.mark.vigil_only(c.vigil_only))
            out.append(pytest.param(c, v, marks=marks, id="%s-%s" % (c.ident, "v311" if v == V311 else "v5")))
    return out


@pytest.mark.parametrize("case,version", _params())
def test_malformed_closes_connection(broker, case, version):
    """See the module docstring; each case's statement ids are in CASES (the
    `stmt` field, shown on failure)."""
    watcher = broker.connect(version, "mal-watch")
    watcher.subscribe([("#", 2)])
    c = broker.client(version)
    if case.phase == "connect":
        c.send(case.build(version))
        assert_refused_connect(c, version, v5_codes={x for x in case.codes} | {m.RC_MALFORMED, m.RC_PROTOCOL_ERROR})
    else:
        c.connect("mal-client")
        c.send(case.build(version))
        try:
            assert_closed_for_error(c, version, v5_codes=case.codes, allow_other=False)
        except AssertionError as e:
            raise AssertionError("%s %s: %s" % (case.ident, case.stmt, e))
    leaked = quiet(watcher, 0.1)
    assert leaked == [], "%s: a malformed packet's message was delivered: %r" % (case.ident, leaked)
    watcher.ping()
