/* topic.c — the subscription trie behind topic.h.
 *
 * Owns: the trie's nodes, their child tables and subscriber arrays, all
 * charged to VG_MEM_MQTT. Does not own: the subscribers (opaque pointers the
 * caller keeps alive), filter validation (the codec's vg_mqtt_filter_valid;
 * here we only promise not to crash on a bad filter) or locking (the broker's).
 *
 * Memory is the design constraint. A broker whose million devices each
 * subscribe to `alerts/<id>` holds a million leaves, so a node is a single
 * allocation of 48 bytes plus its level text: the first subscriber is stored
 * inline (no array until a second one arrives) and the first named child too
 * (no table until a second child arrives): the named children are the level
 * trie's (mqtt/trie.h, shared with the retained store), this file adds the
 * '+' and '#' children and the subscribers.
 *
 * Matching is a depth-first walk that follows the exact child, the '+' child
 * and the '#' child of each node; it never looks at unrelated siblings, so its
 * cost does not depend on how many other filters are stored. Nothing here
 * recurses per topic level (filters may have 32,768 levels), and freeing a
 * subtree needs no stack at all (see subtree_free). */
#include "mqtt/topic.h"

#include "core/alloc.h"
#include "core/err.h"
#include "mqtt/trie.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct node node_t;

typedef struct {
    void *sub;
    uint8_t qos;
} sub_entry_t;

struct node {
    node_t *plus; /* the '+' child */
    node_t *hash; /* the '#' child: its subscribers match the rest of any topic, including nothing */
    union {
        void *one;        /* nsubs <= 1: the only subscriber, its QoS in ONE_QOS */
        sub_entry_t *arr; /* nsubs >= 2: room for subs_cap(nsubs) entries */
    } subs;
    vg_trie_node_t t; /* the named children and the level text; last, the key bytes follow */
};

/* The trie header's owner fields, which would otherwise be padding. */
#define NSUBS(n) ((n)->t.aux)
#define ONE_QOS(n) ((n)->t.aux8)

/* The per-subscription budget in the header depends on this staying small. */
_Static_assert(sizeof(void *) != 8 || offsetof(node_t, t.key) == 48, "node_t grew: check the memory budget in topic.h");

/* Our node of a trie child (NULL stays NULL). */
static node_t *kid_node(const vg_trie_node_t *c)
{
    return VG_TRIE_OWNER(c, node_t, t);
}

struct vg_topic_tree {
    node_t *root;
    size_t count;
};

#define MAX_LEVEL_LEN VG_TRIE_MAX_LEVEL
/* Frames of the match walk kept on the C stack before it recurses (see match_walk). */
#define MATCH_STACK 32

/* ---- level text ---------------------------------------------------------- */

/* A NULL text is read as the empty string (one empty level), so that the
 * level arithmetic below never offsets a null pointer. */
static const char *text_or_empty(const char *s, size_t *len)
{
    if (s)
        return s;
    *len = 0;
    return "";
}

/* ---- nodes ----------------------------------------------------------------- */

static node_t *node_new(const char *key, size_t keylen, uint32_t hv)
{
    node_t *n = vg_malloc(VG_MEM_MQTT, offsetof(node_t, t.key) + keylen);
    if (!n)
        return NULL;
    n->plus = n->hash = NULL;
    n->subs.one = NULL;
    vg_trie_node_init(&n->t, key, keylen, hv);
    return n;
}

/* Everything a node holds; a node with none of it is pruned. */
static size_t node_content(const node_t *n)
{
    return (size_t)NSUBS(n) + n->t.nkids + (n->plus != NULL) + (n->hash != NULL);
}

/* ---- subscribers ----------------------------------------------------------- */

/* Capacity of the subscriber array for n >= 2 entries: the next power of two.
 * Deriving it from the count saves a field in every node; the array may be
 * larger than this (a failed shrink), never smaller. */
static size_t subs_cap(uint32_t n)
{
    size_t cap = 2;
    while (cap < n)
        cap *= 2;
    return cap;
}

