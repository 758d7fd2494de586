/* connect.c — a connection's MQTT life: CONNECT (validation, session
 * find / resume / replace / create, the takeover of a session still
 * attached elsewhere), CONNACK, retransmission on resume, keepalive,
 * DISCONNECT, detaching from the session (wills, expiry timers) and the
 * dispatch of every other packet to its module.
 * Does not own: the session's queues (session.c), subscriptions (subs.c),
 * inbound PUBLISH (publish.c). */
#include "gateway/gw.h"

#include <stdio.h>

/* Keepalive deadlines are coarse on purpose: 1.5 x keepalive from now,
 * rounded up to a grain of 1/16 of that period, at least one wheel tick and
 * at most 1 s. Connections whose deadlines fall in one grain share a wheel
 * slot, so a worker with 10,000 idle connections wakes for them at most once
 * per grain (once a second at keepalive 60), not once per tick. So a
 * keepalive timeout fires up to one grain (plus the wheel's tick) late: at
 * most 1.05 s late, and about 6% of the period for short keepalives (93 ms
 * at keepalive 1). */
static uint64_t keepalive_deadline(uint16_t keepalive)
{
    uint64_t period = (uint64_t)keepalive * 1500u;
    uint64_t grain = period / 16;
    if (grain < WHEEL_TICK_MS)
        grain = WHEEL_TICK_MS;
    if (grain > 1000)
        grain = 1000;
    return (gw_now_mono_ms() + period + grain - 1) / grain * grain;
}

static void refresh_keepalive(worker_t *w, conn_t *c)
{
    if (c->keepalive)
        c->timer.deadline_ms = keepalive_deadline(c->keepalive);
}

static void send_connack(worker_t *w, conn_t *c, bool present, uint8_t rc, const vg_mqtt_props_t *props)
{
    uint8_t buf[512];
    int n = vg_mqtt_encode_connack(buf, sizeof buf, c->level == VG_MQTT_V5 ? VG_MQTT_V5 : VG_MQTT_V311, present, rc,
                                   props);
    if (n > 0)
        gw_send_bytes(w, c, buf, (size_t)n);
}

/* Refuses a CONNECT: the version-appropriate CONNACK code, then close. */
static void connect_refuse(worker_t *w, conn_t *c, uint8_t v3rc, uint8_t v5rc, const char *why)
{
    vg_mqtt_props_t pr = {0};
    if (c->level == VG_MQTT_V5 && why) {
        pr.present = VG_PROP_BIT(VG_PROP_REASON_STRING);
        pr.reason_string.p = (const uint8_t *)why;
        pr.reason_string.len = strlen(why);
    }
    send_connack(w, c, false, c->level == VG_MQTT_V5 ? v5rc : v3rc, c->level == VG_MQTT_V5 ? &pr : NULL);
    c->linger = true;
    gw_conn_close_why(w, c, VG_CLOSE_REJECTED, why);
}

/* After CONNACK on a resumed session: retransmit in-flight messages in
 * their original order with their packet ids (§4.4), then the queue. */
static void session_resume(worker_t *w, conn_t *c, session_t *se)
{
    for (uint32_t i = 0; i < se->inflight.n && c->state == ST_ACTIVE; i++) {
        out_t *e = gw_outq_at(&se->inflight, i);
        if (e->state == OUT_WAIT_COMP)
            gw_send_ack(w, c, VG_MQTT_PUBREL, e->pid, 0);
        else
            gw_send_publish(w, c, e->m, e->qos, e->pid, true, e->retain, e->subids, e->nsubids);
    }
    gw_session_pump(w, c, se);
}

/* Takeover: a CONNECT for a client id whose session is attached to another
 * connection. Whether the session is resumed (Session Present) depends on
 * what that old connection said last, and its last words may already be in
 * its socket, unread: a client that sends DISCONNECT (Session Expiry 0) and
 * reconnects at once must get a new session, but the new CONNECT can be
 * read first, by another worker or by this one later in the same round.
 * So the decision waits: this connection stops reading (its CONNECT stays
 * first in c->in) and asks the old connection's worker to take over
 * (ITEM_TAKEOVER). That worker reads and handles everything the old socket
 * holds (gw_takeover_item), closes it if it is still open, detaches it from
 * the session and answers (ITEM_TAKEOVER_DONE); then this CONNECT runs
 * again from the start and finds the session offline, or ended. Only a
 * CONNECT that finds its id online pays the round trip; no other path
 * changes. A second wait for the same owner is not made (the old path, a
 * kick, is used then), so a CONNECT waits at most once per old connection. */
