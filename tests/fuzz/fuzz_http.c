/* fuzz_http.c — libFuzzer harness for the HTTP/1.1 parser (src/net/http.c).
 *
 * The first input byte picks the limits and how the stream is cut; the rest
 * is what a client sends on one connection: requests, bodies, pipelined. The
 * stream is processed twice: once with everything already in the buffer,
 * and once as an epoll server would see it, in pieces of pseudo-random size
 * (derived from the input) appended to a buffer that moves on every append
 * and decoded in place. Both runs write a transcript of what they saw
 * (every head field, every decoded body, every error code) and the two
 * transcripts must be equal: the parser's answer may not depend on how the
 * bytes were split. Every accepted head is also checked field by field
 * (spans inside the head, tokens are tokens, values trimmed and free of
 * controls, limits respected), serialized again and re-parsed to the same
 * fields, and its fields must be accepted by the response writer; every
 * decoded body is chunk-encoded again, in other pieces, and must decode to
 * the same bytes. */
#include "core/err.h"
#include "net/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                                    \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define MAX_HEADERS 64
#define TRANSCRIPT (1u << 20)

typedef struct {
    size_t max_head, max_headers;
    uint64_t max_body;
    size_t piece; /* largest piece in the split run */
} cfg_t;

typedef struct {
    uint8_t *b;
    size_t n;
} log_t;

static uint8_t log_a[TRANSCRIPT], log_b[TRANSCRIPT];
static uint64_t rng;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void log_put(log_t *l, const void *p, size_t n)
{
    /* A transcript that does not fit is truncated the same way in both runs. */
    if (n > TRANSCRIPT - l->n)
        n = TRANSCRIPT - l->n;
    if (n)
        memcpy(l->b + l->n, p, n);
    l->n += n;
}

static void log_u64(log_t *l, uint64_t v)
{
    log_put(l, &v, sizeof(v));
}

static void log_span(log_t *l, vg_http_span_t s)
{
    log_u64(l, s.len);
    log_put(l, s.p, s.len);
}

/* ---- character rules, restated independently --------------------------- */

static bool tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static bool all_tchar(vg_http_span_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        if (!tchar((unsigned char)s.p[i]))
            return false;
    }
    return s.len > 0;
}

static bool inside(vg_http_span_t s, const char *lo, const char *hi)
{
    return s.p >= lo && s.p <= hi && s.len <= (size_t)(hi - s.p);
}

static bool ieq(vg_http_span_t a, vg_http_span_t b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (y >= 'A' && y <= 'Z')
            y |= 0x20;
        if (x != y)
            return false;
    }
    return true;
}

/* ---- one accepted head ------------------------------------------------- */

static void log_head(log_t *l, const vg_http_request_t *r, bool with_len)
{
    log_u64(l, r->method);
    log_span(l, r->method_name);
    log_span(l, r->target);
    log_span(l, r->path);
    log_span(l, r->query);
    log_u64(l, r->version_minor);
    log_u64(l, r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        log_span(l, r->headers[i].name);
        log_span(l, r->headers[i].value);
    }
    log_u64(l, r->framing);
    log_u64(l, r->content_length);
    log_u64(l, r->keep_alive);
    log_u64(l, r->expect_continue);
    if (with_len)
        log_u64(l, r->head_len);
}

static char ser[1 << 17];
static uint8_t log_c[1 << 17], log_d[1 << 17];
static vg_http_header_t hdr2[MAX_HEADERS];

