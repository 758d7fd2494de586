/* set.c — vg_u64set_t (set.h); the probing itself is VG_SET_DEFINE's. */
#include "core/set.h"

#include "core/err.h"

#include <string.h>

/* murmur3's 64-bit finaliser: ids are often sequential or differ only in
 * their high bits (a shard number), and the table indexes by the low bits. */
static inline size_t u64_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (size_t)k;
}

#define U64_EMPTY(e) ((e) == 0)
#define U64_HASH(e) u64_hash(e)
#define U64_MATCH(e, k) ((e) == (k))
VG_SET_DEFINE(u64, uint64_t, uint64_t, U64_EMPTY, U64_HASH, U64_MATCH)

void vg_u64set_init(vg_u64set_t *s, vg_mem_tag_t tag)
{
    memset(s, 0, sizeof *s);
    s->tag = tag;
}

void vg_u64set_deinit(vg_u64set_t *s)
{
    if (!s)
        return;
    vg_free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
}

int vg_u64set_add(vg_u64set_t *s, uint64_t key)
{
    if (key == 0)
        return VG_EINVAL;
    if (s->cap && s->slots[u64_find(s->slots, s->cap - 1, u64_hash(key), key)] == key)
        return VG_EEXIST;
    if ((s->count + 1) * 10 > s->cap * 7) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint64_t *ns = vg_calloc(s->tag, cap, sizeof *ns);
        if (!ns)
            return VG_ENOMEM;
        u64_rehash(ns, cap - 1, s->slots, s->cap);
        vg_free(s->slots);
        s->slots = ns;
        s->cap = cap;
    }
    u64_put(s->slots, s->cap - 1, key);
    s->count++;
    return VG_OK;
}

bool vg_u64set_has(const vg_u64set_t *s, uint64_t key)
{
    if (!s->count || key == 0)
        return false;
    return s->slots[u64_find(s->slots, s->cap - 1, u64_hash(key), key)] == key;
}

int vg_u64set_del(vg_u64set_t *s, uint64_t key)
{
    if (!s->count || key == 0)
        return VG_ENOTFOUND;
    size_t i = u64_find(s->slots, s->cap - 1, u64_hash(key), key);
    if (s->slots[i] != key)
        return VG_ENOTFOUND;
    u64_delete(s->slots, s->cap - 1, i, 0);
    s->count--;
    return VG_OK;
}
