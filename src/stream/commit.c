/* commit.c — the stream's committer: group commit rounds, segment writes and syncs.
 *
 * Owns the committer thread of a log and its sync helpers, and everything
 * they alone touch: the batch being written, the encode buffer, the queue of
 * callbacks, each shard's active segment while the log is open (writes,
 * fdatasync per policy, rolls to a new segment), publishing durable sequence
 * numbers, running the callbacks in append order, the disk-full pause and
 * its retries, failing the log, and vg_log_flush (a round led by an
 * appender). When to delete segments is retention.c's; the committer calls
 * it after a round.
 *
 * Group commit: vg_log_append copies the record into the pending batch and
 * returns; the committer swaps that batch for an empty one, encodes it shard
 * by shard (one write per shard per batch, per MiB for larger ones), syncs
 * the written shards (policy), publishes their durable sequence numbers and
 * runs the callbacks in append order. Appends made meanwhile form the next
 * batch, so under load one fdatasync covers many records and when idle a
 * record waits for one fdatasync only. */
#include "stream/log_int.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The committer encodes a shard's records into one buffer of this size and
 * writes it when full: large enough that a write per MiB costs nothing, small
 * enough to stay in cache and not to fault in fresh pages on every batch. */
#define WRITE_CHUNK (1u << 20)
/* --fsync none: the kernel starts writing back every this many bytes. */
#define WRITEBACK_STEP (4u << 20)
/* Rounds one vg_log_flush call leads at most (see there). */
#ifndef FLUSH_ROUNDS
#define FLUSH_ROUNDS 1
#endif
/* Dirty shards from which a round syncs in parallel with helpers. */
#ifndef SYNC_PARALLEL_MIN
#define SYNC_PARALLEL_MIN 3
#endif
/* A write refused for lack of space is retried after 10 ms, doubling up to
 * 1 s: quick to resume when space comes back, one attempt a second while it
 * does not. */
#define DISK_FULL_RETRY_MIN_MS 10u
#define DISK_FULL_RETRY_MAX_MS 1000u
/* vg_log_close while the disk is full keeps retrying this long, then gives
 * up and reports VG_ENOSPC for every record not stored. */
#define DISK_FULL_CLOSE_GRACE_MS 1000u

/* Thread names (15 bytes at most, cut) so top -H and the comm file of each task in /proc
 * show which stream's thread does what. */
static void name_thread(const char *prefix, const char *name)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%s%s", prefix, name);
    pthread_setname_np(pthread_self(), buf);
}

/* Sets the write policy of a shard's active segment (a new or recovered
 * one): zero fill ahead of the data when commits sync, early writeback when
 * they do not. */
void log_seg_policy(const vg_log_t *log, vg_segment_t *seg)
{
    uint64_t step = log->opts.prealloc_bytes;
    vg_segment_preallocate(seg, step == VG_LOG_PREALLOC_OFF || log->opts.fsync == VG_FSYNC_NONE ? 0 : step);
    /* Without a sync per commit, dirty data would pile up for the sync at
     * the roll (segment.h); 4 MiB steps keep that sync short. */
    vg_segment_writeback(seg, log->opts.fsync == VG_FSYNC_NONE ? WRITEBACK_STEP : 0);
}

/* ---- the committer ---- */

static void publish(shard_t *s, uint64_t seq)
{
    atomic_store_explicit(&s->durable, seq, memory_order_release);
}

/* Marks the log failed after a write or sync error: nothing more is written,
 * and what was written but not yet reported stored is cut off again (best
 * effort) so that a restart does not resurrect records whose callbacks were
 * told VG_EIO. */
