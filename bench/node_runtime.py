#!/usr/bin/env python3
"""The cost of the Node runtime metrics (event-loop delay and heap, reported by herdsman's preload every 5 s),
per worker: resident memory and CPU of N idle workers of examples/hello.js under herdsman, with the reports
off (HERDSMAN_NODE_RUNTIME=off) and on (the default), alternated over --reps rounds.

    bench/node_runtime.py --herdsman target/release/herdsman [--workers 8] [--reps 3] [--window 30]

Budget: +1 MiB of RSS per worker. Stdlib only; writes bench/RESULTS-node-runtime.md and prints the table.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "hello.js")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def one_run(herdsman, workers, report, settle, window):
    home = tempfile.mkdtemp(prefix="hm-runtime-")
    env = dict(os.environ, HERDSMAN_HOME=home)
    env.pop("HERDSMAN_NODE_RUNTIME", None)
    if not report:
        env["HERDSMAN_NODE_RUNTIME"] = "off"
    port = free_port()
    try:
        subprocess.run([herdsman, "start", APP, "--name", "hello", "-i", str(workers), "--listen",
                        f"127.0.0.1:{port}"], env=env, check=True, stdout=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run([herdsman, "list", "--json"], env=env, check=True, capture_output=True,
                                 text=True, timeout=30).stdout
            procs = json.loads(out)
            if len(procs) == workers and all(p["status"] == "online" for p in procs):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"workers not online: {out}")
            time.sleep(0.2)
        pids = [p["pid"] for p in procs]
        time.sleep(settle)  # let the first reports (and the heap) settle
        before = [cpu_ticks(pid) for pid in pids]
        started = time.monotonic()
        rss = []
        while time.monotonic() - started < window:
            rss.append(statistics.mean(rss_kib(pid) for pid in pids))
            time.sleep(1)
        elapsed = time.monotonic() - started
        used = [cpu_ticks(pid) - b for pid, b in zip(pids, before)]
        cpu_percent = statistics.mean(used) / TICKS / elapsed * 100
        reported = all(p.get("runtime") for p in json.loads(subprocess.run(
            [herdsman, "list", "--json"], env=env, capture_output=True, text=True, timeout=30).stdout))
        if reported != report:
            raise SystemExit(f"runtime reports {'missing' if report else 'present'} with report={report}")
        return statistics.mean(rss) / 1024, cpu_percent
    finally:
        subprocess.run([herdsman, "kill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--herdsman", default=os.path.join(ROOT, "target", "release", "herdsman"))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--settle", type=float, default=6)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS-node-runtime.md"))
    args = parser.parse_args()
    herdsman = os.path.abspath(args.herdsman)
    if not os.access(herdsman, os.X_OK):
        raise SystemExit(f"{herdsman} is not an executable: build it (cargo build --release) or give --herdsman")
    runs = {False: [], True: []}
    for rep in range(args.reps):
        for report in ((False, True) if rep % 2 == 0 else (True, False)):
            rss, cpu = one_run(herdsman, args.workers, report, args.settle, args.window)
            runs[report].append((rss, cpu))
            print(f"round {rep + 1}: reports {'on ' if report else 'off'}  RSS {rss:.2f} MiB/worker  "
                  f"CPU {cpu:.3f}%/worker", file=sys.stderr)
    mean = {k: (statistics.mean(r for r, _ in v), statistics.mean(c for _, c in v)) for k, v in runs.items()}
    delta_rss = mean[True][0] - mean[False][0]
    delta_cpu = mean[True][1] - mean[False][1]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Node runtime metrics: cost per worker",
        "",
        f"`bench/node_runtime.py --workers {args.workers} --reps {args.reps} --window {args.window:g}`: "
        f"{args.workers} idle workers of examples/hello.js, node {node}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}. Means over {args.reps} alternated rounds of {args.window:g} s.",
        "",
        "| reports | RSS per worker | CPU per worker |",
        "|---|---|---|",
        f"| off (`HERDSMAN_NODE_RUNTIME=off`) | {mean[False][0]:.2f} MiB | {mean[False][1]:.3f} % |",
        f"| on (default) | {mean[True][0]:.2f} MiB | {mean[True][1]:.3f} % |",
        f"| **cost** | **{delta_rss:+.2f} MiB** ({'pass' if delta_rss <= 1.0 else 'miss'}: budget +1 MiB) "
        f"| **{delta_cpu:+.3f} %** of one core |",
        "",
    ]
    text = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
