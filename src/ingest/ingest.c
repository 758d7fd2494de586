/* ingest.c — see ingest.h.
 *
 * Dead-letter record value (JSON, one object):
 *   {"reason":"<vg_event_reason_name>","detail":"<sentence>","topic":"…",
 *    "clientId":"…","arrivalMs":N,"payload":"<payload as text, only if it is
 *    valid UTF-8>","payloadBase64":"<payload, base64>"}
 * partition key = client id (truncated to the record key limit). */
#include "ingest/ingest.h"

#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"
#include "mqtt/codec.h"

#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct vg_ingest {
    vg_ingest_opts_t o;
    _Atomic(vg_ingest_complete_fn) complete;
    void *_Atomic complete_ctx;
    atomic_uint_fast64_t accepted, deadletter, failed;
    atomic_uint_fast64_t reasons[VG_EVENT__COUNT];
};

int vg_ingest_new(const vg_ingest_opts_t *o, vg_ingest_t **out)
{
    vg_ingest_t *in = vg_calloc(VG_MEM_PROC, 1, sizeof *in);
    if (!in)
        return VG_ENOMEM;
    in->o = *o;
    atomic_store(&in->complete, o->complete);
    atomic_store(&in->complete_ctx, o->complete_ctx);
    *out = in;
    return VG_OK;
}

void vg_ingest_free(vg_ingest_t *in)
{
    vg_free(in);
}

void vg_ingest_set_complete(vg_ingest_t *in, vg_ingest_complete_fn fn, void *ctx)
{
    atomic_store(&in->complete_ctx, ctx);
    atomic_store(&in->complete, fn);
}

static void on_durable(void *ctx, int status, uint32_t shard, uint64_t seq, uint64_t token)
{
    vg_ingest_t *in = ctx;
    vg_ingest_complete_fn fn = atomic_load(&in->complete);
    if (fn)
        fn(atomic_load(&in->complete_ctx), token, status);
}

/* Appends a dead letter; returns the append's result. */
static int dead_letter(vg_ingest_t *in, vg_event_reason_t reason, const char *detail, const char *client_id,
                       size_t client_id_len, const uint8_t *payload, size_t len, int64_t arrival_ms, uint64_t token)
{
    const char *topic = in->o.topic ? in->o.topic : "";
    bool text = vg_mqtt_utf8_valid(payload, len);
    size_t cap = 256 + strlen(detail) + 2 * strlen(topic) + 6 * client_id_len + (text ? 6 * len : 0) +
                 4 * ((len + 2) / 3) + 8;
    char *buf = vg_malloc(VG_MEM_PROC, cap);
    if (!buf)
        return VG_ENOMEM;
    size_t n = 0;
    int k;
    n += (size_t)snprintf(buf + n, cap - n, "{\"reason\":\"%s\",\"detail\":\"", vg_event_reason_name(reason));
    k = vg_json_escape(detail, strlen(detail), buf + n, cap - n);
    n += k > 0 ? (size_t)k : 0;
    n += (size_t)snprintf(buf + n, cap - n, "\",\"topic\":\"");
    k = vg_json_escape(topic, strlen(topic), buf + n, cap - n);
    n += k > 0 ? (size_t)k : 0;
    n += (size_t)snprintf(buf + n, cap - n, "\",\"clientId\":\"");
    k = vg_json_escape(client_id, client_id_len, buf + n, cap - n);
    n += k > 0 ? (size_t)k : 0;
    n += (size_t)snprintf(buf + n, cap - n, "\",\"arrivalMs\":%lld", (long long)arrival_ms);
    if (text) {
        n += (size_t)snprintf(buf + n, cap - n, ",\"payload\":\"");
        k = vg_json_escape((const char *)payload, len, buf + n, cap - n);
        n += k > 0 ? (size_t)k : 0;
        buf[n++] = '"';
    }
    n += (size_t)snprintf(buf + n, cap - n, ",\"payloadBase64\":\"");
    n += (size_t)EVP_EncodeBlock((unsigned char *)buf + n, payload, (int)len);
    n += (size_t)snprintf(buf + n, cap - n, "\"}");
    size_t klen = client_id_len > VG_RECORD_MAX_KEY ? VG_RECORD_MAX_KEY : client_id_len;
    int rc = vg_log_append(in->o.deadletter, client_id, klen, NULL, 0, buf, n, arrival_ms, token ? on_durable : NULL,
                           in, token, NULL, NULL);
    vg_free(buf);
    atomic_fetch_add_explicit(&in->deadletter, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&in->reasons[reason], 1, memory_order_relaxed);
    return rc;
}

