/* props.c — the MQTT codec's tables: the 5.0 properties, reason codes and
 * names.
 *
 * Owns the reason-code table (which code each packet type may carry), the
 * property table (each property's wire type, value rule and field in
 * vg_mqtt_props_t), reading a properties block, walking, measuring and
 * writing user property runs and property blocks, and the packet-type and
 * reason-code names. The per-packet property sets (PR_*) are in
 * codec_int.h, since decoders and encoders name them. It keeps no state,
 * never allocates and never performs I/O; every input byte is untrusted
 * and every read is bounds-checked by index.
 *
 * Section numbers: plain ones refer to the OASIS MQTT 3.1.1 standard, "v5 §"
 * ones to MQTT 5.0. */
#include "mqtt/codec_int.h"

#include "core/err.h"

#include <stddef.h>
#include <string.h>

/* ---- reason codes ------------------------------------------------------- */

/* Bit t of codec_reason_types[rc] is set when reason code rc may appear in a
 * packet of type t: the "MQTT Control Packets" column of v5 §2.4's table.
 * The per-packet tables (§3.2.2.2, §3.4.2.1, ...) agree with it except that
 * §3.14.2.1 omits 0x8C (Bad authentication method) from DISCONNECT, which
 * §2.4 lists; a server may well end a failed re-authentication with it, so
 * the union is accepted. In SUBACK 0x00..0x02 are the granted QoS. */
#define T(x) (1u << VG_MQTT_##x)
#define T_PUBACKS (T(PUBACK) | T(PUBREC))
const uint16_t codec_reason_types[256] = {
    [0x00] = T(CONNACK) | T_PUBACKS | T(PUBREL) | T(PUBCOMP) | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT) | T(AUTH),
    [0x01] = T(SUBACK),
    [0x02] = T(SUBACK),
    [0x04] = T(DISCONNECT),
    [0x10] = T_PUBACKS,
    [0x11] = T(UNSUBACK),
    [0x18] = T(AUTH),
    [0x19] = T(AUTH),
    [0x80] = T(CONNACK) | T_PUBACKS | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT),
    [0x81] = T(CONNACK) | T(DISCONNECT),
    [0x82] = T(CONNACK) | T(DISCONNECT),
    [0x83] = T(CONNACK) | T_PUBACKS | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT),
    [0x84] = T(CONNACK),
    [0x85] = T(CONNACK),
    [0x86] = T(CONNACK),
    [0x87] = T(CONNACK) | T_PUBACKS | T(SUBACK) | T(UNSUBACK) | T(DISCONNECT),
    [0x88] = T(CONNACK),
    [0x89] = T(CONNACK) | T(DISCONNECT),
    [0x8A] = T(CONNACK),
    [0x8B] = T(DISCONNECT),
    [0x8C] = T(CONNACK) | T(DISCONNECT),
    [0x8D] = T(DISCONNECT),
    [0x8E] = T(DISCONNECT),
    [0x8F] = T(SUBACK) | T(UNSUBACK) | T(DISCONNECT),
    [0x90] = T(CONNACK) | T_PUBACKS | T(DISCONNECT),
    [0x91] = T_PUBACKS | T(SUBACK) | T(UNSUBACK),
    [0x92] = T(PUBREL) | T(PUBCOMP),
    [0x93] = T(DISCONNECT),
    [0x94] = T(DISCONNECT),
    [0x95] = T(CONNACK) | T(DISCONNECT),
    [0x96] = T(DISCONNECT),
    [0x97] = T(CONNACK) | T_PUBACKS | T(SUBACK) | T(DISCONNECT),
    [0x98] = T(DISCONNECT),
    [0x99] = T(CONNACK) | T_PUBACKS | T(DISCONNECT),
    [0x9A] = T(CONNACK) | T(DISCONNECT),
    [0x9B] = T(CONNACK) | T(DISCONNECT),
    [0x9C] = T(CONNACK) | T(DISCONNECT),
    [0x9D] = T(CONNACK) | T(DISCONNECT),
    [0x9E] = T(SUBACK) | T(DISCONNECT),
    [0x9F] = T(CONNACK) | T(DISCONNECT),
    [0xA0] = T(DISCONNECT),
    [0xA1] = T(SUBACK) | T(DISCONNECT),
    [0xA2] = T(SUBACK) | T(DISCONNECT),
};
#undef T
#undef T_PUBACKS

