/* devicecmd.c — `vigil ca|device|token`: the operator's side of issue 11
 * (only provisioned devices, each speaking only for itself).
 *
 * Owns: argument parsing, the files provisioning writes for devices, and
 * the text and JSON the commands print. Does not own: certificates
 * (sec/pki), the registry (sec/registry), the data directory's default
 * (app/config, shared with `vigil serve`).
 *
 * Files under the data directory D:
 *   D/pki/ca.key, ca.crt, server.key, server.crt   written by `ca init` (sec/pki.h)
 *   D/registry.db                                  the registry (sec/registry.c)
 *   D/devices/<id>.key (0600), <id>.crt, ca.crt    `device create`'s default --out
 *
 * Bulk provisioning writes each device's key and certificate (no fsync
 * each), then per batch of 1,000 one syncfs(2) of the
 * output directory and one registry transaction: a device is registered
 * only once its files are on disk, and 100,000 devices cost 100 fsyncs,
 * not 200,000. */
#include "app/devicecmd.h"

#include "app/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "sec/audit.h"
#include "sec/pki.h"
#include "sec/registry.h"
#include "sim/payload.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define BATCH 1000
#define MAX_REPEAT 16 /* --group, --attr, --server-name */
#define CA_DAYS 3650
#define SERVER_DAYS 825
#define DEVICE_DAYS 3650
#define COUNT_MAX 10000000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vigil ca init [--cn NAME] [--days N] [--force] [--server-name HOST]...\n"
            "       vigil ca register FILE [--jitr]\n"
            "       vigil ca list [--json]\n"
            "       vigil device create ID [--out DIR] [--days N] [--group G]... [--attr K=V]...\n"
            "       vigil device create --count N [--prefix P] [...as above]\n"
            "       vigil device list [--json]\n"
            "       vigil device show ID [--json]\n"
            "       vigil device revoke ID | delete ID | passwd ID\n"
            "       vigil token create --role operator|device [--name N]\n"
            "every command takes --data-dir DIR (default ./data, as vigil serve)\n\n"
            "ca init        a new CA (EC P-256, %d days) in DIR/pki and a server certificate for the broker\n"
            "               (%d days; names localhost, 127.0.0.1, ::1 unless --server-name is given); refuses to\n"
            "               replace an existing CA without --force. The CA is registered as trusted.\n"
            "ca register    trusts another CA certificate (PEM) for device certificates; --jitr registers its\n"
            "               devices when they first connect\n"
            "device create  a key and certificate (CN = ID, %d days) per device in DIR (default DATA/devices):\n"
            "               ID.key (mode 0600), ID.crt and ca.crt, and registers it. --count N makes devices\n"
            "               PREFIX000000.. (the ids `vigil sim --prefix PREFIX --devices N` uses; default dev-)\n"
            "device revoke  revokes a device and its certificates (final); delete removes it from the registry\n"
            "device passwd  sets the device's password from the first line of stdin (argon2id hash stored)\n"
            "token create   prints a new token once (only its hash is stored); a device token's --name is its id\n",
            CA_DAYS, SERVER_DAYS, DEVICE_DAYS);
}

/* ---- the audit log ----------------------------------------------------------- */

/* One registry_change line in DATA/audit.log for a change made here (the
 * server appends to the same file: both open it O_APPEND and write whole
 * lines). Best effort: a CLI change is not undone because its line could
 * not be written, but it says so. */
static void cli_audit(const char *data_dir, const char *who, const char *reason)
{
    vg_audit_config_t ac = {.dir = data_dir, .keep = 5};
    vg_audit_t *a = NULL;
    if (vg_audit_open(&ac, &a) != VG_OK) {
        fprintf(stderr, "vigil: warning: cannot write the audit log in %s\n", data_dir);
        return;
    }
    vg_audit_rec_t r = {.event = VG_AUDIT_REGISTRY,
                        .client_id = {who, VG_AUDIT_CSTR},
                        .source = {"cli", VG_AUDIT_CSTR},
                        .reason = {reason, VG_AUDIT_CSTR}};
    vg_audit_log(a, &r);
    vg_audit_close(a);
}

/* ---- options --------------------------------------------------------------- */

