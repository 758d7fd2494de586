/* server.c — the MQTT 3.1.1 + 5.0 server: I/O workers, connections, the
 * packet state machine, sessions, retained messages, wills, subscriptions
 * and routing. See server.h for the contract.
 *
 * Owns: sockets, per-connection buffers, sessions (client id -> session,
 * behind ids_mu; each session's queues behind its own mutex), the
 * subscription tree (behind a rwlock), shared-subscription groups, the
 * retained store, the state store (SQLite, through store/kv) and the
 * housekeeping thread (session expiry, delayed wills).
 * Does not own: what telemetry means (the ingest hook), durability of
 * telemetry (the stream), packet encoding rules (codec.c), message layout
 * (message.c).
 *
 * Memory per connection is kept small on purpose (the target is ≤ 1 KiB per
 * idle connection, kernel buffers aside): input is read into one buffer per
 * worker and only a partial packet's bytes are copied into the connection;
 * output buffers and the ack ring exist only while something is queued or
 * awaited; topic alias tables only once aliases are used; a clean session's
 * queues only when it has messages in flight. What an idle connection costs:
 * conn_t (184 bytes), session_t (192 + the client id), the client id's slot
 * and key copy in the ids map, and 14 bytes of per-worker slot arrays —
 * about 450 bytes counted by vg_malloc, 555 of RSS (10,000 idle 3.1.1 or 5.0
 * connections, one QoS 1 PUBLISH each, measured from outside).
 *
 * Lock order: ids_mu -> session mu; tree_lock is never taken while a
 * session mu is held, and no session mu is taken while tree_lock is held
 * except to read immutable fields. Section numbers refer to MQTT 5.0 unless
 * marked 3.1.1. */
#include "mqtt/server.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/hash.h"
#include "core/strmap.h"
#include "core/wheel.h"
#include "mqtt/codec.h"
#include "mqtt/message.h"
#include "mqtt/retain.h"
#include "mqtt/topic.h"
#include "net/http.h"
#include "net/ws.h"
#include "store/kv.h"
#include <ctype.h>

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
#define MAX_SUBIDS 4 /* subscription ids carried per delivery (more overlapping ones are not listed) */
#define EXPIRY_NEVER 0xFFFFFFFFu

/* kv namespaces (the state store's on-disk layout is documented in kv.c;
 * the value formats here). */
enum {
    NS_SESSION = 1, /* key client id, sub 0: session_blob (see session_persist) */
    NS_OUT = 2,     /* key client id, sub queue seq: out entry + message blob */
    NS_Q2IN = 3,    /* key client id, sub packet id: inbound QoS 2 awaiting PUBREL (empty value) */
    NS_RETAIN = 4,  /* key topic, sub 0: message blob */
};

/* Token layout (64 bits): worker:8 | slot:24 | gen:16 | packet id:16. */
#define TOK(w, slot, gen, pid)                                                                                         \
    (((uint64_t)(w) << 56) | ((uint64_t)((slot)&0xffffffu) << 32) | ((uint64_t)((gen)&0xffffu) << 16) |               \
     (uint64_t)(pid))
#define TOK_WORKER(t) ((uint32_t)((t) >> 56))
#define TOK_SLOT(t) ((uint32_t)(((t) >> 32) & 0xffffffu))
#define TOK_GEN(t) ((uint16_t)(((t) >> 16) & 0xffffu))
#define TOK_PID(t) ((uint16_t)((t)&0xffffu))
/* A connection's identity without the packet id. */
#define CONN_TOK(w, slot, gen) TOK(w, slot, gen, 0)

struct session;

/* Subscription options byte as kept in the tree (§3.8.3.1 layout). */
#define OPT_QOS(o) ((uint8_t)((o)&3))
#define OPT_NL 0x04
#define OPT_RAP 0x08
#define OPT_RH(o) ((uint8_t)(((o) >> 4) & 3))

enum { SUBK_ENTRY = 1, SUBK_GROUP = 2 };

/* One (session, filter) subscription. The tree's subscriber pointer is
 * either one of these or a group (shared subscription); `kind` comes first
 * in both so a router can tell. Freed only after leaving the tree (under the
 * write lock), so a router holding the read lock never sees a dangling one. */
typedef struct subent {
    uint8_t kind;
    uint8_t opts;
    uint16_t flen;
    uint32_t sub_id; /* 0 = none */
    uint32_t idx;    /* position in its session's subs[] */
    struct session *sess;
    struct group *group; /* shared subscription it belongs to, or NULL */
    char filter[];       /* as the client sent it (incl. $share/<g>/), NUL-terminated */
} subent_t;

/* A shared subscription group `$share/<name>/<filter>`: one tree entry for
 * the inner filter; each message goes to one member (round robin, online
 * members first). Members change under the tree write lock. */
typedef struct group {
    uint8_t kind;
    uint32_t n, cap;
    atomic_uint rr;
    subent_t **members;
    char *key; /* name '\0' inner filter, for the groups map */
    uint32_t key_len;
    char *inner;
    uint16_t inner_len;
} group_t;

enum { OUT_QUEUED = 0, OUT_WAIT_ACK, OUT_WAIT_COMP };

/* One message on its way to one session. */
typedef struct {
    vg_msg_t *m;
    uint8_t qos;    /* delivery QoS */
    uint8_t state;  /* OUT_* */
    uint8_t retain; /* retain flag to send */
    uint8_t nsubids;
    uint16_t pid;
    uint32_t subids[MAX_SUBIDS];
    uint64_t kvsub; /* key in NS_OUT, 0 = not persisted */
} out_t;

/* A FIFO of out_t (ring buffer, grows by doubling). */
typedef struct {
    out_t *v;
    uint32_t head, n, cap;
} outq_t;

enum { HK_EXPIRE = 1, HK_WILL = 2 };

/* Laid out without holes (192 bytes, then the id). */
typedef struct session {
    pthread_mutex_t mu;
    atomic_uint refs;
    uint32_t id_len;
    uint32_t expiry_s;  /* session expiry interval; EXPIRY_NEVER = never */
    uint32_t epoch;     /* bumped on every attach: stale timers are ignored */
    int64_t offline_since_ms;
    uint64_t owner;     /* CONN_TOK of the attached connection */
    /* subscriptions (changed under tree_lock write; read by the owner) */
    subent_t **subs;
    uint32_t nsubs, subs_cap;
    /* filter -> subent: an open-addressing set of the subs[] pointers keyed
     * by their filter (no key copies: 1,000,000 subscriptions must stay
     * small), built once a session has SUBIDX_MIN of them */
    subent_t **subidx;
    uint32_t subidx_cap;
    uint32_t window;    /* max in flight for the current connection */
    /* outbound: in flight (sent, unacknowledged) in send order, then queued */
    outq_t inflight, queue;
    uint64_t next_kvsub;
    /* inbound QoS 2 packet ids awaiting PUBREL */
    uint16_t *q2in;
    uint32_t nq2in, q2in_cap;
    /* delayed will (5.0 will delay interval) waiting for its timer */
    vg_msg_t *pending_will;
    uint16_t next_pid;
    uint8_t level;      /* protocol level of the last connection */
    bool online;        /* a connection is attached (owner) */
    bool dead;          /* ended: no longer in the ids map */
    bool persistent;    /* state mirrored into the store */
    bool meta_dirty;
    char id[];          /* the client id, NUL-terminated, in the same allocation */
} session_t;

/* Worker inbox items. */
typedef enum {
    ITEM_COMPLETE = 1,
    ITEM_DELIVER,
    ITEM_DELIVER_BATCH,
    ITEM_KICK,          /* close connection `token` (session taken over) */
    ITEM_TAKEOVER,      /* drain, then close connection `token`; answer `waiter` (see handle_connect) */
    ITEM_TAKEOVER_DONE, /* connection `token` may run its CONNECT again */
} item_kind_t;

/* One delivery target of a routed message. */
typedef struct {
    struct session *se; /* holds a ref */
    uint8_t qos, retain, nsubids;
    uint32_t subids[MAX_SUBIDS];
    uint64_t kvsub; /* copy already stored for the session (NS_OUT), 0 = none */
} tgt_t;

/* Deliveries of one message to sessions on one other worker, posted as a
 * single inbox item: a fan-out to thousands of subscribers costs one item
 * per worker, not one per subscriber (and the inbox arrays, which are kept
 * for reuse, stay small). */
typedef struct batch {
    uint32_t n, cap;
    tgt_t v[];
} batch_t;

typedef struct {
    uint8_t kind;
    uint8_t qos;
    uint8_t retain;
    uint8_t nsubids;
    int32_t status;
    uint64_t token; /* COMPLETE: ack token; KICK, TAKEOVER, TAKEOVER_DONE: connection */
    union {
        session_t *sess; /* DELIVER: target (holds a ref) */
        batch_t *batch;  /* DELIVER_BATCH: targets (owned by the item) */
        uint64_t waiter; /* TAKEOVER: the connection whose CONNECT waits */
    };
    vg_msg_t *msg;   /* DELIVER, DELIVER_BATCH: holds a ref */
    uint64_t kvsub;  /* DELIVER: copy already stored for the session, 0 = none */
    uint32_t subids[MAX_SUBIDS];
} item_t;

/* ST_LINGER: closed as far as MQTT is concerned (session released, no
 * handlers run, unreachable by token), only the socket is left: its output
 * drains, its input is discarded, see linger_start. */
enum { ST_FREE = 0, ST_NEW, ST_ACTIVE, ST_CLOSING, ST_LINGER };

/* True once a connection is closing or lingering: nothing more is queued to
 * it and no packet of it is handled. */
#define CONN_GONE(c) ((c)->state >= ST_CLOSING)

/* Listeners / transports. */
enum { L_MQTT = 0, L_WS, L_HTTP, L__COUNT };
enum { TR_MQTT = 0, TR_WS_HANDSHAKE, TR_WS, TR_HTTP };
#define ACK_HTTP 0xFF /* ack_t.type of an HTTP publish awaiting its response */
#define ACK_PKT 0xFE  /* ack_t.type of a SUBACK/UNSUBACK waiting for its session to be stored */
#define HTTP_MAX_HEADERS 32

/* Per-connection state of the WebSocket and HTTP transports, allocated only
 * for connections on those listeners (MQTT over TCP pays nothing). */
typedef struct {
    vg_ws_conn_t ws;
    size_t ws_framed;       /* c->out[0..ws_framed) already holds whole frames */
    vg_http_parser_t hp;
    vg_http_header_t headers[HTTP_MAX_HEADERS];
    /* HTTP request in progress */
    bool have_head;
    bool keep_alive;
    bool close_after;       /* answer then close (Connection: close or an error) */
    int status;             /* a status decided from the head (405, 404, 400...) or 0 */
    const char *why;
    uint8_t qos;
    bool retain;
    size_t head_len;        /* bytes of the head in c->in */
    size_t body_len;        /* decoded body bytes so far, right after the head */
    size_t raw_used;        /* raw body bytes consumed so far (after the head) */
    vg_http_body_t body;
    char *topic;            /* decoded topic of the request */
    size_t topic_len;
    uint16_t next_seq;      /* ack ring ids of HTTP publishes */
} xport_t;

/* An inbound acknowledgement waiting for its turn (acks leave in PUBLISH
 * order, §4.6) and for its pending completions (stream durable, store
 * durable). */
typedef struct {
    uint16_t pid;
    uint8_t type;    /* VG_MQTT_PUBACK, VG_MQTT_PUBREC, ACK_HTTP, or ACK_PKT */
    uint8_t pending; /* completions still outstanding */
    uint8_t reason;  /* 5.0 reason code */
    uint8_t failed;
    uint32_t pkt_len;
    uint8_t *pkt;    /* ACK_PKT: an encoded SUBACK/UNSUBACK to send as is */
    struct retained_batch *retained; /* ACK_PKT: retained messages to send after it */
} ack_t;

/* 5.0 topic aliases of one connection, allocated when first used. */
typedef struct {
    vg_strmap_t out;   /* server -> client: topic -> alias */
    char **in;         /* client -> server: alias-1 -> topic (topic_alias_max entries, allocated on first use) */
    uint16_t *in_len;
} aliases_t;

/* One connection. Laid out without holes: 184 bytes, a 192-byte malloc
 * chunk; an idle connection owns nothing else (buffers, the ack ring and
 * alias tables exist only while in use). */
typedef struct conn {
    int fd;
    uint32_t slot;
    uint16_t gen;
    uint8_t state;
    uint8_t close_reason;
    uint8_t level;        /* protocol level once CONNECT was read */
    uint8_t transport;    /* TR_* */
    uint8_t listener;     /* L_* it was accepted on */
    bool paused;          /* reading paused: inflight limit */
    bool in_flush;        /* on the worker's flush list */
    bool epollout;        /* EPOLLOUT armed */
    bool quiesced;        /* reading stopped for shutdown */
    bool clean_disconnect;/* DISCONNECT (normal) received: no will */
    bool problem_info;    /* 5.0 request problem information (default 1) */
    bool linger;          /* a final answer (DISCONNECT, refusing CONNACK...) is queued: linger on close */
    bool takeover_wait;   /* its CONNECT waits for the session's old connection to be drained */
    bool takeover_tried;  /* ... and did once, for the owner takeover_from */
    uint16_t keepalive;
    uint16_t peer_receive_max;   /* 5.0: client's receive maximum */
    uint16_t peer_alias_max;     /* 5.0: client's topic alias maximum */
    uint16_t next_alias_out;
    uint32_t peer_max_packet;    /* 5.0: client's maximum packet size (0 = none) */
    uint32_t congested_at;       /* mono ms (low 32 bits, never 0) its output went over max_outbuf; 0 = under */
    uint32_t will_delay;
    vg_wheel_node_t timer;
    uint64_t takeover_from; /* CONN_TOK of the connection its CONNECT waited for */
    session_t *sess;      /* attached session (holds a ref) */
    vg_msg_t *will;       /* will message (holds a ref), NULL = none */
    /* partial input */
    uint8_t *in;
    uint32_t in_len, in_cap;
    /* queued output (at most OUT_MAX bytes: see out_reserve_ex) */
    uint8_t *out;
    uint32_t out_off, out_len, out_cap;
    /* inbound acks in arrival order */
    uint32_t ack_head, ack_count, ack_cap;
    ack_t *acks;
    aliases_t *alias;     /* NULL until the connection uses topic aliases */
    xport_t *x;           /* WebSocket / HTTP state, NULL for MQTT over TCP */
    struct conn *flush_next;
    struct conn *close_next;
} conn_t;

/* The output buffer's bound, whatever is configured: sizes fit 32 bits. */
#define OUT_MAX (1u << 31)
#define MAX_OUTBUF_LIMIT (1u << 30) /* --max-outbuf at most (output goes up to twice it) */

typedef struct worker {
    struct vg_server *srv;
    uint32_t id;
    pthread_t thread;
    int ep;
    int lfd[L__COUNT]; /* listening sockets (MQTT, WebSocket, HTTP), -1 = none */
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
    bool ingested; /* the ingest hook ran this iteration: call the flush hook before sleeping */
    /* inbox */
    pthread_mutex_t inbox_mu;
    item_t *inbox, *inbox_spare;
    size_t inbox_len, inbox_cap, spare_cap;
    /* stats (relaxed atomics: read by the stats thread) */
    atomic_uint_fast64_t st_conns_current, st_conns_total, st_refused, st_closes[VG_CLOSE__COUNT];
    atomic_uint_fast64_t st_pub_in, st_pub_out, st_bytes_in, st_bytes_out, st_read_pauses;
    atomic_uint_fast64_t st_ws, st_http, st_http_err;
    atomic_uint_fast64_t st_lingering, st_linger, st_linger_deadline, st_linger_overflow;
    atomic_uint_fast64_t st_drop_qos0_outbuf, st_deferred_outbuf;
    /* routing scratch */
    struct route_ctx *route;
    /* SUBSCRIBE scratch: max_subs_per_packet filters and return codes */
    vg_mqtt_sub_t *sub_scratch;
    uint8_t *rc_scratch;
} worker_t;

/* A store write a PUBLISH's acknowledgement waits for. */
typedef struct {
    uint64_t seq;
    uint64_t token;
} kvwait_t;

typedef struct {
    int64_t at_ms;
    uint32_t epoch;
    uint8_t kind;
    session_t *sess; /* holds a ref */
} hk_item_t;

struct vg_server {
    vg_server_opts_t o;
    char *telemetry_topic;
    size_t telemetry_len;
    char *control_topic;
    size_t control_len;
    uint32_t nworkers;
    worker_t workers[MAX_WORKERS];
    atomic_bool stopping;
    atomic_bool quiescing;
    atomic_uint quiesced_workers;
    atomic_uint conns_total; /* for the connection limit */
    atomic_uint conns_listener[L__COUNT];
    uint32_t max_listener[L__COUNT]; /* 0 = none beyond the global limit */
    pthread_rwlock_t tree_lock;
    vg_topic_tree_t *tree;
    vg_strmap_t groups; /* group key -> group_t* (under tree_lock) */
    atomic_uint_fast64_t nsubs;
    pthread_mutex_t ids_mu;
    vg_strmap_t ids; /* client id -> session_t* (the map holds a ref) */
    vg_retain_t *retain;
    vg_kv_t *kv;
    /* acks waiting for store durability, in seq order */
    pthread_mutex_t kvw_mu;
    kvwait_t *kvw;
    size_t kvw_head, kvw_n, kvw_cap;
    uint64_t kv_durable;
    /* housekeeping: a min-heap of session timers */
    pthread_t hk_thread;
    pthread_mutex_t hk_mu;
    pthread_cond_t hk_cv;
    hk_item_t *hk;
    size_t hk_n, hk_cap;
    int64_t hk_wake_at; /* wall ms the thread sleeps until (INT64_MAX: until signalled), 0 while awake */
    bool hk_started;
    /* counters not owned by one worker */
    atomic_uint_fast64_t st_sessions, st_offline, st_queued, st_queued_bytes, st_drop_client, st_drop_global;
    atomic_uint_fast64_t st_expired, st_too_large, st_q2dup, st_wills, st_store_errors;
    bool started;
};

static _Thread_local worker_t *tl_worker;

const char *vg_close_reason_name(vg_close_reason_t r)
{
    static const char *const names[VG_CLOSE__COUNT] = {
        "client",        "peer_closed",      "malformed",       "too_large",   "protocol_error",
        "keepalive_timeout", "connect_timeout", "takeover",     "io_error",    "slow_consumer",
        "shutdown",      "rejected",         "receive_maximum", "topic_alias", "disconnect_with_will",
        "session_expired", "ws_protocol_error", "http_bad_request", "http_done"};
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
    o->slow_consumer_ms = 30000;
    o->connect_timeout_ms = 10000;
    o->linger_ms = 2000;
    o->linger_bytes = 1024 * 1024;
    o->max_inflight_out = 64;
    o->max_queued_per_client = 1000;
    o->max_queued_bytes = 256u * 1024 * 1024;
    o->topic_alias_max = 64;
    o->state_commit_us = 0;
    o->telemetry_topic = "iot/wearable/data";
}

static int64_t now_wall(void)
{
    return vg_clock_wall_ms();
}

static uint64_t now_mono_ms(void)
{
    return vg_clock_mono_ns() / 1000000;
}

/* ---- small queues ------------------------------------------------------ */

/* Doubles a full ring of n elements of size `elem` starting at *head:
 * copies them in order to the front of a new array (so *head becomes 0) and
 * frees the old one. Shared by the session queues and the ack ring. */
static int ring_grow(void **v, uint32_t *head, uint32_t n, uint32_t *cap, size_t elem)
{
    uint32_t ncap = *cap ? *cap * 2 : 8;
    uint8_t *nv = vg_malloc(VG_MEM_MQTT, (size_t)ncap * elem);
    if (!nv)
        return VG_ENOMEM;
    const uint8_t *ov = *v;
    for (uint32_t i = 0; i < n; i++)
        memcpy(nv + (size_t)i * elem, ov + (size_t)((*head + i) % *cap) * elem, elem);
    vg_free(*v);
    *v = nv;
    *cap = ncap;
    *head = 0;
    return VG_OK;
}

static int outq_push(outq_t *q, const out_t *e)
{
    if (q->n == q->cap && ring_grow((void **)&q->v, &q->head, q->n, &q->cap, sizeof *q->v) != VG_OK)
        return VG_ENOMEM;
    q->v[(q->head + q->n) % q->cap] = *e;
    q->n++;
    return VG_OK;
}

static inline out_t *outq_at(outq_t *q, uint32_t i)
{
    return &q->v[(q->head + i) % q->cap];
}

static void outq_pop(outq_t *q, out_t *e)
{
    *e = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    if (q->n == 0) {
        vg_free(q->v);
        q->v = NULL;
        q->cap = q->head = 0;
    }
}

/* Removes element i keeping order (in-flight windows are small). */
static void outq_remove(outq_t *q, uint32_t i, out_t *e)
{
    *e = *outq_at(q, i);
    for (uint32_t j = i; j + 1 < q->n; j++)
        *outq_at(q, j) = *outq_at(q, j + 1);
    q->n--;
    if (q->n == 0) {
        vg_free(q->v);
        q->v = NULL;
        q->cap = q->head = 0;
    }
}

/* ---- the state store --------------------------------------------------- */

/* What the kv_* wrappers return when the store refused a write (queue full
 * while the disk is full, store failed, out of memory): larger than every
 * real sequence number, so that "the highest write this packet caused"
 * stays refused whatever else it caused, and kv_wait answers the packet
 * with VG_EIO instead of acknowledging data that was never queued. */
#define KV_REFUSED UINT64_MAX

/* Every store write goes through here so a refusal is counted once. Returns
 * the write's sequence number, 0 when there is no store, KV_REFUSED when it
 * refused. */
static uint64_t kv_put(struct vg_server *s, uint8_t ns, const void *key, size_t klen, uint64_t sub, const void *val,
                       size_t vlen)
{
    if (!s->kv)
        return 0;
    uint64_t seq = 0;
    if (vg_kv_put(s->kv, ns, key, klen, sub, val, vlen, &seq) != VG_OK) {
        atomic_fetch_add_explicit(&s->st_store_errors, 1, memory_order_relaxed);
        return KV_REFUSED;
    }
    return seq;
}

