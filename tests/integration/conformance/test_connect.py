"""CONNECT / CONNACK: validation of the CONNECT packet, client identifiers,
Will and credential flags, keep alive, and takeover — MQTT 3.1.1 §3.1-3.2
and MQTT 5.0 §3.1-3.2. Tests taking `version` run for both protocols."""

import string
import time

import pytest

import mqttraw as m
from conformance.util import V311, V5, assert_closed_for_error, assert_refused_connect, assert_still_open


def test_successful_connack(broker, version):
    """3.1.1 §3.2.2 [MQTT-3.1.4-4], [MQTT-3.2.2-1]; 5.0 §3.2.2 [MQTT-3.1.4-5],
    [MQTT-3.2.2-1], [MQTT-3.2.2-2]: a valid CONNECT with Clean Session/Start 1
    gets CONNACK 0x00 with Session Present 0 and reserved ack flag bits 0,
    and the connection then works (PINGREQ -> PINGRESP [MQTT-3.12.4-1])."""
    c = broker.client(version)
    ack = c.connect("okclient", clean=True)
    assert ack.reason == 0 and ack.session_present == 0
    assert ack.body[0] == 0, "Connect Acknowledge Flags bits 7-1 are reserved (0): %r" % ack.body[:1]
    if version == V311:
        assert len(ack.body) == 2
    assert not ack.duplicate_props, "CONNACK repeats %s" % ack.duplicate_props
    c.ping()
    c.disconnect()


def test_client_id_of_23_alphanumerics_is_allowed(broker, version):
    """3.1.1 §3.1.3.1 [MQTT-3.1.3-5]; 5.0 §3.1.3.1 [MQTT-3.1.3-5]: the Server
    MUST allow ClientIDs of 1 to 23 bytes of [0-9a-zA-Z]."""
    alphabet = string.digits + string.ascii_lowercase + string.ascii_uppercase
    for cid in (alphabet[:23], alphabet[-23:], "Z"):
        c = broker.client(version)
        c.connect(cid)
        c.ping()
        c.disconnect()


@pytest.mark.parametrize("name", ["MQTX", "mqtt", "MQTT\x00"])
def test_bad_protocol_name_closes(broker, version, name):
    """3.1.1 §3.1.2.1 [MQTT-3.1.2-1], [MQTT-3.1.4-1]: a protocol name other
    than "MQTT" (case-sensitive) is not this protocol: the Server closes
    without a CONNACK. ("MQIsdp" is left out: a server may speak MQTT 3.1
    and process it by that specification, which [MQTT-3.1.2-1] allows.) 5.0 §3.1.2.1 [MQTT-3.1.2-1]:
    it MAY send CONNACK 0x84, then MUST close."""
    c = broker.client(version)
    c.send(m.connect("badname", version, proto_name=name))
    assert_refused_connect(c, version, v5_codes={m.RC_UNSUPPORTED_PROTOCOL_VERSION})


@pytest.mark.parametrize("level", [0, 2, 6, 255])
def test_unsupported_protocol_level(broker, version, level):
    """3.1.1 §3.1.2.2 [MQTT-3.1.2-2]: an unsupported Protocol Level gets
    CONNACK return code 0x01 and then the connection is closed. 5.0 §3.1.2.2
    [MQTT-3.1.2-2]: the Server MAY send CONNACK 0x84 and MUST close.
    Interpretation: the server cannot know which version the peer speaks, so
    for the 5.0-shaped packet either the 3.1.1 CONNACK (0x01, 2 bytes) or a
    5.0 CONNACK 0x84 is accepted; for the 3.1.1-shaped packet 0x01 is required."""
    c = broker.client(version)
    c.send(m.connect("badlevel", version, level=level))
    assert c.wait_closed(3), "connection not closed after an unsupported protocol level"
    got = c.drain()
    if version == V311:
        assert len(got) == 1 and got[0].type == m.CONNACK and got[0].body == b"\x00\x01", got
    else:
        assert len(got) <= 1, got
        if got:
            assert got[0].type == m.CONNACK, got
            assert got[0].body == b"\x00\x01" or got[0].body[:2] == b"\x00\x84", got


