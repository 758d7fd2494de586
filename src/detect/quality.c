/* quality.c — the sensor and data-quality detector behind quality.h.
 *
 * Owns: the seven data-quality rules, the device's usual sampling interval,
 * and the usable verdict that keeps bad samples away from the cardiac
 * detectors. Does not own: turning conditions into alert events (the
 * lifecycle, devstate.c), the per-sample bookkeeping it is handed (dt_ms,
 * steps_per_min and first come from devstate.c), stream time (processor.c)
 * or the timer that calls vg_quality_tick (the processor, at
 * vg_quality_deadline). Pure functions, no allocation, no clock.
 *
 * The rules (cfg fields from detect.h; N = QUALITY_CLEAR_SAMPLES = 3):
 *   SENSOR_IMPOSSIBLE_VALUE (warning): hr outside [hr_min_plausible,
 *     hr_max_plausible] (NaN included), or, on an in-order sample,
 *     steps_per_min > steps_max_per_min. The sample is unusable. Clears after N consecutive
 *     plausible samples. Judged on every sample, out-of-order ones too.
 *   SENSOR_FLATLINE (warning): the in-order samples since the run began all
 *     carry exactly the same heart rate, for >= flatline_s of event time and
 *     >= flatline_min_samples samples. at_ms = the run's first sample. From
 *     the confirming sample on, flat samples are unusable; earlier ones were
 *     usable (nobody knew yet). Clears on the first different value.
 *   DATA_GAP (info): silence longer than G = gap_factor x the usual
 *     interval, once >= GAP_MIN_INTERVALS intervals are known. By tick
 *     (stream time since the device was last heard from > G) or, if no tick
 *     caught it, on arrival (dt_ms > G: active then inactive). at_ms = last
 *     in-order ts + G. Clears on the next in-order sample.
 *   DEVICE_OFFLINE (warning): stream time since the device was last heard
 *     from > offline_after_s. By tick or on arrival. at_ms = that stream
 *     time + offline_after_s. Clears on the next sample, in order or not (the
 *     device is talking again); the clearing at_ms is stream time too.
 *   OUT_OF_ORDER_TIMESTAMP (info): dt_ms <= 0 on a sample that is not the
 *     first. The sample is unusable. Clears after N consecutive in-order
 *     samples.
 *   CLOCK_SKEW (warning): |ts - now| > clock_skew_s on skew_confirm_samples
 *     consecutive in-order samples whose offsets each differ from the
 *     previous one by < skew_tolerance() (or are all in the future). Clears after
 *     N consecutive samples with |offset| < clock_skew_s / 2. Samples stay
 *     usable. at_ms = the first sample of the confirming run.
 *   STALE_DATA (info): ts < now - stale_after_s and not explained by a
 *     skew (see "stale or skewed" below). Clears after N consecutive fresh
 *     (or explained) samples. Stale samples stay usable: a buffered upload
 *     is real data.
 * An out-of-order sample is judged only for IMPOSSIBLE, OUT_OF_ORDER and
 * OFFLINE: it says nothing about the device's interval, a flat run or its
 * clock offset, and letting it into those would let one replayed sample
 * break a skew run or a flat run.
 *
 * at_ms: on the sample (or tick) that activates a condition it is when the
 * episode began, as above. On later samples that merely confirm an active
 * condition, FLATLINE and CLOCK_SKEW repeat the episode start; IMPOSSIBLE,
 * OUT_OF_ORDER and STALE carry the sample's own ts (the 64-byte budget has
 * no room for three more start times, and the lifecycle dates an episode by
 * its OPEN). An inactive condition carries the sample's ts (stream time for
 * OFFLINE). */
#include "detect/quality.h"

#include "core/sat.h"

#include <math.h>
#include <string.h>

/* Good samples needed to clear IMPOSSIBLE, OUT_OF_ORDER, STALE and SKEW:
 * one good sample between bad ones is common (a loose strap, a retried
 * upload), three in a row means the cause went away. */
#define QUALITY_CLEAR_SAMPLES 3
/* Intervals seen before the usual interval is trusted for a gap verdict. */
#define GAP_MIN_INTERVALS 5
/* Weight of a new interval once warmed up (about the last 8 intervals). */
#define INTERVAL_ALPHA (1.0 / 8.0)
/* Two clock offsets this close are "the same offset": a skewed clock keeps
 * its offset up to stream-time jitter (the shard's median moves in steps of
 * other devices' intervals), while a buffered upload's offset changes by
 * about the device's interval with every sample. So the tolerance is a
 * fraction of the device's usual interval (once known), within bounds; a
 * fixed 10 s made a fast backlog of 5 s samples look like a skewed clock. */
