/* test_codec.c — unit tests for the MQTT codec (src/mqtt/codec.c).
 *
 * Packets are either produced by the encoders and read back (round trips) or
 * written out byte by byte from the spec, so that an encoder bug cannot hide
 * a matching decoder bug. Section numbers are MQTT 3.1.1. */
#include "core/err.h"
#include "mqtt/codec.h"
#include "vt.h"

#include <stdint.h>

/* A byte list as (pointer, length) arguments. */
#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})
/* A string literal as (pointer, length) arguments, without its NUL. */
#define S(lit) ((const uint8_t *)(lit)), (sizeof(lit) - 1)

#define BIG (SIZE_MAX / 2)

typedef struct {
    uint8_t b[1024];
    size_t n;
} buf_t;

static void put_u8(buf_t *b, uint8_t v)
{
    b->b[b->n++] = v;
}

static void put_u16(buf_t *b, uint16_t v)
{
    put_u8(b, (uint8_t)(v >> 8));
    put_u8(b, (uint8_t)v);
}

static void put_raw(buf_t *b, const void *p, size_t n)
{
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

/* A length-prefixed field (§1.5.3). */
static void put_lstr(buf_t *b, const void *p, size_t n)
{
    put_u16(b, (uint16_t)n);
    put_raw(b, p, n);
}

static void put_str(buf_t *b, const char *s)
{
    put_lstr(b, s, strlen(s));
}

/* The variable header of a CONNECT: name, level, flags, keepalive 60. */
static buf_t connect_head(const char *name, uint8_t level, uint8_t flags)
{
    buf_t b = {.n = 0};
    put_str(&b, name);
    put_u8(&b, level);
    put_u8(&b, flags);
    put_u16(&b, 60);
    return b;
}

static bool bytes_eq(vg_bytes_t a, const char *s)
{
    return a.len == strlen(s) && (a.len == 0 || memcmp(a.p, s, a.len) == 0);
}

/* Field equality; memcmp is skipped for empty fields, whose pointer may be NULL. */
static bool same(vg_bytes_t a, vg_bytes_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static vg_bytes_t bs(const char *s)
{
    return (vg_bytes_t){(const uint8_t *)s, strlen(s)};
}

/* Frames pkt[0..n) and checks it is exactly one packet of the given type
 * and flags; returns the body through *body / *len. */
static bool frame_one(const uint8_t *pkt, size_t n, uint8_t want_type, uint8_t want_flags, const uint8_t **body,
                      size_t *len)
{
    uint8_t type = 0, flags = 0;
    size_t hl = 0, rl = 0;
    int rc = vg_mqtt_frame(pkt, n, BIG, &type, &flags, &hl, &rl);
    VT_EQ_INT(rc, VG_OK);
    VT_EQ_INT(type, want_type);
    VT_EQ_INT(flags, want_flags);
    VT_EQ_INT(hl + rl, n);
    /* Every strict prefix must ask for more bytes. */
    for (size_t i = 0; i < n; i++) {
        uint8_t t2, f2;
        size_t h2, r2;
        VT_EQ_INT(vg_mqtt_frame(pkt, i, BIG, &t2, &f2, &h2, &r2), VG_AGAIN);
    }
    *body = pkt + hl;
    *len = rl;
    return rc == VG_OK && type == want_type && flags == want_flags && hl + rl == n;
}

/* ---- framing ----------------------------------------------------------- */

static void test_frame_partial(void)
{
    uint8_t t, f;
    size_t hl, rl;

    VT_EQ_INT(vg_mqtt_frame(NULL, 0, BIG, &t, &f, &hl, &rl), VG_AGAIN);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30), BIG, &t, &f, &hl, &rl), VG_AGAIN);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x80), BIG, &t, &f, &hl, &rl), VG_AGAIN);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x80, 0x80), BIG, &t, &f, &hl, &rl), VG_AGAIN);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x80, 0x80, 0x80), BIG, &t, &f, &hl, &rl), VG_AGAIN);
    /* Length complete, body missing. */
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x05, 0x00, 0x01), BIG, &t, &f, &hl, &rl), VG_AGAIN);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0xC0, 0x00), BIG, &t, &f, &hl, &rl), VG_OK);
    VT_EQ_INT(t, VG_MQTT_PINGREQ);
    VT_EQ_INT(f, 0);
    VT_EQ_INT(hl, 2);
    VT_EQ_INT(rl, 0);
    /* Extra bytes after the packet belong to the next one. */
    VT_EQ_INT(vg_mqtt_frame(BYTES(0xE0, 0x00, 0xC0), BIG, &t, &f, &hl, &rl), VG_OK);
    VT_EQ_INT(t, VG_MQTT_DISCONNECT);
    VT_EQ_INT(hl + rl, 2);
}

static void test_frame_length_encodings(void)
{
    /* §2.2.3's table: the boundaries of each length-field size. */
    static const struct {
        uint8_t len[4];
        size_t nlen;
        size_t value;
    } cases[] = {
        {{0x00}, 1, 0},
        {{0x7F}, 1, 127},
        {{0x80, 0x01}, 2, 128},
        {{0xFF, 0x7F}, 2, 16383},
        {{0x80, 0x80, 0x01}, 3, 16384},
        {{0xFF, 0xFF, 0x7F}, 3, 2097151},
        {{0x80, 0x80, 0x80, 0x01}, 4, 2097152},
        {{0xFF, 0xFF, 0xFF, 0x7F}, 4, VG_MQTT_MAX_REMAINING},
        /* Not minimal, but 3.1.1 does not forbid it. */
        {{0x80, 0x00}, 2, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t hdr[5] = {0x30};
        uint8_t t, f;
        size_t hl = 0, rl = 0, want = 1 + cases[i].nlen + cases[i].value;
        memcpy(hdr + 1, cases[i].len, cases[i].nlen);
        /* The limit tells us the decoded value without supplying the body:
         * exactly at the limit waits for the body, one below is too big. */
        if (cases[i].value > 0) {
            VT_EQ_INT(vg_mqtt_frame(hdr, 1 + cases[i].nlen, want, &t, &f, &hl, &rl), VG_AGAIN);
        } else {
            VT_EQ_INT(vg_mqtt_frame(hdr, 1 + cases[i].nlen, want, &t, &f, &hl, &rl), VG_OK);
            VT_EQ_INT(hl, 1 + cases[i].nlen);
            VT_EQ_INT(rl, 0);
        }
        VT_EQ_INT(vg_mqtt_frame(hdr, 1 + cases[i].nlen, want - 1, &t, &f, &hl, &rl), VG_ETOOBIG);
        VT_EQ_INT(hl, 1 + cases[i].nlen);
        VT_EQ_INT(rl, cases[i].value);
    }

    /* A whole packet with a two- and a three-byte length. */
    static uint8_t pkt[3 + 20000];
    uint8_t t, f;
    size_t hl, rl;
    memset(pkt, 'x', sizeof(pkt));
    pkt[0] = 0x30;
    pkt[1] = 0xC8; /* 200 = 0x48 | 1 << 7 */
    pkt[2] = 0x01;
    VT_EQ_INT(vg_mqtt_frame(pkt, 3 + 200, BIG, &t, &f, &hl, &rl), VG_OK);
    VT_EQ_INT(hl, 3);
    VT_EQ_INT(rl, 200);
    VT_EQ_INT(vg_mqtt_frame(pkt, 3 + 199, BIG, &t, &f, &hl, &rl), VG_AGAIN);
    pkt[1] = 0x80 | (20000 & 0x7F);
    pkt[2] = 0x80 | ((20000 >> 7) & 0x7F);
    pkt[3] = 20000 >> 14;
    VT_EQ_INT(vg_mqtt_frame(pkt, 4 + 20000 - 1, BIG, &t, &f, &hl, &rl), VG_AGAIN);
}

static void test_frame_length_too_long(void)
{
    uint8_t t, f;
    size_t hl, rl;

    /* A fifth length byte is refused as soon as the fourth says one follows,
     * whether or not the fifth has arrived. */
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x80, 0x80, 0x80, 0x80), BIG, &t, &f, &hl, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), BIG, &t, &f, &hl, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x80, 0x80, 0x80, 0x80, 0x00), BIG, &t, &f, &hl, &rl), VG_EMALFORMED);
}

