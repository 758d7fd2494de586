/* test_processor.c — detector consumers: alerts once per episode, resume
 * from the checkpoint, and no alert emitted twice when a crash loses the
 * checkpoint (replay from the start recomputes but does not re-emit). */
#include "core/alloc.h"
#include "core/err.h"
#include "core/event.h"
#include "proc/processor.h"
#include "stream/log.h"
#include "vt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    atomic_int published;
    char last[1024];
    pthread_mutex_t mu;
} sink_t;

static void on_publish(void *ctx, const char *topic, size_t tlen, const char *payload, size_t plen)
{
    sink_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    snprintf(s->last, sizeof s->last, "%.*s %.*s", (int)tlen, topic, (int)plen, payload);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->published, 1);
}

static void append_event(vg_log_t *log, const char *dev, double hr, int64_t ts)
{
    vg_event_t ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.device_id, sizeof ev.device_id, "%s", dev);
    ev.device_id_len = strlen(dev);
    ev.heart_rate = hr;
    ev.steps = 0;
    ev.ts_ms = ts;
    uint8_t meta[VG_EVENT_META_LEN];
    vg_event_meta_encode(&ev, meta);
    char payload[128];
    int n = snprintf(payload, sizeof payload, "{\"deviceId\":\"%s\",\"heartRate\":%g}", dev, hr);
    vg_log_append(log, dev, strlen(dev), meta, sizeof meta, payload, (size_t)n, ts, NULL, NULL, 0, NULL, NULL);
}

typedef struct {
    char dir[64];
    vg_log_t *tel, *alerts;
    vg_processor_t *proc;
    sink_t sink;
} fx_t;

static int open_all(fx_t *f)
{
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    if (vg_log_open(f->dir, "telemetry", &o, &f->tel) || vg_log_open(f->dir, "alerts", &o, &f->alerts))
        return -1;
    vg_processor_opts_t po = {0};
    po.data_dir = f->dir;
    po.telemetry = f->tel;
    po.alerts = f->alerts;
    vg_threshold_cfg_default(&po.threshold);
    po.checkpoint_interval_ms = 20;
    po.publish = on_publish;
    po.publish_ctx = &f->sink;
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

static uint64_t wait_processed(fx_t *f, uint64_t want)
{
    vg_processor_stats_t st;
    for (int i = 0; i < 400; i++) {
        vg_processor_stats(f->proc, &st);
        if (st.processed >= want)
            return st.processed;
        usleep(5000);
    }
    return st.processed;
}

static void test_episodes_and_resume(void)
{
    fx_t f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.sink.mu, NULL);
    snprintf(f.dir, sizeof f.dir, "/tmp/vg-proc-XXXXXX");
    VT_REQUIRE(mkdtemp(f.dir) != NULL);
    VT_REQUIRE(open_all(&f) == 0);
    const double hrs[] = {72, 150, 155, 80, 150, 140, 30, 35, 60};
    for (int i = 0; i < 9; i++)
        append_event(f.tel, "dev-a", hrs[i], 1000 + i);
    VT_EQ_INT(wait_processed(&f, 9), 9);
    usleep(100000);
    /* 150 opens, 155 stays, 80 closes, 150 opens, 140 closes (not > 140),
     * 30 opens LOW, 35 stays, 60 closes: three alerts. */
    VT_EQ_INT(atomic_load(&f.sink.published), 3);
    VT_CHECK(strstr(f.sink.last, "alerts/dev-a ") == f.sink.last);
    VT_CHECK(strstr(f.sink.last, "\"type\":\"LOW_HEART_RATE\"") != NULL);
    close_all(&f);

    /* Clean restart: resumes after the checkpoint, nothing re-emitted. */
    atomic_store(&f.sink.published, 0);
    VT_REQUIRE(open_all(&f) == 0);
    append_event(f.tel, "dev-a", 170, 2000);
    VT_EQ_INT(wait_processed(&f, 1), 1);
    usleep(100000);
    VT_EQ_INT(atomic_load(&f.sink.published), 1);
    close_all(&f);

    /* Crash that lost every checkpoint: replay from the start recomputes the
     * same alerts but emits none of them again. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -f %s/consumers/detector/*.ckpt", f.dir);
    VT_REQUIRE(system(cmd) == 0);
    atomic_store(&f.sink.published, 0);
    VT_REQUIRE(open_all(&f) == 0);
    VT_EQ_INT(wait_processed(&f, 10), 10);
    usleep(100000);
    vg_processor_stats_t st;
    vg_processor_stats(f.proc, &st);
    VT_EQ_INT(atomic_load(&f.sink.published), 0);
    VT_EQ_INT(st.alerts_replayed, 4);
    /* A new episode after the replay is emitted. */
    append_event(f.tel, "dev-a", 80, 3000);
    append_event(f.tel, "dev-a", 20, 3001);
    VT_EQ_INT(wait_processed(&f, 12), 12);
    usleep(100000);
    VT_EQ_INT(atomic_load(&f.sink.published), 1);
    close_all(&f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", f.dir);
    VT_CHECK(system(cmd) == 0);
    pthread_mutex_destroy(&f.sink.mu);
}

static void test_damaged_checkpoint_refuses(void)
{
    fx_t f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.sink.mu, NULL);
    snprintf(f.dir, sizeof f.dir, "/tmp/vg-proc-XXXXXX");
    VT_REQUIRE(mkdtemp(f.dir) != NULL);
    VT_REQUIRE(open_all(&f) == 0);
    append_event(f.tel, "dev-b", 150, 1);
    VT_EQ_INT(wait_processed(&f, 1), 1);
    close_all(&f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "for f in %s/consumers/detector/*.ckpt; do printf 'garbage' >> $f; done", f.dir);
    VT_REQUIRE(system(cmd) == 0);
    VT_CHECK(open_all(&f) != 0); /* never guesses a position */
    vg_log_close(f.tel);
    vg_log_close(f.alerts);
    snprintf(cmd, sizeof cmd, "rm -rf %s", f.dir);
    VT_CHECK(system(cmd) == 0);
    pthread_mutex_destroy(&f.sink.mu);
}

int main(void)
{
    VT_RUN(test_episodes_and_resume);
    VT_RUN(test_damaged_checkpoint_refuses);
    return VT_DONE();
}
