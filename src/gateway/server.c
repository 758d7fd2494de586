/* server.c — the gateway's public face: options and their defaults,
 * vg_server_new (listening sockets, workers' epoll sets, the state store
 * and loading it), start, quiesce, stop and free, and the stats snapshot.
 * Does not own: what runs on the threads it starts (worker.c, housekeep.c)
 * or the state it loads (persist.c). See server.h for the contract. */
#include "gateway/gw.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

const char *vg_close_reason_name(vg_close_reason_t r)
{
    static const char *const names[VG_CLOSE__COUNT] = {
        "client",        "peer_closed",      "malformed",       "too_large",   "protocol_error",
        "keepalive_timeout", "connect_timeout", "takeover",     "io_error",    "slow_consumer",
        "shutdown",      "rejected",         "receive_maximum", "topic_alias", "disconnect_with_will",
        "session_expired", "ws_protocol_error", "http_bad_request", "http_done", "tls",
        "certificate_refused", "not_authorized", "revoked"};
    return (unsigned)r < VG_CLOSE__COUNT ? names[r] : "?";
}

void vg_server_opts_default(vg_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->listen_host = "127.0.0.1";
    o->listen_port = 1883;
    o->max_packet_size = 128 * 1024;
    o->max_inflight = 1024;
    o->max_subs_per_packet = 64;
    o->max_outbuf = 4 * 1024 * 1024;
    o->slow_consumer_ms = 30000;
    o->connect_timeout_ms = 10000;
    o->tls_handshake_timeout_ms = 5000;
    o->auth_timeout_ms = 35000;
    o->mqtts_port = 8883;
    o->wss_port = 8084;
    o->https_port = 8443;
    o->linger_ms = 2000;
    o->linger_bytes = 1024 * 1024;
    o->max_inflight_out = 64;
    o->max_queued_per_client = 1000;
    o->max_queued_bytes = 256u * 1024 * 1024;
    o->topic_alias_max = 64;
    o->state_commit_us = 0;
}

