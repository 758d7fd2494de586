/* server.c — the MQTT 3.1.1 server: I/O workers, connections, the packet
 * state machine, subscriptions and routing. See server.h for the contract.
 *
 * Owns: sockets, per-connection buffers, the subscription tree (behind a
 * rwlock), the client-id table (behind a mutex), worker inboxes.
 * Does not own: what telemetry means (the ingest hook), durability (the
 * stream), packet encoding rules (codec.c).
 *
 * Memory per connection is kept small on purpose (the target is ≤ 2 KiB per
 * idle connection, kernel buffers aside): input is read into one buffer per
 * worker and only a partial packet's bytes are copied into the connection;
 * output buffers exist only while something is queued. */
#include "mqtt/server.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/strmap.h"
#include "core/wheel.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MOD "mqtt"
#define RBUF_SIZE (64 * 1024)
#define READ_BUDGET (256 * 1024) /* bytes per readiness event, for fairness */
#define MAX_EVENTS 256
#define MAX_WORKERS 64
#define WHEEL_TICK_MS 50
#define STATS_TOPIC "$SYS/vigil/stats"

/* Token layout (64 bits): worker:8 | slot:24 | gen:16 | packet id:16. */
#define TOK(w, slot, gen, pid)                                                                                         \
    (((uint64_t)(w) << 56) | ((uint64_t)((slot)&0xffffffu) << 32) | ((uint64_t)((gen)&0xffffu) << 16) |               \
     (uint64_t)(pid))
#define TOK_WORKER(t) ((uint32_t)((t) >> 56))
#define TOK_SLOT(t) ((uint32_t)(((t) >> 32) & 0xffffffu))
#define TOK_GEN(t) ((uint16_t)(((t) >> 16) & 0xffffu))
#define TOK_PID(t) ((uint16_t)((t)&0xffffu))

/* A message shared by every subscriber it is routed to (refcounted). */
typedef struct {
    atomic_uint refs;
    uint32_t topic_len;
    uint32_t payload_len;
    char data[]; /* topic, then payload */
} msg_t;

typedef enum { ITEM_COMPLETE = 1, ITEM_DELIVER, ITEM_KICK } item_kind_t;

typedef struct {
    uint8_t kind;
    uint8_t qos;
    uint16_t gen;
    uint32_t slot;
    int32_t status;
    uint64_t token;
    msg_t *msg;
} item_t;

/* A subscriber as the tree sees it: where its connection lives. Freed only
 * after it has been removed from the tree (under the write lock), so a router
 * holding the read lock never sees a dangling one. */
typedef struct {
    uint32_t worker;
    uint32_t slot;
    uint16_t gen;
} sub_t;

enum { ST_FREE = 0, ST_NEW, ST_ACTIVE, ST_CLOSING };

typedef struct conn {
    int fd;
    uint32_t slot;
    uint16_t gen;
    uint8_t state;
    uint8_t close_reason;
    bool paused;       /* reading paused: inflight limit */
    bool in_flush;     /* on the worker's flush list */
    bool epollout;     /* EPOLLOUT armed */
    bool quiesced;     /* reading stopped for shutdown */
    uint16_t keepalive;
    uint16_t next_pid;
    vg_wheel_node_t timer;
    char *client_id;
    uint32_t client_id_len;
    /* partial input */
    uint8_t *in;
    uint32_t in_len, in_cap;
    /* queued output */
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    /* QoS 1 acks in arrival order: (pid << 1) | done */
    uint32_t *acks;
    uint32_t ack_head, ack_count, ack_cap;
    /* subscriptions */
    sub_t *sub;
    char **filters;
    uint16_t *filter_lens;
    uint32_t nfilters;
    struct conn *flush_next;
    struct conn *close_next;
} conn_t;

typedef struct worker {
    struct vg_server *srv;
    uint32_t id;
    pthread_t thread;
    int ep;
    int lfd;
    int efd;
    int spare_fd;
    uint8_t *rbuf;
    conn_t **conns; /* slot -> conn (NULL = free) */
    uint32_t nslots, cap_slots;
    uint32_t *free_slots;
    uint32_t nfree;
    uint16_t *slot_gen; /* generation per slot, survives reuse */
    vg_wheel_t wheel;
    conn_t *flush_head;
    conn_t *close_head;
    /* inbox */
    pthread_mutex_t inbox_mu;
    item_t *inbox, *inbox_spare;
    size_t inbox_len, inbox_cap, spare_cap;
    /* stats (relaxed atomics: read by the stats thread) */
    atomic_uint_fast64_t st_conns_current, st_conns_total, st_refused, st_closes[VG_CLOSE__COUNT];
    atomic_uint_fast64_t st_pub_in, st_pub_out, st_bytes_in, st_bytes_out, st_read_pauses;
    /* routing scratch */
    struct route_ctx *route;
    /* SUBSCRIBE scratch: max_subs_per_packet filters and return codes */
    vg_mqtt_sub_t *sub_scratch;
    uint8_t *rc_scratch;
} worker_t;

struct vg_server {
    vg_server_opts_t o;
    char *telemetry_topic;
    size_t telemetry_len;
    uint32_t nworkers;
    worker_t workers[MAX_WORKERS];
    atomic_bool stopping;
    atomic_bool quiescing;
    atomic_uint quiesced_workers;
    atomic_uint conns_total; /* for the connection limit */
    pthread_rwlock_t tree_lock;
    vg_topic_tree_t *tree;
    atomic_uint_fast64_t nsubs;
    pthread_mutex_t ids_mu;
    vg_strmap_t ids; /* client id -> (worker << 40 | slot << 16 | gen) */
    bool started;
};

static _Thread_local worker_t *tl_worker;

const char *vg_close_reason_name(vg_close_reason_t r)
{
    static const char *const names[VG_CLOSE__COUNT] = {
        "client",   "peer_closed", "malformed", "too_large", "protocol_error", "keepalive_timeout",
        "connect_timeout", "takeover", "io_error", "slow_consumer", "shutdown", "rejected"};
    return (unsigned)r < VG_CLOSE__COUNT ? names[r] : "?";
}

void vg_server_opts_default(vg_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->listen_host = "127.0.0.1";
    o->listen_port = 1883;
    o->max_packet_size = 128 * 1024;
    o->max_inflight = 1024;
    o->max_subs_per_packet = 64;
    o->max_outbuf = 4 * 1024 * 1024;
    o->connect_timeout_ms = 10000;
    o->telemetry_topic = "iot/wearable/data";
}

/* ---- messages ---------------------------------------------------------- */

static msg_t *msg_new(const char *topic, size_t tlen, const void *payload, size_t plen)
{
    msg_t *m = vg_malloc(VG_MEM_MQTT, sizeof *m + tlen + plen);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->topic_len = (uint32_t)tlen;
    m->payload_len = (uint32_t)plen;
    memcpy(m->data, topic, tlen);
    if (plen)
        memcpy(m->data + tlen, payload, plen);
    return m;
}

