/* http.c — HTTP/1.1 request head parser, body decoder and response writer.
 *
 * Owns the HTTP/1.1 message syntax and nothing else: no sockets, no routing,
 * no allocation, no clock. The head parser works in two steps. While the
 * head is incomplete it only looks for line ends (resuming where the last
 * call stopped, so a client sending one byte at a time costs linear work),
 * checks each line ending, counts lines against the limits and checks the
 * method as it arrives, so that a non-HTTP client or an over-long head is
 * refused before its end. Once the empty line has arrived, one pass parses
 * every line into spans and a second applies the message rules (framing,
 * Host, keep-alive). Keeping only offsets between calls lets the caller grow
 * (and move) its buffer freely.
 *
 * The body decoder is a byte-wise state machine for the chunked framing and
 * a bulk copy for data, so it needs no lookahead and never asks the caller to
 * keep partial framing: every byte it is given is consumed.
 *
 * Section numbers refer to RFC 9110 (semantics) and RFC 9112 (HTTP/1.1). */
#include "net/http.h"

#include "core/err.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- characters -------------------------------------------------------- */

/* tchar (§5.6.2 of RFC 9110) as two bitmaps over 0..63 and 64..127. */
#define TCHAR_LO 0x03ff6cfa00000000ull
#define TCHAR_HI 0x57ffffffc7fffffeull

static inline bool is_tchar(unsigned char c)
{
    return c < 64 ? (TCHAR_LO >> c) & 1 : c < 128 ? (TCHAR_HI >> (c - 64)) & 1 : false;
}

static inline bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* field-vchar, SP and HTAB, obs-text included (§5.5): everything but the
 * controls other than HTAB, and DEL. */
static inline bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* Does p[0..n) equal the NUL-terminated s, ignoring ASCII case? */
static bool span_ieq(const char *p, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (!s[i] || lower((unsigned char)p[i]) != lower((unsigned char)s[i]))
            return false;
    }
    return s[n] == '\0';
}

/* ---- errors ------------------------------------------------------------ */

static const struct {
    int status;
    int code;
    const char *name;
} errs[VG_HTTP_ERR__COUNT] = {
    [VG_HTTP_ERR_NONE] = {0, VG_OK, "none"},
    [VG_HTTP_ERR_LINE_ENDING] = {400, VG_EMALFORMED, "line_ending"},
    [VG_HTTP_ERR_REQUEST_LINE] = {400, VG_EMALFORMED, "request_line"},
    [VG_HTTP_ERR_METHOD] = {400, VG_EMALFORMED, "method"},
    [VG_HTTP_ERR_TARGET] = {400, VG_EMALFORMED, "target"},
    [VG_HTTP_ERR_VERSION] = {400, VG_EMALFORMED, "version"},
    [VG_HTTP_ERR_VERSION_UNSUP] = {505, VG_EPROTO, "version_unsupported"},
    [VG_HTTP_ERR_URI_TOO_LONG] = {414, VG_ETOOBIG, "uri_too_long"},
    [VG_HTTP_ERR_HEAD_TOO_LARGE] = {431, VG_ETOOBIG, "head_too_large"},
    [VG_HTTP_ERR_TOO_MANY_HEADERS] = {431, VG_ETOOBIG, "too_many_headers"},
    [VG_HTTP_ERR_HEADER_NAME] = {400, VG_EMALFORMED, "header_name"},
    [VG_HTTP_ERR_SPACE_BEFORE_COLON] = {400, VG_EMALFORMED, "space_before_colon"},
    [VG_HTTP_ERR_HEADER_VALUE] = {400, VG_EMALFORMED, "header_value"},
    [VG_HTTP_ERR_OBS_FOLD] = {400, VG_EMALFORMED, "obs_fold"},
    [VG_HTTP_ERR_HOST] = {400, VG_EMALFORMED, "host"},
    [VG_HTTP_ERR_CONTENT_LENGTH] = {400, VG_EMALFORMED, "content_length"},
    [VG_HTTP_ERR_CL_AND_TE] = {400, VG_EPROTO, "cl_and_te"},
    [VG_HTTP_ERR_TRANSFER_ENCODING] = {400, VG_EPROTO, "transfer_encoding"},
    [VG_HTTP_ERR_TE_UNKNOWN] = {501, VG_EPROTO, "te_unknown"},
    [VG_HTTP_ERR_BODY_TOO_LARGE] = {413, VG_ETOOBIG, "body_too_large"},
    [VG_HTTP_ERR_CHUNK] = {400, VG_EMALFORMED, "chunk"},
    [VG_HTTP_ERR_TRAILER_TOO_LARGE] = {431, VG_ETOOBIG, "trailer_too_large"},
};

