"""mqttraw — a raw MQTT 3.1.1 / 5.0 codec and socket client for conformance tests.

Owns: building every control packet of both protocol versions byte for byte
(including MQTT 5 properties, and deliberately malformed variants through the
`raw`/override arguments), parsing every packet a server can send into a
Packet object, and a blocking socket client (Client) whose reads all have
timeouts and which can tell "the server closed the connection" apart from
silence, remembering the DISCONNECT a 5.0 server sent just before closing.

Does not own: any assertion about what a server should do; the conformance
tests (tests/integration/conformance/) make those.

Versions are the protocol level byte: 4 = MQTT 3.1.1, 5 = MQTT 5.0.

Properties are given as a dict {name: value} (names below, e.g.
{"session_expiry_interval": 60, "user_property": [("k", "v"), ("k", "w")]}),
or as a list of (name, value) pairs when order or duplicates matter (a
malformed-packet test can repeat a property that way), or as raw bytes (the
property block without its length prefix; raw bytes inside are sent as is).
Parsed packets carry props as a dict: "user_property" is always a list of
(str, str) pairs in wire order and "subscription_identifier" is always a list
of ints; any other property that appears more than once is listed by name in
Packet.duplicate_props (a server must never send one twice).
"""

import socket
import struct
import time

V311 = 4
V5 = 5

# ---------------------------------------------------------------------------
# packet types

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

TYPE_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK", PUBREC: "PUBREC",
    PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK", PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

# ---------------------------------------------------------------------------
# reason codes (MQTT 5.0 §2.4) and 3.1.1 CONNACK return codes (§3.2.2.3)

RC_SUCCESS = 0x00
RC_GRANTED_QOS1 = 0x01
RC_GRANTED_QOS2 = 0x02
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_MATCHING_SUBSCRIBERS = 0x10
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_CONTINUE_AUTH = 0x18
RC_REAUTHENTICATE = 0x19
RC_UNSPECIFIED = 0x80
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_IMPL_SPECIFIC = 0x83
RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_BAD_USER_OR_PASSWORD = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_SERVER_UNAVAILABLE = 0x88
RC_SERVER_BUSY = 0x89
RC_BANNED = 0x8A
RC_SERVER_SHUTTING_DOWN = 0x8B
RC_BAD_AUTH_METHOD = 0x8C
RC_KEEPALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_PACKET_ID_IN_USE = 0x91
RC_PACKET_ID_NOT_FOUND = 0x92
RC_RECEIVE_MAX_EXCEEDED = 0x93
RC_TOPIC_ALIAS_INVALID = 0x94
RC_PACKET_TOO_LARGE = 0x95
RC_MESSAGE_RATE_TOO_HIGH = 0x96
RC_QUOTA_EXCEEDED = 0x97
RC_ADMINISTRATIVE_ACTION = 0x98
RC_PAYLOAD_FORMAT_INVALID = 0x99
RC_RETAIN_NOT_SUPPORTED = 0x9A
RC_QOS_NOT_SUPPORTED = 0x9B
RC_USE_ANOTHER_SERVER = 0x9C
RC_SERVER_MOVED = 0x9D
RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E
RC_CONNECTION_RATE_EXCEEDED = 0x9F
RC_MAX_CONNECT_TIME = 0xA0
RC_SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1
RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2

# 3.1.1 CONNACK return codes
CONNACK_ACCEPTED = 0
CONNACK_BAD_PROTOCOL_LEVEL = 1
CONNACK_ID_REJECTED = 2
CONNACK_SERVER_UNAVAILABLE = 3
CONNACK_BAD_USER_OR_PASSWORD = 4
CONNACK_NOT_AUTHORIZED = 5

SUBACK_FAILURE = 0x80  # 3.1.1

# ---------------------------------------------------------------------------
# properties (MQTT 5.0 §2.2.2.2): name -> (identifier, type)

