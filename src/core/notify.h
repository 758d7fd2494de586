/* notify.h — a wake-up one thread sleeps on and any thread can post.
 *
 * Owns: one 32-bit futex word and a "sleeping" flag. Does not own: what the
 * wake-up means (new records in a shard, an inbox that became non-empty, a
 * stop request); the owner looks at its own state after every wake.
 *
 * Why not a mutex + condition variable: a post from the stream committer
 * happens once per group commit per watched shard; with a futex word a post
 * to an owner that is already awake is one atomic exchange and no system
 * call, and a post to a sleeping owner is one FUTEX_WAKE. Posts coalesce:
 * any number of posts before the owner next waits wake it once.
 *
 * Threads: exactly one thread (the owner) calls vg_notify_wait; any thread
 * may call vg_notify_post, also from a signal-free callback on another
 * subsystem's thread. The struct is plain data: zero-initialised (or
 * vg_notify_init) it is ready; nothing to free. */
#ifndef VG_CORE_NOTIFY_H
#define VG_CORE_NOTIFY_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    _Atomic uint32_t posted;   /* 1: a post the owner has not consumed yet */
    _Atomic uint32_t sleeping; /* 1: the owner is in (or about to enter) FUTEX_WAIT */
} vg_notify_t;

void vg_notify_init(vg_notify_t *n);

/* Marks n posted and wakes its owner if it sleeps. Never blocks. */
void vg_notify_post(vg_notify_t *n);

/* Owner only. Returns VG_OK at once if a post is pending (consuming it),
 * otherwise sleeps until a post (VG_OK) or until timeout_ms passes
 * (VG_AGAIN). timeout_ms < 0 waits without limit; 0 only polls. Spurious
 * returns are possible only as VG_OK after a real post. */
int vg_notify_wait(vg_notify_t *n, int64_t timeout_ms);

#endif
