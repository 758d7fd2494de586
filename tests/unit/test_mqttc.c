/* test_mqttc.c — the MQTT client module over a socketpair: the test plays
 * the server on the other end with the codec. */
#include "core/err.h"
#include "mqtt/codec.h"
#include "mqttc/client.h"
#include "vt.h"

#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#define NS 1000000000ull

static uint8_t scratch[65536];

/* What the callbacks saw. */
typedef struct {
    int connacks, closes, stray, subacks, messages;
    int why, detail;
    uint32_t ack_tags[64];
    uint64_t ack_lat[64];
    uint8_t ack_type[64], ack_reason[64];
    int acks;
    uint8_t suback_rc[8];
    size_t suback_n;
    char msg_topic[64];
    uint8_t msg_qos;
    size_t msg_len;
    bool close_deinit; /* on_close frees the client */
    uint32_t slot_tag[64]; /* the test's tag of each ring slot (a caller's parallel array) */
} seen_t;

static seen_t S;

static void cb_connack(vg_mqttc_t *c, bool sp, const vg_mqtt_props_t *props)
{
    S.connacks++;
}

static void cb_close(vg_mqttc_t *c, vg_mqttc_reason_t why, int detail)
{
    S.closes++;
    S.why = (int)why;
    S.detail = detail;
    if (S.close_deinit)
        vg_mqttc_deinit(c);
}

static void cb_ack(vg_mqttc_t *c, const vg_mqttc_ack_t *a)
{
    if (S.acks < 64) {
        S.ack_tags[S.acks] = S.slot_tag[a->slot];
        S.ack_lat[S.acks] = a->latency_us;
        S.ack_type[S.acks] = a->type;
        S.ack_reason[S.acks] = a->reason;
    }
    S.acks++;
}

static void cb_stray(vg_mqttc_t *c, uint8_t type, uint16_t pid)
{
    S.stray++;
}

static void cb_suback(vg_mqttc_t *c, uint16_t pid, const uint8_t *rcs, size_t n)
{
    S.subacks++;
    S.suback_n = n < 8 ? n : 8;
    memcpy(S.suback_rc, rcs, S.suback_n);
}

static void cb_message(vg_mqttc_t *c, const vg_mqtt_publish_t *m)
{
    S.messages++;
    S.msg_qos = m->qos;
    S.msg_len = m->payload.len;
    size_t n = m->topic.len < 63 ? m->topic.len : 63;
    memcpy(S.msg_topic, m->topic.p, n);
    S.msg_topic[n] = 0;
}

static vg_mqttc_cfg_t make_cfg(uint8_t level, uint16_t keepalive)
{
    return (vg_mqttc_cfg_t){
        .level = level,
        .keepalive_s = keepalive,
        .connect_timeout_ns = 10 * NS,
        .max_packet = 4096,
        .scratch = scratch,
        .scratch_len = sizeof scratch,
        .on_connack = cb_connack,
        .on_suback = cb_suback,
        .on_message = cb_message,
        .on_ack = cb_ack,
        .on_stray_ack = cb_stray,
        .on_close = cb_close,
    };
}

/* The server end: reads every packet the client wrote so far. */
typedef struct {
    uint8_t type, flags;
    uint8_t body[512];
    size_t len;
} pkt_t;

static size_t srv_read(int fd, pkt_t *out, size_t cap)
{
    static uint8_t buf[65536];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 2000) != 1) /* nothing written: fail instead of hanging */
        return 0;
    ssize_t r = read(fd, buf, sizeof buf);
    if (r <= 0)
        return 0;
    size_t off = 0, n = 0;
    while (off < (size_t)r && n < cap) {
        size_t hl, rl;
        if (vg_mqtt_frame(buf + off, (size_t)r - off, sizeof buf, &out[n].type, &out[n].flags, &hl, &rl) != VG_OK)
            break;
        out[n].len = rl < sizeof out[n].body ? rl : sizeof out[n].body;
        memcpy(out[n].body, buf + off + hl, out[n].len);
        off += hl + rl;
        n++;
    }
    return n;
}

