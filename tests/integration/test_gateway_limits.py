"""Gateway limits: every limit refuses or drops with a counted reason and
nothing else is lost — per-session queue, global queue budget, retained
messages, connections per listener.

Raw clients from mqttraw (3.1.1 here: the limits do not depend on the
version); counters read from $SYS/vigil/stats.
"""

import socket
import time

import mqttraw as m
from vigiltest import wait_until


def client(v, cid, clean=True):
    c = m.Client(v.host, v.port, version=m.V311)
    c.connect(cid, clean=clean)
    return c


def recv_all(c, n, timeout=5.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out.append(c.recv_publish(max(0.001, deadline - time.monotonic())))
        except TimeoutError:
            break
    return out


def offline_session(v, cid, topic):
    c = client(v, cid, clean=False)
    c.subscribe([(topic, 1)])
    c.disconnect()


def test_per_session_queue_limit_drops_newest_and_counts(vigil_factory):
    v = vigil_factory("--max-queued-per-client", "5")
    offline_session(v, "q-limit", "ql/t")
    pub = client(v, "q-limit-pub")
    for i in range(12):
        pub.publish("ql/t", b"%d" % i, qos=1)
    s = v.wait_stats(lambda s: s["queue.dropped_client_limit"] >= 7)
    assert s["queue.dropped_client_limit"] == 7
    assert s["queue.messages"] == 5
    c = client(v, "q-limit", clean=False)
    got = recv_all(c, 12, timeout=2)
    # The oldest five are kept, in order; the overflow was refused, not reordered.
    assert [p.payload for p in got] == [b"%d" % i for i in range(5)]


def test_global_queue_budget_drops_and_counts(vigil_factory):
    v = vigil_factory("--max-queued-bytes", "3000", "--max-queued-per-client", "1000")
    offline_session(v, "budget-a", "gb/t")
    offline_session(v, "budget-b", "gb/t")
    pub = client(v, "budget-pub")
    payload = b"x" * 500
    for _ in range(6):
        pub.publish("gb/t", payload, qos=1)
    s = v.wait_stats(lambda s: s["queue.dropped_global_limit"] > 0)
    # 12 copies offered (6 messages x 2 sessions), the budget holds a few.
    assert s["queue.messages"] + s["queue.dropped_global_limit"] == 12
    assert 0 < s["queue.messages"] < 12
    assert s["queue.bytes"] <= 3000 + 600  # one entry may straddle the line
    a = client(v, "budget-a", clean=False)
    b = client(v, "budget-b", clean=False)
    assert len(recv_all(a, 6, 1.5)) + len(recv_all(b, 6, 1.5)) == s["queue.messages"]


def test_retained_limit_refuses_and_keeps_the_old(vigil_factory):
    v = vigil_factory("--max-retained", "2")
    pub = client(v, "ret-pub")
    pub.publish("rl/a", b"A", qos=1, retain=True)
    pub.publish("rl/b", b"B", qos=1, retain=True)
    pub.publish("rl/c", b"C", qos=1, retain=True)  # over the limit: not retained
    pub.publish("rl/a", b"A2", qos=1, retain=True)  # replacing an existing one is fine
    s = v.wait_stats(lambda s: s["retained.rejected"] >= 1)
    assert s["retained"] == 2 and s["retained.rejected"] == 1
    sub = client(v, "ret-sub")
    sub.subscribe([("rl/#", 1)])
    got = sorted((p.topic, p.payload) for p in recv_all(sub, 3, 1.5))
    assert got == [("rl/a", b"A2"), ("rl/b", b"B")]


def _connect_tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    return s


def test_http_listener_connection_limit(vigil_factory):
    v = vigil_factory("--max-http-connections", "2")
    kept = [_connect_tcp(v.http_port) for _ in range(2)]
    before = v.stats()["connections.refused"]
    extra = None
    try:
        extra = _connect_tcp(v.http_port)
        extra.settimeout(2)
        data = extra.recv(1)
        assert data == b"", "the third HTTP connection was not refused"
    except ConnectionResetError:
        pass  # refused with a reset, possibly before connect() even returned
    wait_until(lambda: v.stats()["connections.refused"] == before + 1, 5)
    # The two admitted ones still work.
    for s in kept:
        s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 404")
        s.close()
    if extra is not None:
        extra.close()
    # MQTT is not limited by the HTTP listener's limit.
    client(v, "not-limited").disconnect()