void log_fail(vg_log_t *log)
{
    log_stat_add(&log->errors, 1);
    if (atomic_exchange(&log->failed, true))
        return;
    if (atomic_exchange(&log->state, VG_LOG_FAILED) == VG_LOG_DISK_FULL)
        log_stat_add(&log->disk_full_ms, (vg_clock_mono_ns() - atomic_load(&log->df_since_ns)) / 1000000u);
    VG_ERROR(MOD,
             "stream %s: a write or sync failed; the log is failed, unsynced records are reported as "
             "not stored and further appends return VG_EIO",
             log->name);
    log->elen = 0;
    log->erecs = 0;
    for (uint32_t i = 0; i < log->nshards; i++) {
        shard_t *s = &log->shards[i];
        /* Best effort (it logs its own failure): if the disk refuses this
         * too, recovery at the next open cuts what does not check. */
        if (s->seg.fd >= 0 && (s->seg.size > s->ok_size || s->torn)) {
            uint64_t cut = s->seg.size - s->ok_size;
            if (vg_segment_truncate(&s->seg, s->ok_size, s->ok_seq + 1) == VG_OK)
                atomic_fetch_sub_explicit(&log->stored_bytes, cut, memory_order_relaxed);
        }
        s->dirty = false;
    }
    pthread_mutex_lock(&log->mu);
    pthread_cond_broadcast(&log->space_cv);
    pthread_mutex_unlock(&log->mu);
}

/* After a successful fdatasync of s: what was written is durable. */
static void synced(shard_t *s)
{
    s->dirty = false;
    s->ok_size = s->seg.size;
    s->ok_seq = s->written_seq;
    publish(s, s->written_seq);
}

static int sync_shard(vg_log_t *log, shard_t *s)
{
    log_stat_add(&log->fsyncs, 1);
    int rc = vg_segment_sync(&s->seg);
    if (rc == VG_OK)
        synced(s);
    return rc;
}

/* Takes shards of the current round until none is left. Only the I/O and
 * sync_rc happen here; the committer applies the results after the round. */
static void sync_work(vg_log_t *log)
{
    for (;;) {
        size_t k = atomic_fetch_add(&log->sync_next, 1);
        if (k >= log->nsync)
            return;
        shard_t *s = &log->shards[log->synclist[k]];
        log_stat_add(&log->fsyncs, 1);
        s->sync_rc = vg_segment_sync(&s->seg);
    }
}

/* A helper works only with a ticket: the committer hands out one per extra
 * dirty shard (at most nhelpers) and signals that many, so a round with two
 * dirty shards wakes one helper, not all of them. */
void *log_sync_helper_main(void *arg)
{
    vg_log_t *log = arg;
    name_thread("vg-sync-", log->name);
    pthread_mutex_lock(&log->sync_mu);
    for (;;) {
        while (log->sync_tickets == 0 && !log->sync_stop)
            pthread_cond_wait(&log->sync_go, &log->sync_mu);
        if (log->sync_stop)
            break;
        log->sync_tickets--;
        log->sync_active++;
        pthread_mutex_unlock(&log->sync_mu);
        sync_work(log);
        pthread_mutex_lock(&log->sync_mu);
        if (--log->sync_active == 0)
            pthread_cond_signal(&log->sync_done);
    }
    pthread_mutex_unlock(&log->sync_mu);
    return NULL;
}

void log_stop_helpers(vg_log_t *log)
{
    if (!log->nhelpers)
        return;
    pthread_mutex_lock(&log->sync_mu);
    log->sync_stop = true;
    pthread_cond_broadcast(&log->sync_go);
    pthread_mutex_unlock(&log->sync_mu);
    for (unsigned i = 0; i < log->nhelpers; i++)
        pthread_join(log->helpers[i], NULL);
    log->nhelpers = 0;
}

/* Writes the encode buffer, which holds records of shard s, to its
 * segment. next is the batch entry after the last one in the buffer: once
 * written, s->head moves there (where a write paused by a full disk
 * resumes). On failure the buffer is dropped all the same; a retry encodes
 * the entries again from s->head. */
static int flush_shard(vg_log_t *log, shard_t *s, size_t next)
{
    if (!log->elen)
        return VG_OK;
    int rc = vg_segment_write(&s->seg, log->ebuf, log->elen, log->erecs);
    size_t n = log->elen;
    log->elen = 0;
    log->erecs = 0;
    if (rc != VG_OK) {
        s->torn = true;
        return rc;
    }
    s->head = next;
    log_stat_add(&log->bytes_written, n);
    log_stat_add(&log->stored_bytes, n);
    s->written_seq = log->elast;
    s->dirty = true;
    s->last_write_ms = log->round_ms;
    if (atomic_load_explicit(&s->oldest_ms, memory_order_relaxed) == INT64_MIN)
        atomic_store_explicit(&s->oldest_ms, log->efirst_ms, memory_order_relaxed);
    if (!s->active_first_ms) {
        s->active_first_ms = log->round_ms;
        if (log->opts.retention_ms && s->active_first_ms + log_roll_age_ms(log) < log->trim_due_ms)
            log->trim_due_ms = s->active_first_ms + log_roll_age_ms(log);
    }
    if (log->opts.fsync == VG_FSYNC_NONE) {
        s->ok_size = s->seg.size;
        s->ok_seq = s->written_seq;
        publish(s, s->written_seq);
    }
    return VG_OK;
}

