/* authpool.c — see authpool.h. */
#include "app/authpool.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/heap.h"
#include "core/mailbox.h"
#include "core/notify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#define MAX_THREADS 16

typedef struct {
    int64_t at_ms;
    vg_authpool_job_t *job;
} later_t;

#define LATER_LESS(a, b) ((a).at_ms < (b).at_ms)
VG_HEAP_DEFINE(later_heap, later_t, LATER_LESS, VG_HEAP_NO_INDEX)

struct vg_authpool_thread {
    vg_authpool_t *pool;
    pthread_t thread;
    bool started;
    vg_notify_t notify;
    vg_mailbox_t inbox; /* of vg_authpool_job_t * */
    later_heap_t later; /* owned by the thread */
};

struct vg_authpool {
    uint32_t n;
    atomic_uint next;
    atomic_bool stopping;
    atomic_uint_fast64_t pending;
    vg_authpool_thread_t t[MAX_THREADS];
};

static void run(vg_authpool_thread_t *t, vg_authpool_job_t *job, bool stopping)
{
    atomic_fetch_sub_explicit(&t->pool->pending, 1, memory_order_relaxed);
    job->fn(t, job, stopping);
}

static void *thread_main(void *arg)
{
    vg_authpool_thread_t *t = arg;
    vg_authpool_t *p = t->pool;
    char name[16];
    snprintf(name, sizeof name, "vg-auth%u", (unsigned)(t - p->t));
    pthread_setname_np(pthread_self(), name);
    for (;;) {
        bool stopping = atomic_load_explicit(&p->stopping, memory_order_acquire);
        void *items;
        size_t n = vg_mailbox_take(&t->inbox, &items);
        for (size_t i = 0; i < n; i++)
            run(t, ((vg_authpool_job_t **)items)[i], stopping);
        int64_t now = vg_clock_wall_ms();
        while (t->later.len && (stopping || later_heap_top(&t->later).at_ms <= now)) {
            later_t l = later_heap_pop(&t->later);
            run(t, l.job, stopping);
        }
        if (stopping && !vg_mailbox_pending(&t->inbox) && !t->later.len)
            break;
        int64_t wait = -1;
        if (t->later.len) {
            wait = later_heap_top(&t->later).at_ms - vg_clock_wall_ms();
            if (wait < 0)
                wait = 0;
        }
        vg_notify_wait(&t->notify, stopping ? 0 : wait);
    }
    return NULL;
}

int vg_authpool_new(uint32_t n, vg_authpool_t **out)
{
    *out = NULL;
    if (n < 1 || n > MAX_THREADS)
        return VG_EINVAL;
    vg_authpool_t *p = vg_calloc(VG_MEM_CORE, 1, sizeof *p);
    if (!p)
        return VG_ENOMEM;
    p->n = n;
    for (uint32_t i = 0; i < n; i++) {
        vg_authpool_thread_t *t = &p->t[i];
        t->pool = p;
        vg_notify_init(&t->notify);
        if (vg_mailbox_init(&t->inbox, sizeof(vg_authpool_job_t *), VG_MEM_CORE, &t->notify, -1) != VG_OK ||
            pthread_create(&t->thread, NULL, thread_main, t) != 0) {
            vg_authpool_free(p);
            return VG_EIO;
        }
        t->started = true;
    }
    *out = p;
    return VG_OK;
}

int vg_authpool_submit(vg_authpool_t *p, vg_authpool_job_t *job)
{
    if (atomic_load_explicit(&p->stopping, memory_order_acquire))
        return VG_ECLOSED;
    vg_authpool_thread_t *t = &p->t[atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed) % p->n];
    atomic_fetch_add_explicit(&p->pending, 1, memory_order_relaxed);
    if (vg_mailbox_post(&t->inbox, &job, 1) != VG_OK) {
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_relaxed);
        return VG_ENOMEM;
    }
    return VG_OK;
}

int vg_authpool_later(vg_authpool_thread_t *t, vg_authpool_job_t *job, int64_t at_ms)
{
    later_t l = {.at_ms = at_ms, .job = job};
    if (later_heap_push(&t->later, l, VG_MEM_CORE) != VG_OK)
        return VG_ENOMEM;
    atomic_fetch_add_explicit(&t->pool->pending, 1, memory_order_relaxed);
    return VG_OK;
}

uint64_t vg_authpool_pending(vg_authpool_t *p)
{
    return atomic_load_explicit(&p->pending, memory_order_relaxed);
}

void vg_authpool_free(vg_authpool_t *p)
{
    if (!p)
        return;
    atomic_store_explicit(&p->stopping, true, memory_order_release);
    for (uint32_t i = 0; i < p->n; i++) {
        vg_authpool_thread_t *t = &p->t[i];
        if (!t->started)
            continue;
        vg_notify_post(&t->notify);
        pthread_join(t->thread, NULL);
    }
    for (uint32_t i = 0; i < p->n; i++) {
        vg_authpool_thread_t *t = &p->t[i];
        /* A submit that raced with the stop may have posted after its
         * thread looked for the last time: those run here. */
        if (t->started) {
            void *items;
            size_t n = vg_mailbox_take(&t->inbox, &items);
            for (size_t k = 0; k < n; k++)
                run(t, ((vg_authpool_job_t **)items)[k], true);
        }
        later_heap_free(&t->later);
        vg_mailbox_deinit(&t->inbox);
    }
    vg_free(p);
}
