"""Device identity and who may do what, end to end, with real clients.

Provisioning goes through vigil's own CLI (`vigil ca init`, `vigil device
create`, `vigil device passwd`, `vigil token create`, `vigil ca register
--jitr`); clients are mosquitto_pub/sub, paho over TLS and Python's ssl
module with the raw MQTT client.

What is checked: device A cannot publish as B (another device's topic, or
its telemetry topic with B's deviceId in the payload: identity_mismatch in
the dead-letter stream), cannot subscribe to alerts/B or '#', may subscribe
to alerts/A; an operator (token) may subscribe to alerts/#; a client id that
is not the certificate's device is refused; a revoked device is closed at
once and refused at the handshake afterwards; JITR registers a device of a
registered CA once; a wrong password is refused and repeated failures are
answered later and later; anonymous access is refused over TLS and on a
non-loopback listener unless allow_anonymous; HTTPS publish with a bearer
token; the publish-rate limit slows a client down without dropping; the
audit log has the refusals and never a secret.
"""

import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from tlspki import CA
from vigiltest import (TELEMETRY_TOPIC, VIGIL, Closed, RawClient, connect_packet, dumps, subscribe_packet, telemetry,
                       wait_until)


def cli(data_dir, *args, stdin=None):
    r = subprocess.run([VIGIL] + list(args) + ["--data-dir", str(data_dir)], input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, "vigil %s: %s %s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout.decode()


@pytest.fixture
def secure(vigil_factory, tmp_path):
    """A server with vigil's own CA, devices dev-a, dev-b, and TLS on."""
    s = vigil_factory(start=False)
    cli(s.data_dir, "ca", "init")
    certs = tmp_path / "certs"
    for d in ("dev-a", "dev-b", "dev-c"):
        cli(s.data_dir, "device", "create", d, "--out", str(certs))
    s.start()
    s.certs = str(certs)
    s.ca = os.path.join(str(certs), "ca.crt")
    return s


def ctx_for(server, dev=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(server.ca)
    if dev:
        ctx.load_cert_chain(os.path.join(server.certs, dev + ".crt"), os.path.join(server.certs, dev + ".key"))
    return ctx


def connack(c, client_id, username=None, password=None, level=4):
    """Sends CONNECT; returns the CONNACK return code (raises Closed if the
    connection closed first)."""
    c.send(connect_packet(client_id, username=username, password=password))
    t, _, body = c.read_packet(10)
    assert t == 2, t
    return body[1]


def test_device_speaks_only_for_itself(secure):
    a = secure.tls_client(ctx_for(secure, "dev-a"), "dev-a")
    # Its own telemetry: accepted.
    a.publish(TELEMETRY_TOPIC, dumps(telemetry("dev-a", 70)), qos=1)
    # Another device's id in the payload: PUBACK (the record is kept), but
    # as a dead letter with identity_mismatch, never as dev-b's telemetry.
    a.publish(TELEMETRY_TOPIC, dumps(telemetry("dev-b", 190)), qos=1)
    st = secure.wait_stats(lambda s: s.get("deadletter.identity_mismatch", 0) >= 1, 5)
    assert st["deadletter.identity_mismatch"] == 1
    assert st["telemetry.accepted"] == 1
    out = subprocess.run([VIGIL, "stream", "tail", "deadletter", "--data-dir", secure.data_dir],
                         stdout=subprocess.PIPE, timeout=30).stdout.decode()
    assert "identity_mismatch" in out
    tel = subprocess.run([VIGIL, "stream", "tail", "telemetry", "--data-dir", secure.data_dir],
                         stdout=subprocess.PIPE, timeout=30).stdout.decode()
    assert "dev-b" not in tel
    # Another device's topic: 3.1.1 has no reason code, the connection closes.
    with pytest.raises((Closed, socket.timeout, ssl.SSLError, ConnectionResetError)):
        a.publish("devices/dev-b/telemetry", b"{}", qos=1, timeout=3)
    st = secure.wait_stats(lambda s: s["policy.denied.publish"] >= 1, 5)
    assert st["policy.denied.publish"] >= 1
    assert st["disconnect.not_authorized"] >= 1


def test_subscriptions_limited_to_own_alerts(secure):
    a = secure.tls_client(ctx_for(secure, "dev-a"), "dev-a")
    assert a.subscribe([("alerts/dev-a", 1)]) == [1]
    assert a.subscribe([("alerts/dev-b", 1)]) == [0x80]
    assert a.subscribe([("#", 1)]) == [0x80]
    assert a.subscribe([("alerts/#", 1)]) == [0x80]
    a.disconnect()


def test_operator_token_may_watch_all_alerts(secure):
    tok = cli(secure.data_dir, "token", "create", "--role", "operator", "--name", "ops").strip().splitlines()[0]
    assert tok.startswith("vgt_")
    # The token in the password field (over plain loopback MQTT here; on
    # TLS it needs --tls-client-auth optional, as devices carry certificates).
    op = RawClient("127.0.0.1", secure.port, 10)
    assert connack(op, "ops", username="ops", password=tok) == 0
    assert op.subscribe([("alerts/#", 1)]) == [1]
    op.disconnect()
    bad = RawClient("127.0.0.1", secure.port, 10)
    assert connack(bad, "ops", username="ops", password="vgt_not-a-real-token") == 4
    st = secure.stats()
    assert st["auth.ok.token"] == 1


def test_client_id_must_be_the_device(secure):
    c = RawClient("127.0.0.1", secure.tls_port, 10, ssl_ctx=ctx_for(secure, "dev-a"))
    assert connack(c, "dev-b") == 5
    st = secure.stats()
    assert st["auth.refused.client_id_mismatch"] >= 1


def test_revoked_device_is_closed_and_refused(secure):
    a = secure.tls_client(ctx_for(secure, "dev-a"), "dev-a")
    a.ping()
    cli(secure.data_dir, "device", "revoke", "dev-a")
    assert a.wait_closed(5)
    st = secure.wait_stats(lambda s: s["disconnect.revoked"] >= 1, 5)
    assert st["disconnect.revoked"] == 1
    with pytest.raises((ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError, socket.timeout)):
        c = RawClient("127.0.0.1", secure.tls_port, 5, ssl_ctx=ctx_for(secure, "dev-a"))
        c.connect("dev-a")
    st = secure.wait_stats(lambda s: s["tls.refused.revoked"] >= 1, 5)
    assert st["tls.refused.revoked"] >= 1
    # The others are not affected.
    b = secure.tls_client(ctx_for(secure, "dev-b"), "dev-b")
    b.ping()
    b.disconnect()
    with open(os.path.join(secure.data_dir, "audit.log")) as f:
        lines = [json.loads(l) for l in f]
    assert any(l["event"] == "disconnect" and l.get("client_id") == "dev-a" for l in lines)
    assert any(l["event"] == "registry_change" and l.get("reason") == "device revoked" for l in lines)
    assert any(l["event"] == "auth_failure" and "revoked" in l.get("reason", "") for l in lines)


def test_unregistered_certificate_of_own_ca_refused(secure, tmp_path):
    # A certificate signed by vigil's CA but never registered (made with
    # openssl from the CA key): unknown_device at the handshake.
    pki = os.path.join(secure.data_dir, "pki")
    key, csr, crt = (str(tmp_path / n) for n in ("x.key", "x.csr", "x.crt"))
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True)
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=dev-rogue", "-out", csr], check=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(pki, "ca.crt"), "-CAkey",
                    os.path.join(pki, "ca.key"), "-CAcreateserial", "-days", "5", "-out", crt], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = ctx_for(secure)
    ctx.load_cert_chain(crt, key)
    with pytest.raises((ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError, socket.timeout)):
        c = RawClient("127.0.0.1", secure.tls_port, 5, ssl_ctx=ctx)
        c.connect("dev-rogue")
    st = secure.wait_stats(lambda s: s["tls.refused.unknown_device"] >= 1, 5)
    assert st["tls.refused.unknown_device"] >= 1


