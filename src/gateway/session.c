/* session.c — sessions: creation, references and end, the outbound
 * queues (in flight in send order, then queued; limits and accounting),
 * inbound QoS 2 packet ids, encoding one PUBLISH for one connection, the
 * in-flight window pump, the client's PUBACK/PUBREC/PUBCOMP/PUBREL, and
 * delivering a routed message to a session on whichever worker owns it.
 * Does not own: subscriptions (subs.c), what is stored (persist.c). */
#include "gateway/gw.h"

/* Doubles a full ring of n elements of size `elem` starting at *head:
 * copies them in order to the front of a new array (so *head becomes 0) and
 * frees the old one. Shared by the session queues and the ack ring. */
int gw_ring_grow(void **v, uint32_t *head, uint32_t n, uint32_t *cap, size_t elem)
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

int gw_outq_push(outq_t *q, const out_t *e)
{
    if (q->n == q->cap && gw_ring_grow((void **)&q->v, &q->head, q->n, &q->cap, sizeof *q->v) != VG_OK)
        return VG_ENOMEM;
    q->v[(q->head + q->n) % q->cap] = *e;
    q->n++;
    return VG_OK;
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
    *e = *gw_outq_at(q, i);
    for (uint32_t j = i; j + 1 < q->n; j++)
        *gw_outq_at(q, j) = *gw_outq_at(q, j + 1);
    q->n--;
    if (q->n == 0) {
        vg_free(q->v);
        q->v = NULL;
        q->cap = q->head = 0;
    }
}

/* A session and its client id in one allocation. */
session_t *gw_session_new(const char *id, size_t idlen)
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

void gw_session_ref(session_t *se)
{
    atomic_fetch_add_explicit(&se->refs, 1, memory_order_relaxed);
}

void gw_queue_account(struct vg_server *s, const out_t *e, int sign)
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
        gw_queue_account(s, &e, -1);
        vg_msg_unref(e.m);
    }
    while (se->queue.n) {
        outq_pop(&se->queue, &e);
        gw_queue_account(s, &e, -1);
        vg_msg_unref(e.m);
    }
}

void gw_session_unref(struct vg_server *s, session_t *se)
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

bool gw_q2in_has(const session_t *se, uint16_t pid)
{
    for (uint32_t i = 0; i < se->nq2in; i++)
        if (se->q2in[i] == pid)
            return true;
    return false;
}

int gw_q2in_add(session_t *se, uint16_t pid)
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

/* Ends a session that the caller already marked dead and removed from the
 * ids map (dropping the map's reference is done here). */
void gw_session_kill(struct vg_server *s, session_t *se, vg_msg_t *will)
{
    worker_t *from = gw_current_worker(s);
    if (will) {
        gw_publish_server_msg(s, from, will);
        vg_msg_unref(will);
    }
    gw_session_unsubscribe_all(s, se);
    pthread_mutex_lock(&se->mu);
    session_drop_messages(s, se);
    se->nq2in = 0;
    bool persistent = se->persistent;
    se->persistent = false;
    pthread_mutex_unlock(&se->mu);
    if (persistent) {
        gw_kv_del_key(s, NS_SESSION, se->id, se->id_len);
        gw_kv_del_key(s, NS_OUT, se->id, se->id_len);
        gw_kv_del_key(s, NS_Q2IN, se->id, se->id_len);
    }
    atomic_fetch_sub_explicit(&s->st_sessions, 1, memory_order_relaxed);
    gw_session_unref(s, se);
}

/* Ends se if it is still offline (expiry, or its last connection closed
 * with a zero expiry interval). */
void gw_session_end_if_offline(struct vg_server *s, session_t *se)
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
    gw_session_kill(s, se, will);
}

/* SEND_DEFERRED: a QoS 1/2 PUBLISH not sent because the output is full;
 * the caller keeps it queued for the session (as for SEND_FAILED, a closing
 * connection). SEND_SHED: a QoS 0 PUBLISH dropped for the same reason. */
