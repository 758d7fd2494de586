/* ws.h — RFC 6455 WebSocket for MQTT over WebSocket: the opening handshake
 * (server side), frame decoding, and frame encoding (both sides).
 *
 * Owns: the handshake checks and the 101 answer, the frame format (header,
 * masking, the per-frame rules of §5), the message rules of a connection
 * (fragmentation, interleaved control frames, size limit, close payload),
 * and turning a stream of frames into the stream of payload bytes inside
 * them. Does not own: sockets, timers, deciding when to ping, the MQTT
 * framing of those bytes (the MQTT codec does that: one MQTT packet may span
 * frames, one frame may hold several packets).
 *
 * Nothing here allocates. Input never trips an assert; each refusal is a
 * VG_E* code plus the close code to send (§7.4.1). The connection decoder
 * consumes every byte it is given (partial frame headers and control frames
 * are kept in its state, at most 14 + 125 bytes), so the caller never keeps
 * WebSocket framing around, only the MQTT bytes that come out.
 *
 * MQTT over WebSocket (MQTT 3.1.1 §6, MQTT 5.0 §6) uses binary messages only
 * and the subprotocol "mqtt"; a text message fails the connection (1003). */
#ifndef VG_NET_WS_H
#define VG_NET_WS_H

#include "net/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opcodes (§5.2). */
enum {
    VG_WS_OP_CONT = 0x0,
    VG_WS_OP_TEXT = 0x1,
    VG_WS_OP_BINARY = 0x2,
    VG_WS_OP_CLOSE = 0x8,
    VG_WS_OP_PING = 0x9,
    VG_WS_OP_PONG = 0xA,
};

/* Close codes (§7.4.1) we send or interpret. */
enum {
    VG_WS_CLOSE_NORMAL = 1000,
    VG_WS_CLOSE_GOING_AWAY = 1001,
    VG_WS_CLOSE_PROTOCOL = 1002,
    VG_WS_CLOSE_UNSUPPORTED = 1003,  /* e.g. a text message on an MQTT connection */
    VG_WS_CLOSE_NO_STATUS = 1005,    /* received close without a code; never sent */
    VG_WS_CLOSE_INVALID_DATA = 1007, /* close reason not UTF-8 */
    VG_WS_CLOSE_POLICY = 1008,
    VG_WS_CLOSE_TOO_BIG = 1009,
    VG_WS_CLOSE_INTERNAL = 1011,
};

#define VG_WS_MAX_HEADER 14   /* 2 + 8 (64-bit length) + 4 (mask key) */
#define VG_WS_MAX_CONTROL 125 /* control frame payload limit (§5.5) */
#define VG_WS_ACCEPT_LEN 28   /* base64 of a SHA-1 digest */

/* ---- handshake (§4.2) -------------------------------------------------- */

typedef struct {
    int status;                        /* on failure: the HTTP status to answer (400, 405, 426) */
    const char *reason;                /* on failure: a short static reason for logs/counters */
    const char *subprotocol;           /* on success: "mqtt" or "mqttv3.1" (static) */
    char accept[VG_WS_ACCEPT_LEN + 1]; /* on success: Sec-WebSocket-Accept value */
} vg_ws_handshake_t;

/* Checks that a parsed request (vg_http_parse_head) is a WebSocket opening
 * handshake we accept: GET, HTTP/1.1, "Upgrade: websocket" and a Connection
 * list containing "upgrade" (both case-insensitive), exactly one
 * "Sec-WebSocket-Version: 13", exactly one Sec-WebSocket-Key that is the
 * base64 of 16 bytes, and a Sec-WebSocket-Protocol list offering "mqtt" (or
 * its pre-standard name "mqttv3.1"; "mqtt" wins when both are offered).
 * Returns VG_OK with hs->accept and hs->subprotocol set; VG_EPROTO with
 * hs->status and hs->reason (answer with vg_ws_reject_response and close);
 * VG_EIO if OpenSSL failed to hash. Origin is not checked: the caller
 * decides which pages may connect. */
int vg_ws_handshake(const vg_http_request_t *req, vg_ws_handshake_t *hs);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key ++ GUID)) (§4.2.2),
 * written as VG_WS_ACCEPT_LEN characters and a NUL. Returns VG_OK, VG_EINVAL
 * for a key longer than 256 bytes, VG_EIO if OpenSSL failed. */
int vg_ws_accept_key(const char *key, size_t key_len, char out[VG_WS_ACCEPT_LEN + 1]);

