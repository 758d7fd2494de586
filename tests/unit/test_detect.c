/* test_detect.c — unit tests for the threshold detector (src/detect/threshold.c)
 * and the per-device table (src/detect/devtable.c), including its checkpoint
 * encoding: round trips, and truncated or corrupted input, which must be
 * rejected with VG_EMALFORMED without reading past the buffer (run under
 * ASan: every decoded buffer is copied into an allocation of exactly its
 * length). */
#include "core/alloc.h"
#include "core/err.h"
#include "core/event.h"
#include "detect/devtable.h"
#include "detect/threshold.h"
#include "vt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- threshold ------------------------------------------------------------------ */

static vg_alert_type_t feed(const vg_threshold_cfg_t *c, vg_threshold_state_t *s, double hr, double *thr)
{
    static int64_t ts = 1700000000000;
    return vg_threshold_eval(c, s, hr, ts++, thr);
}

static void test_threshold_defaults(void)
{
    vg_threshold_cfg_t c;
    vg_threshold_cfg_default(&c);
    VT_CHECK(c.high == 140.0);
    VT_CHECK(c.low == 40.0);
    VT_CHECK(strcmp(vg_alert_type_name(VG_ALERT_HIGH_HEART_RATE), "HIGH_HEART_RATE") == 0);
    VT_CHECK(strcmp(vg_alert_type_name(VG_ALERT_LOW_HEART_RATE), "LOW_HEART_RATE") == 0);
    VT_CHECK(strcmp(vg_alert_type_name(VG_ALERT_NONE), "NONE") == 0);
    VT_CHECK(strcmp(vg_alert_type_name((vg_alert_type_t)42), "NONE") == 0);
}

static void test_threshold_episodes(void)
{
    vg_threshold_cfg_t c;
    vg_threshold_cfg_default(&c);
    vg_threshold_state_t s = {0};
    double thr = -1;

    VT_EQ_INT(feed(&c, &s, 80, &thr), VG_ALERT_NONE);
    VT_EQ_INT(feed(&c, &s, 141, &thr), VG_ALERT_HIGH_HEART_RATE); /* crossing fires */
    VT_CHECK(thr == 140.0);
    VT_EQ_INT(s.episode, VG_ALERT_HIGH_HEART_RATE);
    VT_EQ_INT(feed(&c, &s, 150, &thr), VG_ALERT_NONE); /* staying above does not re-fire */
    VT_EQ_INT(feed(&c, &s, 180, &thr), VG_ALERT_NONE);
    VT_EQ_INT(feed(&c, &s, 140, &thr), VG_ALERT_NONE); /* exactly at high is inside: closes */
    VT_EQ_INT(s.episode, VG_ALERT_NONE);
    VT_EQ_INT(feed(&c, &s, 140.5, &thr), VG_ALERT_HIGH_HEART_RATE); /* a new crossing fires again */
    VT_CHECK(thr == 140.0);
    VT_EQ_INT(feed(&c, &s, 30, &thr), VG_ALERT_LOW_HEART_RATE); /* high -> low directly */
    VT_CHECK(thr == 40.0);
    VT_EQ_INT(feed(&c, &s, 20, &thr), VG_ALERT_NONE);
    VT_EQ_INT(feed(&c, &s, 40, &thr), VG_ALERT_NONE); /* exactly at low is inside: closes */
    VT_EQ_INT(s.episode, VG_ALERT_NONE);
    VT_EQ_INT(feed(&c, &s, 39.9, &thr), VG_ALERT_LOW_HEART_RATE);
    VT_EQ_INT(feed(&c, &s, 200, &thr), VG_ALERT_HIGH_HEART_RATE); /* low -> high directly */
    VT_EQ_INT(feed(&c, &s, 90, &thr), VG_ALERT_NONE);
    VT_EQ_INT(s.samples, 12);
    VT_EQ_INT(s.last_ts_ms, 1700000000000 + 11);

    /* At exactly the thresholds nothing ever fires. */
    vg_threshold_state_t z = {0};
    VT_EQ_INT(feed(&c, &z, 140, &thr), VG_ALERT_NONE);
    VT_EQ_INT(feed(&c, &z, 40, &thr), VG_ALERT_NONE);
    VT_EQ_INT(z.episode, VG_ALERT_NONE);

    /* A NaN neither fires nor closes an open episode; a NULL threshold out
     * is accepted. */
    VT_EQ_INT(vg_threshold_eval(&c, &z, 150, 5, NULL), VG_ALERT_HIGH_HEART_RATE);
    VT_EQ_INT(vg_threshold_eval(&c, &z, NAN, 6, NULL), VG_ALERT_NONE);
    VT_EQ_INT(z.episode, VG_ALERT_HIGH_HEART_RATE);
    VT_EQ_INT(vg_threshold_eval(&c, &z, 150, 7, NULL), VG_ALERT_NONE);
    VT_EQ_INT(z.last_ts_ms, 7);

    /* Custom thresholds. */
    vg_threshold_cfg_t tight = {.high = 100, .low = 60};
    vg_threshold_state_t u = {0};
    VT_EQ_INT(feed(&tight, &u, 100.01, &thr), VG_ALERT_HIGH_HEART_RATE);
    VT_CHECK(thr == 100.0);
    VT_EQ_INT(feed(&tight, &u, 59, &thr), VG_ALERT_LOW_HEART_RATE);
    VT_CHECK(thr == 60.0);
}

