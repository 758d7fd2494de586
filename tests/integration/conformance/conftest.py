"""Fixtures for the MQTT conformance tests.

The broker under test is chosen by the environment variable
CONFORMANCE_BROKER: "vigil" (default; build/vigil, or $VIGIL_BIN) or
"mosquitto" (/usr/sbin/mosquitto, or $MOSQUITTO_BIN), which is how the tests
themselves are validated against an independent implementation.

Fixtures:
  broker          a started broker with default settings
  broker_factory  make(max_inflight=None, max_packet_size=None, topic_alias_max=None,
                       max_keepalive=None, max_queued_per_client=None, extra_args=(),
                       mosquitto_conf=()) -> Broker (started)
  version         parametrized: 4 (MQTT 3.1.1) and 5 (MQTT 5.0)

A Broker has host, port, kind ("vigil" | "mosquitto"), client(version),
connect(version, client_id=None, **connect_kwargs), restart(kill9=False),
close() and log_text(). restart() keeps the port and the data directory
(vigil) / persistence directory (mosquitto): SIGTERM then start, or SIGKILL
then start with kill9=True.

Markers:
  vigil_only(reason)      runs only against vigil (a behaviour vigil guarantees
                          beyond what mosquitto does, e.g. sessions surviving kill -9)
  mosquitto_bug(reason)   skipped against mosquitto 2.0.11 because of a known
                          deviation of mosquitto from the specification (run them
                          anyway with CONFORMANCE_RUN_KNOWN_BUGS=1: they must fail)
Every test gets a deadline (the parent conftest's `deadline` marker) of
DEFAULT_CONFORMANCE_DEADLINE seconds unless it sets its own.
"""

import os
import signal
import subprocess
import time

import pytest

import mqttraw
from vigiltest import ALL_SERVERS, VigilServer, free_port

BROKER_KIND = os.environ.get("CONFORMANCE_BROKER", "vigil").strip().lower()
MOSQUITTO = os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto")
DEFAULT_CONFORMANCE_DEADLINE = 20
# CONFORMANCE_RUN_KNOWN_BUGS=1 runs the mosquitto_bug tests against mosquitto
# too (they should fail): a check that each recorded deviation is real.
RUN_KNOWN_BUGS = os.environ.get("CONFORMANCE_RUN_KNOWN_BUGS", "") not in ("", "0")

if BROKER_KIND not in ("vigil", "mosquitto"):
    raise pytest.UsageError("CONFORMANCE_BROKER must be 'vigil' or 'mosquitto', not %r" % BROKER_KIND)


def pytest_configure(config):
    config.addinivalue_line("markers", "vigil_only(reason): conformance test that runs only against vigil")
    config.addinivalue_line("markers", "mosquitto_bug(reason): skipped against mosquitto (known deviation)")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if not str(item.fspath).startswith(here):
            continue
        if item.get_closest_marker("deadline") is None:
            item.add_marker(pytest.mark.deadline(DEFAULT_CONFORMANCE_DEADLINE))
        m = item.get_closest_marker("vigil_only")
        if m is not None and BROKER_KIND != "vigil":
            item.add_marker(pytest.mark.skip(reason="vigil only: %s" % (m.args[0] if m.args else "")))
        m = item.get_closest_marker("mosquitto_bug")
        if m is not None and BROKER_KIND == "mosquitto" and not RUN_KNOWN_BUGS:
            item.add_marker(pytest.mark.skip(reason="mosquitto 2.0.11 deviates: %s" % (m.args[0] if m.args else "")))


# ---------------------------------------------------------------------------
# brokers


class MosquittoProcess:
    """One /usr/sbin/mosquitto with a generated config in its own directory."""

    def __init__(self, workdir, port, conf_lines):
        self.workdir = str(workdir)
        self.host = "127.0.0.1"
        self.port = port
        self.conf_lines = list(conf_lines)
        self.proc = None
        self.starts = 0
        self.logs = []
        self.expected_exit = False
        ALL_SERVERS.append(self)  # the parent conftest's cleanup kills leftovers

    def write_conf(self):
        path = os.path.join(self.workdir, "mosquitto.conf")
        lines = ["user root",  # tests run as root; don't drop to 'mosquitto' (it couldn't write here)
                 "listener %d %s" % (self.port, self.host),
                 "allow_anonymous true",
                 "persistence true",
                 "persistence_location %s/" % self.workdir,
                 "autosave_interval 0",
                 "set_tcp_nodelay true",
                 "sys_interval 0",
                 "log_dest stderr",
                 "log_type all",
                 "log_timestamp_format %H:%M:%S"] + self.conf_lines
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self, timeout=10.0):
        conf = self.write_conf()
        self.starts += 1
        log = os.path.join(self.workdir, "mosquitto-%d.log" % self.starts)
        self.logs.append(log)
        with open(log, "wb") as err:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=err, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)
        self.expected_exit = False
        deadline = time.monotonic() + timeout
        import socket
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("mosquitto exited with %s during startup:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError("mosquitto did not accept on port %d within %ss:\n%s"
                                     % (self.port, timeout, self.log_text()))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        self.expected_exit = True
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("mosquitto did not exit within %ss of SIGTERM" % timeout)

    def kill9(self):
        self.expected_exit = True
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.expected_exit = True
            try:
                self.proc.kill()
                self.proc.wait(5)
            except Exception:
                pass

    def log_text(self, limit=30000):
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


