/* log.h — a named, sharded, durable, replayable stream (Kinesis semantics).
 *
 * Owns: the stream's directory, MANIFEST, segment files per shard, sequence
 * numbers, the group-commit thread (write + fdatasync per policy), recovery
 * of torn tails at open, readers. Does not own: what the bytes mean.
 *
 * Layout under data_dir:
 *   stream/<name>/MANIFEST                 shard count and hash ranges (text)
 *   stream/<name>/<shard>/<first-seq>.seg  segments (format: segment.c)
 *
 * Threads: vg_log_append may be called from any thread. One committer thread
 * per log (or, with flush_commits, the appender that calls vg_log_flush
 * while the log is idle) takes the pending batch, writes it to the shards' active segments,
 * fdatasyncs them (policy), publishes the new durable sequence numbers, then
 * calls each record's done callback IN APPEND ORDER (per log) on the thread
 * that ran the round (the committer, or a vg_log_flush leader). Readers see only durable records (with policy none: written ones).
 *
 * Retention: the committer deletes whole segments, oldest first, never a
 * shard's active one — by age (retention_ms: a segment goes once its newest
 * record is that old) and by the stream's total size (retention_bytes). An
 * active segment whose first record is older than retention_ms / 8 is
 * finished (rolled) so that slow shards expire too: a record is deleted
 * between retention_ms and 1.125 x retention_ms after it was written. The
 * lowest stored sequence number per shard (vg_log_first_seq, the trim
 * horizon) moves up; readers left behind it resume there and say how many
 * records they missed (vg_log_reader_skipped). Ages are wall-clock times: a
 * clock stepped forward deletes early, one stepped back deletes late.
 *
 * A full disk is a pause, not a failure: when a write, a segment creation
 * or anything else the committer writes is refused with ENOSPC or EDQUOT,
 * the partial write is cut back, the records stay queued with their
 * callbacks unreported, state becomes VG_LOG_DISK_FULL, retention is tried
 * (expired segments may be the space to free) and the write is retried
 * after 10 ms, doubling up to 1 s. Appends keep queuing until
 * max_pending_bytes, then block. When a retry succeeds everything continues
 * in order: nothing lost, duplicated or reordered, sequence numbers
 * contiguous. Any failed fdatasync of records (EIO, ENOSPC too: the page cache can
 * no longer be trusted) and any other write error still fail the log for
 * good (VG_LOG_FAILED). */
#ifndef VG_STREAM_LOG_H
#define VG_STREAM_LOG_H

#include "stream/record.h"
#include "stream/shardmap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vg_seg_io;

typedef enum { VG_FSYNC_ALWAYS = 0, VG_FSYNC_INTERVAL, VG_FSYNC_NONE } vg_fsync_policy_t;

typedef struct {
    uint32_t shards;            /* used when creating; an existing stream keeps its MANIFEST count */
    vg_fsync_policy_t fsync;    /* default ALWAYS */
    uint32_t fsync_interval_ms; /* for VG_FSYNC_INTERVAL */
    uint64_t segment_bytes;     /* roll segments past this size (default 64 MiB) */
    size_t max_pending_bytes;   /* appends block while this much awaits commit (default 64 MiB) */
    /* Leader commit: appends do not wake the committer; the appender calls
     * vg_log_flush after its batch of appends (an I/O worker does, before it
     * sleeps) and, if no round is running, commits on its own thread. */
    bool flush_commits;
    const struct vg_seg_io *io; /* file operations (stream/segment.h); NULL = the real system calls. Set by
                                   tests to inject short writes and failed syncs. Not owned; must outlive the log. */
    uint64_t retention_ms;      /* delete segments whose records are all older; 0 = keep forever (default) */
    uint64_t retention_bytes;   /* delete the oldest segments while the stream is larger; 0 = no cap (default) */
    /* Zeros written ahead of the data in the active segment, this many bytes
     * at a time, so that a commit's fdatasync flushes data without a journal
     * commit (vg_segment_preallocate says why and what it measured). 0 =
     * default (1 MiB), VG_LOG_PREALLOC_OFF = plain appends. Not used with
     * VG_FSYNC_NONE (nothing to speed up). */
    uint64_t prealloc_bytes;
} vg_log_opts_t;

#define VG_LOG_PREALLOC_OFF UINT64_MAX

void vg_log_opts_default(vg_log_opts_t *o);

typedef struct vg_log vg_log_t;

/* Called on the committer thread once the record is durable (status VG_OK)
 * or has failed (negative status: the record must then be treated as not
 * stored): VG_EIO when a write or fdatasync failed, VG_ENOSPC when the log
 * was closed while the disk was still full. A full disk by itself only
 * delays the call. Must not block for long and must not call vg_log_append
 * on the same log with a full queue. */
