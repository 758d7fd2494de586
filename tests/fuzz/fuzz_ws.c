/* fuzz_ws.c — libFuzzer harness for the WebSocket layer (src/net/ws.c).
 *
 * The first input byte picks the side (server: frames must be masked, or
 * client), the message size limit and how the stream is cut; the rest is
 * the byte stream a peer sends after the handshake. It is run three ways:
 *  1. through vg_ws_conn_t with everything in one buffer, unwrapped in place;
 *  2. through vg_ws_conn_t in pieces of pseudo-random size (derived from the
 *     input), each in its own exactly-sized heap buffer, unwrapped in place;
 *  3. through a reference written here from the RFC: frame by frame with
 *     vg_ws_parse_header / vg_ws_decode_frame, the message rules restated,
 *     unmasking byte by byte.
 * Each run writes a transcript (the payload stream, every event with its
 * position in that stream and its payload, how the run ended, with the close
 * code) and the three must be equal. Along the way: every decoded header
 * re-encodes to exactly its bytes (lengths must be minimal), no call uses
 * more than it was given or produces more than it used, pings answered with
 * our pong and closes echoed with our close frame decode back to the same,
 * and piecewise masking equals whole masking. The same input is also tried
 * as an HTTP upgrade request, which must be accepted or refused cleanly. */
#include "core/err.h"
#include "net/http.h"
#include "net/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                                    \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define TRANSCRIPT (1u << 20)

typedef struct {
    bool server;
    uint64_t max_message;
    size_t piece;
} cfg_t;

typedef struct {
    uint8_t *b;
    size_t n;
} log_t;

static uint8_t log_a[TRANSCRIPT], log_b[TRANSCRIPT], log_c[TRANSCRIPT];
static uint64_t rng;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void log_put(log_t *l, const void *p, size_t n)
{
    if (n > TRANSCRIPT - l->n)
        n = TRANSCRIPT - l->n;
    if (n)
        memcpy(l->b + l->n, p, n);
    l->n += n;
}

static void log_u64(log_t *l, uint64_t v)
{
    log_put(l, &v, sizeof(v));
}

/* The output stream is logged separately from the events so that runs that
 * produce it in different chunks compare equal. */
typedef struct {
    log_t ev;
    uint8_t *out;
    size_t out_len;
} rec_t;

static uint8_t out_a[1 << 20], out_b[1 << 20], out_c[1 << 20];

static void rec_event(rec_t *r, char type, const uint8_t *p, size_t n, uint64_t code)
{
    log_put(&r->ev, &type, 1);
    log_u64(&r->ev, r->out_len);
    log_u64(&r->ev, code);
    log_u64(&r->ev, n);
    log_put(&r->ev, p, n);
}

static void rec_out(rec_t *r, const uint8_t *p, size_t n)
{
    CHECK(r->out_len + n <= sizeof(out_a));
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
}

static void rec_end(rec_t *r, int result, uint16_t code)
{
    log_put(&r->ev, "E", 1);
    log_u64(&r->ev, r->out_len);
    log_u64(&r->ev, (uint64_t)(int64_t)result);
    log_u64(&r->ev, code);
}

static const uint8_t KEY[4] = {0xa5, 0x01, 0x7e, 0xc3};

/* Our answers to the peer's control frames must be frames the peer (the
 * other side) decodes back to the same content. */
static void check_answer(const cfg_t *c, const vg_ws_event_t *ev)
{
    uint8_t f[VG_WS_MAX_HEADER + VG_WS_MAX_CONTROL];
    const uint8_t *mask = c->server ? NULL : KEY; /* the answer goes the other way */
    int n;

    if (ev->type == VG_WS_EV_PING) {
        n = vg_ws_encode_pong(f, sizeof(f), ev->payload, ev->len, mask);
    } else if (ev->type == VG_WS_EV_CLOSE) {
        n = vg_ws_encode_close(f, sizeof(f), ev->close_code, (const char *)ev->payload, ev->len, mask);
    } else {
        return;
    }
    CHECK(n > 0);
    vg_ws_frame_t fr;
    CHECK(vg_ws_decode_frame(f, (size_t)n, !c->server, VG_WS_MAX_CONTROL, &fr) == VG_OK);
    CHECK(fr.frame_len == (size_t)n);
    if (ev->type == VG_WS_EV_PING) {
        CHECK(fr.h.opcode == VG_WS_OP_PONG && fr.h.payload_len == ev->len);
        CHECK(ev->len == 0 || memcmp(fr.payload, ev->payload, ev->len) == 0);
    } else {
        uint16_t code;
        const uint8_t *rs;
        size_t rl;
        CHECK(fr.h.opcode == VG_WS_OP_CLOSE);
        CHECK(vg_ws_parse_close(fr.payload, (size_t)fr.h.payload_len, &code, &rs, &rl) == VG_OK);
        CHECK(code == ev->close_code && rl == ev->len && (rl == 0 || memcmp(rs, ev->payload, rl) == 0));
    }
}

