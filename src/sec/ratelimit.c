/* ratelimit.c — see ratelimit.h. Owns the token bucket arithmetic, the
 * two bounded tables (sources, client ids) with their eviction rule, the
 * failure score and its delays, and the keyed hash (SipHash-2-4, written
 * from Aumasson and Bernstein's paper, "SipHash: a fast short-input PRF",
 * 2012, and checked against its test vector in test_ratelimit).
 *
 * Time is the caller's monotonic milliseconds truncated to 32 bits: every
 * interval is computed as an unsigned difference, so the wrap every 49 days
 * is harmless; an entry idle for longer than that merely looks recent. */
#include "sec/ratelimit.h"

#include "core/alloc.h"
#include "core/err.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#define WAYS 4
#define TOKEN 1000u /* one token, in thousandths */
/* The failure score stops growing this far past the burst: the delay is
 * capped long before, and the score must drain in a bounded time. */
#define FAIL_HEADROOM (64u * TOKEN)
#define RATE_MAX 4000000.0

typedef struct {
    uint64_t key; /* 0: empty */
    uint32_t seen_ms;
    uint32_t conns;        /* open connections (sources only) */
    vg_rl_bucket_t bucket; /* new connections (sources only) */
    uint32_t fail_m;       /* failure score, thousandths */
    uint32_t fail_ms;      /* when fail_m was last drained */
} slot_t;

typedef struct {
    slot_t *slots;
    size_t groups_mask; /* groups - 1 (a power of two) */
    uint64_t seed[2];
} table_t;

