/* log_int.h — what the files of the stream log share (internal to src/stream).
 *
 * Owns the in-memory shape of one open stream: struct vg_log, its shards
 * (shard_t), the batches appenders fill and the committer writes (batch_t,
 * entry_t), the callback queue (cb_t) and retention's view of a segment
 * (seginfo_t); and the few functions that one file of the log calls in
 * another, each prefixed log_ (everything else in those files is static).
 * The files, one noun each:
 *   log.c        the facade: paths, MANIFEST and RETENTION files, open and
 *                close (recovery at open), append, stats, listing streams
 *   commit.c     the committer: rounds, writing and syncing shards, segment
 *                rolls, the disk-full pause, failing the log, leader flush
 *   retention.c  retention: rolling for age, deleting segments, the horizon
 *   read.c       durable sequence numbers, vg_log_wait, watchers, readers
 * Nothing outside those four files includes it.
 *
 * Threads and locks:
 *   committer  one per log; alone touches segments, the encode buffer and
 *              the callback queue.
 *   helpers    up to SYNC_PARALLEL - 1 per log; only fdatasync the shards
 *              the committer hands them in a round (sync_mu).
 *   mu         the pending batch, next sequence numbers, pending_bytes,
 *              closing; appenders hold it only to copy their record in.
 *   wait_mu    vg_log_wait sleepers on durable_cv.
 *   ro_mu      the tail scanners of a read-only log.
 * Durable sequence numbers: read.c says how they are published and read. */
#ifndef VG_STREAM_LOG_INT_H
#define VG_STREAM_LOG_INT_H

#include "stream/log.h"
#include "stream/segment.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MOD "stream"
/* Shards synced at the same time (the committer plus helpers). fdatasync of
 * several files one after another pays one device flush each; issued
 * together they share flushes (4 shards: 4-6x faster per round measured on
 * ext4/virtio), which bounds commit latency when many shards are busy. */
#define SYNC_PARALLEL 8

/* A record waiting in a batch: its bytes (key, meta, value) are at
 * data[off..) of the batch. */
typedef struct {
    uint64_t seq;
    int64_t arrival_ms;
    size_t off;
    uint32_t shard;
    uint32_t key_len, meta_len, value_len;
    vg_log_done_fn done;
    void *ctx;
    uint64_t token;
} entry_t;

typedef struct {
    entry_t *v;
    size_t n, cap;
    uint8_t *data;
    size_t len, dcap;
} batch_t;

/* One segment of a shard, as retention sees it. */
typedef struct {
    uint64_t first;     /* sequence number of its first record (its name) */
    int64_t created_ms; /* from its header */
    int64_t newest_ms;  /* finished segments: every record was written by then */
    uint64_t bytes;     /* finished segments: file size (the active one: seg.size) */
} seginfo_t;

/* A written (or abandoned) record whose callback has not run yet. */
typedef struct {
    vg_log_done_fn done;
    void *ctx;
    uint64_t token;
    uint64_t seq;
    uint32_t shard;
    uint32_t size; /* encoded bytes, released from pending_bytes when delivered */
} cb_t;

typedef struct {
    char *dir;
    vg_hashkey_t start, end;
    _Atomic uint64_t durable; /* highest durable seq (policy none: written) */
    _Atomic uint64_t first;   /* first seq of the oldest segment */
    uint64_t next_seq;        /* next to assign; under mu */
    /* Committer only. ok_size/ok_seq: what may have been reported stored,
     * the point a failed write or sync is cut back to. */
    vg_segment_t seg;
    uint64_t ok_size, ok_seq;
    uint64_t written_seq;
    bool dirty;        /* written since the last fdatasync */
    bool torn;         /* a write failed: the file may hold a partial tail past seg.size */
    int sync_rc;       /* result of this round's fdatasync (helpers write it) */
    bool touched;      /* has records in the batch being written */
    uint64_t notified; /* durable seq the watchers were last told about (committer only) */
    size_t head, tail; /* its first and last entry in that batch */
    /* Retention, committer only: the shard's segments oldest first, the
     * active one last (nsegs >= 1 once open). */
    seginfo_t *segs;
    size_t nsegs, capsegs;
    int64_t active_first_ms;   /* wall time of the first write into the active segment; 0 = none yet */
    int64_t last_write_ms;     /* wall time of the last write into the active segment */
    _Atomic int64_t oldest_ms; /* arrival_ms of the oldest stored record; INT64_MIN = none */
    /* Read-only log: a scanner following the newest segment; under ro_mu. */
    vg_seg_reader_t scan;
    bool scan_open;
    uint64_t scan_last;
} shard_t;

struct vg_log {
    char *name;
    char *dir; /* <data_dir>/stream/<name> */
    bool readonly;
    uint32_t nshards;
    shard_t *shards;
    vg_log_opts_t opts;
    const vg_seg_io_t *io;
    bool prims;
    int lock_fd; /* the stream directory, flock()ed by the one writer; -1 if none */

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* committer: records pending, or closing */
    pthread_cond_t space_cv; /* appenders: pending_bytes fell, or closing / failed */
    pthread_cond_t idle_cv;  /* close: the last appender left */
    batch_t pending;
    size_t pending_bytes; /* appended, callback not yet run */
    unsigned inflight;    /* appenders inside append */
    unsigned space_waiters;
    bool closing;
    bool round_busy; /* a commit round runs (committer or a vg_log_flush leader) */
    int64_t csleep_due_ms; /* retention deadline the idle committer sleeps until (INT64_MAX: none) */
    uint64_t closing_ns; /* when close began (mono) */
    atomic_bool failed;
    int fail_status; /* what callbacks of unstored records get once failed: VG_EIO, or VG_ENOSPC (closed while full) */
    atomic_int state; /* vg_log_state_t */

