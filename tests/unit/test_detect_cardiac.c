/* test_detect_cardiac.c — unit tests for the per-device cardiac detectors:
 * sustained heart rate at rest (src/detect/rest.c), extreme heart rate
 * (src/detect/extreme.c) and sudden change (src/detect/sudden.c).
 *
 * Samples come from a small stream helper that fills vg_sample_t the way
 * devstate.c does (inactive from the step rate, at rest after
 * rest_after_activity_s of inactivity, usable). Edge cases: thresholds met
 * exactly, window boundaries to bucket accuracy, gaps, hysteresis without
 * flapping, exercise, long time jumps, high sample rates, and byte-identical
 * states for identical input (replay determinism). */
#include "core/err.h"
#include "detect/detect.h"
#include "detect/extreme.h"
#include "detect/rest.h"
#include "detect/sudden.h"
#include "vt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* A multiple of every bucket width used below (50 s, 600 s), so that bucket
 * boundaries in the tests are at T0 + k x width. */
#define T0 1764000000000LL
#define SEC 1000LL
#define MIN (60 * SEC)

/* ---- sample stream ------------------------------------------------------------- */

typedef struct {
    vg_detect_cfg_t c;
    int64_t prev_ts;
    int64_t quiet_since; /* ts of the last active sample: inactivity began after it */
    uint64_t seq;
    bool started;
} stream_t;

/* A stream whose wearer has been inactive for quiet_ms before its first
 * sample (a large value: at rest from the start). */
static void stream_init(stream_t *st, int64_t quiet_ms)
{
    memset(st, 0, sizeof *st);
    vg_detect_cfg_default(&st->c);
    st->quiet_since = T0 - quiet_ms;
}

static void cfg_set(stream_t *st, const char *name, double v)
{
    const char *why = NULL;
    VT_EQ_INT(vg_detect_cfg_set(&st->c, name, v, &why), VG_OK);
}

static vg_sample_t sample(stream_t *st, int64_t ts, double hr, double steps_per_min)
{
    vg_sample_t x;
    memset(&x, 0, sizeof x);
    x.hr = hr;
    x.ts_ms = ts;
    x.now_ms = ts;
    x.seq = ++st->seq;
    x.first = !st->started;
    x.dt_ms = st->started ? ts - st->prev_ts : 0;
    x.steps_per_min = x.dt_ms > 0 ? steps_per_min : 0;
    x.steps = (int64_t)(x.steps_per_min * (double)x.dt_ms / 60000.0);
    x.inactive = x.steps_per_min <= st->c.inactive_steps_per_min;
    if (!x.inactive)
        st->quiet_since = ts;
    x.inactive_ms = x.inactive ? ts - st->quiet_since : 0;
    x.at_rest = x.inactive && (double)x.inactive_ms >= st->c.rest_after_activity_s * 1000.0;
    x.usable = true;
    st->started = true;
    st->prev_ts = ts;
    return x;
}

static void rest_at(stream_t *st, vg_rest_state_t *s, int64_t ts, double hr, double spm, vg_cond_t out[2])
{
    vg_sample_t x = sample(st, ts, hr, spm);
    VT_EQ_INT(vg_rest_feed(&st->c, s, &x, out), 2);
}

static void extreme_at(stream_t *st, vg_extreme_state_t *s, int64_t ts, double hr, vg_cond_t out[2])
{
    vg_sample_t x = sample(st, ts, hr, 0);
    VT_EQ_INT(vg_extreme_feed(&st->c, s, &x, out), 2);
}

static void sudden_at(stream_t *st, vg_sudden_state_t *s, int64_t ts, double hr, double spm, vg_cond_t *out)
{
    vg_sample_t x = sample(st, ts, hr, spm);
    VT_EQ_INT(vg_sudden_feed(&st->c, s, &x, out), 1);
}

static bool near(double a, double b, double tol)
{
    return fabs(a - b) <= tol;
}

/* ---- common ---------------------------------------------------------------------- */

static void test_sizes_and_types(void)
{
    VT_CHECK(sizeof(vg_rest_state_t) <= 168);
    VT_CHECK(sizeof(vg_extreme_state_t) <= 32);
    VT_CHECK(sizeof(vg_sudden_state_t) <= 32);
    VT_EQ_INT(sizeof(vg_cond_t), 56); /* no implicit padding: conditions compare with memcmp */

    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t r;
    vg_extreme_state_t e;
    vg_sudden_state_t s;
    memset(&r, 0, sizeof r);
    memset(&e, 0, sizeof e);
    memset(&s, 0, sizeof s);
    vg_cond_t out[4];
    memset(out, 0xff, sizeof out);
    rest_at(&st, &r, T0, 70, 0, out);
    VT_EQ_INT(out[0].type, VG_ALERT_HIGH_HR_AT_REST);
    VT_EQ_INT(out[1].type, VG_ALERT_LOW_HR_AT_REST);
    VT_EQ_INT(out[2].type, 0xff); /* exactly two appended */
    extreme_at(&st, &e, T0 + SEC, 70, out);
    VT_EQ_INT(out[0].type, VG_ALERT_EXTREME_HIGH_HR);
    VT_EQ_INT(out[1].type, VG_ALERT_EXTREME_LOW_HR);
    sudden_at(&st, &s, T0 + 2 * SEC, 70, 0, out);
    VT_EQ_INT(out[0].type, VG_ALERT_SUDDEN_CHANGE);
    VT_EQ_INT(out[1].type, VG_ALERT_EXTREME_LOW_HR); /* untouched */
    VT_EQ_INT(out[0].active, 0);
    VT_EQ_INT(out[0].severity, VG_SEV_NONE);
}

/* ---- rest ------------------------------------------------------------------------ */

