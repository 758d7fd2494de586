/* detect_bench.c — cost of the full detector set per event and memory per
 * device (bench/run.sh, row d).
 *
 * Owns: a synthetic fleet, the per-event loop and the JSON report on
 * stdout. Does not own: anything it measures — that is the processor's
 * per-record path (process_record in src/proc/processor.c) rebuilt from the
 * same library calls, without the stream and the alert output:
 *   device table lookup (vg_devtable_get + vg_devtable_at),
 *   vg_devstate_feed (every detector: quality, rest, extreme, sudden,
 *   baseline), the alert lifecycle (vg_lifecycle_apply) when a detector
 *   reported a condition, the device's next deadline (vg_devstate_deadline)
 *   in the index timer wheel, and the wheel advanced to stream time, whose
 *   due devices run vg_devstate_tick (gaps, offline) and the lifecycle.
 * So the figure is the detectors' own cost, plus the bookkeeping the
 * processor cannot skip; decoding, the stream and alert rendering are not
 * in it.
 *
 * Fleet: `devices` wearables with ids "wearable-NNNNNNN" (16 bytes: stored
 * inline in the table, as the sim's ids), one event every 5 s each. Most
 * sit still (no steps: at rest after 5 minutes), every 64th runs, 1 in 50
 * samples has a few steps, heart rates follow a symmetric random walk with
 * a rare one-sample spike, and four small groups carry real anomalies
 * (sustained high heart rate at rest, an extreme episode that ends, a
 * sudden jump, a minute of silence: a data gap found by the wheel), so that
 * the lifecycle opens, updates and resolves alerts and ticks run.
 * Each round (one event per device) visits the devices in a fresh random
 * order, as interleaved traffic does, so the state of a device is not in
 * cache because its neighbour's was. The events of a round are generated
 * before the round's clock starts: the timed loop only reads them.
 *
 * Memory: the table's bytes come from the allocator's accounting
 * (VG_MEM_DETECT is charged by devtable.c only; the wheel is VG_MEM_PROC),
 * RSS from /proc/self/status before the first device and after the run
 * (so it includes allocator slack left by the table's growth).
 *
 * Usage: detect_bench [devices [events_per_device]]  (default 100000 200)
 * Output: one JSON object, fields described in bench/report.py (render_d). */
#include "alert/lifecycle.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/iwheel.h"
#include "proc/devstate.h"
#include "proc/devtable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* As the processor's wheel (processor.c). */
#define WHEEL_SLOTS 4096
#define WHEEL_TICK_MS 1000
#define INTERVAL_MS 5000
#define ID_CAP 24

/* A decoded record: the id travels with it, as the record's key does. */
typedef struct {
    double hr;
    int64_t steps;
    int64_t ts_ms;
    uint8_t idlen;
    char id[ID_CAP];
} event_t;

typedef struct {
    const vg_detect_cfg_t *cfg;
    vg_devtable_t *devs;
    vg_iwheel_t wheel;
    int64_t now_ms; /* stream time */
    uint64_t alert_events, conds, ticks, overflow, wheel_oom;
} bench_t;

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int on_event(void *ctx, const vg_alert_event_t *ev)
{
    (void)ev;
    ((bench_t *)ctx)->alert_events++;
    return VG_OK;
}

static void apply(bench_t *b, vg_devstate_t *st, const char *dev, size_t dlen, uint64_t seq, const vg_cond_t *conds,
                  int n)
{
    if (n <= 0)
        return;
    b->conds += (uint64_t)n;
    if (vg_lifecycle_apply(st->slots, dev, dlen, seq, conds, n, on_event, b) == VG_ELIMIT)
        b->overflow++;
}

/* processor.c's schedule(): lazy, a linked node whose deadline moved later
 * stays where it is and is re-added when it comes due. */
static void schedule(bench_t *b, uint32_t ix, const vg_devstate_t *st)
{
    int64_t d = vg_devstate_deadline(b->cfg, st);
    if (d == INT64_MAX)
        return;
    if (vg_iwheel_reserve(&b->wheel, ix + 1) != VG_OK) {
        b->wheel_oom++;
        return;
    }
    if (vg_iwheel_linked(&b->wheel, ix)) {
        if (vg_iwheel_deadline(&b->wheel, ix) <= d)
            return;
        vg_iwheel_remove(&b->wheel, ix);
    }
    vg_iwheel_add(&b->wheel, ix, d);
}

