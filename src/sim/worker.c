/* worker.c — see worker.h.
 *
 * Shape of the loop: epoll_wait with a timeout that is the earliest of the
 * heap's next timer, the next progress report, the next connect slot and the
 * phase deadline; then socket events; then every device whose timer is due
 * (send, keepalive ping, or connect timeout), capped per pass so that acks
 * are read between bursts; then one write per connection that queued
 * anything (the before-sleep flush that batches a fast device's events into
 * one system call). EPOLLOUT is armed only while a connection has bytes
 * left over.
 *
 * The MQTT side of every connection (CONNECT/CONNACK, keepalive, the
 * in-flight ring, acks, framing) is mqttc/client.h; this file schedules,
 * renders and counts.
 *
 * Why a device never allocates per event: its output buffer (the client's)
 * is kept and grows only to the largest burst it ever queued, the in-flight
 * rings of all devices are one array for the whole slice (a fixed window of
 * slots per device), and events are rendered from the template in
 * payload.c straight into the output buffer.
 *
 * TLS (--tls). One client SSL_CTX per worker holds the server CA; each
 * connect makes an SSL and reads that device's certificate and key from
 * --cert-dir into it (a few tens of µs, paced with the connects, instead of
 * minutes for 100,000 keys before the first connect), offers the device's
 * last session, and after the handshake drops the certificate and key
 * again (SSL_certs_clear): an established device holds its SSL, the
 * session and nothing else of its identity. Sessions arrive after the
 * handshake (TLS 1.3 tickets) through the context's new-session callback
 * and replace the device's previous one.
 *
 * Bookkeeping invariants: a device is in the heap iff it has a socket or
 * waits to reconnect (ST_WAIT);
 * want_out mirrors the EPOLLOUT bit registered for it; a client's close
 * callback (dev_on_close) is the one place a device connection is torn
 * down, whether the server, a failure or this file closed it. */
#include "sim/worker.h"

#include "alert/alert.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/heap.h"
#include "core/json.h"
#include "core/rlimit.h"
#include "mqtt/codec.h"
#include "mqttc/client.h"
#include "sim/device.h"
#include "sim/hist.h"
#include "sim/ledger.h"
#include "sim/payload.h"
#include "sim/report.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MOD "sim"
#define NS 1000000000ull
#define MS 1000000ull
#define KEEPALIVE_S 60            /* a PINGREQ after half of it without output: a ping is never late */
#define CONNECT_TIMEOUT (10 * NS) /* TCP handshake plus CONNACK */
#define SUB_WAIT (3 * NS)         /* devices start even if the alert subscription is not up by then */
#define MAX_PENDING 1000          /* handshakes in progress; keeps the server's accept backlog from overflowing */
#define OUT_MAX (256u * 1024u)    /* a device's output buffer; beyond it the device waits */
#define DEV_IN_MAX (64u * 1024u)  /* devices receive acks; anything longer is a broken server */
#define SUB_IN_MAX (4u * 1024u * 1024u)
#define READ_CHUNK 65536u
#define TIMER_BUDGET 4096 /* due timers handled per pass before reading sockets again */
#define MAX_EVENTS 1024
#define NO_POS UINT32_MAX

enum { ST_IDLE = 0, ST_HANDSHAKE, ST_UP, ST_CLOSED, ST_WAIT /* closed, reconnects at its timer */ };
enum { SUB_CLOSED = 0, SUB_CONNACK, SUB_SUBACK, SUB_UP };
enum { TAG_DEV = 0, TAG_SUB = 1, TAG_SIG = 2 };
enum { PH_RUN = 0, PH_DRAIN, PH_DONE };
enum { BLOCK_NONE = 0, BLOCK_WINDOW, BLOCK_BUFFER };

typedef struct {
    vg_mqttc_t mq;   /* first: the close callback finds the device from it */
    uint8_t state;   /* ST_*: what the counters have counted it as */
    uint8_t blocked; /* BLOCK_*: why the next send waits */
    uint8_t dirty;   /* in the flush list */
    uint8_t want_out;
    uint32_t heap_pos;
    uint64_t next_send_ns;
    SSL_SESSION *sess; /* --tls: the last session the server gave it (NULL: none yet) */
    vg_simdev_t m;
} sdev_t;

typedef struct {
    vg_mqttc_t mq;
    int state; /* SUB_* */
    int want_out;
    uint64_t deadline_ns; /* CONNACK and SUBACK by then */
} sub_t;

/* The timer heap: min-heap of (time, device) (core/heap.h). An entry
 * carries its key so that sifting never touches the (large, cache-cold)
 * device structs except to record where their entry now sits (heap_pos). */
typedef struct {
    uint64_t t;
    sdev_t *d;
} hent_t;
#define TIMER_LESS(a, b) ((a).t < (b).t)
#define TIMER_MOVED(e, i) ((e).d->heap_pos = (uint32_t)(i))
VG_HEAP_DEFINE(timers, hent_t, TIMER_LESS, TIMER_MOVED)

typedef struct {
    const vg_simworker_cfg_t *cfg;
    int ep, sfd;
    sdev_t *dev;
    uint32_t n;
    timers_t heap;               /* room for every device reserved at setup: a push cannot fail */
    vg_mqttc_flight_t *inflight; /* n * win slots: device i's ring is [i * win, (i + 1) * win) */
    uint32_t win;                /* slots per device */
    vg_mqttc_cfg_t dev_mq, sub_mq;
    uint32_t *dirty;
    uint32_t n_dirty;
    uint32_t next_connect; /* next device to connect, in index order */
    uint32_t pending;      /* handshakes in progress */
    uint32_t n_up;
    uint32_t n_wait; /* devices waiting to reconnect */
    uint32_t n_want_out;
    SSL_CTX *tls; /* --tls: the devices' client context */
    /* --cert-dir: one PEM key decoder for every device's key, writing into
     * keyout. Building OpenSSL 3's decoder chain costs ~0.3 ms, which
     * PEM_read_PrivateKey pays per key; decoding with it costs ~0.05 ms. */
    OSSL_DECODER_CTX *keydec;
    EVP_PKEY *keyout;
    bool tls_ip; /* tls_host is an address (checked as such, no SNI) */
    uint64_t inflight_total;
    uint64_t connects_started;
    uint64_t connect_start_ns;
    vg_simledger_t *ledger;
    sub_t sub;
    uint64_t sub_wait_until;
    vg_simpayload_t tpl;
    vg_simpayload_clock_t clk;
    vg_simdev_cfg_t dcfg;
    uint64_t interval_ns;
    vg_simcounters_t c;
    vg_simhist_t ack, ack_connected, alert;
    /* Set when all n devices were first connected at once; from then on a
     * PUBACK also counts in ack_connected if its publish was sent after
     * all_up_us (mqttc's wrapping µs send time, same clock as now). */
    bool all_up;
    uint32_t all_up_us;
    uint64_t now;   /* CLOCK_MONOTONIC ns, refreshed per wakeup and per event */
    int64_t now_ms; /* wall-clock ms derived from it */
    uint64_t mono0;
    int64_t wall0;
    int phase;
    uint64_t send_end, sent_until, drain_end, next_report, last_signal;
    uint64_t lost_qos0;
    uint8_t *rbuf;
    bool devs_ready; /* dev[] initialised (fd = -1 ...) */
    bool lifecycle;  /* an alert with an "event" arrived: detections will be RESOLVED too */
    bool finishing;  /* finish(): closes are the end of the run, not disconnects */
    bool saying_bye; /* finish(): the DISCONNECT written after a full flush is not a lost event */
    int warned_socket, warned_bind, warned_connack, warned_eps, warned_tls, warned_cred;
} worker_t;

