/* ws.c — RFC 6455 WebSocket: handshake, frame codec, receive state machine.
 *
 * Owns the WebSocket wire format and the per-connection receive rules; the
 * server owns the socket, the output queue and the decision to close. The
 * receive side is built for an epoll server that wants MQTT bytes: data
 * frame payloads are unmasked straight into the caller's buffer, in place
 * and compacted over the frame headers, so a stream of frames becomes the
 * stream of bytes inside them without a copy per message. Only the 2..14
 * header bytes of a frame split across reads and the payload of a control
 * frame (at most 125 bytes, and the caller needs it whole to answer) are
 * kept in the state struct. Message boundaries are not reported: MQTT
 * frames its own packets and does not care where the WebSocket messages
 * began (MQTT 5.0 §6: "the receiver MUST NOT assume that MQTT Control
 * Packets are aligned on WebSocket frame boundaries").
 *
 * Nothing allocates, nothing asserts on input. SHA-1 and base64 for the
 * handshake come from OpenSSL's EVP layer. Section numbers are RFC 6455. */
#include "net/ws.h"

#include "core/err.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

/* §1.3: the GUID every server appends to the client's key. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN 36
#define WS_MAX_KEY 256

/* ---- small helpers ----------------------------------------------------- */

static bool span_eq(vg_http_span_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

static bool opcode_known(uint8_t op)
{
    return op <= VG_WS_OP_BINARY || (op >= VG_WS_OP_CLOSE && op <= VG_WS_OP_PONG);
}

/* Well-formed UTF-8 (§8.1 defers to RFC 3629): no overlong forms, no
 * surrogates, nothing above U+10FFFF. Unlike MQTT strings, U+0000 is fine.
 * The allowed range of the second byte depends on the lead byte (Unicode
 * Table 3-7), which rules out all three without decoding. */
static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        uint8_t lo = 0x80, hi = 0xBF;
        size_t k;
        if (c < 0xC2) {
            return false;
        } else if (c < 0xE0) {
            k = 2;
        } else if (c < 0xF0) {
            k = 3;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c <= 0xF4) {
            k = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (n - i < k || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t j = 2; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
        }
        i += k;
    }
    return true;
}

/* dst[i] = src[i] ^ key[(off + i) % 4], eight bytes at a time. dst may equal
 * src or lie before it: each block is loaded whole before its store, and a
 * store never reaches a byte that has not been loaded yet. */
