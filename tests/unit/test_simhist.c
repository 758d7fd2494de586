/* test_simhist.c — the simulator's latency histogram (percentile error,
 * merge, encoding), its event generator (value ranges, anomaly episodes,
 * timestamps, the rendered PUBLISH packet and its JSON payload) and the
 * ledger that matches alerts to injected episodes. */
#include "core/event.h"
#include "core/json.h"
#include "mqtt/codec.h"
#include "sim/device.h"
#include "sim/hist.h"
#include "sim/ledger.h"
#include "sim/payload.h"
#include "vt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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
    static const double intervals[] = {0.0005, 1, 5, 60};
    int rest_steps_ok = 1, in_range = 1, no_anomaly = 1, steps_nonneg = 1, moved = 0;
    for (size_t k = 0; k < sizeof intervals / sizeof intervals[0]; k++) {
        vg_simdev_cfg_t cfg;
        vg_simdev_cfg_init(&cfg, intervals[k], 0.0);
        for (uint32_t dev = 0; dev < 200; dev++) {
            vg_simdev_t d;
            vg_simdev_init(&d, 7, dev);
            int64_t t = 1764100800000;
            int first = -1;
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
                if (s.steps < 0)
                    steps_nonneg = 0;
                if (first < 0)
                    first = s.heart_rate;
                else if (s.heart_rate != first)
                    moved = 1;
            }
        }
    }
    VT_CHECK(in_range);
    VT_CHECK(no_anomaly);
    VT_CHECK(rest_steps_ok);
    VT_CHECK(steps_nonneg);
    VT_CHECK(moved); /* it is a random walk, not a constant */
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

static void test_device_anomalies(void)
{
    vg_simdev_cfg_t cfg;
    vg_simdev_cfg_init(&cfg, 5, 1.0); /* an episode whenever allowed */
    int ranges_ok = 1, lengths_ok = 1, gap_ok = 1, first_normal = 1, high = 0, low = 0;
    for (uint32_t dev = 0; dev < 100; dev++) {
        vg_simdev_t d;
        vg_simdev_init(&d, 11, dev);
        int64_t t = 1764100800000;
        int run = 0, cur = 0, normals_since = 99;
        for (int i = 0; i < 500; i++) {
            vg_simdev_sample_t s;
            vg_simdev_next(&d, &cfg, t += 5000, &s);
            if (i == 0 && s.anomaly)
                first_normal = 0;
            if (s.anomaly == VG_SIMDEV_HIGH &&
                (s.heart_rate < VG_SIMDEV_HIGH_MIN || s.heart_rate > VG_SIMDEV_HIGH_MAX || s.heart_rate <= 140))
                ranges_ok = 0;
            if (s.anomaly == VG_SIMDEV_LOW &&
                (s.heart_rate < VG_SIMDEV_LOW_MIN || s.heart_rate > VG_SIMDEV_LOW_MAX || s.heart_rate >= 40))
                ranges_ok = 0;
            if (!s.anomaly && (s.heart_rate < VG_SIMDEV_HR_MIN || s.heart_rate > VG_SIMDEV_HR_MAX))
                ranges_ok = 0;
            if (s.episode_start) {
                if (run && (run < VG_SIMDEV_EPISODE_MIN || run > VG_SIMDEV_EPISODE_MAX))
                    lengths_ok = 0;
                if (normals_since < 1)
                    gap_ok = 0; /* a detector needs a normal sample to close an episode */
                high += s.anomaly == VG_SIMDEV_HIGH;
                low += s.anomaly == VG_SIMDEV_LOW;
                run = 0;
                cur = s.anomaly;
            }
            if (s.anomaly) {
                if (s.anomaly != cur)
                    lengths_ok = 0; /* type changed without a new episode */
                run++;
                normals_since = 0;
            } else {
                if (run && (run < VG_SIMDEV_EPISODE_MIN || run > VG_SIMDEV_EPISODE_MAX))
                    lengths_ok = 0;
                run = 0;
                normals_since++;
            }
        }
    }
    VT_CHECK(ranges_ok);
    VT_CHECK(lengths_ok);
    VT_CHECK(gap_ok);
    VT_CHECK(first_normal);
    VT_CHECK(high > 100 && low > 100);
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
    VT_CHECK(s.heart_rate < 40);
    int n = 1;
    for (;;) {
        vg_simdev_next(&d, &cfg, 1764100805000 + 5000 * n, &s);
        if (!s.anomaly)
            break;
        VT_CHECK(!s.episode_start);
        n++;
    }
    VT_CHECK(n >= VG_SIMDEV_EPISODE_MIN && n <= VG_SIMDEV_EPISODE_MAX);
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
                                .heart_rate = anomaly == VG_SIMDEV_HIGH  ? 160
                                              : anomaly == VG_SIMDEV_LOW ? 30
                                                                         : 70};
}

