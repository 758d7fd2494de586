/* gwt.h — a harness for the gateway's unit tests: a server without
 * listeners or threads whose workers the test drives by hand
 * (gw_worker_round), and MQTT / HTTP clients on socketpairs attached to
 * a worker as if accepted (gw_conn_add). Everything runs on the test's
 * thread, so a test sees exactly the interleaving it asks for: a round of
 * a worker runs with the thread bound to that worker (its hooks complete
 * "on the owning worker"), and between rounds the test is "another
 * thread" (vg_server_complete goes through the inbox).
 *
 * Waiting is on observable state with a deadline (gwt_read_packet), never a
 * fixed sleep. Packets are built and read with the codec (mqtt/codec.h). */
#ifndef VG_TESTS_GWT_H
#define VG_TESTS_GWT_H

#include "gateway/gw.h"
#include "vt.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define GWT_DEADLINE_MS 5000

/* A server with no listeners: opts as given (listen_host is cleared). */
static __attribute__((unused)) vg_server_t *gwt_server(vg_server_opts_t *o)
{
    o->listen_host = NULL;
    o->ws_host = NULL;
    o->http_host = NULL;
    if (!o->workers)
        o->workers = 1;
    vg_server_t *s = NULL;
    if (vg_server_new(o, &s) != VG_OK)
        return NULL;
    return s;
}

/* One round of every worker, each with the thread bound to it. */
static __attribute__((unused)) void gwt_rounds(vg_server_t *s)
{
    for (uint32_t i = 0; i < s->nworkers; i++) {
        gw_worker_bind_thread(&s->workers[i]);
        gw_worker_round(&s->workers[i], 0);
        gw_worker_bind_thread(NULL);
    }
}

typedef struct {
    vg_server_t *s;
    worker_t *w;
    conn_t *c; /* the server side (valid while the connection lives) */
    int fd;    /* the client side */
    uint8_t level;
    uint8_t buf[1 << 17];
    size_t len, consumed;
} gwt_client_t;

/* A client whose connection the server accepted on worker wi, listener li. */
static __attribute__((unused)) gwt_client_t *gwt_client(vg_server_t *s, uint32_t wi, int li, uint8_t level)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return NULL;
    gwt_client_t *cl = calloc(1, sizeof *cl);
    cl->s = s;
    cl->w = &s->workers[wi];
    cl->fd = sv[1];
    cl->level = level;
    atomic_fetch_add(&s->conns_total, 1);
    atomic_fetch_add(&s->conns_listener[li], 1);
    if (gw_conn_add(cl->w, sv[0], li, &cl->c) != VG_OK) {
        close(sv[0]);
        close(sv[1]);
        free(cl);
        return NULL;
    }
    return cl;
}

static __attribute__((unused)) void gwt_close(gwt_client_t *cl)
{
    if (!cl)
        return;
    close(cl->fd);
    free(cl);
}

static __attribute__((unused)) void gwt_send(gwt_client_t *cl, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = send(cl->fd, b, n, MSG_NOSIGNAL);
        if (k > 0) {
            b += k;
            n -= (size_t)k;
        } else if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            gwt_rounds(cl->s); /* let the server read */
        } else {
            return;
        }
    }
}

/* Reads what the server sent so far (without blocking). */
static __attribute__((unused)) void gwt_pull(gwt_client_t *cl)
{
    if (cl->consumed) {
        memmove(cl->buf, cl->buf + cl->consumed, cl->len - cl->consumed);
        cl->len -= cl->consumed;
        cl->consumed = 0;
    }
    for (;;) {
        ssize_t k = recv(cl->fd, cl->buf + cl->len, sizeof cl->buf - cl->len, 0);
        if (k <= 0)
            return;
        cl->len += (size_t)k;
    }
}

/* The next whole packet the server sent: runs rounds of every worker until
 * one is there or the deadline passes (false). body points into cl->buf
 * until the next call. */
static __attribute__((unused)) bool gwt_read_packet_within(gwt_client_t *cl, int ms, uint8_t *type, uint8_t *flags, const uint8_t **body,
                                   size_t *len)
{
    uint64_t until = gw_now_mono_ms() + (uint64_t)ms;
    for (;;) {
        gwt_pull(cl);
        size_t hl, rl;
        if (cl->len && vg_mqtt_frame(cl->buf, cl->len, sizeof cl->buf, type, flags, &hl, &rl) == VG_OK) {
            *body = cl->buf + hl;
            *len = rl;
            cl->consumed = hl + rl;
            return true;
        }
        if (gw_now_mono_ms() >= until)
            return false;
        gwt_rounds(cl->s);
        struct pollfd p = {.fd = cl->fd, .events = POLLIN};
        poll(&p, 1, 1);
    }
}

static __attribute__((unused)) bool gwt_read_packet(gwt_client_t *cl, uint8_t *type, uint8_t *flags, const uint8_t **body, size_t *len)
{
    return gwt_read_packet_within(cl, GWT_DEADLINE_MS, type, flags, body, len);
}

/* True if the server has sent nothing more by now. Call after the state it
 * depends on was reached (rounds run until the inbox is empty), so that
 * "nothing" is a fact, not a race. */
