/* test_log.c — the durable stream: append and read back, sequence numbers,
 * callbacks after durability, torn-tail recovery, segment rolling, read-only
 * readers, injected I/O failures, concurrent appenders, waiting. Each test
 * works in its own directory under /tmp (vt_tmpdir_new) and removes it. */
#include "stream/log.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/notify.h"
#include "stream/segment.h"
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* An I/O table that can fail syncs, fail writes after a number of calls, and
 * cut every write short. */
typedef struct {
    atomic_int fail_sync;   /* nonzero: fdatasync fails once syncs_left is used up */
    atomic_int syncs_left;  /* fdatasyncs that still succeed while fail_sync is set */
    atomic_int gate;        /* nonzero: pwrite waits (to line up a batch behind it) */
    atomic_int blocked;     /* set by a pwrite waiting at the gate */
    atomic_int writes_left; /* < 0: unlimited; else pwrite calls that still succeed */
    atomic_int max_write;   /* > 0: no pwrite writes more than this */
    atomic_int syncs;       /* successful fdatasyncs */
    atomic_int sync_errno;  /* errno of a failing fdatasync (0: EIO) */
    atomic_long space;      /* >= 0: bytes pwrite may still write, then ENOSPC (a full disk); < 0: unlimited */
    atomic_int enospc_open; /* nonzero: creating a file fails with ENOSPC */
    atomic_int enospc_hits; /* calls refused with ENOSPC */
    vg_seg_io_t io;
} fault_t;

static ssize_t fault_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
    fault_t *f = ctx;
    const vg_seg_io_t *d = vg_seg_io_default();
    while (atomic_load(&f->gate)) {
        atomic_store(&f->blocked, 1);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int left = atomic_load(&f->writes_left);
    if (left == 0)
        return -EIO;
    long space = atomic_load(&f->space);
    if (space == 0) {
        atomic_fetch_add(&f->enospc_hits, 1);
        return -ENOSPC;
    }
    if (space > 0) {
        /* A full disk takes what fits, then refuses: a short write first. */
        if (n > (size_t)space)
            n = (size_t)space;
        atomic_fetch_sub(&f->space, (long)n);
    }
    if (left > 0)
        atomic_fetch_sub(&f->writes_left, 1);
    int cap = atomic_load(&f->max_write);
    if (cap > 0 && n > (size_t)cap)
        n = (size_t)cap;
    return d->pwrite(d->ctx, fd, buf, n, off);
}

static int fault_fdatasync(void *ctx, int fd)
{
    fault_t *f = ctx;
    const vg_seg_io_t *d = vg_seg_io_default();
    if (atomic_load(&f->fail_sync) && atomic_fetch_sub(&f->syncs_left, 1) <= 0)
        return atomic_load(&f->sync_errno) ? -atomic_load(&f->sync_errno) : -EIO;
    int rc = d->fdatasync(d->ctx, fd);
    if (rc == 0)
        atomic_fetch_add(&f->syncs, 1);
    return rc;
}

static int fault_open(void *ctx, const char *path, int flags, mode_t mode)
{
    fault_t *f = ctx;
    const vg_seg_io_t *d = vg_seg_io_default();
    if ((flags & O_CREAT) && atomic_load(&f->enospc_open)) {
        atomic_fetch_add(&f->enospc_hits, 1);
        return -ENOSPC;
    }
    return d->open(d->ctx, path, flags, mode);
}

static void fault_init(fault_t *f)
{
    memset(f, 0, sizeof *f);
    f->io = *vg_seg_io_default();
    f->io.pwrite = fault_pwrite;
    f->io.fdatasync = fault_fdatasync;
    f->io.open = fault_open;
    f->io.ctx = f;
    atomic_store(&f->writes_left, -1);
    atomic_store(&f->space, -1);
}

/* Records every callback. */
typedef struct {
    int status;
    uint32_t shard;
    uint64_t seq;
    uint64_t token;
    uint64_t durable; /* vg_log_durable_seq seen inside the callback */
    int syncs;        /* fault->syncs seen inside the callback */
    uint64_t ns;      /* when */
} cb_rec_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cb_rec_t *v;
    size_t n, cap;
    vg_log_t *log;
    fault_t *fault;
} recorder_t;

static void rec_init(recorder_t *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void rec_deinit(recorder_t *r)
{
    free(r->v);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

static void on_done(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    recorder_t *r = ctx;
    cb_rec_t c = {.status = status,
                  .shard = shard,
                  .seq = seq,
                  .token = token,
                  .durable = r->log ? vg_log_durable_seq(r->log, shard) : 0,
                  .syncs = r->fault ? atomic_load(&r->fault->syncs) : 0,
                  .ns = vg_clock_mono_ns()};
    pthread_mutex_lock(&r->mu);
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->n++] = c;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Waits (up to 10 s) until n callbacks have run; returns how many did
 * (n = 0: just the count so far). */
static size_t rec_wait(recorder_t *r, size_t n)
{
    uint64_t deadline = vg_clock_mono_ns() + 10000000000ull;
    pthread_mutex_lock(&r->mu);
    while (r->n < n && vg_clock_mono_ns() < deadline) {
        pthread_mutex_unlock(&r->mu);
        sleep_ms(1);
        pthread_mutex_lock(&r->mu);
    }
    size_t got = r->n;
    pthread_mutex_unlock(&r->mu);
    return got;
}

static int append_str(vg_log_t *log, uint32_t shard, const char *key, const char *value, recorder_t *rec,
                      uint64_t token, uint64_t *seq)
{
    return vg_log_append_shard(log, shard, key, strlen(key), NULL, 0, value, strlen(value), 1000 + (int64_t)token,
                               rec ? on_done : NULL, rec, token, seq);
}

static void seg_path(char *out, size_t cap, const char *dir, const char *name, uint32_t shard, uint64_t first)
{
    snprintf(out, cap, "%s/stream/%s/%u/%020llu.seg", dir, name, shard, (unsigned long long)first);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Reads every available record of shard from seq start; checks they run
 * consecutively; returns the count (or -1 on an error code). */
static long read_all(vg_log_t *log, uint32_t shard, uint64_t start, uint64_t *first_seen, uint64_t *last_seen)
{
    vg_log_reader_t *r;
    if (vg_log_reader_open(log, shard, start, &r) != VG_OK)
        return -1;
    long n = 0;
    vg_record_t rec;
    int rc;
    uint64_t prev = 0;
    while ((rc = vg_log_reader_next(r, &rec)) == VG_OK) {
        if (n == 0 && first_seen)
            *first_seen = rec.seq;
        if (n > 0 && rec.seq != prev + 1) {
            n = -1;
            break;
        }
        prev = rec.seq;
        n++;
    }
    if (rc != VG_AGAIN && rc != VG_OK)
        n = -1;
    if (last_seen)
        *last_seen = prev;
    vg_log_reader_close(r);
    return n;
}

/* ---- tests ---- */

static void test_append_read_reopen(void)
{
    enum { N = 1000, SHARDS = 4 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = SHARDS;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "events", &o, &log) == VG_OK);
    VT_EQ_INT(vg_log_shard_count(log), SHARDS);
    VT_CHECK(strcmp(vg_log_name(log), "events") == 0);
    recorder_t rec;
    rec_init(&rec);
    rec.log = log;
    static uint32_t shard_of[N];
    static uint64_t seq_of[N];
    uint64_t next[SHARDS] = {1, 1, 1, 1};
    char key[32], val[64];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "dev-%d", i % 37);
        snprintf(val, sizeof val, "value-%d", i);
        uint32_t sh;
        uint64_t seq;
        int rc = vg_log_append(log, key, strlen(key), "m", 1, val, strlen(val), 1000 + i, on_done, &rec, (uint64_t)i,
                               &sh, &seq);
        VT_EQ_INT(rc, VG_OK);
        VT_REQUIRE(sh < SHARDS);
        VT_EQ_INT(sh, vg_shardmap_key(SHARDS, key, strlen(key)));
        VT_EQ_INT(seq, next[sh]);
        next[sh]++;
        shard_of[i] = sh;
        seq_of[i] = seq;
    }
    VT_EQ_INT(rec_wait(&rec, N), N);
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.v[i].token, i); /* append order */
        VT_EQ_INT(rec.v[i].status, VG_OK);
        VT_EQ_INT(rec.v[i].shard, shard_of[i]);
        VT_EQ_INT(rec.v[i].seq, seq_of[i]);
        VT_CHECK(rec.v[i].durable >= rec.v[i].seq);
    }
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_EQ_INT(st.appended, N);
    VT_EQ_INT(st.committed, N);
    VT_EQ_INT(st.pending_bytes, 0);
    VT_CHECK(st.commits >= 1 && st.fsyncs >= st.commits);
    vg_log_close(log);

    VT_REQUIRE(vg_log_open(dir, "events", &o, &log) == VG_OK);
    for (uint32_t s = 0; s < SHARDS; s++) {
        VT_EQ_INT(vg_log_durable_seq(log, s), next[s] - 1);
        VT_EQ_INT(vg_log_first_seq(log, s), next[s] > 1 ? 1 : 0);
        vg_log_reader_t *r;
        VT_REQUIRE(vg_log_reader_open(log, s, 0, &r) == VG_OK);
        vg_record_t rc_rec;
        for (int i = 0; i < N; i++) {
            if (shard_of[i] != s)
                continue;
            VT_REQUIRE(vg_log_reader_next(r, &rc_rec) == VG_OK);
            snprintf(key, sizeof key, "dev-%d", i % 37);
            snprintf(val, sizeof val, "value-%d", i);
            VT_EQ_INT(rc_rec.seq, seq_of[i]);
            VT_EQ_INT(rc_rec.shard, s);
            VT_EQ_INT(rc_rec.arrival_ms, 1000 + i);
            VT_CHECK(rc_rec.key_len == strlen(key) && memcmp(rc_rec.key, key, rc_rec.key_len) == 0);
            VT_CHECK(rc_rec.meta_len == 1 && rc_rec.meta[0] == 'm');
            VT_CHECK(rc_rec.value_len == strlen(val) && memcmp(rc_rec.value, val, rc_rec.value_len) == 0);
        }
        VT_EQ_INT(vg_log_reader_next(r, &rc_rec), VG_AGAIN);
        vg_log_reader_close(r);
    }
    /* Sequence numbers continue after the reopen. */
    uint32_t sh;
    uint64_t seq;
    VT_EQ_INT(vg_log_append(log, "dev-1", 5, NULL, 0, "x", 1, 0, NULL, NULL, 0, &sh, &seq), VG_OK);
    VT_EQ_INT(seq, next[sh]);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

