/* test_event.c — unit tests for core/event: the accepted payloads, every
 * rejection reason with its detail sentence, the ISO-8601 parser (zones,
 * fractions, calendar validity, checked against timegm for every day of the
 * accepted range) and the meta encoding. */
#include "core/err.h"
#include "core/event.h"
#include "vt.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

#define EV(dev, hr, steps, ts) "{\"deviceId\":" dev ",\"heartRate\":" hr ",\"steps\":" steps ",\"timestamp\":" ts "}"
#define GOOD                   EV("\"w-1\"", "72.5", "10", "\"2023-06-01T12:34:56Z\"")

static vg_event_reason_t parse(const char *s, vg_event_t *ev, const char **detail)
{
    return vg_event_parse(s, strlen(s), ev, detail);
}

static int64_t iso(const char *s)
{
    int64_t ms = -1;
    return vg_event_parse_iso8601(s, strlen(s), &ms) == VG_OK ? ms : INT64_MIN;
}

static void test_valid_event(void)
{
    vg_event_t ev;
    const char *detail = NULL;
    VT_EQ_INT(parse(GOOD, &ev, &detail), VG_EVENT_OK);
    VT_CHECK(strcmp(ev.device_id, "w-1") == 0 && ev.device_id_len == 3);
    VT_CHECK(ev.heart_rate == 72.5);
    VT_EQ_INT(ev.steps, 10);
    VT_EQ_INT(ev.ts_ms, 1685622896000LL);
    VT_CHECK(detail != NULL);

    /* Order, whitespace, extra and nested fields do not matter. */
    const char *doc = " {\n \"extra\": {\"deviceId\": 5, \"x\": [1, [2, {\"y\": null}]]},\n"
                      " \"timestamp\": \"2024-02-29T23:59:59.999+00:00\", \"steps\": 0,\n"
                      " \"battery\": 0.5, \"heartRate\": 300, \"deviceId\": \"d\\u00e9v\\\"1\\\"\", \"ok\": true }\n";
    VT_EQ_INT(parse(doc, &ev, NULL), VG_EVENT_OK);
    VT_CHECK(strcmp(ev.device_id, "d\xc3\xa9v\"1\"") == 0 && ev.device_id_len == 7);
    VT_CHECK(ev.heart_rate == 300.0);
    VT_EQ_INT(ev.steps, 0);
    VT_EQ_INT(ev.ts_ms, 1709251199999LL);

    /* Many extra fields before the real ones. */
    char big[8192];
    size_t o = (size_t)snprintf(big, sizeof big, "{");
    for (int i = 0; i < 300; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "\"f%d\":%d,", i, i);
    snprintf(big + o, sizeof big - o, "\"deviceId\":\"x\",\"heartRate\":60,\"steps\":1,\"timestamp\":946684800000}");
    VT_EQ_INT(parse(big, &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(ev.ts_ms, 946684800000LL);

    /* Escaped keys are the same keys. */
    VT_EQ_INT(
        parse("{\"devic\\u0065Id\":\"a\",\"heartRate\":1,\"st\\u0065ps\":2,\"timestamp\":\"2001-01-01T00:00:00Z\"}",
              &ev, NULL),
        VG_EVENT_OK);
    VT_CHECK(strcmp(ev.device_id, "a") == 0);
}

static void test_timestamp_forms(void)
{
    vg_event_t ev;
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "1700000000000"), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(ev.ts_ms, 1700000000000LL);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "1.7e12"), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(ev.ts_ms, 1700000000000LL);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "946684800000"), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "4102444800000"), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "946684799999"), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "4102444800001"), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "1700000000000.5"), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "-1700000000000"), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "1e400"), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "1700000000"), &ev, NULL), VG_EVENT_BAD_TIMESTAMP); /* seconds, 1970 */
    /* Range edges as text, including zones that move the instant across them. */
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"2000-01-01T00:00:00Z\""), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"2100-01-01T00:00:00Z\""), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"1999-12-31T23:59:59.999Z\""), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"2100-01-01T00:00:00.001Z\""), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"2000-01-01T00:30:00+01:00\""), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"1999-12-31T23:30:00-01:00\""), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"2023-02-29T00:00:00Z\""), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"yesterday\""), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"\""), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
    /* A timestamp written with escapes is decoded first. */
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"2023\\u002d06-01T12:34:56\\u005a\""), &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(ev.ts_ms, 1685622896000LL);
    VT_EQ_INT(parse(EV("\"a\"", "70", "1", "\"2023-06-01T12:34:56\\n\""), &ev, NULL), VG_EVENT_BAD_TIMESTAMP);
}

