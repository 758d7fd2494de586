/* test_retain.c — unit tests for the retained-message store (src/mqtt/retain.c).
 *
 * The MQTT §4.7 rules one by one in a table, then a randomized test that
 * drives the store and a brute-force model written here with the same sets,
 * deletes and sweeps and compares every match; limits, expiry, early stop,
 * very long and deep topics, injected allocation failures, concurrent
 * writers and matchers, and a 1,000,000-topic store whose time and memory
 * are printed (not asserted: they depend on the machine). */
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "mqtt/retain.h"
#include "vt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------ */

#define MAX_HITS 256

typedef struct {
    char topics[MAX_HITS][64];
    char blobs[MAX_HITS][32];
    int64_t expiry[MAX_HITS];
    size_t n;
    size_t stop_after; /* 0 = never stop */
} hits_t;

static int collect(void *ctx, const char *topic, size_t tlen, const void *blob, size_t blen, int64_t expire_at)
{
    hits_t *h = ctx;
    if (h->n < MAX_HITS) {
        snprintf(h->topics[h->n], sizeof h->topics[0], "%.*s", (int)tlen, topic);
        snprintf(h->blobs[h->n], sizeof h->blobs[0], "%.*s", (int)blen, (const char *)blob);
        h->expiry[h->n] = expire_at;
    }
    h->n++;
    return h->stop_after && h->n >= h->stop_after;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Matches filter and returns the matched topics sorted and joined with ' '. */
static const char *match_list(vg_retain_t *r, const char *filter, int64_t now)
{
    static hits_t h;
    static char out[4096];
    h.n = 0;
    h.stop_after = 0;
    size_t matched = 0;
    int rc = vg_retain_match(r, filter, strlen(filter), now, collect, &h, &matched);
    if (rc != VG_OK || matched != h.n)
        return "<error>";
    qsort(h.topics, h.n < MAX_HITS ? h.n : MAX_HITS, sizeof h.topics[0], cmp_str);
    out[0] = '\0';
    for (size_t i = 0; i < h.n && i < MAX_HITS; i++) {
        if (i)
            strcat(out, " ");
        strcat(out, h.topics[i]);
    }
    return out;
}

static int set_s(vg_retain_t *r, const char *topic, const char *blob, int64_t exp)
{
    return vg_retain_set(r, topic, strlen(topic), blob, strlen(blob), exp);
}

static size_t count_of(vg_retain_t *r)
{
    size_t n;
    vg_retain_stats(r, &n, NULL, NULL);
    return n;
}

static size_t bytes_of(vg_retain_t *r)
{
    size_t b;
    vg_retain_stats(r, NULL, &b, NULL);
    return b;
}

/* The reference matcher: MQTT §4.7 written as directly as possible. */
static bool bf_match(const char *filter, const char *topic)
{
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    const char *f = filter, *t = topic;
    for (;;) {
        const char *fe = strchr(f, '/'), *te = strchr(t, '/');
        size_t fl = fe ? (size_t)(fe - f) : strlen(f);
        size_t tl = te ? (size_t)(te - t) : strlen(t);
        if (fl == 1 && f[0] == '#')
            return true;
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        if (!fe && !te)
            return true;
        if (!fe)
            return false;
        if (!te) /* topic used up: only a remaining "#" matches (the parent rule) */
            return strcmp(fe + 1, "#") == 0;
        f = fe + 1;
        t = te + 1;
    }
}

/* ---- basic operations ------------------------------------------------------------ */

static void test_set_replace_delete(void)
{
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    VT_EQ_INT(set_s(r, "a/b", "one", 0), VG_OK);
    VT_EQ_INT(count_of(r), 1);
    VT_EQ_INT(bytes_of(r), 3 + 3);
    VT_REQUIRE(strcmp(match_list(r, "a/b", 0), "a/b") == 0);

    static hits_t h;
    h.n = 0;
    VT_EQ_INT(vg_retain_match(r, "a/b", 3, 0, collect, &h, NULL), VG_OK);
    VT_EQ_INT(h.n, 1);
    VT_CHECK(strcmp(h.blobs[0], "one") == 0);

    /* Replace: still one entry, new blob, bytes follow the new size. */
    VT_EQ_INT(set_s(r, "a/b", "second", 0), VG_OK);
    VT_EQ_INT(count_of(r), 1);
    VT_EQ_INT(bytes_of(r), 3 + 6);
    h.n = 0;
    VT_EQ_INT(vg_retain_match(r, "a/b", 3, 0, collect, &h, NULL), VG_OK);
    VT_EQ_INT(h.n, 1);
    VT_CHECK(strcmp(h.blobs[0], "second") == 0);

    /* A message on an inner node and below it. */
    VT_EQ_INT(set_s(r, "a", "x", 0), VG_OK);
    VT_EQ_INT(set_s(r, "a/b/c", "y", 0), VG_OK);
    VT_EQ_INT(count_of(r), 3);
    VT_CHECK(strcmp(match_list(r, "a/#", 0), "a a/b a/b/c") == 0);

    /* blen 0 deletes; deleting what is not there says so. */
    VT_EQ_INT(vg_retain_set(r, "a/b", 3, "", 0, 0), VG_OK);
    VT_EQ_INT(count_of(r), 2);
    VT_EQ_INT(vg_retain_set(r, "a/b", 3, NULL, 0, 0), VG_ENOTFOUND);
    VT_EQ_INT(vg_retain_set(r, "zz", 2, NULL, 0, 0), VG_ENOTFOUND);
    VT_CHECK(strcmp(match_list(r, "#", 0), "a a/b/c") == 0);
    VT_EQ_INT(vg_retain_set(r, "a/b/c", 5, NULL, 0, 0), VG_OK);
    VT_EQ_INT(vg_retain_set(r, "a", 1, NULL, 0, 0), VG_OK);
    VT_EQ_INT(count_of(r), 0);
    VT_EQ_INT(bytes_of(r), 0);
    VT_CHECK(strcmp(match_list(r, "#", 0), "") == 0);

    /* Bad topics. */
    VT_EQ_INT(vg_retain_set(r, "", 0, "x", 1, 0), VG_EINVAL);
    static char big[65537];
    memset(big, 'a', sizeof big - 1);
    VT_EQ_INT(vg_retain_set(r, big, 65536, "x", 1, 0), VG_EINVAL);
    VT_EQ_INT(vg_retain_set(r, big, 65535, "x", 1, 0), VG_OK);
    VT_EQ_INT(count_of(r), 1);
    vg_retain_free(r);
    vg_retain_free(NULL);
}

/* Deleting a topic prunes the nodes it alone used: memory returns to what an
 * empty store holds. */
static void test_prune(void)
{
    size_t base = vg_mem_used(VG_MEM_MQTT);
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    size_t empty = vg_mem_used(VG_MEM_MQTT);
    char t[64];
    for (int i = 0; i < 300; i++) {
        snprintf(t, sizeof t, "p/%d/q/%d", i % 17, i);
        VT_EQ_INT(set_s(r, t, "v", 0), VG_OK);
    }
    VT_CHECK(vg_mem_used(VG_MEM_MQTT) > empty);
    for (int i = 0; i < 300; i++) {
        snprintf(t, sizeof t, "p/%d/q/%d", i % 17, i);
        VT_EQ_INT(vg_retain_set(r, t, strlen(t), NULL, 0, 0), VG_OK);
    }
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), empty);
    vg_retain_free(r);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), base);
}

