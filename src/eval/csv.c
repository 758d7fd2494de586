/* csv.c — see csv.h. */
#include "eval/csv.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/event.h"
#include "core/num.h"
#include "core/strmap.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FIELDS 32
#define FIELD_MAX 256

enum { COL_DEV = 0, COL_TS, COL_HR, COL_STEPS, COL__N };

typedef struct {
    char f[MAX_FIELDS][FIELD_MAX];
    int n;
} fields_t;

/* Splits line into fields. Returns NULL or a static reason. */
static const char *split(const char *line, fields_t *out)
{
    out->n = 0;
    const char *p = line;
    for (;;) {
        if (out->n == MAX_FIELDS)
            return "too many fields";
        char *dst = out->f[out->n];
        size_t k = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0')
                    return "unterminated quoted field";
                if (*p == '"') {
                    if (p[1] == '"') {
                        p += 2;
                        if (k + 1 >= FIELD_MAX)
                            return "field too long";
                        dst[k++] = '"';
                        continue;
                    }
                    p++;
                    break;
                }
                if (k + 1 >= FIELD_MAX)
                    return "field too long";
                dst[k++] = *p++;
            }
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != ',' && *p != '\0')
                return "text after a quoted field";
        } else {
            while (*p != ',' && *p != '\0') {
                if (k + 1 >= FIELD_MAX)
                    return "field too long";
                dst[k++] = *p++;
            }
            while (k > 0 && (dst[k - 1] == ' ' || dst[k - 1] == '\t'))
                k--;
        }
        dst[k] = '\0';
        out->n++;
        if (*p == '\0')
            return NULL;
        p++; /* the comma */
    }
}

static bool parse_int(const char *s, int64_t *out)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno)
        return false;
    *out = v;
    return true;
}

static const char *parse_ts(const char *s, int64_t *out)
{
    if (!*s)
        return "empty timestamp";
    bool digits = true;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            digits = false;
    if (digits) {
        if (!parse_int(s, out))
            return "timestamp out of range";
    } else if (vg_event_parse_iso8601(s, strlen(s), out) != VG_OK) {
        return "timestamp is neither epoch milliseconds nor ISO-8601";
    }
    /* What the gateway accepts: 2000-01-01 .. 2100-01-01. */
    if (*out < 946684800000LL || *out >= 4102444800000LL)
        return "timestamp outside 2000-01-01..2100-01-01 (epoch milliseconds expected)";
    return NULL;
}

static int col_of(const char *name)
{
    static const char *const dev[] = {"deviceid", "device", "device_id", "id"};
    static const char *const ts[] = {"timestamp", "ts", "time"};
    static const char *const hr[] = {"heartrate", "heart_rate", "hr", "bpm"};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (strcasecmp(name, dev[i]) == 0)
            return COL_DEV;
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        if (strcasecmp(name, ts[i]) == 0)
            return COL_TS;
    for (size_t i = 0; i < sizeof hr / sizeof *hr; i++)
        if (strcasecmp(name, hr[i]) == 0)
            return COL_HR;
    if (strcasecmp(name, "steps") == 0)
        return COL_STEPS;
    return -1;
}

static int row_cmp(const void *a, const void *b)
{
    const vg_evalcsv_row_t *x = a, *y = b;
    if (x->ts_ms != y->ts_ms)
        return x->ts_ms < y->ts_ms ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

void vg_evalcsv_free(vg_evalcsv_t *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->n_ids; i++)
        vg_free(c->ids[i]);
    vg_free(c->ids);
    vg_free(c->rows);
    memset(c, 0, sizeof *c);
}

