/* event.c — see event.h. Owns what a wearable event means: which fields it
 * must have, their types and ranges, the timestamp formats, and the 24-byte
 * meta form stored beside the raw payload. The JSON grammar itself belongs to
 * json.c; this file only asks it for four members.
 *
 * Checks run in a fixed order so that a payload with several problems is
 * always rejected for the same reason: JSON validity, then presence of all
 * four fields, then each field's type and range in the order deviceId,
 * heartRate, steps, timestamp. */
#include "core/event.h"

#include "core/bytes.h"

#include "core/err.h"
#include "core/json.h"

#include <stdbool.h>
#include <string.h>

/* Accepted event times, epoch milliseconds: 2000-01-01T00:00:00Z and
 * 2100-01-01T00:00:00Z, both inclusive. */
#define TS_MIN_MS 946684800000LL
#define TS_MAX_MS 4102444800000LL

#define HEART_RATE_MAX 300.0
#define STEPS_MAX      100000

/* An ISO-8601 text longer than this after decoding escapes is refused. Only
 * a timestamp written with backslash escapes is decoded at all, so this
 * bounds nothing a real device sends. */
#define TS_TEXT_MAX 64

enum { F_DEVICE_ID, F_HEART_RATE, F_STEPS, F_TIMESTAMP, F__COUNT };

static const char *const field_names[F__COUNT] = {"deviceId", "heartRate", "steps", "timestamp"};

static const char *const missing_detail[F__COUNT] = {
    "deviceId is missing",
    "heartRate is missing",
    "steps is missing",
    "timestamp is missing",
};

const char *vg_event_reason_name(vg_event_reason_t r)
{
    static const char *const names[VG_EVENT__COUNT] = {
        "ok",       "not_json",      "not_object",     "too_deep",  "missing_field",
        "bad_type", "bad_device_id", "bad_heart_rate", "bad_steps", "bad_timestamp", "identity_mismatch",
    };
    return (unsigned)r < VG_EVENT__COUNT ? names[r] : "unknown";
}

/* Whether the decoded device id holds a control character: C0 (U+0000-001F),
 * DEL, or C1 (U+0080-009F, encoded in UTF-8 as C2 80 .. C2 9F). The text is
 * valid UTF-8 because the JSON reader checked it. */
static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F)
            return true;
        if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] <= 0x9F)
            return true;
    }
    return false;
}

/* Reads exactly n decimal digits at p. */
static bool digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. This is
 * Howard Hinnant's days_from_civil: counting from March puts the leap day
 * last, so a year's length only matters through whole 400/100/4-year eras. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int vg_event_parse_iso8601(const char *s, size_t len, int64_t *ms)
{
    const char *p, *end;
    int y, mo, d, h, mi, sec, frac = 0, off_min = 0;

    if (!s || len < 19)
        return VG_EINVAL;
    p = s;
    end = s + len;
    if (!digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) || p[7] != '-' || !digits(p + 8, 2, &d) ||
        (p[10] != 'T' && p[10] != 't' && p[10] != ' ') || !digits(p + 11, 2, &h) || p[13] != ':' ||
        !digits(p + 14, 2, &mi) || p[16] != ':' || !digits(p + 17, 2, &sec))
        return VG_EINVAL;
    p += 19;

    if (p < end && *p == '.') {
        /* Any number of digits; the first three are the milliseconds and the
         * rest are truncated, as the contract says. */
        int n = 0;
        p++;
        if (p == end || *p < '0' || *p > '9')
            return VG_EINVAL;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (n < 3) {
                frac = frac * 10 + (*p - '0');
                n++;
            }
        }
        for (; n < 3; n++)
            frac *= 10;
    }

    if (p < end) {
        if (*p == 'Z' || *p == 'z') {
            p++; /* RFC 3339 allows the lower case, as it does for 't' */
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1;
            int oh, om;
            if (end - p == 5 && digits(p, 2, &oh) && p[2] == ':' && digits(p + 3, 2, &om))
                p += 5;
            else if (end - p == 4 && digits(p, 2, &oh) && digits(p + 2, 2, &om))
                p += 4;
            else
                return VG_EINVAL;
            if (oh > 23 || om > 59)
                return VG_EINVAL;
            off_min = sign * (oh * 60 + om);
        } else {
            return VG_EINVAL;
        }
    }
    if (p != end)
        return VG_EINVAL;

    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return VG_EINVAL;
    /* A leap second (:60) is counted as the first second of the next minute,
     * as POSIX time does: epoch milliseconds cannot name it otherwise. */
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off_min * 60;
    *ms = secs * 1000 + frac;
    return VG_OK;
}

/* Sets *detail and returns the reason, so that each check is one statement. */
static vg_event_reason_t verdict(const char **detail, vg_event_reason_t r, const char *why)
{
    if (detail)
        *detail = why;
    return r;
}

