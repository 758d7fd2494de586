/* iwheel.c — the index-addressed timer wheel (iwheel.h). */
#include "core/iwheel.h"

#include "core/alloc.h"
#include "core/err.h"

#include <string.h>

#define UNLINKED UINT32_MAX
/* A list head's prev holds its slot with this bit set, so removal never has
 * to search for the slot (indices stay below 2^31). */
#define HEAD_BIT 0x80000000u

int vg_iwheel_init(vg_iwheel_t *w, uint32_t nslots, uint32_t tick_ms)
{
    memset(w, 0, sizeof *w);
    uint32_t n = 1;
    while (n < nslots)
        n <<= 1;
    w->heads = vg_calloc(VG_MEM_PROC, n, sizeof *w->heads);
    if (!w->heads)
        return VG_ENOMEM;
    w->nslots = n;
    w->tick_ms = tick_ms ? tick_ms : 1;
    w->cur_tick = INT64_MIN;
    return VG_OK;
}

void vg_iwheel_deinit(vg_iwheel_t *w)
{
    vg_free(w->heads);
    vg_free(w->nodes);
    memset(w, 0, sizeof *w);
}

int vg_iwheel_reserve(vg_iwheel_t *w, uint32_t n)
{
    if (n <= w->cap)
        return VG_OK;
    uint32_t cap = w->cap ? w->cap : 64;
    while (cap < n)
        cap = cap > UINT32_MAX / 2 ? n : cap * 2;
    vg_iwheel_node_t *nn = vg_realloc(VG_MEM_PROC, w->nodes, (size_t)cap * sizeof *nn);
    if (!nn)
        return VG_ENOMEM;
    for (uint32_t i = w->cap; i < cap; i++)
        nn[i] = (vg_iwheel_node_t){0, UNLINKED, 0};
    w->nodes = nn;
    w->cap = cap;
    return VG_OK;
}

static int64_t tick_of(const vg_iwheel_t *w, int64_t ms)
{
    /* floor division, so negative times (never expected) stay ordered */
    int64_t t = ms / (int64_t)w->tick_ms;
    if (ms < 0 && t * (int64_t)w->tick_ms != ms)
        t--;
    return t;
}

bool vg_iwheel_linked(const vg_iwheel_t *w, uint32_t idx)
{
    return idx < w->cap && w->nodes[idx].next != UNLINKED;
}

int64_t vg_iwheel_deadline(const vg_iwheel_t *w, uint32_t idx)
{
    return w->nodes[idx].deadline_ms;
}

/* When advance handles a node with this deadline on visiting tick t: slot
 * t is processed once now reaches its start; the node fires then if its
 * deadline has passed, else at its deadline if that lies within the slot
 * (a later lap is only re-added, at the start). */
static int64_t visit_due(const vg_iwheel_t *w, int64_t t, int64_t deadline_ms)
{
    int64_t start = t * (int64_t)w->tick_ms, end = start + (int64_t)w->tick_ms;
    return deadline_ms <= start || deadline_ms >= end ? start : deadline_ms;
}

void vg_iwheel_add(vg_iwheel_t *w, uint32_t idx, int64_t deadline_ms)
{
    vg_iwheel_node_t *n = &w->nodes[idx];
    int64_t t = tick_of(w, deadline_ms);
    if (w->cur_tick == INT64_MIN)
        w->cur_tick = t - 1;
    /* Already due: put it in the next slot to be processed. */
    if (t <= w->cur_tick)
        t = w->cur_tick + 1;
    uint32_t slot = (uint32_t)((uint64_t)t & (w->nslots - 1));
    n->deadline_ms = deadline_ms;
    n->prev = HEAD_BIT | slot;
    n->next = w->heads[slot];
    if (n->next)
        w->nodes[n->next - 1].prev = idx + 1;
    w->heads[slot] = idx + 1;
    w->linked++;
    if (w->due_known) {
        /* The slot is visited at the first tick after cur_tick that maps
         * to it: t itself, or an earlier lap for a node beyond the horizon. */
        int64_t at =
            visit_due(w, w->cur_tick + 1 + (int64_t)((uint64_t)(t - w->cur_tick - 1) & (w->nslots - 1)), deadline_ms);
        if (at < w->due_memo)
            w->due_memo = at;
    }
}

static void unlink_node(vg_iwheel_t *w, uint32_t idx)
{
    vg_iwheel_node_t *n = &w->nodes[idx];
    if (n->prev & HEAD_BIT)
        w->heads[n->prev & ~HEAD_BIT] = n->next;
    else
        w->nodes[n->prev - 1].next = n->next;
    if (n->next)
        w->nodes[n->next - 1].prev = n->prev;
    n->prev = 0;
    n->next = UNLINKED;
    w->linked--;
}

void vg_iwheel_remove(vg_iwheel_t *w, uint32_t idx)
{
    if (!vg_iwheel_linked(w, idx))
        return;
    unlink_node(w, idx);
}

static int64_t search_due(const vg_iwheel_t *w)
{
    for (uint32_t k = 1; k <= w->nslots; k++) {
        int64_t t = w->cur_tick + (int64_t)k;
        uint32_t h = w->heads[(uint32_t)((uint64_t)t & (w->nslots - 1))];
        if (!h)
            continue;
        int64_t due = INT64_MAX;
        for (; h; h = w->nodes[h - 1].next) {
            int64_t at = visit_due(w, t, w->nodes[h - 1].deadline_ms);
            if (at < due)
                due = at;
        }
        return due;
    }
    return INT64_MAX; /* not reached: a linked node sits in one of the slots */
}

int64_t vg_iwheel_next_due(vg_iwheel_t *w)
{
    if (!w->linked || w->cur_tick == INT64_MIN)
        return INT64_MAX;
    if (!w->due_known) {
        w->due_memo = search_due(w);
        w->due_known = true;
    }
    return w->due_memo;
}

void vg_iwheel_advance(vg_iwheel_t *w, int64_t now_ms, void (*fn)(void *ctx, uint32_t idx), void *ctx)
{
    int64_t target = tick_of(w, now_ms);
    if (w->cur_tick == INT64_MIN) {
        w->cur_tick = target;
        return;
    }
    if (target <= w->cur_tick)
        return;
    int64_t from = w->cur_tick + 1;
    if (target - from >= (int64_t)w->nslots)
        from = target - (int64_t)w->nslots + 1;
    /* Move cur_tick first so that nodes re-added by fn land in future slots. */
    w->cur_tick = target;
    w->due_known = false;
    for (int64_t t = from; t <= target; t++) {
        uint32_t slot = (uint32_t)((uint64_t)t & (w->nslots - 1));
        /* Detach the whole list, then hand out its nodes: fn may re-add
         * into this very slot (a later lap) without being seen again now. */
        uint32_t head = w->heads[slot];
        w->heads[slot] = 0;
        while (head) {
            uint32_t idx = head - 1;
            vg_iwheel_node_t *n = &w->nodes[idx];
            head = n->next;
            if (head)
                w->nodes[head - 1].prev = HEAD_BIT | slot; /* unused: the list is detached */
            n->prev = 0;
            n->next = UNLINKED;
            w->linked--;
            if (n->deadline_ms > now_ms) {
                vg_iwheel_add(w, idx, n->deadline_ms); /* a later lap or a later tick */
                continue;
            }
            fn(ctx, idx);
        }
    }
}
