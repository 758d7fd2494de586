/* log.c — the durable stream: MANIFEST, shards, group commit, readers.
 *
 * Owns one stream directory <data_dir>/stream/<name>/: its MANIFEST, one
 * directory per shard holding that shard's segments (format in segment.c,
 * record format in record.h), sequence numbers, the committer thread, torn
 * tail recovery at open, and readers. Does not own what the bytes mean.
 *
 * MANIFEST (text, ASCII, '\n'-terminated lines; written once when the
 * stream is created, by writing MANIFEST.tmp, fsync, rename, fsync of the
 * stream directory, so it is either absent or complete):
 *   # <comment>                       lines starting with '#' are ignored
 *   version 1                         format version, first non-comment line
 *   shards <n>                        shard count, 1..256
 *   shard <i> <start> <end>           n lines, i = 0..n-1 in order: the
 *                                     inclusive MD5 hash-key range of shard i,
 *                                     decimal 128-bit integers
 * The ranges must be contiguous from 0 to 2^128-1. Shard i's segments live
 * in the directory named by the decimal i. A stream exists once its MANIFEST
 * does: the shard directories and first segments are created before it.
 *
 * RETENTION (text, same rules; rewritten the same atomic way by the writer
 * at open whenever the options differ from what it holds):
 *   # <comment>
 *   retention_ms <n>                  0 = keep forever
 *   retention_bytes <n>               0 = no size cap
 * Informational: it tells `vigil stream ls` (a read-only reader in another
 * process) the writer's settings. The writer's options rule; a missing or
 * unreadable RETENTION only means "unknown" to a reader.
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
 * is removed again after the restart.
 *
 * Group commit: vg_log_append copies the record into the pending batch and
 * returns; the committer swaps that batch for an empty one, encodes it shard
 * by shard (one write per shard per batch, per MiB for larger ones), syncs
 * the written shards (policy), publishes their durable sequence numbers and
 * runs the callbacks in append order. Appends made meanwhile form the next
 * batch, so under load one fdatasync covers many records and when idle a
 * record waits for one fdatasync only.
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
 * Durable sequence numbers are atomics written by the committer with release
 * order after the data is written (and synced per policy), so a reader that
 * loads one with acquire order can read everything up to it. Readers hold a
 * pointer to their log and must be closed before it. */
#include "stream/log.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "stream/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "stream"
#define PATH_CAP 4096
#define NAME_MAX_LEN 128
#define MANIFEST_MAX (64u * 1024u)
#define MANIFEST_VERSION 1
/* How often a read-only log looks at the files again in vg_log_wait: it has
 * no committer to wake it, and the tail command can afford 10 ms. */
#define RO_POLL_MS 10
/* The committer encodes a shard's records into one buffer of this size and
 * writes it when full: large enough that a write per MiB costs nothing, small
 * enough to stay in cache and not to fault in fresh pages on every batch. */
#define WRITE_CHUNK (1u << 20)
/* Shards synced at the same time (the committer plus helpers). fdatasync of
 * several files one after another pays one device flush each; issued
 * together they share flushes (4 shards: 4-6x faster per round measured on
 * ext4/virtio), which bounds commit latency when many shards are busy. */
#define SYNC_PARALLEL 8
/* Rounds one vg_log_flush call leads at most (see there). */
/* --fsync none: the kernel starts writing back every this many bytes. */
#define WRITEBACK_STEP (4u << 20)

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

/* Thread names (15 bytes at most, cut) so top -H and the comm file of each task in /proc
 * show which stream's thread does what. */
static void name_thread(const char *prefix, const char *name)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%s%s", prefix, name);
    pthread_setname_np(pthread_self(), buf);
}

static void stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static int reserve(void *pp, size_t *cap, size_t need, size_t elem, size_t min);

void vg_log_opts_default(vg_log_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->shards = 4;
    o->fsync = VG_FSYNC_ALWAYS;
    o->fsync_interval_ms = 100;
    o->segment_bytes = 64u * 1024u * 1024u;
    o->max_pending_bytes = 64u * 1024u * 1024u;
    o->io = NULL;
    /* Deleting data is the caller's decision: the library keeps everything
     * unless told otherwise (vigil serve sets per-stream retention). */
    o->retention_ms = 0;
    o->retention_bytes = 0;
    o->prealloc_bytes = 1u << 20;
}

/* Starts the zero fill ahead of the data on the active segment of s (a new
 * or recovered one). */
static void seg_prealloc(const vg_log_t *log, vg_segment_t *seg)
{
    uint64_t step = log->opts.prealloc_bytes;
    vg_segment_preallocate(seg, step == VG_LOG_PREALLOC_OFF || log->opts.fsync == VG_FSYNC_NONE ? 0 : step);
    /* Without a sync per commit, dirty data would pile up for the sync at
     * the roll (segment.h); 4 MiB steps keep that sync short. */
    vg_segment_writeback(seg, log->opts.fsync == VG_FSYNC_NONE ? WRITEBACK_STEP : 0);
}

/* ---- paths and directories ---- */

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_LEN || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 2 > PATH_CAP)
        return NULL;
    char *p = vg_malloc(VG_MEM_STREAM, la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

/* fsyncs the directory that contains path (path has no trailing '/'). */
static int fsync_parent(const vg_seg_io_t *io, const char *path)
{
    char parent[PATH_CAP];
    const char *slash = strrchr(path, '/');
    if (!slash)
        return vg_seg_fsync_dir(io, ".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(parent, path, n);
    parent[n] = '\0';
    return vg_seg_fsync_dir(io, parent);
}

/* mkdir -p, fsyncing the parent of every directory it creates so that the
 * new entries survive a crash. */
static int mkdir_p(const vg_seg_io_t *io, const char *path)
{
    char buf[PATH_CAP];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return VG_EINVAL;
    memcpy(buf, path, n + 1);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        if (p[-1] == '/') { /* "a//b" */
            if (!*p)
                break;
            continue;
        }
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) == 0) {
            int rc = fsync_parent(io, buf);
            if (rc != VG_OK)
                return rc;
        } else {
            struct stat st;
            if (errno != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                VG_ERROR(MOD, "mkdir %s: %s", buf, errno == EEXIST ? "exists and is not a directory" : strerror(errno));
                return VG_EIO;
            }
        }
        *p = c;
        if (!c)
            break;
    }
    return VG_OK;
}