static __attribute__((unused)) bool gwt_nothing_sent(gwt_client_t *cl)
{
    gwt_pull(cl);
    return cl->len == cl->consumed;
}

/* Runs rounds until cond(arg) holds or the deadline passes. */
static __attribute__((unused)) bool gwt_until(vg_server_t *s, bool (*cond)(void *), void *arg)
{
    uint64_t until = gw_now_mono_ms() + GWT_DEADLINE_MS;
    while (!cond(arg)) {
        if (gw_now_mono_ms() >= until)
            return false;
        gwt_rounds(s);
        struct pollfd p = {.fd = s->workers[0].efd, .events = POLLIN};
        poll(&p, 1, 1);
    }
    return true;
}

/* CONNECT; returns the CONNACK's session-present flag, -1 if refused or no
 * answer. expiry: 5.0 session expiry (or 3.1.1: non-zero = clean session 0). */
static __attribute__((unused)) int gwt_connect(gwt_client_t *cl, const char *id, uint32_t expiry, bool clean)
{
    vg_mqtt_connect_t ck;
    memset(&ck, 0, sizeof ck);
    ck.protocol_level = cl->level;
    ck.clean_session = cl->level == VG_MQTT_V5 ? clean : (expiry == 0);
    ck.keepalive = 60;
    ck.client_id.p = (const uint8_t *)id;
    ck.client_id.len = strlen(id);
    if (cl->level == VG_MQTT_V5 && expiry) {
        ck.props.present = VG_PROP_BIT(VG_PROP_SESSION_EXPIRY);
        ck.props.session_expiry = expiry;
    }
    uint8_t b[256];
    int n = vg_mqtt_encode_connect(b, sizeof b, &ck);
    if (n <= 0)
        return -1;
    gwt_send(cl, b, (size_t)n);
    uint8_t type, flags;
    const uint8_t *body;
    size_t len;
    if (!gwt_read_packet(cl, &type, &flags, &body, &len) || type != VG_MQTT_CONNACK)
        return -1;
    bool present = false;
    uint8_t rc = 0xff;
    if (vg_mqtt_decode_connack(cl->level, body, len, &present, &rc, NULL) != VG_OK || rc != 0)
        return -1;
    return present;
}

/* gwt_connected's `present` when the test does not look at the flag. */
#define GWT_ANY_PRESENT (-1)

/* A client on worker wi's MQTT listener that sent CONNECT as gwt_connect
 * does (clean start / clean session exactly when expiry is 0) and was
 * accepted with session-present flag `present` (0, 1 or GWT_ANY_PRESENT).
 * NULL, with the reason printed, if the client could not be made, was
 * refused or got the other flag; its client side is then closed (the
 * server side goes with the server). */
static __attribute__((unused)) gwt_client_t *gwt_connected(vg_server_t *s, uint32_t wi, uint8_t level, const char *id,
                                                           uint32_t expiry, int present)
{
    gwt_client_t *cl = gwt_client(s, wi, L_MQTT, level);
    if (!cl) {
        fprintf(stdout, "  gwt_connected %s: no client\n", id);
        return NULL;
    }
    int got = gwt_connect(cl, id, expiry, expiry == 0);
    if (got < 0 || (present != GWT_ANY_PRESENT && got != present)) {
        fprintf(stdout, "  gwt_connected %s: %s\n", id,
                got < 0 ? "refused or no CONNACK"
                : got   ? "session present"
                        : "no session present");
        gwt_close(cl);
        return NULL;
    }
    return cl;
}

/* Closes the client side of each client given, in order (NULL ones are
 * skipped); GWT_END then frees the server too. */
static __attribute__((unused)) void gwt_close_n(gwt_client_t *const *cl, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gwt_close(cl[i]);
}

#define GWT_CLOSE(...)                                                                                                 \
    gwt_close_n((gwt_client_t *[]){__VA_ARGS__}, sizeof((gwt_client_t *[]){__VA_ARGS__}) / sizeof(gwt_client_t *))
#define GWT_END(s, ...)                                                                                                \
    do {                                                                                                               \
        GWT_CLOSE(__VA_ARGS__);                                                                                        \
        vg_server_free(s);                                                                                             \
    } while (0)

static __attribute__((unused)) void gwt_publish(gwt_client_t *cl, const char *topic, const char *payload, uint8_t qos, uint16_t pid,
                        bool retain, bool dup)
{
    vg_mqtt_publish_t p;
    memset(&p, 0, sizeof p);
    p.qos = qos;
    p.dup = dup;
    p.retain = retain;
    p.packet_id = qos ? pid : 0;
    p.topic.p = (const uint8_t *)topic;
    p.topic.len = strlen(topic);
    p.payload.p = (const uint8_t *)payload;
    p.payload.len = strlen(payload);
    uint8_t b[1024];
    int n = vg_mqtt_encode_publish(b, sizeof b, cl->level, &p);
    if (n > 0)
        gwt_send(cl, b, (size_t)n);
}