typedef void (*vg_log_done_fn)(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token);

/* Opens (creating if needed) stream `name` under data_dir, recovers every
 * shard's last segment (truncating a torn tail, logging what was cut),
 * starts the committer thread. On success *out is owned by the caller and is
 * released with vg_log_close. */
int vg_log_open(const char *data_dir, const char *name, const vg_log_opts_t *opts, vg_log_t **out);

/* Opens an existing stream for reading only (another process may be
 * writing it): no committer, no recovery, no writes. Readers on it see every
 * complete, CRC-valid record present in the files. VG_ENOTFOUND if absent. */
int vg_log_open_readonly(const char *data_dir, const char *name, vg_log_t **out);

/* Commits everything pending (callbacks run), stops the committer, fsyncs,
 * closes files and frees the log. NULL is accepted. If the disk is full it
 * keeps retrying for up to 1 s, then gives up: every record not stored by
 * then gets VG_ENOSPC (and is not in the files), so close never hangs on a
 * disk that stays full. */
void vg_log_close(vg_log_t *log);

uint32_t vg_log_shard_count(const vg_log_t *log);
const char *vg_log_name(const vg_log_t *log);
/* Shard a partition key maps to (MD5 hash-key ranges from MANIFEST). */
uint32_t vg_log_shard_for_key(const vg_log_t *log, const void *key, size_t len);
void vg_log_shard_range(const vg_log_t *log, uint32_t shard, vg_hashkey_t *start, vg_hashkey_t *end);

/* Appends one record: copies key/meta/value, assigns shard and sequence
 * number (returned in *shard / *seq, may be NULL), and queues it for the next
 * group commit. done (may be NULL) is called once with ctx and token.
 * Blocks while max_pending_bytes are already waiting (backpressure; counted
 * in stats.append_waits) — also while the disk is full, once that much has
 * queued up. Returns VG_OK, VG_ETOOBIG for a record over the limits,
 * VG_ECLOSED after close began, VG_EIO if the log has failed. */
int vg_log_append(vg_log_t *log, const void *key, size_t key_len, const void *meta, size_t meta_len,
                  const void *value, size_t value_len, int64_t arrival_ms, vg_log_done_fn done, void *ctx,
                  uint64_t token, uint32_t *shard, uint64_t *seq);

/* Like vg_log_append but the caller picks the shard (used when a derived
 * stream must line up with its source's shards). */
int vg_log_append_shard(vg_log_t *log, uint32_t shard, const void *key, size_t key_len, const void *meta,
                        size_t meta_len, const void *value, size_t value_len, int64_t arrival_ms, vg_log_done_fn done,
                        void *ctx, uint64_t token, uint64_t *seq);

/* Commits what is pending on the calling thread when no commit round is
 * running (the caller becomes the round's leader: it writes, fdatasyncs per
 * policy, publishes, calls watchers and runs the done callbacks that are
 * due, in append order, on this thread); otherwise returns at once and the
 * round in progress hands the records to the committer thread when it
 * ends. So at low load an event costs no thread hand-off at all, and under
 * load the committer thread runs back-to-back rounds as before.
 * Why: on small VMs a context switch costs more than the record's work;
 * with a committer thread each lone event paid two hand-offs (wake the
 * committer, wake the worker back for its PUBACK). The price: the caller
 * blocks for one fdatasync. Returns VG_OK if it led a round, VG_AGAIN if
 * there was nothing to do or another round was running. Any thread may
 * call it; its done callbacks must tolerate running on the caller. */
int vg_log_flush(vg_log_t *log);

/* Highest durable sequence number of shard (0 = none yet), and the lowest
 * still stored (0 if empty): the trim horizon, which retention moves up. */
uint64_t vg_log_durable_seq(vg_log_t *log, uint32_t shard);
uint64_t vg_log_first_seq(vg_log_t *log, uint32_t shard);

/* Arrival time (the record's arrival_ms) of the oldest record stored in
 * shard, INT64_MIN if the shard holds none. A read-only log reads it from
 * the files on every call. */
int64_t vg_log_oldest_ms(vg_log_t *log, uint32_t shard);

/* The stream's retention: a writer's options, or for a read-only log what
 * the writer recorded at its last open (file RETENTION). False (and zeros)
 * when a read-only log finds no record of it. 0 means "no limit". */
bool vg_log_retention(const vg_log_t *log, uint64_t *retention_ms, uint64_t *retention_bytes);

/* Blocks until shard's durable seq > after_seq, the log closes, or
 * timeout_ms passes. Returns VG_OK (new data), VG_AGAIN (timeout),
 * VG_ECLOSED. */
int vg_log_wait(vg_log_t *log, uint32_t shard, uint64_t after_seq, int timeout_ms);