typedef struct {
    char data_dir[PATH_MAX];
    const char *pos[2]; /* positional arguments after the verb */
    int npos;
    const char *cn, *out, *prefix, *role, *name;
    long days, count;
    bool force, jitr, json, help;
    const char *groups[MAX_REPEAT], *attrs[MAX_REPEAT], *servers[MAX_REPEAT];
    int ngroups, nattrs, nservers;
} opts_t;

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses argv[first..]; returns 0 or 2 (message printed). */
static int parse(int argc, char **argv, int first, opts_t *o, const char *cmd)
{
    vg_config_t *cfg = vg_malloc(VG_MEM_CORE, sizeof *cfg);
    if (!cfg)
        return 2;
    vg_config_default(cfg); /* the one place the data directory's default lives */
    snprintf(o->data_dir, sizeof o->data_dir, "%s", cfg->data_dir);
    vg_free(cfg);
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(field)                                                                                                    \
    do {                                                                                                               \
        if (!v)                                                                                                        \
            goto missing;                                                                                              \
        field = v;                                                                                                     \
        i++;                                                                                                           \
    } while (0)
#define PUSH(arr, n)                                                                                                   \
    do {                                                                                                               \
        if (!v)                                                                                                        \
            goto missing;                                                                                              \
        if (n == MAX_REPEAT) {                                                                                         \
            fprintf(stderr, "vigil %s: at most %d %s options\n", cmd, MAX_REPEAT, a);                                  \
            return 2;                                                                                                  \
        }                                                                                                              \
        arr[n++] = v;                                                                                                  \
        i++;                                                                                                           \
    } while (0)
        if (strcmp(a, "--data-dir") == 0) {
            if (!v)
                goto missing;
            snprintf(o->data_dir, sizeof o->data_dir, "%s", v);
            i++;
        } else if (strcmp(a, "--cn") == 0)
            TAKE(o->cn);
        else if (strcmp(a, "--out") == 0)
            TAKE(o->out);
        else if (strcmp(a, "--prefix") == 0)
            TAKE(o->prefix);
        else if (strcmp(a, "--role") == 0)
            TAKE(o->role);
        else if (strcmp(a, "--name") == 0)
            TAKE(o->name);
        else if (strcmp(a, "--group") == 0)
            PUSH(o->groups, o->ngroups);
        else if (strcmp(a, "--attr") == 0)
            PUSH(o->attrs, o->nattrs);
        else if (strcmp(a, "--server-name") == 0)
            PUSH(o->servers, o->nservers);
        else if (strcmp(a, "--days") == 0 || strcmp(a, "--count") == 0) {
            long *dst = a[2] == 'd' ? &o->days : &o->count;
            if (!v || !parse_long(v, 1, a[2] == 'd' ? VG_PKI_DAYS_MAX : COUNT_MAX, dst)) {
                fprintf(stderr, "vigil %s: %s takes a number from 1 to %ld\n", cmd, a,
                        a[2] == 'd' ? (long)VG_PKI_DAYS_MAX : (long)COUNT_MAX);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--force") == 0)
            o->force = true;
        else if (strcmp(a, "--jitr") == 0)
            o->jitr = true;
        else if (strcmp(a, "--json") == 0)
            o->json = true;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            o->help = true;
        else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "vigil %s: unknown option '%s'\n", cmd, a);
            return 2;
        } else if (o->npos < 2)
            o->pos[o->npos++] = a;
        else {
            fprintf(stderr, "vigil %s: unexpected argument '%s'\n", cmd, a);
            return 2;
        }
        continue;
    missing:
        fprintf(stderr, "vigil %s: %s needs a value\n", cmd, a);
        return 2;
#undef TAKE
#undef PUSH
    }
    return 0;
}

static void path_join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static int open_registry(const opts_t *o, vg_registry_t **reg)
{
    char p[PATH_MAX];
    path_join(p, sizeof p, o->data_dir, VG_REGISTRY_FILE);
    int rc = vg_registry_open(p, NULL, reg);
    if (rc)
        fprintf(stderr, "vigil: cannot open the registry %s: %s\n", p, vg_strerror(rc));
    return rc;
}

static int load_ca(const opts_t *o, vg_pki_ca_t **ca)
{
    char p[PATH_MAX];
    path_join(p, sizeof p, o->data_dir, "pki");
    int rc = vg_pki_ca_load(p, ca);
    if (rc == VG_ENOTFOUND)
        fprintf(stderr, "vigil: no CA in %s: run 'vigil ca init --data-dir %s' first\n", p, o->data_dir);
    else if (rc)
        fprintf(stderr, "vigil: cannot load the CA in %s: %s\n", p, vg_strerror(rc));
    return rc;
}