/* ---- the matching rules ------------------------------------------------------------ */

static void test_match_table(void)
{
    static const char *const topics[] = {
        "a",
        "a/b",
        "a/b/c",
        "a/c",
        "a//b",
        "/a",
        "a/",
        "/",
        "//",
        "b",
        "$SYS",
        "$SYS/x",
        "$SYS/x/y",
        "a/$x",
        "A/b",
        "ab",
        "sport/tennis/p1",
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/p1/ranking",
        "sport/tennis/p1/score/wimbledon",
    };
    static const struct {
        const char *filter;
        const char *expect; /* sorted, joined with ' ' */
    } cases[] = {
        /* literals: exactly one topic, empty levels are levels */
        {"a/b", "a/b"},
        {"a", "a"},
        {"a//b", "a//b"},
        {"/a", "/a"},
        {"a/", "a/"},
        {"/", "/"},
        {"//", "//"},
        {"A/b", "A/b"},
        {"a/b/c/d", ""},
        {"c", ""},
        /* '+': one level, possibly empty */
        {"a/+", "a/ a/$x a/b a/c"},
        {"+", "a ab b sport"},
        {"+/+", "/ /a A/b a/ a/$x a/b a/c sport/ sport/tennis"},
        {"/+", "/ /a"},
        {"+/b", "A/b a/b"},
        {"a/+/b", "a//b"},
        {"a/+/c", "a/b/c"},
        {"+/+/+", "// a//b a/b/c sport/tennis/p1"},
        {"sport/tennis/+", "sport/tennis/p1"},
        {"sport/+", "sport/ sport/tennis"},
        /* '#': this level and everything below, including the parent */
        {"a/#", "a a/ a/$x a//b a/b a/b/c a/c"},
        {"a/b/#", "a/b a/b/c"},
        {"sport/tennis/p1/#", "sport/tennis/p1 sport/tennis/p1/ranking sport/tennis/p1/score/wimbledon"},
        {"sport/#", "sport sport/ sport/tennis sport/tennis/p1 sport/tennis/p1/ranking "
                    "sport/tennis/p1/score/wimbledon"},
        {"/#", "/ // /a"},
        {"+/#", "/ // /a A/b a a/ a/$x a//b a/b a/b/c a/c ab b sport sport/ sport/tennis sport/tennis/p1 "
                "sport/tennis/p1/ranking sport/tennis/p1/score/wimbledon"},
        {"+/tennis/#", "sport/tennis sport/tennis/p1 sport/tennis/p1/ranking sport/tennis/p1/score/wimbledon"},
        {"c/#", ""},
        /* '$' topics: never by a first-level wildcard, normally otherwise */
        {"#", "/ // /a A/b a a/ a/$x a//b a/b a/b/c a/c ab b sport sport/ sport/tennis sport/tennis/p1 "
              "sport/tennis/p1/ranking sport/tennis/p1/score/wimbledon"},
        {"+/x", ""},
        {"+/x/y", ""},
        {"$SYS", "$SYS"},
        {"$SYS/#", "$SYS $SYS/x $SYS/x/y"},
        {"$SYS/+", "$SYS/x"},
        {"$SYS/+/y", "$SYS/x/y"},
        {"a/$x", "a/$x"},
    };
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        VT_EQ_INT(set_s(r, topics[i], topics[i], 0), VG_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = match_list(r, cases[i].filter, 0);
        if (strcmp(got, cases[i].expect) != 0) {
            printf("  filter %-20s got [%s]\n  %-27s want [%s]\n", cases[i].filter, got, "", cases[i].expect);
            VT_CHECK(!"match table");
        }
        /* The table itself agrees with the reference matcher. */
        char want[4096] = "";
        char sorted[sizeof topics / sizeof topics[0]][64];
        size_t k = 0;
        for (size_t j = 0; j < sizeof topics / sizeof topics[0]; j++)
            if (bf_match(cases[i].filter, topics[j]))
                snprintf(sorted[k++], sizeof sorted[0], "%s", topics[j]);
        qsort(sorted, k, sizeof sorted[0], cmp_str);
        for (size_t j = 0; j < k; j++) {
            if (j)
                strcat(want, " ");
            strcat(want, sorted[j]);
        }
        if (strcmp(want, cases[i].expect) != 0) {
            printf("  reference disagrees on %s: [%s]\n", cases[i].filter, want);
            VT_CHECK(!"reference matcher");
        }
    }
    vg_retain_free(r);
}

