/* log.c — the durable stream's facade: directories, MANIFEST, open/close, append.
 *
 * Owns one stream directory <data_dir>/stream/<name>/: its MANIFEST and
 * RETENTION files, one directory per shard holding that shard's segments
 * (format in segment.c, record format in record.h), opening a stream
 * (creating it, recovering torn tails, loading retention's segment lists,
 * starting the committer) and closing it, appending to the pending batch,
 * stats, and listing the streams of a data directory. The committer is in
 * commit.c, retention in retention.c, readers in read.c; what they share is
 * in log_int.h. Does not own what the bytes mean.
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
 * unreadable RETENTION only means "unknown" to a reader. */
#include "stream/log_int.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_CAP 4096
#define NAME_MAX_LEN 128
#define MANIFEST_MAX (64u * 1024u)
#define MANIFEST_VERSION 1

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

/* Fills shard i's segment list (retention) from the n segments found at
 * open (none: the one just created). A segment whose header cannot be read
 * is kept for a full retention period from now rather than guessed old. */
static int load_segments(vg_log_t *log, uint32_t i, const uint64_t *firsts, size_t n)
{
    shard_t *s = &log->shards[i];
    int64_t now = vg_clock_wall_ms();
    size_t count = n ? n : 1;
    if (log_reserve(&s->segs, &s->capsegs, count, sizeof *s->segs, 16) != VG_OK)
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
    atomic_store(&s->oldest_ms, log_first_arrival(log, i, s->segs[0].first));
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
            log_stat_add(&log->truncated_bytes, rep.cut_bytes);
        }
        atomic_store(&s->first, firsts[0]);
    }
    if (rc == VG_OK) {
        log_seg_policy(log, &s->seg);
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
    while (log->nhelpers < want && pthread_create(&log->helpers[log->nhelpers], NULL, log_sync_helper_main, log) == 0)
        log->nhelpers++;
    int prc = pthread_create(&log->committer, NULL, log_committer_main, log);
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
        log_stop_helpers(log);
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
    log_stop_helpers(log);
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
int log_reserve(void *pp, size_t *cap, size_t need, size_t elem, size_t min)
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
            log_stat_add(&log->append_waits, 1);
        }
        log->space_waiters++;
        pthread_cond_wait(&log->space_cv, &log->mu);
        log->space_waiters--;
    }
    batch_t *b = &log->pending;
    if (log_reserve(&b->v, &b->cap, b->n + 1, sizeof *b->v, 256) != VG_OK ||
        log_reserve(&b->data, &b->dcap, b->len + raw, 1, 64 * 1024) != VG_OK) {
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
    log_stat_add(&log->appended, 1);
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

/* ---- stats ---- */

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
        if (log_reserve(&names, &cap, n + 1, sizeof *names, 16) != VG_OK ||
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
