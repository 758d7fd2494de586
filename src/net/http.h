/* http.h — HTTP/1.1 request parsing and response writing: pure functions over
 * the caller's buffers.
 *
 * Owns: the request head (request line, header fields, the framing and
 * connection rules of RFC 9112), the request body framing (Content-Length
 * and chunked, decoded incrementally), percent-decoding and query lookup,
 * and the bytes of a response head. Does not own: sockets, buffering,
 * routing, timeouts or what a status means to the server.
 *
 * Everything the parser reports points INTO the caller's buffer; nothing is
 * allocated. The parser is strict because the server may one day sit behind
 * a proxy: anything two HTTP implementations could read differently (bare CR
 * or LF, obs-fold, space before the colon, Content-Length together with
 * Transfer-Encoding, conflicting lengths) is refused, never guessed at.
 * Input never trips an assert: each refusal is a VG_E* code plus a
 * vg_http_error_t saying which rule was broken, which maps to the status to
 * answer with (vg_http_error_status) and a short name for counters and logs
 * (vg_http_error_name). */
#ifndef VG_NET_HTTP_H
#define VG_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A run of bytes inside the caller's buffer (not NUL-terminated). */
typedef struct {
    const char *p;
    size_t len;
} vg_http_span_t;

typedef struct {
    vg_http_span_t name;  /* a token, case as sent */
    vg_http_span_t value; /* without leading and trailing spaces/tabs */
} vg_http_header_t;

typedef enum {
    VG_HTTP_OTHER = 0, /* a valid token we have no name for: see method_name */
    VG_HTTP_GET,
    VG_HTTP_HEAD,
    VG_HTTP_POST,
    VG_HTTP_PUT,
    VG_HTTP_DELETE,
    VG_HTTP_OPTIONS,
    VG_HTTP_PATCH,
} vg_http_method_t;

/* How the request body is delimited (RFC 9112 §6.3). */
typedef enum {
    VG_HTTP_BODY_NONE = 0, /* no body (no Content-Length, no Transfer-Encoding) */
    VG_HTTP_BODY_LENGTH,   /* content_length bytes follow the head */
    VG_HTTP_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
} vg_http_framing_t;

/* Why a request was refused. Each maps to one status and one name. */
typedef enum {
    VG_HTTP_ERR_NONE = 0,
    VG_HTTP_ERR_LINE_ENDING,        /* 400: bare CR, or LF without CR */
    VG_HTTP_ERR_REQUEST_LINE,       /* 400: not "method SP target SP version" */
    VG_HTTP_ERR_METHOD,             /* 400: method is not a token */
    VG_HTTP_ERR_TARGET,             /* 400: bad character, escape or form */
    VG_HTTP_ERR_VERSION,            /* 400: not "HTTP/d.d" */
    VG_HTTP_ERR_VERSION_UNSUP,      /* 505: HTTP/d.d other than 1.0 and 1.1 */
    VG_HTTP_ERR_URI_TOO_LONG,       /* 414: request line over max_head */
    VG_HTTP_ERR_HEAD_TOO_LARGE,     /* 431: head over max_head */
    VG_HTTP_ERR_TOO_MANY_HEADERS,   /* 431: more header lines than max_headers */
    VG_HTTP_ERR_HEADER_NAME,        /* 400: empty or non-token name, no colon */
    VG_HTTP_ERR_SPACE_BEFORE_COLON, /* 400: "Name : value" */
    VG_HTTP_ERR_HEADER_VALUE,       /* 400: control character in a value */
    VG_HTTP_ERR_OBS_FOLD,           /* 400: line starting with space or tab */
    VG_HTTP_ERR_HOST,               /* 400: HTTP/1.1 without exactly one Host */
    VG_HTTP_ERR_CONTENT_LENGTH,     /* 400: not digits, or two different values */
    VG_HTTP_ERR_CL_AND_TE,          /* 400: both Content-Length and Transfer-Encoding */
    VG_HTTP_ERR_TRANSFER_ENCODING,  /* 400: chunked not last/repeated, TE in 1.0 */
    VG_HTTP_ERR_TE_UNKNOWN,         /* 501: a transfer coding other than chunked */
    VG_HTTP_ERR_BODY_TOO_LARGE,     /* 413: body over max_body */
    VG_HTTP_ERR_CHUNK,              /* 400: bad chunk size line, data or trailer */
    VG_HTTP_ERR_TRAILER_TOO_LARGE,  /* 431: trailer section over VG_HTTP_MAX_TRAILER */
    VG_HTTP_ERR__COUNT
} vg_http_error_t;

/* The status to answer a refused request with: 400, 413, 414, 431, 501 or
 * 505 (0 for VG_HTTP_ERR_NONE or an out-of-range value). */
int vg_http_error_status(vg_http_error_t e);
/* A short static name ("obs_fold"), usable as a counter key; "?" if unknown. */
const char *vg_http_error_name(vg_http_error_t e);

