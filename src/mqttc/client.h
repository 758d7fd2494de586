/* client.h — one MQTT 3.1.1 / 5.0 client connection, driven by the caller's
 * event loop.
 *
 * Owns: the protocol state of one connection (TCP connect completion,
 * CONNECT/CONNACK, SUBSCRIBE/SUBACK, keepalive PINGREQs, DISCONNECT), its
 * output buffer, the partial packet carried between reads, the in-order
 * in-flight ring of its QoS 1/2 publishes (PUBACK / PUBREC-PUBREL-PUBCOMP
 * matching, send time for ack latency) and the automatic acks for QoS 1/2
 * messages it receives. Encoding and decoding go through mqtt/codec.h.
 * Does not own: the socket's life (the caller creates it, registers it with
 * its poller and closes it after VG_MQTTC_CLOSED), the clock (every call
 * that can send takes `now`, CLOCK_MONOTONIC ns, so tests are
 * deterministic), timers (vg_mqttc_due says when the next call to
 * vg_mqttc_tick is needed) or the in-flight ring's storage (the caller
 * passes it, so a fleet can carve all rings out of one array).
 *
 * The loop contract. After any call, vg_mqttc_wants_write() says whether
 * EPOLLOUT should be armed (TCP connect in progress, or bytes left over);
 * the caller then calls vg_mqttc_on_writable. vg_mqttc_on_readable reads
 * once. Queuing calls (publish, subscribe, tick) only append to the output
 * buffer: the caller decides when to write (vg_mqttc_flush), so a burst of
 * publishes costs one send() ("write once per batch"). Failures close the
 * client: the state becomes VG_MQTTC_CLOSED, cfg->on_close runs once with
 * the reason, and the call returns a negative code.
 *
 * Memory. A client is a 96-byte struct the caller embeds; everything it
 * shares with the other clients of a loop (level, keepalive, callbacks,
 * limits, the read scratch buffer) lives in one vg_mqttc_cfg_t. The output
 * buffer is allocated on first use and kept at the largest burst queued
 * (reused, not freed per packet); a partial packet of up to
 * VG_MQTTC_CARRY bytes (acks, PINGRESP) is kept inline, a longer one in a
 * heap buffer that is freed as soon as the packet is complete.
 *
 * TLS. vg_mqttc_start_tls runs the same protocol over an OpenSSL client
 * SSL on the same non-blocking socket: after the TCP connect the client
 * drives SSL_do_handshake on readable/writable events (WANT_READ and
 * WANT_WRITE decide what vg_mqttc_wants_write says), then writes the queued
 * CONNECT with SSL_write and reads with SSL_read. Reads drain OpenSSL until
 * it holds nothing more (SSL_has_pending): bytes it has already read are
 * invisible to epoll, so a read that left some would stall the connection;
 * what is still on the socket raises the next readable event, so the poller
 * must be level-triggered, as for the plain path.
 * The plain path pays one pointer test per read and per flush for this.
 * A TLS failure closes with VG_MQTTC_R_TLS and the OpenSSL reason code of
 * the first error as detail (SSL_R_CERTIFICATE_VERIFY_FAILED: we did not
 * trust the server; SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED and the other
 * alert reasons: the server refused our certificate, which under TLS 1.3
 * arrives after our side of the handshake finished, while CONNACK is
 * awaited). The client owns the SSL from start_tls on and frees it in
 * deinit; the SSL_CTX, certificates and sessions are the caller's. A
 * close that leaves TLS intact (ours, the server's EOF or close_notify, an
 * MQTT-level failure) keeps the session resumable; a TLS failure does not
 * (OpenSSL's rule). A server that closes without close_notify, as most MQTT
 * servers do, needs SSL_OP_IGNORE_UNEXPECTED_EOF on the context for that.
 *
 * Inbound QoS 2 is delivered on PUBLISH (with PUBREC sent) and PUBREL is
 * answered with PUBCOMP: the simulator, eval and the load generator count
 * duplicates themselves. Threads: a client and its cfg belong to one
 * thread. */
#ifndef VG_MQTTC_CLIENT_H
#define VG_MQTTC_CLIENT_H

#include "mqtt/codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ssl_st; /* OpenSSL's SSL: only vg_mqttc_start_tls's callers need <openssl/ssl.h> */

#define VG_MQTTC_CARRY 6

