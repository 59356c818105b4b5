#!/usr/bin/env python3
"""herdsman's benchmark: herdsman, PM2 7.0.4 and a no-supervisor baseline, side by side, in the same run.

    bench/bench.py [--install] [--quick] [--reps N] [--only SCENARIO[,SCENARIO...]] [--out FILE]

Every scenario runs the same app (examples/hello.js, or bench/apps/*.js) under three "supervisors", interleaved
(the order rotates each repetition): herdsman (target/release/herdsman), PM2 (bench/node_modules) and the
baseline (bench/launcher.py: the same workers sharing one inherited socket, with no supervisor). It writes a
markdown table of medians, ranges, ratios and pass/miss against the targets to bench/RESULTS.md (--quick:
bench/RESULTS-quick.md) and the raw samples next to it (.json). See bench/README.md.

--install   npm ci PM2 7.0.4 into bench/node_modules; apt-get install wrk and hyperfine if missing.
--quick     every scenario once, briefly (CI). Exits 1 only if a scenario breaks, never on a missed target.
Only loopback traffic; every scenario is bounded in time; every process started is killed at the end of each
scenario (herdsman kill, pm2 kill, the baseline's process group, then SIGKILL for anything left of the tree).
Python 3.11 stdlib only.
"""
import argparse
import datetime
import errno
import json
import math
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
APP = os.path.join(ROOT, "examples", "hello.js")
IDLE_APP = os.path.join(BENCH, "apps", "idle.js")
CRASH_APP = os.path.join(BENCH, "apps", "crash.js")
JOB_APP = os.path.join(BENCH, "apps", "job.sh")
BLOCK_APP = os.path.join(BENCH, "apps", "blocking.js")
PRELOAD = os.path.join(ROOT, "src", "daemon", "node", "listen.cjs")
LAUNCHER = os.path.join(BENCH, "launcher.py")
PM2_BIN = os.path.join(BENCH, "node_modules", ".bin", "pm2")
HERDSMAN_BIN = os.path.join(ROOT, "target", "release", "herdsman")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def log(*words):
    print(f"[{time.strftime('%H:%M:%S')}]", *words, file=sys.stderr, flush=True)


class ScenarioError(Exception):
    """A scenario broke: a supervisor did not start, a worker never answered, a tool failed. `partial`: what it had
    measured before it broke (recorded all the same)."""

    def __init__(self, message, partial=None):
        super().__init__(message)
        self.partial = partial or {}