static vg_event_reason_t parse_timestamp(const vg_json_member_t *m, int64_t *ts, const char **detail)
{
    if (m->type == VG_JSON_NUMBER) {
        if (vg_json_int64(m, ts) < 0)
            return verdict(detail, VG_EVENT_BAD_TIMESTAMP, "timestamp must be whole epoch milliseconds");
    } else if (m->type == VG_JSON_STRING) {
        const char *text = m->raw;
        size_t len = m->raw_len;
        char buf[TS_TEXT_MAX];
        if (m->str_escaped) {
            if (vg_json_unescape(m->raw, m->raw_len, buf, sizeof buf, &len) < 0)
                return verdict(detail, VG_EVENT_BAD_TIMESTAMP, "timestamp is not an ISO-8601 date-time");
            text = buf;
        }
        if (vg_event_parse_iso8601(text, len, ts) < 0)
            return verdict(detail, VG_EVENT_BAD_TIMESTAMP, "timestamp is not an ISO-8601 date-time");
    } else {
        return verdict(detail, VG_EVENT_BAD_TYPE, "timestamp must be an ISO-8601 string or epoch milliseconds");
    }
    if (*ts < TS_MIN_MS || *ts > TS_MAX_MS)
        return verdict(detail, VG_EVENT_BAD_TIMESTAMP, "timestamp must be between 2000-01-01 and 2100-01-01");
    return VG_EVENT_OK;
}

vg_event_reason_t vg_event_parse(const char *payload, size_t len, vg_event_t *ev, const char **detail)
{
    vg_json_member_t f[F__COUNT];
    size_t n;

    /* Picking the four fields in the validating pass (rather than listing the
     * first N members) keeps any number of extra fields harmless, and takes
     * the first occurrence of a duplicated key. */
    switch (vg_json_object_pick(payload, len, VG_JSON_DEFAULT_DEPTH, field_names, F__COUNT, f, NULL)) {
    case VG_OK: break;
    case VG_EINVAL: return verdict(detail, VG_EVENT_NOT_OBJECT, "payload must be a JSON object");
    case VG_ETOOBIG: return verdict(detail, VG_EVENT_TOO_DEEP, "payload nests deeper than the limit");
    default: return verdict(detail, VG_EVENT_NOT_JSON, "payload is not valid JSON");
    }
    for (int i = 0; i < F__COUNT; i++)
        if (!f[i].key)
            return verdict(detail, VG_EVENT_MISSING_FIELD, missing_detail[i]);

    if (f[F_DEVICE_ID].type != VG_JSON_STRING)
        return verdict(detail, VG_EVENT_BAD_TYPE, "deviceId must be a string");
    /* One byte of room beyond the limit tells "too long" apart from "fits". */
    if (vg_json_unescape(f[F_DEVICE_ID].raw, f[F_DEVICE_ID].raw_len, ev->device_id, sizeof ev->device_id, &n) < 0 ||
        n > VG_EVENT_MAX_DEVICE_ID)
        return verdict(detail, VG_EVENT_BAD_DEVICE_ID, "deviceId must be at most 128 bytes");
    if (n == 0)
        return verdict(detail, VG_EVENT_BAD_DEVICE_ID, "deviceId must not be empty");
    if (has_control(ev->device_id, n))
        return verdict(detail, VG_EVENT_BAD_DEVICE_ID, "deviceId must not contain control characters");
    ev->device_id_len = n; /* vg_json_unescape left the NUL, as n < its cap */

    if (f[F_HEART_RATE].type != VG_JSON_NUMBER)
        return verdict(detail, VG_EVENT_BAD_TYPE, "heartRate must be a number");
    if (vg_json_number(&f[F_HEART_RATE], &ev->heart_rate) < 0 || !(ev->heart_rate > 0.0) ||
        ev->heart_rate > HEART_RATE_MAX)
        return verdict(detail, VG_EVENT_BAD_HEART_RATE, "heartRate must be above 0 and at most 300");

    if (f[F_STEPS].type != VG_JSON_NUMBER)
        return verdict(detail, VG_EVENT_BAD_TYPE, "steps must be a number");
    if (vg_json_int64(&f[F_STEPS], &ev->steps) < 0)
        return verdict(detail, VG_EVENT_BAD_STEPS, "steps must be a whole number");
    if (ev->steps < 0 || ev->steps > STEPS_MAX)
        return verdict(detail, VG_EVENT_BAD_STEPS, "steps must be between 0 and 100000");

    vg_event_reason_t r = parse_timestamp(&f[F_TIMESTAMP], &ev->ts_ms, detail);
    if (r != VG_EVENT_OK)
        return r;
    return verdict(detail, VG_EVENT_OK, "event is valid");
}

void vg_event_meta_encode(const vg_event_t *ev, uint8_t out[VG_EVENT_META_LEN])
{
    uint64_t u;
    memcpy(&u, &ev->heart_rate, sizeof u); /* the IEEE-754 bits, written little-endian */
    vg_put_le64(out, u);
    vg_put_le64(out + 8, (uint64_t)ev->steps);
    vg_put_le64(out + 16, (uint64_t)ev->ts_ms);
}

int vg_event_meta_decode(const uint8_t *meta, size_t len, double *heart_rate, int64_t *steps, int64_t *ts_ms)
{
    uint64_t u;
    if (!meta || len < VG_EVENT_META_LEN) /* user properties may follow */
        return VG_EINVAL;
    /* memcpy rather than casts: converting a uint64_t above INT64_MAX to
     * int64_t is implementation-defined, copying the bits is not. */
    if (heart_rate) {
        u = vg_get_le64(meta);
        memcpy(heart_rate, &u, sizeof u);
    }
    if (steps) {
        u = vg_get_le64(meta + 8);
        memcpy(steps, &u, sizeof u);
    }
    if (ts_ms) {
        u = vg_get_le64(meta + 16);
        memcpy(ts_ms, &u, sizeof u);
    }
    return VG_OK;
}