static __attribute__((unused)) void gwt_ack(gwt_client_t *cl, uint8_t type, uint16_t pid)
{
    uint8_t b[16];
    int n = vg_mqtt_encode_ack(b, sizeof b, cl->level, type, pid, 0, NULL);
    if (n > 0)
        gwt_send(cl, b, (size_t)n);
}

static __attribute__((unused)) void gwt_disconnect(gwt_client_t *cl)
{
    uint8_t b[8];
    int n = vg_mqtt_encode_reason(b, sizeof b, cl->level, VG_MQTT_DISCONNECT, 0, NULL);
    if (n > 0)
        gwt_send(cl, b, (size_t)n);
}

/* SUBSCRIBE to one filter (sub_id 0 = none, 5.0 only otherwise); true once
 * the SUBACK granted it. */
static __attribute__((unused)) bool gwt_subscribe(gwt_client_t *cl, const char *filter, uint8_t qos, uint32_t sub_id, bool no_local,
                          uint16_t pid)
{
    vg_mqtt_sub_t sub = {.filter = {(const uint8_t *)filter, strlen(filter)}, .qos = qos, .no_local = no_local};
    vg_mqtt_props_t pr;
    memset(&pr, 0, sizeof pr);
    if (sub_id) {
        pr.present = VG_PROP_BIT(VG_PROP_SUBSCRIPTION_ID);
        pr.sub_ids[0] = sub_id;
        pr.sub_id_count = 1;
    }
    uint8_t b[512];
    int n = vg_mqtt_encode_subscribe(b, sizeof b, cl->level, pid, sub_id ? &pr : NULL, &sub, 1);
    if (n <= 0)
        return false;
    gwt_send(cl, b, (size_t)n);
    uint8_t type, flags, rc = 0x80;
    const uint8_t *body;
    size_t len, cnt = 0;
    uint16_t apid = 0;
    if (!gwt_read_packet(cl, &type, &flags, &body, &len) || type != VG_MQTT_SUBACK)
        return false;
    return vg_mqtt_decode_suback(cl->level, VG_MQTT_SUBACK, body, len, &apid, NULL, &rc, 1, &cnt) == VG_OK &&
           apid == pid && rc == qos;
}

/* UNSUBSCRIBE one filter; true once the UNSUBACK came. */
static __attribute__((unused)) bool gwt_unsubscribe(gwt_client_t *cl, const char *filter, uint16_t pid)
{
    vg_mqtt_sub_t sub = {.filter = {(const uint8_t *)filter, strlen(filter)}};
    uint8_t b[512];
    int n = vg_mqtt_encode_unsubscribe(b, sizeof b, cl->level, pid, NULL, &sub, 1);
    if (n <= 0)
        return false;
    gwt_send(cl, b, (size_t)n);
    uint8_t type, flags;
    const uint8_t *body;
    size_t len;
    return gwt_read_packet(cl, &type, &flags, &body, &len) && type == VG_MQTT_UNSUBACK;
}

/* Two new 3.1.1 sessions on worker 0 with clean session: *sub, subscribed
 * to filter at qos (a failed SUBSCRIBE is a failed check, not the end of
 * the test), and *pub. False if either client is missing (both pointers
 * are set regardless, NULL for a missing one). */
static __attribute__((unused)) bool gwt_sub_pub(vg_server_t *s, const char *sub_id, const char *filter, uint8_t qos,
                                                const char *pub_id, gwt_client_t **sub, gwt_client_t **pub)
{
    *sub = gwt_connected(s, 0, VG_MQTT_V311, sub_id, 0, 0);
    *pub = gwt_connected(s, 0, VG_MQTT_V311, pub_id, 0, 0);
    if (!*sub || !*pub)
        return false;
    VT_CHECK(gwt_subscribe(*sub, filter, qos, 0, false, 1));
    return true;
}

/* Reads the next packet and expects a PUBLISH: fills *p (pointing into the
 * client's buffer until the next read) and returns true. */
static __attribute__((unused)) bool gwt_expect_publish(gwt_client_t *cl, vg_mqtt_publish_t *p)
{
    uint8_t type, flags;
    const uint8_t *body;
    size_t len;
    if (!gwt_read_packet(cl, &type, &flags, &body, &len) || type != VG_MQTT_PUBLISH)
        return false;
    return vg_mqtt_decode_publish(cl->level, flags, body, len, p) == VG_OK;
}

/* Reads the next packet and expects an ack of `type`: returns its packet
 * id, or -1. */
static __attribute__((unused)) int gwt_expect_ack(gwt_client_t *cl, uint8_t type)
{
    uint8_t t, flags;
    const uint8_t *body;
    size_t len;
    vg_mqtt_ack_t a;
    if (!gwt_read_packet(cl, &t, &flags, &body, &len) || t != type ||
        vg_mqtt_decode_ack(cl->level, type, body, len, &a) != VG_OK)
        return -1;
    return a.packet_id;
}

static __attribute__((unused)) bool gwt_payload_is(const vg_mqtt_publish_t *p, const char *s)
{
    return p->payload.len == strlen(s) && memcmp(p->payload.p, s, p->payload.len) == 0;
}

#endif
