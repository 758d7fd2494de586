/* json.c — see json.h. Owns the JSON grammar: validation, the members of a
 * top-level object, number conversion and string (un)escaping. It does not
 * own what any particular document means (event.c does that for events) and
 * it never allocates: every result is a slice of the caller's buffer or is
 * written into memory the caller provides.
 *
 * The reader is one iterative loop rather than a recursive descent so that
 * the depth limit bounds a small byte stack, not the C call stack, and so
 * that the hot path is a handful of tight loops over the bytes. */
#include "core/json.h"

#include "core/err.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Byte classes inside a string. Plain bytes dominate real payloads, so the
 * scanner skips them with one table lookup each and only branches on the rest. */
enum { SC_PLAIN = 0, SC_QUOTE, SC_BSLASH, SC_CTRL, SC_HIGH };

/* clang-format off */
#define C4(x) x, x, x, x
#define C16(x) C4(x), C4(x), C4(x), C4(x)
static const unsigned char str_class[256] = {
    C16(SC_CTRL), C16(SC_CTRL),                                        /* 0x00-0x1f: must be escaped */
    SC_PLAIN, SC_PLAIN, SC_QUOTE, SC_PLAIN, C4(SC_PLAIN), C4(SC_PLAIN), C4(SC_PLAIN), /* 0x20-0x2f */
    C16(SC_PLAIN), C16(SC_PLAIN),                                      /* 0x30-0x4f */
    C4(SC_PLAIN), C4(SC_PLAIN), C4(SC_PLAIN),                          /* 0x50-0x5b */
    SC_BSLASH, SC_PLAIN, SC_PLAIN, SC_PLAIN,                           /* 0x5c-0x5f */
    C16(SC_PLAIN), C16(SC_PLAIN),                                      /* 0x60-0x7f */
    C16(SC_HIGH), C16(SC_HIGH), C16(SC_HIGH), C16(SC_HIGH),            /* 0x80-0xbf */
    C16(SC_HIGH), C16(SC_HIGH), C16(SC_HIGH), C16(SC_HIGH),            /* 0xc0-0xff */
};
#undef C16
#undef C4
/* clang-format on */

/* Significant digits kept when a number is too long for the fast path. A
 * double's halfway points need at most 767 significant decimal digits, so
 * keeping 800 plus a sticky non-zero digit for anything dropped rounds
 * exactly as the full text would. */
#define NUM_SIG_MAX 800
/* Numbers shorter than this are copied as they are and given to strtod. */
#define NUM_FAST_MAX 64

/* Where the members of the top-level object go: either the first cap of them
 * in order (vg_json_object) or the first member for each wanted name
 * (vg_json_object_pick); with array set, the elements of a top-level array
 * instead (vg_json_array), reported as members without a key. NULL sink:
 * validation only. */
typedef struct {
    bool array;
    vg_json_member_t *out;
    size_t cap;
    size_t count;
    const char *const *names;
    size_t n_names;
    size_t n_found;
} sink_t;

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Most tokens are not preceded by whitespace at all, so one compare against
 * ' ' settles the common case before the four exact ones. */
static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (unsigned char)*p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Non-zero iff one of the 8 bytes at p is '"', '\\', below 0x20 or above
 * 0x7f: the classic "has zero byte" bit trick applied to the quote and the
 * backslash, its "has byte less than" variant for control characters, and the
 * top bits for non-ASCII. A borrow can only flag bytes after a real hit, so a
 * zero result is exact. Lets string bodies be skipped a word at a time. */
static inline uint64_t special8(const unsigned char *p)
{
    uint64_t v, q, b;
    memcpy(&v, p, sizeof v);
    q = v ^ (ONES * '"');
    b = v ^ (ONES * '\\');
    return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((v - ONES * 0x20) & ~v) | v) & HIGHS;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* folds 'A'-'F' onto 'a'-'f' and leaves no other byte in range */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The 16-bit value of four hex digits at p, or -1. The caller checked that
 * four bytes are there. */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Decodes the escape sequence at p (p[0] == '\\', p < end) into UTF-8 in
 * out[0..*n). Returns the number of input bytes consumed, or 0 if the escape
 * is malformed: an unknown letter, bad hex, a lone or reversed surrogate. */