static void check_head(const cfg_t *c, const char *buf, size_t len, const vg_http_request_t *r)
{
    const char *end = buf + r->head_len;

    CHECK(r->head_len > 0 && r->head_len <= len && r->head_len <= c->max_head);
    CHECK(end[-1] == '\n' && end[-2] == '\r');
    CHECK(r->version_minor <= 1);
    CHECK(r->nheaders <= c->max_headers);
    CHECK(inside(r->method_name, buf, end) && all_tchar(r->method_name));
    CHECK(inside(r->target, buf, end) && r->target.len > 0);
    for (size_t i = 0; i < r->target.len; i++) {
        unsigned char ch = (unsigned char)r->target.p[i];
        CHECK(ch > 0x20 && ch < 0x7F && ch != '#');
    }
    const char *tend = r->target.p + r->target.len;
    CHECK(inside(r->query, r->target.p, tend));
    CHECK(inside(r->path, r->target.p, tend) || (r->path.len == 1 && r->path.p[0] == '/'));
    CHECK(r->path.len > 0);
    CHECK(r->path.p[0] == '/' || (r->path.p[0] == '*' && r->method == VG_HTTP_OPTIONS));
    if (r->query.len)
        CHECK(r->query.p[-1] == '?' && r->query.p + r->query.len == tend);
    for (size_t i = 0; i < r->nheaders; i++) {
        const vg_http_header_t *h = &r->headers[i];
        CHECK(inside(h->name, buf, end) && inside(h->value, buf, end));
        CHECK(all_tchar(h->name));
        CHECK(h->name.p + h->name.len < end && h->name.p[h->name.len] == ':');
        for (size_t k = 0; k < h->value.len; k++)
            CHECK(field_char((unsigned char)h->value.p[k]));
        if (h->value.len)
            CHECK(h->value.p[0] != ' ' && h->value.p[0] != '\t' && h->value.p[h->value.len - 1] != ' ' &&
                  h->value.p[h->value.len - 1] != '\t');
        /* Lookup finds the first header of that name. */
        char name[256];
        if (h->name.len < sizeof(name)) {
            memcpy(name, h->name.p, h->name.len);
            name[h->name.len] = 0;
            const vg_http_header_t *f = vg_http_header_find(r, name);
            CHECK(f && f <= h && ieq(f->name, h->name));
            CHECK(vg_http_header_count(r, name) >= 1);
        }
    }
    /* Framing agrees with the fields. */
    size_t ncl = vg_http_header_count(r, "content-length"), nte = vg_http_header_count(r, "transfer-encoding");
    CHECK(!(ncl && nte));
    if (r->framing == VG_HTTP_BODY_CHUNKED)
        CHECK(nte && r->version_minor == 1);
    else if (r->framing == VG_HTTP_BODY_LENGTH)
        CHECK(ncl && r->content_length <= c->max_body);
    else
        CHECK(!ncl && !nte && r->content_length == 0);
    if (r->version_minor == 1)
        CHECK(vg_http_header_count(r, "host") == 1);
    if (vg_http_has_token(r, "connection", "close"))
        CHECK(!r->keep_alive);
    if (r->version_minor == 0 && r->keep_alive)
        CHECK(vg_http_has_token(r, "connection", "keep-alive"));

    /* List elements: non-empty, trimmed, no commas, inside the head. */
    vg_http_list_iter_t it = {0, 0};
    vg_http_span_t el;
    size_t guard = 0;
    while (vg_http_list_next(r, "connection", &it, &el)) {
        CHECK(inside(el, buf, end) && el.len > 0 && !memchr(el.p, ',', el.len));
        CHECK(el.p[0] != ' ' && el.p[0] != '\t' && el.p[el.len - 1] != ' ' && el.p[el.len - 1] != '\t');
        CHECK(++guard <= r->head_len);
    }

    /* Path decoding: the target's escapes were checked, so only %00 fails. */
    static char dec[1 << 14];
    size_t dl;
    int d = vg_http_pct_decode(r->path.p, r->path.len, false, dec, sizeof(dec), &dl);
    CHECK(d == VG_OK || d == VG_EMALFORMED || d == VG_ENOSPC);
    if (d == VG_OK)
        CHECK(dl <= r->path.len);
    if (d == VG_EMALFORMED) {
        bool nul = false;
        for (size_t i = 0; i + 2 < r->path.len; i++)
            nul |= r->path.p[i] == '%' && r->path.p[i + 1] == '0' && r->path.p[i + 2] == '0';
        CHECK(nul);
    }
    /* The first query parameter is found by its name. */
    if (r->query.len) {
        size_t e = 0;
        while (e < r->query.len && r->query.p[e] != '&' && r->query.p[e] != '=')
            e++;
        char qn[64];
        if (e < sizeof(qn) && !memchr(r->query.p, 0, e)) {
            memcpy(qn, r->query.p, e);
            qn[e] = 0;
            vg_http_span_t v;
            CHECK(vg_http_query_param(r->query, qn, &v) == VG_OK && inside(v, r->query.p, tend));
        }
    }

    /* Serialize again (canonical spacing, no leading empty lines) and
     * re-parse: the same fields must come back. */
    size_t n = 0;
    n += (size_t)snprintf(ser + n, sizeof(ser) - n, "%.*s %.*s HTTP/1.%d\r\n", (int)r->method_name.len,
                          r->method_name.p, (int)r->target.len, r->target.p, r->version_minor);
    for (size_t i = 0; i < r->nheaders && n < sizeof(ser); i++)
        n += (size_t)snprintf(ser + n, sizeof(ser) - n, "%.*s: %.*s\r\n", (int)r->headers[i].name.len,
                              r->headers[i].name.p, (int)r->headers[i].value.len, r->headers[i].value.p);
    if (n + 2 < sizeof(ser)) {
        memcpy(ser + n, "\r\n", 2);
        n += 2;
        vg_http_parser_t p2;
        vg_http_request_t r2;
        vg_http_parser_init(&p2, hdr2, c->max_headers, sizeof(ser), c->max_body);
        CHECK(vg_http_parse_head(&p2, ser, n, &r2) == VG_OK);
        CHECK(r2.head_len == n);
        log_t l1 = {log_c, 0}, l2 = {log_d, 0};
        log_head(&l1, r, false);
        log_head(&l2, &r2, false);
        CHECK(l1.n == l2.n && memcmp(log_c, log_d, l1.n) == 0);
    }

    /* Whatever fields we accept, the writer accepts as extra headers. */
    static char extra[1 << 14], out[1 << 15];
    n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        size_t need = r->headers[i].name.len + r->headers[i].value.len + 4;
        if (memchr(r->headers[i].value.p, 0, r->headers[i].value.len) || n + need >= sizeof(extra))
            break;
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "%.*s: %.*s\r\n", (int)r->headers[i].name.len,
                              r->headers[i].name.p, (int)r->headers[i].value.len, r->headers[i].value.p);
    }
    extra[n] = 0;
    int w = vg_http_response_head(out, sizeof(out), 200, "application/json", 0, extra, r->keep_alive);
    CHECK(w > 0 && (size_t)w >= n);
}