def test_jitr_registers_once(vigil_factory, tmp_path):
    s = vigil_factory(start=False)
    cli(s.data_dir, "ca", "init")
    theirs = CA(tmp_path / "theirs", cn="a customer's CA")
    cli(s.data_dir, "ca", "register", theirs.crt, "--jitr")
    s.start()
    crt, key = theirs.device("dev-j")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(s.data_dir, "pki", "ca.crt"))
    ctx.load_cert_chain(crt, key)
    for _ in range(3):
        c = s.tls_client(ctx, "dev-j")
        c.ping()
        c.disconnect()
    st = s.stats()
    assert st["registry.jitr_registered"] == 1
    out = cli(s.data_dir, "device", "show", "dev-j", "--json")
    assert json.loads(out)["provenance"] == "jitr"


def test_password_and_brute_force_slowed(secure):
    cli(secure.data_dir, "device", "passwd", "dev-c", stdin=b"correct horse\n")
    c = RawClient("127.0.0.1", secure.port, 10)
    assert connack(c, "dev-c", username="dev-c", password="correct horse") == 0
    c.disconnect()
    took = []
    for i in range(6):
        c = RawClient("127.0.0.1", secure.port, 60)
        t0 = time.monotonic()
        rc = connack(c, "dev-c", username="dev-c", password="wrong %d" % i)
        took.append(time.monotonic() - t0)
        assert rc == 4
        c.close()
    # The first failures are answered at once (argon2id aside), later ones
    # wait: the last takes at least a second longer than the first.
    assert took[-1] >= took[0] + 0.9, took
    st = secure.stats()
    assert st["auth.refused.bad_credentials"] >= 6
    assert st["auth.delayed"] >= 1
    with open(os.path.join(secure.data_dir, "audit.log")) as f:
        text = f.read()
    assert "wrong" not in text and "correct horse" not in text  # never a secret


