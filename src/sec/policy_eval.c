/* policy_eval.c — see policy.h. Owns the policy set (a principal's compiled
 * documents, indexed by action), the decision for one action on one
 * resource, its explanation and the per-connection decision cache. It does
 * not parse documents (policy.c) and keeps no state between calls: a set is
 * immutable once built.
 *
 * The index: for each action, the rules (one per statement resource whose
 * type applies to that action) of every Deny statement, then those of every
 * Allow statement, in document and statement order. A check walks the
 * action's Deny rules until one matches (deny, done), then its Allow rules
 * until one matches (allow); no match denies. So the cost is proportional to
 * the rules of that one action, and a device's typical publish is two or
 * three pattern compares.
 *
 * Matching a pattern (literals, variables and stars) against a resource:
 * variables are first resolved to slices of the caller's vars, which turns
 * the pattern into literal chunks separated by stars. The first chunk must
 * be a prefix and the last a suffix; each chunk in between is matched at its
 * leftmost occurrence after the previous one. For stars that match any run
 * of bytes this greedy choice is exact (taking a later occurrence can only
 * leave less room for the chunks that follow), so there is no backtracking:
 * the cost is at worst the resource length times the pattern length, and
 * nothing is allocated. */
#include "sec/policy.h"

#include "core/alloc.h"
#include "core/err.h"
#include "sec/policy_int.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const pol_res_t *res;
    const pol_piece_t *pieces; /* the resource's first piece */
    const char *pool;
    /* The literal the pattern starts with and the one it ends with (length
     * 0 if it starts or ends with a star or a variable): compared first, they
     * reject most non-matching rules before any variable is looked up. */
    const char *pre, *suf;
    uint16_t pre_len, suf_len;
    int16_t doc, stmt, idx; /* idx: the resource's index in its statement */
} pol_rule_t;

struct vg_policy_set {
    atomic_int refs;
    size_t n_docs;
    vg_policy_doc_t **docs;
    pol_rule_t *rules;
    /* Rules of action a: Deny ones rules[deny[a] .. allow[a]), Allow ones
     * rules[allow[a] .. deny[a + 1]). */
    uint32_t deny[VG_POLICY__ACTIONS + 1], allow[VG_POLICY__ACTIONS];
};

typedef struct {
    const char *p; /* NULL: a star */
    size_t n;
} slice_t;

/* Resolves a variable piece. A value that is unset or empty, or in a topic
 * or topicfilter resource not a single topic level, resolves to nothing. */
static bool var_value(const pol_piece_t *pc, const char *pool, const vg_policy_vars_t *v, bool level, slice_t *out)
{
    vg_policy_str_t s = {0};
    if (!v)
        return false;
    switch (pc->kind) {
    case PC_CLIENTID:
        s = v->clientid;
        break;
    case PC_USERNAME:
        s = v->username;
        break;
    case PC_CERT_CN:
        s = v->cert_cn;
        break;
    case PC_ATTR:
        for (size_t i = 0; i < v->n_attrs; i++) {
            const vg_policy_attr_t *a = &v->attrs[i];
            if (a->name.len == pc->len && a->name.ptr && !memcmp(a->name.ptr, pool + pc->off, pc->len)) {
                s = a->value;
                break;
            }
        }
        break;
    default:
        return false;
    }
    if (!s.ptr || !s.len)
        return false;
    if (level)
        for (size_t i = 0; i < s.len; i++)
            if (s.ptr[i] == '/' || s.ptr[i] == '+' || s.ptr[i] == '#')
                return false;
    out->p = s.ptr;
    out->n = s.len;
    return true;
}

/* Whether the non-star slices sl[a..b) match t consecutively. */
static bool chunk_at(const slice_t *sl, size_t a, size_t b, const char *t)
{
    for (size_t i = a; i < b; i++) {
        if (memcmp(sl[i].p, t, sl[i].n) != 0)
            return false;
        t += sl[i].n;
    }
    return true;
}

/* The end of the chunk starting at slice i (the next star or np) and its
 * length in *clen. */
