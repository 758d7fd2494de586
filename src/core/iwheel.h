/* iwheel.h — a hashed timer wheel over array indices.
 *
 * Why another wheel: core/wheel.h links nodes by pointer, which suits
 * connections that never move. The processor's per-device deadlines live
 * beside a device table whose entries move when it grows, so here nodes are
 * addressed by index (the device's index in its table) and the wheel owns
 * the node array (16 bytes per index). Same rules as wheel.h: O(1) add and
 * remove, lazy rescheduling (a node whose deadline moved later is simply
 * re-added by the callback when its old slot comes due), deadlines beyond
 * the horizon fire early and are re-added. No sweep ever visits every node.
 * Time is whatever monotonic clock the owner uses (the processor passes
 * stream time). Single-threaded. */
#ifndef VG_CORE_IWHEEL_H
#define VG_CORE_IWHEEL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint32_t prev, next; /* 1 + index, 0 = none; next == UINT32_MAX marks "not linked" */
    int64_t deadline_ms;
} vg_iwheel_node_t;

typedef struct {
    uint32_t *heads; /* nslots list heads, 1 + index or 0 */
    uint32_t nslots; /* power of two */
    uint32_t tick_ms;
    int64_t cur_tick; /* last tick processed; INT64_MIN until the first advance/add */
    vg_iwheel_node_t *nodes;
    uint32_t cap; /* nodes allocated */
    uint32_t linked;
    /* next_due's answer, kept between calls (the processor asks before
     * every sleep, and the search walks a slot's list): lowered by add,
     * dropped by advance; a removal leaves it, as a bound that may be early. */
    int64_t due_memo;
    bool due_known;
} vg_iwheel_t;

/* nslots rounded up to a power of two. VG_OK or VG_ENOMEM. */
int vg_iwheel_init(vg_iwheel_t *w, uint32_t nslots, uint32_t tick_ms);
void vg_iwheel_deinit(vg_iwheel_t *w);
/* Makes room for indices 0..n-1 (new ones unlinked). VG_OK or VG_ENOMEM. */
int vg_iwheel_reserve(vg_iwheel_t *w, uint32_t n);

/* Links idx (< cap, not linked) to fire at deadline_ms. */
void vg_iwheel_add(vg_iwheel_t *w, uint32_t idx, int64_t deadline_ms);
/* Unlinks idx if linked. next_due may then answer early (see there). */
void vg_iwheel_remove(vg_iwheel_t *w, uint32_t idx);
bool vg_iwheel_linked(const vg_iwheel_t *w, uint32_t idx);
int64_t vg_iwheel_deadline(const vg_iwheel_t *w, uint32_t idx);

/* The earliest time at which vg_iwheel_advance would hand a node to fn or
 * at least visit one (a node beyond the horizon is visited once per lap and
 * re-added), or INT64_MAX when nothing is linked. An owner that sleeps
 * until then and calls advance with a time >= the result does not miss a
 * deadline; calling advance earlier is harmless. After a removal the
 * answer may be that of the removed node (early, never late) until the next
 * advance. The first call after an advance looks at up to nslots list heads
 * and the nodes of the first non-empty slot; later calls, until the next
 * advance, cost nothing (adds keep the answer up to date). */
int64_t vg_iwheel_next_due(vg_iwheel_t *w);

/* Processes every slot due up to now_ms: each node found there is unlinked
 * and passed to fn, which handles it (its deadline has passed) or re-adds
 * it. fn may add any node and remove the node it was given, but not remove
 * other nodes (they may sit in the list being processed). A jump of many
 * ticks visits each slot at most once. Indices must stay below 2^31. */
void vg_iwheel_advance(vg_iwheel_t *w, int64_t now_ms, void (*fn)(void *ctx, uint32_t idx), void *ctx);

#endif
