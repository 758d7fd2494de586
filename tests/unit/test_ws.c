/* test_ws.c — unit tests for the WebSocket layer (src/net/ws.c).
 *
 * Frames are either the RFC's own examples (§5.7), written out byte by byte,
 * or built by the encoder and checked against the decoder; the connection
 * decoder is also fed streams one byte at a time and split at every
 * position, because it keeps partial headers and control payloads in its
 * state. Section numbers are RFC 6455. */
#include "core/err.h"
#include "net/http.h"
#include "net/ws.h"
#include "vt.h"

#include <stdint.h>
#include <stdlib.h>

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- handshake --------------------------------------------------------- */

static vg_http_header_t hdrs[32];
static vg_http_request_t R;

static int parse_req(const char *s)
{
    vg_http_parser_t p;
    vg_http_parser_init(&p, hdrs, 32, 8192, 0);
    return vg_http_parse_head(&p, s, strlen(s), &R);
}

/* Handshake for a request built from the §1.3 example with `extra` lines
 * replacing nothing: the caller passes every header. */
static int handshake(const char *req, vg_ws_handshake_t *hs)
{
    if (parse_req(req) != VG_OK)
        return 1000; /* not even HTTP */
    return vg_ws_handshake(&R, hs);
}

#define WS_REQ(method, ver, lines) method " /mqtt HTTP/" ver "\r\nHost: server.example.com\r\n" lines "\r\n"
#define GOOD_LINES                                                                                                     \
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                     \
    "Origin: http://example.com\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n"

static void test_accept_key_rfc_sample(void)
{
    char out[VG_WS_ACCEPT_LEN + 1];
    /* §1.3's own example: SHA-1 b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38
     * 59 45 b2 be c4 ea, base64 below. */
    VT_EQ_INT(vg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), VG_OK);
    VT_CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    char big[300];
    memset(big, 'A', sizeof(big));
    VT_EQ_INT(vg_ws_accept_key(big, 257, out), VG_EINVAL);
    VT_EQ_INT(vg_ws_accept_key(big, 256, out), VG_OK);
}

static void test_handshake_ok(void)
{
    vg_ws_handshake_t hs;
    VT_REQUIRE(handshake(WS_REQ("GET", "1.1", GOOD_LINES), &hs) == VG_OK);
    VT_CHECK(strcmp(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    VT_CHECK(hs.subprotocol && strcmp(hs.subprotocol, "mqtt") == 0);
    char buf[512];
    int n = vg_ws_accept_response(buf, sizeof(buf), &hs);
    const char *want = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
    VT_EQ_INT(n, strlen(want));
    VT_CHECK(n > 0 && memcmp(buf, want, (size_t)n) == 0);
    for (size_t cap = 0; cap <= strlen(want); cap++)
        VT_EQ_INT(vg_ws_accept_response(buf, cap, &hs), VG_ENOSPC);
    /* Without a subprotocol (not used for MQTT, but the writer allows it). */
    hs.subprotocol = NULL;
    n = vg_ws_accept_response(buf, sizeof(buf), &hs);
    VT_CHECK(n > 0 && strstr(buf, "Sec-WebSocket-Protocol") == NULL && strstr(buf, "\r\n\r\n") != NULL);
}

static void test_handshake_variants(void)
{
    vg_ws_handshake_t hs;
    /* Case-insensitive Upgrade and Connection, Connection as a list. */
    VT_EQ_INT(handshake(WS_REQ("GET", "1.1",
                               "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Protocol: chat, mqttv3.1\r\n"),
                        &hs),
              VG_OK);
    VT_CHECK(strcmp(hs.subprotocol, "mqttv3.1") == 0);
    /* "mqtt" wins over the old name, whatever the order, across headers. */
    VT_EQ_INT(handshake(WS_REQ("GET", "1.1",
                               "Upgrade: websocket\r\nConnection: upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Protocol: mqttv3.1\r\nSec-WebSocket-Protocol: x, mqtt\r\n"),
                        &hs),
              VG_OK);
    VT_CHECK(strcmp(hs.subprotocol, "mqtt") == 0);
}

/* Expects the handshake to be refused with status. */
static void refused(const char *req, int status)
{
    vg_ws_handshake_t hs;
    int r = handshake(req, &hs);
    VT_EQ_INT(r, VG_EPROTO);
    VT_EQ_INT(hs.status, status);
    VT_CHECK(hs.reason != NULL);
    if (r != VG_EPROTO || hs.status != status)
        printf("  (request: %s)\n", req);
}

static void test_handshake_refusals(void)
{
    refused(WS_REQ("POST", "1.1", GOOD_LINES), 405);
    refused(WS_REQ("GET", "1.0", GOOD_LINES), 400);
    refused(WS_REQ("GET", "1.1",
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n"),
            426);
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n"),
            426);
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n"),
            400);
    /* Versions: missing, other, repeated. */
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: mqtt\r\n"),
            426);
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 8\r\n"),
            426);
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n"),
            426);
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13, 8\r\n"),
            426);
    /* Keys: missing, short, long, bad alphabet, 17 bytes, two of them. */
    static const char *keys[] = {
        "",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ*==\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQA=\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbX BsZSBub25jZQ==\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char req[512];
        snprintf(req, sizeof(req),
                 "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s"
                 "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 keys[i]);
        refused(req, 400);
    }
    /* Subprotocol: none, wrong case, only others. */
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n"),
            400);
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: MQTT\r\nSec-WebSocket-Version: 13\r\n"),
            400);
    refused(WS_REQ("GET", "1.1",
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Protocol: chat, mqttx\r\nSec-WebSocket-Version: 13\r\n"),
            400);
}