static uint64_t kv_del(struct vg_server *s, uint8_t ns, const void *key, size_t klen, uint64_t sub)
{
    if (!s->kv)
        return 0;
    uint64_t seq = 0;
    if (vg_kv_del(s->kv, ns, key, klen, sub, &seq) != VG_OK) {
        atomic_fetch_add_explicit(&s->st_store_errors, 1, memory_order_relaxed);
        return KV_REFUSED;
    }
    return seq;
}

static uint64_t kv_del_key(struct vg_server *s, uint8_t ns, const void *key, size_t klen)
{
    if (!s->kv)
        return 0;
    uint64_t seq = 0;
    if (vg_kv_del_key(s->kv, ns, key, klen, &seq) != VG_OK) {
        atomic_fetch_add_explicit(&s->st_store_errors, 1, memory_order_relaxed);
        return KV_REFUSED;
    }
    return seq;
}

/* Persists one out entry of a persistent session (called with sess->mu). */
static uint64_t out_persist(struct vg_server *s, session_t *se, out_t *e)
{
    if (!se->persistent || !s->kv)
        return 0;
    if (!e->kvsub)
        e->kvsub = ++se->next_kvsub;
    size_t ms = vg_msg_serialized_size(e->m);
    size_t n = 8 + 4 * MAX_SUBIDS + ms;
    uint8_t stackbuf[1024];
    uint8_t *b = n <= sizeof stackbuf ? stackbuf : vg_malloc(VG_MEM_MQTT, n);
    if (!b)
        return KV_REFUSED;
    /* value: u8 version 1, u8 qos, u8 state, u8 retain, u16 pid LE, u8 nsubids,
     * u8 0, u32 subids[MAX_SUBIDS] LE, message blob (message.h). */
    b[0] = 1;
    b[1] = e->qos;
    b[2] = e->state;
    b[3] = e->retain;
    b[4] = (uint8_t)e->pid;
    b[5] = (uint8_t)(e->pid >> 8);
    b[6] = e->nsubids;
    b[7] = 0;
    for (int i = 0; i < MAX_SUBIDS; i++)
        for (int k = 0; k < 4; k++)
            b[8 + 4 * i + k] = (uint8_t)(e->subids[i] >> (8 * k));
    vg_msg_serialize(e->m, b + 8 + 4 * MAX_SUBIDS);
    uint64_t seq = kv_put(s, NS_OUT, se->id, se->id_len, e->kvsub, b, n);
    if (b != stackbuf)
        vg_free(b);
    return seq;
}

static void out_unpersist(struct vg_server *s, session_t *se, out_t *e)
{
    if (e->kvsub) {
        kv_del(s, NS_OUT, se->id, se->id_len, e->kvsub);
        e->kvsub = 0;
    }
}

/* Session metadata value: u8 version 1, u8 level, u32 expiry, i64 offline
 * since (wall ms, 0 = online at the time of writing), u32 nsubs, then per
 * subscription: u8 options, u32 subscription id, u16 filter length, filter.
 * All little-endian. Called with sess->mu held or before the session is
 * shared; reads subs, which only change under tree_lock by the owner. */
static uint64_t session_persist(struct vg_server *s, session_t *se)
{
    if (!se->persistent || !s->kv)
        return 0;
    size_t n = 18;
    for (uint32_t i = 0; i < se->nsubs; i++)
        n += 7 + se->subs[i]->flen;
    uint8_t *b = vg_malloc(VG_MEM_MQTT, n);
    if (!b)
        return KV_REFUSED;
    size_t o = 0;
    b[o++] = 1;
    b[o++] = se->level;
    for (int k = 0; k < 4; k++)
        b[o++] = (uint8_t)(se->expiry_s >> (8 * k));
    for (int k = 0; k < 8; k++)
        b[o++] = (uint8_t)((uint64_t)se->offline_since_ms >> (8 * k));
    for (int k = 0; k < 4; k++)
        b[o++] = (uint8_t)(se->nsubs >> (8 * k));
    for (uint32_t i = 0; i < se->nsubs; i++) {
        subent_t *e = se->subs[i];
        b[o++] = e->opts;
        for (int k = 0; k < 4; k++)
            b[o++] = (uint8_t)(e->sub_id >> (8 * k));
        b[o++] = (uint8_t)e->flen;
        b[o++] = (uint8_t)(e->flen >> 8);
        memcpy(b + o, e->filter, e->flen);
        o += e->flen;
    }
    uint64_t seq = kv_put(s, NS_SESSION, se->id, se->id_len, 0, b, o);
    vg_free(b);
    se->meta_dirty = false;
    return seq;
}

/* Registers that the acknowledgement `token` must wait for store write seq
 * to be durable; the caller has counted one pending completion for it. */
static void kv_wait(struct vg_server *s, uint64_t seq, uint64_t token);

/* ---- sessions ---------------------------------------------------------- */

/* A session and its client id in one allocation. */
static session_t *session_new(const char *id, size_t idlen)
{
    session_t *se = vg_calloc(VG_MEM_MQTT, 1, sizeof *se + idlen + 1);
    if (!se)
        return NULL;
    memcpy(se->id, id, idlen);
    se->id[idlen] = 0;
    se->id_len = (uint32_t)idlen;
    pthread_mutex_init(&se->mu, NULL);
    atomic_init(&se->refs, 1);
    se->next_pid = 1;
    se->window = 1;
    return se;
}

static void session_ref(session_t *se)
{
    atomic_fetch_add_explicit(&se->refs, 1, memory_order_relaxed);
}

static void queue_account(struct vg_server *s, const out_t *e, int sign)
{
    uint64_t bytes = e->m->topic_len + e->m->payload_len + sizeof *e;
    if (sign > 0) {
        atomic_fetch_add_explicit(&s->st_queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->st_queued_bytes, bytes, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(&s->st_queued, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&s->st_queued_bytes, bytes, memory_order_relaxed);
    }
}

/* Drops every queued and in-flight message (session end or clean start). */
static void session_drop_messages(struct vg_server *s, session_t *se)
{
    out_t e;
    while (se->inflight.n) {
        outq_pop(&se->inflight, &e);
        queue_account(s, &e, -1);
        vg_msg_unref(e.m);
    }
    while (se->queue.n) {
        outq_pop(&se->queue, &e);
        queue_account(s, &e, -1);
        vg_msg_unref(e.m);
    }
}

static void session_unref(struct vg_server *s, session_t *se)
{
    if (!se || atomic_fetch_sub_explicit(&se->refs, 1, memory_order_acq_rel) != 1)
        return;
    session_drop_messages(s, se);
    vg_msg_unref(se->pending_will);
    vg_free(se->subs);
    vg_free(se->subidx);
    vg_free(se->q2in);
    pthread_mutex_destroy(&se->mu);
    vg_free(se);
}

static bool q2in_has(const session_t *se, uint16_t pid)
{
    for (uint32_t i = 0; i < se->nq2in; i++)
        if (se->q2in[i] == pid)
            return true;
    return false;
}

static int q2in_add(session_t *se, uint16_t pid)
{
    if (se->nq2in == se->q2in_cap) {
        uint32_t ncap = se->q2in_cap ? se->q2in_cap * 2 : 4;
        uint16_t *nq = vg_realloc(VG_MEM_MQTT, se->q2in, ncap * sizeof *nq);
        if (!nq)
            return VG_ENOMEM;
        se->q2in = nq;
        se->q2in_cap = ncap;
    }
    se->q2in[se->nq2in++] = pid;
    return VG_OK;
}

static bool q2in_del(session_t *se, uint16_t pid)
{
    for (uint32_t i = 0; i < se->nq2in; i++) {
        if (se->q2in[i] == pid) {
            se->q2in[i] = se->q2in[--se->nq2in];
            return true;
        }
    }
    return false;
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
static void conn_close_why(worker_t *w, conn_t *c, vg_close_reason_t reason, const char *why);

static void flush_mark(worker_t *w, conn_t *c)
{
    if (!c->in_flush) {
        c->in_flush = true;
        c->flush_next = w->flush_head;
        w->flush_head = c;
    }
}

/* ---- slow consumers ------------------------------------------------------
 *
 * max_outbuf is a soft limit on the bytes queued to one connection. While a
 * connection's output is over it, new PUBLISHes are not put into its output
 * buffer: QoS 0 ones are shed (dropped for this subscriber, counted as
 * dropped_qos0_outbuf), QoS 1 and 2 ones wait in the session's queue (bounded
 * by max_queued_per_client and max_queued_bytes, overflow dropped and
 * counted) and go out once the buffer drained below the limit. Control
 * packets (acks, PINGRESP) and the retransmissions of a resumed session
 * (at most the in-flight window) are still queued. A subscriber is a slow
 * consumer only if its output stays over the limit for slow_consumer_ms:
 * the time counts from the first moment over it and restarts whenever a
 * flush brings the buffer under it; it is checked each time something more
 * would be queued (a connection nothing is sent to holds its buffer until
 * its keepalive). Independently of time, output beyond twice the limit
 * (control packets a client provokes without reading) closes at once. */

/* Notes that c wants to queue more while its output is over the limit;
 * closes it once that has lasted slow_consumer_ms. */
static void out_congested(worker_t *w, conn_t *c)
{
    uint32_t now = (uint32_t)now_mono_ms() | 1u; /* 0 means "not congested" */
    if (!c->congested_at) {
        c->congested_at = now;
        return;
    }
    if (now - c->congested_at >= w->srv->o.slow_consumer_ms)
        conn_close(w, c, VG_CLOSE_SLOW_CONSUMER);
}

/* True if c's output is at or over max_outbuf (and notes the congestion):
 * no new PUBLISH goes into it now. */
static bool out_full(worker_t *w, conn_t *c)
{
    if (c->out_len - c->out_off < w->srv->o.max_outbuf)
        return false;
    out_congested(w, c);
    return true;
}

/* Reserves n bytes at the end of c's output queue; NULL if the connection
 * is closing, or is closed now: as a slow consumer (out_congested), or
 * because this would take its output beyond twice max_outbuf (unless
 * `force`, for the bounded retransmissions of a resumed session). */
static uint8_t *out_reserve_ex(worker_t *w, conn_t *c, size_t n, bool force)
{
    if (CONN_GONE(c))
        return NULL;
    if (c->out_off && c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->x)
            c->x->ws_framed = 0;
    }
    size_t pending = c->out_len - c->out_off;
    size_t limit = w->srv->o.max_outbuf;
    if (pending + n > OUT_MAX) { /* only forced retransmissions of huge windows get here */
        conn_close_why(w, c, VG_CLOSE_SLOW_CONSUMER, "output over 2 GiB");
        return NULL;
    }
    if (pending + n > limit) {
        if (!force && pending + n > 2 * limit) {
            conn_close_why(w, c, VG_CLOSE_SLOW_CONSUMER, "output over twice the limit");
            return NULL;
        }
        out_congested(w, c);
        if (CONN_GONE(c))
            return NULL;
    }
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) { /* compact before growing */
            memmove(c->out, c->out + c->out_off, pending);
            if (c->x)
                c->x->ws_framed = c->x->ws_framed > c->out_off ? c->x->ws_framed - c->out_off : 0;
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

static uint8_t *out_reserve(worker_t *w, conn_t *c, size_t n)
{
    return out_reserve_ex(w, c, n, false);
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
    /* Waiting for a takeover, not even the peer's half close is of interest
     * (the CONNECT runs again once the answer comes). */
    ev.events = (c->paused || c->quiesced || c->takeover_wait ? 0 : EPOLLIN) | (c->epollout ? EPOLLOUT : 0) |
                (c->takeover_wait ? 0 : EPOLLRDHUP);
    ev.data.ptr = c;
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* WebSocket: MQTT bytes are queued raw (so every encoder writes straight
 * into the output buffer as for TCP) and wrapped into one binary frame per
 * flush: the unframed tail gets a header inserted in front of it. Returns
 * false when out of memory. */
static bool ws_frame_pending(conn_t *c)
{
    xport_t *x = c->x;
    if (!x || c->out_len <= x->ws_framed)
        return true;
    size_t n = c->out_len - x->ws_framed;
    uint8_t hdr[VG_WS_MAX_HEADER];
    int h = vg_ws_encode_header(hdr, sizeof hdr, VG_WS_OP_BINARY, true, n, NULL);
    if (h <= 0)
        return false;
    if (c->out_len + (size_t)h > c->out_cap) {
        uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, c->out_len + (size_t)h);
        if (!no)
            return false;
        c->out = no;
        c->out_cap = c->out_len + (size_t)h;
    }
    memmove(c->out + x->ws_framed + h, c->out + x->ws_framed, n);
    memcpy(c->out + x->ws_framed, hdr, (size_t)h);
    c->out_len += (size_t)h;
    x->ws_framed = c->out_len;
    return true;
}

/* Appends a WebSocket control frame (pong, close) after the MQTT bytes
 * queued so far. */
static void ws_send_control(worker_t *w, conn_t *c, const uint8_t *frame, size_t n)
{
    if (!ws_frame_pending(c))
        return;
    if (c->out_len + n > c->out_cap) {
        uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, c->out_len + n);
        if (!no)
            return;
        c->out = no;
        c->out_cap = c->out_len + n;
    }
    memcpy(c->out + c->out_len, frame, n);
    c->out_len += n;
    c->x->ws_framed = c->out_len;
    /* A closing connection is flushed once by conn_destroy; putting it on
     * the flush list from there would leave a freed connection on it. */
    if (c->state != ST_CLOSING)
        flush_mark(w, c);
}

/* Sends what is queued in c->out. Returns 1 when all of it went out, 0
 * when the socket would block (the rest stays queued), -1 if it broke. */
static int out_send(worker_t *w, conn_t *c)
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
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    return 1;
}

/* Writes what is queued; arms EPOLLOUT for what the socket would not take.
 * Returns false if the connection broke. */
static bool conn_flush(worker_t *w, conn_t *c)
{
    if (c->transport == TR_WS && !ws_frame_pending(c))
        return false;
    int sent = out_send(w, c);
    if (sent < 0)
        return false;
    if (sent == 0) {
        if (!c->epollout) {
            c->epollout = true;
            epoll_set(w, c);
        }
        return true;
    }
    c->out_off = c->out_len = 0;
    if (c->x)
        c->x->ws_framed = 0;
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

/* The 5.0 reason code a server DISCONNECT carries for each close reason
 * (0 = none is sent: the peer closed, or there is nobody to tell). */
static uint8_t close_reason_rc(vg_close_reason_t r)
{
    switch (r) {
    case VG_CLOSE_MALFORMED:
        return VG_RC_MALFORMED;
    case VG_CLOSE_TOO_LARGE:
        return VG_RC_PACKET_TOO_LARGE;
    case VG_CLOSE_PROTOCOL:
        return VG_RC_PROTOCOL_ERROR;
    case VG_CLOSE_KEEPALIVE:
        return VG_RC_KEEPALIVE_TIMEOUT;
    case VG_CLOSE_TAKEOVER:
        return VG_RC_SESSION_TAKEN_OVER;
    case VG_CLOSE_SLOW_CONSUMER:
        return VG_RC_QUOTA_EXCEEDED;
    case VG_CLOSE_SHUTDOWN:
        return VG_RC_SERVER_SHUTTING_DOWN;
    case VG_CLOSE_RECEIVE_MAX:
        return VG_RC_RECEIVE_MAX_EXCEEDED;
    case VG_CLOSE_TOPIC_ALIAS:
        return VG_RC_TOPIC_ALIAS_INVALID;
    case VG_CLOSE_IO:
        return VG_RC_UNSPECIFIED;
    case VG_CLOSE_SESSION_EXPIRED:
        return VG_RC_ADMIN_ACTION;
    default:
        return 0;
    }
}

/* Appends a 5.0 DISCONNECT (reason + reason string) ahead of a close. The
 * output limit is ignored here on purpose: this is the last packet. */
static void send_disconnect(worker_t *w, conn_t *c, uint8_t rc, const char *why)
{
    /* One final packet: a DISCONNECT already queued (e.g. 0x99 before the
     * close it causes) is not followed by a second one. */
    if (c->level != VG_MQTT_V5 || c->state == ST_NEW || !rc || c->linger)
        return;
    vg_mqtt_props_t pr = {0};
    if (why) {
        pr.present = VG_PROP_BIT(VG_PROP_REASON_STRING);
        pr.reason_string.p = (const uint8_t *)why;
        pr.reason_string.len = strlen(why);
    }
    uint8_t buf[160];
    int n = vg_mqtt_encode_reason(buf, sizeof buf, VG_MQTT_V5, VG_MQTT_DISCONNECT, rc, why ? &pr : NULL);
    if (n <= 0)
        return;
    if (c->out_len + (size_t)n > c->out_cap) {
        uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, c->out_len + (size_t)n);
        if (!no)
            return;
        c->out = no;
        c->out_cap = c->out_len + (size_t)n;
    }
    memcpy(c->out + c->out_len, buf, (size_t)n);
    c->out_len += (size_t)n;
    c->linger = true;
}

static void conn_close_why(worker_t *w, conn_t *c, vg_close_reason_t reason, const char *why)
{
    if (CONN_GONE(c))
        return;
    send_disconnect(w, c, close_reason_rc(reason), why);
    switch (reason) {
    case VG_CLOSE_SLOW_CONSUMER:
        /* It does not read: waiting for it to read its DISCONNECT would only
         * hold its (full) output buffer longer. */
        c->linger = false;
        break;
    case VG_CLOSE_HTTP_BAD_REQUEST:
    case VG_CLOSE_WS_PROTOCOL:
        /* An error answer (HTTP 4xx, WebSocket close frame) was queued. */
        c->linger |= c->out_len > c->out_off;
        break;
    case VG_CLOSE_PEER_CLOSED:
    case VG_CLOSE_CLIENT:
    case VG_CLOSE_DISCONNECT_WILL:
    case VG_CLOSE_IO:
    case VG_CLOSE_SHUTDOWN:
    case VG_CLOSE_HTTP_DONE:
        break;
    default:
        /* Any other close the server decides on gets a close frame on
         * WebSocket (conn_destroy / linger_start add it). */
        c->linger |= c->transport == TR_WS;
        break;
    }
    c->state = ST_CLOSING;
    c->close_reason = (uint8_t)reason;
    atomic_fetch_add_explicit(&w->st_closes[reason], 1, memory_order_relaxed);
    VG_DEBUG(MOD, "closing connection %.*s: %s%s%s", c->sess ? (int)c->sess->id_len : 0,
             c->sess ? c->sess->id : "", vg_close_reason_name(reason), why ? ": " : "", why ? why : "");
    c->close_next = w->close_head;
    w->close_head = c;
}

static void conn_close(worker_t *w, conn_t *c, vg_close_reason_t reason)
{
    conn_close_why(w, c, reason, NULL);
}

/* ---- subscriptions ----------------------------------------------------- */

/* A subscription entry with its filter stored inline (one allocation). */
static subent_t *subent_new(const char *f, size_t fl)
{
    subent_t *e = vg_calloc(VG_MEM_MQTT, 1, sizeof *e + fl + 1);
    if (!e)
        return NULL;
    e->kind = SUBK_ENTRY;
    e->flen = (uint16_t)fl;
    memcpy(e->filter, f, fl);
    e->filter[fl] = 0;
    return e;
}

static void subent_free(subent_t *e)
{
    vg_free(e);
}

/* Removes e from the tree or its group (tree_lock held for writing). */
static void subent_unlink(struct vg_server *s, subent_t *e)
{
    if (e->group) {
        group_t *g = e->group;
        for (uint32_t i = 0; i < g->n; i++) {
            if (g->members[i] == e) {
                g->members[i] = g->members[--g->n];
                break;
            }
        }
        if (g->n == 0) {
            vg_topic_tree_unsubscribe(s->tree, g->inner, g->inner_len, g);
            vg_strmap_del(&s->groups, g->key, g->key_len);
            vg_free(g->members);
            vg_free(g->key);
            vg_free(g);
        }
    } else {
        vg_topic_tree_unsubscribe(s->tree, e->filter, e->flen, e);
    }
    atomic_fetch_sub_explicit(&s->nsubs, 1, memory_order_relaxed);
}

/* Adds a new subscription entry for se (tree_lock held for writing). */
static int subent_link(struct vg_server *s, subent_t *e)
{
    vg_bytes_t group, inner;
    int sh = vg_mqtt_shared_split((const uint8_t *)e->filter, e->flen, &group, &inner);
    if (sh < 0)
        return VG_EINVAL;
    if (sh == 0) {
        int r = vg_topic_tree_subscribe(s->tree, e->filter, e->flen, e, e->opts);
        if (r != VG_OK && r != VG_EEXIST)
            return r;
        atomic_fetch_add_explicit(&s->nsubs, 1, memory_order_relaxed);
        return VG_OK;
    }
    size_t klen = group.len + 1 + inner.len;
    char *key = vg_malloc(VG_MEM_MQTT, klen + 1);
    if (!key)
        return VG_ENOMEM;
    memcpy(key, group.p, group.len);
    key[group.len] = 0;
    memcpy(key + group.len + 1, inner.p, inner.len);
    key[klen] = 0;
    uint64_t v = 0;
    group_t *g = NULL;
    if (vg_strmap_get(&s->groups, key, klen, &v) == VG_OK) {
        g = (group_t *)(uintptr_t)v;
        vg_free(key);
    } else {
        g = vg_calloc(VG_MEM_MQTT, 1, sizeof *g);
        if (!g) {
            vg_free(key);
            return VG_ENOMEM;
        }
        g->kind = SUBK_GROUP;
        g->key = key;
        g->key_len = (uint32_t)klen;
        g->inner = key + group.len + 1;
        g->inner_len = (uint16_t)inner.len;
        if (vg_strmap_put(&s->groups, key, klen, (uint64_t)(uintptr_t)g, NULL) != VG_OK ||
            vg_topic_tree_subscribe(s->tree, g->inner, g->inner_len, g, 2) != VG_OK) {
            vg_strmap_del(&s->groups, key, klen);
            vg_free(key);
            vg_free(g);
            return VG_ENOMEM;
        }
    }
    if (g->n == g->cap) {
        uint32_t ncap = g->cap ? g->cap * 2 : 4;
        subent_t **nm = vg_realloc(VG_MEM_MQTT, g->members, ncap * sizeof *nm);
        if (!nm)
            return VG_ENOMEM; /* an empty new group stays until its next member or shutdown */
        g->members = nm;
        g->cap = ncap;
    }
    g->members[g->n++] = e;
    e->group = g;
    atomic_fetch_add_explicit(&s->nsubs, 1, memory_order_relaxed);
    return VG_OK;
}

