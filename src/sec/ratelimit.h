/* ratelimit.h — token buckets and bounded per-key tables for the gateway's
 * security limits: new connections per source address, concurrent
 * connections per source address, failed authentications per client id and
 * per source address (answered with a growing delay), and publishes per
 * connection.
 *
 * Owns: two fixed-size tables (source addresses, client ids), their keyed
 * hash, the refusal counters. Does not own: what a refusal means (the
 * gateway closes, delays the CONNACK or stops reading), the clock (callers
 * pass monotonic milliseconds, e.g. vg_clock_mono_ns() / 1000000), the
 * per-connection publish bucket (embedded in the connection).
 *
 * A token bucket holds up to `burst` tokens and gains `per_sec` a second;
 * an action takes one token or is refused. Tokens are counted in
 * thousandths, so rates down to 0.001 a second work.
 *
 * The tables: each is `entries` slots in groups of 4 (one hash picks the
 * group; a lookup or insertion looks at 4 slots: O(1)). A new key takes an
 * empty slot, else the least recently used slot that holds nothing worth
 * keeping (no open connection, bucket full again, failures forgiven), else
 * the least recently used slot without open connections (its rate state is
 * forgotten, which errs on the lenient side; counted in evictions). When all
 * 4 hold open connections, a new source is refused (VG_RL_TABLE_FULL):
 * forgetting a connection count would let a source exceed its maximum. The
 * hash is SipHash-2-4 with a random key per table, so that no one can choose
 * addresses or client ids that land in one group. IPv6 sources are keyed by
 * their first v6_prefix bits (default 64: one subscriber's network), IPv4
 * (and IPv4-mapped IPv6) by the whole address.
 *
 * Failed authentications: each failure adds 1 to a score kept per client id
 * and per source address, which drains at fail_per_sec. While a score is at
 * most fail_burst there is no delay; past it the delay is fail_delay_ms,
 * doubled for each further failure, at most fail_delay_max_ms; the larger of
 * the two keys' delays is returned. A success forgets the client id's
 * failures (not the source's: one valid account must not launder a guessing
 * source). Note that anyone can make a client id's failures grow, so the
 * delay is bounded and only delays: it never locks a client id out.
 *
 * Threads: a vg_rl_t is owned by one thread (each gateway worker keeps its
 * own: then every limit holds per worker, and a source spread over W workers
 * by the kernel's accept balancing can reach W times it), unless created with
 * shared set, when an internal mutex serialises the table operations so one
 * instance can serve all workers with exact limits; calls happen per
 * connection and per failed CONNECT, never per message. vg_rl_publish never
 * takes the mutex (the bucket is the connection's own). Counters are
 * atomic. */
#ifndef VG_SEC_RATELIMIT_H
#define VG_SEC_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* A rate in thousandths of a token: per second and capacity. rate_mps 0
 * means unlimited. */
typedef struct {
    uint32_t rate_mps; /* thousandths of a token added per second */
    uint32_t burst_m;  /* capacity, thousandths of a token */
} vg_rl_rate_t;

/* per_sec <= 0: unlimited. burst is at least 1 token, at most 4,000,000;
 * per_sec at most 4,000,000. */
vg_rl_rate_t vg_rl_rate(double per_sec, double burst);

/* A token bucket: 8 bytes, no allocation; embed it (e.g. one per
 * connection for publishes). */
typedef struct {
    uint32_t tokens_m; /* thousandths of a token */
    uint32_t last_ms;  /* when it was last refilled (truncated monotonic ms) */
} vg_rl_bucket_t;

/* Fills b to its capacity at now_ms. */
void vg_rl_bucket_init(vg_rl_bucket_t *b, const vg_rl_rate_t *r, uint64_t now_ms);
/* Takes one token: returns 0 if it was there, otherwise (refused) the
 * milliseconds until one will be (at least 1). An unlimited rate always
 * returns 0. */