static void test_rest_fires_high(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    for (int i = 0; i < 9; i++) {
        rest_at(&st, &s, T0 + 3 * SEC + i * 10 * SEC, 130, 0, o);
        VT_EQ_INT(o[0].active, 0); /* fewer than rest_min_samples (10) never fire */
        VT_EQ_INT(o[0].at_ms, T0 + 3 * SEC + i * 10 * SEC);
    }
    VT_CHECK(o[0].value == 1.0);
    rest_at(&st, &s, T0 + 93 * SEC, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].severity, VG_SEV_WARNING);
    VT_EQ_INT(o[0].at_ms, T0 + 3 * SEC); /* the first at-rest sample beyond the threshold, exact */
    VT_EQ_INT(o[0].samples, 10);
    VT_CHECK(o[0].value == 1.0);
    VT_CHECK(o[0].threshold == 120.0);
    VT_CHECK(o[0].min_hr == 130.0f && o[0].max_hr == 130.0f && o[0].mean_hr == 130.0f);
    VT_CHECK(o[0].active_share == 0.0f);
    VT_EQ_INT(o[0].window_ms, 600 * SEC);
    VT_EQ_INT(o[1].type, VG_ALERT_LOW_HR_AT_REST);
    VT_EQ_INT(o[1].active, 0);
    VT_CHECK(o[1].value == 0.0);
    VT_CHECK(o[1].threshold == 40.0);
    /* at_ms stays put for the whole episode. */
    for (int i = 1; i <= 100; i++) {
        rest_at(&st, &s, T0 + 93 * SEC + i * 10 * SEC, 131, 0, o);
        VT_EQ_INT(o[0].active, 1);
        VT_EQ_INT(o[0].at_ms, T0 + 3 * SEC);
    }
}

static void test_rest_threshold_exact(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int fired = 0;
    for (int i = 0; i < 200; i++) {
        rest_at(&st, &s, T0 + i * 10 * SEC, 120, 0, o); /* 120 is not > 120 */
        fired += o[0].active;
        rest_at(&st, &s, T0 + i * 10 * SEC + 5 * SEC, 40, 0, o); /* 40 is not < 40 */
        fired += o[1].active;
    }
    VT_EQ_INT(fired, 0);
    VT_CHECK(o[0].value == 0.0 && o[1].value == 0.0);
}

static void test_rest_share_exact(void)
{
    /* 2 samples at 80, then 8 at 121: share exactly 0.8 on the 10th fires. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    for (int i = 0; i < 10; i++)
        rest_at(&st, &s, T0 + i * 10 * SEC, i < 2 ? 80 : 121, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_CHECK(o[0].value == 0.8);

    /* 4 at 80, then 121: 15/19 = 0.789 does not fire, 16/20 = 0.8 does (the
     * product 0.8 x 20 is not exact in binary). */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 19; i++) {
        rest_at(&st, &s, T0 + i * 10 * SEC, i < 4 ? 80 : 121, 0, o);
        VT_EQ_INT(o[0].active, 0);
    }
    rest_at(&st, &s, T0 + 190 * SEC, 121, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].samples, 20);

    /* Low side, mirrored: 39.9 counts, 40 does not. */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 10; i++)
        rest_at(&st, &s, T0 + i * 10 * SEC, i < 2 ? 40 : 39.9, 0, o);
    VT_EQ_INT(o[1].active, 1);
    VT_EQ_INT(o[0].active, 0);
}

static void test_rest_min_samples(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    cfg_set(&st, "rest_min_samples", 30);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    for (int i = 0; i < 29; i++) {
        rest_at(&st, &s, T0 + i * 10 * SEC, 135, 0, o);
        VT_EQ_INT(o[0].active, 0);
    }
    rest_at(&st, &s, T0 + 290 * SEC, 135, 0, o);
    VT_EQ_INT(o[0].active, 1);
}

static void test_rest_exercise_never(void)
{
    /* Running at 150 bpm for an hour: not at rest, never fires. */
    stream_t st;
    stream_init(&st, 0);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    int fired = 0;
    for (; t < T0 + 3600 * SEC; t += 5 * SEC) {
        rest_at(&st, &s, t, 150, 160, o);
        fired += o[0].active;
    }
    VT_EQ_INT(fired, 0);
    VT_CHECK(o[0].active_share == 1.0f);
    /* Stopping with the heart rate still at 125: not at rest for the first
     * 300 s, and the exercise samples stay in the denominator, so it fires
     * only once at-rest samples make up 80% of the window. */
    int64_t stop = t - 5 * SEC;
    int64_t first_active = 0;
    for (; t < stop + 1800 * SEC; t += 5 * SEC) {
        rest_at(&st, &s, t, 125, 0, o);
        if (o[0].active && !first_active)
            first_active = t;
    }
    VT_CHECK(first_active >= stop + 300 * SEC + 440 * SEC); /* 0.8 x (600 - one 50-s bucket) */
    VT_CHECK(first_active <= stop + 300 * SEC + 480 * SEC);
    VT_EQ_INT(o[0].active, 1);
}

static void test_rest_window_boundary(void)
{
    /* The window is the current 50-s bucket and the 11 before it. */
    stream_t st;
    vg_rest_state_t s;
    vg_cond_t o[2];
    struct {
        int64_t first, second;
        uint32_t samples;
    } cases[] = {
        {T0, T0 + 599999, 2},            /* 599.999 s old: inside */
        {T0, T0 + 600000, 1},            /* exactly rest_window_s old: outside */
        {T0 + 49999, T0 + 600000, 1},    /* 550.001 s old, but its bucket has left: bucket accuracy */
        {T0 + 50000, T0 + 649999, 2},    /* 599.999 s old, same buckets shifted */
        {T0 + 50000, T0 + 600000, 2},    /* 550 s old */
        {T0 + 49999, T0 + 599999, 2},    /* 550 s old, the boundary one bucket earlier */
        {T0, T0 + 10LL * 3600 * SEC, 1}, /* hours later */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stream_init(&st, 3600 * SEC);
        memset(&s, 0, sizeof s);
        rest_at(&st, &s, cases[i].first, 130, 0, o);
        rest_at(&st, &s, cases[i].second, 130, 0, o);
        VT_EQ_INT(o[0].samples, cases[i].samples);
    }

    /* Behaviour at the boundary: 10 samples at 130 in the first bucket,
     * then 70. The episode holds while they are in the window and clears on
     * the first sample after their bucket has left. */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 10; i++)
        rest_at(&st, &s, T0 + i * 4 * SEC, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    rest_at(&st, &s, T0 + 599 * SEC, 70, 0, o);
    VT_EQ_INT(o[0].active, 1); /* 10 of 11 beyond 115 */
    rest_at(&st, &s, T0 + 600 * SEC, 70, 0, o);
    VT_EQ_INT(o[0].active, 0);
    VT_EQ_INT(o[0].at_ms, T0 + 600 * SEC);
    VT_EQ_INT(o[0].samples, 2);
}