/* Runs buf[0..n) (one read) through ws, unwrapping in place; returns false
 * once the connection has ended (close event or failure). */
static bool feed_read(const cfg_t *c, vg_ws_conn_t *ws, uint8_t *buf, size_t n, rec_t *r)
{
    uint8_t *p = buf;
    size_t left = n, made_total = 0;
    bool alive = true;

    while (left && alive) {
        size_t used = 9999, made = 9999;
        vg_ws_event_t ev;
        int res = vg_ws_feed(ws, p, left, &used, buf + made_total, &made, &ev);
        CHECK(used <= left && made <= used);
        CHECK(buf + made_total + made <= p + used); /* output never overtakes input */
        /* Output lands before the event is logged (the event follows the
         * payload bytes that preceded its frame). */
        rec_out(r, buf + made_total, made);
        made_total += made;
        p += used;
        left -= used;
        if (res != VG_OK) {
            CHECK(res == VG_EPROTO || res == VG_EMALFORMED || res == VG_ETOOBIG);
            CHECK(ev.close_code == 1002 || ev.close_code == 1003 || ev.close_code == 1007 || ev.close_code == 1009);
            CHECK(res != VG_ETOOBIG || ev.close_code == 1009);
            CHECK(res != VG_EMALFORMED || ev.close_code == 1007);
            rec_end(r, res, ev.close_code);
            /* A failed connection stays failed. */
            CHECK(vg_ws_feed(ws, p, left, &used, buf, &made, &ev) == VG_ECLOSED);
            return false;
        }
        if (ev.type == VG_WS_EV_NONE) {
            CHECK(left == 0); /* no event: everything was used */
            continue;
        }
        CHECK(ev.len <= VG_WS_MAX_CONTROL);
        check_answer(c, &ev);
        char t = ev.type == VG_WS_EV_PING ? 'i' : ev.type == VG_WS_EV_PONG ? 'o' : 'c';
        rec_event(r, t, ev.payload, ev.len, ev.type == VG_WS_EV_CLOSE ? ev.close_code : 0);
        if (ev.type == VG_WS_EV_CLOSE) {
            CHECK(ev.close_code == 1005 ? ev.len == 0 : vg_ws_close_code_valid(ev.close_code));
            rec_end(r, VG_OK, ev.close_code);
            CHECK(vg_ws_feed(ws, p, left, &used, buf, &made, &ev) == VG_ECLOSED);
            alive = false;
        }
    }
    return alive;
}

static void run_whole(const cfg_t *c, const uint8_t *data, size_t size, rec_t *r)
{
    vg_ws_conn_t ws;
    uint8_t *buf = malloc(size ? size : 1);

    memcpy(buf, data, size);
    vg_ws_conn_init(&ws, c->server, c->max_message);
    if (feed_read(c, &ws, buf, size, r))
        rec_end(r, VG_OK, 0);
    free(buf);
}

static void run_pieces(const cfg_t *c, const uint8_t *data, size_t size, rec_t *r)
{
    vg_ws_conn_t ws;
    size_t off = 0;
    bool alive = true;

    vg_ws_conn_init(&ws, c->server, c->max_message);
    while (off < size && alive) {
        size_t k = 1 + (size_t)(next_rand() % c->piece);
        if (k > size - off)
            k = size - off;
        uint8_t *buf = malloc(k);
        memcpy(buf, data + off, k);
        alive = feed_read(c, &ws, buf, k, r);
        free(buf);
        off += k;
    }
    if (alive)
        rec_end(r, VG_OK, 0);
}

/* ---- the reference ----------------------------------------------------- */

