"""End to end: the built-in simulator drives a fleet of 1000 devices with
labelled anomalies through the server; every acked event is stored, every
injected anomaly is detected, nothing else is.

The injected episodes are extreme-value episodes (185-200 or 28-33 bpm)
lasting the extreme detector's 30 s of event time plus two intervals, so the
run must be long enough to hold one: at one event a second an episode and
the sample that resolves it need ~36 s, and the simulator starts none that
could not finish before its send phase ends. The same run passes against
the old threshold detector (HIGH_HEART_RATE / LOW_HEART_RATE, one message
per alert), which fires on an episode's first sample.

What the report's alert counters mean (src/sim/ledger.h): false_alerts are
cardiac alerts explained by no injected episode; secondary_alerts are other
cardiac alerts an episode caused (the jump into it is a SUDDEN_HR_CHANGE);
quality_alerts (DATA_GAP, DEVICE_OFFLINE... while the fleet stops) are
reported, never judged; duplicate_alerts are a second extreme alert for one
episode; UPDATE / ACKNOWLEDGED / RESOLVED events are follow-ups, never
duplicates."""

import json
import subprocess

import pytest

from vigiltest import VIGIL


def report_get(report, dotted):
    """report["a"]["b"], or report["a.b"], report["a_b"], report["aB"]."""
    parts = dotted.split(".")
    cur = report
    for part in parts:
        if not isinstance(cur, dict) or part not in cur:
            break
        cur = cur[part]
    else:
        return cur
    camel = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    for alt in (dotted, "_".join(parts), camel):
        if alt in report:
            return report[alt]
    raise AssertionError("sim report has no %r: %s" % (dotted, json.dumps(report)[:2000]))


def parse_report(stdout):
    text = stdout.strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except ValueError:
        pass
    # JSON lines (progress then the report): the last object that has "sent".
    last = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and ("sent" in obj or "acked" in obj):
            last = obj
    assert last is not None, "no JSON report in sim output:\n%s" % text[-3000:]
    return last


DURATION = 40  # s: the shortest run with room for episodes (see above)


@pytest.mark.deadline(170)
def test_sim_fleet_end_to_end(vigil):
    # --anomaly-rate 0.9: episodes can only start in the first few seconds
    # (later ones could not finish), so a high rate gives ~100 of them.
    argv = [VIGIL, "sim", "--connect", "%s:%d" % (vigil.host, vigil.port), "--devices", "1000", "--interval", "1",
            "--duration", str(DURATION), "--qos", "1", "--anomaly-rate", "0.9", "--seed", "7", "--json"]
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=140)
    except subprocess.TimeoutExpired:
        pytest.fail("vigil sim did not finish within 140 s (duration %d s)" % DURATION)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0, "vigil sim exited %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, out[-3000:], err[-3000:])
    rep = parse_report(out)

    sent, acked, failed = report_get(rep, "sent"), report_get(rep, "acked"), report_get(rep, "failed")
    assert sent > 0
    # 1000 devices, one event a second, 40 s: ~40000 events (allow ramp-up).
    assert sent >= 20000, "only %d events sent in %d s by 1000 devices at 1/s" % (sent, DURATION)
    assert acked == sent, "acked %d of %d sent" % (acked, sent)
    assert failed == 0
    # PUBACKs of publishes sent once the whole fleet was connected: a subset
    # of all of them, and most of them (the connect ramp is seconds of 40).
    conn_n, all_n = report_get(rep, "puback_latency_connected_ms.count"), report_get(rep, "puback_latency_ms.count")
    assert acked // 2 <= conn_n <= all_n == acked, json.dumps(rep)
    assert report_get(rep, "puback_latency_connected_ms.max") <= report_get(rep, "puback_latency_ms.max")
    injected = report_get(rep, "anomalies.injected")
    assert injected >= 3, "the three forced episodes at least: %s" % json.dumps(rep)
    assert report_get(rep, "anomalies.cut") == 0, "episodes cut short by the end of the run: %s" % json.dumps(rep)
    assert report_get(rep, "anomalies.missed") == 0, "missed anomalies: %s" % json.dumps(rep)
    false_alerts = rep["false_alerts"] if "false_alerts" in rep else report_get(rep, "anomalies.false_alerts")
    assert false_alerts == 0, "false cardiac alerts: %s" % json.dumps(rep)
    assert report_get(rep, "duplicate_alerts") == 0, "duplicate alerts: %s" % json.dumps(rep)
    # Every detection was timed from the send of the sample it names.
    assert report_get(rep, "alert_latency_ms.count") >= injected, json.dumps(rep)

    tel = vigil.stream_tail("telemetry", timeout=120)
    assert len(tel) >= acked, "telemetry holds %d records, %d were acked" % (len(tel), acked)
    assert len({r["key"] for r in tel}) == 1000
    alerts = [a["data"] for a in vigil.stream_tail("alerts")]
    assert alerts, "no alerts stored although anomalies were injected"
    if any(isinstance(a, dict) and "event" in a for a in alerts):
        # The alert lifecycle: each episode's alert is resolved by the
        # normal sample after it, which the run always sends.
        assert report_get(rep, "anomalies.resolved") == injected, "unresolved episodes: %s" % json.dumps(rep)
