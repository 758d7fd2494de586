"""Hostile and broken clients: every one is disconnected, counted under the
right reason, and the server keeps serving everybody else."""

import random
import socket
import struct
import time

import pytest

from vigiltest import (PUBLISH, TELEMETRY_TOPIC, connect_packet, dumps, enc_str, packet,
                       publish_packet, subscribe_packet, telemetry)


def counter(stats, key):
    assert key in stats, "stats has no %r; keys: %s" % (key, sorted(stats))
    return stats[key]


def assert_serving(v, tag="check"):
    """A normal client can still subscribe, publish QoS 1, and receive."""
    assert v.alive(), "vigil is no longer running"
    sub = v.client("%s-sub" % tag)
    sub.subscribe([("still/alive", 1)])
    pub = v.client("%s-pub" % tag)
    pub.publish("still/alive", b"yes", qos=1)
    topic, payload, _ = sub.next_message(5)
    assert (topic, payload) == ("still/alive", b"yes")
    pub.publish(TELEMETRY_TOPIC, dumps(telemetry("alive-%s" % tag, 70)), qos=1)
    sub.disconnect()
    pub.disconnect()


def expect_close(c, timeout=3.0, what="connection"):
    assert c.wait_closed(timeout), "%s was not closed within %s s" % (what, timeout)


def expect_counter(v, before, key, n=1, timeout=5.0):
    after = v.wait_stats(lambda s: counter(s, key) - counter(before, key) >= n, timeout)
    assert counter(after, key) - counter(before, key) == n, \
        "%s went from %d to %d, expected +%d" % (key, counter(before, key), counter(after, key), n)
    return after


