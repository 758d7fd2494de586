"""`vigil eval`: the labelled synthetic fleet and CSV replay through the real
pipeline (eval starts its own `vigil serve` child on a free port).

What is checked: the JSON report's structure; that the episode counts it
reports match its labels; that a seed always gives the same labels
(--dry-run); end-to-end detection on a small run (EXTREME_HIGH_HR recall 1.0,
no duplicates) once the detectors are wired (with the old threshold detector
those checks are skipped); CSV replay of a hand-written recording (190 bpm
for 2 min -> one EXTREME_HIGH_HR alert) and a bad row (exit 2, line number).
"""

import json
import os
import subprocess

import pytest

from vigiltest import VIGIL, iso_ms

T0 = 1767571200000  # 2026-01-05T00:00:00Z
ALL_TYPES = [
    "SUSTAINED_HIGH_HR_AT_REST", "SUSTAINED_LOW_HR_AT_REST", "EXTREME_HIGH_HR", "EXTREME_LOW_HR",
    "SUDDEN_HR_CHANGE", "BASELINE_DRIFT", "RESTING_HR_ELEVATION", "SENSOR_IMPOSSIBLE_VALUE",
    "SENSOR_FLATLINE", "DATA_GAP", "DEVICE_OFFLINE", "OUT_OF_ORDER_TIMESTAMP", "STALE_DATA", "CLOCK_SKEW",
]
SMALL = ["--devices", "12", "--days", "1", "--drift-devices", "0", "--rate", "extreme_high=2"]


def run_eval(args, tmp_path, name="report.json", timeout=120):
    out = tmp_path / name
    p = subprocess.run([VIGIL, "eval", *args, "--json", str(out)], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, TMPDIR=str(tmp_path)))
    report = json.loads(out.read_text()) if out.exists() else None
    return p, report


def old_detector(report):
    """The threshold detector of 0.1 raises HIGH_HEART_RATE/LOW_HEART_RATE only."""
    unknown = report.get("run", {}).get("unknownTypes", {})
    return "HIGH_HEART_RATE" in unknown or "LOW_HEART_RATE" in unknown