static int listen_socket(const char *host, uint16_t port, int *out)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char portbuf[8];
    snprintf(portbuf, sizeof portbuf, "%u", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, portbuf, &hints, &ai);
    if (rc != 0 || !ai) {
        VG_ERROR(MOD, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return VG_EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return VG_EIO;
    }
    int one = 1;
    /* No SO_REUSEPORT on purpose: with it a second server started on the
     * same port would silently share the traffic instead of failing. One
     * socket is shared by every worker's epoll with EPOLLEXCLUSIVE instead. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        VG_ERROR(MOD, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return VG_EIO;
    }
    freeaddrinfo(ai);
    *out = fd;
    return VG_OK;
}

/* Copies the hook table, checking every filter. */
static int hooks_copy(struct vg_server *s, const vg_server_opts_t *opts)
{
    if (opts->nhooks > VG_SERVER_MAX_HOOKS) {
        VG_ERROR(MOD, "%u hooks: at most %d", opts->nhooks, VG_SERVER_MAX_HOOKS);
        return VG_EINVAL;
    }
    for (uint32_t i = 0; i < opts->nhooks; i++) {
        const vg_server_hook_t *h = &opts->hooks[i];
        size_t fl = h->filter ? strlen(h->filter) : 0;
        if (!h->fn || fl > 0xffff || !vg_mqtt_filter_valid((const uint8_t *)h->filter, fl)) {
            VG_ERROR(MOD, "hook %u: \"%s\" is not a valid topic filter", i, h->filter ? h->filter : "");
            return VG_EINVAL;
        }
        gw_hook_t *g = &s->hooks[s->nhooks];
        g->filter = vg_strndup(VG_MEM_MQTT, h->filter, fl);
        if (!g->filter)
            return VG_ENOMEM;
        g->flen = (uint16_t)fl;
        g->exact = !memchr(h->filter, '+', fl) && !memchr(h->filter, '#', fl);
        g->fn = h->fn;
        g->flush = h->flush;
        g->ctx = h->ctx;
        s->nhooks++;
    }
    return VG_OK;
}

int vg_server_new(const vg_server_opts_t *opts, vg_server_t **out)
{
    int rc = VG_ENOMEM;
    struct vg_server *s = vg_calloc(VG_MEM_MQTT, 1, sizeof *s);
    if (!s)
        return VG_ENOMEM;
    s->o = *opts;
    s->nworkers = opts->workers ? opts->workers : (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->nworkers < 1)
        s->nworkers = 1;
    if (s->nworkers > MAX_WORKERS)
        s->nworkers = MAX_WORKERS;
    if (!s->o.max_connections)
        s->o.max_connections = 1000000;
    if (s->o.max_inflight < 1)
        s->o.max_inflight = 1;
    if (s->o.max_outbuf > MAX_OUTBUF_LIMIT)
        s->o.max_outbuf = MAX_OUTBUF_LIMIT;
    s->max_listener[L_WS] = s->max_listener[L_WSS] = opts->max_connections_ws;
    s->max_listener[L_HTTP] = s->max_listener[L_HTTPS] = opts->max_connections_http;
    if ((opts->mqtts_host || opts->wss_host || opts->https_host) && !opts->tls) {
        VG_ERROR(MOD, "a TLS listener needs a TLS context (certificate and key)");
        vg_free(s);
        return VG_EINVAL;
    }
    if (s->o.max_inflight_out < 1)
        s->o.max_inflight_out = 1;
    if (s->o.max_subs_per_packet < 1)
        s->o.max_subs_per_packet = 1;
    pthread_rwlock_init(&s->tree_lock, NULL);
    pthread_mutex_init(&s->ids_mu, NULL);
    pthread_mutex_init(&s->kvw_mu, NULL);
    pthread_mutex_init(&s->hk_mu, NULL);
    pthread_cond_init(&s->hk_cv, NULL);
    vg_strmap_init(&s->ids, VG_MEM_MQTT);
    vg_strmap_init(&s->groups, VG_MEM_MQTT);
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->ep = w->spare_fd = -1;
        for (int li = 0; li < L__COUNT; li++)
            w->lfd[li] = -1;
        /* The eventfd first: the inbox (core/mailbox) wakes the worker by it. */
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        vg_mailbox_init(&w->inbox, sizeof(item_t), VG_MEM_MQTT, NULL, w->efd);
    }
    s->o.hooks = NULL; /* the copy in s->hooks is the one used */
    s->o.nhooks = 0;
    if ((rc = hooks_copy(s, opts)) != VG_OK)
        goto cleanup;
    rc = VG_ENOMEM;
    if (vg_topic_tree_new(&s->tree) != VG_OK)
        goto cleanup;
    vg_retain_limits_t rl = {.max_messages = opts->max_retained, .max_bytes = opts->max_retained_bytes};
    if ((rc = vg_retain_new(&rl, &s->retain)) != VG_OK)
        goto cleanup;
    if (opts->state_path) {
        vg_kv_opts_t ko = {.on_durable = gw_on_kv_durable, .ctx = s, .max_pending_bytes = opts->state_max_pending_bytes};
        if ((rc = vg_kv_open(opts->state_path, &ko, &s->kv)) != VG_OK)
            goto cleanup;
        if ((rc = gw_load_state(s)) != VG_OK)
            goto cleanup;
    }
    rc = VG_ENOMEM;
    uint64_t now = gw_now_mono_ms();
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->srv = s;
        w->id = i;
        w->rbuf = vg_malloc(VG_MEM_MQTT, RBUF_SIZE);
        w->route = vg_calloc(VG_MEM_MQTT, 1, sizeof *w->route);
        w->sub_scratch = vg_calloc(VG_MEM_MQTT, s->o.max_subs_per_packet, sizeof *w->sub_scratch);
        w->rc_scratch = vg_malloc(VG_MEM_MQTT, s->o.max_subs_per_packet);
        if (!w->rbuf || !w->route || !w->sub_scratch || !w->rc_scratch ||
            vg_wheel_init(&w->wheel, 4096, WHEEL_TICK_MS, now) != VG_OK)
            goto cleanup;
        const char *hosts[L__COUNT] = {opts->listen_host, opts->ws_host,  opts->http_host,
                                       opts->mqtts_host,  opts->wss_host, opts->https_host};
        uint16_t ports[L__COUNT] = {opts->listen_port, opts->ws_port,  opts->http_port,
                                    opts->mqtts_port,  opts->wss_port, opts->https_port};
        for (int li = 0; li < L__COUNT; li++) {
            if (!hosts[li])
                continue;
            if (i == 0) {
                rc = listen_socket(hosts[li], ports[li], &w->lfd[li]);
                if (rc)
                    goto cleanup;
            } else {
                w->lfd[li] = dup(s->workers[0].lfd[li]);
            }
        }
        rc = VG_EIO;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (w->ep < 0 || w->efd < 0)
            goto cleanup;
        /* EPOLLEXCLUSIVE: a new connection wakes one worker, not all. */
        for (int li = 0; li < L__COUNT; li++) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &w->lfd[li]};
            if (w->lfd[li] >= 0 && epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd[li], &ev) < 0)
                goto cleanup;
        }
        struct epoll_event ev2 = {.events = EPOLLIN, .data.ptr = &w->efd};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev2) < 0)
            goto cleanup;
    }
    *out = s;
    return VG_OK;
