#!/usr/bin/python3
"""bench/report.py — helpers for bench/run.sh (stdlib only, /usr/bin/python3).

  report.py freeport BASE
      prints the first TCP port >= BASE on 127.0.0.1 that nothing listens on
      and that can be bound (checked by binding it without SO_REUSEADDR/PORT).
  report.py owns-port PORT PID
      exit 0 iff every listener on PORT belongs to PID (ss -ltnp): guards
      against another SO_REUSEPORT server sharing our port.
  report.py set FILE key=value ...   (key+=value appends to a list)
      merges fields into a JSON object file; values that parse as JSON are
      stored as such, anything else as a string.
  report.py runsim --pid PID --out DIR --timeout S [--stats-port P] -- CMD...
      runs the load generator CMD (vigil sim ... --json) while sampling the
      server's VmRSS and CPU time; writes DIR/sim.json (the sim's stdout),
      DIR/sim.err, DIR/rss.tsv and DIR/runsim.json.
      With --cost-window DURATION [--perf-stat 0|1] (cost row (e)) it also
      samples every server thread over the sim's steady window ("cost" in
      runsim.json).
  report.py idlerun --pid PID --out DIR --settle S --window S --timeout S
                    [--perf-stat 0|1] -- CMD...
      runs the idle fleet CMD (build/idle_fleet), waits until every
      connection is up, settles, samples every server thread over the
      window, stops CMD; writes DIR/{sim.json,sim.err,runsim.json}.
  report.py fsyncprobe DIR
      prints the latency of 4 KiB append + fdatasync on DIR's file system
      (what a durable PUBACK waits for at least).
  report.py render WORKDIR OUT.md
      writes the benchmark document from WORKDIR/meta.json and
      WORKDIR/runs/*/{info,runsim,sim}.json (sim.json: `vigil sim --json` for
      rows (a)-(c), build/mqtt_load for the gateway rows (g1)-(g3)) and
      WORKDIR/d.json (build/detect_bench, the detector row (d)); the cost
      row (e) from runsim.json's "cost" (load) and idlerun's runsim.json
      (idle fleet). Sections
      of benchmarks that were not run this time are carried over from the
      existing OUT.md, marked with the date of the run they come from.
"""
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- small utils

def load_json(path, default=None):
    try:
        with open(path) as f:
            text = f.read().strip()
        if not text:
            return default
        try:
            return json.loads(text)
        except ValueError:
            pass
        # The sim prints one JSON object; be tolerant of stray lines.
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        return default
    except (OSError, ValueError):
        return default


