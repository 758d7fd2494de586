"""End to end: the built-in simulator drives a fleet of 1000 devices with
labelled anomalies through the server; every acked event is stored, every
injected anomaly is detected, nothing else is."""

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


@pytest.mark.deadline(150)
def test_sim_fleet_end_to_end(vigil):
    argv = [VIGIL, "sim", "--connect", "%s:%d" % (vigil.host, vigil.port), "--devices", "1000", "--interval", "1",
            "--duration", "20", "--qos", "1", "--anomaly-rate", "0.5", "--seed", "7", "--json"]
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("vigil sim did not finish within 120 s (duration 20 s)")
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0, "vigil sim exited %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, out[-3000:], err[-3000:])
    rep = parse_report(out)

    sent, acked, failed = report_get(rep, "sent"), report_get(rep, "acked"), report_get(rep, "failed")
    assert sent > 0
    # 1000 devices, one event a second, 20 s: ~20000 events (allow ramp-up).
    assert sent >= 10000, "only %d events sent in 20 s by 1000 devices at 1/s" % sent
    assert acked == sent, "acked %d of %d sent" % (acked, sent)
    assert failed == 0
    injected = report_get(rep, "anomalies.injected")
    assert injected > 0
    assert report_get(rep, "anomalies.missed") == 0, "missed anomalies: %s" % json.dumps(rep)
    false_alerts = rep["false_alerts"] if "false_alerts" in rep else report_get(rep, "anomalies.false_alerts")
    assert false_alerts == 0, "false alerts: %s" % json.dumps(rep)

    tel = vigil.stream_tail("telemetry", timeout=120)
    assert len(tel) >= acked, "telemetry holds %d records, %d were acked" % (len(tel), acked)
    assert len({r["key"] for r in tel}) == 1000
    assert vigil.stream_tail("alerts"), "no alerts stored although anomalies were injected"