static void test_stop_early(void)
{
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    char t[32];
    for (int i = 0; i < 50; i++) {
        snprintf(t, sizeof t, "s/%d/x", i);
        VT_EQ_INT(set_s(r, t, "v", 0), VG_OK);
    }
    static hits_t h;
    size_t matched;
    h.n = 0;
    h.stop_after = 7;
    VT_EQ_INT(vg_retain_match(r, "s/+/x", 5, 0, collect, &h, &matched), VG_OK);
    VT_EQ_INT(h.n, 7);
    VT_EQ_INT(matched, 7);
    h.n = 0;
    h.stop_after = 3;
    VT_EQ_INT(vg_retain_match(r, "#", 1, 0, collect, &h, &matched), VG_OK);
    VT_EQ_INT(h.n, 3);
    vg_retain_free(r);
}

/* Topics longer than the matcher's stack buffer, and 32,768 levels deep. */
static int count_long(void *ctx, const char *topic, size_t tlen, const void *blob, size_t blen, int64_t exp)
{
    size_t *n = ctx;
    if (topic[tlen] == '\0')
        (*n) += tlen;
    return 0;
}

static void test_long_and_deep(void)
{
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    static char deep[65535];
    for (size_t i = 0; i < sizeof deep; i += 2) {
        deep[i] = 'a';
        if (i + 1 < sizeof deep)
            deep[i + 1] = '/';
    }
    /* "a/a/.../a": 32,768 levels. */
    VT_EQ_INT(vg_retain_set(r, deep, sizeof deep, "d", 1, 0), VG_OK);
    static char wide[2000];
    memset(wide, 'w', sizeof wide);
    VT_EQ_INT(vg_retain_set(r, wide, sizeof wide, "w", 1, 0), VG_OK);

    size_t total = 0, matched = 0;
    VT_EQ_INT(vg_retain_match(r, "#", 1, 0, count_long, &total, &matched), VG_OK);
    VT_EQ_INT(matched, 2);
    VT_EQ_INT(total, sizeof deep + sizeof wide);
    total = 0;
    VT_EQ_INT(vg_retain_match(r, deep, sizeof deep, 0, count_long, &total, &matched), VG_OK);
    VT_EQ_INT(matched, 1);
    VT_EQ_INT(total, sizeof deep);
    /* The same with '+' for the last level: the walk backs up 32,768 levels. */
    static char filt[65535];
    memcpy(filt, deep, sizeof deep);
    filt[sizeof filt - 1] = '+';
    VT_EQ_INT(vg_retain_match(r, filt, sizeof filt, 0, count_long, &total, &matched), VG_OK);
    VT_EQ_INT(matched, 1);
    VT_EQ_INT(vg_retain_match(r, "a/+/#", 5, 0, count_long, &total, &matched), VG_OK);
    VT_EQ_INT(matched, 1);
    VT_EQ_INT(vg_retain_set(r, deep, sizeof deep, NULL, 0, 0), VG_OK);
    VT_EQ_INT(count_of(r), 1);
    vg_retain_free(r);
}