def save_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        fields = data[data.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def listen_overflows():
    """TcpExt ListenOverflows of this network namespace (system-wide)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for i in range(0, len(lines) - 1, 2):
            if lines[i].startswith("TcpExt:"):
                keys, vals = lines[i].split()[1:], lines[i + 1].split()[1:]
                return int(dict(zip(keys, vals)).get("ListenOverflows", 0))
    except (OSError, ValueError):
        pass
    return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


# ---------------------------------------------------------------- freeport

def listening_ports():
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    ports = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            local = parts[3]
            try:
                ports.add(int(local.rsplit(":", 1)[1]))
            except ValueError:
                pass
    return ports


def cmd_freeport(args):
    base = int(args[0])
    busy = listening_ports()
    for port in range(base, min(base + 2000, 32768)):
        if port in busy:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        print(port)
        return 0
    print(f"no free port in [{base}, {base + 2000})", file=sys.stderr)
    return 1


def cmd_owns_port(args):
    port, pid = int(args[0]), int(args[1])
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines:
        return 1
    for l in lines:
        pids = set(int(p) for p in re.findall(r"pid=(\d+)", l))
        if pids != {pid}:
            print(f"port {port}: listener not ours: {l.strip()}", file=sys.stderr)
            return 2
    return 0


# ---------------------------------------------------------------- fsyncprobe

def cmd_fsyncprobe(args):
    path = os.path.join(args[0], "fsync-probe.bin")
    n = 300
    ts = []
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            buf = b"x" * 4096
            for _ in range(n):
                os.write(fd, buf)
                t = time.perf_counter()
                os.fdatasync(fd)
                ts.append(time.perf_counter() - t)
        finally:
            os.close(fd)
            os.unlink(path)
    except OSError as e:
        print(f"failed: {e}")
        return 0
    ts.sort()
    print(f"{ts[n // 2] * 1e3:.3f} ms p50, {ts[n * 99 // 100] * 1e3:.3f} ms p99, {ts[-1] * 1e3:.3f} ms max "
          f"({n} × 4 KiB append + fdatasync)")
    return 0


# ---------------------------------------------------------------- set

def cmd_set(args):
    path = args[0]
    obj = load_json(path, {}) or {}
    for kv in args[1:]:
        m = re.match(r"^([A-Za-z0-9_.]+)(\+?)=(.*)$", kv, re.S)
        if not m:
            print(f"set: bad argument {kv!r}", file=sys.stderr)
            return 2
        key, app, val = m.groups()
        try:
            v = json.loads(val)
        except ValueError:
            v = val
        if app:
            obj.setdefault(key, []).append(v)
        else:
            obj[key] = v
    save_json(path, obj)
    return 0


# ---------------------------------------------------------------- runsim

def die_with_parent():
    """In the child before exec: SIGTERM when this wrapper dies, so that a
    killed harness never leaves a load generator running."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------- cost sampling (e)

def read_task(pid, tid):
    """One thread's counters: comm, utime+stime (ticks), voluntary and
    involuntary context switches, and where it sleeps (wchan), or None when
    the thread is gone."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(base + "/stat") as f:
            data = f.read()
        comm = data[data.index("(") + 1:data.rindex(")")]
        fields = data[data.rindex(")") + 2:].split()
        ticks = int(fields[11]) + int(fields[12])
        vol = invol = None
        with open(base + "/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    vol = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol = int(line.split()[1])
        if vol is None or invol is None:
            return None
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(base + "/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        wchan = ""
    try:  # time on the CPU in ns (ticks are 10 ms: too coarse for an idle thread)
        with open(base + "/schedstat") as f:
            run_ns = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        run_ns = None
    return {"comm": comm, "ticks": ticks, "run_ns": run_ns, "vol": vol, "invol": invol, "wchan": wchan}


class TaskSampler:
    """Counters of every thread of a process over a window.

    /proc/PID/status of the main thread covers only that thread, and no
    /proc file sums context switches over a process's threads (dead ones
    included), so every thread is read from /proc/PID/task/*/ at the start,
    at every sample() and at the end. A thread that appears later started
    inside the window (all its switches count); one that disappears exited
    inside it and counts up to its last sample (its last < 1 s are missing:
    reported as `exited`). CPU time comes from /proc/PID/stat, which includes
    threads that exited."""

    def __init__(self, pid):
        self.pid = pid
        self.seen = {}  # tid -> {"first": snapshot or None (born in the window), "last": snapshot, "wchans": {}}
        self.series = []  # [seconds since start, CPU s, switches] per sample
        self.t0 = self.cpu0 = None
        self.tids0 = set()
        self.last = None

    def _read(self):
        t = time.monotonic()
        cpu = cpu_s(self.pid)
        tasks = {}
        try:
            names = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            names = []
        for name in names:
            snap = read_task(self.pid, name)
            if snap:
                tasks[int(name)] = snap
        return t, cpu, tasks

    def _note(self, tasks, at_start):
        for tid, snap in tasks.items():
            e = self.seen.get(tid)
            if e is None:
                e = self.seen[tid] = {"first": snap if at_start else None, "last": snap, "wchans": {}}
            e["last"] = snap
            w = snap["wchan"]
            if w and w != "0":
                e["wchans"][w] = e["wchans"].get(w, 0) + 1

    def begin(self):
        self.t0, self.cpu0, tasks = self._read()
        self.tids0 = set(tasks)
        self._note(tasks, True)
        self.last = (self.t0, self.cpu0, set(tasks))

    def sample(self):
        t, cpu, tasks = self._read()
        if not tasks:  # the process is gone: keep the last real sample
            return
        self._note(tasks, False)
        self.last = (t, cpu, set(tasks))
        sw = sum(self._delta(e)[1] + self._delta(e)[2] for e in self.seen.values())
        self.series.append([round(t - self.t0, 3), None if cpu is None or self.cpu0 is None else round(cpu - self.cpu0, 2), sw])

    @staticmethod
    def _delta(e):
        f, l = e["first"] or {"ticks": 0, "run_ns": 0, "vol": 0, "invol": 0}, e["last"]
        if f["run_ns"] is not None and l["run_ns"] is not None:
            cpu = (l["run_ns"] - f["run_ns"]) / 1e9
        else:
            cpu = (l["ticks"] - f["ticks"]) / CLK_TCK
        return cpu, l["vol"] - f["vol"], l["invol"] - f["invol"]

    def result(self):
        t1, cpu1, tids1 = self.last
        threads = []
        for tid in sorted(self.seen):  # tids grow with creation order
            e = self.seen[tid]
            cpu, vol, invol = self._delta(e)
            w = max(e["wchans"].items(), key=lambda kv: kv[1])[0] if e["wchans"] else ""
            threads.append({"tid": tid, "main": tid == self.pid, "comm": e["last"]["comm"], "wchan": w,
                            "cpu_s": round(cpu, 4), "vol": vol, "invol": invol,
                            "born": e["first"] is None, "exited": tid not in tids1})
        return {
            "seconds": round(t1 - self.t0, 3),
            "cpu_s": None if cpu1 is None or self.cpu0 is None else round(cpu1 - self.cpu0, 3),
            "vol": sum(t["vol"] for t in threads), "invol": sum(t["invol"] for t in threads),
            "threads_start": len(self.tids0), "threads_end": len(tids1),
            "born": sum(t["born"] for t in threads), "exited": sum(t["exited"] for t in threads),
            "threads": threads, "series": self.series,
        }


class PerfStat:
    """`perf stat -e context-switches,task-clock -p PID` from start to
    stop(): a cross-check of the /proc sums that also counts threads that
    exited (perf's counters are inherited by new threads and fold exited
    ones into the total). perf attaches a few ms after start, so compare
    rates, not totals."""

    def __init__(self, pid, path):
        self.path = path
        self.t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(["perf", "stat", "-x,", "-e", "context-switches,task-clock", "-p", str(pid),
                                          "-o", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent)
        except OSError as e:
            self.proc, self.error = None, str(e)

    def stop(self):
        if not self.proc:
            return {"status": "failed", "reason": self.error}
        t1 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        res = {"status": "ok", "seconds": round(t1 - self.t0, 3)}
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) < 3 or line.startswith("#"):
                        continue
                    try:
                        v = float(parts[0])
                    except ValueError:
                        res["status"] = "failed"
                        res["reason"] = f"perf: {line.strip()}"
                        continue
                    if parts[2].startswith("context-switches"):
                        res["context_switches"] = int(v)
                    elif parts[2].startswith("task-clock"):
                        res["task_clock_ms"] = v
        except OSError as e:
            res = {"status": "failed", "reason": f"no perf output: {e}"}
        if res.get("status") == "ok" and "context_switches" not in res:
            res = {"status": "failed", "reason": "perf printed no context-switches count"}
        return res


CONN_RE = re.compile(r"connected (\d+)/(\d+)")
FAIL_RE = re.compile(r"\(failed (\d+), lost (\d+)\)")
PROG_RE = re.compile(r"^\[\s*([\d.]+)s\] connected (\d+)/(\d+).*?sent (\d+)\s+acked (\d+)\s+rate (\d+)/s"
                     r".*?p99 ack ([\d.]+) ms")


def cmd_runsim(args):
    pid = out = None
    timeout = 600.0
    stats_port = None
    cost_duration = None
    perf_stat = False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            cmd = args[i + 1:]
            break
        if a == "--pid":
            pid = int(args[i + 1])
        elif a == "--out":
            out = args[i + 1]
        elif a == "--timeout":
            timeout = float(args[i + 1])
        elif a == "--stats-port":
            stats_port = int(args[i + 1])
        elif a == "--cost-window":
            cost_duration = float(args[i + 1])
        elif a == "--perf-stat":
            perf_stat = args[i + 1] == "1"
        else:
            print(f"runsim: unknown option {a}", file=sys.stderr)
            return 2
        i += 2
    else:
        print("runsim: missing -- CMD", file=sys.stderr)
        return 2

    res = {"cmd": cmd}
    # Idle: the server has been up for a moment; take the last of a few samples.
    idle = None
    for _ in range(3):
        idle = rss_kb(pid) or idle
        time.sleep(0.2)
    res["rss_idle_kb"] = idle
    cpu0 = cpu_s(pid)
    lo0 = listen_overflows()
    t0 = time.monotonic()

    state = {"max_conn": 0, "rss_at_max_conn": None, "t_max_conn": None, "all_connected": False,
             "t_all": None, "rss_all": None, "devices": None, "stats_procs": [], "progress": []}
    lock = threading.Lock()
    rss_log = open(os.path.join(out, "rss.tsv"), "w")
    rss_log.write("t_s\trss_kb\tcpu_s\tevent\n")

    def grab_stats(tag):
        # vigil only: one $SYS/vigil/stats message (memory per subsystem etc.).
        if not stats_port:
            return
        try:
            p = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(stats_port), "-t",
                                  "$SYS/vigil/stats", "-C", "1", "-W", "5"],
                                 stdout=open(os.path.join(out, f"stats_{tag}.json"), "w"),
                                 stderr=subprocess.DEVNULL)
            state["stats_procs"].append(p)
        except OSError:
            pass

    sim_out = open(os.path.join(out, "sim.json"), "w")
    sim_err = open(os.path.join(out, "sim.err"), "w")
    try:
        proc = subprocess.Popen(cmd, stdout=sim_out, stderr=subprocess.PIPE, text=True, bufsize=1,
                                preexec_fn=die_with_parent)
    except OSError as e:
        res["error"] = f"cannot start the sim: {e}"
        save_json(os.path.join(out, "runsim.json"), res)
        return 1

    def on_term(signum, frame):
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    # Cost row (e): the steady window runs from the first progress line that
    # shows every device connected (or given up on) to the last line before
    # the send phase ends (the sim's clock starts with its send phase, so
    # that is the last line with t + 1 >= duration, the lines coming once a
    # second); the server's threads are sampled on each line in between.
    cost = {"sampler": None, "perf": None, "start": None, "end": None, "last": None}

    def cost_finish():
        smp = cost["sampler"]
        res["cost"] = {"start": cost["start"], "end": cost["last"], "window": smp.result(),
                       "perf": cost["perf"].stop() if cost["perf"] else {"status": "skipped"}}
        cost["end"] = cost["last"]
        st, en = cost["start"], cost["last"]
        res["cost"]["events_acked"] = en["acked"] - st["acked"]
        res["cost"]["events_sent"] = en["sent"] - st["sent"]
        res["cost"]["sim_seconds"] = round(en["t"] - st["t"], 3)

    def cost_line(t, c, tot, failed, sent, acked):
        if cost["end"] is not None:
            return
        line_ = {"t": t, "connected": c, "sent": sent, "acked": acked}
        if cost["sampler"] is None:
            if c + failed >= tot and t + 2 <= cost_duration:
                if perf_stat:
                    cost["perf"] = PerfStat(pid, os.path.join(out, "perf_stat.txt"))
                smp = TaskSampler(pid)
                smp.begin()
                cost["sampler"], cost["start"], cost["last"] = smp, line_, line_
            return
        if t >= cost_duration:  # the last line inside the send phase was missed
            cost_finish()
            return
        cost["sampler"].sample()
        cost["last"] = line_
        if t + 1 >= cost_duration:
            cost_finish()

    def reader():
        for line in proc.stderr:
            sim_err.write(line)
            pm = PROG_RE.search(line)
            if pm:
                t, c, tot, sent, acked, rate_, p99 = pm.groups()
                state["progress"].append([float(t), int(c), int(tot), int(sent), int(acked), int(rate_), float(p99)])
                if cost_duration:
                    fm = FAIL_RE.search(line)
                    try:
                        cost_line(float(t), int(c), int(tot), int(fm.group(1)) if fm else 0, int(sent), int(acked))
                    except Exception as e:  # a sampling fault must not stop the reader
                        res["cost_error"] = f"{type(e).__name__}: {e}"
                        cost["end"] = cost["end"] or {}
            m = CONN_RE.search(line)
            if not m:
                continue
            n, total = int(m.group(1)), int(m.group(2))
            r = rss_kb(pid)
            now = time.monotonic() - t0
            with lock:
                state["devices"] = total
                if n > state["max_conn"]:
                    state["max_conn"], state["rss_at_max_conn"], state["t_max_conn"] = n, r, now
                if n >= total and not state["all_connected"]:
                    state["all_connected"], state["t_all"], state["rss_all"] = True, now, r
                    rss_log.write(f"{now:.2f}\t{r}\t{cpu_s(pid)}\tall-connected\n")
                    grab_stats("connected")
        sim_err.flush()

    th = threading.Thread(target=reader, daemon=True)
    th.start()

    peak = idle or 0
    timed_out = False
    server_died_at = None
    while True:
        try:
            rc = proc.wait(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic() - t0
        r = rss_kb(pid)
        if r is not None:
            peak = max(peak, r)
        elif server_died_at is None:
            server_died_at = now
        with lock:
            rss_log.write(f"{now:.2f}\t{r}\t{cpu_s(pid)}\t\n")
        if now > timeout and not timed_out:
            timed_out = True
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
                break
    wall = time.monotonic() - t0
    th.join(timeout=5)
    if cost_duration:
        if cost["sampler"] is not None and cost["end"] is None:
            cost_finish()
        elif cost["sampler"] is None:
            res["cost_error"] = "no steady window: the sim never showed every device connected with 2 s of its send phase left"
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = cpu_s(pid)
    lo1 = listen_overflows()
    time.sleep(0.5)  # let the server settle after the last connection closes
    after = rss_kb(pid)
    for p in state["stats_procs"]:
        try:
            p.wait(timeout=6)
        except subprocess.TimeoutExpired:
            p.kill()
    rss_log.close()
    sim_out.close()
    sim_err.close()
    res.update({
        "sim_rc": rc,
        "timed_out": timed_out,
        "wall_s": round(wall, 3),
        "rss_peak_kb": peak,
        "rss_after_kb": after,
        "rss_all_connected_kb": state["rss_all"],
        "t_all_connected_s": state["t_all"],
        "max_connected_seen": state["max_conn"],
        "rss_at_max_connected_kb": state["rss_at_max_conn"],
        "server_cpu_s": (cpu1 - cpu0) if (cpu0 is not None and cpu1 is not None) else None,
        "sim_cpu_s": ru.ru_utime + ru.ru_stime,
        "server_alive_after": alive(pid),
        "server_died_at_s": server_died_at,
        "progress": state["progress"],
        "listen_overflows": (lo1 - lo0) if lo0 is not None and lo1 is not None else None,
    })
    save_json(os.path.join(out, "runsim.json"), res)
    return 0


# ---------------------------------------------------------------- idlerun (e)

IDLE_RE = re.compile(r"^\[\s*([\d.]+)s\] connected (\d+)/(\d+)\s+failed (\d+)\s+lost (\d+)\s+pings (\d+)\s+pongs (\d+)")


def cmd_idlerun(args):
    """idlerun --pid PID --out DIR --settle S --window S --timeout S
    [--perf-stat 0|1] -- CMD...: runs the idle fleet CMD
    (build/idle_fleet), waits until every connection is up (or given up
    on), lets the server settle, samples its threads over the window, then
    stops CMD with SIGTERM. Writes DIR/sim.json (CMD's stdout),
    DIR/sim.err and DIR/runsim.json."""
    pid = out = None
    settle, window, timeout, perf_stat = 5.0, 30.0, 300.0, False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            cmd = args[i + 1:]
            break
        v = args[i + 1] if i + 1 < len(args) else None
        if a == "--pid":
            pid = int(v)
        elif a == "--out":
            out = v
        elif a == "--settle":
            settle = float(v)
        elif a == "--window":
            window = float(v)
        elif a == "--timeout":
            timeout = float(v)
        elif a == "--perf-stat":
            perf_stat = v == "1"
        else:
            print(f"idlerun: unknown option {a}", file=sys.stderr)
            return 2
        i += 2
    else:
        print("idlerun: missing -- CMD", file=sys.stderr)
        return 2

    res = {"cmd": cmd, "settle_s": settle, "window_s": window}
    idle = None
    for _ in range(3):
        idle = rss_kb(pid) or idle
        time.sleep(0.2)
    res["rss_idle_kb"] = idle
    t0 = time.monotonic()
    sim_out = open(os.path.join(out, "sim.json"), "w")
    sim_err = open(os.path.join(out, "sim.err"), "w")
    try:
        proc = subprocess.Popen(cmd, stdout=sim_out, stderr=subprocess.PIPE, text=True, bufsize=1,
                                preexec_fn=die_with_parent)
    except OSError as e:
        res["error"] = f"cannot start the idle fleet: {e}"
        save_json(os.path.join(out, "runsim.json"), res)
        return 1

    def on_term(signum, frame):
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    latest = {}
    ready = threading.Event()

    def reader():
        for line in proc.stderr:
            sim_err.write(line)
            m = IDLE_RE.search(line)
            if not m:
                continue
            t, c, tot, failed, lost, pings, pongs = m.groups()
            latest.update(t=float(t), connected=int(c), total=int(tot), failed=int(failed), lost=int(lost),
                          pings=int(pings), pongs=int(pongs), at=time.monotonic())
            if int(c) + int(failed) >= int(tot):
                ready.set()
        sim_err.flush()

    th = threading.Thread(target=reader, daemon=True)
    th.start()

    def wait_until(deadline):
        """Sleeps until deadline (monotonic); False if the fleet exited."""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return True

    ok = False
    while time.monotonic() - t0 < timeout:
        if ready.wait(0.25):
            ok = True
            break
        if proc.poll() is not None:
            break
    if not ok:
        res["error"] = ("the idle fleet exited before every connection was up" if proc.poll() is not None
                        else f"not every connection was up after {timeout:.0f} s")
    else:
        res["t_all_connected_s"] = round(time.monotonic() - t0, 3)
        res["rss_all_connected_kb"] = rss_kb(pid)
        res["fleet_at_all_connected"] = dict(latest)
        if wait_until(time.monotonic() + settle):
            pstat = PerfStat(pid, os.path.join(out, "perf_stat.txt")) if perf_stat else None
            smp = TaskSampler(pid)
            smp.begin()
            res["rss_window_start_kb"] = rss_kb(pid)
            f0 = dict(latest)
            end = smp.t0 + window
            alive_ = True
            while alive_ and time.monotonic() < end:
                alive_ = wait_until(min(end, time.monotonic() + 1.0))
                smp.sample()
            res["window"] = smp.result()
            res["perf"] = pstat.stop() if pstat else {"status": "skipped"}
            res["rss_window_end_kb"] = rss_kb(pid)
            f1 = dict(latest)
            res["fleet_window_start"], res["fleet_window_end"] = f0, f1
            if not alive_:
                res["error"] = "the idle fleet exited during the window"
        else:
            res["error"] = "the idle fleet exited while the server settled"
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    th.join(timeout=5)
    sim_out.close()
    sim_err.close()
    res.update({"sim_rc": rc, "wall_s": round(time.monotonic() - t0, 3), "server_alive_after": alive(pid)})
    save_json(os.path.join(out, "runsim.json"), res)
    return 0


# ---------------------------------------------------------------- render

def fnum(v, nd=0):
    if v is None:
        return "n/a"
    if isinstance(v, float) and nd == 0 and abs(v) >= 100:
        return f"{v:,.0f}"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    return f"{v:,.{nd}f}"


def fms(v):
    return "n/a" if v is None else f"{v:.3f}"


def fmib(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f}"


def mark(ok):
    if ok is None:
        return "n/a"
    return "**met**" if ok else "**not met**"


class Run:
    """One server + one sim run, as recorded under WORKDIR/runs/<id>."""

    def __init__(self, d):
        self.dir = d
        self.id = os.path.basename(d)
        self.info = load_json(os.path.join(d, "info.json"), {}) or {}
        self.rs = load_json(os.path.join(d, "runsim.json"), {}) or {}
        self.sim = load_json(os.path.join(d, "sim.json"), None)
        self.stats = load_json(os.path.join(d, "stats_connected.json"), None)

    @property
    def kind(self):
        return self.info.get("kind", "")

    @property
    def is_vigil(self):
        return self.kind.startswith("vigil")

    @property
    def is_gw(self):
        return self.kind.endswith("-gw")

    @property
    def errors(self):
        e = list(self.info.get("errors", []))
        if self.rs.get("timed_out"):
            e.append("the load generator did not finish in time and was stopped (SIGTERM)")
        if self.rs and self.rs.get("server_alive_after") is False:
            at = self.rs.get("server_died_at_s")
            e.append("the server was not running at the end of the load"
                     + (f" (gone at ~{at:.1f} s into the run)" if at is not None else ""))
        if self.rs and self.rs.get("sim_rc") not in (0, None):
            e.append(f"the sim exited with status {self.rs.get('sim_rc')}")
        if self.info.get("ran") and self.sim is None:
            e.append("the sim printed no JSON report")
        return e

    def s(self, *path):
        v = self.sim
        for p in path:
            if not isinstance(v, dict) or p not in v:
                return None
            v = v[p]
        return v

    def acked_per_s(self):
        a, d = self.s("acked"), self.s("duration_s")
        return a / d if a is not None and d else None

    def steady_rate(self):
        """Median of the sim's per-second send rates once the connected count
        reached its final value (every device, unless some failed to
        connect), from the next second on, within the send phase: the rate
        without the connect ramp."""
        dur = self.s("duration_s")
        pts = self.rs.get("progress") or []
        t_all = None
        final = max((p[1] for p in pts), default=0)
        for t, c, tot, *_ in pts:
            if c >= final and final:
                t_all = t
                break
        if t_all is None or not dur:
            return None
        rates = sorted(r for t, c, tot, sent, acked, r, p99 in pts if t >= t_all + 1 and t <= dur)
        if not rates:
            return None
        return rates[len(rates) // 2]

    def lat(self, which, p):
        h = self.s(which)
        if not h or not h.get("count"):
            return None
        return h.get(p)

    def mem_per_conn_b(self, key="rss_all_connected_kb"):
        idle, conn = self.rs.get("rss_idle_kb"), self.rs.get(key)
        n = self.s("connected")
        if key == "rss_all_connected_kb" and conn is None:
            conn, n = self.rs.get("rss_at_max_connected_kb"), self.rs.get("max_connected_seen") or n
        if idle is None or conn is None or not n:
            return None
        return (conn - idle) * 1024 / n

    def cpu_pct(self, key):
        c, w = self.rs.get(key), self.rs.get("wall_s")
        return 100 * c / w if c is not None and w else None

    def stored(self):
        return self.info.get("stored_telemetry")


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def result_rows(runs, alerts=True, memory=False):
    """Metric rows, one column per run."""
    def col(f):
        return [f(r) if r.sim is not None else "n/a" for r in runs]

    def na_alert(r, v):
        return v if r.is_vigil else "n/a"

    rows = [
        ["devices connected / connect failures"] + col(lambda r: f"{fnum(r.s('connected'))} / {fnum(r.s('connect_failures'))}"),
        ["events sent"] + col(lambda r: fnum(r.s("sent"))),
        ["events acked (PUBACK)"] + col(lambda r: fnum(r.s("acked"))),
        ["failed (never acked)"] + col(lambda r: fnum(r.s("failed"))),
        ["disconnects during run"] + col(lambda r: fnum(r.s("disconnects"))),
        ["throughput sent (events/s)"] + col(lambda r: fnum(r.s("throughput_eps"))),
        ["throughput acked (events/s)"] + col(lambda r: fnum(r.acked_per_s())),
        ["steady send rate after connecting (events/s, median of per-second rates)"] + col(lambda r: fnum(r.steady_rate())),
        ["sends deferred (in-flight window or buffer full)"] + col(lambda r: fnum(r.s("deferred"))),
    ]
    for p in ("p50", "p95", "p99", "max"):
        rows.append([f"publish→PUBACK {p} (ms)"] + col(lambda r, p=p: fms(r.lat("puback_latency_ms", p))))
    # The same, only for publishes sent once every device of a sim worker was
    # connected: whether the connect ramp is what sets the tail.
    for p in ("p50", "p99"):
        rows.append([f"publish→PUBACK {p}, fleet connected (ms)"] +
                    col(lambda r, p=p: fms(r.lat("puback_latency_connected_ms", p))))
    if alerts:
        for p in ("p50", "p95", "p99", "max"):
            rows.append([f"publish→alert {p} (ms)"] +
                        col(lambda r, p=p: na_alert(r, fms(r.lat("alert_latency_ms", p)))))
        rows += [
            ["anomalies injected"] + col(lambda r: fnum(r.s("anomalies", "injected"))),
            ["anomalies detected / missed"] + col(lambda r: na_alert(
                r, f"{fnum(r.s('anomalies', 'detected'))} / {fnum(r.s('anomalies', 'missed'))}")),
            ["false alerts"] + col(lambda r: na_alert(r, fnum(r.s("false_alerts")))),
        ]
    rows += [
        ["telemetry records on disk after stop"] + [
            (fnum(r.stored()) if r.stored() is not None else "n/a (see notes)") if r.is_vigil
            else "n/a (not stored)" for r in runs],
        ["server RSS idle (MiB)"] + [fmib(r.rs.get("rss_idle_kb")) for r in runs],
        ["server RSS all connected (MiB)"] + [fmib(r.rs.get("rss_all_connected_kb") or r.rs.get("rss_at_max_connected_kb")) for r in runs],
        ["server RSS peak (MiB)"] + [fmib(r.rs.get("rss_peak_kb")) for r in runs],
        ["server RSS after load (MiB)"] + [fmib(r.rs.get("rss_after_kb")) for r in runs],
    ]
    if memory:
        rows.append(["server memory per connection (bytes): (RSS all connected − idle) / connections"] +
                    [fnum(r.mem_per_conn_b()) for r in runs])
        rows.append(["same, from peak RSS (bytes)"] + [fnum(r.mem_per_conn_b("rss_peak_kb")) for r in runs])
    rows += [
        ["TCP listen-queue overflows during the run (system-wide)"] + [fnum(r.rs.get("listen_overflows")) for r in runs],
        ["server CPU (% of one core, over the run)"] + [fnum(r.cpu_pct("server_cpu_s")) for r in runs],
        ["load generator CPU (% of one core)"] + [fnum(r.cpu_pct("sim_cpu_s")) for r in runs],
        ["server stop time after SIGTERM (s)"] + [fnum(r.info.get("stop_s"), 2) for r in runs],
        ["server log warnings / errors"] + [f"{fnum(r.info.get('log_warn'))} / {fnum(r.info.get('log_error'))}" for r in runs],
    ]
    return rows


def commands_block(runs):
    lines = []
    for r in runs:
        lines.append(f"# {r.info.get('label', r.id)}")
        if r.info.get("server_cmd"):
            lines.append(r.info["server_cmd"])
        if r.info.get("mosquitto_conf"):
            lines.append("# " + r.info.get("mosquitto_conf_path", "mosquitto.conf") + ":")
            lines += ["#   " + l for l in r.info["mosquitto_conf"].splitlines()]
        if r.info.get("sim_cmd"):
            lines.append(r.info["sim_cmd"])
        lines.append("")
    return "```sh\n" + "\n".join(lines).rstrip() + "\n```"


def anomalies(r):
    """Things in a finished row that look wrong, in words."""
    out = []
    if r.sim is None:
        return out
    if r.is_gw:
        return gw_anomalies(r)
    if r.info.get("bench") == "e-idle":
        return idle_anomalies(r)
    if r.info.get("bench") in ("t1", "t2"):
        return t_anomalies(r)
    if r.info.get("bench") in ("e", "t3"):
        out += cost_anomalies(r)
    g = r.s
    if g("connect_failures"):
        msg = f"{fnum(g('connect_failures'))} of {fnum(g('devices'))} devices could not connect"
        lo = r.rs.get("listen_overflows")
        if lo:
            msg += (f" ({fnum(lo)} TCP listen-queue overflows during the run, system-wide"
                    + ("; mosquitto 2.0 listens with a fixed backlog of 100 while the sim keeps up to 1,000 "
                       "handshakes in flight per worker, and a connection not up within the sim's 10 s "
                       "connect timeout counts as failed" if r.kind == "mosquitto" else "") + ")")
        out.append(msg)
    if g("failed"):
        out.append(f"{fnum(g('failed'))} events were never acknowledged")
    if g("disconnects"):
        out.append(f"{fnum(g('disconnects'))} connections were lost during the run")
    if g("qos") == 1 and g("acked") is not None and g("sent") is not None and g("acked") < g("sent") and not g("failed"):
        out.append(f"acked {fnum(g('acked'))} < sent {fnum(g('sent'))}")
    # Stalls: a second of the send phase (after connecting) far below the
    # steady rate, or a run that took much longer than asked.
    steady = r.steady_rate()
    dur = g("duration_s")
    if steady and dur:
        final = max((p[1] for p in r.rs.get("progress") or []), default=0)
        t_conn = next((p[0] for p in r.rs.get("progress") or [] if final and p[1] >= final), None)
        low = [(p[0], p[5]) for p in r.rs.get("progress") or []
               if t_conn is not None and t_conn + 1 <= p[0] <= dur and p[5] < 0.25 * steady]
        if low:
            out.append(f"send rate fell below a quarter of the steady {fnum(steady)}/s in {len(low)} second(s) "
                       f"(first at {low[0][0]:.1f} s: {fnum(low[0][1])}/s) — a stall of the server, the "
                       "load generator or the machine")
    wall = r.rs.get("wall_s")
    if wall and dur and wall > dur + 15:
        out.append(f"the sim ran {wall:.1f} s for a {dur:.0f} s send phase (drain is at most 3 s)")
    if (r.info.get("stop_s") or 0) > 5:
        out.append(f"the server took {r.info['stop_s']:.1f} s to stop after SIGTERM")
    if r.is_vigil:
        if g("anomalies", "missed"):
            out.append(f"{fnum(g('anomalies', 'missed'))} injected anomalies raised no alert")
        if g("false_alerts"):
            out.append(f"{fnum(g('false_alerts'))} false alerts")
        st = r.stored()
        if st is not None and g("acked") is not None and st < g("acked"):
            out.append(f"only {fnum(st)} telemetry records on disk for {fnum(g('acked'))} acked events (loss)")
    return out


def notes_block(runs):
    out = []
    for r in runs:
        errs = r.errors + anomalies(r)
        for e in errs:
            out.append(f"- **{r.info.get('label', r.id)}**: {e}")
        for w in r.info.get("log_lines", [])[:8]:
            out.append(f"- {r.info.get('label', r.id)} server log: `{w.strip()[:300]}`")
    return out


def vigil_mem_block(runs):
    lines = []
    for r in runs:
        if r.is_vigil and r.stats:
            mem = {k[len("memory."):]: v for k, v in r.stats.items() if k.startswith("memory.")}
            if mem:
                parts = ", ".join(f"{k} {v / 1048576:.1f} MiB" for k, v in mem.items())
                lines.append(f"- {r.info.get('label', r.id)}: vigil's own accounting when all devices were "
                             f"connected (`$SYS/vigil/stats`, {fnum(r.stats.get('connections.current'))} "
                             f"connections): {parts}.")
    return lines


# ---------------------------------------------------------------- gateway rows

def gw_step(r, name):
    """The mqtt_load step called name (a phase), or the bulk step."""
    for st in (r.sim or {}).get("steps", []) if r else []:
        if (name == "bulk" and st.get("step") == "bulk") or (st.get("step") == "phase" and st.get("name") == name):
            return st
    return None


def gw_lat(st, hist, p):
    h = (st or {}).get(hist) or {}
    return h.get(p) if h.get("count") else None


def gw_get(st, key):
    return None if st is None else st.get(key)


def gw_anomalies(r):
    out = []
    g = r.s
    if g("connect_failures"):
        out.append(f"{fnum(g('connect_failures'))} of {fnum(g('connections'))} connections could not be set up")
    if g("disconnects"):
        out.append(f"{fnum(g('disconnects'))} connections were lost during the run")
    if g("protocol_errors"):
        out.append(f"{fnum(g('protocol_errors'))} unexpected packets from the server")
    if g("suback_failures"):
        out.append(f"{fnum(g('suback_failures'))} subscriptions refused in SUBACKs")
    if g("interrupted"):
        out.append("the load generator was interrupted before its last step")
    if g("first_error"):
        out.append(f"load generator: {g('first_error')}")
    for st in g("steps") or []:
        if st.get("step") != "phase":
            continue
        name = st.get("name")
        if st.get("lost_deliveries") or st.get("incomplete"):
            out.append(f"{name}: {fnum(st.get('incomplete'))} messages did not reach every subscriber within "
                       f"{g('msg_timeout_s')} s ({fnum(st.get('lost_deliveries'))} deliveries missing)")
        for k, what in (("duplicates", "repeated or out-of-order deliveries"),
                        ("late", "deliveries after the message was given up on (late)"),
                        ("ack_timeouts", "publishes not acknowledged by the end of the drain"),
                        ("late_acks", "acks after the end of the drain"), ("ack_errors", "publishes refused")):
            if st.get(k):
                out.append(f"{name}: {fnum(st.get(k))} {what}")
        off, pr = st.get("rate_offered") or 0, st.get("publish_rate") or 0
        if off and pr < 0.95 * off:
            out.append(f"{name}: published {fnum(pr)}/s of the {fnum(off)}/s offered (the publishers' window "
                       "was full: the server or the machine did not keep up)")
    if (r.info.get("stop_s") or 0) > 5:
        out.append(f"the server took {r.info['stop_s']:.1f} s to stop after SIGTERM")
    return out


def gw_cmp_table(rv, rm, rows):
    """rows: (label, f(run) -> number or None, fmt, better) with better 'high',
    'low' or None (no comparison). Returns (markdown, labels where mosquitto
    is ahead by more than 10 %)."""
    out, behind = [], []
    for label, f, fmt, better in rows:
        v = f(rv) if rv and rv.sim is not None else None
        m = f(rm) if rm and rm.sim is not None else None
        ratio, ahead = "", ""
        if better and isinstance(v, (int, float)) and isinstance(m, (int, float)) and v > 0 and m > 0:
            q = v / m
            ratio = f"{q:.2f}"
            good = q if better == "high" else 1 / q
            ahead = "vigil" if good > 1.1 else "mosquitto" if good < 1 / 1.1 else "≈"
            if ahead == "mosquitto":
                behind.append(label)
        out.append([label, fmt(v), fmt(m), ratio, ahead])
    return table(["metric", "vigil", "mosquitto 2.0", "vigil ÷ mosquitto", "ahead (> 10 %)"], out), behind


def gw_behind_line(behind):
    if not behind:
        return "vigil is not behind mosquitto by more than 10 % on any compared row."
    return "vigil is behind mosquitto by more than 10 % on: " + "; ".join(behind) + "."


def fpct(v):
    return "n/a" if v is None else f"{v:.1f}"


def gw_rss_peak(r):
    return r.rs.get("rss_peak_kb") / 1024 if r and r.rs.get("rss_peak_kb") else None


def gw_lost(r):
    """'lost / late / duplicate' over all phases of a row."""
    if not r or r.sim is None:
        return None
    t = [0, 0, 0]
    for st in r.s("steps") or []:
        if st.get("step") == "phase":
            t[0] += st.get("lost_deliveries") or 0
            t[1] += st.get("late") or 0
            t[2] += st.get("duplicates") or 0
    return " / ".join(fnum(x) for x in t)


def gw_commands(rs):
    return commands_block([r for r in rs if r])


def render_g1(meta, runs):
    p = meta.get("g1", {})
    L = ["## (g1) 100 publishers → 1 subscriber, QoS 0 / 1 / 2", ""]
    L.append(f"{fnum(p.get('publishers'))} publisher connections, each on its own topic `bench/<i>`; one subscriber "
             "on `#` subscribed at the QoS of the row; 64-byte payloads. Each row runs two phases on one "
             f"server: **paced** — {fnum(p.get('rate'))} messages/s in total for {p.get('paced_s')} s, a load "
             "both servers carry, so its latencies are the servers' own; then **flat out** for "
             f"{p.get('flat_s')} s — each publisher keeps at most {p.get('window')} messages not yet delivered "
             "to the subscriber (a closed loop of "
             f"{fnum((p.get('publishers') or 0) * (p.get('window') or 0))} messages in flight), so the "
             "delivered rate is what the server sustains and flat-out latencies are mostly time spent "
             "queued in that window (Little's law: in flight ÷ rate). Ack latency is publish→PUBACK (QoS 1) "
             "or publish→PUBCOMP (QoS 2) at the publisher. vigil routes these topics without its telemetry "
             "stream; its durable telemetry path is measured by (a)–(c).")
    L.append("")
    allrows = []
    for qos in (0, 1, 2):
        rv, rm = runs.get(f"g1q{qos}_vigil"), runs.get(f"g1q{qos}_mosquitto")
        L += [f"### QoS {qos}", ""]
        if not rv and not rm:
            L += ["_not run_", ""]
            continue
        allrows += [rv, rm]
        ack = "PUBACK" if qos == 1 else "PUBCOMP"
        F, P = (lambda r: gw_step(r, "flat")), (lambda r: gw_step(r, "paced"))
        rows = [
            ["flat out: messages/s delivered to the subscriber", lambda r: gw_get(F(r), "deliveries_per_s"), fnum, "high"],
        ]
        for pp, nm in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            rows.append([f"flat out: publish→delivery {nm} (ms)", lambda r, pp=pp: gw_lat(F(r), "latency_ms", pp), fms, "low"])
        if qos:
            for pp in ("p50", "p99"):
                rows.append([f"flat out: publish→{ack} {pp} (ms)", lambda r, pp=pp: gw_lat(F(r), "ack_latency_ms", pp), fms, "low"])
        rows.append(["flat out: server CPU (% of one core)", lambda r: gw_get(F(r), "server_cpu_pct"), fpct, None])
        rows.append(["flat out: load generator CPU (% of one core)", lambda r: gw_get(F(r), "loadgen_cpu_pct"), fpct, None])
        rows.append([f"paced: messages/s published (offered {fnum(p.get('rate'))})",
                     lambda r: gw_get(P(r), "publish_rate"), fnum, None])
        for pp, nm in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            rows.append([f"paced: publish→delivery {nm} (ms)", lambda r, pp=pp: gw_lat(P(r), "latency_ms", pp), fms, "low"])
        if qos:
            for pp in ("p50", "p99"):
                rows.append([f"paced: publish→{ack} {pp} (ms)", lambda r, pp=pp: gw_lat(P(r), "ack_latency_ms", pp), fms, "low"])
        rows.append(["paced: server CPU (% of one core)", lambda r: gw_get(P(r), "server_cpu_pct"), fpct, "low"])
        rows.append(["server RSS peak (MiB)", gw_rss_peak, lambda v: "n/a" if v is None else f"{v:.1f}", "low"])
        rows.append(["deliveries lost / late / repeated (both phases)", gw_lost, lambda v: v or "n/a", None])
        tab, behind = gw_cmp_table(rv, rm, rows)
        L += [tab, "", gw_behind_line([f"QoS {qos} {b}" for b in behind]), ""]
    if allrows:
        L += ["Commands:", "", gw_commands(allrows), ""]
    return L


def render_g2(meta, runs):
    p = meta.get("g2", {})
    n = p.get("subscribers")
    L = [f"## (g2) Fan-out: 1 publisher → {fnum(n)} subscribers", ""]
    L.append(f"{fnum(n)} subscriber connections in one load-generator process (the open-file limit raised to the "
             "hard limit), all subscribed to `bench/fanout` at QoS 1, and one publisher. Four phases of "
             f"{p.get('seconds')} s on one server: QoS 0 at {fnum(p.get('rate'))} messages/s, QoS 0 flat out, "
             f"QoS 1 at {fnum(p.get('rate'))} messages/s, QoS 1 flat out (a QoS 0 publish is delivered at QoS 0 "
             "to a QoS 1 subscription, §3.8.4). Flat out = the publisher keeps at most "
             f"{p.get('window')} messages not yet received by every subscriber. *Until the last subscriber* is "
             "the time from publish until the last of the subscribers got the message; *per delivery* is "
             "publish→delivery over all deliveries. The load generator reads all subscriber sockets in one "
             "thread, so the spread of a message over the subscribers includes its own reading time. A message "
             "not at every subscriber within 10 s counts as lost (its later deliveries as late); after such a "
             "phase the next one waits until deliveries stop arriving for 1 s (at most 120 s, *drain* row), "
             "so that it does not start behind the previous phase's backlog.")
    L.append("")
    rv, rm = runs.get("g2_vigil"), runs.get("g2_mosquitto")
    if not rv and not rm:
        return L + ["_not run_", ""]
    rows = [
        ["setup: subscribers connected and subscribed in (s)", lambda r: r.s("setup_s"), lambda v: fnum(v, 2), "low"],
        ["server memory per subscriber connection (bytes): (RSS after setup − idle) ÷ connections",
         lambda r: ((gw_get(gw_step(r, "q0-paced"), "server_rss_start_kb") or 0) - (r.rs.get("rss_idle_kb") or 0)) * 1024
         / r.s("connections") if gw_step(r, "q0-paced") and r.rs.get("rss_idle_kb") and r.s("connections") else None,
         fnum, "low"],
    ]
    for ph, title in (("q0-paced", f"QoS 0, {fnum(p.get('rate'))} msg/s"), ("q0-flat", "QoS 0, flat out"),
                      ("q1-paced", f"QoS 1, {fnum(p.get('rate'))} msg/s"), ("q1-flat", "QoS 1, flat out")):
        S = (lambda r, ph=ph: gw_step(r, ph))
        rows += [
            [f"{title}: messages published", lambda r, S=S: gw_get(S(r), "published"), fnum, None],
            [f"{title}: deliveries/s", lambda r, S=S: gw_get(S(r), "deliveries_per_s"), fnum, "high"],
            [f"{title}: until the last subscriber p50 (ms)", lambda r, S=S: gw_lat(S(r), "last_latency_ms", "p50"), fms, "low"],
            [f"{title}: until the last subscriber p99 (ms)", lambda r, S=S: gw_lat(S(r), "last_latency_ms", "p99"), fms, "low"],
            [f"{title}: per delivery p50 (ms)", lambda r, S=S: gw_lat(S(r), "latency_ms", "p50"), fms, "low"],
            [f"{title}: per delivery p99 (ms)", lambda r, S=S: gw_lat(S(r), "latency_ms", "p99"), fms, "low"],
            [f"{title}: server CPU (% of one core)", lambda r, S=S: gw_get(S(r), "server_cpu_pct"), fpct,
             "low" if "paced" in ph else None],
            [f"{title}: drain after publishing stopped (s)", lambda r, S=S: gw_get(S(r), "drain_s"),
             lambda v: fnum(v, 2), None],
        ]
    rows += [
        ["server RSS peak (MiB)", gw_rss_peak, lambda v: "n/a" if v is None else f"{v:.1f}", "low"],
        ["deliveries lost / late / repeated (all phases)", gw_lost, lambda v: v or "n/a", None],
    ]
    tab, behind = gw_cmp_table(rv, rm, rows)
    return L + [tab, "", gw_behind_line(behind), "", "Commands:", "", gw_commands([rv, rm]), ""]


def render_g3(meta, runs):
    p = meta.get("g3", {})
    nf = p.get("filters")
    L = [f"## (g3) Matching with {fnum(nf)} subscriptions", ""]
    L.append(f"One publisher publishes to `alerts/0` at {fnum(p.get('rate'))} messages/s (QoS 0) for "
             f"{p.get('seconds')} s while the only subscription is `alerts/0` (held by one of "
             f"{fnum(p.get('holders'))} idle connections); then those connections subscribe `alerts/1` … "
             f"`alerts/{fnum((nf or 1) - 1)}` ({fnum(p.get('per_packet'))} filters per SUBSCRIBE, so "
             f"{fnum(nf)} distinct subscriptions in all, one of which matches), and the same publisher runs "
             "again. If matching a topic does not depend on unrelated subscriptions, latency and server CPU "
             "of the two phases are the same. Memory per subscription = (RSS 1 s after the last SUBACK − RSS "
             "before subscribing) ÷ filters added.")
    L.append("")
    rv, rm = runs.get("g3_vigil"), runs.get("g3_mosquitto")
    if not rv and not rm:
        return L + ["_not run_", ""]
    O, A, B = (lambda r: gw_step(r, "one")), (lambda r: gw_step(r, "all")), (lambda r: gw_step(r, "bulk"))
    mib = (lambda v: "n/a" if v is None else f"{v / 1024:.1f}")

    def rel(r, f):
        a, b = f(A(r)), f(O(r))
        return a / b if a is not None and b else None

    rows = []
    for S, t in ((O, "1 subscription"), (A, f"{fnum(nf)} subscriptions")):
        rows += [
            [f"{t}: messages/s published", lambda r, S=S: gw_get(S(r), "publish_rate"), fnum, None],
            [f"{t}: publish→delivery p50 (ms)", lambda r, S=S: gw_lat(S(r), "latency_ms", "p50"), fms, "low"],
            [f"{t}: publish→delivery p99 (ms)", lambda r, S=S: gw_lat(S(r), "latency_ms", "p99"), fms, "low"],
            [f"{t}: publish→delivery p99.9 (ms)", lambda r, S=S: gw_lat(S(r), "latency_ms", "p999"), fms, "low"],
            [f"{t}: server CPU (% of one core)", lambda r, S=S: gw_get(S(r), "server_cpu_pct"), fpct, "low"],
        ]
    rows += [
        [f"p50 with {fnum(nf)} ÷ p50 with 1 (same server)", lambda r: rel(r, lambda s: gw_lat(s, "latency_ms", "p50")),
         lambda v: "n/a" if v is None else f"{v:.2f}", None],
        [f"p99 with {fnum(nf)} ÷ p99 with 1 (same server)", lambda r: rel(r, lambda s: gw_lat(s, "latency_ms", "p99")),
         lambda v: "n/a" if v is None else f"{v:.2f}", None],
        [f"server CPU with {fnum(nf)} ÷ with 1 (same server)", lambda r: rel(r, lambda s: gw_get(s, "server_cpu_pct")),
         lambda v: "n/a" if v is None else f"{v:.2f}", None],
        ["subscribing: time until the last SUBACK (s)", lambda r: gw_get(B(r), "seconds"), lambda v: fnum(v, 2), "low"],
        ["subscribing: subscriptions/s", lambda r: gw_get(B(r), "subscriptions_per_s"), fnum, "high"],
        ["subscribing: server CPU (s)", lambda r: gw_get(B(r), "server_cpu_s"), lambda v: fnum(v, 2), "low"],
        ["server RSS before subscribing (MiB)", lambda r: gw_get(B(r), "server_rss_before_kb"), mib, None],
        ["server RSS after subscribing (MiB)", lambda r: gw_get(B(r), "server_rss_after_kb"), mib, "low"],
        ["server memory per subscription (bytes)", lambda r: gw_get(B(r), "bytes_per_subscription"), fnum, "low"],
        ["deliveries lost / late / repeated (both phases)", gw_lost, lambda v: v or "n/a", None],
    ]
    tab, behind = gw_cmp_table(rv, rm, rows)
    return L + [tab, "", gw_behind_line(behind), "", "Commands:", "", gw_commands([rv, rm]), ""]


def gw_method(meta):
    g = meta.get("gw", {})
    return [
        "- **Gateway rows (g1)–(g3)**: load generator `build/mqtt_load` (`bench/mqtt_load.c`, built by `make "
        "bench`): MQTT 3.1.1, every connection of a row (publishers and subscribers) in one process on one "
        "epoll thread, encoding and decoding with vigil's codec (`src/mqtt/codec.c`). Each PUBLISH carries its "
        f"send time in its {g.get('payload', 64)}-byte payload, so publish→delivery latency needs no clock "
        "sync; latencies go into log-linear histograms (< 0.4 % bucket error). It reads the server's CPU "
        "time (utime+stime, `/proc/PID/stat`) and RSS at the start and end of each phase's publishing "
        "window, so *server CPU* covers exactly that window. It checks every delivery: lost (not at every "
        "subscriber within 10 s), late, repeated or out of order per publisher — all counted in the tables.",
        "- The gateway rows use topics other than vigil's telemetry topic (`bench/…`, `alerts/…`), so vigil "
        "routes them in memory and never touches its stream (`--fsync none` is passed only to make that "
        "explicit); vigil's telemetry path, with its fsync, is what (a)–(c) measure.",
        f"- Both servers get the same limits, raised so that neither drops a message at these rates: "
        f"vigil `--max-inflight-out {g.get('inflight')} --max-queued-per-client {fnum(g.get('queued'))} "
        f"--max-outbuf {fnum(g.get('outbuf'))} --max-subs-per-packet {meta.get('g3', {}).get('per_packet')}`; "
        f"mosquitto `max_inflight_messages {g.get('inflight')}`, `max_queued_messages {fnum(g.get('queued'))}`, "
        "`persistence false` and `set_tcp_nodelay true` (vigil sets TCP_NODELAY on every connection; "
        "mosquitto's default leaves Nagle's algorithm on, which holds its small PUBACKs until the peer's "
        "delayed ACK — in a trial, p99 publish→delivery at 10,000 QoS 1 messages/s was ~25 ms with Nagle "
        "and ~4 ms without). Commands and mosquitto.conf are under each table.",
        "- *vigil ÷ mosquitto* divides the two columns; *ahead* names the server that is better by more than "
        "10 % (higher is better for rates, lower for latency, CPU and memory). CPU rows of flat-out phases "
        "are not compared: each server does a different amount of work there.",
        f"- The machine has {meta.get('nproc', '?')} cores, shared by the server under test, the load "
        "generator (one thread, its CPU is shown) and anything else running at the time (load average at "
        "the top of the page): flat-out rates are those of server + load generator on 2 shared cores, "
        "and latency tails include scheduling delays.",
    ]


# ---------------------------------------------------------------- detectors (d)

def d_method():
    return [
        "- **Detector row (d)**: `build/detect_bench` (`bench/detect_bench.c`, built by `make bench`), one "
        "thread, no server and no network. It runs the processor's per-record path on a synthetic fleet: "
        "device table lookup, every detector (`vg_devstate_feed`: quality, rest, extreme, sudden, baseline), "
        "the alert lifecycle when a detector reports a condition, the device's next deadline in the timer "
        "wheel, and the wheel's due devices (`vg_devstate_tick`: gaps, offline). Not in it: reading and "
        "decoding records from the stream, rendering and appending alerts. Each device's first event "
        "(which creates it) is untimed; then every round sends one event per device, 5 s of event time "
        "apart, in a fresh random device order (so a device's state is rarely in cache); a round's events "
        "are generated before its clock starts. *ns per event* is wall time ÷ timed events; *CPU ns* is "
        "the thread's CPU time ÷ timed events (equal on an idle machine; on a busy one the CPU figure is the "
        "cost and the wall figure includes waiting for a core). Table bytes come from vigil's allocator "
        "accounting (`VG_MEM_DETECT`, charged only by the device table: entries, slot array, ids longer "
        "than 31 bytes), RSS per device is (VmRSS after the run − VmRSS before the first device) ÷ devices "
        "and includes the wheel and the allocator's slack.",
    ]


def render_d(meta, d):
    """The (d) section and its target rows, from detect_bench's JSON (or None
    when it did not run or printed nothing)."""
    p = meta.get("d", {})
    L = ["## (d) Detectors: cost per event and memory per device", ""]
    L.append(f"{fnum(p.get('devices'))} devices × {fnum(p.get('events_per_device'))} events each through the "
             "processor's per-record path on one thread (method above).")
    L.append("")
    cmd = meta.get("d_cmd") or "build/detect_bench DEVICES EVENTS_PER_DEVICE"
    L += ["```sh", "make build/detect_bench      # make bench builds it", cmd,
          f"# or, through the harness: BENCH_ONLY=d{'' if float(meta.get('scale', 1)) == 1 else ' BENCH_SCALE=' + str(meta.get('scale'))} bench/run.sh",
          "```", ""]
    if not d:
        return L + ["_not run: detect_bench printed no report (see the notes)._", ""],             [("(d)", "per-device detector state ≤ 512 bytes", "run failed", None)]

    def gib(per_device):
        return None if per_device is None else per_device * 1e7 / 2 ** 30

    def fgib(v):
        return "n/a" if v is None else f"{v:.2f}"

    ns, cns = d.get("ns_per_event"), d.get("cpu_ns_per_event")
    state, tab, wheel, rss = (d.get("state_bytes"), d.get("table_bytes_per_device"),
                              d.get("wheel_bytes_per_device"), d.get("rss_bytes_per_device"))
    per_core = 1e9 / cns if cns else None
    state_ok = None if state is None else state <= 512
    L.append(table(["metric", "value"], [
        ["timed events (devices × events per device, less a few silent minutes)",
         f"{fnum(d.get('events'))} ({fnum(d.get('devices'))} × {fnum(d.get('events_per_device'))})"],
        ["ns per event (wall)", fnum(ns, 1)],
        ["CPU ns per event (thread CPU time)", fnum(cns, 1)],
        ["**events/s per core** (10⁹ ÷ CPU ns per event)", f"**{fnum(per_core)}**"],
        ["events/s, wall clock", fnum(d.get("events_per_s"))],
        ["**state bytes per device** (`sizeof(vg_devstate_t)`, target ≤ 512)",
         f"**{fnum(state)}** ({mark(state_ok)})"],
        ["table bytes per device (allocator accounting: entry = state + inline id, slot array, growth slack)",
         fnum(tab, 1)],
        ["deadline wheel bytes per device (allocator accounting)", fnum(wheel, 1)],
        ["RSS per device (table + wheel as resident: room reserved but never touched is not in it)", fnum(rss, 1)],
        ["condition reports (active or not) / alert events (open, update, resolve) / deadline ticks",
         f"{fnum(d.get('conditions'))} / {fnum(d.get('alert_events'))} / {fnum(d.get('ticks'))}"],
        ["timed run: wall s / CPU s", f"{fnum(d.get('seconds'), 2)} / {fnum(d.get('cpu_seconds'), 2)}"],
        ["load average before / after the row", f"{meta.get('d_load_before', '?')} / {meta.get('d_load_after', '?')}"],
    ]))
    L.append("")
    tw = None if tab is None or wheel is None else tab + wheel
    L.append("What 10 million devices would need (per-device figures above × 10⁷; the table's growth slack at "
             "10 million — entries grow by 1.25×, the slot array by 2× — differs from the one measured here, so "
             "take the table rows as ± 20 %):")
    L.append("")
    L.append(table(["for 10,000,000 devices", "GiB"], [
        ["detector state alone (`sizeof(vg_devstate_t)` × 10⁷)", fgib(gib(state))],
        ["device table (allocator accounting)", fgib(gib(tab))],
        ["device table + deadline wheel", fgib(gib(tw))],
        ["RSS", fgib(gib(rss))],
        ["per core at the CPU ns above: time for one event from every device",
         "n/a" if not cns else f"{cns * 1e7 / 1e9:.2f} s"],
    ]))
    L.append("")
    targets = [("(d)", "per-device detector state ≤ 512 bytes (`sizeof(vg_devstate_t)`)",
                f"{fnum(state)} bytes", state_ok),
               ("(d)", "(reference) 10 million devices: device table + wheel, and RSS",
                f"{fgib(gib(tw))} GiB (accounting), {fgib(gib(rss))} GiB (RSS)", None),
               ("(d)", "(reference) detector events/s per core", f"{fnum(per_core)} ({fnum(cns, 1)} CPU ns/event)",
                None)]
    bad = [k for k in ("slot_overflows", "wheel_oom") if d.get(k)]
    if bad:
        L.append("Flagged: " + ", ".join(f"{k} = {fnum(d.get(k))}" for k in bad) + ".")
        L.append("")
    return L, targets


# ---------------------------------------------------------------- cost (e)

def e_method(meta):
    p = meta.get("e", {})
    return [
        f"- **Cost row (e)**, load: the workload of (a) — `vigil sim` with {fnum(p.get('devices'))} devices × 1 event / "
        f"{p.get('interval')} s, QoS 1, {p.get('duration')} s — on vigil (default `--fsync always`) and on mosquitto "
        "(same configuration as (a)–(c)), each a fresh server, one after the other in the same run; no "
        "`$SYS/vigil/stats` client is attached (every wake-up of the server counts). **Steady window**: it opens "
        "at the first progress line of the sim (one a second) that shows every device connected or given up on "
        "and closes at the last line before the sim's send phase ends (the sim's clock starts with its send "
        "phase, so the last line with t + 1 s ≥ duration); the harness samples the server when it reads each "
        "of those lines. *Events* are the sim's PUBACK count at the closing line minus that at the opening line "
        "(the sim's counts are its workers' per-second snapshots, ~0.1 s before the line; the /proc samples are "
        "taken ~0.1 s after it at both ends, so both windows have the same length to within scheduling delay).",
        "- *Server CPU* is utime+stime of the whole process from `/proc/PID/stat` (all threads, including ones "
        "that exited) at the two ends of the window; per million events = CPU s ÷ events × 10⁶. *Context "
        "switches* are voluntary + involuntary switches (`voluntary_ctxt_switches`, "
        "`nonvoluntary_ctxt_switches`) summed over every thread in `/proc/PID/task/*/status` — the main "
        "thread's `/proc/PID/status` counts only that thread, and /proc has no per-process total that includes "
        "exited threads, so every thread is read at the start, once a second and at the end: a thread that "
        "appears started inside the window (all its switches count), one that disappears exited inside it "
        "and counts up to its last sample (the *born / exited* row says whether that happened). `perf stat -e "
        "context-switches,task-clock -p PID` runs over the same window as a cross-check (it follows new threads "
        "and keeps exited threads' counts; it attaches a few ms late, so its rate per second is compared; it only "
        "counts, it does not sample).",
        "- *Per-thread breakdown*: the same counters per thread, in creation order (thread ids grow with "
        "creation); per-thread CPU is the thread's run time in ns (`/proc/PID/task/TID/schedstat`), so it "
        "can differ from the process total in the last digit; with its name (`/proc/PID/task/TID/comm`) and where it sleeps most often "
        "(`/proc/PID/task/TID/wchan` at the samples; kernel function names, e.g. `do_epoll_wait` = an epoll "
        "loop, `futex_do_wait` = a condition variable or mutex, `do_sigtimedwait` = a signal wait, "
        "`do_nanosleep` = a timed sleep). Threads that are not named (one `comm` for all) are told apart by "
        "creation order, which is the same from run to run of one build.",
        "- *RSS per connection* (load): (VmRSS at the first progress line with every device connected − VmRSS "
        "idle before the sim) ÷ connections, as in (b); the devices already publish then. (idle fleet): (VmRSS "
        "at the start of the idle window − VmRSS idle) ÷ connections, with nothing else happening.",
        f"- **Idle fleet**: a fresh server holds {fnum(p.get('idle_connections'))} MQTT 3.1.1 connections from "
        "`build/idle_fleet` (`bench/idle_fleet.c`, built by `make bench`; one process, one epoll thread, at most "
        "100 handshakes in flight, clean sessions, client ids `idle-<i>`) that publish and subscribe nothing, "
        f"keepalive {p.get('keepalive')} s. Each connection sends PINGREQ every keepalive; connection i's first "
        "one goes i/N of a keepalive after its CONNACK, so the fleet's pings arrive evenly "
        f"({fnum((p.get('idle_connections') or 0) / (p.get('keepalive') or 1))}/s), as from devices that connected "
        "at random times, instead of in one burst a keepalive after the connect ramp. Once every connection is "
        f"up, the server settles {p.get('settle_s')} s, then CPU and context switches are sampled as above over "
        f"{p.get('window_s')} s; *CPU % of one core* = CPU s ÷ window s × 100.",
    ]


