/* fuzz_mqtt.c — libFuzzer harness for the MQTT codec (src/mqtt/codec.c).
 *
 * Treats the input as a byte stream from a client and frames it packet after
 * packet, as the server's read loop does, until the stream runs out or a
 * frame is refused. Each body goes through every decoder (they must never
 * crash whatever the type) and then through the one its type selects, whose
 * result is re-encoded and decoded again: decode(encode(x)) must equal x,
 * and when the sender used the shortest length field the re-encoded packet
 * must equal the original bytes. The string validators and the topic matcher
 * are checked against slow reference versions written independently below,
 * so that the 8-bytes-at-a-time fast paths cannot drift from the rules. */
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

/* ---- per-type round trips ---------------------------------------------- */

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
        CHECK(c.client_id.len == 0 && !c.clean_session);
    if (r != VG_OK)
        return;
    CHECK(c.protocol_level == 3 || c.protocol_level == 4);
    check_strings(c.client_id.p, c.client_id.len);
    if (c.will_flag) {
        CHECK(vg_mqtt_topic_valid(c.will_topic.p, c.will_topic.len));
        check_strings(c.will_topic.p, c.will_topic.len);
    }
    int n = vg_mqtt_encode_connect(scratch, sizeof(scratch), &c);
    const uint8_t *b2 = reframe(scratch, n, VG_MQTT_CONNECT, 0, &blen);
    CHECK(blen == len);
    CHECK(memcmp(b2, body, len) == 0);
    CHECK(vg_mqtt_decode_connect(b2, blen, &d, &rc2) == VG_OK);
    CHECK(d.protocol_level == c.protocol_level && d.clean_session == c.clean_session && d.keepalive == c.keepalive);
    CHECK(same(d.client_id, c.client_id));
    CHECK(d.will_flag == c.will_flag && d.will_qos == c.will_qos && d.will_retain == c.will_retain);
    CHECK(same(d.will_topic, c.will_topic) && same(d.will_payload, c.will_payload));
    CHECK(d.has_username == c.has_username && same(d.username, c.username));
    CHECK(d.has_password == c.has_password && same(d.password, c.password));
}

static vg_bytes_t last_topic;

static void rt_publish(uint8_t flags, const uint8_t *body, size_t len)
{
    vg_mqtt_publish_t p, d;
    size_t blen;

    int r = vg_mqtt_decode_publish(flags, body, len, &p);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    if (r != VG_OK)
        return;
    CHECK(p.qos <= 2 && (p.qos == 0) == (p.packet_id == 0) && !(p.dup && p.qos == 0));
    CHECK(vg_mqtt_topic_valid(p.topic.p, p.topic.len));
    check_strings(p.topic.p, p.topic.len);
    last_topic = p.topic;
    int n = vg_mqtt_encode_publish(scratch, sizeof(scratch), &p);
    CHECK(n > 0 && (size_t)n == vg_mqtt_publish_size(p.topic.len, p.payload.len, p.qos));
    const uint8_t *b2 = reframe(scratch, n, VG_MQTT_PUBLISH, flags, &blen);
    CHECK(blen == len && memcmp(b2, body, len) == 0);
    CHECK(vg_mqtt_decode_publish(flags, b2, blen, &d) == VG_OK);
    CHECK(d.qos == p.qos && d.dup == p.dup && d.retain == p.retain && d.packet_id == p.packet_id);
    CHECK(same(d.topic, p.topic) && same(d.payload, p.payload));
}

static vg_mqtt_sub_t subs[MAX_SUBS];
static size_t nsubs;
static vg_mqtt_sub_t many[MAX_PACKET / 3];

static void rt_subscribe(uint8_t type, const uint8_t *body, size_t len)
{
    bool with_qos = type == VG_MQTT_SUBSCRIBE;
    uint16_t pid = 0, pid2 = 0;
    vg_mqtt_sub_t d[MAX_SUBS];
    size_t n = 0, n2 = 0, blen;

    int r = vg_mqtt_decode_subscribe(body, len, with_qos, &pid, subs, MAX_SUBS, &n);
    CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_ELIMIT);
    if (r == VG_ELIMIT) {
        /* Too many for the cap, so well-formed: a big enough cap takes it. */
        CHECK(vg_mqtt_decode_subscribe(body, len, with_qos, &pid, many, sizeof(many) / sizeof(many[0]), &n) == VG_OK);
        CHECK(n > MAX_SUBS);
        nsubs = 0;
        return;
    }
    if (r != VG_OK) {
        nsubs = 0;
        return;
    }
    CHECK(n >= 1 && n <= MAX_SUBS && pid != 0);
    for (size_t i = 0; i < n; i++) {
        CHECK(vg_mqtt_filter_valid(subs[i].filter.p, subs[i].filter.len) && subs[i].qos <= 2);
        CHECK(with_qos || subs[i].qos == 0);
        check_strings(subs[i].filter.p, subs[i].filter.len);
    }
    nsubs = n;
    /* One fewer slot than needed is VG_ELIMIT. */
    CHECK(vg_mqtt_decode_subscribe(body, len, with_qos, &pid2, d, n - 1, &n2) == VG_ELIMIT);

    int e = with_qos ? vg_mqtt_encode_subscribe(scratch, sizeof(scratch), pid, subs, n)
                     : vg_mqtt_encode_unsubscribe(scratch, sizeof(scratch), pid, subs, n);
    const uint8_t *b2 = reframe(scratch, e, type, 2, &blen);
    CHECK(blen == len && memcmp(b2, body, len) == 0);
    CHECK(vg_mqtt_decode_subscribe(b2, blen, with_qos, &pid2, d, MAX_SUBS, &n2) == VG_OK);
    CHECK(pid2 == pid && n2 == n);
    for (size_t i = 0; i < n; i++)
        CHECK(same(d[i].filter, subs[i].filter) && d[i].qos == subs[i].qos);
}