typedef struct {
    vg_http_method_t method;
    vg_http_span_t method_name; /* the method token as sent (case-sensitive) */
    vg_http_span_t target;      /* the request target as sent */
    /* The path, still percent-encoded: the origin-form target up to '?', the
     * path of an absolute-form target ("/" when it has none; then p points
     * to a static string, not into the buffer), or "*" for OPTIONS *. */
    vg_http_span_t path;
    vg_http_span_t query;      /* after the first '?', without it; empty if none */
    uint8_t version_minor;     /* HTTP/1.<version_minor>: 0 or 1 */
    vg_http_header_t *headers; /* the parser's array, in arrival order */
    size_t nheaders;
    vg_http_framing_t framing;
    uint64_t content_length; /* for VG_HTTP_BODY_LENGTH */
    bool keep_alive;         /* the connection may carry another request */
    bool expect_continue;    /* HTTP/1.1 "Expect: 100-continue": the client may
                                wait for "100 Continue" before the body */
    size_t head_len;         /* bytes of the head, incl. the final empty line */
} vg_http_request_t;

/* Parser state for one connection. Fill it with vg_http_parser_init; every
 * field after `error` is private. */
typedef struct {
    vg_http_header_t *headers; /* caller's array of max_headers slots */
    size_t max_headers;
    size_t max_head;       /* bytes of head (request line, fields, empty line) */
    uint64_t max_body;     /* Content-Length / decoded chunked body limit */
    vg_http_error_t error; /* why the last call failed */
    /* private: how far the last VG_AGAIN call got */
    size_t scan_;       /* bytes already searched for line ends */
    size_t line_start_; /* start of the line being scanned */
    size_t req_start_;  /* start of the request line (after empty lines) */
    size_t method_ok_;  /* request-line bytes already checked as method */
    size_t lines_;      /* complete non-empty lines so far */
} vg_http_parser_t;

/* Defaults the server uses unless configured otherwise. */
#define VG_HTTP_DEFAULT_MAX_HEAD 8192
#define VG_HTTP_DEFAULT_MAX_HEADERS 64
/* Bytes of one chunk-size line (size and extensions) and of the trailer
 * section of a chunked body; above them the body is refused. */
#define VG_HTTP_MAX_CHUNK_LINE 1024
#define VG_HTTP_MAX_TRAILER 8192

/* Prepares p to parse heads with room for max_headers fields in headers[]
 * (owned by the caller and reused by every request p parses; it must
 * outlive the vg_http_request_t results). Never fails. */
void vg_http_parser_init(vg_http_parser_t *p, vg_http_header_t *headers, size_t max_headers, size_t max_head,
                         uint64_t max_body);
/* Forgets a partial head (after the caller discarded its buffer). */
void vg_http_parser_reset(vg_http_parser_t *p);

/* Parses the request head at the start of buf[0..len). The caller passes the
 * same buffer start each time, with len growing as bytes arrive (the buffer
 * may move between calls; only offsets are kept). Returns:
 *  VG_AGAIN: the head is not complete yet (but nothing seen so far is bad);
 *  VG_OK: *req is filled; its spans point into buf and stay valid while the
 *    caller keeps those bytes in place; req->head_len bytes were used, the
 *    body (if any) starts right after. The parser is ready for the next
 *    request, which the caller passes starting at its own first byte;
 *  VG_EMALFORMED / VG_ETOOBIG / VG_EPROTO: refused; p->error says why. The
 *    caller answers vg_http_error_status(p->error) and closes the connection
 *    (after a refusal the stream can no longer be framed).
 * Bytes after the head are never looked at, so a pipelined request or a body
 * in the same buffer does not matter. Leading empty lines are skipped (RFC
 * 9112 §2.2) and count towards head_len. Over-long input is refused as soon
 * as it exceeds max_head, before the end of the head has arrived, and a
 * non-token byte in the method is refused as soon as it arrives. Only the
 * first max_head bytes are ever examined, so the outcome (including which
 * vg_http_error_t a bad head gets) does not depend on how the bytes were
 * split across calls; tests/fuzz/fuzz_http.c checks exactly that. */
int vg_http_parse_head(vg_http_parser_t *p, const char *buf, size_t len, vg_http_request_t *req);

/* The first header named name (ASCII case-insensitive), or NULL. */
const vg_http_header_t *vg_http_header_find(const vg_http_request_t *req, const char *name);
/* How many header lines are named name. */
size_t vg_http_header_count(const vg_http_request_t *req, const char *name);

/* Walks the comma-separated list elements of every header named name, in
 * order, as if they were one list (RFC 9110 §5.3). Start with a zeroed
 * iterator; each call stores the next non-empty element, trimmed of spaces
 * and tabs, in *elem and returns true, or returns false at the end. Quoted
 * strings are not special (no list field we read uses them). */
