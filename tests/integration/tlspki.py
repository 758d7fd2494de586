"""tlspki — test certificates made with Debian's `openssl` command.

Owns: a throwaway CA in a directory (EC P-256), a server certificate for
localhost / 127.0.0.1, device certificates — valid, expired, not yet valid —
and a second, foreign CA. Expired and future certificates come from
`openssl ca` with explicit start and end dates (OpenSSL 3.0's `x509 -req`
cannot backdate). Independent of vigil's own `vigil ca` on purpose: the
server must accept what a user's own tooling makes.
"""

import os
import subprocess


def _run(args, cwd):
    r = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise AssertionError("%s failed:\n%s" % (" ".join(args), r.stdout.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


CA_CONF = """[ ca ]
default_ca = test_ca
[ test_ca ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
[ client ]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
keyUsage = digitalSignature
"""


class CA:
    """A CA in directory d: d/ca.key, d/ca.crt."""

    def __init__(self, d, cn="vigil test CA"):
        self.dir = str(d)
        os.makedirs(os.path.join(self.dir, "newcerts"), exist_ok=True)
        self.key = os.path.join(self.dir, "ca.key")
        self.crt = os.path.join(self.dir, "ca.crt")
        _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.key], self.dir)
        _run(["openssl", "req", "-x509", "-new", "-key", self.key, "-subj", "/CN=" + cn, "-days", "30",
              "-out", self.crt, "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], self.dir)
        with open(os.path.join(self.dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(CA_CONF.format(dir=self.dir))

    def _key_csr(self, name, cn):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], self.dir)
        _run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr], self.dir)
        return key, csr

    def server(self, name="server", cn="localhost"):
        """A server certificate for localhost, 127.0.0.1 and ::1; (crt, key)."""
        key, csr = self._key_csr(name, cn)
        crt = os.path.join(self.dir, name + ".crt")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n")
        _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", self.key, "-CAcreateserial",
              "-days", "30", "-sha256", "-out", crt, "-extfile", ext], self.dir)
        return crt, key

    def device(self, device_id, start=None, end=None, name=None):
        """A client certificate with CN = device_id; start/end as
        YYYYMMDDHHMMSSZ (default: now to 30 days on). Returns (crt, key)."""
        name = name or device_id
        key, csr = self._key_csr(name, device_id)
        crt = os.path.join(self.dir, name + ".crt")
        args = ["openssl", "ca", "-batch", "-config", self.conf, "-extensions", "client", "-notext",
                "-cert", self.crt, "-keyfile", self.key, "-in", csr, "-out", crt]
        if start:
            args += ["-startdate", start]
        if end:
            args += ["-enddate", end]
        else:
            args += ["-days", "30"]
        _run(args, self.dir)
        return crt, key


def serial_of(crt):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", crt], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    return out.strip().split("=", 1)[1]
