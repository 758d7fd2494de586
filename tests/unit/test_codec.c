/* test_codec.c — unit tests for the MQTT codec (src/mqtt/codec.c, encode.c, props.c).
 *
 * Packets are either produced by the encoders and read back (round trips) or
 * written out byte by byte from the spec, so that an encoder bug cannot hide
 * a matching decoder bug. Section numbers are MQTT 3.1.1 in the first half
 * and MQTT 5.0 ("v5 §") in the 5.0 half. */
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
            if (type == 0)
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

    n += (size_t)vg_mqtt_encode_publish(stream + n, sizeof(stream) - n, VG_MQTT_V311, &p);
    n += (size_t)vg_mqtt_encode_ack(stream + n, sizeof(stream) - n, VG_MQTT_V311, VG_MQTT_PUBREL, 7, 0, NULL);
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
    vg_mqtt_connect_t v31 = {
        .protocol_level = 3, .keepalive = 10, .client_id = bs("old-client"), .has_username = true, .username = bs("")};
    vg_mqtt_connect_t will_empty = {
        .protocol_level = 4, .client_id = bs("x"), .will_flag = true, .will_topic = bs("w"), .will_payload = {NULL, 0}};
    check_connect_rt(&minimal);
    check_connect_rt(&full);
    check_connect_rt(&v31);
    check_connect_rt(&will_empty);
}

static void test_connect_exact_bytes(void)
{
    /* The variable header of §3.1.2.10's example: "MQTT", level 4, flags
     * 0xCE (username, password, will QoS 1, will, clean), keepalive 10. */
    vg_mqtt_connect_t c = {.protocol_level = 4,
                           .clean_session = true,
                           .keepalive = 10,
                           .client_id = bs("c"),
                           .will_flag = true,
                           .will_qos = 1,
                           .will_topic = bs("t"),
                           .will_payload = bs("m"),
                           .has_username = true,
                           .username = bs("u"),
                           .has_password = true,
                           .password = bs("p")};
    static const uint8_t want[] = {0x10, 25, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xCE, 0, 10, 0,  1,
                                   'c',  0,  1, 't', 0,   1,   'm', 0,   1, 'u',  0, 1,  'p'};
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
            int n = vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V311, present, code, NULL);
            VT_EQ_INT(n, 4);
            VT_REQUIRE(frame_one(pkt, 4, VG_MQTT_CONNACK, 0, &body, &len));
            VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V311, body, len, &sp, &rc, NULL), VG_OK);
            VT_EQ_INT(sp, present);
            VT_EQ_INT(rc, code);
        }
    }
    VT_EQ_INT(vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V311, true, 0, NULL), 4);
    VT_CHECK(memcmp(pkt, "\x20\x02\x01\x00", 4) == 0);
}

static void check_publish_rt(const vg_mqtt_publish_t *p)
{
    static uint8_t pkt[32768];
    const uint8_t *body;
    size_t len;
    vg_mqtt_publish_t d;
    uint8_t flags = (uint8_t)((p->dup ? 8 : 0) | p->qos << 1 | (p->retain ? 1 : 0));

    int n = vg_mqtt_encode_publish(pkt, sizeof(pkt), VG_MQTT_V311, p);
    VT_REQUIRE(n > 0);
    VT_EQ_INT(n, vg_mqtt_publish_size(VG_MQTT_V311, p->topic.len, p->payload.len, p->qos, NULL));
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_PUBLISH, flags, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, flags, body, len, &d), VG_OK);
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
    vg_mqtt_publish_t q2d = {.qos = 2,
                             .dup = true,
                             .retain = true,
                             .topic = bs("caf\xc3\xa9/\xe2\x82\xac"),
                             .packet_id = 65535,
                             .payload = bs("x")};
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
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), sizeof(want));
    VT_CHECK(memcmp(out, want, sizeof(want)) == 0);
}

static void test_roundtrip_acks(void)
{
    static const uint8_t types[] = {VG_MQTT_PUBACK, VG_MQTT_PUBREC, VG_MQTT_PUBREL, VG_MQTT_PUBCOMP, VG_MQTT_UNSUBACK};
    for (size_t i = 0; i < sizeof(types); i++) {
        uint8_t pkt[8];
        const uint8_t *body;
        size_t len;
        uint16_t pid = 0;
        uint8_t flags = types[i] == VG_MQTT_PUBREL ? 2 : 0;
        VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V311, types[i], 0xBEEF, 0, NULL), 4);
        VT_REQUIRE(frame_one(pkt, 4, types[i], flags, &body, &len));
        VT_EQ_INT(vg_mqtt_decode_packet_id(body, len, &pid), VG_OK);
        VT_EQ_INT(pid, 0xBEEF);
        VT_EQ_INT(pkt[2], 0xBE);
        VT_EQ_INT(pkt[3], 0xEF);
        /* The same through the level-aware decoder, which 3.1.1 holds to
         * exactly two bytes, and whose reason/properties stay empty. */
        vg_mqtt_ack_t a;
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V311, types[i], body, len, &a), VG_OK);
        VT_CHECK(a.packet_id == 0xBEEF && a.reason == 0 && a.props.present == 0);
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V31, types[i], body, len, &a), VG_OK);
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V311, types[i], BYTES(0xBE, 0xEF, 0), &a), VG_EMALFORMED);
        /* 3.1.1 ignores a reason and properties rather than refusing them. */
        VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V311, types[i], 0xBEEF, 0x80, NULL), 4);
    }
}

static void check_sub_rt(bool with_qos, const vg_mqtt_sub_t *subs, size_t n)
{
    uint8_t pkt[512];
    const uint8_t *body;
    size_t len, count = 99;
    uint16_t pid = 0;
    vg_mqtt_sub_t d[8];

    int r = with_qos ? vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V311, 321, NULL, subs, n)
                     : vg_mqtt_encode_unsubscribe(pkt, sizeof(pkt), VG_MQTT_V311, 321, NULL, subs, n);
    VT_REQUIRE(r > 0);
    VT_REQUIRE(frame_one(pkt, (size_t)r, with_qos ? VG_MQTT_SUBSCRIBE : VG_MQTT_UNSUBSCRIBE, 2, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, body, len, with_qos, &pid, NULL, d, 8, &count), VG_OK);
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
        {.filter = bs("vitals/+/0042"), .qos = 0}, {.filter = bs("alerts/#"), .qos = 1}, {.filter = bs("#"), .qos = 2},
        {.filter = bs("$SYS/broker/+"), .qos = 1}, {.filter = bs("+/+"), .qos = 0},
    };
    check_sub_rt(true, subs, 5);
    check_sub_rt(true, subs, 1);
    check_sub_rt(false, subs, 5);
    check_sub_rt(false, subs + 2, 1);

    /* Exact bytes (§3.8.3's example shape). */
    uint8_t out[32];
    vg_mqtt_sub_t one[] = {{.filter = bs("a/b"), .qos = 1}};
    static const uint8_t want[] = {0x82, 0x08, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01};
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), VG_MQTT_V311, 10, NULL, one, 1), sizeof(want));
    VT_CHECK(memcmp(out, want, sizeof(want)) == 0);
    static const uint8_t wantu[] = {0xA2, 0x07, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b'};
    VT_EQ_INT(vg_mqtt_encode_unsubscribe(out, sizeof(out), VG_MQTT_V311, 10, NULL, one, 1), sizeof(wantu));
    VT_CHECK(memcmp(out, wantu, sizeof(wantu)) == 0);
}

static void test_roundtrip_suback(void)
{
    static const uint8_t rcs[] = {0, 1, 2, VG_MQTT_SUBACK_FAILURE};
    uint8_t pkt[16], got[4];
    const uint8_t *body;
    size_t len, count = 0;
    uint16_t pid = 0;

    VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V311, VG_MQTT_SUBACK, 77, NULL, rcs, 4), 8);
    VT_REQUIRE(frame_one(pkt, 8, VG_MQTT_SUBACK, 0, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, body, len, &pid, NULL, got, 4, &count), VG_OK);
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
    vg_mqtt_sub_t subs[] = {{.filter = bs("a/+"), .qos = 1}, {.filter = bs("b/#"), .qos = 2}};
    static const uint8_t rcs[] = {0, 0x80};
    int need[8];

    need[0] = vg_mqtt_encode_connect(out, sizeof(out), &c);
    need[1] = vg_mqtt_encode_connack(out, sizeof(out), VG_MQTT_V311, false, 0, NULL);
    need[2] = vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p);
    need[3] = vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_V311, VG_MQTT_PUBACK, 1, 0, NULL);
    need[4] = vg_mqtt_encode_subscribe(out, sizeof(out), VG_MQTT_V311, 1, NULL, subs, 2);
    need[5] = vg_mqtt_encode_unsubscribe(out, sizeof(out), VG_MQTT_V311, 1, NULL, subs, 2);
    need[6] = vg_mqtt_encode_suback(out, sizeof(out), VG_MQTT_V311, VG_MQTT_SUBACK, 1, NULL, rcs, 2);
    need[7] = vg_mqtt_encode_empty(out, sizeof(out), VG_MQTT_PINGRESP);
    for (int k = 0; k < 8; k++) {
        VT_REQUIRE(need[k] > 0);
        for (size_t cap = 0; cap < (size_t)need[k]; cap++) {
            int r = 0;
            switch (k) {
            case 0:
                r = vg_mqtt_encode_connect(out, cap, &c);
                break;
            case 1:
                r = vg_mqtt_encode_connack(out, cap, VG_MQTT_V311, false, 0, NULL);
                break;
            case 2:
                r = vg_mqtt_encode_publish(out, cap, VG_MQTT_V311, &p);
                break;
            case 3:
                r = vg_mqtt_encode_ack(out, cap, VG_MQTT_V311, VG_MQTT_PUBACK, 1, 0, NULL);
                break;
            case 4:
                r = vg_mqtt_encode_subscribe(out, cap, VG_MQTT_V311, 1, NULL, subs, 2);
                break;
            case 5:
                r = vg_mqtt_encode_unsubscribe(out, cap, VG_MQTT_V311, 1, NULL, subs, 2);
                break;
            case 6:
                r = vg_mqtt_encode_suback(out, cap, VG_MQTT_V311, VG_MQTT_SUBACK, 1, NULL, rcs, 2);
                break;
            case 7:
                r = vg_mqtt_encode_empty(out, cap, VG_MQTT_PINGRESP);
                break;
            }
            VT_EQ_INT(r, VG_ENOSPC);
        }
    }
    /* Nothing is written when it does not fit. */
    memset(out, 0x55, sizeof(out));
    VT_EQ_INT(vg_mqtt_encode_publish(out, (size_t)need[2] - 1, VG_MQTT_V311, &p), VG_ENOSPC);
    VT_EQ_INT(out[0], 0x55);
}

static void test_encode_einval(void)
{
    static uint8_t huge[65536];
    uint8_t out[256];
    vg_mqtt_connect_t c;
    vg_mqtt_publish_t p;

    c = (vg_mqtt_connect_t){.protocol_level = 6, .client_id = bs("x")};
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
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.qos = 1, .topic = bs("t"), .packet_id = 0};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.qos = 0, .dup = true, .topic = bs("t")};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.topic = {huge, 65536}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.topic = {NULL, 0}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    /* Remaining length over the maximum: refused before the payload is read,
     * so the (too short) buffer behind the pointer is never touched. */
    p = (vg_mqtt_publish_t){.topic = bs("t"), .payload = {huge, VG_MQTT_MAX_REMAINING - 2}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.qos = 1, .packet_id = 1, .topic = bs("t"), .payload = {huge, VG_MQTT_MAX_REMAINING - 4}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    p = (vg_mqtt_publish_t){.topic = bs("t"), .payload = {huge, SIZE_MAX}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_EINVAL);
    /* Exactly the maximum is representable; it just does not fit here. */
    p = (vg_mqtt_publish_t){.topic = bs("t"), .payload = {huge, VG_MQTT_MAX_REMAINING - 3}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), VG_ENOSPC);

    VT_EQ_INT(vg_mqtt_encode_connack(out, sizeof(out), VG_MQTT_V311, false, 6, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_connack(out, sizeof(out), VG_MQTT_V311, true, 5, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_V311, VG_MQTT_PUBLISH, 1, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_V311, VG_MQTT_SUBACK, 1, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_V311, 0, 1, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(out, sizeof(out), VG_MQTT_V311, VG_MQTT_PUBACK, 0, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_empty(out, sizeof(out), VG_MQTT_CONNECT), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_empty(out, sizeof(out), 15), VG_EINVAL);

    vg_mqtt_sub_t bad_qos[] = {{.filter = bs("a"), .qos = 3}};
    vg_mqtt_sub_t empty[] = {{.filter = {NULL, 0}}};
    vg_mqtt_sub_t long_f[] = {{.filter = {huge, 65536}}};
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), VG_MQTT_V311, 1, NULL, bad_qos, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_unsubscribe(out, sizeof(out), VG_MQTT_V311, 1, NULL, bad_qos, 1), 7); /* QoS is not sent */
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), VG_MQTT_V311, 1, NULL, empty, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), VG_MQTT_V311, 1, NULL, long_f, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), VG_MQTT_V311, 1, NULL, bad_qos, 0), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_subscribe(out, sizeof(out), VG_MQTT_V311, 0, NULL, bad_qos, 0), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_unsubscribe(out, sizeof(out), VG_MQTT_V311, 0, NULL, bad_qos, 1), VG_EINVAL);

    static const uint8_t bad_rc[] = {0, 3};
    VT_EQ_INT(vg_mqtt_encode_suback(out, sizeof(out), VG_MQTT_V311, VG_MQTT_SUBACK, 1, NULL, bad_rc, 2), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_suback(out, sizeof(out), VG_MQTT_V311, VG_MQTT_SUBACK, 1, NULL, bad_rc, 0), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_suback(out, sizeof(out), VG_MQTT_V311, VG_MQTT_SUBACK, 0, NULL, bad_rc, 1), VG_EINVAL);
}