/* Removes every subscription of a session (session ended). */
static void session_unsubscribe_all(struct vg_server *s, session_t *se)
{
    if (!se->nsubs)
        return;
    pthread_rwlock_wrlock(&s->tree_lock);
    for (uint32_t i = 0; i < se->nsubs; i++) {
        subent_unlink(s, se->subs[i]);
        subent_free(se->subs[i]);
    }
    se->nsubs = 0;
    pthread_rwlock_unlock(&s->tree_lock);
    vg_free(se->subs);
    se->subs = NULL;
    se->subs_cap = 0;
    vg_free(se->subidx);
    se->subidx = NULL;
    se->subidx_cap = 0;
}

/* A session's own list of subscriptions, changed only by the thread that
 * owns the session (its connection's worker, or the loader): an array for
 * persistence and teardown, plus a filter index once there are enough of
 * them that a linear search would make a large SUBSCRIBE quadratic. */
#define SUBIDX_MIN 16

static uint32_t subidx_slot(const session_t *se, const char *f, size_t fl)
{
    uint32_t mask = se->subidx_cap - 1, i = vg_hash_bytes(f, fl) & mask;
    while (se->subidx[i] && !(se->subidx[i]->flen == fl && memcmp(se->subidx[i]->filter, f, fl) == 0))
        i = (i + 1) & mask;
    return i;
}

static subent_t *session_find_sub(session_t *se, const char *f, size_t fl)
{
    if (se->subidx)
        return se->subidx[subidx_slot(se, f, fl)];
    for (uint32_t j = 0; j < se->nsubs; j++)
        if (se->subs[j]->flen == fl && memcmp(se->subs[j]->filter, f, fl) == 0)
            return se->subs[j];
    return NULL;
}

/* (Re)builds the index at cap slots from subs[]; false if out of memory. */
static bool subidx_build(session_t *se, uint32_t cap)
{
    subent_t **ni = vg_calloc(VG_MEM_MQTT, cap, sizeof *ni);
    if (!ni)
        return false;
    vg_free(se->subidx);
    se->subidx = ni;
    se->subidx_cap = cap;
    for (uint32_t j = 0; j < se->nsubs; j++)
        se->subidx[subidx_slot(se, se->subs[j]->filter, se->subs[j]->flen)] = se->subs[j];
    return true;
}

/* Room for one more subscription in subs[] (call before linking it). */
static int session_reserve_sub(session_t *se)
{
    if (se->nsubs < se->subs_cap)
        return VG_OK;
    uint32_t ncap = se->subs_cap ? se->subs_cap * 2 : 4;
    subent_t **ns = vg_realloc(VG_MEM_MQTT, se->subs, ncap * sizeof *ns);
    if (!ns)
        return VG_ENOMEM;
    se->subs = ns;
    se->subs_cap = ncap;
    return VG_OK;
}

/* Appends e (room reserved). Never fails: if the index cannot grow it is
 * dropped and lookups fall back to the linear search. */
static void session_add_sub(session_t *se, subent_t *e)
{
    e->idx = se->nsubs;
    se->subs[se->nsubs++] = e;
    if (!se->subidx && se->nsubs < SUBIDX_MIN)
        return;
    if (!se->subidx || (uint64_t)se->nsubs * 10 > (uint64_t)se->subidx_cap * 7) {
        uint32_t cap = se->subidx_cap ? se->subidx_cap * 2 : 64;
        while ((uint64_t)se->nsubs * 10 > (uint64_t)cap * 7)
            cap *= 2;
        if (!subidx_build(se, cap)) {
            vg_free(se->subidx);
            se->subidx = NULL;
            se->subidx_cap = 0;
        }
        return;
    }
    se->subidx[subidx_slot(se, e->filter, e->flen)] = e;
}

static void session_remove_sub(session_t *se, subent_t *e)
{
    uint32_t j = e->idx;
    subent_t *last = se->subs[--se->nsubs];
    se->subs[j] = last;
    last->idx = j;
    if (!se->subidx)
        return;
    /* Linear-probing delete with backward shift: later entries of the run
     * move into the hole when their home slot allows it. */
    uint32_t mask = se->subidx_cap - 1, hole = subidx_slot(se, e->filter, e->flen);
    if (se->subidx[hole] != e)
        return;
    se->subidx[hole] = NULL;
    for (uint32_t i = (hole + 1) & mask; se->subidx[i]; i = (i + 1) & mask) {
        uint32_t home = vg_hash_bytes(se->subidx[i]->filter, se->subidx[i]->flen) & mask;
        /* Move i into hole if home is not in the cyclic range (hole, i]. */
        if ((i > hole) ? (home <= hole || home > i) : (home <= hole && home > i)) {
            se->subidx[hole] = se->subidx[i];
            se->subidx[i] = NULL;
            hole = i;
        }
    }
}

/* ---- housekeeping: session expiry and delayed wills -------------------- */

static void hk_push(struct vg_server *s, session_t *se, uint8_t kind, int64_t at_ms)
{
    pthread_mutex_lock(&s->hk_mu);
    if (s->hk_n == s->hk_cap) {
        size_t ncap = s->hk_cap ? s->hk_cap * 2 : 64;
        hk_item_t *nh = vg_realloc(VG_MEM_MQTT, s->hk, ncap * sizeof *nh);
        if (!nh) {
            pthread_mutex_unlock(&s->hk_mu);
            VG_WARN(MOD, "out of memory scheduling a session timer for %s", se->id);
            return;
        }
        s->hk = nh;
        s->hk_cap = ncap;
    }
    session_ref(se);
    hk_item_t it = {.at_ms = at_ms, .epoch = se->epoch, .kind = kind, .sess = se};
    size_t i = s->hk_n++;
    while (i > 0 && s->hk[(i - 1) / 2].at_ms > it.at_ms) {
        s->hk[i] = s->hk[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->hk[i] = it;
    bool first = i == 0;
    pthread_mutex_unlock(&s->hk_mu);
    if (first)
        pthread_cond_signal(&s->hk_cv);
}

static hk_item_t hk_pop_locked(struct vg_server *s)
{
    hk_item_t top = s->hk[0];
    hk_item_t last = s->hk[--s->hk_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hk_item_t *mv = &last;
        if (l < s->hk_n && s->hk[l].at_ms < mv->at_ms) {
            m = l;
            mv = &s->hk[l];
        }
        if (r < s->hk_n && s->hk[r].at_ms < mv->at_ms)
            m = r;
        if (m == i)
            break;
        s->hk[i] = s->hk[m];
        i = m;
    }
    if (s->hk_n)
        s->hk[i] = last;
    return top;
}

static int route(struct vg_server *s, worker_t *from, vg_msg_t *m, uint64_t *kvseq);

/* Publishes a message on the server's own behalf (wills): retained if
 * flagged, then routed. */
static void publish_server_msg(struct vg_server *s, worker_t *from, vg_msg_t *m);

/* Ends a session that the caller already marked dead and removed from the
 * ids map (dropping the map's reference is done here). */
static void session_kill(struct vg_server *s, session_t *se, vg_msg_t *will)
{
    worker_t *from = tl_worker && tl_worker->srv == s ? tl_worker : NULL;
    if (will) {
        publish_server_msg(s, from, will);
        vg_msg_unref(will);
    }
    session_unsubscribe_all(s, se);
    pthread_mutex_lock(&se->mu);
    session_drop_messages(s, se);
    se->nq2in = 0;
    bool persistent = se->persistent;
    se->persistent = false;
    pthread_mutex_unlock(&se->mu);
    if (persistent) {
        kv_del_key(s, NS_SESSION, se->id, se->id_len);
        kv_del_key(s, NS_OUT, se->id, se->id_len);
        kv_del_key(s, NS_Q2IN, se->id, se->id_len);
    }
    atomic_fetch_sub_explicit(&s->st_sessions, 1, memory_order_relaxed);
    session_unref(s, se);
}

/* Ends se if it is still offline (expiry, or its last connection closed
 * with a zero expiry interval). */
static void session_end_if_offline(struct vg_server *s, session_t *se)
{
    pthread_mutex_lock(&s->ids_mu);
    pthread_mutex_lock(&se->mu);
    if (se->online || se->dead) {
        pthread_mutex_unlock(&se->mu);
        pthread_mutex_unlock(&s->ids_mu);
        return;
    }
    se->dead = true;
    if (se->persistent)
        atomic_fetch_sub_explicit(&s->st_offline, 1, memory_order_relaxed);
    vg_strmap_del(&s->ids, se->id, se->id_len);
    vg_msg_t *will = se->pending_will;
    se->pending_will = NULL;
    pthread_mutex_unlock(&se->mu);
    pthread_mutex_unlock(&s->ids_mu);
    session_kill(s, se, will);
}

/* The housekeeping thread sleeps until its next deadline: the earliest
 * session timer (the heap's top) or the earliest retained message expiry,
 * whichever comes first, and with neither until it is signalled (hk_push
 * of an earlier timer, hk_note_expiry, stop). It never wakes on a period. */
static void *hk_main(void *arg)
{
    struct vg_server *s = arg;
    pthread_setname_np(pthread_self(), "vg-mqtt-hk"); /* for top -H, /proc/PID/task/TID/comm */
    pthread_mutex_lock(&s->hk_mu);
    while (!atomic_load(&s->stopping)) {
        int64_t now = now_wall();
        if (s->hk_n && s->hk[0].at_ms <= now) {
            hk_item_t it = hk_pop_locked(s);
            pthread_mutex_unlock(&s->hk_mu);
            session_t *se = it.sess;
            pthread_mutex_lock(&se->mu);
            bool current = !se->online && !se->dead && se->epoch == it.epoch;
            vg_msg_t *will = NULL;
            if (current && it.kind == HK_WILL) {
                will = se->pending_will;
                se->pending_will = NULL;
            }
            pthread_mutex_unlock(&se->mu);
            if (will) {
                publish_server_msg(s, NULL, will);
                vg_msg_unref(will);
            }
            if (current && it.kind == HK_EXPIRE)
                session_end_if_offline(s, se);
            session_unref(s, se);
            pthread_mutex_lock(&s->hk_mu);
            continue;
        }
        int64_t rx = s->retain ? vg_retain_next_expiry(s->retain) : 0;
        if (rx && rx <= now) {
            pthread_mutex_unlock(&s->hk_mu);
            vg_retain_sweep(s->retain, now);
            pthread_mutex_lock(&s->hk_mu);
            continue;
        }
        int64_t wake = s->hk_n ? s->hk[0].at_ms : INT64_MAX;
        if (rx && rx < wake)
            wake = rx;
        s->hk_wake_at = wake;
        if (wake == INT64_MAX) {
            pthread_cond_wait(&s->hk_cv, &s->hk_mu);
        } else {
            /* at_ms and expiries are wall-clock ms, as the condition's clock */
            struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (long)(wake % 1000) * 1000000};
            pthread_cond_timedwait(&s->hk_cv, &s->hk_mu, &ts);
        }
        s->hk_wake_at = 0; /* awake: nobody needs to signal */
    }
    pthread_mutex_unlock(&s->hk_mu);
    return NULL;
}

/* A retained message now expires at expire_at_ms: wakes the housekeeping
 * thread if it sleeps past that. Called after the message was stored, so
 * either the thread's next look at the store sees it, or it is asleep with
 * its wake-up time in hk_wake_at (both under hk_mu). */
static void hk_note_expiry(struct vg_server *s, int64_t expire_at_ms)
{
    pthread_mutex_lock(&s->hk_mu);
    if (s->hk_wake_at && expire_at_ms < s->hk_wake_at)
        pthread_cond_signal(&s->hk_cv);
    pthread_mutex_unlock(&s->hk_mu);
}

/* ---- the state store's durability waiters ----------------------------- */

static void kv_wait(struct vg_server *s, uint64_t seq, uint64_t token)
{
    if (seq == KV_REFUSED) {
        /* Never queued, so never durable: the packet is answered as not
         * stored (the connection closes and the client sends it again). */
        vg_server_complete(s, token, VG_EIO);
        return;
    }
    pthread_mutex_lock(&s->kvw_mu);
    if (s->kv_durable >= seq) {
        pthread_mutex_unlock(&s->kvw_mu);
        vg_server_complete(s, token, VG_OK);
        return;
    }
    if (s->kvw_n == s->kvw_cap) {
        size_t ncap = s->kvw_cap ? s->kvw_cap * 2 : 256;
        kvwait_t *nw = vg_realloc(VG_MEM_MQTT, s->kvw, ncap * sizeof *nw);
        if (!nw) {
            pthread_mutex_unlock(&s->kvw_mu);
            vg_server_complete(s, token, VG_ENOMEM);
            return;
        }
        s->kvw = nw;
        s->kvw_cap = ncap;
    }
    s->kvw[s->kvw_n++] = (kvwait_t){seq, token};
    pthread_mutex_unlock(&s->kvw_mu);
}

/* Store thread: everything up to seq is durable (or failed). */
static void on_kv_durable(void *ctx, uint64_t seq, int status)
{
    struct vg_server *s = ctx;
    kvwait_t done[256];
    for (;;) {
        size_t nd = 0;
        pthread_mutex_lock(&s->kvw_mu);
        if (status == VG_OK && seq > s->kv_durable)
            s->kv_durable = seq;
        size_t k = 0;
        for (size_t i = 0; i < s->kvw_n; i++) {
            if (s->kvw[i].seq <= seq && nd < 256)
                done[nd++] = s->kvw[i];
            else
                s->kvw[k++] = s->kvw[i];
        }
        s->kvw_n = k;
        pthread_mutex_unlock(&s->kvw_mu);
        for (size_t i = 0; i < nd; i++)
            vg_server_complete(s, done[i].token, status);
        if (nd < 256)
            break;
    }
}

/* ---- encoding a PUBLISH for one connection ----------------------------- */

/* c's topic alias state, allocated on first use (NULL if out of memory). */
static aliases_t *conn_aliases(conn_t *c)
{
    if (!c->alias) {
        c->alias = vg_calloc(VG_MEM_MQTT, 1, sizeof *c->alias);
        if (c->alias)
            vg_strmap_init(&c->alias->out, VG_MEM_MQTT);
    }
    return c->alias;
}

/* SEND_DEFERRED: a QoS 1/2 PUBLISH not sent because the output is full;
 * the caller keeps it queued for the session (as for SEND_FAILED, a closing
 * connection). SEND_SHED: a QoS 0 PUBLISH dropped for the same reason. */
enum { SEND_OK = 0, SEND_EXPIRED, SEND_TOO_LARGE, SEND_FAILED, SEND_DEFERRED, SEND_SHED };

/* Encodes and queues one PUBLISH of m to c: per-delivery QoS, packet id,
 * DUP, retain flag and subscription ids; for 5.0 also the remaining message
 * expiry and an outgoing topic alias. Honours the client's maximum packet
 * size by not sending (§3.1.2.11.4: the message is discarded for that
 * client, as if delivered). */
static int send_publish(worker_t *w, conn_t *c, vg_msg_t *m, uint8_t qos, uint16_t pid, bool dup, bool retain,
                        const uint32_t *subids, uint8_t nsubids)
{
    struct vg_server *s = w->srv;
    int64_t now = now_wall();
    if (vg_msg_expired(m, now) && !dup) {
        atomic_fetch_add_explicit(&s->st_expired, 1, memory_order_relaxed);
        return SEND_EXPIRED;
    }
    if (!dup && out_full(w, c)) {
        if (CONN_GONE(c))
            return SEND_FAILED;
        if (qos == 0) {
            atomic_fetch_add_explicit(&w->st_drop_qos0_outbuf, 1, memory_order_relaxed);
            return SEND_SHED;
        }
        atomic_fetch_add_explicit(&w->st_deferred_outbuf, 1, memory_order_relaxed);
        return SEND_DEFERRED;
    }
    vg_mqtt_publish_t p = {0};
    p.qos = qos;
    p.dup = dup && qos > 0;
    p.retain = retain;
    p.packet_id = qos ? pid : 0;
    p.topic.p = vg_msg_topic(m);
    p.topic.len = m->topic_len;
    p.payload.p = vg_msg_payload(m);
    p.payload.len = m->payload_len;
    if (c->level == VG_MQTT_V5) {
        p.props = m->props;
        if (m->expire_at_ms) {
            int64_t left = (m->expire_at_ms - now + 999) / 1000;
            p.props.present |= VG_PROP_BIT(VG_PROP_MESSAGE_EXPIRY);
            p.props.message_expiry = left > 0 ? (uint32_t)left : 0;
        }
        for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
            p.props.sub_ids[p.props.sub_id_count++] = subids[i];
        if (p.props.sub_id_count)
            p.props.present |= VG_PROP_BIT(VG_PROP_SUBSCRIPTION_ID);
        if (c->peer_alias_max) {
            /* Aliases are handed out to the first topics sent until the
             * client's maximum is used; later topics go in full. */
            aliases_t *al = conn_aliases(c);
            uint64_t a = 0;
            if (al) {
                if (vg_strmap_get(&al->out, (const char *)p.topic.p, p.topic.len, &a) == VG_OK) {
                    p.props.present |= VG_PROP_BIT(VG_PROP_TOPIC_ALIAS);
                    p.props.topic_alias = (uint16_t)a;
                    p.topic.len = 0;
                } else if (c->next_alias_out < c->peer_alias_max &&
                           vg_strmap_put(&al->out, (const char *)p.topic.p, p.topic.len,
                                         (uint64_t)(c->next_alias_out + 1), NULL) == VG_OK) {
                    c->next_alias_out++;
                    p.props.present |= VG_PROP_BIT(VG_PROP_TOPIC_ALIAS);
                    p.props.topic_alias = c->next_alias_out;
                }
            }
        }
    }
    size_t n = vg_mqtt_publish_size(c->level, p.topic.len, p.payload.len, qos, c->level == VG_MQTT_V5 ? &p.props : NULL);
    if (!n)
        return SEND_FAILED;
    if (c->peer_max_packet && n > c->peer_max_packet) {
        atomic_fetch_add_explicit(&s->st_too_large, 1, memory_order_relaxed);
        return SEND_TOO_LARGE;
    }
    uint8_t *dst = out_reserve_ex(w, c, n, dup);
    if (!dst)
        return SEND_FAILED;
    vg_mqtt_encode_publish(dst, n, c->level, &p);
    atomic_fetch_add_explicit(&w->st_pub_out, 1, memory_order_relaxed);
    return SEND_OK;
}

static uint16_t session_next_pid(session_t *se)
{
    for (;;) {
        uint16_t pid = se->next_pid++;
        if (se->next_pid == 0)
            se->next_pid = 1;
        bool used = false;
        for (uint32_t i = 0; i < se->inflight.n && !used; i++)
            used = outq_at(&se->inflight, i)->pid == pid;
        if (!used)
            return pid;
    }
}

/* Moves queued messages into the in-flight window and sends them (se->mu
 * held; c is se's connection on this worker). */
static void session_pump(worker_t *w, conn_t *c, session_t *se)
{
    struct vg_server *s = w->srv;
    while (se->queue.n && se->inflight.n < se->window && c->state == ST_ACTIVE) {
        out_t e;
        outq_pop(&se->queue, &e);
        e.pid = session_next_pid(se);
        e.state = OUT_WAIT_ACK;
        int r = send_publish(w, c, e.m, e.qos, e.pid, false, e.retain, e.subids, e.nsubids);
        if (r == SEND_FAILED || r == SEND_DEFERRED) {
            /* The connection is closing, or its output is full (the pump
             * runs again once it drained): keep the message queued in order. */
            e.state = OUT_QUEUED;
            e.pid = 0;
            out_t tmp;
            outq_push(&se->queue, &e);
            /* move it back to the front */
            for (uint32_t i = se->queue.n - 1; i > 0; i--) {
                tmp = *outq_at(&se->queue, i);
                *outq_at(&se->queue, i) = *outq_at(&se->queue, i - 1);
                *outq_at(&se->queue, i - 1) = tmp;
            }
            return;
        }
        if (r != SEND_OK) {
            out_unpersist(s, se, &e);
            queue_account(s, &e, -1);
            vg_msg_unref(e.m);
            continue;
        }
        if (outq_push(&se->inflight, &e) != VG_OK) {
            out_unpersist(s, se, &e);
            queue_account(s, &e, -1);
            vg_msg_unref(e.m);
            continue;
        }
        if (se->persistent)
            out_persist(s, se, outq_at(&se->inflight, se->inflight.n - 1));
    }
}

/* Queues a QoS 1/2 message for se (se->mu held): limits first, then the
 * store for a persistent session. Returns the store seq (0 = none, KV_REFUSED = refused). */
static uint64_t session_enqueue(struct vg_server *s, session_t *se, vg_msg_t *m, uint8_t qos, bool retain,
                                const uint32_t *subids, uint8_t nsubids, uint64_t kvsub)
{
    /* kvsub: the routing thread already stored this copy under that key
     * (so the publisher's acknowledgement could wait for it); dropping the
     * copy must drop the record. */
    if (s->o.max_queued_per_client && se->queue.n >= s->o.max_queued_per_client) {
        atomic_fetch_add_explicit(&s->st_drop_client, 1, memory_order_relaxed);
        if (kvsub)
            kv_del(s, NS_OUT, se->id, se->id_len, kvsub);
        return 0;
    }
    if (s->o.max_queued_bytes &&
        atomic_load_explicit(&s->st_queued_bytes, memory_order_relaxed) + m->topic_len + m->payload_len >
            s->o.max_queued_bytes) {
        atomic_fetch_add_explicit(&s->st_drop_global, 1, memory_order_relaxed);
        if (kvsub)
            kv_del(s, NS_OUT, se->id, se->id_len, kvsub);
        return 0;
    }
    out_t e = {.m = m, .qos = qos, .state = OUT_QUEUED, .retain = retain, .nsubids = nsubids, .kvsub = kvsub};
    for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
        e.subids[i] = subids[i];
    if (outq_push(&se->queue, &e) != VG_OK)
        return 0;
    vg_msg_ref(m);
    queue_account(s, &e, +1);
    return out_persist(s, se, outq_at(&se->queue, se->queue.n - 1));
}

/* Delivers to se through its connection c on this worker (se->mu held). */
static uint64_t session_send(worker_t *w, conn_t *c, session_t *se, vg_msg_t *m, uint8_t qos, bool retain,
                             const uint32_t *subids, uint8_t nsubids, uint64_t kvsub)
{
    struct vg_server *s = w->srv;
    if (qos == 0) {
        send_publish(w, c, m, 0, 0, false, retain, subids, nsubids);
        return 0;
    }
    if (se->queue.n || se->inflight.n >= se->window) {
        uint64_t seq = session_enqueue(s, se, m, qos, retain, subids, nsubids, kvsub);
        return seq;
    }
    out_t e = {.m = m, .qos = qos, .state = OUT_WAIT_ACK, .retain = retain, .nsubids = nsubids, .kvsub = kvsub};
    for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
        e.subids[i] = subids[i];
    e.pid = session_next_pid(se);
    int r = send_publish(w, c, m, qos, e.pid, false, retain, subids, nsubids);
    if (r == SEND_EXPIRED || r == SEND_TOO_LARGE) {
        if (kvsub)
            kv_del(s, NS_OUT, se->id, se->id_len, kvsub);
        return 0;
    }
    if (r == SEND_FAILED || r == SEND_DEFERRED) /* closing, or output full: keep it for the session */
        return session_enqueue(s, se, m, qos, retain, subids, nsubids, kvsub);
    if (outq_push(&se->inflight, &e) != VG_OK)
        return 0;
    vg_msg_ref(m);
    queue_account(s, &e, +1);
    return out_persist(s, se, outq_at(&se->inflight, se->inflight.n - 1));
}

/* The connection a token names, NULL if it is gone. A lingering connection
 * is gone: it owns nothing any token could refer to. */
static conn_t *conn_lookup(worker_t *w, uint64_t tok)
{
    uint32_t slot = TOK_SLOT(tok);
    conn_t *c = slot < w->nslots ? w->conns[slot] : NULL;
    return c && c->gen == TOK_GEN(tok) && c->state != ST_LINGER ? c : NULL;
}

/* Delivers m to session se from any thread. `from` is the calling worker
 * (NULL for other threads). Returns the store seq the publisher's
 * acknowledgement must wait for (0 = none). Consumes one session ref. */
/* Adds a target to the batch for its worker; false if out of memory. */
static bool batch_add(batch_t **bp, session_t *se, uint8_t qos, bool retain, const uint32_t *subids, uint8_t nsubids,
                      uint64_t kvsub)
{
    batch_t *b = *bp;
    if (!b || b->n == b->cap) {
        uint32_t ncap = b ? b->cap * 2 : 16;
        batch_t *nb = vg_realloc(VG_MEM_MQTT, b, sizeof *nb + (size_t)ncap * sizeof nb->v[0]);
        if (!nb)
            return false;
        if (!b)
            nb->n = 0;
        nb->cap = ncap;
        *bp = b = nb;
    }
    tgt_t *t = &b->v[b->n++];
    t->se = se;
    t->qos = qos;
    t->retain = retain;
    t->nsubids = nsubids;
    t->kvsub = kvsub;
    for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
        t->subids[i] = subids[i];
    return true;
}

static uint64_t deliver_to_session_b(struct vg_server *s, worker_t *from, session_t *se, vg_msg_t *m, uint8_t qos,
                                     bool retain, const uint32_t *subids, uint8_t nsubids, batch_t **batches);

static uint64_t deliver_to_session(struct vg_server *s, worker_t *from, session_t *se, vg_msg_t *m, uint8_t qos,
                                   bool retain, const uint32_t *subids, uint8_t nsubids)
{
    return deliver_to_session_b(s, from, se, m, qos, retain, subids, nsubids, NULL);
}

/* As deliver_to_session; with batches (one per worker), deliveries to other
 * workers are collected there for the caller to post. */
static uint64_t deliver_to_session_b(struct vg_server *s, worker_t *from, session_t *se, vg_msg_t *m, uint8_t qos,
                                     bool retain, const uint32_t *subids, uint8_t nsubids, batch_t **batches)
{
    uint64_t seq = 0;
    pthread_mutex_lock(&se->mu);
    if (se->dead) {
        pthread_mutex_unlock(&se->mu);
        session_unref(s, se);
        return 0;
    }
    if (se->online) {
        uint32_t wi = TOK_WORKER(se->owner);
        if (from && wi == from->id) {
            conn_t *c = conn_lookup(from, se->owner);
            if (c && c->sess == se && c->state == ST_ACTIVE) {
                seq = session_send(from, c, se, m, qos, retain, subids, nsubids, 0);
                pthread_mutex_unlock(&se->mu);
                session_unref(s, se);
                return seq;
            }
        } else if (wi < s->nworkers) {
            /* Store a persistent session's copy here, so the publisher's
             * acknowledgement can wait for it; the owner worker updates the
             * same record when it sends or queues the message. */
            uint64_t kvsub = 0;
            if (qos > 0 && se->persistent && s->kv) {
                out_t e = {.m = m, .qos = qos, .state = OUT_QUEUED, .retain = retain, .nsubids = nsubids};
                for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
                    e.subids[i] = subids[i];
                seq = out_persist(s, se, &e);
                kvsub = seq && seq != KV_REFUSED ? e.kvsub : 0;
            }
            pthread_mutex_unlock(&se->mu);
            if (batches && batch_add(&batches[wi], se, qos, retain, subids, nsubids, kvsub))
                return seq; /* the session ref travels with the batch */
            item_t it = {.kind = ITEM_DELIVER, .qos = qos, .retain = retain, .nsubids = nsubids, .sess = se, .msg = m,
                         .kvsub = kvsub};
            for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
                it.subids[i] = subids[i];
            vg_msg_ref(m);
            if (inbox_post(&s->workers[wi], &it, 1) != VG_OK) {
                vg_msg_unref(m);
                session_unref(s, se);
                return 0;
            }
            return seq; /* the session ref travels with the item */
        }
    }
    /* Offline (or its connection is going away): QoS 0 is not kept for
     * absent clients (§3.1.2.4 leaves it optional; queues are for 1 and 2). */
    if (qos > 0 && (se->persistent || se->online))
        seq = session_enqueue(s, se, m, qos, retain, subids, nsubids, 0);
    pthread_mutex_unlock(&se->mu);
    session_unref(s, se);
    return seq;
}

/* ---- routing ----------------------------------------------------------- */

typedef struct {
    void *sub;
    uint8_t opts;
} hit_t;

typedef struct route_ctx {
    hit_t *hits;
    size_t n, cap;
    tgt_t *tg;
    size_t ntg, tcap;
    bool oom;
} route_ctx_t;

static void route_collect(void *ctx, void *sub, uint8_t opts)
{
    route_ctx_t *r = ctx;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        hit_t *nh = vg_realloc(VG_MEM_MQTT, r->hits, ncap * sizeof *nh);
        if (!nh) {
            r->oom = true;
            return;
        }
        r->hits = nh;
        r->cap = ncap;
    }
    r->hits[r->n++] = (hit_t){sub, opts};
}

