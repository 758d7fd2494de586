"""Process lifecycle: clean shutdown on SIGTERM/SIGINT with everything acked
kept across restarts, recovery of a torn segment tail, the connection
limit, fsync policies, and the command line itself."""

import glob
import os
import random
import signal
import struct
import subprocess
import time

import pytest

from vigiltest import (CONNACK, TELEMETRY_TOPIC, VIGIL, Closed, connect_packet, devices_in_shard, dumps, iso_ms, now_ms,
                       shard_for, telemetry)


def counter(stats, key):
    assert key in stats, "stats has no %r; keys: %s" % (key, sorted(stats))
    return stats[key]


def by_key_seq(recs):
    return sorted((r["shard"], r["seq"], r["key"], dumps(r["data"])) for r in recs)


def wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(0.1)


@pytest.mark.deadline(120)
def test_sigterm_exit_0_and_restart_keeps_everything(vigil):
    c = vigil.client("life")
    base = now_ms() - 100000
    items = []
    for n in range(4):
        for d in range(25):
            items.append((TELEMETRY_TOPIC, dumps(telemetry("life-%d" % d, 70 + n, ts=base + n * 1000, n=n))))
    items += [(TELEMETRY_TOPIC, "nope"), (TELEMETRY_TOPIC, "[]"), (TELEMETRY_TOPIC, "{}")]
    # 35 s above 180 bpm: an EXTREME_HIGH_HR alert
    items += [(TELEMETRY_TOPIC, dumps(telemetry("life-0", 190, ts=base + 10500 + k * 5000))) for k in range(8)]
    c.publish_many(items)
    assert wait_for(lambda: [r for r in vigil.stream_tail("alerts") if r["data"]["type"] == "EXTREME_HIGH_HR"]), \
        "no alert for life-0's 190 bpm"
    tel, dl, al = vigil.stream_tail("telemetry"), vigil.stream_tail("deadletter"), vigil.stream_tail("alerts")
    assert len(tel) == 108 and len(dl) == 3 and len(al) >= 1

    # Clients still connected at shutdown must not prevent a clean exit.
    idle = vigil.client("idle-at-shutdown")
    idle.subscribe([("#", 1)])
    vigil.stop()  # asserts exit code 0 within 10 s
    assert c.wait_closed(2) and idle.wait_closed(2)

    # The files alone (no server running) hold everything.
    assert by_key_seq(vigil.stream_tail("telemetry")) == by_key_seq(tel)
    vigil.start()
    assert by_key_seq(vigil.stream_tail("telemetry")) == by_key_seq(tel)
    assert by_key_seq(vigil.stream_tail("deadletter")) == by_key_seq(dl)
    assert by_key_seq(vigil.stream_tail("alerts")) == by_key_seq(al)

    # Appends continue each shard's sequence.
    last = {}
    for r in tel:
        last[r["shard"]] = max(last.get(r["shard"], 0), r["seq"])
    c = vigil.client("life-2")
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry("life-%d" % d, 75, ts=base + 20000))) for d in range(25)])
    new = [r for r in vigil.stream_tail("telemetry") if r["data"]["timestamp"] == iso_ms(base + 20000)]
    assert len(new) == 25
    for s in set(r["shard"] for r in new):
        seqs = sorted(r["seq"] for r in new if r["shard"] == s)
        assert seqs == list(range(last.get(s, 0) + 1, last.get(s, 0) + 1 + len(seqs))), (s, seqs, last.get(s))
    c.disconnect()


def test_sigint_exit_0(vigil):
    c = vigil.client("sigint")
    c.publish(TELEMETRY_TOPIC, dumps(telemetry("si", 70)), qos=1)
    vigil.expected_exit = True
    vigil.proc.send_signal(signal.SIGINT)
    assert vigil.proc.wait(10) == 0
    assert [r["key"] for r in vigil.stream_tail("telemetry")] == ["si"]