static void srv_write(int fd, const uint8_t *p, size_t n)
{
    VT_CHECK(write(fd, p, n) == (ssize_t)n);
}

static void srv_ack(int fd, uint8_t level, uint8_t type, uint16_t pid, uint8_t reason)
{
    uint8_t b[8];
    int n = vg_mqtt_encode_ack(b, sizeof b, level, type, pid, reason, NULL);
    srv_write(fd, b, (size_t)n);
}

static void srv_connack(int fd, uint8_t level, uint8_t rc, const vg_mqtt_props_t *props)
{
    uint8_t b[64];
    int n = vg_mqtt_encode_connack(b, sizeof b, level, false, rc, props);
    srv_write(fd, b, (size_t)n);
}

/* A socketpair, client end non-blocking. */
static void pair(int sv[2])
{
    VT_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
}

/* Starts c on sv[0] and completes the handshake; returns with c up. */
static void connect_up(vg_mqttc_t *c, int sv[2], uint8_t level, uint64_t now)
{
    VT_EQ_INT(vg_mqttc_start(c, sv[0], false, "dev-1", 5, now), VG_OK);
    VT_EQ_INT(vg_mqttc_flush(c), VG_OK);
    pkt_t p[4];
    VT_EQ_INT(srv_read(sv[1], p, 4), 1);
    VT_EQ_INT(p[0].type, VG_MQTT_CONNECT);
    vg_mqtt_connect_t cc;
    uint8_t rc;
    VT_EQ_INT(vg_mqtt_decode_connect(p[0].body, p[0].len, &cc, &rc), VG_OK);
    VT_EQ_INT(cc.protocol_level, level);
    VT_CHECK(cc.client_id.len == 5 && memcmp(cc.client_id.p, "dev-1", 5) == 0);
    srv_connack(sv[1], level, 0, NULL);
    VT_EQ_INT(vg_mqttc_on_readable(c, now), VG_OK);
    VT_EQ_INT(vg_mqttc_state(c), VG_MQTTC_UP);
}

/* Publishes m, remembering tag for its ring slot as a caller would. */
static int publish(vg_mqttc_t *c, const vg_mqtt_publish_t *m, uint32_t tag, uint64_t now)
{
    uint16_t slot = vg_mqttc_next_slot(c);
    int rc = vg_mqttc_publish(c, m, now);
    if (rc == VG_OK && m->qos)
        S.slot_tag[slot] = tag;
    return rc;
}

/* The fixture: a client on one end of a socketpair, the test on the other. */
typedef struct {
    vg_mqttc_cfg_t cfg;
    vg_mqttc_t c;
    int sv[2];
} fx_t;

static fx_t F;

static void fx_open(fx_t *f, uint8_t level, uint16_t keepalive, vg_mqttc_flight_t *ring, uint16_t cap)
{
    memset(&S, 0, sizeof S);
    f->cfg = make_cfg(level, keepalive);
    pair(f->sv);
    vg_mqttc_init(&f->c, &f->cfg, ring, cap);
}

static void fx_close(fx_t *f)
{
    vg_mqttc_deinit(&f->c);
    close(f->sv[0]);
    if (f->sv[1] >= 0)
        close(f->sv[1]);
}

static vg_mqtt_publish_t msg(uint8_t qos)
{
    static const char topic[] = "t/1", payload[] = "hello";
    return (vg_mqtt_publish_t){
        .qos = qos, .topic = {(const uint8_t *)topic, 3}, .payload = {(const uint8_t *)payload, 5}};
}

static void test_connack(void)
{
    fx_open(&F, VG_MQTT_V311, 60, NULL, 0);
    connect_up(&F.c, F.sv, VG_MQTT_V311, 1 * NS);
    VT_EQ_INT(S.connacks, 1);
    VT_EQ_INT(S.closes, 0);
    /* A second CONNACK is a protocol violation. */
    srv_connack(F.sv[1], VG_MQTT_V311, 0, NULL);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 2 * NS), VG_EPROTO);
    VT_EQ_INT(S.why, VG_MQTTC_R_PROTOCOL);
    VT_EQ_INT(S.detail, VG_MQTT_CONNACK);
    fx_close(&F);
}

