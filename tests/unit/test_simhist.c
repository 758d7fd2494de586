/* test_simhist.c — the simulator's latency histogram (percentile error,
 * merge, encoding), its event generator (value ranges, extreme-value
 * anomaly episodes measured in event time, no flat lines, timestamps, the
 * rendered PUBLISH packet and its JSON payload) and the ledger that judges
 * alert events (OPEN / UPDATE / RESOLVED ...) against injected episodes. */
#include "core/err.h"
#include "core/event.h"
#include "core/json.h"
#include "mqtt/codec.h"
#include "sim/device.h"
#include "sim/hist.h"
#include "sim/ledger.h"
#include "sim/payload.h"
#include "sim/report.h"
#include "vt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t rng_state = 12345;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact percentile by the same rank rule the histogram uses. */
static double exact_pct(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return (double)sorted[rank - 1];
}

static int within(double got, double want, double rel)
{
    return fabs(got - want) <= rel * want + 0.5; /* +0.5: integer microseconds */
}

static vg_simhist_t *hist_new(void)
{
    vg_simhist_t *h = malloc(sizeof *h);
    vg_simhist_init(h);
    return h;
}

static void check_distribution(uint64_t *v, size_t n)
{
    vg_simhist_t *h = hist_new();
    for (size_t i = 0; i < n; i++)
        vg_simhist_record(h, v[i]);
    qsort(v, n, sizeof *v, cmp_u64);
    static const double ps[] = {1, 10, 50, 90, 95, 99, 99.9};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        double got = vg_simhist_percentile(h, ps[k]), want = exact_pct(v, n, ps[k]);
        if (!within(got, want, 0.01))
            printf("  p%g: got %.1f want %.1f\n", ps[k], got, want);
        VT_CHECK(within(got, want, 0.01));
    }
    VT_EQ_INT(vg_simhist_percentile(h, 100), v[n - 1]);
    VT_EQ_INT(h->max, v[n - 1]);
    VT_EQ_INT(h->min, v[0]);
    VT_EQ_INT(h->count, n);
    free(h);
}

static void test_hist_empty(void)
{
    vg_simhist_t *h = hist_new();
    VT_CHECK(vg_simhist_percentile(h, 50) == 0.0);
    VT_CHECK(vg_simhist_percentile(h, 100) == 0.0);
    VT_EQ_INT(h->count, 0);
    free(h);
}

static void test_hist_small_values_exact(void)
{
    vg_simhist_t *h = hist_new();
    for (uint64_t v = 1; v <= 200; v++)
        vg_simhist_record(h, v);
    VT_CHECK(vg_simhist_percentile(h, 50) == 100.0);
    VT_CHECK(vg_simhist_percentile(h, 99) == 198.0);
    VT_CHECK(vg_simhist_percentile(h, 0.5) == 1.0);
    free(h);
}

static void test_hist_uniform(void)
{
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = 1 + rnd() % 1000000; /* up to 1 s */
    check_distribution(v, n);
    free(v);
}

static void test_hist_lognormal(void)
{
    /* Latency-like: a body around 500 µs with a long tail to seconds. */
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        double u1 = ((double)(rnd() >> 11) + 1) * 0x1.0p-53, u2 = (double)(rnd() >> 11) * 0x1.0p-53;
        double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
        v[i] = (uint64_t)exp(log(500.0) + 1.5 * z);
    }
    check_distribution(v, n);
    free(v);
}

static void test_hist_extremes(void)
{
    uint64_t v[] = {0, 1, 255, 256, 257, 1000000, 123456789012ull, UINT64_MAX / 2};
    vg_simhist_t *h = hist_new();
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        vg_simhist_record(h, v[i]);
    VT_EQ_INT(h->count, 8);
    VT_CHECK(vg_simhist_percentile(h, 100) == (double)(UINT64_MAX / 2));
    VT_CHECK(vg_simhist_percentile(h, 1) == 0.0);
    /* 123456789012 µs is within the tracked range: 1% holds there too. */
    VT_CHECK(within(vg_simhist_percentile(h, 75), 1000000, 0.01));
    VT_CHECK(within(vg_simhist_percentile(h, 87.5), 123456789012.0, 0.01));
    free(h);
}

static void test_hist_merge(void)
{
    size_t n = 100000;
    vg_simhist_t *all = hist_new(), *a = hist_new(), *b = hist_new();
    for (size_t i = 0; i < n; i++) {
        uint64_t x = rnd() % (i % 2 ? 5000 : 2000000);
        vg_simhist_record(all, x);
        vg_simhist_record(i % 3 ? a : b, x);
    }
    vg_simhist_merge(a, b);
    VT_EQ_INT(a->count, all->count);
    VT_EQ_INT(a->min, all->min);
    VT_EQ_INT(a->max, all->max);
    VT_EQ_INT(a->sum, all->sum);
    VT_CHECK(memcmp(a->b, all->b, sizeof a->b) == 0);
    VT_CHECK(vg_simhist_percentile(a, 99) == vg_simhist_percentile(all, 99));
    /* Merging an empty histogram changes nothing (min stays). */
    vg_simhist_t *e = hist_new();
    vg_simhist_merge(a, e);
    VT_EQ_INT(a->min, all->min);
    vg_simhist_merge(e, a);
    VT_EQ_INT(e->min, all->min);
    VT_EQ_INT(e->count, n);
    free(all);
    free(a);
    free(b);
    free(e);
}