class Timeout(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------------------------------------------
def _stat_fields(pid):
    """Fields after the last ')' of /proc/PID/stat (the comm may hold spaces and parentheses): index 0 = state."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_ticks(pid):
    """utime + stime of PID, in clock ticks (not its children's)."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


def start_time(pid):
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def age_s(pid):
    """How long ago PID started, in seconds (None if it is gone)."""
    started = start_time(pid)
    if started is None:
        return None
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - started / CLK_TCK


def ppid_of(pid):
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def pss_bytes(pid):
    """Proportional set size: private pages, plus shared ones divided among the processes that map them. The
    honest figure for several processes running one binary (the daemon and its log keeper)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def alive(pid):
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def descendants(root):
    """Every process under ROOT (pid, start time), by walking /proc's ppid links."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = ppid_of(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append((child, start_time(child)))
            todo.append(child)
    return out


def kill_leftovers(procs):
    """SIGKILL the (pid, start time) pairs still alive (the start time guards against a reused pid)."""
    for pid, started in procs:
        if started is not None and start_time(pid) == started and alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class CpuMeter:
    """CPU used by a set of pids between start() and stop(), in % of one core."""

    def __init__(self, pids):
        self.pids = [p for p in pids if p]

    def start(self):
        self.t0 = time.monotonic()
        self.ticks0 = {p: cpu_ticks(p) for p in self.pids}
        return self

    def stop(self):
        elapsed = time.monotonic() - self.t0
        used = 0
        for pid, before in self.ticks0.items():
            after = cpu_ticks(pid)
            if before is not None and after is not None:
                used += after - before
        return 100.0 * used / CLK_TCK / elapsed


# ---------------------------------------------------------------------------------------------------------------
# Loopback traffic
# ---------------------------------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
FAILURES = ("refused", "reset", "closed", "timeout", "non2xx", "other")


class Probe(threading.Thread):
    """Opens a new connection every `interval` seconds (GET /, Connection: close), without waiting for the previous
    one (at most `inflight` at once), and records each outcome: (opened, finished, outcome, X-Pid). Outcomes: ok,
    refused, reset (ECONNRESET/EPIPE), closed (EOF before a full response), timeout (no answer in `timeout` s: a
    hung connection), non2xx, other."""

    def __init__(self, port, interval=0.005, timeout=2.0, inflight=64):
        super().__init__(daemon=True)
        self.port, self.interval, self.timeout, self.max_inflight = port, interval, timeout, inflight
        self.results = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            self.error = e

    def _finish(self, sel, conns, s, outcome, pid=None):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        opened = conns.pop(s)[0]
        s.close()
        with self.lock:
            self.results.append((opened, time.monotonic(), outcome, pid))

    def _run(self):
        sel = selectors.DefaultSelector()
        conns = {}  # socket -> [opened, phase, buffer]
        next_open = time.monotonic()
        while True:
            halted = self.halt.is_set()
            if halted and not conns:
                return
            now = time.monotonic()
            if not halted and now >= next_open and len(conns) < self.max_inflight:
                next_open = max(next_open + self.interval, now)
                self._open(sel, conns, now)
            wait = 0.01 if halted else max(0.0, min(next_open - time.monotonic(), 0.01))
            if sel.get_map():
                for key, _ in sel.select(wait):
                    self._ready(sel, conns, key.fileobj)
            else:
                time.sleep(wait)
            now = time.monotonic()
            for s in [s for s, c in conns.items() if now - c[0] > self.timeout]:
                self._finish(sel, conns, s, "timeout")

    def _open(self, sel, conns, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        conns[s] = [now, "connect", b""]
        rc = s.connect_ex(("127.0.0.1", self.port))
        if rc == 0:
            self._send(sel, conns, s)
        elif rc == errno.EINPROGRESS:
            sel.register(s, selectors.EVENT_WRITE)
        elif rc == errno.ECONNREFUSED:
            self._finish(sel, conns, s, "refused")
        else:
            self._finish(sel, conns, s, "other")

    def _send(self, sel, conns, s):
        try:
            s.send(REQUEST)
        except (ConnectionResetError, BrokenPipeError):
            return self._finish(sel, conns, s, "reset")
        except BlockingIOError:
            pass  # never with a 60-byte request on a fresh socket
        except OSError:
            return self._finish(sel, conns, s, "other")
        conns[s][1] = "read"
        try:
            sel.modify(s, selectors.EVENT_READ)
        except KeyError:
            sel.register(s, selectors.EVENT_READ)

    def _ready(self, sel, conns, s):
        if s not in conns:
            return
        c = conns[s]
        if c[1] == "connect":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                return self._send(sel, conns, s)
            return self._finish(sel, conns, s, "refused" if err == errno.ECONNREFUSED else "other")
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except (ConnectionResetError, BrokenPipeError):
            return self._finish(sel, conns, s, "reset")
        except OSError:
            return self._finish(sel, conns, s, "other")
        if data:
            c[2] += data
            return
        head = c[2].split(b"\r\n\r\n", 1)[0].decode("latin-1")
        m = re.match(r"HTTP/1\.[01] (\d{3})", head)
        if not m:
            return self._finish(sel, conns, s, "closed")
        pid = re.search(r"(?im)^x-pid:\s*(\d+)", head)
        pid = int(pid.group(1)) if pid else None
        self._finish(sel, conns, s, "ok" if 200 <= int(m.group(1)) < 300 else "non2xx", pid)

    # -- reading the results (thread-safe) ----------------------------------------------------------------------
    def snapshot(self):
        with self.lock:
            return list(self.results)

    def stop(self):
        self.halt.set()
        self.join(self.timeout + 5)
        if self.error:
            raise ScenarioError(f"probe failed: {self.error!r}")
        return self.snapshot()

    def wait_for(self, predicate, deadline_s, what):
        """Waits until predicate(results) returns a value that is not None; returns it."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            value = predicate(self.snapshot())
            if value is not None:
                return value
            if self.error:
                raise ScenarioError(f"probe failed: {self.error!r}")
            time.sleep(0.002)
        raise ScenarioError(f"{what}: not within {deadline_s} s")


def count_outcomes(results, since=None):
    counts = dict.fromkeys(("ok",) + FAILURES, 0)
    for opened, _, outcome, _ in results:
        if since is None or opened >= since:
            counts[outcome] += 1
    return counts


def slowest_ok_ms(results, since=None):
    """The longest time a new connection took to be answered (ok), in ms."""
    times = [(f - o) * 1000.0 for o, f, outcome, _ in results if outcome == "ok" and (since is None or o >= since)]
    return max(times, default=0.0)


def first_time_distinct(results, n, since=0.0, exclude=()):
    """The time (monotonic) when n distinct X-Pids (not in exclude) had answered, among connections opened since."""
    seen = set()
    for _, finished, outcome, pid in sorted(results, key=lambda r: r[1]):
        if finished >= since and outcome == "ok" and pid not in exclude:
            seen.add(pid)
            if len(seen) >= n:
                return finished
    return None


def serve_pids(port, n, deadline_s=30):
    """Waits until n distinct workers answered on port; returns their pids."""
    probe = Probe(port, interval=0.003, timeout=3.0)
    probe.start()
    try:
        probe.wait_for(lambda r: first_time_distinct(r, n), deadline_s, f"{n} workers answering on port {port}")
    finally:
        results = probe.stop()
    return sorted({pid for _, _, outcome, pid in results if outcome == "ok"})


def parse_wrk(text):
    out = {"requests": 0, "rps": 0.0, "p99_ms": None, "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    m = re.search(r"(\d+) requests in", text)
    if not m:
        raise ScenarioError(f"wrk printed no result: {text[-500:]!r}")
    out["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if m:
        out["p99_ms"] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["connect"], out["read"], out["write"], out["timeout"] = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    return out


def wrk(port, seconds, close=False, midway=None):
    """wrk -t2 -c64 for `seconds`; midway() is called half-way through, while the load runs."""
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--timeout", "2s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    proc = subprocess.Popen(cmd + [f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        if midway is not None:
            time.sleep(seconds / 2)
            midway()
        out, err = proc.communicate(timeout=seconds + 30)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise ScenarioError(f"wrk failed ({proc.returncode}): {err.strip()[-300:]}")
    return parse_wrk(out)


def connection_split(port):
    """How many established connections to port each process holds (ss -tnp), largest first."""
    try:
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):  # no ss (iproute2): the split is only informative
        return []
    counts = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    return sorted(counts.values(), reverse=True)


def hyperfine(argv, env, runs, warmup, p95=False, timeout=300, prepare=None):
    """The median time of argv in ms (p95=True: (median, p95)); `prepare` runs before each run, untimed."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs),
               "--export-json", f.name]
        if prepare:
            cmd += ["--prepare", prepare]
        cmd.append(" ".join(argv))
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ScenarioError(f"hyperfine {' '.join(argv)}: not done in {timeout} s") from None
        if out.returncode != 0:
            raise ScenarioError(f"hyperfine {' '.join(argv)} failed: {out.stderr.strip()[-400:]}")
        result = json.load(open(f.name))["results"][0]
        if p95:
            return result["median"] * 1000.0, percentile([t * 1000.0 for t in result["times"]], 95)
        return result["median"] * 1000.0


def percentile(values, q):
    """The nearest-rank q-th percentile of values (q in 0-100): with fewer than 100 values, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


# ---------------------------------------------------------------------------------------------------------------
# Supervisors: the same operations for herdsman, PM2 and the baseline
# ---------------------------------------------------------------------------------------------------------------
def run(cmd, env, timeout=60, what=None):
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ScenarioError(f"{what or ' '.join(cmd[:3])}: no answer in {timeout} s") from None
    if out.returncode != 0:
        raise ScenarioError(f"{what or ' '.join(cmd)} exited {out.returncode}: "
                            f"{(out.stderr or out.stdout).strip()[-400:]}")
    return out.stdout


class Supervisor:
    name = "?"
    has_cli = True

    def __init__(self):
        self.home = tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        self.env = dict(os.environ)
        self.seen = []  # (pid, start time) of every daemon/worker seen, for the final sweep

    def remember(self, pids):
        for pid in pids:
            if pid:
                self.seen.append((pid, start_time(pid)))
        return pids

    def daemon_pid(self):
        return None

    def supervisor_pids(self):
        """Every process the supervisor itself runs (not the apps): what its memory and CPU are summed over."""
        pid = self.daemon_pid()
        return [pid] if pid else []

    def cleanup(self):
        raise NotImplementedError


class Daemon(Supervisor):
    """A supervisor whose CLI drives a daemon: herdsman and PM2."""

    pid_file = "?"  # the daemon's pid file, in its home
    wake = ("?",)  # a command that starts the daemon

    def __init__(self, binary):
        self.binary = binary
        super().__init__()

    def start_env(self, port):
        return self.env

    def start_cluster(self, port, n):
        run(self.start_cmd(port, n), self.start_env(port), 60, what=f"{self.name} start")
        self.remember([self.daemon_pid()])

    def start_daemon(self):
        self.cli(*self.wake)
        deadline = time.monotonic() + 10
        while self.daemon_pid() is None:
            if time.monotonic() > deadline:
                raise ScenarioError(f"{self.name} {self.wake[0]}: no {self.pid_file} after 10 s")
            time.sleep(0.01)
        self.remember([self.daemon_pid()])

    def daemon_pid(self):
        try:
            pid = int(open(os.path.join(self.home, self.pid_file)).read().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def start_crash_app(self):
        self.cli("start", CRASH_APP, "--name", "crashloop")

    def reload(self):
        self.cli("reload", "bench")

    def restart(self):
        self.cli("restart", "bench")

    def list_argv(self):
        return [self.binary, "list"]


class Herdsman(Daemon):
    name = "herdsman"
    pid_file = "daemon.pid"
    wake = ("daemon",)

    def __init__(self, binary):
        super().__init__(binary)
        self.env["HERDSMAN_HOME"] = self.home

    def cli(self, *args, timeout=60):
        return run([self.binary, *args], self.env, timeout, what=f"herdsman {args[0]}")

    def start_cmd(self, port, n):
        return [self.binary, "start", APP, "--name", "bench", "-i", str(n), "--listen", f"127.0.0.1:{port}"]

    def roles(self):
        """herdsman's own processes by role: the keeper (daemon.pid: holds the workers and the sockets), its
        controller (`herdsman controller`: serves the CLI) and its log keeper (`herdsman log-keeper`: writes the
        apps' output to their files), both children of the keeper. A role with no process is left out."""
        pid = self.daemon_pid()
        if not pid:
            return {}
        out = {"keeper": pid}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if ppid != pid:
                continue
            if b"log-keeper" in args:
                out.setdefault("log keeper", int(entry))
            elif args[1:2] == [b"controller"]:
                # after an update, the previous image's controller may still finish its answers: the younger one
                if "controller" not in out or (start_time(int(entry)) or 0) > (start_time(out["controller"]) or 0):
                    out["controller"] = int(entry)
        return out

    def supervisor_pids(self):
        """The keeper, its controller and its log keeper."""
        return list(self.roles().values())

    def control_pid(self):
        """The process that serves the CLI: the controller (`version --json`)."""
        return json.loads(self.cli("version", "--json"))["daemon"]["controller_pid"]

    def version(self):
        return json.loads(self.cli("version", "--json"))["daemon"]

    def update(self, binary):
        self.cli("update", "--binary", binary, timeout=90)

    def processes(self):
        return json.loads(self.cli("list", "--json"))

    def worker_pids(self, name=None):
        return self.remember([p["pid"] for p in self.processes() if p["pid"] and (name is None or p["name"] == name)])

    def online(self):
        return sum(1 for p in self.processes() if p["status"] == "online")

    def start_blocking_app(self, port):
        """2 workers of bench/apps/blocking.js with a 2 s watchdog."""
        self.cli("start", BLOCK_APP, "--name", "bench", "-i", "2", "--listen", f"127.0.0.1:{port}",
                 "--watchdog", "2s")
        self.remember([self.daemon_pid()])

    def start_fork_apps(self, count, script):
        for i in range(count):
            self.cli("start", script, "--name", f"idle-{i}")
        self.remember([self.daemon_pid()])

    def start_job(self, script, name, schedule):
        """A scheduled job: one process of script per fire time (HERDSMAN_SCHEDULED_AT: its nominal time)."""
        self.cli("start", script, "--name", name, "--schedule", schedule, "--history", "100")

    def jobs(self, timeout=60):
        return json.loads(self.cli("jobs", "--json", timeout=timeout))

    def cleanup(self):
        pid = self.daemon_pid()
        tree = descendants(pid) if pid else []
        try:
            subprocess.run([self.binary, "kill"], env=self.env, capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            log("herdsman kill: no answer in 30 s; SIGKILL")
        kill_leftovers(tree + ([(pid, start_time(pid))] if pid else []) + self.seen)
        shutil.rmtree(self.home, ignore_errors=True)


class Pm2(Daemon):
    name = "pm2"
    pid_file = "pm2.pid"
    wake = ("ping",)

    def __init__(self, binary):
        super().__init__(binary)
        self.env["PM2_HOME"] = self.home

    def cli(self, *args, port=None, timeout=60):
        env = dict(self.env, PORT=str(port)) if port else self.env
        return run([self.binary, *args], env, timeout, what=f"pm2 {args[0]}")

    def start_cmd(self, port, n):
        return [self.binary, "start", APP, "--name", "bench", "-i", str(n)]

    def start_env(self, port):
        return dict(self.env, PORT=str(port))

    def processes(self):
        text = self.cli("jlist")
        return json.loads(text[text.index("["):])

    def worker_pids(self, name=None):
        return self.remember([p["pid"] for p in self.processes() if p.get("pid") and (name is None or p["name"] == name)])

    def online(self):
        return sum(1 for p in self.processes() if p["pm2_env"]["status"] == "online")

    def control_pid(self):
        """The process that serves the CLI: the God daemon (it also holds the workers and, in cluster mode, the
        listening socket)."""
        return self.daemon_pid()

    def update(self, binary=None):
        """`pm2 update`: saves the process list, kills the daemon (and so every app), starts a new one and
        resurrects the apps."""
        self.cli("update", timeout=90)

    def start_job(self, script, name, schedule):
        """PM2's cron job idiom: cron_restart with autorestart off (the app is started at `start`, then restarted at
        each fire time)."""
        self.cli("start", script, "--name", name, "--cron-restart", schedule, "--no-autorestart")

    def start_blocking_app(self, port):
        """2 workers of bench/apps/blocking.js in cluster mode (PM2 has no watchdog)."""
        self.cli("start", BLOCK_APP, "--name", "bench", "-i", "2", port=port)
        self.remember([self.daemon_pid()])

    def start_fork_apps(self, count, script):
        path = os.path.join(self.home, "bench-apps.json")
        with open(path, "w") as f:
            json.dump({"apps": [{"name": f"idle-{i}", "script": script, "exec_mode": "fork"}
                                for i in range(count)]}, f)
        self.cli("start", path, timeout=180)
        self.remember([self.daemon_pid()])

    def cleanup(self):
        pid = self.daemon_pid()
        tree = descendants(pid) if pid else []
        if pid:  # `pm2 kill` with no daemon would spawn one first
            try:
                subprocess.run([self.binary, "kill"], env=self.env, capture_output=True, timeout=30,
                               stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                log("pm2 kill: no answer in 30 s; SIGKILL")
        kill_leftovers(tree + ([(pid, start_time(pid))] if pid else []) + self.seen)
        shutil.rmtree(self.home, ignore_errors=True)


class Baseline(Supervisor):
    """No supervisor: bench/launcher.py binds the socket and forks the workers (fd 3, LISTEN_FDS, the preload)."""

    name = "baseline"
    has_cli = False

    def __init__(self):
        super().__init__()
        self.proc = None
        self.lines = []
        self.cond = threading.Condition()

    def start_cmd(self, port, n):
        return [sys.executable, LAUNCHER, "--listen", f"127.0.0.1:{port}", "-i", str(n), "--preload", PRELOAD,
                "--respawn", "--", "node", APP]

    def start_env(self, port):
        return self.env

    def launch(self, argv):
        self.proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, start_new_session=True, cwd=self.home)
        threading.Thread(target=self._read, daemon=True).start()
        return self.proc

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.strip())
                self.cond.notify_all()

    def wait_line(self, word, after, timeout=30):
        with self.cond:
            ok = self.cond.wait_for(lambda: word in self.lines[after:], timeout)
        if not ok:
            raise ScenarioError(f"launcher: no '{word}' in {timeout} s")

    def start_cluster(self, port, n):
        self.launch(self.start_cmd(port, n))

    def worker_pids(self, name=None):
        if self.proc is None:
            return []
        return self.remember([pid for pid, _ in descendants(self.proc.pid)])

    def online(self):
        return len(self.worker_pids())

    def start_fork_apps(self, count, script):
        self.launch([sys.executable, LAUNCHER, "-i", str(count), "--", "node", script])

    def _signal_and_wait(self, sig, word):
        mark = len(self.lines)
        self.proc.send_signal(sig)
        self.wait_line(word, mark)
        unready = [line for line in self.lines[mark:] if line.startswith("unready")]
        if unready:
            raise ScenarioError(f"launcher: a replacement never reported ready ({unready[0]}): does bench/launcher.py "
                                "speak the readiness protocol of src/daemon/node/listen.cjs?")

    def reload(self):
        self._signal_and_wait(signal.SIGHUP, "reloaded")

    def restart(self):
        self._signal_and_wait(signal.SIGUSR2, "restarted")

    def cleanup(self):
        if self.proc is not None:
            tree = descendants(self.proc.pid)
            try:
                self.proc.terminate()
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            kill_leftovers(tree + self.seen)
        shutil.rmtree(self.home, ignore_errors=True)


class Plain(Supervisor):
    """The app run plainly: `node examples/hello.js` (PORT in its env), no preload, no supervisor."""

    name = "plain"
    has_cli = False

    def __init__(self):
        super().__init__()
        self.proc = None

    def start_cmd(self, port, n):
        return ["node", APP]

    def start_env(self, port):
        return dict(self.env, PORT=str(port))

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.home, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Scenarios. Each takes a fresh supervisor object, returns {metric: value}, and leaves nothing running.
# ---------------------------------------------------------------------------------------------------------------
class Config:
    def __init__(self, quick, reps):
        self.quick = quick
        self.reps = reps
        self.wrk_s = 2 if quick else 8
        self.balance_connections = 400 if quick else 2000  # new connections from 8 client addresses, per mode
        self.settle_s = 2.0 if quick else 5.0  # RSS samples are taken this long after the start command
        self.hf_runs = {"herdsman": 5 if quick else 40, "pm2": 5 if quick else 10, "node": 5 if quick else 10}
        self.hf_warmup = 1 if quick else 3
        self.start_samples = 1 if quick else 2
        self.kills = 1 if quick else 2
        self.action_gap_s = 0.5 if quick else 1.0
        self.crashloop_s = 10.0
        self.idle_s = 10.0 if quick else 60.0
        self.idle_settle_s = 4.0 if quick else 8.0
        self.apps = 100
        self.survive_idle_s = 3.0 if quick else 10.0
        self.survive_after_s = 0.5 if quick else 1.0  # the load goes on this long after `update` returned
        self.survive_kills = 2 if quick else 3
        self.jobs_delay_s = 10 if quick else 60  # a job every second for this long: its start delays
        self.jobs_count = 100 if quick else 1000  # jobs on */10 s...
        self.jobs_load_s = 20 if quick else 60  # ...for this long: the keeper's CPU and RSS
        self.jobs_settle_s = 1.0 if quick else 5.0  # after `herdsman daemon`, before the idle window
        self.thousand_workers = 100 if quick else 1000  # the thousand scenario's workers, in each mode
        self.thousand_idle_s = 3.0 if quick else 10.0  # their idle CPU is measured over this long
        self.thousand_spaced_runs = 5 if quick else 20  # `list` 0.6 s apart
        self.jobs_idle_s = 2.0 if quick else 10.0  # the same keeper idle (no job) before, for this long
        self.jobs_hf_runs = 20  # `herdsman jobs` calls with jobs_count jobs
        self.hung_s = 8.0 if quick else 15.0  # the probe's window after `/block`
        self.next_herdsman = None  # the second build `update` moves to (--quick: None, a copy of the same binary)


def scenario_serve(sup, cfg):
    """2 workers of hello.js: RSS, `list` latency, then keep-alive and new-connection throughput with wrk."""
    out = {}
    port = free_port()
    t0 = time.monotonic()
    sup.start_cluster(port, 2)
    serve_pids(port, 2)
    workers = sup.worker_pids("bench")
    if len(workers) != 2:
        raise ScenarioError(f"{sup.name}: {len(workers)} workers, not 2")
    time.sleep(max(0.0, t0 + cfg.settle_s - time.monotonic()))
    daemon = sup.daemon_pid()
    own = sup.supervisor_pids()
    if daemon:
        out["rss_daemon_2"] = rss_bytes(daemon) / MIB
    if own:
        out["pss_own_2"] = sum(pss_bytes(p) or 0 for p in own) / MIB
    out["rss_worker"] = max(rss_bytes(p) or 0 for p in workers) / MIB
    if sup.has_cli:
        out["list_2"] = hyperfine(sup.list_argv(), sup.env, cfg.hf_runs[sup.name], cfg.hf_warmup)
    wrk(port, 1)  # warm-up (JIT, connection setup)
    for key, close in (("ka", False), ("close", True)):
        meter = CpuMeter(own).start()
        split = []
        r = wrk(port, cfg.wrk_s, close=close, midway=None if close else lambda: split.extend(connection_split(port)))
        if not close:
            out["ka_busier"] = split[0] if split else None
            out["ka_split_detail"] = split
        if daemon:
            out[f"{key}_daemon_cpu"] = meter.stop()
        out[f"{key}_rps"] = r["rps"]
        out[f"{key}_p99"] = r["p99_ms"]
        out[f"{key}_errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
    return out


def time_to_serving(sup, port, n, env, argv):
    """From running argv to n distinct workers answering (ms). Returns (ms, the process if argv keeps running)."""
    probe = Probe(port, interval=0.002, timeout=3.0)
    probe.start()
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True, text=True)
        deadline = time.monotonic() + 30
        while True:
            done = first_time_distinct(probe.snapshot(), n, since=t0)
            if done is not None:
                break
            rc = proc.poll()
            if rc not in (None, 0):
                raise ScenarioError(f"{sup.name}: {' '.join(argv[:2])} exited {rc}: {proc.stderr.read()[-300:]}")
            if time.monotonic() > deadline:
                raise ScenarioError(f"{sup.name}: {n} workers not answering 30 s after start")
            time.sleep(0.002)
    finally:
        probe.stop()
    return (done - t0) * 1000.0, proc


def scenario_start(sup, cfg):
    """Start -> n workers answering: plain node (1), baseline launcher (2), herdsman/PM2 warm and cold (2)."""
    out = {"start_warm": [], "start_cold": [], "start_plain": []}
    for i in range(cfg.start_samples):
        port = free_port()
        if isinstance(sup, Plain):
            ms, sup.proc = time_to_serving(sup, port, 1, sup.start_env(port), sup.start_cmd(port, 1))
            t_started = time.monotonic() - ms / 1000.0
            if i == 0:
                time.sleep(max(0.0, t_started + cfg.settle_s - time.monotonic()))
                out["rss_plain"] = rss_bytes(sup.proc.pid) / MIB
            out["start_plain"].append(ms)
            sup.proc.kill()
            sup.proc.wait(5)
            sup.proc = None
            continue
        if isinstance(sup, Baseline):
            ms, sup.proc = time_to_serving(sup, port, 2, sup.start_env(port), sup.start_cmd(port, 2))
            out["start_warm"].append(ms)  # no daemon: the same figure stands in both rows
            out["start_cold"].append(ms)
            sup.cleanup()
            sup.__init__()
            continue
        # warm: the daemon is already up (and idle: its RSS is sampled first)
        fresh = type(sup)(sup.binary)
        try:
            fresh.start_daemon()
            t_daemon = time.monotonic()
            if i == 0:
                time.sleep(max(0.0, t_daemon + cfg.settle_s - time.monotonic()))
                out["rss_daemon_idle"] = rss_bytes(fresh.daemon_pid()) / MIB
            else:
                time.sleep(0.5)
            ms, proc = time_to_serving(fresh, port, 2, fresh.start_env(port), fresh.start_cmd(port, 2))
            proc.wait(30)
            fresh.remember([fresh.daemon_pid()])
            out["start_warm"].append(ms)
        finally:
            fresh.cleanup()
        # cold: no daemon
        fresh = type(sup)(sup.binary)
        port = free_port()
        try:
            ms, proc = time_to_serving(fresh, port, 2, fresh.start_env(port), fresh.start_cmd(port, 2))
            proc.wait(30)
            fresh.remember([fresh.daemon_pid()])
            out["start_cold"].append(ms)
        finally:
            fresh.cleanup()
    return {k: v for k, v in out.items() if v != []}


def scenario_crash(sup, cfg):
    """kill -9 of a worker -> a replacement answering (ms), and failed new connections meanwhile; 1 and 2 workers."""
    out = {}
    for n in (1, 2):
        fresh = sup if n == 1 else fresh_like(sup)
        try:
            port = free_port()
            fresh.start_cluster(port, n)
            serve_pids(port, n)
            time.sleep(1.2)  # a stable run first: a quick crash (uptime < 1 s) is a crash loop for both supervisors
            probe = Probe(port, interval=0.002, timeout=2.0)
            probe.start()
            times, kills = [], []
            try:
                for k in range(cfg.kills):
                    before = set(fresh.worker_pids("bench"))
                    victim = min(before) if isinstance(fresh, Baseline) else fresh.worker_pids("bench")[0]
                    t0 = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                    kills.append(t0)
                    done = probe.wait_for(lambda r: first_time_distinct(r, 1, since=t0, exclude=before), 10,
                                          f"{fresh.name}: a replacement answering after kill -9")
                    times.append((done - t0) * 1000.0)
                    time.sleep(1.5 if k + 1 < cfg.kills else 0.3)
            finally:
                results = probe.stop()
            c = count_outcomes(results)
            out[f"crash{n}"] = times
            out[f"crash{n}_failed"] = sum(c[f] for f in FAILURES)
            out[f"crash{n}_inflight"] = sum(1 for opened, finished, outcome, _ in results if outcome != "ok" and
                                            any(opened < t <= finished for t in kills))
            out[f"crash{n}_slowest"] = slowest_ok_ms(results)
            out[f"crash{n}_detail"] = c
        finally:
            if fresh is not sup:
                fresh.cleanup()
    return out


def fresh_like(sup):
    if isinstance(sup, (Herdsman, Pm2)):
        return type(sup)(sup.binary)
    return type(sup)()


def scenario_under_load(sup, cfg, action):
    """3 reloads (or restarts) of 2 workers under wrk -c64 keep-alive load and a probe opening a new connection
    every 5 ms; counts what went wrong."""
    port = free_port()
    sup.start_cluster(port, 2)
    serve_pids(port, 2)
    probe = Probe(port, interval=0.005, timeout=2.0)
    probe.start()
    cmd = ["wrk", "-t2", "-c64", "-d120s", "--timeout", "2s", f"http://127.0.0.1:{port}/"]
    load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    times = []
    try:
        time.sleep(cfg.action_gap_s)
        for _ in range(3):
            t = time.monotonic()
            getattr(sup, action)()
            times.append((time.monotonic() - t) * 1000.0)
            time.sleep(cfg.action_gap_s)
    finally:
        load.send_signal(signal.SIGINT)
        try:
            text, err = load.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            load.kill()
            text, err = load.communicate()
        results = probe.stop()
    w = parse_wrk(text)
    c = count_outcomes(results)
    return {
        f"{action}_failed": c["refused"] + c["reset"] + c["closed"] + c["other"] + w["connect"],
        f"{action}_hung": c["timeout"],
        f"{action}_non2xx": c["non2xx"] + w["non2xx"],
        f"{action}_wrk_rw": w["read"] + w["write"] + w["timeout"],
        f"{action}_probe_ok": c["ok"],
        f"{action}_slowest": slowest_ok_ms(results),
        f"{action}_cmd": times,
        f"{action}_detail": {"wrk": w, "probe": c},
    }


def scenario_crashloop(sup, cfg):
    """An app that exits 1 at once: starts in 10 s, and the daemon's CPU over those 10 s (daemon already up)."""
    starts = os.path.join(sup.home, "starts.log")
    sup.env["BENCH_STARTS"] = starts
    sup.start_daemon()
    time.sleep(1.0)
    meter = CpuMeter([sup.daemon_pid()]).start()
    t0_wall = time.time()
    t0 = time.monotonic()
    sup.start_crash_app()
    time.sleep(max(0.0, t0 + cfg.crashloop_s - time.monotonic()))
    cpu = meter.stop()
    try:
        stamps = [int(x) for x in open(starts).read().split()]
    except OSError:
        stamps = []
    within = [s for s in stamps if s <= (t0_wall + cfg.crashloop_s) * 1000]
    if not within:
        raise ScenarioError(f"{sup.name}: the crash-loop app never started")
    return {"crashloop_restarts": len(within) - 1, "crashloop_cpu": cpu}


def scenario_idle(sup, cfg):
    """100 fork-mode idle apps: daemon and apps' CPU over cfg.idle_s, RSS, then `list` latency."""
    out = {}
    sup.start_fork_apps(cfg.apps, IDLE_APP)
    deadline = time.monotonic() + 180
    while sup.online() < cfg.apps:
        if time.monotonic() > deadline:
            raise ScenarioError(f"{sup.name}: {cfg.apps} apps not online after 180 s")
        time.sleep(0.25)
    workers = sup.worker_pids()
    if len(workers) < cfg.apps:
        raise ScenarioError(f"{sup.name}: {len(workers)} app processes, not {cfg.apps}")
    # settle: until the youngest app has run for idle_settle_s (their start-up is not idle time)
    youngest = min((a for a in (age_s(p) for p in workers) if a is not None), default=0.0)
    time.sleep(max(1.0, cfg.idle_settle_s - youngest))
    own = sup.supervisor_pids()
    d_meter = CpuMeter(own).start() if own else None
    w_meter = CpuMeter(workers).start()
    time.sleep(cfg.idle_s)
    if d_meter:
        out["idle_daemon_cpu"] = d_meter.stop()
    out["idle_apps_cpu"] = w_meter.stop()
    if own:
        out["rss_daemon_100"] = rss_bytes(own[0]) / MIB
        out["pss_own_100"] = sum(pss_bytes(p) or 0 for p in own) / MIB
    out["rss_app_100"] = statistics.median(rss_bytes(p) or 0 for p in workers) / MIB
    if sup.has_cli:
        out["list_100"] = hyperfine(sup.list_argv(), sup.env, cfg.hf_runs[sup.name], cfg.hf_warmup)
    return out


def _wait_age(pid, seconds, deadline_s=10):
    """Waits until PID has run for `seconds` (a controller killed younger than 1 s is started again after a
    delay: a crash loop)."""
    deadline = time.monotonic() + deadline_s
    while (age_s(pid) or 0.0) < seconds:
        if time.monotonic() > deadline or not alive(pid):
            raise ScenarioError(f"pid {pid} gone or not {seconds} s old after {deadline_s} s")
        time.sleep(0.05)


def _list_answers(sup, deadline_s=30):
    """Runs `list` until it exits 0; returns when (monotonic). Each attempt has its own timeout."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            out = subprocess.run(sup.list_argv(), env=sup.env, capture_output=True, timeout=10,
                                 stdin=subprocess.DEVNULL)
            if out.returncode == 0:
                return time.monotonic()
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() > deadline:
            raise ScenarioError(f"{sup.name}: `list` not answering {deadline_s} s after the kill")
        time.sleep(0.005)


def scenario_survive(sup, cfg):
    """2 workers of hello.js. Idle: RSS and CPU of each of the supervisor's own processes. Then `update` under a
    new-connection load (wrk -c64 Connection: close + the probe). Last, kill -9 of the process that serves the CLI
    (herdsman: the controller; PM2: its God daemon) -> `list` answers again, under the probe."""
    out = {}
    port = free_port()
    t0 = time.monotonic()
    sup.start_cluster(port, 2)
    serve_pids(port, 2)
    workers = sup.worker_pids("bench")
    if len(workers) != 2:
        raise ScenarioError(f"{sup.name}: {len(workers)} workers, not 2")

    # 1. idle: each process's CPU over survive_idle_s, then its RSS
    time.sleep(max(0.0, t0 + cfg.settle_s - time.monotonic()))
    roles = sup.roles() if isinstance(sup, Herdsman) else {"keeper": sup.daemon_pid()}
    meters = {role: CpuMeter([pid]).start() for role, pid in roles.items()}
    time.sleep(cfg.survive_idle_s)
    keys = {"keeper": "keeper", "controller": "controller", "log keeper": "logkeeper"}
    for role, meter in meters.items():
        out[f"survive_cpu_{keys[role]}"] = meter.stop()
        out[f"survive_rss_{keys[role]}"] = (rss_bytes(roles[role]) or 0) / MIB
    out["survive_cpu_sum"] = sum(out[f"survive_cpu_{keys[r]}"] for r in roles)
    out["survive_rss_sum"] = sum(out[f"survive_rss_{keys[r]}"] for r in roles)
    out["survive_pss_sum"] = sum(pss_bytes(pid) or 0 for pid in roles.values()) / MIB

    # 2. `update` under a new-connection load
    binary = None
    if isinstance(sup, Herdsman):
        binary = cfg.next_herdsman
        if binary is None:  # --quick: a copy of the same binary (another file, the same version)
            binary = os.path.join(sup.home, "herdsman-copy")
            shutil.copy2(sup.binary, binary)
        before_version = sup.version()
    probe = Probe(port, interval=0.005, timeout=2.0)
    probe.start()
    cmd = ["wrk", "-t2", "-c64", "-d120s", "--timeout", "2s", "-H", "Connection: close", f"http://127.0.0.1:{port}/"]
    load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        time.sleep(cfg.action_gap_s)
        t = time.monotonic()
        sup.update(binary)
        out["survive_update_cmd"] = (time.monotonic() - t) * 1000.0
        time.sleep(cfg.survive_after_s)
    finally:
        load.send_signal(signal.SIGINT)
        try:
            text, err = load.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            load.kill()
            text, err = load.communicate()
        results = probe.stop()
    w = parse_wrk(text)
    c = count_outcomes(results)
    out["survive_update_failed"] = c["refused"] + c["reset"] + c["closed"] + c["other"] + c["non2xx"] + \
        w["connect"] + w["read"] + w["write"] + w["non2xx"]
    out["survive_update_probe_failed"] = c["refused"] + c["reset"] + c["closed"] + c["other"] + c["non2xx"]
    out["survive_update_hung"] = c["timeout"] + w["timeout"]
    after = sup.worker_pids("bench")
    out["survive_update_replaced"] = len(set(workers) - set(after))
    detail = {"wrk": w, "probe": c, "workers_before": workers, "workers_after": after}
    if isinstance(sup, Herdsman):
        now = sup.version()
        detail.update(binary=binary, version_before=before_version["version"], version_after=now["version"],
                      keeper_kept=now["keeper_pid"] == before_version["keeper_pid"])
        if now["keeper_pid"] != before_version["keeper_pid"]:
            raise ScenarioError(f"herdsman update: keeper pid {before_version['keeper_pid']} -> {now['keeper_pid']}")
        if cfg.next_herdsman and now["version"] == before_version["version"]:
            raise ScenarioError(f"herdsman update: still version {now['version']} after the update")
    out["survive_update_detail"] = detail
    workers = after or workers
    if len(after) < 2:  # PM2: wait for the resurrected apps before the kill
        serve_pids(port, 2)
        workers = sup.worker_pids("bench")

    # 3. kill -9 of the process that serves the CLI -> `list` answers; the probe runs throughout. PM2's apps die
    # with its daemon, so it is killed once; herdsman's controller survive_kills times, each at least 1.2 s old.
    kills = cfg.survive_kills if isinstance(sup, Herdsman) else 1
    times = []
    probe = Probe(port, interval=0.005, timeout=2.0)
    probe.start()
    try:
        for _ in range(kills):
            victim = sup.control_pid()
            if not victim:
                raise ScenarioError(f"{sup.name}: no process serving the CLI")
            sup.remember([victim])
            _wait_age(victim, 1.2)
            t = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            times.append((_list_answers(sup) - t) * 1000.0)
        time.sleep(0.3)
    finally:
        results = probe.stop()
    c = count_outcomes(results)
    out["survive_ctl_ms"] = times
    out["survive_ctl_failed"] = sum(c[f] for f in FAILURES)
    out["survive_ctl_apps"] = sup.online()
    out["survive_ctl_replaced"] = len(set(workers) - set(sup.worker_pids("bench")))
    out["survive_ctl_detail"] = c
    return out


def _job_delays(path, first, seconds):
    """The job's lines ("<nominal> <start, s.us>") -> {nominal fire second: [start delay in ms]} for the fire times
    in [first, first + seconds). herdsman's nominal time is HERDSMAN_SCHEDULED_AT; PM2 gives none ("-"): its
    nominal time is the second the start falls in (the fire second it belongs to, while delays stay under 1 s)."""
    out = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        nominal, started = line.split()
        started = float(started)
        fire = float(math.floor(started)) if nominal == "-" else datetime.datetime.fromisoformat(nominal).timestamp()
        if first <= fire < first + seconds:
            out.setdefault(fire, []).append((started - fire) * 1000.0)
    return out


def _watch(keeper, own, seconds):
    """Over `seconds`: the keeper's CPU, its own processes' CPU (% of a core) and the keeper's peak RSS (MiB,
    sampled every 0.25 s)."""
    k_meter, o_meter = CpuMeter([keeper]).start(), CpuMeter(own).start()
    end = time.monotonic() + seconds
    peak = rss_bytes(keeper) or 0
    while time.monotonic() < end:
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))
        peak = max(peak, rss_bytes(keeper) or 0)
    return k_meter.stop(), o_meter.stop(), peak / MIB


def _after_fire(period=10.0, grace=1.5):
    """Waits until the last fire time of a */period s schedule is at least `grace` s old (its runs have ended, so a
    count of the runs ended falls between two fire times); returns the time (epoch s)."""
    since = time.time() % period
    if since < grace:
        time.sleep(grace - since)
    return time.time()


def scenario_jobs(sup, cfg):
    """Scheduled jobs. 1. A job every second (bench/apps/job.sh) for jobs_delay_s: each run's start minus its
    nominal fire time (herdsman: `--schedule`; PM2: `--cron-restart --no-autorestart`). 2. herdsman only (PM2 has
    no equivalent): jobs_count jobs (/bin/true) on */10 s from one ecosystem.toml, the keeper's CPU and peak RSS
    over jobs_load_s against the same keeper idle before, then `herdsman jobs` latency."""
    out = {}
    starts = os.path.join(sup.home, "job-starts.log")
    sup.env["BENCH_JOB_LOG"] = starts
    sup.start_daemon()
    time.sleep(0.5)
    sup.start_job(JOB_APP, "job", "* * * * * *")
    sup.remember([sup.daemon_pid()])
    # the first whole fire second after `start` returned (PM2 also runs the app once at `start`: not a fire time)
    first = math.ceil(time.time() + 0.2)
    time.sleep(max(0.0, first + cfg.jobs_delay_s + 0.5 - time.time()))  # the last fire time's run has had 0.5 s
    if isinstance(sup, Herdsman):  # the daemon's own record: started_at - scheduled_at (no exec, no bash)
        runs = json.loads(sup.cli("jobs", "history", "job", "--json"))
        own = [r["started_at_ms"] - r["scheduled_at_ms"] for r in runs if r.get("scheduled_at_ms") and
               r.get("started_at_ms") and first * 1000 <= r["scheduled_at_ms"] < (first + cfg.jobs_delay_s) * 1000]
        if own:
            out["jobs_daemon_p50"] = percentile(own, 50)
            out["jobs_daemon_p99"] = percentile(own, 99)
    sup.cli("delete", "job")
    fires = _job_delays(starts, first, cfg.jobs_delay_s)
    delays = [d for runs in fires.values() for d in runs]
    if not delays:
        raise ScenarioError(f"{sup.name}: the job never ran in {cfg.jobs_delay_s} s")
    out["jobs_delay_p50"] = percentile(delays, 50)
    out["jobs_delay_p99"] = percentile(delays, 99)
    out["jobs_delay_max"] = max(delays)
    out["jobs_delay_missed"] = cfg.jobs_delay_s - len(fires)
    out["jobs_delay_extra"] = len(delays) - len(fires)
    out["jobs_delay_detail"] = {"first": first, "delays": {str(k): v for k, v in sorted(fires.items())}}
    if not isinstance(sup, Herdsman):
        return out

    # 2. jobs_count jobs on */10 s (herdsman only), on a fresh daemon: idle first, then the jobs. The daemon of
    # part 1 is stopped first. The CPU and RSS come from /proc; a `jobs` call that does not answer in 10 s breaks
    # the scenario, with what was measured kept.
    sup.cli("kill", timeout=30)
    fresh = fresh_like(sup)
    try:
        fresh.start_daemon()
        time.sleep(cfg.jobs_settle_s)
        keeper = fresh.daemon_pid()
        own = fresh.supervisor_pids()
        out["jobs_idle_cpu"], out["jobs_idle_cpu_own"], out["jobs_idle_rss"] = _watch(keeper, own, cfg.jobs_idle_s)
        path = os.path.join(fresh.home, "ecosystem.toml")
        with open(path, "w") as f:
            for i in range(cfg.jobs_count):
                f.write(f'[[apps]]\nname = "tick-{i}"\nscript = "/bin/true"\ninterpreter = "none"\n'
                        f'schedule = "*/10 * * * * *"\n\n')
        fresh.remember([keeper])
        t = time.monotonic()
        try:
            fresh.cli("start", path, timeout=120)
            out["jobs_start_cmd"] = (time.monotonic() - t) * 1000.0
            jobs = fresh.jobs(timeout=10)
            if len(jobs) != cfg.jobs_count:
                raise ScenarioError(f"herdsman: {len(jobs)} jobs, not {cfg.jobs_count}")
            time.sleep(0.5)  # defining them is not the steady state (the `start` row has its time)
            t_count0 = _after_fire()
            done0 = sum(j["ok"] + j["failed"] for j in fresh.jobs(timeout=10))
        except ScenarioError as e:
            raise ScenarioError(f"{e} (`start` of {cfg.jobs_count} jobs on */10 s, or right after it)", out) from None
        t_window = time.time()
        own = fresh.supervisor_pids()
        out["jobs_load_cpu"], out["jobs_load_cpu_own"], out["jobs_load_rss"] = _watch(keeper, own, cfg.jobs_load_s)
        out["jobs_load_rss_delta"] = out["jobs_load_rss"] - out["jobs_idle_rss"]
        t_count1 = _after_fire()
        try:
            jobs = fresh.jobs(timeout=10)
        except ScenarioError as e:
            raise ScenarioError(f"{e}, after {cfg.jobs_load_s:.0f} s of {cfg.jobs_count} jobs on */10 s (the "
                                f"keeper at {out['jobs_load_cpu']:.0f} % of a core over them)", out) from None
        # the fire times (every 10 s) between the two counts, each for every job: each count is taken 1.5 s or more
        # after a fire time, so every run of the fire times between them should have ended
        fired = len(range(math.ceil(t_count0 / 10.0) * 10, math.ceil(t_count1 / 10.0) * 10, 10))
        out["jobs_load_runs"] = sum(j["ok"] + j["failed"] for j in jobs) - done0
        out["jobs_load_expected"] = fired * cfg.jobs_count
        out["jobs_load_failed"] = sum(j["failed"] for j in jobs)
        try:
            out["jobs_cli"], out["jobs_cli_p95"] = hyperfine([fresh.binary, "jobs"], fresh.env, cfg.jobs_hf_runs,
                                                             cfg.hf_warmup, p95=True, timeout=60)
        except ScenarioError as e:
            raise ScenarioError(str(e), out) from None
    finally:
        fresh.cleanup()
    return out


def scenario_hung(sup, cfg):
    """The article's blocking route: 2 workers of bench/apps/blocking.js; one request to /block spins one worker's
    event loop for 30 s. A probe opens a new connection every 5 ms for cfg.hung_s after it: herdsman (watchdog 2s)
    replaces the stuck worker and, since a blocked worker does not call accept on the shared socket, the healthy one
    takes every connection meanwhile; PM2's daemon hands connections round-robin, so it keeps giving the stuck
    worker connections it cannot serve. Counts the connections answered, hung (no answer within 5 s) and failed
    otherwise, and when a new worker first answered."""
    port = free_port()
    sup.start_blocking_app(port)
    before = set(serve_pids(port, 2))
    time.sleep(1.2)  # a stable run first (and, for herdsman, a few heartbeats)
    probe = Probe(port, interval=0.005, timeout=5.0, inflight=512)
    probe.start()
    blocker = None
    try:
        time.sleep(0.5)  # the probe is served before the block (pacing, not synchronisation)
        blocker = socket.create_connection(("127.0.0.1", port), timeout=5)
        blocker.sendall(b"GET /block HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        t0 = time.monotonic()
        time.sleep(cfg.hung_s)
    finally:
        results = probe.stop()
        if blocker is not None:
            blocker.close()
    after = [r for r in results if r[0] >= t0]
    c = count_outcomes(after)
    replaced = first_time_distinct(results, 1, since=t0, exclude=before)
    return {
        "hung_ok": c["ok"],
        "hung_timeout": c["timeout"],
        "hung_failed": sum(c[f] for f in FAILURES if f != "timeout"),
        "hung_replaced": [] if replaced is None else (replaced - t0) * 1000.0,
        "hung_detail": c,
    }


def scenario_node_e0(cfg):
    return {"node_e0": hyperfine(["node", "-e", "0"], dict(os.environ), cfg.hf_runs["node"], cfg.hf_warmup)}


# Scenario name -> (function, supervisors it runs for)
def scenario_balance(sup, cfg):
    """4 workers of hello.js, for each balance mode herdsman offers (PM2 and the baseline: their one mode):
    keep-alive and new-connection throughput and p99 with wrk (one client address: 127.0.0.1), and how new
    connections from 8 client addresses (127.0.0.1-8) spread over the workers (bench/balance.py's client)."""
    from balance import split_by_source
    out = {}
    modes = ("shared", "hash", "sticky") if sup.name == "herdsman" else ("shared",)
    for mode in modes:
        port = free_port()
        if sup.name == "herdsman":
            run(sup.start_cmd(port, 4) + ["--balance", mode], sup.start_env(port), 60, what=f"herdsman start {mode}")
            sup.remember([sup.daemon_pid()])
        else:
            sup.start_cluster(port, 4)
        if sup.name == "herdsman":
            deadline = time.monotonic() + 30
            while sup.online() < 4:
                if time.monotonic() > deadline:
                    raise ScenarioError(f"herdsman --balance {mode}: 4 workers not online after 30 s")
                time.sleep(0.02)
        serve_pids(port, 1 if mode == "sticky" else 4)  # sticky: one client address reaches one worker
        wrk(port, 1)  # warm-up
        for key, close in (("ka", False), ("close", True)):
            r = wrk(port, cfg.wrk_s, close=close)
            out[f"bal_{mode}_{key}_rps"] = r["rps"]
            out[f"bal_{mode}_{key}_p99"] = r["p99_ms"]
            out[f"bal_{mode}_{key}_errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
        r = split_by_source(port, cfg.balance_connections)
        split = (r["split"] + [0] * 4)[:4]
        out[f"bal_{mode}_split"] = split[0] / max(split[-1], 1)
        out[f"bal_{mode}_split_detail"] = split
        out[f"bal_{mode}_split_failed"] = r["failures"]
        if sup.name == "herdsman":
            sup.cli("delete", "bench")
    if sup.name != "herdsman":  # PM2 and the baseline have one mode: shown beside each of herdsman's
        for mode in ("hash", "sticky"):
            out.update({k.replace("bal_shared_", f"bal_{mode}_"): v for k, v in list(out.items())
                        if k.startswith("bal_shared_")})
    return out


def _write_fleet_file(path, apps, instances=1, ports=()):
    """An ecosystem.toml of `apps` apps running /bin/sleep (no interpreter): fork mode, or with `ports`, cluster
    mode (app i listens on ports[i], `instances` workers each)."""
    with open(path, "w") as f:
        for i in range(apps):
            f.write(f'[[apps]]\nname = "s-{i}"\nscript = "/bin/sleep"\nargs = ["100000"]\ninterpreter = "none"\n')
            if ports:
                f.write(f'instances = {instances}\nlisten = "127.0.0.1:{ports[i]}"\n')
            f.write("\n")


def _wait_online(sup, count, deadline_s=120):
    deadline = time.monotonic() + deadline_s
    while True:
        online = sup.online()
        if online >= count:
            return
        if time.monotonic() > deadline:
            raise ScenarioError(f"{sup.name}: {online} of {count} workers online after {deadline_s} s")
        time.sleep(0.25)


def scenario_thousand(sup, cfg):
    """thousand_workers (--quick: 100) /bin/sleep workers, herdsman only: in fork mode (one app each, from one
    ecosystem.toml), then in cluster mode (10 apps, each on its own port). For each: `start FILE` until it returns,
    the keeper's RSS and the keeper's, controller's and log keeper's CPU over thousand_idle_s once all are online,
    `list` back to back and 0.6 s apart (the keeper samples /proc again for the second), `stop all`."""
    out = {}
    n = cfg.thousand_workers
    sup.start_daemon()
    keeper = sup.daemon_pid()
    time.sleep(cfg.settle_s)
    out["thousand_idle_rss"] = (rss_bytes(keeper) or 0) / MIB
    ports = [free_port() for _ in range(10)]
    for mode, apps, instances, listen in (("fork", n, 1, ()), ("cluster", 10, n // 10, ports)):
        path = os.path.join(sup.home, f"{mode}.toml")
        _write_fleet_file(path, apps, instances, listen)
        t = time.monotonic()
        sup.cli("start", path, timeout=120)
        out[f"thousand_{mode}_start"] = time.monotonic() - t
        _wait_online(sup, n)
        time.sleep(cfg.settle_s)
        own = sup.supervisor_pids()
        meter = CpuMeter(own).start()
        time.sleep(cfg.thousand_idle_s)
        out[f"thousand_{mode}_idle_cpu"] = meter.stop()
        out[f"thousand_{mode}_rss"] = (rss_bytes(keeper) or 0) / MIB
        out[f"thousand_{mode}_pss_own"] = sum(pss_bytes(p) or 0 for p in own) / MIB
        out[f"thousand_{mode}_list"] = hyperfine(sup.list_argv(), sup.env, cfg.hf_runs["herdsman"], cfg.hf_warmup)
        out[f"thousand_{mode}_list_spaced"] = hyperfine(sup.list_argv(), sup.env, cfg.thousand_spaced_runs, 0,
                                                        prepare="sleep 0.6")
        t = time.monotonic()
        sup.cli("stop", "all", timeout=120)
        out[f"thousand_{mode}_stop"] = time.monotonic() - t
        sup.cli("delete", "all", timeout=120)
    return out


SCENARIOS = {
    "serve": (scenario_serve, ("herdsman", "pm2", "baseline")),
    "start": (scenario_start, ("plain", "herdsman", "pm2", "baseline")),
    "crash": (scenario_crash, ("herdsman", "pm2", "baseline")),
    "reload": (lambda s, c: scenario_under_load(s, c, "reload"), ("herdsman", "pm2", "baseline")),
    "restart": (lambda s, c: scenario_under_load(s, c, "restart"), ("herdsman", "pm2", "baseline")),
    "crashloop": (scenario_crashloop, ("herdsman", "pm2")),
    "idle": (scenario_idle, ("herdsman", "pm2", "baseline")),
    "survive": (scenario_survive, ("herdsman", "pm2")),
    "jobs": (scenario_jobs, ("herdsman", "pm2")),
    "balance": (scenario_balance, ("herdsman", "pm2", "baseline")),
    "hung": (scenario_hung, ("herdsman", "pm2")),
    "thousand": (scenario_thousand, ("herdsman",)),
}
# a generous bound per (scenario, supervisor) run; SIGALRM ends a run that goes past it
BOUND_S = {"serve": 120, "start": 120, "crash": 120, "reload": 120, "restart": 120, "crashloop": 60, "idle": 420,
           "survive": 120, "jobs": 300, "balance": 180, "hung": 120,
           "thousand": 600}


# ---------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------
# (key, scenario, what, unit, digits, target) ; target(h, p, b, ref) -> (text, passed or None)
def _ratio_target(minimum, text):
    def check(h, p, b, ref):
        if h is None or not b:
            return text, None
        return f"{text} (is {h / b:.2f}×)", h / b >= minimum
    return check


def _list_target(h, p, b, ref):
    if h is None or p is None:
        return "≥ 30× faster than pm2", None
    return f"≥ 30× faster than pm2 (is {p / h:.0f}×)", p / h >= 30


def _list100_target(h, p, b, ref):
    if h is None or p is None:
        return "≥ 30× faster than pm2; ≤ 10 ms", None
    return f"≥ 30× faster than pm2 (is {p / h:.0f}×); ≤ 10 ms", p / h >= 30 and h <= 10


def _rss_daemon_target(h, p, b, ref):
    if h is None or p is None:
        return "≤ 1/8 of PM2's", None
    return f"≤ 1/8 of PM2's (≤ {p / 8:.1f} MiB)", h <= p / 8


def _rss_worker_target(h, p, b, ref):
    if h is None or ref is None:
        return "≤ plain + 1 MiB", None
    return f"≤ plain + 1 MiB (≤ {ref + 1:.1f} MiB)", h <= ref + 1


def _start_target(h, p, b, ref):
    if h is None or ref is None:
        return "≤ 1.3× plain node start", None
    return f"≤ 1.3× plain node start (≤ {1.3 * ref:.0f} ms; is {h / ref:.2f}×)", h <= 1.3 * ref


def _crash_target(h, p, b, ref):
    if h is None or ref is None:
        return "≤ plain node start + 20 ms", None
    return f"≤ plain node start + 20 ms (≤ {ref + 20:.0f} ms)", h <= ref + 20


def _zero_target(h, p, b, ref, total=None):
    return "0 (every run)", None if total is None else total == 0


def _max_target(limit, text):
    def check(h, p, b, ref):
        return text, None if h is None else h <= limit
    return check


def _below_target(limit, text):
    def check(h, p, b, ref):
        return text, None if h is None else h < limit
    return check


ROWS = [
    # key, group, label, unit, digits, target, reference key (the "plain" figure the target is relative to)
    ("ka_rps", "Throughput, 2 workers", "keep-alive req/s (wrk -t2 -c64)", "req/s", 0,
     _ratio_target(0.97, "≥ 0.97× baseline"), None),
    ("ka_busier", "Throughput, 2 workers", "keep-alive connections held by the busier worker (of 64, mid-run)", "",
     0, None, None),
    ("ka_p99", "Throughput, 2 workers", "keep-alive p99 latency", "ms", 2, None, None),
    ("ka_daemon_cpu", "Throughput, 2 workers",
     "daemon (herdsman: keeper + controller + log keeper) CPU during keep-alive load", "% core", 1, None, None),
    ("close_rps", "Throughput, 2 workers", "new connection per request req/s (Connection: close)", "req/s", 0,
     _ratio_target(0.95, "≥ 0.95× baseline"), None),
    ("close_p99", "Throughput, 2 workers", "new connection per request p99 latency", "ms", 2, None, None),
    ("close_daemon_cpu", "Throughput, 2 workers",
     "daemon (herdsman: keeper + controller + log keeper) CPU during new-connection load", "% core", 1, None, None),
    ("list_2", "CLI latency (hyperfine)", "`list`, 2 workers", "ms", 1, _list_target, None),
    ("list_100", "CLI latency (hyperfine)", "`list`, 100 fork-mode apps", "ms", 1, _list100_target, None),
    ("node_e0", "CLI latency (hyperfine)", "reference: `node -e 0`", "ms", 1, None, None),
    ("rss_daemon_idle", "Memory (RSS)", "daemon (herdsman: the keeper), idle (no app)", "MiB", 1,
     _rss_daemon_target, None),
    ("rss_daemon_2", "Memory (RSS)", "daemon (herdsman: the keeper), 2 cluster workers", "MiB", 1,
     _rss_daemon_target, None),
    ("rss_daemon_100", "Memory (RSS)", "daemon (herdsman: the keeper), 100 fork-mode apps", "MiB", 1,
     _rss_daemon_target, None),
    ("pss_own_2", "Memory (PSS)", "keeper + controller + log keeper (PM2: its daemon), 2 cluster workers", "MiB",
     1, None, None),
    ("pss_own_100", "Memory (PSS)", "keeper + controller + log keeper (PM2: its daemon), 100 fork-mode apps",
     "MiB", 1, None, None),
    ("rss_worker", "Memory (RSS)", "hello.js worker (the larger of 2)", "MiB", 1, _rss_worker_target, "rss_plain"),
    ("rss_plain", "Memory (RSS)", "reference: `node examples/hello.js` run plainly", "MiB", 1, None, None),
    ("rss_app_100", "Memory (RSS)", "idle app, median of 100 (baseline: plain `node idle.js`)", "MiB", 1,
     lambda h, p, b, ref: _rss_worker_target(h, p, b, b), None),
    ("start_warm", "Start to serving", "`start -i 2` → 2 workers answering, daemon up (baseline: launcher)", "ms",
     0, _start_target, "start_plain"),
    ("start_cold", "Start to serving", "`start -i 2` → 2 workers answering, no daemon (baseline: launcher)", "ms",
     0, _start_target, "start_plain"),
    ("start_plain", "Start to serving", "reference: `node examples/hello.js` → first 200", "ms", 0, None, None),
    ("crash1", "Crash (kill -9 of a worker)", "1 worker: kill → replacement answering", "ms", 0, _crash_target,
     "start_plain"),
    ("crash1_failed", "Crash (kill -9 of a worker)", "1 worker: failed new connections (probe every 2 ms)", "", 0,
     _zero_target, None),
    ("crash2", "Crash (kill -9 of a worker)", "2 workers: kill → replacement answering", "ms", 0, _crash_target,
     "start_plain"),
    ("crash2_failed", "Crash (kill -9 of a worker)", "2 workers: failed new connections (probe every 2 ms)", "", 0,
     _zero_target, None),
    ("crash1_inflight", "Crash (kill -9 of a worker)", "1 worker: of those, in flight at the kill (opened before it)",
     "", 0, None, None),
    ("crash2_inflight", "Crash (kill -9 of a worker)", "2 workers: of those, in flight at the kill (opened before it)",
     "", 0, None, None),
    ("crash1_slowest", "Crash (kill -9 of a worker)", "1 worker: slowest new connection answered", "ms", 0, None,
     None),
    ("crash2_slowest", "Crash (kill -9 of a worker)", "2 workers: slowest new connection answered", "ms", 0, None,
     None),
    ("hung_ok", "Hung worker (a route blocks the event loop 30 s; 2 workers)",
     "new connections answered after /block (probe every 5 ms)", "", 0, None, None),
    ("hung_timeout", "Hung worker (a route blocks the event loop 30 s; 2 workers)",
     "new connections hung (no answer within 5 s)", "", 0, _zero_target, None),
    ("hung_failed", "Hung worker (a route blocks the event loop 30 s; 2 workers)",
     "new connections failed otherwise", "", 0, _zero_target, None),
    ("hung_replaced", "Hung worker (a route blocks the event loop 30 s; 2 workers)",
     "/block → a new worker answering (herdsman: watchdog 2s; PM2: none)", "ms", 0, None, None),
]
for _action in ("reload", "restart"):
    ROWS += [
        (f"{_action}_failed", f"3 × {_action} under load", "failed new connections (probe refused/reset/closed + wrk "
         "connect errors)", "", 0, _zero_target, None),
        (f"{_action}_hung", f"3 × {_action} under load", "hung new connections (probe: no answer in 2 s)", "", 0,
         _zero_target, None),
        (f"{_action}_non2xx", f"3 × {_action} under load", "non-2xx answers (wrk + probe)", "", 0, _zero_target, None),
        (f"{_action}_slowest", f"3 × {_action} under load", "slowest new connection answered (probe)", "ms", 0,
         None, None),
        (f"{_action}_wrk_rw", f"3 × {_action} under load", "wrk read/write/timeout errors on keep-alive connections "
         "(not a target: see README)", "", 0, None, None),
        (f"{_action}_cmd", f"3 × {_action} under load", f"`{_action}` command time (baseline: signal → done)", "ms",
         0, None, None),
    ]
ROWS += [
    ("crashloop_restarts", "Crash loop (exit 1 at once)", "restarts in 10 s", "", 0,
     _max_target(12, "≤ 12"), None),
    ("crashloop_cpu", "Crash loop (exit 1 at once)", "daemon CPU over those 10 s", "% core", 2,
     _below_target(2.0, "< 2 % of a core"), None),
    ("idle_daemon_cpu", "Idle, 100 fork-mode apps", "daemon (herdsman: keeper + controller + log keeper) CPU",
     "% core", 2,
     _max_target(0.3, "≤ 0.3 % of a core"), None),
    ("idle_apps_cpu", "Idle, 100 fork-mode apps", "the 100 apps' CPU (sum)", "% core", 2, None, None),
]
_G = "Survive, 2 cluster workers"
ROWS += [
    ("survive_ctl_ms", _G, "kill -9 of the controller → `list` answers (PM2: of its God daemon → `pm2 list`)", "ms",
     0, None, None),
    ("survive_ctl_failed", _G, "failed or hung new connections from the kill until `list` answers (probe every "
     "5 ms)", "", 0, _zero_target, None),
    ("survive_ctl_apps", _G, "apps online after the kill (of 2)", "", 0, None, None),
    ("survive_update_failed", _G, "`update` under new-connection load (PM2: `pm2 update`): failed new connections "
     "(probe + wrk -c64 Connection: close)", "", 0, _zero_target, None),
    ("survive_update_probe_failed", _G, "`update` under load: of those, the probe's (a new connection every 5 ms)",
     "", 0, None, None),
    ("survive_update_hung", _G, "`update` under load: hung new connections (no answer in 2 s)", "", 0, _zero_target,
     None),
    ("survive_update_replaced", _G, "`update` under load: workers replaced (of 2; 0 = the same pids)", "", 0,
     _zero_target, None),
    ("survive_update_cmd", _G, "`update` command time (PM2: `pm2 update`)", "ms", 0, None, None),
    ("survive_rss_keeper", _G, "idle RSS: keeper (PM2: its God daemon)", "MiB", 1, None, None),
    ("survive_rss_controller", _G, "idle RSS: controller", "MiB", 1, None, None),
    ("survive_rss_logkeeper", _G, "idle RSS: log keeper", "MiB", 1, None, None),
    ("survive_rss_sum", _G, "idle RSS: keeper + controller + log keeper (PM2: its daemon)", "MiB", 1, None, None),
    ("survive_pss_sum", _G, "idle PSS: keeper + controller + log keeper, shared pages counted once (PM2: its "
     "daemon)", "MiB", 1, None, None),
    ("survive_cpu_keeper", _G, "idle CPU: keeper (PM2: its God daemon)", "% core", 2, None, None),
    ("survive_cpu_controller", _G, "idle CPU: controller", "% core", 2, None, None),
    ("survive_cpu_logkeeper", _G, "idle CPU: log keeper", "% core", 2, None, None),
    ("survive_cpu_sum", _G, "idle CPU: keeper + controller + log keeper (PM2: its daemon)", "% core", 2, None,
     None),
]
_G = "Balance, 4 workers (PM2 and the baseline: their one mode, beside each)"
for _mode, _what in (("shared", "balance = shared (one socket)"), ("hash", "balance = hash (a socket per slot)"),
                     ("sticky", "balance = sticky (a socket per slot, client address hashed)")):
    ROWS += [
        (f"bal_{_mode}_ka_rps", _G, f"{_what}: keep-alive req/s (wrk -t2 -c64, one client address)", "req/s", 0,
         None, None),
        (f"bal_{_mode}_ka_p99", _G, f"{_what}: keep-alive p99", "ms", 2, None, None),
        (f"bal_{_mode}_close_rps", _G, f"{_what}: new connection per request req/s (one client address)", "req/s",
         0, None, None),
        (f"bal_{_mode}_close_p99", _G, f"{_what}: new connection per request p99", "ms", 2, None, None),
        (f"bal_{_mode}_split", _G, f"{_what}: new connections from 8 client addresses, busiest / least busy "
         "worker", "", 2, None, None),
    ]
_G = "Scheduled jobs"
_N = "1000 jobs on `*/10 * * * * *` (--quick: 100), herdsman only (PM2: no equivalent)"
ROWS += [
    ("jobs_delay_p50", _G, "a job every second (bench/apps/job.sh, bash; PM2: cron_restart, autorestart off): "
     "its start − its nominal fire time, p50", "ms", 1, None, None),
    ("jobs_delay_p99", _G, "the same, p99 (--quick: of 10 runs, the largest)", "ms", 1,
     _max_target(10, "≤ 10 ms"), None),
    ("jobs_delay_max", _G, "the same, the largest", "ms", 1, None, None),
    ("jobs_delay_missed", _G, "fire times with no run (of 60; --quick: of 10)", "", 0, None, None),
    ("jobs_delay_extra", _G, "runs beyond one per fire time", "", 0, None, None),
    ("jobs_daemon_p50", _G, "herdsman's own record of those runs (`jobs history`: started_at − scheduled_at), p50",
     "ms", 1, None, None),
    ("jobs_daemon_p99", _G, "the same, p99", "ms", 1, None, None),
    ("jobs_load_cpu", _G, f"{_N}: keeper CPU over 60 s (--quick: 20 s)", "% core", 2,
     _max_target(1.0, "≤ 1 % of a core"), None),
    ("jobs_idle_cpu", _G, "the same keeper idle before (no app), CPU over 10 s (--quick: 2 s)", "% core", 2, None,
     None),
    ("jobs_load_cpu_own", _G, f"{_N}: keeper + controller + log keeper CPU", "% core", 2, None, None),
    ("jobs_idle_cpu_own", _G, "the same three idle before", "% core", 2, None, None),
    ("jobs_load_rss_delta", _G, f"{_N}: keeper's peak RSS over the window − its peak RSS idle before", "MiB", 1,
     _max_target(3.0, "≤ +3 MiB"), None),
    ("jobs_load_rss", _G, f"{_N}: keeper's peak RSS over the window", "MiB", 1, None, None),
    ("jobs_idle_rss", _G, "the same keeper's peak RSS idle before", "MiB", 1, None, None),
    ("jobs_load_runs", _G, f"{_N}: runs ended over the window (`jobs --json` before and after it, each ≥ 1.5 s "
     "after a fire time)", "", 0, None, None),
    ("jobs_load_expected", _G, "expected: jobs × fire times between those two counts", "", 0, None, None),
    ("jobs_load_failed", _G, "runs failed", "", 0, _zero_target, None),
    ("jobs_start_cmd", _G, f"{_N}: `herdsman start ecosystem.toml` (defines them)", "ms", 0, None, None),
    ("jobs_cli", _G, f"{_N}: `herdsman jobs`, median of 20 (hyperfine)", "ms", 1, _max_target(5.0, "≤ 5 ms"), None),
    ("jobs_cli_p95", _G, f"{_N}: `herdsman jobs`, p95 of 20", "ms", 1, _max_target(5.0, "≤ 5 ms"), None),
]
_G = "A thousand workers"
_N = "1000 /bin/sleep workers (--quick: 100), herdsman only"
ROWS += [
    ("thousand_idle_rss", _G, "the keeper idle before (no app): RSS", "MiB", 1, None, None),
]
for _mode, _what in (("fork", "fork mode, an app each"), ("cluster", "cluster mode, 10 apps")):
    ROWS += [
        (f"thousand_{_mode}_start", _G, f"{_N}, {_what}: `start ecosystem.toml`", "s", 2,
         _max_target(2.0, "≤ 2 s"), None),
        (f"thousand_{_mode}_list", _G, f"{_N}, {_what}: `list`, back to back (median, hyperfine)", "ms", 1,
         _max_target(5.0, "≤ 5 ms"), None),
        (f"thousand_{_mode}_list_spaced", _G, f"{_N}, {_what}: `list` 0.6 s apart (each samples /proc)", "ms", 1,
         None, None),
        (f"thousand_{_mode}_stop", _G, f"{_N}, {_what}: `stop all`", "s", 2, _max_target(1.0, "≤ 1 s"), None),
        (f"thousand_{_mode}_rss", _G, f"{_N}, {_what}: the keeper's RSS", "MiB", 1, _max_target(12.0, "≤ 12 MiB"),
         None),
        (f"thousand_{_mode}_pss_own", _G, f"{_N}, {_what}: keeper + controller + log keeper PSS", "MiB", 1, None,
         None),
        (f"thousand_{_mode}_idle_cpu", _G, f"{_N}, {_what}: keeper + controller + log keeper CPU, idle", "% core",
         2, _max_target(0.1, "≈ 0 (≤ 0.1 %)"), None),
    ]
SUPS = ("herdsman", "pm2", "baseline")


def fmt(value, digits):
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def cell(samples, digits):
    if not samples:
        return "—"
    med = statistics.median(samples)
    if len(samples) == 1:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(min(samples), digits)}–{fmt(max(samples), digits)})"


def ratio(a, b):
    if a is None or b is None:
        return "—"
    if b == 0:
        return "—" if a == 0 else "∞"
    return f"{a / b:.2f}×"


def render(samples, machine, errors, cfg, elapsed_s):
    """samples: {key: {sup: [values]}} -> markdown."""
    def med(key, sup):
        v = samples.get(key, {}).get(sup)
        return statistics.median(v) if v else None

    lines = []
    title = "quick run (every scenario once, briefly: not a measurement)" if cfg.quick else \
        f"{cfg.reps} repetitions, interleaved"
    lines += [
        "# herdsman benchmark results",
        "",
        f"Generated by `bench/bench.py{' --quick' if cfg.quick else ''}` on {machine['date']} "
        f"({title}; {elapsed_s / 60:.1f} min).",
        "",
        "## Machine",
        "",
    ]
    for k, v in machine.items():
        if k != "date":
            lines.append(f"- {k}: {v}")
    lines += [
        "",
        "## Results",
        "",
        "Median (min–max) over the runs; counts (failures) are per run of 3 actions or per scenario run. Ratios are",
        "herdsman's median over PM2's and over the baseline's, from this same run. The baseline is no supervisor:",
        "bench/launcher.py binds the socket and forks the same workers (fd 3, LISTEN_FDS, the same preload).",
        "Result is herdsman's against the target; counts must be 0 in every run.",
        "",
        "| Scenario | Metric | herdsman | PM2 7.0.4 | baseline | herdsman/PM2 | herdsman/baseline | Target | Result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary = {"pass": 0, "miss": 0}
    misses = []
    for key, group, label, unit, digits, target, ref_key in ROWS:
        per = samples.get(key, {})
        if not per:
            continue
        h, p, b = (med(key, s) for s in SUPS)
        ref = med(ref_key, "plain") if ref_key else None
        if key in ("rss_plain", "start_plain"):
            h = p = None
            b = med(key, "plain")
        result = ""
        target_text = ""
        if target is not None:
            if target is _zero_target:
                total = sum(per.get("herdsman", [])) if per.get("herdsman") else None
                target_text, ok = _zero_target(h, p, b, ref, total)
            else:
                target_text, ok = target(h, p, b, ref)
            if ok is not None:
                result = "**pass**" if ok else "**miss**"
                summary["pass" if ok else "miss"] += 1
                if not ok:
                    misses.append(f"- {group}, {label}: herdsman {cell(per.get('herdsman', []), digits)}"
                                  f"{' ' + unit if unit else ''}; target {target_text}.")
        unit_text = f" ({unit})" if unit else ""
        cells = [cell(per.get(s, []), digits) for s in ("herdsman", "pm2")]
        cells.append(cell(per.get("plain" if key in ("rss_plain", "start_plain") else "baseline", []), digits))
        lines.append(f"| {group} | {label}{unit_text} | {' | '.join(cells)} | {ratio(h, p)} | {ratio(h, b)} | "
                     f"{target_text} | {result} |")
    lines += ["", f"Targets: {summary['pass']} pass, {summary['miss']} miss.", ""]
    if misses:
        lines += ["## Missed targets", ""] + misses + [""]
    if cfg.quick:
        lines += ["Quick mode: 1 run of each scenario, wrk for 2 s, idle CPU over 10 s (not 60 s), RSS sampled 2 s "
                  "after start (not 5 s); jobs: the every-second job for 10 s (not 60 s), 100 jobs for 20 s (not "
                  "1000 for 60 s). The figures are for spotting breakage, not for comparison.", ""]
    if errors:
        lines += ["## Scenarios that broke", ""]
        lines += [f"- {e}" for e in errors]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Install, machine description, main
# ---------------------------------------------------------------------------------------------------------------
def install():
    if not os.path.exists(PM2_BIN) or pm2_version() != "7.0.4":
        log("installing PM2 7.0.4 into bench/node_modules (npm ci)")
        subprocess.run(["npm", "ci", "--prefix", BENCH, "--no-audit", "--no-fund", "--loglevel=error"], check=True,
                       stdin=subprocess.DEVNULL)
    missing = [t for t in ("wrk", "hyperfine") if not shutil.which(t)]
    if missing:
        log(f"installing {' '.join(missing)} (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env, stdin=subprocess.DEVNULL)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                       stdin=subprocess.DEVNULL)


def pm2_version():
    try:
        return json.load(open(os.path.join(BENCH, "node_modules", "pm2", "package.json")))["version"]
    except (OSError, ValueError, KeyError):
        return None


def check_tools(herdsman):
    problems = []
    for tool in ("node", "wrk", "hyperfine"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found (bench/bench.py --install installs wrk and hyperfine)")
    if not os.path.exists(PM2_BIN):
        problems.append("PM2 not installed in bench/node_modules (run bench/bench.py --install)")
    if not os.access(herdsman, os.X_OK):
        problems.append(f"{herdsman} not found")
    return problems


def next_build(herdsman):
    """A second build of herdsman whose version is this one's plus `-next`, for the survive scenario's `update`: in
    target/bench-next, which starts as hard links to target/release, so that only herdsman is compiled again."""
    home = tempfile.mkdtemp(prefix="bench-version-")
    try:
        versions = run([herdsman, "version", "--json"], dict(os.environ, HERDSMAN_HOME=home), 30, "herdsman version")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    version = json.loads(versions)["cli"]["version"].split("-next")[0] + "-next"
    next_target = os.path.join(ROOT, "target", "bench-next")
    next_profile = os.path.join(next_target, "release")
    if not os.path.exists(next_profile):
        os.makedirs(next_target, exist_ok=True)
        subprocess.run(["cp", "-al", os.path.dirname(HERDSMAN_BIN), next_profile], check=True)
    # herdsman's own files get copies of their own: cargo rewrites some in place (its fingerprints, the build
    # script's output), which through a shared link would make the next `cargo build --release` rebuild herdsman
    for dirpath, _, files in os.walk(next_profile):
        for name in files:
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, next_profile).split(os.sep)
            own = any(part.startswith(("herdsman", "libherdsman")) for part in parts)
            if own and not os.path.islink(path) and os.stat(path).st_nlink > 1:
                shutil.copy2(path, path + ".copy")
                os.replace(path + ".copy", path)
    log(f"cargo build --release (version {version}, in target/bench-next: the build `update` moves to)")
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--bin", "herdsman"], cwd=ROOT, check=True,
                   stdin=subprocess.DEVNULL,
                   env=dict(os.environ, CARGO_TARGET_DIR=next_target, HERDSMAN_BUILD_VERSION=version))
    return os.path.join(next_profile, "herdsman"), version


def git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def describe_machine(herdsman, built=None):
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = built or git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", "examples")
    def version(argv):
        out = subprocess.run(argv, capture_output=True, text=True)
        return ((out.stdout + out.stderr).strip().splitlines() or [""])[0]

    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "kernel": platform.release(),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "node": version(["node", "--version"]),
        "PM2": pm2_version() or "not installed",
        "herdsman": (f"commit {commit}{' + uncommitted changes in src/' if dirty else ''} ({herdsman})" if built else
                     f"{herdsman} (given with --herdsman; the work tree is at commit {commit})"),
        "wrk / hyperfine": f"{version(['wrk', '-v']).split(' Copyright')[0].strip()} / {version(['hyperfine', '--version'])}",
        "load average at start": " ".join(open("/proc/loadavg").read().split()[:3]),
    }


def add_result(samples, sup_name, result):
    """Adds one run's {metric: value or [values]} to samples {metric: {supervisor: [values]}}."""
    for key, value in result.items():
        if key.endswith("_detail"):
            continue
        bucket = samples.setdefault(key, {}).setdefault(sup_name, [])
        if isinstance(value, list):
            bucket.extend(value)
        elif value is not None:
            bucket.append(value)


def rerender(path, out_md):
    """Writes the markdown again from a results .json (after a change to the table, without running again)."""
    data = json.load(open(path))
    samples = {}
    for run in data["runs"]:
        add_result(samples, run["supervisor"], run["result"])
    cfg = Config(data["quick"], data["reps"])
    text = render(samples, data["machine"], data["errors"], cfg, data.get("elapsed_s", 0.0))
    with open(out_md, "w") as f:
        f.write(text)
    print(text)
    return 0


def _alarm(*_):
    raise Timeout()


def _interrupt(*_):
    raise KeyboardInterrupt()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--install", action="store_true", help="install PM2 (npm), wrk and hyperfine (apt) first")
    ap.add_argument("--quick", action="store_true", help="every scenario once, briefly (CI)")
    ap.add_argument("--reps", type=int, help="repetitions (default 3; --quick: 1)")
    ap.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--out", help="markdown output (default bench/RESULTS.md; --quick: bench/RESULTS-quick.md)")
    ap.add_argument("--herdsman", help="use this binary instead of building target/release/herdsman")
    ap.add_argument("--render", metavar="JSON", help="only write the markdown again from a results .json")
    args = ap.parse_args()
    if args.render:
        return rerender(args.render, args.out or os.path.splitext(args.render)[0] + ".md")

    started = time.monotonic()
    if args.install:
        install()
    herdsman = args.herdsman
    built = None
    if not herdsman:
        for _ in range(3):  # others may commit while it builds: the commit recorded is the one built
            before = git("rev-parse", "--short=12", "HEAD")
            log("cargo build --release")
            subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True,
                           stdin=subprocess.DEVNULL)
            if git("rev-parse", "--short=12", "HEAD") == before:
                built = before
                break
        herdsman = HERDSMAN_BIN
    herdsman = os.path.abspath(herdsman)
    problems = check_tools(herdsman)
    if problems:
        for p in problems:
            log("error:", p)
        return 1
    cfg = Config(args.quick, args.reps or (1 if args.quick else 3))
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}")
    out_md = args.out or os.path.join(BENCH, "RESULTS-quick.md" if args.quick else "RESULTS.md")
    machine = describe_machine(herdsman, built or (None if args.herdsman else "unknown"))
    if "survive" in names:
        if args.quick or args.herdsman:  # no second build: quick, or a binary not built from this work tree
            machine["survive: `update` to"] = "a copy of the same binary (same version: " + \
                ("--quick" if args.quick else "--herdsman given") + ")"
        else:
            cfg.next_herdsman, version = next_build(herdsman)
            machine["survive: `update` to"] = f"a second build, version {version} ({cfg.next_herdsman})"
    makers = {"herdsman": lambda: Herdsman(herdsman), "pm2": lambda: Pm2(PM2_BIN), "baseline": Baseline,
              "plain": Plain}

    samples, raw, errors = {}, [], []
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for rep in range(cfg.reps):
            if "start" in names or "serve" in names:
                try:
                    result = scenario_node_e0(cfg)
                    raw.append({"rep": rep, "scenario": "node_e0", "supervisor": "baseline", "result": result})
                    add_result(samples, "baseline", result)
                except ScenarioError as e:
                    errors.append(f"rep {rep} node -e 0: {e}")
            for name in names:
                fn, sups = SCENARIOS[name]
                order = list(sups[rep % len(sups):]) + list(sups[:rep % len(sups)])  # rotate: A/B/C, B/C/A, ...
                for sup_name in order:
                    sup = makers[sup_name]()
                    t = time.monotonic()
                    signal.alarm(BOUND_S[name])
                    try:
                        result = fn(sup, cfg)
                    except (ScenarioError, Timeout, subprocess.SubprocessError, OSError) as e:
                        msg = f"rep {rep} {name} {sup_name}: " + (
                            f"took more than {BOUND_S[name]} s" if isinstance(e, Timeout) else str(e))
                        log("BROKE:", msg)
                        errors.append(msg)
                        result = getattr(e, "partial", {})  # what it measured before it broke
                    finally:
                        signal.alarm(0)
                        sup.cleanup()
                    raw.append({"rep": rep, "scenario": name, "supervisor": sup_name, "seconds": time.monotonic() - t,
                                "result": result})
                    add_result(samples, sup_name, result)
                    brief = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()
                             if not k.endswith("_detail") and not isinstance(v, list)}
                    lists = {k: [round(x, 1) for x in v] for k, v in result.items() if isinstance(v, list)}
                    log(f"rep {rep} {name:9} {sup_name:8} {time.monotonic() - t:5.1f}s {brief} {lists}")
    except KeyboardInterrupt:
        errors.append("interrupted")
        log("interrupted")
    machine["load average at end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    elapsed = time.monotonic() - started
    text = render(samples, machine, errors, cfg, elapsed)
    with open(out_md, "w") as f:
        f.write(text)
    with open(os.path.splitext(out_md)[0] + ".json", "w") as f:
        json.dump({"machine": machine, "quick": cfg.quick, "reps": cfg.reps, "elapsed_s": elapsed, "runs": raw,
                   "errors": errors}, f, indent=1)
    print(text)
    log(f"wrote {out_md} ({elapsed / 60:.1f} min)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
