/* retain.c — the retained-message store behind retain.h.
 *
 * Owns: the topic trie, the message copies, the expiry heap and the rwlock,
 * all charged to VG_MEM_MQTT. Does not own: validation, persistence, delivery.
 *
 * Shape. The trie mirrors topic.c's subscription trie turned around: there
 * the tree holds filters and is walked with a topic, here it holds topics
 * and is walked with a filter. A node is one allocation of 35 bytes plus its
 * level text; its first named child is stored inline and a hash table
 * (open addressing, linear probing, backward-shift deletion, at most 3/4
 * full) appears only with the second child, because most nodes of a large
 * store are leaves or have one child. Unlike topic.c's nodes, ours carry a
 * parent pointer. It costs 8 bytes per node and buys three things that would
 * otherwise need an explicit stack or a copy of every topic string:
 *   - a match can walk the tree without recursion or allocation (topics may
 *     have 32,768 levels, and a stack per match would be a failure point);
 *   - the topic passed to the callback is rebuilt from the path, so topics
 *     are not stored twice;
 *   - a sweep that pops an expired node from the heap can unlink it and prune
 *     its emptied ancestors without knowing its topic.
 *
 * Messages. A message is a separate allocation (16-byte header + blob) so
 * that replacing one never moves a node (the heap and the children of a node
 * point at it). Messages with an expiry are also in a binary min-heap of node
 * pointers ordered by expiry; each message records its heap index so that a
 * replace or delete can fix the heap in O(log n).
 *
 * Locking. One rwlock around everything. A set copies the blob before it
 * takes the lock and frees a replaced one after. The lock prefers writers: a steady stream of matches from many
 * I/O threads must not starve a set (glibc's default prefers readers). */
#include "mqtt/retain.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/hash.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct node node_t;

typedef struct {
    int64_t expire_at; /* wall-clock ms, 0 = never */
    uint32_t blen;
    uint32_t heap_idx; /* position in the expiry heap; meaningful only if expire_at != 0 */
    unsigned char data[];
} msg_t;

struct node {
    node_t *parent; /* NULL only for the root */
    union {
        node_t *one;    /* kbits == 0: the only named child, or NULL */
        node_t **slots; /* kbits > 0: 1 << kbits slots, NULL = empty */
    } kids;
    msg_t *msg;  /* the retained message of this topic, or NULL */
    uint32_t hv; /* hash of key, kept so that tables grow and delete without rehashing text */
    uint32_t nkids;
    uint16_t keylen; /* a level of a valid topic is at most 65,535 bytes */
    uint8_t kbits;
    char key[]; /* the level text, not NUL-terminated; empty for the root */
};

/* The bytes-per-entry figure in retain.h depends on this staying small. */
_Static_assert(sizeof(void *) != 8 || offsetof(node_t, key) == 35, "node_t grew: check the memory note in retain.h");

struct vg_retain {
    pthread_rwlock_t lock;
    node_t *root;
    node_t **heap; /* expiring entries, min-heap by msg->expire_at */
    size_t heap_len, heap_cap;
    vg_retain_limits_t lim;
    size_t count, bytes;
    uint64_t rejected;
};

#define KIDS_MIN_BITS 2
#define MAX_TOPIC_LEN 65535u
/* Topics up to this length are rebuilt on the matcher's stack; longer ones
 * (rare) in a heap buffer. */
#define TOPIC_BUF 512

/* ---- levels ----------------------------------------------------------------- */

/* Returns the index one past the level that starts at pos ('/' or len). */
static size_t level_end(const char *s, size_t len, size_t pos)
{
    if (pos >= len)
        return len;
    const char *slash = memchr(s + pos, '/', len - pos);
    return slash ? (size_t)(slash - s) : len;
}

/* Start of the level that ends at end (end is a '/' or the length). */
static size_t level_start(const char *s, size_t end)
{
    const char *slash = end ? memrchr(s, '/', end) : NULL;
    return slash ? (size_t)(slash - s) + 1 : 0;
}

static bool key_eq(const node_t *n, const char *s, size_t len, uint32_t hv)
{
    return n->hv == hv && n->keylen == len && memcmp(n->key, s, len) == 0;
}

static bool is_plus(const char *s, size_t len)
{
    return len == 1 && s[0] == '+';
}

static bool is_hash(const char *s, size_t len)
{
    return len == 1 && s[0] == '#';
}

static bool is_dollar(const node_t *n)
{
    return n->keylen > 0 && n->key[0] == '$';
}

/* ---- nodes and their children ------------------------------------------------ */

static node_t *node_new(node_t *parent, const char *key, size_t keylen, uint32_t hv)
{
    node_t *n = vg_malloc(VG_MEM_MQTT, offsetof(node_t, key) + keylen);
    if (!n)
        return NULL;
    memset(n, 0, offsetof(node_t, key));
    n->parent = parent;
    n->hv = hv;
    n->keylen = (uint16_t)keylen;
    if (keylen)
        memcpy(n->key, key, keylen);
    return n;
}