static void test_hist_encode(void)
{
    vg_simhist_t *h = hist_new(), *d = hist_new();
    for (int i = 0; i < 5000; i++)
        vg_simhist_record(h, rnd() % 100000);
    size_t cap = vg_simhist_encoded_max();
    uint8_t *buf = malloc(cap);
    int n = vg_simhist_encode(h, buf, cap);
    VT_REQUIRE(n > 0);
    size_t used = 0;
    VT_EQ_INT(vg_simhist_decode(d, buf, (size_t)n, &used), 0);
    VT_EQ_INT(used, n);
    VT_EQ_INT(d->count, h->count);
    VT_EQ_INT(d->min, h->min);
    VT_EQ_INT(d->max, h->max);
    VT_CHECK(memcmp(d->b, h->b, sizeof h->b) == 0);
    VT_CHECK(vg_simhist_decode(d, buf, (size_t)n - 1, &used) != 0);
    VT_CHECK(vg_simhist_encode(h, buf, 16) < 0);
    free(buf);
    free(h);
    free(d);
}

/* ---- the event generator ---- */

static void test_device_normal_range(void)
{
    static const double intervals[] = {0.0005, 0.2, 0.25, 1, 5, 60};
    int rest_steps_ok = 1, in_range = 1, no_anomaly = 1, steps_nonneg = 1, moved = 0, longest_same = 0;
    int fast_rests = 1, plausible_steps = 1;
    for (size_t k = 0; k < sizeof intervals / sizeof intervals[0]; k++) {
        vg_simdev_cfg_t cfg;
        vg_simdev_cfg_init(&cfg, intervals[k], 0.0);
        for (uint32_t dev = 0; dev < 200; dev++) {
            vg_simdev_t d;
            vg_simdev_init(&d, 7, dev);
            int64_t t = 1764100800000;
            int first = -1, prev = -1, same = 0;
            int64_t prev_ts = 0;
            for (int i = 0; i < 3000; i++) {
                vg_simdev_sample_t s;
                t += (int64_t)(intervals[k] * 1000);
                vg_simdev_next(&d, &cfg, t, &s);
                if (s.heart_rate < VG_SIMDEV_HR_MIN || s.heart_rate > VG_SIMDEV_HR_MAX)
                    in_range = 0;
                if (s.anomaly != VG_SIMDEV_NORMAL || s.episode_start)
                    no_anomaly = 0;
                if (s.activity == VG_SIMDEV_REST && s.steps != 0)
                    rest_steps_ok = 0;
                /* too fast to report a step plausibly: a resting fleet */
                if (intervals[k] < VG_SIMDEV_MOVE_MIN_INTERVAL_S && (s.steps || s.activity != VG_SIMDEV_REST))
                    fast_rests = 0;
                /* never more than the server's 400 steps/min */
                if (i && (double)s.steps * 60000.0 / (double)(s.ts_ms - prev_ts) > 400.0)
                    plausible_steps = 0;
                prev_ts = s.ts_ms;
                if (s.steps < 0)
                    steps_nonneg = 0;
                if (first < 0)
                    first = s.heart_rate;
                else if (s.heart_rate != first)
                    moved = 1;
                same = s.heart_rate == prev ? same + 1 : 1;
                prev = s.heart_rate;
                if (same > longest_same)
                    longest_same = same;
            }
        }
    }
    VT_CHECK(in_range);
    VT_CHECK(no_anomaly);
    VT_CHECK(rest_steps_ok);
    VT_CHECK(steps_nonneg);
    VT_CHECK(fast_rests);
    VT_CHECK(plausible_steps);
    VT_CHECK(moved); /* it is a random walk, not a constant */
    /* The server's flatline detector wants 20 identical samples; at 0.5 ms
     * intervals the walk alone would repeat a value thousands of times. */
    VT_CHECK(longest_same <= VG_SIMDEV_MAX_SAME);
    VT_CHECK(longest_same < 20);
}

static void test_device_rest_stays_low(void)
{
    /* The sustained-high-at-rest detector fires on > 120 bpm for 80% of 10
     * minutes at rest (no steps for 5 minutes): a wearer at rest stays far
     * below that, and far above its low counterpart (40). */
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 5, 0.0);
    int max_rest = 0, min_rest = 1000;
    long rested = 0;
    for (uint32_t dev = 0; dev < 200; dev++) {
        vg_simdev_t d;
        vg_simdev_init(&d, 21, dev);
        int64_t t = 1764100800000, still_since = t;
        for (int i = 0; i < 17280; i++) {
            vg_simdev_sample_t s;
            vg_simdev_next(&d, &cfg, t += 5000, &s);
            if (s.steps)
                still_since = t;
            if (t - still_since >= 300000) {
                rested++;
                if (s.heart_rate > max_rest)
                    max_rest = s.heart_rate;
                if (s.heart_rate < min_rest)
                    min_rest = s.heart_rate;
            }
        }
    }
    VT_CHECK(rested > 100000);
    VT_CHECK(max_rest <= 100);
    VT_CHECK(min_rest >= 48);
}

static void test_device_activity_steps(void)
{
    /* Over a simulated day some devices walk or run, and then they step. */
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 5, 0.0);
    long steps_active = 0, active_samples = 0;
    int max_hr = 0;
    for (uint32_t dev = 0; dev < 50; dev++) {
        vg_simdev_t d;
        vg_simdev_init(&d, 3, dev);
        int64_t t = 1764100800000;
        for (int i = 0; i < 17280; i++) {
            vg_simdev_sample_t s;
            vg_simdev_next(&d, &cfg, t += 5000, &s);
            if (s.activity != VG_SIMDEV_REST) {
                steps_active += s.steps;
                active_samples++;
            }
            if (s.heart_rate > max_hr)
                max_hr = s.heart_rate;
        }
    }
    VT_CHECK(active_samples > 0);
    /* 1.6..3 steps per second, 5 s apart. */
    VT_CHECK(steps_active > active_samples * 7 && steps_active < active_samples * 16);
    VT_CHECK(max_hr > 100 && max_hr <= VG_SIMDEV_HR_MAX);
}

/* Walks one device through n samples at interval_ms (jittered 0.9..1.1
 * when jitter is set) and checks every episode against the extreme
 * detector's needs; counts episodes by type into *high / *low. */
