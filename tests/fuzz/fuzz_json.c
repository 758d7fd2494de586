/* fuzz_json.c — libFuzzer harness for core/json and core/event.
 *
 * Runs every reader (object, array, validate) over the input and checks
 * invariants that must hold for any bytes: the validators agree with each
 * other and with a smaller depth limit, reported members and elements are
 * slices of the input that are themselves valid, lookups find what listing
 * found, numbers convert consistently, an accepted event satisfies every
 * documented range, and escaping round-trips. A broken invariant aborts,
 * which libFuzzer reports as a crash with the input. */
#include "core/alloc.h"
#include "core/err.h"
#include "core/event.h"
#include "core/json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MEMBERS 64

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p <= buf + len && n <= (size_t)(buf + len - p);
}

static void check_member(const vg_json_member_t *m, const char *buf, size_t len)
{
    static char tmp[1 << 16];
    size_t n;

    CHECK(inside(m->key, m->key_len, buf, len));
    CHECK(inside(m->raw, m->raw_len, buf, len));
    CHECK(m->key[-1] == '"' && m->key[m->key_len] == '"');
    /* Keys and string values decode, and the escaped flag is truthful. */
    CHECK(m->key_escaped == (memchr(m->key, '\\', m->key_len) != NULL));
    /* A validated key always decodes; only a key longer than tmp may not fit. */
    int rk = vg_json_unescape(m->key, m->key_len, tmp, sizeof tmp, &n);
    CHECK(rk == VG_OK || (rk == VG_ENOSPC && m->key_len >= sizeof tmp));
    CHECK(rk != VG_OK || n <= m->key_len);
    /* The member is found by its decoded key, unless that key holds a NUL
     * that a C string cannot spell. */
    if (rk == VG_OK && n < sizeof tmp && memchr(tmp, '\0', n) == NULL) {
        const vg_json_member_t *f = vg_json_find(m, 1, tmp);
        CHECK(f == m);
    }

    switch (m->type) {
    case VG_JSON_STRING:
        CHECK(m->raw[-1] == '"' && m->raw[m->raw_len] == '"');
        CHECK(m->str_escaped == (memchr(m->raw, '\\', m->raw_len) != NULL));
        {
            int rs = vg_json_unescape(m->raw, m->raw_len, tmp, sizeof tmp, &n);
            CHECK(rs == VG_OK || (rs == VG_ENOSPC && m->raw_len >= sizeof tmp));
            CHECK(rs != VG_OK || n <= m->raw_len);
        }
        break;
    case VG_JSON_NUMBER: {
        double d;
        int64_t i;
        int rd = vg_json_number(m, &d);
        int ri = vg_json_int64(m, &i);
        CHECK(rd == VG_OK || rd == VG_EINVAL);
        CHECK(ri == VG_OK || ri == VG_EINVAL);
        if (rd == VG_OK)
            CHECK(!isnan(d) && !isinf(d));
        /* Both round the same exact value to nearest, so they agree. */
        if (ri == VG_OK)
            CHECK(rd == VG_OK && d == (double)i);
        CHECK(!m->str_escaped);
        break;
    }
    case VG_JSON_OBJECT:
    case VG_JSON_ARRAY:
        CHECK(m->raw[0] == (m->type == VG_JSON_OBJECT ? '{' : '['));
        CHECK(vg_json_validate(m->raw, m->raw_len, VG_JSON_DEFAULT_DEPTH - 1) == VG_OK);
        break;
    case VG_JSON_TRUE: CHECK(m->raw_len == 4 && memcmp(m->raw, "true", 4) == 0); break;
    case VG_JSON_FALSE: CHECK(m->raw_len == 5 && memcmp(m->raw, "false", 5) == 0); break;
    case VG_JSON_NULL: CHECK(m->raw_len == 4 && memcmp(m->raw, "null", 4) == 0); break;
    default: CHECK(!"member of unknown type");
    }
    if (m->type != VG_JSON_STRING)
        CHECK(vg_json_validate(m->raw, m->raw_len, VG_JSON_DEFAULT_DEPTH) == VG_OK);
}

