/* alert.c — alert ids, JSON rendering and the alerts stream's record meta
 * (formats in alert.h).
 *
 * Owns: the id derivation and the one place the alert JSON is written, so
 * the MQTT message, the stream record and the webhook body are the same
 * bytes, and the one place it is read back by consumers (the simulator's
 * judge, vigil eval). Does not own: when events happen (lifecycle.c) or
 * delivery. */
#include "alert/alert.h"

#include "core/bytes.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/json.h"
#include "stream/shardmap.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *vg_alert_event_name(vg_alert_event_kind_t k)
{
    switch (k) {
    case VG_AEV_OPEN: return "OPEN";
    case VG_AEV_UPDATE: return "UPDATE";
    case VG_AEV_RESOLVED: return "RESOLVED";
    case VG_AEV_ACK: return "ACKNOWLEDGED";
    default: return "NONE";
    }
}

/* The first 64 bits of MD5 of the text: MD5 is already what partition
 * keys hash with (shardmap), and ids only need to be stable and well
 * spread, not secret. 0 is reserved for "free slot". */
static uint64_t id_of(const char *text, size_t len)
{
    uint64_t v = (uint64_t)(vg_shardmap_hash(text, len) >> 64);
    return v ? v : 1;
}

uint64_t vg_alert_id(const char *dev_id, size_t dev_len, vg_alert_type_t type, uint64_t open_seq, int64_t opened_at_ms)
{
    char key[VG_ALERT_KEY_MAX];
    int n = snprintf(key, sizeof key, "%.*s|%s|%llu|%lld", (int)dev_len, dev_id, vg_alert_type_name(type),
                     (unsigned long long)open_seq, (long long)opened_at_ms);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof key)
        n = (int)sizeof key - 1;
    return id_of(key, (size_t)n);
}

uint64_t vg_alert_event_id(uint64_t alert_id, vg_alert_event_kind_t kind, uint16_t revision)
{
    char key[64];
    int n = snprintf(key, sizeof key, "%016llx|%s|%u", (unsigned long long)alert_id, vg_alert_event_name(kind),
                     (unsigned)revision);
    return id_of(key, (size_t)n);
}

int vg_alert_id_parse(const char *s, size_t len, uint64_t *out)
{
    if (len != 16)
        return VG_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return VG_EINVAL;
        v = v << 4 | d;
    }
    *out = v;
    return VG_OK;
}

