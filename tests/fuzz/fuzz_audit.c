/* fuzz_audit.c — libFuzzer harness for sec/audit's line format.
 *
 * Input: up to six fields separated by '\n' (client_id, username, source,
 * action, resource, reason; a missing one is omitted), then the event in the
 * first byte's low bits. Audit lines carry what clients chose (client ids,
 * user names, topics), so for any bytes the line must be one valid JSON
 * object ending in '\n' within VG_AUDIT_LINE_MAX, with the members present
 * exactly for the fields given, each decoding to valid UTF-8 that is the
 * input (invalid bytes as '?') or, when "truncated" says so, a prefix of it.
 * A broken invariant aborts. */
#include "core/err.h"
#include "core/json.h"
#include "sec/audit.h"

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

static const char *const names[6] = {"client_id", "username", "source", "action", "resource", "reason"};

/* What the log should hold for s[0..n): invalid UTF-8 bytes as '?'. Uses
 * the JSON validator as the UTF-8 oracle, one character at a time. */
static size_t expected(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            char q[8] = {'"'};
            if (i + want <= n) {
                memcpy(q + 1, s + i, want);
                q[want + 1] = '"';
                if (vg_json_validate(q, want + 2, 1) == VG_OK)
                    k = want;
            }
            if (k == 1) {
                out[o++] = '?';
                i++;
                continue;
            }
        }
        memcpy(out + o, s + i, k);
        o += k;
        i += k;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char line[VG_AUDIT_LINE_MAX], dec[VG_AUDIT_LINE_MAX], exp[8192];
    vg_audit_str_t f[6] = {{0}};
    vg_audit_rec_t r = {.event = (vg_audit_event_t)(size ? data[0] % VG_AUDIT__EVENTS : 0)};
    const char *p = (const char *)data + (size ? 1 : 0), *end = (const char *)data + size;
    int nf = 0;
    while (nf < 6 && p <= end && size) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t n = e ? (size_t)(e - p) : (size_t)(end - p);
        f[nf++] = (vg_audit_str_t){p, n};
        if (!e)
            break;
        p = e + 1;
    }
    r.client_id = f[0];
    r.username = f[1];
    r.source = f[2];
    r.action = f[3];
    r.resource = f[4];
    r.reason = f[5];

    int n = vg_audit_format(&r, (int64_t)size * 123456789, line, sizeof line);
    CHECK(n > 0 && n < VG_AUDIT_LINE_MAX && line[n - 1] == '\n' && line[n] == '\0');
    vg_json_member_t m[10];
    size_t count = 0;
    CHECK(vg_json_object(line, (size_t)n, 2, m, 10, &count) == VG_OK);
    bool truncated = vg_json_find(m, count, "truncated") != NULL;
    CHECK(count == 2 + (size_t)nf + truncated);
    CHECK(vg_json_find(m, count, "ts") && vg_json_find(m, count, "event"));
    for (int i = 0; i < 6; i++) {
        const vg_json_member_t *v = vg_json_find(m, count, names[i]);
        CHECK((v != NULL) == (i < nf));
        if (!v)
            continue;
        size_t dn;
        CHECK(v->type == VG_JSON_STRING);
        CHECK(vg_json_unescape(v->raw, v->raw_len, dec, sizeof dec, &dn) == VG_OK);
        CHECK(dn <= VG_AUDIT_FIELD_MAX);
        if (f[i].len > sizeof exp / 4)
            continue;
        size_t en = expected(f[i].ptr, f[i].len, exp);
        if (!truncated)
            CHECK(dn == en && memcmp(dec, exp, en) == 0);
        else
            CHECK(dn <= en && memcmp(dec, exp, dn) == 0);
    }
    return 0;
}
