/* processor.h — the detector consumers: one thread per telemetry shard,
 * Kinesis/Lambda event-source style.
 *
 * Each shard's thread reads the telemetry stream in order from its
 * checkpoint, keeps per-device state (proc/devtable.h, proc/devstate.h),
 * runs every detector (src/detect), turns their conditions into alert
 * events (alert/lifecycle.h) and appends each event to the alerts stream
 * (same shard index); once that record is durable it is published to MQTT
 * `alerts/<deviceId>` (webhooks read the alerts stream themselves).
 *
 * Stream time. Detectors that reason about "now" (gaps, offline, skew,
 * staleness) use the shard's stream time. At a record it is
 *   max(the median event time of the shard's last 16 records, capped at a
 *       minute past the record's arrival (a device clock in the future
 *       cannot drag it along),
 *       stream time at the previous record + the arrival time between them)
 * — so it never moves backwards, runs with wall time when events lag, and
 * is a function of the records alone (their event times and the arrival
 * stamps the stream keeps): a replay sees the same stream time at the
 * same record as the first pass did. Between records, while the shard is
 * idle, it advances with the wall clock since the last record was
 * processed. Live, that is the wall clock (devices' clocks agree with it);
 * in a fast replay it is the replayed time, so vigil eval and a CSV replay
 * see the same detections as a live fleet. Silence is found by a timer
 * wheel over device indices (core/iwheel.h) on stream time: no sweep over
 * all devices.
 *
 * Waking. A shard thread never polls. It sleeps on its own vg_notify_t
 * (core/notify.h), posted by the telemetry shard's watcher (once per group
 * commit that made records of that shard durable), by vg_processor_ack, by
 * the durable callback of its last alert in flight, and by stop; or until
 * the earliest deadline it keeps itself: the silence wheel's next due
 * device (stream time runs with wall time while idle) and, only while
 * there is progress not yet checkpointed and no alert in flight, the
 * checkpoint interval. An idle shard with no device about to fall silent
 * does not wake at all.
 *
 * Exactly-once alerts across crashes: checkpoints are written only when no
 * alert is still awaiting durability, and hold the device state (with its
 * open alerts) as of the checkpointed sequence number. After a restart,
 * the thread replays from the checkpoint; events whose eventId is already
 * in the alerts stream (records at or after the checkpoint) are recomputed
 * to rebuild state but not emitted again, and acknowledgements found there
 * are re-applied. The suppression ends with the first record past the
 * highest source seq found there (replay_until). Ids are deterministic
 * (alert/alert.h). For that argument to hold, the replay must recompute
 * every stored event, with the same id, before it passes replay_until:
 *   - a sample's events: the same records give the same state, and stream
 *     time at a record is a function of the records (above);
 *   - silence (DATA_GAP, DEVICE_OFFLINE) noticed by the sample that ends
 *     it rather than by the timer (the processor was busy, or a replay is
 *     ahead or behind the first pass): same alert, because silence alerts
 *     are named by their start only (open_seq 0, lifecycle.h);
 *   - silence the timer found while the shard was idle, after record S:
 *     when it fired depended on the wall clock, which a replay does not
 *     repeat. The stored alert says where the wheel stood (its eventTimeMs,
 *     the tick's stream time); the replay raises the wheel to that time
 *     right after processing S (the "wheel marks" of scan_emitted), so the
 *     tick runs again at the same place in the telemetry.
 * The hole this closes (issue 9): stream time used to advance by the
 * processing clock, so after a kill -9 it resumed from the checkpoint's
 * value without the downtime and without the idle time after S. A DATA_GAP
 * the timer had emitted after S (source seq S, the checkpoint at S older
 * than it) was not due yet when the first new record S+1 arrived; S+1 >
 * replay_until ended the suppression, and a few records later, when the
 * median caught up with the wall clock, the wheel fired the same eventId
 * again. And because a sample-noticed gap was named by that sample's seq
 * while a timer-noticed one was not, a replay that noticed a silence the
 * other way stored the episode a second time under another alert id.
 *
 * Checkpoint file <data_dir>/consumers/detector/<shard>.ckpt
 * (little-endian, replaced atomically):
 *   off size field
 *     0    8 magic "VGCKPT01"
 *     8    4 version (4)
 *    12    4 shard
 *    16    8 last processed telemetry sequence number
 *    24    8 written at, epoch ms (informational)
 *    32    8 stream time at that record (ms)
 *    40    8 that record's arrival time (the stream's stamp, epoch ms)
 *    48  128 the last 16 event times (i64 each; ring order)
 *   176    4 how many of them are valid (0..16), then u32 ring position
 *   184    4 state_len
 *   188    . device state (devtable.c's format)
 *  188+n   4 CRC-32C (core/crc32c.h) of every preceding byte
 * Version 3 (no arrival time at 40: the ring at 40, counts at 168, state_len
 * at 176, state at 180; its stream time was that of the moment of writing)
 * is still read: its "written at" serves as the arrival time.
 * A checkpoint whose device state has another layout (an upgrade) keeps
 * its position and restarts device state from zero, with a warning. */