def cost_of(r):
    return (r.rs.get("cost") or {}) if r and r.rs else {}


def cost_win(r):
    return cost_of(r).get("window") or {}


def cost_events(r):
    ev = cost_of(r).get("events_acked")
    return ev if ev else None


def cost_cpu_per_m(r):
    cpu, ev = cost_win(r).get("cpu_s"), cost_events(r)
    return cpu / ev * 1e6 if cpu is not None and ev else None


def cost_sw(w):
    return (w.get("vol") or 0) + (w.get("invol") or 0) if w else None


def cost_sw_per_event(r):
    w, ev = cost_win(r), cost_events(r)
    return cost_sw(w) / ev if w and ev else None


def idle_win(r):
    return (r.rs.get("window") or {}) if r and r.rs else {}


def idle_cpu_pct(r):
    w = idle_win(r)
    return 100 * w["cpu_s"] / w["seconds"] if w.get("cpu_s") is not None and w.get("seconds") else None


def idle_sw_per_s(r, which=None):
    w = idle_win(r)
    if not w.get("seconds"):
        return None
    v = cost_sw(w) if which is None else (w.get(which) or 0)
    return v / w["seconds"]


def idle_mem_per_conn(r):
    if not r or not r.rs:
        return None
    idle, at = r.rs.get("rss_idle_kb"), r.rs.get("rss_window_start_kb")
    n = (r.sim or {}).get("connected_max")
    return (at - idle) * 1024 / n if idle is not None and at is not None and n else None


