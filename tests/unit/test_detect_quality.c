/* test_detect_quality.c — unit tests for the data-quality detector
 * (src/detect/quality.c): each rule at and around its threshold, the
 * hysteresis of every clearing rule, gaps noticed by tick and on arrival,
 * offline devices, out-of-order and duplicate timestamps, stale data
 * (a buffered upload) against clock skew (a constant offset), future
 * timestamps, flat lines, long time jumps, and determinism (the same input
 * gives a byte-identical state). */
#include "detect/detect.h"
#include "detect/quality.h"
#include "vt.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define T0 1700006400000LL /* 2023-11-15T00:00:00Z */
#define MIN_MS 60000LL

/* One simulated device as devstate.c would present it: the previous
 * in-order timestamp (never moved back), first, dt and the step rate. */
typedef struct {
    vg_detect_cfg_t c;
    vg_quality_state_t s;
    int64_t prev_ts;
    bool any;
    vg_sample_t x;
    vg_cond_t out[VG_QUALITY_MAX_CONDS];
    int n;
} qdev_t;

static void qdev_init(qdev_t *d)
{
    memset(d, 0, sizeof *d);
    vg_detect_cfg_default(&d->c);
}

static int qfeed_steps(qdev_t *d, int64_t ts, int64_t now, double hr, int64_t steps)
{
    vg_sample_t *x = &d->x;
    memset(x, 0, sizeof *x);
    x->hr = hr;
    x->steps = steps;
    x->ts_ms = ts;
    x->now_ms = now;
    x->first = !d->any;
    x->dt_ms = d->any ? ts - d->prev_ts : 0;
    x->steps_per_min = x->dt_ms ? (double)steps * 60000.0 / (double)x->dt_ms : 0.0;
    x->usable = true;
    if (!d->any || ts > d->prev_ts)
        d->prev_ts = ts;
    d->any = true;
    memset(d->out, 0xa5, sizeof d->out);
    d->n = vg_quality_feed(&d->c, &d->s, x, d->out);
    VT_CHECK(d->n >= 0 && d->n <= VG_QUALITY_MAX_CONDS);
    return d->n;
}

static int qfeed(qdev_t *d, int64_t ts, int64_t now, double hr)
{
    return qfeed_steps(d, ts, now, hr, 0);
}

/* Advances *ts by step and feeds a sample with stream time *ts + now_off. */
static int qnext(qdev_t *d, int64_t *ts, int64_t step, int64_t now_off, double hr)
{
    *ts += step;
    return qfeed(d, *ts, *ts + now_off, hr);
}

static int qnext_steps(qdev_t *d, int64_t *ts, int64_t step, double hr, int64_t steps)
{
    *ts += step;
    return qfeed_steps(d, *ts, *ts, hr, steps);
}

/* The last condition of type t in the last output, or NULL. */
static const vg_cond_t *last_of(const qdev_t *d, vg_alert_type_t t)
{
    const vg_cond_t *k = NULL;
    for (int i = 0; i < d->n; i++)
        if (d->out[i].type == t)
            k = &d->out[i];
    return k;
}

static int count_of(const qdev_t *d, vg_alert_type_t t)
{
    int n = 0;
    for (int i = 0; i < d->n; i++)
        n += d->out[i].type == t;
    return n;
}

/* 1: reported active, 0: reported inactive, -1: not reported. */
static int state_of(const qdev_t *d, vg_alert_type_t t)
{
    const vg_cond_t *k = last_of(d, t);
    return k ? k->active : -1;
}

static bool none_active(const qdev_t *d)
{
    for (int i = 0; i < d->n; i++)
        if (d->out[i].active)
            return false;
    return true;
}

/* n regular samples, every interval ms, stream time = event time. */
static void regular(qdev_t *d, int64_t *ts, int n, int64_t interval, double hr)
{
    for (int i = 0; i < n; i++) {
        qfeed(d, *ts, *ts, hr + (i % 7)); /* varying, so never flat */
        *ts += interval;
    }
}

static void test_quality_state_size(void)
{
    VT_CHECK(sizeof(vg_quality_state_t) <= 64);
    vg_quality_state_t z;
    memset(&z, 0, sizeof z);
    vg_detect_cfg_t c;
    vg_detect_cfg_default(&c);
    VT_EQ_INT(vg_quality_deadline(&c, &z), INT64_MAX); /* never heard from: no timer */
    vg_cond_t out[VG_QUALITY_MAX_CONDS];
    VT_EQ_INT(vg_quality_tick(&c, &z, T0 + 86400000LL * 365, out), 0);
}