static void test_reject_responses(void)
{
    vg_ws_handshake_t hs;
    char buf[512];
    VT_REQUIRE(handshake(WS_REQ("GET", "1.1",
                                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n"),
                         &hs) == VG_EPROTO);
    int n = vg_ws_reject_response(buf, sizeof(buf), &hs);
    VT_REQUIRE(n > 0);
    buf[n] = 0;
    VT_CHECK(strncmp(buf, "HTTP/1.1 426 Upgrade Required\r\n", 31) == 0);
    VT_CHECK(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
    VT_CHECK(strstr(buf, "\r\nUpgrade: websocket\r\n") != NULL);
    VT_CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
    VT_REQUIRE(handshake(WS_REQ("PUT", "1.1", GOOD_LINES), &hs) == VG_EPROTO);
    n = vg_ws_reject_response(buf, sizeof(buf), &hs);
    VT_REQUIRE(n > 0);
    buf[n] = 0;
    VT_CHECK(strncmp(buf, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    VT_CHECK(strstr(buf, "\r\nAllow: GET\r\n") != NULL);
    VT_EQ_INT(vg_ws_reject_response(buf, 10, &hs), VG_ENOSPC);
}

/* ---- frames: the RFC's examples (§5.7) --------------------------------- */

/* Decodes one whole frame from a copy of bytes and checks it. */
static void check_frame(const uint8_t *bytes, size_t n, bool from_client, uint8_t op, bool fin, const char *payload)
{
    uint8_t *buf = malloc(n);
    vg_ws_frame_t f;
    memcpy(buf, bytes, n);
    /* Every prefix is VG_AGAIN. */
    for (size_t k = 0; k < n; k++)
        VT_EQ_INT(vg_ws_decode_frame(buf, k, from_client, UINT64_MAX, &f), VG_AGAIN);
    VT_EQ_INT(vg_ws_decode_frame(buf, n, from_client, UINT64_MAX, &f), VG_OK);
    VT_EQ_INT(f.h.opcode, op);
    VT_EQ_INT(f.h.fin, fin);
    VT_EQ_INT(f.h.masked, from_client);
    VT_EQ_INT(f.frame_len, n);
    VT_EQ_INT(f.h.payload_len, strlen(payload));
    VT_CHECK(memcmp(f.payload, payload, strlen(payload)) == 0);
    /* The header re-encodes to the same bytes. */
    uint8_t hdr[VG_WS_MAX_HEADER];
    int h = vg_ws_encode_header(hdr, sizeof(hdr), op, fin, f.h.payload_len, from_client ? f.h.mask : NULL);
    VT_EQ_INT(h, f.h.hdr_len);
    VT_CHECK(h > 0 && memcmp(hdr, bytes, (size_t)h) == 0);
    free(buf);
}

static void test_rfc_examples(void)
{
    /* A single-frame unmasked text message. */
    check_frame(BYTES(0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f), false, VG_WS_OP_TEXT, true, "Hello");
    /* A single-frame masked text message. */
    check_frame(BYTES(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58), true, VG_WS_OP_TEXT, true,
                "Hello");
    /* A fragmented unmasked text message. */
    check_frame(BYTES(0x01, 0x03, 0x48, 0x65, 0x6c), false, VG_WS_OP_TEXT, false, "Hel");
    check_frame(BYTES(0x80, 0x02, 0x6c, 0x6f), false, VG_WS_OP_CONT, true, "lo");
    /* Unmasked ping, masked pong. */
    check_frame(BYTES(0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f), false, VG_WS_OP_PING, true, "Hello");
    check_frame(BYTES(0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58), true, VG_WS_OP_PONG, true,
                "Hello");
    /* The encoder produces the masked example exactly. */
    uint8_t out[32];
    int n = vg_ws_encode_frame(out, sizeof(out), VG_WS_OP_TEXT, true, (const uint8_t *)"Hello", 5, KEY);
    VT_REQUIRE(n == 11);
    VT_CHECK(memcmp(out, ((const uint8_t[]){0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}), 11) ==
             0);
}

static void test_rfc_long_lengths(void)
{
    /* 256 bytes in one unmasked binary frame: 0x82 0x7E 0x0100. */
    size_t n = 4 + 256;
    uint8_t *b = malloc(n);
    b[0] = 0x82, b[1] = 0x7E, b[2] = 0x01, b[3] = 0x00;
    for (size_t i = 0; i < 256; i++)
        b[4 + i] = (uint8_t)i;
    vg_ws_frame_t f;
    VT_EQ_INT(vg_ws_decode_frame(b, n - 1, false, UINT64_MAX, &f), VG_AGAIN);
    VT_EQ_INT(vg_ws_decode_frame(b, n, false, UINT64_MAX, &f), VG_OK);
    VT_CHECK(f.h.hdr_len == 4 && f.h.payload_len == 256 && f.payload[255] == 255);
    VT_EQ_INT(vg_ws_decode_frame(b, n, false, 255, &f), VG_ETOOBIG);
    uint8_t hdr[VG_WS_MAX_HEADER];
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, 256, NULL), 4);
    VT_CHECK(memcmp(hdr, b, 4) == 0);
    free(b);

    /* 64 KiB in one unmasked binary frame: 0x82 0x7F 0x0000000000010000. */
    n = 10 + 65536;
    b = calloc(1, n);
    memcpy(b, ((const uint8_t[]){0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}), 10);
    b[n - 1] = 0xAB;
    VT_EQ_INT(vg_ws_decode_frame(b, 9, false, UINT64_MAX, &f), VG_AGAIN);
    VT_EQ_INT(vg_ws_decode_frame(b, 10, false, UINT64_MAX, &f), VG_AGAIN);
    VT_EQ_INT(vg_ws_decode_frame(b, n, false, UINT64_MAX, &f), VG_OK);
    VT_CHECK(f.h.hdr_len == 10 && f.h.payload_len == 65536 && f.payload[65535] == 0xAB);
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, 65536, NULL), 10);
    VT_CHECK(memcmp(hdr, b, 10) == 0);
    /* Boundaries of the three encodings. */
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, 125, NULL), 2);
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, 126, NULL), 4);
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, 65535, NULL), 4);
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, 65536, KEY), 14);
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, UINT64_MAX >> 1, NULL), 10);
    VT_EQ_INT(vg_ws_encode_header(hdr, sizeof(hdr), VG_WS_OP_BINARY, true, (UINT64_MAX >> 1) + 1, NULL), VG_EINVAL);
    free(b);
}

