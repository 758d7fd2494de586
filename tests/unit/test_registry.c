/* test_registry.c — unit tests for the device registry (src/sec/registry*.c).
 *
 * The builder's rules; add / lookup / revoke / delete with their
 * certificates and the rule that a certificate's issuer is a registered
 * CA; two handles on one file standing in for the server and the CLI:
 * refresh picks up the other's changes and reports revocations and
 * deletions, the inotify watcher does so by itself; touch and the batched
 * last-seen flush; passwords and tokens (argon2id, no plaintext in the
 * file); failed allocations leave no leaks; and the bulk figures: adding
 * VG_REG_BENCH_N devices (default 20,000) in batches of 1,000, loading and
 * refreshing them. */
#include "sec/registry.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "sec/pki.h"
#include "vt.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A test directory with a CA made by sec/pki, and its PEM. */
typedef struct {
    char *dir;
    char db[512];
    vg_pki_ca_t *ca;
    char *ca_pem;
} fixture_t;

static bool fixture_init(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    f->dir = vt_tmpdir_new("registry");
    if (!f->dir)
        return false;
    snprintf(f->db, sizeof f->db, "%s/data/registry.db", f->dir);
    char pki[512];
    snprintf(pki, sizeof pki, "%s/pki", f->dir);
    if (vg_pki_ca_init(pki, "Test CA", 30, false) || vg_pki_ca_load(pki, &f->ca))
        return false;
    f->ca_pem = vg_pki_cert_pem(vg_pki_ca_cert(f->ca));
    return f->ca_pem != NULL;
}

static void fixture_free(fixture_t *f)
{
    vg_free(f->ca_pem);
    vg_pki_ca_free(f->ca);
    vt_tmpdir_free(f->dir);
}

/* A certificate row for id, issued by the fixture's CA, with a random
 * fingerprint (no real certificate needed for the registry's rules). */
static void fake_cert(const fixture_t *f, const char *id, vg_registry_cert_t *c)
{
    memset(c, 0, sizeof *c);
    RAND_bytes(c->fingerprint, 32);
    snprintf(c->device_id, sizeof c->device_id, "%s", id);
    c->device_id_len = strlen(id);
    snprintf(c->serial_hex, sizeof c->serial_hex, "abc123");
    c->not_before_ms = 1000;
    c->not_after_ms = 2000;
    memcpy(c->issuer_fingerprint, vg_pki_ca_fingerprint(f->ca), 32);
}

static void test_builder(void)
{
    vg_registry_device_t d;
    VT_EQ_INT(vg_registry_device_init(&d, "", 0), VG_EINVAL);
    VT_EQ_INT(vg_registry_device_init(&d, ".hidden", 7), VG_EINVAL);
    VT_EQ_INT(vg_registry_device_init(&d, "a/b", 3), VG_EINVAL);
    VT_EQ_INT(vg_registry_device_init(&d, "a+b", 3), VG_EINVAL);
    char big[VG_REGISTRY_ID_MAX + 1];
    memset(big, 'x', sizeof big);
    VT_EQ_INT(vg_registry_device_init(&d, big, sizeof big), VG_EINVAL);
    VT_EQ_INT(vg_registry_device_init(&d, big, VG_REGISTRY_ID_MAX), VG_OK);
    VT_EQ_INT(vg_registry_device_init(&d, "dev-1", 5), VG_OK);
    VT_CHECK(strcmp(d.id, "dev-1") == 0 && d.status == VG_REG_ACTIVE && d.ngroups == 0);
    VT_EQ_INT(vg_registry_device_add_group(&d, "ward-3", 6), VG_OK);
    VT_EQ_INT(vg_registry_device_add_group(&d, "ward-3", 6), VG_EEXIST);
    VT_EQ_INT(vg_registry_device_add_group(&d, "bad group", 9), VG_EINVAL);
    VT_EQ_INT(vg_registry_device_add_group(&d, "icu", 3), VG_OK);
    VT_EQ_INT(vg_registry_device_set_attr(&d, "model", 5, "w2 pro", 6), VG_OK);
    VT_EQ_INT(vg_registry_device_set_attr(&d, "model", 5, "x", 1), VG_EEXIST);
    VT_EQ_INT(vg_registry_device_set_attr(&d, "q", 1, "a\"b", 3), VG_EINVAL);
    VT_EQ_INT(vg_registry_device_set_attr(&d, "empty", 5, "", 0), VG_OK);
    VT_CHECK(vg_registry_device_in_group(&d, "icu", 3) && !vg_registry_device_in_group(&d, "ic", 2));
    const char *v;
    size_t vl;
    VT_EQ_INT(vg_registry_device_attr(&d, "model", 5, &v, &vl), VG_OK);
    VT_CHECK(vl == 6 && strcmp(v, "w2 pro") == 0);
    VT_EQ_INT(vg_registry_device_attr(&d, "nope", 4, &v, &vl), VG_ENOTFOUND);
    for (int i = 0; i < VG_REGISTRY_GROUPS_MAX - 2; i++) {
        char g[16];
        int n = snprintf(g, sizeof g, "g%d", i);
        VT_EQ_INT(vg_registry_device_add_group(&d, g, (size_t)n), VG_OK);
    }
    VT_EQ_INT(vg_registry_device_add_group(&d, "one-more", 8), VG_ELIMIT);
    /* The string space runs out before 16 long attributes fit. */
    char val[VG_REGISTRY_VALUE_MAX];
    memset(val, 'v', sizeof val);
    int rc = VG_OK, added = 0;
    for (int i = 0; rc == VG_OK; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "k%d", i);
        rc = vg_registry_device_set_attr(&d, k, (size_t)n, val, sizeof val);
        added += rc == VG_OK;
    }
    VT_EQ_INT(rc, VG_ELIMIT);
    VT_CHECK(added >= 5 && d.strings_len <= VG_REGISTRY_STRINGS_MAX);
}