static size_t decode_escape(const char *p, const char *end, char out[4], size_t *n)
{
    if (end - p < 2)
        return 0;
    switch (p[1]) {
    case '"': out[0] = '"'; break;
    case '\\': out[0] = '\\'; break;
    case '/': out[0] = '/'; break;
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u': {
        if (end - p < 6)
            return 0;
        long cp = hex4(p + 2);
        size_t used = 6;
        if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
            return 0;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* A high surrogate is only a character together with the low
             * surrogate that must follow it as a second escape. */
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u')
                return 0;
            long lo = hex4(p + 8);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return 0;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            used = 12;
        }
        if (cp < 0x80) {
            out[0] = (char)cp;
            *n = 1;
        } else if (cp < 0x800) {
            out[0] = (char)(0xC0 | cp >> 6);
            out[1] = (char)(0x80 | (cp & 0x3F));
            *n = 2;
        } else if (cp < 0x10000) {
            out[0] = (char)(0xE0 | cp >> 12);
            out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[2] = (char)(0x80 | (cp & 0x3F));
            *n = 3;
        } else {
            out[0] = (char)(0xF0 | cp >> 18);
            out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
            out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[3] = (char)(0x80 | (cp & 0x3F));
            *n = 4;
        }
        return used;
    }
    default: return 0;
    }
    *n = 1;
    return 2;
}

/* Length of the well-formed UTF-8 sequence at p (p[0] >= 0x80), or 0. This
 * is RFC 3629's table: it rejects overlong forms, UTF-16 surrogates and
 * anything above U+10FFFF by narrowing the range of the second byte. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0xC2)
        return 0; /* a stray continuation byte, or an overlong 2-byte lead */
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* below that would be overlong */
        else if (c == 0xED)
            hi = 0x9F; /* above that would encode a surrogate */
    } else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* above that would exceed U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* The rest of a string from p, the first byte that is not plain ASCII:
 * escapes, multi-byte UTF-8 and the closing quote. Kept out of line so that
 * the plain case below stays small enough to inline. */
static int scan_string_slow(const unsigned char *p, const unsigned char *e, const char **pp, bool *escaped)
{
    bool esc = false;
    for (;;) {
        while (p < e && str_class[*p] == SC_PLAIN)
            p++;
        if (p == e)
            return VG_EMALFORMED;
        switch (str_class[*p]) {
        case SC_QUOTE:
            *pp = (const char *)p + 1;
            *escaped = esc;
            return VG_OK;
        case SC_BSLASH: {
            char tmp[4];
            size_t n;
            size_t used = decode_escape((const char *)p, (const char *)e, tmp, &n);
            if (!used)
                return VG_EMALFORMED;
            p += used;
            esc = true;
            break;
        }
        case SC_HIGH: {
            size_t n = utf8_len(p, e);
            if (!n)
                return VG_EMALFORMED;
            p += n;
            break;
        }
        default: return VG_EMALFORMED; /* a raw control character */
        }
    }
}

/* Scans a string whose opening quote is at *pp. On success *pp points just
 * past the closing quote and *escaped says whether a backslash occurred. */
static inline int scan_string(const char **pp, const char *end, bool *escaped)
{
    const unsigned char *p = (const unsigned char *)*pp + 1;
    const unsigned char *e = (const unsigned char *)end;
    while (e - p >= 8 && !special8(p))
        p += 8;
    while (p < e && str_class[*p] == SC_PLAIN)
        p++;
    if (p < e && *p == '"') {
        *pp = (const char *)p + 1;
        *escaped = false;
        return VG_OK;
    }
    return scan_string_slow(p, e, pp, escaped);
}