static void test_publish_size(void)
{
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, 0, 0, NULL), 5);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, 0, 1, NULL), 7);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 3, 122, 0, NULL), 2 + 127);     /* remaining 127: one length byte */
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 3, 123, 0, NULL), 3 + 128);     /* remaining 128: two */
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, 16379, 2, NULL), 4 + 16384); /* remaining 16384: three */
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, VG_MQTT_MAX_REMAINING - 3, 0, NULL), 5 + VG_MQTT_MAX_REMAINING);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, VG_MQTT_MAX_REMAINING - 2, 0, NULL), 0);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, SIZE_MAX, 0, NULL), 0);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 65536, 0, 0, NULL), 0);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, 0, 3, NULL), 0);
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
    /* MQTT 5 (properties after the keepalive) is spoken now; a future
     * level still gets CONNACK 1, so the client can fall back, even though
     * its body may not parse as anything we know; and so does one cut short
     * right after the level. */
    b = connect_head("MQTT", 5, 0x02);
    put_u8(&b, 0); /* property length */
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);
    b = connect_head("MQTT", 5, 0x02); /* 5.0 without its property length */
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 6, 0x02);
    put_u8(&b, 0);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);
    VT_EQ_INT(rc, VG_MQTT_CONNACK_BAD_PROTOCOL);
    b = connect_head("MQTT", 6, 0x02);
    b.n -= 3;
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);
    b = connect_head("MQIsdp", 5, 0x02); /* 5 only with "MQTT" */
    put_u8(&b, 0);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EPROTO);
    VT_EQ_INT(rc, VG_MQTT_CONNACK_BAD_PROTOCOL);

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
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, q0, sizeof(q0), &p), VG_OK);
    VT_CHECK(bytes_eq(p.topic, "t") && bytes_eq(p.payload, "pl") && p.packet_id == 0 && p.qos == 0);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x0B, q1, sizeof(q1), &p), VG_OK); /* DUP, QoS 1, retain */
    VT_CHECK(p.dup && p.retain && p.qos == 1 && p.packet_id == 9 && p.payload.len == 0);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0, 1, 't'), &p), VG_OK); /* empty payload */

    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x08, BYTES(0, 1, 't'), &p), VG_EMALFORMED);       /* DUP, QoS 0 */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x06, BYTES(0, 1, 't', 0, 1), &p), VG_EMALFORMED); /* QoS 3 */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x02, BYTES(0, 1, 't', 0, 0), &p), VG_EMALFORMED); /* id 0 */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x04, BYTES(0, 1, 't', 0), &p), VG_EMALFORMED);    /* id cut */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x02, BYTES(0, 1, 't'), &p), VG_EMALFORMED);       /* no id */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0, 0, 'x'), &p), VG_EMALFORMED);       /* empty topic */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0, 5, 't'), &p), VG_EMALFORMED);       /* topic cut */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, NULL, 0, &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0, 3, 'a', '/', '+'), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0, 1, '#'), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0, 2, 'a', 0), &p), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0x00, BYTES(0, 2, 0xC3, 0x28), &p), VG_EMALFORMED);
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
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, two, sizeof(two), true, &pid, NULL, subs, 4, &n), VG_OK);
    VT_EQ_INT(pid, 5);
    VT_EQ_INT(n, 2);
    VT_CHECK(bytes_eq(subs[0].filter, "a") && subs[0].qos == 1);
    VT_CHECK(bytes_eq(subs[1].filter, "b/#") && subs[1].qos == 2);

    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 5), true, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED); /* no filters */
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 5), false, &pid, NULL, subs, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0), true, &pid, NULL, subs, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 0, 0, 1, 'a', 0), true, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED); /* id 0 */
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 1, 0, 1, 'a', 3), true, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED);
    /* Each of the six reserved bits of the requested-QoS byte (§3.8.3.1). */
    for (int bit = 2; bit < 8; bit++) {
        uint8_t body[] = {0, 1, 0, 1, 'a', (uint8_t)(1u << bit)};
        VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, body, sizeof(body), true, &pid, NULL, subs, 4, &n),
                  VG_EMALFORMED);
    }
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 1, 0, 1, 'a'), true, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED); /* no QoS */
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 1, 0, 2, 'a'), false, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 1, 0, 0, 0), true, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED); /* empty */
    VT_EQ_INT(
        vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 1, 0, 3, 'a', '#', 'b', 0), true, &pid, NULL, subs, 4, &n),
        VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 1, 0, 2, 'a', '+', 0), true, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 1, 0, 2, 0xC0, 0xAF, 0), true, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED);

    /* UNSUBSCRIBE: no QoS byte, so a byte that would be one is a bad string. */
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, unsub, sizeof(unsub), false, &pid, NULL, subs, 4, &n), VG_OK);
    VT_EQ_INT(n, 2);
    VT_CHECK(bytes_eq(subs[0].filter, "+") && bytes_eq(subs[1].filter, "#") && subs[0].qos == 0);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, BYTES(0, 9, 0, 1, '+', 0), false, &pid, NULL, subs, 4, &n),
              VG_EMALFORMED);
}

static void test_subscribe_limits(void)
{
    vg_mqtt_sub_t subs[3];
    uint16_t pid;
    size_t n = 99;
    static const uint8_t three[] = {0, 1, 0, 1, 'a', 0, 0, 1, 'b', 1, 0, 1, 'c', 2};

    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, three, sizeof(three), true, &pid, NULL, subs, 3, &n), VG_OK);
    VT_EQ_INT(n, 3);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, three, sizeof(three), true, &pid, NULL, subs, 2, &n), VG_ELIMIT);
    VT_EQ_INT(n, 0);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, three, sizeof(three), true, &pid, NULL, NULL, 0, &n), VG_ELIMIT);
    /* A packet that is malformed after the cap is malformed, not too long. */
    static const uint8_t bad[] = {0, 1, 0, 1, 'a', 0, 0, 1, 'b', 1, 0, 1, 'c', 3};
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V311, bad, sizeof(bad), true, &pid, NULL, subs, 1, &n), VG_EMALFORMED);
}

static void test_connack_decode(void)
{
    bool sp;
    uint8_t rc;

    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V311, BYTES(1, 0), &sp, &rc, NULL), VG_OK);
    VT_CHECK(sp && rc == 0);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V311, BYTES(0, 5), &sp, &rc, NULL), VG_OK);
    VT_CHECK(!sp && rc == 5);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V311, BYTES(2, 0), &sp, &rc, NULL), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V311, BYTES(0x80, 0), &sp, &rc, NULL), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V311, BYTES(0), &sp, &rc, NULL), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V311, BYTES(0, 0, 0), &sp, &rc, NULL), VG_EMALFORMED);
}

static void test_suback_decode(void)
{
    uint8_t rcs[2];
    uint16_t pid;
    size_t n;

    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, BYTES(0, 3, 0x80, 2), &pid, NULL, rcs, 2, &n), VG_OK);
    VT_CHECK(pid == 3 && n == 2 && rcs[0] == 0x80 && rcs[1] == 2);
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, BYTES(0, 3), &pid, NULL, rcs, 2, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, BYTES(0, 0, 1), &pid, NULL, rcs, 2, &n),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, BYTES(0, 3, 3), &pid, NULL, rcs, 2, &n),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, BYTES(0, 3, 0x81), &pid, NULL, rcs, 2, &n),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, BYTES(0, 3, 0, 1, 2), &pid, NULL, rcs, 2, &n),
              VG_ELIMIT);
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_SUBACK, BYTES(0, 3, 0, 1, 7), &pid, NULL, rcs, 2, &n),
              VG_EMALFORMED);
}

/* ---- MQTT 5.0: helpers ------------------------------------------------- */

#define PB(name) VG_PROP_BIT(VG_PROP_##name)
#define MULTI (PB(SUBSCRIPTION_ID) | PB(USER))

/* A variable byte integer, shortest form (v5 §1.5.5). */
static void put_vbi(buf_t *b, uint32_t v)
{
    do {
        uint8_t c = v & 0x7F;
        v >>= 7;
        put_u8(b, v ? c | 0x80 : c);
    } while (v);
}

/* A properties block: length, then the raw entries in props. */
static void put_block(buf_t *b, const buf_t *props)
{
    put_vbi(b, (uint32_t)props->n);
    put_raw(b, props->b, props->n);
}

static void put_empty_block(buf_t *b)
{
    put_u8(b, 0);
}

static void prop_u8(buf_t *b, uint8_t id, uint8_t v)
{
    put_u8(b, id);
    put_u8(b, v);
}

static void prop_u16(buf_t *b, uint8_t id, uint16_t v)
{
    put_u8(b, id);
    put_u16(b, v);
}

static void prop_u32(buf_t *b, uint8_t id, uint32_t v)
{
    put_u8(b, id);
    put_u16(b, (uint16_t)(v >> 16));
    put_u16(b, (uint16_t)v);
}

static void prop_str(buf_t *b, uint8_t id, const char *s)
{
    put_u8(b, id);
    put_str(b, s);
}

static void prop_pair(buf_t *b, const char *k, const char *v)
{
    put_u8(b, VG_PROP_USER);
    put_str(b, k);
    put_str(b, v);
}

