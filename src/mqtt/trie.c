/* trie.c — a trie node's named children (trie.h).
 *
 * Owns: the child tables (charged to VG_MEM_MQTT) and their growth and
 * shrinking. The probing is core/set.h's; the inline single child and the
 * size in one byte are this file's. */
#include "mqtt/trie.h"

#include "core/alloc.h"
#include "core/err.h"

/* A table is created at 4 slots (a node's second child) and kept at most 3/4
 * full; linear probing stays short at that load and small tables stay small. */
#define KIDS_MIN_BITS 2

void vg_trie_node_init(vg_trie_node_t *n, const char *key, size_t keylen, uint32_t hv)
{
    memset(n, 0, offsetof(vg_trie_node_t, key));
    n->hv = hv;
    n->keylen = (uint16_t)keylen;
    if (keylen)
        memcpy(n->key, key, keylen);
}

/* Moves n's children into a fresh table of 1 << bits slots. On failure n is
 * unchanged. */
static int kids_rehash(vg_trie_node_t *n, unsigned bits)
{
    size_t cap = (size_t)1 << bits;
    vg_trie_node_t **slots = vg_calloc(VG_MEM_MQTT, cap, sizeof(*slots));
    if (!slots)
        return VG_ENOMEM;
    if (n->kbits == 0) {
        if (n->kids.one)
            vg_trie_kids_put(slots, cap - 1, n->kids.one);
    } else {
        vg_trie_kids_rehash(slots, cap - 1, n->kids.slots, (size_t)1 << n->kbits);
        vg_free(n->kids.slots);
    }
    n->kids.slots = slots;
    n->kbits = (uint8_t)bits;
    return VG_OK;
}

int vg_trie_kid_insert(vg_trie_node_t *n, vg_trie_node_t *c)
{
    if (n->kbits == 0 && n->nkids == 0) {
        n->kids.one = c;
        n->nkids = 1;
        return VG_OK;
    }
    if (n->nkids == UINT32_MAX)
        return VG_ENOMEM;
    size_t cap = n->kbits ? (size_t)1 << n->kbits : 0;
    if (((size_t)n->nkids + 1) * 4 > cap * 3) {
        int rc = kids_rehash(n, n->kbits ? n->kbits + 1u : KIDS_MIN_BITS);
        if (rc)
            return rc;
    }
    vg_trie_kids_put(n->kids.slots, ((size_t)1 << n->kbits) - 1, c);
    n->nkids++;
    return VG_OK;
}

/* The slot of child c in n's table (c is there). By identity: cheaper than
 * comparing keys, and c's hash says where its probe run starts. */
static size_t kid_slot(const vg_trie_node_t *n, const vg_trie_node_t *c)
{
    size_t mask = ((size_t)1 << n->kbits) - 1, i = c->hv & mask;
    while (n->kids.slots[i] != c)
        i = (i + 1) & mask;
    return i;
}

void vg_trie_kid_remove(vg_trie_node_t *n, vg_trie_node_t *c)
{
    if (n->kbits == 0) {
        n->kids.one = NULL;
        n->nkids = 0;
        return;
    }
    size_t cap = (size_t)1 << n->kbits;
    vg_trie_kids_delete(n->kids.slots, cap - 1, kid_slot(n, c), NULL);
    n->nkids--;

    if (n->nkids <= 1) {
        /* Back to the inline form, which is what most nodes use. */
        vg_trie_node_t **slots = n->kids.slots, *last = NULL;
        for (size_t i = 0; i < cap && !last; i++)
            last = slots[i];
        vg_free(slots);
        n->kids.one = last;
        n->kbits = 0;
    } else if (n->kbits > KIDS_MIN_BITS && (size_t)n->nkids * 8 < cap) {
        (void)kids_rehash(n, n->kbits - 1u);
    }
}

vg_trie_node_t *vg_trie_kid_next(const vg_trie_node_t *n, const vg_trie_node_t *c)
{
    if (n->kbits == 0)
        return c ? NULL : n->kids.one;
    size_t cap = (size_t)1 << n->kbits;
    for (size_t i = c ? kid_slot(n, c) + 1 : 0; i < cap; i++)
        if (n->kids.slots[i])
            return n->kids.slots[i];
    return NULL;
}

void vg_trie_kids_release(vg_trie_node_t *n)
{
    if (n->kbits)
        vg_free(n->kids.slots);
    n->kids.one = NULL;
    n->nkids = 0;
    n->kbits = 0;
}
