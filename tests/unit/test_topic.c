/* test_topic.c — unit tests for the subscription trie (src/mqtt/topic.c).
 *
 * Besides the MQTT 3.1.1 §4.7 rules one by one, a randomized test drives the
 * trie and a brute-force matcher written here with the same operations and
 * compares every match, and fault-injection tests check that a failed
 * subscribe leaves no empty nodes behind. */
#include "core/alloc.h"
#include "core/err.h"
#include "mqtt/topic.h"
#include "vt.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- helpers ---------------------------------------------------------------- */

#define MAX_HITS 4096

typedef struct {
    void *sub;
    uint8_t qos;
} hit_t;

typedef struct {
    hit_t hits[MAX_HITS];
    size_t n;
} hits_t;

static void collect(void *ctx, void *sub, uint8_t qos)
{
    hits_t *h = ctx;
    if (h->n < MAX_HITS)
        h->hits[h->n] = (hit_t){sub, qos};
    h->n++;
}

static hits_t g_hits;

/* Matches topic and returns the number of (filter, sub) pairs reported. */
static size_t match(vg_topic_tree_t *t, const char *topic)
{
    g_hits.n = 0;
    vg_topic_tree_match(t, topic, strlen(topic), collect, &g_hits);
    return g_hits.n;
}

/* How many of the last match's reports were for sub with qos. */
static size_t hits_of(void *sub, uint8_t qos)
{
    size_t k = 0;
    for (size_t i = 0; i < g_hits.n && i < MAX_HITS; i++)
        k += g_hits.hits[i].sub == sub && g_hits.hits[i].qos == qos;
    return k;
}

static int sub_s(vg_topic_tree_t *t, const char *filter, void *sub, uint8_t qos)
{
    return vg_topic_tree_subscribe(t, filter, strlen(filter), sub, qos);
}

static int unsub_s(vg_topic_tree_t *t, const char *filter, void *sub)
{
    return vg_topic_tree_unsubscribe(t, filter, strlen(filter), sub);
}

static int A, B, C; /* their addresses are the subscribers */

/* ---- the rules ------------------------------------------------------------------ */

static void test_exact(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &A, 1), VG_OK);
    VT_EQ_INT(vg_topic_tree_count(t), 1);
    VT_EQ_INT(match(t, "a/b"), 1);
    VT_EQ_INT(hits_of(&A, 1), 1);
    VT_EQ_INT(match(t, "a"), 0);
    VT_EQ_INT(match(t, "a/c"), 0);
    VT_EQ_INT(match(t, "a/b/c"), 0);
    VT_EQ_INT(match(t, "a/b/"), 0);
    VT_EQ_INT(match(t, "/a/b"), 0);
    VT_EQ_INT(match(t, "A/b"), 0);
    /* Empty levels are levels like any other. */
    VT_EQ_INT(sub_s(t, "/x//y/", &B, 0), VG_OK);
    VT_EQ_INT(match(t, "/x//y/"), 1);
    VT_EQ_INT(match(t, "/x/y/"), 0);
    VT_EQ_INT(match(t, "/x//y"), 0);
    vg_topic_tree_free(t);
}

static void test_plus(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    VT_EQ_INT(sub_s(t, "a/+/c", &A, 0), VG_OK);
    VT_EQ_INT(match(t, "a/b/c"), 1);
    VT_EQ_INT(match(t, "a//c"), 1); /* '+' matches an empty level */
    VT_EQ_INT(match(t, "a/b"), 0);
    VT_EQ_INT(match(t, "a/b/c/d"), 0);
    VT_EQ_INT(match(t, "a/b/d"), 0);

    VT_EQ_INT(sub_s(t, "+", &B, 0), VG_OK);
    VT_EQ_INT(match(t, "x"), 1);
    VT_EQ_INT(match(t, "x/y"), 0);
    VT_EQ_INT(match(t, "/x"), 0);

    /* §4.7.1.3: "+/+" and "/+" both match "/finance"; "+" does not. */
    VT_EQ_INT(sub_s(t, "+/+", &C, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "/+", &C, 1), VG_OK);
    VT_EQ_INT(match(t, "/finance"), 2);
    VT_EQ_INT(hits_of(&C, 0), 1);
    VT_EQ_INT(hits_of(&C, 1), 1);
    VT_EQ_INT(match(t, "/"), 2);
    vg_topic_tree_free(t);
}