static bool same_props(const vg_mqtt_props_t *a, const vg_mqtt_props_t *b)
{
    if ((a->present & ~MULTI) != (b->present & ~MULTI))
        return false;
    if (a->payload_format != b->payload_format || a->message_expiry != b->message_expiry ||
        a->session_expiry != b->session_expiry || a->server_keepalive != b->server_keepalive ||
        a->request_problem_info != b->request_problem_info || a->will_delay != b->will_delay ||
        a->request_response_info != b->request_response_info || a->receive_max != b->receive_max ||
        a->topic_alias_max != b->topic_alias_max || a->topic_alias != b->topic_alias || a->max_qos != b->max_qos ||
        a->retain_available != b->retain_available || a->max_packet_size != b->max_packet_size ||
        a->wildcard_sub_available != b->wildcard_sub_available || a->sub_id_available != b->sub_id_available ||
        a->shared_sub_available != b->shared_sub_available)
        return false;
    if (!same(a->content_type, b->content_type) || !same(a->response_topic, b->response_topic) ||
        !same(a->correlation_data, b->correlation_data) || !same(a->assigned_client_id, b->assigned_client_id) ||
        !same(a->auth_method, b->auth_method) || !same(a->auth_data, b->auth_data) ||
        !same(a->response_info, b->response_info) || !same(a->server_reference, b->server_reference) ||
        !same(a->reason_string, b->reason_string))
        return false;
    if (a->sub_id_count != b->sub_id_count)
        return false;
    for (uint32_t i = 0; i < a->sub_id_count && i < VG_MQTT_MAX_SUB_IDS; i++) {
        if (a->sub_ids[i] != b->sub_ids[i])
            return false;
    }
    /* User properties by content and order, not by raw run: a decoded run
     * may hold other properties between its entries. */
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

/* Two user properties as an encoder takes them: ("key", "value") and
 * ("", "é"); empty keys and values are allowed (v5 §1.5.7). */
static const uint8_t user_run[] = {0x26, 0,   3,   'k',  'e', 'y', 0, 5, 'v',  'a',
                                   'l',  'u', 'e', 0x26, 0,   0,   0, 2, 0xC3, 0xA9};
#define USER_RUN                                                                                                       \
    {                                                                                                                  \
        user_run, sizeof(user_run)                                                                                     \
    }

/* Frames a packet and checks the bytes after the fixed header equal want. */
static bool body_is(const uint8_t *pkt, int n, uint8_t type, uint8_t flags, const buf_t *want)
{
    const uint8_t *body;
    size_t len;
    if (n <= 0 || !frame_one(pkt, (size_t)n, type, flags, &body, &len))
        return false;
    return len == want->n && (len == 0 || memcmp(body, want->b, len) == 0);
}

/* ---- MQTT 5.0: properties in every packet ------------------------------ */

/* The packets (and the will) that carry properties, each with the ids
 * §2.2.2.2's table allows in it, written out here independently of the
 * codec's masks. */
enum {
    CX_CONNECT,
    CX_WILL,
    CX_CONNACK,
    CX_PUBLISH,
    CX_PUBACK,
    CX_PUBREC,
    CX_PUBREL,
    CX_PUBCOMP,
    CX_SUBSCRIBE,
    CX_SUBACK,
    CX_UNSUBSCRIBE,
    CX_UNSUBACK,
    CX_DISCONNECT,
    CX_AUTH,
    CX_N
};

static const struct {
    const char *name;
    uint8_t ids[20]; /* 0-terminated */
} cx_allowed[CX_N] = {
    [CX_CONNECT] = {"CONNECT", {0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27}},
    [CX_WILL] = {"will", {0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26}},
    [CX_CONNACK] = {"CONNACK",
                    {0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
                     0x2A}},
    [CX_PUBLISH] = {"PUBLISH", {0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26}},
    [CX_PUBACK] = {"PUBACK", {0x1F, 0x26}},
    [CX_PUBREC] = {"PUBREC", {0x1F, 0x26}},
    [CX_PUBREL] = {"PUBREL", {0x1F, 0x26}},
    [CX_PUBCOMP] = {"PUBCOMP", {0x1F, 0x26}},
    [CX_SUBSCRIBE] = {"SUBSCRIBE", {0x0B, 0x26}},
    [CX_SUBACK] = {"SUBACK", {0x1F, 0x26}},
    [CX_UNSUBSCRIBE] = {"UNSUBSCRIBE", {0x26}},
    [CX_UNSUBACK] = {"UNSUBACK", {0x1F, 0x26}},
    [CX_DISCONNECT] = {"DISCONNECT", {0x11, 0x1C, 0x1F, 0x26}},
    [CX_AUTH] = {"AUTH", {0x15, 0x16, 0x1F, 0x26}},
};

static bool cx_allows(int cx, uint8_t id)
{
    for (const uint8_t *p = cx_allowed[cx].ids; *p; p++) {
        if (*p == id)
            return true;
    }
    return false;
}

/* Writes property id with a valid sample value (§2.2.2.2's data types);
 * an unknown id gets four zero bytes. */
static void put_sample(buf_t *b, uint8_t id)
{
    switch (id) {
    case 0x01:
    case 0x17:
    case 0x19:
    case 0x24:
    case 0x25:
    case 0x28:
    case 0x29:
    case 0x2A:
        prop_u8(b, id, 1);
        break;
    case 0x13:
    case 0x21:
    case 0x22:
    case 0x23:
        prop_u16(b, id, 0x1234);
        break;
    case 0x02:
    case 0x11:
    case 0x18:
    case 0x27:
        prop_u32(b, id, 0x01020304);
        break;
    case 0x03:
    case 0x12:
    case 0x15:
    case 0x1A:
    case 0x1C:
    case 0x1F:
        prop_str(b, id, "s\xc3\xa9");
        break;
    case 0x08:
        prop_str(b, id, "resp/topic");
        break;
    case 0x09:
    case 0x16:
        put_u8(b, id);
        put_lstr(b, "\x00\xff", 2);
        break;
    case 0x0B:
        put_u8(b, id);
        put_vbi(b, 300);
        break;
    case 0x26:
        prop_pair(b, "k", "v");
        break;
    default:
        put_u8(b, id);
        put_u16(b, 0);
        put_u16(b, 0);
        break;
    }
}

/* Checks that the field named for id holds put_sample's value. */
static bool sample_decoded(const vg_mqtt_props_t *p, uint8_t id)
{
    if (id != 0x0B && id != 0x26 && !(p->present & VG_PROP_BIT(id)))
        return false;
    switch (id) {
    case 0x01:
        return p->payload_format == 1;
    case 0x02:
        return p->message_expiry == 0x01020304;
    case 0x03:
        return bytes_eq(p->content_type, "s\xc3\xa9");
    case 0x08:
        return bytes_eq(p->response_topic, "resp/topic");
    case 0x09:
        return p->correlation_data.len == 2 && memcmp(p->correlation_data.p, "\x00\xff", 2) == 0;
    case 0x0B:
        return p->sub_id_count == 1 && p->sub_ids[0] == 300 && (p->present & PB(SUBSCRIPTION_ID));
    case 0x11:
        return p->session_expiry == 0x01020304;
    case 0x12:
        return bytes_eq(p->assigned_client_id, "s\xc3\xa9");
    case 0x13:
        return p->server_keepalive == 0x1234;
    case 0x15:
        return bytes_eq(p->auth_method, "s\xc3\xa9");
    case 0x16:
        return p->auth_data.len == 2 && memcmp(p->auth_data.p, "\x00\xff", 2) == 0;
    case 0x17:
        return p->request_problem_info == 1;
    case 0x18:
        return p->will_delay == 0x01020304;
    case 0x19:
        return p->request_response_info == 1;
    case 0x1A:
        return bytes_eq(p->response_info, "s\xc3\xa9");
    case 0x1C:
        return bytes_eq(p->server_reference, "s\xc3\xa9");
    case 0x1F:
        return bytes_eq(p->reason_string, "s\xc3\xa9");
    case 0x21:
        return p->receive_max == 0x1234;
    case 0x22:
        return p->topic_alias_max == 0x1234;
    case 0x23:
        return p->topic_alias == 0x1234;
    case 0x24:
        return p->max_qos == 1;
    case 0x25:
        return p->retain_available == 1;
    case 0x26: {
        size_t pos = 0;
        vg_bytes_t k, v;
        return p->user_prop_count == 1 && (p->present & PB(USER)) && vg_mqtt_user_props_next(p, &pos, &k, &v) &&
               bytes_eq(k, "k") && bytes_eq(v, "v") && !vg_mqtt_user_props_next(p, &pos, &k, &v);
    }
    case 0x27:
        return p->max_packet_size == 0x01020304;
    case 0x28:
        return p->wildcard_sub_available == 1;
    case 0x29:
        return p->sub_id_available == 1;
    case 0x2A:
        return p->shared_sub_available == 1;
    default:
        return false;
    }
}

static const uint8_t cx_type[CX_N] = {
    [CX_CONNECT] = VG_MQTT_CONNECT,         [CX_WILL] = VG_MQTT_CONNECT,
    [CX_CONNACK] = VG_MQTT_CONNACK,         [CX_PUBLISH] = VG_MQTT_PUBLISH,
    [CX_PUBACK] = VG_MQTT_PUBACK,           [CX_PUBREC] = VG_MQTT_PUBREC,
    [CX_PUBREL] = VG_MQTT_PUBREL,           [CX_PUBCOMP] = VG_MQTT_PUBCOMP,
    [CX_SUBSCRIBE] = VG_MQTT_SUBSCRIBE,     [CX_SUBACK] = VG_MQTT_SUBACK,
    [CX_UNSUBSCRIBE] = VG_MQTT_UNSUBSCRIBE, [CX_UNSUBACK] = VG_MQTT_UNSUBACK,
    [CX_DISCONNECT] = VG_MQTT_DISCONNECT,   [CX_AUTH] = VG_MQTT_AUTH,
};

/* The body of a small 5.0 packet of context cx carrying props. */
static buf_t cx_body(int cx, const buf_t *props)
{
    buf_t b = {.n = 0};
    switch (cx) {
    case CX_CONNECT:
        b = connect_head("MQTT", 5, 0x02);
        put_block(&b, props);
        put_str(&b, "c");
        break;
    case CX_WILL:
        b = connect_head("MQTT", 5, 0x06);
        put_empty_block(&b);
        put_str(&b, "c");
        put_block(&b, props);
        put_str(&b, "w");
        put_str(&b, "m");
        break;
    case CX_CONNACK:
        put_u8(&b, 0);
        put_u8(&b, 0);
        put_block(&b, props);
        break;
    case CX_PUBLISH:
        put_str(&b, "t");
        put_block(&b, props);
        put_raw(&b, "x", 1);
        break;
    case CX_PUBACK:
    case CX_PUBREC:
    case CX_PUBREL:
    case CX_PUBCOMP:
        put_u16(&b, 1);
        put_u8(&b, 0);
        put_block(&b, props);
        break;
    case CX_SUBSCRIBE:
        put_u16(&b, 1);
        put_block(&b, props);
        put_str(&b, "a");
        put_u8(&b, 1);
        break;
    case CX_UNSUBSCRIBE:
        put_u16(&b, 1);
        put_block(&b, props);
        put_str(&b, "a");
        break;
    case CX_SUBACK:
    case CX_UNSUBACK:
        put_u16(&b, 1);
        put_block(&b, props);
        put_u8(&b, 0);
        break;
    case CX_DISCONNECT:
        put_u8(&b, 0);
        put_block(&b, props);
        break;
    case CX_AUTH:
        put_u8(&b, VG_RC_CONTINUE_AUTH);
        put_block(&b, props);
        break;
    }
    return b;
}

/* Decodes body as a packet of context cx; *got receives the props. On
 * success re-encodes what it got and, if exact (the properties are in
 * ascending id order, as the encoder writes them), checks the bytes come
 * back the same; otherwise that the re-encoded packet decodes equal. */
static int cx_decode(int cx, const buf_t *body, vg_mqtt_props_t *got, bool exact)
{
    static uint8_t pkt[2048];
    uint8_t t = cx_type[cx], flags = 0, rc8 = 0;
    int rc, n = 0;
    vg_mqtt_connect_t c;
    vg_mqtt_publish_t p;
    vg_mqtt_ack_t a;
    vg_mqtt_sub_t subs[2];
    uint16_t pid = 0;
    size_t cnt = 0;
    bool sp;
    uint8_t codes[2];

    switch (cx) {
    case CX_CONNECT:
    case CX_WILL:
        rc = vg_mqtt_decode_connect(body->b, body->n, &c, &rc8);
        if (rc == VG_OK) {
            *got = cx == CX_WILL ? c.will_props : c.props;
            n = vg_mqtt_encode_connect(pkt, sizeof(pkt), &c);
        }
        break;
    case CX_CONNACK:
        rc = vg_mqtt_decode_connack(VG_MQTT_V5, body->b, body->n, &sp, &rc8, got);
        if (rc == VG_OK)
            n = vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V5, sp, rc8, got);
        break;
    case CX_PUBLISH:
        rc = vg_mqtt_decode_publish(VG_MQTT_V5, 0, body->b, body->n, &p);
        if (rc == VG_OK) {
            *got = p.props;
            n = vg_mqtt_encode_publish(pkt, sizeof(pkt), VG_MQTT_V5, &p);
        }
        break;
    case CX_PUBACK:
    case CX_PUBREC:
    case CX_PUBREL:
    case CX_PUBCOMP:
        flags = cx == CX_PUBREL ? 2 : 0;
        rc = vg_mqtt_decode_ack(VG_MQTT_V5, t, body->b, body->n, &a);
        if (rc == VG_OK) {
            *got = a.props;
            n = vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, t, a.packet_id, a.reason, &a.props);
        }
        break;
    case CX_SUBSCRIBE:
    case CX_UNSUBSCRIBE:
        flags = 2;
        rc = vg_mqtt_decode_subscribe(VG_MQTT_V5, body->b, body->n, cx == CX_SUBSCRIBE, &pid, got, subs, 2, &cnt);
        if (rc == VG_OK)
            n = cx == CX_SUBSCRIBE ? vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V5, pid, got, subs, cnt)
                                   : vg_mqtt_encode_unsubscribe(pkt, sizeof(pkt), VG_MQTT_V5, pid, got, subs, cnt);
        break;
    case CX_SUBACK:
    case CX_UNSUBACK:
        rc = vg_mqtt_decode_suback(VG_MQTT_V5, t, body->b, body->n, &pid, got, codes, 2, &cnt);
        if (rc == VG_OK)
            n = vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V5, t, pid, got, codes, cnt);
        break;
    default:
        rc = vg_mqtt_decode_reason(VG_MQTT_V5, t, body->b, body->n, &rc8, got);
        if (rc == VG_OK)
            n = vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, t, rc8, got);
        break;
    }
    if (rc == VG_OK && exact && !body_is(pkt, n, t, flags, body)) {
        printf("  %s: re-encoded body differs (%d)\n", cx_allowed[cx].name, n);
        return -1000;
    }
    if (rc == VG_OK && !exact) {
        const uint8_t *b2;
        size_t l2;
        vg_mqtt_props_t again;
        if (n <= 0 || !frame_one(pkt, (size_t)n, t, flags, &b2, &l2))
            return -1001;
        buf_t copy = {.n = l2};
        memcpy(copy.b, b2, l2);
        if (cx_decode(cx, &copy, &again, true) != VG_OK || !same_props(&again, got))
            return -1002;
    }
    return rc;
}

static void test_v5_property_matrix(void)
{
    /* Every id (the defined ones, the gaps, and ones that would need a
     * longer identifier) in every packet: allowed ones decode into their
     * own field and re-encode to the same bytes; others are malformed. A
     * second copy is malformed except for the user property, and the
     * subscription identifier in PUBLISH. */
    for (int cx = 0; cx < CX_N; cx++) {
        for (unsigned idu = 0; idu <= 0x80; idu++) {
            uint8_t id = (uint8_t)idu;
            bool ok = cx_allows(cx, id);
            bool multi = id == 0x26 || (id == 0x0B && cx == CX_PUBLISH);
            /* AUTH always needs its method; data needs a method anywhere. */
            bool base = (cx == CX_AUTH && id != 0x15) || (id == 0x16 && ok);
            for (int copies = 1; copies <= 2; copies++) {
                buf_t props = {.n = 0};
                vg_mqtt_props_t got;
                if (base)
                    put_sample(&props, 0x15);
                for (int k = 0; k < copies; k++)
                    put_sample(&props, id);
                buf_t body = cx_body(cx, &props);
                int want = ok && (copies == 1 || multi) ? VG_OK : VG_EMALFORMED;
                int rc = cx_decode(cx, &body, &got, true);
                if (rc != want)
                    printf("  %s id 0x%02x x%d: %d\n", cx_allowed[cx].name, id, copies, rc);
                VT_EQ_INT(rc, want);
                if (rc == VG_OK && copies == 1) {
                    if (!sample_decoded(&got, id))
                        printf("  %s id 0x%02x: wrong field\n", cx_allowed[cx].name, id);
                    VT_CHECK(sample_decoded(&got, id));
                }
            }
        }
    }
}