int vg_http_error_status(vg_http_error_t e)
{
    return (unsigned)e < VG_HTTP_ERR__COUNT ? errs[e].status : 0;
}

const char *vg_http_error_name(vg_http_error_t e)
{
    return (unsigned)e < VG_HTTP_ERR__COUNT ? errs[e].name : "?";
}

/* ---- request head ------------------------------------------------------ */

void vg_http_parser_init(vg_http_parser_t *p, vg_http_header_t *headers, size_t max_headers, size_t max_head,
                         uint64_t max_body)
{
    memset(p, 0, sizeof(*p));
    p->headers = headers;
    p->max_headers = headers ? max_headers : 0;
    p->max_head = max_head;
    p->max_body = max_body;
}

void vg_http_parser_reset(vg_http_parser_t *p)
{
    p->scan_ = p->line_start_ = p->req_start_ = p->method_ok_ = p->lines_ = 0;
}

/* Records why the head was refused and returns the matching VG_E* code. The
 * scan state is cleared so that a caller who ignores the failure and calls
 * again starts from a clean slate rather than from stale offsets. */
static int fail(vg_http_parser_t *p, vg_http_error_t e)
{
    vg_http_parser_reset(p);
    p->error = e;
    return errs[e].code;
}

static vg_http_method_t method_of(const char *s, size_t n)
{
    static const struct {
        const char *name;
        vg_http_method_t m;
    } known[] = {
        {"GET", VG_HTTP_GET},       {"HEAD", VG_HTTP_HEAD},       {"POST", VG_HTTP_POST},   {"PUT", VG_HTTP_PUT},
        {"DELETE", VG_HTTP_DELETE}, {"OPTIONS", VG_HTTP_OPTIONS}, {"PATCH", VG_HTTP_PATCH},
    };
    /* Methods are case-sensitive (RFC 9110 §9.1): "get" is some other one. */
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strlen(known[i].name) == n && memcmp(known[i].name, s, n) == 0)
            return known[i].m;
    }
    return VG_HTTP_OTHER;
}

/* Splits the request target into path and query (§3.2). We accept the
 * origin-form every client sends, the absolute-form a server MUST accept
 * (§3.2.2), and the asterisk-form of OPTIONS; the authority-form belongs to
 * CONNECT, which only proxies serve. */
static vg_http_error_t split_target(const char *t, size_t n, vg_http_request_t *req)
{
    size_t i = 0;

    if (t[0] == '*') {
        if (n != 1 || req->method != VG_HTTP_OPTIONS)
            return VG_HTTP_ERR_TARGET;
        req->path = (vg_http_span_t){t, 1};
        req->query = (vg_http_span_t){t + 1, 0};
        return VG_HTTP_ERR_NONE;
    }
    if (t[0] != '/') {
        size_t s;
        if (n > 7 && span_ieq(t, 7, "http://"))
            s = 7;
        else if (n > 8 && span_ieq(t, 8, "https://"))
            s = 8;
        else
            return VG_HTTP_ERR_TARGET;
        i = s;
        while (i < n && t[i] != '/' && t[i] != '?')
            i++;
        if (i == s)
            return VG_HTTP_ERR_TARGET; /* no authority */
    }
    size_t q = i;
    while (q < n && t[q] != '?')
        q++;
    if (q == i)
        req->path = (vg_http_span_t){"/", 1}; /* "http://host" or "http://host?x" */
    else
        req->path = (vg_http_span_t){t + i, q - i};
    req->query = q < n ? (vg_http_span_t){t + q + 1, n - q - 1} : (vg_http_span_t){t + n, 0};
    return VG_HTTP_ERR_NONE;
}

/* Parses "method SP target SP HTTP/d.d" (the line without its CRLF). Each
 * part is checked left to right, so the error names the first bad byte the
 * same way the early method check in vg_http_parse_head does. */
