/* conn.c — connection I/O: the output buffer (reserve, the slow-consumer
 * rules, send, EPOLLOUT), reading and MQTT framing (one read buffer per
 * worker, only a partial packet is copied into the connection), closing
 * (reason counters, the 5.0 DISCONNECT a close carries), teardown and the
 * lingering close. Memory per connection is kept small on purpose (the
 * target is <= 1 KiB per idle connection, kernel buffers aside): output
 * buffers and the ack ring exist only while something is queued or
 * awaited; topic alias tables only once aliases are used; a clean
 * session's queues only when it has messages in flight. What an idle
 * connection costs: conn_t (184 bytes), session_t (192 + the client id),
 * the client id's slot and key copy in the ids map, and 14 bytes of
 * per-worker slot arrays — about 450 bytes counted by vg_malloc, 555 of RSS
 * (10,000 idle 3.1.1 or 5.0 connections, one QoS 1 PUBLISH each, measured
 * from outside).
 * Does not own: what a packet means (connect.c dispatches it), the
 * WebSocket and HTTP framing (ws_transport.c, http_transport.c). */
#include "gateway/gw.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void gw_flush_mark(worker_t *w, conn_t *c)
{
    if (!c->in_flush) {
        c->in_flush = true;
        c->flush_next = w->flush_head;
        w->flush_head = c;
    }
}

/* ---- slow consumers ------------------------------------------------------
 *
 * max_outbuf is a soft limit on the bytes queued to one connection. While a
 * connection's output is over it, new PUBLISHes are not put into its output
 * buffer: QoS 0 ones are shed (dropped for this subscriber, counted as
 * dropped_qos0_outbuf), QoS 1 and 2 ones wait in the session's queue (bounded
 * by max_queued_per_client and max_queued_bytes, overflow dropped and
 * counted) and go out once the buffer drained below the limit. Control
 * packets (acks, PINGRESP) and the retransmissions of a resumed session
 * (at most the in-flight window) are still queued. A subscriber is a slow
 * consumer only if its output stays over the limit for slow_consumer_ms:
 * the time counts from the first moment over it and restarts whenever a
 * flush brings the buffer under it; it is checked each time something more
 * would be queued (a connection nothing is sent to holds its buffer until
 * its keepalive). Independently of time, output beyond twice the limit
 * (control packets a client provokes without reading) closes at once. */

/* Notes that c wants to queue more while its output is over the limit;
 * closes it once that has lasted slow_consumer_ms. */
static void out_congested(worker_t *w, conn_t *c)
{
    uint32_t now = (uint32_t)gw_now_mono_ms() | 1u; /* 0 means "not congested" */
    if (!c->congested_at) {
        c->congested_at = now;
        return;
    }
    if (now - c->congested_at >= w->srv->o.slow_consumer_ms)
        gw_conn_close(w, c, VG_CLOSE_SLOW_CONSUMER);
}

/* True if c's output is at or over max_outbuf (and notes the congestion):
 * no new PUBLISH goes into it now. */
bool gw_out_full(worker_t *w, conn_t *c)
{
    if (c->out_len - c->out_off < w->srv->o.max_outbuf)
        return false;
    out_congested(w, c);
    return true;
}

/* Reserves n bytes at the end of c's output queue; NULL if the connection
 * is closing, or is closed now: as a slow consumer (out_congested), or
 * because this would take its output beyond twice max_outbuf (unless
 * `force`, for the bounded retransmissions of a resumed session). */
