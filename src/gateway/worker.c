/* worker.c — one I/O worker's event loop: epoll, the inbox other threads
 * post to (mutex + swapped arrays + eventfd, woken only when it was empty),
 * accepting connections (connection limits, the spare descriptor for
 * EMFILE), the timer wheel (keepalive, connect and linger deadlines), the
 * before-sleep flush of every connection written to this round, and the
 * routing of completions (vg_server_complete) to the worker that owns them.
 * Does not own: what happens to a connection's bytes (conn.c) or packets
 * (connect.c and the modules it dispatches to). */
#include "gateway/gw.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The worker running on this thread (NULL on other threads). */
static _Thread_local worker_t *tl_worker;

worker_t *gw_current_worker(const struct vg_server *s)
{
    return tl_worker && tl_worker->srv == s ? tl_worker : NULL;
}

void gw_wake(worker_t *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->efd, &one, sizeof one);
    (void)r; /* EAGAIN means the counter is already non-zero: it is awake */
}

/* Posts n items (core/mailbox: wakes the worker only when its inbox was
 * empty, so a burst costs one wake-up). */
int gw_inbox_post(worker_t *w, const item_t *items, size_t n)
{
    return vg_mailbox_post(&w->inbox, items, n);
}

/* A completion on the owning worker's own thread (a hook, the flush hook's
 * commit, gw_kv_wait with an answer known at once) waits on the worker's
 * local list: running it at once would release acknowledgements the
 * caller is still registering (it is re-entrant), and the inbox would cost
 * a lock and a wake-up of a thread that is already awake. */
static int defer_push(worker_t *w, uint64_t token, int status)
{
    if (w->ndeferred == w->deferred_cap) {
        size_t ncap = w->deferred_cap ? w->deferred_cap * 2 : 64;
        struct deferred *nd = vg_realloc(VG_MEM_MQTT, w->deferred, ncap * sizeof *nd);
        if (!nd)
            return VG_ENOMEM;
        w->deferred = nd;
        w->deferred_cap = ncap;
    }
    w->deferred[w->ndeferred++] = (struct deferred){token, status};
    return VG_OK;
}

static void run_deferred(worker_t *w)
{
    /* A completion can resume a paused connection whose packets report
     * more: the loop takes those too (by index: the array may grow). */
    for (size_t i = 0; i < w->ndeferred; i++) {
        struct deferred d = w->deferred[i];
        gw_complete_local(w, d.token, d.status);
    }
    w->ndeferred = 0;
}

void gw_worker_bind_thread(worker_t *w)
{
    tl_worker = w;
}

void vg_server_complete(vg_server_t *s, uint64_t token, int status)
{
    uint32_t wi = TOK_WORKER(token);
    if (wi >= s->nworkers)
        return;
    worker_t *w = &s->workers[wi];
    if (tl_worker == w && defer_push(w, token, status) == VG_OK)
        return;
    /* Another thread (or no memory for the local list): through the inbox,
     * which wakes the worker only if it was empty. */
    item_t it = {.kind = ITEM_COMPLETE, .token = token, .status = status};
    gw_inbox_post(w, &it, 1);
}

static int slot_alloc(worker_t *w, uint32_t *slot)
{
    if (w->nfree) {
        *slot = w->free_slots[--w->nfree];
        return VG_OK;
    }
    if (w->nslots == w->cap_slots) {
        uint32_t ncap = w->cap_slots ? w->cap_slots * 2 : 1024;
        if (ncap > 0xffffffu)
            return VG_ELIMIT;
        conn_t **nc = vg_realloc(VG_MEM_MQTT, w->conns, ncap * sizeof *nc);
        if (!nc)
            return VG_ENOMEM;
        w->conns = nc;
        uint16_t *ng = vg_realloc(VG_MEM_MQTT, w->slot_gen, ncap * sizeof *ng);
        if (!ng)
            return VG_ENOMEM;
        w->slot_gen = ng;
        uint32_t *nf = vg_realloc(VG_MEM_MQTT, w->free_slots, ncap * sizeof *nf);
        if (!nf)
            return VG_ENOMEM;
        w->free_slots = nf;
        for (uint32_t i = w->cap_slots; i < ncap; i++) {
            w->conns[i] = NULL;
            w->slot_gen[i] = 0;
        }
        w->cap_slots = ncap;
    }
    *slot = w->nslots++;
    return VG_OK;
}