static void xor_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], uint64_t off)
{
    uint8_t k8[8];
    uint64_t k;
    size_t i = 0;

    for (unsigned j = 0; j < 8; j++)
        k8[j] = key[(off + j) & 3];
    memcpy(&k, k8, 8);
    for (; n - i >= 8; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k8[i & 7];
}

void vg_ws_mask(uint8_t *p, size_t len, const uint8_t key[4], uint64_t offset)
{
    xor_copy(p, p, len, key, offset);
}

/* ---- handshake --------------------------------------------------------- */

int vg_ws_accept_key(const char *key, size_t key_len, char out[VG_WS_ACCEPT_LEN + 1])
{
    unsigned char buf[WS_MAX_KEY + WS_GUID_LEN];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (key_len > WS_MAX_KEY)
        return VG_EINVAL;
    if (key_len)
        memcpy(buf, key, key_len);
    memcpy(buf + key_len, WS_GUID, WS_GUID_LEN);
    /* EVP_Digest fails only if the library itself is broken. */
    if (!EVP_Digest(buf, key_len + WS_GUID_LEN, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return VG_EIO;
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != VG_WS_ACCEPT_LEN)
        return VG_EIO;
    return VG_OK;
}

/* §4.1: the key is the base64 of 16 random bytes, i.e. 22 characters and
 * "==". We check the alphabet ourselves because EVP_DecodeBlock skips
 * surrounding whitespace and counts the padding in its result. */
static bool key_valid(vg_http_span_t k)
{
    unsigned char raw[24];

    if (k.len != 24 || k.p[22] != '=' || k.p[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        unsigned char c = (unsigned char)k.p[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return false;
    }
    return EVP_DecodeBlock(raw, (const unsigned char *)k.p, 24) == 18; /* 16 bytes + 2 of padding */
}

static int refuse(vg_ws_handshake_t *hs, int status, const char *reason)
{
    hs->status = status;
    hs->reason = reason;
    return VG_EPROTO;
}

int vg_ws_handshake(const vg_http_request_t *req, vg_ws_handshake_t *hs)
{
    memset(hs, 0, sizeof(*hs));
    if (req->method != VG_HTTP_GET)
        return refuse(hs, 405, "method is not GET");
    if (req->version_minor < 1)
        return refuse(hs, 400, "HTTP/1.1 required");
    /* A plain HTTP request on the WebSocket port gets 426, which tells the
     * client what this port speaks (RFC 9110 §15.5.22). */
    if (!vg_http_has_token(req, "upgrade", "websocket"))
        return refuse(hs, 426, "no Upgrade: websocket");
    if (!vg_http_has_token(req, "connection", "upgrade"))
        return refuse(hs, 400, "Connection lacks upgrade");
    /* §4.4: an unsupported version is answered with 426 and the versions
     * we speak, so that the client can retry with one of them. */
    const vg_http_header_t *ver = vg_http_header_find(req, "sec-websocket-version");
    if (!ver || vg_http_header_count(req, "sec-websocket-version") != 1 || !span_eq(ver->value, "13"))
        return refuse(hs, 426, "Sec-WebSocket-Version is not 13");
    const vg_http_header_t *key = vg_http_header_find(req, "sec-websocket-key");
    if (!key || vg_http_header_count(req, "sec-websocket-key") != 1 || !key_valid(key->value))
        return refuse(hs, 400, "bad Sec-WebSocket-Key");

    /* MQTT §6: the client offers "mqtt" and the server selects it. Clients
     * written before the standard offer "mqttv3.1"; we take that only when
     * "mqtt" is not on the list. Subprotocol names compare exactly, and the
     * client checks that we echo one of its own values byte for byte. */
    vg_http_list_iter_t it = {0, 0};
    vg_http_span_t el;
    while (vg_http_list_next(req, "sec-websocket-protocol", &it, &el)) {
        if (span_eq(el, "mqtt")) {
            hs->subprotocol = "mqtt";
            break;
        }
        if (span_eq(el, "mqttv3.1"))
            hs->subprotocol = "mqttv3.1";
    }
    if (!hs->subprotocol)
        return refuse(hs, 400, "no mqtt subprotocol offered");
    int r = vg_ws_accept_key(key->value.p, key->value.len, hs->accept);
    if (r != VG_OK) {
        hs->subprotocol = NULL;
        hs->status = 500;
        hs->reason = "SHA-1 failed";
        return r;
    }
    return VG_OK;
}

int vg_ws_accept_response(char *buf, size_t cap, const vg_ws_handshake_t *hs)
{
    int n;

    if (hs->subprotocol)
        n = snprintf(buf, cap,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
                     hs->accept, hs->subprotocol);
    else
        n = snprintf(buf, cap,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     hs->accept);
    if (n < 0)
        return VG_EINVAL;
    return (size_t)n >= cap ? VG_ENOSPC : n;
}

int vg_ws_reject_response(char *buf, size_t cap, const vg_ws_handshake_t *hs)
{
    const char *extra = NULL;
    char body[96];
    int status = hs->status ? hs->status : 400;

    if (status == 426)
        extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    else if (status == 405)
        extra = "Allow: GET\r\n";
    int k = snprintf(body, sizeof(body), "%s\n", hs->reason ? hs->reason : "bad handshake");
    if (k < 0 || (size_t)k >= sizeof(body))
        return VG_EINVAL;
    return vg_http_response(buf, cap, status, "text/plain", body, (size_t)k, extra, false);
}

/* ---- frames ------------------------------------------------------------ */

int vg_ws_parse_header(const uint8_t *buf, size_t len, bool from_client, vg_ws_header_t *h)
{
    h->hdr_len = 0;
    if (len < 2)
        return VG_AGAIN;
    uint8_t b0 = buf[0], b1 = buf[1];
    uint8_t op = b0 & 0x0F, l7 = b1 & 0x7F;
    bool fin = b0 & 0x80, masked = b1 & 0x80;

    /* §5.2: RSV1-3 MUST be 0 unless an extension defines them; we never
     * negotiate one (no permessage-deflate). */
    if (b0 & 0x70)
        return VG_EPROTO;
    if (!opcode_known(op))
        return VG_EPROTO;
    /* §5.1: the server MUST close on an unmasked client frame, the client
     * on a masked server frame. */
    if (masked != from_client)
        return VG_EPROTO;
    /* §5.5: control frames are never fragmented and carry at most 125 bytes. */
    if ((op & 0x8) && (!fin || l7 > VG_WS_MAX_CONTROL))
        return VG_EPROTO;
    size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    h->hdr_len = need;
    if (len < need)
        return VG_AGAIN;

    uint64_t pl = l7;
    size_t i = 2;
    if (l7 == 126) {
        pl = (uint64_t)buf[2] << 8 | buf[3];
        i = 4;
        if (pl < 126)
            return VG_EPROTO; /* §5.2: minimal encoding */
    } else if (l7 == 127) {
        pl = 0;
        for (i = 2; i < 10; i++)
            pl = pl << 8 | buf[i];
        if (pl >> 63)
            return VG_EPROTO; /* §5.2: the most significant bit MUST be 0 */
        if (pl <= 0xFFFF)
            return VG_EPROTO;
    }
    h->opcode = op;
    h->fin = fin;
    h->masked = masked;
    h->payload_len = pl;
    if (masked)
        memcpy(h->mask, buf + i, 4);
    else
        memset(h->mask, 0, 4);
    return VG_OK;
}

int vg_ws_decode_frame(uint8_t *buf, size_t len, bool from_client, uint64_t max_payload, vg_ws_frame_t *f)
{
    int r = vg_ws_parse_header(buf, len, from_client, &f->h);

    if (r != VG_OK)
        return r;
    if (f->h.payload_len > max_payload)
        return VG_ETOOBIG;
    if (len - f->h.hdr_len < f->h.payload_len)
        return VG_AGAIN;
    f->payload = buf + f->h.hdr_len;
    f->frame_len = f->h.hdr_len + (size_t)f->h.payload_len;
    if (f->h.masked)
        vg_ws_mask(f->payload, (size_t)f->h.payload_len, f->h.mask, 0);
    return VG_OK;
}

bool vg_ws_close_code_valid(uint16_t code)
{
    /* §7.4.1/§7.4.2: 1004-1006 and 1015 are reserved and must never be on
     * the wire; 1012-1014 were registered with IANA after the RFC; 3000-4999
     * belong to libraries and applications; everything else is unassigned. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

int vg_ws_parse_close(const uint8_t *p, size_t len, uint16_t *code, const uint8_t **reason, size_t *reason_len)
{
    if (len == 0) {
        *code = VG_WS_CLOSE_NO_STATUS;
        *reason = p;
        *reason_len = 0;
        return VG_OK;
    }
    if (len == 1)
        return VG_EPROTO;
    uint16_t c = (uint16_t)(p[0] << 8 | p[1]);
    if (!vg_ws_close_code_valid(c))
        return VG_EPROTO;
    if (!utf8_valid(p + 2, len - 2))
        return VG_EMALFORMED;
    *code = c;
    *reason = p + 2;
    *reason_len = len - 2;
    return VG_OK;
}

int vg_ws_encode_header(uint8_t *out, size_t cap, uint8_t opcode, bool fin, uint64_t payload_len, const uint8_t *mask)
{
    if (!opcode_known(opcode) || (payload_len >> 63))
        return VG_EINVAL;
    if ((opcode & 0x8) && (!fin || payload_len > VG_WS_MAX_CONTROL))
        return VG_EINVAL;
    size_t ext = payload_len < 126 ? 0 : payload_len <= 0xFFFF ? 2 : 8;
    size_t n = 2 + ext + (mask ? 4 : 0);
    if (cap < n)
        return VG_ENOSPC;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    out[1] = (uint8_t)((mask ? 0x80 : 0) | (ext == 0 ? payload_len : ext == 2 ? 126 : 127));
    for (size_t i = 0; i < ext; i++)
        out[2 + i] = (uint8_t)(payload_len >> (8 * (ext - 1 - i)));
    if (mask)
        memcpy(out + 2 + ext, mask, 4);
    return (int)n;
}

int vg_ws_encode_frame(uint8_t *out, size_t cap, uint8_t opcode, bool fin, const uint8_t *payload, size_t len,
                       const uint8_t *mask)
{
    uint8_t hdr[VG_WS_MAX_HEADER];
    int h = vg_ws_encode_header(hdr, sizeof(hdr), opcode, fin, len, mask);

    if (h < 0)
        return h;
    if (len > (size_t)(INT_MAX - h))
        return VG_EINVAL;
    if (cap < (size_t)h + len)
        return VG_ENOSPC;
    /* memmove: the caller may have built the payload in out already. */
    if (len)
        memmove(out + h, payload, len);
    memcpy(out, hdr, (size_t)h);
    if (mask)
        vg_ws_mask(out + h, len, mask, 0);
    return h + (int)len;
}

int vg_ws_encode_close(uint8_t *out, size_t cap, uint16_t code, const char *reason, size_t reason_len,
                       const uint8_t *mask)
{
    uint8_t p[VG_WS_MAX_CONTROL];

    if (code == 0 || code == VG_WS_CLOSE_NO_STATUS) {
        if (reason_len)
            return VG_EINVAL; /* a reason needs a code before it */
        return vg_ws_encode_frame(out, cap, VG_WS_OP_CLOSE, true, NULL, 0, mask);
    }
    /* Refuse what our own decoder (or any peer) would fail on. */
    if (!vg_ws_close_code_valid(code) || reason_len > VG_WS_MAX_CONTROL - 2 ||
        !utf8_valid((const uint8_t *)reason, reason_len))
        return VG_EINVAL;
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (reason_len)
        memcpy(p + 2, reason, reason_len);
    return vg_ws_encode_frame(out, cap, VG_WS_OP_CLOSE, true, p, 2 + reason_len, mask);
}

int vg_ws_encode_pong(uint8_t *out, size_t cap, const uint8_t *payload, size_t len, const uint8_t *mask)
{
    return vg_ws_encode_frame(out, cap, VG_WS_OP_PONG, true, payload, len, mask);
}

/* ---- connection -------------------------------------------------------- */

enum {
    S_HDR,    /* between frames, or inside a header split across reads */
    S_DATA,   /* payload of a data frame: goes to the output */
    S_CTL,    /* payload of a control frame: collected in ctl_ */
    S_CLOSED, /* close received or the connection failed */
};

void vg_ws_conn_init(vg_ws_conn_t *ws, bool server, uint64_t max_message)
{
    memset(ws, 0, sizeof(*ws));
    ws->from_client_ = server;
    ws->max_message_ = max_message;
    ws->state_ = S_HDR;
}

/* §7.1.7: after a failure the endpoint sends a close frame with the reason
 * and reads nothing more. */
static int conn_fail(vg_ws_conn_t *ws, vg_ws_event_t *ev, uint16_t code, int r)
{
    ws->state_ = S_CLOSED;
    ev->type = VG_WS_EV_NONE;
    ev->payload = NULL;
    ev->len = 0;
    ev->close_code = code;
    return r;
}

/* Applies the rules between frames (§5.4) to a complete header. */
static int start_frame(vg_ws_conn_t *ws, const vg_ws_header_t *h, vg_ws_event_t *ev)
{
    ws->opcode_ = h->opcode;
    memcpy(ws->mask_, h->mask, 4);
    ws->mask_off_ = 0;
    ws->remaining_ = h->payload_len;
    ws->hdr_len_ = 0;
    if (h->opcode & 0x8) {
        /* Control frames may come between the fragments of a message and
         * do not touch it. */
        ws->ctl_len_ = 0;
        ws->state_ = S_CTL;
        return VG_OK;
    }
    if (h->opcode == VG_WS_OP_CONT) {
        if (!ws->in_message_)
            return conn_fail(ws, ev, VG_WS_CLOSE_PROTOCOL, VG_EPROTO);
    } else {
        if (ws->in_message_)
            return conn_fail(ws, ev, VG_WS_CLOSE_PROTOCOL, VG_EPROTO);
        /* MQTT §6: a text frame means the peer is not speaking MQTT. */
        if (h->opcode == VG_WS_OP_TEXT)
            return conn_fail(ws, ev, VG_WS_CLOSE_UNSUPPORTED, VG_EPROTO);
        ws->msg_len_ = 0;
    }
    if (h->payload_len > ws->max_message_ - ws->msg_len_)
        return conn_fail(ws, ev, VG_WS_CLOSE_TOO_BIG, VG_ETOOBIG);
    ws->msg_len_ += h->payload_len;
    ws->in_message_ = !h->fin;
    ws->state_ = S_DATA;
    return VG_OK;
}

/* A control frame's payload is complete in ctl_: report it. */
static int control_done(vg_ws_conn_t *ws, vg_ws_event_t *ev)
{
    ws->state_ = S_HDR;
    ev->payload = ws->ctl_;
    ev->len = ws->ctl_len_;
    if (ws->opcode_ == VG_WS_OP_PING) {
        ev->type = VG_WS_EV_PING;
    } else if (ws->opcode_ == VG_WS_OP_PONG) {
        ev->type = VG_WS_EV_PONG;
    } else {
        uint16_t code;
        const uint8_t *reason;
        size_t rlen;
        int r = vg_ws_parse_close(ws->ctl_, ws->ctl_len_, &code, &reason, &rlen);
        if (r != VG_OK)
            return conn_fail(ws, ev, r == VG_EMALFORMED ? VG_WS_CLOSE_INVALID_DATA : VG_WS_CLOSE_PROTOCOL, r);
        ev->type = VG_WS_EV_CLOSE;
        ev->close_code = code;
        ev->payload = reason;
        ev->len = rlen;
        ws->state_ = S_CLOSED;
    }
    return VG_OK;
}

/* The current frame's payload has all arrived. */
static int frame_done(vg_ws_conn_t *ws, vg_ws_event_t *ev)
{
    if (ws->state_ == S_CTL)
        return control_done(ws, ev);
    ws->state_ = S_HDR;
    return VG_OK;
}

/* Gathers a header that arrives in pieces into hdr_: first the two bytes
 * that say how long it is, then the rest. Returns VG_AGAIN when in ran out. */
static int gather_header(vg_ws_conn_t *ws, const uint8_t *in, size_t len, size_t *i, vg_ws_header_t *h)
{
    for (;;) {
        int r = vg_ws_parse_header(ws->hdr_, ws->hdr_len_, ws->from_client_, h);
        if (r != VG_AGAIN || *i == len)
            return r;
        size_t want = h->hdr_len ? h->hdr_len : 2;
        size_t n = want - ws->hdr_len_;
        if (n > len - *i)
            n = len - *i;
        memcpy(ws->hdr_ + ws->hdr_len_, in + *i, n);
        ws->hdr_len_ = (uint8_t)(ws->hdr_len_ + n);
        *i += n;
    }
}

int vg_ws_feed(vg_ws_conn_t *ws, const uint8_t *in, size_t len, size_t *used, uint8_t *out, size_t *out_len,
               vg_ws_event_t *ev)
{
    size_t i = 0, o = 0;
    int r = VG_OK;

    memset(ev, 0, sizeof(*ev));
    *used = *out_len = 0;
    if (ws->state_ == S_CLOSED)
        return VG_ECLOSED;
    while (r == VG_OK && ev->type == VG_WS_EV_NONE && ws->state_ != S_CLOSED) {
        if (ws->state_ == S_HDR) {
            vg_ws_header_t h;
            if (i == len)
                break;
            if (ws->hdr_len_ == 0) {
                /* The common case: the whole header is in this read. */
                r = vg_ws_parse_header(in + i, len - i, ws->from_client_, &h);
                if (r == VG_AGAIN) {
                    /* Fewer than 14 bytes are left (the header would
                     * otherwise be complete): keep them. */
                    memcpy(ws->hdr_, in + i, len - i);
                    ws->hdr_len_ = (uint8_t)(len - i);
                    i = len;
                    r = VG_OK;
                    break;
                }
                if (r == VG_OK)
                    i += h.hdr_len;
            } else {
                r = gather_header(ws, in, len, &i, &h);
                if (r == VG_AGAIN) {
                    r = VG_OK;
                    break;
                }
            }
            if (r != VG_OK) {
                r = conn_fail(ws, ev, VG_WS_CLOSE_PROTOCOL, r);
                break;
            }
            r = start_frame(ws, &h, ev);
            if (r == VG_OK && ws->remaining_ == 0)
                r = frame_done(ws, ev);
            continue;
        }
        if (i == len)
            break;
        size_t n = len - i;
        if (n > ws->remaining_)
            n = (size_t)ws->remaining_;
        if (ws->state_ == S_DATA) {
            if (ws->from_client_)
                xor_copy(out + o, in + i, n, ws->mask_, ws->mask_off_);
            else if (out + o != in + i)
                memmove(out + o, in + i, n);
            o += n;
        } else {
            xor_copy(ws->ctl_ + ws->ctl_len_, in + i, n, ws->mask_, ws->mask_off_);
            ws->ctl_len_ = (uint8_t)(ws->ctl_len_ + n);
        }
        i += n;
        ws->mask_off_ += n;
        ws->remaining_ -= n;
        if (ws->remaining_ == 0)
            r = frame_done(ws, ev);
    }
    *used = i;
    *out_len = o;
    return r;
}