/* ---- the property table ------------------------------------------------- */

/* How each property is encoded and which rule its value obeys. Every Byte
 * property of 5.0 is a 0/1 switch (payload format, request problem and
 * response information, maximum QoS, the four "available" flags), so one
 * type covers them. _NZ types may not be 0: receive maximum (v5
 * §3.1.2.11.3), topic alias (§3.3.2.3.4), maximum packet size
 * (§3.1.2.11.4). A response topic must be a topic name (§3.3.2.3.5). */
enum { PT_NONE, PT_FLAG, PT_U16, PT_U16NZ, PT_U32, PT_U32NZ, PT_SUBID, PT_UTF8, PT_TOPIC, PT_BIN, PT_USER };

typedef struct {
    uint8_t type;
    uint16_t off; /* of the field in vg_mqtt_props_t */
} prop_info_t;

#define PI(name, t, field) [VG_PROP_##name] = {t, offsetof(vg_mqtt_props_t, field)}
static const prop_info_t prop_info[64] = {
    PI(PAYLOAD_FORMAT, PT_FLAG, payload_format),
    PI(MESSAGE_EXPIRY, PT_U32, message_expiry),
    PI(CONTENT_TYPE, PT_UTF8, content_type),
    PI(RESPONSE_TOPIC, PT_TOPIC, response_topic),
    PI(CORRELATION_DATA, PT_BIN, correlation_data),
    PI(SUBSCRIPTION_ID, PT_SUBID, sub_ids),
    PI(SESSION_EXPIRY, PT_U32, session_expiry),
    PI(ASSIGNED_CLIENT_ID, PT_UTF8, assigned_client_id),
    PI(SERVER_KEEPALIVE, PT_U16, server_keepalive),
    PI(AUTH_METHOD, PT_UTF8, auth_method),
    PI(AUTH_DATA, PT_BIN, auth_data),
    PI(REQUEST_PROBLEM_INFO, PT_FLAG, request_problem_info),
    PI(WILL_DELAY, PT_U32, will_delay),
    PI(REQUEST_RESPONSE_INFO, PT_FLAG, request_response_info),
    PI(RESPONSE_INFO, PT_UTF8, response_info),
    PI(SERVER_REFERENCE, PT_UTF8, server_reference),
    PI(REASON_STRING, PT_UTF8, reason_string),
    PI(RECEIVE_MAX, PT_U16NZ, receive_max),
    PI(TOPIC_ALIAS_MAX, PT_U16, topic_alias_max),
    PI(TOPIC_ALIAS, PT_U16NZ, topic_alias),
    PI(MAX_QOS, PT_FLAG, max_qos),
    PI(RETAIN_AVAILABLE, PT_FLAG, retain_available),
    PI(USER, PT_USER, user_props),
    PI(MAX_PACKET_SIZE, PT_U32NZ, max_packet_size),
    PI(WILDCARD_SUB_AVAILABLE, PT_FLAG, wildcard_sub_available),
    PI(SUB_ID_AVAILABLE, PT_FLAG, sub_id_available),
    PI(SHARED_SUB_AVAILABLE, PT_FLAG, shared_sub_available),
};
#undef PI

/* The field of property info pi in *pr, typed by its caller. */
#define FIELD(pr, T, pi) ((T *)((char *)(pr) + (pi)->off))
#define CFIELD(pr, T, pi) ((const T *)((const char *)(pr) + (pi)->off))

/* ---- reading ------------------------------------------------------------ */

/* Reads a properties block (length, then entries) valid for a packet that
 * allows the properties in `allowed`, into *pr (zeroed first). Everything
 * §2.2.2.2 and the property sections forbid is VG_EMALFORMED; see the
 * header for why protocol errors share that code. */
