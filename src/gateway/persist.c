/* persist.c — the gateway's state store (SQLite through store/kv): the
 * wrappers that count refusals (KV_REFUSED), the value formats of sessions
 * and queued messages (documented where written), mirroring a persistent
 * session's changes, the acknowledgements waiting for store durability,
 * and loading everything back at start-up. The store's on-disk layout is
 * documented in store/kv.c. */
#include "gateway/gw.h"

/* Every store write goes through here so a refusal is counted once. Returns
 * the write's sequence number, 0 when there is no store, KV_REFUSED when it
 * refused. */
uint64_t gw_kv_put(struct vg_server *s, uint8_t ns, const void *key, size_t klen, uint64_t sub, const void *val,
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

uint64_t gw_kv_del(struct vg_server *s, uint8_t ns, const void *key, size_t klen, uint64_t sub)
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

uint64_t gw_kv_del_key(struct vg_server *s, uint8_t ns, const void *key, size_t klen)
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
uint64_t gw_out_persist(struct vg_server *s, session_t *se, out_t *e)
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
    uint64_t seq = gw_kv_put(s, NS_OUT, se->id, se->id_len, e->kvsub, b, n);
    if (b != stackbuf)
        vg_free(b);
    return seq;
}

void gw_out_unpersist(struct vg_server *s, session_t *se, out_t *e)
{
    if (e->kvsub) {
        gw_kv_del(s, NS_OUT, se->id, se->id_len, e->kvsub);
        e->kvsub = 0;
    }
}

/* Session metadata value: u8 version 1, u8 level, u32 expiry, i64 offline
 * since (wall ms, 0 = online at the time of writing), u32 nsubs, then per
 * subscription: u8 options, u32 subscription id, u16 filter length, filter.
 * All little-endian. Called with sess->mu held or before the session is
 * shared; reads subs, which only change under tree_lock by the owner. */
uint64_t gw_session_persist(struct vg_server *s, session_t *se)
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
    uint64_t seq = gw_kv_put(s, NS_SESSION, se->id, se->id_len, 0, b, o);
    vg_free(b);
    se->meta_dirty = false;
    return seq;
}

void gw_kv_wait(struct vg_server *s, uint64_t seq, uint64_t token)
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
void gw_on_kv_durable(void *ctx, uint64_t seq, int status)
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
        gw_kv_del_key(s, NS_SESSION, key, klen);
        gw_kv_del_key(s, NS_OUT, key, klen);
        gw_kv_del_key(s, NS_Q2IN, key, klen);
        return 0;
    }
    session_t *se = gw_session_new(key, klen);
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
        subent_t *e = gw_subent_new((const char *)b + o, fl);
        o += fl;
        if (!e)
            continue;
        e->opts = opts;
        e->sub_id = sid;
        e->sess = se;
        if (gw_session_reserve_sub(se) != VG_OK) {
            gw_subent_free(e);
            continue;
        }
        if (gw_subent_link(s, e) == VG_OK)
            gw_session_add_sub(se, e);
        else
            gw_subent_free(e);
    }
    if (vg_strmap_put(&s->ids, key, klen, (uint64_t)(uintptr_t)se, NULL) != VG_OK) {
        gw_session_unsubscribe_all(s, se);
        gw_session_unref(s, se);
        return VG_ENOMEM;
    }
    atomic_fetch_add_explicit(&s->st_sessions, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->st_offline, 1, memory_order_relaxed);
    if (expiry != EXPIRY_NEVER)
        gw_hk_push(s, se, HK_EXPIRE, off + (int64_t)expiry * 1000);
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
        gw_kv_del(l->s, NS_OUT, key, klen, sub);
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
    if (gw_outq_push(e.state == OUT_QUEUED ? &se->queue : &se->inflight, &e) != VG_OK) {
        vg_msg_unref(m);
        return VG_ENOMEM;
    }
    gw_queue_account(l->s, &e, +1);
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
        gw_kv_del(l->s, NS_Q2IN, key, klen, sub);
        return 0;
    }
    return gw_q2in_add(se, (uint16_t)sub);
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
        gw_kv_del(l->s, NS_RETAIN, key, klen, 0);
    vg_msg_unref(m);
    return 0;
}

int gw_load_state(struct vg_server *s)
{
    load_ctx_t l = {.s = s, .now = gw_now_wall_ms()};
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