static node_t *kid_find(const node_t *n, const char *s, size_t len, uint32_t hv)
{
    if (n->kbits == 0) {
        node_t *c = n->kids.one;
        return c && key_eq(c, s, len, hv) ? c : NULL;
    }
    size_t mask = ((size_t)1 << n->kbits) - 1;
    /* Terminates: the load limit keeps at least one slot empty. */
    for (size_t i = hv & mask;; i = (i + 1) & mask) {
        node_t *c = n->kids.slots[i];
        if (!c)
            return NULL;
        if (key_eq(c, s, len, hv))
            return c;
    }
}

/* The child of n that follows c in slot order (c == NULL: the first one).
 * Slot order is stable while the read lock is held, which is all a match
 * needs; finding c's slot costs one short probe. */
static node_t *kid_next(const node_t *n, const node_t *c)
{
    if (n->kbits == 0)
        return c ? NULL : n->kids.one;
    size_t cap = (size_t)1 << n->kbits, mask = cap - 1, i = 0;
    if (c) {
        i = c->hv & mask;
        while (n->kids.slots[i] != c)
            i = (i + 1) & mask;
        i++;
    }
    for (; i < cap; i++)
        if (n->kids.slots[i])
            return n->kids.slots[i];
    return NULL;
}

/* kid_next, skipping '$' levels when skip_dollar (wildcards at the first level). */
static node_t *kid_next_f(const node_t *n, const node_t *c, bool skip_dollar)
{
    do
        c = kid_next(n, c);
    while (c && skip_dollar && is_dollar(c));
    return (node_t *)c;
}

static void slot_put(node_t **slots, size_t mask, node_t *c)
{
    size_t i = c->hv & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = c;
}

/* Moves n's children into a fresh table of 1 << bits slots. On failure n is
 * unchanged. */
static int kids_rehash(node_t *n, unsigned bits)
{
    size_t cap = (size_t)1 << bits;
    node_t **slots = vg_calloc(VG_MEM_MQTT, cap, sizeof(*slots));
    if (!slots)
        return VG_ENOMEM;
    if (n->kbits == 0) {
        if (n->kids.one)
            slot_put(slots, cap - 1, n->kids.one);
    } else {
        size_t old_cap = (size_t)1 << n->kbits;
        for (size_t i = 0; i < old_cap; i++)
            if (n->kids.slots[i])
                slot_put(slots, cap - 1, n->kids.slots[i]);
        vg_free(n->kids.slots);
    }
    n->kids.slots = slots;
    n->kbits = (uint8_t)bits;
    return VG_OK;
}

/* Adds c (whose key is not yet among n's children). */
static int kid_insert(node_t *n, node_t *c)
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
    slot_put(n->kids.slots, ((size_t)1 << n->kbits) - 1, c);
    n->nkids++;
    return VG_OK;
}

/* Removes child c from n's children (c must be one of them). Never fails:
 * shrinking is an optimisation that is skipped if memory is short. */
static void kid_remove(node_t *n, node_t *c)
{
    if (n->kbits == 0) {
        n->kids.one = NULL;
        n->nkids = 0;
        return;
    }
    size_t cap = (size_t)1 << n->kbits, mask = cap - 1;
    node_t **slots = n->kids.slots;
    size_t hole = c->hv & mask;
    while (slots[hole] != c)
        hole = (hole + 1) & mask;
    /* Backward-shift deletion (see topic.c): no tombstones needed. */
    for (size_t j = (hole + 1) & mask; slots[j]; j = (j + 1) & mask) {
        size_t home = slots[j]->hv & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            slots[hole] = slots[j];
            hole = j;
        }
    }
    slots[hole] = NULL;
    n->nkids--;

    if (n->nkids <= 1) {
        node_t *last = NULL;
        for (size_t i = 0; i < cap && !last; i++)
            last = slots[i];
        vg_free(slots);
        n->kids.one = last;
        n->kbits = 0;
    } else if (n->kbits > KIDS_MIN_BITS && (size_t)n->nkids * 8 < cap) {
        (void)kids_rehash(n, n->kbits - 1u);
    }
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
        if (cur->kbits)
            vg_free(cur->kids.slots);
        vg_free(cur->msg);
        vg_free(cur);
    }
}