int codec_rd_props(codec_rd_t *r, uint64_t allowed, vg_mqtt_props_t *pr)
{
    uint32_t plen;
    size_t ustart = 0, uend = 0;

    *pr = (vg_mqtt_props_t){0};
    if (!codec_rd_vbi(r, &plen) || r->len - r->off < plen)
        return VG_EMALFORMED;
    codec_rd_t q = {r->b, r->off + plen, r->off};
    r->off = q.len;
    while (q.off < q.len) {
        size_t start = q.off;
        uint8_t id = q.b[q.off++];
        /* Identifiers are variable byte integers, but every defined one is
         * a single byte below 0x40, so any other byte is an unknown id (or
         * a longer form of a known one, which §1.5.5 forbids). */
        if (id >= 64 || !((allowed >> id) & 1))
            return VG_EMALFORMED;
        const prop_info_t *pi = &prop_info[id];
        uint64_t bit = VG_PROP_BIT(id);
        /* Only the subscription identifier (in PUBLISH) and user property
         * may repeat; a second copy of any other is a protocol error. */
        if ((pr->present & bit) && pi->type != PT_SUBID && pi->type != PT_USER)
            return VG_EMALFORMED;
        pr->present |= bit;
        switch (pi->type) {
        case PT_FLAG: {
            uint8_t v;
            if (!codec_rd_u8(&q, &v) || v > 1)
                return VG_EMALFORMED;
            *FIELD(pr, uint8_t, pi) = v;
            break;
        }
        case PT_U16:
        case PT_U16NZ: {
            uint16_t v;
            if (!codec_rd_u16(&q, &v) || (v == 0 && pi->type == PT_U16NZ))
                return VG_EMALFORMED;
            *FIELD(pr, uint16_t, pi) = v;
            break;
        }
        case PT_U32:
        case PT_U32NZ: {
            uint32_t v;
            if (!codec_rd_u32(&q, &v) || (v == 0 && pi->type == PT_U32NZ))
                return VG_EMALFORMED;
            *FIELD(pr, uint32_t, pi) = v;
            break;
        }
        case PT_SUBID: {
            uint32_t v;
            if (!codec_rd_vbi(&q, &v) || v == 0)
                return VG_EMALFORMED; /* v5 §3.3.2.3.8, §3.8.2.1.2 */
            if (pr->sub_id_count < VG_MQTT_MAX_SUB_IDS)
                pr->sub_ids[pr->sub_id_count] = v;
            pr->sub_id_count++;
            break;
        }
        case PT_UTF8:
        case PT_TOPIC:
        case PT_BIN: {
            vg_bytes_t s;
            if (!codec_rd_str(&q, &s))
                return VG_EMALFORMED;
            if (pi->type == PT_UTF8 && !vg_mqtt_utf8_valid(s.p, s.len))
                return VG_EMALFORMED;
            if (pi->type == PT_TOPIC && !vg_mqtt_topic_valid(s.p, s.len))
                return VG_EMALFORMED;
            *FIELD(pr, vg_bytes_t, pi) = s;
            break;
        }
        case PT_USER: {
            vg_bytes_t k, v;
            if (!codec_rd_str(&q, &k) || !codec_rd_str(&q, &v) || !vg_mqtt_utf8_valid(k.p, k.len) ||
                !vg_mqtt_utf8_valid(v.p, v.len))
                return VG_EMALFORMED;
            if (pr->user_prop_count == 0)
                ustart = start;
            uend = q.off;
            pr->user_prop_count++;
            break;
        }
        default:
            return VG_EMALFORMED; /* unreachable: allowed only has known ids */
        }
    }
    /* v5 §3.1.2.11.10: data without a method means nothing. */
    if ((pr->present & PB(AUTH_DATA)) && !(pr->present & PB(AUTH_METHOD)))
        return VG_EMALFORMED;
    if (pr->user_prop_count)
        pr->user_props = (vg_bytes_t){q.b + ustart, uend - ustart};
    return VG_OK;
}

/* Steps over one property of any known type at q, for walking a user
 * property run. Returns its id (filling k and v for a user property), or
 * -1 if it does not parse. Safe on any bytes: encoders walk runs that
 * callers built. */
static int next_prop(codec_rd_t *q, vg_bytes_t *k, vg_bytes_t *v)
{
    uint8_t id, b;
    uint16_t h;
    uint32_t w;
    bool ok;

    if (!codec_rd_u8(q, &id) || id >= 64)
        return -1;
    switch (prop_info[id].type) {
    case PT_FLAG:
        ok = codec_rd_u8(q, &b);
        break;
    case PT_U16:
    case PT_U16NZ:
        ok = codec_rd_u16(q, &h);
        break;
    case PT_U32:
    case PT_U32NZ:
        ok = codec_rd_u32(q, &w);
        break;
    case PT_SUBID:
        ok = codec_rd_vbi(q, &w);
        break;
    case PT_UTF8:
    case PT_TOPIC:
    case PT_BIN:
        ok = codec_rd_str(q, k);
        break;
    case PT_USER:
        ok = codec_rd_str(q, k) && codec_rd_str(q, v);
        break;
    default:
        ok = false;
        break;
    }
    return ok ? id : -1;
}

