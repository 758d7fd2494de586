#!/usr/bin/env python3
"""gen_mqtt_seeds.py — writes the MQTT 5.0 seeds of tests/fuzz/corpus/mqtt/.

Each seed is what fuzz_mqtt.c reads: one selector byte (bit 0: level 5.0,
else 3.1.1; bit 1: the client's decoders, else the server's), then a stream
of packets. The packets are written out field by field from the MQTT 5.0
spec here rather than by the codec, so that the seeds do not inherit its
mistakes. Valid seeds cover every packet type and every property; "bad-"
seeds sit one byte away from a rule. Run from anywhere; it only (re)writes
the v5-* files. The 3.1.1 seeds were written by hand and are kept as they
are (with a selector byte in front).
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "mqtt")

SERVER5, CLIENT5, SERVER4 = 0x01, 0x03, 0x00


def vbi(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def s(x):
    if isinstance(x, str):
        x = x.encode()
    return struct.pack(">H", len(x)) + x


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def packet(ptype, flags, body):
    return bytes([ptype << 4 | flags]) + vbi(len(body)) + body


def props(*entries):
    body = b"".join(entries)
    return vbi(len(body)) + body


# Properties, by type (v5 §2.2.2.2).
def p_byte(pid, v):
    return bytes([pid, v])


def p_u16(pid, v):
    return bytes([pid]) + u16(v)


def p_u32(pid, v):
    return bytes([pid]) + u32(v)


def p_str(pid, v):
    return bytes([pid]) + s(v)


def p_vbi(pid, v):
    return bytes([pid]) + vbi(v)


def p_user(k, v):
    return b"\x26" + s(k) + s(v)


CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15


def connect(flags, cprops, cid, will=None, user=None, password=None, keepalive=60, level=5):
    body = s("MQTT") + bytes([level, flags]) + u16(keepalive) + cprops + s(cid)
    if will is not None:
        wprops, wtopic, wpayload = will
        body += wprops + s(wtopic) + s(wpayload)
    if user is not None:
        body += s(user)
    if password is not None:
        body += s(password)
    return packet(CONNECT, 0, body)


def publish(qos, topic, pprops, payload, pid=1, dup=False, retain=False):
    flags = (8 if dup else 0) | qos << 1 | (1 if retain else 0)
    body = s(topic) + (u16(pid) if qos else b"") + pprops + payload
    return packet(PUBLISH, flags, body)


def ack(ptype, pid, reason=None, aprops=None):
    body = u16(pid)
    if reason is not None:
        body += bytes([reason])
        if aprops is not None:
            body += aprops
    return packet(ptype, 2 if ptype == PUBREL else 0, body)


def subscribe(pid, sprops, *subs):
    return packet(SUBSCRIBE, 2, u16(pid) + sprops + b"".join(s(f) + bytes([o]) for f, o in subs))


def unsubscribe(pid, uprops, *filters):
    return packet(UNSUBSCRIBE, 2, u16(pid) + uprops + b"".join(s(f) for f in filters))


def codes_packet(ptype, pid, cprops, *codes):
    return packet(ptype, 0, u16(pid) + cprops + bytes(codes))


def reason_packet(ptype, reason=None, rprops=None):
    body = b""
    if reason is not None:
        body += bytes([reason])
        if rprops is not None:
            body += rprops
    return packet(ptype, 0, body)


NONE = props()
USERS = (p_user("trace", "4bf92f35"), p_user("", "caf\u00e9"))

SEEDS = {
    # ---- server side: what a client sends -------------------------------
    "v5-connect-min": (SERVER5, connect(0x02, NONE, "dev-1")),
    "v5-connect-full": (
        SERVER5,
        connect(
            0xEE,  # username, password, will retain, will QoS 1, will, clean start
            props(p_u32(0x11, 3600), p_u16(0x21, 20), p_u32(0x27, 1 << 20), p_u16(0x22, 10), p_byte(0x19, 1),
                  p_byte(0x17, 0), *USERS),
            "wearable-0042",
            will=(props(p_u32(0x18, 30), p_byte(0x01, 1), p_u32(0x02, 86400), p_str(0x03, "text/plain"),
                        p_str(0x08, "devices/0042/ack"), p_str(0x09, b"\x00\x01"), p_user("why", "lost")),
                  "devices/0042/status", "offline"),
            user="ward-7",
            password=b"\x00secret",
        ),
    ),
    "v5-connect-password-only": (SERVER5, connect(0x40, NONE, "", password="token")),
    "v5-connect-auth": (SERVER5, connect(0x02, props(p_str(0x15, "SCRAM-SHA-256"), p_str(0x16, b"n,,n=u,r=x")),
                                         "dev-2")),
    "v5-stream-session": (
        SERVER4,  # the CONNECT switches the stream to 5.0, as it does a server
        connect(0x02, props(p_u16(0x22, 4)), "s1")
        + subscribe(1, props(p_vbi(0x0B, 7), p_user("a", "b")), ("vitals/+/hr", 0x01), ("$share/g/alerts/#", 0x2A),
                    ("#", 0x14))
        + publish(1, "vitals/0042/hr", props(p_u16(0x23, 1), p_byte(0x01, 1)), b"{\"bpm\":71}", pid=2)
        + publish(0, "", props(p_u16(0x23, 1)), b"{\"bpm\":72}")
        + ack(PUBACK, 9)
        + ack(PUBREC, 10, 0x10)
        + ack(PUBREL, 10)
        + ack(PUBCOMP, 11, 0x00, NONE)
        + unsubscribe(3, NONE, "#")
        + packet(PINGREQ, 0, b"")
        + reason_packet(DISCONNECT, 0x04, props(p_u32(0x11, 0), p_str(0x1F, "bye"))),
    ),
    "v5-publish-qos0-props": (
        SERVER5,
        publish(0, "vitals/0042/spo2",
                props(p_byte(0x01, 1), p_u32(0x02, 60), p_str(0x03, "application/json"), p_str(0x08, "reply/0042"),
                      p_str(0x09, b"\xde\xad"), *USERS),
                b"{\"spo2\":97}"),
    ),
    "v5-publish-qos1-alias-only": (SERVER5, publish(1, "", props(p_u16(0x23, 3)), b"x", pid=5)),
    "v5-publish-qos2-dup-retain": (SERVER5, publish(2, "a/b", NONE, b"", pid=0xFFFF, dup=True, retain=True)),
    "v5-publish-user-interleaved": (
        SERVER5,
        publish(0, "t", props(p_user("k1", "v1"), p_u32(0x02, 5), p_user("k2", ""), p_u16(0x23, 2)), b"p"),
    ),
    "v5-publish-empty-user-props": (
        SERVER5, publish(0, "t", props(p_user("", ""), p_str(0x03, ""), p_user("", ""), p_str(0x09, b"")), b""),
    ),
    "v5-puback-short": (SERVER5, ack(PUBACK, 1)),
    "v5-puback-reason": (SERVER5, ack(PUBACK, 2, 0x10)),
    "v5-puback-props": (SERVER5, ack(PUBACK, 3, 0x97, props(p_str(0x1F, "quota"), *USERS))),
    "v5-pubrec-props": (SERVER5, ack(PUBREC, 4, 0x80, props(p_str(0x1F, "no")))),
    "v5-pubrel-not-found": (SERVER5, ack(PUBREL, 5, 0x92)),
    "v5-pubrel-props": (SERVER5, ack(PUBREL, 5, 0x00, props(p_user("x", "y")))),
    "v5-pubcomp-props": (SERVER5, ack(PUBCOMP, 6, 0x92, props(p_str(0x1F, "gone")))),
    "v5-subscribe-options": (
        SERVER5,
        subscribe(10, props(p_vbi(0x0B, 268435455)), ("a", 0x00), ("b/+", 0x05), ("c/#", 0x0A), ("d", 0x12),
                  ("e", 0x2E)),
    ),
    "v5-subscribe-shared": (SERVER5, subscribe(11, NONE, ("$share/group/vitals/#", 0x01), ("$share/g2/+", 0x02))),
    "v5-unsubscribe-props": (SERVER5, unsubscribe(12, props(*USERS), "a", "b/+", "$share/g/c")),
    "v5-pingreq": (SERVER5, packet(PINGREQ, 0, b"")),
    "v5-disconnect-empty": (SERVER5, reason_packet(DISCONNECT)),
    "v5-disconnect-reason": (SERVER5, reason_packet(DISCONNECT, 0x04)),
    "v5-disconnect-props": (
        SERVER5,
        reason_packet(DISCONNECT, 0x80, props(p_u32(0x11, 0), p_str(0x1F, "shutting down"), p_user("a", "b"))),
    ),
    "v5-auth-continue": (SERVER5, reason_packet(AUTH, 0x18, props(p_str(0x15, "SCRAM-SHA-256"),
                                                                  p_str(0x16, b"c=biws,r=x")))),
    "v5-auth-reauth": (SERVER5, reason_packet(AUTH, 0x19, props(p_str(0x15, "TOKEN"), p_str(0x1F, "rotate")))),
    # ---- client side: what a server sends -------------------------------
    "v5-connack-min": (CLIENT5, packet(CONNACK, 0, b"\x00\x00" + NONE)),
    "v5-connack-full": (
        CLIENT5,
        packet(CONNACK, 0, b"\x01\x00" + props(
            p_u32(0x11, 120), p_u16(0x21, 100), p_byte(0x24, 1), p_byte(0x25, 0), p_u32(0x27, 65536),
            p_str(0x12, "auto-1f2e"), p_u16(0x22, 16), p_str(0x1F, "welcome"), p_byte(0x28, 1), p_byte(0x29, 1),
            p_byte(0x2A, 0), p_u16(0x13, 45), p_str(0x1A, "resp/"), p_str(0x1C, "b.example"),
            p_str(0x15, "TOKEN"), p_str(0x16, b"\x01"), *USERS)),
    ),
    "v5-connack-refused": (CLIENT5, packet(CONNACK, 0, b"\x00\x87" + props(p_str(0x1F, "not authorized")))),
    "v5-publish-subids": (
        CLIENT5,
        publish(1, "alerts/fall/0042", props(p_vbi(0x0B, 1), p_vbi(0x0B, 300), p_vbi(0x0B, 70000), p_byte(0x01, 0)),
                b"{\"fall\":true}", pid=77),
    ),
    "v5-suback-codes": (CLIENT5, codes_packet(SUBACK, 10, props(p_str(0x1F, "partly")), 0x00, 0x01, 0x02, 0x80, 0x83,
                                              0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)),
    "v5-unsuback-codes": (CLIENT5, codes_packet(UNSUBACK, 12, props(*USERS), 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F,
                                                0x91)),
    "v5-puback-client": (CLIENT5, ack(PUBACK, 2, 0x99, props(p_str(0x1F, "bad payload")))),
    "v5-pingresp": (CLIENT5, packet(PINGRESP, 0, b"")),
    "v5-disconnect-server": (CLIENT5, reason_packet(DISCONNECT, 0x9C, props(p_str(0x1C, "other.example:1883")))),
    "v5-auth-client": (CLIENT5, reason_packet(AUTH, 0x00, props(p_str(0x15, "TOKEN")))),
    "v5-client-session": (
        CLIENT5,
        packet(CONNACK, 0, b"\x00\x00" + props(p_u16(0x22, 8)))
        + codes_packet(SUBACK, 1, NONE, 0x01)
        + publish(0, "alerts/x", props(p_vbi(0x0B, 7)), b"!")
        + codes_packet(UNSUBACK, 2, NONE, 0x00)
        + packet(PINGRESP, 0, b"")
        + reason_packet(DISCONNECT, 0x8B),
    ),
    # ---- one byte away from a rule --------------------------------------
    "v5-bad-duplicate-prop": (SERVER5, publish(0, "t", props(p_u32(0x02, 1), p_u32(0x02, 2)), b"")),
    "v5-bad-disallowed-prop": (SERVER5, publish(0, "t", props(p_u32(0x11, 1)), b"")),
    "v5-bad-unknown-prop": (SERVER5, reason_packet(DISCONNECT, 0x00, props(b"\x05\x00"))),
    "v5-bad-topic-alias-0": (SERVER5, publish(0, "t", props(p_u16(0x23, 0)), b"")),
    "v5-bad-empty-topic-no-alias": (SERVER5, publish(0, "", NONE, b"x")),
    "v5-bad-subid-0": (SERVER5, subscribe(1, props(p_vbi(0x0B, 0)), ("a", 0))),
    "v5-bad-two-subids": (SERVER5, subscribe(1, props(p_vbi(0x0B, 1), p_vbi(0x0B, 2)), ("a", 0))),
    "v5-bad-prop-len-nonminimal": (SERVER5, packet(DISCONNECT, 0, b"\x00\x80\x00")),
    "v5-bad-prop-len-5-bytes": (SERVER5, packet(DISCONNECT, 0, b"\x00\xff\xff\xff\xff\x01")),
    "v5-bad-subid-nonminimal": (SERVER5, subscribe(1, props(b"\x0b\x81\x00"), ("a", 0))),
    "v5-bad-puback-reason": (SERVER5, ack(PUBACK, 1, 0x04)),
    "v5-bad-pubrel-reason": (SERVER5, ack(PUBREL, 1, 0x10)),
    "v5-bad-retain-handling-3": (SERVER5, subscribe(1, NONE, ("a", 0x30))),
    "v5-bad-subscribe-reserved": (SERVER5, subscribe(1, NONE, ("a", 0x40))),
    "v5-bad-auth-no-method": (SERVER5, reason_packet(AUTH, 0x18, props(p_str(0x1F, "x")))),
    "v5-bad-auth-short": (SERVER5, reason_packet(AUTH)),
    "v5-bad-auth-data-no-method": (SERVER5, connect(0x02, props(p_str(0x16, b"d")), "c")),
    "v5-bad-receive-max-0": (SERVER5, connect(0x02, props(p_u16(0x21, 0)), "c")),
    "v5-bad-request-problem-2": (SERVER5, connect(0x02, props(p_byte(0x17, 2)), "c")),
    "v5-bad-will-session-expiry": (SERVER5, connect(0x06, NONE, "c", will=(props(p_u32(0x11, 1)), "w", "m"))),
    "v5-bad-response-topic-wildcard": (SERVER5, publish(0, "t", props(p_str(0x08, "reply/#")), b"")),
    "v5-bad-user-prop-utf8": (SERVER5, publish(0, "t", props(b"\x26" + s(b"\xc0\x80") + s("v")), b"")),
    "v5-bad-payload-format-2": (SERVER5, publish(0, "t", props(p_byte(0x01, 2)), b"")),
    "v5-bad-connack-session-refused": (CLIENT5, packet(CONNACK, 0, b"\x01\x80" + NONE)),
    "v5-bad-connack-max-qos-2": (CLIENT5, packet(CONNACK, 0, b"\x00\x00" + props(p_byte(0x24, 2)))),
    "v5-bad-connack-no-props": (CLIENT5, packet(CONNACK, 0, b"\x00\x00")),
    "v5-bad-suback-reason": (CLIENT5, codes_packet(SUBACK, 1, NONE, 0x11)),
    "v5-bad-unsuback-reason": (CLIENT5, codes_packet(UNSUBACK, 1, NONE, 0x01)),
    "v5-bad-disconnect-reason": (SERVER5, reason_packet(DISCONNECT, 0x84)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (sel, data) in sorted(SEEDS.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([sel]) + data)
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
