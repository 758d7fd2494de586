/* gw.h — the gateway's internal header: the types every gateway module
 * shares (connection, session, worker, the server itself) and the gw_
 * functions one module offers the others. Included only by the gateway's .c files
 * and the gateway's unit tests; the public contract is server.h.
 *
 * Modules (one noun each; every file opens with what it owns):
 *   server.c          options, setup and teardown, the public stats
 *   worker.c          the I/O worker loop: epoll, inbox, accept, timers, completions, before-sleep flush
 *   conn.c            connection I/O: output buffer, flush, read and framing, close, lingering close
 *   connect.c         CONNECT/CONNACK, takeover, session resume, DISCONNECT, packet dispatch
 *   publish.c         inbound PUBLISH: topic aliases, hooks, the ordered ack ring (MQTT, WebSocket, HTTP)
 *   session.c         sessions: refcount, queues, QoS 2 ids, sending PUBLISHes, delivery to a session
 *   subs.c            subscriptions: entries, shared groups, the session index, retained replay, SUBSCRIBE
 *   route.c           routing one message to every matching subscription; retained updates
 *   persist.c         the state store: value formats, mirroring, durability waiters, load at start-up
 *   housekeep.c       the housekeeping thread: session expiry, delayed wills, retained expiry
 *   ws_transport.c    MQTT over WebSocket
 *   http_transport.c  HTTP publish (POST /topics/<topic>)
 *   tls_transport.c   TLS under any of the three: handshakes on the loop, encrypted reads and writes
 *   auth.c            who a connection is (the auth hook at CONNECT, waiting for it) and what it may do
 *
 * Threads and locks: see server.h (threads) and the lock order below.
 * Lock order: ids_mu -> session mu; tree_lock is never taken while a
 * session mu is held, and no session mu is taken while tree_lock is held
 * except to read immutable fields. Section numbers refer to MQTT 5.0 unless
 * marked 3.1.1. */
#ifndef VG_GATEWAY_GW_H
#define VG_GATEWAY_GW_H

#include "gateway/server.h"

#include "core/alloc.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/heap.h"
#include "core/mailbox.h"
#include "core/strmap.h"
#include "core/wheel.h"
#include "mqtt/codec.h"
#include "mqtt/message.h"
#include "mqtt/retain.h"
#include "mqtt/topic.h"
#include "net/http.h"
#include "net/ws.h"
#include "sec/ratelimit.h"
#include "store/kv.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

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
    NS_SESSION = 1, /* key client id, sub 0: session_blob (see gw_session_persist in persist.c) */
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
struct group;
struct retained_batch;

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
    ITEM_KICK,          /* close connection `token` (session taken over; status VG_CLOSE_REVOKED: revoked) */
    ITEM_TAKEOVER,      /* drain, then close connection `token`; answer `waiter` (see connect.c) */
    ITEM_TAKEOVER_DONE, /* connection `token` may run its CONNECT again */
    ITEM_AUTH_DONE,     /* the auth hook answered connection `token`'s CONNECT (see auth.c) */
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
        void *principal; /* AUTH_DONE accepted (status 0): who it is (owned by the item) */
        const char *why; /* AUTH_DONE refused: the reason string */
    };
    vg_msg_t *msg;   /* DELIVER, DELIVER_BATCH: holds a ref */
    uint64_t kvsub;  /* DELIVER: copy already stored for the session, 0 = none */
    uint32_t subids[MAX_SUBIDS];
} item_t;

/* ST_LINGER: closed as far as MQTT is concerned (session released, no
 * handlers run, unreachable by token), only the socket is left: its output
 * drains, its input is discarded, see linger_start in conn.c. */
enum { ST_FREE = 0, ST_NEW, ST_ACTIVE, ST_CLOSING, ST_LINGER };

/* Reading waits for the publish-rate limit (gw_throttle). */
#define CONN_THROTTLED(c) ((c)->sec && (c)->sec->throttled_until)

/* True once a connection is closing or lingering: nothing more is queued to
 * it and no packet of it is handled. */
#define CONN_GONE(c) ((c)->state >= ST_CLOSING)

enum { AUTH_NONE = 0, AUTH_WAIT, AUTH_ACCEPTED, AUTH_REFUSED };

