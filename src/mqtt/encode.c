/* encode.c — MQTT 3.1.1 (and 3.1) and 5.0 packet encoders.
 *
 * Owns writing packets into the caller's buffer: the fixed header and each
 * packet type's variable header and payload. It refuses (VG_EINVAL) what
 * our own decoder would reject, so that whatever it produces decodes. It
 * does not own the property table (props.c: measuring and writing
 * properties) or the decoders and framing (codec.c); it keeps no state,
 * never allocates and never performs I/O.
 *
 * Section numbers: plain ones refer to the OASIS MQTT 3.1.1 standard, "v5 §"
 * ones to MQTT 5.0. */
#include "mqtt/codec_int.h"

#include "core/err.h"

#include <stddef.h>
#include <string.h>

/* ---- encoding ---------------------------------------------------------- */

/* Checks that a packet with rem bytes after the fixed header can be carried
 * and fits in cap, then writes the fixed header. Returns the whole packet's
 * length with *off set past the header, or VG_EINVAL / VG_ENOSPC. */
static int put_header(uint8_t *out, size_t cap, uint8_t b0, size_t rem, size_t *off)
{
    if (rem > VG_MQTT_MAX_REMAINING)
        return VG_EINVAL;
    if (1 + codec_varint_len(rem) + rem > cap)
        return VG_ENOSPC;
    out[0] = b0;
    *off = 1 + codec_put_vbi(out + 1, rem);
    return (int)(*off + rem);
}

int vg_mqtt_encode_connect(uint8_t *out, size_t cap, const vg_mqtt_connect_t *c)
{
    const char *name;
    size_t nlen, rem, off, plen = 0, wplen = 0;
    uint8_t fl = 0;
    bool v5 = c->protocol_level == VG_MQTT_V5;
    int rc;

    if (c->protocol_level == VG_MQTT_V311 || v5) {
        name = "MQTT";
        nlen = 4;
    } else if (c->protocol_level == VG_MQTT_V31) {
        name = "MQIsdp";
        nlen = 6;
    } else {
        return VG_EINVAL;
    }
    /* Refuse what a conforming server would reject as malformed, so that
     * our own decoder always accepts what this produces. */
    if (c->will_qos > 2 || (!c->will_flag && (c->will_qos || c->will_retain)) ||
        (c->has_password && !c->has_username && !v5))
        return VG_EINVAL;
    if (c->client_id.len > 0xFFFF)
        return VG_EINVAL;
    rem = 2 + nlen + 1 + 1 + 2 + 2 + c->client_id.len;
    if (v5) {
        if ((rc = codec_props_len(&c->props, PR_CONNECT, &plen)) != VG_OK)
            return rc;
        rem += codec_block_len(plen);
        /* Will properties travel only with a will; dropping them silently
         * would hide a caller's mistake. */
        if (c->will_flag) {
            if ((rc = codec_props_len(&c->will_props, PR_WILL, &wplen)) != VG_OK)
                return rc;
            rem += codec_block_len(wplen);
        } else if (codec_props_mask(&c->will_props)) {
            return VG_EINVAL;
        }
    }
    if (c->will_flag) {
        if (c->will_topic.len > 0xFFFF || c->will_payload.len > 0xFFFF)
            return VG_EINVAL;
        rem += 4 + c->will_topic.len + c->will_payload.len;
        fl |= CF_WILL | (uint8_t)(c->will_qos << CF_WILL_QOS_SHIFT) | (c->will_retain ? CF_WILL_RETAIN : 0);
    }
    if (c->has_username) {
        if (c->username.len > 0xFFFF)
            return VG_EINVAL;
        rem += 2 + c->username.len;
        fl |= CF_USERNAME;
    }
    if (c->has_password) {
        if (c->password.len > 0xFFFF)
            return VG_EINVAL;
        rem += 2 + c->password.len;
        fl |= CF_PASSWORD;
    }
    if (c->clean_session)
        fl |= CF_CLEAN;

    int total = put_header(out, cap, VG_MQTT_CONNECT << 4, rem, &off);
    if (total < 0)
        return total;
    off += codec_put_str(out + off, (const uint8_t *)name, nlen);
    out[off++] = c->protocol_level;
    out[off++] = fl;
    codec_put_u16(out + off, c->keepalive);
    off += 2;
    if (v5)
        off += codec_put_props(out + off, &c->props, plen);
    off += codec_put_str(out + off, c->client_id.p, c->client_id.len);
    if (c->will_flag) {
        if (v5)
            off += codec_put_props(out + off, &c->will_props, wplen);
        off += codec_put_str(out + off, c->will_topic.p, c->will_topic.len);
        off += codec_put_str(out + off, c->will_payload.p, c->will_payload.len);
    }
    if (c->has_username)
        off += codec_put_str(out + off, c->username.p, c->username.len);
    if (c->has_password)
        codec_put_str(out + off, c->password.p, c->password.len);
    return total;
}

