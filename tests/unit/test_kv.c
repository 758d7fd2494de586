/* test_kv.c — unit tests for the durable key-value store (src/store/kv.c).
 *
 * Records in, close, reopen, scan: exactly what was committed comes back, in
 * (key, sub) order. Ordering of operations within one batch (held together
 * by blocking the store thread in on_durable) and across batches, a
 * randomized run against an in-memory model with reopens, backpressure,
 * on_durable order, the schema-version and not-a-database checks, a second
 * opener, a failed fsync (through an SQLite VFS wrapper registered here) and
 * concurrent writers. Prints commit latency and throughput on this disk.
 * Each test works in its own directory under /tmp (vt_tmpdir_new) and removes it. */
#include "store/kv.h"

#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "vt.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------ */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A scan result: records as "key:sub=val" lines, keys and values printed as text. */
typedef struct {
    char text[65536];
    size_t n;
} dump_t;

static int dump_cb(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen)
{
    dump_t *d = ctx;
    size_t used = strlen(d->text);
    snprintf(d->text + used, sizeof d->text - used, "%.*s:%llu=%.*s\n", (int)klen, (const char *)key,
             (unsigned long long)sub, (int)vlen, (const char *)val);
    d->n++;
    return 0;
}

static const char *dump(vg_kv_t *kv, uint8_t ns)
{
    static dump_t d;
    d.text[0] = '\0';
    d.n = 0;
    int rc = vg_kv_scan(kv, ns, dump_cb, &d);
    return rc == VG_OK ? d.text : "<scan failed>";
}

static int put_s(vg_kv_t *kv, uint8_t ns, const char *key, uint64_t sub, const char *val, uint64_t *seq)
{
    return vg_kv_put(kv, ns, key, strlen(key), sub, val, strlen(val), seq);
}

static int del_s(vg_kv_t *kv, uint8_t ns, const char *key, uint64_t sub, uint64_t *seq)
{
    return vg_kv_del(kv, ns, key, strlen(key), sub, seq);
}

