/* test_processor.c — the detector consumers end to end over real streams:
 * one episode gives OPEN, UPDATE, RESOLVED under one alert id; a crash that
 * loses checkpoints (all of them, or the later ones) replays the telemetry
 * and emits no event twice; an acknowledgement is durable, reported once,
 * and survives a replay; silence is noticed by the timer wheel on stream
 * time; a damaged checkpoint stops the start. */
#include "alert/alert.h"
#include "core/alloc.h"
#include "core/bytes.h"
#include "core/crc32c.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/event.h"
#include "proc/devstate.h"
#include "proc/processor.h"
#include "stream/log.h"
#include "stream/segment.h"
#include "stream/shardmap.h"
#include "vt.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEP 5000
#define MAXEV 256

typedef struct {
    pthread_mutex_t mu;
    int n;
    char ev[MAXEV][1024];
    atomic_int acks;
    atomic_int ack_status;
} sink_t;

static void on_publish(void *ctx, const char *topic, size_t tlen, const char *payload, size_t plen)
{
    sink_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (s->n < MAXEV)
        snprintf(s->ev[s->n++], sizeof s->ev[0], "%.*s %.*s", (int)tlen, topic, (int)plen, payload);
    pthread_mutex_unlock(&s->mu);
}

static void on_ack(void *ctx, uint64_t token, int status, uint64_t alert_id, const char *dev, size_t dev_len)
{
    sink_t *s = ctx;
    atomic_store(&s->ack_status, status);
    atomic_fetch_add(&s->acks, 1);
}

/* Events published so far whose text contains every needle (NULL ends). */
static int count_ev(sink_t *s, const char *a, const char *b)
{
    int k = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        if ((!a || strstr(s->ev[i], a)) && (!b || strstr(s->ev[i], b)))
            k++;
    pthread_mutex_unlock(&s->mu);
    return k;
}

/* Appends one event with the given arrival stamp (the gateway's receive
 * time, which the stream keeps with the record). */
static void append_event_at(vg_log_t *log, const char *dev, double hr, int64_t steps, int64_t ts, int64_t arrival)
{
    vg_event_t ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.device_id, sizeof ev.device_id, "%s", dev);
    ev.device_id_len = strlen(dev);
    ev.heart_rate = hr;
    ev.steps = steps;
    ev.ts_ms = ts;
    uint8_t meta[VG_EVENT_META_LEN];
    vg_event_meta_encode(&ev, meta);
    char payload[128];
    int n = snprintf(payload, sizeof payload, "{\"deviceId\":\"%s\",\"heartRate\":%g}", dev, hr);
    vg_log_append(log, dev, strlen(dev), meta, sizeof meta, payload, (size_t)n, arrival, NULL, NULL, 0, NULL, NULL);
}

/* arrival = now, as the gateway stamps it (stream time's idle term is
 * measured between arrivals) */
static void append_event(vg_log_t *log, const char *dev, double hr, int64_t steps, int64_t ts)
{
    append_event_at(log, dev, hr, steps, ts, vg_clock_wall_ms());
}

typedef struct {
    char *dir; /* vt_tmpdir_new; NULL if it could not be made */
    vg_log_t *tel, *alerts;
    vg_processor_t *proc;
    vg_detect_cfg_t cfg;
    sink_t sink;
    uint64_t appended;
    bool tuned;             /* open_all uses tuned_cfg instead of the defaults */
    vg_detect_cfg_t tuned_cfg;
    const vg_seg_io_t *alerts_io; /* file operations of the alerts stream; NULL = the real ones */
} fx_t;