static void check_reason(const char *payload, vg_event_reason_t want, const char *word)
{
    vg_event_t ev;
    const char *detail = NULL;
    vg_event_reason_t r = vg_event_parse(payload, strlen(payload), &ev, &detail);
    if (r != want || !detail || (word && !strstr(detail, word)))
        printf("  %s -> %s (%s), wanted %s naming %s\n", payload, vg_event_reason_name(r), detail ? detail : "-",
               vg_event_reason_name(want), word ? word : "-");
    VT_EQ_INT(r, want);
    VT_CHECK(detail != NULL);
    if (word && detail)
        VT_CHECK(strstr(detail, word) != NULL);
    /* The detail pointer is optional. */
    VT_EQ_INT(vg_event_parse(payload, strlen(payload), &ev, NULL), want);
}

/* A valid event with an extra field of `arrays` nested empty arrays. */
static void deep_event(char buf[512], int arrays)
{
    size_t o = (size_t)snprintf(buf, 512,
                                "{\"deviceId\":\"a\",\"heartRate\":1,\"steps\":1,"
                                "\"timestamp\":946684800000,\"x\":");
    for (int i = 0; i < arrays; i++)
        buf[o++] = '[';
    for (int i = 0; i < arrays; i++)
        buf[o++] = ']';
    buf[o++] = '}';
    buf[o] = '\0';
}