static void test_frame_toobig_before_body(void)
{
    uint8_t t, f;
    size_t hl, rl;

    /* rem_len 1024 with a 3-byte header: 1027 fits, 1026 does not. */
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x80, 0x08), 1026, &t, &f, &hl, &rl), VG_ETOOBIG);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x80, 0x08), 1027, &t, &f, &hl, &rl), VG_AGAIN);
    /* The largest length with a tiny limit: refused from four bytes. */
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 1 << 20, &t, &f, &hl, &rl), VG_ETOOBIG);
    /* Not decided until the length field is complete. */
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF), 16, &t, &f, &hl, &rl), VG_AGAIN);
    /* The header counts towards the limit. */
    VT_EQ_INT(vg_mqtt_frame(BYTES(0xC0, 0x00), 1, &t, &f, &hl, &rl), VG_ETOOBIG);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0xC0, 0x00), 2, &t, &f, &hl, &rl), VG_OK);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0x30, 0x02, 0x00, 0x00), 3, &t, &f, &hl, &rl), VG_ETOOBIG);
}

static void test_frame_flags(void)
{
    /* Every (type, flags) pair against §2.2.2, with a complete zero-length
     * packet so that only the flags decide. */
    for (unsigned type = 0; type < 16; type++) {
        for (unsigned fl = 0; fl < 16; fl++) {
            bool ok;
            if (type == 0 || type == 15)
                ok = false;
            else if (type == VG_MQTT_PUBLISH)
                ok = (fl & 6) != 6;
            else if (type == VG_MQTT_PUBREL || type == VG_MQTT_SUBSCRIBE || type == VG_MQTT_UNSUBSCRIBE)
                ok = fl == 2;
            else
                ok = fl == 0;
            uint8_t pkt[2] = {(uint8_t)(type << 4 | fl), 0};
            uint8_t t = 0xFF, f = 0xFF;
            size_t hl, rl;
            int rc = vg_mqtt_frame(pkt, 2, BIG, &t, &f, &hl, &rl);
            if (ok) {
                VT_EQ_INT(rc, VG_OK);
                VT_EQ_INT(t, type);
                VT_EQ_INT(f, fl);
            } else {
                if (rc != VG_EMALFORMED)
                    printf("  type %u flags %u\n", type, fl);
                VT_EQ_INT(rc, VG_EMALFORMED);
                /* Decided from byte 0 alone. */
                VT_EQ_INT(vg_mqtt_frame(pkt, 1, BIG, &t, &f, &hl, &rl), VG_EMALFORMED);
            }
        }
    }
}

static void test_frame_stream(void)
{
    uint8_t stream[256];
    size_t n = 0, off = 0, seen = 0;
    uint8_t types[3] = {0};
    vg_mqtt_publish_t p = {.qos = 1, .topic = bs("a/b"), .packet_id = 7, .payload = bs("hello")};

    n += (size_t)vg_mqtt_encode_publish(stream + n, sizeof(stream) - n, &p);
    n += (size_t)vg_mqtt_encode_ack(stream + n, sizeof(stream) - n, VG_MQTT_PUBREL, 7);
    n += (size_t)vg_mqtt_encode_empty(stream + n, sizeof(stream) - n, VG_MQTT_PINGREQ);
    while (off < n) {
        uint8_t t, f;
        size_t hl, rl;
        int rc = vg_mqtt_frame(stream + off, n - off, 64, &t, &f, &hl, &rl);
        VT_REQUIRE(rc == VG_OK && seen < 3);
        types[seen++] = t;
        off += hl + rl;
    }
    VT_EQ_INT(seen, 3);
    VT_EQ_INT(types[0], VG_MQTT_PUBLISH);
    VT_EQ_INT(types[1], VG_MQTT_PUBREL);
    VT_EQ_INT(types[2], VG_MQTT_PINGREQ);
}

/* ---- round trips ------------------------------------------------------- */

static void check_connect_rt(const vg_mqtt_connect_t *c)
{
    uint8_t pkt[512];
    const uint8_t *body;
    size_t len;
    vg_mqtt_connect_t d;
    uint8_t rc = 0xFF;

    int n = vg_mqtt_encode_connect(pkt, sizeof(pkt), c);
    VT_REQUIRE(n > 0);
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_CONNECT, 0, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_connect(body, len, &d, &rc), VG_OK);
    VT_EQ_INT(rc, VG_MQTT_CONNACK_ACCEPTED);
    VT_EQ_INT(d.protocol_level, c->protocol_level);
    VT_EQ_INT(d.clean_session, c->clean_session);
    VT_EQ_INT(d.keepalive, c->keepalive);
    VT_CHECK(same(d.client_id, c->client_id));
    VT_EQ_INT(d.will_flag, c->will_flag);
    VT_EQ_INT(d.will_qos, c->will_qos);
    VT_EQ_INT(d.will_retain, c->will_retain);
    if (c->will_flag) {
        VT_CHECK(same(d.will_topic, c->will_topic));
        VT_CHECK(same(d.will_payload, c->will_payload));
    }
    VT_EQ_INT(d.has_username, c->has_username);
    VT_EQ_INT(d.has_password, c->has_password);
    if (c->has_username)
        VT_CHECK(same(d.username, c->username));
    if (c->has_password)
        VT_CHECK(same(d.password, c->password));
}

static void test_roundtrip_connect(void)
{
    vg_mqtt_connect_t minimal = {.protocol_level = 4, .clean_session = true, .client_id = bs("")};
    vg_mqtt_connect_t full = {
        .protocol_level = 4,
        .keepalive = 65535,
        .client_id = bs("wearable-0042"),
        .will_flag = true,
        .will_qos = 2,
        .will_retain = true,
        .will_topic = bs("devices/0042/status"),
        .will_payload = {(const uint8_t *)"off\0line", 8},
        .has_username = true,
        .username = bs("ward-7"),
        .has_password = true,
        .password = {(const uint8_t *)"\xff\x00pw", 4},
    };
    vg_mqtt_connect_t v31 = {.protocol_level = 3, .keepalive = 10, .client_id = bs("old-client"),
                             .has_username = true, .username = bs("")};
    vg_mqtt_connect_t will_empty = {.protocol_level = 4, .client_id = bs("x"), .will_flag = true,
                                    .will_topic = bs("w"), .will_payload = {NULL, 0}};
    check_connect_rt(&minimal);
    check_connect_rt(&full);
    check_connect_rt(&v31);
    check_connect_rt(&will_empty);
}