static void test_connack_refused(void)
{
    fx_open(&F, VG_MQTT_V5, 60, NULL, 0);
    VT_EQ_INT(vg_mqttc_start(&F.c, F.sv[0], false, "x", 1, 0), VG_OK);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    pkt_t p[2];
    VT_EQ_INT(srv_read(F.sv[1], p, 2), 1);
    srv_connack(F.sv[1], VG_MQTT_V5, VG_RC_NOT_AUTHORIZED, NULL);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 0), VG_EPROTO);
    VT_EQ_INT(vg_mqttc_state(&F.c), VG_MQTTC_CLOSED);
    VT_EQ_INT(S.why, VG_MQTTC_R_REFUSED);
    VT_EQ_INT(S.detail, VG_RC_NOT_AUTHORIZED);
    VT_EQ_INT(S.connacks, 0);
    VT_EQ_INT(S.closes, 1);
    vg_mqttc_close(&F.c); /* closing again: no second callback */
    VT_EQ_INT(S.closes, 1);
    fx_close(&F);
}

static void test_inorder_acks(void)
{
    vg_mqttc_flight_t ring[4];
    fx_open(&F, VG_MQTT_V311, 0, ring, 4);
    connect_up(&F.c, F.sv, VG_MQTT_V311, 0);
    vg_mqtt_publish_t m = msg(1);
    for (uint32_t k = 0; k < 4; k++)
        VT_EQ_INT(publish(&F.c, &m, 100 + k, (uint64_t)(k + 1) * 1000000), VG_OK);
    VT_EQ_INT(publish(&F.c, &m, 999, 5000000), VG_AGAIN); /* ring full */
    VT_EQ_INT(vg_mqttc_inflight(&F.c), 4);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    pkt_t p[8];
    VT_EQ_INT(srv_read(F.sv[1], p, 8), 4);
    uint16_t pids[4];
    for (int k = 0; k < 4; k++) {
        vg_mqtt_publish_t d;
        VT_EQ_INT(p[k].type, VG_MQTT_PUBLISH);
        VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, p[k].flags, p[k].body, p[k].len, &d), VG_OK);
        pids[k] = d.packet_id;
        VT_EQ_INT(d.qos, 1);
    }
    VT_CHECK(pids[0] == 1 && pids[1] == 2 && pids[2] == 3 && pids[3] == 4);
    /* In order: the first two. */
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBACK, pids[0], 0);
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBACK, pids[1], 0);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 10000000), VG_OK);
    VT_EQ_INT(S.acks, 2);
    VT_EQ_INT(S.ack_tags[0], 100);
    VT_EQ_INT(S.ack_tags[1], 101);
    VT_EQ_INT(S.ack_lat[0], 9000); /* 10 ms - 1 ms */
    VT_EQ_INT(S.ack_lat[1], 8000);
    VT_EQ_INT(vg_mqttc_inflight(&F.c), 2);
    /* Room again: the ring wraps. */
    VT_EQ_INT(publish(&F.c, &m, 104, 11000000), VG_OK);
    /* Out of order (pid 4 before 3) is accepted; a duplicate is a stray. */
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBACK, pids[3], 0);
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBACK, pids[3], 0);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 12000000), VG_OK);
    VT_EQ_INT(S.acks, 3);
    VT_EQ_INT(S.ack_tags[2], 103);
    VT_EQ_INT(S.stray, 1);
    VT_EQ_INT(vg_mqttc_inflight(&F.c), 3); /* 102 still at the head holds the slots */
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBACK, pids[2], 0);
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBACK, 5, 0);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 13000000), VG_OK);
    VT_EQ_INT(S.acks, 5);
    VT_EQ_INT(S.ack_tags[3], 102);
    VT_EQ_INT(S.ack_tags[4], 104);
    VT_EQ_INT(vg_mqttc_inflight(&F.c), 0);
    /* Forgotten publishes: their acks are strays. */
    VT_EQ_INT(publish(&F.c, &m, 105, 14000000), VG_OK);
    VT_EQ_INT(vg_mqttc_forget(&F.c), 1);
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBACK, 6, 0);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 15000000), VG_OK);
    VT_EQ_INT(S.stray, 2);
    VT_EQ_INT(S.acks, 5);
    /* PUBCOMP for a QoS 1 publish: closed as a protocol violation. */
    VT_EQ_INT(publish(&F.c, &m, 106, 16000000), VG_OK);
    srv_ack(F.sv[1], VG_MQTT_V311, VG_MQTT_PUBCOMP, 7, 0);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 17000000), VG_EPROTO);
    VT_EQ_INT(S.why, VG_MQTTC_R_PROTOCOL);
    fx_close(&F);
}