enum {
    VG_MQTTC_IDLE = 0, /* not started (or reset) */
    VG_MQTTC_TCP,      /* non-blocking connect in progress; CONNECT queued */
    VG_MQTTC_TLS,      /* TLS handshake in progress (start_tls); CONNECT queued */
    VG_MQTTC_CONNACK,  /* CONNECT sent, waiting for CONNACK */
    VG_MQTTC_UP,       /* CONNACK accepted */
    VG_MQTTC_CLOSED,   /* failed or closed: the caller closes the fd */
};

/* Why a client closed (on_close, vg_mqttc_reason). */
typedef enum {
    VG_MQTTC_R_NONE = 0,
    VG_MQTTC_R_LOCAL,      /* vg_mqttc_close by the caller */
    VG_MQTTC_R_CONNECT,    /* the TCP connect failed (detail: errno) */
    VG_MQTTC_R_EOF,        /* the server closed the connection */
    VG_MQTTC_R_IO,         /* read or write failed (detail: errno) */
    VG_MQTTC_R_MALFORMED,  /* bad framing or a packet that does not decode */
    VG_MQTTC_R_PROTOCOL,   /* a well-formed packet not allowed now (detail: packet type) */
    VG_MQTTC_R_TOO_BIG,    /* a packet over cfg->max_packet */
    VG_MQTTC_R_REFUSED,    /* CONNACK with a non-zero code (detail: the code) */
    VG_MQTTC_R_DISCONNECT, /* DISCONNECT from the server (detail: 5.0 reason) */
    VG_MQTTC_R_TIMEOUT,    /* no CONNACK by cfg->connect_timeout_ns */
    VG_MQTTC_R_NOMEM,      /* the output buffer could not grow */
    VG_MQTTC_R_TLS,        /* TLS handshake or record failure (detail: OpenSSL reason code, 0 if none) */
} vg_mqttc_reason_t;

/* One slot of the in-flight ring (caller-provided storage; 8 bytes, as
 * fleets hold many). A caller that needs its own data per publish keeps a
 * parallel array indexed by slot (vg_mqttc_next_slot, vg_mqttc_ack_t.slot). */
typedef struct {
    uint32_t sent_us; /* now / 1000 at publish, modulo 2^32 */
    uint16_t packet_id;
    uint8_t state; /* internal: waiting for PUBACK, PUBREC or PUBCOMP; 0 = acked out of order */
    uint8_t qos;
} vg_mqttc_flight_t;

/* The end of one QoS 1/2 publish. */
typedef struct {
    uint16_t packet_id;
    uint8_t qos;
    uint8_t type;   /* VG_MQTT_PUBACK, VG_MQTT_PUBCOMP, or VG_MQTT_PUBREC refused */
    uint8_t reason; /* 0, or the 5.0 reason code (>= 0x80: refused) */
    uint16_t slot;  /* its index in the ring array (vg_mqttc_next_slot at publish) */
    uint32_t sent_us;
    uint64_t latency_us; /* now - send time, for the ack latency histograms */
} vg_mqttc_ack_t;

typedef struct vg_mqttc vg_mqttc_t;

/* Shared by all clients of one loop; must outlive them. Zero fields take
 * the defaults given. */
typedef struct {
    uint8_t level;               /* VG_MQTT_V311 (default) or VG_MQTT_V5 */
    uint16_t keepalive_s;        /* CONNECT keepalive; a PINGREQ goes out after keepalive/2 s without
                                    output (0: none). A 5.0 Server Keep Alive overrides it. */
    bool persistent;             /* clean_session 0 (default: clean) */
    uint64_t connect_timeout_ns; /* from start until CONNACK (0: none) */
    uint32_t max_packet;         /* largest packet accepted from the server (default 1 MiB) */
    uint32_t out_max;            /* output buffer limit (default 1 MiB); publish says VG_ENOSPC past it */
    uint32_t out_initial;        /* its first allocation (default 256): a fleet sets its usual burst, so
                                    that growing it does not leave freed chunks behind in every client */
    uint8_t *scratch;            /* read buffer shared by the loop's clients (required for on_readable) */
    size_t scratch_len;
    void *ud; /* the caller's; callbacks reach it through vg_mqttc_cfg(c)->ud */
    /* Callbacks, all optional. They may queue on the same client; on_close
     * may vg_mqttc_deinit it. */
    void (*on_connack)(vg_mqttc_t *c, bool session_present, const vg_mqtt_props_t *props);
    void (*on_suback)(vg_mqttc_t *c, uint16_t packet_id, const uint8_t *rcs, size_t n);
    /* A PUBLISH from the server; its ack is queued after this returns. */
    void (*on_message)(vg_mqttc_t *c, const vg_mqtt_publish_t *m);
    void (*on_ack)(vg_mqttc_t *c, const vg_mqttc_ack_t *a);
    /* An ack whose packet id is not in flight (a duplicate, or one given up
     * on with vg_mqttc_forget). Without it such acks are ignored. */
    void (*on_stray_ack)(vg_mqttc_t *c, uint8_t type, uint16_t packet_id);
    void (*on_close)(vg_mqttc_t *c, vg_mqttc_reason_t why, int detail);
    /* The TLS handshake finished (start_tls only); the CONNECT goes out
     * next. It may close the client. */
    void (*on_tls)(vg_mqttc_t *c);
} vg_mqttc_cfg_t;

