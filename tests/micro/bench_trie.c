/* bench_trie.c — a before/after microbenchmark of topic matching and
 * retained lookup (the two hot paths that go through the level trie).
 *
 * Not part of `make test` or `make bench`: built and run by hand on a quiet
 * machine when the trie changes, against the old and the new library:
 *
 *   make && cc -std=c17 -D_GNU_SOURCE -O2 -Isrc -pthread -o /tmp/bench_trie \
 *       tests/micro/bench_trie.c $(ls build/obj/src/*/*.o | grep -v app/main.o) \
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

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 5

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

int main(void)
{
    enum { DEVS = 200000, OPS = 400000 };
    char t[96];
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

    double lit = 0, wild = 0, miss = 0;
    size_t hits = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = vg_clock_mono_ns();
        for (int i = 0; i < OPS; i++) {
            int n = snprintf(t, sizeof t, "alerts/dev-%d", (int)(((unsigned)i * 7919u) % DEVS));
            vg_topic_tree_match(tree, t, (size_t)n, count_sub, &hits);
        }
        uint64_t t1 = vg_clock_mono_ns();
        lit = best_ns(lit, t0, t1, OPS);
        t0 = vg_clock_mono_ns();
        for (int i = 0; i < OPS; i++) {
            int n = snprintf(t, sizeof t, "telemetry/dev-%d/hr", (int)(((unsigned)i * 7919u) % DEVS));
            vg_topic_tree_match(tree, t, (size_t)n, count_sub, &hits);
        }
        t1 = vg_clock_mono_ns();
        wild = best_ns(wild, t0, t1, OPS);
        t0 = vg_clock_mono_ns();
        for (int i = 0; i < OPS; i++) {
            int n = snprintf(t, sizeof t, "status/dev-%d", (int)(((unsigned)i * 7919u) % DEVS));
            vg_topic_tree_match(tree, t, (size_t)n, count_sub, &hits);
        }
        t1 = vg_clock_mono_ns();
        miss = best_ns(miss, t0, t1, OPS);
    }
    /* snprintf is in every loop; measure it alone to subtract. */
    double fmt = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = vg_clock_mono_ns();
        for (int i = 0; i < OPS; i++) {
            int n = snprintf(t, sizeof t, "telemetry/dev-%d/hr", (int)(((unsigned)i * 7919u) % DEVS));
            hits += (size_t)n & 1;
        }
        fmt = best_ns(fmt, t0, vg_clock_mono_ns(), OPS);
    }
    printf("snprintf alone                      %7.1f ns\n", fmt);
    printf("topic match alerts/<id> (literal)   %7.1f ns\n", lit - fmt);
    printf("topic match telemetry/<id>/hr (3 w) %7.1f ns\n", wild - fmt);
    printf("topic match status/<id> (1 wild)    %7.1f ns\n", miss - fmt);
    vg_topic_tree_free(tree);

    vg_retain_t *ret;
    if (vg_retain_new(NULL, &ret) != VG_OK)
        return 1;
    for (int i = 0; i < DEVS; i++) {
        int n = snprintf(t, sizeof t, "fleet/site%d/dev%07d/state", i % 100, i);
        vg_retain_set(ret, t, (size_t)n, "0123456789abcdefghi", 20, 0);
    }
    double rlit = 0, rplus = 0, rall = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = vg_clock_mono_ns();
        for (int i = 0; i < OPS; i++) {
            int d = (int)(((unsigned)i * 7919u) % DEVS);
            int n = snprintf(t, sizeof t, "fleet/site%d/dev%07d/state", d % 100, d);
            vg_retain_match(ret, t, (size_t)n, 0, count_ret, &hits, NULL);
        }
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
    printf("retain match literal                %7.1f ns\n", rlit - fmt);
    printf("retain match site/+/state, per hit  %7.1f ns\n", rplus);
    printf("retain match #, per hit             %7.1f ns\n", rall);
    vg_retain_free(ret);
    fprintf(stderr, "(%zu)\n", hits);
    return 0;
}