static void test_connect_exact_bytes(void)
{
    /* The variable header of §3.1.2.10's example: "MQTT", level 4, flags
     * 0xCE (username, password, will QoS 1, will, clean), keepalive 10. */
    vg_mqtt_connect_t c = {.protocol_level = 4, .clean_session = true, .keepalive = 10, .client_id = bs("c"),
                           .will_flag = true, .will_qos = 1, .will_topic = bs("t"), .will_payload = bs("m"),
                           .has_username = true, .username = bs("u"), .has_password = true, .password = bs("p")};
    static const uint8_t want[] = {0x10, 25, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xCE, 0, 10, 0, 1, 'c',
                                   0,    1,  't', 0, 1, 'm', 0, 1, 'u', 0, 1, 'p'};
    uint8_t out[64];
    int n = vg_mqtt_encode_connect(out, sizeof(out), &c);
    VT_EQ_INT(n, sizeof(want));
    VT_CHECK(n == (int)sizeof(want) && memcmp(out, want, sizeof(want)) == 0);

    c = (vg_mqtt_connect_t){.protocol_level = 3, .client_id = bs("id")};
    static const uint8_t want31[] = {0x10, 16, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0, 0, 0, 0, 2, 'i', 'd'};
    n = vg_mqtt_encode_connect(out, sizeof(out), &c);
    VT_EQ_INT(n, sizeof(want31));
    VT_CHECK(n == (int)sizeof(want31) && memcmp(out, want31, sizeof(want31)) == 0);
}

static void test_roundtrip_connack(void)
{
    uint8_t pkt[8];
    const uint8_t *body;
    size_t len;
    bool sp;
    uint8_t rc;

    for (uint8_t code = 0; code <= 5; code++) {
        for (int present = 0; present < 2; present++) {
            if (present && code)
                continue;
            int n = vg_mqtt_encode_connack(pkt, sizeof(pkt), present, code);
            VT_EQ_INT(n, 4);
            VT_REQUIRE(frame_one(pkt, 4, VG_MQTT_CONNACK, 0, &body, &len));
            VT_EQ_INT(vg_mqtt_decode_connack(body, len, &sp, &rc), VG_OK);
            VT_EQ_INT(sp, present);
            VT_EQ_INT(rc, code);
        }
    }
    VT_EQ_INT(vg_mqtt_encode_connack(pkt, sizeof(pkt), true, 0), 4);
    VT_CHECK(memcmp(pkt, "\x20\x02\x01\x00", 4) == 0);
}

static void check_publish_rt(const vg_mqtt_publish_t *p)
{
    static uint8_t pkt[32768];
    const uint8_t *body;
    size_t len;
    vg_mqtt_publish_t d;
    uint8_t flags = (uint8_t)((p->dup ? 8 : 0) | p->qos << 1 | (p->retain ? 1 : 0));

    int n = vg_mqtt_encode_publish(pkt, sizeof(pkt), p);
    VT_REQUIRE(n > 0);
    VT_EQ_INT(n, vg_mqtt_publish_size(p->topic.len, p->payload.len, p->qos));
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_PUBLISH, flags, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_publish(flags, body, len, &d), VG_OK);
    VT_EQ_INT(d.qos, p->qos);
    VT_EQ_INT(d.dup, p->dup);
    VT_EQ_INT(d.retain, p->retain);
    VT_EQ_INT(d.packet_id, p->qos ? p->packet_id : 0);
    VT_CHECK(same(d.topic, p->topic));
    VT_CHECK(same(d.payload, p->payload));
}

static void test_roundtrip_publish(void)
{
    static uint8_t big[20000];
    memset(big, 0xA5, sizeof(big));

    vg_mqtt_publish_t q0 = {.topic = bs("vitals/hr/0042"), .payload = bs("{\"bpm\":71}")};
    vg_mqtt_publish_t q0r = {.retain = true, .topic = bs("a"), .payload = {NULL, 0}, .packet_id = 99};
    vg_mqtt_publish_t q1 = {.qos = 1, .topic = bs("vitals/spo2/7"), .packet_id = 1, .payload = bs("97")};
    vg_mqtt_publish_t q2d = {.qos = 2, .dup = true, .retain = true, .topic = bs("caf\xc3\xa9/\xe2\x82\xac"),
                             .packet_id = 65535, .payload = bs("x")};
    vg_mqtt_publish_t mid = {.qos = 1, .topic = bs("t"), .packet_id = 5, .payload = {big, 200}};
    vg_mqtt_publish_t large = {.qos = 0, .topic = bs("t/big"), .payload = {big, sizeof(big)}};
    check_publish_rt(&q0);
    check_publish_rt(&q0r);
    check_publish_rt(&q1);
    check_publish_rt(&q2d);
    check_publish_rt(&mid);
    check_publish_rt(&large);

    /* Exact bytes for a QoS 1 packet. */
    uint8_t out[32];
    static const uint8_t want[] = {0x32, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'h', 'e', 'y'};
    vg_mqtt_publish_t p = {.qos = 1, .topic = bs("a/b"), .packet_id = 0x1234, .payload = bs("hey")};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), sizeof(want));
    VT_CHECK(memcmp(out, want, sizeof(want)) == 0);
}

static void test_roundtrip_acks(void)
{
    static const uint8_t types[] = {VG_MQTT_PUBACK, VG_MQTT_PUBREC, VG_MQTT_PUBREL, VG_MQTT_PUBCOMP,
                                    VG_MQTT_UNSUBACK};
    for (size_t i = 0; i < sizeof(types); i++) {
        uint8_t pkt[8];
        const uint8_t *body;
        size_t len;
        uint16_t pid = 0;
        uint8_t flags = types[i] == VG_MQTT_PUBREL ? 2 : 0;
        VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), types[i], 0xBEEF), 4);
        VT_REQUIRE(frame_one(pkt, 4, types[i], flags, &body, &len));
        VT_EQ_INT(vg_mqtt_decode_packet_id(body, len, &pid), VG_OK);
        VT_EQ_INT(pid, 0xBEEF);
        VT_EQ_INT(pkt[2], 0xBE);
        VT_EQ_INT(pkt[3], 0xEF);
    }
}

static void check_sub_rt(bool with_qos, const vg_mqtt_sub_t *subs, size_t n)
{
    uint8_t pkt[512];
    const uint8_t *body;
    size_t len, count = 99;
    uint16_t pid = 0;
    vg_mqtt_sub_t d[8];

    int r = with_qos ? vg_mqtt_encode_subscribe(pkt, sizeof(pkt), 321, subs, n)
                     : vg_mqtt_encode_unsubscribe(pkt, sizeof(pkt), 321, subs, n);
    VT_REQUIRE(r > 0);
    VT_REQUIRE(frame_one(pkt, (size_t)r, with_qos ? VG_MQTT_SUBSCRIBE : VG_MQTT_UNSUBSCRIBE, 2, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_subscribe(body, len, with_qos, &pid, d, 8, &count), VG_OK);
    VT_EQ_INT(pid, 321);
    VT_REQUIRE(count == n);
    for (size_t i = 0; i < n; i++) {
        VT_CHECK(same(d[i].filter, subs[i].filter));
        VT_EQ_INT(d[i].qos, with_qos ? subs[i].qos : 0);
    }
}

static void test_roundtrip_subscribe(void)
{
    vg_mqtt_sub_t subs[] = {
        {bs("vitals/+/0042"), 0}, {bs("alerts/#"), 1}, {bs("#"), 2}, {bs("$SYS/broker/+"), 1}, {bs("+/+"), 0},
    };
    check_sub_rt(true, subs, 5);
    check_sub_rt(true, subs, 1);
    check_sub_rt(false, subs, 5);
    check_sub_rt(false, subs + 2, 1);

    /* Exact bytes (§3.8.3's example shape). */
    uint8_t out[32];
    vg_mqtt_sub_t one[] = {{bs("a/b"), 1}};
    static const uint8_t want[] = {0x82, 0x08, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01};
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), 10, one, 1), sizeof(want));
    VT_CHECK(memcmp(out, want, sizeof(want)) == 0);
    static const uint8_t wantu[] = {0xA2, 0x07, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b'};
    VT_EQ_INT(vg_mqtt_encode_unsubscribe(out, sizeof(out), 10, one, 1), sizeof(wantu));
    VT_CHECK(memcmp(out, wantu, sizeof(wantu)) == 0);
}