static int tgt_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const tgt_t *)a)->se, y = (uintptr_t)((const tgt_t *)b)->se;
    return x < y ? -1 : x > y;
}

/* Routes m to every matching subscription: one delivery per session at
 * the maximum QoS of its matching subscriptions (capped by the message's
 * QoS), with every matching subscription id (§3.3.4); one member per shared
 * group. Returns VG_OK or VG_ENOMEM (some deliveries were not made);
 * *kvseq gets the highest store write caused (0 = none, KV_REFUSED if one was refused). */
static int route(struct vg_server *s, worker_t *from, vg_msg_t *m, uint64_t *kvseq)
{
    route_ctx_t local = {0};
    route_ctx_t *r = from ? from->route : &local;
    uint64_t maxseq = 0;
    r->n = 0;
    r->ntg = 0;
    r->oom = false;
    pthread_rwlock_rdlock(&s->tree_lock);
    vg_topic_tree_match(s->tree, (const char *)vg_msg_topic(m), m->topic_len, route_collect, r);
    if (r->n > r->tcap) {
        tgt_t *nt = vg_realloc(VG_MEM_MQTT, r->tg, r->n * sizeof *nt);
        if (nt) {
            r->tg = nt;
            r->tcap = r->n;
        } else {
            r->oom = true;
        }
    }
    for (size_t i = 0; i < r->n && i < r->tcap; i++) {
        subent_t *e = r->hits[i].sub;
        if (e->kind == SUBK_GROUP) {
            group_t *g = (group_t *)r->hits[i].sub;
            if (!g->n)
                continue;
            unsigned start = atomic_fetch_add_explicit(&g->rr, 1, memory_order_relaxed);
            e = g->members[start % g->n];
            for (uint32_t k = 0; k < g->n; k++) {
                subent_t *cand = g->members[(start + k) % g->n];
                if (__atomic_load_n(&cand->sess->online, __ATOMIC_RELAXED)) {
                    e = cand;
                    break;
                }
            }
        } else if ((e->opts & OPT_NL) && e->sess == m->origin) {
            continue; /* no local (§3.8.3.1) */
        }
        tgt_t *t = &r->tg[r->ntg++];
        t->se = e->sess;
        session_ref(t->se);
        t->qos = OPT_QOS(e->opts) < m->qos ? OPT_QOS(e->opts) : m->qos;
        t->retain = (e->opts & OPT_RAP) ? m->retain : 0;
        t->nsubids = 0;
        if (e->sub_id)
            t->subids[t->nsubids++] = e->sub_id;
    }
    pthread_rwlock_unlock(&s->tree_lock);
    if (r->ntg > 1)
        qsort(r->tg, r->ntg, sizeof *r->tg, tgt_cmp);
    size_t k = 0;
    for (size_t i = 0; i < r->ntg; i++) {
        tgt_t *t = &r->tg[i];
        if (k && r->tg[k - 1].se == t->se) {
            tgt_t *d = &r->tg[k - 1];
            if (t->qos > d->qos)
                d->qos = t->qos;
            d->retain |= t->retain;
            for (uint8_t j = 0; j < t->nsubids && d->nsubids < MAX_SUBIDS; j++)
                d->subids[d->nsubids++] = t->subids[j];
            session_unref(s, t->se);
            continue;
        }
        r->tg[k++] = *t;
    }
    r->ntg = k;
    bool oom = false;
    batch_t *batches[MAX_WORKERS] = {0};
    for (size_t i = 0; i < r->ntg; i++) {
        tgt_t *t = &r->tg[i];
        uint64_t seq = deliver_to_session_b(s, from, t->se, m, t->qos, t->retain, t->subids, t->nsubids,
                                            r->ntg > 1 ? batches : NULL);
        if (seq > maxseq)
            maxseq = seq;
    }
    for (uint32_t wi = 0; wi < s->nworkers; wi++) {
        if (!batches[wi])
            continue;
        item_t it = {.kind = ITEM_DELIVER_BATCH, .batch = batches[wi], .msg = m};
        vg_msg_ref(m);
        if (inbox_post(&s->workers[wi], &it, 1) != VG_OK) {
            for (uint32_t j = 0; j < batches[wi]->n; j++)
                session_unref(s, batches[wi]->v[j].se);
            vg_free(batches[wi]);
            vg_msg_unref(m);
            oom = true;
        }
    }
    if (kvseq)
        *kvseq = maxseq;
    oom |= r->oom;
    vg_free(local.hits);
    vg_free(local.tg);
    return oom ? VG_ENOMEM : VG_OK;
}

/* Stores or deletes the retained message for m's topic (m->retain set).
 * Returns the store seq (0 = none, KV_REFUSED = refused). */
static uint64_t retain_update(struct vg_server *s, vg_msg_t *m)
{
    if (!s->retain)
        return 0;
    const char *topic = (const char *)vg_msg_topic(m);
    if (m->payload_len == 0) {
        if (vg_retain_set(s->retain, topic, m->topic_len, NULL, 0, 0) == VG_OK)
            return kv_del(s, NS_RETAIN, topic, m->topic_len, 0);
        return 0;
    }
    size_t n = vg_msg_serialized_size(m);
    uint8_t *b = vg_malloc(VG_MEM_MQTT, n);
    if (!b)
        return KV_REFUSED;
    vg_msg_serialize(m, b);
    uint64_t seq = 0;
    if (vg_retain_set(s->retain, topic, m->topic_len, b, n, m->expire_at_ms) == VG_OK) {
        seq = kv_put(s, NS_RETAIN, topic, m->topic_len, 0, b, n);
        if (m->expire_at_ms > 0)
            hk_note_expiry(s, m->expire_at_ms);
    }
    vg_free(b);
    return seq;
}

static void publish_server_msg(struct vg_server *s, worker_t *from, vg_msg_t *m)
{
    atomic_fetch_add_explicit(&s->st_wills, 1, memory_order_relaxed);
    if (m->retain)
        retain_update(s, m);
    route(s, from, m, NULL);
}

int vg_server_publish(vg_server_t *s, const char *topic, size_t topic_len, const void *payload, size_t payload_len,
                      uint8_t qos)
{
    worker_t *from = tl_worker && tl_worker->srv == s ? tl_worker : NULL;
    vg_msg_t *m = vg_msg_new((const uint8_t *)topic, topic_len, payload, payload_len, qos > 2 ? 2 : qos, false, NULL,
                             0);
    if (!m)
        return VG_ENOMEM;
    int rc = route(s, from, m, NULL);
    vg_msg_unref(m);
    return rc;
}

/* ---- inbound acknowledgements ------------------------------------------ */

static void send_ack(worker_t *w, conn_t *c, uint8_t type, uint16_t pid, uint8_t reason)
{
    uint8_t buf[8];
    int n = vg_mqtt_encode_ack(buf, sizeof buf, c->level, type, pid, reason, NULL);
    if (n > 0)
        send_bytes(w, c, buf, (size_t)n);
}

static void http_respond(worker_t *w, conn_t *c, int status, const char *body);
struct retained_batch;
static void retained_batch_send(worker_t *w, conn_t *c, struct retained_batch *b);
static void http_publish_done(worker_t *w, conn_t *c, bool failed);
static void http_input(worker_t *w, conn_t *c);

static void acks_drain_some(worker_t *w, conn_t *c);
static void acks_drain(worker_t *w, conn_t *c)
{
    acks_drain_some(w, c);
    /* An idle connection keeps no ring (it is allocated again, 8 entries,
     * by the next QoS > 0 PUBLISH: a malloc per burst of them, next to the
     * system calls each costs). */
    if (c->ack_count == 0 && c->acks) {
        vg_free(c->acks);
        c->acks = NULL;
        c->ack_cap = c->ack_head = 0;
    }
}

static void acks_drain_some(worker_t *w, conn_t *c)
{
    while (c->ack_count && c->acks[c->ack_head].pending == 0) {
        ack_t a = c->acks[c->ack_head];
        c->ack_head = (c->ack_head + 1) % c->ack_cap;
        c->ack_count--;
        if (a.type == ACK_PKT) {
            send_bytes(w, c, a.pkt, a.pkt_len);
            vg_free(a.pkt);
            if (a.retained)
                retained_batch_send(w, c, a.retained);
            continue;
        }
        if (a.type == ACK_HTTP) {
            if (a.failed == 2) /* an error answer queued behind publishes */
                http_respond(w, c, 400 + a.reason, "{\"message\":\"request refused\"}");
            else
                http_publish_done(w, c, a.failed != 0);
            if (c->state == ST_CLOSING)
                return;
            continue;
        }
        send_ack(w, c, a.type, a.pid, a.reason);
    }
}

static void process_input(worker_t *w, conn_t *c);
static void conn_detach(worker_t *w, conn_t *c);

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

static ack_t *acks_push(conn_t *c, uint16_t pid, uint8_t type, uint8_t pending)
{
    if (c->ack_count == c->ack_cap &&
        ring_grow((void **)&c->acks, &c->ack_head, c->ack_count, &c->ack_cap, sizeof *c->acks) != VG_OK)
        return NULL;
    ack_t *a = &c->acks[(c->ack_head + c->ack_count) % c->ack_cap];
    *a = (ack_t){.pid = pid, .type = type, .pending = pending};
    c->ack_count++;
    return a;
}

static ack_t *acks_find(conn_t *c, uint16_t pid)
{
    for (uint32_t i = 0; i < c->ack_count; i++) {
        ack_t *a = &c->acks[(c->ack_head + i) % c->ack_cap];
        if (a->pid == pid && a->pending)
            return a;
    }
    return NULL;
}

/* The same, newest first: the PUBLISH being handled pushed its entry last,
 * and with up to --max-inflight entries in the ring a scan from the oldest
 * made every PUBLISH cost O(in flight) (a profile of the durable ingest
 * path at saturation had 17% of the server's time in these scans). */
static ack_t *acks_find_last(conn_t *c, uint16_t pid)
{
    for (uint32_t i = c->ack_count; i-- > 0;) {
        ack_t *a = &c->acks[(c->ack_head + i) % c->ack_cap];
        if (a->pid == pid && a->pending)
            return a;
    }
    return NULL;
}