static void test_qos2(void)
{
    vg_mqttc_flight_t ring[8];
    fx_open(&F, VG_MQTT_V5, 0, ring, 8);
    connect_up(&F.c, F.sv, VG_MQTT_V5, 0);
    vg_mqtt_publish_t m = msg(2);
    VT_EQ_INT(publish(&F.c, &m, 7, 1000), VG_OK);
    VT_EQ_INT(publish(&F.c, &m, 8, 1000), VG_OK);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    pkt_t p[8];
    VT_EQ_INT(srv_read(F.sv[1], p, 8), 2);
    /* PUBREC -> the client answers PUBREL; PUBCOMP ends it. */
    srv_ack(F.sv[1], VG_MQTT_V5, VG_MQTT_PUBREC, 1, 0);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 2000), VG_OK);
    VT_EQ_INT(S.acks, 0);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    VT_EQ_INT(srv_read(F.sv[1], p, 8), 1);
    VT_EQ_INT(p[0].type, VG_MQTT_PUBREL);
    vg_mqtt_ack_t a;
    VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, VG_MQTT_PUBREL, p[0].body, p[0].len, &a), VG_OK);
    VT_EQ_INT(a.packet_id, 1);
    srv_ack(F.sv[1], VG_MQTT_V5, VG_MQTT_PUBCOMP, 1, 0);
    /* A refused PUBREC (5.0 reason >= 0x80) ends the second one. */
    srv_ack(F.sv[1], VG_MQTT_V5, VG_MQTT_PUBREC, 2, VG_RC_QUOTA_EXCEEDED);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 3000), VG_OK);
    VT_EQ_INT(S.acks, 2);
    VT_EQ_INT(S.ack_type[0], VG_MQTT_PUBCOMP);
    VT_EQ_INT(S.ack_tags[0], 7);
    VT_EQ_INT(S.ack_type[1], VG_MQTT_PUBREC);
    VT_EQ_INT(S.ack_reason[1], VG_RC_QUOTA_EXCEEDED);
    VT_EQ_INT(vg_mqttc_inflight(&F.c), 0);
    VT_EQ_INT(vg_mqttc_pending(&F.c), 0);
    /* Inbound QoS 2: delivered on PUBLISH with PUBREC; PUBREL -> PUBCOMP. */
    uint8_t b[64];
    vg_mqtt_publish_t in = msg(2);
    in.packet_id = 42;
    int n = vg_mqtt_encode_publish(b, sizeof b, VG_MQTT_V5, &in);
    srv_write(F.sv[1], b, (size_t)n);
    srv_ack(F.sv[1], VG_MQTT_V5, VG_MQTT_PUBREL, 42, 0);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 4000), VG_OK);
    VT_EQ_INT(S.messages, 1);
    VT_EQ_INT(S.msg_qos, 2);
    VT_CHECK(strcmp(S.msg_topic, "t/1") == 0);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    VT_EQ_INT(srv_read(F.sv[1], p, 8), 2);
    VT_EQ_INT(p[0].type, VG_MQTT_PUBREC);
    VT_EQ_INT(p[1].type, VG_MQTT_PUBCOMP);
    VT_EQ_INT(vg_mqtt_decode_ack(VG_MQTT_V5, VG_MQTT_PUBCOMP, p[1].body, p[1].len, &a), VG_OK);
    VT_EQ_INT(a.packet_id, 42);
    fx_close(&F);
}

