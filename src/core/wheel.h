/* wheel.h — a hashed timer wheel for per-connection deadlines.
 *
 * Why a wheel: keepalive deadlines move on every packet. Nodes are intrusive
 * (embedded in the owner), adding and removing are O(1), and a deadline that
 * moves later is NOT rescheduled: when its slot comes due the callback sees
 * the deadline has not passed and adds the node again (lazy rescheduling,
 * as STYLE.md §8 asks). Deadlines beyond the wheel's horizon simply fire
 * early and are re-added the same way. No sweep ever touches all nodes.
 *
 * Sleeping: a bitmap marks the slots that may hold nodes, so
 * vg_wheel_timeout can tell how long until the earliest non-empty slot is
 * due (a find-next-set over nslots/64 words) and an owner sleeps until then
 * — forever when the wheel is empty — instead of waking every tick. A bit
 * is set on add and cleared when its slot is found empty (remove does not
 * know the wheel, so it leaves the bit; the next timeout or advance clears
 * it), which keeps add and remove O(1).
 * Single-threaded: each I/O worker owns one. */
#ifndef VG_CORE_WHEEL_H
#define VG_CORE_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vg_wheel_node {
    struct vg_wheel_node *prev, *next; /* NULL when not in the wheel */
    uint64_t deadline_ms;
} vg_wheel_node_t;

typedef struct {
    vg_wheel_node_t *slots; /* nslots sentinel heads */
    uint64_t *used;         /* bit i: slot i may be non-empty (a clear bit: it is empty) */
    uint32_t nslots;        /* power of two */
    uint32_t tick_ms;
    uint64_t cur_tick;      /* last tick processed */
} vg_wheel_t;

/* nslots is rounded up to a power of two. Returns VG_OK or VG_ENOMEM. */
int vg_wheel_init(vg_wheel_t *w, uint32_t nslots, uint32_t tick_ms, uint64_t now_ms);
void vg_wheel_deinit(vg_wheel_t *w);

/* Inserts n (which must not be in a wheel) to fire at deadline_ms. */
void vg_wheel_add(vg_wheel_t *w, vg_wheel_node_t *n, uint64_t deadline_ms);
/* Removes n if it is in the wheel; safe to call on a node that is not. */
void vg_wheel_remove(vg_wheel_node_t *n);
static inline bool vg_wheel_linked(const vg_wheel_node_t *n)
{
    return n->next != NULL;
}

/* Processes every slot due up to now_ms: each node found is unlinked and
 * passed to fn, which either handles the expiry (deadline_ms <= now) or
 * re-adds it. fn may add or remove any nodes. */
void vg_wheel_advance(vg_wheel_t *w, uint64_t now_ms, void (*fn)(void *ctx, vg_wheel_node_t *n), void *ctx);

/* Milliseconds from now_ms until the earliest non-empty slot is due, i.e.
 * until the next vg_wheel_advance that can call back (0 if one is due
 * already), capped at INT_MAX; -1 when the wheel is empty. For epoll_wait.
 * A node is due at its deadline rounded up to a tick boundary, so it fires
 * up to one tick late, never early. Clears the bits of slots found empty. */
int vg_wheel_timeout(vg_wheel_t *w, uint64_t now_ms);

#endif