/* Finishes the active segment (written, synced whatever the policy, so that
 * only the newest segment of a shard can ever have a torn tail) and starts
 * the next one at first_seq. next: as for flush_shard. VG_ENOSPC when the
 * disk is full (the current segment stays active, nothing is lost). */
int log_roll(vg_log_t *log, uint32_t idx, uint64_t first_seq, size_t next)
{
    shard_t *s = &log->shards[idx];
    int rc = flush_shard(log, s, next);
    if (rc == VG_OK && s->dirty)
        rc = sync_shard(log, s);
    if (rc != VG_OK)
        return rc;
    if (log_reserve(&s->segs, &s->capsegs, s->nsegs + 1, sizeof *s->segs, 16) != VG_OK)
        return VG_ENOMEM;
    /* The new segment first: if it cannot be created the current one stays
     * active and intact, and the roll can be tried again. */
    int64_t now = vg_clock_wall_ms();
    vg_segment_t fresh;
    if ((rc = vg_segment_create(log->io, s->dir, idx, first_seq, now, &fresh)) != VG_OK) {
        if (rc != VG_ENOSPC)
            VG_ERROR(MOD, "stream %s shard %u: cannot start segment %" PRIu64 ": %s", log->name, idx, first_seq,
                     vg_strerror(rc));
        return rc;
    }
    log_seg_policy(log, &fresh);
    seginfo_t *done = &s->segs[s->nsegs - 1];
    done->bytes = s->seg.size;
    done->newest_ms = s->last_write_ms ? s->last_write_ms : now;
    vg_segment_seal(&s->seg);
    vg_segment_close(&s->seg);
    s->seg = fresh;
    s->ok_size = s->seg.size;
    s->segs[s->nsegs++] = (seginfo_t){.first = first_seq, .created_ms = now, .newest_ms = 0, .bytes = VG_SEG_HDR};
    s->active_first_ms = 0;
    s->last_write_ms = 0;
    log->finished_segs++;
    log_stat_add(&log->stored_bytes, VG_SEG_HDR);
    if (log->opts.retention_ms && done->newest_ms + (int64_t)log->opts.retention_ms + 1 < log->trim_due_ms)
        log->trim_due_ms = done->newest_ms + (int64_t)log->opts.retention_ms + 1;
    VG_DEBUG(MOD, "stream %s shard %u: new segment at seq %" PRIu64, log->name, idx, first_seq);
    return VG_OK;
}

static size_t deliver(vg_log_t *log);
static void write_rest(vg_log_t *log);

/* Writes the entries of one shard, linked from s->head, through the encode
 * buffer: encoded back to back and written when the buffer is full, when the
 * segment must roll, and at the end, so a shard's part of a batch up to
 * WRITE_CHUNK bytes is one write. Returns VG_OK or the failure. */
