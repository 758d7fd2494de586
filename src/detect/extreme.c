/* extreme.c — the extreme heart-rate detector behind extreme.h.
 *
 * Owns: the run of consecutive samples beyond extreme_high_bpm or
 * extreme_low_bpm, and the fire / clear rules of EXTREME_HIGH_HR and
 * EXTREME_LOW_HR. Does not own: sample validation (quality.c marks
 * impossible values unusable, and callers skip them), the alert lifecycle
 * (devstate.c), or where the state lives. Pure functions: no allocation, no
 * clock, no I/O. */
#include "detect/extreme.h"

#include <math.h>
#include <string.h>

enum { RUN_NONE = 0, RUN_HIGH = 1, RUN_LOW = 2 };

static int64_t to_ms(double seconds)
{
    return (int64_t)llround(seconds * 1000.0);
}

static uint16_t deci_bpm(double hr)
{
    if (!(hr >= 0.0))
        return 0;
    if (hr >= 6553.4)
        return UINT16_MAX;
    return (uint16_t)(hr * 10.0 + 0.5);
}

/* Does hr extend a run in direction dir? Before the run is active it must be
 * beyond the limit itself; once active, beyond the hysteresis limit. */
static bool extends(const vg_detect_cfg_t *c, int dir, bool active, double hr)
{
    if (dir == RUN_HIGH)
        return hr > c->extreme_high_bpm - (active ? c->extreme_hysteresis_bpm : 0.0);
    return hr < c->extreme_low_bpm + (active ? c->extreme_hysteresis_bpm : 0.0);
}

static void start_run(vg_extreme_state_t *s, int dir, const vg_sample_t *x)
{
    s->run = (uint8_t)dir;
    s->active = 0;
    s->start_ms = s->last_ms = x->ts_ms;
    s->n = 1;
    s->sum_hr = (float)x->hr;
    s->min_dhr = s->max_dhr = deci_bpm(x->hr);
}

static void extend_run(vg_extreme_state_t *s, const vg_sample_t *x)
{
    uint16_t v = deci_bpm(x->hr);
    s->last_ms = x->ts_ms;
    if (s->n != UINT32_MAX)
        s->n++;
    s->sum_hr += (float)x->hr;
    if (v < s->min_dhr)
        s->min_dhr = v;
    if (v > s->max_dhr)
        s->max_dhr = v;
}

static void end_run(vg_extreme_state_t *s)
{
    memset(s, 0, sizeof *s);
}

static void report(const vg_detect_cfg_t *c, const vg_extreme_state_t *r, int dir, const vg_sample_t *x, vg_cond_t *o)
{
    memset(o, 0, sizeof *o);
    o->type = (uint8_t)(dir == RUN_HIGH ? VG_ALERT_EXTREME_HIGH_HR : VG_ALERT_EXTREME_LOW_HR);
    o->threshold = dir == RUN_HIGH ? c->extreme_high_bpm : c->extreme_low_bpm;
    o->value = x->hr;
    o->at_ms = x->ts_ms;
    if (r->run != dir)
        return;
    o->active = r->active;
    o->severity = (uint8_t)(r->active ? VG_SEV_CRITICAL : VG_SEV_NONE);
    if (r->active)
        o->at_ms = r->start_ms;
    o->samples = r->n;
    o->min_hr = (float)r->min_dhr / 10.0f;
    o->max_hr = (float)r->max_dhr / 10.0f;
    o->mean_hr = r->sum_hr / (float)r->n;
    o->window_ms = r->last_ms - r->start_ms;
}

int vg_extreme_feed(const vg_detect_cfg_t *c, vg_extreme_state_t *s, const vg_sample_t *x, vg_cond_t *out)
{
    int64_t sustain_ms = to_ms(c->extreme_sustain_s);
    /* The run this sample ended, if it was active: the clearing sample
     * reports it as evidence. */
    vg_extreme_state_t ended;
    memset(&ended, 0, sizeof ended);

    /* A heart rate that is not a number compares false both ways and would
     * end an active run; it carries no information, so it changes nothing. */
    if (!isfinite(x->hr)) {
        report(c, s, RUN_HIGH, x, &out[0]);
        report(c, s, RUN_LOW, x, &out[1]);
        return 2;
    }
    if (s->run != RUN_NONE) {
        if (!s->active && x->ts_ms - s->last_ms > sustain_ms) {
            end_run(s); /* a gap inside a run that was never confirmed */
        } else if (extends(c, s->run, s->active, x->hr)) {
            extend_run(s, x);
        } else {
            if (s->active) {
                ended = *s;
                ended.active = 0;
            }
            end_run(s);
        }
    }
    if (s->run == RUN_NONE) {
        if (x->hr > c->extreme_high_bpm)
            start_run(s, RUN_HIGH, x);
        else if (x->hr < c->extreme_low_bpm)
            start_run(s, RUN_LOW, x);
    }
    if (s->run != RUN_NONE && !s->active && x->ts_ms - s->start_ms >= sustain_ms)
        s->active = 1;

    for (int dir = RUN_HIGH; dir <= RUN_LOW; dir++)
        report(c, s->run == dir || ended.run != dir ? s : &ended, dir, x, &out[dir - 1]);
    return 2;
}