def test_anonymous_refused_over_tls_and_off_loopback(vigil_factory, tmp_path):
    s = vigil_factory(start=False)
    cli(s.data_dir, "ca", "init")
    s.extra_args += ["--tls-client-auth", "optional"]
    s.start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(s.data_dir, "pki", "ca.crt"))
    c = RawClient("127.0.0.1", s.tls_port, 10, ssl_ctx=ctx)
    assert connack(c, "nobody") == 5
    assert s.stats()["auth.refused.anonymous_refused"] == 1
    # A plain listener on every address without allow_anonymous: refused at start.
    r = subprocess.run([VIGIL, "serve", "--listen", "0.0.0.0:1", "--data-dir", str(tmp_path / "d2")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode != 0
    assert b"allow_anonymous" in r.stdout


def test_https_bearer_token(vigil_factory, tmp_path):
    s = vigil_factory(start=False)
    cli(s.data_dir, "ca", "init")
    cli(s.data_dir, "device", "create", "dev-h", "--out", str(tmp_path / "c"))
    s.extra_args += ["--tls-client-auth", "optional"]
    s.start()
    tok = cli(s.data_dir, "token", "create", "--role", "device", "--name", "dev-h").strip().splitlines()[0]
    ca = os.path.join(s.data_dir, "pki", "ca.crt")
    url = "https://localhost:%d/topics/%s?qos=1" % (s.https_port, TELEMETRY_TOPIC.replace("/", "%2F"))

    def post(body, token=None):
        args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca, "-X", "POST",
                "--data-binary", body, url]
        if token:
            args += ["-H", "Authorization: Bearer " + token]
        return subprocess.run(args, stdout=subprocess.PIPE, timeout=30).stdout.decode()

    assert post(dumps(telemetry("dev-h", 71)), tok) == "200"
    assert post(dumps(telemetry("dev-h", 71))) == "401"
    assert post(dumps(telemetry("dev-h", 71)), "vgt_wrong") == "401"
    st = s.wait_stats(lambda x: x["telemetry.accepted"] >= 1, 5)
    assert st["telemetry.accepted"] == 1


def test_publish_rate_limit_is_backpressure(vigil_factory):
    s = vigil_factory("--publish-rate", "20")
    c = s.client("fast")
    t0 = time.monotonic()
    c.publish_many([("rate/x", b"m%d" % i) for i in range(80)], qos=1, window=80, timeout=60)
    took = time.monotonic() - t0
    # 80 publishes at 20/s with a burst of 40: about 2 s, every one acknowledged.
    assert took >= 1.5, took
    st = s.stats()
    assert st["limits.publish_throttled"] >= 1
    assert st["disconnect.not_authorized"] == 0


def test_connections_per_source_limit(vigil_factory):
    s = vigil_factory("--max-connections-per-source", "3")
    held, refused = [], 0
    for i in range(8):
        try:
            c = s.client("h%d" % i, timeout=3)
            c.ping()
            held.append(c)
        except (Closed, ConnectionResetError, BrokenPipeError, socket.timeout, OSError):
            refused += 1
    # At most 3 open at once from 127.0.0.1 (the start-up probe may still
    # have held one for a moment): the rest were refused at accept.
    assert len(held) <= 3 and refused >= 5, (len(held), refused)
    for c in held:
        c.disconnect()
    # Closing gives the slots back: a new client gets in again.
    assert wait_until(lambda: _connects(s), 10)
    st = s.stats()
    assert st["limits.connections_refused"] >= 5
    assert st["limits.connections_per_source_refused"] >= 5


def _connects(s):
    try:
        s.client("again", timeout=2).disconnect()
        return True
    except (Closed, ConnectionResetError, BrokenPipeError, socket.timeout, OSError):
        return False


def test_policy_test_explains(secure):
    def run(*args):
        return subprocess.run([VIGIL, "policy", "test"] + list(args) + ["--data-dir", secure.data_dir],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
    r = run("--device", "dev-a", "--action", "publish", "--topic", TELEMETRY_TOPIC)
    assert r.returncode == 0 and r.stdout.startswith(b"ALLOW") and b"vigil-device" in r.stdout, r.stdout
    r = run("--device", "dev-a", "--action", "subscribe", "--topic", "alerts/dev-b")
    assert r.returncode == 3 and r.stdout.startswith(b"DENY"), r.stdout
    r = run("--operator", "ops", "--action", "subscribe", "--topic", "alerts/#")
    assert r.returncode == 0 and b"vigil-operator" in r.stdout, r.stdout
    # A policy file of the operator's: an explicit deny wins over the built-in allow.
    os.makedirs(os.path.join(secure.data_dir, "policies"), exist_ok=True)
    with open(os.path.join(secure.data_dir, "policies", "no-secret.json"), "w") as f:
        json.dump({"Version": "2012-10-17",
                   "Statement": [{"Effect": "Deny", "Action": "mqtt:Receive", "Resource": "topic/alerts/dev-b"}],
                   "Attach": {"roles": ["operator"]}}, f)
    r = run("--operator", "ops", "--action", "receive", "--topic", "alerts/dev-b")
    assert r.returncode == 3 and b"no-secret" in r.stdout, r.stdout


def test_ca_registered_while_running(secure, tmp_path):
    """`vigil ca register` in another process: the running server trusts the
    new CA for the next handshakes without a restart."""
    theirs = CA(tmp_path / "late", cn="a CA registered later")
    crt, key = theirs.device("dev-late")
    ctx = ctx_for(secure)
    ctx.load_cert_chain(crt, key)
    with pytest.raises((ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError, socket.timeout)):
        RawClient("127.0.0.1", secure.tls_port, 5, ssl_ctx=ctx).connect("dev-late")
    cli(secure.data_dir, "ca", "register", theirs.crt, "--jitr")
    assert wait_until(lambda: "trust store rebuilt" in secure.log_text(), 10)
    c = secure.tls_client(ctx, "dev-late")
    c.ping()
    c.disconnect()


def test_sighup_reloads_policies(secure):
    """A policy file added while the server runs applies to connections made
    after SIGHUP (explicit deny wins); a broken file keeps the current set."""
    import signal
    a = secure.tls_client(ctx_for(secure, "dev-a"), "dev-a")
    assert a.subscribe([("alerts/dev-a", 1)]) == [1]
    a.disconnect()
    pol = os.path.join(secure.data_dir, "policies")
    os.makedirs(pol, exist_ok=True)
    with open(os.path.join(pol, "quiet.json"), "w") as f:
        json.dump({"Version": "2012-10-17",
                   "Statement": [{"Effect": "Deny", "Action": "mqtt:Subscribe", "Resource": "topicfilter/alerts/*"}],
                   "Attach": {"roles": ["device"]}}, f)
    secure.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "policies: 3 documents" in secure.log_text(), 10)
    a = secure.tls_client(ctx_for(secure, "dev-a"), "dev-a")
    assert a.subscribe([("alerts/dev-a", 1)]) == [0x80]
    a.disconnect()
    with open(os.path.join(pol, "broken.json"), "w") as f:
        f.write("{not json")
    secure.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "policy reload failed" in secure.log_text(), 10)
    a = secure.tls_client(ctx_for(secure, "dev-a"), "dev-a")
    assert a.subscribe([("alerts/dev-a", 1)]) == [0x80]  # the reloaded set stayed
    a.disconnect()