static int write_shard(vg_log_t *log, uint32_t idx, const batch_t *b)
{
    shard_t *s = &log->shards[idx];
    const uint64_t seg_bytes = log->opts.segment_bytes;
    int rc;
    for (size_t i = s->head; i != SIZE_MAX; i = log->link[i]) {
        const entry_t *e = &b->v[i];
        size_t size = vg_record_size(e->key_len, e->meta_len, e->value_len);
        uint64_t at = s->seg.size + log->elen;
        if (at >= seg_bytes && at > VG_SEG_HDR && (rc = log_roll(log, idx, e->seq, i)) != VG_OK)
            return rc;
        if (log->elen + size > log->ecap) {
            if ((rc = flush_shard(log, s, i)) != VG_OK)
                return rc;
            size_t want = size > WRITE_CHUNK ? size : WRITE_CHUNK;
            if (want > log->ecap) {
                uint8_t *nb = vg_realloc(VG_MEM_STREAM, log->ebuf, want);
                if (!nb) {
                    VG_ERROR(MOD, "stream %s: out of memory encoding a batch", log->name);
                    return VG_ENOMEM;
                }
                log->ebuf = nb;
                log->ecap = want;
            }
        }
        const uint8_t *p = b->data + e->off;
        vg_record_t r = {.seq = e->seq,
                         .arrival_ms = e->arrival_ms,
                         .key = p,
                         .key_len = e->key_len,
                         .meta = p + e->key_len,
                         .meta_len = e->meta_len,
                         .value = p + e->key_len + e->meta_len,
                         .value_len = e->value_len};
        vg_record_encode(log->ebuf + log->elen, log->ecap - log->elen, &r);
        log->elen += size;
        log->erecs++;
        if (log->erecs == 1)
            log->efirst_ms = e->arrival_ms;
        log->elast = e->seq;
    }
    if ((rc = flush_shard(log, s, SIZE_MAX)) != VG_OK)
        return rc;
    s->head = SIZE_MAX;
    return VG_OK;
}

/* Disk full: the shard whose write failed is cut back to its last complete
 * record (the write may have left part of one), the batch stays where it is
 * and the committer retries it with backoff. */
static void pause_disk_full(vg_log_t *log, uint32_t idx)
{
    shard_t *s = &log->shards[idx];
    if (s->torn) {
        /* A file that cannot even be cut back is not a full disk any more. */
        if (vg_segment_truncate(&s->seg, s->seg.size, s->seg.next_seq) != VG_OK) {
            log_fail(log);
            return;
        }
        s->torn = false;
    }
    if (atomic_load_explicit(&log->state, memory_order_relaxed) == VG_LOG_DISK_FULL)
        return;
    atomic_store(&log->state, VG_LOG_DISK_FULL);
    atomic_store(&log->df_since_ns, vg_clock_mono_ns());
    log_stat_add(&log->disk_full_pauses, 1);
    log->df_backoff_ms = DISK_FULL_RETRY_MIN_MS;
    VG_WARN(MOD,
            "stream %s shard %u: the disk is full; writing paused, nothing is lost: records wait (their callbacks "
            "too) and appends block past max_pending_bytes; retrying with backoff up to %u ms",
            log->name, idx, DISK_FULL_RETRY_MAX_MS);
    /* Expired segments may be all the space there is to free. */
    log_trim(log);
}

/* Writes what is left of log->wbatch, shard by shard from log->wnext, each
 * from its s->head. On a full disk it stops there (the batch stays in
 * wbatch, to be resumed); otherwise the batch is done: emptied, wbatch
 * cleared, and a paused log is running again. */
static void write_rest(vg_log_t *log)
{
    batch_t *b = log->wbatch;
    for (; log->wnext < log->ntouched; log->wnext++) {
        uint32_t idx = log->touched[log->wnext];
        if (atomic_load_explicit(&log->failed, memory_order_relaxed))
            continue;
        int rc = write_shard(log, idx, b);
        if (rc == VG_ENOSPC) {
            log->elen = 0;
            log->erecs = 0;
            pause_disk_full(log, idx);
            if (!atomic_load_explicit(&log->failed, memory_order_relaxed))
                return;
        } else if (rc != VG_OK) {
            log_fail(log);
        }
    }
    log->ntouched = 0;
    log->wnext = 0;
    log->wbatch = NULL;
    b->n = 0;
    b->len = 0;
    log->elen = 0;
    log->erecs = 0;
    /* Keep the buffer cache-sized; one huge record must not pin 16 MiB. */
    if (log->ecap > WRITE_CHUNK) {
        vg_free(log->ebuf);
        log->ebuf = NULL;
        log->ecap = 0;
    }
    if (atomic_load_explicit(&log->state, memory_order_relaxed) == VG_LOG_DISK_FULL) {
        uint64_t ms = (vg_clock_mono_ns() - atomic_load(&log->df_since_ns)) / 1000000u;
        log_stat_add(&log->disk_full_ms, ms);
        atomic_store(&log->state, VG_LOG_OK);
        VG_INFO(MOD, "stream %s: disk space is back after %" PRIu64 " ms; writing resumed", log->name, ms);
    }
}