static void test_callbacks_after_durable(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    fault_t f;
    fault_init(&f);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.io = &f.io;
    recorder_t rec;
    rec_init(&rec);
    rec.fault = &f;

    /* always: every callback comes after a sync that covered it. */
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "always", &o, &log) == VG_OK);
    rec.log = log;
    int base = atomic_load(&f.syncs);
    for (int i = 0; i < 200; i++) {
        VT_EQ_INT(append_str(log, (uint32_t)i % 2, "k", "payload", &rec, (uint64_t)i, NULL), VG_OK);
        if (i % 50 == 0)
            sleep_ms(2);
    }
    VT_EQ_INT(rec_wait(&rec, 200), 200);
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.v[i].status, VG_OK);
        VT_CHECK(rec.v[i].durable >= rec.v[i].seq);
        VT_CHECK(rec.v[i].syncs > base);
        VT_EQ_INT(rec.v[i].token, i);
    }
    vg_log_close(log);

    /* interval: records wait for the next sync, at most one per interval. */
    rec.n = 0;
    o.fsync = VG_FSYNC_INTERVAL;
    o.fsync_interval_ms = 500; /* far above a slow fdatasync, so timing cannot blur the two cases */
    VT_REQUIRE(vg_log_open(dir, "interval", &o, &log) == VG_OK);
    rec.log = log;
    uint64_t t0 = vg_clock_mono_ns();
    VT_EQ_INT(append_str(log, 0, "k", "a", &rec, 0, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 1), 1);
    uint64_t first_cb = rec.v[0].ns;
    VT_CHECK(first_cb - t0 < 400000000u); /* idle: synced at once */
    VT_EQ_INT(append_str(log, 0, "k", "b", &rec, 1, NULL), VG_OK);
    VT_EQ_INT(append_str(log, 1, "k", "c", &rec, 2, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 3), 3);
    VT_CHECK(rec.v[1].ns - first_cb >= 450000000u); /* waited for the interval */
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.v[i].status, VG_OK);
        VT_CHECK(rec.v[i].durable >= rec.v[i].seq);
        VT_EQ_INT(rec.v[i].token, i);
    }
    VT_CHECK(rec.v[1].syncs > rec.v[0].syncs);
    vg_log_close(log);

    /* none: callbacks after the write, without any fdatasync. */
    rec.n = 0;
    o.fsync = VG_FSYNC_NONE;
    VT_REQUIRE(vg_log_open(dir, "none", &o, &log) == VG_OK);
    rec.log = log;
    base = atomic_load(&f.syncs);
    for (int i = 0; i < 20; i++)
        VT_EQ_INT(append_str(log, 0, "k", "v", &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 20), 20);
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.v[i].status, VG_OK);
        VT_EQ_INT(rec.v[i].syncs, base);
        VT_CHECK(rec.v[i].durable >= rec.v[i].seq);
    }
    vg_log_close(log);
    VT_CHECK(atomic_load(&f.syncs) > base); /* close syncs whatever the policy */

    /* interval: close does not wait for the interval, it syncs at once. */
    rec.n = 0;
    o.fsync = VG_FSYNC_INTERVAL;
    o.fsync_interval_ms = 10000;
    VT_REQUIRE(vg_log_open(dir, "interval", &o, &log) == VG_OK);
    rec.log = NULL;
    VT_EQ_INT(append_str(log, 0, "k", "d", &rec, 0, NULL), VG_OK); /* synced at once: the first in a while */
    VT_EQ_INT(rec_wait(&rec, 1), 1);
    for (int i = 1; i < 4; i++)
        VT_EQ_INT(append_str(log, 1, "k", "e", &rec, (uint64_t)i, NULL), VG_OK);
    sleep_ms(20);
    VT_EQ_INT(rec_wait(&rec, 0), 1); /* written, waiting for the interval */
    t0 = vg_clock_mono_ns();
    vg_log_close(log);
    VT_CHECK(vg_clock_mono_ns() - t0 < 2000000000u);
    VT_EQ_INT(rec.n, 4);
    for (size_t i = 0; i < rec.n; i++)
        VT_EQ_INT(rec.v[i].status, VG_OK);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

static void test_torn_tail(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    /* File sizes below are data sizes: no zeros written ahead (test_prealloc). */
    o.prealloc_bytes = VG_LOG_PREALLOC_OFF;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "torn", &o, &log) == VG_OK);
    char val[64];
    for (int i = 1; i <= 100; i++) {
        snprintf(val, sizeof val, "record number %03d padded to a fixed size", i);
        VT_EQ_INT(append_str(log, 0, "key", val, NULL, (uint64_t)i, NULL), VG_OK);
    }
    vg_log_close(log);
    char path[512];
    seg_path(path, sizeof path, dir, "torn", 0, 1);
    off_t size = file_size(path);
    size_t rsize = vg_record_size(3, 0, strlen(val));
    VT_EQ_INT(size, VG_SEG_HDR + 100 * rsize);

    /* Chop the last record in the middle and append garbage after it. */
    VT_REQUIRE(truncate(path, size - 10) == 0);
    const char garbage[] = "\x13GARBAGE-GARBAGE-GARBAGE-GARBAGE-GARBAGE";
    int fd = open(path, O_WRONLY | O_APPEND);
    VT_REQUIRE(fd >= 0);
    VT_REQUIRE(write(fd, garbage, sizeof garbage) == (ssize_t)sizeof garbage);
    close(fd);

    VT_REQUIRE(vg_log_open(dir, "torn", &o, &log) == VG_OK);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_EQ_INT(st.truncated_bytes, rsize - 10 + sizeof garbage);
    VT_EQ_INT(file_size(path), VG_SEG_HDR + 99 * rsize);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 99);
    uint64_t first = 0, last = 0;
    VT_EQ_INT(read_all(log, 0, 0, &first, &last), 99);
    VT_EQ_INT(first, 1);
    VT_EQ_INT(last, 99);
    uint64_t seq;
    VT_EQ_INT(append_str(log, 0, "key", "the new 100", NULL, 0, &seq), VG_OK);
    VT_EQ_INT(seq, 100);
    vg_log_close(log);

    /* Garbage after complete records only: every record is kept. */
    fd = open(path, O_WRONLY | O_APPEND);
    VT_REQUIRE(fd >= 0);
    VT_REQUIRE(write(fd, garbage, 7) == 7);
    close(fd);
    VT_REQUIRE(vg_log_open(dir, "torn", &o, &log) == VG_OK);
    vg_log_stats(log, &st);
    VT_EQ_INT(st.truncated_bytes, 7);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 100);
    vg_log_reader_t *r;
    VT_REQUIRE(vg_log_reader_open(log, 0, 100, &r) == VG_OK);
    vg_record_t rec;
    VT_EQ_INT(vg_log_reader_next(r, &rec), VG_OK);
    VT_CHECK(rec.seq == 100 && rec.value_len == 11 && memcmp(rec.value, "the new 100", 11) == 0);
    vg_log_reader_close(r);
    vg_log_close(log);

    /* A valid record with the wrong sequence number (a copy of the first) is
     * cut like any other damage. */
    off_t before = file_size(path);
    uint8_t copy[256];
    fd = open(path, O_RDWR);
    VT_REQUIRE(fd >= 0);
    VT_REQUIRE(pread(fd, copy, rsize, VG_SEG_HDR) == (ssize_t)rsize);
    VT_REQUIRE(pwrite(fd, copy, rsize, before) == (ssize_t)rsize);
    close(fd);
    VT_REQUIRE(vg_log_open(dir, "torn", &o, &log) == VG_OK);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 100);
    VT_EQ_INT(file_size(path), before);
    vg_log_close(log);
    vt_tmpdir_free(dir);
}

typedef struct {
    vg_log_t *log;
    long want;
    long got;
    int bad;
} follower_t;

/* Follows shard 0 from the start as records become durable. */
static void *follow(void *arg)
{
    follower_t *fl = arg;
    vg_log_reader_t *r;
    if (vg_log_reader_open(fl->log, 0, 0, &r) != VG_OK) {
        fl->bad++;
        return NULL;
    }
    uint64_t last = 0;
    uint64_t deadline = vg_clock_mono_ns() + 10000000000ull;
    while (fl->got < fl->want && vg_clock_mono_ns() < deadline) {
        vg_record_t rec;
        int rc = vg_log_reader_next(r, &rec);
        if (rc == VG_AGAIN) {
            vg_log_wait(fl->log, 0, last, 100);
            continue;
        }
        if (rc != VG_OK || rec.seq != last + 1) {
            fl->bad++;
            break;
        }
        char want[64];
        snprintf(want, sizeof want, "payload %05llu for the rolling test....", (unsigned long long)rec.seq);
        if (rec.value_len != strlen(want) || memcmp(rec.value, want, rec.value_len) != 0)
            fl->bad++;
        last = rec.seq;
        fl->got++;
    }
    vg_log_reader_close(r);
    return NULL;
}

