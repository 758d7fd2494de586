/* test_devtable.c — unit tests for the per-device state table
 * (src/proc/devtable.c): lookup, stable indices in order of first
 * appearance, growth, and the checkpoint encoding — round trips (byte for
 * byte, deterministic), truncated or corrupted input (VG_EMALFORMED, never
 * a read past the buffer: every decoded buffer is copied into an
 * allocation of exactly its length, so the ASan build catches over-reads),
 * another state layout (VG_EPROTO), failed restores leaving the table as it
 * was, and allocation failures (core/alloc.h fault injection). */
#include "core/alloc.h"
#include "core/err.h"
#include "core/event.h"
#include "proc/devstate.h"
#include "proc/devtable.h"
#include "vt.h"

#include <stdint.h>
#include <stdlib.h>

#define HDR 12 /* count, layout, state_size (devtable.c) */

static const vg_devstate_t zero_state;

static vg_devstate_t *get_s(vg_devtable_t *t, const char *id)
{
    return vg_devtable_get(t, id, strlen(id), NULL);
}

/* Device i's id in the sample tables, written to id (room for
 * VG_EVENT_MAX_DEVICE_ID bytes); returns its length. Device 0 has the empty
 * id, device 1 one of the maximum length, every fifth a long one (32..128
 * bytes, stored out of line), the rest short ones (inline). */
static size_t sample_id(size_t i, char *id)
{
    char tmp[32];
    if (i == 0)
        return 0;
    size_t len = (size_t)snprintf(tmp, sizeof(tmp), "device-%zu", i);
    memcpy(id, tmp, len);
    size_t want = len;
    if (i == 1)
        want = VG_EVENT_MAX_DEVICE_ID;
    else if (i % 5 == 0)
        want = 32 + (i * 13) % (VG_EVENT_MAX_DEVICE_ID - 31);
    if (want > len)
        memset(id + len, 'L', want - len);
    return want;
}

/* Puts non-zero bytes into st, different per seed: every third device gets
 * a byte pattern over the whole state (padding included), the others a few
 * samples through every detector plus an open alert in a lifecycle slot. */
static void fill_state(vg_devstate_t *st, size_t seed)
{
    if (seed % 3 == 0) {
        memset(st, (int)(0x11 + seed * 37 % 0xee), sizeof(*st));
        return;
    }
    vg_detect_cfg_t c;
    vg_detect_cfg_default(&c);
    vg_cond_t conds[VG_DETECT_MAX_CONDS];
    int64_t ts = 1767571200000 + (int64_t)seed * 1000;
    for (size_t k = 0; k < 2 + seed % 6; k++) {
        double hr = 55.0 + (double)((seed + k * 7) % 60);
        int64_t steps = (seed + k) % 4 == 0 ? 20 : 0;
        vg_devstate_feed(&c, st, hr, steps, ts, ts, seed * 100 + k + 1, conds);
        ts += 5000;
    }
    st->slots[seed % VG_LIFECYCLE_SLOTS].type = VG_ALERT_EXTREME_HIGH_HR;
    st->slots[seed % VG_LIFECYCLE_SLOTS].severity = VG_SEV_WARNING;
    st->slots[seed % VG_LIFECYCLE_SLOTS].open_seq = seed * 2654435761u;
    st->slots[seed % VG_LIFECYCLE_SLOTS].opened_at_ms = ts;
    st->slots[seed % VG_LIFECYCLE_SLOTS].revision = (uint16_t)seed;
}

