"""Telemetry ingest: valid events land in the telemetry stream verbatim and
exactly once, invalid ones are PUBACKed but dead-lettered with a reason,
counters follow, and records are sharded by MD5(deviceId) with dense
per-shard sequence numbers."""

import base64
import json
import re
import time

import pytest

from vigiltest import (TELEMETRY_TOPIC, deadletter_payload, dumps, iso_ms, now_ms, shard_for, shard_range,
                       telemetry)

SPEC_PAYLOAD = ('{"deviceId":"d1","heartRate":72,"steps":3,"timestamp":"2026-11-25T10:00:00.000Z",'
                '"extra":{"x":1}}')


def counter(stats, key):
    assert key in stats, "stats has no %r; keys: %s" % (key, sorted(stats))
    return stats[key]


def test_valid_event_stored_verbatim_exactly_once(vigil):
    before = vigil.stats()
    c = vigil.client("ingest-1")
    t0 = now_ms()
    c.publish(TELEMETRY_TOPIC, SPEC_PAYLOAD, qos=1)  # returns after PUBACK
    t1 = now_ms()
    lines = vigil.stream_tail_lines("telemetry")
    mine = [(raw, r) for raw, r in lines if r.get("key") == "d1"]
    assert len(mine) == 1, "expected exactly one telemetry record for d1, got %d: %r" % (len(mine), lines)
    raw, rec = mine[0]
    assert rec["stream"] == "telemetry"
    assert rec["data"] == json.loads(SPEC_PAYLOAD), rec
    assert '"data":' + SPEC_PAYLOAD in raw.replace('"data": ', '"data":'), \
        "payload not embedded verbatim in: %s" % raw
    assert rec["shard"] == shard_for("d1"), "d1 must map to shard %d by MD5, got %r" % (shard_for("d1"), rec)
    assert rec["seq"] == 1
    assert t0 - 1000 <= rec["arrivalMs"] <= t1 + 1000, (t0, rec["arrivalMs"], t1)
    assert vigil.stream_tail("deadletter") == []
    after = vigil.wait_stats(lambda s: counter(s, "telemetry.accepted") > counter(before, "telemetry.accepted"))
    assert counter(after, "telemetry.accepted") - counter(before, "telemetry.accepted") == 1
    assert counter(after, "telemetry.deadletter") == counter(before, "telemetry.deadletter")
    assert counter(after, "publish.received") - counter(before, "publish.received") >= 1
    assert counter(after, "stream.committed") >= 1
    c.disconnect()


def test_valid_variants_accepted(vigil):
    base = now_ms()
    variants = [
        {"deviceId": "v-epoch", "heartRate": 72, "steps": 3, "timestamp": base},          # epoch ms
        {"deviceId": "v-float", "heartRate": 72.5, "steps": 0, "timestamp": iso_ms(base)},
        {"deviceId": "v-nofrac", "heartRate": 300, "steps": 100000, "timestamp": "2026-11-25T10:00:00Z"},
        {"deviceId": "v-offset", "heartRate": 1, "steps": 5, "timestamp": "2026-11-25T11:00:00.123+01:00"},
        {"deviceId": "v-unicode-\u00e9\u263a", "heartRate": 60, "steps": 1, "timestamp": base, "nested": [1, {"a": None}]},
    ]
    c = vigil.client("ingest-variants")
    for v in variants:
        c.publish(TELEMETRY_TOPIC, dumps(v), qos=1)
    recs = vigil.stream_tail("telemetry")
    got = sorted((r["key"], json.dumps(r["data"], sort_keys=True)) for r in recs)
    want = sorted((v["deviceId"], json.dumps(v, sort_keys=True)) for v in variants)
    assert got == want
    assert vigil.stream_tail("deadletter") == [], "a valid variant was dead-lettered"
    c.disconnect()


DEEP = '{"deviceId":"d","heartRate":72,"steps":1,"timestamp":"2026-11-25T10:00:00Z","x":%s}' % ("[" * 200 + "]" * 200)
OK_TS = "2026-11-25T10:00:00.000Z"

