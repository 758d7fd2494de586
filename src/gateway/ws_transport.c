/* ws_transport.c — MQTT over WebSocket: the HTTP upgrade, the frame
 * decoder feeding the MQTT framing as on TCP, pings and closes, and the
 * framing of output (MQTT bytes are queued raw and wrapped once per flush).
 * Does not own: the WebSocket codec (net/ws.c). */
#include "gateway/gw.h"

/* WebSocket: MQTT bytes are queued raw (so every encoder writes straight
 * into the output buffer as for TCP) and wrapped into one binary frame per
 * flush: the unframed tail gets a header inserted in front of it. Returns
 * false when out of memory. */
bool gw_ws_frame_pending(conn_t *c)
{
    xport_t *x = c->x;
    if (!x || c->out_len <= x->ws_framed)
        return true;
    size_t n = c->out_len - x->ws_framed;
    uint8_t hdr[VG_WS_MAX_HEADER];
    int h = vg_ws_encode_header(hdr, sizeof hdr, VG_WS_OP_BINARY, true, n, NULL);
    if (h <= 0)
        return false;
    if (c->out_len + (size_t)h > c->out_cap) {
        uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, c->out_len + (size_t)h);
        if (!no)
            return false;
        c->out = no;
        c->out_cap = c->out_len + (size_t)h;
    }
    memmove(c->out + x->ws_framed + h, c->out + x->ws_framed, n);
    memcpy(c->out + x->ws_framed, hdr, (size_t)h);
    c->out_len += (size_t)h;
    x->ws_framed = c->out_len;
    return true;
}

/* Appends a WebSocket control frame (pong, close) after the MQTT bytes
 * queued so far. */
static void ws_send_control(worker_t *w, conn_t *c, const uint8_t *frame, size_t n)
{
    if (!gw_ws_frame_pending(c))
        return;
    if (c->out_len + n > c->out_cap) {
        uint8_t *no = vg_realloc(VG_MEM_MQTT, c->out, c->out_len + n);
        if (!no)
            return;
        c->out = no;
        c->out_cap = c->out_len + n;
    }
    memcpy(c->out + c->out_len, frame, n);
    c->out_len += n;
    c->x->ws_framed = c->out_len;
    /* A closing connection is flushed once by gw_conn_destroy; putting it on
     * the flush list from there would leave a freed connection on it. */
    if (c->state != ST_CLOSING)
        gw_flush_mark(w, c);
}

/* Appends the WebSocket close frame a closing WebSocket connection ends
 * with (after the MQTT bytes still queued, which are framed first). */
void gw_ws_close_frame(worker_t *w, conn_t *c)
{
    if (c->transport != TR_WS)
        return;
    uint8_t cf[8];
    int k = vg_ws_encode_close(cf, sizeof cf,
                               c->close_reason == VG_CLOSE_WS_PROTOCOL ? VG_WS_CLOSE_PROTOCOL : VG_WS_CLOSE_NORMAL, NULL,
                               0, NULL);
    if (k > 0)
        ws_send_control(w, c, cf, (size_t)k);
}

/* Runs WebSocket bytes through the frame decoder into c->in, answering
 * pings and closes, then frames MQTT packets as on TCP. */
void gw_ws_input(worker_t *w, conn_t *c, const uint8_t *p, size_t left)
{
    xport_t *x = c->x;
    if (c->in_len + left > c->in_cap) {
        uint8_t *ni = vg_realloc(VG_MEM_MQTT, c->in, c->in_len + left);
        if (!ni) {
            gw_conn_close(w, c, VG_CLOSE_IO);
            return;
        }
        c->in = ni;
        c->in_cap = (uint32_t)(c->in_len + left);
    }
    while (left) {
        size_t used = 0, made = 0;
        vg_ws_event_t ev;
        int r = vg_ws_feed(&x->ws, p, left, &used, c->in + c->in_len, &made, &ev);
        p += used;
        left -= used;
        c->in_len += (uint32_t)made;
        uint8_t frame[VG_WS_MAX_HEADER + VG_WS_MAX_CONTROL];
        if (r != VG_OK) {
            int k = vg_ws_encode_close(frame, sizeof frame, ev.close_code, NULL, 0, NULL);
            if (k > 0)
                ws_send_control(w, c, frame, (size_t)k);
            c->transport = TR_MQTT; /* no second close frame from gw_conn_destroy */
            x->ws_framed = c->out_len;
            gw_conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, "websocket framing error");
            return;
        }
        if (ev.type == VG_WS_EV_PING) {
            int k = vg_ws_encode_pong(frame, sizeof frame, ev.payload, ev.len, NULL);
            if (k > 0)
                ws_send_control(w, c, frame, (size_t)k);
        } else if (ev.type == VG_WS_EV_CLOSE) {
            size_t u = gw_parse_packets(w, c, c->in, c->in_len);
            (void)u;
            int k = vg_ws_encode_close(frame, sizeof frame, ev.close_code == VG_WS_CLOSE_NO_STATUS ? 0 : ev.close_code,
                                       NULL, 0, NULL);
            if (k > 0)
                ws_send_control(w, c, frame, (size_t)k);
            c->transport = TR_MQTT;
            x->ws_framed = c->out_len;
            gw_conn_close(w, c, c->state == ST_CLOSING ? (vg_close_reason_t)c->close_reason : VG_CLOSE_PEER_CLOSED);
            return;
        }
    }
    gw_parse_input(w, c);
}

void gw_ws_handshake(worker_t *w, conn_t *c)
{
    xport_t *x = c->x;
    vg_http_request_t req;
    int r = vg_http_parse_head(&x->hp, (const char *)c->in, c->in_len, &req);
    if (r == VG_AGAIN)
        return;
    char buf[640];
    if (r != VG_OK) {
        int n = vg_http_error_response(buf, sizeof buf, x->hp.error);
        if (n > 0)
            gw_send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
        gw_conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, vg_http_error_name(x->hp.error));
        return;
    }
    vg_ws_handshake_t hs;
    if (vg_ws_handshake(&req, &hs) != VG_OK) {
        int n = vg_ws_reject_response(buf, sizeof buf, &hs);
        if (n > 0)
            gw_send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
        gw_conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, hs.reason);
        return;
    }
    int n = vg_ws_accept_response(buf, sizeof buf, &hs);
    if (n <= 0) {
        gw_conn_close(w, c, VG_CLOSE_IO);
        return;
    }
    gw_send_bytes(w, c, (const uint8_t *)buf, (size_t)n);
    atomic_fetch_add_explicit(&w->st_ws, 1, memory_order_relaxed);
    c->transport = TR_WS;
    x->ws_framed = c->out_len; /* the 101 answer is not framed */
    /* No limit on a WebSocket message: the framer never buffers one (its
     * bytes go straight to the MQTT layer), and vg_mqtt_frame enforces the
     * packet size on what comes out. */
    vg_ws_conn_init(&x->ws, true, UINT64_MAX);
    size_t rest = c->in_len - req.head_len;
    if (rest > RBUF_SIZE) {
        gw_conn_close_why(w, c, VG_CLOSE_WS_PROTOCOL, "too much data after the handshake");
        return;
    }
    memcpy(w->rbuf, c->in + req.head_len, rest);
    c->in_len = 0;
    if (rest)
        gw_ws_input(w, c, w->rbuf, rest);
}
