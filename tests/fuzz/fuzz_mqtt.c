/* fuzz_mqtt.c — libFuzzer harness for the MQTT codec (src/mqtt/codec.c, encode.c, props.c).
 *
 * Byte 0 of the input picks the protocol level (3.1.1 or 5.0) and the side
 * (the server's decoders or the client's); the rest is a byte stream from
 * the peer, framed packet after packet as a read loop does, until it runs
 * out or a frame is refused. A CONNECT on the server side sets the level
 * for the packets after it, as it does for a server. Each body goes through
 * every decoder at every level (they must never crash whatever the type,
 * and answer only with their documented codes) and then through the one
 * its type selects on that side, whose result is re-encoded and decoded
 * again: decode(encode(x)) must equal x field by field, encode must be a
 * function of the decoded value, and for 3.1.1 the re-encoded packet must
 * equal the input when the sender used the shortest length field. Decoded
 * 5.0 properties and reason codes are checked against the spec's tables
 * restated below, and the string validators and the topic matcher against
 * slow reference versions written independently, so that neither the
 * codec's tables nor its 8-bytes-at-a-time fast paths can drift from the
 * rules unnoticed. */
#include "core/err.h"
#include "mqtt/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Large enough for every re-encoded packet of a framed input. */
#define MAX_PACKET (1u << 20)
#define MAX_SUBS 16
#define MAX_LEVELS 4096

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                                    \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static uint8_t scratch[MAX_PACKET];
static uint8_t pack_buf[MAX_PACKET];

/* ---- reference implementations ----------------------------------------- */

/* Decodes each code point in full and checks it, rather than classifying
 * bytes by range as the codec does. */
static bool ref_utf8(const uint8_t *p, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) {
            cp = c;
            k = 1;
        } else if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F;
            k = 2;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F;
            k = 3;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07;
            k = 4;
        } else {
            return false;
        }
        if (n - i < k)
            return false;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if (cp == 0 || cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k;
    }
    return true;
}

typedef struct {
    size_t off, len;
} level_t;

/* Splits s at '/' into at most MAX_LEVELS levels; returns the count, or 0
 * if there are more. An empty string is one empty level. */
static size_t split(const uint8_t *s, size_t n, level_t *lv)
{
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            if (count == MAX_LEVELS)
                return 0;
            lv[count++] = (level_t){start, i - start};
            start = i + 1;
        }
    }
    return count;
}

static bool level_is(const uint8_t *s, level_t l, char c)
{
    return l.len == 1 && s[l.off] == c;
}

static level_t flv[MAX_LEVELS], tlv[MAX_LEVELS];

/* 0/1 for the answer, -1 when the input has too many levels to check. */
static int ref_filter_valid(const uint8_t *p, size_t n)
{
    if (n == 0 || n > 0xFFFF || !ref_utf8(p, n))
        return 0;
    size_t m = split(p, n, flv);
    if (!m)
        return -1;
    for (size_t i = 0; i < m; i++) {
        bool wild = memchr(p + flv[i].off, '+', flv[i].len) || memchr(p + flv[i].off, '#', flv[i].len);
        if (wild && !level_is(p, flv[i], '+') && !(level_is(p, flv[i], '#') && i == m - 1))
            return 0;
    }
    return 1;
}

static bool ref_topic_valid(const uint8_t *p, size_t n)
{
    return n > 0 && n <= 0xFFFF && ref_utf8(p, n) && !memchr(p, '+', n) && !memchr(p, '#', n);
}

/* §4.7 stated over level lists: filter level i is '#' (then the topic needs
 * at least i levels), '+' (any topic level i) or equal to topic level i. */
static int ref_matches(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn)
{
    size_t m = split(f, fn, flv), k = split(t, tn, tlv);
    if (!m || !k)
        return -1;
    if (tn > 0 && t[0] == '$' && (level_is(f, flv[0], '+') || level_is(f, flv[0], '#')))
        return 0;
    for (size_t i = 0; i < m; i++) {
        if (level_is(f, flv[i], '#'))
            return k >= i;
        if (i >= k)
            return 0;
        if (level_is(f, flv[i], '+'))
            continue;
        if (flv[i].len != tlv[i].len || memcmp(f + flv[i].off, t + tlv[i].off, flv[i].len) != 0)
            return 0;
    }
    return k == m;
}

/* ---- string checks ----------------------------------------------------- */

static void check_strings(const uint8_t *p, size_t n)
{
    bool u = vg_mqtt_utf8_valid(p, n);
    CHECK(u == ref_utf8(p, n));
    CHECK(vg_mqtt_topic_valid(p, n) == ref_topic_valid(p, n));
    int rf = ref_filter_valid(p, n);
    if (rf >= 0)
        CHECK(vg_mqtt_filter_valid(p, n) == (rf == 1));
}

/* Checks a (filter, topic) pair against the reference; the result is only
 * specified for a valid filter and topic, but must never crash otherwise. */
static void check_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn)
{
    bool got = vg_mqtt_topic_matches(f, fn, t, tn);
    if (!vg_mqtt_filter_valid(f, fn) || !vg_mqtt_topic_valid(t, tn))
        return;
    int want = ref_matches(f, fn, t, tn);
    if (want >= 0)
        CHECK(got == (want == 1));
}