static void msg_unref(msg_t *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        vg_free(m);
}

/* ---- inbox ------------------------------------------------------------- */

static void wake(worker_t *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->efd, &one, sizeof one);
    (void)r; /* EAGAIN means the counter is already non-zero: it is awake */
}

/* Posts n items; wakes the worker only when its inbox was empty. */
static int inbox_post(worker_t *w, const item_t *items, size_t n)
{
    pthread_mutex_lock(&w->inbox_mu);
    if (w->inbox_len + n > w->inbox_cap) {
        size_t ncap = w->inbox_cap ? w->inbox_cap : 256;
        while (ncap < w->inbox_len + n)
            ncap *= 2;
        item_t *ni = vg_realloc(VG_MEM_MQTT, w->inbox, ncap * sizeof *ni);
        if (!ni) {
            pthread_mutex_unlock(&w->inbox_mu);
            return VG_ENOMEM;
        }
        w->inbox = ni;
        w->inbox_cap = ncap;
    }
    bool was_empty = w->inbox_len == 0;
    memcpy(w->inbox + w->inbox_len, items, n * sizeof *items);
    w->inbox_len += n;
    pthread_mutex_unlock(&w->inbox_mu);
    if (was_empty)
        wake(w);
    return VG_OK;
}

/* ---- connections: output ---------------------------------------------- */

static void conn_close(worker_t *w, conn_t *c, vg_close_reason_t reason);

static void flush_mark(worker_t *w, conn_t *c)
{
    if (!c->in_flush) {
        c->in_flush = true;
        c->flush_next = w->flush_head;
        w->flush_head = c;
    }
}

/* Reserves n bytes at the end of c's output queue; NULL (and the connection
 * marked for closing) if that would exceed max_outbuf. */
static uint8_t *out_reserve(worker_t *w, conn_t *c, size_t n)
{
    if (c->state == ST_CLOSING)
        return NULL;
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    size_t pending = c->out_len - c->out_off;
    if (pending + n > w->srv->o.max_outbuf) {
        conn_close(w, c, VG_CLOSE_SLOW_CONSUMER);
        return NULL;
    }
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) { /* compact before growing */
            memmove(c->out, c->out + c->out_off, pending);
            c->out_len = pending;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            size_t ncap = c->out_cap ? c->out_cap : 256;
            while (ncap < c->out_len + n)
                ncap *= 2;
            uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, ncap);
            if (!no) {
                conn_close(w, c, VG_CLOSE_SLOW_CONSUMER);
                return NULL;
            }
            c->out = no;
            c->out_cap = ncap;
        }
    }
    uint8_t *p = c->out + c->out_len;
    c->out_len += n;
    flush_mark(w, c);
    return p;
}

static void send_bytes(worker_t *w, conn_t *c, const uint8_t *b, size_t n)
{
    uint8_t *p = out_reserve(w, c, n);
    if (p)
        memcpy(p, b, n);
}

static void epoll_set(worker_t *w, conn_t *c)
{
    struct epoll_event ev = {0};
    ev.events = (c->paused || c->quiesced ? 0 : EPOLLIN) | (c->epollout ? EPOLLOUT : 0) | EPOLLRDHUP;
    ev.data.ptr = c;
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is queued; arms EPOLLOUT for what the socket would not take.
 * Returns false if the connection broke. */
static bool conn_flush(worker_t *w, conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (k > 0) {
            c->out_off += (size_t)k;
            atomic_fetch_add_explicit(&w->st_bytes_out, (uint64_t)k, memory_order_relaxed);
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->epollout) {
                c->epollout = true;
                epoll_set(w, c);
            }
            return true;
        }
        return false;
    }
    c->out_off = c->out_len = 0;
    /* Give the buffer back once drained: most connections are idle between
     * events, and idle connections must cost as little memory as possible
     * (a malloc per flush is cheap next to the send it follows). */
    vg_free(c->out);
    c->out = NULL;
    c->out_cap = 0;
    if (c->epollout) {
        c->epollout = false;
        epoll_set(w, c);
    }
    return true;
}

/* ---- connections: lifecycle ------------------------------------------- */

static void conn_close(worker_t *w, conn_t *c, vg_close_reason_t reason)
{
    if (c->state == ST_CLOSING)
        return;
    c->state = ST_CLOSING;
    c->close_reason = (uint8_t)reason;
    atomic_fetch_add_explicit(&w->st_closes[reason], 1, memory_order_relaxed);
    VG_DEBUG(MOD, "closing connection %.*s: %s", (int)c->client_id_len, c->client_id ? c->client_id : "",
             vg_close_reason_name(reason));
    c->close_next = w->close_head;
    w->close_head = c;
}

static void unsubscribe_all(worker_t *w, conn_t *c)
{
    if (!c->sub)
        return;
    struct vg_server *s = w->srv;
    pthread_rwlock_wrlock(&s->tree_lock);
    for (uint32_t i = 0; i < c->nfilters; i++) {
        if (vg_topic_tree_unsubscribe(s->tree, c->filters[i], c->filter_lens[i], c->sub) == VG_OK)
            atomic_fetch_sub_explicit(&s->nsubs, 1, memory_order_relaxed);
    }
    pthread_rwlock_unlock(&s->tree_lock);
    for (uint32_t i = 0; i < c->nfilters; i++)
        vg_free(c->filters[i]);
    vg_free(c->filters);
    vg_free(c->filter_lens);
    vg_free(c->sub);
    c->filters = NULL;
    c->filter_lens = NULL;
    c->sub = NULL;
    c->nfilters = 0;
}

static uint64_t owner_value(uint32_t worker, uint32_t slot, uint16_t gen)
{
    return ((uint64_t)worker << 40) | ((uint64_t)slot << 16) | gen;
}

