/* pub.c — see pub.h.
 *
 * Writes are batched: vg_evalpub_publish only appends to the connection's
 * output buffer and puts it on the dirty list; the buffers are written when
 * the dirty list grows past FLUSH_EVERY publishes, when a window is full and
 * at every poll — so a burst costs one send() per connection instead of one
 * per message. EPOLLOUT is armed only while a connection has bytes left. */
#include "eval/pub.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "mqtt/codec.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define FLUSH_EVERY 2048
#define OUT_SOFT_MAX (1u << 20) /* past this a connection's buffer is written before more is queued */
#define MAX_EVENTS 256

typedef struct {
    int fd;
    bool up, dirty, want_out;
    uint8_t carry_len;
    uint8_t carry[8];
    uint16_t next_pid;
    uint32_t inflight;
    uint32_t *slots; /* global ring index of each unacknowledged publish, oldest first */
    uint32_t slot_head;
    uint8_t *out;
    size_t off, len, cap;
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
    uint32_t *dirty;
    uint32_t n_dirty;
    uint32_t queued_since_flush;
    uint64_t inflight, sent, acked;
    uint32_t up;
    uint8_t *rbuf;
    const char *err;
};

static int reserve(conn_t *c, size_t n)
{
    if (c->len + n <= c->cap)
        return VG_OK;
    if (c->off) {
        memmove(c->out, c->out + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
        if (c->len + n <= c->cap)
            return VG_OK;
    }
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n)
        cap *= 2;
    uint8_t *np = vg_realloc(VG_MEM_EVAL, c->out, cap);
    if (!np)
        return VG_ENOMEM;
    c->out = np;
    c->cap = cap;
    return VG_OK;
}

static void fail(vg_evalpub_t *p, const char *why)
{
    if (!p->err)
        p->err = why;
}