#define SKEW_TOL_MAX_MS 10000.0
#define SKEW_TOL_MIN_MS 500.0
#define SKEW_TOL_SHARE 0.6

static double skew_tolerance(const vg_quality_state_t *s)
{
    if (s->intervals < GAP_MIN_INTERVALS)
        return SKEW_TOL_MAX_MS;
    double t = SKEW_TOL_SHARE * (double)s->interval_ms;
    return t < SKEW_TOL_MIN_MS ? SKEW_TOL_MIN_MS : t > SKEW_TOL_MAX_MS ? SKEW_TOL_MAX_MS : t;
}

enum {
    QF_SEEN = 1u << 0,  /* at least one sample */
    QF_IMP = 1u << 1,   /* SENSOR_IMPOSSIBLE_VALUE active */
    QF_FLAT = 1u << 2,  /* SENSOR_FLATLINE active */
    QF_GAP = 1u << 3,   /* DATA_GAP active */
    QF_OFF = 1u << 4,   /* DEVICE_OFFLINE active */
    QF_OOO = 1u << 5,   /* OUT_OF_ORDER_TIMESTAMP active */
    QF_STALE = 1u << 6, /* STALE_DATA active */
    QF_SKEW = 1u << 7,  /* CLOCK_SKEW active */
};

enum {
    QF2_INORDER = 1u << 0,       /* an in-order sample was seen: last_ts_ms, offset_ds, flat run valid */
    QF2_STALE_PENDING = 1u << 1, /* the last in-order sample was stale, verdict awaits the next one */
};

/* One good sample while the condition behind flag is active: *ok counts them
 * and QUALITY_CLEAR_SAMPLES in a row clear it (the rule IMPOSSIBLE,
 * OUT_OF_ORDER, STALE and SKEW share; a bad sample resets *ok at the caller). */
static inline void clear_after_good(vg_quality_state_t *s, uint8_t flag, uint8_t *ok)
{
    *ok = vg_sat_inc_u8(*ok);
    if (*ok >= QUALITY_CLEAR_SAMPLES) {
        s->flags &= (uint8_t)~flag;
        *ok = 0;
    }
}

static int64_t sec_ms(double s)
{
    return (int64_t)llround(s * 1000.0);
}

/* The gap limit in whole milliseconds; a silence must exceed it. */
static int64_t gap_limit_ms(const vg_detect_cfg_t *c, const vg_quality_state_t *s)
{
    return (int64_t)(c->gap_factor * (double)s->interval_ms);
}

static bool gap_ready(const vg_quality_state_t *s)
{
    return s->intervals >= GAP_MIN_INTERVALS;
}

/* A heart rate as float evidence: the value itself when it is a number a
 * float can hold (converting anything larger is undefined), else 0. */
static float ev_hr(double hr)
{
    return isfinite(hr) && fabs(hr) < 1e6 ? (float)hr : 0.0f;
}

/* Offsets are kept in tenths of a second so that a year either way fits in
 * 32 bits; beyond that they saturate, which still reads as "the same huge
 * offset" for a clock that is off by decades (a reset RTC). */
static int32_t offset_ds(int64_t off_ms)
{
    int64_t ds = off_ms / 100;
    if (ds > INT32_MAX)
        return INT32_MAX;
    if (ds < -INT32_MAX)
        return -INT32_MAX;
    return (int32_t)ds;
}

/* ---- SENSOR_IMPOSSIBLE_VALUE ----------------------------------------------------- */

static void judge_impossible(const vg_detect_cfg_t *c, vg_quality_state_t *s, const vg_sample_t *x, bool inorder,
                             bool *bad, vg_cond_t *out, int *n)
{
    double value = isfinite(x->hr) ? x->hr : 0.0, threshold = c->hr_max_plausible;
    bool imp = true;
    /* Written so that NaN fails every comparison into "impossible". The step
     * rate of an out-of-order sample is divided by a meaningless dt, so it
     * is not judged. */
    if (!(x->hr >= c->hr_min_plausible))
        threshold = c->hr_min_plausible;
    else if (!(x->hr <= c->hr_max_plausible))
        threshold = c->hr_max_plausible;
    else if (inorder && !(x->steps_per_min <= c->steps_max_per_min)) {
        value = isfinite(x->steps_per_min) ? x->steps_per_min : 0.0;
        threshold = c->steps_max_per_min;
    } else
        imp = false;
    *bad = imp;

    if (imp) {
        s->flags |= QF_IMP;
        s->imp_ok = 0;
    } else if (s->flags & QF_IMP) {
        clear_after_good(s, QF_IMP, &s->imp_ok);
    }
    vg_cond_t *k =
        vg_cond_put(out, n, VG_ALERT_IMPOSSIBLE_VALUE, s->flags & QF_IMP, VG_SEV_WARNING, x->ts_ms, value, threshold);
    k->samples = 1;
    k->min_hr = k->mean_hr = k->max_hr = ev_hr(x->hr);
}

