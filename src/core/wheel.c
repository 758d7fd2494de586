/* wheel.c — see wheel.h. */
#include "core/wheel.h"

#include "core/alloc.h"
#include "core/err.h"

#include <limits.h>
#include <stddef.h>

static uint32_t used_words(uint32_t nslots)
{
    return (nslots + 63) / 64;
}

int vg_wheel_init(vg_wheel_t *w, uint32_t nslots, uint32_t tick_ms, uint64_t now_ms)
{
    uint32_t n = 1;
    while (n < nslots)
        n <<= 1;
    w->slots = vg_calloc(VG_MEM_CORE, n, sizeof *w->slots);
    w->used = vg_calloc(VG_MEM_CORE, used_words(n), sizeof *w->used);
    if (!w->slots || !w->used) {
        vg_free(w->slots);
        vg_free(w->used);
        w->slots = NULL;
        w->used = NULL;
        return VG_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        w->slots[i].prev = w->slots[i].next = &w->slots[i];
    w->nslots = n;
    w->tick_ms = tick_ms ? tick_ms : 1;
    w->cur_tick = now_ms / w->tick_ms;
    return VG_OK;
}

void vg_wheel_deinit(vg_wheel_t *w)
{
    if (!w || !w->slots)
        return;
    /* Unlink whatever is left so owners do not point into freed memory. */
    for (uint32_t i = 0; i < w->nslots; i++) {
        vg_wheel_node_t *head = &w->slots[i];
        while (head->next != head)
            vg_wheel_remove(head->next);
    }
    vg_free(w->slots);
    vg_free(w->used);
    w->slots = NULL;
    w->used = NULL;
}

static void link_after(vg_wheel_node_t *head, vg_wheel_node_t *n)
{
    n->prev = head;
    n->next = head->next;
    head->next->prev = n;
    head->next = n;
}

void vg_wheel_add(vg_wheel_t *w, vg_wheel_node_t *n, uint64_t deadline_ms)
{
    n->deadline_ms = deadline_ms;
    /* The first tick whose start is at or after the deadline: the node is
     * due when its slot is, never a tick early (which would cost its owner
     * a wake-up only to re-add it), and at most one tick late. */
    uint64_t tick = (deadline_ms + w->tick_ms - 1) / w->tick_ms;
    /* A deadline in the past or this tick fires on the next advance. */
    if (tick <= w->cur_tick)
        tick = w->cur_tick + 1;
    /* Beyond the horizon: park in the last reachable slot; it re-adds. */
    if (tick - w->cur_tick >= w->nslots)
        tick = w->cur_tick + w->nslots - 1;
    uint32_t i = (uint32_t)(tick & (w->nslots - 1));
    link_after(&w->slots[i], n);
    w->used[i >> 6] |= 1ull << (i & 63);
}

void vg_wheel_remove(vg_wheel_node_t *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

void vg_wheel_advance(vg_wheel_t *w, uint64_t now_ms, void (*fn)(void *ctx, vg_wheel_node_t *n), void *ctx)
{
    uint64_t now_tick = now_ms / w->tick_ms;
    /* After a long stall every slot is due once; more turns would revisit them. */
    if (now_tick - w->cur_tick > w->nslots)
        w->cur_tick = now_tick - w->nslots;
    while (w->cur_tick < now_tick) {
        w->cur_tick++;
        uint32_t si = (uint32_t)(w->cur_tick & (w->nslots - 1));
        vg_wheel_node_t *head = &w->slots[si];
        /* Move the due list to a local head first: fn may re-add into this
         * very slot (a deadline one full turn away) and must not be seen again
         * (and sets the slot's bit again if it does). */
        vg_wheel_node_t due;
        w->used[si >> 6] &= ~(1ull << (si & 63));
        if (head->next == head)
            continue;
        due.next = head->next;
        due.prev = head->prev;
        due.next->prev = &due;
        due.prev->next = &due;
        head->next = head->prev = head;
        while (due.next != &due) {
            vg_wheel_node_t *n = due.next;
            vg_wheel_remove(n);
            fn(ctx, n);
        }
    }
}

/* The first set bit in [from, to), or -1. */
static int64_t find_used(const uint64_t *used, uint32_t from, uint32_t to)
{
    while (from < to) {
        uint32_t wi = from >> 6;
        uint64_t word = used[wi] >> (from & 63);
        if (word) {
            uint32_t i = from + (uint32_t)__builtin_ctzll(word);
            return i < to ? (int64_t)i : -1;
        }
        from = (wi + 1) << 6;
    }
    return -1;
}

int vg_wheel_timeout(vg_wheel_t *w, uint64_t now_ms)
{
    uint32_t mask = w->nslots - 1;
    /* Slots in time order start after the current tick's and wrap around;
     * the current tick's own slot was emptied by the last advance and add
     * never uses it (ticks go from cur+1 to cur+nslots-1). */
    uint32_t start = (uint32_t)((w->cur_tick + 1) & mask);
    for (;;) {
        int64_t i = find_used(w->used, start, w->nslots);
        if (i < 0)
            i = find_used(w->used, 0, start);
        if (i < 0)
            return -1;
        vg_wheel_node_t *head = &w->slots[i];
        if (head->next == head) { /* emptied by removes: forget it */
            w->used[i >> 6] &= ~(1ull << (i & 63));
            continue;
        }
        uint64_t d = ((uint64_t)i - w->cur_tick) & mask;
        if (d == 0)
            d = w->nslots;
        uint64_t due = (w->cur_tick + d) * w->tick_ms;
        if (due <= now_ms)
            return 0;
        return due - now_ms > INT_MAX ? INT_MAX : (int)(due - now_ms);
    }
}
