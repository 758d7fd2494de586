/* event.h — the wearable telemetry event: validation of the JSON payload
 * devices publish and the compact parsed form that travels with the record.
 *
 * Payload contract (as the reference simulator sends it):
 *   {"deviceId": string, "heartRate": number, "steps": integer,
 *    "timestamp": ISO-8601 string | epoch milliseconds, ...extra fields kept}
 * The raw payload is stored unchanged in the stream; the parsed fields are
 * stored beside it (record "meta", vg_event_meta_t) so that later stages never
 * parse the JSON again. */
#ifndef VG_CORE_EVENT_H
#define VG_CORE_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define VG_EVENT_MAX_DEVICE_ID 128

typedef struct {
    char device_id[VG_EVENT_MAX_DEVICE_ID + 1]; /* decoded, NUL-terminated */
    size_t device_id_len;
    double heart_rate;  /* bpm */
    int64_t steps;      /* count since previous event, >= 0 */
    int64_t ts_ms;      /* event time, epoch milliseconds (UTC) */
} vg_event_t;

/* Reasons an event is rejected; each has a stable name for metrics and the
 * dead-letter record. */
typedef enum {
    VG_EVENT_OK = 0,
    VG_EVENT_NOT_JSON,          /* not valid JSON */
    VG_EVENT_NOT_OBJECT,        /* valid JSON but not an object */
    VG_EVENT_TOO_DEEP,          /* nesting beyond the limit */
    VG_EVENT_MISSING_FIELD,     /* one of the four fields is absent */
    VG_EVENT_BAD_TYPE,          /* a field has the wrong JSON type */
    VG_EVENT_BAD_DEVICE_ID,     /* empty, too long, or control characters */
    VG_EVENT_BAD_HEART_RATE,    /* not in (0, 300] bpm */
    VG_EVENT_BAD_STEPS,         /* negative, fractional, or > 100000 */
    VG_EVENT_BAD_TIMESTAMP,     /* unparseable, or outside 2000-01-01..2100-01-01 */
    VG_EVENT_IDENTITY_MISMATCH, /* deviceId is not the device the connection authenticated as (ingest) */
    VG_EVENT__COUNT
} vg_event_reason_t;

/* Parses and validates payload[0..len). Returns VG_EVENT_OK and fills *ev,
 * or the reason it was rejected; *detail (may be NULL) receives a static
 * human-readable sentence such as "heartRate must be a number". */
vg_event_reason_t vg_event_parse(const char *payload, size_t len, vg_event_t *ev, const char **detail);

/* Stable snake_case name of a reason ("bad_heart_rate"). */
const char *vg_event_reason_name(vg_event_reason_t r);

/* Parses ISO-8601 / RFC 3339 date-time text: "YYYY-MM-DDTHH:MM:SS" with an
 * optional fraction (any number of digits, truncated to ms) and a zone of
 * "Z", "+HH:MM", "-HH:MM" or "+HHMM" (no zone = UTC). 't'/' ' accepted as
 * separator. Returns VG_OK or VG_EINVAL. */
int vg_event_parse_iso8601(const char *s, size_t len, int64_t *ms);

/* The parsed fields as stored in a stream record's meta area: 24 bytes,
 * little-endian: f64 heart_rate, i64 steps, i64 ts_ms. */
#define VG_EVENT_META_LEN 24
void vg_event_meta_encode(const vg_event_t *ev, uint8_t out[VG_EVENT_META_LEN]);
/* Returns VG_OK or VG_EINVAL if len != VG_EVENT_META_LEN. */
int vg_event_meta_decode(const uint8_t *meta, size_t len, double *heart_rate, int64_t *steps, int64_t *ts_ms);

#endif
