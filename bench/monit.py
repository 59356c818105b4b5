#!/usr/bin/env python3
"""What watching costs: the daemon's CPU with and without `herdsman monit`, and monit's own CPU and memory.

    bench/monit.py [--apps N] [--seconds S] [--bin PATH]

Starts a daemon in a temporary HERDSMAN_HOME with N (default 20) fork-mode apps (a shell that sleeps), then
measures over S seconds (default 60) each:
  1. the daemon's CPU time with nobody watching;
  2. the daemon's CPU time while `herdsman monit` runs in a tmux pane (100x30, a private tmux server),
     and monit's own CPU time and peak RSS (VmHWM).
CPU times come from /proc/<pid>/stat (utime + stime), memory from /proc/<pid>/status. Prints a table.
Run on demand, not in CI. Needs tmux. Cleans up everything it started (tmux server, daemon, apps, home),
also on Ctrl-C. Python 3 stdlib only.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*words):
    print(f"[{time.strftime('%H:%M:%S')}]", *words, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: the fields start after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Bench:
    def __init__(self, binary, apps):
        self.binary = binary
        self.apps = apps
        self.dir = tempfile.mkdtemp(prefix="herdsman-monit-bench-")
        self.home = os.path.join(self.dir, "home")
        self.env = dict(os.environ, HERDSMAN_HOME=self.home)
        self.tmux_socket = f"herdsman-monit-bench-{os.getpid()}"
        self.tmux_started = False

    def herdsman(self, *args, check=True):
        return subprocess.run(
            [self.binary, *args], env=self.env, check=check, capture_output=True, text=True, timeout=60
        )

    def tmux(self, *args):
        return subprocess.run(
            ["tmux", "-L", self.tmux_socket, *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def daemon_pid(self):
        with open(os.path.join(self.home, "daemon.pid")) as f:
            return int(f.read().strip())

    def start_apps(self):
        script = os.path.join(self.dir, "idle.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexec sleep 1000000\n")
        os.chmod(script, 0o755)
        for n in range(self.apps):
            self.herdsman("start", script, "--name", f"idle-{n:02}", "--interpreter", "none")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = json.loads(self.herdsman("list", "--json").stdout)
            if len(listed) == self.apps and all(p["status"] == "online" for p in listed):
                return
            time.sleep(0.2)
        raise SystemExit(f"the {self.apps} apps did not all get online within 30 s")

    def start_monit(self):
        command = f"env HERDSMAN_HOME='{self.home}' '{self.binary}' monit"
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "bench", "-x", "100", "-y", "30", command)
        self.tmux_started = True
        pane = int(self.tmux("display-message", "-p", "-t", "bench", "#{pane_pid}").strip())
        # tmux runs the command through `sh -c`, which may exec it or fork it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for pid in [pane, *children(pane)]:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read().split(b"\0")[1:2] == [b"monit"]:
                            return pid
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    pass
            time.sleep(0.1)
        raise SystemExit("herdsman monit did not start in tmux:\n" + self.tmux("capture-pane", "-p"))

    def measure(self, seconds, monit=None):
        daemon = self.daemon_pid()
        d0 = cpu_seconds(daemon)
        m0 = cpu_seconds(monit) if monit else 0.0
        time.sleep(seconds)
        row = {"daemon_cpu_s": cpu_seconds(daemon) - d0}
        if monit:
            row["monit_cpu_s"] = cpu_seconds(monit) - m0
            row["monit_peak_rss_kib"] = status_kib(monit, "VmHWM")
        return row

    def cleanup(self):
        if self.tmux_started:
            subprocess.run(["tmux", "-L", self.tmux_socket, "kill-server"], capture_output=True)
        if os.path.exists(self.home):
            subprocess.run([self.binary, "kill"], env=self.env, capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def interrupted(*_):
    """SIGTERM ends the run like Ctrl-C: through the cleanup."""
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "herdsman"))
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is required (apt-get install tmux)")
    if not os.path.exists(args.bin):
        log("building", args.bin)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    bench = Bench(os.path.abspath(args.bin), args.apps)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        log(f"starting {args.apps} fork-mode apps in {bench.home}")
        bench.start_apps()
        log(f"measuring the daemon alone for {args.seconds:g} s")
        alone = bench.measure(args.seconds)
        monit = bench.start_monit()
        time.sleep(2)  # past monit's start-up
        log(f"measuring with herdsman monit (pid {monit}) for {args.seconds:g} s")
        watched = bench.measure(args.seconds, monit)
    except KeyboardInterrupt:
        raise SystemExit("interrupted")
    finally:
        bench.cleanup()

    def pct(seconds):
        return f"{100 * seconds / args.seconds:.2f} %"

    print(f"\n{args.apps} fork-mode apps, {args.seconds:g} s each\n")
    print("| | daemon CPU | daemon CPU % | monit CPU | monit CPU % | monit peak RSS |")
    print("|---|---|---|---|---|---|")
    print(f"| no monit | {alone['daemon_cpu_s']:.2f} s | {pct(alone['daemon_cpu_s'])} | | | |")
    print(
        f"| monit running | {watched['daemon_cpu_s']:.2f} s | {pct(watched['daemon_cpu_s'])} "
        f"| {watched['monit_cpu_s']:.2f} s | {pct(watched['monit_cpu_s'])} "
        f"| {watched['monit_peak_rss_kib'] / 1024:.1f} MiB |"
    )


if __name__ == "__main__":
    main()