static size_t chunk_end(const slice_t *sl, size_t i, size_t np, size_t *clen)
{
    size_t n = 0;
    while (i < np && sl[i].p)
        n += sl[i++].n;
    *clen = n;
    return i;
}

static bool glob(const slice_t *sl, size_t np, const char *t, size_t len)
{
    size_t clen, pos;
    size_t j = chunk_end(sl, 0, np, &clen);
    if (j == np)
        return clen == len && chunk_at(sl, 0, np, t);
    if (clen > len || !chunk_at(sl, 0, j, t))
        return false;
    pos = clen;
    for (size_t i = j + 1;; i = j + 1) { /* sl[j] is a star */
        j = chunk_end(sl, i, np, &clen);
        if (clen > len - pos)
            return false;
        if (j == np) /* the last chunk is a suffix (empty after a final star) */
            return chunk_at(sl, i, j, t + len - clen);
        /* A middle chunk is not empty (stars are merged, values are not
         * empty): find its leftmost occurrence by its first byte. */
        const char *q = t + pos, *last = t + len - clen;
        for (;;) {
            q = memchr(q, sl[i].p[0], (size_t)(last - q) + 1);
            if (!q)
                return false;
            if (chunk_at(sl, i, j, q))
                break;
            if (q++ == last)
                return false;
        }
        pos = (size_t)(q - t) + clen;
    }
}

static bool rule_matches(const pol_rule_t *r, const char *t, size_t len, const vg_policy_vars_t *v)
{
    const pol_res_t *res = r->res;
    if (res->lit_len > len)
        return false;
    if (!res->has_var && !res->has_star) /* one literal: the common exact topic */
        return len == res->lit_len && memcmp(r->pre, t, len) == 0;
    if (memcmp(r->pre, t, r->pre_len) != 0 || memcmp(r->suf, t + len - r->suf_len, r->suf_len) != 0)
        return false;
    slice_t sl[VG_POLICY_MAX_PIECES];
    size_t total = 0;
    bool level = res->type == RT_TOPIC || res->type == RT_FILTER;
    for (size_t i = 0; i < res->n_pieces; i++) {
        const pol_piece_t *pc = &r->pieces[i];
        if (pc->kind == PC_STAR) {
            sl[i].p = NULL;
            sl[i].n = 0;
        } else if (pc->kind == PC_LIT) {
            sl[i].p = r->pool + pc->off;
            sl[i].n = pc->len;
        } else if (!var_value(pc, r->pool, v, level, &sl[i])) {
            return false;
        }
        total += sl[i].n;
    }
    if (total > len || (!res->has_star && total != len))
        return false;
    return glob(sl, res->n_pieces, t, len);
}

bool vg_policy_check(const vg_policy_set_t *set, vg_policy_action_t action, const char *res, size_t len,
                     const vg_policy_vars_t *vars, vg_policy_why_t *why)
{
    vg_policy_why_t w = {VG_POLICY_DENY_DEFAULT, -1, -1, -1};
    const pol_rule_t *hit = NULL;
    if (set && (unsigned)action < VG_POLICY__ACTIONS && (res || !len)) {
        if (!res)
            res = "";
        for (uint32_t i = set->deny[action]; !hit && i < set->allow[action]; i++)
            if (rule_matches(&set->rules[i], res, len, vars))
                hit = &set->rules[i];
        if (hit) {
            w.effect = VG_POLICY_DENY_EXPLICIT;
        } else {
            for (uint32_t i = set->allow[action]; !hit && i < set->deny[action + 1]; i++)
                if (rule_matches(&set->rules[i], res, len, vars))
                    hit = &set->rules[i];
            if (hit)
                w.effect = VG_POLICY_ALLOW;
        }
        if (hit) {
            w.doc = hit->doc;
            w.statement = hit->stmt;
            w.resource = hit->idx;
        }
    }
    if (why)
        *why = w;
    return w.effect == VG_POLICY_ALLOW;
}

/* Appends one rule per (statement, resource) of doc d that applies to
 * action a with effect deny, or only counts them when rules is NULL. */
