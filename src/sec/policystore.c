/* policystore.c — see policystore.h. Owns the list of loaded documents and
 * the walk of the policy directory; the attachment lookup is a linear pass
 * over the documents, which is fine for what it serves (a CONNECT builds one
 * set, and an installation has tens of documents, not thousands: a server
 * with many per-device documents would index them by name here). */
#include "sec/policystore.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct vg_policystore {
    vg_policy_doc_t **docs;
    size_t n, cap;
};

int vg_policystore_new(vg_policystore_t **out)
{
    *out = vg_calloc(VG_MEM_SEC, 1, sizeof **out);
    return *out ? VG_OK : VG_ENOMEM;
}

void vg_policystore_free(vg_policystore_t *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        vg_policy_doc_unref(st->docs[i]);
    vg_free(st->docs);
    vg_free(st);
}

static int find_index(const vg_policystore_t *st, const char *name, size_t *at)
{
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(vg_policy_doc_name(st->docs[i]), name)) {
            *at = i;
            return VG_OK;
        }
    return VG_ENOTFOUND;
}

/* Room for `more` documents beyond n. */
static int reserve(vg_policystore_t *st, size_t more)
{
    if (st->n + more <= st->cap)
        return VG_OK;
    size_t cap = st->cap ? st->cap : 8;
    while (cap < st->n + more)
        cap *= 2;
    vg_policy_doc_t **d = vg_realloc(VG_MEM_SEC, st->docs, cap * sizeof *d);
    if (!d)
        return VG_ENOMEM;
    st->docs = d;
    st->cap = cap;
    return VG_OK;
}

/* Adds doc's reference (taken over, not a new one) with room reserved. */
static void put(vg_policystore_t *st, vg_policy_doc_t *doc)
{
    size_t at;
    if (find_index(st, vg_policy_doc_name(doc), &at) == VG_OK) {
        vg_policy_doc_unref(st->docs[at]);
        st->docs[at] = doc;
    } else {
        st->docs[st->n++] = doc;
    }
}

int vg_policystore_add(vg_policystore_t *st, vg_policy_doc_t *doc)
{
    if (reserve(st, 1) != VG_OK)
        return VG_ENOMEM;
    put(st, vg_policy_doc_ref(doc));
    return VG_OK;
}

int vg_policystore_add_builtins(vg_policystore_t *st, const char *telemetry_topic, const char *ack_topic, char *err,
                                size_t cap)
{
    vg_policy_doc_t *dev = NULL, *op = NULL;
    int rc = vg_policy_default_device(telemetry_topic, &dev, err, cap);
    if (rc == VG_OK)
        rc = vg_policy_operator_role(ack_topic, &op, err, cap);
    if (rc == VG_OK && (rc = reserve(st, 2)) != VG_OK && err && cap)
        snprintf(err, cap, "built-in policies: out of memory");
    if (rc == VG_OK) {
        put(st, dev);
        put(st, op);
        return VG_OK;
    }
    vg_policy_doc_unref(dev);
    vg_policy_doc_unref(op);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The NAME.json file names of dir, sorted (each a new string, freed with
 * the array by free_names). */
static int list_dir(const char *dir, char ***out, size_t *count, char *err, size_t cap)
{
    char **names = NULL;
    size_t n = 0, ncap = 0;
    int rc = VG_OK;
    DIR *d = opendir(dir);
    *out = NULL;
    *count = 0;
    if (!d) {
        if (errno == ENOENT)
            return VG_OK;
        if (err && cap)
            snprintf(err, cap, "policies: cannot open %s: %s", dir, strerror(errno));
        return VG_EIO;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                if (err && cap)
                    snprintf(err, cap, "policies: reading %s: %s", dir, strerror(errno));
                rc = VG_EIO;
            }
            break;
        }
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        if (n == VG_POLICYSTORE_MAX_FILES) {
            if (err && cap)
                snprintf(err, cap, "policies: more than %d files in %s", VG_POLICYSTORE_MAX_FILES, dir);
            rc = VG_ELIMIT;
            break;
        }
        if (n == ncap) {
            size_t c = ncap ? ncap * 2 : 16;
            char **p = vg_realloc(VG_MEM_SEC, names, c * sizeof *p);
            if (!p) {
                rc = VG_ENOMEM;
                break;
            }
            names = p;
            ncap = c;
        }
        if (!(names[n] = vg_strndup(VG_MEM_SEC, de->d_name, len))) {
            rc = VG_ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == VG_ENOMEM && err && cap)
        snprintf(err, cap, "policies: out of memory");
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    *out = names;
    *count = n;
    return rc;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vg_free(names[i]);
    vg_free(names);
}