/* processor.c's on_deadline(). */
static void on_deadline(void *ctx, uint32_t ix)
{
    bench_t *b = ctx;
    const char *dev;
    size_t dlen;
    vg_devstate_t *st = vg_devtable_at(b->devs, ix, &dev, &dlen);
    if (!st)
        return;
    int64_t d = vg_devstate_deadline(b->cfg, st);
    if (d > b->now_ms) {
        if (d != INT64_MAX)
            vg_iwheel_add(&b->wheel, ix, d);
        return;
    }
    vg_cond_t conds[VG_DETECT_MAX_CONDS];
    int n = vg_devstate_tick(b->cfg, st, b->now_ms, conds);
    b->ticks++;
    apply(b, st, dev, dlen, 0, conds, n);
    int64_t nd = vg_devstate_deadline(b->cfg, st);
    if (nd != INT64_MAX) {
        if (nd <= b->now_ms)
            nd = b->now_ms + WHEEL_TICK_MS;
        vg_iwheel_add(&b->wheel, ix, nd);
    }
}

/* One record, as processor.c's process_record() after decoding. */
static int process(bench_t *b, const event_t *e, uint64_t seq)
{
    uint32_t ix;
    vg_devstate_t *st = vg_devtable_get(b->devs, e->id, e->idlen, &ix);
    if (!st)
        return VG_ENOMEM;
    const char *dev;
    size_t dlen;
    vg_devtable_at(b->devs, ix, &dev, &dlen);
    vg_cond_t conds[VG_DETECT_MAX_CONDS];
    int n = vg_devstate_feed(b->cfg, st, e->hr, e->steps, e->ts_ms, b->now_ms, seq, conds);
    apply(b, st, dev, dlen, seq, conds, n);
    schedule(b, ix, st);
    vg_iwheel_advance(&b->wheel, b->now_ms, on_deadline, b);
    return VG_OK;
}

/* Device d's heart rate in round k (k >= 1), from its random walk hr[d]. */
static double sample_hr(float *hr, uint32_t d, uint32_t k, uint32_t rounds, uint64_t r)
{
    /* Symmetric steps of -1.5..+1.5 bpm, kept within 45..170. */
    float h = hr[d] + (float)((int)(r % 7) - 3) * 0.5f;
    h = h < 45.0f ? 45.0f : h > 170.0f ? 170.0f : h;
    hr[d] = h;
    if (d % 997 == 1 && k > rounds / 2)
        return 135.0; /* sustained high heart rate at rest (rest.c) */
    if (d % 991 == 2 && k > rounds / 3 && k <= rounds / 3 + 20)
        return 190.0; /* 100 s above the extreme limit, then back (extreme.c) */
    if (d % 983 == 3 && k > rounds / 4)
        return h + 45.0; /* a sudden jump that stays (sudden.c) */
    if ((r >> 16) % 5000 == 0)
        return 190.0; /* a one-sample spike: must not alert */
    return h;
}