/* ---- MANIFEST ---- */

static int parse_u128(const char *s, vg_hashkey_t *out)
{
    vg_hashkey_t v = 0;
    const vg_hashkey_t max = ~(vg_hashkey_t)0;
    if (!*s)
        return VG_ECORRUPT;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return VG_ECORRUPT;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return VG_ECORRUPT;
        v = v * 10 + d;
    }
    *out = v;
    return VG_OK;
}

static int parse_u32(const char *s, uint32_t *out)
{
    vg_hashkey_t v;
    if (parse_u128(s, &v) != VG_OK || v > UINT32_MAX)
        return VG_ECORRUPT;
    *out = (uint32_t)v;
    return VG_OK;
}

static int alloc_shards(vg_log_t *log, uint32_t n)
{
    log->shards = vg_calloc(VG_MEM_STREAM, n, sizeof *log->shards);
    if (!log->shards)
        return VG_ENOMEM;
    log->nshards = n;
    /* Descriptors first: log_free must find every shard closable. */
    for (uint32_t i = 0; i < n; i++) {
        log->shards[i].seg.fd = -1;
        log->shards[i].scan.fd = -1;
        atomic_store(&log->shards[i].oldest_ms, INT64_MIN);
    }
    for (uint32_t i = 0; i < n; i++) {
        char num[16];
        snprintf(num, sizeof num, "%u", i);
        if (!(log->shards[i].dir = path_join(log->dir, num)))
            return VG_ENOMEM;
    }
    return VG_OK;
}

/* Parses text (NUL-terminated, modified in place) into log's shards. */
static int parse_manifest(vg_log_t *log, char *text, const char *path)
{
    const char *why = NULL;
    int line_no = 0, state = 0; /* 0: want version, 1: want shards, 2: shard lines */
    uint32_t n = 0, next = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *f[5];
        int nf = 0;
        char *fs = NULL;
        for (char *t = strtok_r(line, " \t\r", &fs); t; t = strtok_r(NULL, " \t\r", &fs)) {
            if (nf == 5) {
                why = "too many fields";
                goto out;
            }
            f[nf++] = t;
        }
        if (nf == 0)
            continue;
        uint32_t v;
        if (state == 0) {
            if (nf != 2 || strcmp(f[0], "version") != 0 || parse_u32(f[1], &v) != VG_OK) {
                why = "expected 'version <n>'";
                goto out;
            }
            if (v != MANIFEST_VERSION) {
                why = "unsupported version";
                goto out;
            }
            state = 1;
        } else if (state == 1) {
            if (nf != 2 || strcmp(f[0], "shards") != 0 || parse_u32(f[1], &n) != VG_OK || n < 1 || n > VG_SHARDS_MAX) {
                why = "expected 'shards <1..256>'";
                goto out;
            }
            if (alloc_shards(log, n) != VG_OK)
                return VG_ENOMEM;
            state = 2;
        } else {
            vg_hashkey_t start, end;
            if (next >= n || nf != 4 || strcmp(f[0], "shard") != 0 || parse_u32(f[1], &v) != VG_OK || v != next ||
                parse_u128(f[2], &start) != VG_OK || parse_u128(f[3], &end) != VG_OK) {
                why = "expected 'shard <i> <start> <end>' for the next shard";
                goto out;
            }
            /* Contiguous, non-empty ranges: the first starts at 0, each
             * starts right after the previous one ends. */
            if (start > end || (next == 0 ? start != 0 : start != log->shards[next - 1].end + 1)) {
                why = "hash-key ranges are not contiguous";
                goto out;
            }
            log->shards[next].start = start;
            log->shards[next].end = end;
            next++;
        }
    }
    if (state < 2 || next != n)
        why = "missing lines";
    else if (log->shards[n - 1].end != ~(vg_hashkey_t)0)
        why = "hash-key ranges do not reach 2^128-1";
out:
    if (why) {
        VG_ERROR(MOD, "%s: line %d: %s", path, line_no, why);
        return VG_ECORRUPT;
    }
    return VG_OK;
}

/* Reads MANIFEST into log (shards allocated, ranges set). VG_ENOTFOUND if
 * there is none. */
static int read_manifest(vg_log_t *log)
{
    char path[PATH_CAP];
    char *text = NULL;
    int rc = VG_OK, fd = -1;
    snprintf(path, sizeof path, "%s/MANIFEST", log->dir);
    fd = log->io->open(log->io->ctx, path, O_RDONLY, 0);
    if (fd < 0) {
        if (fd == -ENOENT || fd == -ENOTDIR)
            return VG_ENOTFOUND;
        VG_ERROR(MOD, "open %s: %s", path, strerror(-fd));
        return VG_EIO;
    }
    if (!(text = vg_malloc(VG_MEM_STREAM, MANIFEST_MAX + 1))) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = log->io->pread(log->io->ctx, fd, text + len, MANIFEST_MAX + 1 - len, (off_t)len);
        if (n < 0) {
            VG_ERROR(MOD, "read %s: %s", path, strerror((int)-n));
            rc = VG_EIO;
            goto cleanup;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > MANIFEST_MAX) {
            VG_ERROR(MOD, "%s: larger than %u bytes", path, MANIFEST_MAX);
            rc = VG_ECORRUPT;
            goto cleanup;
        }
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        VG_ERROR(MOD, "%s: contains NUL bytes", path);
        rc = VG_ECORRUPT;
        goto cleanup;
    }
    rc = parse_manifest(log, text, path);
cleanup:
    vg_free(text);
    if (fd >= 0)
        (void)log->io->close(log->io->ctx, fd); /* read-only: nothing to lose */
    return rc;
}

static int write_all(const vg_seg_io_t *io, int fd, const char *buf, size_t n, const char *path)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = io->pwrite(io->ctx, fd, buf + off, n - off, (off_t)off);
        if (w <= 0) {
            VG_ERROR(MOD, "write %s: %s", path, w < 0 ? strerror((int)-w) : "no progress");
            return VG_EIO;
        }
        off += (size_t)w;
    }
    return VG_OK;
}

/* Atomic rewrite of <stream dir>/<name> with text[0..len): tmp, fsync,
 * rename, fsync directory. */