static void tick(worker_t *w)
{
    w->now = vg_clock_mono_ns();
    w->now_ms = w->wall0 + (int64_t)((w->now - w->mono0) / MS);
}

static worker_t *worker_of(const vg_mqttc_cfg_t *cfg)
{
    return cfg->ud;
}

static uint32_t dev_index(worker_t *w, vg_mqttc_t *c)
{
    return (uint32_t)((sdev_t *)((char *)c - offsetof(sdev_t, mq)) - w->dev);
}

/* ---- the timer heap ---- */

/* Inserts device i or moves it to its new time. */
static void heap_set(worker_t *w, uint32_t i, uint64_t t)
{
    sdev_t *d = &w->dev[i];
    if (d->heap_pos == NO_POS) {
        (void)timers_push(&w->heap, (hent_t){t, d}, VG_MEM_SIM); /* reserved: cannot fail */
        return;
    }
    w->heap.v[d->heap_pos].t = t;
    timers_fix(&w->heap, d->heap_pos);
}

static void heap_del(worker_t *w, uint32_t i)
{
    uint32_t pos = w->dev[i].heap_pos;
    if (pos == NO_POS)
        return;
    w->dev[i].heap_pos = NO_POS;
    timers_remove(&w->heap, pos);
}

/* When device i next needs attention. */
/* When device i next needs attention: its next event, or what its client
 * waits for (keepalive ping, handshake deadline). */
static uint64_t dev_due(const worker_t *w, const sdev_t *d)
{
    uint64_t mq = vg_mqttc_due(&d->mq);
    if (w->phase == PH_RUN && d->state == ST_UP && d->blocked == BLOCK_NONE && d->next_send_ns < mq)
        return d->next_send_ns;
    return mq;
}

/* ---- device connections ---- */

static void set_interest(worker_t *w, uint32_t i)
{
    sdev_t *d = &w->dev[i];
    int want = vg_mqttc_wants_write(&d->mq);
    if (want == d->want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u64 = i};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, d->mq.fd, &ev);
    d->want_out = (uint8_t)want;
    w->n_want_out += want ? 1u : (uint32_t)-1;
}

static bool dev_open(const sdev_t *d)
{
    return d->state == ST_HANDSHAKE || d->state == ST_UP;
}

static void count_cf(worker_t *w, int reason)
{
    w->c.connect_failures++;
    w->c.cf[reason]++;
}

/* Which connect failure a close before CONNACK is. A TLS failure's detail
 * is OpenSSL's reason code (mqttc/client.h): the alerts a server sends
 * about a client certificate are told apart from our own refusal of the
 * server's certificate and from everything else. */
static int cf_reason(vg_mqttc_reason_t why, int detail)
{
    switch (why) {
    case VG_MQTTC_R_CONNECT:
        return VG_SIMREPORT_CF_TCP;
    case VG_MQTTC_R_TIMEOUT:
        return VG_SIMREPORT_CF_TIMEOUT;
    case VG_MQTTC_R_REFUSED:
        return VG_SIMREPORT_CF_CONNACK;
    case VG_MQTTC_R_EOF:
    case VG_MQTTC_R_IO:
    case VG_MQTTC_R_DISCONNECT:
        return VG_SIMREPORT_CF_CLOSED;
    case VG_MQTTC_R_TLS:
        switch (detail) {
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
            return VG_SIMREPORT_CF_TLS_UNTRUSTED;
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
            return VG_SIMREPORT_CF_TLS_REVOKED;
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
            return VG_SIMREPORT_CF_TLS_CERT_REFUSED;
        default:
            return VG_SIMREPORT_CF_TLS_OTHER;
        }
    default:
        return VG_SIMREPORT_CF_OTHER;
    }
}

/* Device i no longer has a connection: it waits for its reconnect, or is
 * done for the run. */
static void dev_ended(worker_t *w, uint32_t i)
{
    sdev_t *d = &w->dev[i];
    d->state = ST_CLOSED;
    if (w->cfg->reconnect_s > 0 && w->phase == PH_RUN && !w->finishing) {
        double jitter = 0.9 + 0.2 * vg_simdev_uniform(&d->m);
        d->state = ST_WAIT;
        w->n_wait++;
        heap_set(w, i, w->now + (uint64_t)(w->cfg->reconnect_s * jitter * 1e9));
    }
}

/* The client closed (the server, a failure, or us through vg_mqttc_close):
 * counts the end by what the device was and tears the connection down.
 * Callers that close on purpose have counted already (why is LOCAL). */
static void dev_on_close(vg_mqttc_t *c, vg_mqttc_reason_t why, int detail)
{
    worker_t *w = worker_of(vg_mqttc_cfg(c));
    uint32_t i = dev_index(w, c);
    sdev_t *d = &w->dev[i];
    if (why == VG_MQTTC_R_REFUSED && !w->warned_connack++)
        VG_WARN(MOD, "worker %u: CONNACK refused (return code %d)", w->cfg->worker_id, detail);
    if (why == VG_MQTTC_R_CONNECT && !w->warned_socket++)
        VG_WARN(MOD, "worker %u: connect: %s (further failures counted silently)", w->cfg->worker_id, strerror(detail));
    if (why == VG_MQTTC_R_TLS && !w->warned_tls++) {
        const char *r = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, detail));
        VG_WARN(MOD, "worker %u: TLS: %s (further failures counted silently)", w->cfg->worker_id,
                r ? r : "unknown reason");
    }
    if (why != VG_MQTTC_R_LOCAL && !w->finishing) {
        if (d->state == ST_UP)
            w->c.disconnects++;
        else
            count_cf(w, cf_reason(why, detail));
    }
    close(c->fd);
    heap_del(w, i);
    if (d->want_out)
        w->n_want_out--;
    d->want_out = 0;
    if (d->state == ST_HANDSHAKE)
        w->pending--;
    if (d->state == ST_UP) {
        w->n_up--;
        size_t left = vg_mqttc_pending(c);
        if (w->cfg->qos == 0 && left && !w->saying_bye)
            w->lost_qos0 += (left + w->tpl.pkt_len - 1u) / w->tpl.pkt_len;
    }
    /* Unacked publishes stay counted as sent: they count as failed at the end. */
    w->inflight_total -= vg_mqttc_inflight(c);
    vg_mqttc_deinit(c);
    d->blocked = BLOCK_NONE;
    dev_ended(w, i);
}