/* ---- limits and expiry ----------------------------------------------------------- */

static void test_limits(void)
{
    vg_retain_limits_t lim = {.max_messages = 3, .max_bytes = 0};
    vg_retain_t *r;
    uint64_t rejected;
    VT_REQUIRE(vg_retain_new(&lim, &r) == VG_OK);
    VT_EQ_INT(set_s(r, "a", "1", 0), VG_OK);
    VT_EQ_INT(set_s(r, "b", "1", 0), VG_OK);
    VT_EQ_INT(set_s(r, "c", "1", 0), VG_OK);
    VT_EQ_INT(set_s(r, "d", "1", 0), VG_ELIMIT);
    VT_EQ_INT(set_s(r, "a/b", "1", 0), VG_ELIMIT);
    VT_EQ_INT(set_s(r, "a", "replacing is fine", 0), VG_OK);
    vg_retain_stats(r, NULL, NULL, &rejected);
    VT_EQ_INT(rejected, 2);
    VT_CHECK(strcmp(match_list(r, "#", 0), "a b c") == 0);
    VT_EQ_INT(vg_retain_set(r, "b", 1, NULL, 0, 0), VG_OK);
    VT_EQ_INT(set_s(r, "d", "1", 0), VG_OK);
    vg_retain_free(r);

    lim = (vg_retain_limits_t){.max_messages = 0, .max_bytes = 20};
    VT_REQUIRE(vg_retain_new(&lim, &r) == VG_OK);
    VT_EQ_INT(set_s(r, "t1", "12345678", 0), VG_OK); /* 10 bytes */
    VT_EQ_INT(set_s(r, "t2", "1234567", 0), VG_OK);  /* 9: 19 in all */
    VT_EQ_INT(set_s(r, "t3", "", 0), VG_ENOTFOUND);  /* a delete, never over the limit */
    VT_EQ_INT(set_s(r, "t3", "1", 0), VG_ELIMIT);    /* 3 more: 22 */
    VT_EQ_INT(set_s(r, "t2", "12345678", 0), VG_OK); /* replace: 20 exactly */
    VT_EQ_INT(set_s(r, "t2", "123456789", 0), VG_ELIMIT);
    VT_EQ_INT(bytes_of(r), 20);
    static hits_t h;
    h.n = 0;
    VT_EQ_INT(vg_retain_match(r, "t2", 2, 0, collect, &h, NULL), VG_OK);
    VT_CHECK(h.n == 1 && strcmp(h.blobs[0], "12345678") == 0); /* the refused set changed nothing */
    vg_retain_stats(r, NULL, NULL, &rejected);
    VT_EQ_INT(rejected, 2);
    vg_retain_free(r);
}