static int del_key_s(vg_kv_t *kv, uint8_t ns, const char *key, uint64_t *seq)
{
    return vg_kv_del_key(kv, ns, key, strlen(key), seq);
}

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Sets meta.schema_version of a closed store with plain SQLite. */
static int set_version(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* on_durable recorder; can hold the store thread at a gate so that the
 * test lines up operations into one batch behind it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate_closed; /* on_durable waits while this is set */
    int waiting;      /* on_durable calls currently held at the gate */
    uint64_t seqs[4096];
    int status[4096];
    size_t n;
    bool non_monotonic;
    uint64_t last;
} rec_t;

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void rec_deinit(rec_t *r)
{
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

static void on_durable(void *ctx, uint64_t seq, int status)
{
    rec_t *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (seq <= r->last)
        r->non_monotonic = true;
    r->last = seq;
    if (r->n < 4096) {
        r->seqs[r->n] = seq;
        r->status[r->n] = status;
    }
    r->n++;
    r->waiting++;
    pthread_cond_broadcast(&r->cv);
    while (r->gate_closed)
        pthread_cond_wait(&r->cv, &r->mu);
    r->waiting--;
    pthread_mutex_unlock(&r->mu);
}

static void gate_close(rec_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->gate_closed = true;
    pthread_mutex_unlock(&r->mu);
}

/* Waits until the store thread is held at the gate in the on_durable of
 * the batch holding seq — not of an earlier one: vg_kv_sync returns once a
 * batch is durable, possibly before that batch's on_durable ran, which a
 * just-closed gate would then hold instead. */
static void gate_wait_held(rec_t *r, uint64_t seq)
{
    pthread_mutex_lock(&r->mu);
    while (r->waiting == 0 || r->last < seq)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

/* Waits until on_durable has been called for seq (and so, with the gate
 * open, has passed it): a gate closed afterwards holds only later batches. */
static void wait_called(rec_t *r, uint64_t seq)
{
    pthread_mutex_lock(&r->mu);
    while (r->last < seq)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void gate_open(rec_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->gate_closed = false;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- basic operations ------------------------------------------------------------------ */

static void test_put_del_scan(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    uint64_t seq = 0, s1 = 0;
    VT_EQ_INT(put_s(kv, 1, "b", 2, "b2", &s1), VG_OK);
    VT_EQ_INT(s1, 1);
    VT_EQ_INT(put_s(kv, 1, "b", 1, "b1", &seq), VG_OK);
    VT_EQ_INT(seq, 2);
    VT_EQ_INT(put_s(kv, 1, "a", 0, "a0", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 1, "ab", 5, "ab5", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 1, "b", UINT64_MAX, "bmax", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 1, "b", (uint64_t)1 << 63, "bhalf", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 1, "", 7, "empty key", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 1, "c", 0, "", NULL), VG_OK); /* empty value */
    VT_EQ_INT(put_s(kv, 2, "a", 0, "other ns", NULL), VG_OK);
    /* Key bytes beyond text: "a\0" sorts after "a" and before "ab". */
    VT_EQ_INT(vg_kv_put(kv, 1, "a\0", 2, 0, "a-nul", 5, NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 1, "b", 1, "b1-replaced", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_CHECK(strcmp(dump(kv, 1), ":7=empty key\n"
                                 "a:0=a0\n"
                                 "a:0=a-nul\n" /* printed with %.*s: the NUL ends the key text */
                                 "ab:5=ab5\n"
                                 "b:1=b1-replaced\n"
                                 "b:2=b2\n"
                                 "b:9223372036854775808=bhalf\n"
                                 "b:18446744073709551615=bmax\n"
                                 "c:0=\n") == 0);
    VT_CHECK(strcmp(dump(kv, 2), "a:0=other ns\n") == 0);
    VT_CHECK(strcmp(dump(kv, 3), "") == 0);

    VT_EQ_INT(del_s(kv, 1, "b", 2, NULL), VG_OK);
    VT_EQ_INT(del_s(kv, 1, "zz", 2, NULL), VG_OK); /* absent: nothing happens */
    VT_EQ_INT(del_key_s(kv, 1, "a", NULL), VG_OK); /* only key "a", not "a\0" or "ab" */
    VT_EQ_INT(del_key_s(kv, 2, "b", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_CHECK(strcmp(dump(kv, 1), ":7=empty key\n"
                                 "a:0=a-nul\n"
                                 "ab:5=ab5\n"
                                 "b:1=b1-replaced\n"
                                 "b:9223372036854775808=bhalf\n"
                                 "b:18446744073709551615=bmax\n"
                                 "c:0=\n") == 0);
    VT_CHECK(strcmp(dump(kv, 2), "a:0=other ns\n") == 0);
    VT_EQ_INT(del_key_s(kv, 1, "b", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_CHECK(strcmp(dump(kv, 1), ":7=empty key\na:0=a-nul\nab:5=ab5\nc:0=\n") == 0);

    vg_kv_stats_t st;
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.last_seq, seq);
    VT_EQ_INT(st.durable_seq, seq);
    VT_EQ_INT(st.ops, seq);
    VT_EQ_INT(st.pending_ops, 0);
    VT_EQ_INT(st.pending_bytes, 0);
    VT_EQ_INT(st.failed, 0);
    VT_CHECK(st.commits >= 3 && st.commits <= st.ops);
    VT_CHECK(st.bytes_written > 0);

    VT_EQ_INT(vg_kv_sync(kv, 0), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq + 1), VG_EINVAL);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    VT_EQ_INT(vg_kv_close(NULL), VG_OK);
    vt_tmpdir_free(dir);
}

/* Scan stops when the callback says so and returns its value. */
static int stop_at_two(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen)
{
    int *n = ctx;
    return ++*n == 2 ? 42 : 0;
}

static void test_scan_stop(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    uint64_t seq;
    for (int i = 0; i < 5; i++)
        VT_EQ_INT(put_s(kv, 0, "k", (uint64_t)i, "v", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    int n = 0;
    VT_EQ_INT(vg_kv_scan(kv, 0, stop_at_two, &n), 42);
    VT_EQ_INT(n, 2);
    /* The statement was reset: a second scan starts from the beginning. */
    VT_CHECK(strcmp(dump(kv, 0), "k:0=v\nk:1=v\nk:2=v\nk:3=v\nk:4=v\n") == 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    vt_tmpdir_free(dir);
}

/* What was committed survives close and reopen; the file and its parent
 * directories are created, the file with mode 0600. */
static void test_reopen(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "a/b/c/kv.db");
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    struct stat stt;
    VT_REQUIRE(stat(path, &stt) == 0);
    VT_EQ_INT(stt.st_mode & 0777, 0600);
    uint64_t seq = 0;
    char key[32], val[64];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "sess-%03d", i % 50);
        snprintf(val, sizeof val, "value %d", i);
        VT_EQ_INT(vg_kv_put(kv, 3, key, strlen(key), (uint64_t)(i / 50), val, strlen(val), &seq), VG_OK);
    }
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", path);
    VT_CHECK(stat(wal, &stt) == 0); /* the WAL, given the main file's mode */
    VT_EQ_INT(stt.st_mode & 0777, 0600);
    char shm[600];
    snprintf(shm, sizeof shm, "%s-shm", path);
    VT_CHECK(access(shm, F_OK) != 0); /* exclusive locking: no shared-memory file */
    static char before[65536];
    snprintf(before, sizeof before, "%s", dump(kv, 3));
    /* Queued but uncommitted at close: close commits them first. */
    VT_EQ_INT(put_s(kv, 3, "last", 0, "in the final batch", NULL), VG_OK);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);

    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    static dump_t d;
    d.text[0] = '\0';
    d.n = 0;
    VT_EQ_INT(vg_kv_scan(kv, 3, dump_cb, &d), VG_OK);
    VT_EQ_INT(d.n, 501);
    static const char last_line[] = "last:0=in the final batch\n";
    VT_CHECK(strncmp(d.text, last_line, strlen(last_line)) == 0);
    VT_CHECK(strcmp(d.text + strlen(last_line), before) == 0);
    VT_CHECK(strstr(before, "sess-007:9=value 457\n") != NULL);
    /* Sequence numbers start again at 1 in a new session. */
    uint64_t s;
    VT_EQ_INT(put_s(kv, 3, "x", 0, "y", &s), VG_OK);
    VT_EQ_INT(s, 1);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    vt_tmpdir_free(dir);
}

/* ---- ordering ------------------------------------------------------------------------- */

/* Operations queued while the store thread is busy commit together, in order:
 * put then del of one record in one batch leaves it absent, del then put
 * leaves it present, del_key between puts removes only the earlier ones. */
static void test_order_within_batch(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    static rec_t rec;
    rec_init(&rec);
    vg_kv_opts_t o = {.on_durable = on_durable, .ctx = &rec};
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, &o, &kv) == VG_OK);
    uint64_t seq;
    VT_EQ_INT(put_s(kv, 0, "old", 1, "was here", &seq), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "q", 1, "old q1", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    wait_called(&rec, seq);

    gate_close(&rec);
    VT_EQ_INT(put_s(kv, 0, "hold", 0, "first batch", &seq), VG_OK);
    gate_wait_held(&rec, seq); /* the store thread sits in on_durable: what follows queues up */
    vg_kv_stats_t st;
    vg_kv_stats(kv, &st);
    uint64_t commits_before = st.commits;

    VT_EQ_INT(put_s(kv, 0, "gone", 0, "put", NULL), VG_OK);
    VT_EQ_INT(del_s(kv, 0, "gone", 0, NULL), VG_OK);
    VT_EQ_INT(del_s(kv, 0, "back", 0, NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "back", 0, "put after del", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "q", 2, "q2", NULL), VG_OK);
    VT_EQ_INT(del_key_s(kv, 0, "q", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "q", 3, "q3", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "r", 0, "one", NULL), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "r", 0, "two", NULL), VG_OK);
    VT_EQ_INT(del_s(kv, 0, "old", 1, &seq), VG_OK);
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.pending_ops, 10);
    VT_CHECK(st.pending_bytes > 0);
    gate_open(&rec);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.commits, commits_before + 1); /* all ten in one transaction */
    VT_CHECK(strcmp(dump(kv, 0), "back:0=put after del\nhold:0=first batch\nq:3=q3\nr:0=two\n") == 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    VT_CHECK(!rec.non_monotonic);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

static void test_order_across_batches(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    uint64_t seq;
    VT_EQ_INT(put_s(kv, 0, "k", 0, "v1", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_EQ_INT(del_s(kv, 0, "k", 0, &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_CHECK(strcmp(dump(kv, 0), "") == 0);
    VT_EQ_INT(put_s(kv, 0, "k", 0, "v2", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "k", 0, "v3", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_CHECK(strcmp(dump(kv, 0), "k:0=v3\n") == 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    vt_tmpdir_free(dir);
}

/* Random puts, dels and del_keys over a small key space against a model,
 * syncing now and then and reopening three times: every scan equals the
 * model, whatever the batching was. */
#define MK 8 /* keys */
#define MS 6 /* subs per key */
typedef struct {
    bool live;
    char val[16];
} cell_t;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

static void model_dump(cell_t m[MK][MS], char *out, size_t cap)
{
    out[0] = '\0';
    for (int k = 0; k < MK; k++)
        for (int s = 0; s < MS; s++)
            if (m[k][s].live) {
                size_t used = strlen(out);
                snprintf(out + used, cap - used, "key%d:%d=%s\n", k, s, m[k][s].val);
            }
}

static void test_random_vs_model(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    static cell_t model[MK][MS];
    memset(model, 0, sizeof model);
    unsigned seed = 99;
    static char want[65536];
    int mismatches = 0;
    for (int round = 0; round < 4; round++) {
        vg_kv_t *kv;
        VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
        uint64_t seq = 0;
        for (int i = 0; i < 1500; i++) {
            int k = (int)(rnd(&seed) % MK), s = (int)(rnd(&seed) % MS);
            char key[8];
            snprintf(key, sizeof key, "key%d", k);
            unsigned what = rnd(&seed) % 10;
            if (what < 6) {
                cell_t *c = &model[k][s];
                snprintf(c->val, sizeof c->val, "r%di%d", round, i);
                c->live = true;
                VT_EQ_INT(vg_kv_put(kv, 9, key, strlen(key), (uint64_t)s, c->val, strlen(c->val), &seq), VG_OK);
            } else if (what < 9) {
                model[k][s].live = false;
                VT_EQ_INT(vg_kv_del(kv, 9, key, strlen(key), (uint64_t)s, &seq), VG_OK);
            } else {
                for (int j = 0; j < MS; j++)
                    model[k][j].live = false;
                VT_EQ_INT(vg_kv_del_key(kv, 9, key, strlen(key), &seq), VG_OK);
            }
            if (rnd(&seed) % 200 == 0) {
                VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
                model_dump(model, want, sizeof want);
                mismatches += strcmp(dump(kv, 9), want) != 0;
            }
        }
        VT_EQ_INT(vg_kv_close(kv), VG_OK);
    }
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    model_dump(model, want, sizeof want);
    mismatches += strcmp(dump(kv, 9), want) != 0;
    VT_EQ_INT(mismatches, 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    vt_tmpdir_free(dir);
}

/* ---- backpressure and callbacks ----------------------------------------------------------- */

static void test_backpressure(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    static rec_t rec;
    rec_init(&rec);
    vg_kv_opts_t o = {.max_pending_bytes = 4096, .on_durable = on_durable, .ctx = &rec};
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, &o, &kv) == VG_OK);
    static char big[8192];
    memset(big, 'x', sizeof big);
    /* Larger than the whole budget: could never be queued. */
    VT_EQ_INT(vg_kv_put(kv, 0, "k", 1, 0, big, 4096, NULL), VG_ETOOBIG);

    gate_close(&rec);
    uint64_t seq;
    VT_EQ_INT(put_s(kv, 0, "hold", 0, "x", &seq), VG_OK);
    gate_wait_held(&rec, seq);
    int accepted = 0, again = 0;
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        int rc = vg_kv_put(kv, 0, key, strlen(key), 0, big, 500, &seq);
        if (rc == VG_OK)
            accepted++;
        else if (rc == VG_AGAIN)
            again++;
    }
    VT_CHECK(accepted >= 5 && accepted <= 8); /* 4096 / (500 + overhead) */
    VT_EQ_INT(accepted + again, 100);
    vg_kv_stats_t st;
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.rejected, again);
    VT_EQ_INT(st.pending_ops, accepted);
    VT_CHECK(st.pending_bytes <= 4096 && st.pending_bytes > (uint64_t)accepted * 500);
    gate_open(&rec);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.pending_ops, 0);
    VT_EQ_INT(st.pending_bytes, 0);
    VT_EQ_INT(vg_kv_put(kv, 0, "after", 5, 0, big, 500, &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    static dump_t d;
    d.text[0] = '\0';
    d.n = 0;
    VT_EQ_INT(vg_kv_scan(kv, 0, dump_cb, &d), VG_OK);
    VT_EQ_INT(d.n, (size_t)accepted + 2);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* ---- concurrency -------------------------------------------------------------------------- */

#define WRITERS 4
#define PER_WRITER 5000

typedef struct {
    vg_kv_t *kv;
    int id;
    uint64_t max_seq;
    int again;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    char key[32], val[48];
    uint64_t prev = 0;
    for (int i = 0; i < PER_WRITER; i++) {
        snprintf(key, sizeof key, "w%d/%05d", w->id, i);
        snprintf(val, sizeof val, "value of writer %d item %d", w->id, i);
        uint64_t seq;
        int rc;
        while ((rc = vg_kv_put(w->kv, 4, key, strlen(key), (uint64_t)i, val, strlen(val), &seq)) == VG_AGAIN) {
            w->again++;
            sleep_ms(1);
        }
        if (rc != VG_OK || seq <= prev)
            return NULL; /* max_seq stays short of the end: the test sees it */
        prev = seq;
    }
    w->max_seq = prev;
    return NULL;
}

typedef struct {
    uint64_t next_key;
    int bad;
} scan_check_t;

static int check_cb(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen)
{
    scan_check_t *c = ctx;
    char want_key[32], want_val[48];
    int w = (int)(c->next_key / PER_WRITER), i = (int)(c->next_key % PER_WRITER);
    snprintf(want_key, sizeof want_key, "w%d/%05d", w, i);
    snprintf(want_val, sizeof want_val, "value of writer %d item %d", w, i);
    if (klen != strlen(want_key) || memcmp(key, want_key, klen) != 0 || sub != (uint64_t)i ||
        vlen != strlen(want_val) || memcmp(val, want_val, vlen) != 0)
        c->bad++;
    c->next_key++;
    return 0;
}

static void test_concurrent_puts(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    static rec_t rec;
    rec_init(&rec);
    vg_kv_opts_t o = {.max_pending_bytes = 256 << 10, .on_durable = on_durable, .ctx = &rec};
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, &o, &kv) == VG_OK);
    pthread_t th[WRITERS];
    writer_t w[WRITERS];
    uint64_t t0 = vg_clock_mono_ns();
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer_t){kv, i, 0, 0};
        VT_REQUIRE(pthread_create(&th[i], NULL, writer_main, &w[i]) == 0);
    }
    uint64_t last = 0;
    int again = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        VT_CHECK(w[i].max_seq > 0);
        if (w[i].max_seq > last)
            last = w[i].max_seq;
        again += w[i].again;
    }
    VT_EQ_INT(last, WRITERS * PER_WRITER);
    VT_EQ_INT(vg_kv_sync(kv, last), VG_OK);
    uint64_t t1 = vg_clock_mono_ns();
    vg_kv_stats_t st;
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.ops, WRITERS * PER_WRITER);
    VT_EQ_INT(st.rejected, again);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    pthread_mutex_lock(&rec.mu);
    VT_CHECK(!rec.non_monotonic);
    VT_EQ_INT(rec.last, last);
    for (size_t i = 0; i < rec.n && i < 4096; i++)
        VT_EQ_INT(rec.status[i], VG_OK);
    pthread_mutex_unlock(&rec.mu);
    printf("  %d writers x %d puts: %.0f ops/s, %llu commits (%.0f ops/commit), commit latency last %llu us, "
           "max %llu us, %d puts refused by backpressure (retried)\n",
           WRITERS, PER_WRITER, WRITERS * PER_WRITER / ((t1 - t0) / 1e9), (unsigned long long)st.commits,
           (double)st.ops / (double)st.commits, (unsigned long long)st.last_commit_us,
           (unsigned long long)st.max_commit_us, again);

    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    scan_check_t c = {0, 0};
    VT_EQ_INT(vg_kv_scan(kv, 4, check_cb, &c), VG_OK);
    VT_EQ_INT(c.next_key, WRITERS * PER_WRITER);
    VT_EQ_INT(c.bad, 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* One writer that waits for each put to be durable: the latency of a single
 * commit (an fsync of the WAL) on this disk. */
static void test_commit_latency(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    enum { N = 200 };
    uint64_t t0 = vg_clock_mono_ns();
    for (int i = 0; i < N; i++) {
        uint64_t seq;
        VT_EQ_INT(put_s(kv, 0, "session", (uint64_t)i, "a small value of some forty bytes......", &seq), VG_OK);
        VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    }
    uint64_t t1 = vg_clock_mono_ns();
    vg_kv_stats_t st;
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.commits, N);
    printf("  put+sync one at a time: %.0f us per durable put (%.0f/s), commit max %llu us\n", (t1 - t0) / 1e3 / N,
           N / ((t1 - t0) / 1e9), (unsigned long long)st.max_commit_us);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    vt_tmpdir_free(dir);
}

/* ---- opening ---------------------------------------------------------------------------------- */

static void test_schema_version(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    uint64_t seq;
    VT_EQ_INT(put_s(kv, 0, "k", 0, "v", &seq), VG_OK);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);

    VT_EQ_INT(set_version(path, "UPDATE meta SET value = 2 WHERE name = 'schema_version'"), SQLITE_OK);
    kv = NULL;
    VT_EQ_INT(vg_kv_open(path, NULL, &kv), VG_EPROTO);
    VT_CHECK(kv == NULL);
    /* Refused, not rewritten: the version is still 2 and the record still there. */
    sqlite3 *db;
    VT_REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    VT_REQUIRE(sqlite3_prepare_v2(db, "SELECT (SELECT value FROM meta), (SELECT count(*) FROM kv)", -1, &st, NULL) ==
               SQLITE_OK);
    VT_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    VT_EQ_INT(sqlite3_column_int(st, 0), 2);
    VT_EQ_INT(sqlite3_column_int(st, 1), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);

    VT_EQ_INT(set_version(path, "DELETE FROM meta"), SQLITE_OK);
    VT_EQ_INT(vg_kv_open(path, NULL, &kv), VG_EPROTO);
    VT_EQ_INT(set_version(path, "INSERT INTO meta VALUES('schema_version', 1)"), SQLITE_OK);
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    VT_CHECK(strcmp(dump(kv, 0), "k:0=v\n") == 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);

    /* Somebody else's database. */
    char other[600];
    path_in(other, sizeof other, dir, "other.db");
    sqlite3 *odb;
    VT_REQUIRE(sqlite3_open(other, &odb) == SQLITE_OK);
    VT_EQ_INT(sqlite3_exec(odb, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(odb);
    VT_EQ_INT(vg_kv_open(other, NULL, &kv), VG_EPROTO);
    vt_tmpdir_free(dir);
}

static void test_not_a_database(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    static const char junk[] = "this is not an SQLite database, just some text that is long enough to fill a "
                               "header of one hundred bytes............................................\n";
    FILE *f = fopen(path, "w");
    VT_REQUIRE(f);
    fwrite(junk, 1, sizeof junk - 1, f);
    fclose(f);
    vg_kv_t *kv = NULL;
    VT_EQ_INT(vg_kv_open(path, NULL, &kv), VG_ECORRUPT);
    VT_CHECK(kv == NULL);
    /* Left as it was. */
    char buf[512] = "";
    f = fopen(path, "r");
    VT_REQUIRE(f);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    VT_EQ_INT(n, sizeof junk - 1);
    VT_CHECK(memcmp(buf, junk, n) == 0);

    /* A directory where the file should be. */
    char sub[600];
    path_in(sub, sizeof sub, dir, "adir");
    VT_REQUIRE(mkdir(sub, 0700) == 0);
    VT_CHECK(vg_kv_open(sub, NULL, &kv) < 0);
    VT_CHECK(vg_kv_open("", NULL, &kv) == VG_EINVAL);
    vt_tmpdir_free(dir);
}

/* The connection holds an exclusive lock: a second opener fails clearly. */
static void test_second_opener(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    vg_kv_t *kv, *kv2 = NULL;
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    uint64_t seq;
    VT_EQ_INT(put_s(kv, 0, "k", 0, "v", &seq), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, seq), VG_OK);
    VT_EQ_INT(vg_kv_open(path, NULL, &kv2), VG_EIO);
    VT_CHECK(kv2 == NULL);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    VT_REQUIRE(vg_kv_open(path, NULL, &kv2) == VG_OK);
    VT_CHECK(strcmp(dump(kv2, 0), "k:0=v\n") == 0);
    VT_EQ_INT(vg_kv_close(kv2), VG_OK);
    vt_tmpdir_free(dir);
}

/* ---- a failing disk --------------------------------------------------------------------------- */

/* An SQLite VFS that is the default one except that xSync fails while
 * g_fail_sync is set. Registered once, under its own name, and used only by
 * stores opened with opts.vfs = "vgfault". The unix VFS gives the main file
 * and the WAL different method tables (the WAL takes no locks), so each
 * table met is copied once with xSync replaced; the copy's index is found
 * from the file's original table. */
#define FAULT_TABLES 4
static sqlite3_vfs g_fvfs;
static sqlite3_vfs *g_base;
static const sqlite3_io_methods *g_orig[FAULT_TABLES];
static sqlite3_io_methods g_wrapped[FAULT_TABLES];
static int g_ntables;
static atomic_int g_fail_sync;
static atomic_int g_full; /* xWrite fails with SQLITE_FULL (a full disk) while set */

static const sqlite3_io_methods *orig_of(const sqlite3_file *f)
{
    for (int i = 0; i < g_ntables; i++)
        if (f->pMethods == &g_wrapped[i])
            return g_orig[i];
    return f->pMethods;
}

static int fault_sync(sqlite3_file *f, int flags)
{
    if (atomic_load(&g_fail_sync))
        return SQLITE_IOERR_FSYNC;
    return orig_of(f)->xSync(f, flags);
}

static int fault_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    if (atomic_load(&g_full))
        return SQLITE_FULL;
    return orig_of(f)->xWrite(f, buf, n, off);
}

/* Opens are serialised by the test (one store at a time uses this VFS). */
static int fault_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags)
{
    int rc = g_base->xOpen(g_base, name, f, flags, out_flags);
    if (rc != SQLITE_OK || !f->pMethods)
        return rc;
    int i = 0;
    while (i < g_ntables && g_orig[i] != f->pMethods)
        i++;
    if (i == g_ntables) {
        if (i == FAULT_TABLES)
            return rc; /* not wrapped: the test will notice that syncs do not fail */
        g_orig[i] = f->pMethods;
        g_wrapped[i] = *f->pMethods;
        g_wrapped[i].xSync = fault_sync;
        g_wrapped[i].xWrite = fault_write;
        g_ntables++;
    }
    f->pMethods = &g_wrapped[i];
    return rc;
}

static void fault_vfs_register(void)
{
    if (g_base)
        return;
    g_base = sqlite3_vfs_find(NULL);
    g_fvfs = *g_base;
    g_fvfs.zName = "vgfault";
    g_fvfs.pNext = NULL;
    g_fvfs.xOpen = fault_open;
    sqlite3_vfs_register(&g_fvfs, 0);
}

static void test_commit_failure(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    fault_vfs_register();
    static rec_t rec;
    rec_init(&rec);
    vg_kv_opts_t o = {.on_durable = on_durable, .ctx = &rec, .vfs = "vgfault"};
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, &o, &kv) == VG_OK);
    uint64_t seq, good;
    VT_EQ_INT(put_s(kv, 0, "kept", 0, "before the failure", &good), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, good), VG_OK);

    atomic_store(&g_fail_sync, 1);
    VT_EQ_INT(put_s(kv, 0, "lost", 0, "in the failed batch", &seq), VG_OK);
    int rc = vg_kv_sync(kv, seq);
    VT_CHECK(rc < 0);
    VT_EQ_INT(vg_kv_sync(kv, good), VG_OK); /* what was durable stays durable */
    VT_EQ_INT(put_s(kv, 0, "later", 0, "refused", NULL), VG_EIO);
    vg_kv_stats_t st;
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.failed, rc);
    VT_EQ_INT(st.durable_seq, good);
    /* vg_kv_sync wakes when the batch is settled; on_durable for it may
     * still be running on the store thread: wait for it (bounded). */
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&rec.mu);
        size_t n = rec.n;
        pthread_mutex_unlock(&rec.mu);
        if (n >= 2)
            break;
        usleep(1000);
    }
    pthread_mutex_lock(&rec.mu);
    VT_REQUIRE(rec.n == 2);
    VT_EQ_INT(rec.seqs[0], good);
    VT_EQ_INT(rec.status[0], VG_OK);
    VT_EQ_INT(rec.seqs[1], seq);
    VT_EQ_INT(rec.status[1], rc);
    pthread_mutex_unlock(&rec.mu);
    atomic_store(&g_fail_sync, 0);
    VT_EQ_INT(vg_kv_close(kv), rc);

    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    VT_CHECK(strcmp(dump(kv, 0), "kept:0=before the failure\n") == 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

/* A full disk pauses the store: nothing is reported durable while writes
 * fail with SQLITE_FULL, later writes queue behind, and once space is back
 * everything commits in order, exactly once, and survives a reopen. */
static void test_disk_full_pause(void)
{
    char *dir = vt_tmpdir_new("kv");
    VT_REQUIRE(dir);
    char path[512];
    path_in(path, sizeof path, dir, "kv.db");
    fault_vfs_register();
    static rec_t rec;
    rec_init(&rec);
    vg_kv_opts_t o = {.on_durable = on_durable, .ctx = &rec, .vfs = "vgfault"};
    vg_kv_t *kv;
    VT_REQUIRE(vg_kv_open(path, &o, &kv) == VG_OK);
    uint64_t good, s1, s2;
    VT_EQ_INT(put_s(kv, 0, "a", 0, "before", &good), VG_OK);
    VT_EQ_INT(vg_kv_sync(kv, good), VG_OK);
    atomic_store(&g_full, 1);
    VT_EQ_INT(put_s(kv, 0, "b", 0, "during", &s1), VG_OK);
    vg_kv_stats_t st;
    for (int i = 0; i < 2000; i++) {
        vg_kv_stats(kv, &st);
        if (st.state == VG_KV_DISK_FULL && st.disk_full_retries >= 2)
            break;
        usleep(1000);
    }
    VT_EQ_INT(st.state, VG_KV_DISK_FULL);
    VT_CHECK(st.disk_full_retries >= 2);
    VT_EQ_INT(st.failed, VG_OK);
    VT_EQ_INT(st.durable_seq, good); /* nothing reported stored during the outage */
    VT_EQ_INT(put_s(kv, 0, "c", 0, "queued behind", &s2), VG_OK);
    VT_EQ_INT(put_s(kv, 0, "a", 0, "overwritten", NULL), VG_OK);
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.durable_seq, good);
    atomic_store(&g_full, 0);
    VT_EQ_INT(vg_kv_sync(kv, s2 + 1), VG_OK);
    vg_kv_stats(kv, &st);
    VT_EQ_INT(st.state, VG_KV_OK);
    VT_EQ_INT(st.disk_full_pauses, 1);
    VT_EQ_INT(st.failed, VG_OK);
    /* on_durable: good, then the paused batch, then what queued behind it; all OK, in order. */
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&rec.mu);
        uint64_t last = rec.n ? rec.seqs[rec.n - 1] : 0;
        pthread_mutex_unlock(&rec.mu);
        if (last >= s2 + 1)
            break;
        usleep(1000);
    }
    pthread_mutex_lock(&rec.mu);
    VT_CHECK(rec.n >= 2);
    for (size_t i = 0; i < rec.n; i++) {
        VT_EQ_INT(rec.status[i], VG_OK);
        if (i)
            VT_CHECK(rec.seqs[i] > rec.seqs[i - 1]);
    }
    VT_EQ_INT(rec.seqs[0], good);
    VT_CHECK(rec.seqs[1] >= s1);
    pthread_mutex_unlock(&rec.mu);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    VT_REQUIRE(vg_kv_open(path, NULL, &kv) == VG_OK);
    VT_CHECK(strcmp(dump(kv, 0), "a:0=overwritten\nb:0=during\nc:0=queued behind\n") == 0);
    VT_EQ_INT(vg_kv_close(kv), VG_OK);
    rec_deinit(&rec);
    vt_tmpdir_free(dir);
}

int main(void)
{
    vg_diag_set_level(VG_LOG_WARN);
    VT_RUN(test_put_del_scan);
    VT_RUN(test_disk_full_pause);
    VT_RUN(test_scan_stop);
    VT_RUN(test_reopen);
    VT_RUN(test_order_within_batch);
    VT_RUN(test_order_across_batches);
    VT_RUN(test_random_vs_model);
    VT_RUN(test_backpressure);
    VT_RUN(test_schema_version);
    VT_RUN(test_not_a_database);
    VT_RUN(test_second_opener);
    VT_RUN(test_commit_failure);
    VT_RUN(test_concurrent_puts);
    VT_RUN(test_commit_latency);
    return VT_DONE();
}
