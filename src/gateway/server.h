/* server.h — the MQTT 3.1.1 + 5.0 server: listeners, I/O workers,
 * connections, the protocol state machine, sessions (persistent across
 * restarts), retained messages, wills, subscriptions and message routing.
 *
 * Threads: `workers` I/O threads, each with its own epoll loop watching the
 * one listening socket (EPOLLEXCLUSIVE); a connection lives on one worker for its
 * whole life. Other threads (the stream committers, processors, the stats
 * timer) talk to workers only through the thread-safe calls below, which
 * post to a worker's inbox and wake it with an eventfd.
 *
 * The gateway knows nothing of the application: it learns about
 * application topics through a hook table (vg_server_hook_t, filled in by
 * app/serve.c: telemetry ingest, alert acknowledgements). A PUBLISH whose
 * topic matches a hook's filter is handed to it; for QoS 1/2 the
 * acknowledgement is held back until the hook's owner calls
 * vg_server_complete with the token it was given (for ingest: once the
 * record is durable). Acknowledgements on a connection always go out in the
 * order the PUBLISHes came in (MQTT 3.1.1 §4.6), whatever order completions
 * arrive in.
 *
 * Durability of gateway state: persistent sessions (3.1.1 clean session 0,
 * 5.0 session expiry > 0), their subscriptions, their queued and in-flight
 * QoS 1/2 messages, inbound QoS 2 packet ids and retained messages are
 * written to a SQLite store (store/kv) at state_path. A QoS 1/2 PUBLISH is
 * acknowledged only once every copy it caused to be stored (a queued copy
 * for an offline session, a retained message) is durable. */
#ifndef VG_GATEWAY_SERVER_H
#define VG_GATEWAY_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vg_server vg_server_t;

/* Why a connection was closed; each reason is a counter. */
typedef enum {
    VG_CLOSE_CLIENT = 0,     /* DISCONNECT received */
    VG_CLOSE_PEER_CLOSED,    /* EOF without DISCONNECT */
    VG_CLOSE_MALFORMED,      /* undecodable packet */
    VG_CLOSE_TOO_LARGE,      /* packet over max_packet_size */
    VG_CLOSE_PROTOCOL,       /* well-formed but not allowed now */
    VG_CLOSE_KEEPALIVE,      /* nothing received within 1.5 x keepalive */
    VG_CLOSE_CONNECT_TIMEOUT,/* no CONNECT in time */
    VG_CLOSE_TAKEOVER,       /* same client id connected again */
    VG_CLOSE_IO,             /* socket error */
    VG_CLOSE_SLOW_CONSUMER,  /* output queue over its limit */
    VG_CLOSE_SHUTDOWN,       /* server stopping */
    VG_CLOSE_REJECTED,       /* CONNACK with a refusal code */
    VG_CLOSE_RECEIVE_MAX,    /* 5.0: more unacknowledged QoS>0 PUBLISHes than our receive maximum */
    VG_CLOSE_TOPIC_ALIAS,    /* 5.0: topic alias 0, over our maximum, or unknown */
    VG_CLOSE_DISCONNECT_WILL,/* 5.0: DISCONNECT with reason 0x04 (will published) */
    VG_CLOSE_SESSION_EXPIRED,/* admin/housekeeping */
    VG_CLOSE_WS_PROTOCOL,    /* WebSocket handshake or framing error */
    VG_CLOSE_HTTP_BAD_REQUEST,/* HTTP request refused (4xx/5xx with Connection: close) */
    VG_CLOSE_HTTP_DONE,      /* HTTP connection finished (Connection: close or idle) */
    VG_CLOSE_TLS,            /* TLS handshake failed or timed out, or the TLS session broke */
    VG_CLOSE_CERT_REFUSED,   /* the client certificate was refused (see vg_tls_fail_t) */
    VG_CLOSE_NOT_AUTHORIZED, /* a PUBLISH the policy denies (3.1.1, or 5.0 QoS 0: no ack to refuse it with) */
    VG_CLOSE_REVOKED,        /* the device was revoked, disabled or deleted while connected (vg_server_kick) */
    VG_CLOSE__COUNT
} vg_close_reason_t;

const char *vg_close_reason_name(vg_close_reason_t r);

/* Why a TLS handshake or its client certificate was refused; each is a
 * counter (tls_failures in the stats). */