static void test_expiry(void)
{
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    VT_EQ_INT(set_s(r, "e/1", "a", 1000), VG_OK);
    VT_EQ_INT(set_s(r, "e/2", "b", 2000), VG_OK);
    VT_EQ_INT(set_s(r, "e/3", "c", 0), VG_OK);
    VT_EQ_INT(set_s(r, "e/4", "d", 1500), VG_OK);
    VT_EQ_INT(vg_retain_next_expiry(r), 1000);
    VT_CHECK(strcmp(match_list(r, "e/+", 999), "e/1 e/2 e/3 e/4") == 0);
    VT_CHECK(strcmp(match_list(r, "e/+", 1000), "e/2 e/3 e/4") == 0); /* expired at its time */
    VT_CHECK(strcmp(match_list(r, "e/#", 1500), "e/2 e/3") == 0);
    VT_CHECK(strcmp(match_list(r, "e/1", 1200), "") == 0);
    static hits_t h;
    h.n = 0;
    VT_EQ_INT(vg_retain_match(r, "e/2", 3, 0, collect, &h, NULL), VG_OK);
    VT_CHECK(h.n == 1 && h.expiry[0] == 2000);

    /* Replacing changes the expiry both ways. */
    VT_EQ_INT(set_s(r, "e/4", "d2", 0), VG_OK);    /* expiring -> never */
    VT_EQ_INT(set_s(r, "e/3", "c2", 1200), VG_OK); /* never -> expiring */
    VT_EQ_INT(set_s(r, "e/2", "b2", 900), VG_OK);  /* earlier */
    VT_EQ_INT(count_of(r), 4);
    VT_EQ_INT(vg_retain_next_expiry(r), 900); /* what the housekeeping thread sleeps until */
    VT_EQ_INT(vg_retain_sweep(r, 899), 0);
    VT_EQ_INT(vg_retain_sweep(r, 1000), 2); /* e/1 and e/2 */
    VT_EQ_INT(vg_retain_next_expiry(r), 1200);
    VT_EQ_INT(count_of(r), 2);
    VT_CHECK(strcmp(match_list(r, "#", 0), "e/3 e/4") == 0);
    VT_EQ_INT(vg_retain_sweep(r, INT64_MAX), 1);
    VT_CHECK(strcmp(match_list(r, "#", 0), "e/4") == 0);
    VT_EQ_INT(vg_retain_next_expiry(r), 0); /* nothing expires */
    VT_EQ_INT(bytes_of(r), 3 + 2);
    vg_retain_free(r);
}

/* ---- against the reference, at random ------------------------------------------------ */

#define RT_TOPICS 120
#define RT_OPS 20000

typedef struct {
    char blob[16];
    int64_t exp;
    bool live;
} model_t;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

/* Random text over a small alphabet with '/', so that empty levels and
 * shared prefixes are common. */
static void rnd_topic(unsigned *s, char *out, int wild)
{
    static const char *const lv[] = {"a", "b", "", "$s", "cc", "a", "b"};
    int levels = 1 + (int)(rnd(s) % 4);
    out[0] = '\0';
    for (int i = 0; i < levels; i++) {
        if (i)
            strcat(out, "/");
        unsigned k = rnd(s) % 10;
        if (wild && k == 7) {
            strcat(out, "+");
        } else if (wild && k == 8) {
            strcat(out, "#");
            return;
        } else {
            strcat(out, lv[k % 7]);
        }
    }
}

