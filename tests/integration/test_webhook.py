"""Webhook delivery of alert events (src/alert/webhook.c).

A local HTTP receiver (http.server in a thread) plays the endpoint; the test
switches what it answers: 200, 500, a stall past --webhook-timeout-ms, 400,
429 with Retry-After, or nothing at all (stopped: connection refused).

Alerts are raised by publishing heart-rate series: per episode 13 samples of
190 bpm 5 s apart in event time, then 13 samples of 70 bpm. That fires one
HIGH_HEART_RATE alert per episode with today's threshold detector, and an
OPEN then a RESOLVED event with the lifecycle detectors; the tests do not
count on either: the truth is what the `alerts` stream holds (read with
`vigil stream tail alerts`), and every check compares the receiver's requests
with it. The X-Vigil-Event-Id expected is the alert's "eventId" when it has
one, else "<alerts shard>-<alerts seq>".
"""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vigiltest import TELEMETRY_TOPIC, deadletter_payload, dumps, free_port, now_ms, telemetry, wait_until

# Small retry delays keep every test fast: 50, 100, 200, 400, 400 ... ms.
# Devices here stop sending once their episode is out; on a slow machine
# (or the sanitized server) the silence itself would raise DATA_GAP and
# DEVICE_OFFLINE alerts at unpredictable moments. These tests count alert
# events exactly, so silence is made a non-event for them.
_QUIET = os.path.join(tempfile.mkdtemp(prefix="vg-wh-"), "detect.conf")
with open(_QUIET, "w") as _f:
    _f.write("gap_factor = 100\noffline_after_s = 2592000\nstale_after_s = 2592000\nclock_skew_s = 86400\n")
FAST = ["--webhook-retry-base-ms", "50", "--webhook-retry-max-ms", "400", "--webhook-timeout-ms", "1000",
        "--detect-config", _QUIET]
STEP_MS = 5000
EPISODE = [190] * 13 + [70] * 13
STAT_KEYS = ["delivered", "attempts", "failures", "rejected", "pending", "consecutive_failures", "last_status",
             "last_latency_ms", "in_backoff", "last_error"]


# ---------------------------------------------------------------------------
# the receiver