static int open_all(fx_t *f)
{
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    if (vg_log_open(f->dir, "telemetry", &o, &f->tel))
        return -1;
    o.io = f->alerts_io;
    if (vg_log_open(f->dir, "alerts", &o, &f->alerts))
        return -1;
    if (f->tuned)
        f->cfg = f->tuned_cfg;
    else
        vg_detect_cfg_default(&f->cfg);
    vg_processor_opts_t po = {0};
    po.data_dir = f->dir;
    po.telemetry = f->tel;
    po.alerts = f->alerts;
    po.cfg = &f->cfg;
    po.checkpoint_interval_ms = 20;
    po.publish = on_publish;
    po.publish_ctx = &f->sink;
    po.ack_done = on_ack;
    po.ack_ctx = &f->sink;
    return vg_processor_start(&po, &f->proc);
}

static void close_all(fx_t *f)
{
    vg_processor_stop(f->proc);
    vg_log_close(f->tel);
    vg_log_close(f->alerts);
    f->proc = NULL;
    f->tel = f->alerts = NULL;
}

static void fx_init(fx_t *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->sink.mu, NULL);
    f->dir = vt_tmpdir_new("proc");
}

static void fx_done(fx_t *f)
{
    vt_tmpdir_free(f->dir);
    f->dir = NULL;
    pthread_mutex_destroy(&f->sink.mu);
}

static void sink_reset(sink_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->n = 0;
    pthread_mutex_unlock(&s->mu);
}

static uint64_t wait_processed(fx_t *f, uint64_t want)
{
    vg_processor_stats_t st;
    for (int i = 0; i < 1000; i++) {
        vg_processor_stats(f->proc, &st);
        if (st.processed >= want && st.lag == 0)
            break;
        usleep(5000);
    }
    usleep(150000); /* let the last alerts become durable and publish */
    vg_processor_stats(f->proc, &st);
    return st.processed;
}

/* Resting samples around hr (+-1: never a flat line). */
static int64_t feed_rest(fx_t *f, const char *dev, int n, double hr, int64_t t)
{
    static const int wobble[4] = {0, 1, 0, -1};
    for (int i = 0; i < n; i++, t += STEP) {
        append_event(f->tel, dev, hr + wobble[i % 4], 0, t);
        f->appended++;
    }
    return t;
}

/* 1 bpm per sample: gradual, never "sudden". */
static int64_t feed_ramp(fx_t *f, const char *dev, double a, double b, int64_t t)
{
    double step = b > a ? 1 : -1;
    for (double h = a + step; (b - h) * step >= 0; h += step, t += STEP) {
        append_event(f->tel, dev, h, 0, t);
        f->appended++;
    }
    return t;
}

static const int64_t T0 = 1767571200000; /* 2026-01-05T00:00Z */