/* Registers the local CA if the registry does not trust it yet (a registry
 * made after `ca init`, or removed since). */
static int ensure_ca_registered(vg_registry_t *reg, vg_pki_ca_t *ca)
{
    vg_registry_ca_t e;
    if (vg_registry_ca_get(reg, vg_pki_ca_fingerprint(ca), &e) == VG_OK)
        return VG_OK;
    char *pem = vg_pki_cert_pem(vg_pki_ca_cert(ca));
    char why[128];
    int rc = pem ? vg_registry_ca_add(reg, pem, strlen(pem), false, NULL, why, sizeof why) : VG_ENOMEM;
    vg_free(pem);
    if (rc == VG_EEXIST)
        rc = VG_OK;
    if (rc)
        fprintf(stderr, "vigil: cannot register the CA: %s %s\n", vg_strerror(rc), why);
    return rc;
}

static void fmt_time(int64_t ms, char *out, size_t cap)
{
    if (ms <= 0)
        snprintf(out, cap, "never");
    else
        vg_clock_format_iso(ms, out, cap);
}

/* ---- vigil ca -------------------------------------------------------------- */

static int ca_init(const opts_t *o)
{
    char dir[PATH_MAX];
    path_join(dir, sizeof dir, o->data_dir, "pki");
    uint32_t days = o->days ? (uint32_t)o->days : CA_DAYS;
    const char *cn = o->cn ? o->cn : "vigil CA";
    if (strlen(cn) == 0 || strlen(cn) > VG_PKI_CN_MAX) {
        fprintf(stderr, "vigil ca init: --cn must be 1 to %d bytes\n", VG_PKI_CN_MAX);
        return 2;
    }
    int rc = vg_pki_ca_init(dir, cn, days, o->force);
    if (rc == VG_EEXIST) {
        fprintf(stderr,
                "vigil ca init: a CA already exists in %s (--force replaces it; devices it issued stay "
                "trusted while it is registered)\n",
                dir);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "vigil ca init: cannot create the CA in %s: %s\n", dir, vg_strerror(rc));
        return 1;
    }
    vg_pki_ca_t *ca = NULL;
    vg_registry_t *reg = NULL;
    int ret = 1;
    if (load_ca(o, &ca))
        goto cleanup;
    uint32_t sdays = days < SERVER_DAYS ? days : SERVER_DAYS;
    rc = vg_pki_issue_server(ca, dir, o->servers, (size_t)o->nservers, sdays);
    if (rc) {
        fprintf(stderr, "vigil ca init: cannot issue the server certificate: %s%s\n", vg_strerror(rc),
                rc == VG_EINVAL ? " (a --server-name is not a host name or IP address)" : "");
        goto cleanup;
    }
    if (open_registry(o, &reg) || ensure_ca_registered(reg, ca))
        goto cleanup;
    char fp[65];
    vg_pki_fp_hex(vg_pki_ca_fingerprint(ca), fp);
    printf("CA '%s' (%u days) in %s/ca.crt, key %s/ca.key\nserver certificate %s/server.crt, key %s/server.key\n"
           "CA fingerprint (SHA-256) %s\n",
           cn, days, dir, dir, dir, dir, fp);
    ret = 0;
cleanup:
    vg_registry_close(reg);
    vg_pki_ca_free(ca);
    return ret;
}

static int ca_register(const opts_t *o)
{
    if (o->npos != 2) {
        fprintf(stderr, "vigil ca register: which file? (vigil ca register FILE [--jitr])\n");
        return 2;
    }
    const char *file = o->pos[1];
    uint8_t *pem = NULL;
    size_t len = 0;
    int rc = vg_fs_read_all(file, 1 << 20, &pem, &len);
    if (rc) {
        fprintf(stderr, "vigil ca register: cannot read %s: %s\n", file, vg_strerror(rc));
        return 1;
    }
    vg_registry_t *reg = NULL;
    int ret = 1;
    if (open_registry(o, &reg))
        goto cleanup;
    vg_registry_ca_t ca;
    char why[160];
    rc = vg_registry_ca_add(reg, (const char *)pem, len, o->jitr, &ca, why, sizeof why);
    char fp[65];
    vg_pki_fp_hex(ca.fingerprint, fp);
    if (rc == VG_EEXIST) {
        if (ca.jitr != o->jitr && (rc = vg_registry_ca_set_jitr(reg, ca.fingerprint, o->jitr))) {
            fprintf(stderr, "vigil ca register: cannot update %s: %s\n", fp, vg_strerror(rc));
            goto cleanup;
        }
        printf("CA %s already registered (%s); jitr %s\n", ca.subject, fp, o->jitr ? "on" : "off");
        ret = 0;
    } else if (rc == VG_OK) {
        printf("registered CA %s\nfingerprint (SHA-256) %s; jitr %s\n", ca.subject, fp, o->jitr ? "on" : "off");
        ret = 0;
        char line[400];
        snprintf(line, sizeof line, "CA registered: %s (%s), jitr %s", ca.subject, fp, o->jitr ? "on" : "off");
        cli_audit(o->data_dir, "", line);
    } else if (rc == VG_EMALFORMED || rc == VG_EPROTO) {
        fprintf(stderr, "vigil ca register: %s: %s\n", file, why);
    } else {
        fprintf(stderr, "vigil ca register: %s\n", vg_strerror(rc));
    }
cleanup:
    vg_registry_close(reg);
    vg_free(pem);
    return ret;
}