/* Returns the end of the number that starts at p, or NULL if the text there
 * does not follow the grammar -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
 * A digit right after a leading zero is left for the caller to reject as
 * trailing garbage. */
static const char *scan_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p == end || !is_digit(*p))
        return NULL;
    if (*p++ != '0')
        while (p < end && is_digit(*p))
            p++;
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

/* Whether the raw (possibly escaped) key equals the NUL-terminated name. The
 * key is decoded on the fly, so no buffer is needed and an unescaped key costs
 * one byte compare per byte. A decoded NUL never matches, as name ends there. */
static bool key_equals(const char *key, size_t key_len, const char *name)
{
    const char *p = key, *end = key + key_len;
    size_t j = 0;
    while (p < end) {
        if (*p != '\\') {
            if (name[j] == '\0' || name[j] != *p)
                return false;
            j++;
            p++;
            continue;
        }
        char u[4];
        size_t n;
        size_t used = decode_escape(p, end, u, &n);
        if (!used)
            return false;
        for (size_t k = 0; k < n; k++, j++)
            if (name[j] == '\0' || name[j] != u[k])
                return false;
        p += used;
    }
    return name[j] == '\0';
}

static void sink_member(sink_t *s, const vg_json_member_t *m)
{
    if (!s->names) {
        if (s->count < s->cap)
            s->out[s->count] = *m;
        s->count++;
        return;
    }
    s->count++;
    if (s->n_found == s->n_names)
        return; /* everything wanted was seen: the rest is only validated */
    for (size_t i = 0; i < s->n_names; i++) {
        if (!s->out[i].key && key_equals(m->key, m->key_len, s->names[i])) {
            s->out[i] = *m;
            s->n_found++;
        }
    }
}

/* Validates buf[0..len) as one JSON value. *top receives its type; members of
 * a top-level object go to sink (may be NULL). */