int vg_mqtt_encode_connack(uint8_t *out, size_t cap, uint8_t level, bool session_present, uint8_t rc,
                           const vg_mqtt_props_t *props)
{
    int v = codec_version(level);
    size_t off, plen = 0;

    if (!v)
        return VG_EINVAL;
    /* A refusal never claims a session (3.1.1 §3.2.2.2, v5 §3.2.2.1.1). */
    if (session_present && rc != VG_RC_SUCCESS)
        return VG_EINVAL;
    if (v == 4) {
        if (rc > VG_MQTT_CONNACK_NOT_AUTHORIZED) /* codes above 5 are reserved */
            return VG_EINVAL;
    } else {
        int e;
        if (!codec_reason_ok(VG_MQTT_CONNACK, rc))
            return VG_EINVAL;
        if ((e = codec_props_len(props, PR_CONNACK, &plen)) != VG_OK)
            return e;
    }
    int total = put_header(out, cap, VG_MQTT_CONNACK << 4, 2 + (v == 5 ? codec_block_len(plen) : 0), &off);
    if (total < 0)
        return total;
    out[off++] = session_present ? 1 : 0;
    out[off++] = rc;
    if (v == 5)
        codec_put_props(out + off, props, plen);
    return total;
}

/* The remaining length of a PUBLISH, or 0 if it cannot be carried (a real
 * one is at least 2); *plen gets the property length for codec_put_props. */
static size_t publish_rem(int v, size_t topic_len, size_t payload_len, uint8_t qos, const vg_mqtt_props_t *props,
                          size_t *plen)
{
    *plen = 0;
    if (qos > 2 || topic_len > 0xFFFF || payload_len > VG_MQTT_MAX_REMAINING)
        return 0;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + payload_len;
    if (v == 5) {
        if (codec_props_len(props, PR_PUBLISH, plen) != VG_OK)
            return 0;
        rem += codec_block_len(*plen);
    }
    return rem > VG_MQTT_MAX_REMAINING ? 0 : rem;
}

size_t vg_mqtt_publish_size(uint8_t level, size_t topic_len, size_t payload_len, uint8_t qos,
                            const vg_mqtt_props_t *props)
{
    int v = codec_version(level);
    size_t plen;

    if (!v)
        return 0;
    size_t rem = publish_rem(v, topic_len, payload_len, qos, props, &plen);
    return rem ? 1 + codec_varint_len(rem) + rem : 0;
}

