"""Fixtures for the integration tests: a live `vigil serve` on a free loopback
port with its own data directory, mosquitto_sub wrappers, and a per-test
deadline so that no test can hang the suite.

Fixtures:
  vigil          a started server with the default test flags
  vigil_factory  make(*extra_args, data_dir=None, port=None, start=True) -> VigilServer
  mqtt_sub       make(topics, qos=1, client_id=None) -> MosquittoSub (started, subscribed)
A server that dies during a test (other than by the test's own stop()/kill9())
turns the test into an error; its stderr is attached to every failure report.

Marker: @pytest.mark.deadline(seconds) overrides the default 90 s limit.
"""

import signal

import pytest

from vigiltest import ALL_SERVERS, MosquittoSub, VigilServer, free_port

DEFAULT_DEADLINE = 90


class DeadlineExceeded(Exception):
    """Raised in the main thread when a test runs past its deadline."""


def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): per-test time limit (default %d s)" % DEFAULT_DEADLINE)


@pytest.fixture(autouse=True)
def _deadline(request):
    m = request.node.get_closest_marker("deadline")
    seconds = int(m.args[0]) if m else DEFAULT_DEADLINE

    def on_alarm(signum, frame):
        raise DeadlineExceeded("test exceeded its %d s deadline" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _servers_of(item):
    found = []
    for v in getattr(item, "funcargs", {}).values():
        if isinstance(v, VigilServer):
            found.append(v)
        for s in getattr(v, "servers", ()) or ():
            if isinstance(s, VigilServer):
                found.append(s)
    seen, out = set(), []
    for s in found:
        if id(s) not in seen:
            seen.add(id(s))
            out.append(s)
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in _servers_of(item):
            rep.sections.append(("vigil server log (port %d, data %s)" % (s.port, s.data_dir), s.log_text()))


class _Factory:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.servers = []

    def __call__(self, *extra_args, data_dir=None, port=None, start=True):
        n = len(self.servers)
        if data_dir is None:
            data_dir = self.tmp_path / ("data%d" % n if n else "data")
            data_dir.mkdir(parents=True, exist_ok=True)
        s = VigilServer(data_dir, self.tmp_path, extra_args, port=port, name="vigil%d" % n)
        self.servers.append(s)
        if start:
            # A port picked by free_port() can be taken by someone else before
            # the server binds it; retry on a fresh port in that case.
            for attempt in range(3):
                try:
                    s.start()
                    break
                except AssertionError as e:
                    if attempt == 2 or port is not None or "in use" not in str(e).lower():
                        raise
                    s.cleanup()
                    s.port = free_port()
        return s

    def finish(self):
        crashed = []
        for s in self.servers:
            if s.proc is not None and s.proc.poll() is not None and not s.expected_exit:
                crashed.append("vigil (port %d) died during the test with exit status %s"
                               % (s.port, s.proc.returncode))
            if s.proc is not None and s.proc.poll() is None:
                s.expected_exit = True
                s.proc.send_signal(signal.SIGTERM)
                try:
                    s.proc.wait(5)
                except Exception:
                    pass
            s.cleanup()
        return crashed


@pytest.fixture
def vigil_factory(tmp_path):
    f = _Factory(tmp_path)
    try:
        yield f
    finally:
        crashed = f.finish()
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)


@pytest.fixture
def vigil(vigil_factory):
    return vigil_factory()


@pytest.fixture
def mqtt_sub():
    subs = []

    def make(server, topics, qos=1, client_id=None):
        s = MosquittoSub(server.host, server.port, topics, qos=qos, client_id=client_id)
        subs.append(s)
        s.wait_subscribed()
        return s

    yield make
    for s in subs:
        s.stop()


def pytest_sessionfinish(session, exitstatus):
    # Belt and braces: no vigil child may outlive the session.
    for s in list(ALL_SERVERS):
        s.cleanup()
