/* read.c — reading the stream: durable sequence numbers, waiting, watchers, readers.
 *
 * Owns what readers see of a stream: the durable sequence number of each
 * shard (in the writing process the committer publishes it; a read-only log
 * finds it by scanning the newest segment), vg_log_wait, the watchers the
 * committer calls when a shard moves, and readers (vg_log_reader_*), which
 * follow one shard's segments and resume at the horizon when retention
 * deleted what they had not read yet.
 *
 * Durable sequence numbers are atomics written by the committer with release
 * order after the data is written (and synced per policy), so a reader that
 * loads one with acquire order can read everything up to it. Readers hold a
 * pointer to their log and must be closed before it. */
#include "stream/log_int.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

#include <inttypes.h>
#include <string.h>

/* How often a read-only log looks at the files again in vg_log_wait: it has
 * no committer to wake it, and the tail command can afford 10 ms. */
#define RO_POLL_MS 10

/* ---- durable sequence numbers and waiting ---- */

/* Opens the segment after cur (named after the sequence number expected
 * next). VG_ENOTFOUND while there is none — including when cur holds no
 * record yet: an empty segment's successor would carry its own name, and
 * reopening it would loop forever. */
static int open_successor(const vg_log_t *log, const char *dir, uint32_t shard, const vg_seg_reader_t *cur,
                          vg_seg_reader_t *nx)
{
    if (cur->next_seq == cur->first_seq)
        return VG_ENOTFOUND;
    return vg_seg_reader_open(log->io, dir, shard, cur->next_seq, nx);
}

/* Read-only log: follows the newest segment of shard i and returns the last
 * complete, valid sequence number found. Caller holds ro_mu. */
static uint64_t ro_refresh(vg_log_t *log, uint32_t i)
{
    shard_t *s = &log->shards[i];
    if (!s->scan_open) {
        uint64_t *firsts = NULL;
        size_t n = 0;
        if (vg_seg_list(log->io, s->dir, false, &firsts, &n) != VG_OK || n == 0) {
            vg_free(firsts);
            return s->scan_last;
        }
        uint64_t last = firsts[n - 1];
        vg_free(firsts);
        if (vg_seg_reader_open(log->io, s->dir, i, last, &s->scan) != VG_OK)
            return s->scan_last;
        s->scan_open = true;
        s->scan_last = last - 1;
    }
    for (;;) {
        vg_record_t rec;
        int rc = vg_seg_reader_next(&s->scan, &rec);
        if (rc == VG_OK) {
            s->scan_last = rec.seq;
            continue;
        }
        if (rc != VG_AGAIN && rc != VG_ECORRUPT)
            break;
        vg_seg_reader_t nx;
        if (open_successor(log, s->dir, i, &s->scan, &nx) != VG_OK)
            break;
        vg_seg_reader_close(&s->scan);
        s->scan = nx;
    }
    return s->scan_last;
}

uint64_t log_durable_of(vg_log_t *log, uint32_t shard)
{
    if (!log->readonly)
        return atomic_load_explicit(&log->shards[shard].durable, memory_order_acquire);
    pthread_mutex_lock(&log->ro_mu);
    uint64_t d = ro_refresh(log, shard);
    pthread_mutex_unlock(&log->ro_mu);
    return d;
}

uint64_t vg_log_durable_seq(vg_log_t *log, uint32_t shard)
{
    if (!log || shard >= log->nshards)
        return 0;
    return log_durable_of(log, shard);
}

int vg_log_wait(vg_log_t *log, uint32_t shard, uint64_t after_seq, int timeout_ms)
{
    if (!log || shard >= log->nshards)
        return VG_EINVAL;
    /* A negative timeout waits without limit. */
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    if (log->readonly) {
        for (;;) {
            if (log_durable_of(log, shard) > after_seq)
                return VG_OK;
            uint64_t now = vg_clock_mono_ns();
            if (now >= deadline)
                return VG_AGAIN;
            uint64_t step = (uint64_t)RO_POLL_MS * 1000000u;
            if (deadline - now < step)
                step = deadline - now;
            struct timespec ts = log_ts_of_ns(step);
            nanosleep(&ts, NULL);
        }
    }
    int rc;
    shard_t *s = &log->shards[shard];
    pthread_mutex_lock(&log->wait_mu);
    log->waiters++;
    for (;;) {
        if (atomic_load_explicit(&s->durable, memory_order_acquire) > after_seq) {
            rc = VG_OK;
            break;
        }
        if (log->wait_closed) {
            rc = VG_ECLOSED;
            break;
        }
        if (deadline == UINT64_MAX) {
            pthread_cond_wait(&log->durable_cv, &log->wait_mu);
            continue;
        }
        if (vg_clock_mono_ns() >= deadline) {
            rc = VG_AGAIN;
            break;
        }
        struct timespec ts = log_ts_of_ns(deadline);
        pthread_cond_timedwait(&log->durable_cv, &log->wait_mu, &ts);
    }
    log->waiters--;
    if (log->wait_closed)
        pthread_cond_broadcast(&log->durable_cv);
    pthread_mutex_unlock(&log->wait_mu);
    return rc;
}

