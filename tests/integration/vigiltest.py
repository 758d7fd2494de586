"""vigiltest — helpers shared by the integration tests.

Owns: starting/stopping a `build/vigil serve` process on a loopback port, a
tiny raw MQTT 3.1.1 client (so tests can send exactly the bytes they want and
observe exactly what comes back), a wrapper around Debian's mosquitto_sub, a
paho-mqtt compatibility shim (Debian 12 ships paho 1.6; 2.x needs a callback
API version argument), and the reference shard mapping (MD5 of the partition
key over evenly split 128-bit hash-key ranges, as Kinesis does).

Does not own: assertions about the server's behaviour; those live in the
test_*.py files. Nothing here knows the server's internals.
"""

import atexit
import base64
import contextlib
import datetime
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VIGIL = os.environ.get("VIGIL_BIN", os.path.join(ROOT, "build", "vigil"))
TELEMETRY_TOPIC = "iot/wearable/data"
STATS_TOPIC = "$SYS/vigil/stats"
# `vigil stream tail|ls` should take well under a second for the few
# thousand records these tests write; a hang is a failure, not a wait.
CLI_TIMEOUT = float(os.environ.get("VIGIL_CLI_TIMEOUT", "10"))

# ---------------------------------------------------------------------------
# small utilities


def now_ms():
    return int(time.time() * 1000)


def iso_ms(ms):
    """Epoch milliseconds -> '2026-11-25T10:00:00.000Z'."""
    dt = datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def parse_iso_ms(s):
    """ISO-8601 with Z or offset -> epoch ms (used to check alert timestamps)."""
    s = s.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(round(dt.timestamp() * 1000))