static vg_http_error_t parse_request_line(const char *s, size_t n, vg_http_request_t *req)
{
    size_t i = 0;

    while (i < n && s[i] != ' ') {
        if (!is_tchar((unsigned char)s[i]))
            return s[i] == '\r' ? VG_HTTP_ERR_LINE_ENDING : VG_HTTP_ERR_METHOD;
        i++;
    }
    if (i == 0 || i == n)
        return VG_HTTP_ERR_REQUEST_LINE;
    req->method_name = (vg_http_span_t){s, i};
    req->method = method_of(s, i);

    size_t t = ++i;
    while (i < n && s[i] != ' ') {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            return VG_HTTP_ERR_LINE_ENDING;
        /* Visible ASCII only; '#' starts a fragment, which is never sent. */
        if (c < 0x21 || c > 0x7E || c == '#')
            return VG_HTTP_ERR_TARGET;
        if (c == '%' && (n - i < 3 || hexval((unsigned char)s[i + 1]) < 0 || hexval((unsigned char)s[i + 2]) < 0))
            return VG_HTTP_ERR_TARGET;
        i++;
    }
    if (i == t || i == n)
        return VG_HTTP_ERR_REQUEST_LINE; /* empty target (two spaces) or no version */
    req->target = (vg_http_span_t){s + t, i - t};

    const char *v = s + i + 1;
    size_t vn = n - i - 1;
    if (memchr(v, '\r', vn))
        return VG_HTTP_ERR_LINE_ENDING;
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
        return VG_HTTP_ERR_VERSION;
    if (v[5] != '1' || v[7] > '1')
        return VG_HTTP_ERR_VERSION_UNSUP;
    req->version_minor = (uint8_t)(v[7] - '0');
    return split_target(req->target.p, req->target.len, req);
}

/* Parses "name: value" (the line without its CRLF). */
static vg_http_error_t parse_field_line(const char *s, size_t n, vg_http_header_t *h)
{
    size_t i = 0;

    /* A line starting with whitespace continues the previous one (obs-fold)
     * or, right after the request line, would hide a field from some
     * parsers; §5.2 and §2.2 let us refuse both. */
    if (is_ws((unsigned char)s[0]))
        return VG_HTTP_ERR_OBS_FOLD;
    while (i < n && s[i] != ':') {
        unsigned char c = (unsigned char)s[i];
        if (!is_tchar(c)) {
            if (c == '\r')
                return VG_HTTP_ERR_LINE_ENDING;
            if (is_ws(c)) {
                /* §5.1: "Name : v" MUST be refused; it is how requests are
                 * smuggled past a proxy that trims the space. */
                while (i < n && is_ws((unsigned char)s[i]))
                    i++;
                return i < n && s[i] == ':' ? VG_HTTP_ERR_SPACE_BEFORE_COLON : VG_HTTP_ERR_HEADER_NAME;
            }
            return VG_HTTP_ERR_HEADER_NAME;
        }
        i++;
    }
    if (i == 0 || i == n)
        return VG_HTTP_ERR_HEADER_NAME;
    h->name = (vg_http_span_t){s, i};
    i++;
    while (i < n && is_ws((unsigned char)s[i]))
        i++;
    size_t vs = i;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_field_char(c))
            return c == '\r' ? VG_HTTP_ERR_LINE_ENDING : VG_HTTP_ERR_HEADER_VALUE;
    }
    size_t ve = n;
    while (ve > vs && is_ws((unsigned char)s[ve - 1]))
        ve--;
    h->value = (vg_http_span_t){s + vs, ve - vs};
    return VG_HTTP_ERR_NONE;
}

/* The message rules that need all fields: framing (§6), Host (§3.2 of RFC
 * 9112), persistence (§9.3) and Expect. */