/* A handshake still in progress when the send phase ended. */
static void fail_connect(worker_t *w, uint32_t i)
{
    count_cf(w, VG_SIMREPORT_CF_UNFINISHED);
    vg_mqttc_close(&w->dev[i].mq);
}

static void mark_dirty(worker_t *w, uint32_t i)
{
    if (!w->dev[i].dirty) {
        w->dev[i].dirty = 1;
        w->dirty[w->n_dirty++] = i;
    }
}

static void flush_dev(worker_t *w, uint32_t i)
{
    sdev_t *d = &w->dev[i];
    int rc = vg_mqttc_flush(&d->mq);
    if (!dev_open(d))
        return;
    if (rc == VG_OK && d->blocked == BLOCK_BUFFER) {
        d->blocked = BLOCK_NONE;
        heap_set(w, i, dev_due(w, d));
    }
    set_interest(w, i);
}

/* Reads the device's certificate and key into ssl (~0.15 ms: most of it
 * OpenSSL 3 decoding the certificate's public key). */
static bool load_identity(worker_t *w, SSL *ssl, const char *id)
{
    char path[4096];
    bool ok = false;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    BIO *b = NULL;
    snprintf(path, sizeof path, "%s/%s.crt", w->cfg->cert_dir, id);
    b = BIO_new_file(path, "r");
    if (!b || !(x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        goto cleanup;
    BIO_free(b);
    snprintf(path, sizeof path, "%s/%s.key", w->cfg->cert_dir, id);
    b = BIO_new_file(path, "r");
    if (!b)
        goto cleanup;
    if (w->keydec) {
        w->keyout = NULL;
        if (OSSL_DECODER_from_bio(w->keydec, b) == 1)
            k = w->keyout;
        w->keyout = NULL;
    } else {
        k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    }
    if (!k)
        goto cleanup;
    ok = SSL_use_certificate(ssl, x) == 1 && SSL_use_PrivateKey(ssl, k) == 1 && SSL_check_private_key(ssl) == 1;
cleanup:
    if (!ok && !w->warned_cred++) {
        unsigned long e = ERR_peek_error();
        VG_WARN(MOD, "worker %u: device %s: cannot use %s: %s (further failures counted silently)", w->cfg->worker_id,
                id, path, e ? ERR_reason_error_string(e) : strerror(errno));
    }
    ERR_clear_error();
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok;
}

/* A client SSL for device i on fd: the server check, its last session, its
 * certificate. NULL on failure (counted, as credentials or other). */
static SSL *dev_ssl(worker_t *w, uint32_t i, int fd, const char *id)
{
    sdev_t *d = &w->dev[i];
    SSL *ssl = SSL_new(w->tls);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        goto fail;
    SSL_set_app_data(ssl, d);
    SSL_set_connect_state(ssl);
    const char *host = w->cfg->tls_host;
    if (w->tls_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
            goto fail;
    } else if (SSL_set1_host(ssl, host) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1) {
        goto fail;
    }
    if (d->sess && SSL_SESSION_is_resumable(d->sess))
        SSL_set_session(ssl, d->sess);
    if (w->cfg->cert_dir && !load_identity(w, ssl, id)) {
        SSL_free(ssl);
        count_cf(w, VG_SIMREPORT_CF_CREDENTIALS);
        return NULL;
    }
    return ssl;
fail:
    ERR_clear_error();
    SSL_free(ssl);
    count_cf(w, VG_SIMREPORT_CF_OTHER);
    return NULL;
}

static void start_connect(worker_t *w, uint32_t i)
{
    const vg_simworker_cfg_t *cfg = w->cfg;
    sdev_t *d = &w->dev[i];
    uint32_t g = cfg->first + i;
    int one = 1;
    int fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (!w->warned_socket++)
            VG_WARN(MOD, "worker %u: socket: %s (further failures counted silently)", cfg->worker_id, strerror(errno));
        count_cf(w, VG_SIMREPORT_CF_TCP);
        dev_ended(w, i);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cfg->spread_sources) {
        /* Many source addresses, and the port chosen at connect() time, so
         * that 19,000+ connections never exhaust one address's ephemeral
         * ports. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000u | (2u + g % 200u))};
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 && !w->warned_bind++)
            VG_WARN(MOD, "worker %u: bind 127.0.0.%u: %s (connecting from the default address)", cfg->worker_id,
                    2u + g % 200u, strerror(errno));
    }
    char id[VG_SIMPAYLOAD_MAX_PREFIX + 16];
    int n = vg_simpayload_device_id(cfg->prefix, w->tpl.id_width, g, id, sizeof id);
    int rc = connect(fd, (const struct sockaddr *)&cfg->addr, cfg->addr_len);
    if (rc < 0 && errno != EINPROGRESS) {
        if (!w->warned_socket++)
            VG_WARN(MOD, "worker %u: connect: %s (further failures counted silently)", cfg->worker_id, strerror(errno));
        close(fd);
        count_cf(w, VG_SIMREPORT_CF_TCP);
        dev_ended(w, i);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = i};
    if (n < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        count_cf(w, VG_SIMREPORT_CF_OTHER);
        dev_ended(w, i);
        return;
    }
    int src;
    if (w->tls) {
        SSL *ssl = dev_ssl(w, i, fd, id); /* a failure is counted there */
        if (!ssl) {
            close(fd);
            dev_ended(w, i);
            return;
        }
        src = vg_mqttc_start_tls(&d->mq, fd, rc < 0, ssl, id, (size_t)n, w->now);
    } else {
        src = vg_mqttc_start(&d->mq, fd, rc < 0, id, (size_t)n, w->now);
    }
    if (src != VG_OK) {
        close(fd);
        vg_mqttc_deinit(&d->mq);
        count_cf(w, VG_SIMREPORT_CF_OTHER);
        dev_ended(w, i);
        return;
    }
    d->state = ST_HANDSHAKE;
    d->want_out = 1;
    w->n_want_out++;
    w->pending++;
    heap_set(w, i, vg_mqttc_due(&d->mq));
}

static void send_event(worker_t *w, uint32_t i)
{
    sdev_t *d = &w->dev[i];
    const vg_simpayload_t *t = &w->tpl;
    uint8_t *dst;
    uint16_t pid;
    int rc = vg_mqttc_publish_reserve(&d->mq, (uint8_t)w->cfg->qos, t->pkt_len, &dst, &pid);
    if (rc != VG_OK) {
        /* VG_AGAIN: the in-flight window is full; else the buffer. */
        d->blocked = rc == VG_AGAIN ? BLOCK_WINDOW : BLOCK_BUFFER;
        w->c.deferred++;
        return;
    }
    vg_simdev_sample_t s;
    vg_simdev_next(&d->m, &w->dcfg, w->now_ms, &s);
    vg_simpayload_render(t, &w->clk, dst, pid, &d->m, &s);
    vg_mqttc_publish_commit(&d->mq, t->pkt_len, w->now);
    if (w->cfg->qos)
        w->inflight_total++;
    w->c.injected += s.episode_start;
    if (vg_simledger_sent(w->ledger, i, &s, w->now) != VG_OK && !w->warned_eps++)
        VG_WARN(MOD, "worker %u: out of memory recording episodes; unrecorded ones count as missed", w->cfg->worker_id);
    w->c.sent++;
    mark_dirty(w, i);
    double jitter = 0.9 + 0.2 * vg_simdev_uniform(&d->m);
    d->next_send_ns += (uint64_t)((double)w->interval_ns * jitter);
    /* A device that fell behind (CPU saturated) catches up, but never by
     * more than a second's worth of events. */
    if (d->next_send_ns + NS < w->now)
        d->next_send_ns = w->now;
}

static void dev_on_ack(vg_mqttc_t *c, const vg_mqttc_ack_t *a)
{
    worker_t *w = worker_of(vg_mqttc_cfg(c));
    uint32_t i = dev_index(w, c);
    sdev_t *d = &w->dev[i];
    vg_simhist_record(&w->ack, a->latency_us);
    if (w->all_up && (int32_t)(a->sent_us - w->all_up_us) >= 0)
        vg_simhist_record(&w->ack_connected, a->latency_us);
    w->inflight_total--;
    w->c.acked++;
    if (d->blocked == BLOCK_WINDOW) {
        d->blocked = BLOCK_NONE;
        heap_set(w, i, dev_due(w, d));
    }
}

static void dev_on_connack(vg_mqttc_t *c, bool session_present, const vg_mqtt_props_t *props)
{
    worker_t *w = worker_of(vg_mqttc_cfg(c));
    uint32_t i = dev_index(w, c);
    sdev_t *d = &w->dev[i];
    w->pending--;
    d->state = ST_UP;
    w->n_up++;
    w->c.connected++;
    if (w->n_up == w->n && !w->all_up) {
        w->all_up = true;
        w->all_up_us = (uint32_t)(w->now / 1000);
    }
    /* A random phase within the first interval spreads the fleet's sends;
     * a device with a forced episode starts early, or a long interval could
     * push its episode past the end of a short run. */
    uint64_t phase = w->interval_ns;
    if (d->m.force_at >= 0 && phase > 2 * NS)
        phase = 2 * NS;
    d->next_send_ns = w->now + (uint64_t)((double)phase * vg_simdev_uniform(&d->m));
    heap_set(w, i, dev_due(w, d));
}

/* Our side of the TLS handshake is done: count it, and let go of the
 * certificate and key (the handshake was their only use). */
static void dev_on_tls(vg_mqttc_t *c)
{
    worker_t *w = worker_of(vg_mqttc_cfg(c));
    SSL *ssl = vg_mqttc_ssl(c);
    w->c.tls_handshakes++;
    w->c.tls_resumed += SSL_session_reused(ssl) == 1;
    SSL_certs_clear(ssl);
}

/* The context's new-session callback: a session (TLS 1.3: a ticket, after
 * the handshake) for the device the SSL belongs to; it replaces the one the
 * device had. Returns 1: the session is the device's now. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    sdev_t *d = SSL_get_app_data(ssl);
    if (!d)
        return 0;
    SSL_SESSION_free(d->sess);
    d->sess = sess;
    return 1;
}

static void dev_event(worker_t *w, uint32_t i, uint32_t events)
{
    sdev_t *d = &w->dev[i];
    if (!dev_open(d))
        return; /* closed earlier in this batch */
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        vg_mqttc_on_readable(&d->mq, w->now);
    if (dev_open(d) && (events & EPOLLOUT))
        vg_mqttc_on_writable(&d->mq, w->now);
    if (dev_open(d))
        flush_dev(w, i); /* acks the reads queued, and EPOLLOUT as the buffer says */
}