cleanup:
    vg_server_free(s);
    return rc;
}

int vg_server_start(vg_server_t *s)
{
    if (pthread_create(&s->hk_thread, NULL, gw_hk_main, s) != 0)
        return VG_EIO;
    s->hk_started = true;
    for (uint32_t i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, gw_worker_main, &s->workers[i]) != 0) {
            atomic_store(&s->stopping, true);
            for (uint32_t j = 0; j < i; j++) {
                gw_wake(&s->workers[j]);
                pthread_join(s->workers[j].thread, NULL);
            }
            pthread_cond_signal(&s->hk_cv);
            pthread_join(s->hk_thread, NULL);
            s->hk_started = false;
            return VG_EIO;
        }
    }
    s->started = true;
    return VG_OK;
}

void vg_server_quiesce(vg_server_t *s)
{
    if (!s->started)
        return;
    atomic_store(&s->quiescing, true);
    for (uint32_t i = 0; i < s->nworkers; i++)
        gw_wake(&s->workers[i]);
    /* Wait (bounded) until every worker stopped accepting and reading. */
    for (int i = 0; i < 2000 && atomic_load(&s->quiesced_workers) < s->nworkers; i++)
        usleep(1000);
}

void vg_server_stop(vg_server_t *s)
{
    if (s->hk_started) {
        atomic_store_explicit(&s->stopping, true, memory_order_release);
        pthread_mutex_lock(&s->hk_mu);
        pthread_cond_signal(&s->hk_cv);
        pthread_mutex_unlock(&s->hk_mu);
        pthread_join(s->hk_thread, NULL);
        s->hk_started = false;
    }
    if (!s->started)
        return;
    atomic_store_explicit(&s->stopping, true, memory_order_release);
    for (uint32_t i = 0; i < s->nworkers; i++)
        gw_wake(&s->workers[i]);
    for (uint32_t i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    s->started = false;
}

static void free_session_cb(struct vg_server *s)
{
    /* Every session still registered: unsubscribe and release (their
     * persistent state stays in the store). */
    for (size_t i = 0; i < s->ids.cap; i++) {
        vg_strmap_slot_t *sl = &s->ids.slots[i];
        if (!sl->key)
            continue;
        session_t *se = (session_t *)(uintptr_t)sl->value;
        gw_session_unsubscribe_all(s, se);
        gw_session_unref(s, se);
    }
}

void vg_server_free(vg_server_t *s)
{
    if (!s)
        return;
    vg_server_stop(s);
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        for (uint32_t j = 0; j < w->nslots; j++) {
            if (w->conns && w->conns[j])
                gw_conn_destroy(w, w->conns[j]);
        }
    }
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        /* Items posted but never taken (the worker did not run, or stopped
         * before they came) own references. */
        void *taken = NULL;
        size_t n = vg_mailbox_take(&w->inbox, &taken);
        item_t *items = taken;
        for (size_t j = 0; j < n; j++) {
            if (items[j].kind == ITEM_DELIVER) {
                vg_msg_unref(items[j].msg);
                gw_session_unref(s, items[j].sess);
            } else if (items[j].kind == ITEM_DELIVER_BATCH) {
                for (uint32_t k = 0; k < items[j].batch->n; k++)
                    gw_session_unref(s, items[j].batch->v[k].se);
                vg_free(items[j].batch);
                vg_msg_unref(items[j].msg);
            }
        }
    }
    for (size_t i = 0; i < s->hk.len; i++)
        gw_session_unref(s, s->hk.v[i].sess);
    s->hk.len = 0;
    free_session_cb(s);
    /* The store last: it commits what sessions queued while closing. */
    if (s->kv) {
        int kr = vg_kv_close(s->kv);
        if (kr != VG_OK)
            VG_ERROR(MOD, "gateway state store closed with an error: %s", vg_strerror(kr));
        s->kv = NULL;
    }
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        for (int li = 0; li < L__COUNT; li++)
            if (w->lfd[li] >= 0)
                close(w->lfd[li]);
        if (w->efd >= 0)
            close(w->efd);
        if (w->ep >= 0)
            close(w->ep);
        if (w->spare_fd >= 0)
            close(w->spare_fd);
        vg_wheel_deinit(&w->wheel);
        vg_free(w->rbuf);
        if (w->route) {
            vg_free(w->route->hits);
            vg_free(w->route->tg);
            vg_free(w->route);
        }
        vg_free(w->sub_scratch);
        vg_free(w->rc_scratch);
        vg_free(w->conns);
        vg_free(w->slot_gen);
        vg_free(w->free_slots);
        vg_mailbox_deinit(&w->inbox);
        vg_free(w->deferred);
    }
    vg_retain_free(s->retain);
    vg_topic_tree_free(s->tree);
    vg_strmap_deinit(&s->ids);
    vg_strmap_deinit(&s->groups);
    vg_free(s->kvw);
    hk_heap_free(&s->hk);
    pthread_rwlock_destroy(&s->tree_lock);
    pthread_mutex_destroy(&s->ids_mu);
    pthread_mutex_destroy(&s->kvw_mu);
    pthread_mutex_destroy(&s->hk_mu);
    pthread_cond_destroy(&s->hk_cv);
    for (uint32_t i = 0; i < s->nhooks; i++)
        vg_free(s->hooks[i].filter);
    vg_free(s);
}