static vg_http_error_t apply_fields(const vg_http_parser_t *p, vg_http_request_t *req)
{
    size_t hosts = 0;
    bool have_cl = false, have_te = false;
    uint64_t cl = 0;

    for (size_t k = 0; k < req->nheaders; k++) {
        const vg_http_header_t *h = &req->headers[k];
        if (span_ieq(h->name.p, h->name.len, "host")) {
            hosts++;
        } else if (span_ieq(h->name.p, h->name.len, "transfer-encoding")) {
            have_te = true;
        } else if (span_ieq(h->name.p, h->name.len, "content-length")) {
            /* Digits only: no sign, no list ("5, 5"), no spaces inside.
             * Oversized values saturate; max_body refuses them below. */
            uint64_t v = 0;
            if (h->value.len == 0)
                return VG_HTTP_ERR_CONTENT_LENGTH;
            for (size_t i = 0; i < h->value.len; i++) {
                unsigned char c = (unsigned char)h->value.p[i];
                if (c < '0' || c > '9')
                    return VG_HTTP_ERR_CONTENT_LENGTH;
                v = v > (UINT64_MAX - (c - '0')) / 10 ? UINT64_MAX : v * 10 + (c - '0');
            }
            /* §8.6 of RFC 9110: repeated identical values may be accepted;
             * different ones are the classic smuggling vector. */
            if (have_cl && v != cl)
                return VG_HTTP_ERR_CONTENT_LENGTH;
            have_cl = true;
            cl = v;
        }
    }

    req->framing = VG_HTTP_BODY_NONE;
    req->content_length = 0;
    if (have_te) {
        /* §6.1: a request with both may be an attempt to smuggle; refuse it
         * rather than pick one. */
        if (have_cl)
            return VG_HTTP_ERR_CL_AND_TE;
        /* HTTP/1.0 has no Transfer-Encoding; §6.1 says treat the framing as
         * faulty. */
        if (req->version_minor == 0)
            return VG_HTTP_ERR_TRANSFER_ENCODING;
        vg_http_list_iter_t it = {0, 0};
        vg_http_span_t el;
        bool chunked = false, last_chunked = false, unknown = false;
        while (vg_http_list_next(req, "transfer-encoding", &it, &el)) {
            if (span_ieq(el.p, el.len, "chunked")) {
                if (chunked)
                    return VG_HTTP_ERR_TRANSFER_ENCODING; /* applied twice */
                chunked = last_chunked = true;
            } else {
                unknown = true;
                last_chunked = false;
            }
        }
        /* §6.3 (4): without chunked last the length cannot be known: 400.
         * A known framing with an unknown coding before it is 501 (§6.1). */
        if (!last_chunked)
            return VG_HTTP_ERR_TRANSFER_ENCODING;
        if (unknown)
            return VG_HTTP_ERR_TE_UNKNOWN;
        req->framing = VG_HTTP_BODY_CHUNKED;
    } else if (have_cl) {
        if (cl > p->max_body)
            return VG_HTTP_ERR_BODY_TOO_LARGE;
        req->framing = VG_HTTP_BODY_LENGTH;
        req->content_length = cl;
    }

    if (hosts > 1 || (req->version_minor == 1 && hosts == 0))
        return VG_HTTP_ERR_HOST;

    bool close = vg_http_has_token(req, "connection", "close");
    req->keep_alive = !close && (req->version_minor == 1 || vg_http_has_token(req, "connection", "keep-alive"));
    const vg_http_header_t *ex = vg_http_header_find(req, "expect");
    /* §10.1.1: an HTTP/1.0 client cannot mean 100-continue. */
    req->expect_continue = req->version_minor == 1 && ex && span_ieq(ex->value.p, ex->value.len, "100-continue");
    return VG_HTTP_ERR_NONE;
}

/* The head is buf[start..end), every line CRLF-terminated (checked by the
 * scan): parse each line, then the rules over all fields. */
static int parse_complete(vg_http_parser_t *p, const char *buf, size_t start, size_t end, vg_http_request_t *req)
{
    size_t ls = start, nh = 0;
    vg_http_error_t e;

    memset(req, 0, sizeof(*req));
    req->headers = p->headers;
    while (ls < end) {
        const char *nl = memchr(buf + ls, '\n', end - ls);
        size_t lf = (size_t)(nl - buf); /* the scan saw it, so nl is not NULL */
        size_t n = lf - 1 - ls;         /* without the CR */
        if (n == 0)
            break; /* the empty line that ends the head */
        if (ls == start)
            e = parse_request_line(buf + ls, n, req);
        else
            e = parse_field_line(buf + ls, n, &p->headers[nh++]);
        if (e != VG_HTTP_ERR_NONE)
            return fail(p, e);
        ls = lf + 1;
    }
    req->nheaders = nh;
    e = apply_fields(p, req);
    if (e != VG_HTTP_ERR_NONE)
        return fail(p, e);
    req->head_len = end;
    vg_http_parser_reset(p);
    p->error = VG_HTTP_ERR_NONE;
    return VG_OK;
}