uint8_t *gw_out_reserve_ex(worker_t *w, conn_t *c, size_t n, bool force)
{
    if (CONN_GONE(c))
        return NULL;
    if (c->out_off && c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->x)
            c->x->ws_framed = 0;
    }
    size_t pending = c->out_len - c->out_off;
    size_t limit = w->srv->o.max_outbuf;
    if (pending + n > OUT_MAX) { /* only forced retransmissions of huge windows get here */
        gw_conn_close_why(w, c, VG_CLOSE_SLOW_CONSUMER, "output over 2 GiB");
        return NULL;
    }
    if (pending + n > limit) {
        if (!force && pending + n > 2 * limit) {
            gw_conn_close_why(w, c, VG_CLOSE_SLOW_CONSUMER, "output over twice the limit");
            return NULL;
        }
        out_congested(w, c);
        if (CONN_GONE(c))
            return NULL;
    }
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) { /* compact before growing */
            memmove(c->out, c->out + c->out_off, pending);
            if (c->x)
                c->x->ws_framed = c->x->ws_framed > c->out_off ? c->x->ws_framed - c->out_off : 0;
            c->out_len = pending;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            size_t ncap = c->out_cap ? c->out_cap : 256;
            while (ncap < c->out_len + n)
                ncap *= 2;
            uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, ncap);
            if (!no) {
                gw_conn_close(w, c, VG_CLOSE_SLOW_CONSUMER);
                return NULL;
            }
            c->out = no;
            c->out_cap = ncap;
        }
    }
    uint8_t *p = c->out + c->out_len;
    c->out_len += n;
    gw_flush_mark(w, c);
    return p;
}

uint8_t *gw_out_reserve(worker_t *w, conn_t *c, size_t n)
{
    return gw_out_reserve_ex(w, c, n, false);
}

void gw_send_bytes(worker_t *w, conn_t *c, const uint8_t *b, size_t n)
{
    uint8_t *p = gw_out_reserve(w, c, n);
    if (p)
        memcpy(p, b, n);
}

void gw_epoll_set(worker_t *w, conn_t *c)
{
    struct epoll_event ev = {0};
    /* Waiting for a takeover, not even the peer's half close is of interest
     * (the CONNECT runs again once the answer comes). */
    ev.events = (c->paused || c->quiesced || c->takeover_wait || CONN_THROTTLED(c) ? 0 : EPOLLIN) |
                (c->epollout ? EPOLLOUT : 0) |
                (c->takeover_wait ? 0 : EPOLLRDHUP);
    ev.data.ptr = c;
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    /* Reading resumes: what OpenSSL decrypted already raises no event. */
    if ((ev.events & EPOLLIN) && gw_tls_pending(c))
        gw_tls_again(w, c);
}

/* Sends what is queued in c->out. Returns 1 when all of it went out, 0
 * when the socket would block (the rest stays queued), -1 if it broke. */
