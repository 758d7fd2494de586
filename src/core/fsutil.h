/* fsutil.h — small, checked file-system helpers: mkdir -p, whole-file
 * atomic replacement (temp file, fsync, rename, fsync the directory) and
 * whole-file reads. Every return code is checked and reported as VG_E*. */
#ifndef VG_CORE_FSUTIL_H
#define VG_CORE_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Creates path and its parents (mode 0755); existing directories are fine.
 * Newly created directories are made durable by fsyncing their parents. */
int vg_fs_mkdir_p(const char *path);
/* fsyncs directory dir (so a file created or renamed in it survives a
 * crash). VG_OK or VG_EIO. */
int vg_fs_fsync_dir(const char *dir);

/* Replaces path with buf[0..len) atomically and durably: after a crash the
 * file holds either the old or the new contents, never a mix. Writes
 * "<path>.tmp", fdatasyncs it, renames it over path and fsyncs the
 * directory. Returns VG_OK; VG_ENOSPC when the disk (or a quota) is full at
 * any step up to the rename: then path is untouched, the temp file is
 * removed, and calling again once there is space is all it takes; VG_EIO
 * for other failures (the same holds for them, except a failed directory
 * fsync, which comes after the rename: path then has the new contents, not
 * yet known to be durable); VG_EINVAL for a path too long. Failures are
 * logged as errors, except VG_ENOSPC (debug level): the caller reports a
 * full disk, once per streak of retries. */
int vg_fs_write_atomic(const char *path, const void *buf, size_t len);
/* The same with the file's permission bits chosen by the caller (0600 for a
 * private key: the temp file is created with them, so the contents are never
 * readable by others, not even between create and rename). */
int vg_fs_write_atomic_mode(const char *path, const void *buf, size_t len, unsigned mode);

/* Reads the whole file into a new buffer (caller frees with vg_free).
 * VG_ENOTFOUND if it does not exist, VG_ETOOBIG past max_len. */
int vg_fs_read_all(const char *path, size_t max_len, uint8_t **out, size_t *out_len);

#endif