int vg_http_parse_head(vg_http_parser_t *p, const char *buf, size_t len, vg_http_request_t *req)
{
    /* Only the first max_head bytes can belong to an acceptable head, so
     * nothing past them is examined. This also makes the outcome independent
     * of how the bytes were split across calls: whatever arrives, the same
     * window is checked in the same order. */
    size_t lim = len < p->max_head ? len : p->max_head;
    size_t i;

    /* A shorter buffer than last time means the caller started over. */
    if (lim < p->scan_)
        vg_http_parser_reset(p);
    i = p->scan_;
    while (i < lim) {
        const char *nl = memchr(buf + i, '\n', lim - i);
        if (!nl)
            break;
        size_t lf = (size_t)(nl - buf);
        bool cr = lf > p->line_start_ && buf[lf - 1] == '\r';
        size_t content_end = cr ? lf - 1 : lf;
        i = lf + 1;
        if (p->lines_ == 0 && content_end > p->line_start_) {
            /* Check the request line as soon as it is whole, so that a
             * client speaking something else is told now (400/505). Its
             * content is judged before its line ending, as the early method
             * check below would have judged it had the bytes come apart. */
            vg_http_request_t tmp;
            memset(&tmp, 0, sizeof(tmp));
            vg_http_error_t e = parse_request_line(buf + p->line_start_, content_end - p->line_start_, &tmp);
            if (e != VG_HTTP_ERR_NONE)
                return fail(p, e);
        }
        /* §2.2: we accept only CRLF. A bare LF is what lets a lenient parser
         * and a strict one see different lines. */
        if (!cr)
            return fail(p, VG_HTTP_ERR_LINE_ENDING);
        if (content_end == p->line_start_) {
            if (p->lines_ == 0) {
                /* Empty lines before the request line are skipped (§2.2):
                 * some clients send a stray CRLF after a POST body. */
                p->req_start_ = p->line_start_ = i;
                continue;
            }
            return parse_complete(p, buf, p->req_start_, i, req);
        }
        /* lines_ counts the request line, so this is field max + 1. */
        if (p->lines_ > p->max_headers)
            return fail(p, VG_HTTP_ERR_TOO_MANY_HEADERS);
        p->lines_++;
        p->line_start_ = i;
    }
    p->scan_ = lim;

    if (p->lines_ == 0) {
        /* The request line is still arriving: its method must be a token.
         * A CR is judged once the byte after it is known. */
        size_t j = p->method_ok_ > p->req_start_ ? p->method_ok_ : p->req_start_;
        for (; j < lim && buf[j] != ' '; j++) {
            unsigned char c = (unsigned char)buf[j];
            if (c == '\r') {
                if (j + 1 == lim)
                    break;
                return fail(p, VG_HTTP_ERR_LINE_ENDING);
            }
            if (!is_tchar(c))
                return fail(p, VG_HTTP_ERR_METHOD);
        }
        p->method_ok_ = j;
    }
    if (len > p->max_head)
        return fail(p, p->lines_ ? VG_HTTP_ERR_HEAD_TOO_LARGE : VG_HTTP_ERR_URI_TOO_LONG);
    return VG_AGAIN;
}

/* ---- header helpers ---------------------------------------------------- */

const vg_http_header_t *vg_http_header_find(const vg_http_request_t *req, const char *name)
{
    for (size_t k = 0; k < req->nheaders; k++) {
        if (span_ieq(req->headers[k].name.p, req->headers[k].name.len, name))
            return &req->headers[k];
    }
    return NULL;
}

size_t vg_http_header_count(const vg_http_request_t *req, const char *name)
{
    size_t n = 0;
    for (size_t k = 0; k < req->nheaders; k++)
        n += span_ieq(req->headers[k].name.p, req->headers[k].name.len, name);
    return n;
}

bool vg_http_list_next(const vg_http_request_t *req, const char *name, vg_http_list_iter_t *it, vg_http_span_t *elem)
{
    for (; it->hdr_ < req->nheaders; it->hdr_++, it->off_ = 0) {
        const vg_http_header_t *h = &req->headers[it->hdr_];
        if (!span_ieq(h->name.p, h->name.len, name))
            continue;
        const char *v = h->value.p;
        size_t n = h->value.len;
        while (it->off_ < n) {
            size_t s = it->off_, e = s;
            while (e < n && v[e] != ',')
                e++;
            it->off_ = e < n ? e + 1 : n;
            while (s < e && is_ws((unsigned char)v[s]))
                s++;
            while (e > s && is_ws((unsigned char)v[e - 1]))
                e--;
            if (e > s) {
                *elem = (vg_http_span_t){v + s, e - s};
                return true;
            }
        }
    }
    return false;
}