static void test_rest_gap_inside_window(void)
{
    /* 5 samples, a 5-minute gap, 5 more: the gap contributes nothing. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    for (int i = 0; i < 5; i++)
        rest_at(&st, &s, T0 + 7 * SEC + i * 10 * SEC, 128, 0, o);
    for (int i = 0; i < 4; i++) {
        rest_at(&st, &s, T0 + 347 * SEC + i * 10 * SEC, 128, 0, o);
        VT_EQ_INT(o[0].active, 0);
    }
    rest_at(&st, &s, T0 + 387 * SEC, 128, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].samples, 10);
    VT_EQ_INT(o[0].at_ms, T0 + 7 * SEC);
}

static void test_rest_hysteresis(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    int transitions = 0, was = 0;
    for (int i = 0; i < 60; i++, t += 10 * SEC) {
        rest_at(&st, &s, t, 130, 0, o);
        transitions += o[0].active != was;
        was = o[0].active;
    }
    VT_EQ_INT(was, 1);
    /* 117 is below the threshold but above 115: the episode holds for good. */
    for (int i = 0; i < 180; i++, t += 10 * SEC) {
        rest_at(&st, &s, t, 117, 0, o);
        transitions += o[0].active != was;
        was = o[0].active;
    }
    VT_EQ_INT(was, 1);
    VT_CHECK(o[0].value == 1.0); /* the hysteresis share, while active */
    /* At 110 it clears once fewer than half the window's samples are > 115.
     * Five samples per 50-s bucket, and the 110s start on a bucket boundary:
     * after j + 1 samples at 110 the window still holds 5 x (11 - j / 5)
     * above 115, so the 31st sample (25 above, 31 below) clears it and the
     * 30th (30 and 30: exactly half) does not. */
    int64_t clear_expected = t + 30 * 10 * SEC;
    int64_t cleared = 0;
    for (int i = 0; i < 60; i++, t += 10 * SEC) {
        rest_at(&st, &s, t, 110, 0, o);
        if (was && !o[0].active) {
            cleared = t;
            VT_EQ_INT(o[0].at_ms, t);
            VT_CHECK(o[0].value < 0.5);
        }
        transitions += o[0].active != was;
        was = o[0].active;
    }
    VT_EQ_INT(was, 0);
    VT_EQ_INT(cleared, clear_expected);
    /* Oscillating around 120 (half the samples above) never re-fires. */
    for (int i = 0; i < 360; i++, t += 10 * SEC) {
        rest_at(&st, &s, t, i % 2 ? 121 : 119, 0, o);
        transitions += o[0].active != was;
        was = o[0].active;
    }
    VT_EQ_INT(transitions, 2);
    VT_EQ_INT(was, 0);
}

static void test_rest_clear_share_exact(void)
{
    /* 10 samples at 130 fire; then samples at 110: with 10 of 20 beyond 115
     * the share is exactly 0.5, which is not below rest_clear_share; the
     * 21st sample clears it. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    for (int i = 0; i < 10; i++)
        rest_at(&st, &s, T0 + i * SEC, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    for (int i = 10; i < 20; i++)
        rest_at(&st, &s, T0 + i * SEC, 110, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_CHECK(o[0].value == 0.5);
    rest_at(&st, &s, T0 + 20 * SEC, 110, 0, o);
    VT_EQ_INT(o[0].active, 0);
}

static void test_rest_clears_whether_or_not_at_rest(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i < 30; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    /* Walking at 130: not at rest, but still beyond 115, so it holds. */
    for (int i = 0; i < 120; i++, t += 10 * SEC) {
        rest_at(&st, &s, t, 130, 100, o);
        VT_EQ_INT(o[0].active, 1);
    }
    VT_CHECK(o[0].active_share == 1.0f);
    /* Walking at 100: clears. */
    for (int i = 0; i < 60; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 100, 100, o);
    VT_EQ_INT(o[0].active, 0);
}

static void test_rest_low_and_severity(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i < 60; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 38, 0, o);
    VT_EQ_INT(o[1].active, 1);
    VT_EQ_INT(o[1].severity, VG_SEV_WARNING);
    VT_EQ_INT(o[0].active, 0);
    /* Mean <= 40 - 20 / 2 = 30: critical. 31 is not, 30 is. */
    for (int i = 0; i < 60; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 31, 0, o);
    VT_EQ_INT(o[1].severity, VG_SEV_WARNING);
    for (int i = 0; i < 60; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 30, 0, o);
    VT_EQ_INT(o[1].severity, VG_SEV_CRITICAL);
    VT_CHECK(o[1].mean_hr == 30.0f);
    /* 44 (< 45) holds it; 50 clears it. */
    for (int i = 0; i < 120; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 44, 0, o);
    VT_EQ_INT(o[1].active, 1);
    VT_EQ_INT(o[1].severity, VG_SEV_WARNING);
    for (int i = 0; i < 60; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 50, 0, o);
    VT_EQ_INT(o[1].active, 0);
    VT_EQ_INT(o[1].severity, VG_SEV_NONE);

    /* High: mean >= 120 + 20 is critical, 139 is not. */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 60; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 139, 0, o);
    VT_EQ_INT(o[0].severity, VG_SEV_WARNING);
    for (int i = 0; i < 60; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 140, 0, o);
    VT_EQ_INT(o[0].severity, VG_SEV_CRITICAL);
    VT_CHECK(o[0].min_hr == 140.0f && o[0].max_hr == 140.0f);
}