static void test_episode_update_and_replays(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    /* 7 min at rest, up to 130 for 12 min: OPEN (warning) */
    int64_t t = feed_rest(&f, "dev-a", 84, 70, T0);
    t = feed_ramp(&f, "dev-a", 70, 130, t);
    t = feed_rest(&f, "dev-a", 144, 130, t);
    wait_processed(&f, f.appended);
    VT_EQ_INT(count_ev(&f.sink, "\"event\":\"OPEN\"", "SUSTAINED_HIGH_HR_AT_REST"), 1);
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 1);
    VT_CHECK(strstr(f.sink.ev[0], "alerts/dev-a {") == f.sink.ev[0]);
    close_all(&f); /* clean stop: checkpoint holds the open alert */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/saved && cp %s/consumers/detector/*.ckpt %s/saved/", f.dir, f.dir, f.dir);
    VT_REQUIRE(system(cmd) == 0);

    /* up to 155 for 12 min: UPDATE (critical); back to 70: RESOLVED */
    VT_REQUIRE(open_all(&f) == 0);
    t = feed_ramp(&f, "dev-a", 130, 155, t);
    t = feed_rest(&f, "dev-a", 144, 155, t);
    t = feed_ramp(&f, "dev-a", 155, 70, t);
    t = feed_rest(&f, "dev-a", 140, 70, t);
    wait_processed(&f, f.appended);
    VT_EQ_INT(count_ev(&f.sink, "\"event\":\"UPDATE\"", "\"severity\":\"critical\""), 1);
    VT_EQ_INT(count_ev(&f.sink, "\"event\":\"RESOLVED\"", "\"revision\":2"), 1);
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 3);
    char id[40] = "";
    const char *p = strstr(f.sink.ev[0], "\"alertId\":\"");
    VT_REQUIRE(p != NULL);
    memcpy(id, p, 11 + 16 + 1);
    VT_EQ_INT(count_ev(&f.sink, id, NULL), 3); /* one alert id for the whole episode */
    close_all(&f);

    /* Crash that lost the later checkpoints: replay from the saved ones
     * recomputes UPDATE and RESOLVED and emits neither. */
    snprintf(cmd, sizeof cmd, "cp %s/saved/*.ckpt %s/consumers/detector/", f.dir, f.dir);
    VT_REQUIRE(system(cmd) == 0);
    sink_reset(&f.sink);
    VT_REQUIRE(open_all(&f) == 0);
    wait_processed(&f, f.appended - (84 + 60 + 144));
    vg_processor_stats_t st;
    vg_processor_stats(f.proc, &st);
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 0);
    VT_EQ_INT(st.alerts_replayed, 2);
    close_all(&f);

    /* Crash that lost every checkpoint: replay from the start, nothing emitted. */
    snprintf(cmd, sizeof cmd, "rm -f %s/consumers/detector/*.ckpt", f.dir);
    VT_REQUIRE(system(cmd) == 0);
    VT_REQUIRE(open_all(&f) == 0);
    wait_processed(&f, f.appended);
    vg_processor_stats(f.proc, &st);
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 0);
    VT_EQ_INT(st.alerts_replayed, 3);
    /* A new episode after the replay is emitted, with a new id. */
    t = feed_rest(&f, "dev-a", 12, 70, t);
    for (int i = 0; i < 10; i++, t += STEP) {
        append_event(f.tel, "dev-a", 200, 0, t);
        f.appended++;
    }
    wait_processed(&f, f.appended);
    VT_EQ_INT(count_ev(&f.sink, "\"event\":\"OPEN\"", "EXTREME_HIGH_HR"), 1);
    VT_EQ_INT(count_ev(&f.sink, id, NULL), 0);
    close_all(&f);
    fx_done(&f);
}

