/* http_transport.c — the HTTP publish listener: POST /topics/<topic>
 * ?qos=0|1&retain=..., pipelined requests answered in order through the
 * connection's ack ring; a publish goes through the same inbound path as
 * an MQTT PUBLISH (publish.c) from a client without a session.
 * Does not own: the HTTP parser (net/http.c). */
#include "gateway/gw.h"

#include <stdio.h>
#include <strings.h>

void gw_http_respond(worker_t *w, conn_t *c, int status, const char *body)
{
    char date[VG_HTTP_DATE_LEN + 1];
    vg_http_date(date, gw_now_wall_ms() / 1000);
    char extra[96];
    snprintf(extra, sizeof extra, "Date: %s\r\n%s", date, status == 405 ? "Allow: POST\r\n" : "");
    char buf[1024];
    bool keep = c->x->keep_alive && !c->x->close_after;
    int n = vg_http_response(buf, sizeof buf, status, "application/json", body, strlen(body), extra, keep);
    if (n > 0)
        gw_send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
    atomic_fetch_add_explicit(&w->st_http, 1, memory_order_relaxed);
    if (status >= 400)
        atomic_fetch_add_explicit(&w->st_http_err, 1, memory_order_relaxed);
}

/* The answer to one HTTP publish, once its ack entry is complete. */
void gw_http_publish_done(worker_t *w, conn_t *c, bool failed)
{
    if (failed)
        gw_http_respond(w, c, 503, "{\"message\":\"the message could not be stored\"}");
    else
        gw_http_respond(w, c, 200, "{\"message\":\"OK\"}");
    if (c->x->close_after && c->ack_count == 0)
        gw_conn_close(w, c, VG_CLOSE_HTTP_DONE);
}

/* Publishes an HTTP request body: the same path as an MQTT PUBLISH from a
 * client without a session; QoS 1 answers 200 only once durable. */
static void http_publish(worker_t *w, conn_t *c, const uint8_t *body, size_t blen)
{
    xport_t *x = c->x;
    if (!gw_authorize(w, c, VG_ACT_PUBLISH, (const uint8_t *)x->topic, x->topic_len) ||
        (x->retain && !gw_authorize(w, c, VG_ACT_RETAIN, (const uint8_t *)x->topic, x->topic_len))) {
        gw_http_respond(w, c, 403, "{\"message\":\"publish not authorized\"}");
        return;
    }
    vg_msg_t *m = vg_msg_new((const uint8_t *)x->topic, x->topic_len, body, blen, x->qos, x->retain, NULL, gw_now_wall_ms());
    if (!m) {
        gw_http_respond(w, c, 503, "{\"message\":\"out of memory\"}");
        return;
    }
    atomic_fetch_add_explicit(&w->st_pub_in, 1, memory_order_relaxed);
    uint16_t id = ++x->next_seq ? x->next_seq : ++x->next_seq;
    /* Every request has its entry, QoS 0 too: answers leave in order. */
    ack_t *a = gw_acks_push(c, id, ACK_HTTP, 0);
    if (!a) {
        vg_msg_unref(m);
        gw_http_respond(w, c, 503, "{\"message\":\"out of memory\"}");
        return;
    }
    gw_inpub_t in = {.m = m, .client_id = "http", .client_id_len = 4, .ack = a};
    in.token = x->qos ? TOK(w->id, c->slot, c->gen, id) : 0;
    /* A refusal marked the entry failed: it is answered 503 in its turn. */
    (void)gw_publish_in(w, c, &in);
    vg_msg_unref(m);
    gw_acks_drain(w, c);
}

/* Checks a request head against the one route we serve and remembers what
 * the body is for. */
static void http_route(worker_t *w, conn_t *c, const vg_http_request_t *req)
{
    xport_t *x = c->x;
    static const char prefix[] = "/topics/";
    x->status = 0;
    x->why = NULL;
    vg_free(x->topic);
    x->topic = NULL;
    if (req->path.len <= sizeof prefix - 1 || memcmp(req->path.p, prefix, sizeof prefix - 1) != 0) {
        x->status = 404;
        x->why = "{\"message\":\"not found: publish with POST /topics/<topic>?qos=0|1\"}";
        return;
    }
    if (req->method != VG_HTTP_POST) {
        x->status = 405;
        x->why = "{\"message\":\"method not allowed: use POST\"}";
        return;
    }
    size_t enc = req->path.len - (sizeof prefix - 1);
    x->topic = vg_malloc(VG_MEM_MQTT, enc + 1);
    if (!x->topic) {
        x->status = 503;
        x->why = "{\"message\":\"out of memory\"}";
        return;
    }
    if (vg_http_pct_decode(req->path.p + sizeof prefix - 1, enc, false, x->topic, enc + 1, &x->topic_len) != VG_OK ||
        x->topic_len > 65535 || !vg_mqtt_topic_valid((const uint8_t *)x->topic, x->topic_len)) {
        x->status = 400;
        x->why = "{\"message\":\"invalid topic name (no wildcards, valid UTF-8)\"}";
        return;
    }
    vg_http_span_t v;
    x->qos = 0;
    if (vg_http_query_param(req->query, "qos", &v) == VG_OK) {
        if (v.len != 1 || (v.p[0] != '0' && v.p[0] != '1')) {
            x->status = 400;
            x->why = "{\"message\":\"qos must be 0 or 1\"}";
            return;
        }
        x->qos = (uint8_t)(v.p[0] - '0');
    }
    x->retain = false;
    if (vg_http_query_param(req->query, "retain", &v) == VG_OK) {
        if ((v.len == 4 && memcmp(v.p, "true", 4) == 0) || (v.len == 1 && v.p[0] == '1'))
            x->retain = true;
        else if (!((v.len == 5 && memcmp(v.p, "false", 5) == 0) || (v.len == 1 && v.p[0] == '0'))) {
            x->status = 400;
            x->why = "{\"message\":\"retain must be true or false\"}";
            return;
        }
    }
}

