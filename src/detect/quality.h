/* quality.h — the sensor and data-quality detector: is this device's data
 * believable, complete, in order and on time?
 *
 * Seven condition types, all per device (rules in quality.c's opening
 * comment): SENSOR_IMPOSSIBLE_VALUE, SENSOR_FLATLINE, DATA_GAP,
 * DEVICE_OFFLINE, OUT_OF_ORDER_TIMESTAMP, STALE_DATA and CLOCK_SKEW.
 *
 * The detector runs first on every sample, out-of-order ones included, and
 * decides x->usable, the only thing the cardiac detectors learn from it.
 * Silence cannot be seen from samples, so the processor also calls
 * vg_quality_tick when stream time reaches vg_quality_deadline: one timer
 * per device. Pure functions: no allocation, no clock, no I/O. */
#ifndef VG_DETECT_QUALITY_H
#define VG_DETECT_QUALITY_H

#include "detect/detect.h"

#include <stdint.h>

/* Upper bound of the conditions one vg_quality_feed or vg_quality_tick
 * appends: size the out array with this. */
#define VG_QUALITY_MAX_CONDS 12

/* Per-device state: zero-initialised = a device never heard from. Plain
 * old data without pointers, so it is copied into checkpoints byte for byte;
 * every byte (padding included) is written deterministically, so equal
 * inputs give byte-identical states. */
typedef struct {
    int64_t last_ts_ms;    /* event time of the last in-order sample */
    int64_t last_now_ms;   /* stream time when the device was last heard from (any sample) */
    int64_t flat_start_ms; /* event time of the first sample of the current equal-value run */
    int64_t skew_start_ms; /* event time of the first sample of the current large-offset run */
    double flat_hr;        /* the heart rate of that run */
    float interval_ms;     /* EW mean of the in-order intervals: the device's usual interval */
    int32_t offset_ds;     /* ts - now of the last in-order sample, tenths of a second */
    uint16_t flat_n;       /* samples in the equal-value run (saturating) */
    uint8_t intervals;     /* in-order intervals seen (saturating) */
    uint8_t flags;         /* QF_* bits (quality.c) */
    uint8_t flags2;        /* QF2_* bits (quality.c) */
    uint8_t imp_ok;        /* consecutive plausible samples while IMPOSSIBLE is active */
    uint8_t ooo_ok;        /* consecutive in-order samples while OUT_OF_ORDER is active */
    uint8_t stale_ok;      /* consecutive fresh samples while STALE is active */
    uint8_t skew_n;        /* consecutive in-order samples with a large, consistent offset */
    uint8_t skew_ok;       /* consecutive samples with a small offset while SKEW is active */
    uint8_t pad[6];        /* explicit, so that no byte of the state is ever indeterminate */
} vg_quality_state_t;

_Static_assert(sizeof(vg_quality_state_t) <= 64, "quality state over its 64-byte budget (detect.h)");

/* Judges one sample of the device (any sample, in order or not, before any
 * other detector sees it): sets x->usable and appends to out (room for
 * VG_QUALITY_MAX_CONDS) one condition per type evaluated on this sample;
 * DATA_GAP and DEVICE_OFFLINE may appear twice in a row (active, dated when
 * the silence began, then inactive) when the silence is only noticed now.
 * Returns the number appended. */
int vg_quality_feed(const vg_detect_cfg_t *c, vg_quality_state_t *s, vg_sample_t *x, vg_cond_t *out);

/* Stream time has reached now_ms without a sample from this device: appends
 * DATA_GAP / DEVICE_OFFLINE activations that are due (each once per
 * silence). Returns the number appended (0..2). Harmless to call early or
 * repeatedly. */
int vg_quality_tick(const vg_detect_cfg_t *c, vg_quality_state_t *s, int64_t now_ms, vg_cond_t *out);

/* The earliest stream time at which vg_quality_tick could append something,
 * or INT64_MAX if none (no sample yet, or both silences already reported).
 * Changes only when vg_quality_feed or vg_quality_tick runs. */
int64_t vg_quality_deadline(const vg_detect_cfg_t *c, const vg_quality_state_t *s);

#endif
