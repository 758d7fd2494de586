"""TLS on the gateway's listeners, with real TLS clients.

Clients: Debian's mosquitto_pub/mosquitto_sub (--cafile/--cert/--key),
`openssl s_client` (protocol versions, session resumption, the server
certificate after a reload), Python's ssl module (raw MQTT over TLS, and
thousands of stalled handshakes), curl for HTTPS publish and MQTT.js over
wss. Certificates come from tlspki (the `openssl` command), not from vigil.

What is checked: mutual TLS connects and round-trips; no certificate,
expired, not yet valid and foreign-CA certificates are refused at the
handshake and counted by reason; TLS 1.1 is refused, 1.2 and 1.3 work;
sessions resume (and still do after a reload); a handshake that never
finishes is closed at its deadline; 10,000 stalled handshakes do not keep a
device from connecting within a second; SIGHUP swaps the certificate
without dropping a connected subscriber.
"""

import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from tlspki import CA, serial_of
from vigiltest import ROOT, VIGIL, Closed, RawClient, wait_until


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path / "ca")
    crt, key = ca.server()
    return {"ca": ca, "server": (crt, key), "dir": str(tmp_path / "ca")}


def tls_args(pki, extra=()):
    crt, key = pki["server"]
    return ["--tls-cert", crt, "--tls-key", key, "--tls-client-ca", pki["ca"].crt,
            "--tls-handshake-timeout-ms", "2000"] + list(extra)


# These tests are about TLS itself, so the devices may do anything once
# connected (a policy for role "device" that allows every action); who may
# do what is test_security.py's subject.
OPEN_POLICY = {"Version": "2012-10-17",
               "Statement": [{"Effect": "Allow", "Action": "mqtt:*", "Resource": "*"}],
               "Attach": {"roles": ["device"]}}


def start_tls(vigil_factory, pki, *args):
    """A server with the test CA registered for just-in-time registration
    (its devices are registered at their first connection) and the open
    policy above."""
    s = vigil_factory(*args, start=False)
    os.makedirs(os.path.join(s.data_dir, "policies"), exist_ok=True)
    with open(os.path.join(s.data_dir, "policies", "open.json"), "w") as f:
        json.dump(OPEN_POLICY, f)
    r = subprocess.run([VIGIL, "ca", "register", pki["ca"].crt, "--jitr", "--data-dir", s.data_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout
    s.start()
    return s


@pytest.fixture
def tls_vigil(vigil_factory, pki):
    return start_tls(vigil_factory, pki, *tls_args(pki))


def client_ctx(pki, cert=None, min_version=None, max_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"].crt)
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def mosq(tool, server, pki, cert, *args, timeout=10):
    argv = [tool, "-h", "127.0.0.1", "-p", str(server.tls_port), "--cafile", pki["ca"].crt]
    if cert:
        argv += ["--cert", cert[0], "--key", cert[1]]
    return subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def s_client(server, pki, *args, port=None, stdin=b"", timeout=10):
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % (port or server.tls_port),
            "-CAfile", pki["ca"].crt, "-servername", "localhost"] + list(args)
    return subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout).stdout.decode(errors="replace")


def refused(stats):
    return {k[len("tls.refused."):]: v for k, v in stats.items() if k.startswith("tls.refused.")}


def test_mutual_tls_roundtrip_with_mosquitto(tls_vigil, pki):
    dev = pki["ca"].device("dev-1s")
    pubdev = pki["ca"].device("dev-1p")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(tls_vigil.tls_port), "--cafile",
                            pki["ca"].crt, "--cert", dev[0], "--key", dev[1], "-t", "t/#", "-C", "1", "-q", "1",
                            "-i", "dev-1s", "-W", "10"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: tls_vigil.stats()["subscriptions"] >= 2, 5)  # its own and the stats client's
        r = mosq("mosquitto_pub", tls_vigil, pki, pubdev, "-t", "t/1", "-m", "over tls", "-q", "1", "-i", "dev-1p")
        assert r.returncode == 0, r.stdout
        out, _ = sub.communicate(timeout=10)
        assert out.decode().strip() == "over tls"
    finally:
        if sub.poll() is None:
            sub.kill()
    st = tls_vigil.stats()
    assert st["tls.handshakes"] >= 2
    assert sum(refused(st).values()) == 0


