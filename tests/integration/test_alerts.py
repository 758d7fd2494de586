"""Alerts end to end through the real server: the detector set (sustained
high heart rate at rest, extreme values, sudden change, data quality), the
alert lifecycle (OPEN, UPDATE, ACKNOWLEDGED, RESOLVED under one alertId),
delivery on MQTT alerts/<deviceId> and in the alerts stream, operator
acknowledgement over MQTT, no duplicates after a crash and replay, and
thresholds set globally and per device.

Samples are published with event times 5 s apart ending near now, so a
10-minute episode takes a fraction of a second to send."""

import json
import re
import subprocess
import time

import pytest

from vigiltest import TELEMETRY_TOPIC, dumps, iso_ms, now_ms, parse_iso_ms, telemetry

STEP = 5000
ALERT_FIELDS = {"eventId", "alertId", "event", "revision", "deviceId", "type", "category", "severity", "value",
                "threshold", "evidence", "openedAtMs", "eventTimeMs", "timestamp", "shard", "seq", "openSeq",
                "detectedAtMs", "acknowledged"}
ACK_TOPIC = "vigil/alerts/ack"


def rest(n, hr=70):
    """n samples at rest (no steps) around heart rate hr (+-1 bpm: a real
    sensor is never flat, and a flat line is a data-quality alert)."""
    return [(hr + (0, 1, 0, -1)[i % 4], 0) for i in range(n)]


def ramp(a, b, per_sample=1.0, steps=0):
    """From a towards b by per_sample bpm per sample (gradual: no sudden change)."""
    out, h = [], float(a)
    sign = 1 if b >= a else -1
    while (h - b) * sign < 0:
        h += sign * per_sample
        out.append((round(min(h, b) if sign > 0 else max(h, b), 1), steps))
    return out


def send(client, device, samples, t0):
    """Publishes samples [(hr, steps)] 5 s apart from t0; returns the times."""
    items, times = [], []
    for i, (hr, steps) in enumerate(samples):
        ts = t0 + i * STEP
        times.append(ts)
        items.append((TELEMETRY_TOPIC, dumps(telemetry(device, hr, steps=steps, ts=ts))))
    client.publish_many(items)
    return times


def events(sub, device=None, type_=None):
    out = []
    for topic, payload, _ in sub.snapshot():
        if not topic.startswith("alerts/"):
            continue
        a = json.loads(payload)
        assert topic == "alerts/%s" % a["deviceId"], "alert for %s on topic %s" % (a["deviceId"], topic)
        if (device is None or a["deviceId"] == device) and (type_ is None or a["type"] == type_):
            out.append(a)
    return out


def wait_events(sub, pred, timeout=10.0, quiet=0.8, **kw):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred(events(sub, **kw)):
        time.sleep(0.05)
    time.sleep(quiet)
    return events(sub, **kw)


def kinds(evs):
    return [e["event"] for e in evs]