/* ---- OUT_OF_ORDER_TIMESTAMP ------------------------------------------------------ */

static void judge_order(vg_quality_state_t *s, const vg_sample_t *x, bool inorder, vg_cond_t *out, int *n)
{
    if (!inorder) {
        s->flags |= QF_OOO;
        s->ooo_ok = 0;
    } else if (s->flags & QF_OOO) {
        clear_after_good(s, QF_OOO, &s->ooo_ok);
    }
    /* value: how far behind the previous in-order sample, in seconds
     * (0 for a duplicate timestamp). */
    double behind_s = inorder ? 0.0 : (double)x->dt_ms / 1000.0;
    vg_cond_put(out, n, VG_ALERT_OUT_OF_ORDER, s->flags & QF_OOO, VG_SEV_INFO, x->ts_ms, behind_s, 0.0);
}

/* ---- DEVICE_OFFLINE (arrival side; the tick side is vg_quality_tick) --------------- */

static void judge_offline(const vg_detect_cfg_t *c, vg_quality_state_t *s, const vg_sample_t *x, vg_cond_t *out, int *n)
{
    int64_t limit = sec_ms(c->offline_after_s);
    if (s->flags & QF_OFF) {
        s->flags &= (uint8_t)~QF_OFF;
    } else if (s->flags & QF_SEEN) {
        /* No tick came in time (a fast replay, or the processor was busy):
         * report the silence now, dated when it crossed the limit, so the
         * episode is the same whichever way it was noticed. */
        int64_t silent = vg_sat_sub_i64(x->now_ms, s->last_now_ms);
        if (silent > limit)
            vg_cond_put(out, n, VG_ALERT_DEVICE_OFFLINE, true, VG_SEV_WARNING, vg_sat_add_i64(s->last_now_ms, limit),
                        (double)silent / 1000.0, c->offline_after_s);
    }
    vg_cond_put(out, n, VG_ALERT_DEVICE_OFFLINE, false, VG_SEV_WARNING, x->now_ms, 0.0, c->offline_after_s);
}

/* ---- DATA_GAP and the usual interval ---------------------------------------------- */

static void judge_gap(const vg_detect_cfg_t *c, vg_quality_state_t *s, const vg_sample_t *x, vg_cond_t *out, int *n)
{
    int64_t limit = gap_limit_ms(c, s);
    if (s->flags & QF_GAP) {
        s->flags &= (uint8_t)~QF_GAP;
        vg_cond_put(out, n, VG_ALERT_DATA_GAP, false, VG_SEV_INFO, x->ts_ms, (double)x->dt_ms / 1000.0,
                    (double)limit / 1000.0);
    } else if (gap_ready(s)) {
        if (x->dt_ms > limit)
            vg_cond_put(out, n, VG_ALERT_DATA_GAP, true, VG_SEV_INFO, vg_sat_add_i64(s->last_ts_ms, limit),
                        (double)x->dt_ms / 1000.0, (double)limit / 1000.0);
        vg_cond_put(out, n, VG_ALERT_DATA_GAP, false, VG_SEV_INFO, x->ts_ms, (double)x->dt_ms / 1000.0,
                    (double)limit / 1000.0);
    }

    /* The usual interval: an exponentially weighted mean, each update
     * clamped to [half, double] the current estimate so that one long gap or
     * one burst moves it by at most an eighth. A device that really changes
     * its rate is followed within a few dozen samples (reporting gaps on the
     * way, which is what a slowed-down device is). The first intervals are
     * averaged plainly so that the start-up value is forgotten quickly. */
    double dt = (double)x->dt_ms;
    if (s->intervals == 0) {
        s->interval_ms = (float)dt;
    } else {
        double m = s->interval_ms;
        double d = dt < m / 2 ? m / 2 : dt > m * 2 ? m * 2 : dt;
        double a = 1.0 / (double)(s->intervals + 1);
        if (a < INTERVAL_ALPHA)
            a = INTERVAL_ALPHA;
        s->interval_ms = (float)(m + a * (d - m));
    }
    s->intervals = vg_sat_inc_u8(s->intervals);
}