/* A table of n sample devices (sample_id, fill_state), or NULL. */
static vg_devtable_t *sample_table(size_t n)
{
    vg_devtable_t *t;
    if (vg_devtable_new(&t) != VG_OK)
        return NULL;
    char id[VG_EVENT_MAX_DEVICE_ID];
    for (size_t i = 0; i < n; i++) {
        size_t len = sample_id(i, id);
        uint32_t ix = UINT32_MAX;
        vg_devstate_t *s = vg_devtable_get(t, id, len, &ix);
        if (!s || ix != i) {
            vg_devtable_free(t);
            return NULL;
        }
        fill_state(s, i);
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

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Serialises t; *len = 0 and NULL on failure. */
static uint8_t *encode(const vg_devtable_t *t, size_t *len)
{
    uint8_t *buf = NULL;
    *len = 0;
    if (vg_devtable_serialize(t, &buf, len) != VG_OK)
        return NULL;
    return buf;
}

/* 1 if a and b hold the same devices with byte-identical states at the
 * same indices (compared through vg_devtable_at). */
static int same_tables(vg_devtable_t *a, vg_devtable_t *b)
{
    if (vg_devtable_count(a) != vg_devtable_count(b))
        return 0;
    for (uint32_t i = 0; i < vg_devtable_count(a); i++) {
        const char *ia, *ib;
        size_t la, lb;
        const vg_devstate_t *sa = vg_devtable_at(a, i, &ia, &la);
        const vg_devstate_t *sb = vg_devtable_at(b, i, &ib, &lb);
        if (!sa || !sb || la != lb || (la && memcmp(ia, ib, la) != 0) || memcmp(sa, sb, sizeof(*sa)) != 0)
            return 0;
    }
    return 1;
}

/* ---- lookup and indices ---------------------------------------------------------- */

static void test_devtable_get(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    VT_EQ_INT(vg_devtable_count(t), 0);
    /* An empty table finds nothing and has no index 0. */
    VT_CHECK(vg_devtable_find(t, "dev-1", 5, NULL) == NULL);
    VT_CHECK(vg_devtable_at(t, 0, NULL, NULL) == NULL);

    uint32_t ix = 99;
    vg_devstate_t *a = vg_devtable_get(t, "dev-1", 5, &ix);
    VT_REQUIRE(a != NULL);
    VT_EQ_INT(ix, 0);
    VT_CHECK(memcmp(a, &zero_state, sizeof(*a)) == 0); /* a new device starts zeroed */
    fill_state(a, 1);
    VT_CHECK(memcmp(a, &zero_state, sizeof(*a)) != 0);
    vg_devstate_t saved = *a;
    VT_EQ_INT(vg_devtable_count(t), 1);

    ix = 99;
    vg_devstate_t *again = vg_devtable_get(t, "dev-1", 5, &ix);
    VT_CHECK(again == a);
    VT_EQ_INT(ix, 0);
    VT_CHECK(memcmp(again, &saved, sizeof(saved)) == 0);
    VT_EQ_INT(vg_devtable_count(t), 1);

    /* Indices count up in order of first appearance; repeated ids keep
     * theirs. */
    VT_REQUIRE(vg_devtable_get(t, "dev-2", 5, &ix) != NULL);
    VT_EQ_INT(ix, 1);
    VT_REQUIRE(vg_devtable_get(t, "dev-3", 5, &ix) != NULL);
    VT_EQ_INT(ix, 2);
    VT_REQUIRE(vg_devtable_get(t, "dev-2", 5, &ix) != NULL);
    VT_EQ_INT(ix, 1);
    VT_REQUIRE(vg_devtable_get(t, "dev-1", 5, NULL) == a); /* index out-pointer is optional */
    VT_EQ_INT(vg_devtable_count(t), 3);

    /* Ids compare by length too: a prefix is another device. */
    VT_REQUIRE(vg_devtable_get(t, "dev-", 4, &ix) != NULL);
    VT_EQ_INT(ix, 3);
    VT_REQUIRE(vg_devtable_get(t, "dev-1x", 5, &ix) == a);
    VT_EQ_INT(ix, 0);
    VT_EQ_INT(vg_devtable_count(t), 4);

    /* find never creates: absent ids give NULL and leave the count alone;
     * present ones give get's pointer and index. */
    VT_CHECK(vg_devtable_find(t, "dev-9", 5, &ix) == NULL);
    VT_CHECK(vg_devtable_find(t, "dev-9", 5, NULL) == NULL);
    VT_CHECK(vg_devtable_find(t, "", 0, NULL) == NULL);
    VT_EQ_INT(vg_devtable_count(t), 4);
    ix = 99;
    VT_CHECK(vg_devtable_find(t, "dev-1", 5, &ix) == a);
    VT_EQ_INT(ix, 0);
    VT_CHECK(vg_devtable_find(t, "dev-3", 5, &ix) == vg_devtable_get(t, "dev-3", 5, NULL));
    VT_EQ_INT(ix, 2);
    VT_EQ_INT(vg_devtable_count(t), 4);

    /* at(index) gives the id and the same pointer as get. */
    const char *id;
    size_t len;
    VT_CHECK(vg_devtable_at(t, 0, &id, &len) == a);
    VT_CHECK(len == 5 && memcmp(id, "dev-1", 5) == 0);
    VT_CHECK(vg_devtable_at(t, 3, &id, &len) == vg_devtable_get(t, "dev-", 4, NULL));
    VT_CHECK(len == 4 && memcmp(id, "dev-", 4) == 0);
    VT_CHECK(vg_devtable_at(t, 1, NULL, NULL) == vg_devtable_get(t, "dev-2", 5, NULL));
    VT_CHECK(vg_devtable_at(t, 4, &id, &len) == NULL); /* past the end */
    VT_CHECK(vg_devtable_at(t, UINT32_MAX, &id, &len) == NULL);

    /* Ids at the inline/out-of-line boundary (31 bytes), empty and at the
     * limit. */
    char qid[VG_EVENT_MAX_DEVICE_ID + 2];
    memset(qid, 'q', sizeof(qid));
    size_t lens[] = {0, 1, 30, 31, 32, 33, 64, VG_EVENT_MAX_DEVICE_ID};
    size_t nl = sizeof(lens) / sizeof(lens[0]);
    for (size_t i = 0; i < nl; i++) {
        vg_devstate_t *s = vg_devtable_get(t, qid, lens[i], &ix);
        VT_REQUIRE(s != NULL);
        VT_EQ_INT(ix, 4 + i);
        VT_CHECK(memcmp(s, &zero_state, sizeof(*s)) == 0);
        fill_state(s, 1000 + lens[i]);
    }
    VT_EQ_INT(vg_devtable_count(t), 4 + nl);
    int bad = 0;
    for (size_t i = 0; i < nl; i++) {
        vg_devstate_t want;
        memset(&want, 0, sizeof(want));
        fill_state(&want, 1000 + lens[i]);
        vg_devstate_t *s = vg_devtable_get(t, qid, lens[i], &ix);
        bad += !s || ix != 4 + i || memcmp(s, &want, sizeof(want)) != 0;
        bad += vg_devtable_find(t, qid, lens[i], NULL) != s;
        bad += vg_devtable_at(t, (uint32_t)(4 + i), &id, &len) != s || len != lens[i] ||
               (len && memcmp(id, qid, len) != 0);
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(vg_devtable_count(t), 4 + nl);
    /* Longer than any valid device id: refused by get and find, table
     * unchanged. */
    VT_CHECK(vg_devtable_get(t, qid, VG_EVENT_MAX_DEVICE_ID + 1, &ix) == NULL);
    VT_CHECK(vg_devtable_find(t, qid, VG_EVENT_MAX_DEVICE_ID + 1, &ix) == NULL);
    VT_EQ_INT(vg_devtable_count(t), 4 + nl);

    vg_devtable_free(t);
    vg_devtable_free(NULL);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

static void test_devtable_growth(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    enum { N = 100000 };
    char id[64];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(id, sizeof(id), "dev-%d", i);
        uint32_t ix = UINT32_MAX;
        vg_devstate_t *s = vg_devtable_get(t, id, (size_t)n, &ix);
        if (!s || ix != (uint32_t)i || s->common.samples != 0 || s->common.last_ts_ms != 0) {
            bad++;
            continue;
        }
        s->common.samples = (uint32_t)i + 1;
        s->common.last_ts_ms = -(int64_t)i;
        s->slots[VG_LIFECYCLE_SLOTS - 1].open_seq = (uint64_t)i * 3;
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(vg_devtable_count(t), N);
    size_t per_device = (vg_mem_used(VG_MEM_DETECT) - base) / N;
    printf("  %d devices (short ids): %zu bytes per device (vg_mem_used), state %zu bytes\n", N, per_device,
           sizeof(vg_devstate_t));
    /* An entry is the state + 32 bytes (id, length); the entry array grows
     * by 1.25x and the slot table (4 bytes a slot) stays 35..70% full. */
    VT_CHECK(per_device >= sizeof(vg_devstate_t) + 4);
    VT_CHECK(per_device <= (sizeof(vg_devstate_t) + 32) * 5 / 4 + 12);
    /* Growth moved the entries but not the indices or the states. */
    for (int i = 0; i < N; i++) {
        int n = snprintf(id, sizeof(id), "dev-%d", i);
        uint32_t ix = UINT32_MAX;
        vg_devstate_t *s = vg_devtable_get(t, id, (size_t)n, &ix);
        bad += !s || ix != (uint32_t)i || s->common.samples != (uint32_t)i + 1 || s->common.last_ts_ms != -(int64_t)i ||
               s->slots[VG_LIFECYCLE_SLOTS - 1].open_seq != (uint64_t)i * 3;
        const char *aid;
        size_t alen;
        bad += vg_devtable_at(t, (uint32_t)i, &aid, &alen) != s || alen != (size_t)n || memcmp(aid, id, alen) != 0;
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(vg_devtable_count(t), N);
    vg_devtable_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* ---- checkpoint encoding ---------------------------------------------------------- */

static void test_devtable_roundtrip(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    enum { N = 3000 };
    vg_devtable_t *t = sample_table(N);
    VT_REQUIRE(t != NULL);
    size_t len;
    uint8_t *buf = encode(t, &len);
    VT_REQUIRE(buf != NULL);
    VT_EQ_INT(rd32(buf), N);
    VT_EQ_INT(rd32(buf + 4), VG_DEVSTATE_LAYOUT);
    VT_EQ_INT(rd32(buf + 8), sizeof(vg_devstate_t));
    size_t want_len = HDR;
    char id[VG_EVENT_MAX_DEVICE_ID];
    for (size_t i = 0; i < N; i++)
        want_len += 2 + sample_id(i, id) + sizeof(vg_devstate_t);
    VT_EQ_INT(len, want_len);

    /* Serialising twice gives the same bytes. */
    size_t len1;
    uint8_t *buf1 = encode(t, &len1);
    VT_REQUIRE(buf1 != NULL);
    VT_CHECK(len1 == len && memcmp(buf, buf1, len) == 0);
    vg_free(buf1);

    vg_devtable_t *r;
    VT_REQUIRE(vg_devtable_new(&r) == VG_OK);
    VT_REQUIRE(get_s(r, "stale-device") != NULL); /* replaced by the restore */
    VT_EQ_INT(restore_exact(r, buf, len), VG_OK);
    VT_EQ_INT(vg_devtable_count(r), N);
    VT_CHECK(vg_devtable_find(r, "stale-device", 12, NULL) == NULL);

    /* Same devices at the same indices with byte-identical states; get
     * finds each at its old index without creating anything. */
    VT_CHECK(same_tables(t, r));
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
        size_t idlen = sample_id(i, id);
        uint32_t ix = UINT32_MAX;
        const vg_devstate_t *b = vg_devtable_get(r, id, idlen, &ix);
        const vg_devstate_t *a = vg_devtable_find(t, id, idlen, NULL);
        if (!a || !b) {
            bad++;
            continue;
        }
        bad += ix != i || b != vg_devtable_at(r, (uint32_t)i, NULL, NULL) || memcmp(a, b, sizeof(*b)) != 0;
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(vg_devtable_count(r), N);

    /* serialise -> restore -> serialise gives the same bytes. */
    size_t len2;
    uint8_t *buf2 = encode(r, &len2);
    VT_REQUIRE(buf2 != NULL);
    VT_EQ_INT(len2, len);
    VT_CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    vg_free(buf2);

    /* A restored table carries on: the next new device gets the next index. */
    uint32_t ix;
    VT_REQUIRE(get_s(r, "newcomer") != NULL);
    VT_REQUIRE(vg_devtable_get(r, "newcomer", 8, &ix) != NULL);
    VT_EQ_INT(ix, N);

    /* The empty table round-trips too: just the header. */
    vg_devtable_t *e;
    VT_REQUIRE(vg_devtable_new(&e) == VG_OK);
    buf2 = encode(e, &len2);
    VT_REQUIRE(buf2 != NULL);
    VT_EQ_INT(len2, HDR);
    VT_EQ_INT(rd32(buf2), 0);
    VT_EQ_INT(rd32(buf2 + 4), VG_DEVSTATE_LAYOUT);
    VT_EQ_INT(rd32(buf2 + 8), sizeof(vg_devstate_t));
    VT_EQ_INT(restore_exact(r, buf2, len2), VG_OK);
    VT_EQ_INT(vg_devtable_count(r), 0);
    VT_REQUIRE(vg_devtable_get(r, "x", 1, &ix) != NULL);
    VT_EQ_INT(ix, 0);
    vg_free(buf2);

    vg_free(buf);
    vg_devtable_free(e);
    vg_devtable_free(r);
    vg_devtable_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* Appends one record (u16 id_len, the id, state_size bytes of st) at p. */
static uint8_t *put_record(uint8_t *p, const char *id, uint16_t id_len, const void *st, size_t state_size)
{
    *p++ = (uint8_t)id_len, *p++ = (uint8_t)(id_len >> 8);
    memcpy(p, id, strlen(id));
    p += strlen(id);
    memcpy(p, st, state_size);
    return p + state_size;
}

static void put_header(uint8_t *p, uint32_t count, uint32_t layout, uint32_t state_size)
{
    wr32(p, count);
    wr32(p + 4, layout);
    wr32(p + 8, state_size);
}

/* The byte layout, built by hand. */
static void test_devtable_format(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    vg_devstate_t *s = get_s(t, "abc");
    VT_REQUIRE(s != NULL);
    fill_state(s, 4);
    vg_devstate_t st_abc = *s;
    s = vg_devtable_get(t, "", 0, NULL);
    VT_REQUIRE(s != NULL);
    fill_state(s, 6);
    vg_devstate_t st_empty = *s;

    size_t len;
    uint8_t *buf = encode(t, &len);
    VT_REQUIRE(buf != NULL);
    static uint8_t want[HDR + 2 * (2 + 3 + sizeof(vg_devstate_t))];
    put_header(want, 2, VG_DEVSTATE_LAYOUT, sizeof(vg_devstate_t));
    uint8_t *p = put_record(want + HDR, "abc", 3, &st_abc, sizeof(st_abc));
    p = put_record(p, "", 0, &st_empty, sizeof(st_empty));
    size_t wlen = (size_t)(p - want);
    VT_EQ_INT(len, wlen);
    VT_CHECK(len == wlen && memcmp(buf, want, len) == 0);
    vg_free(buf);

    /* ...and the hand-built bytes restore to the same table. */
    vg_devtable_t *r;
    VT_REQUIRE(vg_devtable_new(&r) == VG_OK);
    VT_EQ_INT(restore_exact(r, want, wlen), VG_OK);
    VT_CHECK(same_tables(t, r));
    vg_devtable_free(r);
    vg_devtable_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* A table with one known device, and its encoding, to check that failed
 * restores change nothing. */
typedef struct {
    vg_devtable_t *t;
    uint8_t *enc;
    size_t enc_len;
} keeper_t;

static int keeper_init(keeper_t *k)
{
    memset(k, 0, sizeof(*k));
    if (vg_devtable_new(&k->t) != VG_OK)
        return 0;
    vg_devstate_t *s = get_s(k->t, "survivor");
    if (!s)
        return 0;
    fill_state(s, 5);
    k->enc = encode(k->t, &k->enc_len);
    return k->enc != NULL;
}

/* 1 if k's table still encodes to what it did at keeper_init. */
static int keeper_unchanged(const keeper_t *k)
{
    size_t len;
    uint8_t *now = encode(k->t, &len);
    int same = now && len == k->enc_len && memcmp(now, k->enc, len) == 0;
    vg_free(now);
    return same;
}

static void keeper_deinit(keeper_t *k)
{
    vg_free(k->enc);
    vg_devtable_free(k->t);
}

static void test_devtable_restore_truncated(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    keeper_t k;
    VT_REQUIRE(keeper_init(&k));

    /* Every truncation of a small table (empty, maximum-length, long and
     * short ids) is rejected and leaves the table as it was. */
    vg_devtable_t *src = sample_table(12);
    VT_REQUIRE(src != NULL);
    size_t len;
    uint8_t *buf = encode(src, &len);
    VT_REQUIRE(buf != NULL);
    int wrong = 0;
    for (size_t n = 0; n < len; n++)
        wrong += restore_exact(k.t, buf, n) != VG_EMALFORMED;
    VT_EQ_INT(wrong, 0);
    /* So is a trailing byte (of any value). */
    uint8_t *longer = malloc(len + 1);
    VT_REQUIRE(longer != NULL);
    memcpy(longer, buf, len);
    for (int v = 0; v < 256; v += 85) {
        longer[len] = (uint8_t)v;
        wrong += restore_exact(k.t, longer, len + 1) != VG_EMALFORMED;
    }
    free(longer);
    VT_EQ_INT(wrong, 0);
    VT_CHECK(keeper_unchanged(&k));
    VT_EQ_INT(restore_exact(k.t, buf, len), VG_OK); /* the full buffer is fine */
    VT_CHECK(same_tables(src, k.t));
    vg_free(buf);
    vg_devtable_free(src);
    keeper_deinit(&k);

    /* A bigger table: cut at and around every record boundary and at random
     * points. */
    VT_REQUIRE(keeper_init(&k));
    src = sample_table(400);
    VT_REQUIRE(src != NULL);
    buf = encode(src, &len);
    VT_REQUIRE(buf != NULL);
    size_t pos = HDR;
    char id[VG_EVENT_MAX_DEVICE_ID];
    for (size_t i = 0; i < 400; i++) {
        size_t rec = 2 + sample_id(i, id) + sizeof(vg_devstate_t);
        size_t cuts[] = {pos, pos + 1, pos + 2, pos + rec - 1};
        for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++)
            wrong += cuts[c] < len && restore_exact(k.t, buf, cuts[c]) != VG_EMALFORMED;
        pos += rec;
    }
    VT_EQ_INT(pos, len);
    srand(4242);
    for (int i = 0; i < 200; i++)
        wrong += restore_exact(k.t, buf, (size_t)rand() % len) != VG_EMALFORMED;
    VT_EQ_INT(wrong, 0);
    VT_CHECK(keeper_unchanged(&k));
    vg_free(buf);
    vg_devtable_free(src);
    keeper_deinit(&k);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

static void test_devtable_restore_bad(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    keeper_t k;
    VT_REQUIRE(keeper_init(&k));
    const size_t SS = sizeof(vg_devstate_t);
    vg_devstate_t st;
    memset(&st, 0, sizeof(st));
    fill_state(&st, 7);

    /* Room for three records with maximum-length ids and a few spare bytes. */
    static uint8_t b[HDR + 3 * (2 + VG_EVENT_MAX_DEVICE_ID + 1 + sizeof(vg_devstate_t)) + 16];
    uint8_t *p;

    /* The baseline: one valid record. */
    put_header(b, 1, VG_DEVSTATE_LAYOUT, (uint32_t)SS);
    p = put_record(b + HDR, "abc", 3, &st, SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_OK);
    VT_EQ_INT(vg_devtable_count(k.t), 1);
    VT_CHECK(vg_devtable_find(k.t, "abc", 3, NULL) != NULL);
    VT_CHECK(memcmp(vg_devtable_find(k.t, "abc", 3, NULL), &st, SS) == 0);
    keeper_deinit(&k);
    VT_REQUIRE(keeper_init(&k));

    /* id_len says 2 for a 3-byte id: the record is a byte off and the
     * buffer one byte too long. */
    put_header(b, 1, VG_DEVSTATE_LAYOUT, (uint32_t)SS);
    p = put_record(b + HDR, "abc", 2, &st, SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    /* id_len beyond the buffer. */
    p = put_record(b + HDR, "abc", 0xffff, &st, SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    /* An id over the limit, with all its bytes present. */
    char longid[VG_EVENT_MAX_DEVICE_ID + 2];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    p = put_record(b + HDR, longid, (uint16_t)strlen(longid), &st, SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    VT_CHECK(keeper_unchanged(&k));

    /* Counts that disagree with the records present. */
    p = put_record(b + HDR, "abc", 3, &st, SS);
    put_header(b, 2, VG_DEVSTATE_LAYOUT, (uint32_t)SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    put_header(b, 0, VG_DEVSTATE_LAYOUT, (uint32_t)SS); /* the record is then trailing bytes */
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    /* A count far beyond the bytes present must not size anything. */
    put_header(b, UINT32_MAX, VG_DEVSTATE_LAYOUT, (uint32_t)SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    VT_EQ_INT(restore_exact(k.t, b, HDR), VG_EMALFORMED);
    VT_CHECK(keeper_unchanged(&k));

    /* The same device twice (also the empty id twice); distinct ids are
     * fine. */
    put_header(b, 2, VG_DEVSTATE_LAYOUT, (uint32_t)SS);
    p = put_record(b + HDR, "d", 1, &st, SS);
    p = put_record(p, "d", 1, &zero_state, SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    VT_CHECK(keeper_unchanged(&k));
    p = put_record(b + HDR, "", 0, &st, SS);
    p = put_record(p, "", 0, &st, SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_EMALFORMED);
    VT_CHECK(keeper_unchanged(&k));
    /* At the id limit, the empty id and a short one together: valid. */
    put_header(b, 3, VG_DEVSTATE_LAYOUT, (uint32_t)SS);
    longid[VG_EVENT_MAX_DEVICE_ID] = '\0';
    p = put_record(b + HDR, longid, VG_EVENT_MAX_DEVICE_ID, &st, SS);
    p = put_record(p, "", 0, &zero_state, SS);
    p = put_record(p, "e", 1, &st, SS);
    VT_EQ_INT(restore_exact(k.t, b, (size_t)(p - b)), VG_OK);
    VT_EQ_INT(vg_devtable_count(k.t), 3);
    const char *rid;
    size_t rlen;
    VT_CHECK(vg_devtable_at(k.t, 0, &rid, &rlen) != NULL && rlen == VG_EVENT_MAX_DEVICE_ID &&
             memcmp(rid, longid, rlen) == 0);
    VT_CHECK(vg_devtable_at(k.t, 1, &rid, &rlen) != NULL && rlen == 0);
    VT_CHECK(memcmp(vg_devtable_find(k.t, "e", 1, NULL), &st, SS) == 0);
    keeper_deinit(&k);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* A checkpoint of another state layout or size: VG_EPROTO (the processor
 * then starts device state from zero), table unchanged. */
static void test_devtable_restore_other_layout(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    keeper_t k;
    VT_REQUIRE(keeper_init(&k));
    vg_devtable_t *src = sample_table(20);
    VT_REQUIRE(src != NULL);
    size_t len;
    uint8_t *buf = encode(src, &len);
    VT_REQUIRE(buf != NULL);

    uint32_t layouts[] = {0, VG_DEVSTATE_LAYOUT + 1, VG_DEVSTATE_LAYOUT - 1 + 0x100, UINT32_MAX};
    for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
        if (layouts[i] == VG_DEVSTATE_LAYOUT)
            continue;
        wr32(buf + 4, layouts[i]);
        VT_EQ_INT(restore_exact(k.t, buf, len), VG_EPROTO);
        VT_EQ_INT(restore_exact(k.t, buf, HDR), VG_EPROTO); /* header only */
    }
    wr32(buf + 4, VG_DEVSTATE_LAYOUT);
    uint32_t sizes[] = {0, (uint32_t)sizeof(vg_devstate_t) - 8, (uint32_t)sizeof(vg_devstate_t) + 8, UINT32_MAX};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        wr32(buf + 8, sizes[i]);
        VT_EQ_INT(restore_exact(k.t, buf, len), VG_EPROTO);
    }
    wr32(buf + 8, (uint32_t)sizeof(vg_devstate_t));
    VT_CHECK(keeper_unchanged(&k));

    /* A self-consistent checkpoint of a build whose state is 16 bytes
     * bigger is still another layout, not malformed. */
    const size_t big = sizeof(vg_devstate_t) + 16;
    uint8_t *other = calloc(1, HDR + 2 * (2 + 8 + big));
    VT_REQUIRE(other != NULL);
    put_header(other, 2, VG_DEVSTATE_LAYOUT, (uint32_t)big);
    uint8_t pad[sizeof(vg_devstate_t) + 16];
    memset(pad, 0x5a, sizeof(pad));
    uint8_t *p = put_record(other + HDR, "dev-a", 5, pad, big);
    p = put_record(p, "dev-b", 5, pad, big);
    VT_EQ_INT(restore_exact(k.t, other, (size_t)(p - other)), VG_EPROTO);
    put_header(other, 2, VG_DEVSTATE_LAYOUT + 1, (uint32_t)big);
    VT_EQ_INT(restore_exact(k.t, other, (size_t)(p - other)), VG_EPROTO);
    free(other);
    VT_CHECK(keeper_unchanged(&k));

    /* The unmodified buffer still restores. */
    VT_EQ_INT(restore_exact(k.t, buf, len), VG_OK);
    VT_CHECK(same_tables(src, k.t));
    vg_free(buf);
    vg_devtable_free(src);
    keeper_deinit(&k);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* Random garbage and random corruptions of a valid buffer: any result but a
 * crash or an over-read (ASan) is acceptable; failures are VG_EMALFORMED,
 * or VG_EPROTO when the header's layout or size was hit, and leave the
 * table unchanged. */
static void test_devtable_restore_fuzz(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    keeper_t k;
    VT_REQUIRE(keeper_init(&k));
    vg_devtable_t *src = sample_table(40);
    VT_REQUIRE(src != NULL);
    size_t len;
    uint8_t *buf = encode(src, &len);
    VT_REQUIRE(buf != NULL);

    srand(777);
    int odd = 0, changed = 0, ok = 0;
    uint8_t *junk = malloc(len);
    VT_REQUIRE(junk != NULL);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)rand() % (len + 1);
        int header_hit = 0;
        if (iter % 2) {
            for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)rand();
            /* Often a plausible header, so the records get parsed. */
            if (n >= HDR && iter % 4 == 1)
                put_header(junk, (uint32_t)(rand() % 8), VG_DEVSTATE_LAYOUT, (uint32_t)sizeof(vg_devstate_t));
            else
                header_hit = 1;
        } else {
            n = len;
            memcpy(junk, buf, len);
            for (int c = 0; c < 1 + rand() % 3; c++) {
                size_t at = (size_t)rand() % len;
                junk[at] ^= (uint8_t)(1 + rand() % 255);
                header_hit |= at >= 4 && at < HDR;
            }
        }
        int rc = restore_exact(k.t, junk, n);
        if (rc == VG_OK) {
            ok++;
            keeper_deinit(&k);
            VT_REQUIRE(keeper_init(&k));
            continue;
        }
        odd += rc != VG_EMALFORMED && !(rc == VG_EPROTO && header_hit);
        changed += !keeper_unchanged(&k);
    }
    free(junk);
    VT_EQ_INT(odd, 0);
    VT_EQ_INT(changed, 0);
    VT_CHECK(ok > 0); /* flips inside states are valid checkpoints */
    vg_free(buf);
    vg_devtable_free(src);
    keeper_deinit(&k);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

/* Allocation failures: get returns NULL, serialize and restore VG_ENOMEM;
 * the table stays unchanged and usable and nothing leaks. */
static void test_devtable_alloc_failure(void)
{
    size_t base = vg_mem_used(VG_MEM_DETECT);
    vg_devtable_t *src = sample_table(100);
    VT_REQUIRE(src != NULL);
    size_t len;
    uint8_t *buf = encode(src, &len);
    VT_REQUIRE(buf != NULL);

    vg_devtable_t *t;
    VT_REQUIRE(vg_devtable_new(&t) == VG_OK);
    char id[VG_EVENT_MAX_DEVICE_ID];
    memset(id, 'k', sizeof(id));
    int failures = 0;
    for (int i = 0; i < 40; i++) {
        id[0] = (char)('A' + i);
        size_t idlen = i % 2 ? 5 : sizeof(id); /* inline and out-of-line ids */
        for (long n = 0;; n++) {
            size_t before = vg_devtable_count(t);
            uint32_t ix = UINT32_MAX;
            vg_mem_fail_after(n);
            vg_devstate_t *s = vg_devtable_get(t, id, idlen, &ix);
            vg_mem_fail_after(-1);
            if (s) {
                VT_EQ_INT(ix, i); /* failed attempts used no index */
                fill_state(s, (size_t)i);
                break;
            }
            failures++;
            VT_EQ_INT(vg_devtable_count(t), before);
            VT_CHECK(vg_devtable_find(t, id, idlen, NULL) == NULL);
        }
    }
    VT_EQ_INT(vg_devtable_count(t), 40);
    VT_CHECK(failures >= 20); /* at least every out-of-line id's copy failed once */

    size_t before_len;
    uint8_t *before = encode(t, &before_len);
    VT_REQUIRE(before != NULL);
    for (long n = 0;; n++) {
        vg_mem_fail_after(n);
        int rc = vg_devtable_restore(t, buf, len);
        vg_mem_fail_after(-1);
        if (rc == VG_OK)
            break;
        VT_EQ_INT(rc, VG_ENOMEM);
        /* Untouched on failure, to the byte. */
        size_t now_len;
        uint8_t *now = encode(t, &now_len);
        VT_CHECK(now && now_len == before_len && memcmp(now, before, now_len) == 0);
        vg_free(now);
    }
    VT_CHECK(same_tables(src, t));
    vg_free(before);

    uint8_t *out = NULL;
    size_t out_len = 0;
    vg_mem_fail_after(0);
    VT_EQ_INT(vg_devtable_serialize(t, &out, &out_len), VG_ENOMEM);
    vg_mem_fail_after(-1);
    VT_CHECK(out == NULL);

    vg_devtable_t *t2 = NULL;
    vg_mem_fail_after(0);
    VT_EQ_INT(vg_devtable_new(&t2), VG_ENOMEM);
    vg_mem_fail_after(-1);
    VT_CHECK(t2 == NULL);

    vg_free(buf);
    vg_devtable_free(t);
    vg_devtable_free(src);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), base);
}

int main(void)
{
    VT_RUN(test_devtable_get);
    VT_RUN(test_devtable_growth);
    VT_RUN(test_devtable_roundtrip);
    VT_RUN(test_devtable_format);
    VT_RUN(test_devtable_restore_truncated);
    VT_RUN(test_devtable_restore_bad);
    VT_RUN(test_devtable_restore_other_layout);
    VT_RUN(test_devtable_restore_fuzz);
    VT_RUN(test_devtable_alloc_failure);
    VT_EQ_INT(vg_mem_used(VG_MEM_DETECT), 0);
    return VT_DONE();
}