/* Frees n and its ancestors for as long as they hold nothing (never the root). */
static void prune(node_t *n)
{
    while (n->parent && !n->msg && n->nkids == 0) {
        node_t *p = n->parent;
        kid_remove(p, n);
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
        size_t end = level_end(topic, tlen, pos);
        n = kid_find(n, topic + pos, end - pos, vg_hash_bytes(topic + pos, end - pos));
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
        size_t end = level_end(topic, tlen, pos);
        const char *s = topic + pos;
        size_t len = end - pos;
        uint32_t hv = vg_hash_bytes(s, len);
        node_t *c = kid_find(n, s, len, hv);
        if (!c) {
            c = node_new(n, s, len, hv);
            if (!c || kid_insert(n, c) != VG_OK) {
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
        kid_remove(fresh->parent, fresh);
        subtree_free(fresh);
    }
    return VG_ENOMEM;
}

/* Length of n's topic (n is not the root). */
static size_t topic_len(const node_t *n)
{
    size_t len = 0;
    for (; n->parent; n = n->parent)
        len += (size_t)n->keylen + 1;
    return len - 1;
}

/* ---- the expiry heap ----------------------------------------------------------- */

static int64_t expiry_at(const vg_retain_t *r, size_t i)
{
    return r->heap[i]->msg->expire_at;
}

static void heap_place(vg_retain_t *r, size_t i, node_t *n)
{
    r->heap[i] = n;
    n->msg->heap_idx = (uint32_t)i;
}

static void heap_sift(vg_retain_t *r, size_t i)
{
    node_t *n = r->heap[i];
    int64_t e = n->msg->expire_at;
    while (i > 0 && expiry_at(r, (i - 1) / 2) > e) {
        heap_place(r, i, r->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= r->heap_len)
            break;
        if (c + 1 < r->heap_len && expiry_at(r, c + 1) < expiry_at(r, c))
            c++;
        if (expiry_at(r, c) >= e)
            break;
        heap_place(r, i, r->heap[c]);
        i = c;
    }
    heap_place(r, i, n);
}

/* Makes room for one more heap entry so that the push after it cannot fail. */
static int heap_reserve(vg_retain_t *r)
{
    if (r->heap_len < r->heap_cap)
        return VG_OK;
    if (r->heap_cap >= UINT32_MAX / 2)
        return VG_ENOMEM;
    size_t cap = r->heap_cap ? r->heap_cap * 2 : 64;
    node_t **h = vg_realloc(VG_MEM_MQTT, r->heap, cap * sizeof(*h));
    if (!h)
        return VG_ENOMEM;
    r->heap = h;
    r->heap_cap = cap;
    return VG_OK;
}

static void heap_push(vg_retain_t *r, node_t *n)
{
    heap_place(r, r->heap_len++, n);
    heap_sift(r, r->heap_len - 1);
}

static void heap_remove(vg_retain_t *r, size_t i)
{
    node_t *last = r->heap[--r->heap_len];
    if (i < r->heap_len) {
        heap_place(r, i, last);
        heap_sift(r, i);
    }
}

/* ---- entries ------------------------------------------------------------------- */

/* Unlinks n's message (returned for the caller to free after unlocking) and
 * prunes n if it became empty. */
static msg_t *entry_remove(vg_retain_t *r, node_t *n, size_t tlen)
{
    msg_t *m = n->msg;
    if (m->expire_at)
        heap_remove(r, m->heap_idx);
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
    vg_free(r->heap);
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
    msg_t *m = vg_malloc(VG_MEM_MQTT, sizeof(*m) + blen);
    if (!m)
        return VG_ENOMEM;
    m->expire_at = expire_at_ms;
    m->blen = (uint32_t)blen;
    m->heap_idx = 0;
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
        rc = heap_reserve(r);
        if (rc)
            goto cleanup;
    }
    if (!n) {
        rc = path_make(r->root, topic, tlen, &n);
        if (rc)
            goto cleanup;
    }

    if (old && old->expire_at && !m->expire_at)
        heap_remove(r, old->heap_idx); /* compares through n->msg, still old here */
    n->msg = m;
    if (m->expire_at) {
        if (old && old->expire_at) {
            m->heap_idx = old->heap_idx; /* take over old's heap slot, then restore the order */
            heap_sift(r, m->heap_idx);
        } else {
            heap_push(r, n);
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
        pos -= p->keylen;
        memcpy(m->buf + pos, p->key, p->keylen);
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
            size_t end = level_end(f, flen, pos);
            const char *s = f + pos;
            size_t len = end - pos;
            if (is_hash(s, len)) {
                /* "a/#" matches "a" too (§4.7.1.2); the root holds no message. */
                if (!emit(m, n))
                    return;
                emit_below(m, n, n == root);
                if (m->stop)
                    return;
            } else if (is_plus(s, len)) {
                down = kid_next_f(n, NULL, n == root); /* §4.7.2: not into '$' topics */
            } else if (len <= MAX_TOPIC_LEN) {
                down = kid_find(n, s, len, vg_hash_bytes(s, len));
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
            if (is_plus(f + start, end - start)) {
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
    while (r->heap_len && expiry_at(r, 0) <= now_ms) {
        node_t *n = r->heap[0];
        vg_free(entry_remove(r, n, topic_len(n)));
        removed++;
    }
    pthread_rwlock_unlock(&r->lock);
    return removed;
}

int64_t vg_retain_next_expiry(vg_retain_t *r)
{
    pthread_rwlock_rdlock(&r->lock);
    int64_t at = r->heap_len ? expiry_at(r, 0) : 0;
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