static int print_ca(void *ctx, const vg_registry_ca_t *ca, const char *pem, size_t len)
{
    const opts_t *o = ctx;
    char fp[65], created[32], subj[2 * VG_REGISTRY_SUBJECT_MAX + 2];
    vg_pki_fp_hex(ca->fingerprint, fp);
    fmt_time(ca->created_ms, created, sizeof created);
    if (o->json) {
        vg_json_escape(ca->subject, strlen(ca->subject), subj, sizeof subj);
        printf("{\"fingerprint\":\"%s\",\"subject\":\"%s\",\"jitr\":%s,\"status\":\"%s\",\"createdMs\":%lld}\n", fp,
               subj, ca->jitr ? "true" : "false", vg_registry_status_name(ca->status), (long long)ca->created_ms);
    } else {
        printf("%s  %-7s %-4s %s  %s\n", fp, vg_registry_status_name(ca->status), ca->jitr ? "jitr" : "-", created,
               ca->subject);
    }
    return 0;
}

static int ca_main(opts_t *o)
{
    const char *verb = o->npos ? o->pos[0] : "";
    if (strcmp(verb, "init") == 0)
        return o->npos == 1 ? ca_init(o) : 2;
    if (strcmp(verb, "register") == 0)
        return ca_register(o);
    if (strcmp(verb, "list") == 0) {
        vg_registry_t *reg = NULL;
        if (open_registry(o, &reg))
            return 1;
        if (!o->json)
            printf("%-64s  %-7s %-4s %-24s  %s\n", "FINGERPRINT", "STATUS", "JITR", "CREATED", "SUBJECT");
        int rc = vg_registry_ca_scan(reg, print_ca, o);
        vg_registry_close(reg);
        return rc ? 1 : 0;
    }
    fprintf(stderr, "vigil ca: unknown or missing subcommand '%s'\n\n", verb);
    usage(stderr);
    return 2;
}

/* ---- vigil device create ------------------------------------------------------ */

/* Writes data to dir/<id><ext>, without an fsync: the caller syncs the
 * file system once per batch and registers the devices after that, so a
 * crash can leave a partial file only for a device that is not
 * registered (a second run replaces it). An old file is removed first so
 * that the new one is created with mode (a key must never inherit 0644). */
static int write_nosync(const char *dir, const char *id, const char *ext, const char *data, mode_t mode)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s%s", dir, id, ext);
    if (unlink(path) != 0 && errno != ENOENT)
        goto fail;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        goto fail;
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            close(fd);
            errno = e;
            goto fail;
        }
        off += (size_t)k;
    }
    if (close(fd) != 0)
        goto fail;
    return VG_OK;
fail:;
    int e = errno;
    fprintf(stderr, "vigil device create: cannot write %s: %s\n", path, strerror(e));
    return e == ENOSPC || e == EDQUOT ? VG_ENOSPC : VG_EIO;
}

