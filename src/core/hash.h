/* hash.h — the hash for in-memory tables keyed by short byte strings
 * (topic levels, device ids, client ids): FNV-1a, then murmur3's finaliser,
 * because the tables index by the low bits and fleet ids such as "dev-17"
 * and "dev-18" differ only in their last byte — the finaliser spreads that
 * difference over the whole word. Not keyed: a client choosing colliding ids
 * can slow one table down (noted for a seeded hash later). */
#ifndef VG_CORE_HASH_H
#define VG_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t vg_hash_bytes(const void *data, size_t n)
{
    const uint8_t *s = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

#endif