static void test_inbound_qos1_and_split_reads(void)
{
    fx_open(&F, VG_MQTT_V311, 0, NULL, 0);
    connect_up(&F.c, F.sv, VG_MQTT_V311, 0);
    /* Three PUBLISHes (one with a 300-byte payload) and a PINGRESP, fed a
     * byte at a time: every packet is cut, short ones in the carry, the
     * long one in the heap buffer. */
    uint8_t b[1024], big[300];
    memset(big, 'x', sizeof big);
    size_t len = 0;
    for (int k = 0; k < 3; k++) {
        vg_mqtt_publish_t in = msg(1);
        in.packet_id = (uint16_t)(10 + k);
        if (k == 1)
            in.payload = (vg_bytes_t){big, sizeof big};
        len += (size_t)vg_mqtt_encode_publish(b + len, sizeof b - len, VG_MQTT_V311, &in);
    }
    len += (size_t)vg_mqtt_encode_empty(b + len, sizeof b - len, VG_MQTT_PINGRESP);
    for (size_t k = 0; k < len; k++)
        VT_EQ_INT(vg_mqttc_input(&F.c, b + k, 1, 0), VG_OK);
    VT_EQ_INT(S.messages, 3);
    VT_EQ_INT(S.msg_len, 5);
    /* The same again in two uneven pieces. */
    VT_EQ_INT(vg_mqttc_input(&F.c, b, 17, 0), VG_OK);
    VT_EQ_INT(vg_mqttc_input(&F.c, b + 17, len - 17, 0), VG_OK);
    VT_EQ_INT(S.messages, 6);
    /* Six PUBACKs, in order. */
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    pkt_t p[8];
    VT_EQ_INT(srv_read(F.sv[1], p, 8), 6);
    for (int k = 0; k < 6; k++) {
        uint16_t pid;
        VT_EQ_INT(p[k].type, VG_MQTT_PUBACK);
        VT_EQ_INT(vg_mqtt_decode_packet_id(p[k].body, p[k].len, &pid), VG_OK);
        VT_EQ_INT(pid, 10 + k % 3);
    }
    fx_close(&F);
}

static void test_subscribe(void)
{
    fx_open(&F, VG_MQTT_V311, 0, NULL, 0);
    vg_mqtt_sub_t sub = {.filter = {(const uint8_t *)"alerts/#", 8}, .qos = 1};
    VT_EQ_INT(vg_mqttc_subscribe(&F.c, &sub, 1, NULL, NULL, 0), VG_EINVAL); /* not up */
    connect_up(&F.c, F.sv, VG_MQTT_V311, 0);
    uint16_t pid;
    VT_EQ_INT(vg_mqttc_subscribe(&F.c, &sub, 1, NULL, &pid, 0), VG_OK);
    VT_EQ_INT(vg_mqttc_subs_pending(&F.c), 1);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    pkt_t p[2];
    VT_EQ_INT(srv_read(F.sv[1], p, 2), 1);
    VT_EQ_INT(p[0].type, VG_MQTT_SUBSCRIBE);
    uint8_t rc = 1, b[16];
    int n = vg_mqtt_encode_suback(b, sizeof b, VG_MQTT_V311, VG_MQTT_SUBACK, pid, NULL, &rc, 1);
    srv_write(F.sv[1], b, (size_t)n);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 0), VG_OK);
    VT_EQ_INT(S.subacks, 1);
    VT_EQ_INT(S.suback_n, 1);
    VT_EQ_INT(S.suback_rc[0], 1);
    VT_EQ_INT(vg_mqttc_subs_pending(&F.c), 0);
    /* A SUBACK nobody asked for. */
    srv_write(F.sv[1], b, (size_t)n);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 0), VG_EPROTO);
    VT_EQ_INT(S.why, VG_MQTTC_R_PROTOCOL);
    fx_close(&F);
}

