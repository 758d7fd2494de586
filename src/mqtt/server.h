/* server.h — the MQTT 3.1.1 server: listeners, I/O workers, connections,
 * the protocol state machine, subscriptions and message routing.
 *
 * Threads: `workers` I/O threads, each with its own epoll loop watching the
 * one listening socket (EPOLLEXCLUSIVE); a connection lives on one worker for its
 * whole life. Other threads (the stream committers, processors, the stats
 * timer) talk to workers only through the thread-safe calls below, which
 * post to a worker's inbox and wake it with an eventfd.
 *
 * Publishes on the telemetry topic are handed to the ingest hook, which takes
 * responsibility for them; for QoS 1 the PUBACK is held back until the hook's
 * owner calls vg_server_complete with the token it was given (once the record
 * is durable). PUBACKs on a connection always go out in the order the
 * PUBLISHes came in (MQTT 3.1.1 §4.6), whatever order completions arrive in. */
#ifndef VG_MQTT_SERVER_H
#define VG_MQTT_SERVER_H

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
    VG_CLOSE__COUNT
} vg_close_reason_t;

const char *vg_close_reason_name(vg_close_reason_t r);

/* Ingest hook: called on an I/O worker for every PUBLISH whose topic equals
 * the telemetry topic. token is 0 for QoS 0; otherwise the hook must call
 * vg_server_complete(token, status) exactly once, from any thread, when the
 * message is safely stored (or failed). Payload and ids are only valid
 * during the call. Returns VG_OK when it took the message; a negative value
 * makes the server close the connection (VG_CLOSE_IO). */
typedef int (*vg_server_ingest_fn)(void *ctx, const char *client_id, size_t client_id_len, const uint8_t *payload,
                                   size_t payload_len, int64_t arrival_ms, uint64_t token);

/* Stats hook: writes the current counters as JSON into buf, returns length. */
typedef size_t (*vg_server_stats_fn)(void *ctx, char *buf, size_t cap);

typedef struct {
    const char *listen_host;   /* "127.0.0.1" */
    uint16_t listen_port;      /* 1883 */
    uint32_t workers;          /* I/O threads; 0 = one per core */
    size_t max_packet_size;    /* 131072 */
    uint32_t max_connections;  /* 0 = derived from the fd limit */
    uint32_t max_inflight;     /* unacknowledged QoS 1 PUBLISHes per connection before reading pauses */
    uint32_t max_subs_per_packet; /* topic filters in one SUBSCRIBE/UNSUBSCRIBE; more closes (too_large) */
    size_t max_outbuf;         /* bytes queued to one client before it is a slow consumer */
    uint32_t connect_timeout_ms;
    uint32_t max_keepalive_s;  /* 0 = accept what clients ask */
    const char *telemetry_topic;
    vg_server_ingest_fn ingest;
    void *ingest_ctx;
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

/* Thread-safe: reports the outcome of an ingest token. */
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
} vg_server_stats_t;

void vg_server_stats(vg_server_t *s, vg_server_stats_t *out);

#endif