def perf_rate(perf, key):
    if not perf or perf.get("status") != "ok" or not perf.get("seconds"):
        return None
    v = perf.get(key)
    return v / perf["seconds"] if v is not None else None


def f2(v):
    return "n/a" if v is None else f"{v:,.2f}"


def f3(v):
    return "n/a" if v is None else f"{v:,.3f}"


def idle_anomalies(r):
    out = []
    g = r.sim or {}
    if r.rs.get("error"):
        out.append(r.rs["error"])
    if g.get("connect_failures"):
        out.append(f"{fnum(g['connect_failures'])} of {fnum(g.get('connections'))} idle connections could not be "
                   "set up")
    if g.get("disconnects"):
        out.append(f"{fnum(g['disconnects'])} idle connections were lost")
    if g.get("ping_timeouts"):
        out.append(f"{fnum(g['ping_timeouts'])} PINGREQs got no PINGRESP within a keepalive")
    if g.get("unexpected_packets"):
        out.append(f"{fnum(g['unexpected_packets'])} unexpected packets from the server")
    w = idle_win(r)
    if w.get("exited") or w.get("born"):
        out.append(f"server threads born / exited during the idle window: {w.get('born')} / {w.get('exited')}")
    if (r.info.get("stop_s") or 0) > 5:
        out.append(f"the server took {r.info['stop_s']:.1f} s to stop after SIGTERM")
    return out


