/* fsutil.c — see fsutil.h. */
#include "core/fsutil.h"

#include "core/alloc.h"
#include "core/diag.h"
#include "core/err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int vg_fs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return VG_EIO;
    int rc = fsync(fd) == 0 ? VG_OK : VG_EIO;
    int e = errno;
    close(fd);
    errno = e; /* callers log the fsync's errno, not close's */
    return rc;
}

static void parent_of(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

int vg_fs_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return VG_EINVAL;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0755) == 0) {
            char parent[PATH_MAX];
            parent_of(buf, parent, sizeof parent);
            if (vg_fs_fsync_dir(parent) != VG_OK) {
                VG_ERROR("fs", "fsync of %s failed: %s", parent, strerror(errno));
                return VG_EIO;
            }
        } else if (errno != EEXIST) {
            VG_ERROR("fs", "cannot create directory %s: %s", buf, strerror(errno));
            return VG_EIO;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    return VG_OK;
}

/* What a failed system call's errno means to a caller: no space (a full
 * disk or a quota, which may pass) or anything else. */
static int io_code(int e)
{
    return e == ENOSPC || e == EDQUOT ? VG_ENOSPC : VG_EIO;
}

/* A full disk is logged by the caller, which knows whether this is the
 * first failure of a streak (a checkpoint retried each second would
 * otherwise log a line each time); anything else is an error here. */
#define FS_FAIL(e, ...)                                                                                                \
    do {                                                                                                               \
        if (io_code(e) == VG_ENOSPC)                                                                                   \
            VG_DEBUG("fs", __VA_ARGS__);                                                                               \
        else                                                                                                           \
            VG_ERROR("fs", __VA_ARGS__);                                                                               \
    } while (0)

int vg_fs_write_atomic(const char *path, const void *buf, size_t len)
{
    return vg_fs_write_atomic_mode(path, buf, len, 0644);
}

int vg_fs_write_atomic_mode(const char *path, const void *buf, size_t len, unsigned mode)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    int rc = VG_EIO, e;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return VG_EINVAL;
    /* A temp file left by a crash is removed first, so the new one is
     * created with `mode` (O_TRUNC alone would keep an old file's mode). */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        e = errno; /* before logging, which may change errno */
        FS_FAIL(e, "cannot create %s: %s", tmp, strerror(e));
        return io_code(e); /* no inode or directory block left: ENOSPC */
    }
    const uint8_t *p = buf;
    size_t left = len;
    while (left) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            e = k < 0 ? errno : EIO;
            FS_FAIL(e, "write to %s failed: %s", tmp, k < 0 ? strerror(e) : "short write");
            rc = io_code(e);
            goto cleanup;
        }
        p += k;
        left -= (size_t)k;
    }
    /* ENOSPC here too means "try later" (some file systems allocate only
     * now): the temp file is removed and written whole next time, so pages
     * the kernel may have dropped after the failed sync are never relied
     * on. */
    if (fdatasync(fd) != 0) {
        e = errno;
        FS_FAIL(e, "fdatasync of %s failed: %s", tmp, strerror(e));
        rc = io_code(e);
        goto cleanup;
    }
    int crc = close(fd);
    fd = -1;
    if (crc != 0) {
        e = errno;
        FS_FAIL(e, "close of %s failed: %s", tmp, strerror(e));
        rc = io_code(e);
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        e = errno; /* ENOSPC if the directory must grow */
        FS_FAIL(e, "rename %s -> %s failed: %s", tmp, path, strerror(e));
        rc = io_code(e);
        goto cleanup;
    }
    /* From here on the new contents are in place; only their durability
     * is in doubt if the directory fsync fails. */
    parent_of(path, dir, sizeof dir);
    rc = vg_fs_fsync_dir(dir);
    if (rc)
        VG_ERROR("fs", "fsync of directory %s failed: %s", dir, strerror(errno));
    return rc;
cleanup:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int vg_fs_read_all(const char *path, size_t max_len, uint8_t **out, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? VG_ENOTFOUND : VG_EIO;
    int rc = VG_EIO;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto cleanup;
    if ((size_t)st.st_size > max_len) {
        rc = VG_ETOOBIG;
        goto cleanup;
    }
    buf = vg_malloc(VG_MEM_CORE, (size_t)st.st_size + 1);
    if (!buf) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    buf = NULL;
    rc = VG_OK;
cleanup:
    vg_free(buf);
    close(fd);
    return rc;
}
