/* segment.h — one segment file of one shard (internal to src/stream; the log
 * (log.c, commit.c, retention.c, read.c) and the stream tests are its only users).
 *
 * A segment is "<first_seq as 20-digit zero-padded decimal>.seg" in its
 * shard's directory: a 32-byte header, then records (record.h) back to back
 * with consecutive sequence numbers starting at first_seq. The byte layout is
 * documented at the top of segment.c.
 *
 * Owns: creating a segment (atomically, header first), appending bytes and
 * syncing them, the recovery scan that truncates a torn tail, and a buffered
 * sequential reader that tolerates a file still being appended to. Does not
 * own: which segment is active, when to roll or sync (commit.c).
 *
 * All file I/O goes through a vg_seg_io_t so that tests can inject short
 * writes and failed syncs (STYLE.md §11). None of these functions is
 * thread-safe on the same object; separate objects may be used concurrently. */
#ifndef VG_STREAM_SEGMENT_H
#define VG_STREAM_SEGMENT_H

#include "stream/record.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VG_SEG_HDR 32
#define VG_SEG_MAGIC "VIGILSEG"
/* 2: record CRCs are CRC-32C (1 used zlib CRC-32). An older segment is
 * refused at open rather than read with the wrong checksum, which would
 * look like a torn tail and be truncated. */
#define VG_SEG_VERSION 2u
/* "<20 digits>.seg" plus NUL. */
#define VG_SEG_NAME_MAX 25

/* File operations. Each returns >= 0 on success (a descriptor for open, a
 * byte count for pread/pwrite, 0 otherwise) or -errno on failure; none of them
 * sets errno for the caller to read. The defaults retry EINTR. ctx is passed
 * back to every call. A test copies vg_seg_io_default(), replaces a few
 * members and delegates the rest. */
typedef struct vg_seg_io {
    int (*open)(void *ctx, const char *path, int flags, mode_t mode);
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, off_t off);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, off_t off);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync)(void *ctx, int fd);
    int (*ftruncate)(void *ctx, int fd, off_t len);
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    int (*close)(void *ctx, int fd);
    void *ctx;
} vg_seg_io_t;

/* The real system calls. Static storage; never freed. */
const vg_seg_io_t *vg_seg_io_default(void);

/* fsyncs directory dir (after creating, renaming or removing an entry).
 * Returns VG_OK or VG_EIO (logged). */
int vg_seg_fsync_dir(const vg_seg_io_t *io, const char *dir);

/* Writes "<first_seq 20 digits>.seg" into out[0..cap). VG_OK or VG_ENOSPC. */
int vg_seg_name(char *out, size_t cap, uint64_t first_seq);
/* True if name is exactly "<20 digits>.seg"; stores the number in *first_seq. */
bool vg_seg_parse_name(const char *name, uint64_t *first_seq);

/* Lists the segments of directory dir: *firsts receives a sorted array of
 * first sequence numbers (caller frees with vg_free; NULL when *count is 0).
 * Also removes leftover "*.seg.tmp" files of an interrupted creation when
 * clean_tmp is set. VG_OK, VG_ENOTFOUND if dir is missing, VG_ENOMEM, VG_EIO. */
int vg_seg_list(const vg_seg_io_t *io, const char *dir, bool clean_tmp, uint64_t **firsts, size_t *count);

/* An open segment being appended to. Fields are read-only for users. */
typedef struct {
    const vg_seg_io_t *io;
    int fd; /* -1 when closed */
    uint32_t shard;
    uint64_t first_seq;
    uint64_t next_seq; /* sequence number the next appended record must carry */
    uint64_t size;     /* bytes of the file that are valid = offset of the next append */
    uint64_t alloc;    /* file length (>= size): past size the file holds zeros written ahead */
    uint64_t prealloc; /* zero-fill step (vg_segment_preallocate); 0: plain appends */
    uint64_t fill_at;  /* after a refused zero fill: no new try before size reaches this */
    uint64_t wb_step;  /* vg_segment_writeback: start writeback every this many bytes (0: never) */
    uint64_t wb_done;  /* writeback started up to here */
} vg_segment_t;

/* What recovery found in a segment. */
typedef struct {
    uint64_t records;   /* complete, valid records kept */
    uint64_t cut_bytes; /* bytes removed from the tail */
    uint64_t zero_tail; /* bytes of zeros written ahead, kept after the last record */
    uint64_t next_seq;  /* sequence number after the last kept record */
} vg_seg_recovery_t;

/* Creates segment first_seq of shard in dir: the header is written to
 * "<name>.tmp", synced, renamed into place and the directory synced, so a
 * segment file never exists without its complete header. Fails with
 * VG_EEXIST if the segment already exists, VG_ENOSPC when the disk or quota
 * is full (nothing is left behind: a retry may follow), VG_EIO otherwise. On
 * success *out is open for append (size VG_SEG_HDR) and owned by the caller
 * (vg_segment_close). */
int vg_segment_create(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, int64_t created_ms,
                      vg_segment_t *out);

/* Opens an existing segment for append after checking it: verifies the
 * header against shard and first_seq, walks the records verifying each CRC and
 * that sequence numbers run first_seq, first_seq+1, ...; at the first bad or
 * incomplete byte the file is truncated (ftruncate + fsync) and the cut is
 * reported in *rep — unless everything from there to the end of the file is
 * zeros written ahead (vg_segment_preallocate): that tail is kept (alloc) and
 * is no cut. VG_OK, VG_ENOTFOUND, VG_ECORRUPT (bad header: the file is
 * left alone), VG_ENOMEM, VG_EIO. */
int vg_segment_recover(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, vg_segment_t *out,
                       vg_seg_recovery_t *rep);

