/* threshold.c — the heart-rate threshold detector behind threshold.h.
 *
 * Owns: the episode rule (one alert per excursion beyond a threshold) and the
 * alert type names. Does not own: per-device state storage (devtable.c),
 * alert delivery, or sample validation (event.c rejects heart rates outside
 * (0, 300] before they get here). Pure functions, no allocation. */
#include "detect/threshold.h"

#include <stddef.h>

#define DEFAULT_HIGH_BPM 140.0
#define DEFAULT_LOW_BPM 40.0

void vg_threshold_cfg_default(vg_threshold_cfg_t *c)
{
    c->high = DEFAULT_HIGH_BPM;
    c->low = DEFAULT_LOW_BPM;
}

vg_alert_type_t vg_threshold_eval(const vg_threshold_cfg_t *c, vg_threshold_state_t *s, double heart_rate,
                                  int64_t ts_ms, double *threshold)
{
    if (threshold)
        *threshold = 0.0;
    if (s->samples != UINT32_MAX)
        s->samples++;
    s->last_ts_ms = ts_ms;

    /* A NaN compares false both ways and would look like a return to normal;
     * it carries no information, so it must not close an open episode. */
    if (heart_rate != heart_rate)
        return VG_ALERT_NONE;

    vg_alert_type_t now = VG_ALERT_NONE;
    if (heart_rate > c->high)
        now = VG_ALERT_HIGH_HEART_RATE;
    else if (heart_rate < c->low)
        now = VG_ALERT_LOW_HEART_RATE;

    if (now == s->episode)
        return VG_ALERT_NONE; /* still inside, or still in the same episode */
    /* A jump straight from one side to the other closes the old episode and
     * opens a new one, which is news and fires. */
    s->episode = (uint8_t)now;
    if (now == VG_ALERT_NONE)
        return VG_ALERT_NONE;
    if (threshold)
        *threshold = now == VG_ALERT_HIGH_HEART_RATE ? c->high : c->low;
    return now;
}

const char *vg_alert_type_name(vg_alert_type_t t)
{
    switch (t) {
    case VG_ALERT_HIGH_HEART_RATE: return "HIGH_HEART_RATE";
    case VG_ALERT_LOW_HEART_RATE: return "LOW_HEART_RATE";
    default: return "NONE";
    }
}
