/* retain.c — the retained-message store behind retain.h.
 *
 * Owns: the topic trie, the message copies, the expiry heap and the rwlock,
 * all charged to VG_MEM_MQTT. Does not own: validation, persistence, delivery.
 *
 * Shape. The level trie (mqtt/trie.h) is the one topic.c's subscription
 * tree uses, turned around: there the tree holds filters and is walked with
 * a topic, here it holds topics and is walked with a filter. A node is one
 * allocation of 40 bytes plus its level text (the trie's 24-byte header with
 * the named children, ours: a parent and a message pointer); the first
 * named child is stored inline and a hash table appears only with the
 * second, because most nodes of a large store are leaves or have one child.
 * Unlike topic.c's nodes, ours carry a parent pointer. It costs 8 bytes per node and buys three things that would
 * otherwise need an explicit stack or a copy of every topic string:
 *   - a match can walk the tree without recursion or allocation (topics may
 *     have 32,768 levels, and a stack per match would be a failure point);
 *   - the topic passed to the callback is rebuilt from the path, so topics
 *     are not stored twice;
 *   - a sweep that pops an expired node from the heap can unlink it and prune
 *     its emptied ancestors without knowing its topic.
 *
 * Messages. A message is a separate allocation (12-byte header + blob) so
 * that replacing one never moves a node (the heap and the children of a node
 * point at it). Nodes whose message expires are also in a binary min-heap
 * (core/heap.h) ordered by expiry; each such node records its heap index (in
 * the trie header's spare field) so that a replace or delete can fix the
 * heap in O(log n), and a replacement keeps the node's place.
 *
 * Locking. One rwlock around everything. A set copies the blob before it
 * takes the lock and frees a replaced one after. The lock prefers writers: a steady stream of matches from many
 * I/O threads must not starve a set (glibc's default prefers readers). */
#include "mqtt/retain.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/heap.h"
#include "mqtt/trie.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct node node_t;

typedef struct {
    int64_t expire_at; /* wall-clock ms, 0 = never */
    uint32_t blen;
    unsigned char data[];
} msg_t;

struct node {
    node_t *parent;   /* NULL only for the root */
    msg_t *msg;       /* the retained message of this topic, or NULL */
    vg_trie_node_t t; /* the named children and the level text; last, the key bytes follow */
};

/* Where n sits in the expiry heap, kept in the trie header's owner field
 * (which would otherwise be padding); meaningful only while n->msg expires. */
#define HEAP_IDX(n) ((n)->t.aux)

/* The bytes-per-entry figure in retain.h depends on this staying small. */
_Static_assert(sizeof(void *) != 8 || offsetof(node_t, t.key) == 40, "node_t grew: check the memory note in retain.h");

/* Our node of a trie child (NULL stays NULL). */
static node_t *kid_node(const vg_trie_node_t *c)
{
    return VG_TRIE_OWNER(c, node_t, t);
}

/* The expiry heap: node pointers, the earliest expire_at first. */
#define EXPIRES_BEFORE(a, b) ((a)->msg->expire_at < (b)->msg->expire_at)
#define HEAP_MOVED(e, i) (HEAP_IDX(e) = (uint32_t)(i))
VG_HEAP_DEFINE(expiry, node_t *, EXPIRES_BEFORE, HEAP_MOVED)

struct vg_retain {
    pthread_rwlock_t lock;
    node_t *root;
    expiry_t heap; /* expiring entries */
    vg_retain_limits_t lim;
    size_t count, bytes;
    uint64_t rejected;
};

#define MAX_TOPIC_LEN VG_TRIE_MAX_LEVEL
/* Topics up to this length are rebuilt on the matcher's stack; longer ones
 * (rare) in a heap buffer. */
#define TOPIC_BUF 512

/* ---- levels ----------------------------------------------------------------- */

/* Start of the level that ends at end (end is a '/' or the length). */
static size_t level_start(const char *s, size_t end)
{
    const char *slash = end ? memrchr(s, '/', end) : NULL;
    return slash ? (size_t)(slash - s) + 1 : 0;
}

static bool is_dollar(const node_t *n)
{
    return n->t.keylen > 0 && n->t.key[0] == '$';
}

/* ---- nodes and their children ------------------------------------------------ */

static node_t *node_new(node_t *parent, const char *key, size_t keylen, uint32_t hv)
{
    node_t *n = vg_malloc(VG_MEM_MQTT, offsetof(node_t, t.key) + keylen);
    if (!n)
        return NULL;
    n->parent = parent;
    n->msg = NULL;
    vg_trie_node_init(&n->t, key, keylen, hv);
    return n;
}

static node_t *kid_find(const node_t *n, const char *s, size_t len, uint32_t hv)
{
    return kid_node(vg_trie_kid_find(&n->t, s, len, hv));
}

