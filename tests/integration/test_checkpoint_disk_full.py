"""A detector checkpoint that cannot be written (issue 9: a full disk is a
pause, src/proc/processor.c maybe_checkpoint, src/core/fsutil.c).

The checkpoint directory, <data>/consumers/detector, is a small tmpfs of its
own (root needed; the test skips saying why otherwise), filled to its last
page by a ballast file while the server runs; telemetry and alerts stay on
the ordinary disk, so records keep being processed.

What must hold while the checkpoint cannot be written:
  - telemetry is still acknowledged and processed (the detector keeps up);
  - the write is tried again at every checkpoint interval, also when the
    shard is idle (counted with inotify: each attempt creates <shard>.ckpt.tmp);
  - the log says "cannot write the checkpoint" once for the streak, and the
    file helper adds no ERROR line per attempt (it logs ENOSPC at debug
    level: the caller reports a full disk).
Once the ballast is deleted, with no new record, the log says "checkpoint
written again after N failed attempts" and the file is rewritten.
"""

import os
import re

import pytest

from test_webhook_disk_full import Creates, fill, log_of
from vigiltest import TELEMETRY_TOPIC, devices_in_shard, dumps, small_tmpfs, telemetry, wait_until

FS_BYTES = 256 << 10
TIMEOUT = 30.0  # per wait; generous for a loaded machine or the sanitized server
CANNOT = "shard 0: cannot write the checkpoint"
AGAIN = re.compile(r"shard 0: checkpoint written again after (\d+) failed attempts")


@pytest.fixture
def ckpt_disk(tmp_path):
    data = tmp_path / "data"
    with small_tmpfs(data / "consumers" / "detector", FS_BYTES) as mnt:
        yield data, mnt


def test_checkpoint_on_full_disk_retries_and_logs_once(ckpt_disk, vigil_factory):
    data, mnt = ckpt_disk
    v = vigil_factory("--checkpoint-interval-ms", "100", data_dir=data)
    ckpt = mnt / "0.ckpt"
    devices = devices_in_shard(0, 3, prefix="ckdf")
    c = v.client("ckdf")

    def publish(round_):
        c.publish_many([(TELEMETRY_TOPIC, dumps(telemetry(d, 70, i=round_))) for d in devices])

    # 1. A first checkpoint with space.
    publish(0)
    assert wait_until(ckpt.exists, TIMEOUT), "no checkpoint %s written with space" % ckpt
    # 2. Full: records go on, the checkpoint does not.
    creates = Creates(mnt, "0.ckpt.tmp")
    ballast = mnt / "ballast"
    fill(ballast)
    assert os.statvfs(str(mnt)).f_bavail == 0, "the ballast left space on the checkpoint's disk"
    before = ckpt.read_bytes()
    processed = v.stats().get("proc.processed", 0)
    publish(1)
    s = v.wait_stats(lambda s: s.get("proc.processed", 0) >= processed + len(devices) and s.get("proc.lag") == 0,
                     timeout=TIMEOUT)
    assert s.get("proc.processed", 0) >= processed + len(devices), s
    assert wait_until(lambda: CANNOT in log_of(v, 1), TIMEOUT), "no '%s' line in the log" % CANNOT
    # Idle now; tried again each interval anyway.
    assert wait_until(lambda: creates.count() >= 3, TIMEOUT), \
        "the checkpoint write was tried %d times in %.0f s after it failed" % (creates.count(), TIMEOUT)
    assert ckpt.read_bytes() == before, "the checkpoint changed on a full disk?"
    log = log_of(v, 1)
    assert log.count(CANNOT) == 1, "one '%s' line per attempt, not per streak" % CANNOT
    fs_errors = [ln for ln in log.splitlines() if re.search(r"ERROR fs\s", ln)]
    assert not fs_errors, fs_errors[:5]
    failed = creates.count()

    # 3. Space back: the next interval writes it, with no new record.
    os.remove(ballast)
    assert wait_until(lambda: AGAIN.search(log_of(v, 1)), TIMEOUT), "no 'written again' line after space came back"
    log = log_of(v, 1)
    assert log.count(CANNOT) == 1
    assert int(AGAIN.search(log).group(1)) >= failed, (AGAIN.search(log).group(0), failed)
    assert wait_until(lambda: ckpt.read_bytes() != before, TIMEOUT), "the checkpoint was not rewritten"
    creates.close()
    c.disconnect()
    v.stop()
