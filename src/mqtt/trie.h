/* trie.h — the level trie with a child hash, shared by the subscription
 * tree (topic.c: filters, walked with a topic) and the retained store
 * (retain.c: topics, walked with a filter).
 *
 * Owns: a node's named children (the level below it keyed by level text),
 * the node's own level text and its hash, and the level arithmetic of MQTT
 * topic strings. Does not own: what a node carries (subscribers, a retained
 * message, '+' and '#' children, a parent pointer), the node allocation
 * (the owner allocates its node type, see below), walks, pruning or locks.
 *
 * Shape. An owner embeds vg_trie_node_t as the LAST member of its node type,
 * because the level text follows it as a flexible array:
 *
 *     typedef struct node {
 *         struct node *plus, *hash;  // the owner's fields first
 *         ...
 *         vg_trie_node_t t;          // then the trie's, then the key bytes
 *     } node_t;
 *     node_t *n = vg_malloc(tag, offsetof(node_t, t.key) + keylen);
 *     vg_trie_node_init(&n->t, key, keylen, hv);
 *
 * and converts the vg_trie_node_t pointers the children tables hold back to
 * its node type with VG_TRIE_OWNER (a constant offset). The header is 24
 * bytes with no padding, so an owner whose fields are a multiple of 8 bytes
 * wastes nothing; `aux` and `aux8` fill what would otherwise be padding and
 * belong to the owner (topic.c keeps its subscriber count and first QoS
 * there).
 *
 * Children. Memory is the design constraint: a broker whose million devices
 * each subscribe to `alerts/<id>` holds a million leaves, and most nodes are
 * leaves or have one child. So the first named child is stored inline and a
 * hash table appears only with the second one: open addressing over node
 * pointers (core/set.h), 4 slots at first, at most 3/4 full, halved when it
 * falls under 1/8, back to inline at one child. The table's size is kept as
 * a bit count in one byte.
 *
 * Why kid_find is inline here: it is the one operation on the hot path (a
 * lookup per topic level per PUBLISH, per retained literal lookup); the
 * rest lives in trie.c. Not thread-safe: the owner locks. */
#ifndef VG_MQTT_TRIE_H
#define VG_MQTT_TRIE_H

#include "core/hash.h"
#include "core/set.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A level of a valid topic or filter is at most this long (the whole string is). */
#define VG_TRIE_MAX_LEVEL 65535u

typedef struct vg_trie_node vg_trie_node_t;

struct vg_trie_node {
    union {
        vg_trie_node_t *one;    /* kbits == 0: the only named child, or NULL */
        vg_trie_node_t **slots; /* kbits > 0: 1 << kbits slots, NULL = empty */
    } kids;
    uint32_t hv;     /* hash of key, kept so that tables grow and delete without rehashing text */
    uint32_t nkids;  /* named children */
    uint32_t aux;    /* the owner's */
    uint16_t keylen; /* <= VG_TRIE_MAX_LEVEL */
    uint8_t kbits;
    uint8_t aux8; /* the owner's */
    char key[];   /* the level text, not NUL-terminated; empty for the root */
};

_Static_assert(sizeof(void *) != 8 || offsetof(vg_trie_node_t, key) == 24, "vg_trie_node_t must stay 24 bytes");

/* The owner's node of type `type` whose trie member is `member`, from a
 * vg_trie_node_t pointer p (NULL stays NULL). */
#define VG_TRIE_OWNER(p, type, member) ((type *)vg_trie_owner_((const vg_trie_node_t *)(p), offsetof(type, member)))

static inline void *vg_trie_owner_(const vg_trie_node_t *p, size_t off)
{
    return p ? (void *)((char *)(uintptr_t)p - off) : NULL;
}

/* ---- level text ------------------------------------------------------------ */

static inline uint32_t vg_trie_hash(const char *s, size_t n)
{
    return vg_hash_bytes(s, n);
}

/* The index one past the level that starts at pos: the next '/' or len. */
static inline size_t vg_trie_level_end(const char *s, size_t len, size_t pos)
{
    if (pos >= len)
        return len;
    const char *slash = memchr(s + pos, '/', len - pos);
    return slash ? (size_t)(slash - s) : len;
}

/* '+' and '#' are wildcards only as whole levels. */
static inline bool vg_trie_is_plus(const char *s, size_t len)
{
    return len == 1 && s[0] == '+';
}

static inline bool vg_trie_is_hash(const char *s, size_t len)
{
    return len == 1 && s[0] == '#';
}

/* ---- nodes ------------------------------------------------------------------- */

/* Initialises the header of a node the owner allocated with room for keylen
 * key bytes (keylen <= VG_TRIE_MAX_LEVEL): no children, aux fields 0. */
void vg_trie_node_init(vg_trie_node_t *n, const char *key, size_t keylen, uint32_t hv);

typedef struct {
    const char *s;
    size_t len;
    uint32_t hv;
} vg_trie_key_t;

#define VG_TRIE_KID_EMPTY(c) ((c) == NULL)
#define VG_TRIE_KID_HASH(c) ((c)->hv)
#define VG_TRIE_KID_MATCH(c, k) ((c)->hv == (k).hv && (c)->keylen == (k).len && memcmp((c)->key, (k).s, (k).len) == 0)
VG_SET_DEFINE(vg_trie_kids, vg_trie_node_t *, vg_trie_key_t, VG_TRIE_KID_EMPTY, VG_TRIE_KID_HASH, VG_TRIE_KID_MATCH)

/* n's named child with level text s[0..len) of hash hv (vg_trie_hash), or NULL. */
static inline vg_trie_node_t *vg_trie_kid_find(const vg_trie_node_t *n, const char *s, size_t len, uint32_t hv)
{
    vg_trie_key_t k = {s, len, hv};
    if (n->kbits == 0) {
        vg_trie_node_t *c = n->kids.one;
        return c && VG_TRIE_KID_MATCH(c, k) ? c : NULL;
    }
    size_t mask = ((size_t)1 << n->kbits) - 1;
    return n->kids.slots[vg_trie_kids_find(n->kids.slots, mask, hv, k)];
}

/* Adds c (initialised, its key not yet among n's children). VG_OK or
 * VG_ENOMEM (n unchanged). */
int vg_trie_kid_insert(vg_trie_node_t *n, vg_trie_node_t *c);

/* Removes child c (one of n's) from n. Never fails: shrinking the table is
 * skipped if memory is short. c itself is not freed. */
void vg_trie_kid_remove(vg_trie_node_t *n, vg_trie_node_t *c);

/* The child of n after c in table order (c == NULL: the first), or NULL.
 * The order is stable as long as n's children do not change; finding c's
 * slot costs one short probe, so a walk needs no cursor besides c. */
vg_trie_node_t *vg_trie_kid_next(const vg_trie_node_t *n, const vg_trie_node_t *c);

/* Frees n's child table (not the children: collect them first with
 * vg_trie_kid_next) and leaves n without children. */
void vg_trie_kids_release(vg_trie_node_t *n);

#endif
