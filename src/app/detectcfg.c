/* detectcfg.c — the detector config file (detectcfg.h).
 *
 * Owns: parsing the file and building one vg_detect_cfg_t per device that
 * has overrides. Does not own: parameter names, defaults or ranges
 * (detect.c's table). Per-device configs are resolved once at load so the
 * processor's per-sample lookup is a single hash probe. */
#include "app/detectcfg.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/event.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 1024

typedef struct {
    char name[64];
    double value;
} kv_t;

typedef struct {
    char id[VG_EVENT_MAX_DEVICE_ID + 1];
    size_t id_len;
    kv_t *kv;
    size_t n, cap;
} devsec_t;

void vg_detectcfg_init(vg_detectcfg_t *d)
{
    memset(d, 0, sizeof *d);
    vg_detect_cfg_default(&d->global);
    vg_strmap_init(&d->devices, VG_MEM_DETECT);
}

static void free_devices(vg_strmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            vg_free((void *)(uintptr_t)m->slots[i].value);
    vg_strmap_deinit(m);
}

void vg_detectcfg_free(vg_detectcfg_t *d)
{
    free_devices(&d->devices);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int vg_detectcfg_load(vg_detectcfg_t *d, const char *path, const vg_detect_override_t *ov, size_t nov, FILE *err)
{
    FILE *f = NULL;
    if (path && *path) {
        f = fopen(path, "r");
        if (!f) {
            fprintf(err, "%s: cannot open: %s\n", path, strerror(errno));
            return VG_EINVAL;
        }
    }
    int rc = VG_EINVAL;
    vg_detect_cfg_t global = d->global;
    devsec_t *secs = NULL, *cur = NULL;
    size_t nsecs = 0;
    vg_strmap_t built;
    vg_strmap_init(&built, VG_MEM_DETECT);
    char line[MAX_LINE + 2];
    int lineno = 0;
    while (f && fgets(line, sizeof line, f)) {
        lineno++;
        if (strlen(line) > MAX_LINE && line[strlen(line) - 1] != '\n') {
            fprintf(err, "%s:%d: line longer than %d bytes\n", path, lineno, MAX_LINE);
            goto cleanup;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        if (*s == '[') {
            size_t n = strlen(s);
            if (s[n - 1] != ']') {
                fprintf(err, "%s:%d: a section is [global] or [device \"ID\"]\n", path, lineno);
                goto cleanup;
            }
            s[n - 1] = '\0';
            char *in = trim(s + 1);
            if (strcmp(in, "global") == 0) {
                cur = NULL;
                continue;
            }
            if (strncmp(in, "device", 6) != 0 || !isspace((unsigned char)in[6])) {
                fprintf(err, "%s:%d: unknown section [%s] (use [global] or [device \"ID\"])\n", path, lineno, in);
                goto cleanup;
            }
            char *q = trim(in + 6);
            size_t ql = strlen(q);
            if (ql < 3 || q[0] != '"' || q[ql - 1] != '"' || ql - 2 > VG_EVENT_MAX_DEVICE_ID) {
                fprintf(err, "%s:%d: the device id must be quoted and 1..%d bytes: [device \"ID\"]\n", path, lineno,
                        VG_EVENT_MAX_DEVICE_ID);
                goto cleanup;
            }
            for (size_t i = 0; i < nsecs; i++)
                if (secs[i].id_len == ql - 2 && memcmp(secs[i].id, q + 1, ql - 2) == 0) {
                    fprintf(err, "%s:%d: device \"%.*s\" has a section already\n", path, lineno, (int)(ql - 2), q + 1);
                    goto cleanup;
                }
            devsec_t *ns = vg_realloc(VG_MEM_DETECT, secs, (nsecs + 1) * sizeof *ns);
            if (!ns) {
                fprintf(err, "%s:%d: out of memory\n", path, lineno);
                goto cleanup;
            }
            secs = ns;
            cur = &secs[nsecs++];
            memset(cur, 0, sizeof *cur);
            cur->id_len = ql - 2;
            memcpy(cur->id, q + 1, cur->id_len);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(err, "%s:%d: expected name = value\n", path, lineno);
            goto cleanup;
        }
        *eq = '\0';
        char *name = trim(s), *val = trim(eq + 1);
        char *end = NULL;
        errno = 0;
        double v = strtod(val, &end);
        if (!*val || errno || *trim(end)) {
            fprintf(err, "%s:%d: %s: \"%s\" is not a number\n", path, lineno, name, val);
            goto cleanup;
        }
        /* Validate against the parameter table whichever section it is in. */
        vg_detect_cfg_t probe = global;
        const char *why = NULL;
        if (vg_detect_cfg_set(&probe, name, v, &why) != VG_OK) {
            const char *pname;
            double def, lo, hi;
            for (size_t i = 0; vg_detect_param_info(i, &pname, &def, &lo, &hi) == VG_OK; i++)
                if (strcmp(pname, name) == 0) {
                    fprintf(err, "%s:%d: %s = %g is outside its range %g..%g\n", path, lineno, name, v, lo, hi);
                    goto cleanup;
                }
            fprintf(err, "%s:%d: unknown detector parameter \"%s\" (see docs/detection.md)\n", path, lineno, name);
            goto cleanup;
        }
        if (!cur) {
            global = probe;
            continue;
        }
        if (cur->n == cur->cap) {
            size_t cap = cur->cap ? cur->cap * 2 : 8;
            kv_t *nk = vg_realloc(VG_MEM_DETECT, cur->kv, cap * sizeof *nk);
            if (!nk) {
                fprintf(err, "%s:%d: out of memory\n", path, lineno);
                goto cleanup;
            }
            cur->kv = nk;
            cur->cap = cap;
        }
        snprintf(cur->kv[cur->n].name, sizeof cur->kv[cur->n].name, "%s", name);
        cur->kv[cur->n].value = v;
        cur->n++;
    }
    if (f && ferror(f)) {
        fprintf(err, "%s: read error\n", path);
        goto cleanup;
    }
    /* Flags beat the file's global values; a device section still wins for
     * its device. */
    for (size_t i = 0; i < nov; i++) {
        const char *why = NULL;
        if (vg_detect_cfg_set(&global, ov[i].name, ov[i].value, &why) != VG_OK) {
            fprintf(err, "%s = %g: %s\n", ov[i].name, ov[i].value, why);
            goto cleanup;
        }
    }
    /* Devices start from the final global values, then apply their own. */
    for (size_t i = 0; i < nsecs; i++) {
        vg_detect_cfg_t *c = vg_malloc(VG_MEM_DETECT, sizeof *c);
        if (!c) {
            fprintf(err, "%s: out of memory\n", path);
            goto cleanup;
        }
        *c = global;
        for (size_t k = 0; k < secs[i].n; k++)
            vg_detect_cfg_set(c, secs[i].kv[k].name, secs[i].kv[k].value, NULL);
        if (vg_strmap_put(&built, secs[i].id, secs[i].id_len, (uint64_t)(uintptr_t)c, NULL) != VG_OK) {
            vg_free(c);
            fprintf(err, "%s: out of memory\n", path);
            goto cleanup;
        }
    }
    free_devices(&d->devices);
    d->devices = built;
    vg_strmap_init(&built, VG_MEM_DETECT);
    d->global = global;
    rc = VG_OK;
cleanup:
    free_devices(&built);
    for (size_t i = 0; i < nsecs; i++)
        vg_free(secs[i].kv);
    vg_free(secs);
    if (f)
        fclose(f);
    return rc;
}