static void test_keepalive(void)
{
    fx_open(&F, VG_MQTT_V311, 60, NULL, 0);
    VT_EQ_INT(vg_mqttc_start(&F.c, F.sv[0], false, "k", 1, 100 * NS), VG_OK);
    VT_EQ_INT(vg_mqttc_due(&F.c), 110 * NS); /* the handshake deadline */
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    pkt_t p[4];
    VT_EQ_INT(srv_read(F.sv[1], p, 4), 1);
    vg_mqtt_connect_t cc;
    uint8_t crc;
    VT_EQ_INT(vg_mqtt_decode_connect(p[0].body, p[0].len, &cc, &crc), VG_OK);
    VT_EQ_INT(cc.keepalive, 60);
    srv_connack(F.sv[1], VG_MQTT_V311, 0, NULL);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 100 * NS), VG_OK);
    /* Half the keepalive after the CONNACK, then after the last output. */
    VT_EQ_INT(vg_mqttc_due(&F.c), 130 * NS);
    VT_EQ_INT(vg_mqttc_tick(&F.c, 129 * NS), VG_OK);
    VT_EQ_INT(vg_mqttc_pending(&F.c), 0);
    VT_EQ_INT(vg_mqttc_tick(&F.c, 130 * NS), VG_OK);
    VT_EQ_INT(vg_mqttc_pending(&F.c), 2);
    VT_EQ_INT(vg_mqttc_due(&F.c), 160 * NS);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    VT_EQ_INT(srv_read(F.sv[1], p, 4), 1);
    VT_EQ_INT(p[0].type, VG_MQTT_PINGREQ);
    /* Output of any kind postpones the ping. */
    vg_mqtt_publish_t m = msg(0);
    VT_EQ_INT(publish(&F.c, &m, 0, 150 * NS), VG_OK);
    VT_EQ_INT(vg_mqttc_due(&F.c), 180 * NS);
    fx_close(&F);

    /* 5.0: the server's keepalive wins; Receive Maximum narrows the window. */
    vg_mqttc_flight_t ring[16];
    fx_open(&F, VG_MQTT_V5, 60, ring, 16);
    VT_EQ_INT(vg_mqttc_start(&F.c, F.sv[0], false, "k", 1, 0), VG_OK);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    VT_EQ_INT(srv_read(F.sv[1], p, 4), 1);
    vg_mqtt_props_t props = {.present = VG_PROP_BIT(VG_PROP_SERVER_KEEPALIVE) | VG_PROP_BIT(VG_PROP_RECEIVE_MAX),
                             .server_keepalive = 10,
                             .receive_max = 2};
    srv_connack(F.sv[1], VG_MQTT_V5, 0, &props);
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 1 * NS), VG_OK);
    VT_EQ_INT(vg_mqttc_due(&F.c), 6 * NS); /* CONNACK at 1 s + 10 s / 2 */
    m = msg(1);
    VT_EQ_INT(publish(&F.c, &m, 0, 1 * NS), VG_OK);
    VT_EQ_INT(publish(&F.c, &m, 0, 1 * NS), VG_OK);
    VT_EQ_INT(publish(&F.c, &m, 0, 1 * NS), VG_AGAIN);
    fx_close(&F);
}

static void test_handshake_timeout(void)
{
    fx_open(&F, VG_MQTT_V311, 60, NULL, 0);
    VT_EQ_INT(vg_mqttc_start(&F.c, F.sv[0], false, "t", 1, 0), VG_OK);
    VT_EQ_INT(vg_mqttc_tick(&F.c, 9 * NS), VG_OK);
    VT_EQ_INT(vg_mqttc_tick(&F.c, 10 * NS), VG_EIO);
    VT_EQ_INT(S.why, VG_MQTTC_R_TIMEOUT);
    VT_EQ_INT(vg_mqttc_due(&F.c), UINT64_MAX);
    fx_close(&F);
}

