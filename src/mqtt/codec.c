/* codec.c — MQTT 3.1.1 (and 3.1) and 5.0 packet codec.
 *
 * Owns the wire format only: framing, decoding into structs that point into
 * the caller's buffer, encoding into the caller's buffer, the 5.0 property
 * and reason-code rules, and the string and topic rules of §1.5.3 and §4.7.
 * It keeps no state between calls, never allocates and never performs I/O;
 * sessions, limits policy and buffering belong to the broker. Every input
 * byte is untrusted: nothing here asserts, and every read is bounds-checked
 * by index (never by forming a pointer past the end, which keeps UBSan
 * quiet on empty or NULL bodies).
 *
 * Section numbers: plain ones refer to the OASIS MQTT 3.1.1 standard (the
 * code that predates 5.0), "v5 §" ones to MQTT 5.0. */
#include "mqtt/codec.h"

#include "core/err.h"

#include <stddef.h>
#include <string.h>

/* ---- bytes and strings ------------------------------------------------- */

#define ONES8 0x0101010101010101ull
#define HIGH8 0x8080808080808080ull

/* Non-zero iff some byte of v is zero. The classic SWAR test is exact about
 * whether a zero byte exists (it only mislabels bytes above the first zero),
 * which is all the fast paths below ask of it. */
static inline uint64_t has_zero(uint64_t v)
{
    return (v - ONES8) & ~v & HIGH8;
}

/* Length of the well-formed multi-byte UTF-8 sequence at p[0..n) whose lead
 * byte is >= 0x80, or 0 if it is ill-formed. The allowed range of the second
 * byte depends on the lead byte (Unicode Table 3-7); that one rule rejects
 * overlong forms (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and
 * code points above U+10FFFF (F4 90..BF, F5..FF) without decoding anything. */
static inline size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    uint8_t lo = 0x80, hi = 0xBF;

    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3)
            return 0;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c > 0xF4 || n < 4)
        return 0;
    if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
}

enum { SCAN_UTF8, SCAN_TOPIC, SCAN_FILTER };

/* One pass that checks the MQTT UTF-8 rules and, for topics and filters, the
 * wildcard rules. Topics are almost always plain ASCII, so eight bytes at a
 * time are tested for "anything interesting" (a high bit, NUL, and for
 * topics '+' or '#'); only an 8-byte window that contains one is walked byte
 * by byte. mode is a constant at every call site, so the compiler drops the
 * branches that do not apply. */
static inline bool scan(const uint8_t *p, size_t len, int mode)
{
    size_t i = 0;

    while (i < len) {
        if (len - i >= 8) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            uint64_t m = (v & HIGH8) | has_zero(v);
            if (mode != SCAN_UTF8)
                m |= has_zero(v ^ (ONES8 * '+')) | has_zero(v ^ (ONES8 * '#'));
            if (!m) {
                i += 8;
                continue;
            }
        }
        size_t stop = len - i > 8 ? i + 8 : len;
        while (i < stop) {
            uint8_t c = p[i];
            if (c >= 0x80) {
                size_t n = utf8_seq(p + i, len - i);
                if (!n)
                    return false;
                i += n;
                continue;
            }
            if (c == 0)
                return false;
            if (mode != SCAN_UTF8 && (c == '+' || c == '#')) {
                if (mode == SCAN_TOPIC)
                    return false;
                /* A wildcard must fill its level: '/' (or the start) before
                 * it, and '/' (or the end) after '+'; '#' must end the filter. */
                if (i > 0 && p[i - 1] != '/')
                    return false;
                if (c == '#' ? i + 1 != len : i + 1 < len && p[i + 1] != '/')
                    return false;
            }
            i++;
        }
    }
    return true;
}

bool vg_mqtt_utf8_valid(const uint8_t *p, size_t len)
{
    return scan(p, len, SCAN_UTF8);
}

/* §4.7.3: names and filters are at least one character and at most 65535
 * bytes (the length prefix); longer ones could never travel in a packet. */
bool vg_mqtt_topic_valid(const uint8_t *p, size_t len)
{
    return len != 0 && len <= 0xFFFF && scan(p, len, SCAN_TOPIC);
}

bool vg_mqtt_filter_valid(const uint8_t *p, size_t len)
{
    return len != 0 && len <= 0xFFFF && scan(p, len, SCAN_FILTER);
}

/* Walks the filter level by level. The result for an invalid filter or topic
 * is unspecified, but the walk never reads outside either buffer. */