static size_t add_rules(pol_rule_t *rules, size_t at, const vg_policy_doc_t *d, int16_t di, unsigned a, bool deny)
{
    for (size_t s = 0; s < d->n_stmt; s++) {
        const pol_stmt_t *st = &d->stmt[s];
        if (st->deny != deny || !(st->actions & (1u << a)))
            continue;
        for (size_t k = 0; k < st->n_res; k++) {
            const pol_res_t *r = &d->res[st->first_res + k];
            if (!(pol_type_actions(r->type) & (1u << a)))
                continue;
            if (rules) {
                const pol_piece_t *pc = &d->pieces[r->first_piece], *last = pc + r->n_pieces - 1;
                pol_rule_t *ru = &rules[at];
                *ru = (pol_rule_t){
                    .res = r, .pieces = pc, .pool = d->pool, .doc = di, .stmt = (int16_t)s, .idx = (int16_t)k};
                ru->pre = ru->suf = d->pool;
                if (pc->kind == PC_LIT) {
                    ru->pre = d->pool + pc->off;
                    ru->pre_len = pc->len;
                }
                if (last->kind == PC_LIT && r->n_pieces > 1) {
                    ru->suf = d->pool + last->off;
                    ru->suf_len = last->len;
                }
            }
            at++;
        }
    }
    return at;
}

/* Lays out the index (or counts it when rules is NULL); returns its size. */
static size_t index_rules(vg_policy_set_t *set, pol_rule_t *rules)
{
    size_t at = 0;
    for (unsigned a = 0; a < VG_POLICY__ACTIONS; a++) {
        set->deny[a] = (uint32_t)at;
        for (size_t i = 0; i < set->n_docs; i++)
            at = add_rules(rules, at, set->docs[i], (int16_t)i, a, true);
        set->allow[a] = (uint32_t)at;
        for (size_t i = 0; i < set->n_docs; i++)
            at = add_rules(rules, at, set->docs[i], (int16_t)i, a, false);
    }
    set->deny[VG_POLICY__ACTIONS] = (uint32_t)at;
    return at;
}

int vg_policy_set_new(vg_policy_doc_t *const *docs, size_t n, vg_policy_set_t **out)
{
    *out = NULL;
    if (n > VG_POLICY_MAX_SET_DOCS)
        return VG_ETOOBIG;
    if (n && !docs)
        return VG_EINVAL;
    vg_policy_set_t tmp = {.n_docs = n, .docs = (vg_policy_doc_t **)docs};
    size_t nr = index_rules(&tmp, NULL);
    size_t o_docs = (sizeof(vg_policy_set_t) + 7) & ~(size_t)7;
    size_t o_rules = o_docs + ((n * sizeof(vg_policy_doc_t *) + 7) & ~(size_t)7);
    char *blk = vg_calloc(VG_MEM_SEC, 1, o_rules + nr * sizeof(pol_rule_t));
    if (!blk)
        return VG_ENOMEM;
    vg_policy_set_t *set = (vg_policy_set_t *)blk;
    set->n_docs = n;
    set->docs = (vg_policy_doc_t **)(blk + o_docs);
    set->rules = (pol_rule_t *)(blk + o_rules);
    for (size_t i = 0; i < n; i++)
        set->docs[i] = vg_policy_doc_ref(docs[i]);
    index_rules(set, set->rules);
    atomic_init(&set->refs, 1);
    *out = set;
    return VG_OK;
}

vg_policy_set_t *vg_policy_set_ref(vg_policy_set_t *set)
{
    if (set)
        atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    return set;
}

void vg_policy_set_unref(vg_policy_set_t *set)
{
    if (!set || atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < set->n_docs; i++)
        vg_policy_doc_unref(set->docs[i]);
    vg_free(set);
}

size_t vg_policy_set_docs(const vg_policy_set_t *set)
{
    return set ? set->n_docs : 0;
}

const vg_policy_doc_t *vg_policy_set_doc(const vg_policy_set_t *set, size_t i)
{
    return set && i < set->n_docs ? set->docs[i] : NULL;
}