def cost_anomalies(r):
    out = []
    if r.rs.get("cost_error"):
        out.append(f"cost window: {r.rs['cost_error']}")
    w = cost_win(r)
    if w.get("exited") or w.get("born"):
        out.append(f"server threads born / exited during the steady window: {w.get('born')} / {w.get('exited')} "
                   "(an exited thread's switches after its last sample, < 1 s, are missing)")
    pf = cost_of(r).get("perf") or {}
    if pf.get("status") == "failed":
        out.append(f"perf stat cross-check failed: {pf.get('reason')}")
    return out


def thread_group(comm):
    """A thread name without its trailing number: 'vg-worker-3' -> 'vg-worker-*'."""
    m = re.match(r"^(.*?)[-_:/ ]?\d+$", comm)
    return (m.group(1) + "-*") if m and m.group(1) else comm


def thread_rows(threads, per, per_label, seconds=None, fmt=f3):
    """Per-thread breakdown rows. per: divisor for the switches column
    (events for the load window, seconds for the idle one)."""
    tot_sw = sum(t["vol"] + t["invol"] for t in threads) or 1
    tot_cpu = sum(t["cpu_s"] for t in threads) or 0
    rows = []
    for i, t in enumerate(threads):
        sw = t["vol"] + t["invol"]
        flags = ", ".join(x for x, on in (("main", t.get("main")), ("born in window", t.get("born")),
                                          ("exited in window", t.get("exited"))) if on)
        cpu = (f"{t['cpu_s']:.2f}" if seconds is None else f"{100 * t['cpu_s'] / seconds:.2f}") if seconds != 0 else "n/a"
        rows.append([i, t["tid"] if not flags else f"{t['tid']} ({flags})", f"`{t['comm']}`",
                     f"`{t['wchan']}`" if t["wchan"] else "", cpu,
                     fnum(t["vol"]), fnum(t["invol"]), fmt(sw / per) if per else "n/a", f"{100 * sw / tot_sw:.1f}"])
    header = ["#", "tid", "name (comm)", "sleeps in (wchan)", "CPU s" if seconds is None else "CPU % of a core",
              "voluntary", "involuntary", per_label, "share of switches %"]
    groups = {}
    for t in threads:
        g = groups.setdefault(thread_group(t["comm"]), [0, 0.0, 0])
        g[0] += 1
        g[1] += t["cpu_s"]
        g[2] += t["vol"] + t["invol"]
    grows = None
    if len(groups) > 1:
        grows = [[f"`{k}`", n, f"{c:.2f}" if seconds is None else f"{100 * c / seconds:.2f}" if seconds else "n/a",
                  fnum(sw), fmt(sw / per) if per else "n/a", f"{100 * sw / tot_sw:.1f}"]
                 for k, (n, c, sw) in sorted(groups.items(), key=lambda kv: -kv[1][2])]
        grows = (["thread group", "threads", "CPU s" if seconds is None else "CPU % of a core", "switches",
                  per_label, "share %"], grows)
    return header, rows, grows, tot_cpu