static void test_roundtrip_suback(void)
{
    static const uint8_t rcs[] = {0, 1, 2, VG_MQTT_SUBACK_FAILURE};
    uint8_t pkt[16], got[4];
    const uint8_t *body;
    size_t len, count = 0;
    uint16_t pid = 0;

    VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), 77, rcs, 4), 8);
    VT_REQUIRE(frame_one(pkt, 8, VG_MQTT_SUBACK, 0, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_suback(body, len, &pid, got, 4, &count), VG_OK);
    VT_EQ_INT(pid, 77);
    VT_EQ_INT(count, 4);
    VT_CHECK(memcmp(got, rcs, 4) == 0);
}

static void test_roundtrip_empty(void)
{
    static const uint8_t types[] = {VG_MQTT_PINGREQ, VG_MQTT_PINGRESP, VG_MQTT_DISCONNECT};
    for (size_t i = 0; i < sizeof(types); i++) {
        uint8_t pkt[2];
        const uint8_t *body;
        size_t len;
        VT_EQ_INT(vg_mqtt_encode_empty(pkt, sizeof(pkt), types[i]), 2);
        VT_REQUIRE(frame_one(pkt, 2, types[i], 0, &body, &len));
        VT_EQ_INT(len, 0);
        VT_EQ_INT(pkt[0], types[i] << 4);
    }
}

/* ---- encoder errors ---------------------------------------------------- */

static void test_encode_enospc(void)
{
    uint8_t out[128];
    vg_mqtt_connect_t c = {.protocol_level = 4, .client_id = bs("id"), .has_username = true, .username = bs("u")};
    vg_mqtt_publish_t p = {.qos = 1, .topic = bs("t/t"), .packet_id = 3, .payload = bs("payload")};
    vg_mqtt_sub_t subs[] = {{bs("a/+"), 1}, {bs("b/#"), 2}};
    static const uint8_t rcs[] = {0, 0x80};
    int need[8];

    need[0] = vg_mqtt_encode_connect(out, sizeof(out), &c);
    need[1] = vg_mqtt_encode_connack(out, sizeof(out), false, 0);
    need[2] = vg_mqtt_encode_publish(out, sizeof(out), &p);
    need[3] = vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_PUBACK, 1);
    need[4] = vg_mqtt_encode_subscribe(out, sizeof(out), 1, subs, 2);
    need[5] = vg_mqtt_encode_unsubscribe(out, sizeof(out), 1, subs, 2);
    need[6] = vg_mqtt_encode_suback(out, sizeof(out), 1, rcs, 2);
    need[7] = vg_mqtt_encode_empty(out, sizeof(out), VG_MQTT_PINGRESP);
    for (int k = 0; k < 8; k++) {
        VT_REQUIRE(need[k] > 0);
        for (size_t cap = 0; cap < (size_t)need[k]; cap++) {
            int r = 0;
            switch (k) {
            case 0: r = vg_mqtt_encode_connect(out, cap, &c); break;
            case 1: r = vg_mqtt_encode_connack(out, cap, false, 0); break;
            case 2: r = vg_mqtt_encode_publish(out, cap, &p); break;
            case 3: r = vg_mqtt_encode_ack(out, cap, VG_MQTT_PUBACK, 1); break;
            case 4: r = vg_mqtt_encode_subscribe(out, cap, 1, subs, 2); break;
            case 5: r = vg_mqtt_encode_unsubscribe(out, cap, 1, subs, 2); break;
            case 6: r = vg_mqtt_encode_suback(out, cap, 1, rcs, 2); break;
            case 7: r = vg_mqtt_encode_empty(out, cap, VG_MQTT_PINGRESP); break;
            }
            VT_EQ_INT(r, VG_ENOSPC);
        }
    }
    /* Nothing is written when it does not fit. */
    memset(out, 0x55, sizeof(out));
    VT_EQ_INT(vg_mqtt_encode_publish(out, (size_t)need[2] - 1, &p), VG_ENOSPC);
    VT_EQ_INT(out[0], 0x55);
}

static void test_encode_einval(void)
{
    static uint8_t huge[65536];
    uint8_t out[256];
    vg_mqtt_connect_t c;
    vg_mqtt_publish_t p;

    c = (vg_mqtt_connect_t){.protocol_level = 5, .client_id = bs("x")};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &c), VG_EINVAL);
    c = (vg_mqtt_connect_t){.protocol_level = 4, .client_id = {huge, 65536}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &c), VG_EINVAL);
    c = (vg_mqtt_connect_t){.protocol_level = 4, .client_id = {huge, 65535}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &c), VG_ENOSPC);
    c = (vg_mqtt_connect_t){.protocol_level = 4, .will_flag = true, .will_qos = 3, .will_topic = bs("t")};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &c), VG_EINVAL);
    c = (vg_mqtt_connect_t){.protocol_level = 4, .will_qos = 1};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &c), VG_EINVAL);
    c = (vg_mqtt_connect_t){.protocol_level = 4, .has_password = true, .password = bs("p")};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &c), VG_EINVAL);
    c = (vg_mqtt_connect_t){.protocol_level = 4, .has_username = true, .username = {huge, 70000}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &c), VG_EINVAL);

    p = (vg_mqtt_publish_t){.qos = 3, .topic = bs("t"), .packet_id = 1};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.qos = 1, .topic = bs("t"), .packet_id = 0};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.qos = 0, .dup = true, .topic = bs("t")};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.topic = {huge, 65536}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.topic = {NULL, 0}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    /* Remaining length over the maximum: refused before the payload is read,
     * so the (too short) buffer behind the pointer is never touched. */
    p = (vg_mqtt_publish_t){.topic = bs("t"), .payload = {huge, VG_MQTT_MAX_REMAINING - 2}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.qos = 1, .packet_id = 1, .topic = bs("t"), .payload = {huge, VG_MQTT_MAX_REMAINING - 4}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.topic = bs("t"), .payload = {huge, SIZE_MAX}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_EINVAL);
    /* Exactly the maximum is representable; it just does not fit here. */
    p = (vg_mqtt_publish_t){.topic = bs("t"), .payload = {huge, VG_MQTT_MAX_REMAINING - 3}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), &p), VG_ENOSPC);

    VT_EQ_INT(vg_mqtt_encode_connack(out, sizeof(out), false, 6), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_connack(out, sizeof(out), true, 5), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_PUBLISH, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_SUBACK, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), 0, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_PUBACK, 0), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_empty(out, sizeof(out), VG_MQTT_CONNECT), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_empty(out, sizeof(out), 15), VG_EINVAL);

    vg_mqtt_sub_t bad_qos[] = {{bs("a"), 3}};
    vg_mqtt_sub_t empty[] = {{{NULL, 0}, 0}};
    vg_mqtt_sub_t long_f[] = {{{huge, 65536}, 0}};
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), 1, bad_qos, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_unsubscribe(out, sizeof(out), 1, bad_qos, 1), 7); /* QoS is not sent */
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), 1, empty, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), 1, long_f, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), 1, bad_qos, 0), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), 0, bad_qos, 0), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_unsubscribe(out, sizeof(out), 0, bad_qos, 1), VG_EINVAL);

    static const uint8_t bad_rc[] = {0, 3};
    VT_EQ_INT(vg_mqtt_encode_suback(out, sizeof(out), 1, bad_rc, 2), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_suback(out, sizeof(out), 1, bad_rc, 0), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_suback(out, sizeof(out), 0, bad_rc, 1), VG_EINVAL);
}