static void dev_timer(worker_t *w, uint32_t i)
{
    sdev_t *d = &w->dev[i];
    if (d->state == ST_WAIT) {
        heap_del(w, i);
        w->n_wait--;
        d->state = ST_CLOSED;
        w->c.reconnects++;
        start_connect(w, i);
        return;
    }
    if (d->state == ST_UP && w->phase == PH_RUN && d->blocked == BLOCK_NONE && w->now >= d->next_send_ns) {
        send_event(w, i);
    } else {
        size_t before = vg_mqttc_pending(&d->mq);
        if (vg_mqttc_tick(&d->mq, w->now) != VG_OK)
            return; /* the handshake deadline passed: closed and counted (and perhaps waiting to reconnect) */
        if (vg_mqttc_pending(&d->mq) != before)
            mark_dirty(w, i); /* a PINGREQ */
    }
    heap_set(w, i, dev_due(w, d));
}

static void run_timers(worker_t *w)
{
    for (int budget = TIMER_BUDGET; budget > 0 && w->heap.len; budget--) {
        hent_t e = timers_top(&w->heap);
        if (e.t > w->now)
            return;
        dev_timer(w, (uint32_t)(e.d - w->dev));
    }
}

static void flush_dirty(worker_t *w)
{
    for (uint32_t k = 0; k < w->n_dirty; k++) {
        uint32_t i = w->dirty[k];
        w->dev[i].dirty = 0;
        if (w->dev[i].state == ST_UP || w->dev[i].state == ST_HANDSHAKE)
            flush_dev(w, i);
    }
    w->n_dirty = 0;
}

static void pace_connects(worker_t *w)
{
    if (w->next_connect >= w->n)
        return;
    if (w->sub.state != SUB_UP && w->sub.state != SUB_CLOSED && w->now < w->sub_wait_until)
        return; /* give the alert subscription a head start */
    if (!w->connect_start_ns)
        w->connect_start_ns = w->now;
    double rate = w->cfg->connect_rate;
    double burst = rate / 50 < 1 ? 1 : rate / 50;
    double allowed = (double)(w->now - w->connect_start_ns) / 1e9 * rate + burst;
    while (w->next_connect < w->n && w->pending < MAX_PENDING && (double)w->connects_started < allowed) {
        w->connects_started++;
        start_connect(w, w->next_connect++);
    }
}

/* ---- the alert subscriber ---- */

static void sub_close(worker_t *w, const char *why)
{
    sub_t *s = &w->sub;
    if (s->state != SUB_CLOSED && why)
        VG_WARN(MOD, "worker %u: alert subscriber: %s; alerts are no longer counted", w->cfg->worker_id, why);
    s->state = SUB_CLOSED;
    vg_mqttc_close(&s->mq); /* sub_on_close cleans up */
    vg_mqttc_deinit(&s->mq);
}

