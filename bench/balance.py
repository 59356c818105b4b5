#!/usr/bin/env python3
"""herdsman's balance modes side by side: shared, hash and sticky, 4 workers of examples/hello.js.

For each mode: N new connections (Connection: close), from 4 client threads, each connection from one of 8
loopback source addresses (127.0.0.1 ... 127.0.0.8) and a fresh source port; prints the connections each
worker took (busiest / least busy) and the client's rate. Python stdlib only; the client is the bottleneck,
so compare the modes with each other, not with bench.py's wrk figures.

    bench/balance.py [--herdsman PATH] [--connections 2000]
"""
import argparse
import collections
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "hello.js")
SOURCES = 8
THREADS = 4


def get(port, source):
    """GET / over a new connection from `source`: the X-Pid of the answer."""
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"x-pid:"):
            return int(line.split(b":", 1)[1])
    raise RuntimeError(f"no X-Pid in {data[:200]!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_online(binary, env, n, deadline_s=30):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        out = subprocess.run([binary, "list", "--json"], env=env, capture_output=True, text=True, timeout=30)
        workers = json.loads(out.stdout or "[]")
        if sum(1 for w in workers if w["status"] == "online") == n:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{n} workers not online in {deadline_s} s")


def split_by_source(port, connections):
    """`connections` new connections from THREADS client threads, each from one of SOURCES loopback addresses:
    {"split": connections per worker, largest first, "failures", "busiest_over_least", "rate" (conn/s)}."""
    counts, failures, lock = collections.Counter(), [], threading.Lock()
    per_thread = connections // THREADS

    def run(t):
        for i in range(per_thread):
            try:
                pid = get(port, f"127.0.0.{1 + (t * per_thread + i) % SOURCES}")
                with lock:
                    counts[pid] += 1
            except (OSError, RuntimeError) as e:
                with lock:
                    failures.append(str(e))

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    split = sorted(counts.values(), reverse=True)
    return {"split": split, "failures": len(failures),
            "busiest_over_least": split[0] / max(split[-1], 1) if split else None,
            "rate": per_thread * THREADS / elapsed}


def measure(binary, mode, connections):
    home = tempfile.mkdtemp(prefix="herdsman-balance-")
    env = dict(os.environ, HERDSMAN_HOME=os.path.join(home, "h"))
    port = free_port()
    try:
        subprocess.run([binary, "start", APP, "--name", "bench", "-i", "4", "--listen", f"127.0.0.1:{port}",
                        "--balance", mode], env=env, capture_output=True, check=True, timeout=60)
        wait_online(binary, env, 4)
        r = split_by_source(port, connections)
        return dict(r, mode=mode)
    finally:
        subprocess.run([binary, "kill"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--herdsman", default=os.path.join(ROOT, "target", "release", "herdsman"))
    ap.add_argument("--connections", type=int, default=2000)
    args = ap.parse_args()
    print(f"{'mode':8}{'connections per worker':32}{'busiest/least':>14}{'conn/s':>9}{'failed':>8}")
    for mode in ("shared", "hash", "sticky"):
        r = measure(args.herdsman, mode, args.connections)
        print(f"{r['mode']:8}{str(r['split']):32}{r['busiest_over_least']:>14.2f}{r['rate']:>9.0f}{r['failures']:>8}")


if __name__ == "__main__":
    main()