typedef enum {
    VG_TLS_FAIL_HANDSHAKE = 0, /* protocol: version, ciphers, not TLS at all, broken record */
    VG_TLS_FAIL_TIMEOUT,       /* not finished within tls_handshake_timeout_ms */
    VG_TLS_FAIL_NO_CERT,       /* a client certificate is required and none was sent */
    VG_TLS_FAIL_EXPIRED,       /* the certificate's notAfter has passed */
    VG_TLS_FAIL_NOT_YET_VALID, /* its notBefore is in the future */
    VG_TLS_FAIL_UNKNOWN_CA,    /* it does not chain to a trusted CA */
    VG_TLS_FAIL_BAD_CERT,      /* any other verification failure (signature, purpose, ...) */
    VG_TLS_FAIL_REVOKED,       /* the certificate hook says revoked */
    VG_TLS_FAIL_UNKNOWN_DEVICE,/* the certificate hook knows no device for it */
    VG_TLS_FAIL__COUNT
} vg_tls_fail_t;

const char *vg_tls_fail_name(vg_tls_fail_t f);

/* A verified client certificate as the certificate hook sees it. */
typedef struct {
    const char *cn; /* subject common name, NUL-terminated; "" if none */
    size_t cn_len;
    uint8_t sha256[32];        /* of the certificate's DER encoding */
    uint8_t issuer_sha256[32]; /* of the certificate that signed it */
    bool issuer_known;
    int64_t not_after_ms;
    const void *x509;          /* the OpenSSL X509 (borrowed, valid during the call) */
} vg_server_cert_t;

/* Certificate hook: called on the I/O worker for every TLS connection whose
 * client certificate verified, during the handshake (full handshakes) and
 * again once it finished (resumed ones, whose certificate comes from the
 * session). Must not block (the registry answers from memory). Returns 0 to
 * accept, or VG_TLS_FAIL_REVOKED / VG_TLS_FAIL_UNKNOWN_DEVICE (as a
 * positive value) to refuse. */
typedef int (*vg_server_cert_fn)(void *ctx, const vg_server_cert_t *cert);

/* Called on the I/O worker for every refused TLS handshake (for the audit
 * log): why, the peer "ADDR:PORT", the certificate's CN ("" if none or not
 * known). Must not block. */
typedef void (*vg_server_tls_refused_fn)(void *ctx, vg_tls_fail_t why, const char *peer, const char *cn);

/* One inbound PUBLISH as a hook sees it (MQTT, WebSocket or HTTP). Every
 * pointer is valid only during the hook's call. */
typedef struct {
    const char *client_id; /* the publisher's client id; "http" for an HTTP publish */
    size_t client_id_len;
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    /* MQTT 5 user properties as their raw wire run of (0x26, key, value)
     * entries (vg_mqtt_user_props_next reads it), NULL/0 if none. */
    const uint8_t *user_props;
    size_t user_props_len;
    uint8_t qos;
    bool retain;
    int64_t arrival_ms; /* wall clock */
    /* Who sent it, as the auth hook said (vg_server_auth_fn); NULL when no
     * auth hook is set or the connection is anonymous. */
    const void *principal;
} vg_server_pub_t;

/* A hook: called on an I/O worker for every PUBLISH whose topic matches its
 * filter, before the message is retained and routed to subscribers. token
 * is 0 for QoS 0; otherwise the hook must call vg_server_complete(token,
 * status) exactly once, from any thread, when it is done with the message
 * (stored, or failed). A completion is never run inside the caller, not
 * even from the hook's own call on the worker's thread: it is deferred to
 * the owning worker (on that worker's thread without a wake-up or a system
 * call). Returns VG_OK when it took the message. A negative value refuses
 * it: the hook must then not complete the token, the message is neither
 * retained nor routed, and the publisher is told (MQTT: the connection
 * closes with VG_CLOSE_IO, so the client sends it again; HTTP: 503). */
typedef int (*vg_server_hook_fn)(void *ctx, const vg_server_pub_t *pub, uint64_t token);

/* Flush hook: called with the hook's ctx on an I/O worker before it sleeps,
 * once per loop iteration in which that hook ran on it, so that the stream
 * can commit that batch on the worker itself (vg_log_flush) and the
 * PUBACKs leave in the same iteration. */
typedef void (*vg_server_flush_fn)(void *ctx);

/* One entry of the hook table: a topic filter (wildcards allowed; a filter
 * without them is compared as a plain topic) and what to call. Every hook
 * whose filter matches is called, in table order. */
typedef struct {
    const char *filter;       /* copied by vg_server_new */
    vg_server_hook_fn fn;
    vg_server_flush_fn flush; /* NULL = none */
    void *ctx;
} vg_server_hook_t;