/* Appends printf output to out at *pos; sets *pos to cap on overflow. */
static void put(char *out, size_t cap, size_t *pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(char *out, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (*pos >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    *pos = n < 0 || (size_t)n >= cap - *pos ? cap : *pos + (size_t)n;
}

static int put_str(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (*pos >= cap)
        return VG_ETOOBIG;
    int e = vg_json_escape(s, n, out + *pos, cap - *pos);
    if (e < 0)
        return e;
    *pos += (size_t)e;
    return VG_OK;
}

/* JSON numbers: %.10g never prints NaN/inf as JSON would reject them. */
static double finite(double v)
{
    return v == v && v < 1e300 && v > -1e300 ? v : 0.0;
}

int vg_alert_render(const vg_alert_json_t *a, char *out, size_t cap)
{
    size_t pos = 0;
    char iso[40];
    vg_clock_format_iso(a->event_time_ms, iso, sizeof iso);
    put(out, cap, &pos,
        "{\"eventId\":\"%016llx\",\"alertId\":\"%016llx\",\"event\":\"%s\",\"revision\":%u,\"deviceId\":\"",
        (unsigned long long)a->event_id, (unsigned long long)a->alert_id, vg_alert_event_name(a->kind),
        (unsigned)a->revision);
    if (put_str(out, cap, &pos, a->dev_id, a->dev_len))
        return VG_ETOOBIG;
    put(out, cap, &pos,
        "\",\"type\":\"%s\",\"category\":\"%s\",\"severity\":\"%s\",\"value\":%.10g,\"threshold\":%.10g,"
        "\"evidence\":{\"windowMs\":%lld,\"samples\":%u,\"minHr\":%.6g,\"meanHr\":%.6g,\"maxHr\":%.6g,"
        "\"activeShare\":%.4g},"
        "\"openedAtMs\":%lld,\"eventTimeMs\":%lld,\"timestamp\":\"%s\",\"shard\":%u,\"seq\":%llu,\"openSeq\":%llu,"
        "\"detectedAtMs\":%lld,\"acknowledged\":%s",
        vg_alert_type_name(a->type), vg_alert_type_is_cardiac(a->type) ? "cardiac" : "data_quality",
        vg_severity_name(a->severity), finite(a->value), finite(a->threshold), (long long)a->window_ms, a->samples,
        finite(a->min_hr), finite(a->mean_hr), finite(a->max_hr), finite(a->active_share),
        (long long)a->opened_at_ms, (long long)a->event_time_ms, iso, a->shard, (unsigned long long)a->seq,
        (unsigned long long)a->open_seq, (long long)a->detected_at_ms, a->acked ? "true" : "false");
    if (a->kind == VG_AEV_ACK) {
        put(out, cap, &pos, ",\"ack\":{\"by\":\"");
        const char *by = a->ack_by ? a->ack_by : "";
        const char *note = a->ack_note ? a->ack_note : "";
        if (put_str(out, cap, &pos, by, strlen(by)))
            return VG_ETOOBIG;
        put(out, cap, &pos, "\",\"note\":\"");
        if (put_str(out, cap, &pos, note, strlen(note)))
            return VG_ETOOBIG;
        put(out, cap, &pos, "\",\"atMs\":%lld}", (long long)a->ack_at_ms);
    }
    put(out, cap, &pos, "}");
    if (pos >= cap)
        return VG_ETOOBIG;
    return (int)pos;
}

void vg_alert_meta_encode(uint8_t out[VG_ALERT_META_LEN], uint64_t source_seq, vg_alert_type_t type,
                          vg_alert_event_kind_t kind, uint16_t revision, uint64_t event_id, uint64_t alert_id)
{
    vg_put_le64(out, source_seq);
    out[8] = (uint8_t)type;
    out[9] = (uint8_t)kind;
    vg_put_le16(out + 10, revision);
    vg_put_le64(out + 12, event_id);
    vg_put_le64(out + 20, alert_id);
}

int vg_alert_meta_decode(const uint8_t *meta, size_t len, uint64_t *source_seq, uint8_t *type, uint8_t *kind,
                         uint16_t *revision, uint64_t *event_id, uint64_t *alert_id)
{
    if (len != VG_ALERT_META_LEN)
        return VG_EINVAL;
    if (source_seq)
        *source_seq = vg_get_le64(meta);
    if (type)
        *type = meta[8];
    if (kind)
        *kind = meta[9];
    if (revision)
        *revision = vg_get_le16(meta + 10);
    if (event_id)
        *event_id = vg_get_le64(meta + 12);
    if (alert_id)
        *alert_id = vg_get_le64(meta + 20);
    return VG_OK;
}

static bool member_is(const vg_json_member_t *m, const char *s)
{
    size_t n = strlen(s);
    return m->key && m->type == VG_JSON_STRING && m->raw_len == n && memcmp(m->raw, s, n) == 0;
}

int vg_alert_json_read(const char *p, size_t len, vg_alert_seen_t *out)
{
    enum { F_ID, F_TYPE, F_CATEGORY, F_EVENT, F_TIME, F_OPENED, F_ALERT, F_N };
    static const char *const names[F_N] = {"deviceId", "type",       "category", "event",
                                           "eventTimeMs", "openedAtMs", "alertId"};
    vg_json_member_t f[F_N];
    memset(out, 0, sizeof *out);
    out->kind = VG_AEV_OPEN;
    if (vg_json_object_pick(p, len, VG_JSON_DEFAULT_DEPTH, names, F_N, f, NULL) != VG_OK)
        return VG_EMALFORMED;
    out->device_id = f[F_ID];
    out->type = f[F_TYPE];
    out->category = f[F_CATEGORY];
    out->event = f[F_EVENT];
    if (f[F_EVENT].key) {
        static const char *const kinds[] = {[VG_AEV_OPEN] = "OPEN", [VG_AEV_UPDATE] = "UPDATE",
                                            [VG_AEV_RESOLVED] = "RESOLVED", [VG_AEV_ACK] = "ACKNOWLEDGED"};
        out->lifecycle = true;
        out->kind = 0;
        for (int k = VG_AEV_OPEN; k <= VG_AEV_ACK; k++)
            if (member_is(&f[F_EVENT], kinds[k]))
                out->kind = k;
    }
    out->has_event_time = f[F_TIME].key && vg_json_int64(&f[F_TIME], &out->event_time_ms) == VG_OK;
    out->has_opened_at = f[F_OPENED].key && vg_json_int64(&f[F_OPENED], &out->opened_at_ms) == VG_OK;
    if (!out->has_event_time)
        out->event_time_ms = 0;
    if (!out->has_opened_at)
        out->opened_at_ms = 0;
    uint64_t id;
    if (f[F_ALERT].key && f[F_ALERT].type == VG_JSON_STRING &&
        vg_alert_id_parse(f[F_ALERT].raw, f[F_ALERT].raw_len, &id) == VG_OK)
        out->alert_id = id;
    return VG_OK;
}
