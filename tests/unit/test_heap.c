/* test_heap.c — core/heap.h: order against a sorted model, an indexed heap
 * (removal and key changes by position), growth. */
#include "core/err.h"
#include "core/heap.h"
#include "vt.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define I_LESS(a, b) ((a) < (b))
VG_HEAP_DEFINE(iheap, int64_t, I_LESS, VG_HEAP_NO_INDEX)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void test_sorts(void)
{
    iheap_t h = {0};
    enum { N = 20000 };
    for (int i = 0; i < N; i++)
        VT_REQUIRE(iheap_push(&h, (int64_t)(next_rand() % 1000), VG_MEM_CORE) == VG_OK);
    VT_EQ_INT(h.len, N);
    int64_t prev = -1;
    int bad = 0;
    while (h.len) {
        int64_t v = iheap_pop(&h);
        bad += v < prev;
        prev = v;
    }
    VT_EQ_INT(bad, 0);
    iheap_free(&h);
    VT_EQ_INT(h.cap, 0);
}

/* Timers that know their position, as retain.c's nodes do. */
typedef struct {
    int64_t at;
    size_t pos;
    bool queued;
} timer_t_;
#define T_LESS(a, b) ((a)->at < (b)->at)
#define T_MOVED(e, i) ((e)->pos = (i))
VG_HEAP_DEFINE(theap, timer_t_ *, T_LESS, T_MOVED)

static int check_positions(const theap_t *h)
{
    int bad = 0;
    for (size_t i = 0; i < h->len; i++) {
        bad += h->v[i]->pos != i;
        if (i)
            bad += h->v[i]->at < h->v[(i - 1) / 2]->at;
    }
    return bad;
}

static void test_indexed(void)
{
    enum { N = 2000 };
    static timer_t_ t[N];
    theap_t h = {0};
    VT_REQUIRE(theap_reserve(&h, N, VG_MEM_CORE) == VG_OK);
    VT_CHECK(h.cap >= N);
    for (int i = 0; i < N; i++) {
        t[i] = (timer_t_){.at = (int64_t)(next_rand() % 100000)};
        VT_REQUIRE(theap_push(&h, &t[i], VG_MEM_CORE) == VG_OK);
        t[i].queued = true;
    }
    int bad = check_positions(&h);
    for (int step = 0; step < 20000; step++) {
        timer_t_ *x = &t[next_rand() % N];
        if (!x->queued) {
            x->at = (int64_t)(next_rand() % 100000);
            VT_REQUIRE(theap_push(&h, x, VG_MEM_CORE) == VG_OK);
            x->queued = true;
        } else if (next_rand() % 2) {
            theap_remove(&h, x->pos);
            x->queued = false;
        } else {
            x->at = (int64_t)(next_rand() % 100000); /* rescheduled: earlier or later */
            theap_fix(&h, x->pos);
        }
        if (step % 501 == 0)
            bad += check_positions(&h);
    }
    bad += check_positions(&h);
    int64_t prev = -1;
    while (h.len) {
        timer_t_ *x = theap_pop(&h);
        bad += x->at < prev;
        prev = x->at;
    }
    VT_EQ_INT(bad, 0);
    theap_free(&h);
}

static void test_edges(void)
{
    iheap_t h = {0};
    VT_EQ_INT(iheap_push(&h, 5, VG_MEM_CORE), VG_OK);
    VT_EQ_INT(iheap_top(&h), 5);
    iheap_remove(&h, 0);
    VT_EQ_INT(h.len, 0);
    VT_EQ_INT(iheap_reserve(&h, SIZE_MAX / 2, VG_MEM_CORE), VG_ENOMEM);
    VT_EQ_INT(iheap_push(&h, 3, VG_MEM_CORE), VG_OK);
    VT_EQ_INT(iheap_push(&h, 1, VG_MEM_CORE), VG_OK);
    VT_EQ_INT(iheap_push(&h, 2, VG_MEM_CORE), VG_OK);
    iheap_remove(&h, h.len - 1); /* the last slot: nothing to move */
    VT_EQ_INT(h.len, 2);
    VT_EQ_INT(iheap_pop(&h), 1);
    iheap_free(&h);
}

int main(void)
{
    VT_RUN(test_sorts);
    VT_RUN(test_indexed);
    VT_RUN(test_edges);
    return VT_DONE();
}