static int write_text_file(vg_log_t *log, const char *name, const char *text, size_t len)
{
    char path[PATH_CAP], tmp[PATH_CAP];
    int rc = VG_OK, fd = -1;
    bool tmp_exists = false;
    snprintf(path, sizeof path, "%s/%s", log->dir, name);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", log->dir, name);
    fd = log->io->open(log->io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        VG_ERROR(MOD, "create %s: %s", tmp, strerror(-fd));
        rc = VG_EIO;
        goto cleanup;
    }
    tmp_exists = true;
    if ((rc = write_all(log->io, fd, text, len, tmp)) != VG_OK)
        goto cleanup;
    int src = log->io->fsync(log->io->ctx, fd);
    if (src == 0) {
        src = log->io->close(log->io->ctx, fd);
        fd = -1;
    }
    if (src == 0)
        src = log->io->rename(log->io->ctx, tmp, path);
    if (src < 0) {
        VG_ERROR(MOD, "write %s: %s", path, strerror(-src));
        rc = VG_EIO;
        goto cleanup;
    }
    tmp_exists = false;
    rc = vg_seg_fsync_dir(log->io, log->dir);
cleanup:
    /* Failure path only: the error is already reported, and a leftover
     * .tmp is overwritten by the next attempt. */
    if (fd >= 0)
        (void)log->io->close(log->io->ctx, fd);
    if (tmp_exists)
        (void)log->io->unlink(log->io->ctx, tmp);
    return rc;
}

static int write_manifest(vg_log_t *log)
{
    size_t cap = 128 + (size_t)log->nshards * 100, len = 0;
    char *text = vg_malloc(VG_MEM_STREAM, cap);
    if (!text)
        return VG_ENOMEM;
    len += (size_t)snprintf(text + len, cap - len,
                            "# vigil stream manifest (format: src/stream/log.c)\nversion %d\nshards %u\n",
                            MANIFEST_VERSION, log->nshards);
    for (uint32_t i = 0; i < log->nshards; i++) {
        char a[40], b[40];
        vg_shardmap_format(log->shards[i].start, a, sizeof a);
        vg_shardmap_format(log->shards[i].end, b, sizeof b);
        len += (size_t)snprintf(text + len, cap - len, "shard %u %s %s\n", i, a, b);
    }
    int rc = write_text_file(log, "MANIFEST", text, len);
    vg_free(text);
    return rc;
}

/* Reads up to cap - 1 bytes of <stream dir>/<name> into buf (NUL-terminated).
 * VG_OK, VG_ENOTFOUND, VG_EIO. */
static int read_small_file(vg_log_t *log, const char *name, char *buf, size_t cap)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", log->dir, name);
    int fd = log->io->open(log->io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd == -ENOENT ? VG_ENOTFOUND : VG_EIO;
    size_t len = 0;
    int rc = VG_OK;
    while (len + 1 < cap) {
        ssize_t n = log->io->pread(log->io->ctx, fd, buf + len, cap - 1 - len, (off_t)len);
        if (n < 0) {
            rc = VG_EIO;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    (void)log->io->close(log->io->ctx, fd); /* read-only: nothing to lose */
    return rc;
}

#define RETENTION_FMT "# vigil stream retention (format: src/stream/log.c)\nretention_ms %llu\nretention_bytes %llu\n"

/* Records the writer's retention for read-only readers, unless RETENTION
 * says the same already. A failure is only logged: the file informs, the
 * options rule. */
static void write_retention(vg_log_t *log)
{
    char want[256], have[256];
    int n = snprintf(want, sizeof want, RETENTION_FMT, (unsigned long long)log->opts.retention_ms,
                     (unsigned long long)log->opts.retention_bytes);
    if (read_small_file(log, "RETENTION", have, sizeof have) == VG_OK && strcmp(have, want) == 0)
        return;
    if (write_text_file(log, "RETENTION", want, (size_t)n) != VG_OK)
        VG_WARN(MOD, "stream %s: cannot record its retention settings (vigil stream ls will not show them)",
                log->name);
}

/* Read-only open: parses RETENTION if there is one. */
static void read_retention(vg_log_t *log)
{
    char text[256];
    unsigned long long ms, bytes;
    if (read_small_file(log, "RETENTION", text, sizeof text) != VG_OK)
        return;
    const char *a = strstr(text, "\nretention_ms "), *b = strstr(text, "\nretention_bytes ");
    if (a && b && sscanf(a, "\nretention_ms %llu", &ms) == 1 && sscanf(b, "\nretention_bytes %llu", &bytes) == 1) {
        log->ro_retention_known = true;
        log->ro_retention_ms = ms;
        log->ro_retention_bytes = bytes;
    }
}

/* Creates the shard directories and MANIFEST of a new stream. */
static int create_stream(vg_log_t *log, uint32_t n)
{
    int rc;
    if ((rc = alloc_shards(log, n)) != VG_OK)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        vg_shardmap_range(n, i, &log->shards[i].start, &log->shards[i].end);
        if (mkdir(log->shards[i].dir, 0755) != 0 && errno != EEXIST) {
            VG_ERROR(MOD, "mkdir %s: %s", log->shards[i].dir, strerror(errno));
            return VG_EIO;
        }
    }
    if ((rc = vg_seg_fsync_dir(log->io, log->dir)) != VG_OK)
        return rc;
    /* First segments before the MANIFEST: a stream whose MANIFEST exists is
     * complete. */
    for (uint32_t i = 0; i < n; i++) {
        vg_segment_t seg;
        rc = vg_segment_create(log->io, log->shards[i].dir, i, 1, vg_clock_wall_ms(), &seg);
        if (rc == VG_EEXIST)
            continue; /* left by an earlier attempt that crashed before the MANIFEST */
        if (rc != VG_OK)
            return rc;
        vg_segment_close(&seg);
    }
    if ((rc = write_manifest(log)) != VG_OK)
        return rc;
    VG_INFO(MOD, "created stream %s with %u shards", log->name, n);
    return VG_OK;
}

/* ---- open / close ---- */

static void log_free(vg_log_t *log)
{
    if (!log)
        return;
    for (uint32_t i = 0; log->shards && i < log->nshards; i++) {
        shard_t *s = &log->shards[i];
        vg_segment_close(&s->seg);
        vg_seg_reader_close(&s->scan);
        vg_free(s->segs);
        vg_free(s->dir);
    }
    vg_free(log->shards);
    vg_free(log->pending.v);
    vg_free(log->pending.data);
    vg_free(log->committing.v);
    vg_free(log->committing.data);
    vg_free(log->waiting);
    vg_free(log->touched);
    vg_free(log->synclist);
    vg_free(log->link);
    vg_free(log->ebuf);
    vg_free(log->watch);
    vg_free(log->nwatch);
    if (log->prims) {
        pthread_mutex_destroy(&log->mu);
        pthread_cond_destroy(&log->work_cv);
        pthread_cond_destroy(&log->space_cv);
        pthread_cond_destroy(&log->idle_cv);
        pthread_mutex_destroy(&log->wait_mu);
        pthread_cond_destroy(&log->durable_cv);
        pthread_mutex_destroy(&log->ro_mu);
        pthread_mutex_destroy(&log->watch_mu);
        pthread_mutex_destroy(&log->sync_mu);
        pthread_cond_destroy(&log->sync_go);
        pthread_cond_destroy(&log->sync_done);
    }
    if (log->lock_fd >= 0)
        close(log->lock_fd); /* releases the flock */
    vg_free(log->name);
    vg_free(log->dir);
    vg_free(log);
}

static int init_prims(vg_log_t *log)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return VG_ENOMEM;
    /* Timed waits measure against the monotonic clock, immune to wall-clock
     * steps. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int bad = pthread_mutex_init(&log->mu, NULL);
    bad |= pthread_cond_init(&log->work_cv, &ca);
    bad |= pthread_cond_init(&log->space_cv, NULL);
    bad |= pthread_cond_init(&log->idle_cv, NULL);
    bad |= pthread_mutex_init(&log->wait_mu, NULL);
    bad |= pthread_cond_init(&log->durable_cv, &ca);
    bad |= pthread_mutex_init(&log->ro_mu, NULL);
    bad |= pthread_mutex_init(&log->watch_mu, NULL);
    bad |= pthread_mutex_init(&log->sync_mu, NULL);
    bad |= pthread_cond_init(&log->sync_go, NULL);
    bad |= pthread_cond_init(&log->sync_done, NULL);
    pthread_condattr_destroy(&ca);
    /* On Linux these initialisers cannot fail; treat a failure as fatal for
     * this open and leak nothing more than glibc would. */
    if (bad)
        return VG_ENOMEM;
    log->prims = true;
    return VG_OK;
}

