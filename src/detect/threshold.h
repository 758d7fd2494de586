/* threshold.h — the heart-rate threshold detector with episodes.
 *
 * Fires HIGH_HEART_RATE when heart rate > high (default 140 bpm) and
 * LOW_HEART_RATE when heart rate < low (default 40 bpm). One episode = one
 * alert: the detector opens an episode on the first sample beyond the
 * threshold and emits; further samples beyond it emit nothing; the episode
 * closes on the first sample back inside [low, high] (then a new crossing
 * is a new episode). Per-device state is a few bytes so that it fits in a
 * device table for millions of devices and can be snapshotted into
 * checkpoints byte for byte. */
#ifndef VG_DETECT_THRESHOLD_H
#define VG_DETECT_THRESHOLD_H

#include <stdint.h>

typedef enum { VG_ALERT_NONE = 0, VG_ALERT_HIGH_HEART_RATE = 1, VG_ALERT_LOW_HEART_RATE = 2 } vg_alert_type_t;

typedef struct {
    double high; /* > high fires HIGH_HEART_RATE */
    double low;  /* < low fires LOW_HEART_RATE */
} vg_threshold_cfg_t;

void vg_threshold_cfg_default(vg_threshold_cfg_t *c);

/* Per-device state: zero-initialised means "no episode open". */
typedef struct {
    uint8_t episode;      /* vg_alert_type_t of the open episode, or NONE */
    uint8_t pad[3];
    uint32_t samples;     /* samples seen (saturating) */
    int64_t last_ts_ms;   /* event time of the last sample */
} vg_threshold_state_t;

/* Feeds one sample. Returns the alert type to emit (NONE if nothing new)
 * and sets *threshold to the threshold that was crossed. */
vg_alert_type_t vg_threshold_eval(const vg_threshold_cfg_t *c, vg_threshold_state_t *s, double heart_rate,
                                  int64_t ts_ms, double *threshold);

/* "HIGH_HEART_RATE", "LOW_HEART_RATE", "NONE". */
const char *vg_alert_type_name(vg_alert_type_t t);

#endif