static void test_v5_property_values(void)
{
    /* Value rules, in a DISCONNECT (or, for the ids it lacks, the packet
     * that has them). */
    static const struct {
        int cx;
        uint8_t bytes[12];
        size_t n;
        int want;
    } cases[] = {
        /* Every Byte property is 0 or 1. */
        {CX_PUBLISH, {0x01, 0}, 2, VG_OK},
        {CX_PUBLISH, {0x01, 2}, 2, VG_EMALFORMED},
        {CX_CONNECT, {0x17, 0}, 2, VG_OK},
        {CX_CONNECT, {0x17, 2}, 2, VG_EMALFORMED},
        {CX_CONNECT, {0x19, 0xFF}, 2, VG_EMALFORMED},
        {CX_CONNACK, {0x24, 0}, 2, VG_OK},
        {CX_CONNACK, {0x24, 2}, 2, VG_EMALFORMED},
        {CX_CONNACK, {0x25, 2}, 2, VG_EMALFORMED},
        {CX_CONNACK, {0x28, 2}, 2, VG_EMALFORMED},
        {CX_CONNACK, {0x29, 2}, 2, VG_EMALFORMED},
        {CX_CONNACK, {0x2A, 2}, 2, VG_EMALFORMED},
        {CX_WILL, {0x01, 3}, 2, VG_EMALFORMED},
        /* Receive maximum and maximum packet size may not be 0. */
        {CX_CONNECT, {0x21, 0, 0}, 3, VG_EMALFORMED},
        {CX_CONNECT, {0x21, 0, 1}, 3, VG_OK},
        {CX_CONNACK, {0x21, 0, 0}, 3, VG_EMALFORMED},
        {CX_CONNECT, {0x27, 0, 0, 0, 0}, 5, VG_EMALFORMED},
        {CX_CONNECT, {0x27, 0, 0, 0, 1}, 5, VG_OK},
        {CX_CONNACK, {0x27, 0, 0, 0, 0}, 5, VG_EMALFORMED},
        /* Topic alias 0 is invalid, the maximum 0 is fine. */
        {CX_PUBLISH, {0x23, 0, 0}, 3, VG_EMALFORMED},
        {CX_PUBLISH, {0x23, 0xFF, 0xFF}, 3, VG_OK},
        {CX_CONNECT, {0x22, 0, 0}, 3, VG_OK},
        /* Subscription identifier 1..268435455, shortest form. */
        {CX_PUBLISH, {0x0B, 0}, 2, VG_EMALFORMED},
        {CX_SUBSCRIBE, {0x0B, 0}, 2, VG_EMALFORMED},
        {CX_SUBSCRIBE, {0x0B, 1}, 2, VG_OK},
        {CX_SUBSCRIBE, {0x0B, 0xFF, 0xFF, 0xFF, 0x7F}, 5, VG_OK},
        {CX_SUBSCRIBE, {0x0B, 0x80, 0x80, 0x80, 0x80, 0x01}, 6, VG_EMALFORMED},
        {CX_SUBSCRIBE, {0x0B, 0x81, 0x00}, 3, VG_EMALFORMED},
        {CX_PUBLISH, {0x0B, 0x80, 0x80, 0x00}, 4, VG_EMALFORMED},
        {CX_SUBSCRIBE, {0x0B, 0x80}, 2, VG_EMALFORMED},
        /* Session expiry is any 32-bit value. */
        {CX_DISCONNECT, {0x11, 0xFF, 0xFF, 0xFF, 0xFF}, 5, VG_OK},
        {CX_DISCONNECT, {0x11, 0, 0, 0, 0}, 5, VG_OK},
        /* Strings: well-formed UTF-8; the response topic a topic name. */
        {CX_DISCONNECT, {0x1F, 0, 2, 0xC0, 0x80}, 5, VG_EMALFORMED},
        {CX_DISCONNECT, {0x1F, 0, 1, 0}, 4, VG_EMALFORMED},
        {CX_DISCONNECT, {0x1F, 0, 0}, 3, VG_OK},
        {CX_DISCONNECT, {0x1C, 0, 3, 0xED, 0xA0, 0x80}, 6, VG_EMALFORMED},
        {CX_PUBLISH, {0x03, 0, 1, 0xFF}, 4, VG_EMALFORMED},
        {CX_PUBLISH, {0x08, 0, 3, 'a', '/', '+'}, 6, VG_EMALFORMED},
        {CX_PUBLISH, {0x08, 0, 1, '#'}, 4, VG_EMALFORMED},
        {CX_PUBLISH, {0x08, 0, 0}, 3, VG_EMALFORMED},
        {CX_WILL, {0x08, 0, 3, 'a', '/', '#'}, 6, VG_EMALFORMED},
        {CX_WILL, {0x08, 0, 3, 'a', '/', 'b'}, 6, VG_OK},
        {CX_CONNACK, {0x12, 0, 1, 0x80}, 4, VG_EMALFORMED},
        {CX_CONNECT, {0x15, 0, 1, 0xC1}, 4, VG_EMALFORMED},
        /* Binary data may be anything. */
        {CX_PUBLISH, {0x09, 0, 3, 0, 0xFF, 0xC0}, 6, VG_OK},
        /* User property: both strings UTF-8. */
        {CX_DISCONNECT, {0x26, 0, 1, 0xFF, 0, 0}, 6, VG_EMALFORMED},
        {CX_DISCONNECT, {0x26, 0, 0, 0, 1, 0xFF}, 6, VG_EMALFORMED},
        {CX_DISCONNECT, {0x26, 0, 0, 0, 0}, 5, VG_OK},
        /* Authentication data needs a method. */
        {CX_CONNECT, {0x16, 0, 0}, 3, VG_EMALFORMED},
        {CX_CONNACK, {0x16, 0, 1, 9}, 4, VG_EMALFORMED},
        {CX_CONNECT, {0x16, 0, 0, 0x15, 0, 1, 'm'}, 7, VG_OK}, /* order is free */
        /* Truncated values. */
        {CX_DISCONNECT, {0x11, 0, 0, 0}, 4, VG_EMALFORMED},
        {CX_DISCONNECT, {0x1F, 0, 5, 'a'}, 4, VG_EMALFORMED},
        {CX_DISCONNECT, {0x1F}, 1, VG_EMALFORMED},
        {CX_DISCONNECT, {0x26, 0, 1, 'k'}, 4, VG_EMALFORMED},
        {CX_CONNECT, {0x21, 0}, 2, VG_EMALFORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t props = {.n = 0};
        vg_mqtt_props_t got;
        put_raw(&props, cases[i].bytes, cases[i].n);
        buf_t body = cx_body(cases[i].cx, &props);
        int rc = cx_decode(cases[i].cx, &body, &got, false);
        if (rc != cases[i].want)
            printf("  case %zu (%s): %d\n", i, cx_allowed[cases[i].cx].name, rc);
        VT_EQ_INT(rc, cases[i].want);
    }
}

static void test_v5_property_length(void)
{
    vg_mqtt_props_t pr;
    uint8_t reason;

    /* The property length is a variable byte integer: at most four bytes,
     * shortest form, and it may not run past the packet. */
    static const struct {
        uint8_t b[8];
        size_t n;
        int want;
    } cases[] = {
        {{0, 0x80, 0x00}, 3, VG_EMALFORMED},                   /* 0 in two bytes */
        {{0, 0x80}, 2, VG_EMALFORMED},                         /* cut */
        {{0, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 6, VG_EMALFORMED}, /* five bytes */
        {{0, 0x04, 0x1F, 0, 0}, 5, VG_EMALFORMED},             /* longer than the rest */
        {{0, 0x01, 0x1F, 0, 0}, 5, VG_EMALFORMED},             /* property runs past the block */
        {{0, 0x03, 0x1F, 0, 0}, 5, VG_OK},
        {{0, 0x03, 0x1F, 0, 0, 7}, 6, VG_EMALFORMED}, /* a byte after the block */
        {{0x8B, 0x00}, 2, VG_OK},
        {{0x8B, 0x00, 0x00}, 3, VG_EMALFORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, cases[i].b, cases[i].n, &reason, &pr),
                  cases[i].want);
        VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, cases[i].b, cases[i].n, &reason, NULL),
                  cases[i].want);
    }

    /* A two-byte length: 200 bytes of reason string. */
    buf_t b = {.n = 0}, props = {.n = 0};
    char s[198];
    memset(s, 'r', sizeof(s));
    put_u8(&props, 0x1F);
    put_lstr(&props, s, sizeof(s));
    VT_REQUIRE(props.n == 201);
    put_u8(&b, 0x80);
    put_block(&b, &props);
    VT_EQ_INT(b.b[1], 0xC9);
    VT_EQ_INT(b.b[2], 0x01);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, b.b, b.n, &reason, &pr), VG_OK);
    VT_EQ_INT(reason, 0x80);
    VT_EQ_INT(pr.reason_string.len, 198);
    VT_EQ_INT(vg_mqtt_props_size(&pr), 203);
    /* The same value in three bytes is refused. */
    b.n = 0;
    put_u8(&b, 0x80);
    put_u8(&b, 0xC9);
    put_u8(&b, 0x81);
    put_u8(&b, 0x00);
    put_raw(&b, props.b, props.n);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, b.b, b.n, &reason, &pr), VG_EMALFORMED);
}

/* ---- MQTT 5.0: packets ------------------------------------------------- */

static void check_connect5_rt(const vg_mqtt_connect_t *c)
{
    static uint8_t pkt[2048];
    const uint8_t *body;
    size_t len;
    vg_mqtt_connect_t d;
    uint8_t rc = 0xFF;

    int n = vg_mqtt_encode_connect(pkt, sizeof(pkt), c);
    VT_REQUIRE(n > 0);
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_CONNECT, 0, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_connect(body, len, &d, &rc), VG_OK);
    VT_EQ_INT(rc, 0);
    VT_EQ_INT(d.protocol_level, 5);
    VT_EQ_INT(d.clean_session, c->clean_session);
    VT_EQ_INT(d.keepalive, c->keepalive);
    VT_CHECK(same(d.client_id, c->client_id));
    VT_EQ_INT(d.will_flag, c->will_flag);
    VT_EQ_INT(d.will_qos, c->will_qos);
    VT_EQ_INT(d.will_retain, c->will_retain);
    VT_CHECK(same(d.will_topic, c->will_topic) && same(d.will_payload, c->will_payload));
    VT_EQ_INT(d.has_username, c->has_username);
    VT_EQ_INT(d.has_password, c->has_password);
    VT_CHECK(same(d.username, c->username) && same(d.password, c->password));
    VT_CHECK(same_props(&d.props, &c->props));
    VT_CHECK(same_props(&d.will_props, &c->will_props));
    /* Truncation anywhere is malformed; so is a trailing byte. */
    for (size_t k = 0; k < len; k++) {
        int r = vg_mqtt_decode_connect(body, k, &d, &rc);
        if (r != VG_EMALFORMED)
            printf("  prefix %zu: %d\n", k, r);
        VT_EQ_INT(r, VG_EMALFORMED);
    }
    pkt[n] = 0;
    VT_EQ_INT(vg_mqtt_decode_connect(body, len + 1, &d, &rc), VG_EMALFORMED);
}