/* Listeners / transports. A TLS listener is its plain twin + L_TLS. */
enum { L_MQTT = 0, L_WS, L_HTTP, L_MQTTS, L_WSS, L_HTTPS, L__COUNT };
#define L_TLS 3
#define L_IS_TLS(li) ((li) >= L_TLS)
#define L_PLAIN(li) ((li) >= L_TLS ? (li)-L_TLS : (li))
enum { TR_MQTT = 0, TR_WS_HANDSHAKE, TR_WS, TR_HTTP };
#define ACK_HTTP 0xFF /* ack_t.type of an HTTP publish awaiting its response */
#define ACK_PKT 0xFE  /* ack_t.type of a SUBACK/UNSUBACK waiting for its session to be stored */
#define HTTP_MAX_HEADERS 32

/* Per-connection security state: TLS, who it is, its rate limits.
 * Allocated for connections on a TLS listener, connections that
 * authenticated as someone, and every connection while per-source or
 * publish-rate limits are on (an anonymous plain connection without limits
 * pays nothing). It outlives the MQTT state: a lingering connection still
 * writes through its SSL (see conn_release). */
typedef struct gw_sec {
    SSL *ssl;               /* TLS: the session, NULL on plain listeners */
    struct conn *again_next;/* TLS: on the worker's list of connections with decrypted input left */
    bool tls_handshake;     /* TLS: the handshake is still running */
    bool tls_again;         /* TLS: on that list */
    bool tls_read_wants_write; /* TLS: a read needs the socket writable first */
    bool tls_dead;          /* TLS: the session broke (or its handshake failed): no more SSL calls but free */
    bool tls_shut;          /* TLS: close_notify sent */
    bool tls_cert;          /* TLS: a client certificate verified and was accepted */
    bool issuer_known;
    uint8_t tls_fail;       /* TLS: why the handshake failed (vg_tls_fail_t + 1), 0 = not known, 0xff = counted */
    uint8_t cert_sha256[32];
    uint8_t issuer_sha256[32]; /* TLS: of the CA that signed the client certificate (full handshakes) */
    char *cert_cn;          /* TLS: the client certificate's CN (owned), NULL = none */
    /* Authentication (auth.c): AUTH_NONE until the auth hook was asked. */
    uint8_t auth;           /* AUTH_* */
    uint8_t auth_v3_rc, auth_v5_rc; /* AUTH_REFUSED: the CONNACK codes */
    bool rl_counted;        /* counted open by the per-source limits: uncounted when freed */
    uint32_t throttled_until; /* mono ms (low 32 bits, never 0) reading resumes after a publish-rate wait; 0 = not */
    const char *auth_why;   /* AUTH_REFUSED: the reason string */
    void *principal;        /* AUTH_ACCEPTED: who it is (owned; principal_free), NULL = anonymous */
    vg_rl_bucket_t pub;     /* publish-rate bucket (when limited) */
    uint64_t throttled_deadline; /* the timer's own deadline while it waits for the throttle */
    struct sockaddr_storage peer; /* the source, for the per-source limits (when on) */
} gw_sec_t;

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
    bool body_ready;        /* the request in progress is complete (it may wait for authentication) */
    uint8_t bearer_len;     /* Authorization: Bearer <token> of the first request, for auth.c */
    char bearer[120];
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

