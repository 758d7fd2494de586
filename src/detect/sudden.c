/* sudden.c — the sudden heart-rate change detector behind sudden.h.
 *
 * Owns: the one-minute level of one device's heart rate, the confirmation
 * and clearing of SUDDEN_HR_CHANGE, and the rule for which changes activity
 * explains. Does not own: deciding whether a sample shows activity
 * (devstate.c fills x->inactive and x->inactive_ms), sample validation
 * (quality.c), the alert lifecycle (devstate.c), or where the state lives.
 * Pure functions: no allocation, no clock, no I/O. */
#include "detect/sudden.h"

#include <math.h>
#include <string.h>

#define TAU_MS 60000.0           /* the level's time constant */
#define WARMUP_MS 60000u         /* history the level needs before any verdict */
#define RESTART_MS 300000        /* a gap this long: the level has forgotten everything */
#define RISE_EXPLAINED_MS 60000  /* a rise this soon after activity is the activity's */
#define FALL_EXPLAINED_MS 180000 /* a fall this soon after activity is recovery */

enum { F_STARTED = 1, F_ACTIVE = 2, F_CALM = 4, F_FALL = 8 };

static uint32_t add_sat(uint32_t a, int64_t b)
{
    if (b <= 0)
        return a;
    if (b >= (int64_t)(UINT32_MAX - a))
        return UINT32_MAX;
    return a + (uint32_t)b;
}

static uint8_t confirm_samples(const vg_detect_cfg_t *c)
{
    double n = ceil(c->sudden_confirm_samples);
    if (!(n >= 1.0))
        return 1;
    if (n > 255.0)
        return 255;
    return (uint8_t)n;
}

static void report(const vg_detect_cfg_t *c, const vg_sudden_state_t *s, const vg_sample_t *x, double level, double j,
                   vg_cond_t *o)
{
    memset(o, 0, sizeof *o);
    o->type = VG_ALERT_SUDDEN_CHANGE;
    o->active = (s->flags & F_ACTIVE) ? 1 : 0;
    o->severity = o->active ? s->severity : (uint8_t)VG_SEV_NONE;
    o->samples = s->streak;
    o->mean_hr = (float)level;
    o->min_hr = (float)(x->hr < level ? x->hr : level);
    o->max_hr = (float)(x->hr > level ? x->hr : level);
    o->active_share = x->inactive ? 0.0f : 1.0f;
    o->window_ms = (int64_t)TAU_MS;
    o->at_ms = o->active ? s->at_ms : x->ts_ms;
    o->value = j;
    o->threshold = c->sudden_bpm_per_min;
}

int vg_sudden_feed(const vg_detect_cfg_t *c, vg_sudden_state_t *s, const vg_sample_t *x, vg_cond_t *out)
{
    double hr = x->hr;
    double thr = c->sudden_bpm_per_min;
    int64_t dt = (s->flags & F_STARTED) ? x->ts_ms - s->last_ms : 0;
    if (dt < 0)
        dt = 0;

    /* A heart rate that is not a number would poison the level for good; it
     * carries no information, so it changes nothing. */
    if (!isfinite(hr)) {
        report(c, s, x, s->level, 0.0, out);
        return 1;
    }

    if (!(s->flags & F_STARTED) || dt > RESTART_MS) {
        /* First sample, or back after a long gap: the level starts here and
         * no verdict is possible. An active episode stays open; this sample
         * (J = 0) begins its calm streak. */
        if (s->flags & F_ACTIVE) {
            s->flags = (uint8_t)(s->flags | F_STARTED | F_CALM);
        } else {
            s->flags = F_STARTED;
            s->streak = 0;
        }
        s->level = (float)hr;
        s->last_ms = x->ts_ms;
        s->warm_ms = 0;
        s->calm_ms = 0;
        report(c, s, x, hr, 0.0, out);
        return 1;
    }

    double level = s->level;
    double j = hr - level;
    bool rise = j > 0;
    s->warm_ms = add_sat(s->warm_ms, dt);
    bool explained = !x->inactive || x->inactive_ms < (rise ? RISE_EXPLAINED_MS : FALL_EXPLAINED_MS);
    bool jump = s->warm_ms >= WARMUP_MS && fabs(j) >= thr && !explained;
    bool fold = true;

    if (!(s->flags & F_ACTIVE)) {
        if (jump) {
            bool same = s->streak > 0 && rise == !(s->flags & F_FALL);
            if (!same) {
                s->streak = 0;
                s->at_ms = x->ts_ms;
                s->flags = (uint8_t)(rise ? s->flags & ~F_FALL : s->flags | F_FALL);
            }
            if (s->streak < UINT8_MAX)
                s->streak++;
            fold = false; /* freeze the level while the jump is confirmed */
            if (s->streak >= confirm_samples(c)) {
                s->flags = (uint8_t)((s->flags | F_ACTIVE) & ~F_CALM);
                s->calm_ms = 0;
                s->severity = (uint8_t)(fabs(j) >= 2.0 * thr ? VG_SEV_CRITICAL : VG_SEV_WARNING);
            }
        } else {
            s->streak = 0;
        }
    } else if (fabs(j) < thr / 2.0) {
        if (s->flags & F_CALM) {
            s->calm_ms = add_sat(s->calm_ms, dt);
        } else {
            s->flags |= F_CALM;
            s->calm_ms = 0;
        }
        if ((double)s->calm_ms >= c->sudden_clear_s * 1000.0) {
            s->flags &= (uint8_t) ~(F_ACTIVE | F_CALM | F_FALL);
            s->calm_ms = 0;
            s->streak = 0;
            s->severity = VG_SEV_NONE;
            s->at_ms = 0;
        }
    } else {
        s->flags &= (uint8_t)~F_CALM;
        s->calm_ms = 0;
        if (fabs(j) >= 2.0 * thr && rise == !(s->flags & F_FALL))
            s->severity = VG_SEV_CRITICAL;
    }

    if (fold)
        s->level = (float)(level + (1.0 - exp(-(double)dt / TAU_MS)) * j);
    s->last_ms = x->ts_ms;
    report(c, s, x, level, j, out);
    return 1;
}