int gw_conn_add(worker_t *w, int fd, int li, conn_t **out)
{
    struct vg_server *s = w->srv;
    uint32_t slot;
    conn_t *c = vg_calloc(VG_MEM_MQTT, 1, sizeof *c);
    int pl = L_PLAIN(li);
    bool need_x = pl != L_MQTT;
    bool need_sec = L_IS_TLS(li) || s->o.rl_conn || s->o.rl_publish;
    if (c && need_x) {
        c->x = vg_calloc(VG_MEM_MQTT, 1, sizeof *c->x);
        if (c->x) {
            c->transport = pl == L_WS ? TR_WS_HANDSHAKE : TR_HTTP;
            vg_http_parser_init(&c->x->hp, c->x->headers, HTTP_MAX_HEADERS, VG_HTTP_DEFAULT_MAX_HEAD,
                                pl == L_HTTP ? s->o.max_packet_size : 0);
        }
    }
    if (c && need_sec)
        c->sec = vg_calloc(VG_MEM_MQTT, 1, sizeof *c->sec);
    if (!c || (need_x && !c->x) || (need_sec && !c->sec) || slot_alloc(w, &slot) != VG_OK) {
        if (c) {
            vg_free(c->x);
            vg_free(c->sec);
        }
        vg_free(c);
        return VG_ENOMEM;
    }
    c->fd = fd;
    if (L_IS_TLS(li) && gw_tls_attach(w, c) != VG_OK) {
        w->free_slots[w->nfree++] = slot;
        vg_free(c->x);
        vg_free(c->sec);
        vg_free(c);
        return VG_ENOMEM;
    }
    if (s->o.rl_publish)
        vg_rl_publish_init(s->o.rl_publish, &c->sec->pub, gw_now_mono_ms());
    c->listener = (uint8_t)li;
    c->slot = slot;
    c->gen = w->slot_gen[slot];
    c->state = ST_NEW;
    w->conns[slot] = c;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        w->conns[slot] = NULL;
        w->free_slots[w->nfree++] = slot;
        if (c->sec)
            SSL_free(c->sec->ssl);
        vg_free(c->x);
        vg_free(c->sec);
        vg_free(c);
        return VG_EIO;
    }
    atomic_fetch_add_explicit(&w->st_conns_current, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->st_conns_total, 1, memory_order_relaxed);
    vg_wheel_add(&w->wheel, &c->timer,
                 vg_clock_mono_ns() / 1000000 +
                     (L_IS_TLS(li) ? s->o.tls_handshake_timeout_ms : s->o.connect_timeout_ms));
    if (out)
        *out = c;
    return VG_OK;
}

static void accept_ready(worker_t *w, int li)
{
    struct vg_server *s = w->srv;
    for (int n = 0; n < 256; n++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(w->lfd[li], (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: use the spare to accept and close, so the
                 * client hears a refusal instead of hanging in the backlog and
                 * this loop does not spin on a permanently readable socket. */
                atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
                if (w->spare_fd >= 0) {
                    close(w->spare_fd);
                    int x = accept(w->lfd[li], NULL, NULL);
                    if (x >= 0)
                        close(x);
                    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                VG_WARN(MOD, "out of file descriptors: refusing connection");
                continue;
            }
            return; /* EAGAIN or a transient error */
        }
        unsigned total = atomic_fetch_add_explicit(&s->conns_total, 1, memory_order_relaxed) + 1;
        unsigned mine = atomic_fetch_add_explicit(&s->conns_listener[li], 1, memory_order_relaxed) + 1;
        if (total > s->o.max_connections || (s->max_listener[li] && mine > s->max_listener[li]) ||
            atomic_load(&s->quiescing)) {
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&s->conns_listener[li], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
            /* RST rather than FIN: the client learns at once it was refused. */
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(fd);
            continue;
        }
        /* Per-source limits: a source opening connections too fast, or
         * holding too many, is refused before it costs a TLS handshake. */
        if (s->o.rl_conn && vg_rl_connect(s->o.rl_conn, (struct sockaddr *)&peer, gw_now_mono_ms()) != VG_RL_OK) {
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&s->conns_listener[li], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->st_rl_refused, 1, memory_order_relaxed);
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = NULL;
        int ar = gw_conn_add(w, fd, li, &c);
        if (ar != VG_OK) {
            atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&s->conns_listener[li], 1, memory_order_relaxed);
            if (ar == VG_ENOMEM)
                atomic_fetch_add_explicit(&w->st_refused, 1, memory_order_relaxed);
            if (s->o.rl_conn)
                vg_rl_disconnect(s->o.rl_conn, (struct sockaddr *)&peer, gw_now_mono_ms());
            close(fd);
        } else if (s->o.rl_conn) {
            c->sec->peer = peer;
            c->sec->rl_counted = true;
        }
    }
}