/* Feeds bytes to a fresh client that is up; returns the close reason. */
static int closes_with(const uint8_t *b, size_t n, bool before_connack, int *rc)
{
    fx_open(&F, VG_MQTT_V311, 0, NULL, 0);
    if (before_connack)
        VT_EQ_INT(vg_mqttc_start(&F.c, F.sv[0], false, "m", 1, 0), VG_OK);
    else
        connect_up(&F.c, F.sv, VG_MQTT_V311, 0);
    srv_write(F.sv[1], b, n);
    *rc = vg_mqttc_on_readable(&F.c, 0);
    int why = vg_mqttc_state(&F.c) == VG_MQTTC_CLOSED ? (int)vg_mqttc_reason(&F.c) : -1;
    VT_CHECK(why < 0 || (S.closes == 1 && S.why == why));
    fx_close(&F);
    return why;
}

static void test_malformed_closes(void)
{
    int rc;
    static const uint8_t type0[] = {0x00, 0x00};
    VT_EQ_INT(closes_with(type0, sizeof type0, false, &rc), VG_MQTTC_R_MALFORMED);
    VT_EQ_INT(rc, VG_EMALFORMED);
    static const uint8_t longlen[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x01};
    VT_EQ_INT(closes_with(longlen, sizeof longlen, false, &rc), VG_MQTTC_R_MALFORMED);
    static const uint8_t big[] = {0x30, 0x80, 0x40}; /* 8192 bytes > max_packet 4096 */
    VT_EQ_INT(closes_with(big, sizeof big, false, &rc), VG_MQTTC_R_TOO_BIG);
    VT_EQ_INT(rc, VG_ETOOBIG);
    static const uint8_t badack[] = {0x40, 0x02, 0x00, 0x00}; /* packet id 0 */
    VT_EQ_INT(closes_with(badack, sizeof badack, false, &rc), VG_MQTTC_R_MALFORMED);
    static const uint8_t badpub[] = {0x30, 0x03, 0x00, 0x01, '#'}; /* wildcard in a topic name */
    VT_EQ_INT(closes_with(badpub, sizeof badpub, false, &rc), VG_MQTTC_R_MALFORMED);
    static const uint8_t early[] = {0x30, 0x04, 0x00, 0x01, 't', 'x'}; /* PUBLISH before CONNACK */
    VT_EQ_INT(closes_with(early, sizeof early, true, &rc), VG_MQTTC_R_PROTOCOL);
    VT_EQ_INT(rc, VG_EPROTO);
    static const uint8_t pingreq[] = {0xc0, 0x00}; /* a server never sends PINGREQ */
    VT_EQ_INT(closes_with(pingreq, sizeof pingreq, false, &rc), VG_MQTTC_R_PROTOCOL);
    static const uint8_t bye[] = {0xe0, 0x00};
    VT_EQ_INT(closes_with(bye, sizeof bye, false, &rc), VG_MQTTC_R_DISCONNECT);
    /* Good packets then garbage: the good ones count, then it closes. */
    static const uint8_t mixed[] = {0xd0, 0x00, 0x30, 0x04, 0x00, 0x01, 't', 'x', 0x00, 0x00};
    VT_EQ_INT(closes_with(mixed, sizeof mixed, false, &rc), VG_MQTTC_R_MALFORMED);
    VT_EQ_INT(S.messages, 1);
}