def test_reserved_connect_flag_closes(broker, version):
    """3.1.1 §3.1.2.3 [MQTT-3.1.2-3]: the Server MUST validate that the
    reserved flag (bit 0 of Connect Flags) is 0 and disconnect the Client if
    it is not. 5.0 §3.1.2.3 [MQTT-3.1.2-3]: likewise; it is a Malformed Packet."""
    c = broker.client(version)
    c.send(m.connect("reserved", version, flags=0x03))
    assert_refused_connect(c, version, v5_codes={m.RC_MALFORMED, m.RC_PROTOCOL_ERROR})


BAD_UTF8 = [
    ("nul", b"ab\x00cd"),               # U+0000 [MQTT-1.5.3-2] / [MQTT-1.5.4-2]
    ("surrogate", b"ab\xed\xa0\x80"),   # U+D800 [MQTT-1.5.3-1] / [MQTT-1.5.4-1]
    ("overlong", b"ab\xc0\xaf"),        # overlong "/" (not well-formed per RFC 3629)
    ("overlong-nul", b"ab\xc0\x80"),    # overlong U+0000
    ("invalid-byte", b"ab\xff"),
    ("truncated", b"ab\xe2\x82"),
    ("above-10ffff", b"ab\xf4\x90\x80\x80"),
]


@pytest.mark.parametrize("case,raw", BAD_UTF8, ids=[c for c, _ in BAD_UTF8])
def test_ill_formed_utf8_client_id_closes(broker, version, case, raw):
    """3.1.1 §1.5.3 [MQTT-1.5.3-1], [MQTT-1.5.3-2], §3.1.3.1 [MQTT-3.1.3-4],
    [MQTT-3.1.4-1]: ill-formed UTF-8 (surrogates, overlong forms, U+0000, ...)
    in the Client Identifier: close without CONNACK. 5.0 §1.5.4
    [MQTT-1.5.4-1], [MQTT-1.5.4-2], [MQTT-3.1.3-4]: Malformed Packet; close
    (a CONNACK 0x81 first is allowed)."""
    c = broker.client(version)
    c.send(m.connect(raw, version))
    assert_refused_connect(c, version, v5_codes={m.RC_MALFORMED, m.RC_CLIENT_ID_NOT_VALID})


@pytest.mark.parametrize("field", ["will_topic", "username"])
def test_ill_formed_utf8_in_other_connect_strings_closes(broker, version, field):
    """3.1.1 [MQTT-3.1.3-10] (Will Topic), [MQTT-3.1.3-11] (User Name),
    [MQTT-1.5.3-1]; 5.0 [MQTT-3.1.3-11], [MQTT-3.1.3-12], [MQTT-1.5.4-1]:
    these are UTF-8 Encoded Strings; a surrogate in one closes the connection."""
    c = broker.client(version)
    bad = b"x\xed\xb0\x80"
    if field == "will_topic":
        c.send(m.connect("u8will", version, will={"topic": bad, "payload": b"p"}))
    else:
        c.send(m.connect("u8user", version, username=bad))
    assert_refused_connect(c, version, v5_codes={m.RC_MALFORMED})