/* Writes the 101 Switching Protocols answer for an accepted handshake into
 * buf[0..cap); returns its length or VG_ENOSPC. After sending it, the
 * connection speaks WebSocket: start a vg_ws_conn_t. */
int vg_ws_accept_response(char *buf, size_t cap, const vg_ws_handshake_t *hs);
/* Writes the refusal for a failed handshake (hs->status, with
 * "Sec-WebSocket-Version: 13" and "Upgrade: websocket" on 426 and "Allow:
 * GET" on 405, "Connection: close"); returns its length or VG_ENOSPC. */
int vg_ws_reject_response(char *buf, size_t cap, const vg_ws_handshake_t *hs);

/* ---- frames (§5.2) ----------------------------------------------------- */

typedef struct {
    uint8_t opcode;
    bool fin;
    bool masked;
    uint8_t mask[4]; /* the key when masked */
    uint64_t payload_len;
    size_t hdr_len; /* 2..14 */
} vg_ws_header_t;

/* Parses the frame header at buf[0..len). from_client says which side sent
 * it: client frames must be masked, server frames must not be (§5.1).
 * Returns VG_OK; VG_AGAIN when the header is incomplete (once two bytes are
 * there, h->hdr_len already says how long it will be, else it is 0);
 * VG_EPROTO (close 1002) for a reserved bit set (no extension is ever
 * negotiated), an unknown opcode, a control frame that is fragmented or
 * longer than 125, the wrong masking, a 64-bit length with its top bit set,
 * or a length not in its shortest encoding (§5.2: "the minimal number of
 * bytes MUST be used"). */
int vg_ws_parse_header(const uint8_t *buf, size_t len, bool from_client, vg_ws_header_t *h);

typedef struct {
    vg_ws_header_t h;
    uint8_t *payload; /* buf + h.hdr_len, unmasked */
    size_t frame_len; /* hdr_len + payload_len */
} vg_ws_frame_t;

/* Decodes one whole frame at the start of buf[0..len): parses its header,
 * waits (VG_AGAIN) until all of its payload is there, then unmasks the
 * payload IN PLACE and returns VG_OK. Because of that, call it once per
 * frame and consume f->frame_len bytes afterwards. VG_ETOOBIG when the
 * payload is longer than max_payload (known from the header alone), or the
 * errors of vg_ws_parse_header. Only per-frame rules are checked; the rules
 * between frames are vg_ws_feed's. Meant for clients, tests and tools; the
 * server uses vg_ws_conn_t, which does not need whole frames in memory. */
int vg_ws_decode_frame(uint8_t *buf, size_t len, bool from_client, uint64_t max_payload, vg_ws_frame_t *f);

/* XORs p[0..len) with the mask key, p[0] being byte `offset` of the payload
 * (so a payload can be masked in pieces). Masking and unmasking are the same. */
void vg_ws_mask(uint8_t *p, size_t len, const uint8_t key[4], uint64_t offset);

/* Checks a close frame's payload (§5.5.1, §7.4): empty (*code = 1005, no
 * reason), or a 2-byte code valid on the wire and a UTF-8 reason. Returns
 * VG_OK with *code and the reason span; VG_EPROTO (close 1002) for a 1-byte
 * payload or a code that may not be sent; VG_EMALFORMED (close 1007) for a
 * reason that is not UTF-8. */
int vg_ws_parse_close(const uint8_t *p, size_t len, uint16_t *code, const uint8_t **reason, size_t *reason_len);
/* May code appear in a close frame (1000-1003, 1007-1014, 3000-4999)? */
bool vg_ws_close_code_valid(uint16_t code);

/* Encoders. Each writes into out[0..cap) and returns the bytes written, or
 * VG_ENOSPC if cap is short, or VG_EINVAL for what the protocol cannot carry
 * (unknown opcode, a control frame not final or over 125 bytes, a length
 * with the top bit set, a whole frame over INT_MAX bytes). mask is the
 * 4-byte key for client frames, NULL for server frames. */
/* Just the header (2..14 bytes), always in the shortest length encoding;
 * the caller masks the payload with vg_ws_mask(payload, n, mask, 0). */
int vg_ws_encode_header(uint8_t *out, size_t cap, uint8_t opcode, bool fin, uint64_t payload_len, const uint8_t *mask);
/* A whole frame: header then payload[0..len), masked when mask is set. */
int vg_ws_encode_frame(uint8_t *out, size_t cap, uint8_t opcode, bool fin, const uint8_t *payload, size_t len,
                       const uint8_t *mask);
