/* client.c — see client.h.
 *
 * Input path. Most reads end on a packet boundary, so packets are handled
 * straight out of the caller's buffer (the loop's shared scratch). Only a
 * packet cut by the end of a read is copied: its first bytes into the
 * inline carry (a PUBACK is 4 bytes), or, when longer, into a heap buffer
 * sized for the whole packet once its length field is complete (checked
 * against max_packet before allocating). That buffer is kept for the next
 * cut packet and freed with the client: a device that only ever receives
 * acks never allocates one.
 *
 * In-flight ring. Servers acknowledge QoS 1 and 2 publishes in the order
 * they were sent (MQTT 3.1.1 §4.6), so the ack normally matches the ring's
 * head and costs one comparison. An ack further in is accepted (its slot is
 * marked done and popped when it reaches the head) rather than treated as a
 * violation, because the simulator and the load generator have always
 * tolerated it; an ack for a packet id not in the ring is a stray.
 *
 * TLS transport. Only three places know about it, each behind one test of
 * c->ssl: the read (SSL_read until OpenSSL wants the socket again), the
 * flush (SSL_write, which with partial writes behaves like send) and the
 * handshake state between the TCP connect and CONNACK. Everything above the
 * byte stream is the same code for both. */
#include "mqttc/client.h"

#include "core/alloc.h"
#include "core/err.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NS 1000000000ull
#define DEFAULT_MAX_PACKET (1u << 20)
#define DEFAULT_OUT_MAX (1u << 20)
#define MAX_SUBACK_CODES 4096

/* c->tls bits. */
enum {
    TLS_WANT_WRITE = 1, /* the handshake or a read waits for the socket to be writable */
    TLS_DEAD = 2,       /* failed: no close_notify, no more I/O on the SSL */
};

/* What an in-flight slot waits for. */
enum { W_DONE = 0, W_PUBACK, W_PUBREC, W_PUBCOMP };

static uint8_t level_of(const vg_mqttc_t *c)
{
    return c->cfg->level ? c->cfg->level : VG_MQTT_V311;
}

static int close_with(vg_mqttc_t *c, vg_mqttc_reason_t why, int detail)
{
    static const int codes[] = {
        [VG_MQTTC_R_NONE] = VG_ECLOSED,    [VG_MQTTC_R_LOCAL] = VG_ECLOSED,
        [VG_MQTTC_R_CONNECT] = VG_EIO,     [VG_MQTTC_R_EOF] = VG_EIO,
        [VG_MQTTC_R_IO] = VG_EIO,          [VG_MQTTC_R_MALFORMED] = VG_EMALFORMED,
        [VG_MQTTC_R_PROTOCOL] = VG_EPROTO, [VG_MQTTC_R_TOO_BIG] = VG_ETOOBIG,
        [VG_MQTTC_R_REFUSED] = VG_EPROTO,  [VG_MQTTC_R_DISCONNECT] = VG_ECLOSED,
        [VG_MQTTC_R_TIMEOUT] = VG_EIO,     [VG_MQTTC_R_NOMEM] = VG_ENOMEM,
        [VG_MQTTC_R_TLS] = VG_EIO,
    };
    if (c->state == VG_MQTTC_CLOSED || c->state == VG_MQTTC_IDLE)
        return codes[why];
    if (c->ssl && !(c->tls & TLS_DEAD) && (c->state == VG_MQTTC_CONNACK || c->state == VG_MQTTC_UP)) {
        /* Our close: close_notify if the socket takes it, never waiting
         * for the server's. Any other end with TLS intact (the server
         * closed, an MQTT-level failure) is marked as shut down too:
         * SSL_free otherwise takes the session for a broken one and makes
         * it unresumable. */
        if (why == VG_MQTTC_R_LOCAL)
            (void)SSL_shutdown(c->ssl);
        else
            SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
        ERR_clear_error();
    }
    c->state = VG_MQTTC_CLOSED;
    c->reason = (uint8_t)why;
    if (c->cfg->on_close)
        c->cfg->on_close(c, why, detail);
    return codes[why];
}

vg_mqttc_reason_t vg_mqttc_reason(const vg_mqttc_t *c)
{
    return (vg_mqttc_reason_t)c->reason;
}