bool vg_mqtt_user_props_next(const vg_mqtt_props_t *props, size_t *pos, vg_bytes_t *key, vg_bytes_t *value)
{
    codec_rd_t q = {props->user_props.p, props->user_props.len, *pos};

    if (*pos > q.len)
        return false;
    while (q.off < q.len) {
        int id = next_prop(&q, key, value);
        if (id < 0) {
            *pos = q.len; /* stay at the end: every later call says so too */
            return false;
        }
        if (id == VG_PROP_USER) {
            *pos = q.off;
            return true;
        }
    }
    *pos = q.off;
    return false;
}

/* ---- measuring and writing ----------------------------------------------- */

/* The properties an encoder would write: the present bits of the
 * single-valued ones plus the two multi-valued ones if there are any. */
uint64_t codec_props_mask(const vg_mqtt_props_t *pr)
{
    if (!pr)
        return 0;
    uint64_t m = pr->present & ~(PB(SUBSCRIPTION_ID) | PB(USER));
    if (pr->sub_id_count)
        m |= PB(SUBSCRIPTION_ID);
    if (pr->user_props.len)
        m |= PB(USER);
    return m;
}

/* Bytes the user properties of a run take on the wire (other properties in
 * it are skipped, as decoded runs may hold them); false if it does not
 * parse. */
static bool user_run_len(vg_bytes_t run, size_t *n)
{
    codec_rd_t q = {run.p, run.len, 0};
    vg_bytes_t k, v;
    size_t total = 0;

    while (q.off < q.len) {
        size_t start = q.off;
        int id = next_prop(&q, &k, &v);
        if (id < 0)
            return false;
        if (id == VG_PROP_USER)
            total += q.off - start;
    }
    *n = total;
    return true;
}

/* Copies the user properties of a (valid) run to o; returns the bytes
 * written. */
static size_t put_user_run(uint8_t *o, vg_bytes_t run)
{
    codec_rd_t q = {run.p, run.len, 0};
    vg_bytes_t k, v;
    size_t off = 0;

    while (q.off < q.len) {
        size_t start = q.off;
        if (next_prop(&q, &k, &v) == VG_PROP_USER) {
            memcpy(o + off, run.p + start, q.off - start);
            off += q.off - start;
        }
    }
    return off;
}

/* Validates the properties *pr (may be NULL) for a packet that allows
 * `allowed` and sets *n to their encoded length without the length prefix.
 * Refuses what codec_rd_props would refuse, except string contents. */
int codec_props_len(const vg_mqtt_props_t *pr, uint64_t allowed, size_t *n)
{
    uint64_t m = codec_props_mask(pr);
    size_t len = 0;

    *n = 0;
    if (m & ~allowed)
        return VG_EINVAL;
    for (uint64_t w = m; w; w &= w - 1) {
        unsigned id = (unsigned)__builtin_ctzll(w);
        const prop_info_t *pi = &prop_info[id];
        switch (pi->type) {
        case PT_FLAG:
            if (*CFIELD(pr, uint8_t, pi) > 1)
                return VG_EINVAL;
            len += 2;
            break;
        case PT_U16:
        case PT_U16NZ:
            if (pi->type == PT_U16NZ && *CFIELD(pr, uint16_t, pi) == 0)
                return VG_EINVAL;
            len += 3;
            break;
        case PT_U32:
        case PT_U32NZ:
            if (pi->type == PT_U32NZ && *CFIELD(pr, uint32_t, pi) == 0)
                return VG_EINVAL;
            len += 5;
            break;
        case PT_SUBID:
            if (pr->sub_id_count > VG_MQTT_MAX_SUB_IDS)
                return VG_EINVAL;
            for (uint32_t i = 0; i < pr->sub_id_count; i++) {
                if (pr->sub_ids[i] == 0 || pr->sub_ids[i] > VG_MQTT_MAX_SUB_ID)
                    return VG_EINVAL;
                len += 1 + codec_varint_len(pr->sub_ids[i]);
            }
            break;
        case PT_UTF8:
        case PT_TOPIC:
        case PT_BIN: {
            const vg_bytes_t *s = CFIELD(pr, vg_bytes_t, pi);
            if (s->len > 0xFFFF || (pi->type == PT_TOPIC && s->len == 0))
                return VG_EINVAL;
            len += 3 + s->len;
            break;
        }
        case PT_USER: {
            size_t u;
            if (!user_run_len(pr->user_props, &u))
                return VG_EINVAL;
            len += u;
            break;
        }
        default:
            return VG_EINVAL;
        }
    }
    if ((m & PB(AUTH_DATA)) && !(m & PB(AUTH_METHOD)))
        return VG_EINVAL;
    if (len > VG_MQTT_MAX_REMAINING)
        return VG_EINVAL;
    *n = len;
    return VG_OK;
}