def test_zero_length_client_id_clean(broker, version):
    """3.1.1 §3.1.3.1 [MQTT-3.1.3-6]: a Server MAY accept a zero-byte ClientId
    (with Clean Session 1) and then MUST assign a unique one; if it does not
    accept it, CONNACK 0x02 then close [MQTT-3.1.3-9]. 5.0 [MQTT-3.1.3-6],
    [MQTT-3.1.3-7], [MQTT-3.2.2-16]: if accepted, the CONNACK MUST carry an
    Assigned Client Identifier, different for two such clients; otherwise
    CONNACK 0x85 and close [MQTT-3.1.3-8]."""
    c1 = broker.client(version)
    c1.send(m.connect("", version, clean=True))
    a1 = c1.read_packet(3)
    assert a1.type == m.CONNACK, a1
    if a1.reason != 0:
        assert a1.reason == (m.CONNACK_ID_REJECTED if version == V311 else m.RC_CLIENT_ID_NOT_VALID), a1
        assert c1.wait_closed(3)
        return
    c1.ping()
    if version == V5:
        id1 = a1.props.get("assigned_client_identifier")
        assert id1, "CONNACK for a zero-length ClientID lacks Assigned Client Identifier: %r" % a1
        c2 = broker.client(version)
        c2.send(m.connect("", version, clean=True))
        a2 = c2.read_packet(3)
        assert a2.type == m.CONNACK and a2.reason == 0, a2
        id2 = a2.props.get("assigned_client_identifier")
        assert id2 and id2 != id1, "assigned identifiers must be unique: %r %r" % (id1, id2)
        assert c1.is_open(), "the second anonymous client took over the first one"
        c2.disconnect()
    c1.disconnect()


def test_zero_length_client_id_without_clean_session_v311(broker):
    """3.1.1 §3.1.3.1 [MQTT-3.1.3-8]: a zero-byte ClientId with CleanSession 0
    gets CONNACK return code 0x02 (Identifier rejected), then close."""
    c = broker.client(V311)
    c.send(m.connect("", V311, clean=False))
    assert_refused_connect(c, V311, v311_code=m.CONNACK_ID_REJECTED)


def test_zero_length_client_id_without_clean_start_v5(broker):
    """5.0 §3.1.3.1 [MQTT-3.1.3-6], [MQTT-3.1.3-7]: unlike 3.1.1, 5.0 does not
    tie a zero-length ClientID to Clean Start; if the Server accepts it, it
    assigns an identifier and returns it in the CONNACK (Session Present 0,
    since the session is new [MQTT-3.2.2-3]); otherwise CONNACK 0x85."""
    c = broker.client(V5)
    c.send(m.connect("", V5, clean=False))
    a = c.read_packet(3)
    assert a.type == m.CONNACK, a
    if a.reason == 0:
        assert a.props.get("assigned_client_identifier"), a
        assert a.session_present == 0, a
        c.disconnect()
    else:
        assert a.reason == m.RC_CLIENT_ID_NOT_VALID, a
        assert c.wait_closed(3)


def test_connect_refused_discards_following_data(broker, version):
    """3.1.1 §3.1.4 [MQTT-3.1.4-5]; 5.0 §3.1.4 [MQTT-3.1.4-6]: if the Server
    rejects the CONNECT it MUST NOT process any data sent after it. A retained
    PUBLISH pipelined behind a refused CONNECT must not be stored."""
    c = broker.client(version)
    bad = m.connect("refused", version, level=6)
    c.send(bad + m.publish("refused/after", b"must-not-be-stored", qos=0, retain=True, version=version))
    assert c.wait_closed(3)
    probe = broker.connect(version)
    probe.subscribe([("refused/#", 0)])
    got = probe.publishes_until_ping()
    got += probe.messages_for(0.3)
    assert got == [], "data after a refused CONNECT was processed: %r" % got
    probe.disconnect()


def test_second_connect_closes(broker, version):
    """3.1.1 §3.1 [MQTT-3.1.0-2]; 5.0 §3.1 [MQTT-3.1.0-2]: a second CONNECT on
    a connection is a protocol violation: the Server closes the connection
    (5.0: optionally after DISCONNECT 0x82)."""
    c = broker.connect(version, "twice")
    c.send(m.connect("twice", version))
    assert_closed_for_error(c, version, v5_codes={m.RC_PROTOCOL_ERROR})


