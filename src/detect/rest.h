/* rest.h — SUSTAINED_HIGH_HR_AT_REST and SUSTAINED_LOW_HR_AT_REST.
 *
 * The rule (thresholds in vg_detect_cfg_t, rest_*):
 *
 *   Over the last rest_window_s of event time, HIGH becomes active when the
 *   window holds >= rest_min_samples usable samples and the samples that
 *   were at rest (x->at_rest) with heart rate > rest_high_bpm make up
 *   >= rest_share of ALL the window's samples. LOW likewise with
 *   < rest_low_bpm. Samples taken during activity never count toward the
 *   share but do count in the denominator, so exercise never fires it.
 *
 *   Once active, HIGH stays active until the share of the window's samples
 *   with heart rate > rest_high_bpm - rest_hysteresis_bpm (at rest or not)
 *   falls below rest_clear_share; LOW until the share with heart rate
 *   < rest_low_bpm + rest_hysteresis_bpm does. (If rest_clear_share is
 *   configured above rest_share, rest_share is used instead, so that a
 *   condition can never clear and re-fire on alternate samples.) The
 *   clearing rule has no minimum sample count: after a gap that emptied the
 *   window, the first sample decides.
 *
 *   Severity: warning; critical when the window's mean heart rate is
 *   >= rest_high_bpm + rest_critical_delta_bpm (HIGH), or
 *   <= rest_low_bpm - rest_critical_delta_bpm / 2 (LOW; 30 bpm with the
 *   defaults — the full delta would put the limit at 20 bpm, below any
 *   plausible reading, so LOW could never escalate).
 *
 * The window is a ring of VG_REST_BUCKETS time buckets, each
 * rest_window_s / VG_REST_BUCKETS wide (50 s with the defaults), aligned on
 * multiples of the width in event time. The window is the current bucket
 * and the VG_REST_BUCKETS - 1 before it, so its boundary is accurate to one
 * bucket: a sample rest_window_s old or older never counts, a sample less
 * than rest_window_s - width old always counts, and in between it depends
 * on where the bucket boundaries fall. Buckets hold small counts; when one
 * would exceed 255 samples (above 5 samples/s with the defaults, or 0.4/s
 * with a two-hour window) the detector halves every count and from then on
 * records one sample in 2^scale, so shares stay right and sample counts
 * become estimates (x 2^scale); the samples recorded are picked by a hash
 * of a sample counter, so that periodic input cannot alias with the
 * selection. The scale drops back when the rate does.
 * Gaps simply leave buckets empty; buckets older than the window are
 * emptied by event time, with at most one pass over the ring per sample
 * however far time jumps.
 *
 * Evidence (vg_cond_t): samples = samples in the window; min/mean/max
 * heart rate of the window (whole bpm, clamped to 0..255); active_share =
 * share of the window's samples that were not inactive; window_ms = the
 * window's length (VG_REST_BUCKETS x width); value = the share the rule
 * evaluated on this sample (the at-rest share while the condition was
 * inactive, the hysteresis share while it was active); threshold = the bpm
 * threshold. at_ms while active: the event time of the first at-rest sample
 * beyond the threshold in the window when the episode began (exact when
 * that sample is still in the window, else the start of the oldest bucket
 * holding one), fixed for the episode; while inactive: the sample's ts (on
 * the clearing sample, the sample that cleared it). */
#ifndef VG_DETECT_REST_H
#define VG_DETECT_REST_H

#include "detect/detect.h"

#include <stdint.h>

#define VG_REST_BUCKETS 12

/* One time bucket. Counts are in units of 2^scale samples (see above). */
typedef struct {
    uint8_t n;              /* samples */
    uint8_t rest[2];        /* at rest and > rest_high_bpm [0], at rest and < rest_low_bpm [1] */
    uint8_t near[2];        /* > high - hysteresis [0], < low + hysteresis [1], at rest or not */
    uint8_t moving;         /* not inactive */
    uint8_t min_hr, max_hr; /* whole bpm, clamped to 0..255; meaningful when n > 0 */
    uint16_t sum_hr;        /* of the whole-bpm values: <= 255 x 255 */
} vg_rest_bucket_t;

/* Per-device state: zero = a fresh device. Pointer-free and without
 * implicit padding: it is copied byte for byte into checkpoints. */
typedef struct {
    int64_t head;        /* bucket index (floor(ts_ms / width_ms)) of the newest bucket */
    int64_t at_ms[2];    /* HIGH [0] / LOW [1]: the active episode's at_ms */
    int64_t first_ms[2]; /* the first at-rest sample beyond the threshold since the window last held none */
    uint32_t width_ms;   /* bucket width; 0 = fresh (a change of rest_window_s empties the ring) */
    uint16_t phase;      /* sample counter: its hash picks the samples recorded at scale > 0 */
    uint8_t scale;       /* counts are in units of 2^scale samples */
    uint8_t flags;       /* bits 0/1: HIGH/LOW active; bits 2/3: first_ms[0]/[1] valid */
    vg_rest_bucket_t b[VG_REST_BUCKETS];
} vg_rest_state_t;

_Static_assert(sizeof(vg_rest_bucket_t) == 10, "vg_rest_bucket_t has no padding");
_Static_assert(sizeof(vg_rest_state_t) <= 168, "vg_rest_state_t must fit the per-device budget (detect.h)");

/* Feeds one usable sample (x->usable; callers skip the others), in
 * event-time order, and appends two conditions to out:
 * VG_ALERT_HIGH_HR_AT_REST then VG_ALERT_LOW_HR_AT_REST. Returns 2. */
int vg_rest_feed(const vg_detect_cfg_t *c, vg_rest_state_t *s, const vg_sample_t *x, vg_cond_t *out);

#endif