static int log_new(const char *data_dir, const char *name, bool readonly, const vg_log_opts_t *opts, vg_log_t **out)
{
    *out = NULL;
    if (!data_dir || !name || !valid_name(name)) {
        VG_ERROR(MOD, "invalid stream name '%s'", name ? name : "(null)");
        return VG_EINVAL;
    }
    vg_log_t *log = vg_calloc(VG_MEM_STREAM, 1, sizeof *log);
    if (!log)
        return VG_ENOMEM;
    vg_log_opts_default(&log->opts);
    if (opts) {
        log->opts = *opts;
        /* Zero means "default" so that a zeroed struct is usable. */
        vg_log_opts_t d;
        vg_log_opts_default(&d);
        if (!log->opts.shards)
            log->opts.shards = d.shards;
        if (!log->opts.segment_bytes)
            log->opts.segment_bytes = d.segment_bytes;
        if (!log->opts.max_pending_bytes)
            log->opts.max_pending_bytes = d.max_pending_bytes;
        if (!log->opts.prealloc_bytes)
            log->opts.prealloc_bytes = d.prealloc_bytes;
    }
    log->io = log->opts.io ? log->opts.io : vg_seg_io_default();
    log->readonly = readonly;
    log->lock_fd = -1;
    log->fail_status = VG_EIO;
    atomic_store(&log->state, VG_LOG_OK);
    char *sdir = path_join(data_dir, "stream");
    log->name = vg_strndup(VG_MEM_STREAM, name, strlen(name));
    log->dir = sdir ? path_join(sdir, name) : NULL;
    vg_free(sdir);
    int rc = init_prims(log);
    if (rc == VG_OK && (!log->name || !log->dir))
        rc = VG_ENOMEM;
    if (rc != VG_OK) {
        log_free(log);
        return rc;
    }
    *out = log;
    return VG_OK;
}

static int64_t first_arrival(vg_log_t *log, uint32_t i, uint64_t first_seq);

/* Fills shard i's segment list (retention) from the n segments found at
 * open (none: the one just created). A segment whose header cannot be read
 * is kept for a full retention period from now rather than guessed old. */
static int load_segments(vg_log_t *log, uint32_t i, const uint64_t *firsts, size_t n)
{
    shard_t *s = &log->shards[i];
    int64_t now = vg_clock_wall_ms();
    size_t count = n ? n : 1;
    if (reserve(&s->segs, &s->capsegs, count, sizeof *s->segs, 16) != VG_OK)
        return VG_ENOMEM;
    uint64_t total = 0;
    if (n == 0) {
        s->segs[0] = (seginfo_t){.first = s->seg.first_seq, .created_ms = now, .newest_ms = 0, .bytes = VG_SEG_HDR};
        s->active_first_ms = 0;
        s->last_write_ms = 0;
    } else {
        int64_t active_mtime = now;
        for (size_t j = 0; j < n; j++) {
            vg_seg_info_t in;
            if (vg_seg_info(log->io, s->dir, i, firsts[j], &in) != VG_OK) {
                VG_WARN(MOD, "stream %s shard %u: segment %" PRIu64 " unreadable; retention keeps it for now",
                        log->name, i, firsts[j]);
                in.created_ms = now;
                in.mtime_ms = now;
                in.bytes = 0;
            }
            s->segs[j] = (seginfo_t){.first = firsts[j], .created_ms = in.created_ms, .newest_ms = 0, .bytes = in.bytes};
            if (j == n - 1)
                active_mtime = in.mtime_ms;
        }
        for (size_t j = 0; j + 1 < n; j++) {
            s->segs[j].newest_ms = s->segs[j + 1].created_ms;
            total += s->segs[j].bytes;
        }
        bool has_records = s->seg.next_seq > s->seg.first_seq;
        s->segs[n - 1].bytes = s->seg.size;
        s->active_first_ms = has_records ? s->segs[n - 1].created_ms : 0;
        s->last_write_ms = has_records ? active_mtime : 0;
    }
    total += s->seg.size;
    s->nsegs = count;
    log->finished_segs += count - 1;
    atomic_fetch_add(&log->stored_bytes, total);
    atomic_store(&s->oldest_ms, first_arrival(log, i, s->segs[0].first));
    return VG_OK;
}