def test_python_tls_client_and_plain_port_still_works(tls_vigil, pki):
    dev = pki["ca"].device("dev-py")
    c = tls_vigil.tls_client(client_ctx(pki, dev), "dev-py")
    c.subscribe([("p/#", 1)])
    c.publish("p/x", b"x" * 70000, qos=1)  # larger than one TLS record
    topic, payload, _ = c.next_message(5)
    assert topic == "p/x" and payload == b"x" * 70000
    c.disconnect()
    plain = tls_vigil.client("plain-1")
    plain.ping()
    plain.disconnect()


@pytest.mark.parametrize("case", ["none", "expired", "not_yet_valid", "foreign_ca"])
def test_bad_client_certificates_refused_at_handshake(tls_vigil, pki, tmp_path, case):
    ca = pki["ca"]
    if case == "none":
        cert, reason = None, "no_certificate"
    elif case == "expired":
        cert, reason = ca.device("dev-old", start="20200101000000Z", end="20200201000000Z"), "expired"
    elif case == "not_yet_valid":
        cert, reason = ca.device("dev-future", start="20990101000000Z", end="20991231000000Z"), "not_yet_valid"
    else:
        other = CA(tmp_path / "other", cn="someone else's CA")
        cert, reason = other.device("dev-foreign"), "unknown_ca"
    r = mosq("mosquitto_pub", tls_vigil, pki, cert, "-t", "t/1", "-m", "x", "-q", "1", "-i", "bad-1")
    assert r.returncode != 0, "a %s certificate connected: %s" % (case, r.stdout)
    # The same with Python: the handshake (TLS 1.3: the first read after it) fails.
    with pytest.raises((ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError, socket.timeout)):
        c = RawClient("127.0.0.1", tls_vigil.tls_port, 5, ssl_ctx=client_ctx(pki, cert))
        c.connect("bad-2")
    st = tls_vigil.wait_stats(lambda s: refused(s)[reason] >= 2, 5)
    assert refused(st)[reason] >= 2, refused(st)
    assert st["tls.handshakes"] == 0
    assert st["connections.current"] <= 1  # the stats client itself


def test_protocol_versions(tls_vigil, pki):
    dev = pki["ca"].device("dev-v")
    certargs = ["-cert", dev[0], "-key", dev[1]]
    out = s_client(tls_vigil, pki, "-tls1_1", *certargs)
    assert "Cipher is (NONE)" in out or "alert protocol version" in out or "no protocols available" in out, out
    for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        out = s_client(tls_vigil, pki, flag, *certargs)
        assert "Protocol  : %s" % name in out or "New, %s" % name in out, out
        assert "Verify return code: 0 (ok)" in out, out
    # A TLS 1.2 client offering only CBC ciphers finds nothing in common.
    out = s_client(tls_vigil, pki, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256", *certargs)
    assert "Cipher is (NONE)" in out or "handshake failure" in out, out


def test_session_resumption_survives_reload(tls_vigil, pki, tmp_path):
    dev = pki["ca"].device("dev-r")
    # Its first MQTT connection registers it (JITR); a resumed session is
    # checked against the registry again, and an unregistered device of a
    # resumed session (no chain to see its issuer) would be refused.
    tls_vigil.tls_client(client_ctx(pki, dev), "dev-r").disconnect()
    sess = str(tmp_path / "sess.pem")
    certargs = ["-cert", dev[0], "-key", dev[1], "-tls1_2"]
    out = s_client(tls_vigil, pki, "-sess_out", sess, *certargs)
    assert "New, TLSv1.2" in out, out
    out = s_client(tls_vigil, pki, "-sess_in", sess, *certargs)
    assert "Reused, TLSv1.2" in out, out
    # SIGHUP: the ticket keys carry over, so the old session still resumes.
    tls_vigil.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in tls_vigil.log_text(), 5)
    out = s_client(tls_vigil, pki, "-sess_in", sess, *certargs)
    assert "Reused, TLSv1.2" in out, out
    st = tls_vigil.stats()
    assert st["tls.resumed"] >= 2


