"""MQTT 3.1.1 broker behaviour with real clients: wildcard routing, QoS 0/1
delivery, $SYS isolation, unsubscribe, PUBACK to paho, keepalive, client-id
takeover, and CONNECT validation (protocol name and level)."""

import json
import socket
import threading
import time

import pytest

from vigiltest import CONNACK, Closed, connect_packet, mosquitto_pub, paho_client, wait_until


def test_wildcards_qos0_and_qos1(vigil, mqtt_sub):
    plus = mqtt_sub(vigil, ["a/+/c"], qos=1)
    hash_ = mqtt_sub(vigil, ["a/#"], qos=1)

    mosquitto_pub(vigil.host, vigil.port, "a/b/c", "m0", qos=0)
    mosquitto_pub(vigil.host, vigil.port, "a/b/c", "m1", qos=1)
    mosquitto_pub(vigil.host, vigil.port, "a/x/d", "m2", qos=1)
    mosquitto_pub(vigil.host, vigil.port, "a/b/c/d", "m3", qos=1)
    mosquitto_pub(vigil.host, vigil.port, "a", "m4", qos=1)      # "a/#" matches its parent (§4.7.1.2)
    mosquitto_pub(vigil.host, vigil.port, "b/b/c", "m5", qos=1)  # matches neither

    got_hash = hash_.wait_count(5, 5)
    got_plus = plus.wait_count(2, 5)
    time.sleep(0.5)  # anything extra would arrive by now
    got_hash, got_plus = hash_.snapshot(), plus.snapshot()

    assert sorted(p for _, p, _ in got_plus) == ["m0", "m1"], got_plus
    assert sorted(p for _, p, _ in got_hash) == ["m0", "m1", "m2", "m3", "m4"], got_hash
    # Delivered QoS is min(published QoS, subscribed QoS).
    qos_of = {p: q for _, p, q in got_hash}
    assert qos_of["m0"] == 0 and qos_of["m1"] == 1, got_hash
    topics = {p: t for t, p, _ in got_hash}
    assert topics["m3"] == "a/b/c/d" and topics["m4"] == "a"


def test_sys_topics_not_matched_by_hash(vigil, mqtt_sub):
    everything = mqtt_sub(vigil, ["#"], qos=0)
    plus = mqtt_sub(vigil, ["+/vigil/stats"], qos=0)
    sys_ = mqtt_sub(vigil, ["$SYS/#"], qos=0)
    mosquitto_pub(vigil.host, vigil.port, "x/y", "hello", qos=1)
    everything.wait_count(1, 5)
    # Stats go out every 200 ms in these tests: $SYS/# must see several.
    sys_msgs = sys_.wait_count(3, 5)
    assert all(t.startswith("$SYS/") for t, _, _ in sys_msgs), sys_msgs
    assert sum(t == "$SYS/vigil/stats" for t, _, _ in sys_msgs) >= 3, sys_msgs
    got = everything.snapshot()
    assert [t for t, _, _ in got] == ["x/y"], "'#' must not match $SYS topics: %r" % got[:5]
    assert plus.snapshot() == [], "'+/...' must not match $SYS topics"


def test_unsubscribe_stops_delivery(vigil):
    sub = vigil.client("unsub-sub")
    pub = vigil.client("unsub-pub")
    assert sub.subscribe([("u/t", 1)]) == [1]
    pub.publish("u/t", b"one", qos=1)
    topic, payload, _ = sub.next_message(5)
    assert (topic, payload) == ("u/t", b"one")
    sub.unsubscribe(["u/t"])
    pub.publish("u/t", b"two", qos=1)
    assert sub.messages_for(1.0) == []
    sub.ping()  # still connected
    sub.disconnect()
    pub.disconnect()


def test_overlapping_subscriptions_deliver_once(vigil):
    # MQTT 3.1.1 §3.3.5: a client with several matching filters may get the
    # message once per filter or once in total; vigil merges (topic.h).
    sub = vigil.client("overlap-sub")
    sub.subscribe([("o/#", 0), ("o/+", 1)])
    vigil.client("overlap-pub").publish("o/x", b"p", qos=1)
    msgs = sub.messages_for(1.0)
    assert len(msgs) == 1 and msgs[0][2] == 1, msgs


def test_paho_qos1_puback_and_delivery(vigil):
    received = []
    got = threading.Event()
    subscribed = threading.Event()

    sub = paho_client("paho-sub")
    sub.on_message = lambda c, u, m: (received.append((m.topic, m.payload, m.qos)), got.set())
    sub.on_subscribe = lambda c, u, mid, granted: subscribed.set()
    sub.on_connect = lambda c, u, f, rc: c.subscribe("p/q", qos=1)
    sub.connect(vigil.host, vigil.port, keepalive=30)
    sub.loop_start()

    acked = []
    pub = paho_client("paho-pub")
    pub.on_publish = lambda c, u, mid: acked.append(mid)
    pub.connect(vigil.host, vigil.port, keepalive=30)
    pub.loop_start()
    try:
        assert subscribed.wait(5), "no SUBACK for paho subscriber"
        info = pub.publish("p/q", b"hello-paho", qos=1)
        info.wait_for_publish(5)
        assert wait_until(lambda: info.mid in acked, 5), "paho publisher got no PUBACK"
        assert got.wait(5), "subscriber received nothing"
        assert received == [("p/q", b"hello-paho", 1)]
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


