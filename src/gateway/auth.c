/* auth.c — who a connection is and what it may do: the auth hook asked at
 * CONNECT (answering at once, or later from another thread while the
 * CONNECT waits), the principal it returns kept with the connection, and
 * the authorization hook asked for every PUBLISH, SUBSCRIBE filter and
 * delivery.
 *
 * Why a CONNECT can wait: checking a password means an argon2id hash, tens
 * of milliseconds of CPU on purpose, and a refusal after repeated failures
 * is held back deliberately; neither may run on an I/O worker. The wait
 * uses the takeover's mechanism (connect.c): the connection stops reading,
 * its CONNECT stays first in c->in, and once the answer arrives
 * (ITEM_AUTH_DONE) the CONNECT runs again from the start and finds the
 * answer kept in c->sec.
 *
 * Owns: xport_t's auth fields and principal; the auth and denial counters.
 * Not: passwords, certificates, policies (the application's hooks). */
#include "gateway/gw.h"

#include "sec/audit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

gw_sec_t *gw_conn_sec(conn_t *c)
{
    if (!c->sec)
        c->sec = vg_calloc(VG_MEM_MQTT, 1, sizeof *c->sec);
    return c->sec;
}

/* The peer's address (into ss) as "ADDR:PORT" and whether it is a
 * loopback one. */