static void test_ack_durable_and_replayed(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    int64_t t = feed_rest(&f, "dev-b", 12, 70, T0);
    for (int i = 0; i < 10; i++, t += STEP) {
        append_event(f.tel, "dev-b", 30, 0, t);
        f.appended++;
    }
    wait_processed(&f, f.appended);
    VT_REQUIRE(count_ev(&f.sink, "\"event\":\"OPEN\"", "EXTREME_LOW_HR") == 1);
    const char *p = strstr(f.sink.ev[0], "\"alertId\":\"");
    VT_REQUIRE(p != NULL);
    uint64_t id = 0;
    VT_REQUIRE(vg_alert_id_parse(p + 11, 16, &id) == VG_OK);
    VT_EQ_INT(vg_processor_ack(f.proc, "dev-b", 5, id + 1, "nurse", NULL, 7), VG_OK);
    for (int i = 0; i < 200 && atomic_load(&f.sink.acks) < 1; i++)
        usleep(5000);
    VT_EQ_INT(atomic_load(&f.sink.ack_status), VG_ENOTFOUND);
    VT_EQ_INT(vg_processor_ack(f.proc, "dev-b", 5, id, "nurse", "seen", 8), VG_OK);
    for (int i = 0; i < 200 && atomic_load(&f.sink.acks) < 2; i++)
        usleep(5000);
    VT_EQ_INT(atomic_load(&f.sink.ack_status), VG_OK);
    VT_EQ_INT(count_ev(&f.sink, "\"event\":\"ACKNOWLEDGED\"", "\"by\":\"nurse\",\"note\":\"seen\""), 1);
    VT_EQ_INT(vg_processor_ack(f.proc, "dev-b", 5, id, "nurse", NULL, 9), VG_OK);
    for (int i = 0; i < 200 && atomic_load(&f.sink.acks) < 3; i++)
        usleep(5000);
    VT_EQ_INT(atomic_load(&f.sink.ack_status), VG_EEXIST);
    close_all(&f);
    /* lose the checkpoints: the replay must remember the acknowledgement */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -f %s/consumers/detector/*.ckpt", f.dir);
    VT_REQUIRE(system(cmd) == 0);
    sink_reset(&f.sink);
    VT_REQUIRE(open_all(&f) == 0);
    t = feed_rest(&f, "dev-b", 4, 70, t);
    wait_processed(&f, f.appended);
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 1);
    VT_EQ_INT(count_ev(&f.sink, "\"event\":\"RESOLVED\"", "\"acknowledged\":true"), 1);
    close_all(&f);
    fx_done(&f);
}

static void test_silence(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    /* q falls silent after 2 minutes; 12 others keep both shards' clocks going for 25 */
    int64_t t = T0;
    for (int i = 0; i < 300; i++, t += STEP) {
        if (i < 24) {
            append_event(f.tel, "q", 70 + (i % 3), 0, t);
            f.appended++;
        }
        for (int k = 0; k < 12; k++) {
            char d[16];
            snprintf(d, sizeof d, "keep-%d", k);
            append_event(f.tel, d, 70 + ((i + k) % 3), 0, t);
            f.appended++;
        }
    }
    wait_processed(&f, f.appended);
    VT_EQ_INT(count_ev(&f.sink, "alerts/q ", "\"type\":\"DATA_GAP\",\"category\":\"data_quality\""), 1);
    VT_EQ_INT(count_ev(&f.sink, "alerts/q ", "\"type\":\"DEVICE_OFFLINE\""), 1);
    /* noticed on time: a gap is 15 s of stream time after q was last heard
     * (stream time lags the newest record by about half the median's 16
     * records, so in event time that is 10-15 s), not at the offline
     * deadline 15 min later (the wheel's clock must start at stream time) */
    pthread_mutex_lock(&f.sink.mu);
    long long gap_at = 0;
    for (int i = 0; i < f.sink.n; i++) {
        const char *e = strstr(f.sink.ev[i], "\"type\":\"DATA_GAP\"");
        const char *tp = strstr(f.sink.ev[i], "\"eventTimeMs\":");
        if (e && tp && strncmp(f.sink.ev[i], "alerts/q ", 9) == 0 && strstr(f.sink.ev[i], "\"event\":\"OPEN\""))
            gap_at = atoll(tp + 14);
    }
    pthread_mutex_unlock(&f.sink.mu);
    long long last_q = T0 + 23 * STEP;
    if (!(gap_at >= last_q + STEP && gap_at <= last_q + 7 * STEP))
        fprintf(stdout, "  DATA_GAP event at %lld, q last heard at %lld\n", gap_at, last_q);
    VT_CHECK(gap_at >= last_q + STEP && gap_at <= last_q + 7 * STEP);
    VT_EQ_INT(count_ev(&f.sink, "alerts/keep-", NULL), 0);
    vg_processor_stats_t st;
    vg_processor_stats(f.proc, &st);
    VT_CHECK(st.ticks >= 2);
    VT_EQ_INT(st.open_alerts, 2);
    append_event(f.tel, "q", 70, 0, t);
    f.appended++;
    wait_processed(&f, f.appended);
    VT_EQ_INT(count_ev(&f.sink, "alerts/q ", "\"event\":\"RESOLVED\""), 2);
    vg_processor_stats(f.proc, &st);
    VT_EQ_INT(st.open_alerts, 0);
    close_all(&f);
    fx_done(&f);
}