/* ---- frames: header rules ---------------------------------------------- */

static int hdr(const uint8_t *b, size_t n, bool from_client)
{
    vg_ws_header_t h;
    return vg_ws_parse_header(b, n, from_client, &h);
}

static void test_header_rules(void)
{
    /* RSV1, RSV2, RSV3. */
    VT_EQ_INT(hdr(BYTES(0xC2, 0x80, 0, 0, 0, 0), true), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0xA2, 0x80, 0, 0, 0, 0), true), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0x92, 0x80, 0, 0, 0, 0), true), VG_EPROTO);
    /* Reserved opcodes. */
    for (uint8_t op = 0; op < 16; op++) {
        bool known = op <= 2 || (op >= 8 && op <= 10);
        VT_EQ_INT(hdr(((const uint8_t[]){(uint8_t)(0x80 | op), 0x80, 0, 0, 0, 0}), 6, true), known ? VG_OK : VG_EPROTO);
    }
    /* Masking must match the sender. */
    VT_EQ_INT(hdr(BYTES(0x82, 0x00), true), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0x82, 0x80, 1, 2, 3, 4), false), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0x82, 0x00), false), VG_OK);
    /* Control frames: final, at most 125. */
    VT_EQ_INT(hdr(BYTES(0x09, 0x80, 0, 0, 0, 0), true), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0x89, 0xFE, 0, 126, 0, 0, 0, 0), true), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0x88, 0xFD, 0, 0, 0, 0), true), VG_OK);
    VT_EQ_INT(hdr(BYTES(0x88, 0xFE), true), VG_EPROTO); /* refused from two bytes */
    /* Lengths in their shortest form only (§5.2). */
    VT_EQ_INT(hdr(BYTES(0x82, 0x7E, 0x00, 0x7D), false), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0x82, 0x7E, 0x00, 0x7E), false), VG_OK);
    VT_EQ_INT(hdr(BYTES(0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF), false), VG_EPROTO);
    VT_EQ_INT(hdr(BYTES(0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0x00, 0x00), false), VG_OK);
    VT_EQ_INT(hdr(BYTES(0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0), false), VG_EPROTO); /* top bit */
    VT_EQ_INT(hdr(BYTES(0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF), false), VG_OK);
    /* Incomplete headers report how long they will be. */
    vg_ws_header_t h;
    VT_EQ_INT(vg_ws_parse_header((const uint8_t *)"\x82", 1, true, &h), VG_AGAIN);
    VT_EQ_INT(h.hdr_len, 0);
    VT_EQ_INT(vg_ws_parse_header(BYTES(0x82, 0xFF, 0, 0), true, &h), VG_AGAIN);
    VT_EQ_INT(h.hdr_len, 14);
    VT_EQ_INT(vg_ws_parse_header(BYTES(0x82, 0xFE, 0), true, &h), VG_AGAIN);
    VT_EQ_INT(h.hdr_len, 8);
    VT_EQ_INT(vg_ws_parse_header(BYTES(0x82, 0x7E), false, &h), VG_AGAIN);
    VT_EQ_INT(h.hdr_len, 4);
}