#define VG_SERVER_MAX_HOOKS 16

/* Stats hook: writes the current counters as JSON into buf, returns length. */
typedef size_t (*vg_server_stats_fn)(void *ctx, char *buf, size_t cap);

/* ---- authentication and authorization (the device registry and the
 * policies live in the application; the gateway asks) ---- */

/* Listener kinds as the auth hook sees them. */
typedef enum { VG_LISTEN_MQTT = 0, VG_LISTEN_WS, VG_LISTEN_HTTP } vg_listen_kind_t;

/* One CONNECT (or, for HTTP, one connection's first request) to
 * authenticate. Every pointer is valid only during the hook's call. */
typedef struct {
    uint64_t token;        /* names this request in vg_server_auth_done */
    const char *client_id; /* NULL for HTTP */
    size_t client_id_len;
    const char *username;  /* NULL = none */
    size_t username_len;
    const uint8_t *password; /* NULL = none; never logged */
    size_t password_len;
    const char *cert_cn;   /* the verified client certificate's CN, NULL = none */
    size_t cert_cn_len;
    const uint8_t *cert_sha256; /* its fingerprint, NULL = none */
    const uint8_t *issuer_sha256; /* the fingerprint of the CA that signed it, NULL = not known (resumed) */
    const void *cert;      /* the certificate (OpenSSL X509, borrowed during the call), NULL = none */
    const struct sockaddr *peer_addr; /* the peer's address (NULL if unknown) */
    vg_listen_kind_t listener;
    bool tls;
    bool loopback;         /* the peer's address is a loopback address */
    const char *peer;      /* "ADDR:PORT" of the peer */
    uint8_t protocol_level;/* 4 = 3.1.1, 5 = 5.0, 0 = HTTP */
} vg_server_auth_t;

/* The outcome of an authentication. */
typedef struct {
    int status;      /* 0 = accepted, else refused */
    void *principal; /* accepted: who it is (owned by the gateway from here: freed by principal_free) */
    uint8_t v3_rc;   /* refused: 3.1.1 CONNACK code (4 bad user name or password, 5 not authorized) */
    uint8_t v5_rc;   /* refused: 5.0 reason (0x86 bad user name or password, 0x87 not authorized, 0x8C bad auth) */
    const char *why; /* refused: reason string for the 5.0 CONNACK and the log (static, or valid until done) */
} vg_server_auth_result_t;

/* Auth hook: called on the I/O worker for every CONNECT. Either answers
 * at once (fills *res, returns 0) or, when the answer needs slow work (an
 * argon2id password hash, a deliberate delay after failures), returns
 * VG_AGAIN and later calls vg_server_auth_done(token, result) once, from
 * any thread; the CONNECT waits (its connection reads nothing meanwhile). */
typedef int (*vg_server_auth_fn)(void *ctx, const vg_server_auth_t *req, vg_server_auth_result_t *res);

typedef enum { VG_ACT_PUBLISH = 0, VG_ACT_SUBSCRIBE, VG_ACT_RECEIVE, VG_ACT_RETAIN } vg_server_action_t;

/* Authorization hook: may principal do action on topic (a topic filter for
 * subscribe)? Called on the I/O worker per packet, so it must answer from
 * memory without allocating (the policy engine's per-principal cache). */
typedef bool (*vg_server_authz_fn)(void *ctx, void *principal, vg_server_action_t action, const char *topic,
                                   size_t topic_len);
typedef void (*vg_server_principal_free_fn)(void *ctx, void *principal);

/* TLS listeners share one TLS context (net/tls.h), owned by the caller,
 * which may reload it while the server runs. */
struct vg_tls;

