"""A full disk is a pause, not a failure (issue 9).

The data directory is on a real 8 MiB tmpfs (we run as root; without the
permission to mount the test is skipped, saying why). A ballast file takes
most of it before the server starts. QoS 1 publishers fill the rest: the
telemetry stream reports state "disk_full", PUBACKs stop, but connections
stay up (PINGREQ is answered). Deleting the ballast frees space: PUBACKs
resume and every PUBACKed event is in the stream exactly once.

Only telemetry is published, from clean sessions, so the gateway store
(gateway.db, made disk-full tolerant separately) is not written during the
outage; the processor's checkpoints and the alerts stream on the same disk
are, and must not stop the server either.
"""

import os
import re
import socket
import struct
import time

import pytest

from vigiltest import (PINGRESP, PINGREQ_PACKET, PUBACK, TELEMETRY_TOPIC, dumps, publish_packet, small_tmpfs,
                       telemetry)

FS_BYTES = 8 << 20
FREE_AT_START = 1536 << 10  # what the ballast leaves free, roughly
WINDOW = 200                # unacknowledged publishes per connection (the server pauses reading at 1024)


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "disk", FS_BYTES) as mnt:
        yield mnt


def free_bytes(path):
    st = os.statvfs(str(path))
    return st.f_bavail * st.f_frsize


class Publisher:
    """One raw MQTT connection pipelining QoS 1 telemetry, WINDOW in flight."""

    def __init__(self, server, name):
        self.c = server.client(name)
        self.name = name
        self.n = 0
        self.outstanding = []  # (pid, n) in send order
        self.acked = []
        self.last_ack = time.monotonic()

    def pump(self, send=True, read_s=0.005):
        while send and len(self.outstanding) < WINDOW:
            pid = self.c.pid()
            d = "%s-dev-%d" % (self.name, self.n % 8)
            self.c.send(publish_packet(TELEMETRY_TOPIC, dumps(telemetry(d, 70, n=self.n, pub=self.name)), 1, pid))
            self.outstanding.append((pid, self.n))
            self.n += 1
        deadline = time.monotonic() + read_s
        while time.monotonic() < deadline:
            try:
                t, _, body = self.c.read_packet(max(0.001, deadline - time.monotonic()))
            except socket.timeout:
                return
            if t == PUBACK:
                pid = struct.unpack(">H", body[:2])[0]
                assert self.outstanding and pid == self.outstanding[0][0], "PUBACK out of order"
                self.acked.append(self.outstanding.pop(0)[1])
                self.last_ack = time.monotonic()