static bool peer_of(int fd, struct sockaddr_storage *ss, char *buf, size_t cap)
{
    socklen_t sl = sizeof *ss;
    buf[0] = 0;
    memset(ss, 0, sizeof *ss);
    if (getpeername(fd, (struct sockaddr *)ss, &sl) != 0)
        return false;
    vg_audit_format_addr((const struct sockaddr *)ss, buf, cap);
    if (ss->ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((struct sockaddr_in6 *)ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
    }
    return false;
}

/* Asks the auth hook about c: its CONNECT's fields, or an HTTP request's
 * (no client id, the bearer token as the password). */
static int auth_ask(worker_t *w, conn_t *c, const char *id, size_t idlen, const char *user, size_t ulen,
                    const uint8_t *pass, size_t plen)
{
    struct vg_server *s = w->srv;
    if (!s->o.auth)
        return AUTH_ACCEPTED;
    if (c->sec && c->sec->auth != AUTH_NONE)
        return c->sec->auth; /* the answer of an earlier run of this CONNECT */
    gw_sec_t *x = gw_conn_sec(c);
    if (!x)
        return VG_ENOMEM;
    char peer[INET6_ADDRSTRLEN + 16];
    vg_server_auth_t req = {0};
    req.token = CONN_TOK(w->id, c->slot, c->gen);
    req.client_id = id;
    req.client_id_len = idlen;
    req.username = user;
    req.username_len = ulen;
    req.password = pass;
    req.password_len = plen;
    if (x->tls_cert) {
        req.cert_cn = x->cert_cn;
        req.cert_cn_len = strlen(x->cert_cn);
        req.cert_sha256 = x->cert_sha256;
        req.issuer_sha256 = x->issuer_known ? x->issuer_sha256 : NULL;
        req.cert = x->ssl ? SSL_get0_peer_certificate(x->ssl) : NULL;
    }
    int pl = L_PLAIN(c->listener);
    req.listener = pl == L_WS ? VG_LISTEN_WS : pl == L_HTTP ? VG_LISTEN_HTTP : VG_LISTEN_MQTT;
    req.tls = L_IS_TLS(c->listener);
    struct sockaddr_storage ss;
    req.loopback = peer_of(c->fd, &ss, peer, sizeof peer);
    req.peer = peer;
    req.peer_addr = ss.ss_family ? (const struct sockaddr *)&ss : NULL;
    req.protocol_level = c->level;
    vg_server_auth_result_t res = {0};
    int rc = s->o.auth(s->o.auth_ctx, &req, &res);
    if (rc == VG_AGAIN) {
        x->auth = AUTH_WAIT;
        vg_msg_unref(c->will); /* handle_connect runs again and makes it anew */
        c->will = NULL;
        c->will_delay = 0;
        c->takeover_wait = true; /* "its CONNECT (request) waits": read nothing until the answer */
        /* The answer may be held back on purpose (repeated failures): the
         * connect deadline gives way to the auth deadline meanwhile. */
        uint64_t until = gw_now_mono_ms() + s->o.auth_timeout_ms;
        if (c->timer.deadline_ms < until)
            c->timer.deadline_ms = until;
        gw_epoll_set(w, c);
        return AUTH_WAIT;
    }
    if (rc == VG_OK && res.status == 0) {
        x->auth = AUTH_ACCEPTED;
        x->principal = res.principal;
        atomic_fetch_add_explicit(&w->st_auth_ok, 1, memory_order_relaxed);
        return AUTH_ACCEPTED;
    }
    if (res.principal && s->o.principal_free)
        s->o.principal_free(s->o.auth_ctx, res.principal);
    x->auth = AUTH_REFUSED;
    x->auth_v3_rc = rc == VG_OK && res.v3_rc ? res.v3_rc : VG_MQTT_CONNACK_NOT_AUTHORIZED;
    x->auth_v5_rc = rc == VG_OK && res.v5_rc ? res.v5_rc : VG_RC_NOT_AUTHORIZED;
    x->auth_why = rc == VG_OK && res.why ? res.why : "not authorized";
    atomic_fetch_add_explicit(&w->st_auth_refused, 1, memory_order_relaxed);
    return AUTH_REFUSED;
}

int gw_auth_connect(worker_t *w, conn_t *c, const vg_mqtt_connect_t *ck, const char *id, size_t idlen)
{
    return auth_ask(w, c, id, idlen, ck->has_username ? (const char *)ck->username.p : NULL,
                    ck->has_username ? ck->username.len : 0, ck->has_password ? ck->password.p : NULL,
                    ck->has_password ? ck->password.len : 0);
}

int gw_auth_http(worker_t *w, conn_t *c)
{
    xport_t *x = c->x;
    return auth_ask(w, c, NULL, 0, NULL, 0, x->bearer_len ? (const uint8_t *)x->bearer : NULL, x->bearer_len);
}

void vg_server_auth_done(vg_server_t *s, uint64_t token, const vg_server_auth_result_t *res)
{
    item_t it = {.kind = ITEM_AUTH_DONE, .token = token, .status = res->status};
    if (res->status == 0) {
        it.principal = res->principal;
    } else {
        it.why = res->why ? res->why : "not authorized";
        it.qos = res->v3_rc ? res->v3_rc : VG_MQTT_CONNACK_NOT_AUTHORIZED;
        it.retain = res->v5_rc ? res->v5_rc : VG_RC_NOT_AUTHORIZED;
    }
    uint32_t wi = TOK_WORKER(token);
    if (wi < s->nworkers && gw_inbox_post(&s->workers[wi], &it, 1) == VG_OK)
        return;
    /* Nobody can take it: the CONNECT waits for its connect timeout. */
    if (res->status == 0 && res->principal && s->o.principal_free)
        s->o.principal_free(s->o.auth_ctx, res->principal);
    VG_WARN(MOD, "out of memory answering an authentication: the connection waits for its connect timeout");
}

void gw_auth_done_item(worker_t *w, const item_t *it)
{
    struct vg_server *s = w->srv;
    conn_t *c = gw_conn_lookup(w, it->token);
    if (!c || (c->state != ST_NEW && c->state != ST_ACTIVE) || !c->sec || c->sec->auth != AUTH_WAIT) {
        if (it->status == 0 && it->principal && s->o.principal_free)
            s->o.principal_free(s->o.auth_ctx, it->principal);
        return;
    }
    gw_sec_t *x = c->sec;
    if (it->status == 0) {
        x->auth = AUTH_ACCEPTED;
        x->principal = it->principal;
        atomic_fetch_add_explicit(&w->st_auth_ok, 1, memory_order_relaxed);
    } else {
        x->auth = AUTH_REFUSED;
        x->auth_v3_rc = it->qos;
        x->auth_v5_rc = it->retain;
        x->auth_why = it->why;
        atomic_fetch_add_explicit(&w->st_auth_refused, 1, memory_order_relaxed);
    }
    c->takeover_wait = false;
    gw_process_input(w, c); /* the CONNECT again, then what followed it */
    if (c->state != ST_CLOSING && !c->takeover_wait)
        gw_epoll_set(w, c);
}

bool gw_authorize(worker_t *w, conn_t *c, vg_server_action_t action, const uint8_t *topic, size_t len)
{
    struct vg_server *s = w->srv;
    if (!s->o.authz)
        return true;
    if (s->o.authz(s->o.auth_ctx, gw_principal(c), action, (const char *)topic, len))
        return true;
    atomic_fetch_add_explicit(&w->st_denied[action], 1, memory_order_relaxed);
    return false;
}

void gw_throttle(worker_t *w, conn_t *c, uint32_t ms)
{
    uint64_t now = gw_now_mono_ms();
    uint32_t until = (uint32_t)(now + ms);
    c->sec->throttled_until = until ? until : 1;
    atomic_fetch_add_explicit(&w->st_throttled, 1, memory_order_relaxed);
    /* The connection's one timer fires at the end of the wait; its own
     * deadline (keepalive) is put back then (on_timer in worker.c). */
    c->sec->throttled_deadline = c->timer.deadline_ms;
    vg_wheel_remove(&c->timer);
    vg_wheel_add(&w->wheel, &c->timer, now + ms);
    gw_epoll_set(w, c);
}

bool vg_server_kick(vg_server_t *s, const char *id, size_t len)
{
    bool found = false;
    pthread_mutex_lock(&s->ids_mu);
    uint64_t v = 0;
    if (vg_strmap_get(&s->ids, id, len, &v) == VG_OK) {
        session_t *se = (session_t *)(uintptr_t)v;
        pthread_mutex_lock(&se->mu);
        if (se->online) {
            item_t it = {.kind = ITEM_KICK, .token = se->owner, .status = VG_CLOSE_REVOKED};
            uint32_t wi = TOK_WORKER(se->owner);
            found = wi < s->nworkers && gw_inbox_post(&s->workers[wi], &it, 1) == VG_OK;
        }
        pthread_mutex_unlock(&se->mu);
    }
    pthread_mutex_unlock(&s->ids_mu);
    return found;
}

void gw_auth_release(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    if (!c->sec || !c->sec->principal)
        return;
    if (s->o.principal_free)
        s->o.principal_free(s->o.auth_ctx, c->sec->principal);
    c->sec->principal = NULL;
}