static int out_send(worker_t *w, conn_t *c)
{
    if (c->sec && c->sec->ssl) {
        while (c->out_off < c->out_len) {
            ssize_t k = gw_tls_send(w, c, c->out + c->out_off, c->out_len - c->out_off);
            if (k <= 0)
                return (int)k; /* 0 would block, -1 broke */
            c->out_off += (size_t)k;
        }
        return 1;
    }
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (k > 0) {
            c->out_off += (size_t)k;
            atomic_fetch_add_explicit(&w->st_bytes_out, (uint64_t)k, memory_order_relaxed);
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    return 1;
}

/* Writes what is queued; arms EPOLLOUT for what the socket would not take.
 * Returns false if the connection broke. */
bool gw_conn_flush(worker_t *w, conn_t *c)
{
    if (c->transport == TR_WS && !gw_ws_frame_pending(c))
        return false;
    int sent = out_send(w, c);
    if (sent < 0)
        return false;
    if (sent == 0) {
        if (!c->epollout) {
            c->epollout = true;
            gw_epoll_set(w, c);
        }
        return true;
    }
    c->out_off = c->out_len = 0;
    if (c->x)
        c->x->ws_framed = 0;
    /* Give the buffer back once drained: most connections are idle between
     * events, and idle connections must cost as little memory as possible
     * (a malloc per flush is cheap next to the send it follows). */
    vg_free(c->out);
    c->out = NULL;
    c->out_cap = 0;
    if (c->epollout) {
        c->epollout = false;
        gw_epoll_set(w, c);
    }
    return true;
}

/* The 5.0 reason code a server DISCONNECT carries for each close reason
 * (0 = none is sent: the peer closed, or there is nobody to tell). */
static uint8_t close_reason_rc(vg_close_reason_t r)
{
    switch (r) {
    case VG_CLOSE_MALFORMED:
        return VG_RC_MALFORMED;
    case VG_CLOSE_TOO_LARGE:
        return VG_RC_PACKET_TOO_LARGE;
    case VG_CLOSE_PROTOCOL:
        return VG_RC_PROTOCOL_ERROR;
    case VG_CLOSE_KEEPALIVE:
        return VG_RC_KEEPALIVE_TIMEOUT;
    case VG_CLOSE_TAKEOVER:
        return VG_RC_SESSION_TAKEN_OVER;
    case VG_CLOSE_SLOW_CONSUMER:
        return VG_RC_QUOTA_EXCEEDED;
    case VG_CLOSE_SHUTDOWN:
        return VG_RC_SERVER_SHUTTING_DOWN;
    case VG_CLOSE_RECEIVE_MAX:
        return VG_RC_RECEIVE_MAX_EXCEEDED;
    case VG_CLOSE_TOPIC_ALIAS:
        return VG_RC_TOPIC_ALIAS_INVALID;
    case VG_CLOSE_IO:
        return VG_RC_UNSPECIFIED;
    case VG_CLOSE_SESSION_EXPIRED:
        return VG_RC_ADMIN_ACTION;
    default:
        return 0;
    }
}

/* Appends a 5.0 DISCONNECT (reason + reason string) ahead of a close. The
 * output limit is ignored here on purpose: this is the last packet. */
void gw_send_disconnect(worker_t *w, conn_t *c, uint8_t rc, const char *why)
{
    /* One final packet: a DISCONNECT already queued (e.g. 0x99 before the
     * close it causes) is not followed by a second one. */
    if (c->level != VG_MQTT_V5 || c->state == ST_NEW || !rc || c->linger)
        return;
    vg_mqtt_props_t pr = {0};
    if (why) {
        pr.present = VG_PROP_BIT(VG_PROP_REASON_STRING);
        pr.reason_string.p = (const uint8_t *)why;
        pr.reason_string.len = strlen(why);
    }
    uint8_t buf[160];
    int n = vg_mqtt_encode_reason(buf, sizeof buf, VG_MQTT_V5, VG_MQTT_DISCONNECT, rc, why ? &pr : NULL);
    if (n <= 0)
        return;
    if (c->out_len + (size_t)n > c->out_cap) {
        uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, c->out_len + (size_t)n);
        if (!no)
            return;
        c->out = no;
        c->out_cap = c->out_len + (size_t)n;
    }
    memcpy(c->out + c->out_len, buf, (size_t)n);
    c->out_len += (size_t)n;
    c->linger = true;
}

void gw_conn_close_why(worker_t *w, conn_t *c, vg_close_reason_t reason, const char *why)
{
    if (CONN_GONE(c))
        return;
    gw_send_disconnect(w, c, close_reason_rc(reason), why);
    switch (reason) {
    case VG_CLOSE_SLOW_CONSUMER:
        /* It does not read: waiting for it to read its DISCONNECT would only
         * hold its (full) output buffer longer. */
        c->linger = false;
        break;
    case VG_CLOSE_HTTP_BAD_REQUEST:
    case VG_CLOSE_WS_PROTOCOL:
        /* An error answer (HTTP 4xx, WebSocket close frame) was queued. */
        c->linger |= c->out_len > c->out_off;
        break;
    case VG_CLOSE_PEER_CLOSED:
    case VG_CLOSE_CLIENT:
    case VG_CLOSE_DISCONNECT_WILL:
    case VG_CLOSE_IO:
    case VG_CLOSE_SHUTDOWN:
    case VG_CLOSE_HTTP_DONE:
        break;
    default:
        /* Any other close the server decides on gets a close frame on
         * WebSocket (gw_conn_destroy / linger_start add it). */
        c->linger |= c->transport == TR_WS;
        break;
    }
    c->state = ST_CLOSING;
    c->close_reason = (uint8_t)reason;
    atomic_fetch_add_explicit(&w->st_closes[reason], 1, memory_order_relaxed);
    VG_DEBUG(MOD, "closing connection %.*s: %s%s%s", c->sess ? (int)c->sess->id_len : 0,
             c->sess ? c->sess->id : "", vg_close_reason_name(reason), why ? ": " : "", why ? why : "");
    c->close_next = w->close_head;
    w->close_head = c;
}