/* The groups and attributes every new device gets, checked once. */
static int make_template(const opts_t *o, vg_registry_device_t *t)
{
    vg_registry_device_init(t, "x", 1);
    for (int i = 0; i < o->ngroups; i++) {
        int rc = vg_registry_device_add_group(t, o->groups[i], strlen(o->groups[i]));
        if (rc && rc != VG_EEXIST) {
            fprintf(stderr, "vigil device create: bad --group '%s' (1-64 of A-Z a-z 0-9 . _ : -)\n", o->groups[i]);
            return 2;
        }
    }
    for (int i = 0; i < o->nattrs; i++) {
        const char *eq = strchr(o->attrs[i], '=');
        int rc = eq ? vg_registry_device_set_attr(t, o->attrs[i], (size_t)(eq - o->attrs[i]), eq + 1, strlen(eq + 1))
                    : VG_EINVAL;
        if (rc) {
            fprintf(stderr,
                    "vigil device create: bad --attr '%s' (KEY=VALUE: a key like a group name, a value of at "
                    "most %d printable characters without \" or \\%s)\n",
                    o->attrs[i], VG_REGISTRY_VALUE_MAX, rc == VG_EEXIST ? "; key given twice" : "");
            return 2;
        }
    }
    return 0;
}

/* The i-th id: ID itself, or PREFIX + i zero-padded as vigil sim does. */
static int device_id(const opts_t *o, long i, unsigned width, char *out, size_t cap)
{
    if (!o->count)
        return snprintf(out, cap, "%s", o->pos[1]);
    return vg_simpayload_device_id(o->prefix ? o->prefix : "dev-", width, (uint32_t)i, out, cap);
}

static int device_create(const opts_t *o)
{
    if ((o->count && o->npos != 1) || (!o->count && o->npos != 2) || (!o->count && o->prefix)) {
        fprintf(stderr, "vigil device create: give one ID, or --count N [--prefix P]\n");
        return 2;
    }
    long n = o->count ? o->count : 1;
    unsigned width = vg_simpayload_id_width((uint32_t)n);
    uint32_t days = o->days ? (uint32_t)o->days : DEVICE_DAYS;
    char out[PATH_MAX], id[VG_REGISTRY_ID_MAX + 8];
    if (o->out)
        snprintf(out, sizeof out, "%s", o->out);
    else
        path_join(out, sizeof out, o->data_dir, "devices");
    vg_registry_device_t *devs = vg_malloc(VG_MEM_CORE, BATCH * sizeof *devs);
    vg_registry_cert_t *certs = vg_malloc(VG_MEM_CORE, BATCH * sizeof *certs);
    vg_registry_device_t *tpl = vg_malloc(VG_MEM_CORE, sizeof *tpl);
    vg_pki_ca_t *ca = NULL;
    vg_registry_t *reg = NULL;
    char *ca_pem = NULL;
    int dfd = -1, ret = 1, rc;
    if (!devs || !certs || !tpl)
        goto cleanup;
    if ((ret = make_template(o, tpl)))
        goto cleanup;
    ret = 1;
    /* Every id is checked before anything is written. */
    for (long i = 0; i < n; i++) {
        int len = device_id(o, i, width, id, sizeof id);
        if (len < 0 || !vg_registry_id_valid(id, (size_t)len)) {
            fprintf(stderr,
                    "vigil device create: '%s' is not a device id (1-%d of A-Z a-z 0-9 . _ : -, not starting "
                    "with '.')\n",
                    len < 0 ? "?" : id, VG_REGISTRY_ID_MAX);
            ret = 2;
            goto cleanup;
        }
    }
    if (load_ca(o, &ca) || open_registry(o, &reg) || ensure_ca_registered(reg, ca))
        goto cleanup;
    for (long i = 0; i < n; i++) {
        vg_registry_device_t got;
        int len = device_id(o, i, width, id, sizeof id);
        if (vg_registry_device_get(reg, id, (size_t)len, &got) == VG_OK) {
            fprintf(stderr, "vigil device create: device '%s' already exists (nothing was created)\n", id);
            goto cleanup;
        }
    }
    if ((rc = vg_fs_mkdir_p(out)) || (dfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "vigil device create: cannot use directory %s\n", out);
        goto cleanup;
    }
    char ca_path[PATH_MAX];
    path_join(ca_path, sizeof ca_path, out, "ca.crt");
    if (!(ca_pem = vg_pki_cert_pem(vg_pki_ca_cert(ca))) || vg_fs_write_atomic(ca_path, ca_pem, strlen(ca_pem))) {
        fprintf(stderr, "vigil device create: cannot write %s\n", ca_path);
        goto cleanup;
    }
    uint64_t t0 = vg_clock_mono_ns();
    size_t k = 0;
    uint8_t fp[32];
    for (long i = 0; i < n; i++) {
        int len = device_id(o, i, width, id, sizeof id);
        char *key = NULL, *crt = NULL;
        vg_pki_cert_info_t info;
        rc = vg_pki_issue_device(ca, id, (size_t)len, days, &key, &crt, fp, &info);
        if (rc == VG_OK && (rc = write_nosync(out, id, ".key", key, 0600)) == VG_OK)
            rc = write_nosync(out, id, ".crt", crt, 0644);
        vg_pki_key_free(key);
        vg_free(crt);
        if (rc) {
            fprintf(stderr, "vigil device create: %s: %s\n", id, vg_strerror(rc));
            goto cleanup;
        }
        devs[k] = *tpl;
        memcpy(devs[k].id, id, (size_t)len + 1);
        devs[k].id_len = (size_t)len;
        vg_registry_cert_from_info(&certs[k], &info);
        if (++k == BATCH || i == n - 1) {
            if (syncfs(dfd) != 0) {
                fprintf(stderr, "vigil device create: cannot sync %s: %s\n", out, strerror(errno));
                goto cleanup;
            }
            if ((rc = vg_registry_device_add(reg, devs, certs, k))) {
                fprintf(stderr, "vigil device create: cannot register devices %s..%s: %s (%ld registered before)\n",
                        devs[0].id, id, vg_strerror(rc), i + 1 - (long)k);
                goto cleanup;
            }
            k = 0;
        }
    }
    double secs = (double)(vg_clock_mono_ns() - t0) / 1e9;
    {
        char first[VG_REGISTRY_ID_MAX + 8], line[256];
        device_id(o, 0, width, first, sizeof first);
        if (o->count)
            snprintf(line, sizeof line, "%ld devices created %s..%s", n, first, id);
        else
            snprintf(line, sizeof line, "device created");
        cli_audit(o->data_dir, o->count ? "" : id, line);
    }
    if (!o->count) {
        char hex[65];
        vg_pki_fp_hex(fp, hex);
        printf("device %s: key %s/%s.key, certificate %s/%s.crt, CA %s\ncertificate fingerprint (SHA-256) %s\n", id,
               out, id, out, id, ca_path, hex);
    } else {
        char first[VG_REGISTRY_ID_MAX + 8];
        device_id(o, 0, width, first, sizeof first);
        printf("created %ld devices %s..%s in %s (CA %s): %.1f s, %.3f ms per device\n", n, first, id, out, ca_path,
               secs, secs * 1000 / (double)n);
    }
    ret = 0;
cleanup:
    if (dfd >= 0)
        close(dfd);
    vg_free(ca_pem);
    vg_registry_close(reg);
    vg_pki_ca_free(ca);
    vg_free(tpl);
    vg_free(certs);
    vg_free(devs);
    return ret;
}

