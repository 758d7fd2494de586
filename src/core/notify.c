/* notify.c — futex-based wake-up word (see notify.h for why).
 *
 * The owner announces that it will sleep (sleeping = 1) and then looks at
 * posted once more; a poster sets posted = 1 and then looks at sleeping.
 * Both pairs are sequentially consistent, so at least one side sees the
 * other's store (Dekker): either the owner finds the post and does not
 * sleep, or the poster sees the sleeper and issues FUTEX_WAKE. A post that
 * lands between the owner's last look and its FUTEX_WAIT makes the wait
 * return at once, because the kernel compares the word with 0 first. */
#include "core/notify.h"

#include "core/clock.h"
#include "core/err.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void vg_notify_init(vg_notify_t *n)
{
    atomic_store(&n->posted, 0);
    atomic_store(&n->sleeping, 0);
}

void vg_notify_post(vg_notify_t *n)
{
    if (atomic_exchange(&n->posted, 1) != 0)
        return; /* already posted: the owner has a wake-up coming */
    if (atomic_load(&n->sleeping))
        (void)syscall(SYS_futex, &n->posted, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

int vg_notify_wait(vg_notify_t *n, int64_t timeout_ms)
{
    if (atomic_exchange(&n->posted, 0) != 0)
        return VG_OK;
    if (timeout_ms == 0)
        return VG_AGAIN;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        atomic_store(&n->sleeping, 1);
        if (atomic_exchange(&n->posted, 0) != 0) {
            atomic_store(&n->sleeping, 0);
            return VG_OK;
        }
        struct timespec rel, *tp = NULL;
        if (deadline != UINT64_MAX) {
            uint64_t now = vg_clock_mono_ns();
            if (now >= deadline) {
                atomic_store(&n->sleeping, 0);
                return VG_AGAIN;
            }
            uint64_t left = deadline - now;
            rel.tv_sec = (time_t)(left / 1000000000u);
            rel.tv_nsec = (long)(left % 1000000000u);
            tp = &rel;
        }
        /* Returns 0 on a wake, EAGAIN if posted was already 1, ETIMEDOUT or
         * EINTR: each case loops back to look at posted and the clock. */
        (void)syscall(SYS_futex, &n->posted, FUTEX_WAIT_PRIVATE, 0, tp, NULL, 0);
        atomic_store(&n->sleeping, 0);
        if (atomic_exchange(&n->posted, 0) != 0)
            return VG_OK;
    }
}