uint32_t vg_rl_bucket_take(vg_rl_bucket_t *b, const vg_rl_rate_t *r, uint64_t now_ms);

typedef struct {
    double conn_per_sec, conn_burst; /* new connections per source (per_sec 0: no limit) */
    uint32_t max_conns_per_source;   /* concurrent connections per source (0: no limit) */
    double fail_per_sec, fail_burst; /* failures forgiven per second; failures before any delay */
    uint32_t fail_delay_ms;          /* the first delay (0: no delays) */
    uint32_t fail_delay_max_ms;      /* the largest (0: 30 s) */
    double pub_per_sec, pub_burst;   /* publishes per connection (per_sec 0: no limit) */
    uint32_t entries;                /* slots per table, rounded up to a power of two >= 4 (0: 8192) */
    unsigned v6_prefix;              /* bits of an IPv6 source that form its key (0: 64) */
    bool shared;                     /* used by several threads: lock the tables */
    uint64_t seed[2];                /* the hash key; both 0: random */
} vg_rl_config_t;

typedef enum {
    VG_RL_OK = 0,
    VG_RL_CONN_RATE,  /* too many new connections from this source */
    VG_RL_CONN_MAX,   /* too many open connections from this source */
    VG_RL_TABLE_FULL, /* no slot for this source (see above) */
} vg_rl_verdict_t;

typedef struct {
    uint64_t conn_rate_refused, conn_max_refused, table_full_refused;
    uint64_t auth_failures, auth_delayed; /* failures recorded; those answered with a delay */
    uint64_t publish_refused;
    uint64_t evictions; /* keys forgotten while they still held state */
} vg_rl_stats_t;

typedef struct vg_rl vg_rl_t;

/* Creates the limiter and its two tables (about 32 bytes per entry each).
 * *out is the caller's (vg_rl_free). VG_OK, VG_EINVAL (a rate out of
 * range), VG_ENOMEM, VG_EIO (no random seed). */
int vg_rl_new(const vg_rl_config_t *cfg, vg_rl_t **out);
void vg_rl_free(vg_rl_t *rl);

/* A new connection from src: checks the source's rate and its open
 * connections. VG_RL_OK counts it open (the caller then calls
 * vg_rl_disconnect once when it closes); any other verdict counts nothing
 * but the refusal. */
vg_rl_verdict_t vg_rl_connect(vg_rl_t *rl, const struct sockaddr *src, uint64_t now_ms);
/* A connection vg_rl_connect admitted has closed. */
void vg_rl_disconnect(vg_rl_t *rl, const struct sockaddr *src, uint64_t now_ms);

/* Records a failed authentication of client_id[0..len) (may be NULL/0:
 * only the source counts) from src and returns how long to hold the failed
 * CONNACK back, in ms (0: none). */
uint32_t vg_rl_auth_failed(vg_rl_t *rl, const struct sockaddr *src, const char *client_id, size_t len, uint64_t now_ms);
/* A successful authentication: forgets client_id's failures. */
void vg_rl_auth_succeeded(vg_rl_t *rl, const char *client_id, size_t len, uint64_t now_ms);

/* Fills a connection's publish bucket; then vg_rl_publish per PUBLISH:
 * 0 = go ahead, else refused (counted) and the ms until the next token. */
void vg_rl_publish_init(const vg_rl_t *rl, vg_rl_bucket_t *b, uint64_t now_ms);
uint32_t vg_rl_publish(vg_rl_t *rl, vg_rl_bucket_t *b, uint64_t now_ms);

void vg_rl_stats(const vg_rl_t *rl, vg_rl_stats_t *out);
/* "ok", "connection_rate", "connections_per_source", "source_table_full". */
const char *vg_rl_verdict_name(vg_rl_verdict_t v);

/* The tables' keyed hash, SipHash-2-4 of data[0..n) under key (exported
 * for its published test vector). */
uint64_t vg_rl_siphash(const uint64_t key[2], const void *data, size_t n);

#endif
