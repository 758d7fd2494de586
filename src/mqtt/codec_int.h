/* codec_int.h — the MQTT codec's internal header: what its three files
 * share. Included only by src/mqtt/codec.c, encode.c and props.c; the public
 * contract is codec.h.
 *
 * Files (one noun each; every file opens with what it owns):
 *   codec.c   the string and topic rules (§1.5.3, §4.7), framing, decoding
 *   encode.c  encoding packets into the caller's buffer
 *   props.c   the 5.0 property table (read, measure, write), the reason-code
 *             table, packet and reason names
 *
 * Here: the protocol version of a level, the reason-code checks, the
 * per-packet property sets and flag bits both directions use, the read
 * cursor and the big-endian writers. The cursor and writers are static
 * inline because they run per field on the hot path; everything else
 * shared is a codec_ function defined once. */
#ifndef VG_MQTT_CODEC_INT_H
#define VG_MQTT_CODEC_INT_H

#include "mqtt/codec.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- versions and reason codes ----------------------------------------- */

/* 4 for the 3.1.1 layout (levels 3 and 4 share it), 5 for 5.0, 0 for a level
 * we do not speak (a caller bug: the level comes from an accepted CONNECT). */
static inline int codec_version(uint8_t level)
{
    return level == VG_MQTT_V5 ? 5 : level == VG_MQTT_V311 || level == VG_MQTT_V31 ? 4 : 0;
}

/* Bit t of codec_reason_types[rc]: reason code rc may appear in a packet of
 * type t (props.c, which has the table and its sources). */
extern const uint16_t codec_reason_types[256];

static inline bool codec_reason_ok(uint8_t type, uint8_t rc)
{
    return (codec_reason_types[rc] >> type) & 1;
}

/* 3.1.1 SUBACK return codes (3.1.1 §3.9.3). */
static inline bool codec_suback_rc_valid(uint8_t rc)
{
    return rc <= 2 || rc == VG_MQTT_SUBACK_FAILURE;
}

/* ---- property sets and flag bits ---------------------------------------- */

#define PB(name) VG_PROP_BIT(VG_PROP_##name)

/* Which properties each packet may carry (v5 §2.2.2.2's table). PR_ACK
 * serves PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK alike. */
#define PR_WILL                                                                                                        \
    (PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) | PB(RESPONSE_TOPIC) | PB(CORRELATION_DATA) |          \
     PB(WILL_DELAY) | PB(USER))
#define PR_CONNECT                                                                                                     \
    (PB(SESSION_EXPIRY) | PB(AUTH_METHOD) | PB(AUTH_DATA) | PB(REQUEST_PROBLEM_INFO) | PB(REQUEST_RESPONSE_INFO) |     \
     PB(RECEIVE_MAX) | PB(TOPIC_ALIAS_MAX) | PB(USER) | PB(MAX_PACKET_SIZE))
#define PR_CONNACK                                                                                                     \
    (PB(SESSION_EXPIRY) | PB(ASSIGNED_CLIENT_ID) | PB(SERVER_KEEPALIVE) | PB(AUTH_METHOD) | PB(AUTH_DATA) |            \
     PB(RESPONSE_INFO) | PB(SERVER_REFERENCE) | PB(REASON_STRING) | PB(RECEIVE_MAX) | PB(TOPIC_ALIAS_MAX) |            \
     PB(MAX_QOS) | PB(RETAIN_AVAILABLE) | PB(USER) | PB(MAX_PACKET_SIZE) | PB(WILDCARD_SUB_AVAILABLE) |                \
     PB(SUB_ID_AVAILABLE) | PB(SHARED_SUB_AVAILABLE))
#define PR_PUBLISH                                                                                                     \
    (PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) | PB(RESPONSE_TOPIC) | PB(CORRELATION_DATA) |          \
     PB(SUBSCRIPTION_ID) | PB(TOPIC_ALIAS) | PB(USER))
#define PR_ACK (PB(REASON_STRING) | PB(USER))
#define PR_SUBSCRIBE (PB(SUBSCRIPTION_ID) | PB(USER))
#define PR_UNSUBSCRIBE PB(USER)
#define PR_DISCONNECT (PB(SESSION_EXPIRY) | PB(SERVER_REFERENCE) | PB(REASON_STRING) | PB(USER))
#define PR_AUTH (PB(AUTH_METHOD) | PB(AUTH_DATA) | PB(REASON_STRING) | PB(USER))
#define PR_ALL (PR_WILL | PR_CONNECT | PR_CONNACK | PR_PUBLISH | PR_DISCONNECT | PR_AUTH)