/* Context switches so far of this process's threads named vg-proc-*. */
static long proc_thread_switches(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], l[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *st = fopen(path, "r");
        if (!st)
            continue;
        bool ours = false;
        while (fgets(l, sizeof l, st)) {
            if (strncmp(l, "Name:", 5) == 0)
                ours = strstr(l, "vg-proc-") != NULL;
            else if (ours && (strncmp(l, "voluntary_ctxt_switches:", 24) == 0 ||
                              strncmp(l, "nonvoluntary_ctxt_switches:", 27) == 0))
                total += atol(strchr(l, ':') + 1);
        }
        fclose(st);
    }
    closedir(d);
    return total;
}

/* Idle means asleep: a device that falls silent while nothing else arrives
 * is noticed by the wheel's own deadline (stream time runs with the wall
 * clock; no record, tick or checkpoint period wakes the shard), and
 * afterwards, with nothing due for 15 minutes and nothing to checkpoint,
 * the shard threads do not wake at all. */
static void test_idle_sleeps_until_due(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    /* 100 ms apart in event time, the last one now: a gap after 300 ms */
    int64_t now = vg_clock_wall_ms();
    for (int i = 0; i < 12; i++) {
        append_event(f.tel, "w", 70 + (i % 3), 0, now - 1100 + 100 * i);
        f.appended++;
    }
    uint64_t t0 = vg_clock_mono_ns();
    int gaps = 0;
    while ((gaps = count_ev(&f.sink, "alerts/w ", "\"type\":\"DATA_GAP\"")) == 0 &&
           vg_clock_mono_ns() - t0 < 10000000000ull)
        usleep(5000);
    uint64_t took_ms = (vg_clock_mono_ns() - t0) / 1000000u;
    fprintf(stdout, "  DATA_GAP noticed %llu ms after the last sample was appended\n", (unsigned long long)took_ms);
    VT_EQ_INT(gaps, 1);
    VT_CHECK(took_ms < 5000);
    /* let the checkpoint after the alert land, then count */
    vg_processor_stats_t st;
    for (int i = 0; i < 400; i++) {
        vg_processor_stats(f.proc, &st);
        if (st.checkpoints >= 2 && st.lag == 0)
            break;
        usleep(5000);
    }
    usleep(100000);
    long before = proc_thread_switches();
    usleep(1000000);
    long after = proc_thread_switches();
    fprintf(stdout, "  shard threads switched %ld times in 1 s of idleness\n", after - before);
    VT_CHECK(before >= 0 && after - before <= 4);
    close_all(&f);
    fx_done(&f);
}

/* Every alert event id in the alerts stream (both shards), in stream
 * order per shard; returns how many (at most cap). */
static int stored_event_ids(fx_t *f, uint64_t *out, int cap, const char *type_name)
{
    int n = 0;
    for (uint32_t sh = 0; sh < 2; sh++) {
        vg_log_reader_t *r;
        if (vg_log_reader_open(f->alerts, sh, 0, &r) != VG_OK)
            continue;
        vg_record_t rec;
        while (vg_log_reader_next(r, &rec) == VG_OK) {
            uint64_t eid;
            if (vg_alert_meta_decode(rec.meta, rec.meta_len, NULL, NULL, NULL, NULL, &eid, NULL) != VG_OK)
                continue;
            if (type_name && !memmem(rec.value, rec.value_len, type_name, strlen(type_name)))
                continue;
            if (getenv("VT_SHOW")) /* VT_SHOW=1: print what is stored, to debug a failure */
                fprintf(stdout, "  stored %u/%llu: %.*s\n", sh, (unsigned long long)rec.seq, (int)rec.value_len,
                        (const char *)rec.value);
            if (n < cap)
                out[n] = eid;
            n++;
        }
        vg_log_reader_close(r);
    }
    return n;
}

/* Stream time at a record is a function of the records (event times and
 * arrival stamps), not of when the processor reads them: a replay of the
 * same telemetry recomputes exactly the alert events of the first pass
 * (each one found in the alerts stream, none new). Devices here talk with
 * short pauses (their event times advance slower than the wall clock, so
 * the idle term matters), then fall silent long enough for DEVICE_OFFLINE,
 * found by the timer while idle; one comes back. The episodes' ids hang on
 * the stream time each device was last heard at. */
