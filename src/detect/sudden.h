/* sudden.h — SUDDEN_HR_CHANGE: a jump in heart rate not explained by activity.
 *
 * The rule (thresholds in vg_detect_cfg_t, sudden_*):
 *
 *   The detector keeps a level: an exponentially weighted mean of heart
 *   rate with a time constant of one minute of event time, updated with
 *   alpha = 1 - exp(-dt / 60 s), where dt is the time since the previous
 *   usable sample (never negative). Its samples' mean age is one minute, so
 *   it stands for "the heart rate about a minute ago", and the jump
 *
 *       J = hr - level (the level before this sample), in bpm
 *
 *   is the change over about one minute, i.e. in bpm per minute. A sample
 *   is a jump when |J| >= sudden_bpm_per_min. A step of that size fires; a
 *   steady ramp of slope r bpm/min lasting T gives J = r x 1 min x
 *   (1 - exp(-T / 1 min)), so a rise of 40 bpm within 30 s reaches ~32 and
 *   fires, while 40 bpm spread over 5 minutes reaches ~8 and does not.
 *
 *   Not a jump (explained by activity): a rise while the wearer is active
 *   (x->inactive false) or was within the last 60 s (x->inactive_ms <
 *   60 s); a fall while active or within 180 s of activity stopping
 *   (recovery after exercise).
 *
 *   No verdict before the level has 60 s of history; a gap of more than
 *   5 minutes between usable samples restarts the level from the new sample
 *   (after five time constants it has forgotten the past anyway) and the
 *   60 s of history with it.
 *
 *   Confirmation: the condition becomes active when sudden_confirm_samples
 *   consecutive usable samples are jumps in the same direction; a single
 *   glitch does not fire. While a jump is being confirmed the level is
 *   frozen (candidate samples are not folded in), so a real step keeps its
 *   full size on the confirming samples and an unconfirmed glitch never
 *   pollutes the level. Once active, the level follows heart rate again at
 *   its normal one-minute pace: it takes about a minute to come within
 *   half the threshold of a new plateau, and clearing then needs
 *   sudden_clear_s more, so the condition cannot flap.
 *
 *   Clearing: once active, the condition clears when |J| has stayed below
 *   sudden_bpm_per_min / 2 on every usable sample for sudden_clear_s of
 *   event time (from the first calm sample to the current one).
 *
 *   Severity: warning; critical when |J| >= 2 x sudden_bpm_per_min on a
 *   confirming sample or, in the same direction, later in the episode.
 *
 * Evidence (vg_cond_t): value = J (signed, bpm per minute), threshold =
 * sudden_bpm_per_min, mean_hr = the level, min_hr / max_hr = the lower /
 * higher of the level and this sample's heart rate, samples = consecutive
 * jump samples seen (the confirming ones, once active), window_ms = 60000
 * (the level's time constant), active_share = 1 when this sample shows
 * activity, else 0. at_ms while active: ts of the first sample of the
 * confirmed jump; while inactive: this sample's ts (on the clearing sample,
 * the sample that cleared it). */
#ifndef VG_DETECT_SUDDEN_H
#define VG_DETECT_SUDDEN_H

#include "detect/detect.h"

#include <stdint.h>

/* Per-device state: zero = a fresh device. Pointer-free and without
 * implicit padding: it is copied byte for byte into checkpoints. */
typedef struct {
    int64_t last_ms;  /* ts of the previous usable sample */
    int64_t at_ms;    /* ts of the first sample of the jump being confirmed / active */
    float level;      /* EW mean heart rate, time constant 60 s */
    uint32_t warm_ms; /* event time of history behind the level (saturating) */
    uint32_t calm_ms; /* while active: how long |J| has stayed below half the threshold */
    uint8_t streak;   /* consecutive jump samples (saturating) */
    uint8_t flags;    /* bit 0 started, 1 active, 2 calm streak running, 3 the jump is a fall */
    uint8_t severity; /* vg_severity_t of the active episode */
    uint8_t pad;
} vg_sudden_state_t;

_Static_assert(sizeof(vg_sudden_state_t) <= 32, "vg_sudden_state_t must fit the per-device budget (detect.h)");

/* Feeds one usable sample (x->usable; callers skip the others), in
 * event-time order, and appends one condition to out:
 * VG_ALERT_SUDDEN_CHANGE. Returns 1. */
int vg_sudden_feed(const vg_detect_cfg_t *c, vg_sudden_state_t *s, const vg_sample_t *x, vg_cond_t *out);

#endif
