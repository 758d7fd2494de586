/* segment.c — segment files: creation, append, recovery, sequential reading.
 *
 * Owns the segment file format and nothing above it: commit.c decides which
 * segment is active, when to roll and when to sync.
 *
 * File name: "<first_seq>.seg", first_seq as 20 decimal digits, zero-padded
 * (so that names sort like numbers), in the shard's directory
 * <data_dir>/stream/<name>/<shard>/. A segment is first written as
 * "<first_seq>.seg.tmp" and renamed once its header is synced; a ".seg.tmp"
 * left behind by a crash holds no records and is removed at open.
 *
 * Segment header, 32 bytes, integers little-endian:
 *   off  size  field
 *     0     8  magic       "VIGILSEG" (ASCII, no terminator)
 *     8     4  version     2 (VG_SEG_VERSION)
 *    12     4  shard       shard index; must match the directory name
 *    16     8  first_seq   sequence number of the first record; must match
 *                          the file name
 *    24     8  created_ms  creation time, epoch milliseconds (informational,
 *                          not checked)
 * Then records back to back (layout in record.h: 32-byte header with length
 * and CRC-32, then key, meta, value), with sequence numbers first_seq,
 * first_seq + 1, ... and no padding. There is no trailer. The newest segment
 * of a shard may continue past its last record with zeros written ahead of
 * the data (vg_segment_preallocate, a whole step at a time): a record
 * header whose length field is 0 is never valid (body_len >= 24), so the
 * first zero length marks the end of the data. A finished segment is cut
 * back to its last record when the log rolls past it (vg_segment_seal), so
 * its file size is the end of its data; if a crash came first, the zeros stay
 * and mean the same. A segment that is not the newest of its shard was
 * synced before the next one was created, so only the newest can have a torn
 * tail; the recovery scan cuts it at the first byte that is not a complete,
 * CRC-valid record with the expected sequence number, unless all that
 * follows is zeros (kept: written ahead, not torn). */
#include "stream/segment.h"

#include "core/bytes.h"

#include "core/alloc.h"
#include "core/diag.h"
#include "core/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD "segment"
/* Read-ahead of the sequential reader: large enough that a pread returns
 * hundreds of typical records, small enough to stay in L2. */
#define READ_CHUNK (64u * 1024u)
/* After the data ended at zeros written ahead, the next read is small: a
 * reader woken for each commit would otherwise copy 64 KiB of zeros per
 * wake-up for the few records it gets. */
#define TAIL_CHUNK (4u * 1024u)
/* Zeros for the fill ahead, written from one read-only block. */
#define ZERO_BLOCK (64u * 1024u)
static const uint8_t zero_block[ZERO_BLOCK];

/* ---- the real system calls ---- */

