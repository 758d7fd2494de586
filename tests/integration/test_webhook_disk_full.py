"""A webhook endpoint whose cursor file cannot be written (issue 9: a full
disk is a pause, src/alert/webhook.c cursor_save_when).

The endpoint's cursor directory, <data>/consumers/webhook, is a small tmpfs
of its own (we run as root; without the permission to mount the test is
skipped, saying why), filled to the last page by a ballast file while the
endpoint runs. Everything else (the alerts stream the endpoint reads, the
detector checkpoints) stays on the ordinary disk, so alerts keep coming.

What must hold while the cursor cannot be written:
  - alerts raised meanwhile are still delivered to the receiver;
  - the write is tried again about once a second, also while the endpoint
    is idle (counted with inotify: every attempt creates <name>.ckpt.tmp);
  - the server log says "cannot write the cursor" once for the whole
    streak, not once per attempt.
Once the ballast is deleted, without any new alert, the log says "written
again after N failed attempts" and the file holds the position of every
delivered alert.

Delivery is at least once: a crash during the outage would repeat the
alerts delivered since the last good write (the file still points before
them), and that is allowed. A crash after the cursor was written again must
repeat nothing: the test kills the server (SIGKILL, so no final save at stop
can hide a stale file) after alerts delivered and saved once space was back,
restarts it and checks that no earlier alert reaches the receiver again.
"""

import ctypes
import errno
import os
import re
import struct

import pytest

from test_webhook import FAST, alert_records, cursor_of, raise_alerts, receivers, wait_alerts, wait_delivered  # noqa: F401
from vigiltest import small_tmpfs, wait_until

FS_BYTES = 256 << 10
TIMEOUT = 30.0  # per wait; generous for a loaded machine or the sanitized server
CANNOT = "ops: cannot write the cursor"
AGAIN = re.compile(r"ops: cursor \S+ written again after (\d+) failed attempts")


@pytest.fixture
def cursor_disk(tmp_path):
    """tmp_path/data with its consumers/webhook directory on a small tmpfs."""
    data = tmp_path / "data"
    with small_tmpfs(data / "consumers" / "webhook", FS_BYTES) as mnt:
        yield data, mnt


def fill(path):
    """Writes path until the file system has no page left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (b"\0" * 65536, b"\0" * 4096):
            try:
                while True:
                    f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise


class Creates:
    """Counts IN_CREATE events of one file name in one directory (inotify
    through libc: the stdlib has no binding)."""

    IN_CREATE, IN_NONBLOCK, IN_CLOEXEC = 0x100, 0o4000, 0o2000000

    def __init__(self, directory, name):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        assert self.fd >= 0, "inotify_init1: %s" % os.strerror(ctypes.get_errno())
        wd = self.libc.inotify_add_watch(self.fd, str(directory).encode(), self.IN_CREATE)
        assert wd >= 0, "inotify_add_watch: %s" % os.strerror(ctypes.get_errno())
        self.name = name.encode()
        self.n = 0

    def count(self):
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.n
            off = 0
            while off + 16 <= len(buf):
                _, mask, _, ln = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16:off + 16 + ln].rstrip(b"\0")
                if mask & self.IN_CREATE and name == self.name:
                    self.n += 1
                off += 16 + ln

    def close(self):
        os.close(self.fd)


def log_of(v, start):
    """The whole stderr of the server's start number `start` (1 = first)."""
    with open(v.logs[start - 1], "rb") as f:
        return f.read().decode("utf-8", "replace")


def positions(v, recs):
    """What the cursor must say once recs are handed over: per alerts shard
    the highest seq among recs (0 where none)."""
    want = [0] * len(cursor_of(v, "ops"))
    for r in recs:
        want[r["shard"]] = max(want[r["shard"]], r["seq"])
    return want


def settle(v, what):
    """Waits until the detectors have read every telemetry record, the
    endpoint has handed over every alert and the cursor file is at the end
    of the alerts stream (read again at each look, so a late alert is waited
    for, not missed). Returns the alert records."""
    s = v.wait_stats(lambda s: s.get("proc.lag") == 0 and s.get("webhook.ops.pending") == 0, timeout=TIMEOUT)
    assert s.get("proc.lag") == 0 and s.get("webhook.ops.pending") == 0, "%s: not settled: %r" % (what, s)
    state = {}

    def at_end():
        state["recs"] = alert_records(v)
        state["cursor"] = cursor_of(v, "ops")
        return state["cursor"] == positions(v, state["recs"])

    assert wait_until(at_end, TIMEOUT, interval=0.2), "%s: cursor file %r, alerts stream up to %r" % (
        what, state["cursor"], positions(v, state["recs"]))
    return state["recs"]


