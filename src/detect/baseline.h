/* baseline.h — the personal resting-heart-rate detector: is this wearer's
 * resting heart rate drifting above their own normal?
 *
 * Two condition types (rules in baseline.c's opening comment):
 *   BASELINE_DRIFT        the short-term resting level against a slowly
 *                         learnt personal baseline (robust z-score);
 *   RESTING_HR_ELEVATION  tonight's mean resting heart rate against the
 *                         median of the previous nights.
 * A "resting" sample is one taken after >= baseline_rest_s of inactivity.
 * Both learn only from resting time, so exercise neither trains nor trips
 * them. Pure functions: no allocation, no clock, no I/O. */
#ifndef VG_DETECT_BASELINE_H
#define VG_DETECT_BASELINE_H

#include "detect/detect.h"

#include <stdint.h>

/* Reference nights kept for the nightly median. */
#define VG_BASELINE_NIGHTS 7

/* Per-device state: zero-initialised = nothing learnt yet. Plain old data
 * without pointers and without implicit padding, copied into checkpoints
 * byte for byte; equal inputs give byte-identical states. */
typedef struct {
    int64_t rest_ms;                   /* resting time learnt from (saturating) */
    int64_t cross_ms;                  /* event time z first crossed the limit in the current run or episode */
    int64_t elev_ms;                   /* start (event time) of the first elevated night of the run or episode */
    double night_sum;                  /* sum of the resting heart rates of the night being collected */
    float mean, var;                   /* baseline resting heart rate: EW mean and variance */
    float level;                       /* short-term resting level: EW mean with a short half-life */
    float level_var;                   /* EW mean square of (level - mean): the spread z is scaled by */
    uint32_t run_ms;                   /* resting time z has stayed >= the limit (inactive) or < limit - 1 (active) */
    int32_t night;                     /* day number of the night being collected (local days) */
    uint32_t night_n;                  /* resting samples collected in it */
    uint16_t hist[VG_BASELINE_NIGHTS]; /* reference nights' resting HR, 0.1 bpm, a ring */
    uint8_t hist_n;                    /* reference nights held (0..7) */
    uint8_t hist_pos;                  /* next ring slot to write */
    uint8_t elev_n;                    /* consecutive elevated nights */
    uint8_t alert_n;                   /* consecutive nights >= median + nightly_alert_bpm */
    uint8_t held_n;                    /* consecutive nights kept out of the reference */
    uint8_t flags;                     /* BF_* bits (baseline.c) */
} vg_baseline_state_t;

_Static_assert(sizeof(vg_baseline_state_t) <= 96, "baseline state over its 96-byte budget (detect.h)");

/* Feeds one usable sample of the device, in event-time order (the processor
 * skips samples quality.c marked unusable). Appends to out (room for
 * VG_BASELINE_MAX_CONDS) a BASELINE_DRIFT condition for each resting sample
 * once warmed up, and a RESTING_HR_ELEVATION condition when this sample
 * closes a night that could be judged. Returns the number appended. */
int vg_baseline_feed(const vg_detect_cfg_t *c, vg_baseline_state_t *s, const vg_sample_t *x, vg_cond_t *out);

#define VG_BASELINE_MAX_CONDS 2

#endif