/* One connection. Laid out without holes: 192 bytes, a 208-byte malloc
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
    /* queued output (at most OUT_MAX bytes: see gw_out_reserve_ex) */
    uint8_t *out;
    uint32_t out_off, out_len, out_cap;
    /* inbound acks in arrival order */
    uint32_t ack_head, ack_count, ack_cap;
    ack_t *acks;
    aliases_t *alias;     /* NULL until the connection uses topic aliases */
    xport_t *x;           /* WebSocket / HTTP state, NULL for MQTT over TCP */
    gw_sec_t *sec;        /* TLS / identity / rate-limit state, NULL for none */
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
    conn_t *again_head; /* TLS connections with decrypted input still to read (tls_transport.c) */
    uint32_t hooks_ran; /* bit i: hook i ran this iteration, call its flush hook before sleeping */
    /* Completions reported on this worker's own thread (vg_server_complete
     * from a hook, the flush hook's commit, an answer known at once), run
     * after the current event (worker.c, run_deferred): never inside the
     * code that caused them, and without the inbox's lock and wake-up. */
    struct deferred {
        uint64_t token;
        int status;
    } *deferred;
    size_t ndeferred, deferred_cap;
    vg_mailbox_t inbox; /* of item_t, woken through efd */
    /* stats (relaxed atomics: read by the stats thread) */
    atomic_uint_fast64_t st_conns_current, st_conns_total, st_refused, st_closes[VG_CLOSE__COUNT];
    atomic_uint_fast64_t st_pub_in, st_pub_out, st_bytes_in, st_bytes_out, st_read_pauses;
    atomic_uint_fast64_t st_ws, st_http, st_http_err;
    atomic_uint_fast64_t st_lingering, st_linger, st_linger_deadline, st_linger_overflow;
    atomic_uint_fast64_t st_drop_qos0_outbuf, st_deferred_outbuf;
    atomic_uint_fast64_t st_tls_handshakes, st_tls_resumed, st_tls_alpn_mqtt, st_tls_fail[VG_TLS_FAIL__COUNT];
    atomic_uint_fast64_t st_auth_ok, st_auth_refused, st_denied[4], st_rl_refused, st_throttled;
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

/* The housekeeping thread's timers, earliest first (core/heap.h). */
#define HK_LESS(a, b) ((a).at_ms < (b).at_ms)
VG_HEAP_DEFINE(hk_heap, hk_item_t, HK_LESS, VG_HEAP_NO_INDEX)

/* One hook of the table (server.h), its filter copied. */
typedef struct {
    char *filter;
    uint16_t flen;
    bool exact; /* no wildcards: compared as a topic */
    vg_server_hook_fn fn;
    vg_server_flush_fn flush;
    void *ctx;
} gw_hook_t;

struct vg_server {
    vg_server_opts_t o;
    gw_hook_t hooks[VG_SERVER_MAX_HOOKS];
    uint32_t nhooks;
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
    hk_heap_t hk; /* by at_ms */
    int64_t hk_wake_at; /* wall ms the thread sleeps until (INT64_MAX: until signalled), 0 while awake */
    bool hk_started;
    /* counters not owned by one worker */
    atomic_uint_fast64_t st_sessions, st_offline, st_queued, st_queued_bytes, st_drop_client, st_drop_global;
    atomic_uint_fast64_t st_expired, st_too_large, st_q2dup, st_wills, st_store_errors;
    bool started;
};

/* What the kv_* wrappers return when the store refused a write (queue full
 * while the disk is full, store failed, out of memory): larger than every
 * real sequence number, so that "the highest write this packet caused"
 * stays refused whatever else it caused, and gw_kv_wait answers the packet
 * with VG_EIO instead of acknowledging data that was never queued. */
#define KV_REFUSED UINT64_MAX

/* Routing scratch, one per worker (route.c). */
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

/* One inbound publish, whatever transport brought it: what gw_publish_in
 * needs beyond the message itself. */
typedef struct {
    vg_msg_t *m;           /* borrowed; m->origin set by the caller (NULL for HTTP) */
    const char *client_id; /* for the hooks */
    size_t client_id_len;
    const vg_mqtt_props_t *props; /* MQTT 5 properties (user properties for the hooks); NULL = none */
    ack_t *ack;     /* its entry in the connection's ack ring; NULL = none (MQTT QoS 0) */
    uint64_t token; /* names ack for completions; 0 = nothing to complete (QoS 0) */
    uint64_t kvseq; /* a store write the acknowledgement must wait for already (QoS 2 id); 0 = none */
} gw_inpub_t;

static inline int64_t gw_now_wall_ms(void)
{
    return vg_clock_wall_ms();
}

static inline uint64_t gw_now_mono_ms(void)
{
    return vg_clock_mono_ns() / 1000000;
}

static inline out_t *gw_outq_at(outq_t *q, uint32_t i)
{
    return &q->v[(q->head + i) % q->cap];
}