class Broker:
    """The broker under test, whichever kind it is."""

    def __init__(self, kind, workdir, name, knobs, extra_args=(), mosquitto_conf=()):
        self.kind = kind
        self.workdir = workdir
        self.knobs = dict(knobs)
        self.clients = []
        workdir.mkdir(parents=True, exist_ok=True)
        if kind == "vigil":
            args = []
            flags = {"max_inflight": "--max-inflight", "max_packet_size": "--max-packet-size",
                     "topic_alias_max": "--topic-alias-max", "max_keepalive": "--max-keepalive",
                     "max_queued_per_client": "--max-queued-per-client"}
            for k, flag in flags.items():
                if self.knobs.get(k) is not None:
                    args += [flag, str(self.knobs[k])]
            data = workdir / "data"
            data.mkdir(exist_ok=True)
            self.proc = VigilServer(data, workdir, args + list(extra_args), name=name)
        else:
            conf = []
            keys = {"max_inflight": "max_inflight_messages", "max_packet_size": "max_packet_size",
                    "topic_alias_max": "max_topic_alias", "max_keepalive": "max_keepalive",
                    "max_queued_per_client": "max_queued_messages"}
            for k, key in keys.items():
                if self.knobs.get(k) is not None:
                    conf.append("%s %s" % (key, self.knobs[k]))
            self.proc = MosquittoProcess(workdir, free_port(), conf + list(mosquitto_conf))

    @property
    def host(self):
        return self.proc.host

    @property
    def port(self):
        return self.proc.port

    @property
    def servers(self):
        """For the parent conftest: vigil logs are attached to failures."""
        return [self.proc] if isinstance(self.proc, VigilServer) else []

    def start(self):
        for attempt in range(3):
            try:
                self.proc.start()
                return self
            except AssertionError as e:
                if attempt == 2 or "in use" not in str(e).lower():
                    raise
                self.proc.cleanup()
                self.proc.port = free_port()
        return self

    def alive(self):
        return self.proc.alive()

    def restart(self, kill9=False):
        """Stops (SIGTERM and a clean exit, or SIGKILL with kill9) and starts
        again on the same port with the same data. Open clients are not
        touched (the server's side of them is gone)."""
        if kill9:
            self.proc.kill9()
        elif self.proc.alive():
            self.proc.stop()
        self.proc.start()
        return self

    def close(self):
        for c in self.clients:
            c.close()
        if self.proc.alive():
            self.proc.expected_exit = True
            try:
                self.proc.stop()
            except AssertionError:
                pass
        self.proc.cleanup()

    def log_text(self):
        return self.proc.log_text()

    # -- clients -------------------------------------------------------------------
    def client(self, version=mqttraw.V311, timeout=5.0, client_id=None):
        """A TCP connection with nothing sent yet."""
        c = mqttraw.Client(self.host, self.port, version, timeout, client_id)
        self.clients.append(c)
        return c

    def connect(self, version=mqttraw.V311, client_id=None, **kw):
        """A connected client (asserts a successful CONNACK)."""
        c = self.client(version)
        c.connect(client_id, **kw)
        return c


class BrokerFactory:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.brokers = []

    def __call__(self, max_inflight=None, max_packet_size=None, topic_alias_max=None, max_keepalive=None,
                 max_queued_per_client=None, extra_args=(), mosquitto_conf=(), start=True):
        n = len(self.brokers)
        knobs = dict(max_inflight=max_inflight, max_packet_size=max_packet_size, topic_alias_max=topic_alias_max,
                     max_keepalive=max_keepalive, max_queued_per_client=max_queued_per_client)
        b = Broker(BROKER_KIND, self.tmp_path / ("broker%d" % n), "%s%d" % (BROKER_KIND, n), knobs,
                   extra_args, mosquitto_conf)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    @property
    def servers(self):
        return [s for b in self.brokers for s in b.servers]

    def finish(self):
        """Stops every broker; returns what went wrong with them: a process
        that died during the test, or one that did not exit cleanly on SIGTERM."""
        problems = []
        for b in self.brokers:
            p = b.proc.proc
            if p is not None and p.poll() is not None and not b.proc.expected_exit:
                problems.append("%s (port %d) died during the test with exit status %s"
                                % (b.kind, b.port, p.returncode))
            elif p is not None and p.poll() is None:
                try:
                    b.proc.stop()
                except AssertionError as e:
                    problems.append("%s (port %d): %s" % (b.kind, b.port, e))
            b.close()
        return problems


@pytest.fixture
def broker_factory(tmp_path):
    f = BrokerFactory(tmp_path)
    try:
        yield f
    finally:
        crashed = f.finish()
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@pytest.fixture(params=[mqttraw.V311, mqttraw.V5], ids=["v311", "v5"])
def version(request):
    return request.param


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and BROKER_KIND == "mosquitto":
        seen = set()
        for v in getattr(item, "funcargs", {}).values():
            brokers = v.brokers if isinstance(v, BrokerFactory) else [v] if isinstance(v, Broker) else []
            for b in brokers:
                if isinstance(b.proc, MosquittoProcess) and id(b) not in seen:
                    seen.add(id(b))
                    rep.sections.append(("mosquitto log (port %d)" % b.port, b.log_text()))
