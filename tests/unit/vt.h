/* vt.h — the unit-test harness: one binary per module, one line per test.
 *
 * Each test is a function; VT_CHECK records a failure (with file:line and
 * the expression) and carries on, VT_REQUIRE returns from the test. The
 * runner (tests/run.sh) counts the "PASS"/"FAIL" lines of every binary.
 *
 * A test that needs files works in its own directory:
 *   char *dir = vt_tmpdir_new("kv");   a fresh, empty /tmp/vg-test-kv.XXXXXX
 *                                      (the caller owns the path; NULL if it
 *                                      could not be made: VT_REQUIRE it)
 *   vt_tmpdir_free(dir);               removes it with everything in it
 *                                      and frees the path (NULL: nothing) */
#ifndef VG_TESTS_VT_H
#define VG_TESTS_VT_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int vt_failed_checks;
static int vt_pass, vt_fail;

#define VT_CHECK(cond)                                                                                                 \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stdout, "  check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                                  \
            vt_failed_checks++;                                                                                        \
        }                                                                                                              \
    } while (0)

#define VT_REQUIRE(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stdout, "  required check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            vt_failed_checks++;                                                                                        \
            return;                                                                                                    \
        }                                                                                                              \
    } while (0)

#define VT_EQ_INT(a, b)                                                                                                \
    do {                                                                                                               \
        long long vt_a = (long long)(a), vt_b = (long long)(b);                                                        \
        if (vt_a != vt_b) {                                                                                            \
            fprintf(stdout, "  check failed %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, vt_a,       \
                    vt_b);                                                                                             \
            vt_failed_checks++;                                                                                        \
        }                                                                                                              \
    } while (0)

#define VT_RUN(fn)                                                                                                     \
    do {                                                                                                               \
        int vt_before = vt_failed_checks;                                                                              \
        fn();                                                                                                          \
        if (vt_failed_checks == vt_before) {                                                                           \
            vt_pass++;                                                                                                 \
            fprintf(stdout, "PASS %s\n", #fn);                                                                         \
        } else {                                                                                                       \
            vt_fail++;                                                                                                 \
            fprintf(stdout, "FAIL %s\n", #fn);                                                                         \
        }                                                                                                              \
        fflush(stdout);                                                                                                \
    } while (0)

#define VT_DONE() (fprintf(stdout, "# %d passed, %d failed\n", vt_pass, vt_fail), vt_fail ? 1 : 0)

/* inline: not every test binary uses them, and unused static functions fail -Werror. */
static inline char *vt_tmpdir_new(const char *name)
{
    char tmpl[128];
    snprintf(tmpl, sizeof tmpl, "/tmp/vg-test-%s.XXXXXX", name);
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline int vt_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static inline void vt_tmpdir_free(char *dir)
{
    /* Children first (FTW_DEPTH), symlinks not followed (FTW_PHYS). */
    if (dir && nftw(dir, vt_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stdout, "  could not remove %s\n", dir);
    free(dir);
}

#endif