/* A request the parser refused (head or body): its error answer, counted,
 * then the connection closes (after lingering: the client reads why). */
static void http_refuse(worker_t *w, conn_t *c, vg_http_error_t e)
{
    char buf[512];
    int n = vg_http_error_response(buf, sizeof buf, e);
    if (n > 0)
        gw_send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
    atomic_fetch_add_explicit(&w->st_http, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->st_http_err, 1, memory_order_relaxed);
    gw_conn_close_why(w, c, VG_CLOSE_HTTP_BAD_REQUEST, vg_http_error_name(e));
}

/* Runs the HTTP requests buffered in c->in (pipelining allowed: answers
 * leave in request order through the ack ring). */
void gw_http_input(worker_t *w, conn_t *c)
{
    xport_t *x = c->x;
    while (c->state != ST_CLOSING && !x->close_after && c->in_len) {
        if (!x->have_head) {
            vg_http_request_t req;
            int r = vg_http_parse_head(&x->hp, (const char *)c->in, c->in_len, &req);
            if (r == VG_AGAIN)
                return;
            if (r != VG_OK) {
                http_refuse(w, c, x->hp.error);
                return;
            }
            x->have_head = true;
            x->body_ready = false;
            x->head_len = req.head_len;
            /* A bearer token authenticates the connection (auth.c), once. */
            const vg_http_header_t *ah = vg_http_header_find(&req, "Authorization");
            if (ah && !x->bearer_len && ah->value.len > 7 && ah->value.len - 7 <= sizeof x->bearer &&
                strncasecmp(ah->value.p, "Bearer ", 7) == 0) {
                memcpy(x->bearer, ah->value.p + 7, ah->value.len - 7);
                x->bearer_len = (uint8_t)(ah->value.len - 7);
            }
            x->keep_alive = req.keep_alive;
            x->body_len = x->raw_used = 0;
            http_route(w, c, &req);
            vg_http_body_init(&x->body, &req, w->srv->o.max_packet_size);
            if (req.expect_continue && x->status == 0) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                gw_send_bytes(w, c, (const uint8_t *)cont, sizeof cont - 1);
            }
        }
        size_t used = 0, made = 0;
        size_t start = x->head_len + x->raw_used;
        int r = VG_OK;
        if (!x->body_ready)
            r = vg_http_body_feed(&x->body, c->in + start, c->in_len - start, &used, c->in + x->head_len + x->body_len,
                                  &made);
        x->raw_used += used;
        x->body_len += made;
        if (r == VG_AGAIN) {
            /* Everything received was used: drop the chunk framing already
             * decoded so only body bytes count against the size limit. */
            c->in_len = (uint32_t)(x->head_len + x->body_len);
            x->raw_used = x->body_len;
            return;
        }
        if (r != VG_OK) {
            http_refuse(w, c, x->body.error);
            return;
        }
        x->body_ready = true;
        if (!x->status && w->srv->o.auth) {
            /* Who is asking: a client certificate or a bearer token (the
             * answer may come later: the request waits, complete). */
            int ar = gw_auth_http(w, c);
            if (ar == AUTH_WAIT)
                return;
            if (ar != AUTH_ACCEPTED) {
                x->close_after = true;
                gw_http_respond(w, c, 401, "{\"message\":\"authentication required\"}");
                gw_conn_close(w, c, VG_CLOSE_HTTP_BAD_REQUEST);
                return;
            }
        }
        if (!x->keep_alive)
            x->close_after = true;
        if (x->status) {
            /* Answered in order behind any publish still waiting. */
            if (c->ack_count == 0) {
                gw_http_respond(w, c, x->status, x->why);
                if (x->close_after)
                    gw_conn_close(w, c, VG_CLOSE_HTTP_DONE);
            } else {
                /* rare: an error behind pending publishes; answer after them */
                ack_t *a = gw_acks_push(c, 0, ACK_HTTP, 0);
                if (a) {
                    a->failed = 2;
                    a->reason = (uint8_t)(x->status - 400);
                }
                gw_acks_drain(w, c);
            }
        } else {
            http_publish(w, c, c->in + x->head_len, x->body_len);
        }
        size_t total = x->head_len + x->raw_used;
        memmove(c->in, c->in + total, c->in_len - total);
        c->in_len -= (uint32_t)total;
        x->have_head = false;
        x->body_ready = false;
        if (c->in_len == 0) {
            vg_free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
}