@pytest.mark.parametrize("first", ["PINGREQ", "PUBLISH", "SUBSCRIBE", "DISCONNECT"])
def test_first_packet_not_connect_closes(broker, version, first):
    """3.1.1 §3.1 [MQTT-3.1.0-1], §4.8 [MQTT-4.8.0-1]; 5.0 §3.1 [MQTT-3.1.0-1],
    §4.13: the first packet must be CONNECT; anything else is a protocol
    violation and the connection is closed without any answer (in 5.0 no
    DISCONNECT may precede a successful CONNACK [MQTT-3.14.0-1]). The
    PUBLISH must not be delivered to anyone."""
    watcher = broker.connect(version, "watch-first")
    watcher.subscribe([("first/#", 0)])
    c = broker.client(version)
    pkt = {"PINGREQ": m.pingreq(),
           "PUBLISH": m.publish("first/x", b"nope", version=version),
           "SUBSCRIBE": m.subscribe(1, [("first/#", 0)], version),
           "DISCONNECT": m.disconnect(version=version)}[first]
    c.send(pkt)
    assert c.wait_closed(3), "connection not closed after %s as first packet" % first
    assert c.drain() == [], "server answered a connection that never sent CONNECT"
    assert watcher.publishes_until_ping() + watcher.messages_for(0.2) == []
    watcher.disconnect()


@pytest.mark.parametrize("case", ["will-qos-without-will", "will-retain-without-will", "will-qos-3",
                                  "will-flag-without-fields"])
def test_will_flag_inconsistencies_close(broker, version, case):
    """3.1.1 §3.1.2.5-3.1.2.7 [MQTT-3.1.2-9], [MQTT-3.1.2-11], [MQTT-3.1.2-13],
    [MQTT-3.1.2-14], [MQTT-3.1.2-15], [MQTT-3.1.4-1]; 5.0 [MQTT-3.1.2-9],
    [MQTT-3.1.2-11], [MQTT-3.1.2-13] and §3.1.2.6 (Will QoS 3 is a Malformed
    Packet): with Will Flag 0 the Will QoS and Will Retain bits must be 0;
    Will QoS must not be 3; with Will Flag 1 the Will Topic and Payload must
    be present. Otherwise the connection is closed (3.1.1: no CONNACK)."""
    if case == "will-qos-without-will":
        pkt = m.connect("willbad", version, flags=0x02 | 0x08)
    elif case == "will-retain-without-will":
        pkt = m.connect("willbad", version, flags=0x02 | 0x20)
    elif case == "will-qos-3":
        pkt = m.connect("willbad", version, will={"topic": "w/t", "payload": b"p", "qos": 3})
    else:
        pkt = m.connect("willbad", version, flags=0x02 | 0x04)  # no Will fields follow the ClientID
    c = broker.client(version)
    c.send(pkt)
    assert_refused_connect(c, version, v5_codes={m.RC_MALFORMED, m.RC_PROTOCOL_ERROR})


@pytest.mark.parametrize("case", ["username-flag-without-username", "username-without-flag", "trailing-bytes"])
def test_connect_payload_must_match_flags(broker, version, case):
    """3.1.1 §3.1.3 [MQTT-3.1.2-18], [MQTT-3.1.2-19], [MQTT-3.1.3-1],
    [MQTT-3.1.4-1]; 5.0 [MQTT-3.1.2-16], [MQTT-3.1.2-17], [MQTT-3.1.4-1]: the
    payload fields present must be exactly those the flags announce; a
    missing User Name or extra bytes make the CONNECT malformed: close."""
    if case == "username-flag-without-username":
        pkt = m.connect("flagbad", version, flags=0x82)
    elif case == "username-without-flag":
        pkt = m.connect("flagbad", version, extra=m.enc_str("someone"))
    else:
        pkt = m.connect("flagbad", version, extra=b"\x00")
    c = broker.client(version)
    c.send(pkt)
    assert_refused_connect(c, version, v5_codes={m.RC_MALFORMED, m.RC_PROTOCOL_ERROR})


def test_password_without_username_v311_closes(broker):
    """3.1.1 §3.1.2.9 [MQTT-3.1.2-22]: if the User Name Flag is 0 the Password
    Flag MUST be 0; a CONNECT breaking that is closed without CONNACK
    [MQTT-3.1.4-1]."""
    c = broker.client(V311)
    c.send(m.connect("pwonly", V311, password=b"secret"))
    assert_refused_connect(c, V311)