static bool same(vg_bytes_t a, vg_bytes_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static size_t min_hdr_len(size_t rem)
{
    return 1 + (rem < 128 ? 1 : rem < 16384 ? 2 : rem < 2097152 ? 3 : 4);
}

/* Frames a re-encoded packet and returns its body. */
static const uint8_t *reframe(const uint8_t *pkt, int n, uint8_t want_type, uint8_t want_flags, size_t *len)
{
    uint8_t t, f;
    size_t hl, rl;
    CHECK(n > 0);
    CHECK(vg_mqtt_frame(pkt, (size_t)n, MAX_PACKET, &t, &f, &hl, &rl) == VG_OK);
    CHECK(t == want_type && f == want_flags && hl == min_hdr_len(rl) && hl + rl == (size_t)n);
    *len = rl;
    return pkt + hl;
}

/* ---- MQTT 5.0 oracles, written from the spec independently of the codec --- */

#define PB(id) VG_PROP_BIT(id)
#define MULTI (PB(VG_PROP_SUBSCRIPTION_ID) | PB(VG_PROP_USER))

/* Where each property may appear (v5 §2.2.2.2), as lists of ids. */
enum { C_CONNECT, C_WILL, C_CONNACK, C_PUBLISH, C_ACK, C_SUBSCRIBE, C_UNSUBSCRIBE, C_DISCONNECT, C_AUTH, C_N };
static const uint8_t ctx_ids[C_N][20] = {
    [C_CONNECT] = {0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27},
    [C_WILL] = {0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26},
    [C_CONNACK] = {0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
                   0x2A},
    [C_PUBLISH] = {0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26},
    [C_ACK] = {0x1F, 0x26},
    [C_SUBSCRIBE] = {0x0B, 0x26},
    [C_UNSUBSCRIBE] = {0x26},
    [C_DISCONNECT] = {0x11, 0x1C, 0x1F, 0x26},
    [C_AUTH] = {0x15, 0x16, 0x1F, 0x26},
};

static uint64_t ctx_mask(int ctx)
{
    uint64_t m = 0;
    for (const uint8_t *p = ctx_ids[ctx]; *p; p++)
        m |= PB(*p);
    return m;
}

/* Reason codes per packet (v5 §3.2.2.2, §3.4.2.1, §3.5.2.1, §3.6.2.1,
 * §3.7.2.1, §3.9.3, §3.11.3, §3.14.2.1 + 0x8C from §2.4, §3.15.2.1). */
static bool ref_reason(uint8_t type, uint8_t rc)
{
    static const uint8_t connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                                      0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
    static const uint8_t puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    static const uint8_t pubrel[] = {0x00, 0x92};
    static const uint8_t suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
    static const uint8_t unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
    static const uint8_t disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C,
                                         0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98,
                                         0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
    static const uint8_t auth[] = {0x00, 0x18, 0x19};
#define IN(set) (memchr(set, rc, sizeof(set)) != NULL)
    switch (type) {
    case VG_MQTT_CONNACK:
        return IN(connack);
    case VG_MQTT_PUBACK:
    case VG_MQTT_PUBREC:
        return IN(puback);
    case VG_MQTT_PUBREL:
    case VG_MQTT_PUBCOMP:
        return IN(pubrel);
    case VG_MQTT_SUBACK:
        return IN(suback);
    case VG_MQTT_UNSUBACK:
        return IN(unsuback);
    case VG_MQTT_DISCONNECT:
        return IN(disconnect);
    case VG_MQTT_AUTH:
        return IN(auth);
    default:
        return false;
    }
#undef IN
}

static bool utf8_field(vg_bytes_t s)
{
    return ref_utf8(s.p, s.len);
}

static bool empty(vg_bytes_t s)
{
    return s.len == 0;
}

/* Everything a decoded properties struct must satisfy whatever the input:
 * only allowed properties, each value in its range, strings well-formed,
 * absent fields zero, the user property run iterable and counted right. */
static void check_props(int ctx, const vg_mqtt_props_t *p)
{
    uint64_t allowed = ctx_mask(ctx), pr = p->present;
    CHECK((pr & ~allowed) == 0);
    CHECK(!!(pr & PB(VG_PROP_SUBSCRIPTION_ID)) == (p->sub_id_count > 0));
    CHECK(!!(pr & PB(VG_PROP_USER)) == (p->user_prop_count > 0));
    CHECK(p->payload_format <= 1 && p->request_problem_info <= 1 && p->request_response_info <= 1);
    CHECK(p->max_qos <= 1 && p->retain_available <= 1 && p->wildcard_sub_available <= 1);
    CHECK(p->sub_id_available <= 1 && p->shared_sub_available <= 1);
    CHECK(!(pr & PB(VG_PROP_RECEIVE_MAX)) == (p->receive_max == 0));
    CHECK(!(pr & PB(VG_PROP_MAX_PACKET_SIZE)) == (p->max_packet_size == 0));
    CHECK(!(pr & PB(VG_PROP_TOPIC_ALIAS)) == (p->topic_alias == 0));
    if (ctx == C_SUBSCRIBE)
        CHECK(p->sub_id_count <= 1);
    for (uint32_t i = 0; i < p->sub_id_count && i < VG_MQTT_MAX_SUB_IDS; i++)
        CHECK(p->sub_ids[i] >= 1 && p->sub_ids[i] <= VG_MQTT_MAX_SUB_ID);
    CHECK(utf8_field(p->content_type) && utf8_field(p->assigned_client_id) && utf8_field(p->auth_method));
    CHECK(utf8_field(p->response_info) && utf8_field(p->server_reference) && utf8_field(p->reason_string));
    if (pr & PB(VG_PROP_RESPONSE_TOPIC))
        CHECK(ref_topic_valid(p->response_topic.p, p->response_topic.len));
    if (pr & PB(VG_PROP_AUTH_DATA))
        CHECK(pr & PB(VG_PROP_AUTH_METHOD));
    if (ctx == C_AUTH)
        CHECK(pr & PB(VG_PROP_AUTH_METHOD));
    /* Absent means zero. */
    if (!(pr & PB(VG_PROP_PAYLOAD_FORMAT)))
        CHECK(p->payload_format == 0);
    if (!(pr & PB(VG_PROP_MESSAGE_EXPIRY)))
        CHECK(p->message_expiry == 0);
    if (!(pr & PB(VG_PROP_SESSION_EXPIRY)))
        CHECK(p->session_expiry == 0);
    if (!(pr & PB(VG_PROP_CONTENT_TYPE)))
        CHECK(empty(p->content_type));
    if (!(pr & PB(VG_PROP_RESPONSE_TOPIC)))
        CHECK(empty(p->response_topic));
    if (!(pr & PB(VG_PROP_CORRELATION_DATA)))
        CHECK(empty(p->correlation_data));
    if (!(pr & PB(VG_PROP_AUTH_DATA)))
        CHECK(empty(p->auth_data));
    if (!(pr & PB(VG_PROP_REASON_STRING)))
        CHECK(empty(p->reason_string));
    if (!(pr & PB(VG_PROP_USER)))
        CHECK(empty(p->user_props));
    size_t pos = 0;
    uint32_t n = 0;
    vg_bytes_t k, v;
    while (vg_mqtt_user_props_next(p, &pos, &k, &v)) {
        CHECK(ref_utf8(k.p, k.len) && ref_utf8(v.p, v.len));
        n++;
    }
    CHECK(n == p->user_prop_count && pos == p->user_props.len);
    /* Packed, the run holds exactly those entries, back to back. */
    int plen = vg_mqtt_user_props_pack(p, pack_buf, sizeof(pack_buf));
    CHECK(plen >= 0 && (size_t)plen <= p->user_props.len);
    vg_mqtt_props_t packed = {.user_props = {pack_buf, (size_t)plen}};
    size_t pa = 0, pb = 0, off = 0;
    vg_bytes_t k2, v2;
    while (vg_mqtt_user_props_next(p, &pa, &k, &v)) {
        CHECK(vg_mqtt_user_props_next(&packed, &pb, &k2, &v2) && same(k, k2) && same(v, v2));
        CHECK(pack_buf[off] == VG_PROP_USER && k2.p == pack_buf + off + 3);
        off += 5 + k.len + v.len;
    }
    CHECK(off == (size_t)plen && !vg_mqtt_user_props_next(&packed, &pb, &k2, &v2));
    /* Encodable unless it has more identifiers than the struct holds. */
    size_t sz = vg_mqtt_props_size(p);
    CHECK((sz == 0) == (p->sub_id_count > VG_MQTT_MAX_SUB_IDS));
}

static bool same_props(const vg_mqtt_props_t *a, const vg_mqtt_props_t *b)
{
    if (a->present != b->present || a->payload_format != b->payload_format || a->message_expiry != b->message_expiry ||
        a->session_expiry != b->session_expiry || a->server_keepalive != b->server_keepalive ||
        a->request_problem_info != b->request_problem_info || a->will_delay != b->will_delay ||
        a->request_response_info != b->request_response_info || a->receive_max != b->receive_max ||
        a->topic_alias_max != b->topic_alias_max || a->topic_alias != b->topic_alias || a->max_qos != b->max_qos ||
        a->retain_available != b->retain_available || a->max_packet_size != b->max_packet_size ||
        a->wildcard_sub_available != b->wildcard_sub_available || a->sub_id_available != b->sub_id_available ||
        a->shared_sub_available != b->shared_sub_available || a->sub_id_count != b->sub_id_count ||
        a->user_prop_count != b->user_prop_count)
        return false;
    if (!same(a->content_type, b->content_type) || !same(a->response_topic, b->response_topic) ||
        !same(a->correlation_data, b->correlation_data) || !same(a->assigned_client_id, b->assigned_client_id) ||
        !same(a->auth_method, b->auth_method) || !same(a->auth_data, b->auth_data) ||
        !same(a->response_info, b->response_info) || !same(a->server_reference, b->server_reference) ||
        !same(a->reason_string, b->reason_string))
        return false;
    for (uint32_t i = 0; i < a->sub_id_count && i < VG_MQTT_MAX_SUB_IDS; i++) {
        if (a->sub_ids[i] != b->sub_ids[i])
            return false;
    }
    size_t pa = 0, pb = 0;
    for (;;) {
        vg_bytes_t ka, va, kb, vb;
        bool ma = vg_mqtt_user_props_next(a, &pa, &ka, &va), mb = vg_mqtt_user_props_next(b, &pb, &kb, &vb);
        if (ma != mb)
            return false;
        if (!ma)
            return true;
        if (!same(ka, kb) || !same(va, vb))
            return false;
    }
}

/* Field by field: a struct copied from a compound literal may have any
 * padding bytes, so memcmp would not do. */
static bool no_props(const vg_mqtt_props_t *p)
{
    static const vg_mqtt_props_t zero;
    return same_props(p, &zero);
}

/* ---- per-type round trips ---------------------------------------------- */

/* Every successful decode is re-encoded into scratch, framed, decoded again
 * and compared field by field; the second decode is re-encoded into
 * scratch2 and must give the same bytes (encoding is a function of the
 * decoded value). For 3.1.1, and for 5.0 packets whose properties were
 * already in the encoder's order, the first re-encoding must also equal
 * the input; 5.0 re-encodings are never longer, and only the packets with
 * short forms (acks, DISCONNECT) may come out shorter. */
static uint8_t scratch2[MAX_PACKET];

static void same_bytes(const uint8_t *a, int na, const uint8_t *b, int nb)
{
    CHECK(na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0);
}

static void check_len(int v, bool has_short_form, size_t blen, size_t len, const uint8_t *b2, const uint8_t *body)
{
    if (v != 5) {
        CHECK(blen == len && memcmp(b2, body, len) == 0);
        return;
    }
    CHECK(has_short_form ? blen <= len : blen == len);
}

/* Replaces the reason code at body[at] with each of the 256 values and
 * checks that the decoder accepts exactly the ones the spec's table lists
 * for the type, so that a wrong entry in the codec's table is found from
 * any packet that reaches here rather than only from the one byte value. */
static uint8_t sweep_buf[MAX_PACKET];

static void sweep_reason(uint8_t lv, uint8_t type, const uint8_t *body, size_t len, size_t at)
{
    memcpy(sweep_buf, body, len);
    for (unsigned v = 0; v < 256; v++) {
        vg_mqtt_ack_t a;
        vg_mqtt_props_t pr;
        uint8_t rc, rcs[4];
        uint16_t pid;
        size_t n;
        bool sp;
        int r;
        sweep_buf[at] = (uint8_t)v;
        switch (type) {
        case VG_MQTT_CONNACK:
            r = vg_mqtt_decode_connack(lv, sweep_buf, len, &sp, &rc, &pr);
            break;
        case VG_MQTT_SUBACK:
        case VG_MQTT_UNSUBACK:
            r = vg_mqtt_decode_suback(lv, type, sweep_buf, len, &pid, &pr, rcs, 4, &n);
            break;
        case VG_MQTT_DISCONNECT:
        case VG_MQTT_AUTH:
            r = vg_mqtt_decode_reason(lv, type, sweep_buf, len, &rc, &pr);
            break;
        default:
            r = vg_mqtt_decode_ack(lv, type, sweep_buf, len, &a);
            break;
        }
        /* A CONNACK refusal may not claim a session. */
        bool ok = ref_reason(type, (uint8_t)v) && !(type == VG_MQTT_CONNACK && (sweep_buf[0] & 1) && v != 0);
        CHECK(ok ? r == VG_OK || r == VG_ELIMIT : r == VG_EMALFORMED);
    }
}

static vg_bytes_t last_topic;
static uint8_t level; /* the stream's level: from the selector, then from CONNECT */

static void rt_connect(const uint8_t *body, size_t len)
{
    vg_mqtt_connect_t c, d;
    uint8_t rc = 0xFF, rc2 = 0xFF;
    size_t blen;

    int r = vg_mqtt_decode_connect(body, len, &c, &rc);
    CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_EPROTO);
    CHECK(r == VG_EPROTO ? rc == VG_MQTT_CONNACK_BAD_PROTOCOL || rc == VG_MQTT_CONNACK_ID_REJECTED
                         : rc == VG_MQTT_CONNACK_ACCEPTED);
    if (r == VG_EPROTO && rc == VG_MQTT_CONNACK_ID_REJECTED)
        CHECK(c.client_id.len == 0 && !c.clean_session && c.protocol_level != 5);
    if (r == VG_EPROTO && rc == VG_MQTT_CONNACK_BAD_PROTOCOL)
        CHECK(c.protocol_level < 3 || c.protocol_level > 5 || (c.protocol_level == 3) != (body[1] == 6));
    if (r != VG_OK)
        return;
    CHECK(c.protocol_level >= 3 && c.protocol_level <= 5);
    bool v5 = c.protocol_level == 5;
    level = c.protocol_level;
    check_strings(c.client_id.p, c.client_id.len);
    CHECK(ref_utf8(c.client_id.p, c.client_id.len));
    CHECK(!c.has_password || c.has_username || v5);
    CHECK(c.will_qos <= 2 && (c.will_flag || (!c.will_qos && !c.will_retain)));
    if (c.has_username)
        CHECK(ref_utf8(c.username.p, c.username.len));
    if (c.will_flag) {
        CHECK(ref_topic_valid(c.will_topic.p, c.will_topic.len));
        check_strings(c.will_topic.p, c.will_topic.len);
    }
    if (v5) {
        check_props(C_CONNECT, &c.props);
        check_props(C_WILL, &c.will_props);
        if (!c.will_flag)
            CHECK(no_props(&c.will_props));
    } else {
        CHECK(no_props(&c.props) && no_props(&c.will_props));
    }
    int n = vg_mqtt_encode_connect(scratch, sizeof(scratch), &c);
    const uint8_t *b2 = reframe(scratch, n, VG_MQTT_CONNECT, 0, &blen);
    check_len(v5 ? 5 : 4, false, blen, len, b2, body);
    CHECK(vg_mqtt_decode_connect(b2, blen, &d, &rc2) == VG_OK);
    CHECK(d.protocol_level == c.protocol_level && d.clean_session == c.clean_session && d.keepalive == c.keepalive);
    CHECK(same(d.client_id, c.client_id));
    CHECK(d.will_flag == c.will_flag && d.will_qos == c.will_qos && d.will_retain == c.will_retain);
    CHECK(same(d.will_topic, c.will_topic) && same(d.will_payload, c.will_payload));
    CHECK(d.has_username == c.has_username && same(d.username, c.username));
    CHECK(d.has_password == c.has_password && same(d.password, c.password));
    CHECK(same_props(&d.props, &c.props) && same_props(&d.will_props, &c.will_props));
    same_bytes(scratch, n, scratch2, vg_mqtt_encode_connect(scratch2, sizeof(scratch2), &d));
}