/* ---- SENSOR_FLATLINE --------------------------------------------------------------- */

static void judge_flat(const vg_detect_cfg_t *c, vg_quality_state_t *s, const vg_sample_t *x, vg_cond_t *out, int *n)
{
    /* Exact equality on purpose: real heart rates wander by at least one
     * bpm within minutes, a stuck sensor repeats its last reading bit for
     * bit. NaN never equals anything, so it always starts a new run. */
    if ((s->flags2 & QF2_INORDER) && x->hr == s->flat_hr) {
        if (s->flat_n != UINT16_MAX)
            s->flat_n++;
    } else {
        /* A different value ends the run, and a flat line with it; the new
         * run of one sample cannot be flat yet (flatline_s >= 10 s). */
        s->flags &= (uint8_t)~QF_FLAT;
        s->flat_hr = x->hr;
        s->flat_start_ms = x->ts_ms;
        s->flat_n = 1;
    }
    int64_t dur = vg_sat_sub_i64(x->ts_ms, s->flat_start_ms);
    /* flat_n saturates at 65535, so a larger configured count means 65535 */
    double need = c->flatline_min_samples < UINT16_MAX ? c->flatline_min_samples : UINT16_MAX;
    if ((double)s->flat_n >= need && dur >= sec_ms(c->flatline_s))
        s->flags |= QF_FLAT;
    bool on = s->flags & QF_FLAT;
    vg_cond_t *k = vg_cond_put(out, n, VG_ALERT_FLATLINE, on, VG_SEV_WARNING, on ? s->flat_start_ms : x->ts_ms,
                               (double)dur / 1000.0, c->flatline_s);
    k->samples = s->flat_n;
    k->window_ms = dur;
    k->min_hr = k->mean_hr = k->max_hr = ev_hr(x->hr);
}

/* ---- CLOCK_SKEW and STALE_DATA ------------------------------------------------------ */

/* Stale or skewed? Both show up as event time far behind stream time. A
 * skewed clock keeps a constant offset; a buffered upload (data recorded
 * offline, sent later) has an offset that shrinks by the device's interval
 * with every sample as it catches up. The first stale sample after fresh
 * ones cannot be told apart, so its verdict waits for the next in-order
 * sample: consistent with it -> part of a skew run (explained, not stale);
 * anything else -> it was stale, dated at its own ts. A stale sample that
 * follows a stale one with an inconsistent offset is stale at once. */
static void judge_clock(const vg_detect_cfg_t *c, vg_quality_state_t *s, const vg_sample_t *x, vg_cond_t *out, int *n)
{
    int64_t off_ms = vg_sat_sub_i64(x->ts_ms, x->now_ms);
    double off = (double)offset_ds(off_ms) * 100.0; /* as stored, so equal inputs compare equal */
    double skew_lim = c->clock_skew_s * 1000.0, stale_lim = c->stale_after_s * 1000.0;
    bool have_prev = s->flags2 & QF2_INORDER;
    double prev = (double)s->offset_ds * 100.0;

    /* CLOCK_SKEW */
    bool cand = fabs(off) > skew_lim;
    bool cons = cand && have_prev && s->skew_n > 0 &&
                (fabs(off - prev) < skew_tolerance(s) || (off > skew_lim && prev > skew_lim));
    if (!cand)
        s->skew_n = 0;
    else if (cons)
        s->skew_n = vg_sat_inc_u8(s->skew_n);
    else {
        s->skew_n = 1;
        if (!(s->flags & QF_SKEW))
            s->skew_start_ms = x->ts_ms;
    }
    double confirm = c->skew_confirm_samples < 1 ? 1 : c->skew_confirm_samples;
    if (!(s->flags & QF_SKEW) && (double)s->skew_n >= confirm) {
        s->flags |= QF_SKEW;
        s->skew_ok = 0;
    } else if (s->flags & QF_SKEW) {
        if (fabs(off) < skew_lim / 2)
            clear_after_good(s, QF_SKEW, &s->skew_ok);
        else
            s->skew_ok = 0;
    }
    bool skew = s->flags & QF_SKEW;
    vg_cond_put(out, n, VG_ALERT_CLOCK_SKEW, skew, VG_SEV_WARNING, skew ? s->skew_start_ms : x->ts_ms, off / 1000.0,
                c->clock_skew_s);

    /* STALE_DATA */
    enum { FRESH, PENDING, STALE } verdict;
    bool stale_here = off < -stale_lim;
    bool prev_stale = have_prev && prev < -stale_lim;
    if (!stale_here || skew || s->skew_n >= 2)
        verdict = FRESH; /* fresh, or explained by a (confirmed or confirming) skew */
    else if (cand && s->skew_n == 1 && !prev_stale)
        verdict = PENDING;
    else
        verdict = STALE;

    int64_t at = x->ts_ms;
    if (s->flags2 & QF2_STALE_PENDING) {
        s->flags2 &= (uint8_t)~QF2_STALE_PENDING;
        /* skew_n >= 2 here means this sample continued the pending one's
         * offset: the pending sample began a skew run and was explained. */
        if (s->skew_n < 2) {
            if (!(s->flags & QF_STALE))
                at = s->last_ts_ms; /* the episode began at the pending sample */
            s->flags |= QF_STALE;
            s->stale_ok = 0;
        }
    }
    if (verdict == STALE) {
        s->flags |= QF_STALE;
        s->stale_ok = 0;
    } else if (verdict == PENDING) {
        s->flags2 |= QF2_STALE_PENDING;
    } else if (s->flags & QF_STALE) {
        clear_after_good(s, QF_STALE, &s->stale_ok);
    }
    vg_cond_put(out, n, VG_ALERT_STALE_DATA, s->flags & QF_STALE, VG_SEV_INFO, at, -off / 1000.0, c->stale_after_s);

    s->offset_ds = offset_ds(off_ms);
}

