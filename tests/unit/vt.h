/* vt.h — the unit-test harness: one binary per module, one line per test.
 *
 * Each test is a function; VT_CHECK records a failure (with file:line and
 * the expression) and carries on, VT_REQUIRE returns from the test. The
 * runner (tests/run.sh) counts the "PASS"/"FAIL" lines of every binary. */
#ifndef VG_TESTS_VT_H
#define VG_TESTS_VT_H

#include <stdio.h>
#include <string.h>

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

#endif