static void rt_publish(uint8_t flags, const uint8_t *body, size_t len)
{
    vg_mqtt_publish_t p, d;
    size_t blen;
    bool v5 = level == 5;

    int r = vg_mqtt_decode_publish(level, flags, body, len, &p);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    if (r != VG_OK)
        return;
    CHECK(p.qos <= 2 && (p.qos == 0) == (p.packet_id == 0) && !(p.dup && p.qos == 0));
    CHECK(p.qos == ((flags >> 1) & 3) && p.dup == !!(flags & 8) && p.retain == (flags & 1));
    if (p.topic.len || !v5) {
        CHECK(ref_topic_valid(p.topic.p, p.topic.len));
        check_strings(p.topic.p, p.topic.len);
        last_topic = p.topic;
    } else {
        CHECK(p.props.present & PB(VG_PROP_TOPIC_ALIAS));
    }
    if (v5)
        check_props(C_PUBLISH, &p.props);
    else
        CHECK(no_props(&p.props));
    int n = vg_mqtt_encode_publish(scratch, sizeof(scratch), level, &p);
    size_t size = vg_mqtt_publish_size(level, p.topic.len, p.payload.len, p.qos, &p.props);
    if (p.props.sub_id_count > VG_MQTT_MAX_SUB_IDS) {
        CHECK(n == VG_EINVAL && size == 0);
        return;
    }
    CHECK(n > 0 && (size_t)n == size);
    const uint8_t *b2 = reframe(scratch, n, VG_MQTT_PUBLISH, flags, &blen);
    check_len(v5 ? 5 : 4, false, blen, len, b2, body);
    CHECK(vg_mqtt_decode_publish(level, flags, b2, blen, &d) == VG_OK);
    CHECK(d.qos == p.qos && d.dup == p.dup && d.retain == p.retain && d.packet_id == p.packet_id);
    CHECK(same(d.topic, p.topic) && same(d.payload, p.payload) && same_props(&d.props, &p.props));
    same_bytes(scratch, n, scratch2, vg_mqtt_encode_publish(scratch2, sizeof(scratch2), level, &d));
}