static void test_publish_size(void)
{
    VT_EQ_INT(vg_mqtt_publish_size(1, 0, 0), 5);
    VT_EQ_INT(vg_mqtt_publish_size(1, 0, 1), 7);
    VT_EQ_INT(vg_mqtt_publish_size(3, 122, 0), 2 + 127);     /* remaining 127: one length byte */
    VT_EQ_INT(vg_mqtt_publish_size(3, 123, 0), 3 + 128);     /* remaining 128: two */
    VT_EQ_INT(vg_mqtt_publish_size(1, 16379, 2), 4 + 16384); /* remaining 16384: three */
    VT_EQ_INT(vg_mqtt_publish_size(1, VG_MQTT_MAX_REMAINING - 3, 0), 5 + VG_MQTT_MAX_REMAINING);
    VT_EQ_INT(vg_mqtt_publish_size(1, VG_MQTT_MAX_REMAINING - 2, 0), 0);
    VT_EQ_INT(vg_mqtt_publish_size(1, SIZE_MAX, 0), 0);
    VT_EQ_INT(vg_mqtt_publish_size(65536, 0, 0), 0);
    VT_EQ_INT(vg_mqtt_publish_size(1, 0, 3), 0);
}

/* ---- CONNECT validation ------------------------------------------------ */

static int connect_rc(const buf_t *b, uint8_t *rc)
{
    vg_mqtt_connect_t c;
    *rc = 0xFF;
    return vg_mqtt_decode_connect(b->b, b->n, &c, rc);
}

static void test_connect_protocol(void)
{
    buf_t b;
    uint8_t rc;

    b = connect_head("MQTT", 4, 0x02);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);
    VT_EQ_INT(rc, 0);
    b = connect_head("MQIsdp", 3, 0x02);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);

    /* Known name, wrong level: CONNACK 1. */
    b = connect_head("MQTT", 3, 0x02);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);
    VT_EQ_INT(rc, VG_MQTT_CONNACK_BAD_PROTOCOL);
    b = connect_head("MQIsdp", 4, 0x02);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);
    VT_EQ_INT(rc, VG_MQTT_CONNACK_BAD_PROTOCOL);
    /* An MQTT 5 CONNECT (properties after the keepalive) still gets CONNACK
     * 1, so the client can fall back, even though its body would not parse
     * as 3.1.1; and so does one cut short right after the level. */
    b = connect_head("MQTT", 5, 0x02);
    put_u8(&b, 0); /* property length */
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);
    VT_EQ_INT(rc, VG_MQTT_CONNACK_BAD_PROTOCOL);
    b = connect_head("MQTT", 5, 0x02);
    b.n -= 3;
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);

    /* Any other name is malformed: no CONNACK. */
    static const char *const names[] = {"MQTX", "mqtt", "MQT", "MQTTT", "MQIsdq", "", "MQIsd"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        b = connect_head(names[i], 4, 0x02);
        put_str(&b, "id");
        VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
        b = connect_head(names[i], 3, 0x02);
        put_str(&b, "id");
        VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    }
}

static void test_connect_flags(void)
{
    buf_t b;
    uint8_t rc;

    b = connect_head("MQTT", 4, 0x03); /* reserved bit */
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);

    b = connect_head("MQTT", 4, 0x02 | 0x04 | 0x18); /* will QoS 3 */
    put_str(&b, "id");
    put_str(&b, "w");
    put_str(&b, "m");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);

    b = connect_head("MQTT", 4, 0x02 | 0x08); /* will QoS 1, no will flag */
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 4, 0x02 | 0x10); /* will QoS 2, no will flag */
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 4, 0x02 | 0x20); /* will retain, no will flag */
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);

    b = connect_head("MQTT", 4, 0x02 | 0x40); /* password, no username */
    put_str(&b, "id");
    put_str(&b, "pw");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);

    b = connect_head("MQTT", 4, 0x02 | 0x80 | 0x40);
    put_str(&b, "id");
    put_str(&b, "user");
    put_str(&b, "pw");
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);

    b = connect_head("MQTT", 4, 0x02 | 0x04 | 0x10 | 0x20); /* will QoS 2, retained */
    put_str(&b, "id");
    put_str(&b, "w/t");
    put_str(&b, "");
    vg_mqtt_connect_t c;
    VT_EQ_INT(vg_mqtt_decode_connect(b.b, b.n, &c, &rc), VG_OK);
    VT_EQ_INT(c.will_qos, 2);
    VT_CHECK(c.will_retain && c.will_flag && c.clean_session);
    VT_CHECK(bytes_eq(c.will_topic, "w/t") && bytes_eq(c.will_payload, ""));
    VT_EQ_INT(c.keepalive, 60);
}

static void test_connect_client_id(void)
{
    buf_t b;
    uint8_t rc;

    b = connect_head("MQTT", 4, 0x00); /* empty id, clean_session 0 */
    put_str(&b, "");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);
    VT_EQ_INT(rc, VG_MQTT_CONNACK_ID_REJECTED);

    b = connect_head("MQTT", 4, 0x02); /* empty id, clean_session 1 */
    put_str(&b, "");
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);
    VT_EQ_INT(rc, 0);

    b = connect_head("MQTT", 4, 0x00); /* malformed wins over a bad id */
    put_str(&b, "");
    put_u8(&b, 0);
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);

    /* Ids longer than the spec's 23 bytes are accepted. */
    char id[301];
    memset(id, 'k', 300);
    id[300] = 0;
    b = connect_head("MQTT", 4, 0x00);
    put_str(&b, id);
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);
}