class Receiver:
    """An HTTP endpoint on a loopback port. `behaviour` decides each answer:
    "accept" (200), "fail" (500), "reject" (400), "timeout" (holds the request
    for stall_s seconds, then closes without answering), or a callable
    req -> one of those or (status, {header: value})."""

    def __init__(self, port=None, behaviour="accept", stall_s=3.0):
        self.port = port or free_port()
        self.behaviour = behaviour
        self.stall_s = stall_s
        self.requests = []
        self.conns = set()
        self.lock = threading.Lock()
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as most real endpoints

            def setup(self):
                super().setup()
                with rcv.lock:
                    rcv.conns.add(self.connection)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                req = {"t": time.monotonic(), "path": self.path, "method": "POST", "body": body,
                       "headers": {k.lower(): v for k, v in self.headers.items()}}
                b = rcv.behaviour
                if callable(b):
                    b = b(req)
                status, extra = {"accept": (200, {}), "fail": (500, {}), "reject": (400, {}),
                                 "timeout": (None, {})}.get(b, b) if isinstance(b, str) else b
                req["status"] = status
                with rcv.lock:
                    rcv.requests.append(req)
                if status is None:
                    time.sleep(rcv.stall_s)
                    self.close_connection = True
                    return
                text = b"rejected by the test receiver" if status == 400 else b"ok"
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def snapshot(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def delivered(self, path=None):
        return [r for r in self.snapshot(path) if r["status"] is not None and 200 <= r["status"] < 300]

    def stop(self):
        """Stops listening and cuts the kept-alive connections too, so that
        the endpoint is really down (connection refused)."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def receivers():
    made = []

    def make(*args, **kwargs):
        r = Receiver(*args, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


# ---------------------------------------------------------------------------
# alerts and the alerts stream


def raise_alerts(v, devices, episodes=1):
    """Publishes `episodes` high-heart-rate episodes for every device (QoS 1,
    all PUBACKed on return)."""
    c = v.client("wh-pub-%d" % time.monotonic_ns())
    items = []
    t0 = now_ms() - episodes * len(EPISODE) * STEP_MS
    for d in devices:
        for i, hr in enumerate(EPISODE * episodes):
            items.append((TELEMETRY_TOPIC, dumps(telemetry(d, hr, steps=0, ts=t0 + i * STEP_MS))))
    c.publish_many(items)
    c.disconnect()


def alert_records(v):
    """The alerts stream: [{shard, seq, key, data, raw}] with raw = the
    record's value bytes exactly as stored."""
    out = []
    for line, rec in v.stream_tail_lines("alerts"):
        i = line.index('"data":') + len('"data":')
        rec["raw"] = line[i:line.rindex("}")].encode()
        out.append(rec)
    return out


def wait_alerts(v, devices, min_per_device=1, timeout=15.0, quiet=0.6):
    """Waits until the alerts stream holds at least min_per_device records for
    every device and has not grown for `quiet` seconds; returns its records."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        recs = alert_records(v)
        n = len(recs)
        if n != last:
            last, since = n, time.monotonic()
        enough = all(sum(1 for r in recs if r["key"] == d) >= min_per_device for d in devices)
        if enough and time.monotonic() - since >= quiet:
            return recs
        assert time.monotonic() < deadline, "alerts for %s did not appear: %r" % (devices, recs)
        time.sleep(0.1)


def expected_event_id(rec):
    return rec["data"].get("eventId") or "%d-%d" % (rec["shard"], rec["seq"])


def wait_delivered(rcv, recs, path=None, timeout=15.0):
    """Waits until every record's body was answered 2xx at least once."""
    want = {r["raw"] for r in recs}
    got = wait_until(lambda: want <= {q["body"] for q in rcv.delivered(path)}, timeout)
    missing = want - {q["body"] for q in rcv.delivered(path)}
    assert got, "%d of %d alert events not delivered: %r" % (len(missing), len(want), sorted(missing)[:3])


def check_order(rcv, recs, path=None):
    """Per alerts shard, first deliveries happen in stream order."""
    by_body = {r["raw"]: r for r in recs}
    seen, order = set(), {}
    for q in rcv.delivered(path):
        r = by_body.get(q["body"])
        if r is None or q["body"] in seen:
            continue
        seen.add(q["body"])
        order.setdefault(r["shard"], []).append(r["seq"])
    for shard, seqs in order.items():
        assert seqs == sorted(seqs), "shard %d delivered out of order: %r" % (shard, seqs)


def wh(stats, name, key):
    return stats.get("webhook.%s.%s" % (name, key))


# ---------------------------------------------------------------------------
# tests


def test_delivers_every_alert_in_order_with_headers(vigil_factory, receivers):
    rcv = receivers()
    v = vigil_factory("--webhook", "ops=" + rcv.url(), *FAST)
    devices = ["wh-ord-%d" % i for i in range(3)]
    raise_alerts(v, devices, episodes=2)
    recs = wait_alerts(v, devices, min_per_device=2)
    wait_delivered(rcv, recs)
    time.sleep(0.3)
    got = rcv.snapshot()
    by_body = {r["raw"]: r for r in recs}
    assert sorted(q["body"] for q in got) == sorted(by_body), "not exactly one POST per alert event"
    for q in got:
        r = by_body[q["body"]]
        h = q["headers"]
        assert q["path"] == "/hook" and q["status"] == 200
        assert h.get("content-type") == "application/json", h
        assert h.get("user-agent") == "vigil", h
        assert h.get("x-vigil-delivery-attempt") == "1", h
        assert h.get("x-vigil-event-id") == expected_event_id(r), (h, r)
        assert json.loads(q["body"]) == r["data"]
    check_order(rcv, recs)
    # Per device, the receiver saw the events in the stream's order.
    for d in devices:
        stream_order = [r["raw"] for r in sorted(recs, key=lambda r: r["seq"]) if r["key"] == d]
        assert [q["body"] for q in got if by_body[q["body"]]["key"] == d] == stream_order


def thread_switches(pid, prefix):
    """Context switches so far of the server's threads whose name starts with prefix."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except OSError:
            continue
        if st["Name"].strip().startswith(prefix):
            total += int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"])
    return total


def cursor_of(v, name):
    """The endpoint's cursor file: [last seq handed over] per alerts shard."""
    with open(os.path.join(v.data_dir, "consumers", "webhook", name + ".ckpt"), "rb") as f:
        b = f.read()
    n = int.from_bytes(b[12:16], "little")
    return [int.from_bytes(b[24 + 8 * i:32 + 8 * i], "little") for i in range(n)]


def test_idle_endpoint_sleeps_and_saved_its_cursor(vigil_factory, receivers):
    """Once everything is delivered the endpoint thread sleeps without a
    timeout (it is woken by new alerts, not by a poll period), and its cursor
    was written when it became idle, without a periodic wake."""
    rcv = receivers()
    v = vigil_factory("--webhook", "ops=" + rcv.url(), *FAST)
    devices = ["wh-idle-%d" % i for i in range(2)]
    raise_alerts(v, devices)
    recs = wait_alerts(v, devices)
    wait_delivered(rcv, recs)
    last = {}
    for r in recs:
        last[r["shard"]] = max(last.get(r["shard"], 0), r["seq"])
    assert wait_until(lambda: all(cursor_of(v, "ops")[s] == q for s, q in last.items()), 5), \
        "cursor %r, delivered up to %r" % (cursor_of(v, "ops"), last)
    pid = v.proc.pid
    assert wait_until(lambda: thread_switches(pid, "vg-wh-") > 0, 5), "no thread named vg-wh-*"
    before = thread_switches(pid, "vg-wh-")
    time.sleep(1.5)
    woke = thread_switches(pid, "vg-wh-") - before
    assert woke <= 2, "idle endpoint thread woke %d times in 1.5 s" % woke
    # and a new alert still wakes it at once
    raise_alerts(v, ["wh-idle-late"])
    recs2 = wait_alerts(v, ["wh-idle-late"])
    wait_delivered(rcv, recs2, timeout=5)


def test_stats_keys(vigil_factory, receivers):
    rcv = receivers()
    v = vigil_factory("--webhook", "ops=" + rcv.url(), *FAST)
    s = v.stats()
    for k in STAT_KEYS:
        assert "webhook.ops." + k in s, "stats lack webhook.ops.%s: %r" % (k, sorted(s))
    assert wh(s, "ops", "delivered") == 0 and wh(s, "ops", "pending") == 0 and wh(s, "ops", "last_status") == 0
    assert wh(s, "ops", "last_error") == ""
    before = now_ms()
    raise_alerts(v, ["wh-stats"])
    recs = wait_alerts(v, ["wh-stats"])
    wait_delivered(rcv, recs)
    n = len(recs)
    s = v.wait_stats(lambda s: wh(s, "ops", "delivered") == n)
    assert wh(s, "ops", "delivered") == n, s
    assert wh(s, "ops", "attempts") == n
    assert wh(s, "ops", "failures") == 0 and wh(s, "ops", "rejected") == 0
    assert wh(s, "ops", "pending") == 0 and wh(s, "ops", "consecutive_failures") == 0
    assert wh(s, "ops", "last_status") == 200 and wh(s, "ops", "in_backoff") == 0
    assert wh(s, "ops", "last_error") == ""
    assert 0 <= wh(s, "ops", "last_latency_ms") <= now_ms() - before, s


def test_5xx_retried_with_growing_backoff_then_recovers(vigil_factory, receivers):
    rcv = receivers(behaviour="fail")
    v = vigil_factory("--webhook", "ops=" + rcv.url(), *FAST)
    raise_alerts(v, ["wh-5xx"])
    recs = wait_alerts(v, ["wh-5xx"])
    assert wait_until(lambda: len(rcv.snapshot()) >= 7, 10), "only %d attempts" % len(rcv.snapshot())
    s = v.wait_stats(lambda s: wh(s, "ops", "in_backoff") == 1)
    assert wh(s, "ops", "delivered") == 0 and wh(s, "ops", "failures") >= 6, s
    assert wh(s, "ops", "consecutive_failures") >= 6 and wh(s, "ops", "last_status") == 500, s
    assert wh(s, "ops", "pending") == len(recs) and "500" in wh(s, "ops", "last_error"), s

    # Head of line: every attempt so far is for the first event, numbered 1, 2, 3 ...
    tries = rcv.snapshot()
    first = tries[0]["headers"]["x-vigil-event-id"]
    assert all(q["headers"]["x-vigil-event-id"] == first for q in tries), "a failing event was skipped"
    assert [int(q["headers"]["x-vigil-delivery-attempt"]) for q in tries] == list(range(1, len(tries) + 1))
    # Backoff 50, 100, 200, 400, 400 ms (+-20%, plus the request itself).
    gaps = [b["t"] - a["t"] for a, b in zip(tries, tries[1:])]
    assert gaps[0] < 0.2, gaps
    assert gaps[2] > 1.5 * gaps[0], gaps
    assert all(g >= 0.3 for g in gaps[3:6]), gaps
    # Uncapped, the sixth delay would be 1.6 s.
    assert all(g < 1.0 for g in gaps), "a delay exceeded --webhook-retry-max-ms: %r" % gaps

    rcv.behaviour = "accept"
    wait_delivered(rcv, recs)
    check_order(rcv, recs)
    ok = rcv.delivered()[0]
    assert ok["headers"]["x-vigil-event-id"] == first and int(ok["headers"]["x-vigil-delivery-attempt"]) > len(tries)
    s = v.wait_stats(lambda s: wh(s, "ops", "pending") == 0 and wh(s, "ops", "delivered") >= len(recs))
    assert wh(s, "ops", "attempts") > len(recs) and wh(s, "ops", "consecutive_failures") == 0, s
    assert wh(s, "ops", "last_status") == 200 and wh(s, "ops", "in_backoff") == 0, s


def test_timeout_then_recovery(vigil_factory, receivers):
    rcv = receivers(behaviour="timeout", stall_s=2.0)
    v = vigil_factory("--webhook", "ops=" + rcv.url(), "--webhook-timeout-ms", "300",
                      "--webhook-retry-base-ms", "50", "--webhook-retry-max-ms", "400")
    raise_alerts(v, ["wh-slow"])
    recs = wait_alerts(v, ["wh-slow"])
    assert wait_until(lambda: len(rcv.snapshot()) >= 3, 10)
    s = v.wait_stats(lambda s: wh(s, "ops", "failures") >= 2)
    assert wh(s, "ops", "delivered") == 0 and wh(s, "ops", "failures") >= 2, s
    assert "timed out" in wh(s, "ops", "last_error").lower(), s
    tries = rcv.snapshot()
    gaps = [b["t"] - a["t"] for a, b in zip(tries, tries[1:])]
    assert all(g >= 0.3 for g in gaps), "a request was given up before --webhook-timeout-ms: %r" % gaps
    rcv.behaviour = "accept"
    wait_delivered(rcv, recs)
    check_order(rcv, recs)
    s = v.wait_stats(lambda s: wh(s, "ops", "pending") == 0)
    assert wh(s, "ops", "pending") == 0 and wh(s, "ops", "consecutive_failures") == 0, s


def test_429_retry_after_honoured_and_capped(vigil_factory, receivers):
    answers = [(429, {"Retry-After": "1"}), (429, {"Retry-After": "30"})]

    def behaviour(req):
        return answers.pop(0) if answers else "accept"

    rcv = receivers(behaviour=behaviour)
    v = vigil_factory("--webhook", "ops=" + rcv.url(), "--webhook-retry-base-ms", "50",
                      "--webhook-retry-max-ms", "2000")
    raise_alerts(v, ["wh-429"])
    recs = wait_alerts(v, ["wh-429"])
    wait_delivered(rcv, recs)
    tries = rcv.snapshot()
    assert [q["status"] for q in tries[:3]] == [429, 429, 200], [q["status"] for q in tries]
    g1, g2 = tries[1]["t"] - tries[0]["t"], tries[2]["t"] - tries[1]["t"]
    assert g1 >= 0.95, "Retry-After: 1 not honoured (retried after %.3f s)" % g1
    assert 1.5 <= g2 <= 2.6, "Retry-After: 30 not capped at --webhook-retry-max-ms 2000 (%.3f s)" % g2


def test_rejection_goes_to_deadletter_and_delivery_continues(vigil_factory, receivers):
    bad, good = "wh-rej-bad", "wh-rej-good"
    rcv = receivers(behaviour=lambda req: "reject" if ('"deviceId":"%s"' % bad).encode() in req["body"] else "accept")
    v = vigil_factory("--webhook", "ops=" + rcv.url(), *FAST)
    raise_alerts(v, [bad])
    raise_alerts(v, [good])
    recs = wait_alerts(v, [bad, good])
    bad_recs = [r for r in recs if r["key"] == bad]
    good_recs = [r for r in recs if r["key"] == good]
    wait_delivered(rcv, good_recs)
    s = v.wait_stats(lambda s: wh(s, "ops", "pending") == 0)
    assert wh(s, "ops", "rejected") == len(bad_recs) and wh(s, "ops", "delivered") == len(good_recs), s
    assert wh(s, "ops", "failures") == 0 and wh(s, "ops", "last_status") == 200, s
    # A permanent rejection is not retried: one POST per rejected event.
    rejected = [q for q in rcv.snapshot() if q["status"] == 400]
    assert sorted(q["body"] for q in rejected) == sorted(r["raw"] for r in bad_recs)

    dl = [r for r in v.stream_tail("deadletter") if r["data"].get("reason") == "webhook_rejected"]
    assert len(dl) == len(bad_recs), dl
    by_body = {r["raw"]: r for r in bad_recs}
    for rec in dl:
        d = rec["data"]
        src = by_body[deadletter_payload(rec)]
        assert d["endpoint"] == "ops" and d["status"] == 400, d
        assert "ops" in d["detail"] and "400" in d["detail"], d
        assert d["topic"] == "alerts/" + bad and rec["key"] == bad, (d, rec)
        assert (d["shard"], d["seq"]) == (src["shard"], src["seq"]), d
        assert d["eventId"] == expected_event_id(src), d


def test_outage_kill9_restart_loses_nothing(vigil_factory, receivers):
    rcv = receivers()
    port = rcv.port
    v = vigil_factory("--webhook", "ops=" + rcv.url(), *FAST)
    raise_alerts(v, ["wh-crash-0"])
    first = wait_alerts(v, ["wh-crash-0"])
    wait_delivered(rcv, first)

    rcv.stop()  # the endpoint is down: connection refused
    devices = ["wh-crash-%d" % i for i in range(1, 4)]
    raise_alerts(v, devices)
    recs = wait_alerts(v, ["wh-crash-0"] + devices)
    s = v.wait_stats(lambda s: wh(s, "ops", "failures") >= 2)
    assert wh(s, "ops", "pending") == len(recs) - len(first), s
    assert "connect" in wh(s, "ops", "last_error").lower(), s
    v.kill9()

    rcv2 = receivers(port=port)
    v.start()
    wait_delivered(rcv2, [r for r in recs if r not in first])
    everything = {q["body"] for q in rcv.delivered()} | {q["body"] for q in rcv2.delivered()}
    assert {r["raw"] for r in recs} <= everything, "an alert event was lost across the outage and the crash"
    check_order(rcv2, recs)
    s = v.wait_stats(lambda s: wh(s, "ops", "pending") == 0)
    assert wh(s, "ops", "pending") == 0, s


def test_two_endpoints_are_independent(vigil_factory, receivers, tmp_path):
    up = receivers()
    down = receivers(behaviour="fail")
    cfg = tmp_path / "webhooks.conf"
    cfg.write_text("# one endpoint from the file, one from a flag\nwebhook = up=%s\n" % up.url("/up"))
    v = vigil_factory("--config", str(cfg), "--webhook", "down=" + down.url("/down"), *FAST)
    devices = ["wh-ind-%d" % i for i in range(3)]
    raise_alerts(v, devices)
    recs = wait_alerts(v, devices)
    wait_delivered(up, recs, "/up")
    check_order(up, recs, "/up")
    s = v.wait_stats(lambda s: wh(s, "up", "pending") == 0 and wh(s, "down", "failures") >= 3)
    assert wh(s, "up", "delivered") == len(recs) and wh(s, "up", "failures") == 0, s
    assert wh(s, "down", "delivered") == 0 and wh(s, "down", "pending") == len(recs), s
    assert wh(s, "down", "consecutive_failures") >= 3, s
    down.behaviour = "accept"
    wait_delivered(down, recs, "/down")
    check_order(down, recs, "/down")


def test_new_endpoint_starts_at_the_end_unless_from_start(vigil_factory, receivers):
    rcv = receivers()
    v = vigil_factory(*FAST)
    raise_alerts(v, ["wh-old"])
    old = wait_alerts(v, ["wh-old"])
    v.stop()
    v.extra_args += ["--webhook", "late=" + rcv.url("/late"), "--webhook", "all=%s from=start" % rcv.url("/all")]
    v.start()
    raise_alerts(v, ["wh-new"])
    recs = wait_alerts(v, ["wh-old", "wh-new"])
    new = [r for r in recs if r["key"] == "wh-new"]
    wait_delivered(rcv, recs, "/all")
    wait_delivered(rcv, new, "/late")
    time.sleep(0.3)
    assert not {r["raw"] for r in old} & {q["body"] for q in rcv.snapshot("/late")}, \
        "a new endpoint replayed alerts raised before it existed"
    check_order(rcv, recs, "/all")


def test_stop_is_prompt_mid_request_and_mid_backoff(vigil_factory, receivers):
    slow = receivers(behaviour="timeout", stall_s=15.0)
    failing = receivers(behaviour="fail")
    v = vigil_factory("--webhook", "slow=" + slow.url(), "--webhook", "failing=" + failing.url(),
                      "--webhook-timeout-ms", "20000", "--webhook-retry-base-ms", "30000",
                      "--webhook-retry-max-ms", "30000")
    raise_alerts(v, ["wh-stop"])
    recs = wait_alerts(v, ["wh-stop"])
    assert wait_until(lambda: slow.snapshot() and failing.snapshot(), 10)
    v.wait_stats(lambda s: wh(s, "failing", "in_backoff") == 1)
    t = time.monotonic()
    v.stop(timeout=10)
    took = time.monotonic() - t
    assert took < 2.0, "vigil took %.2f s to stop with a request and a backoff in progress" % took
    # Nothing was delivered, so both cursors still point before the events.
    slow.behaviour = failing.behaviour = "accept"
    v.start()
    wait_delivered(slow, recs)
    wait_delivered(failing, recs)


def test_webhook_settings_validated(vigil_factory, tmp_path):
    v = vigil_factory(start=False)
    base = v.argv()
    bad = [
        ["--webhook", "no-url"],
        ["--webhook", "bad name=http://127.0.0.1:1/"],
        ["--webhook", "x" * 33 + "=http://127.0.0.1:1/"],
        ["--webhook", "ftp=ftp://127.0.0.1/"],
        ["--webhook", "nohost=http://"],
        ["--webhook", "opt=http://127.0.0.1:1/ from=yesterday"],
        ["--webhook-retry-base-ms", "500", "--webhook-retry-max-ms", "100"],
        ["--webhook-timeout-ms", "0"],
        sum([["--webhook", "w%d=http://127.0.0.1:1/" % i] for i in range(9)], []),
    ]
    for extra in bad:
        try:
            r = subprocess.run(base + extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("vigil serve started with %r" % extra)
        assert r.returncode == 2, "vigil serve accepted %r: %s" % (extra, r.stdout[-500:])
        assert b"webhook" in r.stdout, r.stdout
    cfg = tmp_path / "bad.conf"
    cfg.write_text("webhook = ops=gopher://127.0.0.1/\n")
    r = subprocess.run(base + ["--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
    assert r.returncode == 2 and b"bad.conf:1" in r.stdout, r.stdout
    help_text = subprocess.run([base[0], "serve", "--help"], stdout=subprocess.PIPE, timeout=5).stdout.decode()
    for flag in ("--webhook ", "--webhook-timeout-ms", "--webhook-retry-base-ms", "--webhook-retry-max-ms"):
        assert flag in help_text, help_text