static void test_quality_clean(void)
{
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    for (int i = 0; i < 100; i++) {
        int n = qfeed(&d, ts, ts + 2000, 60 + (i % 5));
        VT_CHECK(d.x.usable);
        VT_CHECK(none_active(&d));
        /* Every type evaluated, once each; DATA_GAP only once the usual
         * interval is known (after 5 intervals). */
        VT_EQ_INT(count_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 1);
        VT_EQ_INT(count_of(&d, VG_ALERT_OUT_OF_ORDER), 1);
        VT_EQ_INT(count_of(&d, VG_ALERT_DEVICE_OFFLINE), 1);
        VT_EQ_INT(count_of(&d, VG_ALERT_FLATLINE), 1);
        VT_EQ_INT(count_of(&d, VG_ALERT_STALE_DATA), 1);
        VT_EQ_INT(count_of(&d, VG_ALERT_CLOCK_SKEW), 1);
        VT_EQ_INT(count_of(&d, VG_ALERT_DATA_GAP), i >= 6 ? 1 : 0);
        VT_EQ_INT(n, i >= 6 ? 7 : 6);
        ts += MIN_MS;
    }
    VT_CHECK(d.s.interval_ms == 60000.0f);
    /* The next tick that could matter: 3 x 60 s after the last sample's
     * stream time, plus one millisecond (a gap must exceed the limit). */
    VT_EQ_INT(vg_quality_deadline(&d.c, &d.s), d.x.now_ms + 180001);
}

static void test_quality_impossible(void)
{
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;

    qfeed(&d, ts, ts, 25.0); /* exactly at the limits: plausible */
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 0);
    VT_CHECK(d.x.usable);
    qnext(&d, &ts, MIN_MS, 0, 250.0);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 0);
    qnext_steps(&d, &ts, MIN_MS, 100, 400); /* exactly 400 steps/min */
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 0);

    qnext(&d, &ts, MIN_MS, 0, 24.9);
    const vg_cond_t *k = last_of(&d, VG_ALERT_IMPOSSIBLE_VALUE);
    VT_REQUIRE(k != NULL);
    VT_EQ_INT(k->active, 1);
    VT_EQ_INT(k->severity, VG_SEV_WARNING);
    VT_EQ_INT(k->at_ms, ts);
    VT_CHECK(fabs(k->value - 24.9) < 1e-9);
    VT_CHECK(k->threshold == 25.0);
    VT_CHECK(!d.x.usable);

    /* Hysteresis: two plausible samples, then another impossible one, then
     * it takes three plausible samples in a row to clear. */
    qnext(&d, &ts, MIN_MS, 0, 70);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 1);
    VT_CHECK(d.x.usable); /* a plausible sample is usable while the condition holds */
    qnext(&d, &ts, MIN_MS, 0, 71);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 1);
    qnext(&d, &ts, MIN_MS, 0, 250.1);
    k = last_of(&d, VG_ALERT_IMPOSSIBLE_VALUE);
    VT_EQ_INT(k->active, 1);
    VT_CHECK(k->threshold == 250.0);
    VT_CHECK(!d.x.usable);
    qnext(&d, &ts, MIN_MS, 0, 70);
    qnext(&d, &ts, MIN_MS, 0, 71);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 1);
    qnext(&d, &ts, MIN_MS, 0, 72);
    k = last_of(&d, VG_ALERT_IMPOSSIBLE_VALUE);
    VT_EQ_INT(k->active, 0);
    VT_EQ_INT(k->at_ms, ts);

    /* Step rate above the limit, with a plausible heart rate. */
    qnext_steps(&d, &ts, MIN_MS, 100, 401);
    k = last_of(&d, VG_ALERT_IMPOSSIBLE_VALUE);
    VT_EQ_INT(k->active, 1);
    VT_CHECK(k->value == 401.0);
    VT_CHECK(k->threshold == 400.0);
    VT_CHECK(!d.x.usable);

    /* NaN is impossible, and the evidence stays finite (it becomes JSON). */
    qnext(&d, &ts, MIN_MS, 0, NAN);
    k = last_of(&d, VG_ALERT_IMPOSSIBLE_VALUE);
    VT_EQ_INT(k->active, 1);
    VT_CHECK(isfinite(k->value));
    VT_CHECK(!d.x.usable);
    for (int i = 0; i < VG_QUALITY_MAX_CONDS && i < d.n; i++)
        VT_CHECK(isfinite(d.out[i].value) && isfinite(d.out[i].threshold));

    /* Absurd values are just impossible (and harmless under UBSan). */
    qnext(&d, &ts, MIN_MS, 0, 1e300);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 1);
    qnext(&d, &ts, MIN_MS, 0, -INFINITY);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 1);
    VT_CHECK(!d.x.usable);

    /* A custom limit is honoured. */
    qdev_t e;
    qdev_init(&e);
    VT_EQ_INT(vg_detect_cfg_set(&e.c, "hr_min_plausible", 40, NULL), 0);
    qfeed(&e, T0, T0, 39);
    VT_EQ_INT(state_of(&e, VG_ALERT_IMPOSSIBLE_VALUE), 1);
}

