/* strmap.h — a hash map from byte strings to uint64_t values.
 *
 * Open addressing (core/set.h: linear probing, backward-shift deletion), power-of-
 * two capacity grown at 70% load; keys are copied. Not thread-safe: the owner
 * locks. Used for client-id ownership and other small indexes. */
#ifndef VG_CORE_STRMAP_H
#define VG_CORE_STRMAP_H

#include "core/alloc.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *key; /* NULL = empty slot */
    uint32_t key_len;
    uint32_t hash;
    uint64_t value;
} vg_strmap_slot_t;

typedef struct {
    vg_strmap_slot_t *slots;
    size_t cap; /* 0 or a power of two */
    size_t count;
    vg_mem_tag_t tag;
} vg_strmap_t;

void vg_strmap_init(vg_strmap_t *m, vg_mem_tag_t tag);
void vg_strmap_deinit(vg_strmap_t *m);
/* Inserts or replaces. If old is non-NULL and the key existed, *old gets the
 * previous value and VG_EEXIST is returned; VG_OK for a new key; VG_ENOMEM. */
int vg_strmap_put(vg_strmap_t *m, const char *key, size_t len, uint64_t value, uint64_t *old);
/* VG_OK and *value, or VG_ENOTFOUND. */
int vg_strmap_get(const vg_strmap_t *m, const char *key, size_t len, uint64_t *value);
/* Removes key; VG_OK or VG_ENOTFOUND. */
int vg_strmap_del(vg_strmap_t *m, const char *key, size_t len);

#endif