static vg_mqtt_sub_t subs[MAX_SUBS];
static size_t nsubs;
static vg_mqtt_sub_t many[MAX_PACKET / 3];

static bool same_sub(const vg_mqtt_sub_t *a, const vg_mqtt_sub_t *b)
{
    return same(a->filter, b->filter) && a->qos == b->qos && a->no_local == b->no_local &&
           a->retain_as_published == b->retain_as_published && a->retain_handling == b->retain_handling;
}

/* vg_mqtt_shared_split against v5 §4.8.2 restated: after "$share/" comes
 * a non-empty group without '/', '+' or '#', a '/', and a valid filter. */
static void check_shared(const uint8_t *f, size_t n)
{
    vg_bytes_t g, in;
    int r = vg_mqtt_shared_split(f, n, &g, &in);
    if (n < 7 || memcmp(f, "$share/", 7) != 0) {
        CHECK(r == 0);
        return;
    }
    size_t i = 7;
    while (i < n && f[i] != '/')
        i++;
    int inner_ok = i < n ? ref_filter_valid(f + i + 1, n - i - 1) : 0;
    if (inner_ok < 0)
        return; /* too many levels for the reference */
    bool ok = i > 7 && i < n && !memchr(f + 7, '+', i - 7) && !memchr(f + 7, '#', i - 7) && ref_utf8(f + 7, i - 7) &&
              inner_ok == 1;
    CHECK(r == (ok ? 1 : VG_EMALFORMED));
    if (ok)
        CHECK(g.p == f + 7 && g.len == i - 7 && in.p == f + i + 1 && in.len == n - i - 1);
}