static void sub_on_close(vg_mqttc_t *c, vg_mqttc_reason_t why, int detail)
{
    worker_t *w = worker_of(vg_mqttc_cfg(c));
    sub_t *s = &w->sub;
    if (why == VG_MQTTC_R_CONNECT) {
        VG_WARN(MOD, "worker %u: alert subscriber: connect: %s", w->cfg->worker_id, strerror(detail));
        s->state = SUB_CLOSED;
    } else if (why != VG_MQTTC_R_LOCAL && s->state != SUB_CLOSED) {
        VG_WARN(MOD, "worker %u: alert subscriber: %s; alerts are no longer counted", w->cfg->worker_id,
                vg_mqttc_reason_name(why));
        s->state = SUB_CLOSED;
    }
    if (c->fd >= 0)
        close(c->fd);
    vg_mqttc_deinit(c);
}

static void sub_flush(worker_t *w)
{
    sub_t *s = &w->sub;
    vg_mqttc_flush(&s->mq);
    if (s->state == SUB_CLOSED)
        return; /* a failed write closed it */
    int want = vg_mqttc_wants_write(&s->mq);
    if (want != s->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u64 = (uint64_t)TAG_SUB << 32};
        epoll_ctl(w->ep, EPOLL_CTL_MOD, s->mq.fd, &ev);
        s->want_out = want;
    }
}

static void sub_on_connack(vg_mqttc_t *c, bool session_present, const vg_mqtt_props_t *props)
{
    worker_t *w = worker_of(vg_mqttc_cfg(c));
    static const char filter[] = "alerts/#";
    vg_mqtt_sub_t sub = {.filter = {(const uint8_t *)filter, sizeof filter - 1}, .qos = 1};
    if (vg_mqttc_subscribe(c, &sub, 1, NULL, NULL, w->now) != VG_OK) {
        sub_close(w, "cannot encode SUBSCRIBE");
        return;
    }
    w->sub.state = SUB_SUBACK;
}

static void sub_on_suback(vg_mqttc_t *c, uint16_t packet_id, const uint8_t *rcs, size_t n)
{
    worker_t *w = worker_of(vg_mqttc_cfg(c));
    if (n != 1 || rcs[0] == VG_MQTT_SUBACK_FAILURE) {
        sub_close(w, "SUBSCRIBE alerts/# refused");
        return;
    }
    w->sub.state = SUB_UP;
    w->c.alert_sub_ok = 1;
}

static void on_alert(worker_t *w, const vg_mqtt_publish_t *p);

static void sub_on_message(vg_mqttc_t *c, const vg_mqtt_publish_t *m)
{
    on_alert(worker_of(vg_mqttc_cfg(c)), m);
}

static void sub_start(worker_t *w)
{
    const vg_simworker_cfg_t *cfg = w->cfg;
    sub_t *s = &w->sub;
    int one = 1;
    s->state = SUB_CLOSED;
    if (!cfg->sub_addr_len)
        return; /* --alerts-connect off */
    int fd = socket(cfg->sub_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        VG_WARN(MOD, "worker %u: alert subscriber: socket: %s", cfg->worker_id, strerror(errno));
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)TAG_SUB << 32};
    int rc = connect(fd, (const struct sockaddr *)&cfg->sub_addr, cfg->sub_addr_len);
    if ((rc < 0 && errno != EINPROGRESS) || epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        VG_WARN(MOD, "worker %u: alert subscriber: connect: %s", cfg->worker_id, strerror(errno));
        close(fd);
        return;
    }
    char id[VG_SIMPAYLOAD_MAX_PREFIX + 40];
    int n = snprintf(id, sizeof id, "%salerts-w%u-%ld", cfg->prefix, cfg->worker_id, (long)getpid());
    vg_mqttc_init(&s->mq, &w->sub_mq, NULL, 0);
    if (vg_mqttc_start(&s->mq, fd, rc < 0, id, (size_t)n, w->now) != VG_OK) {
        VG_WARN(MOD, "worker %u: alert subscriber: cannot encode CONNECT", cfg->worker_id);
        close(fd);
        vg_mqttc_deinit(&s->mq);
        return;
    }
    s->state = SUB_CONNACK;
    s->want_out = 1;
    s->deadline_ns = w->now + CONNECT_TIMEOUT;
}

static void sub_event(worker_t *w, uint32_t events)
{
    sub_t *s = &w->sub;
    if (s->state == SUB_CLOSED)
        return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        vg_mqttc_on_readable(&s->mq, w->now);
    if (s->state != SUB_CLOSED && (events & EPOLLOUT))
        vg_mqttc_on_writable(&s->mq, w->now);
    if (s->state != SUB_CLOSED)
        sub_flush(w);
}

/* Once a second: handshake deadline and keepalive of the subscriber. */
static void sub_housekeeping(worker_t *w)
{
    sub_t *s = &w->sub;
    if (s->state == SUB_CLOSED)
        return;
    if (s->state != SUB_UP && w->now > s->deadline_ns) {
        sub_close(w, "no CONNACK/SUBACK in time");
        return;
    }
    if (vg_mqttc_tick(&s->mq, w->now) == VG_OK)
        sub_flush(w);
}

/* Parses "<prefix><digits>" into this worker's local device index. */
static bool local_device(const worker_t *w, const char *id, size_t len, uint32_t *local)
{
    size_t plen = strlen(w->cfg->prefix);
    if (len <= plen || len - plen > 10 || memcmp(id, w->cfg->prefix, plen) != 0)
        return false;
    uint64_t v = 0;
    for (size_t k = plen; k < len; k++) {
        if (id[k] < '0' || id[k] > '9')
            return false;
        v = v * 10 + (uint64_t)(id[k] - '0');
    }
    if (v < w->cfg->first || v >= (uint64_t)w->cfg->first + w->n)
        return false;
    *local = (uint32_t)(v - w->cfg->first);
    return true;
}

static bool str_is(const vg_json_member_t *m, const char *s)
{
    size_t n = strlen(s);
    return m && m->type == VG_JSON_STRING && m->raw_len == n && memcmp(m->raw, s, n) == 0;
}

/* The ledger's name for the event of an alert's life (alert.h's kinds). */
static int ledger_event(const vg_alert_seen_t *a)
{
    switch (a->kind) {
    case VG_AEV_OPEN:
        return VG_SIMLEDGER_EV_OPEN;
    case VG_AEV_UPDATE:
        return VG_SIMLEDGER_EV_UPDATE;
    case VG_AEV_ACK:
        return VG_SIMLEDGER_EV_ACK;
    case VG_AEV_RESOLVED:
        return VG_SIMLEDGER_EV_RESOLVED;
    default:
        return VG_SIMLEDGER_EV_OTHER;
    }
}