static void rt_suback(const uint8_t *body, size_t len)
{
    uint8_t rcs[MAX_SUBS], rcs2[MAX_SUBS];
    uint16_t pid = 0, pid2 = 0;
    size_t n = 0, n2 = 0, blen;

    int r = vg_mqtt_decode_suback(body, len, &pid, rcs, MAX_SUBS, &n);
    CHECK(r == VG_OK || r == VG_EMALFORMED || r == VG_ELIMIT);
    if (r != VG_OK)
        return;
    CHECK(n >= 1 && n <= MAX_SUBS && pid != 0);
    const uint8_t *b2 = reframe(scratch, vg_mqtt_encode_suback(scratch, sizeof(scratch), pid, rcs, n), VG_MQTT_SUBACK,
                                0, &blen);
    CHECK(blen == len && memcmp(b2, body, len) == 0);
    CHECK(vg_mqtt_decode_suback(b2, blen, &pid2, rcs2, MAX_SUBS, &n2) == VG_OK);
    CHECK(pid2 == pid && n2 == n && memcmp(rcs, rcs2, n) == 0);
}

static void rt_connack(const uint8_t *body, size_t len)
{
    bool sp;
    uint8_t rc;
    size_t blen;

    int r = vg_mqtt_decode_connack(body, len, &sp, &rc);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    /* The encoder refuses reserved codes and a refusal with a session. */
    if (r != VG_OK || rc > VG_MQTT_CONNACK_NOT_AUTHORIZED || (sp && rc))
        return;
    const uint8_t *b2 = reframe(scratch, vg_mqtt_encode_connack(scratch, sizeof(scratch), sp, rc), VG_MQTT_CONNACK,
                                0, &blen);
    CHECK(blen == len && memcmp(b2, body, len) == 0);
}

static void rt_ack(uint8_t type, uint8_t flags, const uint8_t *body, size_t len)
{
    uint16_t pid = 0;
    size_t blen;

    int r = vg_mqtt_decode_packet_id(body, len, &pid);
    CHECK(r == VG_OK || r == VG_EMALFORMED);
    if (r != VG_OK)
        return;
    CHECK(pid != 0);
    const uint8_t *b2 = reframe(scratch, vg_mqtt_encode_ack(scratch, sizeof(scratch), type, pid), type, flags, &blen);
    CHECK(blen == len && memcmp(b2, body, len) == 0);
}

/* Every decoder on every body, whatever the type: none may crash. */
static void decode_all(uint8_t flags, const uint8_t *body, size_t len)
{
    vg_mqtt_connect_t c;
    vg_mqtt_publish_t p;
    vg_mqtt_sub_t s[2];
    uint8_t rc, rcs[2];
    uint16_t pid;
    size_t n;
    bool sp;

    (void)vg_mqtt_decode_connect(body, len, &c, &rc);
    (void)vg_mqtt_decode_publish(flags, body, len, &p);
    (void)vg_mqtt_decode_packet_id(body, len, &pid);
    (void)vg_mqtt_decode_subscribe(body, len, true, &pid, s, 2, &n);
    (void)vg_mqtt_decode_subscribe(body, len, false, &pid, s, 2, &n);
    (void)vg_mqtt_decode_subscribe(body, len, true, &pid, NULL, 0, &n);
    (void)vg_mqtt_decode_connack(body, len, &sp, &rc);
    (void)vg_mqtt_decode_suback(body, len, &pid, rcs, 2, &n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    last_topic = (vg_bytes_t){NULL, 0};
    nsubs = 0;
    check_strings(data, size);
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
        CHECK(type >= 1 && type <= 14 && flags < 16 && hl >= 2 && hl <= 5 && hl + rl <= avail);
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
        if (canonical) {
            switch (type) {
            case VG_MQTT_CONNECT: rt_connect(body, rl); break;
            case VG_MQTT_CONNACK: rt_connack(body, rl); break;
            case VG_MQTT_PUBLISH: rt_publish(flags, body, rl); break;
            case VG_MQTT_PUBACK:
            case VG_MQTT_PUBREC:
            case VG_MQTT_PUBREL:
            case VG_MQTT_PUBCOMP:
            case VG_MQTT_UNSUBACK: rt_ack(type, flags, body, rl); break;
            case VG_MQTT_SUBSCRIBE:
            case VG_MQTT_UNSUBSCRIBE: rt_subscribe(type, body, rl); break;
            case VG_MQTT_SUBACK: rt_suback(body, rl); break;
            default:
                if (rl == 0) {
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