bool vg_http_has_token(const vg_http_request_t *req, const char *name, const char *token)
{
    vg_http_list_iter_t it = {0, 0};
    vg_http_span_t el;

    while (vg_http_list_next(req, name, &it, &el)) {
        if (span_ieq(el.p, el.len, token))
            return true;
    }
    return false;
}

int vg_http_pct_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t cap, size_t *out_len)
{
    size_t i = 0, o = 0;

    /* o <= i throughout and each input byte is read before out[o] is
     * written, which is what makes out == in safe. */
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3 || (hi = hexval((unsigned char)in[i + 1])) < 0 ||
                (lo = hexval((unsigned char)in[i + 2])) < 0)
                return VG_EMALFORMED;
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0)
                return VG_EMALFORMED;
            i += 3;
        } else {
            if (plus_is_space && c == '+')
                c = ' ';
            i++;
        }
        if (o == cap)
            return VG_ENOSPC;
        out[o++] = (char)c;
    }
    *out_len = o;
    return VG_OK;
}

int vg_http_query_param(vg_http_span_t query, const char *name, vg_http_span_t *value)
{
    size_t nl = strlen(name), i = 0;

    if (query.len == 0)
        return VG_ENOTFOUND;
    for (;;) {
        size_t e = i;
        while (e < query.len && query.p[e] != '&')
            e++;
        size_t eq = i;
        while (eq < e && query.p[eq] != '=')
            eq++;
        if (eq - i == nl && (nl == 0 || memcmp(query.p + i, name, nl) == 0)) {
            *value = eq < e ? (vg_http_span_t){query.p + eq + 1, e - eq - 1} : (vg_http_span_t){query.p + e, 0};
            return VG_OK;
        }
        if (e == query.len)
            return VG_ENOTFOUND;
        i = e + 1;
    }
}

/* ---- body -------------------------------------------------------------- */

enum {
    B_DONE,
    B_LENGTH,  /* Content-Length bytes */
    B_SIZE0,   /* first hex digit of a chunk size */
    B_SIZE,    /* more hex digits */
    B_SIZE_WS, /* BWS after the size: only ';' may follow */
    B_EXT,     /* chunk extensions, ignored */
    B_SIZE_LF, /* LF ending the size line */
    B_DATA,    /* chunk data */
    B_DATA_CR, /* CRLF after the data */
    B_DATA_LF,
    B_TR_START, /* start of a trailer line, or the final CRLF */
    B_TR_NAME,
    B_TR_VALUE,
    B_TR_LF,
    B_END_LF, /* LF of the final empty line */
    B_FAILED,
};

void vg_http_body_init(vg_http_body_t *b, const vg_http_request_t *req, uint64_t max_body)
{
    memset(b, 0, sizeof(*b));
    b->max_body_ = max_body;
    switch (req->framing) {
    case VG_HTTP_BODY_LENGTH:
        b->remaining_ = req->content_length;
        b->state_ = req->content_length ? B_LENGTH : B_DONE;
        break;
    case VG_HTTP_BODY_CHUNKED:
        b->state_ = B_SIZE0;
        break;
    default:
        b->state_ = B_DONE;
        break;
    }
}

static int body_fail(vg_http_body_t *b, vg_http_error_t e)
{
    b->state_ = B_FAILED;
    b->error = e;
    return errs[e].code;
}

/* One framing byte of a chunked body (RFC 9112 §7.1). Returns VG_OK or the
 * failure. Extensions and trailers are checked only for bytes that could
 * change where a line ends (controls), since nothing here reads them. */