const char *vg_mqttc_reason_name(vg_mqttc_reason_t r)
{
    switch (r) {
    case VG_MQTTC_R_NONE:
        return "open";
    case VG_MQTTC_R_LOCAL:
        return "closed by us";
    case VG_MQTTC_R_CONNECT:
        return "connect failed";
    case VG_MQTTC_R_EOF:
        return "closed by the server";
    case VG_MQTTC_R_IO:
        return "read or write failed";
    case VG_MQTTC_R_MALFORMED:
        return "malformed packet";
    case VG_MQTTC_R_PROTOCOL:
        return "unexpected packet";
    case VG_MQTTC_R_TOO_BIG:
        return "packet larger than the input limit";
    case VG_MQTTC_R_REFUSED:
        return "CONNACK refused";
    case VG_MQTTC_R_DISCONNECT:
        return "DISCONNECT from the server";
    case VG_MQTTC_R_TIMEOUT:
        return "no CONNACK in time";
    case VG_MQTTC_R_NOMEM:
        return "out of memory";
    case VG_MQTTC_R_TLS:
        return "TLS failure";
    }
    return "?";
}

void vg_mqttc_init(vg_mqttc_t *c, const vg_mqttc_cfg_t *cfg, vg_mqttc_flight_t *ring, uint16_t ring_cap)
{
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    c->ring = ring;
    c->ring_cap = ring ? ring_cap : 0;
    c->window = c->ring_cap;
    c->fd = -1;
    c->next_pid = 1;
}

void vg_mqttc_deinit(vg_mqttc_t *c)
{
    if (!c)
        return;
    vg_free(c->out);
    vg_free(c->in);
    c->out = c->in = NULL;
    SSL_free(c->ssl); /* NULL accepted */
    c->ssl = NULL;
    c->tls = 0;
    c->out_off = c->out_len = c->out_cap = 0;
    c->in_len = c->in_cap = 0;
    c->carry_len = 0;
    c->ring_head = c->ring_len = 0;
    c->window = c->ring_cap;
    c->subs_pending = 0;
    c->next_pid = 1;
    c->state = VG_MQTTC_IDLE;
    c->fd = -1;
}

/* ---- output ---- */

/* Room for n more bytes: compacts first, then grows (doubling) up to out_max. */
static int out_reserve(vg_mqttc_t *c, size_t n)
{
    if (c->out_len + n <= c->out_cap)
        return VG_OK;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + n <= c->out_cap)
            return VG_OK;
    }
    size_t max = c->cfg->out_max ? c->cfg->out_max : DEFAULT_OUT_MAX;
    size_t cap = c->out_cap ? c->out_cap : c->cfg->out_initial ? c->cfg->out_initial : 256;
    while (cap < c->out_len + n)
        cap *= 2;
    if (cap > max) {
        if (c->out_len + n > max)
            return VG_ENOSPC;
        cap = max;
    }
    uint8_t *p = vg_realloc(VG_MEM_MQTT, c->out, cap);
    if (!p)
        return VG_ENOMEM;
    c->out = p;
    c->out_cap = (uint32_t)cap;
    return VG_OK;
}

/* Queues an ack (or PINGREQ below); VG_OK or a close code: a client that
 * cannot queue an ack or a ping is broken. */
static int queue_ack(vg_mqttc_t *c, uint8_t type, uint16_t pid, uint64_t now)
{
    if (out_reserve(c, 8) != VG_OK)
        return close_with(c, VG_MQTTC_R_NOMEM, 0);
    int n = vg_mqtt_encode_ack(c->out + c->out_len, c->out_cap - c->out_len, level_of(c), type, pid, 0, NULL);
    if (n < 0)
        return close_with(c, VG_MQTTC_R_NOMEM, 0);
    c->out_len += (uint32_t)n;
    if (c->state == VG_MQTTC_UP)
        c->t_ns = now;
    return VG_OK;
}

static int queue_empty(vg_mqttc_t *c, uint8_t type, uint64_t now)
{
    if (out_reserve(c, 2) != VG_OK)
        return close_with(c, VG_MQTTC_R_NOMEM, 0);
    vg_mqtt_encode_empty(c->out + c->out_len, 2, type);
    c->out_len += 2;
    if (c->state == VG_MQTTC_UP)
        c->t_ns = now;
    return VG_OK;
}

size_t vg_mqttc_pending(const vg_mqttc_t *c)
{
    return c->out_len - c->out_off;
}

const uint8_t *vg_mqttc_pending_bytes(const vg_mqttc_t *c)
{
    return c->out + c->out_off;
}

void vg_mqttc_consume(vg_mqttc_t *c, size_t n)
{
    if (n > c->out_len - c->out_off)
        n = c->out_len - c->out_off;
    c->out_off += (uint32_t)n;
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
}