static void *sub_at(const node_t *n, uint32_t i, uint8_t *qos)
{
    if (NSUBS(n) == 1) {
        *qos = ONE_QOS(n);
        return n->subs.one;
    }
    *qos = n->subs.arr[i].qos;
    return n->subs.arr[i].sub;
}

/* Index of sub among n's subscribers, or -1. Linear: a filter rarely has more
 * than a handful of subscribers, and an array is the smallest representation. */
static long subs_find(const node_t *n, const void *sub)
{
    for (uint32_t i = 0; i < NSUBS(n); i++) {
        uint8_t qos;
        if (sub_at(n, i, &qos) == sub)
            return (long)i;
    }
    return -1;
}

static void subs_set_qos(node_t *n, long i, uint8_t qos)
{
    if (NSUBS(n) == 1)
        ONE_QOS(n) = qos;
    else
        n->subs.arr[i].qos = qos;
}

static int subs_add(node_t *n, void *sub, uint8_t qos)
{
    if (NSUBS(n) == 0) {
        n->subs.one = sub;
        ONE_QOS(n) = qos;
    } else if (NSUBS(n) == 1) {
        sub_entry_t *arr = vg_malloc(VG_MEM_MQTT, 2 * sizeof(*arr));
        if (!arr)
            return VG_ENOMEM;
        arr[0] = (sub_entry_t){n->subs.one, ONE_QOS(n)};
        n->subs.arr = arr;
    } else {
        if (NSUBS(n) >= UINT32_MAX / 2)
            return VG_ENOMEM;
        size_t cap = subs_cap(NSUBS(n));
        if (NSUBS(n) == cap) {
            sub_entry_t *arr = vg_realloc(VG_MEM_MQTT, n->subs.arr, 2 * cap * sizeof(*arr));
            if (!arr)
                return VG_ENOMEM;
            n->subs.arr = arr;
        }
    }
    if (NSUBS(n) >= 1)
        n->subs.arr[NSUBS(n)] = (sub_entry_t){sub, qos};
    NSUBS(n)++;
    return VG_OK;
}

static void subs_remove(node_t *n, long i)
{
    if (NSUBS(n) == 1) {
        n->subs.one = NULL;
        ONE_QOS(n) = 0;
    } else if (NSUBS(n) == 2) {
        sub_entry_t keep = n->subs.arr[1 - i];
        vg_free(n->subs.arr);
        n->subs.one = keep.sub;
        ONE_QOS(n) = keep.qos;
    } else {
        n->subs.arr[i] = n->subs.arr[NSUBS(n) - 1];
        uint32_t left = NSUBS(n) - 1;
        if ((left & (left - 1)) == 0) {
            /* Give back the upper half; keeping it on failure is harmless. */
            sub_entry_t *arr = vg_realloc(VG_MEM_MQTT, n->subs.arr, left * sizeof(*arr));
            if (arr)
                n->subs.arr = arr;
        }
    }
    NSUBS(n)--;
}

/* ---- structure ------------------------------------------------------------- */

/* Frees n and everything below it without recursion or a heap stack: nodes
 * waiting to be freed are chained through their own `plus` field. Pushing a
 * node first pushes the chain of '+' children hanging from it, so no child is
 * lost when its parent's field is reused. */
static void push_pending(node_t **head, node_t *c)
{
    while (c) {
        node_t *next = c->plus;
        c->plus = *head;
        *head = c;
        c = next;
    }
}

static void subtree_free(node_t *n)
{
    node_t *pending = NULL;
    push_pending(&pending, n);
    while (pending) {
        node_t *cur = pending;
        pending = cur->plus;
        push_pending(&pending, cur->hash);
        /* Pushing reuses only the owner's `plus` field, so the child table
         * stays intact for the iteration. */
        for (vg_trie_node_t *c = vg_trie_kid_next(&cur->t, NULL); c; c = vg_trie_kid_next(&cur->t, c))
            push_pending(&pending, kid_node(c));
        vg_trie_kids_release(&cur->t);
        if (NSUBS(cur) >= 2)
            vg_free(cur->subs.arr);
        vg_free(cur);
    }
}