static void check_episodes(uint32_t dev, double interval_s, int jitter, int n, int *ok, int *high, int *low)
{
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, interval_s, 1.0); /* an episode whenever allowed */
    vg_simdev_t d;
    vg_simdev_init(&d, 11, dev);
    int64_t t = 1764100800000, start = 0, last = 0;
    int run = 0, cur = 0, normals_since = 99, due_seen = 0, after_due = 0;
    uint64_t r = dev * 7919u + 1;
    for (int i = 0; i < n; i++) {
        double f = 1.0;
        if (jitter) {
            r = r * 6364136223846793005u + 1442695040888963407u;
            f = 0.9 + 0.2 * (double)(r >> 11) * 0x1.0p-53;
        }
        t += (int64_t)(interval_s * 1000.0 * f);
        vg_simdev_sample_t s;
        vg_simdev_next(&d, &cfg, t, &s);
        if (i == 0 && s.anomaly)
            *ok = 0; /* the first sample is always normal */
        if (s.anomaly == VG_SIMDEV_HIGH &&
            (s.heart_rate < VG_SIMDEV_HIGH_MIN || s.heart_rate > VG_SIMDEV_HIGH_MAX || s.heart_rate <= 180))
            *ok = 0;
        if (s.anomaly == VG_SIMDEV_LOW && (s.heart_rate < VG_SIMDEV_LOW_MIN || s.heart_rate > VG_SIMDEV_LOW_MAX ||
                                           s.heart_rate >= 35 || s.heart_rate < 25))
            *ok = 0;
        if (!s.anomaly && (s.heart_rate < VG_SIMDEV_HR_MIN || s.heart_rate > VG_SIMDEV_HR_MAX))
            *ok = 0;
        if (!s.anomaly && (s.episode_start || s.episode_due || s.episode_end))
            *ok = 0;
        if (s.episode_start) {
            if (run || normals_since < 1)
                *ok = 0; /* the detector needs a normal sample to resolve an episode */
            *high += s.anomaly == VG_SIMDEV_HIGH;
            *low += s.anomaly == VG_SIMDEV_LOW;
            cur = s.anomaly;
            start = s.ts_ms;
            due_seen = after_due = 0;
        }
        if (s.anomaly) {
            if (s.anomaly != cur || (!run && !s.episode_start))
                *ok = 0; /* type changed, or an episode without a start */
            run++;
            normals_since = 0;
            if (after_due)
                after_due++;
            if (s.episode_due) {
                /* the first sample at least sustain_s after the start */
                if (due_seen || s.ts_ms - start < 30000 || last - start >= 30000)
                    *ok = 0;
                due_seen = 1;
                after_due = 1;
            }
            last = s.ts_ms;
            if (s.episode_end) {
                /* >= sustain + 2 intervals of event time, >= 4 samples, and
                 * the detector sees at least two more samples beyond the
                 * threshold after the one it fires on */
                if (!due_seen || run < VG_SIMDEV_EPISODE_MIN || s.ts_ms - start < cfg.span_ms || after_due < 3)
                    *ok = 0;
                run = 0;
                cur = 0;
            }
        } else {
            if (run)
                *ok = 0; /* an episode ended without episode_end */
            normals_since++;
        }
    }
}

static void test_device_anomalies(void)
{
    int ok = 1, high = 0, low = 0;
    for (uint32_t dev = 0; dev < 100; dev++)
        check_episodes(dev, 5, 0, 500, &ok, &high, &low);
    VT_CHECK(ok);
    VT_CHECK(high > 100 && low > 100);
    /* Other intervals, with the worker's send jitter: the span is event
     * time, so jitter never leaves an episode shorter than sustain_s. */
    static const double intervals[] = {0.05, 1, 2.5, 7, 20, 27};
    for (size_t k = 0; k < sizeof intervals / sizeof intervals[0]; k++) {
        int h = 0, lo = 0;
        for (uint32_t dev = 0; dev < 20; dev++)
            check_episodes(dev, intervals[k], 1, intervals[k] < 0.5 ? 20000 : 600, &ok, &h, &lo);
        if (!ok)
            printf("  interval %g: an episode broke the rules\n", intervals[k]);
        VT_CHECK(ok);
        VT_CHECK(h > 0 && lo > 0);
    }
}

static void test_device_episode_length(void)
{
    /* At exactly 5 s: ceil(30 / 5) + 3 = 9 samples, due at the 7th (30 s
     * after the first); at 1 s: 33, due at the 31st; at 25 s two samples
     * after the due one outlast 30 s + 2 intervals. */
    static const struct {
        double interval;
        int samples, due;
    } cases[] = {{5, 9, 7}, {1, 33, 31}, {12, 6, 4}, {25, 5, 3}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        vg_simdev_cfg_t cfg;
        vg_simdev_cfg_init(&cfg, cases[k].interval, 0.0);
        vg_simdev_t d;
        vg_simdev_init(&d, 4, 2);
        vg_simdev_force(&d, 1, VG_SIMDEV_HIGH);
        int64_t step = (int64_t)(cases[k].interval * 1000), t = 1764100800000;
        int n = 0, due_at = 0;
        vg_simdev_sample_t s;
        for (int i = 0; i < 200; i++) {
            vg_simdev_next(&d, &cfg, t += step, &s);
            if (s.anomaly)
                n++;
            if (s.episode_due)
                due_at = n;
            if (s.episode_end)
                break;
        }
        VT_EQ_INT(n, cases[k].samples);
        VT_EQ_INT(due_at, cases[k].due);
    }
    /* A server configured with another extreme_sustain_s. */
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 1, 0.0);
    vg_simdev_cfg_sustain(&cfg, 10);
    VT_EQ_INT(cfg.span_ms, 12000);
    vg_simdev_t d;
    vg_simdev_init(&d, 4, 2);
    vg_simdev_force(&d, 0, VG_SIMDEV_LOW);
    int n = 0;
    vg_simdev_sample_t s;
    for (int64_t t = 1764100800000; n < 100; t += 1000) {
        vg_simdev_next(&d, &cfg, t, &s);
        n += s.anomaly != 0;
        if (s.episode_end)
            break;
    }
    VT_EQ_INT(n, 13);

    /* Beyond sustain_s / 1.1 the detector would see every silence between
     * two samples as missing data: no episode, forced or random. */
    vg_simdev_cfg_init(&cfg, 60, 1.0);
    VT_CHECK(!vg_simdev_episodes_possible(&cfg));
    vg_simdev_init(&d, 4, 3);
    vg_simdev_force(&d, 1, VG_SIMDEV_HIGH);
    int any = 0;
    for (int64_t t = 1764100800000; t < 1764100800000 + 86400000; t += 60000) {
        vg_simdev_next(&d, &cfg, t, &s);
        any |= s.anomaly;
    }
    VT_CHECK(!any);
    vg_simdev_cfg_init(&cfg, 27, 1.0);
    VT_CHECK(vg_simdev_episodes_possible(&cfg));
    vg_simdev_cfg_sustain(&cfg, 20);
    VT_CHECK(!vg_simdev_episodes_possible(&cfg));
}