PROPERTIES = {
    "payload_format_indicator": (0x01, "byte"),
    "message_expiry_interval": (0x02, "u32"),
    "content_type": (0x03, "str"),
    "response_topic": (0x08, "str"),
    "correlation_data": (0x09, "bin"),
    "subscription_identifier": (0x0B, "varint"),
    "session_expiry_interval": (0x11, "u32"),
    "assigned_client_identifier": (0x12, "str"),
    "server_keep_alive": (0x13, "u16"),
    "authentication_method": (0x15, "str"),
    "authentication_data": (0x16, "bin"),
    "request_problem_information": (0x17, "byte"),
    "will_delay_interval": (0x18, "u32"),
    "request_response_information": (0x19, "byte"),
    "response_information": (0x1A, "str"),
    "server_reference": (0x1C, "str"),
    "reason_string": (0x1F, "str"),
    "receive_maximum": (0x21, "u16"),
    "topic_alias_maximum": (0x22, "u16"),
    "topic_alias": (0x23, "u16"),
    "maximum_qos": (0x24, "byte"),
    "retain_available": (0x25, "byte"),
    "user_property": (0x26, "pair"),
    "maximum_packet_size": (0x27, "u32"),
    "wildcard_subscription_available": (0x28, "byte"),
    "subscription_identifier_available": (0x29, "byte"),
    "shared_subscription_available": (0x2A, "byte"),
}
PROPERTY_BY_ID = {ident: (name, typ) for name, (ident, typ) in PROPERTIES.items()}
MULTI_PROPS = ("user_property", "subscription_identifier")


class MalformedFromServer(Exception):
    """The server sent bytes this codec cannot parse as the packet they claim to be."""


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


# ---------------------------------------------------------------------------
# primitive encoders