static void test_reasons(void)
{
    check_reason("", VG_EVENT_NOT_JSON, "JSON");
    check_reason("not json", VG_EVENT_NOT_JSON, "JSON");
    check_reason("{\"deviceId\":\"a\",}", VG_EVENT_NOT_JSON, "JSON");
    check_reason(GOOD "x", VG_EVENT_NOT_JSON, "JSON");
    check_reason("{\"deviceId\":\"\xc0\x80\",\"heartRate\":1,\"steps\":1,\"timestamp\":946684800000}",
                 VG_EVENT_NOT_JSON, "JSON");
    check_reason("[]", VG_EVENT_NOT_OBJECT, "object");
    check_reason("[" GOOD "]", VG_EVENT_NOT_OBJECT, "object");
    check_reason("\"x\"", VG_EVENT_NOT_OBJECT, "object");
    check_reason("72", VG_EVENT_NOT_OBJECT, "object");
    check_reason("null", VG_EVENT_NOT_OBJECT, "object");

    /* The object itself is one level, so 31 nested arrays reach the limit of
     * 32 and 32 arrays exceed it. */
    char deep[512];
    deep_event(deep, 32);
    check_reason(deep, VG_EVENT_TOO_DEEP, "deep");
    deep_event(deep, 31);
    check_reason(deep, VG_EVENT_OK, NULL);

    check_reason("{}", VG_EVENT_MISSING_FIELD, "deviceId");
    check_reason("{\"heartRate\":1,\"steps\":1,\"timestamp\":946684800000}", VG_EVENT_MISSING_FIELD, "deviceId");
    check_reason("{\"deviceId\":\"a\",\"steps\":1,\"timestamp\":946684800000}", VG_EVENT_MISSING_FIELD, "heartRate");
    check_reason("{\"deviceId\":\"a\",\"heartRate\":1,\"timestamp\":946684800000}", VG_EVENT_MISSING_FIELD, "steps");
    check_reason("{\"deviceId\":\"a\",\"heartRate\":1,\"steps\":1}", VG_EVENT_MISSING_FIELD, "timestamp");
    /* Keys are case-sensitive, and a nested field is not a top-level one. */
    check_reason("{\"deviceid\":\"a\",\"heartRate\":1,\"steps\":1,\"timestamp\":946684800000}", VG_EVENT_MISSING_FIELD,
                 "deviceId");
    check_reason("{\"x\":{\"deviceId\":\"a\"},\"heartRate\":1,\"steps\":1,\"timestamp\":946684800000}",
                 VG_EVENT_MISSING_FIELD, "deviceId");
    /* Missing is reported before a bad type elsewhere. */
    check_reason("{\"deviceId\":1,\"heartRate\":1,\"steps\":1}", VG_EVENT_MISSING_FIELD, "timestamp");

    check_reason(EV("7", "70", "1", "946684800000"), VG_EVENT_BAD_TYPE, "deviceId");
    check_reason(EV("null", "70", "1", "946684800000"), VG_EVENT_BAD_TYPE, "deviceId");
    check_reason(EV("[\"a\"]", "70", "1", "946684800000"), VG_EVENT_BAD_TYPE, "deviceId");
    check_reason(EV("\"a\"", "\"70\"", "1", "946684800000"), VG_EVENT_BAD_TYPE, "heartRate");
    check_reason(EV("\"a\"", "true", "1", "946684800000"), VG_EVENT_BAD_TYPE, "heartRate");
    check_reason(EV("\"a\"", "70", "\"1\"", "946684800000"), VG_EVENT_BAD_TYPE, "steps");
    check_reason(EV("\"a\"", "70", "{}", "946684800000"), VG_EVENT_BAD_TYPE, "steps");
    check_reason(EV("\"a\"", "70", "1", "true"), VG_EVENT_BAD_TYPE, "timestamp");
    check_reason(EV("\"a\"", "70", "1", "null"), VG_EVENT_BAD_TYPE, "timestamp");
    check_reason(EV("\"a\"", "70", "1", "{\"ms\":1}"), VG_EVENT_BAD_TYPE, "timestamp");

    check_reason(EV("\"\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\\u0001b\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\\nb\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"\\u0000\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\\u007f\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\x7f\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\\u0085\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\xc2\x9f\"", "70", "1", "946684800000"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\xc2\xa0\"", "70", "1", "946684800000"), VG_EVENT_OK, NULL); /* U+00A0 is not a control */

    check_reason(EV("\"a\"", "0", "1", "946684800000"), VG_EVENT_BAD_HEART_RATE, "heartRate");
    check_reason(EV("\"a\"", "-0", "1", "946684800000"), VG_EVENT_BAD_HEART_RATE, "heartRate");
    check_reason(EV("\"a\"", "-1", "1", "946684800000"), VG_EVENT_BAD_HEART_RATE, "heartRate");
    check_reason(EV("\"a\"", "300.0001", "1", "946684800000"), VG_EVENT_BAD_HEART_RATE, "heartRate");
    check_reason(EV("\"a\"", "1e400", "1", "946684800000"), VG_EVENT_BAD_HEART_RATE, "heartRate");
    check_reason(EV("\"a\"", "1e-400", "1", "946684800000"), VG_EVENT_BAD_HEART_RATE, "heartRate");
    check_reason(EV("\"a\"", "300", "1", "946684800000"), VG_EVENT_OK, NULL);
    check_reason(EV("\"a\"", "3e2", "1", "946684800000"), VG_EVENT_OK, NULL);
    check_reason(EV("\"a\"", "0.001", "1", "946684800000"), VG_EVENT_OK, NULL);

    check_reason(EV("\"a\"", "70", "-1", "946684800000"), VG_EVENT_BAD_STEPS, "steps");
    check_reason(EV("\"a\"", "70", "1.5", "946684800000"), VG_EVENT_BAD_STEPS, "steps");
    check_reason(EV("\"a\"", "70", "100001", "946684800000"), VG_EVENT_BAD_STEPS, "steps");
    check_reason(EV("\"a\"", "70", "1e400", "946684800000"), VG_EVENT_BAD_STEPS, "steps");
    check_reason(EV("\"a\"", "70", "9223372036854775808", "946684800000"), VG_EVENT_BAD_STEPS, "steps");
    check_reason(EV("\"a\"", "70", "-9223372036854775808", "946684800000"), VG_EVENT_BAD_STEPS, "steps");
    check_reason(EV("\"a\"", "70", "100000", "946684800000"), VG_EVENT_OK, NULL);
    check_reason(EV("\"a\"", "70", "1e5", "946684800000"), VG_EVENT_OK, NULL);
    check_reason(EV("\"a\"", "70", "2.0", "946684800000"), VG_EVENT_OK, NULL);
    check_reason(EV("\"a\"", "70", "-0", "946684800000"), VG_EVENT_OK, NULL);

    check_reason(EV("\"a\"", "70", "1", "\"2023-13-01T00:00:00Z\""), VG_EVENT_BAD_TIMESTAMP, "timestamp");
    check_reason(EV("\"a\"", "70", "1", "1.5"), VG_EVENT_BAD_TIMESTAMP, "timestamp");
    check_reason(EV("\"a\"", "70", "1", "\"1990-01-01T00:00:00Z\""), VG_EVENT_BAD_TIMESTAMP, "timestamp");

    /* Field order decides which of several problems is reported. */
    check_reason(EV("\"\"", "0", "-1", "true"), VG_EVENT_BAD_DEVICE_ID, "deviceId");
    check_reason(EV("\"a\"", "0", "-1", "true"), VG_EVENT_BAD_HEART_RATE, "heartRate");
    check_reason(EV("\"a\"", "1", "-1", "true"), VG_EVENT_BAD_STEPS, "steps");
}

