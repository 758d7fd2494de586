/* set.h — open addressing with linear probing and backward-shift deletion,
 * written once for every hash table in the tree.
 *
 * Owns: the probing rules (home slot = hash & mask, step 1, the caller keeps
 * at least one slot empty), backward-shift deletion and rehashing into a new
 * slot array. Does not own: the slot array, its size, when to grow or shrink
 * (each table has its own memory budget: topic trie nodes keep their table
 * size in one byte), or what a slot holds.
 *
 * Two layers:
 *   - VG_SET_DEFINE generates static inline operations on a caller's slot
 *     array for one slot type. Used by strmap.c, the level trie's child
 *     tables (mqtt/trie.h) and vg_u64set below.
 *   - vg_u64set_t: a ready-made growing set of non-zero 64-bit keys (event
 *     and alert ids in the processor's replay).
 *
 * Why a macro and not functions taking a hash and an equality callback:
 * these tables sit on the hottest paths we have (one child lookup per topic
 * level per PUBLISH at 400,000 messages/s, client-id lookups, the replay
 * sets), and a call through a function pointer per probed slot costs more
 * than the probe. Generated per slot type, the hash and comparison are
 * inlined expressions and a slot can be a bare pointer, an integer or a
 * small struct, so no table pays for a generic slot layout (a trie node's
 * child table is an array of node pointers: 8 bytes a slot).
 *
 * The arguments of VG_SET_DEFINE(name, T, K, IS_EMPTY, HASH, MATCH):
 *   T            the slot type (a pointer, an integer or a struct);
 *   K            the lookup key type, passed by value (a small struct);
 *   IS_EMPTY(e)  true for an empty slot value e;
 *   HASH(e)      the hash of the element in slot value e (not empty); it
 *                must be cheap: deletion and rehashing call it per slot, so
 *                tables of strings keep the hash in the slot or the element;
 *   MATCH(e, k)  true if the element in slot value e has key k.
 * It defines, for slots[] of mask + 1 entries (a power of two):
 *   size_t name_find(const T *slots, size_t mask, size_t hv, K k)
 *       the slot holding k, or the empty slot where k would go;
 *   void name_put(T *slots, size_t mask, T e)
 *       stores e, whose key is not in the table;
 *   void name_delete(T *slots, size_t mask, size_t i, T empty)
 *       empties slot i and pulls later members of its probe run back, so
 *       lookups never need tombstones and a table's cost depends only on
 *       what it holds now;
 *   void name_rehash(T *dst, size_t dmask, const T *src, size_t scap)
 *       puts every element of src[0..scap) into dst (which is empty).
 * VG_SET_DEFINE_FIND(name, T, K, IS_EMPTY, MATCH) defines name_find alone,
 * for a table that never deletes and whose slots cannot be hashed without
 * more context (devtable.c's slots are entry indexes; it re-probes by id).
 * Not thread-safe: the owner of the slot array locks. */
#ifndef VG_CORE_SET_H
#define VG_CORE_SET_H

#include "core/alloc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VG_SET_DEFINE_FIND(name, T, K, IS_EMPTY, MATCH)                                                                \
    /* A typedef, so that `const` applies to the slot even when T is a pointer type. */                                \
    typedef T name##_slot_t;                                                                                           \
    __attribute__((unused)) static inline size_t name##_find(const name##_slot_t *slots, size_t mask, size_t hv, K k)  \
    {                                                                                                                  \
        /* Terminates: the caller's load limit keeps at least one slot empty. */                                       \
        size_t i = hv & mask;                                                                                          \
        while (!(IS_EMPTY(slots[i])) && !(MATCH(slots[i], k)))                                                         \
            i = (i + 1) & mask;                                                                                        \
        return i;                                                                                                      \
    }

#define VG_SET_DEFINE(name, T, K, IS_EMPTY, HASH, MATCH)                                                               \
    VG_SET_DEFINE_FIND(name, T, K, IS_EMPTY, MATCH)                                                                    \
    __attribute__((unused)) static inline void name##_put(name##_slot_t *slots, size_t mask, name##_slot_t e)          \
    {                                                                                                                  \
        size_t i = (size_t)(HASH(e)) & mask;                                                                           \
        while (!(IS_EMPTY(slots[i])))                                                                                  \
            i = (i + 1) & mask;                                                                                        \
        slots[i] = e;                                                                                                  \
    }                                                                                                                  \
    __attribute__((unused)) static inline void name##_delete(name##_slot_t *slots, size_t mask, size_t hole,           \
                                                             name##_slot_t empty)                                      \
    {                                                                                                                  \
        /* An element at j may move back into the hole unless its home slot                                            \
         * lies cyclically in (hole, j]: then the hole is before its home and                                          \
         * a lookup would never look there. */                                                                         \
        for (size_t j = (hole + 1) & mask; !(IS_EMPTY(slots[j])); j = (j + 1) & mask) {                                \
            size_t home = (size_t)(HASH(slots[j])) & mask;                                                             \
            if (((j - home) & mask) >= ((j - hole) & mask)) {                                                          \
                slots[hole] = slots[j];                                                                                \
                hole = j;                                                                                              \
            }                                                                                                          \
        }                                                                                                              \
        slots[hole] = empty;                                                                                           \
    }                                                                                                                  \
    __attribute__((unused)) static inline void name##_rehash(name##_slot_t *dst, size_t dmask,                         \
                                                             const name##_slot_t *src, size_t scap)                    \
    {                                                                                                                  \
        for (size_t i = 0; i < scap; i++)                                                                              \
            if (!(IS_EMPTY(src[i])))                                                                                   \
                name##_put(dst, dmask, src[i]);                                                                        \
    }

/* ---- a set of non-zero 64-bit keys ------------------------------------------ */

/* Zero-initialised (or vg_u64set_init) it is empty and allocates nothing;
 * the slot array appears with the first key and grows at 70% load. */
typedef struct {
    uint64_t *slots; /* 0 = empty */
    size_t cap;      /* 0 or a power of two */
    size_t count;
    vg_mem_tag_t tag;
} vg_u64set_t;

void vg_u64set_init(vg_u64set_t *s, vg_mem_tag_t tag);
/* Frees the slots; s is empty and usable again. NULL is accepted. */
void vg_u64set_deinit(vg_u64set_t *s);
/* VG_OK (added), VG_EEXIST (already there), VG_EINVAL (key 0), VG_ENOMEM
 * (s unchanged). */
int vg_u64set_add(vg_u64set_t *s, uint64_t key);
bool vg_u64set_has(const vg_u64set_t *s, uint64_t key);
/* VG_OK or VG_ENOTFOUND. */
int vg_u64set_del(vg_u64set_t *s, uint64_t key);

#endif