/* Writes batch b shard by shard (rolling segments as they fill) and queues
 * every entry for its callback, written or not. Returns pending bytes
 * released by callbacks it had to run itself. */
static size_t write_batch(vg_log_t *log, batch_t *b)
{
    if (log_reserve(&log->waiting, &log->capwaiting, log->nwaiting + b->n, sizeof *log->waiting, 1024) != VG_OK ||
        log_reserve(&log->link, &log->caplink, b->n, sizeof *log->link, 1024) != VG_OK) {
        /* Without room to remember callbacks nothing more can be reported
         * stored: fail the log and report this batch at once, after the
         * older entries, to keep append order. */
        VG_ERROR(MOD, "stream %s: out of memory in the committer", log->name);
        log_fail(log);
        size_t released = deliver(log);
        for (size_t i = 0; i < b->n; i++) {
            const entry_t *e = &b->v[i];
            released += vg_record_size(e->key_len, e->meta_len, e->value_len);
            if (e->done)
                e->done(e->ctx, VG_EIO, e->shard, e->seq, e->token);
        }
        return released;
    }
    /* Link each shard's entries in append order (= sequence order). */
    for (size_t i = 0; i < b->n; i++) {
        const entry_t *e = &b->v[i];
        shard_t *s = &log->shards[e->shard];
        log->waiting[log->nwaiting++] = (cb_t){.done = e->done,
                                               .ctx = e->ctx,
                                               .token = e->token,
                                               .seq = e->seq,
                                               .shard = e->shard,
                                               .size = (uint32_t)vg_record_size(e->key_len, e->meta_len, e->value_len)};
        log->link[i] = SIZE_MAX;
        if (!s->touched) {
            s->touched = true;
            s->head = i;
            log->touched[log->ntouched++] = e->shard;
        } else {
            log->link[s->tail] = i;
        }
        s->tail = i;
    }
    for (size_t k = 0; k < log->ntouched; k++)
        log->shards[log->touched[k]].touched = false;
    log->wbatch = b;
    log->wnext = 0;
    write_rest(log);
    return 0;
}

/* fdatasyncs every shard written since its last sync, in parallel when
 * there are several, then publishes what became durable. */
static void sync_dirty(vg_log_t *log)
{
    if (atomic_load_explicit(&log->failed, memory_order_relaxed))
        return;
    size_t n = 0;
    for (uint32_t i = 0; i < log->nshards; i++)
        if (log->shards[i].dirty)
            log->synclist[n++] = i;
    if ((n >= 1 && n < SYNC_PARALLEL_MIN) || (n > 1 && log->nhelpers == 0)) {
        for (size_t k = 0; k < n; k++)
            if (sync_shard(log, &log->shards[log->synclist[k]]) != VG_OK) {
                log_fail(log);
                break;
            }
    } else if (n > 1) {
        unsigned want = (unsigned)(n - 1) < log->nhelpers ? (unsigned)(n - 1) : log->nhelpers;
        pthread_mutex_lock(&log->sync_mu);
        log->nsync = n;
        atomic_store(&log->sync_next, 0);
        log->sync_tickets = want;
        for (unsigned k = 0; k < want; k++)
            pthread_cond_signal(&log->sync_go);
        pthread_mutex_unlock(&log->sync_mu);
        sync_work(log);
        pthread_mutex_lock(&log->sync_mu);
        /* Helpers that have not started yet are not needed any more: the
         * list is done. Wait only for those in the middle of a sync. */
        log->sync_tickets = 0;
        while (log->sync_active)
            pthread_cond_wait(&log->sync_done, &log->sync_mu);
        pthread_mutex_unlock(&log->sync_mu);
        /* Publish every shard that synced before failing the log for one
         * that did not: those records are durable and get VG_OK. */
        bool bad = false;
        for (size_t k = 0; k < n; k++) {
            shard_t *s = &log->shards[log->synclist[k]];
            if (s->sync_rc == VG_OK)
                synced(s);
            else
                bad = true;
        }
        if (bad)
            log_fail(log);
    }
    /* Only a real sync starts a new interval: a round that found nothing
     * dirty (a retention wake-up) must not hold back the next record. */
    if (n)
        log->last_sync_ns = vg_clock_mono_ns();
}