static void test_device_id_length(void)
{
    char id[200], doc[600];
    vg_event_t ev;
    memset(id, 'x', sizeof id);

    snprintf(doc, sizeof doc, EV("\"%.*s\"", "70", "1", "946684800000"), 128, id);
    VT_EQ_INT(parse(doc, &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(ev.device_id_len, 128);
    VT_EQ_INT(strlen(ev.device_id), 128);
    snprintf(doc, sizeof doc, EV("\"%.*s\"", "70", "1", "946684800000"), 129, id);
    VT_EQ_INT(parse(doc, &ev, NULL), VG_EVENT_BAD_DEVICE_ID);
    snprintf(doc, sizeof doc, EV("\"%.*s\"", "70", "1", "946684800000"), 199, id);
    VT_EQ_INT(parse(doc, &ev, NULL), VG_EVENT_BAD_DEVICE_ID);

    /* The limit is on decoded bytes: 64 escapes of a 2-byte character are
     * 384 bytes of text but exactly 128 bytes of id. */
    size_t o = (size_t)snprintf(doc, sizeof doc, "{\"deviceId\":\"");
    for (int i = 0; i < 64; i++)
        o += (size_t)snprintf(doc + o, sizeof doc - o, "\\u00e9");
    snprintf(doc + o, sizeof doc - o, "\",\"heartRate\":70,\"steps\":1,\"timestamp\":946684800000}");
    VT_EQ_INT(parse(doc, &ev, NULL), VG_EVENT_OK);
    VT_EQ_INT(ev.device_id_len, 128);
    o = (size_t)snprintf(doc, sizeof doc, "{\"deviceId\":\"a");
    for (int i = 0; i < 64; i++)
        o += (size_t)snprintf(doc + o, sizeof doc - o, "\\u00e9");
    snprintf(doc + o, sizeof doc - o, "\",\"heartRate\":70,\"steps\":1,\"timestamp\":946684800000}");
    VT_EQ_INT(parse(doc, &ev, NULL), VG_EVENT_BAD_DEVICE_ID);
}

static void test_duplicates(void)
{
    vg_event_t ev;
    VT_EQ_INT(parse("{\"deviceId\":\"first\",\"heartRate\":70,\"steps\":1,\"timestamp\":946684800000,"
                    "\"deviceId\":\"second\",\"heartRate\":\"bad\"}",
                    &ev, NULL),
              VG_EVENT_OK);
    VT_CHECK(strcmp(ev.device_id, "first") == 0 && ev.heart_rate == 70.0);
    VT_EQ_INT(
        parse("{\"heartRate\":\"bad\",\"deviceId\":\"a\",\"heartRate\":70,\"steps\":1,\"timestamp\":946684800000}", &ev,
              NULL),
        VG_EVENT_BAD_TYPE);
    /* An escaped spelling counts as an occurrence too. */
    VT_EQ_INT(
        parse("{\"h\\u0065artRate\":0,\"deviceId\":\"a\",\"heartRate\":70,\"steps\":1,\"timestamp\":946684800000}", &ev,
              NULL),
        VG_EVENT_BAD_HEART_RATE);
}

static void test_reason_names(void)
{
    static const char *const want[VG_EVENT__COUNT] = {
        "ok", "not_json", "not_object", "too_deep", "missing_field", "bad_type", "bad_device_id", "bad_heart_rate",
        "bad_steps", "bad_timestamp", "identity_mismatch",
    };
    for (int r = 0; r < VG_EVENT__COUNT; r++)
        VT_CHECK(strcmp(vg_event_reason_name((vg_event_reason_t)r), want[r]) == 0);
    VT_CHECK(strcmp(vg_event_reason_name(VG_EVENT__COUNT), "unknown") == 0);
    VT_CHECK(strcmp(vg_event_reason_name((vg_event_reason_t)-1), "unknown") == 0);
}

static void test_iso_basic(void)
{
    VT_EQ_INT(iso("2023-06-01T12:34:56Z"), 1685622896000LL);
    VT_EQ_INT(iso("2023-06-01t12:34:56z"), 1685622896000LL);
    VT_EQ_INT(iso("2023-06-01 12:34:56Z"), 1685622896000LL);
    VT_EQ_INT(iso("2023-06-01T12:34:56"), 1685622896000LL); /* no zone: UTC */
    VT_EQ_INT(iso("1970-01-01T00:00:00Z"), 0);
    VT_EQ_INT(iso("1969-12-31T23:59:59.999Z"), -1);
    VT_EQ_INT(iso("2038-01-19T03:14:08Z"), 2147483648000LL);
    VT_EQ_INT(iso("2000-01-01T00:00:00Z"), 946684800000LL);
    VT_EQ_INT(iso("2100-01-01T00:00:00Z"), 4102444800000LL);
    VT_EQ_INT(iso("2024-02-29T23:59:59Z"), 1709251199000LL);
    /* A leap second reads as the first second of the next minute. */
    VT_EQ_INT(iso("2016-12-31T23:59:60Z"), 1483228800000LL);
    VT_EQ_INT(iso("2016-12-31T23:59:59Z"), 1483228799000LL);
    /* Not NUL-terminated: only len bytes are read. */
    const char *s = "2023-06-01T12:34:56Zgarbage";
    int64_t ms = 0;
    VT_CHECK(vg_event_parse_iso8601(s, 20, &ms) == VG_OK && ms == 1685622896000LL);
    VT_CHECK(vg_event_parse_iso8601(s, 19, &ms) == VG_OK && ms == 1685622896000LL);
    VT_EQ_INT(vg_event_parse_iso8601(s, 21, &ms), VG_EINVAL);
    VT_EQ_INT(vg_event_parse_iso8601(s, 18, &ms), VG_EINVAL);
    VT_EQ_INT(vg_event_parse_iso8601(NULL, 0, &ms), VG_EINVAL);
}

static void test_iso_fraction(void)
{
    VT_EQ_INT(iso("2023-06-01T12:34:56.1Z") - iso("2023-06-01T12:34:56Z"), 100);
    VT_EQ_INT(iso("2023-06-01T12:34:56.12Z") - iso("2023-06-01T12:34:56Z"), 120);
    VT_EQ_INT(iso("2023-06-01T12:34:56.123Z") - iso("2023-06-01T12:34:56Z"), 123);
    VT_EQ_INT(iso("2023-06-01T12:34:56.1234Z") - iso("2023-06-01T12:34:56Z"), 123);
    VT_EQ_INT(iso("2023-06-01T12:34:56.12345Z") - iso("2023-06-01T12:34:56Z"), 123);
    VT_EQ_INT(iso("2023-06-01T12:34:56.123456Z") - iso("2023-06-01T12:34:56Z"), 123);
    VT_EQ_INT(iso("2023-06-01T12:34:56.1234567Z") - iso("2023-06-01T12:34:56Z"), 123);
    VT_EQ_INT(iso("2023-06-01T12:34:56.12345678Z") - iso("2023-06-01T12:34:56Z"), 123);
    VT_EQ_INT(iso("2023-06-01T12:34:56.123456789Z") - iso("2023-06-01T12:34:56Z"), 123);
    VT_EQ_INT(iso("2023-06-01T12:34:56.999999999Z") - iso("2023-06-01T12:34:56Z"), 999); /* truncated, not rounded */
    VT_EQ_INT(iso("2023-06-01T12:34:56.000Z") - iso("2023-06-01T12:34:56Z"), 0);
    VT_EQ_INT(iso("2023-06-01T12:34:56.05") - iso("2023-06-01T12:34:56Z"), 50);
    VT_EQ_INT(iso("2023-06-01T12:34:56.0012345678901234567890123456789+00:00") - iso("2023-06-01T12:34:56Z"), 1);
    VT_EQ_INT(iso("2023-06-01T12:34:56.Z"), INT64_MIN);
    VT_EQ_INT(iso("2023-06-01T12:34:56."), INT64_MIN);
    VT_EQ_INT(iso("2023-06-01T12:34:56,5Z"), INT64_MIN);
    VT_EQ_INT(iso("2023-06-01T12:34:56.5.5Z"), INT64_MIN);
    VT_EQ_INT(iso("2023-06-01T12:34:56.-5Z"), INT64_MIN);
}

static void test_iso_zones(void)
{
    int64_t utc = iso("2023-06-01T12:34:56Z");
    VT_EQ_INT(iso("2023-06-01T12:34:56+00:00"), utc);
    VT_EQ_INT(iso("2023-06-01T12:34:56-00:00"), utc);
    VT_EQ_INT(iso("2023-06-01T14:34:56+02:00"), utc);
    VT_EQ_INT(iso("2023-06-01T18:04:56+05:30"), utc);
    VT_EQ_INT(iso("2023-06-01T18:04:56+0530"), utc);
    VT_EQ_INT(iso("2023-06-01T04:34:56-08:00"), utc);
    VT_EQ_INT(iso("2023-06-01T04:34:56-0800"), utc);
    VT_EQ_INT(iso("2023-06-02T02:34:56+14:00"), utc);
    VT_EQ_INT(iso("2023-05-31T12:35:56-23:59"), utc);
    VT_EQ_INT(iso("2023-06-01T18:04:56.250+05:30"), utc + 250);
    static const char *const bad[] = {
        "2023-06-01T12:34:56+24:00", "2023-06-01T12:34:56+05:60", "2023-06-01T12:34:56+5:30", "2023-06-01T12:34:56+05",
        "2023-06-01T12:34:56+05:3", "2023-06-01T12:34:56+05:300", "2023-06-01T12:34:56+053",
        "2023-06-01T12:34:56+05-30", "2023-06-01T12:34:56ZZ", "2023-06-01T12:34:56Z ", "2023-06-01T12:34:56 Z",
        "2023-06-01T12:34:56UTC", "2023-06-01T12:34:56GMT", "2023-06-01T12:34:56Z+01:00", "2023-06-01T12:34:56+01:00Z",
        "2023-06-01T12:34:56+aa:bb", "2023-06-01T12:34:56*01:00", "2023-06-01T12:34:56+",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (iso(bad[i]) != INT64_MIN)
            printf("  accepted %s\n", bad[i]);
        VT_EQ_INT(iso(bad[i]), INT64_MIN);
    }
}

static void test_iso_invalid(void)
{
    static const char *const bad[] = {
        "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2023-04-31T00:00:00Z",
        "2023-06-31T00:00:00Z", "2023-09-31T00:00:00Z", "2023-11-31T00:00:00Z", "2023-01-32T00:00:00Z",
        "2023-13-01T00:00:00Z", "2023-00-10T00:00:00Z", "2023-01-00T00:00:00Z", "2023-01-01T24:00:00Z",
        "2023-01-01T23:60:00Z", "2023-01-01T23:59:61Z", "2023-01-01T99:00:00Z", "2023-6-01T00:00:00Z",
        "2023-06-1T00:00:00Z", "2023-06-01T0:00:00Z", "2023-06-01T12:34Z", "2023-06-01", "2023-06-01T",
        "2023/06/01T00:00:00Z", "2023-06-01_00:00:00Z", "2023-06-01T00-00-00Z", "+2023-06-01T00:00:00Z",
        "-2023-06-01T00:00:00Z", " 2023-06-01T00:00:00Z", "2023-06-01T00:00:00 ", "20230601T000000Z",
        "2023-06-01T00:00:0aZ", "2O23-06-01T00:00:00Z", "", "2023-06-01T12:34:56\n", "12023-06-01T00:00:00Z",
        "2023-06-01T12:34:5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (iso(bad[i]) != INT64_MIN)
            printf("  accepted %s\n", bad[i]);
        VT_EQ_INT(iso(bad[i]), INT64_MIN);
    }
    /* Leap years that are valid. */
    VT_CHECK(iso("2024-02-29T00:00:00Z") != INT64_MIN);
    VT_CHECK(iso("2000-02-29T00:00:00Z") != INT64_MIN);
    VT_CHECK(iso("2400-02-29T00:00:00Z") != INT64_MIN);
    VT_CHECK(iso("2023-12-31T23:59:59Z") != INT64_MIN);
}

/* Every day of 1999..2101 at a varying time of day, against timegm. */
static void test_iso_against_timegm(void)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int checked = 0, wrong = 0;
    for (int y = 1999; y <= 2101; y++) {
        for (int mo = 1; mo <= 12; mo++) {
            int days = dim[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
            for (int d = 1; d <= days; d++) {
                struct tm tm = {.tm_year = y - 1900,
                                .tm_mon = mo - 1,
                                .tm_mday = d,
                                .tm_hour = (d * 7) % 24,
                                .tm_min = (d * 13) % 60,
                                .tm_sec = (d * 17) % 60};
                int64_t want = (int64_t)timegm(&tm) * 1000;
                char s[40];
                snprintf(s, sizeof s, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, tm.tm_hour, tm.tm_min, tm.tm_sec);
                if (iso(s) != want && wrong++ < 5)
                    printf("  %s: %lld != %lld\n", s, (long long)iso(s), (long long)want);
                checked++;
            }
            char s[40];
            snprintf(s, sizeof s, "%04d-%02d-%02dT00:00:00Z", y, mo, days + 1);
            if (iso(s) != INT64_MIN && wrong++ < 5)
                printf("  accepted %s\n", s);
        }
    }
    VT_EQ_INT(wrong, 0);
    VT_CHECK(checked > 37000);
}

static void test_meta(void)
{
    vg_event_t ev = {.heart_rate = 72.5, .steps = 0x0102030405060708LL, .ts_ms = -2};
    uint8_t meta[VG_EVENT_META_LEN];
    vg_event_meta_encode(&ev, meta);
    /* 72.5 is 0x4052200000000000 as an IEEE-754 double. */
    static const uint8_t want[VG_EVENT_META_LEN] = {
        0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x52, 0x40, 0x08, 0x07, 0x06, 0x05,
        0x04, 0x03, 0x02, 0x01, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    };
    VT_CHECK(memcmp(meta, want, sizeof want) == 0);

    double hr = 0;
    int64_t steps = 0, ts = 0;
    VT_EQ_INT(vg_event_meta_decode(meta, sizeof meta, &hr, &steps, &ts), VG_OK);
    VT_CHECK(hr == 72.5);
    VT_EQ_INT(steps, 0x0102030405060708LL);
    VT_EQ_INT(ts, -2);
    VT_EQ_INT(vg_event_meta_decode(meta, sizeof meta - 1, &hr, &steps, &ts), VG_EINVAL);
    /* Longer meta is fine: the telemetry record puts MQTT 5 user properties
     * after the parsed fields (ingest.h); only the first 24 bytes are read. */
    uint8_t longer[VG_EVENT_META_LEN + 7];
    memcpy(longer, meta, sizeof meta);
    memset(longer + sizeof meta, 0xEE, 7);
    VT_EQ_INT(vg_event_meta_decode(longer, sizeof longer, &hr, &steps, &ts), VG_OK);
    VT_CHECK(hr == 72.5);
    VT_EQ_INT(ts, -2);
    VT_EQ_INT(vg_event_meta_decode(meta, 0, &hr, &steps, &ts), VG_EINVAL);
    VT_EQ_INT(vg_event_meta_decode(meta, sizeof meta, NULL, NULL, &ts), VG_OK);

    /* Roundtrip from a parsed event, and through the extremes. */
    VT_REQUIRE(parse(EV("\"w\"", "61.25", "99999", "\"2099-12-31T23:59:59.999Z\""), &ev, NULL) == VG_EVENT_OK);
    vg_event_meta_encode(&ev, meta);
    VT_EQ_INT(vg_event_meta_decode(meta, sizeof meta, &hr, &steps, &ts), VG_OK);
    VT_CHECK(hr == ev.heart_rate && steps == ev.steps && ts == ev.ts_ms);
    ev.heart_rate = -0.0;
    ev.steps = INT64_MIN;
    ev.ts_ms = INT64_MAX;
    vg_event_meta_encode(&ev, meta);
    VT_EQ_INT(vg_event_meta_decode(meta, sizeof meta, &hr, &steps, &ts), VG_OK);
    VT_CHECK(hr == 0.0 && signbit(hr) && steps == INT64_MIN && ts == INT64_MAX);
}

int main(void)
{
    VT_RUN(test_valid_event);
    VT_RUN(test_timestamp_forms);
    VT_RUN(test_reasons);
    VT_RUN(test_device_id_length);
    VT_RUN(test_duplicates);
    VT_RUN(test_reason_names);
    VT_RUN(test_iso_basic);
    VT_RUN(test_iso_fraction);
    VT_RUN(test_iso_zones);
    VT_RUN(test_iso_invalid);
    VT_RUN(test_iso_against_timegm);
    VT_RUN(test_meta);
    return VT_DONE();
}