static void test_encoder_rules(void)
{
    uint8_t out[256];
    VT_EQ_INT(vg_ws_encode_header(out, sizeof(out), 3, true, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_ws_encode_header(out, sizeof(out), VG_WS_OP_PING, false, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_ws_encode_header(out, sizeof(out), VG_WS_OP_PING, true, 126, NULL), VG_EINVAL);
    VT_EQ_INT(vg_ws_encode_header(out, 1, VG_WS_OP_PING, true, 0, NULL), VG_ENOSPC);
    VT_EQ_INT(vg_ws_encode_header(out, 5, VG_WS_OP_PING, true, 0, KEY), VG_ENOSPC);
    VT_EQ_INT(vg_ws_encode_frame(out, 6, VG_WS_OP_BINARY, true, (const uint8_t *)"abcde", 5, NULL), VG_ENOSPC);
    VT_EQ_INT(vg_ws_encode_frame(out, 7, VG_WS_OP_BINARY, true, (const uint8_t *)"abcde", 5, NULL), 7);

    /* Close frames. */
    int n = vg_ws_encode_close(out, sizeof(out), 1000, "bye", 3, NULL);
    VT_CHECK(n == 7 && memcmp(out,
                              "\x88\x05\x03\xe8"
                              "bye",
                              7) == 0);
    n = vg_ws_encode_close(out, sizeof(out), VG_WS_CLOSE_NO_STATUS, NULL, 0, NULL);
    VT_CHECK(n == 2 && out[0] == 0x88 && out[1] == 0x00);
    VT_EQ_INT(vg_ws_encode_close(out, sizeof(out), 0, NULL, 0, KEY), 6);
    VT_EQ_INT(vg_ws_encode_close(out, sizeof(out), 1005, "x", 1, NULL), VG_EINVAL);
    VT_EQ_INT(vg_ws_encode_close(out, sizeof(out), 1006, NULL, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_ws_encode_close(out, sizeof(out), 999, NULL, 0, NULL), VG_EINVAL);
    VT_EQ_INT(vg_ws_encode_close(out, sizeof(out), 1000, "\xff", 1, NULL), VG_EINVAL);
    char reason[124];
    memset(reason, 'r', sizeof(reason));
    VT_EQ_INT(vg_ws_encode_close(out, sizeof(out), 1000, reason, 123, NULL), 127);
    VT_EQ_INT(vg_ws_encode_close(out, sizeof(out), 1000, reason, 124, NULL), VG_EINVAL);

    /* A masked close decodes back to the same code and reason. */
    n = vg_ws_encode_close(out, sizeof(out), 4001, "r\xc3\xa9", 3, KEY);
    vg_ws_frame_t f;
    VT_REQUIRE(vg_ws_decode_frame(out, (size_t)n, true, 125, &f) == VG_OK);
    uint16_t code;
    const uint8_t *rs;
    size_t rl;
    VT_EQ_INT(vg_ws_parse_close(f.payload, (size_t)f.h.payload_len, &code, &rs, &rl), VG_OK);
    VT_CHECK(code == 4001 && rl == 3 && memcmp(rs, "r\xc3\xa9", 3) == 0);

    /* Pong echoes the payload. */
    n = vg_ws_encode_pong(out, sizeof(out), (const uint8_t *)"Hello", 5, KEY);
    VT_CHECK(n == 11 && memcmp(out, "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11) == 0);
    uint8_t big[126] = {0};
    VT_EQ_INT(vg_ws_encode_pong(out, sizeof(out), big, 126, NULL), VG_EINVAL);
    VT_EQ_INT(vg_ws_encode_pong(out, sizeof(out), big, 125, NULL), 127);
    VT_EQ_INT(vg_ws_encode_pong(out, sizeof(out), NULL, 0, NULL), 2);
}

static void test_mask_in_pieces(void)
{
    uint8_t a[100], b[100];
    for (int i = 0; i < 100; i++)
        a[i] = b[i] = (uint8_t)(i * 7);
    vg_ws_mask(a, 100, KEY, 0);
    /* Pieces of odd sizes at running offsets give the same bytes. */
    size_t off = 0, step = 1;
    while (off < 100) {
        size_t n = off + step > 100 ? 100 - off : step;
        vg_ws_mask(b + off, n, KEY, off);
        off += n;
        step = step * 3 % 17 + 1;
    }
    VT_CHECK(memcmp(a, b, 100) == 0);
    vg_ws_mask(a, 100, KEY, 0);
    for (int i = 0; i < 100; i++)
        VT_CHECK(a[i] == (uint8_t)(i * 7));
}

static void test_close_codes(void)
{
    static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint16_t bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        VT_CHECK(vg_ws_close_code_valid(ok[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        VT_CHECK(!vg_ws_close_code_valid(bad[i]));
    uint16_t code;
    const uint8_t *rs;
    size_t rl;
    VT_EQ_INT(vg_ws_parse_close(NULL, 0, &code, &rs, &rl), VG_OK);
    VT_CHECK(code == 1005 && rl == 0);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03), &code, &rs, &rl), VG_EPROTO);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8), &code, &rs, &rl), VG_OK);
    VT_CHECK(code == 1000 && rl == 0);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xED), &code, &rs, &rl), VG_EPROTO);
    /* Reasons: UTF-8 (NUL allowed), not overlong, not surrogates, not cut. */
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 'o', 0x00, 'k'), &code, &rs, &rl), VG_OK);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xF0, 0x9F, 0x98, 0x80), &code, &rs, &rl), VG_OK);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xCE, 0xBA, 0xE1, 0xBD, 0xB9), &code, &rs, &rl), VG_OK);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xC0, 0xAF), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xED, 0xA0, 0x80), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xF4, 0x90, 0x80, 0x80), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xE2, 0x82), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xFF), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0x80), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xE0, 0xA0, 0x80), &code, &rs, &rl), VG_OK);         /* U+0800 */
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xE0, 0x9F, 0xBF), &code, &rs, &rl), VG_EMALFORMED); /* overlong */
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xE2, 0x82, 0x41), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xF0, 0x8F, 0xBF, 0xBF), &code, &rs, &rl), VG_EMALFORMED);
    VT_EQ_INT(vg_ws_parse_close(BYTES(0x03, 0xE8, 0xF4, 0x8F, 0xBF, 0xBF), &code, &rs, &rl), VG_OK); /* U+10FFFF */
}