void gw_conn_close(worker_t *w, conn_t *c, vg_close_reason_t reason)
{
    gw_conn_close_why(w, c, reason, NULL);
}

/* c's topic alias state, allocated on first use (NULL if out of memory). */
aliases_t *gw_conn_aliases(conn_t *c)
{
    if (!c->alias) {
        c->alias = vg_calloc(VG_MEM_MQTT, 1, sizeof *c->alias);
        if (c->alias)
            vg_strmap_init(&c->alias->out, VG_MEM_MQTT);
    }
    return c->alias;
}

/* The connection a token names, NULL if it is gone. A lingering connection
 * is gone: it owns nothing any token could refer to. */
conn_t *gw_conn_lookup(worker_t *w, uint64_t tok)
{
    uint32_t slot = TOK_SLOT(tok);
    conn_t *c = slot < w->nslots ? w->conns[slot] : NULL;
    return c && c->gen == TOK_GEN(tok) && c->state != ST_LINGER ? c : NULL;
}

/* Releases everything a closing connection holds except its socket, its
 * slot and its pending output: the session (and with it the client id) is
 * left, the will goes out, timers, buffers, acks and aliases are freed. */
static void conn_release(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    vg_wheel_remove(&c->timer);
    gw_conn_detach(w, c);
    if (c->alias) {
        if (c->alias->in)
            for (uint16_t i = 0; i < s->o.topic_alias_max; i++)
                vg_free(c->alias->in[i]);
        vg_free(c->alias->in);
        vg_free(c->alias->in_len);
        vg_strmap_deinit(&c->alias->out);
        vg_free(c->alias);
        c->alias = NULL;
    }
    /* c->sec stays until the connection is freed: a lingering TLS one
     * still writes through its SSL. */
    gw_auth_release(w, c);
    if (c->x)
        vg_free(c->x->topic);
    vg_free(c->x);
    c->x = NULL;
    for (uint32_t i = 0; i < c->ack_count; i++) {
        vg_free(c->acks[(c->ack_head + i) % c->ack_cap].pkt);
        gw_retained_batch_free(c->acks[(c->ack_head + i) % c->ack_cap].retained);
    }
    vg_free(c->acks);
    c->acks = NULL;
    c->ack_count = c->ack_cap = c->ack_head = 0;
    vg_free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

/* Closes the socket and frees the connection and its slot (after
 * conn_release). */
void gw_conn_free(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->sec) {
        gw_auth_release(w, c);
        if (c->sec->rl_counted && s->o.rl_conn)
            vg_rl_disconnect(s->o.rl_conn, (struct sockaddr *)&c->sec->peer, gw_now_mono_ms());
        gw_tls_free(w, c);
        vg_free(c->sec);
        c->sec = NULL;
    }
    vg_free(c->x);
    c->x = NULL;
    close(c->fd);
    vg_wheel_remove(&c->timer);
    vg_free(c->out);
    w->conns[c->slot] = NULL;
    w->slot_gen[c->slot]++;
    w->free_slots[w->nfree++] = c->slot;
    if (c->state == ST_LINGER)
        atomic_fetch_sub_explicit(&w->st_lingering, 1, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&w->st_conns_current, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->conns_total, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->conns_listener[c->listener], 1, memory_order_relaxed);
    vg_free(c);
}

