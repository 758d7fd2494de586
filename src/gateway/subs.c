/* subs.c — subscriptions: the (session, filter) entries kept in the topic
 * tree, shared subscription groups ($share/<g>/<filter>), each session's
 * own list and filter index, SUBSCRIBE / UNSUBSCRIBE, and the replay of
 * retained messages after a SUBACK.
 * Does not own: the topic tree (mqtt/topic.c) or the retained store
 * (mqtt/retain.c), which it only calls. */
#include "gateway/gw.h"
#include "core/hash.h"
#include "core/set.h"

/* A subscription entry with its filter stored inline (one allocation). */
subent_t *gw_subent_new(const char *f, size_t fl)
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

void gw_subent_free(subent_t *e)
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
int gw_subent_link(struct vg_server *s, subent_t *e)
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
void gw_session_unsubscribe_all(struct vg_server *s, session_t *se)
{
    if (!se->nsubs)
        return;
    pthread_rwlock_wrlock(&s->tree_lock);
    for (uint32_t i = 0; i < se->nsubs; i++) {
        subent_unlink(s, se->subs[i]);
        gw_subent_free(se->subs[i]);
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

/* The index is a core/set table of subs[] pointers keyed by filter. */
typedef struct {
    const char *f;
    size_t fl;
} filter_key_t;
#define SUBIDX_EMPTY(e) ((e) == NULL)
#define SUBIDX_HASH(e) vg_hash_bytes((e)->filter, (e)->flen)
#define SUBIDX_MATCH(e, k) ((e)->flen == (k).fl && memcmp((e)->filter, (k).f, (k).fl) == 0)
VG_SET_DEFINE(subidx, subent_t *, filter_key_t, SUBIDX_EMPTY, SUBIDX_HASH, SUBIDX_MATCH)

static uint32_t subidx_slot(const session_t *se, const char *f, size_t fl)
{
    return (uint32_t)subidx_find(se->subidx, se->subidx_cap - 1, vg_hash_bytes(f, fl), (filter_key_t){f, fl});
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
        subidx_put(se->subidx, cap - 1, se->subs[j]);
    return true;
}

/* Room for one more subscription in subs[] (call before linking it). */
int gw_session_reserve_sub(session_t *se)
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
void gw_session_add_sub(session_t *se, subent_t *e)
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
    subidx_put(se->subidx, se->subidx_cap - 1, e);
}

static void session_remove_sub(session_t *se, subent_t *e)
{
    uint32_t j = e->idx;
    subent_t *last = se->subs[--se->nsubs];
    se->subs[j] = last;
    last->idx = j;
    if (!se->subidx)
        return;
    uint32_t hole = subidx_slot(se, e->filter, e->flen);
    if (se->subidx[hole] == e)
        subidx_delete(se->subidx, se->subidx_cap - 1, hole, NULL);
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
    gw_send_publish(w, c, m, 0, 0, false, false, NULL, 0);
    vg_msg_unref(m);
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

void gw_retained_batch_free(retained_batch_t *b)
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
void gw_retained_batch_send(worker_t *w, conn_t *c, retained_batch_t *b)
{
    session_t *se = c->sess;
    if (se && c->state == ST_ACTIVE) {
        pthread_mutex_lock(&se->mu);
        for (size_t d = 0; d < b->nrtd; d++) {
            for (size_t k = b->rtd[d].from; k < b->rtd[d].to && c->state == ST_ACTIVE; k++) {
                vg_msg_t *m = b->rl.v[k];
                uint8_t q = m->qos < b->rtd[d].qos ? m->qos : b->rtd[d].qos;
                uint32_t sid = b->rtd[d].sub_id;
                gw_session_send(w, c, se, m, q, true, sid ? &sid : NULL, sid ? 1 : 0, 0);
            }
        }
        pthread_mutex_unlock(&se->mu);
    }
    gw_retained_batch_free(b);
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

void gw_handle_subscribe(worker_t *w, conn_t *c, const uint8_t *body, size_t len, bool sub)
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
        gw_conn_close(w, c, r == VG_ELIMIT ? VG_CLOSE_TOO_LARGE : VG_CLOSE_MALFORMED);
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
                gw_subent_free(e);
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
        if (!gw_authorize(w, c, VG_ACT_SUBSCRIBE, subs[i].filter.p, fl)) {
            rcs[i] = v5 ? VG_RC_NOT_AUTHORIZED : VG_MQTT_SUBACK_FAILURE;
            continue;
        }
        if (shared > 0 && subs[i].no_local) {
            gw_conn_close_why(w, c, VG_CLOSE_PROTOCOL, "no local on a shared subscription");
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
            e = gw_session_reserve_sub(se) == VG_OK ? gw_subent_new(f, fl) : NULL;
            if (!e)
                continue;
            e->opts = opts;
            e->sub_id = sub_id;
            e->sess = se;
            pthread_rwlock_wrlock(&s->tree_lock);
            lr = gw_subent_link(s, e);
            pthread_rwlock_unlock(&s->tree_lock);
            if (lr == VG_OK)
                gw_session_add_sub(se, e);
            else
                gw_subent_free(e);
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
                vg_retain_match(s->retain, f, fl, gw_now_wall_ms(), collect_retained, &rb->rl, NULL);
                if (rb->rl.n > from)
                    rb->rtd[rb->nrtd++] = (struct rtd){from, rb->rl.n, qos, sub_id};
            }
        }
    }
    uint64_t seq = 0;
    if (changed && se->persistent) {
        pthread_mutex_lock(&se->mu);
        seq = gw_session_persist(s, se);
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
        ack_t *a = k > 0 ? gw_acks_push(c, pid, ACK_PKT, seq ? 1 : 0) : NULL;
        if (!a) {
            vg_free(buf);
            gw_conn_close(w, c, VG_CLOSE_IO);
            goto cleanup;
        }
        a->pkt = buf;
        a->pkt_len = (uint32_t)k;
        if (rb && rb->nrtd) {
            a->retained = rb;
            rb = NULL;
        }
        if (seq)
            gw_kv_wait(s, seq, TOK(w->id, c->slot, c->gen, pid));
        gw_acks_drain(w, c);
    } else {
        size_t cap = 16 + n;
        uint8_t *buf = gw_out_reserve(w, c, cap);
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
        gw_retained_batch_send(w, c, rb);
        rb = NULL;
    }
    if (want_stats)
        send_stats(w, c);
cleanup:
    gw_retained_batch_free(rb);
}