static void test_rest_long_time_jumps(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i < 20; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    /* Five hours later the window holds this one sample: 130 keeps it... */
    t += 5 * 3600 * SEC;
    rest_at(&st, &s, t, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].samples, 1);
    VT_EQ_INT(o[0].at_ms, T0);
    /* ... and 70 a day later clears it. */
    t += 24 * 3600 * SEC;
    rest_at(&st, &s, t, 70, 0, o);
    VT_EQ_INT(o[0].active, 0);
    VT_EQ_INT(o[0].samples, 1);
    /* Fifty years: no loop per missing bucket (this would not finish), and
     * a single sample never fires. */
    t += 50LL * 365 * 86400 * SEC;
    rest_at(&st, &s, t, 130, 0, o);
    VT_EQ_INT(o[0].active, 0);
    VT_EQ_INT(o[0].samples, 1);
    VT_EQ_INT(o[0].at_ms, t);
    /* Negative event times (a device clock that never got set) work too. */
    stream_init(&st, T0 + 3600 * SEC);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 12; i++)
        rest_at(&st, &s, -60 * SEC + i * 10 * SEC, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].samples, 12);
    VT_EQ_INT(o[0].at_ms, -60 * SEC);
}

static void test_rest_at_ms_bucket_granularity(void)
{
    /* Alternating 130 / 70 (share 0.5) for 15 minutes, then only 130: when
     * it fires, the first sample beyond the threshold has long left the
     * window, so at_ms is the start of the oldest bucket holding one. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0 + 3 * SEC;
    for (int i = 0; i < 90; i++, t += 10 * SEC)
        rest_at(&st, &s, t, i % 2 ? 70 : 130, 0, o);
    VT_EQ_INT(o[0].active, 0);
    int64_t fired = 0, at = 0;
    for (int i = 0; i < 90 && !fired; i++, t += 10 * SEC) {
        rest_at(&st, &s, t, 130, 0, o);
        if (o[0].active) {
            fired = t;
            at = o[0].at_ms;
        }
    }
    VT_CHECK(fired > 0);
    VT_EQ_INT((at - T0) % (50 * SEC), 0);
    VT_CHECK(at > fired - 600 * SEC && at <= fired - 550 * SEC);
}

static void test_rest_high_rates(void)
{
    /* 10 samples/s for 10 minutes at the default window: every bucket would
     * hold 500 samples. Counts become estimates, shares stay right. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i < 6000; i++, t += 100)
        rest_at(&st, &s, t, i % 2 ? 70 : 130, 0, o);
    VT_EQ_INT(o[0].active, 0);
    VT_CHECK(near(o[0].value, 0.5, 0.02));
    VT_CHECK(near(o[0].samples, 6000, 300));
    VT_CHECK(near(o[0].mean_hr, 100, 1));
    for (int i = 0; i < 6000; i++, t += 100)
        rest_at(&st, &s, t, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_CHECK(near(o[0].samples, 6000, 300));

    /* A two-hour window at one sample per second (600 per bucket), with a
     * minimum of 5000 samples: fires, and the estimate is close. */
    stream_init(&st, 3600 * SEC);
    cfg_set(&st, "rest_window_s", 7200);
    cfg_set(&st, "rest_min_samples", 5000);
    memset(&s, 0, sizeof s);
    t = T0;
    int64_t first_active = 0;
    for (int i = 0; i < 7200; i++, t += SEC) {
        rest_at(&st, &s, t, 125, 0, o);
        if (o[0].active && !first_active)
            first_active = t;
    }
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].window_ms, 7200 * SEC);
    VT_CHECK(near(o[0].samples, 7200, 360));
    VT_CHECK(first_active >= T0 + 4700 * SEC && first_active <= T0 + 5300 * SEC);
    VT_CHECK(o[0].at_ms == T0);
    /* The rate drops to one sample a minute: once the busy buckets have left,
     * counts are exact again. */
    for (int i = 0; i < 240; i++, t += MIN)
        rest_at(&st, &s, t, 125, 0, o);
    VT_EQ_INT(s.scale, 0);
    VT_EQ_INT(o[0].samples, 120);
}

static void test_rest_window_change(void)
{
    /* A new rest_window_s changes the bucket width: the ring starts over
     * (an open episode then follows the clearing rule on what comes next). */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i < 20; i++, t += 10 * SEC)
        rest_at(&st, &s, t, 130, 0, o);
    VT_EQ_INT(o[0].active, 1);
    cfg_set(&st, "rest_window_s", 1200);
    rest_at(&st, &s, t, 130, 0, o);
    VT_EQ_INT(o[0].samples, 1);
    VT_EQ_INT(o[0].window_ms, 1200 * SEC);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].at_ms, T0);
}

/* ---- extreme --------------------------------------------------------------------- */

static void test_extreme_threshold_exact(void)
{
    stream_t st;
    stream_init(&st, 0);
    vg_extreme_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int fired = 0;
    for (int i = 0; i < 120; i++) {
        extreme_at(&st, &s, T0 + i * SEC, i % 2 ? 180 : 35, o); /* neither is beyond */
        fired += o[0].active + o[1].active;
    }
    VT_EQ_INT(fired, 0);
    VT_EQ_INT(s.run, 0);
}

static void test_extreme_sustain_exact(void)
{
    stream_t st;
    stream_init(&st, 0);
    vg_extreme_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    extreme_at(&st, &s, T0, 181, o);
    VT_EQ_INT(o[0].active, 0);
    VT_EQ_INT(o[0].samples, 1);
    extreme_at(&st, &s, T0 + 10 * SEC, 190, o);
    extreme_at(&st, &s, T0 + 20 * SEC, 185, o);
    extreme_at(&st, &s, T0 + 29999, 181, o);
    VT_EQ_INT(o[0].active, 0); /* 29.999 s */
    extreme_at(&st, &s, T0 + 30 * SEC, 184, o);
    VT_EQ_INT(o[0].active, 1); /* exactly 30.000 s counts */
    VT_EQ_INT(o[0].severity, VG_SEV_CRITICAL);
    VT_EQ_INT(o[0].at_ms, T0);
    VT_EQ_INT(o[0].samples, 5);
    VT_EQ_INT(o[0].window_ms, 30 * SEC);
    VT_CHECK(o[0].min_hr == 181.0f && o[0].max_hr == 190.0f);
    VT_CHECK(near(o[0].mean_hr, (181 + 190 + 185 + 181 + 184) / 5.0, 1e-3));
    VT_CHECK(o[0].value == 184.0);
    VT_CHECK(o[0].threshold == 180.0);
    VT_EQ_INT(o[1].active, 0);
    VT_EQ_INT(o[1].samples, 0);
    VT_CHECK(o[1].threshold == 35.0);
}