static void test_threshold_saturates(void)
{
    vg_threshold_cfg_t c;
    vg_threshold_cfg_default(&c);
    vg_threshold_state_t s = {0};
    s.samples = UINT32_MAX - 1;
    feed(&c, &s, 80, NULL);
    VT_CHECK(s.samples == UINT32_MAX);
    feed(&c, &s, 80, NULL);
    VT_CHECK(s.samples == UINT32_MAX);
}

/* ---- devtable -------------------------------------------------------------------- */

static vg_threshold_state_t *get_s(vg_devtable_t *t, const char *id)
{
    return vg_devtable_get(t, id, strlen(id));
}

static void test_devtable_get(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    VT_EQ_INT(vg_devtable_count(t), 0);

    vg_threshold_state_t *a = get_s(t, "dev-1");
    VT_REQUIRE(a != NULL);
    VT_EQ_INT(a->episode, 0);
    VT_EQ_INT(a->samples, 0);
    VT_EQ_INT(a->last_ts_ms, 0);
    a->samples = 7;
    a->episode = VG_ALERT_LOW_HEART_RATE;
    VT_EQ_INT(vg_devtable_count(t), 1);
    vg_threshold_state_t *again = get_s(t, "dev-1");
    VT_CHECK(again == a);
    VT_EQ_INT(again->samples, 7);
    VT_EQ_INT(vg_devtable_count(t), 1);

    vg_threshold_state_t *b = get_s(t, "dev-2");
    VT_REQUIRE(b != NULL);
    VT_EQ_INT(b->samples, 0);
    VT_EQ_INT(vg_devtable_count(t), 2);
    /* Ids compare by length too: a prefix is another device. */
    VT_REQUIRE(get_s(t, "dev-") != NULL);
    VT_REQUIRE(vg_devtable_get(t, "dev-1x", 5) != NULL);
    VT_EQ_INT(get_s(t, "dev-1")->samples, 7);
    VT_EQ_INT(vg_devtable_count(t), 3);

    /* Ids at the inline/out-of-line boundary and at the limit. */
    char id[VG_EVENT_MAX_DEVICE_ID + 2];
    memset(id, 'q', sizeof(id));
    size_t lens[] = {0, 1, 30, 31, 32, 33, 64, VG_EVENT_MAX_DEVICE_ID};
    size_t nl = sizeof(lens) / sizeof(lens[0]);
    for (size_t i = 0; i < nl; i++) {
        vg_threshold_state_t *s = vg_devtable_get(t, id, lens[i]);
        VT_REQUIRE(s != NULL);
        s->samples = (uint32_t)(1000 + lens[i]);
    }
    VT_EQ_INT(vg_devtable_count(t), 3 + nl);
    for (size_t i = 0; i < nl; i++)
        VT_EQ_INT(vg_devtable_get(t, id, lens[i])->samples, 1000 + lens[i]);
    VT_EQ_INT(vg_devtable_count(t), 3 + nl);
    /* Longer than any valid device id: refused, table unchanged. */
    VT_CHECK(vg_devtable_get(t, id, VG_EVENT_MAX_DEVICE_ID + 1) == NULL);
    VT_EQ_INT(vg_devtable_count(t), 3 + nl);

    vg_devtable_free(t);
    vg_devtable_free(NULL);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

static void test_devtable_growth(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    enum { N = 300000 };
    char id[64];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(id, sizeof(id), "dev-%d", i);
        vg_threshold_state_t *s = vg_devtable_get(t, id, (size_t)n);
        if (!s || s->samples != 0) {
            bad++;
            continue;
        }
        s->samples = (uint32_t)i + 1;
        s->last_ts_ms = -(int64_t)i;
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(vg_devtable_count(t), N);
    size_t per_device = (vg_mem_used(VG_MEM_DETECT) - base) / N;
    printf("  %d devices (short ids): %zu bytes per device (vg_mem_used)\n", N, per_device);
    VT_CHECK(per_device <= 72);
    for (int i = 0; i < N; i++) {
        int n = snprintf(id, sizeof(id), "dev-%d", i);
        vg_threshold_state_t *s = vg_devtable_get(t, id, (size_t)n);
        bad += !s || s->samples != (uint32_t)i + 1 || s->last_ts_ms != -(int64_t)i;
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(vg_devtable_count(t), N);
    vg_devtable_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* A table with short and long ids and all episode values. */
static vg_devtable_t *sample_table(size_t n)
{
    vg_devtable_t *t;
    if (vg_devtable_new(&t) != VG_OK)
        return NULL;
    char id[VG_EVENT_MAX_DEVICE_ID + 1];
    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)snprintf(id, sizeof(id), "device-%zu", i);
        if (i % 5 == 0) {
            /* Pad to a long id: 32..128 bytes. */
            size_t want = 32 + (i * 13) % (VG_EVENT_MAX_DEVICE_ID - 31);
            memset(id + len, 'L', want - len);
            len = want;
        }
        vg_threshold_state_t *s = vg_devtable_get(t, id, len);
        if (!s) {
            vg_devtable_free(t);
            return NULL;
        }
        s->episode = (uint8_t)(i % 3);
        s->samples = (uint32_t)(i * 2654435761u);
        s->last_ts_ms = (int64_t)(i * 1000003) - 500000;
    }
    return t;
}

/* Decodes buf from an allocation of exactly len bytes so that ASan sees any
 * read past its end. */
static int restore_exact(vg_devtable_t *t, const uint8_t *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return VG_ENOMEM;
    if (len)
        memcpy(copy, buf, len);
    int rc = vg_devtable_restore(t, len ? copy : NULL, len);
    free(copy);
    return rc;
}

static void test_devtable_roundtrip(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    enum { N = 5000 };
    vg_devtable_t *t = sample_table(N);
    VT_REQUIRE(t != NULL);
    uint8_t *buf;
    size_t len;
    VT_REQUIRE(vg_devtable_serialize(t, &buf, &len) == VG_OK);
    VT_CHECK(len > 4 + 15 * N);
    VT_EQ_INT(buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24, N);

    vg_devtable_t *r;
    VT_REQUIRE(vg_devtable_new(&r) == VG_OK);
    VT_REQUIRE(get_s(r, "stale-device") != NULL); /* replaced by the restore */
    VT_EQ_INT(restore_exact(r, buf, len), VG_OK);
    VT_EQ_INT(vg_devtable_count(r), N);

    /* Every device of t is in r with the same state, and nothing else (the
     * counts stay equal after looking all of them up). */
    char id[VG_EVENT_MAX_DEVICE_ID + 1];
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
        size_t idlen = (size_t)snprintf(id, sizeof(id), "device-%zu", i);
        if (i % 5 == 0) {
            size_t want = 32 + (i * 13) % (VG_EVENT_MAX_DEVICE_ID - 31);
            memset(id + idlen, 'L', want - idlen);
            idlen = want;
        }
        const vg_threshold_state_t *a = vg_devtable_get(t, id, idlen);
        const vg_threshold_state_t *b = vg_devtable_get(r, id, idlen);
        bad += !a || !b || a->episode != b->episode || a->samples != b->samples || a->last_ts_ms != b->last_ts_ms;
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(vg_devtable_count(r), N);
    VT_EQ_INT(vg_devtable_count(t), N);

    /* Re-encoding gives the same bytes: the order is preserved. */
    uint8_t *buf2;
    size_t len2;
    VT_REQUIRE(vg_devtable_serialize(r, &buf2, &len2) == VG_OK);
    VT_EQ_INT(len2, len);
    VT_CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    vg_free(buf2);

    /* The empty table round-trips too. */
    vg_devtable_t *e;
    VT_REQUIRE(vg_devtable_new(&e) == VG_OK);
    VT_REQUIRE(vg_devtable_serialize(e, &buf2, &len2) == VG_OK);
    VT_EQ_INT(len2, 4);
    VT_EQ_INT(restore_exact(r, buf2, len2), VG_OK);
    VT_EQ_INT(vg_devtable_count(r), 0);
    VT_REQUIRE(get_s(r, "x") != NULL);
    vg_free(buf2);

    vg_free(buf);
    vg_devtable_free(e);
    vg_devtable_free(r);
    vg_devtable_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* A one-device encoding, built by hand to check the byte layout. */
static size_t encode_one(uint8_t *p, const char *id, uint16_t id_len, uint8_t episode, uint32_t samples, int64_t ts)
{
    uint8_t *start = p;
    *p++ = 1, *p++ = 0, *p++ = 0, *p++ = 0;
    *p++ = (uint8_t)id_len, *p++ = (uint8_t)(id_len >> 8);
    memcpy(p, id, strlen(id));
    p += strlen(id);
    *p++ = episode;
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(samples >> (8 * i));
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)((uint64_t)ts >> (8 * i));
    return (size_t)(p - start);
}

static void test_devtable_format(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    vg_threshold_state_t *s = get_s(t, "abc");
    VT_REQUIRE(s != NULL);
    s->episode = VG_ALERT_HIGH_HEART_RATE;
    s->samples = 0x01020304;
    s->last_ts_ms = -2;
    uint8_t *buf;
    size_t len;
    VT_REQUIRE(vg_devtable_serialize(t, &buf, &len) == VG_OK);
    uint8_t want[64];
    size_t wlen = encode_one(want, "abc", 3, 1, 0x01020304, -2);
    VT_EQ_INT(len, wlen);
    VT_CHECK(len == wlen && memcmp(buf, want, len) == 0);
    vg_free(buf);
    vg_devtable_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

static void test_devtable_restore_bad(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *src = sample_table(300);
    VT_REQUIRE(src != NULL);
    uint8_t *buf;
    size_t len;
    VT_REQUIRE(vg_devtable_serialize(src, &buf, &len) == VG_OK);

    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    vg_threshold_state_t *keep = get_s(t, "survivor");
    VT_REQUIRE(keep != NULL);
    keep->samples = 99;

    /* Every truncation is rejected and leaves the table as it was. */
    int wrong = 0;
    for (size_t n = 0; n < len; n++)
        wrong += restore_exact(t, buf, n) != VG_EMALFORMED;
    VT_EQ_INT(wrong, 0);
    /* So is a trailing byte. */
    uint8_t *longer = malloc(len + 1);
    VT_REQUIRE(longer != NULL);
    memcpy(longer, buf, len);
    longer[len] = 0;
    VT_EQ_INT(restore_exact(t, longer, len + 1), VG_EMALFORMED);
    free(longer);
    VT_EQ_INT(vg_devtable_count(t), 1);
    VT_EQ_INT(get_s(t, "survivor")->samples, 99);

    /* Hand-made bad records. */
    uint8_t one[300];
    size_t n1 = encode_one(one, "abc", 3, 2, 1, 1);
    VT_EQ_INT(restore_exact(t, one, n1), VG_OK); /* the baseline is valid */
    VT_EQ_INT(vg_devtable_count(t), 1);
    VT_REQUIRE(get_s(t, "survivor") != NULL);
    VT_EQ_INT(vg_devtable_count(t), 2);
    VT_EQ_INT(get_s(t, "survivor")->samples, 0);

    n1 = encode_one(one, "abc", 3, 3, 1, 1); /* unknown episode */
    VT_EQ_INT(restore_exact(t, one, n1), VG_EMALFORMED);
    n1 = encode_one(one, "abc", 2, 0, 1, 1); /* id_len says 2: 'c' is read as episode 99 */
    VT_EQ_INT(restore_exact(t, one, n1), VG_EMALFORMED);
    n1 = encode_one(one, "abc", 0xffff, 0, 1, 1); /* id_len beyond the buffer */
    VT_EQ_INT(restore_exact(t, one, n1), VG_EMALFORMED);
    char longid[VG_EVENT_MAX_DEVICE_ID + 2];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    n1 = encode_one(one, longid, (uint16_t)strlen(longid), 0, 1, 1); /* id over the limit */
    VT_EQ_INT(restore_exact(t, one, n1), VG_EMALFORMED);
    longid[VG_EVENT_MAX_DEVICE_ID] = '\0';
    n1 = encode_one(one, longid, (uint16_t)strlen(longid), 0, 1, 1); /* at the limit: fine */
    VT_EQ_INT(restore_exact(t, one, n1), VG_OK);

    /* A count far beyond the bytes present must not size anything. */
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    VT_EQ_INT(restore_exact(t, huge, sizeof(huge)), VG_EMALFORMED);

    /* The same device twice. */
    uint8_t two[64];
    size_t a = encode_one(two, "d", 1, 0, 1, 1);
    size_t b = encode_one(two + a, "d", 1, 0, 2, 2);
    memmove(two + a, two + a + 4, b - 4); /* drop the second count */
    two[0] = 2;
    VT_EQ_INT(restore_exact(t, two, a + b - 4), VG_EMALFORMED);
    two[a + 2] = 'e'; /* now distinct: valid */
    VT_EQ_INT(restore_exact(t, two, a + b - 4), VG_OK);
    VT_EQ_INT(vg_devtable_count(t), 2);

    /* Random garbage and random corruptions of a valid buffer: any result
     * but a crash or an over-read (ASan) is acceptable, and on failure the
     * code is VG_EMALFORMED. */
    srand(777);
    int odd = 0;
    uint8_t *junk = malloc(len);
    VT_REQUIRE(junk != NULL);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)rand() % (len + 1);
        if (iter % 2) {
            for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)rand();
            if (n >= 4 && iter % 4 == 1)
                junk[0] = (uint8_t)(rand() % 8), junk[1] = junk[2] = junk[3] = 0;
        } else {
            n = len;
            memcpy(junk, buf, len);
            for (int k = 0; k < 1 + rand() % 3; k++)
                junk[(size_t)rand() % len] ^= (uint8_t)(1 + rand() % 255);
        }
        int rc = restore_exact(t, junk, n);
        odd += rc != VG_OK && rc != VG_EMALFORMED;
    }
    free(junk);
    VT_EQ_INT(odd, 0);

    vg_free(buf);
    vg_devtable_free(t);
    vg_devtable_free(src);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* Allocation failures: get returns NULL, serialize and restore VG_ENOMEM;
 * the table stays usable and nothing leaks. */
