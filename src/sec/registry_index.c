/* registry_index.c — the registry's in-memory index, the device builder
 * and the JSON of the groups and attributes columns.
 *
 * Owns: the index entries (reg_dev_t, vg_registry_cert_t, vg_registry_ca_t
 * allocated under VG_MEM_SEC) and the maps from keys to them; deltas
 * (rows read from the database, not yet applied). Does not own: locking
 * (registry.c takes the write lock around reg_index_apply and the read
 * lock around lookups) or the database.
 *
 * Why entries are packed: a device's fixed-size vg_registry_device_t is
 * about 2.4 KB, mostly room for groups and attributes that most devices do
 * not have; the index keeps only the spans and bytes in use, about 40
 * bytes plus the id for a device without either, so 100,000 devices cost a
 * few MB. A lookup unpacks into the caller's struct. */
#include "sec/registry_int.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"

#include <string.h>

/* ---- names and values ------------------------------------------------------ */

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
}

bool vg_registry_id_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > VG_REGISTRY_ID_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char(s[i]))
            return false;
    return true;
}

static bool value_valid(const char *s, size_t len)
{
    if (len > VG_REGISTRY_VALUE_MAX || (len && !s))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

/* ---- the builder ----------------------------------------------------------- */

int vg_registry_device_init(vg_registry_device_t *d, const char *id, size_t len)
{
    if (!vg_registry_id_valid(id, len))
        return VG_EINVAL;
    /* Only the header: the 2 KB of strings need no zeroing. */
    memset(d, 0, offsetof(vg_registry_device_t, strings));
    memcpy(d->id, id, len);
    d->id[len] = '\0';
    d->id_len = len;
    d->status = VG_REG_ACTIVE;
    d->provenance = VG_REG_CLI;
    return VG_OK;
}

static int put_str(vg_registry_device_t *d, const char *s, size_t len, vg_registry_span_t *span)
{
    if (d->strings_len + len + 1 > VG_REGISTRY_STRINGS_MAX)
        return VG_ELIMIT;
    if (len)
        memcpy(d->strings + d->strings_len, s, len);
    d->strings[d->strings_len + len] = '\0';
    span->off = (uint16_t)d->strings_len;
    span->len = (uint16_t)len;
    d->strings_len += (uint32_t)len + 1;
    return VG_OK;
}

static bool span_eq(const vg_registry_device_t *d, vg_registry_span_t s, const char *p, size_t len)
{
    return s.len == len && memcmp(d->strings + s.off, p, len) == 0;
}

bool vg_registry_device_in_group(const vg_registry_device_t *d, const char *name, size_t len)
{
    for (uint32_t i = 0; i < d->ngroups; i++)
        if (span_eq(d, d->groups[i], name, len))
            return true;
    return false;
}

int vg_registry_device_attr(const vg_registry_device_t *d, const char *key, size_t klen, const char **val, size_t *vlen)
{
    for (uint32_t i = 0; i < d->nattrs; i++)
        if (span_eq(d, d->attr_keys[i], key, klen)) {
            *val = vg_registry_str(d, d->attr_values[i]);
            *vlen = d->attr_values[i].len;
            return VG_OK;
        }
    return VG_ENOTFOUND;
}

int vg_registry_device_add_group(vg_registry_device_t *d, const char *name, size_t len)
{
    if (!vg_registry_id_valid(name, len))
        return VG_EINVAL;
    if (vg_registry_device_in_group(d, name, len))
        return VG_EEXIST;
    if (d->ngroups == VG_REGISTRY_GROUPS_MAX)
        return VG_ELIMIT;
    int rc = put_str(d, name, len, &d->groups[d->ngroups]);
    if (rc == VG_OK)
        d->ngroups++;
    return rc;
}

int vg_registry_device_set_attr(vg_registry_device_t *d, const char *key, size_t klen, const char *val, size_t vlen)
{
    const char *old;
    size_t oldlen;
    if (!vg_registry_id_valid(key, klen) || !value_valid(val, vlen))
        return VG_EINVAL;
    if (vg_registry_device_attr(d, key, klen, &old, &oldlen) == VG_OK)
        return VG_EEXIST;
    if (d->nattrs == VG_REGISTRY_ATTRS_MAX || d->strings_len + klen + vlen + 2 > VG_REGISTRY_STRINGS_MAX)
        return VG_ELIMIT;
    put_str(d, key, klen, &d->attr_keys[d->nattrs]);
    put_str(d, val, vlen, &d->attr_values[d->nattrs]);
    d->nattrs++;
    return VG_OK;
}

int vg_registry_cert_from_info(vg_registry_cert_t *c, const vg_pki_cert_info_t *info)
{
    if (!info->has_issuer || !vg_registry_id_valid(info->cn, info->cn_len))
        return VG_EINVAL;
    memset(c, 0, sizeof *c);
    memcpy(c->fingerprint, info->fingerprint, 32);
    memcpy(c->device_id, info->cn, info->cn_len);
    c->device_id_len = info->cn_len;
    memcpy(c->serial_hex, info->serial_hex, sizeof c->serial_hex);
    c->not_before_ms = info->not_before_ms;
    c->not_after_ms = info->not_after_ms;
    c->status = VG_REG_ACTIVE;
    memcpy(c->issuer_fingerprint, info->issuer_fingerprint, 32);
    return VG_OK;
}

/* ---- JSON columns ---------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* core/json reads objects; an array of plain names is scanned here, after
 * the text has been validated as JSON, so only its shape is checked:
 * strings only, no escapes (a valid name never needs one). */
int reg_parse_groups(vg_registry_device_t *d, const char *s, size_t n)
{
    if (vg_json_validate(s, n, 2) != VG_OK)
        return VG_EMALFORMED;
    const char *p = skip_ws(s, s + n), *end = s + n;
    if (p == end || *p++ != '[')
        return VG_EMALFORMED;
    p = skip_ws(p, end);
    if (p < end && *p == ']')
        return VG_OK;
    for (;;) {
        if (p == end || *p != '"')
            return VG_EMALFORMED;
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q || memchr(p + 1, '\\', (size_t)(q - p - 1)))
            return VG_EMALFORMED;
        if (vg_registry_device_add_group(d, p + 1, (size_t)(q - p - 1)) != VG_OK)
            return VG_EMALFORMED;
        p = skip_ws(q + 1, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        return p < end && *p == ']' ? VG_OK : VG_EMALFORMED;
    }
}

int reg_parse_attrs(vg_registry_device_t *d, const char *s, size_t n)
{
    vg_json_member_t m[VG_REGISTRY_ATTRS_MAX];
    size_t count = 0;
    if (vg_json_object(s, n, 2, m, VG_REGISTRY_ATTRS_MAX, &count) != VG_OK || count > VG_REGISTRY_ATTRS_MAX)
        return VG_EMALFORMED;
    for (size_t i = 0; i < count; i++)
        if (m[i].type != VG_JSON_STRING || m[i].key_escaped || m[i].str_escaped ||
            vg_registry_device_set_attr(d, m[i].key, m[i].key_len, m[i].raw, m[i].raw_len) != VG_OK)
            return VG_EMALFORMED;
    return VG_OK;
}

/* Names and values never need escaping (see their character sets), so
 * they are copied between quotes as they are. */
static int append(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
    if (*o + n >= cap)
        return VG_ENOSPC;
    memcpy(out + *o, s, n);
    *o += n;
    out[*o] = '\0';
    return VG_OK;
}

int reg_format_groups(const vg_registry_device_t *d, char *out, size_t cap)
{
    size_t o = 0;
    int rc = append(out, cap, &o, "[", 1);
    for (uint32_t i = 0; rc == VG_OK && i < d->ngroups; i++)
        if ((i && (rc = append(out, cap, &o, ",", 1))) || (rc = append(out, cap, &o, "\"", 1)) ||
            (rc = append(out, cap, &o, vg_registry_str(d, d->groups[i]), d->groups[i].len)) ||
            (rc = append(out, cap, &o, "\"", 1)))
            break;
    if (rc == VG_OK)
        rc = append(out, cap, &o, "]", 1);
    return rc ? rc : (int)o;
}

int reg_format_attrs(const vg_registry_device_t *d, char *out, size_t cap)
{
    size_t o = 0;
    int rc = append(out, cap, &o, "{", 1);
    for (uint32_t i = 0; rc == VG_OK && i < d->nattrs; i++)
        if ((i && (rc = append(out, cap, &o, ",", 1))) || (rc = append(out, cap, &o, "\"", 1)) ||
            (rc = append(out, cap, &o, vg_registry_str(d, d->attr_keys[i]), d->attr_keys[i].len)) ||
            (rc = append(out, cap, &o, "\":\"", 3)) ||
            (rc = append(out, cap, &o, vg_registry_str(d, d->attr_values[i]), d->attr_values[i].len)) ||
            (rc = append(out, cap, &o, "\"", 1)))
            break;
    if (rc == VG_OK)
        rc = append(out, cap, &o, "}", 1);
    return rc ? rc : (int)o;
}

/* ---- packed entries -------------------------------------------------------- */

static size_t nspans(const reg_dev_t *e)
{
    return (size_t)e->ngroups + 2 * (size_t)e->nattrs;
}

const char *reg_dev_id(const reg_dev_t *e)
{
    return (const char *)(e->spans + nspans(e));
}

reg_dev_t *reg_dev_pack(const vg_registry_device_t *d)
{
    size_t ns = (size_t)d->ngroups + 2 * (size_t)d->nattrs;
    reg_dev_t *e = vg_malloc(VG_MEM_SEC, sizeof *e + ns * sizeof(vg_registry_span_t) + d->id_len + 1 + d->strings_len);
    if (!e)
        return NULL;
    e->status = (uint8_t)d->status;
    e->provenance = (uint8_t)d->provenance;
    e->ngroups = (uint8_t)d->ngroups;
    e->nattrs = (uint8_t)d->nattrs;
    e->id_len = (uint16_t)d->id_len;
    e->strings_len = (uint16_t)d->strings_len;
    e->created_ms = d->created_ms;
    atomic_init(&e->last_seen_ms, d->last_seen_ms);
    atomic_init(&e->dirty, 0);
    memcpy(e->spans, d->groups, d->ngroups * sizeof(vg_registry_span_t));
    memcpy(e->spans + d->ngroups, d->attr_keys, d->nattrs * sizeof(vg_registry_span_t));
    memcpy(e->spans + d->ngroups + d->nattrs, d->attr_values, d->nattrs * sizeof(vg_registry_span_t));
    char *id = (char *)(e->spans + ns);
    memcpy(id, d->id, d->id_len + 1);
    memcpy(id + d->id_len + 1, d->strings, d->strings_len);
    return e;
}

void reg_dev_unpack(const reg_dev_t *e, vg_registry_device_t *out)
{
    memset(out, 0, offsetof(vg_registry_device_t, strings));
    const char *id = reg_dev_id(e);
    memcpy(out->id, id, (size_t)e->id_len + 1);
    out->id_len = e->id_len;
    out->status = e->status;
    out->provenance = e->provenance;
    out->created_ms = e->created_ms;
    out->last_seen_ms = atomic_load_explicit(&e->last_seen_ms, memory_order_relaxed);
    out->ngroups = e->ngroups;
    out->nattrs = e->nattrs;
    memcpy(out->groups, e->spans, e->ngroups * sizeof(vg_registry_span_t));
    memcpy(out->attr_keys, e->spans + e->ngroups, e->nattrs * sizeof(vg_registry_span_t));
    memcpy(out->attr_values, e->spans + e->ngroups + e->nattrs, e->nattrs * sizeof(vg_registry_span_t));
    out->strings_len = e->strings_len;
    memcpy(out->strings, id + e->id_len + 1, e->strings_len);
}

/* ---- the index ------------------------------------------------------------- */

void reg_index_init(reg_index_t *ix)
{
    vg_strmap_init(&ix->devs, VG_MEM_SEC);
    vg_strmap_init(&ix->certs, VG_MEM_SEC);
    vg_strmap_init(&ix->cas, VG_MEM_SEC);
}

static void free_values(vg_strmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            vg_free((void *)(uintptr_t)m->slots[i].value);
}

void reg_index_deinit(reg_index_t *ix)
{
    free_values(&ix->devs);
    free_values(&ix->certs);
    free_values(&ix->cas);
    vg_strmap_deinit(&ix->devs);
    vg_strmap_deinit(&ix->certs);
    vg_strmap_deinit(&ix->cas);
}

/* ---- deltas ---------------------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return VG_OK;
    size_t nc = *cap ? *cap * 2 : 64;
    void *p = vg_realloc(VG_MEM_SEC, *arr, nc * size);
    if (!p)
        return VG_ENOMEM;
    *arr = p;
    *cap = nc;
    return VG_OK;
}

void reg_delta_free(reg_delta_t *d)
{
    for (size_t i = 0; i < d->ndevs; i++)
        vg_free(d->devs[i]);
    for (size_t i = 0; i < d->ncerts; i++)
        vg_free(d->certs[i]);
    for (size_t i = 0; i < d->ncas; i++)
        vg_free(d->cas[i]);
    vg_free(d->tombs);
    vg_free(d->devs);
    vg_free(d->certs);
    vg_free(d->cas);
    memset(d, 0, sizeof *d);
}

int reg_delta_add_dev(reg_delta_t *d, reg_dev_t *e)
{
    if (grow((void **)&d->devs, &d->devs_cap, d->ndevs, sizeof *d->devs)) {
        vg_free(e);
        return VG_ENOMEM;
    }
    d->devs[d->ndevs++] = e;
    return VG_OK;
}

static void *dup_mem(const void *p, size_t n)
{
    void *q = vg_malloc(VG_MEM_SEC, n);
    if (q)
        memcpy(q, p, n);
    return q;
}

int reg_delta_add_cert(reg_delta_t *d, const vg_registry_cert_t *c)
{
    vg_registry_cert_t *e;
    if (grow((void **)&d->certs, &d->certs_cap, d->ncerts, sizeof *d->certs) || !(e = dup_mem(c, sizeof *c)))
        return VG_ENOMEM;
    d->certs[d->ncerts++] = e;
    return VG_OK;
}

int reg_delta_add_ca(reg_delta_t *d, const vg_registry_ca_t *c)
{
    vg_registry_ca_t *e;
    if (grow((void **)&d->cas, &d->cas_cap, d->ncas, sizeof *d->cas) || !(e = dup_mem(c, sizeof *c)))
        return VG_ENOMEM;
    d->cas[d->ncas++] = e;
    return VG_OK;
}

int reg_delta_add_tomb(reg_delta_t *d, int kind, const void *key, size_t len)
{
    if (len > VG_REGISTRY_ID_MAX)
        return VG_EINVAL;
    if (grow((void **)&d->tombs, &d->tombs_cap, d->ntombs, sizeof *d->tombs))
        return VG_ENOMEM;
    reg_tomb_t *t = &d->tombs[d->ntombs++];
    t->kind = (uint8_t)kind;
    t->len = (uint8_t)len;
    memcpy(t->key, key, len);
    return VG_OK;
}

/* ---- applying -------------------------------------------------------------- */

/* A device's strongest change wins: deleted > revoked > disabled > lost a
 * certificate. */
static int strength(vg_registry_change_t w)
{
    static const int s[] = {[VG_REG_CHANGE_DELETED] = 3,
                            [VG_REG_CHANGE_REVOKED] = 2,
                            [VG_REG_CHANGE_DISABLED] = 1,
                            [VG_REG_CHANGE_CERT_REVOKED] = 0,
                            [VG_REG_CHANGE_CAS] = 0};
    return s[w];
}

static int note(reg_events_t *ev, const char *id, size_t len, vg_registry_change_t what)
{
    if (!ev)
        return VG_OK;
    uint64_t old;
    if (vg_strmap_get(ev, id, len, &old) == VG_OK && strength((vg_registry_change_t)old) >= strength(what))
        return VG_OK;
    int rc = vg_strmap_put(ev, id, len, (uint64_t)what, NULL);
    return rc == VG_EEXIST ? VG_OK : rc;
}

static void *get(const vg_strmap_t *m, const void *key, size_t len)
{
    uint64_t v;
    return vg_strmap_get(m, key, len, &v) == VG_OK ? (void *)(uintptr_t)v : NULL;
}

/* Puts e under key, freeing what it replaces. */
static int put(vg_strmap_t *m, const void *key, size_t len, void *e)
{
    uint64_t old;
    int rc = vg_strmap_put(m, key, len, (uint64_t)(uintptr_t)e, &old);
    if (rc == VG_EEXIST)
        vg_free((void *)(uintptr_t)old);
    return rc == VG_EEXIST ? VG_OK : rc;
}

static void del(vg_strmap_t *m, const void *key, size_t len)
{
    void *e = get(m, key, len);
    if (e) {
        vg_strmap_del(m, key, len);
        vg_free(e);
    }
}

int reg_index_apply(reg_index_t *ix, reg_delta_t *d, reg_events_t *ev)
{
    int rc = VG_OK;
    /* Deletions first: a row read in the same delta is newer than any
     * tombstone for its key (see registry.c). */
    for (size_t i = 0; i < d->ntombs && rc == VG_OK; i++) {
        reg_tomb_t *t = &d->tombs[i];
        if (t->kind == TOMB_DEVICE) {
            if (get(&ix->devs, t->key, t->len))
                rc = note(ev, (const char *)t->key, t->len, VG_REG_CHANGE_DELETED);
            del(&ix->devs, t->key, t->len);
        } else if (t->kind == TOMB_CERT && t->len == 32) {
            vg_registry_cert_t *c = get(&ix->certs, t->key, 32);
            if (c && c->status == VG_REG_ACTIVE)
                rc = note(ev, c->device_id, c->device_id_len, VG_REG_CHANGE_CERT_REVOKED);
            del(&ix->certs, t->key, 32);
        } else if (t->kind == TOMB_CA && t->len == 32) {
            del(&ix->cas, t->key, 32);
            rc = note(ev, "", 0, VG_REG_CHANGE_CAS);
        }
    }
    for (size_t i = 0; i < d->ndevs && rc == VG_OK; i++) {
        reg_dev_t *e = d->devs[i];
        const char *id = reg_dev_id(e);
        reg_dev_t *old = get(&ix->devs, id, e->id_len);
        if (old) {
            /* The index's last-seen time may be newer than the row's:
             * it is written in batches. */
            int64_t seen = atomic_load(&old->last_seen_ms);
            if (seen > atomic_load(&e->last_seen_ms))
                atomic_store(&e->last_seen_ms, seen);
            atomic_store(&e->dirty, atomic_load(&old->dirty));
            if (e->status == VG_REG_REVOKED && old->status != VG_REG_REVOKED)
                rc = note(ev, id, e->id_len, VG_REG_CHANGE_REVOKED);
            else if (e->status == VG_REG_DISABLED && old->status == VG_REG_ACTIVE)
                rc = note(ev, id, e->id_len, VG_REG_CHANGE_DISABLED);
        }
        if (rc == VG_OK && (rc = put(&ix->devs, id, e->id_len, e)) == VG_OK)
            d->devs[i] = NULL;
    }
    for (size_t i = 0; i < d->ncerts && rc == VG_OK; i++) {
        vg_registry_cert_t *c = d->certs[i];
        vg_registry_cert_t *old = get(&ix->certs, c->fingerprint, 32);
        if (old && old->status == VG_REG_ACTIVE && c->status != VG_REG_ACTIVE)
            rc = note(ev, c->device_id, c->device_id_len, VG_REG_CHANGE_CERT_REVOKED);
        if (rc == VG_OK && (rc = put(&ix->certs, c->fingerprint, 32, c)) == VG_OK)
            d->certs[i] = NULL;
    }
    for (size_t i = 0; i < d->ncas && rc == VG_OK; i++)
        if ((rc = put(&ix->cas, d->cas[i]->fingerprint, 32, d->cas[i])) == VG_OK) {
            d->cas[i] = NULL;
            rc = note(ev, "", 0, VG_REG_CHANGE_CAS);
        }
    /* Entries moved into the index are NULL now; free the rest. */
    for (size_t i = 0; i < d->ndevs; i++)
        vg_free(d->devs[i]);
    for (size_t i = 0; i < d->ncerts; i++)
        vg_free(d->certs[i]);
    for (size_t i = 0; i < d->ncas; i++)
        vg_free(d->cas[i]);
    d->ndevs = d->ncerts = d->ncas = d->ntombs = 0;
    return rc;
}