/* Is this a data-quality alert? The lifecycle format says so in
 * "category"; the names are the fallback for a payload without it. */
static bool quality_alert(const vg_json_member_t *category, const vg_json_member_t *type)
{
    static const char *const names[] = {"SENSOR_IMPOSSIBLE_VALUE", "SENSOR_FLATLINE", "DATA_GAP",  "DEVICE_OFFLINE",
                                        "OUT_OF_ORDER_TIMESTAMP",  "STALE_DATA",      "CLOCK_SKEW"};
    if (category && category->key)
        return str_is(category, "data_quality");
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (str_is(type, names[k]))
            return true;
    return false;
}

/* The episode type an extreme-value alert detects (the lifecycle's names
 * and the old threshold detector's), 0 for any other type. */
static int extreme_type(const vg_json_member_t *type)
{
    if (str_is(type, "EXTREME_HIGH_HR") || str_is(type, "HIGH_HEART_RATE"))
        return VG_SIMDEV_HIGH;
    if (str_is(type, "EXTREME_LOW_HR") || str_is(type, "LOW_HEART_RATE"))
        return VG_SIMDEV_LOW;
    return 0;
}

/* One alert event: count it if it is about one of our devices, judge it
 * against that device's episodes and, for a new alert, measure how long
 * after the event it names it came. */
static void on_alert(worker_t *w, const vg_mqtt_publish_t *p)
{
    vg_alert_seen_t f;
    vg_alert_json_read((const char *)p->payload.p, p->payload.len, &f); /* unreadable: all absent, an OPEN */
    const vg_json_member_t *type = f.type.key ? &f.type : NULL;
    uint32_t i;
    if (f.device_id.key && f.device_id.type == VG_JSON_STRING) {
        if (!local_device(w, f.device_id.raw, f.device_id.raw_len, &i))
            return;
    } else {
        /* Unreadable payload: the topic alerts/<deviceId> still says whose. */
        static const char pre[] = "alerts/";
        if (p->topic.len <= sizeof pre - 1 || memcmp(p->topic.p, pre, sizeof pre - 1) != 0 ||
            !local_device(w, (const char *)p->topic.p + sizeof pre - 1, p->topic.len - (sizeof pre - 1), &i))
            return;
    }
    w->c.alerts_received++;
    vg_simledger_alert_t a = {.event = ledger_event(&f), .alert_id = f.alert_id, .ts_ms = f.event_time_ms};
    if (f.lifecycle)
        w->lifecycle = true;
    if (a.event != VG_SIMLEDGER_EV_OPEN) {
        uint64_t unused;
        if (!quality_alert(&f.category, type) && f.has_event_time &&
            vg_simledger_alert(w->ledger, i, &a, &unused) == VG_SIMLEDGER_RESOLVED)
            w->c.resolved++;
        w->c.alert_followups++;
        return;
    }
    if (quality_alert(&f.category, type)) {
        /* Gaps and offline devices are expected while a run stops; they
         * are reported, never judged. */
        w->c.alerts_opened++;
        w->c.quality_alerts++;
        return;
    }
    a.type = extreme_type(type);
    if (!type || !f.has_event_time) {
        w->c.alerts_opened++;
        w->c.false_alerts++;
        return;
    }
    uint64_t sent_ns;
    vg_simledger_verdict_t v = vg_simledger_alert(w->ledger, i, &a, &sent_ns);
    if (v == VG_SIMLEDGER_FOLLOWUP) {
        w->c.alert_followups++; /* the same OPEN again (redelivered) */
        return;
    }
    w->c.alerts_opened++;
    w->c.detected += v == VG_SIMLEDGER_DETECTED;
    w->c.duplicate_alerts += v == VG_SIMLEDGER_DUPLICATE;
    w->c.secondary_alerts += v == VG_SIMLEDGER_SECONDARY;
    w->c.false_alerts += v == VG_SIMLEDGER_FALSE;
    if (sent_ns)
        vg_simhist_record(&w->alert, (w->now - sent_ns) / 1000);
}

/* ---- phases and reports ---- */

static void enter_drain(worker_t *w, double seconds)
{
    if (w->phase != PH_RUN)
        return;
    w->phase = PH_DRAIN;
    w->sent_until = w->now;
    w->drain_end = w->now + (uint64_t)(seconds * 1e9);
    /* Handshakes still in progress and devices never started did not
     * connect within the run. */
    for (uint32_t i = 0; i < w->n; i++) {
        if (w->dev[i].state == ST_HANDSHAKE) {
            fail_connect(w, i);
        } else if (w->dev[i].state == ST_WAIT) {
            heap_del(w, i);
            w->dev[i].state = ST_CLOSED;
        }
    }
    w->n_wait = 0;
    w->c.connect_failures += w->n - w->next_connect;
    w->c.cf[VG_SIMREPORT_CF_UNFINISHED] += w->n - w->next_connect;
    w->next_connect = w->n;
}

static void snapshot(worker_t *w, vg_simcounters_t *c)
{
    *c = w->c;
    uint64_t end = w->phase == PH_RUN ? w->now : w->sent_until;
    c->send_us = end > w->cfg->t0_ns ? (end - w->cfg->t0_ns) / 1000 : 0;
}

static void send_progress(worker_t *w)
{
    vg_simcounters_t c;
    snapshot(w, &c);
    if (vg_simreport_write(w->cfg->report_fd, VG_SIMREPORT_PROGRESS, &c, &w->ack, &w->ack_connected, &w->alert, NULL,
                           0) != VG_OK)
        VG_DEBUG(MOD, "worker %u: progress report not delivered", w->cfg->worker_id);
}

static int send_final(worker_t *w)
{
    vg_simcounters_t c;
    snapshot(w, &c);
    vg_simepisode_t *eps = NULL;
    size_t n = w->ledger ? vg_simledger_episodes(w->ledger) : 0;
    c.episodes_cut = w->ledger ? vg_simledger_cut(w->ledger) : 0;
    if (n) {
        eps = vg_calloc(VG_MEM_SIM, n, sizeof *eps);
        if (!eps)
            n = 0; /* the counts still travel; only the missed-episode list is lost */
        else
            vg_simledger_export(w->ledger, w->cfg->first, eps);
    }
    int rc =
        vg_simreport_write(w->cfg->report_fd, VG_SIMREPORT_FINAL, &c, &w->ack, &w->ack_connected, &w->alert, eps, n);
    vg_free(eps);
    return rc;
}