static void test_devtable_alloc_failure(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *src = sample_table(100);
    VT_REQUIRE(src != NULL);
    uint8_t *buf;
    size_t len;
    VT_REQUIRE(vg_devtable_serialize(src, &buf, &len) == VG_OK);

    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    char id[VG_EVENT_MAX_DEVICE_ID];
    memset(id, 'k', sizeof(id));
    for (int i = 0; i < 40; i++) {
        id[0] = (char)('A' + i);
        for (long n = 0;; n++) {
            size_t before = vg_devtable_count(t);
            vg_mem_fail_after(n);
            vg_threshold_state_t *s = vg_devtable_get(t, id, i % 2 ? 5 : sizeof(id));
            vg_mem_fail_after(-1);
            if (s)
                break;
            VT_EQ_INT(vg_devtable_count(t), before);
        }
    }
    VT_EQ_INT(vg_devtable_count(t), 40);

    for (long n = 0;; n++) {
        vg_mem_fail_after(n);
        int rc = vg_devtable_restore(t, buf, len);
        vg_mem_fail_after(-1);
        if (rc == VG_OK)
            break;
        VT_EQ_INT(rc, VG_ENOMEM);
        VT_EQ_INT(vg_devtable_count(t), 40); /* untouched on failure */
    }
    VT_EQ_INT(vg_devtable_count(t), 100);

    uint8_t *out = NULL;
    size_t out_len = 0;
    vg_mem_fail_after(0);
    VT_EQ_INT(vg_devtable_serialize(t, &out, &out_len), VG_ENOMEM);
    vg_mem_fail_after(-1);

    vg_devtable_t *t2 = NULL;
    vg_mem_fail_after(0);
    VT_EQ_INT(vg_devtable_new(&t2), VG_ENOMEM);
    vg_mem_fail_after(-1);

    vg_free(buf);
    vg_devtable_free(t);
    vg_devtable_free(src);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

int main(void)
{
    VT_RUN(test_threshold_defaults);
    VT_RUN(test_threshold_episodes);
    VT_RUN(test_threshold_saturates);
    VT_RUN(test_devtable_get);
    VT_RUN(test_devtable_growth);
    VT_RUN(test_devtable_roundtrip);
    VT_RUN(test_devtable_format);
    VT_RUN(test_devtable_restore_bad);
    VT_RUN(test_devtable_alloc_failure);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), 0);
    return VT_DONE();
}
