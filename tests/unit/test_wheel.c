/* test_wheel.c — timer wheel: firing, lazy rescheduling, horizon, removal,
 * and the timeout to the earliest armed deadline (sleeping until it). */
#include "core/wheel.h"
#include "vt.h"

typedef struct {
    vg_wheel_t *w;
    uint64_t now;
    int fired;
    int readded;
} ctx_t;

static void on_due(void *c, vg_wheel_node_t *n)
{
    ctx_t *x = c;
    if (n->deadline_ms <= x->now) {
        x->fired++;
        return;
    }
    x->readded++;
    vg_wheel_add(x->w, n, n->deadline_ms);
}

static void test_fires_at_deadline(void)
{
    vg_wheel_t w;
    VT_REQUIRE(vg_wheel_init(&w, 64, 100, 1000) == 0);
    vg_wheel_node_t n = {0};
    ctx_t c = {&w, 1000, 0, 0};
    vg_wheel_add(&w, &n, 1450);
    c.now = 1399;
    vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 0);
    c.now = 1500;
    vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 1);
    VT_CHECK(!vg_wheel_linked(&n));
    vg_wheel_deinit(&w);
}

static void test_lazy_reschedule_and_horizon(void)
{
    vg_wheel_t w;
    VT_REQUIRE(vg_wheel_init(&w, 16, 100, 0) == 0);
    vg_wheel_node_t n = {0};
    ctx_t c = {&w, 0, 0, 0};
    vg_wheel_add(&w, &n, 500);
    n.deadline_ms = 5000; /* moved later without touching the wheel */
    for (c.now = 100; c.now <= 6000; c.now += 100)
        vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 1);
    VT_CHECK(c.readded >= 2); /* past the 1.6 s horizon it parks and re-adds */
    vg_wheel_deinit(&w);
}

static void test_remove_and_past_deadline(void)
{
    vg_wheel_t w;
    VT_REQUIRE(vg_wheel_init(&w, 8, 10, 100) == 0);
    vg_wheel_node_t a = {0}, b = {0};
    ctx_t c = {&w, 100, 0, 0};
    vg_wheel_add(&w, &a, 50); /* already past: fires on the next tick */
    vg_wheel_add(&w, &b, 120);
    vg_wheel_remove(&b);
    vg_wheel_remove(&b);
    c.now = 200;
    vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 1);
    VT_EQ_INT(vg_wheel_timeout(&w, 205), -1); /* nothing armed: sleep until woken */
    vg_wheel_deinit(&w);
}

static void test_long_stall(void)
{
    vg_wheel_t w;
    VT_REQUIRE(vg_wheel_init(&w, 8, 10, 0) == 0);
    vg_wheel_node_t n[20] = {{0}};
    ctx_t c = {&w, 0, 0, 0};
    for (int i = 0; i < 20; i++)
        vg_wheel_add(&w, &n[i], (uint64_t)(i * 7));
    c.now = 100000;
    vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 20);
    vg_wheel_deinit(&w);
}

/* An empty wheel never asks to be woken; one armed deadline is waited for
 * exactly (to its tick), not tick by tick. */
static void test_timeout_until_earliest(void)
{
    vg_wheel_t w;
    VT_REQUIRE(vg_wheel_init(&w, 4096, 50, 1000) == 0);
    VT_EQ_INT(vg_wheel_timeout(&w, 1000), -1);
    vg_wheel_node_t a = {0}, b = {0};
    vg_wheel_add(&w, &a, 91000); /* tick 1820 */
    VT_EQ_INT(vg_wheel_timeout(&w, 1000), 90000);
    VT_EQ_INT(vg_wheel_timeout(&w, 1017), 89983);
    vg_wheel_add(&w, &b, 2030); /* rounded up to the tick starting at 2050 */
    VT_EQ_INT(vg_wheel_timeout(&w, 1000), 1050);
    vg_wheel_remove(&b); /* the slot's bit goes stale and is cleared by the timeout */
    VT_EQ_INT(vg_wheel_timeout(&w, 1000), 90000);
    vg_wheel_remove(&a);
    VT_EQ_INT(vg_wheel_timeout(&w, 1000), -1);
    /* A deadline already past is due at once. */
    vg_wheel_add(&w, &a, 10);
    VT_EQ_INT(vg_wheel_timeout(&w, 1000), 50);
    VT_EQ_INT(vg_wheel_timeout(&w, 1100), 0);
    ctx_t c = {&w, 1100, 0, 0};
    vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 1);
    VT_EQ_INT(vg_wheel_timeout(&w, 1100), -1);
    vg_wheel_deinit(&w);
}

/* The earliest slot in time order wraps around the end of the array: the
 * current tick near the last slot, one deadline in a low slot (soon, after
 * the wrap) and one in a higher slot (later). */
