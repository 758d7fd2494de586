/* codec.h — MQTT 3.1.1 packet codec: pure functions, bytes in, structs out.
 *
 * Owns: framing (fixed header + remaining length), decoding of every packet
 * a server receives and every packet a client receives, encoding of every
 * packet either side sends, topic name / filter validation (incl. the spec's
 * UTF-8 rules). Does not own: sockets, sessions, buffering (the caller keeps
 * partial input), limits other than those passed in.
 *
 * Decoded structs point INTO the caller's buffer (vg_bytes_t); nothing is
 * allocated. All multi-byte integers on the wire are big-endian (MQTT 1.5.2).
 * Parsers never assert on input: every violation returns VG_EMALFORMED or
 * VG_EPROTO, so the codec is safe to fuzz on its own. Version 5.0 will extend
 * these structs (protocol_level 5); 3.1.1 (level 4) and 3.1 (level 3) now. */
#ifndef VG_MQTT_CODEC_H
#define VG_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    VG_MQTT_CONNECT = 1,
    VG_MQTT_CONNACK = 2,
    VG_MQTT_PUBLISH = 3,
    VG_MQTT_PUBACK = 4,
    VG_MQTT_PUBREC = 5,
    VG_MQTT_PUBREL = 6,
    VG_MQTT_PUBCOMP = 7,
    VG_MQTT_SUBSCRIBE = 8,
    VG_MQTT_SUBACK = 9,
    VG_MQTT_UNSUBSCRIBE = 10,
    VG_MQTT_UNSUBACK = 11,
    VG_MQTT_PINGREQ = 12,
    VG_MQTT_PINGRESP = 13,
    VG_MQTT_DISCONNECT = 14,
};

/* CONNACK return codes (MQTT 3.1.1 §3.2.2.3). */
enum {
    VG_MQTT_CONNACK_ACCEPTED = 0,
    VG_MQTT_CONNACK_BAD_PROTOCOL = 1,
    VG_MQTT_CONNACK_ID_REJECTED = 2,
    VG_MQTT_CONNACK_UNAVAILABLE = 3,
    VG_MQTT_CONNACK_BAD_CREDENTIALS = 4,
    VG_MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

#define VG_MQTT_SUBACK_FAILURE 0x80
/* The largest remaining length the protocol can express (§2.2.3). */
#define VG_MQTT_MAX_REMAINING 268435455u

typedef struct {
    const uint8_t *p;
    size_t len;
} vg_bytes_t;

/* Framing. Looks at buf[0..len) for one complete packet.
 * Returns VG_OK and fills *type (high nibble of byte 0, 1..14), *flags (low
 * nibble), *hdr_len (1 + length-field bytes) and *rem_len when the whole
 * packet (hdr_len + rem_len bytes) is present;
 * VG_AGAIN when more bytes are needed (including a partial length field);
 * VG_EMALFORMED for a length field longer than 4 bytes, type 0 or 15, or
 * fixed-header flags that §2.2.2 forbids for the type (PUBREL, SUBSCRIBE,
 * UNSUBSCRIBE must be 0b0010; PUBLISH may not have QoS 3; all others 0);
 * VG_ETOOBIG when hdr_len + rem_len > max_packet (checked as soon as the
 * length field is complete, before the body has arrived). */
int vg_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, uint8_t *type, uint8_t *flags, size_t *hdr_len,
                  size_t *rem_len);

typedef struct {
    uint8_t protocol_level; /* 4 = 3.1.1, 3 = 3.1 ("MQIsdp") */
    bool clean_session;
    uint16_t keepalive; /* seconds */
    vg_bytes_t client_id;
    bool will_flag;
    uint8_t will_qos;
    bool will_retain;
    vg_bytes_t will_topic;
    vg_bytes_t will_payload;
    bool has_username;
    vg_bytes_t username;
    bool has_password;
    vg_bytes_t password;
} vg_mqtt_connect_t;

/* Decodes a CONNECT body (the rem_len bytes after the fixed header).
 * Returns VG_OK, or:
 *  VG_EMALFORMED: truncated fields, trailing bytes, reserved flag bit set,
 *    will flags inconsistent (will QoS/retain set without will flag, will QoS
 *    3), password without username, invalid UTF-8 in client id / will topic /
 *    username, wildcard in will topic, bad protocol name. The caller closes
 *    the connection without CONNACK.
 *  VG_EPROTO with *connack_rc = VG_MQTT_CONNACK_BAD_PROTOCOL: valid protocol
 *    name but unsupported level (caller sends CONNACK 1 then closes);
 *  VG_EPROTO with *connack_rc = VG_MQTT_CONNACK_ID_REJECTED: zero-length
 *    client id with clean_session 0, or a client id over 65535 bytes (we
 *    accept ids longer than the spec's 23 bytes, as every real broker does).
 * The client id may be empty with clean_session 1: the caller assigns one. */
