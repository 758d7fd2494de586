"""Interoperability with third-party MQTT clients and the HTTP publish endpoint.

Each test drives a live server with a real client implementation:
  - Debian's mosquitto_pub / mosquitto_sub (libmosquitto 2.0) speaking MQTT
    3.1 (-V 31), 3.1.1 (-V 311) and 5.0 (-V 5): QoS 0/1/2 round trips,
    retained messages, wills, persistent sessions, 5.0 user properties,
    shared subscriptions, telemetry ingest;
  - paho-mqtt (Debian's 1.6.x) as 3.1.1 and 5.0 clients: QoS 2 exactly once,
    session resumption, 5.0 properties, subscription identifiers, no local,
    retain handling, retain as published, message expiry, client topic
    aliases, and MQTT over WebSocket;
  - a raw RFC 6455 client: the upgrade answer, MQTT packets split across and
    packed into frames, ping/pong, the close handshake, refused frames;
  - MQTT.js (npm "mqtt" 5.x, run by node; tests/integration/js/) over TCP and
    WebSocket as a 3.1.1 and a 5.0 client (5.0: topic aliases both ways);
  - the HTTP publish endpoint (POST /topics/<url-encoded topic>?qos=0|1, with
    urllib/http.client and curl).

Cross-check: with INTEROP_BROKER=mosquitto the tests that do not depend on
vigil-only features (the telemetry stream, the HTTP endpoint) run against
Debian's /usr/sbin/mosquitto instead (a TCP and a WebSocket listener), which
is how a failure is shown to be the server's fault rather than the test's
(checks mosquitto 2.0.11 itself gets wrong are skipped there, with the
reason, by the mosquitto_deviates marker):

    INTEROP_BROKER=mosquitto /usr/bin/python3 -m pytest -q tests/integration/test_interop.py

The MQTT.js tests need `npm ci` at the repository root (package.json there);
without node they are skipped, without node_modules they fail.
"""

import collections
import http.client
import itertools
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from vigiltest import (ALL_SERVERS, ROOT, TELEMETRY_TOPIC, dumps, free_port, serve_supports, telemetry,
                       wait_until)

BROKER_KIND = os.environ.get("INTEROP_BROKER", "vigil").strip().lower()
MOSQUITTO = os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto")
if BROKER_KIND not in ("vigil", "mosquitto"):
    raise RuntimeError("INTEROP_BROKER must be 'vigil' or 'mosquitto', not %r" % BROKER_KIND)

vigil_only = pytest.mark.skipif(BROKER_KIND != "vigil", reason="vigil-only feature (INTEROP_BROKER=%s)" % BROKER_KIND)


def mosquitto_deviates(reason):
    """Skips a check against mosquitto 2.0.11, which does not follow the rule."""
    return pytest.mark.skipif(BROKER_KIND == "mosquitto", reason="mosquitto 2.0.11 deviates: " + reason)


# Every test is short; a hang is a failure well before the suite's default.
pytestmark = pytest.mark.deadline(30)

JS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js", "mqttjs_roundtrip.mjs")

# mosquitto client -V values: MQTT 3.1, 3.1.1, 5.0
MOSQ_VERSIONS = ["31", "311", "5"]

_ids = itertools.count(1)


def uid(prefix):
    """A client id / topic element unique within this run, at most 23
    characters (the MQTT 3.1 limit), so it works for every version."""
    s = "%s-%x-%x" % (prefix, os.getpid() & 0xFFFFF, next(_ids))
    assert len(s) <= 23, s
    return s


# ---------------------------------------------------------------------------
# the broker under test: vigil (default) or mosquitto (INTEROP_BROKER=mosquitto)


class MosquittoBroker:
    """/usr/sbin/mosquitto with a TCP listener and a WebSocket listener."""

    kind = "mosquitto"

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.ws_port = free_port()
        self.http_port = None
        self.proc = None
        self.log = os.path.join(self.workdir, "mosquitto.log")
        ALL_SERVERS.append(self)

    def start(self, timeout=10.0):
        conf = os.path.join(self.workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "user root",
                "per_listener_settings false",
                "allow_anonymous true",
                "persistence false",
                "sys_interval 0",
                "set_tcp_nodelay true",
                "log_dest stderr",
                "log_type all",
                "listener %d %s" % (self.port, self.host),
                "listener %d %s" % (self.ws_port, self.host),
                "protocol websockets",
            ]) + "\n")
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir)
        deadline = time.monotonic() + timeout
        for port in (self.port, self.ws_port):
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError("mosquitto exited during startup:\n" + self.log_text())
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() >= deadline:
                        raise AssertionError("mosquitto did not accept on %d:\n%s" % (port, self.log_text()))
                    time.sleep(0.02)
        return self

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def broker(request, tmp_path):
    """The server under test as an object with host, port and ws_port."""
    if BROKER_KIND == "mosquitto":
        m = MosquittoBroker(tmp_path)
        try:
            yield m.start()
        finally:
            m.cleanup()
    else:
        yield request.getfixturevalue("vigil")


def require_ws(b):
    if BROKER_KIND == "vigil":
        assert serve_supports("--ws-listen"), \
            "this build of vigil has no WebSocket listener (`vigil serve --help` does not list --ws-listen)"
    assert getattr(b, "ws_port", None), "the server object has no ws_port"


def require_http(v):
    assert serve_supports("--http-listen"), \
        "this build of vigil has no HTTP publish listener (`vigil serve --help` does not list --http-listen)"
    assert getattr(v, "http_port", None), "the server object has no http_port"


# ---------------------------------------------------------------------------
# mosquitto_sub / mosquitto_pub


Msg = collections.namedtuple("Msg", "qos retain topic payload user_props response_topic content_type sub_id")