int vg_log_watch(vg_log_t *log, uint32_t shard, vg_log_watch_fn fn, void *ctx)
{
    if (!log || log->readonly || shard >= log->nshards || !fn)
        return VG_EINVAL;
    int rc = VG_OK;
    pthread_mutex_lock(&log->watch_mu);
    if (log->nwatch[shard] >= VG_LOG_WATCHERS) {
        rc = VG_ELIMIT;
    } else {
        log->watch[(size_t)shard * VG_LOG_WATCHERS + log->nwatch[shard]++] = (struct watcher){fn, ctx};
        atomic_fetch_add(&log->nwatch_total, 1);
    }
    pthread_mutex_unlock(&log->watch_mu);
    return rc;
}

void vg_log_unwatch(vg_log_t *log, uint32_t shard, vg_log_watch_fn fn, void *ctx)
{
    if (!log || log->readonly || shard >= log->nshards)
        return;
    pthread_mutex_lock(&log->watch_mu);
    struct watcher *wv = &log->watch[(size_t)shard * VG_LOG_WATCHERS];
    for (unsigned k = 0; k < log->nwatch[shard]; k++) {
        if (wv[k].fn == fn && wv[k].ctx == ctx) {
            wv[k] = wv[--log->nwatch[shard]];
            atomic_fetch_sub(&log->nwatch_total, 1);
            break;
        }
    }
    pthread_mutex_unlock(&log->watch_mu);
}

/* ---- readers ---- */

struct vg_log_reader {
    vg_log_t *log;
    uint32_t shard;
    uint64_t next_seq; /* next sequence number to return; 0 = the oldest stored */
    uint64_t skipped;  /* records retention deleted before this reader got to them */
    vg_seg_reader_t seg;
    bool open;
};

uint64_t vg_log_reader_skipped(const vg_log_reader_t *r)
{
    return r ? r->skipped : 0;
}

/* The reader wanted r->next_seq but the oldest stored record is horizon. */
static void reader_skip(vg_log_reader_t *r, uint64_t horizon)
{
    uint64_t n = horizon - r->next_seq;
    r->skipped += n;
    log_stat_add(&r->log->reader_skipped, n);
    VG_WARN(MOD,
            "stream %s shard %u: records %" PRIu64 "..%" PRIu64 " were deleted by retention before this reader "
            "read them; continuing at %" PRIu64 " (%" PRIu64 " skipped now, %" PRIu64 " in all)",
            r->log->name, r->shard, r->next_seq, horizon - 1, horizon, n, r->skipped);
    r->next_seq = horizon;
}

int vg_log_reader_open(vg_log_t *log, uint32_t shard, uint64_t start_seq, vg_log_reader_t **out)
{
    *out = NULL;
    if (!log || shard >= log->nshards)
        return VG_EINVAL;
    vg_log_reader_t *r = vg_calloc(VG_MEM_STREAM, 1, sizeof *r);
    if (!r)
        return VG_ENOMEM;
    r->log = log;
    r->shard = shard;
    r->seg.fd = -1;
    /* 0 (TRIM_HORIZON) is raised to the oldest segment's first record when
     * the segment is located; LATEST is fixed now. */
    r->next_seq = start_seq == UINT64_MAX ? log_durable_of(log, shard) + 1 : start_seq;
    *out = r;
    return VG_OK;
}

/* Opens the segment holding r->next_seq: the newest one starting at or
 * before it. A sequence number older than every segment starts at the
 * oldest one (counted as skipped unless the reader asked for the oldest).
 * VG_AGAIN if the shard has no segment yet. */