static uint8_t frame_copy[1 << 20];

static void run_reference(const cfg_t *c, const uint8_t *s, size_t n, rec_t *r)
{
    size_t off = 0;
    bool in_msg = false;
    uint64_t msg_len = 0;

    for (;;) {
        vg_ws_header_t h;
        int res = vg_ws_parse_header(s + off, n - off, c->server, &h);
        if (res == VG_AGAIN) {
            CHECK(n - off < 2 || n - off < h.hdr_len);
            CHECK(h.hdr_len == 0 || (h.hdr_len >= 2 && h.hdr_len <= VG_WS_MAX_HEADER));
            rec_end(r, VG_OK, 0);
            return;
        }
        if (res != VG_OK) {
            CHECK(res == VG_EPROTO);
            rec_end(r, res, 1002);
            return;
        }
        /* The header is in its one canonical encoding. */
        uint8_t enc[VG_WS_MAX_HEADER];
        int e = vg_ws_encode_header(enc, sizeof(enc), h.opcode, h.fin, h.payload_len, h.masked ? h.mask : NULL);
        CHECK(e > 0 && (size_t)e == h.hdr_len && memcmp(enc, s + off, h.hdr_len) == 0);
        CHECK(h.masked == c->server && h.payload_len < (1ull << 63));

        bool control = h.opcode >= 8;
        CHECK(!control || (h.fin && h.payload_len <= 125));
        if (!control) {
            if (h.opcode == VG_WS_OP_CONT && !in_msg) {
                rec_end(r, VG_EPROTO, 1002);
                return;
            }
            if (h.opcode != VG_WS_OP_CONT && in_msg) {
                rec_end(r, VG_EPROTO, 1002);
                return;
            }
            if (h.opcode == VG_WS_OP_TEXT) {
                rec_end(r, VG_EPROTO, 1003);
                return;
            }
            if (h.opcode != VG_WS_OP_CONT)
                msg_len = 0;
            if (h.payload_len > c->max_message || msg_len > c->max_message - h.payload_len) {
                rec_end(r, VG_ETOOBIG, 1009);
                return;
            }
            msg_len += h.payload_len;
            in_msg = !h.fin;
        }
        size_t body = n - off - h.hdr_len;
        size_t avail = h.payload_len < body ? (size_t)h.payload_len : body;
        const uint8_t *pay = s + off + h.hdr_len;
        uint8_t ctl[125];
        for (size_t i = 0; i < avail; i++) {
            uint8_t b = h.masked ? pay[i] ^ h.mask[i % 4] : pay[i];
            if (control)
                ctl[i] = b;
            else
                rec_out(r, &b, 1);
        }
        if (avail < h.payload_len) {
            rec_end(r, VG_OK, 0); /* the stream ends inside this frame */
            return;
        }
        /* The whole-frame decoder agrees on the complete frame. */
        size_t flen = h.hdr_len + avail;
        if (flen <= sizeof(frame_copy)) {
            vg_ws_frame_t f;
            memcpy(frame_copy, s + off, flen);
            CHECK(vg_ws_decode_frame(frame_copy, flen, c->server, UINT64_MAX, &f) == VG_OK);
            CHECK(f.frame_len == flen && f.h.opcode == h.opcode && f.h.payload_len == h.payload_len);
            if (avail) {
                const uint8_t *ref = control ? ctl : r->out + r->out_len - avail;
                CHECK(memcmp(f.payload, ref, avail) == 0);
            }
            if (h.payload_len > 0)
                CHECK(vg_ws_decode_frame(frame_copy, flen, c->server, h.payload_len - 1, &f) == VG_ETOOBIG);
        }
        if (h.opcode == VG_WS_OP_PING) {
            rec_event(r, 'i', ctl, avail, 0);
        } else if (h.opcode == VG_WS_OP_PONG) {
            rec_event(r, 'o', ctl, avail, 0);
        } else if (h.opcode == VG_WS_OP_CLOSE) {
            uint16_t code;
            const uint8_t *rs;
            size_t rl;
            int pc = vg_ws_parse_close(ctl, avail, &code, &rs, &rl);
            if (pc != VG_OK) {
                CHECK(pc == VG_EPROTO || pc == VG_EMALFORMED);
                rec_end(r, pc, pc == VG_EMALFORMED ? 1007 : 1002);
                return;
            }
            rec_event(r, 'c', rs, rl, code);
            rec_end(r, VG_OK, code);
            return;
        }
        off += flen;
    }
}