static void test_rolling(void)
{
    enum { N = 300 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    o.segment_bytes = 1024;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "roll", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    follower_t fl = {.log = log, .want = N};
    pthread_t th;
    VT_REQUIRE(pthread_create(&th, NULL, follow, &fl) == 0);
    char val[64];
    for (int i = 1; i <= N; i++) {
        snprintf(val, sizeof val, "payload %05d for the rolling test....", i);
        uint64_t seq;
        VT_EQ_INT(append_str(log, 0, "key-0001", val, &rec, (uint64_t)i, &seq), VG_OK);
        VT_EQ_INT(seq, i);
        if (i % 17 == 0)
            sleep_ms(1); /* batches of various sizes */
    }
    VT_EQ_INT(rec_wait(&rec, N), N);
    pthread_join(th, NULL);
    VT_EQ_INT(fl.got, N);
    VT_EQ_INT(fl.bad, 0);

    /* The segments: consecutive first numbers, none much past the limit. */
    size_t rsize = vg_record_size(8, 0, strlen(val));
    uint64_t *firsts = NULL;
    size_t n = 0;
    char sdir[512];
    snprintf(sdir, sizeof sdir, "%s/stream/roll/0", dir);
    VT_REQUIRE(vg_seg_list(vg_seg_io_default(), sdir, false, &firsts, &n) == VG_OK);
    VT_CHECK(n >= 10);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        seg_path(path, sizeof path, dir, "roll", 0, firsts[i]);
        off_t sz = file_size(path);
        if (i + 1 < n) {
            /* Finished: cut back to its data (the active one may continue
             * with zeros written ahead). */
            VT_CHECK(sz <= (off_t)(1024 + rsize));
            VT_CHECK(sz >= 1024);
            VT_EQ_INT(firsts[i + 1] - firsts[i], (uint64_t)(sz - VG_SEG_HDR) / rsize);
        }
    }
    vg_free(firsts);

    /* Readers starting mid-way and at LATEST. */
    uint64_t first = 0, last = 0;
    VT_EQ_INT(read_all(log, 0, 150, &first, &last), N - 149);
    VT_EQ_INT(first, 150);
    VT_EQ_INT(last, N);
    vg_log_reader_t *r;
    VT_REQUIRE(vg_log_reader_open(log, 0, UINT64_MAX, &r) == VG_OK);
    vg_record_t rr;
    VT_EQ_INT(vg_log_reader_next(r, &rr), VG_AGAIN);
    VT_EQ_INT(append_str(log, 0, "key-0001", "latest", &rec, 0, NULL), VG_OK);
    VT_EQ_INT(vg_log_wait(log, 0, N, 2000), VG_OK);
    VT_EQ_INT(vg_log_reader_next(r, &rr), VG_OK);
    VT_CHECK(rr.seq == N + 1 && rr.value_len == 6);
    vg_log_reader_close(r);
    vg_log_close(log);

    VT_REQUIRE(vg_log_open(dir, "roll", &o, &log) == VG_OK);
    VT_EQ_INT(read_all(log, 0, 0, &first, &last), N + 1);
    VT_EQ_INT(first, 1);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

static void on_name(void *ctx, const char *name)
{
    char *out = ctx;
    strcat(out, name);
    strcat(out, ";");
}

static void test_readonly(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.segment_bytes = 2048;
    vg_log_t *log, *ro;
    VT_EQ_INT(vg_log_open_readonly(dir, "s", &ro), VG_ENOTFOUND);
    VT_REQUIRE(vg_log_open(dir, "s", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    for (int i = 0; i < 50; i++)
        VT_EQ_INT(append_str(log, (uint32_t)i % 2, "k", "some value of moderate length", &rec, (uint64_t)i, NULL),
                  VG_OK);
    VT_EQ_INT(rec_wait(&rec, 50), 50);

    VT_REQUIRE(vg_log_open_readonly(dir, "s", &ro) == VG_OK);
    VT_EQ_INT(vg_log_shard_count(ro), 2);
    VT_EQ_INT(vg_log_durable_seq(ro, 0), 25);
    VT_EQ_INT(vg_log_durable_seq(ro, 1), 25);
    VT_EQ_INT(vg_log_first_seq(ro, 0), 1);
    VT_EQ_INT(vg_log_append_shard(ro, 0, "k", 1, NULL, 0, "v", 1, 0, NULL, NULL, 0, NULL), VG_EINVAL);
    vg_log_reader_t *r, *latest;
    VT_REQUIRE(vg_log_reader_open(ro, 0, 0, &r) == VG_OK);
    VT_REQUIRE(vg_log_reader_open(ro, 0, UINT64_MAX, &latest) == VG_OK);
    vg_record_t rr;
    uint64_t last = 0;
    int got = 0;
    while (vg_log_reader_next(r, &rr) == VG_OK) {
        VT_EQ_INT(rr.seq, last + 1);
        last = rr.seq;
        got++;
    }
    VT_EQ_INT(got, 25);
    VT_EQ_INT(vg_log_reader_next(latest, &rr), VG_AGAIN);
    VT_EQ_INT(vg_log_wait(ro, 0, 25, 30), VG_AGAIN);

    /* The writer goes on (crossing segments); the read-only side follows. */
    for (int i = 0; i < 40; i++)
        VT_EQ_INT(append_str(log, 0, "k", "more data for the read-only reader", &rec, (uint64_t)(50 + i), NULL), VG_OK);
    uint64_t deadline = vg_clock_mono_ns() + 5000000000ull;
    while (got < 65 && vg_clock_mono_ns() < deadline) {
        int rc = vg_log_reader_next(r, &rr);
        if (rc == VG_AGAIN) {
            vg_log_wait(ro, 0, last, 200);
            continue;
        }
        VT_REQUIRE(rc == VG_OK);
        VT_EQ_INT(rr.seq, last + 1);
        last = rr.seq;
        got++;
    }
    VT_EQ_INT(got, 65);
    VT_EQ_INT(vg_log_reader_next(latest, &rr), VG_OK);
    VT_EQ_INT(rr.seq, 26);
    vg_log_reader_close(latest);
    vg_log_reader_close(r);
    VT_EQ_INT(vg_log_durable_seq(ro, 0), 65);

    vg_log_t *other;
    VT_REQUIRE(vg_log_open(dir, "a-2", &o, &other) == VG_OK);
    vg_log_close(other);
    char names[256] = "";
    VT_EQ_INT(vg_log_list(dir, on_name, names), VG_OK);
    VT_CHECK(strcmp(names, "a-2;s;") == 0);
    vg_log_close(ro);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* A read-only reader waits at a partial record at the newest segment's end
 * (a writer may be copying it) but reports damage in a finished segment. */
static void test_readonly_damage(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    o.segment_bytes = 1024;
    vg_log_t *log, *ro;
    VT_REQUIRE(vg_log_open(dir, "d", &o, &log) == VG_OK);
    const char *val = "a value of sixty bytes or so, for a few records per segment";
    for (int i = 0; i < 50; i++)
        VT_EQ_INT(append_str(log, 0, "k", val, NULL, 0, NULL), VG_OK);
    vg_log_close(log);
    size_t rsize = vg_record_size(1, 0, strlen(val));

    /* Half a record after the last one: AGAIN, every time. */
    uint64_t *firsts = NULL;
    size_t n = 0;
    char sdir[512], path[512];
    snprintf(sdir, sizeof sdir, "%s/stream/d/0", dir);
    VT_REQUIRE(vg_seg_list(vg_seg_io_default(), sdir, false, &firsts, &n) == VG_OK && n >= 3);
    seg_path(path, sizeof path, dir, "d", 0, firsts[n - 1]);
    uint8_t rec[256];
    int fd = open(path, O_RDWR);
    VT_REQUIRE(fd >= 0);
    VT_REQUIRE(pread(fd, rec, rsize, VG_SEG_HDR) == (ssize_t)rsize);
    VT_REQUIRE(pwrite(fd, rec, rsize / 2, file_size(path)) == (ssize_t)(rsize / 2));
    close(fd);
    VT_REQUIRE(vg_log_open_readonly(dir, "d", &ro) == VG_OK);
    VT_EQ_INT(read_all(ro, 0, 0, NULL, NULL), 50);
    VT_EQ_INT(vg_log_durable_seq(ro, 0), 50);
    vg_log_reader_t *r;
    VT_REQUIRE(vg_log_reader_open(ro, 0, 0, &r) == VG_OK);
    vg_record_t rr;
    int got = 0, rc;
    while ((rc = vg_log_reader_next(r, &rr)) == VG_OK)
        got++;
    VT_EQ_INT(rc, VG_AGAIN);
    VT_EQ_INT(vg_log_reader_next(r, &rr), VG_AGAIN);
    vg_log_reader_close(r);

    /* A flipped byte in the first (finished) segment: damage, not AGAIN. */
    seg_path(path, sizeof path, dir, "d", 0, firsts[0]);
    fd = open(path, O_RDWR);
    VT_REQUIRE(fd >= 0);
    off_t at = VG_SEG_HDR + 2 * (off_t)rsize + VG_RECORD_HDR + 5; /* inside record 3's value */
    uint8_t b;
    VT_REQUIRE(pread(fd, &b, 1, at) == 1);
    b ^= 0x20;
    VT_REQUIRE(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    VT_REQUIRE(vg_log_reader_open(ro, 0, 0, &r) == VG_OK);
    got = 0;
    while ((rc = vg_log_reader_next(r, &rr)) == VG_OK)
        got++;
    VT_EQ_INT(got, 2);
    VT_EQ_INT(rc, VG_ECORRUPT);
    vg_log_reader_close(r);
    vg_log_close(ro);
    vg_free(firsts);
    vt_tmpdir_free(dir);
}

static void test_fsync_failure(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    fault_t f;
    fault_init(&f);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.io = &f.io;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "f", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    rec.log = log;
    for (int i = 0; i < 5; i++)
        VT_EQ_INT(append_str(log, 0, "k", "good", &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 5), 5);
    /* Hold the committer in the write of record 5 so that the next 13
     * records, on both shards, form one batch; record 5's sync succeeds, the
     * batch's two (parallel) syncs fail. */
    atomic_store(&f.gate, 1);
    atomic_store(&f.syncs_left, 1);
    atomic_store(&f.fail_sync, 1);
    VT_EQ_INT(append_str(log, 0, "k", "good", &rec, 5, NULL), VG_OK);
    for (int i = 0; i < 5000 && !atomic_load(&f.blocked); i++)
        sleep_ms(1);
    VT_REQUIRE(atomic_load(&f.blocked));
    for (int i = 6; i < 16; i++)
        VT_EQ_INT(append_str(log, 0, "k", "lost", &rec, (uint64_t)i, NULL), VG_OK);
    for (int i = 16; i < 19; i++)
        VT_EQ_INT(append_str(log, 1, "k", "lost", &rec, (uint64_t)i, NULL), VG_OK);
    atomic_store(&f.gate, 0);
    VT_EQ_INT(rec_wait(&rec, 19), 19);
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.v[i].token, i);
        VT_EQ_INT(rec.v[i].status, i < 6 ? VG_OK : VG_EIO);
        if (rec.v[i].status == VG_EIO)
            VT_CHECK(rec.v[i].durable < rec.v[i].seq);
    }
    VT_EQ_INT(vg_log_durable_seq(log, 0), 6);
    VT_EQ_INT(vg_log_durable_seq(log, 1), 0);
    VT_EQ_INT(append_str(log, 0, "k", "after", &rec, 99, NULL), VG_EIO);
    VT_EQ_INT(read_all(log, 0, 0, NULL, NULL), 6);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_CHECK(st.errors >= 1);
    VT_EQ_INT(st.committed, 6);
    vg_log_close(log);

    /* What was not reported stored is not there after a restart either. */
    atomic_store(&f.fail_sync, 0);
    VT_REQUIRE(vg_log_open(dir, "f", &o, &log) == VG_OK);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 6);
    VT_EQ_INT(vg_log_durable_seq(log, 1), 0);
    VT_EQ_INT(read_all(log, 0, 0, NULL, NULL), 6);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

static void test_write_failure(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    fault_t f;
    fault_init(&f);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    o.io = &f.io;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "w", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    rec.log = log;
    /* Short writes are completed, not mistaken for failures. */
    atomic_store(&f.max_write, 7);
    for (int i = 0; i < 20; i++)
        VT_EQ_INT(append_str(log, 0, "key", "short writes are fine", &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 20), 20);
    /* Then a write that stops half-way (a torn tail on disk), with the ten
     * records lined up behind the gate so that all of them are affected. */
    atomic_store(&f.gate, 1);
    VT_EQ_INT(append_str(log, 0, "key", "these will fail", &rec, 20, NULL), VG_OK);
    for (int i = 0; i < 5000 && !atomic_load(&f.blocked); i++)
        sleep_ms(1);
    VT_REQUIRE(atomic_load(&f.blocked));
    for (int i = 21; i < 30; i++)
        VT_EQ_INT(append_str(log, 0, "key", "these will fail", &rec, (uint64_t)i, NULL), VG_OK);
    atomic_store(&f.writes_left, 3);
    atomic_store(&f.gate, 0);
    VT_EQ_INT(rec_wait(&rec, 30), 30);
    for (size_t i = 0; i < rec.n; i++)
        VT_EQ_INT(rec.v[i].status, i < 20 ? VG_OK : VG_EIO);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 20);
    vg_log_close(log);
    /* The failed log cut its torn tail itself. */
    char path[512];
    seg_path(path, sizeof path, dir, "w", 0, 1);
    VT_EQ_INT(file_size(path), VG_SEG_HDR + 20 * vg_record_size(3, 0, strlen("short writes are fine")));

    atomic_store(&f.writes_left, -1);
    atomic_store(&f.max_write, 0);
    VT_REQUIRE(vg_log_open(dir, "w", &o, &log) == VG_OK);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_EQ_INT(st.truncated_bytes, 0);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 20);
    VT_EQ_INT(read_all(log, 0, 0, NULL, NULL), 20);
    uint64_t seq;
    VT_EQ_INT(append_str(log, 0, "key", "next", NULL, 0, &seq), VG_OK);
    VT_EQ_INT(seq, 21);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

enum { THREADS = 4, PER_THREAD = 5000, TSHARDS = 4 };

typedef struct {
    vg_log_t *log;
    recorder_t *rec;
    int id;
    uint32_t shard[PER_THREAD];
    uint64_t seq[PER_THREAD];
    int errors;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    char key[32], val[64];
    for (int j = 0; j < PER_THREAD; j++) {
        snprintf(key, sizeof key, "t%d-k%d", p->id, j % 101);
        snprintf(val, sizeof val, "thread %d record %d", p->id, j);
        uint64_t token = (uint64_t)p->id << 32 | (uint64_t)j;
        if (vg_log_append(p->log, key, strlen(key), NULL, 0, val, strlen(val), 0, on_done, p->rec, token, &p->shard[j],
                          &p->seq[j]) != VG_OK)
            p->errors++;
    }
    return NULL;
}

static void test_threads(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = TSHARDS;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "mt", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    static producer_t p[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        p[t] = (producer_t){.log = log, .rec = &rec, .id = t};
        VT_REQUIRE(pthread_create(&th[t], NULL, produce, &p[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    VT_EQ_INT(rec_wait(&rec, THREADS * PER_THREAD), THREADS * PER_THREAD);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_CHECK(st.commits < st.appended); /* appends made during a sync were grouped */
    vg_log_close(log);

    /* Every sequence number of every shard handed out exactly once. */
    static uint8_t seen[TSHARDS][THREADS * PER_THREAD + 2];
    memset(seen, 0, sizeof seen);
    uint64_t count[TSHARDS] = {0};
    int dup = 0;
    for (int t = 0; t < THREADS; t++) {
        VT_EQ_INT(p[t].errors, 0);
        for (int j = 0; j < PER_THREAD; j++) {
            uint32_t s = p[t].shard[j];
            uint64_t q = p[t].seq[j];
            VT_REQUIRE(s < TSHARDS && q >= 1 && q <= THREADS * PER_THREAD);
            dup += seen[s][q]++ != 0;
            count[s]++;
        }
    }
    VT_EQ_INT(dup, 0);
    for (uint32_t s = 0; s < TSHARDS; s++)
        for (uint64_t q = 1; q <= count[s]; q++)
            VT_REQUIRE(seen[s][q] == 1);
    /* Callbacks: all OK; per shard in sequence order, per thread in the
     * thread's append order. */
    uint64_t last_seq[TSHARDS] = {0};
    int64_t last_j[THREADS];
    for (int t = 0; t < THREADS; t++)
        last_j[t] = -1;
    int bad = 0;
    for (size_t i = 0; i < rec.n; i++) {
        const cb_rec_t *c = &rec.v[i];
        int t = (int)(c->token >> 32);
        int64_t j = (int64_t)(c->token & 0xffffffffu);
        bad += c->status != VG_OK;
        bad += c->seq != last_seq[c->shard] + 1;
        bad += j != last_j[t] + 1;
        last_seq[c->shard] = c->seq;
        last_j[t] = j;
    }
    VT_EQ_INT(bad, 0);

    VT_REQUIRE(vg_log_open(dir, "mt", &o, &log) == VG_OK);
    long total = 0;
    for (uint32_t s = 0; s < TSHARDS; s++) {
        long n = read_all(log, s, 0, NULL, NULL);
        VT_EQ_INT(n, count[s]);
        total += n;
    }
    VT_EQ_INT(total, THREADS * PER_THREAD);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

typedef struct {
    vg_log_t *log;
    int delay_ms;
    int rc;
} waiter_t;

static void *append_later(void *arg)
{
    waiter_t *w = arg;
    sleep_ms(w->delay_ms);
    w->rc = vg_log_append_shard(w->log, 0, "k", 1, NULL, 0, "v", 1, 0, NULL, NULL, 0, NULL);
    return NULL;
}

static void *wait_long(void *arg)
{
    waiter_t *w = arg;
    w->rc = vg_log_wait(w->log, 0, 1000, 5000);
    return NULL;
}

static void test_wait(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "wait", &o, &log) == VG_OK);
    uint64_t t0 = vg_clock_mono_ns();
    VT_EQ_INT(vg_log_wait(log, 0, 0, 50), VG_AGAIN);
    uint64_t el = vg_clock_mono_ns() - t0;
    VT_CHECK(el >= 49000000u && el < 1000000000u);
    VT_EQ_INT(vg_log_wait(log, 5, 0, 10), VG_EINVAL);

    waiter_t w = {.log = log, .delay_ms = 20};
    pthread_t th;
    VT_REQUIRE(pthread_create(&th, NULL, append_later, &w) == 0);
    t0 = vg_clock_mono_ns();
    VT_EQ_INT(vg_log_wait(log, 0, 0, 5000), VG_OK);
    el = vg_clock_mono_ns() - t0;
    VT_CHECK(el < 1000000000u);
    pthread_join(th, NULL);
    VT_EQ_INT(w.rc, VG_OK);
    VT_EQ_INT(vg_log_wait(log, 0, 0, 0), VG_OK);

    /* A waiter is released with VG_ECLOSED when the log closes. */
    waiter_t w2 = {.log = log};
    VT_REQUIRE(pthread_create(&th, NULL, wait_long, &w2) == 0);
    sleep_ms(30);
    t0 = vg_clock_mono_ns();
    vg_log_close(log);
    pthread_join(th, NULL);
    VT_EQ_INT(w2.rc, VG_ECLOSED);
    VT_CHECK(vg_clock_mono_ns() - t0 < 1000000000u);
    vt_tmpdir_free(dir);
}

static void test_backpressure(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    o.max_pending_bytes = 4096;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "bp", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    static char val[500];
    memset(val, 'x', sizeof val - 1);
    for (int i = 0; i < 2000; i++)
        VT_EQ_INT(append_str(log, 0, "k", val, &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 2000), 2000);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_CHECK(st.append_waits > 0);
    VT_EQ_INT(st.pending_bytes, 0);
    VT_EQ_INT(st.committed, 2000);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

static void test_manifest(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 3;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "m", &o, &log) == VG_OK);
    vg_log_close(log);
    char path[512], text[4096];
    snprintf(path, sizeof path, "%s/stream/m/MANIFEST", dir);
    FILE *fp = fopen(path, "r");
    VT_REQUIRE(fp);
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    VT_CHECK(strstr(text, "\nversion 1\nshards 3\n") != NULL);
    VT_CHECK(strstr(text, "\nshard 0 0 113427455640312821154458202477256070484\n") != NULL);
    VT_CHECK(strstr(text, "\nshard 2 226854911280625642308916404954512140970 "
                          "340282366920938463463374607431768211455\n") != NULL);

    /* An existing stream keeps its shard count. */
    o.shards = 8;
    VT_REQUIRE(vg_log_open(dir, "m", &o, &log) == VG_OK);
    VT_EQ_INT(vg_log_shard_count(log), 3);
    for (uint32_t i = 0; i < 3; i++) {
        vg_hashkey_t a, b, c, d;
        vg_log_shard_range(log, i, &a, &b);
        vg_shardmap_range(3, i, &c, &d);
        VT_CHECK(a == c && b == d);
    }
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(key, sizeof key, "device-%d", i);
        VT_EQ_INT(vg_log_shard_for_key(log, key, (size_t)len), vg_shardmap_key(3, key, (size_t)len));
    }
    vg_log_close(log);

    /* A damaged MANIFEST is refused. */
    char *p = strstr(text, "shard 1 ");
    VT_REQUIRE(p);
    p[8] = p[8] == '9' ? '8' : '9';
    fp = fopen(path, "w");
    VT_REQUIRE(fp);
    fputs(text, fp);
    fclose(fp);
    VT_EQ_INT(vg_log_open(dir, "m", &o, &log), VG_ECORRUPT);
    vt_tmpdir_free(dir);
}

static void test_segment_files(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    /* File sizes below are data sizes: no zeros written ahead (test_prealloc). */
    o.prealloc_bytes = VG_LOG_PREALLOC_OFF;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "seg", &o, &log) == VG_OK);
    VT_EQ_INT(append_str(log, 0, "k", "v", NULL, 0, NULL), VG_OK);
    vg_log_close(log);
    char path[512], tmp[600];
    seg_path(path, sizeof path, dir, "seg", 0, 1);
    /* The header as segment.c documents it. */
    uint8_t hdr[VG_SEG_HDR];
    int fd = open(path, O_RDWR);
    VT_REQUIRE(fd >= 0);
    VT_REQUIRE(pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr);
    VT_CHECK(memcmp(hdr, "VIGILSEG", 8) == 0);
    VT_CHECK(hdr[8] == VG_SEG_VERSION && hdr[9] == 0 && hdr[12] == 0 && hdr[16] == 1 && hdr[17] == 0);
    /* A leftover of an interrupted segment creation is removed at open. */
    seg_path(tmp, sizeof tmp, dir, "seg", 0, 2);
    strcat(tmp, ".tmp");
    int tfd = open(tmp, O_WRONLY | O_CREAT, 0644);
    VT_REQUIRE(tfd >= 0);
    close(tfd);
    VT_REQUIRE(vg_log_open(dir, "seg", &o, &log) == VG_OK);
    VT_CHECK(access(tmp, F_OK) != 0);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 1);
    vg_log_close(log);
    /* A damaged header is refused rather than truncated away. */
    VT_REQUIRE(pwrite(fd, "X", 1, 0) == 1);
    close(fd);
    VT_EQ_INT(vg_log_open(dir, "seg", &o, &log), VG_ECORRUPT);
    VT_EQ_INT(file_size(path), VG_SEG_HDR + vg_record_size(1, 0, 1));
    vt_tmpdir_free(dir);
}