static int parse(const char *buf, size_t len, int max_depth, sink_t *sink, vg_json_type_t *top)
{
    /* The closing byte ('}' or ']') expected for each open container. */
    char closer[VG_JSON_MAX_DEPTH];
    int depth = 0;
    vg_json_member_t m = {0}; /* the top-level member being read */
    bool emit = false;        /* whether top-level members are reported */
    const char *p, *end;

    if (!buf)
        return VG_EMALFORMED;
    p = buf;
    end = buf + len;
    if (max_depth < 0)
        max_depth = 0;
    if (max_depth > VG_JSON_MAX_DEPTH)
        max_depth = VG_JSON_MAX_DEPTH;

    for (;;) {
        /* A value starts here. */
        vg_json_type_t type;
        bool escaped = false;
        bool complete = true; /* false when a non-empty container was opened */
        const char *start;

        p = skip_ws(p, end);
        if (p == end)
            return VG_EMALFORMED;
        start = p;
        switch (*p) {
        case '{':
        case '[':
            type = *p == '{' ? VG_JSON_OBJECT : VG_JSON_ARRAY;
            if (depth >= max_depth)
                return VG_ETOOBIG;
            closer[depth++] = (char)(*p + 2); /* '{' + 2 == '}', '[' + 2 == ']' */
            if (depth == 1) {
                *top = type;
                emit = sink && type == (sink->array ? VG_JSON_ARRAY : VG_JSON_OBJECT);
            }
            p = skip_ws(p + 1, end);
            if (p < end && *p == closer[depth - 1]) {
                p++;
                depth--;
                break;
            }
            complete = false;
            break;
        case '"':
            type = VG_JSON_STRING;
            if (scan_string(&p, end, &escaped) < 0)
                return VG_EMALFORMED;
            break;
        case 't':
        case 'f':
        case 'n': {
            static const char *const lit[] = {"true", "false", "null"};
            int i = *p == 't' ? 0 : *p == 'f' ? 1 : 2;
            size_t n = i == 1 ? 5 : 4;
            if ((size_t)(end - p) < n || memcmp(p, lit[i], n) != 0)
                return VG_EMALFORMED;
            type = i == 0 ? VG_JSON_TRUE : i == 1 ? VG_JSON_FALSE : VG_JSON_NULL;
            p += n;
            break;
        }
        default:
            type = VG_JSON_NUMBER;
            p = scan_number(p, end);
            if (!p)
                return VG_EMALFORMED;
            break;
        }
        if (depth == 0 && complete) {
            *top = type;
            break;
        }
        if (emit && (depth == 1 || (depth == 2 && !complete))) {
            /* A direct child of the top-level object: remember where its
             * value starts; it is reported when it completes below. */
            m.type = type;
            m.raw = start;
            m.str_escaped = escaped;
        }
        if (!complete) {
            if (closer[depth - 1] == '}')
                goto key;
            continue;
        }

        /* A value has just ended at p: report it if it belongs to the
         * top-level object, then find what follows it. Closing brackets
         * complete the enclosing value too, hence the loop. */
        for (;;) {
            if (depth == 0)
                goto tail;
            if (depth == 1 && emit) {
                m.raw_len = (size_t)(p - m.raw);
                if (m.type == VG_JSON_STRING) {
                    m.raw++;
                    m.raw_len -= 2;
                }
                sink_member(sink, &m);
            }
            p = skip_ws(p, end);
            if (p == end)
                return VG_EMALFORMED;
            if (*p == closer[depth - 1]) {
                p++;
                depth--;
                continue;
            }
            if (*p != ',')
                return VG_EMALFORMED;
            p = skip_ws(p + 1, end);
            if (closer[depth - 1] == '}')
                goto key;
            break;
        }
        continue;

    key:
        /* p is at the first non-blank byte after '{' or ','. */
        if (p == end || *p != '"')
            return VG_EMALFORMED;
        {
            const char *k = p;
            bool kesc;
            if (scan_string(&p, end, &kesc) < 0)
                return VG_EMALFORMED;
            if (depth == 1) {
                m.key = k + 1;
                m.key_len = (size_t)(p - k - 2);
                m.key_escaped = kesc;
            }
        }
        p = skip_ws(p, end);
        if (p == end || *p != ':')
            return VG_EMALFORMED;
        p++;
    }

tail:
    p = skip_ws(p, end);
    return p == end ? VG_OK : VG_EMALFORMED;
}

int vg_json_object(const char *buf, size_t len, int max_depth, vg_json_member_t *out, size_t cap, size_t *count)
{
    sink_t s = {.out = out, .cap = out ? cap : 0};
    vg_json_type_t top = VG_JSON_NULL;
    int rc = parse(buf, len, max_depth, &s, &top);
    if (rc == VG_OK && top != VG_JSON_OBJECT)
        rc = VG_EINVAL;
    if (count)
        *count = rc == VG_OK ? s.count : 0;
    return rc;
}

int vg_json_object_pick(const char *buf, size_t len, int max_depth, const char *const *names, size_t n,
                        vg_json_member_t *out, size_t *count)
{
    sink_t s = {.out = out, .names = names, .n_names = n};
    vg_json_type_t top = VG_JSON_NULL;
    int rc;
    if (n)
        memset(out, 0, n * sizeof *out);
    rc = parse(buf, len, max_depth, &s, &top);
    if (rc == VG_OK && top != VG_JSON_OBJECT)
        rc = VG_EINVAL;
    if (rc != VG_OK && n)
        memset(out, 0, n * sizeof *out);
    if (count)
        *count = rc == VG_OK ? s.count : 0;
    return rc;
}

