/* codec.c — MQTT 3.1.1 (and 3.1) packet codec.
 *
 * Owns the wire format only: framing, decoding into structs that point into
 * the caller's buffer, encoding into the caller's buffer, and the string and
 * topic rules of §1.5.3 and §4.7. It keeps no state between calls, never
 * allocates and never performs I/O; sessions, limits policy and buffering
 * belong to the broker. Every input byte is untrusted: nothing here asserts,
 * and every read is bounds-checked by index (never by forming a pointer past
 * the end, which keeps UBSan quiet on empty or NULL bodies).
 *
 * Section numbers refer to the OASIS MQTT 3.1.1 standard. */
#include "mqtt/codec.h"

#include "core/err.h"

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

/* ---- framing ----------------------------------------------------------- */

/* Bit f of allowed_flags[type] is set when the low nibble f is legal for the
 * type (§2.2.2): PUBREL, SUBSCRIBE and UNSUBSCRIBE need 0b0010; PUBLISH takes
 * anything but QoS 3 (nibbles 6, 7, 14, 15); types 0 and 15 are reserved. */
static const uint16_t allowed_flags[16] = {
    [VG_MQTT_CONNECT] = 0x0001,     [VG_MQTT_CONNACK] = 0x0001,   [VG_MQTT_PUBLISH] = 0x3F3F,
    [VG_MQTT_PUBACK] = 0x0001,      [VG_MQTT_PUBREC] = 0x0001,    [VG_MQTT_PUBREL] = 0x0004,
    [VG_MQTT_PUBCOMP] = 0x0001,     [VG_MQTT_SUBSCRIBE] = 0x0004, [VG_MQTT_SUBACK] = 0x0001,
    [VG_MQTT_UNSUBSCRIBE] = 0x0004, [VG_MQTT_UNSUBACK] = 0x0001,  [VG_MQTT_PINGREQ] = 0x0001,
    [VG_MQTT_PINGRESP] = 0x0001,    [VG_MQTT_DISCONNECT] = 0x0001,
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
    uint8_t level, fl, want;

    *out = (vg_mqtt_connect_t){0};
    *connack_rc = VG_MQTT_CONNACK_ACCEPTED;
    if (!rd_str(&r, &name) || !rd_u8(&r, &level))
        return VG_EMALFORMED;
    if (name.len == 4 && memcmp(name.p, "MQTT", 4) == 0)
        want = 4;
    else if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0)
        want = 3;
    else
        return VG_EMALFORMED;
    out->protocol_level = level;
    /* Stop here on a level we do not speak: a newer version (5.0 adds
     * properties after the keepalive) would not parse as 3.1.1, and the
     * client needs CONNACK 1, not a silent close, to fall back (§3.1.2.2). */
    if (level != want) {
        *connack_rc = VG_MQTT_CONNACK_BAD_PROTOCOL;
        return VG_EPROTO;
    }
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
    if (out->has_password && !out->has_username)
        return VG_EMALFORMED; /* §3.1.2.9 */
    if (!rd_str(&r, &out->client_id) || !vg_mqtt_utf8_valid(out->client_id.p, out->client_id.len))
        return VG_EMALFORMED;
    if (out->will_flag) {
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
     * byte id limit is enforced by the 16-bit length prefix itself. */
    if (out->client_id.len == 0 && !out->clean_session) {
        *connack_rc = VG_MQTT_CONNACK_ID_REJECTED;
        return VG_EPROTO;
    }
    return VG_OK;
}