static void test_ledger_matching(void)
{
    vg_simledger_t *l = vg_simledger_new(4);
    VT_REQUIRE(l != NULL);
    vg_simdev_sample_t s;
    /* device 1: normal, HIGH episode at 2000..4000, normal, LOW at 7000..8000 */
    int64_t ts[] = {1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000};
    int an[] = {0, VG_SIMDEV_HIGH, VG_SIMDEV_HIGH, VG_SIMDEV_HIGH, 0, 0, VG_SIMDEV_LOW, VG_SIMDEV_LOW, 0};
    int st[] = {0, 1, 0, 0, 0, 0, 1, 0, 0};
    for (int i = 0; i < 9; i++) {
        s = sample(ts[i], an[i], st[i]);
        VT_EQ_INT(vg_simledger_sent(l, 1, &s, 100 + (uint64_t)i), 0);
    }
    /* device 2: one HIGH episode at 2000 only */
    s = sample(2000, VG_SIMDEV_HIGH, 1);
    vg_simledger_sent(l, 2, &s, 555);
    VT_EQ_INT(vg_simledger_episodes(l), 3);

    uint64_t sent;
    VT_EQ_INT(vg_simledger_alert(l, 1, VG_SIMDEV_HIGH, 2000, &sent), VG_SIMLEDGER_DETECTED);
    VT_EQ_INT(sent, 101);
    VT_EQ_INT(vg_simledger_alert(l, 1, VG_SIMDEV_HIGH, 3000, &sent), VG_SIMLEDGER_DUPLICATE);
    VT_EQ_INT(sent, 102);
    VT_EQ_INT(vg_simledger_alert(l, 1, VG_SIMDEV_LOW, 3000, &sent), VG_SIMLEDGER_FALSE);  /* wrong type */
    VT_EQ_INT(vg_simledger_alert(l, 1, VG_SIMDEV_HIGH, 5000, &sent), VG_SIMLEDGER_FALSE); /* after it */
    VT_EQ_INT(sent, 104); /* the event is still known: latency measurable */
    VT_EQ_INT(vg_simledger_alert(l, 1, VG_SIMDEV_LOW, 8000, &sent), VG_SIMLEDGER_DETECTED);
    VT_EQ_INT(vg_simledger_alert(l, 0, VG_SIMDEV_HIGH, 2000, &sent), VG_SIMLEDGER_FALSE); /* other device */
    VT_EQ_INT(sent, 0);
    VT_EQ_INT(vg_simledger_alert(l, 3, 0, 2000, &sent), VG_SIMLEDGER_FALSE);
    VT_EQ_INT(vg_simledger_detected(l), 2);

    vg_simepisode_t out[3];
    vg_simledger_export(l, 1000, out);
    VT_EQ_INT(out[0].device, 1001);
    VT_EQ_INT(out[0].type, VG_SIMDEV_HIGH);
    VT_EQ_INT(out[0].first_ts_ms, 2000);
    VT_EQ_INT(out[0].last_ts_ms, 4000);
    VT_EQ_INT(out[0].detected, 1);
    VT_EQ_INT(out[1].device, 1001);
    VT_EQ_INT(out[1].last_ts_ms, 8000);
    VT_EQ_INT(out[2].device, 1002);
    VT_EQ_INT(out[2].detected, 0);
    vg_simledger_free(l);
}

static void test_ledger_first_send_outlives_ring(void)
{
    /* A fast device sends many events before the alert arrives: the
     * episode's first event keeps its send time. */
    vg_simledger_t *l = vg_simledger_new(1);
    vg_simdev_sample_t s = sample(10, VG_SIMDEV_LOW, 1);
    vg_simledger_sent(l, 0, &s, 777);
    for (int i = 1; i < 100; i++) {
        s = sample(10 + i, i < 4 ? VG_SIMDEV_LOW : 0, 0);
        vg_simledger_sent(l, 0, &s, 777 + (uint64_t)i);
    }
    uint64_t sent;
    VT_EQ_INT(vg_simledger_alert(l, 0, VG_SIMDEV_LOW, 10, &sent), VG_SIMLEDGER_DETECTED);
    VT_EQ_INT(sent, 777);
    VT_EQ_INT(vg_simledger_alert(l, 0, VG_SIMDEV_LOW, 12, &sent), VG_SIMLEDGER_DUPLICATE);
    VT_EQ_INT(sent, 0); /* long gone from the ring */
    vg_simledger_free(l);
    vg_simledger_free(NULL);
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
    VT_RUN(test_device_activity_steps);
    VT_RUN(test_device_anomalies);
    VT_RUN(test_device_rate);
    VT_RUN(test_device_forced);
    VT_RUN(test_device_timestamps);
    VT_RUN(test_device_reproducible);
    VT_RUN(test_payload_events);
    VT_RUN(test_payload_extremes);
    VT_RUN(test_payload_rejects);
    VT_RUN(test_ledger_matching);
    VT_RUN(test_ledger_first_send_outlives_ring);
    return VT_DONE();
}