def test_extreme_high_episode(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("ex")
    samples = rest(24) + [(190, 0)] * 12 + rest(24)
    t0 = now_ms() - len(samples) * STEP
    times = send(c, "ex-1", samples, t0)
    got = wait_events(sub, lambda e: "RESOLVED" in kinds(e), device="ex-1", type_="EXTREME_HIGH_HR")
    assert kinds(got) == ["OPEN", "RESOLVED"], got
    op, res = got
    first_high = times[24]
    assert op["openedAtMs"] == first_high, op
    # the sample that completed 30 s above 180
    assert op["eventTimeMs"] == first_high + 30000, op
    assert op["severity"] == "critical" and op["category"] == "cardiac" and op["threshold"] == 180, op
    assert res["alertId"] == op["alertId"] and res["eventTimeMs"] == times[36], res
    assert op["evidence"]["samples"] >= 7 and op["evidence"]["minHr"] == 190, op
    # nothing else cardiac but (possibly) the unexplained jump at its start
    others = {e["type"] for e in events(sub, device="ex-1")} - {"EXTREME_HIGH_HR", "SUDDEN_HR_CHANGE"}
    assert not others, events(sub, device="ex-1")
    c.disconnect()


def test_exercise_raises_no_cardiac_alert(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("run")
    # warm-up walk, 20 min run at 150-172 bpm with 180 steps/min, cool-down
    samples = ramp(75, 110, 1.0, steps=9) + [(150 + (i % 23), 15) for i in range(240)] + ramp(165, 95, 0.5, steps=6)
    t0 = now_ms() - len(samples) * STEP
    send(c, "runner", samples, t0)
    vigil.wait_stats(lambda s: s.get("proc.processed", 0) >= len(samples), timeout=10)
    time.sleep(0.8)
    got = [e for e in events(sub, device="runner") if e["category"] == "cardiac"]
    assert got == [], got
    c.disconnect()


def test_tachycardia_at_rest_open_update_resolve(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("tachy")
    # 7 min resting, a gradual rise to 130 held 12 min, a rise to 155 held
    # 12 min (window mean >= 140: critical), a gradual return to 70.
    samples = rest(84) + ramp(70, 130) + rest(144, 130) + ramp(130, 155) + rest(144, 155) + ramp(155, 70) + rest(140)
    t0 = now_ms() - len(samples) * STEP
    send(c, "tachy-1", samples, t0)
    got = wait_events(sub, lambda e: "RESOLVED" in kinds(e), device="tachy-1", type_="SUSTAINED_HIGH_HR_AT_REST")
    assert kinds(got) == ["OPEN", "UPDATE", "RESOLVED"], got
    assert len({e["alertId"] for e in got}) == 1, got
    assert [e["revision"] for e in got] == [0, 1, 2], got
    assert [e["severity"] for e in got[:2]] == ["warning", "critical"], got
    assert len({e["eventId"] for e in got}) == 3
    op = got[0]
    assert op["threshold"] == 120 and op["evidence"]["windowMs"] == 600000, op
    assert op["evidence"]["activeShare"] == 0 and op["evidence"]["maxHr"] >= 125, op
    onset = t0 + (84 + 50) * STEP  # the first sample above 120
    # detected within the rule's window (10 min) + 2 samples of the onset
    assert onset <= op["eventTimeMs"] <= onset + 600000 + 2 * STEP, (op, onset)
    # a gradual change is not "sudden", and 155 is not extreme
    assert [e for e in events(sub, device="tachy-1") if e["type"] != "SUSTAINED_HIGH_HR_AT_REST"] == []
    c.disconnect()


def test_alert_fields_and_alert_stream(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("fields")
    samples = rest(12) + [(30, 0)] * 10 + rest(6)
    t0 = now_ms() - len(samples) * STEP
    start = now_ms()
    times = send(c, "f-1", samples, t0)
    got = wait_events(sub, lambda e: "RESOLVED" in kinds(e), device="f-1", type_="EXTREME_LOW_HR")
    done = now_ms()
    assert kinds(got) == ["OPEN", "RESOLVED"], got
    tel = {r["data"]["timestamp"]: r for r in vigil.stream_tail("telemetry") if r["key"] == "f-1"}
    for a in got:
        missing = ALERT_FIELDS - set(a)
        assert not missing, "alert lacks %s: %r" % (sorted(missing), a)
        assert re.fullmatch(r"[0-9a-f]{16}", a["alertId"]) and re.fullmatch(r"[0-9a-f]{16}", a["eventId"]), a
        assert parse_iso_ms(a["timestamp"]) == a["eventTimeMs"], a
        src = tel[iso_ms(a["eventTimeMs"])]
        assert a["seq"] == src["seq"] and a["shard"] == src["shard"], (a, src)
        assert start - 1000 <= a["detectedAtMs"] <= done + 1000, a
    # opened by the sample that completed 30 s below 35; the episode began at the first
    assert got[0]["openSeq"] == got[0]["seq"] == tel[iso_ms(times[18])]["seq"], got[0]
    assert got[0]["openedAtMs"] == times[12] and got[1]["openSeq"] == got[0]["openSeq"], got
    every = events(sub)
    stream = vigil.stream_tail("alerts")
    assert all(r["stream"] == "alerts" for r in stream)
    assert sorted(json.dumps(r["data"], sort_keys=True) for r in stream) == \
        sorted(json.dumps(a, sort_keys=True) for a in every), "alerts stream differs from the MQTT alerts"
    c.disconnect()


def test_acknowledge_over_mqtt(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#", ACK_TOPIC + "/result"])
    c = vigil.client("ack")
    samples = rest(12) + [(195, 0)] * 10
    t0 = now_ms() - (len(samples) + 30) * STEP
    send(c, "ack-1", samples, t0)
    op = wait_events(sub, lambda e: len(e) >= 1, device="ack-1", type_="EXTREME_HIGH_HR")[0]
    assert op["event"] == "OPEN" and op["acknowledged"] is False

    def results():
        return [json.loads(p) for t, p, _ in sub.snapshot() if t == ACK_TOPIC + "/result"]

    op_ack = c.client_id if hasattr(c, "client_id") else None
    c.publish_many([(ACK_TOPIC, dumps({"alertId": op["alertId"], "deviceId": "ack-1", "by": "nurse-7",
                                       "note": "called the patient"}))])
    wait_events(sub, lambda e: "ACKNOWLEDGED" in kinds(e), device="ack-1")
    ack = [e for e in events(sub, device="ack-1") if e["event"] == "ACKNOWLEDGED"]
    assert len(ack) == 1, ack
    assert ack[0]["alertId"] == op["alertId"] and ack[0]["acknowledged"] is True, ack
    assert ack[0]["ack"]["by"] == "nurse-7" and ack[0]["ack"]["note"] == "called the patient", ack
    assert [r["status"] for r in results()] == ["acknowledged"], results()
    # again, unknown, malformed
    c.publish_many([(ACK_TOPIC, dumps({"alertId": op["alertId"], "deviceId": "ack-1"})),
                    (ACK_TOPIC, dumps({"alertId": "0" * 16, "deviceId": "ack-1"})),
                    (ACK_TOPIC, dumps({"alertId": op["alertId"], "deviceId": "nobody"})),
                    (ACK_TOPIC, "not json"),
                    (ACK_TOPIC, dumps({"alertId": "xyz", "deviceId": "ack-1"}))])
    deadline = time.monotonic() + 5
    while len(results()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    # (invalid requests are answered by the gateway at once, the others by the processor)
    assert sorted(r["status"] for r in results()) == ["acknowledged", "already_acknowledged", "invalid", "invalid",
                                                      "not_found", "not_found"], results()
    # the episode's end says it was acknowledged
    send(c, "ack-1", rest(3), t0 + len(samples) * STEP)
    res = wait_events(sub, lambda e: "RESOLVED" in kinds(e), device="ack-1", type_="EXTREME_HIGH_HR")[-1]
    assert res["event"] == "RESOLVED" and res["acknowledged"] is True, res
    st = vigil.stats()
    assert st["alerts.acknowledged"] == 1, st
    c.disconnect()


def test_crash_replay_emits_no_duplicates(vigil, mqtt_sub):
    before = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("crash")
    samples = rest(12) + [(200, 0)] * 10
    t0 = now_ms() - (len(samples) + 20) * STEP
    send(c, "crash-1", samples, t0)
    # published on MQTT = durable in the alerts stream
    wait_events(before, lambda e: len(e) >= 1, device="crash-1", type_="EXTREME_HIGH_HR", quiet=0.3)
    c.disconnect()
    vigil.kill9()
    # Lose every checkpoint: the processor replays the telemetry from the start.
    subprocess.run("rm -f %s/consumers/detector/*.ckpt" % vigil.data_dir, shell=True, check=True)
    vigil.start()
    sub = mqtt_sub(vigil, ["alerts/#"])
    st = vigil.wait_stats(lambda s: s.get("proc.processed", 0) >= len(samples), timeout=10)
    assert st["alerts.replayed"] >= 1, st
    c = vigil.client("crash2")
    send(c, "crash-1", rest(3), t0 + len(samples) * STEP)
    wait_events(sub, lambda e: "RESOLVED" in kinds(e), device="crash-1", type_="EXTREME_HIGH_HR")
    recs = [r["data"] for r in vigil.stream_tail("alerts") if r["data"]["type"] == "EXTREME_HIGH_HR"]
    assert kinds(recs) == ["OPEN", "RESOLVED"], recs
    assert len({r["eventId"] for r in recs}) == 2
    # after the restart only the RESOLVED went out on MQTT
    assert kinds(events(sub, device="crash-1", type_="EXTREME_HIGH_HR")) == ["RESOLVED"]
    c.disconnect()


def test_silence_gap_and_offline(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("quiet")
    n = 12 * 25  # 25 minutes
    t0 = now_ms() - n * STEP
    items = []
    for i in range(n):
        ts = t0 + i * STEP
        # q-1 falls silent after 2 minutes; the others keep the shards' clocks going
        for d in ["q-1"] if i < 24 else []:
            items.append((TELEMETRY_TOPIC, dumps(telemetry(d, 70, ts=ts))))
        for k in range(16):
            items.append((TELEMETRY_TOPIC, dumps(telemetry("keep-%d" % k, 70 + (i % 3), ts=ts))))
    c.publish_many(items)
    got = wait_events(sub, lambda e: {"DATA_GAP", "DEVICE_OFFLINE"} <= {x["type"] for x in e}, device="q-1")
    types = [(e["type"], e["event"]) for e in got]
    assert ("DATA_GAP", "OPEN") in types and ("DEVICE_OFFLINE", "OPEN") in types, got
    off = [e for e in got if e["type"] == "DEVICE_OFFLINE"][0]
    last = t0 + 23 * STEP
    # offline counts from when the shard last heard it, in stream time (the
    # median event time of the shard's recent records: a few samples behind)
    assert off["category"] == "data_quality" and last + 900000 - 30000 <= off["openedAtMs"] <= last + 900000, off
    # it comes back: both resolve
    c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry("q-1", 70, ts=t0 + n * STEP)))])
    got = wait_events(sub, lambda e: kinds(e).count("RESOLVED") >= 2, device="q-1")
    assert sorted((e["type"], e["event"]) for e in got if e["event"] == "RESOLVED") == \
        [("DATA_GAP", "RESOLVED"), ("DEVICE_OFFLINE", "RESOLVED")], got
    assert not [e for e in events(sub) if e["deviceId"].startswith("keep-")], "steady devices raised alerts"
    c.disconnect()


def sofa(hr):
    """8 min resting at 70, then 14 min at hr (gradual start)."""
    return rest(96) + ramp(70, hr) + rest(168, hr)


def test_per_device_thresholds(vigil_factory, mqtt_sub, tmp_path):
    cfg = tmp_path / "detect.conf"
    cfg.write_text("# stricter for one patient\nrest_share = 0.8\n\n[device \"strict\"]\nrest_high_bpm = 100\n")
    v = vigil_factory("--detect-config", str(cfg))
    sub = mqtt_sub(v, ["alerts/#"])
    c = v.client("per-dev")
    samples = sofa(110)
    t0 = now_ms() - len(samples) * STEP
    send(c, "strict", samples, t0)
    send(c, "normal", samples, t0)
    got = wait_events(sub, lambda e: len(e) >= 1, device="strict", type_="SUSTAINED_HIGH_HR_AT_REST")
    assert got and got[0]["threshold"] == 100, got
    assert events(sub, device="normal") == [], events(sub, device="normal")
    c.disconnect()


def test_rest_high_flag(vigil_factory, mqtt_sub):
    v = vigil_factory("--rest-high-bpm", "100")
    sub = mqtt_sub(v, ["alerts/#"])
    c = v.client("flag")
    samples = sofa(110)
    send(c, "flag-1", samples, now_ms() - len(samples) * STEP)
    got = wait_events(sub, lambda e: len(e) >= 1, device="flag-1", type_="SUSTAINED_HIGH_HR_AT_REST")
    assert got and got[0]["threshold"] == 100, got
    c.disconnect()


def test_config_file_sets_rest_threshold(vigil_factory, mqtt_sub, tmp_path):
    cfg = tmp_path / "vigil.conf"
    cfg.write_text("# thresholds for this test\n\nrest_high_bpm = 105\n  # indented comment\n")
    v = vigil_factory("--config", str(cfg))
    sub = mqtt_sub(v, ["alerts/#"])
    c = v.client("cfg")
    samples = sofa(110)
    send(c, "cfg-1", samples, now_ms() - len(samples) * STEP)
    got = wait_events(sub, lambda e: len(e) >= 1, device="cfg-1", type_="SUSTAINED_HIGH_HR_AT_REST")
    assert got and got[0]["threshold"] == 105, got
    c.disconnect()


@pytest.mark.parametrize("text,why", [
    ("rest_high_bpm = 151\n", "outside its range"),
    ("no_such_param = 1\n", "unknown detector parameter"),
    ("rest_high_bpm = abc\n", "not a number"),
    ("[device w-1]\n", "must be quoted"),
    ("[devices \"w\"]\n", "unknown section"),
    ("rest_high_bpm 120\n", "expected name = value"),
])
def test_bad_detect_config_rejected(vigil_factory, tmp_path, text, why):
    cfg = tmp_path / "bad.conf"
    cfg.write_text("# line 1\n" + text)
    v = vigil_factory("--detect-config", str(cfg), start=False)
    try:
        r = subprocess.run(v.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("vigil serve started with a bad detect config (%s)" % why)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 2, out
    assert "bad.conf:2:" in out and why in out, out


def test_bad_rest_flag_rejected(vigil_factory):
    v = vigil_factory("--rest-high-bpm", "99", start=False)
    r = subprocess.run(v.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
    assert r.returncode != 0, r.stdout


def test_acknowledge_over_http(vigil, mqtt_sub):
    """The HTTP publish endpoint reaches the same control topic: 200 once the
    ACKNOWLEDGED event is durable."""
    import http.client
    import urllib.parse
    sub = mqtt_sub(vigil, ["alerts/#", ACK_TOPIC + "/result"])
    c = vigil.client("ack-http")
    samples = rest(12) + [(31, 0)] * 10
    send(c, "ack-h", samples, now_ms() - (len(samples) + 30) * STEP)
    op = wait_events(sub, lambda e: len(e) >= 1, device="ack-h", type_="EXTREME_LOW_HR")[0]
    conn = http.client.HTTPConnection(vigil.host, vigil.http_port, timeout=10)
    body = dumps({"alertId": op["alertId"], "deviceId": "ack-h", "by": "dashboard"})
    conn.request("POST", "/topics/" + urllib.parse.quote(ACK_TOPIC, safe="") + "?qos=1", body=body,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, (r.status, r.read())
    r.read()
    conn.close()
    # durable before the 200: the record is already in the stream
    acks = [x["data"] for x in vigil.stream_tail("alerts") if x["data"]["event"] == "ACKNOWLEDGED"]
    assert len(acks) == 1 and acks[0]["alertId"] == op["alertId"] and acks[0]["ack"]["by"] == "dashboard", acks
    c.disconnect()