static node_t *kid_next(const node_t *n, const node_t *c)
{
    return kid_node(vg_trie_kid_next(&n->t, c ? &c->t : NULL));
}

/* kid_next, skipping '$' levels when skip_dollar (wildcards at the first level). */
static node_t *kid_next_f(const node_t *n, const node_t *c, bool skip_dollar)
{
    do
        c = kid_next(n, c);
    while (c && skip_dollar && is_dollar(c));
    return (node_t *)c;
}

/* Frees n, everything below it and their messages, without recursion: nodes
 * waiting to be freed are chained through their own parent field, which is
 * no longer needed once a node is doomed. Heap entries are not touched; the
 * callers either drop the whole heap or free a branch that holds no message. */
static void subtree_free(node_t *n)
{
    node_t *pending = n;
    n->parent = NULL;
    while (pending) {
        node_t *cur = pending;
        pending = cur->parent;
        for (node_t *c = kid_next(cur, NULL); c; c = kid_next(cur, c)) {
            c->parent = pending;
            pending = c;
        }
        vg_trie_kids_release(&cur->t);
        vg_free(cur->msg);
        vg_free(cur);
    }
}

/* Frees n and its ancestors for as long as they hold nothing (never the root). */
static void prune(node_t *n)
{
    while (n->parent && !n->msg && n->t.nkids == 0) {
        node_t *p = n->parent;
        vg_trie_kid_remove(&p->t, &n->t);
        vg_free(n);
        n = p;
    }
}

/* The node of topic, or NULL. */
static node_t *path_find(node_t *root, const char *topic, size_t tlen)
{
    node_t *n = root;
    size_t pos = 0;
    do {
        size_t end = vg_trie_level_end(topic, tlen, pos);
        n = kid_find(n, topic + pos, end - pos, vg_trie_hash(topic + pos, end - pos));
        pos = end + 1;
    } while (n && pos <= tlen);
    return n;
}

/* Finds or creates the node of topic. On failure nothing created stays. */
static int path_make(node_t *root, const char *topic, size_t tlen, node_t **out)
{
    node_t *n = root, *fresh = NULL; /* the first node created; the new branch hangs from it */
    size_t pos = 0;
    do {
        size_t end = vg_trie_level_end(topic, tlen, pos);
        const char *s = topic + pos;
        size_t len = end - pos;
        uint32_t hv = vg_trie_hash(s, len);
        node_t *c = kid_find(n, s, len, hv);
        if (!c) {
            c = node_new(n, s, len, hv);
            if (!c || vg_trie_kid_insert(&n->t, &c->t) != VG_OK) {
                vg_free(c);
                goto cleanup;
            }
            if (!fresh)
                fresh = c;
        }
        n = c;
        pos = end + 1;
    } while (pos <= tlen);
    *out = n;
    return VG_OK;

cleanup:
    if (fresh) {
        vg_trie_kid_remove(&fresh->parent->t, &fresh->t);
        subtree_free(fresh);
    }
    return VG_ENOMEM;
}

/* Length of n's topic (n is not the root). */
static size_t topic_len(const node_t *n)
{
    size_t len = 0;
    for (; n->parent; n = n->parent)
        len += (size_t)n->t.keylen + 1;
    return len - 1;
}

/* ---- entries ------------------------------------------------------------------- */

/* Unlinks n's message (returned for the caller to free after unlocking) and
 * prunes n if it became empty. */
static msg_t *entry_remove(vg_retain_t *r, node_t *n, size_t tlen)
{
    msg_t *m = n->msg;
    if (m->expire_at)
        expiry_remove(&r->heap, HEAP_IDX(n));
    r->count--;
    r->bytes -= tlen + m->blen;
    n->msg = NULL;
    prune(n);
    return m;
}

static int retain_del(vg_retain_t *r, const char *topic, size_t tlen)
{
    pthread_rwlock_wrlock(&r->lock);
    msg_t *old = NULL;
    node_t *n = path_find(r->root, topic, tlen);
    if (n && n->msg)
        old = entry_remove(r, n, tlen);
    pthread_rwlock_unlock(&r->lock);
    vg_free(old);
    return old ? VG_OK : VG_ENOTFOUND;
}

/* ---- public API ------------------------------------------------------------------ */