static void test_timeout_wraps(void)
{
    vg_wheel_t w;
    VT_REQUIRE(vg_wheel_init(&w, 128, 10, 1200) == 0); /* cur tick 120 = slot 120 */
    vg_wheel_node_t soon = {0}, later = {0};
    vg_wheel_add(&w, &later, 1700); /* tick 170 = slot 42 */
    vg_wheel_add(&w, &soon, 1300);  /* tick 130 = slot 2 */
    VT_EQ_INT(vg_wheel_timeout(&w, 1200), 100);
    ctx_t c = {&w, 1300, 0, 0};
    vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.fired, 1);
    VT_EQ_INT(vg_wheel_timeout(&w, 1300), 400);
    /* Beyond the horizon (1.28 s): parked in the last reachable slot. */
    vg_wheel_remove(&later);
    vg_wheel_add(&w, &later, 1300 + 100000);
    VT_EQ_INT(vg_wheel_timeout(&w, 1300), 1270);
    vg_wheel_deinit(&w);
}

/* A lazily moved deadline wakes the owner at the slot it sits in (where it
 * is re-added), then at the real deadline: the timeout follows the slots. */
static void test_timeout_lazy_moved(void)
{
    vg_wheel_t w;
    VT_REQUIRE(vg_wheel_init(&w, 64, 100, 0) == 0);
    vg_wheel_node_t n = {0};
    vg_wheel_add(&w, &n, 500);
    n.deadline_ms = 3000;
    VT_EQ_INT(vg_wheel_timeout(&w, 0), 500);
    ctx_t c = {&w, 500, 0, 0};
    vg_wheel_advance(&w, c.now, on_due, &c);
    VT_EQ_INT(c.readded, 1);
    VT_EQ_INT(vg_wheel_timeout(&w, 500), 2500);
    vg_wheel_deinit(&w);
}

/* Reference: the earliest non-empty slot found by looking at every slot. */
static int brute_timeout(const vg_wheel_t *w, uint64_t now)
{
    for (uint64_t d = 1; d < w->nslots; d++) {
        const vg_wheel_node_t *h = &w->slots[(w->cur_tick + d) & (w->nslots - 1)];
        if (h->next != h) {
            uint64_t due = (w->cur_tick + d) * w->tick_ms;
            return due <= now ? 0 : (int)(due - now);
        }
    }
    return -1;
}

/* Random adds, removes, lazy moves and advances, on a wheel of fewer slots
 * than one bitmap word and on one of several words: the bitmap's answer
 * always equals the brute-force one. */
static void test_timeout_matches_brute_force(void)
{
    static const uint32_t sizes[] = {16, 256};
    for (int si = 0; si < 2; si++) {
        vg_wheel_t w;
        VT_REQUIRE(vg_wheel_init(&w, sizes[si], 10, 0) == 0);
        enum { N = 200 };
        static vg_wheel_node_t nodes[N];
        for (int i = 0; i < N; i++)
            nodes[i] = (vg_wheel_node_t){0};
        uint64_t now = 0, rnd = 88172645463325252ull;
        ctx_t c = {&w, 0, 0, 0};
        int mismatches = 0;
        for (int step = 0; step < 20000; step++) {
            rnd ^= rnd << 13;
            rnd ^= rnd >> 7;
            rnd ^= rnd << 17;
            vg_wheel_node_t *n = &nodes[rnd % N];
            switch ((rnd >> 20) % 4) {
            case 0:
                if (!vg_wheel_linked(n))
                    vg_wheel_add(&w, n, now + (rnd >> 32) % (sizes[si] * 15));
                break;
            case 1:
                vg_wheel_remove(n);
                break;
            case 2:
                n->deadline_ms += (rnd >> 40) % 100; /* moved later, lazily */
                break;
            default:
                now += (rnd >> 32) % 40;
                c.now = now;
                vg_wheel_advance(&w, now, on_due, &c);
                break;
            }
            int want = brute_timeout(&w, now);
            if (vg_wheel_timeout(&w, now) != want)
                mismatches++;
        }
        VT_EQ_INT(mismatches, 0);
        vg_wheel_deinit(&w);
    }
}

int main(void)
{
    VT_RUN(test_fires_at_deadline);
    VT_RUN(test_lazy_reschedule_and_horizon);
    VT_RUN(test_remove_and_past_deadline);
    VT_RUN(test_long_stall);
    VT_RUN(test_timeout_until_earliest);
    VT_RUN(test_timeout_wraps);
    VT_RUN(test_timeout_lazy_moved);
    VT_RUN(test_timeout_matches_brute_force);
    return VT_DONE();
}