/* ---- entry points -------------------------------------------------------------------- */

int vg_quality_feed(const vg_detect_cfg_t *c, vg_quality_state_t *s, vg_sample_t *x, vg_cond_t *out)
{
    int n = 0;
    bool first = x->first || !(s->flags2 & QF2_INORDER);
    bool inorder = first || x->dt_ms > 0;
    bool impossible = false;

    judge_impossible(c, s, x, inorder, &impossible, out, &n);
    judge_order(s, x, inorder, out, &n);
    judge_offline(c, s, x, out, &n);
    /* Stream time only moves forward in the processor; max() keeps the
     * deadline monotonic even if a caller hands us an older now. */
    if (!(s->flags & QF_SEEN) || x->now_ms > s->last_now_ms)
        s->last_now_ms = x->now_ms;
    s->flags |= QF_SEEN;

    if (inorder) {
        if (!first)
            judge_gap(c, s, x, out, &n);
        judge_flat(c, s, x, out, &n);
        judge_clock(c, s, x, out, &n);
        s->last_ts_ms = x->ts_ms;
        s->flags2 |= QF2_INORDER;
    }
    x->usable = !impossible && inorder && !(s->flags & QF_FLAT);
    return n;
}

int vg_quality_tick(const vg_detect_cfg_t *c, vg_quality_state_t *s, int64_t now_ms, vg_cond_t *out)
{
    int n = 0;
    if (!(s->flags & QF_SEEN))
        return 0;
    int64_t silent = vg_sat_sub_i64(now_ms, s->last_now_ms);
    if (!(s->flags & QF_GAP) && gap_ready(s) && (s->flags2 & QF2_INORDER)) {
        int64_t limit = gap_limit_ms(c, s);
        if (silent > limit) {
            s->flags |= QF_GAP;
            vg_cond_put(out, &n, VG_ALERT_DATA_GAP, true, VG_SEV_INFO, vg_sat_add_i64(s->last_ts_ms, limit),
                        (double)silent / 1000.0, (double)limit / 1000.0);
        }
    }
    if (!(s->flags & QF_OFF)) {
        int64_t limit = sec_ms(c->offline_after_s);
        if (silent > limit) {
            s->flags |= QF_OFF;
            vg_cond_put(out, &n, VG_ALERT_DEVICE_OFFLINE, true, VG_SEV_WARNING, vg_sat_add_i64(s->last_now_ms, limit),
                        (double)silent / 1000.0, c->offline_after_s);
        }
    }
    return n;
}

int64_t vg_quality_deadline(const vg_detect_cfg_t *c, const vg_quality_state_t *s)
{
    int64_t d = INT64_MAX;
    if (!(s->flags & QF_SEEN))
        return d;
    if (!(s->flags & QF_GAP) && gap_ready(s) && (s->flags2 & QF2_INORDER))
        d = vg_sat_add_i64(vg_sat_add_i64(s->last_now_ms, gap_limit_ms(c, s)), 1);
    if (!(s->flags & QF_OFF)) {
        int64_t o = vg_sat_add_i64(vg_sat_add_i64(s->last_now_ms, sec_ms(c->offline_after_s)), 1);
        if (o < d)
            d = o;
    }
    return d;
}