/* Refuses every write of a zero block (the zero fill ahead of the data) with
 * ENOSPC, as a disk would that has room for the records but not the fill. */
typedef struct {
    atomic_int zero_refused;
    vg_seg_io_t io;
} zerofull_t;

static ssize_t zerofull_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
    zerofull_t *z = ctx;
    const uint8_t *p = buf;
    bool zeros = n >= 4096;
    for (size_t i = 0; zeros && i < n; i++)
        zeros = p[i] == 0;
    if (zeros) {
        atomic_fetch_add(&z->zero_refused, 1);
        return -ENOSPC;
    }
    const vg_seg_io_t *d = vg_seg_io_default();
    return d->pwrite(d->ctx, fd, buf, n, off);
}

/* Zeros written ahead of the data (vg_segment_preallocate, on by default):
 * the active segment's file is longer than its data; a reader in another
 * process, a reopen and a roll take the zeros for the end of the data; a
 * torn record inside them is still cut; a disk that refuses the fill leaves
 * plain appends working. */
static void test_prealloc(void)
{
    enum { STEP = 1 << 20 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    VT_EQ_INT(o.prealloc_bytes, STEP);
    o.shards = 1;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "pre", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    const char *val = "a record of telemetry, zero-filled ahead";
    for (int i = 1; i <= 10; i++)
        VT_EQ_INT(append_str(log, 0, "key", val, &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 10), 10);
    size_t rsize = vg_record_size(3, 0, strlen(val));
    uint64_t data = VG_SEG_HDR + 10 * rsize;
    char path[512];
    seg_path(path, sizeof path, dir, "pre", 0, 1);
    VT_EQ_INT(file_size(path), STEP);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_EQ_INT(st.stored_bytes, data); /* data, not the zeros */

    /* A read-only log (as `vigil stream tail` opens it) reads the ten and
     * stops at the zeros: the end for now, not damage. */
    vg_log_t *ro;
    VT_REQUIRE(vg_log_open_readonly(dir, "pre", &ro) == VG_OK);
    VT_EQ_INT(read_all(ro, 0, 0, NULL, NULL), 10);
    vg_log_close(ro);
    vg_log_close(log);

    /* Reopened: nothing is cut, the zeros stay, the next record goes right
     * after the data. */
    VT_REQUIRE(vg_log_open(dir, "pre", &o, &log) == VG_OK);
    vg_log_stats(log, &st);
    VT_EQ_INT(st.truncated_bytes, 0);
    VT_EQ_INT(file_size(path), STEP);
    VT_EQ_INT(append_str(log, 0, "key", val, &rec, 11, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 11), 11);
    uint64_t first = 0, last = 0;
    VT_EQ_INT(read_all(log, 0, 0, &first, &last), 11);
    VT_EQ_INT(last, 11);
    vg_log_close(log);

    /* A torn record inside the zeros (a crash mid-write) is cut, zeros and
     * all: what follows the data is not all zeros any more. */
    data += rsize;
    int fd = open(path, O_WRONLY);
    VT_REQUIRE(fd >= 0);
    VT_REQUIRE(pwrite(fd, "\x13GARBAGE", 8, (off_t)data) == 8);
    close(fd);
    VT_REQUIRE(vg_log_open(dir, "pre", &o, &log) == VG_OK);
    vg_log_stats(log, &st);
    VT_EQ_INT(st.truncated_bytes, STEP - data);
    VT_EQ_INT(file_size(path), data);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 11);
    /* The next write fills ahead again. */
    VT_EQ_INT(append_str(log, 0, "key", val, &rec, 12, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 12), 12);
    VT_EQ_INT(file_size(path), STEP);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);

    /* Without a sync per commit there is nothing to speed up: no zeros. */
    dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t on = o;
    on.fsync = VG_FSYNC_NONE;
    VT_REQUIRE(vg_log_open(dir, "nosync", &on, &log) == VG_OK);
    rec_init(&rec);
    for (int i = 1; i <= 10; i++)
        VT_EQ_INT(append_str(log, 0, "key", val, &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 10), 10);
    vg_log_close(log);
    seg_path(path, sizeof path, dir, "nosync", 0, 1);
    VT_EQ_INT(file_size(path), VG_SEG_HDR + 10 * rsize);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);

    /* No room for the fill: records are appended as without it, the log
     * does not pause, and the fill is retried once a step of data later,
     * not at every write. */
    dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    zerofull_t z;
    memset(&z, 0, sizeof z);
    z.io = *vg_seg_io_default();
    z.io.pwrite = zerofull_pwrite;
    z.io.ctx = &z;
    o.io = &z.io;
    VT_REQUIRE(vg_log_open(dir, "nofill", &o, &log) == VG_OK);
    rec_init(&rec);
    for (int i = 1; i <= 200; i++)
        VT_EQ_INT(append_str(log, 0, "key", val, &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 200), 200);
    for (size_t i = 0; i < rec.n; i++)
        VT_EQ_INT(rec.v[i].status, VG_OK);
    vg_log_stats(log, &st);
    VT_EQ_INT(st.state, VG_LOG_OK);
    seg_path(path, sizeof path, dir, "nofill", 0, 1);
    VT_EQ_INT(file_size(path), VG_SEG_HDR + 200 * rsize);
    int refused = atomic_load(&z.zero_refused);
    VT_CHECK(refused >= 1 && refused <= 2);
    VT_EQ_INT(read_all(log, 0, 0, NULL, NULL), 200);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* Every allocation of open and append failing in turn: a clean error each
 * time (ASan checks for leaks), then success. */