static void test_v5_connect(void)
{
    vg_mqtt_connect_t full = {
        .protocol_level = 5,
        .clean_session = true,
        .keepalive = 30,
        .client_id = bs("wearable-0042"),
        .will_flag = true,
        .will_qos = 1,
        .will_retain = true,
        .will_topic = bs("devices/0042/status"),
        .will_payload = bs("offline"),
        .has_username = true,
        .username = bs("ward-7"),
        .has_password = true,
        .password = bs("pw"),
        .props =
            {
                .present = PB(SESSION_EXPIRY) | PB(RECEIVE_MAX) | PB(MAX_PACKET_SIZE) | PB(TOPIC_ALIAS_MAX) |
                           PB(REQUEST_RESPONSE_INFO) | PB(REQUEST_PROBLEM_INFO) | PB(AUTH_METHOD) | PB(AUTH_DATA),
                .session_expiry = 0xFFFFFFFF,
                .receive_max = 20,
                .max_packet_size = 1 << 20,
                .topic_alias_max = 10,
                .request_response_info = 1,
                .request_problem_info = 0,
                .auth_method = bs("SCRAM-SHA-1"),
                .auth_data = {(const uint8_t *)"\x01\x00\x02", 3},
                .user_props = USER_RUN,
            },
        .will_props =
            {
                .present = PB(WILL_DELAY) | PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) |
                           PB(RESPONSE_TOPIC) | PB(CORRELATION_DATA),
                .will_delay = 60,
                .payload_format = 1,
                .message_expiry = 86400,
                .content_type = bs("text/plain"),
                .response_topic = bs("devices/0042/ack"),
                .correlation_data = {(const uint8_t *)"\x00\x01", 2},
                .user_props = USER_RUN,
            },
    };
    check_connect5_rt(&full);

    /* 5.0 allows a password without a username (v5 §3.1.2.9) and an empty
     * client id without clean start (v5 §3.1.3.1). */
    vg_mqtt_connect_t pw_only = {
        .protocol_level = 5, .client_id = bs(""), .has_password = true, .password = bs("token")};
    check_connect5_rt(&pw_only);
    vg_mqtt_connect_t minimal = {.protocol_level = 5, .clean_session = true, .client_id = bs("m")};
    check_connect5_rt(&minimal);
    vg_mqtt_connect_t will_plain = {.protocol_level = 5,
                                    .client_id = bs("w"),
                                    .will_flag = true,
                                    .will_topic = bs("w/t"),
                                    .will_payload = {NULL, 0}};
    check_connect5_rt(&will_plain);

    /* Exact bytes: level 5, flags 0x06 (will, clean start), keepalive 10,
     * properties {session expiry 5}, id "c", will properties {will delay
     * 3}, will topic "t", payload "m". */
    vg_mqtt_connect_t small = {.protocol_level = 5,
                               .clean_session = true,
                               .keepalive = 10,
                               .client_id = bs("c"),
                               .will_flag = true,
                               .will_topic = bs("t"),
                               .will_payload = bs("m"),
                               .props = {.present = PB(SESSION_EXPIRY), .session_expiry = 5},
                               .will_props = {.present = PB(WILL_DELAY), .will_delay = 3}};
    static const uint8_t want[] = {0x10, 31, 0, 4,   'M', 'Q',  'T', 'T', 5, 0x06, 0, 10, 5,   0x11, 0, 0,  0,
                                   5,    0,  1, 'c', 5,   0x18, 0,   0,   0, 3,    0, 1,  't', 0,    1, 'm'};
    uint8_t out[64];
    int n = vg_mqtt_encode_connect(out, sizeof(out), &small);
    VT_EQ_INT(n, sizeof(want));
    VT_CHECK(n == (int)sizeof(want) && memcmp(out, want, sizeof(want)) == 0);

    /* Decoding: the empty id without clean start, and the password alone. */
    buf_t b = connect_head("MQTT", 5, 0x00);
    uint8_t rc;
    put_empty_block(&b);
    put_str(&b, "");
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);
    b = connect_head("MQTT", 5, 0x42);
    put_empty_block(&b);
    put_str(&b, "id");
    put_str(&b, "pw");
    VT_EQ_INT(connect_rc(&b, &rc), VG_OK);
    /* The flag rules 5.0 kept. */
    b = connect_head("MQTT", 5, 0x03);
    put_empty_block(&b);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 5, 0x02 | 0x08);
    put_empty_block(&b);
    put_str(&b, "id");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    b = connect_head("MQTT", 5, 0x02 | 0x04 | 0x18);
    put_empty_block(&b);
    put_str(&b, "id");
    put_empty_block(&b);
    put_str(&b, "w");
    put_str(&b, "m");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    /* Will properties are mandatory (if empty) with a will, and come before
     * the will topic: a 3.1.1-shaped will is malformed in 5.0. */
    b = connect_head("MQTT", 5, 0x06);
    put_empty_block(&b);
    put_str(&b, "id");
    put_str(&b, "w");
    put_str(&b, "m");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);
    /* Invalid will topic in 5.0 too. */
    b = connect_head("MQTT", 5, 0x06);
    put_empty_block(&b);
    put_str(&b, "id");
    put_empty_block(&b);
    put_str(&b, "w/#");
    put_str(&b, "m");
    VT_EQ_INT(connect_rc(&b, &rc), VG_EMALFORMED);

    /* Encoder: will properties need a will; properties must be allowed. */
    vg_mqtt_connect_t bad = {
        .protocol_level = 5, .client_id = bs("x"), .will_props = {.present = PB(WILL_DELAY), .will_delay = 1}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &bad), VG_EINVAL);
    bad = (vg_mqtt_connect_t){.protocol_level = 5, .client_id = bs("x"), .will_props = {.user_props = USER_RUN}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &bad), VG_EINVAL);
    bad = (vg_mqtt_connect_t){
        .protocol_level = 5, .client_id = bs("x"), .props = {.present = PB(TOPIC_ALIAS), .topic_alias = 1}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &bad), VG_EINVAL);
    bad = (vg_mqtt_connect_t){
        .protocol_level = 5, .client_id = bs("x"), .props = {.present = PB(RECEIVE_MAX), .receive_max = 0}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &bad), VG_EINVAL);
    bad = (vg_mqtt_connect_t){
        .protocol_level = 5, .client_id = bs("x"), .props = {.present = PB(AUTH_DATA), .auth_data = bs("d")}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &bad), VG_EINVAL);
    bad = (vg_mqtt_connect_t){.protocol_level = 5,
                              .client_id = bs("x"),
                              .will_flag = true,
                              .will_topic = bs("t"),
                              .will_props = {.present = PB(SESSION_EXPIRY), .session_expiry = 1}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &bad), VG_EINVAL);
    /* 3.1.1 ignores the properties it cannot carry. */
    bad = (vg_mqtt_connect_t){
        .protocol_level = 4, .client_id = bs("x"), .props = {.present = PB(TOPIC_ALIAS), .topic_alias = 1}};
    VT_EQ_INT(vg_mqtt_encode_connect(out, sizeof(out), &bad), 15);
}

static void test_v5_connack(void)
{
    uint8_t pkt[512];
    const uint8_t *body;
    size_t len;
    bool sp;
    uint8_t rc;
    vg_mqtt_props_t pr;

    /* Every reason code: v5 §3.2.2.2's table, and only it. */
    static const uint8_t allowed[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                                      0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
    for (unsigned code = 0; code < 256; code++) {
        bool ok = memchr(allowed, (int)code, sizeof(allowed)) != NULL;
        uint8_t raw[3] = {0, (uint8_t)code, 0};
        VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, raw, 3, &sp, &rc, &pr), ok ? VG_OK : VG_EMALFORMED);
        int n = vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V5, false, (uint8_t)code, NULL);
        VT_EQ_INT(n, ok ? 5 : VG_EINVAL);
        if (ok)
            VT_CHECK(memcmp(pkt, (uint8_t[]){0x20, 3, 0, (uint8_t)code, 0}, 5) == 0);
    }
    /* Session present only with success; reserved flag bits; the property
     * length is not optional; nothing may follow the properties. */
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, BYTES(1, 0, 0), &sp, &rc, &pr), VG_OK);
    VT_CHECK(sp && rc == 0);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, BYTES(1, 0x80, 0), &sp, &rc, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V5, true, 0x80, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, BYTES(2, 0, 0), &sp, &rc, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, BYTES(0, 0), &sp, &rc, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, BYTES(0, 0, 0, 0), &sp, &rc, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, BYTES(0, 0, 0), &sp, &rc, NULL), VG_OK);

    /* All the CONNACK properties at once. */
    vg_mqtt_props_t all = {
        .present = PB(SESSION_EXPIRY) | PB(RECEIVE_MAX) | PB(MAX_QOS) | PB(RETAIN_AVAILABLE) | PB(MAX_PACKET_SIZE) |
                   PB(ASSIGNED_CLIENT_ID) | PB(TOPIC_ALIAS_MAX) | PB(REASON_STRING) | PB(WILDCARD_SUB_AVAILABLE) |
                   PB(SUB_ID_AVAILABLE) | PB(SHARED_SUB_AVAILABLE) | PB(SERVER_KEEPALIVE) | PB(RESPONSE_INFO) |
                   PB(SERVER_REFERENCE) | PB(AUTH_METHOD) | PB(AUTH_DATA),
        .session_expiry = 120,
        .receive_max = 100,
        .max_qos = 1,
        .retain_available = 0,
        .max_packet_size = 65536,
        .assigned_client_id = bs("auto-1f2e"),
        .topic_alias_max = 16,
        .reason_string = bs("welcome"),
        .wildcard_sub_available = 1,
        .sub_id_available = 1,
        .shared_sub_available = 0,
        .server_keepalive = 45,
        .response_info = bs("resp/"),
        .server_reference = bs("other:1883"),
        .auth_method = bs("TOKEN"),
        .auth_data = bs("\x01"),
        .user_props = USER_RUN,
    };
    int n = vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V5, true, 0, &all);
    VT_REQUIRE(n > 0);
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_CONNACK, 0, &body, &len));
    VT_EQ_INT(len, 2 + vg_mqtt_props_size(&all));
    VT_EQ_INT(vg_mqtt_decode_connack(VG_MQTT_V5, body, len, &sp, &rc, &pr), VG_OK);
    VT_CHECK(sp && rc == 0);
    VT_CHECK(same_props(&pr, &all));
    VT_EQ_INT(pr.user_prop_count, 2);
    /* 3.1.1 ignores the properties. */
    VT_EQ_INT(vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V311, true, 0, &all), 4);
    /* Not allowed in CONNACK. */
    vg_mqtt_props_t bad = {.present = PB(WILL_DELAY), .will_delay = 1};
    VT_EQ_INT(vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V5, false, 0, &bad), VG_EINVAL);
    bad = (vg_mqtt_props_t){.present = PB(MAX_QOS), .max_qos = 2};
    VT_EQ_INT(vg_mqtt_encode_connack(pkt, sizeof(pkt), VG_MQTT_V5, false, 0, &bad), VG_EINVAL);
}

static void check_publish5_rt(const vg_mqtt_publish_t *p)
{
    static uint8_t pkt[32768];
    const uint8_t *body;
    size_t len;
    vg_mqtt_publish_t d;
    uint8_t flags = (uint8_t)((p->dup ? 8 : 0) | p->qos << 1 | (p->retain ? 1 : 0));

    int n = vg_mqtt_encode_publish(pkt, sizeof(pkt), VG_MQTT_V5, p);
    VT_REQUIRE(n > 0);
    VT_EQ_INT(n, vg_mqtt_publish_size(VG_MQTT_V5, p->topic.len, p->payload.len, p->qos, &p->props));
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_PUBLISH, flags, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, flags, body, len, &d), VG_OK);
    VT_EQ_INT(d.qos, p->qos);
    VT_EQ_INT(d.dup, p->dup);
    VT_EQ_INT(d.retain, p->retain);
    VT_EQ_INT(d.packet_id, p->qos ? p->packet_id : 0);
    VT_CHECK(same(d.topic, p->topic));
    VT_CHECK(same(d.payload, p->payload));
    VT_CHECK(same_props(&d.props, &p->props));
    /* The decoded struct encodes to the same bytes. */
    static uint8_t again[32768];
    VT_EQ_INT(vg_mqtt_encode_publish(again, sizeof(again), VG_MQTT_V5, &d), n);
    VT_CHECK(memcmp(again, pkt, (size_t)n) == 0);
}

static void test_v5_publish(void)
{
    static uint8_t big[20000];
    memset(big, 0x5A, sizeof(big));

    vg_mqtt_publish_t all = {
        .qos = 2,
        .retain = true,
        .topic = bs("vitals/hr/0042"),
        .packet_id = 9,
        .payload = bs("{\"bpm\":71}"),
        .props =
            {
                .present = PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) | PB(RESPONSE_TOPIC) |
                           PB(CORRELATION_DATA) | PB(TOPIC_ALIAS),
                .payload_format = 1,
                .message_expiry = 3600,
                .content_type = bs("application/json"),
                .response_topic = bs("reply/0042"),
                .correlation_data = {(const uint8_t *)"\x00\xff\x10", 3},
                .topic_alias = 3,
                .sub_ids = {1, 127, 128, 16383, 16384, 2097151, 2097152, VG_MQTT_MAX_SUB_ID},
                .sub_id_count = 8,
                .user_props = USER_RUN,
            },
    };
    check_publish5_rt(&all);
    vg_mqtt_publish_t plain = {.topic = bs("t"), .payload = bs("x")};
    check_publish5_rt(&plain);
    /* 5.0 sends an empty topic when an alias stands for it. */
    vg_mqtt_publish_t alias = {.qos = 1,
                               .packet_id = 1,
                               .topic = {NULL, 0},
                               .payload = bs("p"),
                               .props = {.present = PB(TOPIC_ALIAS), .topic_alias = 1}};
    check_publish5_rt(&alias);
    vg_mqtt_publish_t large = {.topic = bs("t/big"),
                               .payload = {big, sizeof(big)},
                               .props = {.present = PB(CONTENT_TYPE), .content_type = bs("bin")}};
    check_publish5_rt(&large);

    /* Exact bytes: QoS 1, topic "a", id 0x1234, {payload format 1, alias 2}. */
    static const uint8_t want[] = {0x32, 13, 0, 1, 'a', 0x12, 0x34, 5, 0x01, 1, 0x23, 0, 2, 'h', 'i'};
    vg_mqtt_publish_t p = {
        .qos = 1,
        .topic = bs("a"),
        .packet_id = 0x1234,
        .payload = bs("hi"),
        .props = {.present = PB(PAYLOAD_FORMAT) | PB(TOPIC_ALIAS), .payload_format = 1, .topic_alias = 2}};
    uint8_t out[64];
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &p), sizeof(want));
    VT_CHECK(memcmp(out, want, sizeof(want)) == 0);
    /* The same at 3.1.1 drops the properties. */
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V311, &p), 9);

    vg_mqtt_publish_t d;
    /* An empty topic needs the alias; without properties it is malformed. */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0, BYTES(0, 0, 0, 'x'), &d), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0, BYTES(0, 0, 3, 0x23, 0, 1), &d), VG_OK);
    VT_EQ_INT(d.topic.len, 0);
    VT_EQ_INT(d.props.topic_alias, 1);
    VT_EQ_INT(d.payload.len, 0);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0, BYTES(0, 0, 3, 0x23, 0, 0), &d), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, 0, BYTES(0, 0, 3, 0x23, 0, 1), &d), VG_EMALFORMED);
    /* The property length is required in 5.0: a 3.1.1-shaped body whose
     * payload starts with a byte that is no valid block is refused. */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0, BYTES(0, 1, 't', 5, 'h', 'e', 'l', 'l', 'o'), &d), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0, BYTES(0, 1, 't'), &d), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 2, BYTES(0, 1, 't', 0, 1), &d), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 2, BYTES(0, 1, 't', 0, 1, 0), &d), VG_OK);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0x08, BYTES(0, 1, 't', 0), &d), VG_EMALFORMED); /* DUP QoS 0 */
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0, BYTES(0, 1, '+', 0), &d), VG_EMALFORMED);

    /* More subscription identifiers than the struct holds: the first eight
     * are kept, all are counted, and such a struct cannot be re-encoded. */
    buf_t props = {.n = 0}, body = {.n = 0};
    for (uint32_t i = 1; i <= 10; i++) {
        put_u8(&props, 0x0B);
        put_vbi(&props, i * 1000);
    }
    put_str(&body, "t");
    put_block(&body, &props);
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V5, 0, body.b, body.n, &d), VG_OK);
    VT_EQ_INT(d.props.sub_id_count, 10);
    VT_EQ_INT(d.props.sub_ids[0], 1000);
    VT_EQ_INT(d.props.sub_ids[7], 8000);
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &d), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_props_size(&d.props), 0);

    /* Encoder refusals. */
    vg_mqtt_publish_t bad = {.topic = {NULL, 0}, .payload = bs("x")};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    bad = (vg_mqtt_publish_t){.topic = bs("t"), .props = {.present = PB(TOPIC_ALIAS), .topic_alias = 0}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    bad = (vg_mqtt_publish_t){.topic = bs("t"), .props = {.present = PB(SESSION_EXPIRY), .session_expiry = 1}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V5, 1, 0, 0, &bad.props), 0);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V311, 1, 0, 0, &bad.props), 5); /* ignored below 5 */
    bad = (vg_mqtt_publish_t){.topic = bs("t"), .props = {.sub_ids = {0}, .sub_id_count = 1}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    bad = (vg_mqtt_publish_t){.topic = bs("t"), .props = {.sub_ids = {VG_MQTT_MAX_SUB_ID + 1}, .sub_id_count = 1}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    bad = (vg_mqtt_publish_t){.topic = bs("t"), .props = {.present = PB(RESPONSE_TOPIC), .response_topic = {NULL, 0}}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    bad = (vg_mqtt_publish_t){.topic = bs("t"), .props = {.present = PB(PAYLOAD_FORMAT), .payload_format = 2}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    bad = (vg_mqtt_publish_t){.topic = bs("t"), .props = {.present = VG_PROP_BIT(5)}};
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), VG_MQTT_V5, &bad), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_publish(out, sizeof(out), 6, &plain), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_decode_publish(6, 0, BYTES(0, 1, 't', 0), &d), VG_EINVAL);
}