static void test_quality_flatline_count_bound(void)
{
    /* 60 s apart: 600 s are reached at the 11th sample, 20 samples at the
     * 20th (1140 s): the sample count decides. */
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 10, MIN_MS, 60);
    int64_t start = ts;
    for (int i = 1; i <= 19; i++) {
        qfeed(&d, ts, ts, 72.0);
        VT_EQ_INT(state_of(&d, VG_ALERT_FLATLINE), 0);
        VT_CHECK(d.x.usable); /* not confirmed yet: usable */
        ts += MIN_MS;
    }
    qfeed(&d, ts, ts, 72.0); /* the 20th */
    const vg_cond_t *k = last_of(&d, VG_ALERT_FLATLINE);
    VT_REQUIRE(k != NULL);
    VT_EQ_INT(k->active, 1);
    VT_EQ_INT(k->severity, VG_SEV_WARNING);
    VT_EQ_INT(k->at_ms, start);
    VT_EQ_INT(k->samples, 20);
    VT_CHECK(k->value == 1140.0);
    VT_CHECK(k->threshold == 600.0);
    VT_CHECK(!d.x.usable);
    ts += MIN_MS;
    qfeed(&d, ts, ts, 72.0);
    VT_EQ_INT(state_of(&d, VG_ALERT_FLATLINE), 1);
    VT_EQ_INT(last_of(&d, VG_ALERT_FLATLINE)->at_ms, start);
    VT_CHECK(!d.x.usable);

    /* An out-of-order sample neither breaks the run nor is judged for it. */
    qfeed(&d, ts - 30000, ts, 90.0);
    VT_EQ_INT(state_of(&d, VG_ALERT_FLATLINE), -1);
    ts += MIN_MS;
    qfeed(&d, ts, ts, 72.0);
    VT_EQ_INT(state_of(&d, VG_ALERT_FLATLINE), 1);

    /* The first different value clears it and is usable. */
    ts += MIN_MS;
    qfeed(&d, ts, ts, 72.5);
    k = last_of(&d, VG_ALERT_FLATLINE);
    VT_EQ_INT(k->active, 0);
    VT_EQ_INT(k->at_ms, ts);
    VT_CHECK(d.x.usable);
    VT_EQ_INT(count_of(&d, VG_ALERT_FLATLINE), 1);
}

static void test_quality_flatline_time_bound(void)
{
    /* 30 s apart: 20 samples span only 570 s; the 21st reaches exactly
     * 600 s: the duration decides, and exactly 600 s is enough. */
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 10, 30000, 60);
    int64_t start = ts;
    for (int i = 1; i <= 20; i++) {
        qfeed(&d, ts, ts, 65.0);
        VT_EQ_INT(state_of(&d, VG_ALERT_FLATLINE), 0);
        ts += 30000;
    }
    qfeed(&d, ts, ts, 65.0);
    VT_EQ_INT(state_of(&d, VG_ALERT_FLATLINE), 1);
    VT_EQ_INT(last_of(&d, VG_ALERT_FLATLINE)->at_ms, start);
    VT_CHECK(last_of(&d, VG_ALERT_FLATLINE)->value == 600.0);
    VT_CHECK(!d.x.usable);

    /* Values that differ by a hair are not a flat line. */
    qdev_t e;
    qdev_init(&e);
    ts = T0;
    for (int i = 0; i < 100; i++, ts += 30000) {
        qfeed(&e, ts, ts, i % 2 ? 65.0 : 65.0000001);
        VT_EQ_INT(state_of(&e, VG_ALERT_FLATLINE), 0);
    }
}