/* ---- connection -------------------------------------------------------- */

/* A stream of frames under construction. */
typedef struct {
    uint8_t b[1 << 18];
    size_t n;
} stream_t;

static stream_t S;

static void add(stream_t *s, uint8_t op, bool fin, const void *p, size_t len, bool masked)
{
    static const uint8_t keys[3][4] = {{0x37, 0xfa, 0x21, 0x3d}, {1, 2, 3, 4}, {0xff, 0, 0x80, 0x7f}};
    int n = vg_ws_encode_frame(s->b + s->n, sizeof(s->b) - s->n, op, fin, p, len, masked ? keys[s->n % 3] : NULL);
    if (n > 0)
        s->n += (size_t)n;
}

static void add_raw(stream_t *s, const uint8_t *p, size_t n)
{
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

/* What a connection made of a stream: the payload bytes, the events in
 * order (one letter each: i ping, o pong, c close), and how it ended. */
typedef struct {
    uint8_t out[1 << 18];
    size_t out_len;
    char events[64];
    size_t nev;
    uint8_t ev_payload[64][VG_WS_MAX_CONTROL];
    size_t ev_len[64];
    uint16_t close_code;
    int result;
} run_t;

static run_t A, B;

/* Runs a stream through a fresh connection, in reads of the sizes given by
 * cuts (0-terminated; the rest in one read), each read in its own heap
 * buffer of exactly that size, decoded in place and compacted. */
static void run(const stream_t *s, bool server, uint64_t max_message, const size_t *cuts, run_t *res)
{
    vg_ws_conn_t ws;
    size_t off = 0;

    memset(res, 0, sizeof(*res));
    vg_ws_conn_init(&ws, server, max_message);
    while (off < s->n) {
        size_t k = s->n - off;
        if (cuts && *cuts) {
            if (*cuts < k)
                k = *cuts;
            cuts++;
        }
        uint8_t *rd = malloc(k);
        memcpy(rd, s->b + off, k);
        off += k;
        /* In place: output compacts to the start of this read's buffer. */
        size_t left = k, made_total = 0;
        uint8_t *p = rd;
        while (left) {
            size_t used, made;
            vg_ws_event_t ev;
            int r = vg_ws_feed(&ws, p, left, &used, rd + made_total, &made, &ev);
            /* The contract: never more than given, never more out than in,
             * and without an event (or failure) all of it. */
            if (used > left || made > used || (r == VG_OK && ev.type == VG_WS_EV_NONE && used != left))
                res->result = 12345;
            p += used;
            left -= used;
            made_total += made;
            if (r != VG_OK) {
                res->result = r;
                res->close_code = ev.close_code;
                break;
            }
            if (ev.type != VG_WS_EV_NONE && res->nev < 64) {
                res->events[res->nev] = ev.type == VG_WS_EV_PING ? 'i' : ev.type == VG_WS_EV_PONG ? 'o' : 'c';
                memcpy(res->ev_payload[res->nev], ev.payload, ev.len);
                res->ev_len[res->nev] = ev.len;
                res->nev++;
                if (ev.type == VG_WS_EV_CLOSE) {
                    res->close_code = ev.close_code;
                    left = 0;
                }
            }
        }
        memcpy(res->out + res->out_len, rd, made_total);
        res->out_len += made_total;
        free(rd);
        if (res->result || (res->nev && res->events[res->nev - 1] == 'c'))
            break;
    }
}

static bool same_run(const run_t *a, const run_t *b)
{
    if (a->result != b->result || a->close_code != b->close_code || a->out_len != b->out_len || a->nev != b->nev)
        return false;
    if (memcmp(a->out, b->out, a->out_len) != 0 || memcmp(a->events, b->events, a->nev) != 0)
        return false;
    for (size_t i = 0; i < a->nev; i++) {
        if (a->ev_len[i] != b->ev_len[i] || memcmp(a->ev_payload[i], b->ev_payload[i], a->ev_len[i]) != 0)
            return false;
    }
    return true;
}

static void test_conn_binary(void)
{
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "\x10\x0c\x00\x04MQTT", 8, true);
    add(&S, VG_WS_OP_BINARY, true, "\x04\x02\x00\x3c", 4, true);
    run(&S, true, UINT64_MAX, NULL, &A);
    VT_EQ_INT(A.result, VG_OK);
    VT_EQ_INT(A.nev, 0);
    VT_CHECK(A.out_len == 12 && memcmp(A.out, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", 12) == 0);
}

static void test_conn_fragments_and_control(void)
{
    /* One MQTT byte stream in a fragmented message with a ping and a pong
     * between the fragments, then an empty frame, then a second message. */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, false, "abc", 3, true);
    add(&S, VG_WS_OP_PING, true, "p1", 2, true);
    add(&S, VG_WS_OP_CONT, false, "", 0, true);
    add(&S, VG_WS_OP_PONG, true, "", 0, true);
    add(&S, VG_WS_OP_CONT, false, "def", 3, true);
    add(&S, VG_WS_OP_CONT, true, "g", 1, true);
    add(&S, VG_WS_OP_BINARY, true, "", 0, true);
    add(&S, VG_WS_OP_BINARY, true, "hij", 3, true);
    add(&S, VG_WS_OP_PING, true, "last", 4, true);
    run(&S, true, UINT64_MAX, NULL, &A);
    VT_EQ_INT(A.result, VG_OK);
    VT_CHECK(A.out_len == 10 && memcmp(A.out, "abcdefghij", 10) == 0);
    VT_CHECK(A.nev == 3 && memcmp(A.events, "ioi", 3) == 0);
    VT_CHECK(A.ev_len[0] == 2 && memcmp(A.ev_payload[0], "p1", 2) == 0);
    VT_CHECK(A.ev_len[1] == 0);
    VT_CHECK(A.ev_len[2] == 4 && memcmp(A.ev_payload[2], "last", 4) == 0);

    /* Byte at a time: same bytes, same events. */
    static size_t ones[4096];
    for (size_t i = 0; i < 4095; i++)
        ones[i] = 1;
    run(&S, true, UINT64_MAX, ones, &B);
    VT_CHECK(same_run(&A, &B));

    /* Two reads, split at every position. */
    for (size_t at = 1; at < S.n; at++) {
        size_t cuts[2] = {at, 0};
        run(&S, true, UINT64_MAX, cuts, &B);
        VT_CHECK(same_run(&A, &B));
        if (!same_run(&A, &B)) {
            printf("  (split at %zu)\n", at);
            break;
        }
    }
}

static void test_conn_long_frames(void)
{
    /* 16-bit and 64-bit lengths, masked, in odd-sized reads. */
    static uint8_t pay[70000];
    for (size_t i = 0; i < sizeof(pay); i++)
        pay[i] = (uint8_t)(i * 31 + 7);
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, pay, 300, true);
    add(&S, VG_WS_OP_BINARY, false, pay + 300, 65536, true);
    add(&S, VG_WS_OP_CONT, true, pay + 300 + 65536, sizeof(pay) - 300 - 65536, true);
    size_t cuts[] = {1, 3, 7, 1000, 3, 4097, 1, 1, 1, 1, 1, 1, 1, 1, 1, 60000, 0};
    run(&S, true, UINT64_MAX, cuts, &A);
    VT_EQ_INT(A.result, VG_OK);
    VT_CHECK(A.out_len == sizeof(pay) && memcmp(A.out, pay, sizeof(pay)) == 0);
    run(&S, true, UINT64_MAX, NULL, &B);
    VT_CHECK(same_run(&A, &B));
}

