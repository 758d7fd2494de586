/* retention.c — the stream's retention: deleting old segments, the trim horizon.
 *
 * Owns the decision which segments of a stream to delete and when, run by
 * the committer (commit.c) after a round or when the next expiry is due:
 * rolling active segments past their roll age, unlinking expired segments
 * and those over the size cap, moving each shard's horizon; and the public
 * questions about it (vg_log_first_seq, vg_log_oldest_ms, vg_log_retention).
 *
 * Retention: every shard keeps, in memory, the list of its segments with,
 * for each, when its newest record was written (a finished segment's
 * newest_ms: the time of its last write, or, for segments found at open,
 * the creation time of its successor, which was created after that write)
 * and its size. After a commit round, or when a timer set to the next
 * segment's expiry fires (never periodically), the committer removes the
 * oldest segments of each shard whose newest_ms is older than
 * now - retention_ms, then, while the stream is larger than
 * retention_bytes, the oldest finished segment of any shard. Removal is
 * unlink, fsync of the shard directory, then the horizon (shard.first)
 * moves up. The active segment is never removed; it is rolled once its
 * first record is retention_ms / 8 old so that a quiet shard expires too.
 * A crash between unlink and directory fsync can bring a segment back; it
 * is removed again after the restart. */
#include "stream/log_int.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

#include <inttypes.h>
#include <string.h>

/* ---- retention ---- */

int64_t log_first_arrival(vg_log_t *log, uint32_t i, uint64_t first_seq)
{
    vg_seg_reader_t r;
    vg_record_t rec;
    int64_t t = INT64_MIN;
    if (vg_seg_reader_open(log->io, log->shards[i].dir, i, first_seq, &r) != VG_OK)
        return INT64_MIN;
    if (vg_seg_reader_next(&r, &rec) == VG_OK)
        t = rec.arrival_ms;
    vg_seg_reader_close(&r);
    return t;
}

/* Age at which an active segment is finished so that retention can delete
 * it later: a record then lives at most retention_ms * 9 / 8. */
int64_t log_roll_age_ms(const vg_log_t *log)
{
    uint64_t a = log->opts.retention_ms / 8;
    return a ? (int64_t)a : 1;
}

/* True if log_trim() has something to do now: a segment's expiry or roll age
 * has come, or the stream is over its size cap with a segment to spare. */
bool log_trim_wanted(const vg_log_t *log, int64_t now)
{
    if (now < log->trim_hold_ms)
        return false;
    if (now >= log->trim_due_ms)
        return true;
    return log->opts.retention_bytes && log->finished_segs &&
           atomic_load_explicit(&log->stored_bytes, memory_order_relaxed) > log->opts.retention_bytes;
}

/* Removes the oldest segment of shard i (never the active one), adding
 * its size to *bytes. The caller fsyncs the directory, moves the horizon
 * and only then counts it in the stats, so that whoever sees the counters
 * move sees the horizon moved. */
static int remove_oldest(vg_log_t *log, uint32_t i, uint64_t *bytes)
{
    shard_t *s = &log->shards[i];
    const seginfo_t *g = &s->segs[0];
    int rc = vg_seg_remove(log->io, s->dir, g->first);
    if (rc != VG_OK && rc != VG_ENOTFOUND) {
        log_stat_add(&log->trim_errors, 1);
        return rc;
    }
    *bytes += g->bytes;
    memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof *s->segs);
    s->nsegs--;
    log->finished_segs--;
    return VG_OK;
}

/* Committer: rolls active segments past their roll age, deletes expired
 * segments and, while over the size cap, the oldest finished ones; then
 * computes when it is next needed. */