static void rt_subscribe(uint8_t type, const uint8_t *body, size_t len)
{
    bool with_qos = type == VG_MQTT_SUBSCRIBE, v5 = level == 5;
    uint16_t pid = 0, pid2 = 0;
    vg_mqtt_sub_t d[MAX_SUBS];
    vg_mqtt_props_t pr, pr2;
    size_t n = 0, n2 = 0, blen;

    int r = vg_mqtt_decode_subscribe(level, body, len, with_qos, &pid, &pr, subs, MAX_SUBS, &n);
    CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_ELIMIT);
    nsubs = 0;
    if (r == VG_ELIMIT) {
        /* Too many for the cap, so well-formed: a big enough cap takes it. */
        CHECK(vg_mqtt_decode_subscribe(level, body, len, with_qos, &pid, NULL, many, sizeof(many) / sizeof(many[0]),
                                       &n) == VG_OK);
        CHECK(n > MAX_SUBS);
        return;
    }
    if (r != VG_OK)
        return;
    CHECK(n >= 1 && n <= MAX_SUBS && pid != 0);
    if (v5)
        check_props(with_qos ? C_SUBSCRIBE : C_UNSUBSCRIBE, &pr);
    else
        CHECK(no_props(&pr));
    for (size_t i = 0; i < n; i++) {
        CHECK(ref_filter_valid(subs[i].filter.p, subs[i].filter.len) != 0 && subs[i].qos <= 2);
        CHECK(subs[i].retain_handling <= 2);
        CHECK(with_qos ||
              (subs[i].qos == 0 && !subs[i].no_local && !subs[i].retain_as_published && !subs[i].retain_handling));
        CHECK(v5 || (!subs[i].no_local && !subs[i].retain_as_published && !subs[i].retain_handling));
        check_strings(subs[i].filter.p, subs[i].filter.len);
        check_shared(subs[i].filter.p, subs[i].filter.len);
    }
    nsubs = n;
    /* One fewer slot than needed is VG_ELIMIT. */
    CHECK(vg_mqtt_decode_subscribe(level, body, len, with_qos, &pid2, NULL, d, n - 1, &n2) == VG_ELIMIT);

    int e = with_qos ? vg_mqtt_encode_subscribe(scratch, sizeof(scratch), level, pid, &pr, subs, n)
                     : vg_mqtt_encode_unsubscribe(scratch, sizeof(scratch), level, pid, &pr, subs, n);
    const uint8_t *b2 = reframe(scratch, e, type, 2, &blen);
    check_len(v5 ? 5 : 4, false, blen, len, b2, body);
    CHECK(vg_mqtt_decode_subscribe(level, b2, blen, with_qos, &pid2, &pr2, d, MAX_SUBS, &n2) == VG_OK);
    CHECK(pid2 == pid && n2 == n && same_props(&pr, &pr2));
    for (size_t i = 0; i < n; i++)
        CHECK(same_sub(&d[i], &subs[i]));
    int e2 = with_qos ? vg_mqtt_encode_subscribe(scratch2, sizeof(scratch2), level, pid2, &pr2, d, n2)
                      : vg_mqtt_encode_unsubscribe(scratch2, sizeof(scratch2), level, pid2, &pr2, d, n2);
    same_bytes(scratch, e, scratch2, e2);
}

