/* csv.h — a recorded fleet for `vigil eval --csv FILE`.
 *
 * Owns: reading and checking the file, the device-id table, ordering rows
 * by timestamp. Does not own: publishing or reporting (eval.c).
 *
 * Format (docs/detection.md): one sample per line, comma-separated:
 *   deviceId,timestamp,heartRate[,steps]
 * - timestamp: epoch milliseconds (digits) or ISO-8601 / RFC 3339 text
 *   ("2026-01-05T08:00:00Z", fraction and zone optional, no zone = UTC);
 * - heartRate: a number in (0, 300] (what the gateway accepts);
 * - steps: an integer 0..100000, steps since the device's previous sample;
 *   empty or absent = 0 (every sample then counts as inactive).
 * A first line whose heart-rate field is not a number is a header; with a
 * header, columns are found by name (case-insensitive: deviceId|device|
 * device_id|id, timestamp|ts|time, heartRate|heart_rate|hr|bpm, steps) and
 * may come in any order, other columns are ignored. Fields may be quoted
 * ("..." with "" for a quote). Blank lines and lines starting with '#' are
 * skipped; spaces around fields are trimmed. Any other malformed line is
 * an error naming the file and line. Rows are replayed sorted by timestamp
 * (stable: equal timestamps keep file order). */
#ifndef VG_EVAL_CSV_H
#define VG_EVAL_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t device;
    int64_t ts_ms;
    double hr;
    int64_t steps;
    uint64_t line;
} vg_evalcsv_row_t;

typedef struct {
    vg_evalcsv_row_t *rows; /* sorted by (ts_ms, line) */
    size_t n;
    char **ids; /* device index -> id (NUL-terminated) */
    uint32_t n_ids;
    bool header;
} vg_evalcsv_t;

/* Reads path into out. VG_OK; VG_EINVAL for a malformed file, with
 * "FILE:LINE: reason" in err[0..errcap); VG_EIO (cannot read; err set);
 * VG_ENOMEM. out is empty on failure. */
int vg_evalcsv_read(const char *path, vg_evalcsv_t *out, char *err, size_t errcap);
void vg_evalcsv_free(vg_evalcsv_t *c);

#endif