/* The child of n for one filter level ('+' and '#' are wildcards only as
 * whole levels), or NULL. A level longer than any valid filter's has none. */
static node_t *child_find(const node_t *n, const char *s, size_t len)
{
    if (vg_trie_is_plus(s, len))
        return n->plus;
    if (vg_trie_is_hash(s, len))
        return n->hash;
    if (len > MAX_LEVEL_LEN)
        return NULL;
    return kid_node(vg_trie_kid_find(&n->t, s, len, vg_trie_hash(s, len)));
}

/* Finds or creates the child of n for one filter level; *created says which. */
static int child_get(node_t *n, const char *s, size_t len, node_t **out, bool *created)
{
    *created = false;
    if (len > MAX_LEVEL_LEN)
        return VG_EINVAL;
    node_t **wild = vg_trie_is_plus(s, len) ? &n->plus : vg_trie_is_hash(s, len) ? &n->hash : NULL;
    uint32_t hv = wild ? 0 : vg_trie_hash(s, len);
    node_t *c = wild ? *wild : kid_node(vg_trie_kid_find(&n->t, s, len, hv));
    if (!c) {
        c = node_new(wild ? NULL : s, wild ? 0 : len, hv);
        if (!c)
            return VG_ENOMEM;
        if (wild) {
            *wild = c;
        } else if (vg_trie_kid_insert(&n->t, &c->t) != VG_OK) {
            vg_free(c);
            return VG_ENOMEM;
        }
        *created = true;
    }
    *out = c;
    return VG_OK;
}

/* Unhooks child c from n (c is n's '+', '#' or a named child). */
static void child_detach(node_t *n, node_t *c)
{
    if (n->plus == c)
        n->plus = NULL;
    else if (n->hash == c)
        n->hash = NULL;
    else
        vg_trie_kid_remove(&n->t, &c->t);
}

/* ---- public API ------------------------------------------------------------ */

int vg_topic_tree_new(vg_topic_tree_t **out)
{
    vg_topic_tree_t *t = vg_malloc(VG_MEM_MQTT, sizeof(*t));
    if (!t)
        return VG_ENOMEM;
    t->count = 0;
    t->root = node_new(NULL, 0, 0);
    if (!t->root) {
        vg_free(t);
        return VG_ENOMEM;
    }
    *out = t;
    return VG_OK;
}

void vg_topic_tree_free(vg_topic_tree_t *t)
{
    if (!t)
        return;
    subtree_free(t->root);
    vg_free(t);
}

/* Beyond topic.h's codes, returns VG_EINVAL for a level longer than 65,535
 * bytes, which no valid filter has (the whole filter is limited to that). */
int vg_topic_tree_subscribe(vg_topic_tree_t *t, const char *filter, size_t len, void *sub, uint8_t qos)
{
    filter = text_or_empty(filter, &len);
    node_t *n = t->root;
    /* The first node this call creates and its parent: on failure the whole
     * new branch hangs from there and is removed in one piece, so no empty
     * node is ever left behind. */
    node_t *fresh = NULL, *fresh_parent = NULL;
    int rc;

    size_t pos = 0;
    do {
        size_t end = vg_trie_level_end(filter, len, pos);
        node_t *child;
        bool created;
        rc = child_get(n, filter + pos, end - pos, &child, &created);
        if (rc)
            goto cleanup;
        if (created && !fresh) {
            fresh = child;
            fresh_parent = n;
        }
        n = child;
        pos = end + 1;
    } while (pos <= len);

    long i = subs_find(n, sub);
    if (i >= 0) {
        subs_set_qos(n, i, qos);
        return VG_EEXIST;
    }
    rc = subs_add(n, sub, qos);
    if (rc)
        goto cleanup;
    t->count++;
    return VG_OK;

cleanup:
    if (fresh) {
        child_detach(fresh_parent, fresh);
        subtree_free(fresh);
    }
    return rc;
}

