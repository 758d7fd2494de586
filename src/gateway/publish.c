/* publish.c — inbound PUBLISH: decoding, topic aliases (5.0), QoS 2
 * duplicates, the receive maximum, and the ordered ack ring: a
 * connection's PUBACK / PUBREC / SUBACK / HTTP answers leave in the order
 * the requests came in (§4.6), each once every completion it waits for
 * (ingest hooks, store durability) has arrived.
 * Does not own: routing (route.c), the store (persist.c). */
#include "gateway/gw.h"

#include <stdlib.h>

void gw_send_ack(worker_t *w, conn_t *c, uint8_t type, uint16_t pid, uint8_t reason)
{
    uint8_t buf[8];
    int n = vg_mqtt_encode_ack(buf, sizeof buf, c->level, type, pid, reason, NULL);
    if (n > 0)
        gw_send_bytes(w, c, buf, (size_t)n);
}

static void acks_drain_some(worker_t *w, conn_t *c);
void gw_acks_drain(worker_t *w, conn_t *c)
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
            gw_send_bytes(w, c, a.pkt, a.pkt_len);
            vg_free(a.pkt);
            if (a.retained)
                gw_retained_batch_send(w, c, a.retained);
            continue;
        }
        if (a.type == ACK_HTTP) {
            if (a.failed == 2) /* an error answer queued behind publishes */
                gw_http_respond(w, c, 400 + a.reason, "{\"message\":\"request refused\"}");
            else
                gw_http_publish_done(w, c, a.failed != 0);
            if (c->state == ST_CLOSING)
                return;
            continue;
        }
        gw_send_ack(w, c, a.type, a.pid, a.reason);
    }
}

static void maybe_resume(worker_t *w, conn_t *c)
{
    if (c->paused && c->ack_count < w->srv->o.max_inflight / 2 + 1) {
        c->paused = false;
        /* Packets already buffered run first, then reading resumes. */
        gw_process_input(w, c);
        if (c->state != ST_CLOSING && !c->paused)
            gw_epoll_set(w, c);
    }
}

