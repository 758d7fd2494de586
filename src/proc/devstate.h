/* devstate.h — everything the processor keeps per device: the activity
 * bookkeeping every detector shares, each detector's state and the open
 * alerts (lifecycle slots).
 *
 * Plain data of a fixed size (asserted <= 512 bytes: 10 million devices in
 * 5 GiB), zero = a device never seen, copied byte for byte into checkpoints
 * (VG_DEVSTATE_LAYOUT names the layout; a checkpoint with another layout
 * restarts device state from zero — see processor.h).
 *
 * vg_devstate_feed runs the detectors on one sample in a fixed order:
 * quality first (it decides whether the sample is usable), then, for
 * usable samples only, rest, extreme, sudden and baseline. It returns their
 * conditions; turning them into alert events is the caller's
 * (alert/lifecycle.h on st->slots). */
#ifndef VG_PROC_DEVSTATE_H
#define VG_PROC_DEVSTATE_H

#include "alert/lifecycle.h"
#include "detect/baseline.h"
#include "detect/detect.h"
#include "detect/extreme.h"
#include "detect/quality.h"
#include "detect/rest.h"
#include "detect/sudden.h"

#include <stdint.h>

/* Bump when any part of vg_devstate_t changes shape or meaning. */
#define VG_DEVSTATE_LAYOUT 1

typedef struct {
    int64_t last_ts_ms;        /* previous in-order sample's event time */
    int64_t inactive_since_ms; /* event time the current inactive stretch began */
    uint32_t samples;          /* in-order samples seen (saturating) */
    uint8_t seen;              /* 1 once a sample arrived */
    uint8_t inactive;          /* the previous in-order sample was inactive */
    uint8_t pad[2];
} vg_devcommon_t;

typedef struct {
    vg_devcommon_t common;
    vg_quality_state_t quality;
    vg_rest_state_t rest;
    vg_extreme_state_t extreme;
    vg_sudden_state_t sudden;
    vg_baseline_state_t baseline;
    vg_alert_slot_t slots[VG_LIFECYCLE_SLOTS];
} vg_devstate_t;

_Static_assert(sizeof(vg_devstate_t) <= 512, "per-device detector state must stay <= 512 bytes");

/* Runs every detector on one sample (ts_ms = event time, now_ms = the
 * shard's stream time). Writes the conditions into out (room for
 * VG_DETECT_MAX_CONDS) and returns how many. */
int vg_devstate_feed(const vg_detect_cfg_t *c, vg_devstate_t *st, double hr, int64_t steps, int64_t ts_ms,
                     int64_t now_ms, uint64_t seq, vg_cond_t *out);

/* Time passed without a sample (the device's deadline came due): runs the
 * silence checks (gaps, offline). Returns the number of conditions. */
int vg_devstate_tick(const vg_detect_cfg_t *c, vg_devstate_t *st, int64_t now_ms, vg_cond_t *out);

/* Stream time at which vg_devstate_tick could next change something, or
 * INT64_MAX. */
int64_t vg_devstate_deadline(const vg_detect_cfg_t *c, const vg_devstate_t *st);

#endif