static void test_connect_fields(void)
{
    buf_t b, full;
    uint8_t rc;

    /* Every strict prefix of a full CONNECT is truncated; one extra byte is
     * trailing garbage. */
    full = connect_head("MQTT", 4, 0xEE);
    put_str(&full, "cid");
    put_str(&full, "will/topic");
    put_str(&full, "bye");
    put_str(&full, "user");
    put_str(&full, "pass");
    VT_EQ_INT(connect_rc(&full, &rc), VG_OK);
    for (size_t n = 0; n < full.n; n++) {
        b = full;
        b.n = n;
        VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    }
    b = full;
    put_u8(&b, 0);
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);

    /* Invalid UTF-8 in the client id, the username, the will topic. */
    b = connect_head("MQTT", 4, 0x02);
    put_lstr(&b, "a\xc0\x80", 3);
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 4, 0x02);
    put_lstr(&b, "a\0b", 3);
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 4, 0x82);
    put_str(&b, "id");
    put_lstr(&b, "\xed\xa0\x80", 3);
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 4, 0x06);
    put_str(&b, "id");
    put_lstr(&b, "w\xff", 2);
    put_str(&b, "m");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    /* Wildcards in, or an empty, will topic. */
    static const char *const bad_topics[] = {"w/+", "w/#", "#", "", "a+b"};
    for (size_t i = 0; i < sizeof(bad_topics) / sizeof(bad_topics[0]); i++) {
        b = connect_head("MQTT", 4, 0x06);
        put_str(&b, "id");
        put_str(&b, bad_topics[i]);
        put_str(&b, "m");
        VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    }
    /* The password is binary: anything goes. */
    b = connect_head("MQTT", 4, 0xC2);
    put_str(&b, "id");
    put_str(&b, "u");
    put_lstr(&b, "\0\xff\xc0", 3);
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);
}

/* ---- PUBLISH and the small packets ------------------------------------- */

static void test_publish_decode(void)
{
    vg_mqtt_publish_t p;

    /* Named arrays: the decoded struct points into them after the call (a
     * compound literal would end with the VT_ macro's block). */
    static const uint8_t q0[] = {0, 1, 't', 'p', 'l'}, q1[] = {0, 1, 't', 0, 9};
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, q0, sizeof(q0), &p), VG_OK);
    VT_CHECK(bytes_eq(p.topic, "t") && bytes_eq(p.payload, "pl") && p.packet_id == 0 && p.qos == 0);
    VT_EQ_INT(vg_mqtt_decode_publish(0x0B, q1, sizeof(q1), &p), VG_OK); /* DUP, QoS 1, retain */
    VT_CHECK(p.dup && p.retain && p.qos == 1 && p.packet_id == 9 && p.payload.len == 0);
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0, 1, 't'), &p), VG_OK); /* empty payload */

    VT_EQ_INT(vg_mqtt_decode_publish(0x08, BYTES(0, 1, 't'), &p), VG_EMALFORMED);       /* DUP, QoS 0 */
    VT_EQ_INT(vg_mqtt_decode_publish(0x06, BYTES(0, 1, 't', 0, 1), &p), VG_EMALFORMED); /* QoS 3 */
    VT_EQ_INT(vg_mqtt_decode_publish(0x02, BYTES(0, 1, 't', 0, 0), &p), VG_EMALFORMED); /* id 0 */
    VT_EQ_INT(vg_mqtt_decode_publish(0x04, BYTES(0, 1, 't', 0), &p), VG_EMALFORMED);    /* id cut */
    VT_EQ_INT(vg_mqtt_decode_publish(0x02, BYTES(0, 1, 't'), &p), VG_EMALFORMED);       /* no id */
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0, 0, 'x'), &p), VG_EMALFORMED);       /* empty topic */
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0, 5, 't'), &p), VG_EMALFORMED);       /* topic cut */
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, NULL, 0, &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0, 3, 'a', '/', '+'), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0, 1, '#'), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0, 2, 'a', 0), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(0x00, BYTES(0, 2, 0xC3, 0x28), &p), VG_EMALFORMED);
}

static void test_packet_id_decode(void)
{
    uint16_t pid = 0;

    VT_EQ_INT(vg_mqtt_decode_packet_id(BYTES(0x12, 0x34), &pid), VG_OK);
    VT_EQ_INT(pid, 0x1234);
    VT_EQ_INT(vg_mqtt_decode_packet_id(BYTES(0, 0), &pid), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_packet_id(BYTES(0), &pid), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_packet_id(BYTES(0, 1, 0), &pid), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_packet_id(NULL, 0, &pid), VG_EMALFORMED);
}

static void test_subscribe_decode(void)
{
    vg_mqtt_sub_t subs[4];
    uint16_t pid;
    size_t n;

    static const uint8_t two[] = {0, 5, 0, 1, 'a', 1, 0, 3, 'b', '/', '#', 2}, unsub[] = {0, 9, 0, 1, '+', 0, 1, '#'};
    VT_EQ_INT(vg_mqtt_decode_subscribe(two, sizeof(two), true, &pid, subs, 4, &n), VG_OK);
    VT_EQ_INT(pid, 5);
    VT_EQ_INT(n, 2);
    VT_CHECK(bytes_eq(subs[0].filter, "a") && subs[0].qos == 1);
    VT_CHECK(bytes_eq(subs[1].filter, "b/#") && subs[1].qos == 2);

    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 5), true, &pid, subs, 4, &n), VG_EMALFORMED); /* no filters */
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 5), false, &pid, subs, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0), true, &pid, subs, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 0, 0, 1, 'a', 0), true, &pid, subs, 4, &n), VG_EMALFORMED); /* id 0 */
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 1, 0, 1, 'a', 3), true, &pid, subs, 4, &n), VG_EMALFORMED);
    /* Each of the six reserved bits of the requested-QoS byte (§3.8.3.1). */
    for (int bit = 2; bit < 8; bit++) {
        uint8_t body[] = {0, 1, 0, 1, 'a', (uint8_t)(1u << bit)};
        VT_EQ_INT(vg_mqtt_decode_subscribe(body, sizeof(body), true, &pid, subs, 4, &n), VG_EMALFORMED);
    }
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 1, 0, 1, 'a'), true, &pid, subs, 4, &n), VG_EMALFORMED); /* no QoS */
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 1, 0, 2, 'a'), false, &pid, subs, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 1, 0, 0, 0), true, &pid, subs, 4, &n), VG_EMALFORMED); /* empty */
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 1, 0, 3, 'a', '#', 'b', 0), true, &pid, subs, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 1, 0, 2, 'a', '+', 0), true, &pid, subs, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 1, 0, 2, 0xC0, 0xAF, 0), true, &pid, subs, 4, &n), VG_EMALFORMED);

    /* UNSUBSCRIBE: no QoS byte, so a byte that would be one is a bad string. */
    VT_EQ_INT(vg_mqtt_decode_subscribe(unsub, sizeof(unsub), false, &pid, subs, 4, &n), VG_OK);
    VT_EQ_INT(n, 2);
    VT_CHECK(bytes_eq(subs[0].filter, "+") && bytes_eq(subs[1].filter, "#") && subs[0].qos == 0);
    VT_EQ_INT(vg_mqtt_decode_subscribe(BYTES(0, 9, 0, 1, '+', 0), false, &pid, subs, 4, &n), VG_EMALFORMED);
}

static void test_subscribe_limits(void)
{
    vg_mqtt_sub_t subs[3];
    uint16_t pid;
    size_t n = 99;
    static const uint8_t three[] = {0, 1, 0, 1, 'a', 0, 0, 1, 'b', 1, 0, 1, 'c', 2};

    VT_EQ_INT(vg_mqtt_decode_subscribe(three, sizeof(three), true, &pid, subs, 3, &n), VG_OK);
    VT_EQ_INT(n, 3);
    VT_EQ_INT(vg_mqtt_decode_subscribe(three, sizeof(three), true, &pid, subs, 2, &n), VG_ELIMIT);
    VT_EQ_INT(n, 0);
    VT_EQ_INT(vg_mqtt_decode_subscribe(three, sizeof(three), true, &pid, NULL, 0, &n), VG_ELIMIT);
    /* A packet that is malformed after the cap is malformed, not too long. */
    static const uint8_t bad[] = {0, 1, 0, 1, 'a', 0, 0, 1, 'b', 1, 0, 1, 'c', 3};
    VT_EQ_INT(vg_mqtt_decode_subscribe(bad, sizeof(bad), true, &pid, subs, 1, &n), VG_EMALFORMED);
}