@pytest.mark.deadline(240)
def test_cursor_on_full_disk_is_retried_once_per_interval_and_catches_up(cursor_disk, vigil_factory, receivers):
    data, mnt = cursor_disk
    rcv = receivers()
    v = vigil_factory("--webhook", "ops=" + rcv.url(), *FAST, data_dir=data)

    # 1. Space: round one is delivered and its position saved.
    r1 = ["whdf-a-%d" % i for i in range(2)]
    raise_alerts(v, r1)
    recs1 = wait_alerts(v, r1, timeout=TIMEOUT)
    wait_delivered(rcv, recs1, timeout=TIMEOUT)
    saved1 = positions(v, settle(v, "before the disk filled"))

    # 2. The cursor's disk is full: round two is still delivered.
    creates = Creates(mnt, "ops.ckpt.tmp")
    ballast = mnt / "ballast"
    fill(ballast)
    assert os.statvfs(str(mnt)).f_bavail == 0, "the ballast left space on the cursor's disk"
    r2 = ["whdf-b-%d" % i for i in range(2)]
    raise_alerts(v, r2)
    recs12 = wait_alerts(v, r1 + r2, timeout=TIMEOUT)
    recs2 = [r for r in recs12 if r["key"] in r2]
    wait_delivered(rcv, recs2, timeout=TIMEOUT)
    assert wait_until(lambda: CANNOT in log_of(v, 1), TIMEOUT), "no '%s' line in the log" % CANNOT
    # The endpoint is idle now; the write is tried again once a second
    # anyway (three attempts: the first failure and two retries).
    assert wait_until(lambda: creates.count() >= 3, TIMEOUT), \
        "the cursor write was tried %d times in %.0f s after it failed" % (creates.count(), TIMEOUT)
    assert cursor_of(v, "ops") == saved1, "the cursor was written on a full disk?"
    assert log_of(v, 1).count(CANNOT) == 1, "one '%s' line per attempt, not per streak" % CANNOT
    failed = creates.count()

    # 3. Space is back: the next retry writes it, with no new alert needed.
    os.remove(ballast)
    assert wait_until(lambda: AGAIN.search(log_of(v, 1)), TIMEOUT), "no 'written again' line after space came back"
    log = log_of(v, 1)
    assert log.count(CANNOT) == 1, "one '%s' line per attempt, not per streak" % CANNOT
    assert len(AGAIN.findall(log)) == 1, AGAIN.findall(log)
    attempts = int(AGAIN.search(log).group(1))
    assert attempts >= failed, "the log counts %d failed attempts, inotify saw %d" % (attempts, failed)
    settle(v, "after space came back")
    creates.close()

    # 4. Round three, delivered and saved with space; then a crash.
    r3 = ["whdf-c-%d" % i for i in range(2)]
    raise_alerts(v, r3)
    wait_delivered(rcv, wait_alerts(v, r1 + r2 + r3, timeout=TIMEOUT), timeout=TIMEOUT)
    recs123 = settle(v, "after round three")
    seen_before_crash = len(rcv.snapshot())
    v.kill9()

    # 5. After the restart nothing already delivered comes again: the log
    # says so, and a fourth round (delivered after anything older on its
    # shard) arrives alone.
    v.start()
    assert wait_until(lambda: "ops: resuming delivery," in log_of(v, 2), TIMEOUT), log_of(v, 2)
    assert "ops: resuming delivery, 0 alert events pending" in log_of(v, 2), log_of(v, 2)
    r4 = ["whdf-d-%d" % i for i in range(2)]
    raise_alerts(v, r4)
    recs_all = wait_alerts(v, r1 + r2 + r3 + r4, timeout=TIMEOUT)
    recs4 = [r for r in recs_all if r["key"] in r4]
    wait_delivered(rcv, recs4, timeout=TIMEOUT)
    old = {r["raw"] for r in recs123}
    again = [q["body"] for q in rcv.snapshot()[seen_before_crash:] if q["body"] in old]
    assert not again, "%d alerts delivered again after the restart: %r" % (len(again), again[:3])
    v.stop()