static void test_device_episodes_fit_the_run(void)
{
    /* With an end time, every episode that starts ends (and is followed by
     * a normal sample) before it; without one, episodes go on starting. */
    vg_simdev_cfg_t cfg, free_cfg;
    vg_simdev_cfg_init(&cfg, 1, 0.5);
    vg_simdev_cfg_init(&free_cfg, 1, 0.5);
    int64_t t0 = 1764100800000;
    cfg.end_ms = t0 + 60000;
    int started = 0, ended = 0, late_normal = 1, episodes_free = 0;
    for (uint32_t dev = 0; dev < 500; dev++) {
        vg_simdev_t d, e;
        vg_simdev_init(&d, 3, dev);
        vg_simdev_init(&e, 3, dev);
        vg_simdev_force(&d, 1, VG_SIMDEV_HIGH);
        vg_simdev_force(&e, 1, VG_SIMDEV_HIGH);
        int open = 0;
        for (int64_t t = t0 + 1000; t < cfg.end_ms; t += 1000) {
            vg_simdev_sample_t s, u;
            vg_simdev_next(&d, &cfg, t, &s);
            vg_simdev_next(&e, &free_cfg, t, &u);
            started += s.episode_start;
            ended += s.episode_end;
            episodes_free += u.episode_start;
            if (s.episode_start)
                open = 1;
            if (s.episode_end)
                open = 0;
            if (open && t + 1000 >= cfg.end_ms)
                late_normal = 0; /* still in an episode at the very end */
        }
    }
    VT_CHECK(started >= 500); /* the forced ones, at least */
    VT_EQ_INT(started, ended);
    VT_CHECK(late_normal);
    VT_CHECK(episodes_free > started);
    /* A run too short for any episode gets none, forced or not. */
    cfg.end_ms = t0 + 30000;
    vg_simdev_t d;
    vg_simdev_init(&d, 3, 1);
    vg_simdev_force(&d, 1, VG_SIMDEV_LOW);
    int any = 0;
    for (int64_t t = t0 + 1000; t < cfg.end_ms; t += 1000) {
        vg_simdev_sample_t s;
        vg_simdev_next(&d, &cfg, t, &s);
        any |= s.anomaly;
    }
    VT_CHECK(!any);
}

static void test_device_rate(void)
{
    /* 0.05 per device per minute at 5 s intervals: ~0.05 * 60 episodes per
     * device-hour. */
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 5, 0.05);
    int episodes = 0;
    for (uint32_t dev = 0; dev < 1000; dev++) {
        vg_simdev_t d;
        vg_simdev_init(&d, 5, dev);
        int64_t t = 1764100800000;
        for (int i = 0; i < 720; i++) {
            vg_simdev_sample_t s;
            vg_simdev_next(&d, &cfg, t += 5000, &s);
            episodes += s.episode_start;
        }
    }
    /* Expect ~3000 minus the time spent in episodes and cool-down. */
    VT_CHECK(episodes > 2400 && episodes < 3300);
}

static void test_device_forced(void)
{
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 5, 0.0);
    vg_simdev_t d;
    vg_simdev_init(&d, 1, 8);
    vg_simdev_force(&d, 1, VG_SIMDEV_LOW);
    vg_simdev_sample_t s;
    vg_simdev_next(&d, &cfg, 1764100800000, &s);
    VT_EQ_INT(s.anomaly, VG_SIMDEV_NORMAL);
    vg_simdev_next(&d, &cfg, 1764100805000, &s);
    VT_EQ_INT(s.anomaly, VG_SIMDEV_LOW);
    VT_CHECK(s.episode_start);
    VT_CHECK(s.heart_rate < 35);
    int n = 1;
    for (;;) {
        vg_simdev_next(&d, &cfg, 1764100805000 + 5000 * n, &s);
        if (!s.anomaly)
            break;
        VT_CHECK(!s.episode_start);
        n++;
    }
    VT_EQ_INT(n, 9); /* 30 s + 2 intervals at 5 s */
}

static void test_device_timestamps(void)
{
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 0.0005, 0.05);
    vg_simdev_t d;
    vg_simdev_init(&d, 1, 1);
    int64_t prev = 0, now = 1764100800000;
    int ok = 1;
    uint32_t prev_seq = 0;
    for (int i = 0; i < 10000; i++) {
        vg_simdev_sample_t s;
        if (i % 7 == 3)
            now -= 2; /* the wall clock stepped back */
        else if (i % 3 == 0)
            now += 1;
        vg_simdev_next(&d, &cfg, now, &s);
        if (i && (s.ts_ms <= prev || s.seq != prev_seq + 1))
            ok = 0;
        prev = s.ts_ms;
        prev_seq = s.seq;
    }
    VT_CHECK(ok);
}