static void test_connack_decode(void)
{
    bool sp;
    uint8_t rc;

    VT_EQ_INT(vg_mqtt_decode_connack(BYTES(1, 0), &sp, &rc), VG_OK);
    VT_CHECK(sp && rc == 0);
    VT_EQ_INT(vg_mqtt_decode_connack(BYTES(0, 5), &sp, &rc), VG_OK);
    VT_CHECK(!sp && rc == 5);
    VT_EQ_INT(vg_mqtt_decode_connack(BYTES(2, 0), &sp, &rc), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(BYTES(0x80, 0), &sp, &rc), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(BYTES(0), &sp, &rc), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(BYTES(0, 0, 0), &sp, &rc), VG_EMALFORMED);
}

static void test_suback_decode(void)
{
    uint8_t rcs[2];
    uint16_t pid;
    size_t n;

    VT_EQ_INT(vg_mqtt_decode_suback(BYTES(0, 3, 0x80, 2), &pid, rcs, 2, &n), VG_OK);
    VT_CHECK(pid == 3 && n == 2 && rcs[0] == 0x80 && rcs[1] == 2);
    VT_EQ_INT(vg_mqtt_decode_suback(BYTES(0, 3), &pid, rcs, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(BYTES(0, 0, 1), &pid, rcs, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(BYTES(0, 3, 3), &pid, rcs, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(BYTES(0, 3, 0x81), &pid, rcs, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(BYTES(0, 3, 0, 1, 2), &pid, rcs, 2, &n), VG_ELIMIT);
    VT_EQ_INT(vg_mqtt_decode_suback(BYTES(0, 3, 0, 1, 7), &pid, rcs, 2, &n), VG_EMALFORMED);
}

/* ---- UTF-8 ------------------------------------------------------------- */

static void test_utf8(void)
{
    VT_CHECK(vg_mqtt_utf8_valid(NULL, 0));
    VT_CHECK(vg_mqtt_utf8_valid(S("plain ascii, long enough for the wide path")));
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0x01, 0x7F)));
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xC2, 0x80)));             /* U+0080 */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xDF, 0xBF)));             /* U+07FF */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xE0, 0xA0, 0x80)));       /* U+0800 */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xED, 0x9F, 0xBF)));       /* U+D7FF */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xEE, 0x80, 0x80)));       /* U+E000 */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xEF, 0xBB, 0xBF)));       /* U+FEFF, kept (§1.5.3) */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xEF, 0xBF, 0xBF)));       /* U+FFFF */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xF0, 0x90, 0x80, 0x80))); /* U+10000 */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xF0, 0x9F, 0x92, 0x93))); /* U+1F493 */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xF4, 0x8F, 0xBF, 0xBF))); /* U+10FFFF */
    VT_CHECK(vg_mqtt_utf8_valid(BYTES(0xF3, 0xBF, 0xBF, 0xBF)));

    /* U+0000. */
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0x00)));
    VT_CHECK(!vg_mqtt_utf8_valid(S("abc\0def")));
    VT_CHECK(!vg_mqtt_utf8_valid(S("abcdefgh\0ijklmnop")));
    /* Overlong forms, including the overlong NUL C0 80. */
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xC0, 0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xC1, 0xBF)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xE0, 0x80, 0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xE0, 0x9F, 0xBF)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF0, 0x80, 0x80, 0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF0, 0x8F, 0xBF, 0xBF)));
    /* Surrogates U+D800..U+DFFF, alone and as a CESU-8 pair. */
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xED, 0xA0, 0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xED, 0xBF, 0xBF)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xED, 0xA0, 0xBD, 0xED, 0xB2, 0x93)));
    /* Above U+10FFFF, and bytes that never appear. */
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF4, 0x90, 0x80, 0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF5, 0x80, 0x80, 0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF7, 0xBF, 0xBF, 0xBF)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF8, 0x88, 0x80, 0x80, 0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xFE)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xFF)));
    /* Truncated sequences, at the end and interrupted. */
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xC3)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xE2, 0x82)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF0, 0x9F, 0x92)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES('a', 0xE2, 'b', 0x82)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xE2, 0x82, 0x41)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xF0, 0x9F, 0x92, 0xC3, 0xA9)));
    /* Stray continuation bytes. */
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0x80)));
    VT_CHECK(!vg_mqtt_utf8_valid(BYTES(0xC3, 0xA9, 0xA9)));
}

static void test_utf8_positions(void)
{
    /* Put each sequence at every offset of a 40-byte ASCII string so that it
     * lands inside, across and after the 8-byte windows of the fast path. */
    static const struct {
        uint8_t seq[4];
        size_t n;
        bool ok;
    } seqs[] = {
        {{0xC3, 0xA9}, 2, true},
        {{0xE2, 0x82, 0xAC}, 3, true},
        {{0xF0, 0x9F, 0x92, 0x93}, 4, true},
        {{0x00}, 1, false},
        {{0xC0, 0x80}, 2, false},
        {{0xED, 0xA0, 0x80}, 3, false},
        {{0xF4, 0x90, 0x80, 0x80}, 4, false},
        {{0x80}, 1, false},
        {{0xE2, 0x82}, 2, false},
    };
    for (size_t s = 0; s < sizeof(seqs) / sizeof(seqs[0]); s++) {
        for (size_t off = 0; off + seqs[s].n <= 40; off++) {
            uint8_t buf[40];
            memset(buf, 'a', sizeof(buf));
            memcpy(buf + off, seqs[s].seq, seqs[s].n);
            /* A truncated sequence followed by ASCII is still invalid. */
            if (vg_mqtt_utf8_valid(buf, sizeof(buf)) != seqs[s].ok)
                printf("  seq %zu at %zu\n", s, off);
            VT_EQ_INT(vg_mqtt_utf8_valid(buf, sizeof(buf)), seqs[s].ok);
            VT_EQ_INT(vg_mqtt_utf8_valid(buf, off + seqs[s].n), seqs[s].ok);
        }
    }
}

/* ---- topics and filters ------------------------------------------------ */

static void test_topic_valid(void)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"sport/tennis/player1", true},
        {"/", true},
        {"//", true},
        {"/finance", true},
        {"Accounts payable", true}, /* §4.7.3: spaces allowed */
        {"$SYS/broker/load", true},
        {"caf\xc3\xa9", true},
        {"a-very-long-topic-name-that-crosses-several-words/and/levels/too", true},
        {"", false},
        {"sport/+", false},
        {"sport/#", false},
        {"+", false},
        {"#", false},
        {"sport+", false},
        {"a-very-long-topic-name-that-crosses-several-words/and/levels/to#", false},
        {"a-very-long-topic-name-that-crosses-several+words/and/levels/too", false},
        {"bad\xc0\xafutf8", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (vg_mqtt_topic_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            printf("  topic \"%s\"\n", cases[i].s);
        VT_EQ_INT(vg_mqtt_topic_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)), cases[i].ok);
    }
    VT_CHECK(!vg_mqtt_topic_valid(S("a\0b")));

    static uint8_t big[65536];
    memset(big, 'a', sizeof(big));
    VT_CHECK(vg_mqtt_topic_valid(big, 65535));
    VT_CHECK(!vg_mqtt_topic_valid(big, 65536));
}