int vg_retain_new(const vg_retain_limits_t *lim, vg_retain_t **out)
{
    vg_retain_t *r = vg_calloc(VG_MEM_MQTT, 1, sizeof(*r));
    if (!r)
        return VG_ENOMEM;
    int rc = VG_ENOMEM;
    r->root = node_new(NULL, NULL, 0, 0);
    if (!r->root)
        goto cleanup;
    if (lim)
        r->lim = *lim;
    pthread_rwlockattr_t attr;
    rc = VG_EIO;
    if (pthread_rwlockattr_init(&attr) != 0)
        goto cleanup;
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int prc = pthread_rwlock_init(&r->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (prc != 0)
        goto cleanup;
    *out = r;
    return VG_OK;

cleanup:
    vg_free(r->root);
    vg_free(r);
    return rc;
}

void vg_retain_free(vg_retain_t *r)
{
    if (!r)
        return;
    subtree_free(r->root);
    expiry_free(&r->heap);
    pthread_rwlock_destroy(&r->lock);
    vg_free(r);
}

int vg_retain_set(vg_retain_t *r, const char *topic, size_t tlen, const void *blob, size_t blen, int64_t expire_at_ms)
{
    if (tlen == 0 || tlen > MAX_TOPIC_LEN)
        return VG_EINVAL;
    if (blen == 0)
        return retain_del(r, topic, tlen);
    if (blen > UINT32_MAX)
        return VG_ETOOBIG;
    if (expire_at_ms < 0)
        expire_at_ms = 0; /* a negative time is no time: keep 0 as the only "never" */

    /* Copy outside the lock: blobs can be large and matchers wait for us. */
    msg_t *m = vg_malloc(VG_MEM_MQTT, offsetof(msg_t, data) + blen);
    if (!m)
        return VG_ENOMEM;
    m->expire_at = expire_at_ms;
    m->blen = (uint32_t)blen;
    memcpy(m->data, blob, blen);

    int rc;
    msg_t *old = NULL;
    pthread_rwlock_wrlock(&r->lock);
    node_t *n = path_find(r->root, topic, tlen);
    old = n ? n->msg : NULL;
    size_t old_bytes = old ? tlen + old->blen : 0;
    if ((!old && r->lim.max_messages && r->count >= r->lim.max_messages) ||
        (r->lim.max_bytes && r->bytes - old_bytes + tlen + blen > r->lim.max_bytes)) {
        r->rejected++;
        rc = VG_ELIMIT;
        goto cleanup;
    }
    /* Everything that can fail comes first, so that a failure changes nothing. */
    if (m->expire_at && !(old && old->expire_at)) {
        /* heap_idx is 32 bits */
        rc = r->heap.len >= UINT32_MAX - 1 ? VG_ENOMEM : expiry_reserve(&r->heap, 1, VG_MEM_MQTT);
        if (rc)
            goto cleanup;
    }
    if (!n) {
        rc = path_make(r->root, topic, tlen, &n);
        if (rc)
            goto cleanup;
    }

    if (old && old->expire_at && !m->expire_at)
        expiry_remove(&r->heap, HEAP_IDX(n)); /* compares through n->msg, still old here */
    n->msg = m;
    if (m->expire_at) {
        if (old && old->expire_at) {
            expiry_fix(&r->heap, HEAP_IDX(n)); /* n keeps its heap slot; restore the order */
        } else {
            (void)expiry_push(&r->heap, n, VG_MEM_MQTT); /* cannot fail: reserved above */
        }
    }
    r->bytes = r->bytes - old_bytes + tlen + blen;
    if (!old)
        r->count++;
    m = NULL; /* now the store's */
    rc = VG_OK;

cleanup:
    pthread_rwlock_unlock(&r->lock);
    vg_free(m);
    if (rc == VG_OK)
        vg_free(old);
    return rc;
}

/* ---- matching ---------------------------------------------------------------------- */

typedef struct {
    const char *filter;
    size_t flen;
    int64_t now;
    vg_retain_match_fn fn;
    void *ctx;
    char *buf; /* where topics are rebuilt: small, or a heap block */
    size_t cap;
    size_t matched;
    int rc;    /* VG_OK, or VG_ENOMEM once a long topic could not be rebuilt */
    bool stop; /* fn asked to stop, or rc is set */
    char small[TOPIC_BUF];
} match_t;

/* Reports n's message if it has a live one. Returns false once the match
 * must stop. */
static bool emit(match_t *m, const node_t *n)
{
    const msg_t *g = n->msg;
    if (!g || (g->expire_at && g->expire_at <= m->now))
        return true;
    size_t len = topic_len(n);
    if (len + 1 > m->cap) {
        char *b = vg_malloc(VG_MEM_MQTT, MAX_TOPIC_LEN + 1);
        if (!b) {
            m->rc = VG_ENOMEM;
            m->stop = true;
            return false;
        }
        m->buf = b;
        m->cap = MAX_TOPIC_LEN + 1;
    }
    /* Rebuild the topic back to front along the parent pointers. */
    size_t pos = len;
    m->buf[len] = '\0';
    for (const node_t *p = n; p->parent; p = p->parent) {
        pos -= p->t.keylen;
        memcpy(m->buf + pos, p->t.key, p->t.keylen);
        if (p->parent->parent)
            m->buf[--pos] = '/';
    }
    m->matched++;
    if (m->fn(m->ctx, m->buf, len, g->data, g->blen, g->expire_at) != 0)
        m->stop = true;
    return !m->stop;
}

/* Reports every message strictly below s: a depth-first walk that moves down
 * to the first child, else to the next sibling, else up, using the parent
 * pointers instead of a stack. skip_dollar: s is the root and the filter's
 * first level is '#', which must not reach '$' topics. */
static void emit_below(match_t *m, const node_t *s, bool skip_dollar)
{
    const node_t *n = kid_next_f(s, NULL, skip_dollar);
    while (n) {
        if (!emit(m, n))
            return;
        const node_t *next = kid_next(n, NULL);
        while (!next && n != s) {
            const node_t *p = n->parent;
            next = kid_next_f(p, n, skip_dollar && p == s);
            n = p;
        }
        n = next;
    }
}

/* The filter walk, also without a stack. At node n, pos is where the filter
 * level for n's children starts (flen + 1 once every level is used). A
 * literal level has at most one child to follow, '+' follows each child in
 * turn (the next one is found from the previous through the parent), '#'
 * ends the walk on this branch by reporting n and everything below it. To
 * back up from n, the level n consumed is the one that ends just before pos. */
static void match_walk(match_t *m, const node_t *root)
{
    const char *f = m->filter;
    size_t flen = m->flen;
    const node_t *n = root;
    size_t pos = 0;
    for (;;) {
        /* Arrived at n with filter levels from pos still to match. */
        const node_t *down = NULL;
        if (pos > flen) {
            if (!emit(m, n))
                return;
        } else {
            size_t end = vg_trie_level_end(f, flen, pos);
            const char *s = f + pos;
            size_t len = end - pos;
            if (vg_trie_is_hash(s, len)) {
                /* "a/#" matches "a" too (§4.7.1.2); the root holds no message. */
                if (!emit(m, n))
                    return;
                emit_below(m, n, n == root);
                if (m->stop)
                    return;
            } else if (vg_trie_is_plus(s, len)) {
                down = kid_next_f(n, NULL, n == root); /* §4.7.2: not into '$' topics */
            } else if (len <= MAX_TOPIC_LEN) {
                down = kid_find(n, s, len, vg_trie_hash(s, len));
            }
            if (down) {
                n = down;
                pos = end + 1;
                continue;
            }
        }
        /* Back up to the nearest '+' level with a sibling left to try. */
        for (;;) {
            if (n == root)
                return;
            size_t end = pos - 1, start = level_start(f, end);
            const node_t *p = n->parent;
            if (vg_trie_is_plus(f + start, end - start)) {
                const node_t *sib = kid_next_f(p, n, p == root);
                if (sib) {
                    n = sib;
                    break;
                }
            }
            n = p;
            pos = start;
        }
    }
}

int vg_retain_match(vg_retain_t *r, const char *filter, size_t flen, int64_t now_ms, vg_retain_match_fn fn, void *ctx,
                    size_t *matched)
{
    match_t local, *m = &local;
    m->filter = filter ? filter : "";
    m->flen = filter ? flen : 0;
    m->now = now_ms;
    m->fn = fn;
    m->ctx = ctx;
    m->buf = m->small;
    m->cap = sizeof m->small;
    m->matched = 0;
    m->rc = VG_OK;
    m->stop = false;

    pthread_rwlock_rdlock(&r->lock);
    match_walk(m, r->root);
    pthread_rwlock_unlock(&r->lock);

    if (m->buf != m->small)
        vg_free(m->buf);
    if (matched)
        *matched = m->matched;
    return m->rc;
}

size_t vg_retain_sweep(vg_retain_t *r, int64_t now_ms)
{
    size_t removed = 0;
    pthread_rwlock_wrlock(&r->lock);
    while (r->heap.len && expiry_top(&r->heap)->msg->expire_at <= now_ms) {
        node_t *n = expiry_top(&r->heap);
        vg_free(entry_remove(r, n, topic_len(n)));
        removed++;
    }
    pthread_rwlock_unlock(&r->lock);
    return removed;
}

int64_t vg_retain_next_expiry(vg_retain_t *r)
{
    pthread_rwlock_rdlock(&r->lock);
    int64_t at = r->heap.len ? expiry_top(&r->heap)->msg->expire_at : 0;
    pthread_rwlock_unlock(&r->lock);
    return at;
}

void vg_retain_stats(vg_retain_t *r, size_t *count, size_t *bytes, uint64_t *rejected)
{
    pthread_rwlock_rdlock(&r->lock);
    if (count)
        *count = r->count;
    if (bytes)
        *bytes = r->bytes;
    if (rejected)
        *rejected = r->rejected;
    pthread_rwlock_unlock(&r->lock);
}