static void test_hash(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    VT_EQ_INT(sub_s(t, "a/#", &A, 2), VG_OK);
    VT_EQ_INT(match(t, "a"), 1); /* "a/#" matches the parent level too */
    VT_EQ_INT(hits_of(&A, 2), 1);
    VT_EQ_INT(match(t, "a/"), 1);
    VT_EQ_INT(match(t, "a/b"), 1);
    VT_EQ_INT(match(t, "a/b/c/d"), 1);
    VT_EQ_INT(match(t, "b"), 0);
    VT_EQ_INT(match(t, "/a"), 0);
    VT_EQ_INT(match(t, "ab"), 0);

    VT_EQ_INT(sub_s(t, "#", &B, 0), VG_OK);
    VT_EQ_INT(match(t, "x"), 1);
    VT_EQ_INT(match(t, "/"), 1);
    VT_EQ_INT(match(t, "a/b"), 2);

    VT_EQ_INT(sub_s(t, "a/+/#", &C, 0), VG_OK);
    VT_EQ_INT(match(t, "a"), 2);
    VT_EQ_INT(hits_of(&C, 0), 0);
    VT_EQ_INT(match(t, "a/b"), 3);
    VT_EQ_INT(hits_of(&C, 0), 1);
    vg_topic_tree_free(t);
}

static void test_dollar(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    VT_EQ_INT(sub_s(t, "#", &A, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "+/monitor/Clients", &A, 1), VG_OK);
    VT_EQ_INT(sub_s(t, "+", &A, 2), VG_OK);
    VT_EQ_INT(match(t, "$SYS/monitor/Clients"), 0);
    VT_EQ_INT(match(t, "$SYS"), 0);
    VT_EQ_INT(match(t, "x/monitor/Clients"), 2);

    VT_EQ_INT(sub_s(t, "$SYS/#", &B, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "$SYS/monitor/+", &C, 1), VG_OK);
    VT_EQ_INT(match(t, "$SYS/monitor/Clients"), 2);
    VT_EQ_INT(hits_of(&B, 0), 1);
    VT_EQ_INT(hits_of(&C, 1), 1);
    VT_EQ_INT(match(t, "$SYS"), 1);
    /* Only the first level is special: "a/$x" is an ordinary topic. */
    VT_EQ_INT(sub_s(t, "a/+", &B, 1), VG_OK);
    VT_EQ_INT(match(t, "a/$x"), 2);
    VT_EQ_INT(hits_of(&A, 0), 1);
    VT_EQ_INT(hits_of(&B, 1), 1);
    vg_topic_tree_free(t);
}

static void test_overlap(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &A, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "a/+", &A, 1), VG_OK);
    VT_EQ_INT(sub_s(t, "a/#", &A, 2), VG_OK);
    VT_EQ_INT(sub_s(t, "#", &A, 1), VG_OK);
    VT_EQ_INT(sub_s(t, "+/b", &A, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &B, 2), VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &C, 1), VG_OK);
    VT_EQ_INT(vg_topic_tree_count(t), 7);
    /* Each (filter, sub) pair once; merging is the caller's job. */
    VT_EQ_INT(match(t, "a/b"), 7);
    VT_EQ_INT(hits_of(&A, 0), 2);
    VT_EQ_INT(hits_of(&A, 1), 2);
    VT_EQ_INT(hits_of(&A, 2), 1);
    VT_EQ_INT(hits_of(&B, 2), 1);
    VT_EQ_INT(hits_of(&C, 1), 1);
    VT_EQ_INT(match(t, "a/c"), 3);
    vg_topic_tree_free(t);
}

