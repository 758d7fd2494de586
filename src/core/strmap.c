/* strmap.c — see strmap.h. */
#include "core/strmap.h"

#include "core/err.h"
#include "core/hash.h"
#include "core/set.h"

#include <string.h>

static uint32_t hash_bytes(const char *p, size_t n)
{
    return vg_hash_bytes(p, n);
}

void vg_strmap_init(vg_strmap_t *m, vg_mem_tag_t tag)
{
    memset(m, 0, sizeof *m);
    m->tag = tag;
}

void vg_strmap_deinit(vg_strmap_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        vg_free(m->slots[i].key);
    vg_free(m->slots);
    memset(m, 0, sizeof *m);
}

typedef struct {
    const char *p;
    size_t len;
    uint32_t h;
} probe_key_t;

#define SLOT_EMPTY(s) ((s).key == NULL)
#define SLOT_HASH(s) ((s).hash)
#define SLOT_MATCH(s, k) ((s).hash == (k).h && (s).key_len == (k).len && memcmp((s).key, (k).p, (k).len) == 0)
VG_SET_DEFINE(slots, vg_strmap_slot_t, probe_key_t, SLOT_EMPTY, SLOT_HASH, SLOT_MATCH)

static size_t find(const vg_strmap_t *m, const char *key, size_t len, uint32_t h)
{
    return slots_find(m->slots, m->cap - 1, h, (probe_key_t){key, len, h});
}

static int grow(vg_strmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    vg_strmap_slot_t *ns = vg_calloc(m->tag, ncap, sizeof *ns);
    if (!ns)
        return VG_ENOMEM;
    vg_strmap_slot_t *old = m->slots;
    size_t ocap = m->cap;
    m->slots = ns;
    m->cap = ncap;
    slots_rehash(ns, ncap - 1, old, ocap);
    vg_free(old);
    return VG_OK;
}

int vg_strmap_put(vg_strmap_t *m, const char *key, size_t len, uint64_t value, uint64_t *old)
{
    if (len > UINT32_MAX)
        return VG_EINVAL;
    if ((m->count + 1) * 10 > m->cap * 7) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    uint32_t h = hash_bytes(key, len);
    vg_strmap_slot_t *s = &m->slots[find(m, key, len, h)];
    if (s->key) {
        if (old)
            *old = s->value;
        s->value = value;
        return VG_EEXIST;
    }
    s->key = vg_strndup(m->tag, key, len);
    if (!s->key)
        return VG_ENOMEM;
    s->key_len = (uint32_t)len;
    s->hash = h;
    s->value = value;
    m->count++;
    return VG_OK;
}

int vg_strmap_get(const vg_strmap_t *m, const char *key, size_t len, uint64_t *value)
{
    if (!m->cap)
        return VG_ENOTFOUND;
    const vg_strmap_slot_t *s = &m->slots[find(m, key, len, hash_bytes(key, len))];
    if (!s->key)
        return VG_ENOTFOUND;
    *value = s->value;
    return VG_OK;
}

int vg_strmap_del(vg_strmap_t *m, const char *key, size_t len)
{
    if (!m->cap)
        return VG_ENOTFOUND;
    size_t i = find(m, key, len, hash_bytes(key, len));
    if (!m->slots[i].key)
        return VG_ENOTFOUND;
    vg_free(m->slots[i].key);
    m->count--;
    slots_delete(m->slots, m->cap - 1, i, (vg_strmap_slot_t){0});
    return VG_OK;
}