/* Appends buf[0..n), which holds `records` encoded records, at s->size,
 * completing short writes. On success advances size and next_seq. On failure
 * returns VG_ENOSPC (the disk or quota is full: ENOSPC/EDQUOT, worth a retry
 * once space is freed; not logged as an error) or VG_EIO (logged), and leaves
 * size and next_seq unchanged; the file may then hold a partial tail past
 * size (see vg_segment_truncate). */
int vg_segment_write(vg_segment_t *s, const void *buf, size_t n, uint64_t records);

/* fdatasync. VG_OK or VG_EIO (logged). */
int vg_segment_sync(vg_segment_t *s);

/* Makes later writes fill the file with zeros ahead of the data, step bytes
 * at a time (0 turns it off). Why: an fdatasync after an append that grows
 * the file must also commit the file system's journal (new size, new
 * blocks); one that only overwrites blocks already written flushes just the
 * data. Measured on ext4 (virtio disk, 4 files synced in parallel as by the
 * committer and its helpers): p50 0.68-0.74 ms per round with appends,
 * 0.38-0.47 ms over zeros written ahead (posix_fallocate's unwritten
 * extents: 0.52-0.72 ms, as they still need a journal commit when first
 * written). The zeros cost one write of step bytes per step of data and one
 * journal commit per step. A failed zero fill (a full disk) is not an error:
 * the data is then appended as without it. */
void vg_segment_preallocate(vg_segment_t *s, uint64_t step);

/* Makes writes start the kernel's writeback of the data every step bytes
 * (sync_file_range, SYNC_FILE_RANGE_WRITE: no wait, not a durability
 * point). Why: a log that does not fdatasync each commit still syncs a
 * segment when it rolls past it, and that sync would otherwise write back a
 * whole segment of dirty page cache inside one commit round (measured: p99
 * publish→PUBACK 84-98 ms in stalls of up to 288 ms at 20,000 events/s with
 * --fsync none and 64 MiB segments). 0 turns it off. */
void vg_segment_writeback(vg_segment_t *s, uint64_t step);

/* A segment that is finished (the log rolled past it) is cut back to its
 * data: the zeros written ahead go (ftruncate + fsync), so that a finished
 * segment's file size is its data again. Best effort: a failure is logged
 * and harmless (readers treat zeros as the end of the data). */
void vg_segment_seal(vg_segment_t *s);

/* Cuts the file back to size bytes (whose last record is next_seq - 1) and
 * fsyncs; used to undo a write whose sync failed. VG_OK or VG_EIO. */
int vg_segment_truncate(vg_segment_t *s, uint64_t size, uint64_t next_seq);

/* Closes the descriptor (no sync: the caller decides). NULL and closed
 * segments are accepted. */
void vg_segment_close(vg_segment_t *s);

/* A buffered sequential reader over one segment. It reads with pread in
 * chunks, so the page cache serves recently written data. At the current end
 * of the data (the end of the file, zeros written ahead, or inside a
 * partial record) it returns VG_AGAIN and forgets the partial bytes, so that
 * a later call reads the file again and sees what a writer has appended (or
 * rewritten after truncating) since. */
typedef struct {
    const vg_seg_io_t *io;
    int fd;
    bool own_fd;
    uint32_t shard;
    uint64_t first_seq;
    uint64_t next_seq; /* sequence number of the next record to return */
    int64_t created_ms; /* from the header */
    uint64_t off;      /* file offset of buf[0] */
    uint8_t *buf;
    size_t cap, len, pos; /* buf[pos..len) read but not yet returned */
    bool at_zeros;        /* the last read ended at zeros written ahead: read a small chunk next */
} vg_seg_reader_t;

/* Opens segment first_seq of shard in dir for reading and checks its header.
 * VG_OK, VG_ENOTFOUND (no such file), VG_ECORRUPT (bad header), VG_ENOMEM,
 * VG_EIO. On success r is owned by the caller (vg_seg_reader_close). */
int vg_seg_reader_open(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, vg_seg_reader_t *r);

/* Next record; rec's pointers stay valid until the next call or close, and
 * rec->shard is set. VG_OK; VG_AGAIN at the current end of the file;
 * VG_ECORRUPT when the bytes at the current position are not a valid record
 * with the expected sequence number (after one fresh re-read, so that bytes
 * read while a writer was still copying them are not mistaken for damage);
 * VG_ENOMEM; VG_EIO. After VG_AGAIN or VG_ECORRUPT the reader stays at the
 * same record and may be called again. */
int vg_seg_reader_next(vg_seg_reader_t *r, vg_record_t *rec);

/* File offset just past the last record returned. */
static inline uint64_t vg_seg_reader_offset(const vg_seg_reader_t *r)
{
    return r->off + r->pos;
}

/* What retention needs to know of a segment without reading its records. */
typedef struct {
    int64_t created_ms; /* header: when the segment was created (epoch ms) */
    uint64_t bytes;     /* file size */
    int64_t mtime_ms;   /* file modification time: its last write (epoch ms) */
} vg_seg_info_t;

/* Checks segment first_seq's header and fills *out. VG_OK, VG_ENOTFOUND,
 * VG_ECORRUPT (bad header), VG_EIO. */
int vg_seg_info(const vg_seg_io_t *io, const char *dir, uint32_t shard, uint64_t first_seq, vg_seg_info_t *out);

/* Removes segment first_seq from dir (the caller fsyncs the directory).
 * VG_OK, VG_ENOTFOUND (already gone), VG_EIO (logged). A reader that has the
 * file open keeps reading it. */
int vg_seg_remove(const vg_seg_io_t *io, const char *dir, uint64_t first_seq);

/* Closes the file (if owned) and frees the buffer. Accepts a zeroed reader. */
void vg_seg_reader_close(vg_seg_reader_t *r);

#endif