static void test_quality_gap_by_tick(void)
{
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 6, MIN_MS, 60); /* 5 intervals: enough to judge */
    int64_t last_ts = ts - MIN_MS, last_now = d.x.now_ms;
    vg_cond_t out[VG_QUALITY_MAX_CONDS];

    VT_EQ_INT(vg_quality_deadline(&d.c, &d.s), last_now + 180001);
    VT_EQ_INT(vg_quality_tick(&d.c, &d.s, last_now + 180000, out), 0); /* exactly 3x: not yet */
    VT_EQ_INT(vg_quality_tick(&d.c, &d.s, last_now + 180001, out), 1);
    VT_EQ_INT(out[0].type, VG_ALERT_DATA_GAP);
    VT_EQ_INT(out[0].active, 1);
    VT_EQ_INT(out[0].severity, VG_SEV_INFO);
    VT_EQ_INT(out[0].at_ms, last_ts + 180000);
    VT_CHECK(out[0].threshold == 180.0);
    VT_EQ_INT(vg_quality_tick(&d.c, &d.s, last_now + 200000, out), 0); /* reported once */

    /* Next: offline at 900 s. */
    VT_EQ_INT(vg_quality_deadline(&d.c, &d.s), last_now + 900001);
    VT_EQ_INT(vg_quality_tick(&d.c, &d.s, last_now + 900000, out), 0);
    VT_EQ_INT(vg_quality_tick(&d.c, &d.s, last_now + 900001, out), 1);
    VT_EQ_INT(out[0].type, VG_ALERT_DEVICE_OFFLINE);
    VT_EQ_INT(out[0].active, 1);
    VT_EQ_INT(out[0].severity, VG_SEV_WARNING);
    VT_EQ_INT(out[0].at_ms, last_now + 900000);
    VT_CHECK(out[0].threshold == 900.0);
    VT_EQ_INT(vg_quality_deadline(&d.c, &d.s), INT64_MAX);
    VT_EQ_INT(vg_quality_tick(&d.c, &d.s, last_now + 9000000, out), 0);

    /* The device comes back: both clear, once each, and are not re-opened. */
    ts = last_ts + 1000000;
    qfeed(&d, ts, ts, 61);
    VT_EQ_INT(count_of(&d, VG_ALERT_DATA_GAP), 1);
    VT_EQ_INT(state_of(&d, VG_ALERT_DATA_GAP), 0);
    VT_EQ_INT(last_of(&d, VG_ALERT_DATA_GAP)->at_ms, ts);
    VT_EQ_INT(count_of(&d, VG_ALERT_DEVICE_OFFLINE), 1);
    VT_EQ_INT(state_of(&d, VG_ALERT_DEVICE_OFFLINE), 0);
    VT_CHECK(d.x.usable);
    VT_EQ_INT(vg_quality_deadline(&d.c, &d.s), ts + 1 + (int64_t)(3 * d.s.interval_ms));
}

static void test_quality_gap_on_arrival(void)
{
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;

    /* Before five intervals are known, no gap verdict at all. */
    qfeed(&d, ts, ts, 60);
    qnext(&d, &ts, MIN_MS, 0, 61);
    qnext(&d, &ts, 10 * MIN_MS, 0, 62);
    VT_EQ_INT(count_of(&d, VG_ALERT_DATA_GAP), 0);

    qdev_init(&d);
    ts = T0;
    regular(&d, &ts, 6, MIN_MS, 60);
    int64_t last = ts - MIN_MS;
    /* exactly 3 x the usual interval: no gap */
    qfeed(&d, last + 180000, last + 180000, 70);
    VT_EQ_INT(count_of(&d, VG_ALERT_DATA_GAP), 1);
    VT_EQ_INT(state_of(&d, VG_ALERT_DATA_GAP), 0);
    VT_CHECK(d.x.usable);

    /* one millisecond more, and no tick saw it: active then inactive */
    qdev_init(&d);
    ts = T0;
    regular(&d, &ts, 10, MIN_MS, 60);
    last = ts - MIN_MS;
    qfeed(&d, last + 180001, last + 180001, 70);
    VT_EQ_INT(count_of(&d, VG_ALERT_DATA_GAP), 2);
    int first = -1, second = -1;
    for (int i = 0; i < d.n; i++)
        if (d.out[i].type == VG_ALERT_DATA_GAP) {
            if (first < 0)
                first = i;
            else
                second = i;
        }
    VT_REQUIRE(first >= 0 && second > first);
    VT_EQ_INT(d.out[first].active, 1);
    VT_EQ_INT(d.out[first].at_ms, last + 180000);
    VT_CHECK(fabs(d.out[first].value - 180.001) < 1e-9);
    VT_EQ_INT(d.out[second].active, 0);
    VT_EQ_INT(d.out[second].at_ms, last + 180001);
    VT_CHECK(d.x.usable);
    /* One long interval moves the usual interval by at most an eighth. */
    VT_CHECK(d.s.interval_ms <= 60000.0f * 1.125f);
    VT_CHECK(d.s.interval_ms > 60000.0f);

    /* Offline noticed on arrival (stream time jumped, no tick ran). */
    int64_t now = d.x.now_ms;
    ts = d.x.ts_ms + MIN_MS;
    qfeed(&d, ts, now + 900001, 70);
    VT_EQ_INT(count_of(&d, VG_ALERT_DEVICE_OFFLINE), 2);
    const vg_cond_t *k = NULL;
    for (int i = 0; i < d.n; i++)
        if (d.out[i].type == VG_ALERT_DEVICE_OFFLINE) {
            k = &d.out[i];
            break;
        }
    VT_REQUIRE(k != NULL);
    VT_EQ_INT(k->active, 1);
    VT_EQ_INT(k->at_ms, now + 900000);
    VT_EQ_INT(state_of(&d, VG_ALERT_DEVICE_OFFLINE), 0);
    /* event time moved one interval only: no data gap */
    VT_EQ_INT(count_of(&d, VG_ALERT_DATA_GAP), 1);
    VT_EQ_INT(state_of(&d, VG_ALERT_DATA_GAP), 0);
}