static void test_eof_and_close_in_callback(void)
{
    fx_open(&F, VG_MQTT_V311, 0, NULL, 0);
    connect_up(&F.c, F.sv, VG_MQTT_V311, 0);
    /* A cut packet in the heap buffer, then the server goes away; on_close
     * frees the client from inside the callback. */
    uint8_t b[128];
    memset(b, 0, sizeof b);
    b[0] = 0x30;
    b[1] = 100;
    VT_EQ_INT(vg_mqttc_input(&F.c, b, 20, 0), VG_OK);
    close(F.sv[1]);
    F.sv[1] = -1;
    S.close_deinit = true;
    VT_EQ_INT(vg_mqttc_on_readable(&F.c, 0), VG_EIO);
    VT_EQ_INT(S.why, VG_MQTTC_R_EOF);
    VT_EQ_INT(vg_mqttc_state(&F.c), VG_MQTTC_IDLE);
    fx_close(&F);
}

static void test_tcp_connect_state(void)
{
    fx_open(&F, VG_MQTT_V311, 0, NULL, 0);
    VT_EQ_INT(vg_mqttc_start(&F.c, F.sv[0], true, "tcp", 3, 0), VG_OK);
    VT_CHECK(vg_mqttc_wants_write(&F.c));
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK); /* nothing written before the connect completes */
    VT_CHECK(vg_mqttc_pending(&F.c) > 0);
    VT_EQ_INT(vg_mqttc_on_writable(&F.c, 0), VG_OK);
    VT_EQ_INT(vg_mqttc_state(&F.c), VG_MQTTC_CONNACK);
    VT_EQ_INT(vg_mqttc_pending(&F.c), 0);
    VT_CHECK(!vg_mqttc_wants_write(&F.c));
    fx_close(&F);
}

static void test_publish_reserve(void)
{
    vg_mqttc_flight_t ring[2];
    fx_open(&F, VG_MQTT_V311, 0, ring, 2);
    F.cfg.out_max = 64;
    connect_up(&F.c, F.sv, VG_MQTT_V311, 0);
    uint8_t *dst;
    uint16_t pid;
    vg_mqtt_publish_t m = msg(1);
    VT_EQ_INT(vg_mqttc_publish_reserve(&F.c, 1, 16, &dst, &pid), VG_OK);
    VT_EQ_INT(pid, 1);
    m.packet_id = pid;
    int n = vg_mqtt_encode_publish(dst, 16, VG_MQTT_V311, &m);
    VT_CHECK(n > 0);
    vg_mqttc_publish_commit(&F.c, (size_t)n, 0);
    VT_EQ_INT(vg_mqttc_inflight(&F.c), 1);
    VT_EQ_INT(vg_mqttc_publish_reserve(&F.c, 1, 100, &dst, &pid), VG_ENOSPC); /* over out_max */
    VT_EQ_INT(vg_mqttc_publish_reserve(&F.c, 0, 16, &dst, &pid), VG_OK);
    VT_EQ_INT(pid, 0);
    VT_EQ_INT(vg_mqttc_flush(&F.c), VG_OK);
    pkt_t p[2];
    VT_EQ_INT(srv_read(F.sv[1], p, 2), 1);
    vg_mqtt_publish_t d;
    VT_EQ_INT(vg_mqtt_decode_publish(VG_MQTT_V311, p[0].flags, p[0].body, p[0].len, &d), VG_OK);
    VT_EQ_INT(d.packet_id, 1);
    fx_close(&F);
}

int main(void)
{
    printf("# sizeof(vg_mqttc_t) = %zu, sizeof(vg_mqttc_flight_t) = %zu\n", sizeof(vg_mqttc_t),
           sizeof(vg_mqttc_flight_t));
    VT_RUN(test_connack);
    VT_RUN(test_connack_refused);
    VT_RUN(test_inorder_acks);
    VT_RUN(test_qos2);
    VT_RUN(test_inbound_qos1_and_split_reads);
    VT_RUN(test_subscribe);
    VT_RUN(test_keepalive);
    VT_RUN(test_handshake_timeout);
    VT_RUN(test_malformed_closes);
    VT_RUN(test_eof_and_close_in_callback);
    VT_RUN(test_tcp_connect_state);
    VT_RUN(test_publish_reserve);
    return VT_DONE();
}