static void test_v5_publish_size(void)
{
    /* Exactness across the length-field boundaries, with properties of
     * growing size: encode and size must agree byte for byte. */
    static uint8_t payload[300], ct[300], pkt[1024];
    memset(payload, 'p', sizeof(payload));
    memset(ct, 'c', sizeof(ct));
    for (size_t cl = 0; cl < 200; cl += 7) {
        for (size_t pl = 0; pl < 160; pl++) {
            vg_mqtt_publish_t p = {.qos = (uint8_t)(pl % 3),
                                   .packet_id = 1,
                                   .topic = bs("t/s"),
                                   .payload = {payload, pl},
                                   .props = {.present = cl ? PB(CONTENT_TYPE) : 0, .content_type = {ct, cl}}};
            size_t want = vg_mqtt_publish_size(VG_MQTT_V5, 3, pl, p.qos, &p.props);
            int n = vg_mqtt_encode_publish(pkt, sizeof(pkt), VG_MQTT_V5, &p);
            if ((size_t)n != want)
                printf("  cl %zu pl %zu: %d vs %zu\n", cl, pl, n, want);
            VT_EQ_INT(n, want);
        }
    }
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V5, 1, 0, 0, NULL), 6);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V5, 1, 0, 1, NULL), 8);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V5, 0, 0, 0, NULL), 5); /* with an alias */
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V5, 1, VG_MQTT_MAX_REMAINING - 4, 0, NULL), 5 + VG_MQTT_MAX_REMAINING);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V5, 1, VG_MQTT_MAX_REMAINING - 3, 0, NULL), 0);
    VT_EQ_INT(vg_mqtt_publish_size(VG_MQTT_V5, 1, 0, 3, NULL), 0);
    VT_EQ_INT(vg_mqtt_publish_size(7, 1, 0, 0, NULL), 0);
}

static void test_v5_props_size(void)
{
    uint8_t pkt[4096];
    VT_EQ_INT(vg_mqtt_props_size(NULL), 1);
    vg_mqtt_props_t empty = {0};
    VT_EQ_INT(vg_mqtt_props_size(&empty), 1);

    /* Exactness: a DISCONNECT carrying p is 1 + length field + (1 + size). */
    static uint8_t s[200];
    memset(s, 's', sizeof(s));
    for (size_t n = 0; n < sizeof(s); n++) {
        vg_mqtt_props_t p = {.present = PB(REASON_STRING) | PB(SESSION_EXPIRY),
                             .reason_string = {s, n},
                             .session_expiry = 1,
                             .user_props = USER_RUN};
        size_t sz = vg_mqtt_props_size(&p);
        VT_EQ_INT(sz, (5 + 3 + n + sizeof(user_run)) + (5 + 3 + n + sizeof(user_run) < 128 ? 1 : 2));
        size_t rem = 1 + sz;
        VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_DISCONNECT, 0x80, &p),
                  1 + (rem < 128 ? 1 : 2) + rem);
    }
    /* Each value class. */
    static const struct {
        vg_mqtt_props_t p;
        size_t size;
    } cases[] = {
        {{.present = PB(PAYLOAD_FORMAT), .payload_format = 1}, 1 + 2},
        {{.present = PB(SERVER_KEEPALIVE)}, 1 + 3},
        {{.present = PB(MESSAGE_EXPIRY)}, 1 + 5},
        {{.sub_ids = {127}, .sub_id_count = 1}, 1 + 2},
        {{.sub_ids = {128}, .sub_id_count = 1}, 1 + 3},
        {{.sub_ids = {16384, 2097152}, .sub_id_count = 2}, 1 + 4 + 5},
        {{.present = PB(CORRELATION_DATA)}, 1 + 3},
        {{.present = PB(AUTH_METHOD) | PB(AUTH_DATA), .auth_method = {(const uint8_t *)"m", 1}}, 1 + 4 + 3},
        /* The subscription and user bits alone carry nothing. */
        {{.present = PB(SUBSCRIPTION_ID) | PB(USER)}, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        VT_EQ_INT(vg_mqtt_props_size(&cases[i].p), cases[i].size);

    /* Cannot be encoded anywhere. */
    static uint8_t huge[65536];
    static const vg_mqtt_props_t bad[] = {
        {.present = VG_PROP_BIT(4)},
        {.present = VG_PROP_BIT(63)},
        {.present = PB(REASON_STRING), .reason_string = {huge, 65536}},
        {.present = PB(RECEIVE_MAX)},
        {.present = PB(MAX_PACKET_SIZE)},
        {.present = PB(TOPIC_ALIAS)},
        {.present = PB(MAX_QOS), .max_qos = 2},
        {.present = PB(AUTH_DATA)},
        {.sub_ids = {1, 2, 3, 4, 5, 6, 7, 8}, .sub_id_count = 9},
        {.user_props = {(const uint8_t *)"\x26\x00\x05k", 4}},
        {.user_props = {(const uint8_t *)"\x7F\x00", 2}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (vg_mqtt_props_size(&bad[i]) != 0)
            printf("  bad %zu\n", i);
        VT_EQ_INT(vg_mqtt_props_size(&bad[i]), 0);
        VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_DISCONNECT, 0, &bad[i]), VG_EINVAL);
    }
}

static const uint8_t ack_types[] = {VG_MQTT_PUBACK, VG_MQTT_PUBREC, VG_MQTT_PUBREL, VG_MQTT_PUBCOMP};

/* The reason codes of v5 §3.4.2.1 (PUBACK, and PUBREC's identical
 * §3.5.2.1), §3.6.2.1 (PUBREL) and §3.7.2.1 (PUBCOMP). */
static bool ack_reason_allowed(uint8_t type, uint8_t rc)
{
    static const uint8_t pub[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    if (type == VG_MQTT_PUBACK || type == VG_MQTT_PUBREC)
        return memchr(pub, rc, sizeof(pub)) != NULL;
    return rc == 0x00 || rc == 0x92;
}

static void test_v5_acks(void)
{
    uint8_t pkt[256];
    vg_mqtt_ack_t a;

    for (size_t t = 0; t < sizeof(ack_types); t++) {
        uint8_t type = ack_types[t], flags = type == VG_MQTT_PUBREL ? 2 : 0;
        for (unsigned code = 0; code < 256; code++) {
            bool ok = ack_reason_allowed(type, (uint8_t)code);
            uint8_t three[] = {0x12, 0x34, (uint8_t)code};
            uint8_t four[] = {0x12, 0x34, (uint8_t)code, 0};
            VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, three, 3, &a), ok ? VG_OK : VG_EMALFORMED);
            if (ok)
                VT_CHECK(a.packet_id == 0x1234 && a.reason == code && a.props.present == 0);
            VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, four, 4, &a), ok ? VG_OK : VG_EMALFORMED);
            /* The encoder picks the shortest form: 2 bytes for success, 3
             * for another reason without properties. */
            int n = vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, type, 0x1234, (uint8_t)code, NULL);
            VT_EQ_INT(n, !ok ? VG_EINVAL : code ? 5 : 4);
            if (ok && code)
                VT_CHECK(pkt[0] == (type << 4 | flags) && pkt[1] == 3 && pkt[4] == code);
        }
        /* Short forms. */
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, BYTES(0, 7), &a), VG_OK);
        VT_CHECK(a.packet_id == 7 && a.reason == 0);
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, BYTES(0, 0), &a), VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, BYTES(0), &a), VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, NULL, 0, &a), VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, BYTES(0, 7, 0, 0, 0), &a), VG_EMALFORMED); /* trailing */
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, BYTES(0, 7, 0, 1), &a), VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, type, 7, 0, NULL), 4);
        VT_CHECK(pkt[1] == 2 && pkt[2] == 0 && pkt[3] == 7);
        vg_mqtt_props_t none = {.present = PB(USER)}; /* no run: nothing to send */
        VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, type, 7, 0, &none), 4);

        /* With properties, round trip. */
        vg_mqtt_props_t pr = {.present = PB(REASON_STRING), .reason_string = bs("quota"), .user_props = USER_RUN};
        uint8_t rc = type == VG_MQTT_PUBREL || type == VG_MQTT_PUBCOMP ? 0x92 : 0x97;
        int n = vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, type, 0xFFFF, rc, &pr);
        const uint8_t *body;
        size_t len;
        VT_REQUIRE(frame_one(pkt, (size_t)n, type, flags, &body, &len));
        VT_EQ_INT(len, 3 + vg_mqtt_props_size(&pr));
        VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, type, body, len, &a), VG_OK);
        VT_CHECK(a.packet_id == 0xFFFF && a.reason == rc && same_props(&a.props, &pr));
        /* Success with properties keeps the reason byte. */
        n = vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, type, 1, 0, &pr);
        VT_EQ_INT(n, 2 + 3 + (int)vg_mqtt_props_size(&pr));
        vg_mqtt_props_t bad = {.present = PB(SESSION_EXPIRY)};
        VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, type, 1, 0, &bad), VG_EINVAL);
        VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, type, 0, 0, NULL), VG_EINVAL);
    }
    /* 5.0 UNSUBACK has a payload: not an ack here. Wrong types. */
    VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, VG_MQTT_UNSUBACK, BYTES(0, 1), &a), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_UNSUBACK, 1, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, VG_MQTT_SUBACK, BYTES(0, 1), &a), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V311, VG_MQTT_PUBLISH, BYTES(0, 1), &a), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_decode_ack(0, VG_MQTT_PUBACK, BYTES(0, 1), &a), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_ack(pkt, sizeof(pkt), 2, VG_MQTT_PUBACK, 1, 0, NULL), VG_EINVAL);
}