int vg_topic_tree_unsubscribe(vg_topic_tree_t *t, const char *filter, size_t len, void *sub)
{
    filter = text_or_empty(filter, &len);
    node_t *n = t->root;
    /* The deepest node on the path that must survive if the leaf empties (it
     * holds something besides the path) and its child on the path: if the
     * leaf becomes empty, everything from cut_child down is a bare chain
     * leading to it and goes in one piece. */
    node_t *cut = n, *cut_child = NULL;

    size_t pos = 0;
    do {
        size_t end = vg_trie_level_end(filter, len, pos);
        node_t *child = child_find(n, filter + pos, end - pos);
        if (!child)
            return VG_ENOTFOUND;
        if (n == t->root || node_content(n) > 1) {
            cut = n;
            cut_child = child;
        }
        n = child;
        pos = end + 1;
    } while (pos <= len);

    long i = subs_find(n, sub);
    if (i < 0)
        return VG_ENOTFOUND;
    subs_remove(n, i);
    t->count--;
    if (node_content(n) == 0) {
        child_detach(cut, cut_child);
        subtree_free(cut_child);
    }
    return VG_OK;
}

typedef struct {
    const char *topic;
    size_t len;
    void (*fn)(void *ctx, void *sub, uint8_t qos);
    void *ctx;
} match_t;

typedef struct {
    const node_t *n;
    size_t pos; /* start of the next topic level; len + 1 once every level is consumed */
} frame_t;

static void report(const match_t *m, const node_t *n)
{
    for (uint32_t i = 0; i < NSUBS(n); i++) {
        uint8_t qos;
        void *sub = sub_at(n, i, &qos);
        m->fn(m->ctx, sub, qos);
    }
}

/* Depth-first walk from (start, pos). Each visited node pushes at most two
 * frames and pops one, so pending frames grow by at most one per level; when
 * the small on-stack array is full the walk recurses for the new frame. That
 * costs one C frame per MATCH_STACK levels instead of one per level, and
 * needs no allocation, which matters because match cannot report failure. */
static void match_walk(const match_t *m, const node_t *start, size_t start_pos)
{
    frame_t stack[MATCH_STACK];
    size_t top = 0;
    stack[top++] = (frame_t){start, start_pos};

    while (top) {
        frame_t f = stack[--top];
        /* MQTT 3.1.1 §4.7.2: a topic starting with '$' is not matched by a
         * filter whose first level is a wildcard. Only the root is at 0. */
        bool wild_ok = !(f.pos == 0 && m->len > 0 && m->topic[0] == '$');
        /* '#' also matches the parent level: "a/#" matches "a" (§4.7.1.2). */
        if (f.n->hash && wild_ok)
            report(m, f.n->hash);
        if (f.pos > m->len) {
            report(m, f.n);
            continue;
        }
        size_t end = vg_trie_level_end(m->topic, m->len, f.pos);
        size_t llen = end - f.pos;
        const node_t *next[2];
        int nnext = 0;
        if (f.n->plus && wild_ok)
            next[nnext++] = f.n->plus;
        if (f.n->t.nkids && llen <= MAX_LEVEL_LEN) {
            const char *lv = m->topic + f.pos;
            const node_t *kid = kid_node(vg_trie_kid_find(&f.n->t, lv, llen, vg_trie_hash(lv, llen)));
            if (kid)
                next[nnext++] = kid;
        }
        for (int k = 0; k < nnext; k++) {
            if (top == MATCH_STACK)
                match_walk(m, next[k], end + 1);
            else
                stack[top++] = (frame_t){next[k], end + 1};
        }
    }
}

void vg_topic_tree_match(const vg_topic_tree_t *t, const char *topic, size_t len,
                         void (*fn)(void *ctx, void *sub, uint8_t qos), void *ctx)
{
    topic = text_or_empty(topic, &len);
    match_t m = {topic, len, fn, ctx};
    match_walk(&m, t->root, 0);
}

size_t vg_topic_tree_count(const vg_topic_tree_t *t)
{
    return t->count;
}