int vg_mqtt_decode_connect(const uint8_t *body, size_t len, vg_mqtt_connect_t *out, uint8_t *connack_rc);

typedef struct {
    uint8_t qos; /* 0..2 */
    bool dup;
    bool retain;
    vg_bytes_t topic;
    uint16_t packet_id; /* 0 for QoS 0 */
    vg_bytes_t payload;
} vg_mqtt_publish_t;

/* Decodes a PUBLISH given the fixed-header flags and body. Returns
 * VG_EMALFORMED for QoS 3, DUP set on QoS 0, truncation, packet id 0 on QoS
 * > 0, empty topic, a topic with '+' or '#' or invalid UTF-8. */
int vg_mqtt_decode_publish(uint8_t flags, const uint8_t *body, size_t len, vg_mqtt_publish_t *out);

/* Decodes the body of PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK: exactly 2 bytes,
 * a non-zero packet id. */
int vg_mqtt_decode_packet_id(const uint8_t *body, size_t len, uint16_t *packet_id);

typedef struct {
    vg_bytes_t filter;
    uint8_t qos; /* requested QoS (SUBSCRIBE) */
} vg_mqtt_sub_t;

/* Decodes SUBSCRIBE (with_qos = true) or UNSUBSCRIBE (with_qos = false) into
 * subs[0..cap). Returns VG_OK with *count >= 1; VG_EMALFORMED for no
 * filters, truncation, packet id 0, requested QoS > 2 or reserved bits set,
 * an invalid filter (vg_mqtt_filter_valid); VG_ELIMIT when there are more
 * than cap filters. */
int vg_mqtt_decode_subscribe(const uint8_t *body, size_t len, bool with_qos, uint16_t *packet_id, vg_mqtt_sub_t *subs,
                             size_t cap, size_t *count);

/* Client side: CONNACK body (2 bytes; reserved bits of byte 0 must be 0). */
int vg_mqtt_decode_connack(const uint8_t *body, size_t len, bool *session_present, uint8_t *rc);
/* Client side: SUBACK body: packet id then one return code each (0,1,2,0x80). */
int vg_mqtt_decode_suback(const uint8_t *body, size_t len, uint16_t *packet_id, uint8_t *rcs, size_t cap,
                          size_t *count);

/* Encoders. Each writes one whole packet (fixed header included) into
 * out[0..cap) and returns its length (> 0), or VG_ENOSPC if cap is too small,
 * or VG_EINVAL for values the protocol cannot carry (string > 65535 bytes,
 * remaining length > VG_MQTT_MAX_REMAINING, QoS > 2). */
int vg_mqtt_encode_connect(uint8_t *out, size_t cap, const vg_mqtt_connect_t *c);
int vg_mqtt_encode_connack(uint8_t *out, size_t cap, bool session_present, uint8_t rc);
int vg_mqtt_encode_publish(uint8_t *out, size_t cap, const vg_mqtt_publish_t *p);
/* PUBACK, PUBREC, PUBREL (flags 0b0010 set automatically), PUBCOMP, UNSUBACK. */
int vg_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t type, uint16_t packet_id);
int vg_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id, const vg_mqtt_sub_t *subs, size_t n);
int vg_mqtt_encode_unsubscribe(uint8_t *out, size_t cap, uint16_t packet_id, const vg_mqtt_sub_t *subs, size_t n);
int vg_mqtt_encode_suback(uint8_t *out, size_t cap, uint16_t packet_id, const uint8_t *rcs, size_t n);
/* PINGREQ, PINGRESP, DISCONNECT: two bytes. */
int vg_mqtt_encode_empty(uint8_t *out, size_t cap, uint8_t type);

/* Exact encoded size of a PUBLISH (so callers can size buffers), 0 if the
 * values cannot be encoded. */
size_t vg_mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos);

/* MQTT UTF-8 string rules (§1.5.3): well-formed UTF-8, no U+0000, no
 * surrogates (U+D800..U+DFFF), no overlong forms, nothing above U+10FFFF. */
bool vg_mqtt_utf8_valid(const uint8_t *p, size_t len);
/* Topic name: non-empty, valid UTF-8, no '+' or '#'. */
bool vg_mqtt_topic_valid(const uint8_t *p, size_t len);
/* Topic filter: non-empty, valid UTF-8, '#' only as the whole last level,
 * '+' only as a whole level. */
bool vg_mqtt_filter_valid(const uint8_t *p, size_t len);
/* Does topic name match filter (§4.7)? Topics starting with '$' are not
 * matched by filters starting with '+' or '#'. */
bool vg_mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen);

/* Human-readable name of a packet type ("PUBLISH"), "?" if unknown. */
const char *vg_mqtt_type_name(uint8_t type);

#endif