static int chunk_byte(vg_http_body_t *b, unsigned char c)
{
    int h;

    switch (b->state_) {
    case B_SIZE0:
    case B_SIZE:
        h = hexval(c);
        if (h >= 0) {
            /* Refuse a size that would take the body over max_body now,
             * before its data arrives (and before the value could wrap). */
            uint64_t room = b->max_body_ - b->total_;
            if (b->state_ == B_SIZE0)
                b->remaining_ = 0;
            if ((uint64_t)h > room || b->remaining_ > (room - (uint64_t)h) / 16)
                return body_fail(b, VG_HTTP_ERR_BODY_TOO_LARGE);
            b->remaining_ = b->remaining_ * 16 + (uint64_t)h;
            b->state_ = B_SIZE;
        } else if (b->state_ == B_SIZE0) {
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        } else if (c == ';') {
            b->state_ = B_EXT;
        } else if (is_ws(c)) {
            b->state_ = B_SIZE_WS;
        } else if (c == '\r') {
            b->state_ = B_SIZE_LF;
        } else {
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        }
        break;
    case B_SIZE_WS:
        if (c == ';')
            b->state_ = B_EXT;
        else if (!is_ws(c))
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        break;
    case B_EXT:
        if (c == '\r')
            b->state_ = B_SIZE_LF;
        else if (!is_field_char(c))
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        break;
    case B_SIZE_LF:
        if (c != '\n')
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        if (b->remaining_ == 0) {
            b->state_ = B_TR_START;
        } else {
            b->total_ += b->remaining_;
            b->state_ = B_DATA;
        }
        return VG_OK;
    case B_DATA_CR:
        if (c != '\r')
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        b->state_ = B_DATA_LF;
        return VG_OK;
    case B_DATA_LF:
        if (c != '\n')
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        b->state_ = B_SIZE0;
        b->line_ = 0;
        return VG_OK;
    case B_TR_START:
        if (c == '\r')
            b->state_ = B_END_LF;
        else if (is_tchar(c))
            b->state_ = B_TR_NAME;
        else
            return body_fail(b, VG_HTTP_ERR_CHUNK); /* incl. obs-fold */
        goto trailer;
    case B_TR_NAME:
        if (c == ':')
            b->state_ = B_TR_VALUE;
        else if (!is_tchar(c))
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        goto trailer;
    case B_TR_VALUE:
        if (c == '\r')
            b->state_ = B_TR_LF;
        else if (!is_field_char(c))
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        goto trailer;
    case B_TR_LF:
        if (c != '\n')
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        b->state_ = B_TR_START;
        goto trailer;
    case B_END_LF:
        if (c != '\n')
            return body_fail(b, VG_HTTP_ERR_CHUNK);
        b->state_ = B_DONE;
        return VG_OK;
    default:
        return body_fail(b, VG_HTTP_ERR_CHUNK);
    }
    /* Size line states: bound its length (extensions are otherwise free). */
    if (++b->line_ > VG_HTTP_MAX_CHUNK_LINE)
        return body_fail(b, VG_HTTP_ERR_CHUNK);
    return VG_OK;
trailer:
    if (++b->trailer_ > VG_HTTP_MAX_TRAILER)
        return body_fail(b, VG_HTTP_ERR_TRAILER_TOO_LARGE);
    return VG_OK;
}

int vg_http_body_feed(vg_http_body_t *b, const uint8_t *in, size_t len, size_t *used, uint8_t *out, size_t *out_len)
{
    size_t i = 0, o = 0;
    int r = VG_OK;

    *used = *out_len = 0;
    if (b->state_ == B_FAILED)
        return errs[b->error].code;
    while (b->state_ != B_DONE && i < len) {
        if (b->state_ == B_LENGTH || b->state_ == B_DATA) {
            size_t n = len - i;
            if (n > b->remaining_)
                n = (size_t)b->remaining_;
            /* memmove: out may overlap in (decoding in place). */
            if (out + o != in + i)
                memmove(out + o, in + i, n);
            o += n;
            i += n;
            b->remaining_ -= n;
            if (!b->remaining_)
                b->state_ = b->state_ == B_LENGTH ? B_DONE : B_DATA_CR;
            continue;
        }
        r = chunk_byte(b, in[i++]);
        if (r != VG_OK)
            break;
    }
    *used = i;
    *out_len = o;
    if (r != VG_OK)
        return r;
    return b->state_ == B_DONE ? VG_OK : VG_AGAIN;
}

/* ---- responses --------------------------------------------------------- */

