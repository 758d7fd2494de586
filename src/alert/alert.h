/* alert.h — the alert event: what the lifecycle emits, how it is rendered
 * and stored. (Implementation: alert.c, by the lifecycle's owner.)
 *
 * One episode = one alert, identified by alertId. Its life is a series of
 * events, each a separate record in the `alerts` stream and a separate MQTT
 * message on `alerts/<deviceId>` (QoS 1, not retained):
 *   OPEN          the condition was detected             (revision 0)
 *   UPDATE        escalation: severity rose               (revision + 1)
 *   ACKNOWLEDGED  an operator acknowledged it (MQTT)      (revision unchanged)
 *   RESOLVED      the condition cleared (detector hysteresis; revision + 1); last event
 *
 * Determinism: alertId = first 16 hex digits of MD5("<deviceId>|<TYPE>|<openSeq>|<openedAtMs>")
 * and eventId = first 16 hex digits of MD5("<alertId>|<event>|<revision>"),
 * so a replay after a crash produces byte-identical ids and consumers can
 * drop duplicates by eventId.
 *
 * JSON (one object, keys in this order; numbers plain JSON numbers):
 *   {"eventId":"0123456789abcdef","alertId":"fedcba9876543210",
 *    "event":"OPEN"|"UPDATE"|"ACKNOWLEDGED"|"RESOLVED","revision":0,
 *    "deviceId":"w-17","type":"SUSTAINED_HIGH_HR_AT_REST",
 *    "category":"cardiac"|"data_quality","severity":"info"|"warning"|"critical",
 *    "value":128.4,"threshold":120,
 *    "evidence":{"windowMs":600000,"samples":118,"minHr":119,"meanHr":128.4,"maxHr":141,
 *                "activeShare":0.0},
 *    "openedAtMs":1764100000000,   event time at which the episode began (detector's at_ms)
 *    "eventTimeMs":1764100480000,  event time of the sample (or stream time of the tick) that caused this event
 *    "timestamp":"2025-11-25T19:54:40.000Z",  eventTimeMs as ISO-8601
 *    "shard":3,"seq":123456,       telemetry stream shard and the source record's sequence number
 *    "openSeq":123400,             the record whose sample opened the episode
 *    "detectedAtMs":1764190000123, wall clock when the processor emitted it
 *    "acknowledged":false,         true on every event after an acknowledgement
 *    "ack":{"by":"nurse-7","note":"called patient","atMs":1764190000999}   only on ACKNOWLEDGED
 *   }
 * For a tick (time passing: DATA_GAP, DEVICE_OFFLINE) "seq" is the record
 * being processed when the timer fired (or, while idle, the last one
 * processed), and eventTimeMs the shard's stream time. DATA_GAP and
 * DEVICE_OFFLINE have openSeq 0 however they were noticed (lifecycle.h).
 *
 * Alerts stream record: key = deviceId; meta (28 bytes, little-endian) =
 *   off 0  u64 source seq (telemetry seq, or the shard's last processed seq
 *              for a tick or an acknowledgement)
 *   off 8  u8  type (vg_alert_type_t)
 *   off 9  u8  event (1 OPEN, 2 UPDATE, 3 RESOLVED, 4 ACKNOWLEDGED)
 *   off 10 u16 revision
 *   off 12 u64 eventId (the 16 hex digits as a number)
 *   off 20 u64 alertId;
 * value = the JSON above. */
#ifndef VG_ALERT_ALERT_H
#define VG_ALERT_ALERT_H

#include "core/event.h"
#include "core/json.h"
#include "detect/detect.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VG_ALERT_META_LEN 28
/* Longest id key text: device id + type name + two numbers. */
#define VG_ALERT_KEY_MAX (VG_EVENT_MAX_DEVICE_ID + 96)

typedef enum { VG_AEV_OPEN = 1, VG_AEV_UPDATE = 2, VG_AEV_RESOLVED = 3, VG_AEV_ACK = 4 } vg_alert_event_kind_t;

/* "OPEN", "UPDATE", "RESOLVED", "ACKNOWLEDGED". */
const char *vg_alert_event_name(vg_alert_event_kind_t k);

/* The deterministic ids (see above); never 0. */
uint64_t vg_alert_id(const char *dev_id, size_t dev_len, vg_alert_type_t type, uint64_t open_seq, int64_t opened_at_ms);
uint64_t vg_alert_event_id(uint64_t alert_id, vg_alert_event_kind_t kind, uint16_t revision);

/* Parses 16 lowercase/uppercase hex digits. VG_EINVAL otherwise. */
int vg_alert_id_parse(const char *s, size_t len, uint64_t *out);

/* Everything an event's JSON says. */
typedef struct {
    vg_alert_event_kind_t kind;
    vg_alert_type_t type;
    vg_severity_t severity;
    uint64_t alert_id, event_id;
    uint16_t revision;
    bool acked;
    const char *dev_id;
    size_t dev_len;
    double value, threshold;
    uint32_t samples;
    double min_hr, mean_hr, max_hr, active_share;
    int64_t window_ms;
    int64_t opened_at_ms, event_time_ms, detected_at_ms;
    uint32_t shard;
    uint64_t seq, open_seq;
    const char *ack_by, *ack_note; /* ACKNOWLEDGED only; NULL otherwise */
    int64_t ack_at_ms;
} vg_alert_json_t;

/* Renders the JSON into out (cap bytes). Returns its length, or VG_ETOOBIG. */
int vg_alert_render(const vg_alert_json_t *a, char *out, size_t cap);

/* What a consumer (the simulator's judge, vigil eval) reads back from one
 * event's JSON, or from the older one-message format without "event",
 * where every message is a new alert. The members are as found (key NULL
 * when absent, any JSON type: consumers check the type they need, raw
 * string text still escaped); the rest is decoded:
 *   lifecycle        "event" is present
 *   kind             VG_AEV_* named by "event"; VG_AEV_OPEN without one; 0
 *                    for anything else (another name, not a string)
 *   event_time_ms    "eventTimeMs" as an integer (has_event_time)
 *   opened_at_ms     "openedAtMs" as an integer (has_opened_at)
 *   alert_id         "alertId"'s 16 hex digits; 0 when absent or of another form */
typedef struct {
    vg_json_member_t device_id, type, category, event;
    bool lifecycle;
    int kind;
    bool has_event_time, has_opened_at;
    int64_t event_time_ms, opened_at_ms;
    uint64_t alert_id;
} vg_alert_seen_t;

/* Reads p[0..len). VG_OK, or VG_EMALFORMED when it is not a JSON object
 * (then *out is zeroed except kind, VG_AEV_OPEN, as for an old-format
 * message: the caller decides what an unreadable alert counts as). */
int vg_alert_json_read(const char *p, size_t len, vg_alert_seen_t *out);

/* The stream record's meta (VG_ALERT_META_LEN bytes). */
void vg_alert_meta_encode(uint8_t out[VG_ALERT_META_LEN], uint64_t source_seq, vg_alert_type_t type,
                          vg_alert_event_kind_t kind, uint16_t revision, uint64_t event_id, uint64_t alert_id);
/* VG_EINVAL if len is not VG_ALERT_META_LEN. Any out pointer may be NULL. */
int vg_alert_meta_decode(const uint8_t *meta, size_t len, uint64_t *source_seq, uint8_t *type, uint8_t *kind,
                         uint16_t *revision, uint64_t *event_id, uint64_t *alert_id);

#endif