@contextlib.contextmanager
def small_tmpfs(mnt, size):
    """Mounts a tmpfs of `size` bytes on directory mnt (created if missing)
    for the with-block, for tests of a full disk: real ENOSPC from a real
    file system. Skips the test, saying why, without root or when mount
    fails; unmounts (lazily: a server may still hold files) at the end."""
    os.makedirs(str(mnt), exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", str(mnt)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stdout.decode(errors="replace").strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until(pred, timeout, interval=0.05):
    """Polls pred() until it returns a truthy value or timeout passes.
    Returns the last value pred() returned."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


_HANDED_OUT = set()


def free_port():
    """A loopback port nobody listens on now and that this process has not
    handed out before (the kernel may return the same ephemeral port to two
    quick bind-to-0 probes, which made a server's WebSocket and HTTP
    listeners collide)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no unused loopback port found")


def telemetry(device_id, heart_rate, steps=0, ts=None, **extra):
    """A valid telemetry event as a dict (timestamp ISO ms by default)."""
    d = {"deviceId": device_id, "heartRate": heart_rate, "steps": steps,
         "timestamp": iso_ms(ts if ts is not None else now_ms())}
    d.update(extra)
    return d


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


# Kinesis-style shard mapping: MD5(key) as a big-endian 128-bit integer, shard
# i of n owns [i * (2^128 // n), (i + 1) * (2^128 // n) - 1], the last shard
# takes the remainder up to 2^128 - 1.
HASH_MAX = (1 << 128) - 1


def shard_range(n, i):
    size = (1 << 128) // n
    start = i * size
    end = HASH_MAX if i == n - 1 else (i + 1) * size - 1
    return start, end


def shard_for(key, n=4):
    if isinstance(key, str):
        key = key.encode()
    h = int.from_bytes(hashlib.md5(key).digest(), "big")
    return min(h // ((1 << 128) // n), n - 1)


def devices_in_shard(shard, count, n=4, prefix="dev"):
    out, i = [], 0
    while len(out) < count:
        d = "%s-%d" % (prefix, i)
        if shard_for(d, n) == shard:
            out.append(d)
        i += 1
    return out


# ---------------------------------------------------------------------------
# raw MQTT 3.1.1 packets

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def enc_varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def enc_str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack(">H", len(s)) + s


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + enc_varint(len(body)) + body


def connect_packet(client_id, keepalive=60, clean=True, proto_name="MQTT", level=4, flags=None,
                   username=None, password=None):
    if flags is None:
        flags = 0x02 if clean else 0
        if username is not None:
            flags |= 0x80
        if password is not None:
            flags |= 0x40
    body = enc_str(proto_name) + bytes([level, flags]) + struct.pack(">H", keepalive) + enc_str(client_id)
    if username is not None:
        body += enc_str(username)
    if password is not None:
        body += enc_str(password)
    return packet(CONNECT, 0, body)


def publish_packet(topic, payload, qos=0, pid=None, retain=False, dup=False):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = enc_str(topic)
    if qos:
        body += struct.pack(">H", pid)
    return packet(PUBLISH, flags, body + payload)


def subscribe_packet(pid, filters):
    body = struct.pack(">H", pid)
    for f, q in filters:
        body += enc_str(f) + bytes([q])
    return packet(SUBSCRIBE, 2, body)


def unsubscribe_packet(pid, filters):
    body = struct.pack(">H", pid)
    for f in filters:
        body += enc_str(f)
    return packet(UNSUBSCRIBE, 2, body)


def puback_packet(pid):
    return packet(PUBACK, 0, struct.pack(">H", pid))


PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
DISCONNECT_PACKET = bytes([DISCONNECT << 4, 0])


class Closed(Exception):
    """The server closed the connection."""


class RawClient:
    """A blocking MQTT client over a plain socket. Every read has a timeout;
    read_packet() raises Closed on EOF/reset and socket.timeout on silence."""

    def __init__(self, host, port, timeout=5.0, rcvbuf=None, ssl_ctx=None):
        if rcvbuf:
            # Before connect: a fixed receive buffer turns off the kernel's
            # autotuning, so a client that stops reading stops the flow at a
            # known point instead of whenever loopback TCP stops growing it.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # already reset by the server: reads will say so
        if ssl_ctx is not None:
            # TLS (the handshake runs here, bounded by the timeout).
            self.sock = ssl_ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.next_pid = 1
        self.pending = []  # packets read while waiting for something else

    # -- bytes ---------------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            raise Closed("connection reset")
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def read_packet(self, timeout=5.0):
        """Returns (type, flags, body)."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                mult, rem, i = 1, 0, 1
                complete = False
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    rem += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= i + rem:
                    t, f = self.buf[0] >> 4, self.buf[0] & 0x0F
                    body = self.buf[i:i + rem]
                    self.buf = self.buf[i + rem:]
                    return t, f, body
            self._fill(deadline)

    def expect(self, ptype, timeout=5.0):
        """Reads until a packet of ptype arrives; others are kept for later."""
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                p = self.read_packet(max(0.001, deadline - time.monotonic()))
                if p[0] == ptype:
                    return p
                skipped.append(p)
        finally:
            self.pending = skipped + self.pending

    # -- protocol ------------------------------------------------------------
    def connect(self, client_id, keepalive=60, clean=True, timeout=5.0):
        self.send(connect_packet(client_id, keepalive, clean))
        t, _, body = self.read_packet(timeout)
        assert t == CONNACK, "expected CONNACK, got type %d" % t
        assert len(body) == 2 and body[1] == 0, "CONNACK refused: %r" % body
        return self

    def pid(self):
        p = self.next_pid
        self.next_pid = self.next_pid % 65535 + 1
        return p

    def publish(self, topic, payload, qos=0, timeout=10.0):
        """Publishes; for QoS 1 waits for the matching PUBACK."""
        if qos == 0:
            self.send(publish_packet(topic, payload, 0))
            return None
        pid = self.pid()
        self.send(publish_packet(topic, payload, qos, pid))
        deadline = time.monotonic() + timeout
        while True:
            t, _, body = self.expect(PUBACK, max(0.001, deadline - time.monotonic()))
            if struct.unpack(">H", body[:2])[0] == pid:
                return pid

    def publish_many(self, items, qos=1, window=100, timeout=60.0):
        """Pipelines [(topic, payload)] at QoS 1 with up to `window` unacked;
        returns when every one is PUBACKed (in order, as MQTT requires)."""
        deadline = time.monotonic() + timeout
        outstanding = []
        for topic, payload in items:
            while len(outstanding) >= window:
                self._await_puback(outstanding, deadline)
            pid = self.pid()
            self.send(publish_packet(topic, payload, qos, pid))
            outstanding.append(pid)
        while outstanding:
            self._await_puback(outstanding, deadline)

    def _await_puback(self, outstanding, deadline):
        _, _, body = self.expect(PUBACK, max(0.001, deadline - time.monotonic()))
        pid = struct.unpack(">H", body[:2])[0]
        assert pid == outstanding[0], "PUBACK out of order: got %d, expected %d" % (pid, outstanding[0])
        outstanding.pop(0)

    def subscribe(self, filters, timeout=5.0):
        """filters: [(filter, qos)]; returns the SUBACK return codes."""
        pid = self.pid()
        self.send(subscribe_packet(pid, filters))
        _, _, body = self.expect(SUBACK, timeout)
        assert struct.unpack(">H", body[:2])[0] == pid
        return list(body[2:])

    def unsubscribe(self, filters, timeout=5.0):
        pid = self.pid()
        self.send(unsubscribe_packet(pid, filters))
        _, _, body = self.expect(UNSUBACK, timeout)
        assert struct.unpack(">H", body[:2])[0] == pid

    def ping(self, timeout=5.0):
        self.send(PINGREQ_PACKET)
        self.expect(PINGRESP, timeout)

    def next_message(self, timeout=5.0):
        """Waits for an incoming PUBLISH; acks QoS 1. Returns (topic, payload, qos)."""
        t, f, body = self.expect(PUBLISH, timeout)
        qos = (f >> 1) & 3
        tl = struct.unpack(">H", body[:2])[0]
        topic = body[2:2 + tl].decode()
        off = 2 + tl
        if qos:
            pid = struct.unpack(">H", body[off:off + 2])[0]
            off += 2
            self.send(puback_packet(pid))
        return topic, body[off:], qos

    def messages_for(self, duration):
        """Collects every PUBLISH arriving within duration seconds."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.next_message(left))
            except socket.timeout:
                return out

    def disconnect(self):
        try:
            self.send(DISCONNECT_PACKET)
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def wait_closed(self, timeout):
        """True if the server closes the connection within timeout seconds
        (data that arrives meanwhile is kept in self.pending)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.pending.append(self.read_packet(max(0.001, deadline - time.monotonic())))
        except Closed:
            return True
        except socket.timeout:
            return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_closed_now(sock_client, timeout=0.2):
    return sock_client.wait_closed(timeout)


# ---------------------------------------------------------------------------
# mosquitto_sub wrapper


class MosquittoSub:
    """Runs `mosquitto_sub -d -F 'MSG %q %t %p'` and collects messages.
    With -d it prints "received SUBACK", which lets a test wait until the
    subscription is in place before anything is published."""

    MARK = "MSG\t"

    def __init__(self, host, port, topics, qos=1, client_id=None, extra=()):
        args = ["stdbuf", "-oL", "mosquitto_sub", "-h", host, "-p", str(port), "-q", str(qos), "-d",
                "-F", "MSG\t%q\t%t\t%p", "-k", "30"]
        if client_id:
            args += ["-i", client_id]
        for t in topics:
            args += ["-t", t]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.lines = []
        self.messages = []  # (topic, payload str, qos)
        self.subacked = threading.Event()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.lines.append(line)
                if line.startswith(self.MARK):
                    _, q, topic, payload = line.split("\t", 3)
                    self.messages.append((topic, payload, int(q)))
            if "received SUBACK" in line:
                self.subacked.set()

    def wait_subscribed(self, timeout=5.0):
        if not self.subacked.wait(timeout):
            raise AssertionError("mosquitto_sub got no SUBACK within %ss; output:\n%s"
                                 % (timeout, "\n".join(self.lines)))

    def wait_count(self, n, timeout):
        wait_until(lambda: len(self.messages) >= n, timeout)
        with self.lock:
            return list(self.messages)

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        self.reader.join(3)


def mosquitto_pub(host, port, topic, message, qos=1, timeout=10, client_id=None):
    args = ["mosquitto_pub", "-h", host, "-p", str(port), "-q", str(qos), "-t", topic, "-m", message]
    if client_id:
        args += ["-i", client_id]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    assert r.returncode == 0, "mosquitto_pub failed (%d): %s" % (r.returncode, r.stdout.decode(errors="replace"))


# ---------------------------------------------------------------------------
# paho compatibility


def paho_client(client_id, clean_session=True, reconnect=True):
    """A paho Client with the 1.x callback signatures on paho 1.6 and 2.x."""
    import paho.mqtt.client as mqtt

    kwargs = {"client_id": client_id, "clean_session": clean_session, "protocol": mqtt.MQTTv311}
    if hasattr(mqtt, "CallbackAPIVersion"):
        kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION1
    if not reconnect:
        kwargs["reconnect_on_failure"] = False
    try:
        return mqtt.Client(**kwargs)
    except TypeError:
        kwargs.pop("reconnect_on_failure", None)
        return mqtt.Client(**kwargs)


# ---------------------------------------------------------------------------
# the server under test


ALL_SERVERS = []  # every server ever created; atexit kills leftovers
_SERVE_HELP = []  # `vigil serve --help`, read once


def serve_supports(option):
    """True if this build's `vigil serve --help` lists option (e.g. "--ws-listen")."""
    if not _SERVE_HELP:
        try:
            r = subprocess.run([VIGIL, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)
            _SERVE_HELP.append(r.stdout.decode(errors="replace"))
        except (OSError, subprocess.TimeoutExpired):
            return False
    return option in _SERVE_HELP[0]


@atexit.register
def _kill_leftovers():
    for s in ALL_SERVERS:
        s.cleanup()


class VigilServer:
    """One `vigil serve` process. start() waits until the port accepts."""

    def __init__(self, data_dir, log_dir, extra_args=(), port=None, name="vigil"):
        ALL_SERVERS.append(self)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        # The WebSocket and HTTP-publish listeners get free ports too, so that
        # servers never collide on their defaults (8083, 8080).
        self.ws_port = free_port()
        self.http_port = free_port()
        # TLS listeners (used only when the server has a certificate).
        self.tls_port = free_port()
        self.wss_port = free_port()
        self.https_port = free_port()
        self.data_dir = str(data_dir)
        self.log_dir = str(log_dir)
        self.extra_args = list(extra_args)
        self.name = name
        self.proc = None
        self.starts = 0
        self.logs = []  # every stderr file, in start order
        self.expected_exit = False

    # -- process control -----------------------------------------------------
    def argv(self):
        return [VIGIL, "serve", "--listen", "%s:%d" % (self.host, self.port), "--data-dir", self.data_dir,
                "--stats-interval-ms", "200", "--connect-timeout-ms", "1000", "--log-level", "info"
                ] + self.listener_args() + self.extra_args

    def listener_args(self):
        return ["--ws-listen", "%s:%d" % (self.host, self.ws_port),
                "--http-listen", "%s:%d" % (self.host, self.http_port),
                "--tls-listen", "%s:%d" % (self.host, self.tls_port),
                "--wss-listen", "%s:%d" % (self.host, self.wss_port),
                "--https-listen", "%s:%d" % (self.host, self.https_port)]

    def start(self, timeout=15.0, wait=True):
        """Starts the process; unless wait is False, returns once the port
        accepts TCP connections (raises AssertionError if it exits first)."""
        assert os.path.exists(VIGIL), "%s does not exist (run make all)" % VIGIL
        self.starts += 1
        path = os.path.join(self.log_dir, "%s-%d.stderr" % (self.name, self.starts))
        self.logs.append(path)
        with open(path, "wb") as err:
            err.write(("$ %s\n" % " ".join(self.argv())).encode())
            err.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=self.log_dir)
        self.expected_exit = False
        if not wait:
            return self
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("vigil serve exited with %s during startup:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError("vigil serve did not accept on port %d within %ss:\n%s"
                                     % (self.port, timeout, self.log_text()))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM; asserts a clean exit (code 0) within timeout. Returns it."""
        assert self.alive(), "vigil died before stop (exit %s)" % (self.proc and self.proc.returncode)
        self.expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("vigil did not exit within %ss of SIGTERM" % timeout)
        assert rc == 0, "vigil exited %d on SIGTERM" % rc
        return rc

    def kill9(self):
        self.expected_exit = True
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)

    def restart(self, timeout=15.0):
        if self.alive():
            self.stop()
        return self.start(timeout)

    def cleanup(self):
        """Kills a leftover process; never raises."""
        if self.proc is not None and self.proc.poll() is None:
            self.expected_exit = True
            try:
                self.proc.kill()
                self.proc.wait(5)
            except Exception:
                pass

    def log_text(self, limit=20000):
        parts = []
        for p in self.logs:
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if len(data) > limit:
                data = b"...(%d bytes cut)...\n" % (len(data) - limit) + data[-limit:]
            parts.append("--- %s ---\n%s" % (os.path.basename(p), data.decode("utf-8", "replace")))
        return "\n".join(parts)

    # -- clients ---------------------------------------------------------------
    def client(self, client_id=None, keepalive=60, timeout=5.0, rcvbuf=None):
        """A connected RawClient (rcvbuf: a fixed SO_RCVBUF, see RawClient)."""
        c = RawClient(self.host, self.port, timeout, rcvbuf)
        c.connect(client_id or "t-%d-%d" % (os.getpid(), id(c)), keepalive)
        return c

    def tls_client(self, ssl_ctx, client_id=None, keepalive=60, timeout=5.0):
        """A RawClient connected over TLS (MQTT over TLS listener)."""
        c = RawClient(self.host, self.tls_port, timeout, ssl_ctx=ssl_ctx)
        c.connect(client_id or "t-%d-%d" % (os.getpid(), id(c)), keepalive)
        return c

    def raw(self, timeout=5.0):
        """A TCP connection with nothing sent yet."""
        return RawClient(self.host, self.port, timeout)

    def stats(self, timeout=5.0):
        """The server's counters: subscribes to $SYS/vigil/stats, returns the
        first message (the server sends one immediately on subscribe)."""
        c = RawClient(self.host, self.port, timeout)
        try:
            c.connect("stats-%d-%d" % (os.getpid(), time.monotonic_ns()))
            c.subscribe([(STATS_TOPIC, 0)])
            deadline = time.monotonic() + timeout
            while True:
                topic, payload, _ = c.next_message(max(0.001, deadline - time.monotonic()))
                if topic == STATS_TOPIC:
                    return json.loads(payload)
        finally:
            c.disconnect()

    def wait_stats(self, pred, timeout=5.0):
        """Polls stats() until pred(stats) is true; returns the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s) or time.monotonic() >= deadline:
                return s
            time.sleep(0.1)

    # -- CLI -------------------------------------------------------------------
    def cli(self, *args, timeout=CLI_TIMEOUT, check=True):
        try:
            r = subprocess.run([VIGIL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AssertionError("vigil %s did not finish within %s s" % (" ".join(args), timeout))
        if check:
            assert r.returncode == 0, "vigil %s exited %d:\n%s\n%s" % (
                " ".join(args), r.returncode, r.stdout.decode(errors="replace")[-4000:],
                r.stderr.decode(errors="replace")[-4000:])
        return r

    def stream_tail(self, name, *extra, timeout=CLI_TIMEOUT):
        """`vigil stream tail NAME --data-dir DIR --json` parsed: a list of dicts."""
        return [obj for _, obj in self.stream_tail_lines(name, *extra, timeout=timeout)]

    def stream_tail_lines(self, name, *extra, timeout=CLI_TIMEOUT):
        """Like stream_tail but returns [(raw line, parsed)]."""
        r = self.cli("stream", "tail", name, "--data-dir", self.data_dir, "--json", *extra, timeout=timeout)
        out = []
        for line in r.stdout.decode("utf-8").splitlines():
            if not line.strip():
                continue
            try:
                out.append((line, json.loads(line)))
            except ValueError:
                raise AssertionError("stream tail %s printed a line that is not JSON: %r" % (name, line[:300]))
        return out

    def stream_ls(self, timeout=CLI_TIMEOUT):
        return self.cli("stream", "ls", "--data-dir", self.data_dir, timeout=timeout).stdout.decode()


def tail_data(records):
    """The data field of each stream record, parsed if it is a JSON string
    that holds an object (data is normally embedded verbatim)."""
    return [r["data"] for r in records]


def deadletter_payload(rec):
    """The original payload bytes of a dead-letter record."""
    d = rec["data"]
    if d.get("payloadBase64") is not None:
        return base64.b64decode(d["payloadBase64"])
    return d["payload"].encode()
