/* fuzz_files.c — libFuzzer harness for the two text formats operators hand
 * to vigil: the detector config file (src/app/detectcfg.c, `--detect-config`)
 * and a recording for `vigil eval --csv` (src/eval/csv.c).
 *
 * The first input byte picks the parser; the rest is the file, given to the
 * parser through a memfd (both read a path). Either the parser refuses the
 * file with a reason, or what it accepted must hold its invariants: every
 * detector parameter (global and per device) inside its allowed range; CSV
 * rows sorted by (timestamp, line), heart rates in (0, 300], steps in
 * 0..100000, device indices valid and ids non-empty. */
#include "app/detectcfg.h"
#include "core/err.h"
#include "eval/csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                                    \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static void check_cfg(const vg_detect_cfg_t *c)
{
    const double *v = (const double *)c;
    for (size_t i = 0; i < vg_detect_param_count(); i++) {
        const char *name;
        double def, lo, hi;
        CHECK(vg_detect_param_info(i, &name, &def, &lo, &hi) == VG_OK);
        /* the table is in field order (detect.c asserts its length) */
        CHECK(v[i] >= lo && v[i] <= hi);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fd = memfd_create("fuzz", 0);
    if (fd < 0)
        return 0;
    if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    FILE *devnull = fopen("/dev/null", "w");
    if (data[0] & 1) {
        vg_detectcfg_t d;
        vg_detectcfg_init(&d);
        vg_detect_override_t ov[1] = {{"rest_high_bpm", 100 + (data[0] >> 3)}};
        if (vg_detectcfg_load(&d, path, ov, (data[0] & 2) ? 1 : 0, devnull) == VG_OK) {
            check_cfg(&d.global);
            for (size_t i = 0; i < d.devices.cap; i++)
                if (d.devices.slots[i].key) {
                    CHECK(d.devices.slots[i].key_len >= 1 && d.devices.slots[i].key_len <= 128);
                    check_cfg((const vg_detect_cfg_t *)(uintptr_t)d.devices.slots[i].value);
                }
        }
        vg_detectcfg_free(&d);
    } else {
        vg_evalcsv_t c;
        memset(&c, 0, sizeof c);
        char err[256];
        if (vg_evalcsv_read(path, &c, err, sizeof err) == VG_OK) {
            for (size_t i = 0; i < c.n; i++) {
                const vg_evalcsv_row_t *r = &c.rows[i];
                CHECK(r->device < c.n_ids);
                CHECK(r->hr > 0 && r->hr <= 300);
                CHECK(r->steps >= 0 && r->steps <= 100000);
                if (i)
                    CHECK(c.rows[i - 1].ts_ms < r->ts_ms ||
                          (c.rows[i - 1].ts_ms == r->ts_ms && c.rows[i - 1].line < r->line));
            }
            for (uint32_t k = 0; k < c.n_ids; k++)
                CHECK(c.ids[k] && c.ids[k][0]);
        }
        vg_evalcsv_free(&c);
    }
    if (devnull)
        fclose(devnull);
    close(fd);
    return 0;
}