    pthread_t committer;
    bool committer_started;
    batch_t committing;
    /* Disk full (committer only): the batch whose writing paused, resumed
     * at touched[wnext] (each shard from its s->head); NULL when none. */
    batch_t *wbatch;
    size_t wnext;
    unsigned df_backoff_ms;
    uint64_t df_retry_ns; /* next retry (mono) */
    _Atomic uint64_t df_since_ns; /* when the current pause began */
    cb_t *waiting; /* in append order */
    size_t nwaiting, capwaiting;
    uint32_t *touched; /* shards of the batch, in order of first appearance */
    size_t ntouched;
    size_t *link; /* per batch entry: the next entry of the same shard */
    size_t caplink;
    uint8_t *ebuf; /* encoded records of one shard, written when full */
    size_t elen, ecap;
    uint64_t erecs, elast;
    int64_t efirst_ms; /* arrival_ms of the first record in ebuf */
    uint64_t last_sync_ns;

    /* Sync helpers: each round the committer lists the dirty shards in
     * synclist; helpers and committer take entries through sync_next. */
    pthread_t helpers[SYNC_PARALLEL - 1];
    unsigned nhelpers;
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_go;   /* helpers: a new round, or stop */
    pthread_cond_t sync_done; /* committer: the last helper finished */
    unsigned sync_tickets; /* helpers still wanted for this round (not yet started) */
    unsigned sync_active;  /* helpers that took a ticket and have not finished */
    bool sync_stop;
    uint32_t *synclist;
    size_t nsync;
    atomic_size_t sync_next;

    pthread_mutex_t wait_mu;
    pthread_cond_t durable_cv;
    unsigned waiters;
    bool wait_closed;

    pthread_mutex_t ro_mu;

    /* Watchers per shard (vg_log_watch): nshards * VG_LOG_WATCHERS entries.
     * watch_mu is held while they are called, so unwatch can wait them out;
     * the committer takes it once per round that advanced a watched shard. */
    pthread_mutex_t watch_mu;
    struct watcher {
        vg_log_watch_fn fn;
        void *ctx;
    } *watch;
    uint8_t *nwatch; /* per shard */
    atomic_uint nwatch_total;

    /* Retention, committer only (stored_bytes is read by stats). */
    int64_t trim_due_ms;       /* wall time the next segment may expire or roll; INT64_MAX = never */
    int64_t trim_hold_ms;      /* no trim before this after a failed removal (wall ms) */
    int64_t round_ms;          /* wall clock at the start of the current commit round */
    size_t finished_segs;      /* segments that are not a shard's active one */
    _Atomic uint64_t stored_bytes;
    /* Read-only log: RETENTION as read at open. */
    bool ro_retention_known;
    uint64_t ro_retention_ms, ro_retention_bytes;

    _Atomic uint64_t appended, committed, commits, fsyncs, bytes_written, append_waits, errors, truncated_bytes;
    _Atomic uint64_t trimmed_segments, trimmed_records, trimmed_bytes, trim_errors, reader_skipped;
    _Atomic uint64_t disk_full_pauses, disk_full_retries, disk_full_ms;
};

static inline void log_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline struct timespec log_ts_of_ns(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
}

/* log.c */
/* Grows the array whose pointer is at pp to hold need elements of elem bytes. */
int log_reserve(void *pp, size_t *cap, size_t need, size_t elem, size_t min);

/* commit.c */
void *log_committer_main(void *arg);   /* the committer thread (arg: the log) */
void *log_sync_helper_main(void *arg); /* a sync helper thread (arg: the log) */
void log_stop_helpers(vg_log_t *log);  /* joins the sync helpers */
/* Sets the zero-fill / writeback policy of a shard's active segment. */
void log_seg_policy(const vg_log_t *log, vg_segment_t *seg);
/* Marks the log failed for good after a write or sync error. */
void log_fail(vg_log_t *log);
/* Finishes shard idx's active segment and starts the next at first_seq. */
int log_roll(vg_log_t *log, uint32_t idx, uint64_t first_seq, size_t next);

/* retention.c */
/* Age at which an active segment is rolled so that retention can delete it. */
int64_t log_roll_age_ms(const vg_log_t *log);
/* arrival_ms of the first record of shard i's segment first_seq (INT64_MIN: none). */
int64_t log_first_arrival(vg_log_t *log, uint32_t i, uint64_t first_seq);
/* True if log_trim has something to do at wall time now. */
bool log_trim_wanted(const vg_log_t *log, int64_t now);
/* Committer: rolls, deletes what retention says, moves the horizons. */
void log_trim(vg_log_t *log);

/* read.c */
/* Highest durable sequence number of shard (read-only log: found on disk). */
uint64_t log_durable_of(vg_log_t *log, uint32_t shard);

#endif