def render_e(meta, runs):
    p = meta.get("e", {})
    L = ["## (e) Cost: CPU and context switches per event, memory per connection, an idle fleet", ""]
    L.append(f"The load of (a) — {fnum(p.get('devices'))} devices × 1 event / {p.get('interval')} s (≈ "
             f"{fnum(p.get('offered'))} events/s), QoS 1, {p.get('duration')} s — measured over its steady window "
             "(every device connected, up to the end of the send phase; method above) on each server; then "
             f"each server fresh again with {fnum(p.get('idle_connections'))} connected devices that publish "
             f"nothing (keepalive {p.get('keepalive')} s, PINGREQs spread evenly), measured over "
             f"{p.get('window_s')} s. vigil is durable (`--fsync always`), mosquitto is not (as in (a)).")
    L.append("")
    rv, rm = runs.get("e_vigil"), runs.get("e_mosquitto")
    iv, im = runs.get("e_idle_vigil"), runs.get("e_idle_mosquitto")
    if not any((rv, rm, iv, im)):
        return L + ["_not run_", ""], [("(e)", "cost row", "not run", None)]
    L += ["Commands:", "", commands_block([r for r in (rv, rm, iv, im) if r]), ""]

    n_idle = p.get("idle_connections")
    # The comparison table: one column per server; the idle rows come from
    # the server's idle run, looked up by kind.
    idle_of = {"vigil": iv, "mosquitto": im}

    def I(f):
        return lambda r: f(idle_of.get(r.kind)) if r is not None else None

    def W(key):
        return lambda r: cost_win(r).get(key)

    rows = [
        ["load: steady window, sim clock (s)", lambda r: (cost_of(r).get("start") or {}).get("t"),
         lambda v: "n/a" if v is None else f"from {v:.1f}", None],
        ["load: … to (s)", lambda r: (cost_of(r).get("end") or {}).get("t"), lambda v: "n/a" if v is None else f"{v:.1f}", None],
        ["load: window length, server samples (s)", W("seconds"), f2, None],
        ["load: events acked in the window", cost_events, fnum, None],
        ["load: events/s in the window", lambda r: cost_events(r) / cost_of(r)["sim_seconds"]
         if cost_events(r) and cost_of(r).get("sim_seconds") else None, fnum, None],
        ["load: server CPU in the window (s)", W("cpu_s"), f2, None],
        ["load: server CPU (% of one core)", lambda r: 100 * cost_win(r)["cpu_s"] / cost_win(r)["seconds"]
         if cost_win(r).get("cpu_s") is not None and cost_win(r).get("seconds") else None, lambda v: "n/a" if v is None else f"{v:.1f}", "low"],
        ["**load: server CPU-seconds per million events**", cost_cpu_per_m, f2, "low"],
        ["load: context switches in the window, voluntary / involuntary",
         lambda r: (cost_win(r).get("vol"), cost_win(r).get("invol")) if cost_win(r) else None,
         lambda v: "n/a" if v is None else f"{fnum(v[0])} / {fnum(v[1])}", None],
        ["**load: context switches per event** (all threads)", cost_sw_per_event, f3, "low"],
        ["load: context switches/s (/proc, all threads)", lambda r: cost_sw(cost_win(r)) / cost_win(r)["seconds"]
         if cost_win(r).get("seconds") else None, fnum, None],
        ["load: context switches/s (perf stat cross-check)", lambda r: perf_rate(cost_of(r).get("perf"), "context_switches"),
         fnum, None],
        ["load: server CPU (% of one core, perf stat task-clock cross-check)",
         lambda r: perf_rate(cost_of(r).get("perf"), "task_clock_ms") / 10 if perf_rate(cost_of(r).get("perf"), "task_clock_ms") is not None else None,
         lambda v: "n/a" if v is None else f"{v:.1f}", None],
        ["load: server threads at start / end of the window; born / exited in it",
         lambda r: cost_win(r) or None,
         lambda w: "n/a" if not w else f"{w.get('threads_start')} / {w.get('threads_end')}; {w.get('born')} / {w.get('exited')}",
         None],
        ["load: RSS per connection (bytes): (RSS all connected − idle) ÷ connections",
         lambda r: r.mem_per_conn_b(), fnum, "low"],
        [f"idle: connections held (of {fnum(n_idle)})", I(lambda r: (r.sim or {}).get("connected_max") if r else None), fnum, None],
        ["idle: connected in (s)", I(lambda r: (r.sim or {}).get("setup_s") if r else None), f2, None],
        ["idle: window (s)", I(lambda r: idle_win(r).get("seconds")), f2, None],
        ["idle: server CPU in the window (s)", I(lambda r: idle_win(r).get("cpu_s")), f2, None],
        ["**idle: server CPU (% of one core)**", I(idle_cpu_pct), f2, "low"],
        ["**idle: context switches/s** (all threads)", I(idle_sw_per_s), lambda v: "n/a" if v is None else f"{v:,.1f}", "low"],
        ["idle: voluntary / involuntary switches/s",
         I(lambda r: (idle_sw_per_s(r, "vol"), idle_sw_per_s(r, "invol")) if idle_win(r) else None),
         lambda v: "n/a" if v is None or v[0] is None else f"{v[0]:,.1f} / {v[1]:,.1f}", None],
        ["idle: context switches/s (perf stat cross-check)", I(lambda r: perf_rate(r.rs.get("perf"), "context_switches") if r else None),
         lambda v: "n/a" if v is None else f"{v:,.1f}", None],
        ["idle: server CPU (% of one core, perf stat task-clock cross-check: ns, not 10 ms ticks)",
         I(lambda r: perf_rate(r.rs.get("perf"), "task_clock_ms") / 10 if r and perf_rate(r.rs.get("perf"), "task_clock_ms") is not None else None),
         lambda v: "n/a" if v is None else f"{v:.2f}", None],
        ["idle: PINGREQs answered in the window (fleet's count, ± 1 s)",
         I(lambda r: ((r.rs.get("fleet_window_end") or {}).get("pongs", 0) - (r.rs.get("fleet_window_start") or {}).get("pongs", 0))
           if r and r.rs.get("fleet_window_end") else None), fnum, None],
        ["idle: RSS per connection (bytes): (RSS at window start − idle) ÷ connections", I(idle_mem_per_conn), fnum, "low"],
        ["idle: server threads at start / end; born / exited", I(lambda r: idle_win(r) or None),
         lambda w: "n/a" if not w else f"{w.get('threads_start')} / {w.get('threads_end')}; {w.get('born')} / {w.get('exited')}",
         None],
    ]
    # gw_cmp_table reads rows from runs that have a sim report; with a load
    # run missing, fall back to the idle run so the idle rows still show.
    cv = rv if rv is not None and rv.sim is not None else iv
    cm = rm if rm is not None and rm.sim is not None else im
    tab, behind = gw_cmp_table(cv, cm, rows)
    L += [tab, "", gw_behind_line(behind), ""]

    # Per-thread breakdowns (vigil).
    for r, title, per_fn, per_label, secs in (
            (rv, "vigil, load window: context switches by thread", cost_events, "switches per event", None),
            (iv, "vigil, idle window: context switches by thread", lambda r: idle_win(r).get("seconds"),
             "switches/s", "idle")):
        w = (cost_win(r) if secs is None else idle_win(r)) if r else {}
        if not w.get("threads"):
            continue
        per = per_fn(r)
        header, trows, groups, _ = thread_rows(w["threads"], per, per_label,
                                               None if secs is None else w.get("seconds") or 0,
                                               f3 if secs is None else (lambda v: f"{v:,.1f}"))
        L += [f"### {title}", ""]
        names = {t["comm"] for t in w["threads"]}
        L.append(f"{len(w['threads'])} threads seen in the window, {len(names)} distinct name"
                 f"{'' if len(names) == 1 else 's'}"
                 + (" (the threads are not named: tell them apart by creation order and where they sleep)"
                    if len(names) == 1 else "") + ".")
        L.append("")
        L += [table(header, trows), ""]
        if groups:
            L += [table(*groups), ""]
    targets = []
    vc, mc = cost_cpu_per_m(rv) if rv else None, cost_cpu_per_m(rm) if rm else None
    targets.append(("(e)", "server CPU per event: vigil ≤ mosquitto (same load, same run)",
                    f"vigil {f2(vc)} vs mosquitto {f2(mc)} CPU-seconds per million events"
                    + (f" = {vc / mc:.2f}×" if vc and mc else ""),
                    None if vc is None or mc is None else vc <= mc))
    vs = cost_sw_per_event(rv) if rv else None
    wv = cost_win(rv) if rv else {}
    targets.append(("(e)", "≤ 3 context switches per event (vigil, all threads, steady window)",
                    f"{f3(vs)} per event ({fnum(wv.get('vol'))} voluntary + {fnum(wv.get('invol'))} involuntary "
                    f"over {fnum(cost_events(rv) if rv else None)} events)" if vs is not None else "n/a",
                    None if vs is None else vs <= 3))
    ip = idle_cpu_pct(iv) if iv else None
    ipp = perf_rate(iv.rs.get("perf"), "task_clock_ms") if iv else None
    targets.append(("(e)", f"idle: {fnum(n_idle)} connected devices cost ≤ 1 % of a core (vigil)",
                    f"{f2(ip)} % of a core" + (f" (perf task-clock {ipp / 10:.2f} %)" if ipp is not None else "")
                    + f", {f2(idle_sw_per_s(iv) if iv else None)} context switches/s"
                    if ip is not None else "n/a", None if ip is None else ip <= 1.0))
    ms = cost_sw_per_event(rm) if rm else None
    mp = idle_cpu_pct(im) if im else None
    if ms is not None or mp is not None:
        targets.append(("(e)", "(reference) mosquitto: context switches per event; idle CPU",
                        f"{f3(ms)} per event; idle {f2(mp)} % of a core, "
                        f"{f2(idle_sw_per_s(im) if im else None)} switches/s", None))
    rpc = [(nm, r.mem_per_conn_b() if r else None, idle_mem_per_conn(i)) for nm, r, i in
           (("vigil", rv, iv), ("mosquitto", rm, im))]
    targets.append(("(e)", "(reference) RSS per connection, under load / idle fleet",
                    "; ".join(f"{nm} {fnum(a)} / {fnum(b)} bytes" for nm, a, b in rpc), None))
    return L, targets


# ---------------------------------------------------------------- TLS rows (t1-t3)

def t_method(meta):
    p = meta.get("t", {})
    return [
        "- **TLS rows (t1)–(t3)**: mutual TLS with a certificate per device. Each row makes a fresh PKI with vigil's "
        "own CLI (`vigil ca init` + `vigil device create --count N --prefix tls-`: an EC P-256 CA, a server "
        "certificate for 127.0.0.1, one key and certificate per device) and starts a fresh server on it. vigil: "
        "`--tls-listen` (client certificates required, registry checked at the handshake) plus its plain loopback "
        "listener; mosquitto 2.0: `listener` with `cafile`/`certfile`/`keyfile` of the same kind of PKI, "
        "`require_certificate true`, `use_identity_as_username true`, `set_tcp_nodelay true` (as in the gateway rows: "
        "without it the handshake flights of mosquitto wait on delayed ACKs) and `user root` (to read the 0600 key).",
        "- (t1) and (t2) use `build/tls_hs` (`bench/tls_hs.c`, built by `make bench`): one epoll thread driving "
        "vigil's MQTT client over its non-blocking TLS transport; every identity is loaded before timing. A "
        "connection's time runs from `connect()` to CONNACK (TCP + TLS handshake with the client certificate + "
        "MQTT CONNECT/CONNACK); server CPU is utime+stime from `/proc/PID/stat` over the phase, ÷ connections. "
        f"**(t1)**: {fnum(p.get('t1_handshakes'))} connect/CONNACK/DISCONNECT cycles over "
        f"{fnum(p.get('t1_parallel'))} parallel connections (slot *s* is device *s*), first each with a new "
        "session (**full** handshake), then the same count each offering the session the slot's previous "
        "connection got (**resumed**; one untimed warm-up connection per slot first). "
        f"**(t2)**: {fnum(p.get('t2_devices'))} devices connect at once, at most {fnum(p.get('t2_parallel'))} "
        "handshakes in flight (as the simulator's 1,000 per worker), and stay connected; the storm's time is "
        "from the first `connect()` to the last CONNACK, full handshakes (a fleet coming back after an outage).",
        f"- **(t3)**: the seed workload — `vigil sim` with {fnum(p.get('t3_devices'))} devices × 1 event / "
        f"{p.get('t3_interval')} s, QoS 1, {p.get('t3_duration')} s — on vigil (`--fsync always`) over mutual "
        "TLS (`vigil sim --tls --ca --cert-dir`: each device's key read at its connect) and over plain TCP, each "
        "on a fresh server with the same configuration (PKI, registry, TLS listener), one after the other in the "
        "same run. The plain devices connect anonymously on the plain loopback listener (what the server allows "
        "there), the TLS devices are authenticated by certificate and authorized per publish. Server CPU-seconds "
        "per million events over the steady window exactly as in (e) (no stats client); the alert subscriber of "
        "both runs is on the plain listener.",
    ]


def t_phase(r, name):
    if not r or not r.sim:
        return {}
    return next((p for p in r.s("phases") or [] if p.get("name") == name), {}) or {}


def t_get(ph, *path):
    v = ph
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def t_failures(ph):
    if not ph:
        return None
    f = ph.get("failures") or {}
    return f"{fnum(ph.get('failed'))}" + (" (" + ", ".join(f"{k}: {v}" for k, v in f.items()) + ")" if f else "")


def t_anomalies(r):
    out = []
    for ph in r.s("phases") or []:
        if ph.get("failed"):
            out.append(f"{ph['name']}: {fnum(ph['failed'])} of {fnum(ph['connections'])} connections failed "
                       f"({t_failures(ph)})")
        if ph.get("name") == "resumed" and ph.get("ok") and ph.get("resumed", 0) < ph["ok"]:
            out.append(f"resumed: only {fnum(ph.get('resumed'))} of {fnum(ph['ok'])} handshakes resumed a session")
    return out


def render_t1(meta, runs):
    p = meta.get("t", {})
    L = ["## (t1) TLS handshakes per second: full and resumed", ""]
    L.append(f"{fnum(p.get('t1_handshakes'))} mutual-TLS connections per mode over {fnum(p.get('t1_parallel'))} "
             "parallel connections, each connect → TLS handshake with a device certificate → CONNECT/CONNACK → "
             "DISCONNECT (method above). *Full*: a new session each time; *resumed*: each connection offers its "
             "slot's last session.")
    L.append("")
    rv, rm = runs.get("t1_vigil"), runs.get("t1_mosquitto")
    if not rv and not rm:
        return L + ["_not run_", ""], []
    rows = []
    for mode in ("full", "resumed"):
        M = (lambda r, mode=mode: t_phase(r, mode))
        rows += [
            [f"{mode}: handshakes/s (connect → CONNACK)", lambda r, M=M: t_get(M(r), "per_s"), fnum, "high"],
            [f"{mode}: connection time p50 (ms)", lambda r, M=M: t_get(M(r), "latency_ms", "p50"), fms, "low"],
            [f"{mode}: connection time p99 (ms)", lambda r, M=M: t_get(M(r), "latency_ms", "p99"), fms, "low"],
            [f"{mode}: server CPU per connection (ms)", lambda r, M=M: t_get(M(r), "server_cpu_ms_per_conn"), fms, "low"],
            [f"{mode}: connections ok / sessions resumed", lambda r, M=M: (t_get(M(r), "ok"), t_get(M(r), "resumed")) if M(r) else None,
             lambda v: "n/a" if v is None else f"{fnum(v[0])} / {fnum(v[1])}", None],
            [f"{mode}: failed", lambda r, M=M: t_failures(M(r)), lambda v: v or "n/a", None],
            [f"{mode}: load tool CPU (s) / phase (s)", lambda r, M=M: (t_get(M(r), "client_cpu_s"), t_get(M(r), "seconds")) if M(r) else None,
             lambda v: "n/a" if v is None else f"{f2(v[0])} / {f2(v[1])}", None],
        ]
    tab, behind = gw_cmp_table(rv, rm, rows)
    L += [tab, "", gw_behind_line(behind), "", "Commands:", "", commands_block([r for r in (rv, rm) if r]), ""]
    targets = []
    # The issue's targets: handshakes per second ahead of mosquitto's, full and resumed.
    for mode in ("full", "resumed"):
        a, b = t_get(t_phase(rv, mode), "per_s"), t_get(t_phase(rm, mode), "per_s")
        if a is not None or b is not None:
            targets.append(("(t1)", f"{mode} TLS handshakes per second: vigil ahead of mosquitto (same run)",
                            f"vigil {fnum(a)} vs mosquitto {fnum(b)} per s" + (f" = {a / b:.2f}×" if a and b else ""),
                            None if a is None or b is None else a > b))
    for nm, r in (("vigil", rv), ("mosquitto", rm)):
        f, s = t_phase(r, "full"), t_phase(r, "resumed")
        if f or s:
            targets.append(("(t1)", f"(reference) {nm}: full / resumed handshakes per second",
                            f"{fnum(t_get(f, 'per_s'))} / {fnum(t_get(s, 'per_s'))} per s "
                            f"(server {fms(t_get(f, 'server_cpu_ms_per_conn'))} / {fms(t_get(s, 'server_cpu_ms_per_conn'))} ms CPU each)",
                            None))
    return L, targets


