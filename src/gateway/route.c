/* route.c — routing: one message to every matching subscription (one
 * delivery per session at the highest matching QoS, with every matching
 * subscription id; one member per shared group), batched per worker;
 * retained-message updates; publishing on the server's own behalf (wills,
 * vg_server_publish).
 * Does not own: delivery to one session (session.c). */
#include "gateway/gw.h"

#include <stdlib.h>

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
int gw_route(struct vg_server *s, worker_t *from, vg_msg_t *m, uint64_t *kvseq)
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
        gw_session_ref(t->se);
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
            gw_session_unref(s, t->se);
            continue;
        }
        r->tg[k++] = *t;
    }
    r->ntg = k;
    bool oom = false;
    batch_t *batches[MAX_WORKERS] = {0};
    for (size_t i = 0; i < r->ntg; i++) {
        tgt_t *t = &r->tg[i];
        uint64_t seq = gw_deliver_to_session_b(s, from, t->se, m, t->qos, t->retain, t->subids, t->nsubids,
                                            r->ntg > 1 ? batches : NULL);
        if (seq > maxseq)
            maxseq = seq;
    }
    for (uint32_t wi = 0; wi < s->nworkers; wi++) {
        if (!batches[wi])
            continue;
        item_t it = {.kind = ITEM_DELIVER_BATCH, .batch = batches[wi], .msg = m};
        vg_msg_ref(m);
        if (gw_inbox_post(&s->workers[wi], &it, 1) != VG_OK) {
            for (uint32_t j = 0; j < batches[wi]->n; j++)
                gw_session_unref(s, batches[wi]->v[j].se);
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
uint64_t gw_retain_update(struct vg_server *s, vg_msg_t *m)
{
    if (!s->retain)
        return 0;
    const char *topic = (const char *)vg_msg_topic(m);
    if (m->payload_len == 0) {
        if (vg_retain_set(s->retain, topic, m->topic_len, NULL, 0, 0) == VG_OK)
            return gw_kv_del(s, NS_RETAIN, topic, m->topic_len, 0);
        return 0;
    }
    size_t n = vg_msg_serialized_size(m);
    uint8_t *b = vg_malloc(VG_MEM_MQTT, n);
    if (!b)
        return KV_REFUSED;
    vg_msg_serialize(m, b);
    uint64_t seq = 0;
    if (vg_retain_set(s->retain, topic, m->topic_len, b, n, m->expire_at_ms) == VG_OK) {
        seq = gw_kv_put(s, NS_RETAIN, topic, m->topic_len, 0, b, n);
        if (m->expire_at_ms > 0)
            gw_hk_note_expiry(s, m->expire_at_ms);
    }
    vg_free(b);
    return seq;
}

void gw_publish_server_msg(struct vg_server *s, worker_t *from, vg_msg_t *m)
{
    atomic_fetch_add_explicit(&s->st_wills, 1, memory_order_relaxed);
    if (m->retain)
        gw_retain_update(s, m);
    gw_route(s, from, m, NULL);
}

int vg_server_publish(vg_server_t *s, const char *topic, size_t topic_len, const void *payload, size_t payload_len,
                      uint8_t qos)
{
    worker_t *from = gw_current_worker(s);
    vg_msg_t *m = vg_msg_new((const uint8_t *)topic, topic_len, payload, payload_len, qos > 2 ? 2 : qos, false, NULL,
                             0);
    if (!m)
        return VG_ENOMEM;
    int rc = gw_route(s, from, m, NULL);
    vg_msg_unref(m);
    return rc;
}