INVALID = [
    ("not_json", b"this is not json"),
    ("not_json", b'{"deviceId":"d1","heartRate":72,'),
    ("not_json", b"\xff\xfe\x00\x01binary"),
    ("not_object", b"[1,2,3]"),
    ("not_object", b'"just a string"'),
    ("too_deep", DEEP.encode()),
    ("missing_field", dumps({"deviceId": "d1", "steps": 3, "timestamp": OK_TS}).encode()),
    ("missing_field", dumps({"heartRate": 72, "steps": 3, "timestamp": OK_TS}).encode()),
    ("bad_type", dumps({"deviceId": "d1", "heartRate": "abc", "steps": 3, "timestamp": OK_TS}).encode()),
    ("bad_type", dumps({"deviceId": 17, "heartRate": 72, "steps": 3, "timestamp": OK_TS}).encode()),
    ("bad_heart_rate", dumps({"deviceId": "d1", "heartRate": -5, "steps": 3, "timestamp": OK_TS}).encode()),
    ("bad_heart_rate", dumps({"deviceId": "d1", "heartRate": 0, "steps": 3, "timestamp": OK_TS}).encode()),
    ("bad_heart_rate", dumps({"deviceId": "d1", "heartRate": 301, "steps": 3, "timestamp": OK_TS}).encode()),
    ("bad_timestamp", dumps({"deviceId": "d1", "heartRate": 72, "steps": 3, "timestamp": "yesterday"}).encode()),
    ("bad_timestamp", dumps({"deviceId": "d1", "heartRate": 72, "steps": 3,
                             "timestamp": "1999-12-31T23:59:59Z"}).encode()),
    ("bad_steps", dumps({"deviceId": "d1", "heartRate": 72, "steps": -1, "timestamp": OK_TS}).encode()),
    ("bad_steps", dumps({"deviceId": "d1", "heartRate": 72, "steps": 1.5, "timestamp": OK_TS}).encode()),
    ("bad_device_id", dumps({"deviceId": "", "heartRate": 72, "steps": 3, "timestamp": OK_TS}).encode()),
    ("bad_device_id", dumps({"deviceId": "x" * 129, "heartRate": 72, "steps": 3, "timestamp": OK_TS}).encode()),
]


@pytest.mark.parametrize("reason,payload", INVALID, ids=["%s-%d" % (r, i) for i, (r, _) in enumerate(INVALID)])
def test_invalid_payload_dead_lettered(vigil, reason, payload):
    before = vigil.stats()
    c = vigil.client("bad-%s" % reason)
    c.publish(TELEMETRY_TOPIC, payload, qos=1)  # PUBACKed: the server took responsibility
    c.ping()  # and the connection stays up
    assert vigil.stream_tail("telemetry") == [], "an invalid payload reached the telemetry stream"
    dl = vigil.stream_tail("deadletter")
    assert len(dl) == 1, "expected one dead-letter record, got %r" % dl
    rec = dl[0]
    assert rec["stream"] == "deadletter"
    d = rec["data"]
    assert isinstance(d, dict), rec
    assert d["reason"] == reason, "expected reason %r, got %r (detail %r)" % (reason, d.get("reason"), d.get("detail"))
    assert isinstance(d.get("detail"), str) and d["detail"], d
    assert d["topic"] == TELEMETRY_TOPIC
    assert d["clientId"] == "bad-%s" % reason
    assert base64.b64decode(d["payloadBase64"]) == payload
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        assert d["payload"] == text
    else:
        assert d.get("payload") is None, "payload of non-UTF-8 input must be absent, got %r" % d.get("payload")
    assert deadletter_payload(rec) == payload

    key = "deadletter." + reason
    after = vigil.wait_stats(lambda s: counter(s, key) > counter(before, key))
    assert counter(after, key) - counter(before, key) == 1
    assert counter(after, "telemetry.deadletter") - counter(before, "telemetry.deadletter") == 1
    assert counter(after, "telemetry.accepted") == counter(before, "telemetry.accepted")
    c.disconnect()