def enc_varint(n):
    """Variable Byte Integer, minimal encoding (§1.5.5 / §2.2.3)."""
    if n < 0 or n > 268435455:
        raise ValueError("varint out of range: %d" % n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def enc_bin(b):
    """Two-byte length + bytes. str is UTF-8 encoded; bytes pass through
    untouched (so tests can send ill-formed UTF-8)."""
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    return struct.pack(">H", len(b)) + b


enc_str = enc_bin


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def enc_prop_value(typ, value):
    if typ == "byte":
        return bytes([value])
    if typ == "u16":
        return u16(value)
    if typ == "u32":
        return u32(value)
    if typ == "varint":
        return enc_varint(value)
    if typ in ("str", "bin"):
        return enc_bin(value)
    if typ == "pair":
        k, v = value
        return enc_bin(k) + enc_bin(v)
    raise ValueError(typ)


def prop_items(props):
    """Normalises props (dict or list of pairs) to a list of (name, value),
    expanding the multi-valued properties."""
    if not props:
        return []
    items = list(props.items()) if isinstance(props, dict) else list(props)
    out = []
    for name, value in items:
        if name in MULTI_PROPS and isinstance(value, (list, tuple)) and \
                not (name == "user_property" and len(value) == 2 and isinstance(value[0], (str, bytes))
                     and not isinstance(value[1], (list, tuple))):
            out.extend((name, v) for v in value)
        else:
            out.append((name, value))
    return out


def enc_props(props):
    """The property block with its Variable Byte Integer length prefix."""
    if isinstance(props, (bytes, bytearray)):
        body = bytes(props)
    else:
        body = b""
        for name, value in prop_items(props):
            if isinstance(name, int):  # raw identifier: value must be bytes
                body += enc_varint(name) + value
                continue
            ident, typ = PROPERTIES[name]
            body += enc_varint(ident) + enc_prop_value(typ, value)
    return enc_varint(len(body)) + body


def fixed(ptype, flags, body, remaining_length=None):
    """Fixed header + body. remaining_length overrides the encoded length
    (bytes, for deliberately wrong or over-long length fields)."""
    rl = enc_varint(len(body)) if remaining_length is None else remaining_length
    return bytes([(ptype << 4) | (flags & 0x0F)]) + rl + body


# ---------------------------------------------------------------------------
# packet builders (client -> server)


def connect(client_id="", version=V311, clean=True, keepalive=60, props=None, will=None, username=None,
            password=None, proto_name="MQTT", level=None, flags=None, extra=b""):
    """CONNECT. will = {"topic", "payload", "qos", "retain", "props"}.
    flags overrides the computed Connect Flags byte; level overrides the
    protocol level byte (default: version); extra is appended to the body."""
    level = version if level is None else level
    if flags is None:
        flags = 0x02 if clean else 0
        if will is not None:
            flags |= 0x04 | ((will.get("qos", 0) & 3) << 3) | (0x20 if will.get("retain") else 0)
        if username is not None:
            flags |= 0x80
        if password is not None:
            flags |= 0x40
    body = enc_str(proto_name) + bytes([level, flags]) + u16(keepalive)
    if version == V5:
        body += enc_props(props)
    body += enc_str(client_id)
    if will is not None:
        if version == V5:
            body += enc_props(will.get("props"))
        body += enc_str(will["topic"])
        body += enc_bin(will.get("payload", b""))
    if username is not None:
        body += enc_str(username)
    if password is not None:
        body += enc_bin(password)
    return fixed(CONNECT, 0, body + extra)


def publish(topic, payload=b"", qos=0, pid=None, retain=False, dup=False, version=V311, props=None, flags=None):
    """PUBLISH. pid is required for QoS > 0 (pass it for QoS 0 too to build
    the malformed variant). flags overrides the fixed-header flags."""
    if isinstance(payload, str):
        payload = payload.encode()
    if flags is None:
        flags = (8 if dup else 0) | ((qos & 3) << 1) | (1 if retain else 0)
    body = enc_str(topic)
    if pid is not None:
        body += u16(pid)
    if version == V5:
        body += enc_props(props)
    return fixed(PUBLISH, flags, body + payload)


def _ack(ptype, default_flags, pid, reason=None, props=None, version=V311, flags=None):
    body = u16(pid)
    if version == V5 and (reason is not None or props):
        body += bytes([reason or 0])
        if props:
            body += enc_props(props)
    return fixed(ptype, default_flags if flags is None else flags, body)


def puback(pid, reason=None, props=None, version=V311, flags=None):
    return _ack(PUBACK, 0, pid, reason, props, version, flags)


def pubrec(pid, reason=None, props=None, version=V311, flags=None):
    return _ack(PUBREC, 0, pid, reason, props, version, flags)


def pubrel(pid, reason=None, props=None, version=V311, flags=None):
    return _ack(PUBREL, 2, pid, reason, props, version, flags)


def pubcomp(pid, reason=None, props=None, version=V311, flags=None):
    return _ack(PUBCOMP, 0, pid, reason, props, version, flags)


def sub_options(opts):
    """Subscription options byte from an int (used as is) or a dict
    {"qos", "nl", "rap", "rh"} (§3.8.3.1)."""
    if isinstance(opts, int):
        return opts
    return (opts.get("qos", 0) & 3) | (4 if opts.get("nl") else 0) | (8 if opts.get("rap") else 0) | \
        ((opts.get("rh", 0) & 3) << 4)


def subscribe(pid, filters, version=V311, props=None, flags=2):
    """SUBSCRIBE. filters: [(filter, qos-or-options)]."""
    body = u16(pid)
    if version == V5:
        body += enc_props(props)
    for f, opts in filters:
        body += enc_str(f) + bytes([sub_options(opts)])
    return fixed(SUBSCRIBE, flags, body)


def unsubscribe(pid, filters, version=V311, props=None, flags=2):
    body = u16(pid)
    if version == V5:
        body += enc_props(props)
    for f in filters:
        body += enc_str(f)
    return fixed(UNSUBSCRIBE, flags, body)


def pingreq(flags=0):
    return fixed(PINGREQ, flags, b"")


def disconnect(reason=None, props=None, version=V311, flags=0):
    body = b""
    if version == V5 and (reason is not None or props):
        body = bytes([reason or 0])
        if props:
            body += enc_props(props)
    return fixed(DISCONNECT, flags, body)


def auth(reason=RC_CONTINUE_AUTH, props=None, flags=0):
    body = bytes([reason])
    if props:
        body += enc_props(props)
    return fixed(AUTH, flags, body)


# ---------------------------------------------------------------------------
# parser


class Packet:
    """One decoded packet. Always: type, flags, body (raw bytes after the
    fixed header), version, props (dict; empty for 3.1.1). Depending on
    the type:
      CONNACK     session_present, reason (3.1.1: the return code)
      PUBLISH     dup, qos, retain, topic, pid (None for QoS 0), payload
      PUBACK/PUBREC/PUBREL/PUBCOMP   pid, reason (0 when omitted)
      SUBACK      pid, reasons (list)
      UNSUBACK    pid, reasons (list; empty for 3.1.1)
      DISCONNECT  reason (0 when omitted)
      AUTH        reason
    """

    def __init__(self, ptype, flags, body, version):
        self.type = ptype
        self.flags = flags
        self.body = bytes(body)
        self.version = version
        self.props = {}
        self.duplicate_props = []
        self.pid = None
        self.reason = None
        self.reasons = None
        self.topic = None
        self.payload = None
        self.qos = None
        self.dup = None
        self.retain = None
        self.session_present = None
        self.size = 1 + len(enc_varint(len(self.body))) + len(self.body)  # on the wire

    @property
    def name(self):
        return TYPE_NAMES.get(self.type, "TYPE%d" % self.type)

    def __repr__(self):
        bits = [self.name]
        if self.type == PUBLISH:
            bits.append("topic=%r q%d%s%s pid=%s payload=%r" % (
                self.topic, self.qos, " dup" if self.dup else "", " retain" if self.retain else "", self.pid,
                self.payload[:60]))
        else:
            if self.pid is not None:
                bits.append("pid=%d" % self.pid)
            if self.session_present is not None:
                bits.append("sp=%d" % self.session_present)
            if self.reason is not None:
                bits.append("reason=0x%02x" % self.reason)
            if self.reasons is not None:
                bits.append("reasons=%s" % ["0x%02x" % r for r in self.reasons])
        if self.props:
            bits.append("props=%r" % self.props)
        return "<%s>" % " ".join(bits)


class _Reader:
    def __init__(self, data):
        self.d = data
        self.i = 0

    def left(self):
        return len(self.d) - self.i

    def take(self, n):
        if self.i + n > len(self.d):
            raise MalformedFromServer("truncated: need %d bytes at %d of %d" % (n, self.i, len(self.d)))
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def varint(self):
        mult, val = 1, 0
        for _ in range(4):
            b = self.byte()
            val += (b & 0x7F) * mult
            if not b & 0x80:
                return val
            mult *= 128
        raise MalformedFromServer("variable byte integer longer than 4 bytes")

    def binary(self):
        return self.take(self.u16())

    def string(self):
        raw = self.binary()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFromServer("ill-formed UTF-8 string from server: %r" % raw)

    def props(self, pkt):
        n = self.varint()
        end = self.i + n
        if end > len(self.d):
            raise MalformedFromServer("property length %d beyond packet end" % n)
        out = {}
        while self.i < end:
            ident = self.varint()
            if ident not in PROPERTY_BY_ID:
                raise MalformedFromServer("unknown property identifier 0x%02x" % ident)
            name, typ = PROPERTY_BY_ID[ident]
            if typ == "byte":
                v = self.byte()
            elif typ == "u16":
                v = self.u16()
            elif typ == "u32":
                v = self.u32()
            elif typ == "varint":
                v = self.varint()
            elif typ == "str":
                v = self.string()
            elif typ == "bin":
                v = self.binary()
            else:
                v = (self.string(), self.string())
            if name in MULTI_PROPS:
                out.setdefault(name, []).append(v)
            else:
                if name in out:
                    pkt.duplicate_props.append(name)
                out[name] = v
        if self.i != end:
            raise MalformedFromServer("property block overran its length")
        return out


def parse(ptype, flags, body, version):
    """Decodes one packet body (after the fixed header)."""
    p = Packet(ptype, flags, body, version)
    r = _Reader(p.body)
    v5 = version == V5
    if ptype == CONNACK:
        ack_flags = r.byte()
        p.session_present = ack_flags & 1
        p.reason = r.byte()
        if v5 and r.left():
            p.props = r.props(p)
    elif ptype == PUBLISH:
        p.dup = bool(flags & 8)
        p.qos = (flags >> 1) & 3
        p.retain = bool(flags & 1)
        p.topic = r.string()
        if p.qos:
            p.pid = r.u16()
        if v5:
            p.props = r.props(p)
        p.payload = r.take(r.left())
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        p.pid = r.u16()
        p.reason = 0
        if v5 and r.left():
            p.reason = r.byte()
            if r.left():
                p.props = r.props(p)
    elif ptype in (SUBACK, UNSUBACK):
        p.pid = r.u16()
        if v5:
            p.props = r.props(p)
        p.reasons = list(r.take(r.left()))
    elif ptype == DISCONNECT:
        p.reason = 0
        if v5 and r.left():
            p.reason = r.byte()
            if r.left():
                p.props = r.props(p)
    elif ptype == AUTH:
        p.reason = 0
        if r.left():
            p.reason = r.byte()
            if r.left():
                p.props = r.props(p)
    elif ptype == PINGRESP:
        pass
    else:
        # CONNECT/SUBSCRIBE/UNSUBSCRIBE/PINGREQ are never sent by a server.
        pass
    if ptype not in (PUBLISH,) and r.left() and ptype not in (SUBACK, UNSUBACK):
        raise MalformedFromServer("%s has %d trailing bytes" % (p.name, r.left()))
    return p


def split_frame(buf):
    """(ptype, flags, body, consumed) for the first whole packet in buf, or
    None when more bytes are needed."""
    if len(buf) < 2:
        return None
    mult, rem, i = 1, 0, 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        rem += (b & 0x7F) * mult
        mult *= 128
        i += 1
        if not b & 0x80:
            break
        if i > 4:
            raise MalformedFromServer("remaining length longer than 4 bytes")
    if len(buf) < i + rem:
        return None
    return buf[0] >> 4, buf[0] & 0x0F, buf[i:i + rem], i + rem


# ---------------------------------------------------------------------------
# the client


def _default_id(prefix="c"):
    _default_id.n += 1
    return "%s%d-%d" % (prefix, _default_id.n, time.monotonic_ns() % 1000000)


_default_id.n = 0


class Client:
    """A blocking MQTT client over a plain TCP socket, for one protocol
    version. Every read has a deadline: read_packet() raises Closed when the
    server closed the connection and socket.timeout on silence. Packets read
    while waiting for something else are kept (self.pending) for later
    expect()/read_packet() calls, in arrival order.

    self.disconnect_packet is the DISCONNECT the server sent (5.0), if any.
    self.sent_packets counts what was sent; self.log records (dir, repr)."""

    def __init__(self, host, port, version=V311, timeout=5.0, client_id=None):
        self.host, self.port = host, port
        self.version = version
        self.client_id = client_id
        self.sock = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.buf = b""
        self.pending = []
        self.closed = False
        self.disconnect_packet = None
        self.connack = None
        self.next_pid = 1
        self.log = []

    # -- bytes -----------------------------------------------------------------
    def send(self, data):
        """Sends raw bytes; raises Closed if the server already closed."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            self.closed = True
            raise Closed("send failed: %s" % e)
        self.log.append((">", data[:1].hex() + "..%d" % len(data)))

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.closed = True
            raise Closed("connection reset")
        except OSError as e:
            if isinstance(e, socket.timeout):
                raise
            self.closed = True
            raise Closed("socket error: %s" % e)
        if not chunk:
            self.closed = True
            raise Closed("EOF")
        self.buf += chunk

    def read_packet(self, timeout=5.0):
        """The next packet (from self.pending first)."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            fr = split_frame(self.buf)
            if fr is not None:
                t, f, body, used = fr
                self.buf = self.buf[used:]
                p = parse(t, f, body, self.version)
                self.log.append(("<", repr(p)))
                if t == DISCONNECT:
                    self.disconnect_packet = p
                return p
            if self.closed:
                raise Closed("closed")
            self._fill(deadline)

    def expect(self, ptype, timeout=5.0, pid=None):
        """Reads until a packet of ptype (and pid, if given) arrives; other
        packets stay queued in order. Raises socket.timeout or Closed (with
        what was seen in the message)."""
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                try:
                    p = self.read_packet(max(0.001, deadline - time.monotonic()))
                except socket.timeout:
                    raise socket.timeout("no %s%s within %.1fs; got meanwhile: %r" % (
                        TYPE_NAMES.get(ptype), "" if pid is None else " pid=%d" % pid, timeout, skipped))
                except Closed as e:
                    raise Closed("closed while waiting for %s (%s); got meanwhile: %r" % (
                        TYPE_NAMES.get(ptype), e, skipped))
                if p.type == ptype and (pid is None or p.pid == pid):
                    return p
                skipped.append(p)
        finally:
            self.pending = skipped + self.pending

    def drain(self, ptype=None):
        """Removes and returns the queued packets (of ptype, if given)."""
        if ptype is None:
            out, self.pending = self.pending, []
            return out
        out = [p for p in self.pending if p.type == ptype]
        self.pending = [p for p in self.pending if p.type != ptype]
        return out

    def wait_closed(self, timeout=3.0):
        """True if the server closes the connection within timeout (packets
        that arrive meanwhile are queued; a DISCONNECT is remembered in
        self.disconnect_packet)."""
        if self.closed and not self.buf:
            return True
        deadline = time.monotonic() + timeout
        got = []
        try:
            while True:
                # Bypass pending: we want to see new traffic only.
                fr = split_frame(self.buf)
                if fr is not None:
                    t, f, body, used = fr
                    self.buf = self.buf[used:]
                    p = parse(t, f, body, self.version)
                    if t == DISCONNECT:
                        self.disconnect_packet = p
                    got.append(p)
                    continue
                if self.closed:
                    return True
                self._fill(deadline)
        except Closed:
            return True
        except socket.timeout:
            return False
        finally:
            self.pending.extend(got)

    def expect_closed(self, timeout=3.0):
        """Asserts the server closes the connection within timeout; returns
        the DISCONNECT it sent first (5.0), or None."""
        assert self.wait_closed(timeout), "server did not close the connection within %.1fs (got %r)" % (
            timeout, self.pending)
        return self.disconnect_packet

    def is_open(self, timeout=2.0):
        """True if the connection still works: a PINGREQ gets its PINGRESP."""
        try:
            self.send(pingreq())
            self.expect(PINGRESP, timeout)
            return True
        except (Closed, socket.timeout):
            return False

    # -- protocol ----------------------------------------------------------------
    def pid(self):
        p = self.next_pid
        self.next_pid = self.next_pid % 65535 + 1
        return p

    def connect(self, client_id=None, clean=True, keepalive=60, props=None, will=None, username=None,
                password=None, check=True, timeout=5.0, version=None, **kw):
        """Sends CONNECT and returns the CONNACK Packet. With check (the
        default) asserts it is a successful CONNACK. version switches the
        protocol this client speaks (and parses) from now on."""
        if version is not None:
            self.version = version
        if client_id is None:
            client_id = self.client_id if self.client_id is not None else _default_id()
        self.client_id = client_id
        self.send(connect(client_id, self.version, clean, keepalive, props, will, username, password, **kw))
        p = self.read_packet(timeout)
        if check:
            assert p.type == CONNACK, "expected CONNACK, got %r" % p
            assert p.reason == 0, "CONNACK refused: %r" % p
        self.connack = p
        return p

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None, pid=None, dup=False, wait=True,
                timeout=5.0):
        """Publishes. With wait, completes the QoS flow and returns the PUBACK
        (QoS 1) or PUBCOMP (QoS 2; the PUBREC is in self.last_pubrec);
        returns the packet id for QoS > 0 without wait, None for QoS 0."""
        if qos and pid is None:
            pid = self.pid()
        self.send(publish(topic, payload, qos, pid if qos else None, retain, dup, self.version, props))
        if not qos:
            return None
        if not wait:
            return pid
        if qos == 1:
            return self.expect(PUBACK, timeout, pid)
        rec = self.expect(PUBREC, timeout, pid)
        self.last_pubrec = rec
        if rec.reason is not None and rec.reason >= 0x80:
            return rec
        self.send(pubrel(pid, version=self.version))
        return self.expect(PUBCOMP, timeout, pid)

    def subscribe(self, filters, props=None, timeout=5.0):
        """filters: [(filter, qos-or-options)] or a single filter string
        (QoS 0... use a list for anything else). Returns the SUBACK."""
        if isinstance(filters, str):
            filters = [(filters, 0)]
        pid = self.pid()
        self.send(subscribe(pid, filters, self.version, props))
        return self.expect(SUBACK, timeout, pid)

    def unsubscribe(self, filters, props=None, timeout=5.0):
        if isinstance(filters, str):
            filters = [filters]
        pid = self.pid()
        self.send(unsubscribe(pid, filters, self.version, props))
        return self.expect(UNSUBACK, timeout, pid)

    def ping(self, timeout=5.0):
        self.send(pingreq())
        return self.expect(PINGRESP, timeout)

    def ack(self, p):
        """Acknowledges an incoming PUBLISH per its QoS (QoS 2: PUBREC, then
        waits for PUBREL and sends PUBCOMP)."""
        if p.qos == 1:
            self.send(puback(p.pid, version=self.version))
        elif p.qos == 2:
            self.send(pubrec(p.pid, version=self.version))
            self.expect(PUBREL, 5.0, p.pid)
            self.send(pubcomp(p.pid, version=self.version))

    def recv_publish(self, timeout=5.0, ack=True):
        """The next incoming PUBLISH; acknowledged unless ack is False."""
        p = self.expect(PUBLISH, timeout)
        if ack:
            self.ack(p)
        return p

    def messages_for(self, duration, ack=True):
        """Every PUBLISH arriving within duration seconds (acknowledged)."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.recv_publish(left, ack))
            except socket.timeout:
                return out

    def publishes_until_ping(self, ack=True, timeout=5.0):
        """Sends PINGREQ and returns every PUBLISH that arrives before the
        PINGRESP (acknowledged): what the server had queued for this client
        when it read the PINGREQ."""
        self.send(pingreq())
        out = []
        deadline = time.monotonic() + timeout
        while True:
            p = self.read_packet(max(0.001, deadline - time.monotonic()))
            if p.type == PINGRESP:
                return out
            if p.type == PUBLISH:
                if ack:
                    self.ack(p)
                out.append(p)
            else:
                self.pending.append(p)

    def disconnect(self, reason=None, props=None):
        try:
            self.send(disconnect(reason, props, self.version))
        except Closed:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def abort(self):
        """Closes with a TCP RST (no DISCONNECT, no FIN handshake)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