static void test_filter_valid(void)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"#", true},
        {"+", true},
        {"sport/#", true},
        {"sport/tennis/#", true},
        {"sport/tennis/player1/#", true},
        {"+/tennis/#", true},
        {"sport/+/player1", true},
        {"+/+", true},
        {"/+", true},
        {"+/", true},
        {"/#", true},
        {"//", true},
        {"$SYS/#", true},
        {"sport/tennis/player1", true},
        {"a-very-long-filter-that-crosses-several-words/+/and/levels/+/#", true},
        {"", false},
        {"sport/tennis#", false},
        {"sport/tennis/#/ranking", false},
        {"sport+", false},
        {"+sport", false},
        {"sport/+a", false},
        {"sport/a+/b", false},
        {"##", false},
        {"#/", false},
        {"++", false},
        {"a-very-long-filter-that-crosses-several-words/+/and/levels/+/#/", false},
        {"a-very-long-filter-that-crosses-several-words/x+/and/levels/+/#", false},
        {"sport/\xed\xa0\x80", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (vg_mqtt_filter_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            printf("  filter \"%s\"\n", cases[i].s);
        VT_EQ_INT(vg_mqtt_filter_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)), cases[i].ok);
    }
    VT_CHECK(!vg_mqtt_filter_valid(S("a/\0/b")));
}

static void test_topic_matches(void)
{
    /* §4.7.1.2, §4.7.1.3, §4.7.2, §4.7.3 and the edges around them. */
    static const struct {
        const char *filter;
        const char *topic;
        bool match;
    } cases[] = {
        {"sport/tennis/player1/#", "sport/tennis/player1", true},
        {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
        {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
        {"sport/tennis/player1/#", "sport/tennis/player2", false},
        {"sport/#", "sport", true},
        {"sport/#", "sport/", true},
        {"sport/#", "sports", false},
        {"sport/tennis/#", "sport/tennis", true},
        {"sport/tennis/#", "sport/tennisplayer", false},
        {"#", "sport/tennis/player1", true},
        {"#", "/", true},
        {"#", "a", true},
        {"sport/tennis/+", "sport/tennis/player1", true},
        {"sport/tennis/+", "sport/tennis/player2", true},
        {"sport/tennis/+", "sport/tennis/player1/ranking", false},
        {"sport/+", "sport", false},
        {"sport/+", "sport/", true},
        {"+", "sport", true},
        {"+", "sport/", false},
        {"+", "/finance", false},
        {"+/+", "/finance", true},
        {"/+", "/finance", true},
        {"+/tennis/#", "sport/tennis/player1/ranking", true},
        {"+/tennis/#", "sport/tennis", true},
        {"sport/+/player1", "sport/tennis/player1", true},
        {"sport/+/player1", "sport//player1", true},
        {"+/+/+", "a//", true},
        {"+/+/+", "a/", false},
        {"finance", "/finance", false},
        {"/finance", "finance", false},
        {"ACCOUNTS", "Accounts", false},
        {"Accounts payable", "Accounts payable", true},
        {"sport/tennis", "sport/tennis", true},
        {"sport/tennis", "sport/tennis/", false},
        {"sport/tennis/", "sport/tennis", false},
        {"sport", "sport/tennis", false},
        {"#", "$SYS/monitor/Clients", false},
        {"+/monitor/Clients", "$SYS/monitor/Clients", false},
        {"+", "$SYS", false},
        {"$SYS/#", "$SYS/monitor/Clients", true},
        {"$SYS/#", "$SYS", true},
        {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
        {"a/$SYS/#", "a/$SYS/x", true},
        {"+/$x", "a/$x", true},
        {"#", "a/$SYS", true},
        {"vitals/+/hr/#", "vitals/0042/hr", true},
        {"vitals/+/hr/#", "vitals/0042/spo2", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = vg_mqtt_topic_matches((const uint8_t *)cases[i].filter, strlen(cases[i].filter),
                                         (const uint8_t *)cases[i].topic, strlen(cases[i].topic));
        if (got != cases[i].match)
            printf("  \"%s\" vs \"%s\"\n", cases[i].filter, cases[i].topic);
        VT_EQ_INT(got, cases[i].match);
        /* Every table entry is a valid filter and a valid topic. */
        VT_CHECK(vg_mqtt_filter_valid((const uint8_t *)cases[i].filter, strlen(cases[i].filter)));
        VT_CHECK(vg_mqtt_topic_valid((const uint8_t *)cases[i].topic, strlen(cases[i].topic)));
    }
    VT_CHECK(!vg_mqtt_topic_matches(NULL, 0, S("a")));
}

static void test_type_name(void)
{
    VT_CHECK(strcmp(vg_mqtt_type_name(VG_MQTT_CONNECT), "CONNECT") == 0);
    VT_CHECK(strcmp(vg_mqtt_type_name(VG_MQTT_PUBLISH), "PUBLISH") == 0);
    VT_CHECK(strcmp(vg_mqtt_type_name(VG_MQTT_DISCONNECT), "DISCONNECT") == 0);
    VT_CHECK(strcmp(vg_mqtt_type_name(0), "?") == 0);
    VT_CHECK(strcmp(vg_mqtt_type_name(15), "?") == 0);
    VT_CHECK(strcmp(vg_mqtt_type_name(255), "?") == 0);
    for (uint8_t t = 1; t <= 14; t++)
        VT_CHECK(strcmp(vg_mqtt_type_name(t), "?") != 0);
}

int main(void)
{
    VT_RUN(test_frame_partial);
    VT_RUN(test_frame_length_encodings);
    VT_RUN(test_frame_length_too_long);
    VT_RUN(test_frame_toobig_before_body);
    VT_RUN(test_frame_flags);
    VT_RUN(test_frame_stream);
    VT_RUN(test_roundtrip_connect);
    VT_RUN(test_connect_exact_bytes);
    VT_RUN(test_roundtrip_connack);
    VT_RUN(test_roundtrip_publish);
    VT_RUN(test_roundtrip_acks);
    VT_RUN(test_roundtrip_subscribe);
    VT_RUN(test_roundtrip_suback);
    VT_RUN(test_roundtrip_empty);
    VT_RUN(test_encode_enospc);
    VT_RUN(test_encode_einval);
    VT_RUN(test_publish_size);
    VT_RUN(test_connect_protocol);
    VT_RUN(test_connect_flags);
    VT_RUN(test_connect_client_id);
    VT_RUN(test_connect_fields);
    VT_RUN(test_publish_decode);
    VT_RUN(test_packet_id_decode);
    VT_RUN(test_subscribe_decode);
    VT_RUN(test_subscribe_limits);
    VT_RUN(test_connack_decode);
    VT_RUN(test_suback_decode);
    VT_RUN(test_utf8);
    VT_RUN(test_utf8_positions);
    VT_RUN(test_topic_valid);
    VT_RUN(test_filter_valid);
    VT_RUN(test_topic_matches);
    VT_RUN(test_type_name);
    return VT_DONE();
}