static void test_device_reproducible(void)
{
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 5, 0.5);
    vg_simdev_t a, b, c;
    vg_simdev_init(&a, 42, 17);
    vg_simdev_init(&b, 42, 17);
    vg_simdev_init(&c, 42, 18);
    int same = 1, differs = 0;
    for (int i = 0; i < 500; i++) {
        vg_simdev_sample_t sa, sb, sc;
        int64_t t = 1764100800000 + 5000 * i;
        vg_simdev_next(&a, &cfg, t, &sa);
        vg_simdev_next(&b, &cfg, t, &sb);
        vg_simdev_next(&c, &cfg, t, &sc);
        same &= sa.heart_rate == sb.heart_rate && sa.anomaly == sb.anomaly && sa.steps == sb.steps;
        differs |= sa.heart_rate != sc.heart_rate;
    }
    VT_CHECK(same);
    VT_CHECK(differs);
}

/* ---- the rendered packet ---- */

static void check_packet(const vg_simpayload_t *t, const uint8_t *pkt, int qos, uint16_t pid, const char *topic,
                         const char *id, const vg_simdev_sample_t *s)
{
    uint8_t type, flags;
    size_t hl, rl;
    VT_REQUIRE(vg_mqtt_frame(pkt, t->pkt_len, 1 << 20, &type, &flags, &hl, &rl) == 0);
    VT_EQ_INT(hl + rl, t->pkt_len);
    VT_EQ_INT(type, VG_MQTT_PUBLISH);
    vg_mqtt_publish_t p;
    VT_REQUIRE(vg_mqtt_decode_publish(VG_MQTT_V311, flags, pkt + hl, rl, &p) == 0);
    VT_EQ_INT(p.qos, qos);
    VT_EQ_INT(p.packet_id, qos ? pid : 0);
    VT_CHECK(p.topic.len == strlen(topic) && memcmp(p.topic.p, topic, p.topic.len) == 0);
    VT_CHECK(p.payload.len >= 450 && p.payload.len <= 560);
    VT_EQ_INT(vg_json_validate((const char *)p.payload.p, p.payload.len, 32), 0);
    vg_event_t ev;
    const char *why = NULL;
    vg_event_reason_t r = vg_event_parse((const char *)p.payload.p, p.payload.len, &ev, &why);
    if (r != VG_EVENT_OK)
        printf("  rejected: %s (%s)\n%.*s\n", vg_event_reason_name(r), why ? why : "", (int)p.payload.len,
               (const char *)p.payload.p);
    VT_EQ_INT(r, VG_EVENT_OK);
    VT_CHECK(strcmp(ev.device_id, id) == 0);
    VT_EQ_INT((long)ev.heart_rate, s->heart_rate);
    VT_EQ_INT(ev.steps, s->steps);
    VT_EQ_INT(ev.ts_ms, s->ts_ms);
}

static void test_payload_events(void)
{
    static const char topic[] = "iot/wearable/data";
    vg_simpayload_t t;
    VT_REQUIRE(vg_simpayload_init(&t, topic, "sim-", vg_simpayload_id_width(1000), 1) == 0);
    VT_CHECK(t.json_len >= 450 && t.json_len <= 560);
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 5, 0.5);
    vg_simpayload_clock_t clk = {0};
    uint8_t pkt[VG_SIMPAYLOAD_MAX];
    for (uint32_t dev = 0; dev < 1000; dev += 37) {
        vg_simdev_t d;
        vg_simdev_init(&d, 9, dev);
        char id[32];
        vg_simpayload_device_id("sim-", 6, dev, id, sizeof id);
        int64_t t0 = 1764100800123;
        for (int i = 0; i < 40; i++) {
            vg_simdev_sample_t s;
            vg_simdev_next(&d, &cfg, t0 + 999 * i, &s);
            uint16_t pid = (uint16_t)(1 + (dev * 40 + (uint32_t)i) % 65535);
            VT_EQ_INT(vg_simpayload_render(&t, &clk, pkt, pid, &d, &s), t.pkt_len);
            check_packet(&t, pkt, 1, pid, topic, id, &s);
        }
    }
    char id[32];
    VT_EQ_INT(vg_simpayload_device_id("sim-", 6, 1, id, sizeof id), 10);
    VT_CHECK(strcmp(id, "sim-000001") == 0);
    VT_EQ_INT(vg_simpayload_id_width(1000), 6);
    VT_EQ_INT(vg_simpayload_id_width(1000001), 7);
}

static void test_payload_extremes(void)
{
    static const char topic[] = "t";
    vg_simpayload_t t;
    VT_REQUIRE(vg_simpayload_init(&t, topic, "wearable.x-", 8, 0) == 0);
    VT_EQ_INT(t.pid_off, 0);
    vg_simdev_t d;
    vg_simdev_init(&d, 1, 99999999);
    d.firmware = 3;
    d.model = 2;
    vg_simdev_sample_t s = {
        .ts_ms = 4102444799999, /* 2099-12-31T23:59:59.999Z */
        .seq = UINT32_MAX,
        .heart_rate = 185,
        .steps = 99999,
        .activity = VG_SIMDEV_RUN,
        .battery = 100,
        .spo2 = 100,
        .hrv_ms = 999,
        .resp_rate = 60,
        .rssi = -127,
        .skin_temp_dc = 355,
        .accel_mg = {-1680, 1680, -1680, 0, -1, 1, 999, -999, -2000},
    };
    vg_simpayload_clock_t clk = {0};
    uint8_t pkt[VG_SIMPAYLOAD_MAX];
    vg_simpayload_render(&t, &clk, pkt, 0, &d, &s);
    check_packet(&t, pkt, 0, 0, topic, "wearable.x-99999999", &s);
    s.heart_rate = 28;
    s.steps = 0;
    s.activity = VG_SIMDEV_REST;
    s.ts_ms = 946684800000; /* 2000-01-01 */
    s.seq = 0;
    vg_simpayload_render(&t, &clk, pkt, 0, &d, &s);
    check_packet(&t, pkt, 0, 0, topic, "wearable.x-99999999", &s);
}

