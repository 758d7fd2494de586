/* wheel.c — see wheel.h. */
#include "core/wheel.h"

#include "core/alloc.h"
#include "core/err.h"

#include <stddef.h>

int vg_wheel_init(vg_wheel_t *w, uint32_t nslots, uint32_t tick_ms, uint64_t now_ms)
{
    uint32_t n = 1;
    while (n < nslots)
        n <<= 1;
    w->slots = vg_calloc(VG_MEM_CORE, n, sizeof *w->slots);
    if (!w->slots)
        return VG_ENOMEM;
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
    w->slots = NULL;
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
    uint64_t tick = deadline_ms / w->tick_ms;
    /* A deadline in the past or this tick fires on the next advance. */
    if (tick <= w->cur_tick)
        tick = w->cur_tick + 1;
    /* Beyond the horizon: park in the last reachable slot; it re-adds. */
    if (tick - w->cur_tick >= w->nslots)
        tick = w->cur_tick + w->nslots - 1;
    link_after(&w->slots[tick & (w->nslots - 1)], n);
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
        vg_wheel_node_t *head = &w->slots[w->cur_tick & (w->nslots - 1)];
        /* Move the due list to a local head first: fn may re-add into this
         * very slot (a deadline one full turn away) and must not be seen again. */
        vg_wheel_node_t due;
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

int vg_wheel_timeout(const vg_wheel_t *w, uint64_t now_ms)
{
    uint64_t next = (now_ms / w->tick_ms + 1) * w->tick_ms;
    return (int)(next - now_ms);
}