static void test_resubscribe(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &A, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &A, 2), VG_EEXIST);
    VT_EQ_INT(vg_topic_tree_count(t), 1);
    VT_EQ_INT(match(t, "a/b"), 1);
    VT_EQ_INT(hits_of(&A, 2), 1);

    /* Also when the node holds an array of subscribers, not the inline one. */
    VT_EQ_INT(sub_s(t, "a/b", &B, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &C, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "a/b", &B, 1), VG_EEXIST);
    VT_EQ_INT(vg_topic_tree_count(t), 3);
    VT_EQ_INT(match(t, "a/b"), 3);
    VT_EQ_INT(hits_of(&B, 1), 1);
    VT_EQ_INT(hits_of(&B, 0), 0);
    vg_topic_tree_free(t);
}

static void test_unsubscribe_prunes(void)
{
    size_t base = vg_mem_used(VG_MEM_MQTT);
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    size_t empty = vg_mem_used(VG_MEM_MQTT);

    static const char *const filters[] = {"a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "x/y/z/w", "a/b/c/d/e", "", "/",
                                          "$SYS/#", "a//b"};
    size_t nf = sizeof(filters) / sizeof(filters[0]);
    void *subs[] = {&A, &B, &C};
    for (size_t i = 0; i < nf; i++)
        for (size_t s = 0; s < 3; s++)
            VT_EQ_INT(sub_s(t, filters[i], subs[s], (uint8_t)s), VG_OK);
    VT_EQ_INT(vg_topic_tree_count(t), nf * 3);

    /* Wrong pairs and mere prefixes of stored filters are not found. */
    VT_EQ_INT(unsub_s(t, "a/b/c/d", &A), VG_ENOTFOUND);
    VT_EQ_INT(unsub_s(t, "q", &A), VG_ENOTFOUND);
    VT_EQ_INT(unsub_s(t, "a/b", &vt_pass), VG_ENOTFOUND);
    VT_EQ_INT(vg_topic_tree_count(t), nf * 3);

    /* Remove in an order different from insertion so that parents empty
     * before and after their children. */
    for (size_t s = 0; s < 3; s++)
        for (size_t i = nf; i-- > 0;)
            VT_EQ_INT(unsub_s(t, filters[(i * 7) % nf], subs[s]), VG_OK);
    VT_EQ_INT(vg_topic_tree_count(t), 0);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), empty);
    VT_EQ_INT(match(t, "a/b/c"), 0);
    VT_EQ_INT(unsub_s(t, "a/b", &A), VG_ENOTFOUND);

    /* A parent with a subscriber survives its pruned child, and vice versa. */
    VT_EQ_INT(sub_s(t, "p", &A, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "p/q/r", &A, 0), VG_OK);
    size_t with_p = 0;
    VT_EQ_INT(unsub_s(t, "p/q/r", &A), VG_OK);
    with_p = vg_mem_used(VG_MEM_MQTT);
    VT_EQ_INT(match(t, "p"), 1);
    VT_EQ_INT(sub_s(t, "p/q/r", &A, 0), VG_OK);
    VT_EQ_INT(unsub_s(t, "p", &A), VG_OK);
    VT_EQ_INT(match(t, "p/q/r"), 1);
    VT_CHECK(vg_mem_used(VG_MEM_MQTT) > with_p);
    VT_EQ_INT(unsub_s(t, "p/q/r", &A), VG_OK);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), empty);

    vg_topic_tree_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), base);
}

/* Many siblings: the child tables grow, shrink and delete with backward
 * shifts; every remaining sibling must stay reachable throughout. */
