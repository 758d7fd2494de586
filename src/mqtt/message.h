/* message.h — an application message as the server routes, queues, retains
 * and persists it: topic, payload, QoS, retain flag, expiry and the MQTT 5
 * properties that travel with it (payload format, content type, response
 * topic, correlation data, user properties).
 *
 * Immutable once built and shared by reference count between every
 * subscriber queue, worker inbox and the retained store that holds it; the
 * per-delivery parts (packet id, DUP, topic alias, subscription ids,
 * remaining expiry) are chosen when it is encoded for one client.
 *
 * Also owns the message's serialized form (vg_msg_serialize / vg_msg_parse),
 * used for persistent-session queues and retained messages on disk. */
#ifndef VG_MQTT_MESSAGE_H
#define VG_MQTT_MESSAGE_H

#include "mqtt/codec.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vg_msg {
    atomic_uint refs;
    uint8_t qos;            /* as published */
    bool retain;            /* as published */
    uint32_t topic_len;
    uint32_t payload_len;
    int64_t expire_at_ms;   /* wall clock; 0 = never (MQTT 5 message expiry) */
    const void *origin;     /* publishing session, compared for "no local"; never dereferenced */
    /* Properties carried to subscribers. Spans point into data[]. Only the
     * message-level ones are ever set: payload format, content type,
     * response topic, correlation data, user properties. */
    vg_mqtt_props_t props;
    char data[];            /* topic, payload, then property bytes */
} vg_msg_t;

/* Builds a message from a decoded PUBLISH (or a will): copies topic, payload
 * and the message-level properties of `props` (may be NULL); expiry comes
 * from props' message expiry interval relative to now_ms. Returns NULL on
 * allocation failure. The caller owns the one reference. */
vg_msg_t *vg_msg_new(const uint8_t *topic, size_t tlen, const uint8_t *payload, size_t plen, uint8_t qos, bool retain,
                     const vg_mqtt_props_t *props, int64_t now_ms);

static inline void vg_msg_ref(vg_msg_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}
void vg_msg_unref(vg_msg_t *m);

static inline const uint8_t *vg_msg_topic(const vg_msg_t *m)
{
    return (const uint8_t *)m->data;
}
static inline const uint8_t *vg_msg_payload(const vg_msg_t *m)
{
    return (const uint8_t *)m->data + m->topic_len;
}

/* True when the message has an expiry that has passed at now_ms. */
static inline bool vg_msg_expired(const vg_msg_t *m, int64_t now_ms)
{
    return m->expire_at_ms && now_ms >= m->expire_at_ms;
}

/* Serialized form (little-endian; version byte first so it can evolve):
 *   u8  version (1)        u8 flags (bit0-1 qos, bit2 retain, bit3 has payload format)
 *   u8  payload format     u8 reserved
 *   i64 expire_at_ms
 *   u32 topic len, u32 payload len, u32 content type len, u32 response topic len,
 *   u32 correlation data len, u32 user props len, u32 user prop count
 *   then the bytes in that order.
 * vg_msg_serialized_size gives the exact size; vg_msg_serialize writes it
 * into out (which must hold that many bytes). vg_msg_parse builds a new
 * message from a blob (NULL on a malformed or truncated blob: the loader
 * counts and skips it). */
size_t vg_msg_serialized_size(const vg_msg_t *m);
void vg_msg_serialize(const vg_msg_t *m, uint8_t *out);
vg_msg_t *vg_msg_parse(const uint8_t *blob, size_t len);

#endif