@pytest.mark.deadline(180)
def test_disk_full_pauses_and_resumes(small_disk, vigil_factory):
    data = small_disk / "data"
    data.mkdir()
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * (free_bytes(small_disk) - FREE_AT_START))
        f.flush()
        os.fsync(f.fileno())
    server = vigil_factory("--segment-bytes", "262144", "--shards", "2", data_dir=data)
    pubs = [Publisher(server, "dfp%d" % i) for i in range(2)]

    # 1. Fill the disk.
    deadline = time.monotonic() + 90
    full = False
    next_check = time.monotonic() + 0.5
    while time.monotonic() < deadline and not full:
        for p in pubs:
            p.pump()
        if time.monotonic() >= next_check:
            full = server.stats().get("stream.state") == "disk_full"
            next_check = time.monotonic() + 0.5
    assert full, "the telemetry stream never reported disk_full (free: %d bytes)" % free_bytes(small_disk)

    # 2. Paused: after the last in-flight acknowledgements drain, none come,
    # but the connections are alive and served.
    # Each publisher sends once more after the pause began (one whose window
    # was all acknowledged just before it would otherwise have nothing to
    # wait for), then the acknowledgements of records stored before the
    # pause drain.
    for p in pubs:
        p.pump(send=True, read_s=0.5)
    acked_at_pause = [len(p.acked) for p in pubs]
    t_pause = time.monotonic()
    while time.monotonic() < t_pause + 2.0:
        for p in pubs:
            p.pump(send=False, read_s=0.05)
    assert [len(p.acked) for p in pubs] == acked_at_pause, "PUBACKs while the disk was full"
    for p in pubs:
        assert p.outstanding, "%s has nothing in flight: the disk did not stop it" % p.name
        p.c.send(PINGREQ_PACKET)
        p.c.expect(PINGRESP, timeout=5)
    st = server.stats()
    assert st["stream.state"] == "disk_full", st
    assert st["stream.disk_full_retries"] > 0
    assert st["health"] == "disk_full", st
    assert st["stream.errors"] == 0, "a full disk must not count as a failed write"
    assert server.alive()

    # 3. Free space: acknowledgements resume, more publishes go through.
    os.remove(ballast)
    more_until = [p.n + 300 for p in pubs]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(p.outstanding or p.n < m for p, m in zip(pubs, more_until)):
        for p, m in zip(pubs, more_until):
            p.pump(send=p.n < m, read_s=0.01)
    for p in pubs:
        assert not p.outstanding, "%s: %d publishes never acknowledged after space came back" % (
            p.name, len(p.outstanding))
        assert len(p.acked) > acked_at_pause[pubs.index(p)]
    st = server.wait_stats(lambda s: s.get("stream.state") == "ok")
    assert st["stream.state"] == "ok", st
    assert st["stream.disk_full_pauses"] >= 1
    st = server.wait_stats(lambda s: s.get("health") == "ok")
    assert st["health"] == "ok", st
    assert st["stream.disk_full_ms"] >= 2000
    assert st["stream.errors"] == 0

    # 4. Every acknowledged event is stored exactly once, per shard in order.
    records = server.stream_tail("telemetry")
    seen = {}
    for r in records:
        k = (r["data"]["pub"], r["data"]["n"])
        assert k not in seen, "event %r stored twice" % (k,)
        seen[k] = r
    for p in pubs:
        missing = [n for n in p.acked if (p.name, n) not in seen]
        assert not missing, "%s: acknowledged but not stored: %r" % (p.name, missing[:20])
    by_shard = {}
    for r in records:
        by_shard.setdefault(r["shard"], []).append(r["seq"])
    for s, seqs in by_shard.items():
        assert seqs == list(range(1, len(seqs) + 1)), "shard %d sequence numbers not contiguous" % s
    for p in pubs:
        p.c.disconnect()
    pauses = st["stream.disk_full_pauses"]
    server.stop()

    # 5. A full disk is logged once per outage, not once per retry: by the
    # stream, and by each consumer whose checkpoint waits (the file helper
    # itself logs ENOSPC at debug level only).
    log = server.log_text(limit=1 << 30)
    paused_lines = [l for l in log.splitlines() if "stream telemetry shard" in l and "the disk is full" in l]
    assert len(paused_lines) <= pauses, paused_lines
    for shard in range(2):
        n = log.count("shard %d: cannot write the checkpoint" % shard)
        assert n <= pauses, "checkpoint failure of shard %d logged %d times for %d outages" % (shard, n, pauses)
    fs_errors = [l for l in log.splitlines() if re.search(r"ERROR fs\s", l)]
    assert not fs_errors, fs_errors[:5]


def assert_retained_after_restart(server, client_id, topic_filter, acked):
    """Subscribes to topic_filter (topics end in /<n>) and checks that every
    n in acked comes back as a retained message."""
    from vigiltest import PUBLISH, subscribe_packet
    sub = server.client(client_id)
    sub.send(subscribe_packet(1, [(topic_filter, 0)]))
    got = set()
    deadline = time.monotonic() + 30
    while len(got) < len(acked) and time.monotonic() < deadline:
        try:
            t, flags, body = sub.read_packet(1.0)
        except socket.timeout:
            continue
        if t == PUBLISH:
            tl = struct.unpack(">H", body[:2])[0]
            got.add(int(body[2:2 + tl].decode().rsplit("/", 1)[1]))
    missing = [k for k in acked if k not in got]
    assert not missing, "acknowledged retained messages lost: %r" % missing[:20]
    sub.disconnect()


