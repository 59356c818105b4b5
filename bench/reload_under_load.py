#!/usr/bin/env python3
"""Reloads and restarts under load: herdsman and PM2 side by side, on the same app, in the same run.

For each supervisor and each repetition (interleaved): start examples/hello.js with 2 workers on a
loopback port, run wrk (keep-alive, -c64) for the whole window plus a probe that opens a new connection
every 5 ms, perform 3 reloads (or 3 restarts), and count what went wrong:
  - wrk: socket errors (connect, read, write, timeout) and non-2xx answers;
  - probe: new connections refused, reset, timed out (2 s) or answered non-2xx.
Also times each `reload` command. Only loopback traffic; everything stops by itself.

Usage: bench/reload_under_load.py [--reps N] [--pm2 PATH]   (needs wrk; PM2 from npm: see --install)
    --install   npm-install pm2@7.0.4 into bench/node_modules and apt-get install wrk first
"""
import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "hello.js")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(port, pids_wanted, deadline_s=15):
    seen, deadline = set(), time.time() + deadline_s
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/", headers={"Connection": "close"})
            r = c.getresponse()
            r.read()
            seen.add(r.getheader("X-Pid"))
            c.close()
            if len(seen) >= pids_wanted:
                return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"port {port} not served by {pids_wanted} workers in {deadline_s}s")


class Probe(threading.Thread):
    """A new connection every 5 ms; counts refused, reset, timed-out and non-2xx."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop = port, threading.Event()
        self.counts = {"ok": 0, "refused": 0, "reset": 0, "timeout": 0, "non2xx": 0, "other": 0}

    def run(self):
        while not self.stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/", headers={"Connection": "close"})
                r = c.getresponse()
                r.read()
                c.close()
                self.counts["ok" if 200 <= r.status < 300 else "non2xx"] += 1
            except ConnectionRefusedError:
                self.counts["refused"] += 1
            except ConnectionResetError:
                self.counts["reset"] += 1
            except (socket.timeout, TimeoutError):
                self.counts["timeout"] += 1
            except Exception:  # noqa: BLE001 - any other failure of a new connection
                self.counts["other"] += 1
            time.sleep(0.005)


def parse_wrk(text):
    out = {"requests": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["connect"], out["read"], out["write"], out["timeout"] = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    return out


class Herdsman:
    name = "herdsman"

    def __init__(self, binary):
        self.binary, self.home = binary, tempfile.mkdtemp(prefix="hbench-")
        self.env = dict(os.environ, HERDSMAN_HOME=self.home)

    def run(self, *args):
        subprocess.run([self.binary, *args], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def start(self, port):
        self.run("start", APP, "--name", "bench", "-i", "2", "--listen", f"127.0.0.1:{port}")

    def reload(self):
        self.run("reload", "bench")

    def restart(self):
        self.run("restart", "bench")

    def stop(self):
        subprocess.run([self.binary, "kill"], env=self.env, stdout=subprocess.DEVNULL)
        shutil.rmtree(self.home, ignore_errors=True)


class Pm2:
    name = "pm2"

    def __init__(self, binary):
        self.binary, self.home = binary, tempfile.mkdtemp(prefix="pm2bench-")
        self.env = dict(os.environ, PM2_HOME=self.home)

    def run(self, *args, port=None):
        env = dict(self.env, PORT=str(port)) if port else self.env
        subprocess.run([self.binary, *args], env=env, check=True, stdout=subprocess.DEVNULL)

    def start(self, port):
        self.run("start", APP, "--name", "bench", "-i", "2", port=port)

    def reload(self):
        self.run("reload", "bench")

    def restart(self):
        self.run("restart", "bench")

    def stop(self):
        subprocess.run([self.binary, "kill"], env=self.env, stdout=subprocess.DEVNULL)
        shutil.rmtree(self.home, ignore_errors=True)


def scenario(sup, action, seconds=8):
    port = free_port()
    sup.start(port)
    try:
        wait_serving(port, 2)
        probe = Probe(port)
        probe.start()
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, text=True,
        )
        times = []
        time.sleep(1.0)  # load is running before the first reload (this is a benchmark, not a test)
        for _ in range(3):
            t = time.time()
            getattr(sup, action)()
            times.append((time.time() - t) * 1000)
            time.sleep(1.0)
        out, _ = wrk.communicate(timeout=seconds + 30)
        probe.stop.set()
        probe.join(5)
        return {"wrk": parse_wrk(out), "probe": dict(probe.counts), "command_ms": times}
    finally:
        sup.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--pm2", default=os.path.join(ROOT, "bench", "node_modules", ".bin", "pm2"))
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.install:
        subprocess.run(["npm", "install", "--prefix", os.path.join(ROOT, "bench"), "--no-audit",
                        "--no-fund", "pm2@7.0.4"], check=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    herdsman = os.path.join(ROOT, "target", "release", "herdsman")
    results = {}
    for rep in range(args.reps):
        for action in ("reload", "restart"):
            for sup in (Herdsman(herdsman), Pm2(args.pm2)):
                r = scenario(sup, action)
                results.setdefault((sup.name, action), []).append(r)
                print(f"rep {rep} {sup.name:8} {action:7} wrk={r['wrk']} probe={r['probe']} "
                      f"command_ms={[round(t) for t in r['command_ms']]}", file=sys.stderr)
    if args.json:
        print(json.dumps({f"{k[0]} {k[1]}": v for k, v in results.items()}))
        return
    print("| supervisor | action | wrk errors (connect/read/write/timeout) | wrk non-2xx | probe refused/reset/timeout/non-2xx | probe ok | command ms (median) |")
    print("|---|---|---|---|---|---|---|")
    for (name, action), runs in results.items():
        w = lambda k: sum(r["wrk"][k] for r in runs)  # noqa: E731
        p = lambda k: sum(r["probe"][k] for r in runs)  # noqa: E731
        ms = statistics.median(t for r in runs for t in r["command_ms"])
        print(f"| {name} | {action} ×3 ×{len(runs)} | {w('connect')}/{w('read')}/{w('write')}/{w('timeout')} "
              f"| {w('non2xx')} | {p('refused')}/{p('reset')}/{p('timeout')}/{p('non2xx') + p('other')} "
              f"| {p('ok')} | {ms:.0f} |")


if __name__ == "__main__":
    main()