/* Runs the callbacks of the longest prefix of waiting entries whose fate is
 * known (durable, or the log failed), in append order. Returns the bytes to
 * release from pending_bytes. */
static size_t deliver(vg_log_t *log)
{
    bool failed = atomic_load(&log->failed);
    size_t i = 0, released = 0;
    uint64_t ok = 0;
    for (; i < log->nwaiting; i++) {
        const cb_t *c = &log->waiting[i];
        int status;
        if (c->seq <= atomic_load_explicit(&log->shards[c->shard].durable, memory_order_relaxed))
            status = VG_OK;
        else if (failed)
            status = log->fail_status;
        else
            break;
        ok += status == VG_OK;
        released += c->size;
        if (c->done)
            c->done(c->ctx, status, c->shard, c->seq, c->token);
    }
    if (i) {
        memmove(log->waiting, log->waiting + i, (log->nwaiting - i) * sizeof *log->waiting);
        log->nwaiting -= i;
    }
    log_stat_add(&log->committed, ok);
    return released;
}

/* Tells vg_log_wait sleepers and the watchers of every shard whose durable
 * sequence number moved since the last round. The common case — nobody in
 * vg_log_wait — costs one atomic load; a watched shard that moved costs one
 * uncontended lock per round plus its watchers' callbacks. */
static void wake_waiters(vg_log_t *log)
{
    if (atomic_load_explicit(&log->nwatch_total, memory_order_relaxed)) {
        bool locked = false;
        for (uint32_t i = 0; i < log->nshards; i++) {
            shard_t *s = &log->shards[i];
            uint64_t d = atomic_load_explicit(&s->durable, memory_order_relaxed);
            if (d == s->notified)
                continue;
            s->notified = d;
            if (!locked) {
                pthread_mutex_lock(&log->watch_mu);
                locked = true;
            }
            const struct watcher *wv = &log->watch[(size_t)i * VG_LOG_WATCHERS];
            for (unsigned k = 0; k < log->nwatch[i]; k++)
                wv[k].fn(wv[k].ctx, i, d);
        }
        if (locked)
            pthread_mutex_unlock(&log->watch_mu);
    }
    pthread_mutex_lock(&log->wait_mu);
    if (log->waiters)
        pthread_cond_broadcast(&log->durable_cv);
    pthread_mutex_unlock(&log->wait_mu);
}

/* One round: write batch b (may be NULL), sync per policy (always when
 * final), publish, wake waiters, run the callbacks that are due, then
 * retention if it is due. */
static size_t commit_round(vg_log_t *log, batch_t *b, bool final)
{
    size_t released = 0;
    log->round_ms = vg_clock_wall_ms();
    if (b) {
        released = write_batch(log, b);
        log_stat_add(&log->commits, 1);
        if (!log->wbatch) {
            b->n = 0;
            b->len = 0;
        }
    } else if (log->wbatch) {
        log_stat_add(&log->disk_full_retries, 1);
        write_rest(log);
    }
    bool sync;
    switch (log->opts.fsync) {
    case VG_FSYNC_INTERVAL:
        sync = final || vg_clock_mono_ns() >= log->last_sync_ns + (uint64_t)log->opts.fsync_interval_ms * 1000000u;
        break;
    case VG_FSYNC_NONE:
        sync = final;
        break;
    default:
        sync = true;
        break;
    }
    if (sync)
        sync_dirty(log);
    wake_waiters(log);
    released += deliver(log);
    if (!final && log_trim_wanted(log, vg_clock_wall_ms()))
        log_trim(log);
    return released;
}

/* Close while the disk is still full: what is written gets synced and
 * reported stored; every other record — the paused batch and all appended
 * after it — is reported VG_ENOSPC (not stored), in append order. */