def test_handshake_deadline(tls_vigil, pki):
    s = socket.create_connection(("127.0.0.1", tls_vigil.tls_port), timeout=10)
    s.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, never finished
    t0 = time.monotonic()
    s.settimeout(10)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    took = time.monotonic() - t0
    assert data == b"" or data[:1] == b"\x15", data  # closed (possibly after an alert)
    assert 1.0 <= took <= 6.0, took
    st = tls_vigil.wait_stats(lambda x: refused(x)["timeout"] >= 1, 5)
    assert refused(st)["timeout"] >= 1
    assert st["disconnect.tls"] >= 1


def test_stalled_handshakes_do_not_stop_a_device(vigil_factory, pki):
    """10,000 sockets open TLS and stall mid-handshake; a legitimate device
    still connects (TLS + CONNECT + CONNACK) within a second."""
    n = 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n + 500:
        pytest.skip("open-file hard limit %d is too low for %d sockets" % (hard, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = start_tls(vigil_factory, pki, *tls_args(pki, ["--tls-handshake-timeout-ms", "60000"]))
    dev = pki["ca"].device("dev-ok")
    ctx = client_ctx(pki, dev)
    socks = []
    try:
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # a ClientHello header and nothing more
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(True)
            s.connect(("127.0.0.1", server.tls_port))
            s.send(hello)
            socks.append(s)
        wait_until(lambda: server.stats()["connections.current"] >= n, 30)
        t0 = time.monotonic()
        c = server.tls_client(ctx, "dev-ok", timeout=5)
        took = time.monotonic() - t0
        c.ping()
        c.disconnect()
        assert took < 1.0, "the device needed %.3f s to connect past %d stalled handshakes" % (took, n)
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sighup_reload_keeps_connections(vigil_factory, pki, tmp_path):
    crt, key = pki["server"]
    live_crt, live_key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    shutil.copy(crt, live_crt)
    shutil.copy(key, live_key)
    server = start_tls(vigil_factory, pki, "--tls-cert", live_crt, "--tls-key", live_key, "--tls-client-ca",
                       pki["ca"].crt)
    dev = pki["ca"].device("dev-h-sub")
    sub = server.tls_client(client_ctx(pki, dev), "dev-h-sub")
    sub.subscribe([("h/#", 1)])
    old_serial = serial_of(live_crt)
    new_crt, new_key = pki["ca"].server(name="server2")
    shutil.copy(new_crt, live_crt)
    shutil.copy(new_key, live_key)
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in server.log_text(), 5)
    out = s_client(server, pki, "-cert", dev[0], "-key", dev[1], "-showcerts")
    new_serial = serial_of(new_crt)
    assert new_serial != old_serial
    der = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=out.encode(), stdout=subprocess.PIPE)
    assert der.stdout.decode().strip().split("=", 1)[1] == new_serial
    # The subscriber connected before the reload still gets messages.
    pub = server.tls_client(client_ctx(pki, pki["ca"].device("dev-h-pub")), "dev-h-pub")
    pub.publish("h/1", b"after reload", qos=1)
    topic, payload, _ = sub.next_message(5)
    assert payload == b"after reload"
    # A broken file is refused and the current certificate stays.
    with open(live_key, "w") as f:
        f.write("not a key\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in server.log_text(), 5)
    pub2 = server.tls_client(client_ctx(pki, pki["ca"].device("dev-h-pub2")), "dev-h-pub2")
    pub2.ping()
    for c in (sub, pub, pub2):
        c.disconnect()


def test_https_publish_and_refusal(tls_vigil, pki):
    dev = pki["ca"].device("dev-http")
    url = "https://localhost:%d/topics/h%%2Fx?qos=1" % tls_vigil.https_port
    r = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--cacert", pki["ca"].crt, "--cert",
                        dev[0], "--key", dev[1], "-X", "POST", "--data-binary", "hello", url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    assert r.stdout.decode().strip().endswith("200"), r.stdout
    r = subprocess.run(["curl", "-s", "--cacert", pki["ca"].crt, "-X", "POST", "--data-binary", "x", url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    assert r.returncode != 0


def test_mqttjs_over_wss(tls_vigil, pki):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    assert os.path.isfile(os.path.join(ROOT, "node_modules", "mqtt", "package.json")), "run npm ci"
    dev = pki["ca"].device("dev-wss")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js", "mqttjs_tls.mjs")
    r = subprocess.run([node, script, "wss://localhost:%d/mqtt" % tls_vigil.wss_port, pki["ca"].crt, dev[0],
                        dev[1], "dev-wss"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30, cwd=ROOT)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out
    assert json.loads(out.strip().splitlines()[-1])["ok"] is True


def test_mqtt_and_https_share_a_port_by_alpn(tls_vigil, pki):
    """IoT Core serves MQTT on 443 with ALPN: a client offering "mqtt" on
    the HTTPS listener is served MQTT, one offering http/1.1 gets HTTP."""
    dev = pki["ca"].device("dev-alpn")
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(tls_vigil.https_port), "--cafile",
                        pki["ca"].crt, "--cert", dev[0], "--key", dev[1], "--tls-alpn", "mqtt", "-i", "dev-alpn",
                        "-t", "alpn/x", "-m", "over 443", "-q", "1"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=20)
    assert r.returncode == 0, r.stdout
    ctx = client_ctx(pki, dev)
    ctx.set_alpn_protocols(["mqtt"])
    c = RawClient("127.0.0.1", tls_vigil.https_port, 5, ssl_ctx=ctx)
    assert c.sock.selected_alpn_protocol() == "mqtt"
    c.connect("dev-alpn")
    c.ping()
    c.disconnect()
    url = "https://localhost:%d/topics/alpn%%2Fy?qos=1" % tls_vigil.https_port
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", pki["ca"].crt, "--cert",
                        dev[0], "--key", dev[1], "-X", "POST", "--data-binary", "x", url],
                       stdout=subprocess.PIPE, timeout=20)
    assert r.stdout.decode() == "200"
    assert tls_vigil.stats()["tls.alpn_mqtt"] >= 2


def test_paho_over_mutual_tls(tls_vigil, pki):
    """python3-paho-mqtt with tls_set: subscribe and publish QoS 1 over TLS."""
    import threading
    from vigiltest import paho_client
    got = threading.Event()
    seen = []
    clients = []
    for name in ("dev-paho-s", "dev-paho-p"):
        crt, key = pki["ca"].device(name)
        c = paho_client(name, reconnect=False)
        c.tls_set(ca_certs=pki["ca"].crt, certfile=crt, keyfile=key)
        clients.append(c)
    sub, pub = clients
    subscribed = threading.Event()
    sub.on_subscribe = lambda c, u, mid, q: subscribed.set()
    sub.on_message = lambda c, u, m: (seen.append(m.payload), got.set())
    sub.on_connect = lambda c, u, f, rc: c.subscribe("paho/#", qos=1)
    sub.connect("localhost", tls_vigil.tls_port, keepalive=30)
    sub.loop_start()
    try:
        assert subscribed.wait(10), "no SUBACK over TLS"
        connected = threading.Event()
        pub.on_connect = lambda c, u, f, rc: connected.set() if rc == 0 else None
        pub.connect("localhost", tls_vigil.tls_port, keepalive=30)
        pub.loop_start()
        assert connected.wait(10), "paho could not connect over TLS"
        info = pub.publish("paho/x", b"paho over tls", qos=1)
        info.wait_for_publish(10)
        assert got.wait(10) and seen == [b"paho over tls"]
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