/* Writes a properties block of len bytes (from codec_props_len) for *pr; returns
 * the bytes written. */
size_t codec_put_props(uint8_t *o, const vg_mqtt_props_t *pr, size_t len)
{
    size_t off = codec_put_vbi(o, len);

    if (!len)
        return off;
    for (uint64_t w = codec_props_mask(pr); w; w &= w - 1) {
        unsigned id = (unsigned)__builtin_ctzll(w);
        const prop_info_t *pi = &prop_info[id];
        switch (pi->type) {
        case PT_FLAG:
            o[off++] = (uint8_t)id;
            o[off++] = *CFIELD(pr, uint8_t, pi);
            break;
        case PT_U16:
        case PT_U16NZ:
            o[off++] = (uint8_t)id;
            codec_put_u16(o + off, *CFIELD(pr, uint16_t, pi));
            off += 2;
            break;
        case PT_U32:
        case PT_U32NZ:
            o[off++] = (uint8_t)id;
            codec_put_u32(o + off, *CFIELD(pr, uint32_t, pi));
            off += 4;
            break;
        case PT_SUBID:
            for (uint32_t i = 0; i < pr->sub_id_count; i++) {
                o[off++] = (uint8_t)id;
                off += codec_put_vbi(o + off, pr->sub_ids[i]);
            }
            break;
        case PT_UTF8:
        case PT_TOPIC:
        case PT_BIN: {
            const vg_bytes_t *s = CFIELD(pr, vg_bytes_t, pi);
            o[off++] = (uint8_t)id;
            off += codec_put_str(o + off, s->p, s->len);
            break;
        }
        case PT_USER:
            off += put_user_run(o + off, pr->user_props);
            break;
        default:
            break;
        }
    }
    return off;
}

int vg_mqtt_user_props_pack(const vg_mqtt_props_t *props, uint8_t *out, size_t cap)
{
    size_t n;

    if (!user_run_len(props->user_props, &n) || n > VG_MQTT_MAX_REMAINING)
        return VG_EINVAL;
    if (n > cap)
        return VG_ENOSPC;
    put_user_run(out, props->user_props);
    return (int)n;
}

size_t vg_mqtt_props_size(const vg_mqtt_props_t *props)
{
    size_t n;
    return codec_props_len(props, PR_ALL, &n) == VG_OK ? codec_block_len(n) : 0;
}

/* ---- names ------------------------------------------------------------- */

const char *vg_mqtt_type_name(uint8_t type)
{
    static const char *const names[16] = {
        [VG_MQTT_CONNECT] = "CONNECT",         [VG_MQTT_CONNACK] = "CONNACK",       [VG_MQTT_PUBLISH] = "PUBLISH",
        [VG_MQTT_PUBACK] = "PUBACK",           [VG_MQTT_PUBREC] = "PUBREC",         [VG_MQTT_PUBREL] = "PUBREL",
        [VG_MQTT_PUBCOMP] = "PUBCOMP",         [VG_MQTT_SUBSCRIBE] = "SUBSCRIBE",   [VG_MQTT_SUBACK] = "SUBACK",
        [VG_MQTT_UNSUBSCRIBE] = "UNSUBSCRIBE", [VG_MQTT_UNSUBACK] = "UNSUBACK",     [VG_MQTT_PINGREQ] = "PINGREQ",
        [VG_MQTT_PINGRESP] = "PINGRESP",       [VG_MQTT_DISCONNECT] = "DISCONNECT", [VG_MQTT_AUTH] = "AUTH",
    };
    return type < 16 && names[type] ? names[type] : "?";
}

