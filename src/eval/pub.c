/* pub.c — see pub.h.
 *
 * The MQTT side of each connection is mqttc/client.h (beside its in-flight
 * ring, gidx holds each publish's index in the global ring); this file keeps
 * the global window and the lead limit (pub.h). Writes are batched:
 * vg_evalpub_publish only appends to the connection's output buffer and
 * puts it on the dirty list; the buffers are written when the dirty list
 * grows past FLUSH_EVERY publishes, when a window is full and at every
 * poll — so a burst costs one send() per connection instead of one per
 * message. EPOLLOUT is armed only while a connection has bytes left. */
#include "eval/pub.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "mqtt/codec.h"
#include "mqttc/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define FLUSH_EVERY 2048
#define OUT_SOFT_MAX (1u << 20) /* past this a connection's buffer is written before more is queued */
#define MAX_EVENTS 256

typedef struct {
    vg_mqttc_t mq;
    bool dirty, want_out;
    vg_mqttc_flight_t *ring; /* the client's in-flight ring */
    uint32_t *gidx;          /* per ring slot: the publish's index in the global ring */
} conn_t;

/* One unacknowledged publish, in publication order. */
typedef struct {
    int64_t arrival_ms;
    uint8_t acked;
} flight_t;

struct vg_evalpub {
    vg_evalpub_opts_t o;
    flight_t *ring; /* global_window entries: [tail, tail + count) are in flight */
    uint32_t ring_tail, ring_count;
    char *topic;
    size_t topic_len;
    int ep;
    conn_t *c;
    uint32_t n;
    vg_mqttc_cfg_t mq;
    uint32_t *dirty;
    uint32_t n_dirty;
    uint32_t queued_since_flush;
    uint64_t inflight, sent, acked;
    uint32_t up;
    uint8_t *rbuf;
    const char *err;
};

static void fail(vg_evalpub_t *p, const char *why)
{
    if (!p->err)
        p->err = why;
}

static void on_connack(vg_mqttc_t *c, bool session_present, const vg_mqtt_props_t *props)
{
    vg_evalpub_t *p = vg_mqttc_cfg(c)->ud;
    p->up++;
}

/* PUBACKs come in PUBLISH order per connection; the global ring moves
 * when its oldest entry is acknowledged. */
static void on_ack(vg_mqttc_t *c, const vg_mqttc_ack_t *a)
{
    vg_evalpub_t *p = vg_mqttc_cfg(c)->ud;
    const conn_t *conn = (const conn_t *)((const char *)c - offsetof(conn_t, mq));
    p->ring[conn->gidx[a->slot]].acked = 1;
    while (p->ring_count && p->ring[p->ring_tail].acked) {
        p->ring_tail = (p->ring_tail + 1) % p->o.global_window;
        p->ring_count--;
    }
    p->inflight--;
    p->acked++;
}

static void on_stray_ack(vg_mqttc_t *c, uint8_t type, uint16_t packet_id)
{
    fail(vg_mqttc_cfg(c)->ud, "PUBACK for nothing in flight");
}

static void on_close(vg_mqttc_t *c, vg_mqttc_reason_t why, int detail)
{
    vg_evalpub_t *p = vg_mqttc_cfg(c)->ud;
    switch (why) {
    case VG_MQTTC_R_LOCAL:
        return;
    case VG_MQTTC_R_EOF:
        fail(p, "the server closed a publishing connection");
        break;
    case VG_MQTTC_R_REFUSED:
        fail(p, "the server refused a publishing connection");
        break;
    case VG_MQTTC_R_IO:
        fail(p, "a publishing connection failed (did the server exit?)");
        break;
    case VG_MQTTC_R_TOO_BIG:
        fail(p, "unexpected large packet on a publishing connection");
        break;
    default:
        fail(p, "malformed packet from the server");
        break;
    }
}

static void set_out(vg_evalpub_t *p, uint32_t i)
{
    conn_t *c = &p->c[i];
    bool want = vg_mqttc_wants_write(&c->mq);
    if (c->want_out == want || c->mq.fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = i};
    epoll_ctl(p->ep, EPOLL_CTL_MOD, c->mq.fd, &ev);
    c->want_out = want;
}

/* Writes what connection i holds. VG_OK (maybe some left, EPOLLOUT armed)
 * or VG_EIO. */
static int flush_conn(vg_evalpub_t *p, uint32_t i)
{
    int rc = vg_mqttc_flush(&p->c[i].mq);
    if (rc != VG_OK && rc != VG_AGAIN)
        return VG_EIO;
    set_out(p, i);
    return VG_OK;
}

static int flush_dirty(vg_evalpub_t *p)
{
    int rc = VG_OK;
    for (uint32_t k = 0; k < p->n_dirty; k++) {
        uint32_t i = p->dirty[k];
        p->c[i].dirty = false;
        if (flush_conn(p, i) != VG_OK)
            rc = VG_EIO;
    }
    p->n_dirty = 0;
    p->queued_since_flush = 0;
    return rc;
}