static void test_alloc_failures(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    vg_log_t *log = NULL;
    int rc = VG_ENOMEM, tries = 0;
    for (long n = 0; n < 1000 && rc != VG_OK; n++, tries++) {
        vg_mem_fail_after(n);
        rc = vg_log_open(dir, "oom", &o, &log);
        vg_mem_fail_after(-1);
        VT_CHECK(rc == VG_OK || rc == VG_ENOMEM);
    }
    VT_REQUIRE(rc == VG_OK);
    VT_CHECK(tries > 5);
    vg_mem_fail_after(0);
    uint64_t seq = 0;
    VT_EQ_INT(append_str(log, 0, "k", "v", NULL, 0, &seq), VG_ENOMEM);
    vg_mem_fail_after(-1);
    VT_EQ_INT(append_str(log, 0, "k", "v", NULL, 0, &seq), VG_OK);
    VT_EQ_INT(seq, 1); /* the failed append took no sequence number */
    vg_log_close(log);
    VT_REQUIRE(vg_log_open(dir, "oom", &o, &log) == VG_OK);
    VT_EQ_INT(vg_log_durable_seq(log, 0), 1);
    vg_log_close(log);
    vt_tmpdir_free(dir);
}

static void test_append_errors(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    vg_log_t *log;
    VT_EQ_INT(vg_log_open(dir, "../x", &o, &log), VG_EINVAL);
    VT_EQ_INT(vg_log_open(dir, "", &o, &log), VG_EINVAL);
    VT_REQUIRE(vg_log_open(dir, "e", &o, &log) == VG_OK);
    vg_log_t *second;
    VT_EQ_INT(vg_log_open(dir, "e", &o, &second), VG_EEXIST); /* one writer per stream */
    static char big[VG_RECORD_MAX_KEY + 1];
    /* Limits are checked before anything is read, so no huge buffer is needed. */
    VT_EQ_INT(vg_log_append(log, big, sizeof big, NULL, 0, "v", 1, 0, NULL, NULL, 0, NULL, NULL), VG_ETOOBIG);
    VT_EQ_INT(vg_log_append(log, "k", 1, big, VG_RECORD_MAX_META + 1, "v", 1, 0, NULL, NULL, 0, NULL, NULL),
              VG_ETOOBIG);
    VT_EQ_INT(vg_log_append(log, "k", 1, NULL, 0, big, VG_RECORD_MAX_VALUE + 1, 0, NULL, NULL, 0, NULL, NULL),
              VG_ETOOBIG);
    VT_EQ_INT(vg_log_append_shard(log, 2, "k", 1, NULL, 0, "v", 1, 0, NULL, NULL, 0, NULL), VG_EINVAL);
    vg_log_reader_t *r;
    VT_EQ_INT(vg_log_reader_open(log, 2, 0, &r), VG_EINVAL);
    /* An empty shard: nothing durable, nothing stored, readers wait. */
    VT_EQ_INT(vg_log_durable_seq(log, 1), 0);
    VT_EQ_INT(vg_log_first_seq(log, 1), 0);
    VT_REQUIRE(vg_log_reader_open(log, 1, 0, &r) == VG_OK);
    vg_record_t rec;
    VT_EQ_INT(vg_log_reader_next(r, &rec), VG_AGAIN);
    vg_log_reader_close(r);
    vg_log_close(log);
    vg_log_close(NULL);
    vt_tmpdir_free(dir);
}

/* A shard with no records yet has one empty segment named after seq 1 —
 * the same name its successor would have. Readers (read-only and in the
 * writing process) must report "nothing yet", not loop reopening it. */
static void test_empty_shard_readers(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir != NULL);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    vg_log_t *log = NULL;
    VT_REQUIRE(vg_log_open(dir, "s", &o, &log) == VG_OK);
    vg_log_reader_t *r = NULL;
    vg_record_t rec;
    VT_REQUIRE(vg_log_reader_open(log, 0, 0, &r) == VG_OK);
    VT_EQ_INT(vg_log_reader_next(r, &rec), VG_AGAIN);
    vg_log_reader_close(r);
    vg_log_t *ro = NULL;
    VT_REQUIRE(vg_log_open_readonly(dir, "s", &ro) == VG_OK);
    VT_EQ_INT(vg_log_durable_seq(ro, 0), 0);
    VT_EQ_INT(vg_log_first_seq(ro, 0), 0);
    VT_REQUIRE(vg_log_reader_open(ro, 0, 0, &r) == VG_OK);
    VT_EQ_INT(vg_log_reader_next(r, &rec), VG_AGAIN);
    VT_EQ_INT(vg_log_reader_next(r, &rec), VG_AGAIN);
    vg_log_reader_close(r);
    vg_log_close(ro);
    vg_log_close(log);
    vt_tmpdir_free(dir);
}

/* A segment of an older format version (different record checksum) is
 * refused at open and left untouched — never mistaken for a torn tail. */
static void test_old_version_refused(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "old", &o, &log) == VG_OK);
    VT_EQ_INT(append_str(log, 0, "key", "value", NULL, 1, NULL), VG_OK);
    vg_log_close(log);
    char path[512];
    seg_path(path, sizeof path, dir, "old", 0, 1);
    off_t size = file_size(path);
    FILE *f = fopen(path, "r+b");
    VT_REQUIRE(f);
    uint8_t one[4] = {1, 0, 0, 0};
    VT_CHECK(fseek(f, 8, SEEK_SET) == 0 && fwrite(one, 1, 4, f) == 4);
    fclose(f);
    log = NULL;
    VT_CHECK(vg_log_open(dir, "old", &o, &log) != VG_OK);
    vg_log_close(log);
    VT_EQ_INT(file_size(path), size);
    vt_tmpdir_free(dir);
}

/* Watchers: only the watchers of a shard that advanced are called, with
 * the new durable seq, once per commit round; a notify posted from the
 * callback wakes a sleeping consumer; unwatch stops the calls. */
typedef struct {
    vg_notify_t n;
    _Atomic uint64_t calls, last;
    _Atomic uint32_t shard_mask;
} watch_rec_t;

static void on_watch(void *ctx, uint32_t shard, uint64_t seq)
{
    watch_rec_t *w = ctx;
    atomic_fetch_add(&w->calls, 1);
    atomic_store(&w->last, seq);
    atomic_fetch_or(&w->shard_mask, 1u << shard);
    vg_notify_post(&w->n);
}

static void test_watch(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "watch", &o, &log) == VG_OK);
    watch_rec_t a = {0}, b = {0};
    vg_notify_init(&a.n);
    vg_notify_init(&b.n);
    VT_EQ_INT(vg_log_watch(log, 0, on_watch, &a), VG_OK);
    VT_EQ_INT(vg_log_watch(log, 1, on_watch, &b), VG_OK);
    VT_EQ_INT(vg_log_watch(log, 7, on_watch, &b), VG_EINVAL);
    /* Nothing appended: a wait times out, nobody was called. */
    VT_EQ_INT(vg_notify_wait(&a.n, 20), VG_AGAIN);
    VT_EQ_INT(atomic_load(&a.calls), 0);
    uint64_t seq = 0;
    VT_EQ_INT(vg_log_append_shard(log, 0, "k", 1, NULL, 0, "v", 1, 1, NULL, NULL, 0, &seq), VG_OK);
    VT_EQ_INT(vg_notify_wait(&a.n, 5000), VG_OK);
    VT_EQ_INT(atomic_load(&a.last), seq); /* one record, one round: the post came with it */
    VT_CHECK(vg_log_durable_seq(log, 0) >= seq);
    VT_EQ_INT(atomic_load(&a.shard_mask), 1u);
    /* Shard 1's watcher was not called for shard 0's commit. */
    VT_EQ_INT(atomic_load(&b.calls), 0);
    VT_EQ_INT(vg_notify_wait(&b.n, 0), VG_AGAIN);
    /* Several records before the consumer looks: posts coalesce into one wake. */
    for (int i = 0; i < 50; i++)
        VT_EQ_INT(vg_log_append_shard(log, 1, "k", 1, NULL, 0, "v", 1, 1, NULL, NULL, 0, &seq), VG_OK);
    for (int i = 0; i < 200 && vg_log_durable_seq(log, 1) < seq; i++)
        sleep_ms(5);
    VT_EQ_INT(vg_log_durable_seq(log, 1), seq);
    /* The callback for the last round runs just after the seq is published. */
    for (int i = 0; i < 200 && atomic_load(&b.last) != seq; i++)
        VT_EQ_INT(vg_notify_wait(&b.n, 1000), VG_OK);
    VT_EQ_INT(atomic_load(&b.last), seq);
    VT_CHECK(atomic_load(&b.calls) >= 1 && atomic_load(&b.calls) <= 50);
    /* After unwatch no more calls. */
    vg_log_unwatch(log, 0, on_watch, &a);
    uint64_t before = atomic_load(&a.calls);
    VT_EQ_INT(vg_log_append_shard(log, 0, "k", 1, NULL, 0, "v", 1, 1, NULL, NULL, 0, &seq), VG_OK);
    for (int i = 0; i < 200 && vg_log_durable_seq(log, 0) < seq; i++)
        sleep_ms(5);
    /* Unwatched before the append: even a callback that would have come
     * just after the publish must not. Give it the time it would take. */
    sleep_ms(20);
    VT_EQ_INT(atomic_load(&a.calls), before);
    /* The per-shard limit is enforced. */
    watch_rec_t many[VG_LOG_WATCHERS];
    int ok = 1; /* b already watches shard 1 */
    for (int i = 0; i < VG_LOG_WATCHERS; i++)
        ok += vg_log_watch(log, 1, on_watch, &many[i]) == VG_OK;
    VT_EQ_INT(ok, VG_LOG_WATCHERS);
    for (int i = 0; i < VG_LOG_WATCHERS; i++)
        vg_log_unwatch(log, 1, on_watch, &many[i]);
    vg_log_unwatch(log, 1, on_watch, &b);
    vg_log_close(log);
    vt_tmpdir_free(dir);
}

