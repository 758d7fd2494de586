/* registry_bg.c — the registry's two background threads.
 *
 * The flusher writes last-seen times. It sleeps on a condition variable
 * until the touch queue becomes non-empty (touch signals only that
 * transition), then waits touch_flush_ms more so that every device seen
 * in that window goes into the same transaction, and flushes: one wake-up
 * and one transaction per batch, nothing while no device connects.
 *
 * The watcher follows other processes' writes. It sleeps in poll(2) on an
 * inotify descriptor watching the database's directory and on an eventfd
 * that close uses to stop it; no timeout. Events for the database file
 * (IN_ATTRIB: the post-commit poke every registry writer makes, see
 * registry.c; IN_MODIFY, IN_CLOSE_WRITE: a writer that did not poke) or
 * its -wal file wake it; it drains all pending events, then refreshes
 * once, so a burst of writes costs one refresh. Its own process's writes
 * wake it too; the refresh then finds the counter unchanged and costs one
 * query.
 *
 * Owns: the threads and the inotify and eventfd descriptors. */
#include "sec/registry_int.h"

#include "core/diag.h"
#include "core/err.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

/* ---- flusher --------------------------------------------------------------- */

static void *flusher_main(void *arg)
{
    vg_registry_t *reg = arg;
    pthread_mutex_lock(&reg->q_mu);
    while (!reg->q_stop) {
        if (reg->q_len == 0) {
            pthread_cond_wait(&reg->q_cond, &reg->q_mu);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += reg->flush_ms / 1000;
        until.tv_nsec += (long)(reg->flush_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!reg->q_stop && pthread_cond_timedwait(&reg->q_cond, &reg->q_mu, &until) != ETIMEDOUT)
            ;
        if (reg->q_stop)
            break; /* close flushes what is left */
        pthread_mutex_unlock(&reg->q_mu);
        vg_registry_flush(reg);
        pthread_mutex_lock(&reg->q_mu);
    }
    pthread_mutex_unlock(&reg->q_mu);
    return NULL;
}

int reg_flusher_start(vg_registry_t *reg)
{
    if (pthread_create(&reg->flusher, NULL, flusher_main, reg) != 0) {
        VG_ERROR(REG_MOD, "cannot start the last-seen writer thread");
        return VG_EIO;
    }
    reg->flusher_on = true;
    return VG_OK;
}

/* ---- watcher --------------------------------------------------------------- */

/* Whether an inotify event names the database or its WAL. */
static bool is_ours(const vg_registry_t *reg, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return true; /* events were lost: refresh to be sure */
    if (!ev->len)
        return false;
    const char *base = strrchr(reg->path, '/');
    base = base ? base + 1 : reg->path;
    size_t n = strlen(base);
    return strncmp(ev->name, base, n) == 0 && (ev->name[n] == '\0' || strcmp(ev->name + n, "-wal") == 0);
}

static void *watcher_main(void *arg)
{
    vg_registry_t *reg = arg;
    /* Aligned as inotify(7) asks. */
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct pollfd pf[2] = {{.fd = reg->watch_ifd, .events = POLLIN}, {.fd = reg->watch_stopfd, .events = POLLIN}};
    for (;;) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            VG_ERROR(REG_MOD, "watcher: poll: %s", strerror(errno));
            break;
        }
        if (pf[1].revents)
            break;
        bool changed = false;
        ssize_t n;
        while ((n = read(reg->watch_ifd, buf, sizeof buf)) > 0) {
            for (char *p = buf; p < buf + n;) {
                const struct inotify_event *ev = (const struct inotify_event *)p;
                changed |= is_ours(reg, ev);
                p += sizeof *ev + ev->len;
            }
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            VG_ERROR(REG_MOD, "watcher: read: %s", strerror(errno));
            break;
        }
        if (changed && vg_registry_refresh(reg, reg->watch_fn, reg->watch_ctx) != VG_OK)
            VG_WARN(REG_MOD, "%s: refresh failed; trying again at the next change", reg->path);
    }
    return NULL;
}

int vg_registry_watch_start(vg_registry_t *reg, vg_registry_change_fn fn, void *ctx)
{
    if (reg->watching)
        return VG_EEXIST;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", reg->path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    reg->watch_ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    reg->watch_stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (reg->watch_ifd < 0 || reg->watch_stopfd < 0 ||
        inotify_add_watch(reg->watch_ifd, dir, IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_MOVED_TO | IN_CREATE) < 0) {
        VG_ERROR(REG_MOD, "%s: cannot watch %s: %s", reg->path, dir, strerror(errno));
        goto fail;
    }
    reg->watch_fn = fn;
    reg->watch_ctx = ctx;
    if (pthread_create(&reg->watcher, NULL, watcher_main, reg) != 0) {
        VG_ERROR(REG_MOD, "cannot start the registry watcher thread");
        goto fail;
    }
    reg->watching = true;
    /* Changes made before the watch existed are picked up now. */
    vg_registry_refresh(reg, fn, ctx);
    return VG_OK;
fail:
    if (reg->watch_ifd >= 0)
        close(reg->watch_ifd);
    if (reg->watch_stopfd >= 0)
        close(reg->watch_stopfd);
    reg->watch_ifd = reg->watch_stopfd = -1;
    return VG_EIO;
}

void reg_bg_stop(vg_registry_t *reg)
{
    if (reg->watching) {
        uint64_t one = 1;
        if (write(reg->watch_stopfd, &one, sizeof one) != sizeof one)
            VG_ERROR(REG_MOD, "cannot stop the watcher: %s", strerror(errno));
        pthread_join(reg->watcher, NULL);
        reg->watching = false;
    }
    if (reg->watch_ifd >= 0)
        close(reg->watch_ifd);
    if (reg->watch_stopfd >= 0)
        close(reg->watch_stopfd);
    reg->watch_ifd = reg->watch_stopfd = -1;
    if (reg->flusher_on) {
        pthread_mutex_lock(&reg->q_mu);
        reg->q_stop = true;
        pthread_cond_broadcast(&reg->q_cond);
        pthread_mutex_unlock(&reg->q_mu);
        pthread_join(reg->flusher, NULL);
        reg->flusher_on = false;
    }
}
