"""Device provisioning from the command line (issue 11): `vigil ca`,
`vigil device` and `vigil token` against a data directory, checked with
Debian's `openssl` tool and by reading the registry's SQLite file.

`ca init` makes a CA and a server certificate that openssl verifies (as a
TLS server's, for localhost and ::1); `device create` makes keys (mode
0600) and certificates whose subject is CN = the device id and that verify
against the copied ca.crt as TLS client certificates, one at a time or with
--count; list/show print what was created (text and JSON); revoke is shown
and final, delete removes; `ca register` accepts a CA made by
`openssl req -x509` with basicConstraints CA:TRUE and refuses a leaf; a
token is printed once and neither it nor a password is anywhere in the
registry's files."""

import json
import os
import sqlite3
import stat
import subprocess

import pytest

from vigiltest import VIGIL

TIMEOUT = 120


def vigil(*args, data_dir, stdin=None, check=True):
    r = subprocess.run([VIGIL, *args, "--data-dir", str(data_dir)], input=stdin, capture_output=True,
                       text=True, timeout=TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError("vigil %s: exit %d\nstdout: %s\nstderr: %s"
                             % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def openssl(*args, check=True):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError("openssl %s: exit %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def subject_cn(crt):
    # openssl 3 prints "subject=CN = dev-1"
    out = openssl("x509", "-noout", "-subject", "-nameopt", "multiline", "-in", str(crt)).stdout
    return [l.split("=", 1)[1].strip() for l in out.splitlines() if l.strip().startswith("commonName")]


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    r = vigil("ca", "init", "--cn", "Test Fleet CA", data_dir=d)
    assert "CA fingerprint" in r.stdout
    return d


def registry_files(d):
    return [p for p in (d / "registry.db", d / "registry.db-wal") if p.exists()]


@pytest.mark.deadline(120)
def test_ca_init_files_and_server_certificate(data):
    pki = data / "pki"
    for f in ("ca.key", "ca.crt", "server.key", "server.crt"):
        assert (pki / f).exists(), f
    assert stat.S_IMODE(os.stat(pki / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pki / "server.key").st_mode) == 0o600
    text = openssl("x509", "-noout", "-text", "-in", str(pki / "ca.crt")).stdout
    assert "CA:TRUE" in text and "Certificate Sign, CRL Sign" in text and "Subject Key Identifier" in text
    assert subject_cn(pki / "ca.crt") == ["Test Fleet CA"]
    openssl("verify", "-CAfile", str(pki / "ca.crt"), "-purpose", "sslserver", str(pki / "server.crt"))
    srv = openssl("x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage", "-in", str(pki / "server.crt")).stdout
    assert "DNS:localhost" in srv and "IP Address:127.0.0.1" in srv and "IP Address:0:0:0:0:0:0:0:1" in srv
    assert "TLS Web Server Authentication" in srv
    openssl("pkey", "-noout", "-in", str(pki / "server.key"))
    # The CA's key matches its certificate.
    pub_crt = openssl("x509", "-noout", "-pubkey", "-in", str(pki / "ca.crt")).stdout
    pub_key = openssl("pkey", "-pubout", "-in", str(pki / "ca.key")).stdout
    assert pub_crt == pub_key

    # A second init refuses; --force replaces; --server-name sets the SAN.
    r = vigil("ca", "init", data_dir=data, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    old = (pki / "ca.crt").read_text()
    vigil("ca", "init", "--force", "--server-name", "broker.test", "--server-name", "10.1.2.3", data_dir=data)
    assert (pki / "ca.crt").read_text() != old
    srv = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(pki / "server.crt")).stdout
    assert "DNS:broker.test" in srv and "IP Address:10.1.2.3" in srv and "localhost" not in srv
    # Both CAs are trusted (devices issued by the old one keep working).
    lines = vigil("ca", "list", "--json", data_dir=data).stdout.splitlines()
    cas = [json.loads(l) for l in lines]
    assert len(cas) == 2 and all(c["status"] == "active" and not c["jitr"] for c in cas)


@pytest.mark.deadline(120)
def test_device_create_verify_list_show(data):
    out = data / "out"
    r = vigil("device", "create", "dev-1", "--out", str(out), "--group", "ward-3", "--group", "icu",
              "--attr", "model=w2", "--attr", "site=north wing", data_dir=data)
    assert "dev-1" in r.stdout
    key, crt, ca = out / "dev-1.key", out / "dev-1.crt", out / "ca.crt"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert ca.read_text() == (data / "pki" / "ca.crt").read_text()
    v = openssl("verify", "-CAfile", str(ca), str(crt)).stdout
    assert v.strip() == "%s: OK" % crt
    openssl("verify", "-CAfile", str(ca), "-purpose", "sslclient", str(crt))
    assert openssl("verify", "-CAfile", str(ca), "-purpose", "sslserver", str(crt), check=False).returncode != 0
    assert subject_cn(crt) == ["dev-1"]
    assert "subject=CN = dev-1" in openssl("x509", "-noout", "-subject", "-in", str(crt)).stdout
    ext = openssl("x509", "-noout", "-ext", "extendedKeyUsage,authorityKeyIdentifier,basicConstraints",
                  "-in", str(crt)).stdout
    assert "TLS Web Client Authentication" in ext and "CA:FALSE" in ext and "Authority Key Identifier" in ext
    assert openssl("x509", "-noout", "-pubkey", "-in", str(crt)).stdout == \
        openssl("pkey", "-pubout", "-in", str(key)).stdout
    serial = openssl("x509", "-noout", "-serial", "-in", str(crt)).stdout.strip().split("=")[1].lower().lstrip("0")
    fp = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", str(crt)).stdout.strip()
    fp = fp.split("=")[1].replace(":", "").lower()

    # An existing id is refused, nothing is overwritten.
    before = crt.read_bytes()
    r = vigil("device", "create", "dev-1", "--out", str(out), data_dir=data, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert crt.read_bytes() == before

    show = json.loads(vigil("device", "show", "dev-1", "--json", data_dir=data).stdout)
    assert show["id"] == "dev-1" and show["status"] == "active" and show["provenance"] == "cli"
    assert show["groups"] == ["ward-3", "icu"]
    assert show["attributes"] == {"model": "w2", "site": "north wing"}
    assert show["lastSeenMs"] == 0 and show["createdMs"] > 0
    assert len(show["certificates"]) == 1
    c = show["certificates"][0]
    assert c["fingerprint"] == fp and c["serial"] == serial and c["status"] == "active"
    text = vigil("device", "show", "dev-1", data_dir=data).stdout
    assert "status       active" in text and fp in text and "ward-3,icu" in text and "model=w2" in text

    listed = vigil("device", "list", data_dir=data).stdout.splitlines()
    assert listed[0].split()[0] == "ID" and listed[1].split()[:2] == ["dev-1", "active"]

    # --count with --prefix: the ids vigil sim uses, every one verifies.
    r = vigil("device", "create", "--count", "25", "--prefix", "w-", "--out", str(out), "--group", "fleet",
              data_dir=data)
    assert "created 25 devices w-000000..w-000024" in r.stdout and "ms per device" in r.stdout
    crts = sorted(str(p) for p in out.glob("w-*.crt"))
    assert len(crts) == 25 and len(list(out.glob("w-*.key"))) == 25
    v = openssl("verify", "-CAfile", str(ca), *crts).stdout
    assert v.count(": OK") == 25
    assert subject_cn(out / "w-000017.crt") == ["w-000017"]
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in out.glob("w-*.key"))
    rows = [json.loads(l) for l in vigil("device", "list", "--json", data_dir=data).stdout.splitlines()]
    assert [d["id"] for d in rows] == ["dev-1"] + ["w-%06d" % i for i in range(25)]
    assert all(d["groups"] == ["fleet"] for d in rows[1:])

    # One existing id in a --count run: nothing of the run is created.
    r = vigil("device", "create", "--count", "30", "--prefix", "w-", "--out", str(out), data_dir=data, check=False)
    assert r.returncode == 1 and "w-000000" in r.stderr
    assert not (out / "w-000029.crt").exists()

    # The default output directory.
    vigil("device", "create", "plain", data_dir=data)
    assert (data / "devices" / "plain.key").exists() and (data / "devices" / "ca.crt").exists()
    openssl("verify", "-CAfile", str(data / "devices" / "ca.crt"), str(data / "devices" / "plain.crt"))


@pytest.mark.deadline(120)
def test_revoke_and_delete(data):
    vigil("device", "create", "r-1", data_dir=data)
    vigil("device", "create", "r-2", data_dir=data)
    r = vigil("device", "revoke", "r-1", data_dir=data)
    assert "revoked" in r.stdout
    show = json.loads(vigil("device", "show", "r-1", "--json", data_dir=data).stdout)
    assert show["status"] == "revoked" and [c["status"] for c in show["certificates"]] == ["revoked"]
    assert "status       revoked" in vigil("device", "show", "r-1", data_dir=data).stdout
    assert json.loads(vigil("device", "show", "r-2", "--json", data_dir=data).stdout)["status"] == "active"
    r = vigil("device", "revoke", "nobody", data_dir=data, check=False)
    assert r.returncode == 1 and "no device" in r.stderr

    vigil("device", "delete", "r-1", data_dir=data)
    r = vigil("device", "show", "r-1", data_dir=data, check=False)
    assert r.returncode == 1 and "no device 'r-1'" in r.stderr
    assert [json.loads(l)["id"] for l in vigil("device", "list", "--json", data_dir=data).stdout.splitlines()] == \
        ["r-2"]
    db = sqlite3.connect(str(data / "registry.db"))
    try:
        assert db.execute("SELECT count(*) FROM certificates WHERE device_id = 'r-1'").fetchone()[0] == 0
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    # Deleted, the id is free again.
    vigil("device", "create", "r-1", data_dir=data)


@pytest.mark.deadline(120)
def test_ca_register(data, tmp_path):
    ca_key, ca_crt = tmp_path / "ext-ca.key", tmp_path / "ext-ca.crt"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "30", "-subj", "/O=Acme/CN=Acme Devices CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    r = vigil("ca", "register", str(ca_crt), "--jitr", data_dir=data)
    assert "registered CA" in r.stdout and "jitr on" in r.stdout
    fp = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", str(ca_crt)).stdout.strip()
    fp = fp.split("=")[1].replace(":", "").lower()
    cas = {c["fingerprint"]: c for c in map(json.loads, vigil("ca", "list", "--json", data_dir=data).stdout.splitlines())}
    assert cas[fp]["jitr"] is True and "Acme Devices CA" in cas[fp]["subject"]
    assert "Acme Devices CA" in vigil("ca", "list", data_dir=data).stdout
    # Registering again updates jitr, nothing else.
    r = vigil("ca", "register", str(ca_crt), data_dir=data)
    assert "already registered" in r.stdout
    cas = {c["fingerprint"]: c for c in map(json.loads, vigil("ca", "list", "--json", data_dir=data).stdout.splitlines())}
    assert cas[fp]["jitr"] is False and len(cas) == 2

    leaf_key, leaf_crt = tmp_path / "leaf.key", tmp_path / "leaf.crt"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(leaf_key), "-out", str(leaf_crt), "-days", "30", "-subj", "/CN=just-a-leaf",
            "-addext", "basicConstraints=critical,CA:FALSE")
    r = vigil("ca", "register", str(leaf_crt), data_dir=data, check=False)
    assert r.returncode == 1 and "not a CA" in r.stderr
    # A device certificate of ours is no CA either; nor is a key file.
    vigil("device", "create", "d", data_dir=data)
    r = vigil("ca", "register", str(data / "devices" / "d.crt"), data_dir=data, check=False)
    assert r.returncode == 1 and "not a CA" in r.stderr
    r = vigil("ca", "register", str(leaf_key), data_dir=data, check=False)
    assert r.returncode == 1 and "no PEM certificate" in r.stderr
    assert len(vigil("ca", "list", "--json", data_dir=data).stdout.splitlines()) == 2


@pytest.mark.deadline(120)
def test_token_and_password_never_stored_in_plaintext(data):
    r = vigil("token", "create", "--role", "operator", "--name", "alice", data_dir=data)
    token = r.stdout.strip()
    assert r.stdout.count("vgt_") == 1 and len(token) == 59 and token.startswith("vgt_")
    assert "vgt_" not in r.stderr and "shown this once" in r.stderr
    r2 = vigil("token", "create", "--role", "operator", data_dir=data)
    assert r2.stdout.strip() != token
    r = vigil("token", "create", "--role", "device", "--name", "ghost", data_dir=data, check=False)
    assert r.returncode == 1 and "no device" in r.stderr
    r = vigil("token", "create", "--role", "king", data_dir=data, check=False)
    assert r.returncode == 2

    vigil("device", "create", "pw-1", data_dir=data)
    password = "horse-battery-staple-42"
    r = vigil("device", "passwd", "pw-1", data_dir=data, stdin=password + "\n")
    assert "password set" in r.stdout
    dtoken = vigil("token", "create", "--role", "device", "--name", "pw-1", data_dir=data).stdout.strip()

    secrets = [token, token[4:], token[16:], dtoken[16:], password]
    for f in registry_files(data):
        blob = f.read_bytes()
        for s in secrets:
            assert s.encode() not in blob, (f, s)
    db = sqlite3.connect(str(data / "registry.db"))
    try:
        rows = db.execute("SELECT id, principal, kind, role, hash FROM credentials ORDER BY created_ms").fetchall()
    finally:
        db.close()
    assert {(r[1], r[2], r[3]) for r in rows} == {("alice", "token", "operator"), ("operator", "token", "operator"),
                                                  ("pw-1", "password", "device"), ("pw-1", "token", "device")}
    assert all(r[4].startswith("$argon2id$v=19$m=19456,t=2,p=1$") for r in rows)
    # The token's id part finds its row; the secret part is only hashed.
    assert ("token:" + token[4:16]) in [r[0] for r in rows]