static void test_random_vs_model(void)
{
    static char topics[RT_TOPICS][32];
    static model_t model[RT_TOPICS];
    unsigned seed = 12345;
    int n = 0;
    while (n < RT_TOPICS) {
        char t[32];
        rnd_topic(&seed, t, 0);
        int dup = t[0] == '\0'; /* the empty topic is not a topic */
        for (int i = 0; i < n; i++)
            dup |= strcmp(topics[i], t) == 0;
        if (!dup)
            snprintf(topics[n++], sizeof topics[0], "%s", t);
    }
    memset(model, 0, sizeof model);
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    int64_t now = 0;
    int mismatches = 0;
    for (int op = 0; op < RT_OPS && mismatches < 5; op++) {
        unsigned k = rnd(&seed) % 100;
        int ti = (int)(rnd(&seed) % RT_TOPICS);
        const char *t = topics[ti];
        if (k < 45) {
            char blob[16];
            snprintf(blob, sizeof blob, "v%d", op);
            int64_t exp = rnd(&seed) % 3 == 0 ? now + 1 + (int64_t)(rnd(&seed) % 50) : 0;
            VT_EQ_INT(vg_retain_set(r, t, strlen(t), blob, strlen(blob), exp), VG_OK);
            snprintf(model[ti].blob, sizeof model[ti].blob, "%s", blob);
            model[ti].exp = exp;
            model[ti].live = true;
        } else if (k < 65) {
            int rc = vg_retain_set(r, t, strlen(t), NULL, 0, 0);
            VT_EQ_INT(rc, model[ti].live ? VG_OK : VG_ENOTFOUND);
            model[ti].live = false;
        } else if (k < 70) {
            now += rnd(&seed) % 20;
            size_t want = 0;
            for (int i = 0; i < RT_TOPICS; i++) {
                if (model[i].live && model[i].exp && model[i].exp <= now) {
                    model[i].live = false;
                    want++;
                }
            }
            VT_EQ_INT(vg_retain_sweep(r, now), want);
        } else {
            char f[32];
            rnd_topic(&seed, f, 1);
            if (f[0] == '\0')
                continue;
            static hits_t h;
            h.n = 0;
            h.stop_after = 0;
            VT_EQ_INT(vg_retain_match(r, f, strlen(f), now, collect, &h, NULL), VG_OK);
            size_t want = 0;
            for (int i = 0; i < RT_TOPICS; i++) {
                if (!model[i].live || (model[i].exp && model[i].exp <= now) || !bf_match(f, topics[i]))
                    continue;
                want++;
                size_t j = 0;
                while (j < h.n && strcmp(h.topics[j], topics[i]) != 0)
                    j++;
                if (j == h.n || strcmp(h.blobs[j], model[i].blob) != 0 || h.expiry[j] != model[i].exp) {
                    printf("  filter %s: topic %s missing or wrong\n", f, topics[i]);
                    mismatches++;
                }
            }
            if (want != h.n) {
                printf("  filter %s: %zu matches, model says %zu\n", f, h.n, want);
                mismatches++;
            }
        }
    }
    VT_EQ_INT(mismatches, 0);
    size_t live = 0;
    for (int i = 0; i < RT_TOPICS; i++)
        live += model[i].live;
    VT_EQ_INT(count_of(r), live);
    vg_retain_free(r);
}

/* ---- failures ---------------------------------------------------------------------------- */

/* A set that fails at any allocation leaves the store as it was: same
 * matches, same memory. */