/* Opens or creates the active segment of shard i, recovering its tail. */
static int open_shard(vg_log_t *log, uint32_t i)
{
    shard_t *s = &log->shards[i];
    uint64_t *firsts = NULL;
    size_t n = 0;
    int rc;
    if (mkdir(s->dir, 0755) == 0) {
        /* A MANIFEST without this directory: recreate it rather than fail. */
        VG_WARN(MOD, "stream %s: recreated missing shard directory %s", log->name, s->dir);
        if ((rc = vg_seg_fsync_dir(log->io, log->dir)) != VG_OK)
            return rc;
    }
    if ((rc = vg_seg_list(log->io, s->dir, true, &firsts, &n)) != VG_OK)
        return rc;
    if (n == 0) {
        rc = vg_segment_create(log->io, s->dir, i, 1, vg_clock_wall_ms(), &s->seg);
        atomic_store(&s->first, 1);
    } else {
        vg_seg_recovery_t rep;
        rc = vg_segment_recover(log->io, s->dir, i, firsts[n - 1], &s->seg, &rep);
        if (rc == VG_OK && rep.cut_bytes) {
            VG_WARN(MOD, "stream %s shard %u: recovered a torn tail, cut %" PRIu64 " bytes, next seq %" PRIu64,
                    log->name, i, rep.cut_bytes, rep.next_seq);
            stat_add(&log->truncated_bytes, rep.cut_bytes);
        }
        atomic_store(&s->first, firsts[0]);
    }
    if (rc == VG_OK) {
        seg_prealloc(log, &s->seg);
        rc = load_segments(log, i, firsts, n);
    }
    vg_free(firsts);
    if (rc != VG_OK)
        return rc;
    s->next_seq = s->seg.next_seq;
    s->written_seq = s->ok_seq = s->next_seq - 1;
    s->ok_size = s->seg.size;
    atomic_store(&s->durable, s->next_seq - 1);
    s->notified = s->next_seq - 1;
    return VG_OK;
}

/* Two writers on one stream would hand out the same sequence numbers and
 * overwrite each other's records; a second vg_log_open (this process or
 * another) fails instead. The lock dies with the descriptor, so a crashed
 * writer never leaves it behind. Read-only opens do not take it. */
static int lock_stream(vg_log_t *log)
{
    log->lock_fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->lock_fd < 0) {
        VG_ERROR(MOD, "open %s: %s", log->dir, strerror(errno));
        return VG_EIO;
    }
    if (flock(log->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            VG_ERROR(MOD, "stream %s is already open for writing (by this or another process)", log->name);
            return VG_EEXIST;
        }
        VG_ERROR(MOD, "flock %s: %s", log->dir, strerror(errno));
        return VG_EIO;
    }
    return VG_OK;
}

static void *committer_main(void *arg);
static void *sync_helper_main(void *arg);
static void stop_helpers(vg_log_t *log);

int vg_log_open(const char *data_dir, const char *name, const vg_log_opts_t *opts, vg_log_t **out)
{
    vg_log_t *log = NULL;
    int rc = log_new(data_dir, name, false, opts, &log);
    if (rc != VG_OK)
        return rc;
    if (log->opts.shards > VG_SHARDS_MAX || (unsigned)log->opts.fsync > VG_FSYNC_NONE) {
        VG_ERROR(MOD, "stream %s: invalid options", name);
        rc = VG_EINVAL;
        goto cleanup;
    }
    if ((rc = mkdir_p(log->io, log->dir)) != VG_OK || (rc = lock_stream(log)) != VG_OK)
        goto cleanup;
    rc = read_manifest(log);
    if (rc == VG_ENOTFOUND)
        rc = create_stream(log, log->opts.shards);
    else if (rc == VG_OK && log->nshards != log->opts.shards)
        VG_INFO(MOD, "stream %s keeps its %u shards (%u requested)", name, log->nshards, log->opts.shards);
    if (rc != VG_OK)
        goto cleanup;
    for (uint32_t i = 0; i < log->nshards; i++)
        if ((rc = open_shard(log, i)) != VG_OK)
            goto cleanup;
    write_retention(log);
    log->trim_due_ms = INT64_MIN; /* look once at start: segments may have expired while the server was down */
    log->trim_hold_ms = INT64_MIN;
    if (!(log->touched = vg_calloc(VG_MEM_STREAM, log->nshards, sizeof *log->touched)) ||
        !(log->synclist = vg_calloc(VG_MEM_STREAM, log->nshards, sizeof *log->synclist)) ||
        !(log->watch = vg_calloc(VG_MEM_STREAM, (size_t)log->nshards * VG_LOG_WATCHERS, sizeof *log->watch)) ||
        !(log->nwatch = vg_calloc(VG_MEM_STREAM, log->nshards, sizeof *log->nwatch))) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    /* Fewer helpers than wanted (thread limits) only means less overlap. */
    unsigned want = log->nshards < SYNC_PARALLEL ? log->nshards - 1 : SYNC_PARALLEL - 1;
    while (log->nhelpers < want && pthread_create(&log->helpers[log->nhelpers], NULL, sync_helper_main, log) == 0)
        log->nhelpers++;
    int prc = pthread_create(&log->committer, NULL, committer_main, log);
    if (prc != 0) {
        VG_ERROR(MOD, "stream %s: cannot start the committer: %s", name, strerror(prc));
        rc = VG_ENOMEM;
        goto cleanup;
    }
    log->committer_started = true;
    *out = log;
    log = NULL;
cleanup:
    if (log)
        stop_helpers(log);
    log_free(log);
    return rc;
}

int vg_log_open_readonly(const char *data_dir, const char *name, vg_log_t **out)
{
    vg_log_t *log = NULL;
    int rc = log_new(data_dir, name, true, NULL, &log);
    if (rc != VG_OK)
        return rc;
    if ((rc = read_manifest(log)) != VG_OK)
        goto cleanup;
    for (uint32_t i = 0; i < log->nshards; i++)
        atomic_store(&log->shards[i].first, 0);
    read_retention(log);
    *out = log;
    log = NULL;
cleanup:
    log_free(log);
    return rc;
}

