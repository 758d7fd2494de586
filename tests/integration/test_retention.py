"""Stream retention (issue 9): with `--retention-telemetry 2s` and tiny
segments, a live server deletes whole telemetry segments once their newest
record is 2 s old. `vigil stream ls` shows the trim horizon (first stored
sequence number per shard) moving up and the retention setting, the stats
count what was trimmed, and no PUBACKed event is lost while it is still
within its 2 s: every event published less than 2 s before the check is in
the stream, exactly once, and each shard's records are contiguous from its
horizon on."""

import re
import time

import pytest

from vigiltest import TELEMETRY_TOPIC, dumps, telemetry, wait_until

RETENTION_S = 2.0
SHARDS = 4


def ls_telemetry(server):
    """{shard: (first, last, records)} and the header line of telemetry in `vigil stream ls`."""
    out = server.stream_ls()
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(r"^telemetry\b", l))
    header = lines[start]
    shards = {}
    for l in lines[start + 2:start + 2 + SHARDS]:
        f = l.split()
        shards[int(f[0])] = (int(f[3]), int(f[4]), int(f[5]))
    return header, shards


@pytest.mark.deadline(120)
def test_retention_moves_horizon_and_keeps_what_is_in_retention(vigil_factory):
    server = vigil_factory("--retention-telemetry", "2s", "--segment-bytes", "4096", "--shards", str(SHARDS))
    header, first_ls = ls_telemetry(server)
    assert "retention 2s" in header, header
    assert all(v[0] in (0, 1) for v in first_ls.values()), first_ls

    c = server.client("ret-pub")
    devices = ["ret-%02d" % i for i in range(16)]
    published = []  # (n, device, wall time before sending)
    horizons = []   # per `stream ls`: {shard: first}
    n = 0
    t_end = time.monotonic() + 7.0
    next_ls = time.monotonic() + 0.5
    while time.monotonic() < t_end:
        batch = []
        t_pub = time.time()
        for _ in range(40):
            d = devices[n % len(devices)]
            batch.append((TELEMETRY_TOPIC, dumps(telemetry(d, 70, n=n))))
            published.append((n, d, t_pub))
            n += 1
        c.publish_many(batch, window=40)  # returns once every one is PUBACKed
        if time.monotonic() >= next_ls:
            horizons.append({s: v[0] for s, v in ls_telemetry(server)[1].items()})
            next_ls = time.monotonic() + 0.5
        time.sleep(0.05)
    c.disconnect()

    # The horizon moved up, more than once, on every shard.
    for s in range(SHARDS):
        seq = [h[s] for h in horizons]
        assert seq == sorted(seq), "shard %d horizon went backwards: %r" % (s, seq)
        assert len(set(seq)) >= 3, "shard %d horizon did not keep moving: %r" % (s, seq)

    # What is still in retention is all there, exactly once.
    records = server.stream_tail("telemetry")
    t_check = time.time()
    got = {}
    for r in records:
        k = r["data"]["n"]
        assert k not in got, "event %d stored twice" % k
        got[k] = r
    kept_cut = t_check - RETENTION_S
    must_have = [k for k, _, t in published if t > kept_cut]
    assert must_have, "the check ran too late to mean anything"
    missing = [k for k in must_have if k not in got]
    assert not missing, "events still within retention are missing: %r" % missing[:20]
    # Something was deleted (the oldest events are gone), and nothing that
    # was never published appeared.
    assert 0 not in got, "the first event should have expired"
    assert set(got) <= set(k for k, _, _ in published)
    by_shard = {}
    for r in records:
        by_shard.setdefault(r["shard"], []).append(r["seq"])
    for s, seqs in by_shard.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "shard %d not contiguous from its horizon" % s

    st = server.wait_stats(lambda st: st.get("stream.trimmed_segments", 0) > 0)
    assert st["stream.trimmed_segments"] > 0, st
    assert st["stream.trimmed_records"] > 0
    assert st["stream.trim_errors"] == 0
    for s in range(SHARDS):
        assert st["stream.shard.%d.first_seq" % s] >= 0

    # Once idle, the rest expires too (the active segments are rolled and
    # deleted): no records left, the horizon just past the last one.
    def all_gone():
        _, sh = ls_telemetry(server)
        return all(v[2] == 0 and v[0] == v[1] + 1 for v in sh.values()) and sh

    sh = wait_until(all_gone, 15, interval=0.2)
    assert sh, "telemetry did not expire entirely once idle: %r" % (ls_telemetry(server)[1],)
    server.stop()