bool vg_mqttc_wants_write(const vg_mqttc_t *c)
{
    if (c->state == VG_MQTTC_TCP)
        return true;
    if (c->state == VG_MQTTC_TLS)
        return c->tls & TLS_WANT_WRITE;
    return (c->state == VG_MQTTC_CONNACK || c->state == VG_MQTTC_UP) &&
           (c->out_off < c->out_len || (c->tls & TLS_WANT_WRITE));
}

/* ---- the TLS transport ---- */

/* An OpenSSL call failed with SSL_get_error's e: closes with the reason.
 * A peer that closed the TCP connection without a TLS alert is an EOF, as
 * on the plain path. */
static int tls_fail(vg_mqttc_t *c, int e, int err_no)
{
    unsigned long first = ERR_peek_error();
    int reason = first ? ERR_GET_REASON(first) : 0;
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN) /* close_notify, or an EOF with SSL_OP_IGNORE_UNEXPECTED_EOF */
        return close_with(c, VG_MQTTC_R_EOF, 0);
    c->tls |= TLS_DEAD;
    if ((e == SSL_ERROR_SYSCALL && !first && err_no == 0) || reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return close_with(c, VG_MQTTC_R_EOF, 0);
    if (e == SSL_ERROR_SYSCALL && !first)
        return close_with(c, VG_MQTTC_R_IO, err_no);
    return close_with(c, VG_MQTTC_R_TLS, reason);
}

static int tls_flush(vg_mqttc_t *c)
{
    while (c->out_off < c->out_len) {
        size_t n = c->out_len - c->out_off;
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(c->ssl, c->out + c->out_off, n > INT_MAX ? INT_MAX : (int)n);
        if (r > 0) {
            c->out_off += (uint32_t)r;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        /* WANT_READ (a post-handshake message first): EPOLLIN is always
         * armed, and the next read lets OpenSSL go on. */
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return VG_AGAIN;
        int err_no = errno;
        if (e == SSL_ERROR_SYSCALL && c->state == VG_MQTTC_CONNACK && c->cfg->scratch) {
            /* A server that refuses our certificate (TLS 1.3: after our
             * side of the handshake ended) sends its alert and closes; if
             * our CONNECT was not read by then, the close is a reset that
             * fails this write while the alert still waits in the socket.
             * Read it, so that the failure says why. */
            ERR_clear_error();
            size_t cap = c->cfg->scratch_len > INT_MAX ? INT_MAX : c->cfg->scratch_len;
            int k = SSL_read(c->ssl, c->cfg->scratch, (int)cap);
            if (k <= 0 && SSL_get_error(c->ssl, k) == SSL_ERROR_SSL)
                return tls_fail(c, SSL_ERROR_SSL, 0);
            ERR_clear_error();
        }
        return tls_fail(c, e, err_no);
    }
    c->out_off = c->out_len = 0;
    return VG_OK;
}

/* Drives the handshake. VG_OK (finished, or waiting: see c->tls) or a
 * close code. */
static int tls_handshake(vg_mqttc_t *c)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->tls &= (uint8_t)~TLS_WANT_WRITE;
        c->state = VG_MQTTC_CONNACK;
        if (c->cfg->on_tls)
            c->cfg->on_tls(c);
        return c->state == VG_MQTTC_CONNACK ? VG_OK : VG_ECLOSED;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->tls = (uint8_t)((c->tls & ~TLS_WANT_WRITE) | (e == SSL_ERROR_WANT_WRITE ? TLS_WANT_WRITE : 0));
        return VG_OK;
    }
    return tls_fail(c, e, errno);
}

/* Reads until OpenSSL holds nothing more, handing each record's bytes to
 * the protocol. Draining matters: what OpenSSL read from the socket and
 * decrypted but did not return yet would wait for an event that never
 * comes. */
