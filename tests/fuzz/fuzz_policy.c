/* fuzz_policy.c — libFuzzer harness for sec/policy: the parser and the
 * matcher.
 *
 * Input: a policy document, optionally followed by a NUL byte and lines
 * (separated by '\n') giving the principal and extra resources to check:
 *   clientid \n username \n cert.cn \n attr name \n attr value \n resource...
 * An empty line leaves that variable unset. Without the NUL part the
 * principal is a fixed one ("dev-1", "alice", ...).
 *
 * For any bytes: parsing returns a documented code, and a failure leaves no
 * document and a one-line printable message. For a document that parses, a
 * set is built and every action is checked on the given resources and on
 * resources made from the document's own patterns (stars and variables
 * filled in, plus one byte dropped or added), and the results must agree
 * with an independent reference evaluator written here from policy.h's
 * rules (re-reading each resource's source text, matching by dynamic
 * programming), with the explanation, with the cache, and with what `why`
 * names; and no check may allocate. A broken invariant aborts. */
#include "core/alloc.h"
#include "core/err.h"
#include "sec/policy.h"
#include "sec/policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define MAX_RES 24     /* resources checked per input */
#define MAX_RES_LEN 96 /* bytes of one */
/* The reference's pattern: bytes with a flag each (star or literal). */
#define MAX_REF 1024

typedef struct {
    char b[MAX_REF];
    bool star[MAX_REF];
    size_t n;
} ref_pat_t;

static void line_printable(const char *s)
{
    for (; *s; s++)
        CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
}

/* A variable's value as the reference sees it: NULL if unset, empty or
 * (level) not a single topic level. */
static const vg_policy_str_t *ref_var(const char *name, size_t n, const vg_policy_vars_t *v, bool level)
{
    const vg_policy_str_t *s = NULL;
    if (n == 8 && !memcmp(name, "clientid", 8))
        s = &v->clientid;
    else if (n == 8 && !memcmp(name, "username", 8))
        s = &v->username;
    else if (n == 7 && !memcmp(name, "cert.cn", 7))
        s = &v->cert_cn;
    else if (n > 12 && !memcmp(name, "device.attr.", 12))
        for (size_t i = 0; i < v->n_attrs && !s; i++)
            if (v->attrs[i].name.len == n - 12 && !memcmp(v->attrs[i].name.ptr, name + 12, n - 12))
                s = &v->attrs[i].value;
    if (!s || !s->ptr || !s->len)
        return NULL;
    if (level && (memchr(s->ptr, '/', s->len) || memchr(s->ptr, '+', s->len) || memchr(s->ptr, '#', s->len)))
        return NULL;
    return s;
}

/* Builds the reference pattern from a resource's source text; false if a
 * variable makes it match nothing. *type gets the resource type. */
static bool ref_build(const char *src, size_t n, const vg_policy_vars_t *v, ref_pat_t *p, int *type)
{
    size_t skip;
    p->n = 0;
    if (n == 1 && src[0] == '*') {
        *type = RT_ANY;
        p->star[0] = true;
        p->b[0] = '*';
        p->n = 1;
        return true;
    }
    if (n >= 7 && !memcmp(src, "client/", 7))
        *type = RT_CLIENT, skip = 7;
    else if (n >= 12 && !memcmp(src, "topicfilter/", 12))
        *type = RT_FILTER, skip = 12;
    else if (n >= 6 && !memcmp(src, "topic/", 6))
        *type = RT_TOPIC, skip = 6;
    else
        CHECK(!"a compiled resource with no known type");
    bool level = *type != RT_CLIENT;
    for (size_t i = skip; i < n; i++) {
        if (src[i] == '$' && i + 1 < n && src[i + 1] == '{') {
            const char *close = memchr(src + i + 2, '}', n - i - 2);
            CHECK(close);
            const vg_policy_str_t *s = ref_var(src + i + 2, (size_t)(close - src - i - 2), v, level);
            if (!s)
                return false;
            for (size_t k = 0; k < s->len; k++) {
                CHECK(p->n < MAX_REF);
                p->b[p->n] = s->ptr[k];
                p->star[p->n++] = false;
            }
            i = (size_t)(close - src);
            continue;
        }
        CHECK(p->n < MAX_REF);
        p->b[p->n] = src[i];
        p->star[p->n++] = src[i] == '*';
    }
    return true;
}