/* Reads and parses dir/file into *doc. */
static int load_file(const char *dir, const char *file, vg_policy_doc_t **doc, char *err, size_t cap)
{
    char path[4096], name[VG_POLICY_MAX_NAME + 1];
    struct stat sb;
    uint8_t *buf = NULL;
    size_t len = 0, nlen = strlen(file) - 5;
    int rc;

    *doc = NULL;
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path) {
        if (err && cap)
            snprintf(err, cap, "policies: path of %s too long", file);
        return VG_EINVAL;
    }
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return VG_ENOTFOUND; /* gone or not a file: skipped */
    if (nlen > VG_POLICY_MAX_NAME) {
        if (err && cap)
            snprintf(err, cap, "policies: %s: a policy name is at most %d bytes", path, VG_POLICY_MAX_NAME);
        return VG_EINVAL;
    }
    memcpy(name, file, nlen);
    name[nlen] = '\0';
    rc = vg_fs_read_all(path, VG_POLICY_MAX_DOC_BYTES, &buf, &len);
    if (rc == VG_ENOTFOUND)
        return rc;
    if (rc != VG_OK) {
        if (err && cap) {
            if (rc == VG_ETOOBIG)
                snprintf(err, cap, "policies: %s: larger than %d bytes", path, VG_POLICY_MAX_DOC_BYTES);
            else
                snprintf(err, cap, "policies: %s: %s", path, vg_strerror(rc));
        }
        return rc;
    }
    rc = vg_policy_parse(name, (const char *)buf, len, doc, err, cap);
    vg_free(buf);
    if (rc != VG_OK && err && cap) {
        /* Say which file, ahead of the parser's "policy NAME: ..." line. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err);
        snprintf(err, cap, "%s: %s", path, msg);
    }
    return rc;
}

int vg_policystore_load_dir(vg_policystore_t *st, const char *dir, size_t *loaded, char *err, size_t cap)
{
    char **names = NULL;
    size_t n = 0, got = 0;
    vg_policy_doc_t **docs = NULL;
    int rc;

    if (loaded)
        *loaded = 0;
    if (err && cap)
        err[0] = '\0';
    if ((rc = list_dir(dir, &names, &n, err, cap)) != VG_OK)
        goto cleanup;
    if (n && !(docs = vg_calloc(VG_MEM_SEC, n, sizeof *docs))) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        rc = load_file(dir, names[i], &docs[got], err, cap);
        if (rc == VG_ENOTFOUND)
            continue;
        if (rc != VG_OK)
            goto cleanup;
        got++;
    }
    rc = VG_OK;
    if (reserve(st, got) != VG_OK) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    /* Everything parsed: only now does the store change. */
    for (size_t i = 0; i < got; i++)
        put(st, docs[i]);
    if (loaded)
        *loaded = got;
    got = 0;
cleanup:
    if (rc == VG_ENOMEM && err && cap)
        snprintf(err, cap, "policies: out of memory");
    for (size_t i = 0; i < got; i++)
        vg_policy_doc_unref(docs[i]);
    vg_free(docs);
    free_names(names, n);
    return rc;
}

size_t vg_policystore_count(const vg_policystore_t *st)
{
    return st->n;
}

const vg_policy_doc_t *vg_policystore_doc(const vg_policystore_t *st, size_t i)
{
    return i < st->n ? st->docs[i] : NULL;
}

const vg_policy_doc_t *vg_policystore_find(const vg_policystore_t *st, const char *name)
{
    size_t at;
    return name && find_index(st, name, &at) == VG_OK ? st->docs[at] : NULL;
}

/* Appends each document attached to (kind, name) that is not picked yet. */
static int pick(const vg_policystore_t *st, vg_policy_attach_t kind, const char *name, vg_policy_doc_t **set, size_t *n)
{
    if (!name)
        return VG_OK;
    size_t len = strlen(name);
    for (size_t i = 0; i < st->n; i++) {
        if (!vg_policy_doc_attached(st->docs[i], kind, name, len))
            continue;
        size_t j = 0;
        while (j < *n && set[j] != st->docs[i])
            j++;
        if (j < *n)
            continue;
        if (*n == VG_POLICY_MAX_SET_DOCS)
            return VG_ETOOBIG;
        set[(*n)++] = st->docs[i];
    }
    return VG_OK;
}

int vg_policystore_set_for(const vg_policystore_t *st, const vg_policy_principal_t *p, vg_policy_set_t **out)
{
    vg_policy_doc_t *docs[VG_POLICY_MAX_SET_DOCS];
    size_t n = 0;
    int rc = pick(st, VG_POLICY_ATTACH_ROLE, p->role, docs, &n);
    for (size_t g = 0; rc == VG_OK && g < p->n_groups; g++)
        rc = pick(st, VG_POLICY_ATTACH_GROUP, p->groups[g], docs, &n);
    if (rc == VG_OK)
        rc = pick(st, VG_POLICY_ATTACH_DEVICE, p->device, docs, &n);
    if (rc != VG_OK) {
        *out = NULL;
        return rc;
    }
    return vg_policy_set_new(docs, n, out);
}

int vg_policystore_set_of(const vg_policystore_t *st, const char *const *names, size_t n, vg_policy_set_t **out)
{
    vg_policy_doc_t *docs[VG_POLICY_MAX_SET_DOCS];
    size_t at;
    *out = NULL;
    if (n > VG_POLICY_MAX_SET_DOCS)
        return VG_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        if (find_index(st, names[i], &at) != VG_OK)
            return VG_ENOTFOUND;
        docs[i] = st->docs[at];
    }
    return vg_policy_set_new(docs, n, out);
}
