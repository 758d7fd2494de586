/* bench_trie.c — a before/after microbenchmark of topic matching and
 * retained lookup (the two hot paths that go through the level trie).
 *
 * Not part of `make test` or `make bench`: built and run by hand on a quiet
 * machine when the trie changes, against the old and the new library:
 *
 *   make && cc -std=c17 -D_GNU_SOURCE -O2 -Isrc -pthread -o /tmp/bench_trie \
 *       tests/micro/bench_trie.c $(find build/obj/src -name '*.o' ! -name main.o) \
 *       -lsqlite3 -lcrypto -lcurl -lpthread -lm && /tmp/bench_trie
 *
 * (not a Makefile target: bench/ and the Makefile's bench rules belong to
 * the benchmark suite, and this is a tool for whoever touches the trie).
 *
 * Prints one line per case: nanoseconds per operation, best of ROUNDS. */
#include "core/clock.h"
#include "core/err.h"
#include "mqtt/retain.h"
#include "mqtt/topic.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 7

static void count_sub(void *ctx, void *sub, uint8_t qos)
{
    (void)sub;
    (void)qos;
    (*(size_t *)ctx)++;
}

static int count_ret(void *ctx, const char *topic, size_t tlen, const void *blob, size_t blen, int64_t exp)
{
    (void)topic;
    (void)tlen;
    (void)blob;
    (void)blen;
    (void)exp;
    (*(size_t *)ctx)++;
    return 0;
}

static double best_ns(double cur, uint64_t t0, uint64_t t1, int ops)
{
    double ns = (double)(t1 - t0) / ops;
    return cur == 0 || ns < cur ? ns : cur;
}

/* Topics formatted once, so that the loops time only the matching. */
typedef struct {
    char *buf;
    size_t *off, *len;
} topics_t;

static topics_t make_topics(const char *fmt, int ops, int devs, bool site)
{
    topics_t t = {malloc((size_t)ops * 64), malloc((size_t)ops * sizeof(size_t)), malloc((size_t)ops * sizeof(size_t))};
    for (int i = 0; i < ops; i++) {
        int d = (int)(((unsigned)i * 7919u) % (unsigned)devs);
        int n =
            site ? snprintf(t.buf + (size_t)i * 64, 64, fmt, d % 100, d) : snprintf(t.buf + (size_t)i * 64, 64, fmt, d);
        t.off[i] = (size_t)i * 64;
        t.len[i] = (size_t)n;
    }
    return t;
}

static double time_topic(vg_topic_tree_t *tree, const topics_t *t, int ops, size_t *hits)
{
    double best = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = vg_clock_mono_ns();
        for (int i = 0; i < ops; i++)
            vg_topic_tree_match(tree, t->buf + t->off[i], t->len[i], count_sub, hits);
        best = best_ns(best, t0, vg_clock_mono_ns(), ops);
    }
    return best;
}

int main(void)
{
    enum { DEVS = 200000, OPS = 400000 };
    char t[96];
    size_t hits = 0;
    vg_topic_tree_t *tree;
    if (vg_topic_tree_new(&tree) != VG_OK)
        return 1;
    /* The gateway's shape: one alerts/<id> filter per device, a few
     * wildcard consumers of the telemetry topics. */
    for (int i = 0; i < DEVS; i++) {
        int n = snprintf(t, sizeof t, "alerts/dev-%d", i);
        vg_topic_tree_subscribe(tree, t, (size_t)n, (void *)(uintptr_t)(i + 1), 1);
    }
    vg_topic_tree_subscribe(tree, "telemetry/+/hr", 14, (void *)1, 0);
    vg_topic_tree_subscribe(tree, "telemetry/#", 11, (void *)2, 0);
    vg_topic_tree_subscribe(tree, "+/+/+", 5, (void *)3, 0);
    topics_t lit = make_topics("alerts/dev-%d", OPS, DEVS, false);
    topics_t wild = make_topics("telemetry/dev-%d/hr", OPS, DEVS, false);
    topics_t miss = make_topics("status/dev-%d", OPS, DEVS, false);
    printf("topic match alerts/<id> (literal, 1 of 200k)  %7.1f ns\n", time_topic(tree, &lit, OPS, &hits));
    printf("topic match telemetry/<id>/hr (3 wildcards)   %7.1f ns\n", time_topic(tree, &wild, OPS, &hits));
    printf("topic match status/<id> (no match)            %7.1f ns\n", time_topic(tree, &miss, OPS, &hits));
    vg_topic_tree_free(tree);

    vg_retain_t *ret;
    if (vg_retain_new(NULL, &ret) != VG_OK)
        return 1;
    for (int i = 0; i < DEVS; i++) {
        int n = snprintf(t, sizeof t, "fleet/site%d/dev%07d/state", i % 100, i);
        vg_retain_set(ret, t, (size_t)n, "0123456789abcdefghi", 20, 0);
    }
    topics_t rt = make_topics("fleet/site%d/dev%07d/state", OPS, DEVS, true);
    double rlit = 0, rplus = 0, rall = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = vg_clock_mono_ns();
        for (int i = 0; i < OPS; i++)
            vg_retain_match(ret, rt.buf + rt.off[i], rt.len[i], 0, count_ret, &hits, NULL);
        rlit = best_ns(rlit, t0, vg_clock_mono_ns(), OPS);
        t0 = vg_clock_mono_ns();
        for (int i = 0; i < 200; i++) {
            int n = snprintf(t, sizeof t, "fleet/site%d/+/state", i % 100);
            vg_retain_match(ret, t, (size_t)n, 0, count_ret, &hits, NULL);
        }
        rplus = best_ns(rplus, t0, vg_clock_mono_ns(), 200 * (DEVS / 100));
        t0 = vg_clock_mono_ns();
        vg_retain_match(ret, "#", 1, 0, count_ret, &hits, NULL);
        rall = best_ns(rall, t0, vg_clock_mono_ns(), DEVS);
    }
    printf("retain match literal (1 of 200k)              %7.1f ns\n", rlit);
    printf("retain match fleet/siteN/+/state, per hit     %7.1f ns\n", rplus);
    printf("retain match #, per hit                       %7.1f ns\n", rall);
    vg_retain_free(ret);
    fprintf(stderr, "(%zu)\n", hits);
    return 0;
}
