/* mailbox.c — see mailbox.h. */
#include "core/mailbox.h"

#include "core/err.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* The first array holds this many items; it doubles from there. */
#define MAILBOX_MIN_ITEMS 16

int vg_mailbox_init(vg_mailbox_t *mb, size_t item_size, vg_mem_tag_t tag, vg_notify_t *notify, int efd)
{
    memset(mb, 0, sizeof *mb);
    mb->size = item_size ? item_size : 1;
    mb->tag = tag;
    mb->notify = notify;
    mb->efd = efd;
    atomic_init(&mb->pending, 0);
    return pthread_mutex_init(&mb->mu, NULL) == 0 ? VG_OK : VG_EIO;
}

void vg_mailbox_deinit(vg_mailbox_t *mb)
{
    if (!mb)
        return;
    vg_free(mb->items);
    vg_free(mb->spare);
    pthread_mutex_destroy(&mb->mu);
    mb->items = mb->spare = NULL;
    mb->len = mb->cap = mb->spare_cap = 0;
}

static void wake(vg_mailbox_t *mb)
{
    if (mb->notify)
        vg_notify_post(mb->notify);
    if (mb->efd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(mb->efd, &one, sizeof one);
        (void)r; /* EAGAIN: the counter is already non-zero, a wake-up is pending */
    }
}

int vg_mailbox_post(vg_mailbox_t *mb, const void *items, size_t n)
{
    if (n == 0)
        return VG_OK;
    pthread_mutex_lock(&mb->mu);
    if (n > SIZE_MAX / 2 / mb->size - mb->len) {
        pthread_mutex_unlock(&mb->mu);
        return VG_ENOMEM;
    }
    if (mb->len + n > mb->cap) {
        size_t cap = mb->cap ? mb->cap : MAILBOX_MIN_ITEMS;
        while (cap < mb->len + n)
            cap *= 2;
        unsigned char *ni = vg_realloc(mb->tag, mb->items, cap * mb->size);
        if (!ni) {
            pthread_mutex_unlock(&mb->mu);
            return VG_ENOMEM;
        }
        mb->items = ni;
        mb->cap = cap;
    }
    bool was_empty = mb->len == 0;
    memcpy(mb->items + mb->len * mb->size, items, n * mb->size);
    mb->len += n;
    atomic_store_explicit(&mb->pending, mb->len, memory_order_release);
    pthread_mutex_unlock(&mb->mu);
    /* Outside the lock: the woken owner's first act is to take it. */
    if (was_empty)
        wake(mb);
    return VG_OK;
}

size_t vg_mailbox_take(vg_mailbox_t *mb, void **items)
{
    if (mb->efd >= 0) {
        /* Before the swap: a post after it finds the mailbox empty and
         * writes again; reading after the swap could eat that wake-up. */
        uint64_t v;
        ssize_t r = read(mb->efd, &v, sizeof v);
        (void)r;
    }
    pthread_mutex_lock(&mb->mu);
    unsigned char *got = mb->items;
    size_t n = mb->len, cap = mb->cap;
    mb->items = mb->spare;
    mb->cap = mb->spare_cap;
    mb->len = 0;
    atomic_store_explicit(&mb->pending, 0, memory_order_relaxed);
    mb->spare = got;
    mb->spare_cap = cap;
    pthread_mutex_unlock(&mb->mu);
    *items = got;
    return n;
}

bool vg_mailbox_pending(vg_mailbox_t *mb)
{
    return atomic_load_explicit(&mb->pending, memory_order_acquire) != 0;
}