/* ---- session.c ---- */
int gw_ring_grow(void **v, uint32_t *head, uint32_t n, uint32_t *cap, size_t elem);
int gw_outq_push(outq_t *q, const out_t *e);
session_t *gw_session_new(const char *id, size_t idlen);
void gw_session_ref(session_t *se);
void gw_queue_account(struct vg_server *s, const out_t *e, int sign);
void gw_session_unref(struct vg_server *s, session_t *se);
bool gw_q2in_has(const session_t *se, uint16_t pid);
int gw_q2in_add(session_t *se, uint16_t pid);
void gw_session_kill(struct vg_server *s, session_t *se, vg_msg_t *will);
void gw_session_end_if_offline(struct vg_server *s, session_t *se);
int gw_send_publish(worker_t *w, conn_t *c, vg_msg_t *m, uint8_t qos, uint16_t pid, bool dup, bool retain,
                    const uint32_t *subids, uint8_t nsubids);
void gw_session_pump(worker_t *w, conn_t *c, session_t *se);
uint64_t gw_session_enqueue(struct vg_server *s, session_t *se, vg_msg_t *m, uint8_t qos, bool retain,
                            const uint32_t *subids, uint8_t nsubids, uint64_t kvsub);
uint64_t gw_session_send(worker_t *w, conn_t *c, session_t *se, vg_msg_t *m, uint8_t qos, bool retain,
                         const uint32_t *subids, uint8_t nsubids, uint64_t kvsub);
uint64_t gw_deliver_to_session(struct vg_server *s, worker_t *from, session_t *se, vg_msg_t *m, uint8_t qos,
                               bool retain, const uint32_t *subids, uint8_t nsubids);
uint64_t gw_deliver_to_session_b(struct vg_server *s, worker_t *from, session_t *se, vg_msg_t *m, uint8_t qos,
                                 bool retain, const uint32_t *subids, uint8_t nsubids, batch_t **batches);
void gw_handle_ack(worker_t *w, conn_t *c, uint8_t type, const uint8_t *body, size_t len);

/* ---- persist.c ---- */
uint64_t gw_kv_put(struct vg_server *s, uint8_t ns, const void *key, size_t klen, uint64_t sub, const void *val,
                   size_t vlen);
uint64_t gw_kv_del(struct vg_server *s, uint8_t ns, const void *key, size_t klen, uint64_t sub);
uint64_t gw_kv_del_key(struct vg_server *s, uint8_t ns, const void *key, size_t klen);
uint64_t gw_out_persist(struct vg_server *s, session_t *se, out_t *e);
void gw_out_unpersist(struct vg_server *s, session_t *se, out_t *e);
uint64_t gw_session_persist(struct vg_server *s, session_t *se);
void gw_kv_wait(struct vg_server *s, uint64_t seq, uint64_t token);
void gw_on_kv_durable(void *ctx, uint64_t seq, int status);
int gw_load_state(struct vg_server *s);

/* ---- worker.c ---- */
/* Makes a connection of the accepted socket fd on listener li (L_*), which
 * the caller has counted against the connection limits (conns_total,
 * conns_listener). VG_ENOMEM (out of memory or slots) or VG_EIO (epoll
 * refused it): nothing was made and fd is still the caller's to close.
 * *out (if not NULL) gets the connection. */
int gw_conn_add(worker_t *w, int fd, int li, conn_t **out);
/* Makes w the worker of the calling thread (worker_main does; so do unit
 * tests that drive a worker by hand); NULL undoes it. */
void gw_worker_bind_thread(worker_t *w);
/* One round of w's loop: wait for events (at most max_wait_ms, -1 = until
 * the next timer), handle them, run timers, flush hooks and deferred
 * completions, write what was queued, close what was closed. */
void gw_worker_round(worker_t *w, int max_wait_ms);
/* The worker of s running on the calling thread, NULL on any other thread. */
worker_t *gw_current_worker(const struct vg_server *s);
void gw_wake(worker_t *w);
int gw_inbox_post(worker_t *w, const item_t *items, size_t n);
void *gw_worker_main(void *arg);