static int tls_read(vg_mqttc_t *c, uint64_t now)
{
    size_t cap = c->cfg->scratch_len > INT_MAX ? INT_MAX : c->cfg->scratch_len;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(c->ssl, c->cfg->scratch, (int)cap);
        if (r > 0) {
            int rc = vg_mqttc_input(c, c->cfg->scratch, (size_t)r, now);
            if (rc != VG_OK)
                return rc;
            /* Stop when OpenSSL holds nothing more, rather than at its
             * WANT_READ: that last SSL_read would allocate the 17 KB read
             * buffer and, finding the socket empty, keep it for the whole
             * idle time (OpenSSL 3.0's SSL_MODE_RELEASE_BUFFERS frees it
             * only after a record is consumed). More on the socket raises
             * the (level-triggered) readable event again. */
            if (!SSL_has_pending(c->ssl))
                return VG_OK;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            c->tls &= (uint8_t)~TLS_WANT_WRITE;
            return VG_OK;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            c->tls |= TLS_WANT_WRITE; /* on_writable reads again */
            return VG_OK;
        }
        return tls_fail(c, e, errno);
    }
}

int vg_mqttc_flush(vg_mqttc_t *c)
{
    if (c->state != VG_MQTTC_CONNACK && c->state != VG_MQTTC_UP)
        return c->state == VG_MQTTC_CLOSED ? VG_ECLOSED : VG_OK;
    if (c->ssl)
        return tls_flush(c);
    while (c->out_off < c->out_len) {
        ssize_t r = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (r > 0) {
            c->out_off += (uint32_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return VG_AGAIN;
        return close_with(c, VG_MQTTC_R_IO, r < 0 ? errno : 0);
    }
    c->out_off = c->out_len = 0;
    return VG_OK;
}

/* ---- start ---- */

int vg_mqttc_start(vg_mqttc_t *c, int fd, bool connecting, const char *id, size_t id_len, uint64_t now)
{
    if (c->state != VG_MQTTC_IDLE)
        return VG_EINVAL;
    const vg_mqttc_cfg_t *cfg = c->cfg;
    vg_mqtt_connect_t m = {
        .protocol_level = level_of(c),
        .clean_session = !cfg->persistent,
        .keepalive = cfg->keepalive_s,
        .client_id = {(const uint8_t *)id, id_len},
    };
    int rc = out_reserve(c, 32 + id_len);
    if (rc != VG_OK)
        return rc == VG_ENOSPC ? VG_EINVAL : rc;
    int n = vg_mqtt_encode_connect(c->out + c->out_len, c->out_cap - c->out_len, &m);
    if (n < 0)
        return VG_EINVAL;
    c->out_len += (uint32_t)n;
    c->fd = fd;
    c->keepalive_s = cfg->keepalive_s;
    c->t_ns = cfg->connect_timeout_ns ? now + cfg->connect_timeout_ns : 0;
    c->reason = VG_MQTTC_R_NONE;
    c->state = connecting ? VG_MQTTC_TCP : VG_MQTTC_CONNACK;
    return VG_OK;
}

int vg_mqttc_start_tls(vg_mqttc_t *c, int fd, bool connecting, struct ssl_st *ssl, const char *id, size_t id_len,
                       uint64_t now)
{
    if (c->state != VG_MQTTC_IDLE || !ssl) {
        SSL_free(ssl);
        return VG_EINVAL;
    }
    c->ssl = ssl;                             /* ours from here: deinit frees it */
    c->tls = connecting ? 0 : TLS_WANT_WRITE; /* the ClientHello goes out at the first writable event */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int rc = vg_mqttc_start(c, fd, connecting, id, id_len, now);
    if (rc != VG_OK)
        return rc;
    if (!connecting)
        c->state = VG_MQTTC_TLS;
    return VG_OK;
}

/* The non-blocking connect finished (writable or an error event). */
static int tcp_done(vg_mqttc_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err)
        return close_with(c, VG_MQTTC_R_CONNECT, err);
    c->state = c->ssl ? VG_MQTTC_TLS : VG_MQTTC_CONNACK;
    return VG_OK;
}

int vg_mqttc_on_writable(vg_mqttc_t *c, uint64_t now)
{
    if (c->state == VG_MQTTC_TCP) {
        int rc = tcp_done(c);
        if (rc != VG_OK)
            return rc;
    }
    if (c->state == VG_MQTTC_TLS) {
        int rc = tls_handshake(c);
        if (rc != VG_OK || c->state == VG_MQTTC_TLS)
            return rc;
    } else if (c->ssl && (c->tls & TLS_WANT_WRITE) && (c->state == VG_MQTTC_CONNACK || c->state == VG_MQTTC_UP)) {
        int rc = tls_read(c, now); /* a read that had to write first */
        if (rc != VG_OK)
            return rc;
    }
    int rc = vg_mqttc_flush(c);
    return rc == VG_AGAIN ? VG_OK : rc;
}

/* ---- the in-flight ring ---- */

static vg_mqttc_flight_t *ring_at(vg_mqttc_t *c, uint32_t k)
{
    return &c->ring[(c->ring_head + k) % c->ring_cap];
}

/* Pops finished slots off the head. */
static void ring_pop(vg_mqttc_t *c)
{
    while (c->ring_len && ring_at(c, 0)->state == W_DONE) {
        c->ring_head = (uint16_t)((c->ring_head + 1) % c->ring_cap);
        c->ring_len--;
    }
    if (!c->ring_len)
        c->ring_head = 0;
}

static int on_pub_ack(vg_mqttc_t *c, uint8_t type, const vg_mqtt_ack_t *a, uint64_t now)
{
    vg_mqttc_flight_t *f = NULL;
    for (uint32_t k = 0; k < c->ring_len; k++) {
        vg_mqttc_flight_t *e = ring_at(c, k);
        if (e->packet_id == a->packet_id && e->state != W_DONE) {
            f = e;
            break;
        }
    }
    if (!f) {
        if (c->cfg->on_stray_ack)
            c->cfg->on_stray_ack(c, type, a->packet_id);
        return VG_OK;
    }
    uint8_t want = type == VG_MQTT_PUBACK ? W_PUBACK : type == VG_MQTT_PUBREC ? W_PUBREC : W_PUBCOMP;
    if (f->state != want)
        return close_with(c, VG_MQTTC_R_PROTOCOL, type);
    if (type == VG_MQTT_PUBREC && a->reason < 0x80) {
        f->state = W_PUBCOMP;
        return queue_ack(c, VG_MQTT_PUBREL, a->packet_id, now);
    }
    uint32_t now_us = (uint32_t)(now / 1000);
    vg_mqttc_ack_t done = {
        .packet_id = a->packet_id,
        .qos = f->qos,
        .type = type,
        .reason = a->reason,
        .slot = (uint16_t)(f - c->ring),
        .sent_us = f->sent_us,
        .latency_us = (uint32_t)(now_us - f->sent_us),
    };
    f->state = W_DONE;
    ring_pop(c);
    if (c->cfg->on_ack)
        c->cfg->on_ack(c, &done);
    return VG_OK;
}

unsigned vg_mqttc_forget(vg_mqttc_t *c)
{
    unsigned n = 0;
    for (uint32_t k = 0; k < c->ring_len; k++)
        n += ring_at(c, k)->state != W_DONE;
    c->ring_len = c->ring_head = 0;
    return n;
}

/* ---- publish and subscribe ---- */

int vg_mqttc_publish_reserve(vg_mqttc_t *c, uint8_t qos, size_t len, uint8_t **dst, uint16_t *packet_id)
{
    if (c->state != VG_MQTTC_UP || qos > 2)
        return VG_EINVAL;
    if (qos && c->ring_len >= c->window)
        return c->ring_cap ? VG_AGAIN : VG_EINVAL;
    int rc = out_reserve(c, len);
    if (rc != VG_OK)
        return rc;
    *dst = c->out + c->out_len;
    if (packet_id)
        *packet_id = qos ? c->next_pid : 0;
    return VG_OK;
}

void vg_mqttc_publish_commit(vg_mqttc_t *c, size_t len, uint64_t now)
{
    uint8_t qos = (uint8_t)((c->out[c->out_len] >> 1) & 3);
    c->out_len += (uint32_t)len;
    if (c->state == VG_MQTTC_UP)
        c->t_ns = now;
    if (!qos)
        return;
    *ring_at(c, c->ring_len) = (vg_mqttc_flight_t){
        .sent_us = (uint32_t)(now / 1000),
        .packet_id = c->next_pid,
        .state = qos == 1 ? W_PUBACK : W_PUBREC,
        .qos = qos,
    };
    c->ring_len++;
    c->next_pid = c->next_pid == 65535 ? 1 : (uint16_t)(c->next_pid + 1);
}

uint16_t vg_mqttc_next_slot(const vg_mqttc_t *c)
{
    return c->ring_cap ? (uint16_t)((c->ring_head + c->ring_len) % c->ring_cap) : 0;
}

int vg_mqttc_publish(vg_mqttc_t *c, const vg_mqtt_publish_t *m, uint64_t now)
{
    uint8_t level = level_of(c);
    size_t need = vg_mqtt_publish_size(level, m->topic.len, m->payload.len, m->qos, &m->props);
    if (!need)
        return VG_EINVAL;
    uint8_t *dst;
    uint16_t pid;
    int rc = vg_mqttc_publish_reserve(c, m->qos, need, &dst, &pid);
    if (rc != VG_OK)
        return rc;
    vg_mqtt_publish_t p = *m;
    p.packet_id = pid;
    int n = vg_mqtt_encode_publish(dst, need, level, &p);
    if (n < 0)
        return VG_EINVAL;
    vg_mqttc_publish_commit(c, (size_t)n, now);
    return VG_OK;
}

int vg_mqttc_subscribe(vg_mqttc_t *c, const vg_mqtt_sub_t *subs, size_t n, const vg_mqtt_props_t *props,
                       uint16_t *packet_id, uint64_t now)
{
    if (c->state != VG_MQTTC_UP || !n)
        return VG_EINVAL;
    size_t need = 16 + vg_mqtt_props_size(props);
    for (size_t i = 0; i < n; i++)
        need += 3 + subs[i].filter.len;
    int rc = out_reserve(c, need);
    if (rc != VG_OK)
        return rc;
    uint16_t pid = c->next_pid;
    int len = vg_mqtt_encode_subscribe(c->out + c->out_len, c->out_cap - c->out_len, level_of(c), pid, props, subs, n);
    if (len < 0)
        return VG_EINVAL;
    c->out_len += (uint32_t)len;
    c->next_pid = pid == 65535 ? 1 : (uint16_t)(pid + 1);
    c->subs_pending++;
    if (c->state == VG_MQTTC_UP)
        c->t_ns = now;
    if (packet_id)
        *packet_id = pid;
    return VG_OK;
}

unsigned vg_mqttc_subs_pending(const vg_mqttc_t *c)
{
    return c->subs_pending;
}

/* ---- input ---- */

static int on_packet(vg_mqttc_t *c, uint8_t type, uint8_t flags, const uint8_t *body, size_t len, uint64_t now)
{
    uint8_t level = level_of(c);
    if (c->state == VG_MQTTC_CONNACK && type != VG_MQTT_CONNACK && type != VG_MQTT_DISCONNECT)
        return close_with(c, VG_MQTTC_R_PROTOCOL, type); /* §3.2: CONNACK comes first */
    switch (type) {
    case VG_MQTT_CONNACK: {
        bool sp;
        uint8_t rc;
        vg_mqtt_props_t props;
        if (c->state != VG_MQTTC_CONNACK)
            return close_with(c, VG_MQTTC_R_PROTOCOL, type);
        if (vg_mqtt_decode_connack(level, body, len, &sp, &rc, &props) != VG_OK)
            return close_with(c, VG_MQTTC_R_MALFORMED, type);
        if (rc != 0)
            return close_with(c, VG_MQTTC_R_REFUSED, rc);
        c->state = VG_MQTTC_UP;
        c->t_ns = now; /* the keepalive counts from here: CONNECT went out at most a handshake ago */
        if (level == VG_MQTT_V5) {
            if (props.present & VG_PROP_BIT(VG_PROP_SERVER_KEEPALIVE))
                c->keepalive_s = props.server_keepalive; /* §3.2.2.3.14: the server's value wins */
            if ((props.present & VG_PROP_BIT(VG_PROP_RECEIVE_MAX)) && props.receive_max < c->window)
                c->window = props.receive_max;
        }
        if (c->cfg->on_connack)
            c->cfg->on_connack(c, sp, &props);
        return VG_OK;
    }
    case VG_MQTT_PUBLISH: {
        vg_mqtt_publish_t m;
        if (vg_mqtt_decode_publish(level, flags, body, len, &m) != VG_OK)
            return close_with(c, VG_MQTTC_R_MALFORMED, type);
        if (c->cfg->on_message)
            c->cfg->on_message(c, &m);
        if (c->state != VG_MQTTC_UP)
            return VG_ECLOSED;
        if (m.qos == 1)
            return queue_ack(c, VG_MQTT_PUBACK, m.packet_id, now);
        if (m.qos == 2)
            return queue_ack(c, VG_MQTT_PUBREC, m.packet_id, now);
        return VG_OK;
    }
    case VG_MQTT_PUBACK:
    case VG_MQTT_PUBREC:
    case VG_MQTT_PUBCOMP:
    case VG_MQTT_PUBREL: {
        vg_mqtt_ack_t a;
        if (vg_mqtt_decode_ack(level, type, body, len, &a) != VG_OK)
            return close_with(c, VG_MQTTC_R_MALFORMED, type);
        if (type == VG_MQTT_PUBREL)
            return queue_ack(c, VG_MQTT_PUBCOMP, a.packet_id, now);
        return on_pub_ack(c, type, &a, now);
    }
    case VG_MQTT_SUBACK: {
        uint16_t pid;
        uint8_t rcs[MAX_SUBACK_CODES];
        size_t n;
        if (vg_mqtt_decode_suback(level, type, body, len, &pid, NULL, rcs, sizeof rcs, &n) != VG_OK)
            return close_with(c, VG_MQTTC_R_MALFORMED, type);
        if (!c->subs_pending)
            return close_with(c, VG_MQTTC_R_PROTOCOL, type);
        c->subs_pending--;
        if (c->cfg->on_suback)
            c->cfg->on_suback(c, pid, rcs, n);
        return VG_OK;
    }
    case VG_MQTT_UNSUBACK:
    case VG_MQTT_PINGRESP:
        return VG_OK;
    case VG_MQTT_DISCONNECT: {
        uint8_t reason = 0;
        if (vg_mqtt_decode_reason(level, type, body, len, &reason, NULL) != VG_OK)
            return close_with(c, VG_MQTTC_R_MALFORMED, type);
        return close_with(c, VG_MQTTC_R_DISCONNECT, reason);
    }
    default: /* CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, AUTH: never from a server to us */
        return close_with(c, VG_MQTTC_R_PROTOCOL, type);
    }
}

static size_t held_len(const vg_mqttc_t *c)
{
    return c->in_len ? c->in_len : c->carry_len;
}

static const uint8_t *held(const vg_mqttc_t *c)
{
    return c->in_len ? c->in : c->carry;
}

/* Total length of the packet that starts p[0..n), once its length field is
 * complete; 0 before. */
static size_t total_len(const uint8_t *p, size_t n)
{
    size_t v = 0;
    for (size_t k = 1; k < n && k <= 4; k++) {
        v |= (size_t)(p[k] & 0x7f) << (7 * (k - 1));
        if (!(p[k] & 0x80))
            return 1 + k + v;
    }
    return 0;
}

/* Appends p[0..n) to the held partial packet (total: its whole length if
 * known, for sizing the heap buffer once). */
static int hold(vg_mqttc_t *c, const uint8_t *p, size_t n, size_t total)
{
    size_t have = held_len(c);
    if (!c->in_len && have + n <= VG_MQTTC_CARRY) {
        memcpy(c->carry + have, p, n);
        c->carry_len = (uint8_t)(have + n);
        return VG_OK;
    }
    size_t want = total > have + n ? total : have + n;
    if (want > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 64;
        while (cap < want)
            cap *= 2;
        uint8_t *b = vg_realloc(VG_MEM_MQTT, c->in, cap);
        if (!b)
            return close_with(c, VG_MQTTC_R_NOMEM, 0);
        c->in = b;
        c->in_cap = (uint32_t)cap;
    }
    if (!c->in_len && have) {
        memcpy(c->in, c->carry, have);
        c->carry_len = 0;
    }
    memcpy(c->in + have, p, n);
    c->in_len = (uint32_t)(have + n);
    return VG_OK;
}

/* Frames buf[0..len): VG_OK with a packet, VG_AGAIN, or a close code. */
static int frame(vg_mqttc_t *c, const uint8_t *buf, size_t len, uint8_t *type, uint8_t *flags, size_t *hl, size_t *rl)
{
    size_t max = c->cfg->max_packet ? c->cfg->max_packet : DEFAULT_MAX_PACKET;
    int rc = vg_mqtt_frame(buf, len, max, type, flags, hl, rl);
    if (rc == VG_OK || rc == VG_AGAIN)
        return rc;
    return close_with(c, rc == VG_ETOOBIG ? VG_MQTTC_R_TOO_BIG : VG_MQTTC_R_MALFORMED, 0);
}

int vg_mqttc_input(vg_mqttc_t *c, const uint8_t *buf, size_t len, uint64_t now)
{
    if (c->state != VG_MQTTC_CONNACK && c->state != VG_MQTTC_UP)
        return VG_ECLOSED;
    uint8_t type, flags;
    size_t hl, rl;
    /* First finish the packet a previous read cut, a byte at a time until
     * its length field is complete, then the rest of it at once. */
    while (len && held_len(c)) {
        size_t total = total_len(held(c), held_len(c));
        size_t take = total ? total - held_len(c) : 1;
        if (take > len)
            take = len;
        int rc = hold(c, buf, take, total);
        if (rc != VG_OK)
            return rc;
        buf += take;
        len -= take;
        rc = frame(c, held(c), held_len(c), &type, &flags, &hl, &rl);
        if (rc == VG_AGAIN)
            continue;
        if (rc != VG_OK)
            return rc;
        rc = on_packet(c, type, flags, held(c) + hl, rl, now);
        if (c->state != VG_MQTTC_CONNACK && c->state != VG_MQTTC_UP)
            return rc == VG_OK ? VG_ECLOSED : rc; /* the callback may have freed the buffer */
        c->in_len = 0;
        c->carry_len = 0;
        if (rc != VG_OK)
            return rc;
    }
    size_t off = 0;
    while (off < len) {
        int rc = frame(c, buf + off, len - off, &type, &flags, &hl, &rl);
        if (rc == VG_AGAIN)
            return hold(c, buf + off, len - off, total_len(buf + off, len - off));
        if (rc != VG_OK)
            return rc;
        const uint8_t *body = buf + off + hl;
        off += hl + rl;
        rc = on_packet(c, type, flags, body, rl, now);
        if (rc != VG_OK)
            return rc;
        if (c->state != VG_MQTTC_CONNACK && c->state != VG_MQTTC_UP)
            return VG_ECLOSED;
    }
    return VG_OK;
}

int vg_mqttc_on_readable(vg_mqttc_t *c, uint64_t now)
{
    if (c->state == VG_MQTTC_TCP) {
        int rc = tcp_done(c);
        if (rc != VG_OK)
            return rc;
    }
    if (c->state == VG_MQTTC_TLS) {
        int rc = tls_handshake(c);
        if (rc != VG_OK || c->state == VG_MQTTC_TLS)
            return rc;
        /* Done: the CONNECT goes out now, and the server's first records
         * (session tickets) may already be here. */
        rc = vg_mqttc_flush(c);
        if (rc != VG_OK && rc != VG_AGAIN)
            return rc;
    }
    if (c->state != VG_MQTTC_CONNACK && c->state != VG_MQTTC_UP)
        return VG_ECLOSED;
    if (c->ssl)
        return tls_read(c, now);
    ssize_t r = read(c->fd, c->cfg->scratch, c->cfg->scratch_len);
    if (r == 0)
        return close_with(c, VG_MQTTC_R_EOF, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return VG_OK;
        return close_with(c, VG_MQTTC_R_IO, errno);
    }
    return vg_mqttc_input(c, c->cfg->scratch, (size_t)r, now);
}

/* ---- timers and the end ---- */

static bool handshaking(const vg_mqttc_t *c)
{
    return c->state == VG_MQTTC_TCP || c->state == VG_MQTTC_TLS || c->state == VG_MQTTC_CONNACK;
}

uint64_t vg_mqttc_due(const vg_mqttc_t *c)
{
    if (handshaking(c) && c->t_ns)
        return c->t_ns;
    if (c->state == VG_MQTTC_UP && c->keepalive_s)
        return c->t_ns + (uint64_t)c->keepalive_s * NS / 2;
    return UINT64_MAX;
}

int vg_mqttc_tick(vg_mqttc_t *c, uint64_t now)
{
    if (handshaking(c) && c->t_ns && now >= c->t_ns)
        return close_with(c, VG_MQTTC_R_TIMEOUT, 0);
    /* Half the keepalive: a ping is never late, however the loop is delayed. */
    if (c->state == VG_MQTTC_UP && c->keepalive_s && now >= c->t_ns + (uint64_t)c->keepalive_s * NS / 2)
        return queue_empty(c, VG_MQTT_PINGREQ, now);
    return VG_OK;
}

void vg_mqttc_disconnect(vg_mqttc_t *c, uint8_t reason)
{
    if (c->state == VG_MQTTC_UP && out_reserve(c, 3) == VG_OK) {
        int n = vg_mqtt_encode_reason(c->out + c->out_len, c->out_cap - c->out_len, level_of(c), VG_MQTT_DISCONNECT,
                                      reason, NULL);
        if (n > 0) {
            c->out_len += (uint32_t)n;
            (void)vg_mqttc_flush(c);
        }
    }
    close_with(c, VG_MQTTC_R_LOCAL, 0);
}

void vg_mqttc_close(vg_mqttc_t *c)
{
    close_with(c, VG_MQTTC_R_LOCAL, 0);
}