static void conn_destroy(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    /* Best effort: a refusal CONNACK should reach the client before the close. */
    if (c->out_len > c->out_off)
        (void)send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    vg_wheel_remove(&c->timer);
    unsubscribe_all(w, c);
    if (c->client_id) {
        pthread_mutex_lock(&s->ids_mu);
        uint64_t v;
        if (vg_strmap_get(&s->ids, c->client_id, c->client_id_len, &v) == VG_OK &&
            v == owner_value(w->id, c->slot, c->gen))
            vg_strmap_del(&s->ids, c->client_id, c->client_id_len);
        pthread_mutex_unlock(&s->ids_mu);
    }
    vg_free(c->client_id);
    vg_free(c->in);
    vg_free(c->out);
    vg_free(c->acks);
    w->conns[c->slot] = NULL;
    w->slot_gen[c->slot]++;
    w->free_slots[w->nfree++] = c->slot;
    atomic_fetch_sub_explicit(&w->st_conns_current, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
    vg_free(c);
}

static void process_closes(worker_t *w)
{
    while (w->close_head) {
        conn_t *c = w->close_head;
        w->close_head = c->close_next;
        if (c->in_flush) {
            /* Unlink from the flush list. */
            conn_t **pp = &w->flush_head;
            while (*pp && *pp != c)
                pp = &(*pp)->flush_next;
            if (*pp)
                *pp = c->flush_next;
        }
        conn_destroy(w, c);
    }
}

static int slot_alloc(worker_t *w, uint32_t *slot)
{
    if (w->nfree) {
        *slot = w->free_slots[--w->nfree];
        return VG_OK;
    }
    if (w->nslots == w->cap_slots) {
        uint32_t ncap = w->cap_slots ? w->cap_slots * 2 : 1024;
        if (ncap > 0xffffffu)
            return VG_ELIMIT;
        conn_t **nc = vg_realloc(VG_MEM_MQTT, w->conns, ncap * sizeof *nc);
        if (!nc)
            return VG_ENOMEM;
        w->conns = nc;
        uint16_t *ng = vg_realloc(VG_MEM_MQTT, w->slot_gen, ncap * sizeof *ng);
        if (!ng)
            return VG_ENOMEM;
        w->slot_gen = ng;
        uint32_t *nf = vg_realloc(VG_MEM_MQTT, w->free_slots, ncap * sizeof *nf);
        if (!nf)
            return VG_ENOMEM;
        w->free_slots = nf;
        for (uint32_t i = w->cap_slots; i < ncap; i++) {
            w->conns[i] = NULL;
            w->slot_gen[i] = 0;
        }
        w->cap_slots = ncap;
    }
    *slot = w->nslots++;
    return VG_OK;
}

static void accept_ready(worker_t *w)
{
    struct vg_server *s = w->srv;
    for (int n = 0; n < 256; n++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: use the spare to accept and close, so the
                 * client hears a refusal instead of hanging in the backlog and
                 * this loop does not spin on a permanently readable socket. */
                atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
                if (w->spare_fd >= 0) {
                    close(w->spare_fd);
                    int x = accept(w->lfd, NULL, NULL);
                    if (x >= 0)
                        close(x);
                    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                VG_WARN(MOD, "out of file descriptors: refusing connection");
                continue;
            }
            return; /* EAGAIN or a transient error */
        }
        unsigned total = atomic_fetch_add_explicit(&s->conns_total, 1, memory_order_relaxed) + 1;
        if (total > s->o.max_connections || atomic_load(&s->quiescing)) {
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
            /* RST rather than FIN: the client learns at once it was refused. */
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint32_t slot;
        conn_t *c = vg_calloc(VG_MEM_MQTT, 1, sizeof *c);
        if (!c || slot_alloc(w, &slot) != VG_OK) {
            vg_free(c);
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->slot = slot;
        c->gen = w->slot_gen[slot];
        c->state = ST_NEW;
        c->next_pid = 1;
        w->conns[slot] = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            w->conns[slot] = NULL;
            w->free_slots[w->nfree++] = slot;
            vg_free(c);
            close(fd);
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            continue;
        }
        atomic_fetch_add_explicit(&w->st_conns_current, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->st_conns_total, 1, memory_order_relaxed);
        vg_wheel_add(&w->wheel, &c->timer, vg_clock_mono_ns() / 1000000 + s->o.connect_timeout_ms);
    }
}

/* ---- routing ----------------------------------------------------------- */

typedef struct route_ctx {
    sub_t **subs;
    uint8_t *qos;
    size_t n, cap;
} route_ctx_t;

static void route_collect(void *ctx, void *sub, uint8_t qos)
{
    route_ctx_t *r = ctx;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        sub_t **ns = vg_realloc(VG_MEM_MQTT, r->subs, ncap * sizeof *ns);
        if (!ns)
            return;
        r->subs = ns;
        uint8_t *nq = vg_realloc(VG_MEM_MQTT, r->qos, ncap);
        if (!nq)
            return;
        r->qos = nq;
        r->cap = ncap;
    }
    r->subs[r->n] = sub;
    r->qos[r->n] = qos;
    r->n++;
}

/* Overlapping filters of one client must yield one delivery at the maximum
 * QoS (§3.3.5). Sorting keeps this O(n log n) for large fan-outs. */
static void route_dedupe(route_ctx_t *r)
{
    if (r->n < 2)
        return;
    /* insertion sort for the common tiny case, shell sort otherwise */
    size_t n = r->n;
    for (size_t gap = n / 2 > 0 ? n / 2 : 1;; gap = gap / 2 ? gap / 2 : 0) {
        for (size_t i = gap; i < n; i++) {
            sub_t *s = r->subs[i];
            uint8_t q = r->qos[i];
            size_t j = i;
            for (; j >= gap && (uintptr_t)r->subs[j - gap] > (uintptr_t)s; j -= gap) {
                r->subs[j] = r->subs[j - gap];
                r->qos[j] = r->qos[j - gap];
            }
            r->subs[j] = s;
            r->qos[j] = q;
        }
        if (gap == 1)
            break;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && r->subs[k - 1] == r->subs[i]) {
            if (r->qos[i] > r->qos[k - 1])
                r->qos[k - 1] = r->qos[i];
            continue;
        }
        r->subs[k] = r->subs[i];
        r->qos[k] = r->qos[i];
        k++;
    }
    r->n = k;
}

static void deliver_local(worker_t *w, conn_t *c, const msg_t *m, uint8_t qos)
{
    if (c->state != ST_ACTIVE)
        return;
    vg_mqtt_publish_t p = {0};
    p.qos = qos;
    p.topic.p = (const uint8_t *)m->data;
    p.topic.len = m->topic_len;
    p.payload.p = (const uint8_t *)m->data + m->topic_len;
    p.payload.len = m->payload_len;
    if (qos) {
        p.packet_id = c->next_pid++;
        if (c->next_pid == 0)
            c->next_pid = 1;
    }
    size_t n = vg_mqtt_publish_size(m->topic_len, m->payload_len, qos);
    if (!n)
        return;
    uint8_t *dst = out_reserve(w, c, n);
    if (!dst)
        return;
    vg_mqtt_encode_publish(dst, n, &p);
    atomic_fetch_add_explicit(&w->st_pub_out, 1, memory_order_relaxed);
}

/* Routes a message to every matching subscriber. from: the worker calling
 * (NULL from other threads). Deliveries to the caller's own worker are
 * written directly; the rest are batched per worker into its inbox. */
typedef struct {
    uint32_t worker, slot;
    uint16_t gen;
    uint8_t qos;
} target_t;