void log_trim(vg_log_t *log)
{
    const int64_t retention = (int64_t)log->opts.retention_ms;
    const uint64_t cap = log->opts.retention_bytes;
    int64_t now = vg_clock_wall_ms();
    uint64_t before[VG_SHARDS_MAX], removed_bytes[VG_SHARDS_MAX], removed_segs[VG_SHARDS_MAX];
    bool failed_rm = false;
    for (uint32_t i = 0; i < log->nshards; i++) {
        before[i] = log->shards[i].segs[0].first;
        removed_bytes[i] = removed_segs[i] = 0;
    }
    if (retention) {
        for (uint32_t i = 0; i < log->nshards; i++) {
            shard_t *s = &log->shards[i];
            if (atomic_load_explicit(&log->failed, memory_order_relaxed) || log->wbatch || s->seg.fd < 0 || s->torn)
                break;
            if (!s->active_first_ms || now - s->active_first_ms < log_roll_age_ms(log))
                continue;
            int rc = log_roll(log, i, s->seg.next_seq, SIZE_MAX);
            if (rc == VG_EIO && s->dirty) {
                log_fail(log); /* its fdatasync failed: the page cache can no longer be trusted */
                break;
            }
            if (rc != VG_OK) {
                /* Cannot start a new segment now (full disk, ...): the
                 * current one stays active; try again one roll age later. */
                VG_WARN(MOD, "stream %s shard %u: cannot finish the active segment for retention: %s", log->name, i,
                        vg_strerror(rc));
                s->active_first_ms = now;
            }
        }
        for (uint32_t i = 0; i < log->nshards && !failed_rm; i++) {
            shard_t *s = &log->shards[i];
            /* Strictly older: with millisecond clocks, equal may still be
             * up to a millisecond short of retention. */
            while (s->nsegs >= 2 && s->segs[0].newest_ms + retention < now) {
                if (remove_oldest(log, i, &removed_bytes[i]) != VG_OK) {
                    failed_rm = true;
                    break;
                }
                removed_segs[i]++;
            }
        }
    }
    uint64_t stored = atomic_load_explicit(&log->stored_bytes, memory_order_relaxed);
    for (uint32_t i = 0; i < log->nshards; i++)
        stored -= removed_bytes[i];
    while (cap && !failed_rm && stored > cap) {
        /* The oldest finished segment of the whole stream. */
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < log->nshards; i++) {
            const shard_t *s = &log->shards[i];
            if (s->nsegs >= 2 && (best == UINT32_MAX || s->segs[0].newest_ms < log->shards[best].segs[0].newest_ms))
                best = i;
        }
        uint64_t b = 0;
        if (best == UINT32_MAX || remove_oldest(log, best, &b) != VG_OK)
            break;
        removed_bytes[best] += b;
        removed_segs[best]++;
        stored -= b;
    }
    for (uint32_t i = 0; i < log->nshards; i++) {
        shard_t *s = &log->shards[i];
        uint64_t first = s->segs[0].first;
        if (first == before[i])
            continue;
        /* The horizon moves only once the removal is on disk, so that a
         * restart never shows records a reader was told were gone. A failed
         * directory sync is logged by vg_seg_fsync_dir; the names are gone
         * either way, so the horizon moves all the same. */
        if (vg_seg_fsync_dir(log->io, s->dir) != VG_OK)
            log_stat_add(&log->trim_errors, 1);
        atomic_store_explicit(&s->first, first, memory_order_release);
        atomic_store_explicit(&s->oldest_ms, log_first_arrival(log, i, first), memory_order_relaxed);
        atomic_fetch_sub_explicit(&log->stored_bytes, removed_bytes[i], memory_order_relaxed);
        log_stat_add(&log->trimmed_segments, removed_segs[i]);
        log_stat_add(&log->trimmed_records, first - before[i]);
        log_stat_add(&log->trimmed_bytes, removed_bytes[i]);
        VG_INFO(MOD, "stream %s shard %u: retention removed records %" PRIu64 "..%" PRIu64 "; horizon now %" PRIu64,
                log->name, i, before[i], first - 1, first);
    }
    if (failed_rm) {
        /* A segment that cannot be unlinked now will likely not be one
         * millisecond later either: look again in 10 s, not in a loop. */
        log->trim_hold_ms = now + 10000;
        VG_WARN(MOD, "stream %s: retention could not remove a segment; retrying in 10 s", log->name);
    }
    int64_t due = INT64_MAX;
    if (retention) {
        for (uint32_t i = 0; i < log->nshards; i++) {
            const shard_t *s = &log->shards[i];
            if (s->nsegs >= 2 && s->segs[0].newest_ms + retention + 1 < due)
                due = s->segs[0].newest_ms + retention + 1;
            if (!atomic_load_explicit(&log->failed, memory_order_relaxed) && s->active_first_ms &&
                s->active_first_ms + log_roll_age_ms(log) < due)
                due = s->active_first_ms + log_roll_age_ms(log);
        }
    }
    log->trim_due_ms = due;
}

uint64_t vg_log_first_seq(vg_log_t *log, uint32_t shard)
{
    if (!log || shard >= log->nshards)
        return 0;
    uint64_t first = atomic_load(&log->shards[shard].first);
    if (log->readonly) {
        uint64_t *firsts = NULL;
        size_t n = 0;
        first = 0;
        if (vg_seg_list(log->io, log->shards[shard].dir, false, &firsts, &n) == VG_OK && n)
            first = firsts[0];
        vg_free(firsts);
    }
    return first && log_durable_of(log, shard) >= first ? first : 0;
}

int64_t vg_log_oldest_ms(vg_log_t *log, uint32_t shard)
{
    if (!log || shard >= log->nshards)
        return INT64_MIN;
    if (!log->readonly)
        return atomic_load_explicit(&log->shards[shard].oldest_ms, memory_order_relaxed);
    uint64_t first = vg_log_first_seq(log, shard);
    return first ? log_first_arrival(log, shard, first) : INT64_MIN;
}

bool vg_log_retention(const vg_log_t *log, uint64_t *retention_ms, uint64_t *retention_bytes)
{
    uint64_t ms = 0, bytes = 0;
    bool known = false;
    if (log && !log->readonly) {
        ms = log->opts.retention_ms;
        bytes = log->opts.retention_bytes;
        known = true;
    } else if (log && log->ro_retention_known) {
        ms = log->ro_retention_ms;
        bytes = log->ro_retention_bytes;
        known = true;
    }
    if (retention_ms)
        *retention_ms = ms;
    if (retention_bytes)
        *retention_bytes = bytes;
    return known;
}