static void test_v5_subscribe(void)
{
    uint8_t pkt[512];
    const uint8_t *body;
    size_t len, n;
    uint16_t pid;
    vg_mqtt_props_t pr;
    vg_mqtt_sub_t d[64];

    /* Every valid options byte round trips; every other is malformed. */
    for (unsigned o = 0; o < 256; o++) {
        bool ok = (o & 3) != 3 && ((o >> 4) & 3) != 3 && !(o & 0xC0);
        uint8_t raw[] = {0, 1, 0, 0, 1, 'a', (uint8_t)o};
        VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, raw, sizeof(raw), true, &pid, &pr, d, 4, &n),
                  ok ? VG_OK : VG_EMALFORMED);
        if (!ok)
            continue;
        VT_CHECK(d[0].qos == (o & 3) && d[0].no_local == !!(o & 4) && d[0].retain_as_published == !!(o & 8) &&
                 d[0].retain_handling == (o >> 4));
        int e = vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V5, 1, NULL, d, 1);
        VT_EQ_INT(e, 2 + sizeof(raw));
        VT_CHECK(memcmp(pkt + 2, raw, sizeof(raw)) == 0);
        /* 3.1.1 writes the QoS alone. */
        VT_EQ_INT(vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V311, 1, NULL, d, 1), 8);
        VT_EQ_INT(pkt[7], o & 3);
    }

    /* Properties: one subscription identifier and user properties. */
    vg_mqtt_sub_t subs[] = {
        {.filter = bs("vitals/+/hr"), .qos = 1, .no_local = true},
        {.filter = bs("$share/g1/alerts/#"), .qos = 2, .retain_as_published = true, .retain_handling = 2},
        {.filter = bs("#"), .qos = 0, .retain_handling = 1},
    };
    vg_mqtt_props_t sp = {.sub_ids = {VG_MQTT_MAX_SUB_ID}, .sub_id_count = 1, .user_props = USER_RUN};
    int e = vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V5, 42, &sp, subs, 3);
    VT_REQUIRE(e > 0);
    VT_REQUIRE(frame_one(pkt, (size_t)e, VG_MQTT_SUBSCRIBE, 2, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, body, len, true, &pid, &pr, d, 64, &n), VG_OK);
    VT_EQ_INT(pid, 42);
    VT_EQ_INT(n, 3);
    VT_CHECK(same_props(&pr, &sp));
    for (size_t i = 0; i < 3; i++) {
        VT_CHECK(same(d[i].filter, subs[i].filter) && d[i].qos == subs[i].qos && d[i].no_local == subs[i].no_local &&
                 d[i].retain_as_published == subs[i].retain_as_published &&
                 d[i].retain_handling == subs[i].retain_handling);
    }
    /* Without props out, still validated. */
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, body, len, true, &pid, NULL, d, 64, &n), VG_OK);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, body, len, true, &pid, NULL, d, 2, &n), VG_ELIMIT);
    /* Two identifiers, or an identifier 0, are malformed; so are the
     * encoder's equivalents. */
    VT_EQ_INT(
        vg_mqtt_decode_subscribe(VG_MQTT_V5, BYTES(0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, 'a', 0), true, &pid, &pr, d, 4, &n),
        VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, BYTES(0, 1, 2, 0x0B, 0, 0, 1, 'a', 0), true, &pid, &pr, d, 4, &n),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, BYTES(0, 1, 2, 0x0B, 9, 0, 1, 'a', 0), true, &pid, &pr, d, 4, &n),
              VG_OK);
    VT_EQ_INT(pr.sub_ids[0], 9);
    vg_mqtt_props_t two = {.sub_ids = {1, 2}, .sub_id_count = 2};
    VT_EQ_INT(vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V5, 1, &two, subs, 1), VG_EINVAL);
    vg_mqtt_sub_t rh3 = {.filter = bs("a"), .retain_handling = 3};
    VT_EQ_INT(vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V5, 1, NULL, &rh3, 1), VG_EINVAL);
    vg_mqtt_props_t rs = {.present = PB(REASON_STRING), .reason_string = bs("no")};
    VT_EQ_INT(vg_mqtt_encode_subscribe(pkt, sizeof(pkt), VG_MQTT_V5, 1, &rs, subs, 1), VG_EINVAL);
    /* No filters; a 3.1.1-shaped body (no property length). */
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, BYTES(0, 1, 0), true, &pid, &pr, d, 4, &n), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, BYTES(0, 1, 0, 1, 'a', 0), true, &pid, &pr, d, 4, &n),
              VG_EMALFORMED);

    /* UNSUBSCRIBE: user properties only. */
    vg_mqtt_props_t up = {.user_props = USER_RUN};
    e = vg_mqtt_encode_unsubscribe(pkt, sizeof(pkt), VG_MQTT_V5, 43, &up, subs, 3);
    VT_REQUIRE(e > 0);
    VT_REQUIRE(frame_one(pkt, (size_t)e, VG_MQTT_UNSUBSCRIBE, 2, &body, &len));
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, body, len, false, &pid, &pr, d, 64, &n), VG_OK);
    VT_CHECK(pid == 43 && n == 3 && same_props(&pr, &up));
    VT_CHECK(same(d[1].filter, subs[1].filter) && d[1].qos == 0 && !d[1].no_local);
    VT_EQ_INT(vg_mqtt_encode_unsubscribe(pkt, sizeof(pkt), VG_MQTT_V5, 1, &sp, subs, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_decode_subscribe(VG_MQTT_V5, BYTES(0, 1, 2, 0x0B, 1, 0, 1, 'a'), false, &pid, &pr, d, 4, &n),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_subscribe(9, BYTES(0, 1, 0, 0, 1, 'a'), false, &pid, &pr, d, 4, &n), VG_EINVAL);
}

/* v5 §3.9.3 and §3.11.3. */
static bool suback_reason_allowed(uint8_t type, uint8_t rc)
{
    static const uint8_t sub[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
    static const uint8_t unsub[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
    return type == VG_MQTT_SUBACK ? memchr(sub, rc, sizeof(sub)) != NULL : memchr(unsub, rc, sizeof(unsub)) != NULL;
}

static void test_v5_suback(void)
{
    static const uint8_t types[] = {VG_MQTT_SUBACK, VG_MQTT_UNSUBACK};
    uint8_t pkt[512], got[8];
    const uint8_t *body;
    size_t len, n;
    uint16_t pid;
    vg_mqtt_props_t pr;

    for (size_t t = 0; t < 2; t++) {
        uint8_t type = types[t];
        for (unsigned code = 0; code < 256; code++) {
            bool ok = suback_reason_allowed(type, (uint8_t)code);
            uint8_t raw[] = {0, 5, 0, 0, (uint8_t)code};
            VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V5, type, raw, sizeof(raw), &pid, &pr, got, 8, &n),
                      ok ? VG_OK : VG_EMALFORMED);
            uint8_t c8 = (uint8_t)code;
            VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V5, type, 5, NULL, &c8, 1), ok ? 6 : VG_EINVAL);
        }
        uint8_t rcs[] = {0x00, 0x80, 0x87, 0x8F};
        if (type == VG_MQTT_SUBACK)
            rcs[0] = 0x02;
        else
            rcs[0] = 0x11;
        vg_mqtt_props_t p = {.present = PB(REASON_STRING), .reason_string = bs("partly"), .user_props = USER_RUN};
        int e = vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V5, type, 77, &p, rcs, 4);
        VT_REQUIRE(e > 0);
        VT_REQUIRE(frame_one(pkt, (size_t)e, type, 0, &body, &len));
        VT_EQ_INT(len, 2 + vg_mqtt_props_size(&p) + 4);
        VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V5, type, body, len, &pid, &pr, got, 8, &n), VG_OK);
        VT_CHECK(pid == 77 && n == 4 && memcmp(got, rcs, 4) == 0 && same_props(&pr, &p));
        VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V5, type, body, len, &pid, NULL, got, 3, &n), VG_ELIMIT);
        VT_EQ_INT(pid, 77);
        /* No codes; no property length; a property not allowed. */
        VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V5, type, BYTES(0, 5, 0), &pid, &pr, got, 8, &n), VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V5, type, BYTES(0, 5), &pid, &pr, got, 8, &n), VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V5, type, BYTES(0, 0, 0, 0), &pid, &pr, got, 8, &n), VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V5, type, BYTES(0, 5, 2, 0x0B, 1, 0), &pid, &pr, got, 8, &n),
                  VG_EMALFORMED);
        vg_mqtt_props_t bad = {.sub_ids = {1}, .sub_id_count = 1};
        VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V5, type, 5, &bad, rcs, 1), VG_EINVAL);
        VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V5, type, 5, NULL, rcs, 0), VG_EINVAL);
    }
    /* UNSUBACK with a payload is 5.0 only. */
    uint8_t zero = 0;
    VT_EQ_INT(vg_mqtt_decode_suback(VG_MQTT_V311, VG_MQTT_UNSUBACK, BYTES(0, 5, 0), &pid, &pr, got, 8, &n), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V311, VG_MQTT_UNSUBACK, 5, NULL, &zero, 1), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_PUBACK, 5, NULL, &zero, 1), VG_EINVAL);
    /* 5.0 SUBACK codes that 3.1.1 lacks. */
    uint8_t c87 = 0x87;
    VT_EQ_INT(vg_mqtt_encode_suback(pkt, sizeof(pkt), VG_MQTT_V311, VG_MQTT_SUBACK, 5, NULL, &c87, 1), VG_EINVAL);
}

/* v5 §3.14.2.1, plus 0x8C which §2.4 lists for DISCONNECT. */
static const uint8_t disconnect_codes[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C,
                                           0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98,
                                           0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};

static void test_v5_disconnect(void)
{
    uint8_t pkt[256], reason;
    vg_mqtt_props_t pr;
    const uint8_t *body;
    size_t len;

    for (unsigned code = 0; code < 256; code++) {
        bool ok = memchr(disconnect_codes, (int)code, sizeof(disconnect_codes)) != NULL;
        uint8_t one[] = {(uint8_t)code}, two[] = {(uint8_t)code, 0};
        VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, one, 1, &reason, &pr),
                  ok ? VG_OK : VG_EMALFORMED);
        if (ok)
            VT_EQ_INT(reason, code);
        VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, two, 2, &reason, &pr),
                  ok ? VG_OK : VG_EMALFORMED);
        int n = vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_DISCONNECT, (uint8_t)code, NULL);
        VT_EQ_INT(n, !ok ? VG_EINVAL : code ? 3 : 2);
    }
    /* Remaining length 0 is a normal disconnection. */
    reason = 0xFF;
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, NULL, 0, &reason, &pr), VG_OK);
    VT_EQ_INT(reason, 0);
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_DISCONNECT, 0, NULL), 2);
    VT_CHECK(pkt[0] == 0xE0 && pkt[1] == 0);
    VT_EQ_INT(vg_mqtt_encode_empty(pkt, sizeof(pkt), VG_MQTT_DISCONNECT), 2);

    /* All DISCONNECT properties. */
    vg_mqtt_props_t all = {.present = PB(SESSION_EXPIRY) | PB(SERVER_REFERENCE) | PB(REASON_STRING),
                           .session_expiry = 0,
                           .server_reference = bs("b.example:8883"),
                           .reason_string = bs("maintenance"),
                           .user_props = USER_RUN};
    int n = vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_DISCONNECT, VG_RC_USE_ANOTHER_SERVER, &all);
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_DISCONNECT, 0, &body, &len));
    VT_EQ_INT(len, 1 + vg_mqtt_props_size(&all));
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, body, len, &reason, &pr), VG_OK);
    VT_CHECK(reason == VG_RC_USE_ANOTHER_SERVER && same_props(&pr, &all));
    vg_mqtt_props_t bad = {.present = PB(AUTH_METHOD), .auth_method = bs("m")};
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_DISCONNECT, 0, &bad), VG_EINVAL);

    /* 3.1.1: empty, whatever the encoder is told. */
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V311, VG_MQTT_DISCONNECT, NULL, 0, &reason, &pr), VG_OK);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V311, VG_MQTT_DISCONNECT, BYTES(0), &reason, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V311, VG_MQTT_DISCONNECT, 0x8B, &all), 2);
    VT_CHECK(pkt[0] == 0xE0 && pkt[1] == 0);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_PINGREQ, NULL, 0, &reason, &pr), VG_EINVAL);
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_CONNACK, 0, NULL), VG_EINVAL);
}

static void test_v5_auth(void)
{
    uint8_t pkt[256], reason;
    vg_mqtt_props_t pr;
    const uint8_t *body;
    size_t len;

    vg_mqtt_props_t ap = {.present = PB(AUTH_METHOD) | PB(AUTH_DATA) | PB(REASON_STRING),
                          .auth_method = bs("SCRAM-SHA-256"),
                          .auth_data = {(const uint8_t *)"n,,n=user,r=\x00\xff", 14},
                          .reason_string = bs("step 2"),
                          .user_props = USER_RUN};
    static const uint8_t codes[] = {VG_RC_SUCCESS, VG_RC_CONTINUE_AUTH, VG_RC_REAUTHENTICATE};
    for (size_t i = 0; i < sizeof(codes); i++) {
        int n = vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_AUTH, codes[i], &ap);
        VT_REQUIRE(n > 0);
        VT_EQ_INT(pkt[0], 0xF0);
        VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_AUTH, 0, &body, &len));
        VT_EQ_INT(len, 1 + vg_mqtt_props_size(&ap));
        VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_AUTH, body, len, &reason, &pr), VG_OK);
        VT_CHECK(reason == codes[i] && same_props(&pr, &ap));
    }
    /* Only those three codes. */
    for (unsigned code = 0; code < 256; code++) {
        bool ok = code == 0 || code == 0x18 || code == 0x19;
        uint8_t raw[] = {(uint8_t)code, 4, 0x15, 0, 1, 'm'};
        VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_AUTH, raw, sizeof(raw), &reason, &pr),
                  ok ? VG_OK : VG_EMALFORMED);
        VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_AUTH, (uint8_t)code, &ap) > 0, ok);
    }
    /* The method is required, so the short forms are malformed. */
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_AUTH, NULL, 0, &reason, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_AUTH, BYTES(0x18), &reason, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_AUTH, BYTES(0x18, 0), &reason, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_AUTH, BYTES(0x18, 3, 0x16, 0, 0), &reason, &pr), VG_EMALFORMED);
    VT_EQ_INT(
        vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_AUTH, BYTES(0x18, 8, 0x15, 0, 1, 'm', 0x15, 0, 1, 'm'), &reason, &pr),
        VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_AUTH, 0x18, NULL), VG_EINVAL);
    vg_mqtt_props_t no_method = {.present = PB(REASON_STRING), .reason_string = bs("x")};
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_AUTH, 0x18, &no_method), VG_EINVAL);
    vg_mqtt_props_t se = {.present = PB(AUTH_METHOD) | PB(SESSION_EXPIRY), .auth_method = bs("m")};
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_AUTH, 0x18, &se), VG_EINVAL);
    /* 3.1.1 has no AUTH: type 15 is reserved there. */
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V311, VG_MQTT_AUTH, NULL, 0, &reason, &pr), VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V31, VG_MQTT_AUTH, BYTES(0x18, 4, 0x15, 0, 1, 'm'), &reason, &pr),
              VG_EMALFORMED);
    VT_EQ_INT(vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V311, VG_MQTT_AUTH, 0x18, &ap), VG_EINVAL);
    /* Framing accepts type 15 with flags 0 only. */
    uint8_t t, f;
    size_t hl, rl;
    VT_EQ_INT(vg_mqtt_frame(BYTES(0xF0, 0x00), BIG, &t, &f, &hl, &rl), VG_OK);
    VT_EQ_INT(t, VG_MQTT_AUTH);
    VT_EQ_INT(vg_mqtt_frame(BYTES(0xF1, 0x00), BIG, &t, &f, &hl, &rl), VG_EMALFORMED);
}