static void complete_local(worker_t *w, uint64_t token, int status)
{
    conn_t *c = conn_lookup(w, token);
    if (!c || CONN_GONE(c))
        return; /* the connection went away; the client will retransmit */
    ack_t *a = acks_find(c, TOK_PID(token));
    if (!a)
        return;
    if (status != VG_OK && c->transport == TR_HTTP) {
        a->failed = 1; /* answered 503: the client knows to retry */
        a->pending--;
        acks_drain(w, c);
        return;
    }
    if (status != VG_OK) {
        /* Not stored: withholding the acknowledgement is the honest answer,
         * and closing makes the client resend on a fresh connection. */
        conn_close_why(w, c, VG_CLOSE_IO, "message could not be stored");
        return;
    }
    a->pending--;
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

/* Keepalive deadlines are coarse on purpose: 1.5 x keepalive from now,
 * rounded up to a grain of 1/16 of that period, at least one wheel tick and
 * at most 1 s. Connections whose deadlines fall in one grain share a wheel
 * slot, so a worker with 10,000 idle connections wakes for them at most once
 * per grain (once a second at keepalive 60), not once per tick. So a
 * keepalive timeout fires up to one grain (plus the wheel's tick) late: at
 * most 1.05 s late, and about 6% of the period for short keepalives (93 ms
 * at keepalive 1). */
static uint64_t keepalive_deadline(uint16_t keepalive)
{
    uint64_t period = (uint64_t)keepalive * 1500u;
    uint64_t grain = period / 16;
    if (grain < WHEEL_TICK_MS)
        grain = WHEEL_TICK_MS;
    if (grain > 1000)
        grain = 1000;
    return (now_mono_ms() + period + grain - 1) / grain * grain;
}

static void refresh_keepalive(worker_t *w, conn_t *c)
{
    if (c->keepalive)
        c->timer.deadline_ms = keepalive_deadline(c->keepalive);
}

static void send_stats(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    if (!s->o.stats)
        return;
    char buf[8192];
    size_t n = s->o.stats(s->o.stats_ctx, buf, sizeof buf);
    vg_msg_t *m = vg_msg_new((const uint8_t *)STATS_TOPIC, strlen(STATS_TOPIC), (const uint8_t *)buf, n, 0, false,
                             NULL, 0);
    if (!m)
        return;
    send_publish(w, c, m, 0, 0, false, false, NULL, 0);
    vg_msg_unref(m);
}

static void send_connack(worker_t *w, conn_t *c, bool present, uint8_t rc, const vg_mqtt_props_t *props)
{
    uint8_t buf[512];
    int n = vg_mqtt_encode_connack(buf, sizeof buf, c->level == VG_MQTT_V5 ? VG_MQTT_V5 : VG_MQTT_V311, present, rc,
                                   props);
    if (n > 0)
        send_bytes(w, c, buf, (size_t)n);
}

/* Refuses a CONNECT: the version-appropriate CONNACK code, then close. */
static void connect_refuse(worker_t *w, conn_t *c, uint8_t v3rc, uint8_t v5rc, const char *why)
{
    vg_mqtt_props_t pr = {0};
    if (c->level == VG_MQTT_V5 && why) {
        pr.present = VG_PROP_BIT(VG_PROP_REASON_STRING);
        pr.reason_string.p = (const uint8_t *)why;
        pr.reason_string.len = strlen(why);
    }
    send_connack(w, c, false, c->level == VG_MQTT_V5 ? v5rc : v3rc, c->level == VG_MQTT_V5 ? &pr : NULL);
    c->linger = true;
    conn_close_why(w, c, VG_CLOSE_REJECTED, why);
}

/* After CONNACK on a resumed session: retransmit in-flight messages in
 * their original order with their packet ids (§4.4), then the queue. */
static void session_resume(worker_t *w, conn_t *c, session_t *se)
{
    for (uint32_t i = 0; i < se->inflight.n && c->state == ST_ACTIVE; i++) {
        out_t *e = outq_at(&se->inflight, i);
        if (e->state == OUT_WAIT_COMP)
            send_ack(w, c, VG_MQTT_PUBREL, e->pid, 0);
        else
            send_publish(w, c, e->m, e->qos, e->pid, true, e->retain, e->subids, e->nsubids);
    }
    session_pump(w, c, se);
}

/* Takeover: a CONNECT for a client id whose session is attached to another
 * connection. Whether the session is resumed (Session Present) depends on
 * what that old connection said last, and its last words may already be in
 * its socket, unread: a client that sends DISCONNECT (Session Expiry 0) and
 * reconnects at once must get a new session, but the new CONNECT can be
 * read first, by another worker or by this one later in the same round.
 * So the decision waits: this connection stops reading (its CONNECT stays
 * first in c->in) and asks the old connection's worker to take over
 * (ITEM_TAKEOVER). That worker reads and handles everything the old socket
 * holds (takeover_item), closes it if it is still open, detaches it from
 * the session and answers (ITEM_TAKEOVER_DONE); then this CONNECT runs
 * again from the start and finds the session offline, or ended. Only a
 * CONNECT that finds its id online pays the round trip; no other path
 * changes. A second wait for the same owner is not made (the old path, a
 * kick, is used then), so a CONNECT waits at most once per old connection. */
static void connect_wait_takeover(worker_t *w, conn_t *c, uint64_t owner)
{
    struct vg_server *s = w->srv;
    vg_msg_unref(c->will); /* handle_connect runs again and makes it anew */
    c->will = NULL;
    c->will_delay = 0;
    c->takeover_wait = true;
    c->takeover_tried = true;
    c->takeover_from = owner;
    item_t it = {.kind = ITEM_TAKEOVER, .token = owner, .waiter = CONN_TOK(w->id, c->slot, c->gen)};
    uint32_t ow = TOK_WORKER(owner);
    if (ow >= s->nworkers || inbox_post(&s->workers[ow], &it, 1) != VG_OK) {
        c->takeover_wait = false;
        connect_refuse(w, c, VG_MQTT_CONNACK_UNAVAILABLE, VG_RC_SERVER_UNAVAILABLE, "out of memory");
        return;
    }
    epoll_set(w, c); /* stop reading until the answer */
}

static void handle_connect(worker_t *w, conn_t *c, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    vg_mqtt_connect_t ck;
    memset(&ck, 0, sizeof ck);
    uint8_t rc = 0;
    int r = vg_mqtt_decode_connect(body, len, &ck, &rc);
    c->level = ck.protocol_level == VG_MQTT_V5 ? VG_MQTT_V5 : VG_MQTT_V311;
    if (r == VG_EPROTO) {
        if (rc == VG_MQTT_CONNACK_BAD_PROTOCOL)
            c->level = VG_MQTT_V311; /* an unknown level gets the 3.1.1 answer [MQTT-3.1.2-2] */
        connect_refuse(w, c, rc, rc == VG_MQTT_CONNACK_BAD_PROTOCOL ? VG_RC_UNSUPPORTED_VERSION : VG_RC_CLIENT_ID_INVALID,
                       rc == VG_MQTT_CONNACK_BAD_PROTOCOL ? "unsupported protocol level" : "client identifier not valid");
        return;
    }
    if (r != VG_OK) {
        conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    bool v5 = c->level == VG_MQTT_V5;
    if (v5 && (ck.props.present & VG_PROP_BIT(VG_PROP_AUTH_METHOD))) {
        connect_refuse(w, c, VG_MQTT_CONNACK_NOT_AUTHORIZED, VG_RC_BAD_AUTH_METHOD,
                       "enhanced authentication is not supported");
        return;
    }
    char idbuf[80];
    const char *id = (const char *)ck.client_id.p;
    size_t idlen = ck.client_id.len;
    bool assigned = false;
    if (idlen == 0) {
        idlen = (size_t)snprintf(idbuf, sizeof idbuf, "vigil-%u-%u-%u-%llx", w->id, c->slot, c->gen,
                                 (unsigned long long)vg_clock_mono_ns());
        id = idbuf;
        assigned = true;
    }
    /* Session expiry: 3.1.1 clean session 0 keeps the session for ever, 5.0
     * says how long; both capped by the operator's maximum. */
    uint32_t expiry = 0;
    if (v5)
        expiry = (ck.props.present & VG_PROP_BIT(VG_PROP_SESSION_EXPIRY)) ? ck.props.session_expiry : 0;
    else
        expiry = ck.clean_session ? 0 : EXPIRY_NEVER;
    bool expiry_capped = false;
    if (s->o.max_session_expiry_s && expiry > s->o.max_session_expiry_s) {
        expiry = s->o.max_session_expiry_s;
        expiry_capped = v5;
    }
    /* Peer limits (5.0). */
    c->problem_info = true;
    c->peer_receive_max = 65535;
    if (v5) {
        const vg_mqtt_props_t *p = &ck.props;
        if (p->present & VG_PROP_BIT(VG_PROP_RECEIVE_MAX))
            c->peer_receive_max = p->receive_max;
        if (p->present & VG_PROP_BIT(VG_PROP_MAX_PACKET_SIZE))
            c->peer_max_packet = p->max_packet_size;
        if (p->present & VG_PROP_BIT(VG_PROP_TOPIC_ALIAS_MAX))
            c->peer_alias_max = p->topic_alias_max;
        if (p->present & VG_PROP_BIT(VG_PROP_REQUEST_PROBLEM_INFO))
            c->problem_info = p->request_problem_info != 0;
    }
    if (ck.will_flag) {
        c->will = vg_msg_new(ck.will_topic.p, ck.will_topic.len, ck.will_payload.p, ck.will_payload.len, ck.will_qos,
                             ck.will_retain, v5 ? &ck.will_props : NULL, now_wall());
        if (!c->will) {
            connect_refuse(w, c, VG_MQTT_CONNACK_UNAVAILABLE, VG_RC_SERVER_UNAVAILABLE, "out of memory");
            return;
        }
        if (v5 && (ck.will_props.present & VG_PROP_BIT(VG_PROP_WILL_DELAY)))
            c->will_delay = ck.will_props.will_delay;
    }

    /* Find, resume, replace or create the session. */
    uint64_t me = CONN_TOK(w->id, c->slot, c->gen);
    uint64_t kick = 0; /* CONN_TOK of the connection to close; 0 is a valid one */
    bool have_kick = false;
    bool present = false;
    session_t *se = NULL, *kill = NULL;
    vg_msg_t *kill_will = NULL;
    pthread_mutex_lock(&s->ids_mu);
    uint64_t v = 0;
    if (vg_strmap_get(&s->ids, id, idlen, &v) == VG_OK) {
        session_t *old = (session_t *)(uintptr_t)v;
        pthread_mutex_lock(&old->mu);
        if (old->online && !(c->takeover_tried && c->takeover_from == old->owner)) {
            uint64_t owner = old->owner;
            pthread_mutex_unlock(&old->mu);
            pthread_mutex_unlock(&s->ids_mu);
            connect_wait_takeover(w, c, owner);
            return;
        }
        if (old->online) {
            kick = old->owner;
            have_kick = true;
            __atomic_store_n(&old->online, false, __ATOMIC_RELAXED);
        } else if (old->persistent) {
            atomic_fetch_sub_explicit(&s->st_offline, 1, memory_order_relaxed);
        }
        /* A session with expiry 0 lives only as long as its connection,
         * which this CONNECT ends (takeover): nothing to resume, whatever
         * order the old DISCONNECT and this CONNECT were read in. */
        if (ck.clean_session || old->expiry_s == 0) {
            old->dead = true;
            kill_will = old->pending_will;
            old->pending_will = NULL;
            vg_strmap_del(&s->ids, id, idlen);
            kill = old;
        } else {
            se = old;
            present = true;
            vg_msg_unref(se->pending_will); /* reconnecting cancels a delayed will */
            se->pending_will = NULL;
        }
        pthread_mutex_unlock(&old->mu);
    }
    if (!se) {
        se = session_new(id, idlen);
        if (!se || vg_strmap_put(&s->ids, id, idlen, (uint64_t)(uintptr_t)se, NULL) != VG_OK) {
            pthread_mutex_unlock(&s->ids_mu);
            if (se)
                session_unref(s, se);
            if (kill)
                session_kill(s, kill, kill_will);
            connect_refuse(w, c, VG_MQTT_CONNACK_UNAVAILABLE, VG_RC_SERVER_UNAVAILABLE, "out of memory");
            return;
        }
        atomic_fetch_add_explicit(&s->st_sessions, 1, memory_order_relaxed);
    }
    pthread_mutex_lock(&se->mu);
    __atomic_store_n(&se->online, true, __ATOMIC_RELAXED);
    se->owner = me;
    se->epoch++;
    se->level = c->level;
    se->expiry_s = expiry;
    se->persistent = expiry > 0;
    se->offline_since_ms = 0;
    uint32_t window = s->o.max_inflight_out ? s->o.max_inflight_out : 1;
    if (v5 && c->peer_receive_max < window)
        window = c->peer_receive_max;
    se->window = window;
    pthread_mutex_unlock(&se->mu);
    session_ref(se);
    c->sess = se;
    pthread_mutex_unlock(&s->ids_mu);

    if (have_kick) {
        uint32_t ow = TOK_WORKER(kick);
        if (ow == w->id) {
            conn_t *oc = conn_lookup(w, kick);
            if (oc && oc != c)
                conn_close(w, oc, VG_CLOSE_TAKEOVER);
        } else if (ow < s->nworkers) {
            item_t it = {.kind = ITEM_KICK, .token = kick};
            inbox_post(&s->workers[ow], &it, 1);
        }
    }
    if (kill)
        session_kill(s, kill, kill_will);
    if (se->persistent)
        session_persist(s, se);

    c->keepalive = ck.keepalive;
    bool ka_changed = false;
    if (s->o.max_keepalive_s && (c->keepalive == 0 || c->keepalive > s->o.max_keepalive_s)) {
        c->keepalive = (uint16_t)s->o.max_keepalive_s;
        ka_changed = true;
    }
    c->state = ST_ACTIVE;
    vg_wheel_remove(&c->timer);
    if (c->keepalive)
        vg_wheel_add(&w->wheel, &c->timer, keepalive_deadline(c->keepalive));

    vg_mqtt_props_t ap = {0};
    if (v5) {
        ap.present = VG_PROP_BIT(VG_PROP_RECEIVE_MAX) | VG_PROP_BIT(VG_PROP_MAX_PACKET_SIZE) |
                     VG_PROP_BIT(VG_PROP_TOPIC_ALIAS_MAX);
        ap.receive_max = (uint16_t)(s->o.max_inflight > 65535 ? 65535 : s->o.max_inflight);
        ap.max_packet_size = (uint32_t)s->o.max_packet_size;
        ap.topic_alias_max = s->o.topic_alias_max;
        if (assigned) {
            ap.present |= VG_PROP_BIT(VG_PROP_ASSIGNED_CLIENT_ID);
            ap.assigned_client_id.p = (const uint8_t *)se->id;
            ap.assigned_client_id.len = se->id_len;
        }
        if (ka_changed) {
            ap.present |= VG_PROP_BIT(VG_PROP_SERVER_KEEPALIVE);
            ap.server_keepalive = c->keepalive;
        }
        if (expiry_capped) {
            ap.present |= VG_PROP_BIT(VG_PROP_SESSION_EXPIRY);
            ap.session_expiry = expiry;
        }
        if (!s->retain) {
            ap.present |= VG_PROP_BIT(VG_PROP_RETAIN_AVAILABLE);
            ap.retain_available = 0;
        }
    }
    /* Request/response (§4.10): a client that asks for Response Information
     * gets a topic prefix of its own to build response topics under. */
    char respinfo[96 + 256];
    if (v5 && (ck.props.present & VG_PROP_BIT(VG_PROP_REQUEST_RESPONSE_INFO)) && ck.props.request_response_info &&
        se->id_len <= 256 && vg_mqtt_topic_valid((const uint8_t *)se->id, se->id_len)) {
        int k = snprintf(respinfo, sizeof respinfo, "vigil/response/%.*s", (int)se->id_len, se->id);
        ap.present |= VG_PROP_BIT(VG_PROP_RESPONSE_INFO);
        ap.response_info.p = (const uint8_t *)respinfo;
        ap.response_info.len = (size_t)k;
    }
    send_connack(w, c, present, 0, v5 ? &ap : NULL);
    pthread_mutex_lock(&se->mu);
    if (se->online && se->owner == me)
        session_resume(w, c, se);
    pthread_mutex_unlock(&se->mu);
}

/* Resolves a 5.0 topic alias (§3.3.2.3.4). Returns false after closing. */
static bool resolve_alias(worker_t *w, conn_t *c, vg_mqtt_publish_t *p)
{
    if (!(p->props.present & VG_PROP_BIT(VG_PROP_TOPIC_ALIAS)))
        return true;
    uint16_t a = p->props.topic_alias;
    uint16_t max = w->srv->o.topic_alias_max;
    if (a == 0 || a > max) {
        conn_close_why(w, c, VG_CLOSE_TOPIC_ALIAS, "topic alias out of range");
        return false;
    }
    aliases_t *al = conn_aliases(c);
    if (al && !al->in) {
        al->in = vg_calloc(VG_MEM_MQTT, max, sizeof *al->in);
        al->in_len = vg_calloc(VG_MEM_MQTT, max, sizeof *al->in_len);
    }
    if (!al || !al->in || !al->in_len) {
        conn_close(w, c, VG_CLOSE_IO);
        return false;
    }
    if (p->topic.len) {
        char *copy = vg_strndup(VG_MEM_MQTT, (const char *)p->topic.p, p->topic.len);
        if (!copy) {
            conn_close(w, c, VG_CLOSE_IO);
            return false;
        }
        vg_free(al->in[a - 1]);
        al->in[a - 1] = copy;
        al->in_len[a - 1] = (uint16_t)p->topic.len;
        return true;
    }
    if (!al->in[a - 1]) {
        conn_close_why(w, c, VG_CLOSE_PROTOCOL, "topic alias not set");
        return false;
    }
    p->topic.p = (const uint8_t *)al->in[a - 1];
    p->topic.len = al->in_len[a - 1];
    return true;
}

static void handle_publish(worker_t *w, conn_t *c, uint8_t flags, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    session_t *se = c->sess;
    vg_mqtt_publish_t p;
    if (vg_mqtt_decode_publish(c->level, flags, body, len, &p) != VG_OK) {
        conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    if (c->level == VG_MQTT_V5 && !resolve_alias(w, c, &p))
        return;
    if (p.topic.len == 0) {
        conn_close_why(w, c, VG_CLOSE_PROTOCOL, "empty topic without an alias");
        return;
    }
    if (p.props.present & VG_PROP_BIT(VG_PROP_SUBSCRIPTION_ID)) {
        conn_close_why(w, c, VG_CLOSE_PROTOCOL, "subscription identifier in a client PUBLISH");
        return;
    }
    atomic_fetch_add_explicit(&w->st_pub_in, 1, memory_order_relaxed);
    pthread_mutex_lock(&se->mu);
    bool dup2 = p.qos == 2 && q2in_has(se, p.packet_id);
    uint32_t nq2 = se->nq2in;
    pthread_mutex_unlock(&se->mu);
    if (p.qos > 0 && c->level == VG_MQTT_V5 && !dup2 && c->ack_count + nq2 >= s->o.max_inflight) {
        /* §3.3.4: more unacknowledged QoS 1/2 PUBLISHes than we allowed. */
        conn_close_why(w, c, VG_CLOSE_RECEIVE_MAX, "receive maximum exceeded");
        return;
    }
    if (dup2) {
        /* A retransmission of a QoS 2 PUBLISH we already own: acknowledge
         * again, never route or store it twice (exactly once, §4.3.3). */
        atomic_fetch_add_explicit(&s->st_q2dup, 1, memory_order_relaxed);
        if (c->ack_count == 0)
            send_ack(w, c, VG_MQTT_PUBREC, p.packet_id, 0);
        else if (!acks_push(c, p.packet_id, VG_MQTT_PUBREC, 0))
            conn_close(w, c, VG_CLOSE_IO);
        else
            acks_drain(w, c);
        return;
    }
    if (c->level == VG_MQTT_V5 && (p.props.present & VG_PROP_BIT(VG_PROP_PAYLOAD_FORMAT)) &&
        p.props.payload_format == 1 && !vg_mqtt_utf8_valid(p.payload.p, p.payload.len)) {
        /* §3.3.2.3.2: a receiver that validates answers 0x99. */
        if (p.qos == 0) {
            send_disconnect(w, c, VG_RC_PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8");
            conn_close(w, c, VG_CLOSE_PROTOCOL);
        } else {
            ack_t *a = acks_push(c, p.packet_id, p.qos == 1 ? VG_MQTT_PUBACK : VG_MQTT_PUBREC, 0);
            if (!a)
                conn_close(w, c, VG_CLOSE_IO);
            else
                a->reason = VG_RC_PAYLOAD_FORMAT_INVALID;
            acks_drain(w, c);
        }
        return;
    }
    vg_msg_t *m = vg_msg_new(p.topic.p, p.topic.len, p.payload.p, p.payload.len, p.qos, p.retain,
                             c->level == VG_MQTT_V5 ? &p.props : NULL, now_wall());
    if (!m) {
        conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    m->origin = se;
    uint64_t token = p.qos ? TOK(w->id, c->slot, c->gen, p.packet_id) : 0;
    ack_t *a = NULL;
    if (p.qos) {
        /* One guard completion held while the work is registered, so a
         * completion arriving early cannot release the ack too soon. */
        a = acks_push(c, p.packet_id, p.qos == 1 ? VG_MQTT_PUBACK : VG_MQTT_PUBREC, 1);
        if (!a) {
            vg_msg_unref(m);
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
    }
    uint64_t kvseq = 0;
    if (p.qos == 2) {
        pthread_mutex_lock(&se->mu);
        q2in_add(se, p.packet_id);
        pthread_mutex_unlock(&se->mu);
        if (se->persistent)
            kvseq = kv_put(s, NS_Q2IN, se->id, se->id_len, p.packet_id, "", 0);
    }
    bool telemetry = p.topic.len == s->telemetry_len && memcmp(p.topic.p, s->telemetry_topic, p.topic.len) == 0;
    if (telemetry && s->o.ingest) {
        if (p.qos)
            acks_find_last(c, p.packet_id)->pending++;
        /* The record keeps a pure run of user properties (the sender may
         * have put other properties between them). A run too long for the
         * buffer is passed as it is: ingest refuses it by its length. */
        const uint8_t *up = NULL;
        size_t uplen = 0;
        uint8_t upbuf[1024];
        if (p.props.present & VG_PROP_BIT(VG_PROP_USER)) {
            int k = vg_mqtt_user_props_pack(&p.props, upbuf, sizeof upbuf);
            up = k >= 0 ? upbuf : p.props.user_props.p;
            uplen = k >= 0 ? (size_t)k : p.props.user_props.len;
        }
        w->ingested = true;
        if (s->o.ingest(s->o.ingest_ctx, se->id, se->id_len, p.payload.p, p.payload.len, up, uplen, vg_clock_wall_ms(),
                        token) != VG_OK) {
            vg_msg_unref(m);
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
    }
    if (s->o.control && s->control_len && p.topic.len == s->control_len &&
        memcmp(p.topic.p, s->control_topic, p.topic.len) == 0) {
        if (p.qos)
            acks_find_last(c, p.packet_id)->pending++;
        if (s->o.control(s->o.control_ctx, se->id, se->id_len, p.payload.p, p.payload.len, NULL, 0,
                         vg_clock_wall_ms(), p.qos ? token : 0) != VG_OK) {
            /* refused: the hook reported nothing, so release the hold */
            if (p.qos)
                acks_find_last(c, p.packet_id)->pending--;
        }
    }
    if (p.retain) {
        uint64_t rs = retain_update(s, m);
        if (rs > kvseq)
            kvseq = rs;
    }
    uint64_t rseq = 0;
    route(s, w, m, &rseq);
    if (rseq > kvseq)
        kvseq = rseq;
    vg_msg_unref(m);
    if (c->state == ST_CLOSING || !p.qos)
        return;
    a = acks_find_last(c, p.packet_id);
    if (kvseq && a) {
        a->pending++;
        kv_wait(s, kvseq, token);
    }
    a = acks_find_last(c, p.packet_id);
    if (a)
        a->pending--; /* the guard */
    acks_drain(w, c);
    if (c->level != VG_MQTT_V5 && c->ack_count >= s->o.max_inflight && !c->paused) {
        c->paused = true;
        atomic_fetch_add_explicit(&w->st_read_pauses, 1, memory_order_relaxed);
        epoll_set(w, c);
    }
}

/* PUBACK, PUBREC, PUBCOMP from the client (our outbound flows) and PUBREL
 * (its inbound QoS 2 flow). */
static void handle_ack(worker_t *w, conn_t *c, uint8_t type, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    session_t *se = c->sess;
    vg_mqtt_ack_t a;
    if (vg_mqtt_decode_ack(c->level, type, body, len, &a) != VG_OK) {
        conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    if (type == VG_MQTT_PUBREL) {
        pthread_mutex_lock(&se->mu);
        bool found = q2in_del(se, a.packet_id);
        bool persist = se->persistent;
        pthread_mutex_unlock(&se->mu);
        if (found && persist)
            kv_del(s, NS_Q2IN, se->id, se->id_len, a.packet_id);
        send_ack(w, c, VG_MQTT_PUBCOMP, a.packet_id, found ? 0 : VG_RC_PACKET_ID_NOT_FOUND);
        return;
    }
    pthread_mutex_lock(&se->mu);
    if (!se->online || se->owner != CONN_TOK(w->id, c->slot, c->gen)) {
        pthread_mutex_unlock(&se->mu);
        return;
    }
    uint32_t i = 0;
    for (; i < se->inflight.n; i++)
        if (outq_at(&se->inflight, i)->pid == a.packet_id)
            break;
    out_t *e = i < se->inflight.n ? outq_at(&se->inflight, i) : NULL;
    bool done = false;
    if (type == VG_MQTT_PUBACK && e && e->qos == 1 && e->state == OUT_WAIT_ACK) {
        done = true;
    } else if (type == VG_MQTT_PUBREC && e && e->qos == 2 && e->state == OUT_WAIT_ACK) {
        if (a.reason >= 0x80) {
            done = true; /* the receiver refused it: the flow ends (§4.3.3) */
        } else {
            e->state = OUT_WAIT_COMP;
            if (se->persistent)
                out_persist(s, se, e);
            send_ack(w, c, VG_MQTT_PUBREL, a.packet_id, 0);
        }
    } else if (type == VG_MQTT_PUBREC && !e) {
        send_ack(w, c, VG_MQTT_PUBREL, a.packet_id, VG_RC_PACKET_ID_NOT_FOUND);
    } else if (type == VG_MQTT_PUBCOMP && e && e->state == OUT_WAIT_COMP) {
        done = true;
    }
    if (done) {
        out_t d;
        outq_remove(&se->inflight, i, &d);
        out_unpersist(s, se, &d);
        queue_account(s, &d, -1);
        vg_msg_unref(d.m);
        session_pump(w, c, se);
    }
    pthread_mutex_unlock(&se->mu);
}

typedef struct {
    vg_msg_t **v;
    size_t n, cap;
    size_t limit;
} retained_list_t;

#define MAX_RETAINED_FILTERS 64

/* Retained messages matched by one SUBSCRIBE, to send after its SUBACK. */
typedef struct retained_batch {
    retained_list_t rl;
    size_t nrtd;
    struct rtd {
        size_t from, to; /* rl.v[from..to) matched filter d */
        uint8_t qos;
        uint32_t sub_id;
    } rtd[MAX_RETAINED_FILTERS];
} retained_batch_t;

static void retained_batch_free(retained_batch_t *b)
{
    if (!b)
        return;
    for (size_t k = 0; k < b->rl.n; k++)
        vg_msg_unref(b->rl.v[k]);
    vg_free(b->rl.v);
    vg_free(b);
}

/* Sends a SUBSCRIBE's retained messages (after its SUBACK, §3.8.4), marked
 * retained, at the subscription's QoS, then frees the batch. */
static void retained_batch_send(worker_t *w, conn_t *c, retained_batch_t *b)
{
    session_t *se = c->sess;
    if (se && c->state == ST_ACTIVE) {
        pthread_mutex_lock(&se->mu);
        for (size_t d = 0; d < b->nrtd; d++) {
            for (size_t k = b->rtd[d].from; k < b->rtd[d].to && c->state == ST_ACTIVE; k++) {
                vg_msg_t *m = b->rl.v[k];
                uint8_t q = m->qos < b->rtd[d].qos ? m->qos : b->rtd[d].qos;
                uint32_t sid = b->rtd[d].sub_id;
                session_send(w, c, se, m, q, true, sid ? &sid : NULL, sid ? 1 : 0, 0);
            }
        }
        pthread_mutex_unlock(&se->mu);
    }
    retained_batch_free(b);
}

static int collect_retained(void *ctx, const char *topic, size_t tlen, const void *blob, size_t blen,
                            int64_t expire_at_ms)
{
    retained_list_t *l = ctx;
    if (l->n >= l->limit)
        return 1;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        vg_msg_t **nv = vg_realloc(VG_MEM_MQTT, l->v, ncap * sizeof *nv);
        if (!nv)
            return 1;
        l->v = nv;
        l->cap = ncap;
    }
    vg_msg_t *m = vg_msg_parse(blob, blen);
    if (m)
        l->v[l->n++] = m;
    return 0;
}

static void handle_subscribe(worker_t *w, conn_t *c, const uint8_t *body, size_t len, bool sub)
{
    struct vg_server *s = w->srv;
    session_t *se = c->sess;
    vg_mqtt_sub_t *subs = w->sub_scratch;
    size_t n = 0;
    uint16_t pid = 0;
    vg_mqtt_props_t props;
    memset(&props, 0, sizeof props);
    int r = vg_mqtt_decode_subscribe(c->level, body, len, sub, &pid, &props, subs, s->o.max_subs_per_packet, &n);
    if (r != VG_OK) {
        conn_close(w, c, r == VG_ELIMIT ? VG_CLOSE_TOO_LARGE : VG_CLOSE_MALFORMED);
        return;
    }
    /* Only the connection that owns the session changes its subscriptions:
     * one being taken over (kicked, not yet closed) is ignored. */
    pthread_mutex_lock(&se->mu);
    bool owner = se->online && se->owner == CONN_TOK(w->id, c->slot, c->gen);
    pthread_mutex_unlock(&se->mu);
    if (!owner)
        return;
    bool v5 = c->level == VG_MQTT_V5;
    uint32_t sub_id = (props.present & VG_PROP_BIT(VG_PROP_SUBSCRIPTION_ID)) && props.sub_id_count ? props.sub_ids[0] : 0;
    uint8_t *rcs = w->rc_scratch;
    bool want_stats = false;
    bool changed = false;
    /* Retained messages to send after the SUBACK, per filter. */
    retained_batch_t *rb = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *f = (const char *)subs[i].filter.p;
        size_t fl = subs[i].filter.len;
        vg_bytes_t group, inner;
        int shared = vg_mqtt_shared_split(subs[i].filter.p, fl, &group, &inner);
        if (!sub) {
            rcs[i] = v5 ? VG_RC_NO_SUBSCRIPTION_EXISTED : 0;
            subent_t *e = session_find_sub(se, f, fl);
            if (e) {
                session_remove_sub(se, e);
                pthread_rwlock_wrlock(&s->tree_lock);
                subent_unlink(s, e);
                pthread_rwlock_unlock(&s->tree_lock);
                subent_free(e);
                rcs[i] = 0;
                changed = true;
            }
            continue;
        }
        rcs[i] = v5 ? VG_RC_UNSPECIFIED : VG_MQTT_SUBACK_FAILURE;
        if (shared < 0) {
            rcs[i] = v5 ? VG_RC_FILTER_INVALID : VG_MQTT_SUBACK_FAILURE;
            continue;
        }
        if (shared > 0 && subs[i].no_local) {
            conn_close_why(w, c, VG_CLOSE_PROTOCOL, "no local on a shared subscription");
            goto cleanup;
        }
        if (fl > 0xffff)
            continue;
        uint8_t qos = subs[i].qos > 2 ? 2 : subs[i].qos;
        uint8_t opts = (uint8_t)(qos | (subs[i].no_local ? OPT_NL : 0) | (subs[i].retain_as_published ? OPT_RAP : 0) |
                                 ((subs[i].retain_handling & 3) << 4));
        bool existed = false;
        subent_t *e = session_find_sub(se, f, fl);
        int lr = VG_OK;
        if (e) {
            /* Replaces the existing subscription's options (§3.8.4). */
            existed = true;
            pthread_rwlock_wrlock(&s->tree_lock);
            e->opts = opts;
            e->sub_id = sub_id;
            if (!e->group)
                vg_topic_tree_subscribe(s->tree, e->filter, e->flen, e, opts);
            pthread_rwlock_unlock(&s->tree_lock);
        } else {
            e = session_reserve_sub(se) == VG_OK ? subent_new(f, fl) : NULL;
            if (!e)
                continue;
            e->opts = opts;
            e->sub_id = sub_id;
            e->sess = se;
            pthread_rwlock_wrlock(&s->tree_lock);
            lr = subent_link(s, e);
            pthread_rwlock_unlock(&s->tree_lock);
            if (lr == VG_OK)
                session_add_sub(se, e);
            else
                subent_free(e);
        }
        if (lr != VG_OK) {
            if (lr == VG_EINVAL)
                rcs[i] = v5 ? VG_RC_FILTER_INVALID : VG_MQTT_SUBACK_FAILURE;
            continue;
        }
        changed = true;
        rcs[i] = qos;
        if (vg_mqtt_topic_matches(subs[i].filter.p, fl, (const uint8_t *)STATS_TOPIC, strlen(STATS_TOPIC)))
            want_stats = true;
        uint8_t rh = subs[i].retain_handling;
        if (s->retain && shared == 0 && (rh == 0 || (rh == 1 && !existed))) {
            if (!rb) {
                rb = vg_calloc(VG_MEM_MQTT, 1, sizeof *rb);
                if (rb)
                    rb->rl.limit = s->o.max_queued_per_client ? s->o.max_queued_per_client + se->window : (size_t)-1;
            }
            if (rb && rb->nrtd < MAX_RETAINED_FILTERS) {
                size_t from = rb->rl.n;
                vg_retain_match(s->retain, f, fl, now_wall(), collect_retained, &rb->rl, NULL);
                if (rb->rl.n > from)
                    rb->rtd[rb->nrtd++] = (struct rtd){from, rb->rl.n, qos, sub_id};
            }
        }
    }
    uint64_t seq = 0;
    if (changed && se->persistent) {
        pthread_mutex_lock(&se->mu);
        seq = session_persist(s, se);
        pthread_mutex_unlock(&se->mu);
    }
    if (seq || c->ack_count) {
        /* A persistent session's subscription change is acknowledged only
         * once stored (and after earlier acks, to keep their order). */
        size_t cap = 16 + n;
        uint8_t *buf = vg_malloc(VG_MEM_MQTT, cap);
        int k = !buf ? -1
                : (sub || v5) ? vg_mqtt_encode_suback(buf, cap, c->level, sub ? VG_MQTT_SUBACK : VG_MQTT_UNSUBACK, pid,
                                                      NULL, rcs, n)
                              : vg_mqtt_encode_ack(buf, cap, c->level, VG_MQTT_UNSUBACK, pid, 0, NULL);
        ack_t *a = k > 0 ? acks_push(c, pid, ACK_PKT, seq ? 1 : 0) : NULL;
        if (!a) {
            vg_free(buf);
            conn_close(w, c, VG_CLOSE_IO);
            goto cleanup;
        }
        a->pkt = buf;
        a->pkt_len = (uint32_t)k;
        if (rb && rb->nrtd) {
            a->retained = rb;
            rb = NULL;
        }
        if (seq)
            kv_wait(s, seq, TOK(w->id, c->slot, c->gen, pid));
        acks_drain(w, c);
    } else {
        size_t cap = 16 + n;
        uint8_t *buf = out_reserve(w, c, cap);
        if (buf) {
            /* Encode straight into the output queue, then give back what the
             * (shorter than worst-case) header did not use. */
            int k = (sub || v5) ? vg_mqtt_encode_suback(buf, cap, c->level, sub ? VG_MQTT_SUBACK : VG_MQTT_UNSUBACK, pid,
                                                        NULL, rcs, n)
                                : vg_mqtt_encode_ack(buf, cap, c->level, VG_MQTT_UNSUBACK, pid, 0, NULL);
            c->out_len -= k > 0 ? cap - (size_t)k : cap;
        }
    }
    /* Retained messages go out after the SUBACK (§3.8.4), marked retained. */
    if (rb && rb->nrtd) {
        retained_batch_send(w, c, rb);
        rb = NULL;
    }
    if (want_stats)
        send_stats(w, c);
cleanup:
    retained_batch_free(rb);
}

static void handle_disconnect(worker_t *w, conn_t *c, const uint8_t *body, size_t len)
{
    uint8_t reason = 0;
    vg_mqtt_props_t pr;
    memset(&pr, 0, sizeof pr);
    if (vg_mqtt_decode_reason(c->level, VG_MQTT_DISCONNECT, body, len, &reason, &pr) != VG_OK) {
        conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    session_t *se = c->sess;
    if (pr.present & VG_PROP_BIT(VG_PROP_SESSION_EXPIRY)) {
        pthread_mutex_lock(&se->mu);
        bool bad = se->expiry_s == 0 && pr.session_expiry != 0;
        if (!bad) {
            uint32_t e = pr.session_expiry;
            if (w->srv->o.max_session_expiry_s && e > w->srv->o.max_session_expiry_s)
                e = w->srv->o.max_session_expiry_s;
            se->expiry_s = e;
            se->persistent = e > 0;
        }
        pthread_mutex_unlock(&se->mu);
        if (bad) {
            /* §3.14.2.2.2: from 0 to non-zero is a protocol error. */
            conn_close_why(w, c, VG_CLOSE_PROTOCOL, "session expiry interval was 0");
            return;
        }
    }
    if (reason == VG_RC_DISCONNECT_WITH_WILL) {
        conn_close(w, c, VG_CLOSE_DISCONNECT_WILL);
    } else {
        c->clean_disconnect = true;
        conn_close(w, c, VG_CLOSE_CLIENT);
    }
    /* Leave the session now, not when the connection is torn down at the end
     * of this loop round: a client that reconnects at once (on another
     * worker) must find it already offline or ended, not take over a
     * connection that has said goodbye. */
    conn_detach(w, c);
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
    switch (type) {
    case VG_MQTT_PUBLISH:
        handle_publish(w, c, flags, body, len);
        break;
    case VG_MQTT_PUBACK:
    case VG_MQTT_PUBREC:
    case VG_MQTT_PUBREL:
    case VG_MQTT_PUBCOMP:
        handle_ack(w, c, type, body, len);
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
        handle_disconnect(w, c, body, len);
        break;
    case VG_MQTT_AUTH:
        /* No enhanced authentication was negotiated (CONNECT with an
         * authentication method is refused), so AUTH is never valid. */
        conn_close_why(w, c, c->level == VG_MQTT_V5 ? VG_CLOSE_PROTOCOL : VG_CLOSE_MALFORMED, "unexpected AUTH");
        break;
    default:
        /* CONNECT twice, server-to-client packet types. */
        conn_close(w, c, VG_CLOSE_PROTOCOL);
        break;
    }
}

/* ---- connection teardown ------------------------------------------------ */

/* Detaches c from its session: the session goes offline (kept if it has an
 * expiry interval, ended otherwise) and the will is published now, later
 * (5.0 will delay) or not at all (normal DISCONNECT). */
static void conn_detach(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    session_t *se = c->sess;
    vg_msg_t *will = c->will;
    c->will = NULL;
    if (!se) {
        vg_msg_unref(will);
        return;
    }
    bool abnormal = !c->clean_disconnect;
    bool publish_now = false, end = false;
    int64_t now = now_wall();
    pthread_mutex_lock(&se->mu);
    if (se->online && se->owner == CONN_TOK(w->id, c->slot, c->gen)) {
        __atomic_store_n(&se->online, false, __ATOMIC_RELAXED);
        se->offline_since_ms = now;
        end = se->expiry_s == 0;
        if (!end) {
            atomic_fetch_add_explicit(&s->st_offline, 1, memory_order_relaxed);
            session_persist(s, se);
            if (se->expiry_s != EXPIRY_NEVER)
                hk_push(s, se, HK_EXPIRE, now + (int64_t)se->expiry_s * 1000);
        }
        if (will && abnormal) {
            if (c->will_delay && !end) {
                se->pending_will = will;
                will = NULL;
                hk_push(s, se, HK_WILL, now + (int64_t)c->will_delay * 1000);
            } else {
                publish_now = true;
            }
        }
    } else if (will && abnormal && c->will_delay == 0) {
        /* Taken over: the old connection's will goes out unless it is
         * delayed (the session was resumed within the delay, §3.1.3.2.2). */
        publish_now = true;
    }
    pthread_mutex_unlock(&se->mu);
    if (publish_now && will)
        publish_server_msg(s, w, will);
    vg_msg_unref(will);
    c->sess = NULL;
    if (end)
        session_end_if_offline(s, se);
    session_unref(s, se);
}

/* Appends the WebSocket close frame a closing WebSocket connection ends
 * with (after the MQTT bytes still queued, which are framed first). */
static void ws_close_frame(worker_t *w, conn_t *c)
{
    if (c->transport != TR_WS)
        return;
    uint8_t cf[8];
    int k = vg_ws_encode_close(cf, sizeof cf,
                               c->close_reason == VG_CLOSE_WS_PROTOCOL ? VG_WS_CLOSE_PROTOCOL : VG_WS_CLOSE_NORMAL, NULL,
                               0, NULL);
    if (k > 0)
        ws_send_control(w, c, cf, (size_t)k);
}

/* Releases everything a closing connection holds except its socket, its
 * slot and its pending output: the session (and with it the client id) is
 * left, the will goes out, timers, buffers, acks and aliases are freed. */
static void conn_release(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    vg_wheel_remove(&c->timer);
    conn_detach(w, c);
    if (c->alias) {
        if (c->alias->in)
            for (uint16_t i = 0; i < s->o.topic_alias_max; i++)
                vg_free(c->alias->in[i]);
        vg_free(c->alias->in);
        vg_free(c->alias->in_len);
        vg_strmap_deinit(&c->alias->out);
        vg_free(c->alias);
        c->alias = NULL;
    }
    if (c->x)
        vg_free(c->x->topic);
    vg_free(c->x);
    c->x = NULL;
    for (uint32_t i = 0; i < c->ack_count; i++) {
        vg_free(c->acks[(c->ack_head + i) % c->ack_cap].pkt);
        retained_batch_free(c->acks[(c->ack_head + i) % c->ack_cap].retained);
    }
    vg_free(c->acks);
    c->acks = NULL;
    c->ack_count = c->ack_cap = c->ack_head = 0;
    vg_free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

/* Closes the socket and frees the connection and its slot (after
 * conn_release). */
static void conn_free(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    vg_wheel_remove(&c->timer);
    vg_free(c->out);
    w->conns[c->slot] = NULL;
    w->slot_gen[c->slot]++;
    w->free_slots[w->nfree++] = c->slot;
    if (c->state == ST_LINGER)
        atomic_fetch_sub_explicit(&w->st_lingering, 1, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&w->st_conns_current, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->conns_listener[c->listener], 1, memory_order_relaxed);
    vg_free(c);
}

static void conn_destroy(worker_t *w, conn_t *c)
{
    if (c->state == ST_LINGER) {
        conn_free(w, c);
        return;
    }
    /* Best effort: a refusal CONNACK or DISCONNECT should reach the client
     * before the close (on WebSocket inside a frame, then a close frame). */
    ws_close_frame(w, c);
    if (c->out_len > c->out_off)
        (void)send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    conn_release(w, c);
    conn_free(w, c);
}

/* ---- lingering close ---------------------------------------------------- */

/* Why linger: closing a socket whose peer is still sending makes the kernel
 * answer the peer's next segments with a reset, and a client that is still
 * writing (pipelined PUBLISHes past the receive maximum, packets behind a
 * refused CONNECT) gets EPIPE/ECONNRESET on its next write and typically
 * gives up on the connection without ever reading the DISCONNECT or CONNACK
 * that says why. So after a final answer the server sends it, shuts down
 * its sending side (the client reads the answer, then EOF), and reads and
 * discards whatever still arrives until the client closes, linger_bytes
 * were thrown away or linger_ms passed (the worker's timer wheel), and only
 * then closes. Everything MQTT is released when lingering starts: the
 * session and client id (a reconnect is never blocked by the lingering
 * socket), acks, aliases, input; no packet handler runs again and no token
 * reaches it (conn_lookup). It stays counted against max_connections (it
 * holds a descriptor) but not in connections_current. */

/* Writes the rest of a lingering connection's output; once all is out,
 * shuts the sending side. Returns false if the socket broke. */
static bool linger_flush(worker_t *w, conn_t *c)
{
    int sent = out_send(w, c);
    if (sent < 0)
        return false;
    if (sent == 0) {
        c->epollout = true;
        return true;
    }
    vg_free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
    c->epollout = false;
    shutdown(c->fd, SHUT_WR);
    return true;
}

static void linger_epoll(worker_t *w, conn_t *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (c->epollout ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Turns a closing connection (off the flush and close lists) into a
 * lingering one, or frees it if its socket already broke. */
static void linger_start(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    ws_close_frame(w, c);
    conn_release(w, c);
    c->state = ST_LINGER;
    c->paused = false;
    c->in_len = 0; /* counts the bytes discarded from here on */
    atomic_fetch_sub_explicit(&w->st_conns_current, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->st_lingering, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->st_linger, 1, memory_order_relaxed);
    if (!linger_flush(w, c)) {
        conn_free(w, c);
        return;
    }
    linger_epoll(w, c);
    vg_wheel_add(&w->wheel, &c->timer, now_mono_ms() + s->o.linger_ms);
}

/* Readiness of a lingering connection: more output, or input to discard. */
static void linger_ready(worker_t *w, conn_t *c, uint32_t events)
{
    if (c->epollout && (events & EPOLLOUT)) {
        if (!linger_flush(w, c)) {
            conn_free(w, c);
            return;
        }
        if (!c->epollout)
            linger_epoll(w, c);
    }
    for (size_t budget = READ_BUDGET; budget;) {
        ssize_t k = recv(c->fd, w->rbuf, RBUF_SIZE, 0);
        if (k > 0) {
            atomic_fetch_add_explicit(&w->st_bytes_in, (uint64_t)k, memory_order_relaxed);
            if ((uint64_t)c->in_len + (uint64_t)k > w->srv->o.linger_bytes) {
                atomic_fetch_add_explicit(&w->st_linger_overflow, 1, memory_order_relaxed);
                conn_free(w, c);
                return;
            }
            c->in_len += (uint32_t)k;
            budget = (size_t)k >= budget ? 0 : budget - (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_free(w, c); /* EOF: the peer closed its side (or the socket broke) */
        return;
    }
}

/* Whether a closing connection lingers rather than closes at once. */
static bool conn_wants_linger(worker_t *w, const conn_t *c)
{
    struct vg_server *s = w->srv;
    return c->linger && s->o.linger_ms && !c->quiesced && !atomic_load_explicit(&s->stopping, memory_order_relaxed);
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
            c->in_flush = false;
        }
        if (conn_wants_linger(w, c))
            linger_start(w, c);
        else
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

static void accept_ready(worker_t *w, int li)
{
    struct vg_server *s = w->srv;
    for (int n = 0; n < 256; n++) {
        int fd = accept4(w->lfd[li], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
                    int x = accept(w->lfd[li], NULL, NULL);
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
        unsigned mine = atomic_fetch_add_explicit(&s->conns_listener[li], 1, memory_order_relaxed) + 1;
        if (total > s->o.max_connections || (s->max_listener[li] && mine > s->max_listener[li]) ||
            atomic_load(&s->quiescing)) {
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&s->conns_listener[li], 1, memory_order_relaxed);
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
        if (c && li != L_MQTT) {
            c->x = vg_calloc(VG_MEM_MQTT, 1, sizeof *c->x);
            if (c->x) {
                c->transport = li == L_WS ? TR_WS_HANDSHAKE : TR_HTTP;
                vg_http_parser_init(&c->x->hp, c->x->headers, HTTP_MAX_HEADERS, VG_HTTP_DEFAULT_MAX_HEAD,
                                    li == L_HTTP ? s->o.max_packet_size : 0);
            }
        }
        if (!c || (li != L_MQTT && !c->x) || slot_alloc(w, &slot) != VG_OK) {
            if (c)
                vg_free(c->x);
            vg_free(c);
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&s->conns_listener[li], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->listener = (uint8_t)li;
        c->slot = slot;
        c->gen = w->slot_gen[slot];
        c->state = ST_NEW;
        w->conns[slot] = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            w->conns[slot] = NULL;
            w->free_slots[w->nfree++] = slot;
            vg_free(c->x);
            vg_free(c);
            close(fd);
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&s->conns_listener[li], 1, memory_order_relaxed);
            continue;
        }
        atomic_fetch_add_explicit(&w->st_conns_current, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->st_conns_total, 1, memory_order_relaxed);
        vg_wheel_add(&w->wheel, &c->timer, vg_clock_mono_ns() / 1000000 + s->o.connect_timeout_ms);
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
        /* 5.0 requires the shortest length encoding [MQTT-1.5.5-1]; 3.1.1
         * clients in the field sometimes pad it, so only 5.0 is held to it. */
        if (c->level == VG_MQTT_V5 && hl - 1 != (rl < 128 ? 1u : rl < 16384 ? 2u : rl < 2097152 ? 3u : 4u)) {
            conn_close_why(w, c, VG_CLOSE_MALFORMED, "remaining length not in its shortest form");
            break;
        }
        handle_packet(w, c, type, flags, data + off + hl, rl);
        if (c->takeover_wait)
            break; /* the CONNECT stays unconsumed: it runs again (connect_wait_takeover) */
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
    if (c->transport == TR_HTTP) {
        http_input(w, c);
        return;
    }
    size_t used = parse_packets(w, c, c->in, c->in_len);
    if (c->state == ST_CLOSING)
        return;
    if (!keep_input(c, c->in + used, c->in_len - used))
        conn_close(w, c, VG_CLOSE_IO);
}

/* One recv into dst: the byte count (> 0); 0 when the socket has nothing
 * now; -1 after closing the connection (EOF with on_eof, errors as io). */
static ssize_t conn_recv(worker_t *w, conn_t *c, void *dst, size_t room, vg_close_reason_t on_eof)
{
    for (;;) {
        ssize_t k = recv(c->fd, dst, room, 0);
        if (k > 0) {
            atomic_fetch_add_explicit(&w->st_bytes_in, (uint64_t)k, memory_order_relaxed);
            return k;
        }
        if (k == 0) {
            conn_close(w, c, on_eof);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        conn_close(w, c, VG_CLOSE_IO);
        return -1;
    }
}

/* ---- WebSocket and HTTP transports ------------------------------------- */

static void http_respond(worker_t *w, conn_t *c, int status, const char *body)
{
    char date[VG_HTTP_DATE_LEN + 1];
    vg_http_date(date, now_wall() / 1000);
    char extra[96];
    snprintf(extra, sizeof extra, "Date: %s\r\n%s", date, status == 405 ? "Allow: POST\r\n" : "");
    char buf[1024];
    bool keep = c->x->keep_alive && !c->x->close_after;
    int n = vg_http_response(buf, sizeof buf, status, "application/json", body, strlen(body), extra, keep);
    if (n > 0)
        send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
    atomic_fetch_add_explicit(&w->st_http, 1, memory_order_relaxed);
    if (status >= 400)
        atomic_fetch_add_explicit(&w->st_http_err, 1, memory_order_relaxed);
}

/* The answer to one HTTP publish, once its ack entry is complete. */
static void http_publish_done(worker_t *w, conn_t *c, bool failed)
{
    if (failed)
        http_respond(w, c, 503, "{\"message\":\"the message could not be stored\"}");
    else
        http_respond(w, c, 200, "{\"message\":\"OK\"}");
    if (c->x->close_after && c->ack_count == 0)
        conn_close(w, c, VG_CLOSE_HTTP_DONE);
}

/* Publishes an HTTP request body: the same path as an MQTT PUBLISH from a
 * client without a session; QoS 1 answers 200 only once durable. */
static void http_publish(worker_t *w, conn_t *c, const uint8_t *body, size_t blen)
{
    struct vg_server *s = w->srv;
    xport_t *x = c->x;
    vg_msg_t *m = vg_msg_new((const uint8_t *)x->topic, x->topic_len, body, blen, x->qos, x->retain, NULL, now_wall());
    if (!m) {
        http_respond(w, c, 503, "{\"message\":\"out of memory\"}");
        return;
    }
    atomic_fetch_add_explicit(&w->st_pub_in, 1, memory_order_relaxed);
    uint16_t id = ++x->next_seq ? x->next_seq : ++x->next_seq;
    ack_t *a = acks_push(c, id, ACK_HTTP, 1);
    if (!a) {
        vg_msg_unref(m);
        http_respond(w, c, 503, "{\"message\":\"out of memory\"}");
        return;
    }
    uint64_t token = TOK(w->id, c->slot, c->gen, id);
    bool telemetry = x->topic_len == s->telemetry_len && memcmp(x->topic, s->telemetry_topic, x->topic_len) == 0;
    if (telemetry && s->o.ingest) {
        if (x->qos)
            a->pending++;
        w->ingested = true;
        if (s->o.ingest(s->o.ingest_ctx, "http", 4, body, blen, NULL, 0, vg_clock_wall_ms(), x->qos ? token : 0) !=
            VG_OK) {
            a->failed = 1;
            if (x->qos)
                a->pending--;
        }
    }
    bool control = s->control_len && x->topic_len == s->control_len && memcmp(x->topic, s->control_topic, x->topic_len) == 0;
    if (control && s->o.control) {
        if (x->qos)
            a->pending++;
        if (s->o.control(s->o.control_ctx, "http", 4, body, blen, NULL, 0, vg_clock_wall_ms(), x->qos ? token : 0) !=
            VG_OK) {
            if (x->qos)
                a->pending--;
        }
    }
    uint64_t kvseq = 0;
    if (x->retain)
        kvseq = retain_update(s, m);
    uint64_t rseq = 0;
    route(s, w, m, &rseq);
    vg_msg_unref(m);
    if (rseq > kvseq)
        kvseq = rseq;
    a = acks_find_last(c, id);
    if (a && kvseq && x->qos) {
        a->pending++;
        kv_wait(s, kvseq, token);
    }
    a = acks_find_last(c, id);
    if (a)
        a->pending--;
    acks_drain(w, c);
}

/* Checks a request head against the one route we serve and remembers what
 * the body is for. */
static void http_route(worker_t *w, conn_t *c, const vg_http_request_t *req)
{
    xport_t *x = c->x;
    static const char prefix[] = "/topics/";
    x->status = 0;
    x->why = NULL;
    vg_free(x->topic);
    x->topic = NULL;
    if (req->path.len <= sizeof prefix - 1 || memcmp(req->path.p, prefix, sizeof prefix - 1) != 0) {
        x->status = 404;
        x->why = "{\"message\":\"not found: publish with POST /topics/<topic>?qos=0|1\"}";
        return;
    }
    if (req->method != VG_HTTP_POST) {
        x->status = 405;
        x->why = "{\"message\":\"method not allowed: use POST\"}";
        return;
    }
    size_t enc = req->path.len - (sizeof prefix - 1);
    x->topic = vg_malloc(VG_MEM_MQTT, enc + 1);
    if (!x->topic) {
        x->status = 503;
        x->why = "{\"message\":\"out of memory\"}";
        return;
    }
    if (vg_http_pct_decode(req->path.p + sizeof prefix - 1, enc, false, x->topic, enc + 1, &x->topic_len) != VG_OK ||
        x->topic_len > 65535 || !vg_mqtt_topic_valid((const uint8_t *)x->topic, x->topic_len)) {
        x->status = 400;
        x->why = "{\"message\":\"invalid topic name (no wildcards, valid UTF-8)\"}";
        return;
    }
    vg_http_span_t v;
    x->qos = 0;
    if (vg_http_query_param(req->query, "qos", &v) == VG_OK) {
        if (v.len != 1 || (v.p[0] != '0' && v.p[0] != '1')) {
            x->status = 400;
            x->why = "{\"message\":\"qos must be 0 or 1\"}";
            return;
        }
        x->qos = (uint8_t)(v.p[0] - '0');
    }
    x->retain = false;
    if (vg_http_query_param(req->query, "retain", &v) == VG_OK) {
        if ((v.len == 4 && memcmp(v.p, "true", 4) == 0) || (v.len == 1 && v.p[0] == '1'))
            x->retain = true;
        else if (!((v.len == 5 && memcmp(v.p, "false", 5) == 0) || (v.len == 1 && v.p[0] == '0'))) {
            x->status = 400;
            x->why = "{\"message\":\"retain must be true or false\"}";
            return;
        }
    }
}

/* Runs the HTTP requests buffered in c->in (pipelining allowed: answers
 * leave in request order through the ack ring). */
static void http_input(worker_t *w, conn_t *c)
{
    xport_t *x = c->x;
    while (c->state != ST_CLOSING && !x->close_after && c->in_len) {
        if (!x->have_head) {
            vg_http_request_t req;
            int r = vg_http_parse_head(&x->hp, (const char *)c->in, c->in_len, &req);
            if (r == VG_AGAIN)
                return;
            if (r != VG_OK) {
                char buf[512];
                int n = vg_http_error_response(buf, sizeof buf, x->hp.error);
                if (n > 0)
                    send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
                atomic_fetch_add_explicit(&w->st_http, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&w->st_http_err, 1, memory_order_relaxed);
                conn_close_why(w, c, VG_CLOSE_HTTP_BAD_REQUEST, vg_http_error_name(x->hp.error));
                return;
            }
            x->have_head = true;
            x->head_len = req.head_len;
            x->keep_alive = req.keep_alive;
            x->body_len = x->raw_used = 0;
            http_route(w, c, &req);
            vg_http_body_init(&x->body, &req, w->srv->o.max_packet_size);
            if (req.expect_continue && x->status == 0) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                send_bytes(w, c, (const uint8_t *)cont, sizeof cont - 1);
            }
        }
        size_t used = 0, made = 0;
        size_t start = x->head_len + x->raw_used;
        int r = vg_http_body_feed(&x->body, c->in + start, c->in_len - start, &used, c->in + x->head_len + x->body_len,
                                  &made);
        x->raw_used += used;
        x->body_len += made;
        if (r == VG_AGAIN) {
            /* Everything received was used: drop the chunk framing already
             * decoded so only body bytes count against the size limit. */
            c->in_len = (uint32_t)(x->head_len + x->body_len);
            x->raw_used = x->body_len;
            return;
        }
        if (r != VG_OK) {
            char buf[512];
            int n = vg_http_error_response(buf, sizeof buf, x->body.error);
            if (n > 0)
                send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
            atomic_fetch_add_explicit(&w->st_http, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->st_http_err, 1, memory_order_relaxed);
            conn_close_why(w, c, VG_CLOSE_HTTP_BAD_REQUEST, vg_http_error_name(x->body.error));
            return;
        }
        if (!x->keep_alive)
            x->close_after = true;
        if (x->status) {
            /* Answered in order behind any publish still waiting. */
            if (c->ack_count == 0) {
                http_respond(w, c, x->status, x->why);
                if (x->close_after)
                    conn_close(w, c, VG_CLOSE_HTTP_DONE);
            } else {
                /* rare: an error behind pending publishes; answer after them */
                ack_t *a = acks_push(c, 0, ACK_HTTP, 0);
                if (a) {
                    a->failed = 2;
                    a->reason = (uint8_t)(x->status - 400);
                }
                acks_drain(w, c);
            }
        } else {
            http_publish(w, c, c->in + x->head_len, x->body_len);
        }
        size_t total = x->head_len + x->raw_used;
        memmove(c->in, c->in + total, c->in_len - total);
        c->in_len -= (uint32_t)total;
        x->have_head = false;
        if (c->in_len == 0) {
            vg_free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
}

/* Runs WebSocket bytes through the frame decoder into c->in, answering
 * pings and closes, then frames MQTT packets as on TCP. */
static void ws_input(worker_t *w, conn_t *c, const uint8_t *p, size_t left)
{
    xport_t *x = c->x;
    if (c->in_len + left > c->in_cap) {
        uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, c->in_len + left);
        if (!ni) {
            conn_close(w, c, VG_CLOSE_IO);
            return;
        }
        c->in = ni;
        c->in_cap = (uint32_t)(c->in_len + left);
    }
    while (left) {
        size_t used = 0, made = 0;
        vg_ws_event_t ev;
        int r = vg_ws_feed(&x->ws, p, left, &used, c->in + c->in_len, &made, &ev);
        p += used;
        left -= used;
        c->in_len += (uint32_t)made;
        uint8_t frame[VG_WS_MAX_HEADER + VG_WS_MAX_CONTROL];
        if (r != VG_OK) {
            int k = vg_ws_encode_close(frame, sizeof frame, ev.close_code, NULL, 0, NULL);
            if (k > 0)
                ws_send_control(w, c, frame, (size_t)k);
            c->transport = TR_MQTT; /* no second close frame from conn_destroy */
            x->ws_framed = c->out_len;
            conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, "websocket framing error");
            return;
        }
        if (ev.type == VG_WS_EV_PING) {
            int k = vg_ws_encode_pong(frame, sizeof frame, ev.payload, ev.len, NULL);
            if (k > 0)
                ws_send_control(w, c, frame, (size_t)k);
        } else if (ev.type == VG_WS_EV_CLOSE) {
            size_t u = parse_packets(w, c, c->in, c->in_len);
            (void)u;
            int k = vg_ws_encode_close(frame, sizeof frame, ev.close_code == VG_WS_CLOSE_NO_STATUS ? 0 : ev.close_code,
                                       NULL, 0, NULL);
            if (k > 0)
                ws_send_control(w, c, frame, (size_t)k);
            c->transport = TR_MQTT;
            x->ws_framed = c->out_len;
            conn_close(w, c, c->state == ST_CLOSING ? (vg_close_reason_t)c->close_reason : VG_CLOSE_PEER_CLOSED);
            return;
        }
    }
    size_t used = parse_packets(w, c, c->in, c->in_len);
    if (c->state == ST_CLOSING)
        return;
    if (!keep_input(c, c->in + used, c->in_len - used))
        conn_close(w, c, VG_CLOSE_IO);
}

static void ws_handshake(worker_t *w, conn_t *c)
{
    xport_t *x = c->x;
    vg_http_request_t req;
    int r = vg_http_parse_head(&x->hp, (const char *)c->in, c->in_len, &req);
    if (r == VG_AGAIN)
        return;
    char buf[640];
    if (r != VG_OK) {
        int n = vg_http_error_response(buf, sizeof buf, x->hp.error);
        if (n > 0)
            send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
        conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, vg_http_error_name(x->hp.error));
        return;
    }
    vg_ws_handshake_t hs;
    if (vg_ws_handshake(&req, &hs) != VG_OK) {
        int n = vg_ws_reject_response(buf, sizeof buf, &hs);
        if (n > 0)
            send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
        conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, hs.reason);
        return;
    }
    int n = vg_ws_accept_response(buf, sizeof buf, &hs);
    if (n <= 0) {
        conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
    atomic_fetch_add_explicit(&w->st_ws, 1, memory_order_relaxed);
    c->transport = TR_WS;
    x->ws_framed = c->out_len; /* the 101 answer is not framed */
    /* No limit on a WebSocket message: the framer never buffers one (its
     * bytes go straight to the MQTT layer), and vg_mqtt_frame enforces the
     * packet size on what comes out. */
    vg_ws_conn_init(&x->ws, true, UINT64_MAX);
    size_t rest = c->in_len - req.head_len;
    if (rest > RBUF_SIZE) {
        conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, "too much data after the handshake");
        return;
    }
    memcpy(w->rbuf, c->in + req.head_len, rest);
    c->in_len = 0;
    if (rest)
        ws_input(w, c, w->rbuf, rest);
}

/* Reading for the WebSocket and HTTP listeners. */
static void read_ready_xport(worker_t *w, conn_t *c, size_t budget)
{
    while (budget && c->state != ST_CLOSING && !c->paused && !c->quiesced && !c->takeover_wait) {
        ssize_t k = conn_recv(w, c, w->rbuf, RBUF_SIZE,
                              c->transport == TR_HTTP ? VG_CLOSE_HTTP_DONE : VG_CLOSE_PEER_CLOSED);
        if (k <= 0)
            return;
        budget = (size_t)k >= budget ? 0 : budget - (size_t)k;
        if (c->transport == TR_WS) {
            ws_input(w, c, w->rbuf, (size_t)k);
        } else {
            /* Handshake and HTTP requests are parsed from c->in. */
            size_t limit = VG_HTTP_DEFAULT_MAX_HEAD + 2 * w->srv->o.max_packet_size + 4096;
            if (c->in_len + (size_t)k > limit) {
                conn_close_why(w, c, c->transport == TR_HTTP ? VG_CLOSE_HTTP_BAD_REQUEST : VG_CLOSE_WS_PROTOCOL,
                               "request too large");
                return;
            }
            if (c->in_len + (size_t)k > c->in_cap) {
                uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, c->in_len + (size_t)k);
                if (!ni) {
                    conn_close(w, c, VG_CLOSE_IO);
                    return;
                }
                c->in = ni;
                c->in_cap = c->in_len + (uint32_t)k;
            }
            memcpy(c->in + c->in_len, w->rbuf, (size_t)k);
            c->in_len += (uint32_t)k;
            if (c->transport == TR_HTTP) {
                c->timer.deadline_ms = now_mono_ms() + w->srv->o.connect_timeout_ms;
                http_input(w, c);
            } else {
                ws_handshake(w, c);
            }
        }
        if ((size_t)k < RBUF_SIZE)
            return;
    }
}

/* Reads and handles up to about budget bytes (a readiness event gets
 * READ_BUDGET, for fairness), stopping when the socket has no more. */
static void read_ready(worker_t *w, conn_t *c, size_t budget)
{
    if (c->transport != TR_MQTT) {
        read_ready_xport(w, c, budget);
        return;
    }
    while (budget && c->state != ST_CLOSING && !c->paused && !c->quiesced && !c->takeover_wait) {
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
        ssize_t k = conn_recv(w, c, dst, room, c->state == ST_NEW ? VG_CLOSE_PROTOCOL : VG_CLOSE_PEER_CLOSED);
        if (k <= 0)
            return;
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
    uint64_t now = now_mono_ms();
    if (c->state == ST_CLOSING)
        return;
    if (n->deadline_ms > now) {
        vg_wheel_add(&w->wheel, n, n->deadline_ms);
        return;
    }
    if (c->state == ST_LINGER) {
        atomic_fetch_add_explicit(&w->st_linger_deadline, 1, memory_order_relaxed);
        conn_free(w, c);
        return;
    }
    if (c->transport == TR_HTTP)
        conn_close(w, c, c->ack_count ? VG_CLOSE_IO : VG_CLOSE_HTTP_DONE);
    else
        conn_close(w, c, c->state == ST_NEW ? VG_CLOSE_CONNECT_TIMEOUT : VG_CLOSE_KEEPALIVE);
}

/* ---- the worker loop --------------------------------------------------- */

/* c's output went back under max_outbuf: the congestion ends and what waits
 * in its session's queue goes out (see "slow consumers"). */
static void out_drained(worker_t *w, conn_t *c)
{
    c->congested_at = 0;
    session_t *se = c->sess;
    if (!se || c->state != ST_ACTIVE)
        return;
    pthread_mutex_lock(&se->mu);
    if (se->online && se->owner == CONN_TOK(w->id, c->slot, c->gen))
        session_pump(w, c, se);
    pthread_mutex_unlock(&se->mu);
}

/* A delivery posted by another thread: the session may have moved or gone
 * offline since; follow it. */
static void deliver_item(worker_t *w, item_t *it)
{
    struct vg_server *s = w->srv;
    session_t *se = it->sess;
    pthread_mutex_lock(&se->mu);
    if (!se->dead && se->online && TOK_WORKER(se->owner) != w->id) {
        pthread_mutex_unlock(&se->mu);
        /* Moved to another worker (reconnected there): hand it on (that
         * path stores its own copy, so drop the one stored for this hop). */
        if (it->kvsub)
            kv_del(s, NS_OUT, se->id, se->id_len, it->kvsub);
        deliver_to_session(s, NULL, se, it->msg, it->qos, it->retain, it->subids, it->nsubids);
        vg_msg_unref(it->msg);
        return;
    }
    if (!se->dead) {
        conn_t *c = se->online ? conn_lookup(w, se->owner) : NULL;
        if (c && c->sess == se && c->state == ST_ACTIVE)
            session_send(w, c, se, it->msg, it->qos, it->retain, it->subids, it->nsubids, it->kvsub);
        else if (it->qos > 0 && (se->persistent || se->online))
            session_enqueue(s, se, it->msg, it->qos, it->retain, it->subids, it->nsubids, it->kvsub);
        else if (it->kvsub)
            kv_del(s, NS_OUT, se->id, se->id_len, it->kvsub);
    } else if (it->kvsub) {
        kv_del(s, NS_OUT, se->id, se->id_len, it->kvsub);
    }
    pthread_mutex_unlock(&se->mu);
    session_unref(s, se);
    vg_msg_unref(it->msg);
}

/* Everything the peer of c already sent, read and handled now (a takeover
 * is deciding on the session): what is buffered in c->in (c may have paused
 * reading), then the socket until it has no more, bounded so that a peer
 * that never stops sending cannot keep the worker here. */
#define TAKEOVER_DRAIN_MAX (16u * 1024 * 1024)
static void conn_drain_input(worker_t *w, conn_t *c)
{
    c->paused = false;
    process_input(w, c);
    if (c->state == ST_ACTIVE && !c->quiesced)
        read_ready(w, c, TAKEOVER_DRAIN_MAX);
    if (c->state == ST_ACTIVE)
        epoll_set(w, c); /* a pause may have ended, or begun again */
}

/* ITEM_TAKEOVER (see connect_wait_takeover), on the old connection's worker. */
static void takeover_resume(worker_t *w, uint64_t tok);
static void takeover_item(worker_t *w, uint64_t old, uint64_t waiter)
{
    struct vg_server *s = w->srv;
    conn_t *oc = conn_lookup(w, old);
    if (oc && oc->state == ST_ACTIVE)
        conn_drain_input(w, oc);
    if (oc && oc->state == ST_ACTIVE)
        conn_close(w, oc, VG_CLOSE_TAKEOVER);
    /* Leave the session now, not when it is torn down at the end of the
     * round: the waiting CONNECT must find it offline (or ended). */
    if (oc)
        conn_detach(w, oc);
    uint32_t wi = TOK_WORKER(waiter);
    if (wi == w->id) {
        takeover_resume(w, waiter);
        return;
    }
    item_t it = {.kind = ITEM_TAKEOVER_DONE, .token = waiter};
    if (wi < s->nworkers && inbox_post(&s->workers[wi], &it, 1) != VG_OK)
        VG_WARN(MOD, "out of memory answering a takeover: the new connection waits for its connect timeout");
}

/* ITEM_TAKEOVER_DONE: the waiting CONNECT runs again. */
static void takeover_resume(worker_t *w, uint64_t tok)
{
    conn_t *c = conn_lookup(w, tok);
    if (!c || c->state != ST_NEW || !c->takeover_wait)
        return;
    c->takeover_wait = false;
    process_input(w, c);
    if (c->state != ST_CLOSING && !c->takeover_wait)
        epoll_set(w, c);
}

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
        } else if (it->kind == ITEM_DELIVER) {
            deliver_item(w, it);
        } else if (it->kind == ITEM_DELIVER_BATCH) {
            batch_t *b = it->batch;
            for (uint32_t k = 0; k < b->n; k++) {
                item_t one = {.kind = ITEM_DELIVER, .qos = b->v[k].qos, .retain = b->v[k].retain,
                              .nsubids = b->v[k].nsubids, .sess = b->v[k].se, .msg = it->msg, .kvsub = b->v[k].kvsub};
                memcpy(one.subids, b->v[k].subids, sizeof one.subids);
                vg_msg_ref(it->msg);
                deliver_item(w, &one);
            }
            vg_free(b);
            vg_msg_unref(it->msg);
        } else if (it->kind == ITEM_KICK) {
            conn_t *c = conn_lookup(w, it->token);
            if (c)
                conn_close(w, c, VG_CLOSE_TAKEOVER);
        } else if (it->kind == ITEM_TAKEOVER) {
            takeover_item(w, it->token, it->waiter);
        } else if (it->kind == ITEM_TAKEOVER_DONE) {
            takeover_resume(w, it->token);
        }
    }
    /* Keep the drained array as the spare so steady state allocates nothing. */
    w->inbox_spare = items;
    w->spare_cap = cap;
}
static void quiesce_worker(worker_t *w)
{
    for (int li = 0; li < L__COUNT; li++) {
        if (w->lfd[li] >= 0) {
            epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd[li], NULL);
            close(w->lfd[li]);
            w->lfd[li] = -1;
        }
    }
    for (uint32_t i = 0; i < w->nslots; i++) {
        conn_t *c = w->conns[i];
        if (c && !c->quiesced && c->state != ST_LINGER) {
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
    char name[16];
    snprintf(name, sizeof name, "vg-mqtt-w%u", w->id);
    pthread_setname_np(pthread_self(), name);
    struct epoll_event evs[MAX_EVENTS];
    bool quiesced = false;
    while (!atomic_load_explicit(&s->stopping, memory_order_acquire)) {
        if (!quiesced && atomic_load(&s->quiescing)) {
            quiesce_worker(w);
            quiesced = true;
            atomic_fetch_add(&s->quiesced_workers, 1);
        }
        uint64_t now = vg_clock_mono_ns() / 1000000;
        /* Closing a connection can queue output for others (its will) after
         * this round's flush: then look for events without sleeping. */
        int timeout = w->flush_head || w->close_head ? 0 : vg_wheel_timeout(&w->wheel, now);
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p >= (void *)&w->lfd[0] && p < (void *)&w->lfd[L__COUNT]) {
                accept_ready(w, (int)((int *)p - w->lfd));
            } else if (p == &w->efd) {
                drain_inbox(w);
            } else {
                conn_t *c = p;
                if (c->state == ST_LINGER) {
                    linger_ready(w, c, evs[i].events);
                    continue;
                }
                if (c->state == ST_CLOSING)
                    continue;
                if (c->takeover_wait && (evs[i].events & (EPOLLHUP | EPOLLERR))) {
                    conn_close(w, c, VG_CLOSE_PEER_CLOSED); /* gone while its CONNECT waited */
                    continue;
                }
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                    read_ready(w, c, READ_BUDGET);
                if (c->state != ST_CLOSING && (evs[i].events & EPOLLOUT))
                    flush_mark(w, c);
            }
        }
        now = vg_clock_mono_ns() / 1000000;
        vg_wheel_advance(&w->wheel, now, on_timer, w);
        /* Commit this iteration's telemetry here when the stream is idle:
         * the PUBACKs it releases for this worker's connections are queued
         * directly and leave in the flush below, with no thread hand-off. */
        if (w->ingested && s->o.flush) {
            w->ingested = false;
            s->o.flush(s->o.ingest_ctx);
        }
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
            else if (c->congested_at && c->out_len - c->out_off < s->o.max_outbuf)
                out_drained(w, c);
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
        if (c->state == ST_LINGER) {
            conn_free(w, c);
            continue;
        }
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

/* ---- loading state at startup ------------------------------------------ */

typedef struct {
    struct vg_server *s;
    int64_t now;
    uint64_t loaded, expired, bad;
} load_ctx_t;

static session_t *session_by_id(struct vg_server *s, const void *key, size_t klen)
{
    uint64_t v;
    if (vg_strmap_get(&s->ids, key, klen, &v) != VG_OK)
        return NULL;
    return (session_t *)(uintptr_t)v;
}

static int load_session(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen)
{
    load_ctx_t *l = ctx;
    struct vg_server *s = l->s;
    const uint8_t *b = val;
    if (vlen < 18 || b[0] != 1) {
        l->bad++;
        return 0;
    }
    uint32_t expiry = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
    uint64_t since = 0;
    for (int k = 0; k < 8; k++)
        since |= (uint64_t)b[6 + k] << (8 * k);
    uint32_t nsubs = (uint32_t)b[14] | (uint32_t)b[15] << 8 | (uint32_t)b[16] << 16 | (uint32_t)b[17] << 24;
    /* A session that was online when the server stopped went offline then:
     * its expiry counts from this start. */
    int64_t off = since ? (int64_t)since : l->now;
    if (expiry != EXPIRY_NEVER && off + (int64_t)expiry * 1000 <= l->now) {
        l->expired++;
        kv_del_key(s, NS_SESSION, key, klen);
        kv_del_key(s, NS_OUT, key, klen);
        kv_del_key(s, NS_Q2IN, key, klen);
        return 0;
    }
    session_t *se = session_new(key, klen);
    if (!se)
        return VG_ENOMEM;
    se->level = b[1];
    se->expiry_s = expiry;
    se->persistent = true;
    se->offline_since_ms = off;
    size_t o = 18;
    for (uint32_t i = 0; i < nsubs; i++) {
        if (o + 7 > vlen)
            break;
        uint8_t opts = b[o];
        uint32_t sid = (uint32_t)b[o + 1] | (uint32_t)b[o + 2] << 8 | (uint32_t)b[o + 3] << 16 | (uint32_t)b[o + 4] << 24;
        uint16_t fl = (uint16_t)(b[o + 5] | b[o + 6] << 8);
        o += 7;
        if (o + fl > vlen || !vg_mqtt_filter_valid(b + o, fl))
            break;
        subent_t *e = subent_new((const char *)b + o, fl);
        o += fl;
        if (!e)
            continue;
        e->opts = opts;
        e->sub_id = sid;
        e->sess = se;
        if (session_reserve_sub(se) != VG_OK) {
            subent_free(e);
            continue;
        }
        if (subent_link(s, e) == VG_OK)
            session_add_sub(se, e);
        else
            subent_free(e);
    }
    if (vg_strmap_put(&s->ids, key, klen, (uint64_t)(uintptr_t)se, NULL) != VG_OK) {
        session_unsubscribe_all(s, se);
        session_unref(s, se);
        return VG_ENOMEM;
    }
    atomic_fetch_add_explicit(&s->st_sessions, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->st_offline, 1, memory_order_relaxed);
    if (expiry != EXPIRY_NEVER)
        hk_push(s, se, HK_EXPIRE, off + (int64_t)expiry * 1000);
    l->loaded++;
    return 0;
}

static int load_out(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen)
{
    load_ctx_t *l = ctx;
    const uint8_t *b = val;
    session_t *se = session_by_id(l->s, key, klen);
    size_t hdr = 8 + 4 * MAX_SUBIDS;
    vg_msg_t *m = se && vlen > hdr && b[0] == 1 ? vg_msg_parse(b + hdr, vlen - hdr) : NULL;
    if (!m) {
        l->bad += se != NULL;
        kv_del(l->s, NS_OUT, key, klen, sub);
        return 0;
    }
    out_t e = {.m = m, .qos = b[1], .state = b[2], .retain = b[3], .nsubids = b[6], .kvsub = sub};
    e.pid = (uint16_t)(b[4] | b[5] << 8);
    for (int i = 0; i < MAX_SUBIDS; i++)
        e.subids[i] = (uint32_t)b[8 + 4 * i] | (uint32_t)b[9 + 4 * i] << 8 | (uint32_t)b[10 + 4 * i] << 16 |
                      (uint32_t)b[11 + 4 * i] << 24;
    if (e.qos < 1 || e.qos > 2 || e.state > OUT_WAIT_COMP || e.nsubids > MAX_SUBIDS) {
        vg_msg_unref(m);
        l->bad++;
        return 0;
    }
    if (outq_push(e.state == OUT_QUEUED ? &se->queue : &se->inflight, &e) != VG_OK) {
        vg_msg_unref(m);
        return VG_ENOMEM;
    }
    queue_account(l->s, &e, +1);
    if (sub > se->next_kvsub)
        se->next_kvsub = sub;
    if (e.state != OUT_QUEUED && e.pid >= se->next_pid)
        se->next_pid = (uint16_t)(e.pid + 1 ? e.pid + 1 : 1);
    return 0;
}

static int load_q2in(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen)
{
    load_ctx_t *l = ctx;
    session_t *se = session_by_id(l->s, key, klen);
    if (!se || sub == 0 || sub > 0xffff) {
        kv_del(l->s, NS_Q2IN, key, klen, sub);
        return 0;
    }
    return q2in_add(se, (uint16_t)sub);
}

static int load_retained(void *ctx, const void *key, size_t klen, uint64_t sub, const void *val, size_t vlen)
{
    load_ctx_t *l = ctx;
    vg_msg_t *m = vg_msg_parse(val, vlen);
    if (!m) {
        l->bad++;
        return 0;
    }
    if (!vg_msg_expired(m, l->now))
        vg_retain_set(l->s->retain, key, klen, val, vlen, m->expire_at_ms);
    else
        kv_del(l->s, NS_RETAIN, key, klen, 0);
    vg_msg_unref(m);
    return 0;
}

static int load_state(struct vg_server *s)
{
    load_ctx_t l = {.s = s, .now = now_wall()};
    int rc = vg_kv_scan(s->kv, NS_SESSION, load_session, &l);
    if (rc == VG_OK)
        rc = vg_kv_scan(s->kv, NS_OUT, load_out, &l);
    if (rc == VG_OK)
        rc = vg_kv_scan(s->kv, NS_Q2IN, load_q2in, &l);
    if (rc == VG_OK && s->retain)
        rc = vg_kv_scan(s->kv, NS_RETAIN, load_retained, &l);
    if (rc != VG_OK) {
        VG_ERROR(MOD, "cannot load gateway state from %s: %s", s->o.state_path, vg_strerror(rc));
        return rc;
    }
    size_t nret = 0;
    if (s->retain)
        vg_retain_stats(s->retain, &nret, NULL, NULL);
    VG_INFO(MOD, "gateway state: %llu sessions restored (%llu expired while down), %llu queued messages, %zu retained%s",
            (unsigned long long)l.loaded, (unsigned long long)l.expired,
            (unsigned long long)atomic_load(&s->st_queued), nret, l.bad ? " (some unreadable entries skipped)" : "");
    return VG_OK;
}

/* ---- setup ------------------------------------------------------------- */

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
    if (s->o.max_outbuf > MAX_OUTBUF_LIMIT)
        s->o.max_outbuf = MAX_OUTBUF_LIMIT;
    s->max_listener[L_WS] = opts->max_connections_ws;
    s->max_listener[L_HTTP] = opts->max_connections_http;
    if (s->o.max_inflight_out < 1)
        s->o.max_inflight_out = 1;
    if (s->o.max_subs_per_packet < 1)
        s->o.max_subs_per_packet = 1;
    s->telemetry_len = strlen(opts->telemetry_topic ? opts->telemetry_topic : "");
    s->telemetry_topic = vg_strndup(VG_MEM_MQTT, opts->telemetry_topic ? opts->telemetry_topic : "", s->telemetry_len);
    s->control_len = opts->control_topic ? strlen(opts->control_topic) : 0;
    s->control_topic = vg_strndup(VG_MEM_MQTT, opts->control_topic ? opts->control_topic : "", s->control_len);
    pthread_rwlock_init(&s->tree_lock, NULL);
    pthread_mutex_init(&s->ids_mu, NULL);
    pthread_mutex_init(&s->kvw_mu, NULL);
    pthread_mutex_init(&s->hk_mu, NULL);
    pthread_cond_init(&s->hk_cv, NULL);
    vg_strmap_init(&s->ids, VG_MEM_MQTT);
    vg_strmap_init(&s->groups, VG_MEM_MQTT);
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->efd = w->ep = w->spare_fd = -1;
        for (int li = 0; li < L__COUNT; li++)
            w->lfd[li] = -1;
        pthread_mutex_init(&w->inbox_mu, NULL);
    }
    if (!s->telemetry_topic || vg_topic_tree_new(&s->tree) != VG_OK)
        goto cleanup;
    vg_retain_limits_t rl = {.max_messages = opts->max_retained, .max_bytes = opts->max_retained_bytes};
    if ((rc = vg_retain_new(&rl, &s->retain)) != VG_OK)
        goto cleanup;
    if (opts->state_path) {
        vg_kv_opts_t ko = {.on_durable = on_kv_durable, .ctx = s, .max_pending_bytes = opts->state_max_pending_bytes};
        if ((rc = vg_kv_open(opts->state_path, &ko, &s->kv)) != VG_OK)
            goto cleanup;
        if ((rc = load_state(s)) != VG_OK)
            goto cleanup;
    }
    rc = VG_ENOMEM;
    uint64_t now = now_mono_ms();
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->srv = s;
        w->id = i;
        w->rbuf = vg_malloc(VG_MEM_MQTT, RBUF_SIZE);
        w->route = vg_calloc(VG_MEM_MQTT, 1, sizeof *w->route);
        w->sub_scratch = vg_calloc(VG_MEM_MQTT, s->o.max_subs_per_packet, sizeof *w->sub_scratch);
        w->rc_scratch = vg_malloc(VG_MEM_MQTT, s->o.max_subs_per_packet);
        if (!w->rbuf || !w->route || !w->sub_scratch || !w->rc_scratch ||
            vg_wheel_init(&w->wheel, 4096, WHEEL_TICK_MS, now) != VG_OK)
            goto cleanup;
        const char *hosts[L__COUNT] = {opts->listen_host, opts->ws_host, opts->http_host};
        uint16_t ports[L__COUNT] = {opts->listen_port, opts->ws_port, opts->http_port};
        for (int li = 0; li < L__COUNT; li++) {
            if (!hosts[li])
                continue;
            if (i == 0) {
                rc = listen_socket(hosts[li], ports[li], &w->lfd[li]);
                if (rc)
                    goto cleanup;
            } else {
                w->lfd[li] = dup(s->workers[0].lfd[li]);
            }
        }
        rc = VG_EIO;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (w->ep < 0 || w->efd < 0)
            goto cleanup;
        /* EPOLLEXCLUSIVE: a new connection wakes one worker, not all. */
        for (int li = 0; li < L__COUNT; li++) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &w->lfd[li]};
            if (w->lfd[li] >= 0 && epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd[li], &ev) < 0)
                goto cleanup;
        }
        struct epoll_event ev2 = {.events = EPOLLIN, .data.ptr = &w->efd};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev2) < 0)
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
    if (pthread_create(&s->hk_thread, NULL, hk_main, s) != 0)
        return VG_EIO;
    s->hk_started = true;
    for (uint32_t i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            atomic_store(&s->stopping, true);
            for (uint32_t j = 0; j < i; j++) {
                wake(&s->workers[j]);
                pthread_join(s->workers[j].thread, NULL);
            }
            pthread_cond_signal(&s->hk_cv);
            pthread_join(s->hk_thread, NULL);
            s->hk_started = false;
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
    if (s->hk_started) {
        atomic_store_explicit(&s->stopping, true, memory_order_release);
        pthread_mutex_lock(&s->hk_mu);
        pthread_cond_signal(&s->hk_cv);
        pthread_mutex_unlock(&s->hk_mu);
        pthread_join(s->hk_thread, NULL);
        s->hk_started = false;
    }
    if (!s->started)
        return;
    atomic_store_explicit(&s->stopping, true, memory_order_release);
    for (uint32_t i = 0; i < s->nworkers; i++)
        wake(&s->workers[i]);
    for (uint32_t i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    s->started = false;
}

static void free_session_cb(struct vg_server *s)
{
    /* Every session still registered: unsubscribe and release (their
     * persistent state stays in the store). */
    for (size_t i = 0; i < s->ids.cap; i++) {
        vg_strmap_slot_t *sl = &s->ids.slots[i];
        if (!sl->key)
            continue;
        session_t *se = (session_t *)(uintptr_t)sl->value;
        session_unsubscribe_all(s, se);
        session_unref(s, se);
    }
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
    }
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        for (size_t j = 0; j < w->inbox_len; j++) {
            if (w->inbox[j].kind == ITEM_DELIVER) {
                vg_msg_unref(w->inbox[j].msg);
                session_unref(s, w->inbox[j].sess);
            } else if (w->inbox[j].kind == ITEM_DELIVER_BATCH) {
                for (uint32_t k = 0; k < w->inbox[j].batch->n; k++)
                    session_unref(s, w->inbox[j].batch->v[k].se);
                vg_free(w->inbox[j].batch);
                vg_msg_unref(w->inbox[j].msg);
            }
        }
        w->inbox_len = 0;
    }
    for (size_t i = 0; i < s->hk_n; i++)
        session_unref(s, s->hk[i].sess);
    s->hk_n = 0;
    free_session_cb(s);
    /* The store last: it commits what sessions queued while closing. */
    if (s->kv) {
        int kr = vg_kv_close(s->kv);
        if (kr != VG_OK)
            VG_ERROR(MOD, "gateway state store closed with an error: %s", vg_strerror(kr));
        s->kv = NULL;
    }
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        for (int li = 0; li < L__COUNT; li++)
            if (w->lfd[li] >= 0)
                close(w->lfd[li]);
        if (w->efd >= 0)
            close(w->efd);
        if (w->ep >= 0)
            close(w->ep);
        if (w->spare_fd >= 0)
            close(w->spare_fd);
        vg_wheel_deinit(&w->wheel);
        vg_free(w->rbuf);
        if (w->route) {
            vg_free(w->route->hits);
            vg_free(w->route->tg);
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
    vg_retain_free(s->retain);
    vg_topic_tree_free(s->tree);
    vg_strmap_deinit(&s->ids);
    vg_strmap_deinit(&s->groups);
    vg_free(s->kvw);
    vg_free(s->hk);
    pthread_rwlock_destroy(&s->tree_lock);
    pthread_mutex_destroy(&s->ids_mu);
    pthread_mutex_destroy(&s->kvw_mu);
    pthread_mutex_destroy(&s->hk_mu);
    pthread_cond_destroy(&s->hk_cv);
    vg_free(s->telemetry_topic);
    vg_free(s->control_topic);
    vg_free(s);
}

void vg_server_stats(vg_server_t *s, vg_server_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->store_state = -1;
    if (s->kv) {
        vg_kv_stats_t ks;
        vg_kv_stats(s->kv, &ks);
        out->store_state = ks.state;
        out->store_pending_ops = ks.pending_ops;
        out->store_disk_full_pauses = ks.disk_full_pauses;
        out->store_disk_full_retries = ks.disk_full_retries;
        out->store_disk_full_ms = ks.disk_full_ms;
    }
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
        out->ws_connections += atomic_load_explicit(&w->st_ws, memory_order_relaxed);
        out->http_requests += atomic_load_explicit(&w->st_http, memory_order_relaxed);
        out->http_errors += atomic_load_explicit(&w->st_http_err, memory_order_relaxed);
        out->lingering += atomic_load_explicit(&w->st_lingering, memory_order_relaxed);
        out->dropped_qos0_outbuf += atomic_load_explicit(&w->st_drop_qos0_outbuf, memory_order_relaxed);
        out->deferred_outbuf += atomic_load_explicit(&w->st_deferred_outbuf, memory_order_relaxed);
        out->linger_closes += atomic_load_explicit(&w->st_linger, memory_order_relaxed);
        out->linger_deadline += atomic_load_explicit(&w->st_linger_deadline, memory_order_relaxed);
        out->linger_overflow += atomic_load_explicit(&w->st_linger_overflow, memory_order_relaxed);
    }
    out->subscriptions = atomic_load_explicit(&s->nsubs, memory_order_relaxed);
    out->sessions = atomic_load_explicit(&s->st_sessions, memory_order_relaxed);
    out->sessions_persistent_offline = atomic_load_explicit(&s->st_offline, memory_order_relaxed);
    out->queued = atomic_load_explicit(&s->st_queued, memory_order_relaxed);
    out->queued_bytes = atomic_load_explicit(&s->st_queued_bytes, memory_order_relaxed);
    out->queue_dropped_client = atomic_load_explicit(&s->st_drop_client, memory_order_relaxed);
    out->queue_dropped_global = atomic_load_explicit(&s->st_drop_global, memory_order_relaxed);
    out->expired_dropped = atomic_load_explicit(&s->st_expired, memory_order_relaxed);
    out->too_large_dropped = atomic_load_explicit(&s->st_too_large, memory_order_relaxed);
    out->qos2_duplicates = atomic_load_explicit(&s->st_q2dup, memory_order_relaxed);
    out->wills_published = atomic_load_explicit(&s->st_wills, memory_order_relaxed);
    out->store_errors = atomic_load_explicit(&s->st_store_errors, memory_order_relaxed);
    if (s->retain) {
        size_t n = 0;
        uint64_t rej = 0;
        vg_retain_stats(s->retain, &n, NULL, &rej);
        out->retained = n;
        out->retained_rejected = rej;
    }
}
