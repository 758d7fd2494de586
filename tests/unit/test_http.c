/* test_http.c — unit tests for the HTTP/1.1 parser and writer (src/net/http.c).
 *
 * Requests are written out literally, one rule per test, and most are also
 * fed one byte at a time, because the parser keeps state between calls and
 * a resumption bug would not show with whole buffers. Section numbers are
 * RFC 9112 unless marked RFC 9110. */
#include "core/err.h"
#include "net/http.h"
#include "vt.h"

#include <stdint.h>
#include <stdlib.h>

#define MAXH 16

static vg_http_header_t hdrs[MAXH];
static vg_http_parser_t P;
static vg_http_request_t R;

static void init(size_t max_head, uint64_t max_body)
{
    vg_http_parser_init(&P, hdrs, MAXH, max_head, max_body);
}

/* Parses the whole string at once. */
static int parse(const char *s)
{
    init(VG_HTTP_DEFAULT_MAX_HEAD, 1 << 20);
    return vg_http_parse_head(&P, s, strlen(s), &R);
}

/* Parses s fed one byte at a time from a heap buffer sized exactly to what
 * has arrived (so ASan sees any read past it). Every call before the last
 * must say VG_AGAIN, unless the parser refuses early, which *early_at
 * reports (the number of bytes it had seen; 0 when it refused at the end). */
static int parse_bytewise(const char *s, size_t *early_at, char **keep)
{
    size_t n = strlen(s);
    int r = VG_AGAIN;
    char *b = NULL;

    init(VG_HTTP_DEFAULT_MAX_HEAD, 1 << 20);
    *early_at = 0;
    for (size_t k = 1; k <= n; k++) {
        free(b);
        b = malloc(k);
        memcpy(b, s, k);
        r = vg_http_parse_head(&P, b, k, &R);
        if (r != VG_AGAIN) {
            if (k < n)
                *early_at = k;
            break;
        }
    }
    if (keep)
        *keep = b;
    else
        free(b);
    return r;
}

static bool span_is(vg_http_span_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* Expects s to be refused with error e, both whole and byte by byte. */
static void expect_err(const char *s, vg_http_error_t e)
{
    size_t at;
    int r = parse(s);
    VT_CHECK(r < 0 && r != VG_AGAIN);
    VT_EQ_INT(P.error, e);
    r = parse_bytewise(s, &at, NULL);
    VT_CHECK(r < 0 && r != VG_AGAIN);
    VT_EQ_INT(P.error, e);
    if (P.error != e)
        printf("  (input: %s)\n", s);
}

#define REQ(extra) "GET / HTTP/1.1\r\nHost: h\r\n" extra "\r\n"

/* ---- request line ------------------------------------------------------ */

static void test_simple_get(void)
{
    const char *s = "GET /topics/a%2Fb?qos=1&x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n";
    VT_REQUIRE(parse(s) == VG_OK);
    VT_EQ_INT(R.method, VG_HTTP_GET);
    VT_CHECK(span_is(R.method_name, "GET"));
    VT_CHECK(span_is(R.target, "/topics/a%2Fb?qos=1&x"));
    VT_CHECK(span_is(R.path, "/topics/a%2Fb"));
    VT_CHECK(span_is(R.query, "qos=1&x"));
    VT_EQ_INT(R.version_minor, 1);
    VT_EQ_INT(R.nheaders, 2);
    VT_CHECK(span_is(R.headers[0].name, "Host") && span_is(R.headers[0].value, "example.com"));
    VT_CHECK(span_is(R.headers[1].name, "User-Agent") && span_is(R.headers[1].value, "t"));
    VT_EQ_INT(R.head_len, strlen(s));
    VT_EQ_INT(R.framing, VG_HTTP_BODY_NONE);
    VT_CHECK(R.keep_alive);
    VT_CHECK(!R.expect_continue);
    VT_EQ_INT(P.error, VG_HTTP_ERR_NONE);
}

static void test_bytewise_same_result(void)
{
    const char *s = "POST /topics/t?qos=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                    "Content-Length: 2\r\n\r\n{}";
    size_t at;
    char *b;
    int r = parse_bytewise(s, &at, &b);
    /* The head is complete before the body: VG_OK two bytes early. */
    VT_EQ_INT(r, VG_OK);
    VT_EQ_INT(at, strlen(s) - 2);
    VT_EQ_INT(R.head_len, strlen(s) - 2);
    VT_EQ_INT(R.method, VG_HTTP_POST);
    VT_CHECK(span_is(R.path, "/topics/t") && span_is(R.query, "qos=1"));
    VT_EQ_INT(R.framing, VG_HTTP_BODY_LENGTH);
    VT_EQ_INT(R.content_length, 2);
    VT_EQ_INT(R.nheaders, 3);
    VT_CHECK(R.headers[2].value.p >= b && R.headers[2].value.p + R.headers[2].value.len <= b + R.head_len);
    free(b);
}

static void test_methods(void)
{
    static const struct {
        const char *m;
        vg_http_method_t e;
    } t[] = {{"GET", VG_HTTP_GET},       {"HEAD", VG_HTTP_HEAD},       {"POST", VG_HTTP_POST},   {"PUT", VG_HTTP_PUT},
             {"DELETE", VG_HTTP_DELETE}, {"OPTIONS", VG_HTTP_OPTIONS}, {"PATCH", VG_HTTP_PATCH}, {"get", VG_HTTP_OTHER},
             {"BREW", VG_HTTP_OTHER},    {"M-SEARCH", VG_HTTP_OTHER}};
    char buf[128];
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: h\r\n\r\n", t[i].m);
        VT_REQUIRE(parse(buf) == VG_OK);
        VT_EQ_INT(R.method, t[i].e);
        VT_CHECK(span_is(R.method_name, t[i].m));
    }
}

