/* payload.c — see payload.h.
 *
 * The template is built once with blank fields of fixed width; rendering
 * copies it and fills the blanks right-aligned. The widths below are wide
 * enough for every value device.c can produce; put_int clamps anyway so a
 * bug can never spill into the neighbouring field. */
#include "sim/payload.h"

#include "core/clock.h"
#include "core/err.h"
#include "core/json.h"
#include "mqtt/codec.h"

#include <stdio.h>
#include <string.h>

enum {
    W_SEQ = 10,
    W_HR = 3,
    W_STEPS = 5,
    W_ACTIVITY = 9, /* "walking" with its quotes */
    W_PCT = 3,
    W_TEMP = 4, /* 31.0 .. 35.5 */
    W_FW = 8,
    W_MODEL = 13,
    W_RSSI = 4,
    W_ACCEL = 5, /* -1680 .. 1680 milli-g */
    W_TS = 24,   /* 2026-11-25T20:00:00.123Z */
};

/* Per-device constants, indexed by vg_simdev_t.firmware / .model; each table
 * has entries of one length, quotes included. */
static const char *const firmware_names[4] = {"\"4.2.17\"", "\"4.2.18\"", "\"4.3.02\"", "\"5.0.01\""};
static const char *const model_names[4] = {"\"VigilBand 3\"", "\"VigilBand 4\"", "\"PulseLite 2\"", "\"CardioFit X\""};
static const char *const activity_names[3] = {"   \"rest\"", "\"walking\"", "\"running\""};

typedef struct {
    char *buf;
    size_t cap, len;
    int overflow;
} builder_t;

static void lit(builder_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

/* Appends a blank field of width w and returns its offset. */
static uint16_t blank(builder_t *b, size_t w)
{
    uint16_t off = (uint16_t)b->len;
    if (b->len + w > b->cap) {
        b->overflow = 1;
        return 0;
    }
    memset(b->buf + b->len, ' ', w);
    b->len += w;
    return off;
}

/* Writes v right-aligned in p[0..w) padded with spaces, clamped to what fits. */
static void put_int(uint8_t *p, int w, long v)
{
    long maxv = 1;
    for (int i = 0; i < w; i++)
        maxv *= 10;
    long minv = -(maxv / 10 - 1);
    maxv -= 1;
    if (v > maxv)
        v = maxv;
    if (v < minv)
        v = minv;
    int neg = v < 0;
    unsigned long u = neg ? (unsigned long)-v : (unsigned long)v;
    int i = w - 1;
    do {
        p[i--] = (uint8_t)('0' + u % 10);
        u /= 10;
    } while (u && i >= 0);
    if (neg && i >= 0)
        p[i--] = '-';
    while (i >= 0)
        p[i--] = ' ';
}

/* Writes a value given in tenths as "d.d" right-aligned in p[0..w). */
static void put_dec1(uint8_t *p, int w, int tenths)
{
    if (tenths < 0)
        tenths = 0;
    put_int(p, w - 2, tenths / 10);
    p[w - 2] = '.';
    p[w - 1] = (uint8_t)('0' + tenths % 10);
}

unsigned vg_simpayload_id_width(uint32_t n)
{
    unsigned w = 1;
    for (uint32_t last = n ? n - 1 : 0; last >= 10; last /= 10)
        w++;
    return w < 6 ? 6 : w;
}

int vg_simpayload_prefix_valid(const char *prefix)
{
    size_t n = strlen(prefix);
    if (n > VG_SIMPAYLOAD_MAX_PREFIX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)prefix[i];
        if (c <= ' ' || c >= 0x7f || strchr("\"\\/+#", c))
            return 0;
    }
    return 1;
}

int vg_simpayload_device_id(const char *prefix, unsigned width, uint32_t index, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%0*u", prefix, (int)width, index);
    return n < 0 || (size_t)n >= cap ? VG_ENOSPC : n;
}