static void test_alloc_failures(void)
{
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    VT_EQ_INT(set_s(r, "x/y", "old", 0), VG_OK);
    VT_EQ_INT(set_s(r, "x/z", "old", INT64_MAX), VG_OK); /* x now has a child table, the heap room */
    int failures = 0;
    for (long nth = 0; nth < 20; nth++) {
        size_t before = vg_mem_used(VG_MEM_MQTT);
        vg_mem_fail_after(nth);
        int rc = set_s(r, "x/w/deep/er", "new", 12345);
        vg_mem_fail_after(-1);
        if (rc == VG_OK)
            break;
        failures++;
        VT_EQ_INT(rc, VG_ENOMEM);
        VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), before);
        VT_CHECK(strcmp(match_list(r, "#", 0), "x/y x/z") == 0);
    }
    VT_CHECK(failures >= 3); /* the blob, a node, the heap */
    VT_CHECK(strcmp(match_list(r, "#", 0), "x/w/deep/er x/y x/z") == 0);

    /* A failed replace keeps the old message. */
    vg_mem_fail_after(0);
    VT_EQ_INT(set_s(r, "x/y", "newer", 0), VG_ENOMEM);
    vg_mem_fail_after(-1);
    static hits_t h;
    h.n = 0;
    VT_EQ_INT(vg_retain_match(r, "x/y", 3, 0, collect, &h, NULL), VG_OK);
    VT_CHECK(h.n == 1 && strcmp(h.blobs[0], "old") == 0);

    /* A match that cannot get a buffer for a long topic says so. */
    static char wide[1000];
    memset(wide, 'w', sizeof wide);
    VT_EQ_INT(vg_retain_set(r, wide, sizeof wide, "w", 1, 0), VG_OK);
    size_t matched = 99;
    vg_mem_fail_after(0);
    h.n = 0;
    VT_EQ_INT(vg_retain_match(r, wide, sizeof wide, 0, collect, &h, &matched), VG_ENOMEM);
    vg_mem_fail_after(-1);
    VT_EQ_INT(matched, 0);
    vg_retain_free(r);
}

/* ---- threads ------------------------------------------------------------------------------ */

typedef struct {
    vg_retain_t *r;
    int id;
    size_t seen;
    atomic_int *writers_left; /* matchers go on until the writers are done */
} thr_t;

static int count_cb(void *ctx, const char *topic, size_t tlen, const void *blob, size_t blen, int64_t exp)
{
    size_t *n = ctx;
    (*n)++;
    /* Every reported topic is one a writer wrote: "c/<writer>/<n>". */
    return !(tlen >= 5 && topic[0] == 'c' && blen == 4);
}

static void *writer(void *arg)
{
    thr_t *t = arg;
    char topic[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(topic, sizeof topic, "c/%d/%d", t->id, i % 500);
        if (i % 3 == 2)
            vg_retain_set(t->r, topic, strlen(topic), NULL, 0, 0);
        else
            vg_retain_set(t->r, topic, strlen(topic), "blob", 4, i % 5 == 0 ? i : 0);
        if (i % 1000 == 0)
            vg_retain_sweep(t->r, i);
    }
    atomic_fetch_sub(t->writers_left, 1);
    return NULL;
}

static void *matcher(void *arg)
{
    thr_t *t = arg;
    static const char *const filters[] = {"c/#", "c/+/7", "c/1/+", "#", "c/0/42"};
    for (int i = 0; i < 1000 || atomic_load(t->writers_left) > 0; i++) {
        const char *f = filters[i % 5];
        size_t n = 0;
        vg_retain_match(t->r, f, strlen(f), i, count_cb, &n, NULL);
        t->seen += n;
    }
    return NULL;
}