static void test_v5_user_props(void)
{
    /* Interleaved with other properties, as a sender may order them: the
     * iterator yields the user properties in order and skips the rest. */
    buf_t props = {.n = 0}, body = {.n = 0};
    prop_pair(&props, "a", "1");
    prop_str(&props, 0x1F, "why");
    prop_pair(&props, "b", "");
    prop_u32(&props, 0x11, 7);
    prop_pair(&props, "a", "3"); /* keys may repeat (v5 §3.1.2.11.8) */
    prop_str(&props, 0x1C, "srv");
    put_u8(&body, 0x8B);
    put_block(&body, &props);
    vg_mqtt_props_t pr;
    uint8_t reason;
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, body.b, body.n, &reason, &pr), VG_OK);
    VT_EQ_INT(pr.user_prop_count, 3);
    VT_EQ_INT(pr.user_props.len, 31); /* first to last, others included */
    VT_CHECK(pr.present & PB(USER));
    VT_CHECK(bytes_eq(pr.reason_string, "why") && pr.session_expiry == 7 && bytes_eq(pr.server_reference, "srv"));
    static const char *const want[][2] = {{"a", "1"}, {"b", ""}, {"a", "3"}};
    size_t pos = 0, i = 0;
    vg_bytes_t k, v;
    while (vg_mqtt_user_props_next(&pr, &pos, &k, &v)) {
        VT_REQUIRE(i < 3);
        VT_CHECK(bytes_eq(k, want[i][0]) && bytes_eq(v, want[i][1]));
        i++;
    }
    VT_EQ_INT(i, 3);
    VT_CHECK(!vg_mqtt_user_props_next(&pr, &pos, &k, &v)); /* stays at the end */

    /* Re-encoding writes the user properties together, after the others,
     * and takes exactly the size props_size says. */
    uint8_t pkt[256];
    const uint8_t *b2;
    size_t len;
    int n = vg_mqtt_encode_reason(pkt, sizeof(pkt), VG_MQTT_V5, VG_MQTT_DISCONNECT, reason, &pr);
    VT_REQUIRE(frame_one(pkt, (size_t)n, VG_MQTT_DISCONNECT, 0, &b2, &len));
    VT_EQ_INT(len, body.n);
    VT_EQ_INT(len, 1 + vg_mqtt_props_size(&pr));
    static const uint8_t reordered[] = {0x8B, 37, 0x11, 0,   0,   0,   7,    0x1C, 0, 3,   's', 'r', 'v',
                                        0x1F, 0,  3,    'w', 'h', 'y', 0x26, 0,    1, 'a', 0,   1,   '1',
                                        0x26, 0,  1,    'b', 0,   0,   0x26, 0,    1, 'a', 0,   1,   '3'};
    VT_CHECK(len == sizeof(reordered) && memcmp(b2, reordered, len) == 0);
    vg_mqtt_props_t pr2;
    VT_EQ_INT(vg_mqtt_decode_reason(VG_MQTT_V5, VG_MQTT_DISCONNECT, b2, len, &reason, &pr2), VG_OK);
    VT_CHECK(same_props(&pr, &pr2));
    VT_EQ_INT(pr2.user_props.len, 20); /* contiguous now */

    /* Packed, the interleaved run is the user entries alone, in order; an
     * already pure run packs to itself. */
    uint8_t packed[64];
    VT_EQ_INT(vg_mqtt_user_props_pack(&pr, packed, sizeof(packed)), 20);
    VT_CHECK(memcmp(packed, reordered + 19, 20) == 0);
    VT_EQ_INT(vg_mqtt_user_props_pack(&pr, packed, 19), VG_ENOSPC);
    VT_EQ_INT(vg_mqtt_user_props_pack(&pr2, packed, sizeof(packed)), 20);
    VT_CHECK(memcmp(packed, pr2.user_props.p, 20) == 0);

    /* Only user properties: the run is passed through as it is. */
    vg_mqtt_props_t run = {.user_props = USER_RUN};
    VT_EQ_INT(vg_mqtt_props_size(&run), 1 + sizeof(user_run));
    pos = 0;
    VT_CHECK(vg_mqtt_user_props_next(&run, &pos, &k, &v) && bytes_eq(k, "key") && bytes_eq(v, "value"));
    VT_CHECK(vg_mqtt_user_props_next(&run, &pos, &k, &v) && bytes_eq(k, "") && bytes_eq(v, "\xc3\xa9"));
    VT_CHECK(!vg_mqtt_user_props_next(&run, &pos, &k, &v));
    /* Nothing to iterate. */
    vg_mqtt_props_t none = {0};
    pos = 0;
    VT_CHECK(!vg_mqtt_user_props_next(&none, &pos, &k, &v));
    VT_EQ_INT(vg_mqtt_user_props_pack(&none, NULL, 0), 0);
    /* A run that does not parse stops the iterator for good. */
    vg_mqtt_props_t broken = {.user_props = {(const uint8_t *)"\x26\x00\x01k\x00\x01v\x26\x00\x09", 10}};
    pos = 0;
    VT_CHECK(vg_mqtt_user_props_next(&broken, &pos, &k, &v));
    VT_CHECK(!vg_mqtt_user_props_next(&broken, &pos, &k, &v));
    VT_CHECK(!vg_mqtt_user_props_next(&broken, &pos, &k, &v));
    VT_EQ_INT(vg_mqtt_props_size(&broken), 0);
    VT_EQ_INT(vg_mqtt_user_props_pack(&broken, packed, sizeof(packed)), VG_EINVAL);
}

static void test_shared_split(void)
{
    static const struct {
        const char *f;
        int want;
        const char *group, *inner;
    } cases[] = {
        {"$share/g/a/b", 1, "g", "a/b"},
        {"$share/group-1/#", 1, "group-1", "#"},
        {"$share/g/+/x/#", 1, "g", "+/x/#"},
        {"$share/caf\xc3\xa9/$SYS/#", 1, "caf\xc3\xa9", "$SYS/#"},
        {"$share/g//", 1, "g", "/"},
        {"a/b", 0, NULL, NULL},
        {"$share", 0, NULL, NULL},
        {"$shar/g/a", 0, NULL, NULL},
        {"$SHARE/g/a", 0, NULL, NULL},
        {"share/g/a", 0, NULL, NULL},
        {"$share/", VG_EMALFORMED, NULL, NULL},
        {"$share//a", VG_EMALFORMED, NULL, NULL},
        {"$share/g", VG_EMALFORMED, NULL, NULL},
        {"$share/g/", VG_EMALFORMED, NULL, NULL},
        {"$share/+/a", VG_EMALFORMED, NULL, NULL},
        {"$share/#/a", VG_EMALFORMED, NULL, NULL},
        {"$share/g+/a", VG_EMALFORMED, NULL, NULL},
        {"$share/g/a#", VG_EMALFORMED, NULL, NULL},
        {"$share/g/#/a", VG_EMALFORMED, NULL, NULL},
        {"$share/\xc0\x80/a", VG_EMALFORMED, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vg_bytes_t g = {NULL, 99}, in = {NULL, 99};
        int rc = vg_mqtt_shared_split((const uint8_t *)cases[i].f, strlen(cases[i].f), &g, &in);
        if (rc != cases[i].want)
            printf("  \"%s\": %d\n", cases[i].f, rc);
        VT_EQ_INT(rc, cases[i].want);
        if (rc == 1)
            VT_CHECK(bytes_eq(g, cases[i].group) && bytes_eq(in, cases[i].inner));
    }
    VT_EQ_INT(vg_mqtt_shared_split(NULL, 0, NULL, NULL), 0);
}

static void test_reason_name(void)
{
    VT_CHECK(strcmp(vg_mqtt_reason_name(VG_RC_RECEIVE_MAX_EXCEEDED), "Receive Maximum exceeded") == 0);
    VT_CHECK(strcmp(vg_mqtt_reason_name(VG_RC_SUCCESS), "Success") == 0);
    VT_CHECK(strcmp(vg_mqtt_reason_name(0x03), "?") == 0);
    VT_CHECK(strcmp(vg_mqtt_reason_name(0xFF), "?") == 0);
    /* Every code any packet may carry has a name. */
    for (unsigned rc = 0; rc < 256; rc++) {
        bool used = memchr(disconnect_codes, (int)rc, sizeof(disconnect_codes)) || suback_reason_allowed(9, rc) ||
                    suback_reason_allowed(11, rc) || ack_reason_allowed(4, rc) || ack_reason_allowed(6, rc) ||
                    rc == 0x18 || rc == 0x19 || (rc >= 0x84 && rc <= 0x8A);
        VT_EQ_INT(strcmp(vg_mqtt_reason_name((uint8_t)rc), "?") != 0, used);
    }
}

/* One of the 5.0 encoders, picked by k, into out[0..cap). */
static int encode_some(int k, uint8_t *out, size_t cap)
{
    static const vg_mqtt_props_t pr = {
        .present = PB(REASON_STRING), .reason_string = {(const uint8_t *)"r", 1}, .user_props = USER_RUN};
    static const vg_mqtt_props_t ap = {.present = PB(AUTH_METHOD), .auth_method = {(const uint8_t *)"m", 1}};
    static const vg_mqtt_props_t sid = {.sub_ids = {200}, .sub_id_count = 1};
    static const vg_mqtt_connect_t c = {.protocol_level = 5,
                                        .client_id = {(const uint8_t *)"id", 2},
                                        .will_flag = true,
                                        .will_topic = {(const uint8_t *)"w", 1},
                                        .will_props = {.user_props = USER_RUN},
                                        .props = {.user_props = USER_RUN}};
    static const vg_mqtt_publish_t p = {.qos = 1,
                                        .topic = {(const uint8_t *)"t", 1},
                                        .packet_id = 3,
                                        .payload = {(const uint8_t *)"x", 1},
                                        .props = {.sub_ids = {200}, .sub_id_count = 1}};
    static const vg_mqtt_sub_t subs[] = {{.filter = {(const uint8_t *)"a/+", 3}, .qos = 1, .no_local = true}};
    static const uint8_t rc0 = 0;
    switch (k) {
    case 0:
        return vg_mqtt_encode_connect(out, cap, &c);
    case 1:
        return vg_mqtt_encode_connack(out, cap, VG_MQTT_V5, false, 0, &pr);
    case 2:
        return vg_mqtt_encode_publish(out, cap, VG_MQTT_V5, &p);
    case 3:
        return vg_mqtt_encode_ack(out, cap, VG_MQTT_V5, VG_MQTT_PUBREC, 1, 0x10, &pr);
    case 4:
        return vg_mqtt_encode_ack(out, cap, VG_MQTT_V5, VG_MQTT_PUBREL, 1, 0x92, NULL);
    case 5:
        return vg_mqtt_encode_subscribe(out, cap, VG_MQTT_V5, 1, &sid, subs, 1);
    case 6:
        return vg_mqtt_encode_unsubscribe(out, cap, VG_MQTT_V5, 1, NULL, subs, 1);
    case 7:
        return vg_mqtt_encode_suback(out, cap, VG_MQTT_V5, VG_MQTT_UNSUBACK, 1, &pr, &rc0, 1);
    case 8:
        return vg_mqtt_encode_reason(out, cap, VG_MQTT_V5, VG_MQTT_AUTH, 0x18, &ap);
    default:
        return vg_mqtt_encode_reason(out, cap, VG_MQTT_V5, VG_MQTT_DISCONNECT, 0x8E, NULL);
    }
}

static void test_v5_enospc(void)
{
    /* Every 5.0 encoder takes exactly its length and refuses every buffer
     * shorter than that, writing nothing then. */
    uint8_t out[512];
    for (int k = 0; k < 10; k++) {
        int need = encode_some(k, out, sizeof(out));
        VT_REQUIRE(need > 0);
        VT_EQ_INT(encode_some(k, out, (size_t)need), need);
        for (size_t cap = 0; cap < (size_t)need; cap++) {
            memset(out, 0x55, sizeof(out));
            VT_EQ_INT(encode_some(k, out, cap), VG_ENOSPC);
            VT_EQ_INT(out[0], 0x55);
        }
    }
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
    VT_CHECK(strcmp(vg_mqtt_type_name(VG_MQTT_AUTH), "AUTH") == 0);
    VT_CHECK(strcmp(vg_mqtt_type_name(16), "?") == 0);
    VT_CHECK(strcmp(vg_mqtt_type_name(255), "?") == 0);
    for (uint8_t t = 1; t <= 15; t++)
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
    VT_RUN(test_v5_property_matrix);
    VT_RUN(test_v5_property_values);
    VT_RUN(test_v5_property_length);
    VT_RUN(test_v5_connect);
    VT_RUN(test_v5_connack);
    VT_RUN(test_v5_publish);
    VT_RUN(test_v5_publish_size);
    VT_RUN(test_v5_props_size);
    VT_RUN(test_v5_acks);
    VT_RUN(test_v5_subscribe);
    VT_RUN(test_v5_suback);
    VT_RUN(test_v5_disconnect);
    VT_RUN(test_v5_auth);
    VT_RUN(test_v5_user_props);
    VT_RUN(test_v5_enospc);
    VT_RUN(test_shared_split);
    VT_RUN(test_reason_name);
    return VT_DONE();
}