static void test_siblings_churn(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    size_t empty = vg_mem_used(VG_MEM_MQTT);
    enum { N = 2000 };
    char f[64];
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "s/%d", i);
        VT_EQ_INT(sub_s(t, f, (void *)(uintptr_t)(i + 1), 0), VG_OK);
    }
    /* Remove the odd ones, then check all. */
    for (int i = 1; i < N; i += 2) {
        snprintf(f, sizeof(f), "s/%d", i);
        VT_EQ_INT(unsub_s(t, f, (void *)(uintptr_t)(i + 1)), VG_OK);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "s/%d", i);
        size_t want = i % 2 == 0;
        if (match(t, f) != want || (want && g_hits.hits[0].sub != (void *)(uintptr_t)(i + 1)))
            bad++;
    }
    VT_EQ_INT(bad, 0);
    VT_EQ_INT(match(t, "s/+"), 0); /* a topic's '+' is literal text, matching nothing here */
    for (int i = 0; i < N; i += 2) {
        snprintf(f, sizeof(f), "s/%d", i);
        VT_EQ_INT(unsub_s(t, f, (void *)(uintptr_t)(i + 1)), VG_OK);
    }
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), empty);

    /* Many subscribers on one filter: the subscriber array grows and shrinks. */
    for (int i = 0; i < 100; i++)
        VT_EQ_INT(sub_s(t, "all", (void *)(uintptr_t)(i + 1), (uint8_t)(i % 3)), VG_OK);
    VT_EQ_INT(match(t, "all"), 100);
    for (int i = 0; i < 100; i += 3)
        VT_EQ_INT(unsub_s(t, "all", (void *)(uintptr_t)(i + 1)), VG_OK);
    VT_EQ_INT(match(t, "all"), 66);
    VT_EQ_INT(hits_of((void *)(uintptr_t)2, 1), 1);
    for (int i = 0; i < 100; i++)
        if (i % 3)
            VT_EQ_INT(unsub_s(t, "all", (void *)(uintptr_t)(i + 1)), VG_OK);
    VT_EQ_INT(vg_topic_tree_count(t), 0);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), empty);
    vg_topic_tree_free(t);
}

static void test_many_alerts(void)
{
    size_t base = vg_mem_used(VG_MEM_MQTT);
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    enum { N = 100000 };
    char f[64];
    int failed = 0;
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "alerts/dev-%d", i);
        failed += sub_s(t, f, (void *)(uintptr_t)(i + 1), 1) != VG_OK;
    }
    VT_EQ_INT(failed, 0);
    VT_EQ_INT(vg_topic_tree_count(t), N);
    size_t per_sub = (vg_mem_used(VG_MEM_MQTT) - base) / N;
    printf("  %d x alerts/dev-<i>: %zu bytes per subscription (vg_mem_used)\n", N, per_sub);
    VT_CHECK(per_sub < 120);

    VT_EQ_INT(match(t, "alerts/dev-4242"), 1);
    VT_CHECK(g_hits.hits[0].sub == (void *)(uintptr_t)4243);
    VT_EQ_INT(g_hits.hits[0].qos, 1);
    VT_EQ_INT(match(t, "alerts/dev-100000"), 0);
    VT_EQ_INT(match(t, "alerts"), 0);
    VT_EQ_INT(match(t, "alerts/dev-4242/x"), 0);

    /* A wildcard subscriber sees every device and nothing else changes. */
    VT_EQ_INT(sub_s(t, "alerts/+", &A, 0), VG_OK);
    VT_EQ_INT(match(t, "alerts/dev-99999"), 2);
    VT_EQ_INT(hits_of(&A, 0), 1);
    VT_EQ_INT(hits_of((void *)(uintptr_t)100000, 1), 1);

    vg_topic_tree_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), base);
}

/* Filters of thousands of levels: matching walks them without one C frame
 * per level, and pending branches overflow the walk's on-stack array. */
