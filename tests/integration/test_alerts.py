"""Heart-rate alerts: one alert per episode, on MQTT alerts/<deviceId> and
in the alerts stream, with the documented fields; thresholds configurable by
flag and by config file."""

import json
import re
import subprocess
import time

import pytest

from vigiltest import TELEMETRY_TOPIC, dumps, iso_ms, now_ms, parse_iso_ms, telemetry

ALERT_FIELDS = {"alertId", "deviceId", "type", "value", "threshold", "eventTimeMs", "seq", "detectedAtMs"}


def send_series(client, device, rates, t0=None, step_ms=1000):
    """Publishes one QoS 1 event per heart rate, event times 1 s apart.
    Returns the event times used."""
    t0 = t0 if t0 is not None else now_ms() - len(rates) * step_ms
    times = []
    for i, hr in enumerate(rates):
        ts = t0 + i * step_ms
        times.append(ts)
        client.publish(TELEMETRY_TOPIC, dumps(telemetry(device, hr, steps=i, ts=ts)), qos=1)
    return times


def alerts_from(sub, device=None):
    out = []
    for topic, payload, _ in sub.snapshot():
        a = json.loads(payload)
        assert topic == "alerts/%s" % a["deviceId"], "alert for %s on topic %s" % (a["deviceId"], topic)
        if device is None or a["deviceId"] == device:
            out.append(a)
    return out