static void test_payload_rejects(void)
{
    vg_simpayload_t t;
    VT_CHECK(vg_simpayload_init(&t, "a/+/b", "sim-", 6, 1) != 0);
    VT_CHECK(vg_simpayload_init(&t, "", "sim-", 6, 1) != 0);
    VT_CHECK(vg_simpayload_init(&t, "x", "si\"m", 6, 1) != 0);
    VT_CHECK(vg_simpayload_init(&t, "x", "a/b", 6, 1) != 0);
    VT_CHECK(vg_simpayload_init(&t, "x", "sim-", 6, 2) != 0);
    VT_CHECK(vg_simpayload_prefix_valid("dev_"));
    VT_CHECK(!vg_simpayload_prefix_valid("dev #"));
}

/* ---- alert matching ---- */

static vg_simdev_sample_t sample(int64_t ts, int anomaly, int start)
{
    return (vg_simdev_sample_t){.ts_ms = ts,
                                .anomaly = (uint8_t)anomaly,
                                .episode_start = start,
                                .heart_rate = anomaly == VG_SIMDEV_HIGH  ? 190
                                              : anomaly == VG_SIMDEV_LOW ? 30
                                                                         : 70};
}

static vg_simledger_verdict_t judge(vg_simledger_t *l, uint32_t dev, int type, int event, int64_t ts, uint64_t id,
                                    uint64_t *sent)
{
    vg_simledger_alert_t a = {.type = type, .event = event, .ts_ms = ts, .alert_id = id};
    return vg_simledger_alert(l, dev, &a, sent);
}

static vg_simledger_verdict_t open_alert(vg_simledger_t *l, uint32_t dev, int type, int64_t ts, uint64_t id,
                                         uint64_t *sent)
{
    return judge(l, dev, type, VG_SIMLEDGER_EV_OPEN, ts, id, sent);
}

static void test_ledger_matching(void)
{
    vg_simledger_t *l = vg_simledger_new(4, 0);
    VT_REQUIRE(l != NULL);
    vg_simdev_sample_t s;
    /* device 1: normal, HIGH episode at 2000..4000, normal, LOW at 7000..8000 */
    int64_t ts[] = {1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000};
    int an[] = {0, VG_SIMDEV_HIGH, VG_SIMDEV_HIGH, VG_SIMDEV_HIGH, 0, 0, VG_SIMDEV_LOW, VG_SIMDEV_LOW, 0};
    int st[] = {0, 1, 0, 0, 0, 0, 1, 0, 0};
    for (int i = 0; i < 9; i++) {
        s = sample(ts[i], an[i], st[i]);
        s.episode_end = i == 3 || i == 7;
        VT_EQ_INT(vg_simledger_sent(l, 1, &s, 100 + (uint64_t)i), 0);
    }
    /* device 2: one HIGH episode at 2000 only, never finished */
    s = sample(2000, VG_SIMDEV_HIGH, 1);
    vg_simledger_sent(l, 2, &s, 555);
    VT_EQ_INT(vg_simledger_episodes(l), 3);
    VT_EQ_INT(vg_simledger_cut(l), 1);

    uint64_t sent;
    VT_EQ_INT(open_alert(l, 1, VG_SIMDEV_HIGH, 2000, 0xa1, &sent), VG_SIMLEDGER_DETECTED);
    VT_EQ_INT(sent, 101);
    VT_EQ_INT(open_alert(l, 1, VG_SIMDEV_HIGH, 3000, 0xa2, &sent), VG_SIMLEDGER_DUPLICATE);
    VT_EQ_INT(sent, 102);
    VT_EQ_INT(open_alert(l, 1, VG_SIMDEV_HIGH, 2000, 0xa1, &sent), VG_SIMLEDGER_FOLLOWUP); /* redelivered */
    VT_EQ_INT(sent, 0);
    VT_EQ_INT(open_alert(l, 1, VG_SIMDEV_LOW, 3000, 0xa3, &sent), VG_SIMLEDGER_FALSE);  /* wrong type */
    VT_EQ_INT(open_alert(l, 1, VG_SIMDEV_HIGH, 5000, 0xa4, &sent), VG_SIMLEDGER_FALSE); /* after it */
    VT_EQ_INT(sent, 104); /* the event is still known: latency measurable */
    VT_EQ_INT(open_alert(l, 1, VG_SIMDEV_LOW, 8000, 0xb1, &sent), VG_SIMLEDGER_DETECTED);
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_HIGH, 2000, 0xc1, &sent), VG_SIMLEDGER_FALSE); /* other device */
    VT_EQ_INT(sent, 0);
    VT_EQ_INT(open_alert(l, 3, 0, 2000, 0xd1, &sent), VG_SIMLEDGER_FALSE);
    VT_EQ_INT(vg_simledger_detected(l), 2);

    /* The old format has no "event" and no lifecycle: every message is
     * judged, and nothing is ever resolved. Lifecycle events after an
     * OPEN are follow-ups, never duplicates or false. */
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_HIGH, VG_SIMLEDGER_EV_UPDATE, 3000, 0xa1, &sent), VG_SIMLEDGER_FOLLOWUP);
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_HIGH, VG_SIMLEDGER_EV_ACK, 3000, 0xa1, &sent), VG_SIMLEDGER_FOLLOWUP);
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_HIGH, VG_SIMLEDGER_EV_OTHER, 3000, 0xa1, &sent), VG_SIMLEDGER_FOLLOWUP);
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_HIGH, VG_SIMLEDGER_EV_RESOLVED, 5000, 0xa2, &sent), VG_SIMLEDGER_FOLLOWUP);
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_HIGH, VG_SIMLEDGER_EV_RESOLVED, 5000, 0xa4, &sent), VG_SIMLEDGER_FOLLOWUP);
    VT_EQ_INT(vg_simledger_resolved(l), 0);
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_HIGH, VG_SIMLEDGER_EV_RESOLVED, 5000, 0xa1, &sent), VG_SIMLEDGER_RESOLVED);
    VT_EQ_INT(sent, 0);
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_HIGH, VG_SIMLEDGER_EV_RESOLVED, 5000, 0xa1, &sent), VG_SIMLEDGER_FOLLOWUP);
    VT_EQ_INT(judge(l, 1, VG_SIMDEV_LOW, VG_SIMLEDGER_EV_RESOLVED, 9000, 0xb1, &sent), VG_SIMLEDGER_RESOLVED);
    VT_EQ_INT(vg_simledger_resolved(l), 2);
    VT_EQ_INT(vg_simledger_detected(l), 2);

    vg_simepisode_t out[3];
    vg_simledger_export(l, 1000, out);
    VT_EQ_INT(out[0].device, 1001);
    VT_EQ_INT(out[0].type, VG_SIMDEV_HIGH);
    VT_EQ_INT(out[0].first_ts_ms, 2000);
    VT_EQ_INT(out[0].last_ts_ms, 4000);
    VT_EQ_INT(out[0].detected, 1);
    VT_EQ_INT(out[0].resolved, 1);
    VT_EQ_INT(out[0].complete, 1);
    VT_EQ_INT(out[1].device, 1001);
    VT_EQ_INT(out[1].last_ts_ms, 8000);
    VT_EQ_INT(out[2].device, 1002);
    VT_EQ_INT(out[2].detected, 0);
    VT_EQ_INT(out[2].complete, 0);
    vg_simledger_free(l);
}