int vg_simpayload_init(vg_simpayload_t *t, const char *topic, const char *prefix, unsigned id_width, int qos)
{
    char json[VG_SIMPAYLOAD_MAX];
    char esc[2 * VG_SIMPAYLOAD_MAX_PREFIX + 8];
    memset(t, 0, sizeof *t);
    size_t tlen = strlen(topic);
    if ((qos != 0 && qos != 1) || id_width > 10 || tlen > VG_SIMPAYLOAD_MAX_TOPIC ||
        !vg_mqtt_topic_valid((const uint8_t *)topic, tlen) || !vg_simpayload_prefix_valid(prefix))
        return VG_EINVAL;
    int elen = vg_json_escape(prefix, strlen(prefix), esc, sizeof esc - 1);
    if (elen < 0)
        return VG_EINVAL;
    esc[elen] = '\0';

    builder_t b = {.buf = json, .cap = sizeof json};
    lit(&b, "{\"deviceId\":\"");
    lit(&b, esc);
    t->off_id = blank(&b, id_width);
    t->id_width = (uint8_t)id_width;
    lit(&b, "\",\"seq\":");
    t->off_seq = blank(&b, W_SEQ);
    lit(&b, ",\"timestamp\":\"");
    t->off_ts = blank(&b, W_TS);
    lit(&b, "\",\"heartRate\":");
    t->off_hr = blank(&b, W_HR);
    lit(&b, ",\"steps\":");
    t->off_steps = blank(&b, W_STEPS);
    lit(&b, ",\"activity\":");
    t->off_activity = blank(&b, W_ACTIVITY);
    lit(&b, ",\"battery\":");
    t->off_battery = blank(&b, W_PCT);
    lit(&b, ",\"charging\":false,\"spo2\":");
    t->off_spo2 = blank(&b, W_PCT);
    lit(&b, ",\"hrvMs\":");
    t->off_hrv = blank(&b, W_PCT);
    lit(&b, ",\"respRate\":");
    t->off_resp = blank(&b, W_PCT);
    lit(&b, ",\"skinTempC\":");
    t->off_temp = blank(&b, W_TEMP);
    lit(&b, ",\"firmware\":");
    t->off_fw = blank(&b, W_FW);
    lit(&b, ",\"model\":");
    t->off_model = blank(&b, W_MODEL);
    lit(&b, ",\"hwRev\":\"C2\",\"signal\":{\"link\":\"BLE\",\"rssi\":");
    t->off_rssi = blank(&b, W_RSSI);
    lit(&b, ",\"txPowerDbm\":0},\"accel\":{\"unit\":\"mg\",\"hz\":50,\"samples\":[");
    for (int i = 0; i < 9; i++) {
        lit(&b, i % 3 == 0 ? (i ? "],[" : "[") : ",");
        t->off_accel[i] = blank(&b, W_ACCEL);
    }
    lit(&b, "]]},\"location\":{\"tz\":\"Europe/Berlin\",\"indoor\":true},\"schema\":\"vigil.wearable.v1\"}");
    if (b.overflow)
        return VG_ENOSPC;

    vg_mqtt_publish_t p = {
        .qos = (uint8_t)qos,
        .topic = {(const uint8_t *)topic, tlen},
        .packet_id = qos ? 1 : 0,
        .payload = {(const uint8_t *)json, b.len},
    };
    int n = vg_mqtt_encode_publish(t->pkt, sizeof t->pkt, VG_MQTT_V311, &p);
    if (n < 0)
        return n == VG_ENOSPC ? VG_ENOSPC : VG_EINVAL;
    t->pkt_len = (uint16_t)n;
    t->json_len = (uint16_t)b.len;
    t->json_off = (uint16_t)(n - (int)b.len);
    t->pid_off = qos ? (uint16_t)(t->json_off - 2) : 0;
    /* Make every field offset absolute in the packet. */
    uint16_t *offs[] = {&t->off_id,       &t->off_seq,     &t->off_ts,    &t->off_hr,  &t->off_steps,
                        &t->off_activity, &t->off_battery, &t->off_spo2,  &t->off_hrv, &t->off_resp,
                        &t->off_temp,     &t->off_fw,      &t->off_model, &t->off_rssi};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        *offs[i] = (uint16_t)(*offs[i] + t->json_off);
    for (int i = 0; i < 9; i++)
        t->off_accel[i] = (uint16_t)(t->off_accel[i] + t->json_off);
    return VG_OK;
}

size_t vg_simpayload_render(const vg_simpayload_t *t, vg_simpayload_clock_t *clk, uint8_t *out, uint16_t pid,
                            const vg_simdev_t *d, const vg_simdev_sample_t *s)
{
    memcpy(out, t->pkt, t->pkt_len);
    if (t->pid_off) {
        out[t->pid_off] = (uint8_t)(pid >> 8);
        out[t->pid_off + 1] = (uint8_t)pid;
    }
    /* Zero-padded device number: digits right to left. */
    uint32_t idx = d->index;
    for (int i = t->id_width - 1; i >= 0; i--) {
        out[t->off_id + i] = (uint8_t)('0' + idx % 10);
        idx /= 10;
    }
    put_int(out + t->off_seq, W_SEQ, (long)s->seq);

    int64_t sec = s->ts_ms / 1000;
    if (!clk->valid || clk->sec != sec) {
        vg_clock_format_iso(sec * 1000, clk->text, sizeof clk->text);
        clk->sec = sec;
        clk->valid = 1;
    }
    uint8_t *ts = out + t->off_ts;
    memcpy(ts, clk->text, 20); /* "YYYY-MM-DDTHH:MM:SS." */
    int ms = (int)(s->ts_ms % 1000);
    ts[20] = (uint8_t)('0' + ms / 100);
    ts[21] = (uint8_t)('0' + ms / 10 % 10);
    ts[22] = (uint8_t)('0' + ms % 10);
    ts[23] = 'Z';

    put_int(out + t->off_hr, W_HR, s->heart_rate);
    put_int(out + t->off_steps, W_STEPS, s->steps);
    memcpy(out + t->off_activity, activity_names[s->activity % 3], W_ACTIVITY);
    put_int(out + t->off_battery, W_PCT, s->battery);
    put_int(out + t->off_spo2, W_PCT, s->spo2);
    put_int(out + t->off_hrv, W_PCT, s->hrv_ms);
    put_int(out + t->off_resp, W_PCT, s->resp_rate);
    put_dec1(out + t->off_temp, W_TEMP, s->skin_temp_dc);
    memcpy(out + t->off_fw, firmware_names[d->firmware & 3], W_FW);
    memcpy(out + t->off_model, model_names[d->model & 3], W_MODEL);
    put_int(out + t->off_rssi, W_RSSI, s->rssi);
    for (int i = 0; i < 9; i++)
        put_int(out + t->off_accel[i], W_ACCEL, s->accel_mg[i]);
    return t->pkt_len;
}