enum { SEND_OK = 0, SEND_EXPIRED, SEND_TOO_LARGE, SEND_FAILED, SEND_DEFERRED, SEND_SHED, SEND_DENIED };

/* Encodes and queues one PUBLISH of m to c: per-delivery QoS, packet id,
 * DUP, retain flag and subscription ids; for 5.0 also the remaining message
 * expiry and an outgoing topic alias. Honours the client's maximum packet
 * size by not sending (§3.1.2.11.4: the message is discarded for that
 * client, as if delivered). */
int gw_send_publish(worker_t *w, conn_t *c, vg_msg_t *m, uint8_t qos, uint16_t pid, bool dup, bool retain,
                        const uint32_t *subids, uint8_t nsubids)
{
    struct vg_server *s = w->srv;
    int64_t now = gw_now_wall_ms();
    if (vg_msg_expired(m, now) && !dup) {
        atomic_fetch_add_explicit(&s->st_expired, 1, memory_order_relaxed);
        return SEND_EXPIRED;
    }
    /* Receive is checked per message (a wildcard subscription may be
     * allowed while some topics under it are not); a retransmission was
     * allowed when it was first sent. */
    if (!dup && !gw_authorize(w, c, VG_ACT_RECEIVE, vg_msg_topic(m), m->topic_len))
        return SEND_DENIED;
    if (!dup && gw_out_full(w, c)) {
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
            aliases_t *al = gw_conn_aliases(c);
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
    uint8_t *dst = gw_out_reserve_ex(w, c, n, dup);
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
            used = gw_outq_at(&se->inflight, i)->pid == pid;
        if (!used)
            return pid;
    }
}

/* Moves queued messages into the in-flight window and sends them (se->mu
 * held; c is se's connection on this worker). */
void gw_session_pump(worker_t *w, conn_t *c, session_t *se)
{
    struct vg_server *s = w->srv;
    while (se->queue.n && se->inflight.n < se->window && c->state == ST_ACTIVE) {
        out_t e;
        outq_pop(&se->queue, &e);
        e.pid = session_next_pid(se);
        e.state = OUT_WAIT_ACK;
        int r = gw_send_publish(w, c, e.m, e.qos, e.pid, false, e.retain, e.subids, e.nsubids);
        if (r == SEND_FAILED || r == SEND_DEFERRED) {
            /* The connection is closing, or its output is full (the pump
             * runs again once it drained): keep the message queued in order. */
            e.state = OUT_QUEUED;
            e.pid = 0;
            out_t tmp;
            gw_outq_push(&se->queue, &e);
            /* move it back to the front */
            for (uint32_t i = se->queue.n - 1; i > 0; i--) {
                tmp = *gw_outq_at(&se->queue, i);
                *gw_outq_at(&se->queue, i) = *gw_outq_at(&se->queue, i - 1);
                *gw_outq_at(&se->queue, i - 1) = tmp;
            }
            return;
        }
        if (r != SEND_OK) {
            gw_out_unpersist(s, se, &e);
            gw_queue_account(s, &e, -1);
            vg_msg_unref(e.m);
            continue;
        }
        if (gw_outq_push(&se->inflight, &e) != VG_OK) {
            gw_out_unpersist(s, se, &e);
            gw_queue_account(s, &e, -1);
            vg_msg_unref(e.m);
            continue;
        }
        if (se->persistent)
            gw_out_persist(s, se, gw_outq_at(&se->inflight, se->inflight.n - 1));
    }
}

/* Queues a QoS 1/2 message for se (se->mu held): limits first, then the
 * store for a persistent session. Returns the store seq (0 = none, KV_REFUSED = refused). */