static void test_replay_sees_the_same_stream_time(void)
{
    fx_t f;
    fx_init(&f);
    vg_detect_cfg_default(&f.tuned_cfg);
    f.tuned_cfg.offline_after_s = 1.0;
    f.tuned_cfg.gap_factor = 1000; /* no DATA_GAP: offline only */
    f.tuned = true;
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    int64_t ts = T0;
    for (int k = 0; k < 6; k++, ts += 10) {
        append_event(f.tel, "o", 70 + k % 3, 0, ts);
        append_event(f.tel, "q", 70 + k % 3, 0, ts);
        f.appended += 2;
        usleep(30000);
    }
    for (int i = 0; i < 1000 && count_ev(&f.sink, "\"type\":\"DEVICE_OFFLINE\"", "\"event\":\"OPEN\"") < 2; i++)
        usleep(5000);
    VT_EQ_INT(count_ev(&f.sink, "\"type\":\"DEVICE_OFFLINE\"", "\"event\":\"OPEN\""), 2);
    append_event(f.tel, "o", 71, 0, ts);
    f.appended++;
    for (int i = 0; i < 1000 && count_ev(&f.sink, "\"type\":\"DEVICE_OFFLINE\"", "\"event\":\"RESOLVED\"") < 1; i++)
        usleep(5000);
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 3); /* OPEN o, OPEN q, RESOLVED o */
    close_all(&f);

    /* Every checkpoint lost: replay the telemetry from the start. Stop as
     * soon as it has caught up (o would go offline again a second later). */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s/consumers", f.dir);
    VT_REQUIRE(system(cmd) == 0);
    sink_reset(&f.sink);
    VT_REQUIRE(open_all(&f) == 0);
    vg_processor_stats_t st;
    for (int i = 0; i < 400; i++) {
        vg_processor_stats(f.proc, &st);
        if (st.processed >= f.appended && st.alerts_replayed >= 3)
            break;
        usleep(2000);
    }
    vg_processor_stop(f.proc);
    f.proc = NULL;
    if (f.sink.n)
        fprintf(stdout, "  emitted again: %.300s\n", f.sink.ev[0]);
    VT_EQ_INT(st.alerts_replayed, 3);
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 0);
    uint64_t ids[8];
    VT_EQ_INT(stored_event_ids(&f, ids, 8, NULL), 3);
    close_all(&f);
    fx_done(&f);
}

/* The silence timer fired while the shard was idle after record S (its
 * alert is durable, the checkpoint at S predates it), then the process
 * died. The next record had arrived a moment after S, before the timer
 * ran, but was read only after the restart: its stream time lies before
 * the deadline. Replaying, the wheel is raised to where it stood when it
 * fired (the stored alert says when), right after S, so the alert is
 * recomputed and suppressed there; not left to fire again once the record
 * after S has ended the replay (and with it the suppression). */