static void connect_wait_takeover(worker_t *w, conn_t *c, uint64_t owner)
{
    struct vg_server *s = w->srv;
    vg_msg_unref(c->will); /* handle_connect runs again and makes it anew */
    c->will = NULL;
    c->will_delay = 0;
    c->takeover_wait = true;
    c->takeover_tried = true;
    c->takeover_from = owner;
    item_t it = {.kind = ITEM_TAKEOVER, .token = owner, .waiter = CONN_TOK(w->id, c->slot, c->gen)};
    uint32_t ow = TOK_WORKER(owner);
    if (ow >= s->nworkers || gw_inbox_post(&s->workers[ow], &it, 1) != VG_OK) {
        c->takeover_wait = false;
        connect_refuse(w, c, VG_MQTT_CONNACK_UNAVAILABLE, VG_RC_SERVER_UNAVAILABLE, "out of memory");
        return;
    }
    gw_epoll_set(w, c); /* stop reading until the answer */
}

static void handle_connect(worker_t *w, conn_t *c, const uint8_t *body, size_t len)
{
    struct vg_server *s = w->srv;
    vg_mqtt_connect_t ck;
    memset(&ck, 0, sizeof ck);
    uint8_t rc = 0;
    int r = vg_mqtt_decode_connect(body, len, &ck, &rc);
    c->level = ck.protocol_level == VG_MQTT_V5 ? VG_MQTT_V5 : VG_MQTT_V311;
    if (r == VG_EPROTO) {
        if (rc == VG_MQTT_CONNACK_BAD_PROTOCOL)
            c->level = VG_MQTT_V311; /* an unknown level gets the 3.1.1 answer [MQTT-3.1.2-2] */
        connect_refuse(w, c, rc, rc == VG_MQTT_CONNACK_BAD_PROTOCOL ? VG_RC_UNSUPPORTED_VERSION : VG_RC_CLIENT_ID_INVALID,
                       rc == VG_MQTT_CONNACK_BAD_PROTOCOL ? "unsupported protocol level" : "client identifier not valid");
        return;
    }
    if (r != VG_OK) {
        gw_conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    bool v5 = c->level == VG_MQTT_V5;
    if (v5 && (ck.props.present & VG_PROP_BIT(VG_PROP_AUTH_METHOD))) {
        connect_refuse(w, c, VG_MQTT_CONNACK_NOT_AUTHORIZED, VG_RC_BAD_AUTH_METHOD,
                       "enhanced authentication is not supported");
        return;
    }
    char idbuf[80];
    const char *id = (const char *)ck.client_id.p;
    size_t idlen = ck.client_id.len;
    bool assigned = false;
    if (idlen == 0) {
        idlen = (size_t)snprintf(idbuf, sizeof idbuf, "vigil-%u-%u-%u-%llx", w->id, c->slot, c->gen,
                                 (unsigned long long)vg_clock_mono_ns());
        id = idbuf;
        assigned = true;
    }
    /* Who is it? (The auth hook may answer later: then this CONNECT runs
     * again once it has.) */
    int ar = gw_auth_connect(w, c, &ck, id, idlen);
    if (ar == AUTH_WAIT)
        return;
    if (ar < 0) {
        connect_refuse(w, c, VG_MQTT_CONNACK_UNAVAILABLE, VG_RC_SERVER_UNAVAILABLE, "out of memory");
        return;
    }
    if (ar == AUTH_REFUSED) {
        connect_refuse(w, c, c->sec->auth_v3_rc, c->sec->auth_v5_rc, c->sec->auth_why);
        return;
    }
    if (ck.will_flag && (!gw_authorize(w, c, VG_ACT_PUBLISH, ck.will_topic.p, ck.will_topic.len) ||
                         (ck.will_retain && !gw_authorize(w, c, VG_ACT_RETAIN, ck.will_topic.p, ck.will_topic.len)))) {
        connect_refuse(w, c, VG_MQTT_CONNACK_NOT_AUTHORIZED, VG_RC_NOT_AUTHORIZED, "will topic not authorized");
        return;
    }
    /* Session expiry: 3.1.1 clean session 0 keeps the session for ever, 5.0
     * says how long; both capped by the operator's maximum. */
    uint32_t expiry = 0;
    if (v5)
        expiry = (ck.props.present & VG_PROP_BIT(VG_PROP_SESSION_EXPIRY)) ? ck.props.session_expiry : 0;
    else
        expiry = ck.clean_session ? 0 : EXPIRY_NEVER;
    bool expiry_capped = false;
    if (s->o.max_session_expiry_s && expiry > s->o.max_session_expiry_s) {
        expiry = s->o.max_session_expiry_s;
        expiry_capped = v5;
    }
    /* Peer limits (5.0). */
    c->problem_info = true;
    c->peer_receive_max = 65535;
    if (v5) {
        const vg_mqtt_props_t *p = &ck.props;
        if (p->present & VG_PROP_BIT(VG_PROP_RECEIVE_MAX))
            c->peer_receive_max = p->receive_max;
        if (p->present & VG_PROP_BIT(VG_PROP_MAX_PACKET_SIZE))
            c->peer_max_packet = p->max_packet_size;
        if (p->present & VG_PROP_BIT(VG_PROP_TOPIC_ALIAS_MAX))
            c->peer_alias_max = p->topic_alias_max;
        if (p->present & VG_PROP_BIT(VG_PROP_REQUEST_PROBLEM_INFO))
            c->problem_info = p->request_problem_info != 0;
    }
    if (ck.will_flag) {
        c->will = vg_msg_new(ck.will_topic.p, ck.will_topic.len, ck.will_payload.p, ck.will_payload.len, ck.will_qos,
                             ck.will_retain, v5 ? &ck.will_props : NULL, gw_now_wall_ms());
        if (!c->will) {
            connect_refuse(w, c, VG_MQTT_CONNACK_UNAVAILABLE, VG_RC_SERVER_UNAVAILABLE, "out of memory");
            return;
        }
        if (v5 && (ck.will_props.present & VG_PROP_BIT(VG_PROP_WILL_DELAY)))
            c->will_delay = ck.will_props.will_delay;
    }

    /* Find, resume, replace or create the session. */
    uint64_t me = CONN_TOK(w->id, c->slot, c->gen);
    uint64_t kick = 0; /* CONN_TOK of the connection to close; 0 is a valid one */
    bool have_kick = false;
    bool present = false;
    session_t *se = NULL, *kill = NULL;
    vg_msg_t *kill_will = NULL;
    pthread_mutex_lock(&s->ids_mu);
    uint64_t v = 0;
    if (vg_strmap_get(&s->ids, id, idlen, &v) == VG_OK) {
        session_t *old = (session_t *)(uintptr_t)v;
        pthread_mutex_lock(&old->mu);
        if (old->online && !(c->takeover_tried && c->takeover_from == old->owner)) {
            uint64_t owner = old->owner;
            pthread_mutex_unlock(&old->mu);
            pthread_mutex_unlock(&s->ids_mu);
            connect_wait_takeover(w, c, owner);
            return;
        }
        if (old->online) {
            kick = old->owner;
            have_kick = true;
            __atomic_store_n(&old->online, false, __ATOMIC_RELAXED);
        } else if (old->persistent) {
            atomic_fetch_sub_explicit(&s->st_offline, 1, memory_order_relaxed);
        }
        /* A session with expiry 0 lives only as long as its connection,
         * which this CONNECT ends (takeover): nothing to resume, whatever
         * order the old DISCONNECT and this CONNECT were read in. */
        if (ck.clean_session || old->expiry_s == 0) {
            old->dead = true;
            kill_will = old->pending_will;
            old->pending_will = NULL;
            vg_strmap_del(&s->ids, id, idlen);
            kill = old;
        } else {
            se = old;
            present = true;
            vg_msg_unref(se->pending_will); /* reconnecting cancels a delayed will */
            se->pending_will = NULL;
        }
        pthread_mutex_unlock(&old->mu);
    }
    if (!se) {
        se = gw_session_new(id, idlen);
        if (!se || vg_strmap_put(&s->ids, id, idlen, (uint64_t)(uintptr_t)se, NULL) != VG_OK) {
            pthread_mutex_unlock(&s->ids_mu);
            if (se)
                gw_session_unref(s, se);
            if (kill)
                gw_session_kill(s, kill, kill_will);
            connect_refuse(w, c, VG_MQTT_CONNACK_UNAVAILABLE, VG_RC_SERVER_UNAVAILABLE, "out of memory");
            return;
        }
        atomic_fetch_add_explicit(&s->st_sessions, 1, memory_order_relaxed);
    }
    pthread_mutex_lock(&se->mu);
    __atomic_store_n(&se->online, true, __ATOMIC_RELAXED);
    se->owner = me;
    se->epoch++;
    se->level = c->level;
    se->expiry_s = expiry;
    se->persistent = expiry > 0;
    se->offline_since_ms = 0;
    uint32_t window = s->o.max_inflight_out ? s->o.max_inflight_out : 1;
    if (v5 && c->peer_receive_max < window)
        window = c->peer_receive_max;
    se->window = window;
    pthread_mutex_unlock(&se->mu);
    gw_session_ref(se);
    c->sess = se;
    pthread_mutex_unlock(&s->ids_mu);

    if (have_kick) {
        uint32_t ow = TOK_WORKER(kick);
        if (ow == w->id) {
            conn_t *oc = gw_conn_lookup(w, kick);
            if (oc && oc != c)
                gw_conn_close(w, oc, VG_CLOSE_TAKEOVER);
        } else if (ow < s->nworkers) {
            item_t it = {.kind = ITEM_KICK, .token = kick};
            gw_inbox_post(&s->workers[ow], &it, 1);
        }
    }
    if (kill)
        gw_session_kill(s, kill, kill_will);
    if (se->persistent)
        gw_session_persist(s, se);

    c->keepalive = ck.keepalive;
    bool ka_changed = false;
    if (s->o.max_keepalive_s && (c->keepalive == 0 || c->keepalive > s->o.max_keepalive_s)) {
        c->keepalive = (uint16_t)s->o.max_keepalive_s;
        ka_changed = true;
    }
    c->state = ST_ACTIVE;
    vg_wheel_remove(&c->timer);
    if (c->keepalive)
        vg_wheel_add(&w->wheel, &c->timer, keepalive_deadline(c->keepalive));

    vg_mqtt_props_t ap = {0};
    if (v5) {
        ap.present = VG_PROP_BIT(VG_PROP_RECEIVE_MAX) | VG_PROP_BIT(VG_PROP_MAX_PACKET_SIZE) |
                     VG_PROP_BIT(VG_PROP_TOPIC_ALIAS_MAX);
        ap.receive_max = (uint16_t)(s->o.max_inflight > 65535 ? 65535 : s->o.max_inflight);
        ap.max_packet_size = (uint32_t)s->o.max_packet_size;
        ap.topic_alias_max = s->o.topic_alias_max;
        if (assigned) {
            ap.present |= VG_PROP_BIT(VG_PROP_ASSIGNED_CLIENT_ID);
            ap.assigned_client_id.p = (const uint8_t *)se->id;
            ap.assigned_client_id.len = se->id_len;
        }
        if (ka_changed) {
            ap.present |= VG_PROP_BIT(VG_PROP_SERVER_KEEPALIVE);
            ap.server_keepalive = c->keepalive;
        }
        if (expiry_capped) {
            ap.present |= VG_PROP_BIT(VG_PROP_SESSION_EXPIRY);
            ap.session_expiry = expiry;
        }
        if (!s->retain) {
            ap.present |= VG_PROP_BIT(VG_PROP_RETAIN_AVAILABLE);
            ap.retain_available = 0;
        }
    }
    /* Request/response (§4.10): a client that asks for Response Information
     * gets a topic prefix of its own to build response topics under. */
    char respinfo[96 + 256];
    if (v5 && (ck.props.present & VG_PROP_BIT(VG_PROP_REQUEST_RESPONSE_INFO)) && ck.props.request_response_info &&
        se->id_len <= 256 && vg_mqtt_topic_valid((const uint8_t *)se->id, se->id_len)) {
        int k = snprintf(respinfo, sizeof respinfo, "vigil/response/%.*s", (int)se->id_len, se->id);
        ap.present |= VG_PROP_BIT(VG_PROP_RESPONSE_INFO);
        ap.response_info.p = (const uint8_t *)respinfo;
        ap.response_info.len = (size_t)k;
    }
    send_connack(w, c, present, 0, v5 ? &ap : NULL);
    pthread_mutex_lock(&se->mu);
    if (se->online && se->owner == me)
        session_resume(w, c, se);
    pthread_mutex_unlock(&se->mu);
}

static void handle_disconnect(worker_t *w, conn_t *c, const uint8_t *body, size_t len)
{
    uint8_t reason = 0;
    vg_mqtt_props_t pr;
    memset(&pr, 0, sizeof pr);
    if (vg_mqtt_decode_reason(c->level, VG_MQTT_DISCONNECT, body, len, &reason, &pr) != VG_OK) {
        gw_conn_close(w, c, VG_CLOSE_MALFORMED);
        return;
    }
    session_t *se = c->sess;
    if (pr.present & VG_PROP_BIT(VG_PROP_SESSION_EXPIRY)) {
        pthread_mutex_lock(&se->mu);
        bool bad = se->expiry_s == 0 && pr.session_expiry != 0;
        if (!bad) {
            uint32_t e = pr.session_expiry;
            if (w->srv->o.max_session_expiry_s && e > w->srv->o.max_session_expiry_s)
                e = w->srv->o.max_session_expiry_s;
            se->expiry_s = e;
            se->persistent = e > 0;
        }
        pthread_mutex_unlock(&se->mu);
        if (bad) {
            /* §3.14.2.2.2: from 0 to non-zero is a protocol error. */
            gw_conn_close_why(w, c, VG_CLOSE_PROTOCOL, "session expiry interval was 0");
            return;
        }
    }
    if (reason == VG_RC_DISCONNECT_WITH_WILL) {
        gw_conn_close(w, c, VG_CLOSE_DISCONNECT_WILL);
    } else {
        c->clean_disconnect = true;
        gw_conn_close(w, c, VG_CLOSE_CLIENT);
    }
    /* Leave the session now, not when the connection is torn down at the end
     * of this loop round: a client that reconnects at once (on another
     * worker) must find it already offline or ended, not take over a
     * connection that has said goodbye. */
    gw_conn_detach(w, c);
}

/* Handles one complete packet. */
void gw_handle_packet(worker_t *w, conn_t *c, uint8_t type, uint8_t flags, const uint8_t *body, size_t len)
{
    if (c->state == ST_NEW) {
        if (type != VG_MQTT_CONNECT) {
            gw_conn_close(w, c, VG_CLOSE_PROTOCOL);
            return;
        }
        handle_connect(w, c, body, len);
        return;
    }
    refresh_keepalive(w, c);
    uint8_t buf[4];
    switch (type) {
    case VG_MQTT_PUBLISH:
        gw_handle_publish(w, c, flags, body, len);
        break;
    case VG_MQTT_PUBACK:
    case VG_MQTT_PUBREC:
    case VG_MQTT_PUBREL:
    case VG_MQTT_PUBCOMP:
        gw_handle_ack(w, c, type, body, len);
        break;
    case VG_MQTT_SUBSCRIBE:
        gw_handle_subscribe(w, c, body, len, true);
        break;
    case VG_MQTT_UNSUBSCRIBE:
        gw_handle_subscribe(w, c, body, len, false);
        break;
    case VG_MQTT_PINGREQ:
        if (len != 0) {
            gw_conn_close(w, c, VG_CLOSE_MALFORMED);
            break;
        }
        if (vg_mqtt_encode_empty(buf, sizeof buf, VG_MQTT_PINGRESP) == 2)
            gw_send_bytes(w, c, buf, 2);
        break;
    case VG_MQTT_DISCONNECT:
        handle_disconnect(w, c, body, len);
        break;
    case VG_MQTT_AUTH:
        /* No enhanced authentication was negotiated (CONNECT with an
         * authentication method is refused), so AUTH is never valid. */
        gw_conn_close_why(w, c, c->level == VG_MQTT_V5 ? VG_CLOSE_PROTOCOL : VG_CLOSE_MALFORMED, "unexpected AUTH");
        break;
    default:
        /* CONNECT twice, server-to-client packet types. */
        gw_conn_close(w, c, VG_CLOSE_PROTOCOL);
        break;
    }
}

/* Detaches c from its session: the session goes offline (kept if it has an
 * expiry interval, ended otherwise) and the will is published now, later
 * (5.0 will delay) or not at all (normal DISCONNECT). */
void gw_conn_detach(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    session_t *se = c->sess;
    vg_msg_t *will = c->will;
    c->will = NULL;
    if (!se) {
        vg_msg_unref(will);
        return;
    }
    bool abnormal = !c->clean_disconnect;
    bool publish_now = false, end = false;
    int64_t now = gw_now_wall_ms();
    pthread_mutex_lock(&se->mu);
    if (se->online && se->owner == CONN_TOK(w->id, c->slot, c->gen)) {
        __atomic_store_n(&se->online, false, __ATOMIC_RELAXED);
        se->offline_since_ms = now;
        end = se->expiry_s == 0;
        if (!end) {
            atomic_fetch_add_explicit(&s->st_offline, 1, memory_order_relaxed);
            gw_session_persist(s, se);
            if (se->expiry_s != EXPIRY_NEVER)
                gw_hk_push(s, se, HK_EXPIRE, now + (int64_t)se->expiry_s * 1000);
        }
        if (will && abnormal) {
            if (c->will_delay && !end) {
                se->pending_will = will;
                will = NULL;
                gw_hk_push(s, se, HK_WILL, now + (int64_t)c->will_delay * 1000);
            } else {
                publish_now = true;
            }
        }
    } else if (will && abnormal && c->will_delay == 0) {
        /* Taken over: the old connection's will goes out unless it is
         * delayed (the session was resumed within the delay, §3.1.3.2.2). */
        publish_now = true;
    }
    pthread_mutex_unlock(&se->mu);
    if (publish_now && will)
        gw_publish_server_msg(s, w, will);
    vg_msg_unref(will);
    c->sess = NULL;
    if (end)
        gw_session_end_if_offline(s, se);
    gw_session_unref(s, se);
}

/* ITEM_TAKEOVER (see connect_wait_takeover), on the old connection's worker. */
void gw_takeover_resume(worker_t *w, uint64_t tok);
void gw_takeover_item(worker_t *w, uint64_t old, uint64_t waiter)
{
    struct vg_server *s = w->srv;
    conn_t *oc = gw_conn_lookup(w, old);
    if (oc && oc->state == ST_ACTIVE)
        gw_conn_drain_input(w, oc);
    if (oc && oc->state == ST_ACTIVE)
        gw_conn_close(w, oc, VG_CLOSE_TAKEOVER);
    /* Leave the session now, not when it is torn down at the end of the
     * round: the waiting CONNECT must find it offline (or ended). */
    if (oc)
        gw_conn_detach(w, oc);
    uint32_t wi = TOK_WORKER(waiter);
    if (wi == w->id) {
        gw_takeover_resume(w, waiter);
        return;
    }
    item_t it = {.kind = ITEM_TAKEOVER_DONE, .token = waiter};
    if (wi < s->nworkers && gw_inbox_post(&s->workers[wi], &it, 1) != VG_OK)
        VG_WARN(MOD, "out of memory answering a takeover: the new connection waits for its connect timeout");
}

/* ITEM_TAKEOVER_DONE: the waiting CONNECT runs again. */
void gw_takeover_resume(worker_t *w, uint64_t tok)
{
    conn_t *c = gw_conn_lookup(w, tok);
    if (!c || c->state != ST_NEW || !c->takeover_wait)
        return;
    c->takeover_wait = false;
    gw_process_input(w, c);
    if (c->state != ST_CLOSING && !c->takeover_wait)
        gw_epoll_set(w, c);
}