/* ---- vigil device list|show|revoke|delete|passwd ----------------------------------- */

static void print_groups(const vg_registry_device_t *d, bool json)
{
    for (uint32_t i = 0; i < d->ngroups; i++)
        printf(json ? "%s\"%s\"" : "%s%s", i ? "," : "", vg_registry_str(d, d->groups[i]));
    if (!json && !d->ngroups)
        printf("-");
}

/* Names and values need no JSON escaping (registry.h's character sets). */
static void print_device_json(const vg_registry_device_t *d)
{
    printf("{\"id\":\"%s\",\"status\":\"%s\",\"provenance\":\"%s\",\"groups\":[", d->id,
           vg_registry_status_name(d->status), vg_registry_provenance_name(d->provenance));
    print_groups(d, true);
    printf("],\"attributes\":{");
    for (uint32_t i = 0; i < d->nattrs; i++)
        printf("%s\"%s\":\"%s\"", i ? "," : "", vg_registry_str(d, d->attr_keys[i]),
               vg_registry_str(d, d->attr_values[i]));
    printf("},\"createdMs\":%lld,\"lastSeenMs\":%lld", (long long)d->created_ms, (long long)d->last_seen_ms);
}

static int list_one(void *ctx, const vg_registry_device_t *d)
{
    const opts_t *o = ctx;
    if (o->json) {
        print_device_json(d);
        printf("}\n");
        return 0;
    }
    char seen[32];
    fmt_time(d->last_seen_ms, seen, sizeof seen);
    printf("%-24s %-8s %-4s %-24s ", d->id, vg_registry_status_name(d->status),
           vg_registry_provenance_name(d->provenance), seen);
    print_groups(d, false);
    printf("\n");
    return 0;
}

typedef struct {
    const opts_t *o;
    int n; /* certificates printed */
} show_ctx_t;