/* Watchers: how consumers learn that a shard has new durable records
 * without polling and without a broadcast to every reader of the log.
 *
 * fn is called on the committer thread once per group commit in which
 * shard's durable sequence number advanced, with that number, after the
 * records are readable and before the round's done callbacks run. It must
 * be quick and must not block or call back into this log (post a
 * vg_notify_t, or curl_multi_wakeup). At most VG_LOG_WATCHERS per shard.
 * vg_log_unwatch returns once fn can no longer be running or called for
 * that (fn, ctx) pair. A consumer registers first and then reads up to
 * vg_log_durable_seq, so that nothing made durable in between is missed.
 * Returns VG_OK, VG_ELIMIT when the shard has its
 * maximum of watchers, VG_EINVAL on a read-only log or a bad shard. */
#define VG_LOG_WATCHERS 16
typedef void (*vg_log_watch_fn)(void *ctx, uint32_t shard, uint64_t durable_seq);
int vg_log_watch(vg_log_t *log, uint32_t shard, vg_log_watch_fn fn, void *ctx);
void vg_log_unwatch(vg_log_t *log, uint32_t shard, vg_log_watch_fn fn, void *ctx);

/* Health of a writing log (vg_log_stats_t.state). */
typedef enum {
    VG_LOG_OK = 0,
    VG_LOG_DISK_FULL, /* writes refused for lack of space (ENOSPC/EDQUOT): paused, retrying; nothing lost */
    VG_LOG_FAILED     /* a write or sync failed otherwise: appends return VG_EIO until reopened */
} vg_log_state_t;

/* "ok", "disk_full", "failed". */
const char *vg_log_state_name(int state);

typedef struct {
    uint64_t appended;      /* records accepted by append */
    uint64_t committed;     /* records made durable */
    uint64_t commits;       /* group commits (batches) */
    uint64_t fsyncs;        /* fdatasync calls */
    uint64_t bytes_written;
    uint64_t append_waits;  /* appends that blocked on max_pending_bytes */
    uint64_t errors;        /* failed writes / syncs */
    uint64_t truncated_bytes; /* cut from torn tails at open */
    uint64_t pending_bytes;  /* now waiting */
    uint64_t stored_bytes;     /* size of all the stream's segment files */
    uint64_t trimmed_segments; /* segments deleted by retention (since open) */
    uint64_t trimmed_records;
    uint64_t trimmed_bytes;
    uint64_t trim_errors;    /* segments that could not be deleted (retried later) */
    uint64_t reader_skipped; /* records readers missed because retention deleted them first */
    int64_t oldest_ms;       /* arrival time of the oldest stored record, INT64_MIN if none */
    uint64_t oldest_age_ms;  /* now - oldest_ms (0 if none) */
    int state;                  /* vg_log_state_t */
    uint64_t disk_full_pauses;  /* times writing paused for lack of space */
    uint64_t disk_full_retries; /* write attempts made while paused */
    uint64_t disk_full_ms;      /* total time paused, the current pause included */
} vg_log_stats_t;

void vg_log_stats(vg_log_t *log, vg_log_stats_t *out);

typedef struct vg_log_reader vg_log_reader_t;

/* A cursor over one shard. start_seq: first sequence number wanted; 0 means
 * the oldest stored (TRIM_HORIZON); UINT64_MAX means after the newest durable
 * record at open time (LATEST). */
int vg_log_reader_open(vg_log_t *log, uint32_t shard, uint64_t start_seq, vg_log_reader_t **out);

/* Reads the next record into *rec (pointers valid until the next call or
 * close). Returns VG_OK, or VG_AGAIN when no further durable record exists
 * yet (call vg_log_wait, then again), VG_ECORRUPT / VG_EIO on a damaged
 * file. Crosses segment boundaries by itself. A reader whose next record
 * was deleted by retention (opened at, or fallen behind to, a sequence
 * number below the trim horizon) continues at the horizon: the records in
 * between are counted in vg_log_reader_skipped and a warning is logged once
 * per jump. A segment already open keeps being read after its deletion. */
int vg_log_reader_next(vg_log_reader_t *r, vg_record_t *rec);

/* Records this reader skipped because retention deleted them before it got
 * there (0 for a reader that never fell behind). Opening at 0 (TRIM_HORIZON)
 * skips nothing. */
uint64_t vg_log_reader_skipped(const vg_log_reader_t *r);
void vg_log_reader_close(vg_log_reader_t *r);

/* Names of the streams under data_dir (stream/<name>/MANIFEST exists).
 * Calls fn once per name. */
int vg_log_list(const char *data_dir, void (*fn)(void *ctx, const char *name), void *ctx);

#endif