def _crc32c(data):
    """CRC-32C (Castagnoli), the record checksum (src/core/crc32c.h)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


assert _crc32c(b"123456789") == 0xE3069283


def data_end(path):
    """Offset just past the last record of a segment: the active segment
    continues with zeros written ahead of the data (a zero length field),
    so its file size is not where the next record goes."""
    with open(path, "rb") as f:
        buf = f.read()
    off = 32  # segment header
    while off + 4 <= len(buf):
        body_len = struct.unpack_from("<I", buf, off)[0]
        if body_len == 0 or off + 8 + body_len > len(buf):
            break
        off += 8 + body_len
    return off


def write_at_data_end(path, data):
    """What a crash mid-append leaves: bytes right after the last record."""
    end = data_end(path)
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(data)


def _record(seq, key, value, arrival=0, crc_ok=True):
    body = struct.pack("<QqHHI", seq, arrival, len(key), 0, len(value)) + key + value
    crc = _crc32c(body) ^ (0 if crc_ok else 0xFFFFFFFF)
    return struct.pack("<II", len(body), crc) + body


TORN = {
    "random-bytes": lambda n: bytes(random.Random(5).randrange(256) for _ in range(37)),
    "partial-record": lambda n: _record(n + 1, b"torn", b'{"torn":true}' * 8)[:40],
    "bad-crc-record": lambda n: _record(n + 1, b"torn", b'{"torn":true}', crc_ok=False),
    "zero-fill": lambda n: b"\x00" * 4096,
}


def test_complete_appended_record_is_kept(vigil):
    """Control for the torn-tail cases: a complete record with the right
    checksum and the next sequence number, appended behind the server's
    back, is kept — so the bad-crc case above is refused for its CRC alone."""
    devices = devices_in_shard(0, 1, prefix="keep")
    c = vigil.client("keep")
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry(devices[0], 70, i=i))) for i in range(3)])
    n0 = len(vigil.stream_tail("telemetry", "--shard", "0"))
    c.disconnect()
    vigil.stop()
    segs = glob.glob(os.path.join(vigil.data_dir, "stream", "telemetry", "0", "*.seg"))
    last = max(segs, key=lambda p: int(os.path.basename(p).split(".")[0]))
    write_at_data_end(last, _record(n0 + 1, b"kept", b'{"kept":true}'))
    vigil.start()
    after = vigil.stream_tail("telemetry", "--shard", "0")
    assert [r["seq"] for r in after] == list(range(1, n0 + 2))
    assert after[-1]["key"] == "kept" and after[-1]["data"] == {"kept": True}


@pytest.mark.parametrize("kind", sorted(TORN))
def test_torn_tail_recovered(vigil, kind):
    devices = devices_in_shard(0, 5, prefix="torn")
    base = now_ms() - 100000
    c = vigil.client("torn")
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry(devices[i % 5], 70, ts=base + i, i=i))) for i in range(20)])
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry("other-%d" % i, 70, ts=base))) for i in range(20)])
    before0 = vigil.stream_tail("telemetry", "--shard", "0")
    everything = vigil.stream_tail("telemetry")
    assert [r["seq"] for r in before0] == list(range(1, len(before0) + 1))
    n0 = len(before0)
    assert n0 >= 20
    c.disconnect()
    vigil.stop()

    segs = glob.glob(os.path.join(vigil.data_dir, "stream", "telemetry", "0", "*.seg"))
    assert segs, "no segment files under %s/stream/telemetry/0" % vigil.data_dir
    last = max(segs, key=lambda p: int(os.path.basename(p).split(".")[0]))
    size = data_end(last)
    write_at_data_end(last, TORN[kind](n0))

    vigil.start()
    after0 = vigil.stream_tail("telemetry", "--shard", "0")
    assert by_key_seq(after0) == by_key_seq(before0), "complete records changed after torn-tail recovery"
    assert by_key_seq(vigil.stream_tail("telemetry")) == by_key_seq(everything)

    c = vigil.client("torn-2")
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry(devices[0], 71, ts=base + 1000 + i, j=i))) for i in range(5)])
    after0 = vigil.stream_tail("telemetry", "--shard", "0")
    assert [r["seq"] for r in after0] == list(range(1, n0 + 6)), [r["seq"] for r in after0][-10:]
    assert [r["data"].get("j") for r in after0[-5:]] == [0, 1, 2, 3, 4]
    assert data_end(last) >= size  # nothing complete was cut
    c.disconnect()
    vigil.stop()
    vigil.start()
    assert [r["seq"] for r in vigil.stream_tail("telemetry", "--shard", "0")] == list(range(1, n0 + 6))


def _try_connect(v, cid):
    """Returns ('accepted', client) or ('refused', None); refusals must be prompt."""
    t0 = time.monotonic()
    try:
        c = v.raw(timeout=3)
    except OSError:  # reset right after accept
        return "refused", None
    try:
        c.send(connect_packet(cid))
        t, _, body = c.read_packet(3)
    except Closed:
        assert time.monotonic() - t0 < 2.5, "refusal took %.1f s" % (time.monotonic() - t0)
        c.close()
        return "refused", None
    except OSError:  # reset while sending
        c.close()
        return "refused", None
    assert t == CONNACK, t
    if body[1] == 0:
        return "accepted", c
    # A CONNACK refusal (3 = server unavailable) then close is also a refusal.
    assert c.wait_closed(2), "refused connection (CONNACK %d) not closed" % body[1]
    return "refused", None


def test_connection_limit(vigil_factory):
    v = vigil_factory("--max-connections", "5")
    before = v.wait_stats(lambda s: counter(s, "connections.current") <= 1)
    time.sleep(0.3)  # let the stats client's close be processed
    results = [_try_connect(v, "lim-%d" % i) for i in range(8)]
    kinds = [k for k, _ in results]
    accepted = [c for k, c in results if k == "accepted"]
    assert kinds == ["accepted"] * 5 + ["refused"] * 3, kinds
    for c in accepted:
        c.ping()  # the five admitted ones work
    accepted[0].disconnect()
    # The freed slot comes back once the server has processed the close
    # (asynchronously; slower under sanitizers): retry for a bounded time.
    deadline = time.monotonic() + 5
    extra_refusals = 0  # refusals this test causes while waiting for slots
    while True:
        k, c = _try_connect(v, "lim-again")
        if k == "accepted" or time.monotonic() > deadline:
            break
        extra_refusals += 1
        time.sleep(0.1)
    assert k == "accepted", "a slot freed by a disconnect was not reusable"
    c.disconnect()
    for c in accepted[1:]:
        c.disconnect()
    # The stats client needs a free slot too: the closes above are processed
    # asynchronously, so a refusal (reset) just means "not yet".
    deadline = time.monotonic() + 10
    while True:
        try:
            after = v.wait_stats(lambda s: counter(s, "connections.refused") - counter(before, "connections.refused")
                                 >= 3 + extra_refusals)
            break
        except (OSError, Closed):
            if time.monotonic() > deadline:
                raise
            extra_refusals += 1
            time.sleep(0.1)
    assert counter(after, "connections.refused") - counter(before, "connections.refused") == 3 + extra_refusals
    assert v.alive()


@pytest.mark.parametrize("policy", ["always", "none", "interval:50"])
def test_fsync_policies(vigil_factory, policy):
    v = vigil_factory("--fsync", policy)
    c = v.client("fsync")
    before = v.stats()
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry("fs-%d" % i, 70))) for i in range(30)])
    assert len(v.stream_tail("telemetry")) == 30
    if policy == "always":
        after = v.wait_stats(lambda s: counter(s, "stream.fsyncs") > counter(before, "stream.fsyncs"))
        assert counter(after, "stream.fsyncs") > counter(before, "stream.fsyncs")
    c.disconnect()
    v.stop()
    v.start()
    assert len(v.stream_tail("telemetry")) == 30


def test_shards_flag_for_new_data_dir(vigil_factory):
    v = vigil_factory("--shards", "2")
    c = v.client("shards2")
    devs = ["s2-%d" % i for i in range(40)]
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry(d, 70))) for d in devs])
    recs = v.stream_tail("telemetry")
    assert {r["shard"] for r in recs} == {0, 1}
    assert all(r["shard"] == shard_for(r["key"], 2) for r in recs)
    c.disconnect()


def test_cli_help_and_bad_flags(tmp_path):
    r = subprocess.run([VIGIL, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    assert r.returncode == 0, r.stdout
    text = r.stdout.decode()
    for flag in ("--listen", "--data-dir", "--config", "--shards", "--fsync", "--max-packet-size",
                 "--max-connections", "--rest-high-bpm", "--rest-low-bpm", "--detect-config", "--connect-timeout-ms", "--stats-interval-ms",
                 "--log-level", "--telemetry-topic", "--workers"):
        assert flag in text, "serve --help does not mention %s" % flag
    for bad in (["--no-such-flag"], ["--fsync", "sometimes"], ["--listen", "nonsense"], ["--shards", "0"],
                ["--rest-high-bpm", "abc"], ["--rest-high-bpm", "99"]):
        try:
            r = subprocess.run([VIGIL, "serve", "--data-dir", str(tmp_path / "d")] + bad, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("vigil serve %s started instead of refusing the flag" % " ".join(bad))
        assert r.returncode != 0, "vigil serve %s exited 0" % " ".join(bad)


def test_port_in_use_fails_fast(vigil, vigil_factory):
    v2 = vigil_factory(port=vigil.port, start=False)
    try:
        r = subprocess.run(v2.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("a second vigil serve on port %d, already served by another vigil, started and kept "
                    "running (SO_REUSEPORT lets both bind)" % vigil.port)
    assert r.returncode != 0
    assert vigil.alive()