/* ---- retention ---- */

static long count_segments(const char *dir, const char *name, uint32_t shard)
{
    char sdir[512];
    uint64_t *firsts = NULL;
    size_t n = 0;
    snprintf(sdir, sizeof sdir, "%s/stream/%s/%u", dir, name, shard);
    if (vg_seg_list(vg_seg_io_default(), sdir, false, &firsts, &n) != VG_OK)
        return -1;
    vg_free(firsts);
    return (long)n;
}

/* Sum of the sizes of a stream's segment files. */
static long long dir_bytes(const char *dir, const char *name, uint32_t shards)
{
    long long total = 0;
    for (uint32_t i = 0; i < shards; i++) {
        char sdir[512];
        uint64_t *firsts = NULL;
        size_t n = 0;
        snprintf(sdir, sizeof sdir, "%s/stream/%s/%u", dir, name, i);
        if (vg_seg_list(vg_seg_io_default(), sdir, false, &firsts, &n) != VG_OK)
            return -1;
        for (size_t k = 0; k < n; k++) {
            char path[600];
            seg_path(path, sizeof path, dir, name, i, firsts[k]);
            total += file_size(path);
        }
        vg_free(firsts);
    }
    return total;
}

#define RET_VAL "retention test value of sixty bytes, give or take a few...."

/* Age: finished segments go once their newest record is retention_ms old,
 * a quiet shard's active segment is rolled so that it expires too, the
 * horizon moves, readers behind it resume there with a count of what they
 * missed, and all of it survives a reopen. */