/* ---- masking ----------------------------------------------------------- */

static uint8_t m1[1 << 16], m2[1 << 16];

static void check_mask(const uint8_t *data, size_t size)
{
    size_t n = size < sizeof(m1) ? size : sizeof(m1);
    uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    if (size >= 4)
        memcpy(key, data, 4);
    uint64_t base = next_rand() % 7;
    memcpy(m1, data, n);
    memcpy(m2, data, n);
    vg_ws_mask(m1, n, key, base);
    for (size_t off = 0; off < n;) {
        size_t k = 1 + (size_t)(next_rand() % 19);
        if (k > n - off)
            k = n - off;
        vg_ws_mask(m2 + off, k, key, base + off);
        off += k;
    }
    CHECK(memcmp(m1, m2, n) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK(m1[i] == (data[i] ^ key[(base + i) % 4]));
}

/* ---- the handshake ----------------------------------------------------- */

static void check_handshake(const uint8_t *data, size_t size)
{
    vg_http_header_t hdrs[32];
    vg_http_parser_t p;
    vg_http_request_t req;
    vg_ws_handshake_t hs;
    char out[1024];

    vg_http_parser_init(&p, hdrs, 32, 4096, 0);
    if (vg_http_parse_head(&p, (const char *)data, size, &req) != VG_OK)
        return;
    int r = vg_ws_handshake(&req, &hs);
    if (r == VG_OK) {
        CHECK(strlen(hs.accept) == VG_WS_ACCEPT_LEN);
        CHECK(strcmp(hs.subprotocol, "mqtt") == 0 || strcmp(hs.subprotocol, "mqttv3.1") == 0);
        CHECK(req.method == VG_HTTP_GET && req.version_minor == 1);
        const vg_http_header_t *k = vg_http_header_find(&req, "sec-websocket-key");
        CHECK(k && k->value.len == 24);
        int n = vg_ws_accept_response(out, sizeof(out), &hs);
        CHECK(n > 0 && memcmp(out, "HTTP/1.1 101 ", 13) == 0);
    } else {
        CHECK(r == VG_EPROTO);
        CHECK(hs.status == 400 || hs.status == 405 || hs.status == 426);
        CHECK(hs.reason && !hs.subprotocol);
        int n = vg_ws_reject_response(out, sizeof(out), &hs);
        CHECK(n > 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t maxes[4] = {0, 7, 300, UINT64_MAX};
    static const size_t pieces[4] = {1, 5, 64, 4096};
    cfg_t c;

    if (size < 1)
        return 0;
    c.server = !(data[0] & 1);
    c.max_message = maxes[(data[0] >> 1) & 3];
    c.piece = pieces[(data[0] >> 3) & 3];
    data++;
    size--;

    rng = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size; i++)
        rng = (rng ^ data[i]) * 0x100000001B3ull;
    if (!rng)
        rng = 1;

    rec_t a = {{log_a, 0}, out_a, 0}, b = {{log_b, 0}, out_b, 0}, ref = {{log_c, 0}, out_c, 0};
    run_whole(&c, data, size, &a);
    run_pieces(&c, data, size, &b);
    run_reference(&c, data, size, &ref);
    if (a.ev.n != ref.ev.n || memcmp(log_a, log_c, a.ev.n) != 0 || a.out_len != ref.out_len ||
        memcmp(out_a, out_c, a.out_len) != 0) {
        fprintf(stderr, "whole run and reference differ (events %zu/%zu, out %zu/%zu)\n", a.ev.n, ref.ev.n, a.out_len,
                ref.out_len);
        abort();
    }
    if (a.ev.n != b.ev.n || memcmp(log_a, log_b, a.ev.n) != 0 || a.out_len != b.out_len ||
        memcmp(out_a, out_b, a.out_len) != 0) {
        fprintf(stderr, "whole run and piecewise run differ (events %zu/%zu, out %zu/%zu)\n", a.ev.n, b.ev.n, a.out_len,
                b.out_len);
        abort();
    }
    check_mask(data, size);
    check_handshake(data, size);
    return 0;
}