def wait_alerts(sub, device, n, timeout=10.0, quiet=1.0):
    """Waits for n alerts of device, then `quiet` more seconds for extras."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(alerts_from(sub, device)) < n:
        time.sleep(0.05)
    time.sleep(quiet)
    return alerts_from(sub, device)


def test_high_heart_rate_episodes(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("hr-high")
    t0 = now_ms() - 10000
    send_series(c, "hi-1", [150, 155, 160], t0=t0)
    got = wait_alerts(sub, "hi-1", 1)
    assert len(got) == 1, "150,155,160 is one episode: expected 1 alert, got %r" % got
    assert got[0]["type"] == "HIGH_HEART_RATE" and got[0]["value"] == 150 and got[0]["threshold"] == 140
    assert got[0]["eventTimeMs"] == t0

    send_series(c, "hi-1", [80, 150], t0=t0 + 3000)
    got = wait_alerts(sub, "hi-1", 2)
    assert len(got) == 2, "80 closes the episode, 150 opens a new one: expected 2 alerts, got %r" % got
    assert [a["type"] for a in got] == ["HIGH_HEART_RATE"] * 2
    assert got[1]["eventTimeMs"] == t0 + 4000
    assert got[0]["alertId"] != got[1]["alertId"]
    c.disconnect()


def test_low_heart_rate(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("hr-low")
    send_series(c, "lo-1", [70, 35, 30, 36])
    got = wait_alerts(sub, "lo-1", 1)
    assert len(got) == 1, got
    a = got[0]
    assert a["type"] == "LOW_HEART_RATE" and a["value"] == 35 and a["threshold"] == 40, a
    c.disconnect()


def test_thresholds_are_exclusive(vigil, mqtt_sub):
    """140 and 40 are inside [low, high]: no alert. A later 141 proves the
    detector saw the device (and that only it fired)."""
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("hr-edge")
    send_series(c, "edge-1", [140, 140, 40, 40, 141])
    got = wait_alerts(sub, "edge-1", 1)
    assert len(got) == 1 and got[0]["value"] == 141 and got[0]["type"] == "HIGH_HEART_RATE", got
    c.disconnect()


def test_alert_fields_and_alert_stream(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("hr-fields")
    start = now_ms()
    t0 = start - 5000
    send_series(c, "f-1", [70, 150, 80, 30], t0=t0)
    got = wait_alerts(sub, "f-1", 2)
    done = now_ms()
    assert len(got) == 2, got
    tel = {r["data"]["timestamp"]: r for r in vigil.stream_tail("telemetry") if r["key"] == "f-1"}
    for a, (hr, ts, typ, thr) in zip(got, [(150, t0 + 1000, "HIGH_HEART_RATE", 140),
                                            (30, t0 + 3000, "LOW_HEART_RATE", 40)]):
        missing = ALERT_FIELDS - set(a)
        assert not missing, "alert lacks %s: %r" % (sorted(missing), a)
        assert re.fullmatch(r"[0-9a-f]{16}", a["alertId"]), a["alertId"]
        assert a["deviceId"] == "f-1" and a["type"] == typ and a["value"] == hr and a["threshold"] == thr, a
        assert a["eventTimeMs"] == ts
        if "timestamp" in a:
            assert parse_iso_ms(a["timestamp"]) == ts, a["timestamp"]
        src = tel[iso_ms(ts)]
        assert a["seq"] == src["seq"], "alert seq %r is not the source record's seq %r" % (a["seq"], src["seq"])
        if "shard" in a:
            assert a["shard"] == src["shard"]
        assert start - 1000 <= a["detectedAtMs"] <= done + 1000, a

    stream = vigil.stream_tail("alerts")
    assert all(r["stream"] == "alerts" for r in stream)
    assert sorted(json.dumps(r["data"], sort_keys=True) for r in stream) == \
        sorted(json.dumps(a, sort_keys=True) for a in got), "alerts stream differs from the MQTT alerts"
    for r in stream:
        src = tel[iso_ms(r["data"]["eventTimeMs"])]
        assert r["shard"] == src["shard"], "alert record not in its source record's shard: %r" % r
    c.disconnect()


def test_alerts_only_for_alerting_devices(vigil, mqtt_sub):
    sub = mqtt_sub(vigil, ["alerts/#"])
    c = vigil.client("hr-many")
    items = []
    base = now_ms() - 60000
    for i in range(50):
        for k, hr in enumerate([70, 75, 80]):
            items.append((TELEMETRY_TOPIC, dumps(telemetry("calm-%d" % i, hr, ts=base + k * 1000))))
    items.append((TELEMETRY_TOPIC, dumps(telemetry("storm", 190, ts=base))))
    c.publish_many(items)
    got = wait_alerts(sub, None, 1, quiet=1.5)
    assert [a["deviceId"] for a in got] == ["storm"], got
    assert len(vigil.stream_tail("alerts")) == 1
    c.disconnect()


def test_device_alert_topic_subscription(vigil, mqtt_sub):
    only = mqtt_sub(vigil, ["alerts/watched"])
    c = vigil.client("hr-topic")
    send_series(c, "unwatched", [170])
    send_series(c, "watched", [170])
    got = wait_alerts(only, None, 1)
    assert [a["deviceId"] for a in got] == ["watched"], got
    c.disconnect()


def test_high_hr_flag(vigil_factory, mqtt_sub):
    v = vigil_factory("--high-hr", "120", "--low-hr", "50")
    sub = mqtt_sub(v, ["alerts/#"])
    c = v.client("hr-flag")
    send_series(c, "flag-1", [115, 120, 130, 70, 45])
    got = wait_alerts(sub, "flag-1", 2)
    assert [(a["type"], a["value"], a["threshold"]) for a in got] == \
        [("HIGH_HEART_RATE", 130, 120), ("LOW_HEART_RATE", 45, 50)], got
    c.disconnect()


def test_config_file(vigil_factory, mqtt_sub, tmp_path):
    cfg = tmp_path / "vigil.conf"
    cfg.write_text("# thresholds for this test\n\nhigh_hr = 130\n  # indented comment\nlow_hr = 45\n")
    v = vigil_factory("--config", str(cfg))
    sub = mqtt_sub(v, ["alerts/#"])
    c = v.client("hr-cfg")
    send_series(c, "cfg-1", [125, 130, 135, 90, 44])
    got = wait_alerts(sub, "cfg-1", 2)
    assert [(a["type"], a["value"], a["threshold"]) for a in got] == \
        [("HIGH_HEART_RATE", 135, 130), ("LOW_HEART_RATE", 44, 45)], got
    c.disconnect()


def test_bad_config_rejected(vigil_factory, tmp_path):
    cfg = tmp_path / "bad.conf"
    cfg.write_text("high_hr = not-a-number\n")
    v = vigil_factory("--config", str(cfg), start=False)
    for text, why in [("high_hr = not-a-number\n", "a non-numeric high_hr"),
                      ("no_such_option = 1\n", "an unknown key")]:
        cfg.write_text(text)
        try:
            r = subprocess.run(v.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("vigil serve started with %s in its config file" % why)
        assert r.returncode != 0, "vigil serve exited 0 with %s in its config file" % why