static int show_cert(void *ctx, const vg_registry_cert_t *c)
{
    show_ctx_t *sc = ctx;
    char fp[65], iss[65], nb[32], na[32];
    vg_pki_fp_hex(c->fingerprint, fp);
    vg_pki_fp_hex(c->issuer_fingerprint, iss);
    if (sc->o->json)
        printf("%s{\"fingerprint\":\"%s\",\"serial\":\"%s\",\"notBeforeMs\":%lld,\"notAfterMs\":%lld,"
               "\"status\":\"%s\",\"issuer\":\"%s\"}",
               sc->n ? "," : "", fp, c->serial_hex, (long long)c->not_before_ms, (long long)c->not_after_ms,
               vg_registry_status_name(c->status), iss);
    else {
        fmt_time(c->not_before_ms, nb, sizeof nb);
        fmt_time(c->not_after_ms, na, sizeof na);
        printf("certificate  %s  %s\n             serial %s, valid %s .. %s, issuer %.16s...\n", fp,
               vg_registry_status_name(c->status), c->serial_hex, nb, na, iss);
    }
    sc->n++;
    return 0;
}

static int device_show(const opts_t *o, vg_registry_t *reg, const char *id)
{
    vg_registry_device_t *d = vg_malloc(VG_MEM_CORE, sizeof *d);
    if (!d)
        return 1;
    int ret = 1;
    if (vg_registry_device_get(reg, id, strlen(id), d) != VG_OK) {
        fprintf(stderr, "vigil device show: no device '%s'\n", id);
        goto cleanup;
    }
    show_ctx_t sc = {o, 0};
    if (o->json) {
        print_device_json(d);
        printf(",\"certificates\":[");
    } else {
        char created[32], seen[32];
        fmt_time(d->created_ms, created, sizeof created);
        fmt_time(d->last_seen_ms, seen, sizeof seen);
        printf("id           %s\nstatus       %s\nprovenance   %s\ncreated      %s\nlast seen    %s\ngroups       ",
               d->id, vg_registry_status_name(d->status), vg_registry_provenance_name(d->provenance), created, seen);
        print_groups(d, false);
        printf("\nattributes   ");
        for (uint32_t i = 0; i < d->nattrs; i++)
            printf("%s%s=%s", i ? ", " : "", vg_registry_str(d, d->attr_keys[i]),
                   vg_registry_str(d, d->attr_values[i]));
        printf("%s\n", d->nattrs ? "" : "-");
    }
    int rc = vg_registry_cert_scan(reg, id, strlen(id), show_cert, &sc);
    if (o->json)
        printf("]}\n");
    ret = rc ? 1 : 0;
cleanup:
    vg_free(d);
    return ret;
}

/* The first line of stdin, without its line end; the terminal does not
 * echo it. Returns its length, or -1. */
static int read_password(const char *id, char *buf, size_t cap)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "password for %s: ", id);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    char *line = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
        fprintf(stderr, "\n");
    }
    if (!line)
        return -1;
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return (int)n;
}

static int device_passwd(vg_registry_t *reg, const char *id)
{
    char pw[1100];
    int n = read_password(id, pw, sizeof pw);
    int ret = 1;
    if (n <= 0 || n > 1024) {
        fprintf(stderr, "vigil device passwd: give a password of 1 to 1024 bytes on stdin\n");
        ret = 2;
    } else {
        int rc = vg_registry_password_set(reg, id, strlen(id), VG_REG_ROLE_DEVICE, pw, (size_t)n);
        if (rc == VG_OK) {
            printf("password set for device %s\n", id);
            ret = 0;
        } else if (rc == VG_ENOTFOUND)
            fprintf(stderr, "vigil device passwd: no device '%s'\n", id);
        else
            fprintf(stderr, "vigil device passwd: %s\n", vg_strerror(rc));
    }
    explicit_bzero(pw, sizeof pw);
    return ret;
}

