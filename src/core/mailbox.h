/* mailbox.h — a hand-off of fixed-size items from any thread to one owner
 * thread, woken once per batch.
 *
 * Owns: the posted items (copies), the two arrays they live in, the lock.
 * Does not own: what an item means, the owner's thread or its sleep (a
 * vg_notify_t the owner waits on, or an eventfd in the owner's epoll set,
 * either of which may carry other wake-ups too).
 *
 * Shape: a mutex, the array posters append to, and a spare. The owner's
 * take swaps them under the lock, so a batch is handed over in O(1) and
 * processed with the lock free; the array it processed becomes the next
 * spare, so a steady state allocates nothing. A post wakes the owner only
 * when the mailbox was empty: until the owner takes, it has a wake-up
 * coming already (STYLE.md 16: wake once per batch). The owner must
 * therefore take everything after each wake-up, which take does.
 *
 * Why items are copied by size rather than generated per type (as set.h
 * and heap.h are): a post and a take each cost one lock and one memcpy,
 * never a per-item callback, so nothing is gained by specialising.
 *
 * Threads: any thread may post; only the owner takes; init and deinit
 * while no one else uses the mailbox. */
#ifndef VG_CORE_MAILBOX_H
#define VG_CORE_MAILBOX_H

#include "core/alloc.h"
#include "core/notify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    pthread_mutex_t mu;
    unsigned char *items; /* posted, not yet taken: len of cap items */
    size_t len, cap;
    unsigned char *spare; /* handed out by the last take; posts never touch it */
    size_t spare_cap;
    atomic_size_t pending; /* len, for a look without the lock */
    size_t size;           /* bytes per item */
    vg_mem_tag_t tag;
    vg_notify_t *notify; /* posted when the mailbox stops being empty, or NULL */
    int efd;             /* an eventfd written then, or -1 */
} vg_mailbox_t;

/* Prepares mb for items of item_size bytes (> 0). The owner is woken
 * through notify (may be NULL) and/or the eventfd efd (-1 for none; the
 * mailbox reads it in take, never closes it). Returns VG_OK or VG_EIO (the
 * mutex could not be created). Allocates nothing until the first post. */
int vg_mailbox_init(vg_mailbox_t *mb, size_t item_size, vg_mem_tag_t tag, vg_notify_t *notify, int efd);

/* Frees both arrays; items still posted are dropped without a look (take
 * them first if they own something). */
void vg_mailbox_deinit(vg_mailbox_t *mb);

/* Copies n items from items and wakes the owner if the mailbox was empty.
 * Returns VG_OK or VG_ENOMEM (nothing posted). Any thread. */
int vg_mailbox_post(vg_mailbox_t *mb, const void *items, size_t n);

/* Owner only: takes everything posted so far. Returns the number of items;
 * *items points at them and stays valid (and the owner's to modify) until
 * the owner's next take or deinit. Reads the eventfd first (if any), so a
 * post racing with the take always leaves a wake-up behind. */
size_t vg_mailbox_take(vg_mailbox_t *mb, void **items);

/* True if items are waiting: a hint without the lock, exact for the owner
 * in the sense that a post it has been woken for is visible. */
bool vg_mailbox_pending(vg_mailbox_t *mb);

#endif