static void mark_dirty(vg_evalpub_t *p, uint32_t i)
{
    if (!p->c[i].dirty) {
        p->c[i].dirty = true;
        p->dirty[p->n_dirty++] = i;
    }
}

/* Reads once: epoll is level-triggered, so what is left comes back. */
static int read_conn(vg_evalpub_t *p, uint32_t i)
{
    conn_t *c = &p->c[i];
    if (vg_mqttc_on_readable(&c->mq, vg_clock_mono_ns()) != VG_OK || p->err)
        return VG_EIO;
    if (vg_mqttc_pending(&c->mq))
        mark_dirty(p, i); /* acks of a PUBLISH from the server (not expected) */
    return VG_OK;
}

int vg_evalpub_poll(vg_evalpub_t *p, int timeout_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    if (p->err)
        return VG_EIO;
    if (flush_dirty(p) != VG_OK)
        return VG_EIO;
    int n = epoll_wait(p->ep, evs, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? VG_OK : VG_EIO;
    for (int k = 0; k < n; k++) {
        uint32_t i = evs[k].data.u32;
        if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            if (read_conn(p, i) != VG_OK)
                return VG_EIO;
        if (evs[k].events & EPOLLOUT)
            if (flush_conn(p, i) != VG_OK)
                return VG_EIO;
    }
    return p->err ? VG_EIO : VG_OK;
}

int vg_evalpub_publish(vg_evalpub_t *p, uint32_t conn, int64_t arrival_ms, const char *payload, size_t len)
{
    if (p->err)
        return VG_EIO;
    conn_t *c = &p->c[conn];
    if (vg_mqttc_inflight(&c->mq) >= p->o.window || p->ring_count >= p->o.global_window)
        return VG_AGAIN;
    if (p->ring_count && arrival_ms > p->ring[p->ring_tail].arrival_ms + p->o.lead_ms)
        return VG_AGAIN;
    if (vg_mqttc_pending(&c->mq) > OUT_SOFT_MAX) {
        if (flush_conn(p, conn) != VG_OK)
            return VG_EIO;
        if (vg_mqttc_pending(&c->mq) > OUT_SOFT_MAX)
            return VG_AGAIN;
    }
    uint32_t gi = (p->ring_tail + p->ring_count) % p->o.global_window;
    vg_mqtt_publish_t m = {
        .qos = 1,
        .topic = {(const uint8_t *)p->topic, p->topic_len},
        .payload = {(const uint8_t *)payload, len},
    };
    uint16_t slot = vg_mqttc_next_slot(&c->mq);
    int rc = vg_mqttc_publish(&c->mq, &m, vg_clock_mono_ns());
    if (rc == VG_AGAIN || rc == VG_ENOSPC)
        return VG_AGAIN;
    if (rc != VG_OK) {
        if (rc != VG_ENOMEM)
            fail(p, "cannot encode a PUBLISH (topic or payload too long?)");
        return rc == VG_ENOMEM ? VG_ENOMEM : VG_EIO;
    }
    c->gidx[slot] = gi;
    p->ring[gi] = (flight_t){arrival_ms, 0};
    p->ring_count++;
    p->inflight++;
    p->sent++;
    mark_dirty(p, conn);
    if (++p->queued_since_flush >= FLUSH_EVERY)
        return vg_evalpub_poll(p, 0);
    return VG_OK;
}

int vg_evalpub_drain(vg_evalpub_t *p, int timeout_ms)
{
    uint64_t last = p->acked, since = vg_clock_mono_ns();
    while (p->inflight) {
        if (vg_evalpub_poll(p, 100) != VG_OK)
            return VG_EIO;
        uint64_t now = vg_clock_mono_ns();
        if (p->acked != last) {
            last = p->acked;
            since = now;
        } else if (now - since > (uint64_t)timeout_ms * 1000000u) {
            fail(p, "acknowledgements stopped arriving");
            return VG_AGAIN;
        }
    }
    return VG_OK;
}

uint64_t vg_evalpub_sent(const vg_evalpub_t *p)
{
    return p->sent;
}

uint64_t vg_evalpub_acked(const vg_evalpub_t *p)
{
    return p->acked;
}

const char *vg_evalpub_error(const vg_evalpub_t *p)
{
    return p->err;
}

void vg_evalpub_close(vg_evalpub_t *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; p->c && i < p->n; i++) {
        conn_t *c = &p->c[i];
        int fd = c->mq.fd;
        if (vg_mqttc_up(&c->mq) && !p->err)
            vg_mqttc_disconnect(&c->mq, 0);
        if (fd >= 0)
            close(fd);
        vg_mqttc_deinit(&c->mq);
        vg_free(c->ring);
        vg_free(c->gidx);
    }
    if (p->ep >= 0)
        close(p->ep);
    vg_free(p->c);
    vg_free(p->ring);
    vg_free(p->dirty);
    vg_free(p->rbuf);
    vg_free(p->topic);
    vg_free(p);
}