ack_t *gw_acks_push(conn_t *c, uint16_t pid, uint8_t type, uint8_t pending)
{
    if (c->ack_count == c->ack_cap &&
        gw_ring_grow((void **)&c->acks, &c->ack_head, c->ack_count, &c->ack_cap, sizeof *c->acks) != VG_OK)
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

void gw_complete_local(worker_t *w, uint64_t token, int status)
{
    conn_t *c = gw_conn_lookup(w, token);
    if (!c || CONN_GONE(c))
        return; /* the connection went away; the client will retransmit */
    ack_t *a = acks_find(c, TOK_PID(token));
    if (!a)
        return;
    if (status != VG_OK && c->transport == TR_HTTP) {
        a->failed = 1; /* answered 503: the client knows to retry */
        a->pending--;
        gw_acks_drain(w, c);
        return;
    }
    if (status != VG_OK) {
        /* Not stored: withholding the acknowledgement is the honest answer,
         * and closing makes the client resend on a fresh connection. */
        gw_conn_close_why(w, c, VG_CLOSE_IO, "message could not be stored");
        return;
    }
    a->pending--;
    gw_acks_drain(w, c);
    maybe_resume(w, c);
}

/* Resolves a 5.0 topic alias (§3.3.2.3.4). Returns false after closing. */
static bool resolve_alias(worker_t *w, conn_t *c, vg_mqtt_publish_t *p)
{
    if (!(p->props.present & VG_PROP_BIT(VG_PROP_TOPIC_ALIAS)))
        return true;
    uint16_t a = p->props.topic_alias;
    uint16_t max = w->srv->o.topic_alias_max;
    if (a == 0 || a > max) {
        gw_conn_close_why(w, c, VG_CLOSE_TOPIC_ALIAS, "topic alias out of range");
        return false;
    }
    aliases_t *al = gw_conn_aliases(c);
    if (al && !al->in) {
        al->in = vg_calloc(VG_MEM_MQTT, max, sizeof *al->in);
        al->in_len = vg_calloc(VG_MEM_MQTT, max, sizeof *al->in_len);
    }
    if (!al || !al->in || !al->in_len) {
        gw_conn_close(w, c, VG_CLOSE_IO);
        return false;
    }
    if (p->topic.len) {
        char *copy = vg_strndup(VG_MEM_MQTT, (const char *)p->topic.p, p->topic.len);
        if (!copy) {
            gw_conn_close(w, c, VG_CLOSE_IO);
            return false;
        }
        vg_free(al->in[a - 1]);
        al->in[a - 1] = copy;
        al->in_len[a - 1] = (uint16_t)p->topic.len;
        return true;
    }
    if (!al->in[a - 1]) {
        gw_conn_close_why(w, c, VG_CLOSE_PROTOCOL, "topic alias not set");
        return false;
    }
    p->topic.p = (const uint8_t *)al->in[a - 1];
    p->topic.len = al->in_len[a - 1];
    return true;
}

/* Whether hook h wants a PUBLISH on topic[0..len). */
static bool hook_matches(const gw_hook_t *h, const uint8_t *topic, size_t len)
{
    if (h->exact)
        return len == h->flen && memcmp(topic, h->filter, len) == 0;
    return vg_mqtt_topic_matches((const uint8_t *)h->filter, h->flen, topic, len);
}

int gw_publish_in(worker_t *w, conn_t *c, const gw_inpub_t *in)
{
    struct vg_server *s = w->srv;
    vg_msg_t *m = in->m;
    ack_t *a = in->ack;
    const uint8_t *topic = vg_msg_topic(m);
    vg_server_pub_t pub = {0};
    bool pub_ready = false;
    /* The record keeps a pure run of user properties (the sender may have
     * put other properties between them). A run too long for the buffer is
     * passed as it is: ingest refuses it by its length. Packed only once a
     * hook wants the message. */
    uint8_t upbuf[1024];
    for (uint32_t i = 0; i < s->nhooks; i++) {
        const gw_hook_t *h = &s->hooks[i];
        if (!hook_matches(h, topic, m->topic_len))
            continue;
        if (!pub_ready) {
            pub = (vg_server_pub_t){.client_id = in->client_id,
                                    .client_id_len = in->client_id_len,
                                    .topic = (const char *)topic,
                                    .topic_len = m->topic_len,
                                    .payload = vg_msg_payload(m),
                                    .payload_len = m->payload_len,
                                    .qos = m->qos,
                                    .retain = m->retain,
                                    .arrival_ms = vg_clock_wall_ms(),
                                    .principal = gw_principal(c)};
            if (in->props && (in->props->present & VG_PROP_BIT(VG_PROP_USER))) {
                int k = vg_mqtt_user_props_pack(in->props, upbuf, sizeof upbuf);
                pub.user_props = k >= 0 ? upbuf : in->props->user_props.p;
                pub.user_props_len = k >= 0 ? (size_t)k : in->props->user_props.len;
            }
            pub_ready = true;
        }
        w->hooks_ran |= 1u << i;
        if (in->token)
            a->pending++; /* the hook owes a completion */
        int rc = h->fn(h->ctx, &pub, in->token);
        if (rc != VG_OK) {
            if (in->token)
                a->pending--; /* refused: it owes nothing */
            if (a)
                a->failed = 1;
            return rc;
        }
    }
    uint64_t kvseq = in->kvseq;
    if (m->retain) {
        uint64_t rs = gw_retain_update(s, m);
        if (rs > kvseq)
            kvseq = rs;
    }
    uint64_t rseq = 0;
    gw_route(s, w, m, &rseq);
    if (rseq > kvseq)
        kvseq = rseq;
    if (kvseq && in->token && !CONN_GONE(c)) {
        a->pending++;
        gw_kv_wait(s, kvseq, in->token);
    }
    return VG_OK;
}

/* A PUBLISH the policy denies: 5.0 says so in its acknowledgement (0x87);
 * with no acknowledgement to say it in (QoS 0) or no reason codes (3.1.1)
 * the connection closes, as IoT Core does. Nothing is routed or stored. */
static void publish_denied(worker_t *w, conn_t *c, const vg_mqtt_publish_t *p)
{
    if (c->level == VG_MQTT_V5 && p->qos > 0) {
        ack_t *a = gw_acks_push(c, p->packet_id, p->qos == 1 ? VG_MQTT_PUBACK : VG_MQTT_PUBREC, 0);
        if (!a) {
            gw_conn_close(w, c, VG_CLOSE_IO);
            return;
        }
        a->reason = VG_RC_NOT_AUTHORIZED;
        gw_acks_drain(w, c);
        return;
    }
    if (c->level == VG_MQTT_V5)
        gw_send_disconnect(w, c, VG_RC_NOT_AUTHORIZED, "publish not authorized");
    gw_conn_close_why(w, c, VG_CLOSE_NOT_AUTHORIZED, "publish not authorized");
}

void gw_handle_publish(worker_t *w, conn_t *c, uint8_t flags, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    session_t *se = c->sess;
    vg_mqtt_publish_t p;
    if (vg_mqtt_decode_publish(c->level, flags, body, len, &p) != VG_OK) {
        gw_conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    if (c->level == VG_MQTT_V5 && !resolve_alias(w, c, &p))
        return;
    if (p.topic.len == 0) {
        gw_conn_close_why(w, c, VG_CLOSE_PROTOCOL, "empty topic without an alias");
        return;
    }
    if (p.props.present & VG_PROP_BIT(VG_PROP_SUBSCRIPTION_ID)) {
        gw_conn_close_why(w, c, VG_CLOSE_PROTOCOL, "subscription identifier in a client PUBLISH");
        return;
    }
    atomic_fetch_add_explicit(&w->st_pub_in, 1, memory_order_relaxed);
    if (!gw_authorize(w, c, VG_ACT_PUBLISH, p.topic.p, p.topic.len) ||
        (p.retain && !gw_authorize(w, c, VG_ACT_RETAIN, p.topic.p, p.topic.len))) {
        publish_denied(w, c, &p);
        return;
    }
    pthread_mutex_lock(&se->mu);
    bool dup2 = p.qos == 2 && gw_q2in_has(se, p.packet_id);
    uint32_t nq2 = se->nq2in;
    pthread_mutex_unlock(&se->mu);
    if (p.qos > 0 && c->level == VG_MQTT_V5 && !dup2 && c->ack_count + nq2 >= s->o.max_inflight) {
        /* §3.3.4: more unacknowledged QoS 1/2 PUBLISHes than we allowed. */
        gw_conn_close_why(w, c, VG_CLOSE_RECEIVE_MAX, "receive maximum exceeded");
        return;
    }
    if (dup2) {
        /* A retransmission of a QoS 2 PUBLISH we already own: acknowledge
         * again, never route or store it twice (exactly once, §4.3.3). */
        atomic_fetch_add_explicit(&s->st_q2dup, 1, memory_order_relaxed);
        if (c->ack_count == 0)
            gw_send_ack(w, c, VG_MQTT_PUBREC, p.packet_id, 0);
        else if (!gw_acks_push(c, p.packet_id, VG_MQTT_PUBREC, 0))
            gw_conn_close(w, c, VG_CLOSE_IO);
        else
            gw_acks_drain(w, c);
        return;
    }
    if (c->level == VG_MQTT_V5 && (p.props.present & VG_PROP_BIT(VG_PROP_PAYLOAD_FORMAT)) &&
        p.props.payload_format == 1 && !vg_mqtt_utf8_valid(p.payload.p, p.payload.len)) {
        /* §3.3.2.3.2: a receiver that validates answers 0x99. */
        if (p.qos == 0) {
            gw_send_disconnect(w, c, VG_RC_PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8");
            gw_conn_close(w, c, VG_CLOSE_PROTOCOL);
        } else {
            ack_t *a = gw_acks_push(c, p.packet_id, p.qos == 1 ? VG_MQTT_PUBACK : VG_MQTT_PUBREC, 0);
            if (!a)
                gw_conn_close(w, c, VG_CLOSE_IO);
            else
                a->reason = VG_RC_PAYLOAD_FORMAT_INVALID;
            gw_acks_drain(w, c);
        }
        return;
    }
    vg_msg_t *m = vg_msg_new(p.topic.p, p.topic.len, p.payload.p, p.payload.len, p.qos, p.retain,
                             c->level == VG_MQTT_V5 ? &p.props : NULL, gw_now_wall_ms());
    if (!m) {
        gw_conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    m->origin = se;
    gw_inpub_t in = {.m = m, .client_id = se->id, .client_id_len = se->id_len, .props = &p.props};
    if (p.qos) {
        in.token = TOK(w->id, c->slot, c->gen, p.packet_id);
        in.ack = gw_acks_push(c, p.packet_id, p.qos == 1 ? VG_MQTT_PUBACK : VG_MQTT_PUBREC, 0);
        if (!in.ack) {
            vg_msg_unref(m);
            gw_conn_close(w, c, VG_CLOSE_IO);
            return;
        }
    }
    if (p.qos == 2) {
        pthread_mutex_lock(&se->mu);
        gw_q2in_add(se, p.packet_id);
        pthread_mutex_unlock(&se->mu);
        if (se->persistent)
            in.kvseq = gw_kv_put(s, NS_Q2IN, se->id, se->id_len, p.packet_id, "", 0);
    }
    int rc = gw_publish_in(w, c, &in);
    vg_msg_unref(m);
    if (rc != VG_OK) {
        /* Refused (a hook could not take it): withholding the
         * acknowledgement and closing makes the client send it again. */
        gw_conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    if (c->state == ST_CLOSING || !p.qos)
        return;
    gw_acks_drain(w, c);
    if (c->level != VG_MQTT_V5 && c->ack_count >= s->o.max_inflight && !c->paused) {
        c->paused = true;
        atomic_fetch_add_explicit(&w->st_read_pauses, 1, memory_order_relaxed);
        gw_epoll_set(w, c);
    }
}