/* ---- conn.c ---- */
void gw_flush_mark(worker_t *w, conn_t *c);
bool gw_out_full(worker_t *w, conn_t *c);
uint8_t *gw_out_reserve_ex(worker_t *w, conn_t *c, size_t n, bool force);
uint8_t *gw_out_reserve(worker_t *w, conn_t *c, size_t n);
void gw_send_bytes(worker_t *w, conn_t *c, const uint8_t *b, size_t n);
void gw_epoll_set(worker_t *w, conn_t *c);
bool gw_conn_flush(worker_t *w, conn_t *c);
void gw_send_disconnect(worker_t *w, conn_t *c, uint8_t rc, const char *why);
void gw_conn_close_why(worker_t *w, conn_t *c, vg_close_reason_t reason, const char *why);
void gw_conn_close(worker_t *w, conn_t *c, vg_close_reason_t reason);
aliases_t *gw_conn_aliases(conn_t *c);
conn_t *gw_conn_lookup(worker_t *w, uint64_t tok);
void gw_conn_free(worker_t *w, conn_t *c);
void gw_conn_destroy(worker_t *w, conn_t *c);
void gw_linger_ready(worker_t *w, conn_t *c, uint32_t events);
void gw_process_closes(worker_t *w);
size_t gw_parse_packets(worker_t *w, conn_t *c, const uint8_t *data, size_t len);
/* Handles the whole MQTT packets in c->in and keeps the rest (freeing the
 * buffer when nothing is left). */
void gw_parse_input(worker_t *w, conn_t *c);
void gw_process_input(worker_t *w, conn_t *c);
void gw_read_ready(worker_t *w, conn_t *c, size_t budget);
void gw_out_drained(worker_t *w, conn_t *c);
void gw_conn_drain_input(worker_t *w, conn_t *c);

/* ---- ws_transport.c ---- */
bool gw_ws_frame_pending(conn_t *c);
void gw_ws_close_frame(worker_t *w, conn_t *c);
void gw_ws_input(worker_t *w, conn_t *c, const uint8_t *p, size_t left);
void gw_ws_handshake(worker_t *w, conn_t *c);

/* ---- tls_transport.c ---- */
/* Gives c (accepted on a TLS listener, sec allocated) its SSL; VG_ENOMEM. */
int gw_tls_attach(worker_t *w, conn_t *c);
/* Drives c's handshake on readiness; when it finishes, checks the client
 * certificate and lets the connection's transport read. May close c. */
void gw_tls_handshake(worker_t *w, conn_t *c);
/* Reads decrypted bytes: > 0 bytes, 0 = nothing now, -1 = the peer closed
 * (close_notify or EOF), -2 = broken (c is not closed: the caller does). */
ssize_t gw_tls_recv(worker_t *w, conn_t *c, void *dst, size_t room);
/* Writes plaintext: > 0 bytes taken, 0 = would block, -1 = broken. */
ssize_t gw_tls_send(worker_t *w, conn_t *c, const void *b, size_t n);
/* Whether OpenSSL holds decrypted input of c that epoll cannot see. */
bool gw_tls_pending(const conn_t *c);
/* Puts c on the worker's list of connections to read again without
 * waiting for epoll (input left inside OpenSSL). */
void gw_tls_again(worker_t *w, conn_t *c);
/* Reads the connections of that list (called once per worker round). */
void gw_tls_run_again(worker_t *w);
/* Sends close_notify (best effort, never blocks). */
void gw_tls_close_notify(conn_t *c);
/* Frees c's TLS state (the SSL, the certificate name; sec itself stays the caller's). */
void gw_tls_free(worker_t *w, conn_t *c);
#define VG_TLS_CN_MAX 64
/* Counts a failed handshake of c (once) by its reason (and tells the
 * tls_refused hook). */
void gw_tls_count_fail(worker_t *w, conn_t *c, vg_tls_fail_t why);

/* ---- auth.c ---- */
/* The publish-rate limit said wait ms: stop reading c (its PUBLISH stays
 * first in c->in) until then. Backpressure, not a drop: TCP slows the
 * client down. */
void gw_throttle(worker_t *w, conn_t *c, uint32_t ms);
/* Asks the auth hook about c's CONNECT (client id, user name, password).
 * AUTH_ACCEPTED / AUTH_REFUSED when decided (also from an earlier call
 * whose answer came back), AUTH_WAIT when the CONNECT must wait: c stops
 * reading and the CONNECT runs again once the answer arrives. VG_ENOMEM
 * as a negative value. Without an auth hook: AUTH_ACCEPTED, anonymous. */