def test_pingreq_keeps_connection_alive(vigil):
    c = vigil.client("pinger", keepalive=1)
    start = time.monotonic()
    while time.monotonic() - start < 4.0:
        c.ping(2)
        time.sleep(0.5)
    assert not c.wait_closed(0.2), "connection closed although the client kept pinging"
    c.disconnect()


def test_keepalive_enforced(vigil):
    before = vigil.stats()
    c = vigil.client("sleeper", keepalive=1)
    t0 = time.monotonic()
    assert c.wait_closed(6), "server did not close an idle keepalive=1 connection"
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 3.5, "closed after %.2f s, expected about 1.5 s" % elapsed
    after = vigil.wait_stats(lambda s: s["disconnect.keepalive_timeout"] > before["disconnect.keepalive_timeout"])
    assert after["disconnect.keepalive_timeout"] == before["disconnect.keepalive_timeout"] + 1


def test_keepalive_zero_means_no_timeout(vigil):
    c = vigil.client("no-keepalive", keepalive=0)
    assert not c.wait_closed(2.5)
    c.ping()
    c.disconnect()


def test_client_id_takeover(vigil):
    before = vigil.stats()
    first = vigil.client("same-id")
    first.subscribe([("take/over", 0)])
    second = vigil.client("same-id")
    assert first.wait_closed(3), "first connection with the same client id was not closed"
    second.ping()
    # The new session is the live one: it can publish and subscribe.
    second.subscribe([("take/over", 0)])
    second.publish("take/over", b"x", qos=1)
    assert second.next_message(5)[1] == b"x"
    second.disconnect()
    after = vigil.wait_stats(lambda s: s["disconnect.takeover"] > before["disconnect.takeover"])
    assert after["disconnect.takeover"] == before["disconnect.takeover"] + 1


def test_unsupported_protocol_level_gets_connack_1(vigil):
    c = vigil.raw()
    c.send(connect_packet("level6", level=6))
    t, _, body = c.read_packet(5)
    assert t == CONNACK and len(body) == 2, (t, body)
    assert body[1] == 1, "expected CONNACK return code 1 (unacceptable protocol level), got %d" % body[1]
    assert c.wait_closed(3), "connection not closed after CONNACK 1"


def test_mqtt31_mqisdp_accepted(vigil):
    c = vigil.raw()
    c.send(connect_packet("old-client", proto_name="MQIsdp", level=3))
    t, _, body = c.read_packet(5)
    assert t == CONNACK and body[1] == 0, (t, body)
    c.ping()
    c.disconnect()


@pytest.mark.parametrize("name", ["MQTX", "mqtt", ""])
def test_bad_protocol_name_closed_without_connack(vigil, name):
    c = vigil.raw()
    c.send(connect_packet("badname", proto_name=name, level=4))
    try:
        p = c.read_packet(5)
    except socket.timeout:
        pytest.fail("connection with protocol name %r neither answered nor closed" % name)
    except Closed:
        p = None  # closed: what we want
    assert p is None, "expected close without CONNACK, got packet type %d" % p[0]


STATS_KEYS = [
    "connections.current", "connections.total", "connections.refused", "disconnect.client", "disconnect.malformed",
    "disconnect.too_large", "disconnect.protocol_error", "disconnect.keepalive_timeout", "disconnect.connect_timeout",
    "disconnect.takeover", "disconnect.io_error", "disconnect.peer_closed", "publish.received", "telemetry.accepted",
    "telemetry.deadletter", "stream.appended", "stream.committed", "stream.fsyncs", "alerts.emitted", "uptime_ms",
] + ["deadletter." + r for r in ("not_json", "not_object", "too_deep", "missing_field", "bad_type", "bad_device_id",
                                  "bad_heart_rate", "bad_steps", "bad_timestamp")]


def test_stats_sent_on_subscribe_with_every_key(vigil_factory):
    # With a one-minute period, only the on-subscribe message can arrive.
    v = vigil_factory("--stats-interval-ms", "60000")
    c = v.client("stats-now")
    c.subscribe([("$SYS/vigil/stats", 0)])
    t0 = time.monotonic()
    topic, payload, _ = c.next_message(2)
    assert topic == "$SYS/vigil/stats"
    assert time.monotonic() - t0 < 1.0
    stats = json.loads(payload)
    assert isinstance(stats, dict)
    missing = [k for k in STATS_KEYS if k not in stats]
    assert not missing, "stats lack %s" % missing
    # Flat: numbers, except the health states (ok | disk_full | failed).
    states = {k: v_ for k, v_ in stats.items() if k == "health" or k.endswith(".state")}
    assert all(v_ in ("ok", "disk_full", "failed", "none") for v_ in states.values()), states
    assert stats["health"] == "ok" and stats["stream.state"] == "ok", states
    assert all(isinstance(v_, (int, float)) for k, v_ in stats.items() if k not in states), \
        "stats must be a flat object of numbers (and states)"
    assert stats["connections.current"] >= 1
    c.disconnect()
    time.sleep(0.3)  # let the server handle that DISCONNECT (maybe on another worker)
    c2 = v.client("stats-later")
    c2.subscribe([("$SYS/vigil/stats", 0)])
    later = json.loads(c2.next_message(2)[1])
    assert later["uptime_ms"] >= stats["uptime_ms"]
    assert later["connections.total"] >= stats["connections.total"] + 1
    assert later["disconnect.client"] >= stats["disconnect.client"] + 1
    c2.disconnect()