static void test_replay_rereaches_idle_ticks(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    /* 100 ms apart, arrival = event time, the last one now: a gap after 300 ms */
    int64_t now = vg_clock_wall_ms(), last = 0;
    for (int i = 0; i < 12; i++) {
        last = now - 1100 + 100 * i;
        append_event_at(f.tel, "g", 70 + (i % 3), 0, last, last);
        f.appended++;
    }
    for (int i = 0; i < 1000 && count_ev(&f.sink, "alerts/g ", "\"type\":\"DATA_GAP\"") == 0; i++)
        usleep(5000);
    VT_EQ_INT(count_ev(&f.sink, "alerts/g ", "\"type\":\"DATA_GAP\""), 1);
    close_all(&f); /* nothing new since the checkpoint at S: it stays the one from before the gap */

    /* another device of g's shard, arrived 10 ms after g's last sample */
    uint32_t gshard = vg_shardmap_shard(2, vg_shardmap_hash("g", 1));
    char h[16];
    for (int k = 0;; k++) {
        snprintf(h, sizeof h, "h-%d", k);
        if (vg_shardmap_shard(2, vg_shardmap_hash(h, strlen(h))) == gshard)
            break;
    }
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    VT_REQUIRE(vg_log_open(f.dir, "telemetry", &o, &f.tel) == VG_OK);
    append_event_at(f.tel, h, 70, 0, last + 10, last + 10);
    f.appended++;
    vg_log_close(f.tel);
    f.tel = NULL;

    sink_reset(&f.sink);
    VT_REQUIRE(open_all(&f) == 0);
    wait_processed(&f, 1);
    usleep(700000); /* past any deadline of g a late timer could still find */
    vg_processor_stats_t st;
    vg_processor_stats(f.proc, &st);
    VT_EQ_INT(count_ev(&f.sink, "alerts/g ", NULL), 0);
    VT_EQ_INT(st.alerts_replayed, 1);
    uint64_t ids[8];
    VT_EQ_INT(stored_event_ids(&f, ids, 8, "\"DATA_GAP\""), 1);
    close_all(&f);
    fx_done(&f);
}

/* A device whose clock runs 2 h ahead sends most of its shard's records:
 * the shard's stream time must not follow it (it is capped at the wall
 * clock + 1 min), so the honest device next to it is neither stale nor
 * skewed, and the future device is the one with CLOCK_SKEW. (Both may see a
 * DATA_GAP once they stop: the test does not wait for that.) */
static void test_future_clock_does_not_drag_time(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    const char *fut = "future-clock";
    char honest[32] = "";
    uint32_t want = vg_shardmap_shard(2, vg_shardmap_hash(fut, strlen(fut)));
    for (int k = 0; k < 1000 && !honest[0]; k++) {
        char id[32];
        snprintf(id, sizeof id, "honest-%d", k);
        if (vg_shardmap_shard(2, vg_shardmap_hash(id, strlen(id))) == want)
            snprintf(honest, sizeof honest, "%s", id);
    }
    VT_REQUIRE(honest[0]);
    /* a live-looking fleet: event times around the wall clock, 10 Hz */
    int64_t now = vg_clock_wall_ms() - 30000;
    for (int i = 0; i < 240; i++) {
        int64_t t = now + (int64_t)i * 100;
        append_event(f.tel, honest, 70 + (i % 3), 0, t);
        for (int k = 0; k < 3; k++)
            append_event(f.tel, fut, 70 + (i % 3), 0, t + 2 * 3600 * 1000 + k * 33);
        f.appended += 4;
    }
    wait_processed(&f, f.appended);
    VT_EQ_INT(count_ev(&f.sink, "\"type\":\"STALE_DATA\"", NULL), 0);
    VT_EQ_INT(count_ev(&f.sink, "\"type\":\"DEVICE_OFFLINE\"", NULL), 0);
    VT_EQ_INT(count_ev(&f.sink, "alerts/future-clock ", "\"type\":\"CLOCK_SKEW\""), 1);
    VT_EQ_INT(count_ev(&f.sink, "alerts/honest-", "\"type\":\"CLOCK_SKEW\""), 0);
    close_all(&f);
    fx_done(&f);
}

/* An upgrade that changed the device state's layout: the checkpoint keeps
 * its position (nothing is read twice) and device state starts from zero,
 * instead of refusing to start or misreading the old bytes. */
