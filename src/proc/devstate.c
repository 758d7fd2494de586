/* devstate.c — one device's detector pipeline (devstate.h).
 *
 * Owns: the activity bookkeeping shared by every detector (step rate,
 * "inactive", "at rest" and for how long) and the order detectors run in.
 * Does not own: any detector's rule, the lifecycle, or where states live
 * (devtable.c). */
#include "proc/devstate.h"

#include <string.h>

int vg_devstate_feed(const vg_detect_cfg_t *c, vg_devstate_t *st, double hr, int64_t steps, int64_t ts_ms,
                     int64_t now_ms, uint64_t seq, vg_cond_t *out)
{
    vg_devcommon_t *cm = &st->common;
    vg_sample_t x;
    memset(&x, 0, sizeof x);
    x.hr = hr;
    x.steps = steps;
    x.ts_ms = ts_ms;
    x.now_ms = now_ms;
    x.seq = seq;
    x.first = !cm->seen;
    x.dt_ms = x.first ? 0 : ts_ms - cm->last_ts_ms;
    bool in_order = x.first || x.dt_ms > 0;
    if (x.dt_ms > 0)
        x.steps_per_min = (double)steps * 60000.0 / (double)x.dt_ms;
    else
        /* First sample or out of order: no interval to divide by. Steps
         * present still mean movement. */
        x.steps_per_min = steps > 0 ? c->inactive_steps_per_min + 1.0 : 0.0;
    x.inactive = x.steps_per_min <= c->inactive_steps_per_min;
    /* Inactivity began at the first inactive sample after movement (or at
     * the device's first sample: we know nothing earlier). */
    int64_t since = cm->inactive_since_ms;
    if (x.inactive && in_order && (x.first || !cm->inactive))
        since = ts_ms;
    x.inactive_ms = x.inactive && since <= ts_ms ? ts_ms - since : 0;
    x.at_rest = x.inactive && x.inactive_ms >= (int64_t)(c->rest_after_activity_s * 1000.0);
    x.usable = true;

    int n = vg_quality_feed(c, &st->quality, &x, out);
    if (in_order) {
        cm->seen = 1;
        cm->last_ts_ms = ts_ms;
        if (cm->samples != UINT32_MAX)
            cm->samples++;
        cm->inactive = x.inactive;
        cm->inactive_since_ms = since;
    } else {
        /* An out-of-order sample carries no usable time base. */
        x.usable = false;
    }
    if (!x.usable)
        return n;
    n += vg_rest_feed(c, &st->rest, &x, out + n);
    n += vg_extreme_feed(c, &st->extreme, &x, out + n);
    n += vg_sudden_feed(c, &st->sudden, &x, out + n);
    n += vg_baseline_feed(c, &st->baseline, &x, out + n);
    return n;
}

int vg_devstate_tick(const vg_detect_cfg_t *c, vg_devstate_t *st, int64_t now_ms, vg_cond_t *out)
{
    return vg_quality_tick(c, &st->quality, now_ms, out);
}

int64_t vg_devstate_deadline(const vg_detect_cfg_t *c, const vg_devstate_t *st)
{
    return vg_quality_deadline(c, &st->quality);
}