/* Chunk-encodes body[0..n) in pseudo-random chunk sizes, decodes it again
 * in pseudo-random pieces, and checks the bytes come back. */
static uint8_t enc[1 << 18], dec2[1 << 18];

static void check_rechunk(const uint8_t *body, size_t n, uint64_t max_body)
{
    size_t e = 0, off = 0;
    while (off < n) {
        size_t k = 1 + (size_t)(next_rand() % 300);
        if (k > n - off)
            k = n - off;
        if (e + k + 32 > sizeof(enc))
            return;
        e += (size_t)snprintf((char *)enc + e, sizeof(enc) - e, "%zx\r\n", k);
        memcpy(enc + e, body + off, k);
        e += k;
        memcpy(enc + e, "\r\n", 2);
        e += 2;
        off += k;
    }
    memcpy(enc + e, "0\r\n\r\n", 5);
    e += 5;
    vg_http_request_t req = {.framing = VG_HTTP_BODY_CHUNKED};
    vg_http_body_t b;
    vg_http_body_init(&b, &req, max_body);
    size_t in = 0, got = 0;
    int r = VG_AGAIN;
    while (in < e && r == VG_AGAIN) {
        size_t k = 1 + (size_t)(next_rand() % 64), used, made;
        if (k > e - in)
            k = e - in;
        r = vg_http_body_feed(&b, enc + in, k, &used, dec2 + got, &made);
        CHECK(used <= k && made <= used);
        in += used;
        got += made;
    }
    CHECK(r == VG_OK && in == e && got == n && (n == 0 || memcmp(dec2, body, n) == 0));
}

/* ---- the two runs ------------------------------------------------------ */

static vg_http_header_t hdrs[MAX_HEADERS];

/* Everything already received: one buffer, requests parsed in turn. */
static void run_whole(const cfg_t *c, const uint8_t *data, size_t size, log_t *l)
{
    uint8_t *buf = malloc(size ? size : 1);
    vg_http_parser_t p;
    size_t off = 0;

    memcpy(buf, data, size);
    vg_http_parser_init(&p, hdrs, c->max_headers, c->max_head, c->max_body);
    while (off < size) {
        vg_http_request_t req;
        char *s = (char *)buf + off;
        int r = vg_http_parse_head(&p, s, size - off, &req);
        log_u64(l, (uint64_t)(int64_t)r);
        if (r == VG_AGAIN)
            break;
        if (r != VG_OK) {
            CHECK(p.error != VG_HTTP_ERR_NONE);
            log_u64(l, p.error);
            char out[512];
            int n = vg_http_error_response(out, sizeof(out), p.error);
            int st = vg_http_error_status(p.error);
            CHECK(n > 0 && (st == 400 || st == 413 || st == 414 || st == 431 || st == 501 || st == 505));
            break;
        }
        check_head(c, s, size - off, &req);
        log_head(l, &req, true);
        off += req.head_len;

        vg_http_body_t b;
        size_t used, made;
        vg_http_body_init(&b, &req, c->max_body);
        r = vg_http_body_feed(&b, buf + off, size - off, &used, buf + off, &made);
        CHECK(used <= size - off && made <= used);
        log_u64(l, (uint64_t)(int64_t)r);
        if (r != VG_OK && r != VG_AGAIN) {
            CHECK(b.error != VG_HTTP_ERR_NONE);
            log_u64(l, b.error);
            break;
        }
        if (r == VG_OK) {
            log_u64(l, made);
            log_put(l, buf + off, made);
            CHECK(made <= c->max_body);
            if (req.framing == VG_HTTP_BODY_LENGTH)
                CHECK(made == req.content_length && used == made);
            if (req.framing == VG_HTTP_BODY_CHUNKED)
                check_rechunk(buf + off, made, c->max_body);
        }
        if (r == VG_AGAIN)
            break;
        off += used;
    }
    free(buf);
}