def render_t2(meta, runs):
    p = meta.get("t", {})
    L = ["## (t2) Reconnect storm: 10,000 devices over mutual TLS", ""]
    L.append(f"{fnum(p.get('t2_devices'))} devices, each with its certificate, connect at once (at most "
             f"{fnum(p.get('t2_parallel'))} handshakes in flight) and stay connected; full handshakes (method above).")
    L.append("")
    rv, rm = runs.get("t2_vigil"), runs.get("t2_mosquitto")
    if not rv and not rm:
        return L + ["_not run_", ""], []
    S = (lambda r: t_phase(r, "storm"))
    rows = [
        ["**time until all connected (s)**", lambda r: t_get(S(r), "seconds") if t_get(S(r), "ok") else None, f2, "low"],
        ["connected / failed", lambda r: (t_get(S(r), "ok"), t_failures(S(r))) if S(r) else None,
         lambda v: "n/a" if v is None else f"{fnum(v[0])} / {v[1]}", None],
        ["connections/s", lambda r: t_get(S(r), "per_s"), fnum, "high"],
        ["connection time p50 (ms)", lambda r: t_get(S(r), "latency_ms", "p50"), fms, "low"],
        ["connection time p90 (ms)", lambda r: t_get(S(r), "latency_ms", "p90"), fms, "low"],
        ["connection time p99 (ms)", lambda r: t_get(S(r), "latency_ms", "p99"), fms, "low"],
        ["connection time max (ms)", lambda r: t_get(S(r), "latency_ms", "max"), fms, "low"],
        ["server CPU per connection (ms)", lambda r: t_get(S(r), "server_cpu_ms_per_conn"), fms, "low"],
        ["server RSS peak (MiB)", gw_rss_peak, lambda v: "n/a" if v is None else f"{v:.1f}", "low"],
        ["TCP listen-queue overflows (system-wide)", lambda r: t_get(S(r), "listen_overflows"), fnum, None],
        ["load tool CPU (s)", lambda r: t_get(S(r), "client_cpu_s"), f2, None],
    ]
    tab, behind = gw_cmp_table(rv, rm, rows)
    L += [tab, "", gw_behind_line(behind), "", "Commands:", "", commands_block([r for r in (rv, rm) if r]), ""]
    sv, sm = S(rv), S(rm)
    tv, tm = (t_get(sv, "seconds") if t_get(sv, "ok") else None), (t_get(sm, "seconds") if t_get(sm, "ok") else None)
    targets = [("(t2)", "reconnect storm over mutual TLS: vigil connects everyone sooner than mosquitto (same run)",
                f"vigil {f2(tv)} s vs mosquitto {f2(tm)} s", None if tv is None or tm is None else tv < tm),
               ("(t2)", f"(reference) storm of {fnum(p.get('t2_devices'))} mutual-TLS devices: time until all connected",
                f"vigil {f2(t_get(sv, 'seconds'))} s ({fnum(t_get(sv, 'ok'))} ok), mosquitto "
                f"{f2(t_get(sm, 'seconds'))} s ({fnum(t_get(sm, 'ok'))} ok)", None)]
    return L, targets


def render_t3(meta, runs):
    p = meta.get("t", {})
    L = ["## (t3) The seed workload over mutual TLS vs plain TCP (vigil)", ""]
    L.append(f"{fnum(p.get('t3_devices'))} devices × 1 event / {p.get('t3_interval')} s (≈ {fnum(p.get('t3_offered'))} "
             f"events/s), QoS 1, {p.get('t3_duration')} s, on vigil (`--fsync always`), once over mutual TLS and "
             "once over plain TCP (method above); server CPU over the steady window as in (e).")
    L.append("")
    rt, rp = runs.get("t3_tls"), runs.get("t3_plain")
    if not rt and not rp:
        return L + ["_not run_", ""], []
    cols = [r for r in (rt, rp)]

    def c(f, fmt):
        return [fmt(f(r)) if r is not None and r.sim is not None else "n/a" for r in cols]

    def W(key):
        return lambda r: cost_win(r).get(key)

    rows = [
        ["devices connected / connect failures"] + c(lambda r: (r.s("connected"), r.s("connect_failures")),
                                                      lambda v: f"{fnum(v[0])} / {fnum(v[1])}"),
        ["connect failures by reason"] + c(lambda r: {k: v for k, v in (r.s("connect_failure_reasons") or {}).items() if v},
                                           lambda v: ", ".join(f"{k} {n}" for k, n in v.items()) or "none"),
        ["TLS handshakes (sim)"] + c(lambda r: (r.s("tls") or {}).get("handshakes"), fnum),
        ["events sent / acked / failed"] + c(lambda r: (r.s("sent"), r.s("acked"), r.s("failed")),
                                             lambda v: " / ".join(fnum(x) for x in v)),
        ["telemetry records on disk after stop"] + c(lambda r: r.stored(), fnum),
        ["steady window (sim clock, s)"] + c(lambda r: ((cost_of(r).get("start") or {}).get("t"), (cost_of(r).get("end") or {}).get("t")),
                                             lambda v: "n/a" if v[0] is None else f"{v[0]:.1f} – {v[1]:.1f}"),
        ["events acked in the window"] + c(cost_events, fnum),
        ["server CPU in the window (s)"] + c(W("cpu_s"), f2),
        ["**server CPU-seconds per million events**"] + c(cost_cpu_per_m, f2),
        ["context switches per event (all threads)"] + c(cost_sw_per_event, f3),
        ["publish→PUBACK p50 (ms)"] + c(lambda r: r.lat("puback_latency_ms", "p50"), fms),
        ["**publish→PUBACK p99 (ms)**"] + c(lambda r: r.lat("puback_latency_ms", "p99"), fms),
        ["publish→PUBACK p99, fleet connected (ms)"] + c(lambda r: r.lat("puback_latency_connected_ms", "p99"), fms),
        ["publish→alert p50 (ms)"] + c(lambda r: r.lat("alert_latency_ms", "p50"), fms),
        ["**publish→alert p99 (ms)**"] + c(lambda r: r.lat("alert_latency_ms", "p99"), fms),
        ["anomalies injected / detected / false alerts"] + c(lambda r: (r.s("anomalies", "injected"), r.s("anomalies", "detected"), r.s("false_alerts")),
                                                             lambda v: " / ".join(fnum(x) for x in v)),
        ["RSS per connection (bytes): (RSS all connected − idle) ÷ connections"] + c(lambda r: r.mem_per_conn_b(), fnum),
        ["load generator CPU (% of one core, whole run)"] + c(lambda r: r.cpu_pct("sim_cpu_s"), fnum),
    ]
    L += [table(["metric"] + [r.info.get("label", r.id) if r else "n/a" for r in cols], rows), ""]
    L += ["Commands (RUN is the row's work directory; the PKI is made as in the method):", "",
          commands_block([r for r in cols if r]), ""]
    vt, vp = (cost_cpu_per_m(rt) if rt else None), (cost_cpu_per_m(rp) if rp else None)
    targets = [("(t3)", "TLS costs ≤ 20 % more server CPU per event than plain TCP (vigil, seed workload)",
                f"TLS {f2(vt)} vs plain {f2(vp)} CPU-seconds per million events"
                + (f" = {vt / vp:.2f}×" if vt and vp else ""),
                None if vt is None or vp is None else vt <= 1.2 * vp)]
    for nm, r in (("TLS", rt), ("plain", rp)):
        if r and r.sim:
            targets.append(("(t3)", f"(reference) {nm}: p99 publish→PUBACK (whole run; fleet connected) / "
                            "publish→alert",
                            f"{fms(r.lat('puback_latency_ms', 'p99'))}; {fms(r.lat('puback_latency_connected_ms', 'p99'))}"
                            f" / {fms(r.lat('alert_latency_ms', 'p99'))} ms", None))
    return L, targets


# ---------------------------------------------------------------- carry-over

# A section is a "## " heading and what follows up to the next one.
CARRY_HEADINGS = (("## (a)", "a"), ("## (b)", "b"), ("## (c)", "c"), ("## Where the time goes (perf)", "c-perf"),
                  ("## (d)", "d"), ("## (e)", "e"), ("## (g1)", "g1"), ("## (g2)", "g2"), ("## (g3)", "g3"),
                  ("## (t1)", "t1"), ("## (t2)", "t2"), ("## (t3)", "t3"))
CARRY_NOTE = re.compile(r"^_Not re-run on .*carried over unchanged from the run of \*\*(.+?)\*\* \(vigil (.+?)\);")


