/* heap.h — a binary min-heap, written once for every timer and expiry queue.
 *
 * Owns: the heap order over an array of elements, its growth (through
 * core/alloc.h) and, for heaps whose elements must be found again (a
 * replaced or cancelled entry), telling each element where it now sits.
 * Does not own: the elements (values the caller copies in: a struct with
 * its key, or a pointer to something that holds the key), locking.
 *
 * VG_HEAP_DEFINE(name, T, LESS, MOVED) defines the type name_t and static
 * inline operations on it:
 *   LESS(a, b)    true if element a must come out before element b;
 *   MOVED(e, i)   called whenever element e is stored at index i (an
 *                 indexed heap records i in e; `VG_HEAP_NO_INDEX` if the
 *                 elements are never looked up).
 *
 *   name_t h = {0};                        empty, allocates nothing
 *   int  name_reserve(&h, n, tag)          room for n more: VG_OK or VG_ENOMEM (h unchanged),
 *                                          so that a push after it cannot fail
 *   int  name_push(&h, e, tag)             reserve(1) and add e
 *   T    name_top(&h) / name_pop(&h)       the least element (h.len > 0), pop removes it
 *   void name_remove(&h, i)                removes the element at index i
 *   void name_fix(&h, i)                   the key of the element at i changed: restore the order
 *   void name_free(&h)                     frees the array (not what elements point to)
 * h.len and h.v[0..len) may be read directly (v[0] is the least).
 *
 * Why a macro and not a heap of void * with a comparison callback: the
 * comparison runs log2(n) times per operation on paths that matter (the
 * gateway's session timers, the simulator's 100,000 device timers, retained
 * expiry), and generated per element type it is an inlined compare of two
 * integers; elements can also be small structs that carry their key, so a
 * sift never touches the (cold) objects they stand for. Not thread-safe. */
#ifndef VG_CORE_HEAP_H
#define VG_CORE_HEAP_H

#include "core/alloc.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define VG_HEAP_NO_INDEX(e, i) ((void)0)

#define VG_HEAP_DEFINE(name, T, LESS, MOVED)                                                                           \
    typedef struct {                                                                                                   \
        T *v;                                                                                                          \
        size_t len, cap;                                                                                               \
    } name##_t;                                                                                                        \
    __attribute__((unused)) static inline int name##_reserve(name##_t *h, size_t n, vg_mem_tag_t tag)                  \
    {                                                                                                                  \
        if (h->cap - h->len >= n)                                                                                      \
            return VG_OK;                                                                                              \
        if (n > SIZE_MAX / 2 / sizeof(T) - h->len)                                                                     \
            return VG_ENOMEM;                                                                                          \
        size_t cap = h->cap ? h->cap : 64;                                                                             \
        while (cap - h->len < n)                                                                                       \
            cap *= 2;                                                                                                  \
        T *v = vg_realloc(tag, h->v, cap * sizeof(T));                                                                 \
        if (!v)                                                                                                        \
            return VG_ENOMEM;                                                                                          \
        h->v = v;                                                                                                      \
        h->cap = cap;                                                                                                  \
        return VG_OK;                                                                                                  \
    }                                                                                                                  \
    /* Moves the element at i up or down to where the order wants it. */                                               \
    __attribute__((unused)) static inline void name##_fix(name##_t *h, size_t i)                                       \
    {                                                                                                                  \
        T e = h->v[i];                                                                                                 \
        while (i > 0 && (LESS(e, h->v[(i - 1) / 2]))) {                                                                \
            h->v[i] = h->v[(i - 1) / 2];                                                                               \
            MOVED(h->v[i], i);                                                                                         \
            i = (i - 1) / 2;                                                                                           \
        }                                                                                                              \
        for (;;) {                                                                                                     \
            size_t c = 2 * i + 1;                                                                                      \
            if (c >= h->len)                                                                                           \
                break;                                                                                                 \
            if (c + 1 < h->len && (LESS(h->v[c + 1], h->v[c])))                                                        \
                c++;                                                                                                   \
            if (!(LESS(h->v[c], e)))                                                                                   \
                break;                                                                                                 \
            h->v[i] = h->v[c];                                                                                         \
            MOVED(h->v[i], i);                                                                                         \
            i = c;                                                                                                     \
        }                                                                                                              \
        h->v[i] = e;                                                                                                   \
        MOVED(h->v[i], i);                                                                                             \
    }                                                                                                                  \
    __attribute__((unused)) static inline int name##_push(name##_t *h, T e, vg_mem_tag_t tag)                          \
    {                                                                                                                  \
        int rc = name##_reserve(h, 1, tag);                                                                            \
        if (rc)                                                                                                        \
            return rc;                                                                                                 \
        h->v[h->len++] = e;                                                                                            \
        name##_fix(h, h->len - 1);                                                                                     \
        return VG_OK;                                                                                                  \
    }                                                                                                                  \
    __attribute__((unused)) static inline T name##_top(const name##_t *h)                                              \
    {                                                                                                                  \
        return h->v[0];                                                                                                \
    }                                                                                                                  \
    __attribute__((unused)) static inline void name##_remove(name##_t *h, size_t i)                                    \
    {                                                                                                                  \
        h->len--;                                                                                                      \
        if (i < h->len) {                                                                                              \
            h->v[i] = h->v[h->len];                                                                                    \
            name##_fix(h, i);                                                                                          \
        }                                                                                                              \
    }                                                                                                                  \
    __attribute__((unused)) static inline T name##_pop(name##_t *h)                                                    \
    {                                                                                                                  \
        T top = h->v[0];                                                                                               \
        name##_remove(h, 0);                                                                                           \
        return top;                                                                                                    \
    }                                                                                                                  \
    __attribute__((unused)) static inline void name##_free(name##_t *h)                                                \
    {                                                                                                                  \
        vg_free(h->v);                                                                                                 \
        h->v = NULL;                                                                                                   \
        h->len = h->cap = 0;                                                                                           \
    }

#endif