typedef struct {
    const char *listen_host;   /* "127.0.0.1" */
    uint16_t listen_port;      /* 1883 */
    const char *ws_host;       /* MQTT over WebSocket listener; NULL = none */
    uint16_t ws_port;          /* 8083 */
    const char *http_host;     /* HTTP publish listener; NULL = none */
    uint16_t http_port;        /* 8080 */
    /* TLS listeners (NULL host = none; each needs tls): MQTT over TLS,
     * MQTT over secure WebSocket, HTTPS publish. */
    const char *mqtts_host;    /* 8883 */
    uint16_t mqtts_port;
    const char *wss_host;      /* 8084 */
    uint16_t wss_port;
    const char *https_host;    /* 8443 */
    uint16_t https_port;
    struct vg_tls *tls;        /* borrowed; must outlive the server */
    uint32_t tls_handshake_timeout_ms; /* a handshake not finished by then is closed (5000) */
    vg_server_cert_fn cert_check; /* NULL = every verified certificate is accepted */
    vg_server_tls_refused_fn tls_refused; /* NULL = none */
    void *cert_ctx;               /* of cert_check and tls_refused */
    /* Rate limits (sec/ratelimit.h, shared ones; borrowed): per source
     * address on accept (connection rate, open connections), and publishes
     * per connection (reading waits: backpressure). NULL = none. */
    struct vg_rl *rl_conn;
    struct vg_rl *rl_publish;
    /* Authentication (NULL = everyone is accepted, anonymous) and
     * authorization (NULL = everything allowed) of every connection. */
    vg_server_auth_fn auth;
    uint32_t auth_timeout_ms;  /* a CONNECT waiting for an answer the auth hook owes is closed after this (35000:
                                  above the longest deliberate delay of a refusal) */
    vg_server_authz_fn authz;
    vg_server_principal_free_fn principal_free;
    void *auth_ctx;
    uint32_t workers;          /* I/O threads; 0 = one per core */
    size_t max_packet_size;    /* 131072 */
    uint32_t max_connections;  /* all listeners together; 0 = derived from the fd limit */
    uint32_t max_connections_ws;   /* WebSocket listener alone; 0 = only the global limit */
    uint32_t max_connections_http; /* HTTP listener alone; 0 = only the global limit */
    uint32_t max_inflight;     /* unacknowledged QoS 1 PUBLISHes per connection before reading pauses */
    uint32_t max_subs_per_packet; /* topic filters in one SUBSCRIBE/UNSUBSCRIBE; more closes (too_large) */
    size_t max_outbuf;         /* soft limit of the bytes queued to one client: over it QoS 0 PUBLISHes to it are
                                  shed and QoS 1/2 ones wait in its session queue (see gateway/conn.c, "slow consumers") */
    uint32_t slow_consumer_ms; /* a client whose output stays over max_outbuf this long is disconnected (30000) */
    uint32_t connect_timeout_ms;
    /* Lingering close: after a final answer the server initiated (a 5.0
     * DISCONNECT with a reason, a refusing CONNACK, a WebSocket close frame,
     * an HTTP error answer) the output is flushed, the sending side shut
     * down, and input read and thrown away for up to linger_ms or
     * linger_bytes before the socket is closed, so that a client still
     * writing reads the answer instead of a reset. The session and client id
     * are released when lingering starts. 0 ms = close at once. */
    uint32_t linger_ms;        /* 2000 */
    size_t linger_bytes;       /* 1 MiB */
    uint32_t max_keepalive_s;  /* 0 = accept what clients ask */
    uint32_t max_inflight_out; /* unacknowledged QoS 1/2 PUBLISHes we send one client (5.0: also <= its receive maximum) */
    uint32_t max_queued_per_client; /* queued messages per session beyond the in-flight window; overflow dropped and counted */
    size_t max_queued_bytes;   /* global memory budget of every session queue; overflow dropped and counted */
    uint16_t topic_alias_max;  /* 5.0: topic aliases we accept per connection (0 = none) */
    uint32_t max_session_expiry_s; /* cap on a session's expiry interval; 0 = no cap (3.1.1 persistent sessions never expire) */
    size_t max_retained;       /* retained messages; 0 = unlimited */
    size_t max_retained_bytes; /* 0 = unlimited */
    const char *state_path;    /* SQLite file for sessions and retained messages; NULL = in memory only */
    uint32_t state_commit_us;  /* store group-commit gather window */
    size_t state_max_pending_bytes; /* store writes queued at most (0 = the store's default, 64 MiB) */
    /* The hook table (see vg_server_hook_t), copied by vg_server_new; at
     * most VG_SERVER_MAX_HOOKS entries, each filter valid (VG_EINVAL). */
    const vg_server_hook_t *hooks;
    uint32_t nhooks;
    vg_server_stats_fn stats;
    void *stats_ctx;
} vg_server_opts_t;

void vg_server_opts_default(vg_server_opts_t *o);

/* Creates the server and binds its listeners (so a port in use fails here).
 * Does not start threads. *out is owned by the caller: vg_server_free. */
int vg_server_new(const vg_server_opts_t *opts, vg_server_t **out);
/* Starts the worker threads. */
int vg_server_start(vg_server_t *s);
/* Stops accepting new connections and reading from existing ones (so no new
 * work arrives) while still delivering completions and output. Returns once
 * every worker has done so. Call before flushing the stream at shutdown. */