def test_garbage_before_connect(vigil):
    c = vigil.raw()
    c.send(b"\xf0\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    expect_close(c, what="garbage connection")
    c.close()
    c = vigil.raw()
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")  # 'G' = 0x47: type 4 (PUBACK) before CONNECT
    expect_close(c, what="HTTP request")
    assert_serving(vigil)


def test_garbage_after_connect_is_malformed(vigil):
    before = vigil.stats()
    c = vigil.client("garbage")
    c.send(b"\xf0\x00" + bytes(random.Random(1).randrange(256) for _ in range(64)))  # type 15 is reserved
    expect_close(c)
    expect_counter(vigil, before, "disconnect.malformed")
    assert_serving(vigil)


def test_truncated_packet_then_close(vigil):
    before = vigil.stats()
    c = vigil.client("trunc")
    whole = publish_packet(TELEMETRY_TOPIC, dumps(telemetry("trunc-1", 70)), qos=1, pid=7)
    c.send(whole[: len(whole) // 2])
    time.sleep(0.2)
    c.close()
    after = vigil.wait_stats(
        lambda s: sum(counter(s, k) - counter(before, k)
                      for k in ("disconnect.peer_closed", "disconnect.io_error", "disconnect.malformed")) >= 1)
    assert sum(counter(after, k) - counter(before, k)
               for k in ("disconnect.peer_closed", "disconnect.io_error", "disconnect.malformed")) == 1
    after = vigil.wait_stats(lambda s: counter(s, "connections.current") <= 1)
    assert counter(after, "connections.current") == 1, "the truncated connection is still counted"
    assert vigil.stream_tail("telemetry") == [], "half a PUBLISH was stored"
    assert_serving(vigil)


def test_oversized_packet(vigil_factory):
    v = vigil_factory("--max-packet-size", "1024")
    ok = v.client("small")
    ok.publish("big/ok", b"x" * 900, qos=1)  # ~915 bytes in all: allowed
    before = v.stats()
    c = v.client("big")
    # Remaining length 2000 announced; the server must refuse as soon as it
    # has read the length, without waiting for the body.
    c.send(bytes([0x32]) + bytes([0xD0, 0x0F]) + enc_str("big/no") + b"\x00\x01" + b"y" * 100)
    t0 = time.monotonic()
    expect_close(c, 2.0, "oversized PUBLISH")
    assert time.monotonic() - t0 < 1.5
    expect_counter(v, before, "disconnect.too_large")
    ok.ping()
    ok.disconnect()
    assert_serving(v)


def test_oversized_connect(vigil_factory):
    v = vigil_factory("--max-packet-size", "1024")
    before = v.stats()
    c = v.raw()
    c.send(connect_packet("x" * 2000))
    expect_close(c, 2.0, "oversized CONNECT")
    expect_counter(v, before, "disconnect.too_large")
    assert_serving(v)


def test_length_field_too_long(vigil):
    before = vigil.stats()
    c = vigil.client("len5")
    c.send(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))
    expect_close(c)
    after = vigil.wait_stats(lambda s: counter(s, "disconnect.malformed") + counter(s, "disconnect.too_large")
                             > counter(before, "disconnect.malformed") + counter(before, "disconnect.too_large"))
    assert (counter(after, "disconnect.malformed") + counter(after, "disconnect.too_large")) - \
        (counter(before, "disconnect.malformed") + counter(before, "disconnect.too_large")) == 1
    assert_serving(vigil)


def test_connect_timeout(vigil):
    before = vigil.stats()
    c = vigil.raw()
    t0 = time.monotonic()
    expect_close(c, 4.0, "silent TCP connection")
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed <= 3.0, "closed after %.2f s; --connect-timeout-ms is 1000" % elapsed
    expect_counter(vigil, before, "disconnect.connect_timeout")
    assert_serving(vigil)


def test_partial_connect_times_out(vigil):
    """Slowloris: half a CONNECT, then silence."""
    before = vigil.stats()
    c = vigil.raw()
    c.send(connect_packet("slow")[:6])
    t0 = time.monotonic()
    expect_close(c, 4.0, "half-CONNECT connection")
    assert time.monotonic() - t0 <= 3.0
    expect_counter(vigil, before, "disconnect.connect_timeout")


def test_publish_before_connect(vigil):
    before = vigil.stats()
    c = vigil.raw()
    c.send(publish_packet(TELEMETRY_TOPIC, dumps(telemetry("early", 70)), qos=1, pid=1))
    expect_close(c, what="PUBLISH-before-CONNECT connection")
    assert not any(p[0] == 4 for p in c.pending), "PUBACK sent to a client that never connected"
    expect_counter(vigil, before, "disconnect.protocol_error")
    assert vigil.stream_tail("telemetry") == []
    assert_serving(vigil)


def test_second_connect(vigil):
    before = vigil.stats()
    c = vigil.client("twice")
    c.send(connect_packet("twice"))
    expect_close(c, what="connection that sent CONNECT twice")
    expect_counter(vigil, before, "disconnect.protocol_error")
    assert_serving(vigil)


@pytest.mark.parametrize("topic", [b"a/\xff\xfe/c", b"a/\xc0\xaf", b"a/\xed\xa0\x80", b"a/\x00/b", b"a/+/c", b"a/#", b""],
                         ids=["invalid-utf8", "overlong", "surrogate", "nul", "plus", "hash", "empty"])
def test_bad_publish_topic_is_malformed(vigil, topic):
    before = vigil.stats()
    c = vigil.client("badtopic")
    c.send(packet(PUBLISH, 0, enc_str(topic) + b"payload"))
    expect_close(c, what="PUBLISH to topic %r" % topic)
    expect_counter(vigil, before, "disconnect.malformed")
    assert_serving(vigil)


@pytest.mark.parametrize("filt", [b"a/#/b", b"a+/b", b"\xff", b""], ids=["hash-mid", "plus-partial", "utf8", "empty"])
def test_bad_subscribe_filter_is_malformed(vigil, filt):
    before = vigil.stats()
    c = vigil.client("badfilter")
    c.send(subscribe_packet(1, [(filt, 0)]))
    expect_close(c, what="SUBSCRIBE to %r" % filt)
    expect_counter(vigil, before, "disconnect.malformed")


@pytest.mark.parametrize("raw", [
    bytes([0x80, 0x06]) + struct.pack(">H", 1) + enc_str("a") + b"\x00",  # SUBSCRIBE with flags 0
    bytes([0xC1, 0x00]),                                                  # PINGREQ with flags 1
    bytes([0x36, 0x05]) + enc_str("a") + b"\x00\x01",                     # PUBLISH QoS 3
    bytes([0x32, 0x04]) + enc_str("a") + b"\x00",                         # PUBLISH QoS 1, 1-byte packet id
], ids=["subscribe-flags", "pingreq-flags", "qos3", "qos1-short"])
def test_bad_fixed_header_or_body(vigil, raw):
    before = vigil.stats()
    c = vigil.client("badhdr")
    c.send(raw)
    expect_close(c)
    expect_counter(vigil, before, "disconnect.malformed")


@pytest.mark.deadline(120)
def test_random_garbage_connections_then_serving(vigil):
    rng = random.Random(20261125)
    before = vigil.stats()
    valid_connect = connect_packet("fuzz")
    for i in range(150):
        s = socket.create_connection((vigil.host, vigil.port), timeout=2)
        kind = i % 3
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        elif kind == 1:   # a valid CONNECT followed by garbage
            data = valid_connect + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        else:             # a valid CONNECT with some bytes flipped
            b = bytearray(valid_connect + publish_packet("f/" + str(i), b"p" * rng.randrange(50), qos=1, pid=1))
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
        try:
            s.sendall(data)
        except OSError:
            pass
        if i % 2:
            time.sleep(0.005)
        s.close()
    assert vigil.alive(), "vigil died on random input"
    after = vigil.wait_stats(lambda s: counter(s, "connections.current") <= 1, 10)
    assert counter(after, "connections.current") == 1, "connections leaked: %d still open" % (
        counter(after, "connections.current") - 1)
    assert counter(after, "connections.total") - counter(before, "connections.total") >= 150
    assert_serving(vigil, "after-garbage")


def test_subscribe_filter_limit(vigil_factory):
    """--max-subs-per-packet: up to the limit a SUBSCRIBE gets one return code
    per filter; one more closes the connection, counted as too_large."""
    v = vigil_factory("--max-subs-per-packet", "3")
    ok = v.client("subs-ok")
    assert ok.subscribe([("a/1", 0), ("a/2", 1), ("a/+", 1)]) == [0, 1, 1]
    before = v.stats()
    c = v.client("subs-many")
    c.send(subscribe_packet(c.pid(), [("b/%d" % i, 0) for i in range(4)]))
    expect_close(c, 2.0, "SUBSCRIBE over the filter limit")
    expect_counter(v, before, "disconnect.too_large")
    ok.ping()
    ok.disconnect()
    assert_serving(v)


def test_inflight_limit_pauses_reading_without_loss(vigil_factory):
    """--max-inflight: a client with more unacknowledged QoS 1 publishes than
    the limit is not read until acks drain (counted), and nothing is lost or
    acked out of order."""
    v = vigil_factory("--max-inflight", "4")
    before = v.stats()
    c = v.client("inflight")
    items = [(TELEMETRY_TOPIC, dumps(telemetry("inflight-%d" % (i % 3), 70, i=i))) for i in range(60)]
    c.publish_many(items, window=60)  # asserts every PUBACK, in order
    assert len([r for r in v.stream_tail("telemetry") if r["key"].startswith("inflight-")]) == 60
    after = v.wait_stats(lambda s: counter(s, "inflight.read_pauses") > counter(before, "inflight.read_pauses"))
    assert counter(after, "inflight.read_pauses") > counter(before, "inflight.read_pauses")
    c.disconnect()
    assert_serving(v)


def test_slow_consumer_disconnected(vigil_factory):
    """--max-outbuf, --slow-consumer-ms: a subscriber that stops reading is
    disconnected once its queue has been over the limit for that long
    (counted as slow_consumer); memory stays bounded and the publisher and
    everyone else keep being served."""
    v = vigil_factory("--max-outbuf", "65536", "--slow-consumer-ms", "500")
    before = v.stats()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(5)
    s.connect((v.host, v.port))
    s.sendall(connect_packet("slowpoke"))
    assert s.recv(4)[0] == 0x20  # CONNACK
    s.sendall(subscribe_packet(1, [("flood/#", 0)]))
    time.sleep(0.3)  # SUBACK arrives; from now on the subscriber reads nothing
    pub = v.client("flooder")
    chunk = b"z" * 8192
    closed = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not closed:
        for _ in range(100):
            pub.send(publish_packet("flood/x", chunk, 0, 0))
        pub.ping()
        st = v.stats()
        closed = counter(st, "disconnect.slow_consumer") > counter(before, "disconnect.slow_consumer")
    assert closed, "a subscriber that never reads was not disconnected"
    expect_counter(v, before, "disconnect.slow_consumer")
    pub.disconnect()
    s.close()
    assert_serving(v)