bool vg_policy_explain(const vg_policy_set_t *set, vg_policy_action_t action, const char *res, size_t len,
                       const vg_policy_vars_t *vars, char *out, size_t cap)
{
    vg_policy_why_t w;
    bool ok = vg_policy_check(set, action, res, len, vars, &w);
    char qr[256], qs[256], qsrc[256];
    if (!out || !cap)
        return ok;
    pol_quote(qr, sizeof qr, res ? res : "", res ? len : 0);
    const char *verdict = ok ? "ALLOW" : "DENY";
    if (w.effect == VG_POLICY_DENY_DEFAULT) {
        snprintf(out, cap, "%s %s \"%s\": no statement of %zu polic%s allows it", verdict,
                 vg_policy_action_name(action), qr, vg_policy_set_docs(set),
                 vg_policy_set_docs(set) == 1 ? "y" : "ies");
        return ok;
    }
    const vg_policy_doc_t *d = set->docs[w.doc];
    const pol_stmt_t *st = &d->stmt[w.statement];
    const pol_res_t *r = &d->res[st->first_res + (size_t)w.resource];
    pol_quote(qsrc, sizeof qsrc, d->pool + r->src_off, r->src_len);
    qs[0] = '\0';
    if (st->sid_len) {
        char sid[256];
        pol_quote(sid, sizeof sid, d->pool + st->sid_off, st->sid_len);
        snprintf(qs, sizeof qs, " (\"%s\")", sid);
    }
    snprintf(out, cap, "%s %s \"%s\": policy \"%s\" statement %d%s %s it (resource \"%s\")", verdict,
             vg_policy_action_name(action), qr, d->name, w.statement + 1, qs, ok ? "allows" : "denies", qsrc);
    return ok;
}

/* The cache's hash: a word at a time, as a lookup must cost less than
 * the check it saves (FNV byte by byte was as slow as a simple check). Not
 * keyed: a collision costs one compare of at most VG_POLICY_CACHE_KEY bytes
 * in an 8-entry table, so there is nothing to gain by forcing one. */
static uint32_t key_hash(const char *s, size_t n, unsigned action)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n << 8) ^ action, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    if (n) {
        w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0x94d049bb133111ebull;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

void vg_policy_cache_reset(vg_policy_cache_t *c)
{
    memset(c, 0, sizeof *c);
}

bool vg_policy_cache_check(vg_policy_cache_t *c, const vg_policy_set_t *set, vg_policy_action_t action, const char *res,
                           size_t len, const vg_policy_vars_t *vars, vg_policy_why_t *why)
{
    if (c->set != set) {
        vg_policy_cache_reset(c);
        c->set = set;
    }
    if (len == 0 || len > VG_POLICY_CACHE_KEY || !res)
        return vg_policy_check(set, action, res, len, vars, why);
    uint32_t h = key_hash(res, len, action);
    for (size_t i = 0; i < VG_POLICY_CACHE_ENTRIES; i++) {
        const vg_policy_cache_entry_t *e = &c->e[i];
        if (e->hash == h && e->len == len && e->action == action && !memcmp(e->key, res, len)) {
            c->hits++;
            if (why)
                *why = (vg_policy_why_t){(vg_policy_effect_t)e->effect, e->doc, e->statement, e->resource};
            return e->effect == VG_POLICY_ALLOW;
        }
    }
    vg_policy_why_t w;
    bool ok = vg_policy_check(set, action, res, len, vars, &w);
    /* Round robin rather than LRU: a connection's working set is a handful
     * of topics, and this keeps a hit free of bookkeeping. */
    vg_policy_cache_entry_t *e = &c->e[c->next];
    c->next = (c->next + 1) % VG_POLICY_CACHE_ENTRIES;
    c->misses++;
    e->hash = h;
    e->len = (uint16_t)len;
    e->action = (uint8_t)action;
    e->effect = (uint8_t)w.effect;
    e->doc = w.doc;
    e->statement = w.statement;
    e->resource = w.resource;
    memcpy(e->key, res, len);
    if (why)
        *why = w;
    return ok;
}
