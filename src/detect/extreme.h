/* extreme.h — EXTREME_HIGH_HR and EXTREME_LOW_HR, regardless of activity.
 *
 * The rule (thresholds in vg_detect_cfg_t, extreme_*):
 *
 *   A HIGH run is a sequence of consecutive usable samples with heart rate
 *   > extreme_high_bpm (strictly: exactly 180 does not count). HIGH becomes
 *   active when the run's first sample is >= extreme_sustain_s before the
 *   current sample (a run spanning exactly 30.000 s counts). A sample
 *   <= extreme_high_bpm breaks a run that is not active yet, and so does a
 *   gap longer than extreme_sustain_s between two samples (missing data is
 *   not "sustained"); the breaking sample may start a new run. Once active,
 *   HIGH stays active — across gaps too — until the first sample
 *   <= extreme_high_bpm - extreme_hysteresis_bpm; samples in between keep it
 *   active and are part of the run. LOW is the mirror image: < extreme_low_bpm
 *   to run, cleared by the first sample >= extreme_low_bpm +
 *   extreme_hysteresis_bpm. Only one run exists at a time (no sample can
 *   extend both), so the state holds a single run and its direction.
 *
 *   Severity: critical. Evidence (vg_cond_t): samples = the run's length,
 *   min/mean/max heart rate of the run, window_ms = the run's duration
 *   (last sample - first), value = this sample's heart rate, threshold = the
 *   bpm limit, at_ms = the run's first sample while active, else this
 *   sample's ts (on the clearing sample: the ts of the sample that cleared
 *   it, with the ended run as evidence). */
#ifndef VG_DETECT_EXTREME_H
#define VG_DETECT_EXTREME_H

#include "detect/detect.h"

#include <stdint.h>

/* Per-device state: zero = a fresh device (no run). Pointer-free and
 * without implicit padding: it is copied byte for byte into checkpoints. */
typedef struct {
    int64_t start_ms; /* ts of the run's first sample */
    int64_t last_ms;  /* ts of the run's latest sample */
    float sum_hr;     /* of the run's samples (evidence: the mean) */
    uint32_t n;       /* the run's samples (saturating) */
    uint16_t min_dhr; /* the run's minimum heart rate, in 0.1 bpm */
    uint16_t max_dhr; /* the run's maximum heart rate, in 0.1 bpm */
    uint8_t run;      /* 0: no run, 1: HIGH run, 2: LOW run */
    uint8_t active;   /* 1: the run has been sustained long enough */
    uint8_t pad[2];
} vg_extreme_state_t;

_Static_assert(sizeof(vg_extreme_state_t) <= 32, "vg_extreme_state_t must fit the per-device budget (detect.h)");

/* Feeds one usable sample (x->usable; callers skip the others), in
 * event-time order, and appends two conditions to out:
 * VG_ALERT_EXTREME_HIGH_HR then VG_ALERT_EXTREME_LOW_HR. Returns 2. */
int vg_extreme_feed(const vg_detect_cfg_t *c, vg_extreme_state_t *s, const vg_sample_t *x, vg_cond_t *out);

#endif
