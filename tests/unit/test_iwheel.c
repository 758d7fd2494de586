/* test_iwheel.c — the index-addressed timer wheel (src/core/iwheel.c):
 * firing at deadlines, lazy rescheduling past the horizon, removal from
 * anywhere in a slot list, long stalls, and a randomized model check
 * against a plain array of deadlines. */
#include "core/alloc.h"
#include "core/err.h"
#include "core/iwheel.h"
#include "vt.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    vg_iwheel_t *w;
    int64_t now;
    int fired;
    int64_t *want; /* model: deadline per index, INT64_MAX = none */
    int late;      /* fired before its deadline (model check) */
} ctx_t;

static void on_due(void *arg, uint32_t idx)
{
    ctx_t *c = arg;
    c->fired++;
    if (c->want) {
        if (c->want[idx] > c->now)
            c->late++;
        c->want[idx] = INT64_MAX;
    }
}

/* A fixed-seed generator, so that a failure replays the same steps. */
static uint32_t next_rand(uint64_t *rng)
{
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*rng >> 33);
}

static void test_fires_at_deadline(void)
{
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 16, 10) == VG_OK);
    VT_REQUIRE(vg_iwheel_reserve(&w, 4) == VG_OK);
    ctx_t c = {&w, 0, 0, NULL, 0};
    vg_iwheel_advance(&w, 1000, on_due, &c); /* sets the clock */
    vg_iwheel_add(&w, 0, 1050);
    vg_iwheel_add(&w, 1, 1050);
    vg_iwheel_add(&w, 2, 1200);
    VT_CHECK(vg_iwheel_linked(&w, 0));
    c.now = 1049;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 0);
    c.now = 1050;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 2);
    VT_CHECK(!vg_iwheel_linked(&w, 0));
    VT_CHECK(vg_iwheel_linked(&w, 2));
    c.now = 1300;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 3);
    VT_EQ_INT(w.linked, 0);
    vg_iwheel_deinit(&w);
}

static void test_beyond_horizon(void)
{
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 8, 10) == VG_OK); /* 80 ms horizon */
    VT_REQUIRE(vg_iwheel_reserve(&w, 1) == VG_OK);
    ctx_t c = {&w, 0, 0, NULL, 0};
    vg_iwheel_advance(&w, 0, on_due, &c);
    vg_iwheel_add(&w, 0, 1000);
    for (c.now = 0; c.now < 1000; c.now += 5) {
        vg_iwheel_advance(&w, c.now, on_due, &c);
        VT_EQ_INT(c.fired, 0);
    }
    c.now = 1000;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 1);
    vg_iwheel_deinit(&w);
}

static void test_remove_anywhere(void)
{
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 4, 10) == VG_OK);
    VT_REQUIRE(vg_iwheel_reserve(&w, 3) == VG_OK);
    ctx_t c = {&w, 0, 0, NULL, 0};
    vg_iwheel_advance(&w, 0, on_due, &c);
    /* all three in one slot: head, middle, tail */
    vg_iwheel_add(&w, 0, 20);
    vg_iwheel_add(&w, 1, 20);
    vg_iwheel_add(&w, 2, 20);
    vg_iwheel_remove(&w, 1); /* middle */
    vg_iwheel_remove(&w, 2); /* head (added last) */
    vg_iwheel_remove(&w, 2); /* twice: harmless */
    VT_EQ_INT(w.linked, 1);
    c.now = 25;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 1);
    /* a deadline already past goes to the next slot processed */
    vg_iwheel_add(&w, 1, 3);
    vg_iwheel_remove(&w, 1);
    VT_EQ_INT(w.linked, 0);
    vg_iwheel_add(&w, 1, 3);
    c.now = 35;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 2);
    vg_iwheel_deinit(&w);
}

static void test_long_stall(void)
{
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 8, 10) == VG_OK);
    VT_REQUIRE(vg_iwheel_reserve(&w, 20) == VG_OK);
    ctx_t c = {&w, 0, 0, NULL, 0};
    vg_iwheel_advance(&w, 0, on_due, &c);
    for (uint32_t i = 0; i < 20; i++)
        vg_iwheel_add(&w, i, (int64_t)i * 7);
    c.now = 10000000;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 20);
    vg_iwheel_deinit(&w);
}

/* Random adds, removes, re-adds and clock jumps against a model: every
 * deadline fires exactly once, never early, and no later than one tick
 * after the clock passes it. */
static void test_model(void)
{
    enum { N = 300 };
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 64, 7) == VG_OK);
    VT_REQUIRE(vg_iwheel_reserve(&w, N) == VG_OK);
    int64_t want[N];
    for (int i = 0; i < N; i++)
        want[i] = INT64_MAX;
    ctx_t c = {&w, 1000, 0, want, 0};
    vg_iwheel_advance(&w, c.now, on_due, &c);
    uint64_t rng = 42;
    int missed = 0;
    for (int step = 0; step < 20000; step++) {
        uint32_t r = next_rand(&rng);
        uint32_t i = r % N;
        switch ((r >> 12) % 4) {
        case 0:
        case 1:
            if (want[i] == INT64_MAX) {
                want[i] = c.now + (int64_t)((r >> 16) % 2000);
                vg_iwheel_add(&w, i, want[i]);
            }
            break;
        case 2:
            vg_iwheel_remove(&w, i);
            want[i] = INT64_MAX;
            break;
        default:
            c.now += (int64_t)((r >> 16) % ((r & 1) ? 30 : 900));
            vg_iwheel_advance(&w, c.now, on_due, &c);
            for (int k = 0; k < N; k++)
                if (want[k] != INT64_MAX && want[k] + 7 <= c.now - 7)
                    missed++;
        }
    }
    VT_EQ_INT(c.late, 0);
    VT_EQ_INT(missed, 0);
    vg_iwheel_deinit(&w);
}