static void rt_suback(uint8_t type, const uint8_t *body, size_t len)
{
    uint8_t rcs[MAX_SUBS], rcs2[MAX_SUBS];
    uint16_t pid = 0, pid2 = 0;
    size_t n = 0, n2 = 0, blen;
    vg_mqtt_props_t pr, pr2;
    bool v5 = level == 5;

    int r = vg_mqtt_decode_suback(level, type, body, len, &pid, &pr, rcs, MAX_SUBS, &n);
    CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_ELIMIT);
    if (r != VG_OK)
        return;
    CHECK(n >= 1 && n <= MAX_SUBS && pid != 0);
    for (size_t i = 0; i < n; i++) {
        CHECK(v5 ? ref_reason(type, rcs[i]) : rcs[i] <= 2 || rcs[i] == 0x80);
        CHECK(strcmp(vg_mqtt_reason_name(rcs[i]), "?") != 0);
    }
    if (v5) {
        check_props(C_ACK, &pr);
        sweep_reason(level, type, body, len, len - n);
    } else {
        CHECK(no_props(&pr));
    }
    int e = vg_mqtt_encode_suback(scratch, sizeof(scratch), level, type, pid, &pr, rcs, n);
    const uint8_t *b2 = reframe(scratch, e, type, 0, &blen);
    check_len(v5 ? 5 : 4, false, blen, len, b2, body);
    CHECK(vg_mqtt_decode_suback(level, type, b2, blen, &pid2, &pr2, rcs2, MAX_SUBS, &n2) == VG_OK);
    CHECK(pid2 == pid && n2 == n && memcmp(rcs, rcs2, n) == 0 && same_props(&pr, &pr2));
    same_bytes(scratch, e, scratch2,
               vg_mqtt_encode_suback(scratch2, sizeof(scratch2), level, type, pid2, &pr2, rcs2, n2));
}

static void rt_connack(const uint8_t *body, size_t len)
{
    bool sp, sp2;
    uint8_t rc, rc2;
    size_t blen;
    vg_mqtt_props_t pr, pr2;
    bool v5 = level == 5;

    int r = vg_mqtt_decode_connack(level, body, len, &sp, &rc, &pr);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    if (r != VG_OK)
        return;
    if (v5) {
        CHECK(ref_reason(VG_MQTT_CONNACK, rc) && !(sp && rc));
        check_props(C_CONNACK, &pr);
        sweep_reason(level, VG_MQTT_CONNACK, body, len, 1);
    } else if (rc > VG_MQTT_CONNACK_NOT_AUTHORIZED || (sp && rc)) {
        /* 3.1.1 decodes reserved codes and a refusal with a session for the
         * client to report; the encoder refuses to produce them. */
        CHECK(vg_mqtt_encode_connack(scratch, sizeof(scratch), level, sp, rc, &pr) == VG_EINVAL);
        return;
    }
    int e = vg_mqtt_encode_connack(scratch, sizeof(scratch), level, sp, rc, &pr);
    const uint8_t *b2 = reframe(scratch, e, VG_MQTT_CONNACK, 0, &blen);
    check_len(v5 ? 5 : 4, false, blen, len, b2, body);
    CHECK(vg_mqtt_decode_connack(level, b2, blen, &sp2, &rc2, &pr2) == VG_OK);
    CHECK(sp2 == sp && rc2 == rc && same_props(&pr, &pr2));
    same_bytes(scratch, e, scratch2, vg_mqtt_encode_connack(scratch2, sizeof(scratch2), level, sp2, rc2, &pr2));
}

static void rt_ack(uint8_t type, uint8_t flags, const uint8_t *body, size_t len)
{
    vg_mqtt_ack_t a, d;
    size_t blen;
    uint16_t pid = 0;
    bool v5 = level == 5;

    int r = vg_mqtt_decode_ack(level, type, body, len, &a);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    /* The 3.1.1-only decoder agrees with the level-aware one there. */
    if (!v5)
        CHECK((vg_mqtt_decode_packet_id(body, len, &pid) == VG_OK) == (r == VG_OK));
    if (r != VG_OK)
        return;
    CHECK(a.packet_id != 0);
    if (v5) {
        CHECK(ref_reason(type, a.reason));
        check_props(C_ACK, &a.props);
        CHECK(len >= 2 && (len > 2 || a.reason == 0) && (len > 3 || no_props(&a.props)));
        if (len > 2)
            sweep_reason(level, type, body, len, 2);
    } else {
        CHECK(pid == a.packet_id && a.reason == 0 && no_props(&a.props));
    }
    int e = vg_mqtt_encode_ack(scratch, sizeof(scratch), level, type, a.packet_id, a.reason, &a.props);
    const uint8_t *b2 = reframe(scratch, e, type, flags, &blen);
    check_len(v5 ? 5 : 4, true, blen, len, b2, body);
    CHECK(vg_mqtt_decode_ack(level, type, b2, blen, &d) == VG_OK);
    CHECK(d.packet_id == a.packet_id && d.reason == a.reason && same_props(&d.props, &a.props));
    same_bytes(scratch, e, scratch2,
               vg_mqtt_encode_ack(scratch2, sizeof(scratch2), level, type, d.packet_id, d.reason, &d.props));
}