static int locate(vg_log_reader_t *r)
{
    vg_log_t *log = r->log;
    const char *dir = log->shards[r->shard].dir;
    /* A segment listed and then deleted by retention before it is opened:
     * list again (a few times; each retry means the horizon moved on). */
    for (int attempt = 0;; attempt++) {
        uint64_t *firsts = NULL;
        size_t n = 0;
        int rc = vg_seg_list(log->io, dir, false, &firsts, &n);
        if (rc == VG_ENOTFOUND || (rc == VG_OK && n == 0)) {
            vg_free(firsts);
            return VG_AGAIN;
        }
        if (rc != VG_OK)
            return rc;
        size_t k = 0;
        while (k + 1 < n && firsts[k + 1] <= r->next_seq)
            k++;
        uint64_t first = firsts[k];
        vg_free(firsts);
        rc = vg_seg_reader_open(log->io, dir, r->shard, first, &r->seg);
        if (rc == VG_ENOTFOUND && attempt < 8)
            continue;
        if (rc == VG_ENOTFOUND)
            return VG_AGAIN;
        if (rc != VG_OK)
            return rc;
        if (r->next_seq == 0)
            r->next_seq = first;
        else if (r->next_seq < first)
            reader_skip(r, first);
        r->open = true;
        return VG_OK;
    }
}

/* The reader is at the end of its segment and the successor it expects is
 * missing. If retention deleted it (the oldest segment now starts later),
 * moves the reader to the oldest segment and returns true. */
static bool behind_horizon(vg_log_reader_t *r)
{
    vg_log_t *log = r->log;
    uint64_t *firsts = NULL;
    size_t n = 0;
    bool behind = false;
    uint64_t at = r->seg.next_seq;
    if (vg_seg_list(log->io, log->shards[r->shard].dir, false, &firsts, &n) == VG_OK && n && firsts[0] > at)
        behind = true;
    vg_free(firsts);
    if (!behind)
        return false;
    vg_seg_reader_close(&r->seg);
    r->open = false;
    if (r->next_seq < at)
        r->next_seq = at;
    return true;
}

/* True if shard has a segment starting after seq and none starting at it.
 * A read-only reader uses it to tell a record still being written (nothing
 * newer exists yet) from a damaged or missing one (the writer has finished
 * this segment and moved on). */
static bool newer_segment(vg_log_t *log, uint32_t shard, uint64_t seq)
{
    uint64_t *firsts = NULL;
    size_t n = 0;
    bool newer = false;
    if (vg_seg_list(log->io, log->shards[shard].dir, false, &firsts, &n) == VG_OK && n && firsts[n - 1] > seq) {
        newer = true;
        for (size_t i = 0; i < n; i++)
            newer &= firsts[i] != seq;
    }
    vg_free(firsts);
    return newer;
}

int vg_log_reader_next(vg_log_reader_t *r, vg_record_t *rec)
{
    vg_log_t *log = r->log;
    const char *dir = log->shards[r->shard].dir;
    int rc;
    bool reread = false;
    if (!r->open && (rc = locate(r)) != VG_OK)
        return rc;
    for (;;) {
        /* In the writing process only durable records are shown; their bytes
         * were written before the durable number was published. */
        uint64_t durable = UINT64_MAX;
        if (!log->readonly && r->next_seq > (durable = log_durable_of(log, r->shard)))
            return VG_AGAIN;
        rc = vg_seg_reader_next(&r->seg, rec);
        if (rc == VG_OK) {
            if (rec->seq < r->next_seq)
                continue; /* before the requested start */
            r->next_seq = rec->seq + 1;
            return VG_OK;
        }
        if (rc != VG_AGAIN && rc != VG_ECORRUPT)
            return rc;
        /* Nothing more in this segment for now. Segments are named after
         * their first record, so the next one, if it exists, is called after
         * the sequence number expected next, and its existence means this
         * one is finished. */
        vg_seg_reader_t nx;
        int orc = open_successor(log, dir, r->shard, &r->seg, &nx);
        if (orc == VG_OK) {
            vg_seg_reader_close(&r->seg);
            r->seg = nx;
            continue;
        }
        if (orc != VG_ENOTFOUND)
            return orc;
        if (log->readonly) {
            if (!newer_segment(log, r->shard, r->seg.next_seq))
                return VG_AGAIN; /* a writer may be in the middle of a record */
            /* The segment was finished before the newer one was created:
             * read it once more before calling what is missing damaged. */
            if (!reread) {
                reread = true;
                continue;
            }
        }
        if (rc == VG_AGAIN && (log->readonly || r->seg.next_seq <= durable) && behind_horizon(r)) {
            /* locate() counts the skip and opens the oldest segment. */
            if ((rc = locate(r)) != VG_OK)
                return rc;
            reread = false;
            continue;
        }
        if (log->readonly || rc == VG_ECORRUPT || r->seg.next_seq <= durable) {
            VG_ERROR(MOD, "stream %s shard %u: record %" PRIu64 " is missing or damaged", log->name, r->shard,
                     r->seg.next_seq);
            return VG_ECORRUPT;
        }
        return VG_AGAIN;
    }
}

void vg_log_reader_close(vg_log_reader_t *r)
{
    if (!r)
        return;
    vg_seg_reader_close(&r->seg);
    vg_free(r);
}