void vg_server_stats(vg_server_t *s, vg_server_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->store_state = -1;
    if (s->kv) {
        vg_kv_stats_t ks;
        vg_kv_stats(s->kv, &ks);
        out->store_state = ks.state;
        out->store_pending_ops = ks.pending_ops;
        out->store_disk_full_pauses = ks.disk_full_pauses;
        out->store_disk_full_retries = ks.disk_full_retries;
        out->store_disk_full_ms = ks.disk_full_ms;
    }
    for (uint32_t i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        out->connections_current += atomic_load_explicit(&w->st_conns_current, memory_order_relaxed);
        out->connections_total += atomic_load_explicit(&w->st_conns_total, memory_order_relaxed);
        out->connections_refused += atomic_load_explicit(&w->st_refused, memory_order_relaxed);
        for (int r = 0; r < VG_CLOSE__COUNT; r++)
            out->closes[r] += atomic_load_explicit(&w->st_closes[r], memory_order_relaxed);
        out->publish_received += atomic_load_explicit(&w->st_pub_in, memory_order_relaxed);
        out->publish_sent += atomic_load_explicit(&w->st_pub_out, memory_order_relaxed);
        out->bytes_in += atomic_load_explicit(&w->st_bytes_in, memory_order_relaxed);
        out->bytes_out += atomic_load_explicit(&w->st_bytes_out, memory_order_relaxed);
        out->read_pauses += atomic_load_explicit(&w->st_read_pauses, memory_order_relaxed);
        out->ws_connections += atomic_load_explicit(&w->st_ws, memory_order_relaxed);
        out->http_requests += atomic_load_explicit(&w->st_http, memory_order_relaxed);
        out->http_errors += atomic_load_explicit(&w->st_http_err, memory_order_relaxed);
        out->lingering += atomic_load_explicit(&w->st_lingering, memory_order_relaxed);
        out->dropped_qos0_outbuf += atomic_load_explicit(&w->st_drop_qos0_outbuf, memory_order_relaxed);
        out->deferred_outbuf += atomic_load_explicit(&w->st_deferred_outbuf, memory_order_relaxed);
        out->linger_closes += atomic_load_explicit(&w->st_linger, memory_order_relaxed);
        out->linger_deadline += atomic_load_explicit(&w->st_linger_deadline, memory_order_relaxed);
        out->linger_overflow += atomic_load_explicit(&w->st_linger_overflow, memory_order_relaxed);
        out->tls_handshakes += atomic_load_explicit(&w->st_tls_handshakes, memory_order_relaxed);
        out->tls_resumed += atomic_load_explicit(&w->st_tls_resumed, memory_order_relaxed);
        out->tls_alpn_mqtt += atomic_load_explicit(&w->st_tls_alpn_mqtt, memory_order_relaxed);
        for (int k = 0; k < VG_TLS_FAIL__COUNT; k++)
            out->tls_failures[k] += atomic_load_explicit(&w->st_tls_fail[k], memory_order_relaxed);
        out->auth_accepted += atomic_load_explicit(&w->st_auth_ok, memory_order_relaxed);
        out->auth_refused += atomic_load_explicit(&w->st_auth_refused, memory_order_relaxed);
        for (int k = 0; k < 4; k++)
            out->denied[k] += atomic_load_explicit(&w->st_denied[k], memory_order_relaxed);
        out->rate_refused += atomic_load_explicit(&w->st_rl_refused, memory_order_relaxed);
        out->publish_throttled += atomic_load_explicit(&w->st_throttled, memory_order_relaxed);
    }
    out->subscriptions = atomic_load_explicit(&s->nsubs, memory_order_relaxed);
    out->sessions = atomic_load_explicit(&s->st_sessions, memory_order_relaxed);
    out->sessions_persistent_offline = atomic_load_explicit(&s->st_offline, memory_order_relaxed);
    out->queued = atomic_load_explicit(&s->st_queued, memory_order_relaxed);
    out->queued_bytes = atomic_load_explicit(&s->st_queued_bytes, memory_order_relaxed);
    out->queue_dropped_client = atomic_load_explicit(&s->st_drop_client, memory_order_relaxed);
    out->queue_dropped_global = atomic_load_explicit(&s->st_drop_global, memory_order_relaxed);
    out->expired_dropped = atomic_load_explicit(&s->st_expired, memory_order_relaxed);
    out->too_large_dropped = atomic_load_explicit(&s->st_too_large, memory_order_relaxed);
    out->qos2_duplicates = atomic_load_explicit(&s->st_q2dup, memory_order_relaxed);
    out->wills_published = atomic_load_explicit(&s->st_wills, memory_order_relaxed);
    out->store_errors = atomic_load_explicit(&s->st_store_errors, memory_order_relaxed);
    if (s->retain) {
        size_t n = 0;
        uint64_t rej = 0;
        vg_retain_stats(s->retain, &n, NULL, &rej);
        out->retained = n;
        out->retained_rejected = rej;
    }
}