static int sys_open(void *ctx, const char *path, int flags, mode_t mode)
{
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static ssize_t sys_pread(void *ctx, int fd, void *buf, size_t n, off_t off)
{
    ssize_t r;
    do
        r = pread(fd, buf, n, off);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static ssize_t sys_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
    ssize_t r;
    do
        r = pwrite(fd, buf, n, off);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static int sys_fdatasync(void *ctx, int fd)
{
    int r;
    do
        r = fdatasync(fd);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int sys_fsync(void *ctx, int fd)
{
    int r;
    do
        r = fsync(fd);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int sys_ftruncate(void *ctx, int fd, off_t len)
{
    int r;
    do
        r = ftruncate(fd, len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int sys_rename(void *ctx, const char *from, const char *to)
{
    return rename(from, to) < 0 ? -errno : 0;
}

static int sys_unlink(void *ctx, const char *path)
{
    return unlink(path) < 0 ? -errno : 0;
}

static int sys_close(void *ctx, int fd)
{
    /* Never retry close on EINTR: Linux has released the descriptor already. */
    return close(fd) < 0 ? -errno : 0;
}

const vg_seg_io_t *vg_seg_io_default(void)
{
    static const vg_seg_io_t io = {
        .open = sys_open,
        .pread = sys_pread,
        .pwrite = sys_pwrite,
        .fdatasync = sys_fdatasync,
        .fsync = sys_fsync,
        .ftruncate = sys_ftruncate,
        .rename = sys_rename,
        .unlink = sys_unlink,
        .close = sys_close,
        .ctx = NULL,
    };
    return &io;
}

/* ---- helpers ---- */

/* ENOSPC and EDQUOT mean the disk (or the quota) is full: a condition that
 * passes once space is freed, so it is reported as VG_ENOSPC and the log
 * pauses instead of failing. Anything else is VG_EIO. */
static int io_error(long neg)
{
    return neg == -ENOSPC || neg == -EDQUOT ? VG_ENOSPC : VG_EIO;
}

static void close_quietly(const vg_seg_io_t *io, int fd)
{
    if (fd >= 0) {
        int rc = io->close(io->ctx, fd);
        if (rc < 0)
            VG_WARN(MOD, "close: %s", strerror(-rc));
    }
}

int vg_seg_fsync_dir(const vg_seg_io_t *io, const char *dir)
{
    int fd = io->open(io->ctx, dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) {
        VG_ERROR(MOD, "open directory %s: %s", dir, strerror(-fd));
        return VG_EIO;
    }
    int rc = io->fsync(io->ctx, fd);
    close_quietly(io, fd);
    if (rc < 0) {
        VG_ERROR(MOD, "fsync directory %s: %s", dir, strerror(-rc));
        return VG_EIO;
    }
    return VG_OK;
}

int vg_seg_name(char *out, size_t cap, uint64_t first_seq)
{
    int n = snprintf(out, cap, "%020" PRIu64 ".seg", first_seq);
    return n < 0 || (size_t)n >= cap ? VG_ENOSPC : VG_OK;
}

/* True if name starts with 20 decimal digits (stored in *v). */
static bool parse_digits20(const char *name, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 20; i++) {
        char c = name[i];
        if (c < '0' || c > '9')
            return false;
        uint64_t d = (uint64_t)(c - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

bool vg_seg_parse_name(const char *name, uint64_t *first_seq)
{
    return parse_digits20(name, first_seq) && strcmp(name + 20, ".seg") == 0;
}

static int path_of(char *out, size_t cap, const char *dir, uint64_t first_seq, const char *suffix)
{
    int n = snprintf(out, cap, "%s/%020" PRIu64 ".seg%s", dir, first_seq, suffix);
    if (n < 0 || (size_t)n >= cap) {
        VG_ERROR(MOD, "path too long under %s", dir);
        return VG_EINVAL;
    }
    return VG_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int vg_seg_list(const vg_seg_io_t *io, const char *dir, bool clean_tmp, uint64_t **firsts, size_t *count)
{
    int rc = VG_OK;
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    bool removed = false;
    *firsts = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return VG_ENOTFOUND;
        VG_ERROR(MOD, "opendir %s: %s", dir, strerror(errno));
        return VG_EIO;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                VG_ERROR(MOD, "readdir %s: %s", dir, strerror(errno));
                rc = VG_EIO;
                goto cleanup;
            }
            break;
        }
        uint64_t first;
        if (vg_seg_parse_name(de->d_name, &first)) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                uint64_t *nv = vg_realloc(VG_MEM_STREAM, v, ncap * sizeof *v);
                if (!nv) {
                    rc = VG_ENOMEM;
                    goto cleanup;
                }
                v = nv;
                cap = ncap;
            }
            v[n++] = first;
        } else if (clean_tmp && parse_digits20(de->d_name, &first) && strcmp(de->d_name + 20, ".seg.tmp") == 0) {
            char path[4096];
            if (path_of(path, sizeof path, dir, first, ".tmp") == VG_OK) {
                int urc = io->unlink(io->ctx, path);
                if (urc < 0 && urc != -ENOENT) {
                    VG_ERROR(MOD, "unlink %s: %s", path, strerror(-urc));
                    rc = VG_EIO;
                    goto cleanup;
                }
                VG_WARN(MOD, "removed unfinished segment %s", path);
                removed = true;
            }
        }
    }
    if (removed && (rc = vg_seg_fsync_dir(io, dir)) != VG_OK)
        goto cleanup;
    if (n)
        qsort(v, n, sizeof *v, cmp_u64);
    *firsts = v;
    *count = n;
    v = NULL;
cleanup:
    closedir(d);
    vg_free(v);
    return rc;
}

/* ---- writing ---- */

static int write_all(const vg_seg_io_t *io, int fd, const void *buf, size_t n, uint64_t off, const char *what)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = io->pwrite(io->ctx, fd, p, n, (off_t)off);
        if (w <= 0) {
            /* A zero-byte write makes no progress and would loop forever;
             * treat it like the disk refusing the data. */
            if (w < 0 && io_error(w) == VG_ENOSPC) {
                /* Not an error of the data: the log retries (logged there once per outage). */
                VG_DEBUG(MOD, "write %s at offset %" PRIu64 ": %s", what, off, strerror((int)-w));
                return VG_ENOSPC;
            }
            VG_ERROR(MOD, "write %s at offset %" PRIu64 ": %s", what, off, w < 0 ? strerror((int)-w) : "no progress");
            return VG_EIO;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return VG_OK;
}

/* An open segment at size bytes of data (alloc bytes of file), next record
 * next_seq; no zero fill and no early writeback until the log asks. */
static void segment_init(vg_segment_t *s, const vg_seg_io_t *io, int fd, uint32_t shard, uint64_t first_seq,
                         uint64_t next_seq, uint64_t size, uint64_t alloc)
{
    *s = (vg_segment_t){.io = io,
                        .fd = fd,
                        .shard = shard,
                        .first_seq = first_seq,
                        .next_seq = next_seq,
                        .size = size,
                        .alloc = alloc};
}

int vg_segment_create(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, int64_t created_ms,
                      vg_segment_t *out)
{
    char path[4096], tmp[4096];
    int rc, fd = -1;
    bool tmp_exists = false;
    out->fd = -1;
    if ((rc = path_of(path, sizeof path, dir, first_seq, "")) != VG_OK ||
        (rc = path_of(tmp, sizeof tmp, dir, first_seq, ".tmp")) != VG_OK)
        return rc;
    /* rename() would silently replace an existing segment; the log is the
     * only writer of its directory, so a check before is enough. */
    struct stat st;
    if (stat(path, &st) == 0)
        return VG_EEXIST; /* not logged: the caller knows whether that is expected */
    fd = io->open(io->ctx, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        if (io_error(fd) == VG_ENOSPC) {
            VG_DEBUG(MOD, "create %s: %s", tmp, strerror(-fd));
            return VG_ENOSPC;
        }
        VG_ERROR(MOD, "create %s: %s", tmp, strerror(-fd));
        return VG_EIO;
    }
    tmp_exists = true;
    uint8_t hdr[VG_SEG_HDR];
    memcpy(hdr, VG_SEG_MAGIC, 8);
    vg_put_le32(hdr + 8, VG_SEG_VERSION);
    vg_put_le32(hdr + 12, shard);
    vg_put_le64(hdr + 16, first_seq);
    vg_put_le64(hdr + 24, (uint64_t)created_ms);
    if ((rc = write_all(io, fd, hdr, sizeof hdr, 0, tmp)) != VG_OK)
        goto cleanup;
    /* The header must be on disk before the name appears, so that a segment
     * file found after a crash always has a complete header. */
    /* A failure here (and of the rename) concerns only the new, empty file,
     * which is removed: ENOSPC is worth a retry, as for a write. */
    int src = io->fdatasync(io->ctx, fd);
    if (src < 0) {
        VG_ERROR(MOD, "fdatasync %s: %s", tmp, strerror(-src));
        rc = io_error(src);
        goto cleanup;
    }
    src = io->rename(io->ctx, tmp, path);
    if (src < 0) {
        VG_ERROR(MOD, "rename %s: %s", tmp, strerror(-src));
        rc = io_error(src);
        goto cleanup;
    }
    tmp_exists = false;
    if ((rc = vg_seg_fsync_dir(io, dir)) != VG_OK) {
        /* The name may or may not survive a crash; take it back so that a
         * retry can create the segment again (best effort: it holds no
         * record, and a leftover is a valid empty segment). */
        (void)io->unlink(io->ctx, path);
        goto cleanup;
    }
    /* The descriptor opened on the temporary name now refers to the renamed
     * file (same inode), so it serves for appending. */
    segment_init(out, io, fd, shard, first_seq, first_seq, VG_SEG_HDR, VG_SEG_HDR);
    fd = -1;
cleanup:
    close_quietly(io, fd);
    if (tmp_exists)
        (void)io->unlink(io->ctx, tmp); /* failure path; the next open removes .tmp files anyway */
    return rc;
}

static void fill_ahead(vg_segment_t *s);

int vg_segment_write(vg_segment_t *s, const void *buf, size_t n, uint64_t records)
{
    char what[64];
    snprintf(what, sizeof what, "shard %u segment %" PRIu64, s->shard, s->first_seq);
    if (s->fd < 0) {
        VG_ERROR(MOD, "write %s: segment is closed", what);
        return VG_EIO;
    }
    int rc = write_all(s->io, s->fd, buf, n, s->size, what);
    if (rc != VG_OK)
        return rc;
    s->size += n;
    s->next_seq += records;
    if (s->alloc < s->size)
        s->alloc = s->size;
    if (s->prealloc && s->alloc - s->size < ZERO_BLOCK && s->size >= s->fill_at)
        fill_ahead(s);
    if (s->wb_step && s->size - s->wb_done >= s->wb_step) {
        /* A hint: its failure changes nothing that a later sync would not
         * report, so it is not checked. */
        (void)sync_file_range(s->fd, (off64_t)s->wb_done, (off64_t)(s->size - s->wb_done), SYNC_FILE_RANGE_WRITE);
        s->wb_done = s->size;
    }
    return VG_OK;
}

void vg_segment_writeback(vg_segment_t *s, uint64_t step)
{
    s->wb_step = step;
    s->wb_done = s->size; /* what is there already is the log's business */
}

void vg_segment_preallocate(vg_segment_t *s, uint64_t step)
{
    /* Whole zero blocks: a step that is not a multiple is rounded up. */
    s->prealloc = step ? (step + ZERO_BLOCK - 1) / ZERO_BLOCK * ZERO_BLOCK : 0;
}

/* Extends the zeros past the data to the next step boundary. Runs after the
 * data write of the same round, so the one fdatasync that follows makes both
 * durable; the data itself never waits for it. A failure (ENOSPC, most
 * likely) ends the fill where it got: the file is valid with any length of
 * zeros; the next try comes a step of data later (not one failing write per
 * append on a disk that is nearly full). */
static void fill_ahead(vg_segment_t *s)
{
    uint64_t target = ((s->size + ZERO_BLOCK) / s->prealloc + 1) * s->prealloc;
    while (s->alloc < target) {
        size_t n = target - s->alloc < ZERO_BLOCK ? (size_t)(target - s->alloc) : ZERO_BLOCK;
        ssize_t w = s->io->pwrite(s->io->ctx, s->fd, zero_block, n, (off_t)s->alloc);
        if (w <= 0) {
            VG_DEBUG(MOD, "shard %u segment %" PRIu64 ": zero fill at %" PRIu64 " stopped: %s", s->shard,
                     s->first_seq, s->alloc, w < 0 ? strerror((int)-w) : "no progress");
            s->fill_at = s->size + s->prealloc;
            return;
        }
        s->alloc += (uint64_t)w;
    }
}

void vg_segment_seal(vg_segment_t *s)
{
    if (s->fd < 0 || s->alloc <= s->size)
        return;
    int rc = s->io->ftruncate(s->io->ctx, s->fd, (off_t)s->size);
    if (rc == 0)
        rc = s->io->fsync(s->io->ctx, s->fd);
    if (rc < 0) {
        VG_WARN(MOD, "shard %u segment %" PRIu64 ": cannot cut the zeros written ahead at %" PRIu64 ": %s", s->shard,
                s->first_seq, s->size, strerror(-rc));
        return;
    }
    s->alloc = s->size;
}

int vg_segment_sync(vg_segment_t *s)
{
    if (s->fd < 0)
        return VG_EIO;
    int rc = s->io->fdatasync(s->io->ctx, s->fd);
    if (rc < 0) {
        VG_ERROR(MOD, "fdatasync shard %u segment %" PRIu64 ": %s", s->shard, s->first_seq, strerror(-rc));
        return VG_EIO;
    }
    return VG_OK;
}

int vg_segment_truncate(vg_segment_t *s, uint64_t size, uint64_t next_seq)
{
    if (s->fd < 0)
        return VG_EIO;
    int rc = s->io->ftruncate(s->io->ctx, s->fd, (off_t)size);
    if (rc == 0)
        rc = s->io->fsync(s->io->ctx, s->fd);
    if (rc < 0) {
        VG_ERROR(MOD, "truncate shard %u segment %" PRIu64 " to %" PRIu64 ": %s", s->shard, s->first_seq, size,
                 strerror(-rc));
        return VG_EIO;
    }
    s->size = size;
    s->alloc = size;
    s->next_seq = next_seq;
    return VG_OK;
}

void vg_segment_close(vg_segment_t *s)
{
    if (!s || s->fd < 0)
        return;
    close_quietly(s->io, s->fd);
    s->fd = -1;
}

/* ---- reading ---- */

/* Reads and checks the header of the file behind r->fd. */
static int check_header(vg_seg_reader_t *r, const char *path)
{
    uint8_t hdr[VG_SEG_HDR];
    size_t got = 0;
    while (got < sizeof hdr) {
        ssize_t n = r->io->pread(r->io->ctx, r->fd, hdr + got, sizeof hdr - got, (off_t)got);
        if (n < 0) {
            VG_ERROR(MOD, "read header of %s: %s", path, strerror((int)-n));
            return VG_EIO;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    const char *why = NULL;
    if (got < sizeof hdr)
        why = "short header";
    else if (memcmp(hdr, VG_SEG_MAGIC, 8) != 0)
        why = "bad magic";
    else if (vg_get_le32(hdr + 8) != VG_SEG_VERSION)
        why = vg_get_le32(hdr + 8) < VG_SEG_VERSION
                  ? "written in an older segment format that this build does not read (left untouched; "
                    "move the data directory aside or read it with the vigil that wrote it)"
                  : "written in a newer segment format than this build knows (left untouched)";
    else if (vg_get_le32(hdr + 12) != r->shard)
        why = "shard does not match its directory";
    else if (vg_get_le64(hdr + 16) != r->first_seq)
        why = "first sequence number does not match the file name";
    if (why) {
        VG_ERROR(MOD, "segment %s: %s", path, why);
        return VG_ECORRUPT;
    }
    r->created_ms = (int64_t)vg_get_le64(hdr + 24);
    return VG_OK;
}

static void reader_init(vg_seg_reader_t *r, const vg_seg_io_t *io, int fd, bool own_fd, uint32_t shard,
                        uint64_t first_seq)
{
    memset(r, 0, sizeof *r);
    r->io = io;
    r->fd = fd;
    r->own_fd = own_fd;
    r->shard = shard;
    r->first_seq = first_seq;
    r->next_seq = first_seq;
    r->off = VG_SEG_HDR;
}

/* Opens existing segment first_seq of dir with flags; its path goes to
 * path[0..cap). VG_OK (*fd set), VG_ENOTFOUND (no such file, not logged),
 * VG_EIO (logged), or path_of's error. */
static int open_existing(const vg_seg_io_t *io, const char *dir, uint64_t first_seq, int flags, char *path, size_t cap,
                         int *fd)
{
    int rc = path_of(path, cap, dir, first_seq, "");
    if (rc != VG_OK)
        return rc;
    *fd = io->open(io->ctx, path, flags, 0);
    if (*fd >= 0)
        return VG_OK;
    if (*fd == -ENOENT)
        return VG_ENOTFOUND;
    VG_ERROR(MOD, "open %s: %s", path, strerror(-*fd));
    return VG_EIO;
}

int vg_seg_reader_open(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, vg_seg_reader_t *r)
{
    char path[4096];
    int rc;
    reader_init(r, io, -1, true, shard, first_seq);
    int fd;
    if ((rc = open_existing(io, dir, first_seq, O_RDONLY, path, sizeof path, &fd)) != VG_OK)
        return rc;
    r->fd = fd;
    if ((rc = check_header(r, path)) != VG_OK) {
        vg_seg_reader_close(r);
        return rc;
    }
    return VG_OK;
}

/* Makes buf[pos..len) hold at least need bytes, reading from the file.
 * Returns VG_OK, VG_AGAIN if the file ends first, VG_ENOMEM or VG_EIO. */
static int fill(vg_seg_reader_t *r, size_t need)
{
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->off += r->pos;
        r->len -= r->pos;
        r->pos = 0;
    }
    size_t chunk = r->at_zeros ? TAIL_CHUNK : READ_CHUNK;
    size_t want = need > chunk ? need : chunk;
    if (r->cap < want) {
        uint8_t *nb = vg_realloc(VG_MEM_STREAM, r->buf, want);
        if (!nb)
            return VG_ENOMEM;
        r->buf = nb;
        r->cap = want;
    }
    while (r->len < need) {
        ssize_t n = r->io->pread(r->io->ctx, r->fd, r->buf + r->len, want - r->len, (off_t)(r->off + r->len));
        if (n < 0) {
            VG_ERROR(MOD, "read shard %u segment %" PRIu64 " at %" PRIu64 ": %s", r->shard, r->first_seq,
                     r->off + r->len, strerror((int)-n));
            return VG_EIO;
        }
        if (n == 0)
            return VG_AGAIN;
        r->len += (size_t)n;
    }
    return VG_OK;
}

int vg_seg_reader_next(vg_seg_reader_t *r, vg_record_t *rec)
{
    bool reread = false, fresh = false;
    for (;;) {
        size_t have = r->len - r->pos;
        int rc = have ? vg_record_decode(r->buf + r->pos, have, rec) : VG_AGAIN;
        if (rc > 0 && rec->seq != r->next_seq)
            rc = VG_ECORRUPT;
        if (rc > 0) {
            r->pos += (size_t)rc;
            r->next_seq++;
            rec->shard = r->shard;
            return VG_OK;
        }
        size_t need;
        if (rc == VG_ECORRUPT && vg_get_le32(r->buf + r->pos) == 0) {
            /* Zeros written ahead (or a record a writer is still copying
             * in): the end of the data — once bytes read in this call say
             * so; bytes buffered by an earlier one may predate records the
             * caller knows to be durable, and VG_AGAIN makes the log look at
             * the next segment. */
            r->len = r->pos;
            r->at_zeros = true;
            if (fresh)
                return VG_AGAIN;
            need = VG_RECORD_HDR;
        } else if (rc == VG_ECORRUPT) {
            /* Bytes buffered earlier may have been read while a writer was
             * still copying them in; judge only bytes read just now. */
            r->len = r->pos;
            if (reread)
                return VG_ECORRUPT;
            reread = true;
            need = VG_RECORD_HDR;
        } else {
            /* Incomplete: a valid header tells the full size. Records
             * reach the end of what was read, so read in large chunks. */
            need = have >= VG_RECORD_HDR ? 8 + (size_t)vg_get_le32(r->buf + r->pos) : VG_RECORD_HDR;
            if (have)
                r->at_zeros = false;
        }
        rc = fill(r, need);
        if (rc == VG_AGAIN) {
            /* Forget the partial record: a writer may still complete it, or
             * cut it and write something else there after a restart. */
            r->len = r->pos;
            return VG_AGAIN;
        }
        if (rc != VG_OK)
            return rc;
        fresh = true;
    }
}

int vg_seg_info(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, vg_seg_info_t *out)
{
    vg_seg_reader_t r;
    memset(out, 0, sizeof *out);
    int rc = vg_seg_reader_open(io, dir, shard, first_seq, &r);
    if (rc != VG_OK)
        return rc;
    struct stat st;
    if (fstat(r.fd, &st) != 0) {
        VG_ERROR(MOD, "fstat shard %u segment %" PRIu64 ": %s", shard, first_seq, strerror(errno));
        rc = VG_EIO;
    } else {
        out->created_ms = r.created_ms;
        out->bytes = (uint64_t)st.st_size;
        out->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    }
    vg_seg_reader_close(&r);
    return rc;
}

int vg_seg_remove(const vg_seg_io_t *io, const char *dir, uint64_t first_seq)
{
    char path[4096];
    int rc = path_of(path, sizeof path, dir, first_seq, "");
    if (rc != VG_OK)
        return rc;
    rc = io->unlink(io->ctx, path);
    if (rc == -ENOENT)
        return VG_ENOTFOUND;
    if (rc < 0) {
        VG_ERROR(MOD, "unlink %s: %s", path, strerror(-rc));
        return VG_EIO;
    }
    return VG_OK;
}

void vg_seg_reader_close(vg_seg_reader_t *r)
{
    if (!r)
        return;
    if (r->own_fd && r->fd >= 0 && r->io)
        close_quietly(r->io, r->fd);
    r->fd = -1;
    vg_free(r->buf);
    r->buf = NULL;
    r->cap = r->len = r->pos = 0;
}

/* ---- recovery ---- */

/* *zero = whether bytes [from, to) of fd are all zero. VG_OK or VG_EIO. */
static int all_zero(const vg_seg_io_t *io, int fd, uint64_t from, uint64_t to, bool *zero)
{
    uint8_t buf[4096];
    *zero = true;
    while (from < to) {
        size_t n = to - from < sizeof buf ? (size_t)(to - from) : sizeof buf;
        ssize_t got = io->pread(io->ctx, fd, buf, n, (off_t)from);
        if (got < 0) {
            VG_ERROR(MOD, "read at %" PRIu64 ": %s", from, strerror((int)-got));
            return VG_EIO;
        }
        if (got == 0)
            return VG_OK; /* shorter than fstat said: nothing more to judge */
        for (ssize_t i = 0; i < got; i++)
            if (buf[i]) {
                *zero = false;
                return VG_OK;
            }
        from += (uint64_t)got;
    }
    return VG_OK;
}

int vg_segment_recover(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, vg_segment_t *out,
                       vg_seg_recovery_t *rep)
{
    char path[4096];
    int rc;
    vg_seg_reader_t r;
    reader_init(&r, io, -1, false, shard, first_seq);
    out->fd = -1;
    memset(rep, 0, sizeof *rep);
    int fd;
    if ((rc = open_existing(io, dir, first_seq, O_RDWR, path, sizeof path, &fd)) != VG_OK)
        return rc;
    r.fd = fd;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        VG_ERROR(MOD, "fstat %s: %s", path, strerror(errno));
        rc = VG_EIO;
        goto cleanup;
    }
    if ((rc = check_header(&r, path)) != VG_OK)
        goto cleanup;
    vg_record_t rec;
    uint64_t records = 0;
    while ((rc = vg_seg_reader_next(&r, &rec)) == VG_OK)
        records++;
    if (rc != VG_AGAIN && rc != VG_ECORRUPT)
        goto cleanup;
    uint64_t valid = vg_seg_reader_offset(&r);
    uint64_t size = (uint64_t)st.st_size;
    bool zeros = false;
    if (size > valid && rc == VG_AGAIN) {
        int zrc = all_zero(io, fd, valid, size, &zeros);
        if (zrc != VG_OK) {
            rc = zrc;
            goto cleanup;
        }
    }
    if (zeros) {
        rep->zero_tail = size - valid;
    } else if (size > valid) {
        int trc = io->ftruncate(io->ctx, fd, (off_t)valid);
        if (trc == 0)
            trc = io->fsync(io->ctx, fd);
        if (trc < 0) {
            VG_ERROR(MOD, "truncate %s to %" PRIu64 ": %s", path, valid, strerror(-trc));
            rc = VG_EIO;
            goto cleanup;
        }
        VG_WARN(MOD, "%s: cut %" PRIu64 " bytes of %s tail at offset %" PRIu64 " (next seq %" PRIu64 ")", path,
                size - valid, rc == VG_ECORRUPT ? "corrupt" : "incomplete", valid, r.next_seq);
        rep->cut_bytes = size - valid;
    }
    rep->records = records;
    rep->next_seq = r.next_seq;
    segment_init(out, io, fd, shard, first_seq, r.next_seq, valid, zeros ? size : valid);
    fd = -1;
    rc = VG_OK;
cleanup:
    vg_seg_reader_close(&r);
    close_quietly(io, fd);
    return rc;
}