static void test_ledger_secondary(void)
{
    /* Other cardiac alerts (type 0: sudden change, at rest...) within two
     * minutes of an episode are secondary; farther away they are false. */
    vg_simledger_t *l = vg_simledger_new(2, 0);
    VT_REQUIRE(l != NULL);
    int64_t t0 = 1000000;
    for (int i = 0; i < 40; i++) {
        int an = i >= 5 && i < 38 ? VG_SIMDEV_HIGH : 0;
        vg_simdev_sample_t s = sample(t0 + 1000 * i, an, i == 5);
        s.episode_end = i == 37;
        vg_simledger_sent(l, 0, &s, 10 + (uint64_t)i);
    }
    /* the episode spans t0 + 5000 .. t0 + 37000 */
    uint64_t sent;
    /* the jump into it, and the drop out of it (whose sample is still in the ring) */
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 6000, 0x51, &sent), VG_SIMLEDGER_SECONDARY);
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 38000, 0x52, &sent), VG_SIMLEDGER_SECONDARY);
    VT_EQ_INT(sent, 48);
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 5000 - 120000, 0x53, &sent), VG_SIMLEDGER_SECONDARY);
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 37000 + 120000, 0x54, &sent), VG_SIMLEDGER_SECONDARY);
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 5000 - 120001, 0x55, &sent), VG_SIMLEDGER_FALSE);
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 37000 + 120001, 0x56, &sent), VG_SIMLEDGER_FALSE);
    VT_EQ_INT(open_alert(l, 1, 0, t0 + 6000, 0x57, &sent), VG_SIMLEDGER_FALSE); /* another device */
    /* an extreme alert of the other type near the episode is no side effect */
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_LOW, t0 + 6000, 0x58, &sent), VG_SIMLEDGER_FALSE);
    VT_EQ_INT(vg_simledger_detected(l), 0);
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_HIGH, t0 + 35000, 0x59, &sent), VG_SIMLEDGER_DETECTED);
    vg_simledger_free(l);

    /* At long intervals the window grows by two of them. */
    l = vg_simledger_new(1, 25);
    VT_REQUIRE(l != NULL);
    for (int i = 0; i < 8; i++) {
        vg_simdev_sample_t s = sample(t0 + 25000 * i, i >= 1 && i < 6 ? VG_SIMDEV_LOW : 0, i == 1);
        s.episode_end = i == 5;
        vg_simledger_sent(l, 0, &s, 1);
    }
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 125000 + 170000, 1, &sent), VG_SIMLEDGER_SECONDARY);
    VT_EQ_INT(open_alert(l, 0, 0, t0 + 125000 + 170001, 2, &sent), VG_SIMLEDGER_FALSE);
    vg_simledger_free(l);
}

static void test_ledger_first_send_outlives_ring(void)
{
    /* A fast device sends many events before the alert arrives: the
     * episode's first event keeps its send time. */
    vg_simledger_t *l = vg_simledger_new(1, 1);
    vg_simdev_sample_t s = sample(10, VG_SIMDEV_LOW, 1);
    vg_simledger_sent(l, 0, &s, 777);
    for (int i = 1; i < 100; i++) {
        s = sample(10 + i, i < 4 ? VG_SIMDEV_LOW : 0, 0);
        s.episode_end = i == 3;
        vg_simledger_sent(l, 0, &s, 777 + (uint64_t)i);
    }
    uint64_t sent;
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_LOW, 10, 1, &sent), VG_SIMLEDGER_DETECTED);
    VT_EQ_INT(sent, 777);
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_LOW, 12, 2, &sent), VG_SIMLEDGER_DUPLICATE);
    VT_EQ_INT(sent, 0); /* long gone from the ring */
    vg_simledger_free(l);
    vg_simledger_free(NULL);
}

/* The worker→parent message carries the three histograms in their own
 * places: what a worker recorded as PUBACK, PUBACK with the fleet connected
 * and alert latency comes back as each, whole, also through merge. */
