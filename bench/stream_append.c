/* stream_append.c — latency and throughput of the stream's group commit.
 *
 * Measures, on the file system of the chosen directory (default: a fresh
 * directory under /tmp, removed afterwards):
 *   1. raw: pwrite of 500 bytes + fdatasync in a loop, the floor for (2);
 *   2. idle latency: one append at a time, time until its done callback
 *      (the record is durable), fsync policy always;
 *   3. paced latency: one producer at a fixed rate (default 20000 records/s)
 *      over all shards, time from each append to its callback;
 *   4. throughput: producer threads appending 500-byte records as fast as
 *      backpressure allows, fsync always, until the last callback.
 *
 * Build and run from the repository root:
 *   gcc -std=c17 -D_GNU_SOURCE -O2 -g -pthread -Isrc bench/stream_append.c \
 *       src/stream/*.c src/core/*.c \
 *       -o /tmp/stream_append -lcrypto
 *   /tmp/stream_append [records=500000] [shards=4] [threads=4] [dir]
 */
#include "core/clock.h"
#include "core/err.h"
#include "stream/log.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VALUE_LEN 500

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    printf("%-28s n=%zu avg %.3f ms  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", what, n, sum / (double)n / 1e6,
           (double)ns[n / 2] / 1e6, (double)ns[n * 9 / 10] / 1e6, (double)ns[n * 99 / 100] / 1e6,
           (double)ns[n - 1] / 1e6);
}

static void bench_raw(const char *dir, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/raw.dat", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror("open");
        return;
    }
    static char buf[VALUE_LEN + 32];
    memset(buf, 'r', sizeof buf);
    uint64_t *ns = calloc(n, sizeof *ns);
    off_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = vg_clock_mono_ns();
        if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf || fdatasync(fd) != 0) {
            perror("raw write");
            break;
        }
        off += (off_t)sizeof buf;
        ns[i] = vg_clock_mono_ns() - t0;
    }
    close(fd);
    unlink(path);
    report("raw pwrite+fdatasync", ns, n);
    free(ns);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t done;
    uint64_t last_ns;
    int errors;
} sink_t;

static void on_done(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    sink_t *s = ctx;
    uint64_t now = vg_clock_mono_ns();
    pthread_mutex_lock(&s->mu);
    s->done++;
    s->last_ns = now;
    s->errors += status != VG_OK;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void wait_done(sink_t *s, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    while (s->done < n)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void bench_latency(const char *dir, uint32_t shards, size_t n)
{
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = shards;
    vg_log_t *log;
    if (vg_log_open(dir, "latency", &o, &log) != VG_OK) {
        fprintf(stderr, "open failed\n");
        return;
    }
    sink_t s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    static char val[VALUE_LEN];
    memset(val, 'v', sizeof val);
    uint64_t *ns = calloc(n, sizeof *ns);
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, "device-%zu", i % 1000);
        uint64_t t0 = vg_clock_mono_ns();
        vg_log_append(log, key, (size_t)kl, NULL, 0, val, sizeof val, vg_clock_wall_ms(), on_done, &s, i, NULL, NULL);
        wait_done(&s, i + 1);
        ns[i] = s.last_ns - t0;
    }
    vg_log_close(log);
    report("idle append->durable", ns, n);
    free(ns);
}

typedef struct {
    sink_t sink;
    uint64_t *t_append; /* by token */
    uint64_t *lat;
} paced_t;

static void on_paced(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    paced_t *p = ctx;
    p->lat[token] = vg_clock_mono_ns() - p->t_append[token];
    on_done(&p->sink, status, shard, seq, token);
}