/* Appends src[0..n) to the pending bytes in a freshly allocated buffer, so
 * that anything still pointing into the old one would be caught. */
static uint8_t *append(uint8_t *pend, size_t plen, const uint8_t *src, size_t n)
{
    uint8_t *nb = malloc(plen + n ? plen + n : 1);
    if (plen)
        memcpy(nb, pend, plen);
    if (n)
        memcpy(nb + plen, src, n);
    free(pend);
    return nb;
}

/* As a server sees it: pieces arrive, the head is re-parsed over the grown
 * buffer, the body is decoded in place behind the head. */
static void run_pieces(const cfg_t *c, const uint8_t *data, size_t size, log_t *l)
{
    uint8_t *pend = NULL;
    size_t plen = 0, in = 0;
    vg_http_parser_t p;
    vg_http_request_t req;
    vg_http_body_t b;
    bool in_body = false;
    size_t body_len = 0; /* decoded body bytes, right after the head */

    vg_http_parser_init(&p, hdrs, c->max_headers, c->max_head, c->max_body);
    while (in < size) {
        size_t k = 1 + (size_t)(next_rand() % c->piece);
        if (k > size - in)
            k = size - in;
        size_t old = plen;
        pend = append(pend, plen, data + in, k);
        plen += k;
        in += k;

        /* Work through what is pending; a finished request may leave the
         * start of the next one behind it. */
        bool more = true;
        while (more) {
            more = false;
            if (!in_body) {
                if (plen == 0)
                    break;
                int r = vg_http_parse_head(&p, (const char *)pend, plen, &req);
                if (r == VG_AGAIN) {
                    if (in == size)
                        log_u64(l, (uint64_t)(int64_t)r);
                    break;
                }
                log_u64(l, (uint64_t)(int64_t)r);
                if (r != VG_OK) {
                    log_u64(l, p.error);
                    goto done;
                }
                log_head(l, &req, true);
                vg_http_body_init(&b, &req, c->max_body);
                in_body = true;
                body_len = 0;
                old = req.head_len; /* raw body bytes start here */
            }
            size_t used, made;
            size_t raw = plen - old;
            uint8_t *out = pend + req.head_len + body_len;
            int r = vg_http_body_feed(&b, pend + old, raw, &used, out, &made);
            CHECK(used <= raw && made <= used);
            body_len += made;
            if (r == VG_AGAIN) {
                CHECK(used == raw);
                plen = req.head_len + body_len; /* drop the framing bytes */
                if (in == size)
                    log_u64(l, (uint64_t)(int64_t)r);
                break;
            }
            log_u64(l, (uint64_t)(int64_t)r);
            if (r != VG_OK) {
                log_u64(l, b.error);
                goto done;
            }
            log_u64(l, body_len);
            log_put(l, pend + req.head_len, body_len);
            /* The rest is the next request: move it to the front. */
            size_t rest = plen - (old + used);
            memmove(pend, pend + old + used, rest);
            plen = rest;
            in_body = false;
            more = true;
        }
    }
done:
    free(pend);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t heads[4] = {64, 256, 1024, VG_HTTP_DEFAULT_MAX_HEAD};
    static const size_t nhdrs[4] = {0, 2, 8, MAX_HEADERS};
    static const uint64_t bodies[4] = {0, 16, 4096, UINT64_MAX};
    static const size_t pieces[4] = {1, 7, 64, 4096};
    cfg_t c;

    if (size < 1)
        return 0;
    c.max_head = heads[data[0] & 3];
    c.max_headers = nhdrs[(data[0] >> 2) & 3];
    c.max_body = bodies[(data[0] >> 4) & 3];
    c.piece = pieces[(data[0] >> 6) & 3];
    data++;
    size--;

    /* The cut points come from the input itself, so a crash reproduces. */
    rng = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size; i++)
        rng = (rng ^ data[i]) * 0x100000001B3ull;
    if (!rng)
        rng = 1;

    log_t a = {log_a, 0}, b = {log_b, 0};
    run_whole(&c, data, size, &a);
    run_pieces(&c, data, size, &b);
    if (a.n != b.n || memcmp(log_a, log_b, a.n) != 0) {
        fprintf(stderr, "transcripts differ: whole %zu bytes, pieces %zu bytes\n", a.n, b.n);
        abort();
    }
    return 0;
}
