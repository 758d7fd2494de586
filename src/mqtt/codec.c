/* codec.c — MQTT 3.1.1 (and 3.1) and 5.0 packet codec: strings, framing
 * and decoding.
 *
 * The codec owns the wire format only: framing, decoding into structs that
 * point into the caller's buffer, encoding into the caller's buffer
 * (encode.c), the 5.0 property and reason-code rules (props.c), and the
 * string and topic rules of §1.5.3 and §4.7. This file owns the string and
 * topic rules, framing and the packet decoders; codec_int.h is what the
 * three files share. It keeps no state between calls, never allocates and
 * never performs I/O; sessions, limits policy and buffering belong to the
 * broker. Every input byte is untrusted: nothing here asserts, and every
 * read is bounds-checked by index (never by forming a pointer past the end,
 * which keeps UBSan quiet on empty or NULL bodies).
 *
 * Section numbers: plain ones refer to the OASIS MQTT 3.1.1 standard (the
 * code that predates 5.0), "v5 §" ones to MQTT 5.0. */
#include "mqtt/codec_int.h"

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

/* ---- decoding ---------------------------------------------------------- */

int vg_mqtt_decode_connect(const uint8_t *body, size_t len, vg_mqtt_connect_t *out, uint8_t *connack_rc)
{
    codec_rd_t r = {body, len, 0};
    vg_bytes_t name;
    uint8_t level, fl;
    bool known;
    int rc;

    *out = (vg_mqtt_connect_t){0};
    *connack_rc = VG_MQTT_CONNACK_ACCEPTED;
    if (!codec_rd_str(&r, &name) || !codec_rd_u8(&r, &level))
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
    if (!codec_rd_u8(&r, &fl) || !codec_rd_u16(&r, &out->keepalive))
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
    if (v5 && (rc = codec_rd_props(&r, PR_CONNECT, &out->props)) != VG_OK)
        return rc;
    if (!codec_rd_str(&r, &out->client_id) || !vg_mqtt_utf8_valid(out->client_id.p, out->client_id.len))
        return VG_EMALFORMED;
    if (out->will_flag) {
        /* 5.0 puts the will properties before the will topic (v5 §3.1.3.2). */
        if (v5 && (rc = codec_rd_props(&r, PR_WILL, &out->will_props)) != VG_OK)
            return rc;
        if (!codec_rd_str(&r, &out->will_topic) || !vg_mqtt_topic_valid(out->will_topic.p, out->will_topic.len) ||
            !codec_rd_str(&r, &out->will_payload))
            return VG_EMALFORMED;
    }
    if (out->has_username) {
        if (!codec_rd_str(&r, &out->username) || !vg_mqtt_utf8_valid(out->username.p, out->username.len))
            return VG_EMALFORMED;
    }
    if (out->has_password && !codec_rd_str(&r, &out->password))
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
    int v = codec_version(level);
    codec_rd_t r = {body, len, 0};
    uint8_t qos = (flags >> 1) & 3;
    bool dup = flags & 0x08;
    vg_bytes_t topic;
    uint16_t pid = 0;

    if (!v)
        return VG_EINVAL;
    if (qos == 3 || (dup && qos == 0))
        return VG_EMALFORMED; /* §3.3.1.2, §3.3.1.1 */
    if (!codec_rd_str(&r, &topic))
        return VG_EMALFORMED;
    /* 5.0 may leave the topic empty and name it by alias (v5 §3.3.2.3.4);
     * whether there is one is known after the properties. */
    if (!(v == 5 && topic.len == 0) && !vg_mqtt_topic_valid(topic.p, topic.len))
        return VG_EMALFORMED;
    if (qos) {
        if (!codec_rd_u16(&r, &pid) || !pid)
            return VG_EMALFORMED; /* §2.3.1 */
    }
    if (v == 5) {
        int rc = codec_rd_props(&r, PR_PUBLISH, &out->props);
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
    int v = codec_version(level);
    codec_rd_t r = {body, len, 0};

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
    if (!codec_rd_u16(&r, &out->packet_id) || !out->packet_id)
        return VG_EMALFORMED;
    if (v == 4)
        return len == 2 ? VG_OK : VG_EMALFORMED;
    /* v5 §3.4.2.1: the reason code and then the properties may be left out
     * from the end, meaning Success and none. */
    if (len > 2) {
        out->reason = body[2];
        r.off = 3;
        if (!codec_reason_ok(type, out->reason))
            return VG_EMALFORMED;
    }
    if (len > 3) {
        int rc = codec_rd_props(&r, PR_ACK, &out->props);
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

int vg_mqtt_decode_subscribe(uint8_t level, const uint8_t *body, size_t len, bool with_qos, uint16_t *packet_id,
                             vg_mqtt_props_t *props, vg_mqtt_sub_t *subs, size_t cap, size_t *count)
{
    int v = codec_version(level);
    codec_rd_t r = {body, len, 0};
    vg_mqtt_props_t local;
    vg_mqtt_props_t *pr = props ? props : &local;
    size_t n = 0;

    *count = 0;
    if (!v)
        return VG_EINVAL;
    if (!codec_rd_u16(&r, packet_id) || !*packet_id)
        return VG_EMALFORMED;
    if (v == 5) {
        int rc = codec_rd_props(&r, with_qos ? PR_SUBSCRIBE : PR_UNSUBSCRIBE, pr);
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
        if (!codec_rd_str(&r, &f) || !vg_mqtt_filter_valid(f.p, f.len))
            return VG_EMALFORMED;
        if (with_qos) {
            if (!codec_rd_u8(&r, &o) || (o & SO_QOS) == 3)
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
    int v = codec_version(level);
    codec_rd_t r = {body, len, 0};
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
        if (!codec_reason_ok(type, code))
            return VG_EMALFORMED;
    }
    if (len > 1) {
        int rc = codec_rd_props(&r, type == VG_MQTT_AUTH ? PR_AUTH : PR_DISCONNECT, pr);
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
    int v = codec_version(level);
    codec_rd_t r = {body, len, 0};
    vg_mqtt_props_t local;
    vg_mqtt_props_t *pr = props ? props : &local;
    uint8_t fl, code;

    if (!v)
        return VG_EINVAL;
    *pr = (vg_mqtt_props_t){0};
    if (!codec_rd_u8(&r, &fl) || !codec_rd_u8(&r, &code) || (fl & 0xFE))
        return VG_EMALFORMED; /* §3.2.2.1: bits 7-1 reserved */
    if (v == 4) {
        /* 3.1.1 return codes above 5 are reserved, but a client reports
         * them rather than calling the packet malformed. */
        if (len != 2)
            return VG_EMALFORMED;
    } else {
        /* v5 §3.2.2.1.1: a refusal never has a session. */
        if (!codec_reason_ok(VG_MQTT_CONNACK, code) || ((fl & 1) && code))
            return VG_EMALFORMED;
        int e = codec_rd_props(&r, PR_CONNACK, pr);
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
    int v = codec_version(level);
    codec_rd_t r = {body, len, 0};
    vg_mqtt_props_t local;
    vg_mqtt_props_t *pr = props ? props : &local;
    uint16_t pid;

    *count = 0;
    if (!v || !(type == VG_MQTT_SUBACK || (type == VG_MQTT_UNSUBACK && v == 5)))
        return VG_EINVAL;
    *pr = (vg_mqtt_props_t){0};
    if (!codec_rd_u16(&r, &pid) || !pid)
        return VG_EMALFORMED;
    if (v == 5) {
        int rc = codec_rd_props(&r, PR_ACK, pr);
        if (rc != VG_OK)
            return rc;
    }
    /* One code per filter, and a (UN)SUBSCRIBE has at least one. */
    if (r.off == len)
        return VG_EMALFORMED;
    for (size_t i = r.off; i < len; i++) {
        if (v == 4 ? !codec_suback_rc_valid(body[i]) : !codec_reason_ok(type, body[i]))
            return VG_EMALFORMED;
    }
    *packet_id = pid;
    if (len - r.off > cap)
        return VG_ELIMIT;
    memcpy(rcs, body + r.off, len - r.off);
    *count = len - r.off;
    return VG_OK;
}