/* Glob by dynamic programming: row[j] = pattern prefix matches t[0..j). */
static bool ref_match(const ref_pat_t *p, const char *t, size_t tn)
{
    bool row[MAX_RES_LEN + 2], next[MAX_RES_LEN + 2];
    CHECK(tn <= MAX_RES_LEN);
    row[0] = true;
    for (size_t j = 1; j <= tn; j++)
        row[j] = false;
    for (size_t i = 0; i < p->n; i++) {
        if (p->star[i]) {
            next[0] = row[0];
            for (size_t j = 1; j <= tn; j++)
                next[j] = next[j - 1] || row[j];
        } else {
            next[0] = false;
            for (size_t j = 1; j <= tn; j++)
                next[j] = row[j - 1] && p->b[i] == t[j - 1];
        }
        memcpy(row, next, (tn + 1) * sizeof row[0]);
    }
    return row[tn];
}

/* The reference decision: any matching Deny, else any matching Allow. */
static vg_policy_effect_t ref_decide(const vg_policy_doc_t *d, unsigned a, const char *t, size_t tn,
                                     const vg_policy_vars_t *v)
{
    static ref_pat_t p;
    bool allow = false;
    for (size_t s = 0; s < d->n_stmt; s++) {
        const pol_stmt_t *st = &d->stmt[s];
        if (!(st->actions & (1u << a)))
            continue;
        for (size_t k = 0; k < st->n_res; k++) {
            const pol_res_t *r = &d->res[st->first_res + k];
            int type;
            if (!ref_build(d->pool + r->src_off, r->src_len, v, &p, &type))
                continue;
            CHECK(type == r->type);
            if (!(pol_type_actions((unsigned)type) & (1u << a)) || !ref_match(&p, t, tn))
                continue;
            if (st->deny)
                return VG_POLICY_DENY_EXPLICIT;
            allow = true;
        }
    }
    return allow ? VG_POLICY_ALLOW : VG_POLICY_DENY_DEFAULT;
}

typedef struct {
    char b[MAX_RES][MAX_RES_LEN];
    size_t len[MAX_RES];
    size_t n;
} res_list_t;

static void add_res(res_list_t *l, const char *s, size_t n)
{
    if (l->n < MAX_RES && n <= MAX_RES_LEN) {
        memcpy(l->b[l->n], s, n);
        l->len[l->n++] = n;
    }
}

/* A resource likely to match pattern src: stars become "x/y", variables
 * their values (or "v"). */
static void from_pattern(res_list_t *l, const char *src, size_t n, const vg_policy_vars_t *v)
{
    char out[MAX_RES_LEN];
    size_t o = 0, skip = n >= 12 && !memcmp(src, "topicfilter/", 12) ? 12
                         : n >= 7 && !memcmp(src, "client/", 7)      ? 7
                         : n >= 6 && !memcmp(src, "topic/", 6)       ? 6
                                                                     : 0;
    for (size_t i = skip; i < n && o < sizeof out; i++) {
        if (src[i] == '*') {
            for (const char *f = "x/y"; *f && o < sizeof out; f++)
                out[o++] = *f;
        } else if (src[i] == '$' && i + 1 < n && src[i + 1] == '{') {
            const char *close = memchr(src + i + 2, '}', n - i - 2);
            const vg_policy_str_t *s = close ? ref_var(src + i + 2, (size_t)(close - src - i - 2), v, false) : NULL;
            const char *val = s ? s->ptr : "v";
            size_t vn = s ? s->len : 1;
            for (size_t k = 0; k < vn && o < sizeof out; k++)
                out[o++] = val[k];
            i = close ? (size_t)(close - src) : n;
        } else {
            out[o++] = src[i];
        }
    }
    add_res(l, out, o);
    if (o > 0)
        add_res(l, out, o - 1);
    if (o < sizeof out) {
        out[o] = 'z';
        add_res(l, out, o + 1);
    }
}