/* Runs a one-off stream and checks how it failed. */
static void expect_fail(bool server, uint64_t max, int result, uint16_t code)
{
    run(&S, server, max, NULL, &A);
    VT_EQ_INT(A.result, result);
    VT_EQ_INT(A.close_code, code);
}

static void test_conn_message_rules(void)
{
    /* Continuation with no message open. */
    S.n = 0;
    add(&S, VG_WS_OP_CONT, true, "x", 1, true);
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1002);
    /* A new data message inside a fragmented one. */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, false, "x", 1, true);
    add(&S, VG_WS_OP_BINARY, true, "y", 1, true);
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1002);
    VT_CHECK(A.out_len == 1 && A.out[0] == 'x'); /* what came before is still delivered */
    /* Text: not MQTT (1003), even fragmented or empty. */
    S.n = 0;
    add(&S, VG_WS_OP_TEXT, true, "Hello", 5, true);
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1003);
    S.n = 0;
    add(&S, VG_WS_OP_TEXT, false, "", 0, true);
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1003);
    /* Unmasked client frame (§5.1). */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "x", 1, false);
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1002);
    /* A header rule (RSV1 set, as permessage-deflate would). */
    S.n = 0;
    add_raw(&S, BYTES(0xC2, 0x81, 1, 2, 3, 4, 5));
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1002);
    /* Non-minimal length. */
    S.n = 0;
    add_raw(&S, BYTES(0x82, 0xFE, 0x00, 0x01, 1, 2, 3, 4, 5));
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1002);
}