int vg_ingest_publish(void *ctx, const char *client_id, size_t client_id_len, const char *identity,
                      size_t identity_len, const uint8_t *payload, size_t payload_len, const uint8_t *user_props,
                      size_t user_props_len, int64_t arrival_ms, uint64_t token)
{
    vg_ingest_t *in = ctx;
    vg_event_t ev;
    const char *detail = NULL;
    vg_event_reason_t reason = vg_event_parse((const char *)payload, payload_len, &ev, &detail);
    int rc;
    if (reason != VG_EVENT_OK) {
        rc = dead_letter(in, reason, detail ? detail : "invalid event", client_id, client_id_len, payload,
                         payload_len, arrival_ms, token);
    } else if (identity && (ev.device_id_len != identity_len || memcmp(ev.device_id, identity, identity_len) != 0)) {
        rc = dead_letter(in, VG_EVENT_IDENTITY_MISMATCH, "deviceId is not the authenticated device", client_id,
                         client_id_len, payload, payload_len, arrival_ms, token);
    } else if (user_props_len > VG_RECORD_MAX_META - VG_EVENT_META_LEN) {
        rc = dead_letter(in, VG_EVENT_BAD_DEVICE_ID, "MQTT user properties exceed the record's metadata limit", client_id,
                         client_id_len, payload, payload_len, arrival_ms, token);
    } else {
        /* Record meta: the parsed fields, then the PUBLISH's MQTT 5 user
         * properties as their raw wire run (see ingest.h). */
        uint8_t meta[VG_RECORD_MAX_META];
        vg_event_meta_encode(&ev, meta);
        if (user_props_len)
            memcpy(meta + VG_EVENT_META_LEN, user_props, user_props_len);
        rc = vg_log_append(in->o.telemetry, ev.device_id, ev.device_id_len, meta, VG_EVENT_META_LEN + user_props_len,
                           payload, payload_len, arrival_ms, token ? on_durable : NULL, in, token, NULL, NULL);
        if (rc == VG_ETOOBIG) {
            rc = dead_letter(in, VG_EVENT_BAD_DEVICE_ID, "record exceeds the stream's size limits", client_id,
                             client_id_len, payload, payload_len, arrival_ms, token);
        } else if (rc == VG_OK) {
            atomic_fetch_add_explicit(&in->accepted, 1, memory_order_relaxed);
        }
    }
    if (rc != VG_OK)
        atomic_fetch_add_explicit(&in->failed, 1, memory_order_relaxed);
    return rc;
}

void vg_ingest_stats(vg_ingest_t *in, vg_ingest_stats_t *out)
{
    out->accepted = atomic_load_explicit(&in->accepted, memory_order_relaxed);
    out->deadletter = atomic_load_explicit(&in->deadletter, memory_order_relaxed);
    out->failed = atomic_load_explicit(&in->failed, memory_order_relaxed);
    for (int i = 0; i < VG_EVENT__COUNT; i++)
        out->reasons[i] = atomic_load_explicit(&in->reasons[i], memory_order_relaxed);
}

void vg_ingest_flush(void *ctx)
{
    vg_ingest_t *in = ctx;
    (void)vg_log_flush(in->o.telemetry);
}