static size_t give_up(vg_log_t *log)
{
    sync_dirty(log);
    size_t lost = log->pending.n;
    for (size_t i = 0; i < log->nwaiting; i++) {
        const cb_t *c = &log->waiting[i];
        lost += c->seq > atomic_load_explicit(&log->shards[c->shard].durable, memory_order_relaxed);
    }
    VG_ERROR(MOD,
             "stream %s: closed while the disk was still full (retried for %u ms); %zu records were not stored, "
             "their callbacks get VG_ENOSPC",
             log->name, DISK_FULL_CLOSE_GRACE_MS, lost);
    log->fail_status = VG_ENOSPC;
    atomic_store(&log->failed, true);
    if (atomic_exchange(&log->state, VG_LOG_FAILED) == VG_LOG_DISK_FULL)
        log_stat_add(&log->disk_full_ms, (vg_clock_mono_ns() - atomic_load(&log->df_since_ns)) / 1000000u);
    write_rest(log); /* failed: only empties the paused batch */
    size_t released = deliver(log);
    /* The batch appended during the pause goes the same way. */
    released += commit_round(log, &log->pending, true);
    return released;
}

/* When the committer must wake for retention, as a CLOCK_MONOTONIC time
 * for its timed wait (UINT64_MAX: never). Retention ages are wall-clock
 * times; the conversion is redone after every wake, so a clock step costs
 * at most one early or late look. */
static int64_t trim_due_eff_ms(const vg_log_t *log)
{
    int64_t due = log->trim_due_ms;
    if (log->opts.retention_bytes && log->finished_segs &&
        atomic_load_explicit(&log->stored_bytes, memory_order_relaxed) > log->opts.retention_bytes)
        due = INT64_MIN;
    if (due < log->trim_hold_ms)
        due = log->trim_hold_ms;
    return due;
}

static uint64_t trim_wake_ns(const vg_log_t *log)
{
    int64_t due = trim_due_eff_ms(log);
    if (due == INT64_MAX)
        return UINT64_MAX;
    int64_t wall = vg_clock_wall_ms();
    uint64_t now = vg_clock_mono_ns();
    return due <= wall ? now : now + (uint64_t)(due - wall) * 1000000u;
}

/* After a round: release the callbacks' bytes and let the next round
 * start. Caller holds mu. */
static void round_done_locked(vg_log_t *log, size_t released)
{
    log->pending_bytes -= released;
    if (released && log->space_waiters)
        pthread_cond_broadcast(&log->space_cv);
    log->round_busy = false;
}