static int device_main(opts_t *o)
{
    const char *verb = o->npos ? o->pos[0] : "";
    if (strcmp(verb, "create") == 0)
        return device_create(o);
    bool list = strcmp(verb, "list") == 0;
    bool one = strcmp(verb, "show") == 0 || strcmp(verb, "revoke") == 0 || strcmp(verb, "delete") == 0 ||
               strcmp(verb, "passwd") == 0;
    if (!list && !one) {
        fprintf(stderr, "vigil device: unknown or missing subcommand '%s'\n\n", verb);
        usage(stderr);
        return 2;
    }
    if ((list && o->npos != 1) || (one && o->npos != 2)) {
        fprintf(stderr, "vigil device %s: %s\n", verb, list ? "takes no ID" : "which device? give its ID");
        return 2;
    }
    vg_registry_t *reg = NULL;
    if (open_registry(o, &reg))
        return 1;
    const char *id = one ? o->pos[1] : NULL;
    int ret = 1, rc;
    if (list) {
        if (!o->json)
            printf("%-24s %-8s %-4s %-24s %s\n", "ID", "STATUS", "FROM", "LAST SEEN", "GROUPS");
        ret = vg_registry_device_scan(reg, list_one, o) ? 1 : 0;
    } else if (strcmp(verb, "show") == 0) {
        ret = device_show(o, reg, id);
    } else if (strcmp(verb, "passwd") == 0) {
        ret = device_passwd(reg, id);
        if (ret == 0)
            cli_audit(o->data_dir, id, "device password set");
    } else {
        bool revoke = strcmp(verb, "revoke") == 0;
        rc = revoke ? vg_registry_device_set_status(reg, id, strlen(id), VG_REG_REVOKED)
                    : vg_registry_device_delete(reg, id, strlen(id));
        if (rc == VG_OK) {
            printf(revoke ? "revoked device %s and its certificates\n" : "deleted device %s\n", id);
            ret = 0;
            cli_audit(o->data_dir, id, revoke ? "device revoked" : "device deleted");
        } else if (rc == VG_ENOTFOUND)
            fprintf(stderr, "vigil device %s: no device '%s'\n", verb, id);
        else
            fprintf(stderr, "vigil device %s: %s\n", verb, vg_strerror(rc));
    }
    vg_registry_close(reg);
    return ret;
}

/* ---- vigil token ------------------------------------------------------------ */

static int token_main(opts_t *o)
{
    if (o->npos != 1 || strcmp(o->pos[0], "create") != 0) {
        fprintf(stderr, "vigil token: the subcommand is 'create' (vigil token create --role operator|device "
                        "[--name N])\n");
        return 2;
    }
    vg_registry_role_t role;
    if (o->role && strcmp(o->role, "operator") == 0)
        role = VG_REG_ROLE_OPERATOR;
    else if (o->role && strcmp(o->role, "device") == 0)
        role = VG_REG_ROLE_DEVICE;
    else {
        fprintf(stderr, "vigil token create: --role operator or --role device\n");
        return 2;
    }
    const char *name = o->name ? o->name : role == VG_REG_ROLE_OPERATOR ? "operator" : NULL;
    if (!name || !vg_registry_id_valid(name, strlen(name))) {
        fprintf(stderr, "vigil token create: %s\n",
                name ? "--name: 1-64 of A-Z a-z 0-9 . _ : -" : "a device token needs --name DEVICE-ID");
        return 2;
    }
    vg_registry_t *reg = NULL;
    if (open_registry(o, &reg))
        return 1;
    char tok[VG_REGISTRY_TOKEN_LEN + 1];
    int rc = vg_registry_token_create(reg, name, strlen(name), role, tok), ret = 1;
    if (rc == VG_OK) {
        printf("%s\n", tok);
        fflush(stdout);
        fprintf(stderr, "token for %s %s: shown this once, only its hash is stored\n", vg_registry_role_name(role),
                name);
        ret = 0;
        char line[96];
        snprintf(line, sizeof line, "token created (role %s)", vg_registry_role_name(role));
        cli_audit(o->data_dir, name, line);
    } else if (rc == VG_ENOTFOUND)
        fprintf(stderr, "vigil token create: no device '%s'\n", name);
    else
        fprintf(stderr, "vigil token create: %s\n", vg_strerror(rc));
    explicit_bzero(tok, sizeof tok);
    vg_registry_close(reg);
    return ret;
}

int vg_devicecmd_main(int argc, char **argv)
{
    opts_t *o = vg_calloc(VG_MEM_CORE, 1, sizeof *o);
    if (!o)
        return 1;
    int rc = parse(argc, argv, 1, o, argv[0]);
    if (rc == 0 && (o->help || o->npos == 0)) {
        usage(o->help ? stdout : stderr);
        rc = o->help ? 0 : 2;
    } else if (rc == 0) {
        if (strcmp(argv[0], "ca") == 0)
            rc = ca_main(o);
        else if (strcmp(argv[0], "device") == 0)
            rc = device_main(o);
        else
            rc = token_main(o);
    }
    vg_free(o);
    return rc;
}