/* Embedded by the caller (callbacks find their own struct with
 * container_of); read it only through the functions below. */
struct vg_mqttc {
    const vg_mqttc_cfg_t *cfg;
    vg_mqttc_flight_t *ring;
    uint8_t *out;
    uint8_t *in;   /* a partial packet longer than the inline carry */
    uint64_t t_ns; /* handshake: its deadline (0: none); up: when output was last queued */
    uint32_t out_off, out_len, out_cap;
    uint32_t in_len, in_cap;
    struct ssl_st *ssl; /* NULL: plain TCP */
    int fd;
    uint16_t ring_cap, ring_head, ring_len, window;
    uint16_t next_pid, subs_pending, keepalive_s;
    uint8_t state, reason, carry_len;
    uint8_t tls; /* TLS_* bits (client.c): OpenSSL waits for writability; no close_notify */
    uint8_t carry[VG_MQTTC_CARRY];
};

/* Zeroes c and binds it to cfg and to ring[0..ring_cap) (ring_cap 0..32768;
 * NULL/0 for a client that publishes only QoS 0). */
void vg_mqttc_init(vg_mqttc_t *c, const vg_mqttc_cfg_t *cfg, vg_mqttc_flight_t *ring, uint16_t ring_cap);

/* Frees the buffers and returns c to VG_MQTTC_IDLE (the ring storage and
 * the fd stay the caller's). Accepts NULL. No callback runs. */
void vg_mqttc_deinit(vg_mqttc_t *c);

/* Starts the protocol on socket fd (non-blocking). connecting: connect()
 * returned EINPROGRESS (the client checks SO_ERROR when writable). Queues
 * CONNECT with client id id[0..id_len). VG_OK, VG_EINVAL (not idle, or an
 * id the codec refuses), VG_ENOMEM. Nothing is written yet. */
int vg_mqttc_start(vg_mqttc_t *c, int fd, bool connecting, const char *id, size_t id_len, uint64_t now);
/* As vg_mqttc_start over TLS: ssl is a client SSL the caller prepared
 * (context, certificate, session to resume, host check) and bound to fd
 * (SSL_set_fd). The client takes it over whatever the result and frees it
 * in vg_mqttc_deinit; it sets partial and moving-buffer writes on it. The
 * handshake starts when the TCP connect completes (at once when
 * !connecting: arm EPOLLOUT, vg_mqttc_wants_write says so). The handshake
 * deadline is cfg->connect_timeout_ns too, from here until CONNACK. */
int vg_mqttc_start_tls(vg_mqttc_t *c, int fd, bool connecting, struct ssl_st *ssl, const char *id, size_t id_len,
                       uint64_t now);

/* Reads once from the fd (into cfg->scratch) and handles every complete
 * packet. VG_OK (also when nothing was there), or the negative code of a
 * close (the client is VG_MQTTC_CLOSED then). */
int vg_mqttc_on_readable(vg_mqttc_t *c, uint64_t now);
/* The fd is writable: completes a TCP connect, then writes. VG_OK or a
 * close code. */
int vg_mqttc_on_writable(vg_mqttc_t *c, uint64_t now);
/* Handles bytes received by other means (tests, fuzzing): as on_readable
 * without the read. */
int vg_mqttc_input(vg_mqttc_t *c, const uint8_t *buf, size_t len, uint64_t now);

/* Writes what is queued. VG_OK (all written), VG_AGAIN (some left: arm
 * EPOLLOUT), or a close code. A no-op before the TCP connect completes. */