int vg_mqtt_encode_publish(uint8_t *out, size_t cap, uint8_t level, const vg_mqtt_publish_t *p)
{
    int v = codec_version(level);
    size_t off, plen;

    if (!v)
        return VG_EINVAL;
    /* An empty topic needs a 5.0 topic alias to stand for it. */
    if (p->topic.len == 0 && !(v == 5 && (p->props.present & PB(TOPIC_ALIAS))))
        return VG_EINVAL;
    if (p->qos > 2 || (p->qos ? p->packet_id == 0 : p->dup))
        return VG_EINVAL; /* §2.3.1, §3.3.1.1 */
    size_t rem = publish_rem(v, p->topic.len, p->payload.len, p->qos, &p->props, &plen);
    if (!rem)
        return VG_EINVAL;
    uint8_t b0 = (uint8_t)(VG_MQTT_PUBLISH << 4 | (p->dup ? 0x08 : 0) | p->qos << 1 | (p->retain ? 1 : 0));
    int total = put_header(out, cap, b0, rem, &off);
    if (total < 0)
        return total;
    off += codec_put_str(out + off, p->topic.p, p->topic.len);
    if (p->qos) {
        codec_put_u16(out + off, p->packet_id);
        off += 2;
    }
    if (v == 5)
        off += codec_put_props(out + off, &p->props, plen);
    if (p->payload.len)
        memcpy(out + off, p->payload.p, p->payload.len);
    return total;
}

int vg_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id, uint8_t reason,
                       const vg_mqtt_props_t *props)
{
    int v = codec_version(level);
    size_t off, rem = 2, plen = 0;
    uint8_t b0 = (uint8_t)(type << 4);

    if (!v)
        return VG_EINVAL;
    switch (type) {
    case VG_MQTT_PUBACK:
    case VG_MQTT_PUBREC:
    case VG_MQTT_PUBCOMP:
        break;
    case VG_MQTT_UNSUBACK:
        if (v == 5)
            return VG_EINVAL; /* it has reason codes: vg_mqtt_encode_suback */
        break;
    case VG_MQTT_PUBREL:
        b0 |= 0x02;
        break;
    default:
        return VG_EINVAL;
    }
    if (!packet_id)
        return VG_EINVAL;
    if (v == 5) {
        int e;
        if (!codec_reason_ok(type, reason))
            return VG_EINVAL;
        if ((e = codec_props_len(props, PR_ACK, &plen)) != VG_OK)
            return e;
        /* The shortest form that says it (v5 §3.4.2.1). */
        rem = plen ? 3 + codec_block_len(plen) : reason ? 3 : 2;
    }
    int total = put_header(out, cap, b0, rem, &off);
    if (total < 0)
        return total;
    codec_put_u16(out + off, packet_id);
    off += 2;
    if (rem > 2)
        out[off++] = reason;
    if (plen)
        codec_put_props(out + off, props, plen);
    return total;
}

/* SUBSCRIBE and UNSUBSCRIBE differ only in the type, the properties allowed
 * and the options byte. */
static int encode_sub(uint8_t *out, size_t cap, uint8_t level, uint8_t b0, uint16_t packet_id,
                      const vg_mqtt_props_t *props, const vg_mqtt_sub_t *subs, size_t n, bool with_qos)
{
    int v = codec_version(level);
    size_t rem = 2, off, plen = 0;

    if (!v || !packet_id || n == 0)
        return VG_EINVAL;
    if (v == 5) {
        int e = codec_props_len(props, with_qos ? PR_SUBSCRIBE : PR_UNSUBSCRIBE, &plen);
        if (e != VG_OK)
            return e;
        if (with_qos && props && props->sub_id_count > 1)
            return VG_EINVAL; /* v5 §3.8.2.1.2 */
        rem += codec_block_len(plen);
    }
    /* Each step adds at most 65538, so rem cannot wrap before it exceeds
     * the protocol maximum and the loop stops. */
    for (size_t i = 0; i < n; i++) {
        if (subs[i].filter.len == 0 || subs[i].filter.len > 0xFFFF)
            return VG_EINVAL;
        if (with_qos && (subs[i].qos > 2 || (v == 5 && subs[i].retain_handling > 2)))
            return VG_EINVAL;
        rem += 2 + subs[i].filter.len + with_qos;
        if (rem > VG_MQTT_MAX_REMAINING)
            return VG_EINVAL;
    }
    int total = put_header(out, cap, b0, rem, &off);
    if (total < 0)
        return total;
    codec_put_u16(out + off, packet_id);
    off += 2;
    if (v == 5)
        off += codec_put_props(out + off, props, plen);
    for (size_t i = 0; i < n; i++) {
        off += codec_put_str(out + off, subs[i].filter.p, subs[i].filter.len);
        if (with_qos) {
            uint8_t o = subs[i].qos;
            if (v == 5)
                o |= (subs[i].no_local ? SO_NO_LOCAL : 0) | (subs[i].retain_as_published ? SO_RAP : 0) |
                     (uint8_t)(subs[i].retain_handling << SO_RH_SHIFT);
            out[off++] = o;
        }
    }
    return total;
}