static void test_extreme_run_broken(void)
{
    stream_t st;
    stream_init(&st, 0);
    vg_extreme_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    extreme_at(&st, &s, T0, 185, o);
    extreme_at(&st, &s, T0 + 20 * SEC, 185, o);
    extreme_at(&st, &s, T0 + 25 * SEC, 180, o); /* breaks the run */
    VT_EQ_INT(o[0].samples, 0);
    extreme_at(&st, &s, T0 + 30 * SEC, 185, o);
    VT_EQ_INT(o[0].active, 0);
    extreme_at(&st, &s, T0 + 59 * SEC, 185, o);
    VT_EQ_INT(o[0].active, 0);
    extreme_at(&st, &s, T0 + 60 * SEC, 185, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].at_ms, T0 + 30 * SEC);
}

static void test_extreme_gap(void)
{
    stream_t st;
    stream_init(&st, 0);
    vg_extreme_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    /* A gap longer than extreme_sustain_s breaks a run not yet active... */
    extreme_at(&st, &s, T0, 185, o);
    extreme_at(&st, &s, T0 + 30001, 185, o);
    VT_EQ_INT(o[0].active, 0);
    VT_EQ_INT(o[0].samples, 1); /* a new run from this sample */
    /* ... a gap of exactly extreme_sustain_s does not. */
    extreme_at(&st, &s, T0 + 60001, 185, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].at_ms, T0 + 30001);
    /* An active run holds across a gap of an hour. */
    extreme_at(&st, &s, T0 + 3600 * SEC, 186, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].at_ms, T0 + 30001);
    VT_EQ_INT(o[0].samples, 3);
}

static void test_extreme_hysteresis(void)
{
    stream_t st;
    stream_init(&st, 0);
    vg_extreme_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i <= 6; i++, t += 5 * SEC)
        extreme_at(&st, &s, t, 200, o);
    VT_EQ_INT(o[0].active, 1);
    /* 178 and 175.1 keep it active and join the run. */
    extreme_at(&st, &s, t, 178, o);
    t += 5 * SEC;
    VT_EQ_INT(o[0].active, 1);
    extreme_at(&st, &s, t, 175.1, o);
    t += 5 * SEC;
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].samples, 9);
    VT_CHECK(near(o[0].min_hr, 175.1, 1e-3));
    VT_CHECK(o[0].max_hr == 200.0f);
    /* 175 (= 180 - 5) clears it; the ended run is the evidence. */
    extreme_at(&st, &s, t, 175, o);
    VT_EQ_INT(o[0].active, 0);
    VT_EQ_INT(o[0].severity, VG_SEV_NONE);
    VT_EQ_INT(o[0].at_ms, t);
    VT_EQ_INT(o[0].samples, 9);
    VT_CHECK(o[0].value == 175.0);
    t += 5 * SEC;
    /* 181 starts a new run, not active yet: no flapping back. */
    extreme_at(&st, &s, t, 181, o);
    VT_EQ_INT(o[0].active, 0);
    VT_EQ_INT(o[0].samples, 1);
}

static void test_extreme_low(void)
{
    stream_t st;
    stream_init(&st, 0);
    vg_extreme_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i < 3; i++, t += 15 * SEC)
        extreme_at(&st, &s, t, 34.9, o);
    VT_EQ_INT(o[1].active, 1);
    VT_EQ_INT(o[1].at_ms, T0);
    VT_EQ_INT(o[1].severity, VG_SEV_CRITICAL);
    VT_EQ_INT(o[0].active, 0);
    extreme_at(&st, &s, t, 39.9, o); /* < 40 holds */
    t += 15 * SEC;
    VT_EQ_INT(o[1].active, 1);
    extreme_at(&st, &s, t, 40, o); /* >= 40 clears */
    VT_EQ_INT(o[1].active, 0);
    VT_EQ_INT(o[1].samples, 4);
}

static void test_extreme_high_to_low(void)
{
    stream_t st;
    stream_init(&st, 0);
    vg_extreme_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    extreme_at(&st, &s, T0, 200, o);
    extreme_at(&st, &s, T0 + 20 * SEC, 200, o);
    extreme_at(&st, &s, T0 + 40 * SEC, 200, o);
    VT_EQ_INT(o[0].active, 1);
    extreme_at(&st, &s, T0 + 41 * SEC, 30, o);
    VT_EQ_INT(o[0].active, 0); /* the high episode ends ... */
    VT_EQ_INT(o[0].samples, 3);
    VT_EQ_INT(o[1].active, 0); /* ... and a low run begins */
    VT_EQ_INT(o[1].samples, 1);
    extreme_at(&st, &s, T0 + 71 * SEC, 30, o);
    VT_EQ_INT(o[1].active, 1);
    VT_EQ_INT(o[1].at_ms, T0 + 41 * SEC);
    VT_EQ_INT(o[0].samples, 0);
}

/* ---- sudden ---------------------------------------------------------------------- */

/* Five minutes at 70 bpm, at rest, one sample every step_ms; returns the next ts. */
static int64_t sudden_settle(stream_t *st, vg_sudden_state_t *s, int64_t step_ms)
{
    vg_cond_t o;
    int64_t t = T0;
    for (; t < T0 + 5 * MIN; t += step_ms) {
        sudden_at(st, s, t, 70, 0, &o);
        VT_EQ_INT(o.active, 0);
    }
    return t;
}

static void test_sudden_step_fires(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t = sudden_settle(&st, &s, 5 * SEC);
    sudden_at(&st, &s, t, 110, 0, &o);
    VT_EQ_INT(o.active, 0); /* one sample is not confirmed */
    VT_CHECK(near(o.value, 40, 0.01));
    sudden_at(&st, &s, t + 5 * SEC, 111, 0, &o);
    VT_EQ_INT(o.active, 1);
    VT_EQ_INT(o.severity, VG_SEV_WARNING);
    VT_EQ_INT(o.at_ms, t);
    VT_CHECK(near(o.value, 41, 0.01)); /* the level is frozen while confirming */
    VT_CHECK(o.threshold == 30.0);
    VT_CHECK(near(o.mean_hr, 70, 0.01) && near(o.min_hr, 70, 0.01) && o.max_hr == 111.0f);
    VT_EQ_INT(o.samples, 2);
    VT_EQ_INT(o.window_ms, 60 * SEC);
    VT_CHECK(o.active_share == 0.0f);
}

