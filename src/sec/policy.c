/* policy.c — see policy.h. Owns the policy document grammar: it reads the
 * JSON (core/json, strict), checks every rule and limit, and compiles the
 * statements and resource patterns into the one-allocation form of
 * policy_int.h. It does not evaluate anything (policy_eval.c) and does not
 * know where documents come from (policystore.c).
 *
 * Why two passes over the text: the first checks everything and counts
 * statements, resources, pieces and pool bytes without allocating, so that a
 * document over a limit or with an error costs no memory at all (STYLE.md
 * 10); the second, over text already known to be valid, writes into one block
 * sized exactly. Both passes run the same code; build_t's doc pointer is NULL
 * in the first. */
#include "sec/policy.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "sec/policy_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Nesting of the deepest valid document: object, Statement array, statement
 * object, Action array; anything deeper fails on a type check anyway. */
#define DOC_DEPTH 8
/* Members of the top-level object and of a statement we look at: more means
 * unknown or duplicate fields, which are errors. */
#define MAX_FIELDS 8

static const char *const action_names[VG_POLICY__ACTIONS] = {"mqtt:Connect", "mqtt:Publish", "mqtt:Subscribe",
                                                             "mqtt:Receive", "mqtt:Retain"};

typedef struct {
    vg_policy_doc_t *d; /* NULL in the counting pass */
    const char *name;
    char *err;
    size_t cap;
    int stmt_no; /* 1-based statement being read, 0 outside statements */
    size_t n_stmt, n_res, n_pieces, n_attach, pool_len;
} build_t;