/* Connect flags (§3.1.2.3). */
#define CF_RESERVED 0x01
#define CF_CLEAN 0x02
#define CF_WILL 0x04
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20
#define CF_PASSWORD 0x40
#define CF_USERNAME 0x80

/* Subscription options (v5 §3.8.3.1): bits 0-1 maximum QoS, 2 no local, 3
 * retain as published, 4-5 retain handling, 6-7 reserved. 3.1.1 has only
 * the QoS and reserves the rest. */
#define SO_QOS 0x03
#define SO_NO_LOCAL 0x04
#define SO_RAP 0x08
#define SO_RH_SHIFT 4
#define SO_RESERVED 0xC0

/* ---- reading ------------------------------------------------------------ */

/* A read cursor over body[0..len). Indices, not pointers, so that a NULL
 * body with len 0 never has an offset applied to it. */
typedef struct {
    const uint8_t *b;
    size_t len;
    size_t off;
} codec_rd_t;

static inline bool codec_rd_u8(codec_rd_t *r, uint8_t *v)
{
    if (r->len - r->off < 1)
        return false;
    *v = r->b[r->off++];
    return true;
}

static inline bool codec_rd_u16(codec_rd_t *r, uint16_t *v)
{
    if (r->len - r->off < 2)
        return false;
    *v = (uint16_t)(r->b[r->off] << 8 | r->b[r->off + 1]);
    r->off += 2;
    return true;
}

static inline bool codec_rd_u32(codec_rd_t *r, uint32_t *v)
{
    if (r->len - r->off < 4)
        return false;
    const uint8_t *p = r->b + r->off;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    r->off += 4;
    return true;
}

/* A variable byte integer inside a 5.0 body: at most four bytes, and in its
 * shortest form (v5 §1.5.5), which is the case exactly when its last byte
 * is not zero or it is a single byte. Requiring it makes every value have
 * one encoding, so re-encoding a decoded packet gives its bytes back. */
static inline bool codec_rd_vbi(codec_rd_t *r, uint32_t *v)
{
    uint32_t x = 0;

    for (unsigned i = 0; i < 4; i++) {
        uint8_t b;
        if (!codec_rd_u8(r, &b))
            return false;
        x |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                return false;
            *v = x;
            return true;
        }
    }
    return false;
}

/* A length-prefixed string or binary field (§1.5.3). */
static inline bool codec_rd_str(codec_rd_t *r, vg_bytes_t *s)
{
    uint16_t n;
    if (!codec_rd_u16(r, &n) || r->len - r->off < n)
        return false;
    s->p = r->b + r->off;
    s->len = n;
    r->off += n;
    return true;
}

/* Reads a properties block valid for a packet that allows `allowed` into
 * *pr (props.c). */
int codec_rd_props(codec_rd_t *r, uint64_t allowed, vg_mqtt_props_t *pr);

/* ---- writing ------------------------------------------------------------ */

static inline size_t codec_varint_len(size_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

/* Writes v (<= VG_MQTT_MAX_REMAINING) as a variable byte integer in its
 * shortest form; returns the bytes written. */
static inline size_t codec_put_vbi(uint8_t *o, size_t v)
{
    size_t i = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        o[i++] = v ? b | 0x80 : b;
    } while (v);
    return i;
}

static inline void codec_put_u16(uint8_t *o, size_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
}

static inline void codec_put_u32(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)(v >> 16);
    o[2] = (uint8_t)(v >> 8);
    o[3] = (uint8_t)v;
}

/* Writes a length-prefixed field; returns the bytes written. memcpy is
 * skipped for empty fields because their pointer may be NULL. */
static inline size_t codec_put_str(uint8_t *o, const uint8_t *p, size_t n)
{
    codec_put_u16(o, n);
    if (n)
        memcpy(o + 2, p, n);
    return 2 + n;
}

/* Size of a properties block of n bytes with its length prefix. */
static inline size_t codec_block_len(size_t n)
{
    return codec_varint_len(n) + n;
}

/* The properties an encoder would write, as a VG_PROP_BIT mask; pr may be
 * NULL (props.c). */
uint64_t codec_props_mask(const vg_mqtt_props_t *pr);

/* Validates *pr (may be NULL) for a packet that allows `allowed` and sets
 * *n to the encoded length without the length prefix (props.c). */
int codec_props_len(const vg_mqtt_props_t *pr, uint64_t allowed, size_t *n);

/* Writes a properties block of len bytes (from codec_props_len); returns the
 * bytes written (props.c). */
size_t codec_put_props(uint8_t *o, const vg_mqtt_props_t *pr, size_t len);

#endif