int vg_evalcsv_read(const char *path, vg_evalcsv_t *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return VG_EIO;
    }
    int rc = VG_OK;
    vg_strmap_t ids;
    vg_strmap_init(&ids, VG_MEM_EVAL);
    fields_t *fl = vg_malloc(VG_MEM_EVAL, sizeof *fl);
    char *line = NULL;
    size_t cap_line = 0, cap_rows = 0, cap_ids = 0;
    uint64_t lineno = 0;
    int col[COL__N] = {0, 1, 2, 3};
    bool first = true;
    const char *why = NULL;
    if (!fl) {
        rc = VG_ENOMEM;
        goto done;
    }
    ssize_t len;
    while ((len = getline(&line, &cap_line, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        const char *p = line;
        if (lineno == 1 && (unsigned char)p[0] == 0xef && (unsigned char)p[1] == 0xbb && (unsigned char)p[2] == 0xbf)
            p += 3; /* a UTF-8 byte-order mark */
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        why = split(p, fl);
        if (why)
            break;
        if (first) {
            first = false;
            double v;
            if (fl->n >= 3 && vg_num_parse_double(fl->f[2], &v) != VG_OK) {
                /* A header: columns by name. */
                out->header = true;
                for (int k = 0; k < COL__N; k++)
                    col[k] = -1;
                for (int i = 0; i < fl->n; i++) {
                    int k = col_of(fl->f[i]);
                    if (k >= 0 && col[k] < 0)
                        col[k] = i;
                }
                if (col[COL_DEV] < 0 || col[COL_TS] < 0 || col[COL_HR] < 0) {
                    why = "the header needs deviceId, timestamp and heartRate columns";
                    break;
                }
                continue;
            }
        }
        int need = col[COL_DEV];
        if (col[COL_TS] > need)
            need = col[COL_TS];
        if (col[COL_HR] > need)
            need = col[COL_HR];
        if (fl->n < need + 1) {
            why = "expected deviceId,timestamp,heartRate[,steps]";
            break;
        }
        if (!out->header && fl->n > 4) {
            why = "too many fields (deviceId,timestamp,heartRate[,steps] without a header)";
            break;
        }
        vg_evalcsv_row_t r = {.line = lineno};
        const char *dev = fl->f[col[COL_DEV]];
        size_t dlen = strlen(dev);
        if (dlen == 0 || dlen > VG_EVENT_MAX_DEVICE_ID) {
            why = "device id must be 1..128 characters";
            break;
        }
        for (size_t i = 0; i < dlen && !why; i++)
            if ((unsigned char)dev[i] < 0x20 || dev[i] == '/' || dev[i] == '+' || dev[i] == '#')
                why = "device id contains a control character or one of / + #";
        if (why)
            break;
        why = parse_ts(fl->f[col[COL_TS]], &r.ts_ms);
        if (why)
            break;
        if (vg_num_parse_double(fl->f[col[COL_HR]], &r.hr) != VG_OK) {
            why = "heart rate is not a number";
            break;
        }
        if (!(r.hr > 0 && r.hr <= 300)) {
            why = "heart rate must be in (0, 300]";
            break;
        }
        if (col[COL_STEPS] >= 0 && col[COL_STEPS] < fl->n && fl->f[col[COL_STEPS]][0]) {
            if (!parse_int(fl->f[col[COL_STEPS]], &r.steps) || r.steps < 0 || r.steps > 100000) {
                why = "steps must be an integer 0..100000";
                break;
            }
        }
        uint64_t idx;
        if (vg_strmap_get(&ids, dev, dlen, &idx) != VG_OK) {
            if (out->n_ids == cap_ids) {
                size_t nc = cap_ids ? 2 * cap_ids : 64;
                char **ni = vg_realloc(VG_MEM_EVAL, out->ids, nc * sizeof *ni);
                if (!ni) {
                    rc = VG_ENOMEM;
                    goto done;
                }
                out->ids = ni;
                cap_ids = nc;
            }
            idx = out->n_ids;
            out->ids[out->n_ids] = vg_strndup(VG_MEM_EVAL, dev, dlen);
            if (!out->ids[out->n_ids] || vg_strmap_put(&ids, dev, dlen, idx, NULL) != VG_OK) {
                vg_free(out->ids[out->n_ids]);
                rc = VG_ENOMEM;
                goto done;
            }
            out->n_ids++;
        }
        r.device = (uint32_t)idx;
        if (out->n == cap_rows) {
            size_t nc = cap_rows ? 2 * cap_rows : 1024;
            vg_evalcsv_row_t *nr = vg_realloc(VG_MEM_EVAL, out->rows, nc * sizeof *nr);
            if (!nr) {
                rc = VG_ENOMEM;
                goto done;
            }
            out->rows = nr;
            cap_rows = nc;
        }
        out->rows[out->n++] = r;
    }
    if (why) {
        snprintf(err, errcap, "%s:%llu: %s", path, (unsigned long long)lineno, why);
        rc = VG_EINVAL;
    } else if (ferror(f)) {
        snprintf(err, errcap, "%s: read error", path);
        rc = VG_EIO;
    } else if (out->n == 0) {
        snprintf(err, errcap, "%s: no samples", path);
        rc = VG_EINVAL;
    }
done:
    free(line);
    fclose(f);
    vg_free(fl);
    vg_strmap_deinit(&ids);
    if (rc != VG_OK) {
        vg_evalcsv_free(out);
        return rc;
    }
    qsort(out->rows, out->n, sizeof *out->rows, row_cmp);
    return VG_OK;
}