void pol_quote(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    const size_t max = 48;
    for (size_t i = 0; i < n && i < max && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    if (n > max && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < cap ? o : cap - 1] = '\0';
}

static int fail(build_t *b, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(build_t *b, int rc, const char *fmt, ...)
{
    if (!b->err || !b->cap)
        return rc;
    int n = b->stmt_no ? snprintf(b->err, b->cap, "policy %s: statement %d: ", b->name, b->stmt_no)
                       : snprintf(b->err, b->cap, "policy %s: ", b->name);
    if (n >= 0 && (size_t)n < b->cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->err + n, b->cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Appends bytes to the pool (or only counts them); returns their offset. */
static uint32_t pool_put(build_t *b, const char *s, size_t n, bool nul)
{
    uint32_t off = (uint32_t)b->pool_len;
    if (b->d) {
        memcpy(b->d->pool + off, s, n);
        if (nul)
            b->d->pool[off + n] = '\0';
    }
    b->pool_len += n + (nul ? 1 : 0);
    return off;
}

/* Decodes a JSON key into buf (cap bytes); "" if it does not fit, which
 * then matches no known field. */
static const char *key_of(const vg_json_member_t *m, char *buf, size_t cap)
{
    size_t n;
    if (vg_json_unescape(m->key, m->key_len, buf, cap, &n) != VG_OK || n >= cap || memchr(buf, '\0', n))
        buf[0] = '\0';
    return buf;
}

/* Decodes a string member into buf[0..cap-1) NUL-terminated. VG_ENOSPC if
 * longer, VG_EMALFORMED if it holds a NUL (no name or pattern may). */
static int str_of(const vg_json_member_t *m, char *buf, size_t cap, size_t *len)
{
    int rc = vg_json_unescape(m->raw, m->raw_len, buf, cap, len);
    if (rc == VG_OK && *len >= cap)
        rc = VG_ENOSPC;
    if (rc == VG_OK && memchr(buf, '\0', *len))
        rc = VG_EMALFORMED;
    return rc;
}

/* A string or an array of strings: its entries go to items (cap of them).
 * Errors name the field `what`. */
static int str_list(build_t *b, const vg_json_member_t *m, const char *what, vg_json_member_t *items, size_t cap,
                    size_t *n)
{
    if (m->type == VG_JSON_STRING) {
        items[0] = *m;
        *n = 1;
        return VG_OK;
    }
    if (m->type != VG_JSON_ARRAY)
        return fail(b, VG_EMALFORMED, "\"%s\" must be a string or an array of strings", what);
    if (vg_json_array(m->raw, m->raw_len, DOC_DEPTH, items, cap, n) != VG_OK)
        return fail(b, VG_EMALFORMED, "\"%s\" is not a valid array", what);
    if (*n > cap)
        return fail(b, VG_ETOOBIG, "\"%s\" has %zu entries (at most %zu)", what, *n, cap);
    for (size_t i = 0; i < *n; i++)
        if (items[i].type != VG_JSON_STRING)
            return fail(b, VG_EMALFORMED, "\"%s\" entry %zu is not a string", what, i + 1);
    return VG_OK;
}

/* Reads the top-level or a statement's members into m, checking that each
 * key is one of names (NULL-terminated) and appears once. byname[i] gets the
 * member for names[i] or NULL. */
static int fields(build_t *b, const char *raw, size_t len, const char *what, const char *const *names,
                  const vg_json_member_t **byname, vg_json_member_t *m)
{
    size_t n = 0, nn = 0;
    int rc = vg_json_object(raw, len, DOC_DEPTH, m, MAX_FIELDS, &n);
    if (rc == VG_EMALFORMED)
        return fail(b, rc, "not valid JSON");
    if (rc == VG_ETOOBIG)
        return fail(b, VG_EMALFORMED, "nested too deeply");
    if (rc != VG_OK)
        return fail(b, VG_EMALFORMED, "%s must be a JSON object", what);
    while (names[nn])
        byname[nn++] = NULL;
    if (n > MAX_FIELDS)
        return fail(b, VG_EMALFORMED, "%s has %zu fields (unknown or repeated ones)", what, n);
    for (size_t i = 0; i < n; i++) {
        char kb[32], q[256];
        const char *k = key_of(&m[i], kb, sizeof kb);
        size_t j = 0;
        while (j < nn && strcmp(k, names[j]) != 0)
            j++;
        if (j == nn) {
            pol_quote(q, sizeof q, m[i].key, m[i].key_len);
            bool known = !strcmp(k, "NotAction") || !strcmp(k, "NotResource") || !strcmp(k, "Condition") ||
                         !strcmp(k, "Principal");
            return fail(b, VG_EMALFORMED, "%s field \"%s\" %s", what, q, known ? "is not supported" : "is unknown");
        }
        if (byname[j])
            return fail(b, VG_EMALFORMED, "%s field \"%s\" appears twice", what, names[j]);
        byname[j] = &m[i];
    }
    return VG_OK;
}

static int parse_action(build_t *b, const vg_json_member_t *m, unsigned *bits)
{
    char s[32], q[256];
    size_t n;
    if (str_of(m, s, sizeof s, &n) == VG_OK) {
        if (!strcmp(s, "mqtt:*")) {
            *bits |= (1u << VG_POLICY__ACTIONS) - 1;
            return VG_OK;
        }
        for (unsigned a = 0; a < VG_POLICY__ACTIONS; a++)
            if (!strcmp(s, action_names[a])) {
                *bits |= 1u << a;
                return VG_OK;
            }
    }
    pol_quote(q, sizeof q, m->raw, m->raw_len);
    return fail(b, VG_EMALFORMED, "unknown action \"%s\"", q);
}

static bool attr_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

static void add_piece(build_t *b, pol_res_t *r, uint8_t kind, const char *s, size_t n)
{
    if (b->d) {
        pol_piece_t *p = &b->d->pieces[b->n_pieces];
        p->kind = kind;
        p->len = (uint16_t)n;
        p->off = n ? pool_put(b, s, n, false) : 0;
    } else if (n) {
        pool_put(b, s, n, false);
    }
    b->n_pieces++;
    r->n_pieces++;
    if (kind == PC_LIT)
        r->lit_len += (uint32_t)n;
    else if (kind == PC_STAR)
        r->has_star = true;
    else
        r->has_var = true;
}

/* Compiles pattern s[0..n) (after the type prefix) into pieces. */
static int compile_pattern(build_t *b, pol_res_t *r, const char *src, const char *s, size_t n)
{
    char q[256];
    size_t lit = 0; /* start of the pending literal run */
    for (size_t i = 0; i <= n; i++) {
        bool star = i < n && s[i] == '*';
        bool var = i + 1 < n && s[i] == '$' && s[i + 1] == '{';
        if (i < n && !star && !var)
            continue;
        if (i > lit)
            add_piece(b, r, PC_LIT, s + lit, i - lit);
        if (i == n)
            break;
        if (star) {
            /* "**" is "*": one piece. */
            if (!(i > 0 && s[i - 1] == '*'))
                add_piece(b, r, PC_STAR, NULL, 0);
            lit = i + 1;
            continue;
        }
        const char *close = memchr(s + i + 2, '}', n - i - 2);
        if (!close) {
            pol_quote(q, sizeof q, src, strlen(src));
            return fail(b, VG_EMALFORMED, "resource \"%s\": \"${\" without a closing \"}\"", q);
        }
        const char *v = s + i + 2;
        size_t vn = (size_t)(close - v);
        if (vn == 8 && !memcmp(v, "clientid", 8)) {
            add_piece(b, r, PC_CLIENTID, NULL, 0);
        } else if (vn == 8 && !memcmp(v, "username", 8)) {
            add_piece(b, r, PC_USERNAME, NULL, 0);
        } else if (vn == 7 && !memcmp(v, "cert.cn", 7)) {
            add_piece(b, r, PC_CERT_CN, NULL, 0);
        } else if (vn > 12 && !memcmp(v, "device.attr.", 12) && attr_name_ok(v + 12, vn - 12)) {
            add_piece(b, r, PC_ATTR, v + 12, vn - 12);
        } else {
            pol_quote(q, sizeof q, v, vn);
            return fail(b, VG_EMALFORMED,
                        "unknown variable \"${%s}\" (${clientid}, ${username}, ${cert.cn}, ${device.attr.NAME})", q);
        }
        i = (size_t)(close - s);
        lit = i + 1;
    }
    if (r->n_pieces > VG_POLICY_MAX_PIECES) {
        pol_quote(q, sizeof q, src, strlen(src));
        return fail(b, VG_ETOOBIG, "resource \"%s\" has more than %d stars, variables and literals", q,
                    VG_POLICY_MAX_PIECES);
    }
    return VG_OK;
}

static int parse_resource(build_t *b, const vg_json_member_t *m, unsigned *types)
{
    char s[VG_POLICY_MAX_PATTERN + 1], q[256];
    size_t n;
    int rc = str_of(m, s, sizeof s, &n);
    if (rc == VG_OK)
        pol_quote(q, sizeof q, s, n);
    else
        pol_quote(q, sizeof q, m->raw, m->raw_len);
    if (rc == VG_ENOSPC)
        return fail(b, VG_ETOOBIG, "resource \"%s\" is longer than %d bytes", q, VG_POLICY_MAX_PATTERN);
    if (rc != VG_OK)
        return fail(b, VG_EMALFORMED, "resource \"%s\" contains a NUL", q);

    pol_res_t r = {0};
    size_t skip;
    if (n == 1 && s[0] == '*') {
        r.type = RT_ANY;
        skip = 0;
    } else if (n >= 7 && !memcmp(s, "client/", 7)) {
        r.type = RT_CLIENT;
        skip = 7;
    } else if (n >= 6 && !memcmp(s, "topic/", 6)) {
        r.type = RT_TOPIC;
        skip = 6;
    } else if (n >= 12 && !memcmp(s, "topicfilter/", 12)) {
        r.type = RT_FILTER;
        skip = 12;
    } else {
        return fail(b, VG_EMALFORMED, "resource \"%s\" has no known type (client/, topic/, topicfilter/ or *)", q);
    }
    if (r.type != RT_ANY && skip == n)
        return fail(b, VG_EMALFORMED, "resource \"%s\" has an empty pattern", q);
    if (r.type == RT_TOPIC && (memchr(s, '+', n) || memchr(s, '#', n)))
        return fail(b, VG_EMALFORMED,
                    "resource \"%s\": '+' and '#' are literal in policies and no topic name contains them "
                    "(use '*', or topicfilter/ for mqtt:Subscribe)",
                    q);
    r.first_piece = (uint32_t)b->n_pieces;
    r.src_len = (uint16_t)n;
    r.src_off = pool_put(b, s, n, false);
    if (r.type == RT_ANY)
        add_piece(b, &r, PC_STAR, NULL, 0);
    else if ((rc = compile_pattern(b, &r, s, s + skip, n - skip)) != VG_OK)
        return rc;
    if (b->d)
        b->d->res[b->n_res] = r;
    b->n_res++;
    *types |= pol_type_actions(r.type);
    return VG_OK;
}

static int parse_statement(build_t *b, const vg_json_member_t *sm)
{
    static const char *const names[] = {"Sid", "Effect", "Action", "Resource", NULL};
    const vg_json_member_t *f[4];
    vg_json_member_t m[MAX_FIELDS], items[VG_POLICY_MAX_RESOURCES];
    size_t n;
    char s[VG_POLICY_MAX_SID + 1];
    pol_stmt_t st = {0};
    int rc;

    if (sm->type != VG_JSON_OBJECT)
        return fail(b, VG_EMALFORMED, "a statement must be a JSON object");
    if ((rc = fields(b, sm->raw, sm->raw_len, "statement", names, f, m)) != VG_OK)
        return rc;

    if (f[0]) {
        if (f[0]->type != VG_JSON_STRING || (rc = str_of(f[0], s, sizeof s, &n)) == VG_EMALFORMED)
            return fail(b, VG_EMALFORMED, "\"Sid\" must be a string without NUL");
        if (rc == VG_ENOSPC)
            return fail(b, VG_ETOOBIG, "\"Sid\" is longer than %d bytes", VG_POLICY_MAX_SID);
        st.sid_len = (uint16_t)n;
        st.sid_off = pool_put(b, s, n, false);
    }

    if (!f[1])
        return fail(b, VG_EMALFORMED, "\"Effect\" is missing");
    if (f[1]->type == VG_JSON_STRING && str_of(f[1], s, sizeof s, &n) == VG_OK && !strcmp(s, "Allow"))
        st.deny = false;
    else if (f[1]->type == VG_JSON_STRING && str_of(f[1], s, sizeof s, &n) == VG_OK && !strcmp(s, "Deny"))
        st.deny = true;
    else
        return fail(b, VG_EMALFORMED, "\"Effect\" must be \"Allow\" or \"Deny\"");

    if (!f[2])
        return fail(b, VG_EMALFORMED, "\"Action\" is missing");
    if ((rc = str_list(b, f[2], "Action", items, VG_POLICY_MAX_ACTIONS, &n)) != VG_OK)
        return rc;
    if (n == 0)
        return fail(b, VG_EMALFORMED, "\"Action\" is empty");
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++)
        if ((rc = parse_action(b, &items[i], &bits)) != VG_OK)
            return rc;
    st.actions = (uint8_t)bits;

    if (!f[3])
        return fail(b, VG_EMALFORMED, "\"Resource\" is missing");
    if ((rc = str_list(b, f[3], "Resource", items, VG_POLICY_MAX_RESOURCES, &n)) != VG_OK)
        return rc;
    if (n == 0)
        return fail(b, VG_EMALFORMED, "\"Resource\" is empty");
    st.first_res = (uint32_t)b->n_res;
    st.n_res = (uint16_t)n;
    unsigned types = 0;
    for (size_t i = 0; i < n; i++)
        if ((rc = parse_resource(b, &items[i], &types)) != VG_OK)
            return rc;
    if (!(types & bits))
        return fail(b, VG_EMALFORMED,
                    "no resource applies to its actions (client/ is for mqtt:Connect, topicfilter/ for "
                    "mqtt:Subscribe, topic/ for mqtt:Publish, mqtt:Receive and mqtt:Retain)");

    if (b->d)
        b->d->stmt[b->n_stmt] = st;
    b->n_stmt++;
    return VG_OK;
}

static int parse_attach(build_t *b, const vg_json_member_t *am)
{
    static const char *const names[] = {"roles", "groups", "devices", NULL};
    const vg_json_member_t *f[3];
    vg_json_member_t m[MAX_FIELDS], items[VG_POLICY_MAX_ATTACH];
    char s[VG_POLICY_MAX_PRINCIPAL + 1];
    int rc;

    if ((rc = fields(b, am->raw, am->raw_len, "\"Attach\"", names, f, m)) != VG_OK)
        return rc;
    for (int k = 0; k < 3; k++) {
        size_t n;
        if (!f[k])
            continue;
        if ((rc = str_list(b, f[k], names[k], items, VG_POLICY_MAX_ATTACH, &n)) != VG_OK)
            return rc;
        for (size_t i = 0; i < n; i++) {
            size_t len;
            rc = str_of(&items[i], s, sizeof s, &len);
            if (rc == VG_ENOSPC)
                return fail(b, VG_ETOOBIG, "\"Attach\" %s entry %zu is longer than %d bytes", names[k], i + 1,
                            VG_POLICY_MAX_PRINCIPAL);
            if (rc != VG_OK || len == 0)
                return fail(b, VG_EMALFORMED, "\"Attach\" %s entry %zu is empty or holds a NUL", names[k], i + 1);
            if (b->d) {
                pol_attach_t *a = &b->d->attach[b->n_attach];
                a->kind = (uint8_t)k;
                a->len = (uint16_t)len;
                a->off = pool_put(b, s, len, false);
            } else {
                pool_put(b, s, len, false);
            }
            b->n_attach++;
        }
    }
    return VG_OK;
}

static int parse_doc(build_t *b, const char *text, size_t len)
{
    static const char *const names[] = {"Version", "Statement", "Attach", NULL};
    const vg_json_member_t *f[3];
    vg_json_member_t m[MAX_FIELDS], st[VG_POLICY_MAX_STATEMENTS];
    char s[32];
    size_t n;
    int rc;

    b->pool_len = 0;
    pool_put(b, b->name, strlen(b->name), true);
    if ((rc = fields(b, text, len, "the document", names, f, m)) != VG_OK)
        return rc;
    if (!f[0])
        return fail(b, VG_EMALFORMED, "\"Version\" is missing (\"2012-10-17\")");
    if (f[0]->type != VG_JSON_STRING || str_of(f[0], s, sizeof s, &n) != VG_OK || strcmp(s, "2012-10-17") != 0)
        return fail(b, VG_EMALFORMED, "\"Version\" must be \"2012-10-17\"");
    if (!f[1])
        return fail(b, VG_EMALFORMED, "\"Statement\" is missing");
    if (f[1]->type == VG_JSON_OBJECT) {
        st[0] = *f[1];
        n = 1;
    } else if (f[1]->type == VG_JSON_ARRAY) {
        if (vg_json_array(f[1]->raw, f[1]->raw_len, DOC_DEPTH, st, VG_POLICY_MAX_STATEMENTS, &n) != VG_OK)
            return fail(b, VG_EMALFORMED, "\"Statement\" is not a valid array");
        if (n > VG_POLICY_MAX_STATEMENTS)
            return fail(b, VG_ETOOBIG, "%zu statements (at most %d)", n, VG_POLICY_MAX_STATEMENTS);
    } else {
        return fail(b, VG_EMALFORMED, "\"Statement\" must be an array of statements");
    }
    if (n == 0)
        return fail(b, VG_EMALFORMED, "\"Statement\" is empty");
    for (size_t i = 0; i < n; i++) {
        b->stmt_no = (int)i + 1;
        if ((rc = parse_statement(b, &st[i])) != VG_OK)
            return rc;
    }
    b->stmt_no = 0;
    if (f[2] && f[2]->type != VG_JSON_OBJECT)
        return fail(b, VG_EMALFORMED, "\"Attach\" must be an object of roles, groups and devices");
    if (f[2] && (rc = parse_attach(b, f[2])) != VG_OK)
        return rc;
    return VG_OK;
}

static bool name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n <= VG_POLICY_MAX_NAME && attr_name_ok(name, n);
}

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

int vg_policy_parse(const char *name, const char *text, size_t len, vg_policy_doc_t **out, char *err, size_t cap)
{
    build_t b = {.name = name, .err = err, .cap = cap};
    char q[256];
    int rc;

    *out = NULL;
    if (err && cap)
        err[0] = '\0';
    if (!name_ok(name)) {
        pol_quote(q, sizeof q, name ? name : "", name ? strlen(name) : 0);
        b.name = q;
        return fail(&b, VG_EINVAL, "a policy name is 1-%d of A-Z a-z 0-9 _ - .", VG_POLICY_MAX_NAME);
    }
    if (!text)
        return fail(&b, VG_EINVAL, "no text");
    if (len > VG_POLICY_MAX_DOC_BYTES)
        return fail(&b, VG_ETOOBIG, "%zu bytes (at most %d)", len, VG_POLICY_MAX_DOC_BYTES);
    if ((rc = parse_doc(&b, text, len)) != VG_OK)
        return rc;

    size_t o_stmt = align8(sizeof(vg_policy_doc_t));
    size_t o_res = o_stmt + align8(b.n_stmt * sizeof(pol_stmt_t));
    size_t o_pc = o_res + align8(b.n_res * sizeof(pol_res_t));
    size_t o_at = o_pc + align8(b.n_pieces * sizeof(pol_piece_t));
    size_t o_pool = o_at + align8(b.n_attach * sizeof(pol_attach_t));
    char *blk = vg_calloc(VG_MEM_SEC, 1, o_pool + b.pool_len);
    if (!blk)
        return fail(&b, VG_ENOMEM, "out of memory");
    vg_policy_doc_t *d = (vg_policy_doc_t *)blk;
    d->stmt = (pol_stmt_t *)(blk + o_stmt);
    d->res = (pol_res_t *)(blk + o_res);
    d->pieces = (pol_piece_t *)(blk + o_pc);
    d->attach = (pol_attach_t *)(blk + o_at);
    d->pool = blk + o_pool;
    d->n_stmt = b.n_stmt;
    d->n_res = b.n_res;
    d->n_pieces = b.n_pieces;
    d->n_attach = b.n_attach;
    d->pool_len = b.pool_len;

    /* The second pass writes what the first counted; it cannot fail on the
     * same text, but a mismatch is caught rather than trusted. */
    build_t w = {.d = d, .name = name};
    if (parse_doc(&w, text, len) != VG_OK || w.n_stmt != b.n_stmt || w.n_res != b.n_res || w.n_pieces != b.n_pieces ||
        w.n_attach != b.n_attach || w.pool_len != b.pool_len) {
        vg_free(blk);
        return fail(&b, VG_EINVAL, "internal error: the two passes disagree");
    }
    d->name = d->pool;
    atomic_init(&d->refs, 1);
    *out = d;
    return VG_OK;
}

vg_policy_doc_t *vg_policy_doc_ref(vg_policy_doc_t *doc)
{
    if (doc)
        atomic_fetch_add_explicit(&doc->refs, 1, memory_order_relaxed);
    return doc;
}

void vg_policy_doc_unref(vg_policy_doc_t *doc)
{
    /* acq_rel: the last owner must see every other owner's reads done. */
    if (doc && atomic_fetch_sub_explicit(&doc->refs, 1, memory_order_acq_rel) == 1)
        vg_free(doc);
}

const char *vg_policy_doc_name(const vg_policy_doc_t *doc)
{
    return doc->name;
}

size_t vg_policy_doc_statements(const vg_policy_doc_t *doc)
{
    return doc->n_stmt;
}

bool vg_policy_doc_attached(const vg_policy_doc_t *doc, vg_policy_attach_t kind, const char *name, size_t len)
{
    for (size_t i = 0; i < doc->n_attach; i++) {
        const pol_attach_t *a = &doc->attach[i];
        if (a->kind == kind && a->len == len && !memcmp(doc->pool + a->off, name, len))
            return true;
    }
    return false;
}

const char *vg_policy_action_name(vg_policy_action_t a)
{
    return (unsigned)a < VG_POLICY__ACTIONS ? action_names[a] : "?";
}

int vg_policy_action_parse(const char *s, vg_policy_action_t *out)
{
    static const char *const short_names[VG_POLICY__ACTIONS] = {"connect", "publish", "subscribe", "receive", "retain"};
    for (unsigned a = 0; s && a < VG_POLICY__ACTIONS; a++)
        if (!strcmp(s, action_names[a]) || !strcmp(s, short_names[a])) {
            *out = (vg_policy_action_t)a;
            return VG_OK;
        }
    return VG_EINVAL;
}