uint64_t gw_session_enqueue(struct vg_server *s, session_t *se, vg_msg_t *m, uint8_t qos, bool retain,
                                const uint32_t *subids, uint8_t nsubids, uint64_t kvsub)
{
    /* kvsub: the routing thread already stored this copy under that key
     * (so the publisher's acknowledgement could wait for it); dropping the
     * copy must drop the record. */
    if (s->o.max_queued_per_client && se->queue.n >= s->o.max_queued_per_client) {
        atomic_fetch_add_explicit(&s->st_drop_client, 1, memory_order_relaxed);
        if (kvsub)
            gw_kv_del(s, NS_OUT, se->id, se->id_len, kvsub);
        return 0;
    }
    if (s->o.max_queued_bytes &&
        atomic_load_explicit(&s->st_queued_bytes, memory_order_relaxed) + m->topic_len + m->payload_len >
            s->o.max_queued_bytes) {
        atomic_fetch_add_explicit(&s->st_drop_global, 1, memory_order_relaxed);
        if (kvsub)
            gw_kv_del(s, NS_OUT, se->id, se->id_len, kvsub);
        return 0;
    }
    out_t e = {.m = m, .qos = qos, .state = OUT_QUEUED, .retain = retain, .nsubids = nsubids, .kvsub = kvsub};
    for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
        e.subids[i] = subids[i];
    if (gw_outq_push(&se->queue, &e) != VG_OK)
        return 0;
    vg_msg_ref(m);
    gw_queue_account(s, &e, +1);
    return gw_out_persist(s, se, gw_outq_at(&se->queue, se->queue.n - 1));
}