/* Says goodbye politely (DISCONNECT, best effort) and counts the losses. */
static void finish(worker_t *w)
{
    w->finishing = true; /* a connection failing now is not a disconnect of the run */
    for (uint32_t i = 0; i < w->n; i++) {
        sdev_t *d = &w->dev[i];
        if (d->state == ST_UP && vg_mqttc_flush(&d->mq) == VG_OK) {
            w->saying_bye = true;
            vg_mqttc_disconnect(&d->mq, 0);
            w->saying_bye = false;
        }
        if (d->state == ST_UP || d->state == ST_HANDSHAKE)
            vg_mqttc_close(&d->mq); /* counts what is still unwritten (QoS 0) */
    }
    sub_close(w, NULL);
    w->c.failed = w->cfg->qos ? w->c.sent - w->c.acked : w->lost_qos0;
}

static void on_signal(worker_t *w)
{
    struct signalfd_siginfo si;
    while (read(w->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (w->phase == PH_RUN) {
            /* Ctrl-C: stop sending, drain briefly. */
            enter_drain(w, w->cfg->drain_s < 1.0 ? w->cfg->drain_s : 1.0);
            w->last_signal = w->now;
        } else if (w->now - w->last_signal > NS / 2) {
            /* A second one (not the terminal's copy of the parent's
             * forward, which arrives together with the first) ends the
             * drain. */
            w->phase = PH_DONE;
        }
    }
}

static void step_phase(worker_t *w)
{
    if (w->phase == PH_RUN) {
        bool nothing_left =
            w->next_connect >= w->n && w->pending == 0 && w->n_up == 0 && w->n_wait == 0 && w->connects_started;
        if (w->now >= w->send_end || nothing_left)
            enter_drain(w, nothing_left ? 0.0 : w->cfg->drain_s);
    }
    if (w->phase == PH_DRAIN) {
        /* With the alert lifecycle, the RESOLVED of the last detections
         * is worth the wait too (it follows the episode's last sample). */
        bool alerts_in = w->c.detected == w->c.injected && (!w->lifecycle || w->c.resolved == w->c.detected);
        bool quiet = w->inflight_total == 0 && w->n_want_out == 0 && (alerts_in || w->sub.state != SUB_UP);
        if (w->now >= w->drain_end || quiet)
            w->phase = PH_DONE;
    }
    if (w->now >= w->next_report) {
        if (w->phase != PH_DONE)
            send_progress(w);
        sub_housekeeping(w);
        while (w->next_report <= w->now)
            w->next_report += NS;
    }
}

static int timeout_ms(const worker_t *w)
{
    uint64_t next = w->now + NS;
    if (w->heap.len && timers_top(&w->heap).t < next)
        next = timers_top(&w->heap).t;
    if (w->next_report < next)
        next = w->next_report;
    if (w->phase == PH_RUN) {
        if (w->send_end < next)
            next = w->send_end;
        if (w->next_connect < w->n && w->pending < MAX_PENDING) {
            uint64_t slot = w->now + MS;
            if (w->sub.state != SUB_UP && w->sub.state != SUB_CLOSED && w->sub_wait_until > w->now)
                slot = w->sub_wait_until;
            if (slot < next)
                next = slot;
        }
    } else if (w->drain_end < next) {
        next = w->drain_end;
    }
    if (w->n_dirty)
        return 0;
    return next <= w->now ? 0 : (int)((next - w->now + MS - 1) / MS);
}

/* Enough in-flight slots per device for ~2 s of its events, a power of two
 * in [8, 256], and at most 2M slots (24 MB) per worker. */
static uint32_t window_for(double interval_s, uint32_t n)
{
    double want = 2.0 / interval_s + 4;
    uint32_t win = 8;
    while (win < want && win < 256)
        win <<= 1;
    while (win > 8 && (uint64_t)win * n > (1u << 21))
        win >>= 1;
    return win;
}

/* The devices' TLS client context: TLS 1.2+, the server verified against
 * cfg->tls_ca, sessions kept by the devices (not in OpenSSL's cache), idle
 * connections without read/write buffers, an EOF without close_notify a
 * plain close. */
static int tls_setup(worker_t *w)
{
    const vg_simworker_cfg_t *cfg = w->cfg;
    struct in6_addr a6;
    w->tls_ip = inet_pton(AF_INET, cfg->tls_host, &a6) == 1 || inet_pton(AF_INET6, cfg->tls_host, &a6) == 1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    w->tls = ctx;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        goto fail;
    if (cfg->tls_ca ? SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1
                    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        VG_ERROR(MOD, "worker %u: cannot load the CA file %s: %s", cfg->worker_id,
                 cfg->tls_ca ? cfg->tls_ca : "(default)", ERR_reason_error_string(ERR_peek_error()));
        ERR_clear_error();
        return VG_EINVAL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* MQTT servers close TCP without close_notify (a takeover, a kick,
     * mosquitto always): by default OpenSSL 3 takes that EOF for a fatal
     * error and marks the session not resumable, which would make every
     * reconnect a full handshake. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    if (cfg->cert_dir) /* without it, each key is read the slow way */
        w->keydec =
            OSSL_DECODER_CTX_new_for_pkey(&w->keyout, "PEM", NULL, NULL, OSSL_KEYMGMT_SELECT_KEYPAIR, NULL, NULL);
    return VG_OK;
fail:
    VG_ERROR(MOD, "worker %u: cannot create the TLS context: %s", cfg->worker_id,
             ERR_reason_error_string(ERR_peek_error()));
    ERR_clear_error();
    return VG_ENOMEM;
}

static int setup(worker_t *w, const vg_simworker_cfg_t *cfg)
{
    w->cfg = cfg;
    w->n = cfg->count;
    w->ep = -1;
    w->sfd = -1;
    w->sub.state = SUB_CLOSED;
    vg_mqttc_init(&w->sub.mq, &w->sub_mq, NULL, 0);
    vg_simhist_init(&w->ack);
    vg_simhist_init(&w->ack_connected);
    vg_simhist_init(&w->alert);
    w->c.devices = cfg->count;
    w->mono0 = vg_clock_mono_ns();
    w->wall0 = vg_clock_wall_ms();
    tick(w);
    w->interval_ns = (uint64_t)(cfg->interval_s * 1e9);
    if (w->interval_ns < 1000)
        w->interval_ns = 1000;
    w->send_end = cfg->t0_ns + (uint64_t)(cfg->duration_s * 1e9);
    w->next_report = cfg->t0_ns + NS;
    vg_simdev_cfg_init(&w->dcfg, cfg->interval_s, cfg->anomaly_rate);
    vg_simdev_cfg_sustain(&w->dcfg, cfg->sustain_s > 0 ? cfg->sustain_s : VG_SIMDEV_SUSTAIN_S);
    /* Devices stop sending at send_end; an episode that could not finish
     * (and be resolved) by then would count as missed for no fault of the
     * server, so none starts that late. */
    w->dcfg.end_ms = w->wall0 + ((int64_t)w->send_end - (int64_t)w->mono0) / (int64_t)MS;

    /* sim.c warns when a worker's slice cannot fit under the hard limit. */
    (void)vg_rlimit_raise_nofile(0, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    w->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->sfd < 0 || w->ep < 0)
        return VG_EIO;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)TAG_SIG << 32};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->sfd, &ev) < 0)
        return VG_EIO;

    int rc = vg_simpayload_init(&w->tpl, cfg->topic, cfg->prefix, vg_simpayload_id_width(cfg->fleet), cfg->qos);
    if (rc != VG_OK)
        return rc;
    if (cfg->tls && (rc = tls_setup(w)) != VG_OK)
        return rc;
    w->win = window_for(cfg->interval_s, w->n);
    w->dev = vg_calloc(VG_MEM_SIM, w->n ? w->n : 1, sizeof *w->dev);
    w->dirty = vg_calloc(VG_MEM_SIM, w->n ? w->n : 1, sizeof *w->dirty);
    w->inflight = cfg->qos ? vg_calloc(VG_MEM_SIM, (size_t)w->n * w->win + 1, sizeof *w->inflight) : NULL;
    w->rbuf = vg_malloc(VG_MEM_SIM, READ_CHUNK + 16);
    w->ledger = vg_simledger_new(w->n, cfg->interval_s);
    if (!w->dev || !w->ledger || !w->dirty || (cfg->qos && !w->inflight) || !w->rbuf)
        return VG_ENOMEM;
    rc = timers_reserve(&w->heap, w->n, VG_MEM_SIM); /* every device at once: heap_set never allocates */
    if (rc != VG_OK)
        return rc;
    w->dev_mq = (vg_mqttc_cfg_t){
        .level = VG_MQTT_V311,
        .keepalive_s = KEEPALIVE_S,
        .connect_timeout_ns = CONNECT_TIMEOUT,
        .max_packet = DEV_IN_MAX,
        .out_max = OUT_MAX,
        .out_initial = 1024, /* CONNECT, then one event (~560 bytes) and its neighbours */
        .scratch = w->rbuf,
        .scratch_len = READ_CHUNK,
        .ud = w,
        .on_connack = dev_on_connack,
        .on_ack = dev_on_ack,
        .on_close = dev_on_close,
        .on_tls = dev_on_tls,
    };
    w->sub_mq = w->dev_mq;
    w->sub_mq.connect_timeout_ns = 0; /* sub_housekeeping: CONNACK and SUBACK */
    w->sub_mq.max_packet = SUB_IN_MAX / 2;
    w->sub_mq.on_connack = sub_on_connack;
    w->sub_mq.on_suback = sub_on_suback;
    w->sub_mq.on_message = sub_on_message;
    w->sub_mq.on_ack = NULL;
    w->sub_mq.on_close = sub_on_close;
    w->sub_mq.on_tls = NULL;
    for (uint32_t i = 0; i < w->n; i++) {
        sdev_t *d = &w->dev[i];
        vg_mqttc_init(&d->mq, &w->dev_mq, w->inflight ? &w->inflight[(size_t)i * w->win] : NULL, (uint16_t)w->win);
        d->heap_pos = NO_POS;
        vg_simdev_init(&d->m, cfg->seed, cfg->first + i);
    }
    w->devs_ready = true;

    /* A few devices spread over the fleet get an episode early so that
     * short tests always exercise detection: HIGH, LOW, HIGH. They start at
     * the second sample when there is time for it, else at the first (and
     * not at all if the run is shorter than an episode: see end_ms). */
    bool force = cfg->fleet >= 50 && cfg->anomaly_rate > 0;
    double room_s = (double)vg_simdev_episode_room_ms(&w->dcfg) / 1000.0;
    uint32_t at = cfg->interval_s + room_s < cfg->duration_s - 2 ? 1 : 0;
    for (uint32_t k = 0; force && k < 3; k++) {
        uint32_t g = (uint32_t)((2ull * k + 1) * cfg->fleet / 6);
        if (g >= cfg->first && g - cfg->first < w->n)
            vg_simdev_force(&w->dev[g - cfg->first].m, at, k == 1 ? VG_SIMDEV_LOW : VG_SIMDEV_HIGH);
    }
    sub_start(w);
    w->sub_wait_until = w->now + SUB_WAIT;
    return VG_OK;
}