static void test_deep(void)
{
    enum { N = 200 };
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    size_t empty = vg_mem_used(VG_MEM_MQTT);
    static char f[2 * N + 1], topic[2 * N + 1];
    /* F_k = a/.../a/+/a/.../a with '+' at level k: along the all-'a' path
     * every node has both a named child and a '+' child. */
    for (int k = 0; k < N; k++) {
        for (int i = 0; i < N; i++) {
            f[2 * i] = i == k ? '+' : 'a';
            f[2 * i + 1] = '/';
        }
        f[2 * N - 1] = '\0';
        VT_EQ_INT(sub_s(t, f, (void *)(uintptr_t)(k + 1), 0), VG_OK);
    }
    for (int i = 0; i < N; i++) {
        topic[2 * i] = 'a';
        topic[2 * i + 1] = '/';
    }
    topic[2 * N - 1] = '\0';
    VT_EQ_INT(match(t, topic), N);
    topic[2 * N - 2] = 'b'; /* only the filter with '+' last still matches */
    VT_EQ_INT(match(t, topic), 1);
    VT_CHECK(g_hits.hits[0].sub == (void *)(uintptr_t)N);
    topic[2 * N - 2] = 'a';
    topic[0] = 'b';
    VT_EQ_INT(match(t, topic), 1);

    /* A very deep filter. */
    enum { DEEP = 30000 };
    char *deep = malloc(2 * DEEP);
    VT_REQUIRE(deep != NULL);
    for (int i = 0; i < DEEP; i++) {
        deep[2 * i] = i % 2 ? '+' : 'x';
        deep[2 * i + 1] = '/';
    }
    deep[2 * DEEP - 1] = '\0';
    VT_EQ_INT(sub_s(t, deep, &A, 1), VG_OK);
    VT_EQ_INT(match(t, deep), 1); /* '+' as topic text is matched by the '+' filter level */
    VT_EQ_INT(unsub_s(t, deep, &A), VG_OK);
    free(deep);

    for (int k = 0; k < N; k++) {
        for (int i = 0; i < N; i++) {
            f[2 * i] = i == k ? '+' : 'a';
            f[2 * i + 1] = '/';
        }
        f[2 * N - 1] = '\0';
        VT_EQ_INT(unsub_s(t, f, (void *)(uintptr_t)(k + 1)), VG_OK);
    }
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), empty);
    vg_topic_tree_free(t);
}

/* Invalid input must not crash (the codec validates, but defence is cheap). */
static void test_odd_input(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    VT_EQ_INT(vg_topic_tree_subscribe(t, NULL, 0, &A, 0), VG_OK); /* one empty level */
    VT_EQ_INT(vg_topic_tree_subscribe(t, "", 0, &A, 1), VG_EEXIST);
    g_hits.n = 0;
    vg_topic_tree_match(t, NULL, 0, collect, &g_hits);
    VT_EQ_INT(g_hits.n, 1);
    VT_EQ_INT(sub_s(t, "a/#/b", &B, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "a/b#/+c", &B, 0), VG_OK);
    VT_EQ_INT(match(t, "a/b#/+c"), 1);
    VT_EQ_INT(match(t, "a/x/b"), 0);
    VT_EQ_INT(unsub_s(t, "a/#/b", &B), VG_OK);
    VT_EQ_INT(unsub_s(t, "a/b#/+c", &B), VG_OK);
    VT_EQ_INT(vg_topic_tree_unsubscribe(t, NULL, 0, &A), VG_OK);

    /* A level longer than MQTT allows. */
    size_t big = 70000;
    char *s = malloc(big);
    VT_REQUIRE(s != NULL);
    memset(s, 'z', big);
    VT_EQ_INT(vg_topic_tree_subscribe(t, s, big, &A, 0), VG_EINVAL);
    VT_EQ_INT(vg_topic_tree_unsubscribe(t, s, big, &A), VG_ENOTFOUND);
    g_hits.n = 0;
    vg_topic_tree_match(t, s, big, collect, &g_hits);
    VT_EQ_INT(g_hits.n, 0);
    free(s);
    VT_EQ_INT(vg_topic_tree_count(t), 0);
    vg_topic_tree_free(t);
    vg_topic_tree_free(NULL);
}

/* Every allocation of a subscribe fails in turn: the call reports ENOMEM and
 * the tree holds what it held before. A child table may keep capacity it grew
 * before the failure, so "no empty nodes left behind" is checked at the end,
 * when removing every subscription must bring memory back to an empty tree. */