static void test_add_lookup_revoke_delete(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_t *reg = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    struct stat st;
    VT_CHECK(stat(f.db, &st) == 0 && (st.st_mode & 0777) == 0600);

    vg_registry_device_t d, got;
    vg_registry_cert_t c, cgot;
    VT_REQUIRE(vg_registry_device_init(&d, "dev-1", 5) == VG_OK);
    vg_registry_device_add_group(&d, "ward-3", 6);
    vg_registry_device_set_attr(&d, "model", 5, "w2", 2);
    fake_cert(&f, "dev-1", &c);
    /* The issuer is not registered yet. */
    VT_EQ_INT(vg_registry_device_add(reg, &d, &c, 1), VG_EPROTO);
    VT_EQ_INT(vg_registry_device_get(reg, "dev-1", 5, &got), VG_ENOTFOUND);

    char why[128];
    vg_registry_ca_t ca, cag;
    VT_EQ_INT(vg_registry_ca_add(reg, "junk", 4, false, &ca, why, sizeof why), VG_EMALFORMED);
    VT_EQ_INT(vg_registry_ca_add(reg, f.ca_pem, strlen(f.ca_pem), false, &ca, why, sizeof why), VG_OK);
    VT_CHECK(memcmp(ca.fingerprint, vg_pki_ca_fingerprint(f.ca), 32) == 0 && !ca.jitr);
    VT_CHECK(strcmp(ca.subject, "CN=Test CA") == 0);
    VT_EQ_INT(vg_registry_ca_add(reg, f.ca_pem, strlen(f.ca_pem), true, &cag, why, sizeof why), VG_EEXIST);
    VT_CHECK(!cag.jitr && cag.created_ms == ca.created_ms);
    VT_EQ_INT(vg_registry_ca_set_jitr(reg, ca.fingerprint, true), VG_OK);
    VT_EQ_INT(vg_registry_ca_get(reg, ca.fingerprint, &cag), VG_OK);
    VT_CHECK(cag.jitr);
    uint8_t zero[32] = {0};
    VT_EQ_INT(vg_registry_ca_set_jitr(reg, zero, true), VG_ENOTFOUND);

    uint64_t rev0 = vg_registry_rev(reg);
    VT_EQ_INT(vg_registry_device_add(reg, &d, &c, 1), VG_OK);
    VT_CHECK(vg_registry_rev(reg) == rev0 + 1);
    VT_EQ_INT(vg_registry_device_add(reg, &d, NULL, 1), VG_EEXIST);
    VT_EQ_INT(vg_registry_device_get(reg, "dev-1", 5, &got), VG_OK);
    VT_CHECK(got.status == VG_REG_ACTIVE && got.provenance == VG_REG_CLI && got.created_ms > 0);
    VT_CHECK(vg_registry_device_in_group(&got, "ward-3", 6));
    const char *v;
    size_t vl;
    VT_CHECK(vg_registry_device_attr(&got, "model", 5, &v, &vl) == VG_OK && vl == 2 && memcmp(v, "w2", 2) == 0);
    VT_EQ_INT(vg_registry_cert_get(reg, c.fingerprint, &cgot), VG_OK);
    VT_CHECK(strcmp(cgot.device_id, "dev-1") == 0 && cgot.status == VG_REG_ACTIVE &&
             strcmp(cgot.serial_hex, "abc123") == 0 && cgot.not_after_ms == 2000);

    /* A batch is all or nothing. */
    vg_registry_device_t batch[3];
    vg_registry_device_init(&batch[0], "dev-2", 5);
    vg_registry_device_init(&batch[1], "dev-3", 5);
    vg_registry_device_init(&batch[2], "dev-1", 5);
    VT_EQ_INT(vg_registry_device_add(reg, batch, NULL, 3), VG_EEXIST);
    VT_EQ_INT(vg_registry_device_get(reg, "dev-2", 5, &got), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_device_add(reg, batch, NULL, 2), VG_OK);
    VT_EQ_INT(vg_registry_device_count(reg), 3);
    /* A mismatched certificate is refused. */
    vg_registry_device_t d4;
    vg_registry_device_init(&d4, "dev-4", 5);
    vg_registry_cert_t c4;
    fake_cert(&f, "dev-5", &c4);
    VT_EQ_INT(vg_registry_device_add(reg, &d4, &c4, 1), VG_EINVAL);

    /* A second certificate, then revoke: both revoked, and final. */
    vg_registry_cert_t c2;
    fake_cert(&f, "dev-1", &c2);
    VT_EQ_INT(vg_registry_cert_add(reg, &c2), VG_OK);
    VT_EQ_INT(vg_registry_cert_add(reg, &c2), VG_EEXIST);
    fake_cert(&f, "nobody", &c4);
    VT_EQ_INT(vg_registry_cert_add(reg, &c4), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_device_set_status(reg, "dev-1", 5, VG_REG_DISABLED), VG_OK);
    VT_EQ_INT(vg_registry_device_set_status(reg, "dev-1", 5, VG_REG_ACTIVE), VG_OK);
    VT_EQ_INT(vg_registry_device_set_status(reg, "dev-1", 5, VG_REG_REVOKED), VG_OK);
    VT_EQ_INT(vg_registry_device_get(reg, "dev-1", 5, &got), VG_OK);
    VT_EQ_INT(got.status, VG_REG_REVOKED);
    VT_EQ_INT(vg_registry_cert_get(reg, c.fingerprint, &cgot), VG_OK);
    VT_EQ_INT(cgot.status, VG_REG_REVOKED);
    VT_EQ_INT(vg_registry_cert_get(reg, c2.fingerprint, &cgot), VG_OK);
    VT_EQ_INT(cgot.status, VG_REG_REVOKED);
    VT_EQ_INT(vg_registry_device_set_status(reg, "dev-1", 5, VG_REG_ACTIVE), VG_EPROTO);
    fake_cert(&f, "dev-1", &c4);
    VT_EQ_INT(vg_registry_cert_add(reg, &c4), VG_EPROTO);
    VT_EQ_INT(vg_registry_device_set_status(reg, "nobody", 6, VG_REG_REVOKED), VG_ENOTFOUND);

    /* Everything survives a reopen. */
    VT_EQ_INT(vg_registry_close(reg), VG_OK);
    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    VT_EQ_INT(vg_registry_device_count(reg), 3);
    VT_EQ_INT(vg_registry_device_get(reg, "dev-1", 5, &got), VG_OK);
    VT_CHECK(got.status == VG_REG_REVOKED && vg_registry_device_in_group(&got, "ward-3", 6));
    VT_EQ_INT(vg_registry_cert_get(reg, c2.fingerprint, &cgot), VG_OK);
    VT_EQ_INT(vg_registry_ca_get(reg, ca.fingerprint, &cag), VG_OK);

    VT_EQ_INT(vg_registry_device_delete(reg, "dev-1", 5), VG_OK);
    VT_EQ_INT(vg_registry_device_delete(reg, "dev-1", 5), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_device_get(reg, "dev-1", 5, &got), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_cert_get(reg, c.fingerprint, &cgot), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_cert_get(reg, c2.fingerprint, &cgot), VG_ENOTFOUND);
    /* And may be registered again. */
    VT_EQ_INT(vg_registry_device_add(reg, &d, &c, 1), VG_OK);
    VT_EQ_INT(vg_registry_close(reg), VG_OK);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static int count_dev(void *ctx, const vg_registry_device_t *d)
{
    (*(int *)ctx)++;
    return 0;
}

static int count_cert(void *ctx, const vg_registry_cert_t *c)
{
    (*(int *)ctx)++;
    return 0;
}

static int find_ca(void *ctx, const vg_registry_ca_t *ca, const char *pem, size_t len)
{
    return len > 100 && strstr(pem, "BEGIN CERTIFICATE") ? 7 : 0;
}

static void test_scans(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_t *reg = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    VT_REQUIRE(vg_registry_ca_add(reg, f.ca_pem, strlen(f.ca_pem), false, NULL, NULL, 0) == VG_OK);
    vg_registry_device_t d[3];
    vg_registry_cert_t c[3];
    const char *ids[] = {"b", "a", "c"};
    for (int i = 0; i < 3; i++) {
        vg_registry_device_init(&d[i], ids[i], 1);
        fake_cert(&f, ids[i], &c[i]);
    }
    VT_REQUIRE(vg_registry_device_add(reg, d, c, 3) == VG_OK);
    int n = 0;
    VT_EQ_INT(vg_registry_device_scan(reg, count_dev, &n), VG_OK);
    VT_EQ_INT(n, 3);
    n = 0;
    VT_EQ_INT(vg_registry_cert_scan(reg, "a", 1, count_cert, &n), VG_OK);
    VT_EQ_INT(n, 1);
    VT_EQ_INT(vg_registry_ca_scan(reg, find_ca, NULL), 7);
    vg_registry_close(reg);
    fixture_free(&f);
}

/* Records the change callbacks. */
typedef struct {
    pthread_mutex_t mu;
    char ids[16][VG_REGISTRY_ID_MAX + 1];
    vg_registry_change_t what[16];
    atomic_int n;
} changes_t;

static void on_change(void *ctx, const char *id, size_t len, vg_registry_change_t what)
{
    changes_t *c = ctx;
    pthread_mutex_lock(&c->mu);
    int i = atomic_load(&c->n);
    if (i < 16) {
        snprintf(c->ids[i], sizeof c->ids[i], "%.*s", (int)len, id);
        c->what[i] = what;
        atomic_store(&c->n, i + 1);
    }
    pthread_mutex_unlock(&c->mu);
}

static bool wait_changes(changes_t *c, int n, double secs)
{
    double end = now_s() + secs;
    while (atomic_load(&c->n) < n && now_s() < end)
        usleep(2000);
    return atomic_load(&c->n) >= n;
}

static void test_two_handles_refresh(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_t *srv = NULL, *cli = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &srv) == VG_OK);
    VT_REQUIRE(vg_registry_open(f.db, NULL, &cli) == VG_OK);
    VT_REQUIRE(vg_registry_ca_add(cli, f.ca_pem, strlen(f.ca_pem), false, NULL, NULL, 0) == VG_OK);
    vg_registry_device_t d[3], got;
    vg_registry_cert_t c[3], cgot;
    const char *ids[] = {"r", "x", "k"};
    for (int i = 0; i < 3; i++) {
        vg_registry_device_init(&d[i], ids[i], 1);
        fake_cert(&f, ids[i], &c[i]);
    }
    VT_REQUIRE(vg_registry_device_add(cli, d, c, 3) == VG_OK);
    VT_EQ_INT(vg_registry_device_get(srv, "r", 1, &got), VG_ENOTFOUND);

    changes_t ch = {.mu = PTHREAD_MUTEX_INITIALIZER};
    VT_EQ_INT(vg_registry_refresh(srv, on_change, &ch), VG_OK);
    /* Additions of devices are not reported; a new CA is, once. */
    VT_EQ_INT(atomic_load(&ch.n), 1);
    VT_CHECK(ch.ids[0][0] == '\0' && ch.what[0] == VG_REG_CHANGE_CAS);
    atomic_store(&ch.n, 0);
    VT_EQ_INT(vg_registry_device_get(srv, "r", 1, &got), VG_OK);
    VT_EQ_INT(vg_registry_cert_get(srv, c[0].fingerprint, &cgot), VG_OK);
    VT_EQ_INT(vg_registry_rev(srv), vg_registry_rev(cli));
    vg_registry_touch(srv, "r", 1, 12345);

    VT_REQUIRE(vg_registry_device_set_status(cli, "r", 1, VG_REG_REVOKED) == VG_OK);
    VT_REQUIRE(vg_registry_device_delete(cli, "x", 1) == VG_OK);
    VT_REQUIRE(vg_registry_device_set_status(cli, "k", 1, VG_REG_DISABLED) == VG_OK);
    VT_EQ_INT(vg_registry_refresh(srv, on_change, &ch), VG_OK);
    VT_EQ_INT(atomic_load(&ch.n), 3);
    for (int i = 0; i < atomic_load(&ch.n); i++) {
        if (strcmp(ch.ids[i], "r") == 0)
            VT_EQ_INT(ch.what[i], VG_REG_CHANGE_REVOKED);
        else if (strcmp(ch.ids[i], "x") == 0)
            VT_EQ_INT(ch.what[i], VG_REG_CHANGE_DELETED);
        else
            VT_EQ_INT(ch.what[i], VG_REG_CHANGE_DISABLED);
    }
    VT_EQ_INT(vg_registry_device_get(srv, "r", 1, &got), VG_OK);
    VT_CHECK(got.status == VG_REG_REVOKED && got.last_seen_ms == 12345); /* the touch survives the reload of the row */
    VT_EQ_INT(vg_registry_cert_get(srv, c[0].fingerprint, &cgot), VG_OK);
    VT_EQ_INT(cgot.status, VG_REG_REVOKED);
    VT_EQ_INT(vg_registry_device_get(srv, "x", 1, &got), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_cert_get(srv, c[1].fingerprint, &cgot), VG_ENOTFOUND);
    /* Nothing new: nothing reported. */
    atomic_store(&ch.n, 0);
    VT_EQ_INT(vg_registry_refresh(srv, on_change, &ch), VG_OK);
    VT_EQ_INT(atomic_load(&ch.n), 0);

    /* The server's own write is in its index at once, while the CLI's
     * interleaved write is still picked up by the next refresh. */
    vg_registry_device_t a, b;
    vg_registry_device_init(&a, "from-cli", 8);
    vg_registry_device_init(&b, "from-srv", 8);
    VT_REQUIRE(vg_registry_device_add(cli, &a, NULL, 1) == VG_OK);
    VT_REQUIRE(vg_registry_device_add(srv, &b, NULL, 1) == VG_OK);
    VT_EQ_INT(vg_registry_device_get(srv, "from-srv", 8, &got), VG_OK);
    VT_EQ_INT(vg_registry_device_get(srv, "from-cli", 8, &got), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_refresh(srv, NULL, NULL), VG_OK);
    VT_EQ_INT(vg_registry_device_get(srv, "from-cli", 8, &got), VG_OK);
    VT_EQ_INT(vg_registry_rev(srv), vg_registry_rev(cli) + 1);

    vg_registry_close(cli);
    vg_registry_close(srv);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static void test_watcher(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_t *srv = NULL, *cli = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &srv) == VG_OK);
    changes_t ch = {.mu = PTHREAD_MUTEX_INITIALIZER};
    VT_EQ_INT(vg_registry_watch_start(srv, on_change, &ch), VG_OK);
    VT_EQ_INT(vg_registry_watch_start(srv, on_change, &ch), VG_EEXIST);
    VT_REQUIRE(vg_registry_open(f.db, NULL, &cli) == VG_OK);
    vg_registry_device_t d, got;
    vg_registry_device_init(&d, "w-1", 3);
    VT_REQUIRE(vg_registry_device_add(cli, &d, NULL, 1) == VG_OK);
    /* The addition arrives without anyone calling refresh. */
    double end = now_s() + 5;
    while (vg_registry_device_get(srv, "w-1", 3, &got) != VG_OK && now_s() < end)
        usleep(2000);
    VT_EQ_INT(vg_registry_device_get(srv, "w-1", 3, &got), VG_OK);
    double t0 = now_s();
    VT_REQUIRE(vg_registry_device_set_status(cli, "w-1", 3, VG_REG_REVOKED) == VG_OK);
    VT_CHECK(wait_changes(&ch, 1, 5));
    printf("  watcher: revocation reported %.1f ms after the CLI's commit returned\n", (now_s() - t0) * 1000);
    VT_CHECK(atomic_load(&ch.n) >= 1 && strcmp(ch.ids[0], "w-1") == 0 && ch.what[0] == VG_REG_CHANGE_REVOKED);
    vg_registry_close(cli);
    /* The close of the other handle (a checkpoint) reports nothing more. */
    usleep(50000);
    VT_EQ_INT(atomic_load(&ch.n), 1);
    vg_registry_close(srv);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static int64_t last_seen_on_disk(const char *db, const char *id)
{
    vg_registry_t *r = NULL;
    vg_registry_device_t got;
    int64_t v = -1;
    if (vg_registry_open(db, NULL, &r) == VG_OK && vg_registry_device_get(r, id, strlen(id), &got) == VG_OK)
        v = got.last_seen_ms;
    vg_registry_close(r);
    return v;
}

