/* test_fsutil.c — unit tests for the checked file helpers (src/core/fsutil.c).
 *
 * vg_fs_write_atomic creates and replaces a file, overwrites a stale temp
 * file, and on a full disk returns VG_ENOSPC, keeps the old file and
 * removes its temp file, then succeeds once there is space again. The full
 * disk is real: a small tmpfs filled with a filler file (out of blocks) or
 * with empty files (out of inodes), mounted in a child process's own mount
 * namespace so that nothing of it is seen outside the child or outlives it.
 * Without CAP_SYS_ADMIN those tests say they skipped and why. Other failures
 * (a directory where the temp file goes) are VG_EIO, not VG_ENOSPC. */
#include "core/fsutil.h"

#include "core/alloc.h"
#include "core/diag.h"
#include "core/err.h"
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Whether path holds exactly want[0..n). */
static bool holds(const char *path, const void *want, size_t n)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vg_fs_read_all(path, (size_t)1 << 24, &buf, &len) != VG_OK)
        return false;
    bool same = len == n && memcmp(buf, want, n) == 0;
    vg_free(buf);
    return same;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void test_replace(void)
{
    char *dir = vt_tmpdir_new("fsutil");
    VT_REQUIRE(dir);
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/ckpt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    uint8_t *buf = NULL;
    size_t len = 0;
    VT_EQ_INT(vg_fs_read_all(path, 100, &buf, &len), VG_ENOTFOUND);
    VT_EQ_INT(vg_fs_write_atomic(path, "first", 5), VG_OK);
    VT_CHECK(holds(path, "first", 5));
    VT_CHECK(!exists(tmp));
    VT_EQ_INT(vg_fs_write_atomic(path, "second, longer", 14), VG_OK);
    VT_CHECK(holds(path, "second, longer", 14));
    VT_EQ_INT(vg_fs_write_atomic(path, "", 0), VG_OK);
    VT_CHECK(holds(path, "", 0));
    /* A temp file left by a crash is overwritten, not appended to. */
    FILE *f = fopen(tmp, "w");
    VT_REQUIRE(f);
    fputs("stale temp contents from before a crash", f);
    fclose(f);
    VT_EQ_INT(vg_fs_write_atomic(path, "third", 5), VG_OK);
    VT_CHECK(holds(path, "third", 5));
    VT_CHECK(!exists(tmp));
    VT_EQ_INT(vg_fs_read_all(path, 4, &buf, &len), VG_ETOOBIG);
    vt_tmpdir_free(dir);
}

/* A failure that is not about space: VG_EIO, and the old file is kept. */
static void test_other_failure(void)
{
    char *dir = vt_tmpdir_new("fsutil");
    VT_REQUIRE(dir);
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/ckpt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    VT_EQ_INT(vg_fs_write_atomic(path, "old", 3), VG_OK);
    VT_REQUIRE(mkdir(tmp, 0700) == 0); /* the temp file cannot be created */
    VT_EQ_INT(vg_fs_write_atomic(path, "new", 3), VG_EIO);
    VT_CHECK(holds(path, "old", 3));
    VT_REQUIRE(rmdir(tmp) == 0);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir/ckpt", dir);
    VT_EQ_INT(vg_fs_write_atomic(missing, "x", 1), VG_EIO);
    vt_tmpdir_free(dir);
}

/* ---- a full disk ---------------------------------------------------------------------------- */

enum { SKIP = 77 };

/* Runs body(dir) in a child process, on a tmpfs mounted at dir with the
 * given options, in a mount namespace of the child's own. Returns the
 * child's verdict as a check. */
static void on_tmpfs(const char *opts, void (*body)(const char *dir))
{
    char *dir = vt_tmpdir_new("fsutil");
    VT_REQUIRE(dir);
    fflush(stdout);
    pid_t pid = fork();
    VT_REQUIRE(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
            printf("  skipped: cannot make a mount namespace (%s); needs CAP_SYS_ADMIN\n", strerror(errno));
            fflush(stdout);
            _exit(SKIP);
        }
        if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
            printf("  skipped: cannot mount a tmpfs (%s) on %s: %s\n", opts, dir, strerror(errno));
            fflush(stdout);
            _exit(SKIP);
        }
        int before = vt_failed_checks;
        body(dir);
        umount2(dir, MNT_DETACH);
        fflush(stdout);
        _exit(vt_failed_checks != before ? 1 : 0);
    }
    int status = 0;
    VT_REQUIRE(waitpid(pid, &status, 0) == pid);
    VT_CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == SKIP));
    vt_tmpdir_free(dir);
}

/* Writes zeros to path until the file system refuses; returns that errno. */
static int fill_blocks(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    static char zero[65536];
    int err = 0;
    for (size_t chunk = sizeof zero; chunk >= 512; chunk /= 8)
        for (;;) {
            if (write(fd, zero, chunk) < 0) {
                err = errno;
                break;
            }
        }
    close(fd);
    return err;
}

static void full_blocks_body(const char *dir)
{
    char path[512], tmp[600], filler[512];
    snprintf(path, sizeof path, "%s/ckpt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    static uint8_t big[256 << 10];
    memset(big, 'n', sizeof big);
    VT_EQ_INT(vg_fs_write_atomic(path, "the old checkpoint", 18), VG_OK);
    VT_EQ_INT(fill_blocks(filler), ENOSPC);
    for (int i = 0; i < 3; i++) { /* retrying while full changes nothing */
        VT_EQ_INT(vg_fs_write_atomic(path, big, sizeof big), VG_ENOSPC);
        VT_CHECK(holds(path, "the old checkpoint", 18));
        VT_CHECK(!exists(tmp));
    }
    VT_REQUIRE(unlink(filler) == 0);
    VT_EQ_INT(vg_fs_write_atomic(path, big, sizeof big), VG_OK);
    VT_CHECK(holds(path, big, sizeof big));
    VT_CHECK(!exists(tmp));
}

/* Out of blocks: the write of the temp file fails. */
static void test_full_disk(void)
{
    on_tmpfs("size=1m,mode=0700", full_blocks_body);
}

static void full_inodes_body(const char *dir)
{
    char path[512], tmp[600], name[600];
    snprintf(path, sizeof path, "%s/ckpt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    VT_EQ_INT(vg_fs_write_atomic(path, "old", 3), VG_OK);
    int n = 0, err = 0;
    for (; n < 1000; n++) {
        snprintf(name, sizeof name, "%s/f%d", dir, n);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            err = errno;
            break;
        }
        close(fd);
    }
    VT_REQUIRE(err == ENOSPC && n > 0);
    VT_EQ_INT(vg_fs_write_atomic(path, "new", 3), VG_ENOSPC);
    VT_CHECK(holds(path, "old", 3));
    VT_CHECK(!exists(tmp));
    snprintf(name, sizeof name, "%s/f0", dir);
    VT_REQUIRE(unlink(name) == 0);
    VT_EQ_INT(vg_fs_write_atomic(path, "new", 3), VG_OK);
    VT_CHECK(holds(path, "new", 3));
}

/* Out of inodes: the temp file cannot even be created. */
static void test_full_inodes(void)
{
    on_tmpfs("size=1m,nr_inodes=16,mode=0700", full_inodes_body);
}

int main(void)
{
    vg_diag_set_level(VG_LOG_WARN);
    VT_RUN(test_replace);
    VT_RUN(test_other_failure);
    VT_RUN(test_full_disk);
    VT_RUN(test_full_inodes);
    return VT_DONE();
}