struct vg_rl {
    vg_rl_config_t cfg;
    vg_rl_rate_t conn, pub;
    uint32_t fail_mps, fail_burst_m;
    table_t src, cid;
    bool locked;
    pthread_mutex_t mu;
    atomic_uint_fast64_t conn_rate_refused, conn_max_refused, table_full_refused;
    atomic_uint_fast64_t auth_failures, auth_delayed, publish_refused, evictions;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                       \
    do {                                                                                                               \
        v0 += v1;                                                                                                      \
        v1 = ROTL(v1, 13);                                                                                             \
        v1 ^= v0;                                                                                                      \
        v0 = ROTL(v0, 32);                                                                                             \
        v2 += v3;                                                                                                      \
        v3 = ROTL(v3, 16);                                                                                             \
        v3 ^= v2;                                                                                                      \
        v0 += v3;                                                                                                      \
        v3 = ROTL(v3, 21);                                                                                             \
        v3 ^= v0;                                                                                                      \
        v2 += v1;                                                                                                      \
        v1 = ROTL(v1, 17);                                                                                             \
        v1 ^= v2;                                                                                                      \
        v2 = ROTL(v2, 32);                                                                                             \
    } while (0)

static uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

uint64_t vg_rl_siphash(const uint64_t key[2], const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t v0 = key[0] ^ 0x736f6d6570736575ull, v1 = key[1] ^ 0x646f72616e646f6dull;
    uint64_t v2 = key[0] ^ 0x6c7967656e657261ull, v3 = key[1] ^ 0x7465646279746573ull;
    uint64_t b = (uint64_t)n << 56, m;
    for (; n >= 8; p += 8, n -= 8) {
        m = load_le(p, 8);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    b |= load_le(p, n);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

vg_rl_rate_t vg_rl_rate(double per_sec, double burst)
{
    vg_rl_rate_t r = {0, 0};
    if (!(per_sec > 0))
        return r;
    if (per_sec > RATE_MAX)
        per_sec = RATE_MAX;
    if (!(burst >= 1))
        burst = 1;
    if (burst > RATE_MAX)
        burst = RATE_MAX;
    r.rate_mps = (uint32_t)(per_sec * TOKEN + 0.5);
    if (!r.rate_mps)
        r.rate_mps = 1;
    r.burst_m = (uint32_t)(burst * TOKEN + 0.5);
    return r;
}

void vg_rl_bucket_init(vg_rl_bucket_t *b, const vg_rl_rate_t *r, uint64_t now_ms)
{
    b->tokens_m = r->burst_m;
    b->last_ms = (uint32_t)now_ms;
}

/* The bucket's level at now (refilled), without changing it. */
static uint32_t level(const vg_rl_bucket_t *b, const vg_rl_rate_t *r, uint32_t now, bool *advanced)
{
    uint32_t elapsed = now - b->last_ms;
    uint64_t add = (uint64_t)elapsed * r->rate_mps / 1000;
    uint64_t t = b->tokens_m + add;
    *advanced = add > 0;
    return t > r->burst_m ? r->burst_m : (uint32_t)t;
}

uint32_t vg_rl_bucket_take(vg_rl_bucket_t *b, const vg_rl_rate_t *r, uint64_t now_ms)
{
    bool adv;
    if (!r->rate_mps)
        return 0;
    uint32_t now = (uint32_t)now_ms, t = level(b, r, now, &adv);
    /* Time that has not yet earned a thousandth is kept, not lost, so slow
     * rates still refill. */
    if (adv) {
        b->tokens_m = t;
        b->last_ms = now;
    }
    if (t >= TOKEN) {
        b->tokens_m = t - TOKEN;
        return 0;
    }
    uint64_t ms = ((uint64_t)(TOKEN - t) * 1000 + r->rate_mps - 1) / r->rate_mps;
    return ms ? (ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms) : 1;
}

/* The failure score drained to now. */
static uint32_t fail_level(const vg_rl_t *rl, const slot_t *s, uint32_t now, bool *advanced)
{
    uint64_t sub = (uint64_t)(uint32_t)(now - s->fail_ms) * rl->fail_mps / 1000;
    *advanced = sub > 0;
    return sub >= s->fail_m ? 0 : s->fail_m - (uint32_t)sub;
}

/* Whether forgetting s loses nothing: no open connection, its bucket full
 * again, its failures forgiven. */
static bool idle(const vg_rl_t *rl, const slot_t *s, uint32_t now)
{
    bool adv;
    if (s->conns)
        return false;
    if (rl->conn.rate_mps && level(&s->bucket, &rl->conn, now, &adv) < rl->conn.burst_m)
        return false;
    return fail_level(rl, s, now, &adv) == 0;
}

/* The key of a source address: family and address, IPv6 masked to the
 * configured prefix, IPv4-mapped IPv6 as IPv4. */
static uint64_t addr_key(const vg_rl_t *rl, const struct sockaddr *sa)
{
    unsigned char k[17] = {0};
    size_t n = 1;
    if (sa && sa->sa_family == AF_INET) {
        k[0] = 4;
        memcpy(k + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        n = 5;
    } else if (sa && sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(a, mapped, 12)) {
            k[0] = 4;
            memcpy(k + 1, a + 12, 4);
            n = 5;
        } else {
            unsigned bits = rl->cfg.v6_prefix;
            k[0] = 6;
            for (unsigned i = 0; i < 16; i++) {
                unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
                k[1 + i] = (unsigned char)(a[i] & (0xff00u >> keep));
            }
            n = 17;
        }
    }
    /* Any other family (a Unix socket) is one source. */
    uint64_t h = vg_rl_siphash(rl->src.seed, k, n);
    return h ? h : 1;
}

static uint64_t cid_key(const vg_rl_t *rl, const char *id, size_t len)
{
    uint64_t h = vg_rl_siphash(rl->cid.seed, id, len);
    return h ? h : 1;
}

/* Finds key in t, or (insert) gives it a slot by the rule in ratelimit.h;
 * NULL when not found, or when every slot of its group has open
 * connections. */
static slot_t *lookup(vg_rl_t *rl, table_t *t, uint64_t key, bool insert, uint32_t now)
{
    slot_t *g = &t->slots[((size_t)key & t->groups_mask) * WAYS]; /* SipHash: every bit is as good */
    slot_t *victim = NULL, *busy = NULL;
    for (int i = 0; i < WAYS; i++) {
        if (g[i].key == key) {
            g[i].seen_ms = now;
            return &g[i];
        }
    }
    if (!insert)
        return NULL;
    for (int i = 0; i < WAYS && !(victim && !victim->key); i++) {
        slot_t *s = &g[i];
        if (!s->key) {
            victim = s;
        } else if (idle(rl, s, now)) {
            if (!victim || (victim->key && (uint32_t)(now - s->seen_ms) > (uint32_t)(now - victim->seen_ms)))
                victim = s;
        } else if (!s->conns && (!busy || (uint32_t)(now - s->seen_ms) > (uint32_t)(now - busy->seen_ms))) {
            busy = s;
        }
    }
    if (!victim && busy) {
        victim = busy;
        atomic_fetch_add_explicit(&rl->evictions, 1, memory_order_relaxed);
    }
    if (!victim)
        return NULL;
    memset(victim, 0, sizeof *victim);
    victim->key = key;
    victim->seen_ms = now;
    victim->fail_ms = now;
    victim->bucket.tokens_m = rl->conn.burst_m;
    victim->bucket.last_ms = now;
    return victim;
}

static void lock(vg_rl_t *rl)
{
    if (rl->locked)
        pthread_mutex_lock(&rl->mu);
}

static void unlock(vg_rl_t *rl)
{
    if (rl->locked)
        pthread_mutex_unlock(&rl->mu);
}

static int table_init(table_t *t, size_t entries, const uint64_t seed[2])
{
    size_t n = WAYS;
    while (n < entries)
        n *= 2;
    if (!(t->slots = vg_calloc(VG_MEM_SEC, n, sizeof(slot_t))))
        return VG_ENOMEM;
    t->groups_mask = n / WAYS - 1;
    if (seed[0] || seed[1]) {
        t->seed[0] = seed[0];
        t->seed[1] = seed[1];
    } else if (getrandom(t->seed, sizeof t->seed, 0) != (ssize_t)sizeof t->seed) {
        return VG_EIO;
    }
    return VG_OK;
}

int vg_rl_new(const vg_rl_config_t *cfg, vg_rl_t **out)
{
    int rc = VG_OK;
    vg_rl_t *rl;
    *out = NULL;
    if (!cfg || cfg->conn_per_sec > RATE_MAX || cfg->pub_per_sec > RATE_MAX || cfg->fail_per_sec > RATE_MAX ||
        cfg->fail_burst > RATE_MAX || cfg->fail_burst < 0 || cfg->v6_prefix > 128)
        return VG_EINVAL;
    if (!(rl = vg_calloc(VG_MEM_SEC, 1, sizeof *rl)))
        return VG_ENOMEM;
    rl->cfg = *cfg;
    if (!rl->cfg.entries)
        rl->cfg.entries = 8192;
    if (!rl->cfg.v6_prefix)
        rl->cfg.v6_prefix = 64;
    if (!rl->cfg.fail_delay_max_ms)
        rl->cfg.fail_delay_max_ms = 30000;
    rl->conn = vg_rl_rate(cfg->conn_per_sec, cfg->conn_burst);
    rl->pub = vg_rl_rate(cfg->pub_per_sec, cfg->pub_burst);
    rl->fail_mps = (uint32_t)(cfg->fail_per_sec * TOKEN + 0.5);
    rl->fail_burst_m = (uint32_t)(cfg->fail_burst * TOKEN + 0.5);
    uint64_t seed2[2] = {cfg->seed[0] ^ 0x5bd1e9955bd1e995ull, cfg->seed[1] + 1};
    if ((rc = table_init(&rl->src, rl->cfg.entries, cfg->seed)) != VG_OK ||
        (rc = table_init(&rl->cid, rl->cfg.entries, cfg->seed[0] || cfg->seed[1] ? seed2 : cfg->seed)) != VG_OK)
        goto fail;
    if (cfg->shared) {
        if (pthread_mutex_init(&rl->mu, NULL) != 0) {
            rc = VG_EIO;
            goto fail;
        }
        rl->locked = true;
    }
    *out = rl;
    return VG_OK;
fail:
    vg_free(rl->src.slots);
    vg_free(rl->cid.slots);
    vg_free(rl);
    return rc;
}

void vg_rl_free(vg_rl_t *rl)
{
    if (!rl)
        return;
    if (rl->locked)
        pthread_mutex_destroy(&rl->mu);
    vg_free(rl->src.slots);
    vg_free(rl->cid.slots);
    vg_free(rl);
}

vg_rl_verdict_t vg_rl_connect(vg_rl_t *rl, const struct sockaddr *src, uint64_t now_ms)
{
    uint32_t now = (uint32_t)now_ms;
    vg_rl_verdict_t v = VG_RL_OK;
    if (!rl->conn.rate_mps && !rl->cfg.max_conns_per_source)
        return VG_RL_OK; /* nothing to count: no table work either */
    uint64_t key = addr_key(rl, src);
    lock(rl);
    slot_t *s = lookup(rl, &rl->src, key, true, now);
    if (!s)
        v = VG_RL_TABLE_FULL;
    else if (rl->cfg.max_conns_per_source && s->conns >= rl->cfg.max_conns_per_source)
        v = VG_RL_CONN_MAX;
    else if (vg_rl_bucket_take(&s->bucket, &rl->conn, now) != 0)
        v = VG_RL_CONN_RATE;
    else
        s->conns++;
    unlock(rl);
    if (v == VG_RL_TABLE_FULL)
        atomic_fetch_add_explicit(&rl->table_full_refused, 1, memory_order_relaxed);
    else if (v == VG_RL_CONN_MAX)
        atomic_fetch_add_explicit(&rl->conn_max_refused, 1, memory_order_relaxed);
    else if (v == VG_RL_CONN_RATE)
        atomic_fetch_add_explicit(&rl->conn_rate_refused, 1, memory_order_relaxed);
    return v;
}

void vg_rl_disconnect(vg_rl_t *rl, const struct sockaddr *src, uint64_t now_ms)
{
    if (!rl->conn.rate_mps && !rl->cfg.max_conns_per_source)
        return;
    uint64_t key = addr_key(rl, src);
    lock(rl);
    /* Never evicted while it has connections, so it is there. */
    slot_t *s = lookup(rl, &rl->src, key, false, (uint32_t)now_ms);
    if (s && s->conns)
        s->conns--;
    unlock(rl);
}

/* Adds one failure to s and returns the delay its score calls for. */
static uint32_t fail_add(vg_rl_t *rl, slot_t *s, uint32_t now)
{
    bool adv;
    uint32_t f = fail_level(rl, s, now, &adv);
    if (adv || !s->fail_m)
        s->fail_ms = now;
    f += TOKEN;
    if (f > rl->fail_burst_m + FAIL_HEADROOM)
        f = rl->fail_burst_m + FAIL_HEADROOM;
    s->fail_m = f;
    if (f <= rl->fail_burst_m || !rl->cfg.fail_delay_ms)
        return 0;
    uint32_t k = (f - rl->fail_burst_m + TOKEN - 1) / TOKEN; /* failures past the burst, >= 1 */
    uint64_t d = k - 1 >= 32 ? UINT64_MAX : (uint64_t)rl->cfg.fail_delay_ms << (k - 1);
    return d > rl->cfg.fail_delay_max_ms ? rl->cfg.fail_delay_max_ms : (uint32_t)d;
}

uint32_t vg_rl_auth_failed(vg_rl_t *rl, const struct sockaddr *src, const char *client_id, size_t len, uint64_t now_ms)
{
    uint32_t now = (uint32_t)now_ms, d = 0, dc = 0;
    uint64_t ks = addr_key(rl, src), kc = client_id && len ? cid_key(rl, client_id, len) : 0;
    lock(rl);
    slot_t *s = lookup(rl, &rl->src, ks, true, now);
    if (s)
        d = fail_add(rl, s, now);
    if (kc && (s = lookup(rl, &rl->cid, kc, true, now)))
        dc = fail_add(rl, s, now);
    unlock(rl);
    if (dc > d)
        d = dc;
    atomic_fetch_add_explicit(&rl->auth_failures, 1, memory_order_relaxed);
    if (d)
        atomic_fetch_add_explicit(&rl->auth_delayed, 1, memory_order_relaxed);
    return d;
}

void vg_rl_auth_succeeded(vg_rl_t *rl, const char *client_id, size_t len, uint64_t now_ms)
{
    if (!client_id || !len)
        return;
    uint64_t kc = cid_key(rl, client_id, len);
    lock(rl);
    slot_t *s = lookup(rl, &rl->cid, kc, false, (uint32_t)now_ms);
    if (s)
        s->fail_m = 0;
    unlock(rl);
}

void vg_rl_publish_init(const vg_rl_t *rl, vg_rl_bucket_t *b, uint64_t now_ms)
{
    vg_rl_bucket_init(b, &rl->pub, now_ms);
}

uint32_t vg_rl_publish(vg_rl_t *rl, vg_rl_bucket_t *b, uint64_t now_ms)
{
    uint32_t ms = vg_rl_bucket_take(b, &rl->pub, now_ms);
    if (ms)
        atomic_fetch_add_explicit(&rl->publish_refused, 1, memory_order_relaxed);
    return ms;
}

void vg_rl_stats(const vg_rl_t *rl, vg_rl_stats_t *out)
{
    vg_rl_t *m = (vg_rl_t *)rl; /* atomics are read, not changed */
    out->conn_rate_refused = atomic_load_explicit(&m->conn_rate_refused, memory_order_relaxed);
    out->conn_max_refused = atomic_load_explicit(&m->conn_max_refused, memory_order_relaxed);
    out->table_full_refused = atomic_load_explicit(&m->table_full_refused, memory_order_relaxed);
    out->auth_failures = atomic_load_explicit(&m->auth_failures, memory_order_relaxed);
    out->auth_delayed = atomic_load_explicit(&m->auth_delayed, memory_order_relaxed);
    out->publish_refused = atomic_load_explicit(&m->publish_refused, memory_order_relaxed);
    out->evictions = atomic_load_explicit(&m->evictions, memory_order_relaxed);
}

const char *vg_rl_verdict_name(vg_rl_verdict_t v)
{
    switch (v) {
    case VG_RL_OK:
        return "ok";
    case VG_RL_CONN_RATE:
        return "connection_rate";
    case VG_RL_CONN_MAX:
        return "connections_per_source";
    case VG_RL_TABLE_FULL:
        return "source_table_full";
    }
    return "?";
}