void vg_server_quiesce(vg_server_t *s);
/* Stops accepting, closes every connection after flushing what is queued,
 * joins the workers. Safe to call once after start. */
void vg_server_stop(vg_server_t *s);
void vg_server_free(vg_server_t *s);

/* Thread-safe: the answer to an auth hook that returned VG_AGAIN. The
 * principal (if accepted) is the gateway's from here, also when the
 * connection is gone by then (it is freed at once). */
void vg_server_auth_done(vg_server_t *s, uint64_t token, const vg_server_auth_result_t *res);

/* Thread-safe: closes the connection of client id[0..len), if one is
 * attached to its session (5.0: DISCONNECT 0x87 first), counted as
 * VG_CLOSE_REVOKED. Returns true if there was one. */
bool vg_server_kick(vg_server_t *s, const char *id, size_t len);

/* Thread-safe: reports the outcome of a hook token (see vg_server_hook_fn). */
void vg_server_complete(vg_server_t *s, uint64_t token, int status);

/* Thread-safe: publishes a message from the server itself (alerts, stats) to
 * every matching subscriber at min(qos, subscription QoS). */
int vg_server_publish(vg_server_t *s, const char *topic, size_t topic_len, const void *payload, size_t payload_len,
                      uint8_t qos);

typedef struct {
    uint64_t connections_current;
    uint64_t connections_total;
    uint64_t connections_refused;
    uint64_t closes[VG_CLOSE__COUNT];
    uint64_t publish_received;
    uint64_t publish_sent;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t subscriptions;
    uint64_t read_pauses;     /* times a connection's reading paused on its inflight limit */
    uint64_t sessions;        /* sessions known (online + offline persistent) */
    uint64_t sessions_persistent_offline;
    uint64_t queued;          /* messages queued in sessions (offline or beyond the window) */
    uint64_t queued_bytes;
    uint64_t queue_dropped_client; /* dropped: per-client queue limit */
    uint64_t queue_dropped_global; /* dropped: global queue budget */
    uint64_t expired_dropped;      /* messages whose expiry passed before delivery */
    uint64_t too_large_dropped;    /* messages over a client's maximum packet size */
    uint64_t dropped_qos0_outbuf;  /* QoS 0 deliveries shed: the subscriber's output was over max_outbuf */
    uint64_t deferred_outbuf;      /* QoS 1/2 deliveries held in the session queue for the same reason */
    uint64_t qos2_duplicates;      /* retransmitted QoS 2 PUBLISHes not routed again */
    uint64_t wills_published;
    uint64_t retained;             /* retained messages held */
    uint64_t retained_rejected;    /* retained messages refused by the limits */
    uint64_t store_errors;         /* state store writes refused (backpressure or failure) */
    uint64_t ws_connections;       /* WebSocket handshakes accepted */
    uint64_t http_requests;        /* HTTP requests answered */
    uint64_t http_errors;          /* HTTP requests answered with 4xx/5xx */
    /* The state store (gateway.db): -1 = none (in memory), else VG_KV_OK /
     * VG_KV_DISK_FULL / VG_KV_FAILED (store/kv.h), and its queue. */
    int store_state;
    uint64_t store_pending_ops, store_disk_full_pauses, store_disk_full_retries, store_disk_full_ms;
    uint64_t lingering;            /* connections lingering now (not in connections_current) */
    uint64_t linger_closes;        /* connections that lingered before closing */
    uint64_t linger_deadline;      /* ... closed at the deadline (the peer never closed its side) */
    uint64_t linger_overflow;      /* ... closed early: the peer sent more than linger_bytes */
    uint64_t tls_handshakes;       /* TLS handshakes completed */
    uint64_t tls_resumed;          /* ... of them resumed (ticket or session id) */
    uint64_t tls_alpn_mqtt;        /* ... that chose MQTT by ALPN on a WebSocket or HTTPS listener */
    uint64_t tls_failures[VG_TLS_FAIL__COUNT];
    uint64_t auth_accepted, auth_refused; /* CONNECTs (and HTTP connections) the auth hook answered */
    uint64_t denied[4];                   /* per vg_server_action_t: packets the authz hook refused */
    uint64_t rate_refused;                /* connections refused by the per-source limits */
    uint64_t publish_throttled;           /* times a connection's reading waited for its publish rate */
} vg_server_stats_t;

void vg_server_stats(vg_server_t *s, vg_server_stats_t *out);

#endif