int vg_json_array(const char *buf, size_t len, int max_depth, vg_json_member_t *out, size_t cap, size_t *count)
{
    sink_t s = {.array = true, .out = out, .cap = out ? cap : 0};
    vg_json_type_t top = VG_JSON_NULL;
    int rc = parse(buf, len, max_depth, &s, &top);
    if (rc == VG_OK && top != VG_JSON_ARRAY)
        rc = VG_EINVAL;
    if (count)
        *count = rc == VG_OK ? s.count : 0;
    return rc;
}

int vg_json_validate(const char *buf, size_t len, int max_depth)
{
    vg_json_type_t top;
    return parse(buf, len, max_depth, NULL, &top);
}

const vg_json_member_t *vg_json_find(const vg_json_member_t *members, size_t n, const char *name)
{
    if (!members || !name)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (members[i].key && key_equals(members[i].key, members[i].key_len, name))
            return &members[i];
    return NULL;
}

/* Whether m is a NUMBER whose text really is one: members are usually ours,
 * but the contract takes any struct, and strtod must not see anything else. */
static bool is_number(const vg_json_member_t *m)
{
    return m && m->type == VG_JSON_NUMBER && m->raw && m->raw_len &&
           scan_number(m->raw, m->raw + m->raw_len) == m->raw + m->raw_len;
}

/* strtod on a NUL-terminated copy. The grammar is validated, so a short end
 * can only mean a locale whose decimal point is not '.'; vigil never calls
 * setlocale, and we turn such a surprise into an error rather than a
 * truncated number. Overflow gives ±HUGE_VAL, rejected by the caller;
 * underflow gives the nearest double (0 or subnormal), which is accepted. */
static int to_double(const char *s, double *out)
{
    char *endp;
    double v = strtod(s, &endp);
    if (*endp != '\0')
        return VG_EINVAL;
    *out = v;
    return VG_OK;
}

/* A number too long for the fast path is rewritten as [-]0.DIGITSe<exp> with
 * leading zeros gone and at most NUM_SIG_MAX significant digits (plus a sticky
 * '1' if non-zero digits were dropped), which strtod rounds the same way. */
static int number_long(const char *s, size_t n, double *out)
{
    char b[NUM_SIG_MAX + 48];
    const char *p = s, *end = s + n;
    size_t o = 0, k = 0;
    int64_t point = 0, e = 0;
    bool sticky = false, neg = false, frac = false;

    if (*p == '-') {
        neg = true;
        p++;
    }
    if (neg)
        b[o++] = '-';
    b[o++] = '0';
    b[o++] = '.';
    for (; p < end && (is_digit(*p) || (*p == '.' && !frac)); p++) {
        if (*p == '.') {
            frac = true;
            continue;
        }
        if (k == 0 && *p == '0') {
            if (frac)
                point--;
            continue;
        }
        if (!frac)
            point++;
        if (k < NUM_SIG_MAX)
            b[o + k++] = *p;
        else if (*p != '0')
            sticky = true;
    }
    if (k == 0) {
        *out = neg ? -0.0 : 0.0;
        return VG_OK;
    }
    o += k;
    if (sticky)
        b[o++] = '1';
    if (p < end) { /* 'e' or 'E' */
        int64_t sign = 1;
        p++;
        if (*p == '+' || *p == '-')
            sign = *p++ == '-' ? -1 : 1;
        for (; p < end; p++)
            if (e < 1000000000) /* saturate: anything this big is 0 or inf anyway */
                e = e * 10 + (*p - '0');
        e *= sign;
    }
    e += point;
    if (e > 100000)
        e = 100000;
    if (e < -100000)
        e = -100000;
    snprintf(b + o, sizeof b - o, "e%lld", (long long)e);
    return to_double(b, out);
}

int vg_json_number(const vg_json_member_t *m, double *out)
{
    double v;
    int rc;
    if (!is_number(m))
        return VG_EINVAL;
    if (m->raw_len < NUM_FAST_MAX) {
        char b[NUM_FAST_MAX];
        memcpy(b, m->raw, m->raw_len);
        b[m->raw_len] = '\0';
        rc = to_double(b, &v);
    } else {
        rc = number_long(m->raw, m->raw_len, &v);
    }
    if (rc < 0 || isinf(v))
        return VG_EINVAL;
    *out = v;
    return VG_OK;
}