static void test_touch_flush(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_t *reg = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    vg_registry_device_t d[2], got;
    vg_registry_device_init(&d[0], "t-1", 3);
    vg_registry_device_init(&d[1], "t-2", 3);
    VT_REQUIRE(vg_registry_device_add(reg, d, NULL, 2) == VG_OK);
    VT_EQ_INT(vg_registry_touch(reg, "nobody", 6, 5), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_touch(reg, "t-1", 3, 1000), VG_OK);
    VT_EQ_INT(vg_registry_touch(reg, "t-1", 3, 900), VG_OK); /* never goes back */
    VT_EQ_INT(vg_registry_device_get(reg, "t-1", 3, &got), VG_OK);
    VT_EQ_INT(got.last_seen_ms, 1000);
    VT_EQ_INT(last_seen_on_disk(f.db, "t-1"), 0);
    VT_EQ_INT(vg_registry_flush(reg), VG_OK);
    VT_EQ_INT(last_seen_on_disk(f.db, "t-1"), 1000);
    /* Deleted while queued: the flush skips it. */
    vg_registry_touch(reg, "t-2", 3, 2000);
    VT_EQ_INT(vg_registry_device_delete(reg, "t-2", 3), VG_OK);
    VT_EQ_INT(vg_registry_flush(reg), VG_OK);
    /* Close writes what is pending. */
    vg_registry_touch(reg, "t-1", 3, 3000);
    VT_EQ_INT(vg_registry_close(reg), VG_OK);
    VT_EQ_INT(last_seen_on_disk(f.db, "t-1"), 3000);

    /* With the background writer: one batch after 50 ms. */
    vg_registry_opts_t o = {.touch_flush_ms = 50};
    VT_REQUIRE(vg_registry_open(f.db, &o, &reg) == VG_OK);
    uint64_t rev = vg_registry_rev(reg);
    for (int i = 0; i < 100; i++)
        vg_registry_touch(reg, "t-1", 3, 4000 + i);
    double end = now_s() + 5;
    while (last_seen_on_disk(f.db, "t-1") != 4099 && now_s() < end)
        usleep(10000);
    VT_EQ_INT(last_seen_on_disk(f.db, "t-1"), 4099);
    VT_EQ_INT(vg_registry_rev(reg), rev + 1); /* one transaction for the 100 touches */
    VT_EQ_INT(vg_registry_close(reg), VG_OK);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

/* Whether the file holds the bytes s. */
static bool file_has(const char *path, const char *s)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vg_fs_read_all(path, 1 << 26, &buf, &len) != VG_OK)
        return false;
    bool found = memmem(buf, len, s, strlen(s)) != NULL;
    vg_free(buf);
    return found;
}