def parse_old_doc(path):
    """Sections and target rows of an existing document, keyed by benchmark,
    with the date and commit of the run that wrote it; None if unreadable."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"on \*\*(.+?)\*\*, vigil (.+?), ", text)
    old = {"date": m.group(1) if m else "?", "git": m.group(2) if m else "?", "sections": {}, "targets": {}}
    cur = None
    for line in text.split("\n"):
        if line.startswith("## "):
            cur = next((k for pre, k in CARRY_HEADINGS if line.startswith(pre)), None)
            if cur:
                old["sections"][cur] = []
        if cur:
            old["sections"][cur].append(line)
        tm = re.match(r"^\| \((\w+)\) \|", line)
        if tm:
            old["targets"].setdefault(tm.group(1), []).append(line)
    # Where each section was measured: a section carried over before says so.
    old["origin"] = {}
    for k, lines in old["sections"].items():
        while lines and not lines[-1].strip():
            lines.pop()
        first = next((l for l in lines[1:] if l.strip()), "")
        m = CARRY_NOTE.match(first)
        old["origin"][k] = (m.group(1), m.group(2)) if m else (old["date"], old["git"])
    return old


def carried_section(old, key, meta):
    """The old section `key`, with a note saying which run it comes from (a
    section carried over before keeps the run it came from)."""
    lines = list(old["sections"][key])
    date, git = old["origin"][key]
    i = next((i for i, l in enumerate(lines[1:], 1) if l.strip()), None)
    if i is not None and CARRY_NOTE.match(lines[i]):
        del lines[i]
        if i < len(lines) and not lines[i].strip():
            del lines[i]
    note = (f"_Not re-run on {meta.get('date', '?')} (`BENCH_ONLY={meta.get('only', '')}`): carried over "
            f"unchanged from the run of **{date}** (vigil {git}); that run's notes and machine load are in "
            "the git history of this file._")
    lines[1:1] = ["", note]
    return lines + [""]



def cmd_render(args):
    work, outpath = args[0], args[1]
    meta = load_json(os.path.join(work, "meta.json"), {}) or {}
    runs_dir = os.path.join(work, "runs")
    runs = {}
    if os.path.isdir(runs_dir):
        for name in sorted(os.listdir(runs_dir)):
            d = os.path.join(runs_dir, name)
            if os.path.isdir(d):
                runs[name] = Run(d)
    scale = float(meta.get("scale", 1))
    sel = meta.get("only", "a,b,c,d,e,g1,g2,g3,t1,t2,t3").split(",")
    old = parse_old_doc(outpath)
    carried = [k for k in ("a", "b", "c", "d", "e", "g1", "g2", "g3", "t1", "t2", "t3")
               if k not in sel and old and k in old["sections"]]
    has_abc = any(k in sel or k in carried for k in ("a", "b", "c"))
    has_g = any(k in sel or k in carried for k in ("g1", "g2", "g3"))
    has_e = "e" in sel or "e" in carried
    has_t = any(k in sel or k in carried for k in ("t1", "t2", "t3"))
    L = []
    w = L.append
    w("# vigil benchmarks")
    w("")
    w(f"Generated by `bench/run.sh` (`make bench`) on **{meta.get('date', '?')}**, "
      f"vigil {meta.get('git', '?')}, {meta.get('mosquitto_version', 'mosquitto ?')}.")
    w("")
    if scale != 1 or meta.get("overrides"):
        w(f"> **Smoke / reduced run** — BENCH_SCALE={meta.get('scale')}"
          + (f", overrides: {meta.get('overrides')}" if meta.get("overrides") else "")
          + ". Durations and fleet sizes are scaled down; the numbers validate the harness and are "
            "**not** the reference results. Targets are evaluated against the scaled load.")
        w("")
    if meta.get("load_before"):
        w(f"> Machine load average when the run started: {meta.get('load_before')} "
          f"(after: {meta.get('load_after', '?')}). Other processes on the machine make numbers noisy; "
          "the reference numbers should come from a quiet machine.")
        w("")
    if carried:
        w(f"> Benchmarks {', '.join('(' + k + ')' for k in carried)} were not run this time "
          f"(`BENCH_ONLY={meta.get('only', '')}`); their sections are carried over from the run of "
          f"{' and '.join(sorted({old['origin'][k][0] for k in carried}))}, and say so.")
        w("")
    w("Reproduce: `make bench` (or `bench/run.sh`). Environment: `BENCH_SCALE=0.1` shrinks durations and "
      "fleets for a smoke run, `BENCH_ONLY=a,b,c,d,e,g1,g2,g3,t1,t2,t3` selects benchmarks, `BENCH_KEEP=1` keeps logs and "
      "perf.data, `BENCH_DIR` chooses where data dirs live; see the header of `bench/run.sh` for the rest.")
    w("")
    w("## Machine")
    w("")
    w(table(["", ""], [
        ["CPUs (nproc)", meta.get("nproc", "?")],
        ["CPU model", meta.get("cpu_model", "?")],
        ["memory", meta.get("memory", "?")],
        ["kernel", meta.get("kernel", "?")],
        ["data dir file system", meta.get("data_fs", "?")],
        ["fdatasync latency on it", meta.get("fsync_latency", "?")],
        ["disk write cache", meta.get("write_cache", "?")],
        ["open-file limit (soft:hard) given to servers", meta.get("nofile", "?")],
        ["compiler / build", meta.get("build", "?")],
    ]))
    w("")
    w("## Method")
    w("")
    has_d = "d" in sel or "d" in carried
    if has_abc or has_g or has_e:
        w("- Each server row starts its server fresh on a free loopback port (checked unused, and checked "
          "after start that only our process listens on it) with a fresh data directory, and stops it with "
          "SIGTERM afterwards. Servers run with the open-file limit raised to the hard limit (`ulimit -n`); "
          "mosquitto does not raise its own soft limit, vigil does.")
    abc_method = [
        "- Load generator for rows (a)–(c): `build/vigil sim ... --json` (MQTT 3.1.1, one TCP connection per "
        "device, worker processes added automatically past 15,000 devices). It reports events sent/acked, "
        "publish→PUBACK and publish→alert latency histograms and detection quality; `bench/report.py` "
        "parses the JSON.",
        "- **vigil** runs with its default `--fsync always`: a PUBACK leaves only after the event is "
        "`fdatasync`ed to the telemetry stream (durable). **mosquitto** has no durable stream: it acks a "
        "QoS 1 PUBLISH from memory and stores nothing (`persistence false`, no subscriber for the "
        "telemetry topic), so its rows are a not-durable baseline and it detects nothing: alert columns "
        "are n/a.",
        "- Server RSS is VmRSS from `/proc/PID/status`: *idle* just before the load starts, *all "
        "connected* at the first sim progress line that shows every device connected (devices already "
        "publish while others connect), *peak* the maximum of samples every 0.25 s, *after* 0.5 s after "
        "the sim exits. Server CPU is utime+stime of the server process over the run.",
        "- *Throughput sent* is the sim's figure (events sent / send phase, including the connect ramp at "
        "the start); *throughput acked* is PUBACKs received / send phase (acks that arrive during the drain "
        "after the send phase count too); *steady send rate* is the median of the sim's per-second rates "
        "after every device is connected. *Deferred* sends are ones the sim postponed because the device's "
        "in-flight window (QoS 1) or output buffer was full — the server's backpressure. The *fleet "
        "connected* PUBACK rows count only publishes sent after every device of their sim worker was "
        "connected (the steady state without the connect ramp).",
        "- vigil's *telemetry records on disk* is counted after the server stopped, with "
        "`vigil stream tail telemetry | wc -l` (falls back to the server's shutdown log line); every acked "
        "event must be there.",
        "- The comparison with mosquitto is the mosquitto column of (a)–(c): same load generator, "
        "same command line, same machine, run right after the vigil row.",
        "- Both the load generator and the server run on the same "
        f"{meta.get('nproc', '?')}-core machine and compete for the CPUs; the load generator CPU row shows "
        "how much it took.",
    ]
    if has_abc:
        L.extend(abc_method)
    if has_g:
        L.extend(gw_method(meta))
    if has_d:
        L.extend(d_method())
    if has_e:
        L.extend(e_method(meta))
    if has_t:
        L.extend(t_method(meta))
    w("")

    targets = []  # (benchmark, target, measured, ok)

    # ------------------------------------------------------------------ (a)
    ids_a = [i for i in ("a_vigil", "a_mosquitto") if i in runs]
    if "a" in sel:
        w("## (a) Reference workload")
        w("")
        p = meta.get("a", {})
        w(f"{fnum(p.get('devices'))} devices × 1 event / {p.get('interval')} s "
          f"(≈ {fnum(p.get('offered'))} events/s offered), QoS 1, {p.get('duration')} s, anomaly rate "
          f"{p.get('anomaly_rate')} per device per minute. vigil is durable (`--fsync always`: PUBACK after "
          "fdatasync); mosquitto is **not** durable — it has no durable stream and acks from memory.")
        w("")
        ra = [runs[i] for i in ids_a]
        if ra:
            w(commands_block(ra))
            w("")
            w(table(["metric"] + [r.info.get("label", r.id) for r in ra], result_rows(ra, alerts=True)))
            w("")
            v = runs.get("a_vigil")
            if v:
                p99 = v.lat("alert_latency_ms", "p99")
                targets.append(("(a)", "p99 publish→alert ≤ 5 ms (vigil, durable)",
                                f"{fms(p99)} ms" if p99 is not None else "n/a",
                                None if p99 is None else p99 <= 5.0))
                if v.sim:
                    sent, acked, failed = v.s("sent"), v.s("acked"), v.s("failed")
                    cf, disc = v.s("connect_failures"), v.s("disconnects")
                    st = v.stored()
                    ok = (failed == 0 and acked == sent and cf == 0 and disc == 0 and
                          (st is None or st >= acked))
                    targets.append(("(a)", "zero loss: every event sent is acked and on disk, no connect "
                                    "failures or disconnects",
                                    f"sent {fnum(sent)}, acked {fnum(acked)}, failed {fnum(failed)}, "
                                    f"on disk {fnum(st)}, connect failures {fnum(cf)}, disconnects {fnum(disc)}",
                                    ok))
                    inj, det, fa = v.s("anomalies", "injected"), v.s("anomalies", "detected"), v.s("false_alerts")
                    targets.append(("(a)", "(check) every injected anomaly alerted, no false alerts",
                                    f"injected {fnum(inj)}, detected {fnum(det)}, false {fnum(fa)}",
                                    None if inj is None else (det == inj and fa == 0)))
                else:
                    targets.append(("(a)", "zero loss", "run failed", None))
        else:
            w("_not run_")
        w("")
    elif "a" in carried:
        L.extend(carried_section(old, "a", meta))

    # ------------------------------------------------------------------ (b)
    ids_b = [i for i in ("b_vigil", "b_mosquitto") if i in runs]
    if "b" in sel:
        w("## (b) 20,000 events/s from 19,000 connections")
        w("")
        p = meta.get("b", {})
        w(f"{fnum(p.get('devices'))} devices × 1 event / {p.get('interval')} s "
          f"(≈ {fnum(p.get('offered'))} events/s offered), QoS 1, {p.get('duration')} s. The sim splits the "
          "fleet over several worker processes (one per 15,000 connections, each under the 20,000 "
          "open-file limit); both servers get the hard open-file limit. Memory per connection = "
          "(RSS with all connected − RSS idle) / connections.")
        w("")
        rb = [runs[i] for i in ids_b]
        if rb:
            w(commands_block(rb))
            w("")
            w(table(["metric"] + [r.info.get("label", r.id) for r in rb], result_rows(rb, alerts=True, memory=True)))
            w("")
            for line in vigil_mem_block(rb):
                w(line)
            w("")
            v = runs.get("b_vigil")
            if v:
                offered = p.get("offered") or 0
                thr, steady = v.acked_per_s(), v.steady_rate()
                p99a, p99l = v.lat("puback_latency_ms", "p99"), v.lat("alert_latency_ms", "p99")
                ok = None
                if steady is not None and v.sim:
                    ok = (steady >= 0.95 * offered and v.s("failed") == 0 and v.s("acked") == v.s("sent")
                          and v.s("connect_failures") == 0)
                targets.append(("(b)", f"carries the offered {fnum(offered)} events/s once all are connected "
                                "(steady rate ≥ 95 %), every event acked",
                                f"steady {fnum(steady)} events/s (whole run incl. connect ramp: {fnum(thr)} acked/s), "
                                f"sent {fnum(v.s('sent'))}, acked {fnum(v.s('acked'))}, failed {fnum(v.s('failed'))}",
                                ok))
                targets.append(("(b)", "p99 publish→PUBACK ≤ 10 ms", f"{fms(p99a)} ms",
                                None if p99a is None else p99a <= 10.0))
                targets.append(("(b)", "p99 publish→alert ≤ 10 ms", f"{fms(p99l)} ms",
                                None if p99l is None else p99l <= 10.0))
                mpc = v.mem_per_conn_b()
                targets.append(("(b)", "≤ 2 KiB server memory per connection (vigil)",
                                f"{fnum(mpc)} bytes" if mpc is not None else "n/a",
                                None if mpc is None else mpc <= 2048))
            m = runs.get("b_mosquitto")
            if m and m.mem_per_conn_b() is not None:
                targets.append(("(b)", "(reference) mosquitto memory per connection",
                                f"{fnum(m.mem_per_conn_b())} bytes", None))
        else:
            w("_not run_")
        w("")
    elif "b" in carried:
        L.extend(carried_section(old, "b", meta))

    # ------------------------------------------------------------------ (c)
    ids_c = [i for i in ("c_vigil", "c_mosquitto", "c_vigil_nofsync") if i in runs]
    if "c" in sel:
        w("## (c) Peak sustained QoS 1 ingest, 100 publishers")
        w("")
        p = meta.get("c", {})
        w(f"{fnum(p.get('devices'))} devices × 1 event / {p.get('interval')} s "
          f"(≈ {fnum(p.get('offered'))} events/s offered; each device also has at most 256 unacknowledged "
          f"publishes, so past saturation the rate is the server's), QoS 1, {p.get('duration')} s, "
          "anomaly rate 0. `vigil --fsync none` is an extra, not-durable reference row.")
        w("")
        probes = meta.get("probes") or []
        if p.get("probe"):
            w("The interval was found by probing (short runs of vigil, fsync always, starting at 0.0005 s): "
              "the interval is halved while vigil acks ≥ 90 % of the offered rate, so that the rows below "
              "measure the server and not the load generator's schedule.")
            w("")
            if probes:
                w(table(["probe interval (s)", "offered (events/s)", "vigil acked (events/s)", "probe length (s)"],
                        [[pr.get("interval"), fnum(pr.get("offered")), fnum(pr.get("acked_per_s")),
                          pr.get("duration")] for pr in probes]))
                w("")
        rc_ = [runs[i] for i in ids_c]
        if rc_:
            w(commands_block(rc_))
            w("")
            w(table(["metric"] + [r.info.get("label", r.id) for r in rc_], result_rows(rc_, alerts=False)))
            w("")
            offered = p.get("offered") or 0
            for r in rc_:
                thr = r.acked_per_s()
                if thr is not None and offered and thr >= 0.9 * offered:
                    w(f"- {r.info.get('label', r.id)}: acked {fnum(thr)}/s is ≥ 90 % of the offered "
                      f"{fnum(offered)}/s, so this row may not show the server's limit; rerun with a smaller "
                      "`BENCH_C_INTERVAL`.")
            w("")
            v, m = runs.get("c_vigil"), runs.get("c_mosquitto")
            vt = v.acked_per_s() if v else None
            mt = m.acked_per_s() if m else None
            if v:
                targets.append(("(c)", "≥ 100,000 durable events/s (vigil, fsync always)",
                                f"{fnum(vt)} acked/s", None if vt is None else vt >= 100000))
                targets.append(("(c)", "≥ 2× mosquitto's QoS 1 rate",
                                f"vigil {fnum(vt)}/s vs mosquitto {fnum(mt)}/s"
                                + (f" = {vt / mt:.2f}×" if vt and mt else ""),
                                None if (vt is None or not mt) else vt >= 2 * mt))
        else:
            w("_not run_")
        w("")
    elif "c" in carried:
        L.extend(carried_section(old, "c", meta))

    # ------------------------------------------------------------------ (d)
    # Rendered here for its targets, placed after (c)'s perf section below.
    d_lines = []
    if "d" in sel:
        d_lines, d_targets = render_d(meta, load_json(os.path.join(work, "d.json"), None))
        targets += d_targets
    elif "d" in carried:
        d_lines = carried_section(old, "d", meta)

    # ------------------------------------------------------------------ (e)
    e_lines = []
    if "e" in sel:
        e_lines, e_targets = render_e(meta, runs)
        targets += e_targets
    elif "e" in carried:
        e_lines = carried_section(old, "e", meta)

    # ------------------------------------------------------------------ (t1)-(t3)
    t_lines = []
    for k, f in (("t1", render_t1), ("t2", render_t2), ("t3", render_t3)):
        if k in sel:
            tl, tt = f(meta, runs)
            t_lines += tl
            targets += tt
        elif k in carried:
            t_lines += carried_section(old, k, meta)

    # ------------------------------------------------------------------ targets
    carried_targets = [row for k in carried if k in ("a", "b", "c", "d", "e", "t1", "t2", "t3")
                       for row in old["targets"].get(k, [])]
    if targets or carried_targets:
        # Rows of this run and carried rows together, in benchmark order.
        rank = {"(a)": 0, "(b)": 1, "(c)": 2, "(d)": 3, "(e)": 4, "(t1)": 5, "(t2)": 6, "(t3)": 7}
        rows = [(rank.get(t[0], 9), f"| {t[0]} | {t[1]} | {t[2]} | {mark(t[3])} |") for t in targets]
        rows += [(rank.get(row.split("|")[1].strip(), 9), row) for row in carried_targets]
        T = ["## Targets", "", table(["bench", "target", "measured", "result"], [])]
        T += [row for _, row in sorted(rows, key=lambda r: r[0])]
        if carried_targets:
            ck = [k for k in carried if k in ("a", "b", "c", "d", "e", "t1", "t2", "t3")]
            T += ["", f"_Rows of {', '.join('(' + k + ')' for k in ck)} are carried over from the run of "
                  f"{' and '.join(sorted({old['origin'][k][0] for k in ck}))}._"]
        T.append("")
        # Put the target summary right after the method section.
        idx = L.index("## Method")
        end = idx + 1
        while end < len(L) and not L[end].startswith("## ("):
            end += 1
        L[end:end] = T

    # ------------------------------------------------------------------ perf
    # (perf goes with (c): without it, carried over with (c) or left out)
    perf = load_json(os.path.join(work, "perf.json"), {}) or {}
    if "c" not in sel:
        if "c" in carried and "c-perf" in old["sections"]:
            L.extend(carried_section(old, "c-perf", meta))
    elif perf.get("status") == "ok":
        w("## Where the time goes (perf)")
        w("")
        w(f"`perf record -g` of the vigil server (fsync always) for {perf.get('seconds')} s during a separate "
          "run of workload (c) — a separate run so that the profiler's overhead does not change the "
          f"table above (that run acked {fnum(perf.get('acked_per_s'))} events/s under the profiler). "
          "The binary is built without frame pointers, so the call chains are unreliable; the flat "
          "self-time list is what to read.")
        w("")
        w("```sh")
        for c in perf.get("commands", []):
            w(c)
        w("```")
        w("")
        w("Top symbols (self time, all threads):")
        w("")
        w("```")
        w(perf.get("top", "").rstrip())
        w("```")
        w("")
        if perf.get("by_dso"):
            w("By shared object:")
            w("")
            w("```")
            w(perf.get("by_dso", "").rstrip())
            w("```")
            w("")
    else:
        w("## Where the time goes (perf)")
        w("")
        w(f"_not recorded: {perf.get('reason', 'perf section not run')}_")
        w("")

    L.extend(d_lines)
    L.extend(e_lines)

    # --------------------------------------------------------------- gateway
    for k, f in (("g1", render_g1), ("g2", render_g2), ("g3", render_g3)):
        if k in sel:
            L.extend(f(meta, runs))
        elif k in carried:
            L.extend(carried_section(old, k, meta))
    L.extend(t_lines)

    # -------------------------------------------------------------- analysis
    # Hand-written reading of the numbers (why a target is missed, what to
    # change); kept in bench/analysis.md so that a re-run keeps it.
    apath = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
    if os.path.exists(apath):
        with open(apath) as f:
            L.extend(f.read().rstrip().split("\n"))
        w("")

    # ------------------------------------------------------------------ notes
    notes = notes_block(list(runs.values()))
    notes += [f"- {n}" for n in meta.get("errors", [])]
    if notes:
        with open(os.path.join(work, "flagged"), "w") as f:
            f.write(f"{len(notes)}\n")
        notes.append(f"- Raw logs of this run (sim output, server logs, RSS samples) were kept in `{work}`.")
    w("## Failures and notes")
    w("")
    if notes:
        L.extend(notes)
    else:
        w("None: every server started, served and stopped cleanly, every event was acked, nothing was lost.")
    w("")
    w(f"_Total harness time: {meta.get('elapsed', '?')}."
      + ("" if notes else " Raw logs are kept (in `BENCH_DIR`) only with `BENCH_KEEP=1` or when something "
         "is flagged above.") + "_")
    w("")
    text = "\n".join(L)
    tmp = outpath + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, outpath)
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmds = {"freeport": cmd_freeport, "owns-port": cmd_owns_port, "set": cmd_set,
            "runsim": cmd_runsim, "idlerun": cmd_idlerun, "render": cmd_render, "fsyncprobe": cmd_fsyncprobe}
    f = cmds.get(argv[1])
    if not f:
        print(__doc__, file=sys.stderr)
        return 2
    return f(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