static void test_conn_max_message(void)
{
    /* Exactly the limit in one frame and in fragments, then one byte over. */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "0123456789", 10, true);
    add(&S, VG_WS_OP_BINARY, false, "01234", 5, true);
    add(&S, VG_WS_OP_PING, true, "", 0, true);
    add(&S, VG_WS_OP_CONT, true, "56789", 5, true);
    run(&S, true, 10, NULL, &A);
    VT_EQ_INT(A.result, VG_OK);
    VT_EQ_INT(A.out_len, 20);
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "0123456789a", 11, true);
    expect_fail(true, 10, VG_ETOOBIG, 1009);
    VT_EQ_INT(A.out_len, 0); /* refused from the header */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, false, "012345", 6, true);
    add(&S, VG_WS_OP_CONT, true, "6789a", 5, true);
    expect_fail(true, 10, VG_ETOOBIG, 1009);
    VT_EQ_INT(A.out_len, 6);
    /* A huge declared length is refused before any payload. */
    S.n = 0;
    add_raw(&S, BYTES(0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4));
    expect_fail(true, 1 << 20, VG_ETOOBIG, 1009);
}

static void test_conn_close(void)
{
    /* Close with a code and reason: reported, nothing after it is read. */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "ab", 2, true);
    uint8_t cl[16];
    int n = vg_ws_encode_close(cl, sizeof(cl), 1001, "away", 4, KEY);
    add_raw(&S, cl, (size_t)n);
    add(&S, VG_WS_OP_BINARY, true, "zz", 2, true);
    run(&S, true, UINT64_MAX, NULL, &A);
    VT_EQ_INT(A.result, VG_OK);
    VT_CHECK(A.nev == 1 && A.events[0] == 'c' && A.close_code == 1001);
    VT_CHECK(A.ev_len[0] == 4 && memcmp(A.ev_payload[0], "away", 4) == 0);
    VT_CHECK(A.out_len == 2 && memcmp(A.out, "ab", 2) == 0);

    /* Empty close: 1005, to be answered with an empty close. */
    S.n = 0;
    add(&S, VG_WS_OP_CLOSE, true, "", 0, true);
    run(&S, true, UINT64_MAX, NULL, &A);
    VT_CHECK(A.result == VG_OK && A.nev == 1 && A.close_code == 1005);

    /* Bad close payloads. */
    S.n = 0;
    add(&S, VG_WS_OP_CLOSE, true, "\x03", 1, true);
    expect_fail(true, UINT64_MAX, VG_EPROTO, 1002);
    static const uint16_t bad[] = {999, 1004, 1005, 1006, 1015, 1016, 2999, 5000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        S.n = 0;
        add(&S, VG_WS_OP_CLOSE, true, p, 2, true);
        expect_fail(true, UINT64_MAX, VG_EPROTO, 1002);
    }
    S.n = 0;
    add(&S, VG_WS_OP_CLOSE, true, "\x03\xe8\xc3\x28", 4, true);
    expect_fail(true, UINT64_MAX, VG_EMALFORMED, 1007);

    /* After a close or a failure the connection reads nothing more. */
    vg_ws_conn_t ws;
    vg_ws_event_t ev;
    size_t used, made;
    uint8_t buf[16];
    vg_ws_conn_init(&ws, false, UINT64_MAX);
    memcpy(buf, "\x88\x00\x82\x01x", 5);
    VT_EQ_INT(vg_ws_feed(&ws, buf, 5, &used, buf, &made, &ev), VG_OK);
    VT_CHECK(ev.type == VG_WS_EV_CLOSE && used == 2 && made == 0);
    VT_EQ_INT(vg_ws_feed(&ws, buf + 2, 3, &used, buf, &made, &ev), VG_ECLOSED);
    VT_CHECK(used == 0 && made == 0);
    vg_ws_conn_init(&ws, false, UINT64_MAX);
    memcpy(buf, "\x83\x00", 2);
    VT_EQ_INT(vg_ws_feed(&ws, buf, 2, &used, buf, &made, &ev), VG_EPROTO);
    VT_EQ_INT(ev.close_code, 1002);
    VT_EQ_INT(vg_ws_feed(&ws, buf, 2, &used, buf, &made, &ev), VG_ECLOSED);
}