static void test_alloc_failure(void)
{
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    size_t empty = vg_mem_used(VG_MEM_MQTT);
    VT_EQ_INT(sub_s(t, "a/b", &A, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "a/c", &A, 0), VG_OK);
    VT_EQ_INT(sub_s(t, "x", &A, 0), VG_OK);
    /* Covering: new branches, a new '+'/'#' child, a second subscriber (the
     * array is created), a third (it grows), a child table created and grown. */
    static const struct {
        const char *filter;
        int *sub;
    } cases[] = {{"a/d/e/f", &B}, {"a/+/#", &B}, {"a/b", &B}, {"a/b", &C}, {"x/y", &B},
                 {"new/deep/path", &B}, {"+/#", &B}, {"a/g/h", &B}, {"x/z", &B}};
    size_t ncases = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < ncases; i++) {
        for (long n = 0;; n++) {
            size_t before = vg_mem_used(VG_MEM_MQTT);
            vg_mem_fail_after(n);
            int rc = sub_s(t, cases[i].filter, cases[i].sub, 1);
            vg_mem_fail_after(-1);
            if (rc == VG_OK)
                break;
            VT_EQ_INT(rc, VG_ENOMEM);
            VT_CHECK(vg_mem_used(VG_MEM_MQTT) <= before + 64);
            VT_EQ_INT(vg_topic_tree_count(t), 3 + i);
        }
    }
    VT_EQ_INT(match(t, "a/d/e/f"), 3); /* a/d/e/f, a/+/#, +/# */
    VT_EQ_INT(match(t, "a/b"), 5);     /* a/b three times, a/+/#, +/# */
    VT_EQ_INT(match(t, "a/g/h"), 3);
    for (size_t i = 0; i < ncases; i++)
        VT_EQ_INT(unsub_s(t, cases[i].filter, cases[i].sub), VG_OK);
    VT_EQ_INT(vg_topic_tree_count(t), 3);
    VT_EQ_INT(match(t, "a/b"), 1);
    VT_EQ_INT(unsub_s(t, "a/b", &A), VG_OK);
    VT_EQ_INT(unsub_s(t, "a/c", &A), VG_OK);
    VT_EQ_INT(unsub_s(t, "x", &A), VG_OK);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), empty);

    /* Allocation failures while creating a tree. */
    vg_topic_tree_t *t2 = NULL;
    for (long n = 0; n < 2; n++) {
        vg_mem_fail_after(n);
        VT_EQ_INT(vg_topic_tree_new(&t2), VG_ENOMEM);
        vg_mem_fail_after(-1);
    }
    vg_topic_tree_free(t);
}

/* ---- randomized cross-check ---------------------------------------------------- */

#define MAX_LEVELS 8

typedef struct {
    char text[64];
    void *sub;
    uint8_t qos;
} model_sub_t;

static size_t split(const char *s, const char *lv[MAX_LEVELS], size_t ln[MAX_LEVELS])
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *slash = strchr(p, '/');
        lv[n] = p;
        ln[n] = slash ? (size_t)(slash - p) : strlen(p);
        n++;
        if (!slash || n == MAX_LEVELS)
            return n;
        p = slash + 1;
    }
}

static bool level_is(const char *l, size_t n, const char *w)
{
    return n == strlen(w) && memcmp(l, w, n) == 0;
}

/* MQTT 3.1.1 §4.7, written as directly as possible. */
static bool brute_match(const char *filter, const char *topic)
{
    const char *fl[MAX_LEVELS], *tl[MAX_LEVELS];
    size_t fn[MAX_LEVELS], tn[MAX_LEVELS];
    size_t nf = split(filter, fl, fn), nt = split(topic, tl, tn);
    if (topic[0] == '$' && (level_is(fl[0], fn[0], "+") || level_is(fl[0], fn[0], "#")))
        return false;
    for (size_t i = 0; i < nf; i++) {
        if (level_is(fl[i], fn[i], "#"))
            return true;
        if (i >= nt)
            return false;
        if (level_is(fl[i], fn[i], "+"))
            continue;
        if (fn[i] != tn[i] || memcmp(fl[i], tl[i], fn[i]) != 0)
            return false;
    }
    return nf == nt;
}

static const char *const WORDS[] = {"a", "b", "", "$x", "+", "#"};

static void random_text(char *out, bool filter)
{
    size_t levels = 1 + (size_t)rand() % 4;
    out[0] = '\0';
    for (size_t i = 0; i < levels; i++) {
        /* Topics use no wildcards; filters put '#' only last. */
        size_t nw = filter ? (i + 1 == levels ? 6 : 5) : 4;
        if (i)
            strcat(out, "/");
        strcat(out, WORDS[(size_t)rand() % nw]);
    }
}