void *log_committer_main(void *arg)
{
    vg_log_t *log = arg;
    name_thread("vg-log-", log->name);
    size_t released;
    pthread_mutex_lock(&log->mu);
    for (;;) {
        if (log->round_busy) {
            /* A vg_log_flush leader is in a round; it signals at the end
             * if there is work for us (INT64_MAX: any retention deadline
             * is news, as we have not looked at it yet). */
            log->csleep_due_ms = INT64_MAX;
            pthread_cond_wait(&log->work_cv, &log->mu);
            continue;
        }
        if (log->wbatch) {
            /* Disk full: retry the paused batch after the backoff. The wait
             * is on work_cv, so close interrupts it; a new batch's first
             * append may wake it early, and it sleeps again. Appends keep
             * queuing in the other batch meanwhile (until they block on
             * max_pending_bytes); vg_log_flush leads no round meanwhile. */
            uint64_t now = vg_clock_mono_ns();
            if (log->closing && now >= log->closing_ns + DISK_FULL_CLOSE_GRACE_MS * 1000000ull)
                break;
            if (now < log->df_retry_ns) {
                uint64_t until = log->df_retry_ns;
                if (log->closing && until > log->closing_ns + DISK_FULL_CLOSE_GRACE_MS * 1000000ull)
                    until = log->closing_ns + DISK_FULL_CLOSE_GRACE_MS * 1000000ull;
                struct timespec ts = log_ts_of_ns(until);
                pthread_cond_timedwait(&log->work_cv, &log->mu, &ts);
                continue;
            }
            log->round_busy = true;
            pthread_mutex_unlock(&log->mu);
            released = commit_round(log, NULL, false);
            if (log->wbatch) {
                log->df_retry_ns = vg_clock_mono_ns() + (uint64_t)log->df_backoff_ms * 1000000u;
                log->df_backoff_ms = log->df_backoff_ms * 2 > DISK_FULL_RETRY_MAX_MS ? DISK_FULL_RETRY_MAX_MS
                                                                                      : log->df_backoff_ms * 2;
            }
            pthread_mutex_lock(&log->mu);
            round_done_locked(log, released);
            continue;
        }
        if (log->pending.n == 0) {
            if (log->closing)
                break;
            /* Idle: sleep until new records, the next interval sync of
             * written records, or the next retention deadline — whichever
             * comes first; with none of them, without a timeout. */
            uint64_t due = trim_wake_ns(log);
            if (log->nwaiting && log->opts.fsync == VG_FSYNC_INTERVAL) {
                uint64_t sync_due = log->last_sync_ns + (uint64_t)log->opts.fsync_interval_ms * 1000000u;
                if (sync_due < due)
                    due = sync_due;
            }
            if (due != UINT64_MAX && vg_clock_mono_ns() >= due) {
                log->round_busy = true;
                pthread_mutex_unlock(&log->mu);
                released = commit_round(log, NULL, false);
                pthread_mutex_lock(&log->mu);
                round_done_locked(log, released);
                continue;
            }
            /* A leader's rounds can bring the next expiry forward (a new
             * segment, a roll): it compares with this and wakes us. */
            log->csleep_due_ms = trim_due_eff_ms(log);
            if (due == UINT64_MAX) {
                pthread_cond_wait(&log->work_cv, &log->mu);
            } else {
                struct timespec ts = log_ts_of_ns(due);
                pthread_cond_timedwait(&log->work_cv, &log->mu, &ts);
            }
            continue;
        }
        /* Take the whole pending batch; appends made while this one is
         * written and synced accumulate in the other (group commit). */
        batch_t t = log->pending;
        log->pending = log->committing;
        log->committing = t;
        log->round_busy = true;
        pthread_mutex_unlock(&log->mu);
        released = commit_round(log, &log->committing, false);
        if (log->wbatch)
            log->df_retry_ns = vg_clock_mono_ns() + (uint64_t)log->df_backoff_ms * 1000000u;
        pthread_mutex_lock(&log->mu);
        round_done_locked(log, released);
    }
    pthread_mutex_unlock(&log->mu);
    released = 0;
    if (log->wbatch)
        released += give_up(log);
    released += commit_round(log, NULL, true);
    pthread_mutex_lock(&log->mu);
    log->pending_bytes -= released;
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

int vg_log_flush(vg_log_t *log)
{
    if (!log || log->readonly)
        return VG_EINVAL;
    pthread_mutex_lock(&log->mu);
    if (log->round_busy || log->pending.n == 0 || log->closing || log->wbatch ||
        atomic_load_explicit(&log->failed, memory_order_relaxed)) {
        /* Busy: the running round hands over at its end. Closing, paused
         * on a full disk or failed: the committer's rounds deal with it. */
        if (log->pending.n && !log->round_busy)
            pthread_cond_signal(&log->work_cv);
        pthread_mutex_unlock(&log->mu);
        return VG_AGAIN;
    }
    /* Lead up to FLUSH_ROUNDS rounds back to back: records other threads
     * append during a round are then committed here too, which costs them
     * one wake for their callbacks instead of the committer's wake, its
     * fdatasync and then their wake. More rounds would hold this caller's
     * own work back for too long under load; the committer takes over. */
    for (int round = 0; round < FLUSH_ROUNDS; round++) {
        batch_t t = log->pending;
        log->pending = log->committing;
        log->committing = t;
        log->round_busy = true;
        pthread_mutex_unlock(&log->mu);
        size_t released = commit_round(log, &log->committing, false);
        if (log->wbatch) /* paused on a full disk: the committer retries after the backoff */
            log->df_retry_ns = vg_clock_mono_ns() + (uint64_t)log->df_backoff_ms * 1000000u;
        pthread_mutex_lock(&log->mu);
        round_done_locked(log, released);
        if (log->pending.n == 0 || log->closing || log->wbatch ||
            atomic_load_explicit(&log->failed, memory_order_relaxed))
            break;
    }
    /* Records appended during this round, or written ones waiting for an
     * interval sync: the committer thread takes them, so that this caller
     * goes back to its own work after one round. The committer also waits
     * here while a leader runs, so it needs the signal to go on. */
    if (log->pending.n || log->closing || log->wbatch || (log->nwaiting && log->opts.fsync == VG_FSYNC_INTERVAL) ||
        trim_due_eff_ms(log) < log->csleep_due_ms)
        pthread_cond_signal(&log->work_cv);
    pthread_mutex_unlock(&log->mu);
    return VG_OK;
}