static void test_sudden_ramp_30s(void)
{
    /* 70 -> 110 linearly over 30 s, sampled every 1, 5 and 10 s: fires. */
    int64_t steps[] = {1 * SEC, 5 * SEC, 10 * SEC};
    for (size_t k = 0; k < 3; k++) {
        stream_t st;
        stream_init(&st, 3600 * SEC);
        vg_sudden_state_t s;
        memset(&s, 0, sizeof s);
        vg_cond_t o;
        int64_t t0 = sudden_settle(&st, &s, steps[k]);
        int64_t fired = 0;
        for (int64_t t = t0; t < t0 + 3 * MIN; t += steps[k]) {
            double f = (double)(t - t0 + steps[k]) / (30.0 * SEC);
            sudden_at(&st, &s, t, 70 + 40 * (f > 1 ? 1 : f), 0, &o);
            if (o.active && !fired)
                fired = t;
        }
        VT_CHECK(fired > 0 && fired <= t0 + 40 * SEC);
    }
}

static void test_sudden_gradual_never(void)
{
    /* 70 -> 110 over 5 minutes (8 bpm/min), then level: never fires. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t0 = sudden_settle(&st, &s, 5 * SEC);
    int fired = 0;
    double maxj = 0;
    for (int64_t t = t0; t < t0 + 15 * MIN; t += 5 * SEC) {
        double f = (double)(t - t0) / (5.0 * MIN);
        sudden_at(&st, &s, t, 70 + 40 * (f > 1 ? 1 : f), 0, &o);
        fired += o.active;
        if (o.value > maxj)
            maxj = o.value;
    }
    VT_EQ_INT(fired, 0);
    VT_CHECK(maxj < 10);
}

static void test_sudden_glitch(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t = sudden_settle(&st, &s, 5 * SEC);
    int fired = 0;
    for (int i = 0; i < 20; i++, t += 5 * SEC) {
        sudden_at(&st, &s, t, i % 5 == 0 ? 130 : 70, 0, &o); /* a one-sample spike every 25 s */
        fired += o.active;
    }
    VT_EQ_INT(fired, 0);
    VT_CHECK(near(s.level, 70, 0.01)); /* unconfirmed spikes never reach the level */
    /* A spike up then a dip down are not two samples of the same jump. */
    sudden_at(&st, &s, t, 130, 0, &o);
    sudden_at(&st, &s, t + 5 * SEC, 20, 0, &o);
    VT_EQ_INT(o.active, 0);
    VT_EQ_INT(s.streak, 1);
}

static void test_sudden_explained_by_activity(void)
{
    /* The wearer starts running: 70 -> 120 with steps. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t = sudden_settle(&st, &s, 5 * SEC);
    int fired = 0;
    for (int i = 0; i < 60; i++, t += 5 * SEC) {
        sudden_at(&st, &s, t, 120, 150, &o);
        fired += o.active;
    }
    VT_CHECK(o.active_share == 1.0f);
    /* Stops, and within a minute the heart rate jumps again: still the
     * activity's (e.g. a last sprint logged late). */
    for (int i = 0; i < 6; i++, t += 5 * SEC) {
        sudden_at(&st, &s, t, 120, 0, &o);
        fired += o.active;
    }
    for (int i = 0; i < 4; i++, t += 5 * SEC) {
        sudden_at(&st, &s, t, 160, 0, &o);
        fired += o.active;
    }
    VT_EQ_INT(fired, 0);

    /* Recovery: running at 150, stops, falls to 95 within 30 s: no alert. */
    stream_init(&st, 0);
    memset(&s, 0, sizeof s);
    t = T0;
    for (int i = 0; i < 120; i++, t += 5 * SEC)
        sudden_at(&st, &s, t, 150, 160, &o);
    for (int i = 0; i < 60; i++, t += 5 * SEC) {
        sudden_at(&st, &s, t, i < 6 ? 150 - 55 * (i + 1) / 6.0 : 95, 0, &o);
        fired += o.active;
    }
    VT_EQ_INT(fired, 0);
}

static void test_sudden_unexplained(void)
{
    /* A rise two minutes after activity stopped is not the activity's. */
    stream_t st;
    stream_init(&st, 0);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t = T0;
    for (int i = 0; i < 60; i++, t += 5 * SEC)
        sudden_at(&st, &s, t, 80, 100, &o);
    for (int i = 0; i < 24; i++, t += 5 * SEC)
        sudden_at(&st, &s, t, 80, 0, &o);
    sudden_at(&st, &s, t, 125, 0, &o);
    sudden_at(&st, &s, t + 5 * SEC, 125, 0, &o);
    VT_EQ_INT(o.active, 1);
    VT_CHECK(o.value > 0);

    /* A fall at rest (no activity for an hour) fires. */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    t = T0;
    for (int i = 0; i < 60; i++, t += 5 * SEC)
        sudden_at(&st, &s, t, 100, 0, &o);
    sudden_at(&st, &s, t, 60, 0, &o);
    VT_EQ_INT(o.active, 0);
    sudden_at(&st, &s, t + 5 * SEC, 60, 0, &o);
    VT_EQ_INT(o.active, 1);
    VT_CHECK(near(o.value, -40, 0.01));
    VT_EQ_INT(o.at_ms, t);

    /* ... but three minutes after activity stopped it is still recovery. */
    stream_init(&st, 0);
    memset(&s, 0, sizeof s);
    t = T0;
    for (int i = 0; i < 60; i++, t += 5 * SEC)
        sudden_at(&st, &s, t, 100, 100, &o);
    for (int i = 0; i < 30; i++, t += 5 * SEC) /* 150 s inactive */
        sudden_at(&st, &s, t, 100, 0, &o);
    sudden_at(&st, &s, t, 60, 0, &o);
    sudden_at(&st, &s, t + 5 * SEC, 60, 0, &o);
    VT_EQ_INT(o.active, 0);
}