int vg_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id, const vg_mqtt_props_t *props,
                             const vg_mqtt_sub_t *subs, size_t n)
{
    return encode_sub(out, cap, level, VG_MQTT_SUBSCRIBE << 4 | 0x02, packet_id, props, subs, n, true);
}

int vg_mqtt_encode_unsubscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id,
                               const vg_mqtt_props_t *props, const vg_mqtt_sub_t *subs, size_t n)
{
    return encode_sub(out, cap, level, VG_MQTT_UNSUBSCRIBE << 4 | 0x02, packet_id, props, subs, n, false);
}

int vg_mqtt_encode_suback(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id,
                          const vg_mqtt_props_t *props, const uint8_t *rcs, size_t n)
{
    int v = codec_version(level);
    size_t off, plen = 0;

    if (!v || !(type == VG_MQTT_SUBACK || (type == VG_MQTT_UNSUBACK && v == 5)))
        return VG_EINVAL;
    if (!packet_id || n == 0 || n > VG_MQTT_MAX_REMAINING - 2)
        return VG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (v == 4 ? !codec_suback_rc_valid(rcs[i]) : !codec_reason_ok(type, rcs[i]))
            return VG_EINVAL;
    }
    if (v == 5) {
        int e = codec_props_len(props, PR_ACK, &plen);
        if (e != VG_OK)
            return e;
    }
    int total = put_header(out, cap, (uint8_t)(type << 4), 2 + (v == 5 ? codec_block_len(plen) : 0) + n, &off);
    if (total < 0)
        return total;
    codec_put_u16(out + off, packet_id);
    off += 2;
    if (v == 5)
        off += codec_put_props(out + off, props, plen);
    memcpy(out + off, rcs, n);
    return total;
}

int vg_mqtt_encode_reason(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint8_t reason,
                          const vg_mqtt_props_t *props)
{
    int v = codec_version(level);
    size_t off, plen = 0, rem;

    if (!v || (type != VG_MQTT_DISCONNECT && type != VG_MQTT_AUTH))
        return VG_EINVAL;
    if (v == 4) {
        if (type == VG_MQTT_AUTH)
            return VG_EINVAL;
        return put_header(out, cap, VG_MQTT_DISCONNECT << 4, 0, &off);
    }
    if (!codec_reason_ok(type, reason))
        return VG_EINVAL;
    int e = codec_props_len(props, type == VG_MQTT_AUTH ? PR_AUTH : PR_DISCONNECT, &plen);
    if (e != VG_OK)
        return e;
    if (type == VG_MQTT_AUTH && !(codec_props_mask(props) & PB(AUTH_METHOD)))
        return VG_EINVAL; /* the decoder would refuse it: v5 §3.15.2.2.2 */
    rem = plen ? 1 + codec_block_len(plen) : reason ? 1 : 0;
    int total = put_header(out, cap, (uint8_t)(type << 4), rem, &off);
    if (total < 0)
        return total;
    if (rem)
        out[off++] = reason;
    if (plen)
        codec_put_props(out + off, props, plen);
    return total;
}

int vg_mqtt_encode_empty(uint8_t *out, size_t cap, uint8_t type)
{
    size_t off;

    if (type != VG_MQTT_PINGREQ && type != VG_MQTT_PINGRESP && type != VG_MQTT_DISCONNECT)
        return VG_EINVAL;
    return put_header(out, cap, (uint8_t)(type << 4), 0, &off);
}