void gw_conn_destroy(worker_t *w, conn_t *c)
{
    if (c->state == ST_LINGER) {
        gw_conn_free(w, c);
        return;
    }
    /* Best effort: a refusal CONNACK or DISCONNECT should reach the client
     * before the close (on WebSocket inside a frame, then a close frame). */
    gw_ws_close_frame(w, c);
    if (c->sec && c->sec->ssl) {
        (void)out_send(w, c); /* the socket is non-blocking: what it takes now */
        gw_tls_close_notify(c);
    } else if (c->out_len > c->out_off) {
        (void)send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    conn_release(w, c);
    gw_conn_free(w, c);
}

/* Why linger: closing a socket whose peer is still sending makes the kernel
 * answer the peer's next segments with a reset, and a client that is still
 * writing (pipelined PUBLISHes past the receive maximum, packets behind a
 * refused CONNECT) gets EPIPE/ECONNRESET on its next write and typically
 * gives up on the connection without ever reading the DISCONNECT or CONNACK
 * that says why. So after a final answer the server sends it, shuts down
 * its sending side (the client reads the answer, then EOF), and reads and
 * discards whatever still arrives until the client closes, linger_bytes
 * were thrown away or linger_ms passed (the worker's timer wheel), and only
 * then closes. Everything MQTT is released when lingering starts: the
 * session and client id (a reconnect is never blocked by the lingering
 * socket), acks, aliases, input; no packet handler runs again and no token
 * reaches it (gw_conn_lookup). It stays counted against max_connections (it
 * holds a descriptor) but not in connections_current. */

/* Writes the rest of a lingering connection's output; once all is out,
 * shuts the sending side. Returns false if the socket broke. */
static bool linger_flush(worker_t *w, conn_t *c)
{
    int sent = out_send(w, c);
    if (sent < 0)
        return false;
    if (sent == 0) {
        c->epollout = true;
        return true;
    }
    vg_free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
    c->epollout = false;
    gw_tls_close_notify(c);
    shutdown(c->fd, SHUT_WR);
    return true;
}

static void linger_epoll(worker_t *w, conn_t *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (c->epollout ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Turns a closing connection (off the flush and close lists) into a
 * lingering one, or frees it if its socket already broke. */
static void linger_start(worker_t *w, conn_t *c)
{
    struct vg_server *s = w->srv;
    gw_ws_close_frame(w, c);
    conn_release(w, c);
    c->state = ST_LINGER;
    c->paused = false;
    c->in_len = 0; /* counts the bytes discarded from here on */
    atomic_fetch_sub_explicit(&w->st_conns_current, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->st_lingering, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->st_linger, 1, memory_order_relaxed);
    if (!linger_flush(w, c)) {
        gw_conn_free(w, c);
        return;
    }
    linger_epoll(w, c);
    vg_wheel_add(&w->wheel, &c->timer, gw_now_mono_ms() + s->o.linger_ms);
}

/* Readiness of a lingering connection: more output, or input to discard. */
void gw_linger_ready(worker_t *w, conn_t *c, uint32_t events)
{
    if (c->epollout && (events & EPOLLOUT)) {
        if (!linger_flush(w, c)) {
            gw_conn_free(w, c);
            return;
        }
        if (!c->epollout)
            linger_epoll(w, c);
    }
    for (size_t budget = READ_BUDGET; budget;) {
        ssize_t k = recv(c->fd, w->rbuf, RBUF_SIZE, 0);
        if (k > 0) {
            atomic_fetch_add_explicit(&w->st_bytes_in, (uint64_t)k, memory_order_relaxed);
            if ((uint64_t)c->in_len + (uint64_t)k > w->srv->o.linger_bytes) {
                atomic_fetch_add_explicit(&w->st_linger_overflow, 1, memory_order_relaxed);
                gw_conn_free(w, c);
                return;
            }
            c->in_len += (uint32_t)k;
            budget = (size_t)k >= budget ? 0 : budget - (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        gw_conn_free(w, c); /* EOF: the peer closed its side (or the socket broke) */
        return;
    }
}

/* Whether a closing connection lingers rather than closes at once. */
static bool conn_wants_linger(worker_t *w, const conn_t *c)
{
    struct vg_server *s = w->srv;
    return c->linger && s->o.linger_ms && !c->quiesced && !atomic_load_explicit(&s->stopping, memory_order_relaxed);
}

void gw_process_closes(worker_t *w)
{
    while (w->close_head) {
        conn_t *c = w->close_head;
        w->close_head = c->close_next;
        if (c->in_flush) {
            /* Unlink from the flush list. */
            conn_t **pp = &w->flush_head;
            while (*pp && *pp != c)
                pp = &(*pp)->flush_next;
            if (*pp)
                *pp = c->flush_next;
            c->in_flush = false;
        }
        if (conn_wants_linger(w, c))
            linger_start(w, c);
        else
            gw_conn_destroy(w, c);
    }
}

/* Parses and handles every complete packet in data[0..len); returns the
 * number of bytes consumed. Stops early when the connection closes or
 * pauses. */
size_t gw_parse_packets(worker_t *w, conn_t *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && c->state != ST_CLOSING && !c->paused && !c->quiesced && !CONN_THROTTLED(c)) {
        uint8_t type, flags;
        size_t hl, rl;
        int r = vg_mqtt_frame(data + off, len - off, w->srv->o.max_packet_size, &type, &flags, &hl, &rl);
        if (r == VG_AGAIN)
            break;
        if (r != VG_OK) {
            gw_conn_close(w, c, r == VG_ETOOBIG ? VG_CLOSE_TOO_LARGE : VG_CLOSE_MALFORMED);
            break;
        }
        /* 5.0 requires the shortest length encoding [MQTT-1.5.5-1]; 3.1.1
         * clients in the field sometimes pad it, so only 5.0 is held to it. */
        if (c->level == VG_MQTT_V5 && hl - 1 != (rl < 128 ? 1u : rl < 16384 ? 2u : rl < 2097152 ? 3u : 4u)) {
            gw_conn_close_why(w, c, VG_CLOSE_MALFORMED, "remaining length not in its shortest form");
            break;
        }
        if (type == VG_MQTT_PUBLISH && w->srv->o.rl_publish && c->state == ST_ACTIVE) {
            uint32_t wait = vg_rl_publish(w->srv->o.rl_publish, &c->sec->pub, gw_now_mono_ms());
            if (wait) {
                gw_throttle(w, c, wait);
                break; /* the PUBLISH stays unconsumed until the wait is over */
            }
        }
        gw_handle_packet(w, c, type, flags, data + off + hl, rl);
        if (c->takeover_wait)
            break; /* the CONNECT stays unconsumed: it runs again (connect_wait_takeover) */
        off += hl + rl;
    }
    return off;
}

/* Keeps data[0..len) as the connection's pending input. */
static bool keep_input(conn_t *c, const uint8_t *data, size_t len)
{
    if (len == 0) {
        vg_free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        return true;
    }
    if (data == c->in) {
        c->in_len = (uint32_t)len;
        return true;
    }
    if (c->in && data > c->in && data < c->in + c->in_cap) {
        memmove(c->in, data, len);
        c->in_len = (uint32_t)len;
        return true;
    }
    if (len > c->in_cap) {
        uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, len);
        if (!ni)
            return false;
        c->in = ni;
        c->in_cap = (uint32_t)len;
    }
    memmove(c->in, data, len);
    c->in_len = (uint32_t)len;
    return true;
}

/* Runs the packets already buffered in c->in (after a pause). */
void gw_parse_input(worker_t *w, conn_t *c)
{
    size_t used = gw_parse_packets(w, c, c->in, c->in_len);
    if (c->state == ST_CLOSING)
        return;
    if (!keep_input(c, c->in + used, c->in_len - used))
        gw_conn_close(w, c, VG_CLOSE_IO);
}

void gw_process_input(worker_t *w, conn_t *c)
{
    if (!c->in_len)
        return;
    if (c->transport == TR_HTTP)
        gw_http_input(w, c);
    else
        gw_parse_input(w, c);
}

/* One recv into dst: the byte count (> 0); 0 when the socket has nothing
 * now; -1 after closing the connection (EOF with on_eof, errors as io). */
static ssize_t conn_recv(worker_t *w, conn_t *c, void *dst, size_t room, vg_close_reason_t on_eof)
{
    if (c->sec && c->sec->ssl) {
        ssize_t k = gw_tls_recv(w, c, dst, room);
        if (k >= 0)
            return k;
        gw_conn_close(w, c, k == -1 ? on_eof : VG_CLOSE_TLS);
        return -1;
    }
    for (;;) {
        ssize_t k = recv(c->fd, dst, room, 0);
        if (k > 0) {
            atomic_fetch_add_explicit(&w->st_bytes_in, (uint64_t)k, memory_order_relaxed);
            return k;
        }
        if (k == 0) {
            gw_conn_close(w, c, on_eof);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        gw_conn_close(w, c, VG_CLOSE_IO);
        return -1;
    }
}

/* Reading for the WebSocket and HTTP listeners. */
static void read_ready_xport(worker_t *w, conn_t *c, size_t budget)
{
    while (budget && c->state != ST_CLOSING && !c->paused && !c->quiesced && !c->takeover_wait &&
           !CONN_THROTTLED(c)) {
        ssize_t k = conn_recv(w, c, w->rbuf, RBUF_SIZE,
                              c->transport == TR_HTTP ? VG_CLOSE_HTTP_DONE : VG_CLOSE_PEER_CLOSED);
        if (k <= 0)
            return;
        budget = (size_t)k >= budget ? 0 : budget - (size_t)k;
        if (c->transport == TR_WS) {
            gw_ws_input(w, c, w->rbuf, (size_t)k);
        } else {
            /* Handshake and HTTP requests are parsed from c->in. */
            size_t limit = VG_HTTP_DEFAULT_MAX_HEAD + 2 * w->srv->o.max_packet_size + 4096;
            if (c->in_len + (size_t)k > limit) {
                gw_conn_close_why(w, c, c->transport == TR_HTTP ? VG_CLOSE_HTTP_BAD_REQUEST : VG_CLOSE_WS_PROTOCOL,
                               "request too large");
                return;
            }
            if (c->in_len + (size_t)k > c->in_cap) {
                uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, c->in_len + (size_t)k);
                if (!ni) {
                    gw_conn_close(w, c, VG_CLOSE_IO);
                    return;
                }
                c->in = ni;
                c->in_cap = c->in_len + (uint32_t)k;
            }
            memcpy(c->in + c->in_len, w->rbuf, (size_t)k);
            c->in_len += (uint32_t)k;
            if (c->transport == TR_HTTP) {
                c->timer.deadline_ms = gw_now_mono_ms() + w->srv->o.connect_timeout_ms;
                gw_http_input(w, c);
            } else {
                gw_ws_handshake(w, c);
            }
        }
        if ((size_t)k < RBUF_SIZE && !gw_tls_pending(c))
            return; /* socket drained, or (TLS) OpenSSL holds nothing more: see gw_read_ready */
    }
    if (!budget && gw_tls_pending(c))
        gw_tls_again(w, c);
}

/* Reads and handles up to about budget bytes (a readiness event gets
 * READ_BUDGET, for fairness), stopping when the socket has no more. */
void gw_read_ready(worker_t *w, conn_t *c, size_t budget)
{
    if (c->transport != TR_MQTT) {
        read_ready_xport(w, c, budget);
        return;
    }
    while (budget && c->state != ST_CLOSING && !c->paused && !c->quiesced && !c->takeover_wait &&
           !CONN_THROTTLED(c)) {
        uint8_t *dst;
        size_t room;
        if (c->in_len) {
            /* Partial packet pending: read behind it so the packet is
             * contiguous. Size the buffer for the whole packet if known. */
            size_t want = c->in_len + 16 * 1024;
            uint8_t type, flags;
            size_t hl, rl;
            if (vg_mqtt_frame(c->in, c->in_len, w->srv->o.max_packet_size, &type, &flags, &hl, &rl) == VG_AGAIN) {
                /* length known only once the length field is complete */
            } else if (hl + rl > c->in_len) {
                want = hl + rl;
            }
            if (want > c->in_cap) {
                uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, want);
                if (!ni) {
                    gw_conn_close(w, c, VG_CLOSE_IO);
                    return;
                }
                c->in = ni;
                c->in_cap = (uint32_t)want;
            }
            dst = c->in + c->in_len;
            room = c->in_cap - c->in_len;
        } else {
            dst = w->rbuf;
            room = RBUF_SIZE;
        }
        ssize_t k = conn_recv(w, c, dst, room, c->state == ST_NEW ? VG_CLOSE_PROTOCOL : VG_CLOSE_PEER_CLOSED);
        if (k <= 0)
            return;
        budget = (size_t)k >= budget ? 0 : budget - (size_t)k;
        const uint8_t *data;
        size_t len;
        if (dst == w->rbuf) {
            data = w->rbuf;
            len = (size_t)k;
        } else {
            c->in_len += (uint32_t)k;
            data = c->in;
            len = c->in_len;
        }
        size_t used = gw_parse_packets(w, c, data, len);
        if (c->state == ST_CLOSING)
            return;
        if (!keep_input(c, data + used, len - used)) {
            gw_conn_close(w, c, VG_CLOSE_IO);
            return;
        }
        /* Plain: a short read drained the socket. TLS: OpenSSL returns a
         * record at a time; go on while it holds more (read or decrypted
         * bytes epoll cannot see), else stop without the SSL_read that
         * would only find the socket empty: that read costs a syscall per
         * event and allocates the 17 KB read buffer that
         * SSL_MODE_RELEASE_BUFFERS then keeps for the connection's whole
         * idle time (it frees it only after a record). What is still on the
         * socket raises EPOLLIN again (level-triggered). */
        if ((size_t)k < room && !gw_tls_pending(c))
            return;
    }
    if (!budget && gw_tls_pending(c))
        gw_tls_again(w, c);
}

/* c's output went back under max_outbuf: the congestion ends and what waits
 * in its session's queue goes out (see "slow consumers"). */
void gw_out_drained(worker_t *w, conn_t *c)
{
    c->congested_at = 0;
    session_t *se = c->sess;
    if (!se || c->state != ST_ACTIVE)
        return;
    pthread_mutex_lock(&se->mu);
    if (se->online && se->owner == CONN_TOK(w->id, c->slot, c->gen))
        gw_session_pump(w, c, se);
    pthread_mutex_unlock(&se->mu);
}

/* Everything the peer of c already sent, read and handled now (a takeover
 * is deciding on the session): what is buffered in c->in (c may have paused
 * reading), then the socket until it has no more, bounded so that a peer
 * that never stops sending cannot keep the worker here. */
#define TAKEOVER_DRAIN_MAX (16u * 1024 * 1024)
void gw_conn_drain_input(worker_t *w, conn_t *c)
{
    c->paused = false;
    gw_process_input(w, c);
    if (c->state == ST_ACTIVE && !c->quiesced)
        gw_read_ready(w, c, TAKEOVER_DRAIN_MAX);
    if (c->state == ST_ACTIVE)
        gw_epoll_set(w, c); /* a pause may have ended, or begun again */
}