static void test_sudden_warmup(void)
{
    /* The first minute never fires, whatever happens. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int fired = 0;
    for (int i = 0; i < 12; i++) {
        sudden_at(&st, &s, T0 + i * 5 * SEC, i < 6 ? 60 : 140, 0, &o);
        fired += o.active;
    }
    VT_EQ_INT(fired, 0);
    VT_EQ_INT(o.severity, VG_SEV_NONE);
}

static void test_sudden_clear(void)
{
    /* A step to 110 that stays: active, the level follows at its one-minute
     * pace (about a minute to come within 15 bpm), then 120 s of calm clear
     * it — once. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t0 = sudden_settle(&st, &s, 5 * SEC);
    int64_t cleared = 0;
    int transitions = 0, was = 0;
    for (int64_t t = t0; t < t0 + 20 * MIN; t += 5 * SEC) {
        sudden_at(&st, &s, t, 110, 0, &o);
        if (was && !o.active) {
            cleared = t;
            VT_EQ_INT(o.at_ms, t);
        }
        if (o.active)
            VT_EQ_INT(o.at_ms, t0);
        transitions += o.active != was;
        was = o.active;
    }
    VT_EQ_INT(transitions, 2);
    /* |J| < 15 from about 60 s after the step (frozen for one sample), then 120 s. */
    VT_CHECK(cleared >= t0 + 180 * SEC && cleared <= t0 + 195 * SEC);

    /* Not calm, not cleared: heart rate bouncing 70 / 110 every 20 s keeps
     * |J| at or above 15 now and then, which restarts the calm clock. */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    int64_t t = sudden_settle(&st, &s, 5 * SEC);
    sudden_at(&st, &s, t, 120, 0, &o);
    sudden_at(&st, &s, t + 5 * SEC, 120, 0, &o);
    VT_EQ_INT(o.active, 1);
    t += 10 * SEC;
    for (int i = 0; i < 240; i++, t += 5 * SEC) {
        sudden_at(&st, &s, t, (i / 4) % 2 ? 70 : 110, 0, &o);
        VT_EQ_INT(o.active, 1);
    }
}

static void test_sudden_severity_and_confirm(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    cfg_set(&st, "sudden_confirm_samples", 3);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t = sudden_settle(&st, &s, 5 * SEC);
    sudden_at(&st, &s, t, 140, 0, &o);
    VT_EQ_INT(o.active, 0);
    sudden_at(&st, &s, t + 5 * SEC, 140, 0, &o);
    VT_EQ_INT(o.active, 0);
    sudden_at(&st, &s, t + 10 * SEC, 140, 0, &o);
    VT_EQ_INT(o.active, 1);
    VT_EQ_INT(o.severity, VG_SEV_CRITICAL); /* 70 >= 2 x 30 */
    VT_EQ_INT(o.at_ms, t);

    /* 59 is a warning; the threshold is configurable. */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    t = sudden_settle(&st, &s, 5 * SEC);
    sudden_at(&st, &s, t, 129, 0, &o);
    sudden_at(&st, &s, t + 5 * SEC, 129, 0, &o);
    VT_EQ_INT(o.active, 1);
    VT_EQ_INT(o.severity, VG_SEV_WARNING);
    stream_init(&st, 3600 * SEC);
    cfg_set(&st, "sudden_bpm_per_min", 50);
    memset(&s, 0, sizeof s);
    t = sudden_settle(&st, &s, 5 * SEC);
    sudden_at(&st, &s, t, 119, 0, &o);
    sudden_at(&st, &s, t + 5 * SEC, 119, 0, &o);
    VT_EQ_INT(o.active, 0);
}

static void test_sudden_long_gap(void)
{
    /* After two hours without data the level restarts: a different heart
     * rate is no jump, and the next minute is a new warm-up. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_sudden_state_t s;
    memset(&s, 0, sizeof s);
    vg_cond_t o;
    int64_t t = sudden_settle(&st, &s, 5 * SEC);
    t += 2 * 3600 * SEC;
    int fired = 0;
    for (int i = 0; i < 12; i++, t += 5 * SEC) {
        sudden_at(&st, &s, t, i < 2 ? 110 : 60, 0, &o);
        fired += o.active;
    }
    VT_EQ_INT(fired, 0);
    VT_CHECK(s.warm_ms == 55 * SEC); /* counted from the first sample back */
    /* An open episode stays open across the gap, and clears after 120 s of
     * calm from the first sample back. */
    stream_init(&st, 3600 * SEC);
    memset(&s, 0, sizeof s);
    t = sudden_settle(&st, &s, 5 * SEC);
    sudden_at(&st, &s, t, 120, 0, &o);
    sudden_at(&st, &s, t + 5 * SEC, 120, 0, &o);
    VT_EQ_INT(o.active, 1);
    t += 3 * 3600 * SEC;
    sudden_at(&st, &s, t, 80, 0, &o);
    VT_EQ_INT(o.active, 1);
    sudden_at(&st, &s, t + 115 * SEC, 80, 0, &o);
    VT_EQ_INT(o.active, 1);
    sudden_at(&st, &s, t + 120 * SEC, 80, 0, &o);
    VT_EQ_INT(o.active, 0);
}