/* Delivers to se through its connection c on this worker (se->mu held). */
uint64_t gw_session_send(worker_t *w, conn_t *c, session_t *se, vg_msg_t *m, uint8_t qos, bool retain,
                             const uint32_t *subids, uint8_t nsubids, uint64_t kvsub)
{
    struct vg_server *s = w->srv;
    if (qos == 0) {
        gw_send_publish(w, c, m, 0, 0, false, retain, subids, nsubids);
        return 0;
    }
    if (se->queue.n || se->inflight.n >= se->window) {
        uint64_t seq = gw_session_enqueue(s, se, m, qos, retain, subids, nsubids, kvsub);
        return seq;
    }
    out_t e = {.m = m, .qos = qos, .state = OUT_WAIT_ACK, .retain = retain, .nsubids = nsubids, .kvsub = kvsub};
    for (uint8_t i = 0; i < nsubids && i < MAX_SUBIDS; i++)
        e.subids[i] = subids[i];
    e.pid = session_next_pid(se);
    int r = gw_send_publish(w, c, m, qos, e.pid, false, retain, subids, nsubids);
    if (r == SEND_EXPIRED || r == SEND_TOO_LARGE || r == SEND_DENIED) {
        if (kvsub)
            gw_kv_del(s, NS_OUT, se->id, se->id_len, kvsub);
        return 0;
    }
    if (r == SEND_FAILED || r == SEND_DEFERRED) /* closing, or output full: keep it for the session */
        return gw_session_enqueue(s, se, m, qos, retain, subids, nsubids, kvsub);
    if (gw_outq_push(&se->inflight, &e) != VG_OK)
        return 0;
    vg_msg_ref(m);
    gw_queue_account(s, &e, +1);
    return gw_out_persist(s, se, gw_outq_at(&se->inflight, se->inflight.n - 1));
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

uint64_t gw_deliver_to_session(struct vg_server *s, worker_t *from, session_t *se, vg_msg_t *m, uint8_t qos,
                                   bool retain, const uint32_t *subids, uint8_t nsubids)
{
    return gw_deliver_to_session_b(s, from, se, m, qos, retain, subids, nsubids, NULL);
}

/* As gw_deliver_to_session; with batches (one per worker), deliveries to other
 * workers are collected there for the caller to post. */
uint64_t gw_deliver_to_session_b(struct vg_server *s, worker_t *from, session_t *se, vg_msg_t *m, uint8_t qos,
                                     bool retain, const uint32_t *subids, uint8_t nsubids, batch_t **batches)
{
    uint64_t seq = 0;
    pthread_mutex_lock(&se->mu);
    if (se->dead) {
        pthread_mutex_unlock(&se->mu);
        gw_session_unref(s, se);
        return 0;
    }
    if (se->online) {
        uint32_t wi = TOK_WORKER(se->owner);
        if (from && wi == from->id) {
            conn_t *c = gw_conn_lookup(from, se->owner);
            if (c && c->sess == se && c->state == ST_ACTIVE) {
                seq = gw_session_send(from, c, se, m, qos, retain, subids, nsubids, 0);
                pthread_mutex_unlock(&se->mu);
                gw_session_unref(s, se);
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
                seq = gw_out_persist(s, se, &e);
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
            if (gw_inbox_post(&s->workers[wi], &it, 1) != VG_OK) {
                vg_msg_unref(m);
                gw_session_unref(s, se);
                return 0;
            }
            return seq; /* the session ref travels with the item */
        }
    }
    /* Offline (or its connection is going away): QoS 0 is not kept for
     * absent clients (§3.1.2.4 leaves it optional; queues are for 1 and 2). */
    if (qos > 0 && (se->persistent || se->online))
        seq = gw_session_enqueue(s, se, m, qos, retain, subids, nsubids, 0);
    pthread_mutex_unlock(&se->mu);
    gw_session_unref(s, se);
    return seq;
}

/* PUBACK, PUBREC, PUBCOMP from the client (our outbound flows) and PUBREL
 * (its inbound QoS 2 flow). */
void gw_handle_ack(worker_t *w, conn_t *c, uint8_t type, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    session_t *se = c->sess;
    vg_mqtt_ack_t a;
    if (vg_mqtt_decode_ack(c->level, type, body, len, &a) != VG_OK) {
        gw_conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    if (type == VG_MQTT_PUBREL) {
        pthread_mutex_lock(&se->mu);
        bool found = q2in_del(se, a.packet_id);
        bool persist = se->persistent;
        pthread_mutex_unlock(&se->mu);
        if (found && persist)
            gw_kv_del(s, NS_Q2IN, se->id, se->id_len, a.packet_id);
        gw_send_ack(w, c, VG_MQTT_PUBCOMP, a.packet_id, found ? 0 : VG_RC_PACKET_ID_NOT_FOUND);
        return;
    }
    pthread_mutex_lock(&se->mu);
    if (!se->online || se->owner != CONN_TOK(w->id, c->slot, c->gen)) {
        pthread_mutex_unlock(&se->mu);
        return;
    }
    uint32_t i = 0;
    for (; i < se->inflight.n; i++)
        if (gw_outq_at(&se->inflight, i)->pid == a.packet_id)
            break;
    out_t *e = i < se->inflight.n ? gw_outq_at(&se->inflight, i) : NULL;
    bool done = false;
    if (type == VG_MQTT_PUBACK && e && e->qos == 1 && e->state == OUT_WAIT_ACK) {
        done = true;
    } else if (type == VG_MQTT_PUBREC && e && e->qos == 2 && e->state == OUT_WAIT_ACK) {
        if (a.reason >= 0x80) {
            done = true; /* the receiver refused it: the flow ends (§4.3.3) */
        } else {
            e->state = OUT_WAIT_COMP;
            if (se->persistent)
                gw_out_persist(s, se, e);
            gw_send_ack(w, c, VG_MQTT_PUBREL, a.packet_id, 0);
        }
    } else if (type == VG_MQTT_PUBREC && !e) {
        gw_send_ack(w, c, VG_MQTT_PUBREL, a.packet_id, VG_RC_PACKET_ID_NOT_FOUND);
    } else if (type == VG_MQTT_PUBCOMP && e && e->state == OUT_WAIT_COMP) {
        done = true;
    }
    if (done) {
        out_t d;
        outq_remove(&se->inflight, i, &d);
        gw_out_unpersist(s, se, &d);
        gw_queue_account(s, &d, -1);
        vg_msg_unref(d.m);
        gw_session_pump(w, c, se);
    }
    pthread_mutex_unlock(&se->mu);
}