int gw_auth_connect(worker_t *w, conn_t *c, const vg_mqtt_connect_t *ck, const char *id, size_t idlen);
/* The same for an HTTP connection's first complete request: its client
 * certificate and its bearer token (x->bearer). */
int gw_auth_http(worker_t *w, conn_t *c);
/* ITEM_AUTH_DONE on the connection's worker. */
void gw_auth_done_item(worker_t *w, const item_t *it);
/* Whether c's principal may do action on topic (counted when not). */
bool gw_authorize(worker_t *w, conn_t *c, vg_server_action_t action, const uint8_t *topic, size_t len);
/* c's principal (NULL = anonymous). */
static inline void *gw_principal(const conn_t *c)
{
    return c->sec ? c->sec->principal : NULL;
}
/* Frees c's principal, if any. */
void gw_auth_release(worker_t *w, conn_t *c);
/* c's security state, allocated (zeroed) if it had none; NULL when out of
 * memory. */
gw_sec_t *gw_conn_sec(conn_t *c);

/* ---- subs.c ---- */
subent_t *gw_subent_new(const char *f, size_t fl);
void gw_subent_free(subent_t *e);
int gw_subent_link(struct vg_server *s, subent_t *e);
void gw_session_unsubscribe_all(struct vg_server *s, session_t *se);
int gw_session_reserve_sub(session_t *se);
void gw_session_add_sub(session_t *se, subent_t *e);
void gw_retained_batch_free(struct retained_batch *b);
void gw_retained_batch_send(worker_t *w, conn_t *c, struct retained_batch *b);
void gw_handle_subscribe(worker_t *w, conn_t *c, const uint8_t *body, size_t len, bool sub);

/* ---- housekeep.c ---- */
void gw_hk_push(struct vg_server *s, session_t *se, uint8_t kind, int64_t at_ms);
void *gw_hk_main(void *arg);
void gw_hk_note_expiry(struct vg_server *s, int64_t expire_at_ms);

/* ---- route.c ---- */
int gw_route(struct vg_server *s, worker_t *from, vg_msg_t *m, uint64_t *kvseq);
uint64_t gw_retain_update(struct vg_server *s, vg_msg_t *m);
void gw_publish_server_msg(struct vg_server *s, worker_t *from, vg_msg_t *m);

/* ---- publish.c ---- */
/* The one inbound path of MQTT, WebSocket and HTTP publishes: the matching
 * hooks, the retained update, routing, and the store waits of the
 * acknowledgement (in->ack gains one pending completion per hook that took
 * a token and one for the store). Returns VG_OK, or a hook's refusal: then
 * nothing was retained or routed and in->ack (if any) is marked failed;
 * the caller answers (MQTT closes, HTTP 503) and drains the ring. The ack
 * entry stays where it is for the whole call: completions are deferred
 * (vg_server_complete), so nothing drains or grows the ring meanwhile. */
int gw_publish_in(worker_t *w, conn_t *c, const gw_inpub_t *in);
void gw_send_ack(worker_t *w, conn_t *c, uint8_t type, uint16_t pid, uint8_t reason);
void gw_acks_drain(worker_t *w, conn_t *c);
ack_t *gw_acks_push(conn_t *c, uint16_t pid, uint8_t type, uint8_t pending);
void gw_complete_local(worker_t *w, uint64_t token, int status);
void gw_handle_publish(worker_t *w, conn_t *c, uint8_t flags, const uint8_t *body, size_t len);

/* ---- connect.c ---- */
void gw_handle_packet(worker_t *w, conn_t *c, uint8_t type, uint8_t flags, const uint8_t *body, size_t len);
void gw_conn_detach(worker_t *w, conn_t *c);
void gw_takeover_item(worker_t *w, uint64_t old, uint64_t waiter);
void gw_takeover_resume(worker_t *w, uint64_t tok);

/* ---- http_transport.c ---- */
void gw_http_respond(worker_t *w, conn_t *c, int status, const char *body);
void gw_http_publish_done(worker_t *w, conn_t *c, bool failed);
void gw_http_input(worker_t *w, conn_t *c);

#endif