int vg_mqtt_decode_publish(uint8_t flags, const uint8_t *body, size_t len, vg_mqtt_publish_t *out)
{
    uint8_t qos = (flags >> 1) & 3;
    bool dup = flags & 0x08;
    size_t tlen, off;
    uint16_t pid = 0;

    if (qos == 3 || (dup && qos == 0))
        return VG_EMALFORMED; /* §3.3.1.2, §3.3.1.1 */
    if (len < 2)
        return VG_EMALFORMED;
    tlen = (size_t)body[0] << 8 | body[1];
    if (len - 2 < tlen || !vg_mqtt_topic_valid(body + 2, tlen))
        return VG_EMALFORMED;
    off = 2 + tlen;
    if (qos) {
        if (len - off < 2)
            return VG_EMALFORMED;
        pid = (uint16_t)(body[off] << 8 | body[off + 1]);
        if (!pid)
            return VG_EMALFORMED; /* §2.3.1 */
        off += 2;
    }
    out->qos = qos;
    out->dup = dup;
    out->retain = flags & 0x01;
    out->topic = (vg_bytes_t){body + 2, tlen};
    out->packet_id = pid;
    out->payload = (vg_bytes_t){body + off, len - off};
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

int vg_mqtt_decode_subscribe(const uint8_t *body, size_t len, bool with_qos, uint16_t *packet_id, vg_mqtt_sub_t *subs,
                             size_t cap, size_t *count)
{
    rd_t r = {body, len, 0};
    size_t n = 0;

    *count = 0;
    if (!rd_u16(&r, packet_id) || !*packet_id)
        return VG_EMALFORMED;
    /* The whole packet is validated even past cap, so that VG_ELIMIT always
     * means "well-formed, just too many" and never hides a malformed one. */
    while (r.off < r.len) {
        vg_bytes_t f;
        uint8_t qos = 0;
        if (!rd_str(&r, &f) || !vg_mqtt_filter_valid(f.p, f.len))
            return VG_EMALFORMED;
        if (with_qos && (!rd_u8(&r, &qos) || qos > 2))
            return VG_EMALFORMED; /* §3.8.3.1: upper six bits reserved */
        if (n < cap)
            subs[n] = (vg_mqtt_sub_t){f, qos};
        n++;
    }
    if (n == 0)
        return VG_EMALFORMED; /* §3.8.3, §3.10.3 */
    if (n > cap)
        return VG_ELIMIT;
    *count = n;
    return VG_OK;
}

int vg_mqtt_decode_connack(const uint8_t *body, size_t len, bool *session_present, uint8_t *rc)
{
    if (len != 2 || (body[0] & 0xFE))
        return VG_EMALFORMED;
    *session_present = body[0] & 1;
    *rc = body[1];
    return VG_OK;
}

static inline bool suback_rc_valid(uint8_t rc)
{
    return rc <= 2 || rc == VG_MQTT_SUBACK_FAILURE;
}

int vg_mqtt_decode_suback(const uint8_t *body, size_t len, uint16_t *packet_id, uint8_t *rcs, size_t cap,
                          size_t *count)
{
    *count = 0;
    if (len < 3)
        return VG_EMALFORMED;
    uint16_t pid = (uint16_t)(body[0] << 8 | body[1]);
    if (!pid)
        return VG_EMALFORMED;
    for (size_t i = 2; i < len; i++) {
        if (!suback_rc_valid(body[i]))
            return VG_EMALFORMED;
    }
    *packet_id = pid;
    if (len - 2 > cap)
        return VG_ELIMIT;
    memcpy(rcs, body + 2, len - 2);
    *count = len - 2;
    return VG_OK;
}

/* ---- encoding ---------------------------------------------------------- */

static inline size_t varint_len(size_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static inline void put_u16(uint8_t *o, size_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
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
    size_t i = 1, v = rem;

    if (rem > VG_MQTT_MAX_REMAINING)
        return VG_EINVAL;
    if (1 + varint_len(rem) + rem > cap)
        return VG_ENOSPC;
    out[0] = b0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        out[i++] = v ? b | 0x80 : b;
    } while (v);
    *off = i;
    return (int)(i + rem);
}

int vg_mqtt_encode_connect(uint8_t *out, size_t cap, const vg_mqtt_connect_t *c)
{
    const char *name;
    size_t nlen, rem, off;
    uint8_t fl = 0;

    if (c->protocol_level == 4) {
        name = "MQTT";
        nlen = 4;
    } else if (c->protocol_level == 3) {
        name = "MQIsdp";
        nlen = 6;
    } else {
        return VG_EINVAL;
    }
    /* Refuse what a conforming server would reject as malformed, so that
     * our own decoder always accepts what this produces. */
    if (c->will_qos > 2 || (!c->will_flag && (c->will_qos || c->will_retain)) || (c->has_password && !c->has_username))
        return VG_EINVAL;
    if (c->client_id.len > 0xFFFF)
        return VG_EINVAL;
    rem = 2 + nlen + 1 + 1 + 2 + 2 + c->client_id.len;
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
    off += put_str(out + off, c->client_id.p, c->client_id.len);
    if (c->will_flag) {
        off += put_str(out + off, c->will_topic.p, c->will_topic.len);
        off += put_str(out + off, c->will_payload.p, c->will_payload.len);
    }
    if (c->has_username)
        off += put_str(out + off, c->username.p, c->username.len);
    if (c->has_password)
        put_str(out + off, c->password.p, c->password.len);
    return total;
}

int vg_mqtt_encode_connack(uint8_t *out, size_t cap, bool session_present, uint8_t rc)
{
    size_t off;

    /* Codes above 5 are reserved, and a refusal never claims a session
     * (§3.2.2.2). */
    if (rc > VG_MQTT_CONNACK_NOT_AUTHORIZED || (session_present && rc != VG_MQTT_CONNACK_ACCEPTED))
        return VG_EINVAL;
    int total = put_header(out, cap, VG_MQTT_CONNACK << 4, 2, &off);
    if (total < 0)
        return total;
    out[off] = session_present ? 1 : 0;
    out[off + 1] = rc;
    return total;
}

size_t vg_mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos)
{
    if (qos > 2 || topic_len > 0xFFFF || payload_len > VG_MQTT_MAX_REMAINING)
        return 0;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + payload_len;
    if (rem > VG_MQTT_MAX_REMAINING)
        return 0;
    return 1 + varint_len(rem) + rem;
}