static void on_timer(void *ctx, vg_wheel_node_t *n)
{
    worker_t *w = ctx;
    conn_t *c = (conn_t *)((char *)n - offsetof(conn_t, timer));
    uint64_t now = gw_now_mono_ms();
    if (c->state == ST_CLOSING)
        return;
    if (c->sec && c->sec->throttled_until && (uint32_t)now - c->sec->throttled_until < 0x80000000u) {
        /* The publish-rate wait is over: read on (gw_throttle). */
        c->sec->throttled_until = 0;
        uint64_t own = c->sec->throttled_deadline;
        n->deadline_ms = own;
        gw_process_input(w, c);
        if (c->state == ST_CLOSING)
            return;
        if (!c->sec->throttled_until) {
            gw_epoll_set(w, c);
            if (!vg_wheel_linked(n))
                vg_wheel_add(&w->wheel, n, n->deadline_ms > now ? n->deadline_ms : now);
        }
        return;
    }
    if (n->deadline_ms > now) {
        vg_wheel_add(&w->wheel, n, n->deadline_ms);
        return;
    }
    if (c->state == ST_LINGER) {
        atomic_fetch_add_explicit(&w->st_linger_deadline, 1, memory_order_relaxed);
        gw_conn_free(w, c);
        return;
    }
    if (c->sec && c->sec->tls_handshake) {
        gw_tls_count_fail(w, c, VG_TLS_FAIL_TIMEOUT);
        c->sec->tls_dead = true;
        gw_conn_close(w, c, VG_CLOSE_TLS);
    } else if (c->transport == TR_HTTP)
        gw_conn_close(w, c, c->ack_count ? VG_CLOSE_IO : VG_CLOSE_HTTP_DONE);
    else
        gw_conn_close(w, c, c->state == ST_NEW ? VG_CLOSE_CONNECT_TIMEOUT : VG_CLOSE_KEEPALIVE);
}

/* A delivery posted by another thread: the session may have moved or gone
 * offline since; follow it. */
static void deliver_item(worker_t *w, item_t *it)
{
    struct vg_server *s = w->srv;
    session_t *se = it->sess;
    pthread_mutex_lock(&se->mu);
    if (!se->dead && se->online && TOK_WORKER(se->owner) != w->id) {
        pthread_mutex_unlock(&se->mu);
        /* Moved to another worker (reconnected there): hand it on (that
         * path stores its own copy, so drop the one stored for this hop). */
        if (it->kvsub)
            gw_kv_del(s, NS_OUT, se->id, se->id_len, it->kvsub);
        gw_deliver_to_session(s, NULL, se, it->msg, it->qos, it->retain, it->subids, it->nsubids);
        vg_msg_unref(it->msg);
        return;
    }
    if (!se->dead) {
        conn_t *c = se->online ? gw_conn_lookup(w, se->owner) : NULL;
        if (c && c->sess == se && c->state == ST_ACTIVE)
            gw_session_send(w, c, se, it->msg, it->qos, it->retain, it->subids, it->nsubids, it->kvsub);
        else if (it->qos > 0 && (se->persistent || se->online))
            gw_session_enqueue(s, se, it->msg, it->qos, it->retain, it->subids, it->nsubids, it->kvsub);
        else if (it->kvsub)
            gw_kv_del(s, NS_OUT, se->id, se->id_len, it->kvsub);
    } else if (it->kvsub) {
        gw_kv_del(s, NS_OUT, se->id, se->id_len, it->kvsub);
    }
    pthread_mutex_unlock(&se->mu);
    gw_session_unref(s, se);
    vg_msg_unref(it->msg);
}