int vg_json_int64(const vg_json_member_t *m, int64_t *out)
{
    const char *p, *end, *ip, *fp = NULL;
    size_t ni = 0, nf = 0;
    int64_t e = 0, shift;
    uint64_t mag = 0, limit;
    bool neg = false;

    if (!is_number(m))
        return VG_EINVAL;
    p = m->raw;
    end = p + m->raw_len;
    if (*p == '-') {
        neg = true;
        p++;
    }
    ip = p;
    while (p < end && is_digit(*p))
        p++;
    ni = (size_t)(p - ip);
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && is_digit(*p))
            p++;
        nf = (size_t)(p - fp);
    }
    if (p < end) { /* 'e' or 'E' */
        int64_t sign = 1;
        p++;
        if (*p == '+' || *p == '-')
            sign = *p++ == '-' ? -1 : 1;
        for (; p < end; p++)
            if (e < 1000000000000000LL) /* saturate far beyond any int64 */
                e = e * 10 + (*p - '0');
        e *= sign;
    }

    /* The value is DIGITS x 10^shift, DIGITS being the integer digits followed
     * by the fraction digits. With a negative shift the last -shift digits
     * are the fraction that remains, and they must all be zero. */
    shift = e - (int64_t)nf;
    size_t total = ni + nf;
    size_t keep = total;
    if (shift < 0)
        keep = (uint64_t)-shift >= total ? 0 : total - (size_t)-shift;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t j = 0; j < total; j++) {
        unsigned d = (unsigned)((j < ni ? ip[j] : fp[j - ni]) - '0');
        if (j >= keep) {
            if (d)
                return VG_EINVAL;
            continue;
        }
        if (mag > (limit - d) / 10)
            return VG_EINVAL;
        mag = mag * 10 + d;
    }
    for (int64_t i = 0; i < shift && mag; i++) {
        if (mag > limit / 10)
            return VG_EINVAL;
        mag *= 10;
    }
    if (neg)
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    else
        *out = (int64_t)mag;
    return VG_OK;
}

int vg_json_unescape(const char *raw, size_t raw_len, char *out, size_t cap, size_t *out_len)
{
    const char *p, *end;
    size_t o = 0;
    int rc = VG_OK;

    if (!raw && raw_len)
        return VG_EINVAL;
    p = raw;
    end = raw ? raw + raw_len : raw;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((bs ? bs : end) - p);
        if (run) {
            if (run > cap - o) {
                rc = VG_ENOSPC;
                goto cleanup;
            }
            memcpy(out + o, p, run);
            o += run;
            p += run;
        }
        if (p == end)
            break;
        char u[4];
        size_t n;
        size_t used = decode_escape(p, end, u, &n);
        if (!used) {
            rc = VG_EMALFORMED;
            goto cleanup;
        }
        if (n > cap - o) {
            rc = VG_ENOSPC;
            goto cleanup;
        }
        memcpy(out + o, u, n);
        o += n;
        p += used;
    }

cleanup:
    if (rc != VG_OK)
        o = 0; /* a partial result must not pass for a whole one */
    if (o < cap)
        out[o] = '\0';
    if (out_len)
        *out_len = o;
    return rc;
}

int vg_json_escape(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (!s && n)
        return VG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t len = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            if (c >= 0x20) {
                esc[0] = (char)c;
                len = 1;
            } else {
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 0xF];
                len = 6;
            }
            break;
        }
        if (len > cap - o)
            return VG_ENOSPC;
        memcpy(out + o, esc, len);
        o += len;
    }
    if (o > INT_MAX)
        return VG_ENOSPC;
    if (o < cap)
        out[o] = '\0';
    return (int)o;
}