@pytest.mark.deadline(180)
def test_gateway_store_disk_full_pauses_and_resumes(small_disk, vigil_factory):
    """The gateway store (gateway.db: retained messages, persistent sessions)
    on a full disk: a retained QoS 1 PUBLISH is acknowledged only once its
    copy is stored, so PUBACKs stop, health says disk_full, the connection
    stays; once space is back they resume, and after a restart every
    acknowledged retained message is there."""
    from vigiltest import publish_packet
    data = small_disk / "data"
    data.mkdir()
    ballast = small_disk / "ballast"
    server = vigil_factory("--segment-bytes", "262144", "--shards", "1", data_dir=data)
    with open(ballast, "wb") as f:
        f.write(b"\0" * (free_bytes(small_disk) - (1024 << 10)))
        f.flush()
        os.fsync(f.fileno())
    c = server.client("dfstore")
    payload = b"r" * 16384
    acked, outstanding, n = [], [], 0
    def read_acks(timeout):
        """Reads one packet; a PUBACK must be for the oldest publish in flight."""
        try:
            t, _, body = c.read_packet(timeout)
        except socket.timeout:
            return 0
        if t != PUBACK:
            return 0
        assert outstanding and struct.unpack(">H", body[:2])[0] == outstanding[0][0], "PUBACK out of order"
        acked.append(outstanding.pop(0)[1])
        return 1

    deadline = time.monotonic() + 90
    full = False
    next_check = time.monotonic() + 0.3
    while time.monotonic() < deadline and not full:
        while len(outstanding) < 20:
            pid = c.pid()
            c.send(publish_packet("dfs/t/%d" % n, payload, 1, pid, retain=True))
            outstanding.append((pid, n))
            n += 1
        read_acks(0.05)
        if time.monotonic() >= next_check:
            full = server.stats().get("store.state") == "disk_full"
            next_check = time.monotonic() + 0.3
    assert full, "the gateway store never reported disk_full (free: %d bytes)" % free_bytes(small_disk)
    # Drain what was already stored, then nothing more is acknowledged.
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        read_acks(0.1)
    at_pause = len(acked)
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        assert read_acks(0.1) == 0, "PUBACK while the store could not write"
    assert outstanding, "nothing in flight: the disk did not stop the store"
    c.send(PINGREQ_PACKET)
    c.expect(PINGRESP, timeout=5)
    st = server.stats()
    assert st["health"] == "disk_full", st
    assert st["store.disk_full_retries"] > 0, st
    os.remove(ballast)
    deadline = time.monotonic() + 60
    while outstanding and time.monotonic() < deadline:
        read_acks(0.2)
    assert not outstanding, "%d retained publishes never acknowledged after space came back" % len(outstanding)
    assert len(acked) > at_pause
    st = server.wait_stats(lambda s: s.get("health") == "ok")
    assert st["store.state"] == "ok", st
    assert st["store.disk_full_pauses"] >= 1
    c.disconnect()
    server.restart()
    assert_retained_after_restart(server, "dfstore-sub", "dfs/t/#", acked)
    server.stop()


@pytest.mark.deadline(180)
def test_gateway_store_refusal_is_never_acknowledged(small_disk, vigil_factory):
    """While the gateway store cannot commit, its queue is bounded
    (--store-max-pending-bytes); a retained QoS 1 PUBLISH whose copy the
    store refuses must not be acknowledged: the connection closes instead,
    the refusal is counted (state.errors), and after space returns and a
    restart every acknowledged retained message is there."""
    from vigiltest import Closed, publish_packet
    data = small_disk / "data"
    data.mkdir()
    ballast = small_disk / "ballast"
    server = vigil_factory("--segment-bytes", "262144", "--shards", "1",
                           "--store-max-pending-bytes", "65536", data_dir=data)
    with open(ballast, "wb") as f:
        f.write(b"\0" * (free_bytes(small_disk) - (1024 << 10)))
        f.flush()
        os.fsync(f.fileno())
    payload = b"r" * 16384
    a = server.client("dfref-a")
    acked = []
    # One retained QoS 1 publish at a time until one is not acknowledged
    # (the store is paused on the full disk with that write held).
    n = 0
    deadline = time.monotonic() + 90
    held = None
    while time.monotonic() < deadline:
        pid = a.pid()
        a.send(publish_packet("dfr/t/%d" % n, payload, 1, pid, retain=True))
        try:
            while True:
                t, _, body = a.read_packet(2.0)
                if t == PUBACK:
                    assert struct.unpack(">H", body[:2])[0] == pid
                    break
            acked.append(n)
            n += 1
        except socket.timeout:
            held = n
            break
    assert held is not None, "the store never stopped acknowledging (free: %d bytes)" % free_bytes(small_disk)
    assert server.stats().get("store.state") == "disk_full"
    errors0 = server.stats()["state.errors"]
    # A second client: QoS 0 retained publishes fill the bounded queue
    # (their refusal is only counted), then a QoS 1 one must be refused.
    b = server.client("dfref-b")
    for k in range(8):
        b.send(publish_packet("dfr/q0/%d" % k, payload, 0, 0, retain=True))
    st = server.wait_stats(lambda s: s["state.errors"] > errors0, timeout=15)
    assert st["state.errors"] > errors0, "the bounded store queue refused nothing: %r" % st
    pid = b.pid()
    b.send(publish_packet("dfr/refused", payload, 1, pid, retain=True))
    closed = False
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            t, _, body = b.read_packet(1.0)
        except socket.timeout:
            continue
        except Closed:
            closed = True
            break
        assert t != PUBACK, "PUBACK for a retained message the store refused"
    assert closed, "the connection of a refused QoS 1 publish stayed open without an answer"
    # Space returns: the held publish is acknowledged, nothing else lost.
    os.remove(ballast)
    while True:
        t, _, body = a.read_packet(30.0)
        if t == PUBACK:
            break
    acked.append(held)
    server.wait_stats(lambda s: s.get("health") == "ok")
    a.disconnect()
    server.restart()
    assert_retained_after_restart(server, "dfref-sub", "dfr/t/#", acked)
    server.stop()