static void test_report_histograms_round_trip(void)
{
    vg_simcounters_t c = {.devices = 3, .sent = 10, .acked = 9};
    vg_simhist_t h[3];
    for (int k = 0; k < 3; k++) {
        vg_simhist_init(&h[k]);
        for (int i = 0; i <= k; i++)
            vg_simhist_record(&h[k], 1000u * (uint64_t)(k + 1) + (uint64_t)i);
    }
    int fds[2];
    VT_REQUIRE(pipe(fds) == 0);
    VT_REQUIRE(vg_simreport_write(fds[1], VG_SIMREPORT_FINAL, &c, &h[0], &h[1], &h[2], NULL, 0) == VG_OK);
    static uint8_t buf[1 << 18];
    ssize_t n = read(fds[0], buf, sizeof buf);
    close(fds[0]);
    close(fds[1]);
    VT_REQUIRE(n > 0);
    vg_simreport_t *r = vg_simreport_new(), *sum = vg_simreport_new();
    VT_REQUIRE(r && sum);
    size_t used = 0;
    int kind = 0;
    VT_REQUIRE(vg_simreport_read(buf, (size_t)n, &used, &kind, r) == VG_OK);
    VT_CHECK(used == (size_t)n && kind == VG_SIMREPORT_FINAL);
    VT_CHECK(r->c.acked == 9);
    const vg_simhist_t *got[3] = {&r->ack, &r->ack_connected, &r->alert};
    for (int k = 0; k < 3; k++) {
        VT_EQ_INT(got[k]->count, k + 1);
        VT_EQ_INT(got[k]->max, 1000 * (k + 1) + k);
    }
    VT_REQUIRE(vg_simreport_merge(sum, r) == VG_OK);
    VT_REQUIRE(vg_simreport_merge(sum, r) == VG_OK);
    VT_EQ_INT(sum->ack_connected.count, 4);
    VT_EQ_INT(sum->alert.count, 6);
    /* Cut short by one byte: not a message yet. */
    VT_CHECK(vg_simreport_read(buf, (size_t)n - 1, &used, &kind, r) == VG_AGAIN);
    vg_simreport_free(r);
    vg_simreport_free(sum);
}

static void test_ledger_due_send_outlives_ring(void)
{
    /* The extreme detector names the sample that completes the sustain
     * time (episode_due) or the next one; an episode is far longer than
     * the ring, and a fast device may send many more before the alert
     * arrives, so the episode keeps those send times itself. Fed from the
     * real generator at 20 ms intervals: ~1600 samples per episode. */
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 0.02, 0.0);
    vg_simdev_t d;
    vg_simdev_init(&d, 5, 0);
    vg_simdev_force(&d, 1, VG_SIMDEV_HIGH);
    vg_simledger_t *l = vg_simledger_new(1, 1);
    VT_REQUIRE(l != NULL);
    int64_t t = 1764100800000, due_ts = 0, next_ts = 0, last_ts = 0, mid_ts = 0;
    uint64_t due_send = 0, next_send = 0, last_send = 0;
    int since_due = -1, samples = 0;
    for (int i = 0; i < 5000; i++) {
        vg_simdev_sample_t s;
        vg_simdev_next(&d, &cfg, t += 20, &s);
        uint64_t send = 1000000 + (uint64_t)i;
        vg_simledger_sent(l, 0, &s, send);
        samples += s.anomaly != 0;
        if (samples == 100 && s.anomaly)
            mid_ts = s.ts_ms;
        if (s.episode_end) {
            last_ts = s.ts_ms;
            last_send = send;
        }
        if (s.episode_due) {
            due_ts = s.ts_ms;
            due_send = send;
            since_due = 0;
        } else if (since_due >= 0) {
            since_due++;
            if (since_due == 1) {
                next_ts = s.ts_ms;
                next_send = send;
            }
        }
    }
    VT_CHECK(samples > 1500);
    VT_REQUIRE(due_ts && next_ts && last_ts && mid_ts);
    VT_CHECK(last_ts > next_ts); /* two samples after the due one */
    VT_EQ_INT(vg_simledger_cut(l), 0);
    uint64_t sent;
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_HIGH, due_ts, 7, &sent), VG_SIMLEDGER_DETECTED);
    VT_EQ_INT(sent, due_send);
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_HIGH, next_ts, 8, &sent), VG_SIMLEDGER_DUPLICATE);
    VT_EQ_INT(sent, next_send);
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_HIGH, last_ts, 9, &sent), VG_SIMLEDGER_DUPLICATE);
    VT_EQ_INT(sent, last_send);
    VT_EQ_INT(open_alert(l, 0, VG_SIMDEV_HIGH, mid_ts, 10, &sent), VG_SIMLEDGER_DUPLICATE);
    VT_EQ_INT(sent, 0); /* long gone from the ring, and no sample an extreme alert names */
    vg_simledger_free(l);
}

int main(void)
{
    VT_RUN(test_hist_empty);
    VT_RUN(test_hist_small_values_exact);
    VT_RUN(test_hist_uniform);
    VT_RUN(test_hist_lognormal);
    VT_RUN(test_hist_extremes);
    VT_RUN(test_hist_merge);
    VT_RUN(test_hist_encode);
    VT_RUN(test_device_normal_range);
    VT_RUN(test_device_rest_stays_low);
    VT_RUN(test_device_activity_steps);
    VT_RUN(test_device_anomalies);
    VT_RUN(test_device_episode_length);
    VT_RUN(test_device_episodes_fit_the_run);
    VT_RUN(test_device_rate);
    VT_RUN(test_device_forced);
    VT_RUN(test_device_timestamps);
    VT_RUN(test_device_reproducible);
    VT_RUN(test_payload_events);
    VT_RUN(test_payload_extremes);
    VT_RUN(test_payload_rejects);
    VT_RUN(test_ledger_matching);
    VT_RUN(test_ledger_secondary);
    VT_RUN(test_ledger_first_send_outlives_ring);
    VT_RUN(test_ledger_due_send_outlives_ring);
    VT_RUN(test_report_histograms_round_trip);
    return VT_DONE();
}