static void test_other_state_layout_keeps_position(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    int64_t t = feed_rest(&f, "dev-l", 40, 70, T0);
    VT_EQ_INT(wait_processed(&f, f.appended), (long long)f.appended);
    close_all(&f);
    /* rewrite every checkpoint with another layout number, CRC made valid
     * (the shard without a device never wrote one) */
    int rewritten = 0;
    for (int sh = 0; sh < 2; sh++) {
        char path[256];
        snprintf(path, sizeof path, "%s/consumers/detector/%d.ckpt", f.dir, sh);
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        VT_REQUIRE(n >= 188 + 12 + 4 && n < sizeof buf);
        vg_put_le32(buf + 188 + 4, VG_DEVSTATE_LAYOUT + 1);
        vg_put_le32(buf + n - 4, vg_crc32c(0, buf, n - 4));
        fp = fopen(path, "wb");
        VT_REQUIRE(fp != NULL);
        VT_REQUIRE(fwrite(buf, 1, n, fp) == n);
        fclose(fp);
        rewritten++;
    }
    VT_REQUIRE(rewritten == 1);
    VT_REQUIRE(open_all(&f) == 0);
    t = feed_rest(&f, "dev-m", 3, 70, t);
    wait_processed(&f, 3);
    vg_processor_stats_t st;
    vg_processor_stats(f.proc, &st);
    VT_EQ_INT(st.processed, 3); /* resumed after the checkpoint, not from the start */
    VT_EQ_INT(st.devices, 1);   /* state restarted: dev-l is forgotten, only dev-m is known */
    close_all(&f);
    fx_done(&f);
}

static void test_damaged_checkpoint_refuses(void)
{
    fx_t f;
    fx_init(&f);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    append_event(f.tel, "dev-c", 150, 0, T0);
    VT_EQ_INT(wait_processed(&f, 1), 1);
    close_all(&f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "for f in %s/consumers/detector/*.ckpt; do printf 'garbage' >> $f; done", f.dir);
    VT_REQUIRE(system(cmd) == 0);
    VT_CHECK(open_all(&f) != 0); /* never guesses a position */
    vg_log_close(f.tel);
    vg_log_close(f.alerts);
    fx_done(&f);
}

/* An alerts stream whose disk is full once `full` is set: every write
 * fails with ENOSPC, so the log pauses and, at close, gives up. */
static atomic_bool disk_full;

static ssize_t full_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
    if (atomic_load(&disk_full))
        return -ENOSPC;
    const vg_seg_io_t *real = vg_seg_io_default();
    return real->pwrite(real->ctx, fd, buf, n, off);
}

/* Stop gives up waiting for an alert that cannot be stored (FINAL_WAIT_MS);
 * its callback comes later, when the alerts stream closes and reports
 * VG_ENOSPC, and must find the processor's memory still alive (ASan run). */
static void test_alert_in_flight_at_stop(void)
{
    fx_t f;
    fx_init(&f);
    vg_seg_io_t io = *vg_seg_io_default();
    io.pwrite = full_pwrite;
    f.alerts_io = &io;
    atomic_store(&disk_full, false);
    VT_REQUIRE(f.dir && open_all(&f) == 0);
    atomic_store(&disk_full, true);
    int64_t t = feed_rest(&f, "dev-a", 84, 70, T0);
    t = feed_ramp(&f, "dev-a", 70, 130, t);
    feed_rest(&f, "dev-a", 144, 130, t);
    wait_processed(&f, f.appended);
    vg_processor_stats_t st;
    vg_processor_stats(f.proc, &st);
    VT_EQ_INT((int)st.processed, (int)f.appended);
    close_all(&f); /* stop times out on the alert; the alerts stream's close calls it back */
    VT_EQ_INT(count_ev(&f.sink, NULL, NULL), 0); /* never stored, never published */
    atomic_store(&disk_full, false);
    fx_done(&f);
}

int main(void)
{
    VT_RUN(test_episode_update_and_replays);
    VT_RUN(test_ack_durable_and_replayed);
    VT_RUN(test_silence);
    VT_RUN(test_idle_sleeps_until_due);
    VT_RUN(test_replay_sees_the_same_stream_time);
    VT_RUN(test_replay_rereaches_idle_ticks);
    VT_RUN(test_future_clock_does_not_drag_time);
    VT_RUN(test_other_state_layout_keeps_position);
    VT_RUN(test_damaged_checkpoint_refuses);
    VT_RUN(test_alert_in_flight_at_stop);
    return VT_DONE();
}
