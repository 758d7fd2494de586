/* codec.h — MQTT 3.1.1 and 5.0 packet codec: pure functions, bytes in, structs out.
 *
 * Owns: framing (fixed header + remaining length), decoding of every packet
 * a server receives and every packet a client receives, encoding of every
 * packet either side sends, MQTT 5 properties (validated per packet type),
 * topic name / filter validation (incl. the spec's UTF-8 rules). Does not
 * own: sockets, sessions, buffering (the caller keeps partial input), limits
 * other than those passed in.
 *
 * Versions: `level` is the CONNECT protocol level: 3 = 3.1 ("MQIsdp"),
 * 4 = 3.1.1, 5 = 5.0. Decoders and encoders take it because the same packet
 * type has a different body in 5.0 (properties, reason codes).
 *
 * Decoded structs point INTO the caller's buffer (vg_bytes_t); nothing is
 * allocated. All multi-byte integers on the wire are big-endian (MQTT 1.5.2).
 * Parsers never assert on input: every violation returns VG_EMALFORMED or
 * VG_EPROTO, so the codec is safe to fuzz on its own.
 *
 * Error classes. 5.0 distinguishes a "Malformed Packet" (0x81) from a
 * "Protocol Error" (0x82), but both end the connection, and the codec
 * reports every violation it finds in a packet body as VG_EMALFORMED:
 * truncation, trailing bytes, reserved bits, ill-formed UTF-8, a property
 * not allowed in the packet (§2.2.2.2), a duplicated single-occurrence
 * property, a property value out of range, a reason code not allowed for
 * the packet type, retain handling 3, topic alias 0, subscription
 * identifier 0. VG_EPROTO is kept for the two CONNECT outcomes that need a
 * specific CONNACK (unsupported level, rejected client id), so that "got
 * VG_EPROTO" always means "answer with *connack_rc". A 5.0 server answers
 * VG_EMALFORMED with DISCONNECT (or CONNACK) 0x81 before closing.
 * VG_EINVAL from a decoder means a caller bug (a level other than 3/4/5, or
 * a packet type the function does not decode), never bad input.
 *
 * Checks that need session state are the caller's: topic alias above the
 * negotiated maximum, subscription identifiers in a PUBLISH sent by a client
 * (§3.3.4), no local on a shared subscription, Session Expiry on a
 * server's DISCONNECT, payload format 1 with a non-UTF-8 payload.
 *
 * Section numbers are MQTT 5.0's for what 5.0 added (properties §2.2.2.2,
 * reason codes §2.4 and §3.x) and 3.1.1's for framing (§2.2), strings
 * (§1.5.3) and topics (§4.7), which 5.0 kept but renumbered. */
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
    VG_MQTT_AUTH = 15, /* 5.0 only; framing accepts it, the server rejects it on 3.1.1 */
};

enum { VG_MQTT_V31 = 3, VG_MQTT_V311 = 4, VG_MQTT_V5 = 5 };