void vg_log_close(vg_log_t *log)
{
    if (!log)
        return;
    pthread_mutex_lock(&log->wait_mu);
    log->wait_closed = true;
    pthread_cond_broadcast(&log->durable_cv);
    pthread_mutex_unlock(&log->wait_mu);
    if (log->committer_started) {
        pthread_mutex_lock(&log->mu);
        log->closing = true;
        log->closing_ns = vg_clock_mono_ns();
        pthread_cond_broadcast(&log->work_cv);
        pthread_cond_broadcast(&log->space_cv);
        while (log->inflight)
            pthread_cond_wait(&log->idle_cv, &log->mu);
        pthread_mutex_unlock(&log->mu);
        /* The committer drains the pending batch, syncs every shard written
         * since its last sync (whatever the policy) and runs all callbacks. */
        pthread_join(log->committer, NULL);
    }
    stop_helpers(log);
    pthread_mutex_lock(&log->wait_mu);
    while (log->waiters)
        pthread_cond_wait(&log->durable_cv, &log->wait_mu);
    pthread_mutex_unlock(&log->wait_mu);
    log_free(log);
}

uint32_t vg_log_shard_count(const vg_log_t *log)
{
    return log->nshards;
}

const char *vg_log_name(const vg_log_t *log)
{
    return log->name;
}

uint32_t vg_log_shard_for_key(const vg_log_t *log, const void *key, size_t len)
{
    vg_hashkey_t h = vg_shardmap_hash(key, len);
    /* Ranges come from the MANIFEST and are contiguous: binary search for the
     * last shard starting at or below h. */
    uint32_t lo = 0, hi = log->nshards - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (log->shards[mid].start <= h)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

void vg_log_shard_range(const vg_log_t *log, uint32_t shard, vg_hashkey_t *start, vg_hashkey_t *end)
{
    if (shard >= log->nshards) {
        *start = *end = 0;
        return;
    }
    *start = log->shards[shard].start;
    *end = log->shards[shard].end;
}

/* ---- append ---- */

/* Grows the array whose pointer is at pp (any object pointer type) to hold
 * need elements of elem bytes, doubling from min. */
static int reserve(void *pp, size_t *cap, size_t need, size_t elem, size_t min)
{
    if (need <= *cap)
        return VG_OK;
    size_t ncap = *cap ? *cap : min;
    while (ncap < need)
        ncap *= 2;
    void *p;
    memcpy(&p, pp, sizeof p);
    void *np = vg_realloc(VG_MEM_STREAM, p, ncap * elem);
    if (!np)
        return VG_ENOMEM;
    memcpy(pp, &np, sizeof np);
    *cap = ncap;
    return VG_OK;
}

int vg_log_append_shard(vg_log_t *log, uint32_t shard, const void *key, size_t key_len, const void *meta,
                        size_t meta_len, const void *value, size_t value_len, int64_t arrival_ms, vg_log_done_fn done,
                        void *ctx, uint64_t token, uint64_t *seq)
{
    if (!log || log->readonly || shard >= log->nshards || (key_len && !key) || (meta_len && !meta) ||
        (value_len && !value))
        return VG_EINVAL;
    if (key_len > VG_RECORD_MAX_KEY || meta_len > VG_RECORD_MAX_META || value_len > VG_RECORD_MAX_VALUE)
        return VG_ETOOBIG;
    size_t size = vg_record_size(key_len, meta_len, value_len);
    size_t raw = key_len + meta_len + value_len;
    int rc = VG_OK;
    bool waited = false;
    pthread_mutex_lock(&log->mu);
    log->inflight++;
    for (;;) {
        if (log->closing) {
            rc = VG_ECLOSED;
            goto out;
        }
        if (atomic_load_explicit(&log->failed, memory_order_relaxed)) {
            rc = VG_EIO;
            goto out;
        }
        /* A record larger than the whole budget still goes in once the
         * queue is empty, or it could never be appended. */
        if (log->pending_bytes == 0 || log->pending_bytes + size <= log->opts.max_pending_bytes)
            break;
        if (!waited) {
            waited = true;
            stat_add(&log->append_waits, 1);
        }
        log->space_waiters++;
        pthread_cond_wait(&log->space_cv, &log->mu);
        log->space_waiters--;
    }
    batch_t *b = &log->pending;
    if (reserve(&b->v, &b->cap, b->n + 1, sizeof *b->v, 256) != VG_OK ||
        reserve(&b->data, &b->dcap, b->len + raw, 1, 64 * 1024) != VG_OK) {
        rc = VG_ENOMEM;
        goto out;
    }
    entry_t *e = &b->v[b->n];
    shard_t *s = &log->shards[shard];
    e->seq = s->next_seq++;
    e->arrival_ms = arrival_ms;
    e->off = b->len;
    e->shard = shard;
    e->key_len = (uint32_t)key_len;
    e->meta_len = (uint32_t)meta_len;
    e->value_len = (uint32_t)value_len;
    e->done = done;
    e->ctx = ctx;
    e->token = token;
    uint8_t *p = b->data + b->len;
    if (key_len)
        memcpy(p, key, key_len);
    if (meta_len)
        memcpy(p + key_len, meta, meta_len);
    if (value_len)
        memcpy(p + key_len + meta_len, value, value_len);
    b->len += raw;
    /* The committer sleeps only while the batch is empty, so the first
     * record of a batch is the only one that needs to wake it. */
    if (b->n++ == 0 && !log->opts.flush_commits)
        pthread_cond_signal(&log->work_cv);
    log->pending_bytes += size;
    stat_add(&log->appended, 1);
    if (seq)
        *seq = e->seq;
out:
    log->inflight--;
    if (log->closing && log->inflight == 0)
        pthread_cond_broadcast(&log->idle_cv);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

int vg_log_append(vg_log_t *log, const void *key, size_t key_len, const void *meta, size_t meta_len, const void *value,
                  size_t value_len, int64_t arrival_ms, vg_log_done_fn done, void *ctx, uint64_t token, uint32_t *shard,
                  uint64_t *seq)
{
    if (!log || (key_len && !key))
        return VG_EINVAL;
    uint32_t sh = vg_log_shard_for_key(log, key_len ? key : "", key_len);
    int rc =
        vg_log_append_shard(log, sh, key, key_len, meta, meta_len, value, value_len, arrival_ms, done, ctx, token, seq);
    if (rc == VG_OK && shard)
        *shard = sh;
    return rc;
}

/* ---- the committer ---- */

static struct timespec ts_of_ns(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
}

static void publish(shard_t *s, uint64_t seq)
{
    atomic_store_explicit(&s->durable, seq, memory_order_release);
}

/* Marks the log failed after a write or sync error: nothing more is written,
 * and what was written but not yet reported stored is cut off again (best
 * effort) so that a restart does not resurrect records whose callbacks were
 * told VG_EIO. */
static void fail_log(vg_log_t *log)
{
    stat_add(&log->errors, 1);
    if (atomic_exchange(&log->failed, true))
        return;
    if (atomic_exchange(&log->state, VG_LOG_FAILED) == VG_LOG_DISK_FULL)
        stat_add(&log->disk_full_ms, (vg_clock_mono_ns() - atomic_load(&log->df_since_ns)) / 1000000u);
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
    stat_add(&log->fsyncs, 1);
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
        stat_add(&log->fsyncs, 1);
        s->sync_rc = vg_segment_sync(&s->seg);
    }
}

/* A helper works only with a ticket: the committer hands out one per extra
 * dirty shard (at most nhelpers) and signals that many, so a round with two
 * dirty shards wakes one helper, not all of them. */
static void *sync_helper_main(void *arg)
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

static void stop_helpers(vg_log_t *log)
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

/* Age at which an active segment is finished so that retention can delete
 * it later: a record then lives at most retention_ms * 9 / 8. */
static int64_t roll_age_ms(const vg_log_t *log)
{
    uint64_t a = log->opts.retention_ms / 8;
    return a ? (int64_t)a : 1;
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
    stat_add(&log->bytes_written, n);
    stat_add(&log->stored_bytes, n);
    s->written_seq = log->elast;
    s->dirty = true;
    s->last_write_ms = log->round_ms;
    if (atomic_load_explicit(&s->oldest_ms, memory_order_relaxed) == INT64_MIN)
        atomic_store_explicit(&s->oldest_ms, log->efirst_ms, memory_order_relaxed);
    if (!s->active_first_ms) {
        s->active_first_ms = log->round_ms;
        if (log->opts.retention_ms && s->active_first_ms + roll_age_ms(log) < log->trim_due_ms)
            log->trim_due_ms = s->active_first_ms + roll_age_ms(log);
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
static int roll(vg_log_t *log, uint32_t idx, uint64_t first_seq, size_t next)
{
    shard_t *s = &log->shards[idx];
    int rc = flush_shard(log, s, next);
    if (rc == VG_OK && s->dirty)
        rc = sync_shard(log, s);
    if (rc != VG_OK)
        return rc;
    if (reserve(&s->segs, &s->capsegs, s->nsegs + 1, sizeof *s->segs, 16) != VG_OK)
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
    seg_prealloc(log, &fresh);
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
    stat_add(&log->stored_bytes, VG_SEG_HDR);
    if (log->opts.retention_ms && done->newest_ms + (int64_t)log->opts.retention_ms + 1 < log->trim_due_ms)
        log->trim_due_ms = done->newest_ms + (int64_t)log->opts.retention_ms + 1;
    VG_DEBUG(MOD, "stream %s shard %u: new segment at seq %" PRIu64, log->name, idx, first_seq);
    return VG_OK;
}

static size_t deliver(vg_log_t *log);
static void write_rest(vg_log_t *log);
static void trim(vg_log_t *log);

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
        if (at >= seg_bytes && at > VG_SEG_HDR && (rc = roll(log, idx, e->seq, i)) != VG_OK)
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
            fail_log(log);
            return;
        }
        s->torn = false;
    }
    if (atomic_load_explicit(&log->state, memory_order_relaxed) == VG_LOG_DISK_FULL)
        return;
    atomic_store(&log->state, VG_LOG_DISK_FULL);
    atomic_store(&log->df_since_ns, vg_clock_mono_ns());
    stat_add(&log->disk_full_pauses, 1);
    log->df_backoff_ms = DISK_FULL_RETRY_MIN_MS;
    VG_WARN(MOD,
            "stream %s shard %u: the disk is full; writing paused, nothing is lost: records wait (their callbacks "
            "too) and appends block past max_pending_bytes; retrying with backoff up to %u ms",
            log->name, idx, DISK_FULL_RETRY_MAX_MS);
    /* Expired segments may be all the space there is to free. */
    trim(log);
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
            fail_log(log);
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
        stat_add(&log->disk_full_ms, ms);
        atomic_store(&log->state, VG_LOG_OK);
        VG_INFO(MOD, "stream %s: disk space is back after %" PRIu64 " ms; writing resumed", log->name, ms);
    }
}

