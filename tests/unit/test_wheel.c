/* test_wheel.c — timer wheel: firing, lazy rescheduling, horizon, removal. */
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
    VT_EQ_INT(vg_wheel_timeout(&w, 205), 5);
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

int main(void)
{
    VT_RUN(test_fires_at_deadline);
    VT_RUN(test_lazy_reschedule_and_horizon);
    VT_RUN(test_remove_and_past_deadline);
    VT_RUN(test_long_stall);
    return VT_DONE();
}