/* CONNACK return codes (MQTT 3.1.1 §3.2.2.3). */
enum {
    VG_MQTT_CONNACK_ACCEPTED = 0,
    VG_MQTT_CONNACK_BAD_PROTOCOL = 1,
    VG_MQTT_CONNACK_ID_REJECTED = 2,
    VG_MQTT_CONNACK_UNAVAILABLE = 3,
    VG_MQTT_CONNACK_BAD_CREDENTIALS = 4,
    VG_MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

/* MQTT 5.0 reason codes (§2.4), all of them. */
enum {
    VG_RC_SUCCESS = 0x00, /* also "normal disconnection", "granted QoS 0" */
    VG_RC_GRANTED_QOS1 = 0x01,
    VG_RC_GRANTED_QOS2 = 0x02,
    VG_RC_DISCONNECT_WITH_WILL = 0x04,
    VG_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    VG_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    VG_RC_CONTINUE_AUTH = 0x18,
    VG_RC_REAUTHENTICATE = 0x19,
    VG_RC_UNSPECIFIED = 0x80,
    VG_RC_MALFORMED = 0x81,
    VG_RC_PROTOCOL_ERROR = 0x82,
    VG_RC_IMPL_SPECIFIC = 0x83,
    VG_RC_UNSUPPORTED_VERSION = 0x84,
    VG_RC_CLIENT_ID_INVALID = 0x85,
    VG_RC_BAD_USER_OR_PASSWORD = 0x86,
    VG_RC_NOT_AUTHORIZED = 0x87,
    VG_RC_SERVER_UNAVAILABLE = 0x88,
    VG_RC_SERVER_BUSY = 0x89,
    VG_RC_BANNED = 0x8A,
    VG_RC_SERVER_SHUTTING_DOWN = 0x8B,
    VG_RC_BAD_AUTH_METHOD = 0x8C,
    VG_RC_KEEPALIVE_TIMEOUT = 0x8D,
    VG_RC_SESSION_TAKEN_OVER = 0x8E,
    VG_RC_FILTER_INVALID = 0x8F,
    VG_RC_TOPIC_INVALID = 0x90,
    VG_RC_PACKET_ID_IN_USE = 0x91,
    VG_RC_PACKET_ID_NOT_FOUND = 0x92,
    VG_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    VG_RC_TOPIC_ALIAS_INVALID = 0x94,
    VG_RC_PACKET_TOO_LARGE = 0x95,
    VG_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    VG_RC_QUOTA_EXCEEDED = 0x97,
    VG_RC_ADMIN_ACTION = 0x98,
    VG_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    VG_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    VG_RC_QOS_NOT_SUPPORTED = 0x9B,
    VG_RC_USE_ANOTHER_SERVER = 0x9C,
    VG_RC_SERVER_MOVED = 0x9D,
    VG_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    VG_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    VG_RC_MAX_CONNECT_TIME = 0xA0,
    VG_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    VG_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

#define VG_MQTT_SUBACK_FAILURE 0x80
/* The largest remaining length the protocol can express (§2.2.3). */
#define VG_MQTT_MAX_REMAINING 268435455u
/* The largest subscription identifier (§3.8.2.1.2). */
#define VG_MQTT_MAX_SUB_ID 268435455u

typedef struct {
    const uint8_t *p;
    size_t len;
} vg_bytes_t;

/* MQTT 5 property identifiers (§2.2.2.2). */
enum {
    VG_PROP_PAYLOAD_FORMAT = 0x01,
    VG_PROP_MESSAGE_EXPIRY = 0x02,
    VG_PROP_CONTENT_TYPE = 0x03,
    VG_PROP_RESPONSE_TOPIC = 0x08,
    VG_PROP_CORRELATION_DATA = 0x09,
    VG_PROP_SUBSCRIPTION_ID = 0x0B,
    VG_PROP_SESSION_EXPIRY = 0x11,
    VG_PROP_ASSIGNED_CLIENT_ID = 0x12,
    VG_PROP_SERVER_KEEPALIVE = 0x13,
    VG_PROP_AUTH_METHOD = 0x15,
    VG_PROP_AUTH_DATA = 0x16,
    VG_PROP_REQUEST_PROBLEM_INFO = 0x17,
    VG_PROP_WILL_DELAY = 0x18,
    VG_PROP_REQUEST_RESPONSE_INFO = 0x19,
    VG_PROP_RESPONSE_INFO = 0x1A,
    VG_PROP_SERVER_REFERENCE = 0x1C,
    VG_PROP_REASON_STRING = 0x1F,
    VG_PROP_RECEIVE_MAX = 0x21,
    VG_PROP_TOPIC_ALIAS_MAX = 0x22,
    VG_PROP_TOPIC_ALIAS = 0x23,
    VG_PROP_MAX_QOS = 0x24,
    VG_PROP_RETAIN_AVAILABLE = 0x25,
    VG_PROP_USER = 0x26,
    VG_PROP_MAX_PACKET_SIZE = 0x27,
    VG_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    VG_PROP_SUB_ID_AVAILABLE = 0x29,
    VG_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* Bit for property id `id` in vg_mqtt_props_t.present (ids are < 64). */
#define VG_PROP_BIT(id) (1ull << (id))

/* Up to this many subscription identifiers are carried in one outgoing
 * PUBLISH (one per matching subscription that has one); decoding keeps the
 * first VG_MQTT_MAX_SUB_IDS and counts the rest in sub_id_count. */
#define VG_MQTT_MAX_SUB_IDS 8

/* The properties of one packet. `present` says which single-valued fields
 * are set (VG_PROP_BIT(id)); fields not present are zero. The two
 * multi-valued properties are counted instead: subscription identifiers in
 * sub_id_count, user properties in user_prop_count; the decoder also sets
 * their present bits when there are any, and the encoder ignores those two
 * bits (it looks at sub_id_count and user_props.len).
 *
 * User properties are kept as the raw encoded run of (0x26, key, value)
 * entries, in wire order, so they can be passed through to subscribers and
 * stored without copying or allocating; iterate them with
 * vg_mqtt_user_props_next. Property order is free on the wire (§2.2.2), so
 * a decoded run spans from the first user property to the end of the last
 * one and may contain other properties between them: the iterator,
 * vg_mqtt_props_size and the encoders skip those, so a decoded block can be
 * handed straight to an encoder. When encoding, user_props must hold such a
 * run (already validated: its strings are not scanned again; a run that
 * does not parse is VG_EINVAL) or be empty; user_prop_count is not read.
 *
 * Encoders write the properties in ascending identifier order and refuse
 * (VG_EINVAL) what the decoder would refuse: a property not allowed in the
 * packet, a value out of range, more than VG_MQTT_MAX_SUB_IDS subscription
 * identifiers, authentication data without a method. They do not scan
 * string contents for UTF-8 (as for topics and client ids). */
typedef struct {
    uint64_t present;
    uint8_t payload_format;  /* 0 = bytes, 1 = UTF-8 */
    uint32_t message_expiry; /* seconds */
    vg_bytes_t content_type;
    vg_bytes_t response_topic;
    vg_bytes_t correlation_data;
    uint32_t sub_ids[VG_MQTT_MAX_SUB_IDS];
    uint32_t sub_id_count;   /* present bit set iff > 0 */
    uint32_t session_expiry; /* seconds; 0xFFFFFFFF = never */
    vg_bytes_t assigned_client_id;
    uint16_t server_keepalive;
    vg_bytes_t auth_method;
    vg_bytes_t auth_data;
    uint8_t request_problem_info;
    uint32_t will_delay;
    uint8_t request_response_info;
    vg_bytes_t response_info;
    vg_bytes_t server_reference;
    vg_bytes_t reason_string;
    uint16_t receive_max;
    uint16_t topic_alias_max;
    uint16_t topic_alias;
    uint8_t max_qos;
    uint8_t retain_available;
    uint32_t max_packet_size;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    vg_bytes_t user_props; /* raw run of 0x26 entries */
    uint32_t user_prop_count;
} vg_mqtt_props_t;

/* Iterates the user properties in props->user_props: *pos starts at 0;
 * returns true and fills key/value for each entry, false at the end (or at
 * the first entry that does not parse, which a decoded run never has). */
bool vg_mqtt_user_props_next(const vg_mqtt_props_t *props, size_t *pos, vg_bytes_t *key, vg_bytes_t *value);
/* Writes the user properties of props into out[0..cap) as a pure run of
 * (0x26, key, value) entries: what props->user_props already is unless the
 * sender put other properties between its user properties. For callers
 * that store the run (record metadata) and promise readers nothing else is
 * in it. Returns the run's length (0 for none; never more than
 * props->user_props.len), VG_ENOSPC if cap is too small, or VG_EINVAL for a
 * run that does not parse. */
int vg_mqtt_user_props_pack(const vg_mqtt_props_t *props, uint8_t *out, size_t cap);

/* Framing. Looks at buf[0..len) for one complete packet.
 * Returns VG_OK and fills *type (high nibble of byte 0, 1..15), *flags (low
 * nibble), *hdr_len (1 + length-field bytes) and *rem_len when the whole
 * packet (hdr_len + rem_len bytes) is present;
 * VG_AGAIN when more bytes are needed (including a partial length field);
 * VG_EMALFORMED for a length field longer than 4 bytes, type 0, or
 * fixed-header flags that §2.2.2 forbids for the type (PUBREL, SUBSCRIBE,
 * UNSUBSCRIBE must be 0b0010; PUBLISH may not have QoS 3; all others 0).
 * A non-minimal length field (0x80 0x00) is accepted: 3.1.1 allows it, 5.0
 * does not (§1.5.5), and framing runs before the level is known. Inside
 * 5.0 bodies (property lengths, subscription identifiers) the decoders do
 * require the minimal form;
 * VG_ETOOBIG when hdr_len + rem_len > max_packet (checked as soon as the
 * length field is complete, before the body has arrived). */
int vg_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, uint8_t *type, uint8_t *flags, size_t *hdr_len,
                  size_t *rem_len);

typedef struct {
    uint8_t protocol_level; /* 3, 4 or 5 */
    bool clean_session;     /* 5.0: "clean start" */
    uint16_t keepalive;     /* seconds */
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
    vg_mqtt_props_t props;      /* 5.0 CONNECT properties */
    vg_mqtt_props_t will_props; /* 5.0 will properties; empty without a will */
} vg_mqtt_connect_t;

/* Decodes a CONNECT body (the rem_len bytes after the fixed header); the
 * level comes from the packet itself ("MQTT" with 4 or 5, "MQIsdp" with 3).
 * Returns VG_OK, or:
 *  VG_EMALFORMED: truncated fields, trailing bytes, reserved flag bit set,
 *    will flags inconsistent (will QoS/retain set without will flag, will QoS
 *    3), password without username (3.1.1 only; 5.0 allows it), invalid
 *    UTF-8 in client id / will topic / username, wildcard in will topic,
 *    bad protocol name, malformed or disallowed or duplicated properties
 *    (§2.2.2.2; 0-valued receive max or max packet size, request
 *    problem/response info not 0/1, authentication data without a method),
 *    and the same for the will properties. out->protocol_level is filled as
 *    soon as it is read so the caller knows whether to answer with a 5.0
 *    CONNACK (0x81 for VG_EMALFORMED).
 *  VG_EPROTO with *connack_rc = VG_MQTT_CONNACK_BAD_PROTOCOL: valid protocol
 *    name but unsupported level (caller sends CONNACK 1 / 0x84 then closes);
 *  VG_EPROTO with *connack_rc = VG_MQTT_CONNACK_ID_REJECTED: zero-length
 *    client id with clean_session 0 on 3.1.1 (5.0 allows it: the server
 *    assigns one), or a client id over 65535 bytes.
 * The client id may be empty with clean_session 1: the caller assigns one. */
int vg_mqtt_decode_connect(const uint8_t *body, size_t len, vg_mqtt_connect_t *out, uint8_t *connack_rc);

typedef struct {
    uint8_t qos; /* 0..2 */
    bool dup;
    bool retain;
    vg_bytes_t topic;   /* may be empty in 5.0 when props carry a topic alias */
    uint16_t packet_id; /* 0 for QoS 0 */
    vg_bytes_t payload;
    vg_mqtt_props_t props; /* 5.0 */
} vg_mqtt_publish_t;

/* Decodes a PUBLISH given the level, the fixed-header flags and the body.
 * Returns VG_EMALFORMED for QoS 3, DUP set on QoS 0, truncation, packet id 0
 * on QoS > 0, a topic with '+' or '#' or invalid UTF-8, an empty topic
 * (3.1.1; 5.0: empty only with a topic alias), topic alias 0, bad or
 * duplicated properties. Not checked here: payload format 1 with a
 * non-UTF-8 payload (the server decides, §3.3.2.3.2) and subscription
 * identifiers in a PUBLISH from a client (§3.3.4: the server's check, the
 * same decoder serves both directions). Up to VG_MQTT_MAX_SUB_IDS
 * identifiers are kept, sub_id_count counts all of them. */
int vg_mqtt_decode_publish(uint8_t level, uint8_t flags, const uint8_t *body, size_t len, vg_mqtt_publish_t *out);

/* PUBACK/PUBREC/PUBREL/PUBCOMP (and 3.1.1 UNSUBACK). */
typedef struct {
    uint16_t packet_id;
    uint8_t reason; /* 0 when absent (3.1.1, or 5.0 with remaining length 2) */
    vg_mqtt_props_t props;
} vg_mqtt_ack_t;

/* Decodes the body of PUBACK/PUBREC/PUBREL/PUBCOMP (and, at level 3/4,
 * UNSUBACK): non-zero packet id, then in 5.0 an optional reason code
 * (checked against the type's allowed set, §3.4.2.1 etc.) and optional
 * properties (reason string, user properties only): remaining length 2
 * means reason 0 and no properties, 3 a reason and no properties. 3.1.1:
 * exactly 2 bytes. VG_EINVAL for another type, or UNSUBACK at level 5
 * (which has a payload: use vg_mqtt_decode_suback). */
int vg_mqtt_decode_ack(uint8_t level, uint8_t type, const uint8_t *body, size_t len, vg_mqtt_ack_t *out);

/* Kept for 3.1.1 callers: exactly 2 bytes, a non-zero packet id. */
int vg_mqtt_decode_packet_id(const uint8_t *body, size_t len, uint16_t *packet_id);

/* Subscription options byte (§3.8.3.1). */
typedef struct {
    vg_bytes_t filter;
    uint8_t qos;              /* requested maximum QoS */
    bool no_local;            /* 5.0 */
    bool retain_as_published; /* 5.0 */
    uint8_t retain_handling;  /* 5.0: 0, 1 or 2 */
} vg_mqtt_sub_t;

/* Decodes SUBSCRIBE (with_qos = true) or UNSUBSCRIBE (with_qos = false) into
 * subs[0..cap). 5.0: properties follow the packet id (SUBSCRIBE: one
 * subscription identifier 1..268435455 and user properties; UNSUBSCRIBE:
 * user properties); `props` may be NULL (the properties are still
 * validated, just not returned; 3.1.1 leaves them zero). Returns VG_OK
 * with *count >= 1; VG_EMALFORMED for no filters, truncation, packet id 0,
 * requested QoS > 2 or reserved option bits set (3.1.1: bits 2-7; 5.0: bits
 * 6-7, retain handling 3), an invalid filter (vg_mqtt_filter_valid), no
 * local on a shared subscription is NOT checked here (§3.8.3.1: protocol
 * error the server reports); VG_ELIMIT when there are more than cap filters. */
int vg_mqtt_decode_subscribe(uint8_t level, const uint8_t *body, size_t len, bool with_qos, uint16_t *packet_id,
                             vg_mqtt_props_t *props, vg_mqtt_sub_t *subs, size_t cap, size_t *count);

/* DISCONNECT and AUTH bodies (5.0): optional reason code, optional
 * properties; remaining length 0 means reason 0x00, 1 a reason and no
 * properties. 3.1.1 DISCONNECT must be empty; AUTH at level 3/4 is
 * VG_EMALFORMED (type 15 is reserved there). Reason codes are checked
 * against the type's allowed set (§3.14.2.1 plus 0x8C, which §2.4 lists
 * for DISCONNECT; §3.15.2.1). AUTH must carry an Authentication Method
 * (§3.15.2.2.2 makes omitting it a protocol error), so the short forms of
 * AUTH, which have no properties, are VG_EMALFORMED too. `props` may be
 * NULL. */
int vg_mqtt_decode_reason(uint8_t level, uint8_t type, const uint8_t *body, size_t len, uint8_t *reason,
                          vg_mqtt_props_t *props);

/* Client side: CONNACK body (3.1.1: 2 bytes, any return code; 5.0: flags,
 * reason code from §3.2.2.2, properties; session present with a non-zero
 * reason is VG_EMALFORMED, §3.2.2.1.1). `props` may be NULL. */
int vg_mqtt_decode_connack(uint8_t level, const uint8_t *body, size_t len, bool *session_present, uint8_t *rc,
                           vg_mqtt_props_t *props);
/* Client side: SUBACK / 5.0 UNSUBACK body: packet id, (5.0: properties), one
 * return/reason code each (at least one). type is VG_MQTT_SUBACK or, at
 * level 5 only, VG_MQTT_UNSUBACK (VG_EINVAL otherwise; 3.1.1 UNSUBACK is
 * vg_mqtt_decode_ack). VG_ELIMIT with *packet_id set when there are more
 * than cap codes. `props` may be NULL. */
int vg_mqtt_decode_suback(uint8_t level, uint8_t type, const uint8_t *body, size_t len, uint16_t *packet_id,
                          vg_mqtt_props_t *props, uint8_t *rcs, size_t cap, size_t *count);

/* Encoders. Each writes one whole packet (fixed header included) into
 * out[0..cap) and returns its length (> 0), or VG_ENOSPC if cap is too small
 * (nothing is written then), or VG_EINVAL for values the protocol cannot
 * carry (string > 65535 bytes, remaining length > VG_MQTT_MAX_REMAINING,
 * QoS > 2, a reason code not allowed for the packet, properties the
 * decoder would refuse, a level other than 3/4/5). `props` may be NULL (no
 * properties); properties, reason codes and 5.0 subscription options are
 * written only for level 5 and ignored otherwise. The protocol level for
 * CONNECT comes from c->protocol_level; a 5.0 CONNECT without a will must
 * have empty will_props. */
int vg_mqtt_encode_connect(uint8_t *out, size_t cap, const vg_mqtt_connect_t *c);
/* rc is a 3.1.1 return code (VG_MQTT_CONNACK_*, 0..5) at level 3/4 and a
 * 5.0 reason code from §3.2.2.2 (VG_RC_*) at level 5; session_present only
 * with rc 0. */
int vg_mqtt_encode_connack(uint8_t *out, size_t cap, uint8_t level, bool session_present, uint8_t rc,
                           const vg_mqtt_props_t *props);
int vg_mqtt_encode_publish(uint8_t *out, size_t cap, uint8_t level, const vg_mqtt_publish_t *p);
/* PUBACK, PUBREC, PUBREL (flags 0b0010 set automatically), PUBCOMP, and
 * 3.1.1 UNSUBACK. 5.0: reason 0 with no properties is written as the short
 * 2-byte form (§3.4.2.1), a reason with no properties as the 3-byte one. */
int vg_mqtt_encode_ack(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id, uint8_t reason,
                       const vg_mqtt_props_t *props);
int vg_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id, const vg_mqtt_props_t *props,
                             const vg_mqtt_sub_t *subs, size_t n);
int vg_mqtt_encode_unsubscribe(uint8_t *out, size_t cap, uint8_t level, uint16_t packet_id,
                               const vg_mqtt_props_t *props, const vg_mqtt_sub_t *subs, size_t n);
/* SUBACK, and 5.0 UNSUBACK (type selects; 3.1.1 UNSUBACK uses encode_ack). */
int vg_mqtt_encode_suback(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id,
                          const vg_mqtt_props_t *props, const uint8_t *rcs, size_t n);
/* DISCONNECT / AUTH with reason and properties (5.0); 3.1.1 DISCONNECT is
 * two bytes whatever reason says, 3.1.1 AUTH is VG_EINVAL. Reason 0 with no
 * properties: 2 bytes; a reason without properties: 3. AUTH needs an
 * Authentication Method in props (VG_EINVAL otherwise, see decode). */
int vg_mqtt_encode_reason(uint8_t *out, size_t cap, uint8_t level, uint8_t type, uint8_t reason,
                          const vg_mqtt_props_t *props);
/* PINGREQ, PINGRESP, 3.1.1 DISCONNECT: two bytes. */
int vg_mqtt_encode_empty(uint8_t *out, size_t cap, uint8_t type);

/* Encoded size of a properties block including its length prefix (1 byte
 * for no properties or NULL), or 0 if it cannot be encoded in any packet
 * (an unknown present bit, a value out of range, a string over 65535
 * bytes, more than VG_MQTT_MAX_SUB_IDS identifiers, a user run that does
 * not parse). Whether each property is allowed in a given packet is the
 * encoder's check. */
size_t vg_mqtt_props_size(const vg_mqtt_props_t *props);
/* Exact encoded size of a PUBLISH (so callers can size buffers), 0 if the
 * values cannot be encoded (including properties not allowed in PUBLISH).
 * props may be NULL; level selects the layout (props ignored below 5). */
size_t vg_mqtt_publish_size(uint8_t level, size_t topic_len, size_t payload_len, uint8_t qos,
                            const vg_mqtt_props_t *props);

/* MQTT UTF-8 string rules (§1.5.3): well-formed UTF-8, no U+0000, no
 * surrogates (U+D800..U+DFFF), no overlong forms, nothing above U+10FFFF. */
bool vg_mqtt_utf8_valid(const uint8_t *p, size_t len);
/* Topic name: non-empty, valid UTF-8, no '+' or '#'. */
bool vg_mqtt_topic_valid(const uint8_t *p, size_t len);
/* Topic filter: non-empty, valid UTF-8, '#' only as the whole last level,
 * '+' only as a whole level. `$share/<group>/<filter>` is checked like any
 * other filter here; vg_mqtt_shared_split validates the shared form. */
bool vg_mqtt_filter_valid(const uint8_t *p, size_t len);
/* If filter is `$share/<group>/<filter>`: returns 1 and sets group and inner
 * (group non-empty, no '+', '#' or '/'; inner a valid filter); returns 0 if
 * it is not a shared subscription; VG_EMALFORMED if it starts with
 * `$share/` but is not a valid shared subscription (§4.8.2). */
int vg_mqtt_shared_split(const uint8_t *p, size_t len, vg_bytes_t *group, vg_bytes_t *inner);
/* Does topic name match filter (§4.7)? Topics starting with '$' are not
 * matched by filters starting with '+' or '#'. */
bool vg_mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen);

/* Human-readable name of a packet type ("PUBLISH"), "?" if unknown. */
const char *vg_mqtt_type_name(uint8_t type);
/* Human-readable name of a 5.0 reason code ("Receive Maximum exceeded"). */
const char *vg_mqtt_reason_name(uint8_t rc);

#endif