static void rt_reason(uint8_t type, const uint8_t *body, size_t len)
{
    uint8_t rc = 0xFF, rc2 = 0xFF;
    vg_mqtt_props_t pr, pr2;
    size_t blen;
    bool v5 = level == 5;

    int r = vg_mqtt_decode_reason(level, type, body, len, &rc, &pr);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    if (!v5)
        CHECK(r == (type == VG_MQTT_DISCONNECT && len == 0 ? VG_OK : VG_EMALFORMED));
    if (r != VG_OK)
        return;
    if (v5) {
        CHECK(ref_reason(type, rc));
        check_props(type == VG_MQTT_AUTH ? C_AUTH : C_DISCONNECT, &pr);
        CHECK(len > 0 || rc == 0);
        if (len > 0)
            sweep_reason(level, type, body, len, 0);
    } else {
        CHECK(rc == 0 && no_props(&pr));
    }
    int e = vg_mqtt_encode_reason(scratch, sizeof(scratch), level, type, rc, &pr);
    const uint8_t *b2 = reframe(scratch, e, type, 0, &blen);
    check_len(v5 ? 5 : 4, true, blen, len, b2, body);
    CHECK(vg_mqtt_decode_reason(level, type, b2, blen, &rc2, &pr2) == VG_OK);
    CHECK(rc2 == rc && same_props(&pr, &pr2));
    same_bytes(scratch, e, scratch2, vg_mqtt_encode_reason(scratch2, sizeof(scratch2), level, type, rc2, &pr2));
}

/* Every decoder on every body, at every level and whatever the type: none
 * may crash, and each answers only with the codes its contract lists. */