/* Writes batch b shard by shard (rolling segments as they fill) and queues
 * every entry for its callback, written or not. Returns pending bytes
 * released by callbacks it had to run itself. */
static size_t write_batch(vg_log_t *log, batch_t *b)
{
    if (reserve(&log->waiting, &log->capwaiting, log->nwaiting + b->n, sizeof *log->waiting, 1024) != VG_OK ||
        reserve(&log->link, &log->caplink, b->n, sizeof *log->link, 1024) != VG_OK) {
        /* Without room to remember callbacks nothing more can be reported
         * stored: fail the log and report this batch at once, after the
         * older entries, to keep append order. */
        VG_ERROR(MOD, "stream %s: out of memory in the committer", log->name);
        fail_log(log);
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
                fail_log(log);
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
            fail_log(log);
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
    stat_add(&log->committed, ok);
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

/* ---- retention ---- */

static int64_t first_arrival(vg_log_t *log, uint32_t i, uint64_t first_seq)
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

/* True if trim() has something to do now: a segment's expiry or roll age
 * has come, or the stream is over its size cap with a segment to spare. */
static bool trim_wanted(const vg_log_t *log, int64_t now)
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
        stat_add(&log->trim_errors, 1);
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
static void trim(vg_log_t *log)
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
            if (!s->active_first_ms || now - s->active_first_ms < roll_age_ms(log))
                continue;
            int rc = roll(log, i, s->seg.next_seq, SIZE_MAX);
            if (rc == VG_EIO && s->dirty) {
                fail_log(log); /* its fdatasync failed: the page cache can no longer be trusted */
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
            stat_add(&log->trim_errors, 1);
        atomic_store_explicit(&s->first, first, memory_order_release);
        atomic_store_explicit(&s->oldest_ms, first_arrival(log, i, first), memory_order_relaxed);
        atomic_fetch_sub_explicit(&log->stored_bytes, removed_bytes[i], memory_order_relaxed);
        stat_add(&log->trimmed_segments, removed_segs[i]);
        stat_add(&log->trimmed_records, first - before[i]);
        stat_add(&log->trimmed_bytes, removed_bytes[i]);
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
                s->active_first_ms + roll_age_ms(log) < due)
                due = s->active_first_ms + roll_age_ms(log);
        }
    }
    log->trim_due_ms = due;
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
        stat_add(&log->commits, 1);
        if (!log->wbatch) {
            b->n = 0;
            b->len = 0;
        }
    } else if (log->wbatch) {
        stat_add(&log->disk_full_retries, 1);
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
    if (!final && trim_wanted(log, vg_clock_wall_ms()))
        trim(log);
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
        stat_add(&log->disk_full_ms, (vg_clock_mono_ns() - atomic_load(&log->df_since_ns)) / 1000000u);
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

static void *committer_main(void *arg)
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
                struct timespec ts = ts_of_ns(until);
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
                struct timespec ts = ts_of_ns(due);
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

static uint64_t durable_of(vg_log_t *log, uint32_t shard)
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
    return durable_of(log, shard);
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
    return first && durable_of(log, shard) >= first ? first : 0;
}