int main(int argc, char **argv)
{
    unsigned long dv = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    unsigned long pv = argc > 2 ? strtoul(argv[2], NULL, 10) : 200;
    if (argc > 3 || dv == 0 || dv > 50000000 || pv == 0 || pv > 100000) {
        fprintf(stderr, "usage: detect_bench [devices (1..50000000) [events_per_device (1..100000)]]\n");
        return 2;
    }
    uint32_t devices = (uint32_t)dv, rounds = (uint32_t)pv;
    vg_detect_cfg_t cfg;
    vg_detect_cfg_default(&cfg);
    bench_t b = {.cfg = &cfg};

    char *ids = malloc((size_t)devices * ID_CAP); /* ID_CAP bytes per device */
    uint8_t *idlen = malloc(devices);
    float *hr = malloc((size_t)devices * sizeof *hr);
    uint32_t *order = malloc((size_t)devices * sizeof *order);
    event_t *evs = malloc((size_t)devices * sizeof *evs);
    if (!ids || !idlen || !hr || !order || !evs) {
        fprintf(stderr, "detect_bench: out of memory\n");
        return 1;
    }
    for (uint32_t d = 0; d < devices; d++) {
        idlen[d] = (uint8_t)snprintf(ids + (size_t)d * ID_CAP, ID_CAP, "wearable-%07u", d);
        hr[d] = 60.0f + (float)(d % 20);
        order[d] = d;
    }
    for (uint32_t i = 0; i < devices; i++) /* touch every page before the baseline RSS */
        evs[i] = (event_t){0};

    long rss0 = rss_kb();
    size_t tab0 = vg_mem_used(VG_MEM_DETECT), wh0 = vg_mem_used(VG_MEM_PROC);
    if (vg_devtable_new(&b.devs) != VG_OK || vg_iwheel_init(&b.wheel, WHEEL_SLOTS, WHEEL_TICK_MS) != VG_OK) {
        fprintf(stderr, "detect_bench: out of memory\n");
        return 1;
    }

    /* Round 0, untimed: every device's first event creates it. */
    int64_t t0 = 1767571200000; /* 2026-01-05 00:00 UTC */
    uint64_t seq = 1;
    b.now_ms = t0;
    /* Start the wheel at the first stream time. Without this, the first add
     * sets the wheel's clock to that device's deadline (t0 + offline_after_s)
     * and every earlier deadline waits until then: no gap would be seen by
     * tick for the first 15 minutes. (processor.c adds before it first
     * advances, so it has that delay after each start.) */
    vg_iwheel_advance(&b.wheel, t0, on_deadline, &b);
    for (uint32_t d = 0; d < devices; d++) {
        event_t e = {.hr = hr[d], .steps = 0, .ts_ms = t0, .idlen = idlen[d]};
        memcpy(e.id, ids + (size_t)d * ID_CAP, ID_CAP);
        if (process(&b, &e, seq++) != VG_OK) {
            fprintf(stderr, "detect_bench: out of memory at device %u\n", d);
            return 1;
        }
    }
    size_t table_bytes = vg_mem_used(VG_MEM_DETECT) - tab0;

    uint64_t rng = 7, wall_ns = 0, cpu_ns = 0, events = 0;
    for (uint32_t k = 1; k <= rounds; k++) {
        /* Untimed: this round's order and events. */
        for (uint32_t i = devices - 1; i > 0; i--) {
            uint32_t j = (uint32_t)(rng_next(&rng) % (i + 1));
            uint32_t tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        int64_t base = t0 + (int64_t)k * INTERVAL_MS;
        uint32_t n = 0;
        for (uint32_t i = 0; i < devices; i++) {
            uint32_t d = order[i];
            uint64_t r = rng_next(&rng);
            if (d % 1009 == 4 && k > rounds / 2 && k <= rounds / 2 + 12)
                continue; /* a minute of silence (quality.c: gap) */
            event_t *e = &evs[n++];
            e->idlen = idlen[d];
            memcpy(e->id, ids + (size_t)d * ID_CAP, ID_CAP);
            e->hr = sample_hr(hr, d, k, rounds, r);
            e->steps = (d & 63) == 0 ? 14 : (r >> 8) % 50 == 0 ? 3 : 0;
            e->ts_ms = base + (int64_t)(r >> 40) % 300; /* arrival jitter, in order per device */
        }

        uint64_t w0 = vg_clock_mono_ns(), c0 = thread_cpu_ns();
        b.now_ms = base;
        for (uint32_t i = 0; i < n; i++) {
            if (process(&b, &evs[i], seq++) != VG_OK) {
                fprintf(stderr, "detect_bench: out of memory\n");
                return 1;
            }
        }
        cpu_ns += thread_cpu_ns() - c0;
        wall_ns += vg_clock_mono_ns() - w0;
        events += n;
    }
    long rss1 = rss_kb();
    size_t wheel_bytes = vg_mem_used(VG_MEM_PROC) - wh0;
    if (vg_devtable_count(b.devs) != devices) {
        fprintf(stderr, "detect_bench: %zu devices in the table, expected %u\n", vg_devtable_count(b.devs), devices);
        return 1;
    }

    double ns = (double)wall_ns / (double)events, cns = (double)cpu_ns / (double)events;
    printf("{\"devices\":%u,\"events_per_device\":%u,\"events\":%llu,\"interval_ms\":%d,"
           "\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"ns_per_event\":%.1f,\"cpu_ns_per_event\":%.1f,"
           "\"events_per_s\":%.0f,\"events_per_cpu_s\":%.0f,"
           "\"state_bytes\":%zu,\"table_bytes\":%zu,\"table_bytes_per_device\":%.1f,"
           "\"wheel_bytes_per_device\":%.1f,\"rss_bytes_per_device\":%.1f,"
           "\"conditions\":%llu,\"alert_events\":%llu,\"ticks\":%llu,\"slot_overflows\":%llu,"
           "\"wheel_oom\":%llu}\n",
           devices, rounds, (unsigned long long)events, INTERVAL_MS, (double)wall_ns / 1e9, (double)cpu_ns / 1e9, ns,
           cns, 1e9 / ns, 1e9 / cns, sizeof(vg_devstate_t), table_bytes, (double)table_bytes / devices,
           (double)wheel_bytes / devices, (double)(rss1 - rss0) * 1024.0 / devices, (unsigned long long)b.conds,
           (unsigned long long)b.alert_events, (unsigned long long)b.ticks, (unsigned long long)b.overflow,
           (unsigned long long)b.wheel_oom);

    vg_iwheel_deinit(&b.wheel);
    vg_devtable_free(b.devs);
    free(evs);
    free(order);
    free(hr);
    free(idlen);
    free(ids);
    return 0;
}