int vg_mqttc_flush(vg_mqttc_t *c);
/* Bytes queued and not written, and where they are (for callers that
 * write themselves; then vg_mqttc_consume). */
size_t vg_mqttc_pending(const vg_mqttc_t *c);
const uint8_t *vg_mqttc_pending_bytes(const vg_mqttc_t *c);
void vg_mqttc_consume(vg_mqttc_t *c, size_t n);
/* TCP connect in progress, bytes left over, or OpenSSL waiting to write
 * (handshake, or a read that must write first). */
bool vg_mqttc_wants_write(const vg_mqttc_t *c);

/* Queues one PUBLISH of m (its packet_id is ignored: the client assigns
 * one for QoS 1/2 and records it in the ring, in slot vg_mqttc_next_slot).
 * VG_OK; VG_AGAIN
 * when the ring (or the server's 5.0 Receive Maximum) is full; VG_ENOSPC
 * when the output buffer is at cfg->out_max; VG_EINVAL when not up or the
 * codec refuses m; VG_ENOMEM. Nothing is written yet. */
int vg_mqttc_publish(vg_mqttc_t *c, const vg_mqtt_publish_t *m, uint64_t now);
/* The ring slot the next QoS 1/2 publish will take (valid while the ring
 * is not full). */
uint16_t vg_mqttc_next_slot(const vg_mqttc_t *c);
/* For callers that render whole PUBLISH packets themselves (the
 * simulator's template): reserves len bytes at *dst and, for QoS 1/2,
 * assigns *packet_id (the caller writes it into the packet). Errors as
 * vg_mqttc_publish. Must be followed by vg_mqttc_publish_commit (len: the
 * bytes written, at most those reserved; the QoS is read from the first
 * byte) before any other call on c. */
int vg_mqttc_publish_reserve(vg_mqttc_t *c, uint8_t qos, size_t len, uint8_t **dst, uint16_t *packet_id);
void vg_mqttc_publish_commit(vg_mqttc_t *c, size_t len, uint64_t now);

/* Queues SUBSCRIBE for subs[0..n) (5.0: with props, may be NULL). Sets
 * *packet_id (may be NULL); on_suback reports the codes. VG_OK, VG_EINVAL
 * (not up / codec), VG_ENOSPC, VG_ENOMEM. */
int vg_mqttc_subscribe(vg_mqttc_t *c, const vg_mqtt_sub_t *subs, size_t n, const vg_mqtt_props_t *props,
                       uint16_t *packet_id, uint64_t now);
/* SUBSCRIBEs not yet answered. */
unsigned vg_mqttc_subs_pending(const vg_mqttc_t *c);

/* Timers: closes a handshake past its deadline, queues a PINGREQ when the
 * keepalive asks for one. VG_OK or a close code. */
int vg_mqttc_tick(vg_mqttc_t *c, uint64_t now);
/* When tick next has something to do; UINT64_MAX for never. */
uint64_t vg_mqttc_due(const vg_mqttc_t *c);

/* Queues DISCONNECT (reason for 5.0) and tries once to write everything;
 * then the client is VG_MQTTC_CLOSED with VG_MQTTC_R_LOCAL (on_close
 * runs). Best effort: returns nothing. */
void vg_mqttc_disconnect(vg_mqttc_t *c, uint8_t reason);
/* Closes without a DISCONNECT (on_close runs with VG_MQTTC_R_LOCAL unless
 * already closed). */
void vg_mqttc_close(vg_mqttc_t *c);

/* Drops every in-flight entry (acks that arrive for them later go to
 * on_stray_ack). Returns how many there were. */
unsigned vg_mqttc_forget(vg_mqttc_t *c);

static inline int vg_mqttc_state(const vg_mqttc_t *c)
{
    return c->state;
}
static inline bool vg_mqttc_up(const vg_mqttc_t *c)
{
    return c->state == VG_MQTTC_UP;
}
static inline unsigned vg_mqttc_inflight(const vg_mqttc_t *c)
{
    return c->ring_len;
}
static inline struct ssl_st *vg_mqttc_ssl(const vg_mqttc_t *c)
{
    return c->ssl;
}
static inline const vg_mqttc_cfg_t *vg_mqttc_cfg(const vg_mqttc_t *c)
{
    return c->cfg;
}
vg_mqttc_reason_t vg_mqttc_reason(const vg_mqttc_t *c);
/* "closed by the server", ... */
const char *vg_mqttc_reason_name(vg_mqttc_reason_t r);

#endif