/* The names of v5 §2.4's table. 0x00 reads differently per packet
 * ("Normal disconnection", "Granted QoS 0"); "Success" covers them. */
const char *vg_mqtt_reason_name(uint8_t rc)
{
    static const char *const names[256] = {
        [VG_RC_SUCCESS] = "Success",
        [VG_RC_GRANTED_QOS1] = "Granted QoS 1",
        [VG_RC_GRANTED_QOS2] = "Granted QoS 2",
        [VG_RC_DISCONNECT_WITH_WILL] = "Disconnect with Will Message",
        [VG_RC_NO_MATCHING_SUBSCRIBERS] = "No matching subscribers",
        [VG_RC_NO_SUBSCRIPTION_EXISTED] = "No subscription existed",
        [VG_RC_CONTINUE_AUTH] = "Continue authentication",
        [VG_RC_REAUTHENTICATE] = "Re-authenticate",
        [VG_RC_UNSPECIFIED] = "Unspecified error",
        [VG_RC_MALFORMED] = "Malformed Packet",
        [VG_RC_PROTOCOL_ERROR] = "Protocol Error",
        [VG_RC_IMPL_SPECIFIC] = "Implementation specific error",
        [VG_RC_UNSUPPORTED_VERSION] = "Unsupported Protocol Version",
        [VG_RC_CLIENT_ID_INVALID] = "Client Identifier not valid",
        [VG_RC_BAD_USER_OR_PASSWORD] = "Bad User Name or Password",
        [VG_RC_NOT_AUTHORIZED] = "Not authorized",
        [VG_RC_SERVER_UNAVAILABLE] = "Server unavailable",
        [VG_RC_SERVER_BUSY] = "Server busy",
        [VG_RC_BANNED] = "Banned",
        [VG_RC_SERVER_SHUTTING_DOWN] = "Server shutting down",
        [VG_RC_BAD_AUTH_METHOD] = "Bad authentication method",
        [VG_RC_KEEPALIVE_TIMEOUT] = "Keep Alive timeout",
        [VG_RC_SESSION_TAKEN_OVER] = "Session taken over",
        [VG_RC_FILTER_INVALID] = "Topic Filter invalid",
        [VG_RC_TOPIC_INVALID] = "Topic Name invalid",
        [VG_RC_PACKET_ID_IN_USE] = "Packet Identifier in use",
        [VG_RC_PACKET_ID_NOT_FOUND] = "Packet Identifier not found",
        [VG_RC_RECEIVE_MAX_EXCEEDED] = "Receive Maximum exceeded",
        [VG_RC_TOPIC_ALIAS_INVALID] = "Topic Alias invalid",
        [VG_RC_PACKET_TOO_LARGE] = "Packet too large",
        [VG_RC_MESSAGE_RATE_TOO_HIGH] = "Message rate too high",
        [VG_RC_QUOTA_EXCEEDED] = "Quota exceeded",
        [VG_RC_ADMIN_ACTION] = "Administrative action",
        [VG_RC_PAYLOAD_FORMAT_INVALID] = "Payload format invalid",
        [VG_RC_RETAIN_NOT_SUPPORTED] = "Retain not supported",
        [VG_RC_QOS_NOT_SUPPORTED] = "QoS not supported",
        [VG_RC_USE_ANOTHER_SERVER] = "Use another server",
        [VG_RC_SERVER_MOVED] = "Server moved",
        [VG_RC_SHARED_SUBS_NOT_SUPPORTED] = "Shared Subscriptions not supported",
        [VG_RC_CONNECTION_RATE_EXCEEDED] = "Connection rate exceeded",
        [VG_RC_MAX_CONNECT_TIME] = "Maximum connect time",
        [VG_RC_SUB_IDS_NOT_SUPPORTED] = "Subscription Identifiers not supported",
        [VG_RC_WILDCARD_SUBS_NOT_SUPPORTED] = "Wildcard Subscriptions not supported",
    };
    return names[rc] ? names[rc] : "?";
}