static void teardown(worker_t *w)
{
    if (w->devs_ready) {
        for (uint32_t i = 0; i < w->n; i++) {
            if (dev_open(&w->dev[i]))
                vg_mqttc_close(&w->dev[i].mq);
            SSL_SESSION_free(w->dev[i].sess);
        }
    }
    SSL_CTX_free(w->tls);
    OSSL_DECODER_CTX_free(w->keydec);
    sub_close(w, NULL);
    if (w->ep >= 0)
        close(w->ep);
    if (w->sfd >= 0)
        close(w->sfd);
    vg_free(w->dev);
    timers_free(&w->heap);
    vg_free(w->dirty);
    vg_free(w->inflight);
    vg_free(w->rbuf);
    vg_simledger_free(w->ledger);
}

int vg_simworker_run(const vg_simworker_cfg_t *cfg)
{
    struct epoll_event evs[MAX_EVENTS];
    worker_t *w = vg_calloc(VG_MEM_SIM, 1, sizeof *w);
    if (!w)
        return VG_ENOMEM;
    int rc = setup(w, cfg);
    if (rc != VG_OK) {
        VG_ERROR(MOD, "worker %u: cannot start: %s", cfg->worker_id, vg_strerror(rc));
        /* Still report, so the parent counts these devices as failed. */
        w->c.connect_failures = cfg->count;
        w->c.cf[VG_SIMREPORT_CF_OTHER] = cfg->count;
        w->phase = PH_DONE;
        goto cleanup;
    }
    while (w->phase != PH_DONE) {
        tick(w);
        step_phase(w);
        if (w->phase == PH_DONE)
            break;
        if (w->phase == PH_RUN)
            pace_connects(w);
        run_timers(w);
        flush_dirty(w);
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout_ms(w));
        if (n < 0 && errno != EINTR) {
            VG_ERROR(MOD, "worker %u: epoll_wait: %s", cfg->worker_id, strerror(errno));
            rc = VG_EIO;
            break;
        }
        for (int k = 0; k < n; k++) {
            uint32_t tag = (uint32_t)(evs[k].data.u64 >> 32);
            tick(w);
            if (tag == TAG_DEV)
                dev_event(w, (uint32_t)evs[k].data.u64, evs[k].events);
            else if (tag == TAG_SUB)
                sub_event(w, evs[k].events);
            else
                on_signal(w);
        }
    }
    tick(w);
    if (w->phase == PH_RUN)
        enter_drain(w, 0); /* the loop failed: account as if the run ended now */
    finish(w);

cleanup:;
    int wrc = send_final(w);
    if (wrc != VG_OK && rc == VG_OK)
        rc = wrc;
    teardown(w);
    vg_free(w);
    return rc;
}