static void bench_paced(const char *dir, uint32_t shards, unsigned rate, unsigned seconds)
{
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = shards;
    vg_log_t *log;
    if (vg_log_open(dir, "paced", &o, &log) != VG_OK) {
        fprintf(stderr, "open failed\n");
        return;
    }
    size_t n = (size_t)rate * seconds;
    paced_t p = {.sink = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER}};
    p.t_append = calloc(n, sizeof *p.t_append);
    p.lat = calloc(n, sizeof *p.lat);
    static char val[VALUE_LEN];
    memset(val, 'q', sizeof val);
    char key[32];
    uint64_t start = vg_clock_mono_ns(), period = 1000000000ull / rate;
    for (size_t i = 0; i < n; i++) {
        /* Sleep rather than spin: on a busy machine a spinning producer
         * would take the committer's CPU and measure the scheduler. */
        uint64_t due = start + i * period;
        while (vg_clock_mono_ns() < due) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
        int kl = snprintf(key, sizeof key, "device-%zu", i % 10000);
        p.t_append[i] = vg_clock_mono_ns();
        vg_log_append(log, key, (size_t)kl, NULL, 0, val, sizeof val, 0, on_paced, &p, i, NULL, NULL);
    }
    wait_done(&p.sink, n);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    vg_log_close(log);
    char what[64];
    snprintf(what, sizeof what, "paced %u/s append->durable", rate);
    report(what, p.lat, n);
    printf("%-28s %llu commits (%.1f rec/commit), %llu fsyncs\n", "", (unsigned long long)st.commits,
           (double)n / (double)(st.commits ? st.commits : 1), (unsigned long long)st.fsyncs);
    free(p.t_append);
    free(p.lat);
}

typedef struct {
    vg_log_t *log;
    sink_t *sink;
    size_t n;
    int id;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    static char val[VALUE_LEN];
    memset(val, 'p', sizeof val);
    char key[32];
    for (size_t i = 0; i < p->n; i++) {
        int kl = snprintf(key, sizeof key, "dev-%d-%zu", p->id, i % 5000);
        if (vg_log_append(p->log, key, (size_t)kl, NULL, 0, val, sizeof val, 0, on_done, p->sink, i, NULL, NULL) !=
            VG_OK)
            break;
    }
    return NULL;
}

static void bench_throughput(const char *dir, uint32_t shards, int threads, size_t total)
{
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = shards;
    vg_log_t *log;
    char name[32];
    snprintf(name, sizeof name, "tp-%u-%d", shards, threads);
    if (vg_log_open(dir, name, &o, &log) != VG_OK) {
        fprintf(stderr, "open failed\n");
        return;
    }
    sink_t s = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t th[64];
    producer_t p[64];
    uint64_t t0 = vg_clock_mono_ns();
    for (int t = 0; t < threads; t++) {
        p[t] = (producer_t){.log = log, .sink = &s, .n = total / (size_t)threads, .id = t};
        pthread_create(&th[t], NULL, produce, &p[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    size_t want = total / (size_t)threads * (size_t)threads;
    wait_done(&s, want);
    double secs = (double)(s.last_ns - t0) / 1e9;
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    vg_log_close(log);
    printf("throughput %u shards %d thr    %zu records in %.2f s = %.0f rec/s, %.1f MB/s; %llu commits "
           "(%.0f rec/commit), %llu fsyncs, %llu append waits, %d errors\n",
           shards, threads, want, secs, (double)want / secs, (double)st.bytes_written / secs / 1e6,
           (unsigned long long)st.commits, (double)want / (double)(st.commits ? st.commits : 1),
           (unsigned long long)st.fsyncs, (unsigned long long)st.append_waits, s.errors);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(int argc, char **argv)
{
    size_t records = argc > 1 ? strtoull(argv[1], NULL, 10) : 500000;
    uint32_t shards = argc > 2 ? (uint32_t)atoi(argv[2]) : 4;
    int threads = argc > 3 ? atoi(argv[3]) : 4;
    char tmpl[] = "/tmp/vg-bench.XXXXXX";
    const char *dir = argc > 4 ? argv[4] : mkdtemp(tmpl);
    if (!dir || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: %s [records] [shards] [threads] [dir]\n", argv[0]);
        return 2;
    }
    bench_raw(dir, 2000);
    bench_latency(dir, shards, 2000);
    bench_paced(dir, shards, 20000, 2);
    bench_throughput(dir, shards, threads, records);
    bench_throughput(dir, 1, 1, records);
    if (argc <= 4)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