static void test_quality_interval_adapts(void)
{
    /* A device that slows from 10 s to 60 s is reported with gaps for a
     * while, then its new rate is accepted; speeding up is never a gap. */
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 20, 10000, 60);
    int gaps = 0, last_gap = -1;
    for (int i = 0; i < 100; i++) {
        qfeed(&d, ts, ts, 60 + (i % 3));
        for (int j = 0; j < d.n; j++)
            if (d.out[j].type == VG_ALERT_DATA_GAP && d.out[j].active) {
                gaps++;
                last_gap = i;
            }
        ts += MIN_MS;
    }
    VT_CHECK(gaps > 0);
    VT_CHECK(last_gap < 30);
    VT_CHECK(fabs(d.s.interval_ms - 60000.0f) < 1000.0f);
    for (int i = 0; i < 50; i++) {
        qfeed(&d, ts, ts, 60 + (i % 3));
        VT_CHECK(none_active(&d));
        ts += 5000;
    }
}

static void test_quality_out_of_order(void)
{
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 10, MIN_MS, 60);
    int64_t last = ts - MIN_MS;

    qfeed(&d, last, last, 70); /* duplicate timestamp */
    const vg_cond_t *k = last_of(&d, VG_ALERT_OUT_OF_ORDER);
    VT_REQUIRE(k != NULL);
    VT_EQ_INT(k->active, 1);
    VT_EQ_INT(k->severity, VG_SEV_INFO);
    VT_EQ_INT(k->at_ms, last);
    VT_CHECK(k->value == 0.0);
    VT_CHECK(!d.x.usable);
    /* judged only for IMPOSSIBLE, OUT_OF_ORDER and OFFLINE */
    VT_EQ_INT(d.n, 3);
    VT_EQ_INT(count_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 1);
    VT_EQ_INT(count_of(&d, VG_ALERT_DEVICE_OFFLINE), 1);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 0); /* steps over a meaningless dt are not judged */

    qfeed_steps(&d, last - 5 * MIN_MS, last, 70, 500); /* five minutes back */
    k = last_of(&d, VG_ALERT_OUT_OF_ORDER);
    VT_EQ_INT(k->active, 1);
    VT_CHECK(k->value == -300.0);
    VT_EQ_INT(state_of(&d, VG_ALERT_IMPOSSIBLE_VALUE), 0);
    VT_CHECK(!d.x.usable);

    /* three in-order samples clear it; an out-of-order one in between
     * restarts the count */
    qfeed(&d, ts, ts, 61);
    VT_EQ_INT(state_of(&d, VG_ALERT_OUT_OF_ORDER), 1);
    VT_CHECK(d.x.usable);
    qnext(&d, &ts, MIN_MS, 0, 62);
    qfeed(&d, ts - 1, ts, 62);
    VT_EQ_INT(state_of(&d, VG_ALERT_OUT_OF_ORDER), 1);
    qnext(&d, &ts, MIN_MS, 0, 63);
    qnext(&d, &ts, MIN_MS, 0, 64);
    VT_EQ_INT(state_of(&d, VG_ALERT_OUT_OF_ORDER), 1);
    qnext(&d, &ts, MIN_MS, 0, 65);
    k = last_of(&d, VG_ALERT_OUT_OF_ORDER);
    VT_EQ_INT(k->active, 0);
    VT_EQ_INT(k->at_ms, ts);
    /* none of this was a gap or a clock problem */
    VT_CHECK(none_active(&d));
}