static void drain_inbox(worker_t *w)
{
    void *taken = NULL;
    size_t n = vg_mailbox_take(&w->inbox, &taken);
    item_t *items = taken;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->kind == ITEM_COMPLETE) {
            gw_complete_local(w, it->token, it->status);
        } else if (it->kind == ITEM_DELIVER) {
            deliver_item(w, it);
        } else if (it->kind == ITEM_DELIVER_BATCH) {
            batch_t *b = it->batch;
            for (uint32_t k = 0; k < b->n; k++) {
                item_t one = {.kind = ITEM_DELIVER, .qos = b->v[k].qos, .retain = b->v[k].retain,
                              .nsubids = b->v[k].nsubids, .sess = b->v[k].se, .msg = it->msg, .kvsub = b->v[k].kvsub};
                memcpy(one.subids, b->v[k].subids, sizeof one.subids);
                vg_msg_ref(it->msg);
                deliver_item(w, &one);
            }
            vg_free(b);
            vg_msg_unref(it->msg);
        } else if (it->kind == ITEM_KICK) {
            conn_t *c = gw_conn_lookup(w, it->token);
            if (c && it->status == VG_CLOSE_REVOKED) {
                if (c->level == VG_MQTT_V5)
                    gw_send_disconnect(w, c, VG_RC_NOT_AUTHORIZED, "revoked");
                c->linger = true;
                gw_conn_close_why(w, c, VG_CLOSE_REVOKED, "revoked");
            } else if (c) {
                gw_conn_close(w, c, VG_CLOSE_TAKEOVER);
            }
        } else if (it->kind == ITEM_TAKEOVER) {
            gw_takeover_item(w, it->token, it->waiter);
        } else if (it->kind == ITEM_TAKEOVER_DONE) {
            gw_takeover_resume(w, it->token);
        } else if (it->kind == ITEM_AUTH_DONE) {
            gw_auth_done_item(w, it);
        }
    }
}

static void quiesce_worker(worker_t *w)
{
    for (int li = 0; li < L__COUNT; li++) {
        if (w->lfd[li] >= 0) {
            epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd[li], NULL);
            close(w->lfd[li]);
            w->lfd[li] = -1;
        }
    }
    for (uint32_t i = 0; i < w->nslots; i++) {
        conn_t *c = w->conns[i];
        if (c && !c->quiesced && c->state != ST_LINGER) {
            c->quiesced = true;
            if (c->state != ST_CLOSING)
                gw_epoll_set(w, c);
        }
    }
}

/* Calls the flush hook of every hook that ran this round. */
static void run_flush_hooks(worker_t *w)
{
    struct vg_server *s = w->srv;
    uint32_t ran = w->hooks_ran;
    w->hooks_ran = 0;
    for (uint32_t i = 0; ran; i++, ran >>= 1)
        if ((ran & 1) && s->hooks[i].flush)
            s->hooks[i].flush(s->hooks[i].ctx);
}