class MSub:
    """`mosquitto_sub -d -V VERSION -F <tab-separated fields>` in the
    background. -d makes it print "received SUBACK", which tells when the
    subscription is in place; every message becomes a Msg (the 5.0 property
    fields are empty for other versions and for absent properties)."""

    FMT = "MSG\t%q\t%r\t%t\t%p\t%P\t%R\t%C\t%S"

    def __init__(self, b, topics, version, qos=1, client_id=None, extra=()):
        self.client_id = client_id or uid("ms")
        args = ["stdbuf", "-oL", "mosquitto_sub", "-h", b.host, "-p", str(b.port), "-V", version,
                "-q", str(qos), "-d", "-k", "30", "-i", self.client_id, "-F", self.FMT]
        for t in topics:
            args += ["-t", t]
        args += list(extra)
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.lock = threading.Lock()
        self.lines = []
        self.messages = []
        self.subacked = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.lines.append(line)
                if line.startswith("MSG\t"):
                    f = line.split("\t")
                    if len(f) == 9:
                        self.messages.append(Msg(int(f[1]), f[2] == "1", *f[3:]))
            if "received SUBACK" in line:
                self.subacked.set()

    def output(self):
        with self.lock:
            return "$ %s\n%s" % (" ".join(self.args), "\n".join(self.lines))

    def wait_subscribed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.subacked.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                self.reader.join(1)
                raise AssertionError("mosquitto_sub got no SUBACK (exit status %s); output:\n%s"
                                     % (self.proc.poll(), self.output()))
        return self

    def wait_count(self, n, timeout=5.0):
        wait_until(lambda: len(self.snapshot()) >= n, timeout)
        return self.snapshot()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        self.reader.join(3)

    def stop(self):
        """SIGTERM: mosquitto_sub disconnects cleanly (sends DISCONNECT)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        self.reader.join(3)


@pytest.fixture
def msub():
    subs = []

    def make(b, topics, version, qos=1, client_id=None, extra=(), wait=True):
        s = MSub(b, topics, version, qos=qos, client_id=client_id, extra=extra)
        subs.append(s)
        if wait:
            s.wait_subscribed()
        return s

    yield make
    for s in subs:
        s.stop()


def mpub(b, version, topic, message=None, qos=1, retain=False, extra=(), client_id=None, lines=None, timeout=8):
    """Runs mosquitto_pub (-d); asserts it exits 0 (for QoS > 0 that means the
    handshake completed). lines: publish each as a message (-l)."""
    args = ["mosquitto_pub", "-h", b.host, "-p", str(b.port), "-V", version, "-q", str(qos), "-t", topic, "-d",
            "-i", client_id or uid("mp")]
    if retain:
        args.append("-r")
    if lines is not None:
        args.append("-l")
    elif message is None:
        args.append("-n")
    else:
        args += ["-m", message]
    args += list(extra)
    stdin = ("".join(l + "\n" for l in lines)).encode() if lines is not None else None
    try:
        r = subprocess.run(args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           stdin=None if lines is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("mosquitto_pub did not finish within %ss: %s\n%s"
                             % (timeout, " ".join(args), (e.stdout or b"").decode(errors="replace")))
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, "mosquitto_pub exited %d: %s\n%s" % (r.returncode, " ".join(args), out)
    return out


def msub_once(b, version, topic, count, qos=1, client_id=None, extra=(), wait_s=4):
    """A foreground mosquitto_sub that exits after count messages (or wait_s
    seconds); returns (messages, output)."""
    args = ["mosquitto_sub", "-h", b.host, "-p", str(b.port), "-V", version, "-q", str(qos), "-t", topic, "-d",
            "-i", client_id or uid("ms"), "-C", str(count), "-W", str(wait_s), "-F", MSub.FMT] + list(extra)
    try:
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           timeout=wait_s + 4)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("mosquitto_sub did not finish: %s\n%s" % (" ".join(args),
                                                                       (e.stdout or b"").decode(errors="replace")))
    out = r.stdout.decode(errors="replace")
    msgs = []
    for line in out.splitlines():
        if line.startswith("MSG\t"):
            f = line.split("\t")
            if len(f) == 9:
                msgs.append(Msg(int(f[1]), f[2] == "1", *f[3:]))
    return msgs, "$ %s\n(exit %d)\n%s" % (" ".join(args), r.returncode, out)


# ---------------------------------------------------------------------------
# mosquitto clients


@pytest.mark.parametrize("version", MOSQ_VERSIONS)
def test_mosquitto_qos_roundtrip(broker, msub, version):
    base = uid("rt")
    sub = msub(broker, [base + "/#"], version, qos=2)
    for q in (0, 1, 2):
        out = mpub(broker, version, "%s/q%d" % (base, q), "m%d" % q, qos=q)
        if q == 2:
            assert "received PUBREC" in out and "received PUBCOMP" in out, out
    got = sub.wait_count(3, 5)
    time.sleep(0.3)  # a duplicate would arrive by now
    got = sub.snapshot()
    assert sorted((m.topic, m.payload, m.qos) for m in got) == [
        ("%s/q%d" % (base, q), "m%d" % q, q) for q in (0, 1, 2)], sub.output()
    assert not any(m.retain for m in got), got


@pytest.mark.parametrize("version", MOSQ_VERSIONS)
def test_mosquitto_retained_to_later_subscriber(broker, msub, version):
    topic = uid("ret") + "/t"
    mpub(broker, version, topic, "kept", qos=1, retain=True)
    msgs, out = msub_once(broker, version, topic, 1, qos=1)
    assert [(m.topic, m.payload, m.retain, m.qos) for m in msgs] == [(topic, "kept", True, 1)], out
    # Live delivery of a non-retained publish to an existing subscriber: retain 0.
    live = msub(broker, [topic], version, qos=1)
    first = live.wait_count(1, 5)
    assert [(m.payload, m.retain) for m in first] == [("kept", True)], live.output()
    mpub(broker, version, topic, "live", qos=1)
    got = live.wait_count(2, 5)
    assert [(m.payload, m.retain) for m in got] == [("kept", True), ("live", False)], live.output()
    # An empty retained publish clears it: a new subscriber gets nothing.
    mpub(broker, version, topic, None, qos=1, retain=True)
    msgs, out = msub_once(broker, version, topic, 1, qos=1, wait_s=1)
    assert msgs == [], "retained message not cleared by an empty retained publish:\n" + out


@pytest.mark.parametrize("version", MOSQ_VERSIONS)
def test_mosquitto_will_on_sigkill_only(broker, msub, version):
    base = uid("will")
    watcher = msub(broker, [base + "/#"], version, qos=1)
    doomed = msub(broker, [base + "/x"], version, qos=1,
                  extra=["--will-topic", base + "/w1", "--will-payload", "gone-1", "--will-qos", "1"])
    # -C 1: exits normally after one message, with a DISCONNECT (reason code
    # 0 in 5.0; on SIGTERM mosquitto_sub -V 5 would send 0x04, "with will").
    polite = msub(broker, [base + "/x"], version, qos=1,
                  extra=["-C", "1", "--will-topic", base + "/w2", "--will-payload", "gone-2", "--will-qos", "1"])
    doomed.kill9()
    got = watcher.wait_count(1, 5)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(base + "/w1", "gone-1", 1)], watcher.output()
    # A clean DISCONNECT discards the will (3.1.1 §3.14.4, 5.0 §3.1.2.5).
    mpub(broker, version, base + "/x", "bye", qos=1)
    try:
        polite.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError("mosquitto_sub -C 1 did not exit:\n" + polite.output())
    polite.reader.join(3)
    assert "sending DISCONNECT" in polite.output(), polite.output()
    time.sleep(0.5)
    assert [m.topic for m in watcher.snapshot()] == [base + "/w1", base + "/x"], watcher.output()


@pytest.mark.parametrize("version", MOSQ_VERSIONS)
def test_mosquitto_persistent_session(broker, version):
    cid = uid("ps")
    topic = cid + "/t"
    expiry = ["-x", "60"] if version == "5" else []
    # Subscribe with a persistent session, exit as soon as the SUBACK is in (-E).
    msgs, out = msub_once(broker, version, topic, 1, qos=1, client_id=cid, extra=["-c", "-E"] + expiry)
    assert "received SUBACK" in out, out
    mpub(broker, version, topic, lines=["off-1", "off-2", "off-3"], qos=1)
    # Reconnect with the same id, no clean session: the queued messages arrive.
    msgs, out = msub_once(broker, version, topic, 3, qos=1, client_id=cid, extra=["-c"] + expiry)
    assert "received CONNACK (0)" in out, out
    assert [m.payload for m in msgs] == ["off-1", "off-2", "off-3"], out
    assert all(m.qos == 1 for m in msgs), out


def test_mosquitto_v5_session_expiry_zero_not_kept(broker):
    """Control for the test above: -V 5 with -c but session expiry 0 keeps
    nothing after the disconnect."""
    cid = uid("ps0")
    topic = cid + "/t"
    _, out = msub_once(broker, "5", topic, 1, qos=1, client_id=cid, extra=["-c", "-E", "-x", "0"])
    assert "received SUBACK" in out, out
    mpub(broker, "5", topic, "lost", qos=1)
    msgs, out = msub_once(broker, "5", topic + "/other", 1, qos=1, client_id=cid, extra=["-c", "-x", "0"], wait_s=1)
    assert msgs == [], "a session with expiry 0 kept its subscription/queue:\n" + out


def test_mosquitto_v5_user_properties(broker, msub):
    topic = uid("up") + "/t"
    v5 = msub(broker, [topic], "5", qos=1)
    v311 = msub(broker, [topic], "311", qos=1)
    mpub(broker, "5", topic, "with-props", qos=1, extra=[
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "user-property", "k1", "v3",  # duplicate keys are allowed, order kept
        "-D", "publish", "response-topic", topic + "/reply",
        "-D", "publish", "content-type", "text/plain"])
    got = v5.wait_count(1, 5)
    assert len(got) == 1, v5.output()
    m = got[0]
    assert m.payload == "with-props", v5.output()
    assert m.user_props == "k1:v1 k2:v2 k1:v3", v5.output()
    assert m.response_topic == topic + "/reply", v5.output()
    assert m.content_type == "text/plain", v5.output()
    # The 3.1.1 subscriber gets the same message, without properties.
    got = v311.wait_count(1, 5)
    assert [(x.topic, x.payload) for x in got] == [(topic, "with-props")], v311.output()


def test_mosquitto_v5_shared_subscription(broker, msub):
    base = uid("sh")
    topic = base + "/t"
    members = [msub(broker, ["$share/g%s/%s" % (base, topic)], "5", qos=1) for _ in range(2)]
    plain = msub(broker, [topic], "5", qos=1)
    payloads = ["s%02d" % i for i in range(10)]
    mpub(broker, "5", topic, lines=payloads, qos=1)
    assert sorted(m.payload for m in plain.wait_count(10, 5)) == payloads, plain.output()
    wait_until(lambda: sum(len(s.snapshot()) for s in members) >= 10, 5)
    time.sleep(0.3)
    got = [m.payload for s in members for m in s.snapshot()]
    assert sorted(got) == payloads, "each message must go to exactly one group member; got %r\n%s\n%s" % (
        got, members[0].output(), members[1].output())
    for s in members:
        assert all(m.topic == topic for m in s.snapshot()), s.output()


@vigil_only
@pytest.mark.parametrize("version", MOSQ_VERSIONS)
def test_mosquitto_telemetry_reaches_stream(broker, version):
    dev = uid("tel" + version)
    event = telemetry(dev, 77, steps=5)
    # 5.0 user properties are carried into the telemetry record.
    extra = ["-D", "publish", "user-property", "src", "mosquitto_pub",
             "-D", "publish", "user-property", "fw", "1.2"] if version == "5" else []
    mpub(broker, version, TELEMETRY_TOPIC, dumps(event), qos=1, extra=extra)
    # mosquitto_pub has exited after the PUBACK: the record is committed.
    recs = [r for r in broker.stream_tail("telemetry") if r.get("key") == dev]
    assert len(recs) == 1, "expected one telemetry record for %s, got %r" % (dev, recs)
    assert recs[0]["data"] == event, recs[0]
    if version == "5":
        assert recs[0].get("userProperties") == [["src", "mosquitto_pub"], ["fw", "1.2"]], recs[0]
    else:
        assert "userProperties" not in recs[0], recs[0]


# ---------------------------------------------------------------------------
# paho-mqtt


def _paho():
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
    return mqtt, PacketTypes, Properties, SubscribeOptions


PMsg = collections.namedtuple("PMsg", "topic payload qos retain dup props")


def _rc(rc):
    return getattr(rc, "value", rc)


def _props_dict(p):
    """A paho Properties object -> {name: value} of the properties present."""
    if p is None:
        return {}
    out = {}
    for name in ("PayloadFormatIndicator", "MessageExpiryInterval", "ContentType", "ResponseTopic",
                 "CorrelationData", "SubscriptionIdentifier", "TopicAlias", "UserProperty"):
        if hasattr(p, name):
            v = getattr(p, name)
            if name == "SubscriptionIdentifier" and not isinstance(v, list):
                v = [v]
            if name == "UserProperty":
                v = [tuple(x) for x in v]
            out[name] = v
    return out


class Paho:
    """A paho client with its network loop in a thread and blocking helpers
    (every wait has a timeout). version 4 = MQTT 3.1.1, 5 = MQTT 5.0."""

    def __init__(self, b, client_id=None, version=4, clean=True, session_expiry=None, transport="tcp",
                 ws_path="/mqtt"):
        mqtt, PacketTypes, Properties, _ = _paho()
        self.b = b
        self.version = version
        self.client_id = client_id or uid("pa")
        self.clean = clean
        self.session_expiry = session_expiry
        self.transport = transport
        kwargs = {"client_id": self.client_id, "protocol": mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311,
                  "transport": transport}
        if version != 5:
            kwargs["clean_session"] = clean
        if hasattr(mqtt, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION1
        self.c = mqtt.Client(**kwargs)
        if transport == "websockets":
            self.c.ws_set_options(path=ws_path)
        self.msgs = []
        self.lock = threading.Lock()
        self.connack = queue.Queue()
        self.subacks = {}
        self.disconnects = []
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = lambda c, u, rc, *a: self.disconnects.append(_rc(rc))
        self.started = False

    def _on_connect(self, c, u, flags, rc, *props):
        self.connack.put((flags.get("session present", 0), _rc(rc)))

    def _on_message(self, c, u, m):
        with self.lock:
            self.msgs.append(PMsg(m.topic, m.payload, m.qos, bool(m.retain), bool(m.dup),
                                  _props_dict(getattr(m, "properties", None))))

    def _on_subscribe(self, c, u, mid, granted, *props):
        self.subacks[mid] = [_rc(g) for g in granted]

    def connect(self, timeout=5.0):
        """Connects; returns session_present. Asserts the CONNACK accepted."""
        mqtt, PacketTypes, Properties, _ = _paho()
        port = self.b.ws_port if self.transport == "websockets" else self.b.port
        if self.version == 5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            self.c.connect(self.b.host, port, keepalive=30, clean_start=self.clean, properties=props)
        else:
            self.c.connect(self.b.host, port, keepalive=30)
        self.c.loop_start()
        self.started = True
        try:
            present, rc = self.connack.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("paho %s: no CONNACK within %ss" % (self.client_id, timeout))
        assert rc == 0, "paho %s: CONNACK refused with %r" % (self.client_id, rc)
        return present

    def subscribe(self, topic, qos=1, timeout=5.0, **v5):
        """v5 keywords: no_local, retain_as_published, retain_handling, sub_id."""
        mqtt, PacketTypes, Properties, SubscribeOptions = _paho()
        if self.version == 5:
            opts = SubscribeOptions(qos=qos, noLocal=v5.get("no_local", False),
                                    retainAsPublished=v5.get("retain_as_published", False),
                                    retainHandling=v5.get("retain_handling", 0))
            props = None
            if v5.get("sub_id") is not None:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = v5["sub_id"]
            rc, mid = self.c.subscribe(topic, options=opts, properties=props)
        else:
            assert not v5, "MQTT 5 subscribe options on a 3.1.1 client"
            rc, mid = self.c.subscribe(topic, qos=qos)
        assert rc == 0, "paho subscribe failed locally: %r" % rc
        assert wait_until(lambda: mid in self.subacks, timeout), "paho %s: no SUBACK for %s" % (self.client_id, topic)
        return self.subacks[mid]

    def publish(self, topic, payload, qos=0, retain=False, props=None, timeout=5.0):
        """props: {paho property name: value} (5.0 only). Waits until the
        handshake for the QoS completed."""
        mqtt, PacketTypes, Properties, _ = _paho()
        p = None
        if props:
            p = Properties(PacketTypes.PUBLISH)
            for k, v in props.items():
                setattr(p, k, v)
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=p)
        assert info.rc == 0, "paho publish failed locally: %r" % info.rc
        assert wait_until(info.is_published, timeout), \
            "paho %s: publish of %r (QoS %d) not acknowledged within %ss" % (self.client_id, topic, qos, timeout)
        return info.mid

    def wait_count(self, n, timeout=5.0):
        wait_until(lambda: len(self.snapshot()) >= n, timeout)
        return self.snapshot()

    def snapshot(self):
        with self.lock:
            return list(self.msgs)

    def disconnect(self):
        if self.started:
            self.c.disconnect()
            self.c.loop_stop()
            self.started = False

    def close(self):
        try:
            self.disconnect()
        except Exception:
            pass


@pytest.fixture
def paho():
    clients = []

    def make(b, **kw):
        p = Paho(b, **kw)
        clients.append(p)
        return p

    yield make
    for p in clients:
        p.close()


def _connected(paho, b, **kw):
    p = paho(b, **kw)
    p.connect()
    return p


@pytest.mark.parametrize("pub_v,sub_v", [(4, 4), (5, 5), (4, 5), (5, 4)], ids=["311-311", "5-5", "311-5", "5-311"])
def test_paho_qos2_exactly_once(broker, paho, pub_v, sub_v):
    topic = uid("eo") + "/t"
    sub = _connected(paho, broker, version=sub_v)
    assert sub.subscribe(topic, qos=2) == [2]
    pub = _connected(paho, broker, version=pub_v)
    payloads = [b"e%03d" % i for i in range(30)]
    infos = [pub.c.publish(topic, p, qos=2) for p in payloads]  # pipelined, not one at a time
    assert wait_until(lambda: all(i.is_published() for i in infos), 5), "publisher's QoS 2 flows did not complete"
    sub.wait_count(len(payloads), 5)
    time.sleep(0.3)
    got = sub.snapshot()
    counts = collections.Counter(m.payload for m in got)
    assert counts == collections.Counter(payloads), \
        "QoS 2 must deliver each message exactly once; missing %r, extra %r" % (
            sorted(set(payloads) - set(counts)), {k: v for k, v in counts.items() if v != 1})
    assert all(m.qos == 2 and m.topic == topic for m in got), got[:3]
    assert [m.payload for m in got] == payloads, "order of one publisher's messages must be kept"


@pytest.mark.parametrize("case", ["v311", "v5"])
def test_paho_session_resumption(broker, paho, case):
    version = 5 if case == "v5" else 4
    cid = uid("pr")
    topic = cid + "/t"
    kw = {"session_expiry": 60} if version == 5 else {}
    s = paho(broker, client_id=cid, version=version, clean=(version == 5), **kw)
    # 3.1.1: clean_session=False from the start; 5.0: clean start + expiry 60.
    s.connect()
    assert s.subscribe(topic, qos=2) == [2]
    s.disconnect()
    pub = _connected(paho, broker, version=version)
    pub.publish(topic, b"off-q1", qos=1)
    pub.publish(topic, b"off-q2", qos=2)
    pub.publish(topic, b"off-q0", qos=0)  # QoS 0 may be queued or dropped for an offline session
    again = paho(broker, client_id=cid, version=version, clean=False, **kw)
    present = again.connect()
    assert present == 1, "CONNACK session present must be 1 when resuming"
    got = again.wait_count(2, 5)
    time.sleep(0.2)
    got = again.snapshot()
    queued = [(m.payload, m.qos) for m in got if m.payload != b"off-q0"]
    assert queued == [(b"off-q1", 1), (b"off-q2", 2)], got
    # The subscription itself survived too: a live publish arrives without resubscribing.
    pub.publish(topic, b"live", qos=1)
    assert wait_until(lambda: any(m.payload == b"live" for m in again.snapshot()), 5), again.snapshot()


def test_paho_v5_expiry_zero_session_discarded(broker, paho):
    cid = uid("pz")
    topic = cid + "/t"
    s = paho(broker, client_id=cid, version=5, clean=True, session_expiry=0)
    s.connect()
    s.subscribe(topic, qos=1)
    s.disconnect()
    pub = _connected(paho, broker, version=5)
    pub.publish(topic, b"lost", qos=1)
    again = paho(broker, client_id=cid, version=5, clean=False, session_expiry=0)
    assert again.connect() == 0, "a session with expiry 0 must end at disconnect (session present 0)"
    time.sleep(0.4)
    assert again.snapshot() == []


def test_paho_v5_message_expiry_while_offline(broker, paho):
    """A message whose expiry interval passes while the subscriber's session
    is offline is not delivered on resumption; one that has time left is,
    with the remaining lifetime (5.0 §3.3.2.3.3)."""
    cid = uid("me")
    topic = cid + "/t"
    s = paho(broker, client_id=cid, version=5, clean=True, session_expiry=60)
    s.connect()
    s.subscribe(topic, qos=1)
    s.disconnect()
    pub = _connected(paho, broker, version=5)
    pub.publish(topic, b"short", qos=1, props={"MessageExpiryInterval": 1})
    pub.publish(topic, b"long", qos=1, props={"MessageExpiryInterval": 100})
    time.sleep(2.1)
    again = paho(broker, client_id=cid, version=5, clean=False, session_expiry=60)
    assert again.connect() == 1
    got = again.wait_count(1, 5)
    time.sleep(0.3)
    got = again.snapshot()
    assert [m.payload for m in got] == [b"long"], got
    assert 90 <= got[0].props.get("MessageExpiryInterval", -1) <= 98, got[0].props


def test_paho_v5_properties_intact(broker, paho):
    topic = uid("pp") + "/t"
    sub5 = _connected(paho, broker, version=5)
    sub5.subscribe(topic, qos=1)
    sub4 = _connected(paho, broker, version=4)
    sub4.subscribe(topic, qos=1)
    pub = _connected(paho, broker, version=5)
    props = {
        "ResponseTopic": topic + "/reply",
        "CorrelationData": b"\x00\x01corr\xfe\xff",
        "UserProperty": [("a", "1"), ("b", "two"), ("a", "3"), ("\u00e9", "\u263a")],
        "ContentType": "application/json; charset=utf-8",
        "MessageExpiryInterval": 120,
        "PayloadFormatIndicator": 1,
    }
    payload = b'{"x":1}'
    pub.publish(topic, payload, qos=1, retain=True, props=props)

    def check(m, what, retained):
        assert m.payload == payload, (what, m)
        assert m.retain == retained, (what, m)
        p = m.props
        assert p.get("ResponseTopic") == props["ResponseTopic"], (what, p)
        assert p.get("CorrelationData") == props["CorrelationData"], (what, p)
        assert p.get("UserProperty") == props["UserProperty"], (what, "user properties (order kept)", p)
        assert p.get("ContentType") == props["ContentType"], (what, p)
        assert p.get("PayloadFormatIndicator") == 1, (what, p)
        # The server forwards the remaining lifetime (5.0 §3.3.2.3.3).
        assert 110 <= p.get("MessageExpiryInterval", -1) <= 120, (what, p)
        assert "TopicAlias" not in p, (what, "no alias to a client that allows none", p)

    got = sub5.wait_count(1, 5)
    assert len(got) == 1, got
    check(got[0], "live delivery", False)
    got4 = sub4.wait_count(1, 5)
    assert [(m.topic, m.payload) for m in got4] == [(topic, payload)], got4
    # The retained copy keeps its properties too.
    late = _connected(paho, broker, version=5)
    late.subscribe(topic, qos=1)
    got = late.wait_count(1, 5)
    assert len(got) == 1, got
    check(got[0], "retained delivery", True)
    pub.publish(topic, b"", qos=1, retain=True)  # clear


def test_paho_v5_subscription_identifiers(broker, paho):
    base = uid("si")
    sub = _connected(paho, broker, version=5)
    sub.subscribe(base + "/#", qos=1, sub_id=42)
    sub.subscribe(base + "/+/x", qos=1, sub_id=1000000)  # a multi-byte variable integer
    sub.subscribe(base + "/none", qos=1)  # no identifier
    pub = _connected(paho, broker, version=4)
    pub.publish(base + "/a/x", b"both", qos=1)
    pub.publish(base + "/a/y", b"hash-only", qos=1)
    pub.publish(base + "/none", b"hash-and-none", qos=1)
    sub.wait_count(3, 5)
    time.sleep(0.3)
    got = sub.snapshot()
    by = collections.defaultdict(list)
    for m in got:
        by[m.payload].append(sorted(m.props.get("SubscriptionIdentifier", [])))
    # One copy carrying every matching identifier, or one copy per
    # subscription each with its own (5.0 §3.3.4).
    assert sorted(by[b"both"]) in ([[42, 1000000]], [[42], [1000000]]), dict(by)
    assert by[b"hash-only"] == [[42]], dict(by)
    # "/none" matches base/# (id 42) and base/none (no id).
    assert sorted(by[b"hash-and-none"]) in ([[42]], [[], [42]]), dict(by)


def test_paho_v5_no_local(broker, paho):
    topic = uid("nl") + "/t"
    a = _connected(paho, broker, version=5)
    a.subscribe(topic, qos=1, no_local=True)
    b = _connected(paho, broker, version=5)
    b.subscribe(topic, qos=1)
    a.publish(topic, b"from-a", qos=1)
    b.publish(topic, b"from-b", qos=1)
    assert wait_until(lambda: {m.payload for m in b.snapshot()} == {b"from-a", b"from-b"}, 5), b.snapshot()
    assert wait_until(lambda: a.snapshot(), 5), "no_local subscriber got nothing from the other client"
    time.sleep(0.3)
    assert [m.payload for m in a.snapshot()] == [b"from-b"], \
        "a noLocal subscriber must not receive its own publications: %r" % a.snapshot()


def test_paho_v5_retain_handling(broker, paho):
    topic = uid("rh") + "/t"
    pub = _connected(paho, broker, version=5)
    pub.publish(topic, b"kept", qos=1, retain=True)
    subs = {}
    for rh in (0, 1, 2):
        s = _connected(paho, broker, version=5)
        s.subscribe(topic, qos=1, retain_handling=rh)
        s.subscribe(topic, qos=1, retain_handling=rh)  # the same subscription again
        subs[rh] = s
    pub.publish(topic, b"marker", qos=1)
    for s in subs.values():
        assert wait_until(lambda: any(m.payload == b"marker" for m in s.snapshot()), 5), s.snapshot()
    time.sleep(0.2)
    kept = {rh: sum(m.payload == b"kept" for m in s.snapshot()) for rh, s in subs.items()}
    # 0: on every subscribe; 1: only when the subscription is new; 2: never.
    assert kept == {0: 2, 1: 1, 2: 0}, kept
    for s in subs.values():
        assert all(m.retain for m in s.snapshot() if m.payload == b"kept")
    pub.publish(topic, b"", qos=1, retain=True)


def test_paho_v5_retain_as_published(broker, paho):
    topic = uid("rap") + "/t"
    rap = _connected(paho, broker, version=5)
    rap.subscribe(topic, qos=1, retain_as_published=True)
    plain = _connected(paho, broker, version=5)
    plain.subscribe(topic, qos=1)
    pub = _connected(paho, broker, version=5)
    pub.publish(topic, b"r", qos=1, retain=True)
    assert [(m.payload, m.retain) for m in rap.wait_count(1, 5)] == [(b"r", True)]
    assert [(m.payload, m.retain) for m in plain.wait_count(1, 5)] == [(b"r", False)]
    pub.publish(topic, b"", qos=1, retain=True)


def test_paho_v5_client_topic_alias(broker, paho):
    base = uid("ta")
    sub4 = _connected(paho, broker, version=4)
    sub4.subscribe(base + "/#", qos=1)
    sub5 = _connected(paho, broker, version=5)
    sub5.subscribe(base + "/#", qos=1)
    pub = _connected(paho, broker, version=5)
    pub.publish(base + "/x", b"1", qos=1, props={"TopicAlias": 1})   # set alias 1
    pub.publish("", b"2", qos=1, props={"TopicAlias": 1})            # use it
    pub.publish(base + "/y", b"3", qos=1, props={"TopicAlias": 1})   # remap it
    pub.publish("", b"4", qos=0, props={"TopicAlias": 1})
    pub.publish(base + "/z", b"5", qos=1, props={"TopicAlias": 2})
    pub.publish("", b"6", qos=1, props={"TopicAlias": 2})
    want = [(base + "/x", b"1"), (base + "/x", b"2"), (base + "/y", b"3"), (base + "/y", b"4"),
            (base + "/z", b"5"), (base + "/z", b"6")]
    for s in (sub4, sub5):
        got = s.wait_count(len(want), 5)
        assert [(m.topic, m.payload) for m in got] == want, got
    # The v5 subscriber sent no Topic Alias Maximum: the server must not use aliases towards it.
    assert all("TopicAlias" not in m.props for m in sub5.snapshot()), sub5.snapshot()
    assert pub.disconnects == [] and pub.c.is_connected(), "server dropped the aliasing publisher"


@pytest.mark.parametrize("version,path", [(4, "/mqtt"), (5, "/mqtt"), (4, "/any/other/path")],
                         ids=["v311-mqtt", "v5-mqtt", "v311-otherpath"])
def test_paho_websocket(broker, paho, version, path):
    require_ws(broker)
    base = uid("ws")
    ws = paho(broker, version=version, transport="websockets", ws_path=path)
    ws.connect()
    assert ws.subscribe(base + "/to-ws", qos=2) == [2]
    tcp = _connected(paho, broker, version=version)
    assert tcp.subscribe(base + "/to-tcp", qos=2) == [2]
    # Client to server: 102400 bytes, a frame with a 64-bit length. Server to
    # client: 10000 bytes, a 16-bit length (paho 1.6 reads big WebSocket
    # frames slowly, one select timeout per partial read, on any broker).
    big = bytes(range(256)) * 400
    medium = big[:10000]
    for q in (0, 1, 2):
        tcp.publish(base + "/to-ws", b"t%d" % q, qos=q)
        ws.publish(base + "/to-tcp", b"w%d" % q, qos=q)
    ws.publish(base + "/to-tcp", big, qos=1)
    tcp.publish(base + "/to-ws", medium, qos=1)
    got_ws = ws.wait_count(4, 5)
    got_tcp = tcp.wait_count(4, 5)
    assert [(m.payload, m.qos) for m in got_ws] == [(b"t0", 0), (b"t1", 1), (b"t2", 2), (medium, 1)], \
        [(m.payload[:10], m.qos) for m in got_ws]
    assert [(m.payload, m.qos) for m in got_tcp] == [(b"w0", 0), (b"w1", 1), (b"w2", 2), (big, 1)], \
        [(m.payload[:10], m.qos) for m in got_tcp]
    ws.disconnect()
    assert ws.disconnects == [0], "WebSocket client disconnect was not clean: %r" % ws.disconnects


def test_websocket_upgrade_response(broker):
    """The raw handshake: 101, the RFC 6455 accept key, subprotocol mqtt."""
    require_ws(broker)
    import base64
    import hashlib
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET /mqtt HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
           % (broker.host, broker.ws_port, key))
    with socket.create_connection((broker.host, broker.ws_port), timeout=5) as s:
        s.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "connection closed during the handshake; got %r" % head
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), lines
    hdrs = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert hdrs.get("sec-websocket-accept") == want, hdrs
    assert hdrs.get("upgrade", "").lower() == "websocket", hdrs
    assert "upgrade" in hdrs.get("connection", "").lower(), hdrs
    assert hdrs.get("sec-websocket-protocol") == "mqtt", hdrs


class RawWs:
    """A minimal RFC 6455 client: handshake, masked frames out, frames in."""

    def __init__(self, b, path="/mqtt", protocol="mqtt"):
        import base64
        self.sock = socket.create_connection((b.host, b.ws_port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n"
                           % (path, b.host, b.ws_port, key, protocol)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.head = head.decode("latin-1")
        assert self.head.startswith("HTTP/1.1 101"), self.head

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def frame(self, opcode, payload=b"", fin=True, mask=True):
        import struct
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = bytes([b0, mbit | n])
        elif n < 65536:
            hdr = bytes([b0, mbit | 126]) + struct.pack(">H", n)
        else:
            hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
        if mask:
            key = os.urandom(4)
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            hdr += key
        return hdr + payload

    def send(self, *frames):
        self.sock.sendall(b"".join(frames))

    def recv_frame(self):
        """(opcode, payload) of the next frame; server frames are unmasked."""
        import struct
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                off = 2
                if n == 126 and len(self.buf) >= 4:
                    n, off = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
                assert not self.buf[1] & 0x80, "server frames must not be masked (RFC 6455 §5.1)"
                if (self.buf[1] & 0x7F) < 126 or off > 2:
                    if len(self.buf) >= off + n:
                        op, data = self.buf[0] & 0x0F, self.buf[off:off + n]
                        self.buf = self.buf[off + n:]
                        return op, data
            self._fill()

    def mqtt_bytes(self, n):
        """Reads binary frames until n MQTT bytes arrived (answers nothing)."""
        out = b""
        while len(out) < n:
            op, data = self.recv_frame()
            assert op in (0x0, 0x2), "expected a binary frame, got opcode %d (%r)" % (op, data[:50])
            out += data
        return out

    def closed(self, timeout=3.0):
        """True if the server closes (after an optional Close frame) in time;
        returns the close frames seen as self.close_frames."""
        self.close_frames = []
        self.sock.settimeout(timeout)
        try:
            while True:
                op, data = self.recv_frame()
                if op == 0x8:
                    self.close_frames.append(data)
        except (EOFError, ConnectionResetError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


@pytest.fixture
def raw_ws():
    conns = []

    def make(b, **kw):
        require_ws(b)
        w = RawWs(b, **kw)
        conns.append(w)
        return w

    yield make
    for w in conns:
        w.close()


def _mqtt_connect_bytes(cid):
    from vigiltest import connect_packet
    return connect_packet(cid, keepalive=30)


def test_websocket_framing_not_aligned_to_packets(broker, raw_ws):
    """MQTT §6: packets need not align with WebSocket frames; control frames
    may sit between the fragments of a message; ping is answered with pong."""
    from vigiltest import PINGREQ_PACKET, publish_packet, subscribe_packet
    w = raw_ws(broker)
    topic = uid("wf") + "/t"
    connect = _mqtt_connect_bytes(uid("wf"))
    # CONNECT split across two binary messages.
    w.send(w.frame(0x2, connect[:5]), w.frame(0x2, connect[5:]))
    assert w.mqtt_bytes(4) == b"\x20\x02\x00\x00", "CONNACK"
    # SUBSCRIBE + PINGREQ in one frame.
    w.send(w.frame(0x2, subscribe_packet(1, [(topic, 0)]) + PINGREQ_PACKET))
    assert w.mqtt_bytes(5 + 2) == b"\x90\x03\x00\x01\x00" + b"\xd0\x00", "SUBACK + PINGRESP"
    # A PUBLISH in a fragmented message (binary, FIN=0; continuation; a ping
    # control frame in between; final continuation).
    pub = publish_packet(topic, b"fragmented-payload", qos=0)
    w.send(w.frame(0x2, pub[:3], fin=False), w.frame(0x9, b"hello-ping"),
           w.frame(0x0, pub[3:10], fin=False), w.frame(0x0, pub[10:], fin=True))
    op, data = w.recv_frame()
    assert (op, data) == (0xA, b"hello-ping"), "a ping must be answered by a pong with its payload: %r" % ((op, data),)
    assert w.mqtt_bytes(len(pub)) == pub, "the fragmented PUBLISH routed back to its own subscription"


def test_websocket_close_handshake(broker, raw_ws):
    import struct
    w = raw_ws(broker)
    w.send(w.frame(0x2, _mqtt_connect_bytes(uid("wc"))))
    assert w.mqtt_bytes(4)[:1] == b"\x20"
    w.send(w.frame(0x8, struct.pack(">H", 1000)))
    assert w.closed(3), "server did not close after a Close frame"
    assert w.close_frames, "RFC 6455 §5.5.1: a Close frame must be answered with a Close frame"
    code = struct.unpack(">H", w.close_frames[0][:2])[0] if len(w.close_frames[0]) >= 2 else None
    assert code in (None, 1000), w.close_frames


@pytest.mark.parametrize("case", [
    pytest.param("text-frame", marks=mosquitto_deviates("reads a text frame's payload as MQTT (answers PINGRESP)")),
    pytest.param("unmasked", marks=mosquitto_deviates("accepts an unmasked client frame (answers CONNACK)")),
])
def test_websocket_protocol_violations_close(broker, raw_ws, case):
    w = raw_ws(broker)
    connect = _mqtt_connect_bytes(uid("wv"))
    if case == "text-frame":
        # MQTT 3.1.1 §6 / 5.0 §6: data other than binary frames closes the connection.
        w.send(w.frame(0x2, connect))
        assert w.mqtt_bytes(4)[:1] == b"\x20"
        w.send(w.frame(0x1, b"\xc0\x00"))  # a PINGREQ, in a text frame
    else:
        # RFC 6455 §5.1: the server must close on an unmasked client frame.
        w.send(w.frame(0x2, connect, mask=False))
    assert w.closed(3), "connection stays open after a %s" % case


# ---------------------------------------------------------------------------
# MQTT.js (node)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
@pytest.mark.parametrize("version", [4, 5])
def test_mqttjs_roundtrip(broker, transport, version):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (MQTT.js interoperability needs node and `npm ci`)")
    if not os.path.isfile(os.path.join(ROOT, "node_modules", "mqtt", "package.json")):
        pytest.fail("node_modules/mqtt is missing: run `npm ci` in %s" % ROOT, pytrace=False)
    if transport == "ws":
        require_ws(broker)
        url = "ws://%s:%d/mqtt" % (broker.host, broker.ws_port)
    else:
        url = "mqtt://%s:%d" % (broker.host, broker.port)
    try:
        r = subprocess.run([node, JS_SCRIPT, url, str(version)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=15, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail("MQTT.js script did not finish within 15 s: %s" % (e.stdout or b"").decode(errors="replace"))
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    try:
        summary = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail("MQTT.js script printed no JSON summary (exit %d):\n%s\n%s" % (r.returncode, out, err))
    failed = [c for c in summary["checks"] if not c["ok"]]
    assert r.returncode == 0 and summary["ok"], "MQTT.js %s v%d: error %s; failed checks:\n%s\nstderr:\n%s" % (
        transport, version, summary.get("error"), json.dumps(failed, indent=1), err[-3000:])


# ---------------------------------------------------------------------------
# HTTP publish endpoint (vigil only)


def http_request(v, method, target, body=None, headers=None, timeout=5.0):
    """Returns (status, {lower-case header: value}, body bytes)."""
    conn = http.client.HTTPConnection(v.host, v.http_port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): val for k, val in r.getheaders()}, r.read()
    finally:
        conn.close()


def topic_target(topic, qos=None):
    t = "/topics/" + urllib.parse.quote(topic, safe="")
    return t + ("?qos=%d" % qos if qos is not None else "")


def _json_body(status, hdrs, body):
    assert "json" in hdrs.get("content-type", ""), (status, hdrs, body)
    try:
        return json.loads(body)
    except ValueError:
        raise AssertionError("response body is not JSON: %r" % body[:300])


@vigil_only
def test_http_publish_telemetry_durable_and_delivered(broker, msub):
    require_http(broker)
    sub = msub(broker, [TELEMETRY_TOPIC], "5", qos=1)
    dev = uid("http")
    event = telemetry(dev, 81, steps=2)
    status, hdrs, body = http_request(broker, "POST", topic_target(TELEMETRY_TOPIC, 1), dumps(event).encode(),
                                      {"Content-Type": "application/json"})
    assert status == 200, (status, hdrs, body)
    _json_body(status, hdrs, body)
    # 200 is sent after the record is durable: it is in the stream right away.
    recs = [r for r in broker.stream_tail("telemetry") if r.get("key") == dev]
    assert len(recs) == 1 and recs[0]["data"] == event, recs
    got = sub.wait_count(1, 5)
    assert [(m.topic, json.loads(m.payload)) for m in got] == [(TELEMETRY_TOPIC, event)], sub.output()


@vigil_only
@pytest.mark.parametrize("qos", [0, 1])
def test_http_publish_encoded_topic_to_subscriber(broker, paho, qos):
    require_http(broker)
    topic = "%s/a b/\u00e9\u263a/%d" % (uid("ht"), qos)  # space and UTF-8: percent-encoded in the path
    sub = _connected(paho, broker, version=5)
    sub.subscribe(topic, qos=1)
    body = b'{"n":1,"bin":"\x01"}'
    status, hdrs, resp = http_request(broker, "POST", topic_target(topic, qos), body,
                                      {"Content-Type": "application/octet-stream"})
    assert status == 200, (status, hdrs, resp)
    _json_body(status, hdrs, resp)
    got = sub.wait_count(1, 5)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(topic, body, qos)], got


@vigil_only
@pytest.mark.parametrize("topic", ["a/+/b", "a/#", "#"])
def test_http_publish_wildcard_topic_400(broker, topic):
    require_http(broker)
    status, hdrs, body = http_request(broker, "POST", topic_target(topic, 1), b"{}")
    assert status == 400, (status, hdrs, body)
    _json_body(status, hdrs, body)


@vigil_only
@pytest.mark.parametrize("query", ["qos=2", "qos=x", "qos=1&retain=maybe"])
def test_http_publish_bad_query_400(broker, mqtt_sub, query):
    require_http(broker)
    topic = uid("hq") + "/t"
    sub = mqtt_sub(broker, [topic], qos=1)
    status, hdrs, body = http_request(broker, "POST", topic_target(topic) + "?" + query, b"{}")
    assert status == 400, (status, hdrs, body)
    time.sleep(0.3)
    assert sub.snapshot() == [], "a refused request must not publish"


@vigil_only
def test_http_publish_retained_then_mqtt_subscriber(broker):
    require_http(broker)
    topic = uid("hr") + "/t"
    status, hdrs, body = http_request(broker, "POST", topic_target(topic) + "?qos=1&retain=true", b"kept-http")
    assert status == 200, (status, hdrs, body)
    msgs, out = msub_once(broker, "5", topic, 1, qos=1)
    assert [(m.topic, m.payload, m.retain) for m in msgs] == [(topic, "kept-http", True)], out


@vigil_only
def test_http_curl_chunked_and_keepalive(broker, mqtt_sub):
    """Real HTTP clients: curl with a chunked body, and two requests on one
    keep-alive connection (http.client)."""
    require_http(broker)
    topic = uid("hc") + "/t"
    sub = mqtt_sub(broker, [topic], qos=1)
    url = "http://%s:%d%s" % (broker.host, broker.http_port, topic_target(topic, 1))
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}",
                        "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/json",
                        "--data-binary", "@-", url],
                       input=b'{"via":"curl-chunked"}', stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=8)
    body, _, code = r.stdout.decode(errors="replace").rpartition("\n")
    assert r.returncode == 0 and code == "200", (r.returncode, code, body, r.stderr)
    json.loads(body)
    conn = http.client.HTTPConnection(broker.host, broker.http_port, timeout=5)
    try:
        for i in range(2):
            conn.request("POST", topic_target(topic, 1), body=b'{"via":"keepalive-%d"}' % i)
            resp = conn.getresponse()
            assert resp.status == 200, (resp.status, resp.read())
            json.loads(resp.read())
            assert not resp.will_close, "server closed an HTTP/1.1 keep-alive connection"
    finally:
        conn.close()
    got = sub.wait_count(3, 5)
    assert [json.loads(p)["via"] for _, p, _ in got] == ["curl-chunked", "keepalive-0", "keepalive-1"], got


@vigil_only
def test_http_get_405_and_unknown_path_404(broker):
    require_http(broker)
    status, hdrs, body = http_request(broker, "GET", topic_target("some/topic", 1))
    assert status == 405, (status, hdrs, body)
    # RFC 9110 §15.5.6: a 405 response MUST carry Allow.
    assert "POST" in hdrs.get("allow", ""), hdrs
    status, hdrs, body = http_request(broker, "POST", "/nope", b"{}")
    assert status == 404, (status, hdrs, body)
    status, hdrs, body = http_request(broker, "GET", "/")
    assert status == 404, (status, hdrs, body)


@vigil_only
def test_http_body_over_max_packet_size_413(vigil_factory):
    v = vigil_factory("--max-packet-size", "1024")
    require_http(v)
    status, hdrs, body = http_request(v, "POST", topic_target("big/t", 1), b"x" * 400)
    assert status == 200, (status, hdrs, body)
    big = b"y" * 1025
    req = (("POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n") % (topic_target("big/t", 1), v.host, v.http_port,
                                                                 len(big))).encode() + big
    with socket.create_connection((v.host, v.http_port), timeout=5) as s:
        try:
            s.sendall(req)
        except OSError:
            pass  # the server may answer and close before reading the body
        resp = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                resp += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert resp.startswith(b"HTTP/1.1 413"), "expected 413 for a %d-byte body over --max-packet-size 1024: %r" % (
        len(big), resp[:300])