typedef struct {
    size_t hdr_;
    size_t off_;
} vg_http_list_iter_t;
bool vg_http_list_next(const vg_http_request_t *req, const char *name, vg_http_list_iter_t *it, vg_http_span_t *elem);
/* Does some element of the header list name equal token, ignoring ASCII
 * case? E.g. (req, "Connection", "upgrade") for "Connection: keep-alive, Upgrade". */
bool vg_http_has_token(const vg_http_request_t *req, const char *name, const char *token);

/* Percent-decodes in[0..len) into out[0..cap); with plus_is_space, '+'
 * becomes ' ' (form-encoded query values; never for paths). out may be in
 * itself (the output is never longer than the input). Returns VG_OK with
 * *out_len; VG_EMALFORMED for '%' not followed by two hex digits or for %00
 * (which would cut a C string short downstream); VG_ENOSPC if cap is short. */
int vg_http_pct_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t cap, size_t *out_len);

/* Finds the first parameter called name in a query ("a=1&qos=1&flag"), by
 * exact comparison of the raw (undecoded) name. Returns VG_OK with the raw
 * value in *value (empty for "flag" or "flag="), or VG_ENOTFOUND. */
int vg_http_query_param(vg_http_span_t query, const char *name, vg_http_span_t *value);

/* Incremental body reader: after vg_http_parse_head returned VG_OK, the
 * bytes after the head go through vg_http_body_feed, which strips the
 * chunked framing (or just counts Content-Length bytes). */
typedef struct {
    vg_http_error_t error; /* why the last call failed */
    /* private */
    uint64_t max_body_, total_, remaining_;
    size_t line_, trailer_;
    uint8_t state_;
} vg_http_body_t;

/* Prepares b for the body of req (no limit beyond max_body; pass the same
 * value as to the parser, which already refused a Content-Length above it). */
void vg_http_body_init(vg_http_body_t *b, const vg_http_request_t *req, uint64_t max_body);
/* Reads body bytes from in[0..len) and writes the decoded body bytes to
 * out[0..*out_len), in order. out must have room for len bytes and may be
 * in itself or lie before it in the same buffer (the output never overtakes
 * the input), so the caller can decode in place and keep the body
 * contiguous: pass out = end of the body decoded so far, in = the bytes just
 * received. Returns:
 *  VG_AGAIN: all of in was used (*used == len), the body is not complete;
 *  VG_OK: the body is complete; *used <= len bytes of in belonged to it and
 *    whatever follows is the next request. For a request without a body this
 *    is returned at once with *used == 0;
 *  VG_EMALFORMED / VG_ETOOBIG: bad chunked framing or a body over max_body
 *    (checked from the chunk size, before the data arrives); b->error says
 *    which. *used and *out_len describe what was processed before it.
 * Chunk extensions and trailer fields are validated and discarded. */
int vg_http_body_feed(vg_http_body_t *b, const uint8_t *in, size_t len, size_t *used, uint8_t *out, size_t *out_len);

/* The reason phrase for a status ("Not Found"), "Unknown" if we have none. */
const char *vg_http_reason(int status);

/* Writes a response head into buf[0..cap):
 *   HTTP/1.1 <status> <reason>\r\n
 *   [Content-Type: <content_type>\r\n]     (when content_type is not NULL)
 *   Content-Length: <content_length>\r\n   (not for 1xx and 204)
 *   Connection: keep-alive | close\r\n     (not for 1xx)
 *   <extra_headers>                        (when not NULL)
 *   \r\n
 * extra_headers is zero or more complete "Name: value\r\n" lines. Returns
 * the length written (no NUL), VG_ENOSPC if cap is short, VG_EINVAL for a
 * status outside 100..599, a CR or LF in content_type, or extra_headers that
 * are not CRLF-terminated lines (so a caller cannot split the response). */
int vg_http_response_head(char *buf, size_t cap, int status, const char *content_type, uint64_t content_length,
                          const char *extra_headers, bool keep_alive);
/* The head as above followed by body[0..body_len). For 1xx and 204 body_len
 * must be 0. */
int vg_http_response(char *buf, size_t cap, int status, const char *content_type, const void *body, size_t body_len,
                     const char *extra_headers, bool keep_alive);
/* The answer to a refused request: its status, "Connection: close", and a
 * one-line text/plain body naming the broken rule. */
int vg_http_error_response(char *buf, size_t cap, vg_http_error_t e);

/* Writes the IMF-fixdate for unix_seconds ("Sun, 06 Nov 1994 08:49:37 GMT",
 * 29 characters plus NUL) for the Date header the server must send. */
#define VG_HTTP_DATE_LEN 29
void vg_http_date(char out[VG_HTTP_DATE_LEN + 1], int64_t unix_seconds);

#endif