static int route(struct vg_server *s, worker_t *from, const char *topic, size_t tlen, const void *payload, size_t plen,
                 uint8_t qos)
{
    route_ctx_t local = {0};
    route_ctx_t *r = from ? from->route : &local;
    target_t stack_t[64];
    item_t stack_items[64];
    target_t *tg = stack_t;
    item_t *items = stack_items;
    msg_t *m = NULL;
    int rc = VG_OK;
    r->n = 0;
    pthread_rwlock_rdlock(&s->tree_lock);
    vg_topic_tree_match(s->tree, topic, tlen, route_collect, r);
    route_dedupe(r);
    size_t n = r->n;
    if (n > 64) {
        tg = vg_malloc(VG_MEM_MQTT, n * sizeof *tg);
        items = vg_malloc(VG_MEM_MQTT, n * sizeof *items);
    }
    /* Copy the targets while locked: a sub_t may be freed once we unlock. */
    for (size_t i = 0; tg && i < n; i++) {
        tg[i].worker = r->subs[i]->worker;
        tg[i].slot = r->subs[i]->slot;
        tg[i].gen = r->subs[i]->gen;
        tg[i].qos = r->qos[i] < qos ? r->qos[i] : qos;
    }
    pthread_rwlock_unlock(&s->tree_lock);
    if (n == 0)
        goto cleanup;
    m = tg && items ? msg_new(topic, tlen, payload, plen) : NULL;
    if (!m) {
        rc = VG_ENOMEM;
        goto cleanup;
    }
    for (uint32_t wi = 0; wi < s->nworkers; wi++) {
        worker_t *tw = &s->workers[wi];
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (tg[i].worker != wi)
                continue;
            if (tw == from) {
                conn_t *c = tg[i].slot < from->nslots ? from->conns[tg[i].slot] : NULL;
                if (c && c->gen == tg[i].gen)
                    deliver_local(from, c, m, tg[i].qos);
                continue;
            }
            items[k] = (item_t){.kind = ITEM_DELIVER, .qos = tg[i].qos, .gen = tg[i].gen, .slot = tg[i].slot, .msg = m};
            k++;
        }
        if (!k)
            continue;
        atomic_fetch_add_explicit(&m->refs, (unsigned)k, memory_order_relaxed);
        if (inbox_post(tw, items, k) != VG_OK) {
            atomic_fetch_sub_explicit(&m->refs, (unsigned)k, memory_order_relaxed);
            rc = VG_ENOMEM;
        }
    }
cleanup:
    msg_unref(m);
    if (tg != stack_t)
        vg_free(tg);
    if (items != stack_items)
        vg_free(items);
    vg_free(local.subs);
    vg_free(local.qos);
    return rc;
}

int vg_server_publish(vg_server_t *s, const char *topic, size_t topic_len, const void *payload, size_t payload_len,
                      uint8_t qos)
{
    worker_t *from = tl_worker && tl_worker->srv == s ? tl_worker : NULL;
    return route(s, from, topic, topic_len, payload, payload_len, qos > 1 ? 1 : qos);
}

/* ---- acks -------------------------------------------------------------- */

static void acks_drain(worker_t *w, conn_t *c)
{
    uint8_t buf[4];
    while (c->ack_count && (c->acks[c->ack_head] & 1)) {
        uint16_t pid = (uint16_t)(c->acks[c->ack_head] >> 1);
        c->ack_head = (c->ack_head + 1) % c->ack_cap;
        c->ack_count--;
        if (vg_mqtt_encode_ack(buf, sizeof buf, VG_MQTT_PUBACK, pid) == 4)
            send_bytes(w, c, buf, 4);
    }
}

static void process_input(worker_t *w, conn_t *c);

static void maybe_resume(worker_t *w, conn_t *c)
{
    if (c->paused && c->ack_count < w->srv->o.max_inflight / 2 + 1) {
        c->paused = false;
        /* Packets already buffered run first, then reading resumes. */
        process_input(w, c);
        if (c->state != ST_CLOSING && !c->paused)
            epoll_set(w, c);
    }
}

static int acks_push(conn_t *c, uint16_t pid, bool done)
{
    if (c->ack_count == c->ack_cap) {
        uint32_t ncap = c->ack_cap ? c->ack_cap * 2 : 8;
        uint32_t *na = vg_malloc(VG_MEM_MQTT, ncap * sizeof *na);
        if (!na)
            return VG_ENOMEM;
        for (uint32_t i = 0; i < c->ack_count; i++)
            na[i] = c->acks[(c->ack_head + i) % c->ack_cap];
        vg_free(c->acks);
        c->acks = na;
        c->ack_cap = ncap;
        c->ack_head = 0;
    }
    c->acks[(c->ack_head + c->ack_count) % c->ack_cap] = ((uint32_t)pid << 1) | (done ? 1u : 0u);
    c->ack_count++;
    return VG_OK;
}

