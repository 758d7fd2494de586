/* processor.h — the detector consumers: one thread per telemetry shard,
 * Kinesis/Lambda event-source style.
 *
 * Each shard's thread reads the telemetry stream in order from its
 * checkpoint, keeps per-device state (detect/devtable.h), runs the
 * detectors, and for each alert appends an alert record to the alerts
 * stream (same shard index) and — once that record is durable — publishes
 * it to MQTT `alerts/<deviceId>`.
 *
 * Exactly-once alerts across crashes: checkpoints are written only when no
 * alert is still awaiting durability, and hold the device state as of the
 * checkpointed sequence number. After a restart, the thread replays from the
 * checkpoint; alerts whose source sequence number is at or below the highest
 * one already in the alerts stream for that shard are recomputed (to rebuild
 * state) but not emitted again.
 *
 * Checkpoint file <data_dir>/consumers/detector/<shard>.ckpt
 * (little-endian, replaced atomically):
 *   off size field
 *     0    8 magic "VGCKPT01"
 *     8    4 version (2)
 *    12    4 shard
 *    16    8 last processed telemetry sequence number
 *    24    8 written at, epoch ms
 *    32    4 state_len
 *    36    . device state (vg_devtable_serialize format)
 *   36+n   4 CRC-32C (core/crc32c.h) of every preceding byte
 *
 * Alert record: key = deviceId, meta = u64 source seq + u8 alert type (9
 * bytes, little-endian), value = the alert JSON (see alert_json in .c). */
#ifndef VG_PROC_PROCESSOR_H
#define VG_PROC_PROCESSOR_H

#include "detect/threshold.h"
#include "stream/log.h"

#include <stddef.h>
#include <stdint.h>

typedef struct vg_processor vg_processor_t;

/* Called (from a stream committer thread) for each alert that became durable. */
typedef void (*vg_processor_publish_fn)(void *ctx, const char *topic, size_t topic_len, const char *payload,
                                        size_t payload_len);

typedef struct {
    const char *data_dir;
    vg_log_t *telemetry; /* borrowed */
    vg_log_t *alerts;    /* borrowed; same shard count as telemetry */
    vg_threshold_cfg_t threshold;
    uint32_t checkpoint_interval_ms; /* default 1000 */
    vg_processor_publish_fn publish;
    void *publish_ctx;
} vg_processor_opts_t;

int vg_processor_start(const vg_processor_opts_t *o, vg_processor_t **out);
/* Stops every shard thread at its current position, waits for its alerts to
 * become durable, writes final checkpoints, frees. NULL accepted. */
void vg_processor_stop(vg_processor_t *p);

typedef struct {
    uint64_t processed;       /* telemetry records consumed */
    uint64_t alerts;          /* alerts emitted */
    uint64_t alerts_replayed; /* alerts recomputed during replay and not emitted again */
    uint64_t checkpoints;
    uint64_t lag;             /* records durable but not yet processed, all shards */
    uint64_t devices;
} vg_processor_stats_t;

void vg_processor_stats(vg_processor_t *p, vg_processor_stats_t *out);

#endif
