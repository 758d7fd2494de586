"""The simulator over mutual TLS: `vigil sim --tls --ca --cert-dir` against a
server provisioned with vigil's own CLI (`vigil ca init`, `vigil device
create --count`).

What is checked: 200 devices, each with its own certificate, connect over
TLS, every event is acked and accepted as telemetry under the device's own
identity (no identity_mismatch dead letters, every connection authenticated
by its certificate); a revoked device is reported as a connect failure with
the reason tls_revoked; a server certificate the sim cannot verify is
reported as tls_untrusted_server; a device whose connection was taken over
reconnects (--reconnect) and resumes its TLS session.
"""

import json
import os
import ssl
import subprocess
import time

import pytest

from vigiltest import VIGIL, RawClient, wait_until

PREFIX = "tls-"
DEVICES = 200


def cli(data_dir, *args):
    r = subprocess.run([VIGIL] + list(args) + ["--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, "vigil %s: %s %s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout.decode()


@pytest.fixture
def fleet(vigil_factory, tmp_path):
    """A TLS server with its CA and DEVICES registered devices whose keys
    and certificates are in fleet.certs."""
    s = vigil_factory(start=False)
    cli(s.data_dir, "ca", "init")
    certs = tmp_path / "certs"
    cli(s.data_dir, "device", "create", "--count", str(DEVICES), "--prefix", PREFIX, "--out", str(certs))
    s.start()
    s.certs = str(certs)
    s.ca = os.path.join(str(certs), "ca.crt")
    return s


def sim_argv(s, devices, duration, *extra, ca=None, cert_dir=True):
    argv = [VIGIL, "sim", "--tls", "--connect", "127.0.0.1:%d" % s.tls_port, "--alerts-connect",
            "127.0.0.1:%d" % s.port, "--ca", ca or s.ca, "--prefix", PREFIX, "--devices", str(devices),
            "--interval", "1", "--duration", str(duration), "--json"]
    if cert_dir:
        argv += ["--cert-dir", s.certs]
    return argv + list(extra)


def run_sim(argv, timeout=90):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    err = r.stderr.decode(errors="replace")
    assert r.stdout.strip(), "no sim report (exit %d):\n%s" % (r.returncode, err[-3000:])
    return r.returncode, json.loads(r.stdout), err


@pytest.mark.deadline(150)
def test_fleet_over_mutual_tls(fleet):
    rc, rep, err = run_sim(sim_argv(fleet, DEVICES, 5))
    assert rc == 0, err[-3000:]
    assert rep["connected"] == DEVICES, err[-3000:]
    assert rep["connect_failures"] == 0, rep["connect_failure_reasons"]
    assert rep["disconnects"] == 0
    assert rep["tls"]["handshakes"] == DEVICES
    assert rep["sent"] > DEVICES * 3
    assert rep["acked"] == rep["sent"] and rep["failed"] == 0
    st = fleet.wait_stats(lambda x: x.get("telemetry.accepted", 0) >= rep["acked"], 10)
    assert st["telemetry.accepted"] == rep["acked"]
    assert st["deadletter.identity_mismatch"] == 0
    assert st["telemetry.deadletter"] == 0
    # Every device connection was authenticated by its certificate (the
    # alerts/# subscriber and the stats clients are plain loopback ones).
    assert st["auth.ok.certificate"] == DEVICES
    assert st["tls.handshakes"] == DEVICES
    assert all(st["tls.refused." + k] == 0 for k in ("no_certificate", "revoked", "unknown_device"))


@pytest.mark.deadline(120)
def test_revoked_device_is_a_connect_failure(fleet):
    revoked = PREFIX + "000007"
    cli(fleet.data_dir, "device", "revoke", revoked)
    # The server's registry picks the revocation up on its own (inotify).
    fleet.wait_stats(lambda x: True, 1)
    time.sleep(1)
    rc, rep, err = run_sim(sim_argv(fleet, 20, 3))
    assert rc == 0, err[-3000:]
    assert rep["connected"] == 19, err[-3000:]
    assert rep["connect_failures"] == 1
    reasons = rep["connect_failure_reasons"]
    assert reasons["tls_revoked"] == 1, reasons
    assert sum(reasons.values()) == 1, reasons
    assert "certificate revoked" in err
    assert rep["acked"] == rep["sent"]
    st = fleet.stats()
    assert st["tls.refused.revoked"] >= 1


@pytest.mark.deadline(90)
def test_untrusted_server_is_a_connect_failure(fleet):
    # The server's own certificate is no CA: nothing chains to it.
    bad_ca = os.path.join(fleet.data_dir, "pki", "server.crt")
    rc, rep, err = run_sim(sim_argv(fleet, 5, 1, ca=bad_ca))
    assert rc == 1  # nothing connected
    assert rep["connect_failure_reasons"]["tls_untrusted_server"] == 5, rep["connect_failure_reasons"]
    assert rep["tls"]["handshakes"] == 0


@pytest.mark.deadline(90)
def test_missing_key_files_are_credentials_failures(fleet, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, rep, err = run_sim(sim_argv(fleet, 3, 1) + ["--cert-dir", str(empty)])
    assert rep["connect_failure_reasons"]["credentials"] == 3, rep["connect_failure_reasons"]
    assert rep["connected"] == 0


@pytest.mark.deadline(120)
def test_reconnect_resumes_the_tls_session(fleet):
    """A device's connection taken over by another client with the same
    identity closes; the sim reconnects it and offers its session."""
    dev = PREFIX + "000000"
    p = subprocess.Popen(sim_argv(fleet, 1, 8, "--reconnect", "0.3"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        wait_until(lambda: fleet.stats().get("tls.handshakes", 0) >= 1, 10)
        time.sleep(0.5)  # the session ticket comes after the handshake
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(fleet.ca)
        ctx.load_cert_chain(os.path.join(fleet.certs, dev + ".crt"), os.path.join(fleet.certs, dev + ".key"))
        c = RawClient("127.0.0.1", fleet.tls_port, 10, ssl_ctx=ctx)
        c.connect(dev)  # takes the session over: the sim's connection is closed
        # The sim comes back (taking it over in turn) on a resumed session.
        st = fleet.wait_stats(lambda x: x.get("tls.resumed", 0) >= 1, 10)
        assert st["tls.resumed"] >= 1
        c.close()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rep = json.loads(out)
    assert rep["disconnects"] >= 1
    assert rep["reconnects"] >= 1
    assert rep["tls"]["resumed"] >= 1, err.decode(errors="replace")[-2000:]
    assert rep["tls"]["handshakes"] == rep["connected"]
    assert rep["failed"] == 0 or rep["acked"] + rep["failed"] == rep["sent"]