int vg_mqtt_encode_publish(uint8_t *out, size_t cap, const vg_mqtt_publish_t *p)
{
    size_t off;

    if (p->qos > 2 || p->topic.len == 0 || p->topic.len > 0xFFFF || p->payload.len > VG_MQTT_MAX_REMAINING)
        return VG_EINVAL;
    if (p->qos ? p->packet_id == 0 : p->dup)
        return VG_EINVAL; /* §2.3.1, §3.3.1.1 */
    size_t rem = 2 + p->topic.len + (p->qos ? 2 : 0) + p->payload.len;
    uint8_t b0 = (uint8_t)(VG_MQTT_PUBLISH << 4 | (p->dup ? 0x08 : 0) | p->qos << 1 | (p->retain ? 1 : 0));
    int total = put_header(out, cap, b0, rem, &off);
    if (total < 0)
        return total;
    off += put_str(out + off, p->topic.p, p->topic.len);
    if (p->qos) {
        put_u16(out + off, p->packet_id);
        off += 2;
    }
    if (p->payload.len)
        memcpy(out + off, p->payload.p, p->payload.len);
    return total;
}

int vg_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t type, uint16_t packet_id)
{
    size_t off;
    uint8_t b0 = (uint8_t)(type << 4);

    switch (type) {
    case VG_MQTT_PUBACK:
    case VG_MQTT_PUBREC:
    case VG_MQTT_PUBCOMP:
    case VG_MQTT_UNSUBACK: break;
    case VG_MQTT_PUBREL: b0 |= 0x02; break;
    default: return VG_EINVAL;
    }
    if (!packet_id)
        return VG_EINVAL;
    int total = put_header(out, cap, b0, 2, &off);
    if (total < 0)
        return total;
    put_u16(out + off, packet_id);
    return total;
}

/* SUBSCRIBE and UNSUBSCRIBE differ only in the type and the QoS byte. */
static int encode_sub(uint8_t *out, size_t cap, uint8_t b0, uint16_t packet_id, const vg_mqtt_sub_t *subs, size_t n,
                      bool with_qos)
{
    size_t rem = 2, off;

    if (!packet_id || n == 0)
        return VG_EINVAL;
    /* Each step adds at most 65538, so rem cannot wrap before it exceeds
     * the protocol maximum and the loop stops. */
    for (size_t i = 0; i < n; i++) {
        if (subs[i].filter.len == 0 || subs[i].filter.len > 0xFFFF || (with_qos && subs[i].qos > 2))
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
    for (size_t i = 0; i < n; i++) {
        off += put_str(out + off, subs[i].filter.p, subs[i].filter.len);
        if (with_qos)
            out[off++] = subs[i].qos;
    }
    return total;
}

int vg_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id, const vg_mqtt_sub_t *subs, size_t n)
{
    return encode_sub(out, cap, VG_MQTT_SUBSCRIBE << 4 | 0x02, packet_id, subs, n, true);
}

int vg_mqtt_encode_unsubscribe(uint8_t *out, size_t cap, uint16_t packet_id, const vg_mqtt_sub_t *subs, size_t n)
{
    return encode_sub(out, cap, VG_MQTT_UNSUBSCRIBE << 4 | 0x02, packet_id, subs, n, false);
}

int vg_mqtt_encode_suback(uint8_t *out, size_t cap, uint16_t packet_id, const uint8_t *rcs, size_t n)
{
    size_t off;

    if (!packet_id || n == 0 || n > VG_MQTT_MAX_REMAINING - 2)
        return VG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!suback_rc_valid(rcs[i]))
            return VG_EINVAL;
    }
    int total = put_header(out, cap, VG_MQTT_SUBACK << 4, 2 + n, &off);
    if (total < 0)
        return total;
    put_u16(out + off, packet_id);
    memcpy(out + off + 2, rcs, n);
    return total;
}

int vg_mqtt_encode_empty(uint8_t *out, size_t cap, uint8_t type)
{
    size_t off;

    if (type != VG_MQTT_PINGREQ && type != VG_MQTT_PINGRESP && type != VG_MQTT_DISCONNECT)
        return VG_EINVAL;
    return put_header(out, cap, (uint8_t)(type << 4), 0, &off);
}

const char *vg_mqtt_type_name(uint8_t type)
{
    static const char *const names[16] = {
        [VG_MQTT_CONNECT] = "CONNECT",         [VG_MQTT_CONNACK] = "CONNACK",   [VG_MQTT_PUBLISH] = "PUBLISH",
        [VG_MQTT_PUBACK] = "PUBACK",           [VG_MQTT_PUBREC] = "PUBREC",     [VG_MQTT_PUBREL] = "PUBREL",
        [VG_MQTT_PUBCOMP] = "PUBCOMP",         [VG_MQTT_SUBSCRIBE] = "SUBSCRIBE", [VG_MQTT_SUBACK] = "SUBACK",
        [VG_MQTT_UNSUBSCRIBE] = "UNSUBSCRIBE", [VG_MQTT_UNSUBACK] = "UNSUBACK", [VG_MQTT_PINGREQ] = "PINGREQ",
        [VG_MQTT_PINGRESP] = "PINGRESP",       [VG_MQTT_DISCONNECT] = "DISCONNECT",
    };
    return type < 16 && names[type] ? names[type] : "?";
}