/* next_due: INT64_MAX when empty; the earliest deadline within its slot;
 * the slot's start for an overdue node or one a lap ahead; advancing to it
 * fires (or at least visits) something, and never fires anything early. */
static void test_next_due(void)
{
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 64, 10) == VG_OK);
    VT_REQUIRE(vg_iwheel_reserve(&w, 4) == VG_OK);
    VT_CHECK(vg_iwheel_next_due(&w) == INT64_MAX);
    ctx_t c = {&w, 1000, 0, NULL, 0};
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_CHECK(vg_iwheel_next_due(&w) == INT64_MAX);
    vg_iwheel_add(&w, 0, 1057);
    vg_iwheel_add(&w, 1, 1053);
    vg_iwheel_add(&w, 2, 1200);
    VT_EQ_INT(vg_iwheel_next_due(&w), 1053);
    c.now = 1052;
    vg_iwheel_advance(&w, c.now, on_due, &c); /* visits slot 105 early: both deferred a tick */
    VT_EQ_INT(c.fired, 0);
    VT_EQ_INT(vg_iwheel_next_due(&w), 1060);
    c.now = 1060;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 2);
    VT_EQ_INT(vg_iwheel_next_due(&w), 1200);
    vg_iwheel_add(&w, 3, 900); /* already overdue: next slot to be processed */
    VT_EQ_INT(vg_iwheel_next_due(&w), 1070);
    c.now = 1070;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 3);
    vg_iwheel_add(&w, 3, 1800); /* a lap ahead: its slot (that of 1160) comes first */
    VT_EQ_INT(vg_iwheel_next_due(&w), 1160);
    c.now = 1160;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 3); /* only re-added */
    VT_EQ_INT(vg_iwheel_next_due(&w), 1200);
    c.now = 1200;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 4);
    VT_EQ_INT(vg_iwheel_next_due(&w), 1800);
    c.now = 1800;
    vg_iwheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 5);
    VT_CHECK(vg_iwheel_next_due(&w) == INT64_MAX);
    vg_iwheel_deinit(&w);
}

/* Sleeping until next_due each time (never advancing otherwise) fires every
 * deadline of a random set exactly once and never early. */
static void test_next_due_model(void)
{
    enum { N = 200 };
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 32, 7) == VG_OK);
    VT_REQUIRE(vg_iwheel_reserve(&w, N) == VG_OK);
    int64_t want[N];
    ctx_t c = {&w, 5000, 0, want, 0};
    vg_iwheel_advance(&w, c.now, on_due, &c);
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) {
        want[i] = c.now + (int64_t)(next_rand(&rng) % 3000); /* beyond the 224 ms horizon too */
        vg_iwheel_add(&w, (uint32_t)i, want[i]);
    }
    int wakes = 0;
    for (int64_t d; (d = vg_iwheel_next_due(&w)) != INT64_MAX && wakes < 100000; wakes++) {
        VT_CHECK(d >= c.now);
        c.now = d;
        vg_iwheel_advance(&w, c.now, on_due, &c);
    }
    VT_EQ_INT(c.fired, N);
    VT_EQ_INT(c.late, 0);
    VT_CHECK(wakes <= N + 3000 / (32 * 7) * 32 + 32);
    vg_iwheel_deinit(&w);
}

/* The answer next_due keeps between calls equals a fresh search after any
 * mix of adds (overdue, within the horizon, laps ahead) and advances, and
 * after removals is never later than the fresh search. */
static void test_next_due_memo(void)
{
    enum { N = 300 };
    vg_iwheel_t w;
    VT_REQUIRE(vg_iwheel_init(&w, 16, 5) == VG_OK);
    VT_REQUIRE(vg_iwheel_reserve(&w, N) == VG_OK);
    ctx_t c = {&w, 10000, 0, NULL, 0};
    vg_iwheel_advance(&w, c.now, on_due, &c);
    uint64_t rng = 11;
    int exact = 0;
    for (int step = 0; step < 20000; step++) {
        uint32_t r = next_rand(&rng), idx = r % N;
        bool removed = false;
        switch ((r >> 12) % 8) {
        case 0:
            c.now += (r >> 16) % 40;
            vg_iwheel_advance(&w, c.now, on_due, &c);
            break;
        case 1:
            vg_iwheel_remove(&w, idx);
            removed = true;
            break;
        default:
            if (!vg_iwheel_linked(&w, idx))
                vg_iwheel_add(&w, idx, c.now - 20 + (int64_t)((r >> 16) % 400)); /* past, near, laps ahead */
            break;
        }
        int64_t kept = vg_iwheel_next_due(&w);
        w.due_known = false; /* forces the search: what next_due answered before it kept answers */
        int64_t fresh = vg_iwheel_next_due(&w);
        VT_CHECK(kept <= fresh);
        if (!removed)
            VT_CHECK(kept == fresh); /* an add or an advance keeps it exact */
        exact += kept == fresh;
    }
    VT_CHECK(exact > 10000);
    vg_iwheel_deinit(&w);
}

int main(void)
{
    VT_RUN(test_fires_at_deadline);
    VT_RUN(test_beyond_horizon);
    VT_RUN(test_remove_anywhere);
    VT_RUN(test_long_stall);
    VT_RUN(test_model);
    VT_RUN(test_next_due);
    VT_RUN(test_next_due_model);
    VT_RUN(test_next_due_memo);
    return VT_DONE();
}