static void test_quality_buffered_upload_is_stale(void)
{
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 10, MIN_MS, 60);
    /* The phone was away for an hour; the device kept recording and now
     * uploads 60 buffered samples within a minute, then live data. */
    int64_t now = ts + 3600 * 1000;
    int64_t first_buffered = ts;
    /* offset = -3600 s + 59 s per sample: stale up to sample 50, fresh
     * from 51, cleared at the third fresh one (53) */
    for (int i = 0; i < 60; i++) {
        qfeed(&d, ts, now, 60 + (i % 4));
        VT_CHECK(d.x.usable); /* buffered data is real data */
        VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 0);
        const vg_cond_t *k = last_of(&d, VG_ALERT_STALE_DATA);
        VT_REQUIRE(k != NULL);
        if (i == 0)
            VT_EQ_INT(k->active, 0); /* first stale sample: skew or upload? pending */
        else
            VT_EQ_INT(k->active, i < 53 ? 1 : 0);
        if (i == 1) {
            VT_EQ_INT(k->at_ms, first_buffered); /* dated at the first stale sample */
            VT_EQ_INT(k->severity, VG_SEV_INFO);
            VT_CHECK(fabs(k->value - 3541.0) < 1e-6); /* this sample's staleness */
            VT_CHECK(k->threshold == 600.0);
        }
        if (i == 0)
            VT_EQ_INT(count_of(&d, VG_ALERT_DEVICE_OFFLINE), 2); /* an hour of silence, noticed on arrival */
        ts += MIN_MS;
        now += 1000;
    }
    /* caught up: live samples, nothing to report */
    now = ts;
    for (int i = 0; i < 5; i++) {
        qfeed(&d, ts, now, 60 + i);
        VT_CHECK(none_active(&d));
        ts += MIN_MS;
        now += MIN_MS;
    }
}

static void test_quality_constant_offset_is_skew(void)
{
    /* The device clock is 20 minutes behind from the start: constant
     * offset, so CLOCK_SKEW and never STALE_DATA. */
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0, off = -20 * MIN_MS;
    int64_t start = ts;
    for (int i = 0; i < 30; i++) {
        qfeed(&d, ts, ts - off + (i % 3) * 1500, 60 + (i % 4)); /* a little stream-time jitter */
        VT_EQ_INT(state_of(&d, VG_ALERT_STALE_DATA), 0);
        VT_CHECK(d.x.usable);
        const vg_cond_t *k = last_of(&d, VG_ALERT_CLOCK_SKEW);
        VT_REQUIRE(k != NULL);
        VT_EQ_INT(k->active, i >= 2 ? 1 : 0); /* skew_confirm_samples = 3 */
        if (i >= 2) {
            VT_EQ_INT(k->at_ms, start);
            VT_EQ_INT(k->severity, VG_SEV_WARNING);
            VT_CHECK(k->value < -1199.0 && k->value > -1204.0);
            VT_CHECK(k->threshold == 120.0);
        }
        ts += MIN_MS;
    }
    /* Clock fixed: |offset| must be < 60 s three times in a row; 90 s
     * neither clears nor counts. */
    qfeed(&d, ts, ts + 30000, 60);
    qnext(&d, &ts, MIN_MS, 30000, 61);
    qnext(&d, &ts, MIN_MS, 90000, 62);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 1);
    qnext(&d, &ts, MIN_MS, 0, 60);
    qnext(&d, &ts, MIN_MS, 0, 61);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 1);
    qnext(&d, &ts, MIN_MS, 0, 62);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 0);
    VT_EQ_INT(last_of(&d, VG_ALERT_CLOCK_SKEW)->at_ms, ts);
    VT_CHECK(none_active(&d));
}

