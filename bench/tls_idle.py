#!/usr/bin/python3
"""tls_idle.py — server memory per idle mutual-TLS connection, vigil and
Debian's mosquitto side by side (the cost of a TLS connection that holds
still; OpenSSL's session state dominates it).

usage: /usr/bin/python3 bench/tls_idle.py [N]   (default 2000 connections)

Provisions N devices with vigil's own CLI (`vigil ca init`, `vigil device
create --count N`), then for each server: starts it fresh, reads its VmRSS,
opens N TLS connections with a client certificate each (Python's ssl) and
sends CONNECT (vigil: client id = the certificate's device id, registered;
mosquitto: require_certificate, use_identity_as_username), waits 2 s, reads
VmRSS again. Prints one JSON line per server: connections, rss_before,
rss_after, bytes_per_connection. Needs ~2N open files (raised to the hard
limit).
"""
import json
import os
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VIGIL = os.environ.get("VIGIL_BIN", os.path.join(ROOT, "build", "vigil"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def connect_packet(cid):
    cid = cid.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def wait_port(port, proc, timeout=15):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if proc.poll() is not None:
            raise SystemExit("server exited during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def measure(name, argv, port, plain_port, certs, ca, n):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(plain_port, proc)
        time.sleep(0.5)
        before = rss(proc.pid)
        conns = []
        for i in range(n):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(ca)
            dev = "tm-%06d" % i
            ctx.load_cert_chain(os.path.join(certs, dev + ".crt"), os.path.join(certs, dev + ".key"))
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 10), server_hostname="localhost")
            s.sendall(connect_packet(dev))
            ack = s.recv(4)
            if len(ack) < 4 or ack[0] != 0x20 or ack[3] != 0:
                raise SystemExit("%s refused device %s: %r" % (name, dev, ack))
            conns.append(s)
        time.sleep(2)
        after = rss(proc.pid)
        for s in conns:
            s.close()
        return {"server": name, "connections": n, "rss_before": before, "rss_after": after,
                "bytes_per_connection": round((after - before) / n)}
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="vigil-tls-idle.")
    try:
        data = os.path.join(tmp, "data")
        certs = os.path.join(tmp, "certs")
        subprocess.run([VIGIL, "ca", "init", "--data-dir", data], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([VIGIL, "device", "create", "--count", str(n), "--prefix", "tm-", "--out", certs,
                        "--data-dir", data], check=True, stdout=subprocess.DEVNULL)
        ca = os.path.join(data, "pki", "ca.crt")
        p1, p2 = free_port(), free_port()
        print(json.dumps(measure("vigil", [VIGIL, "serve", "--data-dir", data, "--listen", "127.0.0.1:%d" % p1,
                                           "--ws-listen", "off", "--http-listen", "off", "--tls-listen",
                                           "127.0.0.1:%d" % p2, "--wss-listen", "off", "--https-listen", "off"],
                                 p2, p1, certs, ca, n)), flush=True)
        # mosquitto drops privileges: its copies of the files must be readable by it.
        mq = os.path.join(tmp, "mq")
        os.makedirs(mq)
        for f in ("ca.crt", "server.crt", "server.key"):
            shutil.copy(os.path.join(data, "pki", f), mq)
            os.chmod(os.path.join(mq, f), 0o644)
        os.chmod(tmp, 0o755)
        os.chmod(mq, 0o755)
        p3, p4 = free_port(), free_port()
        conf = os.path.join(mq, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("per_listener_settings false\nallow_anonymous true\npersistence false\n"
                    "listener %d 127.0.0.1\nlistener %d 127.0.0.1\ncafile %s/ca.crt\ncertfile %s/server.crt\n"
                    "keyfile %s/server.key\nrequire_certificate true\nuse_identity_as_username true\n"
                    % (p3, p4, mq, mq, mq))
        # Both listeners share the TLS settings (per_listener_settings false): the
        # plain one is only the start-up probe, so probe the TLS one instead.
        print(json.dumps(measure("mosquitto", ["mosquitto", "-c", conf], p4, p4, certs, ca, n)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