static void test_retention_age(void)
{
    enum { N = 60 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.segment_bytes = 1024;
    o.retention_ms = 600;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "ret", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    uint64_t t0 = vg_clock_mono_ns();
    for (int i = 0; i < N; i++)
        VT_EQ_INT(vg_log_append_shard(log, 0, "k", 1, NULL, 0, RET_VAL, strlen(RET_VAL), vg_clock_wall_ms(), on_done,
                                      &rec, (uint64_t)i, NULL),
                  VG_OK);
    VT_EQ_INT(append_str(log, 1, "k", "the only record of shard 1", &rec, N, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, N + 1), N + 1);
    for (size_t i = 0; i < rec.n; i++)
        VT_EQ_INT(rec.v[i].status, VG_OK);
    long segs = count_segments(dir, "ret", 0);
    VT_CHECK(segs >= 4);
    /* Nothing goes before it is retention_ms old (checked only if this
     * machine got here in time to tell). */
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    if (vg_clock_mono_ns() - t0 < 500000000u) {
        VT_EQ_INT(st.trimmed_segments, 0);
        VT_EQ_INT(vg_log_first_seq(log, 0), 1);
    }
    VT_CHECK(st.oldest_ms != INT64_MIN);
    VT_EQ_INT(vg_log_oldest_ms(log, 1), 1000 + N); /* append_str's arrival_ms */

    /* r1 is inside the first segment when it is deleted; r2 was opened at
     * seq 1 but has not read yet; r3 asks for a seq past the first segment. */
    vg_log_reader_t *r1, *r2, *r3;
    vg_record_t rr;
    VT_REQUIRE(vg_log_reader_open(log, 0, 1, &r1) == VG_OK);
    VT_REQUIRE(vg_log_reader_open(log, 0, 1, &r2) == VG_OK);
    VT_REQUIRE(vg_log_reader_open(log, 0, 30, &r3) == VG_OK);
    for (int i = 1; i <= 3; i++) {
        VT_EQ_INT(vg_log_reader_next(r1, &rr), VG_OK);
        VT_EQ_INT(rr.seq, i);
    }
    VT_EQ_INT(vg_log_reader_skipped(r1), 0);

    /* Everything expires: shard 0's finished segments by age, then both
     * active segments after being rolled (their first record is older than
     * retention / 8). Each shard keeps exactly one, empty, segment. */
    uint64_t deadline = vg_clock_mono_ns() + 15000000000ull;
    do {
        sleep_ms(5);
        vg_log_stats(log, &st);
    } while (st.trimmed_records < N + 1 && vg_clock_mono_ns() < deadline);
    VT_EQ_INT(st.trimmed_records, N + 1);
    VT_EQ_INT(st.trimmed_segments, segs + 1);
    VT_EQ_INT(count_segments(dir, "ret", 0), 1);
    VT_EQ_INT(count_segments(dir, "ret", 1), 1);
    VT_EQ_INT(st.stored_bytes, 2 * VG_SEG_HDR);
    VT_EQ_INT(dir_bytes(dir, "ret", 2), 2 * VG_SEG_HDR);
    VT_EQ_INT(st.trimmed_bytes + st.stored_bytes,
              VG_SEG_HDR * (uint64_t)(segs + 3) + N * vg_record_size(1, 0, strlen(RET_VAL)) +
                  vg_record_size(1, 0, strlen("the only record of shard 1")));
    VT_EQ_INT(st.oldest_ms, INT64_MIN);
    VT_EQ_INT(st.oldest_age_ms, 0);
    VT_EQ_INT(vg_log_first_seq(log, 0), 0); /* empty */
    VT_EQ_INT(vg_log_durable_seq(log, 0), N);
    VT_EQ_INT(vg_log_oldest_ms(log, 0), INT64_MIN);

    /* r1 finishes the deleted segment it has open, then jumps. */
    uint64_t last = 3;
    int rc;
    while ((rc = vg_log_reader_next(r1, &rr)) == VG_OK) {
        VT_EQ_INT(rr.seq, last + 1);
        last = rr.seq;
    }
    VT_EQ_INT(rc, VG_AGAIN);
    VT_CHECK(last > 3 && last < N);
    VT_EQ_INT(vg_log_reader_skipped(r1), N - last);
    VT_EQ_INT(vg_log_reader_next(r2, &rr), VG_AGAIN);
    VT_EQ_INT(vg_log_reader_skipped(r2), N);
    VT_EQ_INT(vg_log_reader_next(r3, &rr), VG_AGAIN);
    VT_EQ_INT(vg_log_reader_skipped(r3), N - 29);
    vg_log_stats(log, &st);
    VT_EQ_INT(st.reader_skipped, (N - last) + N + (N - 29));

    /* New records are read by all of them, in order, nothing skipped again. */
    uint64_t seq;
    VT_EQ_INT(append_str(log, 0, "k", "after the trim", &rec, 100, &seq), VG_OK);
    VT_EQ_INT(seq, N + 1);
    VT_EQ_INT(vg_log_wait(log, 0, N, 5000), VG_OK);
    vg_log_reader_t *rs[3] = {r1, r2, r3};
    uint64_t skipped_before[3] = {N - last, N, N - 29};
    for (int k = 0; k < 3; k++) {
        VT_EQ_INT(vg_log_reader_next(rs[k], &rr), VG_OK);
        VT_EQ_INT(rr.seq, N + 1);
        VT_EQ_INT(vg_log_reader_skipped(rs[k]), skipped_before[k]);
        vg_log_reader_close(rs[k]);
    }
    VT_EQ_INT(vg_log_first_seq(log, 0), N + 1);
    /* TRIM_HORIZON skips nothing; an explicit old position counts. */
    vg_log_reader_t *r4, *r5;
    VT_REQUIRE(vg_log_reader_open(log, 0, 0, &r4) == VG_OK);
    VT_EQ_INT(vg_log_reader_next(r4, &rr), VG_OK);
    VT_EQ_INT(rr.seq, N + 1);
    VT_EQ_INT(vg_log_reader_skipped(r4), 0);
    VT_REQUIRE(vg_log_reader_open(log, 0, 5, &r5) == VG_OK);
    VT_EQ_INT(vg_log_reader_next(r5, &rr), VG_OK);
    VT_EQ_INT(rr.seq, N + 1);
    VT_EQ_INT(vg_log_reader_skipped(r5), N - 4);
    vg_log_reader_close(r4);
    vg_log_reader_close(r5);
    vg_log_close(log);

    /* A read-only reader (vigil stream ls) sees the horizon and the settings. */
    vg_log_t *ro;
    VT_REQUIRE(vg_log_open_readonly(dir, "ret", &ro) == VG_OK);
    VT_EQ_INT(vg_log_first_seq(ro, 0), N + 1);
    uint64_t rms = 0, rbytes = 1;
    VT_CHECK(vg_log_retention(ro, &rms, &rbytes));
    VT_EQ_INT(rms, 600);
    VT_EQ_INT(rbytes, 0);
    VT_REQUIRE(vg_log_reader_open(ro, 0, 3, &r4) == VG_OK);
    VT_EQ_INT(vg_log_reader_next(r4, &rr), VG_OK);
    VT_EQ_INT(rr.seq, N + 1);
    VT_EQ_INT(vg_log_reader_skipped(r4), N - 2);
    vg_log_reader_close(r4);
    vg_log_close(ro);

    /* Reopened with retention off: the horizon and sequence numbers hold. */
    o.retention_ms = 0;
    VT_REQUIRE(vg_log_open(dir, "ret", &o, &log) == VG_OK);
    VT_EQ_INT(vg_log_first_seq(log, 0), N + 1);
    VT_EQ_INT(vg_log_durable_seq(log, 0), N + 1);
    VT_EQ_INT(read_all(log, 0, 0, NULL, NULL), 1);
    VT_EQ_INT(append_str(log, 0, "k", "next", NULL, 0, &seq), VG_OK);
    VT_EQ_INT(seq, N + 2);
    vg_log_close(log);
    VT_REQUIRE(vg_log_open_readonly(dir, "ret", &ro) == VG_OK);
    VT_CHECK(vg_log_retention(ro, &rms, &rbytes));
    VT_EQ_INT(rms, 0);
    vg_log_close(ro);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* While records arrive steadily, no record is deleted before it is
 * retention_ms old: a poll every millisecond records when each record was
 * first seen gone, which must be at least retention_ms after it was
 * appended. Records stay readable from the horizon on, contiguous. */
static void test_retention_not_early(void)
{
    enum { N = 400, RET_MS = 300 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    o.segment_bytes = 1024;
    o.retention_ms = RET_MS;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "early", &o, &log) == VG_OK);
    static uint64_t appended_ns[N + 2];
    uint64_t seen_first = 1;
    int early = 0, trims = 0;
    for (int i = 1; i <= N; i++) {
        uint64_t seq;
        appended_ns[i] = vg_clock_mono_ns();
        VT_EQ_INT(vg_log_append_shard(log, 0, "k", 1, NULL, 0, RET_VAL, strlen(RET_VAL), vg_clock_wall_ms(), NULL,
                                      NULL, 0, &seq),
                  VG_OK);
        VT_EQ_INT(seq, i);
        /* About 1.2 s of appends, polling the horizon in between. */
        for (int k = 0; k < 3; k++) {
            sleep_ms(1);
            uint64_t f = vg_log_first_seq(log, 0);
            uint64_t now = vg_clock_mono_ns();
            if (f > seen_first) {
                trims++;
                for (uint64_t q = seen_first; q < f; q++)
                    early += now < appended_ns[q] + (uint64_t)RET_MS * 1000000u;
                seen_first = f;
            }
        }
    }
    VT_EQ_INT(early, 0);
    VT_CHECK(trims >= 2);
    VT_CHECK(seen_first > 1);
    for (int i = 0; i < 5000 && vg_log_durable_seq(log, 0) < N; i++)
        VT_REQUIRE(vg_log_wait(log, 0, N - 1, 1000) != VG_ECLOSED);
    VT_EQ_INT(vg_log_durable_seq(log, 0), N);
    uint64_t first = 0, last = 0;
    long n = read_all(log, 0, 0, &first, &last);
    VT_CHECK(n > 0);
    VT_CHECK(first >= seen_first);
    VT_EQ_INT(last, N);
    VT_EQ_INT(n, (long)(last - first + 1));
    vg_log_close(log);
    vt_tmpdir_free(dir);
}

/* Size cap: the oldest finished segments of the stream go while it is
 * larger than retention_bytes; never the active ones. */
static void test_retention_bytes(void)
{
    enum { N = 200, CAP = 4096 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.segment_bytes = 1024;
    o.retention_bytes = CAP;
    /* The cap counts data bytes; the directory's size below is compared with
     * them, so no zeros written ahead here (test_prealloc). */
    o.prealloc_bytes = VG_LOG_PREALLOC_OFF;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "cap", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    for (int i = 0; i < N; i++)
        VT_EQ_INT(append_str(log, (uint32_t)(i % 2), "k", RET_VAL, &rec, (uint64_t)i, NULL), VG_OK);
    VT_EQ_INT(rec_wait(&rec, N), N);
    vg_log_stats_t st;
    uint64_t deadline = vg_clock_mono_ns() + 10000000000ull;
    do {
        vg_log_stats(log, &st);
        if (st.stored_bytes <= CAP)
            break;
        sleep_ms(2);
    } while (vg_clock_mono_ns() < deadline);
    VT_CHECK(st.stored_bytes <= CAP);
    /* It stopped as soon as it was under: one more segment would not fit. */
    VT_CHECK(st.stored_bytes + 1024 + vg_record_size(1, 0, strlen(RET_VAL)) > CAP);
    VT_EQ_INT(dir_bytes(dir, "cap", 2), (long long)st.stored_bytes);
    VT_CHECK(st.trimmed_segments >= 4);
    for (uint32_t s = 0; s < 2; s++) {
        uint64_t first = 0, last = 0;
        long n = read_all(log, s, 0, &first, &last);
        VT_CHECK(first > 1);
        VT_EQ_INT(first, vg_log_first_seq(log, s));
        VT_EQ_INT(last, N / 2);
        VT_EQ_INT(n, (long)(last - first + 1));
    }
    VT_EQ_INT(st.trimmed_records + (vg_log_durable_seq(log, 0) - vg_log_first_seq(log, 0) + 1) +
                  (vg_log_durable_seq(log, 1) - vg_log_first_seq(log, 1) + 1),
              N);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* ---- disk full ---- */

static void df_value(char *out, size_t cap, uint64_t token)
{
    snprintf(out, cap, "disk full test record %06llu, padded to a few dozen bytes", (unsigned long long)token);
}

static int df_append(vg_log_t *log, uint32_t shard, recorder_t *rec, uint64_t token)
{
    char val[96];
    df_value(val, sizeof val, token);
    return vg_log_append_shard(log, shard, "k", 1, NULL, 0, val, strlen(val), (int64_t)token, on_done, rec, token,
                               NULL);
}

static int wait_state(vg_log_t *log, int state, int timeout_ms)
{
    vg_log_stats_t st;
    uint64_t deadline = vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    do {
        vg_log_stats(log, &st);
        if (st.state == state)
            return 1;
        sleep_ms(1);
    } while (vg_clock_mono_ns() < deadline);
    return 0;
}

/* Checks that shard s of the stream in dir holds exactly the records whose
 * tokens are listed (in order), values intact, sequence numbers 1..n. */
static void check_contents(const char *dir, const char *name, uint32_t s, const uint64_t *tokens, size_t n)
{
    vg_log_t *ro;
    VT_REQUIRE(vg_log_open_readonly(dir, name, &ro) == VG_OK);
    vg_log_reader_t *r;
    VT_REQUIRE(vg_log_reader_open(ro, s, 0, &r) == VG_OK);
    vg_record_t rr;
    size_t got = 0;
    int rc, bad = 0;
    while ((rc = vg_log_reader_next(r, &rr)) == VG_OK) {
        char want[96];
        if (got < n) {
            df_value(want, sizeof want, tokens[got]);
            bad += rr.seq != got + 1 || rr.value_len != strlen(want) || memcmp(rr.value, want, rr.value_len) != 0;
        }
        got++;
    }
    VT_EQ_INT(rc, VG_AGAIN);
    VT_EQ_INT(got, n);
    VT_EQ_INT(bad, 0);
    vg_log_reader_close(r);
    vg_log_close(ro);
}

typedef struct {
    vg_log_t *log;
    recorder_t *rec;
    uint64_t first_token;
    int count;
    atomic_int done;
    int errors;
} df_appender_t;

static void *df_append_many(void *arg)
{
    df_appender_t *a = arg;
    for (int i = 0; i < a->count; i++)
        a->errors += df_append(a->log, (uint32_t)i % 2, a->rec, a->first_token + (uint64_t)i) != VG_OK;
    atomic_store(&a->done, 1);
    return NULL;
}

/* Writes refused with ENOSPC for a while (the first one half done): no
 * callback for anything from there on during the outage, appends queue and
 * then block, retries back off; once space is back every callback is VG_OK,
 * in append order, and the files hold every record once, contiguous, with
 * no torn tail left behind. */
static void test_disk_full_write(void)
{
    enum { BEFORE = 10, DURING = 60, PER_SHARD = (BEFORE + DURING) / 2 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    fault_t f;
    fault_init(&f);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.segment_bytes = 1024; /* rolls along the way */
    o.max_pending_bytes = 2048;
    o.io = &f.io;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "df", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    rec.log = log;
    for (int i = 0; i < BEFORE; i++)
        VT_EQ_INT(df_append(log, (uint32_t)i % 2, &rec, (uint64_t)i), VG_OK);
    VT_EQ_INT(rec_wait(&rec, BEFORE), BEFORE);

    /* Room for one record and a half. */
    size_t rsize = vg_record_size(1, 0, strlen("disk full test record 000000, padded to a few dozen bytes"));
    atomic_store(&f.space, (long)(rsize + rsize / 2));
    df_appender_t a = {.log = log, .rec = &rec, .first_token = BEFORE, .count = DURING};
    pthread_t th;
    VT_REQUIRE(pthread_create(&th, NULL, df_append_many, &a) == 0);
    VT_REQUIRE(wait_state(log, VG_LOG_DISK_FULL, 10000));
    /* The appender fills max_pending_bytes and blocks. */
    vg_log_stats_t st;
    uint64_t deadline = vg_clock_mono_ns() + 10000000000ull;
    do {
        sleep_ms(2);
        vg_log_stats(log, &st);
    } while ((st.append_waits == 0 || st.disk_full_retries < 4) && vg_clock_mono_ns() < deadline);
    VT_CHECK(st.append_waits > 0);
    VT_CHECK(st.disk_full_retries >= 4);
    VT_EQ_INT(st.state, VG_LOG_DISK_FULL);
    VT_EQ_INT(st.disk_full_pauses, 1);
    VT_EQ_INT(st.errors, 0);
    VT_EQ_INT(atomic_load(&a.done), 0);
    size_t during = rec_wait(&rec, 0);
    VT_CHECK(during <= BEFORE + 2); /* at most the record that fitted (and its other-shard neighbour) */
    sleep_ms(50);
    VT_EQ_INT(rec_wait(&rec, 0), during); /* nothing reported while paused */
    for (size_t i = 0; i < during; i++)
        VT_EQ_INT(rec.v[i].status, VG_OK);
    /* Backoff: retries are spaced out, not a spin (10 ms doubling to 1 s). */
    uint64_t r0 = st.disk_full_retries;
    sleep_ms(300);
    vg_log_stats(log, &st);
    VT_CHECK(st.disk_full_retries - r0 <= 6);
    VT_CHECK(st.disk_full_ms >= 300);

    atomic_store(&f.space, -1);
    pthread_join(th, NULL);
    VT_EQ_INT(a.errors, 0);
    VT_EQ_INT(rec_wait(&rec, BEFORE + DURING), BEFORE + DURING);
    uint64_t last[2] = {0, 0};
    int bad = 0;
    for (size_t i = 0; i < rec.n; i++) {
        bad += rec.v[i].status != VG_OK;
        bad += rec.v[i].token != i;
        bad += rec.v[i].seq != last[rec.v[i].shard] + 1;
        last[rec.v[i].shard] = rec.v[i].seq;
    }
    VT_EQ_INT(bad, 0);
    VT_REQUIRE(wait_state(log, VG_LOG_OK, 5000));
    vg_log_stats(log, &st);
    VT_EQ_INT(st.committed, BEFORE + DURING);
    VT_EQ_INT(st.errors, 0);
    VT_CHECK(st.disk_full_ms >= 300);
    VT_EQ_INT(append_str(log, 0, "k", "after", NULL, 0, NULL), VG_OK);
    vg_log_close(log);

    /* Reopened without faults: nothing to cut, every record once. */
    o.io = NULL;
    VT_REQUIRE(vg_log_open(dir, "df", &o, &log) == VG_OK);
    vg_log_stats(log, &st);
    VT_EQ_INT(st.truncated_bytes, 0);
    VT_EQ_INT(vg_log_durable_seq(log, 0), PER_SHARD + 1);
    VT_EQ_INT(vg_log_durable_seq(log, 1), PER_SHARD);
    vg_log_close(log);
    static uint64_t tokens[2][PER_SHARD];
    for (uint64_t t = 0; t < BEFORE + DURING; t++)
        tokens[t % 2][t / 2] = t;
    check_contents(dir, "df", 1, tokens[1], PER_SHARD);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* The next segment cannot be created (ENOSPC on open): a pause at the roll;
 * the current segment stays active and intact, and the roll succeeds once
 * space is back. */
static void test_disk_full_roll(void)
{
    enum { N = 80 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    fault_t f;
    fault_init(&f);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    o.segment_bytes = 1024;
    o.io = &f.io;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "dfr", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    atomic_store(&f.enospc_open, 1);
    for (int i = 0; i < N; i++)
        VT_EQ_INT(df_append(log, 0, &rec, (uint64_t)i), VG_OK);
    VT_REQUIRE(wait_state(log, VG_LOG_DISK_FULL, 10000));
    for (int i = 0; i < 2000 && atomic_load(&f.enospc_hits) < 3; i++)
        sleep_ms(1);
    VT_CHECK(atomic_load(&f.enospc_hits) >= 3);
    size_t during = rec_wait(&rec, 0);
    VT_CHECK(during > 0 && during < N); /* the first segment's records are stored and reported */
    VT_EQ_INT(count_segments(dir, "dfr", 0), 1);
    atomic_store(&f.enospc_open, 0);
    VT_EQ_INT(rec_wait(&rec, N), N);
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.v[i].status, VG_OK);
        VT_EQ_INT(rec.v[i].seq, i + 1);
    }
    VT_REQUIRE(wait_state(log, VG_LOG_OK, 5000));
    VT_CHECK(count_segments(dir, "dfr", 0) >= 5);
    vg_log_close(log);
    static uint64_t tokens[N];
    for (uint64_t t = 0; t < N; t++)
        tokens[t] = t;
    check_contents(dir, "dfr", 0, tokens, N);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* Close while the disk stays full returns (after its grace period) and
 * reports VG_ENOSPC for what was not stored, in order; what was reported
 * stored is in the files, and nothing else. */
static void test_disk_full_close(void)
{
    enum { BEFORE = 6, DURING = 20 };
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    fault_t f;
    fault_init(&f);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.io = &f.io;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "dfc", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    for (int i = 0; i < BEFORE; i++)
        VT_EQ_INT(df_append(log, (uint32_t)i % 2, &rec, (uint64_t)i), VG_OK);
    VT_EQ_INT(rec_wait(&rec, BEFORE), BEFORE);
    atomic_store(&f.space, 0);
    for (int i = BEFORE; i < BEFORE + DURING; i++) {
        VT_EQ_INT(df_append(log, (uint32_t)i % 2, &rec, (uint64_t)i), VG_OK);
        if (i == BEFORE)
            VT_REQUIRE(wait_state(log, VG_LOG_DISK_FULL, 10000)); /* the rest queue behind the paused batch */
    }
    uint64_t t0 = vg_clock_mono_ns();
    vg_log_close(log);
    uint64_t el = vg_clock_mono_ns() - t0;
    VT_CHECK(el >= 900000000u && el < 5000000000u);
    VT_EQ_INT(rec.n, BEFORE + DURING);
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.v[i].token, i);
        VT_EQ_INT(rec.v[i].status, i < BEFORE ? VG_OK : VG_ENOSPC);
    }
    o.io = NULL;
    VT_REQUIRE(vg_log_open(dir, "dfc", &o, &log) == VG_OK);
    VT_EQ_INT(vg_log_durable_seq(log, 0), BEFORE / 2);
    VT_EQ_INT(vg_log_durable_seq(log, 1), BEFORE / 2);
    uint64_t seq;
    VT_EQ_INT(append_str(log, 0, "k", "v", NULL, 0, &seq), VG_OK);
    VT_EQ_INT(seq, BEFORE / 2 + 1);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* fdatasync failing, even with ENOSPC, stays fail-stop: after a failed
 * writeback the page cache no longer says what is on disk. */
static void test_sync_enospc_fails(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    fault_t f;
    fault_init(&f);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 1;
    o.io = &f.io;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "se", &o, &log) == VG_OK);
    recorder_t rec;
    rec_init(&rec);
    atomic_store(&f.sync_errno, ENOSPC);
    atomic_store(&f.fail_sync, 1);
    VT_EQ_INT(df_append(log, 0, &rec, 0), VG_OK);
    VT_EQ_INT(rec_wait(&rec, 1), 1);
    VT_EQ_INT(rec.v[0].status, VG_EIO);
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_EQ_INT(st.state, VG_LOG_FAILED);
    VT_EQ_INT(st.disk_full_pauses, 0);
    VT_CHECK(strcmp(vg_log_state_name(st.state), "failed") == 0);
    VT_EQ_INT(df_append(log, 0, &rec, 1), VG_EIO);
    vg_log_close(log);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

static void *post_later(void *arg)
{
    sleep_ms(30);
    vg_notify_post(arg);
    return NULL;
}

static void test_notify(void)
{
    vg_notify_t n;
    vg_notify_init(&n);
    VT_EQ_INT(vg_notify_wait(&n, 0), VG_AGAIN);
    vg_notify_post(&n);
    vg_notify_post(&n);
    VT_EQ_INT(vg_notify_wait(&n, 0), VG_OK);
    VT_EQ_INT(vg_notify_wait(&n, 0), VG_AGAIN);
    uint64_t t0 = vg_clock_mono_ns();
    VT_EQ_INT(vg_notify_wait(&n, 40), VG_AGAIN);
    uint64_t el = vg_clock_mono_ns() - t0;
    VT_CHECK(el >= 39000000u && el < 2000000000u);
    pthread_t th;
    VT_REQUIRE(pthread_create(&th, NULL, post_later, &n) == 0);
    t0 = vg_clock_mono_ns();
    VT_EQ_INT(vg_notify_wait(&n, -1), VG_OK);
    VT_CHECK(vg_clock_mono_ns() - t0 < 5000000000u);
    pthread_join(th, NULL);
}

/* Leader commit (flush_commits): appends wait for a flush; the flusher runs
 * the round and the callbacks on its own thread; with several threads
 * appending and flushing at once every record is reported once, in order
 * per thread, and nothing waits forever for a flush that found the log busy. */
typedef struct {
    pthread_t self;
    _Atomic int on_caller, calls;
} flush_rec_t;

static void on_flush_done(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    flush_rec_t *f = ctx;
    if (status == VG_OK)
        atomic_fetch_add(&f->calls, 1);
    if (pthread_equal(pthread_self(), f->self))
        atomic_fetch_add(&f->on_caller, 1);
}

typedef struct {
    vg_log_t *log;
    int n;
    _Atomic int got;
    uint64_t last_token;
    int disorder;
} flusher_t;

static void on_flusher_done(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    flusher_t *f = ctx;
    if (status != VG_OK || token != f->last_token + 1)
        f->disorder++;
    f->last_token = token;
    atomic_fetch_add(&f->got, 1);
}

static void *flusher_main(void *arg)
{
    flusher_t *f = arg;
    for (int i = 1; i <= f->n; i++) {
        vg_log_append(f->log, "key", 3, NULL, 0, "value", 5, 1, on_flusher_done, f, (uint64_t)i, NULL, NULL);
        if (i % 3 == 0)
            vg_log_flush(f->log);
    }
    vg_log_flush(f->log);
    return NULL;
}

static void test_flush_leader(void)
{
    char *dir = vt_tmpdir_new("log");
    VT_REQUIRE(dir);
    vg_log_opts_t o;
    vg_log_opts_default(&o);
    o.shards = 2;
    o.flush_commits = true;
    vg_log_t *log;
    VT_REQUIRE(vg_log_open(dir, "flush", &o, &log) == VG_OK);
    flush_rec_t fr = {.self = pthread_self()};
    VT_EQ_INT(vg_log_flush(log), VG_AGAIN); /* nothing pending */
    /* A flush that leads a round (VG_OK) reports the records before it
     * returns, on the calling thread. (The committer thread may also pick a
     * batch up when it happens to be awake — allowed — so count leads.) */
    int led = 0;
    for (int i = 0; i < 20; i++) {
        atomic_store(&fr.on_caller, 0);
        int before = atomic_load(&fr.calls);
        VT_EQ_INT(vg_log_append(log, "a", 1, NULL, 0, "v", 1, 1, on_flush_done, &fr, 1, NULL, NULL), VG_OK);
        if (vg_log_flush(log) == VG_OK) {
            led++;
            VT_EQ_INT(atomic_load(&fr.calls), before + 1);
            VT_EQ_INT(atomic_load(&fr.on_caller), 1);
        }
    }
    VT_CHECK(led > 0);
    for (int k = 0; k < 400 && atomic_load(&fr.calls) < 20; k++)
        sleep_ms(5);
    VT_EQ_INT(atomic_load(&fr.calls), 20);
    /* Four threads appending and flushing concurrently. */
    enum { T = 4, N = 3000 };
    flusher_t fl[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        fl[i] = (flusher_t){.log = log, .n = N};
        VT_REQUIRE(pthread_create(&th[i], NULL, flusher_main, &fl[i]) == 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    /* A flush that found a round running handed its records on: all arrive. */
    for (int k = 0; k < 400; k++) {
        int all = 1;
        for (int i = 0; i < T; i++)
            all &= atomic_load(&fl[i].got) == N;
        if (all)
            break;
        sleep_ms(5);
    }
    for (int i = 0; i < T; i++) {
        VT_EQ_INT(atomic_load(&fl[i].got), N);
        VT_EQ_INT(fl[i].disorder, 0);
    }
    vg_log_stats_t st;
    vg_log_stats(log, &st);
    VT_EQ_INT(st.committed, 20 + T * N);
    VT_EQ_INT(st.pending_bytes, 0);
    /* Close commits what was appended without a flush. */
    VT_EQ_INT(vg_log_append(log, "a", 1, NULL, 0, "v", 1, 1, on_flush_done, &fr, 2, NULL, NULL), VG_OK);
    vg_log_close(log);
    VT_EQ_INT(atomic_load(&fr.calls), 21);
    vt_tmpdir_free(dir);
}

int main(void)
{
    /* Several tests provoke failures on purpose; keep their log lines short. */
    vg_diag_set_level(getenv("VT_LOG") ? VG_LOG_INFO : VG_LOG_ERROR);
    VT_RUN(test_append_read_reopen);
    VT_RUN(test_callbacks_after_durable);
    VT_RUN(test_torn_tail);
    VT_RUN(test_rolling);
    VT_RUN(test_readonly);
    VT_RUN(test_readonly_damage);
    VT_RUN(test_fsync_failure);
    VT_RUN(test_write_failure);
    VT_RUN(test_threads);
    VT_RUN(test_wait);
    VT_RUN(test_backpressure);
    VT_RUN(test_manifest);
    VT_RUN(test_segment_files);
    VT_RUN(test_alloc_failures);
    VT_RUN(test_append_errors);
    VT_RUN(test_empty_shard_readers);
    VT_RUN(test_old_version_refused);
    VT_RUN(test_watch);
    VT_RUN(test_notify);
    VT_RUN(test_flush_leader);
    VT_RUN(test_retention_age);
    VT_RUN(test_retention_not_early);
    VT_RUN(test_retention_bytes);
    VT_RUN(test_disk_full_write);
    VT_RUN(test_disk_full_roll);
    VT_RUN(test_disk_full_close);
    VT_RUN(test_sync_enospc_fails);
    VT_RUN(test_prealloc);
    return VT_DONE();
}