static void decode_all(uint8_t flags, const uint8_t *body, size_t len)
{
    static const uint8_t levels[] = {VG_MQTT_V31, VG_MQTT_V311, VG_MQTT_V5};
    vg_mqtt_connect_t c;
    vg_mqtt_publish_t p;
    vg_mqtt_ack_t a;
    vg_mqtt_props_t pr;
    vg_mqtt_sub_t s[2];
    uint8_t rc, rcs[2];
    uint16_t pid;
    size_t n;
    bool sp;
    int r;

    r = vg_mqtt_decode_connect(body, len, &c, &rc);
    CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_EPROTO);
    r = vg_mqtt_decode_packet_id(body, len, &pid);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    for (size_t i = 0; i < sizeof(levels); i++) {
        uint8_t lv = levels[i];
        r = vg_mqtt_decode_publish(lv, flags, body, len, &p);
        CHECK(r == VG_OK || r == VG_EMALFORMED);
        for (uint8_t t = VG_MQTT_PUBACK; t <= VG_MQTT_PUBCOMP; t++) {
            r = vg_mqtt_decode_ack(lv, t, body, len, &a);
            CHECK(r == VG_OK || r == VG_EMALFORMED);
        }
        r = vg_mqtt_decode_ack(lv, VG_MQTT_UNSUBACK, body, len, &a);
        CHECK(lv == 5 ? r == VG_EINVAL : r == VG_OK || r == VG_EMALFORMED);
        for (int q = 0; q < 2; q++) {
            r = vg_mqtt_decode_subscribe(lv, body, len, q, &pid, &pr, s, 2, &n);
            CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_ELIMIT);
            r = vg_mqtt_decode_subscribe(lv, body, len, q, &pid, NULL, NULL, 0, &n);
            CHECK(r == VG_EMALFORMED || r == VG_ELIMIT);
        }
        r = vg_mqtt_decode_connack(lv, body, len, &sp, &rc, &pr);
        CHECK(r == VG_OK || r == VG_EMALFORMED);
        r = vg_mqtt_decode_suback(lv, VG_MQTT_SUBACK, body, len, &pid, NULL, rcs, 2, &n);
        CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_ELIMIT);
        r = vg_mqtt_decode_suback(lv, VG_MQTT_UNSUBACK, body, len, &pid, &pr, rcs, 2, &n);
        CHECK(lv == 5 ? r == VG_OK || r == VG_EMALFORMED || r == VG_ELIMIT : r == VG_EINVAL);
        r = vg_mqtt_decode_reason(lv, VG_MQTT_DISCONNECT, body, len, &rc, NULL);
        CHECK(r == VG_OK || r == VG_EMALFORMED);
        r = vg_mqtt_decode_reason(lv, VG_MQTT_AUTH, body, len, &rc, &pr);
        CHECK(r == VG_OK || r == VG_EMALFORMED);
    }
    /* The body as a user property run an encoder is handed: the iterator,
     * the size and an encoder agree on whether it parses, and never read
     * outside it. */
    vg_mqtt_props_t run = {.user_props = {body, len}};
    size_t pos = 0, count = 0;
    vg_bytes_t k, v;
    while (vg_mqtt_user_props_next(&run, &pos, &k, &v))
        count++;
    size_t sz = vg_mqtt_props_size(&run);
    int e = vg_mqtt_encode_reason(scratch, sizeof(scratch), VG_MQTT_V5, VG_MQTT_DISCONNECT, 0, &run);
    CHECK((sz == 0) == (e == VG_EINVAL));
    if (sz) {
        CHECK(pos == len);
        bool all_utf8 = true;
        pos = 0;
        while (vg_mqtt_user_props_next(&run, &pos, &k, &v))
            all_utf8 = all_utf8 && ref_utf8(k.p, k.len) && ref_utf8(v.p, v.len);
        vg_mqtt_props_t back;
        uint8_t rc8;
        size_t blen;
        const uint8_t *b2 = reframe(scratch, e, VG_MQTT_DISCONNECT, 0, &blen);
        /* What it wrote is a run of exactly the user entries (the rest of
         * the body's properties, however they might be invalid, skipped). */
        CHECK(blen == (count ? 1 + sz : 0));
        if (count) {
            int r2 = vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, b2, blen, &rc8, &back);
            /* The strings were not scanned by the encoder: the packet
             * decodes exactly when they are all valid, and then gives the
             * same user properties back. */
            vg_mqtt_props_t want = {
                .present = PB(VG_PROP_USER), .user_props = run.user_props, .user_prop_count = (uint32_t)count};
            CHECK((r2 == VG_OK) == all_utf8);
            if (r2 == VG_OK)
                CHECK(same_props(&want, &back));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    if (size == 0)
        return 0;
    /* Byte 0 picks the level (bit 0: 5.0, else 3.1.1) and the side (bit 1:
     * the client's decoders, else the server's); the rest is the stream. */
    uint8_t sel = data[0];
    bool client = sel & 2;
    level = sel & 1 ? VG_MQTT_V5 : VG_MQTT_V311;
    data++;
    size--;

    last_topic = (vg_bytes_t){NULL, 0};
    nsubs = 0;
    check_strings(data, size);
    check_shared(data, size);
    /* The input's two halves as a filter and a topic. */
    check_match(data, size / 2, data + size / 2, size - size / 2);

    while (off < size) {
        const uint8_t *pkt = data + off;
        size_t avail = size - off, hl = 0, rl = 0;
        uint8_t type = 0, flags = 0;

        int r = vg_mqtt_frame(pkt, avail, MAX_PACKET, &type, &flags, &hl, &rl);
        CHECK(r == VG_OK || r == VG_AGAIN || r == VG_EMALFORMED || r == VG_ETOOBIG);
        if (r != VG_OK)
            break;
        CHECK(type >= 1 && type <= 15 && flags < 16 && hl >= 2 && hl <= 5 && hl + rl <= avail);
        CHECK(vg_mqtt_type_name(type)[0] != '?');
        /* Resumable: every shorter read asks for more, and a limit below
         * the packet's size refuses it as soon as the length is known. */
        uint8_t t2, f2;
        size_t h2, r2;
        for (size_t i = 0; i < hl; i++)
            CHECK(vg_mqtt_frame(pkt, i, MAX_PACKET, &t2, &f2, &h2, &r2) == VG_AGAIN);
        CHECK(vg_mqtt_frame(pkt, hl, hl + rl - 1, &t2, &f2, &h2, &r2) == VG_ETOOBIG);
        CHECK(h2 == hl && r2 == rl);
        if (rl > 0) {
            CHECK(vg_mqtt_frame(pkt, hl, MAX_PACKET, &t2, &f2, &h2, &r2) == VG_AGAIN);
            CHECK(vg_mqtt_frame(pkt, hl + rl - 1, MAX_PACKET, &t2, &f2, &h2, &r2) == VG_AGAIN);
        }

        const uint8_t *body = pkt + hl;
        bool canonical = hl == min_hdr_len(rl);
        decode_all(flags, body, rl);
        /* Round trips compare re-encoded bytes with the input, which only
         * a shortest length field can match. */
        if (canonical) {
            switch (type) {
            case VG_MQTT_CONNECT:
                if (!client)
                    rt_connect(body, rl);
                break;
            case VG_MQTT_CONNACK:
                if (client)
                    rt_connack(body, rl);
                break;
            case VG_MQTT_PUBLISH:
                rt_publish(flags, body, rl);
                break;
            case VG_MQTT_PUBACK:
            case VG_MQTT_PUBREC:
            case VG_MQTT_PUBREL:
            case VG_MQTT_PUBCOMP:
                rt_ack(type, flags, body, rl);
                break;
            case VG_MQTT_SUBSCRIBE:
            case VG_MQTT_UNSUBSCRIBE:
                if (!client)
                    rt_subscribe(type, body, rl);
                break;
            case VG_MQTT_SUBACK:
                if (client)
                    rt_suback(type, body, rl);
                break;
            case VG_MQTT_UNSUBACK:
                if (client) {
                    if (level == 5)
                        rt_suback(type, body, rl);
                    else
                        rt_ack(type, flags, body, rl);
                }
                break;
            case VG_MQTT_DISCONNECT:
            case VG_MQTT_AUTH:
                rt_reason(type, body, rl);
                break;
            default:
                if (rl == 0 && (type == (client ? VG_MQTT_PINGRESP : VG_MQTT_PINGREQ))) {
                    CHECK(vg_mqtt_encode_empty(scratch, sizeof(scratch), type) == 2);
                    CHECK(scratch[0] == pkt[0] && scratch[1] == 0);
                }
                break;
            }
        }
        /* Topics published in this stream against filters subscribed in it. */
        if (last_topic.len) {
            for (size_t i = 0; i < nsubs; i++)
                check_match(subs[i].filter.p, subs[i].filter.len, last_topic.p, last_topic.len);
            check_match(last_topic.p, last_topic.len, last_topic.p, last_topic.len);
            CHECK(vg_mqtt_topic_matches((const uint8_t *)"#", 1, last_topic.p, last_topic.len) ==
                  (last_topic.p[0] != '$'));
        }
        off += hl + rl;
    }
    return 0;
}