int64_t vg_log_oldest_ms(vg_log_t *log, uint32_t shard)
{
    if (!log || shard >= log->nshards)
        return INT64_MIN;
    if (!log->readonly)
        return atomic_load_explicit(&log->shards[shard].oldest_ms, memory_order_relaxed);
    uint64_t first = vg_log_first_seq(log, shard);
    return first ? first_arrival(log, shard, first) : INT64_MIN;
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

int vg_log_wait(vg_log_t *log, uint32_t shard, uint64_t after_seq, int timeout_ms)
{
    if (!log || shard >= log->nshards)
        return VG_EINVAL;
    /* A negative timeout waits without limit. */
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    if (log->readonly) {
        for (;;) {
            if (durable_of(log, shard) > after_seq)
                return VG_OK;
            uint64_t now = vg_clock_mono_ns();
            if (now >= deadline)
                return VG_AGAIN;
            uint64_t step = (uint64_t)RO_POLL_MS * 1000000u;
            if (deadline - now < step)
                step = deadline - now;
            struct timespec ts = ts_of_ns(step);
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
        struct timespec ts = ts_of_ns(deadline);
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

const char *vg_log_state_name(int state)
{
    return state == VG_LOG_OK ? "ok" : state == VG_LOG_DISK_FULL ? "disk_full" : "failed";
}

void vg_log_stats(vg_log_t *log, vg_log_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!log)
        return;
    out->appended = atomic_load(&log->appended);
    out->committed = atomic_load(&log->committed);
    out->commits = atomic_load(&log->commits);
    out->fsyncs = atomic_load(&log->fsyncs);
    out->bytes_written = atomic_load(&log->bytes_written);
    out->append_waits = atomic_load(&log->append_waits);
    out->errors = atomic_load(&log->errors);
    out->truncated_bytes = atomic_load(&log->truncated_bytes);
    out->stored_bytes = atomic_load(&log->stored_bytes);
    out->trimmed_segments = atomic_load(&log->trimmed_segments);
    out->trimmed_records = atomic_load(&log->trimmed_records);
    out->trimmed_bytes = atomic_load(&log->trimmed_bytes);
    out->trim_errors = atomic_load(&log->trim_errors);
    out->reader_skipped = atomic_load(&log->reader_skipped);
    out->state = atomic_load(&log->state);
    out->disk_full_pauses = atomic_load(&log->disk_full_pauses);
    out->disk_full_retries = atomic_load(&log->disk_full_retries);
    out->disk_full_ms = atomic_load(&log->disk_full_ms);
    if (out->state == VG_LOG_DISK_FULL)
        out->disk_full_ms += (vg_clock_mono_ns() - atomic_load(&log->df_since_ns)) / 1000000u;
    out->oldest_ms = INT64_MIN;
    for (uint32_t i = 0; !log->readonly && i < log->nshards; i++) {
        int64_t t = atomic_load_explicit(&log->shards[i].oldest_ms, memory_order_relaxed);
        if (t != INT64_MIN && (out->oldest_ms == INT64_MIN || t < out->oldest_ms))
            out->oldest_ms = t;
    }
    if (out->oldest_ms != INT64_MIN) {
        int64_t age = vg_clock_wall_ms() - out->oldest_ms;
        out->oldest_age_ms = age > 0 ? (uint64_t)age : 0;
    }
    if (!log->readonly) {
        pthread_mutex_lock(&log->mu);
        out->pending_bytes = log->pending_bytes;
        pthread_mutex_unlock(&log->mu);
    }
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
    stat_add(&r->log->reader_skipped, n);
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
    r->next_seq = start_seq == UINT64_MAX ? durable_of(log, shard) + 1 : start_seq;
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
        if (!log->readonly && r->next_seq > (durable = durable_of(log, r->shard)))
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

/* ---- listing ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int vg_log_list(const char *data_dir, void (*fn)(void *ctx, const char *name), void *ctx)
{
    char *sdir = path_join(data_dir, "stream");
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = VG_OK;
    DIR *d = NULL;
    if (!sdir)
        return VG_ENOMEM;
    if (!(d = opendir(sdir))) {
        if (errno != ENOENT) {
            VG_ERROR(MOD, "opendir %s: %s", sdir, strerror(errno));
            rc = VG_EIO;
        }
        goto cleanup;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                VG_ERROR(MOD, "readdir %s: %s", sdir, strerror(errno));
                rc = VG_EIO;
                goto cleanup;
            }
            break;
        }
        if (!valid_name(de->d_name))
            continue;
        char path[PATH_CAP];
        struct stat st;
        int pn = snprintf(path, sizeof path, "%s/%s/MANIFEST", sdir, de->d_name);
        if (pn < 0 || (size_t)pn >= sizeof path || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (reserve(&names, &cap, n + 1, sizeof *names, 16) != VG_OK ||
            !(names[n] = vg_strndup(VG_MEM_STREAM, de->d_name, strlen(de->d_name)))) {
            rc = VG_ENOMEM;
            goto cleanup;
        }
        n++;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++)
        fn(ctx, names[i]);
cleanup:
    if (d)
        closedir(d);
    for (size_t i = 0; i < n; i++)
        vg_free(names[i]);
    vg_free(names);
    vg_free(sdir);
    return rc;
}