static void test_request_line_errors(void)
{
    expect_err("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_REQUEST_LINE);
    expect_err(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_REQUEST_LINE);
    expect_err("GET /\r\nHost: h\r\n\r\n", VG_HTTP_ERR_REQUEST_LINE);
    expect_err("GET\r\n\r\n", VG_HTTP_ERR_REQUEST_LINE);
    expect_err("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION);
    expect_err("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION);
    expect_err("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_METHOD);
    expect_err("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_METHOD);
    expect_err("G\x80T / HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_METHOD);
}

static void test_early_refusal_of_non_http(void)
{
    /* A TLS ClientHello on the plain port: refused at its first byte, long
     * before max_head bytes have piled up. */
    const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    init(VG_HTTP_DEFAULT_MAX_HEAD, 0);
    VT_EQ_INT(vg_http_parse_head(&P, tls, 1, &R), VG_EMALFORMED);
    VT_EQ_INT(P.error, VG_HTTP_ERR_METHOD);
    /* A method still arriving is fine; a bad byte after good ones is not. */
    init(VG_HTTP_DEFAULT_MAX_HEAD, 0);
    VT_EQ_INT(vg_http_parse_head(&P, "PO", 2, &R), VG_AGAIN);
    VT_EQ_INT(vg_http_parse_head(&P, "POS", 3, &R), VG_AGAIN);
    VT_EQ_INT(vg_http_parse_head(&P, "POS{", 4, &R), VG_EMALFORMED);
    VT_EQ_INT(P.error, VG_HTTP_ERR_METHOD);
    /* A bare CR in the method is judged once the next byte is in. */
    init(VG_HTTP_DEFAULT_MAX_HEAD, 0);
    VT_EQ_INT(vg_http_parse_head(&P, "GET\r", 4, &R), VG_AGAIN);
    VT_EQ_INT(vg_http_parse_head(&P, "GET\rX", 5, &R), VG_EMALFORMED);
    VT_EQ_INT(P.error, VG_HTTP_ERR_LINE_ENDING);
    /* The whole request line is checked as soon as it ends. */
    init(VG_HTTP_DEFAULT_MAX_HEAD, 0);
    const char *s = "GET / HTTP/2.0\r\n";
    VT_EQ_INT(vg_http_parse_head(&P, s, strlen(s), &R), VG_EPROTO);
    VT_EQ_INT(P.error, VG_HTTP_ERR_VERSION_UNSUP);
}

static void test_versions(void)
{
    VT_REQUIRE(parse("GET / HTTP/1.0\r\n\r\n") == VG_OK);
    VT_EQ_INT(R.version_minor, 0);
    VT_CHECK(!R.keep_alive); /* 1.0 closes by default */
    expect_err("GET / HTTP/1.2\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION_UNSUP);
    expect_err("GET / HTTP/2.0\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION_UNSUP);
    expect_err("GET / HTTP/0.9\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION_UNSUP);
    expect_err("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", VG_HTTP_ERR_VERSION_UNSUP);
    expect_err("GET / HTTP/1.10\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION);
    expect_err("GET / http/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION);
    expect_err("GET / HTTX/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION);
    expect_err("GET / HTTP/1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION);
    expect_err("GET / HTTP/a.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_VERSION);
    VT_EQ_INT(vg_http_error_status(VG_HTTP_ERR_VERSION_UNSUP), 505);
}

static void test_targets(void)
{
    VT_REQUIRE(parse("GET /a/b HTTP/1.1\r\nHost: h\r\n\r\n") == VG_OK);
    VT_CHECK(span_is(R.path, "/a/b") && R.query.len == 0);
    VT_REQUIRE(parse("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n") == VG_OK);
    VT_CHECK(span_is(R.path, "/a") && R.query.len == 0);
    VT_REQUIRE(parse("GET /a?b?c=d HTTP/1.1\r\nHost: h\r\n\r\n") == VG_OK);
    VT_CHECK(span_is(R.path, "/a") && span_is(R.query, "b?c=d"));
    /* Absolute form (§3.2.2: a server MUST accept it). */
    VT_REQUIRE(parse("GET http://example.com:8080/x/y?z=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n") == VG_OK);
    VT_CHECK(span_is(R.path, "/x/y") && span_is(R.query, "z=1"));
    VT_REQUIRE(parse("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n") == VG_OK);
    VT_CHECK(span_is(R.path, "/") && R.query.len == 0);
    VT_REQUIRE(parse("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n") == VG_OK);
    VT_CHECK(span_is(R.path, "/") && span_is(R.query, "q"));
    /* Asterisk form, for OPTIONS only. */
    VT_REQUIRE(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n") == VG_OK);
    VT_CHECK(span_is(R.path, "*"));
    expect_err("GET * HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    /* Authority form (CONNECT) and relative paths. */
    expect_err("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    /* Characters and escapes. */
    expect_err("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET /%4 HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    expect_err("GET /% HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_TARGET);
    VT_REQUIRE(parse("GET /%4a%4A HTTP/1.1\r\nHost: h\r\n\r\n") == VG_OK);
}

/* ---- line endings and fields ------------------------------------------- */

static void test_line_endings(void)
{
    expect_err("GET / HTTP/1.1\nHost: h\r\n\r\n", VG_HTTP_ERR_LINE_ENDING);
    expect_err("GET / HTTP/1.1\r\nHost: h\n\r\n", VG_HTTP_ERR_LINE_ENDING);
    expect_err("GET / HTTP/1.1\r\nHost: h\r\n\n", VG_HTTP_ERR_LINE_ENDING);
    expect_err("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_LINE_ENDING);
    expect_err("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", VG_HTTP_ERR_LINE_ENDING);
    expect_err("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n", VG_HTTP_ERR_LINE_ENDING);
    expect_err("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", VG_HTTP_ERR_LINE_ENDING);
    expect_err("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", VG_HTTP_ERR_LINE_ENDING);
}

static void test_leading_empty_lines(void)
{
    const char *s = "\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t at;
    VT_REQUIRE(parse(s) == VG_OK);
    VT_CHECK(span_is(R.path, "/x"));
    VT_EQ_INT(R.head_len, strlen(s));
    char *b;
    VT_EQ_INT(parse_bytewise(s, &at, &b), VG_OK);
    VT_EQ_INT(at, 0);
    VT_CHECK(span_is(R.path, "/x"));
    free(b);
}

static void test_fields(void)
{
    VT_REQUIRE(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A:   spaced  value \t\r\nX-Empty:\r\nX-B:\tt\r\n"
                     "X-Obs: caf\xc3\xa9\r\n\r\n") == VG_OK);
    VT_EQ_INT(R.nheaders, 5);
    VT_CHECK(span_is(R.headers[1].value, "spaced  value"));
    VT_CHECK(R.headers[2].value.len == 0);
    VT_CHECK(span_is(R.headers[3].value, "t"));
    VT_CHECK(span_is(R.headers[4].value, "caf\xc3\xa9"));
    const vg_http_header_t *h = vg_http_header_find(&R, "x-a");
    VT_CHECK(h == &R.headers[1]);
    VT_CHECK(vg_http_header_find(&R, "X-EMPTY") == &R.headers[2]);
    VT_CHECK(vg_http_header_find(&R, "X-") == NULL);
    VT_CHECK(vg_http_header_find(&R, "X-Emptyy") == NULL);
    VT_EQ_INT(vg_http_header_count(&R, "x-b"), 1);
    VT_EQ_INT(vg_http_header_count(&R, "nope"), 0);
}

static void test_field_errors(void)
{
    expect_err(REQ("X-A: a\r\n b\r\n"), VG_HTTP_ERR_OBS_FOLD);
    expect_err(REQ("X-A: a\r\n\tb\r\n"), VG_HTTP_ERR_OBS_FOLD);
    expect_err("GET / HTTP/1.1\r\n Host: h\r\n\r\n", VG_HTTP_ERR_OBS_FOLD);
    expect_err(REQ("X-A : a\r\n"), VG_HTTP_ERR_SPACE_BEFORE_COLON);
    expect_err(REQ("X-A\t: a\r\n"), VG_HTTP_ERR_SPACE_BEFORE_COLON);
    expect_err(REQ("X A: a\r\n"), VG_HTTP_ERR_HEADER_NAME);
    expect_err(REQ(": a\r\n"), VG_HTTP_ERR_HEADER_NAME);
    expect_err(REQ("NoColon\r\n"), VG_HTTP_ERR_HEADER_NAME);
    expect_err(REQ("X(A): a\r\n"), VG_HTTP_ERR_HEADER_NAME);
    expect_err(REQ("X\x80: a\r\n"), VG_HTTP_ERR_HEADER_NAME);
    expect_err(REQ("X-A: a\x01b\r\n"), VG_HTTP_ERR_HEADER_VALUE);
    expect_err(REQ("X-A: a\x7f\r\n"), VG_HTTP_ERR_HEADER_VALUE);
    expect_err(REQ("X-A: \x1b[31m\r\n"), VG_HTTP_ERR_HEADER_VALUE);
    /* NUL inside a value (so the string helpers cannot be used here). */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
    init(VG_HTTP_DEFAULT_MAX_HEAD, 0);
    VT_EQ_INT(vg_http_parse_head(&P, nul, sizeof(nul) - 1, &R), VG_EMALFORMED);
    VT_EQ_INT(P.error, VG_HTTP_ERR_HEADER_VALUE);
}

static void test_host_rules(void)
{
    expect_err("GET / HTTP/1.1\r\n\r\n", VG_HTTP_ERR_HOST);
    expect_err("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", VG_HTTP_ERR_HOST);
    expect_err("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", VG_HTTP_ERR_HOST);
    VT_CHECK(parse("GET / HTTP/1.0\r\n\r\n") == VG_OK);
    VT_CHECK(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n") == VG_OK); /* empty is allowed (§3.2) */
}

/* ---- limits ------------------------------------------------------------ */

static void test_header_count_limit(void)
{
    char buf[2048];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < MAXH; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: v\r\n", i);
    snprintf(buf + n, sizeof(buf) - n, "\r\n");
    VT_REQUIRE(parse(buf) == VG_OK); /* exactly MAXH */
    VT_EQ_INT(R.nheaders, MAXH);
    snprintf(buf + n, sizeof(buf) - n, "X-Last: v\r\n\r\n");
    expect_err(buf, VG_HTTP_ERR_TOO_MANY_HEADERS);
    /* Refused when the extra line ends, not at the end of the head. */
    size_t at;
    VT_EQ_INT(parse_bytewise(buf, &at, NULL), VG_ETOOBIG);
    VT_EQ_INT(at, strlen(buf) - 2);
    /* A parser without a header array refuses any field. */
    vg_http_parser_init(&P, NULL, 8, 1024, 0);
    const char *s = "GET / HTTP/1.0\r\nA: b\r\n\r\n";
    VT_EQ_INT(vg_http_parse_head(&P, s, strlen(s), &R), VG_ETOOBIG);
    s = "GET / HTTP/1.0\r\n\r\n";
    VT_EQ_INT(vg_http_parse_head(&P, s, strlen(s), &R), VG_OK);
}

static void test_head_size_limit(void)
{
    char buf[512];
    /* A head of exactly 100 bytes passes max_head 100, not 99. */
    const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    size_t fill = 100 - strlen(pre) - 4;
    snprintf(buf, sizeof(buf), "%s%.*s\r\n\r\n", pre, (int)fill,
             "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
    VT_REQUIRE(strlen(buf) == 100);
    init(100, 0);
    VT_EQ_INT(vg_http_parse_head(&P, buf, 100, &R), VG_OK);
    init(99, 0);
    VT_EQ_INT(vg_http_parse_head(&P, buf, 100, &R), VG_ETOOBIG);
    VT_EQ_INT(P.error, VG_HTTP_ERR_HEAD_TOO_LARGE);
    VT_EQ_INT(vg_http_error_status(P.error), 431);
    /* Refused as soon as the buffer exceeds the limit without an end. */
    init(60, 0);
    VT_EQ_INT(vg_http_parse_head(&P, buf, 60, &R), VG_AGAIN);
    VT_EQ_INT(vg_http_parse_head(&P, buf, 61, &R), VG_ETOOBIG);
    VT_EQ_INT(P.error, VG_HTTP_ERR_HEAD_TOO_LARGE);
    /* Bytes after the head (a body, a pipelined request) do not count. */
    char two[256];
    snprintf(two, sizeof(two), "%s%s", "GET / HTTP/1.0\r\n\r\n", "GET /second HTTP/1.0\r\n\r\n");
    init(18, 0);
    VT_EQ_INT(vg_http_parse_head(&P, two, strlen(two), &R), VG_OK);
    VT_EQ_INT(R.head_len, 18);
}

static void test_uri_too_long(void)
{
    char buf[256];
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    init(100, 0);
    VT_EQ_INT(vg_http_parse_head(&P, buf, 100, &R), VG_AGAIN);
    VT_EQ_INT(vg_http_parse_head(&P, buf, 101, &R), VG_ETOOBIG);
    VT_EQ_INT(P.error, VG_HTTP_ERR_URI_TOO_LONG);
    VT_EQ_INT(vg_http_error_status(P.error), 414);
    /* A complete request line over the limit is 414 too. */
    snprintf(buf, sizeof(buf), "GET /%0120d HTTP/1.0\r\n\r\n", 0);
    init(100, 0);
    VT_EQ_INT(vg_http_parse_head(&P, buf, strlen(buf), &R), VG_ETOOBIG);
    VT_EQ_INT(P.error, VG_HTTP_ERR_URI_TOO_LONG);
}

/* ---- framing ----------------------------------------------------------- */

static void test_content_length(void)
{
    VT_REQUIRE(parse(REQ("Content-Length: 42\r\n")) == VG_OK);
    VT_EQ_INT(R.framing, VG_HTTP_BODY_LENGTH);
    VT_EQ_INT(R.content_length, 42);
    VT_REQUIRE(parse(REQ("Content-Length: 0\r\n")) == VG_OK);
    VT_EQ_INT(R.framing, VG_HTTP_BODY_LENGTH);
    VT_EQ_INT(R.content_length, 0);
    VT_REQUIRE(parse(REQ("content-length:  007 \r\n")) == VG_OK);
    VT_EQ_INT(R.content_length, 7);
    /* Identical duplicates are accepted (RFC 9110 §8.6), different ones not. */
    VT_REQUIRE(parse(REQ("Content-Length: 5\r\nContent-Length: 5\r\n")) == VG_OK);
    VT_EQ_INT(R.content_length, 5);
    VT_REQUIRE(parse(REQ("Content-Length: 5\r\nContent-Length: 005\r\n")) == VG_OK);
    expect_err(REQ("Content-Length: 5\r\nContent-Length: 6\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
    expect_err(REQ("Content-Length: 5, 5\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
    expect_err(REQ("Content-Length: +5\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
    expect_err(REQ("Content-Length: -1\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
    expect_err(REQ("Content-Length: 0x10\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
    expect_err(REQ("Content-Length: 1 0\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
    expect_err(REQ("Content-Length:\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
    expect_err(REQ("Content-Length: 1e3\r\n"), VG_HTTP_ERR_CONTENT_LENGTH);
}

static void test_body_limit(void)
{
    const char *s = REQ("Content-Length: 100\r\n");
    init(VG_HTTP_DEFAULT_MAX_HEAD, 100);
    VT_EQ_INT(vg_http_parse_head(&P, s, strlen(s), &R), VG_OK);
    init(VG_HTTP_DEFAULT_MAX_HEAD, 99);
    VT_EQ_INT(vg_http_parse_head(&P, s, strlen(s), &R), VG_ETOOBIG);
    VT_EQ_INT(P.error, VG_HTTP_ERR_BODY_TOO_LARGE);
    VT_EQ_INT(vg_http_error_status(P.error), 413);
    /* A length beyond 64 bits saturates and is refused as too large. */
    s = REQ("Content-Length: 99999999999999999999999999999\r\n");
    init(VG_HTTP_DEFAULT_MAX_HEAD, UINT64_MAX - 1);
    VT_EQ_INT(vg_http_parse_head(&P, s, strlen(s), &R), VG_ETOOBIG);
    VT_EQ_INT(P.error, VG_HTTP_ERR_BODY_TOO_LARGE);
}

static void test_transfer_encoding(void)
{
    VT_REQUIRE(parse(REQ("Transfer-Encoding: chunked\r\n")) == VG_OK);
    VT_EQ_INT(R.framing, VG_HTTP_BODY_CHUNKED);
    VT_REQUIRE(parse(REQ("Transfer-Encoding: Chunked\r\n")) == VG_OK);
    VT_EQ_INT(R.framing, VG_HTTP_BODY_CHUNKED);
    VT_REQUIRE(parse(REQ("Transfer-Encoding: ,chunked, \r\n")) == VG_OK);
    /* Smuggling defences. */
    expect_err(REQ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), VG_HTTP_ERR_CL_AND_TE);
    expect_err(REQ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), VG_HTTP_ERR_CL_AND_TE);
    expect_err(REQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err(REQ("Transfer-Encoding: chunked, chunked\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err(REQ("Transfer-Encoding: chunked, gzip\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err(REQ("Transfer-Encoding: gzip\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err(REQ("Transfer-Encoding: identity\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err(REQ("Transfer-Encoding:\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err(REQ("Transfer-Encoding: xchunked\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err(REQ("Transfer-Encoding: chunked;q=1\r\n"), VG_HTTP_ERR_TRANSFER_ENCODING);
    expect_err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", VG_HTTP_ERR_TRANSFER_ENCODING);
    /* Known last, unknown before: 501 (§6.1). */
    expect_err(REQ("Transfer-Encoding: gzip, chunked\r\n"), VG_HTTP_ERR_TE_UNKNOWN);
    expect_err(REQ("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), VG_HTTP_ERR_TE_UNKNOWN);
    VT_EQ_INT(vg_http_error_status(VG_HTTP_ERR_TE_UNKNOWN), 501);
}

static void test_keep_alive(void)
{
    VT_REQUIRE(parse(REQ("")) == VG_OK);
    VT_CHECK(R.keep_alive);
    VT_REQUIRE(parse(REQ("Connection: close\r\n")) == VG_OK);
    VT_CHECK(!R.keep_alive);
    VT_REQUIRE(parse(REQ("Connection: Keep-Alive, CLOSE\r\n")) == VG_OK);
    VT_CHECK(!R.keep_alive);
    VT_REQUIRE(parse(REQ("Connection: keep-alive\r\nConnection: close\r\n")) == VG_OK);
    VT_CHECK(!R.keep_alive);
    VT_REQUIRE(parse(REQ("Connection: closed\r\n")) == VG_OK);
    VT_CHECK(R.keep_alive);
    VT_REQUIRE(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == VG_OK);
    VT_CHECK(R.keep_alive);
    VT_REQUIRE(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n") == VG_OK);
    VT_CHECK(!R.keep_alive);
    VT_REQUIRE(parse("GET / HTTP/1.0\r\n\r\n") == VG_OK);
    VT_CHECK(!R.keep_alive);
}

static void test_expect_continue(void)
{
    VT_REQUIRE(parse(REQ("Expect: 100-Continue\r\nContent-Length: 3\r\n")) == VG_OK);
    VT_CHECK(R.expect_continue);
    VT_REQUIRE(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n") == VG_OK);
    VT_CHECK(!R.expect_continue);
    VT_REQUIRE(parse(REQ("Expect: something\r\n")) == VG_OK);
    VT_CHECK(!R.expect_continue);
}

static void test_tokens(void)
{
    VT_REQUIRE(parse(REQ("Connection: keep-alive, Upgrade\r\nX: 1\r\nconnection: ,, te ,\r\n")) == VG_OK);
    VT_CHECK(vg_http_has_token(&R, "Connection", "upgrade"));
    VT_CHECK(vg_http_has_token(&R, "connection", "KEEP-ALIVE"));
    VT_CHECK(vg_http_has_token(&R, "connection", "te"));
    VT_CHECK(!vg_http_has_token(&R, "connection", "keep"));
    VT_CHECK(!vg_http_has_token(&R, "connection", ""));
    VT_CHECK(!vg_http_has_token(&R, "upgrade", "websocket"));
    vg_http_list_iter_t it = {0, 0};
    vg_http_span_t el;
    const char *want[] = {"keep-alive", "Upgrade", "te"};
    size_t n = 0;
    while (vg_http_list_next(&R, "connection", &it, &el)) {
        VT_REQUIRE(n < 3);
        VT_CHECK(span_is(el, want[n]));
        n++;
    }
    VT_EQ_INT(n, 3);
    VT_CHECK(!vg_http_list_next(&R, "connection", &it, &el)); /* stays at the end */
}

/* ---- pipelining and bodies --------------------------------------------- */

/* Decodes a whole body at once (in place) and returns VG_OK/error. */
static int body_all(const vg_http_request_t *req, uint64_t max_body, uint8_t *buf, size_t len, size_t *used,
                    size_t *out_len, vg_http_body_t *b)
{
    vg_http_body_init(b, req, max_body);
    return vg_http_body_feed(b, buf, len, used, buf, out_len);
}

static void test_pipelined(void)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s%s%s", "POST /topics/a?qos=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
             "POST /topics/b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
             "GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    size_t len = strlen(buf), off = 0, used, made;
    vg_http_body_t b;
    uint8_t *u = (uint8_t *)buf;

    init(VG_HTTP_DEFAULT_MAX_HEAD, 1024);
    VT_REQUIRE(vg_http_parse_head(&P, buf, len, &R) == VG_OK);
    VT_CHECK(span_is(R.path, "/topics/a"));
    off = R.head_len;
    VT_REQUIRE(body_all(&R, 1024, u + off, len - off, &used, &made, &b) == VG_OK);
    VT_CHECK(used == 5 && made == 5 && memcmp(u + off, "hello", 5) == 0);
    off += used;

    VT_REQUIRE(vg_http_parse_head(&P, buf + off, len - off, &R) == VG_OK);
    VT_CHECK(span_is(R.path, "/topics/b"));
    VT_EQ_INT(R.framing, VG_HTTP_BODY_CHUNKED);
    off += R.head_len;
    VT_REQUIRE(body_all(&R, 1024, u + off, len - off, &used, &made, &b) == VG_OK);
    VT_CHECK(made == 3 && memcmp(u + off, "abc", 3) == 0);
    VT_EQ_INT(used, strlen("3\r\nabc\r\n0\r\n\r\n"));
    off += used;

    VT_REQUIRE(vg_http_parse_head(&P, buf + off, len - off, &R) == VG_OK);
    VT_CHECK(span_is(R.path, "/last"));
    VT_CHECK(!R.keep_alive);
    VT_EQ_INT(off + R.head_len, len);
    /* No body: complete at once, nothing used. */
    VT_EQ_INT(body_all(&R, 1024, u + len, 0, &used, &made, &b), VG_OK);
    VT_CHECK(used == 0 && made == 0);
}

static void test_content_length_body_bytewise(void)
{
    vg_http_request_t req = {.framing = VG_HTTP_BODY_LENGTH, .content_length = 4};
    vg_http_body_t b;
    uint8_t out[8];
    size_t used, made, total = 0;
    const uint8_t *src = (const uint8_t *)"dataNEXT";

    vg_http_body_init(&b, &req, 100);
    for (size_t i = 0; i < 3; i++) {
        VT_EQ_INT(vg_http_body_feed(&b, src + i, 1, &used, out + total, &made), VG_AGAIN);
        VT_CHECK(used == 1 && made == 1);
        total += made;
    }
    /* The last body byte arrives with the next request behind it. */
    VT_EQ_INT(vg_http_body_feed(&b, src + 3, 5, &used, out + total, &made), VG_OK);
    VT_CHECK(used == 1 && made == 1);
    total += made;
    VT_CHECK(total == 4 && memcmp(out, "data", 4) == 0);
    VT_EQ_INT(vg_http_body_feed(&b, src + 4, 4, &used, out, &made), VG_OK);
    VT_CHECK(used == 0 && made == 0);
}

static const char chunked_body[] = "4\r\nWiki\r\n"
                                   "5;name=value;flag\r\npedia\r\n"
                                   "E \t; ext=\"q;s\"\r\n in\r\n\r\nchunks.\r\n"
                                   "00000\r\n"
                                   "Trailer-One: x\r\nT2:\r\n"
                                   "\r\n";
static const char chunked_decoded[] = "Wikipedia in\r\n\r\nchunks.";

/* Feeds body bytes split at position `at` into two reads, decoding in
 * place as the server would (out = end of the body so far). */
static int feed_split(const char *src, size_t len, size_t at, size_t *total_used, uint8_t *buf, size_t *body_len)
{
    vg_http_request_t req = {.framing = VG_HTTP_BODY_CHUNKED};
    vg_http_body_t b;
    size_t used, made;
    int r;

    memcpy(buf, src, len);
    vg_http_body_init(&b, &req, 1 << 20);
    *body_len = 0;
    *total_used = 0;
    r = vg_http_body_feed(&b, buf, at, &used, buf, &made);
    *body_len += made;
    *total_used += used;
    if (r != VG_AGAIN)
        return r == VG_OK ? 100 : r; /* finished early: not expected here */
    r = vg_http_body_feed(&b, buf + at, len - at, &used, buf + *body_len, &made);
    *body_len += made;
    *total_used += used;
    return r;
}

static void test_chunked_every_split(void)
{
    size_t len = sizeof(chunked_body) - 1, dlen = sizeof(chunked_decoded) - 1;
    uint8_t buf[256];

    for (size_t at = 0; at < len; at++) {
        size_t used, body_len;
        int r = feed_split(chunked_body, len, at, &used, buf, &body_len);
        VT_EQ_INT(r, VG_OK);
        VT_EQ_INT(used, len);
        VT_EQ_INT(body_len, dlen);
        VT_CHECK(memcmp(buf, chunked_decoded, dlen) == 0);
        if (r != VG_OK || body_len != dlen) {
            printf("  (split at %zu)\n", at);
            break;
        }
    }
}

static void test_chunked_bytewise(void)
{
    size_t len = sizeof(chunked_body) - 1;
    vg_http_request_t req = {.framing = VG_HTTP_BODY_CHUNKED};
    vg_http_body_t b;
    uint8_t out[64];
    size_t total = 0, used, made;
    int r = VG_AGAIN;

    vg_http_body_init(&b, &req, 1 << 20);
    for (size_t i = 0; i < len; i++) {
        uint8_t byte = (uint8_t)chunked_body[i];
        r = vg_http_body_feed(&b, &byte, 1, &used, out + total, &made);
        VT_EQ_INT(used, 1);
        total += made;
        if (i + 1 < len)
            VT_EQ_INT(r, VG_AGAIN);
    }
    VT_EQ_INT(r, VG_OK);
    VT_CHECK(total == sizeof(chunked_decoded) - 1 && memcmp(out, chunked_decoded, total) == 0);
}

/* Decodes src as a whole chunked body; returns the result and b.error. */
static int chunked(const char *src, uint64_t max_body, vg_http_error_t *err)
{
    vg_http_request_t req = {.framing = VG_HTTP_BODY_CHUNKED};
    vg_http_body_t b;
    static uint8_t buf[4 * VG_HTTP_MAX_TRAILER];
    size_t used, made, len = strlen(src);

    if (len > sizeof(buf))
        return VG_EINVAL;
    memcpy(buf, src, len);
    int r = body_all(&req, max_body, buf, len, &used, &made, &b);
    *err = b.error;
    return r;
}

static void test_chunked_errors(void)
{
    static const char *bad[] = {
        "x\r\n",                    /* not hex */
        "\r\n",                     /* no size */
        "-1\r\n",                   /* sign */
        "5 \r\nhello\r\n0\r\n\r\n", /* BWS without an extension */
        "5\nhello\r\n0\r\n\r\n",    /* bare LF */
        "5\r\nhelloX\r\n",          /* data longer than its size */
        "5\r\nhello\n0\r\n\r\n",    /* no CR after data */
        "5\r\nhello\r0\r\n\r\n",    /* no LF after data */
        "5;a\x01\r\n",              /* control char in an extension */
        "0\r\n x: y\r\n\r\n",       /* obs-fold in the trailer */
        "0\r\nx y: z\r\n\r\n",      /* bad trailer name */
        "0\r\nx: \x7f\r\n\r\n",     /* bad trailer value */
        "0\r\nx: y\n\r\n",          /* bare LF in the trailer */
        "0\r\n\rx",                 /* CR not followed by LF at the end */
        "5\rX",                     /* CR not followed by LF after the size */
        "0\r\nx: y\rz",             /* CR not followed by LF after a trailer */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vg_http_error_t e;
        int r = chunked(bad[i], 1 << 20, &e);
        VT_EQ_INT(r, VG_EMALFORMED);
        VT_EQ_INT(e, VG_HTTP_ERR_CHUNK);
        if (r != VG_EMALFORMED)
            printf("  (case %zu)\n", i);
    }
    /* A size line may not grow without bound. */
    char big[VG_HTTP_MAX_CHUNK_LINE + 16];
    memset(big, '0', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    vg_http_error_t e;
    VT_EQ_INT(chunked(big, 1 << 20, &e), VG_EMALFORMED);
    VT_EQ_INT(e, VG_HTTP_ERR_CHUNK);
    /* Incomplete bodies ask for more. */
    VT_EQ_INT(chunked("5\r\nhel", 100, &e), VG_AGAIN);
    VT_EQ_INT(chunked("0\r\n", 100, &e), VG_AGAIN);
    VT_EQ_INT(chunked("0\r\nT: x\r\n", 100, &e), VG_AGAIN);
}

static void test_chunked_limits(void)
{
    vg_http_error_t e;
    VT_EQ_INT(chunked("a\r\n0123456789\r\n0\r\n\r\n", 10, &e), VG_OK);
    VT_EQ_INT(chunked("a\r\n0123456789\r\n1\r\n", 10, &e), VG_ETOOBIG);
    VT_EQ_INT(e, VG_HTTP_ERR_BODY_TOO_LARGE);
    /* Refused from the size alone, before any data. */
    VT_EQ_INT(chunked("b", 10, &e), VG_ETOOBIG);
    VT_EQ_INT(chunked("ffffffffffffffffff", UINT64_MAX, &e), VG_ETOOBIG);
    VT_EQ_INT(chunked("0000000000000000000000000000001\r\nx\r\n0\r\n\r\n", 10, &e), VG_OK);
    /* The trailer section is bounded too. */
    char big[VG_HTTP_MAX_TRAILER + 64];
    size_t n = (size_t)snprintf(big, sizeof(big), "0\r\nX: ");
    memset(big + n, 'v', sizeof(big) - n - 1);
    big[sizeof(big) - 1] = 0;
    vg_http_request_t req = {.framing = VG_HTTP_BODY_CHUNKED};
    vg_http_body_t b;
    size_t used, made;
    vg_http_body_init(&b, &req, 100);
    VT_EQ_INT(vg_http_body_feed(&b, (uint8_t *)big, strlen(big), &used, (uint8_t *)big, &made), VG_ETOOBIG);
    VT_EQ_INT(b.error, VG_HTTP_ERR_TRAILER_TOO_LARGE);
    VT_EQ_INT(vg_http_error_status(b.error), 431);
    /* A failed body stays failed. */
    VT_EQ_INT(vg_http_body_feed(&b, (const uint8_t *)"0", 1, &used, (uint8_t *)big, &made), VG_ETOOBIG);
    VT_CHECK(used == 0);
}

/* ---- helpers ----------------------------------------------------------- */

static void test_pct_decode(void)
{
    char out[64];
    size_t n;
    VT_EQ_INT(vg_http_pct_decode("a%2Fb%2fc%20d+e", 15, false, out, sizeof(out), &n), VG_OK);
    VT_CHECK(n == 9 && memcmp(out, "a/b/c d+e", 9) == 0);
    VT_EQ_INT(vg_http_pct_decode("a+b%2B", 6, true, out, sizeof(out), &n), VG_OK);
    VT_CHECK(n == 4 && memcmp(out, "a b+", 4) == 0);
    VT_EQ_INT(vg_http_pct_decode("%C3%A9", 6, false, out, sizeof(out), &n), VG_OK);
    VT_CHECK(n == 2 && memcmp(out, "\xc3\xa9", 2) == 0);
    VT_EQ_INT(vg_http_pct_decode("", 0, false, out, 0, &n), VG_OK);
    VT_EQ_INT(n, 0);
    VT_EQ_INT(vg_http_pct_decode("a%00b", 5, false, out, sizeof(out), &n), VG_EMALFORMED);
    VT_EQ_INT(vg_http_pct_decode("a%0", 3, false, out, sizeof(out), &n), VG_EMALFORMED);
    VT_EQ_INT(vg_http_pct_decode("a%", 2, false, out, sizeof(out), &n), VG_EMALFORMED);
    VT_EQ_INT(vg_http_pct_decode("%g0", 3, false, out, sizeof(out), &n), VG_EMALFORMED);
    VT_EQ_INT(vg_http_pct_decode("%0g", 3, false, out, sizeof(out), &n), VG_EMALFORMED);
    VT_EQ_INT(vg_http_pct_decode("abc", 3, false, out, 2, &n), VG_ENOSPC);
    VT_EQ_INT(vg_http_pct_decode("%41bc", 5, false, out, 3, &n), VG_OK);
    /* In place. */
    char s[] = "/topics/a%2Fb%23";
    VT_EQ_INT(vg_http_pct_decode(s, strlen(s), false, s, sizeof(s), &n), VG_OK);
    VT_CHECK(n == 12 && memcmp(s, "/topics/a/b#", 12) == 0);
}

static void test_query_param(void)
{
    vg_http_span_t v;
    vg_http_span_t q = {"a=1&qos=1&flag&e=&qosx=2&qos=2", 30};
    VT_EQ_INT(vg_http_query_param(q, "qos", &v), VG_OK);
    VT_CHECK(span_is(v, "1"));
    VT_EQ_INT(vg_http_query_param(q, "a", &v), VG_OK);
    VT_CHECK(span_is(v, "1"));
    VT_EQ_INT(vg_http_query_param(q, "flag", &v), VG_OK);
    VT_CHECK(v.len == 0);
    VT_EQ_INT(vg_http_query_param(q, "e", &v), VG_OK);
    VT_CHECK(v.len == 0);
    VT_EQ_INT(vg_http_query_param(q, "qosx", &v), VG_OK);
    VT_CHECK(span_is(v, "2"));
    VT_EQ_INT(vg_http_query_param(q, "q", &v), VG_ENOTFOUND);
    VT_EQ_INT(vg_http_query_param(q, "QOS", &v), VG_ENOTFOUND);
    VT_EQ_INT(vg_http_query_param((vg_http_span_t){NULL, 0}, "qos", &v), VG_ENOTFOUND);
    VT_EQ_INT(vg_http_query_param((vg_http_span_t){"x=a=b&", 6}, "x", &v), VG_OK);
    VT_CHECK(span_is(v, "a=b"));
    VT_EQ_INT(vg_http_query_param((vg_http_span_t){"x=a&", 4}, "", &v), VG_OK); /* the empty last one */
    VT_CHECK(v.len == 0);
    /* From a parsed request. */
    VT_REQUIRE(parse("POST /topics/x?qos=1 HTTP/1.1\r\nHost: h\r\n\r\n") == VG_OK);
    VT_EQ_INT(vg_http_query_param(R.query, "qos", &v), VG_OK);
    VT_CHECK(span_is(v, "1"));
}

static void test_error_table(void)
{
    for (int e = 1; e < VG_HTTP_ERR__COUNT; e++) {
        int s = vg_http_error_status((vg_http_error_t)e);
        VT_CHECK(s == 400 || s == 413 || s == 414 || s == 431 || s == 501 || s == 505);
        VT_CHECK(strcmp(vg_http_error_name((vg_http_error_t)e), "?") != 0);
        VT_CHECK(strcmp(vg_http_reason(s), "Unknown") != 0);
    }
    VT_EQ_INT(vg_http_error_status(VG_HTTP_ERR_NONE), 0);
    VT_EQ_INT(vg_http_error_status(VG_HTTP_ERR__COUNT), 0);
    VT_CHECK(strcmp(vg_http_error_name((vg_http_error_t)999), "?") == 0);
}

/* ---- responses --------------------------------------------------------- */

static void test_response(void)
{
    char buf[512];
    int n = vg_http_response(buf, sizeof(buf), 200, "application/json", "{\"ok\":true}", 11,
                             "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n", true);
    const char *want = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                       "Connection: keep-alive\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n{\"ok\":true}";
    VT_EQ_INT(n, strlen(want));
    VT_CHECK(n > 0 && memcmp(buf, want, (size_t)n) == 0);
    /* Every shorter buffer is VG_ENOSPC, never a truncated response. */
    for (int cap = 0; cap < n; cap++)
        VT_EQ_INT(vg_http_response(buf, (size_t)cap, 200, "application/json", "{\"ok\":true}", 11,
                                   "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n", true),
                  VG_ENOSPC);

    n = vg_http_response(buf, sizeof(buf), 204, NULL, NULL, 0, NULL, false);
    want = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
    VT_CHECK(n == (int)strlen(want) && memcmp(buf, want, (size_t)n) == 0);
    n = vg_http_response_head(buf, sizeof(buf), 100, NULL, 0, NULL, true);
    want = "HTTP/1.1 100 Continue\r\n\r\n";
    VT_CHECK(n == (int)strlen(want) && memcmp(buf, want, (size_t)n) == 0);
    n = vg_http_response_head(buf, sizeof(buf), 404, "text/plain", 1234567890123ull, NULL, false);
    want = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 1234567890123\r\n"
           "Connection: close\r\n\r\n";
    VT_CHECK(n == (int)strlen(want) && memcmp(buf, want, (size_t)n) == 0);

    /* Response splitting is refused. */
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 200, "text/plain\r\nX: y", "", 0, NULL, true), VG_EINVAL);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 200, NULL, "", 0, "X: y", true), VG_EINVAL);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 200, NULL, "", 0, "X: y\r\n\r\nbody", true), VG_EINVAL);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 200, NULL, "", 0, "X: y\nZ: w\r\n", true), VG_EINVAL);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 200, NULL, "", 0, "X y\r\n", true), VG_EINVAL);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 200, NULL, "", 0, "\r\n", true), VG_EINVAL);
    VT_CHECK(vg_http_response(buf, sizeof(buf), 200, NULL, "", 0, "X: y\r\nZ:\r\n", true) > 0);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 99, NULL, "", 0, NULL, true), VG_EINVAL);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 600, NULL, "", 0, NULL, true), VG_EINVAL);
    VT_EQ_INT(vg_http_response(buf, sizeof(buf), 204, NULL, "x", 1, NULL, true), VG_EINVAL);

    n = vg_http_response_head(buf, sizeof(buf), 200, NULL, 5, NULL, true);
    for (int cap = 0; cap < n; cap++)
        VT_EQ_INT(vg_http_response_head(buf, (size_t)cap, 200, NULL, 5, NULL, true), VG_ENOSPC);
    VT_EQ_INT(vg_http_response_head(buf, sizeof(buf), 200, "a\x01", 5, NULL, true), VG_EINVAL);

    static const int named[] = {100, 101, 200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409,
                                411, 413, 414, 415, 417, 422, 426, 429, 431, 500, 501, 502, 503, 504, 505, 507};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        VT_CHECK(strcmp(vg_http_reason(named[i]), "Unknown") != 0);
    VT_CHECK(strcmp(vg_http_reason(431), "Request Header Fields Too Large") == 0);
    VT_CHECK(strcmp(vg_http_reason(426), "Upgrade Required") == 0);
    VT_CHECK(strcmp(vg_http_reason(299), "Unknown") == 0);
}

static void test_error_response(void)
{
    char buf[256];
    int n = vg_http_error_response(buf, sizeof(buf), VG_HTTP_ERR_OBS_FOLD);
    const char *want = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
                       "Connection: close\r\n\r\nobs_fold\n";
    VT_CHECK(n == (int)strlen(want) && memcmp(buf, want, (size_t)n) == 0);
    n = vg_http_error_response(buf, sizeof(buf), VG_HTTP_ERR_HEAD_TOO_LARGE);
    VT_CHECK(n > 0 && memcmp(buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);
    VT_EQ_INT(vg_http_error_response(buf, sizeof(buf), VG_HTTP_ERR_NONE), VG_EINVAL);
    /* A response we write parses as a response head would: re-parse the
     * status line as a request-like line is not meaningful, so just check
     * it ends with the empty line before the body. */
    VT_CHECK(strstr(buf, "\r\n\r\n") != NULL);
}

static void test_date(void)
{
    char d[VG_HTTP_DATE_LEN + 1];
    vg_http_date(d, 784111777);
    VT_CHECK(strcmp(d, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
    vg_http_date(d, 0);
    VT_CHECK(strcmp(d, "Thu, 01 Jan 1970 00:00:00 GMT") == 0);
    vg_http_date(d, 1709210096); /* a leap day */
    VT_CHECK(strcmp(d, "Thu, 29 Feb 2024 12:34:56 GMT") == 0);
    VT_EQ_INT(strlen(d), VG_HTTP_DATE_LEN);
}

static void test_parser_reuse_after_shorter_buffer(void)
{
    /* The caller dropped its partial head and starts over with new bytes. */
    const char *a = "GET /aaaaaaaaaaaaaaaa";
    const char *b = "GET /b HTTP/1.0\r\n\r\n";
    init(VG_HTTP_DEFAULT_MAX_HEAD, 0);
    VT_EQ_INT(vg_http_parse_head(&P, a, strlen(a), &R), VG_AGAIN);
    vg_http_parser_reset(&P);
    VT_EQ_INT(vg_http_parse_head(&P, b, 3, &R), VG_AGAIN);
    VT_EQ_INT(vg_http_parse_head(&P, b, strlen(b), &R), VG_OK);
    VT_CHECK(span_is(R.path, "/b"));
    /* Without the reset: a shorter buffer than last time starts over too. */
    const char *c = "GET /c HTTP/1.0\r\n\r\n";
    VT_EQ_INT(vg_http_parse_head(&P, a, strlen(a), &R), VG_AGAIN);
    VT_EQ_INT(vg_http_parse_head(&P, c, strlen(c), &R), VG_OK);
    VT_CHECK(span_is(R.path, "/c"));
}

int main(void)
{
    VT_RUN(test_simple_get);
    VT_RUN(test_bytewise_same_result);
    VT_RUN(test_methods);
    VT_RUN(test_request_line_errors);
    VT_RUN(test_early_refusal_of_non_http);
    VT_RUN(test_versions);
    VT_RUN(test_targets);
    VT_RUN(test_line_endings);
    VT_RUN(test_leading_empty_lines);
    VT_RUN(test_fields);
    VT_RUN(test_field_errors);
    VT_RUN(test_host_rules);
    VT_RUN(test_header_count_limit);
    VT_RUN(test_head_size_limit);
    VT_RUN(test_uri_too_long);
    VT_RUN(test_content_length);
    VT_RUN(test_body_limit);
    VT_RUN(test_transfer_encoding);
    VT_RUN(test_keep_alive);
    VT_RUN(test_expect_continue);
    VT_RUN(test_tokens);
    VT_RUN(test_pipelined);
    VT_RUN(test_content_length_body_bytewise);
    VT_RUN(test_chunked_every_split);
    VT_RUN(test_chunked_bytewise);
    VT_RUN(test_chunked_errors);
    VT_RUN(test_chunked_limits);
    VT_RUN(test_pct_decode);
    VT_RUN(test_query_param);
    VT_RUN(test_error_table);
    VT_RUN(test_response);
    VT_RUN(test_error_response);
    VT_RUN(test_date);
    VT_RUN(test_parser_reuse_after_shorter_buffer);
    return VT_DONE();
}