const char *vg_http_reason(int status)
{
    static const struct {
        int status;
        const char *phrase;
    } reasons[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {417, "Expectation Failed"},
        {422, "Unprocessable Content"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {507, "Insufficient Storage"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (reasons[i].status == status)
            return reasons[i].phrase;
    }
    return "Unknown";
}

/* An append-only writer that remembers whether anything did not fit. */
typedef struct {
    char *b;
    size_t cap, n;
    bool over;
} wr_t;

static void put(wr_t *w, const void *s, size_t len)
{
    if (w->over || w->cap - w->n < len) {
        w->over = true;
        return;
    }
    if (len)
        memcpy(w->b + w->n, s, len);
    w->n += len;
}

static void put_str(wr_t *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_u64(wr_t *w, uint64_t v)
{
    char t[24];
    int k = snprintf(t, sizeof(t), "%" PRIu64, v);
    put(w, t, (size_t)k);
}

/* Are the extra header lines complete "token: field-chars\r\n" lines? A
 * caller formatting a value from user input must not be able to end the
 * head early or add fields by smuggling a CR or LF into it. */
static bool extra_lines_ok(const char *s)
{
    size_t i = 0;

    while (s[i]) {
        size_t start = i;
        while (is_tchar((unsigned char)s[i]))
            i++;
        if (i == start || s[i] != ':')
            return false;
        i++;
        while (s[i] && s[i] != '\r') {
            if (!is_field_char((unsigned char)s[i]))
                return false;
            i++;
        }
        if (s[i] != '\r' || s[i + 1] != '\n')
            return false;
        i += 2;
    }
    return true;
}

static int write_head(wr_t *w, int status, const char *content_type, uint64_t content_length, const char *extra_headers,
                      bool keep_alive)
{
    if (status < 100 || status > 599)
        return VG_EINVAL;
    if (content_type) {
        for (const char *c = content_type; *c; c++) {
            if (!is_field_char((unsigned char)*c))
                return VG_EINVAL;
        }
    }
    if (extra_headers && !extra_lines_ok(extra_headers))
        return VG_EINVAL;
    char line[64];
    int k = snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    put(w, line, (size_t)k);
    put_str(w, vg_http_reason(status));
    put(w, "\r\n", 2);
    if (content_type) {
        put_str(w, "Content-Type: ");
        put_str(w, content_type);
        put(w, "\r\n", 2);
    }
    /* §8.6 of RFC 9110: no Content-Length in 1xx and 204 responses; a 1xx
     * is not the final response, so it says nothing about the connection. */
    if (status >= 200 && status != 204) {
        put_str(w, "Content-Length: ");
        put_u64(w, content_length);
        put(w, "\r\n", 2);
    }
    if (status >= 200)
        put_str(w, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    if (extra_headers)
        put_str(w, extra_headers);
    put(w, "\r\n", 2);
    return VG_OK;
}

int vg_http_response_head(char *buf, size_t cap, int status, const char *content_type, uint64_t content_length,
                          const char *extra_headers, bool keep_alive)
{
    wr_t w = {buf, cap, 0, false};
    int r = write_head(&w, status, content_type, content_length, extra_headers, keep_alive);

    if (r != VG_OK)
        return r;
    if (w.over)
        return VG_ENOSPC;
    return w.n > INT_MAX ? VG_EINVAL : (int)w.n;
}

int vg_http_response(char *buf, size_t cap, int status, const char *content_type, const void *body, size_t body_len,
                     const char *extra_headers, bool keep_alive)
{
    wr_t w = {buf, cap, 0, false};

    if ((status < 200 || status == 204) && body_len)
        return VG_EINVAL;
    int r = write_head(&w, status, content_type, body_len, extra_headers, keep_alive);
    if (r != VG_OK)
        return r;
    put(&w, body, body_len);
    if (w.over)
        return VG_ENOSPC;
    return w.n > INT_MAX ? VG_EINVAL : (int)w.n;
}

int vg_http_error_response(char *buf, size_t cap, vg_http_error_t e)
{
    char body[64];
    int status = vg_http_error_status(e);

    if (!status)
        return VG_EINVAL;
    int k = snprintf(body, sizeof(body), "%s\n", vg_http_error_name(e));
    return vg_http_response(buf, cap, status, "text/plain", body, (size_t)k, NULL, false);
}

void vg_http_date(char out[VG_HTTP_DATE_LEN + 1], int64_t unix_seconds)
{
    /* Fixed English names: strftime's %a and %b follow the locale. */
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)unix_seconds;
    struct tm tm;

    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    snprintf(out, VG_HTTP_DATE_LEN + 1, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