static void test_quality_skew_thresholds(void)
{
    /* exactly 120 s off is not skew; 120.1 s is a candidate */
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    for (int i = 0; i < 10; i++, ts += MIN_MS) {
        qfeed(&d, ts, ts + 120000, 60 + (i % 3));
        VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 0);
    }
    for (int i = 0; i < 3; i++, ts += MIN_MS)
        qfeed(&d, ts, ts + 120100, 60 + (i % 3));
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 1);

    /* exactly 600 s behind is not stale (and not consistent: growing) */
    qdev_init(&d);
    ts = T0;
    regular(&d, &ts, 5, MIN_MS, 60);
    for (int i = 0; i < 5; i++, ts += MIN_MS)
        qfeed(&d, ts, ts + 600000, 60 + (i % 3));
    VT_EQ_INT(state_of(&d, VG_ALERT_STALE_DATA), 0);

    /* offsets changing by >= 10 s per sample are not a skew */
    qdev_init(&d);
    ts = T0;
    for (int i = 0; i < 10; i++, ts += MIN_MS) {
        qfeed(&d, ts, ts + 200000 + i * 10000, 60 + (i % 3));
        VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 0);
    }
    /* ... by 9.9 s they are */
    qdev_init(&d);
    ts = T0;
    for (int i = 0; i < 3; i++, ts += MIN_MS)
        qfeed(&d, ts, ts + 200000 + i * 9900, 60 + (i % 3));
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 1);

    /* skew_confirm_samples = 1: the first skewed sample confirms, and its
     * staleness is explained at once */
    qdev_init(&d);
    VT_EQ_INT(vg_detect_cfg_set(&d.c, "skew_confirm_samples", 1, NULL), 0);
    qfeed(&d, T0, T0 + 3600000, 60);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 1);
    qfeed(&d, T0 + MIN_MS, T0 + 3600000 + MIN_MS, 61);
    VT_EQ_INT(state_of(&d, VG_ALERT_STALE_DATA), 0);
}

static void test_quality_future_timestamps(void)
{
    /* Timestamps in the future cannot be a buffered upload: even with a
     * growing offset they count towards a skew. */
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0, now = T0;
    regular(&d, &ts, 5, MIN_MS, 60);
    now = ts;
    qfeed(&d, now + 200000, now, 60);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 0);
    qfeed(&d, now + 400000, now + 1000, 61);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 0);
    qfeed(&d, now + 700000, now + 2000, 62);
    const vg_cond_t *k = last_of(&d, VG_ALERT_CLOCK_SKEW);
    VT_EQ_INT(k->active, 1);
    VT_EQ_INT(k->at_ms, now + 200000);
    VT_CHECK(k->value > 600.0);
    VT_EQ_INT(state_of(&d, VG_ALERT_STALE_DATA), 0);
    VT_CHECK(d.x.usable);
}

static void test_quality_single_late_sample(void)
{
    /* One sample arrives 15 minutes late, then live data continues: it was
     * stale (not a skew), dated at its own timestamp. */
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 10, MIN_MS, 60);
    int64_t late = ts;
    qfeed(&d, late, late + 15 * MIN_MS, 60);
    VT_EQ_INT(state_of(&d, VG_ALERT_STALE_DATA), 0); /* pending */
    VT_CHECK(d.x.usable);
    ts = late + 15 * MIN_MS;
    qfeed(&d, ts, ts, 61);
    const vg_cond_t *k = last_of(&d, VG_ALERT_STALE_DATA);
    VT_EQ_INT(k->active, 1);
    VT_EQ_INT(k->at_ms, late);
    /* this fresh sample counted: two more clear it */
    qnext(&d, &ts, MIN_MS, 0, 62);
    VT_EQ_INT(state_of(&d, VG_ALERT_STALE_DATA), 1);
    qnext(&d, &ts, MIN_MS, 0, 63);
    VT_EQ_INT(state_of(&d, VG_ALERT_STALE_DATA), 0);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 0);
}

static void test_quality_long_jumps(void)
{
    qdev_t d;
    qdev_init(&d);
    int64_t ts = T0;
    regular(&d, &ts, 6, MIN_MS, 60);
    vg_cond_t out[VG_QUALITY_MAX_CONDS];
    /* 30 days of silence in one tick: gap and offline at once */
    int64_t now = d.x.now_ms + 30LL * 86400000;
    VT_EQ_INT(vg_quality_tick(&d.c, &d.s, now, out), 2);
    VT_EQ_INT(out[0].type, VG_ALERT_DATA_GAP);
    VT_EQ_INT(out[1].type, VG_ALERT_DEVICE_OFFLINE);
    VT_EQ_INT(vg_quality_deadline(&d.c, &d.s), INT64_MAX);
    /* comes back 30 days later with a correct clock */
    qfeed(&d, now, now, 60);
    VT_EQ_INT(state_of(&d, VG_ALERT_DATA_GAP), 0);
    VT_EQ_INT(state_of(&d, VG_ALERT_DEVICE_OFFLINE), 0);
    VT_CHECK(none_active(&d));

    /* Absurd timestamps at both ends of int64 do not overflow (UBSan). */
    qdev_init(&d);
    qfeed(&d, INT64_MAX - 10, INT64_MIN + 10, 60);
    qfeed(&d, INT64_MAX - 5, INT64_MIN + 10, 60);
    qfeed(&d, INT64_MAX, INT64_MAX, 60);
    (void)vg_quality_deadline(&d.c, &d.s);
    VT_CHECK(vg_quality_tick(&d.c, &d.s, INT64_MAX, out) >= 0);
    VT_CHECK(vg_quality_tick(&d.c, &d.s, INT64_MIN, out) == 0);
    qdev_init(&d);
    for (int i = 0; i < 8; i++)
        qfeed(&d, INT64_MIN + i * 1000, INT64_MAX - 1000, 60);
    VT_EQ_INT(vg_quality_deadline(&d.c, &d.s), INT64_MAX);
    VT_EQ_INT(state_of(&d, VG_ALERT_CLOCK_SKEW), 1); /* saturated offsets read as one huge skew */
}