static void test_credentials(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_t *reg = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    vg_registry_device_t d;
    vg_registry_device_init(&d, "pw-dev", 6);
    VT_REQUIRE(vg_registry_device_add(reg, &d, NULL, 1) == VG_OK);
    const char *pw = "correct horse battery staple";
    VT_EQ_INT(vg_registry_password_set(reg, "ghost", 5, VG_REG_ROLE_DEVICE, pw, strlen(pw)), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_password_set(reg, "pw-dev", 6, VG_REG_ROLE_DEVICE, pw, 0), VG_EINVAL);
    VT_EQ_INT(vg_registry_password_set(reg, "pw-dev", 6, VG_REG_ROLE_DEVICE, pw, strlen(pw)), VG_OK);
    vg_registry_role_t role = VG_REG_ROLE_OPERATOR;
    double t0 = now_s();
    VT_EQ_INT(vg_registry_password_verify(reg, "pw-dev", 6, pw, strlen(pw), &role), VG_OK);
    double t_ok = now_s() - t0;
    VT_EQ_INT(role, VG_REG_ROLE_DEVICE);
    VT_EQ_INT(vg_registry_password_verify(reg, "pw-dev", 6, "wrong", 5, &role), VG_EPROTO);
    t0 = now_s();
    VT_EQ_INT(vg_registry_password_verify(reg, "ghost", 5, pw, strlen(pw), &role), VG_ENOTFOUND);
    double t_none = now_s() - t0;
    printf("  argon2id: verify %.1f ms, unknown principal %.1f ms\n", t_ok * 1000, t_none * 1000);
    VT_CHECK(t_none > t_ok / 3);
    /* Replacing the password. */
    VT_EQ_INT(vg_registry_password_set(reg, "pw-dev", 6, VG_REG_ROLE_DEVICE, "new-one", 7), VG_OK);
    VT_EQ_INT(vg_registry_password_verify(reg, "pw-dev", 6, pw, strlen(pw), &role), VG_EPROTO);
    VT_EQ_INT(vg_registry_password_verify(reg, "pw-dev", 6, "new-one", 7, &role), VG_OK);

    char tok[VG_REGISTRY_TOKEN_LEN + 1], tok2[VG_REGISTRY_TOKEN_LEN + 1], who[VG_REGISTRY_ID_MAX + 1];
    VT_EQ_INT(vg_registry_token_create(reg, "ops", 3, VG_REG_ROLE_OPERATOR, tok), VG_OK);
    VT_EQ_INT(strlen(tok), VG_REGISTRY_TOKEN_LEN);
    VT_CHECK(strncmp(tok, "vgt_", 4) == 0);
    VT_EQ_INT(vg_registry_token_create(reg, "ops", 3, VG_REG_ROLE_OPERATOR, tok2), VG_OK);
    VT_CHECK(strcmp(tok, tok2) != 0);
    VT_EQ_INT(vg_registry_token_create(reg, "ghost", 5, VG_REG_ROLE_DEVICE, tok2), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_token_verify(reg, tok, strlen(tok), who, &role), VG_OK);
    VT_CHECK(strcmp(who, "ops") == 0 && role == VG_REG_ROLE_OPERATOR);
    char bad[VG_REGISTRY_TOKEN_LEN + 1];
    memcpy(bad, tok, sizeof bad);
    bad[VG_REGISTRY_TOKEN_LEN - 1] = bad[VG_REGISTRY_TOKEN_LEN - 1] == 'A' ? 'B' : 'A';
    VT_EQ_INT(vg_registry_token_verify(reg, bad, strlen(bad), who, &role), VG_EPROTO);
    memcpy(bad, tok, sizeof bad);
    bad[5] = bad[5] == 'A' ? 'B' : 'A';
    VT_EQ_INT(vg_registry_token_verify(reg, bad, strlen(bad), who, &role), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_token_verify(reg, tok, strlen(tok) - 1, who, &role), VG_EPROTO);
    VT_EQ_INT(vg_registry_token_verify(reg, "vgt_!!", 6, who, &role), VG_EPROTO);

    /* A device's credentials go with it. */
    char dtok[VG_REGISTRY_TOKEN_LEN + 1];
    VT_EQ_INT(vg_registry_token_create(reg, "pw-dev", 6, VG_REG_ROLE_DEVICE, dtok), VG_OK);
    VT_EQ_INT(vg_registry_token_verify(reg, dtok, strlen(dtok), who, &role), VG_OK);
    VT_EQ_INT(vg_registry_close(reg), VG_OK);

    /* No plaintext anywhere in the files (the WAL is checkpointed at close). */
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", f.db);
    VT_CHECK(!file_has(f.db, pw) && !file_has(f.db, "new-one") && !file_has(f.db, tok + 16) &&
             !file_has(f.db, tok + 4 + 12 + 10));
    VT_CHECK(!file_has(wal, "new-one") && !file_has(wal, tok + 16));
    VT_CHECK(file_has(f.db, "$argon2id$v=19$m=19456,t=2,p=1$"));

    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    VT_EQ_INT(vg_registry_device_delete(reg, "pw-dev", 6), VG_OK);
    VT_EQ_INT(vg_registry_password_verify(reg, "pw-dev", 6, "new-one", 7, &role), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_token_verify(reg, dtok, strlen(dtok), who, &role), VG_ENOTFOUND);
    VT_EQ_INT(vg_registry_token_verify(reg, tok, strlen(tok), who, &role), VG_OK);
    vg_registry_close(reg);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static void test_unreadable_rows_and_foreign_files(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    /* Not a database. */
    char junk[600];
    snprintf(junk, sizeof junk, "%s/junk.db", f.dir);
    VT_REQUIRE(vg_fs_write_atomic(junk, "this is not sqlite, not at all, no.", 35) == VG_OK);
    vg_registry_t *reg = NULL;
    VT_EQ_INT(vg_registry_open(junk, NULL, &reg), VG_ECORRUPT);
    VT_CHECK(reg == NULL);
    /* A database that is not a registry is left alone. */
    char other[600];
    snprintf(other, sizeof other, "%s/other.db", f.dir);
    sqlite3 *db = NULL;
    VT_REQUIRE(sqlite3_open(other, &db) == SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL);
    sqlite3_close(db);
    VT_EQ_INT(vg_registry_open(other, NULL, &reg), VG_EPROTO);
    /* A device row edited into nonsense is not loaded (fail closed). */
    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    vg_registry_device_t d[2], got;
    vg_registry_device_init(&d[0], "good", 4);
    vg_registry_device_init(&d[1], "bad", 3);
    VT_REQUIRE(vg_registry_device_add(reg, d, NULL, 2) == VG_OK);
    vg_registry_close(reg);
    VT_REQUIRE(sqlite3_open(f.db, &db) == SQLITE_OK);
    VT_EQ_INT(sqlite3_exec(db, "UPDATE devices SET groups = '[\"a b\"]' WHERE id = 'bad'", NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    VT_REQUIRE(vg_registry_open(f.db, NULL, &reg) == VG_OK);
    VT_EQ_INT(vg_registry_device_get(reg, "good", 4, &got), VG_OK);
    VT_EQ_INT(vg_registry_device_get(reg, "bad", 3, &got), VG_ENOTFOUND);
    vg_registry_close(reg);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

/* Every allocation of ours failing in turn: open, add, refresh and close
 * return an error or succeed, and nothing leaks. */
static void test_alloc_failures(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_t *seed = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &seed) == VG_OK);
    VT_REQUIRE(vg_registry_ca_add(seed, f.ca_pem, strlen(f.ca_pem), false, NULL, NULL, 0) == VG_OK);
    vg_registry_device_t d[4];
    vg_registry_cert_t c[4];
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "m%d", i);
        vg_registry_device_init(&d[i], id, strlen(id));
        vg_registry_device_add_group(&d[i], "g", 1);
        fake_cert(&f, id, &c[i]);
    }
    VT_REQUIRE(vg_registry_device_add(seed, d, c, 2) == VG_OK);
    int ok = 0;
    for (long n = 0; n < 200; n++) {
        vg_registry_t *reg = NULL;
        vg_mem_fail_after(n);
        int rc = vg_registry_open(f.db, NULL, &reg);
        if (rc == VG_OK) {
            vg_registry_device_set_status(seed, "m0", 2, n % 2 ? VG_REG_DISABLED : VG_REG_ACTIVE);
            vg_registry_refresh(reg, NULL, NULL);
            vg_registry_touch(reg, "m1", 2, n);
            vg_registry_close(reg);
            ok++;
        }
        vg_mem_fail_after(-1);
    }
    VT_CHECK(ok > 0);
    vg_registry_close(seed);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

/* Lookups and touches on two threads while another handle adds, revokes
 * and deletes devices, the watcher refreshes and the flusher writes: no
 * crash or race (run under ASan here, and once under TSan by hand), and
 * the index ends where the database is. */
typedef struct {
    vg_registry_t *reg;
    atomic_bool stop;
    atomic_long ops;
} hammer_t;

static void *hammer_main(void *arg)
{
    hammer_t *h = arg;
    vg_registry_device_t got;
    long n = 0;
    while (!atomic_load(&h->stop)) {
        char id[16];
        int len = snprintf(id, sizeof id, "c-%ld", n % 64);
        if (vg_registry_device_get(h->reg, id, (size_t)len, &got) == VG_OK)
            vg_registry_touch(h->reg, id, (size_t)len, vg_clock_wall_ms());
        n++;
    }
    atomic_fetch_add(&h->ops, n);
    return NULL;
}

static void test_concurrent(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    vg_registry_opts_t o = {.touch_flush_ms = 5};
    vg_registry_t *srv = NULL, *cli = NULL;
    VT_REQUIRE(vg_registry_open(f.db, &o, &srv) == VG_OK);
    VT_REQUIRE(vg_registry_open(f.db, NULL, &cli) == VG_OK);
    changes_t ch = {.mu = PTHREAD_MUTEX_INITIALIZER};
    VT_REQUIRE(vg_registry_watch_start(srv, on_change, &ch) == VG_OK);
    hammer_t h = {.reg = srv};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        VT_REQUIRE(pthread_create(&th[i], NULL, hammer_main, &h) == 0);
    for (int round = 0; round < 40; round++) {
        vg_registry_device_t d[8];
        for (int i = 0; i < 8; i++) {
            char id[16];
            int len = snprintf(id, sizeof id, "c-%d", (round * 8 + i) % 64);
            vg_registry_device_init(&d[i], id, (size_t)len);
        }
        if (vg_registry_device_add(cli, d, NULL, 8) != VG_OK)
            for (int i = 0; i < 8; i++)
                vg_registry_device_delete(cli, d[i].id, d[i].id_len);
        vg_registry_device_set_status(cli, d[round % 8].id, d[round % 8].id_len, VG_REG_DISABLED);
        usleep(2000);
    }
    atomic_store(&h.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    VT_EQ_INT(vg_registry_refresh(srv, NULL, NULL), VG_OK);
    VT_CHECK(vg_registry_rev(srv) >= vg_registry_rev(cli));
    VT_EQ_INT(vg_registry_device_count(srv), vg_registry_device_count(cli));
    VT_CHECK(atomic_load(&ch.n) > 0 && atomic_load(&h.ops) > 1000);
    vg_registry_close(cli);
    vg_registry_close(srv);
    fixture_free(&f);
    VT_EQ_INT(vg_mem_used(VG_MEM_SEC), 0);
}

static void test_bulk(void)
{
    fixture_t f;
    VT_REQUIRE(fixture_init(&f));
    const char *env = getenv("VG_REG_BENCH_N");
    int total = env ? atoi(env) : 20000, batch = 1000;
    vg_registry_t *srv = NULL, *cli = NULL;
    VT_REQUIRE(vg_registry_open(f.db, NULL, &srv) == VG_OK);
    VT_REQUIRE(vg_registry_open(f.db, NULL, &cli) == VG_OK);
    VT_REQUIRE(vg_registry_ca_add(cli, f.ca_pem, strlen(f.ca_pem), false, NULL, NULL, 0) == VG_OK);
    vg_registry_device_t *d = malloc((size_t)batch * sizeof *d);
    vg_registry_cert_t *c = malloc((size_t)batch * sizeof *c);
    VT_REQUIRE(d && c);
    double t0 = now_s();
    int bad = 0;
    for (int b = 0; b < total; b += batch) {
        int n = total - b < batch ? total - b : batch;
        for (int i = 0; i < n; i++) {
            char id[32];
            int len = snprintf(id, sizeof id, "dev-%d", b + i);
            vg_registry_device_init(&d[i], id, (size_t)len);
            vg_registry_device_add_group(&d[i], "fleet", 5);
            fake_cert(&f, id, &c[i]);
        }
        bad += vg_registry_device_add(cli, d, c, (size_t)n) != VG_OK;
    }
    double t_add = now_s() - t0;
    VT_EQ_INT(bad, 0);
    t0 = now_s();
    VT_EQ_INT(vg_registry_refresh(srv, NULL, NULL), VG_OK);
    double t_refresh = now_s() - t0;
    VT_EQ_INT(vg_registry_device_count(srv), total);
    t0 = now_s();
    VT_EQ_INT(vg_registry_refresh(srv, NULL, NULL), VG_OK);
    double t_noop = now_s() - t0;
    VT_REQUIRE(vg_registry_device_set_status(cli, "dev-7", 5, VG_REG_REVOKED) == VG_OK);
    t0 = now_s();
    changes_t ch = {.mu = PTHREAD_MUTEX_INITIALIZER};
    VT_EQ_INT(vg_registry_refresh(srv, on_change, &ch), VG_OK);
    double t_one = now_s() - t0;
    VT_EQ_INT(atomic_load(&ch.n), 1);
    vg_registry_close(cli);
    vg_registry_close(srv);
    t0 = now_s();
    VT_REQUIRE(vg_registry_open(f.db, NULL, &srv) == VG_OK);
    double t_open = now_s() - t0;
    VT_EQ_INT(vg_registry_device_count(srv), total);
    /* Lookups. */
    t0 = now_s();
    vg_registry_device_t got;
    int miss = 0;
    for (int i = 0; i < total; i++) {
        char id[32];
        int len = snprintf(id, sizeof id, "dev-%d", i);
        miss += vg_registry_device_get(srv, id, (size_t)len, &got) != VG_OK;
    }
    double t_get = now_s() - t0;
    VT_EQ_INT(miss, 0);
    printf("  bulk %d devices with certificates: add %.2f s (%.3f ms/device, batches of %d); refresh of all %.0f ms; "
           "no-op refresh %.2f ms; refresh of one revocation %.2f ms; open (load) %.0f ms; lookup %.2f us; "
           "index %zu KB\n",
           total, t_add, t_add * 1000 / total, batch, t_refresh * 1000, t_noop * 1000, t_one * 1000, t_open * 1000,
           t_get * 1e6 / total, vg_mem_used(VG_MEM_SEC) / 1024);
    vg_registry_close(srv);
    free(d);
    free(c);
    fixture_free(&f);
}

int main(void)
{
    VT_RUN(test_builder);
    VT_RUN(test_add_lookup_revoke_delete);
    VT_RUN(test_scans);
    VT_RUN(test_two_handles_refresh);
    VT_RUN(test_watcher);
    VT_RUN(test_touch_flush);
    VT_RUN(test_credentials);
    VT_RUN(test_unreadable_rows_and_foreign_files);
    VT_RUN(test_alloc_failures);
    VT_RUN(test_concurrent);
    VT_RUN(test_bulk);
    return VT_DONE();
}
