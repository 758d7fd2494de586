/* strmap.c — see strmap.h. */
#include "core/strmap.h"

#include "core/err.h"
#include "core/hash.h"

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

static size_t find(const vg_strmap_t *m, const char *key, size_t len, uint32_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const vg_strmap_slot_t *s = &m->slots[i];
        if (!s->key || (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0))
            return i;
    }
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
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].key)
            m->slots[find(m, old[i].key, old[i].key_len, old[i].hash)] = old[i];
    }
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
    size_t mask = m->cap - 1;
    size_t i = find(m, key, len, hash_bytes(key, len));
    if (!m->slots[i].key)
        return VG_ENOTFOUND;
    vg_free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    /* Backward-shift: pull later members of the probe run into the hole so
     * lookups never stop early at it (no tombstones to accumulate). */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        size_t dist_j = (j - home) & mask, dist_hole = (hole - home) & mask;
        if (dist_hole < dist_j) {
            m->slots[hole] = m->slots[j];
            m->slots[j].key = NULL;
            hole = j;
        }
    }
    return VG_OK;
}