static void test_conn_client_side(void)
{
    /* A client decodes the server's unmasked frames and refuses masked ones. */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "\x20\x02\x00\x00", 4, false);
    add(&S, VG_WS_OP_PING, true, "k", 1, false);
    add(&S, VG_WS_OP_BINARY, true, "\xd0\x00", 2, false);
    run(&S, false, UINT64_MAX, NULL, &A);
    VT_EQ_INT(A.result, VG_OK);
    VT_CHECK(A.out_len == 6 && memcmp(A.out, "\x20\x02\x00\x00\xd0\x00", 6) == 0);
    VT_CHECK(A.nev == 1 && A.events[0] == 'i');
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "x", 1, true);
    expect_fail(false, UINT64_MAX, VG_EPROTO, 1002);
}

static void test_conn_separate_output(void)
{
    /* out need not alias in: a separate buffer works the same. */
    S.n = 0;
    add(&S, VG_WS_OP_BINARY, true, "hello", 5, true);
    add(&S, VG_WS_OP_BINARY, true, "world", 5, true);
    vg_ws_conn_t ws;
    vg_ws_event_t ev;
    uint8_t out[64];
    size_t used, made;
    vg_ws_conn_init(&ws, true, UINT64_MAX);
    VT_EQ_INT(vg_ws_feed(&ws, S.b, S.n, &used, out, &made, &ev), VG_OK);
    VT_CHECK(used == S.n && made == 10 && memcmp(out, "helloworld", 10) == 0);
    VT_EQ_INT(vg_ws_feed(&ws, S.b, 0, &used, out, &made, &ev), VG_OK);
    VT_CHECK(used == 0 && made == 0 && ev.type == VG_WS_EV_NONE);
}

int main(void)
{
    VT_RUN(test_accept_key_rfc_sample);
    VT_RUN(test_handshake_ok);
    VT_RUN(test_handshake_variants);
    VT_RUN(test_handshake_refusals);
    VT_RUN(test_reject_responses);
    VT_RUN(test_rfc_examples);
    VT_RUN(test_rfc_long_lengths);
    VT_RUN(test_header_rules);
    VT_RUN(test_encoder_rules);
    VT_RUN(test_mask_in_pieces);
    VT_RUN(test_close_codes);
    VT_RUN(test_conn_binary);
    VT_RUN(test_conn_fragments_and_control);
    VT_RUN(test_conn_long_frames);
    VT_RUN(test_conn_message_rules);
    VT_RUN(test_conn_max_message);
    VT_RUN(test_conn_close);
    VT_RUN(test_conn_client_side);
    VT_RUN(test_conn_separate_output);
    return VT_DONE();
}