static void test_not_a_number(void)
{
    /* quality.c marks NaN unusable; if one slips through it changes nothing. */
    stream_t st;
    stream_init(&st, 3600 * SEC);
    vg_rest_state_t r;
    vg_extreme_state_t e, e2;
    vg_sudden_state_t s, s2;
    memset(&r, 0, sizeof r);
    memset(&e, 0, sizeof e);
    memset(&s, 0, sizeof s);
    vg_cond_t o[2];
    int64_t t = T0;
    for (int i = 0; i < 12; i++, t += 5 * SEC) {
        rest_at(&st, &r, t, 190, 0, o);
        extreme_at(&st, &e, t, 190, o);
        sudden_at(&st, &s, t, 190, 0, o);
    }
    VT_EQ_INT(e.active, 1);
    memcpy(&e2, &e, sizeof e);
    memcpy(&s2, &s, sizeof s);
    rest_at(&st, &r, t, NAN, 0, o);
    VT_EQ_INT(o[0].active, 1);
    VT_EQ_INT(o[0].samples, 12);
    extreme_at(&st, &e, t, NAN, o);
    VT_EQ_INT(o[0].active, 1);
    VT_CHECK(memcmp(&e, &e2, sizeof e) == 0);
    sudden_at(&st, &s, t, INFINITY, 0, o);
    VT_EQ_INT(o[0].active, 0);
    VT_CHECK(memcmp(&s, &s2, sizeof s) == 0);
    VT_CHECK(isfinite(s.level));
}

/* ---- determinism ----------------------------------------------------------------- */

typedef struct {
    vg_rest_state_t rest;
    vg_extreme_state_t extreme;
    vg_sudden_state_t sudden;
} trio_t;

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    return *x >> 33;
}

/* A messy stream: resting, exercise, spikes, extremes, gaps of seconds to hours. */
static vg_sample_t messy(stream_t *st, uint64_t *rng, int64_t *t)
{
    uint64_t r = lcg(rng);
    int64_t dt = 1 * SEC + (int64_t)(r % 10) * SEC;
    if (r % 97 == 0)
        dt += (int64_t)(lcg(rng) % (6 * 3600)) * SEC;
    *t += dt;
    int phase = (int)((*t / (20 * MIN)) % 5);
    double base = phase == 0 ? 60 : phase == 1 ? 130 : phase == 2 ? 150 : phase == 3 ? 190 : 33;
    double hr = base + (double)(lcg(rng) % 200) / 20.0 - 5.0;
    if (lcg(rng) % 50 == 0)
        hr += 45;
    double spm = phase == 2 ? 140 : (lcg(rng) % 30 == 0 ? 40 : 0);
    return sample(st, *t, hr, spm);
}

static void feed_trio(const vg_detect_cfg_t *c, trio_t *z, const vg_sample_t *x, vg_cond_t out[5])
{
    VT_EQ_INT(vg_rest_feed(c, &z->rest, x, out), 2);
    VT_EQ_INT(vg_extreme_feed(c, &z->extreme, x, out + 2), 2);
    VT_EQ_INT(vg_sudden_feed(c, &z->sudden, x, out + 4), 1);
}

static void test_determinism(void)
{
    stream_t st;
    stream_init(&st, 3600 * SEC);
    trio_t a, b, ckpt;
    memset(&a, 0, sizeof a);
    memset(&b, 0xAB, sizeof b); /* zeroed field by field, not with memset: padding must not matter */
    b.rest = (vg_rest_state_t){0};
    b.extreme = (vg_extreme_state_t){0};
    b.sudden = (vg_sudden_state_t){0};
    uint64_t rng = 42;
    int64_t t = T0;
    int actives[5] = {0};
    int mismatches = 0;
    for (int i = 0; i < 40000; i++) {
        vg_sample_t x = messy(&st, &rng, &t);
        vg_cond_t oa[5], ob[5];
        feed_trio(&st.c, &a, &x, oa);
        feed_trio(&st.c, &b, &x, ob);
        mismatches += memcmp(oa, ob, sizeof oa) != 0;
        mismatches += memcmp(&a, &b, sizeof a) != 0;
        for (int k = 0; k < 5; k++)
            actives[k] += oa[k].active;
        if (i == 20000)
            memcpy(&ckpt, &a, sizeof a); /* a checkpoint: a byte copy */
    }
    VT_EQ_INT(mismatches, 0);
    for (int k = 0; k < 5; k++)
        VT_CHECK(actives[k] > 0); /* the stream exercised every condition */

    /* Replaying from the checkpoint reproduces the rest byte for byte. */
    stream_init(&st, 3600 * SEC);
    rng = 42;
    t = T0;
    trio_t c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < 40000; i++) {
        vg_sample_t x = messy(&st, &rng, &t);
        vg_cond_t oc[5];
        if (i <= 20000) {
            if (i == 20000)
                memcpy(&c, &ckpt, sizeof c);
            continue;
        }
        feed_trio(&st.c, &c, &x, oc);
    }
    VT_CHECK(memcmp(&c, &a, sizeof a) == 0);
}

int main(void)
{
    VT_RUN(test_sizes_and_types);
    VT_RUN(test_rest_fires_high);
    VT_RUN(test_rest_threshold_exact);
    VT_RUN(test_rest_share_exact);
    VT_RUN(test_rest_min_samples);
    VT_RUN(test_rest_exercise_never);
    VT_RUN(test_rest_window_boundary);
    VT_RUN(test_rest_gap_inside_window);
    VT_RUN(test_rest_hysteresis);
    VT_RUN(test_rest_clear_share_exact);
    VT_RUN(test_rest_clears_whether_or_not_at_rest);
    VT_RUN(test_rest_low_and_severity);
    VT_RUN(test_rest_long_time_jumps);
    VT_RUN(test_rest_at_ms_bucket_granularity);
    VT_RUN(test_rest_high_rates);
    VT_RUN(test_rest_window_change);
    VT_RUN(test_extreme_threshold_exact);
    VT_RUN(test_extreme_sustain_exact);
    VT_RUN(test_extreme_run_broken);
    VT_RUN(test_extreme_gap);
    VT_RUN(test_extreme_hysteresis);
    VT_RUN(test_extreme_low);
    VT_RUN(test_extreme_high_to_low);
    VT_RUN(test_sudden_step_fires);
    VT_RUN(test_sudden_ramp_30s);
    VT_RUN(test_sudden_gradual_never);
    VT_RUN(test_sudden_glitch);
    VT_RUN(test_sudden_explained_by_activity);
    VT_RUN(test_sudden_unexplained);
    VT_RUN(test_sudden_warmup);
    VT_RUN(test_sudden_clear);
    VT_RUN(test_sudden_severity_and_confirm);
    VT_RUN(test_sudden_long_gap);
    VT_RUN(test_not_a_number);
    VT_RUN(test_determinism);
    return VT_DONE();
}