#ifndef VG_PROC_PROCESSOR_H
#define VG_PROC_PROCESSOR_H

#include "core/strmap.h"
#include "detect/detect.h"
#include "stream/log.h"

#include <stddef.h>
#include <stdint.h>

typedef struct vg_processor vg_processor_t;

/* Called (from a stream committer thread) for each alert event that became
 * durable. */
typedef void (*vg_processor_publish_fn)(void *ctx, const char *topic, size_t topic_len, const char *payload,
                                        size_t payload_len);
/* Outcome of an acknowledgement request (any thread). status: VG_OK (the
 * ACKNOWLEDGED event is durable), VG_ENOTFOUND (no open alert with that id
 * on that device), VG_EEXIST (already acknowledged), other negative: failed. */
typedef void (*vg_processor_ack_fn)(void *ctx, uint64_t token, int status, uint64_t alert_id, const char *dev_id,
                                    size_t dev_len);

typedef struct {
    const char *data_dir;
    vg_log_t *telemetry; /* borrowed */
    vg_log_t *alerts;    /* borrowed; same shard count as telemetry */
    const vg_detect_cfg_t *cfg;        /* borrowed: global thresholds */
    const vg_strmap_t *device_cfg;     /* borrowed, may be NULL: device id -> (uintptr_t)const vg_detect_cfg_t * */
    uint32_t checkpoint_interval_ms;   /* default 1000 */
    vg_processor_publish_fn publish;
    void *publish_ctx;
    vg_processor_ack_fn ack_done;
    void *ack_ctx;
} vg_processor_opts_t;

int vg_processor_start(const vg_processor_opts_t *o, vg_processor_t **out);
/* Stops every shard thread at its current position, waits for its alerts to
 * become durable, writes final checkpoints, frees. NULL accepted. */
void vg_processor_stop(vg_processor_t *p);

/* Thread-safe: asks the shard owning dev_id to acknowledge alert_id. by and
 * note (may be NULL) are copied (truncated to 64 / 256 bytes). The outcome
 * is reported once through opts.ack_done with token. VG_OK if queued. */
int vg_processor_ack(vg_processor_t *p, const char *dev_id, size_t dev_len, uint64_t alert_id, const char *by,
                     const char *note, uint64_t token);

typedef struct {
    uint64_t processed;       /* telemetry records consumed */
    uint64_t alerts;          /* alert events emitted (all kinds) */
    uint64_t opened, updated, resolved, acknowledged;
    uint64_t alerts_replayed; /* events recomputed during replay and not emitted again */
    uint64_t slot_overflow;   /* OPENs refused: a device had VG_LIFECYCLE_SLOTS alerts open */
    uint64_t emit_errors;     /* events that could not be rendered or appended */
    uint64_t ticks;           /* silence checks run */
    uint64_t checkpoints;
    uint64_t lag;             /* records durable but not yet processed, all shards */
    uint64_t devices;
    uint64_t open_alerts;     /* alerts currently open, all devices */
    uint64_t by_type[VG_ALERT__COUNT]; /* OPENs per alert type */
} vg_processor_stats_t;

void vg_processor_stats(vg_processor_t *p, vg_processor_stats_t *out);

#endif