static void test_concurrent(void)
{
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    pthread_t th[4];
    thr_t args[4];
    atomic_int writers_left = 2;
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_t){r, i, 0, &writers_left};
        VT_REQUIRE(pthread_create(&th[i], NULL, i < 2 ? writer : matcher, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    /* Each writer leaves its last word on each of its 500 topics. */
    vg_retain_sweep(r, INT64_MAX);
    size_t n = 0;
    VT_EQ_INT(vg_retain_match(r, "c/#", 3, INT64_MAX, count_cb, &n, NULL), VG_OK);
    VT_EQ_INT(n, count_of(r));
    VT_CHECK(args[2].seen + args[3].seen > 0);
    vg_retain_free(r);
}

/* ---- scale ------------------------------------------------------------------------------- */

static int count_only(void *ctx, const char *topic, size_t tlen, const void *blob, size_t blen, int64_t exp)
{
    (*(size_t *)ctx)++;
    return 0;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* 1,000,000 topics "fleet/site<k>/dev<i>/state" over 100 sites, a 20-byte
 * blob each. Prints insertion time, accounted and resident bytes per entry,
 * and the time of a literal match, a '+' over one site's 10,000 devices and
 * a '#' over everything. */
static void test_million(void)
{
    enum { N = 1000000, SITES = 100 };
    vg_retain_t *r;
    VT_REQUIRE(vg_retain_new(NULL, &r) == VG_OK);
    size_t mem0 = vg_mem_used(VG_MEM_MQTT);
    long rss0 = rss_kib();
    char t[64];
    const char blob[20] = "0123456789abcdefghi";
    uint64_t t0 = vg_clock_mono_ns();
    int fails = 0;
    for (int i = 0; i < N; i++) {
        int len = snprintf(t, sizeof t, "fleet/site%d/dev%07d/state", i % SITES, i);
        fails += vg_retain_set(r, t, (size_t)len, blob, sizeof blob, (i % 10 == 0) ? 4000000000000 + i : 0) != VG_OK;
    }
    uint64_t t1 = vg_clock_mono_ns();
    VT_EQ_INT(fails, 0);
    VT_EQ_INT(count_of(r), N);
    size_t mem = vg_mem_used(VG_MEM_MQTT) - mem0;
    long rss = rss_kib() - rss0;
    size_t topic_bytes = bytes_of(r) - (size_t)N * sizeof blob;

    size_t n = 0;
    const int LIT = 100000;
    uint64_t t2 = vg_clock_mono_ns();
    for (int i = 0; i < LIT; i++) {
        int len = snprintf(t, sizeof t, "fleet/site%d/dev%07d/state", (i * 7919) % N % SITES, (i * 7919) % N);
        vg_retain_match(r, t, (size_t)len, 0, count_only, &n, NULL);
    }
    uint64_t t3 = vg_clock_mono_ns();
    VT_EQ_INT(n, LIT);
    n = 0;
    VT_EQ_INT(vg_retain_match(r, "fleet/site7/+/state", 19, 0, count_only, &n, NULL), VG_OK);
    uint64_t t4 = vg_clock_mono_ns();
    VT_EQ_INT(n, N / SITES);
    n = 0;
    /* A literal miss next to the 10,000-child table: cost independent of N. */
    VT_EQ_INT(vg_retain_match(r, "fleet/site7/nope/state", 22, 0, count_only, &n, NULL), VG_OK);
    VT_EQ_INT(n, 0);
    uint64_t t5 = vg_clock_mono_ns();
    VT_EQ_INT(vg_retain_match(r, "#", 1, 0, count_only, &n, NULL), VG_OK);
    uint64_t t6 = vg_clock_mono_ns();
    VT_EQ_INT(n, N);
    VT_EQ_INT(vg_retain_sweep(r, 4000000000000 + N), N / 10);
    uint64_t t7 = vg_clock_mono_ns();
    VT_EQ_INT(count_of(r), N - N / 10);

    printf("  1M topics (avg %.1f bytes of topic, 20-byte blob): insert %.0f ms (%.2f us/set)\n",
           (double)topic_bytes / N, (t1 - t0) / 1e6, (t1 - t0) / 1e3 / N);
    printf("  memory: %.1f bytes/entry accounted (%.1f beyond topic+blob), %.1f bytes/entry RSS\n", (double)mem / N,
           (double)(mem - topic_bytes - (size_t)N * sizeof blob) / N, rss * 1024.0 / N);
    printf("  match: literal %.2f us, 'fleet/site7/+/state' (10,000 hits) %.2f ms, '#' (1M hits) %.0f ms; "
           "sweep of 100,000 expired %.0f ms\n",
           (t3 - t2) / 1e3 / LIT, (t4 - t3) / 1e6, (t6 - t5) / 1e6, (t7 - t6) / 1e6);
    uint64_t t8 = vg_clock_mono_ns();
    vg_retain_free(r);
    printf("  free %.0f ms\n", (vg_clock_mono_ns() - t8) / 1e6);
}

int main(void)
{
    VT_RUN(test_set_replace_delete);
    VT_RUN(test_prune);
    VT_RUN(test_match_table);
    VT_RUN(test_stop_early);
    VT_RUN(test_long_and_deep);
    VT_RUN(test_limits);
    VT_RUN(test_expiry);
    VT_RUN(test_random_vs_model);
    VT_RUN(test_alloc_failures);
    VT_RUN(test_concurrent);
    VT_RUN(test_million);
    return VT_DONE();
}