static void set_out(vg_evalpub_t *p, uint32_t i, bool want)
{
    conn_t *c = &p->c[i];
    if (c->want_out == want || c->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = i};
    epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

/* Writes what connection i holds. VG_OK (maybe some left, EPOLLOUT armed)
 * or VG_EIO. */
static int flush_conn(vg_evalpub_t *p, uint32_t i)
{
    conn_t *c = &p->c[i];
    while (c->off < c->len) {
        ssize_t r = send(c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (r > 0) {
            c->off += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(p, i, true);
            return VG_OK;
        }
        fail(p, "a publishing connection failed while writing (did the server exit?)");
        return VG_EIO;
    }
    c->off = c->len = 0;
    set_out(p, i, false);
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

/* Handles the packets in buf[0..len) for connection i. */
static int on_bytes(vg_evalpub_t *p, uint32_t i, const uint8_t *buf, size_t len)
{
    conn_t *c = &p->c[i];
    size_t off = 0;
    while (off < len) {
        uint8_t type, flags;
        size_t hl, rl;
        int rc = vg_mqtt_frame(buf + off, len - off, 1u << 16, &type, &flags, &hl, &rl);
        if (rc == VG_AGAIN) {
            if (len - off > sizeof c->carry) {
                fail(p, "unexpected large packet on a publishing connection");
                return VG_EIO;
            }
            c->carry_len = (uint8_t)(len - off);
            memcpy(c->carry, buf + off, c->carry_len);
            return VG_OK;
        }
        if (rc != VG_OK) {
            fail(p, "malformed packet from the server");
            return VG_EIO;
        }
        const uint8_t *body = buf + off + hl;
        off += hl + rl;
        if (type == VG_MQTT_PUBACK) {
            if (c->inflight == 0) {
                fail(p, "PUBACK for nothing in flight");
                return VG_EIO;
            }
            /* PUBACKs come in PUBLISH order per connection. */
            uint32_t gi = c->slots[c->slot_head];
            c->slot_head = (c->slot_head + 1) % p->o.window;
            p->ring[gi].acked = 1;
            while (p->ring_count && p->ring[p->ring_tail].acked) {
                p->ring_tail = (p->ring_tail + 1) % p->o.global_window;
                p->ring_count--;
            }
            c->inflight--;
            p->inflight--;
            p->acked++;
        } else if (type == VG_MQTT_CONNACK && !c->up) {
            bool sp;
            uint8_t crc;
            if (vg_mqtt_decode_connack(VG_MQTT_V311, body, rl, &sp, &crc, NULL) != VG_OK ||
                crc != VG_MQTT_CONNACK_ACCEPTED) {
                fail(p, "the server refused a publishing connection");
                return VG_EIO;
            }
            c->up = true;
            p->up++;
        }
        /* PINGRESP or anything else: nothing to do. */
    }
    return VG_OK;
}

static int read_conn(vg_evalpub_t *p, uint32_t i)
{
    conn_t *c = &p->c[i];
    for (;;) {
        size_t have = c->carry_len;
        memcpy(p->rbuf, c->carry, have);
        ssize_t r = read(c->fd, p->rbuf + have, READ_CHUNK);
        if (r == 0) {
            fail(p, "the server closed a publishing connection");
            return VG_EIO;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return VG_OK;
            fail(p, "a publishing connection failed while reading");
            return VG_EIO;
        }
        c->carry_len = 0;
        int rc = on_bytes(p, i, p->rbuf, have + (size_t)r);
        if (rc != VG_OK)
            return rc;
        if ((size_t)r < READ_CHUNK)
            return VG_OK;
    }
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
    return VG_OK;
}

static size_t put_varint(uint8_t *o, size_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        o[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

int vg_evalpub_publish(vg_evalpub_t *p, uint32_t conn, int64_t arrival_ms, const char *payload, size_t len)
{
    if (p->err)
        return VG_EIO;
    conn_t *c = &p->c[conn];
    if (c->inflight >= p->o.window || p->ring_count >= p->o.global_window)
        return VG_AGAIN;
    if (p->ring_count && arrival_ms > p->ring[p->ring_tail].arrival_ms + p->o.lead_ms)
        return VG_AGAIN;
    if (c->len - c->off > OUT_SOFT_MAX) {
        if (flush_conn(p, conn) != VG_OK)
            return VG_EIO;
        if (c->len - c->off > OUT_SOFT_MAX)
            return VG_AGAIN;
    }
    size_t rem = 2 + p->topic_len + 2 + len;
    if (reserve(c, rem + 5) != VG_OK)
        return VG_ENOMEM;
    uint8_t *o = c->out + c->len;
    size_t k = 0;
    o[k++] = 0x32; /* PUBLISH, QoS 1 */
    k += put_varint(o + k, rem);
    o[k++] = (uint8_t)(p->topic_len >> 8);
    o[k++] = (uint8_t)p->topic_len;
    memcpy(o + k, p->topic, p->topic_len);
    k += p->topic_len;
    uint16_t pid = c->next_pid;
    c->next_pid = pid == 65535 ? 1 : (uint16_t)(pid + 1);
    o[k++] = (uint8_t)(pid >> 8);
    o[k++] = (uint8_t)pid;
    memcpy(o + k, payload, len);
    k += len;
    c->len += k;
    uint32_t gi = (p->ring_tail + p->ring_count) % p->o.global_window;
    p->ring[gi] = (flight_t){arrival_ms, 0};
    p->ring_count++;
    c->slots[(c->slot_head + c->inflight) % p->o.window] = gi;
    c->inflight++;
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
    static const uint8_t bye[2] = {0xe0, 0x00};
    for (uint32_t i = 0; p->c && i < p->n; i++) {
        conn_t *c = &p->c[i];
        if (c->fd >= 0) {
            if (c->up && !p->err)
                (void)!send(c->fd, bye, sizeof bye, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(c->fd);
        }
        vg_free(c->out);
        vg_free(c->slots);
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
    for (uint32_t i = 0; i < nconn; i++) {
        p->c[i].fd = -1;
        p->c[i].next_pid = 1;
    }
    for (uint32_t i = 0; i < nconn; i++) {
        p->c[i].slots = vg_calloc(VG_MEM_EVAL, p->o.window, sizeof *p->c[i].slots);
        if (!p->c[i].slots)
            goto fail;
    }
    rc = VG_EIO;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->ep < 0) {
        fail(p, "epoll_create1 failed");
        goto fail;
    }
    for (uint32_t i = 0; i < nconn; i++) {
        conn_t *c = &p->c[i];
        c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            fail(p, "socket() failed (open-file limit?)");
            goto fail;
        }
        /* Blocking connect on loopback is immediate; then non-blocking. */
        if (connect(c->fd, addr, addr_len) < 0) {
            fail(p, "cannot connect to the server");
            goto fail;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int fl = fcntl(c->fd, F_GETFL);
        if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            fail(p, "cannot make a socket non-blocking");
            goto fail;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            fail(p, "epoll_ctl failed");
            goto fail;
        }
        size_t idlen = strlen(ids[i]);
        vg_mqtt_connect_t cc = {
            .protocol_level = VG_MQTT_V311,
            .clean_session = true,
            .keepalive = 0, /* no keepalive: the run may pause for seconds between bursts */
            .client_id = {(const uint8_t *)ids[i], idlen},
        };
        if (reserve(c, idlen + 32) != VG_OK) {
            rc = VG_ENOMEM;
            goto fail;
        }
        int n = vg_mqtt_encode_connect(c->out + c->len, c->cap - c->len, &cc);
        if (n < 0) {
            fail(p, "cannot encode CONNECT");
            goto fail;
        }
        c->len += (size_t)n;
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