/* A mixed run over every rule, for the determinism test. */
static void mixed_run(qdev_t *d, vg_cond_t *all, int *n_all)
{
    int64_t ts = T0, now = T0;
    vg_cond_t out[VG_QUALITY_MAX_CONDS];
    *n_all = 0;
    for (int i = 0; i < 400; i++) {
        double hr = i % 97 == 5 ? 300 : (i / 40) % 3 == 1 ? 70 : 60 + (i % 9);
        int64_t t = ts;
        if (i % 53 == 7)
            t = ts - 2 * MIN_MS;
        if (i % 71 == 3)
            now += 20 * MIN_MS;
        if (i % 89 == 11) {
            int k = vg_quality_tick(&d->c, &d->s, now + 16 * MIN_MS, out);
            memcpy(all + *n_all, out, (size_t)k * sizeof *out);
            *n_all += k;
        }
        qfeed(d, t, (i / 100) % 2 ? now - 30 * MIN_MS : now, hr);
        memcpy(all + *n_all, d->out, (size_t)d->n * sizeof *d->out);
        *n_all += d->n;
        ts += MIN_MS;
        now += MIN_MS;
    }
}

static void test_quality_determinism(void)
{
    static vg_cond_t a[400 * 14], b[400 * 14];
    qdev_t d1, d2;
    int na = 0, nb = 0;
    qdev_init(&d1);
    qdev_init(&d2);
    memset(&d2.s, 0, sizeof d2.s);
    mixed_run(&d1, a, &na);
    mixed_run(&d2, b, &nb);
    VT_EQ_INT(na, nb);
    VT_CHECK(memcmp(&d1.s, &d2.s, sizeof d1.s) == 0);
    VT_CHECK(memcmp(a, b, (size_t)na * sizeof *a) == 0);

    /* A state copied mid-way (a checkpoint) continues exactly like the original. */
    qdev_t d3;
    qdev_init(&d3);
    int64_t ts = T0;
    regular(&d3, &ts, 20, MIN_MS, 60);
    vg_quality_state_t snap;
    memcpy(&snap, &d3.s, sizeof snap);
    qdev_t d4 = d3;
    memcpy(&d4.s, &snap, sizeof snap);
    qfeed(&d3, ts + 10 * MIN_MS, ts + 10 * MIN_MS, 60);
    qfeed(&d4, ts + 10 * MIN_MS, ts + 10 * MIN_MS, 60);
    VT_EQ_INT(d3.n, d4.n);
    VT_CHECK(memcmp(d3.out, d4.out, (size_t)d3.n * sizeof d3.out[0]) == 0);
    VT_CHECK(memcmp(&d3.s, &d4.s, sizeof d3.s) == 0);
}

int main(void)
{
    VT_RUN(test_quality_state_size);
    VT_RUN(test_quality_clean);
    VT_RUN(test_quality_impossible);
    VT_RUN(test_quality_flatline_count_bound);
    VT_RUN(test_quality_flatline_time_bound);
    VT_RUN(test_quality_gap_by_tick);
    VT_RUN(test_quality_gap_on_arrival);
    VT_RUN(test_quality_interval_adapts);
    VT_RUN(test_quality_out_of_order);
    VT_RUN(test_quality_buffered_upload_is_stale);
    VT_RUN(test_quality_constant_offset_is_skew);
    VT_RUN(test_quality_skew_thresholds);
    VT_RUN(test_quality_future_timestamps);
    VT_RUN(test_quality_single_late_sample);
    VT_RUN(test_quality_long_jumps);
    VT_RUN(test_quality_determinism);
    return VT_DONE();
}