def test_password_without_username_v5_allowed(broker):
    """5.0 §3.1.2.9: "This version of the protocol allows the sending of a
    Password with no User Name" — the CONNECT is well-formed. With anonymous
    access allowed it is accepted (CONNACK 0x00)."""
    c = broker.client(V5)
    ack = c.connect("pwonly5", password=b"secret")
    assert ack.reason == 0
    c.ping()
    c.disconnect()


@pytest.mark.deadline(15)
@pytest.mark.mosquitto_bug("2.0.11 checks keep alive only every few seconds: a keepalive=1 client is closed "
                           "after 4-6 s instead of within 1.5 s")
def test_keepalive_enforced(broker, version):
    """3.1.1 §3.1.2.10 [MQTT-3.1.2-24]; 5.0 §3.1.2.10 [MQTT-3.1.2-22]: with
    Keep Alive K > 0, if the Server receives no packet within 1.5 K it MUST
    close the connection. K = 1: the close comes no earlier than K and no
    later than 1.5 K plus scheduling slack (1.5 s). In 5.0 a DISCONNECT before
    the close, if any, carries 0x8D (Keep Alive timeout)."""
    c = broker.client(version)
    c.connect("idle", keepalive=1)
    t0 = time.monotonic()
    assert c.wait_closed(5), "an idle keepalive=1 connection was not closed"
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 3.0, "closed after %.2f s; keep alive 1 s allows 1.5 s" % elapsed
    assert_closed_for_error(c, version, v5_codes={m.RC_KEEPALIVE_TIMEOUT})


@pytest.mark.deadline(15)
def test_keepalive_reset_by_any_packet(broker, version):
    """3.1.1 §3.1.2.10 [MQTT-3.1.2-23], [MQTT-3.1.2-24]; 5.0 [MQTT-3.1.2-20],
    [MQTT-3.1.2-22]: any control packet (PINGREQ or another) within the keep
    alive period keeps the connection open — here for 3 s at K = 1."""
    c = broker.client(version)
    c.connect("busy", keepalive=1)
    end = time.monotonic() + 3.0
    i = 0
    while time.monotonic() < end:
        if i % 2:
            c.ping(2)
        else:
            c.publish("ka/alive", b"x", qos=1)  # PUBACK as the round trip
        i += 1
        time.sleep(0.5)
    assert_still_open(c)
    c.disconnect()


@pytest.mark.deadline(15)
def test_keepalive_zero_disables_timeout(broker, version):
    """3.1.1 §3.1.2.10; 5.0 §3.1.2.10: a Keep Alive of 0 turns the mechanism
    off: an idle connection is not closed for inactivity (watched 2.5 s)."""
    c = broker.client(version)
    ack = c.connect("nokeep", keepalive=0)
    if version == V5 and ack.props.get("server_keep_alive", 65535) < 3:
        pytest.skip("server imposes Server Keep Alive %d" % ack.props["server_keep_alive"])
    assert not c.wait_closed(2.5), "keepalive=0 connection was closed"
    assert_still_open(c)
    c.disconnect()


def test_client_id_takeover(broker, version):
    """3.1.1 §3.1.4 [MQTT-3.1.4-2]: if the ClientId represents a Client
    already connected, the Server MUST disconnect the existing Client.
    5.0 §3.1.4 [MQTT-3.1.4-3]: it MUST close the existing Client's connection
    (the DISCONNECT 0x8E it sends first is checked in test_v5_features). The
    new connection works."""
    first = broker.connect(version, "same-id")
    second = broker.connect(version, "same-id")
    assert first.wait_closed(3), "the older connection with the same ClientID was not closed"
    got = first.drain()
    if version == V5:
        assert all(p.type == m.DISCONNECT for p in got), got
    else:
        assert not [p for p in got if p.type == m.DISCONNECT], got
    second.ping()
    second.disconnect()