static void complete_local(worker_t *w, uint64_t token, int status)
{
    uint32_t slot = TOK_SLOT(token);
    conn_t *c = slot < w->nslots ? w->conns[slot] : NULL;
    if (!c || c->gen != TOK_GEN(token) || c->state == ST_CLOSING)
        return; /* the connection went away; the client will retransmit */
    if (status != VG_OK) {
        /* Not stored: withholding the PUBACK is the honest answer, and closing
         * makes the client resend on a fresh connection. */
        conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    uint16_t pid = TOK_PID(token);
    for (uint32_t i = 0; i < c->ack_count; i++) {
        uint32_t *e = &c->acks[(c->ack_head + i) % c->ack_cap];
        if ((*e >> 1) == pid && !(*e & 1)) {
            *e |= 1;
            break;
        }
    }
    acks_drain(w, c);
    maybe_resume(w, c);
}

void vg_server_complete(vg_server_t *s, uint64_t token, int status)
{
    uint32_t wi = TOK_WORKER(token);
    if (wi >= s->nworkers)
        return;
    worker_t *w = &s->workers[wi];
    if (tl_worker == w) {
        complete_local(w, token, status);
        return;
    }
    item_t it = {.kind = ITEM_COMPLETE, .token = token, .status = status};
    inbox_post(w, &it, 1);
}

/* ---- packet handlers --------------------------------------------------- */

static void refresh_keepalive(worker_t *w, conn_t *c)
{
    if (c->keepalive)
        c->timer.deadline_ms = vg_clock_mono_ns() / 1000000 + (uint64_t)c->keepalive * 1500u;
}

static void send_stats(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    if (!s->o.stats)
        return;
    char buf[8192];
    size_t n = s->o.stats(s->o.stats_ctx, buf, sizeof buf);
    msg_t *m = msg_new(STATS_TOPIC, strlen(STATS_TOPIC), buf, n);
    if (!m)
        return;
    deliver_local(w, c, m, 0);
    msg_unref(m);
}

static void handle_connect(worker_t *w, conn_t *c, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    vg_mqtt_connect_t ck;
    uint8_t rc = 0;
    uint8_t buf[8];
    int r = vg_mqtt_decode_connect(body, len, &ck, &rc);
    if (r == VG_EPROTO) {
        if (vg_mqtt_encode_connack(buf, sizeof buf, false, rc) > 0)
            send_bytes(w, c, buf, 4);
        conn_close(w, c, VG_CLOSE_REJECTED);
        return;
    }
    if (r != VG_OK) {
        conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    if (ck.will_flag || !ck.clean_session) {
        /* Wills and persistent sessions arrive with the full MQTT work; until
         * then a client relying on them is told clearly rather than misled. */
    }
    char idbuf[64];
    const char *id = (const char *)ck.client_id.p;
    size_t idlen = ck.client_id.len;
    if (idlen == 0) {
        idlen = (size_t)snprintf(idbuf, sizeof idbuf, "vigil-%u-%u-%u-%llx", w->id, c->slot, c->gen,
                                 (unsigned long long)vg_clock_mono_ns());
        id = idbuf;
    }
    c->client_id = vg_strndup(VG_MEM_MQTT, id, idlen);
    if (!c->client_id) {
        conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    c->client_id_len = (uint32_t)idlen;
    uint64_t me = owner_value(w->id, c->slot, c->gen), old = 0;
    pthread_mutex_lock(&s->ids_mu);
    int pr = vg_strmap_put(&s->ids, id, idlen, me, &old);
    pthread_mutex_unlock(&s->ids_mu);
    if (pr == VG_ENOMEM) {
        conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    if (pr == VG_EEXIST) {
        /* Client-id takeover (§3.1.4): the existing connection is closed. */
        uint32_t ow = (uint32_t)(old >> 40), oslot = (uint32_t)((old >> 16) & 0xffffffu);
        uint16_t ogen = (uint16_t)(old & 0xffff);
        if (ow == w->id) {
            conn_t *oc = oslot < w->nslots ? w->conns[oslot] : NULL;
            if (oc && oc->gen == ogen && oc != c)
                conn_close(w, oc, VG_CLOSE_TAKEOVER);
        } else if (ow < s->nworkers) {
            item_t it = {.kind = ITEM_KICK, .slot = oslot, .gen = ogen};
            inbox_post(&s->workers[ow], &it, 1);
        }
    }
    c->keepalive = ck.keepalive;
    if (s->o.max_keepalive_s && (c->keepalive == 0 || c->keepalive > s->o.max_keepalive_s))
        c->keepalive = (uint16_t)s->o.max_keepalive_s;
    c->state = ST_ACTIVE;
    vg_wheel_remove(&c->timer);
    if (c->keepalive) {
        uint64_t now = vg_clock_mono_ns() / 1000000;
        vg_wheel_add(&w->wheel, &c->timer, now + (uint64_t)c->keepalive * 1500u);
    }
    if (vg_mqtt_encode_connack(buf, sizeof buf, false, VG_MQTT_CONNACK_ACCEPTED) > 0)
        send_bytes(w, c, buf, 4);
}

static void handle_publish(worker_t *w, conn_t *c, uint8_t flags, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    vg_mqtt_publish_t p;
    if (vg_mqtt_decode_publish(flags, body, len, &p) != VG_OK) {
        conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    if (p.qos == 2) {
        /* QoS 2 is not offered yet (SUBACK grants at most 1); a client that
         * sends it anyway gets a clear protocol close, not silent loss. */
        conn_close(w, c, VG_CLOSE_PROTOCOL);
        return;
    }
    atomic_fetch_add_explicit(&w->st_pub_in, 1, memory_order_relaxed);
    bool telemetry = p.topic.len == s->telemetry_len && memcmp(p.topic.p, s->telemetry_topic, p.topic.len) == 0;
    if (telemetry && s->o.ingest) {
        uint64_t token = 0;
        if (p.qos == 1) {
            if (acks_push(c, p.packet_id, false) != VG_OK) {
                conn_close(w, c, VG_CLOSE_IO);
                return;
            }
            token = TOK(w->id, c->slot, c->gen, p.packet_id);
        }
        int64_t now_ms = vg_clock_wall_ms();
        if (s->o.ingest(s->o.ingest_ctx, c->client_id, c->client_id_len, p.payload.p, p.payload.len, now_ms, token) !=
            VG_OK) {
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
    } else if (p.qos == 1) {
        if (c->ack_count == 0) {
            uint8_t buf[4];
            if (vg_mqtt_encode_ack(buf, sizeof buf, VG_MQTT_PUBACK, p.packet_id) == 4)
                send_bytes(w, c, buf, 4);
        } else if (acks_push(c, p.packet_id, true) != VG_OK) {
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
    }
    route(s, w, (const char *)p.topic.p, p.topic.len, p.payload.p, p.payload.len, p.qos);
    if (c->ack_count >= s->o.max_inflight && !c->paused) {
        c->paused = true;
        atomic_fetch_add_explicit(&w->st_read_pauses, 1, memory_order_relaxed);
        epoll_set(w, c);
    }
}

static void handle_subscribe(worker_t *w, conn_t *c, const uint8_t *body, size_t len, bool sub)
{
    struct vg_server *s = w->srv;
    vg_mqtt_sub_t *subs = w->sub_scratch;
    size_t n = 0;
    uint16_t pid = 0;
    int r = vg_mqtt_decode_subscribe(body, len, sub, &pid, subs, s->o.max_subs_per_packet, &n);
    if (r != VG_OK) {
        conn_close(w, c, r == VG_ELIMIT ? VG_CLOSE_TOO_LARGE : VG_CLOSE_MALFORMED);
        return;
    }
    uint8_t *rcs = w->rc_scratch;
    bool want_stats = false;
    if (sub && !c->sub) {
        c->sub = vg_malloc(VG_MEM_MQTT, sizeof *c->sub);
        if (!c->sub) {
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
        c->sub->worker = w->id;
        c->sub->slot = c->slot;
        c->sub->gen = c->gen;
    }
    for (size_t i = 0; i < n; i++) {
        const char *f = (const char *)subs[i].filter.p;
        size_t fl = subs[i].filter.len;
        rcs[i] = VG_MQTT_SUBACK_FAILURE;
        if (!sub) {
            if (!c->sub)
                continue;
            for (uint32_t j = 0; j < c->nfilters; j++) {
                if (c->filter_lens[j] == fl && memcmp(c->filters[j], f, fl) == 0) {
                    pthread_rwlock_wrlock(&s->tree_lock);
                    if (vg_topic_tree_unsubscribe(s->tree, f, fl, c->sub) == VG_OK)
                        atomic_fetch_sub_explicit(&s->nsubs, 1, memory_order_relaxed);
                    pthread_rwlock_unlock(&s->tree_lock);
                    vg_free(c->filters[j]);
                    c->filters[j] = c->filters[c->nfilters - 1];
                    c->filter_lens[j] = c->filter_lens[c->nfilters - 1];
                    c->nfilters--;
                    break;
                }
            }
            continue;
        }
        uint8_t qos = subs[i].qos > 1 ? 1 : subs[i].qos; /* QoS 2 granted as 1 */
        if (fl > 0xffff)
            continue;
        pthread_rwlock_wrlock(&s->tree_lock);
        int tr = vg_topic_tree_subscribe(s->tree, f, fl, c->sub, qos);
        pthread_rwlock_unlock(&s->tree_lock);
        if (tr == VG_OK) {
            char **nf = vg_realloc(VG_MEM_MQTT, c->filters, (c->nfilters + 1) * sizeof *nf);
            uint16_t *nl = nf ? vg_realloc(VG_MEM_MQTT, c->filter_lens, (c->nfilters + 1) * sizeof *nl) : NULL;
            char *copy = nl ? vg_strndup(VG_MEM_MQTT, f, fl) : NULL;
            if (nf)
                c->filters = nf;
            if (nl)
                c->filter_lens = nl;
            if (!copy) {
                pthread_rwlock_wrlock(&s->tree_lock);
                vg_topic_tree_unsubscribe(s->tree, f, fl, c->sub);
                pthread_rwlock_unlock(&s->tree_lock);
                continue;
            }
            c->filters[c->nfilters] = copy;
            c->filter_lens[c->nfilters] = (uint16_t)fl;
            c->nfilters++;
            atomic_fetch_add_explicit(&s->nsubs, 1, memory_order_relaxed);
        } else if (tr != VG_EEXIST) {
            continue;
        }
        rcs[i] = qos;
        if (vg_mqtt_topic_matches(subs[i].filter.p, fl, (const uint8_t *)STATS_TOPIC, strlen(STATS_TOPIC)))
            want_stats = true;
    }
    uint8_t ack[4];
    size_t cap = 4 + n + 4;
    uint8_t *buf = sub ? out_reserve(w, c, cap) : ack;
    if (buf) {
        /* Encode straight into the output queue, then give back what the
         * (shorter than worst-case) header did not use. */
        int k = sub ? vg_mqtt_encode_suback(buf, cap, pid, rcs, n)
                    : vg_mqtt_encode_ack(buf, sizeof ack, VG_MQTT_UNSUBACK, pid);
        if (sub)
            c->out_len -= k > 0 ? cap - (size_t)k : cap;
        else if (k > 0)
            send_bytes(w, c, buf, (size_t)k);
    }
    if (want_stats)
        send_stats(w, c);
}

/* Handles one complete packet. */
static void handle_packet(worker_t *w, conn_t *c, uint8_t type, uint8_t flags, const uint8_t *body, size_t len)
{
    if (c->state == ST_NEW) {
        if (type != VG_MQTT_CONNECT) {
            conn_close(w, c, VG_CLOSE_PROTOCOL);
            return;
        }
        handle_connect(w, c, body, len);
        return;
    }
    refresh_keepalive(w, c);
    uint8_t buf[4];
    uint16_t pid;
    switch (type) {
    case VG_MQTT_PUBLISH:
        handle_publish(w, c, flags, body, len);
        break;
    case VG_MQTT_PUBACK:
        if (vg_mqtt_decode_packet_id(body, len, &pid) != VG_OK)
            conn_close(w, c, VG_CLOSE_MALFORMED);
        break;
    case VG_MQTT_SUBSCRIBE:
        handle_subscribe(w, c, body, len, true);
        break;
    case VG_MQTT_UNSUBSCRIBE:
        handle_subscribe(w, c, body, len, false);
        break;
    case VG_MQTT_PINGREQ:
        if (len != 0) {
            conn_close(w, c, VG_CLOSE_MALFORMED);
            break;
        }
        if (vg_mqtt_encode_empty(buf, sizeof buf, VG_MQTT_PINGRESP) == 2)
            send_bytes(w, c, buf, 2);
        break;
    case VG_MQTT_DISCONNECT:
        conn_close(w, c, len ? VG_CLOSE_MALFORMED : VG_CLOSE_CLIENT);
        break;
    default:
        /* CONNECT twice, server-to-client packet types, QoS 2 flow packets. */
        conn_close(w, c, VG_CLOSE_PROTOCOL);
        break;
    }
}

/* Parses and handles every complete packet in data[0..len); returns the
 * number of bytes consumed. Stops early when the connection closes or
 * pauses. */
static size_t parse_packets(worker_t *w, conn_t *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && c->state != ST_CLOSING && !c->paused && !c->quiesced) {
        uint8_t type, flags;
        size_t hl, rl;
        int r = vg_mqtt_frame(data + off, len - off, w->srv->o.max_packet_size, &type, &flags, &hl, &rl);
        if (r == VG_AGAIN)
            break;
        if (r != VG_OK) {
            conn_close(w, c, r == VG_ETOOBIG ? VG_CLOSE_TOO_LARGE : VG_CLOSE_MALFORMED);
            break;
        }
        handle_packet(w, c, type, flags, data + off + hl, rl);
        off += hl + rl;
    }
    return off;
}

/* Keeps data[0..len) as the connection's pending input. */
static bool keep_input(conn_t *c, const uint8_t *data, size_t len)
{
    if (len == 0) {
        vg_free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        return true;
    }
    if (data == c->in) {
        c->in_len = (uint32_t)len;
        return true;
    }
    if (c->in && data > c->in && data < c->in + c->in_cap) {
        memmove(c->in, data, len);
        c->in_len = (uint32_t)len;
        return true;
    }
    if (len > c->in_cap) {
        uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, len);
        if (!ni)
            return false;
        c->in = ni;
        c->in_cap = (uint32_t)len;
    }
    memmove(c->in, data, len);
    c->in_len = (uint32_t)len;
    return true;
}

/* Runs the packets already buffered in c->in (after a pause). */
static void process_input(worker_t *w, conn_t *c)
{
    if (!c->in_len)
        return;
    size_t used = parse_packets(w, c, c->in, c->in_len);
    if (c->state == ST_CLOSING)
        return;
    if (!keep_input(c, c->in + used, c->in_len - used))
        conn_close(w, c, VG_CLOSE_IO);
}

static void read_ready(worker_t *w, conn_t *c)
{
    size_t budget = READ_BUDGET;
    while (budget && c->state != ST_CLOSING && !c->paused && !c->quiesced) {
        uint8_t *dst;
        size_t room;
        if (c->in_len) {
            /* Partial packet pending: read behind it so the packet is
             * contiguous. Size the buffer for the whole packet if known. */
            size_t want = c->in_len + 16 * 1024;
            uint8_t type, flags;
            size_t hl, rl;
            if (vg_mqtt_frame(c->in, c->in_len, w->srv->o.max_packet_size, &type, &flags, &hl, &rl) == VG_AGAIN) {
                /* length known only once the length field is complete */
            } else if (hl + rl > c->in_len) {
                want = hl + rl;
            }
            if (want > c->in_cap) {
                uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, want);
                if (!ni) {
                    conn_close(w, c, VG_CLOSE_IO);
                    return;
                }
                c->in = ni;
                c->in_cap = (uint32_t)want;
            }
            dst = c->in + c->in_len;
            room = c->in_cap - c->in_len;
        } else {
            dst = w->rbuf;
            room = RBUF_SIZE;
        }
        ssize_t k = recv(c->fd, dst, room, 0);
        if (k == 0) {
            conn_close(w, c, c->state == ST_NEW ? VG_CLOSE_PROTOCOL : VG_CLOSE_PEER_CLOSED);
            return;
        }
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
        atomic_fetch_add_explicit(&w->st_bytes_in, (uint64_t)k, memory_order_relaxed);
        budget = (size_t)k >= budget ? 0 : budget - (size_t)k;
        const uint8_t *data;
        size_t len;
        if (dst == w->rbuf) {
            data = w->rbuf;
            len = (size_t)k;
        } else {
            c->in_len += (uint32_t)k;
            data = c->in;
            len = c->in_len;
        }
        size_t used = parse_packets(w, c, data, len);
        if (c->state == ST_CLOSING)
            return;
        if (!keep_input(c, data + used, len - used)) {
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
        if ((size_t)k < room)
            return; /* socket drained */
    }
}

/* ---- timers ------------------------------------------------------------ */

static void on_timer(void *ctx, vg_wheel_node_t *n)
{
    worker_t *w = ctx;
    conn_t *c = (conn_t *)((char *)n - offsetof(conn_t, timer));
    uint64_t now = vg_clock_mono_ns() / 1000000;
    if (c->state == ST_CLOSING)
        return;
    if (n->deadline_ms > now) {
        vg_wheel_add(&w->wheel, n, n->deadline_ms);
        return;
    }
    conn_close(w, c, c->state == ST_NEW ? VG_CLOSE_CONNECT_TIMEOUT : VG_CLOSE_KEEPALIVE);
}

/* ---- the worker loop --------------------------------------------------- */

static void drain_inbox(worker_t *w)
{
    uint64_t v;
    ssize_t r = read(w->efd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&w->inbox_mu);
    item_t *items = w->inbox;
    size_t n = w->inbox_len;
    size_t cap = w->inbox_cap;
    w->inbox = w->inbox_spare;
    w->inbox_cap = w->spare_cap;
    w->inbox_len = 0;
    pthread_mutex_unlock(&w->inbox_mu);
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->kind == ITEM_COMPLETE) {
            complete_local(w, it->token, it->status);
        } else {
            conn_t *c = it->slot < w->nslots ? w->conns[it->slot] : NULL;
            bool live = c && c->gen == it->gen;
            if (it->kind == ITEM_DELIVER) {
                if (live)
                    deliver_local(w, c, it->msg, it->qos);
                msg_unref(it->msg);
            } else if (it->kind == ITEM_KICK && live) {
                conn_close(w, c, VG_CLOSE_TAKEOVER);
            }
        }
    }
    /* Keep the drained array as the spare so steady state allocates nothing. */
    w->inbox_spare = items;
    w->spare_cap = cap;
}

static void quiesce_worker(worker_t *w)
{
    if (w->lfd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd, NULL);
        close(w->lfd);
        w->lfd = -1;
    }
    for (uint32_t i = 0; i < w->nslots; i++) {
        conn_t *c = w->conns[i];
        if (c && !c->quiesced) {
            c->quiesced = true;
            if (c->state != ST_CLOSING)
                epoll_set(w, c);
        }
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    struct vg_server *s = w->srv;
    tl_worker = w;
    struct epoll_event evs[MAX_EVENTS];
    bool quiesced = false;
    while (!atomic_load_explicit(&s->stopping, memory_order_acquire)) {
        if (!quiesced && atomic_load(&s->quiescing)) {
            quiesce_worker(w);
            quiesced = true;
            atomic_fetch_add(&s->quiesced_workers, 1);
        }
        uint64_t now = vg_clock_mono_ns() / 1000000;
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, vg_wheel_timeout(&w->wheel, now));
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &w->lfd) {
                accept_ready(w);
            } else if (p == &w->efd) {
                drain_inbox(w);
            } else {
                conn_t *c = p;
                if (c->state == ST_CLOSING)
                    continue;
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                    read_ready(w, c);
                if (c->state != ST_CLOSING && (evs[i].events & EPOLLOUT))
                    flush_mark(w, c);
            }
        }
        now = vg_clock_mono_ns() / 1000000;
        vg_wheel_advance(&w->wheel, now, on_timer, w);
        /* Before sleeping: write everything queued this round in one go per
         * connection (PUBACKs of a whole group commit coalesce here). */
        while (w->flush_head) {
            conn_t *c = w->flush_head;
            w->flush_head = c->flush_next;
            c->in_flush = false;
            if (c->state == ST_CLOSING)
                continue;
            if (!conn_flush(w, c))
                conn_close(w, c, VG_CLOSE_IO);
        }
        process_closes(w);
    }
    /* Shutdown: deliver what is queued (PUBACKs of records made durable
     * during the stop), then close every connection. */
    drain_inbox(w);
    for (uint32_t i = 0; i < w->nslots; i++) {
        conn_t *c = w->conns[i];
        if (!c)
            continue;
        if (c->state != ST_CLOSING) {
            int fl = fcntl(c->fd, F_GETFL);
            fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
            struct timeval tv = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            conn_flush(w, c);
            conn_close(w, c, VG_CLOSE_SHUTDOWN);
        }
    }
    w->flush_head = NULL;
    process_closes(w);
    tl_worker = NULL;
    return NULL;
}

/* ---- setup ------------------------------------------------------------- */

static int listen_socket(const char *host, uint16_t port, int *out)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char portbuf[8];
    snprintf(portbuf, sizeof portbuf, "%u", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, portbuf, &hints, &ai);
    if (rc != 0 || !ai) {
        VG_ERROR(MOD, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return VG_EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return VG_EIO;
    }
    int one = 1;
    /* No SO_REUSEPORT on purpose: with it a second server started on the
     * same port would silently share the traffic instead of failing. One
     * socket is shared by every worker's epoll with EPOLLEXCLUSIVE instead. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        VG_ERROR(MOD, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return VG_EIO;
    }
    freeaddrinfo(ai);
    *out = fd;
    return VG_OK;
}

int vg_server_new(const vg_server_opts_t *opts, vg_server_t **out)
{
    int rc = VG_ENOMEM;
    struct vg_server *s = vg_calloc(VG_MEM_MQTT, 1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    s->o = *opts;
    s->nworkers = opts->workers ? opts->workers : (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->nworkers < 1)
        s->nworkers = 1;
    if (s->nworkers > MAX_WORKERS)
        s->nworkers = MAX_WORKERS;
    if (!s->o.max_connections)
        s->o.max_connections = 1000000;
    if (s->o.max_inflight < 1)
        s->o.max_inflight = 1;
    if (s->o.max_subs_per_packet < 1)
        s->o.max_subs_per_packet = 1;
    s->telemetry_len = strlen(opts->telemetry_topic ? opts->telemetry_topic : "");
    s->telemetry_topic = vg_strndup(VG_MEM_MQTT, opts->telemetry_topic ? opts->telemetry_topic : "", s->telemetry_len);
    pthread_rwlock_init(&s->tree_lock, NULL);
    pthread_mutex_init(&s->ids_mu, NULL);
    vg_strmap_init(&s->ids, VG_MEM_MQTT);
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->lfd = w->efd = w->ep = w->spare_fd = -1;
        pthread_mutex_init(&w->inbox_mu, NULL);
    }
    if (!s->telemetry_topic || vg_topic_tree_new(&s->tree) != VG_OK)
        goto cleanup;
    uint64_t now = vg_clock_mono_ns() / 1000000;
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->srv = s;
        w->id = i;
        w->rbuf = vg_malloc(VG_MEM_MQTT, RBUF_SIZE);
        w->route = vg_calloc(VG_MEM_MQTT, 1, sizeof *w->route);
        w->sub_scratch = vg_calloc(VG_MEM_MQTT, s->o.max_subs_per_packet, sizeof *w->sub_scratch);
        w->rc_scratch = vg_malloc(VG_MEM_MQTT, s->o.max_subs_per_packet);
        if (!w->rbuf || !w->route || !w->sub_scratch || !w->rc_scratch || vg_wheel_init(&w->wheel, 4096, WHEEL_TICK_MS, now) != VG_OK)
            goto cleanup;
        if (i == 0) {
            rc = listen_socket(opts->listen_host, opts->listen_port, &w->lfd);
            if (rc)
                goto cleanup;
        } else {
            w->lfd = dup(s->workers[0].lfd);
        }
        rc = VG_EIO;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (w->ep < 0 || w->efd < 0)
            goto cleanup;
        /* EPOLLEXCLUSIVE: a new connection wakes one worker, not all. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &w->lfd};
        struct epoll_event ev2 = {.events = EPOLLIN, .data.ptr = &w->efd};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev2) < 0)
            goto cleanup;
    }
    *out = s;
    return VG_OK;
cleanup:
    vg_server_free(s);
    return rc;
}

int vg_server_start(vg_server_t *s)
{
    for (uint32_t i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            atomic_store(&s->stopping, true);
            for (uint32_t j = 0; j < i; j++) {
                wake(&s->workers[j]);
                pthread_join(s->workers[j].thread, NULL);
            }
            return VG_EIO;
        }
    }
    s->started = true;
    return VG_OK;
}

void vg_server_quiesce(vg_server_t *s)
{
    if (!s->started)
        return;
    atomic_store(&s->quiescing, true);
    for (uint32_t i = 0; i < s->nworkers; i++)
        wake(&s->workers[i]);
    /* Wait (bounded) until every worker stopped accepting and reading. */
    for (int i = 0; i < 2000 && atomic_load(&s->quiesced_workers) < s->nworkers; i++)
        usleep(1000);
}

void vg_server_stop(vg_server_t *s)
{
    if (!s->started)
        return;
    atomic_store_explicit(&s->stopping, true, memory_order_release);
    for (uint32_t i = 0; i < s->nworkers; i++)
        wake(&s->workers[i]);
    for (uint32_t i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    s->started = false;
}

void vg_server_free(vg_server_t *s)
{
    if (!s)
        return;
    vg_server_stop(s);
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        for (uint32_t j = 0; j < w->nslots; j++) {
            if (w->conns && w->conns[j])
                conn_destroy(w, w->conns[j]);
        }
        for (size_t j = 0; j < w->inbox_len; j++)
            if (w->inbox[j].kind == ITEM_DELIVER)
                msg_unref(w->inbox[j].msg);
        if (w->lfd >= 0)
            close(w->lfd);
        if (w->efd >= 0)
            close(w->efd);
        if (w->ep >= 0)
            close(w->ep);
        if (w->spare_fd >= 0)
            close(w->spare_fd);
        vg_wheel_deinit(&w->wheel);
        vg_free(w->rbuf);
        if (w->route) {
            vg_free(w->route->subs);
            vg_free(w->route->qos);
            vg_free(w->route);
        }
        vg_free(w->sub_scratch);
        vg_free(w->rc_scratch);
        vg_free(w->conns);
        vg_free(w->slot_gen);
        vg_free(w->free_slots);
        vg_free(w->inbox);
        vg_free(w->inbox_spare);
        pthread_mutex_destroy(&w->inbox_mu);
    }
    vg_topic_tree_free(s->tree);
    vg_strmap_deinit(&s->ids);
    pthread_rwlock_destroy(&s->tree_lock);
    pthread_mutex_destroy(&s->ids_mu);
    vg_free(s->telemetry_topic);
    vg_free(s);
}

void vg_server_stats(vg_server_t *s, vg_server_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        out->connections_current += atomic_load_explicit(&w->st_conns_current, memory_order_relaxed);
        out->connections_total += atomic_load_explicit(&w->st_conns_total, memory_order_relaxed);
        out->connections_refused += atomic_load_explicit(&w->st_refused, memory_order_relaxed);
        for (int r = 0; r < VG_CLOSE__COUNT; r++)
            out->closes[r] += atomic_load_explicit(&w->st_closes[r], memory_order_relaxed);
        out->publish_received += atomic_load_explicit(&w->st_pub_in, memory_order_relaxed);
        out->publish_sent += atomic_load_explicit(&w->st_pub_out, memory_order_relaxed);
        out->bytes_in += atomic_load_explicit(&w->st_bytes_in, memory_order_relaxed);
        out->bytes_out += atomic_load_explicit(&w->st_bytes_out, memory_order_relaxed);
        out->read_pauses += atomic_load_explicit(&w->st_read_pauses, memory_order_relaxed);
    }
    out->subscriptions = atomic_load_explicit(&s->nsubs, memory_order_relaxed);
}