void gw_worker_round(worker_t *w, int max_wait_ms)
{
    struct vg_server *s = w->srv;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t now = vg_clock_mono_ns() / 1000000;
    /* Closing a connection can queue output for others (its will) after
     * this round's flush: then look for events without sleeping. */
    int timeout = w->flush_head || w->close_head || w->again_head ? 0 : vg_wheel_timeout(&w->wheel, now);
    if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms))
        timeout = max_wait_ms;
    int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout);
    for (int i = 0; i < n; i++) {
        void *p = evs[i].data.ptr;
        if (p >= (void *)&w->lfd[0] && p < (void *)&w->lfd[L__COUNT]) {
            accept_ready(w, (int)((int *)p - w->lfd));
        } else if (p == &w->efd) {
            drain_inbox(w);
        } else {
            conn_t *c = p;
            if (c->state == ST_LINGER) {
                gw_linger_ready(w, c, evs[i].events);
                continue;
            }
            if (c->state == ST_CLOSING)
                continue;
            if (c->takeover_wait && (evs[i].events & (EPOLLHUP | EPOLLERR))) {
                gw_conn_close(w, c, VG_CLOSE_PEER_CLOSED); /* gone while its CONNECT waited */
                continue;
            }
            if (c->sec && c->sec->ssl) {
                if (c->sec->tls_handshake) {
                    gw_tls_handshake(w, c);
                    goto next;
                }
                if (c->sec->tls_read_wants_write && (evs[i].events & EPOLLOUT)) {
                    c->sec->tls_read_wants_write = false;
                    gw_read_ready(w, c, READ_BUDGET);
                    if (c->state == ST_CLOSING)
                        goto next;
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                gw_read_ready(w, c, READ_BUDGET);
            if (c->state != ST_CLOSING && (evs[i].events & EPOLLOUT))
                gw_flush_mark(w, c);
        }
    next:
        /* After each event, never inside its handling (see defer_push). */
        if (w->ndeferred)
            run_deferred(w);
    }
    if (w->again_head) {
        gw_tls_run_again(w);
        if (w->ndeferred)
            run_deferred(w);
    }
    now = vg_clock_mono_ns() / 1000000;
    vg_wheel_advance(&w->wheel, now, on_timer, w);
    /* Commit this iteration's telemetry here when the stream is idle:
     * the PUBACKs it releases for this worker's connections are queued
     * directly and leave in the flush below, with no thread hand-off. */
    /* The completions a commit made here resume paused connections, whose
     * buffered packets can call hooks again: those are committed in this
     * round too (nothing else would until the worker wakes again). Ends
     * when a round brings no completion (none committed, or the stream's
     * committer leads: its completions come through the inbox). */
    while (w->hooks_ran || w->ndeferred) {
        if (w->hooks_ran)
            run_flush_hooks(w);
        if (w->ndeferred)
            run_deferred(w);
    }
    /* Before sleeping: write everything queued this round in one go per
     * connection (PUBACKs of a whole group commit coalesce here). */
    while (w->flush_head) {
        conn_t *c = w->flush_head;
        w->flush_head = c->flush_next;
        c->in_flush = false;
        if (c->state == ST_CLOSING)
            continue;
        if (!gw_conn_flush(w, c))
            gw_conn_close(w, c, VG_CLOSE_IO);
        else if (c->congested_at && c->out_len - c->out_off < s->o.max_outbuf)
            gw_out_drained(w, c);
    }
    gw_process_closes(w);
}

void *gw_worker_main(void *arg)
{
    worker_t *w = arg;
    struct vg_server *s = w->srv;
    gw_worker_bind_thread(w);
    char name[16];
    snprintf(name, sizeof name, "vg-mqtt-w%u", w->id);
    pthread_setname_np(pthread_self(), name);
    bool quiesced = false;
    while (!atomic_load_explicit(&s->stopping, memory_order_acquire)) {
        if (!quiesced && atomic_load(&s->quiescing)) {
            quiesce_worker(w);
            quiesced = true;
            atomic_fetch_add(&s->quiesced_workers, 1);
        }
        gw_worker_round(w, -1);
    }
    /* Shutdown: deliver what is queued (PUBACKs of records made durable
     * during the stop), then close every connection. */
    drain_inbox(w);
    run_deferred(w);
    for (uint32_t i = 0; i < w->nslots; i++) {
        conn_t *c = w->conns[i];
        if (!c)
            continue;
        if (c->state == ST_LINGER) {
            gw_conn_free(w, c);
            continue;
        }
        if (c->state != ST_CLOSING) {
            int fl = fcntl(c->fd, F_GETFL);
            fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
            struct timeval tv = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            gw_conn_flush(w, c);
            gw_conn_close(w, c, VG_CLOSE_SHUTDOWN);
        }
    }
    w->flush_head = NULL;
    gw_process_closes(w);
    gw_worker_bind_thread(NULL);
    return NULL;
}