static void check_json(const char *buf, size_t len, int small_depth)
{
    static vg_json_member_t m[MAX_MEMBERS];
    size_t count = 0;

    int rv = vg_json_validate(buf, len, VG_JSON_DEFAULT_DEPTH);
    int ro = vg_json_object(buf, len, VG_JSON_DEFAULT_DEPTH, m, MAX_MEMBERS, &count);
    CHECK(rv == VG_OK || rv == VG_EMALFORMED || rv == VG_ETOOBIG);
    CHECK(ro == VG_OK || ro == VG_EINVAL || ro == VG_EMALFORMED || ro == VG_ETOOBIG);
    if (rv == VG_OK)
        CHECK(ro == VG_OK || ro == VG_EINVAL);
    else
        CHECK(ro == rv);
    if (ro != VG_OK)
        CHECK(count == 0);

    /* A lower limit can only turn success into "too deep", never change a
     * verdict on the grammar. */
    int rs = vg_json_validate(buf, len, small_depth);
    if (rs == VG_OK)
        CHECK(rv == VG_OK);
    if (rs == VG_EMALFORMED)
        CHECK(rv == VG_EMALFORMED);
    if (rv == VG_ETOOBIG)
        CHECK(rs == VG_ETOOBIG);

    /* The array reader judges the grammar the same way, and a valid text is
     * an object, an array or a scalar: never both readers' success. */
    {
        static vg_json_member_t el[MAX_MEMBERS];
        size_t acount = 0;
        int ra = vg_json_array(buf, len, VG_JSON_DEFAULT_DEPTH, el, MAX_MEMBERS, &acount);
        CHECK(rv == VG_OK ? (ra == VG_OK || ra == VG_EINVAL) : ra == rv);
        CHECK(!(ra == VG_OK && ro == VG_OK));
        if (ra != VG_OK)
            CHECK(acount == 0);
        for (size_t i = 0; ra == VG_OK && i < acount && i < MAX_MEMBERS; i++) {
            CHECK(el[i].key == NULL && el[i].key_len == 0);
            CHECK(inside(el[i].raw, el[i].raw_len, buf, len));
            if (el[i].type != VG_JSON_STRING)
                CHECK(vg_json_validate(el[i].raw, el[i].raw_len, VG_JSON_DEFAULT_DEPTH) == VG_OK);
            if (i > 0)
                CHECK(el[i].raw > el[i - 1].raw);
        }
    }

    if (ro != VG_OK)
        return;
    size_t stored = count < MAX_MEMBERS ? count : MAX_MEMBERS;
    for (size_t i = 0; i < stored; i++) {
        check_member(&m[i], buf, len);
        if (i > 0)
            CHECK(m[i].key > m[i - 1].raw); /* in document order */
    }

    /* Pick agrees with find over the stored members for the first few keys. */
    static char names_buf[4][256];
    const char *names[4];
    size_t nn = 0;
    for (size_t i = 0; i < stored && nn < 4; i++) {
        size_t n;
        if (vg_json_unescape(m[i].key, m[i].key_len, names_buf[nn], sizeof names_buf[nn], &n) == VG_OK &&
            n < sizeof names_buf[nn] && !memchr(names_buf[nn], '\0', n)) {
            names[nn] = names_buf[nn];
            nn++;
        }
    }
    vg_json_member_t picked[4];
    size_t pcount = 0;
    CHECK(vg_json_object_pick(buf, len, VG_JSON_DEFAULT_DEPTH, names, nn, picked, &pcount) == VG_OK);
    CHECK(pcount == count);
    for (size_t i = 0; i < nn; i++) {
        const vg_json_member_t *f = vg_json_find(m, stored, names[i]);
        CHECK(f && picked[i].key == f->key && picked[i].raw == f->raw && picked[i].raw_len == f->raw_len);
    }
}

static void check_event(const char *buf, size_t len)
{
    vg_event_t ev;
    const char *detail = NULL;
    vg_event_reason_t r = vg_event_parse(buf, len, &ev, &detail);
    CHECK((unsigned)r < VG_EVENT__COUNT);
    CHECK(detail != NULL && *detail != '\0');
    CHECK(strcmp(vg_event_reason_name(r), "unknown") != 0);
    if (r != VG_EVENT_OK)
        return;
    CHECK(ev.device_id_len >= 1 && ev.device_id_len <= VG_EVENT_MAX_DEVICE_ID);
    CHECK(strlen(ev.device_id) == ev.device_id_len);
    for (size_t i = 0; i < ev.device_id_len; i++)
        CHECK((unsigned char)ev.device_id[i] >= 0x20 && ev.device_id[i] != 0x7f);
    CHECK(ev.heart_rate > 0.0 && ev.heart_rate <= 300.0);
    CHECK(ev.steps >= 0 && ev.steps <= 100000);
    CHECK(ev.ts_ms >= 946684800000LL && ev.ts_ms <= 4102444800000LL);

    uint8_t meta[VG_EVENT_META_LEN];
    double hr;
    int64_t steps, ts;
    vg_event_meta_encode(&ev, meta);
    CHECK(vg_event_meta_decode(meta, sizeof meta, &hr, &steps, &ts) == VG_OK);
    CHECK(hr == ev.heart_rate && steps == ev.steps && ts == ev.ts_ms);
}

static void check_text(const char *buf, size_t len)
{
    static char esc[6 * 4096 + 1], back[4096 + 1];
    int64_t ms;

    /* The ISO parser on raw bytes: a 4-digit year and bounded offset keep any
     * accepted time within years 0000..9999, give or take a day. */
    if (vg_event_parse_iso8601(buf, len, &ms) == VG_OK)
        CHECK(ms >= -62167219200000LL - 86400000LL && ms <= 253402300799999LL + 86400000LL);

    if (len > 4096)
        return;
    int n = vg_json_escape(buf, len, esc, sizeof esc);
    CHECK(n >= 0 && (size_t)n >= len && (size_t)n <= 6 * len);
    for (int i = 0; i < n; i++)
        CHECK((unsigned char)esc[i] >= 0x20);
    size_t bn = 0;
    CHECK(vg_json_unescape(esc, (size_t)n, back, sizeof back, &bn) == VG_OK);
    CHECK(bn == len && memcmp(back, buf, len) == 0);
    /* Unescaping arbitrary bytes either works within its bound or says why. */
    int ru = vg_json_unescape(buf, len, back, sizeof back, &bn);
    CHECK(ru == VG_OK || ru == VG_EMALFORMED);
    if (ru == VG_OK)
        CHECK(bn <= len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, sized exactly, so ASan catches any read past the end. */
    char *buf = vg_malloc(VG_MEM_CORE, size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    int small_depth = size ? data[0] % 8 : 0;

    check_json(buf, size, small_depth);
    check_event(buf, size);
    check_text(buf, size);

    vg_free(buf);
    return 0;
}