/* A close frame with code and reason; code 1005 (or 0) gives the empty
 * payload, which is how to answer a close that carried no code. VG_EINVAL
 * for a code vg_ws_close_code_valid refuses or a reason over 123 bytes. */
int vg_ws_encode_close(uint8_t *out, size_t cap, uint16_t code, const char *reason, size_t reason_len,
                       const uint8_t *mask);
/* The pong answering a ping: same payload (§5.5.3). */
int vg_ws_encode_pong(uint8_t *out, size_t cap, const uint8_t *payload, size_t len, const uint8_t *mask);

/* ---- connection (the server's receive side) ---------------------------- */

typedef enum {
    VG_WS_EV_NONE = 0, /* only payload bytes (or nothing) came out */
    VG_WS_EV_PING,     /* answer with vg_ws_encode_pong(payload) */
    VG_WS_EV_PONG,     /* an answer to our ping (or unsolicited: ignore) */
    VG_WS_EV_CLOSE,    /* peer closes: answer with close(close_code), then close TCP */
} vg_ws_event_type_t;

typedef struct {
    vg_ws_event_type_t type;
    const uint8_t *payload; /* ping/pong payload or close reason; in the
                               vg_ws_conn_t, valid until the next feed */
    size_t len;
    /* VG_WS_EV_CLOSE: the peer's code (1005 when it sent none). After a
     * failed feed: the code to send in our close frame. */
    uint16_t close_code;
} vg_ws_event_t;

/* Receive state of one WebSocket connection: embed it in the connection,
 * vg_ws_conn_init it, feed it. The fields are private. */
typedef struct {
    uint64_t max_message_; /* limit on one (reassembled) data message */
    uint64_t msg_len_;     /* bytes of the data message so far */
    uint64_t remaining_;   /* payload bytes of the current frame still to come */
    uint64_t mask_off_;    /* payload offset for the mask */
    bool from_client_;     /* frames we receive are masked */
    bool in_message_;      /* a fragmented data message is open */
    uint8_t state_;
    uint8_t opcode_; /* of the current frame */
    uint8_t mask_[4];
    uint8_t hdr_len_;
    uint8_t hdr_[VG_WS_MAX_HEADER];
    uint8_t ctl_len_;
    uint8_t ctl_[VG_WS_MAX_CONTROL];
} vg_ws_conn_t;

/* Prepares ws for a connection. server: we are the server (so incoming
 * frames must be masked). max_message: the largest data message accepted,
 * summed over its fragments (UINT64_MAX for none); checked from each frame
 * header, before the payload arrives. */
void vg_ws_conn_init(vg_ws_conn_t *ws, bool server, uint64_t max_message);

/* Runs received bytes in[0..len) through the connection. The payload bytes
 * of data frames (unmasked, fragments joined) are written to
 * out[0..*out_len); out must have room for len bytes and may be in itself
 * or lie before it in the same buffer (the output never overtakes the
 * input), so the caller can unwrap in place, keeping MQTT bytes contiguous:
 *
 *     recv(fd, c->in + c->in_len, ...)  ->  k new bytes
 *     p = c->in + c->in_len, left = k
 *     while (left) {
 *         r = vg_ws_feed(ws, p, left, &used, c->in + c->in_len, &made, &ev);
 *         p += used; left -= used; c->in_len += made;
 *         if (r != VG_OK) -> send close(ev.close_code), close the connection
 *         if (ev.type == VG_WS_EV_PING) -> queue pong(ev.payload, ev.len)
 *         if (ev.type == VG_WS_EV_CLOSE) -> handle the MQTT bytes so far,
 *             queue close(ev.close_code), close after flushing
 *     }
 *     then frame MQTT packets in c->in[0..c->in_len) as before.
 *
 * Returns VG_OK with ev->type NONE after using all of in (*used == len),
 * or VG_OK with a control event after the control frame that caused it
 * (*used <= len; call again for the rest). Failures (ev->close_code says
 * what to send):
 *  VG_EPROTO: a vg_ws_parse_header rule (1002), a continuation frame with no
 *    message open or a new data message while one is open (1002), a text
 *    message (1003), a 1-byte close payload or an invalid close code (1002);
 *  VG_EMALFORMED: a close reason that is not UTF-8 (1007);
 *  VG_ETOOBIG: a data message over max_message (1009);
 *  VG_ECLOSED: called again after a close event or a failure.
 * On failure, *used and *out_len still describe what came before the fault. */
int vg_ws_feed(vg_ws_conn_t *ws, const uint8_t *in, size_t len, size_t *used, uint8_t *out, size_t *out_len,
               vg_ws_event_t *ev);

#endif