static void check_doc(vg_policy_doc_t *d, const vg_policy_vars_t *v, res_list_t *l)
{
    vg_policy_set_t *set = NULL;
    vg_policy_doc_t *docs[2] = {d, d};
    CHECK(vg_policy_set_new(docs, 2, &set) == VG_OK); /* the same document twice: still one answer */
    CHECK(vg_policy_set_docs(set) == 2 && vg_policy_set_doc(set, 0) == d);

    for (size_t i = 0; i < d->n_res && l->n < MAX_RES; i++)
        from_pattern(l, d->pool + d->res[i].src_off, d->res[i].src_len, v);

    static vg_policy_cache_t cache;
    vg_policy_cache_reset(&cache);
    char out[512];
    vg_mem_fail_after(0); /* nothing below may allocate */
    for (int pass = 0; pass < 2; pass++)
        for (size_t k = 0; k < l->n; k++)
            for (unsigned a = 0; a < VG_POLICY__ACTIONS; a++) {
                vg_policy_why_t w, wc;
                const char *t = l->b[k];
                size_t tn = l->len[k];
                bool ok = vg_policy_check(set, (vg_policy_action_t)a, t, tn, v, &w);
                CHECK(ok == (w.effect == VG_POLICY_ALLOW));
                CHECK(w.effect == ref_decide(d, a, t, tn, v));
                bool okc = vg_policy_cache_check(&cache, set, (vg_policy_action_t)a, t, tn, v, &wc);
                CHECK(okc == ok && wc.effect == w.effect && wc.doc == w.doc && wc.statement == w.statement &&
                      wc.resource == w.resource);
                if (w.effect == VG_POLICY_DENY_DEFAULT) {
                    CHECK(w.doc == -1 && w.statement == -1 && w.resource == -1);
                } else {
                    /* The first document decides; what it names is real. */
                    CHECK(w.doc == 0 && (size_t)w.statement < d->n_stmt);
                    const pol_stmt_t *st = &d->stmt[w.statement];
                    CHECK(st->deny == (w.effect == VG_POLICY_DENY_EXPLICIT));
                    CHECK((st->actions & (1u << a)) && w.resource >= 0 && w.resource < st->n_res);
                    CHECK(pol_type_actions(d->res[st->first_res + (size_t)w.resource].type) & (1u << a));
                }
                if (pass == 0 && k < 4) {
                    CHECK(vg_policy_explain(set, (vg_policy_action_t)a, t, tn, v, out, sizeof out) == ok);
                    line_printable(out);
                    CHECK(!strncmp(out, ok ? "ALLOW " : "DENY ", ok ? 6 : 5));
                }
            }
    void *p = vg_malloc(VG_MEM_SEC, 1);
    CHECK(p == NULL); /* the armed failure is still pending */
    vg_mem_fail_after(-1);
    vg_policy_set_unref(set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    size_t dlen = nul ? (size_t)(nul - (const char *)data) : size;
    /* A private copy sized exactly, so ASan sees any read past the end. */
    char *text = vg_malloc(VG_MEM_CORE, dlen ? dlen : 1);
    if (!text)
        return 0;
    memcpy(text, data, dlen);

    char err[256];
    vg_policy_doc_t *d = (vg_policy_doc_t *)1;
    int rc = vg_policy_parse("fuzz", text, dlen, &d, err, sizeof err);
    CHECK(rc == VG_OK || rc == VG_EMALFORMED || rc == VG_ETOOBIG);
    if (rc != VG_OK) {
        CHECK(d == NULL && !strncmp(err, "policy fuzz: ", 13) && strlen(err) > 13);
        line_printable(err);
        vg_free(text);
        return 0;
    }
    CHECK(d && !strcmp(vg_policy_doc_name(d), "fuzz") && vg_policy_doc_statements(d) >= 1);
    vg_free(text); /* the document must not point into the text */

    /* The principal and extra resources from the part after the NUL. */
    static res_list_t l;
    vg_policy_str_t f[5] = {{"dev-1", 5}, {"alice", 5}, {"dev-1.example", 13}, {"ward", 4}, {"w3", 2}};
    l.n = 0;
    if (nul) {
        const char *p = nul + 1, *end = (const char *)data + size;
        for (int i = 0; p <= end; i++) {
            const char *e = memchr(p, '\n', (size_t)(end - p));
            size_t n = e ? (size_t)(e - p) : (size_t)(end - p);
            if (i < 5) /* at most 64 bytes each, to bound the reference's pattern */
                f[i] = (vg_policy_str_t){n ? p : NULL, n < 64 ? n : 64};
            else
                add_res(&l, p, n);
            if (!e)
                break;
            p = e + 1;
        }
    }
    vg_policy_attr_t attr = {f[3], f[4]};
    vg_policy_vars_t v = {.clientid = f[0], .username = f[1], .cert_cn = f[2], .attrs = &attr, .n_attrs = 1};
    if (!attr.name.ptr)
        v.n_attrs = 0;
    add_res(&l, "dev-1", 5);
    check_doc(d, &v, &l);

    /* References: the set held its own; this is the last one. */
    vg_policy_doc_unref(vg_policy_doc_ref(d));
    vg_policy_doc_unref(d);
    return 0;
}