static void test_random_crosscheck(void)
{
    srand(12345);
    size_t base = vg_mem_used(VG_MEM_MQTT);
    vg_topic_tree_t *t;
    VT_REQUIRE(vg_topic_tree_new(&t) == VG_OK);
    enum { MODEL_MAX = 4096, SUBS = 5 };
    static model_sub_t model[MODEL_MAX];
    static int subs[SUBS];
    size_t nmodel = 0;
    int mismatches = 0, rc_errors = 0;
    size_t total_hits = 0;

    for (int step = 0; step < 60000; step++) {
        int op = rand() % 10;
        char text[64];
        if (op < 5) {
            random_text(text, true);
            void *sub = &subs[rand() % SUBS];
            uint8_t qos = (uint8_t)(rand() % 3);
            size_t i;
            for (i = 0; i < nmodel; i++)
                if (model[i].sub == sub && strcmp(model[i].text, text) == 0)
                    break;
            int want = i < nmodel ? VG_EEXIST : VG_OK;
            if (i == nmodel && nmodel == MODEL_MAX)
                continue;
            rc_errors += sub_s(t, text, sub, qos) != want;
            if (i == nmodel) {
                strcpy(model[nmodel].text, text);
                model[nmodel].sub = sub;
                nmodel++;
            }
            model[i].qos = qos;
        } else if (op < 8) {
            /* Unsubscribe: usually something present, sometimes not. */
            void *sub;
            if (nmodel && rand() % 4) {
                size_t i = (size_t)rand() % nmodel;
                strcpy(text, model[i].text);
                sub = model[i].sub;
            } else {
                random_text(text, true);
                sub = &subs[rand() % SUBS];
            }
            size_t i;
            for (i = 0; i < nmodel; i++)
                if (model[i].sub == sub && strcmp(model[i].text, text) == 0)
                    break;
            int want = i < nmodel ? VG_OK : VG_ENOTFOUND;
            rc_errors += unsub_s(t, text, sub) != want;
            if (i < nmodel)
                model[i] = model[--nmodel];
        } else {
            random_text(text, false);
            match(t, text);
            total_hits += g_hits.n;
            /* Compare as multisets of (sub, qos): count each model match
             * and find it among the reports. */
            size_t expected = 0;
            bool ok = true;
            for (size_t i = 0; i < nmodel; i++) {
                if (!brute_match(model[i].text, text))
                    continue;
                expected++;
                size_t want = 0;
                for (size_t j = 0; j < nmodel; j++)
                    want += model[j].sub == model[i].sub && model[j].qos == model[i].qos &&
                            brute_match(model[j].text, text);
                if (hits_of(model[i].sub, model[i].qos) != want)
                    ok = false;
            }
            if (expected != g_hits.n)
                ok = false;
            if (!ok && mismatches++ < 5)
                printf("  mismatch for topic '%s': trie %zu, brute force %zu\n", text, g_hits.n, expected);
        }
        if (vg_topic_tree_count(t) != nmodel) {
            rc_errors++;
            break;
        }
    }
    VT_EQ_INT(mismatches, 0);
    VT_EQ_INT(rc_errors, 0);
    VT_CHECK(total_hits > 1000); /* the test exercised real matches */

    while (nmodel) {
        nmodel--;
        VT_EQ_INT(unsub_s(t, model[nmodel].text, model[nmodel].sub), VG_OK);
    }
    VT_EQ_INT(vg_topic_tree_count(t), 0);
    vg_topic_tree_free(t);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), base);
}

int main(void)
{
    VT_RUN(test_exact);
    VT_RUN(test_plus);
    VT_RUN(test_hash);
    VT_RUN(test_dollar);
    VT_RUN(test_overlap);
    VT_RUN(test_resubscribe);
    VT_RUN(test_unsubscribe_prunes);
    VT_RUN(test_siblings_churn);
    VT_RUN(test_many_alerts);
    VT_RUN(test_deep);
    VT_RUN(test_odd_input);
    VT_RUN(test_alloc_failure);
    VT_RUN(test_random_crosscheck);
    VT_EQ_INT(vg_mem_used(VG_MEM_MQTT), 0);
    return VT_DONE();
}