int vg_evalpub_open(const struct sockaddr *addr, socklen_t addr_len, uint32_t nconn, const char *const *ids,
                    const vg_evalpub_opts_t *o, int timeout_ms, vg_evalpub_t **out, const char **why)
{
    *out = NULL;
    *why = NULL;
    vg_evalpub_t *p = vg_calloc(VG_MEM_EVAL, 1, sizeof *p);
    if (!p)
        return VG_ENOMEM;
    p->o = *o;
    if (!p->o.window)
        p->o.window = 256;
    if (p->o.window > 32768)
        p->o.window = 32768;
    if (!p->o.global_window)
        p->o.global_window = 8192;
    if (!p->o.topic)
        p->o.topic = "iot/wearable/data";
    if (p->o.lead_ms <= 0)
        p->o.lead_ms = 2000;
    p->ep = -1;
    p->n = nconn;
    p->topic_len = strlen(p->o.topic);
    p->topic = vg_strndup(VG_MEM_EVAL, p->o.topic, p->topic_len);
    p->c = vg_calloc(VG_MEM_EVAL, nconn ? nconn : 1, sizeof *p->c);
    p->dirty = vg_calloc(VG_MEM_EVAL, nconn ? nconn : 1, sizeof *p->dirty);
    p->rbuf = vg_malloc(VG_MEM_EVAL, READ_CHUNK + 16);
    int rc = VG_ENOMEM;
    p->ring = vg_calloc(VG_MEM_EVAL, p->o.global_window, sizeof *p->ring);
    if (!p->topic || !p->c || !p->dirty || !p->rbuf || !p->ring)
        goto fail;
    p->mq = (vg_mqttc_cfg_t){
        .level = VG_MQTT_V311,
        .keepalive_s = 0, /* no keepalive: the run may pause for seconds between bursts */
        .max_packet = 1u << 16,
        .out_max = 2 * OUT_SOFT_MAX + (1u << 16),
        .scratch = p->rbuf,
        .scratch_len = READ_CHUNK,
        .ud = p,
        .on_connack = on_connack,
        .on_ack = on_ack,
        .on_stray_ack = on_stray_ack,
        .on_close = on_close,
    };
    for (uint32_t i = 0; i < nconn; i++)
        vg_mqttc_init(&p->c[i].mq, &p->mq, NULL, 0);
    for (uint32_t i = 0; i < nconn; i++) {
        p->c[i].ring = vg_calloc(VG_MEM_EVAL, p->o.window, sizeof *p->c[i].ring);
        p->c[i].gidx = vg_calloc(VG_MEM_EVAL, p->o.window, sizeof *p->c[i].gidx);
        if (!p->c[i].ring || !p->c[i].gidx)
            goto fail;
        vg_mqttc_init(&p->c[i].mq, &p->mq, p->c[i].ring, (uint16_t)p->o.window);
    }
    rc = VG_EIO;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->ep < 0) {
        fail(p, "epoll_create1 failed");
        goto fail;
    }
    uint64_t now = vg_clock_mono_ns();
    for (uint32_t i = 0; i < nconn; i++) {
        conn_t *c = &p->c[i];
        int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fail(p, "socket() failed (open-file limit?)");
            goto fail;
        }
        /* Blocking connect on loopback is immediate; then non-blocking. */
        if (connect(fd, addr, addr_len) < 0) {
            close(fd);
            fail(p, "cannot connect to the server");
            goto fail;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int fl = fcntl(fd, F_GETFL);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            close(fd);
            fail(p, "cannot make a socket non-blocking");
            goto fail;
        }
        if (epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            fail(p, "epoll_ctl failed");
            goto fail;
        }
        int src = vg_mqttc_start(&c->mq, fd, false, ids[i], strlen(ids[i]), now);
        if (src != VG_OK) {
            close(fd);
            fail(p, "cannot encode CONNECT");
            rc = src == VG_ENOMEM ? VG_ENOMEM : VG_EIO;
            goto fail;
        }
        mark_dirty(p, i);
    }
    uint64_t deadline = vg_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (p->up < nconn) {
        if (vg_evalpub_poll(p, 50) != VG_OK)
            goto fail;
        if (vg_clock_mono_ns() > deadline) {
            fail(p, "not every publishing connection got its CONNACK in time");
            goto fail;
        }
    }
    *out = p;
    return VG_OK;
fail:
    *why = p->err ? p->err : "out of memory";
    vg_evalpub_close(p);
    return rc;
}