def test_mixed_batch_counters(vigil):
    """The five invalid payloads of the spec among valid ones, one connection."""
    before = vigil.stats()
    bad = {
        "not_json": b"not json",
        "missing_field": dumps({"deviceId": "m", "steps": 3, "timestamp": OK_TS}).encode(),
        "bad_type": dumps({"deviceId": "m", "heartRate": "abc", "steps": 3, "timestamp": OK_TS}).encode(),
        "bad_heart_rate": dumps({"deviceId": "m", "heartRate": -5, "steps": 3, "timestamp": OK_TS}).encode(),
        "bad_timestamp": dumps({"deviceId": "m", "heartRate": 72, "steps": 3, "timestamp": "yesterday"}).encode(),
    }
    items = []
    for i, (reason, p) in enumerate(bad.items()):
        items.append((TELEMETRY_TOPIC, dumps(telemetry("good-%d" % i, 70 + i))))
        items.append((TELEMETRY_TOPIC, p))
    c = vigil.client("mixed")
    c.publish_many(items, window=4)
    tel = vigil.stream_tail("telemetry")
    dl = vigil.stream_tail("deadletter")
    assert sorted(r["key"] for r in tel) == ["good-%d" % i for i in range(5)]
    assert sorted((r["data"]["reason"], deadletter_payload(r)) for r in dl) == sorted(bad.items())
    after = vigil.wait_stats(lambda s: counter(s, "telemetry.deadletter") - counter(before, "telemetry.deadletter") >= 5
                             and counter(s, "telemetry.accepted") - counter(before, "telemetry.accepted") >= 5)
    assert counter(after, "telemetry.accepted") - counter(before, "telemetry.accepted") == 5
    assert counter(after, "telemetry.deadletter") - counter(before, "telemetry.deadletter") == 5
    for reason in bad:
        k = "deadletter." + reason
        assert counter(after, k) - counter(before, k) == 1, k
    assert counter(after, "publish.received") - counter(before, "publish.received") >= 10
    c.disconnect()


def test_qos0_telemetry_stored(vigil):
    c = vigil.client("qos0")
    c.publish(TELEMETRY_TOPIC, dumps(telemetry("q0", 80)), qos=0)
    c.ping()
    deadline = time.monotonic() + 5
    recs = []
    while time.monotonic() < deadline:
        recs = vigil.stream_tail("telemetry")
        if recs:
            break
        time.sleep(0.1)
    assert [r["key"] for r in recs] == ["q0"]
    c.disconnect()


def test_other_topics_not_ingested(vigil):
    c = vigil.client("other")
    c.publish("iot/wearable/other", dumps(telemetry("o1", 80)), qos=1)
    c.publish("iot/wearable/data/x", dumps(telemetry("o2", 80)), qos=1)
    c.publish("iot/wearable", "not json", qos=1)
    assert vigil.stream_tail("telemetry") == []
    assert vigil.stream_tail("deadletter") == []
    c.disconnect()


def test_telemetry_topic_flag(vigil_factory):
    v = vigil_factory("--telemetry-topic", "fleet/t")
    c = v.client("topic-flag")
    c.publish("fleet/t", dumps(telemetry("tt1", 80)), qos=1)
    c.publish(TELEMETRY_TOPIC, dumps(telemetry("tt2", 80)), qos=1)
    assert [r["key"] for r in v.stream_tail("telemetry")] == ["tt1"]
    c.disconnect()


@pytest.mark.deadline(120)
def test_sharding_by_md5_and_dense_seqs(vigil):
    devices = ["dev-%03d" % i for i in range(200)]
    per_device = 3
    items = []
    for n in range(per_device):
        for d in devices:
            items.append((TELEMETRY_TOPIC, dumps(telemetry(d, 60 + n, steps=n, n=n))))
    c = vigil.client("sharder")
    c.publish_many(items, window=200)
    recs = vigil.stream_tail("telemetry")
    assert len(recs) == len(items), "expected %d records, got %d" % (len(items), len(recs))

    shard_of = {}
    by_shard = {}
    for r in recs:
        dev = r["key"]
        assert r["data"]["deviceId"] == dev
        assert shard_of.setdefault(dev, r["shard"]) == r["shard"], "%s is in several shards" % dev
        by_shard.setdefault(r["shard"], []).append(r)
    assert set(shard_of) == set(devices)
    wrong = {d: s for d, s in shard_of.items() if s != shard_for(d)}
    assert not wrong, "devices in the wrong shard (MD5 ranges): %r" % dict(list(wrong.items())[:10])
    assert set(by_shard) <= {0, 1, 2, 3}
    assert len(by_shard) == 4, "200 devices should touch all 4 shards, got %r" % sorted(by_shard)
    for s, rs in by_shard.items():
        seqs = [r["seq"] for r in rs]
        assert seqs == list(range(1, len(rs) + 1)), "shard %d seqs not 1..N in order: %r" % (s, seqs[:20])
        # one connection: per-device order is publish order
        last = {}
        for r in rs:
            n = r["data"]["n"]
            assert n == last.get(r["key"], -1) + 1, "out of order for %s in shard %d" % (r["key"], s)
            last[r["key"]] = n
    c.disconnect()