bool vg_mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen)
{
    size_t fi = 0, ti = 0;
    bool topic_done = false;

    if (flen == 0)
        return false;
    /* §4.7.2: "$SYS/..." and friends are invisible to a leading wildcard. */
    if (tlen > 0 && topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    for (;;) {
        size_t fe = fi, te = ti;
        while (fe < flen && filter[fe] != '/')
            fe++;
        /* '#' matches the rest, including no levels at all: "sport/#"
         * matches "sport" (§4.7.1.2). */
        if (fe - fi == 1 && filter[fi] == '#')
            return true;
        if (topic_done)
            return false;
        while (te < tlen && topic[te] != '/')
            te++;
        if (!(fe - fi == 1 && filter[fi] == '+')) {
            if (fe - fi != te - ti || (fe > fi && memcmp(filter + fi, topic + ti, fe - fi) != 0))
                return false;
        }
        if (fe == flen)
            return te == tlen;
        fi = fe + 1;
        /* The topic has run out of levels; only a trailing "/#" can still
         * match, which the next turn checks. */
        if (te == tlen)
            topic_done = true;
        else
            ti = te + 1;
    }
}

/* A 5.0 shared subscription is "$share/<group>/<filter>" (v5 §4.8.2): the
 * group is at least one character with no '/', '+' or '#', and what follows
 * its '/' is an ordinary, non-empty filter. Split at the first '/' byte
 * after the prefix; a multi-byte UTF-8 sequence never contains one. */
int vg_mqtt_shared_split(const uint8_t *p, size_t len, vg_bytes_t *group, vg_bytes_t *inner)
{
    static const char prefix[] = "$share/";
    const size_t plen = sizeof(prefix) - 1;
    size_t i;

    if (len < plen || memcmp(p, prefix, plen) != 0)
        return 0;
    for (i = plen; i < len && p[i] != '/'; i++) {
        if (p[i] == '+' || p[i] == '#')
            return VG_EMALFORMED;
    }
    if (i == plen || i == len)
        return VG_EMALFORMED; /* empty group, or no '/' and filter after it */
    if (!vg_mqtt_utf8_valid(p + plen, i - plen) || !vg_mqtt_filter_valid(p + i + 1, len - i - 1))
        return VG_EMALFORMED;
    *group = (vg_bytes_t){p + plen, i - plen};
    *inner = (vg_bytes_t){p + i + 1, len - i - 1};
    return 1;
}

/* ---- framing ----------------------------------------------------------- */

/* Bit f of allowed_flags[type] is set when the low nibble f is legal for the
 * type (§2.2.2): PUBREL, SUBSCRIBE and UNSUBSCRIBE need 0b0010; PUBLISH takes
 * anything but QoS 3 (nibbles 6, 7, 14, 15); type 0 is reserved. Type 15 is
 * AUTH in 5.0 and reserved in 3.1.1, but framing runs before the level is
 * known (the first packet is the CONNECT that says it), so it is accepted
 * here and refused by vg_mqtt_decode_reason on a 3.1.1 connection. */
static const uint16_t allowed_flags[16] = {
    [VG_MQTT_CONNECT] = 0x0001,     [VG_MQTT_CONNACK] = 0x0001,    [VG_MQTT_PUBLISH] = 0x3F3F,
    [VG_MQTT_PUBACK] = 0x0001,      [VG_MQTT_PUBREC] = 0x0001,     [VG_MQTT_PUBREL] = 0x0004,
    [VG_MQTT_PUBCOMP] = 0x0001,     [VG_MQTT_SUBSCRIBE] = 0x0004,  [VG_MQTT_SUBACK] = 0x0001,
    [VG_MQTT_UNSUBSCRIBE] = 0x0004, [VG_MQTT_UNSUBACK] = 0x0001,   [VG_MQTT_PINGREQ] = 0x0001,
    [VG_MQTT_PINGRESP] = 0x0001,    [VG_MQTT_DISCONNECT] = 0x0001, [VG_MQTT_AUTH] = 0x0001,
};

int vg_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, uint8_t *type, uint8_t *flags, size_t *hdr_len,
                  size_t *rem_len)
{
    size_t rem = 0, i = 1;
    unsigned shift = 0;

    if (len == 0)
        return VG_AGAIN;
    /* Byte 0 alone decides the flags, so a bad one is refused before we
     * wait for the length. */
    if (!((allowed_flags[buf[0] >> 4] >> (buf[0] & 0x0F)) & 1))
        return VG_EMALFORMED;
    for (;;) {
        if (i >= len)
            return VG_AGAIN;
        uint8_t b = buf[i++];
        rem |= (size_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            break;
        if (i == 5)
            return VG_EMALFORMED; /* a fifth length byte would follow */
        shift += 7;
    }
    *type = buf[0] >> 4;
    *flags = buf[0] & 0x0F;
    *hdr_len = i;
    *rem_len = rem;
    /* Refuse oversized packets now rather than after buffering them. */
    if (rem > max_packet || i > max_packet - rem)
        return VG_ETOOBIG;
    if (len - i < rem)
        return VG_AGAIN;
    return VG_OK;
}

/* ---- versions, reason codes, property tables ---------------------------- */

/* 4 for the 3.1.1 layout (levels 3 and 4 share it), 5 for 5.0, 0 for a level
 * we do not speak (a caller bug: the level comes from an accepted CONNECT). */
static inline int version(uint8_t level)
{
    return level == VG_MQTT_V5 ? 5 : level == VG_MQTT_V311 || level == VG_MQTT_V31 ? 4 : 0;
}

/* Bit t of reason_types[rc] is set when reason code rc may appear in a
 * packet of type t: the "MQTT Control Packets" column of v5 §2.4's table.
 * The per-packet tables (§3.2.2.2, §3.4.2.1, ...) agree with it except that
 * §3.14.2.1 omits 0x8C (Bad authentication method) from DISCONNECT, which
 * §2.4 lists; a server may well end a failed re-authentication with it, so
 * the union is accepted. In SUBACK 0x00..0x02 are the granted QoS. */
#define T(x) (1u << VG_MQTT_##x)
#define T_PUBACKS (T(PUBACK) | T(PUBREC))
static const uint16_t reason_types[256] = {
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

static inline bool reason_ok(uint8_t type, uint8_t rc)
{
    return (reason_types[rc] >> type) & 1;
}

/* 3.1.1 SUBACK return codes (3.1.1 §3.9.3). */
static inline bool suback_rc_valid(uint8_t rc)
{
    return rc <= 2 || rc == VG_MQTT_SUBACK_FAILURE;
}

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

/* ---- decoding ---------------------------------------------------------- */

/* A read cursor over body[0..len). Indices, not pointers, so that a NULL
 * body with len 0 never has an offset applied to it. */
typedef struct {
    const uint8_t *b;
    size_t len;
    size_t off;
} rd_t;

static inline bool rd_u8(rd_t *r, uint8_t *v)
{
    if (r->len - r->off < 1)
        return false;
    *v = r->b[r->off++];
    return true;
}

static inline bool rd_u16(rd_t *r, uint16_t *v)
{
    if (r->len - r->off < 2)
        return false;
    *v = (uint16_t)(r->b[r->off] << 8 | r->b[r->off + 1]);
    r->off += 2;
    return true;
}

static inline bool rd_u32(rd_t *r, uint32_t *v)
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
static inline bool rd_vbi(rd_t *r, uint32_t *v)
{
    uint32_t x = 0;

    for (unsigned i = 0; i < 4; i++) {
        uint8_t b;
        if (!rd_u8(r, &b))
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
static inline bool rd_str(rd_t *r, vg_bytes_t *s)
{
    uint16_t n;
    if (!rd_u16(r, &n) || r->len - r->off < n)
        return false;
    s->p = r->b + r->off;
    s->len = n;
    r->off += n;
    return true;
}

/* Reads a properties block (length, then entries) valid for a packet that
 * allows the properties in `allowed`, into *pr (zeroed first). Everything
 * §2.2.2.2 and the property sections forbid is VG_EMALFORMED; see the
 * header for why protocol errors share that code. */
static int rd_props(rd_t *r, uint64_t allowed, vg_mqtt_props_t *pr)
{
    uint32_t plen;
    size_t ustart = 0, uend = 0;

    *pr = (vg_mqtt_props_t){0};
    if (!rd_vbi(r, &plen) || r->len - r->off < plen)
        return VG_EMALFORMED;
    rd_t q = {r->b, r->off + plen, r->off};
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
            if (!rd_u8(&q, &v) || v > 1)
                return VG_EMALFORMED;
            *FIELD(pr, uint8_t, pi) = v;
            break;
        }
        case PT_U16:
        case PT_U16NZ: {
            uint16_t v;
            if (!rd_u16(&q, &v) || (v == 0 && pi->type == PT_U16NZ))
                return VG_EMALFORMED;
            *FIELD(pr, uint16_t, pi) = v;
            break;
        }
        case PT_U32:
        case PT_U32NZ: {
            uint32_t v;
            if (!rd_u32(&q, &v) || (v == 0 && pi->type == PT_U32NZ))
                return VG_EMALFORMED;
            *FIELD(pr, uint32_t, pi) = v;
            break;
        }
        case PT_SUBID: {
            uint32_t v;
            if (!rd_vbi(&q, &v) || v == 0)
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
            if (!rd_str(&q, &s))
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
            if (!rd_str(&q, &k) || !rd_str(&q, &v) || !vg_mqtt_utf8_valid(k.p, k.len) ||
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
static int next_prop(rd_t *q, vg_bytes_t *k, vg_bytes_t *v)
{
    uint8_t id, b;
    uint16_t h;
    uint32_t w;
    bool ok;

    if (!rd_u8(q, &id) || id >= 64)
        return -1;
    switch (prop_info[id].type) {
    case PT_FLAG:
        ok = rd_u8(q, &b);
        break;
    case PT_U16:
    case PT_U16NZ:
        ok = rd_u16(q, &h);
        break;
    case PT_U32:
    case PT_U32NZ:
        ok = rd_u32(q, &w);
        break;
    case PT_SUBID:
        ok = rd_vbi(q, &w);
        break;
    case PT_UTF8:
    case PT_TOPIC:
    case PT_BIN:
        ok = rd_str(q, k);
        break;
    case PT_USER:
        ok = rd_str(q, k) && rd_str(q, v);
        break;
    default:
        ok = false;
        break;
    }
    return ok ? id : -1;
}

bool vg_mqtt_user_props_next(const vg_mqtt_props_t *props, size_t *pos, vg_bytes_t *key, vg_bytes_t *value)
{
    rd_t q = {props->user_props.p, props->user_props.len, *pos};

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

/* Connect flags (§3.1.2.3). */
#define CF_RESERVED 0x01
#define CF_CLEAN 0x02
#define CF_WILL 0x04
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20
#define CF_PASSWORD 0x40
#define CF_USERNAME 0x80

int vg_mqtt_decode_connect(const uint8_t *body, size_t len, vg_mqtt_connect_t *out, uint8_t *connack_rc)
{
    rd_t r = {body, len, 0};
    vg_bytes_t name;
    uint8_t level, fl;
    bool known;
    int rc;

    *out = (vg_mqtt_connect_t){0};
    *connack_rc = VG_MQTT_CONNACK_ACCEPTED;
    if (!rd_str(&r, &name) || !rd_u8(&r, &level))
        return VG_EMALFORMED;
    if (name.len == 4 && memcmp(name.p, "MQTT", 4) == 0)
        known = level == VG_MQTT_V311 || level == VG_MQTT_V5;
    else if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0)
        known = level == VG_MQTT_V31;
    else
        return VG_EMALFORMED;
    out->protocol_level = level;
    /* Stop here on a level we do not speak: a newer version would not parse
     * as any of ours, and the client needs CONNACK 1 (0x84 in 5.0), not a
     * silent close, to fall back (§3.1.2.2). */
    if (!known) {
        *connack_rc = VG_MQTT_CONNACK_BAD_PROTOCOL;
        return VG_EPROTO;
    }
    bool v5 = level == VG_MQTT_V5;
    if (!rd_u8(&r, &fl) || !rd_u16(&r, &out->keepalive))
        return VG_EMALFORMED;
    out->clean_session = fl & CF_CLEAN;
    out->will_flag = fl & CF_WILL;
    out->will_qos = (fl >> CF_WILL_QOS_SHIFT) & 3;
    out->will_retain = fl & CF_WILL_RETAIN;
    out->has_username = fl & CF_USERNAME;
    out->has_password = fl & CF_PASSWORD;
    if (fl & CF_RESERVED)
        return VG_EMALFORMED; /* §3.1.2.3 */
    if (out->will_qos == 3 || (!out->will_flag && (out->will_qos || out->will_retain)))
        return VG_EMALFORMED; /* §3.1.2.6, §3.1.2.7 */
    /* 3.1.1 §3.1.2.9 ties the password to a username; 5.0 lets a password
     * stand alone (v5 §3.1.2.9), e.g. for a token. */
    if (out->has_password && !out->has_username && !v5)
        return VG_EMALFORMED;
    if (v5 && (rc = rd_props(&r, PR_CONNECT, &out->props)) != VG_OK)
        return rc;
    if (!rd_str(&r, &out->client_id) || !vg_mqtt_utf8_valid(out->client_id.p, out->client_id.len))
        return VG_EMALFORMED;
    if (out->will_flag) {
        /* 5.0 puts the will properties before the will topic (v5 §3.1.3.2). */
        if (v5 && (rc = rd_props(&r, PR_WILL, &out->will_props)) != VG_OK)
            return rc;
        if (!rd_str(&r, &out->will_topic) || !vg_mqtt_topic_valid(out->will_topic.p, out->will_topic.len) ||
            !rd_str(&r, &out->will_payload))
            return VG_EMALFORMED;
    }
    if (out->has_username) {
        if (!rd_str(&r, &out->username) || !vg_mqtt_utf8_valid(out->username.p, out->username.len))
            return VG_EMALFORMED;
    }
    if (out->has_password && !rd_str(&r, &out->password))
        return VG_EMALFORMED;
    if (r.off != r.len)
        return VG_EMALFORMED;
    /* Checked last so that a packet that is both malformed and has a bad id
     * is treated as malformed: closed without a CONNACK. The spec's 65535
     * byte id limit is enforced by the 16-bit length prefix itself. 5.0
     * lets the server assign an id whatever clean start says (v5 §3.1.3.1). */
    if (out->client_id.len == 0 && !out->clean_session && !v5) {
        *connack_rc = VG_MQTT_CONNACK_ID_REJECTED;
        return VG_EPROTO;
    }
    return VG_OK;
}

int vg_mqtt_decode_publish(uint8_t level, uint8_t flags, const uint8_t *body, size_t len, vg_mqtt_publish_t *out)
{
    int v = version(level);
    rd_t r = {body, len, 0};
    uint8_t qos = (flags >> 1) & 3;
    bool dup = flags & 0x08;
    vg_bytes_t topic;
    uint16_t pid = 0;

    if (!v)
        return VG_EINVAL;
    if (qos == 3 || (dup && qos == 0))
        return VG_EMALFORMED; /* §3.3.1.2, §3.3.1.1 */
    if (!rd_str(&r, &topic))
        return VG_EMALFORMED;
    /* 5.0 may leave the topic empty and name it by alias (v5 §3.3.2.3.4);
     * whether there is one is known after the properties. */
    if (!(v == 5 && topic.len == 0) && !vg_mqtt_topic_valid(topic.p, topic.len))
        return VG_EMALFORMED;
    if (qos) {
        if (!rd_u16(&r, &pid) || !pid)
            return VG_EMALFORMED; /* §2.3.1 */
    }
    if (v == 5) {
        int rc = rd_props(&r, PR_PUBLISH, &out->props);
        if (rc != VG_OK)
            return rc;
        if (topic.len == 0 && !(out->props.present & PB(TOPIC_ALIAS)))
            return VG_EMALFORMED;
    } else {
        out->props = (vg_mqtt_props_t){0};
    }
    out->qos = qos;
    out->dup = dup;
    out->retain = flags & 0x01;
    out->topic = topic;
    out->packet_id = pid;
    out->payload = (vg_bytes_t){body + r.off, len - r.off};
    return VG_OK;
}

int vg_mqtt_decode_ack(uint8_t level, uint8_t type, const uint8_t *body, size_t len, vg_mqtt_ack_t *out)
{
    int v = version(level);
    rd_t r = {body, len, 0};

    if (!v)
        return VG_EINVAL;
    switch (type) {
    case VG_MQTT_PUBACK:
    case VG_MQTT_PUBREC:
    case VG_MQTT_PUBREL:
    case VG_MQTT_PUBCOMP:
        break;
    case VG_MQTT_UNSUBACK:
        if (v == 5)
            return VG_EINVAL;
        break;
    default:
        return VG_EINVAL;
    }
    *out = (vg_mqtt_ack_t){0};
    if (!rd_u16(&r, &out->packet_id) || !out->packet_id)
        return VG_EMALFORMED;
    if (v == 4)
        return len == 2 ? VG_OK : VG_EMALFORMED;
    /* v5 §3.4.2.1: the reason code and then the properties may be left out
     * from the end, meaning Success and none. */
    if (len > 2) {
        out->reason = body[2];
        r.off = 3;
        if (!reason_ok(type, out->reason))
            return VG_EMALFORMED;
    }
    if (len > 3) {
        int rc = rd_props(&r, PR_ACK, &out->props);
        if (rc != VG_OK)
            return rc;
        if (r.off != len)
            return VG_EMALFORMED;
    }
    return VG_OK;
}

int vg_mqtt_decode_packet_id(const uint8_t *body, size_t len, uint16_t *packet_id)
{
    if (len != 2)
        return VG_EMALFORMED;
    uint16_t pid = (uint16_t)(body[0] << 8 | body[1]);
    if (!pid)
        return VG_EMALFORMED;
    *packet_id = pid;
    return VG_OK;
}

/* Subscription options (v5 §3.8.3.1): bits 0-1 maximum QoS, 2 no local, 3
 * retain as published, 4-5 retain handling, 6-7 reserved. 3.1.1 has only
 * the QoS and reserves the rest. */
#define SO_QOS 0x03
#define SO_NO_LOCAL 0x04
#define SO_RAP 0x08
#define SO_RH_SHIFT 4
#define SO_RESERVED 0xC0

int vg_mqtt_decode_subscribe(uint8_t level, const uint8_t *body, size_t len, bool with_qos, uint16_t *packet_id,
                             vg_mqtt_props_t *props, vg_mqtt_sub_t *subs, size_t cap, size_t *count)
{
    int v = version(level);
    rd_t r = {body, len, 0};
    vg_mqtt_props_t local;
    vg_mqtt_props_t *pr = props ? props : &local;
    size_t n = 0;

    *count = 0;
    if (!v)
        return VG_EINVAL;
    if (!rd_u16(&r, packet_id) || !*packet_id)
        return VG_EMALFORMED;
    if (v == 5) {
        int rc = rd_props(&r, with_qos ? PR_SUBSCRIBE : PR_UNSUBSCRIBE, pr);
        if (rc != VG_OK)
            return rc;
        if (pr->sub_id_count > 1)
            return VG_EMALFORMED; /* v5 §3.8.2.1.2: at most one */
    } else {
        *pr = (vg_mqtt_props_t){0};
    }
    /* The whole packet is validated even past cap, so that VG_ELIMIT always
     * means "well-formed, just too many" and never hides a malformed one. */
    while (r.off < r.len) {
        vg_bytes_t f;
        uint8_t o = 0;
        if (!rd_str(&r, &f) || !vg_mqtt_filter_valid(f.p, f.len))
            return VG_EMALFORMED;
        if (with_qos) {
            if (!rd_u8(&r, &o) || (o & SO_QOS) == 3)
                return VG_EMALFORMED;
            /* 3.1.1 §3.8.3.1: upper six bits reserved; v5: upper two, and
             * retain handling 3 is a protocol error. */
            if (v == 4 ? o > 2 : (o & SO_RESERVED) || (o >> SO_RH_SHIFT & 3) == 3)
                return VG_EMALFORMED;
        }
        if (n < cap)
            subs[n] = (vg_mqtt_sub_t){
                .filter = f,
                .qos = o & SO_QOS,
                .no_local = o & SO_NO_LOCAL,
                .retain_as_published = o & SO_RAP,
                .retain_handling = (o >> SO_RH_SHIFT) & 3,
            };
        n++;
    }
    if (n == 0)
        return VG_EMALFORMED; /* §3.8.3, §3.10.3 */
    if (n > cap)
        return VG_ELIMIT;
    *count = n;
    return VG_OK;
}

int vg_mqtt_decode_reason(uint8_t level, uint8_t type, const uint8_t *body, size_t len, uint8_t *reason,
                          vg_mqtt_props_t *props)
{
    int v = version(level);
    rd_t r = {body, len, 0};
    vg_mqtt_props_t local;
    vg_mqtt_props_t *pr = props ? props : &local;
    uint8_t code = 0;

    if (!v || (type != VG_MQTT_DISCONNECT && type != VG_MQTT_AUTH))
        return VG_EINVAL;
    *reason = 0;
    *pr = (vg_mqtt_props_t){0};
    if (v == 4)
        return type == VG_MQTT_DISCONNECT && len == 0 ? VG_OK : VG_EMALFORMED;
    /* v5 §3.14.2.1, §3.15.2.1: both may end after the reason code, or
     * before it (meaning 0x00). */
    if (len > 0) {
        code = body[0];
        r.off = 1;
        if (!reason_ok(type, code))
            return VG_EMALFORMED;
    }
    if (len > 1) {
        int rc = rd_props(&r, type == VG_MQTT_AUTH ? PR_AUTH : PR_DISCONNECT, pr);
        if (rc != VG_OK)
            return rc;
        if (r.off != len)
            return VG_EMALFORMED;
    }
    if (type == VG_MQTT_AUTH && !(pr->present & PB(AUTH_METHOD)))
        return VG_EMALFORMED; /* v5 §3.15.2.2.2 */
    *reason = code;
    return VG_OK;
}

int vg_mqtt_decode_connack(uint8_t level, const uint8_t *body, size_t len, bool *session_present, uint8_t *rc,
                           vg_mqtt_props_t *props)
{
    int v = version(level);
    rd_t r = {body, len, 0};
    vg_mqtt_props_t local;
    vg_mqtt_props_t *pr = props ? props : &local;
    uint8_t fl, code;

    if (!v)
        return VG_EINVAL;
    *pr = (vg_mqtt_props_t){0};
    if (!rd_u8(&r, &fl) || !rd_u8(&r, &code) || (fl & 0xFE))
        return VG_EMALFORMED; /* §3.2.2.1: bits 7-1 reserved */
    if (v == 4) {
        /* 3.1.1 return codes above 5 are reserved, but a client reports
         * them rather than calling the packet malformed. */
        if (len != 2)
            return VG_EMALFORMED;
    } else {
        /* v5 §3.2.2.1.1: a refusal never has a session. */
        if (!reason_ok(VG_MQTT_CONNACK, code) || ((fl & 1) && code))
            return VG_EMALFORMED;
        int e = rd_props(&r, PR_CONNACK, pr);
        if (e != VG_OK)
            return e;
        if (r.off != len)
            return VG_EMALFORMED;
    }
    *session_present = fl & 1;
    *rc = code;
    return VG_OK;
}

int vg_mqtt_decode_suback(uint8_t level, uint8_t type, const uint8_t *body, size_t len, uint16_t *packet_id,
                          vg_mqtt_props_t *props, uint8_t *rcs, size_t cap, size_t *count)
{
    int v = version(level);
    rd_t r = {body, len, 0};
    vg_mqtt_props_t local;
    vg_mqtt_props_t *pr = props ? props : &local;
    uint16_t pid;

    *count = 0;
    if (!v || !(type == VG_MQTT_SUBACK || (type == VG_MQTT_UNSUBACK && v == 5)))
        return VG_EINVAL;
    *pr = (vg_mqtt_props_t){0};
    if (!rd_u16(&r, &pid) || !pid)
        return VG_EMALFORMED;
    if (v == 5) {
        int rc = rd_props(&r, PR_ACK, pr);
        if (rc != VG_OK)
            return rc;
    }
    /* One code per filter, and a (UN)SUBSCRIBE has at least one. */
    if (r.off == len)
        return VG_EMALFORMED;
    for (size_t i = r.off; i < len; i++) {
        if (v == 4 ? !suback_rc_valid(body[i]) : !reason_ok(type, body[i]))
            return VG_EMALFORMED;
    }
    *packet_id = pid;
    if (len - r.off > cap)
        return VG_ELIMIT;
    memcpy(rcs, body + r.off, len - r.off);
    *count = len - r.off;
    return VG_OK;
}

/* ---- encoding ---------------------------------------------------------- */

static inline size_t varint_len(size_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

/* Writes v (<= VG_MQTT_MAX_REMAINING) as a variable byte integer in its
 * shortest form; returns the bytes written. */
static inline size_t put_vbi(uint8_t *o, size_t v)
{
    size_t i = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        o[i++] = v ? b | 0x80 : b;
    } while (v);
    return i;
}

static inline void put_u16(uint8_t *o, size_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
}

static inline void put_u32(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)(v >> 16);
    o[2] = (uint8_t)(v >> 8);
    o[3] = (uint8_t)v;
}

/* Writes a length-prefixed field; returns the bytes written. memcpy is
 * skipped for empty fields because their pointer may be NULL. */
static inline size_t put_str(uint8_t *o, const uint8_t *p, size_t n)
{
    put_u16(o, n);
    if (n)
        memcpy(o + 2, p, n);
    return 2 + n;
}

/* Checks that a packet with rem bytes after the fixed header can be carried
 * and fits in cap, then writes the fixed header. Returns the whole packet's
 * length with *off set past the header, or VG_EINVAL / VG_ENOSPC. */
static int put_header(uint8_t *out, size_t cap, uint8_t b0, size_t rem, size_t *off)
{
    if (rem > VG_MQTT_MAX_REMAINING)
        return VG_EINVAL;
    if (1 + varint_len(rem) + rem > cap)
        return VG_ENOSPC;
    out[0] = b0;
    *off = 1 + put_vbi(out + 1, rem);
    return (int)(*off + rem);
}

/* The properties an encoder would write: the present bits of the
 * single-valued ones plus the two multi-valued ones if there are any. */
static uint64_t props_mask(const vg_mqtt_props_t *pr)
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
    rd_t q = {run.p, run.len, 0};
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
    rd_t q = {run.p, run.len, 0};
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
 * Refuses what rd_props would refuse, except string contents. */
static int props_len(const vg_mqtt_props_t *pr, uint64_t allowed, size_t *n)
{
    uint64_t m = props_mask(pr);
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
                len += 1 + varint_len(pr->sub_ids[i]);
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

/* Size of a properties block of n bytes with its length prefix. */
static inline size_t block_len(size_t n)
{
    return varint_len(n) + n;
}

/* Writes a properties block of len bytes (from props_len) for *pr; returns
 * the bytes written. */
static size_t put_props(uint8_t *o, const vg_mqtt_props_t *pr, size_t len)
{
    size_t off = put_vbi(o, len);

    if (!len)
        return off;
    for (uint64_t w = props_mask(pr); w; w &= w - 1) {
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
            put_u16(o + off, *CFIELD(pr, uint16_t, pi));
            off += 2;
            break;
        case PT_U32:
        case PT_U32NZ:
            o[off++] = (uint8_t)id;
            put_u32(o + off, *CFIELD(pr, uint32_t, pi));
            off += 4;
            break;
        case PT_SUBID:
            for (uint32_t i = 0; i < pr->sub_id_count; i++) {
                o[off++] = (uint8_t)id;
                off += put_vbi(o + off, pr->sub_ids[i]);
            }
            break;
        case PT_UTF8:
        case PT_TOPIC:
        case PT_BIN: {
            const vg_bytes_t *s = CFIELD(pr, vg_bytes_t, pi);
            o[off++] = (uint8_t)id;
            off += put_str(o + off, s->p, s->len);
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
    return props_len(props, PR_ALL, &n) == VG_OK ? block_len(n) : 0;
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
        if ((rc = props_len(&c->props, PR_CONNECT, &plen)) != VG_OK)
            return rc;
        rem += block_len(plen);
        /* Will properties travel only with a will; dropping them silently
         * would hide a caller's mistake. */
        if (c->will_flag) {
            if ((rc = props_len(&c->will_props, PR_WILL, &wplen)) != VG_OK)
                return rc;
            rem += block_len(wplen);
        } else if (props_mask(&c->will_props)) {
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
    off += put_str(out + off, (const uint8_t *)name, nlen);
    out[off++] = c->protocol_level;
    out[off++] = fl;
    put_u16(out + off, c->keepalive);
    off += 2;
    if (v5)
        off += put_props(out + off, &c->props, plen);
    off += put_str(out + off, c->client_id.p, c->client_id.len);
    if (c->will_flag) {
        if (v5)
            off += put_props(out + off, &c->will_props, wplen);
        off += put_str(out + off, c->will_topic.p, c->will_topic.len);
        off += put_str(out + off, c->will_payload.p, c->will_payload.len);
    }
    if (c->has_username)
        off += put_str(out + off, c->username.p, c->username.len);
    if (c->has_password)
        put_str(out + off, c->password.p, c->password.len);
    return total;
}

int vg_mqtt_encode_connack(uint8_t *out, size_t cap, uint8_t level, bool session_present, uint8_t rc,
                           const vg_mqtt_props_t *props)
{
    int v = version(level);
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
        if (!reason_ok(VG_MQTT_CONNACK, rc))
            return VG_EINVAL;
        if ((e = props_len(props, PR_CONNACK, &plen)) != VG_OK)
            return e;
    }
    int total = put_header(out, cap, VG_MQTT_CONNACK << 4, 2 + (v == 5 ? block_len(plen) : 0), &off);
    if (total < 0)
        return total;
    out[off++] = session_present ? 1 : 0;
    out[off++] = rc;
    if (v == 5)
        put_props(out + off, props, plen);
    return total;
}

/* The remaining length of a PUBLISH, or 0 if it cannot be carried (a real
 * one is at least 2); *plen gets the property length for put_props. */
static size_t publish_rem(int v, size_t topic_len, size_t payload_len, uint8_t qos, const vg_mqtt_props_t *props,
                          size_t *plen)
{
    *plen = 0;
    if (qos > 2 || topic_len > 0xFFFF || payload_len > VG_MQTT_MAX_REMAINING)
        return 0;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + payload_len;
    if (v == 5) {
        if (props_len(props, PR_PUBLISH, plen) != VG_OK)
            return 0;
        rem += block_len(*plen);
    }
    return rem > VG_MQTT_MAX_REMAINING ? 0 : rem;
}

size_t vg_mqtt_publish_size(uint8_t level, size_t topic_len, size_t payload_len, uint8_t qos,
                            const vg_mqtt_props_t *props)
{
    int v = version(level);
    size_t plen;

    if (!v)
        return 0;
    size_t rem = publish_rem(v, topic_len, payload_len, qos, props, &plen);
    return rem ? 1 + varint_len(rem) + rem : 0;
}

int vg_mqtt_encode_publish(uint8_t *out, size_t cap, uint8_t level, const vg_mqtt_publish_t *p)
{
    int v = version(level);
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
    off += put_str(out + off, p->topic.p, p->topic.len);
    if (p->qos) {
        put_u16(out + off, p->packet_id);
        off += 2;
    }
    if (v == 5)
        off += put_props(out + off, &p->props, plen);
    if (p->payload.len)
        memcpy(out + off, p->payload.p, p->payload.len);
    return total;
}

int vg_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id, uint8_t reason,
                       const vg_mqtt_props_t *props)
{
    int v = version(level);
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
        if (!reason_ok(type, reason))
            return VG_EINVAL;
        if ((e = props_len(props, PR_ACK, &plen)) != VG_OK)
            return e;
        /* The shortest form that says it (v5 §3.4.2.1). */
        rem = plen ? 3 + block_len(plen) : reason ? 3 : 2;
    }
    int total = put_header(out, cap, b0, rem, &off);
    if (total < 0)
        return total;
    put_u16(out + off, packet_id);
    off += 2;
    if (rem > 2)
        out[off++] = reason;
    if (plen)
        put_props(out + off, props, plen);
    return total;
}

/* SUBSCRIBE and UNSUBSCRIBE differ only in the type, the properties allowed
 * and the options byte. */
static int encode_sub(uint8_t *out, size_t cap, uint8_t level, uint8_t b0, uint16_t packet_id,
                      const vg_mqtt_props_t *props, const vg_mqtt_sub_t *subs, size_t n, bool with_qos)
{
    int v = version(level);
    size_t rem = 2, off, plen = 0;

    if (!v || !packet_id || n == 0)
        return VG_EINVAL;
    if (v == 5) {
        int e = props_len(props, with_qos ? PR_SUBSCRIBE : PR_UNSUBSCRIBE, &plen);
        if (e != VG_OK)
            return e;
        if (with_qos && props && props->sub_id_count > 1)
            return VG_EINVAL; /* v5 §3.8.2.1.2 */
        rem += block_len(plen);
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
    put_u16(out + off, packet_id);
    off += 2;
    if (v == 5)
        off += put_props(out + off, props, plen);
    for (size_t i = 0; i < n; i++) {
        off += put_str(out + off, subs[i].filter.p, subs[i].filter.len);
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
    int v = version(level);
    size_t off, plen = 0;

    if (!v || !(type == VG_MQTT_SUBACK || (type == VG_MQTT_UNSUBACK && v == 5)))
        return VG_EINVAL;
    if (!packet_id || n == 0 || n > VG_MQTT_MAX_REMAINING - 2)
        return VG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (v == 4 ? !suback_rc_valid(rcs[i]) : !reason_ok(type, rcs[i]))
            return VG_EINVAL;
    }
    if (v == 5) {
        int e = props_len(props, PR_ACK, &plen);
        if (e != VG_OK)
            return e;
    }
    int total = put_header(out, cap, (uint8_t)(type << 4), 2 + (v == 5 ? block_len(plen) : 0) + n, &off);
    if (total < 0)
        return total;
    put_u16(out + off, packet_id);
    off += 2;
    if (v == 5)
        off += put_props(out + off, props, plen);
    memcpy(out + off, rcs, n);
    return total;
}

int vg_mqtt_encode_reason(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint8_t reason,
                          const vg_mqtt_props_t *props)
{
    int v = version(level);
    size_t off, plen = 0, rem;

    if (!v || (type != VG_MQTT_DISCONNECT && type != VG_MQTT_AUTH))
        return VG_EINVAL;
    if (v == 4) {
        if (type == VG_MQTT_AUTH)
            return VG_EINVAL;
        return put_header(out, cap, VG_MQTT_DISCONNECT << 4, 0, &off);
    }
    if (!reason_ok(type, reason))
        return VG_EINVAL;
    int e = props_len(props, type == VG_MQTT_AUTH ? PR_AUTH : PR_DISCONNECT, &plen);
    if (e != VG_OK)
        return e;
    if (type == VG_MQTT_AUTH && !(props_mask(props) & PB(AUTH_METHOD)))
        return VG_EINVAL; /* the decoder would refuse it: v5 §3.15.2.2.2 */
    rem = plen ? 1 + block_len(plen) : reason ? 1 : 0;
    int total = put_header(out, cap, (uint8_t)(type << 4), rem, &off);
    if (total < 0)
        return total;
    if (rem)
        out[off++] = reason;
    if (plen)
        put_props(out + off, props, plen);
    return total;
}

int vg_mqtt_encode_empty(uint8_t *out, size_t cap, uint8_t type)
{
    size_t off;

    if (type != VG_MQTT_PINGREQ && type != VG_MQTT_PINGRESP && type != VG_MQTT_DISCONNECT)
        return VG_EINVAL;
    return put_header(out, cap, (uint8_t)(type << 4), 0, &off);
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