def test_help():
    p = subprocess.run([VIGIL, "eval", "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    for opt in ("--seed", "--devices", "--days", "--csv", "--json", "--detect-config", "--keep-data", "--dry-run"):
        assert opt in p.stdout
    p = subprocess.run([VIGIL, "--help"], capture_output=True, text=True, timeout=10)
    assert "eval" in p.stdout


def test_bad_options():
    for args in (["--devices", "x"], ["--rate", "nope=1"], ["--drift-days", "5"], ["--frobnicate"]):
        p = subprocess.run([VIGIL, "eval", *args], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, args
        assert "vigil eval:" in p.stderr


def test_dry_run_is_deterministic(tmp_path):
    args = ["--dry-run", "--devices", "12", "--days", "2", "--drift-devices", "1", "--drift-days", "12"]
    p1, r1 = run_eval(args + ["--seed", "42"], tmp_path, "a.json")
    p2, r2 = run_eval(args + ["--seed", "42"], tmp_path, "b.json")
    p3, r3 = run_eval(args + ["--seed", "43"], tmp_path, "c.json")
    assert p1.returncode == 0 and p2.returncode == 0 and p3.returncode == 0, p1.stderr
    assert r1["mode"] == "dry-run"
    assert r1["labels"] == r2["labels"]
    assert r1["samples"] == r2["samples"]
    assert r1["labels"] != r3["labels"]
    # Episode counts agree with the labels; labels of a device never overlap.
    by_kind = {}
    for lab in r1["labels"]:
        by_kind[lab["kind"]] = by_kind.get(lab["kind"], 0) + 1
    assert {k: v for k, v in r1["episodesByKind"].items() if v} == by_kind
    assert r1["episodes"] == len(r1["labels"])
    assert by_kind.get("drift") == 1
    last_end = {}
    for lab in r1["labels"]:
        assert lab["startMs"] <= lab["endMs"]
        if lab["device"] in last_end:
            assert lab["startMs"] >= last_end[lab["device"]] + 30 * 60000
        last_end[lab["device"]] = lab["endMs"]
    # The naive rule is computed without a server too.
    assert r1["rule"]["alerts"] > 0


def check_structure(r):
    assert r["mode"] == "synthetic"
    assert [t["type"] for t in r["types"]] == ALL_TYPES
    for t in r["types"]:
        for key in ("episodes", "detected", "missed", "duplicates", "secondary", "false", "falseNormalDays",
                    "ignored", "recall", "precision", "falsePerDeviceDay", "delayMedian", "delayP95",
                    "delayUnit", "targetRecall", "pass"):
            assert key in t, key
        assert t["detected"] + t["missed"] == t["episodes"]
    for key in ("cardiacFalse", "qualityFalse", "cardiacPerDeviceDay", "qualityPerDeviceDay", "deviceDays"):
        assert key in r["normalDays"]
    assert [t["type"] for t in r["rule"]["types"]] == ALL_TYPES
    run = r["run"]
    assert run["published"] == r["samples"]
    assert run["acked"] == run["published"]
    assert run["accepted"] == run["published"]
    assert run["deadletter"] == 0
    assert run["processed"] >= run["accepted"]
    assert run["serverExit"] == 0
    assert not run["incomplete"]
    # The episode counts per type are the labels' counts.
    per_type = {t: 0 for t in ALL_TYPES}
    for lab in r["labels"]:
        for t in lab["types"]:
            per_type[t] += 1
    assert {t["type"]: t["episodes"] for t in r["types"]} == per_type
    assert abs(r["deviceDays"] - 12.0) < 1e-6


@pytest.mark.deadline(180)
def test_small_run(tmp_path):
    p, r = run_eval(SMALL, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert r is not None
    check_structure(r)
    ext = next(t for t in r["types"] if t["type"] == "EXTREME_HIGH_HR")
    assert ext["episodes"] >= 5
    assert "EXTREME_HIGH_HR" in p.stdout and "naive rule" in p.stdout
    # The temporary data directory is gone.
    assert not [d for d in os.listdir(tmp_path) if d.startswith("vigil-eval-")]
    if old_detector(r):
        pytest.skip("the server still runs the 0.1 threshold detector")
    assert ext["recall"] == 1.0, ext
    assert ext["duplicates"] == 0, ext
    assert ext["delayMedian"] <= ext["targetDelaySeconds"], ext


def write(path, text):
    path.write_text(text)
    return str(path)


def recording():
    """Two devices at rest, 5 s apart; csv-1 has 190 bpm for 2 min."""
    rows = ["# a hand-written recording", "deviceId,timestamp,heartRate,steps"]
    t = T0 + 8 * 3600 * 1000
    for i in range(12 * 40):  # 40 minutes
        ms = t + i * 5000
        minute = i / 12
        hr1 = 190 if 20 <= minute < 22 else 70 + (i % 3)
        rows.append("csv-1,%d,%d,0" % (ms, hr1))
        rows.append('"csv 2",%s,%d,' % (iso_ms(ms), 64 + (i % 4)))
    return "\n".join(rows) + "\n"


@pytest.mark.deadline(120)
def test_csv_replay(tmp_path):
    f = write(tmp_path / "rec.csv", recording())
    p, r = run_eval(["--csv", f], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert r["mode"] == "csv"
    assert r["samples"] == 2 * 12 * 40
    assert r["devices"] == 2
    assert r["run"]["published"] == r["samples"]
    assert r["run"]["accepted"] == r["samples"]
    assert abs(r["deviceDays"] - 2.0) < 1e-9  # at least one day per device
    assert [t["type"] for t in r["types"]] == ALL_TYPES
    assert r["ruleAlerts"] == 1
    assert isinstance(r["alerts"], list) and len(r["alerts"]) == r["opens"]
    if old_detector(r):
        pytest.skip("the server still runs the 0.1 threshold detector")
    ext = next(t for t in r["types"] if t["type"] == "EXTREME_HIGH_HR")
    assert ext["opens"] == 1 and ext["devices"] == 1, r["types"]
    a = [x for x in r["alerts"] if x["type"] == "EXTREME_HIGH_HR"]
    assert len(a) == 1 and a[0]["deviceId"] == "csv-1"
    assert T0 + 8 * 3600000 + 20 * 60000 <= a[0]["eventTimeMs"] <= T0 + 8 * 3600000 + 22 * 60000


def test_csv_bad_rows(tmp_path):
    cases = [
        ("dev-1,1767600000000,70,0\ndev-1,1767600005000,abc,0\n", ":2:", "heart rate"),
        ("deviceId,timestamp,heartRate\n\ndev-1,yesterday,70\n", ":3:", "timestamp"),
        ("dev-1,1767600000000,70,-3\n", ":1:", "steps"),
        ("dev-1,1767600000000,400\n", ":1:", "(0, 300]"),
        ("deviceId,when,heartRate\ndev-1,1767600000000,70\n", ":1:", "header"),
    ]
    for i, (text, where, what) in enumerate(cases):
        f = write(tmp_path / ("bad%d.csv" % i), text)
        p = subprocess.run([VIGIL, "eval", "--csv", f], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (text, p.stderr)
        assert f + where in p.stderr and what in p.stderr, p.stderr
    p = subprocess.run([VIGIL, "eval", "--csv", str(tmp_path / "missing.csv")], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2 and "missing.csv" in p.stderr