def _ls_blocks(text, names):
    lines = text.splitlines()
    first = {}
    for n in names:
        for i, line in enumerate(lines):
            if re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(n), line):
                first[n] = i
                break
    order = sorted(first.items(), key=lambda kv: kv[1])
    blocks = {}
    for idx, (n, i) in enumerate(order):
        end = order[idx + 1][1] if idx + 1 < len(order) else len(lines)
        blocks[n] = lines[i:end]
    return blocks


def test_stream_ls(vigil):
    devices = ["ls-%02d" % i for i in range(40)]
    items = [(TELEMETRY_TOPIC, dumps(telemetry(d, 70))) for d in devices]
    items.append((TELEMETRY_TOPIC, "garbage"))                              # a dead letter
    items.append((TELEMETRY_TOPIC, dumps(telemetry("ls-00", 170))))         # an alert
    c = vigil.client("ls")
    c.publish_many(items)
    # wait for the alert so that every stream has content
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not vigil.stream_tail("alerts"):
        time.sleep(0.1)
    out = vigil.stream_ls()
    blocks = _ls_blocks(out, ["telemetry", "deadletter", "alerts"])
    for n in ("telemetry", "deadletter", "alerts"):
        assert n in blocks, "stream ls does not list %s:\n%s" % (n, out)
    tel = blocks["telemetry"]
    counts = {}
    for d in devices + ["ls-00"]:
        counts[shard_for(d)] = counts.get(shard_for(d), 0) + 1
    for i in range(4):
        start, end = shard_range(4, i)
        hits = [l for l in tel if re.search(r"(?<!\d)%d(?!\d)" % end, l)]
        assert hits, "telemetry shard %d (range ..%d) not listed:\n%s" % (i, end, out)
        nums = re.findall(r"\d+", hits[0])
        assert str(start) in nums, "shard %d start %d missing in %r" % (i, start, hits[0])
        assert str(counts.get(i, 0)) in nums, "shard %d count %d missing in %r" % (i, counts.get(i, 0), hits[0])
    # alerts: same shard layout as telemetry
    for i in range(4):
        end = shard_range(4, i)[1]
        assert any(re.search(r"(?<!\d)%d(?!\d)" % end, l) for l in blocks["alerts"]), \
            "alerts shard %d not listed:\n%s" % (i, out)
    c.disconnect()


def test_stream_tail_from_and_bad_arguments(vigil):
    """`stream tail --from SEQ` starts at SEQ; a malformed --from or --shard is
    an error (exit 2, a sentence on stderr), never a silent full dump."""
    c = vigil.client("tailfrom")
    dev = "tailfrom-dev"
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry(dev, 70 + i))) for i in range(5)])
    shard = shard_for(dev, 4)
    recs = vigil.stream_tail("telemetry", "--shard", str(shard), "--from", "3")
    assert [r["seq"] for r in recs] == [3, 4, 5]
    for bad in (["--from", "3x"], ["--from", "-1"], ["--shard", "abc"], ["--shard", "-1"], ["--shard", "4"]):
        r = vigil.cli("stream", "tail", "telemetry", "--data-dir", vigil.data_dir, *bad, check=False)
        assert r.returncode == 2, (bad, r.returncode)
        assert r.stderr.strip(), bad
    c.disconnect()
